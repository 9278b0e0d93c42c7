/* test_collector_store_fleet.c - schema v2 of the collector's store: every wire field kept,
 * target identity (uncut pod names, the port), the savepoint per snapshot in a group commit,
 * dedup per device, finding state and history, the in-place upgrade of a v1 database, and
 * the read side the HTTP API serves. Real SQLite files, real jansson values; with ET_TEST_PG_URL
 * set (test_collector_pg.py), the tests that are not about SQLite itself run on PostgreSQL. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "decode.h"
#include "ingest.h"
#include "store.h"
#include "store_keys.h"
#include "store_sq.h"

#define COLL_TESTDB_TAG "store-fleet"
#include "coll_testdb.h"

/* the first column of the first row (-1: no row), on either backend */
static int64_t q1(coll_store *s, const char *sql)
{
    sq *st = sq_prep(s, sql);
    if (!st)
        fail_msg("%s: %s", sql, store_errmsg(s));
    int rc = sq_step(st);
    if (rc < 0)
        fail_msg("%s: %s", sql, store_errmsg(s));
    int64_t v = rc == 1 ? sq_int(st, 0) : -1;
    sq_done(st);
    return v;
}

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

static coll_snap snap;

/* A full snapshot of DEVICE's target SERVICE at wall ms: sites (one full, one reference),
 * memstats, /proc, optionally one goroutine-leak finding with a stack. */
static void mk(const char *id, const char *device, const char *service, int64_t wall, uint32_t count, int finding,
               unsigned conf)
{
    memset(&snap, 0, sizeof(snap));
    snprintf(snap.snapshot_id, sizeof(snap.snapshot_id), "%s", id);
    snprintf(snap.device_id, sizeof(snap.device_id), "%s", device);
    et_snapshot *w = &snap.w;
    w->schema = ET_SNAP_SCHEMA_VERSION;
    snprintf(w->device_id, sizeof(w->device_id), "%s", device);
    snprintf(w->board, sizeof(w->board), "rpi4");
    snprintf(w->agent_version, sizeof(w->agent_version), "0.3.0");
    snprintf(w->service, sizeof(w->service), "%s", service);
    snprintf(w->go_version, sizeof(w->go_version), "go1.23.4");
    snprintf(w->url, sizeof(w->url), "http://127.0.0.1:6060/debug/pprof");
    w->pid = 77;
    w->start_ticks = 9;
    w->wall_ms = wall;
    w->goroutines = count + 5;
    w->by_state[6] = count; /* chan receive */
    w->by_state[9] = 5;     /* select */
    w->nsites = 2;
    et_snap_site *st = &w->sites[0];
    st->state = 6;
    st->count = count;
    snprintf(st->func, sizeof(st->func), "main.(*P).agg");
    snprintf(st->file, sizeof(st->file), "p/pipeline.go");
    st->line = 33;
    snprintf(st->created_by, sizeof(st->created_by), "main.start");
    st->key = et_snap_site_key(st);
    w->sites[1].ref = 1;
    w->sites[1].key = 0xabcdef;
    w->sites[1].count = 5;
    w->mem.present = 1;
    w->mem.heap_inuse = 1 << 20;
    w->mem.heap_alloc = 900000;
    w->mem.num_gc = 12;
    w->proc.present = 1;
    w->proc.rss_kb = 2048;
    w->proc.threads = 9;
    w->proc.fds = 14;
    w->spool_routine_dropped = 3;
    w->cost_ms = 12;
    w->cost_bytes = 3456;
    if (finding) {
        w->nfindings = 1;
        et_finding *f = &w->findings[0];
        snprintf(f->fingerprint, sizeof(f->fingerprint), "00112233aabbccdd");
        f->kind = 0;
        f->confidence = (uint8_t)conf;
        f->state = 6;
        f->evidence = 3; /* trend, cluster */
        snprintf(f->site.func, sizeof(f->site.func), "main.(*P).agg");
        snprintf(f->site.file, sizeof(f->site.file), "p/pipeline.go");
        f->site.line = 33;
        snprintf(f->created_by, sizeof(f->created_by), "main.start");
        snprintf(f->stack[0], sizeof(f->stack[0]), "main.(*P).agg");
        snprintf(f->stack[1], sizeof(f->stack[1]), "main.run \"quoted\"");
        f->nstack = 2;
        f->count = count;
        f->growth_per_min = 1.5;
        f->oldest_wait_s = 600;
        w->nattach = 1;
        w->attach[0].kind = 0;
        w->attach[0].finding = 0;
        w->attach[0].len = 5;
        memcpy(w->attach[0].data, "g 1 @", 5);
    }
}

static int put1(coll_store *s, const char *device)
{
    assert_int_equal(store_begin(s), 0);
    int rc = store_put_snapshot(s, device, &snap, snap.w.wall_ms + 500, NULL, 0);
    assert_int_equal(store_commit(s), 0);
    return rc;
}

