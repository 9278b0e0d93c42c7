/* api_params.h - the HTTP API's request parsing as pure functions: path -> route + id,
 * query parameters -> validated values. No I/O, no allocation: everything a client sends
 * lands in fixed-size fields or is refused with a message (the HTTP layer answers 400/404).
 * Fuzzed by tests/fuzz/fuzz_collector_api_params.c.
 *
 * Paths (fixed by the fleet-view contract, /work docs: README "HTTP API"):
 *   /healthz  /metrics  /  /assets/...
 *   /api/devices  /api/devices/{device}  /api/devices/{device}/targets
 *   /api/targets/{id}  /api/targets/{id}/series  /api/targets/{id}/goroutine.pb.gz
 *   /api/findings  /api/findings/{id}  /api/findings/{id}/profile.pb.gz
 *   /api/targets/{id}/captures (POST)  /api/captures/{id}  /api/captures/{id}/data
 *   /api/settings (GET, PUT)  /api/devices/{device}/settings (GET, PUT)
 * Query parameters per route (any other parameter is a 400, so a typo is never silently
 * ignored):
 *   series:          from, to (ms since the epoch; default the last 24 h)
 *   goroutine.pb.gz: at (ms; default now: the latest snapshot)
 *   findings:        state=open|cleared, kind, confidence=suspected|likely|confirmed,
 *                    device, service, limit (1..API_LIMIT_MAX, default API_LIMIT_DEFAULT)
 */
#ifndef COLL_API_PARAMS_H
#define COLL_API_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "snap.h"

#define API_MAX_PARAMS 16          /* more query parameters than this: 400 */
#define API_MAX_URL 2048           /* a longer path: 414 */
#define API_LIMIT_DEFAULT 200
#define API_LIMIT_MAX 1000   /* the store caps a list at 1000 */
#define API_SERIES_DEFAULT_MS (24LL * 3600 * 1000)
#define API_SERIES_MAX_MS (400LL * 24 * 3600 * 1000) /* a year and a bit: retention's horizon */

typedef enum api_route {
    API_NOT_FOUND = 0,
    API_HEALTHZ,
    API_METRICS,
    API_PAGE,            /* "/" and "/assets/..." (served from the embedded web assets) */
    API_DEVICES,
    API_DEVICE,
    API_DEVICE_TARGETS,
    API_TARGET,
    API_TARGET_SERIES,
    API_TARGET_PPROF,
    API_FINDINGS,
    API_FINDING,
    API_FINDING_PPROF,
    API_TARGET_CAPTURES, /* POST /api/targets/{id}/captures (api_capture.c) */
    API_CAPTURE,         /* GET /api/captures/{id} */
    API_CAPTURE_DATA,    /* GET /api/captures/{id}/data */
    API_SETTINGS,        /* GET/PUT /api/settings: the fleet's central settings (api_settings.c) */
    API_DEVICE_SETTINGS, /* GET/PUT /api/devices/{device}/settings */
} api_route;

typedef struct api_request {
    api_route route;
    const char *path;          /* the path given to api_parse_path (not copied) */
    char device[COLL_ID_MAX];  /* {device} of /api/devices/{device}... */
    int64_t id;                /* {id} of /api/targets/{id}, /api/findings/{id} */
    /* series / pprof */
    int64_t from_ms, to_ms, at_ms;
    unsigned char has_from, has_to, has_at;
    /* findings filters ("" = any) */
    char state[8];
    char kind[24];
    char confidence[16];
    char f_device[COLL_ID_MAX];
    char f_service[COLL_ID_MAX];
    int limit;
    unsigned nparams;
} api_request;

/* Classifies PATH (already percent-decoded, no query string). Fills r->route, r->device,
 * r->id. Returns 0 on a known route, -1 (r->route = API_NOT_FOUND) otherwise; err says why. */
int api_parse_path(const char *path, api_request *r, char *err, size_t errlen);

/* One query parameter (key, value may be NULL for "?key"). Returns 0, or -1 with a message
 * for a 400: unknown or repeated key, malformed or out-of-range value, too many parameters. */
int api_parse_param(api_request *r, const char *key, const char *value, char *err, size_t errlen);

/* Defaults and cross-field checks once every parameter is in (from < to, span limits).
 * now_ms: the collector's wall clock. Returns 0 or -1 with a message for a 400. */
int api_finish(api_request *r, int64_t now_ms, char *err, size_t errlen);

/* Strict decimal int64 ("-"? digits, no spaces, no overflow). 0 ok, -1 bad. */
int api_parse_i64(const char *s, int64_t *out);

#endif
