/* store_pg_query.c - the read side (store.h) on PostgreSQL: the same JSON shapes as
 * store_query.c and store_cli.c for what the PostgreSQL backend stores today (devices,
 * targets, snapshots with their series, gauges). Findings are not written on PostgreSQL yet,
 * so every finding count is zero and the finding/series/pprof queries answer an error that
 * says so (store_pg_unsupported). */
#include <stdlib.h>
#include <string.h>

#include "store_pg_int.h"

#define DEFAULT_INTERVAL_MS 30000

int store_pg_unsupported(store_pg *p, const char *what)
{
    snprintf(p->err, sizeof(p->err), "%s: not implemented on the PostgreSQL backend yet", what);
    return -1;
}

/* Text from the database (device-supplied, hostile): not UTF-8 becomes "?" */
static json_t *col_text(const PGresult *r, int row, int c)
{
    if (PQgetisnull(r, row, c))
        return json_null();
    json_t *v = json_string(PQgetvalue(r, row, c));
    return v ? v : json_string("?");
}
static json_t *col_int(const PGresult *r, int row, int c)
{
    return PQgetisnull(r, row, c) ? json_null() : json_integer(pg_i64(r, row, c));
}
static int64_t interval_or_default(const PGresult *r, int row, int c)
{
    int64_t v = pg_i64(r, row, c);
    return v > 0 ? v : DEFAULT_INTERVAL_MS;
}
static int is_silent(const PGresult *r, int row, int last_col, int interval_col, int64_t now_ms)
{
    return PQgetisnull(r, row, last_col) ||
           now_ms - pg_i64(r, row, last_col) > 3 * interval_or_default(r, row, interval_col);
}
/* no findings on PostgreSQL yet: every count is zero, worst is null */
static void set_zero_counts(json_t *o)
{
    json_object_set_new(o, "open_findings",
                        json_pack("{s:i,s:i,s:i}", "confirmed", 0, "likely", 0, "suspected", 0));
    json_object_set_new(o, "worst", json_null());
}

#define DEVICE_SQL                                                                                              \
    "SELECT d.id, d.board, d.agent_version, coalesce(d.first_seen, d.created), d.last_seen,"                    \
    " (SELECT max(interval_ms) FROM targets t WHERE t.device=d.id),"                                            \
    " coalesce(d.spool_routine_dropped,0)+coalesce(d.spool_findings_dropped,0)+coalesce(d.spool_corrupt_dropped,0)," \
    " (SELECT count(*) FROM targets t WHERE t.device=d.id), d.snapshots FROM devices d"

static json_t *device_json(const PGresult *r, int i, int64_t now_ms)
{
    json_t *d = json_object();
    json_object_set_new(d, "id", col_text(r, i, 0));
    json_object_set_new(d, "board", col_text(r, i, 1));
    json_object_set_new(d, "agent_version", col_text(r, i, 2));
    json_object_set_new(d, "first_seen_ms", col_int(r, i, 3));
    json_object_set_new(d, "last_seen_ms", col_int(r, i, 4));
    json_object_set_new(d, "interval_s", json_integer((interval_or_default(r, i, 5) + 500) / 1000));
    json_object_set_new(d, "status", json_string(is_silent(r, i, 4, 5, now_ms) ? "silent" : "online"));
    json_object_set_new(d, "spool_pending", json_null());
    json_object_set_new(d, "spool_dropped", col_int(r, i, 6));
    json_object_set_new(d, "targets", col_int(r, i, 7));
    json_object_set_new(d, "snapshots", col_int(r, i, 8));
    set_zero_counts(d);
    return d;
}

int store_pg_q_devices(store_pg *p, int64_t now_ms, json_t **out)
{
    PGresult *r = pg_run(p, DEVICE_SQL " ORDER BY d.id", NULL);
    if (!r)
        return -1;
    json_t *arr = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(arr, device_json(r, i, now_ms));
    PQclear(r);
    *out = json_pack("{s:o}", "devices", arr);
    return 0;
}

static json_t *targets_of(store_pg *p, const char *device)
{
    pg_args a = {0};
    pga_text(&a, device);
    PGresult *r = pg_run(p,
                         "SELECT t.id, t.device, t.service, coalesce(t.namespace,''), coalesce(t.pod,''),"
                         " coalesce(t.container,''), t.port, t.go_version, t.pid, t.first_seen, t.last_seen,"
                         " t.last_goroutines, t.last_heap_inuse, t.last_rss_bytes, t.last_threads, t.interval_ms"
                         " FROM targets t WHERE t.device=$1 ORDER BY t.service, t.ident",
                         &a);
    if (!r)
        return NULL;
    json_t *arr = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *t = json_object();
        static const char *const COLS[] = {"id", "device", "service", "namespace", "pod", "container", "port",
                                           "go_version", "pid", "first_seen_ms", "last_seen_ms"};
        for (int c = 0; c < 11; c++)
            json_object_set_new(t, COLS[c],
                                c == 0 || c == 6 || c >= 8 ? col_int(r, i, c) : col_text(r, i, c));
        json_object_set_new(t, "interval_s", json_integer((interval_or_default(r, i, 15) + 500) / 1000));
        json_object_set_new(t, "last",
                            json_pack("{s:o,s:o,s:o,s:o}", "goroutines", col_int(r, i, 11), "heap_inuse",
                                      col_int(r, i, 12), "rss_bytes", col_int(r, i, 13), "threads",
                                      col_int(r, i, 14)));
        set_zero_counts(t);
        json_array_append_new(arr, t);
    }
    PQclear(r);
    return arr;
}

