/* query.c - `edgetrace-collector devices|snapshots|findings [--db PATH] [--json]
 *            [--device ID] [--limit N]`
 *
 * Human output is an aligned table; --json is one JSON array of objects. Findings carry
 * at least: device, target, kind, confidence, function, file, line, first_seen, last_seen
 * (ISO 8601 UTC), fingerprint, plus state, count, max_count, snapshots (how many snapshots
 * carried it), growth_per_min, evidence. The database is opened read-only, so queries can
 * run while the collector serves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "collector.h"

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void iso_time(int64_t ms, char *out, size_t len)
{
    if (ms <= 0) {
        snprintf(out, len, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Column kinds for the generic printer. */
enum { C_TEXT, C_INT, C_REAL, C_TIME };
typedef struct col {
    const char *name;
    int kind;
    int width;   /* human table width; 0 = not shown in the table */
} col;

static int run(sqlite3 *db, const char *sql, const char *device, int limit, const col *cols, int ncols, int json)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "edgetrace-collector: query: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, limit);
    if (json) {
        fputs("[", stdout);
    } else {
        for (int i = 0; i < ncols; i++)
            if (cols[i].width)
                printf("%-*s ", cols[i].width, cols[i].name);
        putchar('\n');
    }
    int rows = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (json)
            fputs(rows ? ",\n {" : "\n {", stdout);
        int first = 1;
        for (int i = 0; i < ncols; i++) {
            char buf[32];
            const char *txt = (const char *)sqlite3_column_text(st, i);
            if (json) {
                printf("%s\"%s\": ", first ? "" : ", ", cols[i].name);
                first = 0;
                if (cols[i].kind == C_TEXT) {
                    json_str(stdout, txt);
                } else if (cols[i].kind == C_TIME) {
                    iso_time(sqlite3_column_int64(st, i), buf, sizeof(buf));
                    json_str(stdout, buf);
                } else if (sqlite3_column_type(st, i) == SQLITE_NULL) {
                    fputs("null", stdout);
                } else if (cols[i].kind == C_INT) {
                    printf("%lld", (long long)sqlite3_column_int64(st, i));
                } else {
                    printf("%.6g", sqlite3_column_double(st, i));
                }
            } else if (cols[i].width) {
                if (cols[i].kind == C_TIME) {
                    iso_time(sqlite3_column_int64(st, i), buf, sizeof(buf));
                    txt = buf;
                } else if (cols[i].kind == C_REAL) {
                    snprintf(buf, sizeof(buf), "%.2f", sqlite3_column_double(st, i));
                    txt = buf;
                }
                int w = cols[i].width;
                const char *s = txt ? txt : "";
                size_t n = strlen(s);
                /* long names keep their tail: the end of a function or path is the useful part */
                if ((int)n > w && w > 3)
                    printf("...%s ", s + n - (size_t)(w - 3));
                else
                    printf("%-*s ", w, s);
            }
        }
        if (json)
            fputs("}", stdout);
        else
            putchar('\n');
        rows++;
    }
    if (json)
        fputs(rows ? "\n]\n" : "]\n", stdout);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "edgetrace-collector: query: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    return 0;
}

int query_main(const char *what, int argc, char **argv)
{
    const char *dbpath = COLL_DEFAULT_DB, *device = NULL;
    int json = 0, limit = 100;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc)
            dbpath = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc)
            device = argv[++i];
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc)
            limit = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: edgetrace-collector %s [--db PATH] [--json] [--device ID] [--limit N]\n", what);
            return 2;
        }
    }
    if (limit <= 0)
        limit = -1; /* SQLite: no limit */
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "edgetrace-collector: %s: %s\n", dbpath, db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return 1;
    }
    sqlite3_busy_timeout(db, 5000);
    int rc;
    if (!strcmp(what, "devices")) {
        static const col cols[] = {{"device", C_TEXT, 24}, {"created", C_TIME, 20}, {"last_seen", C_TIME, 20},
                                   {"snapshots", C_INT, 10}, {"targets", C_INT, 8}, {"findings", C_INT, 8}};
        rc = run(db,
                 "SELECT d.id, d.created, d.last_seen, d.snapshots,"
                 " (SELECT count(*) FROM targets t WHERE t.device=d.id),"
                 " (SELECT count(*) FROM findings f WHERE f.device=d.id)"
                 " FROM devices d WHERE ?1 IS NULL OR d.id=?1 ORDER BY d.id LIMIT ?2",
                 device, -1, cols, 6, json);
    } else if (!strcmp(what, "snapshots")) {
        static const col cols[] = {{"snapshot_id", C_TEXT, 32}, {"device", C_TEXT, 16}, {"target", C_TEXT, 16},
                                   {"received", C_TIME, 20},    {"wall", C_TIME, 20},   {"wall_trusted", C_INT, 0},
                                   {"seq", C_INT, 6},           {"goroutines", C_INT, 10}, {"heap_inuse", C_INT, 0},
                                   {"rss_kb", C_INT, 8},        {"threads", C_INT, 0},  {"findings", C_INT, 8},
                                   {"spool_dropped", C_INT, 0}, {"size", C_INT, 6},     {"boot_id", C_TEXT, 0},
                                   {"agent_version", C_TEXT, 0}, {"board", C_TEXT, 0}};
        rc = run(db,
                 "SELECT * FROM (SELECT s.snapshot_id, s.device, t.service, s.received, s.wall_ms, s.wall_trusted,"
                 " s.seq, r.goroutines, r.heap_inuse, r.rss_kb, r.threads, s.nfindings, r.spool_dropped, s.size,"
                 " s.boot_id, s.agent_version, s.board"
                 " FROM snapshots s JOIN targets t ON t.id=s.target"
                 " LEFT JOIN series r ON r.target=s.target AND r.t=s.t AND r.snap=s.id"
                 " WHERE ?1 IS NULL OR s.device=?1"
                 " ORDER BY s.id DESC LIMIT ?2) ORDER BY received, seq",
                 device, limit, cols, 17, json);
    } else if (!strcmp(what, "findings")) {
        static const col cols[] = {{"device", C_TEXT, 14},     {"target", C_TEXT, 14},     {"kind", C_TEXT, 14},
                                   {"confidence", C_TEXT, 10}, {"state", C_TEXT, 0},       {"function", C_TEXT, 36},
                                   {"file", C_TEXT, 24},       {"line", C_INT, 5},         {"count", C_INT, 6},
                                   {"max_count", C_INT, 0},    {"growth_per_min", C_REAL, 0},
                                   {"snapshots", C_INT, 6},    {"first_seen", C_TIME, 20}, {"last_seen", C_TIME, 20},
                                   {"fingerprint", C_TEXT, 16}, {"evidence", C_INT, 0},   {"created_by", C_TEXT, 0},
                                   {"pod", C_TEXT, 0},         {"incarnation", C_TEXT, 0}, {"value", C_INT, 0}};
        rc = run(db,
                 "SELECT f.device, t.service, f.kind, f.confidence, f.state, f.function, f.file, f.line, f.count,"
                 " f.max_count, f.growth_per_min, f.snapshots, f.first_seen, f.last_seen, f.fingerprint, f.evidence,"
                 " f.created_by, t.pod, t.incarnation, f.value"
                 " FROM findings f JOIN targets t ON t.id=f.target WHERE ?1 IS NULL OR f.device=?1"
                 " ORDER BY f.last_seen DESC LIMIT ?2",
                 device, limit, cols, 20, json);
    } else {
        fprintf(stderr, "edgetrace-collector: unknown query '%s'\n", what);
        rc = 2;
    }
    sqlite3_close(db);
    return rc;
}
