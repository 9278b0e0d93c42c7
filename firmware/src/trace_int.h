/* trace_int.h - what the execution-trace reader's files share (trace.c framing and lifecycle,
 * trace_events.c event decoding, trace_goroutines.c goroutine/thread state and generations,
 * trace_tables.c strings/stacks/sites, trace_summary.c the summary): wire constants, the
 * parser's tables, and the small inline helpers of the hot path. Not for other modules: the
 * API is trace.h. The wire format and its sources are described at the top of trace.c. */
#ifndef ET_TRACE_INT_H
#define ET_TRACE_INT_H

#include "trace.h"
#include "base.h"
#include "gstate.h"

#include <stdint.h>

/* The agent is built -Os for its flash budget, which keeps the per-event helpers below as
 * calls and measured 2x slower on a 100 MB trace. Execution traces are the one input where
 * the agent parses hundreds of MB per run (tools/bench/trace_bench.py), so the reader's files
 * (every file that includes this header) alone are optimised for speed. Clang (fuzz and
 * sanitizer builds) does not take this pragma. */
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

static inline uint32_t hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
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

/* Frame classes are gstate.h's, so a trace site and a goroutine-profile site of the same
 * code get the same user frame (profile.h's rule: innermost frame outside runtime/stdlib). */
static inline int tr_is_runtime_func(const char *s, uint32_t n) { return et_func_is_runtime_n(s, n); }

/* trace.c: status */
__attribute__((format(printf, 2, 3))) void tr_partial(et_trace_parser *p, const char *fmt, ...);
__attribute__((format(printf, 3, 4))) int tr_die(et_trace_parser *p, int status, const char *fmt, ...);
/* trace_goroutines.c: goroutine and thread tables, generations */
struct tg *tr_g_find(et_trace_parser *p, uint64_t goid, uint32_t *slot_out);
struct tg *tr_g_get_slow(et_trace_parser *p, uint64_t goid, uint32_t *recent);
struct tm *tr_m_get(et_trace_parser *p, uint64_t mid);
void tr_gen_begin(et_trace_parser *p, uint64_t gen);
void tr_gen_end(et_trace_parser *p);
/* The goroutine's final view to the et_trace_goroutine_fn callback, if one is set. */
void tr_emit_goroutine(et_trace_parser *p, const struct tg *g);
/* trace_tables.c: strings, stacks, sites, reasons */
const char *tr_str_get(et_trace_parser *p, uint64_t id, uint32_t *len);
uint32_t tr_resolve_stack(et_trace_parser *p, uint32_t id);
uint32_t tr_reason_intern(et_trace_parser *p, const char *s, uint32_t n);
void tr_do_strings(et_trace_parser *p, const uint8_t *d, const uint8_t *end);
void tr_do_stacks(et_trace_parser *p, const uint8_t *d, const uint8_t *end);
/* trace_events.c: an M's events and the sync batch */
void tr_do_sync(et_trace_parser *p, uint64_t base_ts, const uint8_t *d, const uint8_t *end);
void tr_do_events(et_trace_parser *p, uint64_t mid, uint64_t ts, const uint8_t *d, const uint8_t *end);

#endif
