/* httpc.h - non-blocking HTTP/1.1 GET client for local pprof endpoints, run inside et_loop.
 *
 * Scope: the agent talks only to services on the gateway itself (loopback, or a pod's own
 * loopback reached by entering its network namespace). So: http:// only, IPv4/IPv6 literals
 * and "localhost", no DNS, no TLS, no keep-alive (every request sends Connection: close).
 *
 * Bodies (Content-Length, chunked or read-to-close; Content-Encoding: gzip inflated with
 * zlib's streaming API) are streamed to on_body in pieces of at most ET_HTTP_OUT_CHUNK bytes;
 * nothing holds a whole body. Every request ends in exactly one on_done call with a result.
 *
 * Memory: et_httpc_create() allocates max_requests slots once (about 60 KB each: socket
 * buffers plus a fixed zlib arena for the 32 KB inflate window); a request never allocates.
 * Each in-flight request uses one fd watch and one timer of the loop: size the loop for it.
 *
 * The response parser is a pure state machine (et_http_parser) so tests and the fuzzer can
 * feed it bytes without sockets. */
#ifndef ET_HTTPC_H
#define ET_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "loop.h"

#define ET_HTTP_HOST_MAX 64
#define ET_HTTP_PATH_MAX 512
#define ET_HTTP_MSG_MAX 160
#define ET_HTTP_OUT_CHUNK 8192  /* largest piece handed to on_body */
#define ET_HTTP_LINE_MAX 1024   /* longest status/header line kept */
#define ET_HTTP_ZARENA 48000    /* inflate state (~7 KB) + 32 KB window, with headroom */

/* Result codes (et_http_result.err; negated as return values of the start functions). */
enum et_http_err {
    ET_HTTP_OK = 0,
    ET_HTTP_EURL,          /* bad or unsupported URL */
    ET_HTTP_EBUSY,         /* every request slot in use */
    ET_HTTP_ENETNS,        /* setns into the target namespace failed */
    ET_HTTP_ESOCKET,       /* socket()/connect() failed immediately */
    ET_HTTP_ECONNREFUSED,  /* nothing listening / connection reset before a response */
    ET_HTTP_ECONNTIMEOUT,  /* connect did not complete in time */
    ET_HTTP_EIDLE,         /* connected, but no bytes for idle_timeout_ms */
    ET_HTTP_EDEADLINE,     /* whole request exceeded total_timeout_ms */
    ET_HTTP_EPROTO,        /* not an HTTP/1.x response, or a malformed one */
    ET_HTTP_EHDRSIZE,      /* headers larger than max_header */
    ET_HTTP_EBODYSIZE,     /* body larger than max_body */
    ET_HTTP_ETRUNCATED,    /* connection closed before the body was complete */
    ET_HTTP_EGZIP,         /* corrupt gzip body */
    ET_HTTP_ENOTFOUND,     /* 404: the endpoint is absent (goroutineleak pre-1.26, block/mutex off) */
    ET_HTTP_ESTATUS,       /* any other non-2xx status; msg has the start of the body */
    ET_HTTP_EABORTED,      /* on_body returned < 0 */
    ET_HTTP_ECANCELED,     /* et_http_cancel() */
    ET_HTTP_EIO,           /* read/write error */
    ET_HTTP_ERR_COUNT
};
const char *et_http_strerror(int err);

/* ---- URL ---- */
typedef struct et_url {
    char host[ET_HTTP_HOST_MAX];   /* as written, without brackets */
    uint16_t port;                 /* default 80 */
    int family;                    /* AF_INET or AF_INET6 */
    uint8_t addr[16];              /* 4 or 16 bytes, network order */
    char path[ET_HTTP_PATH_MAX];   /* path + query, "/" when empty */
} et_url;
/* 0, or -1 for anything but http://{IPv4|[IPv6]|localhost}[:port][/path][?query]. */
int et_url_parse(const char *url, et_url *out);

/* ---- options / results ---- */
/* Start from et_http_opts_default(): a zero limit means its default, but netns_fd 0 would
 * mean fd 0. */
typedef struct et_http_opts {
    uint32_t connect_timeout_ms;   /* default 2000 */
    uint32_t idle_timeout_ms;      /* max silence once connected; default 5000 */
    uint32_t total_timeout_ms;     /* whole request; default 30000 */
    uint64_t max_body;             /* decoded bytes; default 64 MiB */
    uint32_t max_header;           /* status line + headers; default 16 KiB */
    int netns_fd;                  /* -1: our namespace; else an open /proc/PID/ns/net (caller keeps it) */
    int accept_gzip;               /* send Accept-Encoding: gzip; default 1 */
    int gunzip_body;               /* also inflate a body that starts with the gzip magic but has
                                    * no Content-Encoding (pprof's proto output); default 0 */
} et_http_opts;
void et_http_opts_default(et_http_opts *o);

