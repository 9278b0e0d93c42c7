/* store_query.c - the read side of the fleet view (store.h "read side"): devices, targets,
 * series, findings, gauges and the pprof export's sites, as jansson values.
 *
 * Every query is bounded by an index: the fleet overview reads the per-target summaries kept
 * on write (targets.last_*, interval_ms) and the open findings (findings_status), never the
 * millions of series rows; a target's series is one range scan of the WITHOUT ROWID series
 * table keyed (target, t), bucketed here to at most ~1000 points. Statements are prepared per
 * call: the HTTP thread's handle serves a few requests per second, not thousands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "store_sq.h"

#define DEFAULT_INTERVAL_MS 30000
#define MAX_POINTS 1000

/* ---- small helpers --------------------------------------------------------------------- */

/* Text from the database as a JSON string. Names come from devices (hostile input): a byte
 * sequence that is not UTF-8 becomes '?' rather than an invalid document. */
static json_t *jtext(const char *p)
{
    const char *s = p ? p : "";
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s);
    char *c = malloc(n + 1);
    if (!c)
        return json_string("");
    for (size_t i = 0; i <= n; i++)
        c[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
    j = json_string(c);
    free(c);
    return j;
}

static json_t *col_text(sq *st, int i) { return jtext(sq_str(st, i)); }
static json_t *col_int(sq *st, int i)
{
    return sq_isnull(st, i) ? json_null() : json_integer(sq_int(st, i));
}
static json_t *col_real(sq *st, int i)
{
    return sq_isnull(st, i) ? json_null() : json_real(sq_real(st, i));
}

static int conf_rank(const char *c)
{
    if (!c)
        return 0;
    if (!strcmp(c, "confirmed"))
        return 3;
    if (!strcmp(c, "likely"))
        return 2;
    return !strcmp(c, "suspected") ? 1 : 0;
}

static const char *const CONF_NAMES[4] = {NULL, "suspected", "likely", "confirmed"};

/* {"confirmed":0,"likely":0,"suspected":0} */
static json_t *zero_counts(void)
{
    return json_pack("{s:i,s:i,s:i}", "confirmed", 0, "likely", 0, "suspected", 0);
}

/* Sets obj.open_findings and obj.worst from a counts object. */
static void set_counts(json_t *obj, json_t *counts)
{
    const char *worst = NULL;
    for (int r = 3; r >= 1 && !worst; r--)
        if (json_integer_value(json_object_get(counts, CONF_NAMES[r])) > 0)
            worst = CONF_NAMES[r];
    json_object_set(obj, "open_findings", counts);
    json_object_set_new(obj, "worst", worst ? json_string(worst) : json_null());
}

/* Open findings by (group key, confidence): key -> counts object. group_sql selects
 * (key, confidence, n). */
static json_t *open_counts(coll_store *s, const char *group_sql, const char *arg_text, int64_t arg_int)
{
    json_t *map = json_object();
    sq *st = NULL;
    if (!(st = sq_prep(s, group_sql))) {
        json_decref(map);
        return NULL;
    }
    if (arg_text)
        sq_text(st, 1, arg_text);
    else
        sq_i64(st, 1, arg_int);
    int rc;
    while ((rc = sq_step(st)) == 1) {
        const char *key = sq_str(st, 0);
        const char *conf = sq_str(st, 1);
        int r = conf_rank(conf);
        if (!key || !r)
            continue;
        json_t *c = json_object_get(map, key);
        if (!c) {
            c = zero_counts();
            json_object_set_new(map, key, c);
        }
        json_object_set_new(c, CONF_NAMES[r], json_integer(sq_int(st, 2)));
    }
    sq_done(st);
    if (rc != 0) {
        json_decref(map);
        return NULL;
    }
    return map;
}

static int64_t interval_or_default(sq *st, int i)
{
    int64_t v = sq_isnull(st, i) ? 0 : sq_int(st, i);
    return v > 0 ? v : DEFAULT_INTERVAL_MS;
}

static int is_silent(sq *st, int last_col, int interval_col, int64_t now_ms)
{
    if (sq_isnull(st, last_col))
        return 1;
    return now_ms - sq_int(st, last_col) > 3 * interval_or_default(st, interval_col);
}

/* ---- devices --------------------------------------------------------------------------- */

/* interval: the slowest of the device's targets' sampling intervals (one late target is not
 * a silent device). */
