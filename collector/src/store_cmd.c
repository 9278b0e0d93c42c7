/* store_cmd.c - the SQLite side of the downlink command queue (store.h, "downlink commands"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "store_pg_int.h"

int store_cmd_add(coll_store *s, const char *device, const et_cmd *c, int64_t now_ms, int64_t *id, char *err,
                  size_t errlen)
{
    if (s->pg) {
        snprintf(err, errlen, "commands: not on the PostgreSQL backend yet");
        return store_pg_unsupported(s->pg, "commands");
    }
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
    if (s->pg)
        return 0; /* no downlink commands on PostgreSQL yet: none due */
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
    if (s->pg) {
        snprintf(err, errlen, "captures: not on the PostgreSQL backend yet");
        return store_pg_unsupported(s->pg, "captures");
    }
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

int store_q_capture(coll_store *s, int64_t id, int64_t now_ms, json_t **out)
{
    if (s->pg)
        return store_pg_unsupported(s->pg, "captures");
    *out = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT device, target_id, finding, kind, seconds, created_ms, delivered_ms, expiry_ms,"
                           " deliveries, uploaded_ms, cut, error, length(data) FROM commands"
                           " WHERE id=? AND target_id IS NOT NULL",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? STORE_Q_NOTFOUND : -1;
    }
    int delivered = sqlite3_column_type(st, 6) != SQLITE_NULL;
    int64_t expiry = sqlite3_column_int64(st, 7);
    int uploaded = sqlite3_column_type(st, 9) != SQLITE_NULL;
    const unsigned char *error = sqlite3_column_text(st, 11);
    const char *state = uploaded ? (error && *error ? "failed" : "done")
                        : delivered ? "delivered"
                        : expiry <= now_ms ? "expired"
                                           : "queued";
    json_t *o = json_pack("{s:I,s:s,s:I,s:s,s:I,s:s,s:I,s:I}", "id", (json_int_t)id, "device",
                          (const char *)sqlite3_column_text(st, 0), "target", (json_int_t)sqlite3_column_int64(st, 1),
                          "kind", et_cmd_kind_name((unsigned)sqlite3_column_int(st, 3)), "seconds",
                          (json_int_t)sqlite3_column_int64(st, 4), "state", state, "created_ms",
                          (json_int_t)sqlite3_column_int64(st, 5), "expiry_ms", (json_int_t)expiry);
    if (o) {
        json_object_set_new(o, "finding",
                            sqlite3_column_type(st, 2) == SQLITE_NULL ? json_null()
                                                                       : json_integer(sqlite3_column_int64(st, 2)));
        json_object_set_new(o, "delivered_ms", delivered ? json_integer(sqlite3_column_int64(st, 6)) : json_null());
        json_object_set_new(o, "deliveries", json_integer(sqlite3_column_int64(st, 8)));
        json_object_set_new(o, "uploaded_ms", uploaded ? json_integer(sqlite3_column_int64(st, 9)) : json_null());
        json_object_set_new(o, "cut", json_boolean(sqlite3_column_int(st, 10)));
        json_object_set_new(o, "error", json_string(error ? (const char *)error : ""));
        json_object_set_new(o, "bytes", json_integer(sqlite3_column_int64(st, 12)));
    }
    sqlite3_finalize(st);
    *out = o;
    return o ? STORE_Q_OK : -1;
}

int store_capture_put(coll_store *s, const char *device, const et_capture *cap, int64_t received_ms)
{
    if (s->pg)
        return store_pg_unsupported(s->pg, "captures");
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
    if (s->pg)
        return store_pg_unsupported(s->pg, "captures");
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
