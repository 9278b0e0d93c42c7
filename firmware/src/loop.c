/* loop.c - epoll event loop with fixed-capacity fd watches and a min-heap of timers.
 *
 * Why a generation number on each watch: epoll_wait hands back a batch; a callback early in the
 * batch may unwatch another fd and a later callback may watch a new fd that lands in the same
 * slot. The event's data carries (slot, generation) so a stale event is dropped, not delivered
 * to the newcomer. Timers use the same trick in their ids. */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base.h"

#define ET_LOOP_BATCH 32

typedef struct fd_slot {
    int fd;             /* -1 when free */
    unsigned events;
    uint32_t gen;
    et_fd_cb cb;
    void *ud;
} fd_slot;

typedef struct timer_slot {
    uint64_t due;
    uint32_t period;
    uint16_t gen;       /* never 0 once used, so id != 0 */
    int32_t heap_pos;   /* -1 when free */
    et_timer_cb cb;
    void *ud;
} timer_slot;

struct et_loop {
    int epfd;
    int stop;
    uint64_t now;
    unsigned max_fds, nfds;
    fd_slot *fds;
    unsigned max_timers, ntimers;
    timer_slot *timers;
    uint16_t *heap;     /* timer slot indices ordered by due */
    uint16_t *free_timers;
    unsigned nfree_timers;
};

/* ---------------------------------------------------------------- timers (min-heap) */

static int timer_less(const et_loop *l, uint16_t a, uint16_t b)
{
    return l->timers[a].due < l->timers[b].due;
}

static void heap_set(et_loop *l, unsigned pos, uint16_t slot)
{
    l->heap[pos] = slot;
    l->timers[slot].heap_pos = (int32_t)pos;
}

static void heap_up(et_loop *l, unsigned pos)
{
    uint16_t s = l->heap[pos];
    while (pos > 0) {
        unsigned parent = (pos - 1) / 2;
        if (!timer_less(l, s, l->heap[parent]))
            break;
        heap_set(l, pos, l->heap[parent]);
        pos = parent;
    }
    heap_set(l, pos, s);
}

static void heap_down(et_loop *l, unsigned pos)
{
    uint16_t s = l->heap[pos];
    for (;;) {
        unsigned c = 2 * pos + 1;
        if (c >= l->ntimers)
            break;
        if (c + 1 < l->ntimers && timer_less(l, l->heap[c + 1], l->heap[c]))
            c++;
        if (!timer_less(l, l->heap[c], s))
            break;
        heap_set(l, pos, l->heap[c]);
        pos = c;
    }
    heap_set(l, pos, s);
}

static void heap_remove(et_loop *l, unsigned pos)
{
    uint16_t gone = l->heap[pos];
    l->ntimers--;
    if (pos != l->ntimers) {
        uint16_t moved = l->heap[l->ntimers];
        heap_set(l, pos, moved);
        heap_down(l, pos);
        heap_up(l, (unsigned)l->timers[moved].heap_pos);
    }
    l->timers[gone].heap_pos = -1;
}

static et_timer_id make_tid(uint16_t slot, uint16_t gen)
{
    return ((uint32_t)gen << 16) | (uint32_t)(slot + 1u);
}

/* Returns the slot of a live timer id, or -1. */
static int tid_slot(const et_loop *l, et_timer_id id)
{
    uint32_t s = (id & 0xffffu);
    if (s == 0 || s > l->max_timers)
        return -1;
    s--;
    if (l->timers[s].heap_pos < 0 || l->timers[s].gen != (uint16_t)(id >> 16))
        return -1;
    return (int)s;
}

static void timer_free_slot(et_loop *l, uint16_t slot)
{
    l->free_timers[l->nfree_timers++] = slot;
}

/* ---------------------------------------------------------------- lifecycle */

et_loop *et_loop_create(unsigned max_fds, unsigned max_timers)
{
    if (max_fds == 0 || max_fds > 65535 || max_timers == 0 || max_timers > 65535) {
        errno = EINVAL;
        return NULL;
    }
    et_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->fds = calloc(max_fds, sizeof(*l->fds));
    l->timers = calloc(max_timers, sizeof(*l->timers));
    l->heap = calloc(max_timers, sizeof(*l->heap));
    l->free_timers = calloc(max_timers, sizeof(*l->free_timers));
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!l->fds || !l->timers || !l->heap || !l->free_timers || l->epfd < 0) {
        int e = errno;
        if (l->epfd >= 0)
            close(l->epfd);
        free(l->fds);
        free(l->timers);
        free(l->heap);
        free(l->free_timers);
        free(l);
        errno = e ? e : ENOMEM;
        return NULL;
    }
    l->max_fds = max_fds;
    l->max_timers = max_timers;
    for (unsigned i = 0; i < max_fds; i++)
        l->fds[i].fd = -1;
    /* Hand out low slots first (pushed last, popped first): easier to read in a debugger. */
    for (unsigned i = 0; i < max_timers; i++) {
        l->timers[i].heap_pos = -1;
        l->free_timers[i] = (uint16_t)(max_timers - 1 - i);
    }
    l->nfree_timers = max_timers;
    l->now = et_now_mono_ms();
    return l;
}

