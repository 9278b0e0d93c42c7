/* analyze_int.h - what the analyze family of files shares (not part of the agent's API:
 * only analyze*.c include it). See analyze.c for the policy and the map of the files.
 *
 * Names shared between these files carry the an_ prefix; everything else stays static in
 * the file that owns it. */
#ifndef ET_ANALYZE_INT_H
#define ET_ANALYZE_INT_H

#include "analyze.h"

#define PAIRS_MAX (ET_AN_WINDOW * (ET_AN_WINDOW - 1) / 2)

typedef struct series {
    int n;
    double t[ET_AN_WINDOW];
    double x[ET_AN_WINDOW];
} series;

typedef struct gparams {
    double min_rise; /* absolute */
    double rel;      /* fraction of the starting value */
    double tol;      /* steps within +-tol are flat */
    int counts;      /* goroutine counts: also rise above Poisson-like noise, 3*sqrt(start) */
    double drawdown; /* memory series: a fall of more than this fraction from an earlier high
                      * anywhere in the history means the memory is reclaimed: not growth (0 = off) */
} gparams;

typedef struct gresult {
    int L;        /* points in the passing window */
    int k_up, k_down;
    double slope; /* per minute */
    double rise;
    double tau;
    double t0;    /* time of the window's first point */
} gresult;

enum rec_field { F_TOTAL, F_STACK, F_THREADS, F_RSS_OUTSIDE };

/* One evaluation's shared facts, computed in the order analyze.c's evaluate() calls the
 * detectors. */
typedef struct an_eval {
    const et_an_rec *nr; /* newest record */
    uint64_t now;        /* its time, ms */
    double ival;         /* median sampling interval, ms */
    int total_grows;     /* the process-wide goroutine total grows */
    int stack_grows;     /* StackInuse grows */
    int threads_grow;    /* the OS thread count grows */
    gresult gt;          /* the thread series' passing window (valid when threads_grow) */
} an_eval;

/* analyze.c: configuration and verdict bookkeeping */
int an_is_allowed(const et_analyze_conf *c, const char *func);
void an_set_series_verdict(et_an_series_verdict *v, int conf1, const gresult *g, uint64_t value, uint64_t now);

/* analyze_stats.c */
float an_select_kth(float *v, int n, int k);
double an_med3(double a, double b, double c);
int an_growth_eval(const series *s, const gparams *p, gresult *r, float *scratch);

/* analyze_history.c: the ring and the series drawn from it */
uint32_t an_win(const et_analyzer *a);
uint32_t an_slot_of(const et_analyzer *a, uint32_t m, uint32_t i);
const et_an_rec *an_newest(const et_analyzer *a);
void an_site_series(const et_analyzer *a, const et_an_site *st, series *s);
void an_rec_series(const et_analyzer *a, enum rec_field f, series *s);
double an_median_interval(const et_analyzer *a);
void an_clear_site(et_an_site *s);
void an_clear_hsite(et_an_hsite *h);
void an_hsite_series(const et_analyzer *a, const et_an_hsite *h, series *s);
int an_heap_epochs(const et_analyzer *a, series *floor_s, series *goal_s);
uint32_t an_site_now(const et_analyzer *a, const et_an_site *s);
int an_wait_recent(const et_analyzer *a, const et_an_site *s);

/* analyze_sites.c: following goroutine sites */
int an_find_site(const et_analyzer *a, uint64_t key);
uint64_t an_site_akey(const et_gsite *g);
int an_parked_like(unsigned st);
void an_copy_site_meta(et_an_site *d, const et_gsite *g, const et_analyze_conf *c);
void an_ingest_goroutine(et_analyzer *a, const et_gprofile *gp, uint32_t slot, et_an_rec *r);
void an_ingest_leak(et_analyzer *a, const et_gprofile *lp, uint64_t t);
void an_ingest_trace(et_analyzer *a, const struct et_trace_summary *ts);

/* analyze_survivors.c: which goroutines stayed between debug=2 dumps */
void an_survivors_observe(et_analyzer *a, const et_gprofile *gp, uint32_t slot, uint64_t t_ms);
int an_survivor_candidate(const et_analyzer *a, const et_an_site *st);
int an_survivors_fresh(const et_analyzer *a, const et_an_site *st);

/* the detectors, in evaluation order */
void an_eval_totals(et_analyzer *a, an_eval *cx);            /* analyze_goroutine.c */
void an_eval_threads(et_analyzer *a, an_eval *cx);           /* analyze_threads.c */
void an_eval_goroutine_sites(et_analyzer *a, an_eval *cx);   /* analyze_goroutine.c */
int an_waits_for_ids(const et_analyzer *a, const et_an_site *st); /* analyze_goroutine.c */
void an_eval_memory(et_analyzer *a, an_eval *cx);            /* analyze_memory.c */
void an_eval_thread_site(et_analyzer *a, const an_eval *cx); /* analyze_threads.c */
void an_deadlock_observe(et_analyzer *a, const et_gprofile *gp, et_an_rec *r, int truncated); /* analyze_deadlock.c */
void an_ingest_heap(et_analyzer *a, const et_hprofile *hp, uint32_t slot);                   /* analyze_memory.c */

/* analyze_findings.c and the detectors' findings */
const char *an_state_class(unsigned st);
void an_fingerprint(et_finding *f, const char *state_cls, const char *func);
et_finding *an_push(et_findings *out, const et_finding *f);
void an_fill_from_site(et_finding *f, const et_an_site *s);
void an_findings_goroutine(const et_analyzer *a, et_findings *out, uint64_t now);
void an_findings_deadlock(const et_analyzer *a, et_findings *out, uint64_t now);
void an_findings_memory(const et_analyzer *a, et_findings *out, uint64_t now);
void an_findings_threads(const et_analyzer *a, et_findings *out, uint64_t now);

#endif
