/* ingest.c - CoAP/DTLS server stage of the collector (see ingest.h for the protocol).
 *
 * Why the collector does its own Block1 reassembly instead of libcoap's
 * COAP_BLOCK_USE_LIBCOAP: libcoap 4.3.5 sizes its reassembly buffer from the client's Size1
 * option and block numbers with no upper bound (src/coap_block.c, coap_block_build_body), so
 * a hostile client could make it allocate gigabytes before our handler sees a byte. Here the
 * cap is checked on Size1 and on every block, and the answer is a counted 4.13.
 *
 * Single-threaded: libcoap's epoll loop calls the handler; the store is touched only from
 * there and from flush_pending() between loop iterations. */
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
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "ingest.h"
#include "metrics.h"

/* ---- the pure part: decode, validate, stage ---------------------------------------------- */

static int valid_device_id(const char *s, size_t n)
{
    if (n == 0 || n >= COLL_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return 0;
    }
    return 1;
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
             " store_errors=%" PRIu64 " unknown_identity=%" PRIu64 " commits=%" PRIu64 " bytes=%" PRIu64
             " unreadable=%" PRIu64,
             c->requests, c->snapshots_new, c->snapshots_dup, c->bad_request, c->bad_zstd, c->bad_cbor,
             c->bad_schema, c->too_large, c->bad_format, c->identity_mismatch, c->unauthenticated,
             c->block_incomplete, c->store_errors, c->unknown_identity, c->commits, c->bytes, c->unreadable);
}

/* ---- the CoAP server ------------------------------------------------------------------- */

/* A staged request waiting for the batch COMMIT. Each is malloc'ed when staged and freed
 * when its separate response has gone out (libcoap holds a session reference for every
 * async, so every triggered one fires). The batch table holds at most MAX_PENDING: when
 * it is full the batch commits early, so memory does not grow with load. */
#define MAX_PENDING 1024
/* all Block1 reassembly buffers together */
#define REASSEMBLY_BUDGET ((size_t)64 << 20)
/* longest a staged snapshot waits for its batch to fill before the COMMIT */
#define BATCH_MAX_MS 20
typedef struct pending {
    int code;
    int done;          /* commit finished: code is final */
    int has_block1;
    uint32_t block1;   /* encoded Block1 value to echo */
    char diag[80];
} pending;

/* Per-session state: Block1 reassembly and, for certificate sessions, the device id taken
 * from the validated client certificate. */
typedef struct blk_state {
    char cert_id[COLL_ID_MAX]; /* CN / SubjectAltName of a validated client certificate */
    uint8_t *buf;
    size_t len;
    size_t cap;        /* grows with the body (never beyond max_body) */
    uint32_t next;     /* next expected block number */
    unsigned szx;
} blk_state;

static struct server {
    coll_store *st;
    coll_decoder *dec;
    const ingest_params *p;
    size_t max_body;
    ingest_counters c;
    coap_async_t *batch[MAX_PENDING]; /* staged in the open transaction */
    unsigned npend;
    unsigned outstanding;             /* pending structs alive (staged or triggered) */
    uint64_t handler_calls;
    int coap_fd;
    size_t reassembly_bytes;  /* sum of all sessions' reassembly buffer capacities */
    uint8_t pskbuf[COLL_PSK_MAX];
    coap_bin_const_t psk;
    struct timespec batch_t0; /* arrival of the first request of the open transaction (/metrics) */
    uint64_t new_at_commit;   /* snapshots_new at the last commit */
} S;

static volatile sig_atomic_t g_stop, g_dump;
static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        g_dump = 1;
    else
        g_stop = 1;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
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

/* PSK identity callback: the key for this identity from the database, or NULL (handshake
 * fails). libcoap copies the key into the session before we return the buffer again. */
static const coap_bin_const_t *psk_for_identity(coap_bin_const_t *identity, coap_session_t *session, void *arg)
{
    (void)session;
    (void)arg;
    char id[COLL_ID_MAX];
    if (!identity || !valid_device_id((const char *)identity->s, identity->length)) {
        S.c.unknown_identity++;
        logf_("DTLS: rejected malformed PSK identity");
        return NULL;
    }
    memcpy(id, identity->s, identity->length);
    id[identity->length] = 0;
    size_t n = 0;
    int rc = store_device_psk(S.st, id, S.pskbuf, sizeof(S.pskbuf), &n);
    if (rc != 1) {
        S.c.unknown_identity++;
        logf_("DTLS: unknown device '%s'%s", id, rc < 0 ? " (database error)" : "");
        return NULL;
    }
    S.psk.s = S.pskbuf;
    S.psk.length = n;
    return &S.psk;
}

