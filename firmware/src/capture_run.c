/* capture_run.c - see capture_run.h. */
#include "capture_run.h"
#include "base.h"
#include "capture.h"
#include "snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

struct et_caprun {
    et_loop *loop;
    et_httpc *http;
    et_sched *sched;
    spool *sp;
    uint8_t boot_id[16];
    uint64_t seq;
    et_caprun_kick kick;
    et_caprun_started started;
    void *ud;
    et_cmd q[ET_CAPRUN_QUEUE];
    unsigned nq;
    int busy;
    et_cmd cur;
    uint8_t *data; /* ET_CAPTURE_DATA_MAX while a capture runs */
    size_t len;
    int cut;
    et_timer_id retry;
    int req;      /* the HTTP request of the capture running */
    int closing;  /* destroy: a canceled request records nothing */
};

static void next(et_caprun *c);

/* The capture record into the spool (on the findings stream: evicted last). */
static void finish(et_caprun *c, const et_cmd *cmd, const uint8_t *data, size_t len, int cut, const char *error)
{
    et_capture cap = {.cmd_id = cmd->id, .kind = cmd->kind, .cut = cut, .wall_ms = (uint64_t)et_now_wall_ms(),
                      .data = data, .len = len};
    /* zstd when it pays (a pprof proto is gzip already; text and traces shrink): bytes on a
     * lossy cellular link are what a capture costs */
    uint8_t *z = len ? malloc(ET_CAPTURE_DATA_MAX) : NULL;
    size_t zn = z ? ZSTD_compress(z, ET_CAPTURE_DATA_MAX, data, len, 3) : 0;
    if (z && !ZSTD_isError(zn) && zn < len) {
        cap.data = z;
        cap.len = zn;
        cap.zstd = 1;
    }
    et_strlcpy(cap.target, cmd->target, sizeof(cap.target));
    et_strlcpy(cap.error, error ? error : "", sizeof(cap.error));
    uint8_t *wire = malloc(ET_CAPTURE_WIRE_MAX);
    size_t n = 0;
    char err[160];
    uint8_t id[ET_SNAP_ID_LEN];
    et_snapshot_new_id(id, c->boot_id, c->seq++);
    if (!wire || et_capture_encode(&cap, wire, ET_CAPTURE_WIRE_MAX, &n, err, sizeof(err)) ||
        spool_append(c->sp, SPOOL_F_FINDING, id, wire, n) != 0)
        et_error("capture: command %llu: cannot spool its result (%zu bytes)", (unsigned long long)cmd->id, n);
    else
        et_info("capture: command %llu (%s %s): %zu bytes%s%s%s", (unsigned long long)cmd->id,
                et_cmd_kind_name(cmd->kind), cmd->target, len, cut ? ", cut" : "", error ? ": " : "",
                error ? error : "");
    free(wire);
    free(z);
    if (c->kick)
        c->kick(c->ud);
}

static int on_body(void *ud, const char *buf, size_t n)
{
    et_caprun *c = ud;
    size_t room = ET_CAPTURE_DATA_MAX - c->len;
    memcpy(c->data + c->len, buf, n < room ? n : room);
    c->len += n < room ? n : room;
    if (n > room) {
        c->cut = 1;
        return -1; /* enough: the rest is not kept anyway */
    }
    return 0;
}

static void on_done(void *ud, const et_http_result *r)
{
    et_caprun *c = ud;
    char why[ET_CAPTURE_ERR_MAX];
    const char *error = NULL;
    c->req = 0;
    if (c->closing)
        return;
    if (r->err && !(r->err == ET_HTTP_EABORTED && c->cut)) {
        snprintf(why, sizeof(why), "%s%s%.100s", et_http_strerror(r->err), r->msg[0] ? ": " : "", r->msg);
        error = why;
    }
    finish(c, &c->cur, c->data, error ? 0 : c->len, c->cut, error);
    free(c->data);
    c->data = NULL;
    c->busy = 0;
    next(c);
}

static void on_retry(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    et_caprun *c = ud;
    c->retry = 0;
    next(c);
}

