/* test_settings.c - central settings: the wire document (wire/settings.h) and its strict
 * decoder, the command document carrying it, snapshot key 18 (schema 3), and the agent's
 * merge (settings_apply.h): the config parser's own rules, pinned keys, the allow list, a
 * refused set keeping the old one, and the set kept across a restart. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "command.h"
#include "config.h"
#include "settings.h"
#include "settings_apply.h"
#include "settings_file.h"
#include "snapshot.h"
#include "spool.h"

static void add(et_settings *s, const char *name, const char *value)
{
    snprintf(s->e[s->n].name, sizeof s->e[0].name, "%s", name);
    snprintf(s->e[s->n].value, sizeof s->e[0].value, "%s", value);
    s->n++;
}

static size_t encode(const et_settings *s, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    char err[160];
    if (et_settings_encode(s, buf, cap, &n, err, sizeof err))
        fail_msg("encode: %s", err);
    return n;
}

static void test_round_trip_and_command_document(void **st)
{
    (void)st;
    static et_settings s, back;
    memset(&s, 0, sizeof s);
    s.fleet_version = 3;
    s.device_version = 7;
    add(&s, "agent.interval", "10s");
    add(&s, "agent.allow", "main.(*pool).worker");
    add(&s, "agent.allow", "net/http.(*conn).serve");
    add(&s, "target.billing.profiles", "goroutine,heap");
    add(&s, "uplink.budget_bytes_per_day", "2M");
    uint8_t buf[ET_SET_DOC_MAX];
    size_t n = encode(&s, buf, sizeof buf);
    char err[160];
    assert_int_equal(et_settings_decode(buf, n, &back, err, sizeof err), 0);
    assert_memory_equal(&s, &back, sizeof s);
    /* inside the command document (key 2), with no commands */
    static et_cmd_list l, lb;
    memset(&l, 0, sizeof l);
    memcpy(l.settings, buf, n);
    l.settings_len = n;
    uint8_t doc[ET_CMD_DOC_MAX];
    size_t dn = 0;
    assert_int_equal(et_cmd_encode(&l, doc, sizeof doc, &dn, err, sizeof err), 0);
    assert_int_equal(et_cmd_decode(doc, dn, &lb, err, sizeof err), 0);
    assert_int_equal(lb.n, 0);
    assert_int_equal(lb.settings_len, n);
    assert_memory_equal(lb.settings, buf, n);
}

static void expect_refused(const uint8_t *b, size_t n, const char *why)
{
    static et_settings s;
    char err[160] = "";
    assert_int_equal(et_settings_decode(b, n, &s, err, sizeof err), -1);
    assert_int_equal(s.n, 0);
    if (!strstr(err, why))
        fail_msg("reason '%s' does not mention '%s'", err, why);
}

static void test_strict(void **st)
{
    (void)st;
    /* {0:1, 1:1, 2:1, 3:[["agent.device_id","x"]]}: not settable from afar */
    const uint8_t idk[] = {0xa4, 0, 1, 1, 1, 2, 1, 3, 0x81, 0x82, 0x6f, 'a', 'g', 'e', 'n', 't', '.', 'd', 'e', 'v',
                           'i', 'c', 'e', '_', 'i', 'd', 0x61, 'x'};
    expect_refused(idk, sizeof idk, "cannot be set centrally");
    /* the same name twice (only agent.allow repeats) */
    static et_settings s;
    memset(&s, 0, sizeof s);
    add(&s, "agent.interval", "1s");
    add(&s, "agent.interval", "2s");
    uint8_t buf[ET_SET_DOC_MAX];
    size_t n = 0;
    char err[160];
    assert_int_equal(et_settings_encode(&s, buf, sizeof buf, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "twice"));
    /* missing key 3 */
    const uint8_t miss[] = {0xa3, 0, 1, 1, 1, 2, 1};
    expect_refused(miss, sizeof miss, "required");
    /* unknown key 4 */
    const uint8_t unk[] = {0xa5, 0, 1, 1, 1, 2, 1, 3, 0x80, 4, 0};
    expect_refused(unk, sizeof unk, "unknown key 4");
    /* a later document version */
    const uint8_t ver[] = {0xa4, 0, 2, 1, 1, 2, 1, 3, 0x80};
    expect_refused(ver, sizeof ver, "version 2");
    /* an entry that is not a pair */
    const uint8_t pair[] = {0xa4, 0, 1, 1, 1, 2, 1, 3, 0x81, 0x81, 0x61, 'a'};
    expect_refused(pair, sizeof pair, "[name, value]");
    /* trailing byte, and nothing at all */
    const uint8_t trail[] = {0xa4, 0, 1, 1, 1, 2, 1, 3, 0x80, 0};
    expect_refused(trail, sizeof trail, "CBOR");
    expect_refused(trail, 0, "0 bytes");
    /* a target name that would break out of [target "NAME"] */
    char sec[80], key[32];
    assert_int_equal(et_settings_split("target.a\"b.interval", sec, sizeof sec, key, sizeof key, err, sizeof err), -1);
    assert_int_equal(et_settings_split("target.billing.interval", sec, sizeof sec, key, sizeof key, err, sizeof err), 0);
    assert_string_equal(sec, "target \"billing\"");
    assert_string_equal(key, "interval");
}

