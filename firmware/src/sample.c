/* sample.c - the sample stage. See sample.h for the policy.
 *
 * One cycle of one target is a little state machine driven by httpc callbacks:
 *
 *   start_cycle -> [goroutine proto|debug=2] -> [heap debug=1] -> [goroutineleak] -> [trace]
 *               -> read /proc -> analyzer -> cycle callback -> release workspace
 *
 * Each step streams its body straight into a parser that lives in the cycle's workspace;
 * no body is ever held whole. A failing step records its error and the cycle moves on:
 * a broken heap endpoint must not hide a goroutine leak. */
#include "sample.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "parse_goroutine.h"
#include "parse_heap.h"
#include "parse_pprof.h"
#include "parse_proc.h"
#include "trace.h"

enum step {
    STEP_GOROUTINE1,
    STEP_GOROUTINE2,
    STEP_HEAP,
    STEP_LEAK,
    STEP_TRACE,
};
#define MAX_STEPS 5

/* A 404 on goroutineleak means Go < 1.26 or the experiment is off; look again after an
 * hour in case the service was upgraded in place. */
#define LEAK_ABSENT_RETRY_MS (3600u * 1000u)

typedef struct et_workspace {
    et_sampler *owner;
    et_gparser gparse;
    et_hparser hparse;
    et_pparser pparse;
    et_gprofile g;
    et_gprofile leak;
    et_hprofile h;
    et_procstat proc;
    et_findings findings;
    et_trace_parser *tparse;
    et_trace_summary tsum;
} et_workspace;

struct et_sampler {
    int used;
    et_sched *sched;
    et_sample_target t;
    et_analyzer an;
    et_timer_id timer;
    int queued;
    uint32_t cycles;
    uint64_t last_deep_ms, last_leak_ms, last_trace_ms;
    uint64_t leak_absent_until_ms;
    int trace_absent;
    /* the cycle in progress */
    et_workspace *ws;
    uint8_t steps[MAX_STEPS];
    int nsteps, step;
    int req;
    uint64_t cycle_start_ms;
    et_sample_cost cost;
    int deep, target_down, got_g, got_leak, got_h, got_trace;
    int force_gc;                   /* this cycle's heap fetch forces a GC (heap?gc=1), before debug=2 */
    int body_bad;
    char error[160];
};

struct et_sched {
    et_loop *loop;
    et_httpc *http;
    et_sched_conf conf;
    et_cycle_cb cb;
    void *ud;
    et_workspace *ws[ET_SAMPLE_WORKSPACES];
    et_sampler targets[ET_SAMPLE_MAX_TARGETS];
    et_sampler *queue[ET_SAMPLE_MAX_TARGETS]; /* FIFO of samplers due, waiting for a workspace */
    unsigned qhead, qlen;
};

static void run_step(et_sampler *sp);

void et_sched_conf_from_config(et_sched_conf *sc, const et_config *c)
{
    memset(sc, 0, sizeof *sc);
    sc->interval_ms = c->interval_ms;
    sc->deep_interval_ms = c->deep_interval_ms;
    sc->leak_interval_ms = c->leak_interval_ms;
    sc->trace_seconds = c->trace_seconds;
    et_strlcpy(sc->proc_root, c->proc_root, sizeof sc->proc_root);
    et_analyze_conf_defaults(&sc->analyze);
    for (uint32_t i = 0; i < c->nallow; i++)
        et_analyze_conf_allow(&sc->analyze, c->allow[i]);
    et_http_opts_default(&sc->http);
    /* Local services answer in milliseconds; a long silence means a wedged service, and
     * waiting on it would hold a workspace that other targets need. */
    sc->http.connect_timeout_ms = 1000;
    sc->http.idle_timeout_ms = 4000;
    sc->http.total_timeout_ms = 30000 + c->trace_seconds * 1000u;
}

/* ---- scheduling --------------------------------------------------------------------- */

static et_workspace *free_workspace(et_sched *s)
{
    for (int i = 0; i < ET_SAMPLE_WORKSPACES; i++)
        if (s->ws[i] && !s->ws[i]->owner)
            return s->ws[i];
    return NULL;
}

static void start_cycle(et_sampler *sp, et_workspace *ws);

