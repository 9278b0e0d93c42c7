/* uplink.h - the agent's CoAP/DTLS client: drains the spool to the collector.
 *
 *   et_uplink_params p; et_uplink_params_defaults(&p);
 *   et_uplink_load_credentials("/etc/edgetrace/credentials", &p, err, sizeof err);
 *   et_uplink *u = et_uplink_create(loop, spool, &p, err, sizeof err);
 *   ... spool_append(...); et_uplink_kick(u);      // after each new snapshot
 *   ... et_loop_run(loop) ...
 *   et_uplink_destroy(u);
 *
 * Protocol (the collector side is collector/src/ingest.h):
 *   POST coaps://COLLECTOR/s, Confirmable, Content-Format 42 (application/octet-stream),
 *   payload = the wire envelope exactly as spooled. Bodies larger than one block go
 *   block-wise (RFC 7959 Block1, libcoap COAP_BLOCK_USE_LIBCOAP, block size block_size).
 *   Answers (et_uplink_classify; the collector's side is README "Answer codes"):
 *   2.01 Created / 2.04 Changed -> spool_ack (the collector answers only after a durable
 *   commit; 2.04 means "already stored", i.e. a retry whose first answer was lost).
 *   4.00 / 4.22 -> corrupt bytes or a schema violation in a version the collector reads: no
 *   collector will ever store them; dropped from the spool and counted (rejected). These two
 *   are the only answers that delete a record.
 *   4.13, 4.15, 5.01 and unknown 4.xx -> "not now / not by me" (the collector's max_body, an
 *   unknown envelope or schema version, a dictionary it does not have): a collector upgrade
 *   or a config change could store it. The record is HELD: kept, counted (held), retried
 *   after its own backoff (hold_min_ms doubling up to hold_max_ms), and moved behind the
 *   others so that later snapshots still go. Two such answers in a row (nothing readable)
 *   slow the whole uplink down the same way.
 *   4.01 / 4.03, 4.08, 4.29, 5.xx, timeouts, DTLS failures -> kept, retried after exponential backoff
 *   with equal jitter (backoff_min_ms doubling up to backoff_max_ms). An answered failure
 *   for the same record three times in a row holds that record, so none blocks the queue.
 *
 * The collector's name is resolved in the background (resolve.h), at start and again after a
 * session failure, so a gateway that boots before its network samples and spools anyway and
 * a collector that moved is followed.
 *
 * One request in flight at a time (NSTART = 1, RFC 7252 congestion control for a device
 * on a metered cellular link); the next one starts as soon as the previous is acked.
 *
 * Security: DTLS 1.2 PSK, identity = device id, key from the credentials file that
 * `edgetrace-collector provision` writes; certificates instead if pki_cert/pki_key are set.
 * DTLS Connection ID (RFC 9146) is requested (use_cid), so when a NAT rebinds the source
 * port the collector keeps the session and no new handshake is needed. libcoap 4.3.5's
 * mbedTLS backend has no client-side session resumption (tickets or session ids), so after
 * the session is lost (agent restart, collector restart, idle timeout) it is a full PSK
 * handshake: with PSK that is 3 round trips and no public-key crypto.
 *
 * Bandwidth budget (budget_bytes_per_day > 0): bytes sent per UTC day (payload + an
 * estimated per-datagram overhead) are counted and persisted in the spool directory
 * ("uplink-budget"). Routine snapshots are sent while the day's total stays under 3/4 of the
 * budget; snapshots with findings may use the whole budget. A snapshot that alone is over
 * its limit goes as the first thing of a UTC day (else it would wait for ever). Whatever waits stays in the
 * spool (which evicts routine before findings when full). The spool already hands out
 * findings first.
 *
 * Everything runs in the agent's single-threaded loop (loop.h): libcoap's epoll fd is
 * watched for reads and one timer follows coap_io_prepare_epoll()'s next deadline.
 */
