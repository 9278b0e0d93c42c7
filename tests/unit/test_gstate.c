/* test_gstate.c - wait-reason normalisation, frame inference and frame classes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "gstate.h"

static enum et_gstate reason(const char *s, int *leaked)
{
    return et_gstate_from_reason(s, strlen(s), leaked);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(et_gstate_name(ET_G_CHAN_SEND), "chan send");
    assert_string_equal(et_gstate_name(ET_G_CHAN_RECV), "chan receive");
    assert_string_equal(et_gstate_name(ET_G_WAITGROUP), "sync.WaitGroup.Wait");
    assert_string_equal(et_gstate_name(ET_G_MUTEX), "sync.Mutex.Lock");
    assert_string_equal(et_gstate_name(ET_G_IO_WAIT), "IO wait");
    assert_string_equal(et_gstate_name(ET_G_SLEEP), "sleep");
    assert_string_equal(et_gstate_name((enum et_gstate)200), "unknown");
    for (int s = 0; s < ET_G_STATE_COUNT; s++)
        assert_non_null(et_gstate_name((enum et_gstate)s));
    assert_true(et_gstate_is_sync_blocked(ET_G_CHAN_SEND));
    assert_true(et_gstate_is_sync_blocked(ET_G_SELECT_NO_CASES));
    assert_true(et_gstate_is_sync_blocked(ET_G_WAITGROUP));
    assert_true(et_gstate_is_sync_blocked(ET_G_SEMACQUIRE));
    assert_false(et_gstate_is_sync_blocked(ET_G_IO_WAIT));
    assert_false(et_gstate_is_sync_blocked(ET_G_SLEEP));
    assert_false(et_gstate_is_sync_blocked(ET_G_RUNNING));
    assert_false(et_gstate_is_sync_blocked(ET_G_RUNTIME));
    assert_false(et_gstate_is_sync_blocked(ET_G_UNKNOWN));
}

/* Every string of waitReasonStrings in Go 1.21..1.27 (runtime/runtime2.go) maps somewhere
 * deliberate; the leak-relevant ones exactly. */
static void test_reasons(void **state)
{
    (void)state;
    int leaked = 7;
    assert_int_equal(reason("chan send", &leaked), ET_G_CHAN_SEND);
    assert_int_equal(leaked, 0);
    assert_int_equal(reason("chan receive", NULL), ET_G_CHAN_RECV);
    assert_int_equal(reason("chan send (nil chan)", NULL), ET_G_CHAN_SEND_NIL);
    assert_int_equal(reason("chan receive (nil chan)", NULL), ET_G_CHAN_RECV_NIL);
    assert_int_equal(reason("select", NULL), ET_G_SELECT);
    assert_int_equal(reason("select (no cases)", NULL), ET_G_SELECT_NO_CASES);
    assert_int_equal(reason("sync.Mutex.Lock", NULL), ET_G_MUTEX);
    assert_int_equal(reason("sync.RWMutex.RLock", NULL), ET_G_RWMUTEX_R);
    assert_int_equal(reason("sync.RWMutex.Lock", NULL), ET_G_RWMUTEX_W);
    assert_int_equal(reason("sync.Cond.Wait", NULL), ET_G_COND_WAIT);
    assert_int_equal(reason("sync.WaitGroup.Wait", NULL), ET_G_WAITGROUP); /* >= 1.24 */
    assert_int_equal(reason("semacquire", NULL), ET_G_SEMACQUIRE);         /* WaitGroup < 1.24 */
    assert_int_equal(reason("IO wait", NULL), ET_G_IO_WAIT);
    assert_int_equal(reason("sleep", NULL), ET_G_SLEEP);
    assert_int_equal(reason("running", NULL), ET_G_RUNNING);
    assert_int_equal(reason("runnable", NULL), ET_G_RUNNABLE);
    assert_int_equal(reason("syscall", NULL), ET_G_SYSCALL);
    assert_int_equal(reason("GC worker (idle)", NULL), ET_G_RUNTIME);
    assert_int_equal(reason("GC sweep wait", NULL), ET_G_RUNTIME);
    assert_int_equal(reason("GC scavenge wait", NULL), ET_G_RUNTIME);
    assert_int_equal(reason("finalizer wait", NULL), ET_G_RUNTIME);
    assert_int_equal(reason("force gc (idle)", NULL), ET_G_RUNTIME);
    assert_int_equal(reason("GOMAXPROCS updater (idle)", NULL), ET_G_RUNTIME);
    assert_int_equal(reason("cleanup wait", NULL), ET_G_RUNTIME);
    assert_int_equal(reason("garbage collection scan", NULL), ET_G_RUNTIME);
    /* 1.25+ synctest "(durable)" variants and 1.26+ " (leaked)" marker */
    assert_int_equal(reason("chan receive (durable)", NULL), ET_G_CHAN_RECV);
    assert_int_equal(reason("sync.WaitGroup.Wait (durable)", NULL), ET_G_WAITGROUP);
    assert_int_equal(reason("chan send (leaked)", &leaked), ET_G_CHAN_SEND);
    assert_int_equal(leaked, 1);
    assert_int_equal(reason("chan send (nil chan) (leaked)", &leaked), ET_G_CHAN_SEND_NIL);
    assert_int_equal(leaked, 1);
    assert_int_equal(reason("select (scan)", &leaked), ET_G_SELECT);
    assert_int_equal(leaked, 0);
    assert_int_equal(reason("", NULL), ET_G_UNKNOWN);
    assert_int_equal(reason("something new in go 1.30", NULL), ET_G_UNKNOWN);
    assert_int_equal(reason("chan sendX", NULL), ET_G_UNKNOWN);
}

