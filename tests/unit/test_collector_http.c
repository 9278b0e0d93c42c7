/* test_collector_http.c - the HTTP API's own layers, without the web page or real snapshots
 * (tests/integration/test_http_api.py covers those): request parsing (every 400/404 rule),
 * the pprof encoder (decoded back field by field), the Prometheus label escaping, and the
 * real libmicrohttpd server over a socket: 405/414/404/400, token refusal off loopback,
 * token files readable by others, 401 without or with a wrong token, Bearer and Basic. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "api_params.h"
#include "http.h"
#include "metrics.h"
#include "pprof_export.h"
#include "store.h"

/* ---- request parsing --------------------------------------------------------------------- */

static int parse(const char *path, const char *const *kv, api_request *r, char *err)
{
    if (api_parse_path(path, r, err, 160))
        return 404;
    for (; kv && kv[0]; kv += 2)
        if (api_parse_param(r, kv[0], kv[1], err, 160))
            return 400;
    return api_finish(r, 1765000000000LL, err, 160) ? 400 : 0;
}

static void test_params_routes(void **state)
{
    (void)state;
    api_request r;
    char err[160];
    assert_int_equal(parse("/api/devices/gw-1/targets", NULL, &r, err), 0);
    assert_int_equal(r.route, API_DEVICE_TARGETS);
    assert_string_equal(r.device, "gw-1");
    assert_int_equal(parse("/api/targets/42/series", NULL, &r, err), 0);
    assert_int_equal(r.route, API_TARGET_SERIES);
    assert_int_equal(r.id, 42);
    /* default range: the last 24 h */
    assert_int_equal(r.to_ms, 1765000000000LL);
    assert_int_equal(r.to_ms - r.from_ms, 24LL * 3600 * 1000);
    assert_int_equal(parse("/api/findings/3/profile.pb.gz", NULL, &r, err), 0);
    assert_int_equal(r.route, API_FINDING_PPROF);
    assert_int_equal(parse("/api/targets/3/goroutine.pb.gz", NULL, &r, err), 0);
    assert_int_equal(r.at_ms, 1765000000000LL);
    const char *f[] = {"state", "open", "confidence", "likely", "limit", "5", "service", "billing", NULL};
    assert_int_equal(parse("/api/findings", f, &r, err), 0);
    assert_string_equal(r.state, "open");
    assert_string_equal(r.f_service, "billing");
    assert_int_equal(r.limit, 5);
    assert_int_equal(parse("/", NULL, &r, err), 0);
    assert_int_equal(r.route, API_PAGE);

    /* unknown paths and ids that are not positive integers: 404 */
    const char *nf[] = {"/api", "/api/targets/0", "/api/targets/-3", "/api/targets/7x", "/api/targets/",
                        "/api/targets/99999999999999999999", "/api/findings/3/goroutine.pb.gz",
                        "/api/devices/", "/api/devices/gw 1", "/api/devices/gw-1/x", "/healthz/"};
    for (size_t i = 0; i < sizeof(nf) / sizeof(nf[0]); i++)
        assert_int_equal(parse(nf[i], NULL, &r, err), 404);
}

