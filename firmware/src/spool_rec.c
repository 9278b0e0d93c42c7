/* spool_rec.c - the spool's record framing: the 32-byte header, reading and CRC-checking a
 * record, and finding the next valid one past padding or damage (see spool.h for the format).
 * Records are validated streaming, 4 KiB at a time: no record-sized buffer. */
#include "spool_int.h"

#include <string.h>

#include <zlib.h>

void spool_hdr_encode(uint8_t b[SPOOL_HDR_LEN], uint32_t len, uint32_t crc, uint8_t flags, const uint8_t *id)
{
    put32(b, REC_MAGIC);
    put32(b + 4, len);
    put32(b + 8, crc);
    b[12] = flags;
    b[13] = b[14] = b[15] = 0;
    memcpy(b + 16, id, SPOOL_ID_LEN);
}

/* Reads and validates the record at off of a segment whose content ends at end. Copies the
 * payload into buf if buf and cap >= len. 1 = valid, 0 = not a valid record, -1 = I/O error. */
int spool_rec_read(spool *sp, int fd, uint32_t off, uint32_t end, unsigned cls, rec_hdr *h, void *buf, size_t cap)
{
    uint8_t hb[SPOOL_HDR_LEN];
    if (end < SPOOL_HDR_LEN || off > end - SPOOL_HDR_LEN)
        return 0;
    ssize_t r = spool_pread_full(sp, fd, hb, sizeof hb, off);
    if (r < 0)
        return -1;
    if (r != SPOOL_HDR_LEN || get32(hb) != REC_MAGIC)
        return 0;
    h->len = get32(hb + 4);
    h->crc = get32(hb + 8);
    h->flags = hb[12];
    memcpy(h->id, hb + 16, SPOOL_ID_LEN);
    if (h->len > SPOOL_REC_MAX || (h->flags & ~SPOOL_F_FINDING) || hb[13] || hb[14] || hb[15])
        return 0;
    if (((h->flags & SPOOL_F_FINDING) ? ST_FINDING : ST_ROUTINE) != cls)
        return 0;
    if (h->len > end - off - SPOOL_HDR_LEN)
        return 0;
    memset(hb + 8, 0, 4);
    uLong crc = crc32(0L, hb, SPOOL_HDR_LEN);
    uint32_t done = 0;
    if (buf && cap >= h->len) {
        r = spool_pread_full(sp, fd, buf, h->len, (off_t)off + SPOOL_HDR_LEN);
        if (r < 0)
            return -1;
        if ((uint32_t)r != h->len)
            return 0;
        crc = crc32(crc, buf, h->len);
        done = h->len;
    }
    uint8_t chunk[CHUNK];
    while (done < h->len) {
        uint32_t n = h->len - done < CHUNK ? h->len - done : CHUNK;
        r = spool_pread_full(sp, fd, chunk, n, (off_t)off + SPOOL_HDR_LEN + done);
        if (r < 0)
            return -1;
        if ((uint32_t)r != n)
            return 0;
        crc = crc32(crc, chunk, n);
        done += n;
    }
    return (uint32_t)crc == h->crc ? 1 : 0;
}

/* Next valid record at or after off (resynchronising past garbage). Returns 1 with *at set,
 * 0 if none before end, -1 on I/O error. *skipped is set if garbage was passed over. */
int spool_rec_next(spool *sp, int fd, uint32_t off, uint32_t end, unsigned cls, rec_hdr *h, uint32_t *at, int *skipped)
{
    *skipped = 0;
    int r = spool_rec_read(sp, fd, off, end, cls, h, NULL, 0);
    if (r != 0) {
        *at = off;
        return r;
    }
    /* zeros up to the next sector boundary are padding (see spool_append), not damage */
    uint32_t pad_end = off + (SPOOL_SECTOR - off % SPOOL_SECTOR) % SPOOL_SECTOR;
    if (pad_end > off && pad_end < end) {
        uint8_t z[SPOOL_SECTOR];
        ssize_t got = spool_pread_full(sp, fd, z, pad_end - off, off);
        if (got < 0)
            return -1;
        int zero = got == (ssize_t)(pad_end - off);
        for (ssize_t i = 0; zero && i < got; i++)
            zero = z[i] == 0;
        if (zero && (r = spool_rec_read(sp, fd, pad_end, end, cls, h, NULL, 0)) != 0) {
            *at = pad_end;
            return r;
        }
    }
    *skipped = 1;
    uint8_t chunk[CHUNK + 3];
    uint32_t p = off + 1;
    while (end >= 4 && p <= end - 4) {
        uint32_t n = end - p < CHUNK + 3 ? end - p : CHUNK + 3;
        ssize_t got = spool_pread_full(sp, fd, chunk, n, p);
        if (got < 0)
            return -1;
        if (got < 4)
            break;
        for (uint32_t i = 0; i + 4 <= (uint32_t)got; i++) {
            if (chunk[i] == 'E' && get32(chunk + i) == REC_MAGIC) {
                r = spool_rec_read(sp, fd, p + i, end, cls, h, NULL, 0);
                if (r != 0) {
                    *at = p + i;
                    return r;
                }
            }
        }
        p += (uint32_t)got - 3;
    }
    return 0;
}

int spool_is_done(const stream *s, pos p)
{
    if (pos_lt(p, s->cursor))
        return 1;
    for (uint32_t i = 0; i < s->nooo; i++)
        if (s->ooo[i].segno == p.segno && s->ooo[i].off == p.off)
            return 1;
    return 0;
}

