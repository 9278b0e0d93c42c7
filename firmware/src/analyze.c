/* analyze.c - per-target history and leak heuristics (see analyze.h): the policy, the
 * configuration and the entry points. The stages live beside it:
 *   analyze_stats.c     the growth test (Theil-Sen, Mann-Kendall, thresholds)
 *   analyze_history.c   the ring of samples and the series drawn from it
 *   analyze_sites.c     following goroutine sites across samples (bounded replacement)
 *   analyze_goroutine.c goroutine-leak verdicts (sites, the process total, GC proof)
 *   analyze_deadlock.c  the all-blocked picture
 *   analyze_memory.c    heap and RSS growth
 *   analyze_threads.c   OS thread growth
 *   analyze_findings.c  verdicts -> findings with fingerprints
 *
 * POLICY (what raises a finding, and how confident it is)
 *
 * Everything rests on one robust growth test (growth_eval) applied to a series of
 * (time, value) points: a site's goroutine count, the process's goroutine total, the
 * post-GC heap floor, RSS outside the Go runtime, the OS thread count. A series "grows" when,
 * over some suffix window of the history (the whole window, or its last 32/16/8/4/3 points,
 * so a leak that starts late is not drowned by a long flat past):
 *   - it is mostly non-decreasing: no step down in windows of up to 6 points, one in 7-8,
 *     at most a third of the steps in longer ones (leaked goroutines never leave, so a
 *     leaking site only falls when legitimate traffic shares it; a breathing server falls
 *     about half the time, and random in-flight counts rarely rise 5 times in a row);
 *   - the Mann-Kendall statistic S over the window is at least half its maximum (tau >= 0.5)
 *     and the Theil-Sen slope (median of pairwise slopes, immune to a few outliers) is > 0;
 *   - it rose by at least an absolute floor AND a fraction of where it started (a pool of 1000
 *     breathing by 30 is not a leak; a site going 0 -> 2 is noise; the fraction halves past 8
 *     points and quarters past 16), and for goroutine counts by
 *     k*sqrt(level reached), the spread of in-flight goroutines at a busy site (k = 3 for up
 *     to 6 points, 2 up to 16, 1 beyond: over a long window persistence is the evidence);
 *   - it made a new high: the newest value exceeds everything before the window (a breathing
 *     site climbing back to its previous peak is not growth);
 *   - it has not levelled off: the newest value is above the value R points back
 *     (R = max(3, n/4+1)). A burst that levels off therefore clears within two intervals.
 * The number of increasing steps in the passing window (k_up) is the persistence.
 *
 * Goroutine-leak at a site (evidence CLUSTER): the site grows. Thresholds: min_site_rise (5)
 * and min_site_rel (10%). Confidence:
 *   - sync-blocked state (chan/select/mutex/cond/waitgroup/...), not allow-listed:
 *       likely if k_up >= 3 (grew across 3 sampling intervals), or k_up == 2 with WAIT or
 *       TRACE (a trace window saw goroutines created in it park there for at least half the
 *       window and never wake: short-lived ones created just before it closed do not count);
 *       suspected otherwise.
 *   - other states (IO wait, syscall, sleep, running) or allow-listed sites (net/http
 *     keep-alive loops, ..., and every stdlib-only site): growth there is usually load (more
 *     connections), so they need k_up >= 4, or k_up >= 3 with independent support (WAIT,
 *     TRACE, or for a syscall site a growing thread count; not STACK_GROWTH, which follows
 *     any rise of the count, in-flight sleepers included); and allow-listed sites need
 *     twice the rise. They still alert: an HTTP client that never closes response bodies
 *     leaks persistConn writeLoops (select) at a stdlib-only site, and nothing else would
 *     catch it. Stdlib-only sites in IO wait (network reads: server conns, client readLoops,
 *     all one site) stay suspected: their count follows the number of open connections.
 *   - Collateral: a stdlib-only site at likely is demoted to suspected when an alerting
 *     service site (likely, or GC-proved) gained at least half as many goroutines over the
 *     stdlib site's growth window: leaked requests hold their connections' loops, and the
 *     finding must name the service's frame. Unexplained library growth still alerts.
 *   - TREND is added when the process total grows too and this site explains >= 25% of it;
 *     STACK_GROWTH when StackInuse grows over the same history; WAIT when the latest debug=2
 *     dump (<= 3 samples old) shows goroutines here parked >= 1 minute and >= 2 intervals.
 *   - After a site was raised at likely, it stays raised through a plateau only while debug=2
 *     proves that the goroutines which piled up never woke: the oldest wait there covers the
 *     time since the growth began. A burst that levels off (handlers that do get work) clears;
 *     a leak whose traffic stopped stays.
 *   - A large stable count (>= large_site) at one sync-blocked, non-select, non-allow-listed
 *     site is only "suspected": worker pools look exactly like that.
 * Survivors (analyze_survivors.c): the sampler forces a GC before every debug=2 dump, which
 *   stamps the wait clock of each parked goroutine (the runtime clears it whenever the
 *   goroutine runs). A later dump, a minute or more after, holds the same ids (never reused)
 *   for goroutines that stayed, and their printed waits cover the span only if they never woke.
 *   Every goroutine of the earlier dump still parked there, none woken, and at least 2 more:
 *   SURVIVORS, likely at a sync-blocked service site at any growth rate (suspected elsewhere).
 *   A quiet site that starts filling up asks for such dumps (et_analyzer_wants_deep). The
 *   count rule above is also held back by ids: after 3 rising intervals a site stays
 *   suspected when a comparison saw its goroutines turn over (in flight) and its rise is
 *   within 3*sqrt(level). A leak that loops (a ticker never stopped) keeps its ids and wakes;
 *   so does a pool growing towards its size: neither ids nor waits tell those two apart.
 *   At a site in a state its goroutines leave by themselves (sleep, syscall, IO wait,
 *   running), a verdict likely on the count alone (no WAIT, TRACE, SURVIVORS or thread
 *   support) with a rise within 3*sqrt(level) needs a comparison in the last 4 samples that
 *   still finds at least one goroutine of the earlier dump there: a small busy site of
 *   short-lived goroutines creeps up over a long window by chance, and every goroutine of it
 *   is gone a sample later. With no such comparison it stays suspected and asks for debug=2
 *   for up to 2 samples (the dump comes at the next sample; a site with no reference needs
 *   two); a target that never gave a dump with ids, or whose requested dumps do not come, is
 *   judged on its count as before. Parked sites keep the turnover rule above: waiting there
 *   cost slow leaks their alert when no comparison came in time.
 * Goroutine total trend without a site that explains it: suspected (likely with >= 4 steps and
 * STACK_GROWTH).
 * GC proof: every site of the latest goroutineleak profile (and every debug=2 site printed
 * "(leaked)") is a confirmed goroutine-leak, merged with the heuristic finding at that site.
 * Deadlock: every goroutine with a user frame is blocked (sync states, or the unknown state
 * debug=1 gives channel waits), none can make progress, and at least one waits on a lock (or
 * a nil channel): idle programs park in chan receive, select, Cond.Wait or WaitGroup.Wait,
 * never for long in Mutex.Lock. The same blocked sites and counts must be seen in consecutive
 * samples. Two samples: likely (a lock wait frozen across two sampling periods with nothing
 * able to run is not contention); the suspected level is reserved for nil-channel-only
 * pictures at two samples (likely at three). IO wait counts as progress except a listener's
 * accept loop (a server's accept loop keeps the runtime from noticing a deadlock; it is not
 * work). The main goroutine parked at the end of main is never the proof.
 * Heap growth: needs >= 3 GC epochs in the window (NumGC advanced twice: the collector had its
 * chance), uses per-epoch minima of HeapInuse (the post-GC floor, immune to the sawtooth), and
 * the goroutine total must not be growing (then it is a goroutine leak). likely when the floor
 * rose across 2 epochs with >= 70% of the bytes allocated meanwhile (up to the newest epoch's
 * start: the floor moves only at a GC) still live, across 3 with
 * >= 40%, or across 4 epochs, and NextGC or a heap site confirms, and the rise is steady: until
 * 6 rises, no single epoch carries more than 2/3 of it (a working set built at once - a
 * catalog rebuilt while the previous generation is still referenced - jumps by one
 * generation and looks fully retained until the GC after the swap); suspected otherwise.
 * (In its first seconds a process warming up grows exactly like a leak; what tells them
 * apart early is that the warm-up frees most of what it allocates.) Heap sites come
 * from the heap profile, whose inuse figures are as of the last GC: a site whose inuse_bytes
 * grows across GC cycles is HEAP_SITE evidence and names the allocation site. A floor (or a
 * site) that fell by more than 25% from an earlier high anywhere in the window is memory the
 * collector does reclaim: not growth.
 * Under heavy churn (or at a cadence slower than the GC) the floor is blind: most epochs hold
 * one sample, which lands anywhere between the live heap and the goal. It is ignored when
 * epochs average under 1.5 samples and the floor/goal ratio spreads over more than 0.25, and a
 * floor rise is dismissed when the goal (not pinned at one value) rose by under half as much.
 * Then, under churn (under 40% of the bytes allocated kept), NextGC speaks alone: the runtime
 * sets it at every cycle from the bytes it marked live, so its per-epoch series is the
 * post-GC heap without the sawtooth. The same growth test applies to it (its rise scaled to
 * live bytes by the lowest floor/goal ratio), and it is likely after 4 rising epochs that do
 * not decelerate (the later half of the window carries >= 1/4 of the rise: a warm-up piles
 * up fast, then settles), so a slow leak that keeps under 1% of what the process allocates
 * is found. A process keeping most of what it allocates is left to the floor and its checks.
 * A raised episode that passes neither test stays suspected while the goal keeps climbing
 * (the floor can drop out, one epoch sampled high on the sawtooth, before the goal has risen
 * 5%), and clears once it stops. A finding with no site says why (enum et_no_site): the
 * growth is under 4 GC cycles old (the profile lags), no single site has grown by the site
 * thresholds yet, the profile was truncated, or it lists no sites.
 * RSS growth: anonymous RSS beyond all the Go runtime holds (Sys - HeapReleased) grows, with a
 * flat goroutine count; RSS merely above the heap is never a finding, nor RSS catching up with
 * pages Go mapped earlier, nor the binary's file pages. likely at k_up >= 3.
 * Thread leak: the /proc Threads count grows (Go never frees an M, so a count that creeps up
 * and levels off is normal: the levelling-off check matters). likely at k_up >= 3; the site is
 * the syscall (else any) site growing with the threads.
 *
 * The `sample` command prints likely and confirmed findings ("report only what you would
 * alert on"); suspected ones still travel in snapshots so the collector can show them.
 *
 * FINGERPRINTS hash names only: kind, a coarse state class (so that Go releases and sampling
 * modes that name a wait differently agree), and the site's function without generic type
 * arguments. Not the creating function: only debug=2 prints it, and the fingerprint must not
 * change when the sampler switches between debug=1 and debug=2. Never PCs, offsets, files or
 * line numbers. A heap-growth finding is one per growing allocation site (its function in
 * the fingerprint), so two heap leaks in one service stay two findings; an episode raised
 * before any site moved across GCs is site-less, and the first site to appear inherits that
 * fingerprint. RSS and thread findings are per process (kind only).
 */
