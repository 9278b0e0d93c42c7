/* store.c - the SQLite backend's handle: open (with migration), read-only open, transactions,
 * devices and their keys. See store.h for the durability and dedup contract; store_put.c
 * writes snapshots, store_query.c reads the fleet view, store_retention.c prunes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_int.h"
#include "store_pg_int.h"
#include "store_keys.h"

int store_prep(coll_store *s, sqlite3_stmt **st, const char *sql)
{
    return sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK ? 0 : -1;
}

int store_exec(coll_store *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int store_schema_version(void) { return STORE_SCHEMA_VERSION; }
int store_db_schema_version(coll_store *s) { return s->pg ? s->pg->schema : s->schema; }

static coll_store *open_common(const char *path, int flags, char *err, size_t errlen)
{
    coll_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        store_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 5000);
    return s;
}

coll_store *store_open(const char *path, char *err, size_t errlen)
{
    if (store_is_pg_url(path))
        return store_pg_open(path, 0, err, errlen);
    coll_store *s = open_common(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err, errlen);
    if (!s)
        return NULL;
    char *msg = NULL;
    char merr[256];
    /* synchronous=FULL in WAL mode: every COMMIT fsyncs the WAL, so an acknowledged
     * snapshot survives a power cut, not only a process crash. */
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        store_close(s);
        return NULL;
    }
    if (store_schema_migrate(s->db, merr, sizeof(merr))) {
        snprintf(err, errlen, "%s: %s", path, merr);
        store_close(s);
        return NULL;
    }
    /* device_keys (store_keys.c): the keys' authority (active, rotating, revoked). Created
     * idempotently beside the versioned schema; devices.psk only seeds it once. */
    if (store_keys_init(s)) {
        snprintf(err, errlen, "%s: device keys: %s", path, sqlite3_errmsg(s->db));
        store_close(s);
        return NULL;
    }
    if (sqlite3_exec(s->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        store_close(s);
        return NULL;
    }
    s->schema = store_schema_read(s->db);
    if (store_prep(s, &s->st[ST_PSK_GET], "SELECT psk FROM devices WHERE id=?1") || store_put_prepare(s)) {
        snprintf(err, errlen, "%s: prepare: %s", path, sqlite3_errmsg(s->db));
        store_close(s);
        return NULL;
    }
    return s;
}

coll_store *store_open_readonly(const char *path, char *err, size_t errlen)
{
    if (store_is_pg_url(path))
        return store_pg_open(path, 1, err, errlen);
    coll_store *s = open_common(path, SQLITE_OPEN_READONLY, err, errlen);
    if (!s)
        return NULL;
    s->readonly = 1;
    s->schema = store_schema_read(s->db);
    if (s->schema != STORE_SCHEMA_VERSION) {
        snprintf(err, errlen, "%s: database schema %d, this collector reads %d (start `serve` once to upgrade)",
                 path, s->schema, STORE_SCHEMA_VERSION);
        store_close(s);
        return NULL;
    }
    return s;
}

void store_close(coll_store *s)
{
    if (s && s->pg) {
        store_pg_close(s->pg);
        free(s);
        return;
    }
    if (!s)
        return;
    if (s->in_txn)
        store_rollback(s);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    free(s);
}

const char *store_errmsg(coll_store *s) { return s->pg ? store_pg_errmsg(s->pg) : sqlite3_errmsg(s->db); }
/* NULL on PostgreSQL, whose alert tables come with its migrations */
sqlite3 *store_db(coll_store *s) { return s->pg ? NULL : s->db; }
int store_lead(coll_store *s) { return s->pg ? store_pg_lead(s->pg) : 1; }
int store_in_txn(const coll_store *s) { return s->pg ? s->pg->in_txn : s->in_txn; }
int store_unavailable(const coll_store *s) { return s->pg && PQstatus(s->pg->conn) != CONNECTION_OK; }

int store_begin(coll_store *s)
{
    if (s->pg)
        return store_pg_begin(s->pg);
    if (s->in_txn)
        return 0;
    if (s->readonly)
        return -1;
    /* IMMEDIATE: take the write lock now, so a concurrent query tool cannot make the
     * first INSERT of the batch fail with SQLITE_BUSY half-way through. */
    if (store_exec(s, "BEGIN IMMEDIATE"))
        return -1;
    s->in_txn = 1;
    return 0;
}

int store_commit(coll_store *s)
{
    if (s->pg)
        return store_pg_commit(s->pg);
    if (!s->in_txn)
        return 0;
    if (store_tcache_flush(s) || store_exec(s, "COMMIT")) {
        store_rollback(s);
        return -1;
    }
    s->in_txn = 0;
    return 0;
}

void store_rollback(coll_store *s)
{
    if (s->pg) {
        store_pg_rollback(s->pg);
        return;
    }
    store_caches_drop(s);
    if (s->in_txn || !sqlite3_get_autocommit(s->db))
        store_exec(s, "ROLLBACK");
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
    if (s->pg)
        return store_pg_device_add(s->pg, id, psk, psklen, replace);
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
    if (s->pg)
        return store_pg_device_psk(s->pg, id, psk, cap, len);
    sqlite3_stmt *st = s->st[ST_PSK_GET];
    if (!st)
        return -1;
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

int64_t store_count(coll_store *s, const char *table)
{
    if (s->pg)
        return store_pg_count(s->pg, table);
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\"", table);
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

int64_t store_db_bytes(coll_store *s)
{
    if (s->pg)
        return store_pg_db_bytes(s->pg);
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT page_count*page_size FROM pragma_page_count(), pragma_page_size()", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}
