/* test_httpc.c - the local HTTP client.
 *
 * Three layers:
 *   1. the response parser fed from memory, whole and one byte at a time;
 *   2. real sockets against a scripted server that runs in the same event loop (so a server
 *      that accepts and never answers sits beside a healthy one, as on a gateway);
 *   3. an independent implementation: Python's http.server, when /usr/bin/python3 exists. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "base.h"
#include "httpc.h"
#include "loop.h"

/* ------------------------------------------------------------------ helpers */

#define SINK_CAP (1u << 20)
typedef struct sink {
    char *buf;
    size_t len;
    size_t calls;
    size_t max_piece;
    int abort_after;  /* >0: return -1 once len exceeds this */
} sink;

static int sink_body(void *ud, const char *b, size_t n)
{
    sink *s = ud;
    s->calls++;
    if (n > s->max_piece)
        s->max_piece = n;
    size_t k = ET_MIN(n, SINK_CAP - s->len);
    memcpy(s->buf + s->len, b, k);
    s->len += n;
    if (s->abort_after > 0 && s->len > (size_t)s->abort_after)
        return -1;
    return 0;
}

static sink *sink_new(void)
{
    sink *s = calloc(1, sizeof(*s));
    s->buf = malloc(SINK_CAP);
    return s;
}

static void sink_free(sink *s)
{
    free(s->buf);
    free(s);
}

static size_t gzip_buf(const char *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t got = cap - z.avail_out;
    deflateEnd(&z);
    return got;
}

/* Deterministic pprof-like text so gzip has something realistic to chew on. */
static size_t make_text(char *out, size_t n)
{
    size_t off = 0;
    unsigned i = 0;
    while (off < n) {
        char line[96];
        int k = snprintf(line, sizeof(line), "%u @ 0x%08x 0x%08x\n#\t0x%x\tmain.worker+0x%x\t/src/w.go:%u\n", i % 97,
                         i * 2654435761u, i ^ 0x5bd1e995u, i, i % 512, 10 + i % 300);
        size_t c = ET_MIN((size_t)k, n - off);
        memcpy(out + off, line, c);
        off += c;
        i++;
    }
    return n;
}

/* ------------------------------------------------------------------ responses */

static uint8_t zarena[ET_HTTP_ZARENA] __attribute__((aligned(16)));
static char outbuf[ET_HTTP_OUT_CHUNK];

#define TEXT_N 200000
static char text[TEXT_N];
static uint8_t gz[TEXT_N];
static size_t gz_len;

