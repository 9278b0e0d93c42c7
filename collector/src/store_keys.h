/* store_keys.h - device keys in the collector's database: the current PSK, a next PSK while a
 * rotation is under way (with its deadline), and revocation.
 *
 * Table device_keys(device, psk, next_psk, next_deadline, revoked_at, changed), created by
 * store_keys_init (idempotent, called from store_open). It is the authority for keys: rows are
 * seeded once from devices.psk for databases provisioned before it existed.
 *
 * Rotation: the old key stays valid until the device first completes a handshake with the new
 * one (store_keys_promote) or until next_deadline, whichever comes first.
 * Revocation: the keys are erased and revoked_at set; the device stays listed, and a later
 * `provision --force` gives it a fresh key.
 *
 * Files: the database (and its -wal/-shm, which SQLite creates with the database's mode) holds
 * every key, so it is created 0600 whatever the umask (store_keys_prepare_file, before
 * store_open) and tightened to 0600 when opened (store_keys_init). */
#ifndef COLL_STORE_KEYS_H
#define COLL_STORE_KEYS_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "store.h"

struct sqlite3_stmt;

typedef struct store_key_state {
    uint8_t psk[COLL_PSK_MAX];
    size_t psk_len;            /* 0 once revoked */
    uint8_t next_psk[COLL_PSK_MAX];
    size_t next_len;           /* 0: no rotation under way */
    int64_t next_deadline_ms;  /* wall clock: the old key is refused from then on */
    int64_t revoked_ms;        /* 0: not revoked */
} store_key_state;

/* Creates the table if needed, seeds it from devices, and makes the database files 0600.
 * 0, or -1 (store_errmsg). */
int store_keys_init(coll_store *s);

/* Creates the database file 0600 if it does not exist, and tightens an existing one that we
 * own to 0600 (never following a symlink). ":memory:" and "" are left alone. 0 or -1 + err. */
int store_keys_prepare_file(const char *path, char *err, size_t errlen);

/* 1 found (k filled), 0 unknown device, -1 error. Wipe k with store_keys_wipe after use.
 * cache: NULL, or where a hot caller keeps the prepared statement between calls (released
 * with store_keys_forget before the store is closed). */
int store_keys_get(coll_store *s, const char *device, store_key_state *k, struct sqlite3_stmt **cache);
void store_keys_forget(struct sqlite3_stmt **cache);

/* A fresh key (provision): clears any rotation and revocation. 0 or -1. */
int store_keys_set(coll_store *s, const char *device, const uint8_t *psk, size_t len);

/* Starts a rotation to psk; the current key stays valid until deadline_ms or the first
 * handshake with the new one. 1 done, 0 unknown or revoked device, -1 error. */
int store_keys_rotate(coll_store *s, const char *device, const uint8_t *psk, size_t len, int64_t deadline_ms);

/* The device used its next key (or the deadline passed): it becomes the only key.
 * 1 promoted, 0 nothing to promote, -1 error. */
int store_keys_promote(coll_store *s, const char *device);

/* Erases the device's keys and marks it revoked at now_ms. 1 done, 0 unknown, -1 error. */
int store_keys_revoke(coll_store *s, const char *device, int64_t now_ms);

/* Lists every device's key state: "device state revoked_at next_deadline" lines, or a JSON
 * array. Returns the number of devices or -1. */
int store_keys_list(coll_store *s, int json, FILE *out);

void store_keys_wipe(store_key_state *k);

#endif
