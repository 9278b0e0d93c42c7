/* test_snapshot.c - the snapshot schema: every field through encode -> compress -> decompress
 * -> decode, empty and maximal snapshots, the 1 KB steady-state target for 2,000 goroutines
 * in 50 sites, site references, dictionaries, and rejection of malformed envelopes, zstd
 * frames and CBOR (wrong types, unknown/duplicate keys, lengths, ranges, truncation at every
 * byte). Device builds (musl) have no zstd decompressor: there the zstd round trips are
 * skipped and the raw-CBOR envelope is exercised instead. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <tinycbor/cbor.h>
#include <zstd.h>

#include "profile.h"
#include "finding.h"
#include "snapshot.h"
#include "../../tools/bench/snapshot_sample.h"

#if defined(__GLIBC__)
#define HAVE_ZDICT 1
#include <zdict.h>
#else
#define HAVE_ZDICT 0
#endif

static et_snapshot *a, *b;
static et_gprofile *gp;
static uint8_t *cbor, *wire;
static char err[256];

static int setup(void **state)
{
    (void)state;
    a = calloc(1, sizeof *a);
    b = calloc(1, sizeof *b);
    gp = calloc(1, sizeof *gp);
    cbor = malloc(ET_SNAP_CBOR_MAX);
    wire = malloc(ET_WIRE_MAX);
    return a && b && gp && cbor && wire ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(a);
    free(b);
    free(gp);
    free(cbor);
    free(wire);
    return 0;
}

static void fill_str(char *dst, size_t cap, char c, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memset(dst, c, n);
    dst[n] = 0;
}

/* Every field set to something non-zero and distinguishable; maximal = every string at its
 * maximum length and every array full. */
static void fill_all(et_snapshot *s, int maximal)
{
    et_snapshot_init(s);
    for (unsigned i = 0; i < ET_SNAP_ID_LEN; i++)
        s->id[i] = (uint8_t)(0x11 * (i + 1));
    if (maximal) {
        fill_str(s->device_id, sizeof s->device_id, 'd', 999);
        fill_str(s->board, sizeof s->board, 'b', 999);
        fill_str(s->agent_version, sizeof s->agent_version, 'v', 999);
        fill_str(s->service, sizeof s->service, 's', 999);
        fill_str(s->pod_namespace, sizeof s->pod_namespace, 'n', 999);
        fill_str(s->pod_name, sizeof s->pod_name, 'p', 999);
        fill_str(s->container, sizeof s->container, 'c', 999);
        fill_str(s->go_version, sizeof s->go_version, 'g', 999);
        fill_str(s->url, sizeof s->url, 'u', 999);
    } else {
        snprintf(s->device_id, sizeof s->device_id, "gw-0042");
        snprintf(s->board, sizeof s->board, "bbb");
        snprintf(s->agent_version, sizeof s->agent_version, "0.1.0 (abc)");
        snprintf(s->service, sizeof s->service, "billing");
        snprintf(s->pod_namespace, sizeof s->pod_namespace, "payments");
        snprintf(s->pod_name, sizeof s->pod_name, "billing-7d9f8c6b5-x2x4q");
        snprintf(s->container, sizeof s->container, "app");
        snprintf(s->go_version, sizeof s->go_version, "go1.27.1");
        snprintf(s->url, sizeof s->url, "http://127.0.0.1:6060");
    }
    s->seq = 0x1122334455ull;
    for (unsigned i = 0; i < 16; i++)
        s->boot_id[i] = (uint8_t)(0xf0 - i);
    s->mono_ms = UINT64_MAX - 7;
    s->wall_ms = -1234567; /* before 1970: still an int64 on the wire */
    s->flags = ET_SNAP_F_WALL_UNTRUSTED | ET_SNAP_F_DEEP;
    s->pid = 0x7ffffffe;
    s->start_ticks = 0xfedcba9876ull;
    s->goroutines = 5000000000ull;
    s->nsites_total = 384;
    s->goroutines_other = 77;
    for (unsigned i = 0; i < ET_G_STATE_COUNT; i++)
        s->by_state[i] = i * 3 + (i == 0 ? 0 : 1);
    s->nsites = ET_SNAP_MAX_SITES;
    for (unsigned i = 0; i < ET_SNAP_MAX_SITES; i++) {
        et_snap_site *st = &s->sites[i];
        st->state = (uint8_t)(i % ET_G_STATE_COUNT);
        st->count = UINT32_MAX - i;
        st->line = 100000 + i;
        st->max_wait_min = i * 60;
        if (maximal) {
            fill_str(st->func, sizeof st->func, (char)('A' + i % 26), 999);
            fill_str(st->file, sizeof st->file, (char)('a' + i % 26), 999);
            fill_str(st->created_by, sizeof st->created_by, (char)('0' + i % 10), 999);
        } else {
            snprintf(st->func, sizeof st->func, "main.(*srv%u).loop", i);
            snprintf(st->file, sizeof st->file, "srv/loop%u.go", i);
            if (i % 3)
                snprintf(st->created_by, sizeof st->created_by, "main.start%u", i);
        }
        st->key = et_snap_site_key(st);
        st->ref = 0;
    }
    s->mem.present = 1;
    s->mem.heap_alloc = 1;
    s->mem.heap_inuse = 2;
    s->mem.heap_idle = 3;
    s->mem.heap_released = 4;
    s->mem.heap_sys = 5;
    s->mem.stack_inuse = 6;
    s->mem.sys = UINT64_MAX;
    s->mem.next_gc = 8;
    s->mem.num_gc = 9;
    s->proc.present = 1;
    s->proc.rss_kb = 131072;
    s->proc.cpu_ticks = 99;
    s->proc.threads = 23;
    s->proc.fds = 1024;
    s->nfindings = maximal ? ET_SNAP_MAX_FINDINGS : 3;
    for (unsigned i = 0; i < s->nfindings; i++) {
        et_finding *f = &s->findings[i];
        f->kind = (uint8_t)(i % ET_F_KIND_COUNT);
        f->confidence = (uint8_t)(i % 3);
        f->state = ET_G_CHAN_SEND;
        f->evidence = ET_E_TREND | ET_E_CLUSTER | (i ? ET_E_PROC : 0);
        snprintf(f->fingerprint, sizeof f->fingerprint, "%016llx", 0x0123456789abcdefull + i);
        f->count = 2000 + i;
        f->growth_per_min = 12.5 + i;   /* exactly representable in float32 */
        f->oldest_wait_s = 1800.25;
        f->value = 1ull << 40;
        f->first_seen_ms = 1000 + i;
        f->last_seen_ms = 900000 + i;
        f->site.line = 42 + i;
        /* schema 2: survivor evidence */
        f->evidence |= ET_E_SURVIVORS;
        f->survivors = 3 + i % 5;
        f->survivors_of = 8;
        f->oldest_id = (1ull << 40) + i;
        for (unsigned k = 0; k < ET_WAIT_BUCKETS; k++)
            f->wait_hist[k] = maximal ? UINT32_MAX : k + i;
        if (maximal) {
            fill_str(f->site.func, sizeof f->site.func, 'F', 999);
            fill_str(f->site.file, sizeof f->site.file, 'f', 999);
            fill_str(f->created_by, sizeof f->created_by, 'C', 999);
            f->nstack = ET_STACK_MAX;
            for (unsigned k = 0; k < ET_STACK_MAX; k++)
                fill_str(f->stack[k], ET_FUNC_MAX, (char)('k' + k), 999);
        } else {
            snprintf(f->site.func, sizeof f->site.func, "main.producer%u", i);
            snprintf(f->site.file, sizeof f->site.file, "/src/app/producer.go");
            snprintf(f->created_by, sizeof f->created_by, "main.main");
            f->nstack = 3;
            snprintf(f->stack[0], ET_FUNC_MAX, "runtime.chansend1");
            snprintf(f->stack[1], ET_FUNC_MAX, "main.producer%u", i);
            snprintf(f->stack[2], ET_FUNC_MAX, "main.main.func1");
        }
    }
    s->spool_routine_dropped = 1;
    s->spool_findings_dropped = 2;
    s->spool_corrupt_dropped = 3;
    s->spool_bytes_today = 4;
    s->findings_dropped = 5;
    s->sites_truncated = 6;
    s->schema = 2;
    s->uplink_held = 9;
    s->uplink_rejected = 10;
    s->uplink_held_now = 11;
    s->cost_bytes = 7;
    s->cost_ms = 8;
    s->nattach = 2;
    for (unsigned i = 0; i < 2; i++) {
        s->attach[i].kind = (uint8_t)(i ? ET_ATT_TRACE : ET_ATT_GOROUTINE_DEBUG2);
        s->attach[i].finding = (uint8_t)i;
        s->attach[i].len = maximal ? ET_SNAP_ATTACH_MAX : 100 + i;
        for (unsigned k = 0; k < s->attach[i].len; k++)
            s->attach[i].data[k] = (uint8_t)(k * 13 + i);
    }
}

