/* alert_http.h - a minimal, bounded HTTP/1.1 POST client for Alertmanager's /api/v2/alerts.
 *
 * Why not libcurl: the only request the collector makes is one JSON POST to a loopback or
 * LAN Alertmanager (TLS, when wanted, is a reverse proxy's job, as for the HTTP API), and
 * this client does only that in ~200 lines with hard limits: a deadline covering connect,
 * write and read, a response read capped at ALERT_HTTP_RESP_MAX bytes, and only the status
 * line interpreted. Building curl from Debian sources for that would add a large attack
 * surface and several minutes to every dependency build.
 *
 * Blocking calls with a deadline: it runs on the alert thread only, never on ingest's. */
#ifndef COLL_ALERT_HTTP_H
#define COLL_ALERT_HTTP_H

#include <stddef.h>

#define ALERT_HTTP_RESP_MAX 4096

typedef struct alert_url {
    char host[256];  /* name or address; an IPv6 literal without its brackets */
    char port[8];
    char path[256];  /* prefix without trailing '/', "" for the root */
} alert_url;

/* Parses "http://HOST[:PORT][/PREFIX]". Returns 0, or -1 with a message in err. Only
 * plain http: put a TLS-terminating proxy in front of a remote Alertmanager. */
int alert_url_parse(const char *url, alert_url *u, char *err, size_t errlen);

/* The status code of an HTTP/1.x response head in buf[0..len) (need not be terminated),
 * or -1 when it is not one. */
int alert_http_status(const char *buf, size_t len);

/* POSTs body (application/json) to u's host at u->path + path. Returns the HTTP status
 * (any code; the caller decides), or -1 with a message in err for a connection error or
 * a timeout (timeout_ms covers the whole exchange). cancel_fd (-1: none) becoming
 * readable abandons the exchange at once (shutdown must not wait for a dead peer). */
int alert_http_post(const alert_url *u, const char *path, const char *body, size_t len, int timeout_ms,
                    int cancel_fd, char *err, size_t errlen);

#endif