#ifndef ET_UPLINK_H
#define ET_UPLINK_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "spool.h"
#include "downlink.h"

#define ET_UPLINK_PSK_MAX 64
#define ET_UPLINK_PATH "s"
#define ET_UPLINK_CONTENT_FORMAT 42
/* Overhead per datagram counted against the budget: IPv4 + UDP (28), DTLS record header +
 * explicit nonce + CCM/GCM tag (13 + 8 + 16), CoAP header, token and options (~20). */
#define ET_UPLINK_DATAGRAM_OVERHEAD 85

typedef struct et_uplink_params {
    char collector[160];          /* coaps://HOST:PORT (default port 5684); coap:// for tests */
    char device_id[64];           /* PSK identity */
    uint8_t psk[ET_UPLINK_PSK_MAX];
    size_t psk_len;
    char pki_cert[200], pki_key[200], pki_ca[200]; /* optional: certificates instead of PSK */
    char pki_server_name[64];     /* name the collector's certificate must carry (mbedTLS checks
                                     it); "" = the host of the collector URL */
    uint32_t ack_timeout_ms;      /* RFC 7252 ACK_TIMEOUT; default 4000 (cellular RTTs of 1-2 s) */
    uint32_t ack_random_factor_milli; /* ACK_RANDOM_FACTOR * 1000; default 1500 */
    uint32_t max_retransmit;      /* MAX_RETRANSMIT; default 6 (~12 min before giving up) */
    uint32_t block_size;          /* 16..1024; default 1024 */
    uint32_t backoff_min_ms;      /* first retry delay after a failure; default 2000 */
    uint32_t backoff_max_ms;      /* cap; default 300000 */
    uint32_t hold_min_ms;         /* first retry of a held record; default 30000 */
    uint32_t hold_max_ms;         /* cap for held records; default 3600000 */
    int insecure_skip_verify;     /* pki_cert without pki_ca: allowed only with this, warned */
    uint32_t answer_timeout_ms;   /* give up on a request with no final answer after this long,
                                     even if its CON was ACKed (the collector may have died
                                     between its empty ACK and the separate response);
                                     0 = auto: MAX_TRANSMIT_SPAN + 50 s */
    uint64_t budget_bytes_per_day; /* 0 = unlimited */
    int use_cid;                  /* request DTLS Connection ID; default 1 */
    char state_dir[200];          /* where "uplink-budget" lives ("" = no persistence) */
    uint32_t checkin_ms;          /* with nothing to upload for this long, send an empty POST so
                                     the collector can hand out commands (downlink.h); 0 = never */
} et_uplink_params;

typedef struct et_uplink_stats {
    uint64_t posts;               /* POSTs started (attempts, including retries) */
    uint64_t acked_new;           /* 2.01 */
    uint64_t acked_dup;           /* 2.04: stored earlier, the first answer was lost */
    uint64_t rejected;            /* 4.00/4.22: dropped from the spool (ever, persisted) */
    uint64_t held;                /* "not now" answers that kept a record (ever, persisted) */
    uint64_t rotated;             /* held records moved behind the others */
    uint64_t resolved, resolve_failures; /* background name resolutions */
    uint64_t refused;             /* 4.01/4.03: kept, backing off (credentials problem) */
    uint64_t server_errors;       /* 5.xx */
    uint64_t timeouts;            /* no answer after MAX_RETRANSMIT */
    uint64_t dtls_failures;       /* handshake / session failures */
    uint64_t sessions;            /* sessions created (each one is a full handshake) */
    uint64_t budget_deferred;     /* times a routine snapshot waited for the budget */
    uint64_t bytes_sent;          /* payload bytes of acked snapshots, ever */
    uint64_t bytes_today;         /* budget accounting, this UTC day */
    uint32_t backoff_ms;          /* current backoff (0 when healthy) */
    int in_flight;
    int connected;                /* a DTLS session is established */
    uint32_t held_now;            /* records held right now */
    uint32_t peer_schema;         /* newest snapshot schema the collector said it reads (0 = not yet) */
    int have_addr;                /* the collector's name has been resolved */
    et_downlink_stats cmd;        /* commands received in answers, check-ins */
} et_uplink_stats;

