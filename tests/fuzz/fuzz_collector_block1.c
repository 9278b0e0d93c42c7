/* fuzz_collector_block1.c - arbitrary sequences of Block1 requests into the collector's
 * reassembly (collector/src/ingest_block1.c), with the clock moving, sessions ending and
 * partials expiring; small limits (4 KiB bodies, 16 KiB budget) so eviction and 5.03 paths run.
 *
 * Input: records of 6 header bytes and a payload.
 *   h0: bits 0-1 session, 2-3 tag, 4 Request-Tag (else token), 5 M bit, 6-7 action
 *       (0-2 a block; 3 housekeeping: expire / end a session, by h1)
 *   h1, h2: block number (h2 bit 7: a huge number); h3: bits 0-2 szx, bit 3 Size1 present
 *   h4: payload length (bit 7: exactly one block), h5: clock step in 100 ms units
 * Checks after every step: the budget accounting adds up and stays under the cap, every
 * verdict is a known code with a diagnostic where one is due, and a finished body ends with
 * the bytes of the block that finished it and is no longer than max_body.
 * Seeds: tests/fuzz/corpus/fuzz_collector_block1/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest_block1.h"

#define MAX_BODY 4096
#define BUDGET 16384

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static b1_table t;
    static uint8_t pay[2048];
    b1_init(&t, MAX_BODY, BUDGET);
    uint64_t now = 1000;
    static const char *tags[4] = {"", "a", "b", "12345678"};
    while (size >= 6) {
        const uint8_t *h = data;
        data += 6;
        size -= 6;
        now += (uint64_t)h[5] * 100;
        unsigned action = h[0] >> 6;
        uint64_t session = h[0] & 3;
        if (action == 3) {
            if (h[1] & 1)
                b1_expire(&t, now);
            else
                b1_drop_session(&t, session);
            continue;
        }
        unsigned szx = h[3] & 7;
        size_t chunk = (size_t)1 << ((szx > 6 ? 6 : szx) + 4);
        size_t len = (h[4] & 0x80) ? chunk : (size_t)(h[4] & 0x7f);
        if (len > size) {
            /* not enough input left: a deterministic pattern stands in */
            for (size_t i = 0; i < len; i++)
                pay[i] = (uint8_t)(i * 31 + h[1]);
        } else {
            memcpy(pay, data, len);
            data += len;
            size -= len;
        }
        const char *tag = tags[(h[0] >> 2) & 3];
        b1_block b = {
            .session = session,
            .has_rtag = (h[0] >> 4) & 1,
            .tag = (const uint8_t *)tag,
            .taglen = strlen(tag) + ((h[2] & 0x40) ? 3 : 0), /* over 8 bytes now and then */
            .num = (h[2] & 0x80) ? (1u << 20) + h[1] : ((uint32_t)(h[2] & 3) << 8 | h[1]),
            .szx = szx,
            .more = (h[0] >> 5) & 1,
            .size1 = (h[3] & 8) ? (size_t)h[4] * 64 : 0,
            .data = pay,
            .len = len,
            .now_ms = now,
        };
        char tagbuf[16];
        if (b.taglen > strlen(tag)) {
            memset(tagbuf, 'x', sizeof(tagbuf));
            memcpy(tagbuf, tag, strlen(tag));
            b.tag = (const uint8_t *)tagbuf;
        }
        b1_out o;
        b1_put(&t, &b, &o);
        switch (o.code) {
        case B1_DONE:
            if (o.len > MAX_BODY || o.len < b.len || (b.len && memcmp(o.body + o.len - b.len, pay, b.len)))
                abort();
            if (o.len != (size_t)b.num * chunk + b.len)
                abort();
            break;
        case B1_CONTINUE:
            if (!(o.echo & 8))
                abort();
            break;
        case B1_BAD:
        case B1_INCOMPLETE:
        case B1_TOO_LARGE:
        case B1_BUSY:
            if (!o.diag[0])
                abort();
            break;
        default:
            abort();
        }
        if (!o.owned && t.used != b1_held(&t))
            abort();
        b1_release(&t, &o);
        if (t.used != b1_held(&t) || t.used > BUDGET || t.n > B1_MAX_PARTIALS)
            abort();
    }
    b1_clear(&t);
    if (t.used != 0)
        abort();
    return 0;
}
