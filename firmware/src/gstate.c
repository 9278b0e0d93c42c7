/* gstate.c - goroutine state normalisation and frame classes (see gstate.h).
 *
 * Sources read to build the tables (Go 1.21 .. 1.27):
 *  - runtime/runtime2.go waitReasonStrings: the printed wait reasons. 1.24 added
 *    "sync.WaitGroup.Wait" (before it WaitGroup.Wait printed "semacquire"); 1.25 added the
 *    synctest "(durable)" variants; 1.26/1.27 print " (leaked)" after the reason of a goroutine
 *    the GC proved leaked (runtime/traceback.go goroutineheader).
 *  - sync/{mutex,rwmutex,waitgroup,cond,runtime}.go and, from 1.24 on, internal/sync/mutex.go:
 *    the frames a blocked goroutine shows (sync.runtime_SemacquireMutex became
 *    internal/sync.runtime_SemacquireMutex; WaitGroup uses sync.runtime_SemacquireWaitGroup
 *    from 1.25 on, sync.runtime_Semacquire before).
 */
#include "gstate.h"
#include "base.h"

#include <string.h>

#include "snapshot.h"

/* The names are part of the wire format (the collector prints them too), so they live in
 * wire/snapshot.c; the agent uses the same table. */
const char *et_gstate_name(enum et_gstate s)
{
    if ((unsigned)s >= ET_G_STATE_COUNT)
        return "unknown";
    return et_snap_state_name((unsigned)s);
}

int et_gstate_is_sync_blocked(enum et_gstate s)
{
    switch (s) {
    case ET_G_CHAN_SEND:
    case ET_G_CHAN_RECV:
    case ET_G_CHAN_SEND_NIL:
    case ET_G_CHAN_RECV_NIL:
    case ET_G_SELECT:
    case ET_G_SELECT_NO_CASES:
    case ET_G_MUTEX:
    case ET_G_RWMUTEX_R:
    case ET_G_RWMUTEX_W:
    case ET_G_COND_WAIT:
    case ET_G_WAITGROUP:
    case ET_G_SEMACQUIRE:
        return 1;
    default:
        return 0;
    }
}

/* ---- printed wait reasons ---- */

struct reason_map {
    const char *text;
    uint8_t state;
};

/* Exact matches after the suffixes are stripped. Reasons not listed that start with "GC " or
 * "garbage collection" are runtime internals too (handled in code). */
static const struct reason_map reasons[] = {
    {"running", ET_G_RUNNING},
    {"runnable", ET_G_RUNNABLE},
    {"preempted", ET_G_RUNNABLE},
    {"syscall", ET_G_SYSCALL},
    {"waiting for cgo callback", ET_G_SYSCALL},
    {"IO wait", ET_G_IO_WAIT},
    {"chan send", ET_G_CHAN_SEND},
    {"chan receive", ET_G_CHAN_RECV},
    {"chan send (nil chan)", ET_G_CHAN_SEND_NIL},
    {"chan receive (nil chan)", ET_G_CHAN_RECV_NIL},
    {"select", ET_G_SELECT},
    {"select (no cases)", ET_G_SELECT_NO_CASES},
    {"sync.Mutex.Lock", ET_G_MUTEX},
    {"sync.RWMutex.RLock", ET_G_RWMUTEX_R},
    {"sync.RWMutex.Lock", ET_G_RWMUTEX_W},
    {"sync.Cond.Wait", ET_G_COND_WAIT},
    {"sync.WaitGroup.Wait", ET_G_WAITGROUP},
    {"semacquire", ET_G_SEMACQUIRE},
    {"sleep", ET_G_SLEEP},
    {"waiting", ET_G_UNKNOWN},
    {"idle", ET_G_RUNTIME},
    {"dead", ET_G_RUNTIME},
    {"copystack", ET_G_RUNTIME},
    {"dumping heap", ET_G_RUNTIME},
    {"panicwait", ET_G_RUNTIME},
    {"finalizer wait", ET_G_RUNTIME},
    {"force gc (idle)", ET_G_RUNTIME},
    {"GOMAXPROCS updater (idle)", ET_G_RUNTIME},
    {"trace reader (blocked)", ET_G_RUNTIME},
    {"wait for GC cycle", ET_G_RUNTIME},
    {"debug call", ET_G_RUNTIME},
    {"stopping the world", ET_G_RUNTIME},
    {"flushing proc caches", ET_G_RUNTIME},
    {"trace goroutine status", ET_G_RUNTIME},
    {"trace proc status", ET_G_RUNTIME},
    {"page trace flush", ET_G_RUNTIME},
    {"cleanup wait", ET_G_RUNTIME},
    {"synctest.Run", ET_G_RUNTIME},
    {"synctest.Wait", ET_G_RUNTIME},
};