/* Builds "chunked + gzip" response into dst: the pprof server behind a gzip middleware. */
static size_t build_chunked_gzip(char *dst, size_t cap)
{
    size_t off = (size_t)snprintf(dst, cap,
                                  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n");
    size_t pos = 0;
    unsigned sz = 1;
    while (pos < gz_len) {
        size_t c = ET_MIN((size_t)sz, gz_len - pos);
        off += (size_t)snprintf(dst + off, cap - off, "%zx;ext=1\r\n", c);
        memcpy(dst + off, gz + pos, c);
        off += c;
        memcpy(dst + off, "\r\n", 2);
        off += 2;
        pos += c;
        sz = sz * 3 + 7; /* varied chunk sizes, some tiny */
    }
    off += (size_t)snprintf(dst + off, cap - off, "0\r\nX-Trailer: yes\r\n\r\n");
    return off;
}

static size_t build_cl(char *dst, size_t cap, const char *body, size_t n)
{
    size_t off = (size_t)snprintf(dst, cap, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nX-Long: %0900d\r\n\r\n", n, 7);
    memcpy(dst + off, body, n);
    return off + n;
}

static size_t build_close(char *dst, size_t cap, const char *body, size_t n)
{
    size_t off = (size_t)snprintf(dst, cap, "HTTP/1.0 200 OK\r\nServer: old\r\n\r\n");
    memcpy(dst + off, body, n);
    return off + n;
}

static void setup_bodies(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    make_text(text, TEXT_N);
    gz_len = gzip_buf(text, TEXT_N, gz, sizeof(gz));
}

/* ------------------------------------------------------------------ parser tests */

typedef struct feed_out {
    int rc;
    int err;
    int status;
    char msg[ET_HTTP_MSG_MAX];
} feed_out;

/* Feeds resp in pieces of `step` bytes (0 = all at once); eof after if the parser still wants. */
static feed_out feed(const char *resp, size_t n, size_t step, uint64_t max_body, int gunzip, sink *s)
{
    et_http_parser p;
    et_http_parser_init(&p, zarena, outbuf, max_body, 16384, gunzip, sink_body, s);
    feed_out o = { 0, 0, 0, "" };
    size_t i = 0;
    if (step == 0)
        step = n ? n : 1;
    while (i < n && o.rc == 0) {
        size_t k = ET_MIN(step, n - i);
        o.rc = et_http_parser_feed(&p, resp + i, k);
        i += k;
    }
    if (o.rc == 0)
        o.rc = et_http_parser_eof(&p);
    o.err = p.err;
    o.status = p.status;
    et_strlcpy(o.msg, p.msg, sizeof(o.msg));
    et_http_parser_release(&p);
    return o;
}

static char resp[2 * TEXT_N + 65536];

static void test_parser_bodies(void **state)
{
    (void)state;
    setup_bodies();
    static const size_t steps[] = { 0, 1, 7, 4096 };
    for (unsigned si = 0; si < ET_ARRAY_LEN(steps); si++) {
        /* Content-Length, with a long header we do not parse. */
        size_t n = build_cl(resp, sizeof(resp), text, 50000);
        sink *s = sink_new();
        feed_out o = feed(resp, n, steps[si], 1 << 20, 0, s);
        assert_int_equal(o.rc, 1);
        assert_int_equal(o.err, 0);
        assert_int_equal(o.status, 200);
        assert_int_equal(s->len, 50000);
        assert_memory_equal(s->buf, text, 50000);
        assert_true(s->max_piece <= ET_HTTP_OUT_CHUNK);
        sink_free(s);

        /* chunked + gzip, with chunk extensions and trailers */
        n = build_chunked_gzip(resp, sizeof(resp));
        s = sink_new();
        o = feed(resp, n, steps[si], 1 << 20, 0, s);
        assert_int_equal(o.rc, 1);
        assert_int_equal(o.err, 0);
        assert_int_equal(s->len, TEXT_N);
        assert_memory_equal(s->buf, text, TEXT_N);
        assert_true(s->max_piece <= ET_HTTP_OUT_CHUNK);
        sink_free(s);

        /* read-to-close (HTTP/1.0, no length) */
        n = build_close(resp, sizeof(resp), text, 3000);
        s = sink_new();
        o = feed(resp, n, steps[si], 1 << 20, 0, s);
        assert_int_equal(o.rc, 1);
        assert_int_equal(o.err, 0);
        assert_int_equal(s->len, 3000);
        sink_free(s);

        /* gzip body without Content-Encoding (pprof proto), inflated only when asked */
        n = build_cl(resp, sizeof(resp), (const char *)gz, gz_len);
        s = sink_new();
        o = feed(resp, n, steps[si], 1 << 20, 1, s);
        assert_int_equal(o.err, 0);
        assert_int_equal(s->len, TEXT_N);
        sink_free(s);
        s = sink_new();
        o = feed(resp, n, steps[si], 1 << 20, 0, s);
        assert_int_equal(o.err, 0);
        assert_int_equal(s->len, gz_len);
        sink_free(s);
    }
}

static void test_parser_errors(void **state)
{
    (void)state;
    setup_bodies();
    sink *s = sink_new();
    feed_out o;

    const char *r404 = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n\r\n404 page not found\n";
    o = feed(r404, strlen(r404), 1, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_ENOTFOUND);
    assert_int_equal(o.status, 404);
    assert_non_null(strstr(o.msg, "404 page not found"));
    assert_int_equal(s->len, 0); /* error bodies never reach the consumer */

    const char *r500 = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 54\r\n\r\n"
                       "Could not enable tracing: tracing is already enabled\r\n";
    o = feed(r500, strlen(r500), 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_ESTATUS);
    assert_non_null(strstr(o.msg, "HTTP 500"));
    assert_non_null(strstr(o.msg, "tracing is already enabled"));

    const char *garbage = "SSH-2.0-OpenSSH_9.2\r\n";
    o = feed(garbage, strlen(garbage), 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_EPROTO);
    /* rejected on the first wrong byte, without waiting for a newline */
    o = feed("\x16\x03\x01", 3, 0, 1 << 20, 0, s);
    assert_int_equal(o.rc, -1);
    assert_int_equal(o.err, ET_HTTP_EPROTO);

    const char *html = "<html><body>Not HTTP</body></html>";
    o = feed(html, strlen(html), 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_EPROTO);

    const char *badcode = "HTTP/1.1 2x0 OK\r\n\r\n";
    o = feed(badcode, strlen(badcode), 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_EPROTO);

    const char *conflict = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
    o = feed(conflict, strlen(conflict), 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_EPROTO);

    const char *badchunk = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    o = feed(badchunk, strlen(badchunk), 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_EPROTO);

    const char *hugechunk = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n";
    o = feed(hugechunk, strlen(hugechunk), 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_EPROTO);

    const char *br = "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\nxx";
    o = feed(br, strlen(br), 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_EPROTO);

    const char *trunc = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this";
    o = feed(trunc, strlen(trunc), 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_ETRUNCATED);
    assert_non_null(strstr(o.msg, "9 of 100"));

    o = feed("", 0, 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_ETRUNCATED);

    static const char badgz[] = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 12\r\n\r\n\x1f\x8b\x08\x00garbage!";
    o = feed(badgz, sizeof(badgz) - 1, 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_EGZIP);

    /* gzip cut short: complete HTTP framing, incomplete gzip stream */
    size_t hl = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n",
                                 gz_len / 2);
    memcpy(resp + hl, gz, gz_len / 2);
    o = feed(resp, hl + gz_len / 2, 0, 1 << 20, 0, s);
    if (o.err != ET_HTTP_EGZIP)
        print_message("gz cut: %s\n", o.msg);
    assert_int_equal(o.err, ET_HTTP_EGZIP);

    /* header cap */
    size_t off = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 400; i++)
        off += (size_t)snprintf(resp + off, sizeof(resp) - off, "X-Filler-%d: %060d\r\n", i, i);
    o = feed(resp, off, 0, 1 << 20, 0, s);
    assert_int_equal(o.err, ET_HTTP_EHDRSIZE);

    /* body caps: declared length, streamed (close-delimited), and inflated (gzip bomb-ish) */
    size_t n = build_cl(resp, sizeof(resp), text, 50000);
    o = feed(resp, n, 0, 10000, 0, s);
    assert_int_equal(o.err, ET_HTTP_EBODYSIZE);
    n = build_close(resp, sizeof(resp), text, 50000);
    o = feed(resp, n, 0, 10000, 0, s);
    assert_int_equal(o.err, ET_HTTP_EBODYSIZE);
    n = build_chunked_gzip(resp, sizeof(resp));
    o = feed(resp, n, 0, 10000, 0, s);
    assert_int_equal(o.err, ET_HTTP_EBODYSIZE);

    /* consumer abort */
    sink *ab = sink_new();
    ab->abort_after = 100;
    n = build_cl(resp, sizeof(resp), text, 50000);
    o = feed(resp, n, 0, 1 << 20, 0, ab);
    assert_int_equal(o.err, ET_HTTP_EABORTED);
    sink_free(ab);
    sink_free(s);
}

