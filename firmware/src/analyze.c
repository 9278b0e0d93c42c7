/* analyze.c - per-target history and leak heuristics (see analyze.h).
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
 * line numbers.
 */
#include "analyze.h"
#include "base.h"
#include "trace.h"

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

static int is_allowed(const et_analyze_conf *c, const char *func)
{
    for (uint32_t i = 0; i < c->nallow; i++)
        if (strncmp(func, c->allow[i], strlen(c->allow[i])) == 0)
            return 1;
    return 0;
}

/* ---- statistics ---- */

static void swapf(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

/* k-th smallest of v[0..n) by quickselect (Hoare partition, middle pivot); reorders v. */
static float select_kth(float *v, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                swapf(&v[i], &v[j]);
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

/* Theil-Sen slope in units of x per minute (t in ms): the median of the slopes of all pairs
 * with distinct times. O(n^2) pairs; scratch must hold n(n-1)/2 floats. */
double et_theil_sen(const double *t, const double *x, int n, float *scratch, int scratch_n)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double dt = t[j] - t[i];
            if (dt <= 0 || m >= scratch_n)
                continue;
            scratch[m++] = (float)((x[j] - x[i]) / (dt / 60000.0));
        }
    if (m == 0)
        return 0;
    float hi = select_kth(scratch, m, m / 2);
    if (m % 2)
        return hi;
    /* even: the lower middle is the largest of the left part after selection */
    float lo = scratch[0];
    for (int i = 1; i < m / 2; i++)
        if (scratch[i] > lo)
            lo = scratch[i];
    return ((double)lo + (double)hi) / 2.0;
}

static int sgn_tol(double d, double tol)
{
    return d > tol ? 1 : (d < -tol ? -1 : 0);
}

int et_mann_kendall_s(const double *x, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            s += sgn_tol(x[j] - x[i], 0);
    return s;
}

static double med3(double a, double b, double c)
{
    if (a > b) {
        double t = a;
        a = b;
        b = t;
    }
    if (b > c)
        b = c;
    return a > b ? a : b;
}

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

/* The growth test described at the top of this file. 1 if the series grows. */
static int growth_eval(const series *s, const gparams *p, gresult *r, float *scratch)
{
    int n = s->n;
    const double *x = s->x;
    if (n < 3)
        return 0;
    /* levelled off? */
    int R = n / 4 + 1;
    if (R < 3)
        R = 3;
    if (R > n)
        R = n;
    if (!(x[n - 1] > x[n - R] + p->tol))
        return 0;
    if (p->drawdown > 0) {
        double hi = x[0];
        for (int i = 1; i < n; i++) {
            if (x[i] > hi)
                hi = x[i];
            else if (hi - x[i] > p->drawdown * hi)
                return 0;
        }
    }
    static const int lens[] = {ET_AN_WINDOW, 32, 16, 8, 4, 3};
    int last_L = 0;
    for (size_t li = 0; li < ET_ARRAY_LEN(lens); li++) {
        int L = lens[li] < n ? lens[li] : n;
        if (L == last_L || L < 3)
            continue;
        last_L = L;
        int st = n - L;
        int up = 0, down = 0;
        for (int i = st + 1; i < n; i++) {
            int sg = sgn_tol(x[i] - x[i - 1], p->tol);
            up += sg > 0;
            down += sg < 0;
        }
        /* Short windows must not go down at all: among 6 values in random order, one in
         * eight has at most one descent, but only one in 720 has none. */
        if (up < 2 || down > (L <= 6 ? 0 : (L <= 8 ? (L - 1) / 4 : (L - 1) / 3)))
            continue;
        int S = 0;
        for (int i = st; i < n; i++)
            for (int j = i + 1; j < n; j++)
                S += sgn_tol(x[j] - x[i], p->tol);
        double tau = (double)S / ((double)L * (L - 1) / 2.0);
        if (tau < 0.5)
            continue;
        double base, rise;
        if (L >= 9) {
            base = med3(x[st], x[st + 1], x[st + 2]);
            rise = med3(x[n - 3], x[n - 2], x[n - 1]) - base;
        } else {
            base = x[st];
            rise = x[n - 1] - base;
        }
        /* the relative part relaxes over long windows too: a pool of 500 that gained one
         * goroutine in each of 48 samples is a leak, though it grew by under 10% */
        double rel = p->rel * (L <= 8 ? 1.0 : (L <= 16 ? 0.5 : 0.25));
        double need = p->min_rise;
        if (rel * fabs(base) > need)
            need = rel * fabs(base);
        /* In-flight goroutines at a busy site come and go with a spread of about the square
         * root of the level; the level reached (not the start, which may be a low outlier)
         * sets the noise a rise must clear. */
        /* Over a long window persistence itself is the evidence (Mann-Kendall), so the
         * multiplier shrinks: 3 up to 6 points, 2 up to 16, 1 beyond. */
        double mult = L <= 6 ? 3.0 : (L <= 16 ? 2.0 : 1.0);
        if (p->counts && x[n - 1] > 0 && mult * sqrt(x[n - 1]) > need)
            need = mult * sqrt(x[n - 1]);
        if (rise < need)
            continue;
        if (st > 0) {
            /* a new high by a margin: back to an old peak plus noise is not growth */
            double before = x[0];
            for (int i = 1; i < st; i++)
                if (x[i] > before)
                    before = x[i];
            double margin = need;
            if (p->rel * fabs(before) > margin)
                margin = p->rel * fabs(before);
            if (!(x[n - 1] >= before + margin + p->tol))
                continue;
        }
        double slope = et_theil_sen(s->t + st, x + st, L, scratch, PAIRS_MAX);
        if (!(slope > 0))
            continue;
        if (r) {
            r->L = L;
            r->k_up = up;
            r->k_down = down;
            r->slope = slope;
            r->rise = rise;
            r->tau = tau;
            r->t0 = s->t[st];
        }
        return 1;
    }
    return 0;
}

/* ---- ring helpers ---- */

static uint32_t win(const et_analyzer *a)
{
    uint32_t w = a->conf.window ? a->conf.window : ET_AN_WINDOW;
    if (w > ET_AN_WINDOW)
        w = ET_AN_WINDOW;
    return a->n < w ? a->n : w;
}

/* slot of the i-th of the last m samples (0 = oldest) */
static uint32_t slot_of(const et_analyzer *a, uint32_t m, uint32_t i)
{
    return (a->seq - m + i) % ET_AN_WINDOW;
}

static const et_an_rec *newest(const et_analyzer *a)
{
    return a->n ? &a->rec[(a->seq - 1) % ET_AN_WINDOW] : NULL;
}

