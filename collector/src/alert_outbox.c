/* alert_outbox.c - alert_state and alert_outbox tables (see alert_outbox.h for why this
 * ordering loses nothing). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "alert_outbox.h"

struct alert_db {
    sqlite3 *db;
};

static const char SCHEMA[] =
    /* What Alertmanager was (or is being) told about each alert. ends_ms NULL = firing. */
    "CREATE TABLE IF NOT EXISTS alert_state("
    "  key TEXT PRIMARY KEY, labels TEXT NOT NULL, annotations TEXT NOT NULL, url TEXT NOT NULL,"
    "  starts_ms INTEGER NOT NULL, ends_ms INTEGER, updated_ms INTEGER NOT NULL);"
    /* Fired/resolved events not yet accepted by Alertmanager, in order (id). */
    "CREATE TABLE IF NOT EXISTS alert_outbox("
    "  id INTEGER PRIMARY KEY, key TEXT NOT NULL, labels TEXT NOT NULL, annotations TEXT NOT NULL,"
    "  url TEXT NOT NULL, starts_ms INTEGER NOT NULL, ends_ms INTEGER, created_ms INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL DEFAULT 0);";

alert_db *alert_db_open(coll_store *st, char *err, size_t errlen)
{
    alert_db *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->db = store_db(st);
    if (!d->db) {
        snprintf(err, errlen, "alerts need the SQLite backend (the PostgreSQL outbox is not written yet)");
        free(d);
        return NULL;
    }
    char *msg = NULL;
    /* synchronous=FULL (the store's setting too): an event is on disk when its
     * transaction returns. */
    if (sqlite3_exec(d->db, "PRAGMA synchronous=FULL;", NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(d->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "alert tables: %s", msg ? msg : sqlite3_errmsg(d->db));
        sqlite3_free(msg);
        free(d);
        return NULL;
    }
    return d;
}

void alert_db_close(alert_db *d)
{
    free(d);
}

const char *alert_db_errmsg(alert_db *d) { return sqlite3_errmsg(d->db); }

static char *dup_col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

static void row_load(sqlite3_stmt *st, alert_row *r)
{
    /* columns: id, key, labels, annotations, url, starts_ms, ends_ms */
    r->id = sqlite3_column_int64(st, 0);
    r->key = dup_col(st, 1);
    r->labels = dup_col(st, 2);
    r->annotations = dup_col(st, 3);
    r->url = dup_col(st, 4);
    r->starts_ms = sqlite3_column_int64(st, 5);
    r->ends_ms = sqlite3_column_type(st, 6) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 6);
}

void alert_rows_free(alert_row *rows, int n)
{
    for (int i = 0; i < n; i++) {
        free(rows[i].key);
        free(rows[i].labels);
        free(rows[i].annotations);
        free(rows[i].url);
        memset(&rows[i], 0, sizeof(rows[i]));
    }
}

static int cmp_want(const void *a, const void *b)
{
    return strcmp(((const alert_want *)a)->key, ((const alert_want *)b)->key);
}

