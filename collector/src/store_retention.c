/* store_retention.c - retention: raw payloads dropped after payload_days, per-snapshot series
 * and site counts rolled up into rollup_step_s buckets (min/max/last) after full_days, rollups
 * deleted after rollup_days. Findings, their history and count series stay until deleted.
 *
 * Never stalls ingest: work goes in steps of at most batch_rows rows, each in its own short
 * transaction, on the pruner thread's own connection. Ingest's BEGIN IMMEDIATE waits at most
 * one step (a few ms) for the write lock; the two never hold it for long. Every step is found
 * by primary-key seeks (a cursor over targets and one over snapshot rowids, kept in meta), so
 * its cost does not grow with the database. A step's rollup and its deletes commit together:
 * a crash in between loses nothing and does nothing twice. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_int.h"
#include "store_pg_int.h"
#include "store_sq.h"

void store_retention_defaults(store_retention *r)
{
    r->payload_days = 7;
    r->full_days = 30;
    r->rollup_days = 365;
    r->rollup_step_s = 600;
    r->batch_rows = 500;
}

/* meta and the payload walk run on either backend (store_sq.h): PostgreSQL drops whole
 * partitions for the rest of retention, but a payload goes after payload_days on both. */
static int64_t meta_get(coll_store *s, const char *key)
{
    sq *st = sq_prep(s, "SELECT CAST(value AS BIGINT) FROM meta WHERE key=?1");
    int64_t v = 0;
    if (st) {
        sq_text(st, 1, key);
        if (sq_step(st) == 1)
            v = sq_int(st, 0);
    }
    sq_done(st);
    return v;
}

static int meta_set(coll_store *s, const char *key, int64_t v)
{
    char text[24];
    snprintf(text, sizeof(text), "%lld", (long long)v);
    sq *st = sq_prep(s, "INSERT INTO meta(key,value) VALUES(?1,?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value");
    if (!st)
        return -1;
    sq_text(st, 1, key);
    sq_text(st, 2, text);
    int rc = sq_exec(st, NULL);
    sq_done(st);
    return rc;
}

/* Payloads: snapshot ids grow with arrival, and `received` with them; walk them in windows of
 * batch rows and clear a window once all of it is older than the cutoff. */
static int prune_payloads(coll_store *s, int64_t cutoff, int batch)
{
    int64_t cur = meta_get(s, "prune_payload_id");
    sq *st = sq_prep(s, "SELECT max(received), max(id), (SELECT max(id) FROM snapshots) FROM snapshots"
                        " WHERE id>?1 AND id<=?1+?2");
    if (!st)
        return -1;
    sq_i64(st, 1, cur);
    sq_i64(st, 2, batch);
    int rc = sq_step(st);
    int64_t maxrecv = rc == 1 ? sq_int(st, 0) : 0, maxid = rc == 1 ? sq_int(st, 1) : 0;
    int64_t top = rc == 1 ? sq_int(st, 2) : 0, empty = rc == 1 && sq_isnull(st, 1);
    sq_done(st);
    if (rc != 1)
        return -1;
    if (empty) /* a gap in the ids (or the end): skip the window if there is more beyond */
        return cur + batch < top ? (meta_set(s, "prune_payload_id", cur + batch) ? -1 : 0) : 0;
    if (maxrecv >= cutoff)
        return 0;
    if (!(st = sq_prep(s, "UPDATE snapshots SET payload=NULL WHERE id>?1 AND id<=?2 AND payload IS NOT NULL"
                          " RETURNING id")))
        return -1;
    sq_i64(st, 1, cur);
    sq_i64(st, 2, maxid);
    int n = 0;
    while ((rc = sq_step(st)) == 1)
        n++;
    sq_done(st);
    if (rc != 0 || meta_set(s, "prune_payload_id", maxid))
        return -1;
    return n > 0 ? n : 1; /* a window walked is progress even with no payload in it */
}

/* The running aggregate of one bucket. */
typedef struct agg {
    int64_t b;   /* bucket start, -1 = none */
    int64_t n;
    int64_t mn[5], mx[5], last[5]; /* goroutines, heap_inuse, rss_kb, threads, count */
    int has[5];
    int64_t heap_alloc_last, fds_last;
    char by_state[ET_G_STATE_COUNT * 48 + 4];
} agg;

static void agg_add(agg *a, int i, sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return;
    int64_t v = sqlite3_column_int64(st, col);
    if (!a->has[i] || v < a->mn[i])
        a->mn[i] = v;
    if (!a->has[i] || v > a->mx[i])
        a->mx[i] = v;
    a->last[i] = v;
    a->has[i] = 1;
}

static void bind_or_null(sqlite3_stmt *st, int idx, int has, int64_t v)
{
    if (has)
        sqlite3_bind_int64(st, idx, v);
    else
        sqlite3_bind_null(st, idx);
}

