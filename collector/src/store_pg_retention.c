/* store_pg_retention.c - retention on PostgreSQL: whole daily partitions are dropped once they
 * are older than full_days (snapshots with their payloads, series, site_counts, attachments).
 * Before a series or site_counts partition goes, its rows are rolled up into the same 10-minute
 * min/max/last buckets SQLite keeps (series_rollup, site_rollup), so a target's long history
 * stays on the chart as it does on SQLite; rollups older than rollup_days are deleted in
 * batches. Each step is bounded: at most one partition per table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg_int.h"

/* the oldest daily partition of TABLE ending at or before cutoff_ms into name: 1, 0 none, -1 */
static int oldest_expired(store_pg *p, const char *table, int64_t cutoff_ms, char *name, size_t cap)
{
    char cut[16], sql[512];
    store_pg_day_name(cutoff_ms, cut, sizeof(cut));
    /* the partitions are named <table>_pYYYYMMDD, so names order as days do */
    snprintf(sql, sizeof(sql),
             "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid=i.inhrelid"
             " WHERE i.inhparent='%s'::regclass AND c.relname LIKE '%s\\_p%%' AND c.relname < '%s_p%s'"
             " ORDER BY c.relname LIMIT 1",
             table, table, table, cut);
    PGresult *r = pg_run(p, sql, NULL);
    if (!r)
        return -1;
    int found = PQntuples(r) == 1;
    if (found)
        snprintf(name, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return found;
}

/* bucket = t - t mod step; merged with a bucket an earlier partition already filled (a bucket
 * can straddle midnight) as store_retention.c merges: min of mins, max of maxes, newer last */
#define LAST(c) "(array_agg(" c " ORDER BY t DESC) FILTER (WHERE " c " IS NOT NULL))[1]"
#define MERGE_MIN(c) " " c "=least(series_rollup." c ", excluded." c "),"
#define MERGE_MAX(c) " " c "=greatest(series_rollup." c ", excluded." c "),"
#define MERGE_LAST(c) " " c "=coalesce(excluded." c ", series_rollup." c "),"
static const char SERIES_ROLLUP[] =
    "INSERT INTO series_rollup(target,t,n,goroutines_min,goroutines_max,goroutines_last,heap_inuse_min,"
    "heap_inuse_max,heap_inuse_last,heap_alloc_last,rss_kb_min,rss_kb_max,rss_kb_last,threads_min,threads_max,"
    "threads_last,fds_last,by_state)"
    " SELECT target, t - t % $1, count(*), min(goroutines), max(goroutines), " LAST("goroutines") ","
    " min(heap_inuse), max(heap_inuse), " LAST("heap_inuse") ", " LAST("heap_alloc") ","
    " min(rss_kb), max(rss_kb), " LAST("rss_kb") ", min(threads), max(threads), " LAST("threads") ","
    " " LAST("fds") ", " LAST("by_state") " FROM %s GROUP BY 1, 2"
    " ON CONFLICT(target,t) DO UPDATE SET n=series_rollup.n+excluded.n,"
    MERGE_MIN("goroutines_min") MERGE_MAX("goroutines_max") MERGE_LAST("goroutines_last")
    MERGE_MIN("heap_inuse_min") MERGE_MAX("heap_inuse_max") MERGE_LAST("heap_inuse_last")
    MERGE_LAST("heap_alloc_last") MERGE_MIN("rss_kb_min") MERGE_MAX("rss_kb_max") MERGE_LAST("rss_kb_last")
    MERGE_MIN("threads_min") MERGE_MAX("threads_max") MERGE_LAST("threads_last") MERGE_LAST("fds_last")
    " by_state=coalesce(excluded.by_state, series_rollup.by_state)";

static const char SITE_ROLLUP[] =
    "INSERT INTO site_rollup(target,key,t,count_min,count_max,count_last)"
    " SELECT target, key, t - t % $1, min(count), max(count), (array_agg(count ORDER BY t DESC))[1]"
    " FROM %s GROUP BY 1, 2, 3"
    " ON CONFLICT(target,key,t) DO UPDATE SET count_min=least(site_rollup.count_min, excluded.count_min),"
    " count_max=greatest(site_rollup.count_max, excluded.count_max), count_last=excluded.count_last";

/* Rolls up (series, site_counts) and drops one expired partition of TABLE, in one transaction
 * so a crash between the two never counts a day twice. 1 dropped, 0 none, -1. */
static int expire_one(store_pg *p, const char *table, int64_t cutoff_ms, int64_t step_ms)
{
    char name[80], sql[sizeof(SERIES_ROLLUP) + 128];
    int rc = oldest_expired(p, table, cutoff_ms, name, sizeof(name));
    if (rc <= 0)
        return rc;
    if (pg_exec(p, "BEGIN", NULL))
        return -1;
    const char *rollup = !strcmp(table, "series") ? SERIES_ROLLUP : !strcmp(table, "site_counts") ? SITE_ROLLUP : NULL;
    pg_args a = {0};
    pga_i64(&a, step_ms);
    if (rollup) {
        char quoted[96];
        snprintf(quoted, sizeof(quoted), "\"%s\"", name);
        snprintf(sql, sizeof(sql), rollup, quoted);
    }
    int err = 0;
    if (rollup) {
        PGresult *res = pg_run(p, sql, &a);
        err = !res;
        if (res)
            p->rolled_up += atoi(PQcmdTuples(res));
        PQclear(res);
    }
    if (!err) {
        snprintf(sql, sizeof(sql), "DROP TABLE \"%s\"", name);
        err = pg_exec(p, sql, NULL) || pg_exec(p, "COMMIT", NULL);
    }
    if (err) {
        pg_exec(p, "ROLLBACK", NULL);
        return -1;
    }
    return 1;
}

/* DELETE of at most batch rows matching WHERE (one parameter, $1): rows deleted or -1 */
static int delete_batch(store_pg *p, const char *table, const char *where, int64_t v, int batch)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE ctid = ANY(ARRAY(SELECT ctid FROM %s WHERE %s LIMIT $2))",
             table, table, where);
    pg_args a = {0};
    pga_i64(&a, v);
    pga_i64(&a, batch);
    PGresult *res = pg_run(p, sql, &a);
    if (!res)
        return -1;
    int n = atoi(PQcmdTuples(res));
    PQclear(res);
    return n;
}