static void on_due(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    et_sampler *sp = ud;
    et_sched *s = sp->sched;
    sp->timer = 0;
    if (sp->ws || sp->queued)
        return;
    et_workspace *ws = free_workspace(s);
    if (ws) {
        start_cycle(sp, ws);
        return;
    }
    sp->queued = 1;
    s->queue[(s->qhead + s->qlen) % ET_SAMPLE_MAX_TARGETS] = sp;
    s->qlen++;
}

static void schedule_next(et_sampler *sp)
{
    et_sched *s = sp->sched;
    uint32_t interval = sp->t.interval_ms ? sp->t.interval_ms : s->conf.interval_ms;
    uint64_t now = et_loop_now(s->loop);
    uint64_t due = sp->cycle_start_ms + interval;
    uint32_t delay = due > now ? (uint32_t)(due - now) : 0;
    sp->timer = et_loop_add_timer(s->loop, delay, 0, on_due, sp);
}

/* A waiting sampler (not its first cycle, not running) counts its next cycle from the last
 * start with the interval in force now. */
static void retime(et_sampler *sp)
{
    if (!sp->timer || !sp->cycle_start_ms)
        return;
    et_loop_cancel_timer(sp->sched->loop, sp->timer);
    schedule_next(sp);
}

void et_sched_retune(et_sched *s, const et_sched_conf *conf)
{
    s->conf.interval_ms = conf->interval_ms;
    s->conf.deep_interval_ms = conf->deep_interval_ms;
    s->conf.leak_interval_ms = conf->leak_interval_ms;
    s->conf.trace_seconds = conf->trace_seconds;
    s->conf.analyze = conf->analyze;
    s->conf.http.total_timeout_ms = conf->http.total_timeout_ms;
    for (int i = 0; i < ET_SAMPLE_MAX_TARGETS; i++) {
        et_sampler *sp = &s->targets[i];
        if (!sp->used)
            continue;
        sp->an.conf = s->conf.analyze; /* the allow list; the history stays */
        retime(sp);
    }
}

void et_sampler_set_policy(et_sampler *sp, uint32_t interval_ms, uint32_t profiles)
{
    if (sp->t.interval_ms == interval_ms && sp->t.profiles == profiles)
        return;
    sp->t.interval_ms = interval_ms;
    sp->t.profiles = profiles;
    retime(sp);
}

static void release_workspace(et_sched *s, et_workspace *ws)
{
    ws->owner = NULL;
    while (s->qlen) {
        et_sampler *next = s->queue[s->qhead];
        s->qhead = (s->qhead + 1) % ET_SAMPLE_MAX_TARGETS;
        s->qlen--;
        if (!next->used || !next->queued)
            continue;
        next->queued = 0;
        start_cycle(next, ws);
        return;
    }
}

/* ---- one cycle ---------------------------------------------------------------------- */

static int wants(const et_sampler *sp, uint32_t bit)
{
    return sp->t.profiles == 0 || (sp->t.profiles & bit);
}

