/* discover.c - targets from the config file, from a /proc scan for Go processes with
 * listening sockets, and from Kubernetes pods (K3s/containerd) reached through their network
 * namespace.
 *
 * Formats read here, and where they are defined:
 *   - Go build info: src/debug/buildinfo/buildinfo.go (Go 1.23): a 32-byte header starting
 *     with "\xff Go buildinf:", byte 14 = pointer size, byte 15 = flags (bit 1: strings inline
 *     as uvarint length + bytes, Go 1.18+; otherwise two pointers to Go string headers, bit 0
 *     big-endian). ELF: the ".go.buildinfo" section, else the first writable non-exec PT_LOAD.
 *   - /proc/net/tcp{,6}: Linux net/ipv4/tcp_ipv4.c get_tcp4_sock() and net/ipv6/tcp_ipv6.c
 *     get_tcp6_sock(): addresses are the raw 32-bit words printed with %08X in host order.
 *   - /proc/PID/stat field 22: proc(5).
 *   - Kubernetes cgroup paths: kubelet's cgroup drivers (systemd: kubepods-<qos>-pod<uid>.slice
 *     with '-' in the uid written as '_'; cgroupfs: kubepods/<qos>/pod<uid>/<container id>).
 *   - containerd CRI annotations in the OCI config.json of each task:
 *     io.kubernetes.cri.sandbox-namespace / sandbox-name / container-name / sandbox-id.
 *   - Pyroscope pod annotations, profiles.grafana.com/<type>.scrape|.port|.path, as documented
 *     for the Pyroscope Helm chart's scrape config
 *     (https://grafana.com/docs/pyroscope/latest/deploy-kubernetes/helm/). They are pod
 *     annotations; the agent sees them only if containerd copies them into the OCI spec
 *     (its pod_annotations setting), hence "where visible". */
#include "discover.h"

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

#define MAX_LISTEN_PER_PROC 64
#define MAX_TCP_LINES 65536
#define MAX_FDS_PER_PROC 16384
#define BUILDINFO_SCAN_MAX (1u << 20)   /* bytes of a section/segment searched for the magic */
#define NOSECT_SCAN_MAX (256u << 10)    /* without section headers: near the segment start only */

static const char go_magic[14] = "\xff Go buildinf:";

/* ================================================================ small file helpers */

/* Reads at most cap-1 bytes and terminates; returns bytes read or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
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

static ssize_t readlink_s(const char *path, char *buf, size_t cap)
{
    ssize_t n = readlink(path, buf, cap - 1);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return n;
}

/* "net:[4026531840]" / "socket:[123]" -> 4026531840 / 123 */
static uint64_t bracket_number(const char *s, const char *prefix)
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

