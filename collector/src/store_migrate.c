/* store_migrate.c - `edgetrace-collector migrate --from sqlite:PATH --to postgresql://...`:
 * moves a single-node SQLite database onto PostgreSQL (README "Scaling out").
 *
 * What is copied is decided from the two catalogues, not from a list kept here: every table
 * that exists on both sides, with the columns both have. So tables the PostgreSQL backend
 * gains later (findings, sites, ...) are migrated without touching this file. Two kinds of
 * knowledge are written down below because only PostgreSQL has them:
 *   - DERIVED: a column only PostgreSQL has, computed from SQLite's rows (series.received, the
 *     partition key);
 *   - FILLS: a table only PostgreSQL has, filled from SQLite's rows (snap_keys, the dedup
 *     authority across nodes: without it an agent's retry of an old snapshot would be stored
 *     twice after the move).
 * Anything of the source that has no place on the target (a table PostgreSQL does not have
 * yet, a column with values PostgreSQL lacks) is a refusal naming it, unless --skip-missing
 * says the operator accepts leaving it behind: a migration never drops data silently.
 *
 * All or nothing: the rows go in ONE PostgreSQL transaction (COPY per table, then the row counts
 * compared with the source's, then the id sequences moved past the copied ids), so a failure
 * (or ^C) leaves the target without a single migrated row and the command can simply be run
 * again. The target must be empty: a second run after a success, or a target that nodes have
 * already written to, is refused with the tables that hold rows. The source is opened
 * read-only and read in one transaction (a consistent snapshot even if a node still writes).
 * Daily partitions for the source's time range are created first (their own transactions,
 * harmless if the copy then fails), so old rows land in the partitions retention drops, not in
 * the default partition. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "collector.h"
#include "store_int.h"
#include "store_pg_int.h"

#define MT_MAX 64
#define MC_MAX 64
#define IDENT_MAX 64

typedef struct mcol {
    char name[IDENT_MAX];
    int bytea;
} mcol;

typedef struct mtable {
    char name[IDENT_MAX];
    mcol col[MC_MAX];
    int ncol;
} mtable;

/* A PostgreSQL column that SQLite does not have, and the SQLite expression that fills it. */
static const struct {
    const char *table, *column, *expr;
} DERIVED[] = {
    /* PostgreSQL partitions series by arrival; a series row arrived with its snapshot (a row
     * whose snapshot retention already removed keeps its own time) */
    {"series", "received", "coalesce((SELECT s.received FROM snapshots s WHERE s.id = series.snap), series.t)"},
    /* site counts are per (target, t) like the series row of the same snapshot (found through
     * series' primary key, not a scan of snapshots) */
    {"site_counts", "received",
     "coalesce((SELECT s.received FROM series r JOIN snapshots s ON s.id = r.snap"
     " WHERE r.target = site_counts.target AND r.t = site_counts.t LIMIT 1), site_counts.t)"},
    /* an attachment arrived with its snapshot; one whose snapshot is gone counts from today */
    {"attachments", "received",
     "coalesce((SELECT s.received FROM snapshots s WHERE s.id = attachments.snap),"
     " CAST(strftime('%s', 'now') AS INTEGER) * 1000)"},
};

/* A PostgreSQL table that SQLite does not have, and the SQLite query that fills it (its
 * result columns named as the target's). */
static const struct {
    const char *table, *select;
} FILLS[] = {
    {"snap_keys", "SELECT device, snapshot_id, received FROM snapshots"},
};

typedef struct plan {
    const mtable *dst;
    char select[4096];   /* on SQLite */
    char count[512];     /* on SQLite: the rows the target must end up with */
    char cols[2048];     /* the COPY column list */
    int64_t rows;
} plan;

typedef struct migrate_opts {
    const char *from, *to;
    int skip_missing;
} migrate_opts;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* appends "name" (double quotes doubled) to out; -1 when it does not fit */
static int quote_ident(char *out, size_t cap, const char *name)
{
    size_t n = strlen(out);
    if (n + 3 > cap)
        return -1;
    out[n++] = '"';
    for (const char *p = name; *p; p++) {
        if (n + 3 > cap)
            return -1;
        if (*p == '"')
            out[n++] = '"';
        out[n++] = *p;
    }
    out[n++] = '"';
    out[n] = 0;
    return 0;
}

