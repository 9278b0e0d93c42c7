/* test_discover.c - discovery against a fixture /proc tree built at runtime in a temp dir:
 * fake PID dirs (stat, cgroup, net/tcp{,6}, fd -> "socket:[N]" links, ns/net links, exe links
 * to crafted ELF images with and without Go build info), plus containerd/K3s state files.
 * Also the pure parsers on their own, and a real Go binary when the toolchain is installed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base.h"
#include "config.h"
#include "discover.h"

/* ------------------------------------------------------------------ crafted ELF images */

enum blob_fmt { BLOB_NONE, BLOB_INLINE, BLOB_POINTER };

static void put(uint8_t *b, size_t off, uint64_t v, int n, int be)
{
    for (int i = 0; i < n; i++)
        b[off + (size_t)(be ? n - 1 - i : i)] = (uint8_t)(v >> (8 * i));
}

/* Builds a minimal ELF: one RW PT_LOAD covering the file at VBASE, optional sections
 * (.go.buildinfo or .data, .shstrtab), and a build-info blob at 0x100. Returns its size. */
#define VBASE 0x400000u
static size_t build_elf(uint8_t *img, size_t cap, int is64, int be, int with_sections, int fmt, const char *ver)
{
    assert_true(cap >= 0x400);
    memset(img, 0, 0x400);
    memcpy(img, "\x7f" "ELF", 4);
    img[4] = is64 ? 2 : 1;
    img[5] = be ? 2 : 1;
    img[6] = 1;
    put(img, 16, 2, 2, be); /* ET_EXEC */
    put(img, 18, is64 ? 62 : 40, 2, be);
    size_t phoff = is64 ? 64 : 52, phsz = is64 ? 56 : 32, shsz = is64 ? 64 : 40;
    size_t shoff = 0x240;
    if (is64) {
        put(img, 0x20, phoff, 8, be);
        put(img, 0x28, with_sections ? shoff : 0, 8, be);
        put(img, 0x34, 64, 2, be);
        put(img, 0x36, phsz, 2, be);
        put(img, 0x38, 1, 2, be);
        put(img, 0x3a, shsz, 2, be);
        put(img, 0x3c, with_sections ? 3 : 0, 2, be);
        put(img, 0x3e, with_sections ? 2 : 0, 2, be);
        /* PT_LOAD, RW */
        put(img, phoff + 0, 1, 4, be);
        put(img, phoff + 4, 6, 4, be);
        put(img, phoff + 8, 0, 8, be);
        put(img, phoff + 16, VBASE, 8, be);
        put(img, phoff + 32, 0x400, 8, be);
        put(img, phoff + 40, 0x400, 8, be);
    } else {
        put(img, 0x1c, phoff, 4, be);
        put(img, 0x20, with_sections ? shoff : 0, 4, be);
        put(img, 0x28, 52, 2, be);
        put(img, 0x2a, phsz, 2, be);
        put(img, 0x2c, 1, 2, be);
        put(img, 0x2e, shsz, 2, be);
        put(img, 0x30, with_sections ? 3 : 0, 2, be);
        put(img, 0x32, with_sections ? 2 : 0, 2, be);
        put(img, phoff + 0, 1, 4, be);
        put(img, phoff + 4, 0, 4, be);
        put(img, phoff + 8, VBASE, 4, be);
        put(img, phoff + 16, 0x400, 4, be);
        put(img, phoff + 20, 0x400, 4, be);
        put(img, phoff + 24, 6, 4, be);
    }
    int ptr = is64 ? 8 : 4;
    size_t vl = strlen(ver);
    if (fmt != BLOB_NONE) {
        memcpy(img + 0x100, "\xff Go buildinf:", 14);
        img[0x100 + 14] = (uint8_t)ptr;
        if (fmt == BLOB_INLINE) {
            img[0x100 + 15] = 2;
            img[0x120] = (uint8_t)vl; /* uvarint < 128 */
            memcpy(img + 0x121, ver, vl);
            img[0x121 + vl] = 0;      /* empty modinfo */
        } else {
            img[0x100 + 15] = be ? 1 : 0;
            put(img, 0x110, VBASE + 0x180, ptr, be);       /* -> version string header */
            put(img, 0x110 + (size_t)ptr, VBASE + 0x190, ptr, be); /* -> modinfo header */
            put(img, 0x180, VBASE + 0x1a0, ptr, be);       /* {data, len} */
            put(img, 0x180 + (size_t)ptr, vl, ptr, be);
            memcpy(img + 0x1a0, ver, vl);
        }
    }
    if (with_sections) {
        static const char strtab[] = "\0.go.buildinfo\0.shstrtab\0.data";
        memcpy(img + 0x200, strtab, sizeof(strtab));
        /* [1] .go.buildinfo (name 1) or .data (name 25) at 0x100 */
        size_t s1 = shoff + shsz, s2 = shoff + 2 * shsz;
        put(img, s1 + 0, fmt == BLOB_NONE ? 25 : 1, 4, be);
        put(img, s1 + 4, 1, 4, be); /* PROGBITS */
        put(img, s2 + 0, 15, 4, be);
        put(img, s2 + 4, 3, 4, be); /* STRTAB */
        if (is64) {
            put(img, s1 + 16, VBASE + 0x100, 8, be);
            put(img, s1 + 24, 0x100, 8, be);
            put(img, s1 + 32, 0x100, 8, be);
            put(img, s2 + 24, 0x200, 8, be);
            put(img, s2 + 32, sizeof(strtab), 8, be);
        } else {
            put(img, s1 + 12, VBASE + 0x100, 4, be);
            put(img, s1 + 16, 0x100, 4, be);
            put(img, s1 + 20, 0x100, 4, be);
            put(img, s2 + 16, 0x200, 4, be);
            put(img, s2 + 20, sizeof(strtab), 4, be);
        }
    }
    return 0x400;
}

