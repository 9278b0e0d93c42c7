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

/* {"error":"msg"} with STATUS. */
void api_error(api_response *out, int status, const char *msg);
void api_response_free(api_response *r);

#endif
