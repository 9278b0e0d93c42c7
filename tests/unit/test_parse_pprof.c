/* test_parse_pprof.c - gzipped profile.proto: real Go 1.21/1.23/1.27 goroutine, goroutineleak
 * and heap profiles, hand-built protos (unpacked repeated fields, string table first, raw
 * non-gzip), caps, chunking and bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <cmocka.h>

#include "base.h"
#include "parse_pprof.h"
#include "parse_fixture.h"

static et_gprofile gprof, gprof2;
static et_hprofile hprof, hprof2;
static et_pparser parser;

static int feed_cb(void *p, const char *buf, size_t len)
{
    return et_pparse_feed(p, buf, len);
}

static int parse_buf(et_gprofile *g, et_hprofile *h, const void *buf, size_t len, unsigned chunking, char *err)
{
    et_pparse_init(&parser, g, h);
    fixture_feed(&parser, feed_cb, buf, len, chunking);
    return et_pparse_finish(&parser, err, 128);
}

static const et_gsite *find_gsite(const et_gprofile *p, const char *func, enum et_gstate st)
{
    for (uint32_t i = 0; i < p->nsites; i++)
        if (strcmp(p->sites[i].user.func, func) == 0 && p->sites[i].state == st)
            return &p->sites[i];
    return NULL;
}

/* ---- a tiny protobuf writer for hand-built profiles ---- */
typedef struct pbw {
    uint8_t *b;
    size_t n, cap;
} pbw;

static void pb_byte(pbw *w, uint8_t c)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 256;
        w->b = realloc(w->b, w->cap);
        assert_non_null(w->b);
    }
    w->b[w->n++] = c;
}
static void pb_varint(pbw *w, uint64_t v)
{
    while (v >= 0x80) {
        pb_byte(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    pb_byte(w, (uint8_t)v);
}
static void pb_uint(pbw *w, uint32_t field, uint64_t v)
{
    pb_varint(w, (uint64_t)field << 3);
    pb_varint(w, v);
}
static void pb_bytes(pbw *w, uint32_t field, const void *d, size_t n)
{
    pb_varint(w, (uint64_t)field << 3 | 2);
    pb_varint(w, n);
    for (size_t i = 0; i < n; i++)
        pb_byte(w, ((const uint8_t *)d)[i]);
}
static void pb_msg(pbw *w, uint32_t field, pbw *sub)
{
    pb_bytes(w, field, sub->b, sub->n);
    free(sub->b);
    memset(sub, 0, sizeof(*sub));
}
static void pb_str(pbw *w, const char *s)
{
    pb_bytes(w, 6, s, strlen(s));
}

static uint8_t *gzip_buf(const uint8_t *in, size_t n, size_t *outn)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)n) + 64;
    uint8_t *out = malloc(cap);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *outn = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

/* Strings: 0 "", 1 goroutine, 2 count, 3 runtime.gopark, 4 runtime.chanrecv1, 5 main.worker,
 * 6 /src/w.go, 7 runtime/proc.go, 8 runtime/chan.go */
static const char *const gstrings[] = {"", "goroutine", "count", "runtime.gopark", "runtime.chanrecv1", "main.worker",
                                       "/src/w.go", "runtime/proc.go", "runtime/chan.go"};

