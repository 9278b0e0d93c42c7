/* store_pg_int.h - the PostgreSQL backend (store_pg*.c) behind store.h.
 *
 * store.c routes a `postgresql://` (or `postgres://`) database URL here. The hot write path
 * (store_put_snapshot), transactions, keys and retention start with `if (s->pg) return
 * store_pg_...(...)`; the read side, the command queue and the alert tables run the same SQL on
 * both engines through store_sq.h. Nothing above store.h knows which engine answers.
 *
 * libpq is used synchronously (one connection per coll_store, which belongs to one thread, as
 * with SQLite). Parameters go as text (integers printed) or binary (bytea keys). */
#ifndef COLL_STORE_PG_INT_H
#define COLL_STORE_PG_INT_H

#include <stdio.h>

#include <libpq-fe.h>

#include "store.h"
#include "store_int.h"
#include "store_keys.h"

#define STORE_PG_SCHEMA_VERSION 5
/* Daily partitions of snapshots and series, created this many days ahead (by store_open and
 * by every prune step) so an insert never lands in the default partition in normal operation. */
#define STORE_PG_DAYS_AHEAD 3

typedef struct store_pg {
    PGconn *conn;
    int readonly;
    int in_txn;
    int schema;
    char err[256];     /* our own messages (PQerrorMessage otherwise) */
    int64_t pruned;    /* rows or partitions dropped since open */
    int64_t rolled_up; /* rollup rows written from expiring partitions since open */
    int generation;    /* bumped by each reconnect: session state (an advisory lock) is gone */
    int lead_gen;      /* generation + 1 while this session holds the leader lock (store_lead) */
    /* (target, site key) pairs known stored with their names (store_pg_findings.c), as on
     * SQLite; dropped on rollback. Sites are never deleted, so another node's writes can only
     * make an entry stale in the harmless direction (a name we would write again). */
    scache_ent sc[SCACHE];
    unsigned sc_used;
} store_pg;

/* Parameters of one statement: text values (integers printed into buf) or binary. */
#define PGA_MAX 32
typedef struct pg_args {
    int n;
    const char *v[PGA_MAX];
    int len[PGA_MAX];
    int fmt[PGA_MAX];
    char buf[PGA_MAX][24];
} pg_args;
void pga_text(pg_args *a, const char *v);
void pga_i64(pg_args *a, int64_t v);
void pga_u64(pg_args *a, uint64_t v); /* saturated at INT64_MAX, as SQLite stores it */
void pga_null(pg_args *a);
void pga_bin(pg_args *a, const void *p, size_t n);
/* Runs sql with a (NULL: none). Returns the result when its status is COMMAND_OK or
 * TUPLES_OK, else NULL (the message in store_errmsg). */
PGresult *pg_run(store_pg *p, const char *sql, const pg_args *a);
/* the same, with results in binary when binary != 0 (bytea as raw bytes) */
PGresult *pg_run_bin(store_pg *p, const char *sql, const pg_args *a, int binary);
/* pg_run + PQclear; 0 or -1. */
int pg_exec(store_pg *p, const char *sql, const pg_args *a);
int64_t pg_i64(const PGresult *r, int row, int col); /* 0 for NULL */

int store_is_pg_url(const char *path);

/* store_pg.c */
coll_store *store_pg_open(const char *url, int readonly, char *err, size_t errlen);
void store_pg_close(store_pg *p);
const char *store_pg_errmsg(store_pg *p);
int store_pg_device_add(store_pg *p, const char *id, const uint8_t *psk, size_t psklen, int replace);
int store_pg_device_psk(store_pg *p, const char *id, uint8_t *psk, size_t cap, size_t *len);
int store_pg_begin(store_pg *p);
int store_pg_commit(store_pg *p);
void store_pg_rollback(store_pg *p);
int store_pg_put_snapshot(store_pg *p, const char *device, const coll_snap *snap, int64_t received_ms,
                          const uint8_t *payload, size_t payload_len);
int64_t store_pg_count(store_pg *p, const char *table);
int store_pg_lead(store_pg *p);
int64_t store_pg_db_bytes(store_pg *p);

void pga_f64(pg_args *a, double v);

/* store_pg_findings.c: the rest of one snapshot, inside its savepoint (store_pg.c put_all):
 * sites and their counts, findings with their history (newest: this snapshot is its target's
 * newest, so open findings it does not carry are cleared), attachments. 0 or -1. */
int store_pg_put_sites(store_pg *p, int64_t tid, const et_snapshot *w, int64_t t, int64_t received);
int store_pg_put_findings(store_pg *p, const char *device, int64_t tid, const et_snapshot *w, const char *snapshot_id,
                          int64_t t, int newest);
int store_pg_put_attachments(store_pg *p, int64_t snap_row, const et_snapshot *w, int64_t received);
void store_pg_caches_drop(store_pg *p);

/* store_pg_keys.c: store_keys.h on PostgreSQL */
int store_pg_keys_get(store_pg *p, const char *device, store_key_state *k);
int store_pg_keys_set(store_pg *p, const char *device, const uint8_t *psk, size_t len);
int store_pg_keys_rotate(store_pg *p, const char *device, const uint8_t *psk, size_t len, int64_t deadline_ms);
int store_pg_keys_promote(store_pg *p, const char *device);
int store_pg_keys_revoke(store_pg *p, const char *device, int64_t when_ms);
int store_pg_keys_list(store_pg *p, int json, FILE *out);

/* store_pg_schema.c: versioned migrations, partitions and retention */
int store_pg_migrate(store_pg *p, char *err, size_t errlen);
int store_pg_schema_read(store_pg *p);
/* Creates the daily partitions from day(now) - 1 to day(now) + STORE_PG_DAYS_AHEAD. 0 or -1. */
int store_pg_partitions_ahead(store_pg *p, int64_t now_ms);
#define DAY_MS (86400LL * 1000)
/* YYYYMMDD of the UTC day holding day_ms: the suffix of a daily partition's name */
void store_pg_day_name(int64_t day_ms, char *out, size_t cap);

/* store_pg_retention.c */
int store_pg_prune_step(store_pg *p, const store_retention *r, int64_t now_ms);

#endif
