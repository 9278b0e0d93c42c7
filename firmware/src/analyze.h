/* analyze.h - the analyze stage: a fixed-size history per target and the heuristics that
 * turn it into findings (finding.h).
 *
 * One et_analyzer per target (service incarnation). Each sampling cycle the sample stage
 * hands it whatever it fetched (a goroutine profile, a goroutineleak profile, a heap
 * profile, /proc figures; any of them may be missing) with et_analyzer_add(); the
 * analyzer keeps a compact record in a ring of ET_AN_WINDOW samples, follows up to
 * ET_AN_SITES goroutine sites and ET_AN_HSITES heap sites across samples, and re-evaluates
 * its verdicts. et_analyzer_findings() materialises the current findings; a finding exists
 * only while its evidence does (see analyze.c for the policy and the thresholds, and why).
 *
 * Memory: everything lives inside struct et_analyzer, sized at compile time; nothing is
 * allocated after the caller has the struct. sizeof(et_analyzer) is 116,624 bytes (113.9 KiB)
 * on x86_64 and on 32-bit armv7 alike (tests/unit/test_analyze.c asserts <= 128 KiB): 48
 * sites x 1680 B, 16 heap sites x 664 B, 8 GC-proved sites x 1440 B, 48 records x 96 B, the
 * rest small. A gateway following 8 services spends under 1 MiB on history. Evaluation uses
 * about 8 KiB of stack (Theil-Sen pair slopes: 1128 floats) and no heap; the caller's
 * et_findings is another 47 KiB (it can be reused across targets).
 *
 * Single-threaded like the rest of the agent; no globals are written.
 */
#ifndef ET_ANALYZE_H
#define ET_ANALYZE_H

#include <stdint.h>
#include "profile.h"
#include "finding.h"

#define ET_AN_WINDOW 48      /* samples of history kept per target */
#define ET_AN_SITES 48       /* goroutine sites followed at once */
#define ET_AN_HSITES 16      /* heap allocation sites followed at once */
#define ET_AN_PROBATION 128  /* untracked sites remembered (key + last count) to spot newcomers that grow */
#define ET_AN_GCPROOF 8      /* sites from the latest goroutineleak profile */
#define ET_AN_MAX_ALLOW 40
#define ET_AN_ALLOW_LEN 128

typedef struct et_analyze_conf {
    /* Benign long waits: a site whose function (its user frame; for stdlib-only sites the
     * innermost non-runtime frame) starts with one of these prefixes never yields the weak
     * "large stable cluster" signal and needs stronger growth before it alerts (growth there
     * can still be a leak: an HTTP client that never closes bodies leaks persistConn loops). */
    char allow[ET_AN_MAX_ALLOW][ET_AN_ALLOW_LEN];
    uint32_t nallow;
    uint32_t window;          /* samples used (<= ET_AN_WINDOW); 0 = ET_AN_WINDOW */
    uint32_t min_site_rise;   /* goroutines a site must gain over its growth window (5) */
    double min_site_rel;      /* ... and this fraction of its starting count (0.10) */
    uint32_t min_total_rise;  /* goroutines the whole process must gain for a trend (10) */
    double min_total_rel;     /* ... and this fraction of the starting total (0.05) */
    uint64_t min_heap_rise;   /* bytes of post-GC heap growth (1 MiB) */
    double min_heap_rel;      /* ... and this fraction of the starting floor (0.10) */
    uint64_t min_rss_rise_kb; /* RSS growth outside the Go heap, KiB (2048) */
    double min_rss_rel;       /* ... relative to the starting RSS (0.05) */
    uint32_t min_thread_rise; /* OS threads (8) */
    double min_thread_rel;    /* ... relative to the starting thread count (0.25) */
    uint32_t large_site;      /* goroutines at one sync-blocked site for the weak, never-alerting "large cluster" signal (1000) */
} et_analyze_conf;

/* Thresholds above plus the built-in allow-list (net/http keep-alive loops, os/signal,
 * testing, runtime). */
void et_analyze_conf_defaults(et_analyze_conf *c);
/* Adds a benign function prefix (from config "allow = ..."). 0, or -1 when the list is full
 * or the prefix empty / too long. */
int et_analyze_conf_allow(et_analyze_conf *c, const char *prefix);

/* What one sampling cycle produced. Any pointer may be NULL (not fetched, 404, error). */
struct et_trace_summary;
typedef struct et_sample_in {
    uint64_t t_ms;                 /* monotonic ms (et_now_mono_ms) when the cycle sampled */
    const et_gprofile *goroutine;  /* /debug/pprof/goroutine (debug=1, debug=2 or proto) */
    const et_gprofile *leak;       /* /debug/pprof/goroutineleak */
    const et_hprofile *heap;       /* /debug/pprof/heap (debug=1: sites + MemStats) */
    const et_procstat *proc;       /* /proc/PID/status etc. */
    const struct et_trace_summary *trace; /* execution-trace summary (ET_E_TRACE) */
} et_sample_in;