/* Merge with a rollup row a previous step may have written for the same bucket (a step can
 * end mid-bucket): min of mins, max of maxes, and the later step's last. */
static int flush_series(coll_store *s, int64_t target, agg *a)
{
    if (a->b < 0)
        return 0;
    static const char sql[] =
        "INSERT INTO series_rollup(target,t,n,goroutines_min,goroutines_max,goroutines_last,heap_inuse_min,"
        "heap_inuse_max,heap_inuse_last,heap_alloc_last,rss_kb_min,rss_kb_max,rss_kb_last,threads_min,threads_max,"
        "threads_last,fds_last,by_state) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)"
        " ON CONFLICT(target,t) DO UPDATE SET n=n+excluded.n,"
        " goroutines_min=min(coalesce(goroutines_min,excluded.goroutines_min),excluded.goroutines_min),"
        " goroutines_max=max(coalesce(goroutines_max,excluded.goroutines_max),excluded.goroutines_max),"
        " goroutines_last=coalesce(excluded.goroutines_last,goroutines_last),"
        " heap_inuse_min=min(coalesce(heap_inuse_min,excluded.heap_inuse_min),excluded.heap_inuse_min),"
        " heap_inuse_max=max(coalesce(heap_inuse_max,excluded.heap_inuse_max),excluded.heap_inuse_max),"
        " heap_inuse_last=coalesce(excluded.heap_inuse_last,heap_inuse_last),"
        " heap_alloc_last=coalesce(excluded.heap_alloc_last,heap_alloc_last),"
        " rss_kb_min=min(coalesce(rss_kb_min,excluded.rss_kb_min),excluded.rss_kb_min),"
        " rss_kb_max=max(coalesce(rss_kb_max,excluded.rss_kb_max),excluded.rss_kb_max),"
        " rss_kb_last=coalesce(excluded.rss_kb_last,rss_kb_last),"
        " threads_min=min(coalesce(threads_min,excluded.threads_min),excluded.threads_min),"
        " threads_max=max(coalesce(threads_max,excluded.threads_max),excluded.threads_max),"
        " threads_last=coalesce(excluded.threads_last,threads_last),"
        " fds_last=coalesce(excluded.fds_last,fds_last), by_state=coalesce(excluded.by_state,by_state)";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, target);
    sqlite3_bind_int64(st, 2, a->b);
    sqlite3_bind_int64(st, 3, a->n);
    for (int i = 0; i < 4; i++) {
        int base = i == 0 ? 4 : i == 1 ? 7 : i == 2 ? 11 : 14;
        bind_or_null(st, base, a->has[i], a->mn[i]);
        bind_or_null(st, base + 1, a->has[i], a->mx[i]);
        bind_or_null(st, base + 2, a->has[i], a->last[i]);
    }
    bind_or_null(st, 10, a->heap_alloc_last >= 0, a->heap_alloc_last);
    bind_or_null(st, 17, a->fds_last >= 0, a->fds_last);
    if (a->by_state[0])
        sqlite3_bind_text(st, 18, a->by_state, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void agg_reset(agg *a, int64_t b)
{
    memset(a, 0, sizeof(*a));
    a->b = b;
    a->heap_alloc_last = a->fds_last = -1;
}

/* Rolls up (and deletes) up to budget of the target's series rows older than end. */
static int rollup_series(coll_store *s, int64_t target, int64_t end, int64_t step, int budget)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT t, snap, goroutines, heap_inuse, rss_kb, threads, heap_alloc, fds, by_state"
                           " FROM series WHERE target=?1 AND t<?2 ORDER BY t, snap LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, target);
    sqlite3_bind_int64(st, 2, end);
    sqlite3_bind_int(st, 3, budget);
    agg a;
    agg_reset(&a, -1);
    int n = 0, rc;
    int64_t last_t = 0, last_snap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t t = sqlite3_column_int64(st, 0), b = t - t % step;
        if (b != a.b) {
            if (flush_series(s, target, &a))
                break;
            agg_reset(&a, b);
        }
        a.n++;
        for (int i = 0; i < 4; i++)
            agg_add(&a, i, st, 2 + i);
        if (sqlite3_column_type(st, 6) != SQLITE_NULL)
            a.heap_alloc_last = sqlite3_column_int64(st, 6);
        if (sqlite3_column_type(st, 7) != SQLITE_NULL)
            a.fds_last = sqlite3_column_int64(st, 7);
        const char *bs = (const char *)sqlite3_column_text(st, 8);
        if (bs)
            snprintf(a.by_state, sizeof(a.by_state), "%s", bs);
        last_t = t;
        last_snap = sqlite3_column_int64(st, 1);
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || flush_series(s, target, &a))
        return -1;
    if (!n)
        return 0;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM series WHERE target=?1 AND (t, snap) <= (?2, ?3)", -1, &st, NULL) !=
        SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, target);
    sqlite3_bind_int64(st, 2, last_t);
    sqlite3_bind_int64(st, 3, last_snap);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? n : -1;
}