/* One bounded step: keep partitions ahead, expire at most one partition per table, forget dedup
 * keys older than full-resolution retention (a retry older than that cannot happen: agents'
 * spools hold days, not months) and old rollups, in batches. Payloads older than payload_days
 * are cleared by store_retention.c's walk, shared with SQLite. */
int store_pg_prune_step(store_pg *p, const store_retention *r, int64_t now_ms)
{
    if (store_pg_partitions_ahead(p, now_ms))
        return -1;
    static const char *const TABLES[] = {"series", "site_counts", "snapshots", "attachments"};
    int batch = r->batch_rows > 0 ? r->batch_rows : 500;
    int64_t step = (r->rollup_step_s > 0 ? r->rollup_step_s : 600) * 1000LL;
    int touched = 0, n;
    if (r->full_days > 0) {
        int64_t cutoff = now_ms - (int64_t)r->full_days * DAY_MS;
        for (unsigned i = 0; i < sizeof(TABLES) / sizeof(TABLES[0]); i++) {
            if ((n = expire_one(p, TABLES[i], cutoff, step)) < 0)
                return -1;
            touched += n;
        }
        if ((n = delete_batch(p, "snap_keys", "received < $1", cutoff, batch)) < 0)
            return -1;
        touched += n;
    }
    if (r->rollup_days > 0) {
        int64_t cutoff = now_ms - (int64_t)r->rollup_days * DAY_MS;
        for (int i = 0; i < 2; i++) {
            if ((n = delete_batch(p, i ? "site_rollup" : "series_rollup", "t < $1", cutoff, batch)) < 0)
                return -1;
            touched += n;
        }
    }
    if (touched) {
        /* for /metrics on every node (store_q_gauges reads it from meta, as on SQLite) */
        pg_args a = {0};
        pga_i64(&a, touched);
        if (pg_exec(p, "UPDATE meta SET value=CAST(CAST(value AS bigint)+$1 AS text) WHERE key='prune_rows_total'",
                    &a))
            return -1;
    }
    p->pruned += touched;
    return touched;
}