/* Certificate sessions: the device id is the CN of the client certificate the handshake
 * validated against pki_ca (libcoap 4.3.5 only calls its CN callback for certificates with
 * problems, so the certificate is read from the mbedTLS session instead). The device must be
 * provisioned. 1 and out filled, or 0. */
static int cert_device(coap_session_t *session, char *out, size_t cap)
{
    coap_tls_library_t lib;
    mbedtls_ssl_context *ssl = coap_session_get_tls(session, &lib);
    if (!ssl || lib != COAP_TLS_LIBRARY_MBEDTLS)
        return 0;
    const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(ssl);
    if (!crt)
        return 0;
    for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next) {
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
            if (!valid_device_id((const char *)n->val.p, n->val.len) || n->val.len >= cap)
                return 0;
            memcpy(out, n->val.p, n->val.len);
            out[n->val.len] = 0;
            uint8_t psk[COLL_PSK_MAX];
            size_t len;
            if (store_device_psk(S.st, out, psk, sizeof(psk), &len) != 1) {
                S.c.unknown_identity++;
                logf_("DTLS: client certificate for unknown device '%s'", out);
                return 0;
            }
            return 1;
        }
    }
    return 0;
}

static void blk_free(blk_state *b)
{
    if (!b)
        return;
    S.reassembly_bytes -= b->cap;
    free(b->buf);
    free(b);
}

static int on_event(coap_session_t *session, const coap_event_t event)
{
    if ((event == COAP_EVENT_SERVER_SESSION_NEW || event == COAP_EVENT_SERVER_SESSION_DEL) &&
        coap_session_get_proto(session) == COAP_PROTO_DTLS)
        metrics_dtls_sessions_add(event == COAP_EVENT_SERVER_SESSION_NEW ? 1 : -1);
    if (event == COAP_EVENT_SERVER_SESSION_DEL) {
        blk_free(coap_session_get_app_data(session));
        coap_session_set_app_data(session, NULL);
    }
    return 0;
}

/* The session's authenticated device id into out; 0 if there is none. */
static int session_device(coap_session_t *session, const coap_string_t *query, char *out, size_t cap)
{
    if (coap_session_get_proto(session) == COAP_PROTO_DTLS) {
        const coap_bin_const_t *id = coap_session_get_psk_identity(session);
        if (!id || !id->length) {
            /* no PSK identity: a certificate session (verified against pki_ca) */
            blk_state *b = coap_session_get_app_data(session);
            if (b && b->cert_id[0]) {
                snprintf(out, cap, "%s", b->cert_id);
                return 1;
            }
            if (!cert_device(session, out, cap))
                return 0;
            if (!b && (b = calloc(1, sizeof(*b))) != NULL)
                coap_session_set_app_data(session, b);
            if (b)
                snprintf(b->cert_id, sizeof(b->cert_id), "%s", out);
            return 1;
        }
        if (!id || !valid_device_id((const char *)id->s, id->length) || id->length >= cap)
            return 0;
        memcpy(out, id->s, id->length);
        out[id->length] = 0;
        return 1;
    }
    /* Plain CoAP (tests only, never exposed): the device is named by the query "d=ID". */
    if (S.p->plain_listen && query && query->length > 2 && !memcmp(query->s, "d=", 2) &&
        valid_device_id((const char *)query->s + 2, query->length - 2) && query->length - 2 < cap) {
        memcpy(out, query->s + 2, query->length - 2);
        out[query->length - 2] = 0;
        return 1;
    }
    return 0;
}

static void respond(coap_pdu_t *response, int code, const char *diag, int has_block1, uint32_t block1)
{
    coap_pdu_set_code(response, (coap_pdu_code_t)COAP_RESPONSE_CODE(code));
    if (has_block1) {
        uint8_t b[4];
        coap_add_option(response, COAP_OPTION_BLOCK1, coap_encode_var_safe(b, sizeof(b), block1), b);
    }
    if (diag && diag[0])
        coap_add_data(response, strlen(diag), (const uint8_t *)diag);
}

