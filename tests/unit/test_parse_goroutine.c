/* test_parse_goroutine.c - goroutine / goroutineleak text profiles (debug=1, debug=2) from real
 * Go 1.21 / 1.23 / 1.27 dumps (tests/fixtures/pprof, see its README for what they contain),
 * any chunking, and hostile input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "parse_goroutine.h"
#include "parse_fixture.h"

static et_gprofile prof, prof2;
static et_gparser parser;

static int feed_cb(void *p, const char *buf, size_t len)
{
    return et_gparse_feed(p, buf, len);
}

static int parse_buf(et_gprofile *out, const char *buf, size_t len, unsigned chunking, int kind, char *err, size_t errlen)
{
    et_gparse_init(&parser, out, kind, 0);
    fixture_feed(&parser, feed_cb, buf, len, chunking);
    return et_gparse_finish(&parser, err, errlen);
}

static int parse_str(const char *s, char *err)
{
    return parse_buf(&prof, s, strlen(s), 0, ET_GP_GOROUTINE, err, 128);
}

static const et_gsite *find_site(const et_gprofile *p, const char *func, enum et_gstate st)
{
    for (uint32_t i = 0; i < p->nsites; i++)
        if (strcmp(p->sites[i].user.func, func) == 0 && p->sites[i].state == st)
            return &p->sites[i];
    return NULL;
}

static uint32_t count_at(const et_gprofile *p, const char *func)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->nsites; i++)
        if (strcmp(p->sites[i].user.func, func) == 0)
            n += p->sites[i].count;
    return n;
}

static void assert_same_profile(const et_gprofile *a, const et_gprofile *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->debug, b->debug);
    assert_int_equal(a->header_total, b->header_total);
    assert_int_equal(a->goroutines, b->goroutines);
    assert_int_equal(a->nsites, b->nsites);
    assert_int_equal(a->user_sync_blocked, b->user_sync_blocked);
    assert_int_equal(a->user_other, b->user_other);
    assert_memory_equal(a->by_state, b->by_state, sizeof(a->by_state));
    assert_memory_equal(&a->trunc, &b->trunc, sizeof(a->trunc));
    for (uint32_t i = 0; i < a->nsites; i++) {
        const et_gsite *x = &a->sites[i], *y = &b->sites[i];
        assert_true(x->key == y->key);
        assert_int_equal(x->count, y->count);
        assert_int_equal(x->state, y->state);
        assert_int_equal(x->max_wait_min, y->max_wait_min);
        assert_int_equal(x->leaked_count, y->leaked_count);
        assert_int_equal(x->nstack, y->nstack);
        assert_string_equal(x->user.func, y->user.func);
        assert_string_equal(x->user.file, y->user.file);
        assert_int_equal(x->user.line, y->user.line);
        assert_string_equal(x->created_by, y->created_by);
        assert_string_equal(x->labels, y->labels);
        assert_string_equal(x->block_func, y->block_func);
        for (int k = 0; k < x->nstack; k++)
            assert_string_equal(x->stack[k], y->stack[k]);
    }
}

static const char *const fixtures[] = {
    "go1.21-goroutine.debug1.txt", "go1.21-goroutine.debug2.txt", "go1.23-goroutine.debug1.txt",
    "go1.23-goroutine.debug2.txt", "go1.27-goroutine.debug1.txt", "go1.27-goroutine.debug2.txt",
    "go1.27-goroutineleak.debug1.txt", "go1.27-goroutineleak.debug2.txt", "go1.27-traceback-system.debug2.txt",
    "go1.23-keepalive-idle-goroutine.debug1.txt", "go1.23-keepalive-idle-goroutine.debug2.txt",
};

/* The same profile whatever the chunking: whole, byte by byte, random 1..N. */
static void test_chunking(void **state)
{
    (void)state;
    static const unsigned chunkings[] = {1, 2, 3, 7, 64, 4096};
    for (size_t f = 0; f < ET_ARRAY_LEN(fixtures); f++) {
        size_t len;
        char *buf = fixture_load(fixtures[f], &len);
        assert_non_null(buf);
        int kind = strstr(fixtures[f], "leak") ? ET_GP_GOROUTINELEAK : ET_GP_GOROUTINE;
        char err[128];
        assert_int_equal(parse_buf(&prof, buf, len, 0, kind, err, sizeof err), 0);
        assert_true(prof.goroutines > 0);
        for (size_t c = 0; c < ET_ARRAY_LEN(chunkings); c++) {
            assert_int_equal(parse_buf(&prof2, buf, len, chunkings[c], kind, err, sizeof err), 0);
            assert_same_profile(&prof, &prof2);
        }
        free(buf);
    }
}

