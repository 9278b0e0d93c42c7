/* settings_apply.h - central settings on the agent (wire/settings.h): merge, validate, keep.
 *
 * A set from the collector is merged onto agent.conf as loaded: each entry is judged by the
 * config parser itself (et_config_set: the same rules as the file), a name the operator
 * pinned in the file (`pin = agent.interval, ...`) is skipped (the file wins), and
 * agent.allow entries replace the file's allow list. Any entry the parser refuses refuses
 * the whole set: the agent keeps what it ran with and reports the reason (snapshot key 18).
 *
 * The applied document and the versions last refused are kept as SPOOL_DIR/settings
 * (settings_file.h; written only when a new version is applied or a new pair refused, tmp +
 * fsync + rename; the bytes are counted as flash writes), so after a reboot the same settings
 * come back before the collector is reachable, and the refusal is reported again instead of
 * the collector sending the set again to be judged again. */
#ifndef ET_SETTINGS_APPLY_H
#define ET_SETTINGS_APPLY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "settings.h"
#include "spool.h"

typedef struct et_settings_state {
    uint64_t fleet, device;         /* versions applied; 0, 0: agent.conf alone */
    uint64_t rej_fleet, rej_device; /* the last set refused (cleared by a later valid one) */
    char reason[ET_SET_REASON_MAX];
    char path[ET_PATH_MAX + 16];    /* SPOOL_DIR/settings */
    uint8_t doc[ET_SET_DOC_MAX];    /* the applied document as received, kept beside a refusal */
    size_t doclen;
    uint64_t kept_rej_fleet, kept_rej_device; /* the refusal in the file (write on change only) */
    uint64_t applied, refused;      /* sets, since start */
} et_settings_state;

enum { ET_SET_REFUSED = -1, ET_SET_SAME = 0, ET_SET_APPLIED = 1 };

/* out = local with the set on top (pinned names skipped). 0, or -1 with the reason. */
int et_settings_merge(const et_config *local, const et_settings *set, et_config *out, char *err, size_t errlen);

void et_settings_state_init(et_settings_state *st, const char *spool_dir);
/* A settings document from an answer. ET_SET_APPLIED with *out the new config (persisted;
 * sp, if any, is charged the flash bytes), ET_SET_SAME (already applied or already refused:
 * nothing to do), ET_SET_REFUSED (st->reason says why; *out untouched). */
int et_settings_take(et_settings_state *st, const et_config *local, const uint8_t *doc, size_t len, et_config *out,
                     spool *sp);
/* At start: the set kept by an earlier run, merged onto today's agent.conf. ET_SET_APPLIED
 * with *out, or ET_SET_SAME when there is none or it no longer fits the file (logged). The
 * kept refusal, if any, is restored either way (st->rej_*, st->reason). */
int et_settings_restore(et_settings_state *st, const et_config *local, et_config *out);

#endif
