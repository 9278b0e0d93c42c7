/* analyze_history.c - the ring of compact samples per target and the series drawn from
 * it for the growth test: a site's count, the process-wide records, heap sites, GC epochs. */
#include "analyze_int.h"
#include "base.h"

#include <string.h>

/* ---- ring helpers ---- */

uint32_t an_win(const et_analyzer *a)
{
    uint32_t w = a->conf.window ? a->conf.window : ET_AN_WINDOW;
    if (w > ET_AN_WINDOW)
        w = ET_AN_WINDOW;
    return a->n < w ? a->n : w;
}

/* slot of the i-th of the last m samples (0 = oldest) */
uint32_t an_slot_of(const et_analyzer *a, uint32_t m, uint32_t i)
{
    return (a->seq - m + i) % ET_AN_WINDOW;
}

const et_an_rec *an_newest(const et_analyzer *a)
{
    return a->n ? &a->rec[(a->seq - 1) % ET_AN_WINDOW] : NULL;
}

void an_site_series(const et_analyzer *a, const et_an_site *st, series *s)
{
    uint32_t m = an_win(a);
    s->n = 0;
    for (uint32_t i = 0; i < m; i++) {
        uint32_t sl = an_slot_of(a, m, i);
        if (st->cnt[sl] == ET_AN_NOCOUNT)
            continue;
        s->t[s->n] = (double)a->rec[sl].t_ms;
        s->x[s->n++] = st->cnt[sl];
    }
}

void an_rec_series(const et_analyzer *a, enum rec_field f, series *s)
{
    uint32_t m = an_win(a);
    s->n = 0;
    for (uint32_t i = 0; i < m; i++) {
        const et_an_rec *r = &a->rec[an_slot_of(a, m, i)];
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
double an_median_interval(const et_analyzer *a)
{
    uint32_t m = an_win(a);
    float d[ET_AN_WINDOW];
    int k = 0;
    for (uint32_t i = 1; i < m; i++) {
        uint64_t t1 = a->rec[an_slot_of(a, m, i)].t_ms, t0 = a->rec[an_slot_of(a, m, i - 1)].t_ms;
        if (t1 > t0)
            d[k++] = (float)(t1 - t0);
    }
    return k ? an_select_kth(d, k, k / 2) : 0;
}

/* ---- init ---- */

void an_clear_site(et_an_site *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < ET_AN_WINDOW; i++)
        s->cnt[i] = ET_AN_NOCOUNT;
}

void an_clear_hsite(et_an_hsite *h)
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
        an_clear_site(&a->sites[i]);
    for (int i = 0; i < ET_AN_HSITES; i++)
        an_clear_hsite(&a->hsites[i]);
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

/* Heap-site series: only samples where a GC happened since the previous point (the profile
 * is as of the last GC; repeats of the same cycle add no information). */
void an_hsite_series(const et_analyzer *a, const et_an_hsite *h, series *s)
{
    uint32_t m = an_win(a);
    s->n = 0;
    int have_gc = 0;
    uint32_t last_gc = 0;
    for (uint32_t i = 0; i < m; i++) {
        uint32_t sl = an_slot_of(a, m, i);
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
int an_heap_epochs(const et_analyzer *a, series *floor_s, series *goal_s)
{
    uint32_t m = an_win(a);
    floor_s->n = goal_s->n = 0;
    int have = 0;
    uint32_t gc = 0;
    for (uint32_t i = 0; i < m; i++) {
        const et_an_rec *r = &a->rec[an_slot_of(a, m, i)];
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

/* ---- per-site figures ---- */

uint32_t an_site_now(const et_analyzer *a, const et_an_site *s)
{
    uint32_t c = s->cnt[(a->seq - 1) % ET_AN_WINDOW];
    return c == ET_AN_NOCOUNT ? 0 : c;
}

int an_wait_recent(const et_analyzer *a, const et_an_site *s)
{
    return s->wait_seq && a->seq + 1 - s->wait_seq <= 3;
}

