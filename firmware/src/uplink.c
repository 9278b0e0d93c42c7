/* uplink.c - CoAP/DTLS client that drains the spool (see uplink.h for the protocol).
 *
 * State: at most one POST in flight. The payload buffer (SPOOL_REC_MAX) is allocated once
 * at create; libcoap sends the blocks straight out of it (coap_add_data_large_request with
 * no release callback), so nothing is copied or allocated per snapshot by this file. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <coap3/coap.h>
#include <mbedtls/platform_util.h>

#include "base.h"
#include "resolve.h"
#include "uplink.h"

/* A snapshot the collector answered "not now / not by me" (see et_uplink_classify): it stays
 * in the spool, is not retried before not_before, and later snapshots go first. Bounded: when
 * full, the entry due soonest is forgotten (that record is then simply tried once more). */
#define HELD_MAX 16
typedef struct held_rec {
    uint8_t id[SPOOL_ID_LEN];
    uint32_t fails;
    uint64_t not_before;      /* monotonic ms */
} held_rec;

/* Answered failures (5.xx, 4.01/4.03) of the same record in a row before it is held like a
 * "not now" answer: a record the collector fails on every time must not block the queue. */
#define SAME_RECORD_FAILS_TO_HOLD 3
#define RESOLVE_TIMEOUT_MS 10000

struct et_uplink {
    et_loop *loop;
    spool *sp;
    et_uplink_params p;
    coap_context_t *ctx;
    coap_session_t *sess;
    int sess_dead;            /* failed: release at the next safe point (not inside a callback) */
    coap_address_t server;
    int have_addr;            /* server holds a resolved address */
    int need_resolve;         /* resolve again before the next session (after a failure) */
    char host[128];
    uint16_t port;
    et_resolver *res;
    uint32_t resolve_backoff_ms;
    coap_proto_t proto;
    int coap_fd;
    et_timer_id io_timer;     /* follows libcoap's next deadline */
    et_timer_id retry_timer;  /* backoff, budget wait, or "send next now" */
    et_timer_id answer_timer; /* watchdog of the request in flight */
    /* the snapshot in flight */
    int in_flight;
    spool_rec rec;
    uint8_t *buf;
    size_t len;
    uint8_t token[8];
    size_t toklen;
    uint32_t backoff_ms;
    int held_wait;            /* retry_timer only waits for held records: a new snapshot may go now */
    held_rec held[HELD_MAX];
    uint32_t hold_streak;     /* "not now" answers in a row, any record: nothing is readable */
    uint32_t rot_streak;      /* held records moved to the back since the last send */
    uint8_t same_id[SPOOL_ID_LEN];
    uint32_t same_fails;
    uint32_t budget_day;
    uint32_t rng;
    et_uplink_stats st;
    /* downlink: the request in flight is a check-in (empty POST), not a record */
    int checkin;
    /* command ids started but not yet reported ("r=ID" on the next request; RAM only: a
     * report lost to a power cut leaves the collector at "delivered", which is all it costs) */
    uint64_t started[ET_CMD_STARTED_MAX];
    unsigned nstarted, started_sent;
    uint64_t last_exchange_ms; /* monotonic: the last final answer from the collector */
    et_cmd_fn cmd_fn;
    void *cmd_ctx;
    et_settings_fn set_fn; /* central settings in the answers (settings_apply.h) */
    void *set_ctx;
};

/* ---- parameters and credentials --------------------------------------------------------- */

/* ---- small helpers ---------------------------------------------------------------------- */

static uint32_t rnd(et_uplink *u)
{
    /* xorshift32: jitter only needs to differ between devices, seeded from getrandom */
    uint32_t x = u->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return u->rng = x;
}

static coap_fixed_point_t fixed_ms(uint32_t ms)
{
    coap_fixed_point_t f = {(uint16_t)(ms / 1000), (uint16_t)(ms % 1000)};
    return f;
}

static uint32_t utc_day(void)
{
    int64_t ms = et_now_wall_ms();
    return ms > 0 ? (uint32_t)(ms / 86400000) : 0;
}


