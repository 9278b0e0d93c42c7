/* spool.h - durable queue of encoded snapshots on flash, between the sampler and the uplink.
 *
 *   spool *sp = spool_open(&params, err, sizeof err);   // scans segments, drops a torn tail
 *   spool_append(sp, SPOOL_F_FINDING or 0, id, wire, len);  // 0 = appended (durable per policy)
 *   ...
 *   spool_rec r; n = spool_peek(sp, &r, buf, cap);      // oldest pending: findings first
 *   if (n > 0 && upload(buf, r.len) == success) spool_ack(sp, r.id);
 *   spool_tick(sp);                                     // batch fsync deadline, from the main loop
 *   spool_stats(sp, &st);                               // counters for the next snapshot
 *   spool_close(sp);
 *
 * Layout in DIR: two append-only segment streams, "f-%08u.seg" (snapshots carrying findings)
 * and "r-%08u.seg" (routine), numbered from one counter, plus "state" (cursors, out-of-order
 * acks, counters, the seq ceiling; replaced atomically with write-tmp + fsync + rename + fsync
 * dir; see spool_state.c). All file system calls go through a spool_vfs (spool_io.h).
 * Each record: a 32-byte header {magic "ETR1", payload length u32, crc32 u32, flags u8,
 * 3 reserved, snapshot id [16]} (little-endian) + payload; the CRC covers the header
 * (with the crc field as zero) and the payload.
 *
 * Guarantees:
 *  - A record appended with policy "always" is on flash when spool_append returns 0.
 *  - After a power cut at any byte offset the torn last record is detected (length/CRC)
 *    and cut off at open; everything before it is kept. A corrupt record in the middle is
 *    skipped (resync on the next valid header), counted in corrupt_dropped.
 *  - Acks are persisted lazily, whatever the policy: after ack_persist_every acks or
 *    ack_persist_ms, before a segment is deleted, and at close. After a power cut at most
 *    ack_persist_every acknowledged records are returned again; the collector dedups them
 *    by snapshot id. (This keeps the flash writes near the snapshot bytes: `spool stats`.)
 *  - With batch, a power cut loses at most the records appended since the last batch sync
 *    (batch_records / batch_ms); a record cut in half is counted in torn_tails.
 *  - The total size stays under max_bytes: when full, whole routine segments are evicted
 *    oldest first, then finding segments oldest first; every pending record evicted is
 *    counted (routine_dropped / findings_dropped), and the counters persist.
 *  - Memory is bounded: per segment a few counters (ET_SPOOL_MAX_SEGS), no per-record index.
 */
#ifndef ET_SPOOL_H
#define ET_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define SPOOL_F_FINDING 0x01      /* record carries findings: evicted last, peeked first */
#define SPOOL_ID_LEN 16
#define SPOOL_HDR_LEN 32
#define SPOOL_REC_MAX (128u * 1024u)  /* payload bound (>= ET_WIRE_MAX) */
#define ET_SPOOL_MAX_SEGS 512
#define ET_SPOOL_OOO_ACKS 64      /* acks ahead of a stream's cursor remembered at once */
#define ET_SPOOL_CMD_IDS 32       /* executed command ids remembered (the newest; see spool_cmd_claim) */

enum spool_fsync { SPOOL_FSYNC_ALWAYS = 0, SPOOL_FSYNC_BATCH = 1, SPOOL_FSYNC_NEVER = 2 };
/* same numbering as enum et_fsync_policy in config.h */

typedef struct spool_params {
    const char *dir;              /* created if missing (one level) */
    uint64_t max_bytes;           /* total of segment files; 0 = 16 MiB */
    uint32_t segment_bytes;       /* a segment is closed once it reaches this; 0 = max_bytes/64
                                     clamped to [64 KiB, 256 KiB]; at least 4 KiB */
    int fsync_policy;             /* enum spool_fsync */
    uint32_t batch_records;       /* batch: fsync after this many appends (0 = 8) */
    uint32_t batch_ms;            /* batch: or this long after the first unsynced append (0 = 5000) */
    int read_only;                /* `spool stats|ls`: no truncation, no deletion, no state writes */
    uint32_t ack_persist_every;   /* acks are persisted after this many (0 = 16) ... */
    uint32_t ack_persist_ms;      /* ... or this long after the first unsaved one (0 = 300000) */
    const struct spool_vfs *vfs;  /* file system calls (spool_io.h); NULL = POSIX */
    uint64_t (*now_ms)(void);     /* monotonic clock; NULL = et_now_mono_ms (benches fake a day) */
} spool_params;