/* Item 6 of issue 8: a failure storing one snapshot of a batch undoes that snapshot only;
 * the retry is stored as new (on the old code its row committed with the batch and the retry
 * was a "duplicate" whose findings were never merged). */
static void test_savepoint_per_snapshot(void **state)
{
    (void)state;
    coll_store *s = open_db();
    /* injected failure: findings of a marked fingerprint cannot be written */
    exec(store_db(s), "CREATE TEMP TRIGGER boom BEFORE INSERT ON findings WHEN NEW.fingerprint='00112233aabbccdd'"
                      " BEGIN SELECT RAISE(ABORT, 'injected'); END;");
    assert_int_equal(store_begin(s), 0);
    mk("a1", "gw-1", "billing", 1700000000000LL, 10, 0, 1);
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1, NULL, 0), STORE_NEW);
    mk("a2", "gw-1", "billing", 1700000030000LL, 11, 1, 1); /* carries the finding: fails */
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1, NULL, 0), -1);
    mk("a3", "gw-1", "other", 1700000030000LL, 12, 0, 1); /* a new target after the failure */
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, 1, NULL, 0), STORE_NEW);
    assert_int_equal(store_commit(s), 0);
    assert_int_equal(store_count(s, "snapshots"), 2);
    assert_int_equal(q1(s, "SELECT count(*) FROM snapshots WHERE snapshot_id='a2'"), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM series WHERE goroutines=16"), 0);
    assert_int_equal(q1(s, "SELECT snapshots FROM devices WHERE id='gw-1'"), -1); /* not provisioned here */
    exec(store_db(s), "DROP TRIGGER boom");
    mk("a2", "gw-1", "billing", 1700000030000LL, 11, 1, 1);
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    assert_int_equal(q1(s, "SELECT snapshots FROM findings"), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM targets"), 2);
    /* the summary of the target touched by the failed snapshot follows the stored ones only */
    assert_int_equal(q1(s, "SELECT last_goroutines FROM targets WHERE service='billing'"), 16);
    store_close(s);
}

/* Dedup is per device: another device may use the same id; the same device may not. */
static void test_dedup_per_device(void **state)
{
    (void)state;
    coll_store *s = open_db();
    mk("same", "gw-1", "billing", 1700000000000LL, 1, 0, 0);
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    assert_int_equal(put1(s, "gw-1"), STORE_DUPLICATE);
    mk("same", "gw-2", "billing", 1700000000000LL, 1, 0, 0);
    assert_int_equal(put1(s, "gw-2"), STORE_NEW);
    assert_int_equal(store_count(s, "snapshots"), 2);
    assert_int_equal(store_count(s, "series"), 2);
    store_close(s);
}

/* Replicas of one Deployment (pod names equal in their first 20 characters) and two
 * instances of one binary (same service, other port) are distinct targets. */
static void test_target_identity(void **state)
{
    (void)state;
    coll_store *s = open_db();
    const char *pods[2] = {"billing-7d9f8c6b5-abcde", "billing-7d9f8c6b5-fghij"};
    for (int i = 0; i < 2; i++) {
        mk(i ? "p1" : "p0", "gw-1", "billing", 1700000000000LL, 1, 0, 0);
        snprintf(snap.w.pod_namespace, sizeof(snap.w.pod_namespace), "production-namespace-long");
        snprintf(snap.w.pod_name, sizeof(snap.w.pod_name), "%s", pods[i]);
        snprintf(snap.w.container, sizeof(snap.w.container), "app");
        assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    }
    assert_int_equal(store_count(s, "targets"), 2);
    mk("q1", "gw-1", "worker", 1700000000000LL, 1, 0, 0);
    snprintf(snap.w.url, sizeof(snap.w.url), "http://127.0.0.1:6060/debug/pprof");
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    mk("q2", "gw-1", "worker", 1700000000000LL, 1, 0, 0);
    snprintf(snap.w.url, sizeof(snap.w.url), "http://127.0.0.1:6061/debug/pprof");
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    mk("q3", "gw-1", "worker", 1700000030000LL, 1, 0, 0);
    snprintf(snap.w.url, sizeof(snap.w.url), "http://[::1]:6061/debug/pprof");
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    assert_int_equal(q1(s, "SELECT count(*) FROM targets WHERE service='worker'"), 2);
    assert_int_equal(q1(s, "SELECT count(*) FROM targets WHERE service='worker' AND port=6061"), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM targets WHERE pod='billing-7d9f8c6b5-fghij'"), 1);
    store_close(s);
}

/* The same through the real path (wire envelope -> decode.c -> store): the collector used to
 * cut each pod name part at 20 characters while decoding and left the port out, so these four
 * agents' snapshots landed on two targets. */
static void test_identity_through_ingest(void **state)
{
    (void)state;
    coll_store *s = open_db();
    char err[160];
    coll_decoder *d = coll_decoder_create(err, sizeof(err));
    assert_non_null(d);
    et_wire_params wp = {.level = 3};
    et_wire_enc *e = et_wire_enc_create(&wp, err, sizeof(err));
    assert_non_null(e);
    static et_snapshot w;
    static uint8_t buf[ET_WIRE_MAX];
    ingest_counters c;
    memset(&c, 0, sizeof(c));
    const char *pods[4] = {"checkout-5f7d8c9b6d-a1b2c", "checkout-5f7d8c9b6d-d3e4f", "", ""};
    const char *urls[4] = {"http://10.0.0.5:6060", "http://10.0.0.6:6060", "http://127.0.0.1:6060",
                           "http://127.0.0.1:6061"};
    for (int i = 0; i < 4; i++) {
        et_snapshot_init(&w);
        memset(w.id, 0x10 + i, sizeof(w.id));
        snprintf(w.device_id, sizeof(w.device_id), "gw-7");
        snprintf(w.service, sizeof(w.service), "checkout");
        snprintf(w.pod_namespace, sizeof(w.pod_namespace), "%s", pods[i][0] ? "shop-production" : "");
        snprintf(w.pod_name, sizeof(w.pod_name), "%s", pods[i]);
        snprintf(w.url, sizeof(w.url), "%s", urls[i]);
        w.wall_ms = 1700000000000LL;
        size_t n = 0;
        assert_int_equal(et_wire_encode(e, &w, buf, sizeof(buf), &n, err, sizeof(err)), 0);
        ingest_result r;
        assert_int_equal(store_begin(s), 0);
        ingest_payload(s, d, &c, "gw-7", buf, n, 42, 0, 1, 0, &r);
        assert_int_equal(r.code, 201);
        assert_int_equal(store_commit(s), 0);
    }
    assert_int_equal(store_count(s, "targets"), 4);
    json_t *o = NULL;
    assert_int_equal(store_q_targets(s, "gw-7", &o), STORE_Q_NOTFOUND); /* not provisioned: no device row */
    assert_int_equal(q1(s, "SELECT count(DISTINCT pod) FROM targets WHERE pod LIKE 'checkout-5f7d8c9b6d-%'"), 2);
    et_wire_enc_free(e);
    coll_decoder_free(d);
    store_close(s);
}

/* Every field of the wire snapshot lands in a queryable column; reference sites get their
 * names when a full entry arrives. */
static void test_every_field(void **state)
{
    (void)state;
    coll_store *s = open_db();
    mk("f1", "gw-1", "billing", 1700000000000LL, 40, 1, 1);
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    assert_int_equal(q1(s, "SELECT heap_inuse FROM series"), 1 << 20);
    assert_int_equal(q1(s, "SELECT heap_alloc FROM series"), 900000);
    assert_int_equal(q1(s, "SELECT num_gc FROM series"), 12);
    assert_int_equal(q1(s, "SELECT fds FROM series"), 14);
    assert_int_equal(q1(s, "SELECT cost_ms FROM series"), 12);
    assert_int_equal(q1(s, "SELECT cost_bytes FROM series"), 3456);
    assert_int_equal(q1(s, "SELECT spool_routine_dropped FROM series"), 3);
    assert_int_equal(q1(s, test_pg_url() ? "SELECT CAST(CAST(by_state AS json)->>'chan receive' AS BIGINT) FROM series"
                                          : "SELECT json_extract(by_state,'$.\"chan receive\"') FROM series"),
                     40);
    assert_int_equal(q1(s, "SELECT count(*) FROM sites"), 2);
    assert_int_equal(q1(s, "SELECT count(*) FROM sites WHERE function IS NULL"), 1);
    assert_int_equal(q1(s, "SELECT count FROM site_counts WHERE key=11259375"), 5);
    assert_int_equal(q1(s, "SELECT count(*) FROM attachments WHERE finding='00112233aabbccdd' AND length(data)=5"),
                     1);
#define FINDING_Q(stack) "SELECT count(*) FROM findings WHERE go_version='go1.23.4' AND created_by='main.start'" \
                         " AND json_array_length(" stack ")=2 AND oldest_wait_s=600"
    assert_int_equal(q1(s, test_pg_url() ? FINDING_Q("CAST(stack AS json)") : FINDING_Q("stack")), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM targets WHERE go_version='go1.23.4' AND port=6060 AND pid=77"), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM devices"), 0);
    /* the reference site's full entry arrives later: the names are joined */
    mk("f2", "gw-1", "billing", 1700000030000LL, 41, 1, 1);
    et_snap_site *st = &snap.w.sites[1];
    st->ref = 0;
    st->state = 9;
    snprintf(st->func, sizeof(st->func), "net/http.(*conn).serve");
    snprintf(st->file, sizeof(st->file), "http/server.go");
    st->line = 2000;
    st->key = et_snap_site_key(st);
    uint32_t named_key = st->key;
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    mk("f3", "gw-1", "billing", 1700000060000LL, 42, 1, 1);
    snap.w.sites[1].key = named_key; /* a reference to it again */
    for (unsigned k = 0; k < ET_G_STATE_COUNT; k++) /* every state at its widest: nothing cut */
        snap.w.by_state[k] = UINT32_MAX;
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM site_counts c JOIN sites s USING(target,key) WHERE key=%u"
             " AND s.function='net/http.(*conn).serve'", named_key);
    assert_int_equal(q1(s, sql), 2);
    assert_int_equal(q1(s, test_pg_url() ? "SELECT (SELECT count(*) FROM json_each(CAST(by_state AS json))) FROM series"
                                          " ORDER BY t DESC LIMIT 1"
                                        : "SELECT (SELECT count(*) FROM json_each(by_state)) FROM series"
                                          " WHERE json_valid(by_state) ORDER BY t DESC LIMIT 1"),
                     ET_G_STATE_COUNT);
    /* survivor evidence (wire schema 2): stored, and shown in the finding's detail */
    mk("f4", "gw-1", "billing", 1700000090000LL, 43, 1, 1);
    et_finding *sf = &snap.w.findings[0];
    sf->evidence |= ET_E_SURVIVORS;
    sf->survivors = sf->survivors_of = 5;
    sf->oldest_id = 4242;
    sf->wait_hist[1] = 5;
    sf->wait_hist[2] = 1;
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    json_t *fj = NULL;
    assert_int_equal(store_q_finding(s, q1(s, "SELECT id FROM findings"), &fj), 0);
    assert_int_equal(json_integer_value(json_object_get(fj, "survivors")), 5);
    assert_int_equal(json_integer_value(json_object_get(fj, "survivors_of")), 5);
    assert_int_equal(json_integer_value(json_object_get(fj, "oldest_id")), 4242);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(fj, "wait_hist"), 1)), 5);
    int has_surv = 0;
    json_t *ev;
    size_t ei;
    json_array_foreach(json_object_get(fj, "evidence"), ei, ev)
        has_surv |= !strcmp(json_string_value(ev), "survivors");
    assert_true(has_surv);
    json_decref(fj);
    store_close(s);
}

