/* downlink.h - the commands a collector hands this agent in its answers (wire/command.h).
 *
 * The gateway sits behind NAT, so commands ride on the answers to its own requests: an
 * upload's 2.01/2.04, or a check-in (an empty POST the uplink sends when it has had nothing
 * to upload for checkin_ms). Each command id runs at most once: it is claimed in the spool
 * state (spool_cmd_claim: durable before it runs) so a re-delivery, or the same answer after
 * a power cut, is skipped. An expired command (by a synced wall clock) is skipped too. A
 * document that does not decode is refused with its reason in the log and a counter; the
 * agent keeps running and keeps the commands it had. */
#ifndef ET_DOWNLINK_H
#define ET_DOWNLINK_H

#include <stddef.h>
#include <stdint.h>

#include "command.h"
#include "spool.h"

typedef void (*et_cmd_fn)(void *ctx, const et_cmd *c);

typedef struct et_downlink_stats {
    uint64_t received; /* commands decoded from answers (re-deliveries included) */
    uint64_t run;      /* handed to the handler (claimed first) */
    uint64_t repeated; /* ids already run: skipped */
    uint64_t expired;  /* past their expiry: skipped */
    uint64_t bad;      /* documents refused by the decoder */
    uint64_t checkins; /* empty requests sent to fetch commands */
} et_downlink_stats;

typedef void (*et_settings_fn)(void *ctx, const uint8_t *doc, size_t len);

/* The settings document (command document key 2) of an answer, if it has one, to fn. A
 * command document that does not decode is et_downlink_answer's to report. */
void et_downlink_settings(const uint8_t *payload, size_t len, et_settings_fn fn, void *ctx);

/* One 2.xx answer payload (diagnostic, optional NUL + command document). */
void et_downlink_answer(spool *sp, const uint8_t *payload, size_t len, et_cmd_fn fn, void *ctx,
                        et_downlink_stats *st);

#endif