#include "analyze_int.h"
#include "base.h"

#include <math.h>
#include <string.h>

/* ---- configuration ---- */

static const char *const default_allow[] = {
    "net/http.(*conn).serve",         /* idle keep-alive server connections */
    "net/http.(*persistConn).",       /* client keep-alive read/write loops */
    "net/http.(*http2serverConn).",   /* bundled HTTP/2 server */
    "net/http.(*http2ClientConn).",   /* bundled HTTP/2 client */
    "net/http.(*Server).Serve",       /* accept loops */
    "os/signal.",                     /* signal.Notify's loop */
    "testing.",                       /* test runners */
    "runtime.",                       /* the runtime's own goroutines */
    "internal/",
};

void et_analyze_conf_defaults(et_analyze_conf *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < ET_ARRAY_LEN(default_allow); i++)
        et_analyze_conf_allow(c, default_allow[i]);
    c->window = ET_AN_WINDOW;
    c->min_site_rise = 5;
    c->min_site_rel = 0.10;
    c->min_total_rise = 10;
    c->min_total_rel = 0.05;
    c->min_heap_rise = 1u << 20;
    c->min_heap_rel = 0.10;
    c->min_rss_rise_kb = 2048;
    c->min_rss_rel = 0.05;
    c->min_thread_rise = 8;
    c->min_thread_rel = 0.25;
    c->large_site = 1000;
}

