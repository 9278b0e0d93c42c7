/* alert_source.h - which alerts should be active now, read from the store's committed state.
 *
 * A finding alerts while it is open at likely or confirmed; a device alerts while it has
 * been silent longer than silent_after. This is the one place that reads the store for the
 * alert thread, and it reads only through store.h's read API (no SQL), so it works on any
 * store backend. */
#ifndef COLL_ALERT_SOURCE_H
#define COLL_ALERT_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "alert_outbox.h"
#include "store.h"

/* store_q_findings' own cap (per query). */
#define ALERT_SOURCE_MAX 1000

typedef struct alert_source_conf {
    int64_t silent_after_ms;  /* 0: no device-silent alerts */
    const char *public_url;   /* base of the links, no trailing '/' */
} alert_source_conf;

/* Fills *out (malloc'ed, free with alert_wants_free) with the alerts that should be
 * active at now. Returns their count, or -1 on a store error: then the caller must change
 * nothing (an empty answer would resolve every alert). *complete is 0 when the store's
 * findings list was cut at its limit (ALERT_SOURCE_MAX per confidence): finding alerts
 * missing from the answer must then not be resolved. */
int alert_source_collect(coll_store *st, const alert_source_conf *c, int64_t now, alert_want **out, int *complete);
void alert_wants_free(alert_want *w, int n);

/* "goroutine-leak" -> "EdgetraceGoroutineLeak" (the alertname label). */
void alert_name_for_kind(const char *kind, char *out, size_t cap);

/* ms since the epoch -> "2026-12-06T12:00:00.123Z" (cap >= 32). */
void alert_rfc3339(int64_t ms, char *out, size_t cap);

#endif