/* opened -> confidence -> cleared (a newer snapshot without it) -> reopened; an older
 * snapshot arriving late does not clear or reopen. */
static void test_finding_history(void **state)
{
    (void)state;
    coll_store *s = open_db();
    mk("h1", "gw-1", "billing", 1700000000000LL, 10, 1, 0);
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    mk("h2", "gw-1", "billing", 1700000060000LL, 20, 1, 1);
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    mk("h3", "gw-1", "billing", 1700000120000LL, 0, 0, 0);
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    assert_int_equal(q1(s, "SELECT count(*) FROM findings WHERE status='cleared' AND cleared_at=1700000120000"), 1);
    mk("h0", "gw-1", "billing", 1700000030000LL, 15, 1, 0); /* late, older */
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    assert_int_equal(q1(s, "SELECT count(*) FROM findings WHERE status='cleared'"), 1);
    mk("h4", "gw-1", "billing", 1700000180000LL, 30, 1, 2);
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    assert_int_equal(q1(s, "SELECT count(*) FROM findings WHERE status='open' AND confidence='confirmed'"), 1);

    json_t *f = NULL;
    assert_int_equal(store_q_finding(s, q1(s, "SELECT id FROM findings"), &f), 0);
    json_t *h = json_object_get(f, "history");
    assert_int_equal(json_array_size(h), 4);
    const char *want[4] = {"opened", "confidence", "cleared", "reopened"};
    for (int i = 0; i < 4; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(h, (size_t)i), "event")), want[i]);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(h, 2), "t")), 1700000120000LL);
    json_t *cs = json_object_get(json_object_get(f, "series"), "count");
    assert_int_equal(json_array_size(cs), 4); /* h0, h1, h2, h4 */
    assert_int_equal(json_integer_value(json_array_get(cs, 3)), 30);
    assert_string_equal(json_string_value(json_array_get(json_object_get(f, "stack"), 1)), "main.run \"quoted\"");
    assert_string_equal(json_string_value(json_array_get(json_object_get(f, "evidence"), 1)), "cluster");
    assert_string_equal(json_string_value(json_object_get(f, "state")), "open");
    json_decref(f);
    store_close(s);
}

