/* fuzz_uplink_credentials.c - the credentials file as the agent's watch reads it (uplink_creds.h,
 * et_uplink_load_credentials): a file on flash, or a key in a Kubernetes Secret, is outside
 * input. Whatever it holds, the watch reports LOADED with a usable identity and key, or BAD with
 * a reason, and never touches the credentials in use.
 *
 * Input: the file's bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "uplink_creds.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/et-fuzz-creds-%d", (int)getpid());
        et_log_level = ET_LOG_ERROR; /* the mode warning on every input is noise */
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    et_creds_watch w;
    et_creds_watch_init(&w, path);
    et_uplink_params base, out;
    et_uplink_params_defaults(&base);
    memset(&out, 0xa5, sizeof out); /* "the credentials in use" */
    char err[256];
    int ev = et_creds_poll(&w, &base, &out, err, sizeof err);
    if (ev == ET_CREDS_LOADED) {
        if (!out.device_id[0] || strlen(out.device_id) >= sizeof out.device_id || !out.psk_len ||
            out.psk_len > ET_UPLINK_PSK_MAX || strnlen(out.collector, sizeof out.collector) >= sizeof out.collector)
            abort();
    } else if (ev == ET_CREDS_BAD) {
        if (!err[0] || out.psk_len != (size_t)0xa5a5a5a5a5a5a5a5ull || w.load_errors != 1)
            abort();
    } else {
        abort(); /* the file exists and is readable */
    }
    return 0;
}