/* Go 1.21/1.23/1.27 debug=2: the states the fixture program parks goroutines in. */
static void test_debug2_states(void **state)
{
    (void)state;
    static const char *const names[] = {"go1.21-goroutine.debug2.txt", "go1.23-goroutine.debug2.txt", "go1.27-goroutine.debug2.txt"};
    for (size_t f = 0; f < ET_ARRAY_LEN(names); f++) {
        size_t len;
        char *buf = fixture_load(names[f], &len);
        assert_non_null(buf);
        char err[128];
        assert_int_equal(parse_buf(&prof, buf, len, 0, ET_GP_GOROUTINE, err, sizeof err), 0);
        assert_int_equal(prof.debug, 2);
        assert_int_equal(prof.goroutines, 19);
        assert_int_equal(prof.header_total, 19);
        const et_gsite *s = find_site(&prof, "main.leakSend", ET_G_CHAN_SEND);
        assert_non_null(s);
        assert_int_equal(s->count, 5);
        assert_string_equal(s->created_by, "main.main");
        assert_string_equal(s->user.file, "/tmp/gdump/main.go");
        assert_int_equal(s->user.line, 17);
        assert_false(s->stdlib_only);
        assert_non_null(find_site(&prof, "main.leakRecv", ET_G_CHAN_RECV));
        assert_int_equal(count_at(&prof, "main.leakRecv"), 4);
        assert_non_null(find_site(&prof, "main.leakSelect", ET_G_SELECT));
        assert_non_null(find_site(&prof, "main.leakForever", ET_G_SELECT_NO_CASES));
        assert_non_null(find_site(&prof, "main.lockTwice", ET_G_MUTEX));
        assert_non_null(find_site(&prof, "main.rlock", ET_G_RWMUTEX_R));
        assert_non_null(find_site(&prof, "main.wlock", ET_G_RWMUTEX_W));
        assert_non_null(find_site(&prof, "main.condWait", ET_G_COND_WAIT));
        /* "semacquire" on 1.21/1.23, "sync.WaitGroup.Wait" on 1.27: one state */
        s = find_site(&prof, "main.wgWait", ET_G_WAITGROUP);
        assert_non_null(s);
        assert_string_equal(s->block_func, "sync.(*WaitGroup).Wait");
        assert_non_null(find_site(&prof, "main.sleeper", ET_G_SLEEP));
        assert_non_null(find_site(&prof, "main.nilSend", ET_G_CHAN_SEND_NIL));
        assert_non_null(find_site(&prof, "main.main.func2", ET_G_RUNNING));
        assert_int_equal(prof.by_state[ET_G_CHAN_SEND], 5);
        assert_int_equal(prof.user_sync_blocked, 17);
        assert_int_equal(prof.user_other, 2);
        assert_int_equal(prof.trunc.malformed, 0);
        assert_int_equal(prof.trunc.lines, 0);
        /* the site key leaves created_by out (debug=1 and proto do not print it): the
         * labelled goroutine created by main.main.func1 shares main.leakRecv's site, which
         * keeps the creator and labels of its first goroutine */
        s = find_site(&prof, "main.leakRecv", ET_G_CHAN_RECV);
        assert_int_equal(s->count, 4);
        assert_string_equal(s->created_by, "main.main");
        free(buf);
    }
}

