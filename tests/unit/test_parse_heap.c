/* test_parse_heap.c - heap debug=1 profiles: sites, MemStats, caps, chunking, bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "parse_heap.h"
#include "parse_fixture.h"

static et_hprofile prof, prof2;
static et_hparser parser;

static int feed_cb(void *p, const char *buf, size_t len)
{
    return et_hparse_feed(p, buf, len);
}

static int parse_buf(et_hprofile *out, const char *buf, size_t len, unsigned chunking, char *err)
{
    et_hparse_init(&parser, out);
    fixture_feed(&parser, feed_cb, buf, len, chunking);
    return et_hparse_finish(&parser, err, 128);
}

/* Expected value of "# Key = N" straight from the text, to compare with the parser. */
static uint64_t text_value(const char *buf, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\n# %s = ", key);
    const char *p = strstr(buf, pat);
    assert_non_null(p);
    return strtoull(p + strlen(pat), NULL, 10);
}

static const et_hsite *find_site(const et_hprofile *p, const char *func, uint32_t line)
{
    for (uint32_t i = 0; i < p->nsites; i++)
        if (strcmp(p->sites[i].user.func, func) == 0 && p->sites[i].user.line == line)
            return &p->sites[i];
    return NULL;
}

static void test_fixtures(void **state)
{
    (void)state;
    static const char *const names[] = {"go1.21-heap.debug1.txt", "go1.23-heap.debug1.txt", "go1.27-heap.debug1.txt"};
    static const unsigned chunkings[] = {1, 3, 100, 5000};
    for (size_t f = 0; f < ET_ARRAY_LEN(names); f++) {
        size_t len;
        char *buf = fixture_load(names[f], &len);
        assert_non_null(buf);
        char err[128];
        assert_int_equal(parse_buf(&prof, buf, len, 0, err), 0);
        /* the header prints 2*MemProfileRate; the fixture ran with MemProfileRate=4096 */
        assert_int_equal(prof.sample_rate, 4096);
        /* totals are the sums of the (scaled) sites */
        uint64_t si = 0, sa = 0;
        for (uint32_t i = 0; i < prof.nsites; i++) {
            si += prof.sites[i].inuse_bytes;
            sa += prof.sites[i].alloc_objects;
        }
        assert_int_equal(si, prof.total_inuse_bytes);
        assert_int_equal(sa, prof.total_alloc_objects);
        /* and scaled like Go scales the proto: raw header bytes <= scaled totals */
        unsigned long long a, b, c, d;
        assert_int_equal(sscanf(buf, "heap profile: %llu: %llu [%llu: %llu]", &a, &b, &c, &d), 4);
        assert_true(prof.total_inuse_bytes >= b);
        assert_true(prof.total_alloc_objects >= c);
        /* the fixture's 200 x 4 KiB allocation site, sampled */
        const et_hsite *s = find_site(&prof, "main.allocate", 31);
        assert_non_null(s);
        /* 200 x 4 KiB (plus the growing slice) allocated there, sampled at 4096 and
         * scaled back: an estimate of the order of 200 objects, 800 KiB */
        assert_true(s->inuse_objects >= 100 && s->inuse_objects <= 300);
        assert_true(s->inuse_bytes >= 100 * 4096 && s->inuse_bytes <= 300 * 4096);
        assert_string_equal(s->user.file, "/tmp/gdump/main.go");
        /* MemStats */
        const et_memstats *ms = &prof.ms;
        assert_true(ms->present);
        assert_int_equal(ms->heap_inuse, text_value(buf, "HeapInuse"));
        assert_int_equal(ms->heap_alloc, text_value(buf, "HeapAlloc"));
        assert_int_equal(ms->heap_sys, text_value(buf, "HeapSys"));
        assert_int_equal(ms->heap_idle, text_value(buf, "HeapIdle"));
        assert_int_equal(ms->heap_released, text_value(buf, "HeapReleased"));
        assert_int_equal(ms->heap_objects, text_value(buf, "HeapObjects"));
        assert_int_equal(ms->sys, text_value(buf, "Sys"));
        assert_int_equal(ms->alloc, text_value(buf, "Alloc"));
        assert_int_equal(ms->total_alloc, text_value(buf, "TotalAlloc"));
        assert_int_equal(ms->mallocs, text_value(buf, "Mallocs"));
        assert_int_equal(ms->frees, text_value(buf, "Frees"));
        assert_int_equal(ms->next_gc, text_value(buf, "NextGC"));
        assert_int_equal(ms->last_gc_ns, text_value(buf, "LastGC"));
        assert_int_equal(ms->num_gc, text_value(buf, "NumGC"));
        assert_int_equal(ms->num_forced_gc, text_value(buf, "NumForcedGC"));
        assert_int_equal(ms->stack_inuse, text_value(buf, "Stack"));
        assert_true(ms->stack_sys >= ms->stack_inuse);
        assert_true(ms->gc_cpu_fraction > 0.0 && ms->gc_cpu_fraction < 1.0);
        /* the long PauseNs/PauseEnd lines are not counted as truncation */
        assert_int_equal(prof.trunc.lines, 0);
        assert_int_equal(prof.trunc.malformed, 0);
        assert_int_equal(prof.trunc.sites, 0);
        for (size_t c2 = 0; c2 < ET_ARRAY_LEN(chunkings); c2++) {
            assert_int_equal(parse_buf(&prof2, buf, len, chunkings[c2], err), 0);
            assert_int_equal(prof2.nsites, prof.nsites);
            assert_memory_equal(&prof2.ms, &prof.ms, sizeof(prof.ms));
            assert_memory_equal(&prof2.trunc, &prof.trunc, sizeof(prof.trunc));
            for (uint32_t i = 0; i < prof.nsites; i++) {
                assert_true(prof2.sites[i].key == prof.sites[i].key);
                assert_int_equal(prof2.sites[i].inuse_bytes, prof.sites[i].inuse_bytes);
                assert_int_equal(prof2.sites[i].alloc_bytes, prof.sites[i].alloc_bytes);
                assert_string_equal(prof2.sites[i].user.func, prof.sites[i].user.func);
            }
        }
        free(buf);
    }
}

