/* main.c - edgetrace-agent command line: one subcommand per job.
 *
 *   edgetrace-agent --version                      version, board, CPU, linked libraries
 *   edgetrace-agent run [--config FILE] [--device-id ID]  the daemon (agent.c)
 *   edgetrace-agent sample URL [...]               one-shot sampling for an engineer (sample_cmd.c)
 *   edgetrace-agent discover [--json] [...]        what discovery finds, and why (discover_cmd.c)
 *   edgetrace-agent trace FILE|URL [--json]        execution-trace lifecycle summary (trace_cmd.c)
 *   edgetrace-agent spool [stats|ls] [--dir DIR]   the flash spool (spool_cmd.c)
 *
 * Test harnesses are not here: one-shot uploads of made-up snapshots (`et-push`, the
 * uplink_cmd.c loop) and the spool crash driver are host tools under tools/.
 *
 * Reading order for a newcomer following one snapshot: main.c -> agent.c -> discover.c ->
 * sample.c -> parse_*.c -> analyze.c -> wire/snapshot.c -> spool.c -> uplink.c. */
#include <stdio.h>
#include <string.h>

#include <coap3/coap.h>
#include <mbedtls/version.h>
#include <tinycbor/cbor.h>
#include <zlib.h>
#include <zstd.h>

#include "base.h"
#include "discover.h"
#include "sample.h"
#include "spool.h"
#include "trace.h"
#include "uplink.h"

int agent_run_main(int argc, char **argv);
int trace_cmd_main(int argc, char **argv);

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
               "       edgetrace-agent run [--config FILE] [--device-id ID] [-v]\n"
               "       edgetrace-agent sample URL [--samples N] [--interval D] [--json] [--all]\n"
               "       edgetrace-agent discover [--json] [--proc-root DIR] [--config FILE] [--no-confirm]\n"
               "       edgetrace-agent trace FILE|URL [--json]\n"
               "       edgetrace-agent spool [stats|ls] [--dir DIR] [--json]\n");
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
} commands[] = {
    {"run", agent_run_main},        {"sample", sample_cmd_main}, {"discover", discover_cmd_main},
    {"trace", trace_cmd_main},      {"spool", spool_cmd_main},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version"))
        return print_version();
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < ET_ARRAY_LEN(commands); i++)
        if (!strcmp(cmd, commands[i].name))
            return commands[i].fn(argc, argv);
    fprintf(stderr, "edgetrace-agent: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
