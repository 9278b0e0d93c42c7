/* ingest_bench.c - load generator for the collector's ingest rate (make bench, via
 * tools/bench/ingest_bench.sh).
 *
 *   ingest_bench --url coaps://127.0.0.1:5684/s --identity gw-1 --psk HEX
 *                [--sessions S] [--window K] [--count N] [--pad BYTES] [--full] [--json]
 *                [--max-seconds T] [--acked-out FILE]
 *
 * Pre-encodes N real snapshot envelopes (wire/, unique ids, device = identity) so encoding is
 * not measured, opens S DTLS PSK sessions (each a separate UDP socket, like S devices), sends
 * one warm-up POST per session so every handshake is done, then keeps K Confirmable POSTs in
 * flight per session (NSTART = K) until N have been answered. Reports answered POSTs per second
 * by code: against edgetrace-collector a 2.01 means "durably committed"; against stock
 * coap-server (-d) the same POSTs are answered from memory, which is the ceiling set by libcoap
 * and DTLS alone on this machine. Single-threaded, one libcoap context.
 *
 * --full sends what a real agent sends in steady state (tools/bench/snapshot_sample.h): five
 * targets, 16 of 50 goroutine sites with the site-reference memo applied, memstats, /proc, and
 * on every tenth snapshot a goroutine-leak finding with its stack, so the collector stores
 * the full schema (series, site counts, findings and their history) for each.
 *
 * --acked-out writes the hex id of every snapshot that got a 2.01/2.04, for the test that
 * SIGKILLs the collector under load (tests/integration/test_collector.py): each of those must
 * be in the database. --max-seconds stops waiting after T seconds (exit 1 if not all answered). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <coap3/coap.h>

#include "base.h"
#include "snapshot.h"
#include "snapshot_sample.h"

#define MAX_SESSIONS 256

static struct bench {
    uint8_t **body;
    char (*hex)[2 * ET_SNAP_ID_LEN + 1];
    uint8_t *acked;
    size_t *len;
    unsigned n, next, answered, ok, dup, other, nacks, warm_answered;
    unsigned sessions, window;
    coap_session_t *sess[MAX_SESSIONS];
    int warm;
} B;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int send_one(coap_session_t *s)
{
    if (B.next >= B.n)
        return 0;
    unsigned i = B.next++;
    coap_pdu_t *pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, s);
    if (!pdu)
        return -1;
    /* the token is the body's index, so an answer names its snapshot */
    uint8_t tok[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
    coap_add_token(pdu, sizeof(tok), tok);
    coap_add_option(pdu, COAP_OPTION_URI_PATH, 1, (const uint8_t *)"s");
    uint8_t cf[2];
    coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT, coap_encode_var_safe(cf, sizeof(cf), 42), cf);
    coap_add_data_large_request(s, pdu, B.len[i], B.body[i], NULL, NULL);
    return coap_send(s, pdu) == COAP_INVALID_MID ? -1 : 1;
}

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent, const coap_pdu_t *rcvd,
                                   const coap_mid_t mid)
{
    (void)sent;
    (void)mid;
    coap_pdu_code_t c = coap_pdu_get_code(rcvd);
    coap_bin_const_t t = coap_pdu_get_token(rcvd);
    if (t.length == 4 && (c == COAP_RESPONSE_CODE(201) || c == COAP_RESPONSE_CODE(204))) {
        unsigned i = (unsigned)t.s[0] << 24 | (unsigned)t.s[1] << 16 | (unsigned)t.s[2] << 8 | t.s[3];
        if (i < B.n)
            B.acked[i] = 1;
    }
    if (B.warm) {
        B.warm_answered++;
        return COAP_RESPONSE_OK;
    }
    B.answered++;
    if (c == COAP_RESPONSE_CODE(201))
        B.ok++;
    else if (c == COAP_RESPONSE_CODE(204))
        B.dup++;
    else
        B.other++;
    send_one(s);
    return COAP_RESPONSE_OK;
}

static void on_nack(coap_session_t *s, const coap_pdu_t *sent, const coap_nack_reason_t reason, const coap_mid_t mid)
{
    (void)sent;
    (void)reason;
    (void)mid;
    if (B.warm)
        return;
    B.nacks++;
    B.answered++;
    send_one(s);
}

static int hexbytes(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return (int)(n / 2);
}