static enum et_gstate infer(const char *const *frames, int hidden)
{
    et_ginfer g;
    et_ginfer_init(&g);
    if (hidden)
        et_ginfer_hidden_runtime(&g);
    for (size_t i = 0; frames[i] && !et_ginfer_done(&g); i++)
        et_ginfer_frame(&g, frames[i], strlen(frames[i]));
    return et_ginfer_result(&g);
}

static void test_infer(void **state)
{
    (void)state;
    /* proto stacks keep runtime frames (Go 1.21..1.27) */
    const char *send[] = {"runtime.gopark", "runtime.chansend", "runtime.chansend1", "main.leakSend", "runtime.goexit", NULL};
    assert_int_equal(infer(send, 0), ET_G_CHAN_SEND);
    const char *recv[] = {"runtime.gopark", "runtime.chanrecv", "runtime.chanrecv2", "main.f", NULL};
    assert_int_equal(infer(recv, 0), ET_G_CHAN_RECV);
    const char *sel[] = {"runtime.gopark", "runtime.selectgo", "main.f", NULL};
    assert_int_equal(infer(sel, 0), ET_G_SELECT);
    const char *block[] = {"runtime.gopark", "runtime.block", "main.f", NULL};
    assert_int_equal(infer(block, 0), ET_G_SELECT_NO_CASES);
    /* Mutex moved to internal/sync in 1.24 */
    const char *mu121[] = {"runtime.gopark", "runtime.goparkunlock", "runtime.semacquire1", "sync.runtime_SemacquireMutex",
                           "sync.(*Mutex).lockSlow", "sync.(*Mutex).Lock", "main.f", NULL};
    assert_int_equal(infer(mu121, 0), ET_G_MUTEX);
    const char *mu127[] = {"runtime.gopark", "runtime.semacquire1", "internal/sync.runtime_SemacquireMutex",
                           "internal/sync.(*Mutex).lockSlow", "internal/sync.(*Mutex).Lock", "sync.(*Mutex).Lock", "main.f", NULL};
    assert_int_equal(infer(mu127, 0), ET_G_MUTEX);
    /* RWMutex.Lock waits on its inner Mutex first: the outer frame decides */
    const char *rwl[] = {"runtime.gopark", "internal/sync.runtime_SemacquireMutex", "internal/sync.(*Mutex).lockSlow",
                         "sync.(*Mutex).Lock", "sync.(*RWMutex).Lock", "main.wlock", NULL};
    assert_int_equal(infer(rwl, 0), ET_G_RWMUTEX_W);
    const char *rlock[] = {"runtime.gopark", "sync.runtime_SemacquireRWMutexR", "sync.(*RWMutex).RLock", "main.f", NULL};
    assert_int_equal(infer(rlock, 0), ET_G_RWMUTEX_R);
    const char *wg121[] = {"runtime.gopark", "runtime.semacquire1", "sync.runtime_Semacquire", "sync.(*WaitGroup).Wait", "main.f", NULL};
    assert_int_equal(infer(wg121, 0), ET_G_WAITGROUP);
    const char *wg127[] = {"runtime.gopark", "sync.runtime_SemacquireWaitGroup", "sync.(*WaitGroup).Wait", "main.f", NULL};
    assert_int_equal(infer(wg127, 0), ET_G_WAITGROUP);
    const char *cond[] = {"runtime.gopark", "sync.runtime_notifyListWait", "sync.(*Cond).Wait", "main.f", NULL};
    assert_int_equal(infer(cond, 0), ET_G_COND_WAIT);
    const char *io[] = {"runtime.gopark", "runtime.netpollblock", "internal/poll.runtime_pollWait", "internal/poll.(*pollDesc).wait",
                        "internal/poll.(*FD).Read", "net.(*netFD).Read", "net/http.(*connReader).backgroundRead", NULL};
    assert_int_equal(infer(io, 0), ET_G_IO_WAIT);
    const char *sleep[] = {"runtime.gopark", "time.Sleep", "main.f", NULL};
    assert_int_equal(infer(sleep, 0), ET_G_SLEEP);
    const char *gc[] = {"runtime.gopark", "runtime.gcBgMarkWorker", "runtime.goexit", NULL};
    assert_int_equal(infer(gc, 0), ET_G_RUNTIME);
    const char *sys[] = {"syscall.Syscall6", "syscall.read", "os.(*File).Read", "main.f", NULL};
    assert_int_equal(infer(sys, 0), ET_G_SYSCALL);
    /* a user frame on top with nothing hidden: preempted/running in user code */
    const char *user[] = {"main.spin", "main.main", NULL};
    assert_int_equal(infer(user, 0), ET_G_RUNNABLE);
    /* debug=1 hides runtime frames: a user frame first says "parked, reason unknown" */
    const char *d1[] = {"main.leakSend", NULL};
    assert_int_equal(infer(d1, 1), ET_G_UNKNOWN);
    const char *d1wg[] = {"sync.runtime_SemacquireWaitGroup", "sync.(*WaitGroup).Wait", "main.f", NULL};
    assert_int_equal(infer(d1wg, 1), ET_G_WAITGROUP);
    const char *prof[] = {"runtime/pprof.runtime_goroutineProfileWithLabels", "runtime/pprof.writeRuntimeProfile", "main.main", NULL};
    assert_int_equal(infer(prof, 1), ET_G_RUNNING);
    /* frames above the first user frame do not count */
    const char *above[] = {"runtime.gopark", "runtime.chanrecv1", "main.f", "sync.(*WaitGroup).Wait", NULL};
    assert_int_equal(infer(above, 0), ET_G_CHAN_RECV);
    const char *none[] = {NULL};
    assert_int_equal(infer(none, 0), ET_G_UNKNOWN);
}

