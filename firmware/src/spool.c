/* spool.c - durable snapshot queue on flash. See spool.h for the layout and guarantees.
 *
 * Design notes (why it looks like this):
 *  - Two streams of segment files (findings / routine) instead of one: eviction must drop
 *    routine snapshots before findings, and deleting whole files is the only eviction that
 *    costs no flash writes. So each class gets its own files and the oldest routine file
 *    goes first.
 *  - Acks are a per-stream cursor (everything before it is delivered) plus a small set of
 *    out-of-order acks, all in one small "state" file replaced atomically (tmp + fsync +
 *    rename + fsync dir). The uplink acks what peek returned, which is always a stream's
 *    first pending record, so the cursor just moves forward and the set stays empty.
 *  - The state is written before any segment is unlinked, so a crash between the two leaves
 *    a segment the cursor has already passed, which open deletes.
 *  - Records are validated by CRC on open (streamed in 4 KiB chunks, no record-sized buffer);
 *    a bad record is skipped by searching for the next valid header; a bad tail of a
 *    stream's newest segment is a torn write and is cut off. */
#include "spool_int.h"
#include "base.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

static const char stream_prefix[NSTREAMS] = {'r', 'f'};

static void job_start(spool *sp, int with_state);

/* ---- small helpers ------------------------------------------------------------------------ */
static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}


static void seg_name(char *out, size_t n, const spool *sp, unsigned cls, uint32_t segno)
{
    snprintf(out, n, "%s/%c-%08u.seg", sp->dir, stream_prefix[cls], (unsigned)segno);
}


static seg *find_seg(spool *sp, uint32_t segno)
{
    for (uint32_t i = 0; i < sp->nsegs; i++)
        if (sp->segs[i].segno == segno)
            return &sp->segs[i];
    return NULL;
}

/* ---- segments ----------------------------------------------------------------------------- */
static void seg_remove_at(spool *sp, uint32_t i)
{
    memmove(&sp->segs[i], &sp->segs[i + 1], (sp->nsegs - i - 1) * sizeof sp->segs[0]);
    sp->nsegs--;
}

/* Deletes a segment file (state must already say its records are done or dropped). */
/* defer: the background job deletes it after the state that passes it is on flash. */
static int seg_unlink(spool *sp, uint32_t i, int defer)
{
    seg *g = &sp->segs[i];
    stream *s = &sp->st[g->cls];
    char path[DIR_MAX + 32];
    seg_name(path, sizeof path, sp, g->cls, g->segno);
    if (s->fd >= 0 && s->active_segno == g->segno) {
        IO(sp, close, s->fd);
        s->fd = -1;
        s->unsynced = 0;
    }
    for (unsigned k = 0; k < NRECENT; k++)
        if (sp->rc[k].valid && sp->rc[k].segno == g->segno)
            sp->rc[k].valid = 0;
    seg_remove_at(sp, i);
    if (defer) {
        memcpy(sp->pend_unlink[sp->npend_unlink++], path, sizeof path);
        return 0;
    }
    if (IO(sp, unlink, path) != 0 && errno != ENOENT)
        return -1;
    sp->dir_dirty = 1;
    return 0;
}

/* The newest segment of a stream is where appends go. */
static int is_newest(const spool *sp, uint32_t i)
{
    for (uint32_t j = i + 1; j < sp->nsegs; j++)
        if (sp->segs[j].cls == sp->segs[i].cls)
            return 0;
    return 1;
}

/* Moves a stream's cursor over acked records and into the next segment at a segment's end,
 * then deletes segments that hold nothing pending (except a stream's newest, still being
 * appended to). Saves the state first if anything is to be deleted. */
