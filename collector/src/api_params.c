/* api_params.c - see api_params.h. Everything here is hostile input: bounded copies,
 * strict number parsing, an explicit list of what each route accepts. */
#include <stdio.h>
#include <string.h>

#include "api_params.h"

#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), -1)

int api_parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s)
        return -1;
    int neg = 0;
    if (*s == '-')
        neg = 1, s++;
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    /* INT64_MIN is refused on purpose: no time or id is that small, and its negation overflows. */
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

/* Printable ASCII without spaces, like the device ids ingest accepts. */
static int valid_token(const char *s, size_t n, size_t cap)
{
    if (n == 0 || n >= cap)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return 0;
    }
    return 1;
}

/* A positive row id from a path segment [s, s+n). */
static int parse_id(const char *s, size_t n, int64_t *out)
{
    char buf[24];
    if (n == 0 || n >= sizeof(buf) || *s == '-')
        return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    return api_parse_i64(buf, out) || *out <= 0 ? -1 : 0;
}

int api_parse_path(const char *path, api_request *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->limit = API_LIMIT_DEFAULT;
    r->path = path;
    if (!path || strlen(path) > API_MAX_URL)
        return ERR("path too long");
    if (!strcmp(path, "/healthz"))
        return r->route = API_HEALTHZ, 0;
    if (!strcmp(path, "/metrics"))
        return r->route = API_METRICS, 0;
    if (!strcmp(path, "/") || !strncmp(path, "/assets/", 8))
        return r->route = API_PAGE, 0;
    if (!strcmp(path, "/api/devices"))
        return r->route = API_DEVICES, 0;
    if (!strcmp(path, "/api/findings"))
        return r->route = API_FINDINGS, 0;
    if (!strcmp(path, "/api/settings"))
        return r->route = API_SETTINGS, 0;

    const char *rest, *seg, *slash;
    size_t n;
    if (!strncmp(path, "/api/devices/", 13)) {
        seg = path + 13;
        slash = strchr(seg, '/');
        n = slash ? (size_t)(slash - seg) : strlen(seg);
        rest = slash ? slash : "";
        if (!valid_token(seg, n, sizeof(r->device)))
            return ERR("bad device id");
        memcpy(r->device, seg, n);
        r->device[n] = 0;
        if (!*rest)
            return r->route = API_DEVICE, 0;
        if (!strcmp(rest, "/targets"))
            return r->route = API_DEVICE_TARGETS, 0;
        if (!strcmp(rest, "/settings"))
            return r->route = API_DEVICE_SETTINGS, 0;
        return ERR("no such resource");
    }
    int targets = !strncmp(path, "/api/targets/", 13);
    if (targets || !strncmp(path, "/api/findings/", 14)) {
        seg = path + (targets ? 13 : 14);
        slash = strchr(seg, '/');
        n = slash ? (size_t)(slash - seg) : strlen(seg);
        rest = slash ? slash : "";
        if (parse_id(seg, n, &r->id))
            return ERR("bad id '%.24s': a positive integer", seg);
        if (!*rest)
            return r->route = targets ? API_TARGET : API_FINDING, 0;
        if (targets && !strcmp(rest, "/series"))
            return r->route = API_TARGET_SERIES, 0;
        if (targets && !strcmp(rest, "/goroutine.pb.gz"))
            return r->route = API_TARGET_PPROF, 0;
        if (targets && !strcmp(rest, "/captures"))
            return r->route = API_TARGET_CAPTURES, 0;
        if (!targets && !strcmp(rest, "/profile.pb.gz"))
            return r->route = API_FINDING_PPROF, 0;
        return ERR("no such resource");
    }
    if (!strncmp(path, "/api/captures/", 14)) {
        seg = path + 14;
        slash = strchr(seg, '/');
        n = slash ? (size_t)(slash - seg) : strlen(seg);
        if (parse_id(seg, n, &r->id))
            return ERR("bad id '%.24s': a positive integer", seg);
        if (!slash)
            return r->route = API_CAPTURE, 0;
        if (!strcmp(slash, "/data"))
            return r->route = API_CAPTURE_DATA, 0;
        return ERR("no such resource");
    }
    return ERR("no such resource");
}