static void assert_same(const et_snapshot *x, const et_snapshot *y)
{
    assert_int_equal(x->schema, y->schema);
    assert_memory_equal(x->id, y->id, ET_SNAP_ID_LEN);
    assert_string_equal(x->device_id, y->device_id);
    assert_string_equal(x->board, y->board);
    assert_string_equal(x->agent_version, y->agent_version);
    assert_true(x->seq == y->seq);
    assert_memory_equal(x->boot_id, y->boot_id, 16);
    assert_true(x->mono_ms == y->mono_ms);
    assert_true(x->wall_ms == y->wall_ms);
    assert_int_equal(x->flags, y->flags);
    assert_string_equal(x->service, y->service);
    assert_string_equal(x->pod_namespace, y->pod_namespace);
    assert_string_equal(x->pod_name, y->pod_name);
    assert_string_equal(x->container, y->container);
    assert_int_equal(x->pid, y->pid);
    assert_true(x->start_ticks == y->start_ticks);
    assert_string_equal(x->go_version, y->go_version);
    assert_string_equal(x->url, y->url);
    assert_true(x->goroutines == y->goroutines);
    assert_int_equal(x->nsites_total, y->nsites_total);
    assert_true(x->goroutines_other == y->goroutines_other);
    assert_memory_equal(x->by_state, y->by_state, sizeof x->by_state);
    assert_int_equal(x->nsites, y->nsites);
    for (unsigned i = 0; i < x->nsites; i++) {
        const et_snap_site *p = &x->sites[i], *q = &y->sites[i];
        assert_int_equal(p->key, q->key);
        assert_int_equal(p->ref, q->ref);
        assert_int_equal(p->count, q->count);
        assert_int_equal(p->max_wait_min, q->max_wait_min);
        if (!p->ref) {
            assert_int_equal(p->state, q->state);
            assert_int_equal(p->line, q->line);
            assert_string_equal(p->func, q->func);
            assert_string_equal(p->file, q->file);
            assert_string_equal(p->created_by, q->created_by);
        }
    }
    assert_memory_equal(&x->mem, &y->mem, sizeof x->mem);
    assert_memory_equal(&x->proc, &y->proc, sizeof x->proc);
    assert_int_equal(x->nfindings, y->nfindings);
    for (unsigned i = 0; i < x->nfindings; i++) {
        const et_finding *p = &x->findings[i], *q = &y->findings[i];
        assert_int_equal(p->kind, q->kind);
        assert_int_equal(p->confidence, q->confidence);
        assert_int_equal(p->state, q->state);
        assert_int_equal(p->evidence, q->evidence);
        assert_string_equal(p->fingerprint, q->fingerprint);
        assert_string_equal(p->site.func, q->site.func);
        assert_string_equal(p->site.file, q->site.file);
        assert_int_equal(p->site.line, q->site.line);
        assert_string_equal(p->created_by, q->created_by);
        assert_int_equal(p->nstack, q->nstack);
        for (unsigned k = 0; k < p->nstack; k++)
            assert_string_equal(p->stack[k], q->stack[k]);
        assert_int_equal(p->count, q->count);
        assert_true(p->growth_per_min == q->growth_per_min);
        assert_true(p->oldest_wait_s == q->oldest_wait_s);
        assert_true(p->value == q->value);
        assert_true(p->first_seen_ms == q->first_seen_ms);
        assert_true(p->last_seen_ms == q->last_seen_ms);
        assert_int_equal(p->survivors, q->survivors);
        assert_int_equal(p->survivors_of, q->survivors_of);
        assert_true(p->oldest_id == q->oldest_id);
        assert_memory_equal(p->wait_hist, q->wait_hist, sizeof p->wait_hist);
    }
    assert_true(x->spool_routine_dropped == y->spool_routine_dropped);
    assert_true(x->spool_findings_dropped == y->spool_findings_dropped);
    assert_true(x->spool_corrupt_dropped == y->spool_corrupt_dropped);
    assert_true(x->spool_bytes_today == y->spool_bytes_today);
    assert_int_equal(x->findings_dropped, y->findings_dropped);
    assert_int_equal(x->sites_truncated, y->sites_truncated);
    assert_true(x->uplink_held == y->uplink_held);
    assert_true(x->uplink_rejected == y->uplink_rejected);
    assert_int_equal(x->uplink_held_now, y->uplink_held_now);
    assert_true(x->cost_bytes == y->cost_bytes);
    assert_int_equal(x->cost_ms, y->cost_ms);
    assert_int_equal(x->nattach, y->nattach);
    for (unsigned i = 0; i < x->nattach; i++) {
        assert_int_equal(x->attach[i].kind, y->attach[i].kind);
        assert_int_equal(x->attach[i].finding, y->attach[i].finding);
        assert_int_equal(x->attach[i].len, y->attach[i].len);
        assert_memory_equal(x->attach[i].data, y->attach[i].data, x->attach[i].len);
    }
}

