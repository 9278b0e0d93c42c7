/* analyze_memory.c - the heap-growth and RSS-growth detectors (policy in analyze.c). */
#include "analyze_int.h"
#include "base.h"

#include <math.h>
#include <string.h>

/* ---- heap sites ---- */

/* debug=1 heap profiles print sampled counts; estimate the real in-use bytes the way pprof
 * does (runtime/pprof/protomem.go scaleHeapSample, Go 1.21..1.27): with a sampling rate R and
 * an average object size s, each sample stands for 1/(1-exp(-s/R)) objects. The header's
 * "heap/N" is 2*MemProfileRate. Sites merge records of different sizes; their average size
 * is a fair approximation for a trend. */
static uint64_t scaled_inuse(const et_hprofile *hp, const et_hsite *h)
{
    if (hp->sample_rate < 2 || h->inuse_objects == 0 || h->inuse_bytes == 0)
        return h->inuse_bytes;
    double rate = (double)hp->sample_rate / 2.0;
    double avg = (double)h->inuse_bytes / (double)h->inuse_objects;
    double p = 1.0 - exp(-avg / rate);
    if (!(p > 0))
        return h->inuse_bytes;
    double v = (double)h->inuse_bytes / p;
    return v >= 1.8e19 ? UINT64_MAX - 1 : (uint64_t)v;
}

void an_ingest_heap(et_analyzer *a, const et_hprofile *hp, uint32_t slot)
{
    a->heap_prof_trunc = hp->trunc.sites != 0;
    a->heap_prof_sites = hp->nsites;
    for (int i = 0; i < ET_AN_HSITES; i++)
        if (a->hsites[i].key)
            a->hsites[i].inuse[slot] = hp->trunc.sites ? UINT64_MAX : 0;
    uint32_t ns = hp->nsites < ET_MAX_HSITES ? hp->nsites : ET_MAX_HSITES;
    for (uint32_t i = 0; i < ns; i++) {
        const et_hsite *h = &hp->sites[i];
        if (h->overflow || h->key == 0)
            continue;
        int k = -1, victim = -1;
        uint64_t vlast = UINT64_MAX;
        for (int j = 0; j < ET_AN_HSITES; j++) {
            if (a->hsites[j].key == h->key) {
                k = j;
                break;
            }
            if (a->hsites[j].key == 0) {
                if (vlast != 0 || victim < 0) {
                    victim = j;
                    vlast = 0;
                }
                continue;
            }
            if (a->hsites[j].growing)
                continue;
            uint64_t last = a->hsites[j].inuse[slot] == UINT64_MAX ? 0 : a->hsites[j].inuse[slot];
            if (last < vlast) {
                vlast = last;
                victim = j;
            }
        }
        if (k < 0) {
            if (victim < 0 || (a->hsites[victim].key && scaled_inuse(hp, h) <= vlast))
                continue;
            an_clear_hsite(&a->hsites[victim]);
            a->hsites[victim].key = h->key;
            a->hsites[victim].user = h->user;
            a->hsites[victim].user.func[ET_FUNC_MAX - 1] = 0;
            a->hsites[victim].user.file[ET_FILE_MAX - 1] = 0;
            k = victim;
        }
        a->hsites[k].inuse[slot] = scaled_inuse(hp, h);
    }
}

/* rise / bytes allocated (TotalAlloc) from the window start t0 to t1, the first sample of
 * the newest GC epoch. Not to the newest sample: the floor only moves at a GC, so counting
 * what was allocated since would make the retention decay through every epoch (and a
 * finding flap between likely and suspected until the next GC). */
static double heap_retention(const et_analyzer *a, double t0, double t1, double rise)
{
    uint32_t m = an_win(a);
    const et_an_rec *first = NULL, *last = NULL;
    for (uint32_t i = 0; i < m; i++) {
        const et_an_rec *r = &a->rec[an_slot_of(a, m, i)];
        if (!(r->flags & ET_AN_HAS_MS) || (double)r->t_ms < t0 || (double)r->t_ms > t1)
            continue;
        if (!first)
            first = r;
        last = r;
    }
    if (!first || last == first || last->total_alloc <= first->total_alloc)
        return 0;
    double ret = rise / (double)(last->total_alloc - first->total_alloc);
    return ret > 1 ? 1 : ret;
}