static void test_params_400(void **state)
{
    (void)state;
    api_request r;
    char err[160];
    const char *cases[][5] = {
        {"/api/targets/1/series", "from", "abc", NULL, NULL},
        {"/api/targets/1/series", "from", "", NULL, NULL},
        {"/api/targets/1/series", "from", "-5", NULL, NULL},
        {"/api/targets/1/series", "from", "1 ", NULL, NULL},
        {"/api/targets/1/series", "from", "2000", "to", "1000"},
        {"/api/targets/1/series", "from", "0", "to", "99999999999999"},   /* span over a year */
        {"/api/targets/1/series", "from", "1", "from", "2"},              /* repeated */
        {"/api/targets/1/series", "at", "1", NULL, NULL},                 /* not this route's */
        {"/api/findings", "state", "closed", NULL, NULL},
        {"/api/findings", "confidence", "high", NULL, NULL},
        {"/api/findings", "limit", "0", NULL, NULL},
        {"/api/findings", "limit", "1001", NULL, NULL},
        {"/api/findings", "device", "a b", NULL, NULL},
        {"/api/findings", "bogus", "1", NULL, NULL},
        {"/api/devices", "x", NULL, NULL, NULL},
        {"/api/targets/1/goroutine.pb.gz", "at", "1e9", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = 0;
        assert_int_equal(parse(cases[i][0], cases[i] + 1, &r, err), 400);
        assert_true(err[0] != 0);
    }
    /* the parameter count is bounded */
    assert_int_equal(api_parse_path("/api/findings", &r, err, sizeof err), 0);
    for (int i = 0; i < API_MAX_PARAMS; i++)
        r.nparams++;
    assert_int_equal(api_parse_param(&r, "state", "open", err, sizeof err), -1);
    assert_non_null(strstr(err, "too many"));
    int64_t v;
    assert_int_equal(api_parse_i64("9223372036854775807", &v), 0);
    assert_int_equal(api_parse_i64("9223372036854775808", &v), -1);
    assert_int_equal(api_parse_i64("-", &v), -1);
}

/* ---- pprof ------------------------------------------------------------------------------- */

typedef struct pb {
    const uint8_t *p, *end;
} pb;

static int pb_varint(pb *b, uint64_t *v)
{
    *v = 0;
    for (int s = 0; s < 64 && b->p < b->end; s += 7) {
        uint8_t c = *b->p++;
        *v |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80))
            return 0;
    }
    return -1;
}

/* Next field: number, wire type, varint value or sub-buffer. */
static int pb_next(pb *b, unsigned *field, uint64_t *v, pb *sub)
{
    uint64_t key;
    if (b->p >= b->end || pb_varint(b, &key))
        return -1;
    *field = (unsigned)(key >> 3);
    if ((key & 7) == 0)
        return pb_varint(b, v);
    if ((key & 7) != 2 || pb_varint(b, v) || *v > (uint64_t)(b->end - b->p))
        return -1;
    sub->p = b->p;
    sub->end = b->p + *v;
    b->p += *v;
    return 0;
}

static void test_pprof_encoding(void **state)
{
    (void)state;
    pprof_builder *b = pprof_new();
    assert_non_null(b);
    pprof_frame leak[] = {{"main.(*Pipeline).aggregate", "p/pipeline.go", 33}, {"main.main", "main.go", 10}};
    pprof_frame other[] = {{"net/http.(*conn).serve", "net/http/server.go", 2000}, {"main.main", "main.go", 10}};
    assert_int_equal(pprof_add_sample(b, leak, 2, 500), 0);
    assert_int_equal(pprof_add_sample(b, other, 2, 3), 0);
    uint8_t *gz;
    size_t gzlen;
    assert_int_equal(pprof_finish_gz(b, 1765000000000LL, &gz, &gzlen), 0);
    assert_true(gzlen > 18 && gz[0] == 0x1f && gz[1] == 0x8b); /* gzip magic */

    uint8_t raw[8192];
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = gz;
    z.avail_in = (uInt)gzlen;
    z.next_out = raw;
    z.avail_out = sizeof raw;
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    size_t rawlen = z.total_out;
    inflateEnd(&z);
    free(gz);

    pb top = {raw, raw + rawlen}, sub;
    unsigned field;
    uint64_t v;
    int samples = 0, locations = 0, functions = 0, strings = 0, sample_type = 0, period_type = 0;
    char strtab[32][64];
    uint64_t first_sample_value = 0, time_ns = 0;
    while (top.p < top.end) {
        assert_int_equal(pb_next(&top, &field, &v, &sub), 0);
        switch (field) {
        case 1: sample_type++; break;
        case 2:
            if (samples++ == 0) {
                unsigned f2;
                uint64_t v2;
                pb s2;
                while (sub.p < sub.end) {
                    assert_int_equal(pb_next(&sub, &f2, &v2, &s2), 0);
                    if (f2 == 2)
                        assert_int_equal(pb_varint(&s2, &first_sample_value), 0);
                }
            }
            break;
        case 4: locations++; break;
        case 5: functions++; break;
        case 6:
            assert_true(strings < 32 && v < 64);
            memcpy(strtab[strings], sub.p, v);
            strtab[strings++][v] = 0;
            break;
        case 9: time_ns = v; break;
        case 11: period_type++; break;
        }
    }
    assert_int_equal(sample_type, 1);
    assert_int_equal(period_type, 1);
    assert_int_equal(samples, 2);
    assert_int_equal(first_sample_value, 500);
    assert_int_equal(locations, 3);  /* main.main:10 is shared */
    assert_int_equal(functions, 3);
    assert_string_equal(strtab[0], ""); /* pprof requires string_table[0] == "" */
    int seen_goroutine = 0, seen_site = 0;
    for (int i = 0; i < strings; i++) {
        seen_goroutine |= !strcmp(strtab[i], "goroutine");
        seen_site |= !strcmp(strtab[i], "main.(*Pipeline).aggregate");
    }
    assert_true(seen_goroutine && seen_site);
    assert_int_equal(time_ns, 1765000000000ULL * 1000000ULL);
}

