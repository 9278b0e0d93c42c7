/* store_cmd.c - the downlink command queue and the captures (store.h, "downlink commands"), on
 * either backend through store_sq.h: the queue is written a few times a minute, not per
 * snapshot, so one copy of its SQL serves SQLite and PostgreSQL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "store_sq.h"

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
    sq *st = sq_prep(s, "INSERT INTO commands(device, kind, target, seconds, created_ms, expiry_ms)"
                        " VALUES(?1,?2,?3,?4,?5,?6) RETURNING id");
    int rc = -1;
    if (st) {
        sq_text(st, 1, device);
        sq_i64(st, 2, c->kind);
        sq_text(st, 3, c->target);
        sq_i64(st, 4, c->seconds);
        sq_i64(st, 5, now_ms);
        sq_i64(st, 6, (int64_t)c->expiry_ms);
        rc = sq_exec(st, id);
    }
    sq_done(st);
    if (rc) {
        snprintf(err, errlen, "database: %s", store_errmsg(s));
        return -1;
    }
    return 0;
}

int store_cmd_due(coll_store *s, const char *device, int64_t now_ms, int64_t redeliver_ms, et_cmd_list *out)
{
    memset(out, 0, sizeof(*out));
    sq *st = sq_prep(s, "SELECT id, kind, target, seconds, expiry_ms FROM commands"
                        " WHERE device=?1 AND expiry_ms>?2 AND (delivered_ms IS NULL OR delivered_ms<=?3)"
                        " ORDER BY id LIMIT ?4");
    if (!st)
        return -1;
    sq_text(st, 1, device);
    sq_i64(st, 2, now_ms);
    sq_i64(st, 3, now_ms - redeliver_ms);
    sq_i64(st, 4, ET_CMD_MAX);
    int rc;
    while ((rc = sq_step(st)) == 1 && out->n < ET_CMD_MAX) {
        et_cmd *c = &out->c[out->n++];
        c->id = (uint64_t)sq_int(st, 0);
        c->kind = (uint8_t)sq_int(st, 1);
        const char *t = sq_str(st, 2);
        snprintf(c->target, sizeof(c->target), "%s", t ? t : "");
        c->seconds = (uint32_t)sq_int(st, 3);
        c->expiry_ms = (uint64_t)sq_int(st, 4);
    }
    sq_done(st);
    if (rc < 0)
        return -1;
    for (unsigned i = 0; i < out->n; i++) {
        if (!(st = sq_prep(s, "UPDATE commands SET delivered_ms=?1, deliveries=deliveries+1 WHERE id=?2")))
            return -1;
        sq_i64(st, 1, now_ms);
        sq_i64(st, 2, (int64_t)out->c[i].id);
        rc = sq_exec(st, NULL);
        sq_done(st);
        if (rc)
            return -1;
    }
    return (int)out->n;
}

/* One integer from a query with a text and an int64 parameter (text NULL: two int64s a, b). */
static int64_t count_q(coll_store *s, const char *sql, const char *text, int64_t a, int64_t b)
{
    sq *st = sq_prep(s, sql);
    int64_t v = -1;
    if (st) {
        if (text)
            sq_text(st, 1, text);
        else
            sq_i64(st, 1, a);
        sq_i64(st, 2, b);
        if (sq_step(st) == 1)
            v = sq_int(st, 0);
    }
    sq_done(st);
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
    sq *st = sq_prep(s, "SELECT device, service FROM targets WHERE id=?1");
    if (!st)
        return -1;
    sq_i64(st, 1, target);
    int rc = sq_step(st);
    if (rc == 1) {
        snprintf(device, sizeof(device), "%s", sq_str(st, 0));
        snprintf(c.target, sizeof(c.target), "%s", sq_str(st, 1));
    }
    sq_done(st);
    if (rc != 1)
        return rc == 0 ? STORE_Q_NOTFOUND : -1;
    if (finding > 0) {
        /* a capture linked to a finding is evidence of it: it must be of the finding's target */
        if (!(st = sq_prep(s, "SELECT target FROM findings WHERE id=?1")))
            return -1;
        sq_i64(st, 1, finding);
        rc = sq_step(st);
        int64_t ft = rc == 1 ? sq_int(st, 0) : 0;
        sq_done(st);
        if (rc < 0)
            return -1;
        if (ft != target) {
            snprintf(err, errlen, "finding %lld is not a finding of target %lld", (long long)finding,
                     (long long)target);
            return STORE_Q_BADARG;
        }
    }
    /* both limits protect the gateway's CPU and its metered link */
    int64_t active = count_q(s, "SELECT count(*) FROM commands WHERE target_id=?1 AND expiry_ms>?2 AND uploaded_ms IS NULL",
                             NULL, target, now_ms);
    if (active < 0)
        return -1;
    if (active > 0) {
        snprintf(err, errlen, "a capture of this target is already in flight");
        return STORE_Q_LIMIT;
    }
    int64_t hour = count_q(s, "SELECT count(*) FROM commands WHERE device=?1 AND target_id IS NOT NULL AND created_ms>?2",
                           device, 0, now_ms - 3600 * 1000LL);
    if (hour < 0)
        return -1;
    if (hour >= per_hour) {
        snprintf(err, errlen, "device %s had %lld captures in the last hour (limit %d)", device, (long long)hour,
                 per_hour);
        return STORE_Q_LIMIT;
    }
    if (store_cmd_add(s, device, &c, now_ms, id, err, errlen))
        return STORE_Q_BADARG;
    if (!(st = sq_prep(s, "UPDATE commands SET target_id=?1, finding=?2 WHERE id=?3")))
        return -1;
    sq_i64(st, 1, target);
    if (finding > 0)
        sq_i64(st, 2, finding);
    else
        sq_text(st, 2, NULL);
    sq_i64(st, 3, *id);
    rc = sq_exec(st, NULL);
    sq_done(st);
    return rc == 0 ? STORE_Q_OK : -1;
}

