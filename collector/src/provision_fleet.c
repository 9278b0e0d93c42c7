/* provision_fleet.c - `edgetrace-collector provision --from FILE`: credentials for a fleet.
 *
 *   edgetrace-collector provision --from FILE [--db PATH] [--collector URL] [--rotate]
 *                                 [--out-dir DIR] [--k8s-secret FILE [--secret-name NAME]
 *                                 [--namespace NS]]
 *
 * FILE lists the devices, one per line: a bare name, or CSV whose first column is the name and
 * whose other columns are labels (key=value, or named by a header line "device,site,..."). '#'
 * starts a comment line. The labels go into the device's credentials file as a [labels]
 * section, which the agent ignores today; the collector does not store them.
 *
 * Idempotent: a device already in the database keeps its key (its credentials are written
 * again from the stored key), unless --rotate gives every listed device a new one. The whole
 * list is checked before anything changes, so a bad line changes nothing.
 *
 * Outputs (at least one):
 *   --out-dir DIR     DIR/<device>.credentials, mode 0600, for flash.sh --credentials;
 *   --k8s-secret FILE one Secret (FILE "-": stdout) (default edgetrace-credentials in namespace edgetrace) with a
 *                     key per device holding its credentials file, mounted by
 *                     deploy/agent-daemonset.yaml with subPathExpr $(NODE_NAME): list the
 *                     cluster's node names. Secret keys allow [-._a-zA-Z0-9] only, so a device
 *                     id with ':' is refused here.
 * Files are written 0600 through an O_EXCL temporary file and a rename. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/platform_util.h>

#include "collector.h"
#include "provision_fleet.h"
#include "store.h"
#include "store_keys.h"

#define PSK_LEN 32
#define CRED_MAX 1024

typedef struct fleet_opts {
    const char *from, *db, *collector, *out_dir, *secret_file, *secret_name, *ns;
    int rotate;
} fleet_opts;

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

/* A label key or value goes into an INI line: no line breaks, '=', ';' or '[' that would
 * change what the agent's parser sees. */
static int ini_safe(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s == '=' || *s == ';' || *s == '[' || *s == ']' || *s == '#' || iscntrl((unsigned char)*s))
            return 0;
    return 1;
}

static int secret_key_ok(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
            return 0;
    return 1;
}

static int split_csv(char *line, char **cols)
{
    int n = 0;
    for (char *p = line;; n++) {
        if (n == COLS_MAX)
            return -1;
        char *c = strchr(p, ',');
        if (c)
            *c = 0;
        cols[n] = trim(p);
        if (!c)
            return n + 1;
        p = c + 1;
    }
}

