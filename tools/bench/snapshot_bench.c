/* snapshot_bench.c - wire bytes of a steady-state snapshot against the raw profiles.
 *
 *   snapshot_bench [--goroutines N] [--sites N] [--top N] [--level L] [--dict FILE]
 *                  [--goroutine-profile FILE] [--heap-profile FILE] [--wire FILE] [--json]
 *
 * --wire FILE measures a real snapshot (envelope + zstd as the agent spooled or sent it, e.g.
 * from the agent's spool of the same moment as the profiles) instead of the synthetic one; it
 * is decoded first, so a broken file is reported, not measured.
 * Builds the realistic snapshot of tools/bench/snapshot_sample.h (default: 2,000 goroutines in
 * 50 sites), encodes it as the agent does (CBOR + zstd level 3, window 2^17) and prints the
 * CBOR and wire sizes. Given the raw goroutine and heap profiles of the same moment (the text
 * bodies of /debug/pprof/goroutine?debug=1 and /debug/pprof/heap?debug=1, or proto), it also
 * prints their gzip -6 sizes and the ratio wire / (gzip goroutine + gzip heap): what shipping
 * the profiles themselves would have cost. Build (the lead wires it into `make bench`):
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -Ifirmware/src -Iwire -I$HOST_DEPS/include \
 *       tools/bench/snapshot_bench.c wire/snapshot.c wire/snapshot_decode.c \
 *       -L$HOST_DEPS/lib -ltinycbor -lzstd -lz -lm -o build/host/snapshot_bench */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "snapshot.h"
#include "snapshot_sample.h"

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
        if (n == cap) {
            unsigned char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
            } else
                b = nb;
        }
    }
    fclose(f);
    *len = n;
    return b;
}

/* gzip -6 size of a buffer (deflate with a gzip wrapper, like `gzip -6` and Go's pprof). */
static long gzip_size(const unsigned char *in, size_t len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t cap = deflateBound(&z, (uLong)len) + 64;
    unsigned char *out = malloc(cap);
    if (!out) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    long n = r == Z_STREAM_END ? (long)z.total_out : -1;
    deflateEnd(&z);
    free(out);
    return n;
}

