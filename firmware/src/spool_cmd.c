/* spool_cmd.c - `edgetrace-agent spool ...`: look into the spool on a device.
 *
 *   edgetrace-agent spool [stats] [-c CONF] [--dir DIR] [--json]  counters, sizes, pending records
 *   edgetrace-agent spool ls [-c CONF] [--dir DIR] [--all]        pending records (--all: acked too)
 *
 * The spool directory and size come from the agent's config file (-c, default
 * /etc/edgetrace/agent.conf if it exists, else the board defaults); --dir overrides.
 *
 * Both open the spool read-only: nothing is cut, deleted or rewritten, so they are safe next
 * to a running agent (they may see a record being written as torn; the agent will not).
 *
 * The crash-test driver (torture/check) is a host tool: tools/spool-crashtest.c.
 */
#include "snapshot.h"
#include "spool.h"
#include "uplink.h"
#include "base.h"
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ET_DEFAULT_SPOOL_DIR
#define ET_DEFAULT_SPOOL_DIR "/var/lib/edgetrace/spool"
#endif

static int usage(void)
{
    fprintf(stderr, "usage: edgetrace-agent spool [stats] [-c CONF] [--dir DIR] [--json]\n"
                    "       edgetrace-agent spool ls [-c CONF] [--dir DIR] [--all]\n");
    return 2;
}

typedef struct ls_ctx {
    int all;
    unsigned long n;
} ls_ctx;

static int ls_cb(const spool_rec *r, int acked, void *ctx)
{
    ls_ctx *c = ctx;
    if (acked && !c->all)
        return 0;
    char hex[33];
    et_snap_id_hex(r->id, hex);
    printf("%-8s %-7s %s %7u  seg %08u @%u\n", (r->flags & SPOOL_F_FINDING) ? "finding" : "routine",
           acked ? "acked" : "pending", hex, (unsigned)r->len, (unsigned)r->segno, (unsigned)r->offset);
    c->n++;
    return 0;
}

