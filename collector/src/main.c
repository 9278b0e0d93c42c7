/* main.c - edgetrace-collector command line.
 *
 *   edgetrace-collector serve [-c collector.conf] [--db PATH] [--listen ADDR:PORT]
 *                             [--max-body BYTES] [--no-group-commit]
 *                             [--no-payload] [--stats-interval S] [--dict FILE]
 *                             [--pki-cert PEM --pki-key PEM --pki-ca PEM]
 *                             [--retention-payload-days N] [--retention-full-days N]
 *                             [--retention-rollup-days N] [--no-prune]
 *                             [--http ADDR:PORT|off] [--http-token-file FILE]
 *                             [--captures-per-hour N]
 *                             [--insecure-plain-listen ADDR:PORT]   (tests only, see below)
 *   edgetrace-collector provision DEVICE [--db PATH] [--out FILE] [--collector URL] [--force]
 *   edgetrace-collector rotate DEVICE [--db PATH] [--out FILE] [--collector URL] [--grace DURATION]
 *   edgetrace-collector revoke DEVICE [--db PATH]
 *   edgetrace-collector keys [--db PATH] [--json]
 *   edgetrace-collector devices|snapshots|findings [--db PATH] [--json] [--device ID] [--limit N]
 *   edgetrace-collector settings [--db PATH] [--device ID] [--json]
 *                                [--set KEY=VALUE ...] [--unset KEY ...]
 *   edgetrace-collector --version
 *
 * collector.conf (INI; command-line options override it):
 *   [collector]
 *   db = /var/lib/edgetrace/collector.db
 *   listen = 0.0.0.0:5684          ; coaps (DTLS PSK; keys from the devices table)
 *   max_body = 256K                ; Block1 reassembly cap (4.13 beyond)
 *   group_commit = yes             ; one COMMIT per event-loop batch
 *   store_payload = yes            ; keep the raw envelope in snapshots.payload
 *   stats_interval = 60            ; seconds between counter lines (SIGUSR1: now)
 *   dict = /etc/edgetrace/snap.dict ; zstd dictionary (repeatable)
 *   pki_cert = / pki_key = / pki_ca = ; optional DTLS certificates besides PSK
 *   retention_payload_days = 7     ; raw envelopes (0 = keep)
 *   retention_full_days = 30       ; per-snapshot series and site counts at full resolution
 *   retention_rollup_days = 365    ; their 10-minute min/max/last rollups (0 = keep)
 *   prune = yes                    ; the pruner thread (store_retention.c)
 *   alertmanager_url = http://127.0.0.1:9093 ; alerts to Alertmanager (alert.h); empty = off
 *   alert_resend_interval = 1m     ; re-send active alerts this often
 *   silent_after = 10m             ; a device silent this long alerts; 0 = never
 *   public_url = http://127.0.0.1:8080 ; base of the links in alerts
 *   http = 127.0.0.1:8080          ; web page, JSON API, pprof export, /metrics; "off" disables
 *   http_token_file =              ; bearer token, required when http is not a loopback address
 *   captures_per_hour = 6          ; captures asked through the API, per device and hour (1..1000)
 *
 * Plain CoAP, where the device is named by the query ?d=ID and nobody is authenticated, exists
 * for tests only. It is refused in the config file (a test setting copied into production
 * would let anyone write as any device) and only switched on by a command-line flag whose
 * name says what it is; the collector logs a warning when it starts with it.
 *
 * Reading order for the collector side: main.c -> ingest.c -> decode.c -> store.c -> query.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coap3/coap.h>
#include <ini.h>
#include <sqlite3.h>

#include "alert.h"
#include "collector.h"
#include "decode.h"
#include "http.h"
#include "ingest.h"
#include "store.h"
#include "store_keys.h"

#define MAX_DICTS 4

typedef struct serve_conf {
    char db[512];
    char listen[128];
    char insecure_plain_listen[128];
    char pki_cert[512], pki_key[512], pki_ca[512];
    char http[128];
    char http_token_file[512];
    int http_explicit; /* http set by config or option (else the default address) */
    char dicts[MAX_DICTS][512];
    int ndicts;
    long long max_body;
    int group_commit;
    int store_payload;
    int stats_interval;
    int prune;
    store_retention ret;
    char alertmanager_url[512], public_url[512];
    int64_t alert_resend_ms, silent_after_ms;
    int captures_per_hour;
} serve_conf;

static long long parse_size(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0)
        return -1;
    if (*end == 'K' || *end == 'k')
        v *= 1024, end++;
    else if (*end == 'M' || *end == 'm')
        v *= 1024 * 1024, end++;
    return *end ? -1 : v;
}