static void build_goroutine_proto(pbw *w, int strings_first, int packed, int nsamples)
{
    pbw sub = {0}, sub2 = {0};
    if (strings_first)
        for (size_t i = 0; i < ET_ARRAY_LEN(gstrings); i++)
            pb_str(w, gstrings[i]);
    pb_uint(&sub, 1, 1);
    pb_uint(&sub, 2, 2);
    pb_msg(w, 1, &sub); /* sample_type goroutine/count */
    for (int s = 0; s < nsamples; s++) {
        if (packed) {
            uint8_t ids[3] = {1, 2, 3};
            pb_bytes(&sub, 1, ids, 3);
            uint8_t val[1] = {(uint8_t)(s % 100 + 1)};
            pb_bytes(&sub, 2, val, 1);
        } else {
            pb_uint(&sub, 1, 1);
            pb_uint(&sub, 1, 2);
            pb_uint(&sub, 1, 3);
            pb_uint(&sub, 2, (uint64_t)(s % 100 + 1));
        }
        pb_msg(w, 2, &sub);
    }
    /* functions 1..3, locations 1..3 (written in reverse id order: must not matter) */
    static const uint32_t fname[3] = {3, 4, 5}, ffile[3] = {7, 8, 6}, fline[3] = {400, 500, 12};
    for (int i = 2; i >= 0; i--) {
        pb_uint(&sub, 1, (uint64_t)i + 1);
        pb_uint(&sub, 2, fname[i]);
        pb_uint(&sub, 3, fname[i]);
        pb_uint(&sub, 4, ffile[i]);
        pb_msg(w, 5, &sub);
        pb_uint(&sub, 1, (uint64_t)i + 1);
        pb_uint(&sub2, 1, (uint64_t)i + 1);
        pb_uint(&sub2, 2, fline[i]);
        pb_msg(&sub, 4, &sub2);
        pb_msg(w, 4, &sub);
    }
    if (!strings_first)
        for (size_t i = 0; i < ET_ARRAY_LEN(gstrings); i++)
            pb_str(w, gstrings[i]);
}

static void test_fixtures_goroutine(void **state)
{
    (void)state;
    static const char *const names[] = {"go1.21-goroutine.pb.gz", "go1.23-goroutine.pb.gz", "go1.27-goroutine.pb.gz"};
    for (size_t f = 0; f < ET_ARRAY_LEN(names); f++) {
        size_t len;
        char *buf = fixture_load(names[f], &len);
        assert_non_null(buf);
        char err[128];
        assert_int_equal(parse_buf(&gprof, &hprof, buf, len, 0, err), ET_PP_GOROUTINE);
        assert_int_equal(gprof.debug, 0);
        assert_int_equal(gprof.kind, ET_GP_GOROUTINE);
        assert_int_equal(gprof.goroutines, 19);
        /* proto stacks keep runtime frames: channel states are known, unlike debug=1 */
        const et_gsite *s = find_gsite(&gprof, "main.leakSend", ET_G_CHAN_SEND);
        assert_non_null(s);
        assert_int_equal(s->count, 5);
        assert_int_equal(s->user.line, 17);
        assert_string_equal(s->user.file, "/tmp/gdump/main.go");
        assert_string_equal(s->stack[0], "runtime.gopark");
        assert_non_null(find_gsite(&gprof, "main.leakRecv", ET_G_CHAN_RECV));
        assert_non_null(find_gsite(&gprof, "main.leakSelect", ET_G_SELECT));
        assert_non_null(find_gsite(&gprof, "main.leakForever", ET_G_SELECT_NO_CASES));
        assert_non_null(find_gsite(&gprof, "main.lockTwice", ET_G_MUTEX));
        assert_non_null(find_gsite(&gprof, "main.wlock", ET_G_RWMUTEX_W));
        assert_non_null(find_gsite(&gprof, "main.rlock", ET_G_RWMUTEX_R));
        assert_non_null(find_gsite(&gprof, "main.condWait", ET_G_COND_WAIT));
        assert_non_null(find_gsite(&gprof, "main.wgWait", ET_G_WAITGROUP));
        assert_non_null(find_gsite(&gprof, "main.sleeper", ET_G_SLEEP));
        assert_non_null(find_gsite(&gprof, "main.main.func2", ET_G_RUNNING));
        assert_int_equal(gprof.trunc.malformed, 0);
        assert_int_equal(gprof.trunc.strings, 0);
        static const unsigned chunkings[] = {1, 2, 13, 999};
        for (size_t c = 0; c < ET_ARRAY_LEN(chunkings); c++) {
            assert_int_equal(parse_buf(&gprof2, NULL, buf, len, chunkings[c], err), ET_PP_GOROUTINE);
            assert_int_equal(gprof2.nsites, gprof.nsites);
            assert_int_equal(gprof2.goroutines, gprof.goroutines);
            for (uint32_t i = 0; i < gprof.nsites; i++) {
                assert_true(gprof2.sites[i].key == gprof.sites[i].key);
                assert_int_equal(gprof2.sites[i].count, gprof.sites[i].count);
            }
        }
        free(buf);
    }
    size_t len;
    char *buf = fixture_load("go1.27-goroutineleak.pb.gz", &len);
    assert_non_null(buf);
    char err[128];
    assert_int_equal(parse_buf(&gprof, NULL, buf, len, 0, err), ET_PP_GOROUTINE);
    assert_int_equal(gprof.kind, ET_GP_GOROUTINELEAK);
    assert_int_equal(gprof.goroutines, 16);
    const et_gsite *s = find_gsite(&gprof, "main.leakSend", ET_G_CHAN_SEND);
    assert_non_null(s);
    assert_int_equal(s->leaked_count, 5);
    free(buf);
}

