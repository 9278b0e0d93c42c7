/* analyze_goroutine.c - the goroutine-leak detector (policy in analyze.c). */
#include "analyze_int.h"
#include "base.h"

#include <math.h>
#include <string.h>

/* Process-wide goroutine total and stack in use: the total alone is a weak trend finding;
 * both support a site's growth. */
void an_eval_totals(et_analyzer *a, an_eval *cx)
{
    float scratch[PAIRS_MAX];
    series s;
    gresult g;
    gparams p;
    memset(&p, 0, sizeof p);
    uint64_t now = cx->now;

    /* process-wide goroutine total */
    an_rec_series(a, F_TOTAL, &s);
    p.min_rise = a->conf.min_total_rise;
    p.rel = a->conf.min_total_rel;
    p.tol = 0;
    p.counts = 1;
    int total_grows = an_growth_eval(&s, &p, &g, scratch);
    an_set_series_verdict(&a->v_total, total_grows ? 1 + ET_C_SUSPECTED : 0, &g, s.n ? (uint64_t)s.x[s.n - 1] : 0, now);

    /* stack in use: supports a goroutine leak */
    an_rec_series(a, F_STACK, &s);
    p.counts = 0;
    p.min_rise = 16 * 1024;
    p.rel = 0.05;
    p.tol = 0;
    int stack_grows = an_growth_eval(&s, &p, &g, scratch);
    an_set_series_verdict(&a->v_stack, stack_grows ? 1 + ET_C_SUSPECTED : 0, &g, s.n ? (uint64_t)s.x[s.n - 1] : 0, now);

    cx->total_grows = total_grows;
    cx->stack_grows = stack_grows;
}

/* Goroutines a site gained from the first sample at or after t0 to the newest one. */
static double site_rise_since(const et_analyzer *a, const et_an_site *st, double t0)
{
    series s;
    an_site_series(a, st, &s);
    for (int k = 0; k < s.n; k++)
        if (s.t[k] >= t0)
            return s.x[s.n - 1] - s.x[k];
    return 0;
}

/* A service site whose goroutine-leak finding alerts: raised at likely by the heuristics, or
 * listed by the latest goroutineleak profile. */
static int site_alerts(const et_analyzer *a, const et_an_site *st)
{
    if (st->verdict >= 1 + ET_C_LIKELY)
        return 1;
    for (uint32_t j = 0; j < a->ngcproof; j++)
        if (a->gcproof[j].key == st->key)
            return 1;
    return 0;
}

/* Collateral goroutines. A leaked service goroutine often holds library goroutines that
 * leak with it: a request stuck on a dead peer keeps its connection's persistConn read and
 * write loops, a leaked stream keeps its HTTP/2 reader. Those sites have no frame of the
 * service's own, so the finding there names no code anyone can fix, and the service site's
 * finding already tells the story. A stdlib-only site raised at likely is therefore demoted
 * to suspected when some alerting service site gained at least half as many goroutines over
 * the stdlib site's own growth window: its growth is explained. Without such a site (an
 * HTTP client that never closes response bodies leaks only persistConn loops; the handler
 * returns) it still alerts. The ratio, not the names, decides: a small service leak beside
 * a big library-only one does not hide it. */
static void demote_collateral(et_analyzer *a, const double *grow_t0, const double *grow_rise)
{
    for (int i = 0; i < ET_AN_SITES; i++) {
        et_an_site *st = &a->sites[i];
        if (!st->key || !st->stdlib_only || st->verdict != 1 + ET_C_LIKELY || grow_rise[i] <= 0)
            continue;
        for (int k = 0; k < ET_AN_SITES; k++) {
            const et_an_site *u = &a->sites[k];
            if (k == i || !u->key || u->stdlib_only || !site_alerts(a, u))
                continue;
            if (site_rise_since(a, u, grow_t0[i]) >= 0.5 * grow_rise[i]) {
                st->verdict = 1 + ET_C_SUSPECTED;
                st->grew = 0; /* nor kept at likely through a plateau */
                break;
            }
        }
    }
}