static int settle(spool *sp)
{
    for (unsigned c = 0; c < NSTREAMS; c++) {
        stream *s = &sp->st[c];
        for (;;) {
            seg *g = find_seg(sp, s->cursor.segno);
            if (!g || g->cls != c) {
                /* cursor in a segment that does not exist (deleted or not yet created): move to
                 * the first segment of this stream at or after it, if any */
                uint32_t best = 0;
                int found = 0;
                for (uint32_t i = 0; i < sp->nsegs; i++)
                    if (sp->segs[i].cls == c && sp->segs[i].segno > s->cursor.segno) {
                        best = sp->segs[i].segno;
                        found = 1;
                        break;
                    }
                if (!found)
                    break;
                s->cursor.segno = best;
                s->cursor.off = 0;
                continue;
            }
            if (s->cursor.off >= g->size) {
                uint32_t gi = (uint32_t)(g - sp->segs);
                if (is_newest(sp, gi))
                    break;
                /* Everything in the segment is behind the cursor now. Records still counted
                 * pending went bad on flash after open (the cursor stepped over them). */
                if (g->npending) {
                    uint32_t still = 0;
                    for (uint32_t k = 0; k < s->nooo; k++)
                        still += s->ooo[k].segno == g->segno;
                    if (g->npending > still) {
                        sp->corrupt_dropped += g->npending - still;
                        et_warn("spool: %u records of segment %u unreadable, dropped",
                                (unsigned)(g->npending - still), (unsigned)g->segno);
                    }
                    g->npending = 0;
                }
                s->cursor.segno = g->segno + 1;
                s->cursor.off = 0;
                continue;
            }
            /* the record at the cursor (past any corrupt bytes): done out of order? */
            char path[DIR_MAX + 32];
            seg_name(path, sizeof path, sp, c, g->segno);
            int fd = IO(sp, open, path, SPOOL_O_RDONLY, 0);
            if (fd < 0)
                return -1;
            rec_hdr h;
            uint32_t at;
            int skipped;
            int r = spool_rec_next(sp, fd, s->cursor.off, g->size, c, &h, &at, &skipped);
            IO(sp, close, fd);
            if (r < 0)
                return -1;
            if (r == 0) {
                s->cursor.off = g->size; /* only garbage left in this segment */
                sp->state_dirty = 1;
                continue;
            }
            if (at != s->cursor.off) {
                s->cursor.off = at;
                sp->state_dirty = 1;
            }
            uint32_t k;
            for (k = 0; k < s->nooo; k++)
                if (s->ooo[k].segno == s->cursor.segno && s->ooo[k].off == s->cursor.off)
                    break;
            if (k == s->nooo)
                break;
            s->ooo[k] = s->ooo[--s->nooo];
            s->cursor.off = at + SPOOL_HDR_LEN + h.len;
            sp->state_dirty = 1;
        }
        /* out-of-order entries the cursor has passed are no longer needed */
        for (uint32_t k = 0; k < s->nooo;)
            if (pos_lt(s->ooo[k], s->cursor))
                s->ooo[k] = s->ooo[--s->nooo];
            else
                k++;
    }
    int need_delete = 0;
    for (uint32_t i = 0; i < sp->nsegs; i++) {
        seg *g = &sp->segs[i];
        if (!is_newest(sp, i) && g->npending == 0)
            need_delete = 1;
    }
    if (!need_delete || sp->p.read_only)
        return 0;
    /* batch: no fsync on the loop; the next background job saves the state, then deletes */
    int defer = sp->p.fsync_policy == SPOOL_FSYNC_BATCH && sp->opened;
    if (!defer && spool_state_save(sp) != 0)
        return -1;
    for (uint32_t i = 0; i < sp->nsegs;) {
        seg *g = &sp->segs[i];
        if (!is_newest(sp, i) && g->npending == 0 && (!defer || sp->npend_unlink < SJ_PEND)) {
            if (seg_unlink(sp, i, defer) != 0)
                return -1;
        } else {
            i++;
        }
    }
    return defer ? 0 : spool_fsync_dir(sp);
}

/* Scans one segment at open: validates every record, counts pending ones, cuts a torn tail. */
static int seg_scan(spool *sp, uint32_t i, int newest)
{
    seg *g = &sp->segs[i];
    stream *s = &sp->st[g->cls];
    char path[DIR_MAX + 32];
    seg_name(path, sizeof path, sp, g->cls, g->segno);
    int fd = IO(sp, open, path, SPOOL_O_RDONLY, 0);
    if (fd < 0)
        return -1;
    uint64_t fsz;
    if (IO(sp, fsize, fd, &fsz) != 0) {
        IO(sp, close, fd);
        return -1;
    }
    uint32_t fsize = fsz > UINT32_MAX ? UINT32_MAX : (uint32_t)fsz;
    uint32_t off = 0;
    g->nrec = g->npending = 0;
    while (off < fsize) {
        rec_hdr h;
        uint32_t at;
        int skipped;
        int r = spool_rec_next(sp, fd, off, fsize, g->cls, &h, &at, &skipped);
        if (r < 0) {
            IO(sp, close, fd);
            return -1;
        }
        if (r == 0) {
            /* nothing valid up to the end: a torn last write (newest segment) or a corrupt end */
            if (newest) {
                sp->torn_tails++;
                if (!sp->p.read_only) {
                    int wfd = IO(sp, open, path, SPOOL_O_WRONLY, 0);
                    if (wfd < 0 || IO(sp, ftruncate, wfd, off) != 0 || (sp->p.fsync_policy != SPOOL_FSYNC_NEVER && IO(sp, fsync, wfd) != 0)) {
                        if (wfd >= 0)
                            IO(sp, close, wfd);
                        IO(sp, close, fd);
                        return -1;
                    }
                    IO(sp, close, wfd);
                }
                et_warn("spool: %s: torn record at offset %u cut off (%u bytes)", path, (unsigned)off,
                        (unsigned)(fsize - off));
            } else {
                sp->corrupt_dropped++;
                et_warn("spool: %s: corrupt tail at offset %u ignored", path, (unsigned)off);
            }
            sp->state_dirty = 1;
            break;
        }
        if (skipped) {
            sp->corrupt_dropped++;
            sp->state_dirty = 1;
            et_warn("spool: %s: corrupt bytes %u..%u skipped", path, (unsigned)off, (unsigned)at);
        }
        g->nrec++;
        pos p = {g->segno, at};
        if (!spool_is_done(s, p))
            g->npending++;
        off = at + SPOOL_HDR_LEN + h.len;
    }
    IO(sp, close, fd);
    g->size = off;
    return 0;
}

static int cmp_seg(const void *a, const void *b)
{
    const seg *x = a, *y = b;
    return x->segno < y->segno ? -1 : x->segno > y->segno;
}