static int append(char *out, size_t cap, const char *s)
{
    size_t n = strlen(out), l = strlen(s);
    if (n + l + 1 > cap)
        return -1;
    memcpy(out + n, s, l + 1);
    return 0;
}

/* ---- the two catalogues ----------------------------------------------------------------- */

static int pg_catalogue(store_pg *p, mtable *t, int *nt, char *err, size_t errlen)
{
    /* tables of the connection's schema; partitions are reached through their parent */
    PGresult *r = pg_run(p,
                         "SELECT c.relname, a.attname, a.atttypid = 'bytea'::regtype"
                         " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                         " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
                         " WHERE n.nspname = current_schema() AND c.relkind IN ('r','p') AND NOT c.relispartition"
                         " ORDER BY c.relname, a.attnum",
                         NULL);
    if (!r) {
        snprintf(err, errlen, "postgresql catalogue: %s", store_pg_errmsg(p));
        return -1;
    }
    *nt = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *tn = PQgetvalue(r, i, 0);
        if (*nt == 0 || strcmp(t[*nt - 1].name, tn)) {
            if (*nt == MT_MAX || strlen(tn) >= IDENT_MAX) {
                snprintf(err, errlen, "postgresql: too many tables or a name too long (%s)", tn);
                PQclear(r);
                return -1;
            }
            memset(&t[*nt], 0, sizeof(t[0]));
            snprintf(t[*nt].name, IDENT_MAX, "%s", tn);
            (*nt)++;
        }
        mtable *cur = &t[*nt - 1];
        if (cur->ncol == MC_MAX || strlen(PQgetvalue(r, i, 1)) >= IDENT_MAX) {
            snprintf(err, errlen, "postgresql: table %s has too many columns", tn);
            PQclear(r);
            return -1;
        }
        snprintf(cur->col[cur->ncol].name, IDENT_MAX, "%s", PQgetvalue(r, i, 1));
        cur->col[cur->ncol].bytea = PQgetvalue(r, i, 2)[0] == 't';
        cur->ncol++;
    }
    PQclear(r);
    return 0;
}

static int sq_catalogue(sqlite3 *db, mtable *t, int *nt, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL, *cs = NULL;
    int ok = sqlite3_prepare_v2(db,
                                "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite\\_%' "
                                "ESCAPE '\\' ORDER BY name",
                                -1, &st, NULL) == SQLITE_OK &&
             sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info(?1)", -1, &cs, NULL) == SQLITE_OK;
    *nt = 0;
    while (ok && sqlite3_step(st) == SQLITE_ROW) {
        const char *tn = (const char *)sqlite3_column_text(st, 0);
        if (*nt == MT_MAX || strlen(tn) >= IDENT_MAX) {
            snprintf(err, errlen, "sqlite: too many tables or a name too long (%s)", tn);
            ok = 0;
            break;
        }
        mtable *cur = &t[(*nt)++];
        memset(cur, 0, sizeof(*cur));
        snprintf(cur->name, IDENT_MAX, "%s", tn);
        sqlite3_reset(cs);
        sqlite3_bind_text(cs, 1, tn, -1, SQLITE_TRANSIENT);
        while (ok && sqlite3_step(cs) == SQLITE_ROW) {
            const char *cn = (const char *)sqlite3_column_text(cs, 0);
            if (cur->ncol == MC_MAX || strlen(cn) >= IDENT_MAX) { /* never a column silently left out */
                snprintf(err, errlen, "sqlite: table %s has too many columns or a name too long (%s)", tn, cn);
                ok = 0;
            } else {
                snprintf(cur->col[cur->ncol++].name, IDENT_MAX, "%s", cn);
            }
        }
    }
    if (!ok && !err[0])
        snprintf(err, errlen, "sqlite catalogue: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_finalize(cs);
    return ok ? 0 : -1;
}

static const mtable *find_table(const mtable *t, int nt, const char *name)
{
    for (int i = 0; i < nt; i++)
        if (!strcmp(t[i].name, name))
            return &t[i];
    return NULL;
}

static int has_col(const mtable *t, const char *name)
{
    for (int i = 0; t && i < t->ncol; i++)
        if (!strcmp(t->col[i].name, name))
            return 1;
    return 0;
}

static int64_t sq_count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* ---- the plan ----------------------------------------------------------------------------- */

/* Appends to `lost` (for the refusal) what of SQLite table sq has no place on PostgreSQL. */
static void note_lost(sqlite3 *db, const mtable *sq, const mtable *pg, char *lost, size_t cap)
{
    char sql[512], item[160];
    if (!pg) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM ");
        quote_ident(sql, sizeof(sql), sq->name);
        int64_t n = sq_count(db, sql);
        if (n != 0) {
            snprintf(item, sizeof(item), "%s%s (%lld rows)", lost[0] ? ", " : "", sq->name, (long long)n);
            append(lost, cap, item);
        }
        return;
    }
    for (int c = 0; c < sq->ncol; c++) {
        if (has_col(pg, sq->col[c].name))
            continue;
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM ");
        quote_ident(sql, sizeof(sql), sq->name);
        append(sql, sizeof(sql), " WHERE ");
        quote_ident(sql, sizeof(sql), sq->col[c].name);
        append(sql, sizeof(sql), " IS NOT NULL");
        int64_t n = sq_count(db, sql);
        if (n != 0) {
            snprintf(item, sizeof(item), "%s%s.%s (%lld values)", lost[0] ? ", " : "", sq->name, sq->col[c].name,
                     (long long)n);
            append(lost, cap, item);
        }
    }
}

