/* snapshot_decode.c - envelope, zstd and CBOR decoding of snapshots (collector side).
 *
 * Everything here reads hostile bytes: any device, or anyone holding a device key, can send
 * them. The rules: every length is checked against the fixed field it lands in, every
 * integer against its range, every key against the schema (unknown and duplicate keys are
 * rejected: a new field means a new schema version), nesting is only what the schema has,
 * and the decompressed size is bounded before a byte is decompressed. Errors say where.
 *
 * Device builds (musl) link a libzstd without decompression; the zstd calls are compiled
 * only when ET_WIRE_HAVE_ZSTD_DECOMPRESS is 1 (default on glibc = host/collector builds), so
 * the agent links even though the Makefile compiles all of wire/ into it. The collector
 * is the only real user of this file. */
#define ZSTD_STATIC_LINKING_ONLY
#include "snapshot.h"
#include "snapshot_keys.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tinycbor/cbor.h>

#ifndef ET_WIRE_HAVE_ZSTD_DECOMPRESS
#if defined(__GLIBC__)
#define ET_WIRE_HAVE_ZSTD_DECOMPRESS 1
#else
#define ET_WIRE_HAVE_ZSTD_DECOMPRESS 0
#endif
#endif

#if ET_WIRE_HAVE_ZSTD_DECOMPRESS
#include <zstd.h>
#endif

#define ET_WIRE_MAX_WLOG 17
#define ET_ARRAY_LEN_(a) (sizeof(a) / sizeof((a)[0]))

typedef struct dec {
    char *err;
    size_t errlen;
    const char *where; /* map being decoded, for messages */
    uint64_t schema;   /* the document's schema version (keys of later versions are unknown) */
} dec;