/* encode with params, decode, compare */
static size_t round_trip(const et_snapshot *s, const et_wire_params *wp, et_wire_dec *dec)
{
    et_wire_enc *enc = et_wire_enc_create(wp, err, sizeof err);
    if (!enc)
        print_error("%s\n", err);
    assert_non_null(enc);
    size_t n = 0;
    int r = et_wire_encode(enc, s, wire, ET_WIRE_MAX, &n, err, sizeof err);
    if (r)
        print_error("%s\n", err);
    assert_int_equal(r, 0);
    assert_true(n <= ET_WIRE_MAX);
    if (!(wire[3] & ET_WIRE_F_ZSTD) || et_wire_can_decompress()) {
        r = et_wire_decode(dec, wire, n, b, err, sizeof err);
        if (r)
            print_error("decode: %s\n", err);
        assert_int_equal(r, ET_WIRE_OK);
        assert_same(s, b);
    } else {
        assert_int_equal(et_wire_decode(dec, wire, n, b, err, sizeof err), ET_WIRE_EUNSUPPORTED);
    }
    et_wire_enc_free(enc);
    return n;
}

static void test_round_trip_every_field(void **state)
{
    (void)state;
    et_wire_dec *dec = et_wire_dec_create(err, sizeof err);
    assert_non_null(dec);
    fill_all(a, 0);
    /* a mix of full and reference sites */
    for (unsigned i = 0; i < a->nsites; i += 2)
        a->sites[i].ref = 1;
    et_wire_params wp = {0};
    round_trip(a, &wp, dec);
    wp.raw = 1;
    size_t n = round_trip(a, &wp, dec);
    assert_int_equal(wire[3], 0);
    /* CBOR-only API gives the same document */
    size_t clen;
    assert_int_equal(et_snapshot_encode_cbor(a, cbor, ET_SNAP_CBOR_MAX, &clen, err, sizeof err), 0);
    assert_int_equal(clen + ET_WIRE_HDR_LEN, n);
    assert_int_equal(et_snapshot_decode_cbor(cbor, clen, b, err, sizeof err), ET_WIRE_OK);
    assert_same(a, b);
    wp.raw = 0;
    wp.level = 6;
    wp.window_log = 15;
    round_trip(a, &wp, dec);
    et_wire_dec_free(dec);
}

static void test_empty_and_maximal(void **state)
{
    (void)state;
    et_wire_dec *dec = et_wire_dec_create(err, sizeof err);
    et_snapshot_init(a);
    a->id[3] = 1;
    snprintf(a->device_id, sizeof a->device_id, "d");
    snprintf(a->service, sizeof a->service, "s");
    et_wire_params wp = {0};
    size_t n = round_trip(a, &wp, dec);
    assert_true(n < 64);
    /* the encoder refuses what the collector would reject */
    a->service[0] = 0;
    size_t clen;
    assert_int_equal(et_snapshot_encode_cbor(a, cbor, ET_SNAP_CBOR_MAX, &clen, err, sizeof err), -1);
    assert_non_null(strstr(err, "service"));

    /* every field at its maximum fits the documented bounds */
    fill_all(a, 1);
    assert_int_equal(et_snapshot_encode_cbor(a, cbor, ET_SNAP_CBOR_MAX, &clen, err, sizeof err), 0);
    print_message("maximal snapshot: %zu CBOR bytes (bound %u)\n", clen, ET_SNAP_CBOR_MAX);
    assert_true(clen <= ET_SNAP_CBOR_MAX);
    n = round_trip(a, &wp, dec);
    assert_true(n <= ET_WIRE_MAX);
    /* the device's encoder stays small with the default window */
    et_wire_enc *enc = et_wire_enc_create(&wp, err, sizeof err);
    assert_non_null(enc);
    print_message("maximal snapshot: %zu wire bytes; encoder memory %zu bytes\n", n, et_wire_enc_memory(enc));
    assert_true(et_wire_enc_memory(enc) <= 320u * 1024u);
    et_wire_enc_free(enc);
    et_wire_params w17 = {.window_log = 17};
    n = round_trip(a, &w17, dec);
    print_message("maximal snapshot with window 2^17: %zu wire bytes\n", n);
    wp.raw = 1;
    round_trip(a, &wp, dec);
    et_wire_dec_free(dec);
}