static uint64_t ns_inode(const char *path)
{
    char link[64];
    if (readlink_s(path, link, sizeof(link)) > 0) {
        uint64_t v = bracket_number(link, "net");
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

static int hexval(char c)
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
        int h = hexval(s[i]);
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

/* ================================================================ cgroup */

static int is_hexstr(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (hexval(s[i]) < 0)
            return 0;
    return n > 0;
}

static int is_uidish(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (hexval(s[i]) < 0 && s[i] != '-' && s[i] != '_')
            return 0;
    return n >= 8;
}

static void parse_kube_path(const char *path, size_t n, et_cgroup_info *out)
{
    const char *end = path + n;
    const char *seg = path;
    while (seg < end) {
        while (seg < end && *seg == '/')
            seg++;
        const char *se = seg;
        while (se < end && *se != '/')
            se++;
        size_t sl = (size_t)(se - seg);
        if (sl == 0)
            break;
        /* qos */
        static const char *const qos[] = { "besteffort", "burstable", "guaranteed" };
        for (unsigned q = 0; q < 3; q++) {
            size_t ql = strlen(qos[q]);
            if ((sl == ql && !memcmp(seg, qos[q], ql)) ||
                (sl > 9 + ql && !memcmp(seg, "kubepods-", 9) && !memcmp(seg + 9, qos[q], ql)))
                et_strlcpy(out->qos, qos[q], sizeof(out->qos));
        }
        /* pod uid: cgroupfs "pod<uid>", systemd "kubepods[-qos]-pod<uid_with_underscores>.slice" */
        const char *u = NULL;
        size_t ul = 0;
        if (sl > 3 && !memcmp(seg, "pod", 3) && is_uidish(seg + 3, sl - 3)) {
            u = seg + 3;
            ul = sl - 3;
        } else {
            /* systemd: the unit name ends at ".slice", or at ':' in "slice:runtime:id" */
            const char *ue = memchr(seg, ':', sl);
            ue = ue ? ue : se;
            if (ue - seg > 6 + 8 && !memcmp(seg, "kubepods", 8) && !memcmp(ue - 6, ".slice", 6)) {
                for (const char *q = seg; q + 4 <= ue - 6; q++) {
                    if (!memcmp(q, "-pod", 4)) {
                        u = q + 4;
                        ul = (size_t)((ue - 6) - u);
                        break;
                    }
                }
                if (u && !is_uidish(u, ul))
                    u = NULL;
            }
        }
        if (u && ul < sizeof(out->pod_uid)) {
            for (size_t i = 0; i < ul; i++)
                out->pod_uid[i] = u[i] == '_' ? '-' : u[i];
            out->pod_uid[ul] = 0;
        }
        /* container id: "cri-containerd-<id>.scope", "docker-<id>.scope", "crio-<id>.scope",
         * "...slice:cri-containerd:<id>", or a bare 64-hex segment (cgroupfs) */
        const char *c = seg;
        size_t cl = sl;
        const char *colon = memrchr(seg, ':', sl);
        if (colon) {
            c = colon + 1;
            cl = (size_t)(se - c);
        }
        if (cl > 6 && !memcmp(c + cl - 6, ".scope", 6))
            cl -= 6;
        static const struct {
            const char *prefix;
            const char *runtime;
        } rts[] = { { "cri-containerd-", "containerd" }, { "docker-", "docker" }, { "crio-", "crio" },
                    { "containerd-", "containerd" } };
        const char *rt = "";
        for (unsigned r = 0; r < ET_ARRAY_LEN(rts); r++) {
            size_t pl = strlen(rts[r].prefix);
            if (cl > pl && !memcmp(c, rts[r].prefix, pl)) {
                c += pl;
                cl -= pl;
                rt = rts[r].runtime;
                break;
            }
        }
        if (colon && !*rt && colon > seg) {
            /* "slice:cri-containerd:<id>": runtime name sits between the colons */
            const char *c0 = memrchr(seg, ':', (size_t)(colon - seg));
            if (c0 && (size_t)(colon - c0 - 1) == 14 && !memcmp(c0 + 1, "cri-containerd", 14))
                rt = "containerd";
        }
        if (cl == 64 && is_hexstr(c, cl)) {
            memcpy(out->container_id, c, 64);
            out->container_id[64] = 0;
            et_strlcpy(out->runtime, rt, sizeof(out->runtime));
        }
        seg = se;
    }
}

int et_parse_cgroup(const char *text, size_t n, et_cgroup_info *out)
{
    memset(out, 0, sizeof(*out));
    const char *p = text, *end = text + n;
    int found = 0;
    while (p < end) {
        const char *le = memchr(p, '\n', (size_t)(end - p));
        if (!le)
            le = end;
        /* "hierarchy-ID:controllers:path"; the path itself may contain ':' */
        const char *c1 = memchr(p, ':', (size_t)(le - p));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(le - c1 - 1)) : NULL;
        if (c1 && c2) {
            const char *path = c2 + 1;
            size_t pl = (size_t)(le - path);
            if (pl >= 8 && memmem(path, pl, "kubepods", 8)) {
                et_cgroup_info tmp;
                memset(&tmp, 0, sizeof(tmp));
                parse_kube_path(path, pl, &tmp);
                /* v1 lists the same path once per controller; v2 once. Keep the most complete. */
                if (!found || (tmp.container_id[0] && !out->container_id[0]) || (tmp.pod_uid[0] && !out->pod_uid[0]))
                    *out = tmp;
                found = 1;
            }
        } else if (le > p) {
            if (!found && !c1)
                return -1;
        }
        p = le + 1;
    }
    return found && (out->pod_uid[0] || out->container_id[0]) ? 1 : 0;
}

/* ================================================================ OCI config.json annotations */

typedef struct jcur {
    const char *p, *end;
    int depth;
} jcur;

static void jws(jcur *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
}

/* Reads a JSON string at j->p into out (truncating); -1 if malformed. */
static int jstr(jcur *j, char *out, size_t cap)
{
    if (j->p >= j->end || *j->p != '"')
        return -1;
    j->p++;
    size_t o = 0;
    while (j->p < j->end) {
        char c = *j->p++;
        if (c == '"') {
            if (out)
                out[o] = 0;
            return 0;
        }
        if (c == '\\') {
            if (j->p >= j->end)
                return -1;
            char e = *j->p++;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': {
                if (j->end - j->p < 4)
                    return -1;
                unsigned v = 0;
                for (int i = 0; i < 4; i++) {
                    int h = hexval(j->p[i]);
                    if (h < 0)
                        return -1;
                    v = (v << 4) | (unsigned)h;
                }
                j->p += 4;
                c = (v >= 0x20 && v < 0x7f) ? (char)v : '?';
                break;
            }
            default: c = e; break; /* \" \\ \/ */
            }
        }
        if (out && o + 1 < cap)
            out[o++] = c;
    }
    return -1;
}

/* Skips one JSON value of any kind. Nesting is capped so hostile input cannot recurse deep:
 * this is iterative over a depth counter. */
static int jskip(jcur *j)
{
    jws(j);
    if (j->p >= j->end)
        return -1;
    if (*j->p == '"')
        return jstr(j, NULL, 0);
    if (*j->p == '{' || *j->p == '[') {
        int depth = 0;
        while (j->p < j->end) {
            char c = *j->p;
            if (c == '"') {
                if (jstr(j, NULL, 0) < 0)
                    return -1;
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if (c == '}' || c == ']') {
                if (--depth == 0) {
                    j->p++;
                    return 0;
                }
            }
            j->p++;
        }
        return -1;
    }
    /* number / true / false / null */
    const char *s = j->p;
    while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']' && *j->p != ' ' && *j->p != '\n' &&
           *j->p != '\r' && *j->p != '\t')
        j->p++;
    return j->p > s ? 0 : -1;
}

