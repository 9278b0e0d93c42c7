/* base.c - logging, arena, time, strings, hashing. See base.h. */
#include "base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int et_log_level = ET_LOG_WARN;

void et_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (level > et_log_level)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "edgetrace: %s: %s\n", names[level & 3], line);
}

int et_arena_init(et_arena *a, size_t cap)
{
    memset(a, 0, sizeof *a);
    a->base = malloc(cap);
    if (!a->base)
        return -1;
    a->cap = cap;
    return 0;
}

void et_arena_free(et_arena *a)
{
    free(a->base);
    memset(a, 0, sizeof *a);
}

void *et_arena_alloc(et_arena *a, size_t n)
{
    size_t off = (a->used + 15u) & ~(size_t)15u;
    if (off > a->cap || n > a->cap - off) {
        a->failures++;
        return NULL;
    }
    a->used = off + n;
    if (a->used > a->high_water)
        a->high_water = a->used;
    return a->base + off;
}

char *et_arena_strndup(et_arena *a, const char *s, size_t n)
{
    char *p = et_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void et_arena_reset(et_arena *a) { a->used = 0; }

uint64_t et_now_mono_ms(void)
{
    struct timespec ts;
#ifdef CLOCK_BOOTTIME
    /* BOOTTIME keeps counting through suspend, so intervals stay honest on boards that sleep. */
    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
#endif
        clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t et_now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int et_strlcpyn(char *dst, size_t dstsz, const char *src, size_t srclen)
{
    if (dstsz == 0)
        return srclen > 0;
    size_t n = srclen < dstsz - 1 ? srclen : dstsz - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
    return n < srclen;
}

int et_strlcpy(char *dst, const char *src, size_t dstsz)
{
    return et_strlcpyn(dst, dstsz, src, strlen(src));
}

uint64_t et_fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t et_fnv1a_str(uint64_t h, const char *s)
{
    /* The terminating NUL is hashed too, so ("ab","c") and ("a","bc") differ. */
    return et_fnv1a(h, s, strlen(s) + 1);
}

void et_hex64(uint64_t v, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = hex[v & 15];
        v >>= 4;
    }
    out[16] = 0;
}
