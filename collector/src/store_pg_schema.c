/* store_pg_schema.c - the PostgreSQL schema, its versioned migrations, time partitions and
 * retention.
 *
 * Migrations: cumulative steps as for SQLite (store_schema.c), each in one transaction with its
 * version bump, under a transaction-level advisory lock so several nodes starting at once
 * upgrade the database once.
 *
 * Partitioning: snapshots, series, site_counts and attachments are partitioned by `received` (the collector's clock), by
 * day, not by the device's time t: a device with a wrong clock cannot place rows in a partition
 * that does not exist or that retention already dropped, and daily partitions made
 * STORE_PG_DAYS_AHEAD days ahead always cover what arrives. A DEFAULT partition catches the rest
 * (a collector clock jump) so an insert never fails for want of a partition.
 * Retention (store_pg_retention.c) drops whole partitions: a DROP TABLE, no row-by-row DELETE
 * and no vacuum debt.
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

/* 1 -> 2: everything else SQLite stores (its schema 4), so the backends are at parity: sites
 * and their counts, attachments, findings with history and the survivor evidence, rollups,
 * the command/capture queue, and the alert thread's state and outbox. site_counts and
 * attachments grow with every snapshot: partitioned by `received` like snapshots and series,
 * and dropped with them. */
static const char V2[] =
    "CREATE TABLE sites("
    "  target bigint NOT NULL, key bigint NOT NULL, state text, function text, file text, line integer,"
    "  created_by text, first_seen bigint, PRIMARY KEY(target, key));"
    "CREATE TABLE site_counts("
    "  target bigint NOT NULL, key bigint NOT NULL, t bigint NOT NULL, count bigint NOT NULL,"
    "  max_wait_min bigint, received bigint NOT NULL) PARTITION BY RANGE (received);"
    "CREATE INDEX site_counts_tkt ON site_counts(target, key, t);"
    "CREATE INDEX site_counts_tt ON site_counts(target, t);"
    "CREATE TABLE site_counts_default PARTITION OF site_counts DEFAULT;"
    "CREATE TABLE attachments("
    "  snap bigint NOT NULL, idx integer NOT NULL, kind text, finding text, data bytea,"
    "  received bigint NOT NULL) PARTITION BY RANGE (received);"
    "CREATE INDEX attachments_snap ON attachments(snap, idx);"
    "CREATE TABLE attachments_default PARTITION OF attachments DEFAULT;"
    "CREATE TABLE findings("
    "  id bigserial PRIMARY KEY, device text NOT NULL, target bigint NOT NULL REFERENCES targets(id),"
    "  fingerprint text NOT NULL, kind text, confidence text, state text, evidence bigint,"
    "  function text, file text, line integer, created_by text,"
    "  count bigint, max_count bigint, growth_per_min double precision, oldest_wait_s double precision,"
    "  value bigint, first_seen bigint NOT NULL, last_seen bigint NOT NULL, snapshots bigint NOT NULL,"
    "  last_snapshot text, status text NOT NULL DEFAULT 'open', cleared_at bigint, stack text, go_version text,"
    "  survivors bigint, survivors_of bigint, oldest_id bigint, wait_hist text,"
    "  UNIQUE(device, target, fingerprint));"
    "CREATE INDEX findings_target ON findings(target, status);"
    "CREATE INDEX findings_status ON findings(status, last_seen);"
    "CREATE TABLE finding_events("
    "  id bigserial PRIMARY KEY, finding bigint NOT NULL REFERENCES findings(id), t bigint NOT NULL,"
    "  event text NOT NULL, confidence text);"
    "CREATE INDEX finding_events_f ON finding_events(finding, t);"
    "CREATE TABLE finding_counts("
    "  finding bigint NOT NULL, t bigint NOT NULL, count bigint, PRIMARY KEY(finding, t));"
    /* filled from a daily partition just before retention drops it (store_pg_schema.c) */
    "CREATE TABLE series_rollup("
    "  target bigint NOT NULL, t bigint NOT NULL, n bigint,"
    "  goroutines_min bigint, goroutines_max bigint, goroutines_last bigint,"
    "  heap_inuse_min bigint, heap_inuse_max bigint, heap_inuse_last bigint, heap_alloc_last bigint,"
    "  rss_kb_min bigint, rss_kb_max bigint, rss_kb_last bigint,"
    "  threads_min bigint, threads_max bigint, threads_last bigint, fds_last bigint, by_state text,"
    "  PRIMARY KEY(target, t));"
    "CREATE TABLE site_rollup("
    "  target bigint NOT NULL, key bigint NOT NULL, t bigint NOT NULL,"
    "  count_min bigint, count_max bigint, count_last bigint, PRIMARY KEY(target, key, t));"
    "CREATE TABLE commands("
    "  id bigserial PRIMARY KEY, device text NOT NULL, kind integer NOT NULL, target text NOT NULL,"
    "  seconds bigint NOT NULL, created_ms bigint NOT NULL, expiry_ms bigint NOT NULL,"
    "  delivered_ms bigint, deliveries integer NOT NULL DEFAULT 0, target_id bigint, finding bigint,"
    "  uploaded_ms bigint, cut integer, error text, data bytea);"
    "CREATE INDEX commands_device ON commands(device, expiry_ms);"
    "CREATE INDEX commands_target ON commands(target_id, created_ms);"
    "CREATE TABLE alert_state("
    "  key text PRIMARY KEY, labels text NOT NULL, annotations text NOT NULL, url text NOT NULL,"
    "  starts_ms bigint NOT NULL, ends_ms bigint, updated_ms bigint NOT NULL);"
    "CREATE TABLE alert_outbox("
    "  id bigserial PRIMARY KEY, key text NOT NULL, labels text NOT NULL, annotations text NOT NULL,"
    "  url text NOT NULL, starts_ms bigint NOT NULL, ends_ms bigint, created_ms bigint NOT NULL,"
    "  attempts integer NOT NULL DEFAULT 0, next_ms bigint NOT NULL DEFAULT 0);"
    "INSERT INTO meta VALUES('prune_rows_total','0');"
    "UPDATE meta SET value='2' WHERE key='schema_version';";

