/* spool_int.h - the spool's insides, shared by spool.c (segments, append, peek, ack) and
 * spool_state.c (the state file: cursors, counters, seq). Not for other modules. */
#ifndef ET_SPOOL_INT_H
#define ET_SPOOL_INT_H

#include "spool.h"
#include "spool_io.h"
#include "base.h"

#include <sys/types.h>

#define REC_MAGIC 0x31525445u   /* "ETR1" little-endian */
#define CHUNK 4096u
#define SPOOL_SECTOR 512u /* the unit a power cut can garble */
#define NRECENT 8
#define DIR_MAX 200
#define SEGNO_MAX 99999999u /* names carry 8 digits: 3 centuries at one segment a minute */

enum { ST_ROUTINE = 0, ST_FINDING = 1, NSTREAMS = 2 };

typedef struct seg {
    uint32_t segno;
    uint8_t cls;        /* ST_* */
    uint32_t size;      /* bytes of valid content (== file size except for a corrupt old tail) */
    uint32_t nrec;
    uint32_t npending;
} seg;

typedef struct pos {
    uint32_t segno, off;
} pos;

typedef struct stream {
    pos cursor;                    /* every record before it is delivered */
    pos ooo[ET_SPOOL_OOO_ACKS];    /* acked records after the cursor */
    uint32_t nooo;
    int fd;                        /* active (newest) segment, open for writing; -1 if none */
    uint32_t active_segno;
    int unsynced;                  /* data written since the last fdatasync */
} stream;

typedef struct recent {
    uint8_t id[SPOOL_ID_LEN];
    uint8_t cls, valid;
    uint32_t segno, off;
} recent;

/* The background sync job (spool_sync.c). */
enum { SJ_SYNC, SJ_SYNC_DIR, SJ_RENAME, SJ_UNLINK };
enum { SJ_IDLE, SJ_DEFERRED, SJ_QUEUED, SJ_RUNNING, SJ_DONE };
#define SJ_MAX_OPS 24
#define SJ_PEND 8
typedef struct sjob_op {
    int kind;
    char a[DIR_MAX + 32], b[DIR_MAX + 32];
} sjob_op;
typedef struct sjob {
    sjob_op op[SJ_MAX_OPS];
    unsigned n;
    int err;
    uint32_t records;              /* appends it makes durable */
    uint32_t acks;                 /* acks its state carries */
    unsigned synced_streams;       /* bit per stream whose active segment it syncs */
    int has_state;
    uint64_t seq_written;          /* seq ceiling in its state */
} sjob;

struct spool {
    char dir[DIR_MAX];
    int dirfd;
    spool_params p;
    const spool_vfs *vfs;
    seg segs[ET_SPOOL_MAX_SEGS];   /* sorted by segno */
    uint32_t nsegs;
    uint32_t next_segno;
    stream st[NSTREAMS];
    recent rc[NRECENT];
    unsigned rc_next;
    /* counters (persisted) */
    uint64_t appended_total, acked_total, routine_dropped, findings_dropped, corrupt_dropped, torn_tails;
    uint64_t bytes_today, bytes_total, state_bytes_total, payload_bytes_total;
    uint32_t day;
    uint64_t state_saves;          /* this process only */
    /* snapshot sequence numbers: handed out from seq_next, persisted as a reserved ceiling */
    uint64_t seq_next, seq_reserved, seq_durable;
    /* executed downlink command ids (persisted, state version 3), a ring */
    uint64_t cmd_ids[ET_SPOOL_CMD_IDS];
    uint32_t ncmd_ids, cmd_next;
    /* sync bookkeeping */
    int state_dirty;
    int dir_dirty;
    uint32_t unsynced_records;
    uint64_t first_unsynced_ms;
    uint32_t acks_since_save;
    uint64_t first_unsaved_ack_ms;
    uint64_t last_save_ms;
    /* background sync (batch policy): one job in flight, ops waiting for the next one */
    sjob job;
    _Atomic int job_state;         /* SJ_*: shared with the worker thread */
    uint32_t inflight_records;
    char pend_sync[SJ_PEND][DIR_MAX + 32];  /* segments closed with unsynced data */
    unsigned npend_sync;
    char pend_unlink[SJ_PEND][DIR_MAX + 32]; /* fully acked segments, deleted after the state */
    unsigned npend_unlink;
    int req_pipe[2], done_pipe[2];  /* loop -> worker: "j" job, "q" quit; worker -> loop: done */
    int worker_started;
    int opened;                    /* spool_open finished: settle may defer deletions */
};

