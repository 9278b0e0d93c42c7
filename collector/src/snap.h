/* snap.h - the collector's view of one decoded snapshot: the whole wire snapshot plus the
 * two text forms ingest logs and checks.
 *
 * decode.c fills it (et_wire_decode writes straight into .w, no copy); the store writes every
 * field of .w. Fixed size (~100 KB, no pointers): a hostile payload cannot make the collector
 * allocate, and ingest keeps one static instance. */
#ifndef COLL_SNAP_H
#define COLL_SNAP_H

#include <stdint.h>

#include "snapshot.h"

#define COLL_ID_MAX 64

typedef struct coll_snap {
    char snapshot_id[2 * ET_SNAP_ID_LEN + 1]; /* hex of w.id: the dedup key (with the device) */
    char device_id[COLL_ID_MAX];              /* what the payload claims; checked against the session */
    et_snapshot w;                            /* everything the agent sent, validated by wire/ */
} coll_snap;

#endif
