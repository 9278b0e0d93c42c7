/* discover_elf.c - is an executable a Go program, and which Go release built it.
 * Go build info: src/debug/buildinfo/buildinfo.go (Go 1.23): a 32-byte header starting with
 * "\xff Go buildinf:", byte 14 = pointer size, byte 15 = flags (bit 1: strings inline as
 * uvarint length + bytes, Go 1.18+; otherwise two pointers to Go string headers, bit 0
 * big-endian). ELF: the ".go.buildinfo" section, else the first writable non-exec PT_LOAD. */
#include "discover_int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "base.h"
#include "loop.h"

#define BUILDINFO_SCAN_MAX (1u << 20)   /* bytes of a section/segment searched for the magic */
#define NOSECT_SCAN_MAX (256u << 10)    /* without section headers: near the segment start only */

static const char go_magic[14] = "\xff Go buildinf:";

/* ================================================================ ELF / Go build info */

typedef struct elf_ctx {
    et_read_at_fn rd;
    void *ud;
    uint64_t size;
    int is64, be;
    struct {
        uint64_t off, vaddr, filesz;
        uint32_t type, flags;
    } ph[32];
    unsigned nph;
} elf_ctx;

static uint64_t get_uint(const uint8_t *p, int n, int be)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[be ? n - 1 - i : i] << (8 * i);
    return v;
}

static int rd_exact(elf_ctx *e, uint64_t off, void *buf, size_t n)
{
    if (off > e->size || n > e->size - off)
        return -1;
    return e->rd(e->ud, off, buf, n) == (int)n ? 0 : -1;
}

static int vaddr_to_off(const elf_ctx *e, uint64_t va, uint64_t len, uint64_t *off)
{
    for (unsigned i = 0; i < e->nph; i++) {
        if (e->ph[i].type != 1 /* PT_LOAD */)
            continue;
        if (va >= e->ph[i].vaddr && va - e->ph[i].vaddr < e->ph[i].filesz &&
            len <= e->ph[i].filesz - (va - e->ph[i].vaddr)) {
            *off = e->ph[i].off + (va - e->ph[i].vaddr);
            return 0;
        }
    }
    return -1;
}

static void clean_version(char *ver)
{
    /* "go1.23.4" or "devel go1.24-abcdef ..." ; anything unprintable means we misread. */
    for (char *c = ver; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) {
            ver[0] = 0;
            return;
        }
    if (strncmp(ver, "go", 2) != 0 && strncmp(ver, "devel", 5) != 0)
        ver[0] = 0;
}

/* The blob at file offset `at` (magic already verified). */
static void read_blob_version(elf_ctx *e, uint64_t at, char *ver, size_t vsz)
{
    uint8_t h[48];
    ver[0] = 0;
    size_t hn = (size_t)ET_MIN((uint64_t)sizeof(h), e->size - at);
    if (hn < 32 || rd_exact(e, at, h, hn) < 0)
        return;
    int ptrsize = h[14];
    int flags = h[15];
    char tmp[ET_GOVER_MAX];
    if (flags & 2) {
        /* Go 1.18+: uvarint length + bytes, right after the 32-byte header */
        uint64_t len = 0;
        unsigned shift = 0, i = 32;
        for (; i < hn && shift < 63; i++, shift += 7) {
            len |= (uint64_t)(h[i] & 0x7f) << shift;
            if (!(h[i] & 0x80))
                break;
        }
        if (i >= hn || len == 0 || len >= sizeof(tmp))
            return;
        if (rd_exact(e, at + i + 1, tmp, (size_t)len) < 0)
            return;
        tmp[len] = 0;
    } else {
        /* Before 1.18: pointer to a Go string header {data, len} for the version. */
        if (ptrsize != 4 && ptrsize != 8)
            return;
        int be = flags != 0;
        uint64_t sp = get_uint(h + 16, ptrsize, be);
        uint64_t off;
        uint8_t sh[16];
        if (vaddr_to_off(e, sp, (uint64_t)(2 * ptrsize), &off) < 0 || rd_exact(e, off, sh, (size_t)(2 * ptrsize)) < 0)
            return;
        uint64_t dp = get_uint(sh, ptrsize, be);
        uint64_t len = get_uint(sh + ptrsize, ptrsize, be);
        if (len == 0 || len >= sizeof(tmp))
            return;
        if (vaddr_to_off(e, dp, len, &off) < 0 || rd_exact(e, off, tmp, (size_t)len) < 0)
            return;
        tmp[len] = 0;
    }
    clean_version(tmp);
    et_strlcpy(ver, tmp, vsz);
}

/* Searches [off, off+len) for the magic at 16-byte alignment (relative to off, as Go does).
 * Returns the file offset or UINT64_MAX. */
