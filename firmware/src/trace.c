/* trace.c - streaming Go execution-trace reader: parser lifecycle, input framing, batch dispatch.
 * See trace.h; the other parts are trace_events.c, trace_goroutines.c, trace_tables.c,
 * trace_summary.c (shared definitions: trace_int.h).
 *
 * Wire format, learned from Go's sources (nothing copied):
 *   - Header "go 1.%d trace\x00\x00\x00" (16 bytes): Go 1.27 src/internal/trace/version/version.go
 *     (headerFmt; Go122, Go123, Go125, Go126 are the v2 versions; 1.11-1.21 are the old v1 format).
 *   - Batches: Go 1.27 src/internal/trace/batch.go readBatch: EvEventBatch(1) or
 *     EvExperimentalBatch(49)+experiment byte, then uvarints gen, M, base timestamp, size
 *     (<= tracev2.MaxBatchSize = 64 KiB), then size bytes. Go 1.26+ ends each generation with
 *     a lone EvEndOfGeneration(52) byte (same file); before 1.26 a generation ends when a batch
 *     of the next generation appears (generation.go readGenerationWithSpill).
 *   - Batch kinds by first data byte: EvStrings(4), EvStacks(2), EvCPUSamples(6), the sync
 *     batch - a lone EvFrequency(8) before 1.25, EvSync(50){EvFrequency, EvClockSnapshot(51)}
 *     from 1.25 (generation.go processBatch/setSyncBatch); anything else is an M's events.
 *   - Events: type byte, then a fixed number of uvarints; the first is the timestamp delta
 *     from the previous event of the batch (batchcursor.go readTimedBaseEvent). Arg counts:
 *     Go 1.27 src/internal/trace/tracev2/events.go specs (same numbering back to Go 1.22:
 *     src/internal/trace/v2/event/go122/event.go in Go 1.22; version.go slices the table per
 *     version: 1.22 up to EvUserLog(44), 1.23 and 1.25 up to EvGoStatusStack(48)).
 *   - Strings: EvString id len bytes (len <= 1 KiB); stacks: EvStack id nframes{pc func file line}
 *     (nframes <= 128), frames innermost first (generation.go addStrings/addStacks).
 *   - The runtime flushes each generation's stack table (and late strings) after all M
 *     buffers (Go 1.27 src/runtime/trace.go traceAdvance; Go 1.22 src/runtime/trace2.go).
 * Goroutine semantics (which event moves which goroutine from what to what, and how many
 * StateTransition events Go's parser emits): Go 1.27 src/internal/trace/order.go (advance*)
 * and event.go (Event.StateTransition). GoSwitch/GoSwitchDestroy emit three transitions.
 */
#include "trace.h"
#include "trace_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t c = 16;
    while (c < n && c < (1u << 30))
        c <<= 1;
    return c;
}

void et_trace_limits_default(et_trace_limits *l)
{
    l->max_goroutines = 65536;
    l->max_strings = 16384;
    l->max_string_bytes = 1u << 20;
    l->max_stacks = 8192;
    l->max_frames = 131072;
    l->max_sites = 1024;
    l->max_threads = 4096;
}

static void limits_fill(et_trace_limits *out, const et_trace_limits *in)
{
    et_trace_limits d;
    et_trace_limits_default(&d);
    *out = in ? *in : d;
#define FILL(f, hi) do { if (!out->f) out->f = d.f; if (out->f > (hi)) out->f = (hi); } while (0)
    FILL(max_goroutines, 1u << 24);
    FILL(max_strings, 1u << 22);
    FILL(max_string_bytes, 1u << 28);
    FILL(max_stacks, 1u << 22);
    FILL(max_frames, 1u << 24);
    FILL(max_sites, 1u << 16);
    FILL(max_threads, 1u << 20);
#undef FILL
    if (out->max_sites < 2)
        out->max_sites = 2;
}

