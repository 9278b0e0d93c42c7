/* et-push.c - the tests' snapshot generator in front of the agent's `push` loop (host tool;
 * these options used to ship inside every device binary as `edgetrace-agent push --synthetic`).
 *
 *   et-push [--synthetic N] [--interval-ms MS] [--findings-every K] [--pad BYTES]
 *           [--ids-out FILE] [--gen-out DIR] [every `edgetrace-agent push` option]
 *
 * --synthetic N builds N snapshots of a made-up target "synthetic" (every K-th carries one
 * goroutine-leak finding with a fixed fingerprint, so the collector must merge them into one
 * finding), spools them (one every MS milliseconds while uploading) and sends them through
 * the real spool and uplink (uplink_push_run in firmware/src/uplink_cmd.c).
 * --pad adds that many incompressible attachment bytes (block-wise transfers).
 * --ids-out appends each snapshot id (hex) once it is in the spool: the chain tests compare
 * that list with the collector's database. --gen-out only writes envelope files and exits
 * (the device id comes from --credentials). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "snapshot.h"
#include "spool.h"
#include "uplink.h"
#include "uplink_cmd.h"

typedef struct gen {
    et_wire_enc *enc;
    et_snapshot *snap; /* large: heap */
    uint8_t boot_id[16];
    unsigned produced, findings_every, pad;
    FILE *ids;
} gen;

