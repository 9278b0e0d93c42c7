/* store_pg_schema.c - the PostgreSQL schema, its versioned migrations, time partitions and
 * retention.
 *
 * Migrations: cumulative steps as for SQLite (store_schema.c), each in one transaction with its
 * version bump, under a transaction-level advisory lock so several nodes starting at once
 * upgrade the database once.
 *
 * Partitioning: snapshots and series are partitioned by `received` (the collector's clock), by
 * day, not by the device's time t: a device with a wrong clock cannot place rows in a partition
 * that does not exist or that retention already dropped, and daily partitions made
 * STORE_PG_DAYS_AHEAD days ahead always cover what arrives. A DEFAULT partition catches the rest
 * (a collector clock jump) so an insert never fails for want of a partition.
 * Retention drops whole partitions: a DROP TABLE, no row-by-row DELETE and no vacuum debt.
 *
 * Version 1: the fleet-view tables of SQLite's version 2 that the PostgreSQL backend writes
 * today (devices, device_keys, targets, snapshots, series) plus snap_keys, the dedup authority
 * (see store_pg.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_pg_int.h"

static const char V1[] =
    "CREATE TABLE meta(key text PRIMARY KEY, value text);"
    "INSERT INTO meta VALUES('schema_version','0');"
    "CREATE TABLE devices("
    "  id text PRIMARY KEY, psk bytea NOT NULL, created bigint NOT NULL,"
    "  last_seen bigint, snapshots bigint NOT NULL DEFAULT 0, board text, agent_version text, first_seen bigint,"
    "  spool_routine_dropped bigint, spool_findings_dropped bigint, spool_corrupt_dropped bigint,"
    "  spool_bytes_today bigint);"
    "CREATE TABLE device_keys("
    "  device text PRIMARY KEY, psk bytea NOT NULL, next_psk bytea, next_deadline bigint,"
    "  revoked_at bigint, changed bigint);"
    "CREATE TABLE targets("
    "  id bigserial PRIMARY KEY, device text NOT NULL, service text NOT NULL, ident text NOT NULL,"
    "  namespace text, pod text, container text, port integer, go_version text, pid bigint, url text,"
    "  incarnation text, first_seen bigint, last_seen bigint, last_t bigint, last_snapshot bigint,"
    "  interval_ms bigint, last_goroutines bigint, last_heap_inuse bigint, last_rss_bytes bigint,"
    "  last_threads bigint, UNIQUE(device, service, ident));"
    "CREATE TABLE snap_keys("
    "  device text NOT NULL, snapshot_id text NOT NULL, received bigint NOT NULL,"
    "  PRIMARY KEY(device, snapshot_id));"
    "CREATE INDEX snap_keys_received ON snap_keys(received);"
    "CREATE TABLE snapshots("
    "  id bigserial, snapshot_id text NOT NULL, device text NOT NULL, target bigint, received bigint NOT NULL,"
    "  t bigint NOT NULL, wall_ms bigint, wall_trusted integer, mono_ms bigint, boot_id text, seq bigint,"
    "  board text, agent_version text, incarnation text, flags integer, schema integer, nfindings integer,"
    "  size integer, payload bytea) PARTITION BY RANGE (received);"
    "CREATE INDEX snapshots_device ON snapshots(device, received);"
    "CREATE INDEX snapshots_id ON snapshots(id);"
    "CREATE TABLE snapshots_default PARTITION OF snapshots DEFAULT;"
    "CREATE TABLE series("
    "  target bigint NOT NULL, t bigint NOT NULL, snap bigint NOT NULL, received bigint NOT NULL,"
    "  goroutines bigint, goroutines_other bigint, nsites_total bigint, by_state text,"
    "  heap_alloc bigint, heap_inuse bigint, heap_idle bigint, heap_released bigint, heap_sys bigint,"
    "  stack_inuse bigint, sys bigint, next_gc bigint, num_gc bigint,"
    "  rss_kb bigint, cpu_ticks bigint, threads bigint, fds bigint,"
    "  spool_dropped bigint, spool_routine_dropped bigint, spool_findings_dropped bigint,"
    "  spool_corrupt_dropped bigint, spool_bytes_today bigint, findings_dropped bigint,"
    "  sites_truncated bigint, cost_bytes bigint, cost_ms bigint) PARTITION BY RANGE (received);"
    "CREATE INDEX series_target_t ON series(target, t);"
    "CREATE TABLE series_default PARTITION OF series DEFAULT;"
    "UPDATE meta SET value='1' WHERE key='schema_version';";

static const char *const STEPS[] = {V1};
_Static_assert(sizeof(STEPS) / sizeof(STEPS[0]) == STORE_PG_SCHEMA_VERSION, "one step per version");

/* the advisory lock key of schema changes and partition creation ("etsc") */
#define LOCK_SCHEMA "1702130531"

int store_pg_schema_read(store_pg *p)
{
    PGresult *r = pg_run(p, "SELECT to_regclass('meta') IS NOT NULL", NULL);
    if (!r)
        return -1;
    int exists = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!exists)
        return 0;
    if (!(r = pg_run(p, "SELECT value FROM meta WHERE key='schema_version'", NULL)))
        return -1;
    int v = PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