/* ---- compact history ---- */
enum {
    ET_AN_HAS_G = 1u << 0,     /* goroutine profile */
    ET_AN_HAS_MS = 1u << 1,    /* MemStats */
    ET_AN_HAS_PROC = 1u << 2,  /* /proc */
    ET_AN_HAS_HEAP = 1u << 3,  /* heap profile sites */
    ET_AN_HAS_WAIT = 1u << 4,  /* the goroutine profile was debug=2 (wait durations) */
    ET_AN_DL_CAND = 1u << 5,   /* every user goroutine blocked (deadlock candidate) */
    ET_AN_ALL_TRACKED = 1u << 6, /* every site of the profile was followed (absent = zero) */
};

typedef struct et_an_rec {
    uint64_t t_ms;
    uint64_t heap_inuse, heap_sys, heap_released, stack_inuse, next_gc, sys, total_alloc;
    uint64_t rss_kb, rss_anon_kb;
    uint32_t flags;
    uint32_t goroutines;   /* header total */
    uint32_t num_gc;
    uint32_t threads;
} et_an_rec;

#define ET_AN_NOCOUNT UINT32_MAX /* site not tracked (or no profile) at that sample */

typedef struct et_an_site {
    uint64_t key;            /* hash of user func+file+line (not et_gsite.key: see site_akey); 0 = free */
    uint8_t state, stdlib_only, nstack, allowed;
    uint8_t verdict;         /* 0 none, else 1 + enum et_confidence of its goroutine-leak finding */
    uint8_t grew;            /* once raised at likely+: kept through a plateau while debug=2 shows the goroutines never woke */
    uint16_t k_up;           /* increasing steps in the growth window of the last evaluation */
    uint32_t evidence;
    uint32_t tracked_seq;    /* sample sequence number when tracking started */
    uint32_t touched;        /* seq+1 of the last sample that counted it */
    uint32_t wait_seq;       /* sample of the latest debug=2 observation */
    uint32_t max_wait_min, waiting_count;
    uint32_t trace_seq;      /* sample of the latest trace that saw new goroutines park here */
    uint32_t trace_created;  /* how many (created in the window, still waiting at its end) */
    double slope_per_min;
    uint64_t onset_ms;       /* start of the growth window when first raised */
    uint64_t first_seen_ms;  /* when the finding first appeared (0 = not raised) */
    et_frame user;
    char created_by[ET_FUNC_MAX];
    char stack[ET_STACK_MAX][ET_FUNC_MAX];
    uint32_t cnt[ET_AN_WINDOW]; /* per ring slot; ET_AN_NOCOUNT = unknown */
    /* Survivors (analyze_survivors.c): the reference debug=2 dump's oldest goroutine ids at
     * this site, compared with each later dump. */
    uint8_t ref_n;           /* ids in ref_ids */
    uint8_t stayed;          /* the latest comparison: every reference goroutine still here,
                              * none woke since, and the count rose */
    uint32_t ref_count;      /* site count at the reference dump */
    uint32_t ref_seq;        /* sample (seq+1) of the reference dump; 0 = none */
    uint64_t ref_t_ms;
    uint64_t ref_ids[ET_GSITE_IDS];
    uint32_t survivors, surv_of; /* of the reference's ids, how many the latest dump holds */
    uint32_t surv_seq;       /* sample (seq+1) of the latest comparison; 0 = none */
    uint32_t hold_seq;       /* sample (seq+1) since which a count-only likely verdict waits for a
                              * comparison (analyze_goroutine.c); 0 = not waiting */
    uint64_t oldest_id;      /* lowest id in the latest dump (0 = none seen) */
    uint32_t wait_hist[ET_WAIT_BUCKETS];
} et_an_site;

typedef struct et_an_hsite {
    uint64_t key;
    et_frame user;
    uint8_t growing;
    double slope_per_min;    /* bytes/min */
    uint64_t inuse[ET_AN_WINDOW]; /* per ring slot; UINT64_MAX = unknown */
} et_an_hsite;

typedef struct et_an_gcproof {
    uint64_t key;            /* same identity as et_an_site.key */
    uint8_t state, nstack;
    uint32_t count;
    uint64_t seen_ms;
    et_frame user;
    char created_by[ET_FUNC_MAX];
    char stack[ET_STACK_MAX][ET_FUNC_MAX];
} et_an_gcproof;

