/* test_spool_powerloss.c - the spool against a power cut after every file system call, the
 * way SQLite tests itself (tests/unit/memvfs.h has the file system model).
 *
 * A realistic workload (appends of 40..700-byte records, findings and routine, acks in the
 * uplink's order, batch ticks, a clean restart half-way) runs once on the in-memory file
 * system. After every call that changes something, the test takes the state a power cut
 * right then would leave, under each loss pattern, reopens the spool on it and checks:
 *  - it opens without repair, and keeps working (append + reopen) on every 5th cut;
 *  - no record appears that was never appended, and every length matches;
 *  - fsync = always: every record whose append returned 0 is pending unless its ack was
 *    started (an ack in flight may or may not have landed);
 *  - fsync = batch: at most batch_records such records are missing (the unsynced batch), and
 *    a record cut in half is counted (torn_tails) rather than returned;
 *  - acknowledged records that come back number at most ack_persist_every (ACK_BOUND): that
 *    is what the collector's dedup on (device, snapshot id) absorbs after a power cut, and
 *    what the lazy ack persistence (spool_state.c) trades for flash wear.
 * The number of cut points and recoveries tried is printed. Runs under ASan on the host and
 * under qemu on the ARM boards; ET_POWERLOSS_RECORDS makes the workload longer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base.h"
#include "memvfs.h"
#include "spool.h"

#define MAXREC 2048
#define ACK_BOUND 16  /* ack_persist_every */
#define BATCH 4
#define LAG 12        /* records left unacknowledged behind the newest */

typedef struct rec_model {
    uint8_t appending, appended; /* append started / returned 0 */
    uint8_t acking, acked;       /* ack started / returned 0 */
} rec_model;

typedef struct run {
    memfs fs;
    int policy;
    rec_model m[MAXREC];
    uint32_t n;              /* records started */
    long points, recoveries, resurrected_max, missing_max, torn_seen;
    int in_hook;
} run;

static void mkid(uint32_t i, uint8_t id[SPOOL_ID_LEN])
{
    memset(id, 0, SPOOL_ID_LEN);
    id[0] = 0xB0;
    id[1] = 0x0C;
    id[12] = (uint8_t)(i >> 24);
    id[13] = (uint8_t)(i >> 16);
    id[14] = (uint8_t)(i >> 8);
    id[15] = (uint8_t)i;
}

static uint32_t id_index(const uint8_t id[SPOOL_ID_LEN])
{
    return (uint32_t)id[12] << 24 | (uint32_t)id[13] << 16 | (uint32_t)id[14] << 8 | id[15];
}

static uint32_t rec_len(uint32_t i) { return 40u + (i * 2654435761u) % 661u; }

static void fill(uint32_t i, uint8_t *buf)
{
    uint32_t x = 0x2545F491u ^ (i * 7919u);
    for (uint32_t k = 0; k < rec_len(i); k++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        buf[k] = (uint8_t)x;
    }
}

static spool_params params(run *r, memfs *fs)
{
    spool_params p = {.dir = "/spool",
                      .max_bytes = 256u << 10,
                      .segment_bytes = 4096,
                      .fsync_policy = r->policy,
                      .batch_records = BATCH,
                      .batch_ms = 3600000, /* batches close by count: the test does not depend on time */
                      .ack_persist_every = ACK_BOUND,
                      .ack_persist_ms = 3600000,
                      .vfs = &fs->vfs};
    return p;
}

typedef struct seen {
    run *r;
    uint8_t present[MAXREC];
    int bad;
} seen;

static int seen_cb(const spool_rec *rec, int acked, void *ctx)
{
    seen *s = ctx;
    if (acked)
        return 0;
    uint32_t i = id_index(rec->id);
    if (rec->id[0] != 0xB0 || i >= s->r->n || !s->r->m[i].appending || rec->len != rec_len(i)) {
        fprintf(stderr, "phantom or damaged record %u (len %u)\n", (unsigned)i, (unsigned)rec->len);
        s->bad = 1;
        return 1;
    }
    s->present[i] = 1;
    return 0;
}

