/* fuzz_parse_proc.c - libFuzzer target for the /proc/PID/status and /proc/PID/stat text
 * parsers (pure functions over a buffer). Byte 0 picks the parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parse_proc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    et_procstat ps;
    memset(&ps, 0, sizeof ps);
    /* an exact-size heap copy so ASan sees any read past the end */
    char *buf = malloc(size - 1 ? size - 1 : 1);
    memcpy(buf, data + 1, size - 1);
    if (data[0] & 1)
        et_proc_parse_stat(buf, size - 1, &ps);
    else
        et_proc_parse_status(buf, size - 1, &ps);
    free(buf);
    return 0;
}
