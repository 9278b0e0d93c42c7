/* store.h - the collector's storage interface: devices and their keys, targets, every field
 * of every snapshot, findings with their history, and the read side of the fleet view.
 *
 * Nothing above this header knows SQL: ingest, the CLI queries (query.c), the HTTP API and the
 * alert thread use only these functions. Two backends answer them: SQLite (store*.c) and, for a
 * `postgresql://` database, PostgreSQL (store_pg*.c); the read side, the command queue and the
 * alert tables are one copy of SQL both run (store_sq.h).
 *
 * Durability: WAL mode with synchronous=FULL, so a COMMIT returns only after the WAL has been
 * fsync'ed; that is the point at which ingest may acknowledge. Group commit: ingest opens one
 * transaction per event-loop batch (store_begin), puts every snapshot of the batch, commits once
 * and only then answers all of them. Each store_put_snapshot runs inside its own savepoint: a
 * failure rolls back that snapshot only (nothing of it is committed with the batch) and the
 * rest of the batch stays staged.
 *
 * Deduplication: on (device, snapshot id). store_put_snapshot reports a duplicate instead of
 * writing a second row, and the duplicate is acknowledged like a success.
 *
 * Findings: one row per (device, target, fingerprint) plus a history of events (opened,
 * confidence, cleared, reopened). A finding is open while the newest snapshot of its target
 * carries it; a newer snapshot of the target without it clears it.
 *
 * Threads: a coll_store handle belongs to one thread. The HTTP and alert threads open their own
 * (store_open_readonly / store_open) on the same path; WAL lets readers run beside the writer.
 */
#ifndef COLL_STORE_H
#define COLL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "snap.h"

#define COLL_PSK_MAX 64

typedef struct coll_store coll_store;

/* Opens (creating if needed) the database at PATH, upgrading an older schema in place. */
coll_store *store_open(const char *path, char *err, size_t errlen);
/* A read-only handle (for the HTTP thread): never writes, never migrates; fails on a database
 * whose schema is older or newer than this build's (run the collector once to upgrade). */
coll_store *store_open_readonly(const char *path, char *err, size_t errlen);
void store_close(coll_store *s);
const char *store_errmsg(coll_store *s);
/* The schema version this build writes, and the one of the open database. */
int store_schema_version(void);
int store_db_schema_version(coll_store *s);

/* Devices. store_device_add fails (-1) if the device exists and !replace. */
int store_device_add(coll_store *s, const char *id, const uint8_t *psk, size_t psklen, int replace);
/* Fills psk (up to cap bytes) and *len; 1 = found, 0 = unknown device, -1 = error. */
int store_device_psk(coll_store *s, const char *id, uint8_t *psk, size_t cap, size_t *len);

/* Transactions for group commit. store_commit returns 0 only when the data is durable. */
int store_begin(coll_store *s);
int store_commit(coll_store *s);
void store_rollback(coll_store *s);
int store_in_txn(const coll_store *s);

enum { STORE_NEW = 0, STORE_DUPLICATE = 1 };
/* Inside a transaction: records one snapshot from DEVICE (the authenticated identity)
 * received at received_ms (wall clock of the collector). payload (the raw envelope) may be
 * NULL. Returns STORE_NEW, STORE_DUPLICATE, or -1 on a database error, in which case nothing of
 * this snapshot is staged and the transaction (with the batch's other snapshots) goes on. */
int store_put_snapshot(coll_store *s, const char *device, const coll_snap *snap, int64_t received_ms,
                       const uint8_t *payload, size_t payload_len);

/* Counts, for tests and the stats line. */
int64_t store_count(coll_store *s, const char *table);
/* Bytes the database occupies (page_count * page_size), for /metrics and the bench. */
int64_t store_db_bytes(coll_store *s);

/* ---- downlink commands (wire/command.h) -----------------------------------------------
 * Queued per device; handed out in the answers to that device's own requests (it sits behind
 * NAT). The agent runs each id at most once (it keeps the ids it ran), so a command is simply
 * handed out again, redeliver_ms after the last time, until it expires: an answer lost on a
 * lossy link costs nothing but a later re-delivery. */