static void start_cycle(et_sampler *sp, et_workspace *ws)
{
    et_sched *s = sp->sched;
    uint64_t now = et_loop_now(s->loop);
    sp->ws = ws;
    ws->owner = sp;
    sp->cycle_start_ms = now;
    memset(&sp->cost, 0, sizeof sp->cost);
    sp->deep = sp->target_down = sp->got_g = sp->got_leak = sp->got_h = sp->got_trace = sp->force_gc = 0;
    sp->error[0] = 0;
    sp->nsteps = sp->step = 0;

    unsigned deep_want = sp->cycles ? et_analyzer_wants_deep(&sp->an) : 0;
    int deep_due = (sp->cycles > 0 || s->conf.deep_interval_ms <= 1) && now - sp->last_deep_ms >= s->conf.deep_interval_ms;
    /* Every debug=2 dump is preceded by a forced GC (heap?gc=1 first): it stamps the wait
     * clock of every parked goroutine the dump is about to list, so that any later dump can
     * tell the ones that never woke since (analyze_survivors.c). One more GC beside a
     * stop-the-world dump that is rare by design. */
    int d2 = wants(sp, ET_P_GOROUTINE) && ((deep_want & ET_DEEP_DEBUG2) || deep_due);
    if (d2 && wants(sp, ET_P_HEAP)) {
        sp->force_gc = 1;
        sp->steps[sp->nsteps++] = STEP_HEAP;
    }
    if (wants(sp, ET_P_GOROUTINE)) {
        if ((deep_want & ET_DEEP_DEBUG2) || deep_due) {
            sp->steps[sp->nsteps++] = STEP_GOROUTINE2;
            sp->deep = 1;
        } else {
            sp->steps[sp->nsteps++] = STEP_GOROUTINE1;
        }
    }
    if (wants(sp, ET_P_HEAP) && !sp->force_gc)
        sp->steps[sp->nsteps++] = STEP_HEAP;
    if (wants(sp, ET_P_GOROUTINELEAK) && now >= sp->leak_absent_until_ms &&
        (sp->last_leak_ms == 0 || now - sp->last_leak_ms >= s->conf.leak_interval_ms ||
         ((deep_want & ET_DEEP_LEAKPROF) && now - sp->last_leak_ms >= s->conf.interval_ms * 2u)))
        sp->steps[sp->nsteps++] = STEP_LEAK;
    /* A trace costs ~1% CPU for its window and Go serves one at a time per process: only
     * when a site is suspected, or at the deep interval, and never twice in one interval. */
    if (wants(sp, ET_P_TRACE) && ws->tparse && !sp->trace_absent && s->conf.trace_seconds &&
        (((deep_want & ET_DEEP_TRACE) && now - sp->last_trace_ms >= s->conf.interval_ms * 2u) ||
         (deep_due && sp->t.profiles & ET_P_TRACE)))
        sp->steps[sp->nsteps++] = STEP_TRACE;
    run_step(sp);
}

static int on_body(void *ud, const char *buf, size_t n)
{
    et_sampler *sp = ud;
    et_workspace *ws = sp->ws;
    sp->cost.bytes += n;
    int rc = 0;
    switch (sp->steps[sp->step]) {
    case STEP_GOROUTINE1:
    case STEP_LEAK:
        rc = et_pparse_feed(&ws->pparse, buf, n);
        break;
    case STEP_GOROUTINE2:
        rc = et_gparse_feed(&ws->gparse, buf, n);
        break;
    case STEP_HEAP:
        rc = et_hparse_feed(&ws->hparse, buf, n);
        break;
    case STEP_TRACE:
        rc = et_trace_parser_feed(ws->tparse, (const uint8_t *)buf, n);
        break;
    }
    /* Stop downloading a body that is already known not to be what we asked for. */
    if (rc < 0)
        sp->body_bad = 1;
    return rc < 0 ? -1 : 0;
}

static void note_error(et_sampler *sp, const char *what, const char *msg)
{
    sp->cost.errors++;
    if (!sp->error[0])
        snprintf(sp->error, sizeof sp->error, "%s: %s", what, msg);
    et_debug("%s: %s: %s", sp->t.service, what, msg);
}

static const char *step_name(int step)
{
    static const char *const n[] = {"goroutine", "goroutine?debug=2", "heap?debug=1", "goroutineleak", "trace"};
    return n[step];
}

static void finish_cycle(et_sampler *sp);

