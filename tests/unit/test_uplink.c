/* test_uplink.c - the uplink's credentials file (written by `edgetrace-collector provision`,
 * read on the device), its refusal to start without usable settings, the answer classes, the
 * budget rule, the spool contract that moving a held record relies on, and the background
 * resolver. The protocol itself is tested end to end in tests/integration/test_uplink_chain.py
 * and test_uplink_seams.py with the real collector. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "base.h"
#include "loop.h"
#include "resolve.h"
#include "uplink.h"

static char path[64];

static int load(const char *text, et_uplink_params *p, char *err, size_t errlen)
{
    snprintf(path, sizeof(path), "/tmp/et-cred-%d.ini", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    et_uplink_params_defaults(p);
    int rc = et_uplink_load_credentials(path, p, err, errlen);
    unlink(path);
    return rc;
}

static void test_defaults(void **st)
{
    (void)st;
    et_uplink_params p;
    et_uplink_params_defaults(&p);
    assert_int_equal(p.ack_timeout_ms, 4000);
    assert_int_equal(p.max_retransmit, 6);
    assert_int_equal(p.block_size, 1024);
    assert_int_equal(p.use_cid, 1);
    assert_int_equal(p.budget_bytes_per_day, 0);
}

static void test_good_file(void **st)
{
    (void)st;
    et_uplink_params p;
    char err[200] = "";
    assert_int_equal(load("; comment\n[credentials]\ndevice_id = gw-0042\npsk = 00ff10AB\n"
                          "collector = coaps://10.0.0.1:5684\nfuture_key = ignored\n",
                          &p, err, sizeof(err)),
                     0);
    assert_string_equal(p.device_id, "gw-0042");
    assert_int_equal(p.psk_len, 4);
    const uint8_t want[4] = {0x00, 0xff, 0x10, 0xab};
    assert_memory_equal(p.psk, want, 4);
    assert_string_equal(p.collector, "coaps://10.0.0.1:5684");
}

static void test_bad_files(void **st)
{
    (void)st;
    et_uplink_params p;
    char err[200];
    const char *bad[] = {
        "[credentials]\ndevice_id = gw-1\n",                          /* no psk */
        "[credentials]\npsk = 0011\n",                                /* no device */
        "[credentials]\ndevice_id = gw-1\npsk = 001\n",               /* odd length */
        "[credentials]\ndevice_id = gw-1\npsk = zz11\n",              /* not hex */
        "[credentials]\ndevice_id = gw-1\npsk = "
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00\n", /* > 64 bytes */
        "[credentials]\ndevice_id = "
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\npsk = 00\n", /* id too long */
        "[other]\ndevice_id = gw-1\npsk = 00\n",                      /* wrong section */
        "device_id gw-1\n",                                           /* syntax */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        if (load(bad[i], &p, err, sizeof(err)) != -1)
            fail_msg("case %zu accepted", i);
        assert_true(err[0] != 0);
    }
    assert_int_equal(et_uplink_load_credentials("/nonexistent/credentials", &p, err, sizeof(err)), -1);
}

static void test_create_refuses_bad_settings(void **st)
{
    (void)st;
    et_loop *l = et_loop_create(8, 8);
    assert_non_null(l);
    et_uplink_params p;
    et_uplink_params_defaults(&p);
    char err[200];
    snprintf(p.collector, sizeof(p.collector), "http://example/");
    assert_null(et_uplink_create(l, NULL, &p, err, sizeof(err)));
    assert_non_null(strstr(err, "coaps://"));
    snprintf(p.collector, sizeof(p.collector), "coaps://127.0.0.1:5684");
    assert_null(et_uplink_create(l, NULL, &p, err, sizeof(err))); /* no key */
    assert_non_null(strstr(err, "provision"));
    et_loop_destroy(l);
}

/* Only corrupt bytes (4.00) and a schema violation in a known version (4.22) delete a record;
 * the old agent also dropped on 4.13 and 4.15, which a lowered max_body or a collector that
 * does not know the version or dictionary answers. */
static void test_answer_classes(void **st)
{
    (void)st;
    assert_int_equal(et_uplink_classify(2, 1), ET_UPLINK_ACK);
    assert_int_equal(et_uplink_classify(2, 4), ET_UPLINK_ACK);
    assert_int_equal(et_uplink_classify(4, 0), ET_UPLINK_DROP);
    assert_int_equal(et_uplink_classify(4, 22), ET_UPLINK_DROP);
    assert_int_equal(et_uplink_classify(4, 13), ET_UPLINK_HOLD);
    assert_int_equal(et_uplink_classify(4, 15), ET_UPLINK_HOLD);
    assert_int_equal(et_uplink_classify(5, 1), ET_UPLINK_HOLD);
    assert_int_equal(et_uplink_classify(4, 4), ET_UPLINK_HOLD);
    assert_int_equal(et_uplink_classify(4, 8), ET_UPLINK_RETRY);
    assert_int_equal(et_uplink_classify(4, 29), ET_UPLINK_RETRY);
    assert_int_equal(et_uplink_classify(4, 12), ET_UPLINK_HOLD);
    assert_int_equal(et_uplink_classify(4, 1), ET_UPLINK_REFUSED);
    assert_int_equal(et_uplink_classify(4, 3), ET_UPLINK_REFUSED);
    assert_int_equal(et_uplink_classify(5, 0), ET_UPLINK_RETRY);
    assert_int_equal(et_uplink_classify(5, 3), ET_UPLINK_RETRY);
    assert_int_equal(et_uplink_classify(2, 3), ET_UPLINK_RETRY);
    for (unsigned c = 0; c < 8; c++)
        for (unsigned d = 0; d < 32; d++)
            if (et_uplink_classify(c, d) == ET_UPLINK_DROP)
                assert_true(c == 4 && (d == 0 || d == 22));
}

