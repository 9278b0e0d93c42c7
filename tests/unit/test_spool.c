/* test_spool.c - the flash spool against real files: append/peek/ack/reopen, a torn last
 * record at every byte offset, corruption in the middle of a segment, eviction order and
 * counters when full, acks and counters surviving a reopen, out-of-order acks. Runs under
 * ASan on the host and under qemu on aarch64 and 32-bit armv7. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "spool.h"

static char dir[128];

static void rm_rf(const char *d)
{
    DIR *dd = opendir(d);
    if (!dd)
        return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(dd)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", d, de->d_name);
        unlink(p);
    }
    closedir(dd);
    rmdir(d);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/et-test-spool-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rm_rf(dir);
    return 0;
}

static void mkid(uint32_t i, uint8_t id[SPOOL_ID_LEN])
{
    memset(id, 0, SPOOL_ID_LEN);
    id[0] = 0xE7;
    id[12] = (uint8_t)(i >> 24);
    id[13] = (uint8_t)(i >> 16);
    id[14] = (uint8_t)(i >> 8);
    id[15] = (uint8_t)i;
}

static uint32_t idnum(const uint8_t id[SPOOL_ID_LEN])
{
    return (uint32_t)id[12] << 24 | (uint32_t)id[13] << 16 | (uint32_t)id[14] << 8 | id[15];
}

static uint32_t plen(uint32_t i) { return 20 + (i * 37) % 300; }

static void fill(uint32_t i, uint8_t *buf)
{
    for (uint32_t k = 0; k < plen(i); k++)
        buf[k] = (uint8_t)(i + k * 7);
}

static spool *open_sp(uint64_t max_bytes, uint32_t seg_bytes)
{
    spool_params p;
    memset(&p, 0, sizeof p);
    p.dir = dir;
    p.max_bytes = max_bytes;
    p.segment_bytes = seg_bytes;
    /* File contents are what these tests check; fsync only costs time here (crash safety
     * with real kills is tests/integration/test_spool_crash.py). */
    p.fsync_policy = SPOOL_FSYNC_NEVER;
    char err[256];
    spool *sp = spool_open(&p, err, sizeof err);
    if (!sp)
        print_error("spool_open: %s\n", err);
    assert_non_null(sp);
    return sp;
}

static void append_n(spool *sp, uint32_t from, uint32_t n, uint8_t flags)
{
    static uint8_t buf[512];
    for (uint32_t i = from; i < from + n; i++) {
        uint8_t id[SPOOL_ID_LEN];
        mkid(i, id);
        fill(i, buf);
        assert_int_equal(spool_append(sp, flags, id, buf, plen(i)), 0);
    }
}

/* Pending record numbers, in foreach order (findings stream first, then routine). */
typedef struct collect {
    uint32_t ids[4096];
    uint32_t n;
} collect;

static int collect_cb(const spool_rec *r, int acked, void *ctx)
{
    collect *c = ctx;
    if (!acked && c->n < 4096)
        c->ids[c->n++] = idnum(r->id);
    return 0;
}

static void pending(spool *sp, collect *c)
{
    c->n = 0;
    assert_int_equal(spool_foreach(sp, collect_cb, c), 0);
}

/* Peeks, checks the payload, acks; returns the record number. */
static uint32_t peek_ack(spool *sp)
{
    static uint8_t buf[1024], want[1024];
    spool_rec r;
    long n = spool_peek(sp, &r, buf, sizeof buf);
    assert_true(n > 0);
    uint32_t i = idnum(r.id);
    assert_int_equal((uint32_t)n, plen(i));
    fill(i, want);
    assert_memory_equal(buf, want, (size_t)n);
    assert_int_equal(spool_ack(sp, r.id), 0);
    return i;
}