static int has_suffix(const char *s, size_t len, const char *suf, size_t slen)
{
    return len >= slen && memcmp(s + len - slen, suf, slen) == 0;
}

enum et_gstate et_gstate_from_reason(const char *s, size_t len, int *leaked)
{
    if (leaked)
        *leaked = 0;
    /* Strip the markers goroutineheader appends after the reason, in any order. */
    for (;;) {
        while (len && s[len - 1] == ' ')
            len--;
        if (has_suffix(s, len, " (leaked)", 9)) {
            len -= 9;
            if (leaked)
                *leaked = 1;
        } else if (has_suffix(s, len, " (scan)", 7)) {
            len -= 7;
        } else if (has_suffix(s, len, " (durable)", 10)) {
            len -= 10;
        } else {
            break;
        }
    }
    for (size_t i = 0; i < ET_ARRAY_LEN(reasons); i++) {
        size_t rl = strlen(reasons[i].text);
        if (rl == len && memcmp(reasons[i].text, s, len) == 0)
            return (enum et_gstate)reasons[i].state;
    }
    if ((len >= 3 && memcmp(s, "GC ", 3) == 0) || (len >= 18 && memcmp(s, "garbage collection", 18) == 0))
        return ET_G_RUNTIME;
    return ET_G_UNKNOWN;
}

/* ---- inference from frames ---- */

enum { STR_NONE = 0, STR_WEAK = 1, STR_FINAL = 2 };

struct frame_rule {
    const char *func;
    uint8_t len;
    uint8_t state;
    uint8_t strength;
};
#define RULE(f, st, str) {f, sizeof(f) - 1, st, str}

/* Frames that say what a goroutine waits on. "Weak" ones are refined by a later (outer)
 * frame: RWMutex.Lock first takes its inner Mutex, so Mutex frames appear inside it, and every
 * semaphore wait goes through runtime.semacquire1. */
static const struct frame_rule frame_rules[] = {
    RULE("runtime.chansend1", ET_G_CHAN_SEND, STR_FINAL),
    RULE("runtime.chansend", ET_G_CHAN_SEND, STR_FINAL),
    RULE("runtime.chanrecv1", ET_G_CHAN_RECV, STR_FINAL),
    RULE("runtime.chanrecv2", ET_G_CHAN_RECV, STR_FINAL),
    RULE("runtime.chanrecv", ET_G_CHAN_RECV, STR_FINAL),
    RULE("runtime.selectgo", ET_G_SELECT, STR_FINAL),
    RULE("runtime.reflect_rselect", ET_G_SELECT, STR_FINAL),
    RULE("reflect.rselect", ET_G_SELECT, STR_FINAL),
    RULE("runtime.block", ET_G_SELECT_NO_CASES, STR_FINAL),
    RULE("runtime.netpollblock", ET_G_IO_WAIT, STR_FINAL),
    RULE("internal/poll.runtime_pollWait", ET_G_IO_WAIT, STR_FINAL),
    RULE("internal/poll.(*pollDesc).wait", ET_G_IO_WAIT, STR_FINAL),
    RULE("time.Sleep", ET_G_SLEEP, STR_FINAL),
    RULE("runtime.timeSleep", ET_G_SLEEP, STR_FINAL),
    RULE("sync.runtime_notifyListWait", ET_G_COND_WAIT, STR_FINAL),
    RULE("runtime.notifyListWait", ET_G_COND_WAIT, STR_FINAL),
    RULE("sync.(*Cond).Wait", ET_G_COND_WAIT, STR_FINAL),
    RULE("sync.runtime_SemacquireWaitGroup", ET_G_WAITGROUP, STR_FINAL),
    RULE("sync.(*WaitGroup).Wait", ET_G_WAITGROUP, STR_FINAL),
    RULE("sync.runtime_SemacquireRWMutexR", ET_G_RWMUTEX_R, STR_FINAL),
    RULE("sync.(*RWMutex).RLock", ET_G_RWMUTEX_R, STR_FINAL),
    RULE("sync.runtime_SemacquireRWMutex", ET_G_RWMUTEX_W, STR_FINAL),
    RULE("sync.(*RWMutex).Lock", ET_G_RWMUTEX_W, STR_FINAL),
    RULE("sync.runtime_SemacquireMutex", ET_G_MUTEX, STR_WEAK),
    RULE("internal/sync.runtime_SemacquireMutex", ET_G_MUTEX, STR_WEAK),
    RULE("sync.(*Mutex).lockSlow", ET_G_MUTEX, STR_WEAK),
    RULE("sync.(*Mutex).Lock", ET_G_MUTEX, STR_WEAK),
    RULE("internal/sync.(*Mutex).lockSlow", ET_G_MUTEX, STR_WEAK),
    RULE("internal/sync.(*Mutex).Lock", ET_G_MUTEX, STR_WEAK),
    RULE("sync.runtime_Semacquire", ET_G_SEMACQUIRE, STR_WEAK),
    RULE("runtime.semacquire1", ET_G_SEMACQUIRE, STR_WEAK),
    RULE("runtime.semacquire", ET_G_SEMACQUIRE, STR_WEAK),
    RULE("syscall.Syscall", ET_G_SYSCALL, STR_FINAL),
    RULE("syscall.Syscall6", ET_G_SYSCALL, STR_FINAL),
    RULE("syscall.RawSyscall", ET_G_SYSCALL, STR_FINAL),
    RULE("syscall.RawSyscall6", ET_G_SYSCALL, STR_FINAL),
    RULE("syscall.syscall", ET_G_SYSCALL, STR_FINAL),
    RULE("syscall.rawsyscall", ET_G_SYSCALL, STR_FINAL),
    RULE("internal/runtime/syscall.Syscall6", ET_G_SYSCALL, STR_FINAL),
    RULE("internal/runtime/syscall/linux.Syscall6", ET_G_SYSCALL, STR_FINAL),
    RULE("runtime.cgocall", ET_G_SYSCALL, STR_FINAL),
    RULE("runtime.notetsleepg", ET_G_SYSCALL, STR_FINAL),
    RULE("os/signal.signal_recv", ET_G_SYSCALL, STR_FINAL),
    RULE("unique.runtime_registerUniqueMapCleanup.func1", ET_G_RUNTIME, STR_FINAL),
    RULE("unique.runtime_registerUniqueMapCleanup.func2", ET_G_RUNTIME, STR_FINAL),
};