int fleet_list_parse(FILE *f, const char *path, fleet_dev **out, size_t *count)
{
    fleet_dev *devs = NULL;
    size_t n = 0, cap = 0;
    char line[LINE_MAX_LEN + 2], header[LINE_MAX_LEN + 2] = "";
    char *hcols[COLS_MAX];
    int nh = 0, lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            fprintf(stderr, "edgetrace-collector provision: %s:%d: line longer than %d bytes\n", path, lineno,
                    LINE_MAX_LEN);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *cols[COLS_MAX], first[LINE_MAX_LEN + 2];
        memcpy(first, s, strlen(s) + 1); /* split_csv cuts s; a header keeps its own copy */
        int nc = split_csv(s, cols);
        if (nc < 0) {
            fprintf(stderr, "edgetrace-collector provision: %s:%d: more than %d columns\n", path, lineno, COLS_MAX);
            rc = -1;
            break;
        }
        if (n == 0 && !nh && (!strcmp(cols[0], "device") || !strcmp(cols[0], "name"))) {
            memcpy(header, first, strlen(first) + 1);
            nh = split_csv(header, hcols);
            continue;
        }
        if (!provision_valid_id(cols[0])) {
            fprintf(stderr, "edgetrace-collector provision: %s:%d: '%s' is not a device id (1-63 of [A-Za-z0-9._:-])\n",
                    path, lineno, cols[0]);
            rc = -1;
            break;
        }
        if (n == FLEET_MAX) {
            fprintf(stderr, "edgetrace-collector provision: %s: more than %d devices\n", path, FLEET_MAX);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < n; i++)
            if (!strcmp(devs[i].id, cols[0])) {
                fprintf(stderr, "edgetrace-collector provision: %s:%d: '%s' listed twice\n", path, lineno, cols[0]);
                rc = -1;
            }
        if (rc)
            break;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            fleet_dev *nd = realloc(devs, cap * sizeof(*devs));
            if (!nd) {
                fprintf(stderr, "edgetrace-collector provision: out of memory\n");
                rc = -1;
                break;
            }
            devs = nd;
        }
        fleet_dev *d = &devs[n];
        memset(d, 0, sizeof(*d));
        snprintf(d->id, sizeof(d->id), "%s", cols[0]);
        size_t used = 0;
        for (int i = 1; i < nc && !rc; i++) {
            char *k = NULL, *v = cols[i], *eq = strchr(cols[i], '=');
            if (!*v)
                continue;
            if (eq) {
                *eq = 0;
                k = trim(cols[i]);
                v = trim(eq + 1);
            } else if (i < nh) {
                k = hcols[i];
            }
            if (!k || !ini_safe(k) || !ini_safe(v)) {
                fprintf(stderr, "edgetrace-collector provision: %s:%d: column %d is not a label (key=value, or a header)\n",
                        path, lineno, i + 1);
                rc = -1;
                break;
            }
            int w = snprintf(d->labels + used, sizeof(d->labels) - used, "%s = %s\n", k, v);
            if (w < 0 || (size_t)w >= sizeof(d->labels) - used) {
                fprintf(stderr, "edgetrace-collector provision: %s:%d: labels longer than %d bytes\n", path, lineno,
                        LABELS_MAX);
                rc = -1;
                break;
            }
            used += (size_t)w;
        }
        if (rc)
            break;
        n++;
    }
    if (!rc && ferror(f)) {
        fprintf(stderr, "edgetrace-collector provision: %s: read error\n", path);
        rc = -1;
    }
    if (!rc && n == 0) {
        fprintf(stderr, "edgetrace-collector provision: %s lists no device\n", path);
        rc = -1;
    }
    if (rc) {
        free(devs);
        return -1;
    }
    *out = devs;
    *count = n;
    return 0;
}

