/* fuzz_collector_ingest.c - arbitrary bytes into the collector's ingest step (envelope check,
 * zstd decompression, CBOR decode and validation, identity check, store into SQLite).
 *
 * The first input byte picks the Content-Format the request claims (mostly the right one)
 * and the session identity, the rest is the body. The store is an in-memory SQLite database
 * opened once; every accepted input is committed, so the upsert and dedup paths run too.
 * Seeds: tests/fuzz/corpus/fuzz_collector_ingest/ (envelopes from `edgetrace-agent push --gen-out`). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "decode.h"
#include "ingest.h"
#include "store.h"

static coll_store *st;
static coll_decoder *dec;
static ingest_counters counters;
static unsigned commits;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (!st) {
        st = store_open(":memory:", err, sizeof(err));
        dec = coll_decoder_create(err, sizeof(err));
        if (!st || !dec) {
            fprintf(stderr, "fuzz setup: %s\n", err);
            abort();
        }
    }
    if (size < 1)
        return 0;
    int cf = (data[0] & 7) == 7 ? (int)data[0] - 100 : INGEST_CF_OCTET_STREAM;
    const char *device = (data[0] & 0x18) == 0x18 ? "gw-other" : "gw-1";
    ingest_result r;
    ingest_payload(st, dec, &counters, device, data + 1, size - 1, cf, 0, 1700000000000LL, data[0] & 0x20, &r);
    if (r.staged) {
        if (r.code != 201 && r.code != 204)
            abort();
        if (store_commit(st))
            abort();
        /* a fresh in-memory database now and then, so a long run does not grow without bound */
        if (++commits % 20000 == 0) {
            store_close(st);
            st = store_open(":memory:", err, sizeof(err));
            if (!st)
                abort();
        }
    } else if (r.code < 400 || r.code > 599 || !r.diag[0]) {
        abort(); /* every rejection has a 4.xx/5.xx code and a diagnostic */
    }
    return 0;
}