static int yes(const char *v)
{
    return !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "on");
}

/* captures per device and hour: 1..1000 (a gateway's CPU and its metered link), -1 if not */
static int per_hour(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return end == s || *end || v < 1 || v > 1000 ? -1 : (int)v;
}

/* A retention in days: 0..36500, -1 if not a number in range. */
static int days(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return end == s || *end || v < 0 || v > 36500 ? -1 : (int)v;
}

static int conf_handler(void *user, const char *section, const char *name, const char *value)
{
    serve_conf *c = user;
    if (strcmp(section, "collector"))
        return 1; /* other sections belong to other tools */
#define S(field) snprintf(c->field, sizeof(c->field), "%s", value)
    if (!strcmp(name, "db"))
        S(db);
    else if (!strcmp(name, "listen"))
        S(listen);
    else if (!strcmp(name, "plain_listen")) {
        fprintf(stderr, "edgetrace-collector: plain_listen is not accepted in a config file: it lets anyone "
                        "write as any device; tests use --insecure-plain-listen ADDR:PORT\n");
        return 0;
    }
    else if (!strcmp(name, "pki_cert"))
        S(pki_cert);
    else if (!strcmp(name, "pki_key"))
        S(pki_key);
    else if (!strcmp(name, "pki_ca"))
        S(pki_ca);
    else if (!strcmp(name, "http"))
        S(http), c->http_explicit = 1;
    else if (!strcmp(name, "http_token_file"))
        S(http_token_file);
    else if (!strcmp(name, "max_body"))
        return (c->max_body = parse_size(value)) > 0;
    else if (!strcmp(name, "group_commit"))
        c->group_commit = yes(value);
    else if (!strcmp(name, "store_payload"))
        c->store_payload = yes(value);
    else if (!strcmp(name, "stats_interval"))
        c->stats_interval = atoi(value);
    else if (!strcmp(name, "alertmanager_url"))
        S(alertmanager_url);
    else if (!strcmp(name, "public_url"))
        S(public_url);
    else if (!strcmp(name, "alert_resend_interval"))
        return (c->alert_resend_ms = alert_parse_duration_ms(value)) > 0;
    else if (!strcmp(name, "silent_after"))
        return (c->silent_after_ms = alert_parse_duration_ms(value)) >= 0;
    else if (!strcmp(name, "dict") && c->ndicts < MAX_DICTS)
        snprintf(c->dicts[c->ndicts++], sizeof(c->dicts[0]), "%s", value);
    else if (!strcmp(name, "retention_payload_days"))
        return (c->ret.payload_days = days(value)) >= 0;
    else if (!strcmp(name, "retention_full_days"))
        return (c->ret.full_days = days(value)) > 0;
    else if (!strcmp(name, "retention_rollup_days"))
        return (c->ret.rollup_days = days(value)) >= 0;
    else if (!strcmp(name, "prune"))
        c->prune = yes(value);
    else if (!strcmp(name, "captures_per_hour"))
        return (c->captures_per_hour = per_hour(value)) > 0;
    else
        return 0;
#undef S
    return 1;
}

static int load_file(const char *path, uint8_t **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n <= 0 || n > (16 << 20) || !(*buf = malloc((size_t)n)) || fread(*buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        return -1;
    }
    fclose(f);
    *len = (size_t)n;
    return 0;
}

