/* uplink_cmd.c - one-shot uploads through the real spool and uplink: the loop behind the host
 * test tool `et-push` (tools/et-push.c). Not in the device binary (main.c does not dispatch
 * it, so --gc-sections drops it): it is a test harness, the daemon is what uploads.
 *
 *   et-push [FILE...] [--credentials FILE] [--collector URL] [-c agent.conf]
 *                        [--spool DIR] [--fsync always|batch|never]
 *                        [--ack-timeout-ms MS] [--max-retransmit N] [--block-size N]
 *                        [--backoff-min-ms MS] [--backoff-max-ms MS] [--answer-timeout-ms MS]
 *                        [--budget BYTES] [--no-cid] [--pki-cert PEM --pki-key PEM [--pki-ca PEM]
 *                        [--pki-server-name NAME]]
 *                        [--timeout S] [--json]
 *
 * FILEs are wire envelopes; each is spooled and sent. Without --spool a spool under /tmp is
 * used. The command exits 0 once everything it spooled (and anything left in the spool from
 * before) is acknowledged, 1 on --timeout.
 *
 * Made-up snapshots (--synthetic, --pad, --ids-out, --gen-out) come from tools/et-push.c,
 * which runs this loop through uplink_push_run() with a snapshot source. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "config.h"
#include "loop.h"
#include "snapshot.h"
#include "spool.h"
#include "uplink.h"
#include "uplink_cmd.h"

#ifndef ET_BOARD
#define ET_BOARD "host"
#endif
#ifndef ET_VERSION
#define ET_VERSION "0.0.0"
#endif

typedef struct push_state {
    et_loop *loop;
    spool *sp;
    et_uplink *up;
    uint8_t *wire;         /* ET_WIRE_MAX */
    const char *device_id;
    const et_push_source *src; /* NULL: files only */
    unsigned total, produced;
    int failed;
} push_state;

static volatile sig_atomic_t g_stop;
static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* One snapshot from the source into the spool. */
static int produce_one(push_state *ps)
{
    size_t len = 0;
    uint8_t id[SPOOL_ID_LEN], flags = 0;
    if (ps->src->produce(ps->src->ctx, ps->device_id, ps->wire, &len, id, &flags))
        return -1;
    ps->produced++;
    if (spool_append(ps->sp, flags, id, ps->wire, len)) {
        et_error("push: spool_append failed");
        return -1;
    }
    if (ps->src->spooled)
        ps->src->spooled(ps->src->ctx, id);
    et_uplink_kick(ps->up);
    return 0;
}

static void on_produce(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    push_state *ps = ud;
    if (ps->produced >= ps->total) {
        et_loop_cancel_timer(ps->loop, id);
        return;
    }
    if (produce_one(ps))
        ps->failed = 1;
}

static int spool_file(push_state *ps, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        et_error("push: %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(ps->wire, 1, ET_WIRE_MAX, f);
    int too_big = !feof(f);
    fclose(f);
    if (n == 0 || too_big) {
        et_error("push: %s: empty or larger than %u bytes", path, (unsigned)ET_WIRE_MAX);
        return -1;
    }
    /* The device cannot decompress to read the snapshot id, so the spool key is a hash of
     * the bytes (only used to find the record again when it is acked). */
    uint8_t id[SPOOL_ID_LEN];
    uint64_t h1 = et_fnv1a(ET_FNV_INIT, ps->wire, n), h2 = et_fnv1a(h1 ^ 0x5bd1e995u, ps->wire, n);
    for (int i = 0; i < 8; i++) {
        id[i] = (uint8_t)(h1 >> (8 * i));
        id[8 + i] = (uint8_t)(h2 >> (8 * i));
    }
    return spool_append(ps->sp, 0, id, ps->wire, n);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: et-push [FILE...] [--credentials FILE] [--collector URL] [-c agent.conf]\n"
            "         [--spool DIR] [--fsync always|batch|never]\n"
            "         [--ack-timeout-ms MS] [--max-retransmit N] [--block-size N] [--backoff-min-ms MS]\n"
            "         [--backoff-max-ms MS] [--answer-timeout-ms MS] [--budget BYTES] [--no-cid] [--timeout S]\n"
            "         [--json]\n");
}

int uplink_cmd_main(int argc, char **argv) { return uplink_push_run(argc, argv, NULL); }