/* Recover from one crashed image and check the invariants. */
static void check_recovery(run *r, memfs *img, int pattern)
{
    char err[256];
    spool_params p = params(r, img);
    spool *sp = spool_open(&p, err, sizeof err);
    if (!sp)
        fail_msg("cut %ld (%s): spool_open failed: %s", r->points, mv_pattern_name(pattern), err);
    seen s;
    memset(&s, 0, sizeof s);
    s.r = r;
    assert_int_equal(spool_foreach(sp, seen_cb, &s), 0);
    if (s.bad)
        fail_msg("cut %ld (%s): a record that was never appended", r->points, mv_pattern_name(pattern));
    long missing = 0, resurrected = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        const rec_model *m = &r->m[i];
        if (m->appended && !m->acking && !s.present[i])
            missing++;
        if (m->acked && s.present[i])
            resurrected++;
    }
    spool_stats st;
    spool_get_stats(sp, &st);
    if (r->policy == SPOOL_FSYNC_ALWAYS && missing)
        fail_msg("cut %ld (%s): fsync=always lost %ld durable records", r->points, mv_pattern_name(pattern),
                 missing);
    if (missing > BATCH)
        fail_msg("cut %ld (%s): %ld records lost, more than the batch of %d", r->points, mv_pattern_name(pattern),
                 missing, BATCH);
    if (resurrected > ACK_BOUND)
        fail_msg("cut %ld (%s): %ld acknowledged records came back (bound %d)", r->points,
                 mv_pattern_name(pattern), resurrected, ACK_BOUND);
    assert_int_equal(st.routine_dropped + st.findings_dropped, 0);
    if (resurrected > r->resurrected_max)
        r->resurrected_max = resurrected;
    if (missing > r->missing_max)
        r->missing_max = missing;
    if (st.torn_tails)
        r->torn_seen++;
    /* it keeps working: a new record goes in and survives a clean restart */
    if (r->recoveries % 5 == 0) {
        uint8_t id[SPOOL_ID_LEN], buf[64];
        memset(buf, 0x5A, sizeof buf);
        mkid(0xFFFFFFu, id);
        assert_int_equal(spool_append(sp, 0, id, buf, sizeof buf), 0);
        spool_close(sp);
        sp = spool_open(&p, err, sizeof err);
        if (!sp)
            fail_msg("cut %ld (%s): reopen after recovery failed: %s", r->points, mv_pattern_name(pattern), err);
        uint8_t want[SPOOL_ID_LEN];
        mkid(0xFFFFFFu, want);
        int found = 0;
        spool_rec rec;
        static uint8_t pb[SPOOL_REC_MAX];
        /* drain: every pending record reads back with a good CRC, the new one among them */
        long n;
        while ((n = spool_peek(sp, &rec, pb, sizeof pb)) > 0) {
            found |= !memcmp(rec.id, want, SPOOL_ID_LEN);
            assert_int_equal(spool_ack(sp, rec.id), 0);
        }
        assert_int_equal(n, 0);
        assert_true(found);
    }
    spool_close(sp);
    r->recoveries++;
}

static void on_point(memfs *fs, void *ud)
{
    run *r = ud;
    if (r->in_hook)
        return;
    r->in_hook = 1;
    r->points++;
    for (int pat = 0; pat < MV_NPATTERNS; pat++) {
        memfs img;
        mv_crash(fs, pat, (uint64_t)r->points * 31u + (uint64_t)pat, &img);
        check_recovery(r, &img, pat);
        mv_free(&img);
    }
    r->in_hook = 0;
}

static uint32_t workload_records(void)
{
    const char *e = getenv("ET_POWERLOSS_RECORDS");
    uint32_t n = e ? (uint32_t)strtoul(e, NULL, 10) : 300;
    return n < 20 ? 20 : n > MAXREC - 1 ? MAXREC - 1 : n;
}

/* The workload: appends with acks lagging behind (like an uplink over a slow link), ticks,
 * one clean restart half-way. */
static void workload(run *r)
{
    char err[256];
    spool_params p = params(r, &r->fs);
    spool *sp = spool_open(&p, err, sizeof err);
    assert_non_null(sp);
    static uint8_t buf[SPOOL_REC_MAX];
    uint32_t total = workload_records();
    for (uint32_t i = 0; i < total; i++) {
        uint8_t id[SPOOL_ID_LEN];
        mkid(i, id);
        fill(i, buf);
        r->n = i + 1;
        r->m[i].appending = 1;
        assert_int_equal(spool_append(sp, (i % 7 == 3) ? SPOOL_F_FINDING : 0, id, buf, rec_len(i)), 0);
        r->m[i].appended = 1;
        /* the uplink acks what peek returns, three at a time every third append, keeping
         * LAG records pending (a lost unsynced record must be one nobody acked yet, or the
         * test could not see it), and acks cross segment boundaries */
        if (i % 3 == 2 && i >= LAG)
            for (int k = 0; k < 3; k++) {
                spool_rec rec;
                long n = spool_peek(sp, &rec, buf, sizeof buf);
                assert_true(n >= 0);
                if (n == 0)
                    break;
                uint32_t j = id_index(rec.id);
                assert_true(j < r->n);
                r->m[j].acking = 1;
                assert_int_equal(spool_ack(sp, rec.id), 0);
                r->m[j].acked = 1;
            }
        if (i % 5 == 4)
            assert_int_equal(spool_tick(sp), 0);
        if (i == total / 2) {
            spool_close(sp);
            sp = spool_open(&p, err, sizeof err);
            assert_non_null(sp);
        }
    }
    spool_close(sp);
}

