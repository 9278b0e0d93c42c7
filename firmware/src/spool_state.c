/* spool_state.c - the spool's small "state" file: stream cursors, out-of-order acks, counters
 * and the snapshot sequence ceiling. Replaced atomically: write "state.tmp", fdatasync,
 * rename over "state", fsync the directory.
 *
 * Why acks are persisted lazily: on flash every state rewrite costs a page or more, and
 * saving it on every ack cost about twice the bytes of the snapshots themselves. The
 * collector deduplicates on the snapshot id, so an ack that a power cut loses only means the
 * record is sent once more. The state is saved after ack_persist_every acks (default 16) or
 * ack_persist_ms after the first unsaved ack (default 5 min), whichever comes first; so after
 * a power cut at most ack_persist_every acknowledged records come back (the bound the power
 * loss test asserts). Saves that guard correctness stay eager: before a segment file is
 * deleted (a cursor must never point into a segment number that could be reused) and
 * before a new block of sequence numbers is used.
 *
 * Why seq lives here: the snapshot's seq must keep rising across agent restarts, and this
 * is the one file the agent already keeps durable. Handing out every number would need a
 * write per snapshot, so a block of SEQ_BLOCK numbers is reserved with one save; after a
 * restart or power cut numbering continues at the reserved ceiling (a gap, never a repeat).
 *
 * Layout (little-endian), version 2:
 *   magic "ETS1" u32, version u32, next_segno u32, day u32,
 *   10 x u64 counters (appended, acked, routine_dropped, findings_dropped, corrupt_dropped,
 *   torn_tails, bytes_today, bytes_total, state_bytes_total, payload_bytes_total), seq_reserved u64,
 *   per stream (routine, finding): cursor segno u32, cursor off u32, nooo u32, nooo x
 *   {segno u32, off u32}, then crc32 u32 of everything before it.
 * Only the out-of-order acks in use are written (version 1 wrote all 64 slots: 1,132 bytes;
 * version 2 is 132 bytes when no ack is out of order). Version 1 files are still read.
 * Version 3 appends, before the crc, the executed downlink command ids: ncmd u32, ncmd x u64
 * (spool_cmd_claim). Versions 1 and 2 are still read (no ids: nothing executed yet); an agent
 * rolled back to a version-2 build reads a version-3 file as invalid and resends from the
 * oldest record, which the collector deduplicates. */
#include "spool_int.h"
#include "base.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#define STATE_MAGIC 0x31535445u /* "ETS1" */
#define STATE_V1 1u
#define STATE_V2 2u
#define STATE_V3 3u
#define STATE_V1_LEN (4 + 4 + 4 + 4 + 8 * 8 + NSTREAMS * (4 + 4 + 4 + ET_SPOOL_OOO_ACKS * 8) + 4)
#define STATE_V2_MAX (4 + 4 + 4 + 4 + 10 * 8 + 8 + NSTREAMS * (4 + 4 + 4 + ET_SPOOL_OOO_ACKS * 8) + 4)
#define STATE_V3_MAX (STATE_V2_MAX + 4 + ET_SPOOL_CMD_IDS * 8)
#define SEQ_BLOCK 1024u

/* UTC day number; a board without a synced clock keeps counting into the day it last knew. */
void spool_account_write(spool *sp, uint64_t n)
{
    int64_t wall = et_now_wall_ms();
    if (wall >= 1704067200000LL) {
        uint32_t day = (uint32_t)(wall / 86400000LL);
        if (day != sp->day) {
            sp->day = day;
            sp->bytes_today = 0;
        }
    }
    sp->bytes_today += n;
    sp->bytes_total += n;
}

