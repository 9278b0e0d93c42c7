/* store_cmd.c - the SQLite side of the downlink command queue (store.h, "downlink commands"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

int store_cmd_add(coll_store *s, const char *device, const et_cmd *c, int64_t now_ms, int64_t *id, char *err,
                  size_t errlen)
{
    /* the wire rules, once here, so nothing undeliverable sits in the queue */
    et_cmd_list one = {.n = 1};
    one.c[0] = *c;
    one.c[0].id = 1;
    uint8_t buf[ET_CMD_DOC_MAX];
    size_t n;
    if (et_cmd_encode(&one, buf, sizeof buf, &n, err, errlen))
        return -1;
    if (c->expiry_ms <= (uint64_t)now_ms) {
        snprintf(err, errlen, "expiry is in the past");
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO commands(device, kind, target, seconds, created_ms, expiry_ms)"
                                " VALUES(?,?,?,?,?,?)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, c->kind);
        sqlite3_bind_text(st, 3, c->target, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, c->seconds);
        sqlite3_bind_int64(st, 5, now_ms);
        sqlite3_bind_int64(st, 6, (int64_t)c->expiry_ms);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    *id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int store_cmd_due(coll_store *s, const char *device, int64_t now_ms, int64_t redeliver_ms, et_cmd_list *out)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, kind, target, seconds, expiry_ms FROM commands"
                           " WHERE device=? AND expiry_ms>? AND (delivered_ms IS NULL OR delivered_ms<=?)"
                           " ORDER BY id LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    sqlite3_bind_int64(st, 3, now_ms - redeliver_ms);
    sqlite3_bind_int(st, 4, ET_CMD_MAX);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && out->n < ET_CMD_MAX) {
        et_cmd *c = &out->c[out->n++];
        c->id = (uint64_t)sqlite3_column_int64(st, 0);
        c->kind = (uint8_t)sqlite3_column_int(st, 1);
        const unsigned char *t = sqlite3_column_text(st, 2);
        snprintf(c->target, sizeof(c->target), "%s", t ? (const char *)t : "");
        c->seconds = (uint32_t)sqlite3_column_int64(st, 3);
        c->expiry_ms = (uint64_t)sqlite3_column_int64(st, 4);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    if (!out->n)
        return 0;
    if (sqlite3_prepare_v2(s->db, "UPDATE commands SET delivered_ms=?, deliveries=deliveries+1 WHERE id=?", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    rc = SQLITE_DONE;
    for (unsigned i = 0; i < out->n && rc == SQLITE_DONE; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, now_ms);
        sqlite3_bind_int64(st, 2, (int64_t)out->c[i].id);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? (int)out->n : -1;
}

/* One integer from a query with up to two int64 parameters; -1 on error. */
static int64_t count_q(coll_store *s, const char *sql, int64_t a, int64_t b)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, a);
        sqlite3_bind_int64(st, 2, b);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

int store_capture_add(coll_store *s, int64_t target, unsigned kind, unsigned seconds, int64_t finding, int64_t now_ms,
                      int64_t ttl_ms, int per_hour, int64_t *id, char *err, size_t errlen)
{
    if (kind < ET_CMD_TRACE || kind > ET_CMD_HEAP) {
        snprintf(err, errlen, "not a capture kind");
        return STORE_Q_BADARG;
    }
    et_cmd c = {.kind = (uint8_t)kind, .seconds = seconds, .expiry_ms = (uint64_t)(now_ms + ttl_ms)};
    char device[COLL_ID_MAX] = "";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT device, service FROM targets WHERE id=?", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, target);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        snprintf(device, sizeof(device), "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(c.target, sizeof(c.target), "%s", (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? STORE_Q_NOTFOUND : -1;
    if (finding > 0) {
        /* a capture linked to a finding is evidence of it: it must be of the finding's target */
        int64_t ft = count_q(s, "SELECT coalesce((SELECT target FROM findings WHERE id=?), 0)", finding, 0);
        if (ft < 0)
            return -1;
        if (ft != target) {
            snprintf(err, errlen, "finding %lld is not a finding of target %lld", (long long)finding,
                     (long long)target);
            return STORE_Q_BADARG;
        }
    }
    /* both limits protect the gateway's CPU and its metered link */
    int64_t active = count_q(s, "SELECT count(*) FROM commands WHERE target_id=? AND expiry_ms>? AND uploaded_ms IS NULL", target, now_ms);
    if (active < 0)
        return -1;
    if (active > 0) {
        snprintf(err, errlen, "a capture of this target is already in flight");
        return STORE_Q_LIMIT;
    }
    if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM commands WHERE device=? AND target_id IS NOT NULL"
                                  " AND created_ms>?", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms - 3600 * 1000LL);
    int64_t hour = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    if (hour < 0)
        return -1;
    if (hour >= per_hour) {
        snprintf(err, errlen, "device %s had %lld captures in the last hour (limit %d)", device, (long long)hour,
                 per_hour);
        return STORE_Q_LIMIT;
    }
    if (store_cmd_add(s, device, &c, now_ms, id, err, errlen))
        return STORE_Q_BADARG;
    if (sqlite3_prepare_v2(s->db, "UPDATE commands SET target_id=?, finding=? WHERE id=?", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, target);
    if (finding > 0)
        sqlite3_bind_int64(st, 2, finding);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_int64(st, 3, *id);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? STORE_Q_OK : -1;
}

int store_cmd_started(coll_store *s, const char *device, uint64_t id, int64_t now_ms)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "UPDATE commands SET started_ms=? WHERE id=? AND device=? AND started_ms IS NULL", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, (int64_t)id);
    sqlite3_bind_text(st, 3, device, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? sqlite3_changes(s->db) > 0 : -1;
}

#define CAPTURE_COLS                                                                                                  \
    "SELECT id, device, target_id, finding, kind, seconds, created_ms, delivered_ms, expiry_ms, deliveries,"          \
    " uploaded_ms, cut, error, length(data), started_ms FROM commands"

static json_t *opt_int(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? json_null() : json_integer(sqlite3_column_int64(st, col));
}

/* One row of CAPTURE_COLS as the API shows it (store.h, store_q_capture). */
static json_t *capture_json(sqlite3_stmt *st, int64_t now_ms)
{
    int delivered = sqlite3_column_type(st, 7) != SQLITE_NULL;
    int64_t expiry = sqlite3_column_int64(st, 8);
    int uploaded = sqlite3_column_type(st, 10) != SQLITE_NULL;
    int started = sqlite3_column_type(st, 14) != SQLITE_NULL;
    const unsigned char *error = sqlite3_column_text(st, 12);
    /* a result ends it; without one, the expiry does (the agent skips an expired command) */
    const char *state = uploaded       ? (error && *error ? "failed" : "uploaded")
                        : expiry <= now_ms ? "expired"
                        : started          ? "running"
                        : delivered        ? "delivered"
                                           : "queued";
    json_t *o = json_pack("{s:I,s:s,s:I,s:s,s:I,s:s,s:I,s:I}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                          "device", (const char *)sqlite3_column_text(st, 1), "target",
                          (json_int_t)sqlite3_column_int64(st, 2), "kind",
                          et_cmd_kind_name((unsigned)sqlite3_column_int(st, 4)), "seconds",
                          (json_int_t)sqlite3_column_int64(st, 5), "state", state, "created_ms",
                          (json_int_t)sqlite3_column_int64(st, 6), "expiry_ms", (json_int_t)expiry);
    if (o) {
        json_object_set_new(o, "finding", opt_int(st, 3));
        json_object_set_new(o, "delivered_ms", opt_int(st, 7));
        json_object_set_new(o, "deliveries", json_integer(sqlite3_column_int64(st, 9)));
        json_object_set_new(o, "started_ms", opt_int(st, 14));
        json_object_set_new(o, "uploaded_ms", opt_int(st, 10));
        json_object_set_new(o, "cut", json_boolean(sqlite3_column_int(st, 11)));
        json_object_set_new(o, "error", json_string(error ? (const char *)error : ""));
        json_object_set_new(o, "bytes", json_integer(sqlite3_column_int64(st, 13)));
    }
    return o;
}

int store_q_capture(coll_store *s, int64_t id, int64_t now_ms, json_t **out)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, CAPTURE_COLS " WHERE id=? AND target_id IS NOT NULL", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    json_t *o = rc == SQLITE_ROW ? capture_json(st, now_ms) : NULL;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? STORE_Q_NOTFOUND : -1;
    *out = o;
    return o ? STORE_Q_OK : -1;
}

/* The captures of one finding or one target (sql: CAPTURE_COLS with a WHERE on ?1), newest first. */
static int captures_where(coll_store *s, const char *sql, int64_t id, int64_t now_ms, json_t **out)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    json_t *a = json_array();
    int rc;
    while (a && (rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(a, capture_json(st, now_ms));
    sqlite3_finalize(st);
    if (!a || rc != SQLITE_DONE) {
        json_decref(a);
        return -1;
    }
    *out = a;
    return 0;
}

int store_q_finding_captures(coll_store *s, int64_t id, int64_t now_ms, json_t **out)
{
    return captures_where(s, CAPTURE_COLS " WHERE finding=?1 AND target_id IS NOT NULL ORDER BY id DESC LIMIT 50",
                          id, now_ms, out);
}

int store_q_target_captures(coll_store *s, int64_t id, int64_t now_ms, json_t **out)
{
    return captures_where(s, CAPTURE_COLS " WHERE target_id=?1 ORDER BY id DESC LIMIT 20", id, now_ms, out);
}

int store_capture_put(coll_store *s, const char *device, const et_capture *cap, int64_t received_ms)
{
    int64_t have = -1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT uploaded_ms IS NOT NULL FROM commands WHERE id=? AND device=?", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, (int64_t)cap->cmd_id);
    sqlite3_bind_text(st, 2, device, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        have = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return STORE_Q_NOTFOUND;
    if (rc != SQLITE_ROW)
        return -1;
    if (have)
        return STORE_DUPLICATE;
    if (sqlite3_prepare_v2(s->db, "UPDATE commands SET uploaded_ms=?, cut=?, error=?, data=? WHERE id=?", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, received_ms);
    sqlite3_bind_int(st, 2, cap->cut != 0);
    sqlite3_bind_text(st, 3, cap->error, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, cap->len ? (const void *)cap->data : "", (int)cap->len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (int64_t)cap->cmd_id);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? STORE_NEW : -1;
}

int store_capture_data(coll_store *s, int64_t id, uint8_t **data, size_t *len, unsigned *kind)
{
    *data = NULL;
    *len = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT data, kind FROM commands WHERE id=? AND target_id IS NOT NULL"
                           " AND uploaded_ms IS NOT NULL AND (error IS NULL OR error='')",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        *data = malloc(n ? n : 1);
        if (*data && n)
            memcpy(*data, sqlite3_column_blob(st, 0), n);
        *len = n;
        *kind = (unsigned)sqlite3_column_int(st, 1);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return STORE_Q_NOTFOUND;
    return rc == SQLITE_ROW && *data ? STORE_Q_OK : -1;
}
