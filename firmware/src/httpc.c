/* httpc.c - local HTTP/1.1 GET client: URL parsing, a socket-free response parser, and the
 * request slots that drive sockets from the event loop.
 *
 * Trust model: the responding "service" may be anything that happens to listen on a port (a
 * non-Go program, a half-dead process, a fuzzer). Every length is capped, every state has a
 * timeout, and a failure ends only that request. */
#include "httpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"

#ifndef ET_VERSION
#define ET_VERSION "dev"
#endif

static const char *const err_names[ET_HTTP_ERR_COUNT] = {
    [ET_HTTP_OK] = "ok",
    [ET_HTTP_EURL] = "bad URL",
    [ET_HTTP_EBUSY] = "too many requests in flight",
    [ET_HTTP_ENETNS] = "cannot enter network namespace",
    [ET_HTTP_ESOCKET] = "socket error",
    [ET_HTTP_ECONNREFUSED] = "connection refused",
    [ET_HTTP_ECONNTIMEOUT] = "connect timeout",
    [ET_HTTP_EIDLE] = "read timeout (peer silent)",
    [ET_HTTP_EDEADLINE] = "request deadline exceeded",
    [ET_HTTP_EPROTO] = "malformed HTTP response",
    [ET_HTTP_EHDRSIZE] = "response headers too large",
    [ET_HTTP_EBODYSIZE] = "response body too large",
    [ET_HTTP_ETRUNCATED] = "connection closed mid-response",
    [ET_HTTP_EGZIP] = "corrupt gzip body",
    [ET_HTTP_ENOTFOUND] = "endpoint absent (404)",
    [ET_HTTP_ESTATUS] = "HTTP error status",
    [ET_HTTP_EABORTED] = "aborted by consumer",
    [ET_HTTP_ECANCELED] = "canceled",
    [ET_HTTP_EIO] = "I/O error",
};

const char *et_http_strerror(int err)
{
    if (err < 0)
        err = -err;
    if (err >= ET_HTTP_ERR_COUNT)
        return "unknown error";
    return err_names[err];
}

void et_http_opts_default(et_http_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->connect_timeout_ms = 2000;
    o->idle_timeout_ms = 5000;
    o->total_timeout_ms = 30000;
    o->max_body = 64ull << 20;
    o->max_header = 16 * 1024;
    o->netns_fd = -1;
    o->accept_gzip = 1;
    o->gunzip_body = 0;
}

/* ================================================================ URL */

int et_url_parse(const char *url, et_url *u)
{
    memset(u, 0, sizeof(*u));
    if (!url || strncasecmp(url, "http://", 7) != 0)
        return -1;
    const char *s = url + 7;
    const char *hend;
    char host[ET_HTTP_HOST_MAX];
    if (*s == '[') {
        hend = strchr(s, ']');
        if (!hend || (size_t)(hend - s - 1) >= sizeof(host) || hend == s + 1)
            return -1;
        memcpy(host, s + 1, (size_t)(hend - s - 1));
        host[hend - s - 1] = 0;
        if (inet_pton(AF_INET6, host, u->addr) != 1)
            return -1;
        u->family = AF_INET6;
        s = hend + 1;
    } else {
        hend = s + strcspn(s, ":/?#");
        if (hend == s || (size_t)(hend - s) >= sizeof(host))
            return -1;
        memcpy(host, s, (size_t)(hend - s));
        host[hend - s] = 0;
        if (!strcasecmp(host, "localhost")) {
            /* No resolver on purpose: "localhost" is the only name a gateway target uses. */
            static const uint8_t lo[4] = { 127, 0, 0, 1 };
            memcpy(u->addr, lo, 4);
        } else if (inet_pton(AF_INET, host, u->addr) != 1) {
            return -1;
        }
        u->family = AF_INET;
        s = hend;
    }
    et_strlcpy(u->host, host, sizeof(u->host));
    u->port = 80;
    if (*s == ':') {
        s++;
        unsigned long port = 0;
        int nd = 0;
        while (*s >= '0' && *s <= '9' && nd < 6) {
            port = port * 10 + (unsigned long)(*s - '0');
            s++;
            nd++;
        }
        if (nd == 0 || port == 0 || port > 65535)
            return -1;
        u->port = (uint16_t)port;
    }
    if (*s && *s != '/' && *s != '?' && *s != '#')
        return -1;
    size_t plen = strcspn(s, "#");
    size_t off = 0;
    if (*s != '/')
        u->path[off++] = '/';
    if (off + plen >= sizeof(u->path))
        return -1;
    for (size_t i = 0; i < plen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return -1; /* would corrupt the request line */
        u->path[off++] = (char)c;
    }
    u->path[off] = 0;
    return 0;
}

/* ================================================================ response parser */

