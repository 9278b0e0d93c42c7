/* config.c - agent configuration (INI via inih). See config.h for the file format.
 *
 * The config file is outside input like any other: unknown keys, bad numbers and
 * overlong values are errors with file:line, never silently accepted. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "base.h"
#include "settings.h"

void et_config_defaults(et_config *c)
{
    memset(c, 0, sizeof *c);
    c->interval_ms = ET_DEFAULT_INTERVAL_S * 1000u;
    c->deep_interval_ms = ET_DEFAULT_DEEP_INTERVAL_S * 1000u;
    c->leak_interval_ms = 300u * 1000u;
    c->trace_seconds = 2;
    c->discover = 1;
    et_strlcpy(c->proc_root, "/proc", sizeof c->proc_root);
    c->log_level = ET_LOG_WARN;
    et_strlcpy(c->spool_dir, ET_DEFAULT_SPOOL_DIR, sizeof c->spool_dir);
    c->spool_max_bytes = ET_DEFAULT_SPOOL_MAX;
    c->fsync_policy = ET_FSYNC_BATCH;
    et_strlcpy(c->credentials, "/etc/edgetrace/credentials", sizeof c->credentials);
    /* Cellular RTTs of 1-3 s are common: RFC 7252's 2 s ACK_TIMEOUT would retransmit
     * into a congested link, so start higher and retry more. */
    c->ack_timeout_ms = 4000;
    c->max_retransmit = 6;
    c->hold_max_ms = 3600000;
}

static int64_t parse_scaled(const char *s, const char *const *units, const int64_t *mult, int nunits,
                            int64_t bare_mult)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    char unit[8];
    size_t n = strlen(end);
    while (n > 0 && isspace((unsigned char)end[n - 1]))
        n--;
    if (n >= sizeof unit)
        return -1;
    memcpy(unit, end, n);
    unit[n] = 0;
    int64_t m = -1;
    if (n == 0)
        m = bare_mult;
    for (int i = 0; i < nunits && m < 0; i++)
        if (!strcasecmp(unit, units[i]))
            m = mult[i];
    if (m < 0 || v > (unsigned long long)(INT64_MAX / m))
        return -1;
    return (int64_t)v * m;
}

int64_t et_parse_duration_ms(const char *s)
{
    static const char *const u[] = {"ms", "s", "m", "h", "d"};
    static const int64_t m[] = {1, 1000, 60000, 3600000, 86400000};
    return parse_scaled(s, u, m, 5, 1000);
}

int64_t et_parse_size(const char *s)
{
    static const char *const u[] = {"b", "k", "kb", "kib", "m", "mb", "mib", "g", "gb", "gib"};
    static const int64_t m[] = {1, 1 << 10, 1 << 10, 1 << 10, 1 << 20, 1 << 20, 1 << 20, 1 << 30, 1 << 30, 1 << 30};
    return parse_scaled(s, u, m, 10, 1);
}

static int parse_bool(const char *v)
{
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "on"))
        return 1;
    if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "off"))
        return 0;
    return -1;
}

static int parse_profiles(const char *v, uint32_t *out)
{
    uint32_t bits = 0;
    char buf[128];
    if (et_strlcpy(buf, v, sizeof buf))
        return -1;
    for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (!strcmp(tok, "goroutine"))
            bits |= ET_P_GOROUTINE;
        else if (!strcmp(tok, "heap"))
            bits |= ET_P_HEAP;
        else if (!strcmp(tok, "goroutineleak"))
            bits |= ET_P_GOROUTINELEAK;
        else if (!strcmp(tok, "trace"))
            bits |= ET_P_TRACE;
        else
            return -1;
    }
    *out = bits;
    return 0;
}

struct load_ctx {
    et_config *c;
    char *err;
    int errlen;
    const char *path;
    int failed;
    char cur_target[ET_NAME_MAX]; /* section name of the [target "x"] being filled */
};

static int fail(struct load_ctx *x, const char *fmt, const char *a, const char *b)
{
    if (!x->failed)
        snprintf(x->err, (size_t)x->errlen, fmt, a, b);
    x->failed = 1;
    return 0;
}

static et_conf_target *target_for(struct load_ctx *x, const char *name)
{
    et_config *c = x->c;
    for (uint32_t i = 0; i < c->ntargets; i++)
        if (!strcmp(c->targets[i].name, name))
            return &c->targets[i];
    if (c->ntargets >= ET_MAX_CONF_TARGETS)
        return NULL;
    et_conf_target *t = &c->targets[c->ntargets++];
    memset(t, 0, sizeof *t);
    et_strlcpy(t->name, name, sizeof t->name);
    return t;
}