static void test_append_peek_ack_reopen(void **state)
{
    (void)state;
    spool *sp = open_sp(1 << 20, 4096);
    append_n(sp, 0, 10, 0);
    append_n(sp, 100, 3, SPOOL_F_FINDING);
    /* findings first, oldest first */
    assert_int_equal(peek_ack(sp), 100);
    assert_int_equal(peek_ack(sp), 101);
    assert_int_equal(peek_ack(sp), 102);
    assert_int_equal(peek_ack(sp), 0);
    assert_int_equal(peek_ack(sp), 1);
    /* acking again is "not pending" */
    uint8_t id[SPOOL_ID_LEN];
    mkid(1, id);
    assert_int_equal(spool_ack(sp, id), 1);
    mkid(999, id);
    assert_int_equal(spool_ack(sp, id), 1);
    spool_close(sp);

    sp = open_sp(1 << 20, 4096);
    collect c;
    pending(sp, &c);
    assert_int_equal(c.n, 8);
    for (uint32_t k = 0; k < 8; k++)
        assert_int_equal(c.ids[k], 2 + k);
    assert_int_equal(peek_ack(sp), 2);
    spool_stats st;
    spool_get_stats(sp, &st);
    assert_int_equal(st.appended_total, 13);
    assert_int_equal(st.acked_total, 6);
    assert_int_equal(st.pending_routine, 7);
    assert_int_equal(st.pending_findings, 0);
    assert_true(st.bytes_written_today > 0);
    assert_true(st.bytes_written_total >= st.bytes_written_today);
    /* drain: every segment but the newest of each stream is deleted once acked */
    for (int k = 0; k < 7; k++)
        peek_ack(sp);
    spool_rec r;
    assert_int_equal(spool_peek(sp, &r, NULL, 0), 0);
    spool_get_stats(sp, &st);
    assert_true(st.segments_routine <= 1);
    spool_close(sp);
}

static void test_segments_deleted_when_acked(void **state)
{
    (void)state;
    spool *sp = open_sp(1 << 20, 4096);
    append_n(sp, 0, 200, 0); /* ~33 KiB: several 4 KiB segments */
    spool_stats st;
    spool_get_stats(sp, &st);
    assert_true(st.segments_routine >= 5);
    for (int k = 0; k < 200; k++)
        assert_int_equal(peek_ack(sp), (uint32_t)k);
    spool_get_stats(sp, &st);
    assert_int_equal(st.segments_routine, 1);
    assert_int_equal(st.pending_routine, 0);
    spool_close(sp);
    sp = open_sp(1 << 20, 4096);
    collect c;
    pending(sp, &c);
    assert_int_equal(c.n, 0);
    /* numbering goes on: new appends land after the acked ones */
    append_n(sp, 500, 2, 0);
    assert_int_equal(peek_ack(sp), 500);
    spool_close(sp);
    sp = open_sp(1 << 20, 4096);
    pending(sp, &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.ids[0], 501);
    spool_close(sp);
}

static int find_seg_file(char *out, size_t n, char prefix)
{
    DIR *dd = opendir(dir);
    struct dirent *de;
    int found = 0;
    char best[256] = "";
    while ((de = readdir(dd)) != NULL)
        if (de->d_name[0] == prefix && strstr(de->d_name, ".seg") && strcmp(de->d_name, best) > 0) {
            snprintf(best, sizeof best, "%s", de->d_name);
            found = 1;
        }
    closedir(dd);
    snprintf(out, n, "%s/%s", dir, best);
    return found;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    fstat(fd, &st);
    uint8_t *b = malloc((size_t)st.st_size + 1);
    assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, len), (ssize_t)len);
    close(fd);
}

/* A power cut while writing the last record leaves any prefix of it on flash: for every
 * length from "not started" to "one byte short", reopen must keep the earlier records,
 * drop the torn one, and append cleanly after it. */
static void test_torn_tail_every_offset(void **state)
{
    (void)state;
    spool *sp = open_sp(1 << 20, 1 << 16);
    append_n(sp, 0, 4, 0);
    spool_stats st;
    spool_get_stats(sp, &st);
    uint64_t start = st.bytes_used;
    append_n(sp, 4, 1, 0);
    spool_close(sp);

    char seg[512], statep[512];
    assert_true(find_seg_file(seg, sizeof seg, 'r'));
    snprintf(statep, sizeof statep, "%s/state", dir);
    size_t full, slen;
    uint8_t *orig = slurp(seg, &full);
    uint8_t *ostate = slurp(statep, &slen);
    assert_int_equal(full, start + SPOOL_HDR_LEN + plen(4));

    for (size_t cut = (size_t)start; cut < full; cut++) {
        spit(seg, orig, cut);
        spit(statep, ostate, slen);
        sp = open_sp(1 << 20, 1 << 16);
        collect c;
        pending(sp, &c);
        assert_int_equal(c.n, 4);
        for (uint32_t k = 0; k < 4; k++)
            assert_int_equal(c.ids[k], k);
        spool_get_stats(sp, &st);
        assert_int_equal(st.torn_tails, cut > start ? 1 : 0);
        assert_int_equal(st.corrupt_dropped, 0);
        assert_int_equal(st.bytes_used, start);
        /* appending after the cut works and survives another reopen */
        append_n(sp, 4, 1, 0);
        spool_close(sp);
        sp = open_sp(1 << 20, 1 << 16);
        pending(sp, &c);
        assert_int_equal(c.n, 5);
        assert_int_equal(c.ids[4], 4);
        spool_close(sp);
    }
    free(orig);
    free(ostate);
}