static int flush_site(coll_store *s, int64_t target, int64_t key, agg *a)
{
    if (a->b < 0)
        return 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO site_rollup(target,key,t,count_min,count_max,count_last)"
                           " VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT(target,key,t) DO UPDATE SET"
                           " count_min=min(count_min,excluded.count_min), count_max=max(count_max,excluded.count_max),"
                           " count_last=excluded.count_last",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, target);
    sqlite3_bind_int64(st, 2, key);
    sqlite3_bind_int64(st, 3, a->b);
    sqlite3_bind_int64(st, 4, a->mn[4]);
    sqlite3_bind_int64(st, 5, a->mx[4]);
    sqlite3_bind_int64(st, 6, a->last[4]);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The same for each of the target's sites (one primary-key range per site). */
static int rollup_sites(coll_store *s, int64_t target, int64_t end, int64_t step, int budget)
{
    sqlite3_stmt *keys = NULL, *st = NULL, *del = NULL;
    int total = 0, rc = SQLITE_DONE;
    if (sqlite3_prepare_v2(s->db, "SELECT key FROM sites WHERE target=?1", -1, &keys, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "SELECT t, count FROM site_counts WHERE target=?1 AND key=?2 AND t<?3 ORDER BY t LIMIT ?4",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM site_counts WHERE target=?1 AND key=?2 AND t<=?3", -1, &del, NULL) !=
            SQLITE_OK) {
        total = -1;
        goto out;
    }
    sqlite3_bind_int64(keys, 1, target);
    while (total < budget && (rc = sqlite3_step(keys)) == SQLITE_ROW) {
        int64_t key = sqlite3_column_int64(keys, 0), last_t = 0;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, target);
        sqlite3_bind_int64(st, 2, key);
        sqlite3_bind_int64(st, 3, end);
        sqlite3_bind_int(st, 4, budget - total);
        agg a;
        agg_reset(&a, -1);
        int n = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t t = sqlite3_column_int64(st, 0), b = t - t % step;
            if (b != a.b) {
                if (flush_site(s, target, key, &a))
                    break;
                agg_reset(&a, b);
            }
            agg_add(&a, 4, st, 1);
            last_t = t;
            n++;
        }
        if (rc != SQLITE_DONE || flush_site(s, target, key, &a)) {
            total = -1;
            goto out;
        }
        if (n) {
            /* (target, key, t) is the key: no two rows share a t, so <= last_t is exactly what
             * was read */
            sqlite3_reset(del);
            sqlite3_bind_int64(del, 1, target);
            sqlite3_bind_int64(del, 2, key);
            sqlite3_bind_int64(del, 3, last_t);
            if (sqlite3_step(del) != SQLITE_DONE) {
                total = -1;
                goto out;
            }
            total += n;
        }
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        total = -1;
out:
    sqlite3_finalize(keys);
    sqlite3_finalize(st);
    sqlite3_finalize(del);
    return total;
}

static int delete_old_rollups(coll_store *s, int64_t target, int64_t cutoff)
{
    int n = 0;
    static const char *const sql[2] = {"DELETE FROM series_rollup WHERE target=?1 AND t<?2",
                                       "DELETE FROM site_rollup WHERE target=?1 AND t<?2"};
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, sql[i], -1, &st, NULL) != SQLITE_OK)
            return -1;
        sqlite3_bind_int64(st, 1, target);
        sqlite3_bind_int64(st, 2, cutoff);
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return -1;
        n += sqlite3_changes(s->db);
    }
    return n;
}

static int64_t next_target(coll_store *s, int64_t after)
{
    sqlite3_stmt *st = NULL;
    int64_t id = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT min(id) FROM targets WHERE id>?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, after);
        if (sqlite3_step(st) == SQLITE_ROW)
            id = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return id;
}

#define VISITS_PER_STEP 64