/* One directory entry at open: a segment goes into the table, a stale state.tmp is removed. */
static int list_cb(void *ctx, const char *name)
{
    spool *sp = ctx;
    char c;
    unsigned segno;
    char tail[8];
    if (!strcmp(name, "state.tmp")) {
        if (!sp->p.read_only) {
            char path[DIR_MAX + 16];
            snprintf(path, sizeof path, "%s/%s", sp->dir, name);
            IO(sp, unlink, path);
        }
        return 0;
    }
    if (sscanf(name, "%c-%8u.%3s", &c, &segno, tail) != 3 || strcmp(tail, "seg") || strlen(name) != 14 ||
        (c != 'r' && c != 'f') || segno > SEGNO_MAX)
        return 0;
    if (sp->nsegs >= ET_SPOOL_MAX_SEGS) {
        sp->nsegs = ET_SPOOL_MAX_SEGS + 1; /* reported by spool_open */
        return 1;
    }
    seg *g = &sp->segs[sp->nsegs++];
    memset(g, 0, sizeof *g);
    g->segno = segno;
    g->cls = c == 'f' ? ST_FINDING : ST_ROUTINE;
    return 0;
}

spool *spool_open(const spool_params *p, char *err, size_t errlen)
{
    if (!p || !p->dir || !p->dir[0] || strlen(p->dir) >= DIR_MAX) {
        seterr(err, errlen, "spool: no directory (or longer than %d)", DIR_MAX - 1);
        return NULL;
    }
    spool *sp = calloc(1, sizeof *sp);
    if (!sp) {
        seterr(err, errlen, "spool: out of memory");
        return NULL;
    }
    sp->p = *p;
    snprintf(sp->dir, sizeof sp->dir, "%s", p->dir);
    sp->p.dir = sp->dir;
    if (!sp->p.max_bytes)
        sp->p.max_bytes = 16u << 20;
    if (!sp->p.segment_bytes) {
        uint64_t s = sp->p.max_bytes / 64;
        sp->p.segment_bytes = (uint32_t)(s < (64u << 10) ? (64u << 10) : s > (256u << 10) ? (256u << 10) : s);
    }
    if (sp->p.segment_bytes < 4096)
        sp->p.segment_bytes = 4096;
    /* The byte cap, not the segment table, must decide when the spool is full: with segments
     * too small for max_bytes the table (ET_SPOOL_MAX_SEGS) would fill first and evict
     * pending records long before max_bytes is reached. Half the table leaves room for the
     * two streams' partly filled segments. */
    uint64_t min_seg = (sp->p.max_bytes + ET_SPOOL_MAX_SEGS / 2 - 1) / (ET_SPOOL_MAX_SEGS / 2);
    if (sp->p.segment_bytes < min_seg)
        sp->p.segment_bytes = (uint32_t)ET_MIN(min_seg, (uint64_t)SPOOL_REC_MAX * 64u);
    if (!sp->p.batch_records)
        sp->p.batch_records = 8;
    if (!sp->p.batch_ms)
        sp->p.batch_ms = 5000;
    if (!sp->p.ack_persist_every)
        sp->p.ack_persist_every = 16;
    if (!sp->p.ack_persist_ms)
        sp->p.ack_persist_ms = 300000;
    if (sp->p.fsync_policy < SPOOL_FSYNC_ALWAYS || sp->p.fsync_policy > SPOOL_FSYNC_NEVER)
        sp->p.fsync_policy = SPOOL_FSYNC_BATCH;
    for (int c = 0; c < NSTREAMS; c++)
        sp->st[c].fd = -1;
    sp->dirfd = -1;

    sp->vfs = p->vfs ? p->vfs : spool_vfs_posix();
    if (!p->read_only && IO(sp, mkdir, sp->dir, 0700) != 0 && errno != EEXIST) {
        seterr(err, errlen, "spool: mkdir %s: %s", sp->dir, strerror(errno));
        free(sp);
        return NULL;
    }
    sp->dirfd = IO(sp, open, sp->dir, SPOOL_O_RDONLY | SPOOL_O_DIRECTORY, 0);
    if (sp->dirfd < 0) {
        seterr(err, errlen, "spool: open %s: %s", sp->dir, strerror(errno));
        free(sp);
        return NULL;
    }
    if (spool_state_load(sp) < 0) {
        seterr(err, errlen, "spool: reading state in %s: %s", sp->dir, strerror(errno));
        goto fail;
    }
    if (IO(sp, list, sp->dir, list_cb, sp) != 0) {
        seterr(err, errlen, "spool: listing %s: %s", sp->dir, strerror(errno));
        goto fail;
    }
    if (sp->nsegs > ET_SPOOL_MAX_SEGS) {
        seterr(err, errlen, "spool: more than %d segments in %s", ET_SPOOL_MAX_SEGS, sp->dir);
        goto fail;
    }
    qsort(sp->segs, sp->nsegs, sizeof sp->segs[0], cmp_seg);

    /* Segments the cursor already passed were fully acked or evicted before a crash. */
    for (uint32_t i = 0; i < sp->nsegs;) {
        seg *g = &sp->segs[i];
        if (g->segno < sp->st[g->cls].cursor.segno && !p->read_only) {
            char path[DIR_MAX + 32];
            seg_name(path, sizeof path, sp, g->cls, g->segno);
            IO(sp, unlink, path);
            seg_remove_at(sp, i);
            sp->dir_dirty = 1;
            continue;
        }
        i++;
    }
    for (uint32_t i = 0; i < sp->nsegs; i++) {
        if (seg_scan(sp, i, is_newest(sp, i)) != 0) {
            seterr(err, errlen, "spool: scanning segment %u: %s", (unsigned)sp->segs[i].segno, strerror(errno));
            goto fail;
        }
        if (sp->segs[i].segno >= sp->next_segno)
            sp->next_segno = sp->segs[i].segno + 1;
    }
    if (sp->next_segno == 0)
        sp->next_segno = 1;
    /* With fsync batch/never, the state can be newer than the data: a cursor (or an
     * out-of-order ack) past the end of what survived would hide records appended later. */
    for (unsigned c = 0; c < NSTREAMS; c++) {
        stream *s = &sp->st[c];
        seg *g = find_seg(sp, s->cursor.segno);
        if (g && g->cls == c && s->cursor.off > g->size) {
            s->cursor.off = g->size;
            sp->state_dirty = 1;
        }
        for (uint32_t k = 0; k < s->nooo;) {
            seg *og = find_seg(sp, s->ooo[k].segno);
            if (!og || og->cls != c || s->ooo[k].off >= og->size) {
                s->ooo[k] = s->ooo[--s->nooo];
                sp->state_dirty = 1;
            } else {
                k++;
            }
        }
    }
    if (!p->read_only) {
        if (settle(sp) != 0 || ((sp->state_dirty || sp->dir_dirty) && spool_state_save(sp) != 0)) {
            seterr(err, errlen, "spool: writing state in %s: %s", sp->dir, strerror(errno));
            goto fail;
        }
    }
    sp->last_save_ms = spool_now_ms(sp);
    sp->opened = 1;
    return sp;
fail:
    if (sp->dirfd >= 0)
        IO(sp, close, sp->dirfd);
    free(sp);
    return NULL;
}