static void test_parser_interim_and_empty(void **state)
{
    (void)state;
    sink *s = sink_new();
    const char *cont = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    feed_out o = feed(cont, strlen(cont), 1, 1 << 20, 0, s);
    assert_int_equal(o.err, 0);
    assert_int_equal(o.status, 200);
    assert_int_equal(s->len, 2);
    const char *egz = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 0\r\n\r\n";
    o = feed(egz, strlen(egz), 0, 1 << 20, 0, s);
    assert_int_equal(o.rc, 1);
    assert_int_equal(o.err, 0);
    const char *nc = "HTTP/1.1 204 No Content\r\n\r\n";
    o = feed(nc, strlen(nc), 0, 1 << 20, 0, s);
    assert_int_equal(o.rc, 1);
    assert_int_equal(o.err, 0);
    /* a bare-LF server and case-insensitive header names */
    const char *lf = "HTTP/1.1 200 OK\ncontent-LENGTH: 3\ntransfer-encoding: identity, chunked\n\n3\nabc\n0\n\n";
    s->len = 0;
    o = feed(lf, strlen(lf), 0, 1 << 20, 0, s);
    assert_int_equal(o.err, 0);
    assert_int_equal(s->len, 3);
    assert_memory_equal(s->buf, "abc", 3);
    sink_free(s);
}

static void test_url(void **state)
{
    (void)state;
    et_url u;
    assert_int_equal(et_url_parse("http://127.0.0.1:6060/debug/pprof/goroutine?debug=1", &u), 0);
    assert_int_equal(u.family, AF_INET);
    assert_int_equal(u.port, 6060);
    assert_string_equal(u.path, "/debug/pprof/goroutine?debug=1");
    assert_int_equal(et_url_parse("http://localhost", &u), 0);
    assert_int_equal(u.port, 80);
    assert_string_equal(u.path, "/");
    assert_int_equal(u.addr[0], 127);
    assert_int_equal(et_url_parse("HTTP://[::1]:8080?x=1#frag", &u), 0);
    assert_int_equal(u.family, AF_INET6);
    assert_int_equal(u.addr[15], 1);
    assert_string_equal(u.path, "/?x=1");
    assert_int_equal(et_url_parse("https://127.0.0.1/", &u), -1);
    assert_int_equal(et_url_parse("http://example.com/", &u), -1); /* no DNS, by design */
    assert_int_equal(et_url_parse("http://127.0.0.1:0/", &u), -1);
    assert_int_equal(et_url_parse("http://127.0.0.1:65536/", &u), -1);
    assert_int_equal(et_url_parse("http://127.0.0.1:80x/", &u), -1);
    assert_int_equal(et_url_parse("http://[::1/", &u), -1);
    assert_int_equal(et_url_parse("http:///x", &u), -1);
    assert_int_equal(et_url_parse("http://127.0.0.1/a b", &u), -1);
    assert_int_equal(et_url_parse("http://127.0.0.1/a\r\nX: y", &u), -1);
    assert_int_equal(et_url_parse(NULL, &u), -1);
}

