/* test_config.c - the agent config parser: defaults, every section, and hostile files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[64];

static void write_conf(const char *text)
{
    snprintf(path, sizeof path, "/tmp/et-conf-%d.ini", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int load(et_config *c, const char *text, char *err)
{
    write_conf(text);
    et_config_defaults(c);
    int rc = et_config_load(c, path, 1, err, 200);
    unlink(path);
    return rc;
}

static void test_durations_and_sizes(void **st)
{
    (void)st;
    assert_int_equal(et_parse_duration_ms("30s"), 30000);
    assert_int_equal(et_parse_duration_ms("10m"), 600000);
    assert_int_equal(et_parse_duration_ms("1500ms"), 1500);
    assert_int_equal(et_parse_duration_ms("2h"), 7200000);
    assert_int_equal(et_parse_duration_ms("7"), 7000);
    assert_int_equal(et_parse_duration_ms("-3s"), -1);
    assert_int_equal(et_parse_duration_ms("3 parsecs"), -1);
    assert_int_equal(et_parse_duration_ms(""), -1);
    assert_int_equal(et_parse_duration_ms("99999999999999999999999s"), -1);
    assert_int_equal(et_parse_size("16M"), 16 << 20);
    assert_int_equal(et_parse_size("512K"), 512 << 10);
    assert_int_equal(et_parse_size("1G"), 1 << 30);
    assert_int_equal(et_parse_size("4096"), 4096);
    assert_int_equal(et_parse_size("12Q"), -1);
}

static void test_full_file(void **st)
{
    (void)st;
    et_config c;
    char err[200] = "";
    int rc = load(&c,
                  "; comment\n[agent]\ndevice_id = gw-0042\ninterval = 15s\ndeep_interval = 5m\n"
                  "allow = main.(*pool).worker\nallow = vendor.io/x.loop\nlog_level = debug\n"
                  "[spool]\ndir = /data/spool\nmax_bytes = 4M\nfsync = always\n"
                  "[uplink]\ncollector = coaps://10.0.0.1:5684\nbudget_bytes_per_day = 2M\nmax_retransmit = 8\n"
                  "pki_cert = /etc/edgetrace/gw.crt\npki_key = /etc/edgetrace/gw.key\npki_ca = /etc/edgetrace/ca.crt\n"
                  "hold_max = 10m\ndict = /etc/edgetrace/snap.dict\ncredentials_dir = /etc/edgetrace/creds\n"
                  "[target \"billing\"]\nurl = http://127.0.0.1:6060\ninterval = 10s\nprofiles = goroutine,heap\n"
                  "[target \"edge\"]\nurl = http://[::1]:7070\n",
                  err);
    assert_int_equal(rc, 0);
    assert_string_equal(c.device_id, "gw-0042");
    assert_int_equal(c.interval_ms, 15000);
    assert_int_equal(c.deep_interval_ms, 300000);
    assert_int_equal(c.nallow, 2);
    assert_string_equal(c.allow[1], "vendor.io/x.loop");
    assert_string_equal(c.spool_dir, "/data/spool");
    assert_int_equal(c.spool_max_bytes, 4 << 20);
    assert_int_equal(c.fsync_policy, ET_FSYNC_ALWAYS);
    assert_int_equal(c.budget_bytes_per_day, 2 << 20);
    assert_int_equal(c.max_retransmit, 8);
    assert_string_equal(c.pki_cert, "/etc/edgetrace/gw.crt");
    assert_string_equal(c.pki_key, "/etc/edgetrace/gw.key");
    assert_string_equal(c.pki_ca, "/etc/edgetrace/ca.crt");
    assert_int_equal(c.insecure_skip_verify, 0);
    assert_int_equal(c.hold_max_ms, 600000);
    assert_string_equal(c.dict, "/etc/edgetrace/snap.dict");
    assert_string_equal(c.credentials_dir, "/etc/edgetrace/creds");
    assert_string_equal(c.credentials, "/etc/edgetrace/credentials"); /* default, unused then */
    assert_int_equal(c.ntargets, 2);
    assert_string_equal(c.targets[0].name, "billing");
    assert_int_equal(c.targets[0].profiles, ET_P_GOROUTINE | ET_P_HEAP);
    assert_int_equal(c.targets[0].interval_ms, 10000);
    assert_string_equal(c.targets[1].url, "http://[::1]:7070");
}

static void test_rejects_bad_files(void **st)
{
    (void)st;
    et_config c;
    char err[200];
    static const char *bad[] = {
        "[agent]\ninterval = soon\n",
        "[agent]\nno_such_key = 1\n",
        "[spool]\nfsync = sometimes\n",
        "[spool]\nmax_bytes = 1K\n",
        "[target \"x\"]\nurl = ftp://host/\n",
        "[target \"x\"]\ninterval = 5s\n", /* no url */
        "[target \"x\"]\nurl = http://a\nprofiles = goroutine,cpu\n",
        "[agent\ninterval = 5s\n",
        "[mystery]\nkey = v\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        assert_int_equal(load(&c, bad[i], err), -1);
        assert_true(strlen(err) > 0);
    }
    /* an overlong value is an error, not a silent cut */
    char big[2000];
    memset(big, 'a', sizeof big);
    memcpy(big, "[agent]\ndevice_id = ", 20);
    big[sizeof big - 2] = '\n';
    big[sizeof big - 1] = 0;
    assert_int_equal(load(&c, big, err), -1);
}

/* A certificate without a CA would silently skip verifying the collector: refused, unless the
 * operator says so explicitly (the agent then warns at every start, see test_uplink.c). */
static void test_pki_without_ca_is_refused(void **st)
{
    (void)st;
    et_config c;
    char err[200] = "";
    assert_int_equal(load(&c, "[uplink]\npki_cert = /a.crt\npki_key = /a.key\n", err), -1);
    assert_non_null(strstr(err, "pki_ca"));
    assert_non_null(strstr(err, "insecure_skip_verify"));
    assert_int_equal(load(&c, "[uplink]\npki_cert = /a.crt\npki_key = /a.key\ninsecure_skip_verify = yes\n", err), 0);
    assert_int_equal(c.insecure_skip_verify, 1);
    assert_int_equal(load(&c, "[uplink]\npki_cert = /a.crt\npki_key = /a.key\ninsecure_skip_verify = no\n", err), -1);
    assert_int_equal(load(&c, "[uplink]\ninsecure_skip_verify = maybe\n", err), -1);
    /* PSK only: nothing to verify against a CA */
    assert_int_equal(load(&c, "[uplink]\ncollector = coaps://c:5684\n", err), 0);
}

static void test_missing_file(void **st)
{
    (void)st;
    et_config c;
    char err[200];
    et_config_defaults(&c);
    assert_int_equal(et_config_load(&c, "/nonexistent/agent.conf", 0, err, sizeof err), 0);
    assert_int_equal(et_config_load(&c, "/nonexistent/agent.conf", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/agent.conf"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations_and_sizes),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_rejects_bad_files),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_pki_without_ca_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
