/* store_cli.c - the listings behind `edgetrace-collector devices|snapshots|findings`
 * (query.c prints them): flat rows with the CLI's long-standing column names. */
#include <stdio.h>
#include <string.h>

#include "store_int.h"
#include "store_sq.h"

static const char DEVICES[] =
    "SELECT d.id AS device, d.created, d.last_seen, d.snapshots,"
    " (SELECT count(*) FROM targets t WHERE t.device=d.id) AS targets,"
    " (SELECT count(*) FROM findings f WHERE f.device=d.id) AS findings"
    " FROM devices d WHERE CAST(?1 AS TEXT) IS NULL OR d.id=?1 ORDER BY d.id LIMIT ?2";

/* the newest LIMIT snapshots, oldest first */
static const char SNAPSHOTS[] =
    "SELECT * FROM (SELECT s.snapshot_id, s.device, t.service AS target, s.received, s.wall_ms AS wall,"
    " s.wall_trusted, s.seq, r.goroutines, r.heap_inuse, r.rss_kb, r.threads, s.nfindings AS findings,"
    " r.spool_dropped, s.size, s.boot_id, s.agent_version, s.board"
    " FROM snapshots s JOIN targets t ON t.id=s.target"
    " LEFT JOIN series r ON r.target=s.target AND r.t=s.t AND r.snap=s.id"
    " WHERE CAST(?1 AS TEXT) IS NULL OR s.device=?1 ORDER BY s.id DESC LIMIT ?2) x ORDER BY received, seq";

static const char FINDINGS[] =
    "SELECT f.device, t.service AS target, f.kind, f.confidence, f.state, f.function, f.file, f.line, f.count,"
    " f.max_count, f.growth_per_min, f.snapshots, f.first_seen, f.last_seen, f.fingerprint, f.evidence,"
    " f.created_by, t.pod, t.incarnation, f.value, f.status, f.id"
    " FROM findings f JOIN targets t ON t.id=f.target WHERE CAST(?1 AS TEXT) IS NULL OR f.device=?1"
    " ORDER BY f.last_seen DESC LIMIT ?2";

int store_q_list(coll_store *s, const char *what, const char *device, int limit, json_t **out)
{
    const char *sql = !strcmp(what, "devices")     ? DEVICES
                      : !strcmp(what, "snapshots") ? SNAPSHOTS
                      : !strcmp(what, "findings")  ? FINDINGS
                                                   : NULL;
    if (!sql)
        return STORE_Q_BADARG;
    sq *st = sq_prep(s, sql);
    if (!st)
        return -1;
    sq_text(st, 1, device);
    sq_i64(st, 2, limit > 0 ? limit : INT64_MAX); /* no limit, in both dialects */
    json_t *arr = json_array();
    int rc;
    while ((rc = sq_step(st)) == 1) {
        json_t *o = json_object();
        for (int i = 0; i < sq_ncols(st); i++) {
            json_t *v;
            switch (sq_type(st, i)) {
            case SQ_INT: v = json_integer(sq_int(st, i)); break;
            case SQ_REAL: v = json_real(sq_real(st, i)); break;
            case SQ_NULL: v = json_null(); break;
            default: {
                const char *txt = sq_str(st, i);
                v = json_string(txt ? txt : "");
                if (!v) /* not UTF-8 (a hostile name): keep the row, lose the bytes */
                    v = json_string("?");
            }
            }
            json_object_set_new(o, sq_name(st, i), v);
        }
        json_array_append_new(arr, o);
    }
    sq_done(st);
    if (rc != 0) {
        json_decref(arr);
        return -1;
    }
    *out = arr;
    return 0;
}
