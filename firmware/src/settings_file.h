/* settings_file.h - what the agent keeps of central settings across a restart: the document it
 * applied and the versions it last refused, with the reason (settings_apply.h).
 *
 *   SPOOL_DIR/settings, CBOR: [1 (file version), applied document bstr (empty: none),
 *                              refused fleet version uint, refused device version uint,
 *                              reason tstr]
 *
 * The refusal is kept so that after a restart the agent reports it again at once: the
 * collector then does not send the same set again, and the agent does not judge it again.
 * An older file holding the bare settings document (before refusals were kept) still reads
 * as an applied set with no refusal. The file is the agent's own, but flash corrupts: the
 * decoder is strict and fuzzed (tests/fuzz/fuzz_settings_decode.c). */
#ifndef ET_SETTINGS_FILE_H
#define ET_SETTINGS_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "settings.h"

#define ET_SET_FILE_VERSION 1
#define ET_SET_FILE_MAX (ET_SET_DOC_MAX + ET_SET_REASON_MAX + 48)

typedef struct et_settings_kept {
    uint8_t doc[ET_SET_DOC_MAX]; /* the applied document as received */
    size_t doclen;               /* 0: none */
    uint64_t rej_fleet, rej_device;
    char reason[ET_SET_REASON_MAX];
} et_settings_kept;

int et_settings_file_encode(const et_settings_kept *k, uint8_t *out, size_t cap, size_t *n);
/* Strict; 0, or -1 with a reason (k is then empty). */
int et_settings_file_decode(const uint8_t *buf, size_t len, et_settings_kept *k, char *err, size_t errlen);

#endif
