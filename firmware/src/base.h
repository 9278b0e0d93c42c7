/* base.h - small utilities every stage of the agent uses: logging, a bump arena, time,
 * bounded string copies and hashing.
 *
 * The agent is single-threaded; nothing here locks. */
#ifndef ET_BASE_H
#define ET_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#define ET_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define ET_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ET_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- logging: to stderr, one line per call, level-filtered ---- */
enum et_log_level { ET_LOG_ERROR = 0, ET_LOG_WARN = 1, ET_LOG_INFO = 2, ET_LOG_DEBUG = 3 };
extern int et_log_level;
void et_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define et_error(...) et_log(ET_LOG_ERROR, __VA_ARGS__)
#define et_warn(...) et_log(ET_LOG_WARN, __VA_ARGS__)
#define et_info(...) et_log(ET_LOG_INFO, __VA_ARGS__)
#define et_debug(...) do { if (et_log_level >= ET_LOG_DEBUG) et_log(ET_LOG_DEBUG, __VA_ARGS__); } while (0)

/* ---- bump arena: one fixed block, reset per sampling cycle ----
 * Allocation never calls malloc after et_arena_init; running out returns NULL and is
 * counted, so callers degrade (truncate) instead of growing without bound. */
typedef struct et_arena {
    uint8_t *base;
    size_t cap;
    size_t used;
    size_t high_water;
    uint32_t failures;
} et_arena;

int et_arena_init(et_arena *a, size_t cap);           /* mallocs the block once; 0 or -1 */
void et_arena_free(et_arena *a);
void *et_arena_alloc(et_arena *a, size_t n);         /* 16-byte aligned; NULL when full */
char *et_arena_strndup(et_arena *a, const char *s, size_t n);
void et_arena_reset(et_arena *a);

/* ---- time ---- */
uint64_t et_now_mono_ms(void);    /* CLOCK_MONOTONIC (CLOCK_BOOTTIME where available) */
int64_t et_now_wall_ms(void);     /* CLOCK_REALTIME; may be garbage on boards with no RTC */

/* ---- strings ---- */
/* Copies at most dstsz-1 bytes and always terminates; returns 1 if it truncated. */
int et_strlcpy(char *dst, const char *src, size_t dstsz);
int et_strlcpyn(char *dst, size_t dstsz, const char *src, size_t srclen);

/* ---- hashing: 64-bit FNV-1a, stable across platforms and builds ---- */
#define ET_FNV_INIT 0xcbf29ce484222325ULL
uint64_t et_fnv1a(uint64_t h, const void *data, size_t n);
uint64_t et_fnv1a_str(uint64_t h, const char *s);
/* 16 lowercase hex digits + NUL */
void et_hex64(uint64_t v, char out[17]);

#endif