static void test_debug1(void **state)
{
    (void)state;
    static const char *const names[] = {"go1.21-goroutine.debug1.txt", "go1.23-goroutine.debug1.txt", "go1.27-goroutine.debug1.txt"};
    for (size_t f = 0; f < ET_ARRAY_LEN(names); f++) {
        size_t len;
        char *buf = fixture_load(names[f], &len);
        assert_non_null(buf);
        char err[128];
        assert_int_equal(parse_buf(&prof, buf, len, 0, ET_GP_GOROUTINE, err, sizeof err), 0);
        assert_int_equal(prof.debug, 1);
        assert_int_equal(prof.kind, ET_GP_GOROUTINE);
        assert_int_equal(prof.header_total, 19);
        assert_int_equal(prof.goroutines, 19);
        /* debug=1 hides the runtime frames, so channel waits are "unknown" but located */
        const et_gsite *s = find_site(&prof, "main.leakSend", ET_G_UNKNOWN);
        assert_non_null(s);
        assert_int_equal(s->count, 5);
        assert_int_equal(s->user.line, 17);
        assert_int_equal(count_at(&prof, "main.leakRecv"), 4);
        assert_non_null(find_site(&prof, "main.wgWait", ET_G_WAITGROUP));
        assert_non_null(find_site(&prof, "main.lockTwice", ET_G_MUTEX));
        assert_non_null(find_site(&prof, "main.wlock", ET_G_RWMUTEX_W));
        assert_non_null(find_site(&prof, "main.rlock", ET_G_RWMUTEX_R));
        assert_non_null(find_site(&prof, "main.condWait", ET_G_COND_WAIT));
        assert_non_null(find_site(&prof, "main.sleeper", ET_G_SLEEP));
        assert_non_null(find_site(&prof, "main.main.func2", ET_G_RUNNING));
        /* "# labels:" of the first record at a site; the labelled goroutine shares leakRecv's
         * site with 3 unlabelled ones, so look at the raw record count instead */
        assert_int_equal(prof.trunc.malformed, 0);
        free(buf);
    }
    /* labels are kept when the labelled record starts a site */
    char err[128];
    assert_int_equal(parse_str("goroutine profile: total 2\n"
                               "2 @ 0x1 0x2\n"
                               "# labels: {\"tenant\":\"a\"}\n"
                               "#\t0x1\tmain.work+0x10\t\t/src/w.go:7\n"
                               "\n",
                               err),
                     0);
    assert_int_equal(prof.nsites, 1);
    assert_string_equal(prof.sites[0].labels, "{\"tenant\":\"a\"}");
    assert_string_equal(prof.sites[0].user.file, "/src/w.go");
    assert_int_equal(prof.sites[0].user.line, 7);
    assert_int_equal(prof.sites[0].count, 2);
}

static void test_goroutineleak(void **state)
{
    (void)state;
    size_t len;
    char err[128];
    char *buf = fixture_load("go1.27-goroutineleak.debug1.txt", &len);
    assert_non_null(buf);
    /* the header says what it is, whatever the caller asked for */
    assert_int_equal(parse_buf(&prof, buf, len, 0, ET_GP_GOROUTINE, err, sizeof err), 0);
    assert_int_equal(prof.kind, ET_GP_GOROUTINELEAK);
    assert_int_equal(prof.header_total, 16);
    assert_int_equal(prof.goroutines, 16);
    const et_gsite *s = find_site(&prof, "main.leakSend", ET_G_UNKNOWN);
    assert_non_null(s);
    assert_int_equal(s->leaked_count, 5);
    /* the mutex locked twice is reachable from main: not proved leaked */
    assert_int_equal(count_at(&prof, "main.lockTwice"), 0);
    free(buf);

    /* debug=2 dumps every goroutine; the leak parser keeps the "(leaked)" ones */
    buf = fixture_load("go1.27-goroutineleak.debug2.txt", &len);
    assert_non_null(buf);
    assert_int_equal(parse_buf(&prof, buf, len, 0, ET_GP_GOROUTINELEAK, err, sizeof err), 0);
    assert_int_equal(prof.goroutines, 16);
    s = find_site(&prof, "main.leakSend", ET_G_CHAN_SEND);
    assert_non_null(s);
    assert_int_equal(s->count, 5);
    assert_int_equal(s->leaked_count, 5);
    assert_int_equal(count_at(&prof, "main.lockTwice"), 0);
    assert_int_equal(count_at(&prof, "main.main.func2"), 0);
    /* as a plain goroutine dump: all 19, leaked ones still marked */
    assert_int_equal(parse_buf(&prof, buf, len, 0, ET_GP_GOROUTINE, err, sizeof err), 0);
    assert_int_equal(prof.goroutines, 19);
    s = find_site(&prof, "main.leakSend", ET_G_CHAN_SEND);
    assert_int_equal(s->leaked_count, 5);
    s = find_site(&prof, "main.lockTwice", ET_G_MUTEX);
    assert_non_null(s);
    assert_int_equal(s->leaked_count, 0);
    free(buf);
}

