/* parse_pprof.c - gzipped profile.proto, streamed (see parse_pprof.h).
 *
 * profile.proto (github.com/google/pprof/proto/profile.proto; Go's encoder is
 * runtime/pprof/proto.go and protomem.go, Go 1.21 .. 1.27):
 *   Profile:  sample_type(1) ValueType, sample(2), mapping(3), location(4), function(5),
 *             string_table(6), drop_frames(7), keep_frames(8), time_nanos(9),
 *             duration_nanos(10), period_type(11), period(12), comment(13),
 *             default_sample_type(14)
 *   ValueType: type(1), unit(2)                  (string table indices)
 *   Sample:   location_id(1) repeated uint64, value(2) repeated int64, label(3)
 *   Location: id(1), mapping_id(2), address(3), line(4) Line, is_folded(5)
 *   Line:     function_id(1), line(2), column(3)   line[0] is the innermost (inlined) frame
 *   Function: id(1), name(2), system_name(3), filename(4), start_line(5)
 *
 * Two stages: zlib inflate (its state and window allocated from a pool inside the parser)
 * feeds a byte-driven protobuf reader. Each top-level field that is a message is collected
 * into fbuf (ET_PP_FIELD_MAX) and decoded into compact tables; names are resolved at finish,
 * when all tables are known, because the string table may come last. */
#include "parse_pprof.h"
#include "base.h"
#include "gstate.h"

#include <string.h>
#include <zlib.h>

enum { PS_TAG = 0, PS_VARINT, PS_LEN, PS_BODY, PS_FIXED };
#define STR_CUT 0x80000000u
#define STR_KEEP 127 /* == ET_FUNC_MAX - 1 == ET_FILE_MAX - 1 */

static void set_bad(et_pparser *p, const char *why)
{
    if (p->bad)
        return;
    p->bad = 1;
    et_strlcpy(p->bad_reason, why, sizeof(p->bad_reason));
}

/* ---- zlib allocator: bump allocation from zmem, never malloc ---- */

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    et_pparser *p = opaque;
    size_t n = (size_t)items * size;
    if (size && n / size != items)
        return Z_NULL;
    n = (n + 15) & ~(size_t)15;
    if (n > sizeof(p->zmem) - p->zpool_used)
        return Z_NULL;
    void *r = p->zmem + p->zpool_used;
    p->zpool_used += n;
    return r;
}

static void z_free(voidpf opaque, voidpf addr)
{
    (void)opaque;
    (void)addr; /* the pool goes away with the parser */
}

/* ---- protobuf helpers over a buffer ---- */

