/* parse_goroutine.h - streaming parser for goroutine and goroutineleak profiles in text form
 * (debug=1 and debug=2), filling an et_gprofile (profile.h) in fixed memory.
 *
 * Usage:
 *     et_gparser p;                       // ~12 KiB, no heap allocation anywhere
 *     et_gparse_init(&p, &prof, ET_GP_GOROUTINE, 0);   // debug 0 = detect from the first line
 *     while (body chunks) et_gparse_feed(&p, chunk, n);  // any chunking, 1 byte .. MBs
 *     if (et_gparse_finish(&p, err, sizeof err) < 0) ... // err says why
 *
 * Lines longer than ET_GP_LINE_MAX are cut (trunc.lines); more sites than ET_MAX_GSITES fold
 * into one overflow site (trunc.sites). The result is the same whatever the chunking. */
#ifndef ET_PARSE_GOROUTINE_H
#define ET_PARSE_GOROUTINE_H

#include <stddef.h>
#include <stdint.h>
#include "profile.h"
#include "gstate.h"

#define ET_GP_LINE_MAX 4096
#define ET_GP_HASH_SLOTS 1024 /* power of two, > 2 * ET_MAX_GSITES */

/* ---- one goroutine (debug=2) or one record (debug=1, a proto sample) being assembled ----
 * Shared with parse_pprof.c, which feeds frames it resolved from the proto tables. */
typedef struct et_gacc {
    et_ginfer inf;
    uint8_t printed_state;  /* debug=2 reason mapped, ET_G_UNKNOWN if none */
    uint8_t has_user, has_nonrt, has_last;
    uint8_t pend;           /* which frames the next file:line belongs to (PEND_* bits) */
    uint8_t leaked;         /* "(leaked)" in the debug=2 header */
    uint8_t has_wait;
    uint8_t cut_strings;    /* a kept name/path was cut */
    uint32_t wait_min;
    uint64_t goid;          /* debug=2 "goroutine N": 0 when not printed */
    uint32_t nframes;
    et_frame user;          /* innermost service frame */
    et_frame nonrt;         /* innermost frame that is not runtime plumbing */
    et_frame last;          /* outermost frame other than runtime.goexit */
    char block_func[ET_FUNC_MAX];
    char created_by[ET_FUNC_MAX];
    char labels[ET_LABELS_MAX];
    char stack[ET_STACK_MAX][ET_FUNC_MAX];
} et_gacc;

void et_gacc_begin(et_gacc *a);
/* A frame's function name (no args, no +0xoff). */
void et_gacc_func(et_gacc *a, const char *func, size_t len);
/* The file:line of the frame last given to et_gacc_func. */
void et_gacc_file(et_gacc *a, const char *file, size_t len, uint32_t line);
/* Adds `count` goroutines with this stack to the profile's sites. */
void et_gacc_commit(et_gprofile *out, uint16_t *index, et_gacc *a, uint32_t count);

/* Resets a profile to empty (kind/debug set). */
void et_gprofile_reset(et_gprofile *out, int kind, int debug);

/* ---- the text parser ---- */
typedef struct et_gparser {
    et_gprofile *out;
    int debug;              /* 1, 2, or 0 until detected */
    int kind;               /* enum et_gprofile_kind requested by the caller */
    int in_record;          /* an et_gacc is open */
    int ancestors;          /* debug=2 "[originating from goroutine N]": skip those frames */
    int bad;                /* not a goroutine profile: reason in bad_reason */
    int saw_header;         /* debug=1 "... profile: total N" seen */
    int saw_any;            /* a non-empty line was seen */
    uint32_t rec_count;     /* debug=1 "N @ ..." */
    uint64_t rec_pc0;       /* debug=1 first PC of the record, to see hidden runtime frames */
    int rec_frames;         /* debug=1 frame lines seen in this record */
    uint64_t bytes;
    uint32_t carry_len;
    uint8_t carry_over;     /* the carried line already overflowed the buffer */
    char bad_reason[96];
    et_gacc acc;
    char carry[ET_GP_LINE_MAX];
    uint16_t index[ET_GP_HASH_SLOTS]; /* site index + 1, 0 = empty */
} et_gparser;

/* debug: a hint only (0, 1 or 2); the format is always detected from the first line, which
 * cannot be wrong about itself. kind: ET_GP_GOROUTINE or ET_GP_GOROUTINELEAK (a debug=1
 * header overrides it). For ET_GP_GOROUTINELEAK with debug=2 (Go prints every goroutine
 * then), only goroutines marked "(leaked)" are counted.
 *
 * Site stacks: stack[] holds the innermost frames; when the stack is deeper than
 * ET_STACK_MAX the last slot holds the outermost frame instead (the goroutine's entry
 * function: net/http.(*conn).serve, os/signal.loop, ...), so allow-lists can match it. */
void et_gparse_init(et_gparser *p, et_gprofile *out, int kind, int debug);
/* Returns 0; -1 once the input is known not to be a goroutine profile (feeding more is
 * harmless and ignored). */
int et_gparse_feed(et_gparser *p, const char *buf, size_t len);
/* 0 ok; -1 not a goroutine profile / garbage / empty, with a reason in err. */
int et_gparse_finish(et_gparser *p, char *err, size_t errlen);

/* Site table access shared with parse_pprof.c (index lives in the parser). */
et_gsite *et_gprofile_site(et_gprofile *out, uint16_t *index, uint64_t key, int *created);

#endif
