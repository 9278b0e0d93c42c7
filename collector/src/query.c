/* query.c - `edgetrace-collector devices|snapshots|findings [--db PATH] [--json]
 *            [--device ID] [--limit N]`
 *
 * Human output is an aligned table; --json is one JSON array of objects. Findings carry
 * at least: device, target, kind, confidence, function, file, line, first_seen, last_seen
 * (ISO 8601 UTC), fingerprint, plus state, count, max_count, snapshots (how many snapshots
 * carried it), growth_per_min, evidence. The database is opened read-only, so queries can
 * run while the collector serves. Rows come through the store interface (store_q_list). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector.h"
#include "store.h"

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

/* Prints rows (store_q_list) as a table of the columns with a width, or as JSON. */
static void print_rows(json_t *rows, const col *cols, int ncols, int json)
{
    if (json) {
        fputs("[", stdout);
    } else {
        for (int i = 0; i < ncols; i++)
            if (cols[i].width)
                printf("%-*s ", cols[i].width, cols[i].name);
        putchar('\n');
    }
    size_t r;
    json_t *row;
    json_array_foreach(rows, r, row)
    {
        if (json)
            fputs(r ? ",\n {" : "\n {", stdout);
        int first = 1;
        for (int i = 0; i < ncols; i++) {
            char buf[32];
            json_t *v = json_object_get(row, cols[i].name);
            const char *txt = json_string_value(v);
            if (json) {
                printf("%s\"%s\": ", first ? "" : ", ", cols[i].name);
                first = 0;
                if (cols[i].kind == C_TEXT) {
                    json_str(stdout, txt);
                } else if (cols[i].kind == C_TIME) {
                    iso_time(json_integer_value(v), buf, sizeof(buf));
                    json_str(stdout, buf);
                } else if (!v || json_is_null(v)) {
                    fputs("null", stdout);
                } else if (cols[i].kind == C_INT) {
                    printf("%lld", (long long)json_integer_value(v));
                } else {
                    printf("%.6g", json_number_value(v));
                }
            } else if (cols[i].width) {
                if (cols[i].kind == C_TIME) {
                    iso_time(json_integer_value(v), buf, sizeof(buf));
                    txt = buf;
                } else if (cols[i].kind == C_REAL) {
                    snprintf(buf, sizeof(buf), "%.2f", json_number_value(v));
                    txt = buf;
                } else if (cols[i].kind == C_INT) {
                    snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
                    txt = json_is_null(v) || !v ? "" : buf;
                }
                int w = cols[i].width;
                const char *sv = txt ? txt : "";
                size_t n = strlen(sv);
                /* long names keep their tail: the end of a function or path is the useful part */
                if ((int)n > w && w > 3)
                    printf("...%s ", sv + n - (size_t)(w - 3));
                else
                    printf("%-*s ", w, sv);
            }
        }
        if (json)
            fputs("}", stdout);
        else
            putchar('\n');
    }
    if (json)
        fputs(json_array_size(rows) ? "\n]\n" : "]\n", stdout);
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
    char err[256];
    coll_store *st = store_open_readonly(dbpath, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "edgetrace-collector: %s\n", err);
        return 1;
    }
    static const col dcols[] = {{"device", C_TEXT, 24}, {"created", C_TIME, 20}, {"last_seen", C_TIME, 20},
                                {"snapshots", C_INT, 10}, {"targets", C_INT, 8}, {"findings", C_INT, 8}};
    static const col scols[] = {{"snapshot_id", C_TEXT, 32}, {"device", C_TEXT, 16}, {"target", C_TEXT, 16},
                                {"received", C_TIME, 20},    {"wall", C_TIME, 20},   {"wall_trusted", C_INT, 0},
                                {"seq", C_INT, 6},           {"goroutines", C_INT, 10}, {"heap_inuse", C_INT, 0},
                                {"rss_kb", C_INT, 8},        {"threads", C_INT, 0},  {"findings", C_INT, 8},
                                {"spool_dropped", C_INT, 0}, {"size", C_INT, 6},     {"boot_id", C_TEXT, 0},
                                {"agent_version", C_TEXT, 0}, {"board", C_TEXT, 0}};
    static const col fcols[] = {{"device", C_TEXT, 14},     {"target", C_TEXT, 14},     {"kind", C_TEXT, 14},
                                {"confidence", C_TEXT, 10}, {"status", C_TEXT, 8},      {"state", C_TEXT, 0},
                                {"function", C_TEXT, 36},   {"file", C_TEXT, 24},       {"line", C_INT, 5},
                                {"count", C_INT, 6},        {"max_count", C_INT, 0},    {"growth_per_min", C_REAL, 0},
                                {"snapshots", C_INT, 6},    {"first_seen", C_TIME, 20}, {"last_seen", C_TIME, 20},
                                {"fingerprint", C_TEXT, 16}, {"evidence", C_INT, 0},   {"created_by", C_TEXT, 0},
                                {"pod", C_TEXT, 0},         {"incarnation", C_TEXT, 0}, {"value", C_INT, 0},
                                {"id", C_INT, 0}};
    const col *cols = !strcmp(what, "devices") ? dcols : !strcmp(what, "snapshots") ? scols : fcols;
    int ncols = cols == dcols   ? (int)(sizeof(dcols) / sizeof(dcols[0]))
                : cols == scols ? (int)(sizeof(scols) / sizeof(scols[0]))
                                : (int)(sizeof(fcols) / sizeof(fcols[0]));
    json_t *rows = NULL;
    int rc = store_q_list(st, what, device, !strcmp(what, "devices") ? 0 : limit, &rows);
    if (rc == STORE_Q_BADARG) {
        fprintf(stderr, "edgetrace-collector: unknown query '%s'\n", what);
        rc = 2;
    } else if (rc) {
        fprintf(stderr, "edgetrace-collector: query: %s\n", store_errmsg(st));
        rc = 1;
    } else {
        print_rows(rows, cols, ncols, json);
        json_decref(rows);
    }
    store_close(st);
    return rc;
}
