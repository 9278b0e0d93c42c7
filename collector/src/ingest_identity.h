/* ingest_identity.h - who is talking: the device id from the DTLS session, never from the
 * payload. PSK sessions: the PSK identity, whose key comes from the database (store_keys.c:
 * the current key, the next one during a rotation, revocation). Certificate
 * sessions: the CN of a client certificate validated against pki_ca, for a provisioned device.
 * Plain CoAP (only with --insecure-plain-listen, tests): the Uri-Query "d=ID". */
#ifndef COLL_INGEST_IDENTITY_H
#define COLL_INGEST_IDENTITY_H

#include <stddef.h>

#include <coap3/coap.h>

#include "ingest.h"
#include "store.h"

/* The store the keys come from, the counters to bump, and whether plain CoAP's "d=ID" may
 * name a device. */
void identity_setup(coll_store *st, ingest_counters *c, int allow_plain);

/* libcoap's PSK validate_id_call_back: the key for this identity, or NULL (handshake fails). */
const coap_bin_const_t *identity_psk_for(coap_bin_const_t *identity, coap_session_t *session, void *arg);

/* The session's authenticated device id into out (cap bytes); 0 if there is none.
 * cert_cache (COLL_ID_MAX bytes, per session, zeroed at first) keeps a certificate
 * session's id so the certificate is read once. */
int identity_of_session(coap_session_t *session, const coap_string_t *query, char *cert_cache, char *out,
                        size_t cap);

/* Whether the session may still send: 0 (and why) when the device was revoked, or its key was
 * rotated away since the handshake. Plain CoAP sessions always may. The first request over a
 * handshake made with a device's next key completes its rotation (the old key is retired). */
int identity_still_valid(coap_session_t *session, const char *device, char *why, size_t cap);

/* A failed handshake while a rotation is under way makes the next handshake of that device get
 * the other key (DTLS PSK lets the server pick only one key per handshake). */
void identity_on_event(coap_session_t *session, coap_event_t event);

/* Releases the cached statement (before the store is closed). */
void identity_teardown(void);

#endif
