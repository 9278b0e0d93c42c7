/* memvfs.h - an in-memory file system under the spool's VFS (firmware/src/spool_io.h) that
 * can simulate a power cut after any call, the way SQLite's crash tests do.
 *
 * Model (what a journaling file system on flash may do at a power cut, taken at its worst
 * within POSIX):
 *  - Each inode keeps the bytes written ("cur") apart from the bytes made durable by the last
 *    fsync/fdatasync ("dur"), and which 512-byte sectors were touched since ("dirty").
 *  - The one directory keeps its names ("cur") apart from the names made durable by the last
 *    fsync of the directory, plus the create/rename/unlink operations since, in order.
 *  - A cut (mv_crash) builds the file system that would be found at the next boot: per dirty
 *    sector the new bytes, the old bytes (zeros past the old end) or garbage, a file size old
 *    or new, and a prefix of the directory operations since its last fsync (a journal commits
 *    them in order), as the loss pattern says.
 *
 * Only calls that change something count as operation points (open with create/truncate,
 * pwrite, fsync, fdatasync, ftruncate, rename, unlink): a cut after a read is the same as a
 * cut after the call before it. After each point the hook runs; the power loss test clones
 * the state there with every pattern and recovers from each clone, while the workload itself
 * carries on. Single directory, small files: enough for the spool, not a general file system. */
#ifndef ET_MEMVFS_H
#define ET_MEMVFS_H

#include "spool_io.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MV_SECTOR 512u
#define MV_NAMES 96
#define MV_NAME_LEN 24
#define MV_FDS 32
#define MV_DIROPS 512

enum { MV_CREATE, MV_RENAME, MV_UNLINK };

/* Loss patterns at a cut. */
enum {
    MV_LOSE_ALL,        /* unsynced data and directory changes gone */
    MV_KEEP_ALL,        /* everything written survives (what kill -9 tests see) */
    MV_TORN,            /* first half of the dirty sectors new, one garbage sector, rest old; half the dir ops */
    MV_RANDOM,          /* per sector new/old/garbage, size old or new, a random prefix of dir ops */
    MV_DATA_NO_DIR,     /* data survives, directory changes undone */
    MV_DIR_NO_DATA,     /* directory changes survive, unsynced data does not */
    MV_NPATTERNS
};

typedef struct mv_ino {
    uint8_t *cur, *dur, *dirty; /* dirty: one byte per sector */
    size_t cur_len, dur_len, cap, dirty_cap;
} mv_ino;

typedef struct mv_name {
    char name[MV_NAME_LEN];
    int ino;
} mv_name;

typedef struct mv_dirop {
    int kind, ino;
    char a[MV_NAME_LEN], b[MV_NAME_LEN];
} mv_dirop;

typedef struct memfs {
    mv_ino *inos;
    int ninos, inocap;
    mv_name cur[MV_NAMES], dur[MV_NAMES];
    int ncur, ndur;
    mv_dirop ops[MV_DIROPS];
    int nops;
    struct {
        int used, ino, isdir;
    } fds[MV_FDS];
    int have_dir;
    long points;                      /* operation points so far */
    void (*hook)(struct memfs *fs, void *ud);
    void *hook_ud;
    uint64_t bytes_written, syncs;
    int fail_syncs;                   /* the next this many fsync/fdatasync calls fail with EIO */
    spool_vfs vfs;
} memfs;

static uint64_t mv_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void mv_point(memfs *fs)
{
    fs->points++;
    if (fs->hook)
        fs->hook(fs, fs->hook_ud);
}

/* bounded copy of a name (snprintf here trips -Wformat-truncation at -Os) */
static void mv_setname(char *dst, const char *src)
{
    size_t i = 0;
    for (; i + 1 < MV_NAME_LEN && src[i]; i++)
        dst[i] = src[i];
    dst[i] = 0;
}

