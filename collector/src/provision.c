/* provision.c - device keys from the command line:
 *
 *   edgetrace-collector provision DEVICE [--db PATH] [--out FILE] [--collector URL] [--force]
 *   edgetrace-collector rotate DEVICE [--db PATH] [--out FILE] [--collector URL] [--grace DURATION]
 *   edgetrace-collector revoke DEVICE [--db PATH]
 *   edgetrace-collector keys [--db PATH] [--json]
 *
 * provision creates a random 32-byte PSK for DEVICE, stores it and writes the credentials
 * file the agent reads ([uplink] credentials = ... in agent.conf):
 *
 *     ; edgetrace device credentials - keep secret (mode 0600)
 *     [credentials]
 *     device_id = gw-0042
 *     psk = 64 hex digits
 *     collector = coaps://collector.example:5684      ; only if --collector was given
 *
 * rotate makes a new PSK and writes the same file with it; the old key stays valid until the
 * device first completes a handshake with the new one, or until the grace period (default 7d;
 * 30s, 90m, 12h, 7d) ends, so a fleet is re-keyed without losing a snapshot. revoke erases the
 * device's keys: its next handshake fails and a live session's next request gets 4.01; the
 * device stays listed as revoked (`keys`), and `provision --force` gives it a fresh key.
 *
 * The DTLS PSK identity is the device id, so the collector learns who is talking from the
 * handshake, never from the payload.
 *
 * Key material: the credentials file is written to a fresh temporary file opened
 * O_EXCL|O_NOFOLLOW with mode 0600 (whatever the umask), synced and renamed over the target;
 * the database is created 0600 too. Key buffers are wiped after use. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "collector.h"
#include "store.h"
#include "store_keys.h"

#define PSK_LEN 32
/* The agent keeps the collector URL in 160 bytes (firmware/src/uplink.h). */
#define COLLECTOR_URL_MAX 159
#define DEFAULT_GRACE_S (7 * 86400)

int provision_valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= COLL_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

/* A URL goes into an INI line: printable, no spaces or ';', and short enough for the agent. */
static int valid_url(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > COLLECTOR_URL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == ';')
            return 0;
    return 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "30s", "90m", "12h", "7d" or plain seconds; -1 if malformed. */
static long long parse_duration(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v <= 0)
        return -1;
    long long mul = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        mul = 60, end++;
    else if (*end == 'h')
        mul = 3600, end++;
    else if (*end == 'd')
        mul = 86400, end++;
    if (*end || v > (1LL << 40) / mul)
        return -1;
    return v * mul;
}

/* Writes all of buf to a fresh file next to `out` and renames it over `out`, durably. */
static int write_secret_file(const char *out, const char *buf, size_t len, char *err, size_t errlen)
{
    char tmp[4096];
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        uint32_t r = 0;
        if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
            r = (uint32_t)getpid() ^ (uint32_t)now_ms() ^ (uint32_t)attempt;
        if (snprintf(tmp, sizeof(tmp), "%s.tmp-%08x", out, r) >= (int)sizeof(tmp)) {
            snprintf(err, errlen, "%s: path too long", out);
            return -1;
        }
        /* O_EXCL|O_NOFOLLOW: never write through a file or symlink someone placed there */
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        snprintf(err, errlen, "%.400s: %s", tmp, strerror(errno));
        return -1;
    }
    /* the umask can only take bits away; 0600 exactly, whatever it is */
    size_t off = 0;
    int ok = fchmod(fd, 0600) == 0;
    while (ok && off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += ok ? (size_t)w : 0;
    }
    ok = ok && fsync(fd) == 0;
    ok = (close(fd) == 0) && ok;
    ok = ok && rename(tmp, out) == 0;
    if (!ok) {
        snprintf(err, errlen, "%s: %s", out, strerror(errno));
        unlink(tmp);
        return -1;
    }
    /* the rename itself must survive a power cut */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", out);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* The credentials file for (device, psk) to `out`, or stdout when out is NULL. */