static int rd_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    int shift = 0;
    const uint8_t *q = *pp;
    while (q < end) {
        uint8_t b = *q++;
        if (shift >= 64)
            return -1;
        x |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80)) {
            *pp = q;
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Next field of a message: scalar value in *v (wire 0, 1, 5) or bytes in *d, *dl (wire 2). */
static int pb_next(const uint8_t **pp, const uint8_t *end, uint32_t *field, uint32_t *wire, uint64_t *v,
                   const uint8_t **d, size_t *dl)
{
    if (*pp >= end)
        return 0;
    uint64_t tag;
    if (rd_varint(pp, end, &tag) < 0)
        return -1;
    *field = (uint32_t)(tag >> 3);
    *wire = (uint32_t)(tag & 7);
    if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
        return -1;
    switch (*wire) {
    case 0:
        return rd_varint(pp, end, v) < 0 ? -1 : 1;
    case 1:
        if (end - *pp < 8)
            return -1;
        *v = 0;
        for (int i = 7; i >= 0; i--)
            *v = (*v << 8) | (*pp)[i];
        *pp += 8;
        return 1;
    case 5:
        if (end - *pp < 4)
            return -1;
        *v = (uint64_t)(*pp)[0] | (uint64_t)(*pp)[1] << 8 | (uint64_t)(*pp)[2] << 16 | (uint64_t)(*pp)[3] << 24;
        *pp += 4;
        return 1;
    case 2: {
        uint64_t l;
        if (rd_varint(pp, end, &l) < 0 || l > (uint64_t)(end - *pp))
            return -1;
        *d = *pp;
        *dl = (size_t)l;
        *pp += l;
        return 1;
    }
    default:
        return -1;
    }
}

/* ---- strings ---- */

static void mark_needed(et_pparser *p, uint64_t idx)
{
    if (idx < ET_PP_MAX_STRINGS)
        p->needed[idx / 8] |= (uint8_t)(1u << (idx % 8));
}

static int is_needed(const et_pparser *p, uint32_t idx)
{
    return idx < ET_PP_MAX_STRINGS && (p->needed[idx / 8] >> (idx % 8)) & 1;
}

static void add_string(et_pparser *p, const uint8_t *s, size_t len, int cut)
{
    uint32_t idx = p->nstrings;
    if (idx >= ET_PP_MAX_STRINGS) {
        p->dropped_strings++;
        return;
    }
    p->nstrings++;
    p->stroff[idx] = 0;
    p->strlen_[idx] = 0;
    /* Once functions are known (Go writes them before the string table) only the strings
     * they reference are worth pool space; before that, keep everything that fits. */
    if (p->nfuncs > 0 && idx > 0 && !is_needed(p, idx))
        return;
    size_t keep = len <= 2 * STR_KEEP ? len : 2 * STR_KEEP;
    if (keep > sizeof(p->strpool) - p->strpool_used) {
        p->dropped_strings++;
        return;
    }
    char *dst = p->strpool + p->strpool_used;
    uint32_t off = p->strpool_used;
    if (len <= 2 * STR_KEEP) {
        memcpy(dst, s, len);
    } else {
        /* head for use as a function name, tail for use as a file path */
        memcpy(dst, s, STR_KEEP);
        memcpy(dst + STR_KEEP, s + len - STR_KEEP, STR_KEEP);
        off |= STR_CUT;
        cut = 1;
    }
    if (cut)
        p->cut_strings++;
    p->stroff[idx] = off;
    p->strlen_[idx] = (uint16_t)keep;
    p->strpool_used += (uint32_t)keep;
}

/* A string for use as a function name (tail=0) or file path (tail=1). */
static const char *get_str(const et_pparser *p, uint64_t idx, int tail, size_t *len)
{
    if (idx >= p->nstrings || idx >= ET_PP_MAX_STRINGS) {
        *len = 0;
        return "";
    }
    uint32_t off = p->stroff[idx];
    size_t l = p->strlen_[idx];
    if (off & STR_CUT) {
        off &= ~STR_CUT;
        *len = STR_KEEP;
        return p->strpool + off + (tail ? STR_KEEP : 0);
    }
    *len = l;
    return p->strpool + off;
}

static int str_eq(const et_pparser *p, int64_t idx, const char *lit)
{
    size_t l;
    if (idx < 0)
        return 0;
    const char *s = get_str(p, (uint64_t)idx, 0, &l);
    return l == strlen(lit) && memcmp(s, lit, l) == 0;
}

/* ---- top-level messages ---- */

static void parse_value_type(et_pparser *p, const uint8_t *b, size_t n)
{
    const uint8_t *q = b, *end = b + n, *d;
    uint32_t f, w;
    uint64_t v;
    size_t dl;
    int64_t type = -1;
    int r;
    while ((r = pb_next(&q, end, &f, &w, &v, &d, &dl)) > 0)
        if (f == 1 && w == 0)
            type = (int64_t)v;
    if (r < 0) {
        p->malformed++;
        return;
    }
    if (p->nsample_types < ET_PP_MAX_SAMPLE_TYPES) {
        p->sample_type[p->nsample_types++] = type;
        if (type >= 0)
            mark_needed(p, (uint64_t)type);
    }
}

/* Repeated varints, packed (wire 2) or one by one (wire 0). Calls put(); returns -1 on error. */
typedef void (*put_fn)(et_pparser *p, void *ctx, uint64_t v);

static int repeated_varint(et_pparser *p, uint32_t w, uint64_t v, const uint8_t *d, size_t dl, put_fn put, void *ctx)
{
    if (w == 0) {
        put(p, ctx, v);
        return 0;
    }
    if (w != 2)
        return -1;
    const uint8_t *q = d, *end = d + dl;
    while (q < end) {
        uint64_t x;
        if (rd_varint(&q, end, &x) < 0)
            return -1;
        put(p, ctx, x);
    }
    return 0;
}

struct sample_ctx {
    et_pp_sample *s;
    int overflow;
};

static void put_loc(et_pparser *p, void *ctx, uint64_t v)
{
    struct sample_ctx *c = ctx;
    if (p->nsloc >= ET_PP_MAX_SAMPLE_LOCS || v > UINT32_MAX) {
        c->overflow = 1;
        return;
    }
    p->sloc[p->nsloc++] = (uint32_t)v;
    c->s->nloc++;
}

static void put_val(et_pparser *p, void *ctx, uint64_t v)
{
    (void)p;
    struct sample_ctx *c = ctx;
    if (c->s->nv < ET_PP_MAX_VALUES)
        c->s->v[c->s->nv] = (int64_t)v;
    if (c->s->nv < 255)
        c->s->nv++;
}

/* Label{key(1), str(2), num(3), num_unit(4)}: string labels are what pprof.Do sets. */
static int parse_label(et_pparser *p, et_pp_sample *s, const uint8_t *b, size_t n)
{
    const uint8_t *q = b, *end = b + n, *d;
    uint32_t f, w;
    uint64_t v = 0, key = 0, str = 0;
    size_t dl;
    int r;
    while ((r = pb_next(&q, end, &f, &w, &v, &d, &dl)) > 0) {
        if (w == 0 && f == 1)
            key = v;
        else if (w == 0 && f == 2)
            str = v;
    }
    if (r < 0)
        return -1;
    if (key > 0 && str > 0 && key <= UINT32_MAX && str <= UINT32_MAX && s->nlab < 2) {
        s->lab_k[s->nlab] = (uint32_t)key;
        s->lab_v[s->nlab] = (uint32_t)str;
        s->nlab++;
        mark_needed(p, key);
        mark_needed(p, str);
    }
    return 0;
}

static void parse_sample(et_pparser *p, const uint8_t *b, size_t n)
{
    if (p->nsamples >= ET_PP_MAX_SAMPLES) {
        p->dropped_samples++;
        return;
    }
    et_pp_sample *s = &p->samples[p->nsamples];
    memset(s, 0, sizeof(*s));
    s->loc_off = p->nsloc;
    struct sample_ctx c = {s, 0};
    const uint8_t *q = b, *end = b + n, *d = NULL;
    uint32_t f, w;
    uint64_t v = 0;
    size_t dl = 0;
    int r;
    while ((r = pb_next(&q, end, &f, &w, &v, &d, &dl)) > 0) {
        if (f == 1)
            r = repeated_varint(p, w, v, d, dl, put_loc, &c);
        else if (f == 2)
            r = repeated_varint(p, w, v, d, dl, put_val, &c);
        else if (f == 3 && w == 2)
            r = parse_label(p, s, d, dl);
        if (r < 0)
            break;
    }
    if (r < 0 || c.overflow) {
        p->nsloc = s->loc_off; /* give the pool space back */
        if (r < 0)
            p->malformed++;
        else
            p->dropped_samples++;
        return;
    }
    p->nsamples++;
}

static void parse_location(et_pparser *p, const uint8_t *b, size_t n)
{
    if (p->nlocs >= ET_PP_MAX_LOCS) {
        p->dropped_locs++;
        return;
    }
    et_pp_loc *l = &p->locs[p->nlocs];
    l->id = 0;
    l->line_off = p->nlines;
    l->nlines = 0;
    const uint8_t *q = b, *end = b + n, *d = NULL;
    uint32_t f, w;
    uint64_t v = 0;
    size_t dl = 0;
    int r, overflow = 0;
    while ((r = pb_next(&q, end, &f, &w, &v, &d, &dl)) > 0) {
        if (f == 1 && w == 0) {
            l->id = v;
        } else if (f == 4 && w == 2) {
            const uint8_t *q2 = d, *end2 = d + dl, *d2;
            uint32_t f2, w2;
            uint64_t v2 = 0, fid = 0, line = 0;
            size_t dl2;
            int r2;
            while ((r2 = pb_next(&q2, end2, &f2, &w2, &v2, &d2, &dl2)) > 0) {
                if (f2 == 1 && w2 == 0)
                    fid = v2;
                else if (f2 == 2 && w2 == 0)
                    line = v2;
            }
            if (r2 < 0) {
                r = -1;
                break;
            }
            if (p->nlines >= ET_PP_MAX_LINES || fid > UINT32_MAX) {
                overflow = 1;
                continue;
            }
            p->lines[p->nlines].func_id = (uint32_t)fid;
            p->lines[p->nlines].line = line > UINT32_MAX ? UINT32_MAX : (uint32_t)line;
            p->nlines++;
            l->nlines++;
        }
    }
    if (r < 0 || l->id == 0) {
        p->nlines = l->line_off;
        p->malformed++;
        return;
    }
    if (overflow)
        p->dropped_locs++; /* kept with the lines that fit */
    p->nlocs++;
}

static void parse_function(et_pparser *p, const uint8_t *b, size_t n)
{
    if (p->nfuncs >= ET_PP_MAX_FUNCS) {
        p->dropped_funcs++;
        return;
    }
    et_pp_func *fn = &p->funcs[p->nfuncs];
    uint64_t id = 0, name = 0, sysname = 0, file = 0;
    const uint8_t *q = b, *end = b + n, *d;
    uint32_t f, w;
    uint64_t v = 0;
    size_t dl;
    int r;
    while ((r = pb_next(&q, end, &f, &w, &v, &d, &dl)) > 0) {
        if (w != 0)
            continue;
        if (f == 1)
            id = v;
        else if (f == 2)
            name = v;
        else if (f == 3)
            sysname = v;
        else if (f == 4)
            file = v;
    }
    if (r < 0 || id == 0 || name > UINT32_MAX || file > UINT32_MAX) {
        p->malformed++;
        return;
    }
    if (name == 0)
        name = sysname <= UINT32_MAX ? sysname : 0;
    fn->id = id;
    fn->name = (uint32_t)name;
    fn->file = (uint32_t)file;
    mark_needed(p, name);
    mark_needed(p, file);
    p->nfuncs++;
}

static void top_field(et_pparser *p)
{
    const uint8_t *b = p->fbuf;
    size_t n = p->flen;
    if (p->field == 6) { /* string_table: keep even a cut one */
        add_string(p, b, n, p->fover);
        return;
    }
    if (p->fover) {
        /* A sub-message larger than fbuf: cannot be decoded, counted. */
        if (p->field == 2)
            p->dropped_samples++;
        else if (p->field == 4)
            p->dropped_locs++;
        else if (p->field == 5)
            p->dropped_funcs++;
        return;
    }
    switch (p->field) {
    case 1:
        parse_value_type(p, b, n);
        break;
    case 2:
        parse_sample(p, b, n);
        break;
    case 4:
        parse_location(p, b, n);
        break;
    case 5:
        parse_function(p, b, n);
        break;
    default:
        break; /* mapping, period_type, comments: not needed */
    }
}

static void pb_feed(et_pparser *p, const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n && !p->bad) {
        switch (p->pst) {
        case PS_TAG:
        case PS_VARINT:
        case PS_LEN: {
            uint8_t c = b[i++];
            if (p->acc_shift >= 64) {
                set_bad(p, "protobuf: varint too long");
                return;
            }
            p->acc |= (uint64_t)(c & 0x7f) << p->acc_shift;
            p->acc_shift += 7;
            if (c & 0x80)
                break;
            uint64_t v = p->acc;
            p->acc = 0;
            p->acc_shift = 0;
            if (p->pst == PS_TAG) {
                p->field = (uint32_t)(v >> 3);
                p->wire = (uint32_t)(v & 7);
                if ((v >> 3) == 0 || (v >> 3) > 0x1fffffff) {
                    set_bad(p, "not a profile.proto (field 0)");
                    return;
                }
                switch (p->wire) {
                case 0:
                    p->pst = PS_VARINT;
                    break;
                case 1:
                    p->remain = 8;
                    p->pst = PS_FIXED;
                    break;
                case 5:
                    p->remain = 4;
                    p->pst = PS_FIXED;
                    break;
                case 2:
                    p->pst = PS_LEN;
                    break;
                default:
                    set_bad(p, "not a profile.proto (bad wire type)");
                    return;
                }
            } else if (p->pst == PS_VARINT) {
                if (p->field == 12)
                    p->period = v;
                p->pst = PS_TAG;
            } else {
                p->remain = v;
                p->flen = 0;
                p->fover = 0;
                if (v == 0) {
                    top_field(p);
                    p->pst = PS_TAG;
                } else {
                    p->pst = PS_BODY;
                }
            }
            break;
        }
        case PS_BODY: {
            size_t take = n - i;
            if ((uint64_t)take > p->remain)
                take = (size_t)p->remain;
            size_t room = ET_PP_FIELD_MAX - p->flen;
            size_t cp = take < room ? take : room;
            memcpy(p->fbuf + p->flen, b + i, cp);
            p->flen += (uint32_t)cp;
            if (cp < take)
                p->fover = 1;
            i += take;
            p->remain -= take;
            if (p->remain == 0) {
                top_field(p);
                p->pst = PS_TAG;
            }
            break;
        }
        case PS_FIXED: {
            size_t take = n - i;
            if ((uint64_t)take > p->remain)
                take = (size_t)p->remain;
            i += take;
            p->remain -= take;
            if (p->remain == 0)
                p->pst = PS_TAG;
            break;
        }
        }
    }
}