/* The profiler's own goroutine (the one writing the dump we are reading) is running. */
static const char *const running_prefixes[] = {
    "runtime/pprof.", "runtime.goroutineProfileWithLabels", "runtime.Stack",
    "runtime.goroutineleakProfileWithLabels", "runtime.pprof_goroutine",
};

static const char *const park_funcs[] = {
    "runtime.gopark", "runtime.goparkunlock", "runtime.park_m", "runtime.mcall",
    "runtime.gopark_m", "runtime.semasleep", "runtime.futexsleep",
};

static int streq_n(const char *s, size_t len, const char *lit)
{
    size_t l = strlen(lit);
    return l == len && memcmp(s, lit, l) == 0;
}

static int prefix_n(const char *s, size_t len, const char *lit)
{
    size_t l = strlen(lit);
    return len >= l && memcmp(s, lit, l) == 0;
}

void et_ginfer_init(et_ginfer *g)
{
    memset(g, 0, sizeof(*g));
    g->all_runtime = 1;
}

void et_ginfer_hidden_runtime(et_ginfer *g)
{
    if (g->nframes == 0) {
        g->nframes = 1;
        g->hidden = 1;
        g->parked = 1;
    }
}

void et_ginfer_frame(et_ginfer *g, const char *func, size_t len)
{
    et_ginfer_frame_cls(g, func, len, et_func_is_stdlib_n(func, len));
}

void et_ginfer_frame_cls(et_ginfer *g, const char *func, size_t len, int is_stdlib)
{
    if (g->done)
        return;
    if (!is_stdlib) {
        /* First service frame: what it called is what it waits on; frames above it are not. */
        g->all_runtime = 0;
        g->done = 1;
        if (g->nframes == 0)
            g->state = ET_G_RUNNABLE, g->strength = STR_FINAL; /* preempted in user code */
        g->nframes++;
        return;
    }
    int first = g->nframes == g->hidden;
    if (g->nframes < 255)
        g->nframes++;
    if (!prefix_n(func, len, "runtime.") || streq_n(func, len, "runtime.Stack"))
        g->all_runtime = 0;
    if (first) {
        for (size_t i = 0; i < ET_ARRAY_LEN(park_funcs) && !g->hidden; i++)
            if (streq_n(func, len, park_funcs[i])) {
                g->parked = 1;
                return;
            }
        for (size_t i = 0; i < ET_ARRAY_LEN(running_prefixes); i++)
            if (prefix_n(func, len, running_prefixes[i])) {
                g->running = 1;
                break;
            }
    }
    if (g->strength == STR_FINAL)
        return;
    /* Only frames that are plumbing of a wait carry meaning; cheap first-letter filter. */
    char c0 = len ? func[0] : 0;
    if (c0 != 'r' && c0 != 's' && c0 != 'i' && c0 != 't' && c0 != 'o' && c0 != 'u')
        return;
    for (size_t i = 0; i < ET_ARRAY_LEN(frame_rules); i++) {
        const struct frame_rule *r = &frame_rules[i];
        if (r->len != len || r->func[0] != c0 || memcmp(r->func, func, len) != 0)
            continue;
        if (r->strength > g->strength ||
            (r->strength == STR_WEAK && g->state == ET_G_SEMACQUIRE && r->state == ET_G_MUTEX)) {
            g->state = r->state;
            g->strength = r->strength;
        }
        break;
    }
}

