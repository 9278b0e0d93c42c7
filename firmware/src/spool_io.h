/* spool_io.h - the spool's file system calls, behind a small table (like SQLite's VFS).
 *
 * Why: a kill -9 cannot lose what the kernel already has, so it cannot show a missing fsync.
 * With every call the spool makes going through this table, a test can put an in-memory file
 * system underneath that keeps "written" apart from "durable" and simulates a power cut after
 * any single call (tests/unit/memvfs.h, tests/unit/test_spool_powerloss.c).
 *
 * spool_vfs_posix() is the real thing (plain syscalls). Paths are absolute or relative to the
 * process; the spool only ever uses "DIR" and "DIR/NAME". Every call returns -1 with errno set
 * on failure, like the syscall it stands for. */
#ifndef ET_SPOOL_IO_H
#define ET_SPOOL_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPOOL_O_RDONLY 0x00
#define SPOOL_O_WRONLY 0x01
#define SPOOL_O_CREAT 0x02
#define SPOOL_O_EXCL 0x04
#define SPOOL_O_TRUNC 0x08
#define SPOOL_O_DIRECTORY 0x10

typedef struct spool_vfs {
    void *ctx;
    int threads;  /* calls may come from the spool's sync thread too (spool_sync.c) */
    int (*open)(void *ctx, const char *path, int flags, int mode); /* SPOOL_O_* */
    int (*close)(void *ctx, int fd);
    ssize_t (*pread)(void *ctx, int fd, void *buf, size_t n, uint64_t off);
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t n, uint64_t off);
    int (*fsync)(void *ctx, int fd);     /* a file or the directory (makes names durable) */
    int (*fdatasync)(void *ctx, int fd);
    int (*ftruncate)(void *ctx, int fd, uint64_t len);
    int (*fsize)(void *ctx, int fd, uint64_t *len);
    int (*rename)(void *ctx, const char *from, const char *to);
    int (*unlink)(void *ctx, const char *path);
    int (*mkdir)(void *ctx, const char *path, int mode);
    /* calls cb for every name in dir ("." and ".." excluded); stops when cb returns non-zero */
    int (*list)(void *ctx, const char *dir, int (*cb)(void *cbctx, const char *name), void *cbctx);
} spool_vfs;

const spool_vfs *spool_vfs_posix(void);

#endif