static uint64_t find_magic(elf_ctx *e, uint64_t off, uint64_t len)
{
    uint8_t buf[16384];
    if (off >= e->size)
        return UINT64_MAX;
    len = ET_MIN(len, e->size - off);
    for (uint64_t pos = 0; pos < len; pos += sizeof(buf)) {
        size_t n = (size_t)ET_MIN((uint64_t)sizeof(buf), len - pos);
        if (rd_exact(e, off + pos, buf, n) < 0)
            return UINT64_MAX;
        for (size_t i = 0; i + sizeof(go_magic) <= n; i += 16)
            if (!memcmp(buf + i, go_magic, sizeof(go_magic)))
                return off + pos + i;
    }
    return UINT64_MAX;
}

int et_elf_go_version(et_read_at_fn rd, void *ud, uint64_t file_size, char *ver, size_t vsz)
{
    elf_ctx e;
    memset(&e, 0, sizeof(e));
    e.rd = rd;
    e.ud = ud;
    e.size = file_size;
    if (vsz)
        ver[0] = 0;
    uint8_t h[64];
    if (file_size < 52 || rd_exact(&e, 0, h, (size_t)ET_MIN(file_size, (uint64_t)64)) < 0)
        return -1;
    if (memcmp(h, "\x7f" "ELF", 4) != 0 || (h[4] != 1 && h[4] != 2) || (h[5] != 1 && h[5] != 2))
        return -1;
    e.is64 = h[4] == 2;
    e.be = h[5] == 2;
    if (e.is64 && file_size < 64)
        return -1;
    uint64_t phoff, shoff;
    unsigned phentsize, phnum, shentsize, shnum, shstrndx;
    if (e.is64) {
        phoff = get_uint(h + 0x20, 8, e.be);
        shoff = get_uint(h + 0x28, 8, e.be);
        phentsize = (unsigned)get_uint(h + 0x36, 2, e.be);
        phnum = (unsigned)get_uint(h + 0x38, 2, e.be);
        shentsize = (unsigned)get_uint(h + 0x3a, 2, e.be);
        shnum = (unsigned)get_uint(h + 0x3c, 2, e.be);
        shstrndx = (unsigned)get_uint(h + 0x3e, 2, e.be);
    } else {
        phoff = get_uint(h + 0x1c, 4, e.be);
        shoff = get_uint(h + 0x20, 4, e.be);
        phentsize = (unsigned)get_uint(h + 0x2a, 2, e.be);
        phnum = (unsigned)get_uint(h + 0x2c, 2, e.be);
        shentsize = (unsigned)get_uint(h + 0x2e, 2, e.be);
        shnum = (unsigned)get_uint(h + 0x30, 2, e.be);
        shstrndx = (unsigned)get_uint(h + 0x32, 2, e.be);
    }
    /* program headers: needed for pointer-format build info and the no-sections fallback */
    unsigned want_ph = e.is64 ? 56 : 32;
    if (phoff && phentsize >= want_ph) {
        for (unsigned i = 0; i < phnum && e.nph < ET_ARRAY_LEN(e.ph); i++) {
            uint8_t ph[56];
            if (rd_exact(&e, phoff + (uint64_t)i * phentsize, ph, want_ph) < 0)
                break;
            if (e.is64) {
                e.ph[e.nph].type = (uint32_t)get_uint(ph, 4, e.be);
                e.ph[e.nph].flags = (uint32_t)get_uint(ph + 4, 4, e.be);
                e.ph[e.nph].off = get_uint(ph + 8, 8, e.be);
                e.ph[e.nph].vaddr = get_uint(ph + 16, 8, e.be);
                e.ph[e.nph].filesz = get_uint(ph + 32, 8, e.be);
            } else {
                e.ph[e.nph].type = (uint32_t)get_uint(ph, 4, e.be);
                e.ph[e.nph].off = get_uint(ph + 4, 4, e.be);
                e.ph[e.nph].vaddr = get_uint(ph + 8, 4, e.be);
                e.ph[e.nph].filesz = get_uint(ph + 16, 4, e.be);
                e.ph[e.nph].flags = (uint32_t)get_uint(ph + 24, 4, e.be);
            }
            e.nph++;
        }
    }
    unsigned want_sh = e.is64 ? 64 : 40;
    if (shoff && shnum > 0 && shentsize >= want_sh && shstrndx < shnum) {
        uint8_t sh[64];
        if (rd_exact(&e, shoff + (uint64_t)shstrndx * shentsize, sh, want_sh) < 0)
            return 0;
        uint64_t stroff = get_uint(sh + (e.is64 ? 24 : 16), e.is64 ? 8 : 4, e.be);
        uint64_t strsz = get_uint(sh + (e.is64 ? 32 : 20), e.is64 ? 8 : 4, e.be);
        if (shnum > 4096)
            shnum = 4096;
        /* Section names and headers are read in blocks: a /proc sweep opens every executable,
         * and one pread per section would cost dozens of syscalls per binary. */
        char names[4096];
        size_t nnames = 0;
        if (strsz <= sizeof(names) && rd_exact(&e, stroff, names, (size_t)strsz) == 0)
            nnames = (size_t)strsz;
        uint8_t block[64 * 64];
        unsigned per_block = (unsigned)(sizeof(block) / shentsize), base = 0, have = 0;
        if (per_block == 0)
            return 0;
        for (unsigned i = 0; i < shnum; i++) {
            if (i >= base + have) {
                base = i;
                have = ET_MIN(per_block, shnum - i);
                if (rd_exact(&e, shoff + (uint64_t)i * shentsize, block, (size_t)have * shentsize) < 0)
                    return 0;
            }
            memcpy(sh, block + (size_t)(i - base) * shentsize, want_sh);
            uint64_t name = get_uint(sh, 4, e.be);
            uint32_t type = (uint32_t)get_uint(sh + 4, 4, e.be);
            if (type == 8 /* SHT_NOBITS */ || name + 14 > strsz)
                continue;
            char nm[14];
            if (nnames)
                memcpy(nm, names + name, sizeof(nm));
            else if (rd_exact(&e, stroff + name, nm, sizeof(nm)) < 0)
                continue;
            if (memcmp(nm, ".go.buildinfo", 14) != 0) /* includes the NUL */
                continue;
            uint64_t off = get_uint(sh + (e.is64 ? 24 : 16), e.is64 ? 8 : 4, e.be);
            uint64_t size = get_uint(sh + (e.is64 ? 32 : 20), e.is64 ? 8 : 4, e.be);
            uint64_t at = find_magic(&e, off, ET_MIN(size, (uint64_t)BUILDINFO_SCAN_MAX));
            if (at != UINT64_MAX)
                read_blob_version(&e, at, ver, vsz);
            return 1; /* the section alone marks a Go binary */
        }
        /* Sections but no .go.buildinfo: not Go (every Go release since 1.13 emits it on ELF).
         * Not scanning here keeps a /proc sweep cheap: most binaries on a gateway are not Go. */
        return 0;
    }
    /* No section headers (sstrip'ed): the first writable, non-executable PT_LOAD, near its start. */
    for (unsigned i = 0; i < e.nph; i++) {
        if (e.ph[i].type == 1 && (e.ph[i].flags & 3) == 2 /* PF_W, not PF_X */) {
            uint64_t at = find_magic(&e, e.ph[i].off, ET_MIN(e.ph[i].filesz, (uint64_t)NOSECT_SCAN_MAX));
            if (at == UINT64_MAX)
                return 0;
            read_blob_version(&e, at, ver, vsz);
            return 1;
        }
    }
    return 0;
}