enum et_gstate et_ginfer_result(const et_ginfer *g)
{
    if (g->strength != STR_NONE)
        return (enum et_gstate)g->state;
    if (g->running)
        return ET_G_RUNNING;
    if (g->nframes == 0)
        return ET_G_UNKNOWN;
    if (g->all_runtime)
        return ET_G_RUNTIME; /* GC workers, bgsweep, scavenger, forcegc, finalizers */
    if (g->parked)
        return ET_G_UNKNOWN;
    return ET_G_RUNNABLE;
}

enum et_gstate et_gstate_refine(enum et_gstate printed, enum et_gstate inferred)
{
    switch (printed) {
    case ET_G_UNKNOWN:
        return inferred;
    case ET_G_MUTEX:
        /* RWMutex.Lock first takes its inner Mutex and then prints "sync.Mutex.Lock";
         * name it after the primitive the service called, as the frames do. */
        return inferred == ET_G_RWMUTEX_W ? inferred : printed;
    case ET_G_SEMACQUIRE:
        /* Before Go 1.24 WaitGroup.Wait printed "semacquire". */
        switch (inferred) {
        case ET_G_MUTEX:
        case ET_G_RWMUTEX_R:
        case ET_G_RWMUTEX_W:
        case ET_G_WAITGROUP:
        case ET_G_COND_WAIT:
            return inferred;
        default:
            return printed;
        }
    default:
        return printed;
    }
}

/* ---- frame classes ---- */

/* Top-level directories of GOROOT/src in Go 1.27 that are packages (plus "cmd", whose
 * binaries are Go's own). Sorted for the binary search; lengths precomputed. */
struct std_name {
    const char *name;
    uint8_t len;
};
#define STD(n) {n, sizeof(n) - 1}
static const struct std_name stdlib_top[] = {
    STD("archive"), STD("arena"), STD("bufio"), STD("builtin"), STD("bytes"), STD("cmd"),
    STD("cmp"), STD("compress"), STD("container"), STD("context"), STD("crypto"),
    STD("database"), STD("debug"), STD("embed"), STD("encoding"), STD("errors"), STD("expvar"),
    STD("flag"), STD("fmt"), STD("go"), STD("hash"), STD("html"), STD("image"), STD("index"),
    STD("internal"), STD("io"), STD("iter"), STD("log"), STD("maps"), STD("math"), STD("mime"),
    STD("net"), STD("os"), STD("path"), STD("plugin"), STD("reflect"), STD("regexp"),
    STD("runtime"), STD("simd"), STD("slices"), STD("sort"), STD("strconv"), STD("strings"),
    STD("structs"), STD("sync"), STD("syscall"), STD("testing"), STD("text"), STD("time"),
    STD("unicode"), STD("unique"), STD("unsafe"), STD("uuid"), STD("vendor"), STD("weak")
};
#define STDLIB_TOP_MAXLEN 9 /* "container" */

static int top_is_stdlib(const char *s, size_t n)
{
    if (n > STDLIB_TOP_MAXLEN)
        return 0;
    size_t lo = 0, hi = ET_ARRAY_LEN(stdlib_top);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        size_t tl = stdlib_top[mid].len;
        int c = memcmp(s, stdlib_top[mid].name, n < tl ? n : tl);
        if (c == 0)
            c = (n > tl) - (n < tl);
        if (c == 0)
            return 1;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return 0;
}

int et_func_is_stdlib_n(const char *func, size_t len)
{
    /* The package path ends before the type/func part; '[' (generics) and '(' (methods) can
     * hold other packages' paths, so only look before them. */
    size_t lim = len, first_slash = len, first_dot = len;
    for (size_t i = 0; i < len; i++) {
        char c = func[i];
        if (c == '[' || c == '(') {
            lim = i;
            break;
        }
        if (c == '/' && first_slash == len)
            first_slash = i;
        else if (c == '.' && first_dot == len)
            first_dot = i;
        else if (c == ':' && first_slash == len)
            return 1; /* compiler-generated: "type:.eq.T", "go:buildid" */
    }
    size_t top;
    if (first_slash < lim)
        top = first_slash;
    else if (first_dot < lim)
        top = first_dot;
    else
        return 1; /* no package qualifier: assembly stubs, "_rt0_amd64" */
    if (top == 0)
        return 1;
    return top_is_stdlib(func, top);
}

int et_func_is_stdlib(const char *func)
{
    return et_func_is_stdlib_n(func, strlen(func));
}

int et_func_is_runtime_n(const char *func, size_t len)
{
    return prefix_n(func, len, "runtime.") || prefix_n(func, len, "runtime/internal/") ||
           prefix_n(func, len, "internal/") || prefix_n(func, len, "sync.runtime_");
}