static void site_series(const et_analyzer *a, const et_an_site *st, series *s)
{
    uint32_t m = win(a);
    s->n = 0;
    for (uint32_t i = 0; i < m; i++) {
        uint32_t sl = slot_of(a, m, i);
        if (st->cnt[sl] == ET_AN_NOCOUNT)
            continue;
        s->t[s->n] = (double)a->rec[sl].t_ms;
        s->x[s->n++] = st->cnt[sl];
    }
}

enum rec_field { F_TOTAL, F_STACK, F_THREADS, F_RSS_OUTSIDE };

static void rec_series(const et_analyzer *a, enum rec_field f, series *s)
{
    uint32_t m = win(a);
    s->n = 0;
    for (uint32_t i = 0; i < m; i++) {
        const et_an_rec *r = &a->rec[slot_of(a, m, i)];
        double v;
        switch (f) {
        case F_TOTAL:
            if (!(r->flags & ET_AN_HAS_G))
                continue;
            v = r->goroutines;
            break;
        case F_STACK:
            if (!(r->flags & ET_AN_HAS_MS))
                continue;
            v = (double)r->stack_inuse;
            break;
        case F_THREADS:
            if (!(r->flags & ET_AN_HAS_PROC) || r->threads == 0)
                continue;
            v = r->threads;
            break;
        case F_RSS_OUTSIDE:
            if ((r->flags & (ET_AN_HAS_PROC | ET_AN_HAS_MS)) != (ET_AN_HAS_PROC | ET_AN_HAS_MS) || r->rss_kb == 0)
                continue;
            /* KiB of anonymous memory resident beyond everything the Go runtime holds from the
             * OS (an upper bound of what Go can have resident). Below zero it is only Go's own
             * mapped pages being touched for the first time: clamped, so that a process
             * warming up does not look like memory growing outside the heap. */
            v = (double)(r->rss_anon_kb ? r->rss_anon_kb : r->rss_kb) -
                ((double)r->sys - (double)r->heap_released) / 1024.0;
            if (v < 0)
                v = 0;
            break;
        default:
            continue;
        }
        s->t[s->n] = (double)r->t_ms;
        s->x[s->n++] = v;
    }
}

/* Median sampling interval over the window, ms (0 if unknown). */
static double median_interval(const et_analyzer *a)
{
    uint32_t m = win(a);
    float d[ET_AN_WINDOW];
    int k = 0;
    for (uint32_t i = 1; i < m; i++) {
        uint64_t t1 = a->rec[slot_of(a, m, i)].t_ms, t0 = a->rec[slot_of(a, m, i - 1)].t_ms;
        if (t1 > t0)
            d[k++] = (float)(t1 - t0);
    }
    return k ? select_kth(d, k, k / 2) : 0;
}

/* ---- site classification ---- */

static int stack_has(const char stack[][ET_FUNC_MAX], int n, const char *needle)
{
    for (int i = 0; i < n; i++)
        if (strstr(stack[i], needle))
            return 1;
    return 0;
}

/* A listener's accept loop parked in netpoll: waiting for the outside world, not for work. */
static int is_accept_loop(const et_gsite *g)
{
    int n = g->nstack < ET_STACK_MAX ? g->nstack : ET_STACK_MAX;
    return stack_has(g->stack, n, ").Accept") || stack_has(g->stack, n, ").accept") ||
           strstr(g->block_func, "ccept") != NULL;
}

/* The goroutine writing the profile we are reading (or any pprof handler). */
static int is_profiler(const et_gsite *g)
{
    int n = g->nstack < ET_STACK_MAX ? g->nstack : ET_STACK_MAX;
    return stack_has(g->stack, n, "runtime/pprof.") || stack_has(g->stack, n, "net/http/pprof.");
}

/* The main goroutine parked for good (wg.Wait / select{} / <-sigCh at the end of main). */
static int is_main_goroutine(const et_gsite *g)
{
    if (strcmp(g->user.func, "main.main") == 0)
        return 1;
    int n = g->nstack < ET_STACK_MAX ? g->nstack : ET_STACK_MAX;
    for (int i = 0; i < n; i++)
        if (strcmp(g->stack[i], "main.main") == 0)
            return 1;
    return 0;
}

/* Waits that an idle but healthy program never shows for long: a mutex is held for a short
 * critical section, and a nil channel blocks for ever by construction. Every other wait can
 * be an idle program's normal state: a ticker loop sits in chan receive or select, a
 * producer in chan send to a consumer that waits on a timer, a sync.Cond pool in Cond.Wait
 * for work, a supervisor in WaitGroup.Wait on long-lived workers. An all-blocked picture
 * is a deadlock only if some goroutine waits on a lock (or a nil channel). */
static int is_hard_state(unsigned st)
{
    return st == ET_G_MUTEX || st == ET_G_RWMUTEX_R || st == ET_G_RWMUTEX_W || st == ET_G_CHAN_SEND_NIL ||
           st == ET_G_CHAN_RECV_NIL;
}

/* ---- init ---- */

static void clear_site(et_an_site *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < ET_AN_WINDOW; i++)
        s->cnt[i] = ET_AN_NOCOUNT;
}

static void clear_hsite(et_an_hsite *h)
{
    memset(h, 0, sizeof *h);
    for (int i = 0; i < ET_AN_WINDOW; i++)
        h->inuse[i] = UINT64_MAX;
}

void et_analyzer_reset(et_analyzer *a)
{
    et_analyze_conf keep = a->conf;
    memset(a, 0, sizeof *a);
    a->conf = keep;
    for (int i = 0; i < ET_AN_SITES; i++)
        clear_site(&a->sites[i]);
    for (int i = 0; i < ET_AN_HSITES; i++)
        clear_hsite(&a->hsites[i]);
    a->v_heap_site = -1;
    a->v_thread_site = -1;
}

void et_analyzer_init(et_analyzer *a, const et_analyze_conf *conf)
{
    if (conf)
        a->conf = *conf;
    else
        et_analyze_conf_defaults(&a->conf);
    et_analyzer_reset(a);
}

/* ---- goroutine sites: tracking with bounded replacement ---- */

static int find_site(const et_analyzer *a, uint64_t key)
{
    for (int i = 0; i < ET_AN_SITES; i++)
        if (a->sites[i].key == key && key != 0)
            return i;
    return -1;
}

/* How much a tracked site is worth keeping: its current count, plus a bonus for recent
 * growth so that a small site that climbs is not pushed out by a big flat one. */
