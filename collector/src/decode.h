/* decode.h - wire envelope -> coll_snap (the adapter between wire/ and the store).
 *
 * Returns a CoAP response code (class * 100 + detail) for input that must be rejected, 0 when
 * snap is filled; diag gets a one-line reason either way. 400 (corrupt bytes) and 422 (schema
 * violation in a known version) are permanent: the agent deletes the record. 413 (over a
 * bound), 501 (unknown envelope/schema version or dictionary) and 500 are not. */
#ifndef COLL_DECODE_H
#define COLL_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "snap.h"

typedef struct coll_decoder coll_decoder;

coll_decoder *coll_decoder_create(char *err, size_t errlen);
/* Registers a zstd dictionary file's bytes (copied). 0 or -1. */
int coll_decoder_add_dict(coll_decoder *d, const void *dict, size_t len, char *err, size_t errlen);
void coll_decoder_free(coll_decoder *d);
/* The newest snapshot schema version this collector reads (told to agents in every 2.01/2.04). */
int coll_decode_schema_max(void);

/* kind (may be NULL) gets the reason class: "zstd", "cbor", "schema", "envelope", "size",
 * "version", "dict", "memory", "" */
int coll_decode(coll_decoder *d, const uint8_t *in, size_t len, coll_snap *snap, char *diag, size_t diaglen,
                const char **kind);

#endif