static void *zarena_alloc(void *opaque, unsigned items, unsigned size)
{
    et_http_parser *p = opaque;
    size_t n = (size_t)items * size;
    if (size && n / size != items)
        return Z_NULL;
    n = (n + 15u) & ~(size_t)15u;
    if (n > ET_HTTP_ZARENA - p->zarena_used)
        return Z_NULL;
    void *r = p->zarena + p->zarena_used;
    p->zarena_used += n;
    return r;
}

static void zarena_free(void *opaque, void *ptr)
{
    (void)opaque;
    (void)ptr; /* the arena is dropped wholesale when the next request starts */
}

void et_http_parser_init(et_http_parser *p, uint8_t *zarena, char *out, uint64_t max_body, uint32_t max_header,
                         int gunzip_body, et_http_body_cb on_body, void *ud)
{
    memset(p, 0, sizeof(*p));
    p->state = ET_HP_STATUS;
    p->zarena = zarena;
    p->out = out;
    p->max_body = max_body;
    p->max_header = max_header;
    p->gunzip_body = gunzip_body;
    p->on_body = on_body;
    p->ud = ud;
}

void et_http_parser_release(et_http_parser *p)
{
    if (p->z_ready)
        inflateEnd(&p->z);
    p->z_ready = 0;
    p->zarena_used = 0;
}

