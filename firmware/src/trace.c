/* trace.c - streaming Go execution-trace reader and goroutine lifecycle summary. See trace.h.
 *
 * Wire format, learned from Go's sources (nothing copied):
 *   - Header "go 1.%d trace\x00\x00\x00" (16 bytes): Go 1.27 src/internal/trace/version/version.go
 *     (headerFmt; Go122, Go123, Go125, Go126 are the v2 versions; 1.11-1.21 are the old v1 format).
 *   - Batches: Go 1.27 src/internal/trace/batch.go readBatch: EvEventBatch(1) or
 *     EvExperimentalBatch(49)+experiment byte, then uvarints gen, M, base timestamp, size
 *     (<= tracev2.MaxBatchSize = 64 KiB), then size bytes. Go 1.26+ ends each generation with
 *     a lone EvEndOfGeneration(52) byte (same file); before 1.26 a generation ends when a batch
 *     of the next generation appears (generation.go readGenerationWithSpill).
 *   - Batch kinds by first data byte: EvStrings(4), EvStacks(2), EvCPUSamples(6), the sync
 *     batch - a lone EvFrequency(8) before 1.25, EvSync(50){EvFrequency, EvClockSnapshot(51)}
 *     from 1.25 (generation.go processBatch/setSyncBatch); anything else is an M's events.
 *   - Events: type byte, then a fixed number of uvarints; the first is the timestamp delta
 *     from the previous event of the batch (batchcursor.go readTimedBaseEvent). Arg counts:
 *     Go 1.27 src/internal/trace/tracev2/events.go specs (same numbering back to Go 1.22:
 *     src/internal/trace/v2/event/go122/event.go in Go 1.22; version.go slices the table per
 *     version: 1.22 up to EvUserLog(44), 1.23 and 1.25 up to EvGoStatusStack(48)).
 *   - Strings: EvString id len bytes (len <= 1 KiB); stacks: EvStack id nframes{pc func file line}
 *     (nframes <= 128), frames innermost first (generation.go addStrings/addStacks).
 *   - The runtime flushes each generation's stack table (and late strings) after all M
 *     buffers (Go 1.27 src/runtime/trace.go traceAdvance; Go 1.22 src/runtime/trace2.go).
 * Goroutine semantics (which event moves which goroutine from what to what, and how many
 * StateTransition events Go's parser emits): Go 1.27 src/internal/trace/order.go (advance*)
 * and event.go (Event.StateTransition). GoSwitch/GoSwitchDestroy emit three transitions.
 */
#include "trace.h"
#include "base.h"
#include "gstate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The agent is built -Os for its flash budget, which keeps the per-event helpers below as
 * calls and measured 2x slower on a 100 MB trace. Execution traces are the one input where
 * the agent parses hundreds of MB per run (tools/bench/trace_bench.py), so this file alone is
 * optimised for speed. Clang (fuzz and sanitizer builds) does not take this pragma. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O2")
#endif

/* ---- wire constants (tracev2 numbering) ---- */
enum {
    EV_EVENTBATCH = 1, EV_STACKS = 2, EV_STACK = 3, EV_STRINGS = 4, EV_STRING = 5,
    EV_CPUSAMPLES = 6, EV_FREQUENCY = 8,
    EV_PROCSCHANGE = 9, EV_PROCSTART, EV_PROCSTOP, EV_PROCSTEAL, EV_PROCSTATUS,
    EV_GOCREATE = 14, EV_GOCREATESYSCALL, EV_GOSTART, EV_GODESTROY, EV_GODESTROYSYSCALL,
    EV_GOSTOP = 19, EV_GOBLOCK, EV_GOUNBLOCK, EV_GOSYSCALLBEGIN, EV_GOSYSCALLEND,
    EV_GOSYSCALLENDBLOCKED = 24, EV_GOSTATUS = 25,
    EV_USERLOG = 44, EV_GOSWITCH = 45, EV_GOSWITCHDESTROY = 46, EV_GOCREATEBLOCKED = 47,
    EV_GOSTATUSSTACK = 48, EV_EXPBATCH = 49, EV_SYNC = 50, EV_CLOCKSNAPSHOT = 51,
    EV_ENDOFGEN = 52,
};
#define MAX_BATCH (64u << 10)
#define MAX_STRING 1024u
#define MAX_WIRE_FRAMES 128u
#define KEEP_FRAMES 64u          /* frames kept per needed stack: the user frame is rarely deeper */
#define BATCH_HDR_MAX (2 + 4 * 10)

/* Number of uvarints (timestamp delta included) after the type byte of each timed event. */
static const uint8_t ev_argc[64] = {
    [9] = 3, [10] = 3, [11] = 1, [12] = 4, [13] = 3, [14] = 4, [15] = 2, [16] = 3, [17] = 1,
    [18] = 1, [19] = 3, [20] = 3, [21] = 4, [22] = 3, [23] = 1, [24] = 1, [25] = 4, [26] = 3,
    [27] = 1, [28] = 2, [29] = 3, [30] = 2, [31] = 2, [32] = 2, [33] = 3, [34] = 2, [35] = 2,
    [36] = 1, [37] = 2, [38] = 2, [39] = 2, [40] = 5, [41] = 3, [42] = 4, [43] = 4, [44] = 5,
    [45] = 3, [46] = 3, [47] = 4, [48] = 5,
};

static const char *const ev_names[64] = {
    [1] = "EventBatch", [2] = "Stacks", [3] = "Stack", [4] = "Strings", [5] = "String",
    [6] = "CPUSamples", [7] = "CPUSample", [8] = "Frequency", [9] = "ProcsChange",
    [10] = "ProcStart", [11] = "ProcStop", [12] = "ProcSteal", [13] = "ProcStatus",
    [14] = "GoCreate", [15] = "GoCreateSyscall", [16] = "GoStart", [17] = "GoDestroy",
    [18] = "GoDestroySyscall", [19] = "GoStop", [20] = "GoBlock", [21] = "GoUnblock",
    [22] = "GoSyscallBegin", [23] = "GoSyscallEnd", [24] = "GoSyscallEndBlocked",
    [25] = "GoStatus", [26] = "STWBegin", [27] = "STWEnd", [28] = "GCActive", [29] = "GCBegin",
    [30] = "GCEnd", [31] = "GCSweepActive", [32] = "GCSweepBegin", [33] = "GCSweepEnd",
    [34] = "GCMarkAssistActive", [35] = "GCMarkAssistBegin", [36] = "GCMarkAssistEnd",
    [37] = "HeapAlloc", [38] = "HeapGoal", [39] = "GoLabel", [40] = "UserTaskBegin",
    [41] = "UserTaskEnd", [42] = "UserRegionBegin", [43] = "UserRegionEnd", [44] = "UserLog",
    [45] = "GoSwitch", [46] = "GoSwitchDestroy", [47] = "GoCreateBlocked",
    [48] = "GoStatusStack", [49] = "ExperimentalBatch", [50] = "Sync", [51] = "ClockSnapshot",
    [52] = "EndOfGeneration",
};

const char *et_trace_event_name(unsigned typ)
{
    return typ < 64 && ev_names[typ] ? ev_names[typ] : "?";
}

const char *et_tg_state_name(unsigned s)
{
    static const char *const n[] = {"NotExist", "Runnable", "Running", "Waiting", "Syscall"};
    return s < ET_TG_STATE_COUNT ? n[s] : "Bad";
}

/* ---- internal tables ---- */

/* Goroutine record. The pending stack/reason fields hold generation-local IDs until the
 * generation ends, then global site/reason indices (flags say which). */
enum {
    GF_CREATED = 1u << 0,
    GF_CREATE_PEND = 1u << 1,
    GF_START_PEND = 1u << 2,
    GF_BLOCK_PEND = 1u << 3,
    GF_REASON_PEND = 1u << 4,
    GF_SINCE_RAW = 1u << 5, /* since is in ticks of the open generation */
    GF_BEFORE = 1u << 6,    /* in its state since before the window */
    GF_USED = 1u << 7,
    GF_FRESH = 1u << 8,     /* record inserted by the current event */
};

/* Fields every event touches first: a 56-byte record straddles two cache lines more often
 * the further its hot fields reach. */
