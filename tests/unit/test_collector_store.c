/* test_collector_store.c - the collector's SQLite store and the ingest validation step:
 * durable commit + reopen, dedup by snapshot id, one finding per (device, target,
 * fingerprint) across many (and out-of-order) snapshots, rollback, PSK lookup, and every
 * rejection code of ingest_payload on real wire envelopes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "decode.h"
#include "ingest.h"
#include "snapshot.h"
#include "store.h"

#define COLL_TESTDB_TAG "store-test"
#include "coll_testdb.h"

static int64_t q1(coll_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL), SQLITE_OK);
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void mksnap(coll_snap *s, const char *id, int64_t wall, uint32_t count, int with_finding)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->snapshot_id, sizeof(s->snapshot_id), "%s", id);
    snprintf(s->device_id, sizeof(s->device_id), "gw-1");
    et_snapshot *w = &s->w;
    w->schema = ET_SNAP_SCHEMA_VERSION;
    snprintf(w->device_id, sizeof(w->device_id), "gw-1");
    snprintf(w->service, sizeof(w->service), "billing");
    w->pid = 100;
    w->start_ticks = 5;
    w->wall_ms = wall;
    w->goroutines = count;
    if (with_finding) {
        w->nfindings = 1;
        et_finding *f = &w->findings[0];
        snprintf(f->fingerprint, sizeof(f->fingerprint), "00112233aabbccdd");
        f->kind = 0;       /* goroutine-leak */
        f->confidence = 1; /* likely */
        snprintf(f->site.func, sizeof(f->site.func), "main.worker");
        snprintf(f->site.file, sizeof(f->site.file), "main.go");
        f->site.line = 42;
        f->count = count;
    }
}

static void test_commit_reopen_and_dedup(void **state)
{
    (void)state;
    coll_store *s = open_db();
    const uint8_t psk[4] = {1, 2, 3, 4};
    assert_int_equal(store_device_add(s, "gw-1", psk, sizeof(psk), 0), 0);
    assert_int_equal(store_device_add(s, "gw-1", psk, sizeof(psk), 0), -1); /* no silent key change */
    static coll_snap snap;
    mksnap(&snap, "aa01", 1700000000000LL, 10, 0);
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1700000001000LL, (const uint8_t *)"x", 1), STORE_NEW);
    /* the same id again in the same transaction: already there */
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1700000001000LL, NULL, 1), STORE_DUPLICATE);
    assert_int_equal(store_commit(s), 0);
    store_close(s);

    s = open_db();
    assert_int_equal(store_count(s, "snapshots"), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode='wal'"), 1);
    assert_int_equal(q1(s, "PRAGMA synchronous"), 2); /* FULL */
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1700000002000LL, NULL, 1), STORE_DUPLICATE);
    assert_int_equal(store_commit(s), 0);
    assert_int_equal(store_count(s, "snapshots"), 1);
    assert_int_equal(q1(s, "SELECT snapshots FROM devices WHERE id='gw-1'"), 1);
    uint8_t got[64];
    size_t n = 0;
    assert_int_equal(store_device_psk(s, "gw-1", got, sizeof(got), &n), 1);
    assert_int_equal(n, 4);
    assert_memory_equal(got, psk, 4);
    assert_int_equal(store_device_psk(s, "gw-2", got, sizeof(got), &n), 0);
    store_close(s);
}

static void test_rollback_loses_only_uncommitted(void **state)
{
    (void)state;
    coll_store *s = open_db();
    static coll_snap snap;
    mksnap(&snap, "bb01", 1700000000000LL, 1, 0);
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1, NULL, 0), STORE_NEW);
    assert_int_equal(store_commit(s), 0);
    mksnap(&snap, "bb02", 1700000000000LL, 1, 0);
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1, NULL, 0), STORE_NEW);
    store_rollback(s);
    assert_int_equal(store_count(s, "snapshots"), 1);
    /* a target first seen in the rolled-back transaction is gone: the next put must not
     * reuse a cached id for it */
    mksnap(&snap, "bb03", 1700000000000LL, 1, 1);
    snprintf(snap.w.service, sizeof(snap.w.service), "fresh");
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1, NULL, 0), STORE_NEW);
    store_rollback(s);
    mksnap(&snap, "bb04", 1700000000000LL, 1, 1);
    snprintf(snap.w.service, sizeof(snap.w.service), "fresh");
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1, NULL, 0), STORE_NEW);
    assert_int_equal(store_commit(s), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM snapshots s JOIN targets t ON t.id=s.target WHERE t.service='fresh'"), 1);
    mksnap(&snap, "bb02", 1700000000000LL, 1, 0);
    /* put outside a transaction is refused, so nothing can be acked uncommitted */
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1, NULL, 0), -1);
    store_close(s);
    s = open_db();
    assert_int_equal(store_count(s, "snapshots"), 2);
    store_close(s);
}