void et_loop_destroy(et_loop *l)
{
    if (!l)
        return;
    close(l->epfd);
    free(l->fds);
    free(l->timers);
    free(l->heap);
    free(l->free_timers);
    free(l);
}

uint64_t et_loop_now(et_loop *l)
{
    return l->now;
}

unsigned et_loop_fd_count(const et_loop *l)
{
    return l->nfds;
}

unsigned et_loop_timer_count(const et_loop *l)
{
    return l->ntimers;
}

void et_loop_stop(et_loop *l)
{
    l->stop = 1;
}

/* ---------------------------------------------------------------- fd watches */

static int find_fd(const et_loop *l, int fd)
{
    /* Linear: the agent watches a handful of fds (targets in flight + uplink), and a scan of
     * a few dozen slots is cheaper than maintaining a second index keyed by fd number. */
    for (unsigned i = 0; i < l->max_fds; i++)
        if (l->fds[i].fd == fd)
            return (int)i;
    return -1;
}

static uint32_t to_epoll(unsigned ev)
{
    uint32_t e = 0;
    if (ev & ET_EV_READ)
        e |= EPOLLIN | EPOLLRDHUP;
    if (ev & ET_EV_WRITE)
        e |= EPOLLOUT;
    return e;
}

static int epoll_update(et_loop *l, int op, unsigned slot)
{
    struct epoll_event ee;
    memset(&ee, 0, sizeof(ee));
    ee.events = to_epoll(l->fds[slot].events);
    ee.data.u64 = ((uint64_t)l->fds[slot].gen << 32) | slot;
    return epoll_ctl(l->epfd, op, l->fds[slot].fd, &ee);
}

int et_loop_watch(et_loop *l, int fd, unsigned events, et_fd_cb cb, void *ud)
{
    if (fd < 0 || !cb) {
        errno = EINVAL;
        return -1;
    }
    int s = find_fd(l, fd);
    if (s >= 0) {
        fd_slot *f = &l->fds[s];
        f->cb = cb;
        f->ud = ud;
        f->events = events;
        if (epoll_update(l, EPOLL_CTL_MOD, (unsigned)s) == 0)
            return 0;
        /* The caller closed the fd without unwatching and the number came back from a new
         * open(): epoll dropped the old one, so register it afresh. */
        if (errno != ENOENT)
            return -1;
        return epoll_update(l, EPOLL_CTL_ADD, (unsigned)s);
    }
    s = find_fd(l, -1);
    if (s < 0) {
        errno = ENOSPC;
        return -1;
    }
    fd_slot *f = &l->fds[s];
    f->fd = fd;
    f->events = events;
    f->cb = cb;
    f->ud = ud;
    f->gen++;
    if (epoll_update(l, EPOLL_CTL_ADD, (unsigned)s) < 0) {
        f->fd = -1;
        return -1;
    }
    l->nfds++;
    return 0;
}

int et_loop_set_events(et_loop *l, int fd, unsigned events)
{
    int s = find_fd(l, fd);
    if (s < 0) {
        errno = ENOENT;
        return -1;
    }
    if (l->fds[s].events == events)
        return 0;
    l->fds[s].events = events;
    return epoll_update(l, EPOLL_CTL_MOD, (unsigned)s);
}

void et_loop_unwatch(et_loop *l, int fd)
{
    int s = find_fd(l, fd);
    if (s < 0)
        return;
    /* The fd may already be closed by the caller; epoll drops closed fds by itself, so an
     * EBADF here is expected and harmless. */
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    l->fds[s].fd = -1;
    l->fds[s].cb = NULL;
    l->fds[s].gen++;
    l->nfds--;
}

/* ---------------------------------------------------------------- timers */