static int sync_data(spool *sp)
{
    int rc = 0;
    for (int c = 0; c < NSTREAMS; c++)
        if (sp->st[c].fd >= 0 && sp->st[c].unsynced) {
            if (IO(sp, fdatasync, sp->st[c].fd) != 0)
                rc = -1;
            sp->st[c].unsynced = 0;
        }
    if (sp->dir_dirty && IO(sp, fsync, sp->dirfd) != 0)
        rc = -1;
    sp->dir_dirty = 0;
    sp->unsynced_records = 0;
    return rc;
}

int spool_sync(spool *sp)
{
    if (sp->p.read_only)
        return 0;
    int rc = 0;
    spool_job_poll(sp, 1);
    if (sp->npend_sync || sp->npend_unlink) {
        job_start(sp, 1);
        if (spool_job_poll(sp, 1) != 0)
            rc = -1;
    }
    for (int c = 0; c < NSTREAMS; c++)
        if (sp->st[c].fd >= 0 && sp->st[c].unsynced) {
            if (IO(sp, fdatasync, sp->st[c].fd) != 0)
                rc = -1;
            sp->st[c].unsynced = 0;
        }
    if (IO(sp, fsync, sp->dirfd) != 0)
        rc = -1;
    sp->dir_dirty = 0;
    sp->unsynced_records = 0;
    if (spool_state_save(sp) != 0)
        rc = -1;
    /* state_save skips the directory fsync under "never"; a forced sync does it anyway */
    if (IO(sp, fsync, sp->dirfd) != 0)
        rc = -1;
    return rc;
}

void spool_close(spool *sp)
{
    if (!sp)
        return;
    if (!sp->p.read_only) {
        /* whatever the background job had pending (closed segments, deletions) goes first */
        spool_job_poll(sp, 1);
        if (sp->npend_sync || sp->npend_unlink) {
            job_start(sp, 1);
            spool_job_poll(sp, 1);
        }
        spool_job_stop(sp);
        if (sp->p.fsync_policy == SPOOL_FSYNC_NEVER) {
            spool_state_save(sp);
        } else {
            sync_data(sp);
            spool_state_save(sp);
        }
    }
    for (int c = 0; c < NSTREAMS; c++)
        if (sp->st[c].fd >= 0)
            IO(sp, close, sp->st[c].fd);
    IO(sp, close, sp->dirfd);
    free(sp);
}

static uint64_t bytes_used(const spool *sp)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < sp->nsegs; i++)
        n += sp->segs[i].size;
    return n;
}