/* ---- input stage ---- */

void et_pparse_init(et_pparser *p, et_gprofile *gout, et_hprofile *hout)
{
    /* The big tables need no clearing: counters say what is valid. */
    memset(p, 0, offsetof(et_pparser, funcs));
    memset(p->needed, 0, sizeof(p->needed));
    p->gout = gout;
    p->hout = hout;
}

static int start_zlib(et_pparser *p)
{
    z_stream *zs = z_alloc(p, 1, sizeof(z_stream));
    if (!zs)
        return -1;
    memset(zs, 0, sizeof(*zs));
    zs->zalloc = z_alloc;
    zs->zfree = z_free;
    zs->opaque = p;
    if (inflateInit2(zs, 16 + MAX_WBITS) != Z_OK)
        return -1;
    p->zs = zs;
    p->z_ready = 1;
    return 0;
}

static void feed_gzip(et_pparser *p, const uint8_t *b, size_t n)
{
    z_stream *zs = p->zs;
    if (p->z_done) {
        return; /* trailing bytes after the gzip member: ignored */
    }
    zs->next_in = (Bytef *)(uintptr_t)b;
    zs->avail_in = (uInt)n;
    for (;;) {
        zs->next_out = p->zout;
        zs->avail_out = sizeof(p->zout);
        int r = inflate(zs, Z_NO_FLUSH);
        size_t produced = sizeof(p->zout) - zs->avail_out;
        p->bytes_out += produced;
        pb_feed(p, p->zout, produced);
        if (p->bad)
            return;
        if (r == Z_STREAM_END) {
            p->z_done = 1;
            return;
        }
        if (r == Z_BUF_ERROR || (r == Z_OK && zs->avail_in == 0 && zs->avail_out != 0))
            return; /* needs more input */
        if (r != Z_OK) {
            set_bad(p, r == Z_MEM_ERROR ? "gzip: out of memory" : "gzip: corrupt data");
            return;
        }
    }
}