#include "command.h"
/* Queues one command (validated with the wire rules: err says why not). 0 with *id, or -1. */
int store_cmd_add(coll_store *s, const char *device, const et_cmd *c, int64_t now_ms, int64_t *id, char *err,
                  size_t errlen);
/* The commands due for DEVICE (not expired; never handed out, or last handed out at least
 * redeliver_ms ago), oldest first, at most ET_CMD_MAX, marked handed out now. Count or -1. */
int store_cmd_due(coll_store *s, const char *device, int64_t now_ms, int64_t redeliver_ms, et_cmd_list *out);
/* DEVICE reported that it started command ID (wire/command.h, "r=ID"): the first report sets
 * started_ms (1); a repeat, or an id that is not the device's, changes nothing (0). -1: error. */
int store_cmd_started(coll_store *s, const char *device, uint64_t id, int64_t now_ms);

/* A capture of target TARGET (kind ET_CMD_TRACE..ET_CMD_HEAP) asked for through the HTTP API,
 * queued for the target's device with expiry now + ttl_ms (finding: 0 or the finding it was
 * asked from). Rate limits: one capture in flight per target (an earlier one not yet expired),
 * at most per_hour per device in the last hour. STORE_Q_OK with *id; STORE_Q_NOTFOUND (target);
 * STORE_Q_BADARG (err: invalid); STORE_Q_LIMIT (err: which limit); -1 database error. */
enum { STORE_Q_LIMIT = 3 };
int store_capture_add(coll_store *s, int64_t target, unsigned kind, unsigned seconds, int64_t finding, int64_t now_ms,
                      int64_t ttl_ms, int per_hour, int64_t *id, char *err, size_t errlen);
/* {"id","device","target","finding","kind","seconds","state","created_ms","delivered_ms",
 *  "started_ms","uploaded_ms","expiry_ms","deliveries","cut","error","bytes"}; state, in the
 * order a capture moves: "queued" (not handed out yet), "delivered" (in an answer to the
 * device), "running" (the agent reported it started), then "uploaded" (the result is stored)
 * or "failed" (the agent's reason in "error"); "expired" when no result came before the
 * expiry. NOTFOUND for an unknown id. */
int store_q_capture(coll_store *s, int64_t id, int64_t now_ms, json_t **out);
/* The captures requested from finding ID, newest first (at most 50), each as store_q_capture
 * gives it: a JSON array. 0 or -1. */
int store_q_finding_captures(coll_store *s, int64_t id, int64_t now_ms, json_t **out);
/* The same for target ID: its 20 newest captures, whoever asked for them. */
int store_q_target_captures(coll_store *s, int64_t id, int64_t now_ms, json_t **out);

/* Inside a transaction: the result of command cap->cmd_id from DEVICE. STORE_NEW,
 * STORE_DUPLICATE (already stored: nothing changes), STORE_Q_NOTFOUND (no such command of
 * this device), -1. */
#include "capture.h"
int store_capture_put(coll_store *s, const char *device, const et_capture *cap, int64_t received_ms);
/* The stored bytes of capture ID: STORE_Q_OK with *data (malloc'ed, the caller frees), *len,
 * *kind; STORE_Q_NOTFOUND when there is no such capture or no result yet. */
int store_capture_data(coll_store *s, int64_t id, uint8_t **data, size_t *len, unsigned *kind);

/* ---- central settings (store_settings.c, wire/settings.h) ------------------------------
 * One set for the fleet (device NULL) and one per device, each {"SECTION.KEY": "value", ...,
 * "agent.allow": ["prefix", ...]}, versioned per scope (the version only rises). A device
 * runs the fleet's set with its own on top; its agent judges the values (its config parser)
 * and reports the versions it applied or refused, and why, in its snapshots (key 18). */