int store_pg_migrate(store_pg *p, char *err, size_t errlen)
{
    err[0] = 0;
    for (;;) {
        if (pg_exec(p, "BEGIN", NULL) || pg_exec(p, "SELECT pg_advisory_xact_lock(" LOCK_SCHEMA ")", NULL))
            break;
        int v = store_pg_schema_read(p); /* read under the lock: another node may just have upgraded */
        if (v < 0)
            break;
        if (v > STORE_PG_SCHEMA_VERSION) {
            snprintf(err, errlen, "database schema %d is newer than this collector's (%d)", v,
                     STORE_PG_SCHEMA_VERSION);
            pg_exec(p, "ROLLBACK", NULL);
            return -1;
        }
        if (v == STORE_PG_SCHEMA_VERSION)
            return pg_exec(p, "COMMIT", NULL);
        if (pg_exec(p, STEPS[v], NULL) || pg_exec(p, "COMMIT", NULL)) {
            snprintf(err, errlen, "schema upgrade %d -> %d: %s", v, v + 1, PQerrorMessage(p->conn));
            pg_exec(p, "ROLLBACK", NULL);
            return -1;
        }
    }
    snprintf(err, errlen, "schema: %s", PQerrorMessage(p->conn));
    pg_exec(p, "ROLLBACK", NULL);
    return -1;
}

#define DAY_MS (86400LL * 1000)

static void day_name(int64_t day_ms, char *out, size_t cap)
{
    time_t t = (time_t)(day_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y%m%d", &tm);
}

int store_pg_partitions_ahead(store_pg *p, int64_t now_ms)
{
    int64_t today = now_ms / DAY_MS * DAY_MS;
    static const char *const TABLES[] = {"snapshots", "series"};
    if (pg_exec(p, "BEGIN", NULL) || pg_exec(p, "SELECT pg_advisory_xact_lock(" LOCK_SCHEMA ")", NULL))
        goto fail;
    for (int d = -1; d <= STORE_PG_DAYS_AHEAD; d++) {
        int64_t from = today + d * DAY_MS;
        char name[16], sql[256];
        day_name(from, name, sizeof(name));
        for (unsigned i = 0; i < 2; i++) {
            snprintf(sql, sizeof(sql),
                     "CREATE TABLE IF NOT EXISTS %s_p%s PARTITION OF %s FOR VALUES FROM (%lld) TO (%lld)", TABLES[i],
                     name, TABLES[i], (long long)from, (long long)(from + DAY_MS));
            if (pg_exec(p, sql, NULL))
                goto fail;
        }
    }
    if (pg_exec(p, "COMMIT", NULL) == 0)
        return 0;
fail:
    pg_exec(p, "ROLLBACK", NULL);
    return -1;
}

/* Drops one daily partition of TABLE that ends at or before cutoff_ms. 1 dropped, 0 none, -1. */
static int drop_one(store_pg *p, const char *table, int64_t cutoff_ms)
{
    char cut[16], sql[512];
    day_name(cutoff_ms, cut, sizeof(cut));
    /* the partitions are named <table>_pYYYYMMDD, so names order as days do */
    snprintf(sql, sizeof(sql),
             "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid=i.inhrelid"
             " WHERE i.inhparent='%s'::regclass AND c.relname LIKE '%s\\_p%%' AND c.relname < '%s_p%s'"
             " ORDER BY c.relname LIMIT 1",
             table, table, table, cut);
    PGresult *r = pg_run(p, sql, NULL);
    if (!r)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    snprintf(sql, sizeof(sql), "DROP TABLE \"%s\"", PQgetvalue(r, 0, 0));
    PQclear(r);
    return pg_exec(p, sql, NULL) ? -1 : 1;
}

/* One bounded step: keep partitions ahead, drop at most one expired partition per table, and
 * forget dedup keys older than the longest retention in batches (a retry older than that
 * cannot happen: agents' spools hold days, not months). payload_days only bounds the payload
 * column on SQLite; here a payload lives as long as its snapshot's partition (full_days). */
int store_pg_prune_step(store_pg *p, const store_retention *r, int64_t now_ms)
{
    if (store_pg_partitions_ahead(p, now_ms))
        return -1;
    int touched = 0;
    if (r->full_days > 0) {
        int64_t cutoff = now_ms - (int64_t)r->full_days * DAY_MS;
        for (int i = 0; i < 2; i++) {
            int rc = drop_one(p, i ? "series" : "snapshots", cutoff);
            if (rc < 0)
                return -1;
            touched += rc;
        }
        pg_args a = {0};
        pga_i64(&a, cutoff);
        pga_i64(&a, r->batch_rows > 0 ? r->batch_rows : 500);
        PGresult *res = pg_run(p,
                               "DELETE FROM snap_keys WHERE ctid = ANY(ARRAY(SELECT ctid FROM snap_keys"
                               " WHERE received < $1 LIMIT $2))",
                               &a);
        if (!res)
            return -1;
        touched += atoi(PQcmdTuples(res));
        PQclear(res);
    }
    p->pruned += touched;
    return touched;
}