static void test_elf_buildinfo(void **state)
{
    (void)state;
    static uint8_t img[0x400];
    char ver[ET_GOVER_MAX];
    struct {
        int is64, be, sections, fmt;
        const char *ver;
        int want;
    } cases[] = {
        { 1, 0, 1, BLOB_INLINE, "go1.23.4", 1 },   /* Go 1.18+ amd64/arm64 */
        { 0, 0, 1, BLOB_INLINE, "go1.21.13", 1 },  /* Go 1.18+ armv7 */
        { 0, 0, 1, BLOB_POINTER, "go1.16.15", 1 }, /* pre-1.18, 32-bit little-endian */
        { 1, 1, 1, BLOB_POINTER, "go1.17.3", 1 },  /* pre-1.18, 64-bit big-endian */
        { 1, 0, 0, BLOB_INLINE, "go1.22.1", 1 },   /* section headers stripped */
        { 1, 0, 1, BLOB_NONE, "", 0 },             /* C program */
        { 0, 1, 0, BLOB_NONE, "", 0 },             /* stripped C program */
    };
    for (unsigned i = 0; i < ET_ARRAY_LEN(cases); i++) {
        size_t n = build_elf(img, sizeof(img), cases[i].is64, cases[i].be, cases[i].sections, cases[i].fmt, cases[i].ver);
        int rc = et_elf_go_version_mem(img, n, ver, sizeof(ver));
        if (rc != cases[i].want)
            print_message("case %u: rc %d\n", i, rc);
        assert_int_equal(rc, cases[i].want);
        assert_string_equal(ver, cases[i].ver);
        /* Every truncation is handled: no crash, and never a wrong version. */
        for (size_t cut = 0; cut < n; cut += 7) {
            rc = et_elf_go_version_mem(img, cut, ver, sizeof(ver));
            assert_true(rc >= -1 && rc <= 1);
            assert_true(ver[0] == 0 || !strcmp(ver, cases[i].ver));
        }
    }
    assert_int_equal(et_elf_go_version_mem((const uint8_t *)"#!/bin/sh\necho hi\n" "................................................"
                                           "..........", 70, ver, sizeof(ver)), -1);
    /* garbage version bytes are rejected, not reported */
    size_t n = build_elf(img, sizeof(img), 1, 0, 1, BLOB_INLINE, "go1.23.4");
    img[0x121] = 0x01;
    assert_int_equal(et_elf_go_version_mem(img, n, ver, sizeof(ver)), 1);
    assert_string_equal(ver, "");
    /* absurd pointer-format string length */
    n = build_elf(img, sizeof(img), 1, 0, 1, BLOB_POINTER, "go1.16");
    put(img, 0x188, 0xffffffffffffull, 8, 0);
    assert_int_equal(et_elf_go_version_mem(img, n, ver, sizeof(ver)), 1);
    assert_string_equal(ver, "");
}

/* A real Go toolchain binary, when the build cache has one. */
static void test_elf_real_go_binary(void **state)
{
    (void)state;
    static const char *const bins[] = { "/var/cache/edgetrace/go/1.23/bin/go", "/var/cache/edgetrace/go/1.21/bin/go" };
    int tested = 0;
    for (unsigned i = 0; i < ET_ARRAY_LEN(bins); i++) {
        if (access(bins[i], R_OK) != 0)
            continue;
        char ver[ET_GOVER_MAX];
        assert_int_equal(et_elf_go_version_path(bins[i], ver, sizeof(ver)), 1);
        assert_true(!strncmp(ver, i == 0 ? "go1.23" : "go1.21", 6));
        tested++;
    }
    /* and a C binary is not Go */
    char ver[ET_GOVER_MAX];
    if (access("/bin/sh", R_OK) == 0) {
        assert_int_equal(et_elf_go_version_path("/bin/sh", ver, sizeof(ver)), 0);
    }
    if (!tested)
        skip();
}

/* ------------------------------------------------------------------ pure parsers */