#include "settings.h"
/* Replaces the set of the fleet / DEVICE (names, repeats, lengths and size checked here:
 * STORE_Q_BADARG with err). STORE_Q_OK with the new *version; STORE_Q_NOTFOUND (no such
 * device); -1. Runs its own transaction. */
int store_settings_put(coll_store *s, const char *device, json_t *settings, int64_t now_ms, int64_t *version,
                       char *err, size_t errlen);
/* {"scope","version","settings","updated_ms"}; for a device also "fleet_version",
 * "effective" (what it is sent), "applied" {fleet, device}, "rejected" {fleet, device,
 * reason} or null, "reported_ms", "in_sync". STORE_Q_NOTFOUND for an unknown device. */
int store_q_settings(coll_store *s, const char *device, json_t **out);
/* The settings document for DEVICE's next answer: 1 with doc/len when it should be sent (it
 * reads them: it wrote schema 3; it neither runs nor refused these versions; they were not
 * handed out in the last redeliver_ms, unless they are new since), marked as handed out at
 * now_ms; 0, or -1. */
int store_settings_due(coll_store *s, const char *device, int64_t now_ms, int64_t redeliver_ms, uint8_t *doc,
                       size_t cap, size_t *len);
/* Inside the snapshot's transaction: the settings state a schema 3 snapshot reported. */
int store_settings_report(coll_store *s, const char *device, const et_snapshot *w, int64_t now_ms);

/* ---- retention ------------------------------------------------------------------------ */
typedef struct store_retention {
    int payload_days;     /* raw envelopes (snapshots.payload): default 7; 0 = keep */
    int full_days;        /* per-snapshot series and site counts at full resolution: default 30 */
    int rollup_days;      /* the 10-minute min/max/last rollups: default 365; 0 = keep */
    int rollup_step_s;    /* rollup bucket: default 600 */
    int batch_rows;       /* rows per prune step: default 500 (a few ms: never stalls ingest) */
} store_retention;
void store_retention_defaults(store_retention *r);
/* One bounded step of pruning/downsampling, in its own short transaction (call outside a
 * batch: ingest calls it from the event loop when idle). Returns rows touched (0 = nothing left
 * to do for now), -1 on error. Safe beside ingest on another handle: both take the write lock
 * only for short transactions. */
int store_prune_step(coll_store *s, const store_retention *r, int64_t now_ms);
/* Totals since open: rows pruned and rolled up (for /metrics "prune progress"). */
void store_prune_progress(coll_store *s, int64_t *rows_pruned, int64_t *rows_rolled_up);
/* A thread with its own handle on PATH running store_prune_step: back to back while there is
 * work (100 ms apart, so ingest's transactions interleave), once a minute when idle. */
typedef struct store_pruner store_pruner;
store_pruner *store_pruner_start(const char *path, const store_retention *r, char *err, size_t errlen);
void store_pruner_stop(store_pruner *p);

/* ---- read side (fleet view) ------------------------------------------------------------
 * Every function returns 0 with *out set to a new jansson value (caller json_decref's it),
 * STORE_Q_NOTFOUND for an unknown id, STORE_Q_BADARG for a bad parameter, -1 on a database
 * error. Shapes are those of /work/wt/CONTRACT.md (README "HTTP API"): all times *_ms. */
enum { STORE_Q_OK = 0, STORE_Q_NOTFOUND = 1, STORE_Q_BADARG = 2 };

/* {"devices":[DEVICE...]}; status "silent" when now_ms - last_seen > 3 x interval. */
int store_q_devices(coll_store *s, int64_t now_ms, json_t **out);
/* DEVICE + {"targets":[TARGET...]} */
int store_q_device(coll_store *s, const char *device, int64_t now_ms, json_t **out);
/* {"targets":[TARGET...]}; NOTFOUND for an unknown device. */
int store_q_targets(coll_store *s, const char *device, json_t **out);
/* TARGET + {"findings":[FINDING_SUMMARY...]} */
int store_q_target(coll_store *s, int64_t target, json_t **out);
/* {"target","from","to","step_ms","t","goroutines","goroutines_max","heap_inuse","heap_alloc",
 *  "rss_bytes","threads","fds","by_state":{...},"markers":[...]}; at most maxpoints points
 * (0 = 1000; each the last value of its bucket). BADARG when from_ms > to_ms. */