#define SET_STR(field)                                                                             \
    do {                                                                                           \
        if (et_strlcpy(field, v, sizeof field))                                                    \
            return fail(x, "%s: value too long for '%s'", x->path, k);                             \
        return 1;                                                                                  \
    } while (0)

static int set_ms(struct load_ctx *x, const char *k, const char *v, uint32_t *dst)
{
    int64_t ms = et_parse_duration_ms(v);
    if (ms <= 0 || ms > 7LL * 86400000)
        return fail(x, "%s: bad duration for '%s'", x->path, k);
    *dst = (uint32_t)ms;
    return 1;
}

static int on_kv(void *ud, const char *sec, const char *k, const char *v)
{
    struct load_ctx *x = ud;
    et_config *c = x->c;
    if (!strcmp(sec, "agent")) {
        if (!strcmp(k, "device_id"))
            SET_STR(c->device_id);
        if (!strcmp(k, "interval"))
            return set_ms(x, k, v, &c->interval_ms);
        if (!strcmp(k, "deep_interval"))
            return set_ms(x, k, v, &c->deep_interval_ms);
        if (!strcmp(k, "leak_interval"))
            return set_ms(x, k, v, &c->leak_interval_ms);
        if (!strcmp(k, "trace_seconds")) {
            int64_t s = et_parse_duration_ms(v);
            if (s < 1000 || s > 60000)
                return fail(x, "%s: '%s' must be 1s..60s", x->path, k);
            c->trace_seconds = (uint32_t)(s / 1000);
            return 1;
        }
        if (!strcmp(k, "discover")) {
            int b = parse_bool(v);
            if (b < 0)
                return fail(x, "%s: '%s' must be yes or no", x->path, k);
            c->discover = b;
            return 1;
        }
        if (!strcmp(k, "proc_root"))
            SET_STR(c->proc_root);
        if (!strcmp(k, "allow")) {
            if (c->nallow >= ET_MAX_ALLOW)
                return fail(x, "%s: too many '%s' entries", x->path, k);
            if (et_strlcpy(c->allow[c->nallow], v, sizeof c->allow[0]))
                return fail(x, "%s: value too long for '%s'", x->path, k);
            c->nallow++;
            return 1;
        }
        if (!strcmp(k, "pin")) {
            /* comma-separated settings names; each must be one central settings can set */
            char buf[512], why[128];
            if (et_strlcpy(buf, v, sizeof buf))
                return fail(x, "%s: value too long for '%s'", x->path, k);
            for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
                char psec[80], pkey[32];
                if (et_settings_split(tok, psec, sizeof psec, pkey, sizeof pkey, why, sizeof why))
                    return fail(x, "%s: pin: %s", x->path, why);
                if (c->npin >= ET_MAX_PIN)
                    return fail(x, "%s: too many '%s' entries", x->path, k);
                et_strlcpy(c->pin[c->npin++], tok, sizeof c->pin[0]);
            }
            return 1;
        }
        if (!strcmp(k, "log_level")) {
            static const char *const lv[] = {"error", "warn", "info", "debug"};
            for (int i = 0; i < 4; i++)
                if (!strcmp(v, lv[i])) {
                    c->log_level = i;
                    return 1;
                }
            return fail(x, "%s: bad '%s' (error|warn|info|debug)", x->path, k);
        }
    } else if (!strcmp(sec, "spool")) {
        if (!strcmp(k, "dir"))
            SET_STR(c->spool_dir);
        if (!strcmp(k, "max_bytes")) {
            int64_t n = et_parse_size(v);
            if (n < 65536)
                return fail(x, "%s: '%s' must be at least 64K", x->path, k);
            c->spool_max_bytes = (uint64_t)n;
            return 1;
        }
        if (!strcmp(k, "fsync")) {
            if (!strcmp(v, "always"))
                c->fsync_policy = ET_FSYNC_ALWAYS;
            else if (!strcmp(v, "batch"))
                c->fsync_policy = ET_FSYNC_BATCH;
            else if (!strcmp(v, "never"))
                c->fsync_policy = ET_FSYNC_NEVER;
            else
                return fail(x, "%s: bad '%s' (always|batch|never)", x->path, k);
            return 1;
        }
    } else if (!strcmp(sec, "uplink")) {
        if (!strcmp(k, "collector"))
            SET_STR(c->collector);
        if (!strcmp(k, "credentials"))
            SET_STR(c->credentials);
        if (!strcmp(k, "credentials_dir"))
            SET_STR(c->credentials_dir);
        if (!strcmp(k, "budget_bytes_per_day")) {
            int64_t n = et_parse_size(v);
            if (n < 0)
                return fail(x, "%s: bad size for '%s'", x->path, k);
            c->budget_bytes_per_day = (uint64_t)n;
            return 1;
        }
        if (!strcmp(k, "pki_cert"))
            SET_STR(c->pki_cert);
        if (!strcmp(k, "pki_key"))
            SET_STR(c->pki_key);
        if (!strcmp(k, "pki_ca"))
            SET_STR(c->pki_ca);
        if (!strcmp(k, "ack_timeout"))
            return set_ms(x, k, v, &c->ack_timeout_ms);
        if (!strcmp(k, "hold_max"))
            return set_ms(x, k, v, &c->hold_max_ms);
        if (!strcmp(k, "dict"))
            SET_STR(c->dict);
        if (!strcmp(k, "insecure_skip_verify")) {
            int b = parse_bool(v);
            if (b < 0)
                return fail(x, "%s: '%s' must be yes or no", x->path, k);
            c->insecure_skip_verify = b;
            return 1;
        }
        if (!strcmp(k, "max_retransmit")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > 20)
                return fail(x, "%s: '%s' must be 1..20", x->path, k);
            c->max_retransmit = (uint32_t)n;
            return 1;
        }
    } else if (!strncmp(sec, "target", 6)) {
        /* [target "name"] or [target name] */
        const char *n = sec + 6;
        while (*n == ' ' || *n == '"')
            n++;
        char name[ET_NAME_MAX];
        et_strlcpy(name, n, sizeof name);
        size_t l = strlen(name);
        while (l > 0 && (name[l - 1] == '"' || name[l - 1] == ' '))
            name[--l] = 0;
        if (!l)
            return fail(x, "%s: target section needs a name: [target \"name\"]%s", x->path, "");
        et_conf_target *t = target_for(x, name);
        if (!t)
            return fail(x, "%s: too many targets%s", x->path, "");
        if (!strcmp(k, "url")) {
            if (strncmp(v, "http://", 7))
                return fail(x, "%s: target url must start with http:// ('%s')", x->path, v);
            SET_STR(t->url);
        }
        if (!strcmp(k, "interval"))
            return set_ms(x, k, v, &t->interval_ms);
        if (!strcmp(k, "profiles")) {
            if (parse_profiles(v, &t->profiles))
                return fail(x, "%s: bad profiles '%s' (goroutine,heap,goroutineleak,trace)", x->path, v);
            return 1;
        }
    }
    char what[160];
    snprintf(what, sizeof what, "[%s] %s", sec, k);
    return fail(x, "%s: unknown setting %s", x->path, what);
}

