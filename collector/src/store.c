/* store.c - SQLite storage for the collector. See store.h for the durability and dedup
 * contract. All statements on the hot path are prepared once at open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "store.h"
#include "store_keys.h"

/* Target ids by (device, service, pod), direct-mapped: the upsert + lookup per snapshot was a
 * third of the store's cost. last_seen of a cached target is written once per transaction
 * (dirty), at commit. The cache is dropped on rollback, since rows it names may be gone. */
#define TCACHE 128
typedef struct tcache_ent {
    int64_t id;
    int64_t last_seen;
    int dirty;
    char device[COLL_ID_MAX], service[COLL_ID_MAX], pod[COLL_ID_MAX], incarnation[COLL_ID_MAX];
} tcache_ent;

struct coll_store {
    sqlite3 *db;
    int in_txn;
    tcache_ent tc[TCACHE];
    sqlite3_stmt *target_seen;
    sqlite3_stmt *psk_get;
    sqlite3_stmt *snap_ins;
    sqlite3_stmt *target_upsert;
    sqlite3_stmt *target_get;
    sqlite3_stmt *finding_upsert;
    sqlite3_stmt *device_seen;
};

static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "INSERT OR IGNORE INTO meta VALUES('schema_version','1');"
    "CREATE TABLE IF NOT EXISTS devices("
    "  id TEXT PRIMARY KEY, psk BLOB NOT NULL, created INTEGER NOT NULL,"
    "  last_seen INTEGER, snapshots INTEGER NOT NULL DEFAULT 0);"
    /* A target is a service on a device; the incarnation (pid + start time) changes on
     * restart and is kept as the latest, so a leak that survives restarts stays one row. */
    "CREATE TABLE IF NOT EXISTS targets("
    "  id INTEGER PRIMARY KEY, device TEXT NOT NULL, service TEXT NOT NULL, pod TEXT NOT NULL,"
    "  incarnation TEXT, first_seen INTEGER, last_seen INTEGER,"
    "  UNIQUE(device, service, pod));"
    "CREATE TABLE IF NOT EXISTS snapshots("
    "  id INTEGER PRIMARY KEY, snapshot_id TEXT NOT NULL UNIQUE, device TEXT NOT NULL,"
    "  target INTEGER REFERENCES targets(id), received INTEGER NOT NULL,"
    "  wall_ms INTEGER, wall_trusted INTEGER, mono_ms INTEGER, boot_id TEXT, seq INTEGER,"
    "  board TEXT, agent_version TEXT, incarnation TEXT,"
    "  goroutines INTEGER, heap_inuse INTEGER, rss_kb INTEGER, threads INTEGER,"
    "  spool_dropped INTEGER, nfindings INTEGER, size INTEGER, payload BLOB);"
    "CREATE INDEX IF NOT EXISTS snapshots_device ON snapshots(device, received);"
    "CREATE TABLE IF NOT EXISTS findings("
    "  id INTEGER PRIMARY KEY, device TEXT NOT NULL, target INTEGER NOT NULL REFERENCES targets(id),"
    "  fingerprint TEXT NOT NULL, kind TEXT, confidence TEXT, state TEXT, evidence INTEGER,"
    "  function TEXT, file TEXT, line INTEGER, created_by TEXT,"
    "  count INTEGER, max_count INTEGER, growth_per_min REAL, oldest_wait_s REAL, value INTEGER,"
    "  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, snapshots INTEGER NOT NULL,"
    "  last_snapshot TEXT,"
    "  UNIQUE(device, target, fingerprint));";

static int prep(coll_store *s, sqlite3_stmt **st, const char *sql)
{
    return sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK ? 0 : -1;
}

