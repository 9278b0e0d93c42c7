/* sample.h - the sample stage: decides what to fetch from each target every cycle, streams
 * the HTTP bodies into the parsers and hands the result to the analyzer.
 *
 * Policy (cheap signals first, see leak-techniques.md §2):
 *   every cycle       goroutine (gzipped proto: totals, sites, and the runtime frames that
 *                     say what each waits on), heap?debug=1 (sites + MemStats),
 *                     /proc/PID/{status,stat,fd}
 *   when suspicious   goroutine?debug=2 instead of the proto (wait durations; it stops the
 *   or deep_interval  world while dumping, so never routinely), and an execution trace
 *   leak_interval     goroutineleak (proto) where it is served (it triggers a GC); a 404
 *   or suspicious     marks it absent for an hour (Go < 1.26, or the experiment is off)
 *
 * Work happens in a small pool of workspaces (parsers and profile buffers, ~1.5 MB each,
 * allocated once). A target whose cycle is due waits for a free workspace; with two
 * workspaces a service that accepts and never answers holds one until its idle timeout,
 * and the others keep sampling through the second.
 *
 * Everything runs on the agent's event loop; nothing here blocks (the /proc reads are
 * local procfs reads, which do not block on a service).
 */
#ifndef ET_SAMPLE_H
#define ET_SAMPLE_H

#include <stdint.h>

#include "analyze.h"
#include "config.h"
#include "finding.h"
#include "httpc.h"
#include "loop.h"
#include "profile.h"

#define ET_SAMPLE_MAX_TARGETS 32
#define ET_SAMPLE_WORKSPACES 2

/* Who a target is. The identity (service + pod fields) names the service across restarts;
 * pid + start_ticks name one incarnation of it. */
typedef struct et_sample_target {
    char service[64];
    char pod_namespace[64], pod_name[64], container[64];
    uint64_t identity_hash;      /* discover.h identity hash; 0 = match on the names */
    char url[160];               /* pprof root, e.g. http://127.0.0.1:6060/debug/pprof */
    int pid;                     /* 0 = unknown: no /proc figures */
    uint64_t start_ticks;
    char go_version[24];
    int netns_fd;                /* -1 = our namespace; owned by the scheduler once added */
    uint32_t interval_ms;        /* 0 = scheduler default */
    uint32_t profiles;           /* et_profile_bits; 0 = all */
} et_sample_target;

/* Per-target cost of sampling, reported in snapshots and by `sample`. */
typedef struct et_sample_cost {
    uint64_t bytes;              /* body bytes fetched */
    uint32_t ms;                 /* wall time of the cycle */
    uint32_t fetches;
    uint32_t errors;
} et_sample_cost;

typedef struct et_sampler et_sampler;
typedef struct et_sched et_sched;

/* What one finished cycle produced. Pointers are valid only during the callback. */
typedef struct et_cycle {
    et_sampler *sampler;
    const et_sample_target *target;
    uint64_t t_ms;
    const et_gprofile *goroutine;   /* NULL if the fetch failed */
    const et_gprofile *leak;        /* NULL unless fetched this cycle */
    const et_hprofile *heap;        /* NULL if the fetch failed */
    const et_procstat *proc;        /* NULL without a pid */
    const struct et_trace_summary *trace; /* NULL unless a trace was taken this cycle */
    const et_findings *findings;    /* everything the analyzer holds, suspected included */
    const et_analyzer *analyzer;
    et_sample_cost cost;            /* this cycle */
    int deep;                       /* debug=2 / trace fetched this cycle */
    int target_down;                /* the goroutine profile could not be fetched */
    char error[160];                /* first error of the cycle, "" if none */
} et_cycle;

typedef void (*et_cycle_cb)(void *ud, const et_cycle *c);

typedef struct et_sched_conf {
    uint32_t interval_ms, deep_interval_ms, leak_interval_ms;
    uint32_t trace_seconds;
    char proc_root[200];
    et_analyze_conf analyze;
    et_http_opts http;           /* timeouts and caps for every fetch */
} et_sched_conf;

void et_sched_conf_from_config(et_sched_conf *sc, const et_config *c);

et_sched *et_sched_create(et_loop *loop, et_httpc *http, const et_sched_conf *conf, et_cycle_cb cb, void *ud);
void et_sched_destroy(et_sched *s);
/* Central settings applied live (settings_apply.h): intervals, trace window, allow list.
 * A pending cycle is re-timed from its last start, so a shorter interval holds at once. */
void et_sched_retune(et_sched *s, const et_sched_conf *conf);
/* A target's own interval and profiles (0 = the defaults), re-timed the same way. */
void et_sampler_set_policy(et_sampler *sp, uint32_t interval_ms, uint32_t profiles);

/* Adds a target; its first cycle starts after first_delay_ms. NULL when the table is full. */
et_sampler *et_sched_add(et_sched *s, const et_sample_target *t, uint32_t first_delay_ms);
/* Finds a target by identity (service + pod fields); NULL if absent. */
et_sampler *et_sched_find(et_sched *s, const et_sample_target *identity);
/* The first target of this service name (what the collector calls a target; downlink captures). */
et_sampler *et_sched_find_service(et_sched *s, const char *service);
/* A new incarnation of the same service (pid or start time changed): history restarts. */
void et_sampler_new_incarnation(et_sampler *sp, int pid, uint64_t start_ticks);
void et_sched_remove(et_sched *s, et_sampler *sp);
const et_sample_target *et_sampler_target(const et_sampler *sp);
/* Cycles completed since added. */
uint32_t et_sampler_cycles(const et_sampler *sp);

/* Finds the PID listening on a local TCP port (via PROC_ROOT/net/tcp{,6} and the socket
 * inodes in PROC_ROOT/PID/fd). 0 if not found or not visible. */
int et_pid_for_local_port(const char *proc_root, uint16_t port);

/* `edgetrace-agent sample URL [--samples N] [--interval D] [--json] [--all]` */
int sample_cmd_main(int argc, char **argv);

#endif
