/* capture_run.h - runs the capture commands of the downlink (downlink.h): fetches what the
 * target's pprof endpoint serves for the kind (trace?seconds=N, goroutine?debug=2,
 * goroutineleak, heap), keeps at most ET_CAPTURE_DATA_MAX bytes (a larger result is cut there
 * and marked cut), and appends one capture record (wire/capture.h) to the spool, which the
 * uplink delivers exactly like a snapshot. A capture that fails (unknown target, endpoint
 * absent, timeout) is still recorded, with its reason, so the collector can show it.
 *
 * One capture at a time per agent (so never two traces of one process from the downlink);
 * others wait in a short FIFO (ET_CAPRUN_QUEUE; more are recorded as failed at once). The
 * buffers (~250 KB) exist only while a capture runs. */
#ifndef ET_CAPTURE_RUN_H
#define ET_CAPTURE_RUN_H

#include "command.h"
#include "httpc.h"
#include "loop.h"
#include "sample.h"
#include "spool.h"

#define ET_CAPRUN_QUEUE 4

typedef struct et_caprun et_caprun;
typedef void (*et_caprun_kick)(void *ud); /* a record was appended: wake the uplink */

et_caprun *et_caprun_create(et_loop *loop, et_httpc *http, et_sched *sched, spool *sp, const uint8_t boot_id[16],
                            et_caprun_kick kick, void *ud);
void et_caprun_destroy(et_caprun *c);
void et_caprun_submit(et_caprun *c, const et_cmd *cmd);
/* Called when a capture's request to the target goes out (the "running" state the uplink
 * reports to the collector). */
typedef void (*et_caprun_started)(void *ud, uint64_t cmd_id);
void et_caprun_on_started(et_caprun *c, et_caprun_started fn);

#endif