/* More sites than ET_MAX_HSITES: the largest by inuse_bytes stay, the rest fold. */
static void test_site_cap(void **state)
{
    (void)state;
    const int n = 1000;
    char *txt = malloc((size_t)n * 160 + 4096);
    size_t len = (size_t)sprintf(txt, "heap profile: 0: 0 [0: 0] @ heap/2\n" /* rate 1: unscaled */);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        /* sizes interleaved so the big ones arrive late and must evict small ones */
        uint64_t bytes = (uint64_t)((i * 7919) % n + 1) * 64;
        total += bytes;
        len += (size_t)sprintf(txt + len, "1: %llu [2: %llu] @ 0x1 0x2\n#\t0x1\tmain.alloc%d+0x1\t/src/a.go:%d\n\n",
                               (unsigned long long)bytes, (unsigned long long)bytes * 2, i, i + 1);
    }
    char err[128];
    assert_int_equal(parse_buf(&prof, txt, len, 0, err), 0);
    assert_int_equal(prof.nsites, ET_MAX_HSITES);
    assert_true(prof.sites[ET_MAX_HSITES - 1].overflow);
    assert_true(prof.trunc.sites > 0);
    uint64_t sum = 0, min_kept = UINT64_MAX;
    for (uint32_t i = 0; i < prof.nsites; i++) {
        sum += prof.sites[i].inuse_bytes;
        if (!prof.sites[i].overflow && prof.sites[i].inuse_bytes < min_kept)
            min_kept = prof.sites[i].inuse_bytes;
    }
    assert_int_equal(sum, total); /* nothing lost, only folded */
    /* the kept ones are the top ET_MAX_HSITES-1 sizes: sizes are a permutation of 1..n * 64 */
    assert_int_equal(min_kept, (uint64_t)(n - (ET_MAX_HSITES - 1) + 1) * 64);
    free(txt);
}