static void feed_stage(et_pparser *p, const uint8_t *b, size_t n)
{
    if (p->mode == 1)
        feed_gzip(p, b, n);
    else
        pb_feed(p, b, n);
}

int et_pparse_feed(et_pparser *p, const char *buf, size_t len)
{
    const uint8_t *b = (const uint8_t *)buf;
    if (p->bad)
        return -1;
    p->bytes_in += len;
    if (p->mode == 0) {
        while (p->nhead < 2 && len > 0) {
            p->head[p->nhead++] = *b++;
            len--;
        }
        if (p->nhead < 2)
            return 0;
        if (p->head[0] == 0x1f && p->head[1] == 0x8b) {
            p->mode = 1;
            if (start_zlib(p) < 0) {
                set_bad(p, "gzip: cannot initialise inflate");
                return -1;
            }
        } else if (p->head[0] == '<') {
            set_bad(p, "HTML page, not a profile");
            return -1;
        } else if ((p->head[0] == 'g' && p->head[1] == 'o') || (p->head[0] == 'h' && p->head[1] == 'e')) {
            set_bad(p, "text profile (debug=1/2), not a proto profile");
            return -1;
        } else {
            p->mode = 2;
        }
        feed_stage(p, p->head, 2);
    }
    if (len > 0 && !p->bad)
        feed_stage(p, b, len);
    return p->bad ? -1 : 0;
}