/* Torn tail where the state file is also gone (lost before its first rename). */
static void test_torn_tail_without_state(void **state)
{
    (void)state;
    spool *sp = open_sp(1 << 20, 1 << 16);
    append_n(sp, 0, 3, SPOOL_F_FINDING);
    spool_close(sp);
    char seg[512], statep[512];
    assert_true(find_seg_file(seg, sizeof seg, 'f'));
    snprintf(statep, sizeof statep, "%s/state", dir);
    size_t len;
    uint8_t *b = slurp(seg, &len);
    spit(seg, b, len - 5);
    unlink(statep);
    free(b);
    sp = open_sp(1 << 20, 1 << 16);
    collect c;
    pending(sp, &c);
    assert_int_equal(c.n, 2);
    spool_close(sp);
}

static void test_corruption_in_middle(void **state)
{
    (void)state;
    spool *sp = open_sp(1 << 20, 1 << 16);
    append_n(sp, 0, 6, 0);
    spool_close(sp);
    char seg[512];
    assert_true(find_seg_file(seg, sizeof seg, 'r'));
    size_t len;
    uint8_t *b = slurp(seg, &len);
    /* offset of record 2 */
    size_t off2 = 2 * SPOOL_HDR_LEN + plen(0) + plen(1);
    size_t off4 = off2 + 2 * SPOOL_HDR_LEN + plen(2) + plen(3);
    b[off2 + SPOOL_HDR_LEN + 3] ^= 0x40; /* payload bit flip in record 2 */
    b[off4 + 5] ^= 0x7f;                 /* length field of record 4 */
    spit(seg, b, len);
    free(b);
    sp = open_sp(1 << 20, 1 << 16);
    collect c;
    pending(sp, &c);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.ids[0], 0);
    assert_int_equal(c.ids[1], 1);
    assert_int_equal(c.ids[2], 3);
    assert_int_equal(c.ids[3], 5);
    spool_stats st;
    spool_get_stats(sp, &st);
    assert_int_equal(st.corrupt_dropped, 2);
    assert_int_equal(st.torn_tails, 0);
    /* consumption skips the bad records too */
    assert_int_equal(peek_ack(sp), 0);
    assert_int_equal(peek_ack(sp), 1);
    assert_int_equal(peek_ack(sp), 3);
    assert_int_equal(peek_ack(sp), 5);
    spool_rec r;
    assert_int_equal(spool_peek(sp, &r, NULL, 0), 0);
    spool_close(sp);
    /* counters persisted */
    sp = open_sp(1 << 20, 1 << 16);
    spool_get_stats(sp, &st);
    assert_true(st.corrupt_dropped >= 2);
    spool_close(sp);
}

/* Corrupt bytes right at the ack cursor must not make every later ack "out of order" (the
 * set of those is bounded): the cursor steps over them. */
static void test_acks_past_corruption(void **state)
{
    (void)state;
    spool *sp = open_sp(1 << 20, 1 << 17);
    append_n(sp, 0, 100, 0);
    spool_close(sp);
    char seg[512];
    assert_true(find_seg_file(seg, sizeof seg, 'r'));
    size_t len;
    uint8_t *b = slurp(seg, &len);
    b[0] ^= 0xff; /* magic of record 0 */
    spit(seg, b, len);
    free(b);
    sp = open_sp(1 << 20, 1 << 17);
    for (uint32_t k = 1; k < 100; k++)
        assert_int_equal(peek_ack(sp), k);
    spool_rec r;
    assert_int_equal(spool_peek(sp, &r, NULL, 0), 0);
    spool_close(sp);
}

/* A record that goes bad on flash while the spool is open is skipped by peek, and its
 * segment is still deleted once everything else in it is delivered. */
