/* metrics.h - Prometheus text exposition for GET /metrics.
 *
 * Two kinds of figures:
 *  - collector health, counted where it happens: the ingest counters live in the ingest event
 *    loop's thread, which publishes a copy (metrics_ingest_publish) under a mutex after each
 *    batch; the HTTP thread renders from that copy, so neither thread ever reads the other's
 *    live state. HTTP request counts are kept by the HTTP thread itself.
 *  - fleet gauges (open findings by kind and confidence, silent devices, per-device last seen,
 *    database size, prune progress), read from the store at scrape time (store_q_gauges).
 * Naming: edgetrace_ prefix, base units (seconds, bytes), _total for counters. Labels carry
 * only bounded, non-secret values (device, kind, confidence, code): never stacks or
 * fingerprints. */
#ifndef COLL_METRICS_H
#define COLL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "ingest.h"
#include "store.h"

/* Ingest thread: publish the counters (cheap: one memcpy under a mutex). */
void metrics_ingest_publish(const ingest_counters *c);
/* Ingest thread: N snapshots became durable SECONDS after the first of their batch arrived. */
void metrics_ingest_commit(double seconds, uint64_t n);
/* Ingest thread: DTLS sessions up (+1) or down (-1). */
void metrics_dtls_sessions_add(int delta);

/* HTTP thread: one answered request. */
void metrics_http_observe(int status, double seconds);

/* HTTP thread: the whole exposition into *out (malloc'ed, caller frees). The fleet gauges are
 * left out (with edgetrace_store_up 0) when the store query fails. 0 ok, -1 out of memory. */
int metrics_render(coll_store *ro, int64_t now_ms, char **out, size_t *len);

/* Prometheus label value escaping (\\, \", \n) into dst (always terminated). */
void metrics_escape_label(const char *src, char *dst, size_t cap);

#endif
