/* discover_procfs.c - the /proc text the discovery scan reads: bounded file and link reads,
 * /proc/PID/stat field 22 (proc(5)), and /proc/net/tcp{,6} lines (Linux
 * net/ipv4/tcp_ipv4.c get_tcp4_sock(), net/ipv6/tcp_ipv6.c get_tcp6_sock(): addresses are the
 * raw 32-bit words printed with %08X in host order). */
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

/* ================================================================ small file helpers */

ssize_t dsc_read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off + 1 < cap) {
        ssize_t n = read(fd, buf + off, cap - 1 - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    buf[off] = 0;
    return (ssize_t)off;
}

ssize_t dsc_readlink_s(const char *path, char *buf, size_t cap)
{
    ssize_t n = readlink(path, buf, cap - 1);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return n;
}

uint64_t dsc_bracket_number(const char *s, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (strncmp(s, prefix, pl) != 0 || s[pl] != ':' || s[pl + 1] != '[')
        return 0;
    uint64_t v = 0;
    const char *p = s + pl + 2;
    int nd = 0;
    for (; *p >= '0' && *p <= '9' && nd < 20; p++, nd++)
        v = v * 10 + (uint64_t)(*p - '0');
    if (nd == 0 || *p != ']')
        return 0;
    return v;
}

uint64_t dsc_ns_inode(const char *path)
{
    char link[64];
    if (dsc_readlink_s(path, link, sizeof(link)) > 0) {
        uint64_t v = dsc_bracket_number(link, "net");
        if (v)
            return v;
    }
    struct stat st;
    if (stat(path, &st) == 0)
        return (uint64_t)st.st_ino;
    return 0;
}

/* ================================================================ /proc/PID/stat */

int et_parse_stat_starttime(const char *text, size_t n, uint64_t *start)
{
    /* comm may contain anything, including ") "; the last ')' ends it. */
    const char *end = text + n;
    const char *rp = NULL;
    for (const char *p = text; p < end; p++)
        if (*p == ')')
            rp = p;
    if (!rp)
        return -1;
    const char *p = rp + 1;
    /* after ')' come fields 3.. ; starttime is field 22 */
    for (int field = 3; field <= 22; field++) {
        while (p < end && *p == ' ')
            p++;
        if (p >= end)
            return -1;
        if (field == 22) {
            uint64_t v = 0;
            int nd = 0;
            while (p < end && *p >= '0' && *p <= '9' && nd < 20) {
                v = v * 10 + (uint64_t)(*p - '0');
                p++;
                nd++;
            }
            if (nd == 0)
                return -1;
            *start = v;
            return 0;
        }
        while (p < end && *p != ' ')
            p++;
    }
    return -1;
}

/* ================================================================ /proc/net/tcp */

int dsc_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parses exactly `digits` hex digits into *v. */
static int hex_fixed(const char *s, int digits, uint32_t *v)
{
    uint32_t x = 0;
    for (int i = 0; i < digits; i++) {
        int h = dsc_hexval(s[i]);
        if (h < 0)
            return -1;
        x = (x << 4) | (uint32_t)h;
    }
    *v = x;
    return 0;
}

int et_parse_tcp_line(const char *line, int v6, et_tcp_sock *out)
{
    memset(out, 0, sizeof(*out));
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == 0 || *p == '\n')
        return 0;
    if (*p < '0' || *p > '9')
        return 0; /* the "sl local_address ..." header */
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p != ':')
        return -1;
    p++;
    while (*p == ' ')
        p++;
    /* local address: 8 or 32 hex digits, ':', 4 hex digits */
    int words = v6 ? 4 : 1;
    for (int w = 0; w < words; w++) {
        uint32_t x;
        if (hex_fixed(p, 8, &x) < 0)
            return -1;
        /* The kernel printed the in-memory 32-bit word with %08X: copying the parsed value
         * back into memory on the same host restores network byte order. */
        memcpy(out->addr + 4 * w, &x, 4);
        p += 8;
    }
    if (*p != ':')
        return -1;
    uint32_t port;
    if (hex_fixed(p + 1, 4, &port) < 0)
        return -1;
    out->port = (uint16_t)port;
    p += 5;
    if (*p != ' ')
        return -1;
    while (*p == ' ')
        p++;
    /* remote address: skip */
    while (*p && *p != ' ')
        p++;
    while (*p == ' ')
        p++;
    uint32_t st;
    if (hex_fixed(p, 2, &st) < 0)
        return -1;
    out->state = st;
    p += 2;
    /* tx:rx tr:when retrnsmt uid timeout inode */
    for (int f = 0; f < 5; f++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return -1;
        while (*p && *p != ' ')
            p++;
    }
    while (*p == ' ')
        p++;
    uint64_t ino = 0;
    int nd = 0;
    while (*p >= '0' && *p <= '9' && nd < 20) {
        ino = ino * 10 + (uint64_t)(*p - '0');
        p++;
        nd++;
    }
    if (nd == 0)
        return -1;
    out->inode = ino;
    out->family = v6 ? AF_INET6 : AF_INET;
    return 1;
}

