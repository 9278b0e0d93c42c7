/* spool_io.c - the real file system under the spool: plain POSIX calls (see spool_io.h). */
#include "spool_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int px_open(void *ctx, const char *path, int flags, int mode)
{
    (void)ctx;
    int f = O_CLOEXEC | ((flags & SPOOL_O_WRONLY) ? O_WRONLY : O_RDONLY);
    if (flags & SPOOL_O_CREAT)
        f |= O_CREAT;
    if (flags & SPOOL_O_EXCL)
        f |= O_EXCL;
    if (flags & SPOOL_O_TRUNC)
        f |= O_TRUNC;
    if (flags & SPOOL_O_DIRECTORY)
        f |= O_DIRECTORY;
    return open(path, f, mode);
}

static int px_close(void *ctx, int fd)
{
    (void)ctx;
    return close(fd);
}

static ssize_t px_pread(void *ctx, int fd, void *buf, size_t n, uint64_t off)
{
    (void)ctx;
    return pread(fd, buf, n, (off_t)off);
}

static ssize_t px_pwrite(void *ctx, int fd, const void *buf, size_t n, uint64_t off)
{
    (void)ctx;
    return pwrite(fd, buf, n, (off_t)off);
}

static int px_fsync(void *ctx, int fd)
{
    (void)ctx;
    return fsync(fd);
}

static int px_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    return fdatasync(fd);
}

static int px_ftruncate(void *ctx, int fd, uint64_t len)
{
    (void)ctx;
    return ftruncate(fd, (off_t)len);
}

static int px_fsize(void *ctx, int fd, uint64_t *len)
{
    (void)ctx;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    *len = st.st_size < 0 ? 0 : (uint64_t)st.st_size;
    return 0;
}

static int px_rename(void *ctx, const char *from, const char *to)
{
    (void)ctx;
    return rename(from, to);
}

static int px_unlink(void *ctx, const char *path)
{
    (void)ctx;
    return unlink(path);
}

static int px_mkdir(void *ctx, const char *path, int mode)
{
    (void)ctx;
    return mkdir(path, (mode_t)mode);
}

static int px_list(void *ctx, const char *dir, int (*cb)(void *cbctx, const char *name), void *cbctx)
{
    (void)ctx;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (cb(cbctx, de->d_name))
            break;
    }
    closedir(d);
    return 0;
}

static const spool_vfs posix_vfs = {
    .ctx = NULL,
    .threads = 1,
    .open = px_open,
    .close = px_close,
    .pread = px_pread,
    .pwrite = px_pwrite,
    .fsync = px_fsync,
    .fdatasync = px_fdatasync,
    .ftruncate = px_ftruncate,
    .fsize = px_fsize,
    .rename = px_rename,
    .unlink = px_unlink,
    .mkdir = px_mkdir,
    .list = px_list,
};

const spool_vfs *spool_vfs_posix(void) { return &posix_vfs; }