static void test_snapshot_key_18(void **st)
{
    (void)st;
    et_snapshot *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    et_snapshot_init(a);
    memset(a->id, 1, sizeof a->id);
    snprintf(a->device_id, sizeof a->device_id, "gw");
    snprintf(a->service, sizeof a->service, "svc");
    a->set_fleet = 2;
    a->set_device = 5;
    a->set_rej_device = 6;
    snprintf(a->set_reason, sizeof a->set_reason, "agent.interval: bad duration");
    static uint8_t cb[4096];
    size_t cn = 0;
    char err[160];
    /* schema 1 and 2 never carry it (their collectors refuse unknown keys) */
    a->schema = 2;
    assert_int_equal(et_snapshot_encode_cbor(a, cb, sizeof cb, &cn, err, sizeof err), 0);
    assert_int_equal(et_snapshot_decode_cbor(cb, cn, b, err, sizeof err), ET_WIRE_OK);
    assert_true(b->set_fleet == 0 && b->set_reason[0] == 0);
    a->schema = 3;
    assert_int_equal(et_snapshot_encode_cbor(a, cb, sizeof cb, &cn, err, sizeof err), 0);
    assert_int_equal(et_snapshot_decode_cbor(cb, cn, b, err, sizeof err), ET_WIRE_OK);
    assert_int_equal(b->schema, 3);
    assert_true(b->set_fleet == 2 && b->set_device == 5 && b->set_rej_fleet == 0 && b->set_rej_device == 6);
    assert_string_equal(b->set_reason, "agent.interval: bad duration");
    /* {0: 2, 1: id, ..., 18: {...}}: key 18 in a schema 2 document is a violation */
    for (size_t i = 0; i + 1 < cn; i++)
        if (cb[i] == 0x00 && cb[i + 1] == 0x03) { /* the schema value */
            cb[i + 1] = 0x02;
            break;
        }
    assert_int_equal(et_snapshot_decode_cbor(cb, cn, b, err, sizeof err), ET_WIRE_ESCHEMA);
    free(a);
    free(b);
}

static char dir[64];