/* Samples a count-only likely verdict may wait for a debug=2 comparison: the sampler takes
 * the requested dump at the next sample, and a site with no usable reference needs one
 * more. A wait that outlasts this means the comparison cannot be had (the requested dumps
 * did not come, or came cut or folded), and the count alone decides as it always did. */
#define HOLD_MAX 2

/* A count-only likely verdict (no WAIT, TRACE, SURVIVORS or thread support) at a site in a
 * state its goroutines leave by themselves (sleep, syscall, IO wait, running), whose rise is
 * within the in-flight spread (3*sqrt(level): it passed the count test only at the relaxed
 * bar of a long window), waits for ids. A slow creep over many intervals there is what a
 * small busy site of short-lived goroutines does by chance now and then (a fan-out whose
 * replicas sleep up to 200 ms went 1 -> 8 over 6 samples at 30 s and was raised). Only a
 * debug=2 comparison tells it from a leak: leaked goroutines keep their ids, in-flight ones
 * are all gone a sampling interval later. A fast leak clears the strict bar and is not
 * held. Parked sites (channel, select, lock waits) keep their own rule (likely unless a
 * comparison saw turnover): a slow leak there often has no comparison in time (its
 * goroutines arrive unevenly, so the survivor dumps are not asked for), and waiting for one
 * cost a slow select leak its alert within 6 intervals in a real-time run. So: with a
 * comparison in the last 4 samples, a site where not one goroutine of the earlier dump is
 * still there is in flight (held, without expiry: the routine dumps for a suspected site
 * keep comparing); without one, the verdict waits up to
 * HOLD_MAX samples while et_analyzer_wants_deep asks for a dump, provided this target has
 * served a usable dump at all (a target never sampled at debug=2, or whose dumps are always
 * cut, is judged on its count as before). 1 = hold at suspected. */
static int count_only_held(const et_analyzer *a, et_an_site *st)
{
    if (st->surv_seq && a->seq + 1 - st->surv_seq <= 4) {
        st->hold_seq = 0;
        return st->survivors == 0;
    }
    if (!a->d2_usable_seq) {
        st->hold_seq = 0;
        return 0; /* this target never gave a usable debug=2 dump: no ids to wait for */
    }
    if (!st->hold_seq)
        st->hold_seq = a->seq + 1;
    return a->seq + 1 - st->hold_seq < HOLD_MAX;
}

int an_waits_for_ids(const et_analyzer *a, const et_an_site *st)
{
    return st->hold_seq && a->seq + 1 - st->hold_seq < HOLD_MAX && st->verdict == 1 + ET_C_SUSPECTED;
}

/* Goroutine-leak verdicts per tracked site, then collateral demotion and the expiry of
 * GC-proved entries whose goroutines are gone. */
