/* trace.h - streaming reader for Go execution traces (Go 1.22 .. 1.27) and the goroutine
 * lifecycle summary the analyzer turns into ET_E_TRACE evidence.
 *
 * Formats (header -> writers):
 *   "go 1.22 trace" Go 1.22          "go 1.23 trace" Go 1.23, 1.24
 *   "go 1.25 trace" Go 1.25          "go 1.26 trace" Go 1.26, 1.27
 * Older headers ("go 1.21 trace" and before: the v1 format) get ET_TRACE_ERR_VERSION.
 * The wire format and event tables are learned from Go's source: see trace.c for citations.
 *
 * How it stays bounded (the trace may be tens of MB; the gateway has 256 MB):
 *   - Input is consumed batch by batch. A batch is at most 64 KiB (tracev2.MaxBatchSize), so
 *     the only input buffer is one batch; chunks of any size (1 byte .. MBs) can be fed.
 *   - Go's own reader buffers a whole generation and replays it in timestamp order. We do
 *     not: each goroutine's history inside a generation is a chain ordered by the sequence
 *     numbers on GoStart/GoUnblock/GoSwitch plus the per-M order of the events the goroutine
 *     emits itself, so keeping, per goroutine, only the newest "anchor" (highest sequence)
 *     and what its own M did after it gives the same final state in any batch order. Memory
 *     is O(live goroutines + threads), not O(events).
 *   - Per generation we keep the string table (names, reasons) and only the stacks that a
 *     goroutine record still points at; both are resolved into a small global site table
 *     when the generation ends, then the per-generation tables are reset.
 *   - Every table has a fixed capacity set by et_trace_limits and allocated once in
 *     et_trace_parser_new; et_trace_memory_bound() says how much. What does not fit is
 *     counted in et_trace_summary.trunc and the summary is marked partial; nothing grows.
 *
 * Typical use (file, HTTP body, or anything else that yields bytes):
 *     et_trace_parser *p = et_trace_parser_new(NULL);           // default limits
 *     while ((n = read_some(buf)) > 0)
 *         if (et_trace_parser_feed(p, buf, n) < 0) break;        // fatal: stop feeding
 *     et_trace_summary *s = malloc(sizeof *s);
 *     et_trace_parser_finish(p, s);                              // also after an error
 *     et_trace_parser_free(p);
 * or in one call for a buffer in memory: et_trace_summarize().
 */
#ifndef ET_TRACE_H
#define ET_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include "profile.h"

/* Goroutine states as Go's trace API names them (internal/trace GoState, Go 1.27). */
enum et_tg_state {
    ET_TG_NOTEXIST = 0, /* not yet created, or ended */
    ET_TG_RUNNABLE,
    ET_TG_RUNNING,
    ET_TG_WAITING,
    ET_TG_SYSCALL,
    ET_TG_STATE_COUNT
};
/* "NotExist", "Runnable", "Running", "Waiting", "Syscall" - exactly as `go tool trace -d=parsed` prints. */
const char *et_tg_state_name(unsigned s);

enum et_trace_status {
    ET_TRACE_OK = 0,          /* complete, nothing truncated */
    ET_TRACE_PARTIAL = 1,     /* usable but incomplete: truncated input, malformed batches, caps hit */
    ET_TRACE_ERR_FORMAT = 2,  /* not a Go execution trace (bad header) or nothing decodable */
    ET_TRACE_ERR_VERSION = 3, /* a Go trace, but a version we do not read (pre-1.22, or future) */
};

/* Capacities. Zero fields take the default. All memory is allocated from these once. */
typedef struct et_trace_limits {
    uint32_t max_goroutines;   /* live goroutine records (ended ones are retired at generation end); 65536 */
    uint32_t max_strings;      /* string-table entries per generation; 16384 */
    uint32_t max_string_bytes; /* string bytes per generation (Go caps one string at 1 KiB); 1 MiB */
    uint32_t max_stacks;       /* stacks per generation that goroutine records point at; 8192 */
    uint32_t max_frames;       /* frames kept for those stacks (<= 64 per stack); 131072 */
    uint32_t max_sites;        /* distinct resolved sites over the whole trace; 1024 */
    uint32_t max_threads;      /* Ms tracked; 4096 */
} et_trace_limits;

void et_trace_limits_default(et_trace_limits *l);
/* Bytes et_trace_parser_new allocates for these limits (the parser's whole footprint). */
size_t et_trace_memory_bound(const et_trace_limits *l);

/* Counters of what did not fit or did not parse. All zero on a clean, complete trace. */
typedef struct et_trace_trunc {
    uint64_t goroutines;     /* events about goroutines that found no free record */
    uint64_t strings;        /* strings dropped (table or bytes full) */
    uint64_t stacks;         /* stacks needed but not kept or never seen */
    uint64_t frames;         /* frames beyond the per-stack or total cap */
    uint64_t sites;          /* resolutions folded into the overflow site */
    uint64_t threads;        /* batches/events for Ms beyond max_threads */
    uint64_t groups;         /* goroutines folded into the overflow group */
    uint64_t malformed;      /* events/batches skipped because they did not decode or made no sense */
    uint64_t orphan_events;  /* goroutine events on an M with no goroutine bound (Go's parser rejects these) */
} et_trace_trunc;

