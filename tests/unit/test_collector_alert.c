/* test_collector_alert.c - the alert stages on a real SQLite store: which findings and
 * devices alert, the durable state/outbox transitions (fire, resolve, confidence change,
 * reopen, nothing resolved on a store error, outbox survives a reopen, one event per alert
 * per POST), the Alertmanager JSON body, the duration/URL/status parsers, and the HTTP
 * client against real loopback TCP peers (one that answers, one that never does, none). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "alert.h"
#include "alert_http.h"
#include "alert_outbox.h"
#include "alert_source.h"
#include "finding.h"
#include "snapshot.h"
#include "store.h"

#define COLL_TESTDB_TAG "alert-test"
#include "coll_testdb.h"

static int64_t q1(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* One snapshot of gw-1/billing (pod `pod`) at wall ms `wall`, optionally carrying the
 * goroutine-leak finding at confidence conf (ET_C_*; -1 = no finding). */
static void put_pod(coll_store *s, const char *id, int64_t wall, int conf, const char *pod)
{
    static coll_snap snap;
    memset(&snap, 0, sizeof(snap));
    snprintf(snap.snapshot_id, sizeof(snap.snapshot_id), "%s", id);
    snprintf(snap.device_id, sizeof(snap.device_id), "gw-1");
    et_snapshot *w = &snap.w;
    w->schema = ET_SNAP_SCHEMA_VERSION;
    snprintf(w->device_id, sizeof(w->device_id), "gw-1");
    snprintf(w->service, sizeof(w->service), "billing");
    snprintf(w->pod_name, sizeof(w->pod_name), "%s", pod);
    snprintf(w->url, sizeof(w->url), "http://127.0.0.1:6060/debug/pprof");
    w->pid = 100;
    w->start_ticks = 5;
    w->wall_ms = wall;
    if (conf >= 0) {
        w->nfindings = 1;
        et_finding *f = &w->findings[0];
        snprintf(f->fingerprint, sizeof(f->fingerprint), "00112233aabbccdd");
        f->kind = ET_F_GOROUTINE_LEAK;
        f->confidence = (uint8_t)conf;
        f->state = 6; /* chan receive */
        f->evidence = 3;
        snprintf(f->site.func, sizeof(f->site.func), "main.(*P).agg");
        snprintf(f->site.file, sizeof(f->site.file), "p/pipeline.go");
        f->site.line = 33;
        f->count = 120;
        f->growth_per_min = 2.5;
    }
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_put_snapshot(s, "gw-1", &snap, wall, NULL, 0), STORE_NEW);
    assert_int_equal(store_commit(s), 0);
}

static void put(coll_store *s, const char *id, int64_t wall, int conf)
{
    put_pod(s, id, wall, conf, "");
}

enum { NONE = -1, SUSPECTED = ET_C_SUSPECTED, LIKELY = ET_C_LIKELY, CONFIRMED = ET_C_CONFIRMED };

static const alert_source_conf SC = {.silent_after_ms = 0, .public_url = "http://fleet.example"};

/* Evaluates at now on the alert thread's own handle; returns fired*10 + resolved. */
static int eval(coll_store *st, alert_db *d, const alert_source_conf *sc, int64_t now)
{
    alert_want *w = NULL;
    int complete = 0;
    int n = alert_source_collect(st, sc, now, &w, &complete);
    assert_true(n >= 0);
    assert_true(complete);
    unsigned f = 0, r = 0;
    assert_int_equal(alert_db_apply(d, w, (size_t)n, now, NULL, &f, &r), 0);
    alert_wants_free(w, n);
    return (int)(f * 10 + r);
}

static coll_store *open_store(void)
{
    char err[256];
    coll_store *s = store_open(dbpath, err, sizeof(err));
    if (!s)
        fail_msg("store_open: %s", err);
    return s;
}

static alert_db *open_alerts(coll_store *st)
{
    char err[256];
    alert_db *d = alert_db_open(st, err, sizeof(err));
    if (!d)
        fail_msg("alert_db_open: %s", err);
    return d;
}