struct tg {
    uint64_t goid;
    uint64_t aseq;   /* newest anchor's sequence number in generation agen; free-list link when unused */
    uint64_t since;  /* when it entered `state`: ticks (GF_SINCE_RAW) or ns */
    uint32_t agen;   /* local generation index of the anchor; 0 = none yet */
    uint16_t flags;
    uint8_t state;
    uint32_t transitions;
    uint32_t create_site, start_site, block_site, reason;
};

struct tm {
    uint64_t mid;
    uint64_t cur_g;   /* goroutine running on (or in a syscall on) this M; 0 = none */
    uint64_t run_seq; /* anchor that bound cur_g here (gen run_gen, seq run_seq) */
    uint32_t run_gen;
    uint32_t cur_idx; /* cached record index of cur_g, validated on use */
    uint8_t used;
};

/* String and stack slots are valid only when their gen equals the open generation's index,
 * so closing a generation resets both tables without touching them. */
struct tstr {
    uint64_t id;
    uint32_t off;
    uint16_t len;
    uint32_t gen;
};

struct tstk {
    uint64_t id;
    uint32_t off;   /* into frames */
    uint16_t n;
    uint8_t state;  /* 1 wanted, 2 loaded (slot empty unless gen matches) */
    uint32_t gen;
    uint32_t site;  /* resolved site + 1, 0 if not yet */
};

struct tfr {
    uint32_t func, file, line;
};

struct tsite {
    uint64_t key;
    et_frame user;
    char top[ET_FUNC_MAX];
    uint8_t stdlib_only;
    uint8_t hint;   /* enum et_gstate guessed from the frames */
};

#define MAX_REASONS 48
#define GRECENT 1024u

struct et_trace_parser {
    et_trace_limits lim;
    size_t footprint;
    et_trace_goroutine_fn gfn;
    void *gctx;

    /* input framing */
    uint8_t hdr[16];
    uint32_t hdr_len;
    uint8_t *pend;
    uint32_t pend_len, pend_total;
    int dead;
    int ver;             /* 22, 23, 25, 26 */
    uint8_t maxev;

    /* status */
    uint8_t status;
    char error[160];

    /* generation */
    int gen_open;
    uint64_t cur_gen;
    uint32_t gen_idx;     /* local counter, 1 = first generation seen */
    double ns_per_tick;   /* current generation; 0 = no frequency seen yet */
    uint64_t gen_min_ticks, gen_max_ticks;
    int gen_has_ticks;
    int stk_scanned;
    int gen_saw_stacks;   /* a stack batch arrived in the open generation */

    /* goroutines */
    struct tg *g;
    uint32_t *gidx; uint32_t gmask;
    uint32_t g_free, g_live;
    uint32_t g_hw;        /* records [0, g_hw) have ever been used: bounds the table scans */
    /* goid % GRECENT -> record index + 1, checked before the hash index: the goroutines of a
     * busy trace's events are mostly a few recently seen ones, and each hash probe reads a
     * record in a table of megabytes (a cache miss). Validated on use, never authoritative. */
    uint32_t grecent[GRECENT];

    /* threads */
    struct tm *m; uint32_t mmask, m_count;

    /* strings of the open generation */
    struct tstr *s; uint32_t smask, s_count;
    char *sbytes; uint32_t s_used;

    /* needed stacks of the open generation */
    struct tstk *k; uint32_t kmask, k_count;
    struct tfr *fr; uint32_t fr_used;

    /* global sites (0 = none, 1 = overflow) and reasons (0 = "") */
    struct tsite *site; uint32_t *sidx; uint32_t sitemask, nsites;
    char reasons[MAX_REASONS][ET_TRACE_REASON_MAX];
    uint32_t nreasons;

    /* totals */
    uint64_t bytes, batches, events, transitions;
    uint64_t evcount[64];
    uint64_t start_ns, end_ns; int have_time;
    uint64_t retired, retired_created;
    uint32_t generations;
    et_trace_trunc trunc;
};

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t c = 16;
    while (c < n && c < (1u << 30))
        c <<= 1;
    return c;
}

static inline uint32_t hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

void et_trace_limits_default(et_trace_limits *l)
{
    l->max_goroutines = 65536;
    l->max_strings = 16384;
    l->max_string_bytes = 1u << 20;
    l->max_stacks = 8192;
    l->max_frames = 131072;
    l->max_sites = 1024;
    l->max_threads = 4096;
}

static void limits_fill(et_trace_limits *out, const et_trace_limits *in)
{
    et_trace_limits d;
    et_trace_limits_default(&d);
    *out = in ? *in : d;
#define FILL(f, hi) do { if (!out->f) out->f = d.f; if (out->f > (hi)) out->f = (hi); } while (0)
    FILL(max_goroutines, 1u << 24);
    FILL(max_strings, 1u << 22);
    FILL(max_string_bytes, 1u << 28);
    FILL(max_stacks, 1u << 22);
    FILL(max_frames, 1u << 24);
    FILL(max_sites, 1u << 16);
    FILL(max_threads, 1u << 20);
#undef FILL
    if (out->max_sites < 2)
        out->max_sites = 2;
}

size_t et_trace_memory_bound(const et_trace_limits *in)
{
    et_trace_limits l;
    limits_fill(&l, in);
    size_t n = sizeof(struct et_trace_parser);
    n += MAX_BATCH + BATCH_HDR_MAX;
    n += (size_t)l.max_goroutines * sizeof(struct tg);
    n += (size_t)pow2_at_least(2ull * l.max_goroutines) * sizeof(uint32_t);
    n += (size_t)pow2_at_least(2ull * l.max_threads) * sizeof(struct tm);
    n += (size_t)pow2_at_least(2ull * l.max_strings) * sizeof(struct tstr);
    n += l.max_string_bytes;
    n += (size_t)pow2_at_least(2ull * l.max_stacks) * sizeof(struct tstk);
    n += (size_t)l.max_frames * sizeof(struct tfr);
    n += (size_t)l.max_sites * sizeof(struct tsite);
    n += (size_t)pow2_at_least(2ull * l.max_sites) * sizeof(uint32_t);
    return n;
}

et_trace_parser *et_trace_parser_new(const et_trace_limits *limits)
{
    et_trace_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    limits_fill(&p->lim, limits);
    p->footprint = et_trace_memory_bound(&p->lim);
    p->gmask = pow2_at_least(2ull * p->lim.max_goroutines) - 1;
    p->mmask = pow2_at_least(2ull * p->lim.max_threads) - 1;
    p->smask = pow2_at_least(2ull * p->lim.max_strings) - 1;
    p->kmask = pow2_at_least(2ull * p->lim.max_stacks) - 1;
    p->sitemask = pow2_at_least(2ull * p->lim.max_sites) - 1;
    /* calloc: pages never touched are never resident, so a small trace costs little. */
    p->pend = malloc(MAX_BATCH + BATCH_HDR_MAX);
    p->g = calloc(p->lim.max_goroutines, sizeof *p->g);
    p->gidx = calloc((size_t)p->gmask + 1, sizeof *p->gidx);
    p->m = calloc((size_t)p->mmask + 1, sizeof *p->m);
    p->s = calloc((size_t)p->smask + 1, sizeof *p->s);
    p->sbytes = malloc(p->lim.max_string_bytes);
    p->k = calloc((size_t)p->kmask + 1, sizeof *p->k);
    p->fr = malloc((size_t)p->lim.max_frames * sizeof *p->fr);
    p->site = calloc(p->lim.max_sites, sizeof *p->site);
    p->sidx = calloc((size_t)p->sitemask + 1, sizeof *p->sidx);
    if (!p->pend || !p->g || !p->gidx || !p->m || !p->s || !p->sbytes || !p->k || !p->fr || !p->site || !p->sidx) {
        et_trace_parser_free(p);
        return NULL;
    }
    /* Records are handed out from g_hw upwards, then from the free list of retired ones
     * (threaded through aseq), so untouched records are never written. */
    p->g_free = UINT32_MAX;
    /* Site 0: none; site 1: overflow. Reason 0: "". */
    p->nsites = 2;
    et_strlcpy(p->site[1].top, "(sites overflow)", ET_FUNC_MAX);
    et_strlcpy(p->site[1].user.func, "(sites overflow)", ET_FUNC_MAX);
    p->nreasons = 1;
    return p;
}

void et_trace_parser_free(et_trace_parser *p)
{
    if (!p)
        return;
    free(p->pend); free(p->g); free(p->gidx); free(p->m); free(p->s); free(p->sbytes);
    free(p->k); free(p->fr); free(p->site); free(p->sidx);
    free(p);
}

