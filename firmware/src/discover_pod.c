/* discover_pod.c - which Kubernetes pod a process runs in, and what its pod says:
 *   - Kubernetes cgroup paths: kubelet's cgroup drivers (systemd: kubepods-<qos>-pod<uid>.slice
 *     with '-' in the uid written as '_'; cgroupfs: kubepods/<qos>/pod<uid>/<container id>).
 *   - containerd CRI annotations in the OCI config.json of each task:
 *     io.kubernetes.cri.sandbox-namespace / sandbox-name / container-name / sandbox-id.
 *   - Pyroscope pod annotations, profiles.grafana.com/<type>.scrape|.port|.path (see
 *     discover.c for where they are documented and when they are visible). */
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

/* ================================================================ cgroup */

static int is_hexstr(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (dsc_hexval(s[i]) < 0)
            return 0;
    return n > 0;
}

static int is_uidish(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (dsc_hexval(s[i]) < 0 && s[i] != '-' && s[i] != '_')
            return 0;
    return n >= 8;
}

static void parse_kube_path(const char *path, size_t n, et_cgroup_info *out)
{
    const char *end = path + n;
    const char *seg = path;
    while (seg < end) {
        while (seg < end && *seg == '/')
            seg++;
        const char *se = seg;
        while (se < end && *se != '/')
            se++;
        size_t sl = (size_t)(se - seg);
        if (sl == 0)
            break;
        /* qos */
        static const char *const qos[] = { "besteffort", "burstable", "guaranteed" };
        for (unsigned q = 0; q < 3; q++) {
            size_t ql = strlen(qos[q]);
            if ((sl == ql && !memcmp(seg, qos[q], ql)) ||
                (sl > 9 + ql && !memcmp(seg, "kubepods-", 9) && !memcmp(seg + 9, qos[q], ql)))
                et_strlcpy(out->qos, qos[q], sizeof(out->qos));
        }
        /* pod uid: cgroupfs "pod<uid>", systemd "kubepods[-qos]-pod<uid_with_underscores>.slice" */
        const char *u = NULL;
        size_t ul = 0;
        if (sl > 3 && !memcmp(seg, "pod", 3) && is_uidish(seg + 3, sl - 3)) {
            u = seg + 3;
            ul = sl - 3;
        } else {
            /* systemd: the unit name ends at ".slice", or at ':' in "slice:runtime:id" */
            const char *ue = memchr(seg, ':', sl);
            ue = ue ? ue : se;
            if (ue - seg > 6 + 8 && !memcmp(seg, "kubepods", 8) && !memcmp(ue - 6, ".slice", 6)) {
                for (const char *q = seg; q + 4 <= ue - 6; q++) {
                    if (!memcmp(q, "-pod", 4)) {
                        u = q + 4;
                        ul = (size_t)((ue - 6) - u);
                        break;
                    }
                }
                if (u && !is_uidish(u, ul))
                    u = NULL;
            }
        }
        if (u && ul < sizeof(out->pod_uid)) {
            for (size_t i = 0; i < ul; i++)
                out->pod_uid[i] = u[i] == '_' ? '-' : u[i];
            out->pod_uid[ul] = 0;
        }
        /* container id: "cri-containerd-<id>.scope", "docker-<id>.scope", "crio-<id>.scope",
         * "...slice:cri-containerd:<id>", or a bare 64-hex segment (cgroupfs) */
        const char *c = seg;
        size_t cl = sl;
        const char *colon = memrchr(seg, ':', sl);
        if (colon) {
            c = colon + 1;
            cl = (size_t)(se - c);
        }
        if (cl > 6 && !memcmp(c + cl - 6, ".scope", 6))
            cl -= 6;
        static const struct {
            const char *prefix;
            const char *runtime;
        } rts[] = { { "cri-containerd-", "containerd" }, { "docker-", "docker" }, { "crio-", "crio" },
                    { "containerd-", "containerd" } };
        const char *rt = "";
        for (unsigned r = 0; r < ET_ARRAY_LEN(rts); r++) {
            size_t pl = strlen(rts[r].prefix);
            if (cl > pl && !memcmp(c, rts[r].prefix, pl)) {
                c += pl;
                cl -= pl;
                rt = rts[r].runtime;
                break;
            }
        }
        if (colon && !*rt && colon > seg) {
            /* "slice:cri-containerd:<id>": runtime name sits between the colons */
            const char *c0 = memrchr(seg, ':', (size_t)(colon - seg));
            if (c0 && (size_t)(colon - c0 - 1) == 14 && !memcmp(c0 + 1, "cri-containerd", 14))
                rt = "containerd";
        }
        if (cl == 64 && is_hexstr(c, cl)) {
            memcpy(out->container_id, c, 64);
            out->container_id[64] = 0;
            et_strlcpy(out->runtime, rt, sizeof(out->runtime));
        }
        seg = se;
    }
}

