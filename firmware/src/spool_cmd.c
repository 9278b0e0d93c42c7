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
 * Hidden, for tests/integration/test_spool_crash.py:
 *   spool torture --dir DIR [--policy always|batch|never] [--count N] [--ack-every K]
 *                 [--max-bytes N] [--segment-bytes N] [--seed S]
 *       appends records with ids derived from a counter and, every K appends, peeks and acks
 *       the oldest; prints "D <id>" once an append returned (durable under "always") and
 *       "K <id>" before acking, "A <id>" once the ack returned, each with one write(2), so a
 *       kill -9 never leaves a half line claiming more than happened.
 *   spool check --dir DIR
 *       opens the spool read-write (the recovery path), prints "P <id> <len>" for every
 *       pending record, then the stats line "S <pending> <torn> <corrupt>".
 */
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

static void id_hex(const uint8_t *id, char out[33])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < SPOOL_ID_LEN; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[32] = 0;
}

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
    id_hex(r->id, hex);
    printf("%-8s %-7s %s %7u  seg %08u @%u\n", (r->flags & SPOOL_F_FINDING) ? "finding" : "routine",
           acked ? "acked" : "pending", hex, (unsigned)r->len, (unsigned)r->segno, (unsigned)r->offset);
    c->n++;
    return 0;
}

static int check_cb(const spool_rec *r, int acked, void *ctx)
{
    (void)ctx;
    if (acked)
        return 0;
    char line[64], hex[33];
    id_hex(r->id, hex);
    int n = snprintf(line, sizeof line, "P %s %u\n", hex, (unsigned)r->len);
    if (write(1, line, (size_t)n) != n)
        return 1;
    return 0;
}

/* Torture ids: 8-byte counter + 8 bytes of its hash, so every id is unique and checkable. */
static void torture_id(uint64_t i, uint64_t seed, uint8_t id[SPOOL_ID_LEN])
{
    uint64_t h = et_fnv1a(ET_FNV_INIT ^ seed, &i, sizeof i);
    for (int k = 0; k < 8; k++) {
        id[k] = (uint8_t)(i >> (56 - 8 * k));
        id[8 + k] = (uint8_t)(h >> (8 * k));
    }
}

/* Payload length is a function of the counter, so the checker can verify it. */
static uint32_t torture_len(uint64_t i) { return 40u + (uint32_t)((i * 2654435761u) % 1960u); }

static void say(char tag, const uint8_t *id)
{
    char line[40], hex[33];
    id_hex(id, hex);
    int n = snprintf(line, sizeof line, "%c %s\n", tag, hex);
    if (write(1, line, (size_t)n) != n)
        exit(3);
}

static int torture(spool_params *p, uint64_t count, unsigned ack_every, uint64_t seed)
{
    char err[256];
    spool *sp = spool_open(p, err, sizeof err);
    if (!sp) {
        fprintf(stderr, "spool torture: %s\n", err);
        return 1;
    }
    /* continue numbering after whatever a previous run appended */
    spool_stats st;
    spool_get_stats(sp, &st);
    uint64_t base = st.appended_total;
    static uint8_t payload[4096], buf[4096];
    for (uint64_t n = 0; count == 0 || n < count; n++) {
        uint64_t i = base + n;
        uint8_t id[SPOOL_ID_LEN];
        torture_id(i, seed, id);
        uint32_t len = torture_len(i);
        for (uint32_t k = 0; k < len; k++)
            payload[k] = (uint8_t)(i * 31 + k);
        uint8_t flags = (i % 5 == 0) ? SPOOL_F_FINDING : 0;
        if (spool_append(sp, flags, id, payload, len) != 0) {
            fprintf(stderr, "spool torture: append: %s\n", strerror(errno));
            return 1;
        }
        say('D', id);
        if (ack_every && n % ack_every == ack_every - 1) {
            spool_rec r;
            long got = spool_peek(sp, &r, buf, sizeof buf);
            if (got < 0) {
                fprintf(stderr, "spool torture: peek failed\n");
                return 1;
            }
            if (got > 0) {
                say('K', r.id); /* about to ack: the one record a kill may leave acked unreported */
                if (spool_ack(sp, r.id) != 0) {
                    fprintf(stderr, "spool torture: ack failed\n");
                    return 1;
                }
                say('A', r.id);
            }
        }
        spool_tick(sp);
    }
    spool_close(sp);
    return 0;
}

