/* fuzz_collector_api_params.c - the HTTP API's request parsing on hostile input.
 * Input: "PATH\nk=v&k2=v2..." split the way libmicrohttpd hands the pieces over (already
 * percent-decoded, a key without '=' has a NULL value). Whatever is accepted must satisfy the
 * invariants the handlers rely on; every refusal must say why.
 * Seeds: tests/fuzz/corpus/fuzz_collector_api_params/ (one per route and parameter). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_params.h"

static void check_token(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n >= cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char *in = malloc(size + 1);
    if (!in)
        abort();
    memcpy(in, data, size);
    in[size] = 0;
    char *nl = strchr(in, '\n');
    char *query = NULL;
    if (nl) {
        *nl = 0;
        query = nl + 1;
    }
    api_request r;
    char err[160];
    err[0] = 0;
    if (api_parse_path(in, &r, err, sizeof err)) {
        if (!err[0] || r.route != API_NOT_FOUND)
            abort();
        free(in);
        return 0;
    }
    if (r.route == API_NOT_FOUND)
        abort();
    if (r.route == API_DEVICE || r.route == API_DEVICE_TARGETS) {
        check_token(r.device, sizeof r.device);
        if (!r.device[0])
            abort();
    }
    if ((r.route == API_TARGET || r.route == API_FINDING || r.route == API_TARGET_SERIES ||
         r.route == API_TARGET_PPROF || r.route == API_FINDING_PPROF) && r.id <= 0)
        abort();
    int bad = 0;
    for (char *save = NULL, *kv = query ? strtok_r(query, "&", &save) : NULL; kv && !bad;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq)
            *eq = 0;
        err[0] = 0;
        bad = api_parse_param(&r, kv, eq ? eq + 1 : NULL, err, sizeof err) != 0;
        if (bad && !err[0])
            abort();
    }
    if (!bad) {
        err[0] = 0;
        if (api_finish(&r, 1765000000000LL, err, sizeof err)) {
            if (!err[0])
                abort();
        } else {
            if (r.nparams > API_MAX_PARAMS || r.limit < 1 || r.limit > API_LIMIT_MAX)
                abort();
            if (r.route == API_TARGET_SERIES &&
                (r.from_ms < 0 || r.from_ms >= r.to_ms || r.to_ms - r.from_ms > API_SERIES_MAX_MS))
                abort();
            if (r.route == API_TARGET_PPROF && r.at_ms < 0)
                abort();
            check_token(r.state, sizeof r.state);
            check_token(r.confidence, sizeof r.confidence);
            check_token(r.kind, sizeof r.kind);
            check_token(r.f_device, sizeof r.f_device);
            check_token(r.f_service, sizeof r.f_service);
        }
    }
    free(in);
    return 0;
}