static int set_time(const char *key, const char *v, int64_t *dst, unsigned char *has, char *err, size_t errlen)
{
    if (*has)
        return ERR("parameter '%s' given twice", key);
    if (api_parse_i64(v, dst) || *dst < 0)
        return ERR("parameter '%s': expected milliseconds since the epoch", key);
    *has = 1;
    return 0;
}

static int set_str(const char *key, const char *v, char *dst, size_t cap, char *err, size_t errlen)
{
    if (*dst)
        return ERR("parameter '%s' given twice", key);
    if (!valid_token(v, strlen(v), cap))
        return ERR("parameter '%s': expected 1..%zu printable characters", key, cap - 1);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

static int one_of(const char *v, const char *const *allowed)
{
    for (; *allowed; allowed++)
        if (!strcmp(v, *allowed))
            return 1;
    return 0;
}

int api_parse_param(api_request *r, const char *key, const char *value, char *err, size_t errlen)
{
    static const char *const states[] = {"open", "cleared", NULL};
    static const char *const confidences[] = {"suspected", "likely", "confirmed", NULL};
    if (++r->nparams > API_MAX_PARAMS)
        return ERR("too many query parameters (at most %d)", API_MAX_PARAMS);
    if (!key || !*key)
        return ERR("empty parameter name");
    const char *v = value ? value : "";
    /* Keys are echoed in messages: clip them, they come from the client. */
    switch (r->route) {
    case API_TARGET_SERIES:
        if (!strcmp(key, "from"))
            return set_time("from", v, &r->from_ms, &r->has_from, err, errlen);
        if (!strcmp(key, "to"))
            return set_time("to", v, &r->to_ms, &r->has_to, err, errlen);
        break;
    case API_TARGET_PPROF:
        if (!strcmp(key, "at"))
            return set_time("at", v, &r->at_ms, &r->has_at, err, errlen);
        break;
    case API_FINDINGS:
        if (!strcmp(key, "state")) {
            if (!one_of(v, states))
                return ERR("parameter 'state': open or cleared");
            return set_str("state", v, r->state, sizeof(r->state), err, errlen);
        }
        if (!strcmp(key, "confidence")) {
            if (!one_of(v, confidences))
                return ERR("parameter 'confidence': suspected, likely or confirmed");
            return set_str("confidence", v, r->confidence, sizeof(r->confidence), err, errlen);
        }
        if (!strcmp(key, "kind"))
            return set_str("kind", v, r->kind, sizeof(r->kind), err, errlen);
        if (!strcmp(key, "device"))
            return set_str("device", v, r->f_device, sizeof(r->f_device), err, errlen);
        if (!strcmp(key, "service"))
            return set_str("service", v, r->f_service, sizeof(r->f_service), err, errlen);
        if (!strcmp(key, "limit")) {
            int64_t n;
            if (api_parse_i64(v, &n) || n < 1 || n > API_LIMIT_MAX)
                return ERR("parameter 'limit': 1..%d", API_LIMIT_MAX);
            r->limit = (int)n;
            return 0;
        }
        break;
    default:
        break;
    }
    return ERR("unknown parameter '%.32s'", key);
}

int api_finish(api_request *r, int64_t now_ms, char *err, size_t errlen)
{
    if (r->route == API_TARGET_SERIES) {
        if (!r->has_to)
            r->to_ms = now_ms;
        if (!r->has_from)
            r->from_ms = r->to_ms >= API_SERIES_DEFAULT_MS ? r->to_ms - API_SERIES_DEFAULT_MS : 0;
        if (r->from_ms >= r->to_ms)
            return ERR("'from' must be before 'to'");
        if (r->to_ms - r->from_ms > API_SERIES_MAX_MS)
            return ERR("range too long (at most %lld days)", API_SERIES_MAX_MS / (24LL * 3600 * 1000));
    }
    if (r->route == API_TARGET_PPROF && !r->has_at)
        r->at_ms = now_ms;
    return 0;
}
