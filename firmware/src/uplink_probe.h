/* uplink_probe.h - a fresh handshake beside a DTLS session that went silent (for uplink.c).
 *
 * A collector that does not know our DTLS session (it restarted, or the balancer sent us to a
 * node that never had it) drops our records without an answer, and libcoap would only give up
 * after MAX_TRANSMIT_SPAN (minutes with the default timers). So when the request in flight on an
 * established session stays unanswered for et_uplink_stall_ms(), a second session handshakes
 * with the same address while the old one keeps retransmitting. If the old one answers first,
 * the probe is dropped; if the probe is up first, uplink.c hands the request over to it
 * (et_probe_take). On a plain lossy link a probe is sometimes needless: each one doubles the
 * bound, and only ET_UPLINK_PROBE_DECAY requests in a row answered without a retransmission take
 * one doubling back, so the extra handshakes stay few.
 *
 *   et_probe_init(&pr, &host);
 *   after every libcoap step:   et_probe_arm(&pr, sess, proto);  if (et_probe_up(&pr)) ... take over
 *   a request went out:         et_probe_sent(&pr);
 *   its final answer came:      et_probe_answered(&pr);  the request ended: et_probe_stop(&pr)
 *
 * Sessions are released only from loop timers or after coap_io_process() returned, never inside
 * libcoap's callbacks. */
#ifndef ET_UPLINK_PROBE_H
#define ET_UPLINK_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include <coap3/coap.h>

#include "loop.h"
#include "uplink.h"

/* What the probe needs from the uplink. */
typedef struct et_uplink_probe_host {
    et_loop *loop;
    const et_uplink_params *p;
    coap_session_t *(*new_session)(void *ctx); /* a new client session (own socket) to the same address */
    void (*pump)(void *ctx);                   /* let libcoap send, follow its next deadline */
    int (*waiting)(void *ctx, size_t *len);    /* a request is in flight; *len = its body length */
    void *ctx;
} et_uplink_probe_host;

typedef struct et_uplink_probe {
    et_uplink_probe_host h;
    coap_session_t *sess;     /* the fresh session, NULL when none */
    et_timer_id stall_timer;  /* the request in flight went unanswered too long */
    et_timer_id retry_timer;  /* the fresh session's first flight unanswered: again from a new port */
    uint32_t tries;           /* fresh sessions made for the current silence */
    uint32_t level;           /* probes since the link last looked clean (et_uplink_stall_ms) */
    uint32_t clean;           /* requests answered without a retransmission, in a row */
    int dead;                 /* the fresh session failed: released at the next et_probe_arm */
    int retransmitted;        /* libcoap retransmitted something of the request in flight */
    uint64_t started;         /* fresh sessions started, ever (et_uplink_stats.probes) */
} et_uplink_probe;

void et_probe_init(et_uplink_probe *pr, const et_uplink_probe_host *h);
/* 1 if the session's (DTLS) handshake is complete. libcoap 4.3.5 sends no event for that on a
 * DTLS client, so the state is asked. */
int et_probe_session_up(coap_session_t *s);
/* After every libcoap step: releases a failed probe, and arms the stall timer while a request is
 * in flight on sess, an established DTLS session (plain CoAP has no session to lose). */
void et_probe_arm(et_uplink_probe *pr, coap_session_t *sess, coap_proto_t proto);
void et_probe_sent(et_uplink_probe *pr);
/* libcoap events and NACKs of the probe's session (1 if s is the probe's: the caller ignores it). */
int et_probe_event(et_uplink_probe *pr, coap_session_t *s, coap_event_t event);
int et_probe_nack(et_uplink_probe *pr, coap_session_t *s, coap_nack_reason_t reason);
/* A retransmission on the current session (COAP_EVENT_MSG_RETRANSMITTED). */
void et_probe_retransmitted(et_uplink_probe *pr);
/* A final answer on the current session: a run of clean ones takes a doubling back. */
void et_probe_answered(et_uplink_probe *pr);
/* The request ended: no stall timer. */
void et_probe_stop(et_uplink_probe *pr);
/* 1 when the probe's handshake is done. */
int et_probe_up(const et_uplink_probe *pr);
/* Hands the probe's session over (the caller owns it now); NULL if it is not up. */
coap_session_t *et_probe_take(et_uplink_probe *pr);
/* Drops the probe's session and timers (the stall timer too). */
void et_probe_close(et_uplink_probe *pr);

#endif