static void test_refine(void **state)
{
    (void)state;
    assert_int_equal(et_gstate_refine(ET_G_SEMACQUIRE, ET_G_WAITGROUP), ET_G_WAITGROUP); /* Go < 1.24 */
    assert_int_equal(et_gstate_refine(ET_G_SEMACQUIRE, ET_G_UNKNOWN), ET_G_SEMACQUIRE);
    assert_int_equal(et_gstate_refine(ET_G_UNKNOWN, ET_G_SELECT), ET_G_SELECT);
    assert_int_equal(et_gstate_refine(ET_G_MUTEX, ET_G_RWMUTEX_W), ET_G_RWMUTEX_W);
    assert_int_equal(et_gstate_refine(ET_G_CHAN_SEND, ET_G_UNKNOWN), ET_G_CHAN_SEND);
    assert_int_equal(et_gstate_refine(ET_G_CHAN_SEND_NIL, ET_G_CHAN_SEND), ET_G_CHAN_SEND_NIL);
}

static void test_stdlib(void **state)
{
    (void)state;
    assert_true(et_func_is_stdlib("runtime.gopark"));
    assert_true(et_func_is_stdlib("sync.(*WaitGroup).Wait"));
    assert_true(et_func_is_stdlib("internal/sync.(*Mutex).Lock"));
    assert_true(et_func_is_stdlib("net/http.(*conn).serve"));
    assert_true(et_func_is_stdlib("net/http.(*Transport).dialConn.func5"));
    assert_true(et_func_is_stdlib("os/signal.loop"));
    assert_true(et_func_is_stdlib("time.Sleep"));
    assert_true(et_func_is_stdlib("vendor/golang.org/x/net/http2/hpack.(*Decoder).Write"));
    assert_true(et_func_is_stdlib("unique.runtime_registerUniqueMapCleanup.func1"));
    assert_true(et_func_is_stdlib("iter.Pull[...].func1"));
    assert_true(et_func_is_stdlib("type:.eq.main.T"));
    assert_true(et_func_is_stdlib("panic"));
    assert_true(et_func_is_stdlib(""));
    assert_false(et_func_is_stdlib("main.main"));
    assert_false(et_func_is_stdlib("main.(*server).handle"));
    assert_false(et_func_is_stdlib("main.main.func1"));
    assert_false(et_func_is_stdlib("github.com/acme/svc/internal/db.(*Pool).Get"));
    /* module paths without a dot are user code, even with an "internal" element inside */
    assert_false(et_func_is_stdlib("edgetrace/testsvc/internal/x.F"));
    assert_false(et_func_is_stdlib("mycompany/internal/queue.(*Q).Pop"));
    /* a module whose first element merely starts like a stdlib name */
    assert_false(et_func_is_stdlib("timeseries/store.Put"));
    assert_false(et_func_is_stdlib("netutil.Dial"));
    assert_false(et_func_is_stdlib("time.example.com/x.F"));
    /* generics: the brackets may name stdlib packages; the function's own package decides */
    assert_false(et_func_is_stdlib("main.Map[go.shape.struct { net/http.x int }]"));
    assert_true(et_func_is_stdlib("slices.SortFunc[go.shape.[]main.T]"));
    assert_true(et_func_is_stdlib_n("sync.(*Mutex).Lock-garbage", 4 + 1 + 13));

    assert_true(et_func_is_runtime_n("runtime.gopark", 14));
    assert_true(et_func_is_runtime_n("internal/poll.runtime_pollWait", 30));
    assert_true(et_func_is_runtime_n("sync.runtime_SemacquireMutex", 28));
    assert_false(et_func_is_runtime_n("sync.(*Mutex).Lock", 18));
    assert_false(et_func_is_runtime_n("runtime/pprof.writeGoroutine", 28));
    assert_false(et_func_is_runtime_n("main.f", 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),  cmocka_unit_test(test_reasons), cmocka_unit_test(test_infer),
        cmocka_unit_test(test_refine), cmocka_unit_test(test_stdlib),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
