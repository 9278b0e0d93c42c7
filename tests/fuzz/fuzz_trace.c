/* fuzz_trace.c - libFuzzer target for the execution-trace reader (trace.h).
 *
 * The input is fed twice: whole, and split at a point taken from the first byte, with small
 * caps on the second run so the truncation paths (full tables, goroutine overflow) are
 * exercised too. Both must finish without a sanitizer report, and the streaming result must
 * not depend on the split. Seeds: tests/fuzz/corpus/fuzz_trace/ (small real traces). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

static et_trace_summary a, b;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Modest caps (the defaults allocate megabytes, which only slows the fuzzer down; the
     * code paths are the same). */
    et_trace_limits m;
    memset(&m, 0, sizeof m);
    m.max_goroutines = 512;
    m.max_strings = 512;
    m.max_string_bytes = 32768;
    m.max_stacks = 256;
    m.max_frames = 4096;
    m.max_sites = 64;
    m.max_threads = 64;
    et_trace_summarize(data, size, &m, &a);

    et_trace_parser *p = et_trace_parser_new(&m);
    if (!p)
        return 0;
    size_t split = size ? (size_t)data[0] * size / 256 : 0;
    et_trace_parser_feed(p, data, split);
    et_trace_parser_feed(p, data + split, size - split);
    et_trace_parser_finish(p, &b);
    et_trace_parser_free(p);
    if (memcmp(&a, &b, sizeof a) != 0)
        abort(); /* chunking changed the result */

    et_trace_limits l;
    memset(&l, 0, sizeof l);
    l.max_goroutines = 4;
    l.max_strings = 4;
    l.max_string_bytes = 64;
    l.max_stacks = 2;
    l.max_frames = 8;
    l.max_sites = 3;
    l.max_threads = 2;
    p = et_trace_parser_new(&l);
    if (!p)
        return 0;
    for (size_t off = 0; off < size; off += 5)
        if (et_trace_parser_feed(p, data + off, size - off < 5 ? size - off : 5) < 0)
            break;
    et_trace_parser_finish(p, &b);
    et_trace_parser_free(p);
    return 0;
}
