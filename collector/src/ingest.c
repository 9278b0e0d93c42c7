/* ingest.c - CoAP/DTLS server stage of the collector (see ingest.h for the protocol): the
 * validate-and-stage step and the server that dispatches requests to its family:
 *   ingest_identity.c  who is talking (PSK / certificate identity from the session)
 *   ingest_block1.c    Block1 reassembly (pure, fuzzed)
 *   ingest_commit.c    group commit and the answers that wait for it
 *
 * Single-threaded: libcoap's epoll loop calls the handler; the store is touched only from
 * there and from commit_flush() between loop iterations. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <coap3/coap.h>
#include <zstd.h>

#include "ingest.h"
#include "capture.h"
#include "metrics.h"
#include "ingest_block1.h"
#include "ingest_commit.h"
#include "ingest_identity.h"

/* ---- the pure part: decode, validate, stage ---------------------------------------------- */

/* A capture record (wire/capture.h): the result of a command this device was given. Stored
 * once per (device, command id); a repeat, or a result for a command that is not this
 * device's, is answered 2.04 / 4.00 (the agent drops it: no collector could store it). */
static void ingest_capture(coll_store *st, ingest_counters *c, const char *device, const uint8_t *body, size_t len,
                           int64_t received_ms, ingest_result *r)
{
    et_capture cap;
    if (et_capture_decode(body, len, &cap, r->diag, sizeof(r->diag))) {
        c->bad_request++;
        r->code = 400;
        return;
    }
    if (cap.zstd) {
        /* bounded: a frame that would expand past the cap is refused, not allocated for */
        static uint8_t plain[ET_CAPTURE_DATA_MAX];
        size_t n = ZSTD_decompress(plain, sizeof(plain), cap.data, cap.len);
        if (ZSTD_isError(n)) {
            c->bad_request++;
            r->code = 400;
            snprintf(r->diag, sizeof(r->diag), "capture data: zstd: %s", ZSTD_getErrorName(n));
            return;
        }
        cap.data = plain;
        cap.len = n;
        cap.zstd = 0;
    }
    if (store_begin(st)) {
        c->store_errors++;
        r->code = 500;
        snprintf(r->diag, sizeof(r->diag), "database: %.120s", store_errmsg(st));
        return;
    }
    int rc = store_capture_put(st, device, &cap, received_ms);
    if (rc < 0) {
        c->store_errors++;
        r->code = 500;
        snprintf(r->diag, sizeof(r->diag), "database: %.120s", store_errmsg(st));
        return;
    }
    if (rc == STORE_Q_NOTFOUND) {
        c->bad_request++;
        r->code = 400;
        snprintf(r->diag, sizeof(r->diag), "capture for command %llu: no such command for this device",
                 (unsigned long long)cap.cmd_id);
        return;
    }
    r->staged = 1;
    c->captures++;
    r->code = rc == STORE_DUPLICATE ? 204 : 201;
    snprintf(r->diag, sizeof(r->diag), "%s capture %llu s=%d", rc == STORE_DUPLICATE ? "dup" : "new",
             (unsigned long long)cap.cmd_id, coll_decode_schema_max());
}

