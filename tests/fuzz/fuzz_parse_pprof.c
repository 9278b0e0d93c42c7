/* fuzz_parse_pprof.c - libFuzzer target for the profile.proto parser. Byte 0: chunk size and
 * whether the rest is fed raw or gzipped first (so the protobuf reader behind inflate is
 * reached by mutations of plain protobuf bytes). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "parse_pprof.h"

static et_gprofile g;
static et_hprofile h;
static et_pparser p;
static uint8_t zbuf[1 << 20];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1 << 19))
        return 0;
    size_t chunk = 1 + (data[0] & 0x7f) * 37;
    int gz = data[0] & 0x80;
    data++;
    size--;
    const uint8_t *in = data;
    size_t n = size;
    if (gz) {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return 0;
        zs.next_in = (Bytef *)(uintptr_t)data;
        zs.avail_in = (uInt)size;
        zs.next_out = zbuf;
        zs.avail_out = sizeof zbuf;
        int r = deflate(&zs, Z_FINISH);
        n = sizeof zbuf - zs.avail_out;
        deflateEnd(&zs);
        if (r != Z_STREAM_END)
            return 0;
        in = zbuf;
    }
    char err[128];
    et_pparse_init(&p, &g, &h);
    for (size_t off = 0; off < n; off += chunk)
        et_pparse_feed(&p, (const char *)in + off, n - off < chunk ? n - off : chunk);
    int kind = et_pparse_finish(&p, err, sizeof err);
    if (kind == ET_PP_GOROUTINE) {
        uint64_t sum = 0;
        int saturated = 0;
        for (uint32_t i = 0; i < g.nsites; i++) {
            sum += g.sites[i].count;
            saturated |= g.sites[i].count == UINT32_MAX;
        }
        /* counts saturate instead of wrapping; otherwise every goroutine is in a site */
        if (sum > g.goroutines || (!saturated && sum != g.goroutines) || g.nsites > ET_MAX_GSITES)
            abort();
    } else if (kind == ET_PP_HEAP) {
        if (h.nsites > ET_MAX_HSITES)
            abort();
    } else if (kind != -1 || err[0] == 0) {
        abort();
    }
    return 0;
}
