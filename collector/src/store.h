/* store.h - the collector's SQLite database: devices and their keys, targets, snapshots
 * and findings.
 *
 * Durability: WAL mode with synchronous=FULL, so a COMMIT returns only after the WAL
 * has been fsync'ed; that is the point at which ingest may acknowledge. (In WAL mode
 * synchronous=NORMAL only syncs at checkpoints, so a power cut could roll back commits
 * that were already acknowledged.) Group commit: ingest opens one transaction per
 * event-loop batch (store_begin), puts every snapshot of the batch, commits once and only
 * then answers all of them.
 *
 * Deduplication: snapshots.snapshot_id is UNIQUE; store_put_snapshot reports a duplicate
 * instead of writing a second row, and the duplicate is acknowledged like a success.
 *
 * Findings: one row per (device, target, fingerprint). Each snapshot that carries the
 * finding bumps `snapshots`, moves last_seen and refreshes the last values, so a leak
 * followed across a thousand snapshots is one row.
 */
#ifndef COLL_STORE_H
#define COLL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "snap.h"

#define COLL_PSK_MAX 64

typedef struct coll_store coll_store;

/* Opens (creating if needed) the database at PATH and its schema. */
coll_store *store_open(const char *path, char *err, size_t errlen);
void store_close(coll_store *s);
const char *store_errmsg(coll_store *s);

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
 * received at received_ms (wall clock of the collector). payload may be NULL.
 * Returns STORE_NEW, STORE_DUPLICATE, or -1 on a database error. */
int store_put_snapshot(coll_store *s, const char *device, const coll_snap *snap, int64_t received_ms,
                       const uint8_t *payload, size_t payload_len);

/* Counts, for tests and the stats line. */
int64_t store_count(coll_store *s, const char *table);

/* The raw handle for query.c (read-only use). */
struct sqlite3 *store_db(coll_store *s);

#endif