static void local_conf(et_config *c, const char *text)
{
    char path[96], err[200];
    snprintf(path, sizeof path, "%s/agent.conf", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    et_config_defaults(c);
    if (et_config_load(c, path, 1, err, sizeof err))
        fail_msg("config: %s", err);
}

static void test_merge_rules(void **st)
{
    (void)st;
    static et_config local, out;
    local_conf(&local, "[agent]\ninterval = 30s\nallow = main.local\npin = agent.deep_interval\n"
                       "deep_interval = 10m\n[target \"billing\"]\nurl = http://127.0.0.1:6060\n");
    static et_settings s;
    memset(&s, 0, sizeof s);
    add(&s, "agent.interval", "5s");
    add(&s, "agent.deep_interval", "1m");          /* pinned: the file wins */
    add(&s, "agent.allow", "main.central");        /* replaces the file's list */
    add(&s, "target.billing.profiles", "goroutine,heap");
    add(&s, "target.svc-b.interval", "2s");        /* a discovered service: no url needed */
    add(&s, "uplink.budget_bytes_per_day", "1M");
    char err[160];
    assert_int_equal(et_settings_merge(&local, &s, &out, err, sizeof err), 0);
    assert_int_equal(out.interval_ms, 5000);
    assert_int_equal(out.deep_interval_ms, 600000);
    assert_int_equal(out.nallow, 1);
    assert_string_equal(out.allow[0], "main.central");
    assert_int_equal(out.targets[0].profiles, 0x3);
    assert_int_equal(out.ntargets, 2);
    assert_string_equal(out.targets[1].name, "svc-b");
    assert_int_equal(out.targets[1].interval_ms, 2000);
    assert_int_equal(out.budget_bytes_per_day, 1 << 20);
    /* the config parser's rules: a value the file would refuse is refused, with its reason */
    memset(&s, 0, sizeof s);
    add(&s, "agent.interval", "fast");
    assert_int_equal(et_settings_merge(&local, &s, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "agent.interval: bad duration for 'interval'"));
    memset(&s, 0, sizeof s);
    add(&s, "agent.trace_seconds", "90s");
    assert_int_equal(et_settings_merge(&local, &s, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "1s..60s"));
    /* pin names only what central settings could set */
    static et_config bad;
    char path[96];
    snprintf(path, sizeof path, "%s/bad.conf", dir);
    FILE *f = fopen(path, "w");
    fputs("[agent]\npin = spool.dir\n", f);
    fclose(f);
    et_config_defaults(&bad);
    assert_int_equal(et_config_load(&bad, path, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot be set centrally"));
}

static void test_take_refuse_keep_restore(void **st)
{
    (void)st;
    static et_config local, out, again;
    local_conf(&local, "[agent]\ninterval = 30s\n");
    static et_settings_state ss, ss2;
    et_settings_state_init(&ss, dir);
    static et_settings s;
    memset(&s, 0, sizeof s);
    s.fleet_version = 1;
    add(&s, "agent.interval", "2s");
    uint8_t buf[ET_SET_DOC_MAX];
    size_t n = encode(&s, buf, sizeof buf);
    assert_int_equal(et_settings_take(&ss, &local, buf, n, &out, NULL), ET_SET_APPLIED);
    assert_int_equal(out.interval_ms, 2000);
    assert_true(ss.fleet == 1 && ss.device == 0);
    struct stat sb;
    assert_int_equal(stat(ss.path, &sb), 0);
    assert_true((size_t)sb.st_size > n); /* the document as received, in the kept file */
    /* the same versions again (re-sent until reported): nothing to do, nothing written */
    assert_int_equal(unlink(ss.path), 0);
    assert_int_equal(et_settings_take(&ss, &local, buf, n, &out, NULL), ET_SET_SAME);
    assert_int_equal(stat(ss.path, &sb), -1);
    /* an invalid set: refused with the reason, versions recorded, the applied ones kept */
    memset(&s, 0, sizeof s);
    s.fleet_version = 1;
    s.device_version = 4;
    add(&s, "agent.interval", "0s");
    n = encode(&s, buf, sizeof buf);
    memset(&again, 0x5a, sizeof again);
    assert_int_equal(et_settings_take(&ss, &local, buf, n, &again, NULL), ET_SET_REFUSED);
    assert_true(ss.fleet == 1 && ss.device == 0 && ss.rej_fleet == 1 && ss.rej_device == 4);
    assert_non_null(strstr(ss.reason, "agent.interval"));
    assert_int_equal(et_settings_take(&ss, &local, buf, n, &again, NULL), ET_SET_SAME); /* refused once */
    assert_int_equal(ss.refused, 1);
    /* garbage: refused, the agent goes on */
    const uint8_t junk[] = {0xff, 0x00, 0x13};
    assert_int_equal(et_settings_take(&ss, &local, junk, sizeof junk, &again, NULL), ET_SET_REFUSED);
    assert_non_null(strstr(ss.reason, "document"));
    /* a valid later set is kept on flash and comes back after a restart */
    memset(&s, 0, sizeof s);
    s.fleet_version = 2;
    s.device_version = 4;
    add(&s, "agent.leak_interval", "1m");
    n = encode(&s, buf, sizeof buf);
    assert_int_equal(et_settings_take(&ss, &local, buf, n, &out, NULL), ET_SET_APPLIED);
    assert_true(ss.reason[0] == 0 && ss.rej_fleet == 0);
    et_settings_state_init(&ss2, dir);
    assert_int_equal(et_settings_restore(&ss2, &local, &again), ET_SET_APPLIED);
    assert_true(ss2.fleet == 2 && ss2.device == 4);
    assert_int_equal(again.leak_interval_ms, 60000);
    assert_int_equal(again.interval_ms, 30000); /* the earlier set is not merged in: each set is whole */
    /* agent.conf changed since (a pin added): the kept set is still merged onto it */
    local_conf(&local, "[agent]\ninterval = 30s\npin = agent.leak_interval\n");
    et_settings_state_init(&ss2, dir);
    assert_int_equal(et_settings_restore(&ss2, &local, &again), ET_SET_APPLIED);
    assert_int_equal(again.leak_interval_ms, 300000);
    unlink(ss.path);
}

/* A set of one entry at versions (fleet, device), encoded into buf. */
static size_t one_set(uint8_t *buf, uint64_t fleet, uint64_t device, const char *name, const char *value)
{
    static et_settings s;
    memset(&s, 0, sizeof s);
    s.fleet_version = fleet;
    s.device_version = device;
    add(&s, name, value);
    return encode(&s, buf, ET_SET_DOC_MAX);
}

static uint64_t flash_bytes(const spool *sp)
{
    spool_stats sst;
    spool_get_stats(sp, &sst);
    return sst.bytes_written_total;
}

/* A refusal survives a restart: the agent reports it again from its first snapshot and does
 * not judge the same set again (the collector holds it back on that report); the file is
 * written only when the refused pair changes, and those bytes count as flash writes. */
static void test_refusal_kept_across_restart(void **st)
{
    (void)st;
    static et_config local, out;
    local_conf(&local, "[agent]\ninterval = 30s\n");
    char sdir[96], err[200];
    snprintf(sdir, sizeof sdir, "%s/spool", dir);
    spool_params p;
    memset(&p, 0, sizeof p);
    p.dir = sdir;
    p.max_bytes = 1 << 20;
    p.fsync_policy = SPOOL_FSYNC_NEVER;
    spool *sp = spool_open(&p, err, sizeof err);
    assert_non_null(sp);
    static et_settings_state ss;
    et_settings_state_init(&ss, dir);
    unlink(ss.path);
    uint8_t good[ET_SET_DOC_MAX], bad[ET_SET_DOC_MAX];
    size_t gn = one_set(good, 3, 0, "agent.interval", "4s");
    size_t bn = one_set(bad, 3, 2, "agent.interval", "forever");
    assert_int_equal(et_settings_take(&ss, &local, good, gn, &out, sp), ET_SET_APPLIED);
    uint64_t f0 = flash_bytes(sp);
    assert_int_equal(et_settings_take(&ss, &local, bad, bn, &out, sp), ET_SET_REFUSED);
    struct stat sb;
    assert_int_equal(stat(ss.path, &sb), 0);
    uint64_t f1 = flash_bytes(sp);
    assert_int_equal(f1 - f0, (uint64_t)sb.st_size); /* written, and counted */

    /* restart: the applied set and the refusal both come back */
    et_settings_state_init(&ss, dir);
    static et_config again;
    assert_int_equal(et_settings_restore(&ss, &local, &again), ET_SET_APPLIED);
    assert_int_equal(again.interval_ms, 4000);
    assert_true(ss.fleet == 3 && ss.device == 0);
    assert_true(ss.rej_fleet == 3 && ss.rej_device == 2);
    assert_non_null(strstr(ss.reason, "agent.interval"));
    /* the same refused set again: not judged again, not counted again, nothing written */
    assert_int_equal(unlink(ss.path), 0);
    assert_int_equal(et_settings_take(&ss, &local, bad, bn, &out, sp), ET_SET_SAME);
    assert_int_equal(ss.refused, 0);
    assert_int_equal(stat(ss.path, &sb), -1);
    assert_int_equal(flash_bytes(sp), f1);
    /* a garbled document names no pair: the kept refusal is not rewritten for it */
    const uint8_t junk[] = {0xa1, 0x09};
    assert_int_equal(et_settings_take(&ss, &local, junk, sizeof junk, &out, sp), ET_SET_REFUSED);
    assert_int_equal(stat(ss.path, &sb), -1);
    /* a later valid set clears the refusal on flash too */
    gn = one_set(good, 3, 3, "agent.interval", "6s");
    assert_int_equal(et_settings_take(&ss, &local, good, gn, &out, sp), ET_SET_APPLIED);
    et_settings_state_init(&ss, dir);
    assert_int_equal(et_settings_restore(&ss, &local, &again), ET_SET_APPLIED);
    assert_true(ss.device == 3 && ss.rej_fleet == 0 && ss.rej_device == 0 && ss.reason[0] == 0);
    /* a file from before refusals were kept (the bare document) still restores */
    FILE *f = fopen(ss.path, "wb");
    assert_non_null(f);
    fwrite(good, 1, gn, f);
    fclose(f);
    et_settings_state_init(&ss, dir);
    assert_int_equal(et_settings_restore(&ss, &local, &again), ET_SET_APPLIED);
    assert_int_equal(again.interval_ms, 6000);
    /* a corrupt file: refused by the strict decoder, agent.conf in charge */
    uint8_t kb[ET_SET_FILE_MAX];
    size_t kn = 0;
    static et_settings_kept k;
    memset(&k, 0, sizeof k);
    k.rej_fleet = 1;
    snprintf(k.reason, sizeof k.reason, "x");
    assert_int_equal(et_settings_file_encode(&k, kb, sizeof kb, &kn), 0);
    assert_int_equal(et_settings_file_decode(kb, kn, &k, err, sizeof err), 0);
    assert_int_equal(et_settings_file_decode(kb, kn - 1, &k, err, sizeof err), -1);
    kb[1] = 2; /* file version 2 */
    assert_int_equal(et_settings_file_decode(kb, kn, &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "file version 2"));
    spool_close(sp);
    unlink(ss.path);
}

static int setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/et-settings-%d", (int)getpid());
    mkdir(dir, 0700);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_command_document),
        cmocka_unit_test(test_strict),
        cmocka_unit_test(test_snapshot_key_18),
        cmocka_unit_test(test_merge_rules),
        cmocka_unit_test(test_take_refuse_keep_restore),
        cmocka_unit_test(test_refusal_kept_across_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