/* A record larger than the day's limit goes as the first thing of a day instead of never. */
static void test_budget_rule(void **st)
{
    (void)st;
    assert_true(et_uplink_budget_allows(0, 0, 100000, 1024, 1u << 30)); /* unlimited */
    assert_true(et_uplink_budget_allows(10000, 0, 1000, 1024, 0));
    assert_true(et_uplink_budget_allows(10000, 0, 1000, 1024, 6000));
    assert_false(et_uplink_budget_allows(10000, 0, 1000, 1024, 7000));       /* routine: 3/4 */
    assert_true(et_uplink_budget_allows(10000, SPOOL_F_FINDING, 1000, 1024, 7000)); /* findings: all */
    /* 20 KB against a 10 KB budget: never fits, so it goes when nothing was sent today */
    assert_true(et_uplink_budget_allows(10000, 0, 20000, 1024, 0));
    assert_false(et_uplink_budget_allows(10000, 0, 20000, 1024, 1));
    assert_true(et_uplink_budget_allows(10000, SPOOL_F_FINDING, 20000, 1024, 0));
}

/* When a silent established session gets a fresh handshake beside it (issue 11: a node died or
 * the collector restarted): early enough for 15 s with the default timers, later for bodies of
 * several blocks, doubling per probe, and never once libcoap's own schedule would end first. */
static void test_stall_bound(void **st)
{
    (void)st;
    et_uplink_params p;
    et_uplink_params_defaults(&p);
    /* 4 s x 1.5 (the latest first retransmission) + 4 s for its answer */
    assert_int_equal(et_uplink_stall_ms(&p, 200, 0), 10000);
    assert_int_equal(et_uplink_stall_ms(&p, 1024, 0), 10000);
    assert_int_equal(et_uplink_stall_ms(&p, 0, 0), 10000);      /* a check-in */
    assert_int_equal(et_uplink_stall_ms(&p, 1025, 0), 14000);   /* two blocks */
    assert_int_equal(et_uplink_stall_ms(&p, 3000, 1), 36000);   /* three blocks, one probe made */
    assert_int_equal(et_uplink_stall_ms(&p, 200, 5), 320000);
    /* MAX_TRANSMIT_SPAN is 4 s x 63 x 1.5 = 378 s: past it libcoap gives up first */
    assert_int_equal(et_uplink_stall_ms(&p, 200, 6), 0);
    assert_int_equal(et_uplink_stall_ms(&p, 200, 1000), 0);
    p.max_retransmit = 2; /* span 4 x 3 x 1.5 = 18 s */
    assert_int_equal(et_uplink_stall_ms(&p, 200, 0), 10000);
    assert_int_equal(et_uplink_stall_ms(&p, 200, 1), 0);
    p.max_retransmit = 0;
    assert_int_equal(et_uplink_stall_ms(&p, 200, 0), 0);
    et_uplink_params_defaults(&p);
    p.ack_timeout_ms = 1000;
    p.ack_random_factor_milli = 1000;
    assert_int_equal(et_uplink_stall_ms(&p, 200, 0), 2000);
    p.ack_timeout_ms = 0;
    assert_int_equal(et_uplink_stall_ms(&p, 200, 0), 0);
}

static void test_pki_without_ca(void **st)
{
    (void)st;
    et_uplink_params p;
    et_uplink_params_defaults(&p);
    char err[200] = "";
    assert_int_equal(et_uplink_check_pki(&p, err, sizeof(err)), 0); /* PSK */
    snprintf(p.pki_cert, sizeof(p.pki_cert), "/gw.crt");
    snprintf(p.pki_key, sizeof(p.pki_key), "/gw.key");
    assert_int_equal(et_uplink_check_pki(&p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "insecure_skip_verify"));
    p.insecure_skip_verify = 1;
    assert_int_equal(et_uplink_check_pki(&p, err, sizeof(err)), 0);
    p.insecure_skip_verify = 0;
    snprintf(p.pki_ca, sizeof(p.pki_ca), "/ca.crt");
    assert_int_equal(et_uplink_check_pki(&p, err, sizeof(err)), 0);
    /* create refuses too (the push command has no config file to stop it) */
    et_loop *l = et_loop_create(8, 8);
    p.pki_ca[0] = 0;
    snprintf(p.collector, sizeof(p.collector), "coaps://127.0.0.1:5684");
    assert_null(et_uplink_create(l, NULL, &p, err, sizeof(err)));
    assert_non_null(strstr(err, "pki_ca"));
    et_loop_destroy(l);
}

