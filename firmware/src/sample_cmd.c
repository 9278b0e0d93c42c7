/* sample_cmd.c - `edgetrace-agent sample URL`: the one-shot mode for an engineer on a gateway.
 *
 *   edgetrace-agent sample http://127.0.0.1:6060 [--samples N] [--interval D] [--json] [--all]
 *                                                 [--deep-interval D] [--no-trace] [--proc-root DIR]
 *
 * Runs the same sample -> parse -> analyze pipeline as the daemon on one target, N cycles
 * D apart, then prints what it would alert on (likely and confirmed findings; --all adds
 * the suspected ones). Exit status: 0 ran (whatever it found), 1 the target never answered
 * with a goroutine profile, 2 usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "config.h"
#include "discover.h"
#include "finding.h"
#include "httpc.h"
#include "loop.h"
#include "sample.h"

struct sample_run {
    et_loop *loop;
    uint32_t want;
    uint32_t done;
    uint32_t ok_cycles;
    uint64_t goroutines;
    char go_version[24];
    char last_error[160];
    et_findings findings;
    uint64_t bytes, ms_total;
    uint32_t fetch_errors;
    int each, all;
};

static void on_cycle(void *ud, const et_cycle *c)
{
    struct sample_run *r = ud;
    r->done++;
    r->bytes += c->cost.bytes;
    r->ms_total += c->cost.ms;
    r->fetch_errors += c->cost.errors;
    if (c->goroutine) {
        r->ok_cycles++;
        r->goroutines = c->goroutine->header_total;
        if (c->goroutine->go_version[0])
            et_strlcpy(r->go_version, c->goroutine->go_version, sizeof r->go_version);
    }
    if (c->error[0]) {
        et_strlcpy(r->last_error, c->error, sizeof r->last_error);
        et_warn("sample %u: %s", r->done, c->error);
    }
    r->findings = *c->findings;
    if (r->each) {
        /* One line per sample, for benchmarks that measure time to detect. */
        et_findings shown = *c->findings;
        et_findings_keep(&shown, r->all ? ET_C_SUSPECTED : ET_C_LIKELY);
        printf("{\"sample\":%u,\"ok\":%s,\"goroutines\":%llu,\"deep\":%d,\"bytes\":%llu,\"ms\":%u,\"findings\":",
               r->done, c->goroutine ? "true" : "false",
               (unsigned long long)(c->goroutine ? c->goroutine->header_total : 0), c->deep,
               (unsigned long long)c->cost.bytes, c->cost.ms);
        et_findings_json(stdout, &shown);
        printf("}\n");
        fflush(stdout);
    }
    if (r->done >= r->want)
        et_loop_stop(r->loop);
}

static void usage(void)
{
    fprintf(stderr, "usage: edgetrace-agent sample URL [--samples N] [--interval D] [--json] [--all]\n"
                    "                                [--deep-interval D] [--debug2] [--each] [--no-trace]\n"
                    "                                [--proc-root DIR]\n"
                    "  --all     also show suspected findings (default: likely and confirmed only)\n"
                    "  --debug2  fetch goroutine?debug=2 every cycle (it stops the world: use sparingly)\n"
                    "  --each    one JSON line per sample instead of one object at the end\n");
}

