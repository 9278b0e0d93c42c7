/* http.c - see http.h. Transport only: address, access, limits, dispatch to api.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/constant_time.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <microhttpd.h>

#include "api.h"
#include "http.h"
#include "metrics.h"

#define TOKEN_MIN 16
#define TOKEN_MAX 1024

struct http_server {
    struct MHD_Daemon *d;
    api_ctx api;
    int need_token;
    unsigned char token_sha[32];
    unsigned port;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- address ----------------------------------------------------------------------------- */

/* Splits "ADDR:PORT" / "[V6]:PORT" and resolves it into ss. 0 ok, -1 bad. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *sslen)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1])
        return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -1;
    size_t hl = (size_t)(colon - spec);
    if (hl >= sizeof(host))
        return -1;
    if (spec[0] == '[') {
        if (hl < 3 || spec[hl - 1] != ']')
            return -1;
        memcpy(host, spec + 1, hl - 2);
        host[hl - 2] = 0;
    } else {
        memcpy(host, spec, hl);
        host[hl] = 0;
    }
    struct addrinfo hints, *ai;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, NULL, &hints, &ai) || !ai)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sslen = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        return -1;
    return 0;
}

static int addr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a))
        return 1;
    /* ::ffff:127.x.y.z */
    return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
}

int http_is_loopback(const char *listen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_listen(listen, &ss, &len))
        return -1;
    return addr_is_loopback(&ss);
}

/* ---- access ------------------------------------------------------------------------------ */

static int read_token(const char *path, unsigned char sha[32], char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "http token file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    char buf[TOKEN_MAX + 2];
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && !(st.st_mode & (S_IROTH | S_IWOTH)))
        n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "http token file %s: not a regular file, unreadable, or readable by others (chmod 600)",
                 path);
        return -1;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = 0;
    if (n < TOKEN_MIN || n > TOKEN_MAX || strlen(buf) != (size_t)n) {
        snprintf(err, errlen, "http token file %s: the token must be %d..%d characters on one line", path, TOKEN_MIN,
                 TOKEN_MAX);
        return -1;
    }
    mbedtls_sha256((const unsigned char *)buf, (size_t)n, sha, 0);
    mbedtls_platform_zeroize(buf, sizeof(buf));
    return 0;
}

/* The token the client presents: "Bearer TOKEN", or HTTP Basic with TOKEN as the password. */
static int presented_token(struct MHD_Connection *c, unsigned char out[32])
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h)
        return -1;
    size_t hl = strnlen(h, 4 * TOKEN_MAX);
    if (hl > 7 && !strncasecmp(h, "Bearer ", 7)) {
        mbedtls_sha256((const unsigned char *)h + 7, hl - 7, out, 0);
        return 0;
    }
    if (hl > 6 && !strncasecmp(h, "Basic ", 6)) {
        unsigned char dec[3 * TOKEN_MAX];
        size_t n = 0;
        if (mbedtls_base64_decode(dec, sizeof(dec), &n, (const unsigned char *)h + 6, hl - 6))
            return -1;
        unsigned char *colon = memchr(dec, ':', n);
        if (!colon)
            return -1;
        mbedtls_sha256(colon + 1, n - (size_t)(colon + 1 - dec), out, 0);
        mbedtls_platform_zeroize(dec, sizeof(dec));
        return 0;
    }
    return -1;
}

static int authorized(http_server *h, struct MHD_Connection *c)
{
    if (!h->need_token)
        return 1;
    unsigned char got[32];
    if (presented_token(c, got))
        return 0;
    return mbedtls_ct_memcmp(got, h->token_sha, sizeof(got)) == 0;
}

/* ---- requests ---------------------------------------------------------------------------- */

typedef struct arg_walk {
    api_request *r;
    char err[160];
    int bad;
} arg_walk;

static enum MHD_Result on_arg(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size, const char *value,
                              size_t value_size)
{
    (void)kind;
    arg_walk *w = cls;
    /* A %00 in the query would make the C string shorter than what the client sent. */
    if (!key || strlen(key) != key_size || (value && strlen(value) != value_size)) {
        snprintf(w->err, sizeof(w->err), "NUL byte in a query parameter");
        w->bad = 1;
        return MHD_NO;
    }
    if (api_parse_param(w->r, key, value, w->err, sizeof(w->err))) {
        w->bad = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

static enum MHD_Result reply(struct MHD_Connection *c, api_response *r, double t0)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->len, r->body, r->is_static ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        api_response_free(r);
        return MHD_NO;
    }
    r->body = NULL; /* owned by the response now */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype ? r->ctype : "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (r->disposition[0]) {
        char cd[160];
        snprintf(cd, sizeof(cd), "attachment; filename=\"%s\"", r->disposition);
        MHD_add_response_header(resp, "Content-Disposition", cd);
    }
    if (r->status == 401) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"edgetrace\"");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Basic realm=\"edgetrace\"");
    }
    if (r->status == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST, PUT");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    metrics_http_observe(r->status, mono_s() - t0);
    return rc;
}

/* The one POST route: its body, bounded, collected over libmicrohttpd's calls. */
typedef struct post_req {
    api_request r;
    size_t len;
    int too_big;
    char body[API_SETTINGS_BODY_MAX]; /* the larger of the two bodies (captures, settings) */
} post_req;

