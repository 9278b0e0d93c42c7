/* settings_cli.c - `edgetrace-collector settings`: central settings from the shell, beside the
 * other queries (README "Central settings").
 *
 *   settings [--db PATH] [--device ID] [--json]        the stored sets, their versions, and
 *                                                      what each device applied or refused
 *   settings --set KEY=VALUE ... [--unset KEY] ... [--device ID] [--db PATH] [--json]
 *                                                      a new version of the fleet's (or the
 *                                                      device's) set
 *
 * A change starts from the scope's stored set, sets or removes the named keys and is written
 * with store_settings_put: the same checks and the same version counter as PUT /api/settings.
 * Every --set agent.allow=PREFIX of one call together form the new allow list (a list in a
 * set replaces the one below it). Showing opens the database read-only, so it runs while the
 * collector serves; a change opens it for writing like `command` does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector.h"
#include "store.h"
#include "store_keys.h"

#define SETTINGS_CLI_ARGS_MAX 64

static int usage(void)
{
    fprintf(stderr, "usage: edgetrace-collector settings [--db PATH] [--device ID] [--json]\n"
                    "       edgetrace-collector settings --set KEY=VALUE ... [--unset KEY] ... [--device ID]"
                    " [--db PATH] [--json]\n");
    return 2;
}

static void when(json_t *ms, char *out, size_t len)
{
    if (!json_is_integer(ms) || json_integer_value(ms) <= 0) {
        snprintf(out, len, "never");
        return;
    }
    time_t t = (time_t)(json_integer_value(ms) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "KEY=VALUE KEY=A,B" of a set object (agent.allow joined with commas) */
static void print_entries(const char *label, json_t *set)
{
    printf("%s", label);
    const char *k;
    json_t *v;
    if (!json_object_size(set))
        printf(" (none)");
    json_object_foreach(set, k, v)
    {
        printf(" %s=", k);
        if (json_is_array(v)) {
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x) printf("%s%s", i ? "," : "", json_string_value(x));
        } else {
            printf("%s", json_string_value(v));
        }
    }
    putchar('\n');
}

static long long num(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    return (long long)json_integer_value(b ? json_object_get(v, b) : v);
}

/* One device's line: its own version, what it runs, what it refused and why. */
static void print_device(json_t *d)
{
    json_t *applied = json_object_get(d, "applied"), *rej = json_object_get(d, "rejected");
    char applied_s[48] = "-", rej_s[48] = "-";
    if (json_is_object(applied))
        snprintf(applied_s, sizeof applied_s, "f%lld/d%lld", num(applied, "fleet", NULL),
                 num(applied, "device", NULL));
    if (json_is_object(rej))
        snprintf(rej_s, sizeof rej_s, "f%lld/d%lld", num(rej, "fleet", NULL), num(rej, "device", NULL));
    printf("%-24s v%-7lld %-12s %-8s %-12s %s\n", json_string_value(json_object_get(d, "device")),
           num(d, "version", NULL), applied_s, json_is_true(json_object_get(d, "in_sync")) ? "yes" : "no", rej_s,
           json_is_object(rej) ? json_string_value(json_object_get(rej, "reason")) : "");
}

/* The fleet set and every device's state (device NULL), or one device's. 0, or 1 (printed). */
static int show(coll_store *st, const char *device, int json)
{
    json_t *fleet = NULL, *one = NULL, *devs = json_array(), *rows = NULL;
    int rc = store_q_settings(st, NULL, &fleet);
    if (rc == STORE_Q_OK && device)
        rc = store_q_settings(st, device, &one);
    if (rc == STORE_Q_OK && !device && store_q_list(st, "devices", NULL, 0, &rows) == 0) {
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row)
        {
            json_t *d = NULL;
            if ((rc = store_q_settings(st, json_string_value(json_object_get(row, "device")), &d)) != STORE_Q_OK)
                break;
            json_array_append_new(devs, d);
        }
    } else if (rc == STORE_Q_OK && !device) {
        rc = -1;
    }
    if (rc != STORE_Q_OK) {
        fprintf(stderr, "edgetrace-collector settings: %s\n",
                rc == STORE_Q_NOTFOUND ? "no such device" : "cannot read the database");
    } else if (json) {
        json_t *out = one ? json_incref(one) : json_pack("{s:O,s:O}", "fleet", fleet, "devices", devs);
        char *text = json_dumps(out, JSON_INDENT(1) | JSON_SORT_KEYS);
        printf("%s\n", text ? text : "null");
        free(text);
        json_decref(out);
    } else {
        char t[32];
        when(json_object_get(fleet, "updated_ms"), t, sizeof t);
        char label[160];
        snprintf(label, sizeof label, "fleet v%lld (updated %s):", num(fleet, "version", NULL), t);
        print_entries(label, json_object_get(fleet, "settings"));
        if (one) {
            when(json_object_get(one, "updated_ms"), t, sizeof t);
            snprintf(label, sizeof label, "device %.63s v%lld (updated %s):", device, num(one, "version", NULL), t);
            print_entries(label, json_object_get(one, "settings"));
            print_entries("effective:", json_object_get(one, "effective"));
            json_array_append(devs, one);
        }
        printf("%-24s %-8s %-12s %-8s %-12s %s\n", "DEVICE", "OWN", "APPLIED", "IN_SYNC", "REFUSED", "REASON");
        size_t i;
        json_t *d;
        json_array_foreach(devs, i, d) print_device(d);
    }
    json_decref(fleet);
    json_decref(one);
    json_decref(devs);
    json_decref(rows);
    return rc == STORE_Q_OK ? 0 : 1;
}