/* Steadiness: a leak accumulates, so no single GC epoch carries most of the rise. A working
 * set built at once (a cache filled, a catalog rebuilt while the previous generation is still
 * referenced, a config loaded) moves the floor in one jump, and that jump looks fully retained
 * until the GC after the swap frees the old copy. Until the series has risen across 6 epochs,
 * the largest step may carry at most 2/3 of the climb. */
static int heap_steady(const series *x, const gresult *g)
{
    double step_max = 0, step_sum = 0;
    for (int q = x->n - g->L + 1; q < x->n; q++) {
        double d = x->x[q] - x->x[q - 1];
        if (d > 0) {
            step_sum += d;
            if (d > step_max)
                step_max = d;
        }
    }
    return g->k_up >= 6 || (step_sum > 0 && step_max <= step_sum * (2.0 / 3.0));
}

/* A leak accumulates at its own pace; a warm-up decelerates (a catalog's generations pile up
 * fast, then the goal settles: 4 -> 33 -> 59 -> 66 -> 67 -> 69 MiB). The later half of the
 * passing window must carry at least a quarter of its rise, measured like the growth test
 * does (medians of 3 at the ends of windows of 9 or more, so that the first epoch of a
 * process, its goal still at the 4 MiB minimum, does not make a slow leak look settled). */
static int heap_not_decelerating(const series *s, const gresult *g)
{
    const double *x = s->x;
    int n = s->n, st = n - g->L, mid = st + (g->L - 1) / 2;
    double base = x[st], end = x[n - 1];
    if (g->L >= 9) {
        base = an_med3(x[st], x[st + 1], x[st + 2]);
        end = an_med3(x[n - 3], x[n - 2], x[n - 1]);
    }
    double total = end - base;
    return total > 0 && end - x[mid] >= 0.25 * total;
}

/* The more of what it allocated the process kept, the fewer epochs are needed. */
static int heap_persistent(const gresult *g, double retention)
{
    return (g->k_up >= 2 && retention >= 0.7) || (g->k_up >= 3 && retention >= 0.4) || g->k_up >= 4;
}

/* The live heap's share of the GC goal (1/(1+GOGC/100) at the default pacing): the lowest
 * floor/goal ratio over the window's epochs. HeapInuse never drops below the marked heap, so
 * the lowest ratio is the epoch sampled closest to its GC, the best bound available without
 * knowing GOGC. Scales the goal's rise and slope to bytes of live heap. */
static double goal_share(const series *fl, const series *goal)
{
    double share = 1;
    for (int i = 0; i < fl->n && i < goal->n; i++)
        if (goal->x[i] > 0 && fl->x[i] / goal->x[i] < share)
            share = fl->x[i] / goal->x[i];
    return share < 0.05 ? 0.05 : share;
}

/* Is the per-epoch floor blind? When the GC runs more often than the sampler (heavy churn,
 * or the default 30 s cadence), most epochs hold a single sample, and that sample lands
 * anywhere on the sawtooth between the live heap and the goal: the "floor" then moves by up
 * to half the goal between epochs for no reason at all, and a rise of it is as meaningless
 * as a fall. Blind when epochs average under 1.5 samples and the floor/goal ratio of the
 * window's epochs spreads over more than a quarter (a floor sampled near its GC keeps a
 * steady ratio, 1/(1+GOGC/100), whatever the heap does). The goal then speaks alone. */
static int floor_blind(const et_analyzer *a, const series *fl, const series *goal)
{
    uint32_t m = an_win(a), nms = 0;
    for (uint32_t i = 0; i < m; i++)
        nms += (a->rec[an_slot_of(a, m, i)].flags & ET_AN_HAS_MS) != 0;
    if ((double)nms >= 1.5 * fl->n)
        return 0;
    double lo = 1e9, hi = 0;
    for (int i = 0; i < fl->n && i < goal->n; i++) {
        if (!(goal->x[i] > 0))
            return 0;
        double r = fl->x[i] / goal->x[i];
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
    }
    return hi - lo > 0.25;
}