static void test_traceback_system(void **state)
{
    (void)state;
    size_t len;
    char err[128];
    char *buf = fixture_load("go1.27-traceback-system.debug2.txt", &len);
    assert_non_null(buf);
    assert_int_equal(parse_buf(&prof, buf, len, 0, ET_GP_GOROUTINE, err, sizeof err), 0);
    assert_int_equal(prof.goroutines, 6);
    const et_gsite *s = find_site(&prof, "main.blocked", ET_G_CHAN_RECV);
    assert_non_null(s);
    assert_string_equal(s->labels, "{tenant: \"a b\"}");
    assert_string_equal(s->user.file, "/tmp/crash/main.go"); /* "fp= sp= pc=" stripped */
    assert_int_equal(s->user.line, 9);
    assert_string_equal(s->stack[0], "runtime.gopark");
    /* runtime's own goroutines: stdlib_only, site = their entry function */
    s = find_site(&prof, "runtime.forcegchelper", ET_G_RUNTIME);
    assert_non_null(s);
    assert_true(s->stdlib_only);
    assert_int_equal(prof.by_state[ET_G_RUNTIME], 4);
    assert_int_equal(prof.user_sync_blocked, 1);
    free(buf);
}

/* A real net/http service (tools/testsvc keepalive-idle, Go 1.23): idle keep-alive
 * connections are stdlib-only IO waits whose stack keeps the entry function (conn.serve) for
 * the analyzer's allow-list. */
static void test_keepalive_service(void **state)
{
    (void)state;
    static const char *const names[] = {"go1.23-keepalive-idle-goroutine.debug2.txt", "go1.23-keepalive-idle-goroutine.debug1.txt"};
    for (size_t f = 0; f < ET_ARRAY_LEN(names); f++) {
        size_t len;
        char *buf = fixture_load(names[f], &len);
        assert_non_null(buf);
        char err[128];
        assert_int_equal(parse_buf(&prof, buf, len, 0, ET_GP_GOROUTINE, err, sizeof err), 0);
        assert_int_equal(prof.goroutines, 36);
        const et_gsite *s = find_site(&prof, "net.(*netFD).Read", ET_G_IO_WAIT);
        assert_non_null(s);
        assert_int_equal(s->count, 20);
        assert_true(s->stdlib_only);
        assert_int_equal(s->nstack, ET_STACK_MAX);
        assert_string_equal(s->stack[0], "internal/poll.runtime_pollWait");
        assert_string_equal(s->stack[ET_STACK_MAX - 1], "net/http.(*conn).serve");
        s = find_site(&prof, "net/http.(*persistConn).writeLoop", f == 0 ? ET_G_SELECT : ET_G_UNKNOWN);
        assert_non_null(s);
        assert_int_equal(s->count, 10);
        assert_true(s->stdlib_only);
        if (f == 0) {
            assert_string_equal(find_site(&prof, "net.(*netFD).Read", ET_G_IO_WAIT)->created_by, "net/http.(*Server).Serve");
            assert_string_equal(s->created_by, "net/http.(*Transport).dialConn");
        }
        /* the harness' ticker loop is the service's own code */
        assert_int_equal(count_at(&prof, "edgetrace/testsvc/internal/harness.(*Service).EveryRate.func1"), 2);
        assert_int_equal(prof.user_sync_blocked, f == 0 ? 2 : 0);
        free(buf);
    }
}

