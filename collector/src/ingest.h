/* ingest.h - the collector's CoAP/DTLS server: receives snapshots, validates them and
 * hands them to the store; answers only after the durable commit.
 *
 * Resource: POST coaps://HOST:5684/s
 *   Content-Format: 42 (application/octet-stream) carrying the wire envelope (wire/FORMAT.md).
 *   Block1 (RFC 7959) for bodies larger than one block; the body is capped (max_body).
 * Responses:
 *   2.01 Created     stored (payload "new <snapshot-id>")
 *   2.04 Changed     already stored earlier: a retry (payload "dup <snapshot-id>")
 *   2.31 Continue    Block1: next block please
 *   4.00 Bad Request malformed body: corrupt zstd, bad CBOR, schema violation (diagnostic payload)
 *   4.01 Unauthorized  no authenticated identity, the device was revoked, or the session's
 *                      key was rotated away (a new handshake with the current key is needed)
 *   4.03 Forbidden   the payload's device id is not the DTLS identity
 *   4.08 Request Entity Incomplete  Block1: no body in progress under this Request-Tag/token
 *                                   at this block (start again at block 0)
 *   4.13 Request Entity Too Large   body over max_body (Size1 carries the limit)
 *   4.15 Unsupported Content-Format wrong/missing Content-Format or not a wire envelope
 *   5.00 Internal    the database failed; the agent retries
 *   5.03 Service Unavailable  Block1 reassembly memory or table full of bodies that are moving
 * Every rejection increments a counter (ingest_counters) and logs one line.
 *
 * Group commit: under load (other requests staged or datagrams waiting) a request whose
 * snapshot was staged in the open transaction is answered with an empty ACK and registered
 * as a libcoap async request; once the batch is gathered the transaction commits once and
 * every staged request gets its separate response. When nothing else is queued the request
 * commits at once and the answer is piggy-backed on the ACK (fewer datagrams for a device on
 * a lossy link). With group_commit = 0 every request commits alone (one fsync each).
 */
#ifndef COLL_INGEST_H
#define COLL_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "decode.h"
#include "store.h"
#include "command.h"

#define INGEST_CF_OCTET_STREAM 42
#define INGEST_PATH "s"
#define INGEST_DEFAULT_MAX_BODY (256u * 1024u)

typedef struct ingest_counters {
    uint64_t requests;         /* POSTs that reached the handler (every block counts) */
    uint64_t snapshots_new;
    uint64_t snapshots_dup;
    uint64_t bad_request;      /* 4.00 / 4.22: can never be stored */
    uint64_t bad_zstd, bad_cbor, bad_schema; /* breakdown of bad_request (schema = 4.22) */
    uint64_t too_large;        /* 4.13 */
    uint64_t bad_format;       /* 4.15 */
    uint64_t identity_mismatch; /* payload device id != session identity: stored as the session's */
    uint64_t unauthenticated;  /* 4.01 */
    uint64_t block_incomplete; /* 4.08 */
    uint64_t block_busy;       /* 5.03: reassembly table or memory full of moving bodies */
    uint64_t block_expired;    /* partial bodies dropped after B1_IDLE_MS without a block */
    uint64_t block_evicted;    /* partial bodies dropped to make room */
    uint64_t block_restarted;  /* a block 0 replaced a partial body under the same key */
    uint64_t reassembly_bytes; /* gauge: buffer bytes of bodies in reassembly */
    uint64_t reassembly_bodies; /* gauge: bodies in reassembly */
    uint64_t store_errors;     /* 5.00 */
    uint64_t unknown_identity; /* DTLS handshakes with an identity not in the database */
    uint64_t revoked;          /* handshakes and requests refused: the device is revoked */
    uint64_t key_retired;      /* requests refused: the session's key was rotated away */
    uint64_t key_promoted;     /* devices that completed a handshake with their new key */
    uint64_t key_fallback;     /* failed handshakes during a rotation: the other key is tried next */
    uint64_t commits;
    uint64_t bytes;            /* body bytes of accepted snapshots */
    uint64_t unreadable;       /* 5.01: unknown envelope/schema version or dictionary */
    uint64_t checkins;         /* empty POSTs: a device with nothing to upload asking for commands */
    uint64_t commands_sent;    /* commands handed out in answers (re-deliveries included) */
    uint64_t started_reports;  /* commands marked started by an "r=ID" report (wire/command.h) */
    uint64_t started_bad;      /* "r=" options that do not parse: ignored */
    uint64_t captures;         /* capture results stored (wire/capture.h) */
} ingest_counters;

/* Result of ingest_payload. */
typedef struct ingest_result {
    int code;                  /* 201, 204, 400, 413, 415, 422, 500, 501 */
    int staged;                /* 1: written to the open transaction, answer after commit */
    char diag[160];
    size_t cmdlen;             /* downlink commands for the answer (wire/command.h); 0 = none */
    uint8_t cmd[ET_CMD_DOC_MAX];
} ingest_result;

/* The decode + validate + stage step, without CoAP (fuzzed by tests/fuzz/fuzz_collector_ingest.c).
 * device: authenticated identity. content_format: -1 when absent. Opens a transaction if
 * none is open; the caller commits. received_ms: collector wall clock. */
void ingest_payload(coll_store *st, coll_decoder *dec, ingest_counters *c, const char *device,
                    const uint8_t *body, size_t len, int content_format, size_t max_body, int64_t received_ms,
                    int keep_payload, ingest_result *r);

typedef struct ingest_params {
    const char *listen;        /* "ADDR:PORT" for coaps (DTLS); default 0.0.0.0:5684 */
    const char *insecure_plain_listen; /* optional "ADDR:PORT" for plain coap, tests only: the
                                  device is then named by the Uri-Query "d=ID", so anyone can
                                  write as any device. Only from --insecure-plain-listen, never
                                  from the config file. NULL: off */
    size_t max_body;           /* 0 = INGEST_DEFAULT_MAX_BODY */
    int group_commit;          /* 1 = batch commits per loop iteration (default) */
    int store_payload;         /* keep the raw envelope bytes in snapshots.payload */
    unsigned stats_interval_s; /* log counters this often (0 = only on SIGUSR1) */
    const char *pki_cert, *pki_key, *pki_ca; /* optional certificate setup */
} ingest_params;

/* Runs the server until SIGTERM/SIGINT. Returns the process exit code. */
int ingest_serve(coll_store *st, coll_decoder *dec, const ingest_params *p);

/* One-line counters, for logs and tests ("new=.. dup=.. bad=.."). */
void ingest_format_counters(const ingest_counters *c, char *buf, size_t len);

/* One timestamped line on stderr, for the ingest_* family. */
void ingest_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