enum et_uplink_class {
    ET_UPLINK_ACK,      /* stored: ack the record */
    ET_UPLINK_DROP,     /* can never be stored: delete it */
    ET_UPLINK_HOLD,     /* not now / not by this collector: keep, slow retry, others first */
    ET_UPLINK_REFUSED,  /* credentials: keep, back off */
    ET_UPLINK_RETRY,    /* collector trouble: keep, back off */
};
/* The answer class of a CoAP response code (class, detail), e.g. (4, 22). */
int et_uplink_classify(unsigned cls, unsigned detail);
/* May a record of len bytes (flags SPOOL_F_*) go now, with bytes_today already spent? */
int et_uplink_budget_allows(uint64_t budget, uint8_t flags, uint32_t len, uint32_t block_size, uint64_t bytes_today);
/* pki_cert without pki_ca: -1 with a reason unless insecure_skip_verify (then a warning). */
int et_uplink_check_pki(const et_uplink_params *p, char *err, size_t errlen);
/* What `spool stats` shows: the persisted held/rejected totals and the records held at the
 * last change, from DIR/uplink-counters. 0, or -1 (all zero) if there is no such file. */
int et_uplink_read_counters(const char *dir, uint64_t *held, uint64_t *rejected, uint32_t *held_now);

typedef struct et_uplink et_uplink;

void et_uplink_params_defaults(et_uplink_params *p);
/* Reads the INI credentials file ([credentials] device_id, psk = hex, optional collector).
 * Fields present override *p. 0, or -1 with a message in err. */
int et_uplink_load_credentials(const char *path, et_uplink_params *p, char *err, size_t errlen);

/* Creates the CoAP context and registers with the loop. Does not connect until there is
 * something to send. NULL with a message in err. */
et_uplink *et_uplink_create(et_loop *loop, spool *sp, const et_uplink_params *p, char *err, size_t errlen);
/* Frees the session and context and unregisters from the loop. The in-flight snapshot
 * stays in the spool (it was never acked). */
void et_uplink_destroy(et_uplink *u);

/* New PSK credentials (a gateway provisioned while running, or a key rotation): the old PSK
 * is wiped, the session is dropped and the next request handshakes with the new identity.
 * -1 (nothing changed) if the identity or key is empty or too long. */
int et_uplink_set_identity(et_uplink *u, const char *device_id, const uint8_t *psk, size_t psk_len);

/* Who runs the commands that arrive in the collector's answers (downlink.h). */
void et_uplink_set_command_handler(et_uplink *u, et_cmd_fn fn, void *ctx);
/* Who takes the central settings documents in those answers (settings_apply.h). */
void et_uplink_set_settings_handler(et_uplink *u, et_settings_fn fn, void *ctx);
/* Central settings applied live: the daily budget and the check-in period (the interval). */
void et_uplink_retune(et_uplink *u, uint64_t budget_bytes_per_day, uint32_t checkin_ms);
/* Something was appended to the spool: start sending now unless busy or backing off. */
void et_uplink_kick(et_uplink *u);
/* 1 when nothing is in flight and the spool has nothing that may be sent now. */
int et_uplink_idle(et_uplink *u);
/* Command ID has started (a capture is running): reported to the collector on the next
 * request, a check-in sent at once when there is nothing to upload (wire/command.h "r=ID").
 * Kept in RAM until a 2.xx answer; no flash write. */
void et_uplink_report_started(et_uplink *u, uint64_t id);
void et_uplink_get_stats(const et_uplink *u, et_uplink_stats *st);

/* `edgetrace-agent push|upload ...` (uplink_cmd.c): one-shot uploads for tests and demos. */
int uplink_cmd_main(int argc, char **argv);

#endif
