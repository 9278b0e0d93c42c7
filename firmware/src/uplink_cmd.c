/* uplink_cmd.c - `edgetrace-agent push|upload`: one-shot uploads through the real spool and
 * uplink, for tests, demos and a field check of a new gateway's link.
 *
 *   edgetrace-agent push [FILE...] [--credentials FILE] [--collector URL] [-c agent.conf]
 *                        [--spool DIR] [--fsync always|batch|never]
 *                        [--synthetic N] [--interval-ms MS] [--findings-every K] [--pad BYTES]
 *                        [--ids-out FILE] [--gen-out DIR]
 *                        [--ack-timeout-ms MS] [--max-retransmit N] [--block-size N]
 *                        [--backoff-min-ms MS] [--backoff-max-ms MS] [--answer-timeout-ms MS]
 *                        [--budget BYTES] [--no-cid] [--pki-cert PEM --pki-key PEM [--pki-ca PEM]
 *                        [--pki-server-name NAME]]
 *                        [--timeout S] [--json]
 *
 * FILEs are wire envelopes (as `--gen-out` writes them); each is spooled and sent.
 * --synthetic N builds N snapshots of a made-up target "synthetic" (every K-th carries one
 * goroutine-leak finding with a fixed fingerprint, so the collector must merge them into one
 * finding), spools them (one every MS milliseconds while uploading) and sends them.
 * --ids-out appends each snapshot id (hex) once it is in the spool: the chain tests compare
 * that list with the collector's database. --gen-out only writes envelope files and exits.
 * Without --spool a spool under /tmp is used. The command exits 0 once everything it spooled
 * (and anything left in the spool from before) is acknowledged, 1 on --timeout. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "config.h"
#include "loop.h"
#include "snapshot.h"
#include "spool.h"
#include "uplink.h"

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
    et_wire_enc *enc;
    et_snapshot *snap;     /* ~80 KB: heap, once */
    uint8_t *wire;         /* ET_WIRE_MAX */
    const char *device_id;
    unsigned total, produced, findings_every, pad;
    FILE *ids;
    const char *gen_out;
    uint8_t boot_id[16];
    int failed;
} push_state;

static volatile sig_atomic_t g_stop;
static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int make_snapshot(push_state *ps, size_t *len)
{
    et_snapshot *s = ps->snap;
    et_snapshot_init(s);
    s->seq = ps->produced;
    memcpy(s->boot_id, ps->boot_id, 16);
    et_snapshot_new_id(s->id, s->boot_id, s->seq);
    et_strlcpy(s->device_id, ps->device_id, sizeof(s->device_id));
    et_strlcpy(s->board, ET_BOARD, sizeof(s->board));
    et_strlcpy(s->agent_version, ET_VERSION, sizeof(s->agent_version));
    s->mono_ms = et_now_mono_ms();
    s->wall_ms = et_now_wall_ms();
    if (et_wall_clock_untrusted(s->wall_ms))
        s->flags |= ET_SNAP_F_WALL_UNTRUSTED;
    et_strlcpy(s->service, "synthetic", sizeof(s->service));
    s->pid = (uint32_t)getpid();
    s->start_ticks = 1;
    s->goroutines = 100 + ps->produced;
    s->proc.present = 1;
    s->proc.rss_kb = 20000 + ps->produced;
    s->proc.threads = 8;
    if (ps->findings_every && ps->produced % ps->findings_every == 0) {
        et_finding f;
        memset(&f, 0, sizeof(f));
        f.kind = ET_F_GOROUTINE_LEAK;
        f.confidence = ET_C_LIKELY;
        f.state = ET_G_CHAN_SEND;
        f.evidence = ET_E_TREND | ET_E_CLUSTER;
        et_strlcpy(f.fingerprint, "5e1f7e57c0ffee01", sizeof(f.fingerprint));
        et_strlcpy(f.site.func, "main.(*synthetic).leak", sizeof(f.site.func));
        et_strlcpy(f.site.file, "synthetic/main.go", sizeof(f.site.file));
        f.site.line = 42;
        f.count = 10 + ps->produced;
        f.growth_per_min = 1.5;
        et_snapshot_add_finding(s, &f);
    }
    if (ps->pad) {
        /* incompressible bytes, so the envelope really is that large and goes block-wise */
        static uint8_t junk[ET_SNAP_ATTACH_MAX];
        uint32_t x = 0x12345678u ^ ps->produced;
        for (unsigned done = 0; done < ps->pad;) {
            unsigned n = ET_MIN(ps->pad - done, (unsigned)sizeof(junk));
            for (unsigned i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                junk[i] = (uint8_t)x;
            }
            if (et_snapshot_add_attachment(s, ET_ATT_TRACE, 0, junk, n) < 0)
                break;
            done += n;
        }
    }
    char err[160];
    if (et_wire_encode(ps->enc, s, ps->wire, ET_WIRE_MAX, len, err, sizeof(err))) {
        et_error("push: encode: %s", err);
        return -1;
    }
    return 0;
}

static int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int ok = write(fd, data, len) == (ssize_t)len;
    return close(fd) == 0 && ok ? 0 : -1;
}

