/* ingest_commit.h - group commit: answer a snapshot only after its transaction is durable.
 *
 * Under load (other requests staged or datagrams waiting) a request whose snapshot was staged
 * in the open transaction is answered with an empty ACK and registered as a libcoap async
 * request; once the batch is gathered the transaction commits once and every staged request
 * gets its separate response. When nothing else is queued the request commits at once and the
 * answer is piggy-backed on the ACK. With group_commit = 0 every request commits alone. */
#ifndef COLL_INGEST_COMMIT_H
#define COLL_INGEST_COMMIT_H

#include <signal.h>
#include <stdint.h>

#include <coap3/coap.h>

#include "ingest.h"
#include "store.h"

void commit_setup(coll_store *st, ingest_counters *c, int coap_fd, int group_commit);

/* Sets the answer: code, an optional Block1 echo and a diagnostic payload; on a 2.xx answer
 * the command document cmd (cmdlen > 0) follows the diagnostic after one NUL byte
 * (wire/command.h). */
void ingest_respond(coap_pdu_t *response, int code, const char *diag, int has_block1, uint32_t block1,
                    const uint8_t *cmd, size_t cmdlen);

/* A request libcoap hands us again after its batch committed: answers it and returns 1;
 * 0 when the request is not one of ours. */
int commit_answer_async(coap_session_t *session, const coap_pdu_t *request, coap_pdu_t *response);

/* Answers a request whose snapshot ingest_payload staged: joins the batch (empty ACK now,
 * the answer after COMMIT) or commits now and answers in response. */
void commit_staged(coap_session_t *session, const coap_pdu_t *request, coap_pdu_t *response,
                   const ingest_result *r, int has_block1, uint32_t block1);

/* Keeps reading datagrams while they wait, to fill the batch (bounded in count and time). */
void commit_gather(coap_context_t *ctx, volatile sig_atomic_t *stop);

/* COMMITs the open transaction and releases every waiting request with its final code.
 * 0 when durable (or nothing was open). */
int commit_flush(void);
/* The first request of a new transaction arrived: the ingest-to-commit latency that
 * commit_flush reports to /metrics (metrics.h) starts now. */
void commit_batch_start(void);

/* Requests staged in the open transaction. */
unsigned commit_pending(void);

#endif