size_t et_trace_parser_footprint(const et_trace_parser *p) { return p->footprint; }

void et_trace_parser_set_goroutine_fn(et_trace_parser *p, et_trace_goroutine_fn fn, void *ctx)
{
    p->gfn = fn;
    p->gctx = ctx;
}

/* ---- status ---- */
__attribute__((format(printf, 2, 3)))
static void partial(et_trace_parser *p, const char *fmt, ...)
{
    if (p->status == ET_TRACE_OK)
        p->status = ET_TRACE_PARTIAL;
    if (p->error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof p->error, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 3, 4)))
static int die(et_trace_parser *p, int status, const char *fmt, ...)
{
    p->dead = 1;
    /* A stream that already yielded generations keeps them, marked partial. */
    if (p->generations || p->gen_open)
        status = ET_TRACE_PARTIAL;
    if (p->status < status)
        p->status = (uint8_t)status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof p->error, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- varints ---- */
/* 1 ok, 0 ran out of bytes, -1 overflow (same limits as Go's binary.Uvarint). */
static inline int uv(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *q = *pp;
    uint64_t v = 0;
    for (unsigned shift = 0; q < end; shift += 7) {
        uint8_t b = *q++;
        if (shift == 63 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *pp = q;
            *out = v;
            return 1;
        }
        if (shift >= 63)
            return -1;
    }
    return 0;
}

/* A uvarint is at most this long (uv gives up after shift 63). */
#define UV_MAX 10

/* ---- goroutine table ---- */
static struct tg *g_find(et_trace_parser *p, uint64_t goid, uint32_t *slot_out)
{
    uint32_t i = hash64(goid) & p->gmask;
    for (;;) {
        uint32_t v = p->gidx[i];
        if (!v) {
            if (slot_out)
                *slot_out = i;
            return NULL;
        }
        if (p->g[v - 1].goid == goid) {
            if (slot_out)
                *slot_out = i;
            return &p->g[v - 1];
        }
        i = (i + 1) & p->gmask;
    }
}

/* g_get's slow path: the hash index, then insertion. */
static struct tg *g_get_slow(et_trace_parser *p, uint64_t goid, uint32_t *recent)
{
    if (goid == 0 || goid == UINT64_MAX) {
        p->trunc.malformed++;
        return NULL;
    }
    uint32_t slot;
    struct tg *g = g_find(p, goid, &slot);
    if (g) {
        g->flags &= (uint16_t)~GF_FRESH;
        *recent = (uint32_t)(g - p->g) + 1;
        return g;
    }
    uint32_t idx;
    if (p->g_free != UINT32_MAX) {
        idx = p->g_free;
        p->g_free = (uint32_t)p->g[idx].aseq;
    } else if (p->g_hw < p->lim.max_goroutines) {
        idx = p->g_hw;
    } else {
        p->trunc.goroutines++;
        return NULL;
    }
    g = &p->g[idx];
    memset(g, 0, sizeof *g);
    g->goid = goid;
    g->flags = GF_USED | GF_FRESH;
    if (idx >= p->g_hw)
        p->g_hw = idx + 1;
    p->gidx[slot] = idx + 1;
    *recent = idx + 1;
    p->g_live++;
    return g;
}

/* Look up or insert. NULL (counted) when the table is full or goid is invalid. The recent
 * cache hit is inlined into the event loop: it is the path of nearly every event. (Goid 0
 * never matches: a used record never holds it.) */
static inline __attribute__((always_inline)) struct tg *g_get(et_trace_parser *p, uint64_t goid)
{
    uint32_t *recent = &p->grecent[goid & (GRECENT - 1)];
    if (*recent) {
        struct tg *c = &p->g[*recent - 1];
        if (c->goid == goid && (c->flags & GF_USED)) {
            c->flags &= (uint16_t)~GF_FRESH;
            return c;
        }
    }
    return g_get_slow(p, goid, recent);
}

/* Remove from the index (backward-shift deletion keeps linear probing intact). */
static void g_remove(et_trace_parser *p, struct tg *g)
{
    uint32_t slot;
    if (!g_find(p, g->goid, &slot))
        return;
    uint32_t i = slot;
    for (;;) {
        p->gidx[i] = 0;
        uint32_t j = i;
        for (;;) {
            j = (j + 1) & p->gmask;
            uint32_t v = p->gidx[j];
            if (!v)
                goto done;
            uint32_t home = hash64(p->g[v - 1].goid) & p->gmask;
            /* Can entry at j move to i? Yes if its home is not in (i, j] cyclically. */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
                p->gidx[i] = v;
                i = j;
                break;
            }
        }
    }
done:
    g->flags = 0;
    g->aseq = p->g_free;
    p->g_free = (uint32_t)(g - p->g);
    p->g_live--;
}

/* Record an anchor (an event carrying the goroutine's sequence number, or a status/creation
 * which is sequence 0). Returns 1 if it is the newest seen so far in this generation, in which
 * case the caller sets the state: later sequence numbers are later in time whatever order the
 * batches arrived in (order.go: seq.succeeds). */
static inline int g_anchor(et_trace_parser *p, struct tg *g, uint64_t seq)
{
    if (g->agen == p->gen_idx && seq <= g->aseq)
        return 0;
    g->agen = p->gen_idx;
    g->aseq = seq;
    return 1;
}

static inline void g_set(struct tg *g, uint8_t st, uint64_t ts)
{
    g->state = st;
    g->since = ts;
    g->flags = (uint16_t)((g->flags | GF_SINCE_RAW) & ~GF_BEFORE);
}

static inline void set_pend_stack(et_trace_parser *p, struct tg *g, uint32_t *field, uint16_t flag, uint64_t id)
{
    if (id > UINT32_MAX) {
        p->trunc.stacks++;
        id = 0;
    }
    *field = (uint32_t)id;
    if (id) {
        g->flags |= flag;
        p->stk_scanned = 0; /* a stack batch must (re)collect this ID */
    } else {
        g->flags &= (uint16_t)~flag;
    }
}

static inline void set_pend_reason(struct tg *g, uint64_t id)
{
    g->reason = id > UINT32_MAX ? 0 : (uint32_t)id;
    if (g->reason)
        g->flags |= GF_REASON_PEND;
    else
        g->flags &= (uint16_t)~GF_REASON_PEND;
}

/* ---- threads ---- */
static struct tm *m_get(et_trace_parser *p, uint64_t mid)
{
    uint32_t i = hash64(mid) & p->mmask;
    for (;;) {
        struct tm *m = &p->m[i];
        if (!m->used) {
            if (p->m_count >= p->lim.max_threads) {
                p->trunc.threads++;
                return NULL;
            }
            m->used = 1;
            m->mid = mid;
            p->m_count++;
            return m;
        }
        if (m->mid == mid)
            return m;
        i = (i + 1) & p->mmask;
    }
}

static inline void m_bind(et_trace_parser *p, struct tm *ms, struct tg *g, uint64_t seq)
{
    if (!ms)
        return;
    ms->cur_g = g ? g->goid : 0;
    ms->cur_idx = g ? (uint32_t)(g - p->g) : 0;
    ms->run_gen = p->gen_idx;
    ms->run_seq = seq;
}

/* The goroutine an M-local event (GoBlock, GoStop, syscalls, GoDestroy) is about, and
 * whether that M's run is the goroutine's newest anchor (else a later event elsewhere
 * already decided its state). */
static inline struct tg *g_own(et_trace_parser *p, struct tm *ms, int *latest)
{
    if (!ms || !ms->cur_g) {
        p->trunc.orphan_events++;
        return NULL;
    }
    struct tg *g = &p->g[ms->cur_idx];
    if (!(g->flags & GF_USED) || g->goid != ms->cur_g) {
        g = g_find(p, ms->cur_g, NULL);
        if (!g) {
            p->trunc.goroutines++;
            return NULL;
        }
        ms->cur_idx = (uint32_t)(g - p->g);
    }
    if (ms->run_gen != p->gen_idx) {
        /* The binding is from an earlier generation: a goroutine that sat in a syscall on
         * this M across the boundary, whose status in this generation another M emitted (at
         * a ProcSteal, or traceAdvance's status sweep). That status is this generation's
         * base (sequence 0) and this M's events follow it, whichever batch we read first. */
        if (g->agen != p->gen_idx) {
            g->agen = p->gen_idx;
            g->aseq = 0;
        }
        ms->run_gen = p->gen_idx;
        ms->run_seq = 0;
    }
    *latest = g->agen == ms->run_gen && g->aseq == ms->run_seq;
    return g;
}

