/* store_pg_keys.c - device keys (store_keys.h) on PostgreSQL.
 *
 * No cache: ingest_identity reads the keys once per DTLS handshake (not per request), so each
 * lookup goes to the database and a revoke or rotate made through any node (or the CLI) holds
 * on every node from its next handshake on. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_pg_int.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void bin_to(const PGresult *r, int col, uint8_t *out, size_t *len)
{
    int n = PQgetlength(r, 0, col);
    *len = 0;
    if (!PQgetisnull(r, 0, col) && n > 0 && (size_t)n <= COLL_PSK_MAX) {
        memcpy(out, PQgetvalue(r, 0, col), (size_t)n);
        *len = (size_t)n;
    }
}

int store_pg_keys_get(store_pg *p, const char *device, store_key_state *k)
{
    memset(k, 0, sizeof(*k));
    pg_args a = {0};
    pga_text(&a, device);
    /* binary results: the keys as bytes, the integers as big-endian int8 */
    PGresult *r = pg_run_bin(p,
                             "SELECT psk, next_psk, coalesce(next_deadline,0), coalesce(revoked_at,0)"
                             " FROM device_keys WHERE device=$1",
                             &a, 1);
    if (!r)
        return -1;
    int ret = PQntuples(r) == 1;
    if (ret) {
        bin_to(r, 0, k->psk, &k->psk_len);
        bin_to(r, 1, k->next_psk, &k->next_len);
        for (int c = 2; c <= 3; c++) {
            const uint8_t *b = (const uint8_t *)PQgetvalue(r, 0, c);
            uint64_t x = 0;
            for (int i = 0; i < 8 && PQgetlength(r, 0, c) == 8; i++)
                x = x << 8 | b[i];
            *(c == 2 ? &k->next_deadline_ms : &k->revoked_ms) = (int64_t)x;
        }
        /* the key bytes in libpq's buffer: wiped before it is freed */
        for (int c = 0; c <= 1; c++)
            if (!PQgetisnull(r, 0, c))
                memset(PQgetvalue(r, 0, c), 0, (size_t)PQgetlength(r, 0, c));
    }
    PQclear(r);
    return ret;
}

/* ?1 device, ?2 blob (when given), ?3 v, ?4 now: the rows changed or -1 (as store_keys.c) */
static int write1(store_pg *p, const char *sql, const char *device, const uint8_t *blob, size_t len, int64_t v)
{
    pg_args a = {0};
    pga_text(&a, device);
    if (blob)
        pga_bin(&a, blob, len);
    else
        pga_null(&a);
    pga_i64(&a, v);
    pga_i64(&a, now_ms());
    PGresult *r = pg_run(p, sql, &a);
    if (!r)
        return -1;
    int n = atoi(PQcmdTuples(r));
    PQclear(r);
    return n;
}

int store_pg_keys_set(store_pg *p, const char *device, const uint8_t *psk, size_t len)
{
    return write1(p,
                  "INSERT INTO device_keys(device, psk, changed) SELECT $1, $2, $4 WHERE $3::bigint IS NOT NULL"
                  " ON CONFLICT(device) DO UPDATE SET psk=excluded.psk, next_psk=NULL, next_deadline=NULL,"
                  " revoked_at=NULL, changed=excluded.changed",
                  device, psk, len, 0) < 0
               ? -1
               : 0;
}

int store_pg_keys_rotate(store_pg *p, const char *device, const uint8_t *psk, size_t len, int64_t deadline_ms)
{
    return write1(p,
                  "UPDATE device_keys SET next_psk=$2, next_deadline=$3, changed=$4"
                  " WHERE device=$1 AND revoked_at IS NULL",
                  device, psk, len, deadline_ms);
}

int store_pg_keys_promote(store_pg *p, const char *device)
{
    return write1(p,
                  "UPDATE device_keys SET psk=next_psk, next_psk=NULL, next_deadline=NULL, changed=$4"
                  " WHERE device=$1 AND next_psk IS NOT NULL AND revoked_at IS NULL AND $2::bytea IS NULL"
                  " AND $3::bigint IS NOT NULL",
                  device, NULL, 0, 0);
}

int store_pg_keys_revoke(store_pg *p, const char *device, int64_t when_ms)
{
    return write1(p,
                  "UPDATE device_keys SET psk='', next_psk=NULL, next_deadline=NULL,"
                  " revoked_at=coalesce(revoked_at, $3), changed=$4 WHERE device=$1 AND $2::bytea IS NULL",
                  device, NULL, 0, when_ms);
}

int store_pg_keys_list(store_pg *p, int json, FILE *out)
{
    PGresult *r = pg_run(p,
                         "SELECT device, CASE WHEN revoked_at IS NOT NULL THEN 'revoked'"
                         " WHEN next_psk IS NOT NULL THEN 'rotating' ELSE 'active' END,"
                         " coalesce(revoked_at,0), coalesce(next_deadline,0) FROM device_keys ORDER BY device",
                         NULL);
    if (!r)
        return -1;
    int n = PQntuples(r);
    if (json)
        fputc('[', out);
    for (int i = 0; i < n; i++) {
        const char *dev = PQgetvalue(r, i, 0), *state = PQgetvalue(r, i, 1);
        long long rev = pg_i64(r, i, 2), dl = pg_i64(r, i, 3);
        if (json)
            fprintf(out, "%s{\"device\":\"%s\",\"state\":\"%s\",\"revoked_at\":%lld,\"next_deadline\":%lld}",
                    i ? "," : "", dev, state, rev, dl);
        else
            fprintf(out, "%-32s %-8s revoked_at=%lld next_deadline=%lld\n", dev, state, rev, dl);
    }
    if (json)
        fputs("]\n", out);
    PQclear(r);
    return n;
}