/* Drops the oldest routine segment, or if there is none the oldest findings segment. */
static int evict_one(spool *sp)
{
    int idx = -1;
    for (uint32_t i = 0; i < sp->nsegs && idx < 0; i++)
        if (sp->segs[i].npending == 0) /* delivered already: free to drop */
            idx = (int)i;
    for (uint32_t i = 0; i < sp->nsegs && idx < 0; i++)
        if (sp->segs[i].cls == ST_ROUTINE)
            idx = (int)i;
    if (idx < 0 && sp->nsegs)
        idx = 0;
    if (idx < 0)
        return -1;
    seg *g = &sp->segs[idx];
    stream *s = &sp->st[g->cls];
    if (g->cls == ST_ROUTINE)
        sp->routine_dropped += g->npending;
    else
        sp->findings_dropped += g->npending;
    if (g->npending)
        et_warn("spool: full: dropped %u pending %s snapshots (segment %u)", (unsigned)g->npending,
                g->cls == ST_ROUTINE ? "routine" : "finding", (unsigned)g->segno);
    pos after = {g->segno + 1, 0};
    if (pos_lt(s->cursor, after))
        s->cursor = after;
    for (uint32_t k = 0; k < s->nooo;)
        if (pos_lt(s->ooo[k], s->cursor))
            s->ooo[k] = s->ooo[--s->nooo];
        else
            k++;
    /* counters and cursor on flash before the file goes, so a crash cannot count twice */
    if (spool_state_save(sp) != 0)
        return -1;
    if (seg_unlink(sp, (uint32_t)idx, 0) != 0)
        return -1;
    return spool_fsync_dir(sp);
}

static int open_new_segment(spool *sp, unsigned cls)
{
    stream *s = &sp->st[cls];
    if (s->fd >= 0) {
        if (s->unsynced && sp->p.fsync_policy == SPOOL_FSYNC_BATCH && sp->npend_sync < SJ_PEND) {
            /* the next background job syncs it by name */
            char prev[DIR_MAX + 32];
            seg_name(prev, sizeof prev, sp, cls, s->active_segno);
            memcpy(sp->pend_sync[sp->npend_sync++], prev, sizeof prev);
            s->unsynced = 0;
        }
        if (s->unsynced && sp->p.fsync_policy != SPOOL_FSYNC_NEVER && IO(sp, fdatasync, s->fd) != 0)
            return -1;
        IO(sp, close, s->fd);
        s->fd = -1;
        s->unsynced = 0;
    }
    while (sp->nsegs >= ET_SPOOL_MAX_SEGS)
        if (evict_one(sp) != 0)
            return -1;
    if (sp->next_segno > SEGNO_MAX) {
        errno = ENOSPC;
        return -1;
    }
    uint32_t segno = sp->next_segno++;
    char path[DIR_MAX + 32];
    seg_name(path, sizeof path, sp, cls, segno);
    int fd = IO(sp, open, path, SPOOL_O_WRONLY | SPOOL_O_CREAT | SPOOL_O_EXCL, 0600);
    if (fd < 0)
        return -1;
    seg *g = &sp->segs[sp->nsegs++];
    memset(g, 0, sizeof *g);
    g->segno = segno;
    g->cls = (uint8_t)cls;
    s->fd = fd;
    s->active_segno = segno;
    sp->dir_dirty = 1;
    /* the new file must survive a power cut before its first record is reported durable */
    if (sp->p.fsync_policy == SPOOL_FSYNC_ALWAYS)
        return spool_fsync_dir(sp);
    return 0;
}

int spool_append(spool *sp, uint8_t flags, const uint8_t id[SPOOL_ID_LEN], const void *payload, size_t len)
{
    if (sp->p.read_only || len > SPOOL_REC_MAX || len > sp->p.max_bytes / 4 || (flags & ~SPOOL_F_FINDING)) {
        errno = sp->p.read_only ? EROFS : (flags & ~SPOOL_F_FINDING) ? EINVAL : EFBIG;
        return -1;
    }
    unsigned cls = (flags & SPOOL_F_FINDING) ? ST_FINDING : ST_ROUTINE;
    uint32_t need = SPOOL_HDR_LEN + (uint32_t)len;
    while (bytes_used(sp) + need > sp->p.max_bytes)
        if (evict_one(sp) != 0)
            return -1;
    stream *s = &sp->st[cls];
    seg *g = NULL;
    if (s->fd >= 0)
        g = find_seg(sp, s->active_segno);
    if (!g) {
        /* reopen the newest segment of the stream if it has room, else start a new one */
        for (uint32_t i = sp->nsegs; i-- > 0;)
            if (sp->segs[i].cls == cls) {
                if (sp->segs[i].size < sp->p.segment_bytes) {
                    char path[DIR_MAX + 32];
                    seg_name(path, sizeof path, sp, cls, sp->segs[i].segno);
                    int fd = IO(sp, open, path, SPOOL_O_WRONLY, 0);
                    if (fd < 0)
                        return -1;
                    if (s->fd >= 0)
                        IO(sp, close, s->fd);
                    s->fd = fd;
                    s->active_segno = sp->segs[i].segno;
                    g = &sp->segs[i];
                }
                break;
            }
    }
    if (!g || g->size >= sp->p.segment_bytes) {
        if (open_new_segment(sp, cls) != 0)
            return -1;
        g = find_seg(sp, s->active_segno);
    }
    uint8_t hb[SPOOL_HDR_LEN];
    spool_hdr_encode(hb, (uint32_t)len, 0, flags, id);
    uLong crc = crc32(0L, hb, SPOOL_HDR_LEN);
    crc = crc32(crc, payload, (uInt)len);
    put32(hb + 8, (uint32_t)crc);
    /* The first record after an fsync starts on a fresh sector: a power cut during a write
     * can garble the whole sector being written (flash rewrites a page, not bytes), and a
     * record already reported durable must not share that sector. The gap is a hole (no
     * bytes written); the scan reads zeros up to a sector boundary as padding. */
    uint32_t at = g->size;
    if (!s->unsynced && at % SPOOL_SECTOR)
        at += SPOOL_SECTOR - at % SPOOL_SECTOR;
    /* header then payload; a failure part-way is undone, so the next append starts at a record
     * boundary (a power cut part-way is the torn tail that open cuts off) */
    if (spool_write_full(sp, s->fd, hb, SPOOL_HDR_LEN, at) != 0 ||
        spool_write_full(sp, s->fd, payload, len, (uint64_t)at + SPOOL_HDR_LEN) != 0) {
        int e = errno;
        if (IO(sp, ftruncate, s->fd, g->size) != 0)
            et_warn("spool: cannot undo a partial write: %s", strerror(errno));
        errno = e;
        return -1;
    }
    g->size = at + need;
    g->nrec++;
    g->npending++;
    s->unsynced = 1;
    sp->appended_total++;
    sp->payload_bytes_total += len;
    sp->state_dirty = 1;
    if (sp->p.fsync_policy == SPOOL_FSYNC_ALWAYS) {
        if (IO(sp, fdatasync, s->fd) != 0)
            return -1;
        s->unsynced = 0;
        if (sp->dir_dirty && spool_fsync_dir(sp) != 0)
            return -1;
    } else if (sp->p.fsync_policy == SPOOL_FSYNC_BATCH) {
        if (sp->unsynced_records++ == 0)
            sp->first_unsynced_ms = spool_now_ms(sp);
        /* never more than batch_records appended but not on flash: wait for the job in
         * flight if the next one could not start in time (only when appends outrun the card) */
        if (sp->unsynced_records + sp->inflight_records >= sp->p.batch_records && spool_job_busy(sp))
            if (spool_job_poll(sp, 1) != 0)
                return -1;
        if (2 * sp->unsynced_records >= sp->p.batch_records)
            return spool_tick(sp);
    }
    return 0;
}