/* ---- resolution ---- */

/* Shell sort by id (no allocation; Go's ids are usually already ascending: one pass). */
#define DEFINE_SORT(name, T)                                                                  \
    static void name(T *a, uint32_t n)                                                        \
    {                                                                                         \
        static const uint32_t gaps[] = {701, 301, 132, 57, 23, 10, 4, 1};                   \
        for (size_t g = 0; g < ET_ARRAY_LEN(gaps); g++) {                                     \
            uint32_t gap = gaps[g];                                                           \
            for (uint32_t i = gap; i < n; i++) {                                              \
                T t = a[i];                                                                   \
                uint32_t j = i;                                                               \
                while (j >= gap && a[j - gap].id > t.id) {                                    \
                    a[j] = a[j - gap];                                                        \
                    j -= gap;                                                                 \
                }                                                                             \
                a[j] = t;                                                                     \
            }                                                                                 \
        }                                                                                     \
    }
DEFINE_SORT(sort_funcs, et_pp_func)
DEFINE_SORT(sort_locs, et_pp_loc)

#define DEFINE_FIND(name, T)                                                                  \
    static const T *name(const T *a, uint32_t n, uint64_t id)                                 \
    {                                                                                         \
        if (id >= 1 && id <= n && a[id - 1].id == id)                                         \
            return &a[id - 1]; /* Go numbers from 1 without gaps */                           \
        uint32_t lo = 0, hi = n;                                                              \
        while (lo < hi) {                                                                     \
            uint32_t mid = lo + (hi - lo) / 2;                                                \
            if (a[mid].id == id)                                                              \
                return &a[mid];                                                               \
            if (a[mid].id < id)                                                               \
                lo = mid + 1;                                                                 \
            else                                                                              \
                hi = mid;                                                                     \
        }                                                                                     \
        return NULL;                                                                          \
    }
