/* analyze_sites.c - follows up to ET_AN_SITES goroutine sites across samples with bounded
 * replacement, and folds goroutine, goroutineleak and trace evidence into them. */
#include "analyze_int.h"
#include "base.h"
#include "trace.h"

#include <string.h>

/* ---- goroutine sites: tracking with bounded replacement ---- */

int an_find_site(const et_analyzer *a, uint64_t key)
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
    uint32_t m = an_win(a), lo = UINT32_MAX;
    for (uint32_t i = (m > 4 ? m - 4 : 0); i < m; i++) {
        uint32_t c = s->cnt[an_slot_of(a, m, i)];
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

uint64_t an_site_akey(const et_gsite *g)
{
    return frame_akey(&g->user);
}

/* States in which goroutines can pile up for ever at one site. UNKNOWN is what debug=1
 * gives for channel and select waits (their runtime frames are not printed), and running
 * code cannot accumulate at a site, so it counts as parked here. */
int an_parked_like(unsigned st)
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

void an_copy_site_meta(et_an_site *d, const et_gsite *g, const et_analyze_conf *c)
{
    d->key = an_site_akey(g);
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
    d->allowed = (uint8_t)(g->stdlib_only || an_is_allowed(c, d->user.func));
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
    uint64_t akey = an_site_akey(g);
    int have = an_find_site(a, akey);
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
    an_clear_site(s);
    an_copy_site_meta(s, g, &a->conf);
    s->tracked_seq = a->seq;
    site_observe(a, s, g, slot, debug2);
    if (a->n > 0) {
        uint32_t prev = (a->seq - 1) % ET_AN_WINDOW;
        if (a->rec[prev].flags & ET_AN_ALL_TRACKED)
            s->cnt[prev] = 0;
    }
    return victim;
}

void an_ingest_goroutine(et_analyzer *a, const et_gprofile *gp, uint32_t slot, et_an_rec *r)
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
        int k = an_find_site(a, an_site_akey(g));
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

    an_deadlock_observe(a, gp, r, truncated);

    /* debug=2 on Go 1.26+ marks GC-proved goroutines "(leaked)": as good as goroutineleak. */
    for (uint32_t i = 0; i < ns; i++) {
        const et_gsite *g = &gp->sites[i];
        if (g->leaked_count == 0 || g->overflow)
            continue;
        int k = -1;
        uint64_t akey = an_site_akey(g);
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

void an_ingest_leak(et_analyzer *a, const et_gprofile *lp, uint64_t t)
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
        e->key = an_site_akey(g);
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
void an_ingest_trace(et_analyzer *a, const struct et_trace_summary *ts)
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
        int k = an_find_site(a, frame_akey(&g->block));
        if (k < 0)
            continue;
        et_an_site *s = &a->sites[k];
        if (s->trace_seq != a->seq + 1)
            s->trace_created = 0;
        s->trace_seq = a->seq + 1;
        s->trace_created += g->created_in_window;
    }
}