int uplink_push_run(int argc, char **argv, const et_push_source *src)
{
    et_uplink_params up;
    et_uplink_params_defaults(&up);
    const char *creds = NULL, *collector = NULL, *conf = NULL, *spool_dir = NULL;
    const char *files[64];
    unsigned nfiles = 0;
    push_state ps;
    memset(&ps, 0, sizeof(ps));
    ps.src = src;
    ps.total = src ? src->total : 0;
    unsigned interval_ms = src ? src->interval_ms : 0, timeout_s = 0;
    int fsync_policy = SPOOL_FSYNC_ALWAYS, json = 0;
    int have_ack = 0, have_rt = 0;
    /* et-push passes "et-push push ..."; also accept argv[0] = "push" */
    int first = argc > 1 && (!strcmp(argv[1], "push") || !strcmp(argv[1], "upload")) ? 2 : 1;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && ++i)
        if (ARG("--credentials"))
            creds = v;
        else if (ARG("--collector"))
            collector = v;
        else if (ARG("-c"))
            conf = v;
        else if (ARG("--spool"))
            spool_dir = v;
        else if (ARG("--fsync")) {
            if ((fsync_policy = spool_fsync_parse(v)) < 0) {
                usage();
                return 2;
            }
        } else if (ARG("--ack-timeout-ms"))
            up.ack_timeout_ms = (uint32_t)strtoul(v, NULL, 10), have_ack = 1;
        else if (ARG("--max-retransmit"))
            up.max_retransmit = (uint32_t)strtoul(v, NULL, 10), have_rt = 1;
        else if (ARG("--block-size"))
            up.block_size = (uint32_t)strtoul(v, NULL, 10);
        else if (ARG("--backoff-min-ms"))
            up.backoff_min_ms = (uint32_t)strtoul(v, NULL, 10);
        else if (ARG("--backoff-max-ms"))
            up.backoff_max_ms = (uint32_t)strtoul(v, NULL, 10);
        else if (ARG("--answer-timeout-ms"))
            up.answer_timeout_ms = (uint32_t)strtoul(v, NULL, 10);
        else if (ARG("--pki-cert"))
            et_strlcpy(up.pki_cert, v, sizeof(up.pki_cert));
        else if (ARG("--pki-key"))
            et_strlcpy(up.pki_key, v, sizeof(up.pki_key));
        else if (ARG("--pki-ca"))
            et_strlcpy(up.pki_ca, v, sizeof(up.pki_ca));
        else if (ARG("--pki-server-name"))
            et_strlcpy(up.pki_server_name, v, sizeof(up.pki_server_name));
        else if (ARG("--budget"))
            up.budget_bytes_per_day = strtoull(v, NULL, 10);
        else if (ARG("--timeout"))
            timeout_s = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--no-cid"))
            up.use_cid = 0;
        else if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "-v"))
            et_log_level = ET_LOG_DEBUG;
        else if (a[0] != '-' && nfiles < ET_ARRAY_LEN(files))
            files[nfiles++] = a;
        else {
            usage();
            return 2;
        }
