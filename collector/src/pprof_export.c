/* pprof_export.c - see pprof_export.h. Protobuf wire format by hand: varints, and
 * length-delimited fields whose body is encoded into a scratch buffer first. */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "pprof_export.h"

/* Bounds so a pathological store row cannot make the HTTP thread allocate without limit. */
#define PP_MAX_SAMPLES 100000
#define PP_MAX_FRAMES 256
#define PP_MAX_STRLEN 1024

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} buf;

static void b_reserve(buf *b, size_t n)
{
    if (b->oom || b->len + n <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void b_put(buf *b, const void *d, size_t n)
{
    b_reserve(b, n);
    if (b->oom)
        return;
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void b_varint(buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    do {
        t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    b_put(b, t, n);
}

/* Wire types: 0 varint, 2 length-delimited. */
static void f_varint(buf *b, unsigned field, uint64_t v)
{
    b_varint(b, (uint64_t)field << 3);
    b_varint(b, v);
}

static void f_bytes(buf *b, unsigned field, const void *d, size_t n)
{
    b_varint(b, (uint64_t)field << 3 | 2);
    b_varint(b, n);
    b_put(b, d, n);
}

/* Appends SUB as field FIELD of B and empties SUB for reuse. */
static void f_msg(buf *b, unsigned field, buf *sub)
{
    f_bytes(b, field, sub->p, sub->len);
    b->oom |= sub->oom;
    sub->len = 0;
}

/* ---- tables: strings, functions, locations (open addressing, grow at 1/2 load) ---------- */

typedef struct entry {
    uint64_t key_a, key_b; /* string: hash + index; function: name,file; location: function,line */
    uint64_t id;           /* 1-based; 0 = empty slot */
} entry;

typedef struct table {
    entry *slots;
    size_t cap, n;
} table;

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9e3779b97f4a7c15ULL ^ (b + 0x632be59bd9b4e019ULL + (a << 6) + (a >> 2));
    h ^= h >> 31;
    return h * 0xbf58476d1ce4e5b9ULL;
}

static int t_grow(table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    entry *s = calloc(cap, sizeof(*s));
    if (!s)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].id)
            continue;
        size_t j = mix(t->slots[i].key_a, t->slots[i].key_b) & (cap - 1);
        while (s[j].id)
            j = (j + 1) & (cap - 1);
        s[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = s;
    t->cap = cap;
    return 0;
}

struct pprof_builder {
    char **strs;           /* string table; strs[0] = "" */
    size_t nstrs, capstrs;
    table strtab;          /* key_a = hash, key_b unused; id = index + 1 */
    table funcs;           /* key (name index, file index) -> function id */
    table locs;            /* key (function id, line) -> location id */
    buf fn_enc, loc_enc;   /* Function and Location messages, encoded as they are created */
    buf samples;           /* Sample messages */
    size_t nsamples;
    int failed;
};

static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* Index of S in the string table, adding it if new; -1 on allocation failure. */
static int64_t intern(pprof_builder *b, const char *s)
{
    if (!s)
        s = "";
    size_t n = strnlen(s, PP_MAX_STRLEN);
    uint64_t h = str_hash(s, n);
    if ((b->strtab.n + 1) * 2 > b->strtab.cap && t_grow(&b->strtab))
        return -1;
    size_t j = mix(h, 0) & (b->strtab.cap - 1);
    for (; b->strtab.slots[j].id; j = (j + 1) & (b->strtab.cap - 1)) {
        entry *e = &b->strtab.slots[j];
        const char *t = b->strs[e->id - 1];
        if (e->key_a == h && strlen(t) == n && !memcmp(t, s, n))
            return (int64_t)e->id - 1;
    }
    if (b->nstrs == b->capstrs) {
        size_t cap = b->capstrs ? b->capstrs * 2 : 64;
        char **p = realloc(b->strs, cap * sizeof(*p));
        if (!p)
            return -1;
        b->strs = p;
        b->capstrs = cap;
    }
    char *copy = malloc(n + 1);
    if (!copy)
        return -1;
    memcpy(copy, s, n);
    copy[n] = 0;
    b->strs[b->nstrs++] = copy;
    b->strtab.slots[j] = (entry){h, 0, b->nstrs};
    b->strtab.n++;
    return (int64_t)b->nstrs - 1;
}

/* Finds or creates the entry (a, b) in T; *created says whether it is new. 0 = failure. */
static uint64_t lookup(table *t, uint64_t a, uint64_t b2, int *created)
{
    *created = 0;
    if ((t->n + 1) * 2 > t->cap && t_grow(t))
        return 0;
    size_t j = mix(a, b2) & (t->cap - 1);
    for (; t->slots[j].id; j = (j + 1) & (t->cap - 1))
        if (t->slots[j].key_a == a && t->slots[j].key_b == b2)
            return t->slots[j].id;
    t->slots[j] = (entry){a, b2, ++t->n};
    *created = 1;
    return t->n;
}

pprof_builder *pprof_new(void)
{
    pprof_builder *b = calloc(1, sizeof(*b));
    if (b && intern(b, "") != 0) {
        pprof_free(b);
        return NULL;
    }
    return b;
}

void pprof_free(pprof_builder *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nstrs; i++)
        free(b->strs[i]);
    free(b->strs);
    free(b->strtab.slots);
    free(b->funcs.slots);
    free(b->locs.slots);
    free(b->fn_enc.p);
    free(b->loc_enc.p);
    free(b->samples.p);
    free(b);
}

static uint64_t location_of(pprof_builder *b, const pprof_frame *f)
{
    int64_t name = intern(b, f->function), file = intern(b, f->file);
    if (name < 0 || file < 0)
        return 0;
    int created;
    uint64_t fid = lookup(&b->funcs, (uint64_t)name, (uint64_t)file, &created);
    if (!fid)
        return 0;
    buf m = {0};
    if (created) {
        f_varint(&m, 1, fid);
        f_varint(&m, 2, (uint64_t)name);
        f_varint(&m, 3, (uint64_t)name); /* system_name */
        f_varint(&m, 4, (uint64_t)file);
        f_msg(&b->fn_enc, 5, &m);        /* Profile.function = 5 */
    }
    uint64_t line = f->line > 0 ? (uint64_t)f->line : 0;
    uint64_t lid = lookup(&b->locs, fid, line, &created);
    if (lid && created) {
        buf ln = {0};
        f_varint(&ln, 1, fid);
        f_varint(&ln, 2, line);
        f_varint(&m, 1, lid);
        f_varint(&m, 2, 1);              /* mapping_id: the placeholder mapping */
        f_msg(&m, 4, &ln);               /* Location.line */
        f_msg(&b->loc_enc, 4, &m);       /* Profile.location = 4 */
        free(ln.p);
    }
    free(m.p);
    return b->fn_enc.oom || b->loc_enc.oom ? 0 : lid;
}

int pprof_add_sample(pprof_builder *b, const pprof_frame *frames, size_t n, int64_t count)
{
    if (b->failed || b->nsamples >= PP_MAX_SAMPLES)
        return -1;
    if (n > PP_MAX_FRAMES)
        n = PP_MAX_FRAMES;
    buf ids = {0}, m = {0};
    for (size_t i = 0; i < n; i++) {
        uint64_t lid = location_of(b, &frames[i]);
        if (!lid) {
            b->failed = 1;
            free(ids.p);
            return -1;
        }
        b_varint(&ids, lid);
    }
    buf val = {0};
    b_varint(&val, (uint64_t)(count < 0 ? 0 : count));
    f_bytes(&m, 1, ids.p, ids.len);   /* Sample.location_id, packed */
    f_bytes(&m, 2, val.p, val.len);   /* Sample.value, packed */
    m.oom |= ids.oom | val.oom;
    f_msg(&b->samples, 2, &m);        /* Profile.sample = 2 */
    free(ids.p);
    free(val.p);
    free(m.p);
    b->nsamples++;
    if (b->samples.oom)
        b->failed = 1;
    return b->failed ? -1 : 0;
}

int pprof_encode(pprof_builder *b, int64_t time_ms, uint8_t **out, size_t *outlen)
{
    if (b->failed)
        return -1;
    int64_t goroutine = intern(b, "goroutine"), count = intern(b, "count"), edg = intern(b, "edgetrace");
    if (goroutine < 0 || count < 0 || edg < 0)
        return -1;
    buf p = {0}, m = {0};
    f_varint(&m, 1, (uint64_t)goroutine);
    f_varint(&m, 2, (uint64_t)count);
    f_msg(&p, 1, &m);                 /* sample_type */
    b_put(&p, b->samples.p, b->samples.len);
    f_varint(&m, 1, 1);               /* Mapping.id */
    f_varint(&m, 5, (uint64_t)edg);   /* filename */
    f_varint(&m, 7, 1);               /* has_functions */
    f_varint(&m, 8, 1);               /* has_filenames */
    f_varint(&m, 9, 1);               /* has_line_numbers */
    f_msg(&p, 3, &m);
    b_put(&p, b->loc_enc.p, b->loc_enc.len);
    b_put(&p, b->fn_enc.p, b->fn_enc.len);
    for (size_t i = 0; i < b->nstrs; i++)
        f_bytes(&p, 6, b->strs[i], strlen(b->strs[i]));
    if (time_ms > 0)
        f_varint(&p, 9, (uint64_t)time_ms * 1000000u);
    f_varint(&m, 1, (uint64_t)goroutine);
    f_varint(&m, 2, (uint64_t)count);
    f_msg(&p, 11, &m);                /* period_type */
    f_varint(&p, 12, 1);              /* period */
    free(m.p);
    if (p.oom) {
        free(p.p);
        return -1;
    }
    *out = p.p;
    *outlen = p.len;
    return 0;
}

int pprof_finish_gz(pprof_builder *b, int64_t time_ms, uint8_t **out, size_t *outlen)
{
    uint8_t *raw = NULL;
    size_t rawlen = 0;
    int rc = pprof_encode(b, time_ms, &raw, &rawlen);
    pprof_free(b);
    if (rc)
        return -1;
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* windowBits 15 + 16: a gzip wrapper, which is what pprof expects of *.pb.gz. */
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(raw);
        return -1;
    }
    uLong cap = deflateBound(&z, (uLong)rawlen) + 32;
    uint8_t *gz = malloc(cap);
    if (!gz) {
        deflateEnd(&z);
        free(raw);
        return -1;
    }
    z.next_in = raw;
    z.avail_in = (uInt)rawlen;
    z.next_out = gz;
    z.avail_out = (uInt)cap;
    rc = deflate(&z, Z_FINISH);
    size_t n = z.total_out;
    deflateEnd(&z);
    free(raw);
    if (rc != Z_STREAM_END) {
        free(gz);
        return -1;
    }
    *out = gz;
    *outlen = n;
    return 0;
}
