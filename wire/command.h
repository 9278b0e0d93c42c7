/* command.h - the downlink schema: commands the collector hands a device in the answer to
 * that device's own request (the device is behind NAT and accepts nothing inbound).
 *
 * On the wire the 2.01/2.04/2.05 answer payload is the diagnostic text the agent has always
 * parsed (" s=N" and all), then, only when commands are pending, one NUL byte and a CBOR
 * document. Agents that predate commands copy the payload as a C string and stop at the NUL,
 * so they keep reading the diagnostic and never see the commands.
 *
 *   CBOR: map { 0: version (1), 1: [ command map, ... ] }     at most ET_CMD_MAX commands
 *   command map { 1: id (uint > 0), 2: expiry (uint, Unix ms), 3: kind (uint, et_cmd_kind),
 *                 4: target (text, <= ET_CMD_TARGET_MAX-1 bytes; absent for rediscover),
 *                 5: seconds (uint 1..ET_CMD_SECONDS_MAX; trace only, default 2) }
 *   optional key 2: bstr, a central settings document (settings.h), sent only to agents that
 *   write snapshot schema 3 (older ones refuse unknown keys); its own decoder judges it.
 *
 * The decoder is strict (unknown keys, duplicates, wrong types, out-of-range values, trailing
 * bytes, more than ET_CMD_MAX commands: all rejected with a reason), because it runs on the
 * device on bytes that crossed a network. README "Commands" documents the same. */
#ifndef ET_WIRE_COMMAND_H
#define ET_WIRE_COMMAND_H

#include <stddef.h>
#include <stdint.h>

#include "settings.h"

#define ET_CMD_VERSION 1
#define ET_CMD_MAX 8
#define ET_CMD_TARGET_MAX 64
#define ET_CMD_SECONDS_MAX 30
#define ET_CMD_SECONDS_DEFAULT 2
/* largest encoded document (8 commands of ~100 bytes each, with slack) */
#define ET_CMD_DOC_MAX 1024

typedef enum {
    ET_CMD_TRACE = 1,            /* execution trace of target for `seconds` */
    ET_CMD_GOROUTINE_DEBUG2 = 2, /* /debug/pprof/goroutine?debug=2 */
    ET_CMD_GOROUTINELEAK = 3,    /* /debug/pprof/goroutineleak, where served */
    ET_CMD_HEAP = 4,             /* /debug/pprof/heap */
    ET_CMD_REDISCOVER = 5,       /* re-run discovery now */
    ET_CMD_KIND_MAX = 5
} et_cmd_kind;

typedef struct et_cmd {
    uint64_t id;
    uint64_t expiry_ms;
    uint8_t kind;
    uint32_t seconds;
    char target[ET_CMD_TARGET_MAX];
} et_cmd;

typedef struct et_cmd_list {
    unsigned n;
    et_cmd c[ET_CMD_MAX];
    size_t settings_len; /* 0: no settings document (key 2) */
    uint8_t settings[ET_SET_DOC_MAX];
} et_cmd_list;

/* "trace", "goroutine-debug2", "goroutineleak", "heap", "rediscover"; NULL if unknown */
const char *et_cmd_kind_name(unsigned kind);
/* 0 if unknown */
unsigned et_cmd_kind_parse(const char *name);

/* CBOR document into out; 0 with *n set, or -1 (too small / invalid command: reason in err). */
int et_cmd_encode(const et_cmd_list *l, uint8_t *out, size_t cap, size_t *n, char *err, size_t errlen);
/* Strict decode; 0 or -1 with a reason in err (l is then empty). */
int et_cmd_decode(const uint8_t *buf, size_t len, et_cmd_list *l, char *err, size_t errlen);

/* Splits an answer payload at its first NUL: the diagnostic text before it, the command
 * document after it. Returns the document's length (0: the answer carries no commands). */
size_t et_cmd_split_answer(const uint8_t *payload, size_t len, const uint8_t **doc);

/* "Started" reports (README "Commands", progress): the agent tells the collector which command
 * ids it has begun to run, so a multi-second trace shows as running. One CoAP Uri-Query
 * option "r=ID" per id (decimal, 1..2^64-1, no sign, no leading zero) on its next request,
 * upload or check-in, held in RAM only (no flash write): a report lost to a power cut only
 * leaves the state at "delivered". At most ET_CMD_STARTED_MAX per request. */
#define ET_CMD_STARTED_MAX 4
/* "r=ID" into buf (>= 24 bytes); its length. */
int et_cmd_started_format(uint64_t id, char *buf, size_t cap);
/* Strict parse of one Uri-Query option value; 0 with *id, or -1 (not an "r=" option, or bad). */
int et_cmd_started_parse(const uint8_t *v, size_t len, uint64_t *id);

/* printf into err (if any) and return -1: the decoders' (command.c, capture.c) one error path */
int et_wire_failf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