static void test_synthetic_debug2(void **state)
{
    (void)state;
    char err[128];
    /* waits, attributes, elided frames, ancestry, a stdlib-only goroutine, a dot-less module */
    const char *dump =
        "goroutine 7 [chan receive, 15 minutes, locked to thread]:\n"
        "edgetrace/testsvc/internal/pipe.(*Stage).run(0xc000010000)\n"
        "\t/src/internal/pipe/stage.go:44 +0x1d\n"
        "created by edgetrace/testsvc/internal/pipe.Start in goroutine 1\n"
        "\t/src/internal/pipe/start.go:10 +0x5e\n"
        "\n"
        "goroutine 8 [chan receive, 3 minutes]:\n"
        "edgetrace/testsvc/internal/pipe.(*Stage).run(0xc000010000)\n"
        "\t/src/internal/pipe/stage.go:44 +0x1d\n"
        "...additional frames elided...\n"
        "created by edgetrace/testsvc/internal/pipe.Start in goroutine 1\n"
        "\t/src/internal/pipe/start.go:10 +0x5e\n"
        "[originating from goroutine 1]:\n"
        "main.somewhere()\n"
        "\t/src/main.go:1 +0x1\n"
        "\n"
        "goroutine 9 [IO wait, 90 minutes]:\n"
        "internal/poll.runtime_pollWait(0x7f, 0x72)\n"
        "\t/go/src/runtime/netpoll.go:351 +0x85\n"
        "net.(*netFD).Read(0xc0000a2000, {0xc0000b4000, 0x1000, 0x1000})\n"
        "\t/go/src/net/fd_posix.go:68 +0x25\n"
        "net/http.(*conn).serve(0xc0000b2000, {0x7a5e38, 0xc0000a0120})\n"
        "\t/go/src/net/http/server.go:2102 +0x625\n"
        "created by net/http.(*Server).Serve in goroutine 1\n"
        "\t/go/src/net/http/server.go:3454 +0x485\n"
        "\n"
        "goroutine 10 [semacquire]:\n"
        "sync.runtime_Semacquire(0xc000010008?)\n"
        "\t/go/src/runtime/sema.go:62 +0x25\n"
        "sync.(*WaitGroup).Wait(0xc000010000?)\n"
        "\t/go/src/sync/waitgroup.go:116 +0x48\n"
        "main.(*batcher).flush(...)\n"
        "\t/src/batcher.go:31\n"
        "main.main.func1[...](0x1)\n"
        "\t/src/main.go:20 +0x2a\n"
        "created by main.main in goroutine 1\n"
        "\t/src/main.go:18 +0x99\n";
    assert_int_equal(parse_str(dump, err), 0); /* no trailing blank line: finish closes it */
    assert_int_equal(prof.goroutines, 4);
    const et_gsite *s = find_site(&prof, "edgetrace/testsvc/internal/pipe.(*Stage).run", ET_G_CHAN_RECV);
    assert_non_null(s);
    assert_int_equal(s->count, 2);
    assert_int_equal(s->max_wait_min, 15);
    assert_int_equal(s->waiting_count, 2);
    assert_false(s->stdlib_only);
    assert_string_equal(s->created_by, "edgetrace/testsvc/internal/pipe.Start");
    assert_int_equal(s->nstack, 1); /* ancestry frames are not part of the stack */
    s = find_site(&prof, "net.(*netFD).Read", ET_G_IO_WAIT);
    assert_non_null(s);
    assert_true(s->stdlib_only);
    assert_int_equal(s->max_wait_min, 90);
    assert_string_equal(s->created_by, "net/http.(*Server).Serve");
    assert_string_equal(s->stack[2], "net/http.(*conn).serve");
    s = find_site(&prof, "main.(*batcher).flush", ET_G_WAITGROUP);
    assert_non_null(s);
    assert_int_equal(s->user.line, 31);
    assert_string_equal(s->user.file, "/src/batcher.go");
    assert_int_equal(prof.user_sync_blocked, 3);
    assert_int_equal(prof.user_other, 0);
    assert_int_equal(prof.by_state[ET_G_IO_WAIT], 1);

    /* CRLF line ends (a proxy) parse the same */
    /* Go 1.27 header labels, kept from the first goroutine of a site */
    assert_int_equal(parse_str("goroutine 3 [select] {worker: w1, \"a b\": c}:\nmain.loop()\n\t/src/m.go:5 +0x1\n\n"
                               "goroutine 4 [select] {worker: w2}:\nmain.loop()\n\t/src/m.go:5 +0x1\n\n", err),
                     0);
    assert_int_equal(prof.nsites, 1);
    assert_string_equal(prof.sites[0].labels, "{worker: w1, \"a b\": c}");
    assert_int_equal(prof.sites[0].count, 2);
    assert_int_equal(parse_str("goroutine 1 [select]:\r\nmain.loop()\r\n\t/src/m.go:5 +0x1\r\n\r\n", err), 0);
    s = find_site(&prof, "main.loop", ET_G_SELECT);
    assert_non_null(s);
    assert_int_equal(s->user.line, 5);
}

/* debug=2 goroutine ids: the lowest ET_GSITE_IDS ids per site (ascending, whatever order the
 * dump lists them in) with the wait each printed, and the wait histogram of every goroutine. */