static void on_done(void *ud, const et_http_result *r)
{
    et_sampler *sp = ud;
    et_workspace *ws = sp->ws;
    int step = sp->steps[sp->step];
    char err[160] = "";
    sp->req = 0;
    sp->cost.fetches++;
    uint64_t now = et_loop_now(sp->sched->loop);

    int ok = r->err == ET_HTTP_OK;
    if (!ok && !(r->err == ET_HTTP_EABORTED && sp->body_bad)) {
        if (step == STEP_LEAK && r->err == ET_HTTP_ENOTFOUND) {
            sp->leak_absent_until_ms = now + LEAK_ABSENT_RETRY_MS;
        } else if (step == STEP_TRACE && r->err == ET_HTTP_ENOTFOUND) {
            sp->trace_absent = 1;
        } else {
            note_error(sp, step_name(step), r->msg[0] ? r->msg : et_http_strerror(r->err));
            if ((step == STEP_GOROUTINE1 || step == STEP_GOROUTINE2) && r->status == 0) {
                /* No HTTP answer at all: the service is down or wedged. Skip its other
                 * endpoints this cycle instead of timing out on each. */
                sp->target_down = 1;
                sp->step = sp->nsteps;
                finish_cycle(sp);
                return;
            }
        }
    }
    switch (step) {
    case STEP_GOROUTINE1:
        if (et_pparse_finish(&ws->pparse, err, sizeof err) == ET_PP_GOROUTINE && ok)
            sp->got_g = 1;
        else if (ok || sp->body_bad)
            note_error(sp, step_name(step), err);
        break;
    case STEP_GOROUTINE2:
        if (et_gparse_finish(&ws->gparse, err, sizeof err) == 0 && ok)
            sp->got_g = 1;
        else if (ok || sp->body_bad)
            note_error(sp, step_name(step), err);
        if (step == STEP_GOROUTINE2 && sp->got_g)
            sp->last_deep_ms = now;
        break;
    case STEP_LEAK:
        if (et_pparse_finish(&ws->pparse, err, sizeof err) == ET_PP_GOROUTINE && ok) {
            sp->got_leak = 1;
            sp->last_leak_ms = now;
        } else if (ok || sp->body_bad) {
            note_error(sp, step_name(step), err);
        }
        break;
    case STEP_HEAP:
        if (et_hparse_finish(&ws->hparse, err, sizeof err) == 0 && ok)
            sp->got_h = 1;
        else if (ok || sp->body_bad)
            note_error(sp, step_name(step), err);
        break;
    case STEP_TRACE: {
        int st = et_trace_parser_finish(ws->tparse, &ws->tsum);
        if (ok && (st == ET_TRACE_OK || st == ET_TRACE_PARTIAL)) {
            sp->got_trace = 1;
            sp->deep = 1;
        } else if (ok || sp->body_bad) {
            note_error(sp, "trace", ws->tsum.error[0] ? ws->tsum.error : "unreadable trace");
        }
        sp->last_trace_ms = now;
        break;
    }
    }
    sp->step++;
    run_step(sp);
}

static void run_step(et_sampler *sp)
{
    et_sched *s = sp->sched;
    et_workspace *ws = sp->ws;
    while (sp->step < sp->nsteps) {
        int step = sp->steps[sp->step];
        char url[ET_URL_MAX + 64];
        const char *base = sp->t.url;
        size_t bl = strlen(base);
        while (bl > 0 && base[bl - 1] == '/')
            bl--;
        et_http_opts o = s->conf.http;
        o.netns_fd = sp->t.netns_fd;
        sp->body_bad = 0;
        switch (step) {
        case STEP_GOROUTINE1:
            /* The proto form, not debug=1: debug=1 elides the runtime frames (gopark,
             * chanrecv, semacquire...) that tell which primitive a goroutine waits on,
             * and it is larger on the wire than the gzipped proto. */
            snprintf(url, sizeof url, "%.*s/goroutine", (int)bl, base);
            et_pparse_init(&ws->pparse, &ws->g, NULL);
            break;
        case STEP_GOROUTINE2:
            /* Go stops the world and formats every goroutine before the first byte: a
             * 100k-goroutine dump can be silent for many seconds on a loaded gateway. */
            o.idle_timeout_ms = ET_MAX(o.idle_timeout_ms, 45000u);
            o.total_timeout_ms = ET_MAX(o.total_timeout_ms, 120000u);
            snprintf(url, sizeof url, "%.*s/goroutine?debug=2", (int)bl, base);
            et_gparse_init(&ws->gparse, &ws->g, ET_GP_GOROUTINE, 2);
            break;
        case STEP_LEAK:
            snprintf(url, sizeof url, "%.*s/goroutineleak", (int)bl, base);
            et_pparse_init(&ws->pparse, &ws->leak, NULL);
            break;
        case STEP_HEAP:
            snprintf(url, sizeof url, "%.*s/heap?debug=1%s", (int)bl, base, sp->force_gc ? "&gc=1" : "");
            et_hparse_init(&ws->hparse, &ws->h);
            break;
        case STEP_TRACE: {
            snprintf(url, sizeof url, "%.*s/trace?seconds=%u", (int)bl, base,
                     (unsigned)s->conf.trace_seconds);
            /* The runtime may hold trace data until a generation ends: allow the window. */
            o.idle_timeout_ms = ET_MAX(o.idle_timeout_ms, s->conf.trace_seconds * 1000u + 5000u);
            et_trace_parser_free(ws->tparse);
            ws->tparse = et_trace_parser_new(NULL);
            if (!ws->tparse) {
                note_error(sp, "trace", "out of memory for the trace parser");
                sp->step++;
                continue;
            }
            break;
        }
        }
        int id = et_http_get(s->http, url, &o, on_body, on_done, sp);
        if (id > 0) {
            sp->req = id;
            return;
        }
        note_error(sp, step_name(step), et_http_strerror(-id));
        if (step == STEP_GOROUTINE1 || step == STEP_GOROUTINE2) {
            sp->target_down = 1;
            break;
        }
        sp->step++;
    }
    finish_cycle(sp);
}