static int fail(dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(dec *d, const char *fmt, ...)
{
    if (d->err && d->errlen) {
        int n = snprintf(d->err, d->errlen, "%s: ", d->where);
        if (n < 0 || (size_t)n >= d->errlen)
            n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->err + n, d->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int cbor_fail(dec *d, CborError e) { return fail(d, "CBOR: %s", cbor_error_string(e)); }

/* ---- value readers: each checks the type and range, then advances past the value ---- */
static int get_uint(dec *d, CborValue *v, const char *name, uint64_t max, uint64_t *out)
{
    if (!cbor_value_is_unsigned_integer(v))
        return fail(d, "%s: expected an unsigned integer", name);
    uint64_t x;
    CborError e = cbor_value_get_uint64(v, &x);
    if (e)
        return cbor_fail(d, e);
    if (x > max)
        return fail(d, "%s: %llu out of range (max %llu)", name, (unsigned long long)x, (unsigned long long)max);
    *out = x;
    e = cbor_value_advance_fixed(v);
    return e ? cbor_fail(d, e) : 0;
}

static int get_u32(dec *d, CborValue *v, const char *name, uint32_t max, uint32_t *out)
{
    uint64_t x;
    if (get_uint(d, v, name, max, &x))
        return -1;
    *out = (uint32_t)x;
    return 0;
}

static int get_u8(dec *d, CborValue *v, const char *name, uint8_t max, uint8_t *out)
{
    uint64_t x;
    if (get_uint(d, v, name, max, &x))
        return -1;
    *out = (uint8_t)x;
    return 0;
}

static int get_i64(dec *d, CborValue *v, const char *name, int64_t *out)
{
    if (!cbor_value_is_integer(v))
        return fail(d, "%s: expected an integer", name);
    CborError e = cbor_value_get_int64_checked(v, out);
    if (e)
        return fail(d, "%s: integer out of int64 range", name);
    e = cbor_value_advance_fixed(v);
    return e ? cbor_fail(d, e) : 0;
}

/* Half floats are decoded by hand: the tinycbor build here leaves out cborparser_float.c. */
static double half_to_double(uint16_t h)
{
    int exp = (h >> 10) & 0x1f;
    int mant = h & 0x3ff;
    double v;
    if (exp == 0)
        v = ldexp(mant, -24);
    else if (exp != 31)
        v = ldexp(mant + 1024, exp - 25);
    else
        v = mant == 0 ? INFINITY : NAN;
    return (h & 0x8000) ? -v : v;
}

static int get_double(dec *d, CborValue *v, const char *name, double *out)
{
    CborError e;
    if (cbor_value_is_double(v)) {
        e = cbor_value_get_double(v, out);
    } else if (cbor_value_is_float(v)) {
        float f;
        e = cbor_value_get_float(v, &f);
        *out = f;
    } else if (cbor_value_is_half_float(v)) {
        uint16_t h;
        e = cbor_value_get_half_float(v, &h);
        *out = half_to_double(h);
    } else if (cbor_value_is_integer(v)) {
        int64_t i;
        e = cbor_value_get_int64_checked(v, &i);
        *out = (double)i;
    } else {
        return fail(d, "%s: expected a number", name);
    }
    if (e)
        return cbor_fail(d, e);
    if (!isfinite(*out))
        return fail(d, "%s: not a finite number", name);
    if (fabs(*out) > 1e18)
        return fail(d, "%s: %g out of range", name, *out);
    e = cbor_value_advance_fixed(v);
    return e ? cbor_fail(d, e) : 0;
}

/* Text into a fixed char array: must fit with its NUL, and hold no NUL itself (the C
 * consumers would silently cut it). UTF-8 validity is checked once for the whole document. */
static int get_text(dec *d, CborValue *v, const char *name, char *buf, size_t cap)
{
    if (!cbor_value_is_text_string(v))
        return fail(d, "%s: expected a text string", name);
    size_t len = 0;
    CborError e = cbor_value_calculate_string_length(v, &len);
    if (e)
        return cbor_fail(d, e);
    if (len >= cap)
        return fail(d, "%s: %zu bytes, longer than %zu", name, len, cap - 1);
    size_t n = cap - 1;
    e = cbor_value_copy_text_string(v, buf, &n, v);
    if (e)
        return cbor_fail(d, e);
    buf[n] = 0;
    if (memchr(buf, 0, n))
        return fail(d, "%s: contains a NUL byte", name);
    return 0;
}

static int get_bytes(dec *d, CborValue *v, const char *name, uint8_t *buf, size_t min, size_t max, size_t *out_len)
{
    if (!cbor_value_is_byte_string(v))
        return fail(d, "%s: expected a byte string", name);
    size_t len = 0;
    CborError e = cbor_value_calculate_string_length(v, &len);
    if (e)
        return cbor_fail(d, e);
    if (len < min || len > max) {
        if (min == max)
            return fail(d, "%s: %zu bytes, expected %zu", name, len, min);
        return fail(d, "%s: %zu bytes, expected %zu..%zu", name, len, min, max);
    }
    size_t n = max;
    e = cbor_value_copy_byte_string(v, buf, &n, v);
    if (e)
        return cbor_fail(d, e);
    if (out_len)
        *out_len = n;
    return 0;
}

/* ---- maps -------------------------------------------------------------------------------- */
/* Calls field(d, key, value, obj) for each entry; field must consume the value. Keys must
 * be small unsigned integers, each at most once. */
typedef int (*field_fn)(dec *d, unsigned key, CborValue *v, void *obj);

static int parse_map(dec *d, CborValue *v, const char *where, unsigned nkeys, field_fn field, void *obj,
                     uint64_t *seen_out)
{
    const char *outer = d->where;
    if (!cbor_value_is_map(v))
        return fail(d, "%s: expected a map", where);
    d->where = where;
    CborValue m;
    CborError e = cbor_value_enter_container(v, &m);
    if (e)
        return cbor_fail(d, e);
    uint64_t seen = 0;
    while (!cbor_value_at_end(&m)) {
        if (!cbor_value_is_unsigned_integer(&m))
            return fail(d, "map key is not an unsigned integer");
        uint64_t key;
        cbor_value_get_uint64(&m, &key);
        if (key >= nkeys)
            return fail(d, "unknown key %llu", (unsigned long long)key);
        if (seen & (1ull << key))
            return fail(d, "duplicate key %llu", (unsigned long long)key);
        seen |= 1ull << key;
        e = cbor_value_advance_fixed(&m);
        if (e)
            return cbor_fail(d, e);
        if (cbor_value_at_end(&m))
            return fail(d, "key %llu has no value", (unsigned long long)key);
        if (field(d, (unsigned)key, &m, obj))
            return -1;
    }
    e = cbor_value_leave_container(v, &m);
    if (e)
        return cbor_fail(d, e);
    d->where = outer;
    if (seen_out)
        *seen_out = seen;
    return 0;
}

static int target_field(dec *d, unsigned key, CborValue *v, void *obj)
{
    et_snapshot *s = obj;
    uint64_t x;
    switch (key) {
    case ETK_T_SERVICE: return get_text(d, v, "service", s->service, sizeof s->service);
    case ETK_T_NAMESPACE: return get_text(d, v, "namespace", s->pod_namespace, sizeof s->pod_namespace);
    case ETK_T_POD: return get_text(d, v, "pod", s->pod_name, sizeof s->pod_name);
    case ETK_T_CONTAINER: return get_text(d, v, "container", s->container, sizeof s->container);
    case ETK_T_PID: return get_u32(d, v, "pid", 0x7fffffffu, &s->pid);
    case ETK_T_START_TICKS:
        if (get_uint(d, v, "start_ticks", UINT64_MAX, &x))
            return -1;
        s->start_ticks = x;
        return 0;
    case ETK_T_GO_VERSION: return get_text(d, v, "go_version", s->go_version, sizeof s->go_version);
    case ETK_T_URL: return get_text(d, v, "url", s->url, sizeof s->url);
    }
    return fail(d, "unknown key %u", key);
}

static int by_state_field(dec *d, unsigned key, CborValue *v, void *obj)
{
    et_snapshot *s = obj;
    return get_u32(d, v, "count", UINT32_MAX, &s->by_state[key]);
}

static int parse_site(dec *d, CborValue *v, et_snap_site *st)
{
    if (!cbor_value_is_array(v))
        return fail(d, "site: expected an array");
    size_t n = 0;
    if (!cbor_value_is_length_known(v) || cbor_value_get_array_length(v, &n) ||
        (n != ETK_SITE_ARITY && n != ETK_SITE_REF_ARITY))
        return fail(d, "site: expected an array of %d or %d items", ETK_SITE_ARITY, ETK_SITE_REF_ARITY);
    CborValue a;
    CborError e = cbor_value_enter_container(v, &a);
    if (e)
        return cbor_fail(d, e);
    if (n == ETK_SITE_REF_ARITY) {
        st->ref = 1;
        if (get_u32(d, &a, "site.key", UINT32_MAX, &st->key) ||
            get_u32(d, &a, "site.count", UINT32_MAX, &st->count) ||
            get_u32(d, &a, "site.max_wait_min", UINT32_MAX, &st->max_wait_min))
            return -1;
        e = cbor_value_leave_container(v, &a);
        return e ? cbor_fail(d, e) : 0;
    }
    if (get_u8(d, &a, "site.state", ET_G_STATE_COUNT - 1, &st->state) ||
        get_u32(d, &a, "site.count", UINT32_MAX, &st->count) ||
        get_text(d, &a, "site.func", st->func, sizeof st->func) ||
        get_text(d, &a, "site.file", st->file, sizeof st->file) ||
        get_u32(d, &a, "site.line", UINT32_MAX, &st->line) ||
        get_u32(d, &a, "site.max_wait_min", UINT32_MAX, &st->max_wait_min) ||
        get_text(d, &a, "site.created_by", st->created_by, sizeof st->created_by))
        return -1;
    st->key = et_snap_site_key(st);
    e = cbor_value_leave_container(v, &a);
    return e ? cbor_fail(d, e) : 0;
}

static int goroutines_field(dec *d, unsigned key, CborValue *v, void *obj)
{
    et_snapshot *s = obj;
    uint64_t x;
    switch (key) {
    case ETK_G_TOTAL:
        if (get_uint(d, v, "total", UINT64_MAX, &x))
            return -1;
        s->goroutines = x;
        return 0;
    case ETK_G_NSITES_TOTAL: return get_u32(d, v, "nsites_total", UINT32_MAX, &s->nsites_total);
    case ETK_G_OTHER:
        if (get_uint(d, v, "other", UINT64_MAX, &x))
            return -1;
        s->goroutines_other = x;
        return 0;
    case ETK_G_BY_STATE: return parse_map(d, v, "goroutines.by_state", ET_G_STATE_COUNT, by_state_field, s, NULL);
    case ETK_G_SITES: {
        if (!cbor_value_is_array(v))
            return fail(d, "sites: expected an array");
        CborValue a;
        CborError e = cbor_value_enter_container(v, &a);
        if (e)
            return cbor_fail(d, e);
        while (!cbor_value_at_end(&a)) {
            if (s->nsites >= ET_SNAP_MAX_SITES)
                return fail(d, "sites: more than %d", ET_SNAP_MAX_SITES);
            if (parse_site(d, &a, &s->sites[s->nsites]))
                return -1;
            s->nsites++;
        }
        e = cbor_value_leave_container(v, &a);
        return e ? cbor_fail(d, e) : 0;
    }
    }
    return fail(d, "unknown key %u", key);
}

static int mem_field(dec *d, unsigned key, CborValue *v, void *obj)
{
    et_snap_mem *m = obj;
    static const char *const names[ETK_M_COUNT] = {"heap_alloc", "heap_inuse", "heap_idle", "heap_released",
                                                   "heap_sys", "stack_inuse", "sys", "num_gc", "next_gc"};
    uint64_t *slots[ETK_M_COUNT] = {&m->heap_alloc, &m->heap_inuse, &m->heap_idle, &m->heap_released,
                                    &m->heap_sys, &m->stack_inuse, &m->sys, NULL, &m->next_gc};
    if (key == ETK_M_NUM_GC)
        return get_u32(d, v, names[key], UINT32_MAX, &m->num_gc);
    return get_uint(d, v, names[key], UINT64_MAX, slots[key]);
}

static int proc_field(dec *d, unsigned key, CborValue *v, void *obj)
{
    et_snap_proc *p = obj;
    switch (key) {
    case ETK_P_RSS_KB: return get_uint(d, v, "rss_kb", UINT64_MAX, &p->rss_kb);
    case ETK_P_THREADS: return get_u32(d, v, "threads", UINT32_MAX, &p->threads);
    case ETK_P_FDS: return get_u32(d, v, "fds", UINT32_MAX, &p->fds);
    case ETK_P_CPU_TICKS: return get_uint(d, v, "cpu_ticks", UINT64_MAX, &p->cpu_ticks);
    }
    return fail(d, "unknown key %u", key);
}

static int finding_field(dec *d, unsigned key, CborValue *v, void *obj)
{
    et_finding *f = obj;
    uint32_t evidence;
    switch (key) {
    case ETK_F_KIND: return get_u8(d, v, "kind", ET_F_KIND_COUNT - 1, &f->kind);
    case ETK_F_CONFIDENCE: return get_u8(d, v, "confidence", ET_C_CONFIRMED, &f->confidence);
    case ETK_F_EVIDENCE:
        if (get_u32(d, v, "evidence", (1u << (d->schema >= 2 ? ET_EVIDENCE_COUNT : ET_EVIDENCE_COUNT_V1)) - 1, &evidence))
            return -1;
        f->evidence = evidence;
        return 0;
    case ETK_F_FINGERPRINT:
        if (get_text(d, v, "fingerprint", f->fingerprint, sizeof f->fingerprint))
            return -1;
        if (strlen(f->fingerprint) != 16 || strspn(f->fingerprint, "0123456789abcdef") != 16)
            return fail(d, "fingerprint: expected 16 lowercase hex digits");
        return 0;
    case ETK_F_FUNC: return get_text(d, v, "func", f->site.func, sizeof f->site.func);
    case ETK_F_FILE: return get_text(d, v, "file", f->site.file, sizeof f->site.file);
    case ETK_F_LINE: return get_u32(d, v, "line", UINT32_MAX, &f->site.line);
    case ETK_F_STATE: return get_u8(d, v, "state", ET_G_STATE_COUNT - 1, &f->state);
    case ETK_F_COUNT: return get_u32(d, v, "count", UINT32_MAX, &f->count);
    case ETK_F_GROWTH: return get_double(d, v, "growth_per_min", &f->growth_per_min);
    case ETK_F_OLDEST_WAIT:
        if (get_double(d, v, "oldest_wait_s", &f->oldest_wait_s))
            return -1;
        if (f->oldest_wait_s < 0)
            return fail(d, "oldest_wait_s: negative");
        return 0;
    case ETK_F_VALUE: return get_uint(d, v, "value", UINT64_MAX, &f->value);
    case ETK_F_CREATED_BY: return get_text(d, v, "created_by", f->created_by, sizeof f->created_by);
    case ETK_F_STACK: {
        if (!cbor_value_is_array(v))
            return fail(d, "stack: expected an array");
        CborValue a;
        CborError e = cbor_value_enter_container(v, &a);
        if (e)
            return cbor_fail(d, e);
        while (!cbor_value_at_end(&a)) {
            if (f->nstack >= ET_STACK_MAX)
                return fail(d, "stack: more than %d frames", ET_STACK_MAX);
            if (get_text(d, &a, "stack frame", f->stack[f->nstack], ET_FUNC_MAX))
                return -1;
            f->nstack++;
        }
        e = cbor_value_leave_container(v, &a);
        return e ? cbor_fail(d, e) : 0;
    }
    case ETK_F_FIRST_SEEN: return get_uint(d, v, "first_seen_ms", UINT64_MAX, &f->first_seen_ms);
    case ETK_F_LAST_SEEN: return get_uint(d, v, "last_seen_ms", UINT64_MAX, &f->last_seen_ms);
    }
    if (d->schema >= 2) {
        switch (key) {
        case ETK_F_SURVIVORS: return get_u32(d, v, "survivors", UINT32_MAX, &f->survivors);
        case ETK_F_SURVIVORS_OF: return get_u32(d, v, "survivors_of", ET_GSITE_IDS, &f->survivors_of);
        case ETK_F_OLDEST_ID: return get_uint(d, v, "oldest_id", UINT64_MAX, &f->oldest_id);
        case ETK_F_NO_SITE: return get_u8(d, v, "no_site", ET_NS_COUNT - 1, &f->no_site);
        case ETK_F_WAIT_HIST: {
            if (!cbor_value_is_array(v))
                return fail(d, "wait_hist: expected an array");
            size_t n;
            if (cbor_value_get_array_length(v, &n) != CborNoError || n != ET_WAIT_BUCKETS)
                return fail(d, "wait_hist: expected %d counts", ET_WAIT_BUCKETS);
            CborValue a;
            CborError e = cbor_value_enter_container(v, &a);
            if (e)
                return cbor_fail(d, e);
            for (unsigned i = 0; i < ET_WAIT_BUCKETS; i++)
                if (get_u32(d, &a, "wait_hist", UINT32_MAX, &f->wait_hist[i]))
                    return -1;
            e = cbor_value_leave_container(v, &a);
            return e ? cbor_fail(d, e) : 0;
        }
        }
    }
    return fail(d, "unknown key %u", key);
}

static int counters_field(dec *d, unsigned key, CborValue *v, void *obj)
{
    et_snapshot *s = obj;
    switch (key) {
    case ETK_C_SPOOL_ROUTINE_DROPPED: return get_uint(d, v, "spool_routine_dropped", UINT64_MAX, &s->spool_routine_dropped);
    case ETK_C_SPOOL_FINDINGS_DROPPED:
        return get_uint(d, v, "spool_findings_dropped", UINT64_MAX, &s->spool_findings_dropped);
    case ETK_C_SPOOL_CORRUPT_DROPPED: return get_uint(d, v, "spool_corrupt_dropped", UINT64_MAX, &s->spool_corrupt_dropped);
    case ETK_C_SPOOL_BYTES_TODAY: return get_uint(d, v, "spool_bytes_today", UINT64_MAX, &s->spool_bytes_today);
    case ETK_C_FINDINGS_DROPPED: return get_u32(d, v, "findings_dropped", UINT32_MAX, &s->findings_dropped);
    case ETK_C_SITES_TRUNCATED: return get_u32(d, v, "sites_truncated", UINT32_MAX, &s->sites_truncated);
    }
    if (d->schema >= 2) {
        switch (key) {
        case ETK_C_UPLINK_HELD: return get_uint(d, v, "uplink_held", UINT64_MAX, &s->uplink_held);
        case ETK_C_UPLINK_REJECTED: return get_uint(d, v, "uplink_rejected", UINT64_MAX, &s->uplink_rejected);
        case ETK_C_UPLINK_HELD_NOW: return get_u32(d, v, "uplink_held_now", UINT32_MAX, &s->uplink_held_now);
        }
    }
    return fail(d, "unknown key %u", key);
}

static int settings_field(dec *d, unsigned key, CborValue *v, void *obj)
{
    et_snapshot *s = obj;
    switch (key) {
    case ETK_S_FLEET: return get_uint(d, v, "settings.fleet", UINT64_MAX, &s->set_fleet);
    case ETK_S_DEVICE: return get_uint(d, v, "settings.device", UINT64_MAX, &s->set_device);
    case ETK_S_REJ_FLEET: return get_uint(d, v, "settings.rejected_fleet", UINT64_MAX, &s->set_rej_fleet);
    case ETK_S_REJ_DEVICE: return get_uint(d, v, "settings.rejected_device", UINT64_MAX, &s->set_rej_device);
    case ETK_S_REASON: return get_text(d, v, "settings.reason", s->set_reason, sizeof s->set_reason);
    }
    return fail(d, "unknown key %u", key);
}

static int cost_field(dec *d, unsigned key, CborValue *v, void *obj)
{
    et_snapshot *s = obj;
    switch (key) {
    case ETK_K_BYTES: return get_uint(d, v, "bytes", UINT64_MAX, &s->cost_bytes);
    case ETK_K_MS: return get_u32(d, v, "ms", UINT32_MAX, &s->cost_ms);
    }
    return fail(d, "unknown key %u", key);
}

static int parse_attach(dec *d, CborValue *v, et_snap_attach *at)
{
    size_t n = 0;
    if (!cbor_value_is_array(v) || !cbor_value_is_length_known(v) || cbor_value_get_array_length(v, &n) || n != 3)
        return fail(d, "attachment: expected an array of 3 items");
    CborValue a;
    CborError e = cbor_value_enter_container(v, &a);
    if (e)
        return cbor_fail(d, e);
    size_t len = 0;
    if (get_u8(d, &a, "attachment.kind", ET_ATT_KIND_COUNT - 1, &at->kind) ||
        get_u8(d, &a, "attachment.finding", ET_SNAP_MAX_FINDINGS - 1, &at->finding) ||
        get_bytes(d, &a, "attachment.data", at->data, 0, ET_SNAP_ATTACH_MAX, &len))
        return -1;
    at->len = (uint32_t)len;
    e = cbor_value_leave_container(v, &a);
    return e ? cbor_fail(d, e) : 0;
}

static int top_field(dec *d, unsigned key, CborValue *v, void *obj)
{
    et_snapshot *s = obj;
    uint64_t x;
    switch (key) {
    case ETK_SCHEMA:
        if (get_uint(d, v, "schema", UINT32_MAX, &x))
            return -1;
        if (x != d->schema) /* cannot happen: the version was read before the walk */
            return fail(d, "schema version %llu changed", (unsigned long long)x);
        s->schema = (uint32_t)x;
        return 0;
    case ETK_ID: return get_bytes(d, v, "id", s->id, ET_SNAP_ID_LEN, ET_SNAP_ID_LEN, NULL);
    case ETK_DEVICE_ID: return get_text(d, v, "device_id", s->device_id, sizeof s->device_id);
    case ETK_BOARD: return get_text(d, v, "board", s->board, sizeof s->board);
    case ETK_AGENT_VERSION: return get_text(d, v, "agent_version", s->agent_version, sizeof s->agent_version);
    case ETK_SEQ: return get_uint(d, v, "seq", UINT64_MAX, &s->seq);
    case ETK_BOOT_ID: return get_bytes(d, v, "boot_id", s->boot_id, 16, 16, NULL);
    case ETK_FLAGS: return get_u32(d, v, "flags", ET_SNAP_F_KNOWN, &s->flags);
    case ETK_MONO_MS: return get_uint(d, v, "mono_ms", UINT64_MAX, &s->mono_ms);
    case ETK_WALL_MS: return get_i64(d, v, "wall_ms", &s->wall_ms);
    case ETK_TARGET: return parse_map(d, v, "target", ETK_T_COUNT, target_field, s, NULL);
    case ETK_GOROUTINES: return parse_map(d, v, "goroutines", ETK_G_COUNT, goroutines_field, s, NULL);
    case ETK_MEM:
        s->mem.present = 1;
        return parse_map(d, v, "mem", ETK_M_COUNT, mem_field, &s->mem, NULL);
    case ETK_PROC:
        s->proc.present = 1;
        return parse_map(d, v, "proc", ETK_P_COUNT, proc_field, &s->proc, NULL);
    case ETK_FINDINGS: {
        if (!cbor_value_is_array(v))
            return fail(d, "findings: expected an array");
        CborValue a;
        CborError e = cbor_value_enter_container(v, &a);
        if (e)
            return cbor_fail(d, e);
        while (!cbor_value_at_end(&a)) {
            if (s->nfindings >= ET_SNAP_MAX_FINDINGS)
                return fail(d, "findings: more than %d", ET_SNAP_MAX_FINDINGS);
            uint64_t seen = 0;
            if (parse_map(d, &a, "finding", ETK_F_KEYS, finding_field, &s->findings[s->nfindings], &seen))
                return -1;
            if (!(seen & (1ull << ETK_F_KIND)))
                return fail(d, "finding %u: no kind", s->nfindings);
            s->nfindings++;
        }
        e = cbor_value_leave_container(v, &a);
        return e ? cbor_fail(d, e) : 0;
    }
    case ETK_COUNTERS: return parse_map(d, v, "counters", ETK_C_COUNT, counters_field, s, NULL);
    case ETK_COST: return parse_map(d, v, "cost", ETK_K_COUNT, cost_field, s, NULL);
    case ETK_SETTINGS:
        if (d->schema < 3)
            break;
        return parse_map(d, v, "settings", ETK_S_COUNT, settings_field, s, NULL);
    case ETK_ATTACH: {
        if (!cbor_value_is_array(v))
            return fail(d, "attachments: expected an array");
        CborValue a;
        CborError e = cbor_value_enter_container(v, &a);
        if (e)
            return cbor_fail(d, e);
        while (!cbor_value_at_end(&a)) {
            if (s->nattach >= ET_SNAP_MAX_ATTACH)
                return fail(d, "attachments: more than %d", ET_SNAP_MAX_ATTACH);
            if (parse_attach(d, &a, &s->attach[s->nattach]))
                return -1;
            s->nattach++;
        }
        e = cbor_value_leave_container(v, &a);
        return e ? cbor_fail(d, e) : 0;
    }
    }
    return fail(d, "unknown key %u", key);
}

/* Finds top-level key 0 (schema) wherever it is in the map. The document has been validated
 * as well-formed, so skipping values cannot run off. 0 = found (*version set), -1 = not a
 * map, no key 0 or not an unsigned integer: the schema walk reports that. */
static int find_schema_version(const CborValue *top, uint64_t *version)
{
    CborValue m;
    if (!cbor_value_is_map(top) || cbor_value_enter_container(top, &m))
        return -1;
    while (!cbor_value_at_end(&m)) {
        int is_schema = 0;
        if (cbor_value_is_unsigned_integer(&m)) {
            uint64_t k;
            cbor_value_get_uint64(&m, &k);
            is_schema = k == ETK_SCHEMA;
        }
        if (cbor_value_advance(&m) || cbor_value_at_end(&m))
            return -1;
        if (is_schema)
            return cbor_value_is_unsigned_integer(&m) && !cbor_value_get_uint64(&m, version) ? 0 : -1;
        if (cbor_value_advance(&m))
            return -1;
    }
    return -1;
}

int et_snapshot_decode_cbor(const uint8_t *buf, size_t len, et_snapshot *out, char *err, size_t errlen)
{
    dec d = {err, errlen, "snapshot", 0};
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = 0;
    if (len > ET_SNAP_CBOR_MAX) {
        fail(&d, "%zu bytes of CBOR, more than %u", len, ET_SNAP_CBOR_MAX);
        return ET_WIRE_ETOOBIG;
    }
    CborParser parser;
    CborValue it;
    CborError e = cbor_parser_init(buf, len, 0, &parser, &it);
    if (e) {
        cbor_fail(&d, e);
        return ET_WIRE_ECBOR;
    }
    /* Well-formedness of the whole document first (tinycbor bounds its own recursion), so
     * that the schema walk below only ever sees complete items. */
    e = cbor_value_validate(&it, CborValidateUtf8 | CborValidateNoUndefined | CborValidateNoTags |
                                     CborValidateNoUnknownSimpleTypes | CborValidateCompleteData);
    if (e) {
        cbor_fail(&d, e);
        return ET_WIRE_ECBOR;
    }
    /* The schema version decides how the rest is judged: a document of a version this build
     * does not read is "not by me" (retryable), never a schema violation. */
    uint64_t version = 0;
    if (find_schema_version(&it, &version) == 0 &&
        (version < ET_SNAP_SCHEMA_MIN || version > ET_SNAP_SCHEMA_VERSION)) {
        fail(&d, "schema version %llu, this build reads %d to %d", (unsigned long long)version, ET_SNAP_SCHEMA_MIN,
             ET_SNAP_SCHEMA_VERSION);
        return ET_WIRE_EVERSION;
    }
    d.schema = version;
    uint64_t seen = 0;
    if (parse_map(&d, &it, "snapshot", ETK_TOP_COUNT, top_field, out, &seen))
        return ET_WIRE_ESCHEMA;
    if (!cbor_value_at_end(&it)) {
        fail(&d, "trailing data after the snapshot map");
        return ET_WIRE_ECBOR;
    }
    static const struct { int key; const char *name; } required[] = {
        {ETK_SCHEMA, "schema"}, {ETK_ID, "id"}, {ETK_DEVICE_ID, "device_id"}, {ETK_SEQ, "seq"},
        {ETK_TARGET, "target"}};
    for (size_t i = 0; i < ET_ARRAY_LEN_(required); i++)
        if (!(seen & (1ull << required[i].key))) {
            fail(&d, "required key %d (%s) missing", required[i].key, required[i].name);
            return ET_WIRE_ESCHEMA;
        }
    if (!out->device_id[0] || !out->service[0]) {
        fail(&d, "%s is empty", out->device_id[0] ? "target.service" : "device_id");
        return ET_WIRE_ESCHEMA;
    }
    static const uint8_t zero[ET_SNAP_ID_LEN];
    if (!memcmp(out->id, zero, ET_SNAP_ID_LEN)) {
        fail(&d, "id is all zero");
        return ET_WIRE_ESCHEMA;
    }
    for (uint32_t i = 0; i < out->nattach; i++)
        if (out->attach[i].finding >= out->nfindings) {
            fail(&d, "attachment %u refers to finding %u of %u", i, out->attach[i].finding, out->nfindings);
            return ET_WIRE_ESCHEMA;
        }
    return ET_WIRE_OK;
}

/* ---- envelope + zstd ------------------------------------------------------------------ */
int et_wire_can_decompress(void) { return ET_WIRE_HAVE_ZSTD_DECOMPRESS; }

struct et_wire_dec {
#if ET_WIRE_HAVE_ZSTD_DECOMPRESS
    ZSTD_DCtx *dctx;
    ZSTD_DDict *ddict[ET_WIRE_MAX_DICTS];
    uint32_t dict_id[ET_WIRE_MAX_DICTS];
    unsigned ndicts;
#endif
    uint8_t cbor[ET_SNAP_CBOR_MAX];
};

et_wire_dec *et_wire_dec_create(char *err, size_t errlen)
{
    et_wire_dec *d = calloc(1, sizeof *d);
    if (!d) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
#if ET_WIRE_HAVE_ZSTD_DECOMPRESS
    d->dctx = ZSTD_createDCtx();
    if (!d->dctx || ZSTD_isError(ZSTD_DCtx_setParameter(d->dctx, ZSTD_d_windowLogMax, ET_WIRE_MAX_WLOG))) {
        if (err && errlen)
            snprintf(err, errlen, "ZSTD_createDCtx failed");
        ZSTD_freeDCtx(d->dctx);
        free(d);
        return NULL;
    }
#endif
    return d;
}

int et_wire_dec_add_dict(et_wire_dec *d, const void *dict, size_t len, char *err, size_t errlen)
{
#if ET_WIRE_HAVE_ZSTD_DECOMPRESS
    if (d->ndicts >= ET_WIRE_MAX_DICTS) {
        snprintf(err, errlen, "more than %d dictionaries", ET_WIRE_MAX_DICTS);
        return -1;
    }
    ZSTD_DDict *dd = ZSTD_createDDict(dict, len);
    uint32_t id = dd ? ZSTD_getDictID_fromDDict(dd) : 0;
    if (!dd || id == 0) {
        ZSTD_freeDDict(dd);
        snprintf(err, errlen, "not a zstd dictionary with an id");
        return -1;
    }
    d->ddict[d->ndicts] = dd;
    d->dict_id[d->ndicts++] = id;
    return 0;
#else
    (void)d, (void)dict, (void)len;
    snprintf(err, errlen, "zstd decompression is not built into this binary");
    return -1;
#endif
}

void et_wire_dec_free(et_wire_dec *d)
{
    if (!d)
        return;
#if ET_WIRE_HAVE_ZSTD_DECOMPRESS
    for (unsigned i = 0; i < d->ndicts; i++)
        ZSTD_freeDDict(d->ddict[i]);
    ZSTD_freeDCtx(d->dctx);
#endif
    free(d);
}

int et_wire_decode(et_wire_dec *wd, const uint8_t *in, size_t len, et_snapshot *out, char *err, size_t errlen)
{
    dec d = {err, errlen, "envelope", 0};
    memset(out, 0, sizeof *out);
    if (len < ET_WIRE_HDR_LEN || in[0] != ET_WIRE_MAGIC0 || in[1] != ET_WIRE_MAGIC1) {
        fail(&d, "not an edgetrace snapshot (no \"ET\" magic)");
        return ET_WIRE_EENVELOPE;
    }
    /* A version or flag this build does not know may be a newer agent's: retryable. */
    if (in[2] != ET_WIRE_VERSION) {
        fail(&d, "envelope version %u, this build reads %u", in[2], ET_WIRE_VERSION);
        return ET_WIRE_EVERSION;
    }
    uint8_t flags = in[3];
    if (flags & ~ET_WIRE_F_KNOWN) {
        fail(&d, "unknown envelope flags 0x%02x", flags);
        return ET_WIRE_EVERSION;
    }
    const uint8_t *p = in + ET_WIRE_HDR_LEN;
    size_t plen = len - ET_WIRE_HDR_LEN;
    if (!(flags & ET_WIRE_F_ZSTD)) {
        if (flags & ET_WIRE_F_DICT) {
            fail(&d, "dictionary flag without zstd flag");
            return ET_WIRE_EENVELOPE;
        }
        return et_snapshot_decode_cbor(p, plen, out, err, errlen);
    }
#if ET_WIRE_HAVE_ZSTD_DECOMPRESS
    if (plen > ET_WIRE_MAX) {
        fail(&d, "%zu bytes, more than %u", len, (unsigned)ET_WIRE_MAX);
        return ET_WIRE_ETOOBIG;
    }
    /* Exactly one frame, nothing after it: a second frame would be a second document. */
    size_t fsize = ZSTD_findFrameCompressedSize(p, plen);
    if (ZSTD_isError(fsize)) {
        fail(&d, "zstd frame: %s", ZSTD_getErrorName(fsize));
        return ET_WIRE_EZSTD;
    }
    if (fsize != plen) {
        fail(&d, "%zu bytes after the zstd frame", plen - fsize);
        return ET_WIRE_EZSTD;
    }
    ZSTD_frameHeader fh;
    size_t hr = ZSTD_getFrameHeader(&fh, p, plen);
    if (hr != 0 || fh.frameType != ZSTD_frame) {
        fail(&d, "zstd frame header unreadable or not a data frame");
        return ET_WIRE_EZSTD;
    }
    if (fh.frameContentSize == ZSTD_CONTENTSIZE_UNKNOWN || fh.frameContentSize == ZSTD_CONTENTSIZE_ERROR) {
        fail(&d, "zstd frame without a content size");
        return ET_WIRE_EZSTD;
    }
    if (fh.frameContentSize > ET_SNAP_CBOR_MAX) {
        fail(&d, "decompresses to %llu bytes, more than %u", (unsigned long long)fh.frameContentSize,
             ET_SNAP_CBOR_MAX);
        return ET_WIRE_ETOOBIG;
    }
    if (fh.windowSize > (1ull << ET_WIRE_MAX_WLOG)) {
        fail(&d, "zstd window %llu bytes, more than %u", (unsigned long long)fh.windowSize, 1u << ET_WIRE_MAX_WLOG);
        return ET_WIRE_EZSTD;
    }
    if (!!fh.dictID != !!(flags & ET_WIRE_F_DICT)) {
        fail(&d, "dictionary flag and frame dictionary id %u disagree", fh.dictID);
        return ET_WIRE_EZSTD;
    }
    const ZSTD_DDict *dd = NULL;
    if (fh.dictID) {
        for (unsigned i = 0; i < wd->ndicts; i++)
            if (wd->dict_id[i] == fh.dictID)
                dd = wd->ddict[i];
        if (!dd) {
            fail(&d, "frame needs dictionary id %u, not loaded", fh.dictID);
            return ET_WIRE_EDICT;
        }
    }
    ZSTD_DCtx_reset(wd->dctx, ZSTD_reset_session_only);
    size_t n = dd ? ZSTD_decompress_usingDDict(wd->dctx, wd->cbor, ET_SNAP_CBOR_MAX, p, plen, dd)
                  : ZSTD_decompressDCtx(wd->dctx, wd->cbor, ET_SNAP_CBOR_MAX, p, plen);
    if (ZSTD_isError(n)) {
        fail(&d, "zstd: %s", ZSTD_getErrorName(n));
        return ET_WIRE_EZSTD;
    }
    if (n != fh.frameContentSize) {
        fail(&d, "zstd: %zu bytes decompressed, frame said %llu", n, (unsigned long long)fh.frameContentSize);
        return ET_WIRE_EZSTD;
    }
    return et_snapshot_decode_cbor(wd->cbor, n, out, err, errlen);
#else
    (void)wd;
    fail(&d, "zstd decompression is not built into this binary");
    return ET_WIRE_EUNSUPPORTED;
#endif
}