/* A database written by release 1 (its DDL and rows, as that code wrote them) opens in this
 * one, is upgraded in place and loses nothing. */
static void test_migrate_v1(void **state)
{
    (void)state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    exec(db,
         "PRAGMA journal_mode=WAL;"
         "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
         "INSERT INTO meta VALUES('schema_version','1');"
         "CREATE TABLE devices(id TEXT PRIMARY KEY, psk BLOB NOT NULL, created INTEGER NOT NULL,"
         "  last_seen INTEGER, snapshots INTEGER NOT NULL DEFAULT 0);"
         "CREATE TABLE targets(id INTEGER PRIMARY KEY, device TEXT NOT NULL, service TEXT NOT NULL, pod TEXT NOT NULL,"
         "  incarnation TEXT, first_seen INTEGER, last_seen INTEGER, UNIQUE(device, service, pod));"
         "CREATE TABLE snapshots(id INTEGER PRIMARY KEY, snapshot_id TEXT NOT NULL UNIQUE, device TEXT NOT NULL,"
         "  target INTEGER REFERENCES targets(id), received INTEGER NOT NULL,"
         "  wall_ms INTEGER, wall_trusted INTEGER, mono_ms INTEGER, boot_id TEXT, seq INTEGER,"
         "  board TEXT, agent_version TEXT, incarnation TEXT,"
         "  goroutines INTEGER, heap_inuse INTEGER, rss_kb INTEGER, threads INTEGER,"
         "  spool_dropped INTEGER, nfindings INTEGER, size INTEGER, payload BLOB);"
         "CREATE INDEX snapshots_device ON snapshots(device, received);"
         "CREATE TABLE findings(id INTEGER PRIMARY KEY, device TEXT NOT NULL,"
         "  target INTEGER NOT NULL REFERENCES targets(id), fingerprint TEXT NOT NULL, kind TEXT, confidence TEXT,"
         "  state TEXT, evidence INTEGER, function TEXT, file TEXT, line INTEGER, created_by TEXT,"
         "  count INTEGER, max_count INTEGER, growth_per_min REAL, oldest_wait_s REAL, value INTEGER,"
         "  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, snapshots INTEGER NOT NULL,"
         "  last_snapshot TEXT, UNIQUE(device, target, fingerprint));"
         "INSERT INTO devices VALUES('gw-1', x'01020304', 1600000000000, 1700000060000, 2);"
         "INSERT INTO targets VALUES(1,'gw-1','billing','prod/billing-7d9f8c6b5-abcd/app','77:9',"
         "  1700000000000,1700000060000);"
         "INSERT INTO snapshots VALUES(1,'aa','gw-1',1,1700000000500,1700000000000,1,5,'b',1,'rpi4','0.1.0','77:9',"
         "  10,1000,2048,9,0,1,100,x'4554');"
         "INSERT INTO snapshots VALUES(2,'bb','gw-1',1,1700000060500,1700000060000,1,6,'b',2,'rpi4','0.1.0','77:9',"
         "  20,2000,4096,9,0,0,100,NULL);"
         "INSERT INTO findings VALUES(1,'gw-1',1,'00112233aabbccdd','goroutine-leak','likely','chan receive',3,"
         "  'main.(*P).agg','p/pipeline.go',33,'main.start',10,10,1.5,600,0,1700000000000,1700000000000,1,'aa');");
    sqlite3_close(db);

    coll_store *s = open_db();
    assert_int_equal(store_db_schema_version(s), store_schema_version()); /* v1 -> ... -> current in place */
    assert_int_equal(store_count(s, "snapshots"), 2);
    assert_int_equal(store_count(s, "series"), 2);
    assert_int_equal(q1(s, "SELECT goroutines FROM series WHERE snap=2"), 20);
    assert_int_equal(q1(s, "SELECT rss_kb FROM series WHERE snap=1"), 2048);
    assert_int_equal(q1(s, "SELECT length(payload) FROM snapshots WHERE snapshot_id='aa'"), 2);
    assert_int_equal(q1(s, "SELECT last_goroutines FROM targets"), 20);
    uint8_t psk[16];
    size_t n = 0;
    assert_int_equal(store_device_psk(s, "gw-1", psk, sizeof(psk), &n), 1);
    assert_int_equal(n, 4);
    /* the finding was not in the newest snapshot: cleared, with its history */
    assert_int_equal(q1(s, "SELECT count(*) FROM findings WHERE status='cleared' AND function='main.(*P).agg'"), 1);
    assert_int_equal(q1(s, "SELECT count(*) FROM finding_events"), 2);
    /* the old snapshot ids still deduplicate, and new snapshots go on */
    mk("aa", "gw-1", "billing", 1700000000000LL, 10, 0, 0);
    assert_int_equal(put1(s, "gw-1"), STORE_DUPLICATE);
    mk("cc", "gw-1", "billing", 1700000090000LL, 30, 1, 1);
    assert_int_equal(put1(s, "gw-1"), STORE_NEW);
    assert_int_equal(q1(s, "SELECT snapshots FROM devices"), 3);
    store_close(s);
    /* the read-only handle (the HTTP thread's) opens the upgraded file */
    char err[200];
    s = store_open_readonly(dbpath, err, sizeof(err));
    assert_non_null(s);
    json_t *o = NULL;
    assert_int_equal(store_q_devices(s, 1700000100000LL, &o), 0);
    assert_int_equal(json_array_size(json_object_get(o, "devices")), 1);
    json_decref(o);
    assert_int_equal(store_begin(s), -1); /* read-only */
    store_close(s);
}