static void finish_cycle(et_sampler *sp)
{
    et_sched *s = sp->sched;
    et_workspace *ws = sp->ws;
    uint64_t now = et_loop_now(s->loop);
    int have_proc = 0;
    if (sp->t.pid > 0 && et_proc_read(s->conf.proc_root, sp->t.pid, &ws->proc) == 0) {
        have_proc = 1;
        if (sp->t.start_ticks && ws->proc.start_time_ticks && ws->proc.start_time_ticks != sp->t.start_ticks) {
            /* The PID was reused by another process: its figures are not this target's. */
            have_proc = 0;
        }
    }
    et_sample_in in = {
        .t_ms = sp->cycle_start_ms,
        .goroutine = sp->got_g ? &ws->g : NULL,
        .leak = sp->got_leak ? &ws->leak : NULL,
        .heap = sp->got_h ? &ws->h : NULL,
        .proc = have_proc ? &ws->proc : NULL,
        .trace = sp->got_trace ? (const struct et_trace_summary *)&ws->tsum : NULL,
    };
    if (!sp->target_down)
        et_analyzer_add(&sp->an, &in);
    et_analyzer_findings(&sp->an, &ws->findings);
    sp->cost.ms = (uint32_t)(now - sp->cycle_start_ms);
    sp->cycles++;

    et_cycle c = {
        .sampler = sp,
        .target = &sp->t,
        .t_ms = sp->cycle_start_ms,
        .goroutine = in.goroutine,
        .leak = in.leak,
        .heap = in.heap,
        .proc = in.proc,
        .trace = in.trace,
        .findings = &ws->findings,
        .analyzer = &sp->an,
        .cost = sp->cost,
        .deep = sp->deep,
        .target_down = sp->target_down,
    };
    et_strlcpy(c.error, sp->error, sizeof c.error);
    sp->ws = NULL;
    schedule_next(sp);
    if (s->cb)
        s->cb(s->ud, &c);
    release_workspace(s, ws);
}

/* ---- targets ------------------------------------------------------------------------ */

et_sched *et_sched_create(et_loop *loop, et_httpc *http, const et_sched_conf *conf, et_cycle_cb cb, void *ud)
{
    et_sched *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->loop = loop;
    s->http = http;
    s->conf = *conf;
    s->cb = cb;
    s->ud = ud;
    for (int i = 0; i < ET_SAMPLE_WORKSPACES; i++) {
        s->ws[i] = calloc(1, sizeof(et_workspace));
        if (!s->ws[i]) {
            et_sched_destroy(s);
            return NULL;
        }
    }
    return s;
}

void et_sched_destroy(et_sched *s)
{
    if (!s)
        return;
    for (int i = 0; i < ET_SAMPLE_MAX_TARGETS; i++)
        if (s->targets[i].used)
            et_sched_remove(s, &s->targets[i]);
    for (int i = 0; i < ET_SAMPLE_WORKSPACES; i++) {
        if (s->ws[i])
            et_trace_parser_free(s->ws[i]->tparse);
        free(s->ws[i]);
    }
    free(s);
}

et_sampler *et_sched_add(et_sched *s, const et_sample_target *t, uint32_t first_delay_ms)
{
    for (int i = 0; i < ET_SAMPLE_MAX_TARGETS; i++) {
        et_sampler *sp = &s->targets[i];
        if (sp->used)
            continue;
        memset(sp, 0, sizeof *sp);
        sp->used = 1;
        sp->sched = s;
        sp->t = *t;
        et_analyzer_init(&sp->an, &s->conf.analyze);
        sp->timer = et_loop_add_timer(s->loop, first_delay_ms, 0, on_due, sp);
        return sp;
    }
    return NULL;
}