int spool_cmd_main(int argc, char **argv)
{
    /* main.c passes its whole argv ("edgetrace-agent spool ls ...") */
    const char *cmd = "stats";
    int json = 0, all = 0;
    spool_params p;
    memset(&p, 0, sizeof p);
    p.dir = NULL;
    const char *conf_path = NULL;
    int max_set = 0;
    int i = 1;
    if (i < argc && !strcmp(argv[i], "spool"))
        i++;
    if (i < argc && argv[i][0] != '-')
        cmd = argv[i++];
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--all")) {
            all = 1;
        } else if (v && !strcmp(a, "--dir")) {
            p.dir = v, i++;
        } else if (v && (!strcmp(a, "-c") || !strcmp(a, "--config"))) {
            conf_path = v, i++;
        } else if (v && !strcmp(a, "--max-bytes")) {
            p.max_bytes = strtoull(v, NULL, 10), i++;
            max_set = 1;
        } else {
            fprintf(stderr, "edgetrace-agent spool: unknown option '%s'\n", a);
            return usage();
        }
    }
    char err[256];
    static et_config conf;
    et_config_defaults(&conf);
    if (et_config_load(&conf, conf_path ? conf_path : "/etc/edgetrace/agent.conf", conf_path != NULL, err,
                       (int)sizeof err) != 0) {
        fprintf(stderr, "edgetrace-agent spool: %s\n", err);
        return 1;
    }
    if (!p.dir)
        p.dir = conf.spool_dir[0] ? conf.spool_dir : ET_DEFAULT_SPOOL_DIR;
    if (!max_set)
        p.max_bytes = conf.spool_max_bytes;
    p.fsync_policy = conf.fsync_policy;
    if (strcmp(cmd, "stats") && strcmp(cmd, "ls")) {
        fprintf(stderr, "edgetrace-agent spool: unknown subcommand '%s'\n", cmd);
        return usage();
    }
    p.read_only = 1;
    spool *sp = spool_open(&p, err, sizeof err);
    if (!sp) {
        fprintf(stderr, "edgetrace-agent spool: %s\n", err);
        return 1;
    }
    spool_stats st;
    spool_get_stats(sp, &st);
    uint64_t up_held, up_rejected; /* what the uplink kept or dropped on the collector's answer */
    uint32_t up_held_now;
    et_uplink_read_counters(p.dir, &up_held, &up_rejected, &up_held_now);
    int rc = 0;
    if (!strcmp(cmd, "ls")) {
        ls_ctx c = {all, 0};
        rc = spool_foreach(sp, ls_cb, &c) ? 1 : 0;
        if (!c.n)
            printf("(no %srecords)\n", all ? "" : "pending ");
    } else if (json) {
        printf("{\"dir\":\"%s\",\"bytes_used\":%llu,\"max_bytes\":%llu,\"segment_bytes\":%u,"
               "\"segments_routine\":%u,\"segments_findings\":%u,\"pending_routine\":%llu,"
               "\"pending_findings\":%llu,\"appended_total\":%llu,\"acked_total\":%llu,"
               "\"routine_dropped\":%llu,\"findings_dropped\":%llu,\"corrupt_dropped\":%llu,"
               "\"torn_tails\":%llu,\"bytes_written_today\":%llu,\"bytes_written_total\":%llu,"
               "\"state_bytes_total\":%llu,\"payload_bytes_total\":%llu,\"next_seq\":%llu,"
               "\"fsync\":\"%s\",\"uplink_held\":%llu,\"uplink_rejected\":%llu,\"uplink_held_now\":%u}\n",
               p.dir, (unsigned long long)st.bytes_used, (unsigned long long)st.max_bytes,
               (unsigned)st.segment_bytes, (unsigned)st.segments_routine, (unsigned)st.segments_findings,
               (unsigned long long)st.pending_routine, (unsigned long long)st.pending_findings,
               (unsigned long long)st.appended_total, (unsigned long long)st.acked_total,
               (unsigned long long)st.routine_dropped, (unsigned long long)st.findings_dropped,
               (unsigned long long)st.corrupt_dropped, (unsigned long long)st.torn_tails,
               (unsigned long long)st.bytes_written_today, (unsigned long long)st.bytes_written_total,
               (unsigned long long)st.state_bytes_total, (unsigned long long)st.payload_bytes_total,
               (unsigned long long)st.next_seq, spool_fsync_name(st.fsync_policy), (unsigned long long)up_held,
               (unsigned long long)up_rejected, (unsigned)up_held_now);
    } else {
        printf("spool %s\n", p.dir);
        printf("  used            %llu of %llu bytes (segments of %u bytes: %u routine, %u findings)\n",
               (unsigned long long)st.bytes_used, (unsigned long long)st.max_bytes, (unsigned)st.segment_bytes,
               (unsigned)st.segments_routine, (unsigned)st.segments_findings);
        printf("  pending         %llu findings, %llu routine\n", (unsigned long long)st.pending_findings,
               (unsigned long long)st.pending_routine);
        printf("  appended/acked  %llu / %llu\n", (unsigned long long)st.appended_total,
               (unsigned long long)st.acked_total);
        printf("  dropped         %llu routine, %llu findings (spool full); %llu corrupt; %llu torn tails\n",
               (unsigned long long)st.routine_dropped, (unsigned long long)st.findings_dropped,
               (unsigned long long)st.corrupt_dropped, (unsigned long long)st.torn_tails);
        /* every byte the spool writes, the state file included, against the snapshot bytes */
        printf("  written         %llu bytes today, %llu total (%llu of them state); snapshots %llu bytes",
               (unsigned long long)st.bytes_written_today, (unsigned long long)st.bytes_written_total,
               (unsigned long long)st.state_bytes_total, (unsigned long long)st.payload_bytes_total);
        if (st.payload_bytes_total)
            printf(" (%.2fx)", (double)st.bytes_written_total / (double)st.payload_bytes_total);
        printf("\n  next seq        %llu\n", (unsigned long long)st.next_seq);
        printf("  uplink          %u held now; %llu \"not now\" answers kept a record, %llu dropped for good\n",
               (unsigned)up_held_now, (unsigned long long)up_held, (unsigned long long)up_rejected);
    }
    spool_close(sp);
    return rc;
}
