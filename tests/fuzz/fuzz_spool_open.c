/* fuzz_spool_open.c - the spool's recovery path on arbitrary flash contents: a segment file
 * and a state file made of fuzz bytes, then open (scan, torn-tail cut, resync past garbage),
 * list, peek/ack, append, close, reopen read-only. Flash goes bad in ways no test imagines.
 *
 * Input: byte 0 = options (bit 0: findings stream, bit 1: fix the state file's CRC as a
 * version 1 file, bit 3: as a version 2 file of the given length, bit 2: fix every record CRC,
 * so the fuzzer reaches the semantic checks behind them), bytes 1-2 =
 * state length (little-endian), then the state bytes, then the segment bytes. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "spool.h"

#define STATE_LEN 1132 /* version 1 state layout: 16 + 8*8 + 2*(12 + 64*8) + 4 */
#define STATE_V2_MAX 1156 /* version 2 (spool_state.c): 16 + 10*8 + 8 + 2*(12 + 64*8) + 4 */

static char dir[64];

static void put32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)v, b[1] = (uint8_t)(v >> 8), b[2] = (uint8_t)(v >> 16), b[3] = (uint8_t)(v >> 24);
}
static uint32_t get32(const uint8_t *b) { return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24; }

static void write_file(const char *name, const uint8_t *b, size_t n)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        abort();
    if (n && write(fd, b, n) != (ssize_t)n)
        abort();
    close(fd);
}

/* Every file of the previous input goes, whatever its name (appends create new segments). */
static void clean(void)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[400];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
}

static int count_cb(const spool_rec *r, int acked, void *ctx)
{
    (void)r, (void)acked;
    (*(unsigned *)ctx)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/et-fuzz-spool-%d", (int)getpid());
        mkdir(dir, 0700);
    }
    if (size < 3 || size > 1 << 16)
        return 0;
    uint8_t opt = data[0];
    size_t slen = data[1] | (size_t)data[2] << 8;
    data += 3, size -= 3;
    if (slen > size)
        slen = size;
    clean();
    if (slen) {
        static uint8_t st[STATE_V2_MAX];
        if (opt & 8) {
            size_t n = slen < 20 ? 20 : slen > STATE_V2_MAX ? STATE_V2_MAX : slen;
            memset(st, 0, sizeof st);
            memcpy(st, data, slen < n ? slen : n);
            put32(st, 0x31535445u);
            put32(st + 4, 2);
            put32(st + n - 4, (uint32_t)crc32(0L, st, (uInt)(n - 4)));
            write_file("state", st, n);
        } else if (opt & 2) {
            memset(st, 0, sizeof st);
            memcpy(st, data, slen < STATE_LEN ? slen : STATE_LEN);
            put32(st, 0x31535445u);
            put32(st + 4, 1);
            put32(st + STATE_LEN - 4, (uint32_t)crc32(0L, st, STATE_LEN - 4));
            write_file("state", st, STATE_LEN);
        } else {
            write_file("state", data, slen);
        }
    }
    static uint8_t seg[1 << 16];
    size_t glen = size - slen;
    memcpy(seg, data + slen, glen);
    if (opt & 4) {
        for (size_t o = 0; o + SPOOL_HDR_LEN <= glen; o++) {
            if (get32(seg + o) != 0x31525445u)
                continue;
            uint32_t len = get32(seg + o + 4);
            if (len > glen - o - SPOOL_HDR_LEN)
                continue;
            put32(seg + o + 8, 0);
            uLong c = crc32(0L, seg + o, SPOOL_HDR_LEN);
            c = crc32(c, seg + o + SPOOL_HDR_LEN, len);
            put32(seg + o + 8, (uint32_t)c);
        }
    }
    write_file((opt & 1) ? "f-00000001.seg" : "r-00000001.seg", seg, glen);

    spool_params p;
    memset(&p, 0, sizeof p);
    p.dir = dir;
    p.max_bytes = 1 << 20;
    p.segment_bytes = 4096;
    p.fsync_policy = SPOOL_FSYNC_NEVER;
    char err[256];
    spool *sp = spool_open(&p, err, sizeof err);
    if (!sp)
        return 0;
    unsigned n = 0;
    spool_foreach(sp, count_cb, &n);
    static uint8_t buf[SPOOL_REC_MAX];
    for (int k = 0; k < 4; k++) {
        spool_rec r;
        long got = spool_peek(sp, &r, buf, sizeof buf);
        if (got <= 0)
            break;
        if ((size_t)got != r.len)
            abort();
        spool_ack(sp, r.id);
    }
    uint8_t id[SPOOL_ID_LEN] = {0x42};
    if (spool_append(sp, opt & 1 ? SPOOL_F_FINDING : 0, id, "x", 1) != 0)
        abort(); /* whatever was on flash, the spool must accept new records */
    spool_stats st;
    spool_get_stats(sp, &st);
    if (st.pending_findings + st.pending_routine == 0)
        abort(); /* the record just appended is pending */
    spool_close(sp);
    p.read_only = 1;
    sp = spool_open(&p, err, sizeof err);
    if (!sp)
        abort(); /* a spool this code wrote must reopen */
    spool_close(sp);
    return 0;
}