static void start(et_caprun *c)
{
    const et_cmd *cmd = &c->cur;
    et_sampler *s = c->sched ? et_sched_find_service(c->sched, cmd->target) : NULL;
    if (!s) {
        c->busy = 0;
        finish(c, cmd, NULL, 0, 0, "no such target on this gateway");
        return;
    }
    const et_sample_target *t = et_sampler_target(s);
    char url[sizeof(t->url) + 48];
    switch (cmd->kind) {
    case ET_CMD_TRACE:
        snprintf(url, sizeof(url), "%s/trace?seconds=%u", t->url, cmd->seconds);
        break;
    case ET_CMD_GOROUTINE_DEBUG2:
        snprintf(url, sizeof(url), "%s/goroutine?debug=2", t->url);
        break;
    case ET_CMD_GOROUTINELEAK:
        snprintf(url, sizeof(url), "%s/goroutineleak", t->url);
        break;
    default:
        snprintf(url, sizeof(url), "%s/heap", t->url);
        break;
    }
    et_http_opts o;
    et_http_opts_default(&o);
    o.netns_fd = t->netns_fd;
    o.accept_gzip = 0; /* the bytes as served: pprof protos are gzip files themselves */
    o.max_body = UINT64_MAX / 2; /* cut by on_body, not refused */
    uint32_t span = cmd->kind == ET_CMD_TRACE ? cmd->seconds * 1000u : 0;
    o.idle_timeout_ms = span + 5000;
    o.total_timeout_ms = span + 30000;
    c->data = malloc(ET_CAPTURE_DATA_MAX);
    c->len = 0;
    c->cut = 0;
    if (!c->data) {
        c->busy = 0;
        finish(c, cmd, NULL, 0, 0, "out of memory");
        return;
    }
    int rc = et_http_get(c->http, url, &o, on_body, on_done, c);
    if (rc > 0) {
        c->req = rc;
        if (c->started)
            c->started(c->ud, cmd->id);
    }
    if (rc == -ET_HTTP_EBUSY) {
        /* the samplers hold every slot: try again shortly, in order */
        free(c->data);
        c->data = NULL;
        memmove(c->q + 1, c->q, c->nq * sizeof(c->q[0]));
        c->q[0] = c->cur;
        c->nq++;
        c->busy = 0;
        c->retry = et_loop_add_timer(c->loop, 500, 0, on_retry, c);
        return;
    }
    if (rc < 0) {
        free(c->data);
        c->data = NULL;
        c->busy = 0;
        finish(c, cmd, NULL, 0, 0, et_http_strerror(-rc));
    }
}

static void next(et_caprun *c)
{
    while (!c->busy && !c->retry && c->nq) {
        c->cur = c->q[0];
        memmove(c->q, c->q + 1, --c->nq * sizeof(c->q[0]));
        c->busy = 1;
        start(c);
    }
}

et_caprun *et_caprun_create(et_loop *loop, et_httpc *http, et_sched *sched, spool *sp, const uint8_t boot_id[16],
                            et_caprun_kick kick, void *ud)
{
    et_caprun *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->http = http;
    c->sched = sched;
    c->sp = sp;
    memcpy(c->boot_id, boot_id, 16);
    /* ids differ from the snapshots' (same boot id): a high, per-start random seq space */
    c->seq = ((uint64_t)et_now_mono_ms() << 20) | 0x8000000000000000ull;
    c->kick = kick;
    c->ud = ud;
    return c;
}

void et_caprun_destroy(et_caprun *c)
{
    if (!c)
        return;
    if (c->retry)
        et_loop_cancel_timer(c->loop, c->retry);
    c->closing = 1;
    if (c->req > 0)
        et_http_cancel(c->http, c->req); /* a capture cut short by a stop is not recorded */
    free(c->data);
    free(c);
}

void et_caprun_on_started(et_caprun *c, et_caprun_started fn) { c->started = fn; }

void et_caprun_submit(et_caprun *c, const et_cmd *cmd)
{
    if (c->nq >= ET_CAPRUN_QUEUE) {
        finish(c, cmd, NULL, 0, 0, "too many captures waiting on this gateway");
        return;
    }
    c->q[c->nq++] = *cmd;
    next(c);
}
