/* store_int.h - what the SQLite backend's files (store*.c) share: the handle and its
 * prepared statements. Nothing outside store*.c includes this. */
#ifndef COLL_STORE_INT_H
#define COLL_STORE_INT_H

#include <sqlite3.h>

#include "store.h"

/* Target ids by (device, service, identity), direct-mapped: the upsert + lookup per snapshot
 * was a third of the store's cost. The target's summary columns (last_seen, last values,
 * interval) are written once per transaction (dirty), at commit. The cache is dropped on
 * rollback, since rows it names may be gone. */
#define TCACHE 128
#define TIDENT_MAX 256
typedef struct tcache_ent {
    int64_t id;
    int dirty;
    /* summary, written back by tcache_flush */
    int64_t last_seen, last_t, last_snap, interval_ms;
    int64_t goroutines, heap_inuse, rss_bytes, threads; /* -1 = unknown (NULL) */
    uint32_t pid;
    char go_version[ET_SNAP_GOVER_MAX];
    char device[COLL_ID_MAX], service[ET_SNAP_STR_SHORT], ident[TIDENT_MAX], incarnation[COLL_ID_MAX];
} tcache_ent;

/* (target, site key) pairs already stored with their names: a steady-state snapshot's 16-32
 * sites cost no sites-table write. Open addressing, cleared when full or on rollback. */
#define SCACHE 4096
typedef struct scache_ent {
    int64_t target;
    uint32_t key;
    uint8_t named;
} scache_ent;
/* The slot of (target, key): its own or the free one it would take (the whole cache is
 * cleared when half full). Shared by both backends' site writers. (store_put.c) */
scache_ent *store_scache_find(scache_ent *sc, unsigned *used, int64_t target, uint32_t key);

enum {
    ST_PSK_GET, ST_SNAP_INS, ST_TARGET_INS, ST_TARGET_GET, ST_TARGET_FLUSH, ST_SERIES_INS, ST_SITE_UPSERT,
    ST_SITECOUNT_INS, ST_FINDING_GET, ST_FINDING_INS, ST_FINDING_UPD, ST_FINDING_SURV, ST_FINDING_EVENT, ST_FINDING_COUNT,
    ST_FINDING_OPEN, ST_FINDING_CLEAR, ST_DEVICE_SEEN, ST_ATTACH_INS, ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
    ST_COUNT
};

struct coll_store {
    sqlite3 *db;
    int readonly;
    int in_txn;
    int schema;                /* the database's schema version after open */
    tcache_ent tc[TCACHE];
    scache_ent sc[SCACHE];
    unsigned sc_used;
    sqlite3_stmt *st[ST_COUNT];
    int64_t pruned, rolled_up; /* store_prune_progress */
    struct store_pg *pg;       /* non-NULL: a PostgreSQL database; every public function routes to
                                  store_pg_* (store_pg_int.h) and nothing above is SQLite's */
};

#define STORE_SCHEMA_VERSION 7

/* store_schema.c: creates or upgrades the schema to STORE_SCHEMA_VERSION. 0 or -1 (err). */
int store_schema_migrate(sqlite3 *db, char *err, size_t errlen);
/* Reads meta.schema_version (0 = no schema yet, -1 = error). */
int store_schema_read(sqlite3 *db);

/* store_put.c */
int store_put_prepare(coll_store *s);
int store_tcache_flush(coll_store *s);
void store_caches_drop(coll_store *s);

/* Shared with the PostgreSQL backend (store_pg.c), so both key targets and spell by_state
 * alike: the pprof URL's port (0 when none), the target key (namespace/pod/container|port),
 * and by_state as a JSON object of the non-zero states. (store_put.c) */
int store_url_port(const char *url);
void store_target_ident(const et_snapshot *w, char *out, size_t cap);
void store_by_state_json(const et_snapshot *w, char *out, size_t cap);

/* enum -> text, as FORMAT.md spells them (store_put.c) */
const char *store_kind_name(unsigned k);
const char *store_confidence_name(unsigned c);

/* Shared with the PostgreSQL backend's findings (store_pg_findings.c), so both keep the same
 * history: the finding's stack as a JSON array of names, an attachment kind's name, and the
 * event a new sighting of an existing finding records ("reopened", with *reopen set, or
 * "confidence", or NULL). (store_put.c) */
void store_stack_json(const et_finding *f, char *out, size_t cap);
const char *store_attach_kind(unsigned k);
const char *store_finding_event(const char *status, int64_t cleared_at, int64_t last_seen, const char *oldconf,
                                const char *conf, int64_t t, int *reopen);
#define STORE_STACK_JSON_MAX (ET_STACK_MAX * (ET_FUNC_MAX * 2 + 4) + 4)

/* store.c */
int store_exec(coll_store *s, const char *sql);
int store_prep(coll_store *s, sqlite3_stmt **st, const char *sql);

#endif