typedef struct et_an_probe {
    uint64_t key;
    uint32_t count;
    uint32_t seq;
} et_an_probe;

/* A verdict on a process-wide series (heap, rss, threads, total goroutines, stack). */
typedef struct et_an_series_verdict {
    uint8_t confidence1;     /* 0 none, else 1 + enum et_confidence */
    uint16_t k_up;
    double slope_per_min;
    double rise;             /* over the passing window, in the series' unit */
    uint64_t value;
    uint64_t first_seen_ms;
} et_an_series_verdict;

typedef struct et_analyzer {
    et_analyze_conf conf;
    uint32_t seq;            /* samples added so far (the newest is seq-1) */
    uint32_t n;              /* valid records in the ring (<= ET_AN_WINDOW) */
    uint64_t last_t_ms;
    uint64_t start_ticks;    /* /proc start time: a change means a new incarnation */
    et_an_rec rec[ET_AN_WINDOW];
    et_an_site sites[ET_AN_SITES];
    et_an_hsite hsites[ET_AN_HSITES];
    et_an_probe probe[ET_AN_PROBATION];
    et_an_gcproof gcproof[ET_AN_GCPROOF];
    uint32_t ngcproof;
    uint64_t gcproof_ms;     /* when the latest goroutineleak profile arrived (0 = never) */
    /* deadlock: consecutive samples with every user goroutine blocked and nothing changing */
    uint64_t dl_sig;
    uint32_t dl_run;
    uint64_t dl_first_ms;
    et_an_site dl_site;      /* the blocked site to report (no history used) */
    uint32_t dl_count;       /* user goroutines blocked */
    /* process-wide verdicts from the last evaluation */
    et_an_series_verdict v_total, v_stack, v_heap, v_rss, v_threads;
    int v_heap_site;         /* index into hsites of the growing heap site reported, or -1 */
    uint64_t heap_anchor;    /* heap site key that inherited the site-less fingerprint (0 = none) */
    uint8_t heap_siteless;   /* the current heap episode was raised before any site grew */
    uint8_t heap_no_site;    /* enum et_no_site: why the heap finding names no site */
    uint8_t heap_prof_trunc; /* the latest heap profile folded sites away */
    uint32_t heap_prof_sites; /* allocation sites in the latest heap profile */
    int v_thread_site;       /* index into sites of the syscall site that grows with threads, or -1 */
    uint32_t ref_req_seq;    /* sample (seq+1) when a reference dump was last asked for */
    uint32_t d2_usable_seq;  /* sample (seq+1) of the latest debug=2 dump that gave goroutine ids
                              * (not cut or folded, ids parsed); 0 = none since the reset */
    uint32_t evictions;      /* tracked sites replaced (churn) */
    uint32_t untracked;      /* sites seen that found no slot */
} et_analyzer;

void et_analyzer_init(et_analyzer *a, const et_analyze_conf *conf); /* conf NULL = defaults */
void et_analyzer_reset(et_analyzer *a);                             /* forget history, keep conf */
void et_analyzer_add(et_analyzer *a, const et_sample_in *s);
/* Current findings, most confident first. Includes "suspected" ones: the caller decides
 * what to alert on (see et_findings_keep in finding.h; `sample` prints likely+). */
void et_analyzer_findings(const et_analyzer *a, et_findings *out);

/* Sampling policy hook: which deeper (costlier) profile would sharpen a verdict now.
 * ET_DEEP_DEBUG2: a goroutine debug=2 dump (wait durations; it stops the world) because a
 *   site grows or a deadlock is suspected and no dump is at most 2 samples old.
 * ET_DEEP_TRACE: an execution trace, when a site is suspected but not yet likely.
 * ET_DEEP_LEAKPROF: a goroutineleak profile, when anything is suspected (if served).
 *   Also for survivor comparisons (analyze_survivors.c): a reference dump for a quiet site
 *   that starts filling up, and a follow-up a minute later. The sampler forces a GC before
 *   every debug=2 dump: a GC stamps every parked goroutine's wait clock (the runtime sets
 *   waitsince at the first GC that sees it parked and clears it whenever it runs), so a
 *   later dump tells goroutines that never woke since from ones that did.
 * Returns the OR of the bits, 0 when nothing is suspicious. */
enum { ET_DEEP_DEBUG2 = 1u << 0, ET_DEEP_TRACE = 1u << 1, ET_DEEP_LEAKPROF = 1u << 2 };
unsigned et_analyzer_wants_deep(et_analyzer *a); /* not const: it books the reference-dump budget */

/* Statistics used by the heuristics, exposed for the unit tests. */
double et_theil_sen(const double *t, const double *x, int n, float *scratch, int scratch_n);
int et_mann_kendall_s(const double *x, int n);

#endif