/* ------------------------------------------------------------------ scripted server */

typedef struct srv_conn {
    int fd;
    char req[2048];
    size_t reqlen;
    const char *out;
    size_t outlen, outoff;
    int hold; /* keep open after sending (for a truncated response that then hangs) */
    et_timer_id trickle;  /* sends a few bytes per tick instead of all at once */
    void *srv;
} srv_conn;

typedef struct server {
    et_loop *l;
    int lfd;
    uint16_t port;
    int silent;          /* 1: accept, never read, never answer; 2: accept and close at once */
    srv_conn conns[8];
    int accepted;
} server;

typedef struct route {
    const char *path;
    const char *data;
    size_t len;
} route;

static char last_req[2048]; /* the most recent complete request, for header checks */
static route routes[16];
static unsigned nroutes;
static char *route_bufs[16];

static void add_route(const char *path, const char *data, size_t len)
{
    char *b = malloc(len ? len : 1);
    memcpy(b, data, len);
    route_bufs[nroutes] = b;
    routes[nroutes++] = (route){ path, b, len };
}

static void conn_close(server *s, srv_conn *c)
{
    if (c->trickle)
        et_loop_cancel_timer(s->l, c->trickle);
    c->trickle = 0;
    et_loop_unwatch(s->l, c->fd);
    close(c->fd);
    c->fd = -1;
}

static void trickle_tick(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    srv_conn *c = ud;
    size_t k = ET_MIN(c->outlen - c->outoff, (size_t)4);
    ssize_t n = send(c->fd, c->out + c->outoff, k, MSG_NOSIGNAL);
    if (n > 0)
        c->outoff += (size_t)n;
    if (n < 0 || c->outoff == c->outlen)
        conn_close(c->srv, c);
}

static void srv_conn_io(et_loop *l, int fd, unsigned ev, void *ud)
{
    server *s = ud;
    srv_conn *c = NULL;
    for (unsigned i = 0; i < ET_ARRAY_LEN(s->conns); i++)
        if (s->conns[i].fd == fd)
            c = &s->conns[i];
    if (!c)
        return;
    if (!c->out) {
        ssize_t n = read(fd, c->req + c->reqlen, sizeof(c->req) - 1 - c->reqlen);
        if (n <= 0) {
            conn_close(s, c);
            return;
        }
        c->reqlen += (size_t)n;
        c->req[c->reqlen] = 0;
        if (!strstr(c->req, "\r\n\r\n"))
            return;
        char path[256] = "";
        et_strlcpy(last_req, c->req, sizeof(last_req));
        sscanf(c->req, "GET %255s", path);
        c->out = "HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\n404 page not found\n";
        c->outlen = strlen(c->out);
        for (unsigned i = 0; i < nroutes; i++)
            if (!strcmp(routes[i].path, path)) {
                c->out = routes[i].data;
                c->outlen = routes[i].len;
            }
        c->hold = !strcmp(path, "/dies-hangs");
        if (!strcmp(path, "/trickle")) {
            c->out = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nslow but ok";
            c->outlen = strlen(c->out);
            c->srv = s;
            et_loop_set_events(l, fd, 0);
            c->trickle = et_loop_add_timer(l, 60, 60, trickle_tick, c);
            return;
        }
        et_loop_set_events(l, fd, ET_EV_WRITE);
        return;
    }
    if (ev & ET_EV_WRITE) {
        /* Small writes so the client sees many partial reads. */
        size_t k = ET_MIN(c->outlen - c->outoff, (size_t)1500);
        ssize_t n = send(fd, c->out + c->outoff, k, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN)
                conn_close(s, c);
            return;
        }
        c->outoff += (size_t)n;
        if (c->outoff == c->outlen) {
            if (c->hold)
                et_loop_set_events(l, fd, 0);
            else
                conn_close(s, c);
        }
    }
}

static void srv_accept(et_loop *l, int fd, unsigned ev, void *ud)
{
    (void)ev;
    server *s = ud;
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    s->accepted++;
    if (s->silent == 2) {
        close(cfd);
        return;
    }
    for (unsigned i = 0; i < ET_ARRAY_LEN(s->conns); i++) {
        if (s->conns[i].fd < 0) {
            memset(&s->conns[i], 0, sizeof(s->conns[i]));
            s->conns[i].fd = cfd;
            if (!s->silent)
                et_loop_watch(l, cfd, ET_EV_READ, srv_conn_io, s);
            return;
        }
    }
    close(cfd);
}

