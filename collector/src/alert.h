/* alert.h - the collector as an Alertmanager alert source, as Prometheus is.
 *
 * One thread with its own database connection: every second it evaluates which alerts the
 * store's state calls for (alert_source.c), records changes durably (alert_outbox.c) and
 * delivers them to Alertmanager's POST /api/v2/alerts (alert_http.c). Active alerts are
 * re-sent every resend interval with endsAt = now + 4 x resend, so Alertmanager keeps them
 * firing while the collector lives and lets them expire if it dies; resolved ones are
 * re-sent with their endsAt for 15 minutes. Nothing here runs on ingest's thread, and the
 * HTTP exchange happens outside any database transaction. */
#ifndef COLL_ALERT_H
#define COLL_ALERT_H

#include <stddef.h>
#include <stdint.h>

typedef struct alert_conf {
    const char *db_path;
    const char *alertmanager_url;  /* http://host:port[/prefix] */
    const char *public_url;        /* base of the links in annotations */
    int64_t resend_ms;             /* default 60 s, like Prometheus' --rules.alert.resend-delay */
    int64_t silent_after_ms;       /* device-silent alerts; 0 = off */
} alert_conf;

typedef struct alert_counters {
    uint64_t fired, resolved;      /* state changes recorded */
    uint64_t posts_ok, posts_failed; /* HTTP exchanges */
    uint64_t alerts_sent;          /* alerts in accepted POSTs (events and re-sends) */
    uint64_t alerts_rejected;      /* events Alertmanager refused (400/422): dropped */
    uint64_t eval_errors;
    int64_t outbox_pending;        /* events waiting at the last look */
} alert_counters;

typedef struct alert_thread alert_thread;

/* Checks the configuration, opens the connection (creating the tables) and starts the
 * thread. NULL with a message in err. */
alert_thread *alert_start(const alert_conf *c, char *err, size_t errlen);
/* Stops the thread (an HTTP exchange in flight finishes or times out first) and frees. */
void alert_stop(alert_thread *t);
void alert_get_counters(alert_thread *t, alert_counters *out);

/* /metrics: the counters of the running alert thread (published by it once per loop), as
 * Prometheus text (edgetrace_alert* families) appended at buf[0..cap). Returns the length
 * written (0 when no alert thread runs: alerting off), or -1 when cap is too small. Safe from
 * any thread. */
int alert_metrics_text(char *buf, size_t cap);

/* The JSON array for POST /api/v2/alerts (malloc'ed text, NULL when out of memory). */
struct alert_row;
char *alert_json_body(const struct alert_row *rows, int n, int64_t now, int64_t resend_ms);

/* "90", "90s", "500ms", "5m", "2h" -> milliseconds; -1 if malformed. */
int64_t alert_parse_duration_ms(const char *s);

#endif
