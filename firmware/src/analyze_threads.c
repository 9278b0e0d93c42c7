/* analyze_threads.c - the thread-leak detector (policy in analyze.c). */
#include "analyze_int.h"
#include "base.h"

#include <string.h>

/* The OS thread count (Go never frees an M: the levelling-off check matters). */
void an_eval_threads(et_analyzer *a, an_eval *cx)
{
    float scratch[PAIRS_MAX];
    series s;
    gparams p;
    memset(&p, 0, sizeof p);
    uint64_t now = cx->now;

    /* threads */
    an_rec_series(a, F_THREADS, &s);
    p.min_rise = a->conf.min_thread_rise;
    p.rel = a->conf.min_thread_rel;
    p.tol = 0;
    int threads_grow = an_growth_eval(&s, &p, &cx->gt, scratch);
    an_set_series_verdict(&a->v_threads, threads_grow ? 1 + (cx->gt.k_up >= 3 ? ET_C_LIKELY : ET_C_SUSPECTED) : 0, &cx->gt,
                          s.n ? (uint64_t)s.x[s.n - 1] : 0, now);

    cx->threads_grow = threads_grow;
}

/* The site that grows with the threads (a syscall site preferred): the thread finding's name. */
void an_eval_thread_site(et_analyzer *a, const an_eval *cx)
{
    series s;
    int threads_grow = cx->threads_grow;
    const gresult *gt = &cx->gt;

    /* the site that grows with the threads */
    a->v_thread_site = -1;
    if (threads_grow) {
        double best = 0;
        int best_sys = 0;
        for (int i = 0; i < ET_AN_SITES; i++) {
            const et_an_site *st = &a->sites[i];
            if (!st->key)
                continue;
            an_site_series(a, st, &s);
            int k0 = -1;
            for (int k = 0; k < s.n; k++)
                if (s.t[k] >= gt->t0) {
                    k0 = k;
                    break;
                }
            if (k0 < 0 || s.n - k0 < 2)
                continue;
            double rise = s.x[s.n - 1] - s.x[k0];
            if (rise < 0.5 * gt->rise || rise <= 0)
                continue;
            int sys = st->state == ET_G_SYSCALL;
            if (a->v_thread_site < 0 || (sys && !best_sys) || (sys == best_sys && rise > best)) {
                a->v_thread_site = i;
                best = rise;
                best_sys = sys;
            }
        }
    }
}

void an_findings_threads(const et_analyzer *a, et_findings *out, uint64_t now)
{
    et_finding f;
    if (a->v_threads.confidence1) {
        memset(&f, 0, sizeof f);
        f.kind = ET_F_THREAD_LEAK;
        f.confidence = (uint8_t)(a->v_threads.confidence1 - 1);
        f.evidence = ET_E_PROC;
        if (a->v_thread_site >= 0) {
            const et_an_site *s = &a->sites[a->v_thread_site];
            an_fill_from_site(&f, s);
            f.count = an_site_now(a, s);
            if (s->verdict)
                f.evidence |= ET_E_CLUSTER;
        }
        f.growth_per_min = a->v_threads.slope_per_min;
        f.value = a->v_threads.value;
        f.first_seen_ms = a->v_threads.first_seen_ms;
        f.last_seen_ms = now;
        an_fingerprint(&f, "threads", "");
        an_push(out, &f);
    }

}
