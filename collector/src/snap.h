/* snap.h - the collector's view of one decoded snapshot: exactly the fields it stores.
 *
 * decode.c fills it from the wire envelope (wire/ owns the format); store.c writes it to
 * SQLite. Keeping this small struct between them means a schema change in wire/ touches
 * one adapter function, not the storage code. Fixed sizes: a hostile payload cannot make
 * the collector allocate. */
#ifndef COLL_SNAP_H
#define COLL_SNAP_H

#include <stdint.h>

#define COLL_ID_MAX 64
#define COLL_STR_MAX 128
#define COLL_MAX_FINDINGS 32

typedef struct coll_finding {
    char fingerprint[17];      /* hex of the agent's name-only hash */
    char kind[24];             /* "goroutine-leak", "deadlock", "heap-growth", ... */
    char confidence[16];       /* "suspected" | "likely" | "confirmed" */
    char state[32];            /* goroutine state name, "" for non-goroutine findings */
    uint32_t evidence;         /* et_evidence bits */
    char function[COLL_STR_MAX];
    char file[COLL_STR_MAX];
    uint32_t line;
    char created_by[COLL_STR_MAX];
    uint32_t count;            /* goroutines at the site (or kind-specific) */
    double growth_per_min;
    double oldest_wait_s;
    uint64_t value;
} coll_finding;

typedef struct coll_snap {
    char snapshot_id[COLL_ID_MAX];  /* unique per snapshot: the dedup key */
    char device_id[COLL_ID_MAX];    /* what the payload claims; checked against the session */
    char board[COLL_ID_MAX];
    char agent_version[COLL_ID_MAX];
    char boot_id[COLL_ID_MAX];
    uint64_t seq;
    uint64_t mono_ms;
    int64_t wall_ms;
    int wall_trusted;               /* 0: the device clock was not synced, do not trust wall_ms */
    char service[COLL_ID_MAX];
    char pod[COLL_ID_MAX];
    char incarnation[COLL_ID_MAX];
    uint64_t goroutines;
    uint64_t heap_inuse;
    uint64_t rss_kb;
    uint32_t threads;
    uint64_t spool_dropped;         /* the agent spool's drop counters, summed */
    uint32_t nfindings;
    coll_finding f[COLL_MAX_FINDINGS];
} coll_snap;

#endif