/* Does the goal contradict a rising floor? The runtime sets NextGC from the heap it marked
 * live, (1 + GOGC/100) times it, so a live heap that rose by X moves the goal by about 2X.
 * A floor that rose while the goal, over the same epochs, rose by under half as much is the
 * sampler landing higher on the sawtooth, not memory kept. Unless the goal is pinned (the
 * 4 MiB minimum of a small heap, GOGC=off, a memory limit holding it): then it says nothing. */
static int goal_contradicts(const series *fl, const series *goal, const gresult *g)
{
    if (goal->n != fl->n || g->L < 2)
        return 0;
    double lo = goal->x[0], hi = goal->x[0];
    for (int i = 1; i < goal->n; i++) {
        lo = goal->x[i] < lo ? goal->x[i] : lo;
        hi = goal->x[i] > hi ? goal->x[i] : hi;
    }
    if (hi == lo)
        return 0;
    double goal_rise = goal->x[goal->n - 1] - goal->x[goal->n - g->L];
    return goal_rise < 0.5 * g->rise;
}

/* Why a heap finding raised at t0 (its growth window's start) names no allocation site. The
 * profile's in-use figures are as of the last completed GC cycles (the runtime publishes a
 * cycle's allocations and frees only after the following ones), and a site needs 3 cycles of
 * growth by 512 KiB and 10% to count: under 4 cycles, the profile cannot have caught up. */
static int no_site_reason(const et_analyzer *a, double t0)
{
    if (a->heap_prof_trunc)
        return ET_NS_TRUNCATED;
    if (a->heap_prof_sites == 0)
        return ET_NS_NO_PROFILE;
    uint32_t m = an_win(a), gc0 = 0, gc1 = 0;
    int have = 0;
    for (uint32_t i = 0; i < m; i++) {
        const et_an_rec *r = &a->rec[an_slot_of(a, m, i)];
        if (!(r->flags & ET_AN_HAS_MS) || (double)r->t_ms < t0)
            continue;
        if (!have)
            gc0 = r->num_gc;
        have = 1;
        gc1 = r->num_gc;
    }
    return have && gc1 - gc0 >= 4 ? ET_NS_NO_SITE_GREW : ET_NS_PROFILE_LAG;
}

/* Is the goal still climbing? The newest epoch's goal is at the window's high (within 0.1%:
 * two cycles can mark the same heap, and a forced GC lands between the pacer's) and above the
 * goal 3 epochs back. No growth-test tolerance: a slow leak under frequent GCs moves the goal
 * by less than that per epoch. A flat goal's jitter rarely meets both, and a pinned one never
 * rises, so a healthy episode is not held for long. */
static int goal_climbing(const series *goal)
{
    int n = goal->n;
    if (n < 4)
        return 0;
    double hi = goal->x[0];
    for (int i = 1; i < n - 1; i++)
        hi = goal->x[i] > hi ? goal->x[i] : hi;
    return goal->x[n - 1] >= hi * 0.999 && goal->x[n - 1] > goal->x[n - 4];
}