static int fail(et_http_parser *p, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(et_http_parser *p, int err, const char *fmt, ...)
{
    if (p->state == ET_HP_ERROR)
        return -1;
    p->state = ET_HP_ERROR;
    p->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
    va_end(ap);
    return -1;
}

static int is_2xx(const et_http_parser *p)
{
    return p->status >= 200 && p->status < 300;
}

/* Hands decoded bytes to the consumer, enforcing the body cap. */
static int emit(et_http_parser *p, const char *d, size_t n)
{
    while (n > 0) {
        size_t k = ET_MIN(n, (size_t)ET_HTTP_OUT_CHUNK);
        if (p->body_out + k > p->max_body)
            return fail(p, ET_HTTP_EBODYSIZE, "body exceeds %llu bytes", (unsigned long long)p->max_body);
        p->body_out += k;
        if (p->on_body && p->on_body(p->ud, d, k) < 0)
            return fail(p, ET_HTTP_EABORTED, "consumer aborted after %llu bytes", (unsigned long long)p->body_out);
        d += k;
        n -= k;
    }
    return 0;
}

static int gz_start(et_http_parser *p)
{
    memset(&p->z, 0, sizeof(p->z));
    p->zarena_used = 0;
    p->z.zalloc = zarena_alloc;
    p->z.zfree = zarena_free;
    p->z.opaque = p;
    /* 16 + MAX_WBITS: gzip wrapper only (Content-Encoding: gzip, or pprof's gzipped proto). */
    if (inflateInit2(&p->z, 16 + MAX_WBITS) != Z_OK)
        return fail(p, ET_HTTP_EGZIP, "inflate init failed");
    p->z_ready = 1;
    p->gzip = 1;
    return 0;
}

static int gz_feed(et_http_parser *p, const char *d, size_t n)
{
    if (p->z_end)
        return 0; /* bytes after the gzip trailer: ignored, like most clients do */
    p->z.next_in = (Bytef *)(uintptr_t)d;
    p->z.avail_in = (uInt)n;
    for (;;) {
        p->z.next_out = (Bytef *)p->out;
        p->z.avail_out = ET_HTTP_OUT_CHUNK;
        int rc = inflate(&p->z, Z_NO_FLUSH);
        size_t produced = ET_HTTP_OUT_CHUNK - p->z.avail_out;
        if (produced && emit(p, p->out, produced) < 0)
            return -1;
        if (rc == Z_STREAM_END) {
            p->z_end = 1;
            return 0;
        }
        if (rc == Z_BUF_ERROR || (rc == Z_OK && p->z.avail_in == 0 && produced < ET_HTTP_OUT_CHUNK))
            return 0; /* needs more input */
        if (rc != Z_OK)
            return fail(p, ET_HTTP_EGZIP, "gzip: %s", p->z.msg ? p->z.msg : "inflate error");
    }
}

/* Body bytes as framed on the wire (after de-chunking). */
static int body_bytes(et_http_parser *p, const char *d, size_t n)
{
    p->body_wire += n;
    if (!is_2xx(p)) {
        /* Error bodies are for the message only: keep the printable start. */
        if (p->body_wire > p->max_body)
            return fail(p, ET_HTTP_EBODYSIZE, "error body exceeds %llu bytes", (unsigned long long)p->max_body);
        for (size_t i = 0; i < n && p->msg_len + 1 < sizeof(p->msg); i++) {
            unsigned char c = (unsigned char)d[i];
            p->msg[p->msg_len++] = (c >= 0x20 && c < 0x7f) ? (char)c : ' ';
            p->msg[p->msg_len] = 0;
        }
        return 0;
    }
    if (p->sniffing) {
        while (n > 0 && p->nsniff < 2) {
            p->sniff[p->nsniff++] = (uint8_t)*d++;
            n--;
        }
        if (p->nsniff < 2)
            return 0;
        p->sniffing = 0;
        if (p->sniff[0] == 0x1f && p->sniff[1] == 0x8b) {
            if (gz_start(p) < 0 || gz_feed(p, (const char *)p->sniff, 2) < 0)
                return -1;
        } else if (emit(p, (const char *)p->sniff, 2) < 0) {
            return -1;
        }
        if (n == 0)
            return 0;
    }
    if (p->gzip)
        return gz_feed(p, d, n);
    return emit(p, d, n);
}

static int finish(et_http_parser *p)
{
    if (p->sniffing && p->nsniff > 0) {
        p->sniffing = 0;
        if (emit(p, (const char *)p->sniff, p->nsniff) < 0)
            return -1;
    }
    /* An empty body labelled gzip is common for empty responses; it is not corrupt. */
    if (is_2xx(p) && p->gzip && !p->z_end && p->body_wire > 0)
        return fail(p, ET_HTTP_EGZIP, "gzip stream ends early");
    p->state = ET_HP_DONE;
    if (p->status == 404) {
        char body[ET_HTTP_MSG_MAX];
        et_strlcpy(body, p->msg, sizeof(body));
        p->err = ET_HTTP_ENOTFOUND;
        snprintf(p->msg, sizeof(p->msg), "404 endpoint absent%s%.100s", body[0] ? ": " : "", body);
    } else if (!is_2xx(p)) {
        char body[ET_HTTP_MSG_MAX];
        et_strlcpy(body, p->msg, sizeof(body));
        p->err = ET_HTTP_ESTATUS;
        snprintf(p->msg, sizeof(p->msg), "HTTP %d%s%.120s", p->status, body[0] ? ": " : "", body);
    }
    return 1;
}

/* Case-insensitive "does the comma-separated list end in token". */
static int last_token_is(const char *v, const char *tok)
{
    const char *last = strrchr(v, ',');
    last = last ? last + 1 : v;
    while (*last == ' ' || *last == '\t')
        last++;
    size_t n = strlen(tok);
    if (strncasecmp(last, tok, n) != 0)
        return 0;
    last += n;
    while (*last == ' ' || *last == '\t')
        last++;
    return *last == 0;
}

static int header_line(et_http_parser *p, char *line)
{
    if (*line == ' ' || *line == '\t')
        return 0; /* obsolete line folding: ignore the continuation */
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return fail(p, ET_HTTP_EPROTO, "malformed header line");
    *colon = 0;
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        v[--vl] = 0;
    if (!strcasecmp(line, "content-length")) {
        uint64_t n = 0;
        if (!*v)
            return fail(p, ET_HTTP_EPROTO, "empty Content-Length");
        for (const char *c = v; *c; c++) {
            if (*c < '0' || *c > '9' || n > (UINT64_MAX - 9) / 10)
                return fail(p, ET_HTTP_EPROTO, "bad Content-Length");
            n = n * 10 + (uint64_t)(*c - '0');
        }
        if (p->have_len && n != p->content_length)
            return fail(p, ET_HTTP_EPROTO, "conflicting Content-Length");
        p->have_len = 1;
        p->content_length = n;
    } else if (!strcasecmp(line, "transfer-encoding")) {
        if (!last_token_is(v, "chunked"))
            return fail(p, ET_HTTP_EPROTO, "unsupported Transfer-Encoding");
        p->chunked = 1;
    } else if (!strcasecmp(line, "content-encoding")) {
        if (!strcasecmp(v, "gzip") || !strcasecmp(v, "x-gzip"))
            p->gzip = 1; /* started at end of headers, only for 2xx */
        else if (strcasecmp(v, "identity") != 0 && *v)
            return fail(p, ET_HTTP_EPROTO, "unsupported Content-Encoding");
    }
    return 0;
}

static int status_line(et_http_parser *p, const char *line)
{
    /* "HTTP/1.x SSS reason" */
    if (strncmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' || line[8] != ' ')
        return fail(p, ET_HTTP_EPROTO, "not an HTTP/1.x response");
    const char *c = line + 9;
    if (c[0] < '1' || c[0] > '5' || c[1] < '0' || c[1] > '9' || c[2] < '0' || c[2] > '9' ||
        (c[3] != 0 && c[3] != ' '))
        return fail(p, ET_HTTP_EPROTO, "bad status code");
    p->status = (c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0');
    p->chunked = p->have_len = p->gzip = 0;
    p->content_length = 0;
    p->msg_len = 0;
    p->msg[0] = 0;
    return 0;
}

static int end_of_headers(et_http_parser *p)
{
    if (p->status < 200) {
        p->state = ET_HP_STATUS; /* 1xx interim response: the real one follows */
        return 0;
    }
    int gz = p->gzip;
    p->gzip = 0;
    if (is_2xx(p)) {
        if (gz) {
            if (gz_start(p) < 0)
                return -1;
        } else if (p->gunzip_body) {
            p->sniffing = 1;
        }
    }
    if (p->status == 204 || p->status == 304)
        return finish(p);
    if (p->chunked) {
        p->state = ET_HP_CHUNK_SIZE;
    } else if (p->have_len) {
        if (p->content_length > p->max_body && is_2xx(p) && !gz)
            return fail(p, ET_HTTP_EBODYSIZE, "Content-Length %llu exceeds cap %llu",
                        (unsigned long long)p->content_length, (unsigned long long)p->max_body);
        p->remaining = p->content_length;
        p->state = ET_HP_BODY_LEN;
        if (p->remaining == 0)
            return finish(p);
    } else {
        p->state = ET_HP_BODY_CLOSE;
    }
    return 0;
}

static int chunk_size_line(et_http_parser *p, const char *line)
{
    uint64_t n = 0;
    int nd = 0;
    for (; *line; line++, nd++) {
        int v;
        char c = *line;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else
            break;
        if (nd >= 15)
            return fail(p, ET_HTTP_EPROTO, "chunk size too large");
        n = (n << 4) | (uint64_t)v;
    }
    if (nd == 0 || (*line && *line != ';' && *line != ' ' && *line != '\t'))
        return fail(p, ET_HTTP_EPROTO, "bad chunk size line");
    if (n == 0) {
        p->state = ET_HP_TRAILERS;
        return 0;
    }
    p->remaining = n;
    p->state = ET_HP_CHUNK_DATA;
    return 0;
}

/* One complete line (CR/LF stripped) in a line-oriented state. */
static int on_line(et_http_parser *p, char *line)
{
    switch (p->state) {
    case ET_HP_STATUS:
        return status_line(p, line);
    case ET_HP_HEADERS:
        if (!*line)
            return end_of_headers(p);
        return header_line(p, line);
    case ET_HP_CHUNK_SIZE:
        return chunk_size_line(p, line);
    case ET_HP_CHUNK_CRLF:
        if (*line)
            return fail(p, ET_HTTP_EPROTO, "missing CRLF after chunk");
        p->state = ET_HP_CHUNK_SIZE;
        return 0;
    case ET_HP_TRAILERS:
        if (!*line)
            return finish(p);
        return 0;
    default:
        return fail(p, ET_HTTP_EPROTO, "internal parser state");
    }
}

int et_http_parser_feed(et_http_parser *p, const char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (p->state == ET_HP_ERROR)
            return -1;
        if (p->state == ET_HP_DONE)
            return 1; /* trailing bytes after a complete response: ignored */
        if (p->state == ET_HP_BODY_LEN || p->state == ET_HP_CHUNK_DATA) {
            size_t k = n - i;
            if ((uint64_t)k > p->remaining)
                k = (size_t)p->remaining;
            if (body_bytes(p, buf + i, k) < 0)
                return -1;
            i += k;
            p->remaining -= k;
            if (p->remaining == 0) {
                if (p->state == ET_HP_CHUNK_DATA)
                    p->state = ET_HP_CHUNK_CRLF;
                else if (finish(p) < 0)
                    return -1;
            }
            continue;
        }
        if (p->state == ET_HP_BODY_CLOSE) {
            if (body_bytes(p, buf + i, n - i) < 0)
                return -1;
            i = n;
            continue;
        }
        /* Line-oriented states. */
        int in_head = p->state == ET_HP_STATUS || p->state == ET_HP_HEADERS || p->state == ET_HP_TRAILERS;
        const char *nl = memchr(buf + i, '\n', n - i);
        size_t k = nl ? (size_t)(nl - (buf + i)) + 1 : n - i;
        if (in_head) {
            p->header_bytes += (uint32_t)ET_MIN(k, (size_t)UINT32_MAX / 2);
            if (p->header_bytes > p->max_header)
                return fail(p, ET_HTTP_EHDRSIZE, "headers exceed %u bytes", p->max_header);
        }
        if (p->state == ET_HP_STATUS) {
            /* Reject garbage at once rather than waiting for a newline that may never come. */
            static const char magic[] = "HTTP/";
            for (size_t j = 0; j < k && p->line_len + j < 5; j++)
                if (buf[i + j] != magic[p->line_len + j])
                    return fail(p, ET_HTTP_EPROTO, "not an HTTP response");
        }
        size_t copy = nl ? k - 1 : k;
        size_t room = sizeof(p->line) - 1 - p->line_len;
        if (copy > room) {
            copy = room;
            p->line_over = 1;
        }
        memcpy(p->line + p->line_len, buf + i, copy);
        p->line_len += copy;
        i += k;
        if (!nl)
            continue;
        if (p->line_len > 0 && p->line[p->line_len - 1] == '\r')
            p->line_len--;
        p->line[p->line_len] = 0;
        int over = p->line_over;
        p->line_len = 0;
        p->line_over = 0;
        if (over && p->state != ET_HP_HEADERS && p->state != ET_HP_TRAILERS)
            return fail(p, ET_HTTP_EPROTO, "line too long");
        /* A long header we do not care about (cookies, CSP) is kept truncated; one we parse is
         * short, and truncated it fails to parse. */
        int st = p->state;
        if (on_line(p, p->line) < 0)
            return -1;
        if (st == ET_HP_STATUS && p->state == ET_HP_STATUS)
            p->state = ET_HP_HEADERS;
    }
    if (p->state == ET_HP_ERROR)
        return -1;
    return p->state == ET_HP_DONE ? 1 : 0;
}

int et_http_parser_eof(et_http_parser *p)
{
    switch (p->state) {
    case ET_HP_DONE:
        return 1;
    case ET_HP_ERROR:
        return -1;
    case ET_HP_BODY_CLOSE:
        return finish(p);
    case ET_HP_STATUS:
        if (p->line_len == 0 && p->status == 0)
            return fail(p, ET_HTTP_ETRUNCATED, "connection closed without a response");
        return fail(p, ET_HTTP_ETRUNCATED, "connection closed in the status line");
    case ET_HP_HEADERS:
        return fail(p, ET_HTTP_ETRUNCATED, "connection closed in the headers");
    case ET_HP_BODY_LEN:
        return fail(p, ET_HTTP_ETRUNCATED, "connection closed with %llu of %llu body bytes",
                    (unsigned long long)(p->content_length - p->remaining), (unsigned long long)p->content_length);
    default:
        return fail(p, ET_HTTP_ETRUNCATED, "connection closed inside chunked body");
    }
}

/* ================================================================ sockets */

int et_socket_in_netns(int netns_fd, int family)
{
    if (netns_fd < 0)
        return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* setns affects only the calling thread; the agent has one. A socket keeps the namespace it
     * was created in, so we can return at once and use it from our own namespace. */
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return -1;
    if (setns(netns_fd, CLONE_NEWNET) < 0) {
        int e = errno;
        close(self);
        errno = e;
        return -1;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int e = errno;
    if (setns(self, CLONE_NEWNET) < 0) {
        /* Staying in a pod's namespace would silently send the uplink through the pod. */
        et_error("httpc: cannot return to own network namespace: %s", strerror(errno));
        abort();
    }
    close(self);
    errno = e;
    return fd;
}

/* ================================================================ client */

enum { PH_FREE = 0, PH_CONNECTING, PH_SENDING, PH_RECEIVING, PH_FAILED_EARLY };

typedef struct et_http_req {
    et_httpc *c;
    int id;
    int phase;
    int fd;
    et_timer_id timer;
    et_http_opts o;
    uint64_t t_start, t_connected, t_first, t_last_io;
    et_http_body_cb on_body;
    et_http_done_cb on_done;
    void *ud;
    int early_err;
    char early_msg[ET_HTTP_MSG_MAX];
    size_t reqlen, reqoff;
    uint64_t wire_bytes;
    char reqbuf[ET_HTTP_PATH_MAX + 256];
    char rbuf[4096];
    et_http_parser p;
    char out[ET_HTTP_OUT_CHUNK];
    uint8_t zarena[ET_HTTP_ZARENA] __attribute__((aligned(16)));
} et_http_req;

struct et_httpc {
    et_loop *loop;
    unsigned max;
    int next_id;
    et_http_req *reqs;
};

et_httpc *et_httpc_create(et_loop *loop, unsigned max_requests)
{
    if (!loop || max_requests == 0)
        return NULL;
    et_httpc *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->reqs = calloc(max_requests, sizeof(*c->reqs));
    if (!c->reqs) {
        free(c);
        return NULL;
    }
    c->loop = loop;
    c->max = max_requests;
    c->next_id = 1;
    for (unsigned i = 0; i < max_requests; i++) {
        c->reqs[i].c = c;
        c->reqs[i].fd = -1;
    }
    return c;
}

unsigned et_httpc_in_flight(const et_httpc *c)
{
    unsigned n = 0;
    for (unsigned i = 0; i < c->max; i++)
        n += c->reqs[i].phase != PH_FREE;
    return n;
}

et_loop *et_httpc_loop(const et_httpc *c)
{
    return c->loop;
}

static uint32_t ms_since(uint64_t now, uint64_t t)
{
    uint64_t d = now > t ? now - t : 0;
    return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

/* Ends a request: frees its slot first, then reports, so on_done may start another. */
static void req_finish(et_http_req *r, int err, const char *msg)
{
    et_loop *l = r->c->loop;
    uint64_t now = et_now_mono_ms();
    et_http_result res;
    memset(&res, 0, sizeof(res));
    res.status = r->p.status;
    res.err = err;
    if (msg && *msg)
        et_strlcpy(res.msg, msg, sizeof(res.msg));
    else
        et_strlcpy(res.msg, et_http_strerror(err), sizeof(res.msg));
    res.bytes_body = r->p.body_out;
    res.elapsed_ms = ms_since(now, r->t_start);
    res.connect_ms = r->t_connected ? ms_since(r->t_connected, r->t_start) : 0;
    res.ttfb_ms = r->t_first ? ms_since(r->t_first, r->t_start) : 0;
    res.bytes_wire = r->wire_bytes;
    if (r->fd >= 0) {
        et_loop_unwatch(l, r->fd);
        close(r->fd);
        r->fd = -1;
    }
    if (r->timer)
        et_loop_cancel_timer(l, r->timer);
    r->timer = 0;
    et_http_parser_release(&r->p);
    et_http_done_cb done = r->on_done;
    void *ud = r->ud;
    r->phase = PH_FREE;
    r->id = 0;
    if (done)
        done(ud, &res);
}

static void req_fail_errno(et_http_req *r, int err, const char *what, int e)
{
    char m[ET_HTTP_MSG_MAX];
    snprintf(m, sizeof(m), "%s: %s", what, strerror(e));
    req_finish(r, err, m);
}

static void on_timer(et_loop *l, et_timer_id id, void *ud);

/* One timer per request, aimed at the nearest deadline. Activity only pushes the idle
 * deadline later, so reads never touch the timer; when it fires early we re-aim it. A phase
 * change (connected) can pull the deadline earlier, so that re-aims it at once. */
static void arm_timer(et_http_req *r, uint64_t now)
{
    uint64_t total = r->t_start + r->o.total_timeout_ms;
    uint64_t phase = r->phase == PH_CONNECTING ? r->t_start + r->o.connect_timeout_ms
                                               : r->t_last_io + r->o.idle_timeout_ms;
    uint64_t due = ET_MIN(total, phase);
    uint32_t delay = due > now ? (uint32_t)ET_MIN(due - now, (uint64_t)UINT32_MAX) : 0;
    if (r->timer && et_loop_rearm_timer(r->c->loop, r->timer, delay) == 0)
        return;
    r->timer = et_loop_add_timer(r->c->loop, delay, 0, on_timer, r);
}

static void on_timer(et_loop *l, et_timer_id id, void *ud)
{
    (void)id;
    et_http_req *r = ud;
    r->timer = 0; /* one-shot: already gone */
    if (r->phase == PH_FAILED_EARLY) {
        req_finish(r, r->early_err, r->early_msg);
        return;
    }
    uint64_t now = et_now_mono_ms();
    char m[ET_HTTP_MSG_MAX];
    if (now >= r->t_start + r->o.total_timeout_ms) {
        snprintf(m, sizeof(m), "no complete response within %u ms (%llu body bytes so far)", r->o.total_timeout_ms,
                 (unsigned long long)r->p.body_out);
        req_finish(r, ET_HTTP_EDEADLINE, m);
    } else if (r->phase == PH_CONNECTING && now >= r->t_start + r->o.connect_timeout_ms) {
        snprintf(m, sizeof(m), "connect not completed within %u ms", r->o.connect_timeout_ms);
        req_finish(r, ET_HTTP_ECONNTIMEOUT, m);
    } else if (r->phase != PH_CONNECTING && now >= r->t_last_io + r->o.idle_timeout_ms) {
        snprintf(m, sizeof(m), "peer silent for %u ms (%s)", r->o.idle_timeout_ms,
                 r->t_first ? "mid-response" : "accepted but never answered");
        req_finish(r, ET_HTTP_EIDLE, m);
    } else {
        arm_timer(r, now); /* activity moved the idle deadline: sleep again */
        (void)l;
    }
}

static void req_read(et_http_req *r)
{
    /* Bounded reads per wakeup so one fast service cannot starve the others; the fd stays
     * readable (level-triggered) and we come back next round. */
    for (int iter = 0; iter < 16; iter++) {
        ssize_t n = recv(r->fd, r->rbuf, sizeof(r->rbuf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == ECONNRESET && r->p.state == ET_HP_STATUS && r->p.line_len == 0) {
                req_finish(r, ET_HTTP_ECONNREFUSED, "connection reset before any response");
                return;
            }
            if (errno == ECONNRESET && r->p.state == ET_HP_BODY_CLOSE) {
                /* Reset instead of FIN on a read-to-close body: we cannot know it is complete. */
                req_finish(r, ET_HTTP_ETRUNCATED, "connection reset during read-to-close body");
                return;
            }
            req_fail_errno(r, ET_HTTP_EIO, "recv", errno);
            return;
        }
        uint64_t now = et_now_mono_ms();
        if (n == 0) {
            et_http_parser_eof(&r->p);
            req_finish(r, r->p.err, r->p.msg);
            return;
        }
        r->wire_bytes += (uint64_t)n;
        if (!r->t_first)
            r->t_first = now;
        r->t_last_io = now;
        int rc = et_http_parser_feed(&r->p, r->rbuf, (size_t)n);
        if (rc != 0) {
            req_finish(r, r->p.err, r->p.msg);
            return;
        }
    }
}

static void req_send(et_http_req *r)
{
    while (r->reqoff < r->reqlen) {
        ssize_t n = send(r->fd, r->reqbuf + r->reqoff, r->reqlen - r->reqoff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            req_fail_errno(r, errno == ECONNREFUSED || errno == ECONNRESET ? ET_HTTP_ECONNREFUSED : ET_HTTP_EIO, "send",
                           errno);
            return;
        }
        r->reqoff += (size_t)n;
        r->t_last_io = et_now_mono_ms();
    }
    r->phase = PH_RECEIVING;
    if (et_loop_set_events(r->c->loop, r->fd, ET_EV_READ) < 0)
        req_fail_errno(r, ET_HTTP_EIO, "epoll", errno);
}

static void on_io(et_loop *l, int fd, unsigned ev, void *ud)
{
    (void)l;
    (void)fd;
    et_http_req *r = ud;
    if (r->phase == PH_CONNECTING) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            soerr = errno;
        if (soerr) {
            req_fail_errno(r, soerr == ECONNREFUSED ? ET_HTTP_ECONNREFUSED : ET_HTTP_ESOCKET, "connect", soerr);
            return;
        }
        if (!(ev & (ET_EV_WRITE | ET_EV_ERROR)))
            return;
        r->t_connected = r->t_last_io = et_now_mono_ms();
        r->phase = PH_SENDING;
        arm_timer(r, r->t_connected);
        if (!r->timer) {
            req_finish(r, ET_HTTP_EBUSY, "loop timer table full");
            return;
        }
    }
    if (r->phase == PH_SENDING) {
        req_send(r);
        return;
    }
    if (r->phase == PH_RECEIVING && (ev & (ET_EV_READ | ET_EV_ERROR)))
        req_read(r);
}

static int fail_early(et_http_req *r, int err, const char *what, int e)
{
    /* Report through the loop rather than from inside et_http_get: callers get on_done from
     * one place only, never re-entrantly. */
    r->phase = PH_FAILED_EARLY;
    r->early_err = err;
    snprintf(r->early_msg, sizeof(r->early_msg), "%s: %s", what, strerror(e));
    r->timer = et_loop_add_timer(r->c->loop, 0, 0, on_timer, r);
    if (!r->timer) {
        r->phase = PH_FREE;
        return -ET_HTTP_EBUSY;
    }
    return r->id;
}

int et_http_get(et_httpc *c, const char *url, const et_http_opts *o, et_http_body_cb on_body,
                et_http_done_cb on_done, void *ud)
{
    et_url u;
    if (et_url_parse(url, &u) < 0)
        return -ET_HTTP_EURL;
    et_http_req *r = NULL;
    for (unsigned i = 0; i < c->max; i++) {
        if (c->reqs[i].phase == PH_FREE) {
            r = &c->reqs[i];
            break;
        }
    }
    if (!r)
        return -ET_HTTP_EBUSY;
    if (o)
        r->o = *o;
    else
        et_http_opts_default(&r->o);
    /* Zero means "default" for every limit, so a partly filled struct cannot make a request
     * time out at once or refuse every body. */
    et_http_opts def;
    et_http_opts_default(&def);
    if (r->o.max_header == 0)
        r->o.max_header = def.max_header;
    if (r->o.max_body == 0)
        r->o.max_body = def.max_body;
    if (r->o.connect_timeout_ms == 0)
        r->o.connect_timeout_ms = def.connect_timeout_ms;
    if (r->o.idle_timeout_ms == 0)
        r->o.idle_timeout_ms = def.idle_timeout_ms;
    if (r->o.total_timeout_ms == 0)
        r->o.total_timeout_ms = def.total_timeout_ms;
    r->on_body = on_body;
    r->on_done = on_done;
    r->ud = ud;
    r->t_start = r->t_last_io = et_now_mono_ms();
    r->t_connected = r->t_first = 0;
    r->reqoff = 0;
    r->wire_bytes = 0;
    r->timer = 0;
    et_http_parser_init(&r->p, r->zarena, r->out, r->o.max_body, r->o.max_header, r->o.gunzip_body, on_body, ud);

    char hostport[ET_HTTP_HOST_MAX + 10];
    if (u.family == AF_INET6)
        snprintf(hostport, sizeof(hostport), "[%s]", u.host);
    else
        snprintf(hostport, sizeof(hostport), "%s", u.host);
    if (u.port != 80) {
        size_t hl = strlen(hostport);
        snprintf(hostport + hl, sizeof(hostport) - hl, ":%u", (unsigned)u.port);
    }
    int rl = snprintf(r->reqbuf, sizeof(r->reqbuf),
                      "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: edgetrace-agent/%s\r\n%sConnection: close\r\n\r\n",
                      u.path, hostport, ET_VERSION, r->o.accept_gzip ? "Accept-Encoding: gzip\r\n" : "");
    if (rl < 0 || (size_t)rl >= sizeof(r->reqbuf))
        return -ET_HTTP_EURL;
    r->reqlen = (size_t)rl;

    int fd = et_socket_in_netns(r->o.netns_fd, u.family);
    if (fd < 0)
        return r->o.netns_fd >= 0 ? -ET_HTTP_ENETNS : -ET_HTTP_ESOCKET;
    r->id = c->next_id++;
    if (c->next_id <= 0)
        c->next_id = 1;

    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    if (u.family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(u.port);
        memcpy(&sin->sin_addr, u.addr, 4);
        sl = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(u.port);
        memcpy(&sin6->sin6_addr, u.addr, 16);
        sl = sizeof(*sin6);
    }
    r->fd = fd;
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        r->fd = -1;
        return fail_early(r, e == ECONNREFUSED ? ET_HTTP_ECONNREFUSED : ET_HTTP_ESOCKET, "connect", e);
    }
    r->phase = PH_CONNECTING;
    /* Even an immediate loopback connect goes through the WRITE event: one code path. */
    if (et_loop_watch(c->loop, fd, ET_EV_WRITE, on_io, r) < 0) {
        close(fd);
        r->fd = -1;
        r->phase = PH_FREE;
        return -ET_HTTP_EBUSY;
    }
    arm_timer(r, r->t_start);
    if (!r->timer) {
        et_loop_unwatch(c->loop, fd);
        close(fd);
        r->fd = -1;
        r->phase = PH_FREE;
        return -ET_HTTP_EBUSY;
    }
    return r->id;
}

void et_http_cancel(et_httpc *c, int id)
{
    if (id <= 0)
        return;
    for (unsigned i = 0; i < c->max; i++)
        if (c->reqs[i].phase != PH_FREE && c->reqs[i].id == id) {
            req_finish(&c->reqs[i], ET_HTTP_ECANCELED, NULL);
            return;
        }
}

void et_httpc_destroy(et_httpc *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->max; i++)
        if (c->reqs[i].phase != PH_FREE)
            req_finish(&c->reqs[i], ET_HTTP_ECANCELED, NULL);
    free(c->reqs);
    free(c);
}

/* ---------------------------------------------------------------- blocking wrapper */

struct sync_state {
    int done;
    et_http_result *res;
    et_loop *loop;
    et_http_body_cb on_body;
    void *body_ud;
};

static void sync_done(void *ud, const et_http_result *r)
{
    struct sync_state *s = ud;
    *s->res = *r;
    s->done = 1;
    et_loop_stop(s->loop);
}

static int sync_body(void *ud, const char *buf, size_t n)
{
    struct sync_state *s = ud;
    return s->on_body ? s->on_body(s->body_ud, buf, n) : 0;
}

int et_http_get_sync(const char *url, const et_http_opts *o, et_http_body_cb on_body, void *ud, et_http_result *res)
{
    memset(res, 0, sizeof(*res));
    et_loop *l = et_loop_create(4, 4);
    if (!l) {
        res->err = ET_HTTP_ESOCKET;
        et_strlcpy(res->msg, "cannot create event loop", sizeof(res->msg));
        return res->err;
    }
    et_httpc *c = et_httpc_create(l, 1);
    if (!c) {
        et_loop_destroy(l);
        res->err = ET_HTTP_ESOCKET;
        et_strlcpy(res->msg, "out of memory", sizeof(res->msg));
        return res->err;
    }
    struct sync_state st = { 0, res, l, on_body, ud };
    int id = et_http_get(c, url, o, sync_body, sync_done, &st);
    if (id < 0) {
        res->err = -id;
        et_strlcpy(res->msg, et_http_strerror(id), sizeof(res->msg));
    } else {
        while (!st.done)
            if (et_loop_run(l) < 0)
                break;
    }
    et_httpc_destroy(c);
    et_loop_destroy(l);
    return res->err;
}