static void test_debug2_ids(void **state)
{
    (void)state;
    char err[128];
    static char dump[16384];
    size_t n = 0;
    /* 12 goroutines at one site listed out of order (ids 40, 39, ..., 29), waits 0..11 min, and
     * one at another site */
    for (int i = 0; i < 12; i++) {
        int id = 40 - i, wait = i;
        n += (size_t)snprintf(dump + n, sizeof dump - n,
                              wait ? "goroutine %d [chan receive, %d minutes]:\n" : "goroutine %d [chan receive]:\n", id,
                              wait);
        n += (size_t)snprintf(dump + n, sizeof dump - n, "main.(*Pipeline).aggregate(0xc0)\n\t/src/pipeline.go:33 +0x1d\n"
                                                         "created by main.(*Pipeline).Ingest in goroutine 1\n"
                                                         "\t/src/pipeline.go:20 +0x5e\n\n");
    }
    n += (size_t)snprintf(dump + n, sizeof dump - n,
                          "goroutine 18446744073709551615 [select, 45 minutes]:\nmain.loop()\n\t/src/m.go:5 +0x1\n\n");
    assert_int_equal(parse_str(dump, err), 0);
    const et_gsite *s = find_site(&prof, "main.(*Pipeline).aggregate", ET_G_CHAN_RECV);
    assert_non_null(s);
    assert_int_equal(s->count, 12);
    assert_int_equal(s->nids, ET_GSITE_IDS);
    for (int k = 0; k < ET_GSITE_IDS; k++) {
        assert_int_equal(s->ids[k], 29 + k);            /* the oldest, ascending */
        assert_int_equal(s->id_wait_min[k], 40 - 29 - k); /* id 29 printed 11 minutes */
    }
    assert_int_equal(s->wait_hist[0], 1); /* no wait printed */
    assert_int_equal(s->wait_hist[1], 4); /* 1-4 */
    assert_int_equal(s->wait_hist[2], 7); /* 5-11 */
    assert_int_equal(s->wait_hist[3], 0);
    s = find_site(&prof, "main.loop", ET_G_SELECT);
    assert_non_null(s);
    assert_int_equal(s->nids, 1);
    assert_true(s->ids[0] == UINT64_MAX);
    assert_int_equal(s->wait_hist[3], 1);
    /* debug=1 has no ids */
    assert_int_equal(parse_str("goroutine profile: total 3\n3 @ 0x1 0x2\n#\t0x1\tmain.loop+0x1\t/src/m.go:5\n\n", err), 0);
    assert_int_equal(prof.sites[0].nids, 0);
}

/* A stack deeper than ET_STACK_MAX keeps the innermost frames and the entry function. */
static void test_deep_stack(void **state)
{
    (void)state;
    char *dump = malloc(64 * 1024);
    size_t n = (size_t)sprintf(dump, "goroutine 5 [chan send]:\n");
    for (int i = 0; i < 40; i++)
        n += (size_t)sprintf(dump + n, "main.rec%d(0x1)\n\t/src/r.go:%d +0x1\n", i, i + 1);
    n += (size_t)sprintf(dump + n, "main.entry()\n\t/src/e.go:3 +0x1\ncreated by main.main in goroutine 1\n\t/src/m.go:9 +0x1\n\n");
    char err[128];
    assert_int_equal(parse_buf(&prof, dump, n, 0, ET_GP_GOROUTINE, err, sizeof err), 0);
    assert_int_equal(prof.nsites, 1);
    const et_gsite *s = &prof.sites[0];
    assert_int_equal(s->nstack, ET_STACK_MAX);
    assert_string_equal(s->stack[0], "main.rec0");
    assert_string_equal(s->stack[ET_STACK_MAX - 1], "main.entry");
    assert_int_equal(prof.trunc.frames, 41 - ET_STACK_MAX);
    assert_string_equal(s->user.func, "main.rec0");
    assert_int_equal(s->user.line, 1);
    free(dump);
}