int et_oci_annotations(const char *json, size_t n, et_annot_cb cb, void *ud)
{
    jcur j = { json, json + n, 0 };
    char key[256], val[256];
    /* Walk every string token; a key "annotations" followed by ':' '{' starts the object. */
    while (j.p < j.end) {
        if (*j.p != '"') {
            j.p++;
            continue;
        }
        if (jstr(&j, key, sizeof(key)) < 0)
            return -1;
        if (strcmp(key, "annotations") != 0)
            continue;
        jws(&j);
        if (j.p >= j.end || *j.p != ':')
            continue; /* a value that happens to read "annotations" */
        j.p++;
        jws(&j);
        if (j.p >= j.end || *j.p != '{')
            continue;
        j.p++;
        int count = 0;
        for (;;) {
            jws(&j);
            if (j.p >= j.end)
                return -1;
            if (*j.p == '}')
                return count;
            if (jstr(&j, key, sizeof(key)) < 0)
                return -1;
            jws(&j);
            if (j.p >= j.end || *j.p != ':')
                return -1;
            j.p++;
            jws(&j);
            if (j.p < j.end && *j.p == '"') {
                if (jstr(&j, val, sizeof(val)) < 0)
                    return -1;
                if (cb)
                    cb(ud, key, val);
                count++;
            } else if (jskip(&j) < 0) {
                return -1;
            }
            jws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (j.p < j.end && *j.p == '}')
                return count;
            return -1;
        }
    }
    return 0;
}

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

/* ================================================================ targets */

void et_discover_opts_default(et_discover_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->proc_root = "/proc";
    o->run_root = "";
    o->scan_proc = 1;
    o->confirm = 1;
    o->confirm_timeout_ms = 2000;
}

const char *et_target_source_name(int source)
{
    switch (source) {
    case ET_SRC_CONFIG: return "config";
    case ET_SRC_PROC: return "proc";
    case ET_SRC_POD: return "pod";
    default: return "?";
    }
}

static void set_identity(et_target *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_identity(et_target *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->identity, sizeof(t->identity), fmt, ap);
    va_end(ap);
    t->identity_hash = et_fnv1a_str(ET_FNV_INIT, t->identity);
}

static void set_incarnation(et_target *t, int pid, uint64_t start)
{
    t->pid = pid;
    t->start_ticks = start;
    uint64_t h = et_fnv1a(ET_FNV_INIT, "pid", 3);
    uint8_t b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)((uint64_t)(uint32_t)pid >> (8 * i));
        b[8 + i] = (uint8_t)(start >> (8 * i));
    }
    t->incarnation = et_fnv1a(h, b, sizeof(b));
}

const et_target *et_target_find(const et_target_set *s, uint64_t identity_hash)
{
    for (unsigned i = 0; i < s->n; i++)
        if (s->t[i].identity_hash == identity_hash)
            return &s->t[i];
    return NULL;
}

int et_target_url(const et_target *t, const char *what, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s%s%s", t->base_url, t->pprof_prefix, what ? what : "");
    return (n < 0 || (size_t)n >= outsz) ? -1 : 0;
}

