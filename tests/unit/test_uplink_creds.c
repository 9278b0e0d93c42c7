/* test_uplink_creds.c - the credentials-file watch (uplink_creds.h): a gateway that starts
 * without credentials, gets them later, has its key rotated, or gets a broken file. Each
 * state is reported once per change of the file (never once per tick), a broken file never
 * replaces good credentials, and DIR/<device_id> cannot climb out of DIR. The daemon's use of
 * it is tested end to end in tests/integration/test_creds_watch.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uplink_creds.h"

static char dir[64], file[96];

/* As provision writes it: a temporary file renamed over the old one (a new inode). */
static void put(const char *text, mode_t mode)
{
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(tmp, mode), 0);
    assert_int_equal(rename(tmp, file), 0);
}

static int poll_once(et_creds_watch *w, et_uplink_params *out)
{
    et_uplink_params base;
    et_uplink_params_defaults(&base);
    char err[256] = "";
    int ev = et_creds_poll(w, &base, out, err, sizeof(err));
    if (ev == ET_CREDS_MISSING || ev == ET_CREDS_BAD)
        assert_true(err[0] != 0); /* every complaint says why */
    return ev;
}

static int setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof(dir), "/tmp/et-creds-%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(file, sizeof(file), "%s/gw-7", dir);
    unlink(file);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    unlink(file);
    rmdir(dir);
    return 0;
}

static void test_missing_then_provisioned_then_rotated(void **st)
{
    (void)st;
    et_creds_watch w;
    et_creds_watch_init(&w, file);
    et_uplink_params out;
    memset(&out, 0, sizeof(out));
    /* missing: said once, then quiet however often it is polled */
    assert_int_equal(poll_once(&w, &out), ET_CREDS_MISSING);
    for (int i = 0; i < 5; i++)
        assert_int_equal(poll_once(&w, &out), ET_CREDS_UNCHANGED);
    /* provisioned: loaded once */
    put("[credentials]\ndevice_id = gw-7\npsk = 0102030405060708\ncollector = coaps://127.0.0.1:5684\n", 0600);
    assert_int_equal(poll_once(&w, &out), ET_CREDS_LOADED);
    assert_string_equal(out.device_id, "gw-7");
    assert_int_equal(out.psk_len, 8);
    assert_int_equal(out.psk[7], 8);
    assert_string_equal(out.collector, "coaps://127.0.0.1:5684");
    assert_int_equal(out.ack_timeout_ms, 4000); /* the base's settings came along */
    assert_int_equal(poll_once(&w, &out), ET_CREDS_UNCHANGED);
    assert_int_equal(w.loads, 1);
    /* broken: an error once, counted, and the good ones untouched */
    put("[credentials]\ndevice_id = gw-7\npsk = zz\n", 0600);
    assert_int_equal(poll_once(&w, &out), ET_CREDS_BAD);
    assert_int_equal(poll_once(&w, &out), ET_CREDS_UNCHANGED);
    assert_int_equal(w.load_errors, 1);
    assert_int_equal(out.psk_len, 8);
    assert_int_equal(out.psk[0], 1);
    put("", 0600); /* empty: no device_id, no psk */
    assert_int_equal(poll_once(&w, &out), ET_CREDS_BAD);
    assert_int_equal(w.load_errors, 2);
    /* rotated: the new key */
    put("[credentials]\ndevice_id = gw-7\npsk = a0a1a2a3\n", 0600);
    assert_int_equal(poll_once(&w, &out), ET_CREDS_LOADED);
    assert_int_equal(out.psk_len, 4);
    assert_int_equal(out.psk[0], 0xa0);
    assert_int_equal(w.loads, 2);
    assert_int_equal(w.world_readable, 0);
}