void ingest_payload(coll_store *st, coll_decoder *dec, ingest_counters *c, const char *device,
                    const uint8_t *body, size_t len, int content_format, size_t max_body, int64_t received_ms,
                    int keep_payload, ingest_result *r)
{
    static coll_snap snap; /* ~20 KB: static keeps it off the stack; single-threaded */
    r->code = 0;
    r->staged = 0;
    r->diag[0] = 0;
    if (!max_body)
        max_body = INGEST_DEFAULT_MAX_BODY;
    if (content_format != INGEST_CF_OCTET_STREAM) {
        c->bad_format++;
        r->code = 415;
        if (content_format < 0)
            snprintf(r->diag, sizeof(r->diag), "Content-Format missing; expected %d (application/octet-stream)",
                     INGEST_CF_OCTET_STREAM);
        else
            snprintf(r->diag, sizeof(r->diag), "Content-Format %d; expected %d (application/octet-stream)",
                     content_format, INGEST_CF_OCTET_STREAM);
        return;
    }
    if (len > max_body) {
        c->too_large++;
        r->code = 413;
        snprintf(r->diag, sizeof(r->diag), "body %zu bytes > limit %zu", len, max_body);
        return;
    }
    if (et_capture_is(body, len)) {
        ingest_capture(st, c, device, body, len, received_ms, r);
        return;
    }
    const char *kind = "";
    int code = coll_decode(dec, body, len, &snap, r->diag, sizeof(r->diag), &kind);
    if (code) {
        r->code = code;
        if (code == 413) {
            c->too_large++;
        } else if (code == 500) {
            c->store_errors++;
        } else if (code == 501) {
            c->unreadable++; /* a newer agent, or a dictionary not loaded: the agent keeps it */
        } else {
            c->bad_request++; /* 4.00 corrupt bytes, 4.22 schema violation: the agent drops it */
            if (!strcmp(kind, "zstd"))
                c->bad_zstd++;
            else if (!strcmp(kind, "schema"))
                c->bad_schema++;
            else
                c->bad_cbor++;
        }
        return;
    }
    /* The identity is the DTLS session's, and the snapshot is stored under it whatever the
     * payload claims: a device cannot write as another. The claim is only counted
     * (identity_mismatch in the stats line). Refusing it (4.03, as before) blocked a device's spool for ever: every record
     * spooled before provisioning or before a rename carries the old id, and a 4.03 is
     * retryable for the agent. */
    if (strcmp(snap.device_id, device) != 0) {
        c->identity_mismatch++;
        snprintf(snap.device_id, sizeof(snap.device_id), "%s", device);
    }
    if (store_begin(st)) {
        c->store_errors++;
        r->code = 500;
        snprintf(r->diag, sizeof(r->diag), "database: %.120s", store_errmsg(st));
        return;
    }
    int rc = store_put_snapshot(st, device, &snap, received_ms, keep_payload ? body : NULL, len);
    if (rc < 0) {
        c->store_errors++;
        r->code = 500;
        snprintf(r->diag, sizeof(r->diag), "database: %.120s", store_errmsg(st));
        return;
    }
    r->staged = 1;
    /* what the agent runs of the central settings (schema 3): committed with the snapshot */
    if (rc == STORE_NEW && snap.w.schema >= 3 && store_settings_report(st, device, &snap.w, received_ms))
        ingest_log("settings state of %s not stored: %s", device, store_errmsg(st));
    if (rc == STORE_DUPLICATE) {
        c->snapshots_dup++;
        r->code = 204;
        snprintf(r->diag, sizeof(r->diag), "dup %s s=%d", snap.snapshot_id, coll_decode_schema_max());
    } else {
        c->snapshots_new++;
        c->bytes += len;
        r->code = 201;
        /* " s=N": the newest schema this collector reads; the agent writes a later schema
         * only after seeing it, so agents can be updated before their collector */
        snprintf(r->diag, sizeof(r->diag), "new %s s=%d", snap.snapshot_id, coll_decode_schema_max());
    }
}

