/* trace_goroutines.c - the execution-trace reader's per-goroutine and per-thread state: the
 * goroutine table (hash index, free list of retired records), the M table, and the end of a
 * generation, when what goroutine records point at is resolved and ended goroutines retire. */
#include "trace_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- goroutine table ---- */
struct tg *tr_g_find(et_trace_parser *p, uint64_t goid, uint32_t *slot_out)
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
struct tg *tr_g_get_slow(et_trace_parser *p, uint64_t goid, uint32_t *recent)
{
    if (goid == 0 || goid == UINT64_MAX) {
        p->trunc.malformed++;
        return NULL;
    }
    uint32_t slot;
    struct tg *g = tr_g_find(p, goid, &slot);
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

/* Remove from the index (backward-shift deletion keeps linear probing intact). */
static void g_remove(et_trace_parser *p, struct tg *g)
{
    uint32_t slot;
    if (!tr_g_find(p, g->goid, &slot))
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

/* ---- threads ---- */
struct tm *tr_m_get(et_trace_parser *p, uint64_t mid)
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

/* ---- generations ---- */
void tr_gen_begin(et_trace_parser *p, uint64_t gen)
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

void tr_emit_goroutine(et_trace_parser *p, const struct tg *g)
{
    if (p->gfn) {
        et_trace_goroutine v = {
            .id = g->goid, .state = g->state, .created = !!(g->flags & GF_CREATED),
            .transitions = g->transitions, .reason = p->reasons[g->reason < p->nreasons ? g->reason : 0],
            .since_ns = (g->flags & GF_BEFORE) ? 0 : g->since,
        };
        p->gfn(p->gctx, &v);
    }
}

static void retire(et_trace_parser *p, struct tg *g)
{
    tr_emit_goroutine(p, g);
    p->retired++;
    if (g->flags & GF_CREATED)
        p->retired_created++;
    g_remove(p, g);
}

/* Close the open generation: resolve what goroutine records point at in its tables, convert
 * its timestamps, retire goroutines that ended, and reset the per-generation tables. */
void tr_gen_end(et_trace_parser *p)
{
    if (!p->gen_open)
        return;
    if (p->ns_per_tick == 0) {
        tr_partial(p, "generation %llu has no frequency event (truncated?)", (unsigned long long)p->cur_gen);
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
            g->create_site = tr_resolve_stack(p, g->create_site);
        if (g->flags & GF_START_PEND)
            g->start_site = tr_resolve_stack(p, g->start_site);
        if (g->flags & GF_BLOCK_PEND)
            g->block_site = tr_resolve_stack(p, g->block_site);
        if (g->flags & GF_REASON_PEND) {
            uint32_t n = 0;
            const char *s = tr_str_get(p, g->reason, &n);
            if (!s)
                p->trunc.strings++;
            g->reason = s ? tr_reason_intern(p, s, n) : 0;
        }
        if (g->flags & GF_SINCE_RAW)
            g->since = ticks_ns(p, g->since);
        g->flags &= (uint16_t)~(GF_CREATE_PEND | GF_START_PEND | GF_BLOCK_PEND | GF_REASON_PEND | GF_SINCE_RAW | GF_FRESH);
        if (g->state == ET_TG_NOTEXIST && g->agen)
            retire(p, g);
    }
    if (p->trunc.stacks > unresolved_before && !p->gen_saw_stacks)
        tr_partial(p, "generation %llu is incomplete: no stack table (trace likely truncated)", (unsigned long long)p->cur_gen);
    /* The string and stack slots of this generation become invalid with the next gen_idx. */
    p->s_count = p->s_used = p->k_count = p->fr_used = 0;
    p->gen_open = 0;
    p->generations++;
}
