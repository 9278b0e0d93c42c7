/* alert_source.c - the alerts the store's state calls for (see alert_source.h).
 *
 * Open/cleared comes from today's findings table: a finding is open while the newest
 * snapshot of its target carried it (findings.last_seen >= targets.last_seen), cleared
 * once a newer snapshot of the same target did not. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sqlite3.h>

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

static const char *col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

/* Takes ownership of labels and annotations (NULL when their allocation failed); 0 or -1
 * (out of memory). */
static int push(alert_want **w, int *n, int *cap, const char *key, json_t *labels, json_t *ann, const char *url)
{
    int ret = -1;
    if (!labels || !ann)
        goto out;
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        alert_want *w2 = realloc(*w, (size_t)nc * sizeof(**w));
        if (!w2)
            goto out;
        *w = w2;
        *cap = nc;
    }
    alert_want *a = &(*w)[*n];
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
    (*n)++;
    ret = 0;
out:
    json_decref(labels);
    json_decref(ann);
    return ret;
}

static int collect_findings(sqlite3 *db, const alert_source_conf *c, alert_want **w, int *n, int *cap)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT f.id, f.device, t.service, t.pod, f.kind, f.function, f.confidence, f.file, f.line,"
                           " f.count, f.growth_per_min, f.first_seen, f.state"
                           " FROM findings f JOIN targets t ON t.id = f.target"
                           " WHERE f.confidence IN ('likely','confirmed') AND f.last_seen >= t.last_seen",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        const char *device = col(st, 1), *service = col(st, 2), *pod = col(st, 3), *kind = col(st, 4);
        const char *func = col(st, 5), *conf = col(st, 6), *file = col(st, 7), *gstate = col(st, 12);
        char name[64], key[128], url[512], loc[300], num[48], when[32], summary[512];
        alert_name_for_kind(kind, name, sizeof(name));
        /* The confidence is a label, so a change of it is a new alert (as a label change
         * is a new series in Prometheus): the old one resolves, the new one fires. */
        snprintf(key, sizeof(key), "finding/%lld/%s", (long long)id, conf);
        snprintf(url, sizeof(url), "%s/#/findings/%lld", c->public_url, (long long)id);
        snprintf(loc, sizeof(loc), "%s:%d", file, sqlite3_column_int(st, 8));
        json_t *labels = json_pack("{ssssssssssss}", "alertname", name, "device", device, "service", service, "kind",
                                   kind, "function", func, "confidence", conf);
        /* Two replicas of one service are two alerts, not one. */
        if (labels && pod[0])
            json_object_set_new(labels, "pod", json_string(pod));
        json_t *ann = json_object();
        if (ann) {
            json_object_set_new(ann, "location", json_string(loc));
            snprintf(num, sizeof(num), "%lld", (long long)sqlite3_column_int64(st, 9));
            json_object_set_new(ann, "count", json_string(num));
            snprintf(num, sizeof(num), "%.2f/min", sqlite3_column_double(st, 10));
            json_object_set_new(ann, "growth", json_string(num));
            alert_rfc3339(sqlite3_column_int64(st, 11), when, sizeof(when));
            json_object_set_new(ann, "first_seen", json_string(when));
            json_object_set_new(ann, "link", json_string(url));
            snprintf(summary, sizeof(summary), "%s (%s) in %s on %s: %s at %s%s%s", kind, conf, service, device, func,
                     loc, gstate[0] ? ", goroutines in " : "", gstate);
            json_object_set_new(ann, "summary", json_string(summary));
        }
        if (push(w, n, cap, key, labels, ann, url)) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int collect_silent(sqlite3 *db, const alert_source_conf *c, int64_t now, alert_want **w, int *n, int *cap)
{
    if (c->silent_after_ms <= 0)
        return 0;
    sqlite3_stmt *st = NULL;
    /* devices.last_seen is the collector's clock at receipt, so a device with a wrong
     * clock is judged by when it really last reached us. */
    if (sqlite3_prepare_v2(db, "SELECT id, last_seen FROM devices WHERE last_seen IS NOT NULL AND last_seen < ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, now - c->silent_after_ms);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *device = col(st, 0);
        int64_t last = sqlite3_column_int64(st, 1);
        char key[128], url[512], when[32], summary[256];
        snprintf(key, sizeof(key), "silent/%s", device);
        snprintf(url, sizeof(url), "%s/#/devices/%s", c->public_url, device);
        alert_rfc3339(last, when, sizeof(when));
        snprintf(summary, sizeof(summary), "%s has sent no snapshot since %s", device, when);
        json_t *labels = json_pack("{ssss}", "alertname", "EdgetraceDeviceSilent", "device", device);
        json_t *ann = json_pack("{ssssss}", "last_seen", when, "summary", summary, "link", url);
        if (push(w, n, cap, key, labels, ann, url)) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int alert_source_collect(sqlite3 *db, const alert_source_conf *c, int64_t now, alert_want **out)
{
    alert_want *w = NULL;
    int n = 0, cap = 0;
    *out = NULL;
    if (collect_findings(db, c, &w, &n, &cap) || collect_silent(db, c, now, &w, &n, &cap)) {
        alert_wants_free(w, n);
        return -1;
    }
    *out = w;
    return n;
}