/* Moving a held record behind the others is "append a copy, sync, ack": this relies on
 * spool_ack acking the record spool_peek returned (the older copy), not the new one. */
static void test_spool_move_to_back(void **st)
{
    (void)st;
    char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/et-uplink-spool-%d", (int)getpid());
    spool_params sp = {.dir = dir, .max_bytes = 1 << 20, .fsync_policy = SPOOL_FSYNC_ALWAYS};
    char err[160];
    spool *s = spool_open(&sp, err, sizeof(err));
    assert_non_null(s);
    uint8_t a[SPOOL_ID_LEN], b[SPOOL_ID_LEN], buf[64];
    memset(a, 0xaa, sizeof(a));
    memset(b, 0xbb, sizeof(b));
    assert_int_equal(spool_append(s, SPOOL_F_FINDING, a, "held", 4), 0);
    assert_int_equal(spool_append(s, 0, b, "next", 4), 0);
    spool_rec r;
    assert_int_equal(spool_peek(s, &r, buf, sizeof(buf)), 4);
    assert_memory_equal(r.id, a, SPOOL_ID_LEN);
    assert_int_equal(spool_append(s, 0, a, "held", 4), 0); /* the copy, demoted to routine */
    assert_int_equal(spool_sync(s), 0);
    assert_int_equal(spool_ack(s, a), 0);
    assert_int_equal(spool_peek(s, &r, buf, sizeof(buf)), 4);
    assert_memory_equal(r.id, b, SPOOL_ID_LEN); /* the next one goes first */
    assert_int_equal(spool_ack(s, b), 0);
    assert_int_equal(spool_peek(s, &r, buf, sizeof(buf)), 4);
    assert_memory_equal(r.id, a, SPOOL_ID_LEN); /* the held one is still there, once */
    assert_memory_equal(buf, "held", 4);
    assert_int_equal(spool_ack(s, a), 0);
    assert_int_equal(spool_peek(s, &r, buf, sizeof(buf)), 0);
    spool_close(s);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* The resolver answers from the loop: a numeric address at once, a name through the child,
 * an unresolvable name with an error after at most the timeout, never blocking the loop. */
typedef struct res_result {
    int calls, ok;
    char addr[64];
    char err[120];
} res_result;

static void on_res(void *ud, int ok, const struct sockaddr *sa, socklen_t len, const char *err)
{
    (void)len;
    res_result *r = ud;
    r->calls++;
    r->ok = ok;
    et_strlcpy(r->err, err, sizeof(r->err));
    if (ok == 0 && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->addr, sizeof(r->addr));
}

static void test_resolver(void **st)
{
    (void)st;
    et_loop *l = et_loop_create(8, 8);
    res_result rr = {0};
    et_resolver *r = et_resolver_create(l, on_res, &rr);
    assert_non_null(r);
    assert_int_equal(et_resolver_start(r, "127.0.0.7", 5684, 2000), 0);
    assert_int_equal(rr.calls, 1); /* numeric: inline */
    assert_int_equal(rr.ok, 0);
    assert_string_equal(rr.addr, "127.0.0.7");
    assert_false(et_resolver_busy(r));

    memset(&rr, 0, sizeof(rr));
    assert_int_equal(et_resolver_start(r, "localhost", 5684, 5000), 0);
    assert_true(et_resolver_busy(r));
    assert_int_equal(et_resolver_start(r, "localhost", 5684, 5000), -1); /* one at a time */
    assert_int_equal(rr.calls, 0);                                       /* not inline */
    for (int i = 0; i < 600 && !rr.calls; i++)
        et_loop_run_once(l, 10);
    assert_int_equal(rr.calls, 1);
    assert_int_equal(rr.ok, 0);

    memset(&rr, 0, sizeof(rr));
    assert_int_equal(et_resolver_start(r, "no-such-host.invalid", 5684, 3000), 0);
    uint64_t t0 = (uint64_t)et_now_mono_ms(), longest = 0;
    for (int i = 0; i < 2000 && !rr.calls; i++) {
        uint64_t a = (uint64_t)et_now_mono_ms();
        et_loop_run_once(l, 10);
        uint64_t d = (uint64_t)et_now_mono_ms() - a;
        longest = d > longest ? d : longest;
    }
    assert_int_equal(rr.calls, 1);
    assert_int_equal(rr.ok, -1);
    assert_true(rr.err[0] != 0);
    assert_true((uint64_t)et_now_mono_ms() - t0 < 4000);
    assert_true(longest < 500); /* the loop kept turning */
    et_resolver_destroy(r);
    et_loop_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_create_refuses_bad_settings),
        cmocka_unit_test(test_answer_classes),
        cmocka_unit_test(test_budget_rule),
        cmocka_unit_test(test_stall_bound),
        cmocka_unit_test(test_pki_without_ca),
        cmocka_unit_test(test_spool_move_to_back),
        cmocka_unit_test(test_resolver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
