/* gstate.h - normalising goroutine states and classifying stack frames.
 *
 * Go prints a wait reason only in debug=2 dumps, and the strings changed between releases
 * (runtime/runtime2.go waitReasonStrings, Go 1.21 .. 1.27). debug=1 and proto profiles print
 * no state at all, so the state has to be inferred from the blocking frames. Both paths end
 * in the same enum et_gstate (profile.h) so the analyzer never sees a version difference.
 *
 * Frame classes decide which frame of a stack is "the service's": see et_func_is_stdlib. */
#ifndef ET_GSTATE_H
#define ET_GSTATE_H

#include <stddef.h>
#include <stdint.h>
#include "profile.h"

/* A printed debug=2 wait reason / status, the text between '[' and the first ',' or ']'
 * ("chan receive", "semacquire", "sync.WaitGroup.Wait (durable)", "chan send (leaked)").
 * Suffixes "(durable)", "(leaked)", "(scan)" are ignored here; *leaked is set to 1 when
 * "(leaked)" was present (Go 1.26+ goroutineleak, runtime/traceback.go goroutineheader).
 * leaked may be NULL. Unknown text gives ET_G_UNKNOWN. */
enum et_gstate et_gstate_from_reason(const char *s, size_t len, int *leaked);

/* Incremental inference of a state from frames, innermost first. Feed frames until
 * et_ginfer_done() (it stops at the first user frame: whatever the service does above its
 * own frame is not what it is blocked on). */
typedef struct et_ginfer {
    uint8_t state;     /* best guess so far (enum et_gstate) */
    uint8_t strength;  /* 0 none, 1 weak (can be refined by an outer sync frame), 2 final */
    uint8_t nframes;   /* frames seen */
    uint8_t parked;    /* innermost frame is runtime.gopark & co: the goroutine is waiting */
    uint8_t running;   /* innermost frames are the profiler itself (the goroutine serving us) */
    uint8_t all_runtime; /* every frame so far is runtime.* */
    uint8_t hidden;    /* frames hidden by the printer before the first one we see */
    uint8_t done;
} et_ginfer;

void et_ginfer_init(et_ginfer *g);
void et_ginfer_frame(et_ginfer *g, const char *func, size_t len);
/* Same, when the caller already knows et_func_is_stdlib_n(func, len). */
void et_ginfer_frame_cls(et_ginfer *g, const char *func, size_t len, int is_stdlib);
/* debug=1 hides the runtime.* frames at the top of a stack (runtime/pprof printStackRecord):
 * tell the inference that such frames existed, so a user frame first does not mean
 * "runnable in user code" but "parked somewhere in the runtime" (state unknown). */
void et_ginfer_hidden_runtime(et_ginfer *g);
static inline int et_ginfer_done(const et_ginfer *g) { return g->done; }
enum et_gstate et_ginfer_result(const et_ginfer *g);

/* Combine a printed reason (debug=2) with what the frames say: a printed reason wins
 * unless it is generic ("semacquire", "waiting", unknown) and the frames are specific. */
enum et_gstate et_gstate_refine(enum et_gstate printed, enum et_gstate inferred);

/* ---- frame classes ----
 * stdlib: the package's first path element is one of the Go standard library's top-level
 * names (from GOROOT/src of Go 1.27), or the function is compiler-generated ("type:.eq..."),
 * or has no package at all. Everything else is user code, including "main." and module
 * paths without a dot ("edgetrace/testsvc/internal/x.F" is user code: only a *first*
 * element "internal" is the standard library's). */
int et_func_is_stdlib(const char *func);
int et_func_is_stdlib_n(const char *func, size_t len);
/* runtime: "runtime.*", "runtime/internal/...", "internal/..." and the runtime's linkname entry
 * points in sync ("sync.runtime_*"): frames that are plumbing, never a blocking site. */
int et_func_is_runtime_n(const char *func, size_t len);

#endif