/* Replaces DIR/NAME with one line (tmp + rename, so a reader never sees half a line). */
static void state_file_write(const et_uplink *u, const char *name, const char *line, int n)
{
    char path[256], tmp[264];
    snprintf(path, sizeof(path), "%s/%s", u->p.state_dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    int ok = write(fd, line, (size_t)n) == n;
    close(fd);
    if (ok)
        rename(tmp, path);
}

static void budget_load(et_uplink *u)
{
    u->budget_day = utc_day();
    if (!u->p.state_dir[0])
        return;
    char path[256];
    snprintf(path, sizeof(path), "%s/uplink-budget", u->p.state_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    unsigned day = 0;
    unsigned long long bytes = 0;
    if (fscanf(f, "%u %llu", &day, &bytes) == 2 && day == u->budget_day)
        u->st.bytes_today = bytes;
    fclose(f);
}

static void budget_add(et_uplink *u, size_t payload)
{
    uint32_t day = utc_day();
    if (day != u->budget_day) {
        u->budget_day = day;
        u->st.bytes_today = 0;
    }
    size_t blocks = payload / u->p.block_size + 1;
    u->st.bytes_today += payload + blocks * ET_UPLINK_DATAGRAM_OVERHEAD;
    if (!u->p.state_dir[0] || !u->p.budget_bytes_per_day)
        return;
    /* No fsync: losing the last few counts to a power cut only lets a few more bytes out. */
    char line[48];
    int n = snprintf(line, sizeof(line), "%u %llu\n", u->budget_day, (unsigned long long)u->st.bytes_today);
    state_file_write(u, "uplink-budget", line, n);
}

/* May this record go now under the budget? */
static int budget_allows(et_uplink *u, const spool_rec *r)
{
    uint32_t day = utc_day();
    if (day != u->budget_day) {
        u->budget_day = day;
        u->st.bytes_today = 0;
    }
    return et_uplink_budget_allows(u->p.budget_bytes_per_day, r->flags, r->len, u->p.block_size, u->st.bytes_today);
}

static uint32_t ms_to_next_utc_day(void)
{
    int64_t ms = et_now_wall_ms();
    if (ms <= 0)
        return 3600000;
    int64_t left = 86400000 - ms % 86400000;
    return (uint32_t)(left + 1000);
}

/* ---- libcoap plumbing ------------------------------------------------------------------- */

static void pump(et_uplink *u);
static void try_send(et_uplink *u);

static void on_io_timer(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    et_uplink *u = ud;
    u->io_timer = 0;
    pump(u);
}

static void on_coap_fd(et_loop *l, int fd, unsigned events, void *ud)
{
    (void)l;
    (void)fd;
    (void)events;
    pump(ud);
}

/* Let libcoap read, retransmit and time out, then follow its next deadline. */
static void pump(et_uplink *u)
{
    coap_io_process(u->ctx, COAP_IO_NO_WAIT);
    coap_tick_t now;
    coap_ticks(&now);
    unsigned ms = coap_io_prepare_epoll(u->ctx, now);
    /* 0 means "nothing scheduled": a slow safety tick keeps session timeouts honest. */
    if (ms == 0 || ms > 1000)
        ms = u->in_flight || u->sess ? 1000 : 5000;
    if (u->io_timer && et_loop_rearm_timer(u->loop, u->io_timer, ms) == 0)
        return;
    u->io_timer = et_loop_add_timer(u->loop, ms, 0, on_io_timer, u);
}

static void on_retry_timer(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    et_uplink *u = ud;
    u->retry_timer = 0;
    if (u->held_wait) {
        /* a held record is due: go round the queue again to reach it */
        u->held_wait = 0;
        u->rot_streak = 0;
    }
    try_send(u);
}

static void schedule(et_uplink *u, uint32_t delay_ms)
{
    if (u->retry_timer)
        et_loop_cancel_timer(u->loop, u->retry_timer);
    u->held_wait = 0;
    u->retry_timer = et_loop_add_timer(u->loop, delay_ms, 0, on_retry_timer, u);
}

/* ---- held records ("not now / not by me") ------------------------------------------------ */

static held_rec *held_find(et_uplink *u, const uint8_t *id)
{
    for (unsigned i = 0; i < HELD_MAX; i++)
        if (u->held[i].fails && !memcmp(u->held[i].id, id, SPOOL_ID_LEN))
            return &u->held[i];
    return NULL;
}

static held_rec *held_add(et_uplink *u, const uint8_t *id)
{
    held_rec *h = held_find(u, id);
    if (h)
        return h;
    h = &u->held[0];
    for (unsigned i = 0; i < HELD_MAX; i++) {
        if (!u->held[i].fails) {
            h = &u->held[i];
            break;
        }
        if (u->held[i].not_before < h->not_before)
            h = &u->held[i];
    }
    memset(h, 0, sizeof(*h));
    memcpy(h->id, id, SPOOL_ID_LEN);
    return h;
}

static void held_forget(et_uplink *u, const uint8_t *id)
{
    held_rec *h = held_find(u, id);
    if (h)
        memset(h, 0, sizeof(*h));
}

static uint32_t held_count(const et_uplink *u)
{
    uint32_t n = 0;
    for (unsigned i = 0; i < HELD_MAX; i++)
        n += u->held[i].fails != 0;
    return n;
}

/* hold_min doubling per failure up to hold_max, equal jitter */
static uint32_t hold_delay(et_uplink *u, uint32_t fails)
{
    uint64_t d = u->p.hold_min_ms;
    for (uint32_t i = 1; i < fails && d < u->p.hold_max_ms; i++)
        d *= 2;
    if (d > u->p.hold_max_ms)
        d = u->p.hold_max_ms;
    uint32_t half = (uint32_t)d / 2;
    return half + (half ? rnd(u) % (half + 1) : 0);
}

/* "uplink-counters" in the spool directory: what `spool stats` shows about the uplink (the
 * daemon holds the spool open, so the command reads this file, not the daemon). Written only
 * when a record is held or dropped, which is rare. */
static void counters_save(et_uplink *u)
{
    if (!u->p.state_dir[0])
        return;
    char line[96];
    int n = snprintf(line, sizeof(line), "%llu %llu %u\n", (unsigned long long)u->st.held,
                     (unsigned long long)u->st.rejected, held_count(u));
    state_file_write(u, "uplink-counters", line, n);
}

int et_uplink_read_counters(const char *dir, uint64_t *held, uint64_t *rejected, uint32_t *held_now)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/uplink-counters", dir);
    *held = *rejected = 0;
    *held_now = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    unsigned long long h = 0, r = 0;
    unsigned now = 0;
    int ok = fscanf(f, "%llu %llu %u", &h, &r, &now) == 3;
    fclose(f);
    if (!ok)
        return -1;
    *held = h;
    *rejected = r;
    *held_now = now;
    return 0;
}

/* Moves the record in u->buf (just peeked) to the back of the spool so the ones behind it go
 * first: a durable copy first, then the original is acked; a power cut in between leaves two
 * copies with one snapshot id, which the collector stores once. The copy goes to the routine
 * stream: the finding stream is always peeked first, so a held finding kept there would stop
 * the routine snapshots behind it. (The spool has no "skip": the cost is one rewrite of the
 * held record each time it comes round, bounded by HELD_MAX records.) */
static int rotate(et_uplink *u, const spool_rec *r, size_t len)
{
    if (spool_append(u->sp, (uint8_t)(r->flags & ~SPOOL_F_FINDING), r->id, u->buf, len) != 0 ||
        spool_sync(u->sp) != 0) {
        et_warn("uplink: cannot move a held snapshot to the back of the spool");
        return -1;
    }
    if (spool_ack(u->sp, r->id) < 0)
        et_warn("uplink: the original of a moved snapshot stays (the collector dedups it)");
    u->st.rotated++;
    return 0;
}

static uint64_t pending_records(et_uplink *u)
{
    spool_stats ss;
    spool_get_stats(u->sp, &ss);
    return ss.pending_findings + ss.pending_routine;
}

/* A failed attempt: keep the record, wait backoff with jitter ("equal jitter": half fixed,
 * half random, so devices that lost the collector together do not return in lockstep and
 * none retries immediately). */
static void stop_watchdog(et_uplink *u)
{
    if (u->answer_timer)
        et_loop_cancel_timer(u->loop, u->answer_timer);
    u->answer_timer = 0;
}

static void fail(et_uplink *u, const char *why)
{
    u->in_flight = 0;
    stop_watchdog(u);
    u->backoff_ms = u->backoff_ms ? ET_MIN(u->backoff_ms * 2, u->p.backoff_max_ms) : u->p.backoff_min_ms;
    uint32_t half = u->backoff_ms / 2;
    uint32_t delay = half + (half ? rnd(u) % (half + 1) : 0);
    et_warn("uplink: %s; retrying in %u ms", why, delay);
    schedule(u, delay);
}

static void succeed(et_uplink *u)
{
    u->in_flight = 0;
    stop_watchdog(u);
    u->backoff_ms = 0;
    u->hold_streak = 0;
    u->same_fails = 0;
    if (held_find(u, u->rec.id)) {
        held_forget(u, u->rec.id);
        counters_save(u);
    }
    /* next record from the loop, not from inside libcoap's callback */
    schedule(u, 0);
}

/* The collector cannot take this record now (see et_uplink_classify): keep it, retry it after
 * its own slow backoff, and let the records behind it go first. When the answers say that
 * nothing at all is readable (two in a row), the whole uplink slows down the same way, so a
 * collector that lacks a dictionary is probed once per period, not with every record. */
static void hold(et_uplink *u, const char *why)
{
    u->in_flight = 0;
    stop_watchdog(u);
    u->st.held++;
    u->same_fails = 0;
    held_rec *h = held_add(u, u->rec.id);
    h->fails++;
    uint32_t d = hold_delay(u, h->fails);
    h->not_before = (uint64_t)et_now_mono_ms() + d;
    u->hold_streak++;
    counters_save(u);
    et_warn("uplink: %s; snapshot kept (held %u time%s), not retried for %u s; later snapshots go first", why,
            h->fails, h->fails == 1 ? "" : "s", d / 1000);
    if (pending_records(u) > 1 && rotate(u, &u->rec, u->len) == 0)
        u->rot_streak++;
    if (u->hold_streak >= 2) {
        u->backoff_ms = hold_delay(u, u->hold_streak - 1);
        schedule(u, u->backoff_ms);
    } else {
        schedule(u, 0);
    }
}

/* A failure the collector answered (5.xx, 4.01/4.03): normally the collector's problem, but
 * if the same record gets it SAME_RECORD_FAILS_TO_HOLD times in a row it is held, so that
 * it cannot block the queue. */
static void answered_failure(et_uplink *u, const char *why)
{
    if (u->same_fails && !memcmp(u->same_id, u->rec.id, SPOOL_ID_LEN)) {
        u->same_fails++;
    } else {
        memcpy(u->same_id, u->rec.id, SPOOL_ID_LEN);
        u->same_fails = 1;
    }
    if (u->same_fails >= SAME_RECORD_FAILS_TO_HOLD)
        hold(u, why);
    else
        fail(u, why);
}

/* The collector ends 2.01/2.04 diagnostics with " s=N", the newest snapshot schema it reads
 * (older collectors say nothing: schema 1). The agent writes a later schema only then. */
static void peer_schema(et_uplink *u, const char *diag)
{
    const char *p = strstr(diag, " s=");
    unsigned long v = p ? strtoul(p + 3, NULL, 10) : 1;
    u->st.peer_schema = v >= 1 && v < 1000 ? (uint32_t)v : 1;
}

static int token_is_ours(et_uplink *u, const coap_pdu_t *pdu)
{
    if (!pdu || !u->in_flight)
        return 0;
    coap_bin_const_t t = coap_pdu_get_token(pdu);
    return t.length == u->toklen && (t.length == 0 || !memcmp(t.s, u->token, t.length));
}

static coap_response_t on_response(coap_session_t *session, const coap_pdu_t *sent, const coap_pdu_t *received,
                                   const coap_mid_t mid)
{
    (void)sent;
    (void)mid;
    et_uplink *u = coap_context_get_app_data(coap_session_get_context(session));
    if (!token_is_ours(u, received))
        return COAP_RESPONSE_OK; /* a late answer to an attempt we already gave up on */
    coap_pdu_code_t code = coap_pdu_get_code(received);
    unsigned cls = code >> 5, detail = code & 0x1f;
    size_t dlen = 0;
    const uint8_t *data = NULL;
    char diag[96] = "";
    if (coap_get_data(received, &dlen, &data) && dlen)
        et_strlcpyn(diag, sizeof(diag), (const char *)data, dlen);
    char why[160];
    u->last_exchange_ms = (uint64_t)et_now_mono_ms();
    if (cls == 2 && u->started_sent) {
        /* the collector has them; ids added while the request was out stay for the next */
        u->nstarted -= u->started_sent;
        memmove(u->started, u->started + u->started_sent, u->nstarted * sizeof(u->started[0]));
    }
    u->started_sent = 0;
    if (u->checkin) {
        /* nothing of the spool was in flight: only commands to take, or a failure to retry */
        u->checkin = 0;
        if (cls == 2) {
            /* the schema is learned from upload answers only (README "Schema versions"): a
             * check-in says nothing about whether this collector stored what we write */
            et_downlink_answer(u->sp, data, dlen, u->cmd_fn, u->cmd_ctx, &u->st.cmd);
            et_downlink_settings(data, dlen, u->set_fn, u->set_ctx);
            succeed(u);
        } else {
            snprintf(why, sizeof(why), "check-in answered %u.%02u %s", cls, detail, diag);
            fail(u, why);
        }
        return COAP_RESPONSE_OK;
    }
    switch (et_uplink_classify(cls, detail)) {
    case ET_UPLINK_ACK:
        if (spool_ack(u->sp, u->rec.id) < 0)
            et_warn("uplink: spool_ack failed (the record will be sent again and deduplicated)");
        if (detail == 1)
            u->st.acked_new++;
        else
            u->st.acked_dup++;
        u->st.bytes_sent += u->len;
        budget_add(u, u->len);
        peer_schema(u, diag);
        et_debug("uplink: %u.%02u %s", cls, detail, diag);
        et_downlink_answer(u->sp, data, dlen, u->cmd_fn, u->cmd_ctx, &u->st.cmd);
        et_downlink_settings(data, dlen, u->set_fn, u->set_ctx);
        succeed(u);
        break;
    case ET_UPLINK_DROP:
        /* Corrupt bytes or a schema violation in a version the collector reads: no collector
         * will ever take them, and keeping them would block the queue. Dropped, loudly. */
        u->st.rejected++;
        et_error("uplink: collector rejected a snapshot for good (%u.%02u %s); dropped from the spool", cls, detail,
                 diag);
        spool_ack(u->sp, u->rec.id);
        budget_add(u, u->len);
        held_forget(u, u->rec.id);
        counters_save(u);
        u->in_flight = 0;
        stop_watchdog(u);
        u->backoff_ms = 0;
        u->hold_streak = 0;
        u->same_fails = 0;
        schedule(u, 0);
        break;
    case ET_UPLINK_HOLD:
        snprintf(why, sizeof(why), "collector cannot take this snapshot now (%u.%02u %s)", cls, detail, diag);
        hold(u, why);
        break;
    case ET_UPLINK_REFUSED:
        u->st.refused++;
        snprintf(why, sizeof(why), "collector refused us (%u.%02u %s): check the credentials", cls, detail, diag);
        answered_failure(u, why);
        break;
    default:
        if (cls == 5)
            u->st.server_errors++;
        snprintf(why, sizeof(why), "collector answered %u.%02u %s", cls, detail, diag);
        answered_failure(u, why);
        break;
    }
    return COAP_RESPONSE_OK;
}

static void on_nack(coap_session_t *session, const coap_pdu_t *sent, const coap_nack_reason_t reason,
                    const coap_mid_t mid)
{
    (void)mid;
    et_uplink *u = coap_context_get_app_data(coap_session_get_context(session));
    if (!u->in_flight || (sent && !token_is_ours(u, sent)))
        return;
    switch (reason) {
    case COAP_NACK_TOO_MANY_RETRIES:
        u->st.timeouts++;
        /* The path may be gone for good (collector restarted and forgot the DTLS state, or
         * moved to another address): resolve again and start over with a fresh handshake. */
        u->sess_dead = 1;
        u->need_resolve = 1;
        fail(u, "no answer from the collector");
        break;
    case COAP_NACK_TLS_FAILED:
    case COAP_NACK_TLS_LAYER_FAILED:
        u->st.dtls_failures++;
        u->sess_dead = 1;
        u->need_resolve = 1;
        fail(u, "DTLS session failed");
        break;
    default:
        u->sess_dead = 1;
        fail(u, "request not deliverable");
        break;
    }
}

static int on_event(coap_session_t *session, const coap_event_t event)
{
    et_uplink *u = coap_context_get_app_data(coap_session_get_context(session));
    if (!u || session != u->sess)
        return 0;
    switch (event) {
    case COAP_EVENT_DTLS_CONNECTED:
        u->st.connected = 1;
        et_info("uplink: DTLS session up");
        break;
    case COAP_EVENT_DTLS_CLOSED:
    case COAP_EVENT_DTLS_ERROR:
    case COAP_EVENT_SESSION_FAILED:
    case COAP_EVENT_SESSION_CLOSED:
        u->st.connected = 0;
        u->sess_dead = 1;
        u->need_resolve = 1; /* the collector may have moved: look its name up again */
        break;
    default:
        break;
    }
    return 0;
}

/* Only parses: the name is resolved later, in the background (resolve.h), so that a gateway
 * that boots before its network samples and spools anyway. */
static int parse_collector(et_uplink *u, char *err, size_t errlen)
{
    coap_uri_t uri;
    const char *url = u->p.collector;
    if (coap_split_uri((const uint8_t *)url, strlen(url), &uri) < 0 ||
        (uri.scheme != COAP_URI_SCHEME_COAPS && uri.scheme != COAP_URI_SCHEME_COAP)) {
        snprintf(err, errlen, "collector '%s' is not a coaps:// or coap:// URL", url);
        return -1;
    }
    if (!uri.host.length || uri.host.length >= sizeof(u->host)) {
        snprintf(err, errlen, "collector '%s': bad host", url);
        return -1;
    }
    u->proto = uri.scheme == COAP_URI_SCHEME_COAPS ? COAP_PROTO_DTLS : COAP_PROTO_UDP;
    et_strlcpyn(u->host, sizeof(u->host), (const char *)uri.host.s, uri.host.length);
    u->port = uri.port;
    if (!u->p.pki_server_name[0])
        et_strlcpy(u->p.pki_server_name, u->host, sizeof(u->p.pki_server_name));
    return 0;
}

static void on_resolved(void *ud, int ok, const struct sockaddr *sa, socklen_t len, const char *err)
{
    et_uplink *u = ud;
    if (ok == 0) {
        coap_address_t a;
        coap_address_init(&a);
        memcpy(&a.addr, sa, len);
        a.size = len;
        if (u->have_addr && !coap_address_equals(&a, &u->server)) {
            et_info("uplink: %s has a new address", u->host);
            u->sess_dead = 1; /* the next session goes to the new address */
        }
        u->server = a;
        u->have_addr = 1;
        u->need_resolve = 0;
        u->resolve_backoff_ms = 0;
        u->st.resolved++;
    } else {
        u->st.resolve_failures++;
        if (u->have_addr) {
            /* keep the address we had: DNS may be down while the collector is not */
            et_warn("uplink: %s; keeping the previous address", err);
            u->need_resolve = 0;
        } else {
            u->resolve_backoff_ms = u->resolve_backoff_ms ? ET_MIN(u->resolve_backoff_ms * 2, u->p.backoff_max_ms)
                                                          : u->p.backoff_min_ms;
            et_warn("uplink: %s; sampling and spooling go on, retrying in %u ms", err, u->resolve_backoff_ms);
            schedule(u, u->resolve_backoff_ms);
            return;
        }
    }
    /* from the loop (or from et_resolver_start for a numeric host): continue sending */
    schedule(u, 0);
}

static int open_session(et_uplink *u)
{
    if (u->proto == COAP_PROTO_UDP) {
        u->sess = coap_new_client_session(u->ctx, NULL, &u->server, COAP_PROTO_UDP);
    } else if (u->p.pki_cert[0] && u->p.pki_key[0]) {
        coap_dtls_pki_t pki;
        memset(&pki, 0, sizeof(pki));
        pki.version = COAP_DTLS_PKI_SETUP_VERSION;
        /* et_uplink_check_pki() let us here without a CA only with insecure_skip_verify */
        pki.verify_peer_cert = u->p.pki_ca[0] ? 1 : 0;
        pki.check_common_ca = u->p.pki_ca[0] ? 1 : 0;
        pki.use_cid = (uint8_t)(u->p.use_cid ? 1 : 0);
        pki.pki_key.key_type = COAP_PKI_KEY_PEM;
        pki.pki_key.key.pem.public_cert = u->p.pki_cert;
        pki.pki_key.key.pem.private_key = u->p.pki_key;
        pki.pki_key.key.pem.ca_file = u->p.pki_ca[0] ? u->p.pki_ca : NULL;
        /* mbedTLS 3.6 refuses to verify a server certificate without an expected name */
        pki.client_sni = u->p.pki_server_name;
        u->sess = coap_new_client_session_pki(u->ctx, NULL, &u->server, COAP_PROTO_DTLS, &pki);
    } else {
        coap_dtls_cpsk_t cpsk;
        memset(&cpsk, 0, sizeof(cpsk));
        cpsk.version = COAP_DTLS_CPSK_SETUP_VERSION;
        cpsk.use_cid = (uint8_t)(u->p.use_cid ? 1 : 0);
        cpsk.psk_info.identity.s = (const uint8_t *)u->p.device_id;
        cpsk.psk_info.identity.length = strlen(u->p.device_id);
        cpsk.psk_info.key.s = u->p.psk;
        cpsk.psk_info.key.length = u->p.psk_len;
        u->sess = coap_new_client_session_psk2(u->ctx, NULL, &u->server, COAP_PROTO_DTLS, &cpsk);
    }
    if (!u->sess)
        return -1;
    u->sess_dead = 0;
    u->st.sessions++;
    coap_session_set_ack_timeout(u->sess, fixed_ms(u->p.ack_timeout_ms));
    coap_session_set_ack_random_factor(u->sess, fixed_ms(u->p.ack_random_factor_milli));
    coap_session_set_max_retransmit(u->sess, u->p.max_retransmit);
    return 0;
}

/* RFC 7252 MAX_TRANSMIT_SPAN for our parameters, plus what the collector's own separate
 * response retransmissions can take (libcoap defaults: 2 s, 4 retransmits: ~45 s). */
static uint32_t answer_timeout(const et_uplink *u)
{
    if (u->p.answer_timeout_ms)
        return u->p.answer_timeout_ms;
    uint64_t span = (uint64_t)u->p.ack_timeout_ms * ((1ull << ET_MIN(u->p.max_retransmit, 20u)) - 1) *
                    u->p.ack_random_factor_milli / 1000;
    return (uint32_t)ET_MIN(span + 50000, (uint64_t)UINT32_MAX / 2);
}

static void on_answer_timeout(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    et_uplink *u = ud;
    u->answer_timer = 0;
    if (!u->in_flight)
        return;
    u->st.timeouts++;
    u->sess_dead = 1; /* forget the exchange with the session; the retry is deduplicated */
    u->need_resolve = 1;
    fail(u, "no final answer from the collector");
}

static void close_session(et_uplink *u)
{
    if (u->sess) {
        coap_session_release(u->sess);
        u->sess = NULL;
        u->st.connected = 0;
    }
}

/* When the next held record is due. Called after a full round of the queue found nothing to
 * send: an entry already due then belongs to a record that is no longer pending (evicted
 * from a full spool), or one that became due during the round; forgetting it costs at most
 * its backoff history, keeping it would wake us at once, again and again. */
static uint64_t earliest_held(et_uplink *u, uint64_t now)
{
    uint64_t t = UINT64_MAX;
    for (unsigned i = 0; i < HELD_MAX; i++) {
        if (!u->held[i].fails)
            continue;
        if (u->held[i].not_before <= now)
            memset(&u->held[i], 0, sizeof(u->held[i]));
        else if (u->held[i].not_before < t)
            t = u->held[i].not_before;
    }
    return t;
}

static void try_send(et_uplink *u)
{
    if (u->in_flight || et_resolver_busy(u->res))
        return;
    if (!u->have_addr || u->need_resolve) {
        if (et_resolver_start(u->res, u->host, u->port, RESOLVE_TIMEOUT_MS) != 0)
            fail(u, "cannot start name resolution");
        return; /* on_resolved() comes back here */
    }
    u->checkin = 0; /* a check-in that failed is not retried as such: the spool may hold records now */
    spool_rec r;
    long n = spool_peek(u->sp, &r, u->buf, SPOOL_REC_MAX);
    if (n == 0 && !u->p.checkin_ms && !u->nstarted)
        return; /* idle: et_uplink_kick() wakes us */
    if (n == 0) {
        uint64_t now = (uint64_t)et_now_mono_ms(), due = u->last_exchange_ms + u->p.checkin_ms;
        if (now < due && !u->nstarted) { /* a started report goes at once: a trace runs seconds */
            schedule(u, (uint32_t)(due - now));
            u->held_wait = 1; /* only a check-in waits: a new snapshot may go now (et_uplink_kick) */
            return;
        }
        u->checkin = 1;
    }
    if (n < 0) {
        /* -2 cannot happen (the buffer is SPOOL_REC_MAX); -1 is an I/O error on flash */
        fail(u, "spool read failed");
        return;
    }
    held_rec *h = u->checkin ? NULL : held_find(u, r.id);
    uint64_t now = (uint64_t)et_now_mono_ms();
    if (h && h->not_before > now) {
        /* Not due: move it behind the others, unless every pending record has been moved
         * since the last send (all are held): then sleep until the first is due, or until
         * a new snapshot arrives (et_uplink_kick). */
        uint64_t pending = pending_records(u);
        if (pending > 1 && u->rot_streak < pending && rotate(u, &r, (size_t)n) == 0) {
            u->rot_streak++;
            schedule(u, 0);
            return;
        }
        uint64_t due = earliest_held(u, now);
        schedule(u, (uint32_t)ET_MIN(due > now ? due - now : 1, (uint64_t)u->p.hold_max_ms));
        u->held_wait = 1;
        return;
    }
    if (!u->checkin && !budget_allows(u, &r)) {
        u->st.budget_deferred++;
        et_info("uplink: daily budget of %llu bytes reached (%llu used); waiting for the next UTC day",
                (unsigned long long)u->p.budget_bytes_per_day, (unsigned long long)u->st.bytes_today);
        schedule(u, ms_to_next_utc_day());
        return;
    }
    if (u->sess_dead)
        close_session(u);
    if (!u->sess && open_session(u)) {
        fail(u, "cannot create a CoAP session");
        return;
    }
    coap_pdu_t *pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, u->sess);
    if (!pdu) {
        fail(u, "cannot allocate a PDU");
        return;
    }
    coap_session_new_token(u->sess, &u->toklen, u->token);
    coap_add_token(pdu, u->toklen, u->token);
    coap_add_option(pdu, COAP_OPTION_URI_PATH, strlen(ET_UPLINK_PATH), (const uint8_t *)ET_UPLINK_PATH);
    uint8_t cf[4];
    coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT, coap_encode_var_safe(cf, sizeof(cf), ET_UPLINK_CONTENT_FORMAT),
                    cf);
    if (u->proto == COAP_PROTO_UDP) {
        /* plain CoAP (tests only): the collector's unauthenticated test port names us by query */
        char q[80];
        int ql = snprintf(q, sizeof(q), "d=%s", u->p.device_id);
        coap_add_option(pdu, COAP_OPTION_URI_QUERY, (size_t)ql, (const uint8_t *)q);
    }
    for (unsigned i = 0; i < u->nstarted; i++) {
        char q[24];
        int ql = et_cmd_started_format(u->started[i], q, sizeof(q));
        coap_add_option(pdu, COAP_OPTION_URI_QUERY, (size_t)ql, (const uint8_t *)q);
    }
    u->started_sent = u->nstarted;
    if (u->checkin) {
        memset(&u->rec, 0, sizeof(u->rec));
        u->len = 0;
        u->st.cmd.checkins++;
    } else {
        u->rec = r;
        u->len = (size_t)n;
    }
    if (u->len && !coap_add_data_large_request(u->sess, pdu, u->len, u->buf, NULL, NULL)) {
        coap_delete_pdu(pdu);
        fail(u, "cannot attach the payload");
        return;
    }
    u->in_flight = 1;
    u->rot_streak = 0;
    if (!u->checkin)
        u->st.posts++; /* uploads; check-ins are counted in st.cmd */
    stop_watchdog(u);
    u->answer_timer = et_loop_add_timer(u->loop, answer_timeout(u), 0, on_answer_timeout, u);
    if (coap_send(u->sess, pdu) == COAP_INVALID_MID) {
        u->sess_dead = 1;
        fail(u, "send failed");
        return;
    }
    pump(u);
}