static void test_finding_merge(void **state)
{
    (void)state;
    coll_store *s = open_db();
    static coll_snap snap;
    /* arrival order 2, 1, 3 (after an outage the spool drains findings out of time order) */
    const int64_t walls[3] = {1700000120000LL, 1700000060000LL, 1700000180000LL};
    const uint32_t counts[3] = {20, 10, 30};
    const char *ids[3] = {"cc02", "cc01", "cc03"};
    for (int i = 0; i < 3; i++) {
        mksnap(&snap, ids[i], walls[i], counts[i], 1);
        assert_int_equal(store_begin(s), 0);
        assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1700000200000LL, NULL, 0), STORE_NEW);
        assert_int_equal(store_commit(s), 0);
    }
    /* a retry of one of them does not count twice */
    mksnap(&snap, "cc01", walls[1], counts[1], 1);
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1700000300000LL, NULL, 0), STORE_DUPLICATE);
    assert_int_equal(store_commit(s), 0);

    assert_int_equal(store_count(s, "findings"), 1);
    assert_int_equal(q1(s, "SELECT snapshots FROM findings"), 3);
    assert_int_equal(q1(s, "SELECT first_seen FROM findings"), 1700000060000LL);
    assert_int_equal(q1(s, "SELECT last_seen FROM findings"), 1700000180000LL);
    assert_int_equal(q1(s, "SELECT count FROM findings"), 30);   /* newest snapshot's value */
    assert_int_equal(q1(s, "SELECT max_count FROM findings"), 30);
    assert_int_equal(store_count(s, "targets"), 1);

    /* the same fingerprint on another target is another finding */
    mksnap(&snap, "dd01", walls[0], 5, 1);
    snprintf(snap.w.service, sizeof(snap.w.service), "payments");
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1, NULL, 0), STORE_NEW);
    assert_int_equal(store_commit(s), 0);
    assert_int_equal(store_count(s, "findings"), 2);
    store_close(s);
}

/* ---- ingest_payload on real envelopes ---- */

static size_t encode(et_snapshot *sn, uint8_t *out, size_t cap, int raw)
{
    char err[160];
    et_wire_params wp = {.level = 3, .raw = raw};
    et_wire_enc *e = et_wire_enc_create(&wp, err, sizeof(err));
    assert_non_null(e);
    size_t n = 0;
    if (et_wire_encode(e, sn, out, cap, &n, err, sizeof(err)))
        fail_msg("encode: %s", err);
    et_wire_enc_free(e);
    return n;
}