#define DEVICE_SQL                                                                                            \
    "SELECT d.id, d.board, d.agent_version, coalesce(d.first_seen, d.created), d.last_seen,"                  \
    " (SELECT max(interval_ms) FROM targets t WHERE t.device=d.id),"                                          \
    " coalesce(d.spool_routine_dropped,0)+coalesce(d.spool_findings_dropped,0)+coalesce(d.spool_corrupt_dropped,0)," \
    " (SELECT count(*) FROM targets t WHERE t.device=d.id), d.snapshots,"                                       \
    " (SELECT revoked_at IS NOT NULL FROM device_keys k WHERE k.device=d.id),"                               \
    /* the refusal the device last reported (it clears it when it applies a later set) */                    \
    " (SELECT reason FROM settings_state ss WHERE ss.device=d.id"                                              \
    "  AND (ss.rejected_fleet>0 OR ss.rejected_device>0 OR ss.reason<>'')) FROM devices d"

static json_t *device_json(sq *st, json_t *counts_map, int64_t now_ms)
{
    const char *id = sq_str(st, 0);
    json_t *d = json_object();
    json_object_set_new(d, "id", col_text(st, 0));
    json_object_set_new(d, "board", col_text(st, 1));
    json_object_set_new(d, "agent_version", col_text(st, 2));
    json_object_set_new(d, "first_seen_ms", col_int(st, 3));
    json_object_set_new(d, "last_seen_ms", col_int(st, 4));
    json_object_set_new(d, "interval_s", json_integer((interval_or_default(st, 5) + 500) / 1000));
    int revoked = !sq_isnull(st, 9) && sq_int(st, 9) > 0;
    json_object_set_new(d, "status",
                        json_string(revoked ? "revoked" : is_silent(st, 4, 5, now_ms) ? "silent" : "online"));
    json_object_set_new(d, "spool_pending", json_null()); /* not carried by the snapshot yet */
    json_object_set_new(d, "spool_dropped", col_int(st, 6));
    json_object_set_new(d, "targets", col_int(st, 7));
    json_object_set_new(d, "snapshots", col_int(st, 8));
    json_object_set_new(d, "settings_refused",
                        sq_isnull(st, 10) ? json_null() : col_text(st, 10));
    json_t *c = id && counts_map ? json_object_get(counts_map, id) : NULL;
    json_t *z = c ? json_incref(c) : zero_counts();
    set_counts(d, z);
    json_decref(z);
    return d;
}

/* Each device's services with the worst open finding of each (null: healthy), so that the
 * fleet overview shows every service, quiet ones too, from this one answer. Bounded per
 * device: a gateway with more services than fit shows the first by name. */
#define DEVICE_SERVICES_MAX 64
static int device_services(coll_store *s, json_t *devices)
{
    sq *st = NULL;
    if (!(st = sq_prep(s,
             "SELECT t.device, t.service, t.id, (SELECT max(CASE f.confidence WHEN 'confirmed' THEN 3"
             " WHEN 'likely' THEN 2 WHEN 'suspected' THEN 1 ELSE 0 END) FROM findings f"
             " WHERE f.target=t.id AND f.status='open') FROM targets t ORDER BY t.device, t.service, t.id")))
        return -1;
    json_t *by_device = json_object();
    int rc;
    while ((rc = sq_step(st)) == 1) {
        const char *dev = sq_str(st, 0);
        if (!dev)
            continue;
        json_t *list = json_object_get(by_device, dev);
        if (!list) {
            list = json_array();
            json_object_set_new(by_device, dev, list);
        }
        if (json_array_size(list) >= DEVICE_SERVICES_MAX)
            continue;
        int w = sq_isnull(st, 3) ? 0 : (int)sq_int(st, 3);
        json_array_append_new(list, json_pack("{s:o,s:o,s:o}", "service", col_text(st, 1), "target", col_int(st, 2),
                                              "worst", w > 0 && w < 4 ? json_string(CONF_NAMES[w]) : json_null()));
    }
    sq_done(st);
    if (rc != 0) {
        json_decref(by_device);
        return -1;
    }
    size_t i;
    json_t *d;
    json_array_foreach(devices, i, d) {
        json_t *list = json_object_get(by_device, json_string_value(json_object_get(d, "id")));
        if (list)
            json_object_set(d, "services", list);
        else
            json_object_set_new(d, "services", json_array());
    }
    json_decref(by_device);
    return 0;
}

int store_q_devices(coll_store *s, int64_t now_ms, json_t **out)
{
    json_t *counts = open_counts(s,
                                 "SELECT device, confidence, count(*) FROM findings WHERE status='open'"
                                 " AND ?1=0 GROUP BY device, confidence",
                                 NULL, 0);
    if (!counts)
        return -1;
    sq *st = NULL;
    if (!(st = sq_prep(s, DEVICE_SQL " ORDER BY d.id"))) {
        json_decref(counts);
        return -1;
    }
    json_t *arr = json_array();
    int rc;
    while ((rc = sq_step(st)) == 1)
        json_array_append_new(arr, device_json(st, counts, now_ms));
    sq_done(st);
    json_decref(counts);
    if (rc != 0 || device_services(s, arr)) {
        json_decref(arr);
        return -1;
    }
    *out = json_pack("{s:o}", "devices", arr);
    return 0;
}

