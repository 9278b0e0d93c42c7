/* test_loop.c - the event loop: timer order, repeating timers, cancellation from callbacks,
 * fd readiness through a pipe, stale-event suppression, capacity limits. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <coap3/coap.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base.h"
#include "loop.h"

static int order[16];
static int norder;

static void rec_timer(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    order[norder++] = (int)(intptr_t)ud;
}

static void test_timer_order(void **state)
{
    (void)state;
    et_loop *l = et_loop_create(4, 8);
    assert_non_null(l);
    norder = 0;
    uint64_t t0 = et_now_mono_ms(); /* before the adds: each timer is due >= t0 + delay */
    assert_true(et_loop_add_timer(l, 30, 0, rec_timer, (void *)3) != 0);
    assert_true(et_loop_add_timer(l, 10, 0, rec_timer, (void *)1) != 0);
    assert_true(et_loop_add_timer(l, 20, 0, rec_timer, (void *)2) != 0);
    et_timer_id gone = et_loop_add_timer(l, 15, 0, rec_timer, (void *)9);
    assert_int_equal(et_loop_cancel_timer(l, gone), 1);
    assert_int_equal(et_loop_cancel_timer(l, gone), 0); /* stale id: no-op */
    assert_int_equal(et_loop_run(l), 0); /* returns when nothing is left */
    uint64_t took = et_now_mono_ms() - t0;
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 3);
    if (!(took >= 30 && took < 1000))
        print_message("took %llu ms\n", (unsigned long long)took);
    assert_true(took >= 30 && took < 1000);
    assert_int_equal(et_loop_timer_count(l), 0);
    et_loop_destroy(l);
}

struct rep {
    int fired;
    et_timer_id other;
};

static void rep_cb(et_loop *l, et_timer_id id, void *ud)
{
    struct rep *r = ud;
    if (++r->fired == 3) {
        assert_int_equal(et_loop_cancel_timer(l, id), 1); /* cancel itself from inside */
        et_loop_stop(l);
    }
}

static void test_repeating_and_self_cancel(void **state)
{
    (void)state;
    et_loop *l = et_loop_create(4, 4);
    struct rep r = { 0, 0 };
    assert_true(et_loop_add_timer(l, 5, 5, rep_cb, &r) != 0);
    assert_int_equal(et_loop_run(l), 0);
    assert_int_equal(r.fired, 3);
    assert_int_equal(et_loop_timer_count(l), 0);
    et_loop_destroy(l);
}

static void test_timer_capacity(void **state)
{
    (void)state;
    et_loop *l = et_loop_create(1, 3);
    et_timer_id a = et_loop_add_timer(l, 1000, 0, rec_timer, NULL);
    et_timer_id b = et_loop_add_timer(l, 1000, 0, rec_timer, NULL);
    et_timer_id c = et_loop_add_timer(l, 1000, 0, rec_timer, NULL);
    assert_true(a && b && c);
    assert_int_equal(et_loop_add_timer(l, 1000, 0, rec_timer, NULL), 0); /* full, no growth */
    assert_int_equal(et_loop_cancel_timer(l, b), 1);
    et_timer_id d = et_loop_add_timer(l, 1000, 0, rec_timer, NULL);
    assert_true(d != 0 && d != b); /* reused slot, new generation */
    assert_int_equal(et_loop_cancel_timer(l, b), 0);
    assert_int_equal(et_loop_rearm_timer(l, b, 5), -1);
    assert_int_equal(et_loop_rearm_timer(l, d, 1), 0);
    norder = 0;
    et_loop_run_once(l, 100);
    if (norder == 0)
        et_loop_run_once(l, 100);
    assert_int_equal(norder, 1); /* only the rearmed one */
    et_loop_destroy(l);
}