/* Returns 0, or -1 if the family is unavailable (IPv6 disabled in a container). */
static int server_start_family(server *s, et_loop *l, int silent, int family)
{
    memset(s, 0, sizeof(*s));
    for (unsigned i = 0; i < ET_ARRAY_LEN(s->conns); i++)
        s->conns[i].fd = -1;
    s->l = l;
    s->silent = silent;
    s->lfd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0 && family == AF_INET6)
        return -1;
    assert_true(s->lfd >= 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t al;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        al = sizeof(*a);
    } else {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_addr = in6addr_loopback;
        al = sizeof(*a6);
    }
    if (bind(s->lfd, (struct sockaddr *)&ss, al) != 0) {
        assert_int_equal(family, AF_INET6);
        close(s->lfd);
        return -1;
    }
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&ss, &al), 0);
    s->port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port);
    assert_int_equal(listen(s->lfd, 16), 0);
    assert_int_equal(et_loop_watch(l, s->lfd, ET_EV_READ, srv_accept, s), 0);
    return 0;
}

static void server_start(server *s, et_loop *l, int silent)
{
    server_start_family(s, l, silent, AF_INET);
}

static void server_stop(server *s)
{
    for (unsigned i = 0; i < ET_ARRAY_LEN(s->conns); i++)
        if (s->conns[i].fd >= 0) {
            et_loop_unwatch(s->l, s->conns[i].fd);
            close(s->conns[i].fd);
        }
    et_loop_unwatch(s->l, s->lfd);
    close(s->lfd);
}

typedef struct call {
    sink *s;
    et_http_result r;
    int done;
    uint64_t done_at;
    int *pending;
    et_loop *l;
} call;

static void call_done(void *ud, const et_http_result *r)
{
    call *c = ud;
    c->r = *r;
    c->done = 1;
    c->done_at = et_now_mono_ms();
    if (--*c->pending == 0)
        et_loop_stop(c->l);
}

static int call_body(void *ud, const char *b, size_t n)
{
    call *c = ud;
    return sink_body(c->s, b, n);
}

static void start(et_httpc *h, et_loop *l, call *c, int *pending, uint16_t port, const char *path,
                  const et_http_opts *o)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)port, path);
    memset(c, 0, sizeof(*c));
    c->s = sink_new();
    c->pending = pending;
    c->l = l;
    int id = et_http_get(h, url, o, call_body, call_done, c);
    assert_true(id > 0);
    (*pending)++;
}

static void setup_routes(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    setup_bodies();
    size_t n = build_cl(resp, sizeof(resp), text, 100000);
    add_route("/cl", resp, n);
    n = build_chunked_gzip(resp, sizeof(resp));
    add_route("/chunked-gzip", resp, n);
    n = build_close(resp, sizeof(resp), text, 70000);
    add_route("/close", resp, n);
    const char *g = "220 smtp.example ESMTP ready\r\n";
    add_route("/garbage", g, strlen(g));
    n = build_close(resp, sizeof(resp), text, 150000);
    add_route("/big", resp, n);
    const char *d = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\npartial";
    add_route("/dies", d, strlen(d));
    add_route("/dies-hangs", d, strlen(d));
    const char *t = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    "Content-Length: 53\r\n\r\nCould not enable tracing: tracing is already enabled\n";
    add_route("/debug/pprof/trace", t, strlen(t));
}

