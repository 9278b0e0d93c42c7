/* snapshot_keys.h - CBOR integer map keys of schema versions 1 and 2 (README "Snapshot format").
 * Keys below 24 encode in one byte; that is why every map restarts at 0. Never reuse a
 * retired key within a schema version. */
#ifndef ET_WIRE_SNAPSHOT_KEYS_H
#define ET_WIRE_SNAPSHOT_KEYS_H

/* top-level map */
enum {
    ETK_SCHEMA = 0,        /* uint, 1 or 2, required */
    ETK_ID = 1,            /* bstr[16], required */
    ETK_DEVICE_ID = 2,     /* tstr, required */
    ETK_BOARD = 3,         /* tstr */
    ETK_AGENT_VERSION = 4, /* tstr */
    ETK_SEQ = 5,           /* uint, required */
    ETK_BOOT_ID = 6,       /* bstr[16] */
    ETK_FLAGS = 7,         /* uint, ET_SNAP_F_* */
    ETK_MONO_MS = 8,       /* uint, ms */
    ETK_WALL_MS = 9,       /* int, ms since epoch */
    ETK_TARGET = 10,       /* map, required */
    ETK_GOROUTINES = 11,   /* map */
    ETK_MEM = 12,          /* map */
    ETK_PROC = 13,         /* map */
    ETK_FINDINGS = 14,     /* array of maps */
    ETK_COUNTERS = 15,     /* map */
    ETK_COST = 16,         /* map */
    ETK_ATTACH = 17,       /* array of [kind, finding, bstr] */
    ETK_SETTINGS = 18,     /* schema 3: map, central settings applied / refused */
    ETK_TOP_COUNT
};

/* target map (key 10) */
enum {
    ETK_T_SERVICE = 0, ETK_T_NAMESPACE = 1, ETK_T_POD = 2, ETK_T_CONTAINER = 3, ETK_T_PID = 4,
    ETK_T_START_TICKS = 5, ETK_T_GO_VERSION = 6, ETK_T_URL = 7, ETK_T_COUNT
};

/* goroutines map (key 11); sites are arrays [state, count, func, file, line, max_wait_min, created_by]
 * (full) or [key, count, max_wait_min] (reference to an earlier full entry) */
enum {
    ETK_G_TOTAL = 0, ETK_G_NSITES_TOTAL = 1, ETK_G_OTHER = 2, ETK_G_BY_STATE = 3, ETK_G_SITES = 4, ETK_G_COUNT
};
#define ETK_SITE_ARITY 7
#define ETK_SITE_REF_ARITY 3 /* [key, count, max_wait_min] */

/* mem map (key 12) */
enum {
    ETK_M_HEAP_ALLOC = 0, ETK_M_HEAP_INUSE = 1, ETK_M_HEAP_IDLE = 2, ETK_M_HEAP_RELEASED = 3,
    ETK_M_HEAP_SYS = 4, ETK_M_STACK_INUSE = 5, ETK_M_SYS = 6, ETK_M_NUM_GC = 7, ETK_M_NEXT_GC = 8, ETK_M_COUNT
};

/* proc map (key 13) */
enum { ETK_P_RSS_KB = 0, ETK_P_THREADS = 1, ETK_P_FDS = 2, ETK_P_CPU_TICKS = 3, ETK_P_COUNT };

/* finding map (elements of key 14) */
enum {
    ETK_F_KIND = 0, ETK_F_CONFIDENCE = 1, ETK_F_EVIDENCE = 2, ETK_F_FINGERPRINT = 3, ETK_F_FUNC = 4,
    ETK_F_FILE = 5, ETK_F_LINE = 6, ETK_F_STATE = 7, ETK_F_COUNT = 8, ETK_F_GROWTH = 9, ETK_F_OLDEST_WAIT = 10,
    ETK_F_VALUE = 11, ETK_F_CREATED_BY = 12, ETK_F_STACK = 13, ETK_F_FIRST_SEEN = 14, ETK_F_LAST_SEEN = 15,
    /* schema 2: the debug=2 id evidence behind a slow leak (analyze_survivors.c) */
    ETK_F_SURVIVORS = 16, ETK_F_SURVIVORS_OF = 17, ETK_F_OLDEST_ID = 18, ETK_F_WAIT_HIST = 19,
    /* schema 2: why a heap-growth finding names no allocation site (enum et_no_site) */
    ETK_F_NO_SITE = 20,
    ETK_F_KEYS
};

/* counters map (key 15) */
enum {
    ETK_C_SPOOL_ROUTINE_DROPPED = 0, ETK_C_SPOOL_FINDINGS_DROPPED = 1, ETK_C_SPOOL_CORRUPT_DROPPED = 2,
    ETK_C_SPOOL_BYTES_TODAY = 3, ETK_C_FINDINGS_DROPPED = 4, ETK_C_SITES_TRUNCATED = 5,
    /* schema 2 */
    ETK_C_UPLINK_HELD = 6, ETK_C_UPLINK_REJECTED = 7, ETK_C_UPLINK_HELD_NOW = 8, ETK_C_COUNT
};

/* settings map (key 18, schema 3) */
enum {
    ETK_S_FLEET = 0, ETK_S_DEVICE = 1, ETK_S_REJ_FLEET = 2, ETK_S_REJ_DEVICE = 3, ETK_S_REASON = 4, ETK_S_COUNT
};

/* cost map (key 16) */
enum { ETK_K_BYTES = 0, ETK_K_MS = 1, ETK_K_COUNT };

#endif