/* Heap growth (post-GC floor per epoch, heap sites) and RSS growth outside the Go runtime. */
void an_eval_memory(et_analyzer *a, an_eval *cx)
{
    float scratch[PAIRS_MAX];
    series s;
    gresult g;
    gparams p;
    memset(&p, 0, sizeof p);
    const et_an_rec *nr = cx->nr;
    uint64_t now = cx->now;
    int total_grows = cx->total_grows;

    /* heap growth */
    series fl, goal;
    int ne = an_heap_epochs(a, &fl, &goal);
    int heap_conf1 = 0, held = 0;
    gresult gh;
    a->v_heap_site = -1;
    double best_site_rise = 0;
    for (int i = 0; i < ET_AN_HSITES; i++) {
        et_an_hsite *h = &a->hsites[i];
        if (!h->key)
            continue;
        an_hsite_series(a, h, &s);
        p.min_rise = 512.0 * 1024;
        p.rel = 0.10;
        p.tol = 0;
        p.drawdown = 0.25;
        h->growing = (uint8_t)an_growth_eval(&s, &p, &g, scratch);
        h->slope_per_min = h->growing ? g.slope : 0;
        if (h->growing && g.rise > best_site_rise) {
            best_site_rise = g.rise;
            a->v_heap_site = i;
        }
    }
    if (ne >= 3 && !total_grows) {
        p.min_rise = (double)a->conf.min_heap_rise;
        p.rel = a->conf.min_heap_rel;
        p.tol = fl.x[0] * 0.005;
        p.drawdown = 0.25;
        int floor_grows = !floor_blind(a, &fl, &goal) && an_growth_eval(&fl, &p, &gh, scratch) &&
                          !goal_contradicts(&fl, &goal, &gh);
        gresult gg;
        p.tol = goal.x[0] * 0.005;
        int goal_grows = an_growth_eval(&goal, &p, &gg, scratch);
        int site = a->v_heap_site >= 0;
        if (floor_grows) {
            /* Retention: how much of what was allocated over the growth window stayed live.
             * A leak keeps (nearly) everything it allocates there; a heap that is merely
             * warming up or sawing (a catalog rebuilt, request garbage) frees most of it.
             * With high retention a few GC cycles are enough; otherwise the floor must have
             * risen across at least 4 GC cycles. */
            double retention = heap_retention(a, gh.t0, fl.t[fl.n - 1], gh.rise);
            int likely = (goal_grows || site) && heap_steady(&fl, &gh) && heap_persistent(&gh, retention);
            heap_conf1 = 1 + (likely ? ET_C_LIKELY : ET_C_SUSPECTED);
        }
        if (!heap_conf1 && goal_grows) {
            /* The floor did not grow, or is blind (see floor_blind): one fall of the sampled
             * "floor" by over 25% below an earlier high reads as memory reclaimed, and the
             * retention is tiny under churn. NextGC has no such noise: the runtime sets it at the
             * end of every cycle from the bytes it marked live (Go 1.21+: marked *
             * (1 + GOGC/100), plus a share for stacks and globals), so its per-epoch series is
             * the post-GC live heap as the collector itself measured it. The same growth
             * test holds it (rise, levelling off, drawdown), with the live-heap rise estimated
             * from the goal's (see goal_share). It stands in for the floor only under churn
             * (retention < 40%), and then needs 4 rising epochs: a process that keeps most of
             * what it allocates (a catalog warming up, its generations still referenced)
             * climbs a steady goal for a few epochs, and there the floor is the judge, with
             * the checks it has always had. */
            double share = goal_share(&fl, &goal);
            gresult gl = gg;
            gl.rise *= share;
            gl.slope *= share;
            double retention = heap_retention(a, gl.t0, goal.t[goal.n - 1], gl.rise);
            if (retention < 0.4) {
                gh = gl;
                int likely = heap_steady(&goal, &gg) && heap_not_decelerating(&goal, &gg) &&
                             heap_persistent(&gg, retention);
                heap_conf1 = 1 + (likely ? ET_C_LIKELY : ET_C_SUSPECTED);
            }
        }
        if (!heap_conf1 && a->v_heap.confidence1 && goal_climbing(&goal)) {
            /* The hand-over: a slow leak's sampled floor may stop passing (one epoch sampled
             * only high on the sawtooth, and the next one's fall reads as a drawdown) before
             * its goal has risen by the 5% the goal test asks for. A raised episode whose
             * goal is still climbing stays suspected rather than clearing and reopening; one
             * that stops climbing clears. */
            held = 1;
            heap_conf1 = 1 + ET_C_SUSPECTED;
            gh.L = 0;
            gh.k_up = a->v_heap.k_up;
            gh.slope = a->v_heap.slope_per_min;
            gh.rise = a->v_heap.rise;
        }
    }
    p.drawdown = 0;
    int was_raised = a->v_heap.confidence1 != 0;
    an_set_series_verdict(&a->v_heap, heap_conf1, &gh, nr ? nr->heap_inuse : 0, now);
    /* Fingerprint continuity: an episode raised before any heap site had moved across GCs
     * carries the site-less fingerprint; the first site that appears later inherits it, so
     * the collector keeps following one finding instead of seeing it clear and a new one open. */
    if (!heap_conf1) {
        a->heap_siteless = 0;
        a->heap_anchor = 0;
    } else if (!was_raised) {
        a->heap_siteless = a->v_heap_site < 0;
        a->heap_anchor = 0;
    }
    if (heap_conf1 && a->heap_siteless && !a->heap_anchor && a->v_heap_site >= 0)
        a->heap_anchor = a->hsites[a->v_heap_site].key;
    if (!held)
        a->heap_no_site =
            heap_conf1 && a->v_heap_site < 0 ? (uint8_t)no_site_reason(a, gh.t0) : (uint8_t)ET_NS_NONE;
    else if (a->v_heap_site >= 0)
        a->heap_no_site = ET_NS_NONE;
    else if (!a->heap_no_site)
        a->heap_no_site = ET_NS_NO_SITE_GREW; /* it had a site: that site stopped growing */

    /* RSS outside the Go runtime */
    an_rec_series(a, F_RSS_OUTSIDE, &s);
    int rss_conf1 = 0;
    gresult gr;
    /* growing goroutines bring stacks and runtime metadata: that is the goroutine finding */
    if (s.n >= 3 && !total_grows) {
        const et_an_rec *r0 = NULL;
        uint32_t m = an_win(a);
        for (uint32_t i = 0; i < m && !r0; i++) {
            const et_an_rec *r = &a->rec[an_slot_of(a, m, i)];
            if ((r->flags & ET_AN_HAS_PROC) && (r->flags & ET_AN_HAS_MS) && r->rss_kb)
                r0 = r;
        }
        p.min_rise = (double)a->conf.min_rss_rise_kb;
        p.rel = 0;
        p.tol = 16;
        if (r0 && a->conf.min_rss_rel * (double)r0->rss_kb > p.min_rise)
            p.min_rise = a->conf.min_rss_rel * (double)r0->rss_kb;
        if (an_growth_eval(&s, &p, &gr, scratch))
            rss_conf1 = 1 + (gr.k_up >= 3 ? ET_C_LIKELY : ET_C_SUSPECTED);
    }
    an_set_series_verdict(&a->v_rss, rss_conf1, &gr, nr ? nr->rss_kb * 1024u : 0, now);

}

