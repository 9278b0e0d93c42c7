/* metrics.c - see metrics.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "metrics.h"

/* Ingest-to-commit latency buckets (seconds): group commit keeps most under a few ms; an
 * fsync on a slow disk or a long batch shows up in the upper buckets. */
static const double commit_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
#define NCOMMIT (sizeof(commit_bounds) / sizeof(commit_bounds[0]))

static struct {
    pthread_mutex_t mu;
    ingest_counters c;
    uint64_t lat_buckets[NCOMMIT + 1]; /* last = +Inf */
    uint64_t lat_count;
    double lat_sum;
} ing = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_int dtls_sessions;

/* HTTP counters: touched only by the HTTP server's single polling thread (http.c). */
static const int http_codes[] = {200, 400, 401, 404, 405, 414, 500, 503};
#define NCODES (sizeof(http_codes) / sizeof(http_codes[0]))
static uint64_t http_by_code[NCODES + 1]; /* last = any other code */
static double http_seconds_sum;

void metrics_ingest_publish(const ingest_counters *c)
{
    pthread_mutex_lock(&ing.mu);
    ing.c = *c;
    pthread_mutex_unlock(&ing.mu);
}

void metrics_ingest_commit(double seconds, uint64_t n)
{
    if (!n)
        return;
    size_t i = 0;
    while (i < NCOMMIT && seconds > commit_bounds[i])
        i++;
    pthread_mutex_lock(&ing.mu);
    ing.lat_buckets[i] += n;
    ing.lat_count += n;
    ing.lat_sum += seconds * (double)n;
    pthread_mutex_unlock(&ing.mu);
}

void metrics_dtls_sessions_add(int delta)
{
    atomic_fetch_add(&dtls_sessions, delta);
}

void metrics_http_observe(int status, double seconds)
{
    size_t i = 0;
    while (i < NCODES && http_codes[i] != status)
        i++;
    http_by_code[i]++;
    http_seconds_sum += seconds;
}

