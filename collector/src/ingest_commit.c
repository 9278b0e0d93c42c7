/* ingest_commit.c - group commit (see ingest_commit.h).
 *
 * A staged request waiting for the batch COMMIT is a malloc'ed `pending`, freed when its
 * separate response has gone out (libcoap holds a session reference for every async, so every
 * triggered one fires). The batch table holds at most MAX_PENDING: when it is full the batch
 * commits early, so memory does not grow with load. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ingest_commit.h"
#include "metrics.h"

#define MAX_PENDING 1024
/* longest a staged snapshot waits for its batch to fill before the COMMIT */
#define BATCH_MAX_MS 20

typedef struct pending {
    int code;
    int done;          /* commit finished: code is final */
    int has_block1;
    uint32_t block1;   /* encoded Block1 value to echo */
    char diag[80];
    size_t cmdlen;     /* the device's commands for the answer (ingest_respond) */
    uint8_t cmd[];
} pending;

static struct {
    coll_store *st;
    ingest_counters *c;
    int coap_fd;
    int group_commit;
    coap_async_t *batch[MAX_PENDING]; /* staged in the open transaction */
    unsigned npend;
    unsigned outstanding;             /* pending structs alive (staged or triggered) */
    struct timespec batch_t0; /* arrival of the first request of the open transaction (/metrics) */
    uint64_t new_at_commit;   /* snapshots_new at the last commit */
    int fail_code;            /* the answer to what the last failed COMMIT held: 503 or 500 */
} B;

void commit_setup(coll_store *st, ingest_counters *c, int coap_fd, int group_commit)
{
    memset(&B, 0, sizeof(B));
    B.st = st;
    B.c = c;
    B.coap_fd = coap_fd;
    B.group_commit = group_commit;
}

unsigned commit_pending(void) { return B.npend; }

void ingest_respond(coap_pdu_t *response, int code, const char *diag, int has_block1, uint32_t block1,
                    const uint8_t *cmd, size_t cmdlen)
{
    coap_pdu_set_code(response, (coap_pdu_code_t)COAP_RESPONSE_CODE(code));
    if (has_block1) {
        uint8_t b[4];
        coap_add_option(response, COAP_OPTION_BLOCK1, coap_encode_var_safe(b, sizeof(b), block1), b);
    }
    if (cmdlen && code / 100 == 2) {
        /* diagnostic, NUL, commands: one payload (coap_add_data may be called only once) */
        uint8_t buf[200 + ET_CMD_DOC_MAX];
        size_t dl = diag ? strnlen(diag, 200 - 1) : 0;
        if (dl)
            memcpy(buf, diag, dl);
        buf[dl] = 0;
        memcpy(buf + dl + 1, cmd, cmdlen);
        coap_add_data(response, dl + 1 + cmdlen, buf);
        return;
    }
    if (diag && diag[0])
        coap_add_data(response, strlen(diag), (const uint8_t *)diag);
}

int commit_answer_async(coap_session_t *session, const coap_pdu_t *request, coap_pdu_t *response)
{
    coap_async_t *async = coap_find_async(session, coap_pdu_get_token(request));
    if (!async)
        return 0;
    pending *pd = coap_async_get_app_data(async);
    if (pd && pd->done) {
        ingest_respond(response, pd->code, pd->diag, pd->has_block1, pd->block1, pd->cmd, pd->cmdlen);
        coap_async_set_app_data(async, NULL);
        free(pd);
        B.outstanding--;
    } else {
        ingest_respond(response, 500, "internal: async without result", 0, 0, NULL, 0);
    }
    return 1; /* libcoap frees the async after we return */
}

void commit_staged(coap_session_t *session, const coap_pdu_t *request, coap_pdu_t *response,
                   const ingest_result *r, int has_block1, uint32_t block1)
{
    /* Group commit only pays when others are queueing: with nothing else staged and no
     * datagram waiting, commit now and piggy-back the answer on the ACK (two datagrams per
     * snapshot instead of four, which is what a device on a lossy link wants). */
    struct pollfd pfd = {.fd = B.coap_fd, .events = POLLIN};
    int busy = B.npend > 0 || poll(&pfd, 1, 0) > 0;
    if (B.group_commit && busy && B.npend < MAX_PENDING) {
        pending *pd = calloc(1, sizeof(*pd) + r->cmdlen);
        coap_async_t *a = pd ? coap_register_async(session, request, 0) : NULL;
        if (!a)
            free(pd);
        if (a) {
            B.batch[B.npend++] = a;
            B.outstanding++;
            pd->code = r->code;
            pd->has_block1 = has_block1;
            pd->block1 = block1;
            snprintf(pd->diag, sizeof(pd->diag), "%.79s", r->diag);
            memcpy(pd->cmd, r->cmd, r->cmdlen);
            pd->cmdlen = r->cmdlen;
            coap_async_set_app_data(a, pd);
            return; /* no code: libcoap sends an empty ACK now, our answer after COMMIT */
        }
    }
    /* Synchronous path: commit (with whatever else is staged) before answering. */
    if (commit_flush()) {
        ingest_respond(response, B.fail_code, "database commit failed; retry", has_block1, block1, NULL, 0);
        return;
    }
    ingest_respond(response, r->code, r->diag, has_block1, block1, r->cmd, r->cmdlen);
}

void commit_gather(coap_context_t *ctx, volatile sig_atomic_t *stop)
{
    /* Keep reading while datagrams are waiting (each NO_WAIT round reads at most one datagram
     * from the shared server socket; libcoap's epoll fd polls readable while anything is
     * pending), bounded in count and time so a flood cannot delay the commit of what is
     * staged. */
    if (!B.npend)
        return;
    struct pollfd pfd = {.fd = B.coap_fd, .events = POLLIN};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned round = 0; round < 8 * MAX_PENDING && B.npend < MAX_PENDING && !*stop; round++) {
        if (poll(&pfd, 1, 0) <= 0)
            break;
        coap_io_process(ctx, COAP_IO_NO_WAIT);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= BATCH_MAX_MS)
            break;
    }
}

/* The separate responses go out in the next coap_io_process() (coap_check_async). */
void commit_batch_start(void)
{
    clock_gettime(CLOCK_MONOTONIC, &B.batch_t0);
}

int commit_flush(void)
{
    int ok = 1;
    if (store_in_txn(B.st)) {
        if (store_commit(B.st)) {
            ok = 0;
            B.c->store_errors++;
            /* the database gone away (PostgreSQL restarting) is "unavailable, retry": 5.03 */
            B.fail_code = store_unavailable(B.st) ? 503 : 500;
            B.c->store_unavailable += B.fail_code == 503;
            ingest_log("COMMIT failed: %s; %u staged requests get 5.%02d", store_errmsg(B.st), B.npend,
                       B.fail_code - 500);
        } else {
            B.c->commits++;
            struct timespec t1;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            metrics_ingest_commit((double)(t1.tv_sec - B.batch_t0.tv_sec) + (t1.tv_nsec - B.batch_t0.tv_nsec) / 1e9,
                                  B.c->snapshots_new - B.new_at_commit);
        }
        B.new_at_commit = B.c->snapshots_new;
    }
    for (unsigned i = 0; i < B.npend; i++) {
        pending *pd = coap_async_get_app_data(B.batch[i]);
        if (pd) {
            if (!ok) {
                pd->code = B.fail_code;
                snprintf(pd->diag, sizeof(pd->diag), "database commit failed; retry");
            }
            pd->done = 1;
        }
        coap_async_trigger(B.batch[i]);
    }
    B.npend = 0;
    return ok ? 0 : -1;
}