static void test_keepalive_service(void **state)
{
    (void)state;
    size_t len;
    char *buf = fixture_load("go1.23-keepalive-idle-goroutine.pb.gz", &len);
    assert_non_null(buf);
    char err[128];
    assert_int_equal(parse_buf(&gprof, NULL, buf, len, 0, err), ET_PP_GOROUTINE);
    assert_int_equal(gprof.goroutines, 36);
    const et_gsite *s = find_gsite(&gprof, "net.(*netFD).Read", ET_G_IO_WAIT);
    assert_non_null(s);
    assert_int_equal(s->count, 20);
    assert_true(s->stdlib_only);
    assert_string_equal(s->stack[ET_STACK_MAX - 1], "net/http.(*conn).serve");
    s = find_gsite(&gprof, "net/http.(*persistConn).writeLoop", ET_G_SELECT);
    assert_non_null(s);
    assert_int_equal(s->count, 10);
    s = find_gsite(&gprof, "edgetrace/testsvc/internal/harness.(*Service).EveryRate.func1", ET_G_CHAN_RECV);
    assert_non_null(s);
    assert_int_equal(s->count, 2);
    /* a goroutine captured with an empty stack */
    assert_non_null(find_gsite(&gprof, "(no frames)", ET_G_UNKNOWN));
    free(buf);
}

static void test_fixtures_heap(void **state)
{
    (void)state;
    static const char *const names[] = {"go1.21-heap.pb.gz", "go1.23-heap.pb.gz", "go1.27-heap.pb.gz"};
    for (size_t f = 0; f < ET_ARRAY_LEN(names); f++) {
        size_t len;
        char *buf = fixture_load(names[f], &len);
        assert_non_null(buf);
        char err[128];
        assert_int_equal(parse_buf(&gprof, &hprof, buf, len, 0, err), ET_PP_HEAP);
        assert_int_equal(hprof.sample_rate, 4096);
        const et_hsite *s = NULL;
        for (uint32_t i = 0; i < hprof.nsites; i++)
            if (strcmp(hprof.sites[i].user.func, "main.allocate") == 0)
                s = &hprof.sites[i];
        assert_non_null(s);
        assert_int_equal(s->user.line, 31);
        /* proto values are scaled to estimates: ~200 x 4 KiB */
        assert_true(s->inuse_bytes > 4096 * 100 && s->inuse_bytes < 4096 * 400);
        assert_true(s->alloc_bytes >= s->inuse_bytes);
        assert_true(hprof.total_inuse_bytes >= s->inuse_bytes);
        assert_int_equal(parse_buf(NULL, &hprof2, buf, len, 1, err), ET_PP_HEAP);
        assert_int_equal(hprof2.nsites, hprof.nsites);
        assert_int_equal(hprof2.total_inuse_bytes, hprof.total_inuse_bytes);
        /* a heap profile where only a goroutine profile is expected */
        assert_int_equal(parse_buf(&gprof, NULL, buf, len, 0, err), -1);
        assert_non_null(strstr(err, "heap"));
        free(buf);
    }
}

