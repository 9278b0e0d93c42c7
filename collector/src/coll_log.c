/* coll_log.c - see coll_log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "coll_log.h"

void coll_logf(const char *fmt, ...)
{
    char ts[32], line[1024];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s edgetrace-collector: %s\n", ts, line);
}