static void test_sockets_all_kinds(void **state)
{
    (void)state;
    setup_routes();
    et_loop *l = et_loop_create(32, 32);
    server srv;
    server_start(&srv, l, 0);
    et_httpc *h = et_httpc_create(l, 8);
    assert_non_null(h);
    et_http_opts o;
    et_http_opts_default(&o);
    o.idle_timeout_ms = 1000;
    int pending = 0;
    call c[8];
    start(h, l, &c[0], &pending, srv.port, "/cl", &o);
    start(h, l, &c[1], &pending, srv.port, "/chunked-gzip", &o);
    start(h, l, &c[2], &pending, srv.port, "/close", &o);
    start(h, l, &c[3], &pending, srv.port, "/debug/pprof/goroutineleak?debug=1", &o);
    start(h, l, &c[4], &pending, srv.port, "/garbage", &o);
    start(h, l, &c[5], &pending, srv.port, "/dies", &o);
    start(h, l, &c[6], &pending, srv.port, "/debug/pprof/trace", &o);
    et_http_opts small = o;
    small.max_body = 64 * 1024;
    start(h, l, &c[7], &pending, srv.port, "/big", &small);
    assert_int_equal(et_httpc_in_flight(h), 8);
    /* A ninth is refused, not queued: the pool is fixed. */
    assert_int_equal(et_http_get(h, "http://127.0.0.1:1/", &o, NULL, NULL, NULL), -ET_HTTP_EBUSY);
    assert_int_equal(et_loop_run(l), 0);
    assert_int_equal(pending, 0);

    assert_int_equal(c[0].r.err, 0);
    assert_int_equal(c[0].r.status, 200);
    assert_int_equal(c[0].s->len, 100000);
    assert_memory_equal(c[0].s->buf, text, 100000);
    assert_int_equal(c[0].r.bytes_body, 100000);
    assert_true(c[0].r.bytes_wire > 100000);
    assert_true(c[0].r.ttfb_ms <= c[0].r.elapsed_ms);

    assert_int_equal(c[1].r.err, 0);
    assert_int_equal(c[1].s->len, TEXT_N);
    assert_memory_equal(c[1].s->buf, text, TEXT_N);
    assert_true(c[1].r.bytes_wire < c[1].r.bytes_body); /* gzip paid off on the wire */

    assert_int_equal(c[2].r.err, 0);
    assert_int_equal(c[2].s->len, 70000);

    assert_int_equal(c[3].r.err, ET_HTTP_ENOTFOUND);
    assert_int_equal(c[3].r.status, 404);
    assert_int_equal(c[3].s->len, 0);

    assert_int_equal(c[4].r.err, ET_HTTP_EPROTO);
    assert_int_equal(c[5].r.err, ET_HTTP_ETRUNCATED);
    assert_int_equal(c[6].r.err, ET_HTTP_ESTATUS);
    assert_int_equal(c[6].r.status, 500);
    assert_non_null(strstr(c[6].r.msg, "tracing is already enabled"));
    assert_int_equal(c[7].r.err, ET_HTTP_EBODYSIZE);
    assert_true(c[7].s->len <= 64 * 1024);

    for (int i = 0; i < 8; i++)
        sink_free(c[i].s);
    et_httpc_destroy(h);
    server_stop(&srv);
    assert_int_equal(et_loop_fd_count(l), 0);
    assert_int_equal(et_loop_timer_count(l), 0);
    et_loop_destroy(l);
}

/* The gateway case the issue names: one service accepts and never answers. The others must
 * complete at their own pace and the silent one must end with a clear timeout. */
static void test_silent_server_does_not_stall_others(void **state)
{
    (void)state;
    setup_routes();
    et_loop *l = et_loop_create(32, 32);
    server good, silent;
    server_start(&good, l, 0);
    server_start(&silent, l, 1);
    et_httpc *h = et_httpc_create(l, 4);
    et_http_opts o;
    et_http_opts_default(&o);
    o.idle_timeout_ms = 400;
    int pending = 0;
    call stuck, ok1, ok2, hang;
    start(h, l, &stuck, &pending, silent.port, "/debug/pprof/goroutine?debug=1", &o);
    start(h, l, &hang, &pending, good.port, "/dies-hangs", &o); /* sends a bit, then silence */
    start(h, l, &ok1, &pending, good.port, "/chunked-gzip", &o);
    start(h, l, &ok2, &pending, good.port, "/cl", &o);
    assert_int_equal(et_loop_run(l), 0);
    assert_int_equal(silent.accepted, 1);
    assert_int_equal(ok1.r.err, 0);
    assert_int_equal(ok2.r.err, 0);
    assert_true(ok1.done_at < stuck.done_at);
    assert_true(ok2.done_at < stuck.done_at);
    assert_true(ok1.r.elapsed_ms < o.idle_timeout_ms); /* not held back by the silent peer */
    assert_int_equal(stuck.r.err, ET_HTTP_EIDLE);
    assert_non_null(strstr(stuck.r.msg, "never answered"));
    assert_true(stuck.r.elapsed_ms >= 390 && stuck.r.elapsed_ms < 2000);
    assert_int_equal(stuck.r.status, 0);
    assert_int_equal(hang.r.err, ET_HTTP_EIDLE);
    assert_non_null(strstr(hang.r.msg, "mid-response"));
    assert_int_equal(hang.r.status, 200);

    /* Total deadline beats a trickle that keeps the idle timer happy: set total < idle. */
    et_http_opts d = o;
    d.total_timeout_ms = 150;
    d.idle_timeout_ms = 10000;
    call dl;
    start(h, l, &dl, &pending, silent.port, "/", &d);
    assert_int_equal(et_loop_run(l), 0);
    assert_int_equal(dl.r.err, ET_HTTP_EDEADLINE);

    /* Cancel: on_done runs with ECANCELED before et_http_cancel returns. */
    call cc;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", (unsigned)silent.port);
    memset(&cc, 0, sizeof(cc));
    cc.s = sink_new();
    cc.pending = &pending;
    cc.l = l;
    pending++;
    int id = et_http_get(h, url, &o, call_body, call_done, &cc);
    assert_true(id > 0);
    et_http_cancel(h, id);
    assert_int_equal(cc.done, 1);
    assert_int_equal(cc.r.err, ET_HTTP_ECANCELED);

    sink_free(stuck.s);
    sink_free(ok1.s);
    sink_free(ok2.s);
    sink_free(hang.s);
    sink_free(dl.s);
    sink_free(cc.s);
    et_httpc_destroy(h);
    server_stop(&good);
    server_stop(&silent);
    et_loop_destroy(l);
}