/* ---- strings ---- */
static void str_put(et_trace_parser *p, uint64_t id, const uint8_t *b, uint32_t len)
{
    if (p->s_count >= p->lim.max_strings || p->s_used + len > p->lim.max_string_bytes) {
        p->trunc.strings++;
        return;
    }
    uint32_t i = hash64(id) & p->smask;
    while (p->s[i].gen == p->gen_idx) {
        if (p->s[i].id == id) { /* duplicate ID: Go rejects the trace; keep the first */
            p->trunc.malformed++;
            return;
        }
        i = (i + 1) & p->smask;
    }
    p->s[i].gen = p->gen_idx;
    p->s[i].id = id;
    p->s[i].off = p->s_used;
    p->s[i].len = (uint16_t)len;
    memcpy(p->sbytes + p->s_used, b, len);
    p->s_used += len;
    p->s_count++;
}

/* NULL if unknown. *len gets the length (strings are not NUL-terminated in the arena). */
static const char *str_get(et_trace_parser *p, uint64_t id, uint32_t *len)
{
    uint32_t i = hash64(id) & p->smask;
    while (p->s[i].gen == p->gen_idx) {
        if (p->s[i].id == id) {
            *len = p->s[i].len;
            return p->sbytes + p->s[i].off;
        }
        i = (i + 1) & p->smask;
    }
    return NULL;
}

/* ---- needed stacks ---- */
static struct tstk *stk_slot(et_trace_parser *p, uint64_t id, int insert)
{
    uint32_t i = hash64(id) & p->kmask;
    while (p->k[i].gen == p->gen_idx) {
        if (p->k[i].id == id)
            return &p->k[i];
        i = (i + 1) & p->kmask;
    }
    if (!insert)
        return NULL;
    if (p->k_count >= p->lim.max_stacks) {
        p->trunc.stacks++;
        return NULL;
    }
    p->k[i].gen = p->gen_idx;
    p->k[i].state = 1;
    p->k[i].id = id;
    p->k[i].site = 0;
    p->k_count++;
    return &p->k[i];
}

static void want_stacks(et_trace_parser *p)
{
    for (uint32_t i = 0; i < p->g_hw; i++) {
        struct tg *g = &p->g[i];
        if (!(g->flags & GF_USED))
            continue;
        if (g->flags & GF_CREATE_PEND)
            stk_slot(p, g->create_site, 1);
        if (g->flags & GF_START_PEND)
            stk_slot(p, g->start_site, 1);
        if (g->flags & GF_BLOCK_PEND)
            stk_slot(p, g->block_site, 1);
    }
    p->stk_scanned = 1;
}

/* ---- sites ---- */
static int has_prefix(const char *s, uint32_t n, const char *pre)
{
    size_t l = strlen(pre);
    return n >= l && memcmp(s, pre, l) == 0;
}

/* Frame classes are gstate.h's, so a trace site and a goroutine-profile site of the same
 * code get the same user frame (profile.h's rule: innermost frame outside runtime/stdlib). */
static int is_runtime_func(const char *s, uint32_t n) { return et_func_is_runtime_n(s, n); }
static int is_std_func(const char *s, uint32_t n) { return et_func_is_stdlib_n(s, n); }

static uint8_t frame_hint(const char *s, uint32_t n)
{
#define H(pre, st) if (has_prefix(s, n, pre)) return st
    H("runtime.chanrecv", ET_G_CHAN_RECV);
    H("runtime.chansend", ET_G_CHAN_SEND);
    H("runtime.selectgo", ET_G_SELECT);
    H("sync.(*Cond).Wait", ET_G_COND_WAIT);
    H("sync.(*WaitGroup).Wait", ET_G_WAITGROUP);
    H("sync.(*RWMutex).RLock", ET_G_RWMUTEX_R);
    H("sync.(*RWMutex).Lock", ET_G_RWMUTEX_W);
    H("sync.(*Mutex).Lock", ET_G_MUTEX);
    H("internal/sync.(*Mutex).Lock", ET_G_MUTEX);
    H("time.Sleep", ET_G_SLEEP);
    H("runtime.netpollblock", ET_G_IO_WAIT);
    H("internal/poll.", ET_G_IO_WAIT);
#undef H
    if (n == 13 && memcmp(s, "runtime.block", 13) == 0)
        return ET_G_SELECT_NO_CASES;
    return ET_G_UNKNOWN;
}

static void copy_str(char *dst, size_t cap, const char *s, uint32_t n)
{
    et_strlcpyn(dst, cap, s, n);
}

static void copy_tail(char *dst, size_t cap, const char *s, uint32_t n)
{
    if (n >= cap) {
        s += n - (cap - 1);
        n = (uint32_t)(cap - 1);
    }
    et_strlcpyn(dst, cap, s, n);
}

static uint32_t site_intern(et_trace_parser *p, const struct tsite *cand)
{
    uint32_t i = hash64(cand->key) & p->sitemask;
    while (p->sidx[i]) {
        struct tsite *s = &p->site[p->sidx[i] - 1];
        if (s->key == cand->key && strcmp(s->top, cand->top) == 0 && s->user.line == cand->user.line &&
            strcmp(s->user.func, cand->user.func) == 0 && strcmp(s->user.file, cand->user.file) == 0)
            return p->sidx[i] - 1;
        i = (i + 1) & p->sitemask;
    }
    if (p->nsites >= p->lim.max_sites) {
        p->trunc.sites++;
        return 1;
    }
    uint32_t idx = p->nsites++;
    p->site[idx] = *cand;
    p->sidx[i] = idx + 1;
    return idx;
}

/* Stack (this generation's ID) -> global site index; 0 if no stack or not available. */
static uint32_t resolve_stack(et_trace_parser *p, uint32_t id)
{
    if (!id)
        return 0;
    struct tstk *k = stk_slot(p, id, 0);
    if (!k || k->state != 2) {
        p->trunc.stacks++;
        return 0;
    }
    if (k->n == 0) /* an empty stack: nothing to say, nothing lost */
        return 0;
    if (k->site)
        return k->site - 1;
    struct tsite c;
    memset(&c, 0, sizeof c);
    int have_top = 0, have_user = 0;
    const char *first = NULL, *first_file = NULL;
    uint32_t first_len = 0, first_file_len = 0, first_line = 0;
    for (uint32_t f = 0; f < k->n; f++) {
        const struct tfr *fr = &p->fr[k->off + f];
        uint32_t fl = 0, ffl = 0;
        if (fr->func == 0) /* pc=0 func=0: the runtime could not symbolize it */
            continue;
        const char *fn = str_get(p, fr->func, &fl);
        const char *file = str_get(p, fr->file, &ffl);
        if (!fn) {
            p->trunc.strings++;
            continue;
        }
        if (!c.hint)
            c.hint = frame_hint(fn, fl);
        if (!first) {
            first = fn;
            first_len = fl;
            first_file = file;
            first_file_len = ffl;
            first_line = fr->line;
        }
        if (!have_top && !is_runtime_func(fn, fl)) {
            copy_str(c.top, sizeof c.top, fn, fl);
            have_top = 1;
            if (!have_user) { /* provisional user frame: innermost non-runtime */
                copy_str(c.user.func, sizeof c.user.func, fn, fl);
                if (file)
                    copy_tail(c.user.file, sizeof c.user.file, file, ffl);
                c.user.line = fr->line;
            }
        }
        if (!have_user && !is_runtime_func(fn, fl) && !is_std_func(fn, fl)) {
            copy_str(c.user.func, sizeof c.user.func, fn, fl);
            c.user.file[0] = 0;
            if (file)
                copy_tail(c.user.file, sizeof c.user.file, file, ffl);
            c.user.line = fr->line;
            have_user = 1;
        }
        if (have_top && have_user && c.hint)
            break;
    }
    if (!first) /* only unsymbolized frames */
        return 0;
    if (!have_top) { /* all runtime: the runtime's own goroutines */
        copy_str(c.top, sizeof c.top, first, first_len);
        copy_str(c.user.func, sizeof c.user.func, first, first_len);
        if (first_file)
            copy_tail(c.user.file, sizeof c.user.file, first_file, first_file_len);
        c.user.line = first_line;
    }
    c.stdlib_only = (uint8_t)!have_user;
    uint64_t h = et_fnv1a_str(ET_FNV_INIT, c.top);
    h = et_fnv1a_str(h, c.user.func);
    h = et_fnv1a_str(h, c.user.file);
    h = et_fnv1a(h, &c.user.line, sizeof c.user.line);
    c.key = h;
    uint32_t idx = site_intern(p, &c);
    k->site = idx + 1;
    return idx;
}