static void test_ingest_codes(void **state)
{
    (void)state;
    coll_store *s = open_db();
    char err[160];
    coll_decoder *d = coll_decoder_create(err, sizeof(err));
    assert_non_null(d);
    static et_snapshot sn;
    et_snapshot_init(&sn);
    memset(sn.id, 0x42, sizeof(sn.id));
    snprintf(sn.device_id, sizeof(sn.device_id), "gw-7");
    snprintf(sn.service, sizeof(sn.service), "svc");
    sn.wall_ms = 1700000000000LL;
    static uint8_t buf[ET_WIRE_MAX];
    size_t n = encode(&sn, buf, sizeof(buf), 0);
    ingest_counters c;
    memset(&c, 0, sizeof(c));
    ingest_result r;

    ingest_payload(s, d, &c, "gw-7", buf, n, 0, 0, 1, 1, &r); /* text/plain */
    assert_int_equal(r.code, 415);
    ingest_payload(s, d, &c, "gw-7", buf, n, -1, 0, 1, 1, &r); /* missing */
    assert_int_equal(r.code, 415);
    assert_int_equal(c.bad_format, 2);
    ingest_payload(s, d, &c, "gw-7", buf, n, 42, 16, 1, 1, &r); /* over the cap */
    assert_int_equal(r.code, 413);
    /* another device id in the payload: stored under the session identity (below), counted */
    ingest_payload(s, d, &c, "gw-8", buf, n, 42, 0, 1, 1, &r);
    assert_int_equal(r.code, 201);
    assert_int_equal(c.identity_mismatch, 1);
    assert_int_equal(r.staged, 1);
    assert_int_equal(store_commit(s), 0);
    assert_int_equal(store_count(s, "snapshots"), 1);
    memset(sn.id, 0x43, sizeof(sn.id)); /* the rest of this test wants a fresh snapshot id */
    n = encode(&sn, buf, sizeof(buf), 0);

    uint8_t bad[64];
    const uint8_t hdr[4] = {ET_WIRE_MAGIC0, ET_WIRE_MAGIC1, ET_WIRE_VERSION, ET_WIRE_F_ZSTD};
    memcpy(bad, hdr, 4);
    memset(bad + 4, 0xff, 40); /* envelope ok, zstd garbage */
    ingest_payload(s, d, &c, "gw-7", bad, 44, 42, 0, 1, 1, &r);
    assert_int_equal(r.code, 400);
    if (c.bad_zstd != 1)
        fail_msg("expected a zstd rejection, got: %s", r.diag);
    memcpy(bad, "XX", 2); /* not an envelope: corrupt, permanent */
    ingest_payload(s, d, &c, "gw-7", bad, 44, 42, 0, 1, 1, &r);
    assert_int_equal(r.code, 400);
    /* raw-CBOR envelope with broken CBOR */
    size_t rn = encode(&sn, buf, sizeof(buf), 1);
    buf[rn / 2] ^= 0xff;
    buf[4] = 0xbf; /* indefinite map never closed */
    ingest_payload(s, d, &c, "gw-7", buf, rn - 1, 42, 0, 1, 1, &r);
    assert_int_equal(r.code, 400);
    /* a schema violation in the version it reads: 4.22, permanent */
    static const uint8_t v1_bad[] = {ET_WIRE_MAGIC0, ET_WIRE_MAGIC1, ET_WIRE_VERSION, 0, 0xa2, 0x00, 0x01, 0x18, 0x28, 0x01};
    ingest_payload(s, d, &c, "gw-7", v1_bad, sizeof v1_bad, 42, 0, 1, 1, &r);
    assert_int_equal(r.code, 422);
    /* a newer schema version, a newer envelope version: 5.01, retryable, counted apart */
    static const uint8_t v9[] = {ET_WIRE_MAGIC0, ET_WIRE_MAGIC1, ET_WIRE_VERSION, 0, 0xa2, 0x00, 0x09, 0x18, 0x28, 0x01};
    ingest_payload(s, d, &c, "gw-7", v9, sizeof v9, 42, 0, 1, 1, &r);
    assert_int_equal(r.code, 501);
    uint8_t env2[sizeof v9];
    memcpy(env2, v9, sizeof v9);
    env2[2] = ET_WIRE_VERSION + 1;
    ingest_payload(s, d, &c, "gw-7", env2, sizeof env2, 42, 0, 1, 1, &r);
    assert_int_equal(r.code, 501);
    assert_int_equal(c.unreadable, 2);
    assert_int_equal(store_count(s, "snapshots"), 1);

    n = encode(&sn, buf, sizeof(buf), 0);
    ingest_payload(s, d, &c, "gw-7", buf, n, 42, 0, 1, 1, &r);
    assert_int_equal(r.code, 201);
    assert_int_equal(r.staged, 1);
    assert_int_equal(store_commit(s), 0);
    ingest_payload(s, d, &c, "gw-7", buf, n, 42, 0, 2, 1, &r);
    assert_int_equal(r.code, 204);
    assert_int_equal(store_commit(s), 0);
    assert_int_equal(store_count(s, "snapshots"), 2);
    assert_int_equal(c.snapshots_new, 2);
    assert_int_equal(c.snapshots_dup, 1);
    coll_decoder_free(d);
    store_close(s);
}

/* The downlink queue: a device only ever gets its own commands, an expired one never, a
 * handed-out one again only after redeliver_ms; invalid commands are refused when queued. */
