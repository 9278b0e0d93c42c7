/* decode.c - wire envelope -> coll_snap: decodes with wire/ straight into the caller's
 * snapshot (no copy: the store keeps every field) and maps wire errors to CoAP codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "snapshot.h"

struct coll_decoder {
    et_wire_dec *dec;
};

coll_decoder *coll_decoder_create(char *err, size_t errlen)
{
    coll_decoder *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->dec = et_wire_dec_create(err, errlen);
    if (!d->dec) {
        free(d);
        return NULL;
    }
    return d;
}

int coll_decoder_add_dict(coll_decoder *d, const void *dict, size_t len, char *err, size_t errlen)
{
    return et_wire_dec_add_dict(d->dec, dict, len, err, errlen);
}

int coll_decode_schema_max(void) { return ET_SNAP_SCHEMA_VERSION; }

void coll_decoder_free(coll_decoder *d)
{
    if (!d)
        return;
    et_wire_dec_free(d->dec);
    free(d);
}

int coll_decode(coll_decoder *d, const uint8_t *in, size_t len, coll_snap *snap, char *diag, size_t diaglen,
                const char **kind)
{
    char err[160] = "";
    const char *k = "";
    int rc = et_wire_decode(d->dec, in, len, &snap->w, err, sizeof(err));
    if (kind)
        *kind = k;
    if (rc != ET_WIRE_OK) {
        snprintf(diag, diaglen, "%s: %s", et_wire_status_name(rc), err);
        /* Only 4.00 and 4.22 tell the agent to delete the record; everything a collector
         * upgrade or a config change could turn into success must be retryable (README
         * "Answer codes"). */
        int code = 400;
        switch (rc) {
        case ET_WIRE_EENVELOPE: k = "envelope"; break;
        case ET_WIRE_ETOOBIG: code = 413; k = "size"; break;
        case ET_WIRE_ENOMEM: code = 500; k = "memory"; break;
        case ET_WIRE_EVERSION: code = 501; k = "version"; break;
        case ET_WIRE_EDICT: code = 501; k = "dict"; break;
        case ET_WIRE_EUNSUPPORTED: code = 501; k = "zstd"; break;
        case ET_WIRE_EZSTD: k = "zstd"; break;
        case ET_WIRE_ECBOR: k = "cbor"; break;
        default: code = 422; k = "schema"; break;
        }
        if (kind)
            *kind = k;
        return code;
    }
    /* the whole snapshot goes to the store; ingest checks and logs these two */
    et_snap_id_hex(snap->w.id, snap->snapshot_id);
    snprintf(snap->device_id, sizeof(snap->device_id), "%.*s", (int)sizeof(snap->device_id) - 1, snap->w.device_id);
    /* a snapshot without a service name still belongs to a target */
    if (!snap->w.service[0])
        snprintf(snap->w.service, sizeof(snap->w.service), "-");
    snprintf(diag, diaglen, "ok");
    return 0;
}