static void run_policy(int policy)
{
    static run r;
    memset(&r, 0, sizeof r);
    r.policy = policy;
    mv_init(&r.fs);
    r.fs.hook = on_point;
    r.fs.hook_ud = &r;
    workload(&r);
    printf("power loss, fsync=%s: %ld crash points x %d loss patterns = %ld recoveries checked; "
           "%u records; at most %ld acked records resent (bound %d), %ld lost (bound %d), %ld with a torn tail\n",
           spool_fsync_name(policy), r.points, MV_NPATTERNS, r.recoveries, (unsigned)r.n, r.resurrected_max,
           ACK_BOUND, r.missing_max, policy == SPOOL_FSYNC_ALWAYS ? 0 : BATCH, r.torn_seen);
    assert_true(r.points > 1000);
    mv_free(&r.fs);
}

static void test_powerloss_always(void **state)
{
    (void)state;
    run_policy(SPOOL_FSYNC_ALWAYS);
}

static void test_powerloss_batch(void **state)
{
    (void)state;
    run_policy(SPOOL_FSYNC_BATCH);
}

/* A batch spool on a fresh in-memory file system (no crash hook). */
static spool *open_batch(run *r, spool_params *p)
{
    memset(r, 0, sizeof *r);
    r->policy = SPOOL_FSYNC_BATCH;
    mv_init(&r->fs);
    *p = params(r, &r->fs);
    char err[256];
    spool *sp = spool_open(p, err, sizeof err);
    assert_non_null(sp);
    return sp;
}

/* seq keeps rising across restarts and power cuts (it is reserved in blocks in the state). */
static void test_seq_survives_restart(void **state)
{
    (void)state;
    static run r;
    char err[256];
    spool_params p;
    spool *sp = open_batch(&r, &p);
    uint64_t last = 0;
    for (int i = 0; i < 5; i++)
        last = spool_next_seq(sp);
    spool_close(sp);
    sp = spool_open(&p, err, sizeof err);
    assert_non_null(sp);
    uint64_t after = spool_next_seq(sp);
    assert_true(after > last);
    /* a power cut without close: numbering still goes on above everything handed out */
    for (int i = 0; i < 3; i++)
        last = spool_next_seq(sp);
    memfs img;
    mv_crash(&r.fs, MV_LOSE_ALL, 1, &img);
    spool_params p2 = params(&r, &img);
    spool *sp2 = spool_open(&p2, err, sizeof err);
    assert_non_null(sp2);
    assert_true(spool_next_seq(sp2) > last);
    spool_close(sp2);
    mv_free(&img);
    spool_close(sp);
    mv_free(&r.fs);
}

/* A batch sync that fails (EIO from the card) is reported and redone by the next tick:
 * afterwards a power cut loses nothing, and the deletion of acked segments still happens. */
static void test_failed_background_sync_is_redone(void **state)
{
    (void)state;
    static run r;
    char err[256];
    spool_params p;
    spool *sp = open_batch(&r, &p);
    static uint8_t buf[SPOOL_REC_MAX];
    for (uint32_t i = 0; i < 40; i++) { /* several 4 KiB segments */
        uint8_t id[SPOOL_ID_LEN];
        mkid(i, id);
        fill(i, buf);
        r.fs.fail_syncs = i == 1 ? 1 : 0;
        spool_append(sp, 0, id, buf, rec_len(i)); /* may start a job that fails */
        spool_tick(sp);
    }
    /* ack everything but the last 5: whole segments become deletable */
    for (int k = 0; k < 35; k++) {
        spool_rec rec;
        assert_true(spool_peek(sp, &rec, buf, sizeof buf) > 0);
        assert_int_equal(spool_ack(sp, rec.id), 0);
    }
    /* the state job (started by the acks; inline, it runs when a tick collects it) fails ... */
    r.fs.fail_syncs = 1;
    int failed = 0;
    for (int k = 0; k < 4; k++)
        failed |= spool_tick(sp) < 0;
    assert_true(failed);
    assert_int_equal(r.fs.fail_syncs, 0);
    /* ... and is redone */
    for (int k = 0; k < 4; k++)
        assert_int_equal(spool_tick(sp), 0);
    int segfiles = 0; /* the acked segments' files are gone, not just forgotten */
    for (int k = 0; k < r.fs.ncur; k++)
        segfiles += strstr(r.fs.cur[k].name, ".seg") != NULL;
    assert_true(segfiles <= 2);
    memfs img;
    mv_crash(&r.fs, MV_LOSE_ALL, 7, &img);
    spool_params p2 = params(&r, &img);
    spool *sp2 = spool_open(&p2, err, sizeof err);
    assert_non_null(sp2);
    spool_stats st;
    spool_get_stats(sp2, &st);
    assert_int_equal(st.pending_routine, 5);      /* nothing lost, nothing acked came back */
    assert_true(st.segments_routine <= 2);         /* the acked segments are gone */
    spool_close(sp2);
    mv_free(&img);
    spool_close(sp);
    mv_free(&r.fs);
}

int main(void)
{
    et_log_level = ET_LOG_ERROR; /* thousands of recoveries each warn about their torn tail */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_survives_restart),
        cmocka_unit_test(test_failed_background_sync_is_redone),
        cmocka_unit_test(test_powerloss_always),
        cmocka_unit_test(test_powerloss_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
