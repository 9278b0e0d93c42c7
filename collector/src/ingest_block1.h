/* ingest_block1.h - Block1 (RFC 7959) reassembly of request bodies, as a pure function over
 * (state, block): no libcoap types, no I/O, no clock (the caller passes the time). ingest.c
 * parses the CoAP options into a b1_block, calls b1_put and turns the verdict into an
 * answer; tests/fuzz/fuzz_collector_block1.c and tests/unit/test_collector_block1.c drive it
 * directly.
 *
 * Which body a block belongs to: the key is (session, Request-Tag) when the request carries a
 * Request-Tag (RFC 9175; libcoap clients send one per body), else (session, token). Never the
 * session alone: a delayed block 0 of an old body then only touches the old body's state, so
 * it cannot be spliced into a new one.
 *
 * Memory: a body's buffer grows in 4 KiB steps, doubling, never beyond max_body; the
 * capacities of all buffers together stay under the table's budget, so a flood of half-sent
 * bodies gets 5.03, not RAM. A finished body leaves the table at once and its buffer is freed
 * by b1_release right after the caller has stored it. Partials that nobody continues are
 * expired (b1_expire) or, under budget pressure, evicted oldest first; both are counted. */
#ifndef COLL_INGEST_BLOCK1_H
#define COLL_INGEST_BLOCK1_H

#include <stddef.h>
#include <stdint.h>

#define B1_TAG_MAX 8            /* Request-Tag is 0..8 bytes (RFC 9175); tokens are 0..8 bytes */
#define B1_MAX_PARTIALS 1024    /* bodies in reassembly at once */
#define B1_PER_SESSION 4        /* bodies in reassembly per session: older ones are abandoned */
/* A partial idle this long is dropped: longer than a CoAP client retransmits one block
 * (MAX_TRANSMIT_WAIT, 93 s with the RFC 7252 defaults). */
#define B1_IDLE_MS 120000u
/* Under budget pressure a partial idle this long may be evicted for a body that is moving. */
#define B1_EVICT_IDLE_MS 2000u

/* One Block1 request as it arrived. */
typedef struct b1_block {
    uint64_t session;      /* the caller's session key (opaque) */
    int has_rtag;          /* 1: tag is the Request-Tag; 0: tag is the token */
    const uint8_t *tag;
    size_t taglen;
    uint32_t num;          /* block number */
    unsigned szx;          /* size exponent: block size is 1 << (szx + 4) */
    int more;              /* the M bit */
    size_t size1;          /* announced total size (Size1), 0 when absent */
    const uint8_t *data;   /* this block's payload */
    size_t len;
    uint64_t now_ms;       /* monotonic clock */
} b1_block;

typedef struct b1_partial b1_partial;

typedef struct b1_table {
    size_t max_body;
    size_t budget;          /* cap on the sum of buffer capacities */
    size_t used;            /* sum of buffer capacities, finished bodies not yet released included */
    unsigned n;
    b1_partial *p[B1_MAX_PARTIALS];
    uint64_t expired;       /* partials dropped after B1_IDLE_MS */
    uint64_t evicted;       /* partials dropped to make room (budget, table or per-session cap) */
    uint64_t restarted;     /* a block 0 that replaced a partial under the same key */
} b1_table;

/* The verdict of b1_put. */
enum {
    B1_DONE = 0,          /* body complete: out->body/out->len, then b1_release */
    B1_CONTINUE = 231,    /* 2.31: send the next block (echo out->echo) */
    B1_BAD = 400,         /* a non-final block of the wrong size, or a tag over 8 bytes */
    B1_INCOMPLETE = 408,  /* no body in progress for this key at this block: start at block 0 */
    B1_TOO_LARGE = 413,   /* over max_body (Size1 or the blocks themselves) */
    B1_BUSY = 503,        /* the budget is spent on bodies that are moving: retry later */
};

typedef struct b1_out {
    int code;              /* one of the B1_ values */
    uint32_t echo;         /* Block1 option value to echo in the answer */
    const uint8_t *body;   /* B1_DONE: the whole body */
    size_t len;
    b1_partial *owned;     /* B1_DONE: the finished body's state, freed by b1_release */
    char diag[96];         /* why, for every code but B1_DONE and B1_CONTINUE */
} b1_out;

void b1_init(b1_table *t, size_t max_body, size_t budget);
/* Feeds one block. */
void b1_put(b1_table *t, const b1_block *blk, b1_out *out);
/* Frees a finished body (out of a B1_DONE; no-op otherwise). */
void b1_release(b1_table *t, b1_out *out);
/* Drops every partial of a session (it ended). */
void b1_drop_session(b1_table *t, uint64_t session);
/* Drops partials idle for B1_IDLE_MS or more. */
void b1_expire(b1_table *t, uint64_t now_ms);
/* Drops everything. */
void b1_clear(b1_table *t);
/* Bytes the table's partials hold (the sum of their capacities): `used` must equal it plus
 * the finished bodies not yet released. For the fuzz target's invariant. */
size_t b1_held(const b1_table *t);

#endif