static int write_credentials(const char *cmd, const char *out, const char *device, const uint8_t *psk,
                             const char *collector)
{
    char hex[2 * PSK_LEN + 1];
    for (int i = 0; i < PSK_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", psk[i]);
    char text[512];
    int n = snprintf(text, sizeof(text),
                     "; edgetrace device credentials - keep secret (mode 0600)\n[credentials]\ndevice_id = %s\n"
                     "psk = %s\n%s%s%s",
                     device, hex, collector ? "collector = " : "", collector ? collector : "", collector ? "\n" : "");
    explicit_bzero(hex, sizeof(hex));
    int rc = 0;
    char err[512];
    if (n < 0 || (size_t)n >= sizeof(text)) {
        /* cannot happen with the checked lengths; never write a truncated or overread file */
        fprintf(stderr, "edgetrace-collector %s: credentials too long\n", cmd);
        rc = -1;
    } else if (!out) {
        rc = fwrite(text, 1, (size_t)n, stdout) == (size_t)n && fflush(stdout) == 0 ? 0 : -1;
    } else if (write_secret_file(out, text, (size_t)n, err, sizeof(err))) {
        fprintf(stderr, "edgetrace-collector %s: %s\n", cmd, err);
        rc = -1;
    }
    explicit_bzero(text, sizeof(text));
    return rc;
}

typedef struct key_args {
    const char *device, *db, *out, *collector, *grace;
    int force, json;
} key_args;

/* Parses the common options; `allowed` lists the ones this command takes. 0 or 2 (usage). */
static int parse_args(int argc, char **argv, const char *allowed, key_args *a)
{
    memset(a, 0, sizeof(*a));
    a->db = COLL_DEFAULT_DB;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int has = i + 1 < argc;
        if (o[0] == '-' && !strstr(allowed, o))
            return 2;
        if (!strcmp(o, "--db") && has)
            a->db = argv[++i];
        else if (!strcmp(o, "--out") && has)
            a->out = argv[++i];
        else if (!strcmp(o, "--collector") && has)
            a->collector = argv[++i];
        else if (!strcmp(o, "--grace") && has)
            a->grace = argv[++i];
        else if (!strcmp(o, "--force"))
            a->force = 1;
        else if (!strcmp(o, "--json"))
            a->json = 1;
        else if (o[0] != '-' && !a->device)
            a->device = o;
        else
            return 2;
    }
    return 0;
}

static coll_store *open_keys_db(const char *cmd, const char *db)
{
    char err[512];
    if (store_keys_prepare_file(db, err, sizeof(err))) {
        fprintf(stderr, "edgetrace-collector %s: %s\n", cmd, err);
        return NULL;
    }
    coll_store *st = store_open(db, err, sizeof(err));
    if (!st)
        fprintf(stderr, "edgetrace-collector %s: %s\n", cmd, err);
    return st;
}

/* A new random PSK and the open database; NULL (psk wiped, message printed) on failure. */
static coll_store *fresh_key_and_db(const char *cmd, const char *db, uint8_t *psk)
{
    if (getrandom(psk, PSK_LEN, 0) != PSK_LEN) {
        fprintf(stderr, "edgetrace-collector %s: getrandom: %s\n", cmd, strerror(errno));
        explicit_bzero(psk, PSK_LEN);
        return NULL;
    }
    coll_store *st = open_keys_db(cmd, db);
    if (!st)
        explicit_bzero(psk, PSK_LEN);
    return st;
}

static int check_device_and_url(const char *cmd, const key_args *a)
{
    if (!a->device || !provision_valid_id(a->device)) {
        fprintf(stderr, "edgetrace-collector %s: a device id of 1-63 characters [A-Za-z0-9._:-] is required\n", cmd);
        return 2;
    }
    if (a->collector && !valid_url(a->collector)) {
        fprintf(stderr, "edgetrace-collector %s: --collector must be 1-%d printable characters without spaces or ';'\n",
                cmd, COLLECTOR_URL_MAX);
        return 2;
    }
    return 0;
}

