/* discover.c - targets from the config file, from a /proc scan for Go processes with
 * listening sockets, and from Kubernetes pods (K3s/containerd) reached through their network
 * namespace.
 *
 * Formats read here, and where they are defined:
 *   - Go build info: src/debug/buildinfo/buildinfo.go (Go 1.23): a 32-byte header starting
 *     with "\xff Go buildinf:", byte 14 = pointer size, byte 15 = flags (bit 1: strings inline
 *     as uvarint length + bytes, Go 1.18+; otherwise two pointers to Go string headers, bit 0
 *     big-endian). ELF: the ".go.buildinfo" section, else the first writable non-exec PT_LOAD.
 *   - /proc/net/tcp{,6}: Linux net/ipv4/tcp_ipv4.c get_tcp4_sock() and net/ipv6/tcp_ipv6.c
 *     get_tcp6_sock(): addresses are the raw 32-bit words printed with %08X in host order.
 *   - /proc/PID/stat field 22: proc(5).
 *   - Kubernetes cgroup paths: kubelet's cgroup drivers (systemd: kubepods-<qos>-pod<uid>.slice
 *     with '-' in the uid written as '_'; cgroupfs: kubepods/<qos>/pod<uid>/<container id>).
 *   - containerd CRI annotations in the OCI config.json of each task:
 *     io.kubernetes.cri.sandbox-namespace / sandbox-name / container-name / sandbox-id.
 *   - Pyroscope pod annotations, profiles.grafana.com/<type>.scrape|.port|.path, as documented
 *     for the Pyroscope Helm chart's scrape config
 *     (https://grafana.com/docs/pyroscope/latest/deploy-kubernetes/helm/). They are pod
 *     annotations; the agent sees them only if containerd copies them into the OCI spec
 *     (its pod_annotations setting), hence "where visible".
 * The readers of these formats live in discover_procfs.c (/proc), discover_pod.c (cgroup,
 * OCI annotations), discover_elf.c (Go build info); endpoint probing in discover_confirm.c. */
#include "discover_int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "base.h"
#include "loop.h"

#define MAX_LISTEN_PER_PROC 64
#define MAX_TCP_LINES 65536
#define MAX_FDS_PER_PROC 16384

/* ================================================================ targets */

void et_discover_opts_default(et_discover_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->proc_root = "/proc";
    o->run_root = "";
    o->scan_proc = 1;
    o->confirm = 1;
    o->confirm_timeout_ms = 2000;
}

const char *et_target_source_name(int source)
{
    switch (source) {
    case ET_SRC_CONFIG: return "config";
    case ET_SRC_PROC: return "proc";
    case ET_SRC_POD: return "pod";
    default: return "?";
    }
}

static void set_identity(et_target *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_identity(et_target *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->identity, sizeof(t->identity), fmt, ap);
    va_end(ap);
    t->identity_hash = et_fnv1a_str(ET_FNV_INIT, t->identity);
}

static void set_incarnation(et_target *t, int pid, uint64_t start)
{
    t->pid = pid;
    t->start_ticks = start;
    uint64_t h = et_fnv1a(ET_FNV_INIT, "pid", 3);
    uint8_t b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)((uint64_t)(uint32_t)pid >> (8 * i));
        b[8 + i] = (uint8_t)(start >> (8 * i));
    }
    t->incarnation = et_fnv1a(h, b, sizeof(b));
}

const et_target *et_target_find(const et_target_set *s, uint64_t identity_hash)
{
    for (unsigned i = 0; i < s->n; i++)
        if (s->t[i].identity_hash == identity_hash)
            return &s->t[i];
    return NULL;
}

int et_target_url(const et_target *t, const char *what, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s%s%s", t->base_url, t->pprof_prefix, what ? what : "");
    return (n < 0 || (size_t)n >= outsz) ? -1 : 0;
}