int main(int argc, char **argv)
{
    const char *url = NULL, *identity = "gw-1", *pskhex = NULL, *acked_out = NULL;
    double max_seconds = 300;
    unsigned count = 20000, pad = 0;
    int json = 0, full = 0;
    B.sessions = 8;
    B.window = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--url") && v)
            url = argv[++i];
        else if (!strcmp(a, "--identity") && v)
            identity = argv[++i];
        else if (!strcmp(a, "--psk") && v)
            pskhex = argv[++i];
        else if (!strcmp(a, "--sessions") && v)
            B.sessions = (unsigned)atoi(argv[++i]);
        else if (!strcmp(a, "--window") && v)
            B.window = (unsigned)atoi(argv[++i]);
        else if (!strcmp(a, "--count") && v)
            count = (unsigned)atoi(argv[++i]);
        else if (!strcmp(a, "--pad") && v)
            pad = (unsigned)atoi(argv[++i]);
        else if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--full"))
            full = 1;
        else if (!strcmp(a, "--max-seconds") && v)
            max_seconds = atof(argv[++i]);
        else if (!strcmp(a, "--acked-out") && v)
            acked_out = argv[++i];
        else {
            fprintf(stderr, "usage: ingest_bench --url coaps://HOST:PORT/s --identity ID --psk HEX [--sessions S] "
                            "[--window K] [--count N] [--pad BYTES] [--json]\n");
            return 2;
        }
    }
    if (!url || !pskhex || !B.sessions || B.sessions > MAX_SESSIONS || !B.window) {
        fprintf(stderr, "ingest_bench: --url and --psk are required; 1 <= sessions <= %d\n", MAX_SESSIONS);
        return 2;
    }
    uint8_t psk[64];
    int psklen = hexbytes(pskhex, psk, sizeof(psk));
    if (psklen <= 0) {
        fprintf(stderr, "ingest_bench: bad --psk\n");
        return 2;
    }

    /* the bodies: real envelopes, unique ids, encoded before the clock starts */
    B.n = count + B.sessions;
    B.body = calloc(B.n, sizeof(*B.body));
    B.len = calloc(B.n, sizeof(*B.len));
    B.hex = calloc(B.n, sizeof(*B.hex));
    B.acked = calloc(B.n, 1);
    static et_snapshot s;
    static uint8_t junk[ET_SNAP_ATTACH_MAX];
    char err[160];
    et_wire_params wp = {.level = 3};
    et_wire_enc *enc = et_wire_enc_create(&wp, err, sizeof(err));
    uint8_t *wire = malloc(ET_WIRE_MAX);
    if (!B.body || !B.len || !B.hex || !B.acked || !enc || !wire) {
        fprintf(stderr, "ingest_bench: setup: %s\n", enc ? "out of memory" : err);
        return 1;
    }
    uint8_t boot[16];
    et_read_boot_id(NULL, boot);
    size_t total_bytes = 0;
    static et_gprofile gp;
    static et_site_memo memo[5];
    et_sample_gprofile(&gp, 50, 2000);
    for (unsigned i = 0; i < B.n; i++) {
        et_snapshot_init(&s);
        if (full) {
            unsigned tgt = i % 5;
            et_sample_snapshot(&s, &gp, 16, i);
            snprintf(s.service, sizeof s.service, "svc-%u", tgt);
            snprintf(s.url, sizeof s.url, "http://127.0.0.1:%u", 6060 + tgt);
            et_snapshot_apply_memo(&s, &memo[tgt], 10);
            if (i % 10 == 0) {
                et_finding f;
                memset(&f, 0, sizeof f);
                f.kind = ET_F_GOROUTINE_LEAK;
                f.confidence = ET_C_LIKELY;
                f.state = ET_G_CHAN_RECV;
                f.evidence = ET_E_TREND | ET_E_CLUSTER;
                snprintf(f.fingerprint, sizeof f.fingerprint, "%016x", 0xfeed + tgt);
                f.site = gp.sites[0].user;
                snprintf(f.created_by, sizeof f.created_by, "%s", gp.sites[0].created_by);
                for (unsigned k = 0; k < ET_STACK_MAX; k++)
                    snprintf(f.stack[k], sizeof f.stack[k], "github.com/acme/billing/internal/pipe.stage%u", k);
                f.nstack = ET_STACK_MAX;
                f.count = 100 + i / 10;
                f.growth_per_min = 2.5;
                et_snapshot_add_finding(&s, &f);
            }
        }
        memcpy(s.boot_id, boot, 16);
        s.seq = i;
        et_snapshot_new_id(s.id, boot, i);
        et_snap_id_hex(s.id, B.hex[i]);
        et_strlcpy(s.device_id, identity, sizeof(s.device_id));
        et_strlcpy(s.board, "bench", sizeof(s.board));
        if (!full)
            et_strlcpy(s.service, "bench", sizeof(s.service));
        s.wall_ms = et_now_wall_ms();
        s.mono_ms = et_now_mono_ms();
        if (!full)
            s.goroutines = 2000;
        if (pad) {
            for (unsigned k = 0; k < pad && k < sizeof(junk); k++)
                junk[k] = (uint8_t)(k * 131 + i);
            et_snapshot_add_attachment(&s, ET_ATT_TRACE, 0, junk, ET_MIN(pad, (unsigned)sizeof(junk)));
        }
        size_t n = 0;
        if (et_wire_encode(enc, &s, wire, ET_WIRE_MAX, &n, err, sizeof(err))) {
            fprintf(stderr, "ingest_bench: encode: %s\n", err);
            return 1;
        }
        B.body[i] = malloc(n);
        memcpy(B.body[i], wire, n);
        B.len[i] = n;
        total_bytes += n;
    }

    coap_startup();
    coap_set_log_level(COAP_LOG_ERR);
    coap_dtls_set_log_level(COAP_LOG_CRIT);
    coap_uri_t uri;
    if (coap_split_uri((const uint8_t *)url, strlen(url), &uri) < 0) {
        fprintf(stderr, "ingest_bench: bad url\n");
        return 2;
    }
    coap_str_const_t host = {uri.host.length, uri.host.s};
    coap_addr_info_t *ai = coap_resolve_address_info(&host, uri.port, uri.port, uri.port, uri.port, 0, 1 << uri.scheme,
                                                     COAP_RESOLVE_TYPE_REMOTE);
    if (!ai) {
        fprintf(stderr, "ingest_bench: cannot resolve\n");
        return 2;
    }
    coap_context_t *ctx = coap_new_context(NULL);
    coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    coap_register_response_handler(ctx, on_response);
    coap_register_nack_handler(ctx, on_nack);
    for (unsigned i = 0; i < B.sessions; i++) {
        coap_dtls_cpsk_t cpsk;
        memset(&cpsk, 0, sizeof(cpsk));
        cpsk.version = COAP_DTLS_CPSK_SETUP_VERSION;
        cpsk.psk_info.identity.s = (const uint8_t *)identity;
        cpsk.psk_info.identity.length = strlen(identity);
        cpsk.psk_info.key.s = psk;
        cpsk.psk_info.key.length = (size_t)psklen;
        B.sess[i] = uri.scheme == COAP_URI_SCHEME_COAPS
                        ? coap_new_client_session_psk2(ctx, NULL, &ai->addr, COAP_PROTO_DTLS, &cpsk)
                        : coap_new_client_session(ctx, NULL, &ai->addr, COAP_PROTO_UDP);
        if (!B.sess[i]) {
            fprintf(stderr, "ingest_bench: session %u failed\n", i);
            return 1;
        }
        coap_session_set_nstart(B.sess[i], B.window);
        coap_fixed_point_t t = {2, 0};
        coap_session_set_ack_timeout(B.sess[i], t);
    }
    coap_free_address_info(ai);

    /* warm-up: one POST per session, so every DTLS handshake is done before timing */
    B.warm = 1;
    double t0 = now_s();
    for (unsigned i = 0; i < B.sessions; i++)
        send_one(B.sess[i]);
    while (B.warm_answered < B.sessions && now_s() - t0 < 30)
        coap_io_process(ctx, 100);
    double handshake_s = now_s() - t0;
    if (B.warm_answered < B.sessions) {
        fprintf(stderr, "ingest_bench: only %u of %u sessions came up\n", B.warm_answered, B.sessions);
        return 1;
    }
    B.warm = 0;
    double start = now_s();
    for (unsigned i = 0; i < B.sessions; i++)
        for (unsigned k = 0; k < B.window; k++)
            send_one(B.sess[i]);
    while (B.answered < count && now_s() - start < max_seconds)
        coap_io_process(ctx, 100);
    double secs = now_s() - start;
    double rate = B.answered / secs;
    if (json)
        printf("{\"url\": \"%s\", \"sessions\": %u, \"window\": %u, \"count\": %u, \"answered\": %u, \"created\": %u, "
               "\"changed\": %u, \"other\": %u, \"nacks\": %u, \"seconds\": %.3f, \"per_second\": %.0f, "
               "\"handshake_seconds\": %.3f, \"avg_body_bytes\": %.0f}\n",
               url, B.sessions, B.window, count, B.answered, B.ok, B.dup, B.other, B.nacks, secs, rate, handshake_s,
               (double)total_bytes / B.n);
    else
        printf("%-40s %6u sessions x %2u: %7u answered (%u created, %u changed, %u other, %u timeouts) in %.2f s = "
               "%.0f/s\n",
               url, B.sessions, B.window, B.answered, B.ok, B.dup, B.other, B.nacks, secs, rate);
    if (acked_out) {
        FILE *f = fopen(acked_out, "w");
        if (!f) {
            perror(acked_out);
            return 1;
        }
        for (unsigned i = 0; i < B.n; i++)
            if (B.acked[i])
                fprintf(f, "%s\n", B.hex[i]);
        fclose(f);
    }
    for (unsigned i = 0; i < B.sessions; i++)
        coap_session_release(B.sess[i]);
    coap_free_context(ctx);
    coap_cleanup();
    return B.answered >= count && B.nacks == 0 && B.other == 0 ? 0 : 1;
}
