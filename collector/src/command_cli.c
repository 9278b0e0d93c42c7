/* command_cli.c - `edgetrace-collector command DEVICE KIND [TARGET] [--seconds N] [--ttl S]
 * [--db PATH]`: queues one downlink command (store.h, wire/command.h) for the device's next
 * request. The operator's way in until the HTTP API takes commands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector.h"
#include "store.h"
#include "store_keys.h"

static int usage(void)
{
    fprintf(stderr, "usage: edgetrace-collector command DEVICE trace|goroutine-debug2|goroutineleak|heap|rediscover"
                    " [TARGET] [--seconds N] [--ttl SECONDS] [--db PATH]\n");
    return 2;
}

/* a whole decimal number in [lo, hi], or -1 */
static long number(const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v >= lo && v <= hi ? v : -1;
}

int command_main(int argc, char **argv)
{
    const char *db = COLL_DEFAULT_DB, *pos[3] = {0};
    int npos = 0;
    long seconds = 0, ttl = 600; /* seconds 0: the default (trace only) */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = number(argv[++i], 1, ET_CMD_SECONDS_MAX);
        else if (!strcmp(argv[i], "--ttl") && i + 1 < argc)
            ttl = number(argv[++i], 1, 7 * 86400);
        else if (argv[i][0] != '-' && npos < 3)
            pos[npos++] = argv[i];
        else
            return usage();
    }
    unsigned kind = npos >= 2 ? et_cmd_kind_parse(pos[1]) : 0;
    if (!kind || ttl < 0 || seconds < 0 || (seconds > 0 && kind != ET_CMD_TRACE))
        return usage();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    et_cmd c = {.kind = (uint8_t)kind, .expiry_ms = (uint64_t)(now + ttl * 1000)};
    if (kind == ET_CMD_TRACE)
        c.seconds = seconds > 0 ? (uint32_t)seconds : ET_CMD_SECONDS_DEFAULT;
    if (npos == 3)
        snprintf(c.target, sizeof(c.target), "%s", pos[2]);
    char err[256];
    if (store_keys_prepare_file(db, err, sizeof(err))) {
        fprintf(stderr, "edgetrace-collector command: %s\n", err);
        return 1;
    }
    coll_store *st = store_open(db, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "edgetrace-collector command: %s\n", err);
        return 1;
    }
    int64_t id = 0;
    int rc = store_cmd_add(st, pos[0], &c, now, &id, err, sizeof(err));
    store_close(st);
    if (rc) {
        fprintf(stderr, "edgetrace-collector command: %s\n", err);
        return 1;
    }
    printf("%lld\n", (long long)id);
    return 0;
}
