/* spool_sync.c - the batch policy's fsyncs off the event loop.
 *
 * Why: the agent is one event loop. On a slow SD card an fdatasync takes 100 ms or more, and a
 * batch sync plus a state save is four of them in a row: CoAP retransmissions and HTTP
 * timeouts would fire that much late. Under fsync = batch the durability work (fdatasync of
 * the segments, of the new state file, its rename, the directory fsyncs and the deletion of
 * fully acknowledged segments) is therefore one job, run in order by a worker thread while
 * the loop goes on; spool_tick collects it. One job at a time: the loop writes state.tmp only
 * while no job is in flight. The job names files by path, so the loop may close or delete a
 * segment meanwhile (a segment deleted before its sync needs none).
 *
 * The loss bound stays batch_records: a job is started once half of them are unsynced (or
 * batch_ms after the first), and an append that would make batch_records unsynced while a
 * job is in flight waits for it (bounded back-pressure: it only happens when appends outrun
 * the card). fsync = always stays synchronous (spool_append returns once the record is on
 * flash: that is the point of it), and open, close, spool_sync and eviction wait for the job.
 *
 * A VFS that cannot be used from another thread (the power loss test's in-memory file system,
 * spool_vfs.threads = 0) gets the same job run on the loop's thread when it is collected, so
 * the test crashes the spool at every point between submitting and finishing a job too. */
#include "spool_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static int run_op(spool *sp, const sjob_op *o)
{
    int fd, r;
    switch (o->kind) {
    case SJ_SYNC:
        fd = IO(sp, open, o->a, SPOOL_O_WRONLY, 0);
        if (fd < 0)
            return errno == ENOENT ? 0 : -1; /* deleted meanwhile: nothing left to sync */
        r = IO(sp, fdatasync, fd);
        IO(sp, close, fd);
        return r;
    case SJ_SYNC_DIR:
        return IO(sp, fsync, sp->dirfd); /* fsync of a shared fd: both threads only fsync it */
    case SJ_RENAME:
        return IO(sp, rename, o->a, o->b);
    case SJ_UNLINK:
        return IO(sp, unlink, o->a) != 0 && errno != ENOENT ? -1 : 0;
    }
    errno = EINVAL;
    return -1;
}

static void run_job(spool *sp, sjob *j)
{
    j->err = 0;
    for (unsigned i = 0; i < j->n; i++)
        if (run_op(sp, &j->op[i]) != 0) {
            j->err = errno ? errno : EIO; /* later steps depend on this one: stop */
            break;
        }
}

static void *worker(void *arg)
{
    spool *sp = arg;
    pthread_mutex_lock(&sp->job_mu);
    for (;;) {
        while (sp->job_state != SJ_QUEUED && !sp->worker_stop)
            pthread_cond_wait(&sp->job_cv, &sp->job_mu);
        if (sp->job_state != SJ_QUEUED)
            break;
        sp->job_state = SJ_RUNNING;
        pthread_mutex_unlock(&sp->job_mu);
        run_job(sp, &sp->job);
        pthread_mutex_lock(&sp->job_mu);
        sp->job_state = SJ_DONE;
        pthread_cond_broadcast(&sp->job_cv);
    }
    pthread_mutex_unlock(&sp->job_mu);
    return NULL;
}

void spool_job_add(spool *sp, int kind, const char *a, const char *b)
{
    sjob *j = &sp->job;
    if (j->n >= SJ_MAX_OPS)
        return; /* callers leave room; an op dropped here is redone by the next job */
    sjob_op *o = &j->op[j->n++];
    o->kind = kind;
    snprintf(o->a, sizeof o->a, "%s", a ? a : "");
    snprintf(o->b, sizeof o->b, "%s", b ? b : "");
}

int spool_job_busy(const spool *sp) { return sp->job_state != SJ_IDLE; }

void spool_job_submit(spool *sp)
{
    if (sp->vfs->threads && !sp->worker_started) {
        /* started on first use: a spool that never batches never has a thread */
        if (pthread_mutex_init(&sp->job_mu, NULL) == 0 && pthread_cond_init(&sp->job_cv, NULL) == 0 &&
            pthread_create(&sp->worker, NULL, worker, sp) == 0)
            sp->worker_started = 1;
        else
            et_warn("spool: no sync thread (%s); syncing on the loop", strerror(errno));
    }
    if (!sp->worker_started) {
        sp->job_state = SJ_DEFERRED;
        return;
    }
    pthread_mutex_lock(&sp->job_mu);
    sp->job_state = SJ_QUEUED;
    pthread_cond_broadcast(&sp->job_cv);
    pthread_mutex_unlock(&sp->job_mu);
}

/* What a finished job means for the spool. */
static int job_collect(spool *sp)
{
    sjob *j = &sp->job;
    sp->job_state = SJ_IDLE;
    sp->inflight_records = 0;
    if (j->err) {
        /* nothing after the failed step happened: redo all of it with the next job */
        et_warn("spool: background sync failed: %s", strerror(j->err));
        for (int c = 0; c < NSTREAMS; c++)
            if (j->synced_streams & (1u << c))
                sp->st[c].unsynced = 1;
        sp->unsynced_records += j->records;
        sp->dir_dirty = 1;
        if (j->has_state) {
            sp->state_dirty = 1;
            sp->acks_since_save += j->acks ? j->acks : 1;
        }
        errno = j->err;
        return -1;
    }
    if (j->has_state && j->seq_written > sp->seq_durable)
        sp->seq_durable = j->seq_written;
    return 0;
}

int spool_job_poll(spool *sp, int wait)
{
    if (sp->job_state == SJ_IDLE)
        return 0;
    if (sp->job_state == SJ_DEFERRED) {
        run_job(sp, &sp->job);
        return job_collect(sp);
    }
    pthread_mutex_lock(&sp->job_mu);
    while (wait && sp->job_state != SJ_DONE)
        pthread_cond_wait(&sp->job_cv, &sp->job_mu);
    int done = sp->job_state == SJ_DONE;
    pthread_mutex_unlock(&sp->job_mu);
    return done ? job_collect(sp) : 0;
}

void spool_job_stop(spool *sp)
{
    spool_job_poll(sp, 1);
    if (!sp->worker_started)
        return;
    pthread_mutex_lock(&sp->job_mu);
    sp->worker_stop = 1;
    pthread_cond_broadcast(&sp->job_cv);
    pthread_mutex_unlock(&sp->job_mu);
    pthread_join(sp->worker, NULL);
    pthread_cond_destroy(&sp->job_cv);
    pthread_mutex_destroy(&sp->job_mu);
    sp->worker_started = 0;
}