/* Heap order under a scatter of inserts and cancels. */
static void test_heap_many(void **state)
{
    (void)state;
    enum { N = 40 };
    et_loop *l = et_loop_create(1, N);
    et_timer_id ids[N];
    static int seen[64];
    norder = 0;
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < N; i++)
        ids[i] = et_loop_add_timer(l, (uint32_t)((i * 7) % N) * 5u, 0, rec_timer, (void *)(intptr_t)((i * 7) % N));
    for (int i = 0; i < N; i += 3)
        et_loop_cancel_timer(l, ids[i]);
    /* record into a bigger buffer */
    int last = -1, count = 0;
    while (et_loop_timer_count(l) > 0) {
        norder = 0;
        et_loop_run_once(l, -1);
        for (int k = 0; k < norder; k++) {
            assert_true(order[k] >= last);
            last = order[k];
            count++;
        }
    }
    assert_int_equal(count, N - (N + 2) / 3);
    et_loop_destroy(l);
}

struct pipe_ctx {
    int fds_a[2], fds_b[2];
    int reads;
    int b_called;
};

static void on_a(et_loop *l, int fd, unsigned ev, void *ud)
{
    struct pipe_ctx *p = ud;
    char c;
    assert_true(ev & ET_EV_READ);
    assert_int_equal(read(fd, &c, 1), 1);
    p->reads++;
    /* Unwatch the other ready fd: its event in this same batch must not be delivered. */
    et_loop_unwatch(l, p->fds_b[0]);
    et_loop_unwatch(l, fd);
}

static void on_b(et_loop *l, int fd, unsigned ev, void *ud)
{
    struct pipe_ctx *p = ud;
    char c;
    (void)l;
    (void)ev;
    if (read(fd, &c, 1) == 1)
        p->b_called++;
    et_loop_unwatch(l, p->fds_a[0]);
    et_loop_unwatch(l, fd);
}

static void test_fd_events_and_stale(void **state)
{
    (void)state;
    et_loop *l = et_loop_create(4, 2);
    struct pipe_ctx p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(pipe(p.fds_a), 0);
    assert_int_equal(pipe(p.fds_b), 0);
    assert_int_equal(et_loop_watch(l, p.fds_a[0], ET_EV_READ, on_a, &p), 0);
    assert_int_equal(et_loop_watch(l, p.fds_b[0], ET_EV_READ, on_b, &p), 0);
    assert_int_equal(et_loop_fd_count(l), 2);
    assert_int_equal(write(p.fds_a[1], "x", 1), 1);
    assert_int_equal(write(p.fds_b[1], "y", 1), 1);
    int ran = et_loop_run_once(l, 100);
    /* Exactly one of the two callbacks ran; it unwatched the other. */
    assert_int_equal(ran, 1);
    assert_int_equal(p.reads + p.b_called, 1);
    assert_int_equal(et_loop_fd_count(l), 0);
    /* Nothing watched, nothing pending: run_once(0) returns immediately with 0. */
    assert_int_equal(et_loop_run_once(l, 0), 0);
    /* Write interest on a pipe's write end fires at once. */
    assert_int_equal(et_loop_watch(l, p.fds_a[1], ET_EV_WRITE, on_a, &p), 0);
    assert_int_equal(et_loop_set_events(l, p.fds_a[1], 0), 0); /* parked */
    assert_int_equal(et_loop_run_once(l, 10), 0);
    et_loop_unwatch(l, p.fds_a[1]);
    et_loop_unwatch(l, 12345); /* unknown: no-op */
    assert_int_equal(et_loop_set_events(l, 12345, ET_EV_READ), -1);
    for (int i = 0; i < 2; i++) {
        close(p.fds_a[i]);
        close(p.fds_b[i]);
    }
    et_loop_destroy(l);
}

static void noop_fd(et_loop *l, int fd, unsigned ev, void *ud)
{
    (void)l;
    (void)fd;
    (void)ev;
    (void)ud;
}

/* An fd closed without unwatch whose number is reused: watching it again must work. */
static int reused_hits;
static void on_reused(et_loop *l, int fd, unsigned ev, void *ud)
{
    (void)l;
    (void)ud;
    char c;
    if ((ev & ET_EV_READ) && read(fd, &c, 1) == 1)
        reused_hits++;
}