coll_store *store_open(const char *path, char *err, size_t errlen)
{
    coll_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        store_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 5000);
    char *msg = NULL;
    /* synchronous=FULL in WAL mode: every COMMIT fsyncs the WAL, so an acknowledged
     * snapshot survives a power cut, not only a process crash. */
    if (sqlite3_exec(s->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK ||
        store_keys_init(s) /* device_keys (store_keys.c): to fold into the migrations */ ||
        sqlite3_exec(s->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        store_close(s);
        return NULL;
    }
    if (prep(s, &s->psk_get, "SELECT psk FROM devices WHERE id=?1") ||
        prep(s, &s->snap_ins,
             "INSERT INTO snapshots(snapshot_id,device,target,received,wall_ms,wall_trusted,mono_ms,boot_id,"
             "seq,board,agent_version,incarnation,goroutines,heap_inuse,rss_kb,threads,spool_dropped,"
             "nfindings,size,payload) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)"
             " ON CONFLICT(snapshot_id) DO NOTHING") ||
        prep(s, &s->target_upsert,
             "INSERT INTO targets(device,service,pod,incarnation,first_seen,last_seen) VALUES(?1,?2,?3,?4,?5,?5)"
             " ON CONFLICT(device,service,pod) DO UPDATE SET incarnation=excluded.incarnation,"
             " last_seen=max(last_seen, excluded.last_seen)") ||
        prep(s, &s->target_get, "SELECT id FROM targets WHERE device=?1 AND service=?2 AND pod=?3") ||
        prep(s, &s->target_seen, "UPDATE targets SET last_seen=max(last_seen, ?2) WHERE id=?1") ||
        prep(s, &s->finding_upsert,
             "INSERT INTO findings(device,target,fingerprint,kind,confidence,state,evidence,function,file,line,"
             "created_by,count,max_count,growth_per_min,oldest_wait_s,value,first_seen,last_seen,snapshots,"
             "last_snapshot) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?12,?13,?14,?15,?16,?16,1,?17)"
             " ON CONFLICT(device,target,fingerprint) DO UPDATE SET"
             "  snapshots=snapshots+1,"
             "  first_seen=min(first_seen, excluded.first_seen),"
             /* Snapshots can arrive out of order after an outage: the last values are the
              * ones of the newest snapshot, not of the last one to arrive. */
             "  kind=CASE WHEN excluded.last_seen>=last_seen THEN excluded.kind ELSE kind END,"
             "  confidence=CASE WHEN excluded.last_seen>=last_seen THEN excluded.confidence ELSE confidence END,"
             "  state=CASE WHEN excluded.last_seen>=last_seen THEN excluded.state ELSE state END,"
             "  evidence=evidence | excluded.evidence,"
             "  function=CASE WHEN excluded.last_seen>=last_seen THEN excluded.function ELSE function END,"
             "  file=CASE WHEN excluded.last_seen>=last_seen THEN excluded.file ELSE file END,"
             "  line=CASE WHEN excluded.last_seen>=last_seen THEN excluded.line ELSE line END,"
             "  count=CASE WHEN excluded.last_seen>=last_seen THEN excluded.count ELSE count END,"
             "  max_count=max(max_count, excluded.count),"
             "  growth_per_min=CASE WHEN excluded.last_seen>=last_seen THEN excluded.growth_per_min"
             "    ELSE growth_per_min END,"
             "  oldest_wait_s=max(oldest_wait_s, excluded.oldest_wait_s),"
             "  value=CASE WHEN excluded.last_seen>=last_seen THEN excluded.value ELSE value END,"
             "  last_snapshot=CASE WHEN excluded.last_seen>=last_seen THEN excluded.last_snapshot"
             "    ELSE last_snapshot END,"
             "  last_seen=max(last_seen, excluded.last_seen)") ||
        prep(s, &s->device_seen,
             "UPDATE devices SET snapshots=snapshots+1, last_seen=max(coalesce(last_seen,0), ?2) WHERE id=?1")) {
        snprintf(err, errlen, "%s: prepare: %s", path, sqlite3_errmsg(s->db));
        store_close(s);
        return NULL;
    }
    return s;
}

void store_close(coll_store *s)
{
    if (!s)
        return;
    if (s->in_txn)
        store_rollback(s);
    sqlite3_finalize(s->psk_get);
    sqlite3_finalize(s->snap_ins);
    sqlite3_finalize(s->target_upsert);
    sqlite3_finalize(s->target_get);
    sqlite3_finalize(s->target_seen);
    sqlite3_finalize(s->finding_upsert);
    sqlite3_finalize(s->device_seen);
    sqlite3_close(s->db);
    free(s);
}

const char *store_errmsg(coll_store *s) { return sqlite3_errmsg(s->db); }
sqlite3 *store_db(coll_store *s) { return s->db; }
int store_in_txn(const coll_store *s) { return s->in_txn; }

static int exec1(coll_store *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int store_begin(coll_store *s)
{
    if (s->in_txn)
        return 0;
    /* IMMEDIATE: take the write lock now, so a concurrent query tool cannot make the
     * first INSERT of the batch fail with SQLITE_BUSY half-way through. */
    if (exec1(s, "BEGIN IMMEDIATE"))
        return -1;
    s->in_txn = 1;
    return 0;
}

static int tcache_flush(coll_store *s)
{
    for (int i = 0; i < TCACHE; i++) {
        tcache_ent *e = &s->tc[i];
        if (!e->dirty)
            continue;
        sqlite3_reset(s->target_seen);
        sqlite3_bind_int64(s->target_seen, 1, e->id);
        sqlite3_bind_int64(s->target_seen, 2, e->last_seen);
        int rc = sqlite3_step(s->target_seen);
        sqlite3_reset(s->target_seen);
        if (rc != SQLITE_DONE)
            return -1;
        e->dirty = 0;
    }
    return 0;
}

int store_commit(coll_store *s)
{
    if (!s->in_txn)
        return 0;
    if (tcache_flush(s) || exec1(s, "COMMIT")) {
        store_rollback(s);
        return -1;
    }
    s->in_txn = 0;
    return 0;
}

void store_rollback(coll_store *s)
{
    memset(s->tc, 0, sizeof(s->tc));
    if (s->in_txn || !sqlite3_get_autocommit(s->db))
        exec1(s, "ROLLBACK");
    s->in_txn = 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int store_device_add(coll_store *s, const char *id, const uint8_t *psk, size_t psklen, int replace)
{
    sqlite3_stmt *st = NULL;
    const char *sql = replace ? "INSERT INTO devices(id,psk,created) VALUES(?1,?2,?3)"
                                " ON CONFLICT(id) DO UPDATE SET psk=excluded.psk"
                              : "INSERT INTO devices(id,psk,created) VALUES(?1,?2,?3)";
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, psk, (int)psklen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_ms());
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int store_device_psk(coll_store *s, const char *id, uint8_t *psk, size_t cap, size_t *len)
{
    sqlite3_stmt *st = s->psk_get;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    int ret;
    if (rc == SQLITE_ROW) {
        int n = sqlite3_column_bytes(st, 0);
        const void *b = sqlite3_column_blob(st, 0);
        if (n <= 0 || (size_t)n > cap || !b) {
            ret = -1;
        } else {
            memcpy(psk, b, (size_t)n);
            *len = (size_t)n;
            ret = 1;
        }
    } else {
        ret = rc == SQLITE_DONE ? 0 : -1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

static int64_t target_id(coll_store *s, const char *device, const coll_snap *snap, int64_t seen)
{
    uint32_t h = 2166136261u;
    for (const char *p = device; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    for (const char *p = snap->service; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    for (const char *p = snap->pod; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    tcache_ent *e = &s->tc[h % TCACHE];
    if (e->id > 0 && !strcmp(e->device, device) && !strcmp(e->service, snap->service) &&
        !strcmp(e->pod, snap->pod) && !strcmp(e->incarnation, snap->incarnation)) {
        if (seen > e->last_seen) {
            e->last_seen = seen;
            e->dirty = 1;
        }
        return e->id;
    }
    if (e->dirty && tcache_flush(s))
        return -1;
    sqlite3_stmt *st = s->target_upsert;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, snap->service, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, snap->pod, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, snap->incarnation, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, seen);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return -1;
    /* last_insert_rowid is not set by the UPDATE branch of an upsert: look it up. */
    st = s->target_get;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, snap->service, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, snap->pod, -1, SQLITE_STATIC);
    int64_t id = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (id > 0) {
        e->id = id;
        e->last_seen = seen;
        e->dirty = 0;
        snprintf(e->device, sizeof(e->device), "%s", device);
        snprintf(e->service, sizeof(e->service), "%s", snap->service);
        snprintf(e->pod, sizeof(e->pod), "%s", snap->pod);
        snprintf(e->incarnation, sizeof(e->incarnation), "%s", snap->incarnation);
    }
    return id;
}

int store_put_snapshot(coll_store *s, const char *device, const coll_snap *snap, int64_t received_ms,
                       const uint8_t *payload, size_t payload_len)
{
    if (!s->in_txn)
        return -1;
    /* When did it happen? The device's wall clock if it says the clock was synced,
     * otherwise the time it reached us (the best bound we have). */
    int64_t seen = snap->wall_trusted && snap->wall_ms > 0 ? snap->wall_ms : received_ms;
    int64_t tid = target_id(s, device, snap, seen);
    if (tid < 0)
        return -1;
    sqlite3_stmt *st = s->snap_ins;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, snap->snapshot_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, tid);
    sqlite3_bind_int64(st, 4, received_ms);
    sqlite3_bind_int64(st, 5, snap->wall_ms);
    sqlite3_bind_int(st, 6, snap->wall_trusted);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)snap->mono_ms);
    sqlite3_bind_text(st, 8, snap->boot_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)snap->seq);
    sqlite3_bind_text(st, 10, snap->board, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, snap->agent_version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 12, snap->incarnation, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 13, (sqlite3_int64)snap->goroutines);
    sqlite3_bind_int64(st, 14, (sqlite3_int64)snap->heap_inuse);
    sqlite3_bind_int64(st, 15, (sqlite3_int64)snap->rss_kb);
    sqlite3_bind_int64(st, 16, snap->threads);
    sqlite3_bind_int64(st, 17, (sqlite3_int64)snap->spool_dropped);
    sqlite3_bind_int64(st, 18, snap->nfindings);
    sqlite3_bind_int64(st, 19, (sqlite3_int64)payload_len);
    if (payload)
        sqlite3_bind_blob(st, 20, payload, (int)payload_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 20);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return -1;
    if (sqlite3_changes(s->db) == 0)
        return STORE_DUPLICATE; /* findings were merged when the first copy arrived */

    for (uint32_t i = 0; i < snap->nfindings && i < COLL_MAX_FINDINGS; i++) {
        const coll_finding *f = &snap->f[i];
        st = s->finding_upsert;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, tid);
        sqlite3_bind_text(st, 3, f->fingerprint, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, f->kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, f->confidence, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, f->state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, f->evidence);
        sqlite3_bind_text(st, 8, f->function, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 9, f->file, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 10, f->line);
        sqlite3_bind_text(st, 11, f->created_by, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 12, f->count);
        sqlite3_bind_double(st, 13, f->growth_per_min);
        sqlite3_bind_double(st, 14, f->oldest_wait_s);
        sqlite3_bind_int64(st, 15, (sqlite3_int64)f->value);
        sqlite3_bind_int64(st, 16, seen);
        sqlite3_bind_text(st, 17, snap->snapshot_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE)
            return -1;
    }
    st = s->device_seen;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, received_ms);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? STORE_NEW : -1;
}

int64_t store_count(coll_store *s, const char *table)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\"", table);
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}
