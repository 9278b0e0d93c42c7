/* ingest_block1.c - Block1 reassembly (see ingest_block1.h).
 *
 * Why the collector does its own Block1 reassembly instead of libcoap's
 * COAP_BLOCK_USE_LIBCOAP: libcoap 4.3.5 sizes its reassembly buffer from the client's Size1
 * option and block numbers with no upper bound (src/coap_block.c, coap_block_build_body), so
 * a hostile client could make it allocate gigabytes before our handler sees a byte. Here the
 * cap is checked on Size1 and on every block, and the answer is a counted 4.13.
 *
 * The table is a small unordered array searched linearly: it holds only bodies in flight
 * (single-datagram bodies never enter it), and a linear scan of a few entries is cheaper
 * than keeping a hash in step with eviction. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest_block1.h"

struct b1_partial {
    uint64_t session;
    uint8_t has_rtag;
    uint8_t taglen;
    uint8_t tag[B1_TAG_MAX];
    uint64_t last_ms;      /* last block that moved it */
    uint8_t *buf;
    size_t len;
    size_t cap;
    uint32_t next;         /* next expected block number */
    unsigned szx;
};

void b1_init(b1_table *t, size_t max_body, size_t budget)
{
    memset(t, 0, sizeof(*t));
    t->max_body = max_body;
    t->budget = budget;
}

static void partial_free(b1_table *t, b1_partial *p)
{
    t->used -= p->cap;
    free(p->buf);
    free(p);
}

/* Takes entry i out of the table (order does not matter), without freeing it. */
static b1_partial *unlink_at(b1_table *t, unsigned i)
{
    b1_partial *p = t->p[i];
    t->p[i] = t->p[--t->n];
    t->p[t->n] = NULL;
    return p;
}

static void drop_at(b1_table *t, unsigned i)
{
    partial_free(t, unlink_at(t, i));
}

static int same_key(const b1_partial *p, const b1_block *b)
{
    return p->session == b->session && p->has_rtag == (b->has_rtag != 0) && p->taglen == b->taglen &&
           (b->taglen == 0 || !memcmp(p->tag, b->tag, b->taglen));
}

static int find(const b1_table *t, const b1_block *b)
{
    for (unsigned i = 0; i < t->n; i++)
        if (same_key(t->p[i], b))
            return (int)i;
    return -1;
}

/* Index of the least recently moved partial that is not `keep` and matches the session
 * filter (any session when all), idle at least min_idle; -1 if none. */
static int oldest(const b1_table *t, const b1_partial *keep, int all, uint64_t session, uint64_t now,
                  uint64_t min_idle)
{
    int best = -1;
    for (unsigned i = 0; i < t->n; i++) {
        const b1_partial *p = t->p[i];
        if (p == keep || (!all && p->session != session) || now - p->last_ms < min_idle || p->last_ms > now)
            continue;
        if (best < 0 || p->last_ms < t->p[best]->last_ms)
            best = (int)i;
    }
    return best;
}

void b1_drop_session(b1_table *t, uint64_t session)
{
    for (unsigned i = 0; i < t->n;) {
        if (t->p[i]->session == session)
            drop_at(t, i);
        else
            i++;
    }
}

void b1_expire(b1_table *t, uint64_t now_ms)
{
    for (unsigned i = 0; i < t->n;) {
        if (now_ms >= t->p[i]->last_ms && now_ms - t->p[i]->last_ms >= B1_IDLE_MS) {
            drop_at(t, i);
            t->expired++;
        } else {
            i++;
        }
    }
}

void b1_clear(b1_table *t)
{
    while (t->n)
        drop_at(t, t->n - 1);
}

size_t b1_held(const b1_table *t)
{
    size_t sum = 0;
    for (unsigned i = 0; i < t->n; i++)
        sum += t->p[i]->cap;
    return sum;
}

void b1_release(b1_table *t, b1_out *out)
{
    if (out->owned)
        partial_free(t, out->owned);
    out->owned = NULL;
    out->body = NULL;
}

static uint32_t echo_of(const b1_block *blk, int more)
{
    return (blk->num << 4) | (more ? 1u << 3 : 0) | blk->szx;
}

static void verdict(b1_out *out, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void verdict(b1_out *out, int code, const char *fmt, ...)
{
    out->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->diag, sizeof(out->diag), fmt, ap);
    va_end(ap);
}

/* Makes room for `need` more bytes of buffer: evicts partials idle for B1_EVICT_IDLE_MS,
 * oldest first, never `keep`. 1 when it fits. */
static int make_room(b1_table *t, const b1_partial *keep, size_t need, uint64_t now)
{
    while (t->used + need > t->budget) {
        int v = oldest(t, keep, 1, 0, now, B1_EVICT_IDLE_MS);
        if (v < 0)
            return 0;
        drop_at(t, (unsigned)v);
        t->evicted++;
    }
    return 1;
}

