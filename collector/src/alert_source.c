/* alert_source.c - the alerts the store's state calls for (see alert_source.h).
 *
 * Open/cleared is the store's own finding status (store.h: open while the newest snapshot of
 * its target carries it; cleared by a newer snapshot without it). Device silence is judged on
 * the collector's clock at receipt (DEVICE last_seen_ms), so a device with a wrong clock is
 * judged by when it really last reached us. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "alert_source.h"

void alert_name_for_kind(const char *kind, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "Edgetrace");
    int up = 1;
    for (const char *p = kind; *p && o + 1 < cap; p++) {
        if (!isalnum((unsigned char)*p)) {
            up = 1;
            continue;
        }
        out[o++] = up ? (char)toupper((unsigned char)*p) : *p;
        up = 0;
    }
    out[o < cap ? o : cap - 1] = 0;
}

void alert_rfc3339(int64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

void alert_wants_free(alert_want *w, int n)
{
    for (int i = 0; i < n; i++) {
        free(w[i].labels);
        free(w[i].annotations);
    }
    free(w);
}

typedef struct wants {
    alert_want *w;
    int n, cap;
} wants;

/* Takes ownership of labels and annotations (NULL when their allocation failed); 0 or -1
 * (out of memory). */
static int push(wants *ws, const char *key, json_t *labels, json_t *ann, const char *url)
{
    int ret = -1;
    if (!labels || !ann)
        goto out;
    if (ws->n == ws->cap) {
        int nc = ws->cap ? ws->cap * 2 : 16;
        alert_want *w2 = realloc(ws->w, (size_t)nc * sizeof(*w2));
        if (!w2)
            goto out;
        ws->w = w2;
        ws->cap = nc;
    }
    alert_want *a = &ws->w[ws->n];
    memset(a, 0, sizeof(*a));
    snprintf(a->key, sizeof(a->key), "%s", key);
    snprintf(a->url, sizeof(a->url), "%s", url);
    /* Sorted keys: annotations are compared as text to decide whether they changed. */
    a->labels = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
    a->annotations = json_dumps(ann, JSON_COMPACT | JSON_SORT_KEYS);
    if (!a->labels || !a->annotations) {
        free(a->labels);
        free(a->annotations);
        goto out;
    }
    ws->n++;
    ret = 0;
out:
    json_decref(labels);
    json_decref(ann);
    return ret;
}