static int make_snapshot(gen *g, const char *device_id, uint8_t *wire, size_t *len)
{
    et_snapshot *s = g->snap;
    et_snapshot_init(s);
    s->seq = g->produced;
    memcpy(s->boot_id, g->boot_id, 16);
    et_snapshot_new_id(s->id, s->boot_id, s->seq);
    et_strlcpy(s->device_id, device_id, sizeof(s->device_id));
    et_strlcpy(s->board, ET_BOARD, sizeof(s->board));
    et_strlcpy(s->agent_version, ET_VERSION, sizeof(s->agent_version));
    s->mono_ms = et_now_mono_ms();
    s->wall_ms = et_now_wall_ms();
    if (et_wall_clock_untrusted(s->wall_ms))
        s->flags |= ET_SNAP_F_WALL_UNTRUSTED;
    et_strlcpy(s->service, "synthetic", sizeof(s->service));
    s->pid = (uint32_t)getpid();
    s->start_ticks = 1;
    s->goroutines = 100 + g->produced;
    s->proc.present = 1;
    s->proc.rss_kb = 20000 + g->produced;
    s->proc.threads = 8;
    if (g->findings_every && g->produced % g->findings_every == 0) {
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
        f.count = 10 + g->produced;
        f.growth_per_min = 1.5;
        et_snapshot_add_finding(s, &f);
    }
    if (g->pad) {
        /* incompressible bytes, so the envelope really is that large and goes block-wise */
        static uint8_t junk[ET_SNAP_ATTACH_MAX];
        uint32_t x = 0x12345678u ^ g->produced;
        for (unsigned done = 0; done < g->pad;) {
            unsigned n = ET_MIN(g->pad - done, (unsigned)sizeof(junk));
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
    if (et_wire_encode(g->enc, s, wire, ET_WIRE_MAX, len, err, sizeof(err))) {
        fprintf(stderr, "et-push: encode: %s\n", err);
        return -1;
    }
    g->produced++;
    return 0;
}

static int produce(void *ctx, const char *device_id, uint8_t *wire, size_t *len, uint8_t id[SPOOL_ID_LEN],
                   uint8_t *flags)
{
    gen *g = ctx;
    if (make_snapshot(g, device_id, wire, len))
        return -1;
    memcpy(id, g->snap->id, SPOOL_ID_LEN);
    *flags = g->snap->nfindings ? SPOOL_F_FINDING : 0;
    return 0;
}

static void spooled(void *ctx, const uint8_t id[SPOOL_ID_LEN])
{
    gen *g = ctx;
    if (!g->ids)
        return;
    /* after the append: an id in this list is in the spool (policy permitting) */
    char hex[2 * ET_SNAP_ID_LEN + 1];
    et_snap_id_hex(id, hex);
    fprintf(g->ids, "%s\n", hex);
    fflush(g->ids);
    fsync(fileno(g->ids));
}

static int gen_files(gen *g, unsigned n, const char *dir, const char *creds)
{
    et_uplink_params up;
    et_uplink_params_defaults(&up);
    char err[256];
    if (creds && et_uplink_load_credentials(creds, &up, err, sizeof(err))) {
        fprintf(stderr, "et-push: %s\n", err);
        return 2;
    }
    if (!up.device_id[0])
        et_strlcpy(up.device_id, "unprovisioned", sizeof(up.device_id));
    mkdir(dir, 0755);
    static uint8_t wire[ET_WIRE_MAX];
    while (g->produced < n) {
        size_t len = 0;
        if (make_snapshot(g, up.device_id, wire, &len))
            return 1;
        char hex[2 * ET_SNAP_ID_LEN + 1], path[512];
        et_snap_id_hex(g->snap->id, hex);
        snprintf(path, sizeof(path), "%s/%s.snap", dir, hex);
        FILE *f = fopen(path, "wb");
        int ok = f && fwrite(wire, 1, len, f) == len;
        if (f && fclose(f) != 0)
            ok = 0;
        if (!ok) {
            fprintf(stderr, "et-push: %s: %s\n", path, strerror(errno));
            return 1;
        }
        printf("%s\n", path);
    }
    return 0;
}

int main(int argc, char **argv)
{
    gen g;
    memset(&g, 0, sizeof(g));
    g.findings_every = 1;
    et_push_source src = {.produce = produce, .spooled = spooled, .ctx = &g};
    const char *ids_out = NULL, *gen_out = NULL, *creds = NULL;
    /* our options out, the rest to the push loop */
    char **rest = calloc((size_t)argc + 2, sizeof(char *));
    if (!rest)
        return 1;
    int nrest = 0;
    rest[nrest++] = "et-push";
    rest[nrest++] = "push";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && !strcmp(a, "--synthetic"))
            src.total = (unsigned)strtoul(v, NULL, 10), i++;
        else if (v && !strcmp(a, "--interval-ms"))
            src.interval_ms = (unsigned)strtoul(v, NULL, 10), i++;
        else if (v && !strcmp(a, "--findings-every"))
            g.findings_every = (unsigned)strtoul(v, NULL, 10), i++;
        else if (v && !strcmp(a, "--pad"))
            g.pad = (unsigned)strtoul(v, NULL, 10), i++;
        else if (v && !strcmp(a, "--ids-out"))
            ids_out = v, i++;
        else if (v && !strcmp(a, "--gen-out"))
            gen_out = v, i++;
        else {
            if (v && !strcmp(a, "--credentials"))
                creds = v;
            rest[nrest++] = argv[i];
        }
    }
    int rc = 1;
    char err[256];
    et_wire_params wp = {.level = 3};
    g.snap = malloc(sizeof(*g.snap));
    if (!g.snap || !(g.enc = et_wire_enc_create(&wp, err, sizeof(err)))) {
        fprintf(stderr, "et-push: encoder: %s\n", g.snap ? err : "out of memory");
        goto out;
    }
    if (et_read_boot_id(NULL, g.boot_id))
        memset(g.boot_id, 0, sizeof(g.boot_id));
    if (gen_out) {
        rc = gen_files(&g, src.total, gen_out, creds);
        goto out;
    }
    if (ids_out && !(g.ids = fopen(ids_out, "a"))) {
        fprintf(stderr, "et-push: %s: %s\n", ids_out, strerror(errno));
        goto out;
    }
    rc = uplink_push_run(nrest, rest, &src);
out:
    if (g.ids)
        fclose(g.ids);
    et_wire_enc_free(g.enc);
    free(g.snap);
    free(rest);
    return rc;
}