static void test_command_queue(void **state)
{
    (void)state;
    coll_store *s = open_db();
    int64_t now = 1790000000000LL, id1, id2, id3;
    char err[128];
    et_cmd c = {.kind = ET_CMD_TRACE, .seconds = 3, .expiry_ms = (uint64_t)now + 60000};
    strcpy(c.target, "svc");
    assert_int_equal(store_cmd_add(s, "gw-1", &c, now, &id1, err, sizeof err), 0);
    et_cmd r = {.kind = ET_CMD_REDISCOVER, .expiry_ms = (uint64_t)now + 1000};
    assert_int_equal(store_cmd_add(s, "gw-1", &r, now, &id2, err, sizeof err), 0);
    assert_int_equal(store_cmd_add(s, "gw-2", &r, now, &id3, err, sizeof err), 0);
    et_cmd bad = {.kind = ET_CMD_HEAP, .expiry_ms = (uint64_t)now + 1000}; /* no target */
    int64_t idb;
    assert_int_equal(store_cmd_add(s, "gw-1", &bad, now, &idb, err, sizeof err), -1);
    assert_non_null(strstr(err, "needs a target"));

    et_cmd_list l;
    assert_int_equal(store_cmd_due(s, "gw-1", now + 10, 30000, &l), 2);
    assert_int_equal(l.c[0].id, (uint64_t)id1);
    assert_int_equal(l.c[0].kind, ET_CMD_TRACE);
    assert_int_equal(l.c[0].seconds, 3);
    assert_string_equal(l.c[0].target, "svc");
    assert_int_equal(l.c[1].id, (uint64_t)id2);
    /* handed out just now: not again before redeliver_ms */
    assert_int_equal(store_cmd_due(s, "gw-1", now + 20, 30000, &l), 0);
    /* later: the rediscover has expired, the trace comes again */
    assert_int_equal(store_cmd_due(s, "gw-1", now + 30010, 30000, &l), 1);
    assert_int_equal(l.c[0].id, (uint64_t)id1);
    /* gw-2 sees only its own */
    assert_int_equal(store_cmd_due(s, "gw-2", now + 10, 30000, &l), 1);
    assert_int_equal(l.c[0].id, (uint64_t)id3);
    assert_int_equal(store_cmd_due(s, "gw-3", now + 10, 30000, &l), 0);
    store_close(s);
}

/* Captures from the HTTP API: linked to the target's device and service (and to a finding of
 * that target), one in flight per target, at most per_hour per device, and their state as the
 * API shows it: queued, delivered, running (the device's started report), uploaded / failed /
 * expired, each with its time; a finding lists its captures. */
