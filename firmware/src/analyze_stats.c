/* analyze_stats.c - the statistics behind every verdict: the growth test (see the policy
 * in analyze.c), Theil-Sen slopes and the Mann-Kendall statistic. Pure functions of a
 * series; no state. */
#include "analyze_int.h"
#include "base.h"

#include <math.h>

/* ---- statistics ---- */

static void swapf(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

/* k-th smallest of v[0..n) by quickselect (Hoare partition, middle pivot); reorders v. */
float an_select_kth(float *v, int n, int k)
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
    float hi = an_select_kth(scratch, m, m / 2);
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

double an_med3(double a, double b, double c)
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

/* The growth test described at the top of this file. 1 if the series grows. */
int an_growth_eval(const series *s, const gparams *p, gresult *r, float *scratch)
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
            base = an_med3(x[st], x[st + 1], x[st + 2]);
            rise = an_med3(x[n - 3], x[n - 2], x[n - 1]) - base;
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