static const char *str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static long long num(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* The pod of a finding's target ("" if none), from the device's target list (fetched once
 * per device per evaluation, kept in cache: device -> {target id -> pod}). */
static const char *pod_of(coll_store *st, json_t *cache, const char *device, long long target)
{
    json_t *pods = json_object_get(cache, device);
    if (!pods) {
        json_t *ts = NULL;
        pods = json_object();
        if (store_q_targets(st, device, &ts) == STORE_Q_OK) {
            size_t i;
            json_t *t;
            json_array_foreach(json_object_get(ts, "targets"), i, t) {
                char id[24];
                snprintf(id, sizeof(id), "%lld", num(t, "id"));
                json_object_set_new(pods, id, json_string(str(t, "pod")));
            }
        }
        json_decref(ts);
        json_object_set_new(cache, device, pods);
    }
    char id[24];
    snprintf(id, sizeof(id), "%lld", target);
    const char *pod = json_string_value(json_object_get(pods, id));
    return pod ? pod : "";
}

static int finding_want(coll_store *st, const alert_source_conf *c, json_t *f, json_t *pods, wants *ws)
{
    const char *device = str(f, "device"), *service = str(f, "service"), *kind = str(f, "kind");
    const char *func = str(f, "function"), *conf = str(f, "confidence"), *gstate = str(f, "goroutine_state");
    long long id = num(f, "id");
    char name[64], key[128], url[512], loc[300], n[48], when[32], summary[600];
    alert_name_for_kind(kind, name, sizeof(name));
    /* The confidence is a label, so a change of it is a new alert (as a label change is a new
     * series in Prometheus): the old one resolves, the new one fires. */
    snprintf(key, sizeof(key), "finding/%lld/%s", id, conf);
    snprintf(url, sizeof(url), "%s/#/findings/%lld", c->public_url, id);
    snprintf(loc, sizeof(loc), "%s:%lld", str(f, "file"), num(f, "line"));
    json_t *labels = json_pack("{ssssssssssss}", "alertname", name, "device", device, "service", service, "kind",
                               kind, "function", func, "confidence", conf);
    /* Two replicas of one service are two alerts, not one merged by Alertmanager. */
    const char *pod = pod_of(st, pods, device, num(f, "target"));
    if (labels && pod[0])
        json_object_set_new(labels, "pod", json_string(pod));
    json_t *ann = json_object();
    if (ann) {
        json_object_set_new(ann, "location", json_string(loc));
        snprintf(n, sizeof(n), "%lld", num(f, "count"));
        json_object_set_new(ann, "count", json_string(n));
        snprintf(n, sizeof(n), "%.2f/min", json_number_value(json_object_get(f, "growth_per_min")));
        json_object_set_new(ann, "growth", json_string(n));
        alert_rfc3339(num(f, "first_seen_ms"), when, sizeof(when));
        json_object_set_new(ann, "first_seen", json_string(when));
        json_object_set_new(ann, "link", json_string(url));
        snprintf(summary, sizeof(summary), "%s (%s) in %s on %s: %s at %s%s%s", kind, conf, service, device, func, loc,
                 gstate[0] ? ", goroutines in " : "", gstate);
        json_object_set_new(ann, "summary", json_string(summary));
    }
    return push(ws, key, labels, ann, url);
}

/* Open findings at likely and confirmed. */
static int collect_findings(coll_store *st, const alert_source_conf *c, wants *ws, int *complete)
{
    static const char *const CONF[] = {"likely", "confirmed"};
    json_t *pods = json_object();
    int rc = pods ? 0 : -1;
    for (unsigned i = 0; i < 2 && !rc; i++) {
        store_finding_filter fl = {.state = "open", .confidence = CONF[i], .limit = ALERT_SOURCE_MAX};
        json_t *res = NULL;
        if (store_q_findings(st, &fl, &res) != STORE_Q_OK) {
            rc = -1;
            break;
        }
        json_t *arr = json_object_get(res, "findings"), *f;
        if (json_array_size(arr) >= ALERT_SOURCE_MAX)
            *complete = 0;
        size_t j;
        json_array_foreach(arr, j, f) {
            if ((rc = finding_want(st, c, f, pods, ws)))
                break;
        }
        json_decref(res);
    }
    json_decref(pods);
    return rc;
}

/* encodeURIComponent, as the web page's own links: a device id may hold any character. */
static void uri_component(const char *in, char *out, size_t cap)
{
    static const char HEX[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
        if (isalnum(*p) || strchr("-_.!~*'()", *p)) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = HEX[*p >> 4];
            out[o++] = HEX[*p & 15];
        }
    }
    out[o] = 0;
}

static int collect_silent(coll_store *st, const alert_source_conf *c, int64_t now, wants *ws)
{
    if (c->silent_after_ms <= 0)
        return 0;
    json_t *res = NULL, *d;
    if (store_q_devices(st, now, &res) != STORE_Q_OK)
        return -1;
    size_t i;
    int rc = 0;
    json_array_foreach(json_object_get(res, "devices"), i, d) {
        json_t *ls = json_object_get(d, "last_seen_ms");
        /* never reported: provisioned, not silent */
        if (!json_is_integer(ls) || json_integer_value(ls) <= 0 ||
            now - (int64_t)json_integer_value(ls) <= c->silent_after_ms)
            continue;
        const char *device = str(d, "id");
        char key[128], url[512], enc[200], when[32], summary[256];
        snprintf(key, sizeof(key), "silent/%s", device);
        uri_component(device, enc, sizeof(enc));
        snprintf(url, sizeof(url), "%s/#/devices/%s", c->public_url, enc);
        alert_rfc3339(json_integer_value(ls), when, sizeof(when));
        snprintf(summary, sizeof(summary), "%s has sent no snapshot since %s", device, when);
        json_t *labels = json_pack("{ssss}", "alertname", "EdgetraceDeviceSilent", "device", device);
        json_t *ann = json_pack("{ssssss}", "last_seen", when, "summary", summary, "link", url);
        if ((rc = push(ws, key, labels, ann, url)))
            break;
    }
    json_decref(res);
    return rc;
}

int alert_source_collect(coll_store *st, const alert_source_conf *c, int64_t now, alert_want **out, int *complete)
{
    wants ws = {0};
    *out = NULL;
    *complete = 1;
    if (collect_findings(st, c, &ws, complete) || collect_silent(st, c, now, &ws)) {
        alert_wants_free(ws.w, ws.n);
        return -1;
    }
    *out = ws.w;
    return ws.n;
}
