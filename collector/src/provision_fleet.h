/* provision_fleet.h - the device list of `edgetrace-collector provision --from FILE`
 * (provision_fleet.c has the format), parsed apart from the rest so a fuzzer drives it. */
#ifndef COLL_PROVISION_FLEET_H
#define COLL_PROVISION_FLEET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "snap.h"

#define FLEET_MAX 10000     /* devices per list: a bound on memory for a hostile file */
#define LINE_MAX_LEN 1024
#define LABELS_MAX 512      /* bytes of "key = value\n" lines per device */
#define COLS_MAX 16

typedef struct fleet_dev {
    char id[COLL_ID_MAX];
    char labels[LABELS_MAX]; /* the [labels] section's lines, already checked for INI safety */
    uint8_t psk[32];
    size_t psklen;
    int is_new;
} fleet_dev;

/* Reads and checks the whole list from f (path names it in messages). 0 and a malloc'd
 * array the caller frees, or -1 with the reason on stderr. */
int fleet_list_parse(FILE *f, const char *path, fleet_dev **out, size_t *count);

#endif