/* ---- targets --------------------------------------------------------------------------- */

#define TARGET_SQL                                                                                       \
    "SELECT t.id, t.device, t.service, coalesce(t.namespace,''), coalesce(t.pod,''), coalesce(t.container,'')," \
    " t.port, t.go_version, t.pid, t.first_seen, t.last_seen, t.last_goroutines, t.last_heap_inuse,"     \
    " t.last_rss_bytes, t.last_threads, t.interval_ms FROM targets t"

static json_t *target_json(sq *st, json_t *counts_map)
{
    json_t *t = json_object();
    json_object_set_new(t, "id", col_int(st, 0));
    json_object_set_new(t, "device", col_text(st, 1));
    json_object_set_new(t, "service", col_text(st, 2));
    json_object_set_new(t, "namespace", col_text(st, 3));
    json_object_set_new(t, "pod", col_text(st, 4));
    json_object_set_new(t, "container", col_text(st, 5));
    json_object_set_new(t, "port", col_int(st, 6));
    json_object_set_new(t, "go_version", col_text(st, 7));
    json_object_set_new(t, "pid", col_int(st, 8));
    json_object_set_new(t, "first_seen_ms", col_int(st, 9));
    json_object_set_new(t, "last_seen_ms", col_int(st, 10));
    json_object_set_new(t, "interval_s", json_integer((interval_or_default(st, 15) + 500) / 1000));
    json_object_set_new(t, "last",
                        json_pack("{s:o,s:o,s:o,s:o}", "goroutines", col_int(st, 11), "heap_inuse", col_int(st, 12),
                                  "rss_bytes", col_int(st, 13), "threads", col_int(st, 14)));
    char key[24];
    snprintf(key, sizeof(key), "%lld", (long long)sq_int(st, 0));
    json_t *c = counts_map ? json_object_get(counts_map, key) : NULL;
    json_t *z = c ? json_incref(c) : zero_counts();
    set_counts(t, z);
    json_decref(z);
    return t;
}

static int device_exists(coll_store *s, const char *device)
{
    sq *st = NULL;
    if (!(st = sq_prep(s, "SELECT 1 FROM devices WHERE id=?1")))
        return -1;
    sq_text(st, 1, device);
    int rc = sq_step(st);
    sq_done(st);
    return rc == 1 ? 1 : rc == 0 ? 0 : -1;
}

