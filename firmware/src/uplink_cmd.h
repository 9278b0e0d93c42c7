/* uplink_cmd.h - the `push` loop (uplink_cmd.c), open to a snapshot source so that a host test
 * tool (tools/et-push.c: --synthetic, --pad, --ids-out, --gen-out) can drive the real spool
 * and uplink without the device binary carrying the test harness. */
#ifndef ET_UPLINK_CMD_H
#define ET_UPLINK_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "spool.h"

typedef struct et_push_source {
    unsigned total;          /* snapshots to produce */
    unsigned interval_ms;    /* one every interval_ms while uploading; 0 = all before */
    /* Encodes the next snapshot into wire (ET_WIRE_MAX bytes); sets *len, the spool id and
     * the spool flags. 0 ok, -1 error. */
    int (*produce)(void *ctx, const char *device_id, uint8_t *wire, size_t *len, uint8_t id[SPOOL_ID_LEN],
                   uint8_t *flags);
    void (*spooled)(void *ctx, const uint8_t id[SPOOL_ID_LEN]); /* after the append returned 0; may be NULL */
    void *ctx;
} et_push_source;

/* `edgetrace-agent push ...` with an optional source (NULL: FILE arguments only). */
int uplink_push_run(int argc, char **argv, const et_push_source *src);

#endif
