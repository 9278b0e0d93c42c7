/* flash_bench.c - bytes the spool writes to flash per snapshot and per day, against the
 * snapshot bytes (issue 8, "Flash wear": target <= 1.5x).
 *
 *   flash_bench [--interval S] [--targets N] [--fsync always|batch|never] [--days D] [--json]
 *
 * Simulates D days (default 1) of the agent at the board defaults: every S seconds (default
 * 30) one snapshot per target (the realistic steady-state snapshot of snapshot_sample.h,
 * encoded as the agent does), the uplink acknowledging each 2 s later, spool_tick every
 * second as the agent's loop does. The clock is simulated (spool_params.now_ms), the files
 * are real (a temporary directory). Every pwrite the spool makes is counted by a VFS wrapper
 * and must equal the spool's own count (bytes_written_total, shown by `spool stats`).
 * The baseline is the spool before lazy acks: each ack and each batch sync rewrote the
 * 1,132-byte state file, about 2 x 1,132 bytes per snapshot on top of the record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot.h"
#include "snapshot_sample.h"
#include "spool.h"
#include "spool_io.h"

static uint64_t sim_ms;
static uint64_t sim_now(void) { return sim_ms; }

static uint64_t counted;
static const spool_vfs *real;
static ssize_t count_pwrite(void *ctx, int fd, const void *buf, size_t n, uint64_t off)
{
    ssize_t w = real->pwrite(ctx, fd, buf, n, off);
    if (w > 0)
        counted += (uint64_t)w;
    return w;
}

static void rm_dir(const char *d)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0)
        fprintf(stderr, "flash_bench: could not remove %s\n", d);
}

int main(int argc, char **argv)
{
    unsigned interval_s = 30, targets = 1, days = 1;
    int policy = SPOOL_FSYNC_BATCH, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json"))
            json = 1;
        else if (v && !strcmp(a, "--interval"))
            interval_s = (unsigned)strtoul(v, NULL, 10), i++;
        else if (v && !strcmp(a, "--targets"))
            targets = (unsigned)strtoul(v, NULL, 10), i++;
        else if (v && !strcmp(a, "--days"))
            days = (unsigned)strtoul(v, NULL, 10), i++;
        else if (v && !strcmp(a, "--fsync") && spool_fsync_parse(v) >= 0)
            policy = spool_fsync_parse(v), i++;
        else {
            fprintf(stderr, "usage: flash_bench [--interval S] [--targets N] [--fsync always|batch|never] "
                            "[--days D] [--json]\n");
            return 2;
        }
    }
    if (!interval_s || !targets || !days)
        return 2;
    char dir[] = "/tmp/edgetrace-flash-bench-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    real = spool_vfs_posix();
    spool_vfs vfs = *real;
    vfs.pwrite = count_pwrite;
    sim_ms = 86400000ull; /* the monotonic clock of a board up for a day */
    spool_params p = {.dir = dir, .fsync_policy = policy, .vfs = &vfs, .now_ms = sim_now};
    char err[256];
    spool *sp = spool_open(&p, err, sizeof err);
    if (!sp) {
        fprintf(stderr, "flash_bench: %s\n", err);
        rm_dir(dir);
        return 1;
    }
    static et_gprofile gp;
    static et_snapshot s;
    static uint8_t wire[ET_WIRE_MAX];
    et_sample_gprofile(&gp, 50, 2000);
    et_site_memo memo;
    memset(&memo, 0, sizeof memo);
    et_wire_params wp = {.level = 3};
    et_wire_enc *enc = et_wire_enc_create(&wp, err, sizeof err);
    if (!enc) {
        fprintf(stderr, "flash_bench: %s\n", err);
        return 1;
    }
    /* pending acks: (due time, id) in a ring, in order */
    enum { RING = 64 };
    struct {
        uint64_t due;
        uint8_t id[SPOOL_ID_LEN];
    } ring[RING];
    unsigned head = 0, tail = 0;
    uint64_t n = 0, snap_bytes = 0, seq = 0, end = sim_ms + (uint64_t)days * 86400000ull;
    uint64_t next_snap = sim_ms, start_bytes = 0;
    spool_stats st;
    spool_get_stats(sp, &st);
    start_bytes = st.bytes_written_total;
    uint64_t counted0 = counted;
    for (; sim_ms < end; sim_ms += 1000) {
        while (next_snap <= sim_ms) {
            for (unsigned t = 0; t < targets; t++) {
                et_sample_snapshot(&s, &gp, 0, seq);
                s.seq = spool_next_seq(sp);
                memcpy(s.id, &seq, sizeof seq); /* unique ids */
                seq++;
                et_snapshot_apply_memo(&s, &memo, 10);
                size_t len = 0;
                if (et_wire_encode(enc, &s, wire, sizeof wire, &len, err, sizeof err) ||
                    spool_append(sp, 0, s.id, wire, len) != 0) {
                    fprintf(stderr, "flash_bench: %s\n", err);
                    return 1;
                }
                n++;
                snap_bytes += len;
                ring[head % RING].due = sim_ms + 2000;
                memcpy(ring[head % RING].id, s.id, SPOOL_ID_LEN);
                head++;
            }
            next_snap += (uint64_t)interval_s * 1000u;
        }
        while (tail != head && ring[tail % RING].due <= sim_ms) {
            if (spool_ack(sp, ring[tail % RING].id) != 0) {
                fprintf(stderr, "flash_bench: ack failed\n");
                return 1;
            }
            tail++;
        }
        spool_tick(sp);
    }
    spool_get_stats(sp, &st);
    uint64_t flash = st.bytes_written_total - start_bytes, state = st.state_bytes_total;
    uint64_t vfs_bytes = counted - counted0;
    spool_close(sp);
    et_wire_enc_free(enc);
    rm_dir(dir);
    double per_snap = (double)flash / (double)n, snap = (double)snap_bytes / (double)n;
    double ratio = per_snap / snap;
    double base_per_snap = snap + SPOOL_HDR_LEN + 2 * 1132.0; /* record + state on ack + state on batch sync */
    double per_day = (double)flash / days, snap_day = (double)snap_bytes / days;
    if (json) {
        printf("{\"snapshots\":%llu,\"snapshot_bytes\":%.0f,\"flash_bytes_per_snapshot\":%.0f,\"ratio\":%.3f,"
               "\"flash_bytes_per_day\":%.0f,\"snapshot_bytes_per_day\":%.0f,\"state_bytes\":%llu,"
               "\"baseline_ratio\":%.3f,\"vfs_bytes\":%llu,\"spool_bytes\":%llu}\n",
               (unsigned long long)n, snap, per_snap, ratio, per_day, snap_day, (unsigned long long)state,
               base_per_snap / snap, (unsigned long long)vfs_bytes, (unsigned long long)flash);
    } else {
        printf("flash wear: %u day(s), %u target(s) every %u s, fsync=%s: %llu snapshots of %.0f bytes\n", days,
               targets, interval_s, spool_fsync_name(policy), (unsigned long long)n, snap);
        printf("%-34s %14s %14s %10s %s\n", "metric", "edgetrace", "baseline", "target", "verdict");
        printf("%-34s %14.0f %14.0f %10s %s\n", "flash bytes per snapshot", per_snap, base_per_snap, "", "");
        printf("%-34s %14.3f %14.3f %10s %s\n", "flash bytes / snapshot bytes", ratio, base_per_snap / snap,
               "<= 1.5", ratio <= 1.5 ? "ok" : "MISS");
        printf("%-34s %14.0f %14.0f %10s %s\n", "flash bytes per day", per_day, base_per_snap * (double)n / days,
               "", "");
        printf("%-34s %14.0f %14s %10s %s\n", "snapshot bytes per day", snap_day, "", "", "");
        printf("%-34s %14llu %14s %10s %s\n", "of which state file", (unsigned long long)state, "", "", "");
        printf("%-34s %14llu %14llu %10s %s\n", "counted by the spool / by the VFS", (unsigned long long)flash,
               (unsigned long long)vfs_bytes, "equal", flash == vfs_bytes ? "ok" : "MISS");
    }
    return flash == vfs_bytes ? 0 : 1;
}