static enum MHD_Result post_body(http_server *h, struct MHD_Connection *c, const char *url, const char *data,
                                 size_t *size, void *cls, double t0)
{
    (void)url;
    post_req *p = cls;
    if (*size) {
        if (p->len + *size > sizeof(p->body))
            p->too_big = 1;
        else
            memcpy(p->body + p->len, data, *size), p->len += *size;
        *size = 0;
        return MHD_YES;
    }
    api_response out;
    memset(&out, 0, sizeof(out));
    int put = p->r.route != API_TARGET_CAPTURES;
    if (p->too_big || p->len > (put ? API_SETTINGS_BODY_MAX : API_CAPTURE_BODY_MAX))
        api_error(&out, 413, put ? "body larger than 4096 bytes" : "body larger than 512 bytes");
    else if (put)
        api_settings_put(&h->api, &p->r, p->body, p->len, wall_ms(), &out);
    else
        api_capture_create(&h->api, &p->r, p->body, p->len, wall_ms(), &out);
    return reply(c, &out, t0); /* p is freed by on_completed */
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    (void)c;
    (void)toe;
    if (*req_cls && *req_cls != cls)
        free(*req_cls);
    *req_cls = NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)version;
    (void)upload_data;
    http_server *h = cls;
    double t0 = mono_s();
    api_response out;
    memset(&out, 0, sizeof(out));
    if (*req_cls && *req_cls != h)
        return post_body(h, c, url, upload_data, upload_data_size, *req_cls, t0);
    /* Answer on the first call; a body (which only the one POST route reads) is never read. */
    int is_post = !strcmp(method, MHD_HTTP_METHOD_POST);
    int is_put = !strcmp(method, MHD_HTTP_METHOD_PUT); /* central settings (api_settings.c) */
    if (*upload_data_size)
        *upload_data_size = 0;
    *req_cls = h;

    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD) && !is_post && !is_put) {
        api_error(&out, 405, "only GET and HEAD (POST to /api/targets/{id}/captures, PUT to .../settings)");
        return reply(c, &out, t0);
    }
    if (strlen(url) > API_MAX_URL) {
        api_error(&out, 414, "URL too long");
        return reply(c, &out, t0);
    }
    api_request r;
    char err[160];
    if (api_parse_path(url, &r, err, sizeof(err))) {
        api_error(&out, 404, err);
        return reply(c, &out, t0);
    }
    if (r.route != API_HEALTHZ && !authorized(h, c)) {
        api_error(&out, 401, "missing or wrong token (Authorization: Bearer TOKEN)");
        return reply(c, &out, t0);
    }
    if (is_post != (r.route == API_TARGET_CAPTURES)) {
        api_error(&out, 405, is_post ? "only GET and HEAD here" : "POST a JSON body here");
        return reply(c, &out, t0);
    }
    if (is_put && r.route != API_SETTINGS && r.route != API_DEVICE_SETTINGS) {
        api_error(&out, 405, "PUT only to /api/settings and /api/devices/{id}/settings");
        return reply(c, &out, t0);
    }
    if (is_post || is_put) {
        /* CSRF: a page on another origin can POST a form (text/plain, urlencoded) to a loopback
         * collector without preflight, never application/json; we answer no CORS preflight. */
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!ct || strncasecmp(ct, "application/json", 16) || (ct[16] && ct[16] != ';' && ct[16] != ' ')) {
            api_error(&out, 415, "Content-Type must be application/json");
            return reply(c, &out, t0);
        }
        post_req *p = calloc(1, sizeof(*p));
        if (!p) {
            api_error(&out, 500, "out of memory");
            return reply(c, &out, t0);
        }
        p->r = r;
        *req_cls = p;
        return MHD_YES; /* the body comes in the next calls (post_body) */
    }
    arg_walk w = {.r = &r};
    MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, on_arg, &w);
    int64_t now = wall_ms();
    if (w.bad || api_finish(&r, now, w.err, sizeof(w.err))) {
        api_error(&out, 400, w.err);
        return reply(c, &out, t0);
    }
    api_handle(&h->api, &r, now, &out);
    return reply(c, &out, t0);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[256];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = 0;
    fprintf(stderr, "edgetrace-collector: http: %s\n", line);
}

http_server *http_start(const http_config *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (!cfg->listen || parse_listen(cfg->listen, &ss, &sslen)) {
        snprintf(err, errlen, "http: bad address '%s' (ADDR:PORT, [V6]:PORT or off)", cfg->listen ? cfg->listen : "");
        return NULL;
    }
    http_server *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "http: out of memory");
        return NULL;
    }
    h->api.ro = cfg->ro;
    h->api.db_path = cfg->db_path;
    h->api.captures_per_hour = cfg->captures_per_hour;
    if (cfg->token_file && cfg->token_file[0]) {
        if (read_token(cfg->token_file, h->token_sha, err, errlen)) {
            free(h);
            return NULL;
        }
        h->need_token = 1;
    } else if (!addr_is_loopback(&ss)) {
        snprintf(err, errlen,
                 "http: refusing to serve on non-loopback %s without a token (set http_token_file, or --http off)",
                 cfg->listen);
        free(h);
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The logger must be the first option, or libmicrohttpd logs the earlier ones its own way. */
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)128,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errlen, "http: cannot listen on %s", cfg->listen);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : 0;
    return h;
}

void http_stop(http_server *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    free(h);
}

unsigned http_port(const http_server *h)
{
    return h->port;
}