static double keep_score(const et_analyzer *a, const et_an_site *s, uint32_t slot_now)
{
    if (s->verdict || s->grew)
        return 1e18; /* never evict a site with a live finding */
    uint32_t now = s->cnt[slot_now] == ET_AN_NOCOUNT ? 0 : s->cnt[slot_now];
    uint32_t m = win(a), lo = UINT32_MAX;
    for (uint32_t i = (m > 4 ? m - 4 : 0); i < m; i++) {
        uint32_t c = s->cnt[slot_of(a, m, i)];
        if (c != ET_AN_NOCOUNT && c < lo)
            lo = c;
    }
    double bonus = (lo != UINT32_MAX && now > lo) ? 8.0 * (now - lo) : 0;
    return now + bonus;
}

/* The analyzer's identity of a site: user function, file and line only. The parser's key
 * also hashes the state and the creator, and neither is stable across sampling modes: debug=1
 * hides the runtime frames a channel wait shows (state unknown there, "chan send" in debug=2)
 * and prints no "created by". One site must stay one series whatever was fetched. */
static uint64_t frame_akey(const et_frame *f)
{
    uint64_t h = et_fnv1a_str(ET_FNV_INIT, f->func);
    h = et_fnv1a(h, "", 1);
    h = et_fnv1a_str(h, f->file);
    h = et_fnv1a(h, &f->line, sizeof f->line);
    return h ? h : 1;
}

static uint64_t site_akey(const et_gsite *g)
{
    return frame_akey(&g->user);
}

/* States in which goroutines can pile up for ever at one site. UNKNOWN is what debug=1
 * gives for channel and select waits (their runtime frames are not printed), and running
 * code cannot accumulate at a site, so it counts as parked here. */
static int parked_like(unsigned st)
{
    return st == ET_G_UNKNOWN || et_gstate_is_sync_blocked((enum et_gstate)st);
}

/* Folds one profile site into a tracked site for this sample (several profile sites can
 * share the analyzer's identity). */
static void site_observe(et_analyzer *a, et_an_site *s, const et_gsite *g, uint32_t slot, int debug2)
{
    int first = s->touched != a->seq + 1;
    if (first || s->cnt[slot] == ET_AN_NOCOUNT)
        s->cnt[slot] = g->count;
    else
        s->cnt[slot] += g->count;
    s->touched = a->seq + 1;
    if (g->state != ET_G_UNKNOWN)
        s->state = g->state; /* a precise state (debug=2) sticks; debug=1 may not know it */
    if (g->created_by[0]) {
        memcpy(s->created_by, g->created_by, ET_FUNC_MAX);
        s->created_by[ET_FUNC_MAX - 1] = 0;
    }
    if (debug2) {
        if (first || s->wait_seq != a->seq + 1) {
            s->max_wait_min = 0;
            s->waiting_count = 0;
        }
        s->wait_seq = a->seq + 1; /* 1-based so 0 means never */
        if (g->max_wait_min > s->max_wait_min)
            s->max_wait_min = g->max_wait_min;
        s->waiting_count += g->waiting_count;
        if (g->nstack) { /* debug=2 prints every frame: the better sample stack */
            s->nstack = g->nstack < ET_STACK_MAX ? g->nstack : ET_STACK_MAX;
            for (int i = 0; i < s->nstack; i++) {
                memcpy(s->stack[i], g->stack[i], ET_FUNC_MAX);
                s->stack[i][ET_FUNC_MAX - 1] = 0;
            }
        }
    }
}

static void copy_site_meta(et_an_site *d, const et_gsite *g, const et_analyze_conf *c)
{
    d->key = site_akey(g);
    d->state = g->state;
    d->stdlib_only = g->stdlib_only;
    d->nstack = g->nstack < ET_STACK_MAX ? g->nstack : ET_STACK_MAX;
    d->user = g->user;
    d->user.func[ET_FUNC_MAX - 1] = 0;
    d->user.file[ET_FILE_MAX - 1] = 0;
    memcpy(d->created_by, g->created_by, ET_FUNC_MAX);
    d->created_by[ET_FUNC_MAX - 1] = 0;
    for (int i = 0; i < d->nstack; i++) {
        memcpy(d->stack[i], g->stack[i], ET_FUNC_MAX);
        d->stack[i][ET_FUNC_MAX - 1] = 0;
    }
    /* A site with no frame of the service's own is infrastructure (connections, signal
     * loops): treated like the allow-list, whatever its function. */
    d->allowed = (uint8_t)(g->stdlib_only || is_allowed(c, d->user.func));
}

/* Entries are stamped with seq+1 (0 = empty); an entry written during this sample is never
 * replaced in the same sample, so a flood of one-off newcomers (processed largest first)
 * cannot wipe the memory of a bigger site. */
static et_an_probe *probe_find(et_analyzer *a, uint64_t key, int create)
{
    int oldest = 0;
    for (int i = 0; i < ET_AN_PROBATION; i++) {
        if (a->probe[i].key == key && key)
            return &a->probe[i];
        if (a->probe[i].seq < a->probe[oldest].seq)
            oldest = i;
    }
    if (!create || a->probe[oldest].seq == a->seq + 1)
        return NULL;
    et_an_probe *p = &a->probe[oldest];
    p->key = key;
    p->count = 0;
    p->seq = 0;
    return p;
}

/* 1 if site x goes before y: more goroutines first, then by key (deterministic). */
static int site_before(const et_gsite *x, const et_gsite *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    return x->key < y->key;
}

/* Shell sort of indices into sites[] (qsort has no context argument in C11, and this keeps
 * the analyzer free of globals). n <= ET_MAX_GSITES. */
static void sort_sites_desc(uint16_t *idx, uint32_t n, const et_gsite *sites)
{
    static const uint32_t gaps[] = {132, 57, 23, 10, 4, 1};
    for (size_t gi = 0; gi < ET_ARRAY_LEN(gaps); gi++) {
        uint32_t gap = gaps[gi];
        for (uint32_t i = gap; i < n; i++) {
            uint16_t v = idx[i];
            uint32_t j = i;
            while (j >= gap && site_before(&sites[v], &sites[idx[j - gap]])) {
                idx[j] = idx[j - gap];
                j -= gap;
            }
            idx[j] = v;
        }
    }
}

/* Starts following a site not in the table, replacing the least valuable one if the
 * newcomer is worth more. Returns its slot index or -1. */
