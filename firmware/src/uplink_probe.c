/* uplink_probe.c - a fresh handshake beside a DTLS session that went silent (see uplink_probe.h
 * for why and how uplink.c uses it). */
#include <string.h>

#include "base.h"
#include "uplink_probe.h"

/* Fresh sessions for one silence, each from a new source port (see on_retry). */
#define PROBE_TRIES_MAX 3

void et_probe_init(et_uplink_probe *pr, const et_uplink_probe_host *h)
{
    memset(pr, 0, sizeof(*pr));
    pr->h = *h;
}

int et_probe_session_up(coap_session_t *s)
{
    return s && coap_session_get_state(s) == COAP_SESSION_STATE_ESTABLISHED;
}

static void cancel(et_uplink_probe *pr, et_timer_id *t)
{
    if (*t)
        et_loop_cancel_timer(pr->h.loop, *t);
    *t = 0;
}

static void release(et_uplink_probe *pr)
{
    if (pr->sess)
        coap_session_release(pr->sess); /* nothing was sent on it: freed at once */
    pr->sess = NULL;
    pr->dead = 0;
    cancel(pr, &pr->retry_timer);
}

void et_probe_close(et_uplink_probe *pr)
{
    release(pr);
    cancel(pr, &pr->stall_timer);
}

void et_probe_stop(et_uplink_probe *pr) { cancel(pr, &pr->stall_timer); }

static void on_retry(et_loop *l, et_timer_id id, void *ud);

/* A new session (its own socket, so a new source port) whose ClientHello goes out now. */
static void start(et_uplink_probe *pr)
{
    pr->sess = pr->h.new_session(pr->h.ctx);
    if (!pr->sess) {
        et_warn("uplink: cannot start a fresh handshake; the old session keeps trying");
        return;
    }
    pr->dead = 0;
    pr->tries++;
    pr->started++;
    pr->retry_timer = et_loop_add_timer(pr->h.loop, ET_MAX(pr->h.p->ack_timeout_ms / 2, 200u), 0, on_retry, pr);
    pr->h.pump(pr->h.ctx);
}

/* The probe's first flight got nothing back within ACK_TIMEOUT / 2. A balancer may still send
 * that source port to the dead node (nginx keeps a UDP session on its upstream until a send to
 * it fails, and marks the node down only then), so rather than wait for mbedTLS's own
 * retransmissions on the same port, a new probe goes from a new port, which the balancer hashes
 * afresh (and by now away from a node it has marked down). Only for the first silence after a
 * clean stretch (what a node's death looks like): on a lossy link, where the levels have
 * climbed, a lost ClientHello is mbedTLS's to resend. */
static void on_retry(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    et_uplink_probe *pr = ud;
    pr->retry_timer = 0;
    size_t len;
    if (!pr->sess || pr->dead || !pr->h.waiting(pr->h.ctx, &len) || et_probe_session_up(pr->sess) ||
        pr->tries >= PROBE_TRIES_MAX || pr->level > 1)
        return;
    release(pr); /* from a loop timer, not inside libcoap */
    start(pr);
}

static void on_stall(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    et_uplink_probe *pr = ud;
    pr->stall_timer = 0;
    size_t len;
    if (pr->sess || !pr->h.waiting(pr->h.ctx, &len))
        return;
    et_info("uplink: no answer for %u ms on an established session; a fresh handshake starts beside it "
            "(the collector may have lost the session)",
            et_uplink_stall_ms(pr->h.p, len, pr->level));
    pr->tries = 0;
    pr->level = ET_MIN(pr->level + 1, 20u);
    pr->clean = 0;
    start(pr);
}

void et_probe_arm(et_uplink_probe *pr, coap_session_t *sess, coap_proto_t proto)
{
    if (pr->sess && pr->dead)
        release(pr); /* after libcoap returned: never inside its callbacks */
    size_t len;
    if (pr->stall_timer || pr->sess || proto != COAP_PROTO_DTLS || !et_probe_session_up(sess) ||
        !pr->h.waiting(pr->h.ctx, &len))
        return;
    uint32_t ms = et_uplink_stall_ms(pr->h.p, len, pr->level);
    if (ms)
        pr->stall_timer = et_loop_add_timer(pr->h.loop, ms, 0, on_stall, pr);
}

void et_probe_sent(et_uplink_probe *pr) { pr->retransmitted = 0; }

void et_probe_retransmitted(et_uplink_probe *pr) { pr->retransmitted = 1; }

void et_probe_answered(et_uplink_probe *pr)
{
    if (pr->retransmitted) {
        pr->clean = 0;
    } else if (++pr->clean >= ET_UPLINK_PROBE_DECAY) {
        pr->clean = 0;
        if (pr->level)
            pr->level--;
    }
}

/* libcoap 4.3.5 reports no event when a DTLS client handshake completes (the session just turns
 * ESTABLISHED: et_probe_up); events only tell that the probe failed. */
int et_probe_event(et_uplink_probe *pr, coap_session_t *s, coap_event_t event)
{
    if (!pr->sess || s != pr->sess)
        return 0;
    switch (event) {
    case COAP_EVENT_DTLS_CLOSED:
    case COAP_EVENT_DTLS_ERROR:
    case COAP_EVENT_SESSION_FAILED:
    case COAP_EVENT_SESSION_CLOSED:
        pr->dead = 1;
        break;
    default:
        break;
    }
    return 1;
}

int et_probe_nack(et_uplink_probe *pr, coap_session_t *s, coap_nack_reason_t reason)
{
    if (!pr->sess || s != pr->sess)
        return 0;
    /* the fresh handshake failed: the old session's own schedule goes on */
    et_warn("uplink: the fresh handshake beside the silent session failed (%d)", (int)reason);
    pr->dead = 1;
    return 1;
}

int et_probe_up(const et_uplink_probe *pr) { return pr->sess && !pr->dead && et_probe_session_up(pr->sess); }

coap_session_t *et_probe_take(et_uplink_probe *pr)
{
    if (!et_probe_up(pr))
        return NULL;
    coap_session_t *s = pr->sess;
    pr->sess = NULL;
    cancel(pr, &pr->retry_timer);
    cancel(pr, &pr->stall_timer);
    return s;
}
