/* http.h - the collector's HTTP server: JSON API, pprof export, /metrics and the web page.
 *
 * libmicrohttpd with its own internal polling thread. Every handler runs on that one thread
 * and reads through the read-only store handle given at start (its own SQLite connection in
 * WAL mode), so a slow page never holds the ingest loop's write lock or delays a commit.
 *
 * Access: on a loopback address (127.0.0.0/8, ::1) everything is open. On any other address
 * the server refuses to start without a token file; then every request except /healthz must
 * carry the token, as "Authorization: Bearer TOKEN" or as the password of HTTP Basic (so a
 * browser's login prompt works), else 401. The token file must not be readable by others.
 * Tokens are compared as SHA-256 digests in constant time (neither content nor length leak
 * through timing). No TLS here (libmicrohttpd is built without HTTPS): put a reverse proxy in
 * front for that (README "HTTP API").
 *
 * Limits (hostile clients): methods other than GET/HEAD -> 405; URL over API_MAX_URL -> 414;
 * request headers bounded by libmicrohttpd's per-connection memory (64 KiB) -> 431;
 * connection count and idle time bounded. */
#ifndef COLL_HTTP_H
#define COLL_HTTP_H

#include <stddef.h>

#include "store.h"

typedef struct http_config {
    const char *listen;      /* "ADDR:PORT", "[v6]:PORT"; "off" = no server */
    const char *token_file;  /* NULL or "": none */
    coll_store *ro;          /* the HTTP thread's own read-only handle (owned by the caller) */
    const char *db_path;     /* for /metrics' database size */
    int captures_per_hour;   /* per device; 0: API_CAPTURES_PER_HOUR */
} http_config;

typedef struct http_server http_server;

/* Starts serving. NULL with a message in err on failure (bad address, port in use, non-loopback
 * without a token, unreadable or world-readable token file). */
http_server *http_start(const http_config *cfg, char *err, size_t errlen);
void http_stop(http_server *h);
/* The port actually bound (useful with port 0). */
unsigned http_port(const http_server *h);

/* 1 if ADDR:PORT names a loopback address; -1 if it does not parse. */
int http_is_loopback(const char *listen);

#endif
