/* discover_cmd.c - `edgetrace-agent discover`: lists the targets the agent would sample and
 * why, so an engineer on a gateway can see at once whether a service is (not) picked up.
 *
 *   edgetrace-agent discover [--json] [--proc-root DIR] [--run-root DIR] [--config FILE]
 *                            [--no-confirm] [--timeout D]
 *
 * Candidates that fail the GET /debug/pprof/ confirmation are listed as "rejected" with the
 * error, because "why is my service not found" is the question this command answers. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "config.h"
#include "discover.h"
#include "loop.h"

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_target(FILE *f, const et_target *t)
{
    char url[ET_URL_MAX + ET_PPROF_PREFIX_MAX];
    et_target_url(t, "", url, sizeof(url));
    char inc[17];
    et_hex64(t->incarnation, inc);
    fputs("{\"identity\":", f);
    json_str(f, t->identity);
    fputs(",\"name\":", f);
    json_str(f, t->name);
    fputs(",\"source\":", f);
    json_str(f, et_target_source_name(t->source));
    fputs(",\"reason\":", f);
    json_str(f, t->reason);
    fputs(",\"url\":", f);
    json_str(f, url);
    fputs(",\"base_url\":", f);
    json_str(f, t->base_url);
    fprintf(f, ",\"port\":%u,\"pid\":%d,\"start_ticks\":%" PRIu64 ",\"incarnation\":", (unsigned)t->port, t->pid,
            t->start_ticks);
    json_str(f, t->pid ? inc : "");
    fputs(",\"exe\":", f);
    json_str(f, t->exe);
    fputs(",\"go_version\":", f);
    json_str(f, t->go_version);
    fprintf(f, ",\"netns\":{\"inode\":%" PRIu64 ",\"foreign\":%s}", t->netns_ino, t->foreign_netns ? "true" : "false");
    if (t->k8s_namespace[0] || t->pod_uid[0] || t->container_id[0]) {
        fputs(",\"k8s\":{\"namespace\":", f);
        json_str(f, t->k8s_namespace);
        fputs(",\"pod\":", f);
        json_str(f, t->k8s_pod);
        fputs(",\"container\":", f);
        json_str(f, t->k8s_container);
        fputs(",\"pod_uid\":", f);
        json_str(f, t->pod_uid);
        fputs(",\"container_id\":", f);
        json_str(f, t->container_id);
        fputs("}", f);
    } else {
        fputs(",\"k8s\":null", f);
    }
    uint32_t pr = t->profiles ? t->profiles : ET_P_ALL;
    static const char *const names[] = { "goroutine", "heap", "goroutineleak", "trace" };
    fputs(",\"profiles\":[", f);
    int first = 1;
    for (unsigned i = 0; i < 4; i++)
        if (pr & (1u << i)) {
            fprintf(f, "%s\"%s\"", first ? "" : ",", names[i]);
            first = 0;
        }
    fprintf(f, "],\"interval_ms\":%u,\"annotated\":%s,\"confirmed\":%s,\"confirm\":", t->interval_ms,
            t->annotated ? "true" : "false",
            t->confirmed == ET_CONFIRM_OK ? "true" : t->confirmed == ET_CONFIRM_FAILED ? "false" : "null");
    json_str(f, t->confirm_msg);
    fputs("}", f);
}

static void human_target(FILE *f, const et_target *t)
{
    char url[ET_URL_MAX + ET_PPROF_PREFIX_MAX];
    et_target_url(t, "", url, sizeof(url));
    fprintf(f, "%-6s %-40s %s\n", et_target_source_name(t->source), t->identity, url);
    fprintf(f, "       why: %s\n", t->reason);
    if (t->pid)
        fprintf(f, "       pid %d  start %" PRIu64 "  %s%s\n", t->pid, t->start_ticks, t->go_version[0] ? t->go_version : "",
                t->foreign_netns ? "  (enters pod netns)" : "");
    if (t->confirmed != ET_CONFIRM_SKIPPED)
        fprintf(f, "       %s: %s\n", t->confirmed == ET_CONFIRM_OK ? "confirmed" : "rejected", t->confirm_msg);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: edgetrace-agent discover [--json] [--proc-root DIR] [--run-root DIR] [--config FILE]\n"
               "                                [--no-confirm] [--timeout D]\n");
}

static void cmd_confirm_done(void *ud)
{
    et_loop_stop((et_loop *)ud);
}

int discover_cmd_main(int argc, char **argv)
{
    int json = 0, confirm = 1;
    const char *proc_root = NULL, *run_root = "", *config = NULL;
    uint32_t timeout_ms = 2000;
    /* Called as main's argv ("edgetrace-agent discover ...") or with the subcommand first. */
    int i = 1;
    if (argc > 1 && !strcmp(argv[1], "discover"))
        i = 2;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--no-confirm")) {
            confirm = 0;
        } else if (!strcmp(a, "--proc-root") && i + 1 < argc) {
            proc_root = argv[++i];
        } else if (!strcmp(a, "--run-root") && i + 1 < argc) {
            run_root = argv[++i];
        } else if (!strcmp(a, "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strcmp(a, "--timeout") && i + 1 < argc) {
            int64_t ms = et_parse_duration_ms(argv[++i]);
            if (ms <= 0 || ms > 600000) {
                fprintf(stderr, "discover: bad --timeout '%s'\n", argv[i]);
                return 2;
            }
            timeout_ms = (uint32_t)ms;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "discover: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    static et_config cfg; /* ~10 KB: kept off the stack */
    et_config_defaults(&cfg);
    char err[256];
    if (et_config_load(&cfg, config ? config : "/etc/edgetrace/agent.conf", config != NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "discover: %s\n", err);
        return 1;
    }
    et_discover_opts o;
    et_discover_opts_default(&o);
    o.proc_root = proc_root ? proc_root : cfg.proc_root;
    o.run_root = run_root;
    o.scan_proc = proc_root ? 1 : cfg.discover;
    o.confirm = confirm;
    o.confirm_timeout_ms = timeout_ms;

    static et_target_set set;
    if (et_discover_scan(&cfg, &o, &set) < 0) {
        fprintf(stderr, "discover: cannot scan %s: %s\n", o.proc_root, strerror(errno));
        return 1;
    }
    if (confirm && set.n > 0) {
        et_loop *l = et_loop_create(16, 16);
        et_httpc *h = l ? et_httpc_create(l, 8) : NULL;
        if (!h) {
            fprintf(stderr, "discover: out of memory\n");
            et_loop_destroy(l);
            return 1;
        }
        static et_confirm_job job;
        et_discover_confirm_start(&job, h, &set, o.proc_root, timeout_ms, cmd_confirm_done, l);
        while (!job.finished)
            if (et_loop_run(l) < 0)
                break;
        et_httpc_destroy(h);
        et_loop_destroy(l);
    }

    FILE *f = stdout;
    unsigned nok = 0, nrej = 0;
    for (unsigned k = 0; k < set.n; k++) {
        int rejected = set.t[k].source != ET_SRC_CONFIG && set.t[k].confirmed == ET_CONFIRM_FAILED;
        nrej += rejected;
        nok += !rejected;
    }
    if (json) {
        fputs("{\"proc_root\":", f);
        json_str(f, o.proc_root);
        fprintf(f, ",\"scanned\":%u,\"go_processes\":%u,\"unreadable\":%u,\"dropped\":%u,\"confirm\":%s,\"targets\":[",
                set.procs_scanned, set.go_procs, set.unreadable, set.dropped, confirm ? "true" : "false");
        int first = 1;
        for (unsigned k = 0; k < set.n; k++) {
            const et_target *t = &set.t[k];
            if (t->source != ET_SRC_CONFIG && t->confirmed == ET_CONFIRM_FAILED)
                continue;
            fputs(first ? "\n  " : ",\n  ", f);
            json_target(f, t);
            first = 0;
        }
        fputs("],\"rejected\":[", f);
        first = 1;
        for (unsigned k = 0; k < set.n; k++) {
            const et_target *t = &set.t[k];
            if (!(t->source != ET_SRC_CONFIG && t->confirmed == ET_CONFIRM_FAILED))
                continue;
            fputs(first ? "\n  " : ",\n  ", f);
            json_target(f, t);
            first = 0;
        }
        fputs("]}\n", f);
    } else {
        fprintf(f, "%u target(s) from %u processes scanned under %s (%u Go)%s\n", nok, set.procs_scanned, o.proc_root,
                set.go_procs, confirm ? "" : ", not confirmed (--no-confirm)");
        for (unsigned k = 0; k < set.n; k++)
            if (!(set.t[k].source != ET_SRC_CONFIG && set.t[k].confirmed == ET_CONFIRM_FAILED))
                human_target(f, &set.t[k]);
        if (nrej) {
            fprintf(f, "\n%u candidate(s) rejected:\n", nrej);
            for (unsigned k = 0; k < set.n; k++)
                if (set.t[k].source != ET_SRC_CONFIG && set.t[k].confirmed == ET_CONFIRM_FAILED)
                    human_target(f, &set.t[k]);
        }
        if (set.dropped)
            fprintf(f, "%u candidate(s) dropped: more than %d targets\n", set.dropped, ET_MAX_TARGETS);
    }
    fflush(f);
    return 0;
}
