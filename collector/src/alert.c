/* alert.c - the alert thread: evaluate, record, deliver, re-send (see alert.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <time.h>

#include <jansson.h>

#include "alert.h"
#include "alert_http.h"
#include "alert_outbox.h"
#include "alert_source.h"
#include "coll_log.h"

#define EVAL_MS 1000         /* how often the store's state is looked at */
#define BATCH 64             /* alerts per POST */
#define HTTP_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000

struct alert_thread {
    alert_conf c;
    char am_url[512], public_url[512];
    alert_url url;
    coll_store *st;        /* the thread's own store handle */
    alert_db *db;          /* on st's connection */
    int partial_logged;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int cancel_fd;         /* eventfd: readable once stopping, abandons an HTTP exchange */
    alert_counters n;      /* under mu */
    int failing;           /* logging: one line per outage, not per attempt */
    int leading;           /* the last store_lead answer (logged on change; 1 at start: one node says nothing) */
};

/* The copy /metrics reads (another thread): published by the alert thread, never its live
 * state. */
static pthread_mutex_t g_pub_mu = PTHREAD_MUTEX_INITIALIZER;
static alert_counters g_pub;
static int g_pub_on;

static void publish(const alert_counters *n, int on)
{
    pthread_mutex_lock(&g_pub_mu);
    g_pub = *n;
    g_pub_on = on;
    pthread_mutex_unlock(&g_pub_mu);
}

int alert_metrics_text(char *buf, size_t cap)
{
    pthread_mutex_lock(&g_pub_mu);
    alert_counters n = g_pub;
    int on = g_pub_on;
    pthread_mutex_unlock(&g_pub_mu);
    if (!on)
        return 0;
    int len = snprintf(
        buf, cap,
        "# HELP edgetrace_alerts_fired_total Alerts that started firing (findings, silent devices).\n"
        "# TYPE edgetrace_alerts_fired_total counter\n"
        "edgetrace_alerts_fired_total %llu\n"
        "# HELP edgetrace_alerts_resolved_total Firing alerts that resolved.\n"
        "# TYPE edgetrace_alerts_resolved_total counter\n"
        "edgetrace_alerts_resolved_total %llu\n"
        "# HELP edgetrace_alert_posts_total POSTs to Alertmanager by result.\n"
        "# TYPE edgetrace_alert_posts_total counter\n"
        "edgetrace_alert_posts_total{result=\"ok\"} %llu\n"
        "edgetrace_alert_posts_total{result=\"failed\"} %llu\n"
        "# HELP edgetrace_alerts_sent_total Alerts in POSTs Alertmanager accepted (changes and re-sends).\n"
        "# TYPE edgetrace_alerts_sent_total counter\n"
        "edgetrace_alerts_sent_total %llu\n"
        "# HELP edgetrace_alerts_rejected_total Alert changes Alertmanager refused (400/422), dropped.\n"
        "# TYPE edgetrace_alerts_rejected_total counter\n"
        "edgetrace_alerts_rejected_total %llu\n"
        "# HELP edgetrace_alert_evaluation_errors_total Evaluations that could not read the store.\n"
        "# TYPE edgetrace_alert_evaluation_errors_total counter\n"
        "edgetrace_alert_evaluation_errors_total %llu\n"
        "# HELP edgetrace_alert_outbox_pending Alert changes waiting for Alertmanager.\n"
        "# TYPE edgetrace_alert_outbox_pending gauge\n"
        "edgetrace_alert_outbox_pending %lld\n",
        (unsigned long long)n.fired, (unsigned long long)n.resolved, (unsigned long long)n.posts_ok,
        (unsigned long long)n.posts_failed, (unsigned long long)n.alerts_sent, (unsigned long long)n.alerts_rejected,
        (unsigned long long)n.eval_errors, (long long)(n.outbox_pending > 0 ? n.outbox_pending : 0));
    return len < 0 || (size_t)len >= cap ? -1 : len;
}

