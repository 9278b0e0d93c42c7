/* ingest_identity.c - device identity from the DTLS session (see ingest_identity.h). */
#include <stdio.h>
#include <string.h>

#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "ingest_identity.h"

static struct {
    coll_store *st;
    ingest_counters *c;
    int allow_plain;
    uint8_t pskbuf[COLL_PSK_MAX];
    coap_bin_const_t psk;
} I;

void identity_setup(coll_store *st, ingest_counters *c, int allow_plain)
{
    memset(&I, 0, sizeof(I));
    I.st = st;
    I.c = c;
    I.allow_plain = allow_plain;
}

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

/* libcoap copies the key into the session before we return the buffer again. */
const coap_bin_const_t *identity_psk_for(coap_bin_const_t *identity, coap_session_t *session, void *arg)
{
    (void)session;
    (void)arg;
    char id[COLL_ID_MAX];
    if (!identity || !valid_device_id((const char *)identity->s, identity->length)) {
        I.c->unknown_identity++;
        ingest_log("DTLS: rejected malformed PSK identity");
        return NULL;
    }
    memcpy(id, identity->s, identity->length);
    id[identity->length] = 0;
    size_t n = 0;
    int rc = store_device_psk(I.st, id, I.pskbuf, sizeof(I.pskbuf), &n);
    if (rc != 1) {
        I.c->unknown_identity++;
        ingest_log("DTLS: unknown device '%s'%s", id, rc < 0 ? " (database error)" : "");
        return NULL;
    }
    I.psk.s = I.pskbuf;
    I.psk.length = n;
    return &I.psk;
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
            if (store_device_psk(I.st, out, psk, sizeof(psk), &len) != 1) {
                I.c->unknown_identity++;
                ingest_log("DTLS: client certificate for unknown device '%s'", out);
                return 0;
            }
            return 1;
        }
    }
    return 0;
}

int identity_of_session(coap_session_t *session, const coap_string_t *query, char *cert_cache, char *out,
                        size_t cap)
{
    if (coap_session_get_proto(session) == COAP_PROTO_DTLS) {
        const coap_bin_const_t *id = coap_session_get_psk_identity(session);
        if (!id || !id->length) {
            /* no PSK identity: a certificate session (verified against pki_ca) */
            if (cert_cache && cert_cache[0]) {
                snprintf(out, cap, "%s", cert_cache);
                return 1;
            }
            if (!cert_device(session, out, cap))
                return 0;
            if (cert_cache)
                snprintf(cert_cache, COLL_ID_MAX, "%s", out);
            return 1;
        }
        if (!valid_device_id((const char *)id->s, id->length) || id->length >= cap)
            return 0;
        memcpy(out, id->s, id->length);
        out[id->length] = 0;
        return 1;
    }
    /* Plain CoAP (tests only, never exposed): the device is named by the query "d=ID". */
    if (I.allow_plain && query && query->length > 2 && !memcmp(query->s, "d=", 2) &&
        valid_device_id((const char *)query->s + 2, query->length - 2) && query->length - 2 < cap) {
        memcpy(out, query->s + 2, query->length - 2);
        out[query->length - 2] = 0;
        return 1;
    }
    return 0;
}