void ingest_format_counters(const ingest_counters *c, char *buf, size_t len)
{
    snprintf(buf, len,
             "requests=%" PRIu64 " new=%" PRIu64 " dup=%" PRIu64 " bad_request=%" PRIu64 " (zstd=%" PRIu64
             " cbor=%" PRIu64 " schema=%" PRIu64 ") too_large=%" PRIu64 " bad_format=%" PRIu64
             " identity_mismatch=%" PRIu64 " unauthenticated=%" PRIu64 " block_incomplete=%" PRIu64
             " block_busy=%" PRIu64 " block_expired=%" PRIu64 " block_evicted=%" PRIu64
             " block_restarted=%" PRIu64 " reassembly_bytes=%" PRIu64 " reassembly_bodies=%" PRIu64
             " store_errors=%" PRIu64 " unknown_identity=%" PRIu64 " revoked=%" PRIu64 " key_retired=%" PRIu64
             " key_promoted=%" PRIu64 " key_fallback=%" PRIu64 " commits=%" PRIu64 " bytes=%" PRIu64
             " unreadable=%" PRIu64 " checkins=%" PRIu64 " commands_sent=%" PRIu64 " captures=%" PRIu64
             " started=%" PRIu64 " started_bad=%" PRIu64,
             c->requests, c->snapshots_new, c->snapshots_dup, c->bad_request, c->bad_zstd, c->bad_cbor,
             c->bad_schema, c->too_large, c->bad_format, c->identity_mismatch, c->unauthenticated,
             c->block_incomplete, c->block_busy, c->block_expired, c->block_evicted, c->block_restarted,
             c->reassembly_bytes, c->reassembly_bodies, c->store_errors, c->unknown_identity, c->revoked,
             c->key_retired, c->key_promoted, c->key_fallback, c->commits, c->bytes, c->unreadable, c->checkins, c->commands_sent, c->captures,
             c->started_reports, c->started_bad);
}

/* ---- the CoAP server ------------------------------------------------------------------- */

/* all Block1 reassembly buffers together */
#define REASSEMBLY_BUDGET ((size_t)64 << 20)

/* Per-session state: for certificate sessions, the device id taken from the validated
 * client certificate. (Block1 state is keyed per body, in S.b1.) */
typedef struct sess_state {
    char cert_id[COLL_ID_MAX]; /* CN of a validated client certificate */
} sess_state;

static struct server {
    coll_store *st;
    coll_decoder *dec;
    const ingest_params *p;
    ingest_counters c;
    b1_table b1;
} S;