static void test_tcp_lines(void **state)
{
    (void)state;
    et_tcp_sock s;
    uint32_t w;
    char line[256];
    assert_int_equal(et_parse_tcp_line("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
                                       "timeout inode", 0, &s), 0);
    /* Build the line the way the kernel does on this host: the in-memory word, %08X. */
    uint8_t lo[4] = { 127, 0, 0, 1 };
    memcpy(&w, lo, 4);
    snprintf(line, sizeof(line), "   0: %08X:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 "
                                 "174778 1 0000000042f74c5f 100 0 0 10 0\n", w);
    assert_int_equal(et_parse_tcp_line(line, 0, &s), 1);
    assert_int_equal(s.port, 8080);
    assert_int_equal(s.state, 0x0A);
    assert_int_equal(s.inode, 174778);
    assert_memory_equal(s.addr, lo, 4);
    assert_int_equal(et_parse_tcp_line("   1: 0100007F:1F90 0100007F:C000 01 00000000:00000000 00:00000000 00000000 0 0 "
                                       "5 1", 0, &s), 1);
    assert_int_equal(s.state, 1);
    /* v6 any */
    assert_int_equal(et_parse_tcp_line("   0: 00000000000000000000000000000000:17CD 00000000000000000000000000000000:0000 0A "
                                       "00000000:00000000 00:00000000 00000000 0 0 2001 1", 1, &s), 1);
    assert_int_equal(s.port, 6093);
    assert_int_equal(s.inode, 2001);
    assert_int_equal(s.family, AF_INET6);
    /* junk */
    assert_int_equal(et_parse_tcp_line("   0: 0100007F:1F9", 0, &s), -1);
    assert_int_equal(et_parse_tcp_line("   0: XYZ", 0, &s), -1);
    assert_int_equal(et_parse_tcp_line("   0: 0100007F:1F90 00000000:0000 0A 1 2 3 4 5", 0, &s), -1);
    assert_int_equal(et_parse_tcp_line("7", 0, &s), -1);
    assert_int_equal(et_parse_tcp_line("", 0, &s), 0);
}

static void test_cgroup_forms(void **state)
{
    (void)state;
    et_cgroup_info c;
    const char *id = "4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
    char text[1024];
    /* systemd driver, cgroup v2 */
    snprintf(text, sizeof(text), "0::/kubepods.slice/kubepods-burstable.slice/"
                                 "kubepods-burstable-pod1b2c3d4e_aaaa_bbbb_cccc_111122223333.slice/cri-containerd-%s.scope\n", id);
    assert_int_equal(et_parse_cgroup(text, strlen(text), &c), 1);
    assert_string_equal(c.pod_uid, "1b2c3d4e-aaaa-bbbb-cccc-111122223333");
    assert_string_equal(c.container_id, id);
    assert_string_equal(c.runtime, "containerd");
    assert_string_equal(c.qos, "burstable");
    /* cgroupfs driver (K3s default), cgroup v1 with many controllers */
    snprintf(text, sizeof(text), "12:pids:/kubepods/besteffort/pod9f8e7d6c-1111-2222-3333-444455556666/%s\n"
                                 "11:memory:/kubepods/besteffort/pod9f8e7d6c-1111-2222-3333-444455556666/%s\n"
                                 "1:name=systemd:/kubepods/besteffort/pod9f8e7d6c-1111-2222-3333-444455556666/%s\n"
                                 "0::/\n", id, id, id);
    assert_int_equal(et_parse_cgroup(text, strlen(text), &c), 1);
    assert_string_equal(c.pod_uid, "9f8e7d6c-1111-2222-3333-444455556666");
    assert_string_equal(c.container_id, id);
    assert_string_equal(c.qos, "besteffort");
    /* guaranteed pod, "slice:runtime:id" form */
    snprintf(text, sizeof(text), "0::/kubepods.slice/kubepods-pod0a0b0c0d_1111_2222_3333_444455556666.slice:cri-containerd:%s\n",
             id);
    assert_int_equal(et_parse_cgroup(text, strlen(text), &c), 1);
    assert_string_equal(c.pod_uid, "0a0b0c0d-1111-2222-3333-444455556666");
    assert_string_equal(c.container_id, id);
    assert_string_equal(c.runtime, "containerd");
    /* not in a pod */
    const char *plain = "0::/system.slice/billing.service\n";
    assert_int_equal(et_parse_cgroup(plain, strlen(plain), &c), 0);
    assert_int_equal(et_parse_cgroup("", 0, &c), 0);
    /* junk, and a kubepods path with nothing usable */
    assert_int_equal(et_parse_cgroup("garbage without colons", 22, &c), -1);
    const char *odd = "0::/kubepods/burstable/podXYZ/notanid\n";
    assert_int_equal(et_parse_cgroup(odd, strlen(odd), &c), 0);
}

static void test_stat_starttime(void **state)
{
    (void)state;
    uint64_t st = 0;
    const char *s = "4242 (a) b) c) S 1 4242 4242 0 -1 4194560 1234 0 0 0 10 5 0 0 20 0 12 0 987654 123456789 2000 "
                    "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
    assert_int_equal(et_parse_stat_starttime(s, strlen(s), &st), 0);
    assert_int_equal(st, 987654);
    assert_int_equal(et_parse_stat_starttime("12 (x) S 1 2", 12, &st), -1);
    assert_int_equal(et_parse_stat_starttime("no paren", 8, &st), -1);
}

struct annots {
    int n;
    char last_key[256], last_val[256];
    char ns[64];
};

static void annot_cb(void *ud, const char *k, const char *v)
{
    struct annots *a = ud;
    a->n++;
    et_strlcpy(a->last_key, k, sizeof(a->last_key));
    et_strlcpy(a->last_val, v, sizeof(a->last_val));
    if (!strcmp(k, "io.kubernetes.cri.sandbox-namespace"))
        et_strlcpy(a->ns, v, sizeof(a->ns));
}

