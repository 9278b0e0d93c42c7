/* parse_pprof.h - streaming parser for gzipped profile.proto bodies (/debug/pprof/goroutine,
 * /debug/pprof/goroutineleak and /debug/pprof/heap with no debug parameter).
 *
 *     static et_pparser p;               // fixed size (see ET_PP_* caps), no heap allocation:
 *                                        // zlib's state and window live inside it too
 *     et_pparse_init(&p, &gprof, &hprof);   // either may be NULL
 *     while (chunks) et_pparse_feed(&p, buf, n);      // any chunking
 *     int kind = et_pparse_finish(&p, err, sizeof err);
 *       // ET_PP_GOROUTINE: gprof filled (debug=0, states inferred from frames)
 *       // ET_PP_HEAP: hprof filled (alloc_objects, alloc_space, inuse_objects, inuse_space)
 *       // -1: not a profile / garbage / wrong kind for the outputs given, reason in err
 *
 * The body may be gzip (as Go serves it) or a raw protobuf. Repeated scalar fields are
 * accepted packed and unpacked; field order is not assumed (Go writes the string table last,
 * other encoders may not). Whatever exceeds a cap (samples, locations, functions, strings) is
 * dropped and counted in the output's trunc counters. */
#ifndef ET_PARSE_PPROF_H
#define ET_PARSE_PPROF_H

#include <stddef.h>
#include <stdint.h>
#include "profile.h"
#include "parse_goroutine.h"
#include "parse_heap.h"

#ifndef ET_PP_MAX_FUNCS
#define ET_PP_MAX_FUNCS 4096
#endif
#ifndef ET_PP_MAX_LOCS
#define ET_PP_MAX_LOCS 8192
#endif
#ifndef ET_PP_MAX_LINES
#define ET_PP_MAX_LINES 12288 /* line entries over all locations (inlining adds some) */
#endif
#ifndef ET_PP_MAX_SAMPLES
#define ET_PP_MAX_SAMPLES 4096
#endif
#ifndef ET_PP_MAX_SAMPLE_LOCS
#define ET_PP_MAX_SAMPLE_LOCS 32768 /* location ids over all samples */
#endif
#ifndef ET_PP_MAX_STRINGS
#define ET_PP_MAX_STRINGS 12288
#endif
#ifndef ET_PP_STRPOOL
#define ET_PP_STRPOOL (160 * 1024)
#endif
#define ET_PP_FIELD_MAX 8192   /* one top-level sub-message (a sample, a location, ...) */
#define ET_PP_ZPOOL (48 * 1024) /* zlib inflate state + 32 KiB window */
#define ET_PP_ZOUT (16 * 1024)
#define ET_PP_MAX_VALUES 4
#define ET_PP_MAX_SAMPLE_TYPES 8

enum { ET_PP_GOROUTINE = 1, ET_PP_HEAP = 2 };

typedef struct et_pp_func { uint64_t id; uint32_t name, file; } et_pp_func;
typedef struct et_pp_loc { uint64_t id; uint32_t line_off; uint32_t nlines; } et_pp_loc;
typedef struct et_pp_line { uint32_t func_id; uint32_t line; } et_pp_line;
typedef struct et_pp_sample {
    uint32_t loc_off, nloc;
    int64_t v[ET_PP_MAX_VALUES];
    uint8_t nv;
    uint8_t nlab;                 /* pprof labels kept (string indices), at most 2 */
    uint32_t lab_k[2], lab_v[2];
} et_pp_sample;

typedef struct et_pparser {
    et_gprofile *gout;
    et_hprofile *hout;
    /* ---- input stage: gzip or raw ---- */
    int mode;                /* 0 undecided, 1 gzip, 2 raw */
    int z_ready, z_done;
    uint8_t head[2];
    int nhead;
    void *zs;                /* z_stream, inside zmem */
    size_t zpool_used;
    uint64_t bytes_in, bytes_out;
    /* ---- protobuf top level ---- */
    int pst;                 /* reader state */
    uint64_t acc;            /* varint being read */
    int acc_shift;
    uint32_t field, wire;
    uint64_t period;         /* top-level period(12): MemProfileRate for heap */
    uint64_t remain;         /* bytes left in the current length-delimited field / fixed */
    uint32_t flen;           /* bytes kept of it in fbuf */
    int fover;               /* the field did not fit fbuf */
    int bad;
    char bad_reason[96];
    /* ---- tables ---- */
    uint32_t nfuncs, nlocs, nlines, nsamples, nsloc, nstrings, strpool_used, nsample_types;
    int64_t sample_type[ET_PP_MAX_SAMPLE_TYPES]; /* string index of each value's type */
    uint32_t dropped_funcs, dropped_locs, dropped_samples, dropped_strings, cut_strings;
    uint32_t malformed;
    et_pp_func funcs[ET_PP_MAX_FUNCS];
    et_pp_loc locs[ET_PP_MAX_LOCS];
    et_pp_line lines[ET_PP_MAX_LINES];
    et_pp_sample samples[ET_PP_MAX_SAMPLES];
    uint32_t sloc[ET_PP_MAX_SAMPLE_LOCS];
    uint32_t stroff[ET_PP_MAX_STRINGS];   /* offset into strpool; bit 31: head+tail of a cut string */
    uint16_t strlen_[ET_PP_MAX_STRINGS];
    uint8_t needed[(ET_PP_MAX_STRINGS + 7) / 8]; /* strings referenced so far */
    char strpool[ET_PP_STRPOOL];
    uint8_t fbuf[ET_PP_FIELD_MAX];
    uint8_t zout[ET_PP_ZOUT];
    _Alignas(16) uint8_t zmem[ET_PP_ZPOOL];
    /* ---- result stage ---- */
    uint16_t gindex[ET_GP_HASH_SLOTS];
    et_hindex hindex;
    et_gacc gacc;
} et_pparser;

void et_pparse_init(et_pparser *p, et_gprofile *gout, et_hprofile *hout);
int et_pparse_feed(et_pparser *p, const char *buf, size_t len); /* 0, or -1 once known bad */
int et_pparse_finish(et_pparser *p, char *err, size_t errlen);  /* ET_PP_GOROUTINE, ET_PP_HEAP or -1 */
/* Releases nothing (there is nothing allocated); safe to call after a failed finish. */

#endif
