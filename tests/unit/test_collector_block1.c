/* test_collector_block1.c - the collector's Block1 reassembly (collector/src/ingest_block1.c)
 * driven directly: bodies keyed per (session, Request-Tag or token), never per session alone;
 * a delayed block 0 of an old body is not spliced into a new one; a finished body's buffer is
 * freed at once; idle partials expire and give way under budget pressure, counted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ingest_block1.h"

#define BS 64 /* szx 2 */

static b1_block blk(uint64_t session, const char *tag, int rtag, uint32_t num, int more, const uint8_t *body,
                    size_t total, uint64_t now)
{
    size_t off = (size_t)num * BS;
    size_t len = total - off < BS ? total - off : BS;
    b1_block b = {.session = session, .has_rtag = rtag, .tag = (const uint8_t *)tag, .taglen = strlen(tag),
                  .num = num, .szx = 2, .more = more, .data = body + off, .len = len, .now_ms = now};
    return b;
}

/* Sends blocks [from, to) of body under (session, tag); returns the last verdict. */
static int send_blocks(b1_table *t, uint64_t session, const char *tag, const uint8_t *body, size_t total,
                       uint32_t from, uint32_t to, uint64_t now, b1_out *out)
{
    uint32_t nblocks = (uint32_t)((total + BS - 1) / BS);
    for (uint32_t n = from; n < to; n++) {
        b1_block b = blk(session, tag, 1, n, n + 1 < nblocks, body, total, now);
        b1_put(t, &b, out);
        if (out->code != B1_CONTINUE)
            return out->code;
    }
    return out->code;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7);
}

/* The defect: state per session. Body X starts (block 0), the client gives up on it and sends
 * body Y under a new Request-Tag; X's block 0 arrives late, then the rest of Y. Keyed per
 * session, the late block 0 restarted the one buffer and Y's blocks were appended to X's
 * block 0. Keyed per body, Y arrives whole. */
static void test_delayed_block0_is_not_spliced(void **state)
{
    (void)state;
    b1_table t;
    b1_init(&t, 4096, 1 << 20);
    uint8_t x[200], y[200];
    fill(x, sizeof(x), 1);
    fill(y, sizeof(y), 100);
    b1_out o;
    assert_int_equal(send_blocks(&t, 1, "X", x, sizeof(x), 0, 1, 10, &o), B1_CONTINUE);
    assert_int_equal(send_blocks(&t, 1, "Y", y, sizeof(y), 0, 1, 20, &o), B1_CONTINUE);
    b1_block late = blk(1, "X", 1, 0, 1, x, sizeof(x), 30);
    b1_put(&t, &late, &o);
    assert_int_equal(o.code, B1_CONTINUE); /* a duplicate of X's block 0: X's state only */
    assert_int_equal(send_blocks(&t, 1, "Y", y, sizeof(y), 1, 4, 40, &o), B1_DONE);
    assert_int_equal(o.len, sizeof(y));
    assert_memory_equal(o.body, y, sizeof(y));
    b1_release(&t, &o);
    /* X is still there, untouched, and completes too */
    assert_int_equal(send_blocks(&t, 1, "X", x, sizeof(x), 1, 4, 50, &o), B1_DONE);
    assert_memory_equal(o.body, x, sizeof(x));
    b1_release(&t, &o);
    assert_int_equal(t.used, 0);
    assert_int_equal(t.n, 0);
}