int et_analyze_conf_allow(et_analyze_conf *c, const char *prefix)
{
    if (!prefix || !*prefix || strlen(prefix) >= ET_AN_ALLOW_LEN || c->nallow >= ET_AN_MAX_ALLOW)
        return -1;
    et_strlcpy(c->allow[c->nallow++], prefix, ET_AN_ALLOW_LEN);
    return 0;
}

int an_is_allowed(const et_analyze_conf *c, const char *func)
{
    for (uint32_t i = 0; i < c->nallow; i++)
        if (strncmp(func, c->allow[i], strlen(c->allow[i])) == 0)
            return 1;
    return 0;
}

/* ---- evaluation ---- */

void an_set_series_verdict(et_an_series_verdict *v, int conf1, const gresult *g, uint64_t value, uint64_t now)
{
    if (!conf1) {
        memset(v, 0, sizeof *v);
        return;
    }
    if (!v->confidence1)
        v->first_seen_ms = now;
    v->confidence1 = (uint8_t)conf1;
    v->k_up = (uint16_t)g->k_up;
    v->slope_per_min = g->slope;
    v->rise = g->rise;
    v->value = value;
}


/* Re-evaluates every verdict after a sample. The order matters: the process-wide series
 * first (a growing total or stack is evidence for the sites, a growing thread count for a
 * syscall site), then the goroutine sites, then memory (which stands down while goroutines
 * grow: their stacks are that finding), then the site that explains the threads. */