/* More distinct sites than ET_MAX_GSITES fold into one overflow site, counted. */
static void test_site_overflow(void **state)
{
    (void)state;
    const int nsites = 1000;
    char *dump = malloc((size_t)nsites * 128 + 64);
    size_t n = 0;
    for (int i = 0; i < nsites; i++)
        n += (size_t)sprintf(dump + n, "goroutine %d [select]:\nmain.site%d()\n\t/src/s.go:%d +0x1\n\n", i + 1, i, i + 1);
    char err[128];
    assert_int_equal(parse_buf(&prof, dump, n, 0, ET_GP_GOROUTINE, err, sizeof err), 0);
    assert_int_equal(prof.nsites, ET_MAX_GSITES);
    assert_int_equal(prof.goroutines, (uint64_t)nsites);
    const et_gsite *o = &prof.sites[ET_MAX_GSITES - 1];
    assert_true(o->overflow);
    assert_int_equal(o->count, nsites - (ET_MAX_GSITES - 1));
    assert_int_equal(prof.trunc.sites, nsites - (ET_MAX_GSITES - 1));
    uint64_t sum = 0;
    for (uint32_t i = 0; i < prof.nsites; i++)
        sum += prof.sites[i].count;
    assert_int_equal(sum, (uint64_t)nsites);
    /* a site seen before the table filled still gets its goroutines afterwards */
    n = 0;
    for (int i = 0; i < nsites; i++)
        n += (size_t)sprintf(dump + n, "goroutine %d [select]:\nmain.site%d()\n\t/src/s.go:%d +0x1\n\n", i + 1, i % 500, i % 500 + 1);
    assert_int_equal(parse_buf(&prof, dump, n, 0, ET_GP_GOROUTINE, err, sizeof err), 0);
    assert_int_equal(prof.sites[0].count, 2);
    free(dump);
}

/* Lines longer than the line buffer are cut and counted; parsing goes on. */
static void test_huge_lines(void **state)
{
    (void)state;
    size_t big = 3 * ET_GP_LINE_MAX + 17;
    char *dump = malloc(big + 512);
    size_t n = (size_t)sprintf(dump, "goroutine 1 [chan send]:\nmain.");
    memset(dump + n, 'x', big);
    n += big;
    n += (size_t)sprintf(dump + n, "(0x1)\n\t/src/a.go:1 +0x1\n\ngoroutine 2 [chan receive]:\nmain.ok()\n\t/src/b.go:2 +0x1\n\n");
    static const unsigned chunkings[] = {0, 1, 5, 1000, 5000};
    for (size_t c = 0; c < ET_ARRAY_LEN(chunkings); c++) {
        char err[128];
        assert_int_equal(parse_buf(&prof, dump, n, chunkings[c], ET_GP_GOROUTINE, err, sizeof err), 0);
        assert_int_equal(prof.trunc.lines, 1);
        assert_int_equal(prof.goroutines, 2);
        assert_int_equal(prof.trunc.strings, 1);
        const et_gsite *s = find_site(&prof, "main.ok", ET_G_CHAN_RECV);
        assert_non_null(s);
        assert_int_equal(s->user.line, 2);
        assert_int_equal(strlen(prof.sites[0].user.func), ET_FUNC_MAX - 1);
    }
    free(dump);
}

/* A dump cut anywhere (Go's 64 MiB cap, a service dying mid-response) still parses what came. */
static void test_truncated(void **state)
{
    (void)state;
    size_t len;
    char *buf = fixture_load("go1.27-goroutine.debug2.txt", &len);
    assert_non_null(buf);
    for (size_t cut = 1; cut < len; cut += 37) {
        char err[128];
        int rc = parse_buf(&prof, buf, cut, 0, ET_GP_GOROUTINE, err, sizeof err);
        if (rc == 0) {
            assert_true(prof.goroutines <= 19);
            if (buf[cut - 1] != '\n')
                assert_true(prof.input_cut);
        } else {
            assert_true(err[0] != 0);
        }
    }
    assert_int_equal(parse_buf(&prof, buf, len, 0, ET_GP_GOROUTINE, NULL, 0), 0);
    assert_false(prof.input_cut);
    /* cut after a function line, on a newline: still seen as cut */
    const char *d = "goroutine 1 [select]:\nmain.a()\n\t/a.go:1 +0x1\n\ngoroutine 2 [select]:\nmain.b()\n";
    assert_int_equal(parse_buf(&prof, d, strlen(d), 0, ET_GP_GOROUTINE, NULL, 0), 0);
    assert_true(prof.input_cut);
    size_t complete = (size_t)(strstr(d, "\n\ngoroutine 2") - d) + 2;
    assert_int_equal(parse_buf(&prof, d, complete, 0, ET_GP_GOROUTINE, NULL, 0), 0);
    assert_false(prof.input_cut); /* ends after a blank line: complete */
    free(buf);
}

