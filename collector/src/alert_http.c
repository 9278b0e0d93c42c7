/* alert_http.c - the bounded HTTP/1.1 POST client of the alert thread (see alert_http.h). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alert_http.h"

int alert_url_parse(const char *url, alert_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    if (strncmp(url, "http://", 7)) {
        snprintf(err, errlen, "alertmanager_url must start with http:// (use a TLS proxy for https)");
        return -1;
    }
    const char *h = url + 7, *end;
    if (*h == '[') { /* IPv6 literal */
        end = strchr(h, ']');
        if (!end || end == h + 1) {
            snprintf(err, errlen, "alertmanager_url: bad IPv6 literal");
            return -1;
        }
        h++;
    } else {
        end = h + strcspn(h, ":/?#");
    }
    size_t hl = (size_t)(end - h);
    if (hl == 0 || hl >= sizeof(u->host)) {
        snprintf(err, errlen, "alertmanager_url: missing or overlong host");
        return -1;
    }
    memcpy(u->host, h, hl);
    const char *p = *end == ']' ? end + 1 : end;
    snprintf(u->port, sizeof(u->port), "80");
    if (*p == ':') {
        p++;
        size_t pl = strspn(p, "0123456789");
        long port = pl && pl < 6 ? strtol(p, NULL, 10) : 0;
        if (port < 1 || port > 65535) {
            snprintf(err, errlen, "alertmanager_url: bad port");
            return -1;
        }
        snprintf(u->port, sizeof(u->port), "%ld", port);
        p += pl;
    }
    if (*p && *p != '/') {
        snprintf(err, errlen, "alertmanager_url: no query or fragment allowed");
        return -1;
    }
    size_t pl = strlen(p);
    while (pl && p[pl - 1] == '/')
        pl--;
    if (pl >= sizeof(u->path)) {
        snprintf(err, errlen, "alertmanager_url: path too long");
        return -1;
    }
    /* The path goes verbatim into the request line: no spaces or control characters. */
    for (size_t i = 0; i < pl; i++) {
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f || p[i] == '?' || p[i] == '#') {
            snprintf(err, errlen, "alertmanager_url: bad character in path");
            return -1;
        }
    }
    memcpy(u->path, p, pl);
    return 0;
}

int alert_http_status(const char *buf, size_t len)
{
    /* "HTTP/1.x NNN" and then a space or the end of the line. */
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ')
        return -1;
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
        code = code * 10 + (buf[i] - '0');
    }
    if (code < 100 || (len > 12 && buf[12] != ' ' && buf[12] != '\r' && buf[12] != '\n'))
        return -1;
    return code;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to become ready for events before the deadline: 1 ready, 0 timeout, -1 error
 * or cancelled (errno ECANCELED). */
static int wait_fd(int fd, short events, long long deadline, int cancel_fd)
{
    for (;;) {
        long long left = deadline - mono_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return 0;
        }
        struct pollfd pfd[2] = {{.fd = fd, .events = events}, {.fd = cancel_fd, .events = POLLIN}};
        int n = poll(pfd, cancel_fd >= 0 ? 2 : 1, (int)left);
        if (n > 0 && cancel_fd >= 0 && pfd[1].revents) {
            errno = ECANCELED;
            return -1;
        }
        if (n > 0)
            return 1;
        if (n == 0) {
            errno = ETIMEDOUT;
            return 0;
        }
        if (errno != EINTR)
            return -1;
    }
}

static int connect_deadline(const alert_url *u, long long deadline, int cancel_fd, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    /* getaddrinfo has no timeout of its own; a literal address or /etc/hosts name never
     * waits, and a slow resolver delays only this thread. */
    int rc = getaddrinfo(u->host, u->port, &hints, &ai);
    if (rc) {
        snprintf(err, errlen, "%s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    snprintf(err, errlen, "%s:%s: no address", u->host, u->port);
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, deadline, cancel_fd);
            int soerr = w < 0 ? errno : 0;
            socklen_t sl = sizeof(soerr);
            if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                break;
            if (w < 0 && soerr == ECANCELED) {
                snprintf(err, errlen, "cancelled");
                close(fd);
                fd = -1;
                break;
            }
            snprintf(err, errlen, "connect %s:%s: %s", u->host, u->port, w == 0 ? "timed out" : strerror(soerr ? soerr : errno));
        } else {
            snprintf(err, errlen, "connect %s:%s: %s", u->host, u->port, strerror(errno));
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int send_all(int fd, const char *p, size_t n, long long deadline, int cancel_fd)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline, cancel_fd) != 1)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

int alert_http_post(const alert_url *u, const char *path, const char *body, size_t len, int timeout_ms,
                    int cancel_fd, char *err, size_t errlen)
{
    long long deadline = mono_ms() + timeout_ms;
    int fd = connect_deadline(u, deadline, cancel_fd, err, errlen);
    if (fd < 0)
        return -1;
    err[0] = 0;
    char head[768];
    int hn = snprintf(head, sizeof(head),
                      "POST %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: edgetrace-collector\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                      u->path, path, strchr(u->host, ':') ? "[" : "", u->host, strchr(u->host, ':') ? "]" : "",
                      u->port, len);
    int status = -1;
    if (hn < 0 || (size_t)hn >= sizeof(head)) {
        snprintf(err, errlen, "request line too long");
    } else if (send_all(fd, head, (size_t)hn, deadline, cancel_fd) || send_all(fd, body, len, deadline, cancel_fd)) {
        snprintf(err, errlen, "send to %s:%s: %s", u->host, u->port, strerror(errno));
    } else {
        /* Only the status line matters; read until it is complete, the peer closes, the
         * cap is reached or the deadline passes. The rest of the body is not read. */
        char resp[ALERT_HTTP_RESP_MAX];
        size_t got = 0;
        for (;;) {
            if (memchr(resp, '\n', got) || got == sizeof(resp))
                break;
            int w = wait_fd(fd, POLLIN, deadline, cancel_fd);
            if (w != 1) {
                snprintf(err, errlen, "%s:%s: %s", u->host, u->port, w == 0 ? "no answer (timed out)" : strerror(errno));
                break;
            }
            ssize_t r = recv(fd, resp + got, sizeof(resp) - got, 0);
            if (r > 0)
                got += (size_t)r;
            else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                break;
        }
        if (got) {
            status = alert_http_status(resp, got);
            if (status < 0)
                snprintf(err, errlen, "%s:%s: not an HTTP/1.x response", u->host, u->port);
        } else if (!err[0]) {
            snprintf(err, errlen, "%s:%s: connection closed without an answer", u->host, u->port);
        }
    }
    close(fd);
    return status;
}