int spool_cmd_main(int argc, char **argv)
{
    /* main.c passes its whole argv ("edgetrace-agent spool ls ..."); tools/spool-crashtest
     * passes its own ("spool-crashtest torture ..."). */
    const char *cmd = "stats";
    int json = 0, all = 0;
    uint64_t count = 0, seed = 1;
    unsigned ack_every = 3;
    spool_params p;
    memset(&p, 0, sizeof p);
    p.dir = NULL;
    p.fsync_policy = SPOOL_FSYNC_ALWAYS;
    const char *conf_path = NULL;
    int max_set = 0, policy_set = 0;
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
        } else if (v && !strcmp(a, "--policy")) {
            p.fsync_policy = spool_fsync_parse(v), i++;
            policy_set = 1;
            if (p.fsync_policy < 0)
                return usage();
        } else if (v && !strcmp(a, "--count")) {
            count = strtoull(v, NULL, 10), i++;
        } else if (v && !strcmp(a, "--ack-every")) {
            ack_every = (unsigned)strtoul(v, NULL, 10), i++;
        } else if (v && !strcmp(a, "--max-bytes")) {
            p.max_bytes = strtoull(v, NULL, 10), i++;
            max_set = 1;
        } else if (v && !strcmp(a, "--segment-bytes")) {
            p.segment_bytes = (uint32_t)strtoul(v, NULL, 10), i++;
        } else if (v && !strcmp(a, "--seed")) {
            seed = strtoull(v, NULL, 10), i++;
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
    if (!policy_set && strcmp(cmd, "torture"))
        p.fsync_policy = conf.fsync_policy;
    if (!strcmp(cmd, "torture"))
        return torture(&p, count, ack_every, seed);

    int check = !strcmp(cmd, "check");
    if (!check && strcmp(cmd, "stats") && strcmp(cmd, "ls")) {
        fprintf(stderr, "edgetrace-agent spool: unknown subcommand '%s'\n", cmd);
        return usage();
    }
    p.read_only = !check;
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
    if (check) {
        rc = spool_foreach(sp, check_cb, NULL) ? 1 : 0;
        printf("S %llu %llu %llu\n", (unsigned long long)(st.pending_findings + st.pending_routine),
               (unsigned long long)st.torn_tails, (unsigned long long)st.corrupt_dropped);
    } else if (!strcmp(cmd, "ls")) {
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
               "\"fsync\":\"%s\",\"uplink_held\":%llu,\"uplink_rejected\":%llu,\"uplink_held_now\":%u}\n",
               p.dir, (unsigned long long)st.bytes_used, (unsigned long long)st.max_bytes,
               (unsigned)st.segment_bytes, (unsigned)st.segments_routine, (unsigned)st.segments_findings,
               (unsigned long long)st.pending_routine, (unsigned long long)st.pending_findings,
               (unsigned long long)st.appended_total, (unsigned long long)st.acked_total,
               (unsigned long long)st.routine_dropped, (unsigned long long)st.findings_dropped,
               (unsigned long long)st.corrupt_dropped, (unsigned long long)st.torn_tails,
               (unsigned long long)st.bytes_written_today, (unsigned long long)st.bytes_written_total,
               spool_fsync_name(st.fsync_policy), (unsigned long long)up_held, (unsigned long long)up_rejected,
               (unsigned)up_held_now);
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
        printf("  written         %llu bytes today, %llu total\n", (unsigned long long)st.bytes_written_today,
               (unsigned long long)st.bytes_written_total);
        printf("  uplink          %u held now; %llu \"not now\" answers kept a record, %llu dropped for good\n",
               (unsigned)up_held_now, (unsigned long long)up_held, (unsigned long long)up_rejected);
    }
    spool_close(sp);
    return rc;
}
