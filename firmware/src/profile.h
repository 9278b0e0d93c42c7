/* profile.h - what the parse stage hands to the analyze stage.
 *
 * Every parser streams: it is fed the HTTP body in chunks of any size (1 byte to 64 KiB)
 * and fills one of the fixed-size summaries below. Nothing here grows with the input: a
 * 100k-goroutine dump and a 10-goroutine dump use the same memory. Whatever does not fit
 * (more distinct sites than ET_MAX_GSITES, longer names than the buffers, deeper stacks)
 * is folded or cut and *counted* in the `trunc` counters, never dropped silently.
 *
 * Strings are NUL-terminated copies inside the structs, so a summary can outlive the
 * buffers it was parsed from and be copied with memcpy.
 */
#ifndef ET_PROFILE_H
#define ET_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#define ET_FUNC_MAX 128   /* "pkg/path.(*Type).Method[...]" is cut beyond this */
#define ET_FILE_MAX 128   /* file paths keep their *tail* when cut (the useful part) */
#define ET_LABELS_MAX 96  /* pprof labels of one record, as printed */
#define ET_STACK_MAX 8    /* frames kept in a site's sample stack */
#define ET_MAX_GSITES 384 /* distinct goroutine sites per profile */
#define ET_GSITE_IDS 8    /* oldest goroutine ids kept per site (debug=2) */
#define ET_WAIT_BUCKETS 4 /* wait histogram: <1, 1-4, 5-29, >=30 minutes */
#define ET_MAX_HSITES 256 /* distinct heap allocation sites per profile */

/* ---- normalised goroutine states ----
 * Go prints wait reasons that changed between releases (WaitGroup.Wait is "semacquire"
 * before 1.24 and "sync.WaitGroup.Wait" after; 1.25 added "sync.Mutex.Lock" etc.), and
 * debug=1 / proto profiles print no state at all, only frames. Parsers map both the
 * printed reason and the blocking frames (runtime.chanrecv1, sync.(*Cond).Wait, ...) to
 * this one enum so that the analyzer never sees a version difference. */
enum et_gstate {
    ET_G_UNKNOWN = 0,
    ET_G_RUNNING,
    ET_G_RUNNABLE,
    ET_G_SYSCALL,
    ET_G_IO_WAIT,        /* netpoll: "IO wait" */
    ET_G_CHAN_SEND,
    ET_G_CHAN_RECV,
    ET_G_CHAN_SEND_NIL,  /* "chan send (nil chan)": blocks forever by construction */
    ET_G_CHAN_RECV_NIL,
    ET_G_SELECT,
    ET_G_SELECT_NO_CASES, /* select {} */
    ET_G_MUTEX,          /* sync.Mutex.Lock (semacquire on a mutex) */
    ET_G_RWMUTEX_R,      /* sync.RWMutex.RLock */
    ET_G_RWMUTEX_W,      /* sync.RWMutex.Lock */
    ET_G_COND_WAIT,      /* sync.Cond.Wait */
    ET_G_WAITGROUP,      /* sync.WaitGroup.Wait */
    ET_G_SEMACQUIRE,     /* other semaphore waits */
    ET_G_SLEEP,          /* time.Sleep */
    ET_G_TIMER_WAIT,     /* other timer-driven parks */
    ET_G_RUNTIME,        /* GC workers, finalizer, forcegc, scavenger, trace reader... */
    ET_G_STATE_COUNT
};

/* Stable short names used in JSON, CBOR and the collector: "chan send", "chan receive",
 * "select", "sync.Mutex.Lock", "sync.WaitGroup.Wait", "IO wait", "sleep", ... */
const char *et_gstate_name(enum et_gstate s);
/* 1 for states where a goroutine waits on something another goroutine must do
 * (channels, select, sync primitives); 0 for running/runnable/syscall/IO/sleep/runtime. */
int et_gstate_is_sync_blocked(enum et_gstate s);

typedef struct et_frame {
    char func[ET_FUNC_MAX]; /* fully qualified, e.g. "main.(*server).handle" */
    char file[ET_FILE_MAX]; /* as printed by Go, tail kept when cut */
    uint32_t line;
} et_frame;

/* Counters of what a bounded parser had to fold or cut. All zero on a clean parse. */
typedef struct et_trunc {
    uint32_t sites;    /* goroutines/records folded into the overflow site */
    uint32_t frames;   /* frames beyond ET_STACK_MAX (or a parser's depth cap) */
    uint32_t strings;  /* names/paths cut to fit */
    uint32_t lines;    /* input lines longer than the parser's line buffer */
    uint32_t malformed; /* records skipped because they did not parse */
} et_trunc;

/* ---- goroutine profiles (goroutine and goroutineleak; debug=1, debug=2, proto) ---- */
enum et_gprofile_kind { ET_GP_GOROUTINE = 0, ET_GP_GOROUTINELEAK = 1 };

/* One "site": goroutines grouped by (normalised state, user frame).
 * The user frame is the innermost frame that belongs to the service: not runtime.*,
 * internal/..., and not the standard library (a frame whose package's first path element
 * is a Go standard-library top-level name, e.g. "sync", "net/http", "time"; see
 * et_func_is_stdlib in gstate.h: "main" and dot-less module paths are user code), so a leak in net/http called from
 * main is reported at main's line. If every frame is runtime/stdlib (the runtime's own
 * goroutines, an idle http conn.serve) the user frame is the innermost non-runtime frame
 * and `stdlib_only` is set. */