/* The copy of one PostgreSQL table: 1 planned, 0 nothing to copy, -1 error. */
static int plan_table(const mtable *pg, const mtable *sq, plan *pl, char *err, size_t errlen)
{
    memset(pl, 0, sizeof(*pl));
    pl->dst = pg;
    if (!sq) {
        for (size_t i = 0; i < sizeof(FILLS) / sizeof(FILLS[0]); i++) {
            if (strcmp(FILLS[i].table, pg->name))
                continue;
            snprintf(pl->select, sizeof(pl->select), "%s", FILLS[i].select);
            snprintf(pl->count, sizeof(pl->count), "SELECT count(*) FROM (%s)", FILLS[i].select);
            return 1; /* the column list comes from the statement (copy_table) */
        }
        return 0; /* PostgreSQL's own state (none to carry over) */
    }
    int bad = append(pl->select, sizeof(pl->select), "SELECT ");
    for (int c = 0; c < pg->ncol; c++) {
        const char *expr = NULL;
        if (!has_col(sq, pg->col[c].name)) {
            for (size_t i = 0; i < sizeof(DERIVED) / sizeof(DERIVED[0]); i++)
                if (!strcmp(DERIVED[i].table, pg->name) && !strcmp(DERIVED[i].column, pg->col[c].name))
                    expr = DERIVED[i].expr;
            if (!expr)
                continue; /* the column's default on PostgreSQL */
        }
        if (pl->cols[0]) {
            bad |= append(pl->select, sizeof(pl->select), ", ");
            bad |= append(pl->cols, sizeof(pl->cols), ", ");
        }
        if (expr) {
            bad |= append(pl->select, sizeof(pl->select), expr);
            bad |= append(pl->select, sizeof(pl->select), " AS ");
        }
        bad |= quote_ident(pl->select, sizeof(pl->select), pg->col[c].name);
        bad |= quote_ident(pl->cols, sizeof(pl->cols), pg->col[c].name);
    }
    bad |= append(pl->select, sizeof(pl->select), " FROM ");
    bad |= quote_ident(pl->select, sizeof(pl->select), sq->name);
    snprintf(pl->count, sizeof(pl->count), "SELECT count(*) FROM ");
    bad |= quote_ident(pl->count, sizeof(pl->count), sq->name);
    if (bad) {
        snprintf(err, errlen, "table %s: statement too long", pg->name);
        return -1;
    }
    return pl->cols[0] ? 1 : 0;
}

/* ---- copying -------------------------------------------------------------------------------- */

typedef struct cbuf {
    char *p;
    size_t n, cap;
} cbuf;

static int cb_reserve(cbuf *b, size_t more)
{
    if (b->n + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1 << 18;
    while (cap < b->n + more)
        cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np)
        return -1;
    b->p = np;
    b->cap = cap;
    return 0;
}