int64_t alert_parse_duration_ms(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0 || errno || v > 10LL * 365 * 24 * 3600 * 1000)
        return -1;
    long long mul = !strcmp(end, "ms") ? 1 : !*end || !strcmp(end, "s") ? 1000 : !strcmp(end, "m") ? 60000
                                                                         : !strcmp(end, "h") ? 3600000 : -1;
    return mul < 0 ? -1 : v * mul;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The JSON array Alertmanager's POST /api/v2/alerts takes. A firing alert gets
 * endsAt = now + 4 x resend: Alertmanager resolves it by itself if the collector stops
 * re-sending (Prometheus' rule). A resolved one carries the time it ended. */
char *alert_json_body(const alert_row *rows, int n, int64_t now, int64_t resend_ms)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) {
        const alert_row *r = &rows[i];
        char starts[32], ends[32];
        alert_rfc3339(r->starts_ms, starts, sizeof(starts));
        alert_rfc3339(r->ends_ms ? r->ends_ms : now + 4 * resend_ms, ends, sizeof(ends));
        json_t *labels = json_loads(r->labels, 0, NULL), *ann = json_loads(r->annotations, 0, NULL);
        json_t *a = labels && ann ? json_pack("{sOsOssssss}", "labels", labels, "annotations", ann, "startsAt", starts,
                                              "endsAt", ends, "generatorURL", r->url)
                                  : NULL;
        json_decref(labels);
        json_decref(ann);
        if (!a || json_array_append_new(arr, a)) {
            json_decref(arr);
            return NULL;
        }
    }
    char *s = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return s;
}

/* 1 = accepted, 0 = refused for good, -1 = try again later. Only 400 and 422 refuse the
 * alerts themselves (Alertmanager's validation: a retry would be refused again). Anything
 * else (5xx, 408, 429, but also 404 or 401 from a wrong URL or a proxy) is a problem of the
 * path to Alertmanager: the alerts wait until it is fixed. */
static int post(alert_thread *t, const alert_row *rows, int n)
{
    char *body = alert_json_body(rows, n, wall_ms(), t->c.resend_ms);
    if (!body)
        return -1;
    char err[256] = "";
    int status = alert_http_post(&t->url, "/api/v2/alerts", body, strlen(body), HTTP_TIMEOUT_MS, t->cancel_fd, err,
                                 sizeof(err));
    free(body);
    int ok = status >= 200 && status < 300 ? 1 : status == 400 || status == 422 ? 0 : -1;
    pthread_mutex_lock(&t->mu);
    if (ok > 0) {
        t->n.posts_ok++;
        t->n.alerts_sent += (uint64_t)n;
    } else {
        t->n.posts_failed++;
        if (!ok)
            t->n.alerts_rejected += (uint64_t)n;
    }
    pthread_mutex_unlock(&t->mu);
    if (ok < 0 && status > 0)
        snprintf(err, sizeof(err), "HTTP %d", status);
    if (ok < 0 && !t->failing)
        coll_logf("alert: Alertmanager %s not reachable (%s); alerts wait in the outbox", t->am_url, err);
    if (ok == 0)
        coll_logf("alert: Alertmanager refused %d alert(s) with %d; dropped", n, status);
    if (ok >= 0 && t->failing)
        coll_logf("alert: Alertmanager %s reachable again", t->am_url);
    t->failing = ok < 0;
    return ok;
}

static void evaluate(alert_thread *t, const alert_source_conf *sc)
{
    /* Nodes sharing a PostgreSQL database alert once for the fleet: the others leave the
     * reading, the outbox and the POSTs to the leader (store_lead), and take over if it goes. */
    int lead = store_lead(t->st);
    if (lead >= 0 && lead != t->leading)
        coll_logf(lead ? "alert: this node sends the fleet's alerts" : "alert: another node sends the fleet's alerts");
    if (lead >= 0)
        t->leading = lead;
    if (lead == 0)
        return;
    int64_t now = wall_ms();
    alert_want *w = NULL;
    int complete = 1;
    int n = alert_source_collect(t->st, sc, now, &w, &complete);
    unsigned fired = 0, resolved = 0;
    int rc = n < 0 ? -1 : alert_db_apply(t->db, w, (size_t)n, now, complete ? NULL : "finding/", &fired, &resolved);
    if (n >= 0)
        alert_wants_free(w, n);
    pthread_mutex_lock(&t->mu);
    if (rc)
        t->n.eval_errors++;
    t->n.fired += fired;
    t->n.resolved += resolved;
    pthread_mutex_unlock(&t->mu);
    if (rc)
        coll_logf("alert: evaluation failed: %s", n < 0 ? store_errmsg(t->st) : alert_db_errmsg(t->db));
    else if (fired || resolved)
        coll_logf("alert: %u alert(s) fired, %u resolved", fired, resolved);
    if (!complete && !t->partial_logged)
        coll_logf("alert: more than %d open findings per confidence: findings beyond are neither fired nor resolved",
                  ALERT_SOURCE_MAX);
    t->partial_logged = !complete;
}