DEFINE_FIND(find_func, et_pp_func)
DEFINE_FIND(find_loc, et_pp_loc)

static int is_sorted_funcs(const et_pp_func *a, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++)
        if (a[i - 1].id > a[i].id)
            return 0;
    return 1;
}

static int is_sorted_locs(const et_pp_loc *a, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++)
        if (a[i - 1].id > a[i].id)
            return 0;
    return 1;
}

static void fill_trunc(et_pparser *p, et_trunc *t)
{
    t->strings += p->cut_strings + p->dropped_strings;
    t->frames += p->dropped_funcs + p->dropped_locs;
    t->sites += p->dropped_samples;
    t->malformed += p->malformed;
}

/* Labels as debug=1 prints them: {"k":"v","k2":"v2"} (cut to fit). */
static void format_labels(const et_pparser *p, const et_pp_sample *s, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    if (cap < 3)
        return;
    out[n++] = '{';
    for (uint8_t i = 0; i < s->nlab; i++) {
        size_t kl, vl;
        const char *k = get_str(p, s->lab_k[i], 0, &kl);
        const char *v = get_str(p, s->lab_v[i], 0, &vl);
        const char *parts[5] = {i ? "," : "", "\"", k, "\":\"", v};
        size_t lens[5] = {i ? 1u : 0u, 1, kl, 3, vl};
        for (int j = 0; j < 5; j++) {
            size_t m = lens[j] < cap - 2 - n ? lens[j] : cap - 2 - n;
            memcpy(out + n, parts[j], m);
            n += m;
        }
        if (n < cap - 2)
            out[n++] = '"';
    }
    out[n++] = '}';
    out[n] = 0;
}

