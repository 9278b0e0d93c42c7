/* trace_events.c - the execution-trace reader's hot path: one M's batch of timed events
 * decoded and applied to the goroutine records (which event moves which goroutine from what
 * to what: Go 1.27 src/internal/trace/order.go), and the sync batch (clock frequency). */
#include "trace_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Number of uvarints (timestamp delta included) after the type byte of each timed event. */
static const uint8_t ev_argc[64] = {
    [9] = 3, [10] = 3, [11] = 1, [12] = 4, [13] = 3, [14] = 4, [15] = 2, [16] = 3, [17] = 1,
    [18] = 1, [19] = 3, [20] = 3, [21] = 4, [22] = 3, [23] = 1, [24] = 1, [25] = 4, [26] = 3,
    [27] = 1, [28] = 2, [29] = 3, [30] = 2, [31] = 2, [32] = 2, [33] = 3, [34] = 2, [35] = 2,
    [36] = 1, [37] = 2, [38] = 2, [39] = 2, [40] = 5, [41] = 3, [42] = 4, [43] = 4, [44] = 5,
    [45] = 3, [46] = 3, [47] = 4, [48] = 5,
};

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
    return tr_g_get_slow(p, goid, recent);
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
        g = tr_g_find(p, ms->cur_g, NULL);
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

void tr_do_sync(et_trace_parser *p, uint64_t base_ts, const uint8_t *d, const uint8_t *end)
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
    tr_partial(p, "malformed sync batch in generation %llu", (unsigned long long)p->cur_gen);
}

static inline uint8_t status_to_state(uint64_t s)
{
    /* tracev2.GoStatus: 1 Runnable, 2 Running, 3 Syscall, 4 Waiting */
    static const uint8_t map[5] = {0, ET_TG_RUNNABLE, ET_TG_RUNNING, ET_TG_SYSCALL, ET_TG_WAITING};
    return s >= 1 && s <= 4 ? map[s] : 0;
}

/* A uvarint read with one unaligned 8-byte load, without a branch on its length: the
 * lengths of deltas, goroutine IDs and sequence numbers vary from event to event, so the
 * byte-at-a-time loop mispredicted on most events. The caller guarantees UV_MAX readable
 * bytes. A value longer than 8 bytes (over 56 bits) takes uv(); *bad is set if that
 * overflows 64 bits, as uv() reports it. */
