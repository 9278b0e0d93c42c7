/* coll_log.h - one timestamped log line on stderr, shared by the collector's threads. */
#ifndef COLL_LOG_H
#define COLL_LOG_H

/* "2026-01-02T03:04:05Z edgetrace-collector: <message>\n", written with one fprintf so
 * lines of different threads do not interleave. */
void coll_logf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
