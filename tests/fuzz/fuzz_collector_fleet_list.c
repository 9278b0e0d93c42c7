/* fuzz_collector_fleet_list.c - arbitrary bytes as the device list of
 * `edgetrace-collector provision --from FILE` (names, CSV header, labels, comments).
 * Every accepted device must have a valid id and INI-safe labels. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector.h"
#include "provision_fleet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    FILE *f = fmemopen((void *)data, size, "r");
    if (!f)
        return 0;
    fleet_dev *devs = NULL;
    size_t n = 0;
    /* Messages for rejected lists go to stderr; keep the fuzzer's output readable. */
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w");
    int rc = fleet_list_parse(f, "fuzz", &devs, &n);
    fclose(stderr);
    stderr = saved;
    fclose(f);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            if (!provision_valid_id(devs[i].id) || strchr(devs[i].labels, '[') || strchr(devs[i].labels, ';'))
                abort();
        }
        free(devs);
    }
    return 0;
}