struct mem_img {
    const uint8_t *p;
    size_t n;
};

static int mem_read(void *ud, uint64_t off, void *buf, size_t n)
{
    struct mem_img *m = ud;
    if (off >= m->n)
        return 0;
    size_t k = (size_t)ET_MIN((uint64_t)n, m->n - off);
    memcpy(buf, m->p + off, k);
    return (int)k;
}

int et_elf_go_version_mem(const uint8_t *img, size_t n, char *ver, size_t vsz)
{
    struct mem_img m = { img, n };
    return et_elf_go_version(mem_read, &m, n, ver, vsz);
}

static int fd_read(void *ud, uint64_t off, void *buf, size_t n)
{
    int fd = *(int *)ud;
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return (int)got;
}

/* Periodic rescans see the same executables again and again: remember verdicts by file
 * identity (device, inode, size, mtime), so a rescan costs an open+fstat per process. A
 * rebuilt binary changes size or mtime and is read afresh. */
#define EXE_CACHE 64
static struct exe_verdict {
    uint64_t dev, ino, size;
    int64_t mtime_s, mtime_ns;
    int rc;
    char ver[ET_GOVER_MAX];
} exe_cache[EXE_CACHE];
static unsigned exe_cache_n, exe_cache_next;

int et_elf_go_version_path(const char *path, char *ver, size_t vsz)
{
    if (vsz)
        ver[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        for (unsigned i = 0; i < exe_cache_n; i++) {
            struct exe_verdict *c = &exe_cache[i];
            if (c->dev == (uint64_t)st.st_dev && c->ino == (uint64_t)st.st_ino && c->size == (uint64_t)st.st_size &&
                c->mtime_s == (int64_t)st.st_mtim.tv_sec && c->mtime_ns == (int64_t)st.st_mtim.tv_nsec) {
                close(fd);
                if (vsz)
                    et_strlcpy(ver, c->ver, vsz);
                return c->rc;
            }
        }
        char v[ET_GOVER_MAX];
        rc = et_elf_go_version(fd_read, &fd, (uint64_t)st.st_size, v, sizeof(v));
        struct exe_verdict *c = &exe_cache[exe_cache_next];
        exe_cache_next = (exe_cache_next + 1) % EXE_CACHE;
        if (exe_cache_n < EXE_CACHE)
            exe_cache_n++;
        c->dev = (uint64_t)st.st_dev;
        c->ino = (uint64_t)st.st_ino;
        c->size = (uint64_t)st.st_size;
        c->mtime_s = (int64_t)st.st_mtim.tv_sec;
        c->mtime_ns = (int64_t)st.st_mtim.tv_nsec;
        c->rc = rc;
        et_strlcpy(c->ver, v, sizeof(c->ver));
        if (vsz)
            et_strlcpy(ver, v, vsz);
    }
    close(fd);
    return rc;
}

