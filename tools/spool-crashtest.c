/* spool-crashtest.c - test driver for the spool (host tool, and cross-built per board for
 * qemu: `make BOARD=bbb unit-cross`). Not in the device binary: a gateway has no use for it.
 *
 *   spool-crashtest torture --dir DIR [--policy always|batch|never] [--count N] [--ack-every K]
 *                           [--max-bytes N] [--segment-bytes N] [--seed S]
 *       appends records with ids derived from a counter and, every K appends, peeks and acks
 *       the oldest; prints "D <id>" once an append returned (durable under "always") and
 *       "K <id>" before acking, "A <id>" once the ack returned, each with one write(2), so a
 *       kill -9 never leaves a half line claiming more than happened.
 *   spool-crashtest check --dir DIR
 *       opens the spool read-write (the recovery path), prints "P <id> <len>" for every
 *       pending record, then the stats line "S <pending> <torn> <corrupt>".
 * Used by tests/integration/test_spool_crash.py. */
#include "base.h"
#include "snapshot.h"
#include "spool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int usage(void)
{
    fprintf(stderr, "usage: spool-crashtest torture --dir DIR [--policy always|batch|never] [--count N]\n"
                    "                      [--ack-every K] [--max-bytes N] [--segment-bytes N] [--seed S]\n"
                    "       spool-crashtest check --dir DIR\n");
    return 2;
}

static int check_cb(const spool_rec *r, int acked, void *ctx)
{
    (void)ctx;
    if (acked)
        return 0;
    char line[64], hex[33];
    et_snap_id_hex(r->id, hex);
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
    et_snap_id_hex(id, hex);
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

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    uint64_t count = 0, seed = 1;
    unsigned ack_every = 3;
    spool_params p;
    memset(&p, 0, sizeof p);
    p.fsync_policy = SPOOL_FSYNC_ALWAYS;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        i++;
        if (!strcmp(a, "--dir"))
            p.dir = v;
        else if (!strcmp(a, "--policy")) {
            if ((p.fsync_policy = spool_fsync_parse(v)) < 0)
                return usage();
        } else if (!strcmp(a, "--count"))
            count = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--ack-every"))
            ack_every = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--max-bytes"))
            p.max_bytes = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--segment-bytes"))
            p.segment_bytes = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else
            return usage();
    }
    if (!p.dir)
        return usage();
    if (!strcmp(cmd, "torture"))
        return torture(&p, count, ack_every, seed);
    if (strcmp(cmd, "check"))
        return usage();
    char err[256];
    spool *sp = spool_open(&p, err, sizeof err);
    if (!sp) {
        fprintf(stderr, "spool check: %s\n", err);
        return 1;
    }
    spool_stats st;
    spool_get_stats(sp, &st);
    int rc = spool_foreach(sp, check_cb, NULL) ? 1 : 0;
    printf("S %llu %llu %llu\n", (unsigned long long)(st.pending_findings + st.pending_routine),
           (unsigned long long)st.torn_tails, (unsigned long long)st.corrupt_dropped);
    spool_close(sp);
    return rc;
}
