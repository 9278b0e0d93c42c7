/* discover_confirm.c - endpoint probing: each discovered port is confirmed with
 * GET <prefix> (the pprof index must mention "goroutine"), inside the target's network
 * namespace for a pod, before it is sampled. */
#include "discover_int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "base.h"
#include "loop.h"

/* ================================================================ confirmation */

static void confirm_launch(et_confirm_job *job);

static void confirm_retry(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    et_confirm_job *job = ud;
    job->retry = 0;
    confirm_launch(job);
}

static int confirm_body(void *ud, const char *buf, size_t n)
{
    et_confirm_ctx *c = ud;
    if (c->seen)
        return 0;
    /* "goroutine" may straddle two pieces: check the joint, then the piece. */
    char joint[24];
    size_t head = ET_MIN(n, (size_t)8);
    memcpy(joint, c->tail, c->ntail);
    memcpy(joint + c->ntail, buf, head);
    if (memmem(joint, c->ntail + head, "goroutine", 9) || memmem(buf, n, "goroutine", 9))
        c->seen = 1;
    /* the tail is the last 8 bytes of the stream so far, however small the pieces */
    if (n >= 8) {
        memcpy(c->tail, buf + n - 8, 8);
        c->ntail = 8;
    } else {
        size_t total = c->ntail + n, drop = total > 8 ? total - 8 : 0;
        memmove(c->tail, c->tail + drop, c->ntail - drop);
        memcpy(c->tail + c->ntail - drop, buf, n);
        c->ntail = total - drop;
    }
    return 0;
}

static void confirm_done(void *ud, const et_http_result *r)
{
    et_confirm_ctx *c = ud;
    et_confirm_job *job = c->job;
    et_target *t = &job->set->t[c->idx];
    char prefix[ET_PPROF_PREFIX_MAX];
    et_strlcpy(prefix, t->pprof_prefix, sizeof(prefix));
    if (c->netns_fd >= 0)
        close(c->netns_fd);
    c->netns_fd = -1;
    if (r->err == 0 && c->seen) {
        t->confirmed = ET_CONFIRM_OK;
        snprintf(t->confirm_msg, sizeof(t->confirm_msg), "GET %s -> %d in %u ms", prefix, r->status,
                 r->elapsed_ms);
    } else {
        t->confirmed = ET_CONFIRM_FAILED;
        if (r->err == 0)
            snprintf(t->confirm_msg, sizeof(t->confirm_msg), "GET %s -> %d but not a pprof index", prefix,
                     r->status);
        else
            snprintf(t->confirm_msg, sizeof(t->confirm_msg), "GET %.60s: %.90s", prefix, r->msg);
    }
    job->in_flight--;
    confirm_launch(job);
}

static void confirm_launch(et_confirm_job *job)
{
    while (job->next < job->set->n) {
        unsigned i = job->next;
        et_target *t = &job->set->t[i];
        if (t->confirmed != ET_CONFIRM_SKIPPED) {
            job->next++;
            continue;
        }
        et_confirm_ctx *c = &job->ctx[i];
        memset(c, 0, sizeof(*c));
        c->job = job;
        c->idx = i;
        c->netns_fd = -1;
        et_http_opts ho;
        et_http_opts_default(&ho);
        ho.connect_timeout_ms = job->timeout_ms;
        ho.idle_timeout_ms = job->timeout_ms;
        ho.total_timeout_ms = job->timeout_ms * 2;
        ho.max_body = 256 * 1024;
        if (t->foreign_netns) {
            c->netns_fd = et_target_open_netns(t, job->proc_root);
            if (c->netns_fd < 0) {
                t->confirmed = ET_CONFIRM_FAILED;
                snprintf(t->confirm_msg, sizeof(t->confirm_msg), "cannot open netns of PID %d: %s", t->pid,
                         strerror(errno));
                job->next++;
                continue;
            }
            ho.netns_fd = c->netns_fd;
        }
        char url[ET_URL_MAX + ET_PPROF_PREFIX_MAX];
        et_target_url(t, "", url, sizeof(url));
        int id = et_http_get(job->http, url, &ho, confirm_body, confirm_done, c);
        if (id == -ET_HTTP_EBUSY) {
            if (c->netns_fd >= 0)
                close(c->netns_fd);
            c->netns_fd = -1;
            /* Pool full. Our own completions launch more; if none of ours is in flight (the
             * samplers hold every slot), nothing would, so come back on a timer. */
            if (job->in_flight == 0 && !job->retry)
                job->retry = et_loop_add_timer(et_httpc_loop(job->http), 100, 0, confirm_retry, job);
            break;
        }
        job->next++;
        if (id < 0) {
            if (c->netns_fd >= 0)
                close(c->netns_fd);
            t->confirmed = ET_CONFIRM_FAILED;
            snprintf(t->confirm_msg, sizeof(t->confirm_msg), "GET %.100s: %s", url, et_http_strerror(id));
            continue;
        }
        job->in_flight++;
    }
    if (job->next >= job->set->n && job->in_flight == 0 && !job->finished) {
        job->finished = 1;
        if (job->done)
            job->done(job->ud);
    }
}

int et_discover_confirm_start(et_confirm_job *job, et_httpc *http, et_target_set *set, const char *proc_root,
                              uint32_t timeout_ms, void (*done)(void *ud), void *ud)
{
    memset(job, 0, sizeof(*job));
    job->set = set;
    job->http = http;
    job->proc_root = proc_root ? proc_root : "/proc";
    job->timeout_ms = timeout_ms ? timeout_ms : 2000;
    job->done = done;
    job->ud = ud;
    confirm_launch(job);
    return 0;
}

static void sync_confirm_done(void *ud)
{
    et_loop_stop((et_loop *)ud);
}

int et_discover_confirm(et_target_set *set, const et_discover_opts *o)
{
    et_loop *l = et_loop_create(16, 16);
    if (!l)
        return -1;
    et_httpc *h = et_httpc_create(l, 8);
    if (!h) {
        et_loop_destroy(l);
        return -1;
    }
    static et_confirm_job job; /* ~5 KB; one-shot command path, single-threaded */
    et_discover_confirm_start(&job, h, set, o ? o->proc_root : "/proc", o ? o->confirm_timeout_ms : 2000,
                              sync_confirm_done, l);
    while (!job.finished)
        if (et_loop_run(l) < 0)
            break;
    et_httpc_destroy(h);
    et_loop_destroy(l);
    et_target_set_compact(set);
    int ok = 0;
    for (unsigned i = 0; i < set->n; i++)
        ok += set->t[i].confirmed == ET_CONFIRM_OK;
    return ok;
}