int et_target_open_netns(const et_target *t, const char *proc_root)
{
    if (!t->foreign_netns || t->pid <= 0)
        return -1;
    char path[ET_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%d/ns/net", proc_root ? proc_root : "/proc", t->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -2 : fd;
}

static et_target *new_target(et_target_set *s)
{
    if (s->n >= ET_MAX_TARGETS) {
        s->dropped++;
        return NULL;
    }
    et_target *t = &s->t[s->n++];
    memset(t, 0, sizeof(*t));
    t->confirmed = ET_CONFIRM_SKIPPED;
    et_strlcpy(t->pprof_prefix, "/debug/pprof/", sizeof(t->pprof_prefix));
    return t;
}

/* A config URL may carry a path: "http://h:p" -> /debug/pprof/, "http://h:p/x" -> /x/debug/pprof/,
 * "http://h:p/x/debug/pprof[/]" -> that. */
static int add_config_target(et_target_set *s, const et_conf_target *ct)
{
    et_url u;
    if (!ct->url[0])
        return 0; /* no url: central settings for a discovered service of that name */
    if (et_url_parse(ct->url, &u) < 0) {
        et_warn("discover: target \"%s\": unusable url \"%s\" (http://IP:port only)", ct->name, ct->url);
        return -1;
    }
    et_target *t = new_target(s);
    if (!t)
        return -1;
    t->source = ET_SRC_CONFIG;
    et_strlcpy(t->name, ct->name, sizeof(t->name));
    set_identity(t, "config:%s", ct->name);
    if (u.family == AF_INET6)
        snprintf(t->base_url, sizeof(t->base_url), "http://[%s]:%u", u.host, (unsigned)u.port);
    else
        snprintf(t->base_url, sizeof(t->base_url), "http://%s:%u", u.host, (unsigned)u.port);
    char path[ET_HTTP_PATH_MAX];
    et_strlcpy(path, u.path, sizeof(path));
    char *q = strchr(path, '?');
    if (q)
        *q = 0;
    size_t pl = strlen(path);
    while (pl > 0 && path[pl - 1] == '/')
        path[--pl] = 0;
    if (pl + 14 >= sizeof(t->pprof_prefix)) {
        et_warn("discover: target \"%s\": url path too long", ct->name);
        s->n--;
        return -1;
    }
    if (pl >= 12 && !strcmp(path + pl - 12, "/debug/pprof"))
        snprintf(t->pprof_prefix, sizeof(t->pprof_prefix), "%.50s/", path);
    else
        snprintf(t->pprof_prefix, sizeof(t->pprof_prefix), "%.48s/debug/pprof/", path);
    t->port = u.port;
    t->profiles = ct->profiles;
    t->interval_ms = ct->interval_ms;
    snprintf(t->reason, sizeof(t->reason), "[target \"%s\"] in the config file", ct->name);
    return 0;
}

/* ---- per-process scan ---- */

typedef struct listen_sock {
    et_tcp_sock s;
    int owned;
} listen_sock;

static unsigned read_listeners(const char *path, int v6, listen_sock *ls, unsigned n, unsigned cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return n;
    char line[512];
    unsigned lines = 0;
    while (n < cap && lines++ < MAX_TCP_LINES && fgets(line, sizeof(line), f)) {
        et_tcp_sock s;
        if (et_parse_tcp_line(line, v6, &s) == 1 && s.state == 0x0A && s.inode != 0) {
            ls[n].s = s;
            ls[n].owned = 0;
            n++;
        }
    }
    fclose(f);
    return n;
}

typedef struct pod_info {
    et_cgroup_info cg;
    int in_pod;
    char ns[ET_K8S_NAME_MAX], pod[ET_K8S_NAME_MAX * 2], container[ET_K8S_NAME_MAX];
    char sandbox_id[ET_CONTAINER_ID_MAX];
    char statefile[ET_PATH_MAX + 64];
    /* Pyroscope-style annotations */
    int annotated;
    uint16_t annot_port;
    char annot_path[ET_PPROF_PREFIX_MAX];
    uint32_t annot_profiles;
    int annot_any_scrape;            /* some <type>.scrape = "true" */
    int annot_scrape_seen;           /* some <type>.scrape key at all */
} pod_info;

static void on_annotation(void *ud, const char *k, const char *v)
{
    pod_info *pi = ud;
    if (!strcmp(k, "io.kubernetes.cri.sandbox-namespace"))
        et_strlcpy(pi->ns, v, sizeof(pi->ns));
    else if (!strcmp(k, "io.kubernetes.cri.sandbox-name"))
        et_strlcpy(pi->pod, v, sizeof(pi->pod));
    else if (!strcmp(k, "io.kubernetes.cri.container-name"))
        et_strlcpy(pi->container, v, sizeof(pi->container));
    else if (!strcmp(k, "io.kubernetes.cri.sandbox-id") && strlen(v) == 64)
        et_strlcpy(pi->sandbox_id, v, sizeof(pi->sandbox_id));
    else if (!strncmp(k, "profiles.grafana.com/", 21)) {
        const char *type = k + 21;
        const char *dot = strrchr(type, '.');
        if (!dot)
            return;
        size_t tl = (size_t)(dot - type);
        const char *attr = dot + 1;
        uint32_t bit = 0;
        if (tl == 9 && !memcmp(type, "goroutine", 9))
            bit = ET_P_GOROUTINE;
        else if (tl == 6 && !memcmp(type, "memory", 6))
            bit = ET_P_HEAP;
        if (!strcmp(attr, "scrape")) {
            pi->annot_scrape_seen = 1;
            if (!strcmp(v, "true")) {
                pi->annot_any_scrape = 1;
                pi->annot_profiles |= bit;
            }
            pi->annotated = 1;
        } else if (!strcmp(attr, "port")) {
            long p = strtol(v, NULL, 10);
            if (p > 0 && p < 65536 && (!pi->annot_port || bit == ET_P_GOROUTINE))
                pi->annot_port = (uint16_t)p;
            pi->annotated = 1;
        } else if (!strcmp(attr, "path") && v[0] == '/') {
            /* ".path" names one profile's endpoint, e.g. /custom/pprof/goroutine: its
             * directory is our prefix. Only goroutine/memory paths tell us where pprof is. */
            if (bit) {
                const char *sl = strrchr(v, '/');
                size_t dl = (size_t)(sl - v) + 1;
                if (dl < sizeof(pi->annot_path)) {
                    memcpy(pi->annot_path, v, dl);
                    pi->annot_path[dl] = 0;
                }
            }
            pi->annotated = 1;
        }
    }
}

static int read_oci_state(const char *run_root, const char *id, pod_info *pi, char *found_path, size_t fpsz)
{
    static const char *const roots[] = {
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io",
        "/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io",
    };
    static char json[256 * 1024]; /* single-threaded agent: one buffer, bounded read */
    for (unsigned r = 0; r < ET_ARRAY_LEN(roots); r++) {
        char path[ET_PATH_MAX + 160];
        snprintf(path, sizeof(path), "%s%s/%s/config.json", run_root ? run_root : "", roots[r], id);
        ssize_t n = read_small(path, json, sizeof(json));
        if (n <= 0)
            continue;
        if (et_oci_annotations(json, (size_t)n, on_annotation, pi) < 0)
            et_debug("discover: %s: malformed JSON", path);
        if (found_path)
            et_strlcpy(found_path, path, fpsz);
        return 0;
    }
    return -1;
}

static void pod_lookup(const char *proc_root, const char *run_root, int pid, pod_info *pi)
{
    char path[ET_PATH_MAX + 32], text[8192];
    memset(pi, 0, sizeof(*pi));
    snprintf(path, sizeof(path), "%s/%d/cgroup", proc_root, pid);
    ssize_t n = read_small(path, text, sizeof(text));
    if (n <= 0 || et_parse_cgroup(text, (size_t)n, &pi->cg) != 1)
        return;
    pi->in_pod = 1;
    if (!pi->cg.container_id[0])
        return;
    if (read_oci_state(run_root, pi->cg.container_id, pi, pi->statefile, sizeof(pi->statefile)) < 0)
        return;
    /* Pod annotations, when the runtime copies them, may sit only on the sandbox's spec. */
    if (!pi->annotated && pi->sandbox_id[0] && strcmp(pi->sandbox_id, pi->cg.container_id) != 0) {
        pod_info sb;
        memset(&sb, 0, sizeof(sb));
        if (read_oci_state(run_root, pi->sandbox_id, &sb, NULL, 0) == 0 && sb.annotated) {
            pi->annotated = 1;
            pi->annot_port = sb.annot_port;
            pi->annot_profiles = sb.annot_profiles;
            pi->annot_any_scrape = sb.annot_any_scrape;
            pi->annot_scrape_seen = sb.annot_scrape_seen;
            memcpy(pi->annot_path, sb.annot_path, sizeof(pi->annot_path));
        }
    }
}

static void addr_to_host(const et_tcp_sock *s, char *host, size_t hsz)
{
    static const uint8_t zero[16] = { 0 };
    static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (s->family == AF_INET) {
        if (!memcmp(s->addr, zero, 4) || s->addr[0] == 127)
            et_strlcpy(host, "127.0.0.1", hsz);
        else
            inet_ntop(AF_INET, s->addr, host, (socklen_t)hsz);
        return;
    }
    if (!memcmp(s->addr, zero, 16)) {
        /* [::] listens on v6 (and v4 unless V6ONLY); ::1 works either way. */
        et_strlcpy(host, "[::1]", hsz);
        return;
    }
    if (!memcmp(s->addr, v4mapped, 12)) {
        if (!memcmp(s->addr + 12, zero, 4) || s->addr[12] == 127)
            et_strlcpy(host, "127.0.0.1", hsz);
        else
            inet_ntop(AF_INET, s->addr + 12, host, (socklen_t)hsz);
        return;
    }
    char a[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, s->addr, a, sizeof(a));
    snprintf(host, hsz, "[%s]", a);
}

static void addr_text(const et_tcp_sock *s, char *out, size_t n)
{
    char a[INET6_ADDRSTRLEN];
    inet_ntop(s->family, s->addr, a, sizeof(a));
    if (s->family == AF_INET6)
        snprintf(out, n, "[%s]:%u", a, (unsigned)s->port);
    else
        snprintf(out, n, "%s:%u", a, (unsigned)s->port);
}

/* A config target with the same port in our namespace is the same service: adopt its
 * process details instead of listing it twice. */
static et_target *match_config(et_target_set *s, uint16_t port)
{
    for (unsigned i = 0; i < s->n; i++) {
        et_target *t = &s->t[i];
        if (t->source == ET_SRC_CONFIG && t->port == port && t->pid == 0 &&
            (strstr(t->base_url, "//127.") || strstr(t->base_url, "//[::1]") || strstr(t->base_url, "//localhost")))
            return t;
    }
    return NULL;
}

/* One process being scanned. The scan is split in three so that the agent's loop can run it
 * a budget of entries at a time (et_discover_scan_step): proc_begin (exe, Go build info,
 * listeners), one readlink per fd (up to MAX_FDS_PER_PROC: a Go server may hold 16k), and
 * proc_finish (pod labels, targets). */
typedef struct proc_scan {
    int pid;
    char exe[ET_PATH_MAX];
    char ver[ET_GOVER_MAX];
    uint64_t start, ns;
    int foreign;
    listen_sock ls[MAX_LISTEN_PER_PROC];
    unsigned nls, nfd, owned;
    char fdpath[ET_PATH_MAX + 64];
    DIR *fds;
} proc_scan;

/* 1 = a Go process with listeners whose fds are to be read (c->fds open), 0 = skip it. */
static int proc_begin(et_target_set *out, const et_discover_opts *o, uint64_t self_ns, int pid, proc_scan *c)
{
    const char *root = o->proc_root;
    char path[ET_PATH_MAX + 64];
    char *exe = c->exe, *ver = c->ver;
    c->pid = pid;
    c->fds = NULL;
    c->nls = c->nfd = c->owned = 0;
    snprintf(path, sizeof(path), "%s/%d/exe", root, pid);
    if (readlink_s(path, exe, sizeof(c->exe)) <= 0) {
        if (errno == EACCES || errno == EPERM)
            out->unreadable++;
        return 0; /* kernel thread, or gone */
    }
    /* A binary replaced under a running process reads "... (deleted)"; the identity should
     * not change because of it. */
    size_t el = strlen(exe);
    if (el > 10 && !strcmp(exe + el - 10, " (deleted)"))
        exe[el - 10] = 0;
    int go = et_elf_go_version_path(path, ver, sizeof(c->ver));
    if (go != 1)
        return 0;
    out->go_procs++;

    char text[1024];
    uint64_t start = 0;
    snprintf(path, sizeof(path), "%s/%d/stat", root, pid);
    ssize_t n = read_small(path, text, sizeof(text));
    if (n > 0)
        et_parse_stat_starttime(text, (size_t)n, &start);

    c->start = start;
    snprintf(path, sizeof(path), "%s/%d/ns/net", root, pid);
    c->ns = ns_inode(path);
    c->foreign = c->ns != 0 && self_ns != 0 && c->ns != self_ns;

    snprintf(path, sizeof(path), "%s/%d/net/tcp", root, pid);
    c->nls = read_listeners(path, 0, c->ls, c->nls, MAX_LISTEN_PER_PROC);
    snprintf(path, sizeof(path), "%s/%d/net/tcp6", root, pid);
    c->nls = read_listeners(path, 1, c->ls, c->nls, MAX_LISTEN_PER_PROC);
    if (c->nls == 0)
        return 0;

    /* Which of the namespace's listeners belong to this process: its fds name socket inodes. */
    snprintf(c->fdpath, sizeof(c->fdpath), "%s/%d/fd", root, pid);
    c->fds = opendir(c->fdpath);
    if (!c->fds) {
        out->unreadable++;
        return 0;
    }
    return 1;
}

/* Reads up to budget fds of the process; 1 when its fds are all read (c->fds closed). */
static int proc_fds(proc_scan *c, unsigned *budget)
{
    struct dirent *de;
    while (*budget) {
        if (c->nfd >= MAX_FDS_PER_PROC || (de = readdir(c->fds)) == NULL) {
            closedir(c->fds);
            c->fds = NULL;
            return 1;
        }
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        c->nfd++;
        (*budget)--;
        char fdp[ET_PATH_MAX + 64 + 260], link[64];
        snprintf(fdp, sizeof(fdp), "%s/%s", c->fdpath, de->d_name);
        if (readlink_s(fdp, link, sizeof(link)) <= 0)
            continue;
        uint64_t ino = bracket_number(link, "socket");
        if (!ino)
            continue;
        for (unsigned i = 0; i < c->nls; i++)
            if (c->ls[i].s.inode == ino && !c->ls[i].owned) {
                c->ls[i].owned = 1;
                c->owned++;
            }
    }
    return 0;
}

static void proc_finish(et_target_set *out, const et_discover_opts *o, proc_scan *c)
{
    if (c->owned == 0)
        return;
    const char *root = o->proc_root;
    int pid = c->pid, foreign = c->foreign;
    const char *exe = c->exe, *ver = c->ver;
    uint64_t start = c->start, ns = c->ns;
    listen_sock *ls = c->ls;
    unsigned nls = c->nls;

    pod_info pi;
    pod_lookup(root, o->run_root, pid, &pi);
    if (pi.annotated && pi.annot_scrape_seen && !pi.annot_any_scrape) {
        /* Every profiles.grafana.com/<type>.scrape says "false": the pod opted out. */
        et_debug("discover: PID %d: pod %s/%s opted out of profiling by annotation", pid, pi.ns, pi.pod);
        return;
    }

    for (unsigned i = 0; i < nls; i++) {
        if (!ls[i].owned)
            continue;
        uint16_t port = ls[i].s.port;
        /* one candidate per port: a dual-stack pair lists it twice */
        int dup = 0;
        for (unsigned j = 0; j < i; j++)
            if (ls[j].owned && ls[j].s.port == port)
                dup = 1;
        if (dup)
            continue;
        if (pi.annotated && pi.annot_port && pi.annot_port != port)
            continue; /* annotations name the pprof port: the others are the app's */
        static const uint8_t fe80[2] = { 0xfe, 0x80 };
        if (ls[i].s.family == AF_INET6 && !memcmp(ls[i].s.addr, fe80, 2))
            continue; /* link-local needs a scope id; pprof is never served only there */
        char where[64];
        addr_text(&ls[i].s, where, sizeof(where));
        if (!foreign) {
            et_target *ct = match_config(out, port);
            if (ct) {
                set_incarnation(ct, pid, start);
                et_strlcpy(ct->exe, exe, sizeof(ct->exe));
                et_strlcpy(ct->go_version, ver, sizeof(ct->go_version));
                ct->netns_ino = ns;
                size_t rl = strlen(ct->reason);
                snprintf(ct->reason + rl, sizeof(ct->reason) - rl, "; served by PID %d (%s, %s) on %s", pid, exe,
                         ver[0] ? ver : "Go", where);
                continue;
            }
        }
        et_target *t = new_target(out);
        if (!t)
            return;
        t->source = pi.in_pod ? ET_SRC_POD : ET_SRC_PROC;
        set_incarnation(t, pid, start);
        et_strlcpy(t->exe, exe, sizeof(t->exe));
        et_strlcpy(t->go_version, ver, sizeof(t->go_version));
        t->port = port;
        t->netns_ino = ns;
        t->foreign_netns = foreign;
        char host[INET6_ADDRSTRLEN + 2];
        addr_to_host(&ls[i].s, host, sizeof(host));
        snprintf(t->base_url, sizeof(t->base_url), "http://%s:%u", host, (unsigned)port);
        const char *base = strrchr(exe, '/');
        base = base ? base + 1 : exe;
        if (pi.in_pod) {
            et_strlcpy(t->k8s_namespace, pi.ns, sizeof(t->k8s_namespace));
            et_strlcpy(t->k8s_pod, pi.pod, sizeof(t->k8s_pod));
            et_strlcpy(t->k8s_container, pi.container, sizeof(t->k8s_container));
            et_strlcpy(t->pod_uid, pi.cg.pod_uid, sizeof(t->pod_uid));
            et_strlcpy(t->container_id, pi.cg.container_id, sizeof(t->container_id));
        }
        if (pi.in_pod && pi.ns[0] && pi.pod[0]) {
            set_identity(t, "k8s:%s/%s/%s:%u", pi.ns, pi.pod, pi.container[0] ? pi.container : base, (unsigned)port);
            et_strlcpy(t->name, pi.container[0] ? pi.container : base, sizeof(t->name));
        } else if (pi.in_pod && pi.cg.pod_uid[0]) {
            /* no runtime state readable: the pod uid is stable for the pod's life */
            set_identity(t, "k8s-uid:%s/%s:%u", pi.cg.pod_uid, base, (unsigned)port);
            et_strlcpy(t->name, base, sizeof(t->name));
        } else {
            set_identity(t, "exe:%s:%u", exe, (unsigned)port);
            et_strlcpy(t->name, base, sizeof(t->name));
        }
        if (pi.annotated) {
            t->annotated = 1;
            if (pi.annot_path[0])
                et_strlcpy(t->pprof_prefix, pi.annot_path, sizeof(t->pprof_prefix));
            if (pi.annot_profiles)
                t->profiles = pi.annot_profiles;
        }
        int off = snprintf(t->reason, sizeof(t->reason), "%s ELF %s (PID %d) listens on %s", ver[0] ? ver : "Go", exe,
                           pid, where);
        if (off > 0 && (size_t)off < sizeof(t->reason) && pi.in_pod) {
            off += snprintf(t->reason + off, sizeof(t->reason) - (size_t)off, "; pod %s/%s container %s (cgroup%s)",
                            pi.ns[0] ? pi.ns : "?", pi.pod[0] ? pi.pod : pi.cg.pod_uid,
                            pi.container[0] ? pi.container : "?", pi.statefile[0] ? " + containerd config.json" : " only");
        }
        if (off > 0 && (size_t)off < sizeof(t->reason) && foreign)
            off += snprintf(t->reason + off, sizeof(t->reason) - (size_t)off, "; via its network namespace net:[%" PRIu64 "]",
                            ns);
        if (off > 0 && (size_t)off < sizeof(t->reason) && pi.annotated)
            snprintf(t->reason + off, sizeof(t->reason) - (size_t)off, "; profiles.grafana.com annotations");
    }
}

int et_discover_scan_start(et_scan_job *j, const et_config *cfg, const et_discover_opts *o, et_target_set *out)
{
    memset(j, 0, sizeof(*j));
    if (o)
        j->opts = *o;
    else
        et_discover_opts_default(&j->opts);
    j->out = out;
    memset(out, 0, sizeof(*out));
    if (cfg)
        for (uint32_t i = 0; i < cfg->ntargets && i < ET_MAX_CONF_TARGETS; i++)
            add_config_target(out, &cfg->targets[i]);
    if (!j->opts.scan_proc) {
        j->done = 1;
        return (int)out->n;
    }
    if (!j->opts.proc_root)
        j->opts.proc_root = "/proc";
    j->self_ns = j->opts.self_netns_ino ? j->opts.self_netns_ino : ns_inode("/proc/self/ns/net");
    j->self_pid = j->opts.self_pid ? j->opts.self_pid : (int)getpid();
    j->proc_dir = opendir(j->opts.proc_root);
    if (!j->proc_dir) {
        et_error("discover: cannot read %s: %s", j->opts.proc_root, strerror(errno));
        j->done = 1;
        return -1;
    }
    j->cur = malloc(sizeof(proc_scan));
    if (!j->cur) {
        closedir(j->proc_dir);
        j->proc_dir = NULL;
        j->done = 1;
        return -1;
    }
    ((proc_scan *)j->cur)->fds = NULL;
    return (int)out->n;
}

/* What a process costs before its fds, in budget entries: readlink of exe, the ELF build-info
 * read, stat, the namespace link and two listener tables. */
#define PROC_BEGIN_COST 8u

int et_discover_scan_step(et_scan_job *j, unsigned budget)
{
    if (j->done)
        return 1;
    proc_scan *c = j->cur;
    while (budget) {
        if (c->fds) {
            unsigned before = budget;
            int finished = proc_fds(c, &budget);
            j->entries += before - budget;
            if (finished)
                proc_finish(j->out, &j->opts, c);
            continue;
        }
        struct dirent *de = readdir(j->proc_dir);
        if (!de) {
            et_discover_scan_abort(j);
            return 1;
        }
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid > 0x3fffffff || pid == j->self_pid)
            continue;
        j->out->procs_scanned++;
        budget -= ET_MIN(budget, PROC_BEGIN_COST);
        j->entries += PROC_BEGIN_COST;
        proc_begin(j->out, &j->opts, j->self_ns, (int)pid, c);
    }
    return 0;
}