/* Produce one synthetic snapshot into the spool (or a file). */
static int produce_one(push_state *ps)
{
    size_t len = 0;
    if (make_snapshot(ps, &len))
        return -1;
    char hex[2 * ET_SNAP_ID_LEN + 1];
    et_snap_id_hex(ps->snap->id, hex);
    ps->produced++;
    if (ps->gen_out) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s.snap", ps->gen_out, hex);
        if (write_file(path, ps->wire, len)) {
            et_error("push: %s: %s", path, strerror(errno));
            return -1;
        }
        printf("%s\n", path);
        return 0;
    }
    uint8_t flags = ps->snap->nfindings ? SPOOL_F_FINDING : 0;
    if (spool_append(ps->sp, flags, ps->snap->id, ps->wire, len)) {
        et_error("push: spool_append failed");
        return -1;
    }
    if (ps->ids) {
        /* after the append: an id in this list is in the spool (policy permitting) */
        fprintf(ps->ids, "%s\n", hex);
        fflush(ps->ids);
        fsync(fileno(ps->ids));
    }
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
            "usage: edgetrace-agent push [FILE...] [--credentials FILE] [--collector URL] [-c agent.conf]\n"
            "         [--spool DIR] [--fsync always|batch|never] [--synthetic N] [--interval-ms MS]\n"
            "         [--findings-every K] [--pad BYTES] [--ids-out FILE] [--gen-out DIR]\n"
            "         [--ack-timeout-ms MS] [--max-retransmit N] [--block-size N] [--backoff-min-ms MS]\n"
            "         [--backoff-max-ms MS] [--answer-timeout-ms MS] [--budget BYTES] [--no-cid] [--timeout S]\n"
            "         [--json]\n");
}

int uplink_cmd_main(int argc, char **argv)
{
    et_uplink_params up;
    et_uplink_params_defaults(&up);
    const char *creds = NULL, *collector = NULL, *conf = NULL, *spool_dir = NULL, *ids_out = NULL;
    const char *files[64];
    unsigned nfiles = 0;
    push_state ps;
    memset(&ps, 0, sizeof(ps));
    ps.findings_every = 1;
    unsigned interval_ms = 0, timeout_s = 0;
    int fsync_policy = SPOOL_FSYNC_ALWAYS, json = 0;
    int have_ack = 0, have_rt = 0;
    /* main.c passes the whole argv ("edgetrace-agent push ..."); also accept argv[0] = "push" */
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
        } else if (ARG("--synthetic"))
            ps.total = (unsigned)strtoul(v, NULL, 10);
        else if (ARG("--interval-ms"))
            interval_ms = (unsigned)strtoul(v, NULL, 10);
        else if (ARG("--findings-every"))
            ps.findings_every = (unsigned)strtoul(v, NULL, 10);
        else if (ARG("--pad"))
            ps.pad = (unsigned)strtoul(v, NULL, 10);
        else if (ARG("--ids-out"))
            ids_out = v;
        else if (ARG("--gen-out"))
            ps.gen_out = v;
        else if (ARG("--ack-timeout-ms"))
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
    ps.snap = malloc(sizeof(*ps.snap));
    ps.wire = malloc(ET_WIRE_MAX);
    et_wire_params wp = {.level = 3};
    if (!ps.snap || !ps.wire || !(ps.enc = et_wire_enc_create(&wp, err, sizeof(err)))) {
        et_error("push: encoder: %s", ps.snap && ps.wire ? err : "out of memory");
        goto out;
    }
    if (et_read_boot_id(NULL, ps.boot_id))
        memset(ps.boot_id, 0, sizeof(ps.boot_id));

    if (ps.gen_out) {
        mkdir(ps.gen_out, 0755);
        while (ps.produced < ps.total)
            if (produce_one(&ps))
                goto out;
        rc = 0;
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
    if (ids_out && !(ps.ids = fopen(ids_out, "a"))) {
        et_error("push: %s: %s", ids_out, strerror(errno));
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
               "\"sessions\": %llu, \"budget_deferred\": %llu, \"bytes_sent\": %llu, \"bytes_today\": %llu, "
               "\"pending\": %llu, \"ok\": %s}\n",
               ps.produced, (unsigned long long)st.posts, (unsigned long long)st.acked_new,
               (unsigned long long)st.acked_dup, (unsigned long long)st.rejected, (unsigned long long)st.refused,
               (unsigned long long)st.server_errors, (unsigned long long)st.timeouts,
               (unsigned long long)st.dtls_failures, (unsigned long long)st.sessions,
               (unsigned long long)st.budget_deferred, (unsigned long long)st.bytes_sent,
               (unsigned long long)st.bytes_today,
               (unsigned long long)(ss.pending_findings + ss.pending_routine), rc == 0 ? "true" : "false");
    else
        fprintf(stderr, "push: produced %u, acked %llu new + %llu dup, rejected %llu, %llu posts, %llu sessions\n",
                ps.produced, (unsigned long long)st.acked_new, (unsigned long long)st.acked_dup,
                (unsigned long long)st.rejected, (unsigned long long)st.posts, (unsigned long long)st.sessions);
out:
    if (ps.ids)
        fclose(ps.ids);
    et_uplink_destroy(ps.up);
    if (ps.sp)
        spool_close(ps.sp);
    if (ps.loop)
        et_loop_destroy(ps.loop);
    et_wire_enc_free(ps.enc);
    free(ps.snap);
    free(ps.wire);
    return rc;
}
