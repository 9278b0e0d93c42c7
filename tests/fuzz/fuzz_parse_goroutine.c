/* fuzz_parse_goroutine.c - libFuzzer target for the goroutine text parser (debug=1/2).
 * The first byte picks the kind and a chunk size, so chunk boundaries are fuzzed too; the
 * result must not depend on them (checked against a whole-buffer parse). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parse_goroutine.h"

static et_gprofile a, b;
static et_gparser pa, pb;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int kind = data[0] & 1;
    size_t chunk = 1 + (data[0] >> 1);
    data++;
    size--;
    char err[128];
    et_gparse_init(&pa, &a, kind, 0);
    et_gparse_feed(&pa, (const char *)data, size);
    int ra = et_gparse_finish(&pa, err, sizeof err);
    et_gparse_init(&pb, &b, kind, 0);
    for (size_t off = 0; off < size; off += chunk)
        et_gparse_feed(&pb, (const char *)data + off, size - off < chunk ? size - off : chunk);
    int rb = et_gparse_finish(&pb, err, sizeof err);
    if (ra != rb || (ra == 0 && (a.goroutines != b.goroutines || a.nsites != b.nsites ||
                                 memcmp(&a.trunc, &b.trunc, sizeof(a.trunc)) != 0)))
        abort();
    if (ra == 0) {
        uint64_t sum = 0;
        int saturated = 0;
        for (uint32_t i = 0; i < a.nsites; i++) {
            sum += a.sites[i].count;
            saturated |= a.sites[i].count == UINT32_MAX;
            if (strlen(a.sites[i].user.func) >= ET_FUNC_MAX || a.sites[i].state >= ET_G_STATE_COUNT)
                abort();
        }
        if (sum > a.goroutines || (!saturated && sum != a.goroutines) || a.nsites > ET_MAX_GSITES)
            abort();
    }
    return 0;
}
