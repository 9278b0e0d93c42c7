/* discover_int.h - what the discovery files share (discover.c targets and the /proc scan,
 * discover_procfs.c /proc text, discover_pod.c Kubernetes pods, discover_elf.c Go build info,
 * discover_confirm.c endpoint probing). Not for other modules: the API is discover.h. */
#ifndef ET_DISCOVER_INT_H
#define ET_DISCOVER_INT_H

#include <stdint.h>
#include <sys/types.h>

#include "discover.h"

/* discover_procfs.c: bounded reads of /proc files */
/* Reads at most cap-1 bytes and terminates; returns bytes read or -1. */
ssize_t dsc_read_small(const char *path, char *buf, size_t cap);
ssize_t dsc_readlink_s(const char *path, char *buf, size_t cap);
/* "net:[4026531840]" / "socket:[123]" -> 4026531840 / 123 */
uint64_t dsc_bracket_number(const char *s, const char *prefix);
/* Inode of a network namespace link (/proc/PID/ns/net), 0 if unreadable. */
uint64_t dsc_ns_inode(const char *path);
/* Value of one hex digit, -1 if c is not one. */
int dsc_hexval(char c);

/* discover_pod.c: what a process's cgroup and containerd's state say about its pod */
typedef struct pod_info {
    et_cgroup_info cg;
    int in_pod;
    char ns[ET_K8S_NAME_MAX], pod[ET_K8S_NAME_MAX * 2], container[ET_K8S_NAME_MAX];
    char sandbox_id[ET_CONTAINER_ID_MAX];
    char statefile[ET_PATH_MAX + 64];
    /* Pyroscope-style annotations */
    int annotated;
    uint16_t annot_port;
    char annot_path[ET_PPROF_PREFIX_MAX];
    uint32_t annot_profiles;
    int annot_any_scrape;            /* some <type>.scrape = "true" */
    int annot_scrape_seen;           /* some <type>.scrape key at all */
} pod_info;
void dsc_pod_lookup(const char *proc_root, const char *run_root, int pid, pod_info *pi);

#endif