static void test_oci_annotations(void **state)
{
    (void)state;
    struct annots a;
    memset(&a, 0, sizeof(a));
    const char *j = "{\"ociVersion\":\"1.1.0\",\"process\":{\"args\":[\"/app\",\"annotations\"],\"env\":[]},"
                    "\"annotations\":{\"io.kubernetes.cri.container-type\":\"container\","
                    "\"io.kubernetes.cri.sandbox-namespace\":\"sh\\u006fp\",\"weird\":{\"nested\":[1,2,{\"a\":\"}\"}]},"
                    "\"n\":12,\"esc\\\"key\":\"v\\\\al\\nue\"},\"linux\":{}}";
    assert_int_equal(et_oci_annotations(j, strlen(j), annot_cb, &a), 3);
    assert_string_equal(a.ns, "shop");
    assert_string_equal(a.last_key, "esc\"key");
    assert_string_equal(a.last_val, "v\\al\nue");
    memset(&a, 0, sizeof(a));
    assert_int_equal(et_oci_annotations("{\"annotations\":{\"a\":\"b\"", 24, annot_cb, &a), -1);
    assert_int_equal(et_oci_annotations("{\"x\":1}", 7, annot_cb, &a), 0);
    assert_int_equal(et_oci_annotations("{\"annotations\":{\"a\" \"b\"}}", 26, annot_cb, &a), -1);
    assert_int_equal(et_oci_annotations("\"unterminated", 13, annot_cb, &a), -1);
}

/* ------------------------------------------------------------------ fixture /proc */

static char root[64];