void et_discover_scan_abort(et_scan_job *j)
{
    proc_scan *c = j->cur;
    if (c && c->fds)
        closedir(c->fds);
    free(c);
    j->cur = NULL;
    if (j->proc_dir)
        closedir(j->proc_dir);
    j->proc_dir = NULL;
    j->done = 1;
}

int et_discover_scan(const et_config *cfg, const et_discover_opts *o, et_target_set *out)
{
    et_scan_job j;
    int n = et_discover_scan_start(&j, cfg, o, out);
    if (n < 0)
        return -1;
    while (!et_discover_scan_step(&j, UINT32_MAX))
        ;
    return (int)out->n;
}

void et_target_set_compact(et_target_set *set)
{
    unsigned w = 0;
    for (unsigned r = 0; r < set->n; r++) {
        if (set->t[r].source != ET_SRC_CONFIG && set->t[r].confirmed == ET_CONFIRM_FAILED)
            continue;
        if (w != r)
            set->t[w] = set->t[r];
        w++;
    }
    set->n = w;
}

/* ================================================================ confirmation */

static void confirm_launch(et_confirm_job *job);

static void confirm_retry(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    et_confirm_job *job = ud;
    job->retry = 0;
    confirm_launch(job);
}

static int confirm_body(void *ud, const char *buf, size_t n)
{
    et_confirm_ctx *c = ud;
    if (c->seen)
        return 0;
    /* "goroutine" may straddle two pieces: check the joint, then the piece. */
    char joint[24];
    size_t head = ET_MIN(n, (size_t)8);
    memcpy(joint, c->tail, c->ntail);
    memcpy(joint + c->ntail, buf, head);
    if (memmem(joint, c->ntail + head, "goroutine", 9) || memmem(buf, n, "goroutine", 9))
        c->seen = 1;
    /* the tail is the last 8 bytes of the stream so far, however small the pieces */
    if (n >= 8) {
        memcpy(c->tail, buf + n - 8, 8);
        c->ntail = 8;
    } else {
        size_t total = c->ntail + n, drop = total > 8 ? total - 8 : 0;
        memmove(c->tail, c->tail + drop, c->ntail - drop);
        memcpy(c->tail + c->ntail - drop, buf, n);
        c->ntail = total - drop;
    }
    return 0;
}