static int exec1(alert_db *d, const char *sql)
{
    return sqlite3_exec(d->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* Appends an event for the state row KEY as it is now (inside the caller's transaction). */
static int enqueue(alert_db *d, const char *key, int64_t now)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(d->db,
                                "INSERT INTO alert_outbox(key,labels,annotations,url,starts_ms,ends_ms,created_ms)"
                                " SELECT key,labels,annotations,url,starts_ms,ends_ms,?2 FROM alert_state WHERE key=?1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, now);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The transaction is opened lazily, at the first change: most evaluations change nothing
 * and must not take the write lock ingest needs. This thread is the only writer of these
 * tables, so what it read before BEGIN is still true after. */
static int txn(alert_db *d, int *in_txn)
{
    if (*in_txn)
        return 0;
    if (exec1(d, "BEGIN IMMEDIATE"))
        return -1;
    *in_txn = 1;
    return 0;
}

int alert_db_apply(alert_db *d, const alert_want *wants_in, size_t n, int64_t now, const char *keep_prefix,
                   unsigned *fired, unsigned *resolved)
{
    *fired = *resolved = 0;
    alert_want *w = NULL;
    if (n && !(w = malloc(n * sizeof(*w))))
        return -1;
    if (n)
        memcpy(w, wants_in, n * sizeof(*w));
    if (n)
        qsort(w, n, sizeof(*w), cmp_want);
    char *seen = calloc(n ? n : 1, 1);
    sqlite3_stmt *cur = NULL, *fire = NULL, *ann = NULL, *res = NULL;
    int ret = -1, in_txn = 0;
    if (!seen ||
        sqlite3_prepare_v2(d->db, "SELECT key, annotations FROM alert_state WHERE ends_ms IS NULL", -1, &cur, NULL) ||
        sqlite3_prepare_v2(d->db,
                           "INSERT INTO alert_state(key,labels,annotations,url,starts_ms,ends_ms,updated_ms)"
                           " VALUES(?1,?2,?3,?4,?5,NULL,?5) ON CONFLICT(key) DO UPDATE SET labels=excluded.labels,"
                           " annotations=excluded.annotations, url=excluded.url, starts_ms=excluded.starts_ms,"
                           " ends_ms=NULL, updated_ms=excluded.updated_ms",
                           -1, &fire, NULL) ||
        sqlite3_prepare_v2(d->db, "UPDATE alert_state SET annotations=?2, url=?3, updated_ms=?4 WHERE key=?1", -1, &ann,
                           NULL) ||
        sqlite3_prepare_v2(d->db,
                           "UPDATE alert_state SET ends_ms=max(?2, starts_ms), updated_ms=?2 WHERE key=?1", -1, &res,
                           NULL))
        goto out;
    /* Gather the firing alerts first, so the cursor is finished before any write. */
    size_t cap = 16, nf = 0;
    char **fk = malloc(cap * sizeof(*fk)), **fa = malloc(cap * sizeof(*fa));
    if (!fk || !fa) {
        free(fk);
        free(fa);
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(cur)) == SQLITE_ROW) {
        if (nf == cap) {
            cap *= 2;
            char **k2 = realloc(fk, cap * sizeof(*fk));
            if (k2)
                fk = k2;
            char **a2 = realloc(fa, cap * sizeof(*fa));
            if (a2)
                fa = a2;
            if (!k2 || !a2)
                break;
        }
        fk[nf] = dup_col(cur, 0);
        fa[nf] = dup_col(cur, 1);
        nf++;
    }
    int read_ok = rc == SQLITE_DONE;
    sqlite3_finalize(cur);
    cur = NULL;
    int err = !read_ok;
    for (size_t i = 0; i < nf && !err; i++) {
        alert_want key;
        snprintf(key.key, sizeof(key.key), "%s", fk[i]);
        alert_want *m = n ? bsearch(&key, w, n, sizeof(*w), cmp_want) : NULL;
        if (m) {
            seen[m - w] = 1;
            if (strcmp(fa[i], m->annotations) && !(err = txn(d, &in_txn))) {
                sqlite3_bind_text(ann, 1, m->key, -1, SQLITE_STATIC);
                sqlite3_bind_text(ann, 2, m->annotations, -1, SQLITE_STATIC);
                sqlite3_bind_text(ann, 3, m->url, -1, SQLITE_STATIC);
                sqlite3_bind_int64(ann, 4, now);
                err = step_done(ann);
            }
        } else if (keep_prefix && !strncmp(fk[i], keep_prefix, strlen(keep_prefix))) {
            continue; /* not in an incomplete answer: unknown, not gone */
        } else if (!(err = txn(d, &in_txn))) {
            sqlite3_bind_text(res, 1, fk[i], -1, SQLITE_STATIC);
            sqlite3_bind_int64(res, 2, now);
            err = step_done(res) || enqueue(d, fk[i], now);
            (*resolved)++;
        }
    }
    for (size_t i = 0; i < nf; i++) {
        free(fk[i]);
        free(fa[i]);
    }
    free(fk);
    free(fa);
    if (err)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (seen[i])
            continue;
        if (txn(d, &in_txn))
            goto out;
        sqlite3_bind_text(fire, 1, w[i].key, -1, SQLITE_STATIC);
        sqlite3_bind_text(fire, 2, w[i].labels, -1, SQLITE_STATIC);
        sqlite3_bind_text(fire, 3, w[i].annotations, -1, SQLITE_STATIC);
        sqlite3_bind_text(fire, 4, w[i].url, -1, SQLITE_STATIC);
        sqlite3_bind_int64(fire, 5, now);
        if (step_done(fire) || enqueue(d, w[i].key, now))
            goto out;
        (*fired)++;
    }
    if (in_txn) {
        /* Resolved alerts are re-sent for a while, then forgotten (a new occurrence fires
         * anew with a new startsAt). */
        sqlite3_stmt *pr = NULL;
        if (sqlite3_prepare_v2(d->db, "DELETE FROM alert_state WHERE ends_ms IS NOT NULL AND ends_ms < ?1", -1, &pr,
                               NULL) != SQLITE_OK) {
            sqlite3_finalize(pr);
            goto out;
        }
        sqlite3_bind_int64(pr, 1, now - ALERT_RESOLVED_KEEP_MS);
        rc = sqlite3_step(pr);
        sqlite3_finalize(pr);
        if (rc != SQLITE_DONE || exec1(d, "COMMIT"))
            goto out;
        in_txn = 0;
    }
    ret = 0;
out:
    if (in_txn)
        exec1(d, "ROLLBACK");
    if (ret)
        *fired = *resolved = 0;
    sqlite3_finalize(cur);
    sqlite3_finalize(fire);
    sqlite3_finalize(ann);
    sqlite3_finalize(res);
    free(seen);
    free(w);
    return ret;
}

int alert_outbox_claim(alert_db *d, int64_t now, alert_row *rows, int max)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->db,
                           "SELECT id,key,labels,annotations,url,starts_ms,ends_ms,next_ms FROM alert_outbox"
                           " ORDER BY id LIMIT ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int(st, 1, max);
    int n = 0;
    while (n < max && sqlite3_step(st) == SQLITE_ROW) {
        /* Strictly in order: a later event (the resolution) must not overtake an earlier
         * one that waits for its retry time. */
        if (sqlite3_column_int64(st, 7) > now)
            break;
        /* A second event of the same alert (fired, then resolved) waits for the next POST:
         * Alertmanager would otherwise see only the resolution and never page. */
        const char *key = (const char *)sqlite3_column_text(st, 1);
        int dup = 0;
        for (int i = 0; i < n && !dup; i++)
            dup = key && !strcmp(rows[i].key, key);
        if (dup)
            break;
        row_load(st, &rows[n++]);
    }
    sqlite3_finalize(st);
    return n;
}

static int per_row(alert_db *d, const char *sql, const alert_row *rows, int n, int64_t v)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    int err = exec1(d, "BEGIN IMMEDIATE");
    for (int i = 0; i < n && !err; i++) {
        sqlite3_bind_int64(st, 1, rows[i].id);
        sqlite3_bind_int64(st, 2, v);
        err = step_done(st);
    }
    sqlite3_finalize(st);
    if (err || exec1(d, "COMMIT")) {
        exec1(d, "ROLLBACK");
        return -1;
    }
    return 0;
}