/* One SQLite value in COPY's text format: \N for NULL, bytea as \\x<hex>, text escaped. */
static int cb_value(cbuf *b, sqlite3_stmt *st, int i, int bytea)
{
    static const char HEX[] = "0123456789abcdef";
    int type = sqlite3_column_type(st, i);
    if (type == SQLITE_NULL) {
        if (cb_reserve(b, 2))
            return -1;
        memcpy(b->p + b->n, "\\N", 2);
        b->n += 2;
        return 0;
    }
    if (type == SQLITE_INTEGER && !bytea) {
        if (cb_reserve(b, 24))
            return -1;
        b->n += (size_t)snprintf(b->p + b->n, 24, "%lld", (long long)sqlite3_column_int64(st, i));
        return 0;
    }
    if (type == SQLITE_FLOAT && !bytea) {
        if (cb_reserve(b, 32))
            return -1;
        b->n += (size_t)snprintf(b->p + b->n, 32, "%.17g", sqlite3_column_double(st, i));
        return 0;
    }
    const unsigned char *v = bytea || type == SQLITE_BLOB ? sqlite3_column_blob(st, i) : sqlite3_column_text(st, i);
    size_t len = (size_t)sqlite3_column_bytes(st, i);
    if (bytea) {
        if (cb_reserve(b, 3 + 2 * len))
            return -1;
        memcpy(b->p + b->n, "\\\\x", 3);
        b->n += 3;
        for (size_t k = 0; k < len; k++) {
            b->p[b->n++] = HEX[v[k] >> 4];
            b->p[b->n++] = HEX[v[k] & 15];
        }
        return 0;
    }
    if (cb_reserve(b, 2 * len))
        return -1;
    for (size_t k = 0; k < len; k++) {
        char c = (char)v[k], e = c == '\\' ? '\\' : c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : 0;
        if (e) {
            b->p[b->n++] = '\\';
            c = e;
        }
        b->p[b->n++] = c;
    }
    return 0;
}

static int col_is_bytea(const mtable *t, const char *name)
{
    for (int i = 0; i < t->ncol; i++)
        if (!strcmp(t->col[i].name, name))
            return t->col[i].bytea;
    return 0;
}