static void confirm_done(void *ud, const et_http_result *r)
{
    et_confirm_ctx *c = ud;
    et_confirm_job *job = c->job;
    et_target *t = &job->set->t[c->idx];
    char prefix[ET_PPROF_PREFIX_MAX];
    et_strlcpy(prefix, t->pprof_prefix, sizeof(prefix));
    if (c->netns_fd >= 0)
        close(c->netns_fd);
    c->netns_fd = -1;
    if (r->err == 0 && c->seen) {
        t->confirmed = ET_CONFIRM_OK;
        snprintf(t->confirm_msg, sizeof(t->confirm_msg), "GET %s -> %d in %u ms", prefix, r->status,
                 r->elapsed_ms);
    } else {
        t->confirmed = ET_CONFIRM_FAILED;
        if (r->err == 0)
            snprintf(t->confirm_msg, sizeof(t->confirm_msg), "GET %s -> %d but not a pprof index", prefix,
                     r->status);
        else
            snprintf(t->confirm_msg, sizeof(t->confirm_msg), "GET %.60s: %.90s", prefix, r->msg);
    }
    job->in_flight--;
    confirm_launch(job);
}

static void confirm_launch(et_confirm_job *job)
{
    while (job->next < job->set->n) {
        unsigned i = job->next;
        et_target *t = &job->set->t[i];
        if (t->confirmed != ET_CONFIRM_SKIPPED) {
            job->next++;
            continue;
        }
        et_confirm_ctx *c = &job->ctx[i];
        memset(c, 0, sizeof(*c));
        c->job = job;
        c->idx = i;
        c->netns_fd = -1;
        et_http_opts ho;
        et_http_opts_default(&ho);
        ho.connect_timeout_ms = job->timeout_ms;
        ho.idle_timeout_ms = job->timeout_ms;
        ho.total_timeout_ms = job->timeout_ms * 2;
        ho.max_body = 256 * 1024;
        if (t->foreign_netns) {
            c->netns_fd = et_target_open_netns(t, job->proc_root);
            if (c->netns_fd < 0) {
                t->confirmed = ET_CONFIRM_FAILED;
                snprintf(t->confirm_msg, sizeof(t->confirm_msg), "cannot open netns of PID %d: %s", t->pid,
                         strerror(errno));
                job->next++;
                continue;
            }
            ho.netns_fd = c->netns_fd;
        }
        char url[ET_URL_MAX + ET_PPROF_PREFIX_MAX];
        et_target_url(t, "", url, sizeof(url));
        int id = et_http_get(job->http, url, &ho, confirm_body, confirm_done, c);
        if (id == -ET_HTTP_EBUSY) {
            if (c->netns_fd >= 0)
                close(c->netns_fd);
            c->netns_fd = -1;
            /* Pool full. Our own completions launch more; if none of ours is in flight (the
             * samplers hold every slot), nothing would, so come back on a timer. */
            if (job->in_flight == 0 && !job->retry)
                job->retry = et_loop_add_timer(et_httpc_loop(job->http), 100, 0, confirm_retry, job);
            break;
        }
        job->next++;
        if (id < 0) {
            if (c->netns_fd >= 0)
                close(c->netns_fd);
            t->confirmed = ET_CONFIRM_FAILED;
            snprintf(t->confirm_msg, sizeof(t->confirm_msg), "GET %.100s: %s", url, et_http_strerror(id));
            continue;
        }
        job->in_flight++;
    }
    if (job->next >= job->set->n && job->in_flight == 0 && !job->finished) {
        job->finished = 1;
        if (job->done)
            job->done(job->ud);
    }
}