static int track_site(et_analyzer *a, const et_gsite *g, uint32_t slot, int debug2)
{
    uint64_t akey = site_akey(g);
    int have = find_site(a, akey);
    if (have >= 0) { /* a twin of a site inserted earlier in this sample */
        site_observe(a, &a->sites[have], g, slot, debug2);
        return have;
    }
    /* A newcomer: its priority is its count plus a bonus if it grew while untracked. */
    et_an_probe *p = probe_find(a, akey, 1);
    double prio = g->count;
    if (p) {
        if (p->seq && p->seq <= a->seq && a->seq + 1 - p->seq <= 4 && g->count > p->count)
            prio += 8.0 * (g->count - p->count);
        p->count = g->count;
        p->seq = a->seq + 1;
    }
    int victim = -1;
    double vscore = 0;
    for (int k = 0; k < ET_AN_SITES; k++) {
        if (a->sites[k].key == 0) {
            victim = k;
            vscore = -1;
            break;
        }
        if (a->sites[k].tracked_seq == a->seq)
            continue; /* inserted this very sample: no history to judge it by */
        double sc = keep_score(a, &a->sites[k], slot);
        if (victim < 0 || sc < vscore) {
            victim = k;
            vscore = sc;
        }
    }
    if (victim < 0 || (vscore >= 0 && prio <= vscore)) {
        a->untracked++;
        return -1;
    }
    et_an_site *s = &a->sites[victim];
    if (s->key)
        a->evictions++;
    clear_site(s);
    copy_site_meta(s, g, &a->conf);
    s->tracked_seq = a->seq;
    site_observe(a, s, g, slot, debug2);
    if (a->n > 0) {
        uint32_t prev = (a->seq - 1) % ET_AN_WINDOW;
        if (a->rec[prev].flags & ET_AN_ALL_TRACKED)
            s->cnt[prev] = 0;
    }
    return victim;
}

static uint64_t mix64(uint64_t z)
{
    z ^= z >> 33;
    z *= 0xff51afd7ed558ccdULL;
    z ^= z >> 33;
    z *= 0xc4ceb9fe1a85ec53ULL;
    z ^= z >> 33;
    return z;
}

static void ingest_goroutine(et_analyzer *a, const et_gprofile *gp, uint32_t slot, et_an_rec *r)
{
    r->flags |= ET_AN_HAS_G;
    r->goroutines = (uint32_t)(gp->header_total ? gp->header_total : gp->goroutines);
    if (gp->debug == 2)
        r->flags |= ET_AN_HAS_WAIT;
    int truncated = gp->trunc.sites > 0;
    /* Tracked sites absent from this profile had no goroutines, unless the profile folded
     * sites into its overflow bucket: then they are unknown. */
    for (int i = 0; i < ET_AN_SITES; i++)
        if (a->sites[i].key)
            a->sites[i].cnt[slot] = truncated ? ET_AN_NOCOUNT : 0;
    uint32_t ns = gp->nsites < ET_MAX_GSITES ? gp->nsites : ET_MAX_GSITES;
    /* Pass 1: sites already followed get this sample's count (and debug=2 waits) before any
     * replacement is judged, so that eviction compares current figures. */
    uint16_t fresh[ET_MAX_GSITES];
    uint32_t nfresh = 0;
    for (uint32_t i = 0; i < ns; i++) {
        const et_gsite *g = &gp->sites[i];
        if (g->overflow || g->state == ET_G_RUNTIME)
            continue;
        int k = find_site(a, site_akey(g));
        if (k < 0) {
            fresh[nfresh++] = (uint16_t)i;
            continue;
        }
        site_observe(a, &a->sites[k], g, slot, gp->debug == 2);
    }
    /* Pass 2: newcomers, largest first, compete for slots. */
    sort_sites_desc(fresh, nfresh, gp->sites);
    uint32_t untracked_before = a->untracked;
    for (uint32_t f = 0; f < nfresh; f++) {
        track_site(a, &gp->sites[fresh[f]], slot, gp->debug == 2);
    }
    /* Every site of this profile found a slot: a site that first appears next time was
     * absent now, i.e. had zero goroutines (lets growth from nothing count one step earlier). */
    if (!truncated && a->untracked == untracked_before)
        r->flags |= ET_AN_ALL_TRACKED;

    /* Deadlock candidate: see the policy at the top. */
    uint32_t blocked = 0, alive = 0, hard = 0, hard_best = 0;
    uint64_t sig = 0;
    const et_gsite *best = NULL;
    int unsure = truncated;
    for (uint32_t i = 0; i < ns && !unsure; i++) {
        const et_gsite *g = &gp->sites[i];
        if (g->overflow) {
            unsure = g->count > 0;
            continue;
        }
        if (g->state == ET_G_RUNTIME || g->stdlib_only || is_profiler(g))
            continue;
        if (parked_like(g->state)) {
            /* UNKNOWN in debug=1 is a channel/select wait (or running code): it counts as
             * blocked but never as proof, like a chan receive */
            blocked += g->count;
            sig += mix64(site_akey(g) ^ ((uint64_t)g->count * 0x9e3779b97f4a7c15ULL));
            if (is_hard_state(g->state) && !is_main_goroutine(g) && !is_allowed(&a->conf, g->user.func)) {
                hard += g->count;
                if (!best || g->count > hard_best ||
                    (g->count == hard_best && strcmp(g->user.func, best->user.func) < 0)) {
                    best = g;
                    hard_best = g->count;
                }
            }
        } else if (g->state == ET_G_IO_WAIT && is_accept_loop(g)) {
            continue;
        } else {
            alive += g->count;
        }
    }
    if (!unsure && blocked > 0 && alive == 0 && hard > 0 && best) {
        r->flags |= ET_AN_DL_CAND;
        if (a->dl_run > 0 && sig == a->dl_sig) {
            a->dl_run++;
        } else {
            a->dl_run = 1;
            a->dl_first_ms = r->t_ms;
        }
        a->dl_sig = sig;
        clear_site(&a->dl_site);
        copy_site_meta(&a->dl_site, best, &a->conf);
        a->dl_site.max_wait_min = best->max_wait_min;
        a->dl_site.waiting_count = best->waiting_count;
        a->dl_site.wait_seq = gp->debug == 2 ? a->seq + 1 : 0;
        a->dl_count = blocked;
        a->dl_site.cnt[0] = best->count;
    } else {
        a->dl_run = 0;
    }

    /* debug=2 on Go 1.26+ marks GC-proved goroutines "(leaked)": as good as goroutineleak. */
    for (uint32_t i = 0; i < ns; i++) {
        const et_gsite *g = &gp->sites[i];
        if (g->leaked_count == 0 || g->overflow)
            continue;
        int k = -1;
        uint64_t akey = site_akey(g);
        for (uint32_t j = 0; j < a->ngcproof; j++)
            if (a->gcproof[j].key == akey)
                k = (int)j;
        if (k < 0 && a->ngcproof < ET_AN_GCPROOF)
            k = (int)a->ngcproof++;
        if (k < 0)
            continue;
        et_an_gcproof *e = &a->gcproof[k];
        e->key = akey;
        e->state = g->state;
        e->count = g->leaked_count;
        e->seen_ms = r->t_ms;
        e->user = g->user;
        memcpy(e->created_by, g->created_by, ET_FUNC_MAX);
        e->created_by[ET_FUNC_MAX - 1] = 0;
        e->nstack = g->nstack < ET_STACK_MAX ? g->nstack : ET_STACK_MAX;
        for (int f = 0; f < e->nstack; f++) {
            memcpy(e->stack[f], g->stack[f], ET_FUNC_MAX);
            e->stack[f][ET_FUNC_MAX - 1] = 0;
        }
    }
}