static uint32_t reason_intern(et_trace_parser *p, const char *s, uint32_t n)
{
    if (n == 0)
        return 0;
    char tmp[ET_TRACE_REASON_MAX];
    copy_str(tmp, sizeof tmp, s, n);
    for (uint32_t i = 1; i < p->nreasons; i++)
        if (strcmp(p->reasons[i], tmp) == 0)
            return i;
    if (p->nreasons >= MAX_REASONS)
        return MAX_REASONS - 1; /* last slot doubles as "(other)" */
    uint32_t i = p->nreasons++;
    if (i == MAX_REASONS - 1)
        et_strlcpy(p->reasons[i], "(other)", ET_TRACE_REASON_MAX);
    else
        memcpy(p->reasons[i], tmp, sizeof tmp);
    return i;
}

/* ---- generations ---- */
static void gen_begin(et_trace_parser *p, uint64_t gen)
{
    p->gen_open = 1;
    p->cur_gen = gen;
    p->gen_idx++;
    p->ns_per_tick = 0;
    p->gen_has_ticks = 0;
    p->stk_scanned = 0;
    p->gen_saw_stacks = 0;
}

static inline uint64_t ticks_ns(et_trace_parser *p, uint64_t t)
{
    double v = (double)t * p->ns_per_tick;
    return v >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)v;
}

static void retire(et_trace_parser *p, struct tg *g)
{
    if (p->gfn) {
        et_trace_goroutine v = {
            .id = g->goid, .state = g->state, .created = !!(g->flags & GF_CREATED),
            .transitions = g->transitions, .reason = p->reasons[g->reason < p->nreasons ? g->reason : 0],
            .since_ns = (g->flags & GF_BEFORE) ? 0 : g->since,
        };
        p->gfn(p->gctx, &v);
    }
    p->retired++;
    if (g->flags & GF_CREATED)
        p->retired_created++;
    g_remove(p, g);
}

/* Close the open generation: resolve what goroutine records point at in its tables, convert
 * its timestamps, retire goroutines that ended, and reset the per-generation tables. */
static void gen_end(et_trace_parser *p)
{
    if (!p->gen_open)
        return;
    if (p->ns_per_tick == 0) {
        partial(p, "generation %llu has no frequency event (truncated?)", (unsigned long long)p->cur_gen);
        p->ns_per_tick = 1.0;
    }
    if (p->gen_has_ticks) {
        uint64_t a = ticks_ns(p, p->gen_min_ticks), b = ticks_ns(p, p->gen_max_ticks);
        if (!p->have_time || a < p->start_ns)
            p->start_ns = a;
        if (!p->have_time || b > p->end_ns)
            p->end_ns = b;
        p->have_time = 1;
    }
    uint64_t unresolved_before = p->trunc.stacks;
    for (uint32_t i = 0; i < p->g_hw; i++) {
        struct tg *g = &p->g[i];
        if (!(g->flags & GF_USED))
            continue;
        if (g->flags & GF_CREATE_PEND)
            g->create_site = resolve_stack(p, g->create_site);
        if (g->flags & GF_START_PEND)
            g->start_site = resolve_stack(p, g->start_site);
        if (g->flags & GF_BLOCK_PEND)
            g->block_site = resolve_stack(p, g->block_site);
        if (g->flags & GF_REASON_PEND) {
            uint32_t n = 0;
            const char *s = str_get(p, g->reason, &n);
            if (!s)
                p->trunc.strings++;
            g->reason = s ? reason_intern(p, s, n) : 0;
        }
        if (g->flags & GF_SINCE_RAW)
            g->since = ticks_ns(p, g->since);
        g->flags &= (uint16_t)~(GF_CREATE_PEND | GF_START_PEND | GF_BLOCK_PEND | GF_REASON_PEND | GF_SINCE_RAW | GF_FRESH);
        if (g->state == ET_TG_NOTEXIST && g->agen)
            retire(p, g);
    }
    if (p->trunc.stacks > unresolved_before && !p->gen_saw_stacks)
        partial(p, "generation %llu is incomplete: no stack table (trace likely truncated)", (unsigned long long)p->cur_gen);
    /* The string and stack slots of this generation become invalid with the next gen_idx. */
    p->s_count = p->s_used = p->k_count = p->fr_used = 0;
    p->gen_open = 0;
    p->generations++;
}

/* ---- batch kinds ---- */
static void do_strings(et_trace_parser *p, const uint8_t *d, const uint8_t *end)
{
    d++; /* EvStrings */
    while (d < end) {
        uint64_t id, len;
        if (*d++ != EV_STRING || uv(&d, end, &id) != 1 || uv(&d, end, &len) != 1 || len > MAX_STRING ||
            len > (uint64_t)(end - d)) {
            p->trunc.malformed++;
            partial(p, "malformed string table in generation %llu", (unsigned long long)p->cur_gen);
            return;
        }
        str_put(p, id, d, (uint32_t)len);
        d += len;
    }
}

static void do_stacks(et_trace_parser *p, const uint8_t *d, const uint8_t *end)
{
    if (!p->stk_scanned)
        want_stacks(p);
    p->gen_saw_stacks = 1;
    d++; /* EvStacks */
    while (d < end) {
        uint64_t id, nf;
        if (*d++ != EV_STACK || uv(&d, end, &id) != 1 || uv(&d, end, &nf) != 1 || nf > MAX_WIRE_FRAMES) {
            p->trunc.malformed++;
            partial(p, "malformed stack table in generation %llu", (unsigned long long)p->cur_gen);
            return;
        }
        struct tstk *k = stk_slot(p, id, 0);
        int keep = k && k->state == 1;
        uint32_t kept = 0;
        if (keep) {
            k->off = p->fr_used;
            k->n = 0;
        }
        for (uint64_t f = 0; f < nf; f++) {
            uint64_t pc, fn, file, line;
            if (uv(&d, end, &pc) != 1 || uv(&d, end, &fn) != 1 || uv(&d, end, &file) != 1 || uv(&d, end, &line) != 1) {
                p->trunc.malformed++;
                partial(p, "malformed stack %llu in generation %llu", (unsigned long long)id, (unsigned long long)p->cur_gen);
                if (keep)
                    k->state = 2;
                return;
            }
            if (!keep)
                continue;
            if (kept >= KEEP_FRAMES || p->fr_used >= p->lim.max_frames) {
                p->trunc.frames++;
                continue;
            }
            struct tfr *fr = &p->fr[p->fr_used++];
            fr->func = fn > UINT32_MAX ? 0 : (uint32_t)fn;
            fr->file = file > UINT32_MAX ? 0 : (uint32_t)file;
            fr->line = line > UINT32_MAX ? UINT32_MAX : (uint32_t)line;
            kept++;
        }
        if (keep) {
            k->n = (uint16_t)kept;
            k->state = 2;
        }
    }
}

static void do_sync(et_trace_parser *p, uint64_t base_ts, const uint8_t *d, const uint8_t *end)
{
    if (p->ver >= 25)
        d++; /* EvSync */
    (void)base_ts;
    while (d < end) {
        uint8_t t = *d++;
        uint64_t a[4];
        if (t == EV_FREQUENCY) {
            if (uv(&d, end, &a[0]) != 1 || a[0] == 0)
                goto bad;
            p->ns_per_tick = 1.0 / ((double)a[0] / 1e9); /* Go: frequency(1.0 / (float64(f) / 1e9)) */
        } else if (t == EV_CLOCKSNAPSHOT && p->ver >= 25) {
            for (int i = 0; i < 4; i++)
                if (uv(&d, end, &a[i]) != 1)
                    goto bad;
        } else {
            goto bad;
        }
    }
    return;
bad:
    p->trunc.malformed++;
    partial(p, "malformed sync batch in generation %llu", (unsigned long long)p->cur_gen);
}

