/* test_spool_stall.c - a slow SD card must not stall the event loop: with every fsync and
 * fdatasync taking 200 ms, CoAP retransmissions and HTTP timeouts still fire within 10% of
 * their deadlines while the spool appends, acks, rotates segments and saves its state.
 *
 * How the card is slowed: through the spool's VFS (spool_io.h), a wrapper around the POSIX
 * calls that sleeps 200 ms in fsync/fdatasync. Not an LD_PRELOAD shim: the agent is a static
 * musl binary (LD_PRELOAD never reaches it), and this way the same test also runs
 * cross-built under qemu. It drives the real parts in one loop, as the agent does: the
 * uplink (libcoap) posting to a UDP peer that never answers, so it retransmits (ACK_TIMEOUT
 * 1 s, random factor 1: deadlines at 1 s and 3 s); the HTTP client against a TCP peer that
 * accepts and never answers (idle timeout 1 s, back to back); and a spool under load (a 1 KB
 * record every 300 ms, acks, small segments, acks persisted every 4) with fsync = batch.
 * Datagram arrival times are taken by a thread blocked in recvfrom, independent of the loop.
 * The longest loop stall (a 10 ms timer's worst lateness) is printed.
 * ET_STALL_INLINE=1 runs the spool's sync job on the loop's thread (the old behaviour): the
 * test then fails, which shows it can. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base.h"
#include "httpc.h"
#include "loop.h"
#include "spool.h"
#include "spool_io.h"
#include "uplink.h"

#define SLOW_MS 200
#define ACK_TIMEOUT_MS 1000
#define HTTP_TIMEOUT_MS 1000

static const spool_vfs *real;
static int slow_fsync(void *ctx, int fd)
{
    usleep(SLOW_MS * 1000);
    return real->fsync(ctx, fd);
}
static int slow_fdatasync(void *ctx, int fd)
{
    usleep(SLOW_MS * 1000);
    return real->fdatasync(ctx, fd);
}

/* ---- the silent CoAP peer: a thread records when each datagram arrives ---- */
static int udp_fd;
static uint64_t arrivals[16];
static uint16_t arrival_mid[16];
static volatile int narrivals;

static void *udp_listener(void *arg)
{
    (void)arg;
    uint8_t buf[2048];
    while (narrivals < 16) {
        ssize_t n = recv(udp_fd, buf, sizeof buf, 0);
        if (n < 0)
            break; /* closed by the test */
        if (n >= 4) {
            arrival_mid[narrivals] = (uint16_t)(buf[2] << 8 | buf[3]);
            arrivals[narrivals] = et_now_mono_ms();
            narrivals++;
        }
    }
    return NULL;
}

/* ---- the silent HTTP peer: the kernel accepts, nobody reads ---- */
static int http_port;
static et_httpc *http;
static uint64_t http_started;
static long http_worst_late = -1000000, http_done;

static void http_start(void);
static void http_finished(void *ud, const et_http_result *r)
{
    (void)ud;
    if (r->err == ET_HTTP_ECANCELED)
        return; /* the test is over */
    long late = (long)(et_now_mono_ms() - http_started) - HTTP_TIMEOUT_MS;
    assert_int_equal(r->err, ET_HTTP_EIDLE);
    if (late > http_worst_late)
        http_worst_late = late;
    http_done++;
    http_start();
}

static void http_start(void)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/debug/pprof/", http_port);
    et_http_opts o;
    et_http_opts_default(&o);
    o.idle_timeout_ms = HTTP_TIMEOUT_MS;
    http_started = et_now_mono_ms();
    assert_true(et_http_get(http, url, &o, NULL, http_finished, NULL) > 0);
}

/* ---- the spool under load ---- */
static spool *busy;
static uint32_t produced;
static void on_produce(et_loop *l, et_timer_id id, void *ud)
{
    (void)l, (void)id, (void)ud;
    uint8_t rec[1024], sid[SPOOL_ID_LEN];
    memset(rec, (int)produced, sizeof rec);
    memset(sid, 0, sizeof sid);
    memcpy(sid, &produced, sizeof produced);
    produced++;
    uint64_t t0 = et_now_mono_ms();
    assert_int_equal(spool_append(busy, 0, sid, rec, sizeof rec), 0);
    if (getenv("ET_STALL_DEBUG"))
        fprintf(stderr, "append %llu ms\n", (unsigned long long)(et_now_mono_ms() - t0));
    t0 = et_now_mono_ms();
    spool_stats st;
    spool_get_stats(busy, &st);
    if (st.pending_routine > 2) {
        static uint8_t buf[2048];
        spool_rec r;
        assert_true(spool_peek(busy, &r, buf, sizeof buf) > 0);
        assert_int_equal(spool_ack(busy, r.id), 0);
    }
    if (getenv("ET_STALL_DEBUG"))
        fprintf(stderr, "ack %llu ms\n", (unsigned long long)(et_now_mono_ms() - t0));
}

static spool *quiet;
static void on_tick(et_loop *l, et_timer_id id, void *ud)
{
    (void)l, (void)id, (void)ud;
    uint64_t t0 = et_now_mono_ms();
    assert_int_equal(spool_tick(busy), 0);
    spool_tick(quiet);
    if (getenv("ET_STALL_DEBUG"))
        fprintf(stderr, "tick %llu ms\n", (unsigned long long)(et_now_mono_ms() - t0));
}

static uint64_t last_beat;
static long worst_stall;
static void on_beat(et_loop *l, et_timer_id id, void *ud)
{
    (void)l, (void)id, (void)ud;
    uint64_t now = et_now_mono_ms();
    if (last_beat && (long)(now - last_beat) - 10 > worst_stall)
        worst_stall = (long)(now - last_beat) - 10;
    last_beat = now;
}