/* A trickling server stays within the idle timeout although the whole response takes much
 * longer than it; a server that closes at once gets a clear error. */
static void test_trickle_and_instant_close(void **state)
{
    (void)state;
    setup_routes();
    et_loop *l = et_loop_create(16, 16);
    server good, closer;
    server_start(&good, l, 0);
    server_start(&closer, l, 2);
    et_httpc *h = et_httpc_create(l, 4);
    et_http_opts o;
    et_http_opts_default(&o);
    o.idle_timeout_ms = 250;
    int pending = 0;
    call tr, cl;
    start(h, l, &tr, &pending, good.port, "/trickle", &o);
    start(h, l, &cl, &pending, closer.port, "/debug/pprof/", &o);
    assert_int_equal(et_loop_run(l), 0);
    assert_int_equal(tr.r.err, 0);
    assert_int_equal(tr.s->len, 11);
    assert_memory_equal(tr.s->buf, "slow but ok", 11);
    assert_true(tr.r.elapsed_ms >= 500); /* twice the idle timeout, yet no timeout */
    assert_true(cl.r.err == ET_HTTP_ETRUNCATED || cl.r.err == ET_HTTP_ECONNREFUSED || cl.r.err == ET_HTTP_EIO);
    assert_int_equal(cl.r.status, 0);
    sink_free(tr.s);
    sink_free(cl.s);
    et_httpc_destroy(h);
    server_stop(&good);
    server_stop(&closer);
    et_loop_destroy(l);
}

static void test_ipv6_literal(void **state)
{
    (void)state;
    setup_routes();
    et_loop *l = et_loop_create(8, 8);
    server srv;
    if (server_start_family(&srv, l, 0, AF_INET6) < 0) {
        et_loop_destroy(l);
        skip();
        return;
    }
    et_httpc *h = et_httpc_create(l, 2);
    char url[64];
    snprintf(url, sizeof(url), "http://[::1]:%u/chunked-gzip", (unsigned)srv.port);
    call c;
    int pending = 1;
    memset(&c, 0, sizeof(c));
    c.s = sink_new();
    c.pending = &pending;
    c.l = l;
    assert_true(et_http_get(h, url, NULL, call_body, call_done, &c) > 0);
    assert_int_equal(et_loop_run(l), 0);
    assert_int_equal(c.r.err, 0);
    assert_int_equal(c.s->len, TEXT_N);
    assert_memory_equal(c.s->buf, text, TEXT_N);
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: [::1]:%u\r\n", (unsigned)srv.port);
    assert_non_null(strstr(last_req, host));
    assert_non_null(strstr(last_req, "GET /chunked-gzip HTTP/1.1\r\n"));
    assert_non_null(strstr(last_req, "Accept-Encoding: gzip\r\n"));
    assert_non_null(strstr(last_req, "Connection: close\r\n\r\n"));
    sink_free(c.s);
    et_httpc_destroy(h);
    server_stop(&srv);
    et_loop_destroy(l);
}

/* A listener whose accept queue is full drops SYNs: connect() never completes, which is the
 * only way to see a connect timeout on loopback. */
static void test_connect_timeout(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &al);
    assert_int_equal(listen(lfd, 0), 0);
    /* fill the accept queue with plain blocking connects that are never accepted */
    int fillers[4];
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fillers[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(50 * 1000);
    et_loop *l = et_loop_create(8, 8);
    et_httpc *h = et_httpc_create(l, 2);
    et_http_opts o;
    et_http_opts_default(&o);
    o.connect_timeout_ms = 200;
    int pending = 0;
    call c;
    start(h, l, &c, &pending, ntohs(a.sin_port), "/debug/pprof/", &o);
    assert_int_equal(et_loop_run(l), 0);
    if (c.r.err != ET_HTTP_ECONNTIMEOUT)
        print_message("connect to a full backlog: %s (%s)\n", et_http_strerror(c.r.err), c.r.msg);
    /* Some kernels complete the handshake anyway; then the silent peer hits the idle timer. */
    assert_true(c.r.err == ET_HTTP_ECONNTIMEOUT || c.r.err == ET_HTTP_EIDLE);
    if (c.r.err == ET_HTTP_ECONNTIMEOUT) {
        assert_true(c.r.elapsed_ms >= 195 && c.r.elapsed_ms < 1500);
        assert_int_equal(c.r.connect_ms, 0);
        assert_non_null(strstr(c.r.msg, "connect"));
    }
    sink_free(c.s);
    et_httpc_destroy(h);
    et_loop_destroy(l);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(lfd);
}

