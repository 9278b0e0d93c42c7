/* ingest_block1.c - Block1 reassembly of one body (see ingest_block1.h).
 *
 * Why the collector does its own Block1 reassembly instead of libcoap's
 * COAP_BLOCK_USE_LIBCOAP: libcoap 4.3.5 sizes its reassembly buffer from the client's Size1
 * option and block numbers with no upper bound (src/coap_block.c, coap_block_build_body), so
 * a hostile client could make it allocate gigabytes before our handler sees a byte. Here the
 * cap is checked on Size1 and on every block, and the answer is a counted 4.13. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest_block1.h"

void b1_reset(b1_state *st, b1_budget *bud)
{
    bud->used -= st->cap;
    free(st->buf);
    memset(st, 0, sizeof(*st));
}

static uint32_t echo_of(const b1_block *blk, int more)
{
    return (blk->num << 4) | (more ? 1u << 3 : 0) | blk->szx;
}

void b1_put(b1_state *st, b1_budget *bud, const b1_block *blk, b1_out *out)
{
    memset(out, 0, sizeof(*out));
    size_t max = bud->max_body;
    if (blk->szx > 6 || blk->num > (1u << 20)) {
        /* szx 7 is reserved (BERT, TCP only); a block number this high is over any cap */
        out->code = B1_TOO_LARGE;
        snprintf(out->diag, sizeof(out->diag), "body over limit %zu", max);
        b1_reset(st, bud);
        return;
    }
    size_t chunk = (size_t)1 << (blk->szx + 4);
    size_t offset = (size_t)blk->num * chunk;
    if (blk->size1 > max || offset + blk->len > max || (blk->more && blk->len != chunk)) {
        int bad = blk->more && blk->len != chunk && offset + blk->len <= max && blk->size1 <= max;
        out->code = bad ? B1_BAD : B1_TOO_LARGE;
        if (bad)
            snprintf(out->diag, sizeof(out->diag), "block %u: %zu bytes, expected %zu", (unsigned)blk->num, blk->len,
                     chunk);
        else
            snprintf(out->diag, sizeof(out->diag), "body over limit %zu", max);
        b1_reset(st, bud);
        return;
    }
    if (blk->num == 0) {
        st->active = 1;
        st->len = 0;
        st->next = 0;
        st->szx = blk->szx;
    }
    if (!st->active || blk->szx != st->szx || blk->num > st->next) {
        out->code = B1_INCOMPLETE;
        snprintf(out->diag, sizeof(out->diag), "Block1 out of order: start again at block 0");
        return;
    }
    if (blk->num < st->next && blk->more) {
        /* A retransmitted block we already hold (our 2.31 was lost): ask again for what
         * comes next, idempotently. */
        out->code = B1_CONTINUE;
        out->echo = echo_of(blk, 1);
        return;
    }
    if (blk->num == st->next) {
        if (offset + blk->len > st->cap) {
            size_t ncap = st->cap ? 2 * st->cap : 4096;
            while (ncap < offset + blk->len)
                ncap *= 2;
            ncap = (ncap + 4095) & ~(size_t)4095;
            if (ncap > max)
                ncap = max;
            uint8_t *nb = bud->used - st->cap + ncap <= bud->cap ? realloc(st->buf, ncap) : NULL;
            if (!nb) {
                out->code = B1_BUSY;
                snprintf(out->diag, sizeof(out->diag), "collector busy: reassembly memory full, retry later");
                return;
            }
            bud->used += ncap - st->cap;
            st->buf = nb;
            st->cap = ncap;
        }
        if (blk->len)
            memcpy(st->buf + offset, blk->data, blk->len);
        st->len = offset + blk->len;
        st->next = blk->num + 1;
    }
    if (blk->more) {
        out->code = B1_CONTINUE;
        out->echo = echo_of(blk, 1);
        return;
    }
    out->code = B1_DONE;
    out->body = st->buf;
    out->len = st->len;
    out->echo = echo_of(blk, 0);
}