/* debug=1 text is scaled like Go scales the proto: both formats give the same site values. */
static void test_heap_text_matches_proto(void **state)
{
    (void)state;
    static const char *const v[] = {"go1.21", "go1.23", "go1.27"};
    static et_hparser hp;
    for (size_t i = 0; i < ET_ARRAY_LEN(v); i++) {
        char name[64], err[128];
        size_t len;
        snprintf(name, sizeof name, "%s-heap.pb.gz", v[i]);
        char *buf = fixture_load(name, &len);
        assert_non_null(buf);
        assert_int_equal(parse_buf(NULL, &hprof, buf, len, 0, err), ET_PP_HEAP);
        free(buf);
        snprintf(name, sizeof name, "%s-heap.debug1.txt", v[i]);
        buf = fixture_load(name, &len);
        assert_non_null(buf);
        et_hparse_init(&hp, &hprof2);
        et_hparse_feed(&hp, buf, len);
        assert_int_equal(et_hparse_finish(&hp, err, sizeof err), 0);
        free(buf);
        assert_int_equal(hprof.sample_rate, hprof2.sample_rate);
        const et_hsite *a = NULL, *b = NULL;
        for (uint32_t k = 0; k < hprof.nsites; k++)
            if (strcmp(hprof.sites[k].user.func, "main.allocate") == 0)
                a = &hprof.sites[k];
        for (uint32_t k = 0; k < hprof2.nsites; k++)
            if (strcmp(hprof2.sites[k].user.func, "main.allocate") == 0)
                b = &hprof2.sites[k];
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(a->inuse_objects, b->inuse_objects);
        assert_int_equal(a->inuse_bytes, b->inuse_bytes);
        assert_int_equal(a->alloc_objects, b->alloc_objects);
        assert_int_equal(a->alloc_bytes, b->alloc_bytes);
    }
}

/* Unpacked repeated fields, string table first, ids out of order, raw (non-gzip) and gzip. */
static void test_handbuilt(void **state)
{
    (void)state;
    for (int variant = 0; variant < 4; variant++) {
        pbw w = {0};
        build_goroutine_proto(&w, variant & 1, variant & 2, 3);
        char err[128];
        for (int gz = 0; gz < 2; gz++) {
            size_t n = w.n;
            uint8_t *data = w.b;
            if (gz)
                data = gzip_buf(w.b, w.n, &n);
            for (unsigned chunking = 0; chunking < 3; chunking++) {
                assert_int_equal(parse_buf(&gprof, NULL, data, n, chunking, err), ET_PP_GOROUTINE);
                assert_int_equal(gprof.goroutines, 1 + 2 + 3);
                assert_int_equal(gprof.nsites, 1);
                const et_gsite *s = &gprof.sites[0];
                assert_int_equal(s->state, ET_G_CHAN_RECV);
                assert_string_equal(s->user.func, "main.worker");
                assert_string_equal(s->user.file, "/src/w.go");
                assert_int_equal(s->user.line, 12);
                assert_int_equal(s->nstack, 3);
                assert_string_equal(s->stack[1], "runtime.chanrecv1");
            }
            if (gz)
                free(data);
        }
        free(w.b);
    }
}

/* More samples than ET_PP_MAX_SAMPLES: the rest are dropped and counted. */
static void test_caps(void **state)
{
    (void)state;
    pbw w = {0};
    build_goroutine_proto(&w, 0, 1, ET_PP_MAX_SAMPLES + 100);
    char err[128];
    assert_int_equal(parse_buf(&gprof, NULL, w.b, w.n, 0, err), ET_PP_GOROUTINE);
    assert_int_equal(gprof.trunc.sites, 100);
    assert_int_equal(gprof.nsites, 1);
    free(w.b);

    /* a string longer than the keep limit: head as a function, tail as a file */
    pbw v = {0};
    char longname[600], longfile[600];
    memset(longname, 'f', sizeof longname);
    memcpy(longname, "main.", 5);
    longname[sizeof longname - 1] = 0;
    memset(longfile, 'd', sizeof longfile);
    longfile[0] = '/';
    strcpy(longfile + sizeof longfile - 10, "/tail.go");
    pbw sub = {0}, sub2 = {0};
    pb_uint(&sub, 1, 1);
    pb_uint(&sub, 2, 2);
    pb_msg(&v, 1, &sub);
    pb_uint(&sub, 1, 1);
    pb_uint(&sub, 2, 1);
    pb_uint(&sub2, 1, 1); /* label goroutine=count (any strings do) */
    pb_uint(&sub2, 2, 2);
    pb_msg(&sub, 3, &sub2);
    pb_msg(&v, 2, &sub);
    pb_uint(&sub, 1, 1);
    pb_uint(&sub2, 1, 1);
    pb_uint(&sub2, 2, 77);
    pb_msg(&sub, 4, &sub2);
    pb_msg(&v, 4, &sub);
    pb_uint(&sub, 1, 1);
    pb_uint(&sub, 2, 3);
    pb_uint(&sub, 4, 4);
    pb_msg(&v, 5, &sub);
    pb_str(&v, "");
    pb_str(&v, "goroutine");
    pb_str(&v, "count");
    pb_str(&v, longname);
    pb_str(&v, longfile);
    assert_int_equal(parse_buf(&gprof, NULL, v.b, v.n, 0, err), ET_PP_GOROUTINE);
    assert_int_equal(strncmp(gprof.sites[0].user.func, "main.fff", 8), 0);
    assert_int_equal(strlen(gprof.sites[0].user.file), ET_FILE_MAX - 1);
    assert_non_null(strstr(gprof.sites[0].user.file, "/tail.go"));
    assert_int_equal(gprof.sites[0].user.line, 77);
    assert_string_equal(gprof.sites[0].labels, "{\"goroutine\":\"count\"}");
    assert_true(gprof.trunc.strings > 0);
    free(v.b);
}