int alert_outbox_done(alert_db *d, const alert_row *rows, int n)
{
    return per_row(d, "DELETE FROM alert_outbox WHERE id=?1 AND ?2=?2", rows, n, 0);
}

int alert_outbox_retry(alert_db *d, const alert_row *rows, int n, int64_t next_ms)
{
    return per_row(d, "UPDATE alert_outbox SET attempts=attempts+1, next_ms=?2 WHERE id=?1", rows, n, next_ms);
}

int64_t alert_outbox_pending(alert_db *d)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(d->db, "SELECT count(*) FROM alert_outbox", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int alert_db_active(alert_db *d, int64_t now, alert_row **out)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->db,
                           "SELECT 0,key,labels,annotations,url,starts_ms,ends_ms FROM alert_state"
                           " WHERE ends_ms IS NULL OR ends_ms >= ?1 ORDER BY key",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, now - ALERT_RESOLVED_KEEP_MS);
    int n = 0, cap = 0, rc;
    alert_row *rows = NULL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            int ncap = cap ? cap * 2 : 16;
            alert_row *r2 = realloc(rows, (size_t)ncap * sizeof(*rows));
            if (!r2) {
                rc = SQLITE_NOMEM;
                break;
            }
            rows = r2;
            cap = ncap;
        }
        row_load(st, &rows[n++]);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        alert_rows_free(rows, n);
        free(rows);
        return -1;
    }
    *out = rows;
    return n;
}