/* The target: 2,000 goroutines in 50 sites, steady state, <= 1 KB on the wire. */
static void test_size_target(void **state)
{
    (void)state;
    et_wire_dec *dec = et_wire_dec_create(err, sizeof err);
    et_sample_gprofile(gp, 50, 2000);
    et_site_memo memo;
    memset(&memo, 0, sizeof memo);
    et_wire_params wp = {.level = 3, .window_log = 17};
    size_t sizes[12];
    for (unsigned k = 0; k < 12; k++) {
        et_sample_snapshot(a, gp, 0, 100 + k);
        et_snapshot_apply_memo(a, &memo, 10);
        sizes[k] = round_trip(a, &wp, dec);
    }
    print_message("2000 goroutines / 50 sites, top %u: first %zu bytes, steady %zu bytes, refresh %zu bytes\n",
                  a->nsites, sizes[0], sizes[1], sizes[10]);
    assert_int_equal(a->nsites, ET_SNAP_DEFAULT_TOP_N);
    assert_int_equal(a->goroutines, 2000);
    assert_int_equal(a->nsites_total, 50);
    for (unsigned k = 1; k < 10; k++)
        assert_true(sizes[k] <= 1024);
    assert_true(sizes[0] <= 1536);
    assert_true(sizes[10] == sizes[0] || sizes[10] <= 1536); /* every 10th: names again */
    for (unsigned k = 11; k < 12; k++)
        assert_true(sizes[k] <= 1024);
    /* even 32 sites stay under the target in the steady state */
    memset(&memo, 0, sizeof memo);
    et_sample_snapshot(a, gp, 32, 1);
    et_snapshot_apply_memo(a, &memo, 10);
    et_sample_snapshot(a, gp, 32, 2);
    et_snapshot_apply_memo(a, &memo, 10);
    assert_int_equal(a->nsites, 32);
    assert_true(round_trip(a, &wp, dec) <= 1024);
    /* the listed sites are the biggest, in order; the rest is counted in goroutines_other */
    uint64_t listed = 0;
    for (unsigned i = 0; i < a->nsites; i++) {
        listed += a->sites[i].count;
        if (i)
            assert_true(a->sites[i].count <= a->sites[i - 1].count);
    }
    assert_true(listed + a->goroutines_other == a->goroutines);
    /* file paths are cut to their last two elements */
    assert_string_equal(a->sites[0].file, "http/server.go");
    et_wire_dec_free(dec);
}

static void test_helpers(void **state)
{
    (void)state;
    uint8_t id[16], id2[16], boot[16];
    memset(boot, 7, sizeof boot);
    assert_true(et_snapshot_new_id(id, boot, 1) >= 0);
    assert_true(et_snapshot_new_id(id2, boot, 2) >= 0);
    assert_memory_not_equal(id, id2, 16);
    FILE *f = fopen("/tmp/et-test-bootid", "w");
    assert_non_null(f);
    fputs("6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8\n", f);
    fclose(f);
    assert_int_equal(et_read_boot_id("/tmp/et-test-bootid", boot), 0);
    char txt[37];
    et_snap_uuid_text(boot, txt);
    assert_string_equal(txt, "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8");
    remove("/tmp/et-test-bootid");
    assert_int_equal(et_wall_clock_untrusted(0), 1);
    assert_int_equal(et_wall_clock_untrusted(ET_WALL_SANE_FLOOR_MS - 1), 1);
    assert_string_equal(et_snap_state_name(ET_G_CHAN_RECV), "chan receive");
    assert_string_equal(et_snap_state_name(999), "?");
    char hex[33];
    memset(id, 0xab, 16);
    et_snap_id_hex(id, hex);
    assert_string_equal(hex, "abababababababababababababababab");
    /* memo: second snapshot refers, refresh sends names again */
    et_sample_gprofile(gp, 50, 2000);
    et_site_memo memo;
    memset(&memo, 0, sizeof memo);
    et_sample_snapshot(a, gp, 8, 1);
    et_snapshot_apply_memo(a, &memo, 3);
    assert_int_equal(a->sites[0].ref, 0);
    et_sample_snapshot(a, gp, 8, 2);
    et_snapshot_apply_memo(a, &memo, 3);
    assert_int_equal(a->sites[0].ref, 1);
    et_sample_snapshot(a, gp, 8, 3);
    et_snapshot_apply_memo(a, &memo, 3);
    assert_int_equal(a->sites[7].ref, 1);
    et_sample_snapshot(a, gp, 8, 4);
    et_snapshot_apply_memo(a, &memo, 3);
    assert_int_equal(a->sites[0].ref, 0);
    /* findings and attachments are bounded */
    et_snapshot_init(a);
    et_finding fd;
    memset(&fd, 0, sizeof fd);
    for (unsigned i = 0; i < ET_SNAP_MAX_FINDINGS; i++)
        assert_int_equal(et_snapshot_add_finding(a, &fd), 0);
    assert_int_equal(et_snapshot_add_finding(a, &fd), -1);
    assert_int_equal(a->findings_dropped, 1);
    static uint8_t big[ET_SNAP_ATTACH_MAX + 10];
    assert_int_equal(et_snapshot_add_attachment(a, ET_ATT_GOROUTINE_DEBUG2, 0, big, sizeof big), 1);
    assert_int_equal(a->attach[0].len, ET_SNAP_ATTACH_MAX);
    assert_int_equal(et_snapshot_add_attachment(a, ET_ATT_TRACE, 0, big, 5), 0);
    assert_int_equal(et_snapshot_add_attachment(a, ET_ATT_TRACE, 0, big, 5), -1);
}

#if HAVE_ZDICT
static void test_dictionary(void **state)
{
    (void)state;
    if (!et_wire_can_decompress())
        skip();
    /* train on 200 snapshots of varying services; the dictionary id travels in the frame */
    static uint8_t samples[200 * 4096];
    size_t sizes[200], total = 0;
    for (unsigned k = 0; k < 200; k++) {
        et_sample_gprofile(gp, 10 + k % 40, 100 + k * 13);
        et_sample_snapshot(a, gp, 16, k);
        snprintf(a->service, sizeof a->service, "svc-%u", k % 17);
        size_t n;
        assert_int_equal(et_snapshot_encode_cbor(a, samples + total, sizeof samples - total, &n, err, sizeof err), 0);
        sizes[k] = n;
        total += n;
    }
    static uint8_t dict[8192];
    size_t dlen = ZDICT_trainFromBuffer(dict, sizeof dict, samples, sizes, 200);
    assert_false(ZDICT_isError(dlen));
    unsigned did = ZDICT_getDictID(dict, dlen);
    assert_true(did != 0);

    et_sample_gprofile(gp, 50, 2000);
    et_sample_snapshot(a, gp, 16, 5000);
    et_wire_params wp = {.level = 3, .dict = dict, .dict_len = dlen};
    et_wire_enc *enc = et_wire_enc_create(&wp, err, sizeof err);
    assert_non_null(enc);
    assert_int_equal(et_wire_enc_dict_id(enc), did);
    size_t n;
    assert_int_equal(et_wire_encode(enc, a, wire, ET_WIRE_MAX, &n, err, sizeof err), 0);
    assert_int_equal(wire[3], ET_WIRE_F_ZSTD | ET_WIRE_F_DICT);
    print_message("first snapshot with a %zu-byte dictionary: %zu bytes\n", dlen, n);
    et_wire_dec *dec = et_wire_dec_create(err, sizeof err);
    assert_int_equal(et_wire_decode(dec, wire, n, b, err, sizeof err), ET_WIRE_EDICT);
    assert_int_equal(et_wire_dec_add_dict(dec, dict, dlen, err, sizeof err), 0);
    assert_int_equal(et_wire_decode(dec, wire, n, b, err, sizeof err), ET_WIRE_OK);
    assert_same(a, b);
    /* flag and frame must agree */
    wire[3] = ET_WIRE_F_ZSTD;
    assert_int_equal(et_wire_decode(dec, wire, n, b, err, sizeof err), ET_WIRE_EZSTD);
    assert_int_equal(et_wire_dec_add_dict(dec, "notadict", 8, err, sizeof err), -1);
    et_wire_dec_free(dec);
    et_wire_enc_free(enc);
}
#endif