static inline uint8_t status_to_state(uint64_t s)
{
    /* tracev2.GoStatus: 1 Runnable, 2 Running, 3 Syscall, 4 Waiting */
    static const uint8_t map[5] = {0, ET_TG_RUNNABLE, ET_TG_RUNNING, ET_TG_SYSCALL, ET_TG_WAITING};
    return s >= 1 && s <= 4 ? map[s] : 0;
}

/* One M's batch of timed events. */
static void do_events(et_trace_parser *p, uint64_t mid, uint64_t ts, const uint8_t *d, const uint8_t *end)
{
    struct tm *ms = m_get(p, mid);
    const uint8_t maxev = p->maxev;
    uint64_t a[5];
    /* Counted in a register and stored once per batch: p->events is a uint64_t like the
     * goroutine fields written per event, so the compiler must assume they alias. */
    uint64_t nev = 0;
    p->stk_scanned = 0;
    if (!p->gen_has_ticks || ts < p->gen_min_ticks)
        p->gen_min_ticks = ts;
    while (d < end) {
        unsigned typ = *d++;
        unsigned n = typ <= maxev ? ev_argc[typ] : 0;
        if (!n) {
            p->trunc.malformed++;
            partial(p, "unknown event type %u in an M batch of generation %llu", typ, (unsigned long long)p->cur_gen);
            break;
        }
        if (end - d >= 5 * UV_MAX) {
            /* Away from the batch's end every argument fits: no bounds check on the
             * one-byte fast path, and a constant bound for uv. */
            for (unsigned i = 0; i < n; i++) {
                if (*d < 0x80)
                    a[i] = *d++;
                else if (uv(&d, d + UV_MAX, &a[i]) != 1)
                    goto bad;
            }
        } else {
            for (unsigned i = 0; i < n; i++) {
                /* Fast path for one-byte varints, the common case for deltas and small IDs. */
                if (d < end && *d < 0x80)
                    a[i] = *d++;
                else if (uv(&d, end, &a[i]) != 1)
                    goto bad;
            }
        }
        ts += a[0];
        nev++;
        p->evcount[typ]++;
        struct tg *g;
        int latest = 0;
        switch (typ) {
        case EV_GOCREATE:
        case EV_GOCREATEBLOCKED:
        case EV_GOCREATESYSCALL:
            if (!(g = g_get(p, a[1])))
                break;
            g->transitions++;
            p->transitions++;
            g->flags |= GF_CREATED;
            if (typ != EV_GOCREATESYSCALL) {
                set_pend_stack(p, g, &g->create_site, GF_CREATE_PEND, a[3]);
                set_pend_stack(p, g, &g->start_site, GF_START_PEND, a[2]);
            }
            if (g_anchor(p, g, 0)) {
                g_set(g, typ == EV_GOCREATE ? ET_TG_RUNNABLE : typ == EV_GOCREATEBLOCKED ? ET_TG_WAITING : ET_TG_SYSCALL, ts);
                g->block_site = 0;
                g->reason = 0;
                g->flags &= (uint16_t)~(GF_BLOCK_PEND | GF_REASON_PEND);
            }
            if (typ == EV_GOCREATESYSCALL)
                m_bind(p, ms, g, 0);
            break;
        case EV_GOSTART:
            if (!(g = g_get(p, a[1])))
                break;
            g->transitions++;
            p->transitions++;
            if (g_anchor(p, g, a[2]))
                g_set(g, ET_TG_RUNNING, ts);
            m_bind(p, ms, g, a[2]);
            break;
        case EV_GOUNBLOCK:
            if (!(g = g_get(p, a[1])))
                break;
            g->transitions++;
            p->transitions++;
            if (g_anchor(p, g, a[2]))
                g_set(g, ET_TG_RUNNABLE, ts);
            break;
        case EV_GODESTROY:
        case EV_GODESTROYSYSCALL:
        case EV_GOSTOP:
        case EV_GOBLOCK:
        case EV_GOSYSCALLENDBLOCKED:
            if ((g = g_own(p, ms, &latest))) {
                g->transitions++;
                p->transitions++;
                if (latest) {
                    uint8_t st = typ == EV_GOBLOCK ? ET_TG_WAITING
                               : (typ == EV_GOSTOP || typ == EV_GOSYSCALLENDBLOCKED) ? ET_TG_RUNNABLE
                               : ET_TG_NOTEXIST;
                    g_set(g, st, ts);
                    if (typ == EV_GOBLOCK || typ == EV_GOSTOP) {
                        set_pend_reason(g, a[1]);
                        set_pend_stack(p, g, &g->block_site, GF_BLOCK_PEND, a[2]);
                    }
                }
            }
            if (ms)
                ms->cur_g = 0;
            break;
        case EV_GOSYSCALLBEGIN:
            if ((g = g_own(p, ms, &latest))) {
                g->transitions++;
                p->transitions++;
                if (latest) {
                    g_set(g, ET_TG_SYSCALL, ts);
                    set_pend_reason(g, 0);
                    set_pend_stack(p, g, &g->block_site, GF_BLOCK_PEND, a[2]);
                }
            }
            break;
        case EV_GOSYSCALLEND:
            if ((g = g_own(p, ms, &latest))) {
                g->transitions++;
                p->transitions++;
                if (latest)
                    g_set(g, ET_TG_RUNNING, ts);
            }
            break;
        case EV_GOSTATUS:
        case EV_GOSTATUSSTACK: {
            uint8_t st = status_to_state(a[3]);
            if (!st) {
                p->trunc.malformed++;
                break;
            }
            if (!(g = g_get(p, a[1])))
                break;
            int fresh = !!(g->flags & GF_FRESH);
            g->transitions++;
            p->transitions++;
            if (g_anchor(p, g, 0)) {
                if (fresh || g->state != st) {
                    g->state = st;
                    g->since = fresh ? 0 : ts;
                    g->flags = (uint16_t)((g->flags & ~(GF_SINCE_RAW | GF_BEFORE)) | (fresh ? GF_BEFORE : GF_SINCE_RAW));
                }
                if (typ == EV_GOSTATUSSTACK && (st == ET_TG_WAITING || st == ET_TG_SYSCALL) &&
                    (fresh || (!g->block_site && !(g->flags & GF_BLOCK_PEND))))
                    set_pend_stack(p, g, &g->block_site, GF_BLOCK_PEND, a[4]);
            }
            if (st == ET_TG_RUNNING) {
                m_bind(p, ms, g, 0);
            } else if (st == ET_TG_SYSCALL) {
                if (ms && a[2] == ms->mid) {
                    m_bind(p, ms, g, 0);
                } else {
                    /* Another M reports a goroutine sitting in a syscall on M a[2]. If that M's
                     * own batch of this generation was already read, its binding is current. */
                    struct tm *om = m_get(p, a[2]);
                    if (om && om->run_gen != p->gen_idx)
                        m_bind(p, om, g, 0);
                }
            }
            break;
        }
        case EV_GOSWITCH:
        case EV_GOSWITCHDESTROY:
            /* Unblock next, block/destroy current, start next (order.go advanceGoSwitch). */
            if ((g = g_own(p, ms, &latest))) {
                g->transitions++;
                p->transitions++;
                if (latest) {
                    g_set(g, typ == EV_GOSWITCH ? ET_TG_WAITING : ET_TG_NOTEXIST, ts);
                    set_pend_reason(g, 0);
                    set_pend_stack(p, g, &g->block_site, GF_BLOCK_PEND, 0);
                }
            }
            if (!(g = g_get(p, a[1]))) {
                if (ms)
                    ms->cur_g = 0;
                break;
            }
            g->transitions += 2;
            p->transitions += 2;
            if (g_anchor(p, g, a[2]))
                g_set(g, ET_TG_RUNNING, ts);
            m_bind(p, ms, g, a[2]);
            break;
        default:
            break;
        }
    }
    goto out;
bad:
    p->trunc.malformed++;
    partial(p, "truncated or invalid event in generation %llu", (unsigned long long)p->cur_gen);
out:
    p->events += nev;
    if (!p->gen_has_ticks || ts > p->gen_max_ticks)
        p->gen_max_ticks = ts;
    p->gen_has_ticks = 1;
}

/* ---- framing ---- */
struct bhdr {
    int end_of_gen;
    uint8_t exp;
    uint64_t gen, m, ts, size;
    size_t hdrlen, total;
};