typedef struct rec_hdr {
    uint32_t len, crc;
    uint8_t flags;
    uint8_t id[SPOOL_ID_LEN];
} rec_hdr;

/* One file system call through the spool's VFS: IO(sp, open, path, flags, mode). */
#define IO(sp, op, ...) ((sp)->vfs->op((sp)->vfs->ctx, __VA_ARGS__))

static inline void put32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}
static inline uint32_t get32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static inline void put64(uint8_t *b, uint64_t v)
{
    put32(b, (uint32_t)v);
    put32(b + 4, (uint32_t)(v >> 32));
}
static inline uint64_t get64(const uint8_t *b) { return (uint64_t)get32(b) | (uint64_t)get32(b + 4) << 32; }

static inline int pos_lt(pos a, pos b) { return a.segno < b.segno || (a.segno == b.segno && a.off < b.off); }

/* The monotonic clock, or the caller's (benches simulate a day in a second). */
static inline uint64_t spool_now_ms(const spool *sp) { return sp->p.now_ms ? sp->p.now_ms() : et_now_mono_ms(); }

/* spool_rec.c: record framing */
void spool_hdr_encode(uint8_t b[SPOOL_HDR_LEN], uint32_t len, uint32_t crc, uint8_t flags, const uint8_t *id);
/* The record at off of a segment whose content ends at end; payload copied into buf if
 * cap >= len. 1 valid, 0 not a valid record, -1 I/O error. */
int spool_rec_read(spool *sp, int fd, uint32_t off, uint32_t end, unsigned cls, rec_hdr *h, void *buf, size_t cap);
/* Next valid record at or after off (padding skipped silently, damage with *skipped = 1).
 * 1 with *at set, 0 if none before end, -1 on I/O error. */
int spool_rec_next(spool *sp, int fd, uint32_t off, uint32_t end, unsigned cls, rec_hdr *h, uint32_t *at,
                   int *skipped);
int spool_is_done(const stream *s, pos p); /* before the cursor or acked out of order */

/* spool_state.c */
void spool_account_write(spool *sp, uint64_t n);   /* every byte the spool writes goes through here */
ssize_t spool_pread_full(spool *sp, int fd, void *buf, size_t n, uint64_t off);
int spool_write_full(spool *sp, int fd, const void *buf, size_t n, uint64_t off);
int spool_fsync_dir(spool *sp);
int spool_state_save(spool *sp);
int spool_state_load(spool *sp);      /* 0 loaded, 1 missing or invalid (fresh), -1 I/O error */
int spool_state_write_tmp(spool *sp);  /* state.tmp written, not synced (for the background job) */
void spool_state_paths(const spool *sp, char *tmp, char *fin); /* each DIR_MAX + 16 bytes, or NULL */
int spool_state_due(const spool *sp, uint64_t now_ms); /* lazy ack persistence (see spool_state.c) */

/* spool_sync.c */
void spool_job_add(spool *sp, int kind, const char *a, const char *b);
void spool_job_submit(spool *sp);
int spool_job_busy(const spool *sp);
int spool_job_poll(spool *sp, int wait); /* collects a finished job: 0, or -1 if it failed */
void spool_job_stop(spool *sp);          /* waits for the job, ends the thread */

#endif
