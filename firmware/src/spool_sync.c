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
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* The worker and the loop hand the job over with an atomic state (release/acquire: the job's
 * contents are published with it) and wake each other through two pipes. No mutex or
 * condition variable: those pull several KB of libc into a static binary. */
static void *worker(void *arg)
{
    spool *sp = arg;
    char c;
    for (;;) {
        ssize_t n = read(sp->req_pipe[0], &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != 1 || c == 'q')
            break;
        if (atomic_load_explicit(&sp->job_state, memory_order_acquire) != SJ_QUEUED)
            continue;
        run_job(sp, &sp->job);
        atomic_store_explicit(&sp->job_state, SJ_DONE, memory_order_release);
        while (write(sp->done_pipe[1], "d", 1) < 0 && errno == EINTR)
            ;
    }
    while (write(sp->done_pipe[1], "x", 1) < 0 && errno == EINTR)
        ;
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

static int start_worker(spool *sp)
{
    if (pipe2(sp->req_pipe, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(sp->done_pipe, O_CLOEXEC) != 0) {
        close(sp->req_pipe[0]), close(sp->req_pipe[1]);
        return -1;
    }
    /* The worker takes no signals: the agent reads them from a signalfd, which only works
     * if no thread can have them delivered. It inherits the mask it is created with. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /* created detached (pthread_detach would link pthread_join and its timed wait) */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &attr, worker, sp);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        errno = rc;
        close(sp->req_pipe[0]), close(sp->req_pipe[1]);
        close(sp->done_pipe[0]), close(sp->done_pipe[1]);
        return -1;
    }
    /* spool_job_stop waits for its last byte instead of joining */
    return 0;
}

void spool_job_submit(spool *sp)
{
    if (sp->vfs->threads && !sp->worker_started) {
        /* started on first use: a spool that never batches never has a thread */
        if (start_worker(sp) == 0)
            sp->worker_started = 1;
        else
            et_warn("spool: no sync thread: %s", strerror(errno)); /* the job runs inline */
    }
    if (!sp->worker_started) {
        sp->job_state = SJ_DEFERRED;
        return;
    }
    atomic_store_explicit(&sp->job_state, SJ_QUEUED, memory_order_release);
    while (write(sp->req_pipe[1], "j", 1) < 0 && errno == EINTR)
        ;
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
        /* closed segments to sync and acked ones to delete go back on the lists */
        for (unsigned i = 0; i < j->n; i++) {
            const sjob_op *o = &j->op[i];
            size_t n = strlen(o->a);
            if (o->kind == SJ_SYNC && n > 4 && !strcmp(o->a + n - 4, ".seg") && sp->npend_sync < SJ_PEND)
                memcpy(sp->pend_sync[sp->npend_sync++], o->a, sizeof o->a);
            else if (o->kind == SJ_UNLINK && sp->npend_unlink < SJ_PEND)
                memcpy(sp->pend_unlink[sp->npend_unlink++], o->a, sizeof o->a);
        }
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
    int st = atomic_load_explicit(&sp->job_state, memory_order_acquire);
    if (st == SJ_IDLE)
        return 0;
    if (st == SJ_DEFERRED) {
        run_job(sp, &sp->job);
        return job_collect(sp);
    }
    if (st != SJ_DONE && !wait)
        return 0;
    /* One wake-up byte per job, written after SJ_DONE: reading it both waits and keeps the
     * pipe empty; the acquire load then makes the job's results visible. */
    char c;
    while (read(sp->done_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    atomic_load_explicit(&sp->job_state, memory_order_acquire);
    return job_collect(sp);
}

void spool_job_stop(spool *sp)
{
    spool_job_poll(sp, 1);
    if (!sp->worker_started)
        return;
    while (write(sp->req_pipe[1], "q", 1) < 0 && errno == EINTR)
        ;
    char c;
    while (read(sp->done_pipe[0], &c, 1) < 0 && errno == EINTR)
        ; /* "x": the worker touches nothing of ours after this */
    close(sp->req_pipe[0]), close(sp->req_pipe[1]);
    close(sp->done_pipe[0]), close(sp->done_pipe[1]);
    sp->worker_started = 0;
}