size_t et_trace_memory_bound(const et_trace_limits *in)
{
    et_trace_limits l;
    limits_fill(&l, in);
    size_t n = sizeof(struct et_trace_parser);
    n += MAX_BATCH + BATCH_HDR_MAX;
    n += (size_t)l.max_goroutines * sizeof(struct tg);
    n += (size_t)pow2_at_least(2ull * l.max_goroutines) * sizeof(uint32_t);
    n += (size_t)pow2_at_least(2ull * l.max_threads) * sizeof(struct tm);
    n += (size_t)pow2_at_least(2ull * l.max_strings) * sizeof(struct tstr);
    n += l.max_string_bytes;
    n += (size_t)pow2_at_least(2ull * l.max_stacks) * sizeof(struct tstk);
    n += (size_t)l.max_frames * sizeof(struct tfr);
    n += (size_t)l.max_sites * sizeof(struct tsite);
    n += (size_t)pow2_at_least(2ull * l.max_sites) * sizeof(uint32_t);
    return n;
}

et_trace_parser *et_trace_parser_new(const et_trace_limits *limits)
{
    et_trace_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    limits_fill(&p->lim, limits);
    p->footprint = et_trace_memory_bound(&p->lim);
    p->gmask = pow2_at_least(2ull * p->lim.max_goroutines) - 1;
    p->mmask = pow2_at_least(2ull * p->lim.max_threads) - 1;
    p->smask = pow2_at_least(2ull * p->lim.max_strings) - 1;
    p->kmask = pow2_at_least(2ull * p->lim.max_stacks) - 1;
    p->sitemask = pow2_at_least(2ull * p->lim.max_sites) - 1;
    /* calloc: pages never touched are never resident, so a small trace costs little. */
    p->pend = malloc(MAX_BATCH + BATCH_HDR_MAX);
    p->g = calloc(p->lim.max_goroutines, sizeof *p->g);
    p->gidx = calloc((size_t)p->gmask + 1, sizeof *p->gidx);
    p->m = calloc((size_t)p->mmask + 1, sizeof *p->m);
    p->s = calloc((size_t)p->smask + 1, sizeof *p->s);
    p->sbytes = malloc(p->lim.max_string_bytes);
    p->k = calloc((size_t)p->kmask + 1, sizeof *p->k);
    p->fr = malloc((size_t)p->lim.max_frames * sizeof *p->fr);
    p->site = calloc(p->lim.max_sites, sizeof *p->site);
    p->sidx = calloc((size_t)p->sitemask + 1, sizeof *p->sidx);
    if (!p->pend || !p->g || !p->gidx || !p->m || !p->s || !p->sbytes || !p->k || !p->fr || !p->site || !p->sidx) {
        et_trace_parser_free(p);
        return NULL;
    }
    /* Records are handed out from g_hw upwards, then from the free list of retired ones
     * (threaded through aseq), so untouched records are never written. */
    p->g_free = UINT32_MAX;
    /* Site 0: none; site 1: overflow. Reason 0: "". */
    p->nsites = 2;
    et_strlcpy(p->site[1].top, "(sites overflow)", ET_FUNC_MAX);
    et_strlcpy(p->site[1].user.func, "(sites overflow)", ET_FUNC_MAX);
    p->nreasons = 1;
    return p;
}

void et_trace_parser_free(et_trace_parser *p)
{
    if (!p)
        return;
    free(p->pend); free(p->g); free(p->gidx); free(p->m); free(p->s); free(p->sbytes);
    free(p->k); free(p->fr); free(p->site); free(p->sidx);
    free(p);
}

size_t et_trace_parser_footprint(const et_trace_parser *p) { return p->footprint; }

void et_trace_parser_set_goroutine_fn(et_trace_parser *p, et_trace_goroutine_fn fn, void *ctx)
{
    p->gfn = fn;
    p->gctx = ctx;
}

/* ---- status ---- */
__attribute__((format(printf, 2, 3)))
void tr_partial(et_trace_parser *p, const char *fmt, ...)
{
    if (p->status == ET_TRACE_OK)
        p->status = ET_TRACE_PARTIAL;
    if (p->error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof p->error, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 3, 4)))