typedef struct spool_rec {
    uint8_t id[SPOOL_ID_LEN];
    uint8_t flags;                /* SPOOL_F_* */
    uint32_t len;                 /* payload length */
    uint32_t segno;               /* where it lives (for `spool ls`) */
    uint32_t offset;
} spool_rec;

typedef struct spool_stats {
    uint64_t bytes_used;          /* sum of segment file sizes */
    uint64_t max_bytes;
    uint32_t segment_bytes;
    uint32_t segments_routine, segments_findings;
    uint64_t pending_routine, pending_findings; /* records not yet acked */
    uint64_t appended_total, acked_total;       /* since the spool was created */
    uint64_t routine_dropped, findings_dropped; /* evicted unacked because the spool was full */
    uint64_t corrupt_dropped;                   /* records lost to corruption (torn tails not counted) */
    uint64_t torn_tails;                        /* torn last records cut off at open */
    uint64_t bytes_written_today;               /* segment + state bytes written, this UTC day */
    uint64_t bytes_written_total;
    uint64_t state_bytes_total;                 /* of which the state file (included above) */
    uint64_t payload_bytes_total;               /* snapshot bytes appended: the write amplification
                                                   is bytes_written_total / payload_bytes_total */
    uint64_t state_saves;                       /* state rewrites by this process */
    uint64_t next_seq;                          /* the next snapshot seq spool_next_seq returns */
    uint32_t day;                               /* days since epoch of bytes_written_today */
    int fsync_policy;
} spool_stats;

typedef struct spool spool;

/* Opens (creating DIR if needed), scans every segment (CRC of every record), cuts a torn tail
 * of the newest segment of each stream, loads the state. NULL with a reason in err. */
spool *spool_open(const spool_params *p, char *err, size_t errlen);
/* Persists the state (acks, counters), syncs, frees. */
void spool_close(spool *sp);

/* Appends one record; evicts as needed first. 0 on success (durable if policy always),
 * -1 on I/O error or len > SPOOL_REC_MAX or len > max_bytes/4 (message in err if given). */
int spool_append(spool *sp, uint8_t flags, const uint8_t id[SPOOL_ID_LEN], const void *payload, size_t len);

/* Oldest pending record (finding stream first, then routine). Copies the payload into buf
 * if cap allows. Returns the payload length (> 0; *r filled), 0 if nothing pending, -1 on
 * I/O error, -2 if cap is too small (*r filled, nothing copied). */
long spool_peek(spool *sp, spool_rec *r, void *buf, size_t cap);
/* Marks the record with this snapshot id delivered. 0 = acked, 1 = not pending (unknown,
 * already acked or evicted), -1 on I/O error. Segments whose records are all acked are deleted. */
int spool_ack(spool *sp, const uint8_t id[SPOOL_ID_LEN]);

/* Main loop hook: batch-policy fsync + state save when due. Cheap when nothing is due. */
int spool_tick(spool *sp);
/* Forces everything (segments, directory, state) to flash now, whatever the policy. */
int spool_sync(spool *sp);

void spool_get_stats(const spool *sp, spool_stats *st);

/* The next snapshot sequence number. Rises across restarts and power cuts (numbers are
 * reserved in blocks in the state file; a restart skips the rest of a block). */
uint64_t spool_next_seq(spool *sp);

/* Downlink commands run at most once (wire/command.h): before executing command `id` the agent
 * claims it here. 1 = claimed, and the claim is durable in the state file before this returns
 * (a power cut after it cannot lead to a second run); 0 = this id was claimed before (a
 * re-delivery: skip it); -1 = the state could not be saved (do not execute; the collector
 * delivers it again). The newest ET_SPOOL_CMD_IDS ids are kept: the collector numbers commands
 * upward and stops delivering them at their expiry, long before 32 newer ones have run. */
int spool_cmd_claim(spool *sp, uint64_t id);
/* Bytes written to flash beside the spool (central settings, settings_apply.c): counted in
 * bytes_written_today like the spool's own, so one figure says what the flash took. */
void spool_account_write(spool *sp, uint64_t n);

/* Visits every record on disk, oldest first per stream (findings stream, then routine), with
 * acked = 1 for records before the cursor or acked out of order. cb returns non-zero to stop.
 * Returns 0, or -1 on I/O error. */
int spool_foreach(spool *sp, int (*cb)(const spool_rec *r, int acked, void *ctx), void *ctx);

const char *spool_fsync_name(int policy);      /* "always" | "batch" | "never" */
int spool_fsync_parse(const char *s);          /* -1 if unknown */

/* `edgetrace-agent spool [stats|ls] [--dir DIR] [--json]` (spool_cmd.c). */
int spool_cmd_main(int argc, char **argv);

#endif