int store_cmd_started(coll_store *s, const char *device, uint64_t id, int64_t now_ms)
{
    sq *st = sq_prep(s, "UPDATE commands SET started_ms=?1 WHERE id=?2 AND device=?3 AND started_ms IS NULL"
                        " RETURNING id");
    if (!st)
        return -1;
    sq_i64(st, 1, now_ms);
    sq_i64(st, 2, (int64_t)id);
    sq_text(st, 3, device);
    int rc = sq_step(st); /* a row: this report set it */
    sq_done(st);
    return rc;
}

#define CAPTURE_COLS                                                                                                  \
    "SELECT id, device, target_id, finding, kind, seconds, created_ms, delivered_ms, expiry_ms, deliveries,"          \
    " uploaded_ms, cut, error, length(data), started_ms FROM commands"

static json_t *opt_int(sq *st, int col) { return sq_isnull(st, col) ? json_null() : json_integer(sq_int(st, col)); }

/* One row of CAPTURE_COLS as the API shows it (store.h, store_q_capture). */
static json_t *capture_json(sq *st, int64_t now_ms)
{
    int delivered = !sq_isnull(st, 7);
    int64_t expiry = sq_int(st, 8);
    int uploaded = !sq_isnull(st, 10);
    int started = !sq_isnull(st, 14);
    const char *error = sq_str(st, 12);
    /* a result ends it; without one, the expiry does (the agent skips an expired command) */
    const char *state = uploaded       ? (error && *error ? "failed" : "uploaded")
                        : expiry <= now_ms ? "expired"
                        : started          ? "running"
                        : delivered        ? "delivered"
                                           : "queued";
    json_t *o = json_pack("{s:I,s:s,s:I,s:s,s:I,s:s,s:I,s:I}", "id", (json_int_t)sq_int(st, 0), "device",
                          sq_str(st, 1), "target", (json_int_t)sq_int(st, 2), "kind",
                          et_cmd_kind_name((unsigned)sq_int(st, 4)), "seconds", (json_int_t)sq_int(st, 5), "state",
                          state, "created_ms", (json_int_t)sq_int(st, 6), "expiry_ms", (json_int_t)expiry);
    if (o) {
        json_object_set_new(o, "finding", opt_int(st, 3));
        json_object_set_new(o, "delivered_ms", opt_int(st, 7));
        json_object_set_new(o, "deliveries", json_integer(sq_int(st, 9)));
        json_object_set_new(o, "started_ms", opt_int(st, 14));
        json_object_set_new(o, "uploaded_ms", opt_int(st, 10));
        json_object_set_new(o, "cut", json_boolean(sq_int(st, 11)));
        json_object_set_new(o, "error", json_string(error ? error : ""));
        json_object_set_new(o, "bytes", json_integer(sq_int(st, 13)));
    }
    return o;
}

