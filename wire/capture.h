/* capture.h - the record that carries a capture's raw bytes (a downlink command's result,
 * command.h) from the agent's spool to the collector, through the same spool, uplink and
 * POST /s as a snapshot (so it gets the same exactly-once path: the collector answers
 * 2.01/2.04 after a durable commit, deduplicating on (device, command id)).
 *
 * A snapshot's attachments stay <= 4096 bytes (schema 2); a trace or a debug=2 dump is far
 * larger, so a capture is a record of its own, told apart by its envelope:
 *
 *   'E' 'C' version(1) flags  then raw CBOR; flags bit 0 (ET_CAPTURE_F_ZSTD): the data
 *   (key 6) is one zstd frame of the served bytes (the agent compresses: a debug=2 dump shrinks
 *   ~10x, which is what a lossy cellular link needs); the collector stores them decompressed.
 *   map { 1: command id (uint > 0), 2: kind (uint, et_cmd_kind 1..4), 3: target (tstr),
 *         4: cut (bool: the result was larger than ET_CAPTURE_DATA_MAX and was cut there),
 *         5: error (tstr, "" on success: why the capture failed), 6: data (bstr),
 *         7: wall_ms (uint, when the capture ended) }
 *
 * The data is what the Go service served, byte for byte (a runtime/trace stream, a pprof
 * proto, or debug=2 text), so `go tool trace` / `go tool pprof` open it as downloaded. */
#ifndef ET_WIRE_CAPTURE_H
#define ET_WIRE_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "command.h"

#define ET_CAPTURE_MAGIC1 0x43 /* 'C' (byte 0 is 'E', as for snapshots) */
#define ET_CAPTURE_VERSION 1
#define ET_CAPTURE_F_ZSTD 0x01
#define ET_CAPTURE_DATA_MAX (120u * 1024u) /* fits one spool record with the header */
#define ET_CAPTURE_ERR_MAX 160
#define ET_CAPTURE_WIRE_MAX (ET_CAPTURE_DATA_MAX + 512u)

typedef struct et_capture {
    uint64_t cmd_id;
    uint8_t kind;
    int cut;
    int zstd;            /* data is a zstd frame (envelope flag) */
    uint64_t wall_ms;
    char target[ET_CMD_TARGET_MAX];
    char error[ET_CAPTURE_ERR_MAX];
    const uint8_t *data; /* encode: the bytes; decode: points into the input */
    size_t len;
} et_capture;

/* 1 if buf starts with a capture envelope (any version). */
int et_capture_is(const uint8_t *buf, size_t len);
int et_capture_encode(const et_capture *c, uint8_t *out, size_t cap, size_t *n, char *err, size_t errlen);
/* Strict; 0 or -1 with a reason. c->data points into buf. */
int et_capture_decode(const uint8_t *buf, size_t len, et_capture *c, char *err, size_t errlen);

#endif