int store_q_series(coll_store *s, int64_t target, int64_t from_ms, int64_t to_ms, int maxpoints, json_t **out);

typedef struct store_finding_filter {
    const char *state;      /* "open" | "cleared" | NULL (any); anything else: BADARG */
    const char *kind;       /* "goroutine-leak", ... or NULL */
    const char *confidence; /* "suspected" | "likely" | "confirmed" | NULL; else BADARG */
    const char *device;     /* NULL = any */
    const char *service;    /* NULL = any */
    int64_t target;         /* 0 = any */
    int limit;              /* 0 = 200; capped at 1000 */
} store_finding_filter;
/* {"findings":[FINDING_SUMMARY...]}, worst first (open before cleared, confidence, last seen). */
int store_q_findings(coll_store *s, const store_finding_filter *f, json_t **out);
/* FINDING_DETAIL: summary + evidence, created_by, stack, oldest_wait_s, value, go_version,
 * history, series {"t":[...],"count":[...]} (the site's count over time). */
int store_q_finding(coll_store *s, int64_t id, json_t **out);

/* Fleet gauges for /metrics: {"open_findings":[{"kind","confidence","count"}...],
 * "devices":[{"id","last_seen_ms","silent":bool}...],"devices_silent":N,"db_bytes":N,
 * "prune_rows_total":N} */
int store_q_gauges(coll_store *s, int64_t now_ms, json_t **out);

/* The CLI listings (`edgetrace-collector devices|snapshots|findings`): an array of flat rows
 * with the CLI's column names; device NULL = all, limit <= 0 = no limit. BADARG for another
 * `what`. */
int store_q_list(coll_store *s, const char *what, const char *device, int limit, json_t **out);

/* pprof export: stored sites and stacks, one callback per sample. Frames leaf first; a site
 * from a snapshot carries one frame (its blocked user frame); a finding carries its stack. */
#define STORE_MAX_FRAMES 9
typedef struct store_frame {
    const char *function;
    const char *file; /* "" when unknown */
    uint32_t line;    /* 0 when unknown */
} store_frame;
typedef struct store_site {
    const char *state;      /* goroutine state name ("chan receive"), "" if unknown */
    const char *created_by; /* "" if unknown */
    uint32_t count;         /* goroutines (the sample value) */
    uint32_t max_wait_min;
    unsigned nframes;
    store_frame frames[STORE_MAX_FRAMES];
} store_site;
/* Return nonzero from the callback to stop early (the query then returns 0). */
typedef int (*store_site_cb)(const store_site *site, void *arg);
/* The sites of the target's newest snapshot at or before at_ms (at_ms <= 0: the newest), with
 * names joined from earlier full entries. *snap_ms (may be NULL) gets that snapshot's time.
 * NOTFOUND: unknown target or no snapshot at or before at_ms. */
int store_q_sites_at(coll_store *s, int64_t target, int64_t at_ms, int64_t *snap_ms, store_site_cb cb, void *arg);
/* The finding's stack (frames leaf first: the site with file:line, then the stack's callers)
 * and its last count, as one sample. NOTFOUND for an unknown finding. */
int store_q_finding_stack(coll_store *s, int64_t finding, store_site_cb cb, void *arg);

/* Whether this handle leads the work done once for the fleet (the alert thread's): on
 * PostgreSQL, several nodes share the database and the one whose session holds an advisory
 * lock leads until that session ends (taken here when free, and again after a reconnect); on
 * SQLite, always. 1 leads, 0 another node does, -1 database error. */
int store_lead(coll_store *s);

/* The raw handle of the SQLite backend, for SQLite-only code kept beside it (alert_outbox.c's
 * tables' creation). Nothing else may use it. */
struct sqlite3 *store_db(coll_store *s);

#endif