/* 1 parsed, 0 need more bytes, -1 fatal (message set). */
static int parse_bhdr(et_trace_parser *p, const uint8_t *b, size_t n, struct bhdr *h)
{
    if (n < 1)
        return 0;
    memset(h, 0, sizeof *h);
    uint8_t t = b[0];
    if (t == EV_ENDOFGEN && p->ver >= 26) {
        h->end_of_gen = 1;
        h->total = 1;
        return 1;
    }
    if (t != EV_EVENTBATCH && !(t == EV_EXPBATCH && p->ver >= 23))
        return die(p, ET_TRACE_ERR_FORMAT, "expected a batch, got byte 0x%02x after %llu bytes (garbage or corrupt trace)",
                   t, (unsigned long long)p->bytes);
    const uint8_t *q = b + 1, *end = b + n;
    if (t == EV_EXPBATCH) {
        if (q >= end)
            return 0;
        h->exp = *q++;
        if (!h->exp)
            h->exp = 0xff;
    }
    uint64_t *f[4] = {&h->gen, &h->m, &h->ts, &h->size};
    for (int i = 0; i < 4; i++) {
        int r = uv(&q, end, f[i]);
        if (r == 0)
            return n >= BATCH_HDR_MAX ? die(p, ET_TRACE_ERR_FORMAT, "corrupt batch header") : 0;
        if (r < 0)
            return die(p, ET_TRACE_ERR_FORMAT, "corrupt batch header (varint overflow)");
    }
    if (h->size > MAX_BATCH)
        return die(p, ET_TRACE_ERR_FORMAT, "invalid batch size %llu, maximum is %u", (unsigned long long)h->size, MAX_BATCH);
    h->hdrlen = (size_t)(q - b);
    h->total = h->hdrlen + (size_t)h->size;
    return 1;
}

static void do_batch(et_trace_parser *p, const struct bhdr *h, const uint8_t *b)
{
    p->batches++;
    if (h->end_of_gen) {
        gen_end(p);
        return;
    }
    if (h->gen == 0) {
        p->trunc.malformed++;
        partial(p, "batch with invalid generation 0");
        return;
    }
    if (p->gen_open && h->gen != p->cur_gen) {
        if (!(p->ver < 26 && h->gen == p->cur_gen + 1))
            partial(p, "generation %llu follows %llu without an end-of-generation (out of order or truncated)",
                    (unsigned long long)h->gen, (unsigned long long)p->cur_gen);
        gen_end(p);
    }
    if (!p->gen_open)
        gen_begin(p, h->gen);
    const uint8_t *d = b + h->hdrlen, *end = d + h->size;
    if (h->exp || d == end)
        return; /* experimental batches (alloc/free events) carry nothing we use */
    switch (d[0]) {
    case EV_STRINGS: do_strings(p, d, end); return;
    case EV_STACKS: do_stacks(p, d, end); return;
    case EV_CPUSAMPLES: return;
    case EV_FREQUENCY:
        if (p->ver < 25) { do_sync(p, h->ts, d, end); return; }
        break;
    case EV_SYNC:
        if (p->ver >= 25) { do_sync(p, h->ts, d, end); return; }
        break;
    default:
        break;
    }
    do_events(p, h->m, h->ts, d, end);
}

static int check_header(et_trace_parser *p)
{
    static const char pre[] = "go 1.";
    if (memcmp(p->hdr, pre, 5) != 0)
        return die(p, ET_TRACE_ERR_FORMAT, "bad file format: not a Go execution trace");
    int v = 0, i = 5;
    while (i < 8 && p->hdr[i] >= '0' && p->hdr[i] <= '9')
        v = v * 10 + (p->hdr[i++] - '0');
    static const char tail[] = " trace\0\0\0";
    if (i == 5 || i + 9 > 16 || memcmp(p->hdr + i, tail, 9) != 0) {
        /* "go 1.5 trace\0\0\0\0" style headers of the old format have a different padding. */
        if (i > 5 && i + 6 <= 16 && memcmp(p->hdr + i, " trace", 6) == 0 && v < 22)
            return die(p, ET_TRACE_ERR_VERSION, "unsupported trace version go 1.%d (pre-1.22 format)", v);
        return die(p, ET_TRACE_ERR_FORMAT, "bad file format: not a Go execution trace");
    }
    switch (v) {
    case 22: p->maxev = 44; break;
    case 23:
    case 25:
    case 26: p->maxev = 48; break;
    default:
        if (v < 22)
            return die(p, ET_TRACE_ERR_VERSION, "unsupported trace version go 1.%d (pre-1.22 format)", v);
        return die(p, ET_TRACE_ERR_VERSION, "unsupported trace version go 1.%d (newer than this reader)", v);
    }
    p->ver = v;
    return 0;
}

int et_trace_parser_feed(et_trace_parser *p, const uint8_t *buf, size_t len)
{
    if (p->dead)
        return -1;
    while (p->hdr_len < 16 && len) {
        p->hdr[p->hdr_len++] = *buf++;
        len--;
        p->bytes++;
        if (p->hdr_len <= 5 && p->hdr[p->hdr_len - 1] != "go 1."[p->hdr_len - 1])
            return die(p, ET_TRACE_ERR_FORMAT, "bad file format: not a Go execution trace");
    }
    if (p->hdr_len < 16)
        return 0;
    if (!p->ver && check_header(p) < 0)
        return -1;
    struct bhdr h;
    while (len) {
        if (p->pend_len == 0) {
            int r = parse_bhdr(p, buf, len, &h);
            if (r < 0)
                return -1;
            if (r > 0 && h.total <= len) { /* whole batch in this chunk: no copy */
                do_batch(p, &h, buf);
                buf += h.total;
                len -= h.total;
                p->bytes += h.total;
                continue;
            }
        }
        if (p->pend_total == 0) {
            size_t take = ET_MIN(len, (size_t)BATCH_HDR_MAX - p->pend_len);
            memcpy(p->pend + p->pend_len, buf, take);
            p->pend_len += (uint32_t)take;
            buf += take;
            len -= take;
            int r = parse_bhdr(p, p->pend, p->pend_len, &h);
            if (r < 0)
                return -1;
            if (r == 0)
                continue;
            p->pend_total = (uint32_t)h.total;
            if (p->pend_len > p->pend_total) { /* took bytes of the next batch: give them back */
                size_t excess = p->pend_len - p->pend_total;
                buf -= excess;
                len += excess;
                p->pend_len = p->pend_total;
            }
        }
        size_t take = ET_MIN(len, (size_t)(p->pend_total - p->pend_len));
        memcpy(p->pend + p->pend_len, buf, take);
        p->pend_len += (uint32_t)take;
        buf += take;
        len -= take;
        if (p->pend_len == p->pend_total) {
            if (parse_bhdr(p, p->pend, p->pend_len, &h) != 1)
                return -1;
            p->bytes += p->pend_total;
            p->pend_len = p->pend_total = 0;
            do_batch(p, &h, p->pend);
        }
    }
    return p->dead ? -1 : 0;
}

/* ---- summary ---- */
static uint8_t norm_state(et_trace_parser *p, const struct tg *g)
{
    switch (g->state) {
    case ET_TG_RUNNING: return ET_G_RUNNING;
    case ET_TG_RUNNABLE: return ET_G_RUNNABLE;
    case ET_TG_SYSCALL: return ET_G_SYSCALL;
    default: break;
    }
    const char *r = p->reasons[g->reason < p->nreasons ? g->reason : 0];
    uint8_t hint = g->block_site < p->nsites ? p->site[g->block_site].hint : 0;
    if (!strcmp(r, "chan receive")) return ET_G_CHAN_RECV;
    if (!strcmp(r, "chan send")) return ET_G_CHAN_SEND;
    if (!strcmp(r, "select")) return ET_G_SELECT;
    if (!strcmp(r, "sync.(*Cond).Wait")) return ET_G_COND_WAIT;
    if (!strcmp(r, "sleep")) return ET_G_SLEEP;
    if (!strcmp(r, "network")) return ET_G_IO_WAIT;
    if (!strcmp(r, "forever"))
        return hint == ET_G_CHAN_RECV ? ET_G_CHAN_RECV_NIL : hint == ET_G_CHAN_SEND ? ET_G_CHAN_SEND_NIL : ET_G_SELECT_NO_CASES;
    if (!strcmp(r, "sync")) {
        if (hint == ET_G_MUTEX || hint == ET_G_RWMUTEX_R || hint == ET_G_RWMUTEX_W || hint == ET_G_WAITGROUP)
            return hint;
        return ET_G_SEMACQUIRE;
    }
    if (!strcmp(r, "system goroutine wait") || !strncmp(r, "GC ", 3) || !strcmp(r, "wait until GC ends") ||
        !strcmp(r, "wait for debug call"))
        return ET_G_RUNTIME;
    if (hint)
        return hint;
    if (g->block_site > 1 && p->site[g->block_site].stdlib_only &&
        is_runtime_func(p->site[g->block_site].top, (uint32_t)strlen(p->site[g->block_site].top)))
        return ET_G_RUNTIME;
    return ET_G_UNKNOWN;
}

