/* test_trace.c - the execution-trace reader on synthetic traces built byte by byte.
 *
 * The encoder below writes the wire format described in trace.c (Go 1.27
 * src/internal/trace/tracev2/events.go numbering). Real traces from real Go programs are
 * compared with Go's own parser in tests/integration/test_trace.py; here we pin down the
 * semantics that matter and that a 32-bit build must get right: batches of one generation
 * arriving in any order, varints above 32 bits, any chunking, truncation, caps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "trace.h"

/* ---- a tiny trace writer ---- */
typedef struct buf {
    uint8_t *b;
    size_t n, cap;
} buf;

static void put(buf *w, const void *p, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 256;
        w->b = realloc(w->b, w->cap);
        assert_non_null(w->b);
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void u8(buf *w, uint8_t v) { put(w, &v, 1); }
static void uv(buf *w, uint64_t v)
{
    while (v >= 0x80) {
        u8(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    u8(w, (uint8_t)v);
}
/* event: type, then args (the first is the timestamp delta) */
static void ev(buf *w, uint8_t typ, int nargs, ...)
{
    va_list ap;
    va_start(ap, nargs);
    u8(w, typ);
    for (int i = 0; i < nargs; i++)
        uv(w, va_arg(ap, uint64_t));
    va_end(ap);
}
static void batch(buf *out, uint64_t gen, uint64_t m, uint64_t ts, const buf *data)
{
    u8(out, 1); /* EvEventBatch */
    uv(out, gen);
    uv(out, m);
    uv(out, ts);
    uv(out, data->n);
    put(out, data->b, data->n);
}
static void header(buf *w, int minor)
{
    char h[17];
    snprintf(h, sizeof h, "go 1.%d trace", minor);
    put(w, h, 13);
    put(w, "\0\0\0", 3);
}
static void strings_batch(buf *out, uint64_t gen, const char *const *s, uint64_t first_id, int n)
{
    buf d = {0};
    u8(&d, 4); /* EvStrings */
    for (int i = 0; i < n; i++) {
        u8(&d, 5);
        uv(&d, first_id + (uint64_t)i);
        uv(&d, strlen(s[i]));
        put(&d, s[i], strlen(s[i]));
    }
    batch(out, gen, (uint64_t)-1, 1, &d);
    free(d.b);
}
/* one stack of nf frames {func string, file string, line} */
static void stack_entry(buf *d, uint64_t id, int nf, const uint64_t (*fr)[3])
{
    u8(d, 3);
    uv(d, id);
    uv(d, (uint64_t)nf);
    for (int i = 0; i < nf; i++) {
        uv(d, 0x401000 + id * 16 + (uint64_t)i); /* pc */
        uv(d, fr[i][0]);
        uv(d, fr[i][1]);
        uv(d, fr[i][2]);
    }
}
static void sync_batch(buf *out, uint64_t gen, int minor, uint64_t freq)
{
    buf d = {0};
    if (minor >= 25) {
        u8(&d, 50); /* EvSync */
        u8(&d, 8);
        uv(&d, freq);
        ev(&d, 51, 4, (uint64_t)5, (uint64_t)123456789, (uint64_t)1700000000, (uint64_t)5);
    } else {
        u8(&d, 8);
        uv(&d, freq);
    }
    batch(out, gen, (uint64_t)-1, 1, &d);
    free(d.b);
}

enum { GOSTATUS_RUNNABLE = 1, GOSTATUS_RUNNING = 2, GOSTATUS_SYSCALL = 3, GOSTATUS_WAITING = 4 };

/* Strings used by the scenario. */
static const char *const STR[] = {"chan receive", "main.leak", "/src/app/main.go", "runtime.chanrecv1",
                                  "/go/src/runtime/chan.go", "main.main", "main.worker", "sync",
                                  "sync.(*Mutex).Lock", "/go/src/sync/mutex.go", "main.lockIt"};
enum { S_CHANRECV = 1, S_LEAK, S_MAINGO, S_CHANRECV1, S_CHANGO, S_MAIN, S_WORKER, S_SYNC, S_LOCK, S_MUTEXGO, S_LOCKIT };

/* Goroutine IDs above 2^32 and timestamps above 2^32: a 32-bit build must not truncate. */
#define G_MAIN 1ull
#define G_LEAK 0x100000005ull
#define G_WORK 0x100000006ull
#define G_LOCK 0x100000007ull
#define M1 0x7fffffff01ull
#define M2 77ull
#define T0 0x500000000ull

/* A two-generation trace in format `minor`. Generation 1: main creates leak, worker and
 * locker. The M2 batch (which starts and blocks them) is written *before* the M1 batch that
 * creates them, and the M3 batch with the unblock of the worker comes last, so any reader
 * relying on file order gets the states wrong. Generation 2: statuses, worker ends, leak and
 * locker stay blocked. */
static void build_scenario(buf *w, int minor)
{
    header(w, minor);
    buf d = {0};
    /* gen 1 */
    sync_batch(w, 1, minor, 1000000000); /* 1 tick = 1 ns */
    /* M2: runs leak (blocks on chan), worker (blocks on chan), then worker again (after unblock seq 2), worker blocks again in sync */
    d.n = 0;
    ev(&d, 16, 3, (uint64_t)300, G_LEAK, (uint64_t)1);      /* GoStart leak seq1 */
    ev(&d, 20, 3, (uint64_t)10, (uint64_t)S_CHANRECV, (uint64_t)1); /* GoBlock chan receive, stack 1 */
    ev(&d, 16, 3, (uint64_t)10, G_WORK, (uint64_t)1);      /* GoStart worker seq1 */
    ev(&d, 20, 3, (uint64_t)10, (uint64_t)S_CHANRECV, (uint64_t)1);
    ev(&d, 16, 3, (uint64_t)500, G_WORK, (uint64_t)3);     /* GoStart worker seq3 (after unblock seq2) */
    ev(&d, 22, 3, (uint64_t)10, (uint64_t)7, (uint64_t)0); /* GoSyscallBegin */
    ev(&d, 23, 1, (uint64_t)10);                           /* GoSyscallEnd */
    ev(&d, 19, 3, (uint64_t)10, (uint64_t)S_SYNC, (uint64_t)0); /* GoStop (runnable) */
    ev(&d, 16, 3, (uint64_t)10, G_LOCK, (uint64_t)1);      /* GoStart locker */
    ev(&d, 20, 3, (uint64_t)10, (uint64_t)S_SYNC, (uint64_t)2); /* GoBlock sync, stack 2 (mutex) */
    batch(w, 1, M2, T0 + 100, &d);
    /* M1: main running; creates the three */
    d.n = 0;
    ev(&d, 25, 4, (uint64_t)1, G_MAIN, M1, (uint64_t)GOSTATUS_RUNNING);
    ev(&d, 14, 4, (uint64_t)50, G_LEAK, (uint64_t)3, (uint64_t)4); /* GoCreate leak, new stack 3, stack 4 */
    ev(&d, 14, 4, (uint64_t)5, G_WORK, (uint64_t)5, (uint64_t)4);
    ev(&d, 14, 4, (uint64_t)5, G_LOCK, (uint64_t)6, (uint64_t)4);
    batch(w, 1, M1, T0, &d);
    /* M3: unblocks worker (seq 2) */
    d.n = 0;
    ev(&d, 21, 4, (uint64_t)450, G_WORK, (uint64_t)2, (uint64_t)0);
    batch(w, 1, 3, T0 + 100, &d);
    /* tables */
    strings_batch(w, 1, STR, 1, (int)(sizeof STR / sizeof STR[0]));
    d.n = 0;
    u8(&d, 2); /* EvStacks */
    const uint64_t s1[2][3] = {{S_CHANRECV1, S_CHANGO, 440}, {S_LEAK, S_MAINGO, 12}};
    const uint64_t s2[3][3] = {{S_LOCK, S_MUTEXGO, 80}, {S_LOCKIT, S_MAINGO, 30}, {S_MAIN, S_MAINGO, 50}};
    const uint64_t s3[1][3] = {{S_LEAK, S_MAINGO, 11}};
    const uint64_t s4[1][3] = {{S_MAIN, S_MAINGO, 40}};
    const uint64_t s5[1][3] = {{S_WORKER, S_MAINGO, 20}};
    const uint64_t s6[1][3] = {{S_LOCKIT, S_MAINGO, 29}};
    stack_entry(&d, 1, 2, s1);
    stack_entry(&d, 2, 3, s2);
    stack_entry(&d, 3, 1, s3);
    stack_entry(&d, 4, 1, s4);
    stack_entry(&d, 5, 1, s5);
    stack_entry(&d, 6, 1, s6);
    batch(w, 1, (uint64_t)-1, 1, &d);
    if (minor >= 26)
        u8(w, 52); /* EvEndOfGeneration */
    /* gen 2 */
    sync_batch(w, 2, minor, 1000000000);
    d.n = 0;
    ev(&d, 25, 4, (uint64_t)1, G_LEAK, (uint64_t)-1, (uint64_t)GOSTATUS_WAITING);
    ev(&d, 25, 4, (uint64_t)1, G_LOCK, (uint64_t)-1, (uint64_t)GOSTATUS_WAITING);
    ev(&d, 25, 4, (uint64_t)1, G_WORK, (uint64_t)-1, (uint64_t)GOSTATUS_RUNNABLE);
    batch(w, 2, (uint64_t)-1, T0 + 1000000, &d);
    d.n = 0;
    ev(&d, 25, 4, (uint64_t)1, G_MAIN, M1, (uint64_t)GOSTATUS_RUNNING);
    ev(&d, 20, 3, (uint64_t)10, (uint64_t)1, (uint64_t)0); /* main blocks (reason string 1 of gen 2) */
    ev(&d, 16, 3, (uint64_t)10, G_WORK, (uint64_t)1);
    ev(&d, 17, 1, (uint64_t)1000000);                      /* worker GoDestroy */
    batch(w, 2, M1, T0 + 1000010, &d);
    const char *const g2s[] = {"select"};
    strings_batch(w, 2, g2s, 1, 1);
    if (minor >= 26)
        u8(w, 52);
    free(d.b);
}

static et_trace_summary *summ(const buf *w, const et_trace_limits *l)
{
    et_trace_summary *s = calloc(1, sizeof *s);
    assert_non_null(s);
    et_trace_summarize(w->b, w->n, l, s);
    return s;
}

static const et_trace_group *find_group(const et_trace_summary *s, const char *start_func)
{
    for (uint32_t i = 0; i < s->ngroups; i++)
        if (!strcmp(s->groups[i].start_func, start_func))
            return &s->groups[i];
    return NULL;
}

static void check_scenario(const et_trace_summary *s, int minor)
{
    assert_int_equal(s->status, ET_TRACE_OK);
    assert_int_equal(s->go_minor, minor);
    assert_int_equal(s->generations, 2);
    assert_int_equal(s->goroutines.seen, 4);
    assert_int_equal(s->goroutines.created, 3);
    assert_int_equal(s->goroutines.ended, 1);
    assert_int_equal(s->goroutines.waiting, 3); /* leak, locker, main */
    assert_int_equal(s->goroutines.runnable, 0);
    assert_int_equal(s->goroutines.running, 0);
    /* gen1: main status 1, creates 3, leak start+block 2, worker start+block+unblock+start+sysbegin+sysend+stop 7,
     * locker start+block 2; gen2: 4 statuses, main block 1, worker start+destroy 2 */
    assert_int_equal(s->transitions, 1 + 3 + 2 + 7 + 2 + 4 + 1 + 2);
    const et_trace_group *g = find_group(s, "main.leak");
    assert_non_null(g);
    assert_int_equal(g->count, 1);
    assert_int_equal(g->created_in_window, 1);
    assert_string_equal(g->created_by, "main.main");
    assert_string_equal(g->reason, "chan receive");
    assert_string_equal(g->block.func, "main.leak");
    assert_string_equal(g->block.file, "/src/app/main.go");
    assert_int_equal(g->block.line, 12);
    assert_int_equal(g->go_state, ET_TG_WAITING);
    assert_int_equal(g->state, ET_G_CHAN_RECV);
    /* blocked at T0+410; the window ends at the worker's destroy, T0+2000031 */
    assert_int_equal(g->oldest_ns, 2000031 - 410);
    g = find_group(s, "main.lockIt");
    assert_non_null(g);
    assert_string_equal(g->reason, "sync");
    assert_string_equal(g->block_func, "sync.(*Mutex).Lock");
    assert_string_equal(g->block.func, "main.lockIt");
    assert_int_equal(g->block.line, 30);
    assert_int_equal(g->state, ET_G_MUTEX);
    assert_null(find_group(s, "main.worker")); /* ended */
}

static void test_scenario_all_formats(void **state)
{
    (void)state;
    const int minors[] = {22, 23, 25, 26};
    for (unsigned i = 0; i < sizeof minors / sizeof minors[0]; i++) {
        buf w = {0};
        build_scenario(&w, minors[i]);
        et_trace_summary *s = summ(&w, NULL);
        check_scenario(s, minors[i]);
        free(s);
        free(w.b);
    }
}

struct gl {
    int n;
    uint64_t ids[8];
    uint8_t states[8];
};
static void collect(void *ctx, const et_trace_goroutine *g)
{
    struct gl *c = ctx;
    if (c->n < 8) {
        c->ids[c->n] = g->id;
        c->states[c->n] = g->state;
    }
    c->n++;
}

static void test_chunking_and_callback(void **state)
{
    (void)state;
    buf w = {0};
    build_scenario(&w, 26);
    et_trace_summary *whole = summ(&w, NULL);
    const size_t chunks[] = {1, 2, 3, 7, 64, 4096};
    for (unsigned c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        et_trace_parser *p = et_trace_parser_new(NULL);
        assert_non_null(p);
        struct gl gl = {0};
        et_trace_parser_set_goroutine_fn(p, collect, &gl);
        for (size_t off = 0; off < w.n; off += chunks[c])
            assert_int_equal(et_trace_parser_feed(p, w.b + off, w.n - off < chunks[c] ? w.n - off : chunks[c]), 0);
        et_trace_summary *s = calloc(1, sizeof *s);
        et_trace_parser_finish(p, s);
        assert_memory_equal(s, whole, sizeof *s);
        assert_int_equal(gl.n, 4);
        /* the worker ended in generation 2 and was reported when that generation ended */
        int found = 0;
        for (int i = 0; i < 4; i++)
            if (gl.ids[i] == G_WORK) {
                assert_int_equal(gl.states[i], ET_TG_NOTEXIST);
                found = 1;
            }
        assert_true(found);
        free(s);
        et_trace_parser_free(p);
    }
    free(whole);
    free(w.b);
}

static void test_truncation_is_partial(void **state)
{
    (void)state;
    buf w = {0};
    build_scenario(&w, 26);
    for (size_t cut = 17; cut < w.n; cut += 3) {
        et_trace_summary *s = calloc(1, sizeof *s);
        et_trace_summarize(w.b, cut, NULL, s);
        if (s->status == ET_TRACE_OK) {
            /* cut exactly after the first end-of-generation marker: a complete 1-generation trace */
            assert_int_equal(s->generations, 1);
            assert_int_equal(w.b[cut - 1], 52);
        } else {
            assert_int_equal(s->status, ET_TRACE_PARTIAL);
            assert_true(s->error[0] != 0);
        }
        free(s);
    }
    free(w.b);
}

static void test_bad_headers(void **state)
{
    (void)state;
    et_trace_summary *s = calloc(1, sizeof *s);
    static const uint8_t junk[] = "GIF89a not a trace at all";
    assert_int_equal(et_trace_summarize(junk, sizeof junk, NULL, s), ET_TRACE_ERR_FORMAT);
    assert_non_null(strstr(s->error, "not a Go execution trace"));
    assert_int_equal(et_trace_summarize(junk, 0, NULL, s), ET_TRACE_ERR_FORMAT);
    buf w = {0};
    header(&w, 21);
    assert_int_equal(et_trace_summarize(w.b, w.n, NULL, s), ET_TRACE_ERR_VERSION);
    assert_non_null(strstr(s->error, "go 1.21"));
    assert_non_null(strstr(s->error, "pre-1.22"));
    w.n = 0;
    header(&w, 31);
    assert_int_equal(et_trace_summarize(w.b, w.n, NULL, s), ET_TRACE_ERR_VERSION);
    assert_non_null(strstr(s->error, "go 1.31"));
    /* old v1 padding "go 1.5 trace\0\0\0\0" */
    static const uint8_t v15[16] = "go 1.5 trace";
    assert_int_equal(et_trace_summarize(v15, 16, NULL, s), ET_TRACE_ERR_VERSION);
    /* header only: nothing, but not an error */
    w.n = 0;
    header(&w, 25);
    assert_int_equal(et_trace_summarize(w.b, w.n, NULL, s), ET_TRACE_OK);
    /* garbage after a good header */
    u8(&w, 0x99);
    assert_int_equal(et_trace_summarize(w.b, w.n, NULL, s), ET_TRACE_ERR_FORMAT);
    /* oversized batch */
    w.n = 0;
    header(&w, 25);
    u8(&w, 1);
    uv(&w, 1);
    uv(&w, 1);
    uv(&w, 1);
    uv(&w, 1u << 20);
    assert_int_equal(et_trace_summarize(w.b, w.n, NULL, s), ET_TRACE_ERR_FORMAT);
    assert_non_null(strstr(s->error, "batch size"));
    /* varint overflow in a batch header */
    w.n = 0;
    header(&w, 25);
    u8(&w, 1);
    for (int i = 0; i < 11; i++)
        u8(&w, 0xff);
    assert_int_equal(et_trace_summarize(w.b, w.n, NULL, s), ET_TRACE_ERR_FORMAT);
    free(w.b);
    free(s);
}

static void test_caps(void **state)
{
    (void)state;
    buf w = {0};
    build_scenario(&w, 23);
    et_trace_limits l = {0};
    l.max_goroutines = 2;
    l.max_strings = 3;
    l.max_stacks = 1;
    et_trace_summary *s = summ(&w, &l);
    assert_int_equal(s->status, ET_TRACE_PARTIAL);
    assert_true(s->trunc.goroutines > 0);
    assert_true(s->trunc.strings > 0);
    assert_true(s->goroutines.seen <= 3);
    et_trace_limits small = {0}, big = {0};
    small.max_goroutines = 2;
    assert_true(et_trace_memory_bound(&small) < et_trace_memory_bound(&big));
    free(s);
    free(w.b);
}

/* Unknown event types and oversized tables inside a batch: the batch is cut, counted, and
 * the rest of the trace still parses. */
static void test_bad_batches(void **state)
{
    (void)state;
    buf w = {0}, d = {0};
    header(&w, 25);
    sync_batch(&w, 1, 25, 1000000000);
    ev(&d, 25, 4, (uint64_t)1, (uint64_t)9, (uint64_t)1, (uint64_t)GOSTATUS_WAITING);
    u8(&d, 99); /* not an event */
    ev(&d, 25, 4, (uint64_t)1, (uint64_t)10, (uint64_t)1, (uint64_t)GOSTATUS_WAITING);
    batch(&w, 1, 1, 10, &d);
    d.n = 0;
    u8(&d, 4); /* strings with an oversized entry */
    u8(&d, 5);
    uv(&d, 1);
    uv(&d, 5000);
    batch(&w, 1, (uint64_t)-1, 1, &d);
    d.n = 0;
    u8(&d, 2); /* stacks with too many frames */
    u8(&d, 3);
    uv(&d, 1);
    uv(&d, 1000);
    batch(&w, 1, (uint64_t)-1, 1, &d);
    d.n = 0;
    ev(&d, 20, 3, (uint64_t)1, (uint64_t)1, (uint64_t)1); /* GoBlock with no goroutine on the M */
    batch(&w, 1, 2, 10, &d);
    et_trace_summary *s = summ(&w, NULL);
    assert_int_equal(s->status, ET_TRACE_PARTIAL);
    assert_int_equal(s->goroutines.seen, 1);
    assert_int_equal(s->goroutines.waiting, 1);
    assert_true(s->trunc.malformed >= 3);
    assert_int_equal(s->trunc.orphan_events, 1);
    free(s);
    free(d.b);
    free(w.b);
}

/* GoSwitch (coroutines, Go 1.23+): three transitions, the target runs, the switcher waits. */
static void test_goswitch(void **state)
{
    (void)state;
    buf w = {0}, d = {0};
    header(&w, 23);
    sync_batch(&w, 1, 23, 1000000000);
    ev(&d, 25, 4, (uint64_t)1, (uint64_t)1, (uint64_t)5, (uint64_t)GOSTATUS_RUNNING);
    ev(&d, 47, 4, (uint64_t)1, (uint64_t)2, (uint64_t)0, (uint64_t)0); /* GoCreateBlocked g2 */
    ev(&d, 45, 3, (uint64_t)1, (uint64_t)2, (uint64_t)1);              /* GoSwitch to g2 */
    ev(&d, 46, 3, (uint64_t)1, (uint64_t)1, (uint64_t)1);              /* g2 GoSwitchDestroy back to g1 */
    batch(&w, 1, 5, 10, &d);
    et_trace_summary *s = summ(&w, NULL);
    assert_int_equal(s->status, ET_TRACE_OK);
    assert_int_equal(s->transitions, 1 + 1 + 3 + 3);
    assert_int_equal(s->goroutines.seen, 2);
    assert_int_equal(s->goroutines.created, 1);
    assert_int_equal(s->goroutines.ended, 1);
    assert_int_equal(s->goroutines.running, 1);
    free(s);
    free(d.b);
    free(w.b);
}

/* A goroutine in a syscall across a generation boundary, whose status in the new generation
 * is written by the M that steals the P; the syscalling M's own batch (GoSyscallEndBlocked)
 * comes first in the file. Go orders the status first; so must we: final state Runnable. */
static void test_syscall_across_generations(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        buf w = {0}, d = {0}, e = {0};
        header(&w, 25);
        sync_batch(&w, 1, 25, 1000000000);
        ev(&d, 25, 4, (uint64_t)1, (uint64_t)7, (uint64_t)5, (uint64_t)GOSTATUS_RUNNING);
        ev(&d, 22, 3, (uint64_t)1, (uint64_t)1, (uint64_t)0); /* GoSyscallBegin */
        batch(&w, 1, 5, 10, &d);
        sync_batch(&w, 2, 25, 1000000000);
        d.n = 0;
        ev(&d, 24, 1, (uint64_t)50); /* M5: GoSyscallEndBlocked */
        ev(&e, 25, 4, (uint64_t)1, (uint64_t)7, (uint64_t)5, (uint64_t)GOSTATUS_SYSCALL); /* M9 reports G7 */
        ev(&e, 12, 4, (uint64_t)1, (uint64_t)0, (uint64_t)1, (uint64_t)5);                  /* ProcSteal */
        if (order == 0) {
            batch(&w, 2, 5, 1000, &d);
            batch(&w, 2, 9, 1000, &e);
        } else {
            batch(&w, 2, 9, 1000, &e);
            batch(&w, 2, 5, 1000, &d);
        }
        et_trace_summary *s = summ(&w, NULL);
        assert_int_equal(s->status, ET_TRACE_OK);
        assert_int_equal(s->goroutines.runnable, 1);
        assert_int_equal(s->goroutines.syscall, 0);
        assert_int_equal(s->transitions, 4);
        free(s);
        free(d.b);
        free(e.b);
        free(w.b);
    }
}

/* Goroutine ids that share a slot of the parser's recent-goroutine cache (goid % 1024) and a
 * retired record handed to another goroutine: each event must still land on its own
 * goroutine (the cache is only a hint, checked against the record's goid). */
static void test_recent_cache_collisions(void **state)
{
    (void)state;
    buf w = {0}, d = {0};
    header(&w, 25);
    sync_batch(&w, 1, 25, 1000000000);
    ev(&d, 25, 4, (uint64_t)1, (uint64_t)1, (uint64_t)5, (uint64_t)GOSTATUS_RUNNING);
    for (uint64_t g = 2; g <= 2 + 3 * 1024; g += 1024) /* 2, 1026, 2050, 3074: one slot */
        ev(&d, 25, 4, (uint64_t)1, g, (uint64_t)-1, (uint64_t)GOSTATUS_WAITING);
    ev(&d, 21, 4, (uint64_t)1, (uint64_t)1026, (uint64_t)1, (uint64_t)0); /* GoUnblock 1026 */
    ev(&d, 21, 4, (uint64_t)1, (uint64_t)2, (uint64_t)1, (uint64_t)0);    /* GoUnblock 2 */
    ev(&d, 21, 4, (uint64_t)1, (uint64_t)1026, (uint64_t)1, (uint64_t)0); /* stale seq: no change */
    ev(&d, 14, 4, (uint64_t)1, (uint64_t)4098, (uint64_t)0, (uint64_t)0); /* GoCreate 4098, same slot */
    ev(&d, 16, 3, (uint64_t)1, (uint64_t)3074, (uint64_t)1);             /* g1 stops, 3074 runs... */
    batch(&w, 1, 5, 10, &d);
    et_trace_summary *s = summ(&w, NULL);
    assert_int_equal(s->status, ET_TRACE_OK);
    assert_int_equal(s->goroutines.seen, 6);
    assert_int_equal(s->goroutines.created, 1);
    assert_int_equal(s->goroutines.waiting, 1);  /* 2050 */
    assert_int_equal(s->goroutines.runnable, 3); /* 2, 1026, 4098 */
    assert_int_equal(s->goroutines.running, 2);  /* g1 (its M moved on without a GoStop) and 3074 */
    free(s);
    free(d.b);
    free(w.b);
}

/* The hot events (GoStart, GoBlock, GoUnblock) away from a batch's end are decoded with one
 * 8-byte load per varint (trace_events.c uv_fast), near the end byte by byte with bounds
 * checks. IDs, sequence numbers and deltas of every length from 1 to 9 bytes must decode the
 * same on both paths, and a 10-byte varint that overflows 64 bits is malformed on both. */
static uint64_t width_value(int len) /* the smallest value whose uvarint is len bytes, plus 3 */
{
    return len == 1 ? 3 : (1ull << (7 * (len - 1))) + 3;
}
static void hot_events(buf *d)
{
    ev(d, 25, 4, (uint64_t)1, (uint64_t)1, (uint64_t)5, (uint64_t)GOSTATUS_RUNNING);
    for (int len = 1; len <= 9; len++) {
        uint64_t g = width_value(len) + 100, seq = width_value(len);
        uint64_t dt = len <= 7 ? width_value(len) : 1; /* timestamps stay below 2^53: exact in ns */
        ev(d, 14, 4, (uint64_t)1, g, (uint64_t)0, (uint64_t)0); /* GoCreate: runnable */
        ev(d, 20, 3, dt, (uint64_t)0, (uint64_t)0);              /* g1 blocks */
        ev(d, 16, 3, dt, g, seq);                                 /* GoStart g */
        ev(d, 20, 3, dt, width_value(len), (uint64_t)0);          /* GoBlock g, reason id of len bytes */
        ev(d, 21, 4, dt, g, seq + 1, (uint64_t)0);                /* GoUnblock g: runnable */
        ev(d, 21, 4, (uint64_t)1, (uint64_t)1, seq, (uint64_t)0); /* stale: g1 stays waiting */
        ev(d, 16, 3, (uint64_t)1, (uint64_t)1, seq + 1);          /* g1 runs again */
    }
}
static void filler(buf *d, int n)
{
    for (int i = 0; i < n; i++)
        ev(d, 37, 2, (uint64_t)1, (uint64_t)4096); /* HeapAlloc: no goroutine state */
}
static et_trace_summary *hot_trace(int fast, int overflow)
{
    buf w = {0}, d = {0};
    header(&w, 26);
    sync_batch(&w, 1, 26, 1000000000);
    if (!fast)
        filler(&d, 64);
    hot_events(&d);
    if (overflow) { /* GoStart whose sequence number is 10 bytes over 64 bits */
        u8(&d, 16);
        uv(&d, 1);
        uv(&d, 1);
        for (int i = 0; i < 9; i++)
            u8(&d, 0xff);
        u8(&d, 0x7f);
    }
    if (fast)
        filler(&d, 64);
    batch(&w, 1, 5, 10, &d);
    d.n = 0; /* the reason strings, one id of each width */
    u8(&d, 4);
    for (int len = 1; len <= 9; len++) {
        u8(&d, 5);
        uv(&d, width_value(len));
        uv(&d, 5);
        put(&d, "sleep", 5);
    }
    batch(&w, 1, (uint64_t)-1, 1, &d);
    u8(&w, 52);
    et_trace_summary *s = summ(&w, NULL);
    free(d.b);
    free(w.b);
    return s;
}
static void test_hot_event_varint_widths(void **state)
{
    (void)state;
    et_trace_summary *a = hot_trace(1, 0), *b = hot_trace(0, 0);
    assert_int_equal(a->status, ET_TRACE_OK);
    assert_int_equal(a->events, 1 + 9 * 7 + 64);
    assert_int_equal(a->goroutines.seen, 10);
    assert_int_equal(a->goroutines.created, 9);
    assert_int_equal(a->goroutines.runnable, 9);
    assert_int_equal(a->goroutines.running, 1);
    /* g1: status + 9 x (block, stale unblock, start); each g: create, start, block, unblock */
    assert_int_equal(a->transitions, 1 + 9 * 3 + 9 * 4);
    uint64_t ticks = 10 + 1; /* batch base + the status */
    for (int len = 1; len <= 9; len++)
        ticks += 3 + 4 * (len <= 7 ? width_value(len) : 1); /* create, stale, start + four dt */
    ticks += 64;
    assert_int_equal(a->end_ns, ticks);
    /* the bounded path at the batch end agrees field by field */
    assert_int_equal(b->status, a->status);
    assert_int_equal(b->events, a->events);
    assert_int_equal(b->transitions, a->transitions);
    assert_int_equal(b->goroutines.runnable, a->goroutines.runnable);
    assert_int_equal(b->goroutines.running, a->goroutines.running);
    assert_int_equal(b->end_ns, a->end_ns);
    free(a);
    free(b);
    for (int fast = 0; fast <= 1; fast++) {
        et_trace_summary *o = hot_trace(fast, 1);
        assert_int_equal(o->status, ET_TRACE_PARTIAL);
        assert_int_equal(o->trunc.malformed, 1);
        assert_int_equal(o->events, 1 + 9 * 7 + (fast ? 0 : 64)); /* decoding stops at the bad event */
        free(o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenario_all_formats),
        cmocka_unit_test(test_chunking_and_callback),
        cmocka_unit_test(test_truncation_is_partial),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_bad_batches),
        cmocka_unit_test(test_goswitch),
        cmocka_unit_test(test_syscall_across_generations),
        cmocka_unit_test(test_recent_cache_collisions),
        cmocka_unit_test(test_hot_event_varint_widths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