static void reject(coap_pdu_t *response, int code, uint64_t *counter, const char *diag)
{
    if (counter)
        (*counter)++;
    respond(response, code, diag, 0, 0);
}

static int flush_pending(void);

static void post_handler(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                         const coap_string_t *query, coap_pdu_t *response)
{
    (void)resource;
    S.handler_calls++;
    /* A separate response whose batch has committed: libcoap calls us again with the
     * stored request once we triggered it. */
    coap_async_t *async = coap_find_async(session, coap_pdu_get_token(request));
    if (async) {
        pending *pd = coap_async_get_app_data(async);
        if (pd && pd->done) {
            respond(response, pd->code, pd->diag, pd->has_block1, pd->block1);
            coap_async_set_app_data(async, NULL);
            free(pd);
            S.outstanding--;
        } else {
            respond(response, 500, "internal: async without result", 0, 0);
        }
        return; /* libcoap frees the async after we return */
    }
    S.c.requests++;

    char device[COLL_ID_MAX];
    if (!session_device(session, query, device, sizeof(device))) {
        reject(response, 401, &S.c.unauthenticated, "no authenticated device identity");
        return;
    }

    coap_opt_iterator_t oi;
    coap_opt_t *cf = coap_check_option(request, COAP_OPTION_CONTENT_FORMAT, &oi);
    int content_format = cf ? (int)coap_decode_var_bytes(coap_opt_value(cf), coap_opt_length(cf)) : -1;

    size_t len = 0;
    const uint8_t *data = NULL;
    if (!coap_get_data(request, &len, &data)) {
        len = 0;
        data = NULL;
    }

    /* Block1: collect the body, bounded by max_body. */
    coap_block_t blk;
    int has_block1 = coap_get_block(request, COAP_OPTION_BLOCK1, &blk);
    uint32_t block1_echo = 0;
    if (has_block1) {
        if (content_format != INGEST_CF_OCTET_STREAM) {
            char d[96];
            snprintf(d, sizeof(d), "Content-Format %d; expected %d", content_format, INGEST_CF_OCTET_STREAM);
            reject(response, 415, &S.c.bad_format, d);
            return;
        }
        blk_state *b = coap_session_get_app_data(session);
        size_t chunk = (size_t)1 << (blk.szx + 4);
        size_t offset = (size_t)blk.num * chunk;
        coap_opt_t *size1 = coap_check_option(request, COAP_OPTION_SIZE1, &oi);
        size_t announced = size1 ? coap_decode_var_bytes(coap_opt_value(size1), coap_opt_length(size1)) : 0;
        if (announced > S.max_body || offset + len > S.max_body || (blk.m && len != chunk)) {
            char d[96];
            int code = (blk.m && len != chunk && offset + len <= S.max_body && announced <= S.max_body) ? 400 : 413;
            if (code == 413) {
                snprintf(d, sizeof(d), "body over limit %zu", S.max_body);
                S.c.too_large++;
                uint8_t sb[4];
                coap_pdu_set_code(response, COAP_RESPONSE_CODE(413));
                coap_add_option(response, COAP_OPTION_SIZE1,
                                coap_encode_var_safe(sb, sizeof(sb), (unsigned)S.max_body), sb);
                coap_add_data(response, strlen(d), (const uint8_t *)d);
            } else {
                snprintf(d, sizeof(d), "block %u: %zu bytes, expected %zu", (unsigned)blk.num, len, chunk);
                reject(response, 400, &S.c.bad_request, d);
            }
            if (b) {
                blk_free(b);
                coap_session_set_app_data(session, NULL);
            }
            return;
        }
        if (blk.num == 0) {
            if (!b) {
                b = calloc(1, sizeof(*b));
                if (!b) {
                    reject(response, 503, NULL, "out of memory");
                    return;
                }
                coap_session_set_app_data(session, b);
            }
            b->len = 0;
            b->next = 0;
            b->szx = blk.szx;
        }
        if (!b || blk.szx != b->szx || blk.num > b->next) {
            reject(response, 408, &S.c.block_incomplete, "Block1 out of order: start again at block 0");
            return;
        }
        if (blk.num < b->next && blk.m) {
            /* A retransmitted block we already hold (our 2.31 was lost): ask again for
             * what comes next, idempotently. */
            respond(response, 231, NULL, 1, (blk.num << 4) | (1u << 3) | blk.szx);
            return;
        }
        if (blk.num == b->next) {
            if (offset + len > b->cap) {
                /* grow in 4 KiB steps, doubling, never beyond max_body; all sessions together
                 * stay under REASSEMBLY_BUDGET (a flood of half-sent bodies gets 5.03, not RAM) */
                size_t ncap = b->cap ? 2 * b->cap : 4096;
                while (ncap < offset + len)
                    ncap *= 2;
                ncap = (ncap + 4095) & ~(size_t)4095;
                if (ncap > S.max_body)
                    ncap = S.max_body;
                uint8_t *nb = S.reassembly_bytes - b->cap + ncap <= REASSEMBLY_BUDGET ? realloc(b->buf, ncap) : NULL;
                if (!nb) {
                    reject(response, 503, NULL, "collector busy: reassembly memory full, retry later");
                    return;
                }
                S.reassembly_bytes += ncap - b->cap;
                b->buf = nb;
                b->cap = ncap;
            }
            if (len)
                memcpy(b->buf + offset, data, len);
            b->len = offset + len;
            b->next = blk.num + 1;
        }
        if (blk.m) {
            respond(response, 231, NULL, 1, (blk.num << 4) | (1u << 3) | blk.szx);
            return;
        }
        data = b->buf;
        len = b->len;
        block1_echo = (blk.num << 4) | blk.szx;
    }

    ingest_result r;
    if (!store_in_txn(S.st))
        clock_gettime(CLOCK_MONOTONIC, &S.batch_t0);
    ingest_payload(S.st, S.dec, &S.c, device, data, len, content_format, S.max_body, wall_ms(),
                   S.p->store_payload, &r);
    if (!r.staged) {
        logf_("rejected %d.%02d from %s: %s", r.code / 100, r.code % 100, device, r.diag);
        respond(response, r.code, r.diag, has_block1, block1_echo);
        return;
    }
    /* Group commit only pays when others are queueing: with nothing else staged and no
     * datagram waiting, commit now and piggy-back the answer on the ACK (two datagrams per
     * snapshot instead of four, which is what a device on a lossy link wants). */
    struct pollfd pfd = {.fd = S.coap_fd, .events = POLLIN};
    int busy = S.npend > 0 || poll(&pfd, 1, 0) > 0;
    if (S.p->group_commit && busy && S.npend < MAX_PENDING) {
        pending *pd = calloc(1, sizeof(*pd));
        coap_async_t *a = pd ? coap_register_async(session, request, 0) : NULL;
        if (!a)
            free(pd);
        if (a) {
            S.batch[S.npend++] = a;
            S.outstanding++;
            pd->code = r.code;
            pd->has_block1 = has_block1;
            pd->block1 = block1_echo;
            snprintf(pd->diag, sizeof(pd->diag), "%.79s", r.diag);
            coap_async_set_app_data(a, pd);
            return; /* no code: libcoap sends an empty ACK now, our answer after COMMIT */
        }
    }
    /* Synchronous path: commit (with whatever else is staged) before answering. */
    if (flush_pending()) {
        respond(response, 500, "database commit failed; retry", has_block1, block1_echo);
        return;
    }
    respond(response, r.code, r.diag, has_block1, block1_echo);
}