static int group_cmp(const void *a, const void *b)
{
    const et_trace_group *x = a, *y = b;
    int wx = x->go_state == ET_TG_WAITING, wy = y->go_state == ET_TG_WAITING;
    if (wx != wy)
        return wy - wx;
    if (x->overflow != y->overflow)
        return x->overflow - y->overflow;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    if (x->oldest_ns != y->oldest_ns)
        return x->oldest_ns < y->oldest_ns ? 1 : -1;
    return x->key < y->key ? -1 : x->key > y->key;
}

int et_trace_parser_finish(et_trace_parser *p, et_trace_summary *out)
{
    memset(out, 0, sizeof *out);
    if (p->hdr_len == 0 && !p->dead)
        die(p, ET_TRACE_ERR_FORMAT, "empty input");
    else if (p->hdr_len < 16 && !p->dead)
        die(p, ET_TRACE_ERR_FORMAT, "truncated trace header");
    if (p->pend_len && !p->dead)
        partial(p, "trace truncated inside a batch (%u of %u bytes)", p->pend_len, p->pend_total ? p->pend_total : p->pend_len);
    if (p->gen_open) {
        if (p->ver >= 26 && !p->dead)
            partial(p, "incomplete generation %llu: no end-of-generation marker (trace likely truncated)",
                    (unsigned long long)p->cur_gen);
        gen_end(p);
    }
    uint64_t end = p->end_ns;
    /* Per-goroutine view and the groups. Groups are keyed by indices (sites and reasons are
     * interned by name, so equal indices mean equal names). */
    uint32_t gk[ET_TRACE_MAX_GROUPS][5];
    for (uint32_t i = 0; i < p->g_hw; i++) {
        struct tg *g = &p->g[i];
        if (!(g->flags & GF_USED))
            continue;
        if (p->gfn) {
            et_trace_goroutine v = {
                .id = g->goid, .state = g->state, .created = !!(g->flags & GF_CREATED),
                .transitions = g->transitions, .reason = p->reasons[g->reason < p->nreasons ? g->reason : 0],
                .since_ns = (g->flags & GF_BEFORE) ? 0 : g->since,
            };
            p->gfn(p->gctx, &v);
        }
        out->goroutines.seen++;
        if (g->flags & GF_CREATED)
            out->goroutines.created++;
        switch (g->state) {
        case ET_TG_WAITING: out->goroutines.waiting++; break;
        case ET_TG_RUNNABLE: out->goroutines.runnable++; break;
        case ET_TG_RUNNING: out->goroutines.running++; break;
        case ET_TG_SYSCALL: out->goroutines.syscall++; break;
        default: out->goroutines.ended++; continue; /* ended but not retired (no generation end) */
        }
        int blockish = g->state == ET_TG_WAITING || g->state == ET_TG_SYSCALL;
        uint32_t key[5] = {
            (g->flags & GF_CREATED) ? g->create_site : 0,
            (g->flags & GF_CREATED) ? g->start_site : 0,
            blockish ? g->block_site : 0,
            g->state == ET_TG_WAITING ? g->reason : 0,
            g->state,
        };
        uint64_t since = (g->flags & GF_BEFORE) ? p->start_ns : g->since;
        uint64_t age = end > since ? end - since : 0;
        et_trace_group *gr = NULL;
        for (uint32_t j = 0; j < out->ngroups; j++)
            if (!memcmp(gk[j], key, sizeof key) && !out->groups[j].overflow) {
                gr = &out->groups[j];
                break;
            }
        if (!gr) {
            if (out->ngroups < ET_TRACE_MAX_GROUPS - 1) {
                uint32_t j = out->ngroups++;
                memcpy(gk[j], key, sizeof key);
                gr = &out->groups[j];
                const struct tsite *cs = &p->site[key[0] < p->nsites ? key[0] : 0];
                const struct tsite *ss = &p->site[key[1] < p->nsites ? key[1] : 0];
                const struct tsite *bs = &p->site[key[2] < p->nsites ? key[2] : 0];
                et_strlcpy(gr->created_by, cs->top, sizeof gr->created_by);
                et_strlcpy(gr->start_func, ss->top, sizeof gr->start_func);
                gr->block = bs->user;
                et_strlcpy(gr->block_func, bs->top, sizeof gr->block_func);
                gr->stdlib_only = key[2] > 1 ? bs->stdlib_only : 0;
                et_strlcpy(gr->reason, p->reasons[key[3] < p->nreasons ? key[3] : 0], sizeof gr->reason);
                gr->go_state = g->state;
                gr->state = norm_state(p, g);
                uint64_t h = et_fnv1a_str(ET_FNV_INIT, gr->created_by);
                h = et_fnv1a_str(h, gr->start_func);
                h = et_fnv1a_str(h, gr->block.func);
                h = et_fnv1a_str(h, gr->block.file);
                h = et_fnv1a(h, &gr->block.line, sizeof gr->block.line);
                h = et_fnv1a_str(h, gr->reason);
                h = et_fnv1a(h, &gr->go_state, 1);
                gr->key = h;
            } else {
                p->trunc.groups++;
                if (out->ngroups == ET_TRACE_MAX_GROUPS - 1) {
                    uint32_t j = out->ngroups++;
                    memset(gk[j], 0xff, sizeof gk[j]);
                    out->groups[j].overflow = 1;
                    et_strlcpy(out->groups[j].block_func, "(groups overflow)", ET_FUNC_MAX);
                    out->groups[j].go_state = ET_TG_WAITING;
                }
                gr = &out->groups[ET_TRACE_MAX_GROUPS - 1];
            }
        }
        gr->count++;
        if (g->flags & GF_CREATED)
            gr->created_in_window++;
        if (g->flags & GF_BEFORE)
            gr->blocked_before_window += g->state == ET_TG_WAITING;
        if (age > gr->oldest_ns)
            gr->oldest_ns = age;
    }
    qsort(out->groups, out->ngroups, sizeof out->groups[0], group_cmp);
    out->goroutines.seen += p->retired;
    out->goroutines.created += p->retired_created;
    out->goroutines.ended += p->retired;
    if (p->trunc.goroutines || p->trunc.threads || p->trunc.strings || p->trunc.stacks || p->trunc.sites ||
        p->trunc.malformed || p->trunc.orphan_events)
        partial(p, "caps hit or malformed input: see trunc counters");
    out->status = p->status;
    out->go_minor = (uint8_t)p->ver;
    et_strlcpy(out->error, p->error, sizeof out->error);
    out->generations = p->generations;
    out->bytes = p->dead ? p->bytes : p->bytes + p->pend_len; /* staged bytes of a cut batch count */
    out->batches = p->batches;
    out->events = p->events;
    memcpy(out->event_counts, p->evcount, sizeof out->event_counts);
    out->transitions = p->transitions;
    out->start_ns = p->start_ns;
    out->end_ns = p->end_ns;
    out->window_ns = p->end_ns > p->start_ns ? p->end_ns - p->start_ns : 0;
    out->trunc = p->trunc;
    return out->status;
}

int et_trace_summarize(const uint8_t *data, size_t len, const et_trace_limits *limits, et_trace_summary *out)
{
    et_trace_parser *p = et_trace_parser_new(limits);
    if (!p) {
        memset(out, 0, sizeof *out);
        out->status = ET_TRACE_ERR_FORMAT;
        et_strlcpy(out->error, "out of memory", sizeof out->error);
        return out->status;
    }
    et_trace_parser_feed(p, data, len);
    int r = et_trace_parser_finish(p, out);
    et_trace_parser_free(p);
    return r;
}