static void wfile(const char *rel, const void *data, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    /* mkdir -p of the parent */
    for (char *p = path + strlen(root) + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void wtext(const char *rel, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wtext(const char *rel, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    wfile(rel, buf, (size_t)n);
}

static void wlink(const char *rel, const char *target)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    }
    unlink(path);
    assert_int_equal(symlink(target, path), 0);
}

static char tcp_line_buf[64][256];

/* one /proc/net/tcp line, as the kernel prints it on this host */
static const char *tcp4(int sl, const char *ip, unsigned port, unsigned st, unsigned long inode)
{
    uint8_t a[4];
    uint32_t w;
    assert_int_equal(inet_pton(AF_INET, ip, a), 1);
    memcpy(&w, a, 4);
    snprintf(tcp_line_buf[sl], sizeof(tcp_line_buf[sl]),
             "%4d: %08X:%04X 00000000:0000 %02X 00000000:00000000 00:00000000 00000000     0        0 %lu 1 "
             "0000000000000000 100 0 0 10 0\n", sl, w, port, st, inode);
    return tcp_line_buf[sl];
}

static const char *tcp6(int sl, const char *ip, unsigned port, unsigned st, unsigned long inode)
{
    uint8_t a[16];
    uint32_t w[4];
    assert_int_equal(inet_pton(AF_INET6, ip, a), 1);
    memcpy(w, a, 16);
    snprintf(tcp_line_buf[sl], sizeof(tcp_line_buf[sl]),
             "%4d: %08X%08X%08X%08X:%04X 00000000000000000000000000000000:0000 %02X 00000000:00000000 00:00000000 "
             "00000000 0 0 %lu 1 0000000000000000 100 0 0 10 0\n", sl, w[0], w[1], w[2], w[3], port, st, inode);
    return tcp_line_buf[sl];
}

#define TCP_HDR "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
#define TCP6_HDR "  sl  local_address                         remote_address                        st tx_queue rx_queue tr " \
                 "tm->when retrnsmt   uid  timeout inode\n"
#define SELF_NS 4026531840ull

static const char *CID_A = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char *SBX_A = "5555555555555555555555555555555555555555555555555555555555555555";
static const char *CID_B = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
static const char *CID_C = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

static void write_stat(int pid, const char *comm, unsigned long start)
{
    char rel[64];
    snprintf(rel, sizeof(rel), "proc/%d/stat", pid);
    wtext(rel, "%d (%s) S 1 %d %d 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 8 0 %lu 700000000 3000 18446744073709551615 1 "
               "1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n", pid, comm, pid, pid, start);
}

static void build_fixture(void)
{
    static uint8_t img[0x400];
    snprintf(root, sizeof(root), "/tmp/et-disc-XXXXXX");
    assert_non_null(mkdtemp(root));
    char abs[256];

    /* binaries */
    wfile("bin/billing", img, build_elf(img, sizeof(img), 1, 0, 1, BLOB_INLINE, "go1.23.4"));
    wfile("bin/legacy", img, build_elf(img, sizeof(img), 0, 0, 1, BLOB_POINTER, "go1.16.15"));
    wfile("bin/k3ssvc", img, build_elf(img, sizeof(img), 1, 0, 0, BLOB_INLINE, "go1.21.13"));
    wfile("bin/nginx", img, build_elf(img, sizeof(img), 1, 0, 1, BLOB_NONE, ""));
    wtext("bin/script.sh", "#!/bin/sh\nexec sleep 1000\n");

    /* PID 100: Go service in our namespace; two listeners of its own, one of another
     * process in the same namespace, an established socket, and a comm with ") " in it. */
    snprintf(abs, sizeof(abs), "%s/bin/billing", root);
    wlink("proc/100/exe", abs);
    write_stat(100, "billing) x", 5000);
    wlink("proc/100/ns/net", "net:[4026531840]");
    wtext("proc/100/cgroup", "0::/system.slice/billing.service\n");
    wtext("proc/100/net/tcp", TCP_HDR "%s", tcp4(0, "127.0.0.1", 6060, 0x0A, 1001));
    {
        char t[2048];
        snprintf(t, sizeof(t), TCP_HDR);
        strcat(t, tcp4(0, "127.0.0.1", 6060, 0x0A, 1001));
        strcat(t, tcp4(1, "0.0.0.0", 8080, 0x0A, 1002));
        strcat(t, tcp4(2, "127.0.0.1", 9999, 0x0A, 1003));
        strcat(t, tcp4(3, "127.0.0.1", 6060, 0x01, 1004));
        wtext("proc/100/net/tcp", "%s", t);
    }
    wtext("proc/100/net/tcp6", TCP6_HDR);
    wlink("proc/100/fd/0", "/dev/null");
    wlink("proc/100/fd/3", "socket:[1001]");
    wlink("proc/100/fd/4", "socket:[1002]");
    wlink("proc/100/fd/5", "socket:[1004]");
    wlink("proc/100/fd/6", "pipe:[77]");

    /* PID 200: a pre-1.18 Go binary in a pod (systemd cgroup driver, containerd), in its own
     * network namespace, with Pyroscope annotations on the sandbox naming port 6061. */
    snprintf(abs, sizeof(abs), "%s/bin/legacy", root);
    wlink("proc/200/exe", abs);
    write_stat(200, "legacy", 7000);
    wlink("proc/200/ns/net", "net:[4026532999]");
    wtext("proc/200/cgroup", "0::/kubepods.slice/kubepods-burstable.slice/"
                             "kubepods-burstable-pod1b2c3d4e_aaaa_bbbb_cccc_111122223333.slice/cri-containerd-%s.scope\n", CID_A);
    {
        char t[2048];
        snprintf(t, sizeof(t), TCP_HDR);
        strcat(t, tcp4(0, "127.0.0.1", 7070, 0x0A, 2002));
        wtext("proc/200/net/tcp", "%s", t);
        snprintf(t, sizeof(t), TCP6_HDR);
        strcat(t, tcp6(0, "::", 6061, 0x0A, 2001));
        wtext("proc/200/net/tcp6", "%s", t);
    }
    wlink("proc/200/fd/7", "socket:[2001]");
    wlink("proc/200/fd/8", "socket:[2002]");
    char rel[256];
    snprintf(rel, sizeof(rel), "run/run/containerd/io.containerd.runtime.v2.task/k8s.io/%s/config.json", CID_A);
    wtext(rel, "{\"ociVersion\":\"1.1.0\",\"process\":{\"args\":[\"/legacy\"]},\"annotations\":{"
               "\"io.kubernetes.cri.container-type\":\"container\",\"io.kubernetes.cri.container-name\":\"billing\","
               "\"io.kubernetes.cri.sandbox-id\":\"%s\",\"io.kubernetes.cri.sandbox-name\":\"billing-7d9f8-x2k4q\","
               "\"io.kubernetes.cri.sandbox-namespace\":\"shop\"}}", SBX_A);
    snprintf(rel, sizeof(rel), "run/run/containerd/io.containerd.runtime.v2.task/k8s.io/%s/config.json", SBX_A);
    wtext(rel, "{\"annotations\":{\"io.kubernetes.cri.container-type\":\"sandbox\","
               "\"profiles.grafana.com/goroutine.scrape\":\"true\",\"profiles.grafana.com/goroutine.port\":\"6061\","
               "\"profiles.grafana.com/goroutine.path\":\"/custom/debug/pprof/goroutine\","
               "\"profiles.grafana.com/memory.scrape\":\"true\",\"profiles.grafana.com/cpu.scrape\":\"false\"}}");

    /* PID 600: K3s (cgroupfs driver, /run/k3s state), a section-stripped Go binary. */
    snprintf(abs, sizeof(abs), "%s/bin/k3ssvc", root);
    wlink("proc/600/exe", abs);
    write_stat(600, "k3ssvc", 9000);
    wlink("proc/600/ns/net", "net:[4026533111]");
    wtext("proc/600/cgroup", "0::/kubepods/besteffort/pod9f8e7d6c-1111-2222-3333-444455556666/%s\n", CID_B);
    wtext("proc/600/net/tcp", TCP_HDR "%s", tcp4(0, "0.0.0.0", 6062, 0x0A, 6001));
    wlink("proc/600/fd/3", "socket:[6001]");
    snprintf(rel, sizeof(rel), "run/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/%s/config.json", CID_B);
    wtext(rel, "{\"annotations\":{\"io.kubernetes.cri.container-name\":\"edge-agent\","
               "\"io.kubernetes.cri.sandbox-name\":\"edge-0\",\"io.kubernetes.cri.sandbox-namespace\":\"iot\"}}");

    /* PID 900: a Go pod that opted out: every profiles.grafana.com .scrape is "false". */
    snprintf(abs, sizeof(abs), "%s/bin/billing", root);
    wlink("proc/900/exe", abs);
    write_stat(900, "optout", 100);
    wlink("proc/900/ns/net", "net:[4026533222]");
    wtext("proc/900/cgroup", "0::/kubepods/pod11111111-2222-3333-4444-555555555555/%s\n", CID_C);
    wtext("proc/900/net/tcp", TCP_HDR "%s", tcp4(0, "127.0.0.1", 6063, 0x0A, 9001));
    wlink("proc/900/fd/3", "socket:[9001]");
    snprintf(rel, sizeof(rel), "run/run/containerd/io.containerd.runtime.v2.task/k8s.io/%s/config.json", CID_C);
    wtext(rel, "{\"annotations\":{\"io.kubernetes.cri.sandbox-namespace\":\"ops\",\"io.kubernetes.cri.sandbox-name\":\"x\","
               "\"profiles.grafana.com/cpu.scrape\":\"false\",\"profiles.grafana.com/goroutine.scrape\":\"false\"}}");

    /* PID 300: a C server (no Go build info) with a listener: ignored. */
    snprintf(abs, sizeof(abs), "%s/bin/nginx", root);
    wlink("proc/300/exe", abs);
    write_stat(300, "nginx", 100);
    wlink("proc/300/ns/net", "net:[4026531840]");
    wtext("proc/300/net/tcp", TCP_HDR "%s", tcp4(0, "0.0.0.0", 80, 0x0A, 3001));
    wlink("proc/300/fd/3", "socket:[3001]");
    /* PID 400: a script. PID 500: a kernel thread (no exe). PID 800: Go without listeners. */
    snprintf(abs, sizeof(abs), "%s/bin/script.sh", root);
    wlink("proc/400/exe", abs);
    wtext("proc/500/stat", "500 (kworker/0:1) I 2 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n");
    snprintf(abs, sizeof(abs), "%s/bin/billing", root);
    wlink("proc/800/exe", abs);
    write_stat(800, "cli", 100);
    wtext("proc/800/net/tcp", TCP_HDR);
    /* non-PID entries */
    wtext("proc/meminfo", "MemTotal: 1 kB\n");
    wlink("proc/self", "100");
}

static void rm_rf(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static const et_target *by_port(const et_target_set *s, uint16_t port)
{
    for (unsigned i = 0; i < s->n; i++)
        if (s->t[i].port == port)
            return &s->t[i];
    return NULL;
}

static et_target_set set, set2;

static char fixture_proc[128], fixture_run[128];

/* Scan options for the fixture (the paths live in the two statics above). */
static void fixture_opts(et_discover_opts *o)
{
    snprintf(fixture_proc, sizeof(fixture_proc), "%s/proc", root);
    snprintf(fixture_run, sizeof(fixture_run), "%s/run", root);
    et_discover_opts_default(o);
    o->proc_root = fixture_proc;
    o->run_root = fixture_run;
    o->confirm = 0;
    o->self_netns_ino = SELF_NS;
    o->self_pid = 1;
}

static void scan(et_target_set *out, const et_config *cfg)
{
    et_discover_opts o;
    fixture_opts(&o);
    assert_true(et_discover_scan(cfg, &o, out) >= 0);
}

static void test_fixture_scan(void **state)
{
    (void)state;
    build_fixture();
    scan(&set, NULL);
    assert_int_equal(set.go_procs, 5); /* 100, 200, 600, 800, 900 */
    assert_int_equal(set.n, 4);        /* 6060, 8080, 6061 (annotated), 6062; 900 opted out */
    assert_null(by_port(&set, 6063));

    const et_target *a = by_port(&set, 6060);
    assert_non_null(a);
    assert_int_equal(a->source, ET_SRC_PROC);
    assert_int_equal(a->pid, 100);
    assert_int_equal(a->start_ticks, 5000);
    assert_string_equal(a->go_version, "go1.23.4");
    assert_string_equal(a->base_url, "http://127.0.0.1:6060");
    assert_int_equal(a->foreign_netns, 0);
    assert_int_equal(a->confirmed, ET_CONFIRM_SKIPPED);
    char expect[256];
    snprintf(expect, sizeof(expect), "exe:%s/bin/billing:6060", root);
    assert_string_equal(a->identity, expect);
    assert_non_null(strstr(a->reason, "listens on 127.0.0.1:6060"));
    char url[256];
    assert_int_equal(et_target_url(a, "goroutine?debug=1", url, sizeof(url)), 0);
    assert_string_equal(url, "http://127.0.0.1:6060/debug/pprof/goroutine?debug=1");
    const et_target *b = by_port(&set, 8080);
    assert_non_null(b);
    assert_string_equal(b->base_url, "http://127.0.0.1:8080"); /* 0.0.0.0 -> loopback */
    assert_null(by_port(&set, 9999)); /* same namespace, another process's socket */
    assert_null(by_port(&set, 80));   /* not Go */

    const et_target *p = by_port(&set, 6061);
    assert_non_null(p);
    assert_null(by_port(&set, 7070)); /* the annotation names 6061 */
    assert_int_equal(p->source, ET_SRC_POD);
    assert_string_equal(p->go_version, "go1.16.15");
    assert_string_equal(p->identity, "k8s:shop/billing-7d9f8-x2k4q/billing:6061");
    assert_string_equal(p->k8s_namespace, "shop");
    assert_string_equal(p->k8s_pod, "billing-7d9f8-x2k4q");
    assert_string_equal(p->k8s_container, "billing");
    assert_string_equal(p->pod_uid, "1b2c3d4e-aaaa-bbbb-cccc-111122223333");
    assert_string_equal(p->container_id, CID_A);
    assert_int_equal(p->foreign_netns, 1);
    assert_int_equal(p->netns_ino, 4026532999ull);
    assert_string_equal(p->base_url, "http://[::1]:6061");
    assert_string_equal(p->pprof_prefix, "/custom/debug/pprof/");
    assert_int_equal(p->annotated, 1);
    assert_int_equal(p->profiles, ET_P_GOROUTINE | ET_P_HEAP);
    assert_non_null(strstr(p->reason, "pod shop/billing-7d9f8-x2k4q"));
    assert_non_null(strstr(p->reason, "network namespace"));

    const et_target *k = by_port(&set, 6062);
    assert_non_null(k);
    assert_int_equal(k->source, ET_SRC_POD);
    assert_string_equal(k->identity, "k8s:iot/edge-0/edge-agent:6062");
    assert_string_equal(k->go_version, "go1.21.13");
    assert_int_equal(k->profiles, 0);

    /* identities are unique and hashed */
    for (unsigned i = 0; i < set.n; i++) {
        assert_true(set.t[i].identity_hash == et_fnv1a_str(ET_FNV_INIT, set.t[i].identity));
        assert_ptr_equal(et_target_find(&set, set.t[i].identity_hash), &set.t[i]);
        for (unsigned j = i + 1; j < set.n; j++)
            assert_string_not_equal(set.t[i].identity, set.t[j].identity);
    }
    /* the netns helper: own namespace needs none; a fixture link cannot be opened */
    assert_int_equal(et_target_open_netns(a, "/nonexistent"), -1);
    assert_int_equal(et_target_open_netns(p, "/nonexistent"), -2);
}

/* A restart keeps the identity and changes the incarnation; history is keyed by identity. */
static void test_restart_changes_incarnation_only(void **state)
{
    (void)state;
    scan(&set, NULL);
    const et_target *before = by_port(&set, 6060);
    uint64_t id = before->identity_hash, inc = before->incarnation;
    /* same PID, new start time (PID reuse after a crash loop) */
    write_stat(100, "billing) x", 6000);
    scan(&set2, NULL);
    const et_target *after = et_target_find(&set2, id);
    assert_non_null(after);
    assert_int_equal(after->start_ticks, 6000);
    assert_true(after->incarnation != inc);
    /* new PID entirely: move 100 -> 101 */
    char from[256], to[256];
    snprintf(from, sizeof(from), "%s/proc/100", root);
    snprintf(to, sizeof(to), "%s/proc/101", root);
    assert_int_equal(rename(from, to), 0);
    write_stat(101, "billing", 6500);
    scan(&set2, NULL);
    after = et_target_find(&set2, id);
    assert_non_null(after);
    assert_int_equal(after->pid, 101);
    assert_true(after->incarnation != inc);
    assert_int_equal(rename(to, from), 0);
    write_stat(100, "billing) x", 5000);
}

static void test_config_targets_merge(void **state)
{
    (void)state;
    static et_config cfg;
    et_config_defaults(&cfg);
    et_strlcpy(cfg.targets[0].name, "billing", sizeof(cfg.targets[0].name));
    et_strlcpy(cfg.targets[0].url, "http://127.0.0.1:6060", sizeof(cfg.targets[0].url));
    cfg.targets[0].profiles = ET_P_GOROUTINE;
    et_strlcpy(cfg.targets[1].name, "gateway-ui", sizeof(cfg.targets[1].name));
    et_strlcpy(cfg.targets[1].url, "http://[::1]:7000/admin", sizeof(cfg.targets[1].url));
    et_strlcpy(cfg.targets[2].name, "bad", sizeof(cfg.targets[2].name));
    et_strlcpy(cfg.targets[2].url, "https://example.com/", sizeof(cfg.targets[2].url));
    cfg.ntargets = 3;
    scan(&set, &cfg);
    const et_target *c = &set.t[0];
    assert_int_equal(c->source, ET_SRC_CONFIG);
    assert_string_equal(c->identity, "config:billing");
    assert_int_equal(c->pid, 100); /* matched to the process serving its port */
    assert_string_equal(c->go_version, "go1.23.4");
    assert_non_null(strstr(c->reason, "served by PID 100"));
    assert_int_equal(c->profiles, ET_P_GOROUTINE);
    const et_target *u = &set.t[1];
    assert_string_equal(u->identity, "config:gateway-ui");
    assert_string_equal(u->base_url, "http://[::1]:7000");
    assert_string_equal(u->pprof_prefix, "/admin/debug/pprof/");
    assert_int_equal(u->pid, 0);
    /* "bad" was refused; 6060 is not listed twice */
    unsigned n6060 = 0;
    for (unsigned i = 0; i < set.n; i++) {
        assert_string_not_equal(set.t[i].name, "bad");
        n6060 += set.t[i].port == 6060;
    }
    assert_int_equal(n6060, 1);

    /* Confirmation against nothing listening: config targets stay (marked failed), found
     * candidates are dropped. Fixture pods cannot be entered: rejected with a reason. */
    et_discover_opts o;
    et_discover_opts_default(&o);
    char proc[128];
    snprintf(proc, sizeof(proc), "%s/proc", root);
    o.proc_root = proc;
    o.confirm_timeout_ms = 300;
    unsigned before = set.n;
    int ok = et_discover_confirm(&set, &o);
    assert_true(ok >= 0);
    assert_true(set.n < before);
    for (unsigned i = 0; i < set.n; i++)
        assert_int_equal(set.t[i].source, ET_SRC_CONFIG);
    assert_int_equal(set.t[0].confirmed, ET_CONFIRM_FAILED);
    assert_true(set.t[0].confirm_msg[0] != 0);
}

/* The agent shares one client between samplers and confirmation: when other work holds every
 * slot, confirmation must wait and then finish, not stall forever. */
static int confirm_finished;
static void on_job_done(void *ud)
{
    confirm_finished = 1;
    et_loop_stop((et_loop *)ud);
}
static void hog_done(void *ud, const et_http_result *r)
{
    (void)ud;
    (void)r;
}

static void test_confirm_waits_for_busy_pool(void **state)
{
    (void)state;
    /* a listener that accepts (kernel backlog) and never answers: the hog's request sits there */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &al);
    assert_int_equal(listen(lfd, 4), 0);
    et_loop *l = et_loop_create(8, 8);
    et_httpc *h = et_httpc_create(l, 1);
    et_http_opts o;
    et_http_opts_default(&o);
    o.idle_timeout_ms = 300;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", (unsigned)ntohs(a.sin_port));
    assert_true(et_http_get(h, url, &o, NULL, hog_done, NULL) > 0); /* holds the only slot */

    static et_config cfg;
    et_config_defaults(&cfg);
    et_strlcpy(cfg.targets[0].name, "x", sizeof(cfg.targets[0].name));
    snprintf(cfg.targets[0].url, sizeof(cfg.targets[0].url), "http://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    cfg.ntargets = 1;
    et_discover_opts d;
    et_discover_opts_default(&d);
    d.scan_proc = 0;
    assert_int_equal(et_discover_scan(&cfg, &d, &set), 1);
    static et_confirm_job job;
    confirm_finished = 0;
    et_discover_confirm_start(&job, h, &set, "/proc", 200, on_job_done, l);
    assert_int_equal(confirm_finished, 0);
    uint64_t t0 = et_now_mono_ms();
    while (!confirm_finished && et_now_mono_ms() - t0 < 5000)
        et_loop_run_once(l, 100);
    assert_int_equal(confirm_finished, 1);
    assert_int_equal(set.t[0].confirmed, ET_CONFIRM_FAILED); /* silent peer: idle timeout */
    et_httpc_destroy(h);
    et_loop_destroy(l);
    close(lfd);
}

static void test_missing_proc_root(void **state)
{
    (void)state;
    et_discover_opts o;
    et_discover_opts_default(&o);
    o.proc_root = "/nonexistent/proc";
    assert_int_equal(et_discover_scan(NULL, &o, &set), -1);
    o.scan_proc = 0;
    assert_int_equal(et_discover_scan(NULL, &o, &set), 0);
}

/* A Go server with thousands of fds: the budgeted scan (what the agent's loop runs) never
 * does more than its budget per step, and finds exactly what the one-shot scan finds. */
static void test_scan_budgeted_many_fds(void **state)
{
    (void)state;
    enum { NFD = 3000, BUDGET = 100 };
    char abs[256], rel[64];
    snprintf(abs, sizeof(abs), "%s/bin/billing", root);
    wlink("proc/1000/exe", abs);
    write_stat(1000, "busy", 9000);
    wlink("proc/1000/ns/net", "net:[4026531840]");
    wtext("proc/1000/cgroup", "0::/system.slice/busy.service\n");
    wtext("proc/1000/net/tcp", TCP_HDR "%s", tcp4(0, "127.0.0.1", 6070, 0x0A, 4001));
    wtext("proc/1000/net/tcp6", TCP6_HDR);
    for (int fd = 0; fd < NFD; fd++) {
        snprintf(rel, sizeof(rel), "proc/1000/fd/%d", fd);
        wlink(rel, fd == NFD - 7 ? "socket:[4001]" : "/dev/null");
    }
    scan(&set, NULL);
    assert_non_null(by_port(&set, 6070));

    et_discover_opts o;
    fixture_opts(&o);
    et_scan_job job;
    assert_true(et_discover_scan_start(&job, NULL, &o, &set2) >= 0);
    unsigned steps = 0;
    unsigned long before = 0;
    int done;
    do {
        done = et_discover_scan_step(&job, BUDGET);
        /* a process's fixed cost may start on the last unit of a step */
        assert_true(job.entries - before <= BUDGET + 8);
        before = job.entries;
        steps++;
    } while (!done);
    assert_true(steps >= NFD / BUDGET);
    assert_int_equal(set2.n, set.n);
    assert_int_equal(set2.go_procs, set.go_procs);
    for (unsigned i = 0; i < set.n; i++)
        assert_non_null(et_target_find(&set2, set.t[i].identity_hash));
    char path[256];
    snprintf(path, sizeof(path), "%s/proc/1000", root);
    rm_rf(path);
}

static int teardown(void **state)
{
    (void)state;
    if (root[0])
        rm_rf(root);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elf_buildinfo),
        cmocka_unit_test(test_elf_real_go_binary),
        cmocka_unit_test(test_tcp_lines),
        cmocka_unit_test(test_cgroup_forms),
        cmocka_unit_test(test_stat_starttime),
        cmocka_unit_test(test_oci_annotations),
        cmocka_unit_test(test_fixture_scan),
        cmocka_unit_test(test_restart_changes_incarnation_only),
        cmocka_unit_test(test_config_targets_merge),
        cmocka_unit_test(test_confirm_waits_for_busy_pool),
        cmocka_unit_test(test_scan_budgeted_many_fds),
        cmocka_unit_test(test_missing_proc_root),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
