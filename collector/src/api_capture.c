/* api_capture.c - POST /api/targets/{id}/captures: an engineer asks a gateway for evidence now.
 * The body is hostile input: a JSON object with exactly "kind" and optionally "seconds" and
 * "finding", each checked; anything else is a 400. The capture is a downlink command
 * (store.h) written through a short-lived writable handle (the HTTP thread's own handle is
 * read-only), rate limited per target and per device. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "store.h"

static int parse_body(const char *body, size_t len, unsigned *kind, unsigned *seconds, int64_t *finding, char *err,
                      size_t errlen)
{
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o || !json_is_object(o)) {
        snprintf(err, errlen, "body: expected a JSON object (%s)", o ? "not an object" : je.text);
        json_decref(o);
        return -1;
    }
    const char *key;
    json_t *v;
    int rc = 0;
    *kind = 0;
    *seconds = 0;
    *finding = 0;
    json_object_foreach(o, key, v)
    {
        if (!strcmp(key, "kind") && json_is_string(v)) {
            *kind = et_cmd_kind_parse(json_string_value(v));
            if (*kind < ET_CMD_TRACE || *kind > ET_CMD_HEAP) {
                snprintf(err, errlen, "kind: one of trace, goroutine-debug2, goroutineleak, heap");
                rc = -1;
            }
        } else if (!strcmp(key, "seconds") && json_is_integer(v)) {
            json_int_t x = json_integer_value(v);
            if (x < 1 || x > ET_CMD_SECONDS_MAX) {
                snprintf(err, errlen, "seconds: 1..%d", ET_CMD_SECONDS_MAX);
                rc = -1;
            }
            *seconds = (unsigned)(x < 1 ? 0 : x);
        } else if (!strcmp(key, "finding") && json_is_integer(v) && json_integer_value(v) > 0) {
            *finding = json_integer_value(v);
        } else {
            snprintf(err, errlen, "unexpected or mistyped member \"%.40s\"", key);
            rc = -1;
        }
        if (rc)
            break;
    }
    json_decref(o);
    if (!rc && !*kind) {
        snprintf(err, errlen, "kind is required");
        rc = -1;
    }
    if (!rc && *seconds && *kind != ET_CMD_TRACE) {
        snprintf(err, errlen, "seconds only apply to a trace");
        rc = -1;
    }
    if (!rc && *kind == ET_CMD_TRACE && !*seconds)
        *seconds = ET_CMD_SECONDS_DEFAULT;
    return rc;
}

void api_capture_create(api_ctx *ctx, const api_request *r, const char *body, size_t len, int64_t now_ms,
                        api_response *out)
{
    memset(out, 0, sizeof(*out));
    unsigned kind, seconds;
    int64_t finding;
    char err[200];
    if (parse_body(body, len, &kind, &seconds, &finding, err, sizeof(err))) {
        api_error(out, 400, err);
        return;
    }
    coll_store *w = ctx->db_path ? store_open(ctx->db_path, err, sizeof(err)) : NULL;
    if (!w) {
        api_error(out, 503, "the database cannot be written now");
        return;
    }
    int64_t id = 0;
    int per_hour = ctx->captures_per_hour > 0 ? ctx->captures_per_hour : API_CAPTURES_PER_HOUR;
    int rc = store_capture_add(w, r->id, kind, seconds, finding, now_ms, API_CAPTURE_TTL_MS, per_hour, &id, err,
                               sizeof(err));
    store_close(w);
    switch (rc) {
    case STORE_Q_OK:
    {
        json_t *doc = json_pack("{s:I}", "id", (json_int_t)id);
        out->status = 201;
        out->body = doc ? json_dumps(doc, JSON_COMPACT) : NULL; /* freed with the response */
        json_decref(doc);
        if (!out->body) {
            api_error(out, 500, "out of memory");
            return;
        }
        out->len = strlen(out->body);
        out->ctype = "application/json";
        return;
    }
    case STORE_Q_NOTFOUND:
        api_error(out, 404, "no such target");
        return;
    case STORE_Q_BADARG:
        api_error(out, 400, err);
        return;
    case STORE_Q_LIMIT:
        api_error(out, 429, err);
        return;
    default:
        api_error(out, 500, "database error");
        return;
    }
}

void api_capture_data(api_ctx *ctx, const api_request *r, api_response *out)
{
    uint8_t *data;
    size_t len;
    unsigned kind = 0;
    int rc = store_capture_data(ctx->ro, r->id, &data, &len, &kind);
    if (rc != STORE_Q_OK) {
        if (rc == STORE_Q_NOTFOUND)
            api_error(out, 404, "no such capture, or no result yet");
        else
            api_error(out, 500, "database error");
        return;
    }
    /* names the tools expect: a runtime trace, a gzipped pprof proto, debug=2 text */
    static const char *const ext[] = {"", "trace", "txt", "pb.gz", "pb.gz"};
    snprintf(out->disposition, sizeof(out->disposition), "capture-%lld-%s.%s", (long long)r->id,
             et_cmd_kind_name(kind), ext[kind <= ET_CMD_HEAP ? kind : 0]);
    out->status = 200;
    out->ctype = kind == ET_CMD_GOROUTINE_DEBUG2 ? "text/plain; charset=utf-8" : "application/octet-stream";
    out->body = (char *)data;
    out->len = len;
}