static void test_merge_and_pick(void **state)
{
    (void)state;
    char err[128];
    const char *txt =
        "heap profile: 3: 300 [3: 300] @ heap/1\n"
        "1: 100 [1: 100] @ 0x1\n"
        "#\t0x1\tbytes.growSlice+0x1\t\t/go/src/bytes/buffer.go:249\n"
        "#\t0x2\tedgetrace/svc/internal/cache.(*C).Put+0x2\t/src/cache.go:40\n"
        "#\t0x3\tmain.main+0x3\t\t\t/src/main.go:9\n"
        "\n"
        "2: 200 [2: 200] @ 0x1\n"
        "#\t0x2\tedgetrace/svc/internal/cache.(*C).Put+0x2\t/src/cache.go:40\n"
        "\n"
        "0: 0 [1: 64] @ 0x4\n"
        "#\t0x4\tencoding/json.Marshal+0x4\t/go/src/encoding/json/encode.go:100\n"
        "\n"
        "0: 0 [0: 0] @ 0x5\n" /* empty bucket: no site */
        "#\t0x5\tmain.nothing+0x4\t/src/n.go:1\n"
        "\n";
    assert_int_equal(parse_buf(&prof, txt, strlen(txt), 0, err), 0);
    assert_int_equal(prof.nsites, 2);
    const et_hsite *s = find_site(&prof, "edgetrace/svc/internal/cache.(*C).Put", 40);
    assert_non_null(s);
    assert_int_equal(s->inuse_objects, 3); /* heap/1: rate 0, unscaled */
    assert_int_equal(s->inuse_bytes, 300);
    s = find_site(&prof, "encoding/json.Marshal", 100); /* stdlib only: innermost non-runtime */
    assert_non_null(s);
    assert_int_equal(s->alloc_bytes, 64);
    assert_null(find_site(&prof, "main.nothing", 1));
    assert_false(prof.ms.present);
    assert_int_equal(prof.sample_rate, 0);
}

static void test_bad_input(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(parse_buf(&prof, "", 0, 0, err), -1);
    assert_string_equal(err, "empty body");
    const char *html = "<html><head><title>500</title></head></html>";
    assert_int_equal(parse_buf(&prof, html, strlen(html), 0, err), -1);
    assert_non_null(strstr(err, "HTML"));
    const char *g = "goroutine profile: total 3\n";
    assert_int_equal(parse_buf(&prof, g, strlen(g), 0, err), -1);
    assert_non_null(strstr(err, "not a heap profile"));
    const char *badhdr = "heap profile: x: y\n";
    assert_int_equal(parse_buf(&prof, badhdr, strlen(badhdr), 0, err), -1);
    /* truncated anywhere: no crash; either ok or a reason */
    size_t len;
    char *buf = fixture_load("go1.27-heap.debug1.txt", &len);
    assert_non_null(buf);
    for (size_t cut = 0; cut < len; cut += 331) {
        int rc = parse_buf(&prof, buf, cut, 0, err);
        assert_true(rc == 0 || err[0]);
    }
    free(buf);
    /* a huge line in the records is cut and counted */
    size_t big = 20000;
    char *t = malloc(big + 200);
    size_t n = (size_t)sprintf(t, "heap profile: 1: 1 [1: 1] @ heap/1\n1: 1 [1: 1] @ ");
    memset(t + n, '7', big);
    n += big;
    n += (size_t)sprintf(t + n, "\n#\t0x1\tmain.x+0x1\t/a.go:1\n\n");
    assert_int_equal(parse_buf(&prof, t, n, 0, err), 0);
    assert_int_equal(prof.trunc.lines, 1);
    assert_non_null(find_site(&prof, "main.x", 1));
    assert_int_equal(parse_buf(&prof, t, n, 333, err), 0);
    assert_int_equal(prof.trunc.lines, 1);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_site_cap),
        cmocka_unit_test(test_merge_and_pick),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
