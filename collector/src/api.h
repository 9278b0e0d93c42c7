/* api.h - the HTTP API's handlers: a parsed request (api_params.h) in, a response out.
 * No HTTP library here, so the handlers are tested without a socket (tests/unit). The JSON
 * comes from the store's read functions (store.h store_q_*); this layer adds the status codes,
 * the pprof encoding and the Prometheus text. */
#ifndef COLL_API_H
#define COLL_API_H

#include <stddef.h>
#include <stdint.h>

#include "api_params.h"
#include "store.h"

typedef struct api_ctx {
    coll_store *ro;          /* read-only store handle, used by one thread */
    const char *db_path;
    int captures_per_hour;   /* per device (collector.conf captures_per_hour); 0: the default */
} api_ctx;

typedef struct api_response {
    int status;
    const char *ctype;
    char *body;              /* malloc'ed unless is_static */
    size_t len;
    int is_static;
    char disposition[96];    /* Content-Disposition file name, or "" */
} api_response;

void api_handle(api_ctx *ctx, const api_request *r, int64_t now_ms, api_response *out);

/* A store_q_* result onto the response (200 + doc, 404, 400, 500); takes doc. */
void api_from_store(api_ctx *ctx, api_response *out, int rc, json_t *doc, const char *what);

/* POST /api/targets/{id}/captures with its JSON body (api_capture.c): queues a capture
 * command for the target's device; 201 {"id":N}, 400, 404, 429. */
#define API_CAPTURE_BODY_MAX 512
#define API_CAPTURE_TTL_MS (10 * 60 * 1000LL) /* a capture not picked up by then is "expired" */
#define API_CAPTURES_PER_HOUR 6               /* per device, unless configured */
/* GET /api/captures/{id}/data: the bytes as the Go service served them, as a download. */
void api_capture_data(api_ctx *ctx, const api_request *r, api_response *out);
void api_capture_create(api_ctx *ctx, const api_request *r, const char *body, size_t len, int64_t now_ms,
                        api_response *out);

/* GET/PUT /api/settings and /api/devices/{id}/settings (api_settings.c): central settings.
 * PUT {"settings": {...}} replaces the scope's set and bumps its version; 200 with the state
 * as GET returns it, 400 (err), 404 (device). */
#define API_SETTINGS_BODY_MAX 4096
void api_settings_get(api_ctx *ctx, const api_request *r, api_response *out);
void api_settings_put(api_ctx *ctx, const api_request *r, const char *body, size_t len, int64_t now_ms,
                      api_response *out);

/* {"error":"msg"} with STATUS. */
void api_error(api_response *out, int status, const char *msg);
void api_response_free(api_response *r);

#endif
