/* store_sq.c - store_sq.h on SQLite (a prepared statement) and on PostgreSQL (PQexecParams with
 * text parameters, run at the first sq_step; the rows are read from its result). */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "store_pg_int.h"
#include "store_sq.h"

#define SQ_MAXP 16

struct sq {
    coll_store *s;
    sqlite3_stmt *st;
    /* PostgreSQL */
    char *sql;
    int n, ran, row;
    const char *v[SQ_MAXP];
    int len[SQ_MAXP], fmt[SQ_MAXP];
    char buf[SQ_MAXP][24];
    PGresult *r;
    unsigned char *unesc;
};

/* ?N -> $N outside string literals */
static char *pg_sql(const char *sql)
{
    size_t n = strlen(sql);
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    int quoted = 0;
    for (size_t i = 0; i <= n; i++) {
        if (sql[i] == '\'')
            quoted = !quoted;
        o[i] = !quoted && sql[i] == '?' ? '$' : sql[i];
    }
    return o;
}

sq *sq_prep(coll_store *s, const char *sql)
{
    sq *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->s = s;
    if (s->pg) {
        if (!(q->sql = pg_sql(sql))) {
            free(q);
            return NULL;
        }
        return q;
    }
    if (sqlite3_prepare_v2(s->db, sql, -1, &q->st, NULL) != SQLITE_OK) {
        free(q);
        return NULL;
    }
    return q;
}

static int slot(sq *q, int i)
{
    if (i < 1 || i > SQ_MAXP)
        abort(); /* a programming error: no query here has that many parameters */
    if (i > q->n) {
        for (int k = q->n; k < i; k++)
            q->v[k] = NULL, q->len[k] = 0, q->fmt[k] = 0;
        q->n = i;
    }
    return i - 1;
}

void sq_text(sq *q, int i, const char *v)
{
    if (q->st) {
        sqlite3_bind_text(q->st, i, v, -1, SQLITE_STATIC);
        return;
    }
    int k = slot(q, i);
    q->v[k] = v;
    q->fmt[k] = 0;
}

void sq_i64(sq *q, int i, int64_t v)
{
    if (q->st) {
        sqlite3_bind_int64(q->st, i, v);
        return;
    }
    int k = slot(q, i);
    snprintf(q->buf[k], sizeof(q->buf[k]), "%lld", (long long)v);
    q->v[k] = q->buf[k];
    q->fmt[k] = 0;
}

void sq_blob(sq *q, int i, const void *p, size_t n)
{
    if (q->st) {
        sqlite3_bind_blob(q->st, i, n ? p : "", (int)n, SQLITE_STATIC);
        return;
    }
    int k = slot(q, i);
    q->v[k] = n ? p : "";
    q->len[k] = (int)n;
    q->fmt[k] = 1;
}

int sq_step(sq *q)
{
    if (q->st) {
        int rc = sqlite3_step(q->st);
        return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    }
    if (!q->ran) {
        pg_args a = {.n = q->n};
        for (int k = 0; k < q->n; k++) {
            a.v[k] = q->v[k];
            a.len[k] = q->len[k];
            a.fmt[k] = q->fmt[k];
        }
        q->ran = 1;
        q->row = -1;
        if (!(q->r = pg_run(q->s->pg, q->sql, &a)))
            return -1;
    }
    if (!q->r)
        return -1;
    PQfreemem(q->unesc);
    q->unesc = NULL;
    return ++q->row < PQntuples(q->r) ? 1 : 0;
}

int sq_ncols(sq *q) { return q->st ? sqlite3_column_count(q->st) : PQnfields(q->r); }
const char *sq_name(sq *q, int c) { return q->st ? sqlite3_column_name(q->st, c) : PQfname(q->r, c); }

int sq_isnull(sq *q, int c)
{
    return q->st ? sqlite3_column_type(q->st, c) == SQLITE_NULL : PQgetisnull(q->r, q->row, c);
}

int sq_type(sq *q, int c)
{
    if (q->st) {
        switch (sqlite3_column_type(q->st, c)) {
        case SQLITE_INTEGER: return SQ_INT;
        case SQLITE_FLOAT: return SQ_REAL;
        case SQLITE_NULL: return SQ_NULL;
        default: return SQ_TEXT;
        }
    }
    if (PQgetisnull(q->r, q->row, c))
        return SQ_NULL;
    switch (PQftype(q->r, c)) { /* pg_type oids */
    case 16: case 20: case 21: case 23: return SQ_INT; /* bool, int8, int2, int4 */
    case 700: case 701: case 1700: return SQ_REAL;   /* float4, float8, numeric */
    default: return SQ_TEXT;
    }
}

int64_t sq_int(sq *q, int c)
{
    if (q->st)
        return sqlite3_column_int64(q->st, c);
    if (PQgetisnull(q->r, q->row, c))
        return 0;
    const char *v = PQgetvalue(q->r, q->row, c);
    if (PQftype(q->r, c) == 16)
        return v[0] == 't';
    return strtoll(v, NULL, 10);
}

double sq_real(sq *q, int c)
{
    if (q->st)
        return sqlite3_column_double(q->st, c);
    return PQgetisnull(q->r, q->row, c) ? 0 : strtod(PQgetvalue(q->r, q->row, c), NULL);
}

const char *sq_str(sq *q, int c)
{
    if (q->st)
        return (const char *)sqlite3_column_text(q->st, c);
    return PQgetisnull(q->r, q->row, c) ? NULL : PQgetvalue(q->r, q->row, c);
}

const void *sq_bytes(sq *q, int c, size_t *n)
{
    if (q->st) {
        *n = (size_t)sqlite3_column_bytes(q->st, c);
        return sqlite3_column_blob(q->st, c);
    }
    *n = 0;
    if (PQgetisnull(q->r, q->row, c))
        return NULL;
    /* bytea in text format ("\x..."): decoded for the caller */
    PQfreemem(q->unesc);
    q->unesc = PQunescapeBytea((const unsigned char *)PQgetvalue(q->r, q->row, c), n);
    return q->unesc;
}

void sq_done(sq *q)
{
    if (!q)
        return;
    sqlite3_finalize(q->st);
    PQclear(q->r);
    PQfreemem(q->unesc);
    free(q->sql);
    free(q);
}

int sq_exec(sq *q, int64_t *id)
{
    int rc;
    while ((rc = sq_step(q)) == 1)
        if (id)
            *id = sq_int(q, 0);
    return rc == 0 ? 0 : -1;
}