static void evaluate(et_analyzer *a)
{
    an_eval cx;
    memset(&cx, 0, sizeof cx);
    cx.nr = an_newest(a);
    cx.now = cx.nr ? cx.nr->t_ms : 0;
    cx.ival = an_median_interval(a);
    an_eval_totals(a, &cx);
    an_eval_threads(a, &cx);
    an_eval_goroutine_sites(a, &cx);
    an_eval_memory(a, &cx);
    an_eval_thread_site(a, &cx);
}

/* ---- add ---- */

void et_analyzer_add(et_analyzer *a, const et_sample_in *in)
{
    /* A new incarnation (the process restarted) shares nothing with the old history. */
    if (in->proc && in->proc->present && in->proc->start_time_ticks) {
        if (a->start_ticks && in->proc->start_time_ticks != a->start_ticks)
            et_analyzer_reset(a);
        a->start_ticks = in->proc->start_time_ticks;
    }
    if (in->heap && in->heap->ms.present && a->n) {
        const et_an_rec *p = an_newest(a);
        if ((p->flags & ET_AN_HAS_MS) && in->heap->ms.num_gc < p->num_gc) {
            uint64_t keep = a->start_ticks;
            et_analyzer_reset(a);
            a->start_ticks = keep;
        }
    }
    uint64_t t = in->t_ms;
    if (a->n && t <= a->last_t_ms)
        t = a->last_t_ms + 1; /* time must move forward for the slopes */
    a->last_t_ms = t;

    uint32_t slot = a->seq % ET_AN_WINDOW;
    et_an_rec *r = &a->rec[slot];
    memset(r, 0, sizeof *r);
    r->t_ms = t;
    /* The slot is reused: whatever a site had there belongs to a sample that left the window. */
    for (int i = 0; i < ET_AN_SITES; i++)
        a->sites[i].cnt[slot] = ET_AN_NOCOUNT;
    for (int i = 0; i < ET_AN_HSITES; i++)
        a->hsites[i].inuse[slot] = UINT64_MAX;

    if (in->goroutine && in->goroutine->kind == ET_GP_GOROUTINE)
        an_ingest_goroutine(a, in->goroutine, slot, r);
    if (in->leak && in->leak->kind == ET_GP_GOROUTINELEAK)
        an_ingest_leak(a, in->leak, t);
    if (in->trace)
        an_ingest_trace(a, in->trace);
    if (in->heap) {
        if (in->heap->ms.present) {
            const et_memstats *ms = &in->heap->ms;
            r->flags |= ET_AN_HAS_MS;
            r->heap_inuse = ms->heap_inuse;
            r->heap_sys = ms->heap_sys;
            r->heap_released = ms->heap_released;
            r->stack_inuse = ms->stack_inuse;
            r->next_gc = ms->next_gc;
            r->sys = ms->sys;
            r->num_gc = ms->num_gc;
            r->total_alloc = ms->total_alloc;
        }
        r->flags |= ET_AN_HAS_HEAP;
        an_ingest_heap(a, in->heap, slot);
    }
    if (in->proc && in->proc->present) {
        r->flags |= ET_AN_HAS_PROC;
        r->rss_kb = in->proc->vm_rss_kb;
        r->rss_anon_kb = in->proc->rss_anon_kb; /* file-backed pages (the binary paging in) are not a leak */
        r->threads = in->proc->threads;
    }
    a->seq++;
    if (a->n < ET_AN_WINDOW)
        a->n++;
    /* A sample without a goroutine profile leaves the deadlock run as it was. */
    evaluate(a);
}