int store_q_capture(coll_store *s, int64_t id, int64_t now_ms, json_t **out)
{
    *out = NULL;
    sq *st = sq_prep(s, CAPTURE_COLS " WHERE id=?1 AND target_id IS NOT NULL");
    if (!st)
        return -1;
    sq_i64(st, 1, id);
    int rc = sq_step(st);
    json_t *o = rc == 1 ? capture_json(st, now_ms) : NULL;
    sq_done(st);
    if (rc != 1)
        return rc == 0 ? STORE_Q_NOTFOUND : -1;
    *out = o;
    return o ? STORE_Q_OK : -1;
}

/* The captures of one finding or one target (sql: CAPTURE_COLS with a WHERE on ?1), newest first. */
static int captures_where(coll_store *s, const char *sql, int64_t id, int64_t now_ms, json_t **out)
{
    *out = NULL;
    sq *st = sq_prep(s, sql);
    if (!st)
        return -1;
    sq_i64(st, 1, id);
    json_t *a = json_array();
    int rc = -1;
    while (a && (rc = sq_step(st)) == 1)
        json_array_append_new(a, capture_json(st, now_ms));
    sq_done(st);
    if (!a || rc != 0) {
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
    sq *st = sq_prep(s, "SELECT CASE WHEN uploaded_ms IS NULL THEN 0 ELSE 1 END FROM commands"
                        " WHERE id=?1 AND device=?2");
    if (!st)
        return -1;
    sq_i64(st, 1, (int64_t)cap->cmd_id);
    sq_text(st, 2, device);
    int rc = sq_step(st);
    int64_t have = rc == 1 ? sq_int(st, 0) : -1;
    sq_done(st);
    if (rc == 0)
        return STORE_Q_NOTFOUND;
    if (rc != 1)
        return -1;
    if (have)
        return STORE_DUPLICATE;
    if (!(st = sq_prep(s, "UPDATE commands SET uploaded_ms=?1, cut=?2, error=?3, data=?4 WHERE id=?5")))
        return -1;
    sq_i64(st, 1, received_ms);
    sq_i64(st, 2, cap->cut != 0);
    sq_text(st, 3, cap->error);
    sq_blob(st, 4, cap->data, cap->len);
    sq_i64(st, 5, (int64_t)cap->cmd_id);
    rc = sq_exec(st, NULL);
    sq_done(st);
    return rc == 0 ? STORE_NEW : -1;
}

int store_capture_data(coll_store *s, int64_t id, uint8_t **data, size_t *len, unsigned *kind)
{
    *data = NULL;
    *len = 0;
    sq *st = sq_prep(s, "SELECT data, kind FROM commands WHERE id=?1 AND target_id IS NOT NULL"
                        " AND uploaded_ms IS NOT NULL AND (error IS NULL OR error='')");
    if (!st)
        return -1;
    sq_i64(st, 1, id);
    int rc = sq_step(st);
    if (rc == 1) {
        size_t n = 0;
        const void *b = sq_bytes(st, 0, &n);
        *data = malloc(n ? n : 1);
        if (*data && n && b)
            memcpy(*data, b, n);
        *len = n;
        *kind = (unsigned)sq_int(st, 1);
    }
    sq_done(st);
    if (rc == 0)
        return STORE_Q_NOTFOUND;
    return rc == 1 && *data ? STORE_Q_OK : -1;
}