static void test_label_escape(void **state)
{
    (void)state;
    char out[32];
    metrics_escape_label("a\"b\\c\nd", out, sizeof out);
    assert_string_equal(out, "a\\\"b\\\\c\\nd");
    metrics_escape_label("0123456789012345678901234567890123456789", out, 8);
    assert_true(strlen(out) < 8);
}

/* ---- the server over a socket ------------------------------------------------------------ */

static char dbpath[128], tokpath[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dbpath, sizeof dbpath, "/tmp/et-http-test-%d.db", (int)getpid());
    snprintf(tokpath, sizeof tokpath, "/tmp/et-http-token-%d", (int)getpid());
    unlink(dbpath);
    char err[200];
    coll_store *s = store_open(dbpath, err, sizeof err);
    assert_non_null(s);
    store_close(s);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char p[160];
    unlink(dbpath);
    unlink(tokpath);
    snprintf(p, sizeof p, "%s-wal", dbpath);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", dbpath);
    unlink(p);
    return 0;
}

/* One request; returns the status code, the body (after the headers) into body. */
static int get(unsigned port, const char *method, const char *path, const char *headers, char *body, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[8192];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", method, path,
                     headers ? headers : "");
    assert_true(n > 0 && (size_t)n < sizeof req);
    assert_int_equal(write(fd, req, (size_t)n), n);
    static char resp[1 << 16];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
        got += (size_t)r;
    resp[got] = 0;
    close(fd);
    int code = 0;
    assert_int_equal(sscanf(resp, "HTTP/1.%*d %d", &code), 1);
    const char *b = strstr(resp, "\r\n\r\n");
    if (body)
        snprintf(body, cap, "%s", b ? b + 4 : "");
    return code;
}

static http_server *start(const char *listen, const char *token, coll_store **ro, char *err)
{
    *ro = store_open_readonly(dbpath, err, 200);
    assert_non_null(*ro);
    http_config c = {.listen = listen, .token_file = token, .ro = *ro, .db_path = dbpath};
    http_server *h = http_start(&c, err, 200);
    if (!h) {
        store_close(*ro);
        *ro = NULL;
    }
    return h;
}