int et_discover_confirm_start(et_confirm_job *job, et_httpc *http, et_target_set *set, const char *proc_root,
                              uint32_t timeout_ms, void (*done)(void *ud), void *ud)
{
    memset(job, 0, sizeof(*job));
    job->set = set;
    job->http = http;
    job->proc_root = proc_root ? proc_root : "/proc";
    job->timeout_ms = timeout_ms ? timeout_ms : 2000;
    job->done = done;
    job->ud = ud;
    confirm_launch(job);
    return 0;
}

static void sync_confirm_done(void *ud)
{
    et_loop_stop((et_loop *)ud);
}

int et_discover_confirm(et_target_set *set, const et_discover_opts *o)
{
    et_loop *l = et_loop_create(16, 16);
    if (!l)
        return -1;
    et_httpc *h = et_httpc_create(l, 8);
    if (!h) {
        et_loop_destroy(l);
        return -1;
    }
    static et_confirm_job job; /* ~5 KB; one-shot command path, single-threaded */
    et_discover_confirm_start(&job, h, set, o ? o->proc_root : "/proc", o ? o->confirm_timeout_ms : 2000,
                              sync_confirm_done, l);
    while (!job.finished)
        if (et_loop_run(l) < 0)
            break;
    et_httpc_destroy(h);
    et_loop_destroy(l);
    et_target_set_compact(set);
    int ok = 0;
    for (unsigned i = 0; i < set->n; i++)
        ok += set->t[i].confirmed == ET_CONFIRM_OK;
    return ok;
}
