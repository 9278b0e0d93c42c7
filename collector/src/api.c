/* api.c - see api.h. Maps a parsed request onto the store's read functions and the
 * encoders (JSON via jansson, pprof, Prometheus text), and their results onto status codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "metrics.h"
#include "pprof_export.h"
#include "web_assets.h"

void api_response_free(api_response *r)
{
    if (r->body && !r->is_static)
        free(r->body);
    r->body = NULL;
}

static void set_json(api_response *out, int status, json_t *doc)
{
    out->status = status;
    out->ctype = "application/json";
    out->body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    out->len = out->body ? strlen(out->body) : 0;
    json_decref(doc);
    if (!out->body) {
        out->status = 500;
        out->body = (char *)"{\"error\":\"out of memory\"}";
        out->len = strlen(out->body);
        out->is_static = 1;
    }
}

void api_error(api_response *out, int status, const char *msg)
{
    set_json(out, status, json_pack("{s:s}", "error", msg ? msg : ""));
}

/* A store_q_* result onto the response. */
void api_from_store(api_ctx *ctx, api_response *out, int rc, json_t *doc, const char *what)
{
    char msg[200];
    switch (rc) {
    case STORE_Q_OK:
        set_json(out, 200, doc);
        return;
    case STORE_Q_NOTFOUND:
        snprintf(msg, sizeof(msg), "no such %s", what);
        api_error(out, 404, msg);
        break;
    case STORE_Q_BADARG:
        snprintf(msg, sizeof(msg), "bad parameter for %s", what);
        api_error(out, 400, msg);
        break;
    default:
        snprintf(msg, sizeof(msg), "database error: %.150s", store_errmsg(ctx->ro));
        api_error(out, 500, msg);
        break;
    }
    json_decref(doc);
}

/* ---- pprof ------------------------------------------------------------------------------- */

static int add_site(const store_site *site, void *arg)
{
    pprof_frame fr[STORE_MAX_FRAMES];
    unsigned n = site->nframes < STORE_MAX_FRAMES ? site->nframes : STORE_MAX_FRAMES;
    for (unsigned i = 0; i < n; i++)
        fr[i] = (pprof_frame){site->frames[i].function, site->frames[i].file, site->frames[i].line};
    /* A nonzero return stops the store's walk: the profile hit its limits. */
    return pprof_add_sample(arg, fr, n, site->count) != 0;
}