/* ---- malformed input ---------------------------------------------------------------------- */
/* Builds a minimal valid top-level map, with `extra` called to append more entries. */
typedef void (*extra_fn)(CborEncoder *m);

static size_t build(uint8_t *buf, size_t cap, extra_fn extra, int omit_key)
{
    CborEncoder root, m, t;
    cbor_encoder_init(&root, buf, cap, 0);
    cbor_encoder_create_map(&root, &m, CborIndefiniteLength);
    if (omit_key != 0) {
        cbor_encode_uint(&m, 0);
        cbor_encode_uint(&m, 1);
    }
    if (omit_key != 1) {
        static const uint8_t id[16] = {1, 2, 3};
        cbor_encode_uint(&m, 1);
        cbor_encode_byte_string(&m, id, 16);
    }
    if (omit_key != 2) {
        cbor_encode_uint(&m, 2);
        cbor_encode_text_stringz(&m, "dev");
    }
    if (omit_key != 5) {
        cbor_encode_uint(&m, 5);
        cbor_encode_uint(&m, 9);
    }
    if (omit_key != 10) {
        cbor_encode_uint(&m, 10);
        cbor_encoder_create_map(&m, &t, 1);
        cbor_encode_uint(&t, 0);
        cbor_encode_text_stringz(&t, "svc");
        cbor_encoder_close_container(&m, &t);
    }
    if (extra)
        extra(&m);
    cbor_encoder_close_container(&root, &m);
    return cbor_encoder_get_buffer_size(&root, buf);
}

static void x_unknown_key(CborEncoder *m) { cbor_encode_uint(m, 40); cbor_encode_uint(m, 1); }
static void x_dup_key(CborEncoder *m) { cbor_encode_uint(m, 5); cbor_encode_uint(m, 1); }
static void x_text_key(CborEncoder *m) { cbor_encode_text_stringz(m, "seq"); cbor_encode_uint(m, 1); }
static void x_flags_range(CborEncoder *m) { cbor_encode_uint(m, 7); cbor_encode_uint(m, 0x100); }
static void x_board_type(CborEncoder *m) { cbor_encode_uint(m, 3); cbor_encode_uint(m, 3); }
static void x_board_long(CborEncoder *m)
{
    char s[200];
    memset(s, 'x', sizeof s - 1);
    s[199] = 0;
    cbor_encode_uint(m, 3);
    cbor_encode_text_stringz(m, s);
}
static void x_board_nul(CborEncoder *m) { cbor_encode_uint(m, 3); cbor_encode_text_string(m, "a\0b", 3); }
static void x_boot_len(CborEncoder *m) { cbor_encode_uint(m, 6); cbor_encode_byte_string(m, (const uint8_t *)"abc", 3); }
static void x_wall_big(CborEncoder *m) { cbor_encode_uint(m, 9); cbor_encode_uint(m, UINT64_MAX); }
static void x_site_state(CborEncoder *m)
{
    CborEncoder g, arr, s;
    cbor_encode_uint(m, 11);
    cbor_encoder_create_map(m, &g, 1);
    cbor_encode_uint(&g, 4);
    cbor_encoder_create_array(&g, &arr, 1);
    cbor_encoder_create_array(&arr, &s, 7);
    cbor_encode_uint(&s, 200); /* state out of range */
    cbor_encode_uint(&s, 1);
    cbor_encode_text_stringz(&s, "f");
    cbor_encode_text_stringz(&s, "f.go");
    cbor_encode_uint(&s, 1);
    cbor_encode_uint(&s, 0);
    cbor_encode_text_stringz(&s, "");
    cbor_encoder_close_container(&arr, &s);
    cbor_encoder_close_container(&g, &arr);
    cbor_encoder_close_container(m, &g);
}
static void x_site_arity(CborEncoder *m)
{
    CborEncoder g, arr, s;
    cbor_encode_uint(m, 11);
    cbor_encoder_create_map(m, &g, 1);
    cbor_encode_uint(&g, 4);
    cbor_encoder_create_array(&g, &arr, 1);
    cbor_encoder_create_array(&arr, &s, 2);
    cbor_encode_uint(&s, 1);
    cbor_encode_uint(&s, 1);
    cbor_encoder_close_container(&arr, &s);
    cbor_encoder_close_container(&g, &arr);
    cbor_encoder_close_container(m, &g);
}
static void x_too_many_sites(CborEncoder *m)
{
    CborEncoder g, arr, s;
    cbor_encode_uint(m, 11);
    cbor_encoder_create_map(m, &g, 1);
    cbor_encode_uint(&g, 4);
    cbor_encoder_create_array(&g, &arr, ET_SNAP_MAX_SITES + 1);
    for (int i = 0; i < ET_SNAP_MAX_SITES + 1; i++) {
        cbor_encoder_create_array(&arr, &s, 3);
        cbor_encode_uint(&s, (uint64_t)i);
        cbor_encode_uint(&s, 1);
        cbor_encode_uint(&s, 0);
        cbor_encoder_close_container(&arr, &s);
    }
    cbor_encoder_close_container(&g, &arr);
    cbor_encoder_close_container(m, &g);
}
static void x_finding_nan(CborEncoder *m)
{
    CborEncoder arr, f;
    cbor_encode_uint(m, 14);
    cbor_encoder_create_array(m, &arr, 1);
    cbor_encoder_create_map(&arr, &f, 2);
    cbor_encode_uint(&f, 0);
    cbor_encode_uint(&f, 0);
    cbor_encode_uint(&f, 9);
    cbor_encode_double(&f, NAN);
    cbor_encoder_close_container(&arr, &f);
    cbor_encoder_close_container(m, &arr);
}
static void x_finding_fp(CborEncoder *m)
{
    CborEncoder arr, f;
    cbor_encode_uint(m, 14);
    cbor_encoder_create_array(m, &arr, 1);
    cbor_encoder_create_map(&arr, &f, 2);
    cbor_encode_uint(&f, 0);
    cbor_encode_uint(&f, 0);
    cbor_encode_uint(&f, 3);
    cbor_encode_text_stringz(&f, "XYZ");
    cbor_encoder_close_container(&arr, &f);
    cbor_encoder_close_container(m, &arr);
}
static void x_finding_nokind(CborEncoder *m)
{
    CborEncoder arr, f;
    cbor_encode_uint(m, 14);
    cbor_encoder_create_array(m, &arr, 1);
    cbor_encoder_create_map(&arr, &f, 1);
    cbor_encode_uint(&f, 6);
    cbor_encode_uint(&f, 10);
    cbor_encoder_close_container(&arr, &f);
    cbor_encoder_close_container(m, &arr);
}
static void x_attach_orphan(CborEncoder *m)
{
    CborEncoder arr, at;
    cbor_encode_uint(m, 17);
    cbor_encoder_create_array(m, &arr, 1);
    cbor_encoder_create_array(&arr, &at, 3);
    cbor_encode_uint(&at, 0);
    cbor_encode_uint(&at, 0); /* finding 0, but there are no findings */
    cbor_encode_byte_string(&at, (const uint8_t *)"x", 1);
    cbor_encoder_close_container(&arr, &at);
    cbor_encoder_close_container(m, &arr);
}
static void x_deep(CborEncoder *m)
{
    /* nesting the schema does not have: target with a nested map value */
    CborEncoder c1, c2;
    cbor_encode_uint(m, 13);
    cbor_encoder_create_map(m, &c1, 1);
    cbor_encode_uint(&c1, 0);
    cbor_encoder_create_array(&c1, &c2, 1);
    cbor_encode_uint(&c2, 1);
    cbor_encoder_close_container(&c1, &c2);
    cbor_encoder_close_container(m, &c1);
}