et_timer_id et_loop_add_timer(et_loop *l, uint32_t delay_ms, uint32_t period_ms, et_timer_cb cb, void *ud)
{
    if (!cb || l->nfree_timers == 0)
        return 0;
    uint16_t slot = l->free_timers[--l->nfree_timers];
    timer_slot *t = &l->timers[slot];
    t->gen++;
    if (t->gen == 0)
        t->gen = 1;
    /* Schedule from the real clock, not the round's cached `now`: a timer added after a long
     * callback must not fire early. */
    t->due = et_now_mono_ms() + delay_ms;
    t->period = period_ms;
    t->cb = cb;
    t->ud = ud;
    unsigned pos = l->ntimers++;
    heap_set(l, pos, slot);
    heap_up(l, pos);
    return make_tid(slot, t->gen);
}

int et_loop_cancel_timer(et_loop *l, et_timer_id id)
{
    int s = tid_slot(l, id);
    if (s < 0)
        return 0;
    heap_remove(l, (unsigned)l->timers[s].heap_pos);
    timer_free_slot(l, (uint16_t)s);
    return 1;
}

int et_loop_rearm_timer(et_loop *l, et_timer_id id, uint32_t delay_ms)
{
    int s = tid_slot(l, id);
    if (s < 0)
        return -1;
    timer_slot *t = &l->timers[s];
    t->due = et_now_mono_ms() + delay_ms;
    unsigned pos = (unsigned)t->heap_pos;
    heap_up(l, pos);
    heap_down(l, (unsigned)t->heap_pos);
    return 0;
}

/* Runs the timers due at l->now. Bounded by the number pending when it starts, so a callback
 * that adds a zero-delay timer cannot keep this round alive forever. */
static int run_timers(et_loop *l)
{
    int ran = 0;
    unsigned budget = l->ntimers;
    while (budget-- > 0 && l->ntimers > 0) {
        uint16_t slot = l->heap[0];
        timer_slot *t = &l->timers[slot];
        if (t->due > l->now)
            break;
        et_timer_id id = make_tid(slot, t->gen);
        et_timer_cb cb = t->cb;
        void *ud = t->ud;
        if (t->period > 0) {
            /* Reschedule before the callback so it may cancel or rearm itself. */
            uint64_t next = t->due + t->period;
            if (next <= l->now)
                next = l->now + t->period;
            t->due = next;
            heap_down(l, 0);
        } else {
            heap_remove(l, 0);
            timer_free_slot(l, slot);
        }
        cb(l, id, ud);
        ran++;
        if (l->stop)
            break;
    }
    return ran;
}

/* ---------------------------------------------------------------- running */

int et_loop_run_once(et_loop *l, int max_wait_ms)
{
    struct epoll_event evs[ET_LOOP_BATCH];
    l->now = et_now_mono_ms();
    int wait = max_wait_ms;
    if (l->ntimers > 0) {
        uint64_t due = l->timers[l->heap[0]].due;
        uint64_t d = due > l->now ? due - l->now : 0;
        if (d > 0x7fffffffu)
            d = 0x7fffffffu;
        if (wait < 0 || (uint64_t)wait > d)
            wait = (int)d;
    }
    int n = epoll_wait(l->epfd, evs, ET_LOOP_BATCH, wait);
    if (n < 0) {
        if (errno != EINTR)
            return -1;
        n = 0;
    }
    l->now = et_now_mono_ms();
    int ran = 0;
    for (int i = 0; i < n; i++) {
        unsigned slot = (unsigned)(evs[i].data.u64 & 0xffffffffu);
        uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
        if (slot >= l->max_fds)
            continue;
        fd_slot *f = &l->fds[slot];
        if (f->fd < 0 || f->gen != gen)
            continue; /* unwatched earlier in this batch */
        unsigned ev = 0;
        uint32_t e = evs[i].events;
        if (e & (EPOLLIN | EPOLLRDHUP))
            ev |= ET_EV_READ;
        if (e & EPOLLOUT)
            ev |= ET_EV_WRITE;
        if (e & (EPOLLERR | EPOLLHUP))
            ev |= ET_EV_ERROR;
        f->cb(l, f->fd, ev, f->ud);
        ran++;
        if (l->stop)
            return ran;
    }
    l->now = et_now_mono_ms();
    ran += run_timers(l);
    return ran;
}

int et_loop_run(et_loop *l)
{
    l->stop = 0;
    while (!l->stop) {
        if (l->nfds == 0 && l->ntimers == 0)
            break; /* nothing could ever wake us */
        if (et_loop_run_once(l, -1) < 0)
            return -1;
    }
    l->stop = 0;
    return 0;
}
