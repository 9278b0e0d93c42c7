/* decode.c - the one collector file that knows the wire schema's structs (wire/snapshot.h):
 * it decodes an envelope with wire/ and copies the fields the store keeps into coll_snap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "snapshot.h"

struct coll_decoder {
    et_wire_dec *dec;
    et_snapshot s; /* ~80 KB scratch, reused: decoding never allocates */
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

/* Names are spelled here rather than taken from the agent's finding.c: the collector links
 * wire/ only. They must match finding.h's enum order (and FORMAT.md). */
static const char *kind_name(unsigned k)
{
    static const char *const names[] = {"goroutine-leak", "deadlock", "heap-growth", "rss-growth", "thread-leak"};
    return k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

static const char *confidence_name(unsigned c)
{
    static const char *const names[] = {"suspected", "likely", "confirmed"};
    return c < sizeof(names) / sizeof(names[0]) ? names[c] : "unknown";
}

/* Bounded copy that always terminates; a cut string is fine for display fields. */
static void cpy(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

int coll_decode(coll_decoder *d, const uint8_t *in, size_t len, coll_snap *snap, char *diag, size_t diaglen,
                const char **kind)
{
    char err[160] = "";
    const char *k = "";
    int rc = et_wire_decode(d->dec, in, len, &d->s, err, sizeof(err));
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
    const et_snapshot *s = &d->s;
    /* every field is assigned below (no memset of the ~20 KB struct per snapshot) */
    et_snap_id_hex(s->id, snap->snapshot_id);
    cpy(snap->device_id, sizeof(snap->device_id), s->device_id);
    cpy(snap->board, sizeof(snap->board), s->board);
    cpy(snap->agent_version, sizeof(snap->agent_version), s->agent_version);
    et_snap_uuid_text(s->boot_id, snap->boot_id);
    snap->seq = s->seq;
    snap->mono_ms = s->mono_ms;
    snap->wall_ms = s->wall_ms;
    snap->wall_trusted = !(s->flags & ET_SNAP_F_WALL_UNTRUSTED);
    cpy(snap->service, sizeof(snap->service), s->service);
    if (s->pod_name[0])
        snprintf(snap->pod, sizeof(snap->pod), "%.20s/%.20s/%.20s", s->pod_namespace, s->pod_name, s->container);
    else
        snap->pod[0] = 0;
    snprintf(snap->incarnation, sizeof(snap->incarnation), "%lu:%llu", (unsigned long)s->pid,
             (unsigned long long)s->start_ticks);
    snap->goroutines = s->goroutines;
    snap->heap_inuse = s->mem.present ? s->mem.heap_inuse : 0;
    snap->rss_kb = s->proc.present ? s->proc.rss_kb : 0;
    snap->threads = s->proc.present ? s->proc.threads : 0;
    snap->spool_dropped = s->spool_routine_dropped + s->spool_findings_dropped + s->spool_corrupt_dropped;
    snap->nfindings = s->nfindings < COLL_MAX_FINDINGS ? s->nfindings : COLL_MAX_FINDINGS;
    for (uint32_t i = 0; i < snap->nfindings; i++) {
        const et_finding *f = &s->findings[i];
        coll_finding *o = &snap->f[i];
        cpy(o->fingerprint, sizeof(o->fingerprint), f->fingerprint);
        cpy(o->kind, sizeof(o->kind), kind_name(f->kind));
        cpy(o->confidence, sizeof(o->confidence), confidence_name(f->confidence));
        cpy(o->state, sizeof(o->state), f->kind == ET_F_GOROUTINE_LEAK || f->kind == ET_F_DEADLOCK
                                            ? et_snap_state_name(f->state) : "");
        o->evidence = f->evidence;
        cpy(o->function, sizeof(o->function), f->site.func);
        cpy(o->file, sizeof(o->file), f->site.file);
        o->line = f->site.line;
        cpy(o->created_by, sizeof(o->created_by), f->created_by);
        o->count = f->count;
        o->growth_per_min = f->growth_per_min;
        o->oldest_wait_s = f->oldest_wait_s;
        o->value = f->value;
    }
    if (!snap->service[0])
        cpy(snap->service, sizeof(snap->service), "-");
    snprintf(diag, diaglen, "ok");
    return 0;
}