static void resolve_goroutines(et_pparser *p, int leak)
{
    et_gprofile *g = p->gout;
    et_gprofile_reset(g, leak ? ET_GP_GOROUTINELEAK : ET_GP_GOROUTINE, 0);
    memset(p->gindex, 0, sizeof(p->gindex));
    uint32_t unresolved = 0;
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const et_pp_sample *s = &p->samples[i];
        et_gacc *a = &p->gacc;
        et_gacc_begin(a);
        for (uint32_t k = 0; k < s->nloc; k++) {
            const et_pp_loc *l = find_loc(p->locs, p->nlocs, p->sloc[s->loc_off + k]);
            if (!l) {
                unresolved++;
                continue;
            }
            for (uint32_t j = 0; j < l->nlines; j++) {
                const et_pp_line *ln = &p->lines[l->line_off + j];
                const et_pp_func *fn = find_func(p->funcs, p->nfuncs, ln->func_id);
                if (!fn) {
                    unresolved++;
                    continue;
                }
                size_t nl, fl;
                const char *name = get_str(p, fn->name, 0, &nl);
                const char *file = get_str(p, fn->file, 1, &fl);
                if (nl == 0)
                    continue;
                et_gacc_func(a, name, nl);
                et_gacc_file(a, file, fl, ln->line);
            }
        }
        int64_t c = s->nv > 0 ? s->v[0] : 0;
        if (c <= 0)
            continue;
        if (s->nlab)
            format_labels(p, s, a->labels, sizeof(a->labels));
        uint32_t count = c > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)c;
        if (leak)
            a->leaked = 1;
        g->header_total += count;
        et_gacc_commit(g, p->gindex, a, count);
    }
    fill_trunc(p, &g->trunc);
    g->trunc.frames += unresolved;
}

