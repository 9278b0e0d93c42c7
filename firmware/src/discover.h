/* discover.h - which Go services on this gateway to sample, and how to reach them.
 *
 * Sources, in order of authority:
 *   config  [target "name"] sections of agent.conf (et_config.targets);
 *   proc    a scan of PROC_ROOT for processes whose executable is a Go ELF (it carries Go build
 *           info) with listening TCP sockets, each port confirmed with GET /debug/pprof/;
 *   pod     the same, for a process in a Kubernetes pod (K3s/containerd): it is reached by
 *           entering the pod's network namespace, labelled with namespace/pod/container from
 *           its cgroup path and containerd's state, and Pyroscope-style annotations are
 *           honoured where the runtime exposes them: <type>.port picks the pprof port,
 *           goroutine/memory .path the prefix, .scrape=true types the profiles, and a pod
 *           whose every .scrape is "false" is skipped.
 *
 * Identity vs incarnation: `identity` names the service and survives restarts and rebuilds
 * (config name; k8s namespace/pod/container + port; executable path + port). The incarnation
 * (PID + start time from /proc/PID/stat field 22) changes whenever the process does. History
 * is keyed by identity; a changed incarnation tells the analyzer that counters restarted.
 *
 * Everything read from /proc or the runtime's files is treated as hostile: bounded reads,
 * capped counts, and the pure parsers below have fuzz targets. */
#ifndef ET_DISCOVER_H
#define ET_DISCOVER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "httpc.h"

#define ET_MAX_TARGETS 64
#define ET_IDENTITY_MAX 200
#define ET_REASON_MAX 256
#define ET_GOVER_MAX 48
#define ET_K8S_NAME_MAX 64
#define ET_CONTAINER_ID_MAX 65
#define ET_PPROF_PREFIX_MAX 64

enum et_target_source { ET_SRC_CONFIG = 0, ET_SRC_PROC = 1, ET_SRC_POD = 2 };
enum et_confirm_state { ET_CONFIRM_SKIPPED = -1, ET_CONFIRM_FAILED = 0, ET_CONFIRM_OK = 1 };

typedef struct et_target {
    char identity[ET_IDENTITY_MAX];
    uint64_t identity_hash;          /* et_fnv1a of identity: the history key */
    char name[ET_NAME_MAX];          /* short display name */
    char base_url[ET_URL_MAX];       /* http://127.0.0.1:6060 (no path) */
    char pprof_prefix[ET_PPROF_PREFIX_MAX]; /* "/debug/pprof/" unless configured/annotated */
    int source;                      /* enum et_target_source */
    char reason[ET_REASON_MAX];      /* why it was found, human-readable */
    /* incarnation; pid 0 when unknown (a config target not matched to a process) */
    int pid;
    uint64_t start_ticks;            /* /proc/PID/stat field 22 */
    uint64_t incarnation;            /* hash of pid + start_ticks, 0 when unknown */
    char exe[ET_PATH_MAX];
    char go_version[ET_GOVER_MAX];   /* "go1.23.4"; empty when unknown */
    uint16_t port;
    /* network namespace: when foreign_netns, fetches must enter PROC_ROOT/PID/ns/net */
    uint64_t netns_ino;
    int foreign_netns;
    /* Kubernetes labels (empty outside pods) */
    char k8s_namespace[ET_K8S_NAME_MAX];
    char k8s_pod[ET_K8S_NAME_MAX * 2];
    char k8s_container[ET_K8S_NAME_MAX];
    char pod_uid[40];
    char container_id[ET_CONTAINER_ID_MAX];
    uint32_t profiles;               /* et_profile_bits; from config or annotations, 0 = all */
    uint32_t interval_ms;            /* 0 = agent default */
    int annotated;                   /* Pyroscope-style annotations applied */
    int confirmed;                   /* enum et_confirm_state */
    char confirm_msg[ET_HTTP_MSG_MAX];
} et_target;

typedef struct et_target_set {
    et_target t[ET_MAX_TARGETS];
    unsigned n;
    unsigned dropped;                /* candidates beyond ET_MAX_TARGETS */
    unsigned procs_scanned, go_procs, unreadable;
} et_target_set;

typedef struct et_discover_opts {
    const char *proc_root;           /* default "/proc" (or et_config.proc_root) */
    const char *run_root;            /* prefix for /run/containerd and /run/k3s; default "" */
    int scan_proc;                   /* default 1 (et_config.discover) */
    int confirm;                     /* GET /debug/pprof/ each candidate; default 1 */
    uint32_t confirm_timeout_ms;     /* per request; default 2000 */
    uint64_t self_netns_ino;         /* 0: read /proc/self/ns/net */
    int self_pid;                    /* skipped while scanning; 0 = getpid() */
} et_discover_opts;

void et_discover_opts_default(et_discover_opts *o);

/* Config targets plus (if o->scan_proc) the /proc scan. No network I/O: candidates come back
 * with confirmed = ET_CONFIRM_SKIPPED. Returns the number of targets, -1 if PROC_ROOT is
 * unreadable while scanning was asked for. */
int et_discover_scan(const et_config *cfg, const et_discover_opts *o, et_target_set *out);

/* The same scan, a budget of entries at a time, for the agent's event loop: a Go server may
 * hold 16k fds, and each is a readlink, so a whole scan could stall CoAP retransmissions
 * and HTTP timeouts. One entry is one fd readlink; a process costs 8 before its fds.
 *   et_discover_scan_start(&job, cfg, opts, out);      // config targets; opens PROC_ROOT
 *   while (!et_discover_scan_step(&job, 256)) { ...let the loop run... }
 * start returns like et_discover_scan (-1: PROC_ROOT unreadable; the job is then done).
 * step returns 1 once the scan is complete (resources freed), 0 if there is more. abort
 * frees a job that will not be finished. out must stay alive while the job runs. */
