/* store_schema.c - the SQLite schema and its migrations.
 *
 * Migrations are cumulative steps: a new database runs every step from 0, an old one only
 * those past its meta.schema_version, so a fresh database and an upgraded one are the same
 * schema by construction. Each step runs in one transaction with its version bump: a crash
 * mid-upgrade leaves the old version intact and the next start retries.
 *
 * Version 1 (the first release): devices, targets keyed (device, service, pod), snapshots
 * with four figures, findings.
 * Version 2 (the fleet view): every field of the wire snapshot (series, sites and their
 * per-snapshot counts, attachments), finding state and history, per-target summaries kept on
 * write, rollups for retention, targets keyed by their full identity (namespace/pod/container
 * and port), dedup on (device, snapshot id).
 */
#include <stdio.h>
#include <stdlib.h>

#include "store_int.h"

/* Exactly the DDL of release 1 (minus the PRAGMA): the base every later step builds on. */
static const char V1[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "INSERT OR IGNORE INTO meta VALUES('schema_version','1');"
    "CREATE TABLE IF NOT EXISTS devices("
    "  id TEXT PRIMARY KEY, psk BLOB NOT NULL, created INTEGER NOT NULL,"
    "  last_seen INTEGER, snapshots INTEGER NOT NULL DEFAULT 0);"
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

/* 1 -> 2. Times: t is "when it happened" (device wall clock if synced, else received). */
static const char V2[] =
    /* targets: v1's `pod` was the whole key, cut at 20 characters per part; it becomes
     * `ident` (namespace/pod/container|port, uncut). Old rows keep their old ident, which
     * never equals a new one (no '|'), so their history stays whole and apart. */
    "ALTER TABLE targets RENAME COLUMN pod TO ident;"
    "ALTER TABLE targets ADD COLUMN namespace TEXT;"
    "ALTER TABLE targets ADD COLUMN pod TEXT;"
    "ALTER TABLE targets ADD COLUMN container TEXT;"
    "ALTER TABLE targets ADD COLUMN port INTEGER;"
    "ALTER TABLE targets ADD COLUMN go_version TEXT;"
    "ALTER TABLE targets ADD COLUMN pid INTEGER;"
    "ALTER TABLE targets ADD COLUMN url TEXT;"
    /* summaries kept on write, so the fleet overview reads a few hundred rows, not millions */
    "ALTER TABLE targets ADD COLUMN last_t INTEGER;"
    "ALTER TABLE targets ADD COLUMN last_snapshot INTEGER;"
    "ALTER TABLE targets ADD COLUMN interval_ms INTEGER;"
    "ALTER TABLE targets ADD COLUMN last_goroutines INTEGER;"
    "ALTER TABLE targets ADD COLUMN last_heap_inuse INTEGER;"
    "ALTER TABLE targets ADD COLUMN last_rss_bytes INTEGER;"
    "ALTER TABLE targets ADD COLUMN last_threads INTEGER;"
    "UPDATE targets SET last_t=last_seen,"
    "  pod=CASE WHEN ident='' THEN '' ELSE ident END,"
    "  last_snapshot=(SELECT max(id) FROM snapshots s WHERE s.target=targets.id);"
    "UPDATE targets SET (last_goroutines,last_heap_inuse,last_rss_bytes,last_threads)="
    "  (SELECT goroutines, heap_inuse, rss_kb*1024, threads FROM snapshots s WHERE s.id=targets.last_snapshot);"
    "ALTER TABLE devices ADD COLUMN board TEXT;"
    "ALTER TABLE devices ADD COLUMN agent_version TEXT;"
    "ALTER TABLE devices ADD COLUMN first_seen INTEGER;"
    "ALTER TABLE devices ADD COLUMN spool_routine_dropped INTEGER;"
    "ALTER TABLE devices ADD COLUMN spool_findings_dropped INTEGER;"
    "ALTER TABLE devices ADD COLUMN spool_corrupt_dropped INTEGER;"
    "ALTER TABLE devices ADD COLUMN spool_bytes_today INTEGER;"
    "UPDATE devices SET first_seen=(SELECT min(received) FROM snapshots s WHERE s.device=devices.id),"
    "  (board, agent_version)=(SELECT board, agent_version FROM snapshots s WHERE s.device=devices.id"
    "   ORDER BY id DESC LIMIT 1);"
    /* snapshots: identity, dedup and the raw envelope; the figures move to `series`.
     * Rebuilt because v1's UNIQUE(snapshot_id) was global: dedup is per device. */
    "CREATE TABLE snapshots2("
    "  id INTEGER PRIMARY KEY, snapshot_id TEXT NOT NULL, device TEXT NOT NULL,"
    "  target INTEGER REFERENCES targets(id), received INTEGER NOT NULL, t INTEGER NOT NULL,"
    "  wall_ms INTEGER, wall_trusted INTEGER, mono_ms INTEGER, boot_id TEXT, seq INTEGER,"
    "  board TEXT, agent_version TEXT, incarnation TEXT, flags INTEGER, schema INTEGER,"
    "  nfindings INTEGER, size INTEGER, payload BLOB, UNIQUE(device, snapshot_id));"
    "CREATE TABLE series("
    "  target INTEGER NOT NULL, t INTEGER NOT NULL, snap INTEGER NOT NULL,"
    "  goroutines INTEGER, goroutines_other INTEGER, nsites_total INTEGER, by_state TEXT,"
    "  heap_alloc INTEGER, heap_inuse INTEGER, heap_idle INTEGER, heap_released INTEGER, heap_sys INTEGER,"
    "  stack_inuse INTEGER, sys INTEGER, next_gc INTEGER, num_gc INTEGER,"
    "  rss_kb INTEGER, cpu_ticks INTEGER, threads INTEGER, fds INTEGER,"
    "  spool_dropped INTEGER, spool_routine_dropped INTEGER, spool_findings_dropped INTEGER,"
    "  spool_corrupt_dropped INTEGER, spool_bytes_today INTEGER, findings_dropped INTEGER,"
    "  sites_truncated INTEGER, cost_bytes INTEGER, cost_ms INTEGER,"
    "  PRIMARY KEY(target, t, snap)) WITHOUT ROWID;"
    "INSERT INTO snapshots2(id,snapshot_id,device,target,received,t,wall_ms,wall_trusted,mono_ms,boot_id,seq,"
    "  board,agent_version,incarnation,nfindings,size,payload)"
    "  SELECT id,snapshot_id,device,target,received,"
    "  CASE WHEN wall_trusted AND wall_ms>0 THEN wall_ms ELSE received END,"
    "  wall_ms,wall_trusted,mono_ms,boot_id,seq,board,agent_version,incarnation,nfindings,size,payload"
    "  FROM snapshots;"
    "INSERT INTO series(target,t,snap,goroutines,heap_inuse,rss_kb,threads,spool_dropped)"
    "  SELECT s2.target, s2.t, s.id, s.goroutines, s.heap_inuse, s.rss_kb, s.threads, s.spool_dropped"
    "  FROM snapshots s JOIN snapshots2 s2 ON s2.id=s.id WHERE s.target IS NOT NULL;"
    "DROP TABLE snapshots;"
    "ALTER TABLE snapshots2 RENAME TO snapshots;"
    "CREATE INDEX snapshots_device ON snapshots(device, received);"
    "CREATE TABLE sites("
    "  target INTEGER NOT NULL, key INTEGER NOT NULL, state TEXT, function TEXT, file TEXT, line INTEGER,"
    "  created_by TEXT, first_seen INTEGER, PRIMARY KEY(target, key)) WITHOUT ROWID;"
    /* keyed (target, key, t): one site's count over time is one range scan */
    "CREATE TABLE site_counts("
    "  target INTEGER NOT NULL, key INTEGER NOT NULL, t INTEGER NOT NULL, count INTEGER NOT NULL,"
    "  max_wait_min INTEGER, PRIMARY KEY(target, key, t)) WITHOUT ROWID;"
    "CREATE TABLE attachments("
    "  snap INTEGER NOT NULL, idx INTEGER NOT NULL, kind TEXT, finding TEXT, data BLOB,"
    "  PRIMARY KEY(snap, idx));"
    /* findings: status open|cleared (v1's `state` is the goroutine state) and history */
    "ALTER TABLE findings ADD COLUMN status TEXT NOT NULL DEFAULT 'open';"
    "ALTER TABLE findings ADD COLUMN cleared_at INTEGER;"
    "ALTER TABLE findings ADD COLUMN stack TEXT;"
    "ALTER TABLE findings ADD COLUMN go_version TEXT;"
    "CREATE INDEX findings_target ON findings(target, status);"
    "CREATE INDEX findings_status ON findings(status, last_seen);"
    "CREATE TABLE finding_events("
    "  id INTEGER PRIMARY KEY, finding INTEGER NOT NULL REFERENCES findings(id), t INTEGER NOT NULL,"
    "  event TEXT NOT NULL, confidence TEXT);"
    "CREATE INDEX finding_events_f ON finding_events(finding, t);"
    "CREATE TABLE finding_counts("
    "  finding INTEGER NOT NULL, t INTEGER NOT NULL, count INTEGER, PRIMARY KEY(finding, t)) WITHOUT ROWID;"
    /* v1 kept no history: what it knew is when a finding was first and last seen */
    "INSERT INTO finding_events(finding,t,event,confidence) SELECT id, first_seen, 'opened', confidence FROM findings;"
    "INSERT INTO finding_counts(finding,t,count) SELECT id, last_seen, count FROM findings;"
    "UPDATE findings SET status='cleared', cleared_at=(SELECT last_t FROM targets WHERE id=findings.target)"
    "  WHERE last_seen < (SELECT last_t FROM targets WHERE id=findings.target);"
    "INSERT INTO finding_events(finding,t,event,confidence)"
    "  SELECT id, cleared_at, 'cleared', confidence FROM findings WHERE status='cleared';"
    "CREATE TABLE series_rollup("
    "  target INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER,"
    "  goroutines_min INTEGER, goroutines_max INTEGER, goroutines_last INTEGER,"
    "  heap_inuse_min INTEGER, heap_inuse_max INTEGER, heap_inuse_last INTEGER, heap_alloc_last INTEGER,"
    "  rss_kb_min INTEGER, rss_kb_max INTEGER, rss_kb_last INTEGER,"
    "  threads_min INTEGER, threads_max INTEGER, threads_last INTEGER, fds_last INTEGER, by_state TEXT,"
    "  PRIMARY KEY(target, t)) WITHOUT ROWID;"
    "CREATE TABLE site_rollup("
    "  target INTEGER NOT NULL, key INTEGER NOT NULL, t INTEGER NOT NULL,"
    "  count_min INTEGER, count_max INTEGER, count_last INTEGER, PRIMARY KEY(target, key, t)) WITHOUT ROWID;"
    "UPDATE meta SET value='2' WHERE key='schema_version';";

/* v3: the survivor evidence of a slow leak (wire schema 2, finding keys 16-19): why it was
 * raised, shown on the finding page. */
static const char V3[] =
    "ALTER TABLE findings ADD COLUMN survivors INTEGER;"
    "ALTER TABLE findings ADD COLUMN survivors_of INTEGER;"
    "ALTER TABLE findings ADD COLUMN oldest_id INTEGER;"
    "ALTER TABLE findings ADD COLUMN wait_hist TEXT;"
    "UPDATE meta SET value='3' WHERE key='schema_version';";

/* v4: downlink commands queued per device (store_cmd.c), delivered in the answers to that
 * device's own requests (wire/command.h). */
static const char V4[] =
    "CREATE TABLE commands("
    "  id INTEGER PRIMARY KEY, device TEXT NOT NULL, kind INTEGER NOT NULL, target TEXT NOT NULL,"
    "  seconds INTEGER NOT NULL, created_ms INTEGER NOT NULL, expiry_ms INTEGER NOT NULL,"
    "  delivered_ms INTEGER, deliveries INTEGER NOT NULL DEFAULT 0,"
    /* captures requested through the HTTP API: the target (and finding) they were asked for */
    "  target_id INTEGER, finding INTEGER,"
    /* the result (wire/capture.h): when it arrived, whether it was cut, why it failed */
    "  uploaded_ms INTEGER, cut INTEGER, error TEXT, data BLOB);"
    "CREATE INDEX commands_device ON commands(device, expiry_ms);"
    "CREATE INDEX commands_target ON commands(target_id, created_ms);"
    "UPDATE meta SET value='4' WHERE key='schema_version';";

/* v5: when the agent reported that it started a command (the "running" state of a capture:
 * a trace takes seconds; README "Commands", progress). */
static const char V5[] =
    "ALTER TABLE commands ADD COLUMN started_ms INTEGER;"
    "UPDATE meta SET value='5' WHERE key='schema_version';";

/* v6: central settings (store_settings.c): one versioned set per scope ('' = the fleet, else
 * a device id), and what each device last reported applying or refusing (snapshot key 18). */
static const char V6[] =
    "CREATE TABLE settings("
    "  scope TEXT PRIMARY KEY, version INTEGER NOT NULL, entries TEXT NOT NULL, updated_ms INTEGER NOT NULL);"
    "CREATE TABLE settings_state("
    "  device TEXT PRIMARY KEY, seq INTEGER NOT NULL, reported_ms INTEGER NOT NULL,"
    "  applied_fleet INTEGER NOT NULL, applied_device INTEGER NOT NULL,"
    "  rejected_fleet INTEGER NOT NULL, rejected_device INTEGER NOT NULL, reason TEXT NOT NULL);"
    "UPDATE meta SET value='6' WHERE key='schema_version';";

/* v7: when a device was last handed its settings document, and which versions: re-sent only
 * after a quiet period (like a command) or at once for new versions, not with every answer
 * on a metered link (store_settings_due). */
static const char V7[] =
    "ALTER TABLE settings_state ADD COLUMN sent_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE settings_state ADD COLUMN sent_fleet INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE settings_state ADD COLUMN sent_device INTEGER NOT NULL DEFAULT 0;"
    "UPDATE meta SET value='7' WHERE key='schema_version';";

static const char *const STEPS[] = {V1, V2, V3, V4, V5, V6, V7};

int store_schema_read(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key='schema_version'", -1, &st, NULL) != SQLITE_OK) {
        /* no meta table: an empty database (or not ours; the first step will say) */
        return sqlite3_errcode(db) == SQLITE_ERROR ? 0 : -1;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        v = atoi((const char *)sqlite3_column_text(st, 0));
    else if (rc == SQLITE_DONE)
        v = 0;
    sqlite3_finalize(st);
    return v;
}

int store_schema_migrate(sqlite3 *db, char *err, size_t errlen)
{
    int v = store_schema_read(db);
    if (v < 0) {
        snprintf(err, errlen, "cannot read the schema version: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (v > STORE_SCHEMA_VERSION) {
        snprintf(err, errlen, "database schema %d is newer than this collector's (%d)", v, STORE_SCHEMA_VERSION);
        return -1;
    }
    /* The rebuild of `snapshots` must not trip foreign keys half-way; they are switched on
     * by store_open after the migration (the pragma is a no-op inside a transaction). */
    sqlite3_exec(db, "PRAGMA foreign_keys=OFF", NULL, NULL, NULL);
    for (int i = v; i < STORE_SCHEMA_VERSION; i++) {
        char *msg = NULL;
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db, STEPS[i], NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
            snprintf(err, errlen, "schema upgrade %d -> %d: %s", i, i + 1, msg ? msg : sqlite3_errmsg(db));
            sqlite3_free(msg);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    return 0;
}
