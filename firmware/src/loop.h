/* loop.h - the agent's single-threaded event loop (Redis ae.c style, epoll only).
 *
 * One loop owns every socket and timer in the agent: the local HTTP fetches (httpc.c), the
 * sampling timers and the CoAP/DTLS uplink. Nothing registered here may block; a callback
 * that needs to wait registers an fd or a timer and returns.
 *
 * Capacities (fd watches, timers) are fixed by et_loop_create(), which is the only call that
 * allocates. Running out is an error the caller sees (-1 / 0 id), never a realloc.
 *
 * Registering an fd obtained elsewhere -- the libcoap pattern used by uplink.c:
 *
 *     int cfd = coap_context_get_coap_fd(ctx);          // libcoap's own epoll fd
 *     et_loop_watch(loop, cfd, ET_EV_READ, on_coap_ready, ctx);
 *     et_loop_add_timer(loop, 50, 50, on_coap_tick, ctx); // or re-armed from the
 *                                                          // coap_io_prepare_epoll() value
 *     static void on_coap_ready(et_loop *l, int fd, unsigned ev, void *ud)
 *     { coap_io_process((coap_context_t *)ud, COAP_IO_NO_WAIT); }
 *     static void on_coap_tick(et_loop *l, et_timer_id id, void *ud)
 *     { coap_io_process((coap_context_t *)ud, COAP_IO_NO_WAIT); }
 *
 * An epoll fd is itself pollable: it becomes readable when any fd in its set is ready, so
 * nesting libcoap's epoll set inside ours costs one extra wakeup, no thread and no busy loop.
 * The loop never closes an fd it did not open; et_loop_unwatch() before closing it.
 *
 * Callbacks may watch/unwatch fds, add/cancel timers (including their own) and call
 * et_loop_stop() freely; a slot freed and reused during one dispatch round is never
 * delivered the stale event (watches carry a generation number). */
#ifndef ET_LOOP_H
#define ET_LOOP_H

#include <stdint.h>

typedef struct et_loop et_loop;
/* 0 is never a valid id: callers can use it as "no timer". */
typedef uint32_t et_timer_id;

enum et_loop_events {
    ET_EV_READ = 1u << 0,
    ET_EV_WRITE = 1u << 1,
    ET_EV_ERROR = 1u << 2, /* EPOLLERR / EPOLLHUP: always reported, never needs asking for */
};

/* events: the ET_EV_* bits that are ready (ET_EV_ERROR may be set with READ). */
typedef void (*et_fd_cb)(et_loop *l, int fd, unsigned events, void *ud);
typedef void (*et_timer_cb)(et_loop *l, et_timer_id id, void *ud);

/* Allocates the loop with room for max_fds watches and max_timers timers (each >= 1,
 * <= 65535). NULL on failure (errno set). */
et_loop *et_loop_create(unsigned max_fds, unsigned max_timers);
void et_loop_destroy(et_loop *l);

/* Start watching fd for `events` (READ and/or WRITE), or change the callback, mask and ud of
 * an fd already watched. 0, or -1 when full / epoll_ctl fails (errno set). */
int et_loop_watch(et_loop *l, int fd, unsigned events, et_fd_cb cb, void *ud);
/* Change only the interest mask (0 = parked: no events but still registered). */
int et_loop_set_events(et_loop *l, int fd, unsigned events);
/* Stop watching fd; no callback for it is delivered afterwards. Unknown fd: no-op. */
void et_loop_unwatch(et_loop *l, int fd);

/* Fire cb after delay_ms, then (if period_ms > 0) every period_ms. Returns 0 when the timer
 * table is full. A repeating timer that falls behind skips missed periods rather than
 * firing in a burst. */
et_timer_id et_loop_add_timer(et_loop *l, uint32_t delay_ms, uint32_t period_ms, et_timer_cb cb, void *ud);
/* Cancel a pending timer; stale or 0 ids are a no-op. Returns 1 if it was pending. */
int et_loop_cancel_timer(et_loop *l, et_timer_id id);
/* Move a pending timer's next expiry to now + delay_ms. 0, or -1 for a stale id. */
int et_loop_rearm_timer(et_loop *l, et_timer_id id, uint32_t delay_ms);

/* One round: wait at most max_wait_ms (<0: until an fd or timer is due; 0: poll), dispatch
 * ready fds, then due timers. Returns the number of callbacks run, -1 on epoll failure. */
int et_loop_run_once(et_loop *l, int max_wait_ms);
/* Runs rounds until et_loop_stop(), or until nothing is watched and no timer is pending
 * (nothing could ever wake it). Returns 0, or -1 on epoll failure. A stop requested while
 * the loop was not running is forgotten: run() clears it on entry. */
int et_loop_run(et_loop *l);
void et_loop_stop(et_loop *l);

/* The loop's monotonic clock (ms, et_now_mono_ms), refreshed every round. */
uint64_t et_loop_now(et_loop *l);
/* Introspection for tests and the status line. */
unsigned et_loop_fd_count(const et_loop *l);
unsigned et_loop_timer_count(const et_loop *l);

#endif
