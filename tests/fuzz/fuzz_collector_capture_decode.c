/* fuzz_collector_capture_decode.c - the collector's decoder of capture records (wire/capture.h):
 * the body of a POST /s from a device. Whatever it holds, the decoder returns 0 with fields in
 * range and data inside the input, or -1 with a reason; a decoded record re-encodes to bytes
 * that decode to the same fields.
 *
 * Input: the record's bytes (the 4-byte envelope is forced, so the CBOR is what varies). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"

static uint8_t in[ET_CAPTURE_WIRE_MAX + 8], again[ET_CAPTURE_WIRE_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > ET_CAPTURE_WIRE_MAX)
        return 0;
    in[0] = 'E', in[1] = 'C', in[2] = 1, in[3] = 0;
    memcpy(in + 4, data, size);
    et_capture c, d;
    char err[200] = "";
    if (et_capture_decode(in, size + 4, &c, err, sizeof err)) {
        if (!err[0])
            abort();
        return 0;
    }
    if (!c.cmd_id || c.kind < ET_CMD_TRACE || c.kind > ET_CMD_HEAP || c.len > ET_CAPTURE_DATA_MAX ||
        (c.len && (c.data < in || c.data + c.len > in + size + 4)))
        abort();
    size_t n;
    if (et_capture_encode(&c, again, sizeof again, &n, err, sizeof err) || et_capture_decode(again, n, &d, err, sizeof err))
        abort();
    if (d.cmd_id != c.cmd_id || d.kind != c.kind || d.cut != c.cut || d.len != c.len || strcmp(d.target, c.target) ||
        strcmp(d.error, c.error) || (c.len && memcmp(d.data, c.data, c.len)))
        abort();
    return 0;
}
