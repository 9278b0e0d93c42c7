/* parse_fixture.h - helpers for the parser unit tests: load a fixture from
 * tests/fixtures/pprof and feed a buffer in various chunkings. Header-only (static). */
#ifndef ET_TEST_PARSE_FIXTURE_H
#define ET_TEST_PARSE_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fixtures are found from $ET_ROOT, else relative to the current directory (tests run from
 * the repository root), else relative to this source file. */
static char *fixture_load(const char *name, size_t *len)
{
    char path[1024];
    const char *roots[3] = {getenv("ET_ROOT"), ".", NULL};
    char here[512];
    snprintf(here, sizeof(here), "%s", __FILE__);
    char *slash = strrchr(here, '/');
    if (slash) {
        *slash = 0;
        strncat(here, "/../..", sizeof(here) - strlen(here) - 1);
        roots[2] = here;
    }
    for (int i = 0; i < 3; i++) {
        if (!roots[i])
            continue;
        snprintf(path, sizeof(path), "%s/tests/fixtures/pprof/%s", roots[i], name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *buf = malloc((size_t)n + 1);
        if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
            fclose(f);
            free(buf);
            return NULL;
        }
        buf[n] = 0;
        fclose(f);
        *len = (size_t)n;
        return buf;
    }
    fprintf(stderr, "fixture %s not found (set ET_ROOT)\n", name);
    return NULL;
}

/* Deterministic PRNG for chunk sizes. */
static uint32_t fixture_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* chunking: 0 = whole buffer, 1 = byte by byte, else random sizes 1..chunking seeded by it */
typedef int (*fixture_feed_fn)(void *parser, const char *buf, size_t len);
static void fixture_feed(void *parser, fixture_feed_fn feed, const char *buf, size_t len, unsigned chunking)
{
    if (chunking == 0) {
        feed(parser, buf, len);
        return;
    }
    uint32_t seed = chunking * 2654435761u + 1;
    size_t off = 0;
    while (off < len) {
        size_t n = chunking == 1 ? 1 : 1 + fixture_rand(&seed) % chunking;
        if (n > len - off)
            n = len - off;
        feed(parser, buf + off, n);
        off += n;
    }
}

#endif