static void test_server_limits(void **state)
{
    (void)state;
    coll_store *ro;
    char err[200], body[4096];
    http_server *h = start("127.0.0.1:0", NULL, &ro, err);
    assert_non_null(h);
    unsigned port = http_port(h);
    assert_true(port > 0);
    assert_int_equal(get(port, "GET", "/healthz", NULL, body, sizeof body), 200);
    assert_non_null(strstr(body, "\"status\":\"ok\""));
    assert_int_equal(get(port, "HEAD", "/healthz", NULL, body, sizeof body), 200);
    assert_int_equal(get(port, "POST", "/api/devices", "Content-Length: 0\r\n", body, sizeof body), 405);
    assert_int_equal(get(port, "DELETE", "/api/findings/1", NULL, body, sizeof body), 405);
    assert_int_equal(get(port, "GET", "/api/nothing", NULL, body, sizeof body), 404);
    assert_non_null(strstr(body, "\"error\""));
    assert_int_equal(get(port, "GET", "/api/devices", NULL, body, sizeof body), 200);
    assert_non_null(strstr(body, "\"devices\""));
    assert_int_equal(get(port, "GET", "/api/findings?state=closed", NULL, body, sizeof body), 400);
    assert_non_null(strstr(body, "state"));
    assert_int_equal(get(port, "GET", "/api/findings?limit=5%00x", NULL, body, sizeof body), 400);
    assert_int_equal(get(port, "GET", "/api/targets/12345", NULL, body, sizeof body), 404);
    assert_int_equal(get(port, "GET", "/api/findings/12345/profile.pb.gz", NULL, body, sizeof body), 404);
    char longpath[3000] = "/api/devices/";
    memset(longpath + 13, 'a', sizeof longpath - 14);
    longpath[sizeof longpath - 1] = 0;
    assert_int_equal(get(port, "GET", longpath, NULL, body, sizeof body), 414);
    /* the server answered every hostile request and still serves */
    assert_int_equal(get(port, "GET", "/metrics", NULL, body, sizeof body), 200);
    assert_non_null(strstr(body, "edgetrace_http_requests_total{code=\"405\"} 2"));
    http_stop(h);
    store_close(ro);
}

static void write_token(const char *tok, mode_t mode)
{
    FILE *f = fopen(tokpath, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", tok);
    fclose(f);
    chmod(tokpath, mode);
}

static void test_server_token(void **state)
{
    (void)state;
    coll_store *ro;
    char err[200], body[4096];
    /* off loopback without a token: refuses to start */
    assert_null(start("0.0.0.0:0", NULL, &ro, err));
    assert_non_null(strstr(err, "token"));
    assert_int_equal(http_is_loopback("127.0.0.2:80"), 1);
    assert_int_equal(http_is_loopback("[::1]:80"), 1);
    assert_int_equal(http_is_loopback("0.0.0.0:80"), 0);
    assert_int_equal(http_is_loopback("nonsense"), -1);
    /* a token file others can read is refused; so is a too-short token */
    write_token("0123456789abcdef0123", 0644);
    assert_null(start("0.0.0.0:0", tokpath, &ro, err));
    write_token("short", 0600);
    assert_null(start("0.0.0.0:0", tokpath, &ro, err));

    write_token("0123456789abcdef0123", 0600);
    http_server *h = start("0.0.0.0:0", tokpath, &ro, err);
    assert_non_null(h);
    unsigned port = http_port(h);
    assert_int_equal(get(port, "GET", "/api/devices", NULL, body, sizeof body), 401);
    assert_int_equal(get(port, "GET", "/metrics", NULL, body, sizeof body), 401);
    assert_int_equal(get(port, "GET", "/api/devices", "Authorization: Bearer 0123456789abcdef012\r\n", body,
                         sizeof body), 401);
    assert_int_equal(get(port, "GET", "/api/devices", "Authorization: Bearer 0123456789abcdef01234\r\n", body,
                         sizeof body), 401);
    assert_int_equal(get(port, "GET", "/api/devices", "Authorization: Bearer 0123456789abcdef0123\r\n", body,
                         sizeof body), 200);
    /* Basic with the token as password ("u:0123456789abcdef0123") */
    assert_int_equal(get(port, "GET", "/api/devices", "Authorization: Basic dTowMTIzNDU2Nzg5YWJjZGVmMDEyMw==\r\n",
                         body, sizeof body), 200);
    assert_int_equal(get(port, "GET", "/api/devices", "Authorization: Basic !!!!\r\n", body, sizeof body), 401);
    /* health checks stay open for load balancers */
    assert_int_equal(get(port, "GET", "/healthz", NULL, body, sizeof body), 200);
    http_stop(h);
    store_close(ro);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_routes),
        cmocka_unit_test(test_params_400),
        cmocka_unit_test(test_pprof_encoding),
        cmocka_unit_test(test_label_escape),
        cmocka_unit_test_setup_teardown(test_server_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_token, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