typedef struct et_scan_job {
    et_target_set *out;
    et_discover_opts opts;
    uint64_t self_ns;
    int self_pid;
    void *proc_dir;                  /* DIR * of PROC_ROOT */
    void *cur;                       /* the process being scanned (discover.c) */
    unsigned long entries;           /* budget spent so far */
    int done;
} et_scan_job;
int et_discover_scan_start(et_scan_job *job, const et_config *cfg, const et_discover_opts *o, et_target_set *out);
int et_discover_scan_step(et_scan_job *job, unsigned budget);
void et_discover_scan_abort(et_scan_job *job);

/* Confirms candidates with GET <prefix> (pprof's index page must mention "goroutine"), up to
 * 8 at a time, inside a private loop; blocks at most about o->confirm_timeout_ms per wave.
 * Discovered candidates that fail are removed (config targets stay, marked FAILED). Returns
 * the number of confirmed targets. */
int et_discover_confirm(et_target_set *set, const et_discover_opts *o);

/* The same, driven by the caller's loop and client; done(ud) runs once all have finished.
 * job must stay alive until then. */
struct et_confirm_job;
typedef struct et_confirm_ctx {
    struct et_confirm_job *job;
    unsigned idx;
    int netns_fd;
    int seen;                        /* body mentioned "goroutine" */
    size_t ntail;
    char tail[12];                   /* last bytes of the previous piece, for split matches */
} et_confirm_ctx;
typedef struct et_confirm_job {
    et_target_set *set;
    et_httpc *http;
    const char *proc_root;
    uint32_t timeout_ms;
    unsigned next, in_flight;
    int finished;
    et_timer_id retry;               /* client pool busy with other work: try again later */
    et_confirm_ctx ctx[ET_MAX_TARGETS];
    void (*done)(void *ud);
    void *ud;
} et_confirm_job;
int et_discover_confirm_start(et_confirm_job *job, et_httpc *http, et_target_set *set, const char *proc_root,
                              uint32_t timeout_ms, void (*done)(void *ud), void *ud);
/* Drops rejected candidates (confirmed == FAILED, source != config). */
void et_target_set_compact(et_target_set *set);

/* url = base_url + pprof_prefix + what, e.g. what = "goroutine?debug=1". 0, or -1 if it
 * does not fit. */
int et_target_url(const et_target *t, const char *what, char *out, size_t outsz);
/* Opens PROC_ROOT/PID/ns/net for a target in a foreign namespace, for et_http_opts.netns_fd.
 * Returns the fd, -1 when no namespace switch is needed, -2 on error (errno set). */
int et_target_open_netns(const et_target *t, const char *proc_root);
const et_target *et_target_find(const et_target_set *s, uint64_t identity_hash);
const char *et_target_source_name(int source);

/* ---- pure parsers (exported for tests and fuzzing) ---- */

/* One line of /proc/net/tcp or tcp6. 1 = parsed (check .state), 0 = header/blank, -1 = junk.
 * Addresses come back in network byte order as the kernel printed them on this host. */
typedef struct et_tcp_sock {
    int family;                      /* AF_INET / AF_INET6 */
    uint8_t addr[16];
    uint16_t port;
    unsigned state;                  /* 0x0A = LISTEN */
    uint64_t inode;
} et_tcp_sock;
int et_parse_tcp_line(const char *line, int v6, et_tcp_sock *out);

/* /proc/PID/cgroup (v1 or v2): finds a kubepods path. 1 = in a pod, 0 = not, -1 = junk. */
typedef struct et_cgroup_info {
    char pod_uid[40];
    char container_id[ET_CONTAINER_ID_MAX];
    char runtime[24];                /* "containerd", "docker", "crio" or "" (cgroupfs) */
    char qos[16];                    /* "guaranteed", "burstable", "besteffort" */
} et_cgroup_info;
int et_parse_cgroup(const char *text, size_t n, et_cgroup_info *out);

/* /proc/PID/stat: field 22 (starttime). 0 or -1. Tolerates ')' and spaces in comm. */
int et_parse_stat_starttime(const char *text, size_t n, uint64_t *start_ticks);

/* Go build info in an ELF image. 1 = Go binary (ver filled, possibly "" if the version could
 * not be read), 0 = ELF but not Go, -1 = not a readable ELF. Bounded reads only. */
typedef int (*et_read_at_fn)(void *ud, uint64_t off, void *buf, size_t n); /* bytes read, <0 error */
int et_elf_go_version(et_read_at_fn rd, void *ud, uint64_t file_size, char *ver, size_t vsz);
int et_elf_go_version_mem(const uint8_t *img, size_t n, char *ver, size_t vsz);
/* Verdicts are cached by (device, inode, size, mtime) so periodic rescans stay cheap. */
int et_elf_go_version_path(const char *path, char *ver, size_t vsz);

/* OCI config.json: calls cb for each string pair in the first "annotations" object.
 * Returns the number of pairs, -1 on malformed JSON before/inside it. Keys and values longer
 * than 255 bytes are truncated. */
typedef void (*et_annot_cb)(void *ud, const char *key, const char *val);
int et_oci_annotations(const char *json, size_t n, et_annot_cb cb, void *ud);

/* discover_cmd.c: `edgetrace-agent discover [--json] [--proc-root DIR] [--run-root DIR]
 * [--config FILE] [--no-confirm]` */
int discover_cmd_main(int argc, char **argv);

#endif
