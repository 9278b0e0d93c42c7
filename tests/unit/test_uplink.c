/* test_uplink.c - the uplink's credentials file (written by `edgetrace-collector provision`,
 * read on the device) and its refusal to start without usable settings. The protocol itself
 * is tested end to end in tests/integration/test_uplink_chain.py with the real collector. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_create_refuses_bad_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