int et_parse_cgroup(const char *text, size_t n, et_cgroup_info *out)
{
    memset(out, 0, sizeof(*out));
    const char *p = text, *end = text + n;
    int found = 0;
    while (p < end) {
        const char *le = memchr(p, '\n', (size_t)(end - p));
        if (!le)
            le = end;
        /* "hierarchy-ID:controllers:path"; the path itself may contain ':' */
        const char *c1 = memchr(p, ':', (size_t)(le - p));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(le - c1 - 1)) : NULL;
        if (c1 && c2) {
            const char *path = c2 + 1;
            size_t pl = (size_t)(le - path);
            if (pl >= 8 && memmem(path, pl, "kubepods", 8)) {
                et_cgroup_info tmp;
                memset(&tmp, 0, sizeof(tmp));
                parse_kube_path(path, pl, &tmp);
                /* v1 lists the same path once per controller; v2 once. Keep the most complete. */
                if (!found || (tmp.container_id[0] && !out->container_id[0]) || (tmp.pod_uid[0] && !out->pod_uid[0]))
                    *out = tmp;
                found = 1;
            }
        } else if (le > p) {
            if (!found && !c1)
                return -1;
        }
        p = le + 1;
    }
    return found && (out->pod_uid[0] || out->container_id[0]) ? 1 : 0;
}

/* ================================================================ OCI config.json annotations */

typedef struct jcur {
    const char *p, *end;
    int depth;
} jcur;

static void jws(jcur *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
}

/* Reads a JSON string at j->p into out (truncating); -1 if malformed. */
static int jstr(jcur *j, char *out, size_t cap)
{
    if (j->p >= j->end || *j->p != '"')
        return -1;
    j->p++;
    size_t o = 0;
    while (j->p < j->end) {
        char c = *j->p++;
        if (c == '"') {
            if (out)
                out[o] = 0;
            return 0;
        }
        if (c == '\\') {
            if (j->p >= j->end)
                return -1;
            char e = *j->p++;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': {
                if (j->end - j->p < 4)
                    return -1;
                unsigned v = 0;
                for (int i = 0; i < 4; i++) {
                    int h = dsc_hexval(j->p[i]);
                    if (h < 0)
                        return -1;
                    v = (v << 4) | (unsigned)h;
                }
                j->p += 4;
                c = (v >= 0x20 && v < 0x7f) ? (char)v : '?';
                break;
            }
            default: c = e; break; /* \" \\ \/ */
            }
        }
        if (out && o + 1 < cap)
            out[o++] = c;
    }
    return -1;
}

/* Skips one JSON value of any kind. Nesting is capped so hostile input cannot recurse deep:
 * this is iterative over a depth counter. */
static int jskip(jcur *j)
{
    jws(j);
    if (j->p >= j->end)
        return -1;
    if (*j->p == '"')
        return jstr(j, NULL, 0);
    if (*j->p == '{' || *j->p == '[') {
        int depth = 0;
        while (j->p < j->end) {
            char c = *j->p;
            if (c == '"') {
                if (jstr(j, NULL, 0) < 0)
                    return -1;
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if (c == '}' || c == ']') {
                if (--depth == 0) {
                    j->p++;
                    return 0;
                }
            }
            j->p++;
        }
        return -1;
    }
    /* number / true / false / null */
    const char *s = j->p;
    while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']' && *j->p != ' ' && *j->p != '\n' &&
           *j->p != '\r' && *j->p != '\t')
        j->p++;
    return j->p > s ? 0 : -1;
}

int et_oci_annotations(const char *json, size_t n, et_annot_cb cb, void *ud)
{
    jcur j = { json, json + n, 0 };
    char key[256], val[256];
    /* Walk every string token; a key "annotations" followed by ':' '{' starts the object. */
    while (j.p < j.end) {
        if (*j.p != '"') {
            j.p++;
            continue;
        }
        if (jstr(&j, key, sizeof(key)) < 0)
            return -1;
        if (strcmp(key, "annotations") != 0)
            continue;
        jws(&j);
        if (j.p >= j.end || *j.p != ':')
            continue; /* a value that happens to read "annotations" */
        j.p++;
        jws(&j);
        if (j.p >= j.end || *j.p != '{')
            continue;
        j.p++;
        int count = 0;
        for (;;) {
            jws(&j);
            if (j.p >= j.end)
                return -1;
            if (*j.p == '}')
                return count;
            if (jstr(&j, key, sizeof(key)) < 0)
                return -1;
            jws(&j);
            if (j.p >= j.end || *j.p != ':')
                return -1;
            j.p++;
            jws(&j);
            if (j.p < j.end && *j.p == '"') {
                if (jstr(&j, val, sizeof(val)) < 0)
                    return -1;
                if (cb)
                    cb(ud, key, val);
                count++;
            } else if (jskip(&j) < 0) {
                return -1;
            }
            jws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (j.p < j.end && *j.p == '}')
                return count;
            return -1;
        }
    }
    return 0;
}

