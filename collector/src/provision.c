/* provision.c - `edgetrace-collector provision DEVICE [--db PATH] [--out FILE]
 *                [--collector URL] [--force]`
 *
 * Creates a random 32-byte PSK for DEVICE, stores it in the devices table and writes the
 * credentials file the agent reads ([uplink] credentials = ... in agent.conf):
 *
 *     ; edgetrace device credentials - keep secret (mode 0600)
 *     [credentials]
 *     device_id = gw-0042
 *     psk = 64 hex digits
 *     collector = coaps://collector.example:5684      ; only if --collector was given
 *
 * The DTLS PSK identity is the device id, so the collector learns who is talking from the
 * handshake, never from the payload. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "collector.h"
#include "store.h"

#define PSK_LEN 32

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

int provision_main(int argc, char **argv)
{
    if (provision_fleet_wanted(argc, argv)) /* --from FILE: a list (provision_fleet.c) */
        return provision_fleet_main(argc, argv);
    const char *device = NULL, *db = COLL_DEFAULT_DB, *out = NULL, *collector = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--collector") && i + 1 < argc)
            collector = argv[++i];
        else if (!strcmp(argv[i], "--force"))
            force = 1;
        else if (argv[i][0] != '-' && !device)
            device = argv[i];
        else {
            fprintf(stderr, "usage: edgetrace-collector provision DEVICE [--db PATH] [--out FILE] "
                            "[--collector coaps://HOST:PORT] [--force]\n");
            return 2;
        }
    }
    if (!device || !provision_valid_id(device)) {
        fprintf(stderr, "edgetrace-collector provision: a device id of 1-63 characters [A-Za-z0-9._:-] is required\n");
        return 2;
    }
    uint8_t psk[PSK_LEN];
    if (getrandom(psk, sizeof(psk), 0) != (ssize_t)sizeof(psk)) {
        fprintf(stderr, "edgetrace-collector provision: getrandom: %s\n", strerror(errno));
        return 1;
    }
    char err[256];
    coll_store *st = store_open(db, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "edgetrace-collector provision: %s\n", err);
        return 1;
    }
    if (store_device_add(st, device, psk, sizeof(psk), force)) {
        fprintf(stderr, "edgetrace-collector provision: cannot add '%s': %s%s\n", device, store_errmsg(st),
                force ? "" : " (already provisioned? use --force to replace its key)");
        store_close(st);
        return 1;
    }
    store_close(st);

    char hex[2 * PSK_LEN + 1];
    for (int i = 0; i < PSK_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", psk[i]);
    char text[512];
    int n = snprintf(text, sizeof(text),
                     "; edgetrace device credentials - keep secret (mode 0600)\n[credentials]\ndevice_id = %s\n"
                     "psk = %s\n%s%s%s",
                     device, hex, collector ? "collector = " : "", collector ? collector : "", collector ? "\n" : "");
    if (!out) {
        fwrite(text, 1, (size_t)n, stdout);
        return 0;
    }
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", out);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, (size_t)n) != n || fsync(fd) || close(fd) || rename(tmp, out)) {
        fprintf(stderr, "edgetrace-collector provision: %s: %s\n", out, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
        return 1;
    }
    fprintf(stderr, "provisioned %s; credentials in %s\n", device, out);
    return 0;
}