/* ---- public API ------------------------------------------------------------------------ */

void et_uplink_report_started(et_uplink *u, uint64_t id)
{
    if (u->nstarted >= ET_CMD_STARTED_MAX) {
        /* one capture runs at a time, so this only happens with the collector out of reach;
         * the result record still tells it how the command ended */
        et_debug("uplink: started report for command %llu not kept (%u waiting)", (unsigned long long)id,
                 u->nstarted);
        return;
    }
    u->started[u->nstarted++] = id;
    et_uplink_kick(u);
}

void et_uplink_set_command_handler(et_uplink *u, et_cmd_fn fn, void *ctx)
{
    u->cmd_fn = fn;
    u->cmd_ctx = ctx;
}

et_uplink *et_uplink_create(et_loop *loop, spool *sp, const et_uplink_params *p, char *err, size_t errlen)
{
    et_uplink *u = calloc(1, sizeof(*u));
    if (!u || !(u->buf = malloc(SPOOL_REC_MAX))) {
        free(u);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    u->loop = loop;
    u->sp = sp;
    u->p = *p;
    if (!u->p.block_size || u->p.block_size > 1024)
        u->p.block_size = 1024;
    if (!u->p.backoff_min_ms)
        u->p.backoff_min_ms = 2000;
    if (u->p.backoff_max_ms < u->p.backoff_min_ms)
        u->p.backoff_max_ms = u->p.backoff_min_ms;
    if (getrandom(&u->rng, sizeof(u->rng), GRND_NONBLOCK) != sizeof(u->rng) || !u->rng)
        u->rng = (uint32_t)et_now_mono_ms() ^ (uint32_t)getpid() ^ 0x9e3779b9u;
    budget_load(u);
    /* the first check-in one interval after start, not at once: a gateway that boots with the
     * collector (or its network) not up yet would start its backoff on an empty request */
    u->last_exchange_ms = (uint64_t)et_now_mono_ms();
    if (u->p.hold_min_ms > u->p.hold_max_ms)
        u->p.hold_min_ms = u->p.hold_max_ms;
    if (!u->p.hold_min_ms)
        u->p.hold_min_ms = 1000;
    uint32_t held_before = 0; /* the records themselves are probed again: the table is in memory */
    if (u->p.state_dir[0])
        et_uplink_read_counters(u->p.state_dir, &u->st.held, &u->st.rejected, &held_before);

    coap_startup();
    coap_set_log_level(et_log_level >= ET_LOG_DEBUG ? COAP_LOG_INFO : COAP_LOG_ERR);
    coap_dtls_set_log_level(et_log_level >= ET_LOG_DEBUG ? COAP_LOG_INFO : COAP_LOG_CRIT);
    if (parse_collector(u, err, errlen))
        goto fail;
    if (u->proto == COAP_PROTO_DTLS && !coap_dtls_is_supported()) {
        snprintf(err, errlen, "libcoap built without DTLS");
        goto fail;
    }
    if (u->proto == COAP_PROTO_DTLS && !u->p.psk_len && !(u->p.pki_cert[0] && u->p.pki_key[0])) {
        snprintf(err, errlen, "no PSK and no certificate: provision the device first");
        goto fail;
    }
    if (et_uplink_check_pki(&u->p, err, errlen))
        goto fail;
    u->res = et_resolver_create(loop, on_resolved, u);
    if (!u->res) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    u->ctx = coap_new_context(NULL);
    if (!u->ctx) {
        snprintf(err, errlen, "cannot create a CoAP context");
        goto fail;
    }
    coap_context_set_app_data(u->ctx, u);
    coap_context_set_block_mode(u->ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    coap_context_set_max_block_size(u->ctx, u->p.block_size);
    /* Keep the DTLS session across quiet periods between snapshots (with CID it also
     * survives NAT rebinding); a CoAP ping keeps NAT bindings warm enough to get the answer. */
    coap_context_set_keepalive(u->ctx, 0);
    coap_register_response_handler(u->ctx, on_response);
    coap_register_nack_handler(u->ctx, on_nack);
    coap_register_event_handler(u->ctx, on_event);
    u->coap_fd = coap_context_get_coap_fd(u->ctx);
    if (u->coap_fd < 0 || et_loop_watch(loop, u->coap_fd, ET_EV_READ, on_coap_fd, u)) {
        snprintf(err, errlen, "cannot watch libcoap's fd");
        goto fail;
    }
    return u;
fail:
    et_resolver_destroy(u->res);
    if (u->ctx)
        coap_free_context(u->ctx);
    free(u->buf);
    free(u);
    return NULL;
}

void et_uplink_destroy(et_uplink *u)
{
    if (!u)
        return;
    if (u->io_timer)
        et_loop_cancel_timer(u->loop, u->io_timer);
    if (u->retry_timer)
        et_loop_cancel_timer(u->loop, u->retry_timer);
    stop_watchdog(u);
    if (u->coap_fd >= 0)
        et_loop_unwatch(u->loop, u->coap_fd);
    et_resolver_destroy(u->res);
    close_session(u);
    coap_free_context(u->ctx);
    free(u->buf);
    mbedtls_platform_zeroize(u->p.psk, sizeof(u->p.psk));
    free(u);
}

int et_uplink_set_identity(et_uplink *u, const char *device_id, const uint8_t *psk, size_t psk_len)
{
    if (!device_id[0] || strlen(device_id) >= sizeof(u->p.device_id) || !psk_len || psk_len > ET_UPLINK_PSK_MAX)
        return -1;
    mbedtls_platform_zeroize(u->p.psk, sizeof(u->p.psk));
    memcpy(u->p.psk, psk, psk_len);
    u->p.psk_len = psk_len;
    et_strlcpy(u->p.device_id, device_id, sizeof(u->p.device_id));
    /* The session was keyed with the old PSK: the collector may already have revoked it, so
     * a request on it would only time out. Drop it (with the request in flight: its record
     * stays in the spool, and should the collector have stored it, the resend is answered
     * 2.04) and handshake with the new key now, without the backoff the old key earned. */
    if (u->in_flight) {
        u->in_flight = 0;
        stop_watchdog(u);
    }
    close_session(u);
    u->sess_dead = 0;
    u->backoff_ms = 0;
    u->same_fails = 0;
    u->hold_streak = 0;
    schedule(u, 0);
    return 0;
}

void et_uplink_kick(et_uplink *u)
{
    if (u->held_wait && u->retry_timer) {
        /* only held records were waiting: the new snapshot may go now */
        et_loop_cancel_timer(u->loop, u->retry_timer);
        u->retry_timer = 0;
        u->held_wait = 0;
        u->rot_streak = 0;
    }
    if (u->in_flight || u->retry_timer)
        return; /* busy, or backing off: the timer will look at the spool */
    try_send(u);
}

int et_uplink_idle(et_uplink *u)
{
    if (u->in_flight)
        return 0;
    spool_stats s;
    spool_get_stats(u->sp, &s);
    return s.pending_findings + s.pending_routine == 0;
}

void et_uplink_get_stats(const et_uplink *u, et_uplink_stats *st)
{
    *st = u->st;
    st->backoff_ms = u->backoff_ms;
    st->in_flight = u->in_flight;
    st->held_now = held_count(u);
    st->have_addr = u->have_addr;
}

void et_uplink_set_settings_handler(et_uplink *u, et_settings_fn fn, void *ctx)
{
    u->set_fn = fn;
    u->set_ctx = ctx;
}

void et_uplink_retune(et_uplink *u, uint64_t budget_bytes_per_day, uint32_t checkin_ms)
{
    u->p.budget_bytes_per_day = budget_bytes_per_day;
    u->p.checkin_ms = checkin_ms;
}
