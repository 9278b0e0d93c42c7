/* main.c - edgetrace-agent command line: dispatches to one subcommand per job.
 *
 *   edgetrace-agent --version
 *   edgetrace-agent sample URL [--samples N] [--interval D] [--json]
 *
 * Reading order for a newcomer following one snapshot: main.c -> discover.c -> sample.c ->
 * parse_*.c -> analyze.c -> snapshot (wire/) -> spool.c -> uplink.c. */
#include <stdio.h>
#include <string.h>

#include <coap3/coap.h>
#include <mbedtls/version.h>
#include <zlib.h>
#include <zstd.h>
#include <tinycbor/cbor.h>

#include "base.h"

static int print_version(void)
{
    char mbed[32];
    mbedtls_version_get_string(mbed);
    printf("edgetrace-agent %s (%s)\n", ET_VERSION, ET_GIT_REV);
    printf("board: %s  arch: %s  cpu: %s\n", ET_BOARD, ET_BOARD_ARCH, ET_BOARD_CPU);
    printf("libcoap %s, mbedTLS %s, zstd %s, zlib %s, tinycbor %d.%d.%d\n", coap_package_version(), mbed,
           ZSTD_versionString(), zlibVersion(), TINYCBOR_VERSION_MAJOR, TINYCBOR_VERSION_MINOR,
           TINYCBOR_VERSION_PATCH);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: edgetrace-agent --version\n"
               "       edgetrace-agent sample URL [--samples N] [--interval D] [--json]\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version"))
        return print_version();
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "edgetrace-agent: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