/* Starts the background job: the segments with unsynced records, the directory, and if
 * with_state the state (written to state.tmp here, synced and renamed by the job), then the
 * deletion of the segments it passes. */
static void job_start(spool *sp, int with_state)
{
    sjob *j = &sp->job;
    j->n = 0;
    j->err = 0;
    j->has_state = 0;
    j->acks = 0;
    j->synced_streams = 0;
    char path[DIR_MAX + 32];
    for (unsigned i = 0; i < sp->npend_sync; i++)
        spool_job_add(sp, SJ_SYNC, sp->pend_sync[i], NULL);
    sp->npend_sync = 0;
    for (int c = 0; c < NSTREAMS; c++) {
        stream *s = &sp->st[c];
        if (s->fd >= 0 && s->unsynced) {
            seg_name(path, sizeof path, sp, (unsigned)c, s->active_segno);
            spool_job_add(sp, SJ_SYNC, path, NULL);
            s->unsynced = 0; /* the next record starts a fresh sector (spool_append) */
            j->synced_streams |= 1u << c;
        }
    }
    /* one directory fsync at the end covers new segments and the state's rename alike */
    int dir = sp->dir_dirty;
    sp->dir_dirty = 0;
    if (with_state) {
        char tmp[DIR_MAX + 16], fin[DIR_MAX + 16];
        spool_state_paths(sp, tmp, fin);
        j->seq_written = sp->seq_reserved;
        if (spool_state_write_tmp(sp) == 0) {
            spool_job_add(sp, SJ_SYNC, tmp, NULL);
            spool_job_add(sp, SJ_RENAME, tmp, fin);
            spool_job_add(sp, SJ_SYNC_DIR, NULL, NULL);
            dir = 0;
            for (unsigned i = 0; i < sp->npend_unlink; i++)
                spool_job_add(sp, SJ_UNLINK, sp->pend_unlink[i], NULL);
            sp->npend_unlink = 0;
            j->has_state = 1;
            j->acks = sp->acks_since_save;
            sp->acks_since_save = 0;
            sp->state_dirty = 0;
        } else {
            et_warn("spool: writing %s: %s", tmp, strerror(errno));
        }
    }
    if (dir)
        spool_job_add(sp, SJ_SYNC_DIR, NULL, NULL);
    j->records = sp->unsynced_records;
    sp->inflight_records = sp->unsynced_records;
    sp->unsynced_records = 0;
    if (j->n)
        spool_job_submit(sp);
}

int spool_tick(spool *sp)
{
    if (sp->p.read_only)
        return 0;
    uint64_t now = spool_now_ms(sp);
    int rc = spool_job_poll(sp, 0);
    if (sp->p.fsync_policy != SPOOL_FSYNC_BATCH) {
        /* always: appends are synced as they come; never: nothing is. Acks alike, lazily. */
        if (spool_state_due(sp, now) && spool_state_save(sp) != 0)
            rc = -1;
        return rc;
    }
    /* Data first: an append waits at most batch_records / batch_ms to be on flash. The state
     * (acks) goes lazily (spool_state.c). Both in one background job (spool_sync.c). */
    if (spool_job_busy(sp))
        return rc;
    int data = sp->unsynced_records &&
               (2 * sp->unsynced_records >= sp->p.batch_records || now - sp->first_unsynced_ms >= sp->p.batch_ms);
    int state = spool_state_due(sp, now);
    if (data || state || sp->npend_sync)
        job_start(sp, state);
    return rc;
}

