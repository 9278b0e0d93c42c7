/* ingest_identity.c - device identity from the DTLS session (see ingest_identity.h). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "ingest_identity.h"
#include "store_keys.h"

/* Devices whose next handshake gets their next key: set when a handshake during a rotation
 * failed with the current key. Small and forgetful on purpose: a device missing here gets the
 * current key, fails once more if it already has the new one, and lands here again. */
#define PREF_MAX 256

static struct {
    coll_store *st;
    ingest_counters *c;
    int allow_plain;
    struct sqlite3_stmt *get; /* store_keys_get's statement, kept prepared: one lookup per request */
    uint8_t pskbuf[COLL_PSK_MAX];
    coap_bin_const_t psk;
    struct pref {
        char id[COLL_ID_MAX];
        uint64_t used; /* 0: free */
    } pref[PREF_MAX];
    uint64_t tick;
} I;

void identity_setup(coll_store *st, ingest_counters *c, int allow_plain)
{
    memset(&I, 0, sizeof(I));
    I.st = st;
    I.c = c;
    I.allow_plain = allow_plain;
}

void identity_teardown(void)
{
    store_keys_forget(&I.get);
    explicit_bzero(I.pskbuf, sizeof(I.pskbuf));
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

static int64_t wall_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Key comparison that takes the same time wherever the keys differ. */
static int key_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    if (alen != blen || !alen)
        return 0;
    uint8_t d = 0;
    for (size_t i = 0; i < alen; i++)
        d |= a[i] ^ b[i];
    return d == 0;
}

static struct pref *pref_find(const char *id)
{
    for (int i = 0; i < PREF_MAX; i++)
        if (I.pref[i].used && !strcmp(I.pref[i].id, id))
            return &I.pref[i];
    return NULL;
}

static void pref_set(const char *id, int offer_next)
{
    struct pref *p = pref_find(id);
    if (!offer_next) {
        if (p)
            p->used = 0;
        return;
    }
    if (!p) {
        p = &I.pref[0];
        for (int i = 1; i < PREF_MAX && p->used; i++)
            if (I.pref[i].used < p->used)
                p = &I.pref[i];
        snprintf(p->id, sizeof(p->id), "%s", id);
    }
    p->used = ++I.tick;
}

/* The device's keys, with a rotation whose deadline has passed completed first. */
static int lookup_keys(const char *id, store_key_state *k)
{
    int rc = store_keys_get(I.st, id, k, &I.get);
    if (rc == 1 && k->next_len && !k->revoked_ms && wall_now_ms() >= k->next_deadline_ms) {
        if (store_keys_promote(I.st, id) == 1)
            ingest_log("key rotation of %s: the grace period ended; only the new key is accepted now", id);
        memcpy(k->psk, k->next_psk, k->next_len);
        k->psk_len = k->next_len;
        explicit_bzero(k->next_psk, sizeof(k->next_psk));
        k->next_len = 0;
        pref_set(id, 0);
    }
    return rc;
}

/* libcoap copies the key into the session (and mbedTLS into the handshake) right after we
 * return; the buffer is wiped when the handshake ends (identity_on_event). */
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
    store_key_state k;
    int rc = lookup_keys(id, &k);
    if (rc != 1) {
        I.c->unknown_identity++;
        ingest_log("DTLS: unknown device '%s'%s", id, rc < 0 ? " (database error)" : "");
        store_keys_wipe(&k);
        return NULL;
    }
    if (k.revoked_ms || !k.psk_len) {
        I.c->revoked++;
        ingest_log("DTLS: device '%s' is revoked; handshake refused", id);
        store_keys_wipe(&k);
        return NULL;
    }
    int next = k.next_len && pref_find(id);
    memcpy(I.pskbuf, next ? k.next_psk : k.psk, next ? k.next_len : k.psk_len);
    I.psk.s = I.pskbuf;
    I.psk.length = next ? k.next_len : k.psk_len;
    store_keys_wipe(&k);
    return &I.psk;
}