static void rm_rf(const char *d)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static void test_slow_fsync_does_not_stall_the_loop(void **state)
{
    (void)state;
    real = spool_vfs_posix();
    spool_vfs slow = *real;
    slow.fsync = slow_fsync;
    slow.fdatasync = slow_fdatasync;
    if (getenv("ET_STALL_INLINE"))
        slow.threads = 0;

    char dir[] = "/tmp/et-stall-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char dbusy[64], dquiet[64], err[256];
    snprintf(dbusy, sizeof dbusy, "%s/busy", dir);
    snprintf(dquiet, sizeof dquiet, "%s/uplink", dir);
    spool_params pb = {.dir = dbusy, .fsync_policy = SPOOL_FSYNC_BATCH, .segment_bytes = 8192, .max_bytes = 1 << 20,
                       .ack_persist_every = 4, .vfs = &slow};
    spool_params pq = {.dir = dquiet, .fsync_policy = SPOOL_FSYNC_BATCH, .vfs = &slow};
    busy = spool_open(&pb, err, sizeof err);
    assert_non_null(busy);
    quiet = spool_open(&pq, err, sizeof err);
    assert_non_null(quiet);
    uint8_t one[200], oid[SPOOL_ID_LEN];
    memset(one, 0x42, sizeof one);
    memset(oid, 0x17, sizeof oid);
    assert_int_equal(spool_append(quiet, 0, oid, one, sizeof one), 0);

    /* peers */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(udp_fd >= 0);
    assert_int_equal(bind(udp_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(udp_fd, (struct sockaddr *)&sa, &sl), 0);
    int coap_port = ntohs(sa.sin_port);
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_port = 0;
    assert_int_equal(bind(tcp, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(tcp, 16), 0);
    sl = sizeof sa;
    assert_int_equal(getsockname(tcp, (struct sockaddr *)&sa, &sl), 0);
    http_port = ntohs(sa.sin_port);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, udp_listener, NULL), 0);

    et_loop *loop = et_loop_create(32, 32);
    assert_non_null(loop);
    http = et_httpc_create(loop, 2);
    assert_non_null(http);
    et_uplink_params up;
    et_uplink_params_defaults(&up);
    snprintf(up.collector, sizeof up.collector, "coap://127.0.0.1:%d", coap_port);
    snprintf(up.device_id, sizeof up.device_id, "gw-stall");
    up.ack_timeout_ms = ACK_TIMEOUT_MS;
    up.ack_random_factor_milli = 1000; /* deterministic deadlines: 1 s, then 2 s */
    up.max_retransmit = 2;
    up.backoff_min_ms = up.backoff_max_ms = 60000;
    up.answer_timeout_ms = 60000;
    up.use_cid = 0;
    et_uplink *u = et_uplink_create(loop, quiet, &up, err, sizeof err);
    if (!u)
        fail_msg("uplink: %s", err);
    assert_true(et_loop_add_timer(loop, 0, 300, on_produce, NULL) != 0);
    assert_true(et_loop_add_timer(loop, 100, 100, on_tick, NULL) != 0);
    assert_true(et_loop_add_timer(loop, 10, 10, on_beat, NULL) != 0);
    http_start();
    et_uplink_kick(u);

    uint64_t end = et_now_mono_ms() + 3600;
    while (et_now_mono_ms() < end)
        assert_true(et_loop_run_once(loop, 50) >= 0);

    spool_stats st;
    spool_get_stats(busy, &st);
    shutdown(udp_fd, SHUT_RDWR);
    close(udp_fd);
    pthread_join(th, NULL);
    et_uplink_destroy(u);
    et_httpc_destroy(http);
    et_loop_destroy(loop);
    spool_close(busy);
    spool_close(quiet);
    close(tcp);
    rm_rf(dir);

    printf("slow fsync (%d ms each): longest loop stall %ld ms; %d CoAP datagrams", SLOW_MS, worst_stall,
           (int)narrivals);
    for (int i = 1; i < narrivals; i++)
        printf(" %+ld ms", (long)(arrivals[i] - arrivals[i - 1]));
    printf("; %ld HTTP timeouts, worst %+ld ms late; spool: %llu appended, %llu state saves, %llu bytes written\n",
           http_done, http_worst_late, (unsigned long long)produced, (unsigned long long)st.state_saves,
           (unsigned long long)st.bytes_written_total);

    /* CoAP: the first send and two retransmissions of the same message, 1 s then 2 s apart */
    assert_true(narrivals >= 3);
    assert_int_equal(arrival_mid[1], arrival_mid[0]);
    assert_int_equal(arrival_mid[2], arrival_mid[0]);
    long g1 = (long)(arrivals[1] - arrivals[0]), g2 = (long)(arrivals[2] - arrivals[1]);
    assert_true(g1 >= ACK_TIMEOUT_MS - 20 && g1 <= ACK_TIMEOUT_MS * 11 / 10);
    assert_true(g2 >= 2 * ACK_TIMEOUT_MS - 20 && g2 <= 2 * ACK_TIMEOUT_MS * 11 / 10);
    /* HTTP: every idle timeout fired within 10% of its deadline */
    assert_true(http_done >= 2);
    assert_true(http_worst_late <= HTTP_TIMEOUT_MS / 10);
    /* and nothing else waited that long either */
    assert_true(worst_stall < ACK_TIMEOUT_MS / 10);
    /* the spool really was busy: batches, state saves and segment turnover */
    assert_true(produced >= 10);
    assert_true(st.state_saves >= 2);
}

int main(void)
{
    et_log_level = ET_LOG_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_fsync_does_not_stall_the_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
