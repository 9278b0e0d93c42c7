/* store_keys.c - device keys: current, next (rotation) and revocation (see store_keys.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store_int.h"
#include "store_keys.h"
#include "store_pg_int.h"

static const char KEYS_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS device_keys("
    "  device TEXT PRIMARY KEY, psk BLOB NOT NULL, next_psk BLOB, next_deadline INTEGER,"
    "  revoked_at INTEGER, changed INTEGER);"
    /* databases provisioned before this table: their keys move over once */
    "INSERT OR IGNORE INTO device_keys(device, psk) SELECT id, psk FROM devices;";

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 0600 on an existing regular file we own, by path (see store_keys_init); not a symlink. */
static void tighten_path(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 0777) != 0600)
        chmod(path, 0600);
}

/* 0600 on an existing file we own; absent files are fine. Opens the file: only for use before
 * SQLite has it open in this process. */
static int tighten(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 0777) != 0600)
        rc = fchmod(fd, 0600);
    close(fd);
    return rc;
}

int store_keys_prepare_file(const char *path, char *err, size_t errlen)
{
    if (store_is_pg_url(path))
        return 0; /* no file: the keys' protection is the database's access control */
    if (!path[0] || !strcmp(path, ":memory:") || !strncmp(path, "file:", 5))
        return 0;
    /* Created here with 0600 before SQLite creates it with 0644 & ~umask; SQLite then gives
     * the -wal and -shm files the database's mode. */
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    close(fd);
    if (tighten(path)) {
        snprintf(err, errlen, "%s: cannot make it 0600: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int store_keys_init(coll_store *s)
{
    sqlite3 *db = store_db(s);
    if (sqlite3_exec(db, KEYS_SCHEMA, NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    /* Whoever opened the store, its files end up 0600 (the window before this is closed by
     * store_keys_prepare_file in the commands that create databases). By path, never by
     * opening them: closing any descriptor of a file drops every POSIX lock this process holds
     * on it, SQLite's included, and SQLite would then delete a WAL that another process (the
     * running collector) still uses. */
    const char *path = sqlite3_db_filename(db, "main");
    if (path && path[0]) {
        char p[4096];
        tighten_path(path);
        snprintf(p, sizeof(p), "%s-wal", path);
        tighten_path(p);
        snprintf(p, sizeof(p), "%s-shm", path);
        tighten_path(p);
    }
    return 0;
}

void store_keys_wipe(store_key_state *k)
{
    explicit_bzero(k, sizeof(*k));
}

void store_keys_forget(sqlite3_stmt **cache)
{
    sqlite3_finalize(*cache);
    *cache = NULL;
}

static void blob_to(sqlite3_stmt *st, int col, uint8_t *out, size_t *len)
{
    int n = sqlite3_column_bytes(st, col);
    const void *b = sqlite3_column_blob(st, col);
    *len = 0;
    if (b && n > 0 && (size_t)n <= COLL_PSK_MAX) {
        memcpy(out, b, (size_t)n);
        *len = (size_t)n;
    }
}

int store_keys_get(coll_store *s, const char *device, store_key_state *k, sqlite3_stmt **cache)
{
    if (s->pg)
        return store_pg_keys_get(s->pg, device, k);
    sqlite3_stmt *st = cache ? *cache : NULL;
    memset(k, 0, sizeof(*k));
    if (!st && sqlite3_prepare_v3(store_db(s),
                                  "SELECT psk, next_psk, coalesce(next_deadline,0), coalesce(revoked_at,0)"
                                  " FROM device_keys WHERE device=?1",
                                  -1, cache ? SQLITE_PREPARE_PERSISTENT : 0, &st, NULL) != SQLITE_OK)
        return -1;
    if (cache)
        *cache = st;
    sqlite3_bind_text(st, 1, device, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st), ret;
    if (rc == SQLITE_ROW) {
        blob_to(st, 0, k->psk, &k->psk_len);
        blob_to(st, 1, k->next_psk, &k->next_len);
        k->next_deadline_ms = sqlite3_column_int64(st, 2);
        k->revoked_ms = sqlite3_column_int64(st, 3);
        ret = 1;
    } else {
        ret = rc == SQLITE_DONE ? 0 : -1;
    }
    /* reset at once: SQLite's page cache may still hold the key bytes, but no statement row */
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (!cache)
        sqlite3_finalize(st);
    return ret;
}

/* Runs one write statement with ?1 device, ?2 blob (when given), ?3 v and ?4 the time now
 * (a statement may leave some unused); returns the number of rows changed or -1. */
static int write1(coll_store *s, const char *sql, const char *device, const uint8_t *blob, size_t len, int64_t v)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
    if (blob)
        sqlite3_bind_blob(st, 2, blob, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, v);
    sqlite3_bind_int64(st, 4, now_ms());
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? sqlite3_changes(store_db(s)) : -1;
}

int store_keys_set(coll_store *s, const char *device, const uint8_t *psk, size_t len)
{
    if (s->pg)
        return store_pg_keys_set(s->pg, device, psk, len);
    return write1(s,
                  "INSERT INTO device_keys(device, psk, changed) VALUES(?1, ?2, ?4)"
                  " ON CONFLICT(device) DO UPDATE SET psk=excluded.psk, next_psk=NULL, next_deadline=NULL,"
                  " revoked_at=NULL, changed=excluded.changed",
                  device, psk, len, 0) < 0
               ? -1
               : 0;
}

int store_keys_rotate(coll_store *s, const char *device, const uint8_t *psk, size_t len, int64_t deadline_ms)
{
    if (s->pg)
        return store_pg_keys_rotate(s->pg, device, psk, len, deadline_ms);
    return write1(s,
                  "UPDATE device_keys SET next_psk=?2, next_deadline=?3, changed=?4"
                  " WHERE device=?1 AND revoked_at IS NULL",
                  device, psk, len, deadline_ms);
}

int store_keys_promote(coll_store *s, const char *device)
{
    if (s->pg)
        return store_pg_keys_promote(s->pg, device);
    return write1(s,
                  "UPDATE device_keys SET psk=next_psk, next_psk=NULL, next_deadline=NULL, changed=?4"
                  " WHERE device=?1 AND next_psk IS NOT NULL AND revoked_at IS NULL",
                  device, NULL, 0, 0);
}

int store_keys_revoke(coll_store *s, const char *device, int64_t when_ms)
{
    if (s->pg)
        return store_pg_keys_revoke(s->pg, device, when_ms);
    /* the keys are erased, not kept beside the flag: a revoked key has no use left */
    return write1(s,
                  "UPDATE device_keys SET psk=zeroblob(0), next_psk=NULL, next_deadline=NULL,"
                  " revoked_at=coalesce(revoked_at, ?3), changed=?4 WHERE device=?1",
                  device, NULL, 0, when_ms);
}

int store_keys_list(coll_store *s, int json, FILE *out)
{
    if (s->pg)
        return store_pg_keys_list(s->pg, json, out);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(store_db(s),
                           "SELECT device, CASE WHEN revoked_at IS NOT NULL THEN 'revoked'"
                           " WHEN next_psk IS NOT NULL THEN 'rotating' ELSE 'active' END,"
                           " revoked_at, next_deadline, changed FROM device_keys ORDER BY device",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    int n = 0;
    if (json)
        fputc('[', out);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *dev = (const char *)sqlite3_column_text(st, 0);
        const char *state = (const char *)sqlite3_column_text(st, 1);
        if (json) {
            /* device ids are [A-Za-z0-9._:-] (provision checks), so no escaping is needed */
            fprintf(out, "%s{\"device\":\"%s\",\"state\":\"%s\",\"revoked_at\":%lld,\"next_deadline\":%lld}",
                    n ? "," : "", dev, state, (long long)sqlite3_column_int64(st, 2),
                    (long long)sqlite3_column_int64(st, 3));
        } else {
            fprintf(out, "%-32s %-8s revoked_at=%lld next_deadline=%lld\n", dev, state,
                    (long long)sqlite3_column_int64(st, 2), (long long)sqlite3_column_int64(st, 3));
        }
        n++;
    }
    if (json)
        fputs("]\n", out);
    sqlite3_finalize(st);
    return n;
}