/* Delivers one batch of the outbox: 1 = sent (more may wait), 0 = nothing due, -1 = failed. */
static int deliver(alert_thread *t, int64_t backoff_ms)
{
    alert_row rows[BATCH];
    memset(rows, 0, sizeof(rows));
    int64_t now = wall_ms();
    int n = alert_outbox_claim(t->db, now, rows, BATCH);
    if (n <= 0)
        return n;
    int ok = post(t, rows, n);
    int rc = ok >= 0 ? alert_outbox_done(t->db, rows, n) : alert_outbox_retry(t->db, rows, n, now + backoff_ms);
    if (rc)
        coll_logf("alert: outbox update failed: %s", alert_db_errmsg(t->db));
    alert_rows_free(rows, n);
    return ok >= 0 && !rc ? 1 : -1;
}

/* Re-sends every active alert (and those resolved lately): 0 ok, -1 failed. */
static int resend(alert_thread *t)
{
    alert_row *rows = NULL;
    int n = alert_db_active(t->db, wall_ms(), &rows);
    if (n < 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < n && !rc; i += BATCH)
        rc = post(t, rows + i, n - i < BATCH ? n - i : BATCH) < 0 ? -1 : 0;
    alert_rows_free(rows, n);
    free(rows);
    return rc;
}

static void *run(void *arg)
{
    alert_thread *t = arg;
    alert_source_conf sc = {.silent_after_ms = t->c.silent_after_ms, .public_url = t->public_url};
    int64_t next_eval = 0, next_send = 0, next_resend = 0, backoff = 0;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        pthread_mutex_unlock(&t->mu);
        int64_t now = mono_ms();
        if (now >= next_eval) {
            evaluate(t, &sc);
            next_eval = now + EVAL_MS;
        }
        if (now >= next_send) {
            int64_t bo = backoff ? backoff : BACKOFF_MIN_MS;
            int r = deliver(t, bo);
            /* The outbox goes first: a re-send must not overtake an undelivered change. */
            if (r == 0 && now >= next_resend) {
                r = resend(t) ? -1 : 0;
                if (!r)
                    next_resend = now + t->c.resend_ms;
            }
            if (r < 0) {
                backoff = bo * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : bo * 2;
                if (backoff > t->c.resend_ms)
                    backoff = t->c.resend_ms > BACKOFF_MIN_MS ? t->c.resend_ms : BACKOFF_MIN_MS;
                next_send = now + bo;
            } else {
                backoff = 0;
                next_send = r > 0 ? now : next_eval; /* more may wait: at once */
            }
        }
        int64_t pending = alert_outbox_pending(t->db);
        pthread_mutex_lock(&t->mu);
        t->n.outbox_pending = pending;
        publish(&t->n, 1);
        int64_t wake = next_eval < next_send ? next_eval : next_send, left = wake - mono_ms();
        if (left > 0 && !t->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += left / 1000;
            ts.tv_nsec += (left % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&t->cv, &t->mu, &ts);
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

alert_thread *alert_start(const alert_conf *c, char *err, size_t errlen)
{
    alert_thread *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->c = *c;
    t->leading = 1;
    snprintf(t->am_url, sizeof(t->am_url), "%s", c->alertmanager_url);
    snprintf(t->public_url, sizeof(t->public_url), "%s", c->public_url && *c->public_url ? c->public_url : "");
    for (size_t l = strlen(t->public_url); l && t->public_url[l - 1] == '/';)
        t->public_url[--l] = 0;
    if (t->c.resend_ms <= 0)
        t->c.resend_ms = 60000;
    if (alert_url_parse(c->alertmanager_url, &t->url, err, errlen) ||
        !(t->st = store_open(c->db_path, err, errlen)) || !(t->db = alert_db_open(t->st, err, errlen))) {
        store_close(t->st);
        free(t);
        return NULL;
    }
    if ((t->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        alert_db_close(t->db);
        store_close(t->st);
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    /* Signals stay with the ingest thread: SIGTERM must interrupt its poll, not ours. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&t->th, NULL, run, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        snprintf(err, errlen, "cannot start the alert thread: %s", strerror(rc));
        close(t->cancel_fd);
        alert_db_close(t->db);
        store_close(t->st);
        free(t);
        return NULL;
    }
    coll_logf("alert: sending to %s (re-send every %llds, device silent after %llds)", t->am_url,
          (long long)(t->c.resend_ms / 1000), (long long)(t->c.silent_after_ms / 1000));
    return t;
}

void alert_stop(alert_thread *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    uint64_t one = 1;
    (void)!write(t->cancel_fd, &one, sizeof(one));
    pthread_join(t->th, NULL);
    publish(&t->n, 0);
    close(t->cancel_fd);
    alert_db_close(t->db);
    store_close(t->st);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void alert_get_counters(alert_thread *t, alert_counters *out)
{
    pthread_mutex_lock(&t->mu);
    *out = t->n;
    pthread_mutex_unlock(&t->mu);
}
