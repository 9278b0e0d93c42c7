/* parse_heap.h - streaming parser for heap profiles in text form (debug=1): allocation sites
 * plus the "# runtime.MemStats" block, into an et_hprofile (profile.h) in fixed memory.
 *
 *     et_hparser p;
 *     et_hparse_init(&p, &prof);
 *     while (chunks) et_hparse_feed(&p, buf, n);       // any chunking
 *     if (et_hparse_finish(&p, err, sizeof err) < 0)   // not a heap profile, with reason
 *
 * Values are scaled the way Go scales the proto profile (runtime/pprof scaleHeapSample,
 * rate = MemProfileRate = half the header's "heap/N"), so debug=1 and proto agree; the totals
 * are the sums of the scaled records (the header's raw totals are not used).
 * Records are merged by allocation site (the innermost frame outside runtime/stdlib). When
 * more than ET_MAX_HSITES sites exist, the largest by inuse_bytes are kept and the others
 * folded into one overflow site (trunc.sites counts folded records). */
#ifndef ET_PARSE_HEAP_H
#define ET_PARSE_HEAP_H

#include <stddef.h>
#include <stdint.h>
#include "profile.h"

#define ET_HP_LINE_MAX 4096
#define ET_HP_HASH_SLOTS 512 /* power of two, >= 2 * ET_MAX_HSITES */

/* Site table index shared with parse_pprof.c. */
typedef struct et_hindex {
    uint16_t slot[ET_HP_HASH_SLOTS]; /* site index + 1, 0 = empty */
} et_hindex;

void et_hprofile_reset(et_hprofile *out);
/* Adds one allocation record at `site` (may be NULL: unknown frames). */
void et_hprofile_add(et_hprofile *out, et_hindex *ix, const et_frame *site, uint64_t inuse_objects,
                     uint64_t inuse_bytes, uint64_t alloc_objects, uint64_t alloc_bytes);

/* Picks the allocation site of a stack, innermost first: the first frame outside
 * runtime/stdlib, else the first frame outside runtime plumbing, else the first frame.
 * Call et_hsite_pick_frame per frame; *picked tracks the rank of what dst holds. */
typedef struct et_hpick {
    int rank;       /* 0 nothing, 1 any frame, 2 non-runtime, 3 user */
    int cut;        /* a string was cut */
    et_frame f;
} et_hpick;
void et_hpick_init(et_hpick *k);
/* Returns 1 when the frame was taken (so its file/line should follow). */
int et_hpick_func(et_hpick *k, const char *func, size_t len);
void et_hpick_file(et_hpick *k, const char *file, size_t len, uint32_t line);

typedef struct et_hparser {
    et_hprofile *out;
    int state;           /* 0 start, 1 records, 2 memstats */
    int bad;
    int saw_any, saw_header;
    int in_record;
    int pick_pending;    /* the frame just picked still needs its file:line */
    uint64_t rec[4];     /* inuse_objs, inuse_bytes, alloc_objs, alloc_bytes */
    uint64_t bytes;
    uint32_t carry_len;
    uint8_t carry_over;
    char bad_reason[96];
    et_hpick pick;
    et_hindex index;
    char carry[ET_HP_LINE_MAX];
} et_hparser;

void et_hparse_init(et_hparser *p, et_hprofile *out);
int et_hparse_feed(et_hparser *p, const char *buf, size_t len); /* 0, or -1 once known bad */
int et_hparse_finish(et_hparser *p, char *err, size_t errlen);  /* 0 ok, -1 with reason */

#endif