/* The credentials file the agent reads (provision.c writes the same for one device). */
static int credentials_text(const fleet_dev *d, const char *collector, char *buf, size_t cap)
{
    char hex[2 * PSK_LEN + 1];
    for (size_t i = 0; i < d->psklen; i++)
        snprintf(hex + 2 * i, 3, "%02x", d->psk[i]);
    int n = snprintf(buf, cap,
                     "; edgetrace device credentials - keep secret (mode 0600)\n[credentials]\ndevice_id = %s\n"
                     "psk = %s\n%s%s%s%s%s",
                     d->id, hex, collector ? "collector = " : "", collector ? collector : "", collector ? "\n" : "",
                     d->labels[0] ? "[labels]\n" : "", d->labels);
    mbedtls_platform_zeroize(hex, sizeof(hex));
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* Writes path with mode 0600 whatever the umask: O_EXCL|O_NOFOLLOW temporary, fsync, rename. */
static int write_private(const char *path, const char *data, size_t len)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    unlink(tmp); /* a leftover of an interrupted run; O_EXCL below refuses anything else */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = fchmod(fd, 0600) == 0 && write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
    int e = errno;
    if (close(fd) || !ok || rename(tmp, path)) {
        e = ok ? errno : e;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, fleet_opts *o)
{
    *o = (fleet_opts){.db = COLL_DEFAULT_DB, .secret_name = "edgetrace-credentials", .ns = "edgetrace"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **dst = !strcmp(a, "--from")          ? &o->from
                           : !strcmp(a, "--db")          ? &o->db
                           : !strcmp(a, "--collector")   ? &o->collector
                           : !strcmp(a, "--out-dir")     ? &o->out_dir
                           : !strcmp(a, "--k8s-secret")  ? &o->secret_file
                           : !strcmp(a, "--secret-name") ? &o->secret_name
                           : !strcmp(a, "--namespace")   ? &o->ns
                                                         : NULL;
        if (dst && v) {
            *dst = v;
            i++;
        } else if (!strcmp(a, "--rotate")) {
            o->rotate = 1;
        } else {
            return -1;
        }
    }
    if (!o->from || (!o->out_dir && !o->secret_file))
        return -1;
    if (!secret_key_ok(o->secret_name) || !secret_key_ok(o->ns)) {
        fprintf(stderr, "edgetrace-collector provision: bad --secret-name or --namespace\n");
        return -1;
    }
    return 0;
}

/* Keys: the stored one unless --rotate, else a new random one; recorded in the store.
 * device_keys (store_keys.c) is the authority the collector's handshakes read: a key a
 * rotation already moved to is the one to hand out, and a new key goes there too. */
static int assign_keys(coll_store *st, fleet_dev *devs, size_t n, int rotate)
{
    for (size_t i = 0; i < n; i++) {
        fleet_dev *d = &devs[i];
        store_key_state k;
        int found = rotate ? 0 : store_keys_get(st, d->id, &k, NULL);
        if (found < 0) {
            fprintf(stderr, "edgetrace-collector provision: %s: %s\n", d->id, store_errmsg(st));
            return -1;
        }
        if (found && k.psk_len == 0) {
            store_keys_wipe(&k);
            fprintf(stderr, "edgetrace-collector provision: %s is revoked; --rotate gives it a new key\n", d->id);
            return -1;
        }
        if (found) {
            const uint8_t *key = k.next_len ? k.next_psk : k.psk;
            size_t len = k.next_len ? k.next_len : k.psk_len;
            d->psklen = len < sizeof(d->psk) ? len : sizeof(d->psk);
            memcpy(d->psk, key, d->psklen);
            store_keys_wipe(&k);
            continue;
        }
        d->is_new = 1;
        d->psklen = PSK_LEN;
        if (getrandom(d->psk, PSK_LEN, 0) != PSK_LEN) {
            fprintf(stderr, "edgetrace-collector provision: getrandom: %s\n", strerror(errno));
            return -1;
        }
        if (store_device_add(st, d->id, d->psk, PSK_LEN, rotate) || store_keys_set(st, d->id, d->psk, PSK_LEN)) {
            fprintf(stderr, "edgetrace-collector provision: cannot add '%s': %s\n", d->id, store_errmsg(st));
            return -1;
        }
    }
    return 0;
}

static int write_out_dir(const fleet_opts *o, const fleet_dev *devs, size_t n)
{
    if (mkdir(o->out_dir, 0700) && errno != EEXIST) {
        fprintf(stderr, "edgetrace-collector provision: %s: %s\n", o->out_dir, strerror(errno));
        return -1;
    }
    char text[CRED_MAX], path[4096];
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int len = credentials_text(&devs[i], o->collector, text, sizeof(text));
        snprintf(path, sizeof(path), "%s/%s.credentials", o->out_dir, devs[i].id);
        if (len < 0 || write_private(path, text, (size_t)len)) {
            fprintf(stderr, "edgetrace-collector provision: %s: %s\n", path, len < 0 ? "too long" : strerror(errno));
            rc = -1;
        }
    }
    mbedtls_platform_zeroize(text, sizeof(text));
    return rc;
}

