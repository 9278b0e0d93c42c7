/* parse_proc.h - the /proc figures of one Go process: /proc/PID/status, /proc/PID/stat and
 * the number of entries in /proc/PID/fd.
 *
 * proc_root is "/proc" on a device and a fixture tree in tests. The text parsers are pure
 * functions over a buffer so they can be fuzzed and unit-tested without files. */
#ifndef ET_PARSE_PROC_H
#define ET_PARSE_PROC_H

#include <stddef.h>
#include "profile.h"

/* Reads status, stat and counts fd entries of proc_root/PID. 0 when status and stat were
 * read (out->present = 1; fds is 0 if the fd directory is unreadable, e.g. another user's
 * process), -1 if the process does not exist or the files do not parse. */
int et_proc_read(const char *proc_root, int pid, et_procstat *out);

/* /proc/PID/status text -> VmRSS, VmHWM, VmSize, RssAnon, RssFile, Threads.
 * Returns 0 if at least VmRSS or Threads was found (kernel threads have no Vm* lines but
 * do have Threads), -1 otherwise. */
int et_proc_parse_status(const char *buf, size_t len, et_procstat *out);

/* /proc/PID/stat text -> start time (field 22), utime (14), stime (15). The comm field (2)
 * is "(name)" and the name may itself contain spaces and parentheses, so fields are counted
 * from the *last* ')' in the line. 0 ok, -1 malformed. */
int et_proc_parse_stat(const char *buf, size_t len, et_procstat *out);

#endif