int et_config_set(et_config *c, const char *section, const char *key, const char *value, const char *origin,
                  char *err, int errlen)
{
    struct load_ctx x = {.c = c, .err = err, .errlen = errlen, .path = origin};
    on_kv(&x, section, key, value);
    return x.failed ? -1 : 0;
}

int et_config_pinned(const et_config *c, const char *name)
{
    for (uint32_t i = 0; i < c->npin; i++)
        if (!strcmp(c->pin[i], name))
            return 1;
    return 0;
}

int et_config_load(et_config *c, const char *path, int required, char *err, int errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!required && errno == ENOENT)
            return 0;
        snprintf(err, (size_t)errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct load_ctx x = {.c = c, .err = err, .errlen = errlen, .path = path};
    int line = ini_parse_file(f, on_kv, &x);
    fclose(f);
    if (line > 0 && !x.failed) {
        snprintf(err, (size_t)errlen, "%s:%d: syntax error", path, line);
        return -1;
    }
    if (x.failed) {
        if (line > 0) {
            char tmp[256];
            snprintf(tmp, sizeof tmp, "%s (line %d)", err, line);
            et_strlcpy(err, tmp, (size_t)errlen);
        }
        return -1;
    }
    /* Without a CA the collector's certificate cannot be verified: anyone on the path could
     * pose as the collector and take the snapshots. Only an explicit opt-out allows it. */
    if (c->pki_cert[0] && !c->pki_ca[0] && !c->insecure_skip_verify) {
        snprintf(err, (size_t)errlen, "%s: [uplink] pki_cert without pki_ca: set pki_ca (the CA that signed the "
                 "collector's certificate), or insecure_skip_verify = yes", path);
        return -1;
    }
    for (uint32_t i = 0; i < c->ntargets; i++)
        if (!c->targets[i].url[0]) {
            snprintf(err, (size_t)errlen, "%s: target '%s' has no url", path, c->targets[i].name);
            return -1;
        }
    return 0;
}