int sample_cmd_main(int argc, char **argv)
{
    const char *url = NULL;
    long samples = 5;
    int64_t interval = 10000, deep_interval = -1;
    int json = 0, all = 0, trace = 1, each = 0, debug2 = 0;
    et_config conf;
    et_config_defaults(&conf);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--all")) {
            all = 1;
        } else if (!strcmp(a, "--each")) {
            each = json = 1;
        } else if (!strcmp(a, "--debug2")) {
            debug2 = 1;
        } else if (!strcmp(a, "--no-trace")) {
            trace = 0;
        } else if (!strcmp(a, "--samples") && v) {
            char *end;
            samples = strtol(v, &end, 10);
            if (*end || samples < 1 || samples > 10000) {
                fprintf(stderr, "edgetrace-agent sample: --samples must be 1..10000\n");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--interval") && v) {
            interval = et_parse_duration_ms(v);
            if (interval < 100) {
                fprintf(stderr, "edgetrace-agent sample: bad --interval '%s' (e.g. 500ms, 10s, 1m)\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--deep-interval") && v) {
            deep_interval = et_parse_duration_ms(v);
            if (deep_interval < 100) {
                fprintf(stderr, "edgetrace-agent sample: bad --deep-interval '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--proc-root") && v) {
            et_strlcpy(conf.proc_root, v, sizeof conf.proc_root);
            i++;
        } else if (a[0] != '-' && !url) {
            url = a;
        } else {
            usage();
            return 2;
        }
    }
    if (!url) {
        usage();
        return 2;
    }
    et_url pu;
    if (et_url_parse(url, &pu) != 0) {
        fprintf(stderr, "edgetrace-agent sample: '%s' is not an http://HOST[:PORT] URL on this machine\n", url);
        return 2;
    }

    conf.interval_ms = (uint32_t)interval;
    /* In a short engineer-run session a debug=2 dump every few samples is affordable and
     * gives the wait-duration evidence; the daemon keeps its long default. */
    conf.deep_interval_ms = deep_interval > 0 ? (uint32_t)deep_interval : (uint32_t)interval * 3u;
    if (debug2)
        conf.deep_interval_ms = 1; /* every cycle: the deep dump is the point */
    conf.leak_interval_ms = (uint32_t)interval * 2u;
    if (!trace)
        conf.trace_seconds = 0;

    et_sched_conf sc;
    et_sched_conf_from_config(&sc, &conf);
    et_loop *loop = et_loop_create(16, 16);
    et_httpc *http = loop ? et_httpc_create(loop, 2) : NULL;
    struct sample_run run = {.loop = loop, .want = (uint32_t)samples, .each = each, .all = all};
    et_sched *sched = http ? et_sched_create(loop, http, &sc, on_cycle, &run) : NULL;
    if (!sched) {
        fprintf(stderr, "edgetrace-agent sample: out of memory\n");
        return 1;
    }

    et_sample_target t;
    memset(&t, 0, sizeof t);
    /* A bare http://host:port means net/http/pprof's default mount point. */
    if (!strcmp(pu.path, "/"))
        snprintf(t.url, sizeof t.url, "%s%sdebug/pprof", url, url[strlen(url) - 1] == '/' ? "" : "/");
    else
        et_strlcpy(t.url, url, sizeof t.url);
    snprintf(t.service, sizeof t.service, "%.48s:%u", pu.host, (unsigned)pu.port);
    t.netns_fd = -1;
    t.profiles = ET_P_GOROUTINE | ET_P_HEAP | ET_P_GOROUTINELEAK | (trace ? ET_P_TRACE : 0);
    /* /proc figures need the PID behind the port; only visible for loopback services in
     * our namespace. Without it RSS and thread leaks cannot be seen, so say so. */
    if (pu.host[0] && (!strcmp(pu.host, "127.0.0.1") || !strcmp(pu.host, "localhost") || !strcmp(pu.host, "::1")))
        t.pid = et_pid_for_local_port(conf.proc_root, pu.port);
    if (!t.pid) {
        et_info("sample: no local PID found for port %u; /proc figures (RSS, threads) unavailable", pu.port);
    } else {
        /* Neither the proto goroutine profile nor debug=1 names the Go release; the binary's
         * build info does (as discovery reads it for the daemon's targets). */
        char exe[ET_PATH_MAX + 32];
        snprintf(exe, sizeof exe, "%s/%d/exe", conf.proc_root[0] ? conf.proc_root : "/proc", t.pid);
        if (et_elf_go_version_path(exe, run.go_version, sizeof run.go_version) != 1)
            run.go_version[0] = 0;
    }
    et_sched_add(sched, &t, 0);

    if (et_loop_run(loop) != 0)
        fprintf(stderr, "edgetrace-agent sample: event loop failed: %s\n", strerror(errno));

    int rc = 0;
    et_findings shown = run.findings;
    et_findings_keep(&shown, all ? ET_C_SUSPECTED : ET_C_LIKELY);
    if (run.ok_cycles == 0) {
        fprintf(stderr, "edgetrace-agent sample: %s: no goroutine profile: %s\n", url,
                run.last_error[0] ? run.last_error : "no answer");
        rc = 1;
    }
    if (each) {
        /* the per-sample lines were the output */
    } else if (json) {
        printf("{\"target\":");
        et_json_string(stdout, url);
        printf(",\"go_version\":");
        et_json_string(stdout, run.go_version);
        printf(",\"goroutines\":%llu,\"samples\":%u,\"samples_ok\":%u,\"bytes_fetched\":%llu,"
               "\"ms_per_cycle\":%.1f,\"errors\":%u,\"findings\":",
               (unsigned long long)run.goroutines, run.done, run.ok_cycles, (unsigned long long)run.bytes,
               run.done ? (double)run.ms_total / run.done : 0.0, run.fetch_errors);
        et_findings_json(stdout, &shown);
        if (rc) {
            printf(",\"error\":");
            et_json_string(stdout, run.last_error);
        }
        printf("}\n");
    } else if (!rc) {
        printf("target      %s%s%s\n", url, run.go_version[0] ? "  go " : "", run.go_version);
        printf("goroutines  %llu\n", (unsigned long long)run.goroutines);
        printf("samples     %u (%u ok), %llu bytes fetched, %.1f ms per cycle\n", run.done, run.ok_cycles,
               (unsigned long long)run.bytes, run.done ? (double)run.ms_total / run.done : 0.0);
        if (shown.n == 0)
            printf("findings    none%s\n", all ? "" : " (likely or confirmed; --all shows suspected ones)");
        else
            et_findings_print(stdout, &shown);
    }
    et_sched_destroy(sched);
    et_httpc_destroy(http);
    et_loop_destroy(loop);
    return rc;
}