#undef ARG
    }
    char err[256];
    if (conf) {
        static et_config c;
        et_config_defaults(&c);
        if (et_config_load(&c, conf, 1, err, sizeof(err))) {
            et_error("push: %s", err);
            return 2;
        }
        if (c.collector[0])
            et_strlcpy(up.collector, c.collector, sizeof(up.collector));
        if (!creds && c.credentials[0])
            creds = c.credentials;
        if (!have_ack && c.ack_timeout_ms)
            up.ack_timeout_ms = c.ack_timeout_ms;
        if (!have_rt && c.max_retransmit)
            up.max_retransmit = c.max_retransmit;
        if (!up.budget_bytes_per_day)
            up.budget_bytes_per_day = c.budget_bytes_per_day;
        if (!spool_dir && c.spool_dir[0])
            spool_dir = c.spool_dir;
        if (c.device_id[0])
            et_strlcpy(up.device_id, c.device_id, sizeof(up.device_id));
    }
    if (creds && et_uplink_load_credentials(creds, &up, err, sizeof(err))) {
        et_error("push: %s", err);
        return 2;
    }
    if (collector)
        et_strlcpy(up.collector, collector, sizeof(up.collector));
    if (!up.device_id[0])
        et_strlcpy(up.device_id, "unprovisioned", sizeof(up.device_id));
    ps.device_id = up.device_id;

    int rc = 1;
    ps.wire = malloc(ET_WIRE_MAX);
    if (!ps.wire) {
        et_error("push: out of memory");
        goto out;
    }
    if (!up.collector[0]) {
        et_error("push: no collector URL (--collector, the credentials file or -c agent.conf)");
        rc = 2;
        goto out;
    }
    char tmpdir[64];
    if (!spool_dir) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/edgetrace-push-%d", (int)getpid());
        spool_dir = tmpdir;
    }
    spool_params sparams = {.dir = spool_dir, .fsync_policy = fsync_policy};
    ps.sp = spool_open(&sparams, err, sizeof(err));
    if (!ps.sp) {
        et_error("push: spool %s: %s", spool_dir, err);
        goto out;
    }
    et_strlcpy(up.state_dir, spool_dir, sizeof(up.state_dir));
    ps.loop = et_loop_create(16, 32);
    if (!ps.loop || !(ps.up = et_uplink_create(ps.loop, ps.sp, &up, err, sizeof(err)))) {
        et_error("push: uplink: %s", ps.loop ? err : "loop");
        goto out;
    }
    for (unsigned i = 0; i < nfiles; i++)
        if (spool_file(&ps, files[i]))
            goto out;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (ps.total) {
        if (interval_ms) {
            if (!et_loop_add_timer(ps.loop, 0, interval_ms, on_produce, &ps)) {
                et_error("push: timer table full");
                goto out;
            }
        } else {
            while (ps.produced < ps.total)
                if (produce_one(&ps))
                    goto out;
        }
    }
    et_uplink_kick(ps.up);
    uint64_t deadline = timeout_s ? et_now_mono_ms() + (uint64_t)timeout_s * 1000 : 0;
    while (!g_stop && !ps.failed) {
        if (et_loop_run_once(ps.loop, 200) < 0) {
            et_error("push: event loop failed");
            break;
        }
        spool_tick(ps.sp);
        if (ps.produced >= ps.total && et_uplink_idle(ps.up)) {
            rc = 0;
            break;
        }
        if (deadline && et_now_mono_ms() >= deadline) {
            et_error("push: timeout with snapshots still in the spool");
            break;
        }
    }
    et_uplink_stats st;
    et_uplink_get_stats(ps.up, &st);
    spool_stats ss;
    spool_get_stats(ps.sp, &ss);
    if (json)
        printf("{\"produced\": %u, \"posts\": %llu, \"acked_new\": %llu, \"acked_dup\": %llu, \"rejected\": %llu, "
               "\"refused\": %llu, \"server_errors\": %llu, \"timeouts\": %llu, \"dtls_failures\": %llu, "
               "\"sessions\": %llu, \"probes\": %llu, \"takeovers\": %llu, \"budget_deferred\": %llu, \"bytes_sent\": %llu, \"bytes_today\": %llu, "
               "\"pending\": %llu, \"ok\": %s}\n",
               ps.produced, (unsigned long long)st.posts, (unsigned long long)st.acked_new,
               (unsigned long long)st.acked_dup, (unsigned long long)st.rejected, (unsigned long long)st.refused,
               (unsigned long long)st.server_errors, (unsigned long long)st.timeouts,
               (unsigned long long)st.dtls_failures, (unsigned long long)st.sessions,
               (unsigned long long)st.probes, (unsigned long long)st.takeovers,
               (unsigned long long)st.budget_deferred, (unsigned long long)st.bytes_sent,
               (unsigned long long)st.bytes_today,
               (unsigned long long)(ss.pending_findings + ss.pending_routine), rc == 0 ? "true" : "false");
    else
        fprintf(stderr, "push: produced %u, acked %llu new + %llu dup, rejected %llu, %llu posts, %llu sessions\n",
                ps.produced, (unsigned long long)st.acked_new, (unsigned long long)st.acked_dup,
                (unsigned long long)st.rejected, (unsigned long long)st.posts, (unsigned long long)st.sessions);
out:
    et_uplink_destroy(ps.up);
    if (ps.sp)
        spool_close(ps.sp);
    if (ps.loop)
        et_loop_destroy(ps.loop);
    free(ps.wire);
    return rc;
}