static void test_capture_limits(void **state)
{
    (void)state;
    coll_store *s = open_db();
    assert_int_equal(sqlite3_exec(store_db(s),
                                  "INSERT INTO targets(id, device, service, ident) VALUES(1,'gw-1','svc-a','a'),"
                                  "(2,'gw-1','svc-b','b'),(3,'gw-1','svc-c','c');"
                                  "INSERT INTO findings(id, device, target, fingerprint, first_seen, last_seen, snapshots)"
                                  " VALUES(17,'gw-1',1,'f17',1,1,1),(18,'gw-1',2,'f18',1,1,1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    int64_t now = 1790000000000LL, id, id2;
    char err[160];
    assert_int_equal(store_capture_add(s, 9, ET_CMD_HEAP, 0, 0, now, 60000, 2, &id, err, sizeof err),
                     STORE_Q_NOTFOUND);
    assert_int_equal(store_capture_add(s, 1, ET_CMD_REDISCOVER, 0, 0, now, 60000, 2, &id, err, sizeof err),
                     STORE_Q_BADARG);
    /* finding 18 is of target 2, not 1; 99 does not exist */
    assert_int_equal(store_capture_add(s, 1, ET_CMD_TRACE, 4, 18, now, 60000, 2, &id, err, sizeof err),
                     STORE_Q_BADARG);
    assert_non_null(strstr(err, "not a finding of target 1"));
    assert_int_equal(store_capture_add(s, 1, ET_CMD_TRACE, 4, 99, now, 60000, 2, &id, err, sizeof err),
                     STORE_Q_BADARG);
    assert_int_equal(store_capture_add(s, 1, ET_CMD_TRACE, 4, 17, now, 60000, 2, &id, err, sizeof err), STORE_Q_OK);
    assert_int_equal(store_capture_add(s, 1, ET_CMD_HEAP, 0, 0, now + 1, 60000, 2, &id2, err, sizeof err),
                     STORE_Q_LIMIT);
    assert_non_null(strstr(err, "in flight"));
    assert_int_equal(store_capture_add(s, 2, ET_CMD_HEAP, 0, 0, now + 2, 60000, 2, &id2, err, sizeof err), STORE_Q_OK);
    assert_int_equal(store_capture_add(s, 3, ET_CMD_HEAP, 0, 0, now + 3, 60000, 2, &id2, err, sizeof err),
                     STORE_Q_LIMIT);
    assert_non_null(strstr(err, "last hour"));
    json_t *doc;
    assert_int_equal(store_q_capture(s, id, now + 5, &doc), STORE_Q_OK);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "queued");
    assert_string_equal(json_string_value(json_object_get(doc, "kind")), "trace");
    assert_int_equal(json_integer_value(json_object_get(doc, "finding")), 17);
    assert_int_equal(json_integer_value(json_object_get(doc, "target")), 1);
    json_decref(doc);
    et_cmd_list l;
    assert_int_equal(store_cmd_due(s, "gw-1", now + 10, 30000, &l), 2);
    assert_string_equal(l.c[0].target, "svc-a");
    assert_int_equal(store_q_capture(s, id, now + 11, &doc), STORE_Q_OK);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "delivered");
    assert_true(json_is_null(json_object_get(doc, "started_ms")));
    json_decref(doc);
    /* started: only the device's own report counts, and only the first */
    assert_int_equal(store_cmd_started(s, "gw-2", (uint64_t)id, now + 12), 0);
    assert_int_equal(store_q_capture(s, id, now + 12, &doc), STORE_Q_OK);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "delivered");
    json_decref(doc);
    assert_int_equal(store_cmd_started(s, "gw-1", (uint64_t)id, now + 13), 1);
    assert_int_equal(store_cmd_started(s, "gw-1", (uint64_t)id, now + 14), 0);
    assert_int_equal(store_q_capture(s, id, now + 15, &doc), STORE_Q_OK);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "running");
    assert_int_equal(json_integer_value(json_object_get(doc, "started_ms")), now + 13);
    json_decref(doc);
    /* the result: uploaded, listed under its finding */
    et_capture cap = {.cmd_id = (uint64_t)id, .kind = ET_CMD_TRACE, .data = (const uint8_t *)"go 1.23 trace", .len = 13};
    assert_int_equal(store_capture_put(s, "gw-1", &cap, now + 4020), STORE_NEW);
    assert_int_equal(store_q_capture(s, id, now + 4021, &doc), STORE_Q_OK);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "uploaded");
    assert_int_equal(json_integer_value(json_object_get(doc, "uploaded_ms")), now + 4020);
    assert_int_equal(json_integer_value(json_object_get(doc, "bytes")), 13);
    json_decref(doc);
    assert_int_equal(store_q_finding_captures(s, 17, now + 4021, &doc), 0);
    assert_int_equal(json_array_size(doc), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(doc, 0), "id")), id);
    json_decref(doc);
    assert_int_equal(store_q_finding_captures(s, 18, now + 4021, &doc), 0);
    assert_int_equal(json_array_size(doc), 0);
    json_decref(doc);
    /* failed: the agent's reason; expired: no result by the expiry, even once delivered */
    et_capture bad = {.cmd_id = (uint64_t)id2};
    strcpy(bad.error, "no such target on this gateway");
    assert_int_equal(store_q_capture(s, id2, now + 60003, &doc), STORE_Q_OK);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "expired");
    json_decref(doc);
    assert_int_equal(store_capture_put(s, "gw-1", &bad, now + 20), STORE_NEW);
    assert_int_equal(store_q_capture(s, id2, now + 60003, &doc), STORE_Q_OK);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(doc, "error")), "no such target on this gateway");
    json_decref(doc);
    assert_int_equal(store_q_capture(s, 4242, now, &doc), STORE_Q_NOTFOUND);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_reopen_and_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_loses_only_uncommitted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finding_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ingest_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capture_limits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