static int serve_main(int argc, char **argv)
{
    serve_conf c;
    memset(&c, 0, sizeof(c));
    snprintf(c.db, sizeof(c.db), "%s", COLL_DEFAULT_DB);
    snprintf(c.listen, sizeof(c.listen), "0.0.0.0:5684");
    snprintf(c.http, sizeof(c.http), "127.0.0.1:8080");
    c.group_commit = 1;
    c.store_payload = 1;
    c.stats_interval = 60;
    c.prune = 1;
    store_retention_defaults(&c.ret);
    snprintf(c.public_url, sizeof(c.public_url), "http://127.0.0.1:8080");
    c.alert_resend_ms = 60000;
    c.silent_after_ms = 600000;
    /* The config file first, so that command-line options override it. */
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            int rc = ini_parse(argv[i + 1], conf_handler, &c);
            if (rc) {
                fprintf(stderr, "edgetrace-collector: %s: %s%d\n", argv[i + 1], rc > 0 ? "error on line " : "cannot read ",
                        rc > 0 ? rc : 0);
                return 2;
            }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && v)
            i++;
        else if (!strcmp(a, "--db") && v)
            snprintf(c.db, sizeof(c.db), "%s", argv[++i]);
        else if (!strcmp(a, "--listen") && v)
            snprintf(c.listen, sizeof(c.listen), "%s", argv[++i]);
        else if (!strcmp(a, "--insecure-plain-listen") && v)
            snprintf(c.insecure_plain_listen, sizeof(c.insecure_plain_listen), "%s", argv[++i]);
        else if (!strcmp(a, "--max-body") && v) {
            if ((c.max_body = parse_size(argv[++i])) <= 0) {
                fprintf(stderr, "edgetrace-collector: bad --max-body\n");
                return 2;
            }
        } else if (!strcmp(a, "--no-group-commit"))
            c.group_commit = 0;
        else if (!strcmp(a, "--no-payload"))
            c.store_payload = 0;
        else if (!strcmp(a, "--stats-interval") && v)
            c.stats_interval = atoi(argv[++i]);
        else if (!strcmp(a, "--pki-cert") && v)
            snprintf(c.pki_cert, sizeof(c.pki_cert), "%s", argv[++i]);
        else if (!strcmp(a, "--pki-key") && v)
            snprintf(c.pki_key, sizeof(c.pki_key), "%s", argv[++i]);
        else if (!strcmp(a, "--pki-ca") && v)
            snprintf(c.pki_ca, sizeof(c.pki_ca), "%s", argv[++i]);
        else if (!strcmp(a, "--http") && v) {
            snprintf(c.http, sizeof(c.http), "%s", argv[++i]);
            c.http_explicit = 1;
        }
        else if (!strcmp(a, "--http-token-file") && v)
            snprintf(c.http_token_file, sizeof(c.http_token_file), "%s", argv[++i]);
        else if (!strcmp(a, "--dict") && v && c.ndicts < MAX_DICTS)
            snprintf(c.dicts[c.ndicts++], sizeof(c.dicts[0]), "%s", argv[++i]);
        else if (!strcmp(a, "--no-prune"))
            c.prune = 0;
        else if (!strcmp(a, "--captures-per-hour") && v) {
            if ((c.captures_per_hour = per_hour(argv[++i])) < 0) {
                fprintf(stderr, "edgetrace-collector: bad --captures-per-hour (1..1000)\n");
                return 2;
            }
        }
        else if ((!strcmp(a, "--retention-payload-days") || !strcmp(a, "--retention-full-days") ||
                  !strcmp(a, "--retention-rollup-days")) && v) {
            int d = days(argv[++i]);
            int *field = a[12] == 'p' ? &c.ret.payload_days : a[12] == 'f' ? &c.ret.full_days : &c.ret.rollup_days;
            if (d < 0 || (field == &c.ret.full_days && d == 0)) {
                fprintf(stderr, "edgetrace-collector: bad %s\n", a);
                return 2;
            }
            *field = d;
        } else {
            fprintf(stderr, "edgetrace-collector serve: unknown option '%s'\n", a);
            return 2;
        }
    }
    char err[512];
    /* the database holds every device key: 0600 from its first byte */
    if (store_keys_prepare_file(c.db, err, sizeof(err))) {
        fprintf(stderr, "edgetrace-collector: %s\n", err);
        return 1;
    }
    coll_store *st = store_open(c.db, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "edgetrace-collector: %s\n", err);
        return 1;
    }
    coll_decoder *dec = coll_decoder_create(err, sizeof(err));
    if (!dec) {
        fprintf(stderr, "edgetrace-collector: decoder: %s\n", err);
        store_close(st);
        return 1;
    }
    for (int i = 0; i < c.ndicts; i++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (load_file(c.dicts[i], &buf, &len) || coll_decoder_add_dict(dec, buf, len, err, sizeof(err))) {
            fprintf(stderr, "edgetrace-collector: dictionary %s: %s\n", c.dicts[i], buf ? err : "cannot read");
            free(buf);
            coll_decoder_free(dec);
            store_close(st);
            return 1;
        }
        free(buf);
    }
    ingest_params p;
    memset(&p, 0, sizeof(p));
    p.listen = c.listen;
    p.insecure_plain_listen = c.insecure_plain_listen[0] ? c.insecure_plain_listen : NULL;
    p.max_body = (size_t)c.max_body;
    p.group_commit = c.group_commit;
    p.store_payload = c.store_payload;
    p.stats_interval_s = c.stats_interval > 0 ? (unsigned)c.stats_interval : 0;
    p.pki_cert = c.pki_cert[0] ? c.pki_cert : NULL;
    p.pki_key = c.pki_key[0] ? c.pki_key : NULL;
    p.pki_ca = c.pki_ca[0] ? c.pki_ca : NULL;
    store_pruner *pruner = NULL;
    if (c.prune && !(pruner = store_pruner_start(c.db, &c.ret, err, sizeof(err)))) {
        fprintf(stderr, "edgetrace-collector: pruner: %s\n", err);
        coll_decoder_free(dec);
        store_close(st);
        return 1;
    }
    alert_thread *at = NULL;
    if (c.alertmanager_url[0]) {
        alert_conf ac = {.db_path = c.db, .alertmanager_url = c.alertmanager_url, .public_url = c.public_url,
                         .resend_ms = c.alert_resend_ms, .silent_after_ms = c.silent_after_ms};
        if (!(at = alert_start(&ac, err, sizeof(err)))) {
            fprintf(stderr, "edgetrace-collector: alerts: %s\n", err);
            store_pruner_stop(pruner);
            coll_decoder_free(dec);
            store_close(st);
            return 1;
        }
    }
    /* The HTTP thread reads through its own read-only handle, opened after store_open has
     * migrated the schema; it never takes the writer's lock, so pages cannot delay commits. */
    coll_store *ro = NULL;
    http_server *hs = NULL;
    if (strcmp(c.http, "off")) {
        http_config hc = {.listen = c.http, .token_file = c.http_token_file, .db_path = c.db,
                          .captures_per_hour = c.captures_per_hour};
        ro = store_open_readonly(c.db, err, sizeof(err));
        if (ro) {
            hc.ro = ro;
            hs = http_start(&hc, err, sizeof(err));
        }
        if (!hs && c.http_explicit) {
            fprintf(stderr, "edgetrace-collector: %s\n", err);
            if (ro)
                store_close(ro);
            alert_stop(at);
            store_pruner_stop(pruner);
            coll_decoder_free(dec);
            store_close(st);
            return 1;
        }
        /* Only the default address may fail softly (another program on 8080): ingest must
         * not stop for an HTTP view nobody asked for. */
        if (!hs && ro) {
            store_close(ro);
            ro = NULL;
        }
        if (!hs)
            fprintf(stderr, "edgetrace-collector: WARNING: no HTTP server: %s (set --http ADDR:PORT or off)\n", err);
        else
            fprintf(stderr, "edgetrace-collector: http on %s (port %u)%s\n", c.http, http_port(hs),
                    c.http_token_file[0] ? ", token required" : "");
    }
    int rc = ingest_serve(st, dec, &p);
    http_stop(hs);
    if (ro)
        store_close(ro);
    alert_stop(at);
    store_pruner_stop(pruner);
    coll_decoder_free(dec);
    store_close(st);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: edgetrace-collector serve [-c collector.conf] [--db PATH] [--listen ADDR:PORT]\n"
               "                                 [--max-body N] [--no-group-commit]\n"
               "                                 [--no-payload] [--stats-interval S] [--dict FILE]\n"
               "                                 [--pki-cert PEM --pki-key PEM --pki-ca PEM]\n"
               "                                 [--retention-payload-days N] [--retention-full-days N]\n"
               "                                 [--retention-rollup-days N] [--no-prune]\n"
               "                                 [--http ADDR:PORT|off] [--http-token-file FILE]\n"
               "                                 [--captures-per-hour N]\n"
               "                                 [--insecure-plain-listen ADDR:PORT (tests only)]\n"
               "       edgetrace-collector provision DEVICE [--db PATH] [--out FILE] [--collector URL] [--force]\n"
               "       edgetrace-collector rotate DEVICE [--db PATH] [--out FILE] [--collector URL] [--grace 7d]\n"
               "       edgetrace-collector revoke DEVICE [--db PATH]\n"
               "       edgetrace-collector keys [--db PATH] [--json]\n"
               "       edgetrace-collector devices|snapshots|findings [--db PATH] [--json] [--device ID] [--limit N]\n"
               "       edgetrace-collector settings [--db PATH] [--device ID] [--json]"
               " [--set KEY=VALUE ...] [--unset KEY ...]\n"
               "       edgetrace-collector --version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("edgetrace-collector %s (%s)\nlibcoap %s, SQLite %s\n", ET_VERSION, ET_GIT_REV, coap_package_version(),
               sqlite3_libversion());
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "serve"))
        return serve_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "provision"))
        return provision_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "rotate"))
        return rotate_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "revoke"))
        return revoke_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "keys"))
        return keys_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "command"))
        return command_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "settings"))
        return settings_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "devices") || !strcmp(cmd, "snapshots") || !strcmp(cmd, "findings"))
        return query_main(cmd, argc - 1, argv + 1);
    fprintf(stderr, "edgetrace-collector: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
