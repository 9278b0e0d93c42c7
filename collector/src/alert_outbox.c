/* alert_outbox.c - alert_state and alert_outbox tables (see alert_outbox.h for why this
 * ordering loses nothing), on either backend through store_sq.h.
 *
 * Several collector nodes on one PostgreSQL: alerts are sent once for the fleet, because only
 * the node that holds the alert advisory lock (store_lead) evaluates into the tables, delivers
 * the outbox and re-sends; the others keep their hands off until its session ends (the node
 * died or lost the database), when one of them takes the lock over and carries on from the
 * same tables. On SQLite the one process is always the leader. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "alert_outbox.h"
#include "store_sq.h"

struct alert_db {
    coll_store *st;
};

/* SQLite: created idempotently beside the store's schema (PostgreSQL: in its migration v2) */
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
    d->st = st;
    sqlite3 *db = store_db(st);
    char *msg = NULL;
    /* synchronous=FULL (the store's setting too): an event is on disk when its
     * transaction returns. */
    if (db && (sqlite3_exec(db, "PRAGMA synchronous=FULL;", NULL, NULL, &msg) != SQLITE_OK ||
               sqlite3_exec(db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK)) {
        snprintf(err, errlen, "alert tables: %s", msg ? msg : sqlite3_errmsg(db));
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

const char *alert_db_errmsg(alert_db *d) { return store_errmsg(d->st); }

static char *dup_col(sq *st, int i)
{
    const char *t = sq_str(st, i);
    return strdup(t ? t : "");
}

static void row_load(sq *st, alert_row *r)
{
    /* columns: id, key, labels, annotations, url, starts_ms, ends_ms */
    r->id = sq_int(st, 0);
    r->key = dup_col(st, 1);
    r->labels = dup_col(st, 2);
    r->annotations = dup_col(st, 3);
    r->url = dup_col(st, 4);
    r->starts_ms = sq_int(st, 5);
    r->ends_ms = sq_isnull(st, 6) ? 0 : sq_int(st, 6);
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

/* One statement with text (t) and int64 (i) parameters from fmt, no rows: 0 or -1. */
static int run(alert_db *d, const char *sql, const char *fmt, ...)
{
    sq *st = sq_prep(d->st, sql);
    if (!st)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    for (int i = 0; fmt[i]; i++) {
        if (fmt[i] == 't')
            sq_text(st, i + 1, va_arg(ap, const char *));
        else
            sq_i64(st, i + 1, va_arg(ap, int64_t));
    }
    va_end(ap);
    int rc = sq_exec(st, NULL);
    sq_done(st);
    return rc;
}

/* Appends an event for the state row KEY as it is now (inside the caller's transaction). */
static int enqueue(alert_db *d, const char *key, int64_t now)
{
    return run(d,
               "INSERT INTO alert_outbox(key,labels,annotations,url,starts_ms,ends_ms,created_ms)"
               " SELECT key,labels,annotations,url,starts_ms,ends_ms,?2 FROM alert_state WHERE key=?1",
               "ti", key, now);
}

/* The transaction is opened lazily, at the first change: most evaluations change nothing
 * and must not take the write lock ingest needs. This thread (the leader's, on PostgreSQL) is
 * the only writer of these tables, so what it read before BEGIN is still true after. */
static int txn(alert_db *d, int *in_txn)
{
    if (*in_txn)
        return 0;
    if (store_begin(d->st))
        return -1;
    *in_txn = 1;
    return 0;
}

int alert_db_apply(alert_db *d, const alert_want *wants_in, size_t n, int64_t now, const char *keep_prefix,
                   unsigned *fired, unsigned *resolved)
{
    *fired = *resolved = 0;
    int lead = store_lead(d->st);
    if (lead <= 0)
        return lead; /* another node evaluates for the fleet */
    alert_want *w = NULL;
    if (n && !(w = malloc(n * sizeof(*w))))
        return -1;
    if (n)
        memcpy(w, wants_in, n * sizeof(*w));
    if (n)
        qsort(w, n, sizeof(*w), cmp_want);
    char *seen = calloc(n ? n : 1, 1);
    sq *cur = NULL;
    int ret = -1, in_txn = 0;
    if (!seen || !(cur = sq_prep(d->st, "SELECT key, annotations FROM alert_state WHERE ends_ms IS NULL")))
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
    while ((rc = sq_step(cur)) == 1) {
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
    int err = rc != 0;
    sq_done(cur);
    cur = NULL;
    for (size_t i = 0; i < nf && !err; i++) {
        alert_want key;
        snprintf(key.key, sizeof(key.key), "%s", fk[i]);
        alert_want *m = n ? bsearch(&key, w, n, sizeof(*w), cmp_want) : NULL;
        if (m) {
            seen[m - w] = 1;
            if (strcmp(fa[i], m->annotations) && !(err = txn(d, &in_txn)))
                err = run(d, "UPDATE alert_state SET annotations=?2, url=?3, updated_ms=?4 WHERE key=?1", "ttti",
                          m->key, m->annotations, m->url, now);
        } else if (keep_prefix && !strncmp(fk[i], keep_prefix, strlen(keep_prefix))) {
            continue; /* not in an incomplete answer: unknown, not gone */
        } else if (!(err = txn(d, &in_txn))) {
            err = run(d,
                      "UPDATE alert_state SET ends_ms=CASE WHEN ?2>starts_ms THEN ?2 ELSE starts_ms END,"
                      " updated_ms=?2 WHERE key=?1",
                      "ti", fk[i], now) ||
                  enqueue(d, fk[i], now);
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
        if (txn(d, &in_txn) ||
            run(d,
                "INSERT INTO alert_state(key,labels,annotations,url,starts_ms,ends_ms,updated_ms)"
                " VALUES(?1,?2,?3,?4,?5,NULL,?5) ON CONFLICT(key) DO UPDATE SET labels=excluded.labels,"
                " annotations=excluded.annotations, url=excluded.url, starts_ms=excluded.starts_ms,"
                " ends_ms=NULL, updated_ms=excluded.updated_ms",
                "tttti", w[i].key, w[i].labels, w[i].annotations, w[i].url, now) ||
            enqueue(d, w[i].key, now))
            goto out;
        (*fired)++;
    }
    if (in_txn) {
        /* Resolved alerts are re-sent for a while, then forgotten (a new occurrence fires
         * anew with a new startsAt). */
        if (run(d, "DELETE FROM alert_state WHERE ends_ms IS NOT NULL AND ends_ms < ?1", "i",
                now - ALERT_RESOLVED_KEEP_MS) ||
            store_commit(d->st))
            goto out;
        in_txn = 0;
    }
    ret = 0;
out:
    if (in_txn)
        store_rollback(d->st);
    if (ret)
        *fired = *resolved = 0;
    sq_done(cur);
    free(seen);
    free(w);
    return ret;
}

int alert_outbox_claim(alert_db *d, int64_t now, alert_row *rows, int max)
{
    int lead = store_lead(d->st);
    if (lead <= 0)
        return lead;
    sq *st = sq_prep(d->st, "SELECT id,key,labels,annotations,url,starts_ms,ends_ms,next_ms FROM alert_outbox"
                            " ORDER BY id LIMIT ?1");
    if (!st)
        return -1;
    sq_i64(st, 1, max);
    int n = 0;
    while (n < max && sq_step(st) == 1) {
        /* Strictly in order: a later event (the resolution) must not overtake an earlier
         * one that waits for its retry time. */
        if (sq_int(st, 7) > now)
            break;
        /* A second event of the same alert (fired, then resolved) waits for the next POST:
         * Alertmanager would otherwise see only the resolution and never page. */
        const char *key = sq_str(st, 1);
        int dup = 0;
        for (int i = 0; i < n && !dup; i++)
            dup = key && !strcmp(rows[i].key, key);
        if (dup)
            break;
        row_load(st, &rows[n++]);
    }
    sq_done(st);
    return n;
}

static int per_row(alert_db *d, const char *sql, const alert_row *rows, int n, int64_t v)
{
    int err = store_begin(d->st);
    for (int i = 0; i < n && !err; i++)
        err = run(d, sql, "ii", rows[i].id, v);
    if (err || store_commit(d->st)) {
        store_rollback(d->st);
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
    sq *st = sq_prep(d->st, "SELECT count(*) FROM alert_outbox");
    int64_t v = -1;
    if (st && sq_step(st) == 1)
        v = sq_int(st, 0);
    sq_done(st);
    return v;
}

int alert_db_active(alert_db *d, int64_t now, alert_row **out)
{
    *out = NULL;
    int lead = store_lead(d->st);
    if (lead <= 0)
        return lead;
    sq *st = sq_prep(d->st, "SELECT 0,key,labels,annotations,url,starts_ms,ends_ms FROM alert_state"
                            " WHERE ends_ms IS NULL OR ends_ms >= ?1 ORDER BY key");
    if (!st)
        return -1;
    sq_i64(st, 1, now - ALERT_RESOLVED_KEEP_MS);
    int n = 0, cap = 0, rc;
    alert_row *rows = NULL;
    while ((rc = sq_step(st)) == 1) {
        if (n == cap) {
            int ncap = cap ? cap * 2 : 16;
            alert_row *r2 = realloc(rows, (size_t)ncap * sizeof(*rows));
            if (!r2) {
                rc = -1;
                break;
            }
            rows = r2;
            cap = ncap;
        }
        row_load(st, &rows[n++]);
    }
    sq_done(st);
    if (rc != 0) {
        alert_rows_free(rows, n);
        free(rows);
        return -1;
    }
    *out = rows;
    return n;
}
