/* parse_proc.c - /proc/PID/{status,stat,fd} (see parse_proc.h; proc(5)). */
#include "parse_proc.h"
#include "textscan.h"
#include "base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* "Key:\t  1234 kB" -> 1234 */
static int kv_number(const char *s, size_t len, uint64_t *v)
{
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return et_txt_u64(s + i, len - i, v) > 0;
}

int et_proc_parse_status(const char *buf, size_t len, et_procstat *out)
{
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {
        {"VmRSS:", offsetof(et_procstat, vm_rss_kb)},     {"VmHWM:", offsetof(et_procstat, vm_hwm_kb)},
        {"VmSize:", offsetof(et_procstat, vm_size_kb)},   {"RssAnon:", offsetof(et_procstat, rss_anon_kb)},
        {"RssFile:", offsetof(et_procstat, rss_file_kb)},
    };
    int found = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        uint64_t v;
        if (ll > 8 && memcmp(line, "Threads:", 8) == 0) {
            if (kv_number(line + 8, ll - 8, &v)) {
                out->threads = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
                found = 1;
            }
            continue;
        }
        if (ll < 3 || !(line[0] == 'V' || line[0] == 'R'))
            continue;
        for (size_t i = 0; i < ET_ARRAY_LEN(keys); i++) {
            size_t kl = strlen(keys[i].key);
            if (ll > kl && memcmp(line, keys[i].key, kl) == 0) {
                if (kv_number(line + kl, ll - kl, &v)) {
                    memcpy((char *)out + keys[i].off, &v, sizeof(v));
                    if (i == 0)
                        found = 1;
                }
                break;
            }
        }
    }
    return found ? 0 : -1;
}

int et_proc_parse_stat(const char *buf, size_t len, et_procstat *out)
{
    const char *lp = memchr(buf, '(', len);
    const char *rp = memrchr(buf, ')', len);
    if (!lp || !rp || rp < lp)
        return -1;
    /* After ") " comes field 3 (state); we want 14 (utime), 15 (stime), 22 (starttime). */
    size_t i = (size_t)(rp - buf) + 1;
    int field = 2;
    uint64_t utime = 0, stime = 0, start = 0;
    int got = 0;
    while (i < len && field < 22) {
        while (i < len && buf[i] == ' ')
            i++;
        if (i >= len || buf[i] == '\n')
            break;
        field++;
        size_t j = i;
        while (j < len && buf[j] != ' ' && buf[j] != '\n')
            j++;
        if (field == 14 || field == 15 || field == 22) {
            uint64_t v;
            if (et_txt_u64(buf + i, j - i, &v) != j - i)
                return -1;
            if (field == 14)
                utime = v;
            else if (field == 15)
                stime = v;
            else
                start = v;
            got++;
        }
        i = j;
    }
    if (got != 3)
        return -1;
    out->utime_ticks = utime;
    out->stime_ticks = stime;
    out->start_time_ticks = start;
    return 0;
}

/* Reads a small /proc file whole; proc files report size 0, so read until EOF. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    return (ssize_t)n;
}

int et_proc_read(const char *proc_root, int pid, et_procstat *out)
{
    char path[512];
    char buf[4096]; /* status is ~1.5 KiB, stat < 1 KiB */
    memset(out, 0, sizeof(*out));
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "%s/%d/status", proc_root, pid);
    ssize_t n = read_small(path, buf, sizeof(buf));
    if (n <= 0 || et_proc_parse_status(buf, (size_t)n, out) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/%d/stat", proc_root, pid);
    n = read_small(path, buf, sizeof(buf));
    if (n <= 0 || et_proc_parse_stat(buf, (size_t)n, out) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/%d/fd", proc_root, pid);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        uint32_t fds = 0;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                fds++;
        closedir(d);
        out->fds = fds;
    }
    out->present = 1;
    return 0;
}
