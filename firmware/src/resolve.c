/* resolve.c - getaddrinfo in a forked child, answered through a pipe (see resolve.h). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "resolve.h"

/* What the child writes: one record, well under PIPE_BUF, so the write is atomic. */
typedef struct answer {
    int ok;
    socklen_t len;
    struct sockaddr_storage ss;
    char err[96];
} answer;

struct et_resolver {
    et_loop *loop;
    et_resolved_fn done;
    void *ud;
    pid_t pid;
    int fd;             /* read end of the pipe; -1 when idle */
    et_timer_id timer;  /* kills a child that takes too long */
};

et_resolver *et_resolver_create(et_loop *loop, et_resolved_fn done, void *ud)
{
    et_resolver *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->loop = loop;
    r->done = done;
    r->ud = ud;
    r->fd = -1;
    return r;
}

int et_resolver_busy(const et_resolver *r) { return r->fd >= 0; }

/* Ends the child: it has answered or timed out, either way SIGKILL makes waitpid() prompt. */
static void finish(et_resolver *r)
{
    if (r->timer)
        et_loop_cancel_timer(r->loop, r->timer);
    r->timer = 0;
    if (r->fd >= 0) {
        et_loop_unwatch(r->loop, r->fd);
        close(r->fd);
        r->fd = -1;
    }
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        r->pid = 0;
    }
}

static void on_answer(et_loop *l, int fd, unsigned events, void *ud)
{
    (void)l;
    (void)events;
    et_resolver *r = ud;
    answer a;
    ssize_t n;
    do
        n = read(fd, &a, sizeof(a));
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return;
    finish(r);
    if (n != (ssize_t)sizeof(a)) {
        r->done(r->ud, -1, NULL, 0, "resolver child died without an answer");
        return;
    }
    a.err[sizeof(a.err) - 1] = 0;
    if (a.ok != 0 || a.len == 0 || a.len > sizeof(a.ss))
        r->done(r->ud, -1, NULL, 0, a.err[0] ? a.err : "no address");
    else
        r->done(r->ud, 0, (const struct sockaddr *)&a.ss, a.len, "");
}

static void on_timeout(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    et_resolver *r = ud;
    r->timer = 0;
    finish(r);
    r->done(r->ud, -1, NULL, 0, "name resolution timed out");
}

static void lookup(const char *host, uint16_t port, int numeric, answer *a)
{
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_ADDRCONFIG | (numeric ? AI_NUMERICHOST : 0);
    memset(a, 0, sizeof(*a));
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0 || !res || res->ai_addrlen > sizeof(a->ss)) {
        a->ok = -1;
        snprintf(a->err, sizeof(a->err), "cannot resolve '%.40s': %s", host, rc ? gai_strerror(rc) : "no address");
    } else {
        memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
        a->len = res->ai_addrlen;
    }
    if (res)
        freeaddrinfo(res);
}

static int is_numeric(const char *host)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_flags = AI_NUMERICHOST;
    hints.ai_socktype = SOCK_DGRAM;
    int ok = getaddrinfo(host, NULL, &hints, &res) == 0; /* numeric: no lookup, returns at once */
    if (res)
        freeaddrinfo(res);
    return ok;
}

int et_resolver_start(et_resolver *r, const char *host, uint16_t port, uint32_t timeout_ms)
{
    if (r->fd >= 0)
        return -1;
    if (is_numeric(host)) {
        answer a;
        lookup(host, port, 1, &a);
        r->done(r->ud, a.ok, a.ok ? NULL : (const struct sockaddr *)&a.ss, a.len, a.err);
        return 0;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        /* The child only resolves and writes; it touches none of the parent's state and
         * leaves with _exit (no atexit handlers, no stdio flush of the parent's buffers). */
        close(p[0]);
        answer a;
        lookup(host, port, 0, &a);
        ssize_t n = write(p[1], &a, sizeof(a));
        _exit(n == (ssize_t)sizeof(a) ? 0 : 1);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    r->pid = pid;
    r->fd = p[0];
    if (et_loop_watch(r->loop, r->fd, ET_EV_READ, on_answer, r) != 0) {
        finish(r);
        return -1;
    }
    r->timer = et_loop_add_timer(r->loop, timeout_ms ? timeout_ms : 10000, 0, on_timeout, r);
    return 0;
}

void et_resolver_destroy(et_resolver *r)
{
    if (!r)
        return;
    finish(r);
    free(r);
}