static void ingest_leak(et_analyzer *a, const et_gprofile *lp, uint64_t t)
{
    /* The newest goroutineleak profile is the whole truth: replace the set. Keep the
     * biggest sites if there are more than fit. */
    a->ngcproof = 0;
    a->gcproof_ms = t ? t : 1;
    uint32_t ns = lp->nsites < ET_MAX_GSITES ? lp->nsites : ET_MAX_GSITES;
    for (uint32_t i = 0; i < ns; i++) {
        const et_gsite *g = &lp->sites[i];
        if (g->overflow || g->count == 0 || g->state == ET_G_RUNTIME)
            continue;
        uint32_t k = a->ngcproof;
        if (k >= ET_AN_GCPROOF) {
            uint32_t lo = 0;
            for (uint32_t j = 1; j < ET_AN_GCPROOF; j++)
                if (a->gcproof[j].count < a->gcproof[lo].count)
                    lo = j;
            if (a->gcproof[lo].count >= g->count)
                continue;
            k = lo;
        } else {
            a->ngcproof++;
        }
        et_an_gcproof *e = &a->gcproof[k];
        memset(e, 0, sizeof *e);
        e->key = site_akey(g);
        e->state = g->state;
        e->count = g->count;
        e->seen_ms = t;
        e->user = g->user;
        e->user.func[ET_FUNC_MAX - 1] = 0;
        e->user.file[ET_FILE_MAX - 1] = 0;
        memcpy(e->created_by, g->created_by, ET_FUNC_MAX);
        e->created_by[ET_FUNC_MAX - 1] = 0;
        e->nstack = g->nstack < ET_STACK_MAX ? g->nstack : ET_STACK_MAX;
        for (int f = 0; f < e->nstack; f++) {
            memcpy(e->stack[f], g->stack[f], ET_FUNC_MAX);
            e->stack[f][ET_FUNC_MAX - 1] = 0;
        }
    }
}

/* An execution trace (a few seconds) shows goroutines created during the window that parked
 * at a site and neither woke nor ended before it closed: new goroutines piling up there, not
 * a pool being reused. Evidence (ET_E_TRACE) that supports growth like a debug=2 wait does;
 * a window of seconds proves nothing on its own. */
static void ingest_trace(et_analyzer *a, const struct et_trace_summary *ts)
{
    if (ts->status != ET_TRACE_OK && ts->status != ET_TRACE_PARTIAL)
        return;
    uint32_t ng = ts->ngroups < ET_TRACE_MAX_GROUPS ? ts->ngroups : ET_TRACE_MAX_GROUPS;
    for (uint32_t i = 0; i < ng; i++) {
        const et_trace_group *g = &ts->groups[i];
        if (g->overflow || g->stdlib_only || g->go_state != ET_TG_WAITING || g->created_in_window == 0)
            continue;
        /* Short-lived goroutines at a busy site (a sleep, a request in flight) created in the
         * last moments of the window are still waiting when it closes: that is traffic. A
         * pile-up means one of them parked for at least half the window and never woke. */
        uint64_t window = ts->window_ns ? ts->window_ns : (ts->end_ns > ts->start_ns ? ts->end_ns - ts->start_ns : 0);
        if (g->oldest_ns < window / 2)
            continue;
        int k = find_site(a, frame_akey(&g->block));
        if (k < 0)
            continue;
        et_an_site *s = &a->sites[k];
        if (s->trace_seq != a->seq + 1)
            s->trace_created = 0;
        s->trace_seq = a->seq + 1;
        s->trace_created += g->created_in_window;
    }
}

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

static void ingest_heap(et_analyzer *a, const et_hprofile *hp, uint32_t slot)
{
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
            clear_hsite(&a->hsites[victim]);
            a->hsites[victim].key = h->key;
            a->hsites[victim].user = h->user;
            a->hsites[victim].user.func[ET_FUNC_MAX - 1] = 0;
            a->hsites[victim].user.file[ET_FILE_MAX - 1] = 0;
            k = victim;
        }
        a->hsites[k].inuse[slot] = scaled_inuse(hp, h);
    }
}

/* Heap-site series: only samples where a GC happened since the previous point (the profile
 * is as of the last GC; repeats of the same cycle add no information). */
static void hsite_series(const et_analyzer *a, const et_an_hsite *h, series *s)
{
    uint32_t m = win(a);
    s->n = 0;
    int have_gc = 0;
    uint32_t last_gc = 0;
    for (uint32_t i = 0; i < m; i++) {
        uint32_t sl = slot_of(a, m, i);
        const et_an_rec *r = &a->rec[sl];
        if (h->inuse[sl] == UINT64_MAX)
            continue;
        if (r->flags & ET_AN_HAS_MS) {
            if (have_gc && r->num_gc == last_gc && s->n > 0) {
                s->x[s->n - 1] = (double)h->inuse[sl]; /* same cycle: keep the latest reading */
                continue;
            }
            have_gc = 1;
            last_gc = r->num_gc;
        }
        s->t[s->n] = (double)r->t_ms;
        s->x[s->n++] = (double)h->inuse[sl];
    }
}

/* Per-GC-epoch floor of HeapInuse and NextGC. */
static int heap_epochs(const et_analyzer *a, series *floor_s, series *goal_s)
{
    uint32_t m = win(a);
    floor_s->n = goal_s->n = 0;
    int have = 0;
    uint32_t gc = 0;
    for (uint32_t i = 0; i < m; i++) {
        const et_an_rec *r = &a->rec[slot_of(a, m, i)];
        if (!(r->flags & ET_AN_HAS_MS))
            continue;
        if (!have || r->num_gc != gc) {
            have = 1;
            gc = r->num_gc;
            floor_s->t[floor_s->n] = goal_s->t[goal_s->n] = (double)r->t_ms;
            floor_s->x[floor_s->n++] = (double)r->heap_inuse;
            goal_s->x[goal_s->n++] = (double)r->next_gc;
        } else if ((double)r->heap_inuse < floor_s->x[floor_s->n - 1]) {
            floor_s->x[floor_s->n - 1] = (double)r->heap_inuse;
        }
    }
    return floor_s->n;
}