void an_eval_goroutine_sites(et_analyzer *a, an_eval *cx)
{
    float scratch[PAIRS_MAX];
    series s;
    gresult g;
    gparams p;
    memset(&p, 0, sizeof p);
    uint64_t now = cx->now;
    double ival = cx->ival;
    int total_grows = cx->total_grows, stack_grows = cx->stack_grows, threads_grow = cx->threads_grow;

    /* goroutine sites */
    double grow_t0[ET_AN_SITES], grow_rise[ET_AN_SITES]; /* growth window of this evaluation (0 = none) */
    for (int i = 0; i < ET_AN_SITES; i++) {
        et_an_site *st = &a->sites[i];
        grow_t0[i] = grow_rise[i] = 0;
        if (!st->key)
            continue;
        an_site_series(a, st, &s);
        p.min_rise = a->conf.min_site_rise * (st->allowed ? 2.0 : 1.0);
        p.rel = a->conf.min_site_rel;
        p.tol = 0;
        p.counts = 1;
        int grows = an_growth_eval(&s, &p, &g, scratch);
        if (!grows)
            st->hold_seq = 0;
        uint32_t ev = 0;
        int conf1 = 0;
        uint32_t cnow = an_site_now(a, st);
        int sync = an_parked_like(st->state);
        double wait_ms = (double)st->max_wait_min * 60000.0;
        int waited = an_wait_recent(a, st) && st->max_wait_min >= 1 && wait_ms >= 2.0 * ival;
        int traced = st->trace_seq && a->seq + 1 - st->trace_seq <= 3 && st->trace_created > 0;
        int stayed = an_survivors_fresh(a, st);
        if (grows) {
            grow_t0[i] = g.t0;
            grow_rise[i] = g.rise;
            ev |= ET_E_CLUSTER;
            if (total_grows && g.rise >= 0.25 * a->v_total.rise)
                ev |= ET_E_TREND;
            if (stack_grows)
                ev |= ET_E_STACK_GROWTH;
            if (waited)
                ev |= ET_E_WAIT;
            if (traced)
                ev |= ET_E_TRACE;
            if (stayed)
                ev |= ET_E_SURVIVORS;
            /* Independent support only: StackInuse rises whenever goroutines do (in-flight
             * sleepers ramping up included), so it confirms the count, not that the
             * goroutines never leave. */
            int support = (ev & (ET_E_WAIT | ET_E_TRACE | ET_E_SURVIVORS)) || (st->state == ET_G_SYSCALL && threads_grow);
            if (st->state == ET_G_SYSCALL && threads_grow)
                ev |= ET_E_PROC;
            int likely;
            /* On its count alone a site is likely after 3 rising intervals, unless a debug=2
             * comparison saw its goroutines turn over (in flight: the oldest ids of an earlier
             * dump left) and the rise is within the in-flight spread at the strict bar
             * (3*sqrt(level)); over long windows the count test relaxes its bar to catch slow
             * leaks, and slow requests piling up pass it too. A leak that loops (a ticker
             * never stopped wakes its goroutine at every tick) keeps its ids. */
            int turnover = st->surv_seq && a->seq + 1 - st->surv_seq <= 4 && st->survivors < st->surv_of;
            int clear = g.rise >= 3.0 * sqrt((double)cnow);
            if (sync && !st->allowed)
                likely = (g.k_up >= 3 && (clear || !turnover)) ||
                         (g.k_up >= 2 && (ev & (ET_E_WAIT | ET_E_TRACE | ET_E_SURVIVORS)));
            else if (st->stdlib_only && st->state == ET_G_IO_WAIT)
                likely = 0; /* open connections waiting for their peer: follows load; a leak
                             * of them also shows at a user site or at the writeLoop select */
            else
                likely = g.k_up >= 4 || (g.k_up >= 3 && support);
            int creep_only = likely && !support && !clear && !an_parked_like(st->state);
            if (creep_only && count_only_held(a, st))
                likely = 0;
            else if (!creep_only)
                st->hold_seq = 0; /* a wait starts afresh the next time */
            conf1 = 1 + (likely ? ET_C_LIKELY : ET_C_SUSPECTED);
            st->k_up = (uint16_t)g.k_up;
            st->slope_per_min = g.slope;
            if (likely && !st->grew) {
                st->grew = 1;
                st->onset_ms = (uint64_t)g.t0;
            }
        } else if (stayed && !st->stdlib_only) {
            /* A slow leak, below the count test's noise bar: two debug=2 dumps show that every
             * goroutine the earlier one saw here is still parked and never woke, and more
             * arrived (analyze_survivors.c). Proof at any rate for a sync-blocked service site;
             * elsewhere (IO wait, sleep, allow-listed) only a hint. */
            ev = ET_E_CLUSTER | ET_E_SURVIVORS | (waited ? ET_E_WAIT : 0);
            conf1 = 1 + (sync && !st->allowed ? ET_C_LIKELY : ET_C_SUSPECTED);
            st->slope_per_min = s.n >= 2 ? et_theil_sen(s.t, s.x, s.n, scratch, PAIRS_MAX) : 0;
            st->k_up = 0;
        } else if (st->grew) {
            /* Plateau after a likely finding: keep it only while debug=2 proves that the
             * goroutines which piled up since the onset never woke (minute resolution). */
            uint32_t peak = 0;
            for (int k = 0; k < s.n; k++)
                if (s.x[k] > peak)
                    peak = (uint32_t)s.x[k];
            double age = (double)(now - st->onset_ms);
            if (waited && cnow * 2 >= peak && wait_ms + 60000.0 >= age) {
                ev = ET_E_CLUSTER | ET_E_WAIT;
                conf1 = 1 + ET_C_LIKELY;
                st->slope_per_min = 0;
            } else {
                st->grew = 0;
            }
        }
        if (!conf1 && et_gstate_is_sync_blocked((enum et_gstate)st->state) && !st->allowed &&
            st->state != ET_G_SELECT && st->state != ET_G_SELECT_NO_CASES &&
            a->conf.large_site && cnow >= a->conf.large_site) {
            ev = ET_E_CLUSTER | (waited ? ET_E_WAIT : 0);
            conf1 = 1 + ET_C_SUSPECTED;
            st->slope_per_min = 0;
            st->k_up = 0;
        }
        if (conf1 && !st->verdict)
            st->first_seen_ms = now;
        if (!conf1)
            st->first_seen_ms = 0;
        st->verdict = (uint8_t)conf1;
        st->evidence = ev;
    }

    demote_collateral(a, grow_t0, grow_rise);

    /* GC-proved entries whose goroutines are gone (restart, or a false entry): drop. */
    for (uint32_t j = 0; j < a->ngcproof;) {
        int k = an_find_site(a, a->gcproof[j].key);
        int gone = 0;
        if (k >= 0 && a->n >= 2) {
            uint32_t c1 = a->sites[k].cnt[(a->seq - 1) % ET_AN_WINDOW];
            uint32_t c2 = a->sites[k].cnt[(a->seq - 2) % ET_AN_WINDOW];
            gone = c1 == 0 && c2 == 0;
        }
        if (gone)
            a->gcproof[j] = a->gcproof[--a->ngcproof];
        else
            j++;
    }

}