int provision_main(int argc, char **argv)
{
    if (provision_fleet_wanted(argc, argv)) /* --from FILE: a list (provision_fleet.c) */
        return provision_fleet_main(argc, argv);
    key_args a;
    if (parse_args(argc, argv, "--db --out --collector --force", &a)) {
        fprintf(stderr, "usage: edgetrace-collector provision DEVICE [--db PATH] [--out FILE] "
                        "[--collector coaps://HOST:PORT] [--force]\n");
        return 2;
    }
    int rc = check_device_and_url("provision", &a);
    if (rc)
        return rc;
    uint8_t psk[PSK_LEN];
    coll_store *st = fresh_key_and_db("provision", a.db, psk);
    if (!st)
        return 1;
    /* one transaction: the device row and its key row appear together */
    if (store_begin(st) || store_device_add(st, a.device, psk, sizeof(psk), a.force) ||
        store_keys_set(st, a.device, psk, sizeof(psk)) || store_commit(st)) {
        fprintf(stderr, "edgetrace-collector provision: cannot add '%s': %s%s\n", a.device, store_errmsg(st),
                a.force ? "" : " (already provisioned? use --force to replace its key)");
        store_close(st);
        explicit_bzero(psk, sizeof(psk));
        return 1;
    }
    store_close(st);
    rc = write_credentials("provision", a.out, a.device, psk, a.collector);
    explicit_bzero(psk, sizeof(psk));
    if (rc)
        return 1;
    if (a.out)
        fprintf(stderr, "provisioned %s; credentials in %s\n", a.device, a.out);
    return 0;
}

int rotate_main(int argc, char **argv)
{
    key_args a;
    if (parse_args(argc, argv, "--db --out --collector --grace", &a)) {
        fprintf(stderr, "usage: edgetrace-collector rotate DEVICE [--db PATH] [--out FILE] "
                        "[--collector coaps://HOST:PORT] [--grace DURATION (30s, 90m, 12h, 7d)]\n");
        return 2;
    }
    int rc = check_device_and_url("rotate", &a);
    if (rc)
        return rc;
    long long grace = a.grace ? parse_duration(a.grace) : DEFAULT_GRACE_S;
    if (grace <= 0) {
        fprintf(stderr, "edgetrace-collector rotate: bad --grace '%s' (e.g. 30s, 90m, 12h, 7d)\n", a.grace);
        return 2;
    }
    uint8_t psk[PSK_LEN];
    coll_store *st = fresh_key_and_db("rotate", a.db, psk);
    if (!st)
        return 1;
    int64_t deadline = now_ms() + grace * 1000;
    int done = store_keys_rotate(st, a.device, psk, sizeof(psk), deadline);
    if (done != 1) {
        fprintf(stderr, "edgetrace-collector rotate: %s\n",
                done == 0 ? "no such device, or it is revoked (provision --force gives it a new key)"
                          : store_errmsg(st));
        store_close(st);
        explicit_bzero(psk, sizeof(psk));
        return 1;
    }
    store_close(st);
    /* If writing the file fails, the rotation stands but nobody has the key: the old one
     * keeps working until the deadline, and rotating again replaces the new key. */
    rc = write_credentials("rotate", a.out, a.device, psk, a.collector);
    explicit_bzero(psk, sizeof(psk));
    if (rc)
        return 1;
    time_t dl = (time_t)(deadline / 1000);
    struct tm tm;
    char when[32];
    gmtime_r(&dl, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "rotating %s%s%s: the old key stays valid until the device first uses the new one, or %s\n",
            a.device, a.out ? "; new credentials in " : "", a.out ? a.out : "", when);
    return 0;
}

int revoke_main(int argc, char **argv)
{
    key_args a;
    if (parse_args(argc, argv, "--db", &a) || !a.device) {
        fprintf(stderr, "usage: edgetrace-collector revoke DEVICE [--db PATH]\n");
        return 2;
    }
    coll_store *st = open_keys_db("revoke", a.db);
    if (!st)
        return 1;
    int done = store_keys_revoke(st, a.device, now_ms());
    if (done != 1)
        fprintf(stderr, "edgetrace-collector revoke: %s\n", done == 0 ? "no such device" : store_errmsg(st));
    else
        fprintf(stderr, "revoked %s: its keys are erased; its next handshake or request is refused\n", a.device);
    store_close(st);
    return done == 1 ? 0 : 1;
}

int keys_main(int argc, char **argv)
{
    key_args a;
    if (parse_args(argc, argv, "--db --json", &a) || a.device) {
        fprintf(stderr, "usage: edgetrace-collector keys [--db PATH] [--json]\n");
        return 2;
    }
    coll_store *st = open_keys_db("keys", a.db);
    if (!st)
        return 1;
    int n = store_keys_list(st, a.json, stdout);
    if (n < 0)
        fprintf(stderr, "edgetrace-collector keys: %s\n", store_errmsg(st));
    store_close(st);
    return n < 0 ? 1 : 0;
}