/* COMMIT the open transaction, then release every waiting request with its final code.
 * The separate responses go out in the next coap_io_process() (coap_check_async). */
static int flush_pending(void)
{
    int ok = 1;
    if (store_in_txn(S.st)) {
        if (store_commit(S.st)) {
            ok = 0;
            S.c.store_errors++;
            logf_("COMMIT failed: %s; %u staged requests get 5.00", store_errmsg(S.st), S.npend);
        } else {
            S.c.commits++;
            struct timespec t1;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            metrics_ingest_commit((double)(t1.tv_sec - S.batch_t0.tv_sec) + (t1.tv_nsec - S.batch_t0.tv_nsec) / 1e9,
                                  S.c.snapshots_new - S.new_at_commit);
        }
        S.new_at_commit = S.c.snapshots_new;
    }
    for (unsigned i = 0; i < S.npend; i++) {
        pending *pd = coap_async_get_app_data(S.batch[i]);
        if (pd) {
            if (!ok) {
                pd->code = 500;
                snprintf(pd->diag, sizeof(pd->diag), "database commit failed; retry");
            }
            pd->done = 1;
        }
        coap_async_trigger(S.batch[i]);
    }
    S.npend = 0;
    return ok ? 0 : -1;
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
    S.max_body = p->max_body ? p->max_body : INGEST_DEFAULT_MAX_BODY;

    coap_startup();
    coap_set_log_level(getenv("ET_COAP_DEBUG") ? COAP_LOG_DEBUG : COAP_LOG_WARN);
    coap_dtls_set_log_level(getenv("ET_COAP_DEBUG") ? COAP_LOG_DEBUG : COAP_LOG_ERR);
    if (!coap_dtls_is_supported()) {
        logf_("libcoap was built without DTLS");
        return 1;
    }
    coap_context_t *ctx = coap_new_context(NULL);
    if (!ctx) {
        logf_("cannot create CoAP context");
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
    spsk.validate_id_call_back = psk_for_identity;
    spsk.psk_info.hint.s = (const uint8_t *)"edgetrace";
    spsk.psk_info.hint.length = 9;
    if (!coap_context_set_psk2(ctx, &spsk)) {
        logf_("cannot set up DTLS PSK");
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
            logf_("cannot set up DTLS certificates");
            coap_free_context(ctx);
            return 1;
        }
    }
    const char *listen = p->listen ? p->listen : "0.0.0.0:5684";
    if (!listen_on(ctx, listen, COAP_PROTO_DTLS, 5684)) {
        logf_("cannot listen on %s (coaps)", listen);
        coap_free_context(ctx);
        return 1;
    }
    if (p->plain_listen && !listen_on(ctx, p->plain_listen, COAP_PROTO_UDP, 5683)) {
        logf_("cannot listen on %s (coap)", p->plain_listen);
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

    logf_("listening on coaps://%s%s%s (max body %zu, %s commit)", listen, p->plain_listen ? " and coap://" : "",
          p->plain_listen ? p->plain_listen : "", S.max_body, p->group_commit ? "group" : "per-snapshot");
    printf("ready %s\n", listen);
    fflush(stdout);

    int coap_fd = coap_context_get_coap_fd(ctx);
    S.coap_fd = coap_fd;
    time_t next_stats = p->stats_interval_s ? time(NULL) + p->stats_interval_s : 0;
    char line[512];
    while (!g_stop) {
        coap_io_process(ctx, 1000);
        /* Gather a batch: keep reading while datagrams are waiting (each NO_WAIT round reads
         * at most one datagram from the shared server socket; libcoap's epoll fd polls
         * readable while anything is pending), bounded in count and time so a flood cannot
         * delay the commit of what is staged. */
        if (S.npend) {
            struct pollfd pfd = {.fd = coap_fd, .events = POLLIN};
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (unsigned round = 0; round < 8 * MAX_PENDING && S.npend < MAX_PENDING && !g_stop; round++) {
                if (poll(&pfd, 1, 0) <= 0)
                    break;
                coap_io_process(ctx, COAP_IO_NO_WAIT);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= BATCH_MAX_MS)
                    break;
            }
        }
        if (S.npend || store_in_txn(S.st))
            flush_pending();
        metrics_ingest_publish(&S.c); /* a copy for the HTTP thread's /metrics */
        if (g_dump || (next_stats && time(NULL) >= next_stats)) {
            g_dump = 0;
            ingest_format_counters(&S.c, line, sizeof(line));
            logf_("stats %s", line);
            if (next_stats)
                next_stats = time(NULL) + p->stats_interval_s;
        }
    }
    /* Answer what is staged, then stop. */
    if (S.npend || store_in_txn(S.st))
        flush_pending();
    coap_io_process(ctx, COAP_IO_NO_WAIT);
    ingest_format_counters(&S.c, line, sizeof(line));
    logf_("shutdown: %s", line);
    coap_free_context(ctx);
    coap_cleanup();
    return 0;
}