void identity_on_event(coap_session_t *session, coap_event_t event)
{
    /* the handshake that used the buffer is over (libcoap and mbedTLS copied the key) */
    explicit_bzero(I.pskbuf, sizeof(I.pskbuf));
    if (event != COAP_EVENT_DTLS_ERROR || coap_session_get_proto(session) != COAP_PROTO_DTLS)
        return;
    const coap_bin_const_t *ident = coap_session_get_psk_identity(session);
    const coap_bin_const_t *key = coap_session_get_psk_key(session);
    if (!ident || !key || !valid_device_id((const char *)ident->s, ident->length))
        return; /* a certificate session, or no identity yet */
    char id[COLL_ID_MAX];
    memcpy(id, ident->s, ident->length);
    id[ident->length] = 0;
    store_key_state k;
    if (lookup_keys(id, &k) == 1 && k.next_len) {
        int used_next = key_equal(key->s, key->length, k.next_psk, k.next_len);
        I.c->key_fallback++;
        pref_set(id, !used_next);
        ingest_log("DTLS: handshake of %s failed during a key rotation; its next handshake gets the %s key", id,
                   used_next ? "old" : "new");
    }
    store_keys_wipe(&k);
}

int identity_still_valid(coap_session_t *session, const char *device, char *why, size_t cap)
{
    if (coap_session_get_proto(session) != COAP_PROTO_DTLS)
        return 1;
    store_key_state k;
    int rc = lookup_keys(device, &k), ok = 1;
    if (rc == 0 || (rc == 1 && (k.revoked_ms || !k.psk_len))) {
        I.c->revoked++;
        snprintf(why, cap, "device %.63s is revoked", device);
        ok = 0;
    } else if (rc == 1) {
        const coap_bin_const_t *ident = coap_session_get_psk_identity(session);
        const coap_bin_const_t *key = coap_session_get_psk_key(session);
        explicit_bzero(I.pskbuf, sizeof(I.pskbuf)); /* handshake over (see identity_on_event) */
        if (ident && ident->length && key && key_equal(key->s, key->length, k.next_psk, k.next_len)) {
            /* The first request over a handshake made with the new key: the device has it, so
             * the old key is retired. (libcoap 4.3.5 raises no DTLS_CONNECTED event on an
             * mbedTLS server session, so the first request is where we learn it.) */
            if (store_keys_promote(I.st, device) == 1) {
                I.c->key_promoted++;
                ingest_log("key rotation of %s: first handshake with the new key; the old key is retired", device);
            }
            pref_set(device, 0);
        } else if (ident && ident->length && key && !key_equal(key->s, key->length, k.psk, k.psk_len)) {
            I.c->key_retired++;
            snprintf(why, cap, "this session's key was retired by a rotation; handshake again with the new key");
            ok = 0;
        }
    }
    /* rc < 0 (database error): the request goes on and the store reports the failure */
    store_keys_wipe(&k);
    return ok;
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
            store_key_state k;
            int rc = lookup_keys(out, &k), revoked = rc == 1 && (k.revoked_ms || !k.psk_len);
            store_keys_wipe(&k);
            if (rc != 1 || revoked) {
                if (revoked)
                    I.c->revoked++;
                else
                    I.c->unknown_identity++;
                ingest_log("DTLS: client certificate for %s device '%s'", revoked ? "revoked" : "unknown", out);
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
    /* Plain CoAP (tests only, never exposed): the device is named by the first query option
     * "d=ID" (started reports "r=ID" may follow it, joined by '&'). */
    size_t dl = 0;
    while (query && 2 + dl < query->length && query->s[2 + dl] != '&')
        dl++;
    if (I.allow_plain && query && query->length > 2 && !memcmp(query->s, "d=", 2) &&
        valid_device_id((const char *)query->s + 2, dl) && dl < cap) {
        memcpy(out, query->s + 2, dl);
        out[dl] = 0;
        return 1;
    }
    return 0;
}