void metrics_escape_label(const char *src, char *dst, size_t cap)
{
    size_t o = 0;
    for (; *src && o + 3 < cap; src++) {
        if (*src == '\\' || *src == '"')
            dst[o++] = '\\', dst[o++] = *src;
        else if (*src == '\n')
            dst[o++] = '\\', dst[o++] = 'n';
        else
            dst[o++] = *src;
    }
    dst[o] = 0;
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v)
{
    head(f, name, "counter", help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void render_ingest(FILE *f)
{
    pthread_mutex_lock(&ing.mu);
    ingest_counters c = ing.c;
    uint64_t b[NCOMMIT + 1];
    memcpy(b, ing.lat_buckets, sizeof(b));
    uint64_t lc = ing.lat_count;
    double ls = ing.lat_sum;
    pthread_mutex_unlock(&ing.mu);

    counter(f, "edgetrace_snapshots_stored_total", "Snapshots durably stored (new).", c.snapshots_new);
    counter(f, "edgetrace_snapshots_duplicate_total", "Snapshots received again and acknowledged without storing.",
            c.snapshots_dup);
    counter(f, "edgetrace_ingest_requests_total", "CoAP POSTs that reached the handler (each block counts).",
            c.requests);
    counter(f, "edgetrace_ingest_bytes_total", "Body bytes of accepted snapshots.", c.bytes);
    counter(f, "edgetrace_commits_total", "Database commits by ingest (one per group-commit batch).", c.commits);
    counter(f, "edgetrace_dtls_unknown_identity_total", "DTLS handshakes with an identity not in the database.",
            c.unknown_identity);

    head(f, "edgetrace_ingest_rejects_total", "counter", "Rejected CoAP requests by response code and reason.");
    const struct {
        const char *code, *reason;
        uint64_t v;
    } rej[] = {
        {"4.00", "bad_zstd", c.bad_zstd},
        {"4.00", "bad_cbor", c.bad_cbor},
        {"4.00", "bad_schema", c.bad_schema},
        {"4.00", "other", c.bad_request - (c.bad_zstd + c.bad_cbor + c.bad_schema <= c.bad_request
                                               ? c.bad_zstd + c.bad_cbor + c.bad_schema
                                               : c.bad_request)},
        {"4.01", "unauthenticated", c.unauthenticated},
        {"4.03", "identity_mismatch", c.identity_mismatch},
        {"4.08", "block_incomplete", c.block_incomplete},
        {"4.13", "too_large", c.too_large},
        {"4.15", "bad_format", c.bad_format},
        {"5.00", "store_error", c.store_errors - (c.store_unavailable <= c.store_errors ? c.store_unavailable : 0)},
        {"5.03", "database_unavailable", c.store_unavailable},
    };
    for (size_t i = 0; i < sizeof(rej) / sizeof(rej[0]); i++)
        fprintf(f, "edgetrace_ingest_rejects_total{code=\"%s\",reason=\"%s\"} %llu\n", rej[i].code, rej[i].reason,
                (unsigned long long)rej[i].v);

    head(f, "edgetrace_ingest_commit_latency_seconds", "histogram",
         "From the arrival of the first request of a batch to its durable commit, per snapshot.");
    uint64_t cum = 0;
    for (size_t i = 0; i < NCOMMIT; i++) {
        cum += b[i];
        fprintf(f, "edgetrace_ingest_commit_latency_seconds_bucket{le=\"%g\"} %llu\n", commit_bounds[i],
                (unsigned long long)cum);
    }
    cum += b[NCOMMIT];
    fprintf(f, "edgetrace_ingest_commit_latency_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    fprintf(f, "edgetrace_ingest_commit_latency_seconds_sum %.6f\n", ls);
    fprintf(f, "edgetrace_ingest_commit_latency_seconds_count %llu\n", (unsigned long long)lc);

    head(f, "edgetrace_dtls_sessions", "gauge", "DTLS sessions currently established.");
    fprintf(f, "edgetrace_dtls_sessions %d\n", atomic_load(&dtls_sessions));
}

static void render_http(FILE *f)
{
    head(f, "edgetrace_http_requests_total", "counter", "HTTP requests answered, by status code.");
    for (size_t i = 0; i < NCODES; i++)
        fprintf(f, "edgetrace_http_requests_total{code=\"%d\"} %llu\n", http_codes[i],
                (unsigned long long)http_by_code[i]);
    fprintf(f, "edgetrace_http_requests_total{code=\"other\"} %llu\n", (unsigned long long)http_by_code[NCODES]);
    head(f, "edgetrace_http_request_seconds_total", "counter", "Time spent answering HTTP requests.");
    fprintf(f, "edgetrace_http_request_seconds_total %.6f\n", http_seconds_sum);
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long long jint(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* The fleet gauges from store_q_gauges' document. */
static void render_fleet(FILE *f, json_t *g)
{
    char a[200], b[200];
    size_t i;
    json_t *e;
    head(f, "edgetrace_findings_open", "gauge", "Open findings by kind and confidence.");
    json_array_foreach(json_object_get(g, "open_findings"), i, e) {
        metrics_escape_label(jstr(e, "kind"), a, sizeof(a));
        metrics_escape_label(jstr(e, "confidence"), b, sizeof(b));
        fprintf(f, "edgetrace_findings_open{kind=\"%s\",confidence=\"%s\"} %lld\n", a, b, jint(e, "count"));
    }
    head(f, "edgetrace_devices_silent", "gauge", "Devices with no snapshot for 3 x their interval.");
    fprintf(f, "edgetrace_devices_silent %lld\n", jint(g, "devices_silent"));
    json_t *devs = json_object_get(g, "devices");
    head(f, "edgetrace_devices", "gauge", "Devices known to the collector.");
    fprintf(f, "edgetrace_devices %zu\n", json_array_size(devs));
    head(f, "edgetrace_device_last_seen_timestamp_seconds", "gauge",
         "Unix time of the newest snapshot received from each device.");
    json_array_foreach(devs, i, e) {
        json_t *ls = json_object_get(e, "last_seen_ms");
        if (!json_is_integer(ls))
            continue;
        metrics_escape_label(jstr(e, "id"), a, sizeof(a));
        fprintf(f, "edgetrace_device_last_seen_timestamp_seconds{device=\"%s\"} %.3f\n", a,
                (double)json_integer_value(ls) / 1000.0);
    }
    head(f, "edgetrace_database_size_bytes", "gauge", "Bytes the collector database occupies.");
    fprintf(f, "edgetrace_database_size_bytes %lld\n", jint(g, "db_bytes"));
    counter(f, "edgetrace_prune_rows_total",
            "Rows pruned or downsampled by retention (kept in the database: survives restarts).",
            (uint64_t)jint(g, "prune_rows_total"));
}

int metrics_render(coll_store *ro, int64_t now_ms, char **out, size_t *len)
{
    FILE *f = open_memstream(out, len);
    if (!f)
        return -1;
    render_ingest(f);
    render_http(f);
    /* the alert thread's counters, when it runs (alert.c publishes a copy) */
    char alerts[2048];
    int an = alert_metrics_text(alerts, sizeof alerts);
    if (an > 0 && (size_t)an < sizeof alerts)
        fwrite(alerts, 1, (size_t)an, f);
    json_t *g = NULL;
    int up = ro && store_q_gauges(ro, now_ms, &g) == STORE_Q_OK;
    head(f, "edgetrace_store_up", "gauge", "1 if the fleet gauges below could be read from the database.");
    fprintf(f, "edgetrace_store_up %d\n", up);
    if (up)
        render_fleet(f, g);
    json_decref(g);
    return fclose(f) ? -1 : 0;
}