static void test_finding_lifecycle_and_outbox(void **state)
{
    (void)state;
    coll_store *s = open_store();      /* ingest's handle */
    coll_store *as = open_store();     /* the alert thread's own */
    alert_db *d = open_alerts(as);
    const int64_t T = 1800000000000LL;
    put(s, "a1", T, SUSPECTED);
    assert_int_equal(eval(as, d, &SC, T + 10), 0); /* suspected never pages */
    put(s, "a2", T + 1000, LIKELY);
    assert_int_equal(eval(as, d, &SC, T + 1010), 10);
    assert_int_equal(eval(as, d, &SC, T + 1020), 0); /* unchanged: no second event */
    put(s, "a3", T + 2000, LIKELY);          /* same finding, new snapshot: still one alert */
    assert_int_equal(eval(as, d, &SC, T + 2010), 0);
    put(s, "a4", T + 3000, NONE);              /* newer snapshot without it: cleared */
    assert_int_equal(eval(as, d, &SC, T + 3010), 1);
    put(s, "a5", T + 4000, LIKELY);          /* back: fires anew */
    assert_int_equal(eval(as, d, &SC, T + 4010), 10);
    put(s, "a6", T + 5000, CONFIRMED);       /* confidence label changes: old resolves, new fires */
    assert_int_equal(eval(as, d, &SC, T + 5010), 11);
    assert_int_equal(alert_outbox_pending(d), 5);

    /* Durable: a fresh connection (a restarted collector) sees the same outbox. */
    alert_db_close(d);
    store_close(as);
    as = open_store();
    d = open_alerts(as);
    assert_int_equal(alert_outbox_pending(d), 5);

    /* One event per alert per POST, in order: fired(likely) | resolved(likely), ... */
    alert_row rows[8];
    memset(rows, 0, sizeof(rows));
    int n = alert_outbox_claim(d, T + 6000, rows, 8);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].key, "finding/1/likely");
    assert_int_equal(rows[0].ends_ms, 0);
    assert_int_equal(rows[0].starts_ms, T + 1010);
    /* not delivered: retried later, not before */
    assert_int_equal(alert_outbox_retry(d, rows, n, T + 9000), 0);
    alert_rows_free(rows, n);
    assert_int_equal(alert_outbox_claim(d, T + 6000, rows, 8), 0);
    n = alert_outbox_claim(d, T + 9000, rows, 8);
    assert_int_equal(n, 1);
    assert_int_equal(alert_outbox_done(d, rows, n), 0);
    alert_rows_free(rows, n);
    n = alert_outbox_claim(d, T + 9000, rows, 8);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].key, "finding/1/likely");
    assert_int_equal(rows[0].ends_ms, T + 3010);
    assert_int_equal(alert_outbox_done(d, rows, n), 0);
    alert_rows_free(rows, n);
    /* reopened (likely) | resolved(likely) and fired(confirmed): two different keys go together */
    n = alert_outbox_claim(d, T + 9000, rows, 8);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].starts_ms, T + 4010);
    assert_int_equal(alert_outbox_done(d, rows, n), 0);
    alert_rows_free(rows, n);
    n = alert_outbox_claim(d, T + 9000, rows, 8);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].ends_ms, T + 5010);
    assert_string_equal(rows[1].key, "finding/1/confirmed");
    assert_int_equal(alert_outbox_done(d, rows, n), 0);
    alert_rows_free(rows, n);
    assert_int_equal(alert_outbox_pending(d), 0);

    /* Re-send set: the firing confirmed alert and the resolved likely one (recent). */
    alert_row *act = NULL;
    n = alert_db_active(d, T + 10000, &act);
    assert_int_equal(n, 2);
    alert_rows_free(act, n);
    free(act);
    /* ... and after 15 minutes only the firing one. */
    assert_int_equal(eval(as, d, &SC, T + 5010 + ALERT_RESOLVED_KEEP_MS + 1), 0);
    n = alert_db_active(d, T + 5010 + ALERT_RESOLVED_KEEP_MS + 1, &act);
    assert_int_equal(n, 1);
    assert_string_equal(act[0].key, "finding/1/confirmed");
    alert_rows_free(act, n);
    free(act);
    alert_db_close(d);
    store_close(as);
    store_close(s);
}