static void test_bad_input(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(parse_buf(&prof, "", 0, 0, ET_GP_GOROUTINE, err, sizeof err), -1);
    assert_string_equal(err, "empty body");
    assert_int_equal(parse_str("\n\n\n", err), -1);
    assert_non_null(strstr(err, "blank"));
    assert_int_equal(parse_str("<!DOCTYPE html>\n<html><body>502 Bad Gateway</body></html>\n", err), -1);
    assert_non_null(strstr(err, "HTML"));
    assert_int_equal(parse_str("404 page not found\n", err), -1);
    assert_non_null(strstr(err, "not a goroutine profile"));
    assert_non_null(strstr(err, "404 page not found"));
    assert_int_equal(parse_str("Unknown profile: goroutineleak\n", err), -1);
    assert_int_equal(parse_str("heap profile: 1: 2 [3: 4] @ heap/512\n", err), -1);
    assert_non_null(strstr(err, "heap"));
    assert_int_equal(parse_buf(&prof, "\x1f\x8b\x08\x00garbage", 12, 0, ET_GP_GOROUTINE, err, sizeof err), -1);
    assert_non_null(strstr(err, "gzip"));
    /* a non-Go program's text, binary noise */
    assert_int_equal(parse_str("# HELP process_cpu_seconds_total\nprocess_cpu_seconds_total 1.5\n", err), -1);
    char noise[256];
    for (int i = 0; i < 256; i++)
        noise[i] = (char)(i * 37 + 11);
    assert_int_equal(parse_buf(&prof, noise, sizeof noise, 0, ET_GP_GOROUTINE, err, sizeof err), -1);
    /* feeding after the verdict is harmless */
    assert_int_equal(et_gparse_feed(&parser, "goroutine 1 [select]:\n", 22), -1);
    /* a header with garbage records */
    assert_int_equal(parse_str("goroutine profile: total 5\nthis is not\na record\n", err), -1);
    /* a valid header and nothing else: an idle profile, zero goroutines accounted */
    assert_int_equal(parse_str("goroutine profile: total 0\n", err), 0);
    assert_int_equal(prof.goroutines, 0);
    /* garbage lines inside a debug=2 dump are counted, not fatal */
    assert_int_equal(parse_str("goroutine 1 [select]:\nmain.a()\n\t/a.go:1 +0x1\n\n???\n!!!\n"
                               "goroutine 2 [select]:\nmain.b()\n\tno line number here\n\n", err), 0);
    assert_int_equal(prof.goroutines, 2);
    assert_int_equal(prof.trunc.malformed, 2);
    /* NUL bytes and a header without ']' */
    assert_int_equal(parse_buf(&prof, "goroutine 1 [sel\0ect\nmain.a()\n\n", 31, 0, ET_GP_GOROUTINE, err, sizeof err), 0);
    assert_int_equal(prof.goroutines, 1);
    /* hostile counts saturate instead of wrapping */
    assert_int_equal(parse_str("goroutine profile: total 1\n"
                               "4294967295 @ 0x1\n#\t0x1\tmain.a+0x1\t/a.go:1\n\n"
                               "4294967295 @ 0x1\n#\t0x1\tmain.a+0x1\t/a.go:1\n\n"
                               "99999999999999999999999 @ 0x1\n#\t0x1\tmain.a+0x1\t/a.go:1\n\n",
                               err),
                     0);
    assert_int_equal(prof.nsites, 1);
    assert_true(prof.sites[0].count == UINT32_MAX);
    assert_true(prof.goroutines == 3ull * UINT32_MAX);
    /* a record with no frames at all */
    assert_int_equal(parse_str("goroutine profile: total 1\n1 @ 0x1\n\n", err), 0);
    assert_string_equal(prof.sites[0].user.func, "(no frames)");
    assert_true(prof.sites[0].stdlib_only);
    /* err may be NULL */
    et_gparse_init(&parser, &prof, ET_GP_GOROUTINE, 0);
    assert_int_equal(et_gparse_finish(&parser, NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunking),       cmocka_unit_test(test_debug2_states),
        cmocka_unit_test(test_debug1),         cmocka_unit_test(test_goroutineleak),
        cmocka_unit_test(test_traceback_system), cmocka_unit_test(test_keepalive_service),
        cmocka_unit_test(test_synthetic_debug2),
        cmocka_unit_test(test_debug2_ids),
        cmocka_unit_test(test_deep_stack),     cmocka_unit_test(test_site_overflow),
        cmocka_unit_test(test_huge_lines),     cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