/* The same with tokens (no Request-Tag): the token is the key. */
static void test_token_keyed_and_sessions_apart(void **state)
{
    (void)state;
    b1_table t;
    b1_init(&t, 4096, 1 << 20);
    uint8_t a[130], b[130];
    fill(a, sizeof(a), 3);
    fill(b, sizeof(b), 9);
    b1_out o;
    b1_block k = blk(7, "t1", 0, 0, 1, a, sizeof(a), 0);
    b1_put(&t, &k, &o);
    assert_int_equal(o.code, B1_CONTINUE);
    /* same token on another session: a different body */
    k = blk(8, "t1", 0, 0, 1, b, sizeof(b), 0);
    b1_put(&t, &k, &o);
    assert_int_equal(o.code, B1_CONTINUE);
    /* a Request-Tag equal to the token bytes is not the token */
    k = blk(7, "t1", 1, 1, 1, a, sizeof(a), 0);
    b1_put(&t, &k, &o);
    assert_int_equal(o.code, B1_INCOMPLETE);
    for (uint32_t n = 1; n < 3; n++) {
        k = blk(8, "t1", 0, n, n < 2, b, sizeof(b), 0);
        b1_put(&t, &k, &o);
    }
    assert_int_equal(o.code, B1_DONE);
    assert_memory_equal(o.body, b, sizeof(b));
    b1_release(&t, &o);
    b1_drop_session(&t, 7);
    assert_int_equal(t.n, 0);
    assert_int_equal(t.used, 0);
}

/* A finished body leaves the table and its memory goes at b1_release, not at session end;
 * a body in one block is never buffered. */
static void test_finished_body_freed_at_once(void **state)
{
    (void)state;
    b1_table t;
    b1_init(&t, 8192, 1 << 20);
    uint8_t x[1000];
    fill(x, sizeof(x), 5);
    b1_out o;
    assert_int_equal(send_blocks(&t, 1, "A", x, sizeof(x), 0, 16, 0, &o), B1_DONE);
    assert_int_equal(t.n, 0);
    assert_true(t.used >= sizeof(x)); /* held until stored */
    b1_release(&t, &o);
    assert_int_equal(t.used, 0);
    b1_block one = blk(1, "B", 1, 0, 0, x, 40, 0);
    b1_put(&t, &one, &o);
    assert_int_equal(o.code, B1_DONE);
    assert_ptr_equal(o.body, x);
    assert_int_equal(t.used, 0);
    b1_release(&t, &o);
    /* a retransmitted final block after completion does not resurrect the body */
    b1_block fin = blk(1, "A", 1, 15, 0, x, sizeof(x), 1);
    b1_put(&t, &fin, &o);
    assert_int_equal(o.code, B1_INCOMPLETE);
}

/* Idle partials cannot hold the budget: a moving body evicts them once they are idle for
 * B1_EVICT_IDLE_MS (counted); before that the answer is 5.03; after B1_IDLE_MS they expire. */
static void test_idle_partials_cannot_exhaust_budget(void **state)
{
    (void)state;
    b1_table t;
    b1_init(&t, 4096, 16384); /* room for four 4 KiB partials */
    uint8_t x[4096];
    fill(x, sizeof(x), 11);
    b1_out o;
    char tag[16];
    for (int s = 0; s < 4; s++) { /* four idle sessions, each with a half-sent body */
        snprintf(tag, sizeof(tag), "s%d", s);
        assert_int_equal(send_blocks(&t, 100 + (uint64_t)s, tag, x, sizeof(x), 0, 2, 1000, &o), B1_CONTINUE);
    }
    assert_int_equal(t.used, 16384);
    /* a fifth device right away: busy, nothing evicted yet */
    assert_int_equal(send_blocks(&t, 200, "new", x, sizeof(x), 0, 1, 1500, &o), B1_BUSY);
    assert_int_equal(t.evicted, 0);
    assert_int_equal(t.n, 4);
    /* later: the idle ones give way, the whole body goes through */
    assert_int_equal(send_blocks(&t, 200, "new", x, sizeof(x), 0, 64, 1000 + B1_EVICT_IDLE_MS, &o), B1_DONE);
    assert_memory_equal(o.body, x, sizeof(x));
    b1_release(&t, &o);
    assert_int_equal(t.evicted, 1);
    /* the others expire */
    b1_expire(&t, 1000 + B1_IDLE_MS - 1);
    assert_int_equal(t.n, 3);
    b1_expire(&t, 1000 + B1_IDLE_MS);
    assert_int_equal(t.n, 0);
    assert_int_equal(t.expired, 3);
    assert_int_equal(t.used, 0);
}