static void test_fd_number_reuse(void **state)
{
    (void)state;
    et_loop *l = et_loop_create(4, 1);
    int p1[2], p2[2];
    assert_int_equal(pipe(p1), 0);
    assert_int_equal(et_loop_watch(l, p1[0], ET_EV_READ, on_reused, NULL), 0);
    int num = p1[0];
    close(p1[0]); /* forgot to unwatch */
    close(p1[1]);
    assert_int_equal(pipe(p2), 0);
    assert_int_equal(p2[0], num); /* lowest free number comes back */
    assert_int_equal(et_loop_watch(l, p2[0], ET_EV_READ, on_reused, NULL), 0);
    assert_int_equal(write(p2[1], "z", 1), 1);
    reused_hits = 0;
    et_loop_run_once(l, 200);
    assert_int_equal(reused_hits, 1);
    et_loop_unwatch(l, p2[0]);
    close(p2[0]);
    close(p2[1]);
    et_loop_destroy(l);
}

static void test_fd_capacity(void **state)
{
    (void)state;
    et_loop *l = et_loop_create(2, 1);
    int p1[2], p2[2], p3[2];
    assert_int_equal(pipe(p1), 0);
    assert_int_equal(pipe(p2), 0);
    assert_int_equal(pipe(p3), 0);
    assert_int_equal(et_loop_watch(l, p1[0], ET_EV_READ, noop_fd, NULL), 0);
    assert_int_equal(et_loop_watch(l, p2[0], ET_EV_READ, noop_fd, NULL), 0);
    assert_int_equal(et_loop_watch(l, p3[0], ET_EV_READ, noop_fd, NULL), -1);
    assert_int_equal(errno, ENOSPC);
    /* Re-watching a known fd modifies it and needs no new slot. */
    assert_int_equal(et_loop_watch(l, p2[0], ET_EV_READ | ET_EV_WRITE, noop_fd, NULL), 0);
    assert_int_equal(et_loop_fd_count(l), 2);
    assert_null(et_loop_create(0, 1));
    assert_null(et_loop_create(1, 70000));
    int all[] = { p1[0], p1[1], p2[0], p2[1], p3[0], p3[1] };
    for (unsigned i = 0; i < 6; i++)
        close(all[i]);
    et_loop_destroy(l);
}

/* A zero-delay timer that re-adds itself must not spin one round forever. */
static int spins;
static void respawn(et_loop *l, et_timer_id id, void *ud)
{
    (void)id;
    (void)ud;
    spins++;
    et_loop_add_timer(l, 0, 0, respawn, NULL);
}

static void test_zero_delay_respawn_bounded(void **state)
{
    (void)state;
    et_loop *l = et_loop_create(1, 2);
    spins = 0;
    et_loop_add_timer(l, 0, 0, respawn, NULL);
    et_loop_run_once(l, 0);
    assert_int_equal(spins, 1);
    et_loop_run_once(l, 0);
    assert_int_equal(spins, 2);
    et_loop_destroy(l);
}

/* ---- The uplink's pattern (loop.h): libcoap's own epoll fd nested in our loop ----
 * A real libcoap client context sends a CON GET to a plain UDP socket that this loop also
 * serves; the reply wakes libcoap's epoll fd inside our epoll set, the callback runs
 * coap_io_process(ctx, COAP_IO_NO_WAIT) and libcoap delivers the response. No thread, no
 * blocking call. */
struct coap_case {
    coap_context_t *ctx;
    int udp;
    int got_request, got_response, ticks;
    char payload[16];
};
static struct coap_case *cc_now;

static coap_response_t on_coap_response(coap_session_t *s, const coap_pdu_t *sent, const coap_pdu_t *rcvd,
                                        const coap_mid_t mid)
{
    (void)s;
    (void)sent;
    (void)mid;
    size_t len;
    const uint8_t *data;
    if (coap_get_data(rcvd, &len, &data) && len < sizeof(cc_now->payload)) {
        memcpy(cc_now->payload, data, len);
        cc_now->payload[len] = 0;
    }
    cc_now->got_response = (coap_pdu_get_code(rcvd) == COAP_RESPONSE_CODE(205));
    return COAP_RESPONSE_OK;
}

static void on_coap_fd(et_loop *l, int fd, unsigned ev, void *ud)
{
    (void)fd;
    (void)ev;
    struct coap_case *c = ud;
    coap_io_process(c->ctx, COAP_IO_NO_WAIT);
    if (c->got_response)
        et_loop_stop(l);
}