static void resolve_heap(et_pparser *p)
{
    et_hprofile *h = p->hout;
    et_hprofile_reset(h);
    memset(&p->hindex, 0, sizeof(p->hindex));
    h->sample_rate = p->period;
    int ix[4] = {-1, -1, -1, -1}; /* alloc_objects, alloc_space, inuse_objects, inuse_space */
    static const char *const names[4] = {"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"};
    for (uint32_t t = 0; t < p->nsample_types && t < ET_PP_MAX_VALUES; t++)
        for (int k = 0; k < 4; k++)
            if (str_eq(p, p->sample_type[t], names[k]))
                ix[k] = (int)t;
    uint32_t unresolved = 0;
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const et_pp_sample *s = &p->samples[i];
        et_hpick pick;
        et_hpick_init(&pick);
        for (uint32_t k = 0; k < s->nloc && pick.rank < 3; k++) {
            const et_pp_loc *l = find_loc(p->locs, p->nlocs, p->sloc[s->loc_off + k]);
            if (!l) {
                unresolved++;
                continue;
            }
            for (uint32_t j = 0; j < l->nlines && pick.rank < 3; j++) {
                const et_pp_line *ln = &p->lines[l->line_off + j];
                const et_pp_func *fn = find_func(p->funcs, p->nfuncs, ln->func_id);
                if (!fn) {
                    unresolved++;
                    continue;
                }
                size_t nl, fl;
                const char *name = get_str(p, fn->name, 0, &nl);
                if (nl == 0)
                    continue;
                if (et_hpick_func(&pick, name, nl)) {
                    const char *file = get_str(p, fn->file, 1, &fl);
                    et_hpick_file(&pick, file, fl, ln->line);
                }
            }
        }
        uint64_t v[4];
        for (int k = 0; k < 4; k++) {
            int64_t x = (ix[k] >= 0 && ix[k] < s->nv) ? s->v[ix[k]] : 0;
            v[k] = x > 0 ? (uint64_t)x : 0;
        }
        if ((v[0] | v[1] | v[2] | v[3]) == 0)
            continue; /* an empty bucket says nothing and would take a site */
        et_hprofile_add(h, &p->hindex, pick.rank ? &pick.f : NULL, v[2], v[3], v[0], v[1]);
        h->total_alloc_objects += v[0];
        h->total_alloc_bytes += v[1];
        h->total_inuse_objects += v[2];
        h->total_inuse_bytes += v[3];
    }
    fill_trunc(p, &h->trunc);
    h->trunc.frames += unresolved;
}

int et_pparse_finish(et_pparser *p, char *err, size_t errlen)
{
    if (!p->bad) {
        if (p->bytes_in == 0)
            set_bad(p, "empty body");
        else if (p->mode == 0)
            set_bad(p, "body too short for a profile");
        else if (p->mode == 1 && !p->z_done)
            set_bad(p, "gzip: truncated stream");
        else if (p->pst != PS_TAG || p->acc_shift != 0)
            set_bad(p, "protobuf: truncated message");
        else if (p->nsample_types == 0)
            set_bad(p, "not a profile.proto (no sample types)");
    }
    int kind = -1;
    if (!p->bad) {
        if (!is_sorted_funcs(p->funcs, p->nfuncs))
            sort_funcs(p->funcs, p->nfuncs);
        if (!is_sorted_locs(p->locs, p->nlocs))
            sort_locs(p->locs, p->nlocs);
        int64_t t0 = p->sample_type[0];
        if (str_eq(p, t0, "goroutine") || str_eq(p, t0, "goroutineleak")) {
            if (!p->gout) {
                set_bad(p, "goroutine profile where a heap profile was expected");
            } else {
                resolve_goroutines(p, str_eq(p, t0, "goroutineleak"));
                kind = ET_PP_GOROUTINE;
            }
        } else if (str_eq(p, t0, "alloc_objects") || str_eq(p, t0, "inuse_space") ||
                   str_eq(p, t0, "inuse_objects") || str_eq(p, t0, "alloc_space")) {
            if (!p->hout) {
                set_bad(p, "heap profile where a goroutine profile was expected");
            } else {
                resolve_heap(p);
                kind = ET_PP_HEAP;
            }
        } else {
            set_bad(p, "unsupported profile type (not goroutine or heap)");
        }
    }
    if (p->bad) {
        if (err && errlen)
            et_strlcpy(err, p->bad_reason, errlen);
        return -1;
    }
    if (err && errlen)
        err[0] = 0;
    return kind;
}