static int count_site(const store_site *site, void *arg)
{
    int *n = arg;
    if (!strcmp(site->frames[0].function, "main.(*P).agg"))
        assert_int_equal(site->count, 10 + 2999 / 100);
    (*n)++;
    return 0;
}

static int check_stack(const store_site *site, void *arg)
{
    (void)arg;
    assert_int_equal(site->nframes, 2);
    assert_string_equal(site->frames[0].function, "main.(*P).agg");
    assert_string_equal(site->frames[0].file, "p/pipeline.go");
    assert_int_equal(site->frames[0].line, 33);
    assert_string_equal(site->frames[1].function, "main.run \"quoted\"");
    return 0;
}

/* The read side, as the HTTP API serves it. */
static void test_queries(void **state)
{
    (void)state;
    coll_store *s = open_db();
    const uint8_t psk[4] = {1, 2, 3, 4};
    assert_int_equal(store_device_add(s, "gw-1", psk, 4, 0), 0);
    assert_int_equal(store_device_add(s, "gw-2", psk, 4, 0), 0);
    int64_t t0 = 1700000000000LL;
    char id[16];
    for (int i = 0; i < 3000; i++) { /* 25 hours of 30 s snapshots */
        snprintf(id, sizeof(id), "s%d", i);
        mk(id, "gw-1", "billing", t0 + i * 30000LL, 10 + (uint32_t)i / 100, i >= 2000, i >= 2500 ? 2 : 1);
        assert_int_equal(store_begin(s), 0);
        assert_int_equal(store_put_snapshot(s, "gw-1", &snap, snap.w.wall_ms + 100, NULL, 0), STORE_NEW);
        assert_int_equal(store_commit(s), 0);
    }
    mk("x", "gw-2", "healthy", t0, 3, 0, 0);
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_put_snapshot(s, "gw-2", &snap, t0, NULL, 0), STORE_NEW);
    assert_int_equal(store_commit(s), 0);
    int64_t now = t0 + 3000 * 30000LL;
    char err[200];
    coll_store *r = store_open_readonly(dbpath, err, sizeof(err));
    assert_non_null(r);

    json_t *o = NULL;
    assert_int_equal(store_q_devices(r, now, &o), 0);
    json_t *d = json_array_get(json_object_get(o, "devices"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "id")), "gw-1");
    assert_string_equal(json_string_value(json_object_get(d, "status")), "online");
    assert_int_equal(json_integer_value(json_object_get(d, "interval_s")), 30);
    assert_string_equal(json_string_value(json_object_get(d, "worst")), "confirmed");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "open_findings"), "confirmed")), 1);
    assert_string_equal(json_string_value(json_object_get(d, "board")), "rpi4");
    /* its services, for the overview's grid: billing with its worst open finding */
    json_t *svc = json_array_get(json_object_get(d, "services"), 0);
    assert_string_equal(json_string_value(json_object_get(svc, "service")), "billing");
    assert_string_equal(json_string_value(json_object_get(svc, "worst")), "confirmed");
    d = json_array_get(json_object_get(o, "devices"), 1);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "silent");
    assert_true(json_is_null(json_object_get(d, "worst")));
    /* a healthy service still has its cell (worst null) */
    svc = json_array_get(json_object_get(d, "services"), 0);
    assert_string_equal(json_string_value(json_object_get(svc, "service")), "healthy");
    assert_true(json_is_null(json_object_get(svc, "worst")));
    json_decref(o);
    /* a revoked device says so (provision writes its key to device_keys, as here) */
    assert_int_equal(store_keys_set(s, "gw-2", psk, 4), 0);
    assert_int_equal(store_keys_revoke(s, "gw-2", now), 1); /* one device revoked */
    assert_int_equal(store_q_devices(r, now, &o), 0);
    d = json_array_get(json_object_get(o, "devices"), 1);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "revoked");
    json_decref(o);

    assert_int_equal(store_q_device(r, "nope", now, &o), STORE_Q_NOTFOUND);
    assert_int_equal(store_q_targets(r, "nope", &o), STORE_Q_NOTFOUND);
    assert_int_equal(store_q_device(r, "gw-1", now, &o), 0);
    json_t *t = json_array_get(json_object_get(o, "targets"), 0);
    int64_t tid = json_integer_value(json_object_get(t, "id"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "last"), "goroutines")), 10 + 29 + 5);
    assert_int_equal(json_integer_value(json_object_get(t, "port")), 6060);
    json_decref(o);

    assert_int_equal(store_q_target(r, tid, &o), 0);
    assert_int_equal(json_array_size(json_object_get(o, "findings")), 1);
    json_decref(o);
    assert_int_equal(store_q_target(r, 999, &o), STORE_Q_NOTFOUND);

    assert_int_equal(store_q_series(r, tid, t0, now, 0, &o), 0);
    size_t np = json_array_size(json_object_get(o, "t"));
    assert_true(np > 900 && np <= 1000);
    assert_int_equal(json_array_size(json_object_get(o, "goroutines_max")), np);
    assert_int_equal(json_array_size(json_object_get(json_object_get(o, "by_state"), "chan receive")), np);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(o, "rss_bytes"), 0)), 2048 * 1024);
    json_t *m = json_object_get(o, "markers");
    assert_int_equal(json_array_size(m), 2); /* opened, confidence */
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 1), "event")), "confidence");
    json_decref(o);
    assert_int_equal(store_q_series(r, tid, now, t0, 0, &o), STORE_Q_BADARG);
    assert_int_equal(store_q_series(r, tid, t0, t0 + 10 * 30000LL, 0, &o), 0);
    assert_int_equal(json_array_size(json_object_get(o, "t")), 11); /* raw when few */
    json_decref(o);

    store_finding_filter fl = {.state = "open"};
    assert_int_equal(store_q_findings(r, &fl, &o), 0);
    assert_int_equal(json_array_size(json_object_get(o, "findings")), 1);
    json_t *f = json_array_get(json_object_get(o, "findings"), 0);
    assert_string_equal(json_string_value(json_object_get(f, "function")), "main.(*P).agg");
    assert_string_equal(json_string_value(json_object_get(f, "goroutine_state")), "chan receive");
    int64_t fid = json_integer_value(json_object_get(f, "id"));
    json_decref(o);
    fl.state = "cleared";
    assert_int_equal(store_q_findings(r, &fl, &o), 0);
    assert_int_equal(json_array_size(json_object_get(o, "findings")), 0);
    json_decref(o);
    fl.state = "bogus";
    assert_int_equal(store_q_findings(r, &fl, &o), STORE_Q_BADARG);
    store_finding_filter f2 = {.service = "healthy"};
    assert_int_equal(store_q_findings(r, &f2, &o), 0);
    assert_int_equal(json_array_size(json_object_get(o, "findings")), 0);
    json_decref(o);

    assert_int_equal(store_q_finding(r, fid, &o), 0);
    assert_true(json_array_size(json_object_get(json_object_get(o, "series"), "count")) <= 1000);
    json_decref(o);
    assert_int_equal(store_q_finding(r, 12345, &o), STORE_Q_NOTFOUND);

    assert_int_equal(store_q_gauges(r, now, &o), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "devices_silent")), 1);
    assert_int_equal(json_array_size(json_object_get(o, "open_findings")), 1);
    assert_true(json_integer_value(json_object_get(o, "db_bytes")) > 0);
    json_decref(o);

    int n = 0;
    int64_t at = 0;
    assert_int_equal(store_q_sites_at(r, tid, 0, &at, count_site, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(at, t0 + 2999 * 30000LL);
    n = 0;
    assert_int_equal(store_q_sites_at(r, tid, t0 - 1, NULL, count_site, &n), STORE_Q_NOTFOUND);
    assert_int_equal(store_q_finding_stack(r, fid, check_stack, NULL), 0);
    assert_int_equal(store_q_finding_stack(r, 777, check_stack, NULL), STORE_Q_NOTFOUND);
    store_close(r);
    store_close(s);
}

/* Retention: payloads past payload_days are dropped, series and site counts past full_days
 * are rolled up into 10-minute min/max/last buckets (the series query still draws them), and
 * findings with their history stay; every step stays within its batch. */
static void test_retention(void **state)
{
    (void)state;
    coll_store *s = open_db();
    int64_t t0 = 1700000400000LL - 1700000400000LL % 600000; /* on a bucket boundary */
    char id[16];
    assert_int_equal(store_begin(s), 0);
    for (int i = 0; i < 2 * 2880; i++) { /* two days of 30 s snapshots */
        snprintf(id, sizeof(id), "r%d", i);
        mk(id, "gw-1", "billing", t0 + i * 30000LL, (uint32_t)(i % 20), i < 10, 1);
        assert_int_equal(store_put_snapshot(s, "gw-1", &snap, snap.w.wall_ms, (const uint8_t *)"payload", 7),
                         STORE_NEW);
    }
    assert_int_equal(store_commit(s), 0);
    int64_t now = t0 + 2 * 86400000LL; /* day 1 is older than a day, day 2 is not */
    store_retention r;
    store_retention_defaults(&r);
    r.payload_days = 1;
    r.full_days = 1;
    r.batch_rows = 300;
    int n, steps = 0;
    int64_t before = store_count(s, "series");
    while ((n = store_prune_step(s, &r, now)) > 0) {
        assert_true(n <= 300 + 2); /* a batch, plus the rollup deletes of the target */
        steps++;
        assert_true(steps < 1000);
    }
    assert_int_equal(n, 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM series"), before - 2880);
    assert_int_equal(q1(s, "SELECT min(t) FROM series"), t0 + 86400000LL);
    assert_int_equal(q1(s, "SELECT count(*) FROM series_rollup"), 144);
    assert_int_equal(q1(s, "SELECT sum(n) FROM series_rollup"), 2880);
    /* bucket 0 holds i = 0..19: goroutines = i % 20 + 5 */
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT goroutines_min*10000+goroutines_max*100+goroutines_last FROM series_rollup"
             " WHERE t=%lld", (long long)t0);
    assert_int_equal(q1(s, sql), 5 * 10000 + 24 * 100 + 24);
    assert_int_equal(q1(s, "SELECT count(*) FROM site_rollup"), 2 * 144);
    assert_int_equal(q1(s, "SELECT count(*) FROM site_counts"), 2 * 2880);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM snapshots WHERE payload IS NOT NULL AND received < %lld",
             (long long)(now - 86400000LL - 300 * 30000LL));
    assert_int_equal(q1(s, sql), 0);
    assert_true(q1(s, "SELECT count(*) FROM snapshots WHERE payload IS NOT NULL") >= 2880);
    assert_int_equal(q1(s, "SELECT count(*) FROM finding_counts"), 10);
    assert_int_equal(q1(s, "SELECT count(*) FROM finding_events"), 2); /* opened, cleared */
    json_t *o = NULL;
    assert_int_equal(store_q_series(s, 1, t0, now, 0, &o), 0);
    json_t *t = json_object_get(o, "t");
    /* 144 10-minute rollups, then ~500 buckets of 172.8 s over the full-resolution day */
    if (json_array_size(t) < 640 || json_array_size(t) > 650)
        fail_msg("%zu points", json_array_size(t));
    assert_int_equal(json_integer_value(json_array_get(json_object_get(o, "goroutines_max"), 0)), 24);
    json_decref(o);
    /* a year later the rollups go too */
    while ((n = store_prune_step(s, &r, now + 400 * 86400000LL)) > 0)
        ;
    assert_int_equal(n, 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM series_rollup"), 0);
    assert_int_equal(q1(s, "SELECT count(*) FROM findings"), 1);
    store_close(s);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The pruner thread, on its own connection, works through a backlog while ingest commits on
 * another: both make progress and no ingest commit waits long for the write lock. */
static void test_pruner_thread(void **state)
{
    (void)state;
    coll_store *s = open_db();
    /* the pruner thread runs on the wall clock */
    int64_t now = (int64_t)time(NULL) * 1000, old = now - 40 * 86400000LL;
    char cutoff[96];
    snprintf(cutoff, sizeof(cutoff), "SELECT count(*) FROM series WHERE t < %lld", (long long)(now - 31 * 86400000LL));
    char id[16];
    assert_int_equal(store_begin(s), 0);
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof(id), "o%d", i);
        mk(id, "gw-1", "billing", old + i * 30000LL, 7, 0, 0);
        assert_int_equal(store_put_snapshot(s, "gw-1", &snap, snap.w.wall_ms, NULL, 0), STORE_NEW);
    }
    assert_int_equal(store_commit(s), 0);
    store_retention r;
    store_retention_defaults(&r);
    char err[200];
    store_pruner *p = store_pruner_start(dbpath, &r, err, sizeof(err));
    assert_non_null(p);
    double worst = 0, until = mono_s() + 20;
    int i = 0;
    assert_int_equal(q1(s, cutoff), 3000);
    while (q1(s, cutoff) > 0 && mono_s() < until) {
        snprintf(id, sizeof(id), "n%d", i++);
        /* ingest on today's clock: its snapshots are never old */
        mk(id, "gw-1", "billing", 0, 7, 0, 0);
        snap.w.flags = ET_SNAP_F_WALL_UNTRUSTED;
        double a = mono_s();
        assert_int_equal(store_begin(s), 0);
        assert_int_equal(store_put_snapshot(s, "gw-1", &snap, now, NULL, 0), STORE_NEW);
        assert_int_equal(store_commit(s), 0);
        double d = mono_s() - a;
        worst = d > worst ? d : worst;
        usleep(1000); /* the gap a real event loop leaves between batches */
    }
    store_pruner_stop(p);
    print_message("pruner: backlog of 3000 snapshots rolled up while %d ingest commits ran, slowest %.1f ms\n", i,
                  worst * 1e3);
    assert_int_equal(q1(s, cutoff), 0);
    assert_int_equal(q1(s, "SELECT sum(n) FROM series_rollup"), 3000);
    assert_true(i > 0);
    assert_true(worst < 1.0);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_savepoint_per_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup_per_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_through_ingest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finding_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pruner_thread, setup, teardown),
    };
    /* what every backend must do alike; the rest is SQLite's own (its triggers, its v1 file, its
     * row-by-row retention; PostgreSQL's are in test_collector_pg.py) */
    const struct CMUnitTest both[] = {
        cmocka_unit_test_setup_teardown(test_dedup_per_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_through_ingest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finding_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queries, setup, teardown),
    };
    if (test_pg_url())
        return cmocka_run_group_tests_name("postgresql", both, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