static json_t *targets_of(coll_store *s, const char *device)
{
    json_t *counts = open_counts(s,
                                 "SELECT CAST(target AS TEXT), confidence, count(*) FROM findings"
                                 " WHERE device=?1 AND status='open' GROUP BY target, confidence",
                                 device, 0);
    if (!counts)
        return NULL;
    sq *st = NULL;
    if (!(st = sq_prep(s, TARGET_SQL " WHERE t.device=?1 ORDER BY t.service, t.ident"))) {
        json_decref(counts);
        return NULL;
    }
    sq_text(st, 1, device);
    json_t *arr = json_array();
    int rc;
    while ((rc = sq_step(st)) == 1)
        json_array_append_new(arr, target_json(st, counts));
    sq_done(st);
    json_decref(counts);
    if (rc != 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

int store_q_targets(coll_store *s, const char *device, json_t **out)
{
    if (!device)
        return STORE_Q_BADARG;
    int e = device_exists(s, device);
    if (e <= 0)
        return e < 0 ? -1 : STORE_Q_NOTFOUND;
    json_t *arr = targets_of(s, device);
    if (!arr)
        return -1;
    *out = json_pack("{s:o}", "targets", arr);
    return 0;
}

int store_q_device(coll_store *s, const char *device, int64_t now_ms, json_t **out)
{
    if (!device)
        return STORE_Q_BADARG;
    json_t *counts = open_counts(s,
                                 "SELECT device, confidence, count(*) FROM findings WHERE device=?1"
                                 " AND status='open' GROUP BY device, confidence",
                                 device, 0);
    if (!counts)
        return -1;
    sq *st = NULL;
    if (!(st = sq_prep(s, DEVICE_SQL " WHERE d.id=?1"))) {
        json_decref(counts);
        return -1;
    }
    sq_text(st, 1, device);
    int rc = sq_step(st);
    json_t *d = rc == 1 ? device_json(st, counts, now_ms) : NULL;
    sq_done(st);
    json_decref(counts);
    if (!d)
        return rc == 0 ? STORE_Q_NOTFOUND : -1;
    json_t *arr = targets_of(s, device);
    if (!arr) {
        json_decref(d);
        return -1;
    }
    /* DEVICE's "targets" is a count; the device page gets the list under the same name */
    json_object_set_new(d, "targets", arr);
    *out = d;
    return 0;
}

/* ---- findings -------------------------------------------------------------------------- */

#define FINDING_SQL                                                                                        \
    "SELECT f.id, f.device, f.target, t.service, f.kind, f.confidence, f.status, f.function, f.file, f.line," \
    " f.state, f.count, f.growth_per_min, f.first_seen, f.last_seen, f.snapshots, f.fingerprint,"         \
    " f.evidence, f.created_by, f.stack, f.oldest_wait_s, f.value, coalesce(f.go_version, t.go_version),"  \
    " f.max_count, f.cleared_at, f.survivors, f.survivors_of, f.oldest_id, f.wait_hist"                    \
    " FROM findings f JOIN targets t ON t.id=f.target"

static const char *const EVIDENCE[] = {"trend",        "cluster",   "wait",     "trace", "gc-proof",
                                       "stack-growth", "heap-site", "memstats", "proc", "survivors"};

static json_t *finding_json(sq *st, int detail)
{
    json_t *f = json_object();
    json_object_set_new(f, "id", col_int(st, 0));
    json_object_set_new(f, "device", col_text(st, 1));
    json_object_set_new(f, "target", col_int(st, 2));
    json_object_set_new(f, "service", col_text(st, 3));
    json_object_set_new(f, "kind", col_text(st, 4));
    json_object_set_new(f, "confidence", col_text(st, 5));
    json_object_set_new(f, "state", col_text(st, 6));
    json_object_set_new(f, "function", col_text(st, 7));
    json_object_set_new(f, "file", col_text(st, 8));
    json_object_set_new(f, "line", col_int(st, 9));
    json_object_set_new(f, "goroutine_state", col_text(st, 10));
    json_object_set_new(f, "count", col_int(st, 11));
    json_object_set_new(f, "growth_per_min", col_real(st, 12));
    json_object_set_new(f, "first_seen_ms", col_int(st, 13));
    json_object_set_new(f, "last_seen_ms", col_int(st, 14));
    json_object_set_new(f, "snapshots", col_int(st, 15));
    json_object_set_new(f, "fingerprint", col_text(st, 16));
    if (!detail)
        return f;
    json_t *ev = json_array();
    int64_t bits = sq_int(st, 17);
    for (unsigned b = 0; b < sizeof(EVIDENCE) / sizeof(EVIDENCE[0]); b++)
        if (bits & (1ll << b))
            json_array_append_new(ev, json_string(EVIDENCE[b]));
    json_object_set_new(f, "evidence", ev);
    json_object_set_new(f, "created_by", col_text(st, 18));
    const char *stack = sq_str(st, 19);
    json_t *sj = stack ? json_loads(stack, 0, NULL) : NULL;
    json_object_set_new(f, "stack", json_is_array(sj) ? sj : json_array());
    if (sj && !json_is_array(sj))
        json_decref(sj);
    json_object_set_new(f, "oldest_wait_s", col_real(st, 20));
    json_object_set_new(f, "value", col_int(st, 21));
    json_object_set_new(f, "go_version", col_text(st, 22));
    json_object_set_new(f, "max_count", col_int(st, 23));
    json_object_set_new(f, "cleared_ms", col_int(st, 24));
    /* why a slow leak was raised: of the oldest goroutines an earlier debug=2 dump saw at the
     * site, how many are still parked there (null when no dump compared them) */
    json_object_set_new(f, "survivors", col_int(st, 25));
    json_object_set_new(f, "survivors_of", col_int(st, 26));
    json_object_set_new(f, "oldest_id", col_int(st, 27));
    const char *wh = sq_str(st, 28);
    json_t *hj = wh ? json_loads(wh, 0, NULL) : NULL;
    json_object_set_new(f, "wait_hist", json_is_array(hj) ? hj : json_null());
    if (hj && !json_is_array(hj))
        json_decref(hj);
    return f;
}

int store_q_findings(coll_store *s, const store_finding_filter *fl, json_t **out)
{
    store_finding_filter none = {0};
    if (!fl)
        fl = &none;
    if (fl->state && strcmp(fl->state, "open") && strcmp(fl->state, "cleared"))
        return STORE_Q_BADARG;
    if (fl->confidence && !conf_rank(fl->confidence))
        return STORE_Q_BADARG;
    if (fl->limit < 0)
        return STORE_Q_BADARG;
    int limit = fl->limit ? fl->limit : 200;
    if (limit > 1000)
        limit = 1000;
    sq *st = NULL;
    if (!(st = sq_prep(s,
             FINDING_SQL " WHERE (CAST(?1 AS TEXT) IS NULL OR f.status=?1) AND (CAST(?2 AS TEXT) IS NULL OR f.kind=?2)"
                         " AND (CAST(?3 AS TEXT) IS NULL OR f.confidence=?3) AND (CAST(?4 AS TEXT) IS NULL OR f.device=?4)"
                         " AND (CAST(?5 AS TEXT) IS NULL OR t.service=?5) AND (?6=0 OR f.target=?6)"
                         " ORDER BY f.status='open' DESC, CASE f.confidence WHEN 'confirmed' THEN 3"
                         " WHEN 'likely' THEN 2 ELSE 1 END DESC, f.last_seen DESC LIMIT ?7")))
        return -1;
    sq_text(st, 1, fl->state);
    sq_text(st, 2, fl->kind);
    sq_text(st, 3, fl->confidence);
    sq_text(st, 4, fl->device);
    sq_text(st, 5, fl->service);
    sq_i64(st, 6, fl->target);
    sq_i64(st, 7, limit);
    json_t *arr = json_array();
    int rc;
    while ((rc = sq_step(st)) == 1)
        json_array_append_new(arr, finding_json(st, 0));
    sq_done(st);
    if (rc != 0) {
        json_decref(arr);
        return -1;
    }
    *out = json_pack("{s:o}", "findings", arr);
    return 0;
}

int store_q_target(coll_store *s, int64_t target, json_t **out)
{
    sq *st = NULL;
    if (!(st = sq_prep(s, TARGET_SQL " WHERE t.id=?1")))
        return -1;
    sq_i64(st, 1, target);
    int rc = sq_step(st);
    json_t *t = NULL;
    if (rc == 1) {
        json_t *counts = open_counts(s,
                                     "SELECT CAST(target AS TEXT), confidence, count(*) FROM findings"
                                     " WHERE target=?1 AND status='open' GROUP BY target, confidence",
                                     NULL, target);
        t = counts ? target_json(st, counts) : NULL;
        json_decref(counts);
    }
    sq_done(st);
    if (!t)
        return rc == 0 ? STORE_Q_NOTFOUND : -1;
    store_finding_filter fl = {.target = target, .limit = 1000};
    json_t *fs = NULL;
    if (store_q_findings(s, &fl, &fs)) {
        json_decref(t);
        return -1;
    }
    json_object_set(t, "findings", json_object_get(fs, "findings"));
    json_decref(fs);
    *out = t;
    return 0;
}

/* ---- bucketing (series) ---------------------------------------------------------------- */

/* Rows in time order go into buckets of step ms; each bucket keeps its last row's values and
 * the max of column 0 (goroutines). */
#define NV 7 /* goroutines, heap_inuse, heap_alloc, rss_bytes, threads, fds, goroutines_max */
typedef struct bucketer {
    int64_t from, step, cur;   /* cur: bucket index of the row held, -1 = none */
    int64_t t;
    int has[NV];
    int64_t v[NV];
    char by_state[ET_G_STATE_COUNT * 48 + 4];
    json_t *tarr, *varr[NV], *bys;
    size_t n;
} bucketer;

static const char *const VNAMES[NV] = {"goroutines", "heap_inuse", "heap_alloc", "rss_bytes",
                                       "threads",    "fds",        "goroutines_max"};

static void bucket_emit(bucketer *b)
{
    if (b->cur < 0)
        return;
    json_array_append_new(b->tarr, json_integer(b->t));
    for (int i = 0; i < NV; i++)
        json_array_append_new(b->varr[i], b->has[i] ? json_integer(b->v[i]) : json_null());
    json_t *o = b->by_state[0] ? json_loads(b->by_state, 0, NULL) : NULL;
    const char *k;
    json_t *v;
    if (json_is_object(o)) {
        json_object_foreach(o, k, v)
        {
            json_t *a = json_object_get(b->bys, k);
            if (!a) {
                a = json_array();
                for (size_t i = 0; i < b->n; i++)
                    json_array_append_new(a, json_null());
                json_object_set_new(b->bys, k, a);
            }
            json_array_append(a, v);
        }
    }
    json_decref(o);
    b->n++;
    /* states absent from this point get null */
    json_object_foreach(b->bys, k, v)
    {
        while (json_array_size(v) < b->n)
            json_array_append_new(v, json_null());
    }
    b->cur = -1;
}

/* One row: t, the 6 values (NULL = missing), the bucket max candidate, by_state text. */
static void bucket_row(bucketer *b, sq *st)
{
    int64_t t = sq_int(st, 0);
    int64_t idx = (t - b->from) / b->step;
    if (idx != b->cur) {
        bucket_emit(b);
        b->cur = idx;
        b->has[6] = 0;
    }
    b->t = t;
    for (int i = 0; i < 6; i++) {
        b->has[i] = !sq_isnull(st, 1 + i);
        b->v[i] = sq_int(st, 1 + i);
    }
    if (!sq_isnull(st, 7)) {
        int64_t m = sq_int(st, 7);
        if (!b->has[6] || m > b->v[6])
            b->v[6] = m;
        b->has[6] = 1;
    }
    const char *bs = sq_str(st, 8);
    snprintf(b->by_state, sizeof(b->by_state), "%s", bs ? bs : "");
}

static int series_scan(coll_store *s, bucketer *b, const char *sql, int64_t target, int64_t from, int64_t to)
{
    sq *st = NULL;
    if (!(st = sq_prep(s, sql)))
        return -1;
    sq_i64(st, 1, target);
    sq_i64(st, 2, from);
    sq_i64(st, 3, to);
    int rc;
    while ((rc = sq_step(st)) == 1)
        bucket_row(b, st);
    sq_done(st);
    return rc == 0 ? 0 : -1;
}

static int target_exists(coll_store *s, int64_t target)
{
    sq *st = NULL;
    if (!(st = sq_prep(s, "SELECT 1 FROM targets WHERE id=?1")))
        return -1;
    sq_i64(st, 1, target);
    int rc = sq_step(st);
    sq_done(st);
    return rc == 1 ? 1 : rc == 0 ? 0 : -1;
}

int store_q_series(coll_store *s, int64_t target, int64_t from_ms, int64_t to_ms, int maxpoints, json_t **out)
{
    if (from_ms > to_ms || maxpoints < 0)
        return STORE_Q_BADARG;
    int e = target_exists(s, target);
    if (e <= 0)
        return e < 0 ? -1 : STORE_Q_NOTFOUND;
    if (maxpoints == 0 || maxpoints > MAX_POINTS)
        maxpoints = MAX_POINTS;
    bucketer b = {.from = from_ms, .cur = -1};
    b.step = (to_ms - from_ms) / maxpoints + 1;
    b.tarr = json_array();
    for (int i = 0; i < NV; i++)
        b.varr[i] = json_array();
    b.bys = json_object();
    /* rollups first (older than full-resolution retention), then the full-resolution rows */
    int rc = series_scan(s, &b,
                         "SELECT t, goroutines_last, heap_inuse_last, heap_alloc_last, rss_kb_last*1024, threads_last,"
                         " fds_last, goroutines_max, by_state FROM series_rollup"
                         " WHERE target=?1 AND t BETWEEN ?2 AND ?3 ORDER BY t",
                         target, from_ms, to_ms);
    if (!rc)
        rc = series_scan(s, &b,
                         "SELECT t, goroutines, heap_inuse, heap_alloc, rss_kb*1024, threads, fds, goroutines,"
                         " by_state FROM series WHERE target=?1 AND t BETWEEN ?2 AND ?3 ORDER BY t",
                         target, from_ms, to_ms);
    bucket_emit(&b);
    json_t *o = json_object();
    json_object_set_new(o, "target", json_integer(target));
    json_object_set_new(o, "from", json_integer(from_ms));
    json_object_set_new(o, "to", json_integer(to_ms));
    json_object_set_new(o, "step_ms", json_integer(b.step));
    json_object_set_new(o, "t", b.tarr);
    for (int i = 0; i < NV; i++)
        json_object_set_new(o, VNAMES[i], b.varr[i]);
    json_object_set_new(o, "by_state", b.bys);
    json_t *markers = json_array();
    sq *st = NULL;
    if (!rc && (st = sq_prep(s,
                     "SELECT e.t, e.finding, f.kind, e.confidence, e.event FROM findings f"
                     " JOIN finding_events e ON e.finding=f.id WHERE f.target=?1 AND e.t BETWEEN ?2 AND ?3"
                     " ORDER BY e.t, e.id LIMIT 1000"))) {
        sq_i64(st, 1, target);
        sq_i64(st, 2, from_ms);
        sq_i64(st, 3, to_ms);
        int r;
        while ((r = sq_step(st)) == 1)
            json_array_append_new(markers,
                                  json_pack("{s:o,s:o,s:o,s:o,s:o}", "t", col_int(st, 0), "finding", col_int(st, 1),
                                            "kind", col_text(st, 2), "confidence", col_text(st, 3), "event",
                                            col_text(st, 4)));
        rc = r == 0 ? 0 : -1;
        sq_done(st);
    } else if (!rc) {
        rc = -1;
    }
    json_object_set_new(o, "markers", markers);
    if (rc) {
        json_decref(o);
        return -1;
    }
    *out = o;
    return 0;
}

/* ---- one finding ----------------------------------------------------------------------- */

int store_q_finding(coll_store *s, int64_t id, json_t **out)
{
    sq *st = NULL;
    if (!(st = sq_prep(s, FINDING_SQL " WHERE f.id=?1")))
        return -1;
    sq_i64(st, 1, id);
    int rc = sq_step(st);
    json_t *f = rc == 1 ? finding_json(st, 1) : NULL;
    int64_t first = rc == 1 ? sq_int(st, 13) : 0;
    int64_t last = rc == 1 ? sq_int(st, 14) : 0;
    sq_done(st);
    if (!f)
        return rc == 0 ? STORE_Q_NOTFOUND : -1;
    json_t *hist = json_array();
    if (!(st = sq_prep(s, "SELECT t, event, confidence FROM finding_events WHERE finding=?1 ORDER BY t, id LIMIT 1000")))
        goto fail;
    sq_i64(st, 1, id);
    while ((rc = sq_step(st)) == 1)
        json_array_append_new(hist, json_pack("{s:o,s:o,s:o}", "t", col_int(st, 0), "event", col_text(st, 1),
                                              "confidence", col_text(st, 2)));
    sq_done(st);
    if (rc != 0)
        goto fail;
    json_object_set_new(f, "history", hist);
    hist = NULL;
    /* the site's count over the finding's life, at most MAX_POINTS (last value per bucket) */
    if (!(st = sq_prep(s, "SELECT t, count FROM finding_counts WHERE finding=?1 ORDER BY t")))
        goto fail;
    sq_i64(st, 1, id);
    int64_t step = (last - first) / MAX_POINTS + 1, cur = -1, lt = 0, lc = 0;
    json_t *ts = json_array(), *cs = json_array();
    while ((rc = sq_step(st)) == 1) {
        int64_t t = sq_int(st, 0), idx = (t - first) / step;
        if (cur >= 0 && idx != cur) {
            json_array_append_new(ts, json_integer(lt));
            json_array_append_new(cs, json_integer(lc));
        }
        cur = idx;
        lt = t;
        lc = sq_int(st, 1);
    }
    if (cur >= 0) {
        json_array_append_new(ts, json_integer(lt));
        json_array_append_new(cs, json_integer(lc));
    }
    sq_done(st);
    json_object_set_new(f, "series", json_pack("{s:o,s:o}", "t", ts, "count", cs));
    if (rc != 0)
        goto fail;
    *out = f;
    return 0;
fail:
    json_decref(hist);
    json_decref(f);
    return -1;
}

/* ---- gauges ---------------------------------------------------------------------------- */

int store_q_gauges(coll_store *s, int64_t now_ms, json_t **out)
{
    sq *st = NULL;
    json_t *o = json_object(), *of = json_array(), *devs = json_array();
    json_object_set_new(o, "open_findings", of);
    json_object_set_new(o, "devices", devs);
    int rc = -1, silent = 0;
    if (!(st = sq_prep(s, "SELECT kind, confidence, count(*) FROM findings WHERE status='open' GROUP BY 1, 2")))
        goto out;
    while ((rc = sq_step(st)) == 1)
        json_array_append_new(of, json_pack("{s:o,s:o,s:o}", "kind", col_text(st, 0), "confidence", col_text(st, 1),
                                            "count", col_int(st, 2)));
    sq_done(st);
    if (rc != 0 || !(st = sq_prep(s,
                                  "SELECT d.id, d.last_seen, (SELECT max(interval_ms) FROM targets t"
                                  " WHERE t.device=d.id) FROM devices d ORDER BY d.id"))) {
        rc = -1;
        goto out;
    }
    while ((rc = sq_step(st)) == 1) {
        int sil = is_silent(st, 1, 2, now_ms);
        silent += sil;
        json_array_append_new(devs, json_pack("{s:o,s:o,s:b}", "id", col_text(st, 0), "last_seen_ms", col_int(st, 1),
                                              "silent", sil));
    }
    sq_done(st);
    if (rc != 0) {
        rc = -1;
        goto out;
    }
    rc = 0;
    json_object_set_new(o, "devices_silent", json_integer(silent));
    json_object_set_new(o, "db_bytes", json_integer(store_db_bytes(s)));
    int64_t pruned = 0;
    if ((st = sq_prep(s, "SELECT CAST(value AS INTEGER) FROM meta WHERE key='prune_rows_total'"))) {
        if (sq_step(st) == 1)
            pruned = sq_int(st, 0);
        sq_done(st);
    }
    json_object_set_new(o, "prune_rows_total", json_integer(pruned));
out:
    if (rc) {
        json_decref(o);
        return -1;
    }
    *out = o;
    return 0;
}

/* ---- pprof export ---------------------------------------------------------------------- */

int store_q_sites_at(coll_store *s, int64_t target, int64_t at_ms, int64_t *snap_ms, store_site_cb cb, void *arg)
{
    sq *st = NULL;
    if (!(st = sq_prep(s, "SELECT t FROM series WHERE target=?1 AND t<=?2 ORDER BY t DESC LIMIT 1")))
        return -1;
    sq_i64(st, 1, target);
    sq_i64(st, 2, at_ms > 0 ? at_ms : INT64_MAX);
    int rc = sq_step(st);
    int64_t t = rc == 1 ? sq_int(st, 0) : 0;
    sq_done(st);
    if (rc != 1)
        return rc == 0 ? STORE_Q_NOTFOUND : -1;
    if (snap_ms)
        *snap_ms = t;
    /* CROSS JOIN keeps SQLite from scanning all of the target's counts: walk the target's
     * sites and look each one's count at t up by its primary key (PostgreSQL has no CROSS
     * JOIN ... ON and plans the plain join well) */
#define SITES_AT(join)                                                                                    \
    "SELECT c.count, c.max_wait_min, coalesce(s.state,''), s.function, coalesce(s.file,''),"              \
    " coalesce(s.line,0), coalesce(s.created_by,''), s.key FROM sites s " join " site_counts c"           \
    " ON c.target=s.target AND c.key=s.key AND c.t=?2 WHERE s.target=?1 ORDER BY c.count DESC"
    if (!(st = sq_prep(s, s->pg ? SITES_AT("JOIN") : SITES_AT("CROSS JOIN"))))
        return -1;
    sq_i64(st, 1, target);
    sq_i64(st, 2, t);
    while ((rc = sq_step(st)) == 1) {
        char unnamed[32];
        store_site site = {0};
        site.count = (uint32_t)sq_int(st, 0);
        site.max_wait_min = (uint32_t)sq_int(st, 1);
        site.state = sq_str(st, 2);
        const char *fn = sq_str(st, 3);
        if (!fn) { /* only ever sent as a reference: the agent's next refresh names it */
            snprintf(unnamed, sizeof(unnamed), "site#%08llx", (unsigned long long)sq_int(st, 7));
            fn = unnamed;
        }
        site.frames[0].function = fn;
        site.frames[0].file = sq_str(st, 4);
        site.frames[0].line = (uint32_t)sq_int(st, 5);
        site.created_by = sq_str(st, 6);
        site.nframes = 1;
        if (site.created_by && site.created_by[0]) {
            site.frames[1].function = site.created_by;
            site.frames[1].file = "";
            site.nframes = 2;
        }
        if (cb(&site, arg))
            break;
    }
    sq_done(st);
    return rc == 1 || rc == 0 ? 0 : -1;
}

int store_q_finding_stack(coll_store *s, int64_t finding, store_site_cb cb, void *arg)
{
    sq *st = NULL;
    if (!(st = sq_prep(s,
             "SELECT function, coalesce(file,''), coalesce(line,0), stack, coalesce(created_by,''),"
             " coalesce(state,''), count FROM findings WHERE id=?1")))
        return -1;
    sq_i64(st, 1, finding);
    int rc = sq_step(st);
    if (rc != 1) {
        sq_done(st);
        return rc == 0 ? STORE_Q_NOTFOUND : -1;
    }
    store_site site = {0};
    site.frames[0].function = sq_str(st, 0);
    if (!site.frames[0].function)
        site.frames[0].function = "";
    site.frames[0].file = sq_str(st, 1);
    site.frames[0].line = (uint32_t)sq_int(st, 2);
    site.nframes = 1;
    const char *stack = sq_str(st, 3);
    json_t *sj = stack ? json_loads(stack, 0, NULL) : NULL;
    size_t i;
    json_t *v;
    /* the stack's frames are names only (leaf first); its leaf is the site itself */
    json_array_foreach(sj, i, v)
    {
        const char *fn = json_string_value(v);
        if (!fn || (i == 0 && !strcmp(fn, site.frames[0].function)))
            continue;
        if (site.nframes >= STORE_MAX_FRAMES)
            break;
        site.frames[site.nframes].function = fn;
        site.frames[site.nframes].file = "";
        site.nframes++;
    }
    site.created_by = sq_str(st, 4);
    site.state = sq_str(st, 5);
    site.count = (uint32_t)sq_int(st, 6);
    cb(&site, arg);
    json_decref(sj);
    sq_done(st);
    return 0;
}