static void on_annotation(void *ud, const char *k, const char *v)
{
    pod_info *pi = ud;
    if (!strcmp(k, "io.kubernetes.cri.sandbox-namespace"))
        et_strlcpy(pi->ns, v, sizeof(pi->ns));
    else if (!strcmp(k, "io.kubernetes.cri.sandbox-name"))
        et_strlcpy(pi->pod, v, sizeof(pi->pod));
    else if (!strcmp(k, "io.kubernetes.cri.container-name"))
        et_strlcpy(pi->container, v, sizeof(pi->container));
    else if (!strcmp(k, "io.kubernetes.cri.sandbox-id") && strlen(v) == 64)
        et_strlcpy(pi->sandbox_id, v, sizeof(pi->sandbox_id));
    else if (!strncmp(k, "profiles.grafana.com/", 21)) {
        const char *type = k + 21;
        const char *dot = strrchr(type, '.');
        if (!dot)
            return;
        size_t tl = (size_t)(dot - type);
        const char *attr = dot + 1;
        uint32_t bit = 0;
        if (tl == 9 && !memcmp(type, "goroutine", 9))
            bit = ET_P_GOROUTINE;
        else if (tl == 6 && !memcmp(type, "memory", 6))
            bit = ET_P_HEAP;
        if (!strcmp(attr, "scrape")) {
            pi->annot_scrape_seen = 1;
            if (!strcmp(v, "true")) {
                pi->annot_any_scrape = 1;
                pi->annot_profiles |= bit;
            }
            pi->annotated = 1;
        } else if (!strcmp(attr, "port")) {
            long p = strtol(v, NULL, 10);
            if (p > 0 && p < 65536 && (!pi->annot_port || bit == ET_P_GOROUTINE))
                pi->annot_port = (uint16_t)p;
            pi->annotated = 1;
        } else if (!strcmp(attr, "path") && v[0] == '/') {
            /* ".path" names one profile's endpoint, e.g. /custom/pprof/goroutine: its
             * directory is our prefix. Only goroutine/memory paths tell us where pprof is. */
            if (bit) {
                const char *sl = strrchr(v, '/');
                size_t dl = (size_t)(sl - v) + 1;
                if (dl < sizeof(pi->annot_path)) {
                    memcpy(pi->annot_path, v, dl);
                    pi->annot_path[dl] = 0;
                }
            }
            pi->annotated = 1;
        }
    }
}

static int read_oci_state(const char *run_root, const char *id, pod_info *pi, char *found_path, size_t fpsz)
{
    static const char *const roots[] = {
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io",
        "/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io",
    };
    static char json[256 * 1024]; /* single-threaded agent: one buffer, bounded read */
    for (unsigned r = 0; r < ET_ARRAY_LEN(roots); r++) {
        char path[ET_PATH_MAX + 160];
        snprintf(path, sizeof(path), "%s%s/%s/config.json", run_root ? run_root : "", roots[r], id);
        ssize_t n = dsc_read_small(path, json, sizeof(json));
        if (n <= 0)
            continue;
        if (et_oci_annotations(json, (size_t)n, on_annotation, pi) < 0)
            et_debug("discover: %s: malformed JSON", path);
        if (found_path)
            et_strlcpy(found_path, path, fpsz);
        return 0;
    }
    return -1;
}

void dsc_pod_lookup(const char *proc_root, const char *run_root, int pid, pod_info *pi)
{
    char path[ET_PATH_MAX + 32], text[8192];
    memset(pi, 0, sizeof(*pi));
    snprintf(path, sizeof(path), "%s/%d/cgroup", proc_root, pid);
    ssize_t n = dsc_read_small(path, text, sizeof(text));
    if (n <= 0 || et_parse_cgroup(text, (size_t)n, &pi->cg) != 1)
        return;
    pi->in_pod = 1;
    if (!pi->cg.container_id[0])
        return;
    if (read_oci_state(run_root, pi->cg.container_id, pi, pi->statefile, sizeof(pi->statefile)) < 0)
        return;
    /* Pod annotations, when the runtime copies them, may sit only on the sandbox's spec. */
    if (!pi->annotated && pi->sandbox_id[0] && strcmp(pi->sandbox_id, pi->cg.container_id) != 0) {
        pod_info sb;
        memset(&sb, 0, sizeof(sb));
        if (read_oci_state(run_root, pi->sandbox_id, &sb, NULL, 0) == 0 && sb.annotated) {
            pi->annotated = 1;
            pi->annot_port = sb.annot_port;
            pi->annot_profiles = sb.annot_profiles;
            pi->annot_any_scrape = sb.annot_any_scrape;
            pi->annot_scrape_seen = sb.annot_scrape_seen;
            memcpy(pi->annot_path, sb.annot_path, sizeof(pi->annot_path));
        }
    }
}
