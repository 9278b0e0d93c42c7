/* fuzz_settings_decode.c - the agent's central settings path on hostile bytes: the command
 * document that carries them (key 2), the settings decoder, the merge onto a config through
 * the config parser, and the file the agent keeps them in (settings_file.h: flash corrupts). Must refuse with a reason, never crash or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "command.h"
#include "base.h"
#include "config.h"
#include "settings.h"
#include "settings_apply.h"
#include "settings_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static et_cmd_list l;
    static et_settings s;
    static et_config local, out;
    static int init;
    char err[160];
    if (!init) {
        et_config_defaults(&local);
        et_strlcpy(local.pin[0], "agent.deep_interval", sizeof local.pin[0]);
        local.npin = 1;
        init = 1;
    }
    /* as a whole command document, then as the settings document itself */
    if (et_cmd_decode(data, size, &l, err, sizeof err) == 0 && l.settings_len &&
        et_settings_decode(l.settings, l.settings_len, &s, err, sizeof err) == 0)
        et_settings_merge(&local, &s, &out, err, sizeof err);
    if (et_settings_decode(data, size, &s, err, sizeof err) == 0) {
        et_settings_merge(&local, &s, &out, err, sizeof err);
        uint8_t buf[ET_SET_DOC_MAX];
        size_t n;
        /* what decodes encodes again (the collector's encoder accepts the same rules) */
        if (et_settings_encode(&s, buf, sizeof buf, &n, err, sizeof err))
            __builtin_trap();
    }
    static et_settings_kept k;
    if (et_settings_file_decode(data, size, &k, err, sizeof err) == 0) {
        uint8_t buf[ET_SET_FILE_MAX];
        size_t n;
        /* what decodes fits the file's bound when written again */
        if (k.doclen > ET_SET_DOC_MAX || et_settings_file_encode(&k, buf, sizeof buf, &n) || n > ET_SET_FILE_MAX)
            __builtin_trap();
    }
    return 0;
}