static void test_refused_and_sync(void **state)
{
    (void)state;
    /* A port with nothing listening: find one by binding and closing. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/debug/pprof/", (unsigned)ntohs(a.sin_port));
    et_http_result r;
    assert_int_equal(et_http_get_sync(url, NULL, NULL, NULL, &r), ET_HTTP_ECONNREFUSED);
    assert_int_equal(r.err, ET_HTTP_ECONNREFUSED);
    assert_non_null(strstr(r.msg, "refused"));
    assert_int_equal(et_http_get_sync("ftp://x/", NULL, NULL, NULL, &r), ET_HTTP_EURL);
    assert_string_equal(et_http_strerror(ET_HTTP_ENOTFOUND), "endpoint absent (404)");
    assert_string_equal(et_http_strerror(-ET_HTTP_EIDLE), "read timeout (peer silent)");
    assert_string_equal(et_http_strerror(999), "unknown error");
}

/* Own namespace through setns: proves the enter/leave dance works and leaves us at home. */
static void test_netns_self(void **state)
{
    (void)state;
    int ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
        skip();
        return;
    }
    struct stat before, after;
    assert_int_equal(stat("/proc/self/ns/net", &before), 0);
    int fd = et_socket_in_netns(ns, AF_INET);
    if (fd < 0 && (errno == EPERM || errno == ENOSYS || errno == EINVAL)) {
        close(ns);
        skip(); /* needs CAP_SYS_ADMIN (and a kernel/qemu that passes setns through) */
        return;
    }
    assert_true(fd >= 0);
    assert_int_equal(stat("/proc/self/ns/net", &after), 0);
    assert_true(before.st_ino == after.st_ino);
    close(fd);
    close(ns);
}

/* ------------------------------------------------------------------ python http.server */

static void test_python_http_server(void **state)
{
    (void)state;
    if (access("/usr/bin/python3", X_OK) != 0) {
        skip();
        return;
    }
    setup_bodies();
    char dir[] = "/tmp/et-httpc-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/goroutine.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, 120000, f), 120000);
    fclose(f);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    char port[16];
    snprintf(port, sizeof(port), "%u", (unsigned)ntohs(a.sin_port));

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl("/usr/bin/python3", "python3", "-m", "http.server", port, "--bind", "127.0.0.1", "--directory", dir,
              (char *)NULL);
        _exit(127);
    }
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%s/goroutine.txt", port);
    sink *s = sink_new();
    et_http_result r;
    et_http_opts o;
    et_http_opts_default(&o);
    o.connect_timeout_ms = 500;
    int rc = -1;
    for (int i = 0; i < 100; i++) { /* python takes a moment to start (longer under qemu) */
        s->len = 0;
        rc = et_http_get_sync(url, &o, sink_body, s, &r);
        if (rc != ET_HTTP_ECONNREFUSED)
            break;
        usleep(100 * 1000);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(s->len, 120000);
    assert_memory_equal(s->buf, text, 120000);
    assert_true(r.bytes_body == 120000);

    snprintf(url, sizeof(url), "http://127.0.0.1:%s/debug/pprof/goroutineleak", port);
    rc = et_http_get_sync(url, &o, sink_body, s, &r);
    assert_int_equal(rc, ET_HTTP_ENOTFOUND);
    assert_int_equal(r.status, 404);

    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(path);
    rmdir(dir);
    sink_free(s);
}

static int teardown_all(void **state)
{
    (void)state;
    for (unsigned i = 0; i < nroutes; i++)
        free(route_bufs[i]);
    nroutes = 0;
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_parser_bodies),
        cmocka_unit_test(test_parser_errors),
        cmocka_unit_test(test_parser_interim_and_empty),
        cmocka_unit_test(test_sockets_all_kinds),
        cmocka_unit_test(test_silent_server_does_not_stall_others),
        cmocka_unit_test(test_trickle_and_instant_close),
        cmocka_unit_test(test_ipv6_literal),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_refused_and_sync),
        cmocka_unit_test(test_netns_self),
        cmocka_unit_test(test_python_http_server),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