static void test_corruption_while_open(void **state)
{
    (void)state;
    spool *sp = open_sp(1 << 20, 4096);
    append_n(sp, 0, 40, 0); /* several 4 KiB segments */
    char seg[512];
    /* the oldest segment: r-00000001.seg */
    snprintf(seg, sizeof seg, "%s/r-%08u.seg", dir, 1u);
    size_t len;
    uint8_t *b = slurp(seg, &len);
    size_t off1 = SPOOL_HDR_LEN + plen(0);
    b[off1 + SPOOL_HDR_LEN + 1] ^= 1; /* payload of record 1 */
    spit(seg, b, len);
    free(b);
    assert_int_equal(peek_ack(sp), 0);
    assert_int_equal(peek_ack(sp), 2); /* 1 is unreadable */
    for (uint32_t k = 3; k < 40; k++)
        assert_int_equal(peek_ack(sp), k);
    spool_stats st;
    spool_get_stats(sp, &st);
    assert_int_equal(st.pending_routine, 0);
    assert_int_equal(st.segments_routine, 1);
    assert_int_equal(st.corrupt_dropped, 1);
    assert_true(access(seg, F_OK) != 0);
    spool_close(sp);
}

/* With fsync "never" the state can reach flash while the data it describes does not: the
 * cursor then points past the end of the segment, and must not swallow new records. */
static void test_state_newer_than_data(void **state)
{
    (void)state;
    spool *sp = open_sp(1 << 20, 1 << 17);
    append_n(sp, 0, 5, 0);
    for (int k = 0; k < 5; k++)
        peek_ack(sp);
    spool_close(sp);
    char seg[512];
    assert_true(find_seg_file(seg, sizeof seg, 'r'));
    size_t len;
    uint8_t *b = slurp(seg, &len);
    spit(seg, b, 2 * SPOOL_HDR_LEN + plen(0) + plen(1)); /* records 2..4 never reached flash */
    free(b);
    sp = open_sp(1 << 20, 1 << 17);
    append_n(sp, 7, 2, 0);
    collect c;
    pending(sp, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.ids[0], 7);
    spool_close(sp);
    sp = open_sp(1 << 20, 1 << 17);
    assert_int_equal(peek_ack(sp), 7);
    assert_int_equal(peek_ack(sp), 8);
    spool_close(sp);
}

static void test_eviction_order_and_counters(void **state)
{
    (void)state;
    /* 16 KiB spool of 4 KiB segments; records average ~200 bytes */
    spool *sp = open_sp(16384, 4096);
    append_n(sp, 1000, 10, SPOOL_F_FINDING);
    append_n(sp, 0, 300, 0);
    spool_stats st;
    spool_get_stats(sp, &st);
    assert_true(st.bytes_used <= 16384);
    assert_true(st.routine_dropped > 0);
    assert_int_equal(st.findings_dropped, 0);
    assert_int_equal(st.pending_findings, 10);
    assert_int_equal(st.appended_total, 310);
    assert_int_equal(st.pending_routine + st.routine_dropped, 300);
    /* the routine records kept are the newest ones, contiguous up to 299 */
    collect c;
    pending(sp, &c);
    assert_int_equal(c.ids[0], 1000);
    assert_int_equal(c.ids[c.n - 1], 299);
    for (uint32_t k = 11; k < c.n; k++)
        assert_int_equal(c.ids[k], c.ids[k - 1] + 1);
    uint64_t rdrop = st.routine_dropped;
    spool_close(sp);

    /* counters survive the restart; then only findings: routine goes entirely before the
     * first finding is dropped, and finding drops are oldest first */
    sp = open_sp(16384, 4096);
    spool_get_stats(sp, &st);
    assert_int_equal(st.routine_dropped, rdrop);
    append_n(sp, 2000, 200, SPOOL_F_FINDING);
    spool_get_stats(sp, &st);
    assert_true(st.bytes_used <= 16384);
    assert_int_equal(st.pending_routine, 0);
    assert_true(st.findings_dropped > 0);
    assert_int_equal(st.pending_findings + st.findings_dropped, 210);
    pending(sp, &c);
    assert_int_equal(c.ids[c.n - 1], 2199);
    for (uint32_t k = 1; k < c.n; k++)
        assert_int_equal(c.ids[k], c.ids[k - 1] + 1);
    spool_close(sp);
}

