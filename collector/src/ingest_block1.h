/* ingest_block1.h - Block1 (RFC 7959) reassembly of one request body, as a pure function over
 * (state, block): no libcoap types, no I/O, no clock. ingest.c parses the CoAP options into a
 * b1_block, calls b1_put and turns the verdict into an answer; the fuzz target
 * tests/fuzz/fuzz_collector_block1.c drives it directly.
 *
 * Memory: a body's buffer grows in 4 KiB steps, doubling, never beyond max_body, and the
 * capacities of all buffers together stay under a budget the caller owns (b1_budget), so a
 * flood of half-sent bodies gets 5.03, not RAM. */
#ifndef COLL_INGEST_BLOCK1_H
#define COLL_INGEST_BLOCK1_H

#include <stddef.h>
#include <stdint.h>

/* One Block1 request as it arrived. */
typedef struct b1_block {
    uint32_t num;          /* block number */
    unsigned szx;          /* size exponent: block size is 1 << (szx + 4) */
    int more;              /* the M bit */
    size_t size1;          /* announced total size (Size1), 0 when absent */
    const uint8_t *data;   /* this block's payload */
    size_t len;
} b1_block;

/* All bodies together: bytes allocated and the cap. */
typedef struct b1_budget {
    size_t used;
    size_t cap;
    size_t max_body;
} b1_budget;

/* One body being reassembled. */
typedef struct b1_state {
    uint8_t *buf;
    size_t len;
    size_t cap;        /* grows with the body (never beyond max_body) */
    uint32_t next;     /* next expected block number */
    unsigned szx;
    int active;        /* block 0 seen */
} b1_state;

/* The verdict of b1_put. */
enum {
    B1_DONE = 0,          /* body complete: out->body/out->len */
    B1_CONTINUE = 231,    /* 2.31: send the next block (echo out->echo) */
    B1_BAD = 400,         /* a non-final block of the wrong size */
    B1_INCOMPLETE = 408,  /* out of order: start again at block 0 */
    B1_TOO_LARGE = 413,   /* over max_body (Size1 or the blocks themselves) */
    B1_BUSY = 503,        /* the budget is spent: retry later */
};

typedef struct b1_out {
    int code;              /* one of the B1_ values */
    uint32_t echo;         /* Block1 option value to echo in the answer */
    const uint8_t *body;   /* B1_DONE: the whole body (inside the state's buffer) */
    size_t len;
    char diag[96];         /* why, for every code but B1_DONE and B1_CONTINUE */
} b1_out;

/* Feeds one block into st. On B1_BAD and B1_TOO_LARGE the state is reset (its buffer freed). */
void b1_put(b1_state *st, b1_budget *bud, const b1_block *blk, b1_out *out);

/* Frees the state's buffer and returns its bytes to the budget. */
void b1_reset(b1_state *st, b1_budget *bud);

#endif