/* ---- consumer side ------------------------------------------------------------------------- */
/* First pending record of a stream at or after its cursor. 1 found, 0 none, -1 I/O error. */
static int stream_first_pending(spool *sp, unsigned cls, rec_hdr *h, pos *at)
{
    stream *s = &sp->st[cls];
    for (uint32_t i = 0; i < sp->nsegs; i++) {
        seg *g = &sp->segs[i];
        if (g->cls != cls || g->segno < s->cursor.segno || g->npending == 0)
            continue;
        char path[DIR_MAX + 32];
        seg_name(path, sizeof path, sp, cls, g->segno);
        int fd = IO(sp, open, path, SPOOL_O_RDONLY, 0);
        if (fd < 0)
            return -1;
        uint32_t off = g->segno == s->cursor.segno ? s->cursor.off : 0;
        while (off < g->size) {
            uint32_t a;
            int skipped;
            int r = spool_rec_next(sp, fd, off, g->size, cls, h, &a, &skipped);
            if (r < 0) {
                IO(sp, close, fd);
                return -1;
            }
            if (r == 0)
                break;
            pos p = {g->segno, a};
            if (!spool_is_done(s, p)) {
                IO(sp, close, fd);
                *at = p;
                return 1;
            }
            off = a + SPOOL_HDR_LEN + h->len;
        }
        IO(sp, close, fd);
    }
    return 0;
}

static void remember(spool *sp, const rec_hdr *h, unsigned cls, pos p)
{
    for (unsigned k = 0; k < NRECENT; k++)
        if (sp->rc[k].valid && !memcmp(sp->rc[k].id, h->id, SPOOL_ID_LEN)) {
            sp->rc[k].segno = p.segno;
            sp->rc[k].off = p.off;
            sp->rc[k].cls = (uint8_t)cls;
            return;
        }
    recent *r = &sp->rc[sp->rc_next++ % NRECENT];
    memcpy(r->id, h->id, SPOOL_ID_LEN);
    r->cls = (uint8_t)cls;
    r->segno = p.segno;
    r->off = p.off;
    r->valid = 1;
}

long spool_peek(spool *sp, spool_rec *out, void *buf, size_t cap)
{
    static const unsigned order[NSTREAMS] = {ST_FINDING, ST_ROUTINE};
    for (unsigned k = 0; k < NSTREAMS; k++) {
        unsigned cls = order[k];
        rec_hdr h;
        pos p;
        int r = stream_first_pending(sp, cls, &h, &p);
        if (r < 0)
            return -1;
        if (r == 0)
            continue;
        memcpy(out->id, h.id, SPOOL_ID_LEN);
        out->flags = h.flags;
        out->len = h.len;
        out->segno = p.segno;
        out->offset = p.off;
        remember(sp, &h, cls, p);
        if (!buf || cap < h.len)
            return -2;
        char path[DIR_MAX + 32];
        seg_name(path, sizeof path, sp, cls, p.segno);
        int fd = IO(sp, open, path, SPOOL_O_RDONLY, 0);
        if (fd < 0)
            return -1;
        seg *g = find_seg(sp, p.segno);
        rec_hdr h2;
        r = spool_rec_read(sp, fd, p.off, g ? g->size : 0, cls, &h2, buf, cap);
        IO(sp, close, fd);
        if (r < 0)
            return -1;
        if (r == 0) /* changed under us (flash corruption since open): report as I/O error */
            return -1;
        return (long)h.len;
    }
    return 0;
}

/* Finds a pending record by id: the recent-peek cache first, then a scan. */
static int locate(spool *sp, const uint8_t *id, unsigned *cls, pos *p)
{
    for (unsigned k = 0; k < NRECENT; k++)
        if (sp->rc[k].valid && !memcmp(sp->rc[k].id, id, SPOOL_ID_LEN) && find_seg(sp, sp->rc[k].segno)) {
            *cls = sp->rc[k].cls;
            p->segno = sp->rc[k].segno;
            p->off = sp->rc[k].off;
            return 1;
        }
    for (uint32_t i = 0; i < sp->nsegs; i++) {
        seg *g = &sp->segs[i];
        stream *s = &sp->st[g->cls];
        if (g->npending == 0 || g->segno < s->cursor.segno)
            continue;
        char path[DIR_MAX + 32];
        seg_name(path, sizeof path, sp, g->cls, g->segno);
        int fd = IO(sp, open, path, SPOOL_O_RDONLY, 0);
        if (fd < 0)
            return -1;
        uint32_t off = g->segno == s->cursor.segno ? s->cursor.off : 0;
        while (off < g->size) {
            rec_hdr h;
            uint32_t a;
            int skipped;
            int r = spool_rec_next(sp, fd, off, g->size, g->cls, &h, &a, &skipped);
            if (r <= 0) {
                if (r < 0) {
                    IO(sp, close, fd);
                    return -1;
                }
                break;
            }
            pos q = {g->segno, a};
            if (!memcmp(h.id, id, SPOOL_ID_LEN) && !spool_is_done(s, q)) {
                IO(sp, close, fd);
                *cls = g->cls;
                *p = q;
                return 1;
            }
            off = a + SPOOL_HDR_LEN + h.len;
        }
        IO(sp, close, fd);
    }
    return 0;
}