typedef struct et_http_result {
    int status;                    /* HTTP status, 0 if none was received */
    int err;                       /* enum et_http_err */
    char msg[ET_HTTP_MSG_MAX];     /* human-readable; for non-2xx the start of the body */
    uint64_t bytes_wire;           /* bytes received on the socket (headers + raw body) */
    uint64_t bytes_body;           /* decoded body bytes delivered to on_body */
    uint32_t elapsed_ms, connect_ms, ttfb_ms;
} et_http_result;

/* Called with pieces of the decoded body of a 2xx response; return < 0 to abort. */
typedef int (*et_http_body_cb)(void *ud, const char *buf, size_t n);
/* Called exactly once per request that started, after the slot is free again (so it may
 * start the next request). */
typedef void (*et_http_done_cb)(void *ud, const et_http_result *r);

/* ---- response parser (socket-free) ---- */
enum et_http_pstate {
    ET_HP_STATUS, ET_HP_HEADERS, ET_HP_BODY_LEN, ET_HP_BODY_CLOSE, ET_HP_CHUNK_SIZE,
    ET_HP_CHUNK_DATA, ET_HP_CHUNK_CRLF, ET_HP_TRAILERS, ET_HP_DONE, ET_HP_ERROR
};

typedef struct et_http_parser {
    int state;
    int status;
    int err;
    char msg[ET_HTTP_MSG_MAX];
    uint32_t max_header;
    uint64_t max_body;
    int gunzip_body;
    /* header line assembly */
    char line[ET_HTTP_LINE_MAX];
    size_t line_len;
    int line_over;                 /* line longer than the buffer: kept truncated */
    uint32_t header_bytes;
    /* framing */
    int chunked, have_len, gzip, sniffing;
    uint64_t content_length, remaining;
    uint8_t sniff[2];
    size_t nsniff;
    /* counters */
    uint64_t body_wire, body_out;
    size_t msg_len;
    /* gzip */
    z_stream z;
    int z_ready, z_end;
    uint8_t *zarena;
    size_t zarena_used;
    char *out;                     /* ET_HTTP_OUT_CHUNK bytes */
    et_http_body_cb on_body;
    void *ud;
} et_http_parser;

/* zarena: ET_HTTP_ZARENA bytes, out: ET_HTTP_OUT_CHUNK bytes, both owned by the caller and
 * reused across requests. */
void et_http_parser_init(et_http_parser *p, uint8_t *zarena, char *out, uint64_t max_body, uint32_t max_header,
                         int gunzip_body, et_http_body_cb on_body, void *ud);
/* Feed received bytes. Returns 0 = want more, 1 = response complete, -1 = failed (p->err). */
int et_http_parser_feed(et_http_parser *p, const char *buf, size_t n);
/* The peer closed. Returns 1 if that completes the response, -1 with p->err otherwise. */
int et_http_parser_eof(et_http_parser *p);
void et_http_parser_release(et_http_parser *p);  /* ends the inflate stream, if any */

/* ---- the client ---- */
typedef struct et_httpc et_httpc;

et_httpc *et_httpc_create(et_loop *loop, unsigned max_requests);
/* Cancels whatever is in flight (their on_done runs with ET_HTTP_ECANCELED), then frees. */
void et_httpc_destroy(et_httpc *c);

/* Starts GET url. Returns a request id > 0, or -et_http_err (EURL, EBUSY, ENETNS, ESOCKET)
 * without calling on_done. o may be NULL for the defaults. */
int et_http_get(et_httpc *c, const char *url, const et_http_opts *o, et_http_body_cb on_body,
                et_http_done_cb on_done, void *ud);
/* Ends a request early; its on_done runs (ET_HTTP_ECANCELED) before this returns. */
void et_http_cancel(et_httpc *c, int id);
unsigned et_httpc_in_flight(const et_httpc *c);
et_loop *et_httpc_loop(const et_httpc *c);

/* Blocking convenience for one-shot commands (discover, sample): runs a private loop until
 * the request ends. Returns res->err (0 on a 2xx response). */
int et_http_get_sync(const char *url, const et_http_opts *o, et_http_body_cb on_body, void *ud,
                     et_http_result *res);

/* Opens a socket in the namespace of netns_fd (or ours when -1): setns in, socket(), setns
 * back. The socket keeps the namespace it was created in. Exposed for tests. */
int et_socket_in_netns(int netns_fd, int family);

#endif
