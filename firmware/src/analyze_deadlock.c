/* analyze_deadlock.c - the deadlock detector: every goroutine with a user frame blocked,
 * nothing able to make progress, at least one waiting on a lock (policy in analyze.c). */
#include "analyze_int.h"
#include "base.h"

#include <string.h>

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

static uint64_t mix64(uint64_t z)
{
    z ^= z >> 33;
    z *= 0xff51afd7ed558ccdULL;
    z ^= z >> 33;
    z *= 0xc4ceb9fe1a85ec53ULL;
    z ^= z >> 33;
    return z;
}

/* Observes one goroutine profile for the deadlock picture: see the policy in analyze.c. */
void an_deadlock_observe(et_analyzer *a, const et_gprofile *gp, et_an_rec *r, int truncated)
{
    uint32_t ns = gp->nsites < ET_MAX_GSITES ? gp->nsites : ET_MAX_GSITES;
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
        if (an_parked_like(g->state)) {
            /* UNKNOWN in debug=1 is a channel/select wait (or running code): it counts as
             * blocked but never as proof, like a chan receive */
            blocked += g->count;
            sig += mix64(an_site_akey(g) ^ ((uint64_t)g->count * 0x9e3779b97f4a7c15ULL));
            if (is_hard_state(g->state) && !is_main_goroutine(g) && !an_is_allowed(&a->conf, g->user.func)) {
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
        an_clear_site(&a->dl_site);
        an_copy_site_meta(&a->dl_site, best, &a->conf);
        a->dl_site.max_wait_min = best->max_wait_min;
        a->dl_site.waiting_count = best->waiting_count;
        a->dl_site.wait_seq = gp->debug == 2 ? a->seq + 1 : 0;
        a->dl_count = blocked;
        a->dl_site.cnt[0] = best->count;
    } else {
        a->dl_run = 0;
    }

}

/* The deadlock finding, once the same all-blocked picture was seen in consecutive samples. */
void an_findings_deadlock(const et_analyzer *a, et_findings *out, uint64_t now)
{
    et_finding f;
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
        an_fill_from_site(&f, s);
        f.count = s->cnt[0];
        f.value = a->dl_count;
        if (s->wait_seq)
            f.oldest_wait_s = s->max_wait_min * 60.0;
        f.first_seen_ms = a->dl_first_ms;
        f.last_seen_ms = now;
        an_fingerprint(&f, an_state_class(f.state), f.site.func);
        an_push(out, &f);
    }

}