static void pprof_reply(api_ctx *ctx, api_response *out, const api_request *r)
{
    pprof_builder *b = pprof_new();
    if (!b) {
        api_error(out, 500, "out of memory");
        return;
    }
    int64_t snap_ms = 0;
    int rc;
    char *name = out->disposition;
    if (r->route == API_TARGET_PPROF) {
        rc = store_q_sites_at(ctx->ro, r->id, r->has_at ? r->at_ms : 0, &snap_ms, add_site, b);
        snprintf(name, sizeof(out->disposition), "goroutine-target%lld-%lld.pb.gz", (long long)r->id,
                 (long long)snap_ms);
    } else {
        rc = store_q_finding_stack(ctx->ro, r->id, add_site, b);
        snprintf(name, sizeof(out->disposition), "goroutine-finding%lld.pb.gz", (long long)r->id);
    }
    if (rc != STORE_Q_OK) {
        pprof_free(b);
        name[0] = 0;
        api_from_store(ctx, out, rc, NULL, r->route == API_TARGET_PPROF ? "target or snapshot at that time" : "finding");
        return;
    }
    uint8_t *gz;
    size_t len;
    if (pprof_finish_gz(b, snap_ms, &gz, &len)) {
        api_error(out, 500, "cannot encode the profile");
        return;
    }
    out->status = 200;
    out->ctype = "application/octet-stream";
    out->body = (char *)gz;
    out->len = len;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static void healthz(api_ctx *ctx, api_response *out)
{
    int ok = ctx->ro && store_db_schema_version(ctx->ro) > 0;
    set_json(out, ok ? 200 : 503,
             json_pack("{s:s,s:s,s:s}", "status", ok ? "ok" : "degraded", "db", ok ? "ok" : "error", "version",
                       ET_VERSION));
}

static void metrics(api_ctx *ctx, api_response *out, int64_t now_ms)
{
    char *text = NULL;
    size_t len = 0;
    if (metrics_render(ctx->ro, now_ms, &text, &len)) {
        free(text);
        api_error(out, 500, "out of memory");
        return;
    }
    out->status = 200;
    out->ctype = "text/plain; version=0.0.4; charset=utf-8";
    out->body = text;
    out->len = len;
}

/* The web page: its files are built into the binary (web_assets.h), so nothing on disk is
 * ever opened for a client-chosen path. */
static void api_page(const char *path, api_response *out)
{
    const unsigned char *data;
    size_t len;
    const char *ctype;
    if (web_asset_find(path, &data, &len, &ctype)) {
        api_error(out, 404, "no such page");
        return;
    }
    out->status = 200;
    out->ctype = ctype;
    out->body = (char *)data;
    out->len = len;
    out->is_static = 1;
}

/* A target's or finding's document (rc from its query) with its "captures" list added. */
static int with_captures(api_ctx *ctx, int rc, json_t *doc,
                         int (*list)(coll_store *, int64_t, int64_t, json_t **), int64_t id, int64_t now_ms)
{
    if (rc != STORE_Q_OK)
        return rc;
    json_t *caps = NULL;
    rc = list(ctx->ro, id, now_ms, &caps) ? -1 : STORE_Q_OK;
    json_object_set_new(doc, "captures", caps ? caps : json_array());
    return rc;
}

static const char *or_null(const char *s)
{
    return s && *s ? s : NULL;
}

void api_handle(api_ctx *ctx, const api_request *r, int64_t now_ms, api_response *out)
{
    json_t *doc = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    switch (r->route) {
    case API_HEALTHZ:
        healthz(ctx, out);
        return;
    case API_METRICS:
        metrics(ctx, out, now_ms);
        return;
    case API_DEVICES:
        rc = store_q_devices(ctx->ro, now_ms, &doc);
        api_from_store(ctx, out, rc, doc, "devices");
        return;
    case API_DEVICE:
        rc = store_q_device(ctx->ro, r->device, now_ms, &doc);
        api_from_store(ctx, out, rc, doc, "device");
        return;
    case API_DEVICE_TARGETS:
        rc = store_q_targets(ctx->ro, r->device, &doc);
        api_from_store(ctx, out, rc, doc, "device");
        return;
    case API_TARGET:
        rc = store_q_target(ctx->ro, r->id, &doc);
        rc = with_captures(ctx, rc, doc, store_q_target_captures, r->id, now_ms);
        api_from_store(ctx, out, rc, doc, "target");
        return;
    case API_TARGET_SERIES:
        rc = store_q_series(ctx->ro, r->id, r->from_ms, r->to_ms, 1000, &doc);
        api_from_store(ctx, out, rc, doc, "target");
        return;
    case API_FINDINGS: {
        store_finding_filter f = {
            .state = or_null(r->state),
            .kind = or_null(r->kind),
            .confidence = or_null(r->confidence),
            .device = or_null(r->f_device),
            .service = or_null(r->f_service),
            .limit = r->limit,
        };
        rc = store_q_findings(ctx->ro, &f, &doc);
        api_from_store(ctx, out, rc, doc, "findings filter");
        return;
    }
    case API_FINDING:
        rc = store_q_finding(ctx->ro, r->id, &doc);
        /* the captures asked for from this finding's page: its evidence */
        rc = with_captures(ctx, rc, doc, store_q_finding_captures, r->id, now_ms);
        api_from_store(ctx, out, rc, doc, "finding");
        return;
    case API_TARGET_PPROF:
    case API_FINDING_PPROF:
        pprof_reply(ctx, out, r);
        return;
    case API_PAGE:
        api_page(r->path, out);
        return;
    case API_CAPTURE:
        rc = store_q_capture(ctx->ro, r->id, now_ms, &doc);
        api_from_store(ctx, out, rc, doc, "capture");
        return;
    case API_CAPTURE_DATA:
        api_capture_data(ctx, r, out);
        return;
    case API_TARGET_CAPTURES:
        api_error(out, 405, "POST a JSON body {\"kind\":...,\"seconds\":N} here");
        return;
    case API_SETTINGS:
    case API_DEVICE_SETTINGS:
        api_settings_get(ctx, r, out);
        return;
    case API_NOT_FOUND:
    default:
        api_error(out, 404, "no such resource");
        return;
    }
}