/* ---- evaluation ---- */

/* rise / bytes allocated (TotalAlloc) from the window start t0 to t1, the first sample of
 * the newest GC epoch. Not to the newest sample: the floor only moves at a GC, so counting
 * what was allocated since would make the retention decay through every epoch (and a
 * finding flap between likely and suspected until the next GC). */
static double heap_retention(const et_analyzer *a, double t0, double t1, double rise)
{
    uint32_t m = win(a);
    const et_an_rec *first = NULL, *last = NULL;
    for (uint32_t i = 0; i < m; i++) {
        const et_an_rec *r = &a->rec[slot_of(a, m, i)];
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

static void set_series_verdict(et_an_series_verdict *v, int conf1, const gresult *g, uint64_t value, uint64_t now)
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

static uint32_t site_now(const et_analyzer *a, const et_an_site *s)
{
    uint32_t c = s->cnt[(a->seq - 1) % ET_AN_WINDOW];
    return c == ET_AN_NOCOUNT ? 0 : c;
}

static int wait_recent(const et_analyzer *a, const et_an_site *s)
{
    return s->wait_seq && a->seq + 1 - s->wait_seq <= 3;
}

/* Goroutines a site gained from the first sample at or after t0 to the newest one. */
static double site_rise_since(const et_analyzer *a, const et_an_site *st, double t0)
{
    series s;
    site_series(a, st, &s);
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

static void evaluate(et_analyzer *a)
{
    float scratch[PAIRS_MAX];
    series s;
    gresult g;
    const et_an_rec *nr = newest(a);
    uint64_t now = nr ? nr->t_ms : 0;
    double ival = median_interval(a);
    gparams p;
    memset(&p, 0, sizeof p);

    /* process-wide goroutine total */
    rec_series(a, F_TOTAL, &s);
    p.min_rise = a->conf.min_total_rise;
    p.rel = a->conf.min_total_rel;
    p.tol = 0;
    p.counts = 1;
    int total_grows = growth_eval(&s, &p, &g, scratch);
    set_series_verdict(&a->v_total, total_grows ? 1 + ET_C_SUSPECTED : 0, &g, s.n ? (uint64_t)s.x[s.n - 1] : 0, now);

    /* stack in use: supports a goroutine leak */
    rec_series(a, F_STACK, &s);
    p.counts = 0;
    p.min_rise = 16 * 1024;
    p.rel = 0.05;
    p.tol = 0;
    int stack_grows = growth_eval(&s, &p, &g, scratch);
    set_series_verdict(&a->v_stack, stack_grows ? 1 + ET_C_SUSPECTED : 0, &g, s.n ? (uint64_t)s.x[s.n - 1] : 0, now);

    /* threads */
    rec_series(a, F_THREADS, &s);
    p.min_rise = a->conf.min_thread_rise;
    p.rel = a->conf.min_thread_rel;
    p.tol = 0;
    gresult gt;
    int threads_grow = growth_eval(&s, &p, &gt, scratch);
    set_series_verdict(&a->v_threads, threads_grow ? 1 + (gt.k_up >= 3 ? ET_C_LIKELY : ET_C_SUSPECTED) : 0, &gt,
                       s.n ? (uint64_t)s.x[s.n - 1] : 0, now);

    /* goroutine sites */
    double grow_t0[ET_AN_SITES], grow_rise[ET_AN_SITES]; /* growth window of this evaluation (0 = none) */
    for (int i = 0; i < ET_AN_SITES; i++) {
        et_an_site *st = &a->sites[i];
        grow_t0[i] = grow_rise[i] = 0;
        if (!st->key)
            continue;
        site_series(a, st, &s);
        p.min_rise = a->conf.min_site_rise * (st->allowed ? 2.0 : 1.0);
        p.rel = a->conf.min_site_rel;
        p.tol = 0;
        p.counts = 1;
        int grows = growth_eval(&s, &p, &g, scratch);
        uint32_t ev = 0;
        int conf1 = 0;
        uint32_t cnow = site_now(a, st);
        int sync = parked_like(st->state);
        double wait_ms = (double)st->max_wait_min * 60000.0;
        int waited = wait_recent(a, st) && st->max_wait_min >= 1 && wait_ms >= 2.0 * ival;
        int traced = st->trace_seq && a->seq + 1 - st->trace_seq <= 3 && st->trace_created > 0;
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
            /* Independent support only: StackInuse rises whenever goroutines do (in-flight
             * sleepers ramping up included), so it confirms the count, not that the
             * goroutines never leave. */
            int support = (ev & (ET_E_WAIT | ET_E_TRACE)) || (st->state == ET_G_SYSCALL && threads_grow);
            if (st->state == ET_G_SYSCALL && threads_grow)
                ev |= ET_E_PROC;
            int likely;
            if (sync && !st->allowed)
                likely = g.k_up >= 3 || (g.k_up >= 2 && (ev & (ET_E_WAIT | ET_E_TRACE)));
            else if (st->stdlib_only && st->state == ET_G_IO_WAIT)
                likely = 0; /* open connections waiting for their peer: follows load; a leak
                             * of them also shows at a user site or at the writeLoop select */
            else
                likely = g.k_up >= 4 || (g.k_up >= 3 && support);
            conf1 = 1 + (likely ? ET_C_LIKELY : ET_C_SUSPECTED);
            st->k_up = (uint16_t)g.k_up;
            st->slope_per_min = g.slope;
            if (likely && !st->grew) {
                st->grew = 1;
                st->onset_ms = (uint64_t)g.t0;
            }
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

    p.counts = 0;

    /* GC-proved entries whose goroutines are gone (restart, or a false entry): drop. */
    for (uint32_t j = 0; j < a->ngcproof;) {
        int k = find_site(a, a->gcproof[j].key);
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

    /* heap growth */
    series fl, goal;
    int ne = heap_epochs(a, &fl, &goal);
    int heap_conf1 = 0;
    gresult gh;
    a->v_heap_site = -1;
    double best_site_rise = 0;
    for (int i = 0; i < ET_AN_HSITES; i++) {
        et_an_hsite *h = &a->hsites[i];
        if (!h->key)
            continue;
        hsite_series(a, h, &s);
        p.min_rise = 512.0 * 1024;
        p.rel = 0.10;
        p.tol = 0;
        p.drawdown = 0.25;
        h->growing = (uint8_t)growth_eval(&s, &p, &g, scratch);
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
        if (growth_eval(&fl, &p, &gh, scratch)) {
            gresult gg;
            p.tol = goal.x[0] * 0.005;
            int goal_grows = growth_eval(&goal, &p, &gg, scratch);
            int site = a->v_heap_site >= 0;
            /* Retention: how much of what was allocated over the growth window stayed live.
             * A leak keeps (nearly) everything it allocates there; a heap that is merely
             * warming up or sawing (a catalog rebuilt, request garbage) frees most of it.
             * With high retention a few GC cycles are enough; otherwise the floor must have
             * risen across at least 4 GC cycles. */
            double retention = heap_retention(a, gh.t0, fl.t[fl.n - 1], gh.rise);
            /* Steadiness: a leak accumulates, so no single GC epoch carries most of the
             * rise. A working set built at once (a cache filled, a catalog rebuilt while the
             * previous generation is still referenced, a config loaded) moves the floor in
             * one jump, and that jump looks fully retained until the GC after the swap frees
             * the old copy. Until the floor has risen across 6 epochs, the largest step may
             * carry at most 2/3 of the climb. */
            double step_max = 0, step_sum = 0;
            for (int q = fl.n - gh.L + 1; q < fl.n; q++) {
                double d = fl.x[q] - fl.x[q - 1];
                if (d > 0) {
                    step_sum += d;
                    if (d > step_max)
                        step_max = d;
                }
            }
            int steady = gh.k_up >= 6 || (step_sum > 0 && step_max <= step_sum * (2.0 / 3.0));
            /* The more of what it allocated the process kept, the fewer epochs are needed. */
            int likely = (goal_grows || site) && steady &&
                         ((gh.k_up >= 2 && retention >= 0.7) || (gh.k_up >= 3 && retention >= 0.4) || gh.k_up >= 4);
            heap_conf1 = 1 + (likely ? ET_C_LIKELY : ET_C_SUSPECTED);
        }
    }
    p.drawdown = 0;
    set_series_verdict(&a->v_heap, heap_conf1, &gh, nr ? nr->heap_inuse : 0, now);

    /* RSS outside the Go runtime */
    rec_series(a, F_RSS_OUTSIDE, &s);
    int rss_conf1 = 0;
    gresult gr;
    /* growing goroutines bring stacks and runtime metadata: that is the goroutine finding */
    if (s.n >= 3 && !total_grows) {
        const et_an_rec *r0 = NULL;
        uint32_t m = win(a);
        for (uint32_t i = 0; i < m && !r0; i++) {
            const et_an_rec *r = &a->rec[slot_of(a, m, i)];
            if ((r->flags & ET_AN_HAS_PROC) && (r->flags & ET_AN_HAS_MS) && r->rss_kb)
                r0 = r;
        }
        p.min_rise = (double)a->conf.min_rss_rise_kb;
        p.rel = 0;
        p.tol = 16;
        if (r0 && a->conf.min_rss_rel * (double)r0->rss_kb > p.min_rise)
            p.min_rise = a->conf.min_rss_rel * (double)r0->rss_kb;
        if (growth_eval(&s, &p, &gr, scratch))
            rss_conf1 = 1 + (gr.k_up >= 3 ? ET_C_LIKELY : ET_C_SUSPECTED);
    }
    set_series_verdict(&a->v_rss, rss_conf1, &gr, nr ? nr->rss_kb * 1024u : 0, now);

    /* the site that grows with the threads */
    a->v_thread_site = -1;
    if (threads_grow) {
        double best = 0;
        int best_sys = 0;
        for (int i = 0; i < ET_AN_SITES; i++) {
            const et_an_site *st = &a->sites[i];
            if (!st->key)
                continue;
            site_series(a, st, &s);
            int k0 = -1;
            for (int k = 0; k < s.n; k++)
                if (s.t[k] >= gt.t0) {
                    k0 = k;
                    break;
                }
            if (k0 < 0 || s.n - k0 < 2)
                continue;
            double rise = s.x[s.n - 1] - s.x[k0];
            if (rise < 0.5 * gt.rise || rise <= 0)
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
        const et_an_rec *p = newest(a);
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
        ingest_goroutine(a, in->goroutine, slot, r);
    if (in->leak && in->leak->kind == ET_GP_GOROUTINELEAK)
        ingest_leak(a, in->leak, t);
    if (in->trace)
        ingest_trace(a, in->trace);
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
        ingest_heap(a, in->heap, slot);
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

/* ---- findings ---- */

/* Coarse state class for fingerprints, chosen so that every sampling mode agrees: debug=1
 * cannot tell a channel send from a receive, a select or running code (the runtime frames
 * that would say are not printed), so those are one class; sync primitives, IO, sleeps and
 * syscalls show as library frames in every mode. */
static const char *state_class(unsigned st)
{
    switch (st) {
    case ET_G_MUTEX:
    case ET_G_RWMUTEX_R:
    case ET_G_RWMUTEX_W:
    case ET_G_COND_WAIT:
    case ET_G_WAITGROUP:
    case ET_G_SEMACQUIRE:
        return "sync";
    case ET_G_IO_WAIT:
        return "io";
    case ET_G_SLEEP:
    case ET_G_TIMER_WAIT:
        return "sleep";
    case ET_G_SYSCALL:
        return "syscall";
    case ET_G_RUNTIME:
        return "runtime";
    default:
        return "chan";
    }
}

/* Hash a function name without generic type arguments ("pkg.F[...]" and "pkg.F[go.shape.int]"
 * print differently across releases and builds). */
static uint64_t hash_func(uint64_t h, const char *f)
{
    int depth = 0;
    for (; *f; f++) {
        if (*f == '[') {
            depth++;
            continue;
        }
        if (*f == ']' && depth > 0) {
            depth--;
            continue;
        }
        if (depth == 0)
            h = et_fnv1a(h, f, 1);
    }
    return et_fnv1a(h, "", 1);
}

/* kind + coarse state class + the site's function, generic arguments stripped. Not the
 * creating function: debug=1 and proto profiles do not carry it, and a fingerprint must not
 * change with the sampling mode (the finding still reports created_by when known). Never
 * files, lines, PCs or offsets. */
static void fingerprint(et_finding *f, const char *state_cls, const char *func)
{
    uint64_t h = et_fnv1a_str(ET_FNV_INIT, et_finding_kind_name((enum et_finding_kind)f->kind));
    h = et_fnv1a(h, "", 1);
    h = et_fnv1a_str(h, state_cls);
    h = et_fnv1a(h, "", 1);
    h = hash_func(h, func);
    et_hex64(h, f->fingerprint);
}

static et_finding *push(et_findings *out, const et_finding *f)
{
    if (out->n < ET_MAX_FINDINGS) {
        out->f[out->n] = *f;
        return &out->f[out->n++];
    }
    /* full: replace the least confident if this one beats it */
    uint32_t lo = 0;
    for (uint32_t i = 1; i < out->n; i++)
        if (out->f[i].confidence < out->f[lo].confidence)
            lo = i;
    out->dropped++;
    if (out->f[lo].confidence < f->confidence) {
        out->f[lo] = *f;
        return &out->f[lo];
    }
    return NULL;
}

static void fill_from_site(et_finding *f, const et_an_site *s)
{
    f->state = s->state;
    f->site = s->user;
    memcpy(f->created_by, s->created_by, ET_FUNC_MAX);
    f->nstack = s->nstack;
    for (int i = 0; i < s->nstack; i++)
        memcpy(f->stack[i], s->stack[i], ET_FUNC_MAX);
}

static int same_site_names(const et_an_site *s, const et_an_gcproof *g)
{
    return strcmp(s->user.func, g->user.func) == 0 &&
           (!s->created_by[0] || !g->created_by[0] || strcmp(s->created_by, g->created_by) == 0);
}

void et_analyzer_findings(const et_analyzer *a, et_findings *out)
{
    memset(out, 0, sizeof *out);
    const et_an_rec *nr = newest(a);
    uint64_t now = nr ? nr->t_ms : 0;
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
        int k = find_site(a, g->key);
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
            uint32_t c = site_now(a, s);
            if (c > f.count)
                f.count = c;
            if (s->verdict) {
                f.evidence |= s->evidence;
                f.growth_per_min = s->slope_per_min;
                if (s->first_seen_ms && s->first_seen_ms < f.first_seen_ms)
                    f.first_seen_ms = s->first_seen_ms;
            }
            if (wait_recent(a, s))
                f.oldest_wait_s = s->max_wait_min * 60.0;
        }
        fingerprint(&f, state_class(f.state), f.site.func);
        push(out, &f);
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
        fill_from_site(&f, s);
        f.count = site_now(a, s);
        f.growth_per_min = s->slope_per_min;
        if (wait_recent(a, s))
            f.oldest_wait_s = s->max_wait_min * 60.0;
        f.first_seen_ms = s->first_seen_ms;
        f.last_seen_ms = now;
        fingerprint(&f, state_class(f.state), f.site.func);
        push(out, &f);
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
        uint32_t m = win(a);
        for (int i = 0; i < ET_AN_SITES; i++) {
            const et_an_site *s = &a->sites[i];
            if (!s->key)
                continue;
            uint32_t first = ET_AN_NOCOUNT;
            for (uint32_t k = 0; k < m && first == ET_AN_NOCOUNT; k++)
                first = s->cnt[slot_of(a, m, k)];
            if (first == ET_AN_NOCOUNT)
                continue;
            double rise = (double)site_now(a, s) - first;
            if (rise > brise) {
                brise = rise;
                bi = i;
            }
        }
        if (bi >= 0)
            fill_from_site(&f, &a->sites[bi]);
        f.count = (uint32_t)a->v_total.value;
        f.growth_per_min = a->v_total.slope_per_min;
        f.first_seen_ms = a->v_total.first_seen_ms;
        f.last_seen_ms = now;
        fingerprint(&f, "total", ""); /* the named site is a hint that may change */
        push(out, &f);
    }

    /* 4. deadlock */
    if (a->dl_run >= 2) {
        const et_an_site *s = &a->dl_site;
        memset(&f, 0, sizeof f);
        f.kind = ET_F_DEADLOCK;
        f.evidence = ET_E_CLUSTER;
        int waited = s->wait_seq && a->seq + 1 - s->wait_seq <= 1 && s->max_wait_min >= 1 &&
                     s->waiting_count >= s->cnt[0];
        if (waited)
            f.evidence |= ET_E_WAIT;
        int lock = s->state == ET_G_MUTEX || s->state == ET_G_RWMUTEX_R || s->state == ET_G_RWMUTEX_W;
        f.confidence = (a->dl_run >= 3 || waited || lock) ? ET_C_LIKELY : ET_C_SUSPECTED;
        fill_from_site(&f, s);
        f.count = s->cnt[0];
        f.value = a->dl_count;
        if (s->wait_seq)
            f.oldest_wait_s = s->max_wait_min * 60.0;
        f.first_seen_ms = a->dl_first_ms;
        f.last_seen_ms = now;
        fingerprint(&f, state_class(f.state), f.site.func);
        push(out, &f);
    }

    /* 5. memory and threads: one finding per process, fingerprinted by kind only */
    if (a->v_heap.confidence1) {
        memset(&f, 0, sizeof f);
        f.kind = ET_F_HEAP_GROWTH;
        f.confidence = (uint8_t)(a->v_heap.confidence1 - 1);
        f.evidence = ET_E_MEMSTATS;
        if (a->v_heap_site >= 0) {
            f.evidence |= ET_E_HEAP_SITE;
            f.site = a->hsites[a->v_heap_site].user;
        }
        f.growth_per_min = a->v_heap.slope_per_min;
        f.value = a->v_heap.value;
        f.first_seen_ms = a->v_heap.first_seen_ms;
        f.last_seen_ms = now;
        fingerprint(&f, "heap", "");
        push(out, &f);
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
        fingerprint(&f, "rss", "");
        push(out, &f);
    }
    if (a->v_threads.confidence1) {
        memset(&f, 0, sizeof f);
        f.kind = ET_F_THREAD_LEAK;
        f.confidence = (uint8_t)(a->v_threads.confidence1 - 1);
        f.evidence = ET_E_PROC;
        if (a->v_thread_site >= 0) {
            const et_an_site *s = &a->sites[a->v_thread_site];
            fill_from_site(&f, s);
            f.count = site_now(a, s);
            if (s->verdict)
                f.evidence |= ET_E_CLUSTER;
        }
        f.growth_per_min = a->v_threads.slope_per_min;
        f.value = a->v_threads.value;
        f.first_seen_ms = a->v_threads.first_seen_ms;
        f.last_seen_ms = now;
        fingerprint(&f, "threads", "");
        push(out, &f);
    }

    /* most confident first, then most goroutines */
    for (uint32_t i = 1; i < out->n; i++) {
        et_finding tmp = out->f[i];
        uint32_t j = i;
        while (j > 0 && (out->f[j - 1].confidence < tmp.confidence ||
                         (out->f[j - 1].confidence == tmp.confidence && out->f[j - 1].count < tmp.count))) {
            out->f[j] = out->f[j - 1];
            j--;
        }
        out->f[j] = tmp;
    }
}

unsigned et_analyzer_wants_deep(const et_analyzer *a)
{
    unsigned want = 0;
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
        return 0;
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