static void test_out_of_order_ack(void **state)
{
    (void)state;
    spool *sp = open_sp(1 << 20, 4096);
    append_n(sp, 0, 5, 0);
    uint8_t id[SPOOL_ID_LEN];
    mkid(3, id);
    assert_int_equal(spool_ack(sp, id), 0);
    mkid(3, id);
    assert_int_equal(spool_ack(sp, id), 1);
    spool_close(sp);
    sp = open_sp(1 << 20, 4096);
    collect c;
    pending(sp, &c);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.ids[3], 4);
    assert_int_equal(peek_ack(sp), 0);
    assert_int_equal(peek_ack(sp), 1);
    assert_int_equal(peek_ack(sp), 2);
    assert_int_equal(peek_ack(sp), 4); /* 3 was acked already */
    spool_rec r;
    assert_int_equal(spool_peek(sp, &r, NULL, 0), 0);
    spool_close(sp);
}

static void test_limits_and_policies(void **state)
{
    (void)state;
    spool *sp = open_sp(16384, 4096);
    static uint8_t big[8192];
    uint8_t id[SPOOL_ID_LEN];
    mkid(1, id);
    assert_int_equal(spool_append(sp, 0, id, big, 8192), -1); /* > max_bytes / 4 */
    assert_int_equal(spool_append(sp, 0x80, id, big, 10), -1); /* unknown flag */
    /* peek with a too small buffer reports the length and copies nothing */
    assert_int_equal(spool_append(sp, 0, id, big, 100), 0);
    spool_rec r;
    assert_int_equal(spool_peek(sp, &r, big, 10), -2);
    assert_int_equal(r.len, 100);
    spool_close(sp);
    for (int pol = SPOOL_FSYNC_ALWAYS; pol <= SPOOL_FSYNC_NEVER; pol++) {
        spool_params p;
        memset(&p, 0, sizeof p);
        p.dir = dir;
        p.fsync_policy = pol;
        p.batch_records = 3;
        char err[128];
        sp = spool_open(&p, err, sizeof err);
        assert_non_null(sp);
        append_n(sp, 10 + 10 * (uint32_t)pol, 5, 0);
        assert_int_equal(spool_tick(sp), 0);
        assert_int_equal(spool_sync(sp), 0);
        spool_close(sp);
    }
    assert_string_equal(spool_fsync_name(spool_fsync_parse("batch")), "batch");
    assert_int_equal(spool_fsync_parse("sometimes"), -1);
    sp = open_sp(16384, 4096);
    collect c;
    pending(sp, &c);
    assert_int_equal(c.n, 16);
    spool_close(sp);
}

/* Downlink commands run at most once: a claimed id is on flash the moment spool_cmd_claim
 * returns (the state file as it is then, with no later close, already refuses it), and the
 * newest ET_SPOOL_CMD_IDS ids are remembered across reopen. */
static void test_cmd_claim_durable(void **state)
{
    (void)state;
    spool *sp = open_sp(1 << 20, 64 << 10);
    append_n(sp, 0, 3, 0);
    assert_int_equal(spool_cmd_claim(sp, 41), 1);
    assert_int_equal(spool_cmd_claim(sp, 41), 0);
    char statep[600];
    snprintf(statep, sizeof statep, "%s/state", dir);
    size_t slen;
    uint8_t *at_claim = slurp(statep, &slen); /* what a power cut right now leaves */
    spool_close(sp);
    spit(statep, at_claim, slen);
    free(at_claim);
    sp = open_sp(1 << 20, 64 << 10);
    assert_int_equal(spool_cmd_claim(sp, 41), 0);
    for (uint64_t id = 100; id < 100 + ET_SPOOL_CMD_IDS; id++)
        assert_int_equal(spool_cmd_claim(sp, id), 1);
    spool_close(sp);
    sp = open_sp(1 << 20, 64 << 10);
    assert_int_equal(spool_cmd_claim(sp, 100 + ET_SPOOL_CMD_IDS - 1), 0);
    assert_int_equal(spool_cmd_claim(sp, 100), 0);
    assert_int_equal(spool_cmd_claim(sp, 41), 1); /* the oldest fell out of the ring */
    spool_rec r;
    static uint8_t buf[512];
    assert_true(spool_peek(sp, &r, buf, sizeof buf) > 0); /* the records survived version 3 */
    spool_close(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_peek_ack_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segments_deleted_when_acked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_without_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption_in_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acks_past_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_newer_than_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption_while_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_order_and_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_and_policies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmd_claim_durable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