static inline __attribute__((always_inline)) uint64_t uv_fast(const uint8_t **pp, int *bad)
{
    const uint8_t *q = *pp;
    if (*q < 0x80) {
        *pp = q + 1;
        return *q;
    }
    uint64_t w;
    memcpy(&w, q, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    uint64_t stop = ~w & 0x8080808080808080ull; /* bit 7 of each byte that ends the varint */
    if (__builtin_expect(stop == 0, 0)) {
        uint64_t v = 0;
        if (uv(pp, q + UV_MAX, &v) != 1)
            *bad = 1;
        return v;
    }
    /* Keep the bytes up to and including the first stop byte, drop the continuation bits,
     * then close the 1-bit gaps pairwise: 7-bit groups -> 14 -> 28 -> 56 bits. */
    uint64_t x = w & (stop ^ (stop - 1)) & 0x7f7f7f7f7f7f7f7full;
    x = ((x & 0x7f007f007f007f00ull) >> 1) | (x & 0x007f007f007f007full);
    x = ((x & 0x3fff00003fff0000ull) >> 2) | (x & 0x00003fff00003fffull);
    x = ((x & 0x0fffffff00000000ull) >> 4) | (x & 0x000000000fffffffull);
    *pp = q + (__builtin_ctzll(stop) >> 3) + 1;
    return x;
}

/* The 3 or 4 (n, a constant at each call) arguments of a hot event with uv_fast; 0 if one
 * overflows. Written out, not a loop: the -Os build leaves a loop rolled, which measured
 * 25% slower overall. */
static inline __attribute__((always_inline)) int fast_args(const uint8_t **pp, uint64_t *a, unsigned n)
{
    int bad = 0;
    a[0] = uv_fast(pp, &bad);
    a[1] = uv_fast(pp, &bad);
    a[2] = uv_fast(pp, &bad);
    if (n > 3)
        a[3] = uv_fast(pp, &bad);
    return !bad;
}

/* The three events of nearly every scheduling step (a busy trace is >99% these), one
 * function each so the fast and the general path of tr_do_events share them. */
static inline __attribute__((always_inline)) void ev_go_start(et_trace_parser *p, struct tm *ms, const uint64_t *a,
                                                               uint64_t ts)
{
    struct tg *g = g_get(p, a[1]);
    if (!g)
        return;
    g->transitions++;
    p->transitions++;
    if (g_anchor(p, g, a[2]))
        g_set(g, ET_TG_RUNNING, ts);
    m_bind(p, ms, g, a[2]);
}

static inline __attribute__((always_inline)) void ev_go_unblock(et_trace_parser *p, const uint64_t *a, uint64_t ts)
{
    struct tg *g = g_get(p, a[1]);
    if (!g)
        return;
    g->transitions++;
    p->transitions++;
    if (g_anchor(p, g, a[2]))
        g_set(g, ET_TG_RUNNABLE, ts);
}

/* GoDestroy, GoDestroySyscall, GoStop, GoBlock, GoSyscallEndBlocked: the M's goroutine stops. */
static inline __attribute__((always_inline)) void ev_go_off(et_trace_parser *p, struct tm *ms, unsigned typ,
                                                             const uint64_t *a, uint64_t ts)
{
    int latest = 0;
    struct tg *g = g_own(p, ms, &latest);
    if (g) {
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
}

/* One M's batch of timed events. */
void tr_do_events(et_trace_parser *p, uint64_t mid, uint64_t ts, const uint8_t *d, const uint8_t *end)
{
    struct tm *ms = tr_m_get(p, mid);
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
        if (end - d >= 5 * UV_MAX) {
            /* Fast path: the hot events away from the batch's end, where every argument
             * fits, decoded with their argument count known at compile time. */
            switch (typ) {
            case EV_GOSTART:
                if (!fast_args(&d, a, 3))
                    goto bad;
                ts += a[0];
                nev++;
                p->evcount[EV_GOSTART]++;
                ev_go_start(p, ms, a, ts);
                continue;
            case EV_GOUNBLOCK:
                if (!fast_args(&d, a, 4))
                    goto bad;
                ts += a[0];
                nev++;
                p->evcount[EV_GOUNBLOCK]++;
                ev_go_unblock(p, a, ts);
                continue;
            case EV_GOBLOCK:
                if (!fast_args(&d, a, 3))
                    goto bad;
                ts += a[0];
                nev++;
                p->evcount[EV_GOBLOCK]++;
                ev_go_off(p, ms, EV_GOBLOCK, a, ts);
                continue;
            default:
                break;
            }
        }
        unsigned n = typ <= maxev ? ev_argc[typ] : 0;
        if (!n) {
            p->trunc.malformed++;
            tr_partial(p, "unknown event type %u in an M batch of generation %llu", typ, (unsigned long long)p->cur_gen);
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
            ev_go_start(p, ms, a, ts);
            break;
        case EV_GOUNBLOCK:
            ev_go_unblock(p, a, ts);
            break;
        case EV_GODESTROY:
        case EV_GODESTROYSYSCALL:
        case EV_GOSTOP:
        case EV_GOBLOCK:
        case EV_GOSYSCALLENDBLOCKED:
            ev_go_off(p, ms, typ, a, ts);
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
                    struct tm *om = tr_m_get(p, a[2]);
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
    tr_partial(p, "truncated or invalid event in generation %llu", (unsigned long long)p->cur_gen);
out:
    p->events += nev;
    if (!p->gen_has_ticks || ts > p->gen_max_ticks)
        p->gen_max_ticks = ts;
    p->gen_has_ticks = 1;
}