int spool_ack(spool *sp, const uint8_t id[SPOOL_ID_LEN])
{
    if (sp->p.read_only)
        return -1;
    unsigned cls;
    pos p;
    int r = locate(sp, id, &cls, &p);
    if (r <= 0)
        return r < 0 ? -1 : 1;
    stream *s = &sp->st[cls];
    seg *g = find_seg(sp, p.segno);
    if (!g || spool_is_done(s, p))
        return 1;
    for (unsigned k = 0; k < NRECENT; k++)
        if (sp->rc[k].valid && !memcmp(sp->rc[k].id, id, SPOOL_ID_LEN))
            sp->rc[k].valid = 0;
    if (s->nooo >= ET_SPOOL_OOO_ACKS) {
        et_warn("spool: more than %d acks ahead of the oldest pending record", ET_SPOOL_OOO_ACKS);
        return -1;
    }
    /* the ack goes into the set; settle() turns a set entry at the cursor into cursor motion */
    s->ooo[s->nooo++] = p;
    g->npending--;
    sp->acked_total++;
    if (sp->acks_since_save++ == 0)
        sp->first_unsaved_ack_ms = spool_now_ms(sp);
    sp->state_dirty = 1;
    if (settle(sp) != 0)
        return -1;
    /* not saved on every ack, whatever the fsync policy: see spool_state.c for why and for
     * the bound on what a power cut can bring back. Under batch the save is a background job
     * (spool_sync.c), started here if none is running, else by the next tick. */
    if (sp->acks_since_save >= sp->p.ack_persist_every) {
        if (sp->p.fsync_policy == SPOOL_FSYNC_BATCH)
            return spool_tick(sp);
        if (spool_state_save(sp) != 0)
            return -1;
    }
    return 0;
}

void spool_get_stats(const spool *sp, spool_stats *st)
{
    memset(st, 0, sizeof *st);
    st->max_bytes = sp->p.max_bytes;
    st->segment_bytes = sp->p.segment_bytes;
    for (uint32_t i = 0; i < sp->nsegs; i++) {
        const seg *g = &sp->segs[i];
        st->bytes_used += g->size;
        if (g->cls == ST_FINDING) {
            st->segments_findings++;
            st->pending_findings += g->npending;
        } else {
            st->segments_routine++;
            st->pending_routine += g->npending;
        }
    }
    st->appended_total = sp->appended_total;
    st->acked_total = sp->acked_total;
    st->routine_dropped = sp->routine_dropped;
    st->findings_dropped = sp->findings_dropped;
    st->corrupt_dropped = sp->corrupt_dropped;
    st->torn_tails = sp->torn_tails;
    st->bytes_written_today = sp->bytes_today;
    st->bytes_written_total = sp->bytes_total;
    st->state_bytes_total = sp->state_bytes_total;
    st->payload_bytes_total = sp->payload_bytes_total;
    st->state_saves = sp->state_saves;
    st->next_seq = sp->seq_next;
    st->day = sp->day;
    st->fsync_policy = sp->p.fsync_policy;
}

int spool_foreach(spool *sp, int (*cb)(const spool_rec *r, int acked, void *ctx), void *ctx)
{
    static const unsigned order[NSTREAMS] = {ST_FINDING, ST_ROUTINE};
    for (unsigned k = 0; k < NSTREAMS; k++) {
        unsigned cls = order[k];
        for (uint32_t i = 0; i < sp->nsegs; i++) {
            seg *g = &sp->segs[i];
            if (g->cls != cls)
                continue;
            char path[DIR_MAX + 32];
            seg_name(path, sizeof path, sp, cls, g->segno);
            int fd = IO(sp, open, path, SPOOL_O_RDONLY, 0);
            if (fd < 0)
                return -1;
            uint32_t off = 0;
            while (off < g->size) {
                rec_hdr h;
                uint32_t a;
                int skipped;
                int r = spool_rec_next(sp, fd, off, g->size, cls, &h, &a, &skipped);
                if (r < 0) {
                    IO(sp, close, fd);
                    return -1;
                }
                if (r == 0)
                    break;
                spool_rec rec;
                memcpy(rec.id, h.id, SPOOL_ID_LEN);
                rec.flags = h.flags;
                rec.len = h.len;
                rec.segno = g->segno;
                rec.offset = a;
                pos p = {g->segno, a};
                if (cb(&rec, spool_is_done(&sp->st[cls], p), ctx)) {
                    IO(sp, close, fd);
                    return 0;
                }
                off = a + SPOOL_HDR_LEN + h.len;
            }
            IO(sp, close, fd);
        }
    }
    return 0;
}

const char *spool_fsync_name(int policy)
{
    switch (policy) {
    case SPOOL_FSYNC_ALWAYS: return "always";
    case SPOOL_FSYNC_BATCH: return "batch";
    case SPOOL_FSYNC_NEVER: return "never";
    }
    return "?";
}

int spool_fsync_parse(const char *s)
{
    if (!strcmp(s, "always"))
        return SPOOL_FSYNC_ALWAYS;
    if (!strcmp(s, "batch"))
        return SPOOL_FSYNC_BATCH;
    if (!strcmp(s, "never"))
        return SPOOL_FSYNC_NEVER;
    return -1;
}
