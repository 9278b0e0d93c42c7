/* analyze_survivors.c - survivor evidence: which goroutines at a site stayed between two
 * debug=2 dumps, and whether any of them woke in between.
 *
 * Why: a slow leak (one goroutine lost per failed request, a few per minute) cannot clear the
 * count test's in-flight noise bar (k*sqrt(level)) for many intervals, yet its goroutines
 * behave unlike in-flight ones from the first minute on:
 *   - goroutine ids are never reused, so the lowest ids at a site are its oldest goroutines;
 *     in-flight goroutines turn over (their ids leave), leaked ones stay;
 *   - the runtime stamps a parked goroutine's wait clock (g.waitsince) at the first GC that
 *     sees it parked and clears it whenever the goroutine runs (execute()), and debug=2
 *     prints the minutes since. The sampler forces a GC right before every debug=2 dump
 *     (heap?gc=1 first), so a later dump tells a goroutine that never woke since (its wait
 *     covers the span) from a pool worker that took work and parked again at the same site
 *     (its wait restarted).
 * A site whose reference goroutines are all still there, none woke, and which gained more
 * meanwhile is leaking at any rate. A pool that grows while it is used wakes its workers;
 * slow requests end. Both fail the test.
 *
 * Memory: the ids live in each tracked site (ET_GSITE_IDS of them); the per-dump merge uses
 * about 5 KiB of stack. */
#include "analyze_int.h"
#include "base.h"

#include <string.h>

/* Merges the ascending list (bid, bw, bn) into (ids, waits, *n), keeping the
 * ET_GSITE_IDS lowest ids in ascending order (several profile sites can fold into one
 * tracked site). */
static void merge_ids(uint64_t *ids, uint32_t *waits, uint32_t *n, const uint64_t *bid, const uint32_t *bw, uint32_t bn)
{
    uint64_t oi[ET_GSITE_IDS];
    uint32_t ow[ET_GSITE_IDS];
    uint32_t i = 0, j = 0, k = 0;
    while (k < ET_GSITE_IDS && (i < *n || j < bn)) {
        if (j >= bn || (i < *n && ids[i] <= bid[j])) {
            if (j < bn && i < *n && ids[i] == bid[j])
                j++; /* the same goroutine cannot be at two sites; keep one copy anyway */
            oi[k] = ids[i];
            ow[k++] = waits[i++];
        } else {
            oi[k] = bid[j];
            ow[k++] = bw[j++];
        }
    }
    memcpy(ids, oi, k * sizeof oi[0]);
    memcpy(waits, ow, k * sizeof ow[0]);
    *n = k;
}

/* One tracked site's comparison with its reference, then the reference moves on. */
static void compare(et_analyzer *a, et_an_site *st, const uint64_t *ids, const uint32_t *waits, uint32_t n,
                    uint32_t count_now, uint64_t t_ms)
{
    st->oldest_id = n ? ids[0] : 0;
    st->stayed = 0;
    if (st->ref_seq && st->ref_n > 0) {
        uint64_t elapsed = t_ms > st->ref_t_ms ? t_ms - st->ref_t_ms : 0;
        /* minutes a goroutine parked since the reference's GC must print by now */
        uint32_t need = (uint32_t)(elapsed / 60000u);
        uint32_t surv = 0, woke = 0, i = 0, j = 0;
        while (i < st->ref_n && j < n) {
            if (st->ref_ids[i] == ids[j]) {
                surv++;
                if (waits[j] < need)
                    woke++;
                i++;
                j++;
            } else if (st->ref_ids[i] < ids[j]) {
                i++; /* left the site: ended, or moved on */
            } else {
                j++;
            }
        }
        st->survivors = surv;
        st->surv_of = st->ref_n;
        st->surv_seq = a->seq + 1;
        st->stayed = (uint8_t)(st->ref_n > 0 && surv == st->ref_n && woke == 0 && need >= 1 &&
                               count_now >= st->ref_count + 2);
        et_debug("survivors %s: %u of %u stayed over %llu ms (need %u min, %u woke), count %u -> %u%s", st->user.func,
                 surv, st->ref_n, (unsigned long long)elapsed, need, woke, st->ref_count, count_now,
                 st->stayed ? ": stayed" : "");
        if (need < 1)
            return; /* too close to the reference to see a wake: keep comparing against it */
    }
    st->ref_n = (uint8_t)n;
    memcpy(st->ref_ids, ids, n * sizeof ids[0]);
    st->ref_count = count_now;
    st->ref_seq = a->seq + 1;
    st->ref_t_ms = t_ms;
}

void an_survivors_observe(et_analyzer *a, const et_gprofile *gp, uint32_t slot, uint64_t t_ms)
{
    if (gp->debug != 2 || gp->trunc.sites > 0 || gp->input_cut)
        return; /* ids of folded or cut-off goroutines are unknown: no verdict from this dump */
    uint64_t ids[ET_AN_SITES][ET_GSITE_IDS];
    uint32_t waits[ET_AN_SITES][ET_GSITE_IDS];
    uint32_t n[ET_AN_SITES];
    uint32_t hist[ET_AN_SITES][ET_WAIT_BUCKETS];
    memset(n, 0, sizeof n);
    memset(hist, 0, sizeof hist);
    uint32_t ns = gp->nsites < ET_MAX_GSITES ? gp->nsites : ET_MAX_GSITES;
    for (uint32_t i = 0; i < ns; i++) {
        const et_gsite *g = &gp->sites[i];
        if (g->overflow || g->state == ET_G_RUNTIME)
            continue;
        int k = an_find_site(a, an_site_akey(g));
        if (k < 0)
            continue;
        uint32_t gn = g->nids < ET_GSITE_IDS ? g->nids : ET_GSITE_IDS;
        if (gn)
            a->d2_usable_seq = a->seq + 1; /* this target's dumps carry ids to compare */
        merge_ids(ids[k], waits[k], &n[k], g->ids, g->id_wait_min, gn);
        for (int b = 0; b < ET_WAIT_BUCKETS; b++)
            hist[k][b] += g->wait_hist[b];
    }
    for (int k = 0; k < ET_AN_SITES; k++) {
        et_an_site *st = &a->sites[k];
        if (!st->key)
            continue;
        uint32_t c = st->cnt[slot];
        memcpy(st->wait_hist, hist[k], sizeof st->wait_hist);
        compare(a, st, ids[k], waits[k], n[k], c == ET_AN_NOCOUNT ? 0 : c, t_ms);
    }
}

/* A quiet, sync-blocked service site filling up: its count rose at every sample of its
 * latest run, by 2 or more, from no more than it gained. The cheap profile's hint that a
 * reference dump is worth its stop-the-world; busy in-flight sites (high base) and
 * infrastructure never qualify. */
int an_survivor_candidate(const et_analyzer *a, const et_an_site *st)
{
    if (!st->key || st->allowed || st->stdlib_only || !an_parked_like(st->state) || st->state == ET_G_UNKNOWN)
        return 0;
    series s;
    an_site_series(a, st, &s);
    if (s.n < 2)
        return 0;
    int k = s.n - 1;
    while (k > 0 && s.x[k] > s.x[k - 1])
        k--;
    double rise = s.x[s.n - 1] - s.x[k];
    return k < s.n - 1 && rise >= 2 && s.x[k] <= rise;
}

int an_survivors_fresh(const et_analyzer *a, const et_an_site *st)
{
    return st->stayed && st->surv_seq && a->seq + 1 - st->surv_seq <= 4;
}