static const char *mv_base(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int mv_lookup(const memfs *fs, const char *name)
{
    for (int i = 0; i < fs->ncur; i++)
        if (!strcmp(fs->cur[i].name, name))
            return i;
    return -1;
}

static void mv_reserve(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    uint8_t *q = realloc(*p, n);
    if (!q)
        abort();
    memset(q + *cap, 0, n - *cap);
    *p = q;
    *cap = n;
}

static void mv_mark(mv_ino *f, size_t from, size_t to)
{
    if (to <= from)
        return;
    size_t last = (to - 1) / MV_SECTOR + 1;
    mv_reserve(&f->dirty, &f->dirty_cap, last);
    for (size_t s = from / MV_SECTOR; s < last; s++)
        f->dirty[s] = 1;
}

static int mv_new_ino(memfs *fs)
{
    if (fs->ninos == fs->inocap) {
        fs->inocap = fs->inocap ? fs->inocap * 2 : 32;
        fs->inos = realloc(fs->inos, (size_t)fs->inocap * sizeof *fs->inos);
        if (!fs->inos)
            abort();
    }
    memset(&fs->inos[fs->ninos], 0, sizeof fs->inos[0]);
    return fs->ninos++;
}

static void mv_dirop_log(memfs *fs, int kind, const char *a, const char *b, int ino)
{
    if (fs->nops == MV_DIROPS)
        abort(); /* the spool fsyncs its directory far more often than this */
    mv_dirop *o = &fs->ops[fs->nops++];
    o->kind = kind;
    o->ino = ino;
    mv_setname(o->a, a);
    mv_setname(o->b, b ? b : "");
}

static void mv_apply(mv_name *names, int *n, const mv_dirop *o)
{
    int at = -1, to = -1;
    for (int i = 0; i < *n; i++) {
        if (!strcmp(names[i].name, o->a))
            at = i;
        if (o->kind == MV_RENAME && !strcmp(names[i].name, o->b))
            to = i;
    }
    if (o->kind == MV_CREATE) {
        if (at < 0 && *n < MV_NAMES) {
            mv_setname(names[*n].name, o->a);
            names[(*n)++].ino = o->ino;
        }
    } else if (o->kind == MV_UNLINK) {
        if (at >= 0)
            names[at] = names[--*n];
    } else if (at >= 0) {
        int ino = names[at].ino;
        if (to >= 0) {
            names[to].ino = ino;
            names[at] = names[--*n];
        } else {
            mv_setname(names[at].name, o->b);
        }
    }
}

/* ---- the VFS calls --------------------------------------------------------------------------- */
static int mv_fd(memfs *fs, int fd)
{
    if (fd < 0 || fd >= MV_FDS || !fs->fds[fd].used) {
        errno = EBADF;
        return -1;
    }
    return fs->fds[fd].ino;
}

static int mv_open(void *ctx, const char *path, int flags, int mode)
{
    (void)mode;
    memfs *fs = ctx;
    int slot = -1;
    for (int i = 0; i < MV_FDS && slot < 0; i++)
        if (!fs->fds[i].used)
            slot = i;
    if (slot < 0) {
        errno = EMFILE;
        return -1;
    }
    if (flags & SPOOL_O_DIRECTORY) {
        if (!fs->have_dir) {
            errno = ENOENT;
            return -1;
        }
        fs->fds[slot].used = 1;
        fs->fds[slot].isdir = 1;
        fs->fds[slot].ino = -1;
        return slot;
    }
    const char *name = mv_base(path);
    int at = mv_lookup(fs, name), ino;
    int point = 0;
    if (at >= 0) {
        if ((flags & SPOOL_O_CREAT) && (flags & SPOOL_O_EXCL)) {
            errno = EEXIST;
            return -1;
        }
        ino = fs->cur[at].ino;
        if (flags & SPOOL_O_TRUNC) {
            mv_ino *f = &fs->inos[ino];
            mv_mark(f, 0, f->cur_len);
            f->cur_len = 0;
            point = 1;
        }
    } else {
        if (!(flags & SPOOL_O_CREAT) || fs->ncur == MV_NAMES) {
            errno = ENOENT;
            return -1;
        }
        ino = mv_new_ino(fs);
        mv_setname(fs->cur[fs->ncur].name, name);
        fs->cur[fs->ncur++].ino = ino;
        mv_dirop_log(fs, MV_CREATE, name, NULL, ino);
        point = 1;
    }
    fs->fds[slot].used = 1;
    fs->fds[slot].isdir = 0;
    fs->fds[slot].ino = ino;
    if (point)
        mv_point(fs);
    return slot;
}

static int mv_close(void *ctx, int fd)
{
    memfs *fs = ctx;
    if (fd < 0 || fd >= MV_FDS || !fs->fds[fd].used) {
        errno = EBADF;
        return -1;
    }
    fs->fds[fd].used = 0;
    return 0;
}

static ssize_t mv_pread(void *ctx, int fd, void *buf, size_t n, uint64_t off)
{
    memfs *fs = ctx;
    int ino = mv_fd(fs, fd);
    if (ino < 0)
        return -1;
    mv_ino *f = &fs->inos[ino];
    if (off >= f->cur_len)
        return 0;
    size_t k = f->cur_len - off < n ? f->cur_len - (size_t)off : n;
    memcpy(buf, f->cur + off, k);
    return (ssize_t)k;
}

static ssize_t mv_pwrite(void *ctx, int fd, const void *buf, size_t n, uint64_t off)
{
    memfs *fs = ctx;
    int ino = mv_fd(fs, fd);
    if (ino < 0)
        return -1;
    mv_ino *f = &fs->inos[ino];
    size_t end = (size_t)off + n;
    mv_reserve(&f->cur, &f->cap, end);
    if (off > f->cur_len)
        memset(f->cur + f->cur_len, 0, (size_t)off - f->cur_len);
    memcpy(f->cur + off, buf, n);
    if (end > f->cur_len)
        f->cur_len = end;
    mv_mark(f, (size_t)off, end);
    fs->bytes_written += n;
    mv_point(fs);
    return (ssize_t)n;
}

static void mv_sync_ino(mv_ino *f)
{
    f->dur = realloc(f->dur, f->cur_len ? f->cur_len : 1);
    if (!f->dur)
        abort();
    memcpy(f->dur, f->cur, f->cur_len);
    f->dur_len = f->cur_len;
    if (f->dirty)
        memset(f->dirty, 0, f->dirty_cap);
}

static int mv_fsync(void *ctx, int fd)
{
    memfs *fs = ctx;
    if (fd < 0 || fd >= MV_FDS || !fs->fds[fd].used) {
        errno = EBADF;
        return -1;
    }
    if (fs->fail_syncs > 0) {
        fs->fail_syncs--;
        errno = EIO;
        return -1;
    }
    fs->syncs++;
    if (fs->fds[fd].isdir) {
        memcpy(fs->dur, fs->cur, sizeof fs->cur);
        fs->ndur = fs->ncur;
        fs->nops = 0;
    } else {
        mv_sync_ino(&fs->inos[fs->fds[fd].ino]);
    }
    mv_point(fs);
    return 0;
}

static int mv_ftruncate(void *ctx, int fd, uint64_t len)
{
    memfs *fs = ctx;
    int ino = mv_fd(fs, fd);
    if (ino < 0)
        return -1;
    mv_ino *f = &fs->inos[ino];
    mv_reserve(&f->cur, &f->cap, (size_t)len);
    if (len > f->cur_len)
        memset(f->cur + f->cur_len, 0, (size_t)len - f->cur_len);
    mv_mark(f, len < f->cur_len ? (size_t)len : f->cur_len, len < f->cur_len ? f->cur_len : (size_t)len);
    f->cur_len = (size_t)len;
    mv_point(fs);
    return 0;
}

static int mv_fsize(void *ctx, int fd, uint64_t *len)
{
    memfs *fs = ctx;
    int ino = mv_fd(fs, fd);
    if (ino < 0)
        return -1;
    *len = fs->inos[ino].cur_len;
    return 0;
}

static int mv_rename(void *ctx, const char *from, const char *to)
{
    memfs *fs = ctx;
    const char *a = mv_base(from), *b = mv_base(to);
    if (mv_lookup(fs, a) < 0) {
        errno = ENOENT;
        return -1;
    }
    mv_dirop o = {.kind = MV_RENAME};
    mv_setname(o.a, a);
    mv_setname(o.b, b);
    mv_apply(fs->cur, &fs->ncur, &o);
    mv_dirop_log(fs, MV_RENAME, a, b, -1);
    mv_point(fs);
    return 0;
}

static int mv_unlink(void *ctx, const char *path)
{
    memfs *fs = ctx;
    const char *a = mv_base(path);
    if (mv_lookup(fs, a) < 0) {
        errno = ENOENT;
        return -1;
    }
    mv_dirop o = {.kind = MV_UNLINK};
    mv_setname(o.a, a);
    mv_apply(fs->cur, &fs->ncur, &o);
    mv_dirop_log(fs, MV_UNLINK, a, NULL, -1);
    mv_point(fs);
    return 0;
}

static int mv_mkdir(void *ctx, const char *path, int mode)
{
    (void)path, (void)mode;
    memfs *fs = ctx;
    if (fs->have_dir) {
        errno = EEXIST;
        return -1;
    }
    fs->have_dir = 1; /* the directory itself is taken as durable: the spool's parent is not its business */
    return 0;
}

static int mv_list(void *ctx, const char *dir, int (*cb)(void *cbctx, const char *name), void *cbctx)
{
    (void)dir;
    memfs *fs = ctx;
    if (!fs->have_dir) {
        errno = ENOENT;
        return -1;
    }
    mv_name copy[MV_NAMES]; /* the callback may unlink */
    int n = fs->ncur;
    memcpy(copy, fs->cur, sizeof copy);
    for (int i = 0; i < n; i++)
        if (cb(cbctx, copy[i].name))
            break;
    return 0;
}

static void mv_init(memfs *fs)
{
    memset(fs, 0, sizeof *fs);
    fs->vfs = (spool_vfs){.ctx = fs,
                          .threads = 0, /* not thread-safe: the spool runs its sync job inline */
                          .open = mv_open,
                          .close = mv_close,
                          .pread = mv_pread,
                          .pwrite = mv_pwrite,
                          .fsync = mv_fsync,
                          .fdatasync = mv_fsync,
                          .ftruncate = mv_ftruncate,
                          .fsize = mv_fsize,
                          .rename = mv_rename,
                          .unlink = mv_unlink,
                          .mkdir = mv_mkdir,
                          .list = mv_list};
}

static void mv_free(memfs *fs)
{
    for (int i = 0; i < fs->ninos; i++) {
        free(fs->inos[i].cur);
        free(fs->inos[i].dur);
        free(fs->inos[i].dirty);
    }
    free(fs->inos);
    fs->inos = NULL;
    fs->ninos = fs->inocap = 0;
}

/* What one inode holds after a cut, under a pattern. */
static void mv_crash_ino(const mv_ino *f, int pattern, uint64_t *rng, mv_ino *out)
{
    size_t len;
    switch (pattern) {
    case MV_LOSE_ALL:
    case MV_DIR_NO_DATA: len = f->dur_len; break;
    case MV_RANDOM: len = (mv_rand(rng) & 1) ? f->cur_len : f->dur_len; break;
    default: len = f->cur_len; break;
    }
    memset(out, 0, sizeof *out);
    mv_reserve(&out->cur, &out->cap, len ? len : 1);
    size_t nsec = (len + MV_SECTOR - 1) / MV_SECTOR, ndirty = 0, seen = 0;
    for (size_t s = 0; s < nsec; s++)
        ndirty += s < f->dirty_cap && f->dirty[s];
    for (size_t s = 0; s < nsec; s++) {
        size_t a = s * MV_SECTOR, b = a + MV_SECTOR < len ? a + MV_SECTOR : len;
        int dirty = s < f->dirty_cap && f->dirty[s];
        int choice = 0; /* 0 new, 1 old, 2 garbage */
        if (dirty) {
            switch (pattern) {
            case MV_LOSE_ALL:
            case MV_DIR_NO_DATA: choice = 1; break;
            case MV_TORN: choice = seen < (ndirty + 1) / 2 ? 0 : seen == (ndirty + 1) / 2 ? 2 : 1; break;
            case MV_RANDOM: choice = (int)(mv_rand(rng) % 3); break;
            default: choice = 0; break;
            }
            seen++;
        }
        for (size_t i = a; i < b; i++) {
            uint8_t nv = i < f->cur_len ? f->cur[i] : 0, ov = i < f->dur_len ? f->dur[i] : 0;
            out->cur[i] = !dirty || choice == 0 ? nv : choice == 1 ? ov : (uint8_t)mv_rand(rng);
        }
    }
    out->cur_len = len;
    mv_sync_ino(out);
}

/* The file system found after a power cut now, under a pattern (seeded for MV_RANDOM). */
static void mv_crash(const memfs *fs, int pattern, uint64_t seed, memfs *out)
{
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
    mv_init(out);
    out->have_dir = fs->have_dir;
    mv_name names[MV_NAMES];
    int n = fs->ndur;
    memcpy(names, fs->dur, sizeof names);
    int keep;
    switch (pattern) {
    case MV_LOSE_ALL:
    case MV_DATA_NO_DIR: keep = 0; break;
    case MV_TORN: keep = fs->nops / 2; break;
    case MV_RANDOM: keep = (int)(mv_rand(&rng) % (uint64_t)(fs->nops + 1)); break;
    default: keep = fs->nops; break;
    }
    for (int i = 0; i < keep; i++)
        mv_apply(names, &n, &fs->ops[i]);
    for (int i = 0; i < n; i++) {
        int ino = mv_new_ino(out);
        mv_crash_ino(&fs->inos[names[i].ino], pattern, &rng, &out->inos[ino]);
        mv_setname(out->cur[i].name, names[i].name);
        out->cur[i].ino = ino;
    }
    out->ncur = out->ndur = n;
    memcpy(out->dur, out->cur, sizeof out->dur);
}

static const char *mv_pattern_name(int p)
{
    static const char *names[MV_NPATTERNS] = {"lose-all", "keep-all", "torn", "random", "data-no-dir", "dir-no-data"};
    return p >= 0 && p < MV_NPATTERNS ? names[p] : "?";
}

#endif