int tr_die(et_trace_parser *p, int status, const char *fmt, ...)
{
    p->dead = 1;
    /* A stream that already yielded generations keeps them, marked partial. */
    if (p->generations || p->gen_open)
        status = ET_TRACE_PARTIAL;
    if (p->status < status)
        p->status = (uint8_t)status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof p->error, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- framing ---- */
struct bhdr {
    int end_of_gen;
    uint8_t exp;
    uint64_t gen, m, ts, size;
    size_t hdrlen, total;
};

/* 1 parsed, 0 need more bytes, -1 fatal (message set). */
static int parse_bhdr(et_trace_parser *p, const uint8_t *b, size_t n, struct bhdr *h)
{
    if (n < 1)
        return 0;
    memset(h, 0, sizeof *h);
    uint8_t t = b[0];
    if (t == EV_ENDOFGEN && p->ver >= 26) {
        h->end_of_gen = 1;
        h->total = 1;
        return 1;
    }
    if (t != EV_EVENTBATCH && !(t == EV_EXPBATCH && p->ver >= 23))
        return tr_die(p, ET_TRACE_ERR_FORMAT, "expected a batch, got byte 0x%02x after %llu bytes (garbage or corrupt trace)",
                   t, (unsigned long long)p->bytes);
    const uint8_t *q = b + 1, *end = b + n;
    if (t == EV_EXPBATCH) {
        if (q >= end)
            return 0;
        h->exp = *q++;
        if (!h->exp)
            h->exp = 0xff;
    }
    uint64_t *f[4] = {&h->gen, &h->m, &h->ts, &h->size};
    for (int i = 0; i < 4; i++) {
        int r = uv(&q, end, f[i]);
        if (r == 0)
            return n >= BATCH_HDR_MAX ? tr_die(p, ET_TRACE_ERR_FORMAT, "corrupt batch header") : 0;
        if (r < 0)
            return tr_die(p, ET_TRACE_ERR_FORMAT, "corrupt batch header (varint overflow)");
    }
    if (h->size > MAX_BATCH)
        return tr_die(p, ET_TRACE_ERR_FORMAT, "invalid batch size %llu, maximum is %u", (unsigned long long)h->size, MAX_BATCH);
    h->hdrlen = (size_t)(q - b);
    h->total = h->hdrlen + (size_t)h->size;
    return 1;
}

static void do_batch(et_trace_parser *p, const struct bhdr *h, const uint8_t *b)
{
    p->batches++;
    if (h->end_of_gen) {
        tr_gen_end(p);
        return;
    }
    if (h->gen == 0) {
        p->trunc.malformed++;
        tr_partial(p, "batch with invalid generation 0");
        return;
    }
    if (p->gen_open && h->gen != p->cur_gen) {
        if (!(p->ver < 26 && h->gen == p->cur_gen + 1))
            tr_partial(p, "generation %llu follows %llu without an end-of-generation (out of order or truncated)",
                    (unsigned long long)h->gen, (unsigned long long)p->cur_gen);
        tr_gen_end(p);
    }
    if (!p->gen_open)
        tr_gen_begin(p, h->gen);
    const uint8_t *d = b + h->hdrlen, *end = d + h->size;
    if (h->exp || d == end)
        return; /* experimental batches (alloc/free events) carry nothing we use */
    switch (d[0]) {
    case EV_STRINGS: tr_do_strings(p, d, end); return;
    case EV_STACKS: tr_do_stacks(p, d, end); return;
    case EV_CPUSAMPLES: return;
    case EV_FREQUENCY:
        if (p->ver < 25) { tr_do_sync(p, h->ts, d, end); return; }
        break;
    case EV_SYNC:
        if (p->ver >= 25) { tr_do_sync(p, h->ts, d, end); return; }
        break;
    default:
        break;
    }
    tr_do_events(p, h->m, h->ts, d, end);
}

static int check_header(et_trace_parser *p)
{
    static const char pre[] = "go 1.";
    if (memcmp(p->hdr, pre, 5) != 0)
        return tr_die(p, ET_TRACE_ERR_FORMAT, "bad file format: not a Go execution trace");
    int v = 0, i = 5;
    while (i < 8 && p->hdr[i] >= '0' && p->hdr[i] <= '9')
        v = v * 10 + (p->hdr[i++] - '0');
    static const char tail[] = " trace\0\0\0";
    if (i == 5 || i + 9 > 16 || memcmp(p->hdr + i, tail, 9) != 0) {
        /* "go 1.5 trace\0\0\0\0" style headers of the old format have a different padding. */
        if (i > 5 && i + 6 <= 16 && memcmp(p->hdr + i, " trace", 6) == 0 && v < 22)
            return tr_die(p, ET_TRACE_ERR_VERSION, "unsupported trace version go 1.%d (pre-1.22 format)", v);
        return tr_die(p, ET_TRACE_ERR_FORMAT, "bad file format: not a Go execution trace");
    }
    switch (v) {
    case 22: p->maxev = 44; break;
    case 23:
    case 25:
    case 26: p->maxev = 48; break;
    default:
        if (v < 22)
            return tr_die(p, ET_TRACE_ERR_VERSION, "unsupported trace version go 1.%d (pre-1.22 format)", v);
        return tr_die(p, ET_TRACE_ERR_VERSION, "unsupported trace version go 1.%d (newer than this reader)", v);
    }
    p->ver = v;
    return 0;
}

int et_trace_parser_feed(et_trace_parser *p, const uint8_t *buf, size_t len)
{
    if (p->dead)
        return -1;
    while (p->hdr_len < 16 && len) {
        p->hdr[p->hdr_len++] = *buf++;
        len--;
        p->bytes++;
        if (p->hdr_len <= 5 && p->hdr[p->hdr_len - 1] != "go 1."[p->hdr_len - 1])
            return tr_die(p, ET_TRACE_ERR_FORMAT, "bad file format: not a Go execution trace");
    }
    if (p->hdr_len < 16)
        return 0;
    if (!p->ver && check_header(p) < 0)
        return -1;
    struct bhdr h;
    while (len) {
        if (p->pend_len == 0) {
            int r = parse_bhdr(p, buf, len, &h);
            if (r < 0)
                return -1;
            if (r > 0 && h.total <= len) { /* whole batch in this chunk: no copy */
                do_batch(p, &h, buf);
                buf += h.total;
                len -= h.total;
                p->bytes += h.total;
                continue;
            }
        }
        if (p->pend_total == 0) {
            size_t take = ET_MIN(len, (size_t)BATCH_HDR_MAX - p->pend_len);
            memcpy(p->pend + p->pend_len, buf, take);
            p->pend_len += (uint32_t)take;
            buf += take;
            len -= take;
            int r = parse_bhdr(p, p->pend, p->pend_len, &h);
            if (r < 0)
                return -1;
            if (r == 0)
                continue;
            p->pend_total = (uint32_t)h.total;
            if (p->pend_len > p->pend_total) { /* took bytes of the next batch: give them back */
                size_t excess = p->pend_len - p->pend_total;
                buf -= excess;
                len += excess;
                p->pend_len = p->pend_total;
            }
        }
        size_t take = ET_MIN(len, (size_t)(p->pend_total - p->pend_len));
        memcpy(p->pend + p->pend_len, buf, take);
        p->pend_len += (uint32_t)take;
        buf += take;
        len -= take;
        if (p->pend_len == p->pend_total) {
            if (parse_bhdr(p, p->pend, p->pend_len, &h) != 1)
                return -1;
            p->bytes += p->pend_total;
            p->pend_len = p->pend_total = 0;
            do_batch(p, &h, p->pend);
        }
    }
    return p->dead ? -1 : 0;
}

int et_trace_summarize(const uint8_t *data, size_t len, const et_trace_limits *limits, et_trace_summary *out)
{
    et_trace_parser *p = et_trace_parser_new(limits);
    if (!p) {
        memset(out, 0, sizeof *out);
        out->status = ET_TRACE_ERR_FORMAT;
        et_strlcpy(out->error, "out of memory", sizeof out->error);
        return out->status;
    }
    et_trace_parser_feed(p, data, len);
    int r = et_trace_parser_finish(p, out);
    et_trace_parser_free(p);
    return r;
}
