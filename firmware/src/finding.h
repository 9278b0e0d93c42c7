/* finding.h - what the analyze stage concludes about one target, and what the snapshot
 * carries to the collector. */
#ifndef ET_FINDING_H
#define ET_FINDING_H

#include <stdint.h>
#include <stdio.h>
#include "profile.h"

enum et_finding_kind {
    ET_F_GOROUTINE_LEAK = 0,
    ET_F_DEADLOCK,
    ET_F_HEAP_GROWTH,
    ET_F_RSS_GROWTH,
    ET_F_THREAD_LEAK,
    ET_F_KIND_COUNT
};

enum et_confidence { ET_C_SUSPECTED = 0, ET_C_LIKELY = 1, ET_C_CONFIRMED = 2 };

/* Evidence bits: which independent signals back the finding. */
enum et_evidence {
    ET_E_TREND = 1u << 0,        /* robust slope of a count over the window */
    ET_E_CLUSTER = 1u << 1,      /* many goroutines parked at one site, growing */
    ET_E_WAIT = 1u << 2,         /* debug=2 wait durations spanning sampling periods */
    ET_E_TRACE = 1u << 3,        /* execution trace: created/blocked, never woken or ended */
    ET_E_GC_PROOF = 1u << 4,     /* /debug/pprof/goroutineleak lists the site */
    ET_E_STACK_GROWTH = 1u << 5, /* StackInuse rising with the goroutine count */
    ET_E_HEAP_SITE = 1u << 6,    /* a heap allocation site's inuse_space keeps rising */
    ET_E_MEMSTATS = 1u << 7,     /* HeapInuse trend */
    ET_E_PROC = 1u << 8,         /* /proc RSS or Threads trend */
    ET_E_SURVIVORS = 1u << 9,    /* debug=2 ids: the goroutines of an earlier dump are all still
                                  * here, none woke since, and more arrived */
};
#define ET_EVIDENCE_COUNT 10

/* Why a heap-growth finding names no allocation site (0: it names one, or another kind). The
 * heap profile's in-use figures are as of the last completed GC cycles and sampled, so a site
 * shows only after the profile moved across several GCs. */
enum et_no_site {
    ET_NS_NONE = 0,
    ET_NS_PROFILE_LAG,  /* the growth is under 4 GC cycles old: the profile has not caught up */
    ET_NS_NO_SITE_GREW, /* no single site grew by 512 KiB and 10% across GC cycles (yet) */
    ET_NS_TRUNCATED,    /* the heap profile was cut at the agent's site limit */
    ET_NS_NO_PROFILE,   /* the heap profile lists no allocation sites (MemProfileRate 0?) */
    ET_NS_COUNT
};
const char *et_no_site_name(unsigned code); /* "profile-lag", ... ("" for ET_NS_NONE) */
const char *et_no_site_text(unsigned code); /* one sentence for people */

const char *et_finding_kind_name(enum et_finding_kind k);   /* "goroutine-leak", "deadlock", ... */
const char *et_confidence_name(enum et_confidence c);        /* "suspected", "likely", "confirmed" */
const char *et_evidence_name(unsigned bit_index);            /* "trend", "cluster", "wait", "trace", "gc-proof", ... */

typedef struct et_finding {
    uint8_t kind;            /* enum et_finding_kind */
    uint8_t confidence;      /* enum et_confidence */
    uint8_t state;           /* enum et_gstate of the site (goroutine findings) */
    uint32_t evidence;       /* enum et_evidence bits */
    char fingerprint[17];    /* hex of a hash of names only: stable across restarts and rebuilds */
    et_frame site;           /* goroutine: blocked user frame; heap: allocation site */
    char created_by[ET_FUNC_MAX];
    char stack[ET_STACK_MAX][ET_FUNC_MAX];
    uint8_t nstack;
    uint32_t count;          /* goroutines at the site (or total, for trend-only findings) */
    double growth_per_min;   /* goroutines/min, bytes/min, threads/min depending on kind */
    double oldest_wait_s;    /* from debug=2 or the trace; 0 if unknown */
    uint64_t value;          /* kind-specific current magnitude: heap bytes, RSS bytes, threads */
    uint64_t first_seen_ms;  /* monotonic, agent-local: when the evidence first appeared */
    uint64_t last_seen_ms;
    /* debug=2 goroutine ids (goroutine findings; 0 when no dump compared them): of the oldest
     * goroutines an earlier dump saw at the site, how many the latest one still holds. */
    uint32_t survivors, survivors_of;
    uint64_t oldest_id;      /* lowest goroutine id at the site in the latest dump (0: unknown) */
    uint32_t wait_hist[ET_WAIT_BUCKETS]; /* goroutines at the site by printed wait: <1, 1-4, 5-29, >=30 min */
    uint8_t no_site;         /* heap-growth without a site: enum et_no_site, why */
} et_finding;

#define ET_MAX_FINDINGS 32

typedef struct et_findings {
    uint32_t n;
    uint32_t dropped;        /* findings beyond ET_MAX_FINDINGS, least confident first */
    et_finding f[ET_MAX_FINDINGS];
} et_findings;

/* Keeps only findings at or above min (order preserved). `sample` keeps ET_C_LIKELY:
 * report only what you would alert on. */
void et_findings_keep(et_findings *fs, enum et_confidence min);
/* Writes the findings as a JSON array of the objects of issue 3 item 6:
 * {"kind","confidence","function","file","line","state","count","growth_per_min",
 *  "oldest_wait_s","created_by","fingerprint","evidence":[...],"value","stack":[...]}.
 * Strings are escaped; invalid UTF-8 becomes U+FFFD. No trailing newline. */
void et_findings_json(FILE *out, const et_findings *fs);
/* One JSON string literal (quotes included), escaped as above. */
void et_json_string(FILE *out, const char *s);
/* Human-readable report, one block per finding; "no findings" when empty. */
void et_findings_print(FILE *out, const et_findings *fs);

#endif