int main(int argc, char **argv)
{
    unsigned total = 2000, nsites = 50, top = 0;
    int level = 3, json = 0;
    const char *dict_path = NULL, *gprof = NULL, *hprof = NULL, *wire_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "usage: snapshot_bench [--goroutines N] [--sites N] [--top N] [--level L] [--dict FILE]\n"
                            "                      [--goroutine-profile FILE] [--heap-profile FILE] [--wire FILE] [--json]\n");
            return 2;
        }
        if (!strcmp(a, "--goroutines"))
            total = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--sites"))
            nsites = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--top"))
            top = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--level"))
            level = atoi(v);
        else if (!strcmp(a, "--dict"))
            dict_path = v;
        else if (!strcmp(a, "--goroutine-profile"))
            gprof = v;
        else if (!strcmp(a, "--heap-profile"))
            hprof = v;
        else if (!strcmp(a, "--wire"))
            wire_path = v;
        else {
            fprintf(stderr, "snapshot_bench: unknown option %s\n", a);
            return 2;
        }
        i++;
    }

    static et_gprofile gp;
    static et_snapshot s;
    static uint8_t cbor[ET_SNAP_CBOR_MAX], wire[ET_WIRE_MAX];
    et_sample_gprofile(&gp, nsites, total);
    char err[256];
    size_t clen = 0, wlen = 0, full_wlen = 0;
    /* The first snapshot of a target carries every site's names (full); the next ones, in
     * the steady state, refer to them by key (see et_snapshot_apply_memo). */
    static et_snapshot first;
    et_site_memo memo;
    memset(&memo, 0, sizeof memo);
    et_sample_snapshot(&first, &gp, top, 1233);
    et_snapshot_apply_memo(&first, &memo, 10);
    et_sample_snapshot(&s, &gp, top, 1234);
    et_snapshot_apply_memo(&s, &memo, 10);
    if (et_snapshot_encode_cbor(&s, cbor, sizeof cbor, &clen, err, sizeof err)) {
        fprintf(stderr, "snapshot_bench: %s\n", err);
        return 1;
    }
    et_wire_params wp = {.level = level}; /* the agent's defaults */
    size_t dlen = 0;
    unsigned char *dict = NULL;
    if (dict_path) {
        dict = slurp(dict_path, &dlen);
        if (!dict) {
            fprintf(stderr, "snapshot_bench: cannot read %s\n", dict_path);
            return 1;
        }
        wp.dict = dict;
        wp.dict_len = dlen;
    }
    et_wire_enc *enc = et_wire_enc_create(&wp, err, sizeof err);
    if (!enc || et_wire_encode(enc, &first, wire, sizeof wire, &full_wlen, err, sizeof err) ||
        et_wire_encode(enc, &s, wire, sizeof wire, &wlen, err, sizeof err)) {
        fprintf(stderr, "snapshot_bench: %s\n", err);
        return 1;
    }
    if (wire_path) {
        size_t n;
        unsigned char *b = slurp(wire_path, &n);
        if (!b) {
            fprintf(stderr, "snapshot_bench: cannot read %s\n", wire_path);
            return 1;
        }
        et_wire_dec *dec = et_wire_dec_create(err, sizeof err);
        if (dict && dec)
            et_wire_dec_add_dict(dec, dict, dlen, err, sizeof err);
        int r = dec ? et_wire_decode(dec, b, n, &s, err, sizeof err) : ET_WIRE_ENOMEM;
        et_wire_dec_free(dec);
        free(b);
        if (r != ET_WIRE_OK) {
            fprintf(stderr, "snapshot_bench: %s: %s: %s\n", wire_path, et_wire_status_name(r), err);
            return 1;
        }
        wlen = full_wlen = n;
        clen = 0;
    }
    long graw = -1, ggz = -1, hraw = -1, hgz = -1;
    if (gprof) {
        size_t n;
        unsigned char *b = slurp(gprof, &n);
        if (!b) {
            fprintf(stderr, "snapshot_bench: cannot read %s\n", gprof);
            return 1;
        }
        graw = (long)n;
        ggz = gzip_size(b, n);
        free(b);
    }
    if (hprof) {
        size_t n;
        unsigned char *b = slurp(hprof, &n);
        if (!b) {
            fprintf(stderr, "snapshot_bench: cannot read %s\n", hprof);
            return 1;
        }
        hraw = (long)n;
        hgz = gzip_size(b, n);
        free(b);
    }
    long profiles_gz = (ggz > 0 ? ggz : 0) + (hgz > 0 ? hgz : 0);
    double ratio = profiles_gz > 0 ? (double)wlen / (double)profiles_gz : 0;
    if (json) {
        printf("{\"goroutines\":%llu,\"sites\":%u,\"sites_carried\":%u,\"level\":%d,\"dict_id\":%u,"
               "\"encoder_memory\":%zu,\"cbor_bytes\":%zu,\"wire_bytes\":%zu,\"wire_bytes_full\":%zu,\"goroutine_raw\":%ld,\"goroutine_gzip\":%ld,"
               "\"heap_raw\":%ld,\"heap_gzip\":%ld,\"wire_over_gzip_profiles\":%.4f}\n",
               (unsigned long long)s.goroutines, s.nsites_total, s.nsites, level, et_wire_enc_dict_id(enc), et_wire_enc_memory(enc),
               clen, wlen, full_wlen, graw, ggz, hraw, hgz, ratio);
    } else {
        printf("snapshot%s: %llu goroutines in %u sites, top %u carried, zstd level %d%s\n", wire_path ? " (file)" : "",
               (unsigned long long)s.goroutines, s.nsites_total, s.nsites, level, dict ? " + dictionary" : "");
        printf("  encoder memory (one allocation)         %zu\n", et_wire_enc_memory(enc));
        printf("  wire bytes, first snapshot (all names)  %zu\n", full_wlen);
        printf("  cbor bytes, steady state                %zu\n", clen);
        printf("  wire bytes, steady state                %zu   (target <= 1024: %s)\n", wlen,
               wlen <= 1024 ? "ok" : "OVER");
        if (gprof)
            printf("  goroutine profile   %ld raw, %ld gzip\n", graw, ggz);
        if (hprof)
            printf("  heap profile        %ld raw, %ld gzip\n", hraw, hgz);
        if (profiles_gz > 0)
            printf("  wire / gzip(profiles) = %.4f  (%.1fx smaller)\n", ratio, (double)profiles_gz / (double)wlen);
    }
    et_wire_enc_free(enc);
    free(dict);
    return 0;
}
