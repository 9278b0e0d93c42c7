/* store_cmd.c - the SQLite side of the downlink command queue (store.h, "downlink commands"). */
#include <stdio.h>
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