static void test_labels_annotations_and_body(void **state)
{
    (void)state;
    coll_store *s = open_store();
    alert_db *d = open_alerts(s);
    const int64_t T = 1800000000000LL;
    put(s, "b1", T, LIKELY);
    alert_want *w = NULL;
    int complete = 0;
    assert_int_equal(alert_source_collect(s, &SC, T, &w, &complete), 1);
    assert_string_equal(w[0].labels, "{\"alertname\":\"EdgetraceGoroutineLeak\",\"confidence\":\"likely\","
                                     "\"device\":\"gw-1\",\"function\":\"main.(*P).agg\",\"kind\":\"goroutine-leak\","
                                     "\"service\":\"billing\"}");
    json_t *ann = json_loads(w[0].annotations, 0, NULL);
    assert_non_null(ann);
    assert_string_equal(json_string_value(json_object_get(ann, "location")), "p/pipeline.go:33");
    assert_string_equal(json_string_value(json_object_get(ann, "count")), "120");
    assert_string_equal(json_string_value(json_object_get(ann, "growth")), "2.50/min");
    assert_string_equal(json_string_value(json_object_get(ann, "link")), "http://fleet.example/#/findings/1");
    assert_string_equal(w[0].url, "http://fleet.example/#/findings/1");
    json_decref(ann);
    unsigned f, r;
    assert_int_equal(alert_db_apply(d, w, 1, T, NULL, &f, &r), 0);
    alert_wants_free(w, 1);

    alert_row rows[2];
    memset(rows, 0, sizeof(rows));
    assert_int_equal(alert_outbox_claim(d, T, rows, 2), 1);
    /* firing: endsAt = now + 4 x resend; resolved: its own end */
    char *body = alert_json_body(rows, 1, T + 500, 60000);
    assert_non_null(body);
    json_t *arr = json_loads(body, 0, NULL);
    assert_true(json_is_array(arr) && json_array_size(arr) == 1);
    json_t *a = json_array_get(arr, 0);
    assert_string_equal(json_string_value(json_object_get(a, "startsAt")), "2027-01-15T08:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(a, "endsAt")), "2027-01-15T08:04:00.500Z");
    assert_string_equal(json_string_value(json_object_get(json_object_get(a, "labels"), "kind")), "goroutine-leak");
    assert_string_equal(json_string_value(json_object_get(a, "generatorURL")), "http://fleet.example/#/findings/1");
    json_decref(arr);
    free(body);
    rows[0].ends_ms = T + 1234;
    body = alert_json_body(rows, 1, T + 99999, 60000);
    assert_non_null(strstr(body, "\"endsAt\":\"2027-01-15T08:00:01.234Z\""));
    free(body);
    alert_rows_free(rows, 1);
    alert_db_close(d);
    store_close(s);
}

static void test_device_silent(void **state)
{
    (void)state;
    coll_store *s = open_store();
    const uint8_t psk[4] = {1, 2, 3, 4};
    assert_int_equal(store_device_add(s, "gw-1", psk, sizeof(psk), 0), 0);
    alert_db *d = open_alerts(s);
    alert_source_conf sc = {.silent_after_ms = 60000, .public_url = "http://fleet.example"};
    const int64_t T = 1800000000000LL;
    assert_int_equal(eval(s, d, &sc, T), 0); /* never reported: not "silent", just provisioned */
    put(s, "c1", T, NONE);               /* devices.last_seen = T (received) */
    assert_int_equal(eval(s, d, &sc, T + 60000), 0);
    assert_int_equal(eval(s, d, &sc, T + 60001), 10);
    alert_row rows[1];
    memset(rows, 0, sizeof(rows));
    assert_int_equal(alert_outbox_claim(d, T + 60001, rows, 1), 1);
    assert_string_equal(rows[0].key, "silent/gw-1");
    assert_string_equal(rows[0].labels, "{\"alertname\":\"EdgetraceDeviceSilent\",\"device\":\"gw-1\"}");
    assert_string_equal(rows[0].url, "http://fleet.example/#/devices/gw-1");
    alert_rows_free(rows, 1);
    put(s, "c2", T + 70000, NONE);
    assert_int_equal(eval(s, d, &sc, T + 70001), 1);
    /* a device id with URL-special characters: its link is encoded as the web page's */
    assert_int_equal(store_device_add(s, "gw 2/#x", psk, sizeof(psk), 0), 0);
    assert_int_equal(sqlite3_exec(store_db(s), "UPDATE devices SET last_seen=1 WHERE id='gw 2/#x'", NULL, NULL, NULL),
                     SQLITE_OK);
    alert_want *w = NULL;
    int complete = 0;
    assert_int_equal(alert_source_collect(s, &sc, T + 70001, &w, &complete), 1);
    assert_string_equal(w[0].url, "http://fleet.example/#/devices/gw%202%2F%23x");
    alert_wants_free(w, 1);
    sc.silent_after_ms = 0; /* off */
    assert_int_equal(eval(s, d, &sc, T + 999999), 0);
    alert_db_close(d);
    store_close(s);
}

static void test_store_error_and_partial_answer_resolve_nothing(void **state)
{
    (void)state;
    coll_store *s = open_store();
    alert_db *d = open_alerts(s);
    const int64_t T = 1800000000000LL;
    put(s, "d1", T, LIKELY);
    assert_int_equal(eval(s, d, &SC, T), 10);

    /* An answer cut at the store's limit: a firing finding alert missing from it is kept,
     * a device alert (always complete) is not. */
    unsigned f, r;
    assert_int_equal(alert_db_apply(d, NULL, 0, T + 5, "finding/", &f, &r), 0);
    assert_int_equal(f + r, 0);

    /* A broken database: the source must fail, not answer "nothing alerts", which would
     * resolve every alert. */
    assert_int_equal(sqlite3_exec(store_db(s), "ALTER TABLE findings RENAME TO findings_gone", NULL, NULL, NULL), SQLITE_OK);
    alert_want *w = NULL;
    int complete;
    assert_int_equal(alert_source_collect(s, &SC, T + 10, &w, &complete), -1);
    assert_int_equal(q1(store_db(s), "SELECT count(*) FROM alert_state WHERE ends_ms IS NULL"), 1);
    alert_db_close(d);
    store_close(s);
}

/* Two replicas of one service: two alerts, told apart by the pod label. */
static void test_replicas_are_two_alerts(void **state)
{
    (void)state;
    coll_store *s = open_store();
    alert_db *d = open_alerts(s);
    const uint8_t psk[4] = {1, 2, 3, 4};
    assert_int_equal(store_device_add(s, "gw-1", psk, sizeof(psk), 0), 0);
    const int64_t T = 1800000000000LL;
    put_pod(s, "e1", T, LIKELY, "billing-7d9f-abcde");
    put_pod(s, "e2", T, LIKELY, "billing-7d9f-fghij");
    alert_want *w = NULL;
    int complete = 0;
    assert_int_equal(alert_source_collect(s, &SC, T, &w, &complete), 2);
    assert_string_not_equal(w[0].labels, w[1].labels);
    assert_non_null(strstr(w[0].labels, "\"pod\":\"billing-7d9f-"));
    alert_wants_free(w, 2);
    alert_db_close(d);
    store_close(s);
}

static void test_parsers(void **state)
{
    (void)state;
    assert_int_equal(alert_parse_duration_ms("1m"), 60000);
    assert_int_equal(alert_parse_duration_ms("90"), 90000);
    assert_int_equal(alert_parse_duration_ms("30s"), 30000);
    assert_int_equal(alert_parse_duration_ms("250ms"), 250);
    assert_int_equal(alert_parse_duration_ms("2h"), 7200000);
    assert_int_equal(alert_parse_duration_ms("0"), 0);
    assert_int_equal(alert_parse_duration_ms("-1s"), -1);
    assert_int_equal(alert_parse_duration_ms("5x"), -1);
    assert_int_equal(alert_parse_duration_ms(""), -1);
    assert_int_equal(alert_parse_duration_ms("99999999999999999999"), -1);

    alert_url u;
    char err[128];
    assert_int_equal(alert_url_parse("http://am.example:9093/", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "am.example");
    assert_string_equal(u.port, "9093");
    assert_string_equal(u.path, "");
    assert_int_equal(alert_url_parse("http://[::1]/alertmanager//", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.port, "80");
    assert_string_equal(u.path, "/alertmanager");
    assert_int_equal(alert_url_parse("https://am:9093", &u, err, sizeof(err)), -1);
    assert_int_equal(alert_url_parse("http://:9093", &u, err, sizeof(err)), -1);
    assert_int_equal(alert_url_parse("http://am:0", &u, err, sizeof(err)), -1);
    assert_int_equal(alert_url_parse("http://am:70000", &u, err, sizeof(err)), -1);
    assert_int_equal(alert_url_parse("http://am:9093?x=1", &u, err, sizeof(err)), -1);
    assert_int_equal(alert_url_parse("http://am/a b", &u, err, sizeof(err)), -1);
    assert_int_equal(alert_url_parse("http://[::1", &u, err, sizeof(err)), -1);

    assert_int_equal(alert_http_status("HTTP/1.1 200 OK\r\n", 17), 200);
    assert_int_equal(alert_http_status("HTTP/1.0 503", 12), 503);
    assert_int_equal(alert_http_status("HTTP/1.1 2000 OK", 16), -1);
    assert_int_equal(alert_http_status("HTTP/2 200 OK\r\n", 15), -1);
    assert_int_equal(alert_http_status("HTTP/1.1 20", 11), -1);
    assert_int_equal(alert_http_status("HTTP/1.1 099 x", 14), -1);

    char name[64];
    alert_name_for_kind("goroutine-leak", name, sizeof(name));
    assert_string_equal(name, "EdgetraceGoroutineLeak");
    alert_name_for_kind("heap-growth", name, sizeof(name));
    assert_string_equal(name, "EdgetraceHeapGrowth");
    alert_name_for_kind("fd_leak", name, 12);
    assert_string_equal(name, "EdgetraceFd");
}

/* A real loopback TCP peer: answers `reply` (or nothing) and keeps the request it got. */
typedef struct peer {
    int lfd, port;
    const char *reply;
    char req[4096];
    size_t reqlen;
    pthread_t th;
} peer;

static void *peer_run(void *arg)
{
    peer *p = arg;
    int fd = accept(p->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    /* read the head and the Content-Length body */
    for (;;) {
        ssize_t r = read(fd, p->req + p->reqlen, sizeof(p->req) - 1 - p->reqlen);
        if (r <= 0)
            break;
        p->reqlen += (size_t)r;
        p->req[p->reqlen] = 0;
        char *hdr_end = strstr(p->req, "\r\n\r\n");
        char *cl = strstr(p->req, "Content-Length: ");
        if (hdr_end && cl && p->reqlen >= (size_t)(hdr_end + 4 - p->req) + strtoul(cl + 16, NULL, 10))
            break;
    }
    if (p->reply)
        (void)!write(fd, p->reply, strlen(p->reply));
    else
        sleep(2); /* a black hole: accepted, never answered */
    close(fd);
    return NULL;
}

static void peer_start(peer *p, const char *reply)
{
    memset(p, 0, sizeof(*p));
    p->reply = reply;
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(p->lfd, 4), 0);
    socklen_t l = sizeof(a);
    getsockname(p->lfd, (struct sockaddr *)&a, &l);
    p->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&p->th, NULL, peer_run, p), 0);
}

static void peer_stop(peer *p)
{
    pthread_join(p->th, NULL);
    close(p->lfd);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_http_post(void **state)
{
    (void)state;
    peer p;
    char url[64], err[256];
    alert_url u;
    peer_start(&p, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/am", p.port);
    assert_int_equal(alert_url_parse(url, &u, err, sizeof(err)), 0);
    assert_int_equal(alert_http_post(&u, "/api/v2/alerts", "[]", 2, 2000, -1, err, sizeof(err)), 200);
    peer_stop(&p);
    assert_non_null(strstr(p.req, "POST /am/api/v2/alerts HTTP/1.1\r\n"));
    assert_non_null(strstr(p.req, "Content-Type: application/json\r\nContent-Length: 2\r\n"));
    assert_string_equal(p.req + p.reqlen - 6, "\r\n\r\n[]");

    peer_start(&p, "HTTP/1.1 400 Bad Request\r\n\r\nbad");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", p.port);
    assert_int_equal(alert_url_parse(url, &u, err, sizeof(err)), 0);
    assert_int_equal(alert_http_post(&u, "/api/v2/alerts", "[1]", 3, 2000, -1, err, sizeof(err)), 400);
    peer_stop(&p);

    peer_start(&p, "SSH-2.0-OpenSSH\r\n");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", p.port);
    assert_int_equal(alert_url_parse(url, &u, err, sizeof(err)), 0);
    assert_int_equal(alert_http_post(&u, "/x", "[]", 2, 2000, -1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not an HTTP"));
    peer_stop(&p);

    /* never answers: the deadline holds */
    peer_start(&p, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", p.port);
    assert_int_equal(alert_url_parse(url, &u, err, sizeof(err)), 0);
    long long t0 = now_ms();
    assert_int_equal(alert_http_post(&u, "/x", "[]", 2, 300, -1, err, sizeof(err)), -1);
    long long took = now_ms() - t0;
    assert_true(took >= 250 && took < 1500);
    assert_non_null(strstr(err, "timed out"));
    peer_stop(&p);

    /* stopping: the cancel fd abandons the exchange long before its deadline */
    peer_start(&p, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", p.port);
    assert_int_equal(alert_url_parse(url, &u, err, sizeof(err)), 0);
    int cfd = eventfd(1, EFD_CLOEXEC);
    assert_true(cfd >= 0);
    t0 = now_ms();
    assert_int_equal(alert_http_post(&u, "/x", "[]", 2, 10000, cfd, err, sizeof(err)), -1);
    assert_true(now_ms() - t0 < 1000);
    assert_non_null(strstr(err, "cancel"));
    close(cfd);
    peer_stop(&p);

    /* nobody listens: refused at once */
    int port = p.port;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    assert_int_equal(alert_url_parse(url, &u, err, sizeof(err)), 0);
    assert_int_equal(alert_http_post(&u, "/x", "[]", 2, 2000, -1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "refused"));
}

/* The thread itself, against a port nobody listens on: the finding fires, the POST fails,
 * the change waits in the outbox, and /metrics' text says so (checked by the real promtool). */
static void test_thread_outbox_and_metrics(void **state)
{
    (void)state;
    coll_store *s = open_store();
    const uint8_t psk[4] = {1, 2, 3, 4};
    assert_int_equal(store_device_add(s, "gw-1", psk, sizeof(psk), 0), 0);
    put(s, "f1", 1800000000000LL, LIKELY);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd); /* now refused */
    char url[64], err[256], text[4096];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(a.sin_port));
    assert_int_equal(alert_metrics_text(text, sizeof(text)), 0); /* alerting off */
    alert_conf c = {.db_path = dbpath, .alertmanager_url = url, .public_url = "http://x", .resend_ms = 1000};
    alert_thread *t = alert_start(&c, err, sizeof(err));
    if (!t)
        fail_msg("alert_start: %s", err);
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {
        usleep(50000);
        ok = alert_metrics_text(text, sizeof(text)) > 0 && strstr(text, "edgetrace_alert_outbox_pending 1\n") &&
             strstr(text, "edgetrace_alerts_fired_total 1\n") && !strstr(text, "result=\"failed\"} 0\n");
    }
    assert_true(ok);
    assert_int_equal(alert_metrics_text(text, 64), -1); /* too small: nothing half-written counts */
    alert_metrics_text(text, sizeof(text));
    FILE *p = popen("promtool check metrics >/dev/null 2>&1", "w");
    assert_non_null(p);
    fputs(text, p);
    assert_int_equal(pclose(p), 0);
    alert_stop(t);
    assert_int_equal(alert_metrics_text(text, sizeof(text)), 0);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_finding_lifecycle_and_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels_annotations_and_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_silent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_error_and_partial_answer_resolve_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replicas_are_two_alerts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thread_outbox_and_metrics, setup, teardown),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_http_post),
    };
    /* the alert tables on PostgreSQL (ET_TEST_PG_URL: test_collector_pg.py): the same state
     * machine, outbox and thread; the rest pokes at SQLite itself or needs no database */
    const struct CMUnitTest both[] = {
        cmocka_unit_test_setup_teardown(test_finding_lifecycle_and_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels_annotations_and_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replicas_are_two_alerts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thread_outbox_and_metrics, setup, teardown),
    };
    if (test_pg_url())
        return cmocka_run_group_tests_name("postgresql", both, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