static int write_secret(const fleet_opts *o, const fleet_dev *devs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!secret_key_ok(devs[i].id)) {
            fprintf(stderr, "edgetrace-collector provision: '%s' cannot be a Secret key ([-._a-zA-Z0-9] only)\n",
                    devs[i].id);
            return -1;
        }
    /* Base64 grows 4/3: every device's line fits in CRED_MAX * 2. */
    size_t cap = 256 + n * (COLL_ID_MAX + 2 * CRED_MAX), used = 0;
    char *doc = malloc(cap), text[CRED_MAX];
    unsigned char b64[2 * CRED_MAX];
    if (!doc) {
        fprintf(stderr, "edgetrace-collector provision: out of memory\n");
        return -1;
    }
    used += (size_t)snprintf(doc, cap,
                             "# edgetrace device credentials, one key per node (edgetrace-collector provision --from)\n"
                             "apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\n"
                             "type: Opaque\ndata:\n",
                             o->secret_name, o->ns);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        size_t blen = 0;
        int len = credentials_text(&devs[i], o->collector, text, sizeof(text));
        if (len < 0 || mbedtls_base64_encode(b64, sizeof(b64), &blen, (const unsigned char *)text, (size_t)len)) {
            rc = -1;
            break;
        }
        used += (size_t)snprintf(doc + used, cap - used, "  \"%s\": %s\n", devs[i].id, (const char *)b64);
    }
    if (!rc && !strcmp(o->secret_file, "-")) {
        /* stdout: straight into `kubectl apply -f -`, the key material never in a file */
        if (fwrite(doc, 1, used, stdout) != used || fflush(stdout)) {
            fprintf(stderr, "edgetrace-collector provision: stdout: %s\n", strerror(errno));
            rc = -1;
        }
    } else if (!rc && write_private(o->secret_file, doc, used)) {
        fprintf(stderr, "edgetrace-collector provision: %s: %s\n", o->secret_file, strerror(errno));
        rc = -1;
    }
    mbedtls_platform_zeroize(text, sizeof(text));
    mbedtls_platform_zeroize(b64, sizeof(b64));
    mbedtls_platform_zeroize(doc, cap);
    free(doc);
    return rc;
}

int provision_fleet_wanted(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--from"))
            return 1;
    return 0;
}

int provision_fleet_main(int argc, char **argv)
{
    fleet_opts o;
    if (parse_args(argc, argv, &o)) {
        fprintf(stderr, "usage: edgetrace-collector provision --from FILE [--db PATH] [--collector URL] [--rotate]\n"
                        "           [--out-dir DIR] [--k8s-secret FILE [--secret-name NAME] [--namespace NS]]\n");
        return 2;
    }
    fleet_dev *devs;
    size_t n;
    FILE *f = fopen(o.from, "r");
    if (!f) {
        fprintf(stderr, "edgetrace-collector provision: %s: %s\n", o.from, strerror(errno));
        return 2;
    }
    int bad = fleet_list_parse(f, o.from, &devs, &n);
    fclose(f);
    if (bad)
        return 2;
    char err[256];
    /* the database (keys inside) is created 0600 whatever the umask, as provision does */
    if (store_keys_prepare_file(o.db, err, sizeof(err))) {
        fprintf(stderr, "edgetrace-collector provision: %s\n", err);
        return 1;
    }
    coll_store *st = store_open(o.db, err, sizeof(err));
    int rc = 1;
    if (!st)
        fprintf(stderr, "edgetrace-collector provision: %s\n", err);
    else if (!assign_keys(st, devs, n, o.rotate) && (!o.out_dir || !write_out_dir(&o, devs, n)) &&
             (!o.secret_file || !write_secret(&o, devs, n)))
        rc = 0;
    if (st)
        store_close(st);
    size_t fresh = 0;
    for (size_t i = 0; i < n; i++)
        fresh += (size_t)devs[i].is_new;
    if (!rc)
        fprintf(stderr, "provisioned %zu devices: %zu new key%s, %zu kept\n", n, fresh, fresh == 1 ? "" : "s",
                n - fresh);
    mbedtls_platform_zeroize(devs, n * sizeof(*devs));
    free(devs);
    return rc;
}