static void on_coap_tick(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    struct coap_case *c = ud;
    c->ticks++;
    coap_io_process(c->ctx, COAP_IO_NO_WAIT); /* retransmits and timeouts live here */
}

/* The "collector": answers a CON request with a piggybacked 2.05 ACK, built by hand. */
static void on_udp(et_loop *l, int fd, unsigned ev, void *ud)
{
    (void)l;
    (void)ev;
    struct coap_case *c = ud;
    uint8_t in[512], out[64];
    struct sockaddr_in from;
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(fd, in, sizeof(in), 0, (struct sockaddr *)&from, &fl);
    if (n < 4 || (in[0] >> 6) != 1)
        return;
    unsigned tkl = in[0] & 0x0f;
    if ((size_t)n < 4 + tkl || tkl > 8)
        return;
    c->got_request++;
    size_t o = 0;
    out[o++] = (uint8_t)(0x40 | (2 << 4) | tkl); /* ver 1, ACK */
    out[o++] = 0x45;                               /* 2.05 Content */
    out[o++] = in[2];                              /* same message id */
    out[o++] = in[3];
    memcpy(out + o, in + 4, tkl);                  /* same token */
    o += tkl;
    out[o++] = 0xff;
    memcpy(out + o, "pong", 4);
    o += 4;
    sendto(fd, out, o, 0, (struct sockaddr *)&from, fl);
}

static void test_libcoap_epoll_fd_nested(void **state)
{
    (void)state;
    struct coap_case c;
    memset(&c, 0, sizeof(c));
    cc_now = &c;
    coap_startup();
    coap_set_log_level(COAP_LOG_WARN);
    c.ctx = coap_new_context(NULL);
    assert_non_null(c.ctx);
    int cfd = coap_context_get_coap_fd(c.ctx);
    if (cfd < 0) {
        coap_free_context(c.ctx);
        coap_cleanup();
        skip(); /* libcoap built without epoll */
        return;
    }
    c.udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(c.udp, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    getsockname(c.udp, (struct sockaddr *)&a, &al);

    et_loop *l = et_loop_create(4, 4);
    assert_int_equal(et_loop_watch(l, cfd, ET_EV_READ, on_coap_fd, &c), 0);
    assert_int_equal(et_loop_watch(l, c.udp, ET_EV_READ, on_udp, &c), 0);
    assert_true(et_loop_add_timer(l, 50, 50, on_coap_tick, &c) != 0);

    coap_address_t dst;
    coap_address_init(&dst);
    dst.size = sizeof(struct sockaddr_in);
    dst.addr.sin = a;
    coap_session_t *sess = coap_new_client_session(c.ctx, NULL, &dst, COAP_PROTO_UDP);
    assert_non_null(sess);
    coap_register_response_handler(c.ctx, on_coap_response);
    coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, coap_new_message_id(sess),
                                    coap_session_max_pdu_size(sess));
    assert_non_null(pdu);
    uint8_t tok[8];
    size_t tl;
    coap_session_new_token(sess, &tl, tok);
    coap_add_token(pdu, tl, tok);
    coap_add_option(pdu, COAP_OPTION_URI_PATH, 4, (const uint8_t *)"ping");
    assert_true(coap_send(sess, pdu) != COAP_INVALID_MID);

    uint64_t t0 = et_now_mono_ms();
    while (!c.got_response && et_now_mono_ms() - t0 < 5000)
        et_loop_run_once(l, 100);
    assert_int_equal(c.got_request, 1);
    assert_int_equal(c.got_response, 1);
    assert_string_equal(c.payload, "pong");

    et_loop_unwatch(l, cfd);
    et_loop_unwatch(l, c.udp);
    close(c.udp);
    coap_session_release(sess);
    coap_free_context(c.ctx);
    coap_cleanup();
    et_loop_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_order),
        cmocka_unit_test(test_repeating_and_self_cancel),
        cmocka_unit_test(test_timer_capacity),
        cmocka_unit_test(test_heap_many),
        cmocka_unit_test(test_fd_events_and_stale),
        cmocka_unit_test(test_fd_capacity),
        cmocka_unit_test(test_fd_number_reuse),
        cmocka_unit_test(test_zero_delay_respawn_bounded),
        cmocka_unit_test(test_libcoap_epoll_fd_nested),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