int et_target_open_netns(const et_target *t, const char *proc_root)
{
    if (!t->foreign_netns || t->pid <= 0)
        return -1;
    char path[ET_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%d/ns/net", proc_root ? proc_root : "/proc", t->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -2 : fd;
}

static et_target *new_target(et_target_set *s)
{
    if (s->n >= ET_MAX_TARGETS) {
        s->dropped++;
        return NULL;
    }
    et_target *t = &s->t[s->n++];
    memset(t, 0, sizeof(*t));
    t->confirmed = ET_CONFIRM_SKIPPED;
    et_strlcpy(t->pprof_prefix, "/debug/pprof/", sizeof(t->pprof_prefix));
    return t;
}

/* A config URL may carry a path: "http://h:p" -> /debug/pprof/, "http://h:p/x" -> /x/debug/pprof/,
 * "http://h:p/x/debug/pprof[/]" -> that. */
static int add_config_target(et_target_set *s, const et_conf_target *ct)
{
    et_url u;
    if (!ct->url[0])
        return 0; /* no url: central settings for a discovered service of that name */
    if (et_url_parse(ct->url, &u) < 0) {
        et_warn("discover: target \"%s\": unusable url \"%s\" (http://IP:port only)", ct->name, ct->url);
        return -1;
    }
    et_target *t = new_target(s);
    if (!t)
        return -1;
    t->source = ET_SRC_CONFIG;
    et_strlcpy(t->name, ct->name, sizeof(t->name));
    set_identity(t, "config:%s", ct->name);
    if (u.family == AF_INET6)
        snprintf(t->base_url, sizeof(t->base_url), "http://[%s]:%u", u.host, (unsigned)u.port);
    else
        snprintf(t->base_url, sizeof(t->base_url), "http://%s:%u", u.host, (unsigned)u.port);
    char path[ET_HTTP_PATH_MAX];
    et_strlcpy(path, u.path, sizeof(path));
    char *q = strchr(path, '?');
    if (q)
        *q = 0;
    size_t pl = strlen(path);
    while (pl > 0 && path[pl - 1] == '/')
        path[--pl] = 0;
    if (pl + 14 >= sizeof(t->pprof_prefix)) {
        et_warn("discover: target \"%s\": url path too long", ct->name);
        s->n--;
        return -1;
    }
    if (pl >= 12 && !strcmp(path + pl - 12, "/debug/pprof"))
        snprintf(t->pprof_prefix, sizeof(t->pprof_prefix), "%.50s/", path);
    else
        snprintf(t->pprof_prefix, sizeof(t->pprof_prefix), "%.48s/debug/pprof/", path);
    t->port = u.port;
    t->profiles = ct->profiles;
    t->interval_ms = ct->interval_ms;
    snprintf(t->reason, sizeof(t->reason), "[target \"%s\"] in the config file", ct->name);
    return 0;
}

/* ---- per-process scan ---- */

typedef struct listen_sock {
    et_tcp_sock s;
    int owned;
} listen_sock;

static unsigned read_listeners(const char *path, int v6, listen_sock *ls, unsigned n, unsigned cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return n;
    char line[512];
    unsigned lines = 0;
    while (n < cap && lines++ < MAX_TCP_LINES && fgets(line, sizeof(line), f)) {
        et_tcp_sock s;
        if (et_parse_tcp_line(line, v6, &s) == 1 && s.state == 0x0A && s.inode != 0) {
            ls[n].s = s;
            ls[n].owned = 0;
            n++;
        }
    }
    fclose(f);
    return n;
}


static void addr_to_host(const et_tcp_sock *s, char *host, size_t hsz)
{
    static const uint8_t zero[16] = { 0 };
    static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (s->family == AF_INET) {
        if (!memcmp(s->addr, zero, 4) || s->addr[0] == 127)
            et_strlcpy(host, "127.0.0.1", hsz);
        else
            inet_ntop(AF_INET, s->addr, host, (socklen_t)hsz);
        return;
    }
    if (!memcmp(s->addr, zero, 16)) {
        /* [::] listens on v6 (and v4 unless V6ONLY); ::1 works either way. */
        et_strlcpy(host, "[::1]", hsz);
        return;
    }
    if (!memcmp(s->addr, v4mapped, 12)) {
        if (!memcmp(s->addr + 12, zero, 4) || s->addr[12] == 127)
            et_strlcpy(host, "127.0.0.1", hsz);
        else
            inet_ntop(AF_INET, s->addr + 12, host, (socklen_t)hsz);
        return;
    }
    char a[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, s->addr, a, sizeof(a));
    snprintf(host, hsz, "[%s]", a);
}

static void addr_text(const et_tcp_sock *s, char *out, size_t n)
{
    char a[INET6_ADDRSTRLEN];
    inet_ntop(s->family, s->addr, a, sizeof(a));
    if (s->family == AF_INET6)
        snprintf(out, n, "[%s]:%u", a, (unsigned)s->port);
    else
        snprintf(out, n, "%s:%u", a, (unsigned)s->port);
}

/* A config target with the same port in our namespace is the same service: adopt its
 * process details instead of listing it twice. */
static et_target *match_config(et_target_set *s, uint16_t port)
{
    for (unsigned i = 0; i < s->n; i++) {
        et_target *t = &s->t[i];
        if (t->source == ET_SRC_CONFIG && t->port == port && t->pid == 0 &&
            (strstr(t->base_url, "//127.") || strstr(t->base_url, "//[::1]") || strstr(t->base_url, "//localhost")))
            return t;
    }
    return NULL;
}

/* One process being scanned. The scan is split in three so that the agent's loop can run it
 * a budget of entries at a time (et_discover_scan_step): proc_begin (exe, Go build info,
 * listeners), one readlink per fd (up to MAX_FDS_PER_PROC: a Go server may hold 16k), and
 * proc_finish (pod labels, targets). */
typedef struct proc_scan {
    int pid;
    char exe[ET_PATH_MAX];
    char ver[ET_GOVER_MAX];
    uint64_t start, ns;
    int foreign;
    listen_sock ls[MAX_LISTEN_PER_PROC];
    unsigned nls, nfd, owned;
    char fdpath[ET_PATH_MAX + 64];
    DIR *fds;
} proc_scan;

/* 1 = a Go process with listeners whose fds are to be read (c->fds open), 0 = skip it. */
static int proc_begin(et_target_set *out, const et_discover_opts *o, uint64_t self_ns, int pid, proc_scan *c)
{
    const char *root = o->proc_root;
    char path[ET_PATH_MAX + 64];
    char *exe = c->exe, *ver = c->ver;
    c->pid = pid;
    c->fds = NULL;
    c->nls = c->nfd = c->owned = 0;
    snprintf(path, sizeof(path), "%s/%d/exe", root, pid);
    if (dsc_readlink_s(path, exe, sizeof(c->exe)) <= 0) {
        if (errno == EACCES || errno == EPERM)
            out->unreadable++;
        return 0; /* kernel thread, or gone */
    }
    /* A binary replaced under a running process reads "... (deleted)"; the identity should
     * not change because of it. */
    size_t el = strlen(exe);
    if (el > 10 && !strcmp(exe + el - 10, " (deleted)"))
        exe[el - 10] = 0;
    int go = et_elf_go_version_path(path, ver, sizeof(c->ver));
    if (go != 1)
        return 0;
    out->go_procs++;

    char text[1024];
    uint64_t start = 0;
    snprintf(path, sizeof(path), "%s/%d/stat", root, pid);
    ssize_t n = dsc_read_small(path, text, sizeof(text));
    if (n > 0)
        et_parse_stat_starttime(text, (size_t)n, &start);

    c->start = start;
    snprintf(path, sizeof(path), "%s/%d/ns/net", root, pid);
    c->ns = dsc_ns_inode(path);
    c->foreign = c->ns != 0 && self_ns != 0 && c->ns != self_ns;

    snprintf(path, sizeof(path), "%s/%d/net/tcp", root, pid);
    c->nls = read_listeners(path, 0, c->ls, c->nls, MAX_LISTEN_PER_PROC);
    snprintf(path, sizeof(path), "%s/%d/net/tcp6", root, pid);
    c->nls = read_listeners(path, 1, c->ls, c->nls, MAX_LISTEN_PER_PROC);
    if (c->nls == 0)
        return 0;

    /* Which of the namespace's listeners belong to this process: its fds name socket inodes. */
    snprintf(c->fdpath, sizeof(c->fdpath), "%s/%d/fd", root, pid);
    c->fds = opendir(c->fdpath);
    if (!c->fds) {
        out->unreadable++;
        return 0;
    }
    return 1;
}

/* Reads up to budget fds of the process; 1 when its fds are all read (c->fds closed). */
static int proc_fds(proc_scan *c, unsigned *budget)
{
    struct dirent *de;
    while (*budget) {
        if (c->nfd >= MAX_FDS_PER_PROC || (de = readdir(c->fds)) == NULL) {
            closedir(c->fds);
            c->fds = NULL;
            return 1;
        }
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        c->nfd++;
        (*budget)--;
        char fdp[ET_PATH_MAX + 64 + 260], link[64];
        snprintf(fdp, sizeof(fdp), "%s/%s", c->fdpath, de->d_name);
        if (dsc_readlink_s(fdp, link, sizeof(link)) <= 0)
            continue;
        uint64_t ino = dsc_bracket_number(link, "socket");
        if (!ino)
            continue;
        for (unsigned i = 0; i < c->nls; i++)
            if (c->ls[i].s.inode == ino && !c->ls[i].owned) {
                c->ls[i].owned = 1;
                c->owned++;
            }
    }
    return 0;
}

static void proc_finish(et_target_set *out, const et_discover_opts *o, proc_scan *c)
{
    if (c->owned == 0)
        return;
    const char *root = o->proc_root;
    int pid = c->pid, foreign = c->foreign;
    const char *exe = c->exe, *ver = c->ver;
    uint64_t start = c->start, ns = c->ns;
    listen_sock *ls = c->ls;
    unsigned nls = c->nls;

    pod_info pi;
    dsc_pod_lookup(root, o->run_root, pid, &pi);
    if (pi.annotated && pi.annot_scrape_seen && !pi.annot_any_scrape) {
        /* Every profiles.grafana.com/<type>.scrape says "false": the pod opted out. */
        et_debug("discover: PID %d: pod %s/%s opted out of profiling by annotation", pid, pi.ns, pi.pod);
        return;
    }

    for (unsigned i = 0; i < nls; i++) {
        if (!ls[i].owned)
            continue;
        uint16_t port = ls[i].s.port;
        /* one candidate per port: a dual-stack pair lists it twice */
        int dup = 0;
        for (unsigned j = 0; j < i; j++)
            if (ls[j].owned && ls[j].s.port == port)
                dup = 1;
        if (dup)
            continue;
        if (pi.annotated && pi.annot_port && pi.annot_port != port)
            continue; /* annotations name the pprof port: the others are the app's */
        static const uint8_t fe80[2] = { 0xfe, 0x80 };
        if (ls[i].s.family == AF_INET6 && !memcmp(ls[i].s.addr, fe80, 2))
            continue; /* link-local needs a scope id; pprof is never served only there */
        char where[64];
        addr_text(&ls[i].s, where, sizeof(where));
        if (!foreign) {
            et_target *ct = match_config(out, port);
            if (ct) {
                set_incarnation(ct, pid, start);
                et_strlcpy(ct->exe, exe, sizeof(ct->exe));
                et_strlcpy(ct->go_version, ver, sizeof(ct->go_version));
                ct->netns_ino = ns;
                size_t rl = strlen(ct->reason);
                snprintf(ct->reason + rl, sizeof(ct->reason) - rl, "; served by PID %d (%s, %s) on %s", pid, exe,
                         ver[0] ? ver : "Go", where);
                continue;
            }
        }
        et_target *t = new_target(out);
        if (!t)
            return;
        t->source = pi.in_pod ? ET_SRC_POD : ET_SRC_PROC;
        set_incarnation(t, pid, start);
        et_strlcpy(t->exe, exe, sizeof(t->exe));
        et_strlcpy(t->go_version, ver, sizeof(t->go_version));
        t->port = port;
        t->netns_ino = ns;
        t->foreign_netns = foreign;
        char host[INET6_ADDRSTRLEN + 2];
        addr_to_host(&ls[i].s, host, sizeof(host));
        snprintf(t->base_url, sizeof(t->base_url), "http://%s:%u", host, (unsigned)port);
        const char *base = strrchr(exe, '/');
        base = base ? base + 1 : exe;
        if (pi.in_pod) {
            et_strlcpy(t->k8s_namespace, pi.ns, sizeof(t->k8s_namespace));
            et_strlcpy(t->k8s_pod, pi.pod, sizeof(t->k8s_pod));
            et_strlcpy(t->k8s_container, pi.container, sizeof(t->k8s_container));
            et_strlcpy(t->pod_uid, pi.cg.pod_uid, sizeof(t->pod_uid));
            et_strlcpy(t->container_id, pi.cg.container_id, sizeof(t->container_id));
        }
        if (pi.in_pod && pi.ns[0] && pi.pod[0]) {
            set_identity(t, "k8s:%s/%s/%s:%u", pi.ns, pi.pod, pi.container[0] ? pi.container : base, (unsigned)port);
            et_strlcpy(t->name, pi.container[0] ? pi.container : base, sizeof(t->name));
        } else if (pi.in_pod && pi.cg.pod_uid[0]) {
            /* no runtime state readable: the pod uid is stable for the pod's life */
            set_identity(t, "k8s-uid:%s/%s:%u", pi.cg.pod_uid, base, (unsigned)port);
            et_strlcpy(t->name, base, sizeof(t->name));
        } else {
            set_identity(t, "exe:%s:%u", exe, (unsigned)port);
            et_strlcpy(t->name, base, sizeof(t->name));
        }
        if (pi.annotated) {
            t->annotated = 1;
            if (pi.annot_path[0])
                et_strlcpy(t->pprof_prefix, pi.annot_path, sizeof(t->pprof_prefix));
            if (pi.annot_profiles)
                t->profiles = pi.annot_profiles;
        }
        int off = snprintf(t->reason, sizeof(t->reason), "%s ELF %s (PID %d) listens on %s", ver[0] ? ver : "Go", exe,
                           pid, where);
        if (off > 0 && (size_t)off < sizeof(t->reason) && pi.in_pod) {
            off += snprintf(t->reason + off, sizeof(t->reason) - (size_t)off, "; pod %s/%s container %s (cgroup%s)",
                            pi.ns[0] ? pi.ns : "?", pi.pod[0] ? pi.pod : pi.cg.pod_uid,
                            pi.container[0] ? pi.container : "?", pi.statefile[0] ? " + containerd config.json" : " only");
        }
        if (off > 0 && (size_t)off < sizeof(t->reason) && foreign)
            off += snprintf(t->reason + off, sizeof(t->reason) - (size_t)off, "; via its network namespace net:[%" PRIu64 "]",
                            ns);
        if (off > 0 && (size_t)off < sizeof(t->reason) && pi.annotated)
            snprintf(t->reason + off, sizeof(t->reason) - (size_t)off, "; profiles.grafana.com annotations");
    }
}

int et_discover_scan_start(et_scan_job *j, const et_config *cfg, const et_discover_opts *o, et_target_set *out)
{
    memset(j, 0, sizeof(*j));
    if (o)
        j->opts = *o;
    else
        et_discover_opts_default(&j->opts);
    j->out = out;
    memset(out, 0, sizeof(*out));
    if (cfg)
        for (uint32_t i = 0; i < cfg->ntargets && i < ET_MAX_CONF_TARGETS; i++)
            add_config_target(out, &cfg->targets[i]);
    if (!j->opts.scan_proc) {
        j->done = 1;
        return (int)out->n;
    }
    if (!j->opts.proc_root)
        j->opts.proc_root = "/proc";
    j->self_ns = j->opts.self_netns_ino ? j->opts.self_netns_ino : dsc_ns_inode("/proc/self/ns/net");
    j->self_pid = j->opts.self_pid ? j->opts.self_pid : (int)getpid();
    j->proc_dir = opendir(j->opts.proc_root);
    if (!j->proc_dir) {
        et_error("discover: cannot read %s: %s", j->opts.proc_root, strerror(errno));
        j->done = 1;
        return -1;
    }
    j->cur = malloc(sizeof(proc_scan));
    if (!j->cur) {
        closedir(j->proc_dir);
        j->proc_dir = NULL;
        j->done = 1;
        return -1;
    }
    ((proc_scan *)j->cur)->fds = NULL;
    return (int)out->n;
}

/* What a process costs before its fds, in budget entries: readlink of exe, the ELF build-info
 * read, stat, the namespace link and two listener tables. */
#define PROC_BEGIN_COST 8u

int et_discover_scan_step(et_scan_job *j, unsigned budget)
{
    if (j->done)
        return 1;
    proc_scan *c = j->cur;
    while (budget) {
        if (c->fds) {
            unsigned before = budget;
            int finished = proc_fds(c, &budget);
            j->entries += before - budget;
            if (finished)
                proc_finish(j->out, &j->opts, c);
            continue;
        }
        struct dirent *de = readdir(j->proc_dir);
        if (!de) {
            et_discover_scan_abort(j);
            return 1;
        }
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid > 0x3fffffff || pid == j->self_pid)
            continue;
        j->out->procs_scanned++;
        budget -= ET_MIN(budget, PROC_BEGIN_COST);
        j->entries += PROC_BEGIN_COST;
        proc_begin(j->out, &j->opts, j->self_ns, (int)pid, c);
    }
    return 0;
}

void et_discover_scan_abort(et_scan_job *j)
{
    proc_scan *c = j->cur;
    if (c && c->fds)
        closedir(c->fds);
    free(c);
    j->cur = NULL;
    if (j->proc_dir)
        closedir(j->proc_dir);
    j->proc_dir = NULL;
    j->done = 1;
}

int et_discover_scan(const et_config *cfg, const et_discover_opts *o, et_target_set *out)
{
    et_scan_job j;
    int n = et_discover_scan_start(&j, cfg, o, out);
    if (n < 0)
        return -1;
    while (!et_discover_scan_step(&j, UINT32_MAX))
        ;
    return (int)out->n;
}

void et_target_set_compact(et_target_set *set)
{
    unsigned w = 0;
    for (unsigned r = 0; r < set->n; r++) {
        if (set->t[r].source != ET_SRC_CONFIG && set->t[r].confirmed == ET_CONFIRM_FAILED)
            continue;
        if (w != r)
            set->t[w] = set->t[r];
        w++;
    }
    set->n = w;
}