typedef struct et_gsite {
    uint64_t key;          /* et_fnv1a over state + user.func + user.file + user.line (not created_by:
                            * only debug=2 prints it, and the key must not depend on the format) */
    uint8_t state;         /* enum et_gstate */
    uint8_t stdlib_only;   /* no frame outside runtime/stdlib */
    uint8_t nstack;        /* frames in stack[] */
    uint8_t overflow;      /* 1 for the single site that absorbs whatever did not fit */
    uint32_t count;        /* goroutines at this site */
    uint32_t max_wait_min; /* debug=2 "[chan receive, 15 minutes]": the largest N; 0 if none printed */
    uint32_t waiting_count; /* debug=2: goroutines here that printed a wait duration */
    et_frame user;         /* the site's location (see above) */
    char block_func[ET_FUNC_MAX]; /* innermost non-runtime frame, e.g. "sync.(*WaitGroup).Wait" */
    char created_by[ET_FUNC_MAX]; /* "created by F" (without " in goroutine N"); "" for main */
    char labels[ET_LABELS_MAX];   /* debug=1 "# labels: {...}" of the first record, if any */
    char stack[ET_STACK_MAX][ET_FUNC_MAX]; /* sample stack, innermost first, function names only;
                                            * if cut, the last slot is the outermost frame */
    uint32_t leaked_count; /* debug=2 on Go 1.26+: goroutines here printed "(leaked)" (GC-proved) */
    /* debug=2 only. Goroutine ids are never reused, so the lowest ids at a site are its oldest
     * goroutines: two dumps a few intervals apart tell goroutines that stayed (leaked, or a
     * pool) from ones that turn over (in flight). The ET_GSITE_IDS lowest ids are kept with
     * the wait each printed, and every goroutine's wait lands in a histogram. */
    uint8_t nids;                       /* ids kept (<= ET_GSITE_IDS, <= count) */
    uint64_t ids[ET_GSITE_IDS];         /* the lowest goroutine ids here, ascending */
    uint32_t id_wait_min[ET_GSITE_IDS]; /* the wait each of them printed, minutes (0: none) */
    uint32_t wait_hist[ET_WAIT_BUCKETS]; /* goroutines by printed wait: <1, 1-4, 5-29, >=30 min */
} et_gsite;

typedef struct et_gprofile {
    uint8_t kind;            /* enum et_gprofile_kind */
    uint8_t debug;           /* 1, 2, or 0 for proto */
    uint64_t header_total;   /* "goroutine profile: total N"; for debug=2 and proto, the count seen */
    uint64_t goroutines;     /* goroutines accounted for in sites (== sum of counts) */
    uint32_t by_state[ET_G_STATE_COUNT];
    /* For the deadlock check: goroutines with a user frame, split by whether they can run. */
    uint32_t user_sync_blocked;  /* user goroutines in et_gstate_is_sync_blocked states */
    uint32_t user_other;         /* user goroutines running, runnable, in syscall, IO wait, sleep */
    char go_version[24];     /* from debug=2 header labels or build info if the format carries it; else "" */
    uint8_t input_cut;       /* text body ended mid-line: Go's 64 MiB debug=2 cap or a dying service */
    uint32_t nsites;
    et_trunc trunc;
    et_gsite sites[ET_MAX_GSITES];
} et_gprofile;

/* ---- heap profiles (debug=1 text with MemStats, or proto) ---- */
typedef struct et_memstats {
    uint8_t present;          /* 1 if the # runtime.MemStats block was seen */
    uint64_t alloc, total_alloc, sys, mallocs, frees;
    uint64_t heap_alloc, heap_sys, heap_idle, heap_inuse, heap_released, heap_objects;
    uint64_t stack_inuse, stack_sys;
    uint64_t next_gc, last_gc_ns;
    uint32_t num_gc, num_forced_gc;
    double gc_cpu_fraction;
} et_memstats;

typedef struct et_hsite {
    uint64_t key;             /* et_fnv1a over user.func + user.file + user.line */
    et_frame user;            /* allocation site: innermost frame outside runtime/stdlib */
    uint64_t inuse_objects, inuse_bytes;
    uint64_t alloc_objects, alloc_bytes;
    uint8_t overflow;
} et_hsite;

typedef struct et_hprofile {
    uint64_t sample_rate;     /* heap/1048576 in the header: MemProfileRate */
    uint64_t total_inuse_bytes, total_inuse_objects, total_alloc_bytes, total_alloc_objects;
    et_memstats ms;
    uint32_t nsites;
    et_trunc trunc;
    et_hsite sites[ET_MAX_HSITES];
} et_hprofile;

/* ---- /proc figures of one process ---- */
typedef struct et_procstat {
    uint8_t present;
    uint64_t vm_rss_kb, vm_hwm_kb, vm_size_kb, rss_anon_kb, rss_file_kb;
    uint32_t threads;
    uint32_t fds;              /* entries in /proc/PID/fd; 0 if unreadable */
    uint64_t start_time_ticks; /* field 22 of /proc/PID/stat: with the PID, the incarnation */
    uint64_t utime_ticks, stime_ticks;
} et_procstat;

#endif