/* COPY of one planned table; the rows sent in pl->rows. 0 or -1 (err). */
static int copy_table(sqlite3 *db, store_pg *p, plan *pl, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, pl->select, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: sqlite: %s", pl->dst->name, sqlite3_errmsg(db));
        return -1;
    }
    int ncol = sqlite3_column_count(st), bytea[MC_MAX];
    if (!pl->cols[0]) { /* a FILL: the target columns are the statement's */
        for (int i = 0; i < ncol; i++) {
            if (pl->cols[0])
                append(pl->cols, sizeof(pl->cols), ", ");
            quote_ident(pl->cols, sizeof(pl->cols), sqlite3_column_name(st, i));
        }
    }
    for (int i = 0; i < ncol && i < MC_MAX; i++)
        bytea[i] = col_is_bytea(pl->dst, sqlite3_column_name(st, i));
    char sql[2200] = "COPY ";
    quote_ident(sql, sizeof(sql), pl->dst->name);
    append(sql, sizeof(sql), " (");
    append(sql, sizeof(sql), pl->cols);
    append(sql, sizeof(sql), ") FROM STDIN");
    PGresult *r = PQexec(p->conn, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        snprintf(err, errlen, "%s: %s", pl->dst->name, PQerrorMessage(p->conn));
        PQclear(r);
        sqlite3_finalize(st);
        return -1;
    }
    PQclear(r);
    cbuf b = {0};
    const char *fail = NULL;
    int rc;
    pl->rows = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; i < ncol && !fail; i++) {
            if (cb_reserve(&b, 1) || cb_value(&b, st, i, i < MC_MAX && bytea[i]))
                fail = "out of memory";
            else
                b.p[b.n++] = i + 1 < ncol ? '\t' : '\n'; /* cb_reserve(1) kept a byte for it */
        }
        if (fail)
            break;
        pl->rows++;
        if (b.n >= (1u << 18)) {
            if (PQputCopyData(p->conn, b.p, (int)b.n) != 1) {
                fail = "connection lost";
                break;
            }
            b.n = 0;
        }
    }
    if (!fail && rc != SQLITE_DONE)
        fail = sqlite3_errmsg(db);
    if (!fail && b.n && PQputCopyData(p->conn, b.p, (int)b.n) != 1)
        fail = "connection lost";
    free(b.p);
    char why[512];
    snprintf(why, sizeof(why), "%s", fail ? fail : "");
    sqlite3_finalize(st);
    /* on a failure the COPY is ended with an error, so the server discards what it got */
    PQputCopyEnd(p->conn, fail ? why : NULL);
    int ok = !fail;
    while ((r = PQgetResult(p->conn))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && ok) {
            ok = 0;
            snprintf(why, sizeof(why), "%s", PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    if (!ok) {
        snprintf(err, errlen, "%s: %s", pl->dst->name, why);
        return -1;
    }
    return 0;
}

/* Every serial/identity sequence of the table moved past the copied ids, so the next row a
 * node inserts does not collide with a migrated one. */
static int bump_sequences(store_pg *p, const char *table, char *err, size_t errlen)
{
    pg_args a = {0};
    pga_text(&a, table);
    PGresult *r = pg_run(p,
                         "SELECT a.attname, pg_get_serial_sequence(quote_ident($1), a.attname)"
                         " FROM pg_attribute a WHERE a.attrelid = quote_ident($1)::regclass AND a.attnum > 0"
                         " AND NOT a.attisdropped AND pg_get_serial_sequence(quote_ident($1), a.attname) IS NOT NULL",
                         &a);
    if (!r) {
        snprintf(err, errlen, "%s sequences: %s", table, store_pg_errmsg(p));
        return -1;
    }
    int ok = 1;
    for (int i = 0; i < PQntuples(r) && ok; i++) {
        char sql[512] = "SELECT setval($1::regclass, coalesce((SELECT max(";
        quote_ident(sql, sizeof(sql), PQgetvalue(r, i, 0));
        append(sql, sizeof(sql), ") FROM ");
        quote_ident(sql, sizeof(sql), table);
        append(sql, sizeof(sql), "), 0) + 1, false)");
        pg_args s = {0};
        pga_text(&s, PQgetvalue(r, i, 1));
        if (pg_exec(p, sql, &s)) {
            snprintf(err, errlen, "%s sequence: %s", table, store_pg_errmsg(p));
            ok = 0;
        }
    }
    PQclear(r);
    return ok ? 0 : -1;
}

/* Names the planned tables that already hold rows (into `busy`); -1 on error. */
static int target_rows(store_pg *p, const plan *pl, int np, char *busy, size_t cap)
{
    busy[0] = 0;
    for (int i = 0; i < np; i++) {
        char sql[160] = "SELECT EXISTS(SELECT 1 FROM ";
        quote_ident(sql, sizeof(sql), pl[i].dst->name);
        append(sql, sizeof(sql), ")");
        PGresult *r = pg_run(p, sql, NULL);
        if (!r)
            return -1;
        if (PQgetvalue(r, 0, 0)[0] == 't') {
            if (busy[0])
                append(busy, cap, ", ");
            append(busy, cap, pl[i].dst->name);
        }
        PQclear(r);
    }
    return 0;
}

/* The tables in an order that fills every referenced table before the tables whose foreign keys
 * point at it (PostgreSQL checks each row as it is copied), by name otherwise. The number of
 * tables, or -1 (err). */
#define FK_MAX 128
static int copy_order(store_pg *p, const mtable *t, int nt, const mtable **order, char *err, size_t errlen)
{
    PGresult *r = pg_run(p,
                         "SELECT a.relname, b.relname FROM pg_constraint c JOIN pg_class a ON a.oid = c.conrelid"
                         " JOIN pg_class b ON b.oid = c.confrelid JOIN pg_namespace n ON n.oid = a.relnamespace"
                         " WHERE c.contype = 'f' AND n.nspname = current_schema() AND NOT a.relispartition",
                         NULL);
    if (!r) {
        snprintf(err, errlen, "postgresql foreign keys: %s", store_pg_errmsg(p));
        return -1;
    }
    const mtable *from[FK_MAX], *to[FK_MAX];
    int ne = 0;
    for (int i = 0; i < PQntuples(r) && ne < FK_MAX; i++) {
        from[ne] = find_table(t, nt, PQgetvalue(r, i, 0));
        to[ne] = find_table(t, nt, PQgetvalue(r, i, 1));
        if (from[ne] && to[ne] && from[ne] != to[ne])
            ne++;
    }
    PQclear(r);
    int placed[MT_MAX] = {0}, no = 0;
    while (no < nt) {
        int pick = -1;
        for (int i = 0; i < nt && pick < 0; i++) {
            int ready = !placed[i];
            for (int e = 0; e < ne && ready; e++)
                if (from[e] == &t[i] && !placed[to[e] - t])
                    ready = 0;
            if (ready)
                pick = i;
        }
        for (int i = 0; i < nt && pick < 0; i++) /* a cycle: take the first left (its COPY will say) */
            if (!placed[i])
                pick = i;
        placed[pick] = 1;
        order[no++] = &t[pick];
    }
    return no;
}

#define DAY_MS (86400LL * 1000)

/* Daily partitions from the oldest to the newest snapshot of the source. partitions_ahead(t)
 * makes day(t)-1 .. day(t)+DAYS_AHEAD, so stepping by that span covers the range. */
static int make_partitions(sqlite3 *db, store_pg *p, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int64_t lo = 0, hi = -1;
    if (sqlite3_prepare_v2(db, "SELECT min(received), max(received) FROM snapshots", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        lo = sqlite3_column_int64(st, 0) / DAY_MS * DAY_MS;
        hi = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    for (int64_t d = lo; d <= hi; d += (STORE_PG_DAYS_AHEAD + 2) * DAY_MS) {
        if (store_pg_partitions_ahead(p, d + DAY_MS)) {
            snprintf(err, errlen, "partitions: %s", store_pg_errmsg(p));
            return -1;
        }
    }
    return 0;
}

/* The migration proper, on open handles. Prints a line per table to out. 0 or -1 (err). */
static int migrate_run(sqlite3 *db, store_pg *p, int skip_missing, FILE *out, char *err, size_t errlen)
{
    static mtable pgt[MT_MAX], sqt[MT_MAX];
    static plan pl[MT_MAX];
    int npg, nsq, np = 0;
    char lost[2048] = "", busy[1024];
    err[0] = 0;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK || pg_catalogue(p, pgt, &npg, err, errlen) ||
        sq_catalogue(db, sqt, &nsq, err, errlen)) {
        if (!err[0])
            snprintf(err, errlen, "sqlite: %s", sqlite3_errmsg(db));
        return -1;
    }
    const mtable *order[MT_MAX];
    int no = copy_order(p, pgt, npg, order, err, errlen);
    if (no < 0)
        return -1;
    for (int i = 0; i < no; i++) {
        if (!strcmp(order[i]->name, "meta")) /* each side's own schema version */
            continue;
        int rc = plan_table(order[i], find_table(sqt, nsq, order[i]->name), &pl[np], err, errlen);
        if (rc < 0)
            return -1;
        np += rc;
    }
    for (int i = 0; i < nsq; i++)
        if (strcmp(sqt[i].name, "meta"))
            note_lost(db, &sqt[i], find_table(pgt, npg, sqt[i].name), lost, sizeof(lost));
    if (lost[0] && !skip_missing) {
        snprintf(err, errlen,
                 "PostgreSQL has no place yet for: %s. Nothing was written. Upgrade the collector, or pass "
                 "--skip-missing to migrate the rest and leave these behind",
                 lost);
        return -1;
    }
    if (target_rows(p, pl, np, busy, sizeof(busy))) {
        snprintf(err, errlen, "postgresql: %s", store_pg_errmsg(p));
        return -1;
    }
    if (busy[0]) {
        snprintf(err, errlen,
                 "the target database is not empty (rows in: %s). migrate only fills a new, empty database; "
                 "nothing was written",
                 busy);
        return -1;
    }
    if (lost[0])
        fprintf(out, "left behind (--skip-missing): %s\n", lost);
    if (make_partitions(db, p, err, errlen))
        return -1;
    /* One transaction; the tables locked against writers so a node started too early waits
     * instead of interleaving its rows (and the emptiness check cannot go stale). */
    if (pg_exec(p, "BEGIN", NULL)) {
        snprintf(err, errlen, "postgresql: %s", store_pg_errmsg(p));
        return -1;
    }
    for (int i = 0; i < np; i++) {
        char sql[160] = "LOCK TABLE ";
        quote_ident(sql, sizeof(sql), pl[i].dst->name);
        append(sql, sizeof(sql), " IN EXCLUSIVE MODE");
        if (pg_exec(p, sql, NULL)) {
            snprintf(err, errlen, "postgresql: %s", store_pg_errmsg(p));
            goto fail;
        }
    }
    if (target_rows(p, pl, np, busy, sizeof(busy)) || busy[0]) {
        snprintf(err, errlen, "the target database got rows meanwhile (%s); nothing was written", busy);
        goto fail;
    }
    int64_t total = 0;
    for (int i = 0; i < np; i++) {
        int64_t t0 = mono_ms();
        int64_t want = sq_count(db, pl[i].count);
        if (want < 0) {
            snprintf(err, errlen, "%s: sqlite: %s", pl[i].dst->name, sqlite3_errmsg(db));
            goto fail;
        }
        if (copy_table(db, p, &pl[i], err, errlen))
            goto fail;
        int64_t got = store_pg_count(p, pl[i].dst->name);
        if (got != want || pl[i].rows != want) {
            snprintf(err, errlen, "%s: %lld rows in the source, %lld read, %lld on PostgreSQL; nothing was written",
                     pl[i].dst->name, (long long)want, (long long)pl[i].rows, (long long)got);
            goto fail;
        }
        if (bump_sequences(p, pl[i].dst->name, err, errlen))
            goto fail;
        total += got;
        fprintf(out, "%-16s %10lld rows  %6.1f s\n", pl[i].dst->name, (long long)got, (mono_ms() - t0) / 1000.0);
        fflush(out);
    }
    if (pg_exec(p, "COMMIT", NULL)) {
        snprintf(err, errlen, "COMMIT: %s", store_pg_errmsg(p));
        goto fail;
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    fprintf(out, "migrated %lld rows in %d tables\n", (long long)total, np);
    return 0;
fail:
    pg_exec(p, "ROLLBACK", NULL);
    return -1;
}

/* ---- the command ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: edgetrace-collector migrate --from sqlite:PATH --to postgresql://... [--skip-missing]\n"
               "  copies every row of a single-node database into a new, empty PostgreSQL database\n"
               "  (one transaction: all or nothing). Stop the collector first; agents keep their\n"
               "  snapshots in their spools meanwhile.\n");
}

int migrate_main(int argc, char **argv)
{
    migrate_opts o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--from") && has)
            o.from = argv[++i];
        else if (!strcmp(a, "--to") && has)
            o.to = argv[++i];
        else if (!strcmp(a, "--skip-missing"))
            o.skip_missing = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "migrate: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.from || strncmp(o.from, "sqlite:", 7) || !o.from[7] || !o.to || !store_is_pg_url(o.to)) {
        usage(stderr);
        return 2;
    }
    const char *path = o.from + 7;
    struct stat sb;
    /* SQLite would create a missing file; a typo must not migrate an empty database */
    if (stat(path, &sb) || !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "migrate: %s: no such database file\n", path);
        return 1;
    }
    char err[2560];
    coll_store *src = store_open_readonly(path, err, sizeof(err));
    if (!src) {
        fprintf(stderr, "migrate: %s\n", err);
        return 1;
    }
    coll_store *dst = store_open(o.to, err, sizeof(err));
    if (!dst) {
        fprintf(stderr, "migrate: %s\n", err);
        store_close(src);
        return 1;
    }
    int64_t t0 = mono_ms();
    int rc = migrate_run(src->db, dst->pg, o.skip_missing, stdout, err, sizeof(err));
    if (rc)
        fprintf(stderr, "migrate: %s\n", err);
    else
        printf("done in %.1f s\n", (mono_ms() - t0) / 1000.0);
    store_close(dst);
    store_close(src);
    return rc ? 1 : 0;
}
