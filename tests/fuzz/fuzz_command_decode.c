/* fuzz_command_decode.c - the agent's decoder of the downlink command document (wire/command.h):
 * the bytes after the NUL in a collector's answer crossed a network. Whatever they hold, the
 * decoder returns 0 with every command valid (and re-encodable to bytes that decode to the
 * same list), or -1 with a reason and an empty list.
 *
 * Input: an answer payload (diagnostic text, optional NUL + CBOR), as the uplink sees it. The
 * same bytes also go to the collector's parser of "r=ID" started reports (Uri-Query values
 * from a device): an accepted one formats back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t sid;
    if (!et_cmd_started_parse(data, size, &sid)) {
        char q[24];
        int qn = et_cmd_started_format(sid, q, sizeof q);
        if (!sid || qn < 0 || (size_t)qn != size || memcmp(q, data, size))
            abort();
    }
    const uint8_t *doc;
    size_t dlen = et_cmd_split_answer(data, size, &doc);
    if (dlen && (doc < data || doc + dlen != data + size))
        abort();
    if (!dlen) {
        doc = data; /* also feed the whole input as a document: more of the decoder reached */
        dlen = size;
    }
    et_cmd_list l;
    char err[160];
    err[0] = 0;
    if (et_cmd_decode(doc, dlen, &l, err, sizeof err) != 0) {
        if (l.n || !err[0])
            abort();
        return 0;
    }
    if (l.n > ET_CMD_MAX)
        abort();
    uint8_t buf[ET_CMD_DOC_MAX];
    size_t n = 0;
    et_cmd_list again;
    if (et_cmd_encode(&l, buf, sizeof buf, &n, err, sizeof err) || et_cmd_decode(buf, n, &again, err, sizeof err) ||
        memcmp(&l, &again, sizeof l))
        abort();
    return 0;
}
