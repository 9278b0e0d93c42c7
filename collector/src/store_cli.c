/* store_cli.c - the listings behind `edgetrace-collector devices|snapshots|findings`
 * (query.c prints them): flat rows with the CLI's long-standing column names. */
#include <stdio.h>
#include <string.h>

#include "store_int.h"
#include "store_pg_int.h"

static const char DEVICES[] =
    "SELECT d.id AS device, d.created, d.last_seen, d.snapshots,"
    " (SELECT count(*) FROM targets t WHERE t.device=d.id) AS targets,"
    " (SELECT count(*) FROM findings f WHERE f.device=d.id) AS findings"
    " FROM devices d WHERE ?1 IS NULL OR d.id=?1 ORDER BY d.id LIMIT ?2";

/* the newest LIMIT snapshots, oldest first */
static const char SNAPSHOTS[] =
    "SELECT * FROM (SELECT s.snapshot_id, s.device, t.service AS target, s.received, s.wall_ms AS wall,"
    " s.wall_trusted, s.seq, r.goroutines, r.heap_inuse, r.rss_kb, r.threads, s.nfindings AS findings,"
    " r.spool_dropped, s.size, s.boot_id, s.agent_version, s.board"
    " FROM snapshots s JOIN targets t ON t.id=s.target"
    " LEFT JOIN series r ON r.target=s.target AND r.t=s.t AND r.snap=s.id"
    " WHERE ?1 IS NULL OR s.device=?1 ORDER BY s.id DESC LIMIT ?2) ORDER BY received, seq";

static const char FINDINGS[] =
    "SELECT f.device, t.service AS target, f.kind, f.confidence, f.state, f.function, f.file, f.line, f.count,"
    " f.max_count, f.growth_per_min, f.snapshots, f.first_seen, f.last_seen, f.fingerprint, f.evidence,"
    " f.created_by, t.pod, t.incarnation, f.value, f.status, f.id"
    " FROM findings f JOIN targets t ON t.id=f.target WHERE ?1 IS NULL OR f.device=?1"
    " ORDER BY f.last_seen DESC LIMIT ?2";

int store_q_list(coll_store *s, const char *what, const char *device, int limit, json_t **out)
{
    if (s->pg)
        return store_pg_q_list(s->pg, what, device, limit, out);
    const char *sql = !strcmp(what, "devices")     ? DEVICES
                      : !strcmp(what, "snapshots") ? SNAPSHOTS
                      : !strcmp(what, "findings")  ? FINDINGS
                                                   : NULL;
    if (!sql)
        return STORE_Q_BADARG;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, limit > 0 ? limit : -1);
    json_t *arr = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *o = json_object();
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            json_t *v;
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_INTEGER: v = json_integer(sqlite3_column_int64(st, i)); break;
            case SQLITE_FLOAT: v = json_real(sqlite3_column_double(st, i)); break;
            case SQLITE_NULL: v = json_null(); break;
            default: {
                const char *txt = (const char *)sqlite3_column_text(st, i);
                v = json_string(txt ? txt : "");
                if (!v) /* not UTF-8 (a hostile name): keep the row, lose the bytes */
                    v = json_string("?");
            }
            }
            json_object_set_new(o, sqlite3_column_name(st, i), v);
        }
        json_array_append_new(arr, o);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return -1;
    }
    *out = arr;
    return 0;
}
