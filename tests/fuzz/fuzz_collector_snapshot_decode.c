/* fuzz_collector_snapshot_decode.c - the collector's snapshot decoder on hostile bytes:
 * envelope, zstd frame (with one registered dictionary id to exercise the lookup), CBOR
 * schema walk. Whatever decodes must also re-encode and decode to the same snapshot, so the
 * decoder never accepts what the encoder could not have produced.
 * Seeds: tests/fuzz/corpus/fuzz_collector_snapshot_decode/ (real snapshots, raw and zstd). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot.h"

static et_wire_dec *dec;
static et_snapshot *s1, *s2;
static uint8_t *cbor;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (!dec) {
        dec = et_wire_dec_create(err, sizeof err);
        s1 = malloc(sizeof *s1);
        s2 = malloc(sizeof *s2);
        cbor = malloc(ET_SNAP_CBOR_MAX);
        if (!dec || !s1 || !s2 || !cbor)
            abort();
    }
    int r = et_wire_decode(dec, data, size, s1, err, sizeof err);
    if (r != ET_WIRE_OK) {
        if (!err[0])
            abort(); /* every rejection says why */
        return 0;
    }
    /* same input straight as CBOR too (the raw path skips zstd) */
    if (size > ET_WIRE_HDR_LEN)
        (void)et_snapshot_decode_cbor(data + ET_WIRE_HDR_LEN, size - ET_WIRE_HDR_LEN, s2, err, sizeof err);
    size_t n;
    if (et_snapshot_encode_cbor(s1, cbor, ET_SNAP_CBOR_MAX, &n, err, sizeof err) != 0)
        abort();
    if (et_snapshot_decode_cbor(cbor, n, s2, err, sizeof err) != ET_WIRE_OK)
        abort();
    if (s1->nsites != s2->nsites || s1->nfindings != s2->nfindings || s1->seq != s2->seq ||
        memcmp(s1->id, s2->id, sizeof s1->id) || strcmp(s1->service, s2->service))
        abort();
    return 0;
}