/* The scope's stored set with the changes applied; NULL with err on a bad argument. */
static json_t *changed(coll_store *st, const char *device, char **sets, int nsets, char **unsets, int nunsets,
                       char *err, size_t errlen)
{
    json_t *cur = NULL;
    int rc = store_q_settings(st, device, &cur);
    if (rc != STORE_Q_OK) {
        snprintf(err, errlen, "%s", rc == STORE_Q_NOTFOUND ? "no such device" : "cannot read the database");
        return NULL;
    }
    json_t *set = json_deep_copy(json_object_get(cur, "settings"));
    json_decref(cur);
    for (int i = 0; i < nunsets; i++)
        if (json_object_del(set, unsets[i])) {
            snprintf(err, errlen, "--unset %.100s: not in the %s set", unsets[i], device ? "device's" : "fleet's");
            json_decref(set);
            return NULL;
        }
    int allow_new = 0;
    for (int i = 0; i < nsets; i++) {
        char *eq = strchr(sets[i], '=');
        if (!eq || eq == sets[i] || !eq[1]) {
            snprintf(err, errlen, "--set %.100s: expected KEY=VALUE", sets[i]);
            json_decref(set);
            return NULL;
        }
        *eq = 0;
        if (!strcmp(sets[i], "agent.allow")) {
            if (!allow_new++) /* this call's prefixes are the new list */
                json_object_set_new(set, "agent.allow", json_array());
            json_array_append_new(json_object_get(set, "agent.allow"), json_string(eq + 1));
        } else {
            json_object_set_new(set, sets[i], json_string(eq + 1));
        }
        *eq = '=';
    }
    return set;
}

int settings_main(int argc, char **argv)
{
    const char *db = COLL_DEFAULT_DB, *device = NULL;
    char *sets[SETTINGS_CLI_ARGS_MAX], *unsets[SETTINGS_CLI_ARGS_MAX];
    int nsets = 0, nunsets = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db = argv[++i];
        else if (!strcmp(argv[i], "--device") && i + 1 < argc)
            device = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && nsets < SETTINGS_CLI_ARGS_MAX)
            sets[nsets++] = argv[++i];
        else if (!strcmp(argv[i], "--unset") && i + 1 < argc && nunsets < SETTINGS_CLI_ARGS_MAX)
            unsets[nunsets++] = argv[++i];
        else if (nsets && argv[i][0] != '-' && strchr(argv[i], '=') && nsets < SETTINGS_CLI_ARGS_MAX)
            sets[nsets++] = argv[i]; /* --set A=1 B=2 */
        else
            return usage();
    }
    char err[256];
    if (!nsets && !nunsets) {
        coll_store *ro = store_open_readonly(db, err, sizeof(err));
        if (!ro) {
            fprintf(stderr, "edgetrace-collector settings: %s\n", err);
            return 1;
        }
        int rc = show(ro, device, json);
        store_close(ro);
        return rc;
    }
    if (store_keys_prepare_file(db, err, sizeof(err))) {
        fprintf(stderr, "edgetrace-collector settings: %s\n", err);
        return 1;
    }
    coll_store *st = store_open(db, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "edgetrace-collector settings: %s\n", err);
        return 1;
    }
    json_t *set = changed(st, device, sets, nsets, unsets, nunsets, err, sizeof err);
    int rc = set ? STORE_Q_OK : STORE_Q_BADARG;
    int64_t version = 0;
    if (set) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        rc = store_settings_put(st, device, set, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, &version, err,
                                sizeof err);
        json_decref(set);
    }
    if (rc == STORE_Q_OK) {
        rc = show(st, device, json);
    } else {
        fprintf(stderr, "edgetrace-collector settings: %s\n",
                rc == STORE_Q_NOTFOUND ? "no such device" : rc == STORE_Q_BADARG ? err : "cannot write the database");
        rc = 1;
    }
    store_close(st);
    return rc;
}