ssize_t spool_pread_full(spool *sp, int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = IO(sp, pread, fd, (uint8_t *)buf + got, n - got, off + got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* All of it or -1 (a short write on a full disk is reported as ENOSPC). */
int spool_write_full(spool *sp, int fd, const void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = IO(sp, pwrite, fd, (const uint8_t *)buf + done, n - done, off + done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = ENOSPC;
            return -1;
        }
        done += (size_t)w;
        spool_account_write(sp, (uint64_t)w);
    }
    return 0;
}

int spool_fsync_dir(spool *sp)
{
    if (sp->p.fsync_policy == SPOOL_FSYNC_NEVER)
        return 0;
    sp->dir_dirty = 0;
    return IO(sp, fsync, sp->dirfd);
}

/* Writes the state into state.tmp (no sync). 0 or -1. */
int spool_state_write_tmp(spool *sp)
{
    uint8_t b[STATE_V3_MAX];
    uint8_t *q = b;
    put32(q, STATE_MAGIC), q += 4;
    put32(q, STATE_V3), q += 4;
    put32(q, sp->next_segno), q += 4;
    put32(q, sp->day), q += 4;
    /* the bytes of this very save are counted in the totals it carries */
    uint8_t *len_at = NULL;
    uint64_t c[10] = {sp->appended_total, sp->acked_total, sp->routine_dropped, sp->findings_dropped,
                      sp->corrupt_dropped, sp->torn_tails, sp->bytes_today, sp->bytes_total, sp->state_bytes_total,
                      sp->payload_bytes_total};
    len_at = q;
    q += 10 * 8;
    put64(q, sp->seq_reserved), q += 8;
    for (int s = 0; s < NSTREAMS; s++) {
        const stream *st = &sp->st[s];
        put32(q, st->cursor.segno), q += 4;
        put32(q, st->cursor.off), q += 4;
        put32(q, st->nooo), q += 4;
        for (uint32_t i = 0; i < st->nooo; i++) {
            put32(q, st->ooo[i].segno), q += 4;
            put32(q, st->ooo[i].off), q += 4;
        }
    }
    put32(q, sp->ncmd_ids), q += 4;
    for (uint32_t i = 0; i < sp->ncmd_ids; i++)
        put64(q, sp->cmd_ids[i]), q += 8;
    size_t len = (size_t)(q - b) + 4;
    c[6] += len, c[7] += len, c[8] += len;
    for (int i = 0; i < 10; i++)
        put64(len_at + 8 * i, c[i]);
    put32(q, (uint32_t)crc32(0L, b, (uInt)(q - b)));
    char tmp[DIR_MAX + 16];
    spool_state_paths(sp, tmp, NULL);
    int fd = IO(sp, open, tmp, SPOOL_O_WRONLY | SPOOL_O_CREAT | SPOOL_O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    uint64_t before = sp->bytes_total;
    int ok = spool_write_full(sp, fd, b, len, 0) == 0;
    sp->state_bytes_total += sp->bytes_total - before;
    IO(sp, close, fd);
    if (!ok) {
        IO(sp, unlink, tmp);
        return -1;
    }
    sp->state_saves++;
    sp->last_save_ms = spool_now_ms(sp);
    return 0;
}

void spool_state_paths(const spool *sp, char *tmp, char *fin)
{
    if (tmp)
        snprintf(tmp, DIR_MAX + 16, "%s/state.tmp", sp->dir);
    if (fin)
        snprintf(fin, DIR_MAX + 16, "%s/state", sp->dir);
}

/* The synchronous save: tmp, fdatasync, rename, directory fsync (waits for a background job
 * first: the two must not both use state.tmp, and the order of saves must hold). */
int spool_state_save(spool *sp)
{
    if (sp->p.read_only)
        return 0;
    spool_job_poll(sp, 1);
    char tmp[DIR_MAX + 16], fin[DIR_MAX + 16];
    spool_state_paths(sp, tmp, fin);
    uint64_t seq = sp->seq_reserved;
    if (spool_state_write_tmp(sp) != 0)
        return -1;
    int fd = IO(sp, open, tmp, SPOOL_O_WRONLY, 0);
    int ok = fd >= 0 && (sp->p.fsync_policy == SPOOL_FSYNC_NEVER || IO(sp, fdatasync, fd) == 0);
    if (fd >= 0)
        IO(sp, close, fd);
    if (!ok || IO(sp, rename, tmp, fin) != 0) {
        IO(sp, unlink, tmp);
        return -1;
    }
    sp->state_dirty = 0;
    sp->acks_since_save = 0;
    if (spool_fsync_dir(sp) != 0)
        return -1;
    sp->seq_durable = seq;
    return 0;
}

int spool_state_due(const spool *sp, uint64_t now_ms)
{
    if (sp->p.read_only)
        return 0;
    if (sp->npend_unlink || sp->seq_reserved > sp->seq_durable)
        return 1;
    return sp->acks_since_save &&
           (sp->acks_since_save >= sp->p.ack_persist_every || now_ms - sp->first_unsaved_ack_ms >= sp->p.ack_persist_ms);
}

uint64_t spool_next_seq(spool *sp)
{
    if (!sp->p.read_only) {
        if (sp->seq_next >= sp->seq_durable) {
            if (sp->seq_reserved < sp->seq_next + SEQ_BLOCK)
                sp->seq_reserved = sp->seq_next + SEQ_BLOCK;
            /* a failed save is logged; numbering still goes on (a repeat after a restart is
             * only possible if this save never reaches flash; the id carries the boot id) */
            if (spool_state_save(sp) != 0)
                et_warn("spool: saving the seq ceiling: %s", strerror(errno));
        } else if (sp->seq_next + SEQ_BLOCK / 2 >= sp->seq_durable && sp->seq_reserved == sp->seq_durable) {
            /* half the block used: reserve the next one with the next state save, so that
             * the synchronous save above is only the fallback */
            sp->seq_reserved = sp->seq_durable + SEQ_BLOCK;
            sp->state_dirty = 1;
        }
    }
    return sp->seq_next++;
}

static int state_parse(spool *sp, const uint8_t *b, size_t n)
{
    if (n < 16 + 4 || get32(b) != STATE_MAGIC || get32(b + n - 4) != (uint32_t)crc32(0L, b, (uInt)(n - 4)))
        return -1;
    uint32_t ver = get32(b + 4);
    if (!((ver == STATE_V1 && n == STATE_V1_LEN) || ((ver == STATE_V2 || ver == STATE_V3) && n >= 16 + 88 + NSTREAMS * 12 + 4)))
        return -1;
    const uint8_t *q = b + 8, *end = b + n - 4;
    sp->next_segno = get32(q), q += 4;
    sp->day = get32(q), q += 4;
    uint64_t *c[10] = {&sp->appended_total, &sp->acked_total, &sp->routine_dropped, &sp->findings_dropped,
                       &sp->corrupt_dropped, &sp->torn_tails, &sp->bytes_today, &sp->bytes_total,
                       &sp->state_bytes_total, &sp->payload_bytes_total};
    int nc = ver == STATE_V1 ? 8 : 10;
    for (int i = 0; i < nc; i++)
        *c[i] = get64(q), q += 8;
    if (ver >= STATE_V2)
        sp->seq_reserved = get64(q), q += 8;
    int sane = sp->next_segno <= SEGNO_MAX;
    for (int s = 0; s < NSTREAMS; s++) {
        stream *st = &sp->st[s];
        if (end - q < 12)
            return -1;
        st->cursor.segno = get32(q), q += 4;
        st->cursor.off = get32(q), q += 4;
        st->nooo = get32(q), q += 4;
        if (st->nooo > ET_SPOOL_OOO_ACKS) {
            st->nooo = 0;
            return -1;
        }
        if (st->cursor.segno > sp->next_segno)
            sane = 0;
        uint32_t slots = ver == STATE_V1 ? ET_SPOOL_OOO_ACKS : st->nooo;
        if ((size_t)(end - q) < (size_t)slots * 8)
            return -1;
        for (uint32_t i = 0; i < slots; i++) {
            pos p = {get32(q), get32(q + 4)};
            q += 8;
            if (i < st->nooo) {
                st->ooo[i] = p;
                if (p.segno > sp->next_segno)
                    sane = 0;
            }
        }
    }
    sp->ncmd_ids = sp->cmd_next = 0;
    if (ver == STATE_V3) {
        if (end - q < 4)
            return -1;
        uint32_t nc_ids = get32(q);
        q += 4;
        if (nc_ids > ET_SPOOL_CMD_IDS || (size_t)(end - q) != (size_t)nc_ids * 8)
            return -1;
        for (uint32_t i = 0; i < nc_ids; i++)
            sp->cmd_ids[i] = get64(q), q += 8;
        sp->ncmd_ids = nc_ids;
        sp->cmd_next = nc_ids % ET_SPOOL_CMD_IDS;
    }
    if (q != end)
        return -1;
    return sane ? 0 : 1;
}

int spool_cmd_claim(spool *sp, uint64_t id)
{
    for (uint32_t i = 0; i < sp->ncmd_ids; i++)
        if (sp->cmd_ids[i] == id)
            return 0;
    if (sp->p.read_only)
        return -1;
    uint32_t slot = sp->cmd_next;
    uint64_t old = sp->cmd_ids[slot];
    uint32_t oldn = sp->ncmd_ids;
    sp->cmd_ids[slot] = id;
    sp->cmd_next = (slot + 1) % ET_SPOOL_CMD_IDS;
    if (sp->ncmd_ids < ET_SPOOL_CMD_IDS)
        sp->ncmd_ids++;
    /* eager: the claim must be on flash before the command runs (at most once) */
    if (spool_state_save(sp) != 0) {
        sp->cmd_ids[slot] = old;
        sp->cmd_next = slot;
        sp->ncmd_ids = oldn;
        return -1;
    }
    return 1;
}

int spool_state_load(spool *sp)
{
    char fin[DIR_MAX + 16];
    snprintf(fin, sizeof fin, "%s/state", sp->dir);
    int fd = IO(sp, open, fin, SPOOL_O_RDONLY, 0);
    if (fd < 0)
        return errno == ENOENT ? 1 : -1;
    uint8_t b[STATE_V3_MAX + 1];
    ssize_t n = spool_pread_full(sp, fd, b, sizeof b, 0);
    IO(sp, close, fd);
    if (n < 0)
        return -1;
    int r = n > STATE_V3_MAX ? -1 : state_parse(sp, b, (size_t)n);
    /* After a restart numbering continues at the ceiling: numbers below it may have been
     * used by the process that reserved them. */
    sp->seq_next = sp->seq_durable = sp->seq_reserved;
    if (r < 0) {
        et_warn("spool: %s is invalid; starting from the oldest record (the collector dedups)", fin);
        memset(sp->st, 0, sizeof sp->st);
        for (int s = 0; s < NSTREAMS; s++)
            sp->st[s].fd = -1;
        sp->next_segno = 0;
        return 1;
    }
    /* The CRC matched, so this is a bug's output, not flash decay: distrust all of it except
     * the counters, and resend from the oldest record (the collector dedups). */
    if (r > 0) {
        et_warn("spool: %s holds impossible cursors; starting from the oldest record", fin);
        sp->next_segno = 0;
        for (int s = 0; s < NSTREAMS; s++) {
            memset(&sp->st[s].cursor, 0, sizeof sp->st[s].cursor);
            sp->st[s].nooo = 0;
        }
        return 1;
    }
    return 0;
}