int store_prune_step(coll_store *s, const store_retention *r, int64_t now_ms)
{
    if (s->pg) {
        /* partitions (and their rollups) first, then one window of payloads */
        int n = store_pg_prune_step(s->pg, r, now_ms);
        int m = n >= 0 && r->payload_days > 0
                    ? prune_payloads(s, now_ms - r->payload_days * DAY_MS, r->batch_rows > 0 ? r->batch_rows : 500)
                    : 0;
        if (n < 0 || m < 0 || (m && meta_set(s, "prune_rows_total", meta_get(s, "prune_rows_total") + m)))
            return -1;
        s->pg->pruned += m;
        return n + m;
    }
    if (s->readonly || s->in_txn)
        return -1;
    int batch = r->batch_rows > 0 ? r->batch_rows : 500;
    int64_t step = (r->rollup_step_s > 0 ? r->rollup_step_s : 600) * 1000LL;
    if (store_exec(s, "BEGIN IMMEDIATE"))
        return -1;
    int touched = 0, rolled = 0;
    if (r->payload_days > 0) {
        int n = prune_payloads(s, now_ms - r->payload_days * DAY_MS, batch);
        if (n < 0)
            goto fail;
        touched += n;
    }
    /* only whole buckets older than the cutoff are rolled up */
    int64_t full_end = now_ms - (r->full_days > 0 ? r->full_days : 30) * DAY_MS;
    full_end -= full_end % step;
    int64_t cur = meta_get(s, "prune_target");
    int visits = 0, wrapped = 0;
    for (; visits < VISITS_PER_STEP && touched < batch; visits++) {
        int64_t t = next_target(s, cur);
        if (!t) { /* a whole pass done */
            cur = 0;
            wrapped = 1;
            break;
        }
        int n1 = rollup_series(s, t, full_end, step, batch - touched);
        if (n1 < 0)
            goto fail;
        int n2 = touched + n1 < batch ? rollup_sites(s, t, full_end, step, batch - touched - n1) : 0;
        if (n2 < 0)
            goto fail;
        int n3 = r->rollup_days > 0 ? delete_old_rollups(s, t, now_ms - r->rollup_days * DAY_MS) : 0;
        if (n3 < 0)
            goto fail;
        touched += n1 + n2 + n3;
        rolled += n1 + n2;
        if (touched >= batch)
            break; /* this target may have more: come back to it next step */
        cur = t;
    }
    if (meta_set(s, "prune_target", cur) ||
        (touched && meta_set(s, "prune_rows_total", meta_get(s, "prune_rows_total") + touched)) ||
        store_exec(s, "COMMIT"))
        goto fail;
    s->pruned += touched;
    s->rolled_up += rolled;
    /* a pass not finished yet is work left, even when the targets visited had nothing old */
    return touched ? touched : !wrapped && visits >= VISITS_PER_STEP;
fail:
    store_exec(s, "ROLLBACK");
    return -1;
}

void store_prune_progress(coll_store *s, int64_t *rows_pruned, int64_t *rows_rolled_up)
{
    if (s->pg) {
        if (rows_pruned)
            *rows_pruned = s->pg->pruned;
        if (rows_rolled_up)
            *rows_rolled_up = s->pg->rolled_up;
        return;
    }
    if (rows_pruned)
        *rows_pruned = s->pruned;
    if (rows_rolled_up)
        *rows_rolled_up = s->rolled_up;
}

/* ---- the pruner thread ----------------------------------------------------------------- */

struct store_pruner {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    coll_store *s;
    store_retention r;
};

static int64_t wall_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits ms or until stop; returns stop. */
static int pruner_wait(store_pruner *p, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    while (!p->stop && pthread_cond_timedwait(&p->cv, &p->mu, &ts) != ETIMEDOUT)
        ;
    int stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

static void *pruner_main(void *arg)
{
    store_pruner *p = arg;
    while (!p->stop) {
        int n = store_prune_step(p->s, &p->r, wall_now_ms());
        int busy = n < 0 && sqlite3_errcode(p->s->db) == SQLITE_BUSY;
        if (n < 0 && !busy)
            fprintf(stderr, "edgetrace-collector: prune: %s (retrying in 60 s)\n", store_errmsg(p->s));
        /* Ingest kept the write lock for the whole busy timeout: it has priority; try again
         * soon rather than in a minute, so a sustained burst only delays pruning. */
        if (busy && pruner_wait(p, 1000))
            break;
        if (busy)
            continue;
        /* Between steps ingest has the write lock to itself: 100 ms apart, 500 rows a step is
         * 5,000 rows/s, far above what a fleet adds (1,000 targets at 30 s with 16 sites: ~600
         * rows/s), while ingest meets a busy lock in at most one step's few ms out of 100. When
         * nothing is old, look again in a minute. */
        if (pruner_wait(p, n > 0 ? 100 : 60000))
            break;
    }
    return NULL;
}

store_pruner *store_pruner_start(const char *path, const store_retention *r, char *err, size_t errlen)
{
    store_pruner *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->r = *r;
    p->s = store_open(path, err, errlen);
    if (!p->s) {
        free(p);
        return NULL;
    }
    /* This connection only moves data that is already durable: a prune step lost to a power
     * cut is redone, so it need not wait for its own fsync (ingest's next commit syncs the WAL). */
    store_exec(p->s, "PRAGMA synchronous=NORMAL");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->th, NULL, pruner_main, p)) {
        snprintf(err, errlen, "cannot start the pruner thread");
        store_close(p->s);
        free(p);
        return NULL;
    }
    return p;
}

void store_pruner_stop(store_pruner *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    store_close(p->s);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