/* Survivor dumps (analyze_survivors.c; the sampler forces a GC before every debug=2 dump, so
 * each one stamps the wait clocks the next comparison reads): a reference for a quiet site
 * that starts filling up, at most one per SURV_REF_EVERY samples per target (with the
 * routine deep_interval dump, the stop-the-world budget of a healthy service: <= 0.1 per
 * interval), and a follow-up once a minute has passed, for a site still filling up (or
 * already seen to keep its goroutines). Sites likely on their count alone need neither. */
#define SURV_REF_EVERY 20
#define SURV_REF_STALE 10
static unsigned survivor_wants(et_analyzer *a)
{
    const et_an_rec *nr = an_newest(a);
    if (!nr)
        return 0;
    double ival = an_median_interval(a);
    int want_ref = 0, want_follow = 0;
    for (int i = 0; i < ET_AN_SITES; i++) {
        const et_an_site *st = &a->sites[i];
        if (st->key && an_waits_for_ids(a, st)) {
            want_follow = 1; /* a count-only likely verdict waits for this comparison */
            continue;
        }
        if (!st->key || st->stdlib_only || st->allowed)
            continue;
        if (st->verdict == 1 + ET_C_LIKELY && !(st->evidence & ET_E_SURVIVORS))
            continue;
        int cand = an_survivor_candidate(a, st);
        int have_ref = st->ref_seq && st->ref_n > 0 && a->seq + 1 - st->ref_seq <= SURV_REF_STALE;
        if (have_ref && (cand || st->stayed) && an_site_now(a, st) >= st->ref_count + 1 &&
            (double)(nr->t_ms - st->ref_t_ms) + ival >= 60000.0)
            want_follow = 1;
        else if (!have_ref && cand)
            want_ref = 1;
    }
    if (want_follow)
        return ET_DEEP_DEBUG2;
    if (want_ref && (!a->ref_req_seq || a->seq + 1 - a->ref_req_seq >= SURV_REF_EVERY)) {
        a->ref_req_seq = a->seq + 1;
        return ET_DEEP_DEBUG2;
    }
    return 0;
}

unsigned et_analyzer_wants_deep(et_analyzer *a)
{
    unsigned want = survivor_wants(a);
    int suspected = 0, any = 0;
    for (int i = 0; i < ET_AN_SITES; i++) {
        const et_an_site *s = &a->sites[i];
        if (!s->key || !s->verdict)
            continue;
        any = 1;
        if (s->verdict == 1 + ET_C_SUSPECTED)
            suspected = 1;
    }
    if (a->dl_run >= 1 || a->v_total.confidence1)
        any = 1;
    if (!any)
        return want;
    /* a debug=2 dump at most 2 samples old already answers the wait question */
    int recent_d2 = 0;
    uint32_t m = a->n < 2 ? a->n : 2;
    for (uint32_t i = 0; i < m; i++)
        if (a->rec[(a->seq - 1 - i) % ET_AN_WINDOW].flags & ET_AN_HAS_WAIT)
            recent_d2 = 1;
    if (!recent_d2)
        want |= ET_DEEP_DEBUG2;
    if (suspected || a->v_total.confidence1 || a->dl_run >= 1)
        want |= ET_DEEP_TRACE;
    want |= ET_DEEP_LEAKPROF;
    return want;
}