static void test_bad_input(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(parse_buf(&gprof, &hprof, "", 0, 0, err), -1);
    assert_string_equal(err, "empty body");
    assert_int_equal(parse_buf(&gprof, &hprof, "<", 1, 0, err), -1);
    const char *html = "<html><body>Forbidden</body></html>";
    assert_int_equal(parse_buf(&gprof, &hprof, html, strlen(html), 0, err), -1);
    assert_non_null(strstr(err, "HTML"));
    const char *text = "goroutine profile: total 3\n";
    assert_int_equal(parse_buf(&gprof, &hprof, text, strlen(text), 0, err), -1);
    assert_non_null(strstr(err, "text profile"));
    const char *garb = "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xffthis is not deflate data";
    assert_int_equal(parse_buf(&gprof, &hprof, garb, 34, 0, err), -1);
    assert_non_null(strstr(err, "gzip"));
    assert_int_equal(parse_buf(&gprof, &hprof, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 12, 0, err), -1);
    /* gzip of non-proto text */
    size_t n;
    uint8_t *gz = gzip_buf((const uint8_t *)"hello, world\n", 13, &n);
    assert_int_equal(parse_buf(&gprof, &hprof, gz, n, 0, err), -1);
    free(gz);
    /* a valid proto of an unsupported kind (cpu) */
    pbw w = {0}, sub = {0};
    pb_uint(&sub, 1, 1);
    pb_uint(&sub, 2, 2);
    pb_msg(&w, 1, &sub);
    pb_str(&w, "");
    pb_str(&w, "samples");
    pb_str(&w, "count");
    assert_int_equal(parse_buf(&gprof, &hprof, w.b, w.n, 0, err), -1);
    assert_non_null(strstr(err, "unsupported"));
    free(w.b);
    /* every truncation of a real profile: an error, never a crash */
    size_t len;
    char *buf = fixture_load("go1.27-goroutine.pb.gz", &len);
    assert_non_null(buf);
    for (size_t cut = 0; cut < len; cut += 7) {
        assert_int_equal(parse_buf(&gprof, &hprof, buf, cut, 0, err), -1);
        assert_true(err[0] != 0);
    }
    /* corrupted bytes: any verdict, no crash */
    uint32_t seed = 12345;
    for (int k = 0; k < 200; k++) {
        char *c = malloc(len);
        memcpy(c, buf, len);
        for (int j = 0; j < 3; j++)
            c[fixture_rand(&seed) % len] ^= (char)(1 + fixture_rand(&seed) % 255);
        parse_buf(&gprof, &hprof, c, len, 0, err);
        free(c);
    }
    free(buf);
    /* the uncompressed proto cut mid-message */
    pbw p = {0};
    build_goroutine_proto(&p, 0, 1, 2);
    assert_int_equal(parse_buf(&gprof, NULL, p.b, p.n - 3, 0, err), -1);
    assert_non_null(strstr(err, "truncated"));
    free(p.b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_goroutine), cmocka_unit_test(test_keepalive_service),
        cmocka_unit_test(test_fixtures_heap),      cmocka_unit_test(test_heap_text_matches_proto),
        cmocka_unit_test(test_handbuilt),          cmocka_unit_test(test_caps),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