static int same_site_names(const et_an_site *s, const et_an_gcproof *g)
{
    return strcmp(s->user.func, g->user.func) == 0 &&
           (!s->created_by[0] || !g->created_by[0] || strcmp(s->created_by, g->created_by) == 0);
}

/* The debug=2 id evidence behind a finding: why a slow leak was raised. */
static void fill_survivors(et_finding *f, const et_an_site *s)
{
    if (s->surv_seq) {
        f->survivors = s->survivors;
        f->survivors_of = s->surv_of;
    }
    f->oldest_id = s->oldest_id;
    memcpy(f->wait_hist, s->wait_hist, sizeof f->wait_hist);
}

/* Goroutine-leak findings: GC-proved sites (merged with the heuristic verdict at the same
 * site), heuristic site verdicts, and the process-wide trend that no site explains. */
void an_findings_goroutine(const et_analyzer *a, et_findings *out, uint64_t now)
{
    uint8_t consumed[ET_AN_SITES];
    memset(consumed, 0, sizeof consumed);
    int explained = 0; /* a site finding accounts for the process-wide trend */
    et_finding f;

    /* 1. GC-proved leaks, merged with the heuristic finding at the same site */
    for (uint32_t j = 0; j < a->ngcproof; j++) {
        const et_an_gcproof *g = &a->gcproof[j];
        memset(&f, 0, sizeof f);
        f.kind = ET_F_GOROUTINE_LEAK;
        f.confidence = ET_C_CONFIRMED;
        f.evidence = ET_E_GC_PROOF;
        f.state = g->state;
        f.site = g->user;
        memcpy(f.created_by, g->created_by, ET_FUNC_MAX);
        f.nstack = g->nstack;
        for (int i = 0; i < g->nstack; i++)
            memcpy(f.stack[i], g->stack[i], ET_FUNC_MAX);
        f.count = g->count;
        f.first_seen_ms = g->seen_ms;
        f.last_seen_ms = now;
        int k = an_find_site(a, g->key);
        if (k < 0)
            for (int i = 0; i < ET_AN_SITES; i++)
                if (a->sites[i].key && !consumed[i] && same_site_names(&a->sites[i], g)) {
                    k = i;
                    break;
                }
        if (k >= 0) {
            const et_an_site *s = &a->sites[k];
            consumed[k] = 1;
            if (s->verdict && (s->evidence & ET_E_TREND))
                explained = 1;
            uint32_t c = an_site_now(a, s);
            if (c > f.count)
                f.count = c;
            if (s->verdict) {
                f.evidence |= s->evidence;
                f.growth_per_min = s->slope_per_min;
                if (s->first_seen_ms && s->first_seen_ms < f.first_seen_ms)
                    f.first_seen_ms = s->first_seen_ms;
            }
            if (an_wait_recent(a, s))
                f.oldest_wait_s = s->max_wait_min * 60.0;
            fill_survivors(&f, s);
        }
        an_fingerprint(&f, an_state_class(f.state), f.site.func);
        an_push(out, &f);
    }

    /* 2. heuristic goroutine-leak findings per site */
    for (int i = 0; i < ET_AN_SITES; i++) {
        const et_an_site *s = &a->sites[i];
        if (!s->key || consumed[i] || !s->verdict)
            continue;
        memset(&f, 0, sizeof f);
        f.kind = ET_F_GOROUTINE_LEAK;
        f.confidence = (uint8_t)(s->verdict - 1);
        f.evidence = s->evidence;
        an_fill_from_site(&f, s);
        f.count = an_site_now(a, s);
        f.growth_per_min = s->slope_per_min;
        if (an_wait_recent(a, s))
            f.oldest_wait_s = s->max_wait_min * 60.0;
        fill_survivors(&f, s);
        f.first_seen_ms = s->first_seen_ms;
        f.last_seen_ms = now;
        an_fingerprint(&f, an_state_class(f.state), f.site.func);
        an_push(out, &f);
        if (s->evidence & ET_E_TREND)
            explained = 1;
    }

    /* 3. the process-wide goroutine trend that no site explains */
    if (a->v_total.confidence1 && !explained) {
        memset(&f, 0, sizeof f);
        f.kind = ET_F_GOROUTINE_LEAK;
        f.evidence = ET_E_TREND | (a->v_stack.confidence1 ? ET_E_STACK_GROWTH : 0);
        f.confidence = (a->v_total.k_up >= 4 && a->v_stack.confidence1) ? ET_C_LIKELY : ET_C_SUSPECTED;
        /* name the site that grew most over the window, if any did */
        int bi = -1;
        double brise = 0;
        uint32_t m = an_win(a);
        for (int i = 0; i < ET_AN_SITES; i++) {
            const et_an_site *s = &a->sites[i];
            if (!s->key)
                continue;
            uint32_t first = ET_AN_NOCOUNT;
            for (uint32_t k = 0; k < m && first == ET_AN_NOCOUNT; k++)
                first = s->cnt[an_slot_of(a, m, k)];
            if (first == ET_AN_NOCOUNT)
                continue;
            double rise = (double)an_site_now(a, s) - first;
            if (rise > brise) {
                brise = rise;
                bi = i;
            }
        }
        if (bi >= 0)
            an_fill_from_site(&f, &a->sites[bi]);
        f.count = (uint32_t)a->v_total.value;
        f.growth_per_min = a->v_total.slope_per_min;
        f.first_seen_ms = a->v_total.first_seen_ms;
        f.last_seen_ms = now;
        an_fingerprint(&f, "total", ""); /* the named site is a hint that may change */
        an_push(out, &f);
    }

}