static int same_identity(const et_sample_target *a, const et_sample_target *b)
{
    if (a->identity_hash || b->identity_hash)
        return a->identity_hash == b->identity_hash;
    return !strcmp(a->service, b->service) && !strcmp(a->pod_namespace, b->pod_namespace) &&
           !strcmp(a->pod_name, b->pod_name) && !strcmp(a->container, b->container);
}

et_sampler *et_sched_find(et_sched *s, const et_sample_target *identity)
{
    for (int i = 0; i < ET_SAMPLE_MAX_TARGETS; i++)
        if (s->targets[i].used && same_identity(&s->targets[i].t, identity))
            return &s->targets[i];
    return NULL;
}

et_sampler *et_sched_find_service(et_sched *s, const char *service)
{
    for (int i = 0; i < ET_SAMPLE_MAX_TARGETS; i++)
        if (s->targets[i].used && !strcmp(s->targets[i].t.service, service))
            return &s->targets[i];
    return NULL;
}

void et_sampler_new_incarnation(et_sampler *sp, int pid, uint64_t start_ticks)
{
    sp->t.pid = pid;
    sp->t.start_ticks = start_ticks;
    /* A restarted process starts from zero goroutines and an empty heap: its history says
     * nothing about the new incarnation, and keeping it would read the restart as a drop. */
    et_analyzer_reset(&sp->an);
    sp->leak_absent_until_ms = 0;
    sp->trace_absent = 0;
}

void et_sched_remove(et_sched *s, et_sampler *sp)
{
    if (!sp->used)
        return;
    if (sp->req)
        et_http_cancel(s->http, sp->req); /* its on_done finishes the cycle */
    if (sp->timer)
        et_loop_cancel_timer(s->loop, sp->timer);
    if (sp->t.netns_fd >= 0)
        close(sp->t.netns_fd);
    sp->used = 0;
    sp->queued = 0;
}

const et_sample_target *et_sampler_target(const et_sampler *sp) { return &sp->t; }
uint32_t et_sampler_cycles(const et_sampler *sp) { return sp->cycles; }

/* ---- PID of a local listener -------------------------------------------------------- */

static uint64_t listen_inode(const char *path, uint16_t port)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[512];
    uint64_t found = 0;
    if (!fgets(line, sizeof line, f)) { /* header */
        fclose(f);
        return 0;
    }
    while (!found && fgets(line, sizeof line, f)) {
        /* "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode" */
        char local[80], rem[80];
        unsigned st;
        unsigned long long inode;
        if (sscanf(line, "%*d: %79s %79s %x %*s %*s %*s %*s %*s %llu", local, rem, &st, &inode) != 4)
            continue;
        char *colon = strrchr(local, ':');
        if (!colon || st != 0x0A)
            continue;
        unsigned p = (unsigned)strtoul(colon + 1, NULL, 16);
        if (p == port)
            found = inode;
    }
    fclose(f);
    return found;
}

int et_pid_for_local_port(const char *proc_root, uint16_t port)
{
    char path[320];
    uint64_t inode = 0;
    snprintf(path, sizeof path, "%s/net/tcp", proc_root);
    inode = listen_inode(path, port);
    if (!inode) {
        snprintf(path, sizeof path, "%s/net/tcp6", proc_root);
        inode = listen_inode(path, port);
    }
    if (!inode)
        return 0;
    char want[48];
    snprintf(want, sizeof want, "socket:[%" PRIu64 "]", inode);
    DIR *d = opendir(proc_root);
    if (!d)
        return 0;
    int pid = 0;
    struct dirent *de;
    while (!pid && (de = readdir(d))) {
        char *end;
        long p = strtol(de->d_name, &end, 10);
        if (*end || p <= 0)
            continue;
        snprintf(path, sizeof path, "%s/%ld/fd", proc_root, p);
        DIR *fd = opendir(path);
        if (!fd)
            continue;
        struct dirent *fe;
        while ((fe = readdir(fd))) {
            char lp[600], target[64];
            snprintf(lp, sizeof lp, "%s/%s", path, fe->d_name);
            ssize_t n = readlink(lp, target, sizeof target - 1);
            if (n <= 0)
                continue;
            target[n] = 0;
            if (!strcmp(target, want)) {
                pid = (int)p;
                break;
            }
        }
        closedir(fd);
    }
    closedir(d);
    return pid;
}
