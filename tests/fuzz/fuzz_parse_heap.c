/* fuzz_parse_heap.c - libFuzzer target for the heap debug=1 parser; chunking from byte 0. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parse_heap.h"

static et_hprofile a, b;
static et_hparser pa, pb;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = 1 + data[0];
    data++;
    size--;
    char err[128];
    et_hparse_init(&pa, &a);
    et_hparse_feed(&pa, (const char *)data, size);
    int ra = et_hparse_finish(&pa, err, sizeof err);
    et_hparse_init(&pb, &b);
    for (size_t off = 0; off < size; off += chunk)
        et_hparse_feed(&pb, (const char *)data + off, size - off < chunk ? size - off : chunk);
    int rb = et_hparse_finish(&pb, err, sizeof err);
    if (ra != rb)
        abort();
    if (ra == 0 && (a.nsites != b.nsites || memcmp(&a.ms, &b.ms, sizeof(a.ms)) != 0 || a.nsites > ET_MAX_HSITES))
        abort();
    return 0;
}