static void test_in_place_change_and_mode(void **st)
{
    (void)st;
    et_creds_watch w;
    et_creds_watch_init(&w, file);
    et_uplink_params out;
    put("[credentials]\ndevice_id = gw-7\npsk = 0102\n", 0600);
    assert_int_equal(poll_once(&w, &out), ET_CREDS_LOADED);
    /* rewritten in place (same inode, an editor or `cat >`): seen by size and mtime */
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("[credentials]\ndevice_id = gw-7\npsk = 03040506\n", f);
    fclose(f);
    assert_int_equal(poll_once(&w, &out), ET_CREDS_LOADED);
    assert_int_equal(out.psk_len, 4);
    /* chmod changes the ctime: looked at again, taken with a warning and a count */
    assert_int_equal(chmod(file, 0644), 0);
    assert_int_equal(poll_once(&w, &out), ET_CREDS_LOADED);
    assert_int_equal(w.world_readable, 1);
    /* removed: said once; back: loaded */
    unlink(file);
    assert_int_equal(poll_once(&w, &out), ET_CREDS_MISSING);
    assert_int_equal(poll_once(&w, &out), ET_CREDS_UNCHANGED);
    put("[credentials]\ndevice_id = gw-7\npsk = 0102\n", 0600);
    assert_int_equal(poll_once(&w, &out), ET_CREDS_LOADED);
    /* a directory where the file should be is not a file */
    unlink(file);
    assert_int_equal(mkdir(file, 0700), 0);
    assert_int_equal(poll_once(&w, &out), ET_CREDS_MISSING);
    rmdir(file);
}

/* Unreadable (wrong owner or mode): missing, said once and counted, never a load. Root
 * reads a mode-000 file, so as root the check runs in a child that became nobody. */
static int unreadable_then_chmod(void)
{
    et_creds_watch w;
    et_creds_watch_init(&w, file);
    et_uplink_params out;
    if (poll_once(&w, &out) != ET_CREDS_MISSING || poll_once(&w, &out) != ET_CREDS_UNCHANGED || w.load_errors != 1)
        return 1;
    return 0;
}

static void test_unreadable(void **st)
{
    (void)st;
    chmod(dir, 0755);
    put("[credentials]\ndevice_id = gw-7\npsk = 0102\n", 0000);
    if (geteuid() != 0) {
        assert_int_equal(unreadable_then_chmod(), 0);
        return;
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(setgid(65534) == 0 && setuid(65534) == 0 ? unreadable_then_chmod() : 2);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_path_in_dir(void **st)
{
    (void)st;
    char p[64];
    assert_int_equal(et_creds_path_in_dir("/etc/edgetrace/creds/", "node-1", p, sizeof(p)), 0);
    assert_string_equal(p, "/etc/edgetrace/creds/node-1");
    assert_int_equal(et_creds_path_in_dir("/c", "node-1", p, sizeof(p)), 0);
    assert_string_equal(p, "/c/node-1");
    assert_int_equal(et_creds_path_in_dir("/c", "", p, sizeof(p)), -1);
    assert_int_equal(et_creds_path_in_dir("/c", "..", p, sizeof(p)), -1);
    assert_int_equal(et_creds_path_in_dir("/c", ".", p, sizeof(p)), -1);
    assert_int_equal(et_creds_path_in_dir("/c", "../etc/shadow", p, sizeof(p)), -1);
    assert_int_equal(et_creds_path_in_dir("/c", "a-very-long-device-name-that-does-not-fit-here-at-all-0123456789", p,
                                          sizeof(p)), -1);
}

/* The uplink takes a new key without being recreated, and refuses an unusable one. */
static void test_uplink_new_identity(void **st)
{
    (void)st;
    et_loop *l = et_loop_create(8, 8);
    assert_non_null(l);
    et_uplink_params p;
    et_uplink_params_defaults(&p);
    snprintf(p.collector, sizeof(p.collector), "coaps://127.0.0.1:5684");
    snprintf(p.device_id, sizeof(p.device_id), "gw-7");
    p.psk_len = 4;
    memset(p.psk, 1, 4);
    char err[200];
    et_uplink *u = et_uplink_create(l, NULL, &p, err, sizeof(err));
    assert_non_null(u);
    uint8_t k[ET_UPLINK_PSK_MAX + 1];
    memset(k, 2, sizeof(k));
    assert_int_equal(et_uplink_set_identity(u, "", k, 4), -1);
    assert_int_equal(et_uplink_set_identity(u, "gw-7", k, 0), -1);
    assert_int_equal(et_uplink_set_identity(u, "gw-7", k, sizeof(k)), -1);
    et_uplink_destroy(u);
    et_loop_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_then_provisioned_then_rotated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_place_change_and_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
        cmocka_unit_test(test_path_in_dir),
        cmocka_unit_test(test_uplink_new_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
