/* alert_outbox.h - the alert thread's durable state in the collector's database: what each
 * alert last was (alert_state) and the state changes not yet delivered (alert_outbox).
 *
 * It works on the alert thread's OWN store handle, on either backend (store_sq.h): on SQLite,
 * WAL keeps its reads from blocking ingest's writes and its writes are one short transaction
 * per state change; on PostgreSQL, the tables come with the store's migrations and only the
 * node holding the leader lock (store_lead) touches them, so N nodes alert once.
 *
 * Why nothing is lost: an alert is a function of the store's committed state (the
 * findings and the devices' last contact), re-evaluated every second and at start-up.
 * Each change of an alert (fired, resolved) updates alert_state AND appends its event to
 * alert_outbox in ONE transaction. A crash before that transaction loses nothing (the
 * next evaluation derives the same change from the store); after it, the event is on
 * disk until Alertmanager answered 2xx. Events are delivered in order, at most one per
 * alert per POST, so a firing alert reaches Alertmanager before its resolution. */
#ifndef COLL_ALERT_OUTBOX_H
#define COLL_ALERT_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct alert_db alert_db;

/* An alert as the evaluation wants it to be now. Strings are owned by the caller. */
typedef struct alert_want {
    char key[128];      /* identity: "finding/<id>/<confidence>", "silent/<device>" */
    char *labels;       /* JSON object text, keys sorted (compared as strings) */
    char *annotations;  /* JSON object text, keys sorted */
    char url[512];      /* generatorURL: the finding's or device's page */
} alert_want;

/* One alert to send: an outbox event or an active state row. Strings are malloc'ed. */
typedef struct alert_row {
    int64_t id;         /* outbox row id (0 for state rows) */
    char *key, *labels, *annotations, *url;
    int64_t starts_ms;
    int64_t ends_ms;    /* 0 = firing */
} alert_row;

/* Resolved alerts stay in alert_state (and are re-sent) this long, as Prometheus re-sends
 * resolved alerts for 15 minutes: Alertmanager may have missed the first resolution. */
#define ALERT_RESOLVED_KEEP_MS (15 * 60 * 1000)

/* On st's connection (st stays the caller's: close it after alert_db_close). */
alert_db *alert_db_open(coll_store *st, char *err, size_t errlen);
void alert_db_close(alert_db *d);
const char *alert_db_errmsg(alert_db *d);

/* Makes alert_state match wants (n entries, keys unique) at time now: fires the new ones
 * (startsAt = now), resolves the firing ones not wanted (endsAt = now) except those whose
 * key starts with keep_prefix (non-NULL when the wants are known to be incomplete), and
 * refreshes the annotations of the others; one transaction, only when something changed. */
int alert_db_apply(alert_db *d, const alert_want *wants, size_t n, int64_t now, const char *keep_prefix,
                   unsigned *fired, unsigned *resolved);

/* The oldest undelivered events due at now, in order, at most max and at most one per
 * alert key. Returns the count (0..max) or -1. */
int alert_outbox_claim(alert_db *d, int64_t now, alert_row *rows, int max);
/* Delivered (or refused for good): delete. */
int alert_outbox_done(alert_db *d, const alert_row *rows, int n);
/* Not delivered: try again at next_ms. */
int alert_outbox_retry(alert_db *d, const alert_row *rows, int n, int64_t next_ms);
int64_t alert_outbox_pending(alert_db *d);

/* Firing alerts and those resolved within ALERT_RESOLVED_KEEP_MS, for the periodic
 * re-send; rows are malloc'ed into *out (free with alert_rows_free). Returns count or -1. */
int alert_db_active(alert_db *d, int64_t now, alert_row **out);
void alert_rows_free(alert_row *rows, int n);

#endif