int store_pg_q_targets(store_pg *p, const char *device, json_t **out)
{
    if (!device)
        return STORE_Q_BADARG;
    json_t *d = NULL;
    int rc = store_pg_q_device(p, device, 0, &d);
    if (rc)
        return rc;
    *out = json_pack("{s:O}", "targets", json_object_get(d, "targets"));
    json_decref(d);
    return 0;
}

int store_pg_q_device(store_pg *p, const char *device, int64_t now_ms, json_t **out)
{
    if (!device)
        return STORE_Q_BADARG;
    pg_args a = {0};
    pga_text(&a, device);
    PGresult *r = pg_run(p, DEVICE_SQL " WHERE d.id=$1", &a);
    if (!r)
        return -1;
    json_t *d = PQntuples(r) == 1 ? device_json(r, 0, now_ms) : NULL;
    PQclear(r);
    if (!d)
        return STORE_Q_NOTFOUND;
    json_t *arr = targets_of(p, device);
    if (!arr) {
        json_decref(d);
        return -1;
    }
    json_object_set_new(d, "targets", arr);
    *out = d;
    return 0;
}

int store_pg_q_gauges(store_pg *p, int64_t now_ms, json_t **out)
{
    PGresult *r = pg_run(p,
                         "SELECT d.id, d.last_seen, (SELECT max(interval_ms) FROM targets t"
                         " WHERE t.device=d.id) FROM devices d ORDER BY d.id",
                         NULL);
    if (!r)
        return -1;
    json_t *o = json_object(), *devs = json_array();
    int silent = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        int sil = is_silent(r, i, 1, 2, now_ms);
        silent += sil;
        json_array_append_new(devs, json_pack("{s:o,s:o,s:b}", "id", col_text(r, i, 0), "last_seen_ms",
                                              col_int(r, i, 1), "silent", sil));
    }
    PQclear(r);
    json_object_set_new(o, "open_findings", json_array());
    json_object_set_new(o, "devices", devs);
    json_object_set_new(o, "devices_silent", json_integer(silent));
    json_object_set_new(o, "db_bytes", json_integer(store_pg_db_bytes(p)));
    json_object_set_new(o, "prune_rows_total", json_integer(p->pruned));
    *out = o;
    return 0;
}

/* the CLI's listings, with store_cli.c's column names */
static const char DEVICES[] =
    "SELECT d.id AS device, d.created, d.last_seen, d.snapshots,"
    " (SELECT count(*) FROM targets t WHERE t.device=d.id) AS targets, 0 AS findings"
    " FROM devices d WHERE $1::text IS NULL OR d.id=$1 ORDER BY d.id LIMIT $2";
static const char SNAPSHOTS[] =
    "SELECT * FROM (SELECT s.snapshot_id, s.device, t.service AS target, s.received, s.wall_ms AS wall,"
    " s.wall_trusted, s.seq, r.goroutines, r.heap_inuse, r.rss_kb, r.threads, s.nfindings AS findings,"
    " r.spool_dropped, s.size, s.boot_id, s.agent_version, s.board"
    " FROM snapshots s JOIN targets t ON t.id=s.target"
    " LEFT JOIN series r ON r.target=s.target AND r.t=s.t AND r.snap=s.id"
    " WHERE $1::text IS NULL OR s.device=$1 ORDER BY s.id DESC LIMIT $2) x ORDER BY received, seq";

int store_pg_q_list(store_pg *p, const char *what, const char *device, int limit, json_t **out)
{
    const char *sql = !strcmp(what, "devices") ? DEVICES : !strcmp(what, "snapshots") ? SNAPSHOTS : NULL;
    if (!strcmp(what, "findings")) {
        *out = json_array(); /* none stored on PostgreSQL yet */
        return 0;
    }
    if (!sql)
        return STORE_Q_BADARG;
    pg_args a = {0};
    if (device)
        pga_text(&a, device);
    else
        pga_null(&a);
    if (limit > 0)
        pga_i64(&a, limit);
    else
        pga_null(&a); /* LIMIT NULL: no limit */
    PGresult *r = pg_run(p, sql, &a);
    if (!r)
        return -1;
    json_t *arr = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *o = json_object();
        for (int c = 0; c < PQnfields(r); c++) {
            Oid ty = PQftype(r, c); /* 20 int8, 21 int2, 23 int4 */
            json_object_set_new(o, PQfname(r, c),
                                ty == 20 || ty == 21 || ty == 23 ? col_int(r, i, c) : col_text(r, i, c));
        }
        json_array_append_new(arr, o);
    }
    PQclear(r);
    *out = arr;
    return 0;
}