static volatile sig_atomic_t g_stop, g_dump;
static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        g_dump = 1;
    else
        g_stop = 1;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ingest_log(const char *fmt, ...)
{
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s edgetrace-collector: ", ts);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static sess_state *sess_get(coap_session_t *session)
{
    sess_state *ss = coap_session_get_app_data(session);
    if (!ss && (ss = calloc(1, sizeof(*ss))) != NULL)
        coap_session_set_app_data(session, ss);
    return ss;
}

static int on_event(coap_session_t *session, const coap_event_t event)
{
    if ((event == COAP_EVENT_SERVER_SESSION_NEW || event == COAP_EVENT_SERVER_SESSION_DEL) &&
        coap_session_get_proto(session) == COAP_PROTO_DTLS)
        metrics_dtls_sessions_add(event == COAP_EVENT_SERVER_SESSION_NEW ? 1 : -1);
    identity_on_event(session, event);
    if (event == COAP_EVENT_SERVER_SESSION_DEL) {
        b1_drop_session(&S.b1, (uint64_t)(uintptr_t)session);
        free(coap_session_get_app_data(session));
        coap_session_set_app_data(session, NULL);
    }
    return 0;
}

/* Block1 figures into the counters (the table keeps its own). */
static void sync_block1_counters(void)
{
    S.c.block_expired = S.b1.expired;
    S.c.block_evicted = S.b1.evicted;
    S.c.block_restarted = S.b1.restarted;
    S.c.reassembly_bytes = S.b1.used;
    S.c.reassembly_bodies = S.b1.n;
}

static void reject(coap_pdu_t *response, int code, uint64_t *counter, const char *diag)
{
    if (counter)
        (*counter)++;
    ingest_respond(response, code, diag, 0, 0, NULL, 0);
}

/* Commands are handed out again this long after the last time until they expire: the agent
 * runs each id once, so a re-delivery only costs bytes, and an answer lost on a lossy link
 * is made good by the next request after this. */
#define CMD_REDELIVER_MS 30000

/* The device's due commands into r->cmd (the answer to its own request: it is behind NAT).
 * Failing to read them is not the upload's failure: they come with a later answer.
 * answer_lost: the request re-sent a snapshot we already hold (a CoAP retransmission or a
 * re-upload), so the device did not hear our last answer: settings handed out lately go again
 * now instead of after the re-delivery period. */
static void attach_commands(const char *device, ingest_result *r, int answer_lost)
{
    r->cmdlen = 0;
    static et_cmd_list l; /* with room for a settings document: not on the stack */
    char err[96] = "";
    if (store_cmd_due(S.st, device, wall_ms(), CMD_REDELIVER_MS, &l) < 0)
        return;
    /* central settings ride along until the device reports running or refusing them, at the
     * commands' pace (a rare answer too large for both sends them one period later) */
    if (store_settings_due(S.st, device, wall_ms(), answer_lost ? 0 : CMD_REDELIVER_MS, l.settings,
                           sizeof(l.settings), &l.settings_len) < 0)
        l.settings_len = 0;
    if (!l.n && !l.settings_len)
        return;
    int rc = et_cmd_encode(&l, r->cmd, sizeof(r->cmd), &r->cmdlen, err, sizeof(err));
    if (rc && l.n && l.settings_len) {
        /* together too large for one answer: the commands now, the settings with a later one */
        l.settings_len = 0;
        rc = et_cmd_encode(&l, r->cmd, sizeof(r->cmd), &r->cmdlen, err, sizeof(err));
    }
    if (rc) {
        ingest_log("commands for %s not sent: %s", device, err);
        r->cmdlen = 0;
        return;
    }
    S.c.commands_sent += l.n;
}

/* The commands the device says it has started ("r=ID" Uri-Query options, wire/command.h):
 * the "running" state of a capture. Anything else in the query is not ours and ignored; a
 * bad value is counted and changes nothing. A report is not the request's business: if the
 * database refuses it now the device sends it again with its next request. */
static void take_started_reports(const coap_pdu_t *request, const char *device)
{
    coap_opt_filter_t f;
    coap_option_filter_clear(&f);
    coap_option_filter_set(&f, COAP_OPTION_URI_QUERY);
    coap_opt_iterator_t oi;
    coap_option_iterator_init(request, &oi, &f);
    coap_opt_t *o;
    unsigned n = 0;
    while ((o = coap_option_next(&oi)) && n < ET_CMD_STARTED_MAX) {
        const uint8_t *v = coap_opt_value(o);
        size_t len = coap_opt_length(o);
        uint64_t id;
        if (len < 2 || v[0] != 'r' || v[1] != '=')
            continue;
        n++;
        if (et_cmd_started_parse(v, len, &id)) {
            S.c.started_bad++;
            continue;
        }
        if (store_cmd_started(S.st, device, id, wall_ms()) > 0)
            S.c.started_reports++;
    }
}

/* Block1: the answer for a block that does not complete the body, or 0 with o filled with
 * the complete body (the caller calls b1_release once it is stored). */
static int block1_step(coap_session_t *session, const coap_pdu_t *request, const coap_block_t *blk,
                       const uint8_t *data, size_t len, coap_pdu_t *response, b1_out *o)
{
    coap_opt_iterator_t oi;
    coap_opt_t *size1 = coap_check_option(request, COAP_OPTION_SIZE1, &oi);
    /* the body's key: its Request-Tag (RFC 9175) when it has one, else its token */
    coap_opt_t *rtag = coap_check_option(request, COAP_OPTION_RTAG, &oi);
    coap_bin_const_t token = coap_pdu_get_token(request);
    b1_block b = {
        .session = (uint64_t)(uintptr_t)session,
        .has_rtag = rtag != NULL,
        .tag = rtag ? coap_opt_value(rtag) : token.s,
        .taglen = rtag ? coap_opt_length(rtag) : token.length,
        .now_ms = mono_ms(),
        .num = blk->num,
        .szx = blk->szx,
        .more = blk->m,
        .size1 = size1 ? coap_decode_var_bytes(coap_opt_value(size1), coap_opt_length(size1)) : 0,
        .data = data,
        .len = len,
    };
    b1_put(&S.b1, &b, o);
    switch (o->code) {
    case B1_DONE:
        return 0;
    case B1_CONTINUE:
        ingest_respond(response, 231, NULL, 1, o->echo, NULL, 0);
        break;
    case B1_TOO_LARGE: {
        S.c.too_large++;
        uint8_t sb[4];
        coap_pdu_set_code(response, COAP_RESPONSE_CODE(413));
        coap_add_option(response, COAP_OPTION_SIZE1, coap_encode_var_safe(sb, sizeof(sb), (unsigned)S.b1.max_body),
                        sb);
        coap_add_data(response, strlen(o->diag), (const uint8_t *)o->diag);
        break;
    }
    case B1_BAD:
        reject(response, 400, &S.c.bad_request, o->diag);
        break;
    case B1_INCOMPLETE:
        reject(response, 408, &S.c.block_incomplete, o->diag);
        break;
    default:
        reject(response, o->code, &S.c.block_busy, o->diag);
        break;
    }
    sync_block1_counters();
    return o->code;
}

static void post_handler(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                         const coap_string_t *query, coap_pdu_t *response)
{
    (void)resource;
    /* A separate response whose batch has committed: libcoap calls us again with the
     * stored request once we triggered it. */
    if (commit_answer_async(session, request, response))
        return;
    S.c.requests++;

    char device[COLL_ID_MAX];
    sess_state *ss = coap_session_get_proto(session) == COAP_PROTO_DTLS ? sess_get(session) : NULL;
    if (!identity_of_session(session, query, ss ? ss->cert_id : NULL, device, sizeof(device))) {
        reject(response, 401, &S.c.unauthenticated, "no authenticated device identity");
        return;
    }
    /* Keys change under a live session (revoke, rotate in another process): the session's
     * key must still be one the device may use. */
    char why[96];
    if (!identity_still_valid(session, device, why, sizeof(why))) {
        ingest_log("refused a request from %s: %s", device, why);
        reject(response, 401, NULL, why);
        return;
    }

    coap_opt_iterator_t oi;
    coap_block_t blk;
    int has_block1 = coap_get_block(request, COAP_OPTION_BLOCK1, &blk);
    /* once per request, not per block: every block of a Block1 body repeats the options */
    if (!has_block1 || !blk.m)
        take_started_reports(request, device);
    coap_opt_t *cf = coap_check_option(request, COAP_OPTION_CONTENT_FORMAT, &oi);
    int content_format = cf ? (int)coap_decode_var_bytes(coap_opt_value(cf), coap_opt_length(cf)) : -1;

    size_t len = 0;
    const uint8_t *data = NULL;
    if (!coap_get_data(request, &len, &data)) {
        len = 0;
        data = NULL;
    }

    /* Block1: collect the body, bounded by max_body (has_block1 above). */

    /* An empty POST is a check-in: a device with nothing to upload asking for its commands. */
    if (!has_block1 && len == 0) {
        S.c.checkins++;
        ingest_result ci = {.code = 204};
        snprintf(ci.diag, sizeof(ci.diag), "idle s=%d", coll_decode_schema_max());
        attach_commands(device, &ci, 0);
        ingest_respond(response, ci.code, ci.diag, 0, 0, ci.cmd, ci.cmdlen);
        return;
    }
    uint32_t block1_echo = 0;
    b1_out body = {0};
    if (has_block1) {
        if (content_format != INGEST_CF_OCTET_STREAM) {
            char d[96];
            snprintf(d, sizeof(d), "Content-Format %d; expected %d", content_format, INGEST_CF_OCTET_STREAM);
            reject(response, 415, &S.c.bad_format, d);
            return;
        }
        if (block1_step(session, request, &blk, data, len, response, &body))
            return;
        data = body.body;
        len = body.len;
        block1_echo = body.echo;
    }

    ingest_result r;
    if (!store_in_txn(S.st))
        commit_batch_start(); /* the ingest-to-commit latency of /metrics starts here */
    ingest_payload(S.st, S.dec, &S.c, device, data, len, content_format, S.b1.max_body, wall_ms(),
                   S.p->store_payload, &r);
    /* stored (the statement copied the bytes) or rejected: the body's buffer goes now, not
     * when the session ends */
    b1_release(&S.b1, &body);
    sync_block1_counters();
    if (!r.staged) {
        ingest_log("rejected %d.%02d from %s: %s", r.code / 100, r.code % 100, device, r.diag);
        ingest_respond(response, r.code, r.diag, has_block1, block1_echo, NULL, 0);
        return;
    }
    attach_commands(device, &r, r.code == 204); /* 204: a duplicate (ingest_payload) */
    commit_staged(session, request, response, &r, has_block1, block1_echo);
}

static coap_endpoint_t *listen_on(coap_context_t *ctx, const char *spec, coap_proto_t proto, uint16_t defport)
{
    char host[128];
    const char *colon = strrchr(spec, ':');
    uint16_t port = defport;
    if (colon) {
        snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
        port = (uint16_t)atoi(colon + 1);
    } else {
        snprintf(host, sizeof(host), "%s", spec);
    }
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    coap_str_const_t h = {strlen(host), (const uint8_t *)host};
    coap_addr_info_t *ai = coap_resolve_address_info(&h, port, port, port, port, AI_PASSIVE | AI_NUMERICHOST,
                                                     1 << (proto == COAP_PROTO_DTLS ? COAP_URI_SCHEME_COAPS
                                                                                    : COAP_URI_SCHEME_COAP),
                                                     COAP_RESOLVE_TYPE_LOCAL);
    if (!ai)
        return NULL;
    coap_endpoint_t *ep = coap_new_endpoint(ctx, &ai->addr, proto);
    coap_free_address_info(ai);
    return ep;
}

int ingest_serve(coll_store *st, coll_decoder *dec, const ingest_params *p)
{
    memset(&S, 0, sizeof(S));
    S.st = st;
    S.dec = dec;
    S.p = p;
    b1_init(&S.b1, p->max_body ? p->max_body : INGEST_DEFAULT_MAX_BODY, REASSEMBLY_BUDGET);
    identity_setup(st, &S.c, p->insecure_plain_listen != NULL);

    coap_startup();
    coap_set_log_level(getenv("ET_COAP_DEBUG") ? COAP_LOG_DEBUG : COAP_LOG_WARN);
    coap_dtls_set_log_level(getenv("ET_COAP_DEBUG") ? COAP_LOG_DEBUG : COAP_LOG_ERR);
    if (!coap_dtls_is_supported()) {
        ingest_log("libcoap was built without DTLS");
        return 1;
    }
    coap_context_t *ctx = coap_new_context(NULL);
    if (!ctx) {
        ingest_log("cannot create CoAP context");
        return 1;
    }
    /* Block1 is ours (see the top of this file); libcoap still answers Block2 GETs. */
    coap_context_set_block_mode(ctx, 0);
    /* Many devices on slow links: keep idle sessions a while (the DTLS state and CID
     * survive short outages without a new handshake), but bound how many. */
    coap_context_set_max_idle_sessions(ctx, 4096);
    coap_context_set_session_timeout(ctx, 600);
    coap_context_set_max_handshake_sessions(ctx, 256);

    coap_dtls_spsk_t spsk;
    memset(&spsk, 0, sizeof(spsk));
    spsk.version = COAP_DTLS_SPSK_SETUP_VERSION;
    spsk.validate_id_call_back = identity_psk_for;
    spsk.psk_info.hint.s = (const uint8_t *)"edgetrace";
    spsk.psk_info.hint.length = 9;
    if (!coap_context_set_psk2(ctx, &spsk)) {
        ingest_log("cannot set up DTLS PSK");
        coap_free_context(ctx);
        return 1;
    }
    if (p->pki_cert && p->pki_key) {
        coap_dtls_pki_t pki;
        memset(&pki, 0, sizeof(pki));
        pki.version = COAP_DTLS_PKI_SETUP_VERSION;
        pki.verify_peer_cert = p->pki_ca ? 1 : 0;
        pki.check_common_ca = p->pki_ca ? 1 : 0;
        pki.pki_key.key_type = COAP_PKI_KEY_PEM;
        pki.pki_key.key.pem.public_cert = p->pki_cert;
        pki.pki_key.key.pem.private_key = p->pki_key;
        pki.pki_key.key.pem.ca_file = p->pki_ca;
        pki.allow_self_signed = 0;
        if (!coap_context_set_pki(ctx, &pki)) {
            ingest_log("cannot set up DTLS certificates");
            coap_free_context(ctx);
            return 1;
        }
    }
    const char *listen = p->listen ? p->listen : "0.0.0.0:5684";
    if (!listen_on(ctx, listen, COAP_PROTO_DTLS, 5684)) {
        ingest_log("cannot listen on %s (coaps)", listen);
        coap_free_context(ctx);
        return 1;
    }
    if (p->insecure_plain_listen && !listen_on(ctx, p->insecure_plain_listen, COAP_PROTO_UDP, 5683)) {
        ingest_log("cannot listen on %s (coap)", p->insecure_plain_listen);
        coap_free_context(ctx);
        return 1;
    }
    coap_str_const_t *path = coap_make_str_const(INGEST_PATH);
    coap_resource_t *res = coap_resource_init(path, 0);
    coap_register_request_handler(res, COAP_REQUEST_POST, post_handler);
    coap_add_resource(ctx, res);
    coap_register_event_handler(ctx, on_event);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (p->insecure_plain_listen) {
        /* loud on purpose: this port lets anyone write as any device */
        ingest_log("WARNING: INSECURE: plain CoAP on coap://%s accepts snapshots from anyone, naming any "
                   "device with ?d=ID (--insecure-plain-listen, for tests only; never in production)",
                   p->insecure_plain_listen);
    }
    ingest_log("listening on coaps://%s%s%s (max body %zu, %s commit)", listen,
               p->insecure_plain_listen ? " and INSECURE coap://" : "",
               p->insecure_plain_listen ? p->insecure_plain_listen : "", S.b1.max_body,
               p->group_commit ? "group" : "per-snapshot");
    printf("ready %s\n", listen);
    fflush(stdout);

    commit_setup(st, &S.c, coap_context_get_coap_fd(ctx), p->group_commit);
    time_t next_stats = p->stats_interval_s ? time(NULL) + p->stats_interval_s : 0;
    char line[1024];
    while (!g_stop) {
        coap_io_process(ctx, 1000);
        commit_gather(ctx, &g_stop);
        if (commit_pending() || store_in_txn(S.st))
            commit_flush();
        b1_expire(&S.b1, mono_ms());
        sync_block1_counters();
        metrics_ingest_publish(&S.c); /* a copy for the HTTP thread's /metrics */
        if (g_dump || (next_stats && time(NULL) >= next_stats)) {
            g_dump = 0;
            ingest_format_counters(&S.c, line, sizeof(line));
            ingest_log("stats %s", line);
            if (next_stats)
                next_stats = time(NULL) + p->stats_interval_s;
        }
    }
    /* Answer what is staged, then stop. */
    if (commit_pending() || store_in_txn(S.st))
        commit_flush();
    coap_io_process(ctx, COAP_IO_NO_WAIT);
    ingest_format_counters(&S.c, line, sizeof(line));
    ingest_log("shutdown: %s", line);
    b1_clear(&S.b1);
    coap_free_context(ctx);
    coap_cleanup();
    identity_teardown();
    return 0;
}