static void expect_reject(const uint8_t *buf, size_t n, int status, const char *what)
{
    int r = et_snapshot_decode_cbor(buf, n, b, err, sizeof err);
    if (r != status)
        print_error("%s: got %d (%s), want %d\n", what, r, err, status);
    assert_int_equal(r, status);
    assert_true(err[0] != 0);
}

static void test_malformed_cbor(void **state)
{
    (void)state;
    static uint8_t buf[4096];
    size_t n = build(buf, sizeof buf, NULL, -1);
    assert_int_equal(et_snapshot_decode_cbor(buf, n, b, err, sizeof err), ET_WIRE_OK);
    assert_string_equal(b->service, "svc");

    static const struct { extra_fn fn; const char *what; } cases[] = {
        {x_unknown_key, "unknown key"}, {x_dup_key, "duplicate key"}, {x_text_key, "text key"},
        {x_flags_range, "flags range"}, {x_board_type, "board type"}, {x_board_long, "board too long"},
        {x_board_nul, "NUL in text"}, {x_boot_len, "boot id length"}, {x_wall_big, "wall_ms > int64"},
        {x_site_state, "site state range"}, {x_site_arity, "site arity"}, {x_too_many_sites, "too many sites"},
        {x_finding_nan, "NaN"}, {x_finding_fp, "fingerprint"}, {x_finding_nokind, "finding without kind"},
        {x_attach_orphan, "orphan attachment"}, {x_deep, "unexpected nesting"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n = build(buf, sizeof buf, cases[i].fn, -1);
        expect_reject(buf, n, ET_WIRE_ESCHEMA, cases[i].what);
    }
    static const int required[] = {0, 1, 2, 5, 10};
    for (size_t i = 0; i < 5; i++) {
        n = build(buf, sizeof buf, NULL, required[i]);
        expect_reject(buf, n, ET_WIRE_ESCHEMA, "missing required key");
    }
    /* not a map; trailing data; truncated at every length; invalid UTF-8 */
    uint8_t arr1[] = {0x81, 0x01};
    expect_reject(arr1, sizeof arr1, ET_WIRE_ESCHEMA, "array at top");
    n = build(buf, sizeof buf, NULL, -1);
    buf[n] = 0x00;
    expect_reject(buf, n + 1, ET_WIRE_ECBOR, "trailing byte");
    for (size_t k = 0; k < n; k++) {
        int r = et_snapshot_decode_cbor(buf, k, b, err, sizeof err);
        assert_true(r == ET_WIRE_ECBOR || r == ET_WIRE_ESCHEMA);
    }
    n = build(buf, sizeof buf, NULL, -1);
    uint8_t *svc = memmem(buf, n, "svc", 3);
    assert_non_null(svc);
    svc[1] = 0xff;
    expect_reject(buf, n, ET_WIRE_ECBOR, "invalid UTF-8");

    /* a full snapshot truncated at every length and with every single byte flipped: never
     * accepted broken, never a crash (ASan/UBSan watch) */
    fill_all(a, 0);
    size_t clen;
    assert_int_equal(et_snapshot_encode_cbor(a, cbor, ET_SNAP_CBOR_MAX, &clen, err, sizeof err), 0);
    for (size_t k = 0; k < clen; k++)
        assert_int_not_equal(et_snapshot_decode_cbor(cbor, k, b, err, sizeof err), ET_WIRE_OK);
    for (size_t k = 0; k < clen; k++) {
        cbor[k] ^= 0x5a;
        (void)et_snapshot_decode_cbor(cbor, clen, b, err, sizeof err);
        cbor[k] ^= 0x5a;
    }
}

static void test_malformed_envelope(void **state)
{
    (void)state;
    et_wire_dec *dec = et_wire_dec_create(err, sizeof err);
    fill_all(a, 0);
    et_wire_params wp = {0};
    et_wire_enc *enc = et_wire_enc_create(&wp, err, sizeof err);
    size_t n;
    assert_int_equal(et_wire_encode(enc, a, wire, ET_WIRE_MAX, &n, err, sizeof err), 0);
    assert_int_equal(wire[3], ET_WIRE_F_ZSTD);
    uint8_t save[4];
    memcpy(save, wire, 4);

    assert_int_equal(et_wire_decode(dec, wire, 3, b, err, sizeof err), ET_WIRE_EENVELOPE);
    wire[0] = 'X';
    assert_int_equal(et_wire_decode(dec, wire, n, b, err, sizeof err), ET_WIRE_EENVELOPE);
    memcpy(wire, save, 4);
    /* a newer agent's envelope version or flag: "not by me", retryable (5.01), never corrupt */
    wire[2] = 2;
    assert_int_equal(et_wire_decode(dec, wire, n, b, err, sizeof err), ET_WIRE_EVERSION);
    memcpy(wire, save, 4);
    wire[3] = 0x81;
    assert_int_equal(et_wire_decode(dec, wire, n, b, err, sizeof err), ET_WIRE_EVERSION);
    wire[3] = ET_WIRE_F_DICT;
    assert_int_equal(et_wire_decode(dec, wire, n, b, err, sizeof err), ET_WIRE_EENVELOPE);
    memcpy(wire, save, 4);
    if (et_wire_can_decompress()) {
        assert_int_equal(et_wire_decode(dec, wire, n, b, err, sizeof err), ET_WIRE_OK);
        /* trailing bytes after the frame, a truncated frame, garbage frames */
        wire[n] = 0;
        assert_int_equal(et_wire_decode(dec, wire, n + 1, b, err, sizeof err), ET_WIRE_EZSTD);
        for (size_t k = ET_WIRE_HDR_LEN; k < n; k++)
            assert_int_not_equal(et_wire_decode(dec, wire, k, b, err, sizeof err), ET_WIRE_OK);
        for (size_t k = ET_WIRE_HDR_LEN; k < n; k++) {
            wire[k] ^= 0xa5;
            (void)et_wire_decode(dec, wire, n, b, err, sizeof err);
            wire[k] ^= 0xa5;
        }
        /* a frame that would decompress beyond the bound is refused before decompressing */
        static uint8_t zeros[ET_SNAP_CBOR_MAX + 100];
        size_t z = ZSTD_compress(wire + ET_WIRE_HDR_LEN, ET_WIRE_MAX - ET_WIRE_HDR_LEN, zeros, sizeof zeros, 1);
        assert_false(ZSTD_isError(z));
        assert_int_equal(et_wire_decode(dec, wire, ET_WIRE_HDR_LEN + z, b, err, sizeof err), ET_WIRE_ETOOBIG);
        /* a valid frame of non-CBOR */
        z = ZSTD_compress(wire + ET_WIRE_HDR_LEN, ET_WIRE_MAX - ET_WIRE_HDR_LEN, "\xff\xff\xff", 3, 1);
        assert_int_equal(et_wire_decode(dec, wire, ET_WIRE_HDR_LEN + z, b, err, sizeof err), ET_WIRE_ECBOR);
    } else {
        assert_int_equal(et_wire_decode(dec, wire, n, b, err, sizeof err), ET_WIRE_EUNSUPPORTED);
    }
    assert_string_equal(et_wire_status_name(ET_WIRE_EENVELOPE), "bad envelope");
    assert_string_equal(et_wire_status_name(ET_WIRE_EVERSION), "unknown version");
    et_wire_enc_free(enc);
    et_wire_dec_free(dec);
}

/* A schema version this build does not read is EVERSION wherever key 0 sits in the map and
 * whatever else the document holds (its keys may all be new); a known version with a bad
 * field is ESCHEMA. The collector answers 5.01 (kept by the agent) and 4.22 (dropped). */
static void test_schema_version_is_not_a_violation(void **state)
{
    (void)state;
    /* {0: 99, 40: "new field"} and {40: "x", 0: 4}: keys this build has never heard of */
    static const uint8_t v99[] = {0xa2, 0x00, 0x18, 0x63, 0x18, 0x28, 0x63, 'n', 'e', 'w'};
    static const uint8_t v3_late[] = {0xa2, 0x18, 0x28, 0x61, 'x', 0x00, 0x04};
    /* {0: 1, 40: 1}: a version it reads, with a key that version does not have */
    static const uint8_t v1_bad[] = {0xa2, 0x00, 0x01, 0x18, 0x28, 0x01};
    /* {1: 1}: no version at all is a violation, not an unknown version */
    static const uint8_t none[] = {0xa1, 0x01, 0x01};
    assert_int_equal(et_snapshot_decode_cbor(v99, sizeof v99, b, err, sizeof err), ET_WIRE_EVERSION);
    assert_non_null(strstr(err, "schema version 99"));
    assert_int_equal(et_snapshot_decode_cbor(v3_late, sizeof v3_late, b, err, sizeof err), ET_WIRE_EVERSION);
    assert_int_equal(et_snapshot_decode_cbor(v1_bad, sizeof v1_bad, b, err, sizeof err), ET_WIRE_ESCHEMA);
    assert_int_equal(et_snapshot_decode_cbor(none, sizeof none, b, err, sizeof err), ET_WIRE_ESCHEMA);
    /* schema 2's counter keys are unknown keys in a schema 1 document, known in schema 2 */
    static const uint8_t v1_held[] = {0xa2, 0x00, 0x01, 0x0f, 0xa1, 0x06, 0x05};
    assert_int_equal(et_snapshot_decode_cbor(v1_held, sizeof v1_held, b, err, sizeof err), ET_WIRE_ESCHEMA);
    assert_non_null(strstr(err, "unknown key 6"));
    /* a schema 1 snapshot never carries them: a schema 1 collector reads what a new agent writes */
    et_snapshot_init(a);
    assert_int_equal(a->schema, ET_SNAP_SCHEMA_MIN);
    memset(a->id, 1, sizeof a->id);
    snprintf(a->device_id, sizeof a->device_id, "gw");
    snprintf(a->service, sizeof a->service, "svc");
    a->uplink_held = 3;
    static uint8_t cb[4096];
    size_t cn = 0;
    assert_int_equal(et_snapshot_encode_cbor(a, cb, sizeof cb, &cn, err, sizeof err), 0);
    assert_int_equal(et_snapshot_decode_cbor(cb, cn, b, err, sizeof err), ET_WIRE_OK);
    assert_int_equal(b->schema, 1);
    assert_true(b->uplink_held == 0);
    a->schema = 2;
    assert_int_equal(et_snapshot_encode_cbor(a, cb, sizeof cb, &cn, err, sizeof err), 0);
    assert_int_equal(et_snapshot_decode_cbor(cb, cn, b, err, sizeof err), ET_WIRE_OK);
    assert_int_equal(b->schema, 2);
    assert_true(b->uplink_held == 3);
    /* survivor evidence: written in schema 2 only; schema 1 keeps the finding, without it */
    a->nfindings = 1;
    memset(&a->findings[0], 0, sizeof a->findings[0]);
    snprintf(a->findings[0].fingerprint, sizeof a->findings[0].fingerprint, "0123456789abcdef");
    a->findings[0].evidence = ET_E_CLUSTER | ET_E_SURVIVORS;
    a->findings[0].survivors = a->findings[0].survivors_of = 3;
    a->findings[0].oldest_id = 77;
    a->findings[0].wait_hist[1] = 3;
    assert_true(et_finding_needs_v2(&a->findings[0]));
    assert_int_equal(et_snapshot_encode_cbor(a, cb, sizeof cb, &cn, err, sizeof err), 0);
    assert_int_equal(et_snapshot_decode_cbor(cb, cn, b, err, sizeof err), ET_WIRE_OK);
    assert_int_equal(b->findings[0].evidence, ET_E_CLUSTER | ET_E_SURVIVORS);
    assert_int_equal(b->findings[0].survivors_of, 3);
    assert_true(b->findings[0].oldest_id == 77);
    assert_int_equal(b->findings[0].wait_hist[1], 3);
    a->schema = 1;
    assert_int_equal(et_snapshot_encode_cbor(a, cb, sizeof cb, &cn, err, sizeof err), 0);
    assert_int_equal(et_snapshot_decode_cbor(cb, cn, b, err, sizeof err), ET_WIRE_OK);
    assert_int_equal(b->findings[0].evidence, ET_E_CLUSTER);
    assert_int_equal(b->findings[0].survivors_of, 0);
    /* why a heap finding has no site: schema 2 only, like the survivors */
    memset(&a->findings[0], 0, sizeof a->findings[0]);
    snprintf(a->findings[0].fingerprint, sizeof a->findings[0].fingerprint, "0123456789abcdef");
    a->findings[0].kind = ET_F_HEAP_GROWTH;
    a->findings[0].evidence = ET_E_MEMSTATS;
    a->findings[0].no_site = ET_NS_PROFILE_LAG;
    assert_true(et_finding_needs_v2(&a->findings[0]));
    a->schema = 2;
    assert_int_equal(et_snapshot_encode_cbor(a, cb, sizeof cb, &cn, err, sizeof err), 0);
    assert_int_equal(et_snapshot_decode_cbor(cb, cn, b, err, sizeof err), ET_WIRE_OK);
    assert_int_equal(b->findings[0].no_site, ET_NS_PROFILE_LAG);
    a->schema = 1;
    assert_int_equal(et_snapshot_encode_cbor(a, cb, sizeof cb, &cn, err, sizeof err), 0);
    assert_int_equal(et_snapshot_decode_cbor(cb, cn, b, err, sizeof err), ET_WIRE_OK);
    assert_int_equal(b->findings[0].kind, ET_F_HEAP_GROWTH);
    assert_int_equal(b->findings[0].no_site, 0);
    /* {0: 2, 14: [{0: 2, 20: 9}]}: a reason the agent never writes; {0: 1, ...20: 1}: key 20
     * in a schema 1 document */
    static const uint8_t ns_bad[] = {0xa2, 0x00, 0x02, 0x0e, 0x81, 0xa2, 0x00, 0x02, 0x14, 0x09};
    assert_int_equal(et_snapshot_decode_cbor(ns_bad, sizeof ns_bad, b, err, sizeof err), ET_WIRE_ESCHEMA);
    assert_non_null(strstr(err, "no_site"));
    static const uint8_t ns_v1[] = {0xa2, 0x00, 0x01, 0x0e, 0x81, 0xa2, 0x00, 0x02, 0x14, 0x01};
    assert_int_equal(et_snapshot_decode_cbor(ns_v1, sizeof ns_v1, b, err, sizeof err), ET_WIRE_ESCHEMA);
    /* {0: 1, 14: [{0: 0, 2: 512}]}: evidence bit 9 in a schema 1 document is a violation */
    static const uint8_t v1_bit9[] = {0xa2, 0x00, 0x01, 0x0e, 0x81, 0xa2, 0x00, 0x00, 0x02, 0x19, 0x02, 0x00};
    assert_int_equal(et_snapshot_decode_cbor(v1_bit9, sizeof v1_bit9, b, err, sizeof err), ET_WIRE_ESCHEMA);
    assert_non_null(strstr(err, "evidence"));
    /* the same through the envelope (raw CBOR, flags 0) */
    uint8_t env[4 + sizeof v99] = {ET_WIRE_MAGIC0, ET_WIRE_MAGIC1, ET_WIRE_VERSION, 0};
    memcpy(env + 4, v99, sizeof v99);
    et_wire_dec *dec = et_wire_dec_create(err, sizeof err);
    assert_int_equal(et_wire_decode(dec, env, sizeof env, b, err, sizeof err), ET_WIRE_EVERSION);
    et_wire_dec_free(dec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_field),
        cmocka_unit_test(test_empty_and_maximal),
        cmocka_unit_test(test_size_target),
        cmocka_unit_test(test_helpers),
#if HAVE_ZDICT
        cmocka_unit_test(test_dictionary),
#endif
        cmocka_unit_test(test_malformed_cbor),
        cmocka_unit_test(test_malformed_envelope),
        cmocka_unit_test(test_schema_version_is_not_a_violation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