/* One session cannot hold more than B1_PER_SESSION partials: its oldest goes. */
static void test_per_session_cap(void **state)
{
    (void)state;
    b1_table t;
    b1_init(&t, 4096, 1 << 20);
    uint8_t x[200];
    fill(x, sizeof(x), 2);
    b1_out o;
    char tag[16];
    for (int i = 0; i < B1_PER_SESSION + 3; i++) {
        snprintf(tag, sizeof(tag), "r%d", i);
        assert_int_equal(send_blocks(&t, 1, tag, x, sizeof(x), 0, 1, (uint64_t)i, &o), B1_CONTINUE);
    }
    assert_int_equal(t.n, B1_PER_SESSION);
    assert_int_equal(t.evicted, 3);
    /* the oldest is gone, the newest continues */
    assert_int_equal(send_blocks(&t, 1, "r0", x, sizeof(x), 1, 2, 10, &o), B1_INCOMPLETE);
    snprintf(tag, sizeof(tag), "r%d", B1_PER_SESSION + 2);
    assert_int_equal(send_blocks(&t, 1, tag, x, sizeof(x), 1, 4, 10, &o), B1_DONE);
    b1_release(&t, &o);
    b1_clear(&t);
    assert_int_equal(t.used, 0);
}

/* Limits: Size1 or blocks over max_body are 4.13 before anything is buffered; a short
 * non-final block is 4.00; a body that starts at block 1 is 4.08; a reused key with a new
 * block 0 restarts (counted). */
static void test_limits_and_restart(void **state)
{
    (void)state;
    b1_table t;
    b1_init(&t, 256, 1 << 20);
    uint8_t x[600];
    fill(x, sizeof(x), 4);
    b1_out o;
    b1_block b = blk(1, "a", 1, 0, 1, x, sizeof(x), 0);
    b.size1 = 600;
    b1_put(&t, &b, &o);
    assert_int_equal(o.code, B1_TOO_LARGE);
    assert_int_equal(t.used, 0);
    assert_int_equal(send_blocks(&t, 1, "a", x, sizeof(x), 0, 10, 0, &o), B1_TOO_LARGE);
    assert_int_equal(t.n, 0);
    b = blk(1, "b", 1, 0, 1, x, 10, 0);
    b1_put(&t, &b, &o);
    assert_int_equal(o.code, B1_BAD);
    b = blk(1, "c", 1, 1, 1, x, 200, 0);
    b1_put(&t, &b, &o);
    assert_int_equal(o.code, B1_INCOMPLETE);
    assert_int_equal(send_blocks(&t, 1, "d", x, 200, 0, 2, 0, &o), B1_CONTINUE);
    uint8_t y[200];
    fill(y, sizeof(y), 77);
    assert_int_equal(send_blocks(&t, 1, "d", y, 200, 0, 4, 0, &o), B1_DONE); /* same tag, new body */
    assert_memory_equal(o.body, y, sizeof(y));
    assert_int_equal(t.restarted, 1);
    b1_release(&t, &o);
    b = blk(1, "0123456789", 1, 0, 1, x, 64, 0); /* Request-Tag over 8 bytes */
    b1_put(&t, &b, &o);
    assert_int_equal(o.code, B1_BAD);
    assert_int_equal(t.used, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delayed_block0_is_not_spliced),
        cmocka_unit_test(test_token_keyed_and_sessions_apart),
        cmocka_unit_test(test_finished_body_freed_at_once),
        cmocka_unit_test(test_idle_partials_cannot_exhaust_budget),
        cmocka_unit_test(test_per_session_cap),
        cmocka_unit_test(test_limits_and_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