/* One group of goroutines still alive at the end of the window, keyed by
 * (created_by, start_func, block site, reason, state). */
#define ET_TRACE_MAX_GROUPS 64
#define ET_TRACE_REASON_MAX 40
typedef struct et_trace_group {
    uint64_t key;                   /* et_fnv1a over the key fields (names only: stable across runs) */
    char created_by[ET_FUNC_MAX];   /* function holding the `go` statement (innermost creator frame); "" if created before the window */
    char start_func[ET_FUNC_MAX];   /* the goroutine's entry function; "" if unknown */
    et_frame block;                 /* top user frame of the block stack: innermost frame outside runtime/stdlib (profile.h rule) */
    char block_func[ET_FUNC_MAX];   /* innermost non-runtime frame, e.g. "sync.(*Mutex).Lock" */
    char reason[ET_TRACE_REASON_MAX]; /* Go's reason string: "chan receive", "sync", "select", "sleep", ...; "" when only a status was seen */
    uint8_t go_state;               /* enum et_tg_state at the end of the window (never NOTEXIST) */
    uint8_t state;                  /* enum et_gstate: normalised from reason + stack frames */
    uint8_t stdlib_only;            /* no block frame outside runtime/stdlib */
    uint8_t overflow;               /* 1: the group absorbing goroutines beyond ET_TRACE_MAX_GROUPS */
    uint32_t count;                 /* goroutines in this group */
    uint32_t created_in_window;     /* of which created during the trace (and never ended) */
    uint32_t blocked_before_window; /* of which were already waiting when the trace started */
    uint64_t oldest_ns;             /* longest time in go_state at the end of the window */
} et_trace_group;

typedef struct et_trace_summary {
    uint8_t status;                 /* enum et_trace_status */
    uint8_t go_minor;               /* header version: 22, 23, 25, 26 (0 if unknown) */
    char error[160];                /* first error/partial reason, "" when status == OK */
    uint32_t generations;
    uint64_t bytes;                 /* input bytes consumed */
    uint64_t batches;
    uint64_t events;                /* events in M batches (wire events) */
    uint64_t event_counts[64];      /* per wire event type (tracev2 numbering, types < 64) */
    uint64_t transitions;           /* goroutine StateTransition events as Go's parser emits them */
    uint64_t start_ns, end_ns;      /* trace clock, ns */
    uint64_t window_ns;
    struct {
        uint64_t seen, created, ended, waiting, runnable, running, syscall;
    } goroutines;
    uint32_t ngroups;
    et_trace_trunc trunc;
    et_trace_group groups[ET_TRACE_MAX_GROUPS]; /* sorted: waiting first, then by count, then oldest */
} et_trace_summary;

/* Final view of one goroutine, handed to the optional callback: for goroutines that ended,
 * when their generation ends; for the rest, from et_trace_parser_finish. Pointers are valid
 * only during the call. */
typedef struct et_trace_goroutine {
    uint64_t id;
    uint8_t state;                  /* enum et_tg_state (final) */
    uint8_t created;                /* created in the window */
    uint32_t transitions;           /* StateTransition events for it (Go's parser count) */
    const char *reason;             /* reason of its last GoBlock/GoStop ("" if none) */
    uint64_t since_ns;              /* trace time it entered its final state (0 if before the window) */
} et_trace_goroutine;
typedef void (*et_trace_goroutine_fn)(void *ctx, const et_trace_goroutine *g);

typedef struct et_trace_parser et_trace_parser;

/* limits may be NULL for the defaults. NULL on allocation failure. */
et_trace_parser *et_trace_parser_new(const et_trace_limits *limits);
void et_trace_parser_free(et_trace_parser *p);
void et_trace_parser_set_goroutine_fn(et_trace_parser *p, et_trace_goroutine_fn fn, void *ctx);
/* Feed the next len bytes of the trace stream (any chunking). Returns 0 to continue, -1 when
 * parsing cannot go on (bad header, unsupported version, unrecoverable framing); after -1
 * further feeds are ignored and et_trace_parser_finish reports what was gathered. */
int et_trace_parser_feed(et_trace_parser *p, const uint8_t *buf, size_t len);
/* End of input: closes the last generation, builds the groups. Returns out->status. */
int et_trace_parser_finish(et_trace_parser *p, et_trace_summary *out);
/* Bytes of heap the parser holds (== et_trace_memory_bound of its limits). */
size_t et_trace_parser_footprint(const et_trace_parser *p);

/* One-shot: a whole trace in memory. Returns out->status (or ERR_FORMAT if allocation fails). */
int et_trace_summarize(const uint8_t *data, size_t len, const et_trace_limits *limits, et_trace_summary *out);

/* Wire event type names (tracev2 numbering), "?" for unknown. */
const char *et_trace_event_name(unsigned typ);

#endif