/* 2 -> 3: when the agent reported that it started a command (a capture's "running" state), as
 * SQLite's schema 5 added it. */
static const char V3[] =
    "ALTER TABLE commands ADD COLUMN started_ms bigint;"
    "UPDATE meta SET value='3' WHERE key='schema_version';";

/* 3 -> 4: central settings (store_settings.c), as SQLite's schema 6: one versioned set per scope
 * ('' = the fleet, else a device id) and what each device last reported applying or refusing. */
static const char V4[] =
    "CREATE TABLE settings("
    "  scope text PRIMARY KEY, version bigint NOT NULL, entries text NOT NULL, updated_ms bigint NOT NULL);"
    "CREATE TABLE settings_state("
    "  device text PRIMARY KEY, seq bigint NOT NULL, reported_ms bigint NOT NULL,"
    "  applied_fleet bigint NOT NULL, applied_device bigint NOT NULL,"
    "  rejected_fleet bigint NOT NULL, rejected_device bigint NOT NULL, reason text NOT NULL);"
    "UPDATE meta SET value='4' WHERE key='schema_version';";

/* 4 -> 5: when a device was last handed its settings document, and which versions (re-sent
 * only after a quiet period, or at once for new versions), as SQLite's schema 7. */
static const char V5[] =
    "ALTER TABLE settings_state ADD COLUMN sent_ms bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE settings_state ADD COLUMN sent_fleet bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE settings_state ADD COLUMN sent_device bigint NOT NULL DEFAULT 0;"
    "UPDATE meta SET value='5' WHERE key='schema_version';";

static const char *const STEPS[] = {V1, V2, V3, V4, V5};
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


void store_pg_day_name(int64_t day_ms, char *out, size_t cap)
{
    time_t t = (time_t)(day_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y%m%d", &tm);
}

int store_pg_partitions_ahead(store_pg *p, int64_t now_ms)
{
    int64_t today = now_ms / DAY_MS * DAY_MS;
    static const char *const TABLES[] = {"snapshots", "series", "site_counts", "attachments"};
    if (pg_exec(p, "BEGIN", NULL) || pg_exec(p, "SELECT pg_advisory_xact_lock(" LOCK_SCHEMA ")", NULL))
        goto fail;
    for (int d = -1; d <= STORE_PG_DAYS_AHEAD; d++) {
        int64_t from = today + d * DAY_MS;
        char name[16], sql[256];
        store_pg_day_name(from, name, sizeof(name));
        for (unsigned i = 0; i < sizeof(TABLES) / sizeof(TABLES[0]); i++) {
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