/* Heap findings: one per growing allocation site while the process heap grows (two leaks in
 * one service are two findings, each fingerprinted by its site's function), the site that
 * grew most first; a single site-less finding while no site has moved across GCs yet (the
 * heap profile is as of the last GC, so a fresh leak has no site for its first epochs). */
#define HEAP_SITE_FINDINGS 4
void an_findings_memory(const et_analyzer *a, et_findings *out, uint64_t now)
{
    et_finding f;
    if (a->v_heap.confidence1) {
        int order[HEAP_SITE_FINDINGS], n = 0;
        if (a->v_heap_site >= 0)
            order[n++] = a->v_heap_site;
        for (int i = 0; i < ET_AN_HSITES && n < HEAP_SITE_FINDINGS; i++)
            if (i != a->v_heap_site && a->hsites[i].key && a->hsites[i].growing)
                order[n++] = i;
        for (int k = 0; k < (n ? n : 1); k++) {
            memset(&f, 0, sizeof f);
            f.kind = ET_F_HEAP_GROWTH;
            f.confidence = (uint8_t)(a->v_heap.confidence1 - 1);
            f.evidence = ET_E_MEMSTATS;
            f.growth_per_min = a->v_heap.slope_per_min;
            f.value = a->v_heap.value;
            f.first_seen_ms = a->v_heap.first_seen_ms;
            f.last_seen_ms = now;
            const et_an_hsite *h = n ? &a->hsites[order[k]] : NULL;
            if (h) {
                f.evidence |= ET_E_HEAP_SITE;
                f.site = h->user;
                if (k > 0)
                    f.growth_per_min = h->slope_per_min; /* the process figure belongs to the first */
            }
            if (!h)
                f.no_site = a->heap_no_site;
            an_fingerprint(&f, "heap", h && h->key != a->heap_anchor ? h->user.func : "");
            an_push(out, &f);
        }
    }
    if (a->v_rss.confidence1) {
        memset(&f, 0, sizeof f);
        f.kind = ET_F_RSS_GROWTH;
        f.confidence = (uint8_t)(a->v_rss.confidence1 - 1);
        f.evidence = ET_E_PROC | ET_E_MEMSTATS;
        f.growth_per_min = a->v_rss.slope_per_min * 1024.0; /* KiB/min -> bytes/min */
        f.value = a->v_rss.value;
        f.first_seen_ms = a->v_rss.first_seen_ms;
        f.last_seen_ms = now;
        an_fingerprint(&f, "rss", "");
        an_push(out, &f);
    }
}