/* A new partial for blk's key, after the per-session and table caps. NULL: busy. */
static b1_partial *partial_new(b1_table *t, const b1_block *blk)
{
    unsigned mine = 0;
    for (unsigned i = 0; i < t->n; i++)
        mine += t->p[i]->session == blk->session;
    if (mine >= B1_PER_SESSION) {
        /* the client has moved on from its oldest body (a client sends one body at a time
         * per Request-Tag, and a few at most in parallel) */
        int v = oldest(t, NULL, 0, blk->session, blk->now_ms, 0);
        if (v < 0)
            return NULL; /* only when the clock went backwards */
        drop_at(t, (unsigned)v);
        t->evicted++;
    }
    if (t->n >= B1_MAX_PARTIALS) {
        int v = oldest(t, NULL, 1, 0, blk->now_ms, B1_EVICT_IDLE_MS);
        if (v < 0)
            return NULL;
        drop_at(t, (unsigned)v);
        t->evicted++;
    }
    b1_partial *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->session = blk->session;
    p->has_rtag = blk->has_rtag != 0;
    p->taglen = (uint8_t)blk->taglen;
    if (blk->taglen)
        memcpy(p->tag, blk->tag, blk->taglen);
    p->szx = blk->szx;
    p->last_ms = blk->now_ms;
    t->p[t->n++] = p;
    return p;
}

/* Appends the block at its offset, growing the buffer within max_body and the budget. */
static int append(b1_table *t, b1_partial *p, const b1_block *blk, size_t offset)
{
    size_t end = offset + blk->len;
    if (end > p->cap) {
        size_t ncap = p->cap ? 2 * p->cap : 4096;
        while (ncap < end)
            ncap *= 2;
        ncap = (ncap + 4095) & ~(size_t)4095;
        if (ncap > t->max_body)
            ncap = t->max_body;
        if (!make_room(t, p, ncap - p->cap, blk->now_ms))
            return -1;
        uint8_t *nb = realloc(p->buf, ncap);
        if (!nb)
            return -1;
        t->used += ncap - p->cap;
        p->buf = nb;
        p->cap = ncap;
    }
    if (blk->len)
        memcpy(p->buf + offset, blk->data, blk->len);
    p->len = end;
    p->next = blk->num + 1;
    p->last_ms = blk->now_ms;
    return 0;
}

void b1_put(b1_table *t, const b1_block *blk, b1_out *out)
{
    memset(out, 0, sizeof(*out));
    size_t max = t->max_body;
    int i = blk->taglen <= B1_TAG_MAX ? find(t, blk) : -1;
    if (blk->taglen > B1_TAG_MAX) {
        verdict(out, B1_BAD, "%s of %zu bytes; at most %d", blk->has_rtag ? "Request-Tag" : "token", blk->taglen,
                B1_TAG_MAX);
        return;
    }
    /* szx 7 is reserved (BERT, TCP only); a block number this high is over any cap */
    int huge = blk->szx > 6 || blk->num >= (1u << 20);
    size_t chunk = (size_t)1 << ((blk->szx > 6 ? 6 : blk->szx) + 4);
    size_t offset = (size_t)blk->num * chunk;
    if (huge || blk->size1 > max || offset + blk->len > max || (blk->more && blk->len != chunk)) {
        int bad = !huge && blk->more && blk->len != chunk && offset + blk->len <= max && blk->size1 <= max;
        if (bad)
            verdict(out, B1_BAD, "block %u: %zu bytes, expected %zu", (unsigned)blk->num, blk->len, chunk);
        else
            verdict(out, B1_TOO_LARGE, "body over limit %zu", max);
        if (i >= 0)
            drop_at(t, (unsigned)i);
        return;
    }
    b1_partial *p = i >= 0 ? t->p[i] : NULL;
    if (blk->num == 0) {
        if (p && blk->more && p->szx == blk->szx && p->next >= 1 && p->len >= chunk &&
            !memcmp(p->buf, blk->data, chunk)) {
            /* a retransmitted block 0 of the body in progress: ask again for what comes next */
            p->last_ms = blk->now_ms;
            out->code = B1_CONTINUE;
            out->echo = echo_of(blk, 1);
            return;
        }
        if (p) {
            /* the client reused the key for a new body: the old one is abandoned */
            drop_at(t, (unsigned)i);
            t->restarted++;
            p = NULL;
        }
        if (!blk->more) {
            /* the whole body in one block: nothing to buffer */
            out->code = B1_DONE;
            out->body = blk->data;
            out->len = blk->len;
            out->echo = echo_of(blk, 0);
            return;
        }
        if (!(p = partial_new(t, blk))) {
            verdict(out, B1_BUSY, "collector busy: too many bodies in reassembly, retry later");
            return;
        }
    } else if (!p || blk->szx != p->szx || blk->num > p->next || (blk->num < p->next && !blk->more)) {
        verdict(out, B1_INCOMPLETE, "Block1 out of order: start again at block 0");
        return;
    } else if (blk->num < p->next) {
        /* a retransmitted block we already hold (our 2.31 was lost): ask again, idempotently */
        p->last_ms = blk->now_ms;
        out->code = B1_CONTINUE;
        out->echo = echo_of(blk, 1);
        return;
    }
    if (append(t, p, blk, offset)) {
        verdict(out, B1_BUSY, "collector busy: reassembly memory full, retry later");
        if (p->len == 0) {
            /* a body that never got a byte keeps no slot */
            drop_at(t, (unsigned)find(t, blk));
        }
        return;
    }
    if (blk->more) {
        out->code = B1_CONTINUE;
        out->echo = echo_of(blk, 1);
        return;
    }
    /* finished: out of the table now, freed by b1_release once stored */
    unlink_at(t, (unsigned)find(t, blk));
    out->code = B1_DONE;
    out->body = p->buf;
    out->len = p->len;
    out->owned = p;
    out->echo = echo_of(blk, 0);
}
