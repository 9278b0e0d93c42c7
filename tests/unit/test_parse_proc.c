/* test_parse_proc.c - /proc/PID/status, stat and fd count: a fixture tree (with a comm that
 * holds spaces and parentheses) and the live /proc/self. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "parse_proc.h"

static const char status_txt[] =
    "Name:\tmy svc\n"
    "Umask:\t0022\n"
    "State:\tS (sleeping)\n"
    "Tgid:\t4242\n"
    "VmPeak:\t 1300000 kB\n"
    "VmSize:\t 1262580 kB\n"
    "VmLck:\t       0 kB\n"
    "VmHWM:\t   30412 kB\n"
    "VmRSS:\t   28100 kB\n"
    "RssAnon:\t   20000 kB\n"
    "RssFile:\t    8100 kB\n"
    "RssShmem:\t       0 kB\n"
    "Threads:\t17\n"
    "SigQ:\t0/63414\n";

/* comm "(x) (y" : the kernel prints it raw, so only the last ')' ends it */
static const char stat_txt[] =
    "4242 ((x) (y) S 1 4242 4242 0 -1 4194560 1201 0 0 0 157 42 0 0 20 0 17 0 987654 1292881920 7025 "
    "18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0\n";

static void test_status(void **state)
{
    (void)state;
    et_procstat ps;
    memset(&ps, 0, sizeof ps);
    assert_int_equal(et_proc_parse_status(status_txt, sizeof status_txt - 1, &ps), 0);
    assert_int_equal(ps.vm_rss_kb, 28100);
    assert_int_equal(ps.vm_hwm_kb, 30412);
    assert_int_equal(ps.vm_size_kb, 1262580);
    assert_int_equal(ps.rss_anon_kb, 20000);
    assert_int_equal(ps.rss_file_kb, 8100);
    assert_int_equal(ps.threads, 17);
    /* a kernel thread: no Vm lines, Threads present */
    memset(&ps, 0, sizeof ps);
    assert_int_equal(et_proc_parse_status("Name:\tkworker\nThreads:\t1\n", 25, &ps), 0);
    assert_int_equal(ps.threads, 1);
    /* no trailing newline, CR, garbage */
    memset(&ps, 0, sizeof ps);
    assert_int_equal(et_proc_parse_status("VmRSS:\t 5 kB", 12, &ps), 0);
    assert_int_equal(ps.vm_rss_kb, 5);
    assert_int_equal(et_proc_parse_status("", 0, &ps), -1);
    assert_int_equal(et_proc_parse_status("<html>", 6, &ps), -1);
    assert_int_equal(et_proc_parse_status("VmRSS:\tlots kB\n", 15, &ps), -1);
    /* huge numbers saturate instead of wrapping */
    memset(&ps, 0, sizeof ps);
    const char *big = "VmRSS:\t99999999999999999999999999 kB\nThreads:\t99999999999\n";
    assert_int_equal(et_proc_parse_status(big, strlen(big), &ps), 0);
    assert_true(ps.vm_rss_kb == UINT64_MAX);
    assert_true(ps.threads == UINT32_MAX);
}

static void test_stat(void **state)
{
    (void)state;
    et_procstat ps;
    memset(&ps, 0, sizeof ps);
    assert_int_equal(et_proc_parse_stat(stat_txt, sizeof stat_txt - 1, &ps), 0);
    assert_int_equal(ps.utime_ticks, 157);
    assert_int_equal(ps.stime_ticks, 42);
    assert_int_equal(ps.start_time_ticks, 987654);
    const char *spaces = "7 (a b c) R 1 7 7 0 -1 0 0 0 0 0 9 8 0 0 20 0 1 0 55 0 0\n";
    assert_int_equal(et_proc_parse_stat(spaces, strlen(spaces), &ps), 0);
    assert_int_equal(ps.utime_ticks, 9);
    assert_int_equal(ps.stime_ticks, 8);
    assert_int_equal(ps.start_time_ticks, 55);
    /* malformed: no parens, too few fields, non-numbers */
    assert_int_equal(et_proc_parse_stat("7 a R 1", 7, &ps), -1);
    assert_int_equal(et_proc_parse_stat("7 (a) R 1 2 3\n", 14, &ps), -1);
    const char *nan = "7 (a) R 1 7 7 0 -1 0 0 0 0 0 x 8 0 0 20 0 1 0 55\n";
    assert_int_equal(et_proc_parse_stat(nan, strlen(nan), &ps), -1);
    assert_int_equal(et_proc_parse_stat(")(", 2, &ps), -1);
    assert_int_equal(et_proc_parse_stat("", 0, &ps), -1);
}

static void write_file(const char *path, const char *txt)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(txt, f);
    fclose(f);
}

static void test_fixture_tree(void **state)
{
    (void)state;
    char root[] = "/tmp/et-proc-XXXXXX";
    assert_non_null(mkdtemp(root));
    char path[512];
    snprintf(path, sizeof path, "%s/4242", root);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/4242/status", root);
    write_file(path, status_txt);
    snprintf(path, sizeof path, "%s/4242/stat", root);
    write_file(path, stat_txt);
    snprintf(path, sizeof path, "%s/4242/fd", root);
    assert_int_equal(mkdir(path, 0755), 0);
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/4242/fd/%d", root, i);
        assert_int_equal(symlink("/dev/null", path), 0);
    }
    et_procstat ps;
    assert_int_equal(et_proc_read(root, 4242, &ps), 0);
    assert_true(ps.present);
    assert_int_equal(ps.fds, 5);
    assert_int_equal(ps.threads, 17);
    assert_int_equal(ps.vm_rss_kb, 28100);
    assert_int_equal(ps.start_time_ticks, 987654);
    /* missing process, bad pid */
    assert_int_equal(et_proc_read(root, 4243, &ps), -1);
    assert_false(ps.present);
    assert_int_equal(et_proc_read(root, 0, &ps), -1);
    assert_int_equal(et_proc_read(root, -5, &ps), -1);
    /* garbage stat: an error, not zeros */
    snprintf(path, sizeof path, "%s/4242/stat", root);
    write_file(path, "garbage\n");
    assert_int_equal(et_proc_read(root, 4242, &ps), -1);
    /* clean up */
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/4242/fd/%d", root, i);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/4242/fd", root);
    rmdir(path);
    snprintf(path, sizeof path, "%s/4242/stat", root);
    unlink(path);
    snprintf(path, sizeof path, "%s/4242/status", root);
    unlink(path);
    snprintf(path, sizeof path, "%s/4242", root);
    rmdir(path);
    rmdir(root);
}

static void test_live_self(void **state)
{
    (void)state;
    et_procstat ps;
    assert_int_equal(et_proc_read("/proc", (int)getpid(), &ps), 0);
    assert_true(ps.vm_rss_kb > 0);
    assert_true(ps.threads >= 1);
    assert_true(ps.fds >= 3);
    assert_true(ps.start_time_ticks > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_stat),
        cmocka_unit_test(test_fixture_tree),
        cmocka_unit_test(test_live_self),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
