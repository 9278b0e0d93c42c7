/* uplink_creds.c - the credentials-file watch (see uplink_creds.h). No I/O beyond one stat()
 * per poll unless the file changed; never blocks (a local file of a few hundred bytes). */
#include "uplink_creds.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/platform_util.h>

#include "base.h"

void et_creds_wipe(void *p, size_t n)
{
    mbedtls_platform_zeroize(p, n);
}

void et_creds_watch_init(et_creds_watch *w, const char *path)
{
    memset(w, 0, sizeof(*w));
    et_strlcpy(w->path, path, sizeof(w->path));
}

int et_creds_path_in_dir(const char *dir, const char *device_id, char *out, size_t cap)
{
    /* The id names a file inside dir: it must not climb out of it. */
    if (!device_id[0] || strchr(device_id, '/') || !strcmp(device_id, ".") || !strcmp(device_id, ".."))
        return -1;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    int n = snprintf(out, cap, "%.*s/%s", (int)dl, dir, device_id);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int64_t ts_ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

int et_creds_poll(et_creds_watch *w, const et_uplink_params *base, et_uplink_params *out, char *err, size_t errlen)
{
    struct stat sb;
    /* stat() follows the symlinks of a Secret volume: a key update is a new inode. */
    int st = stat(w->path, &sb);
    if (st != 0 || !S_ISREG(sb.st_mode)) {
        int was_reported = w->missing_reported;
        snprintf(err, errlen, "%s", st != 0 ? strerror(errno) : "not a regular file");
        w->seen = 0; /* when it comes back, whatever it holds is read */
        w->missing_reported = 1;
        return was_reported ? ET_CREDS_UNCHANGED : ET_CREDS_MISSING;
    }
    et_creds_stamp s = {sb.st_dev, sb.st_ino, sb.st_size, ts_ns(&sb.st_mtim), ts_ns(&sb.st_ctim)};
    if (w->seen && !memcmp(&s, &w->stamp, sizeof(s)))
        return ET_CREDS_UNCHANGED;
    w->stamp = s;
    w->seen = 1;
    if (access(w->path, R_OK) != 0) {
        /* wrong owner or mode: as good as missing, but said with its reason; a chmod changes
         * the ctime, so the file is tried again then */
        snprintf(err, errlen, "%s", strerror(errno));
        w->missing_reported = 1;
        w->load_errors++;
        return ET_CREDS_MISSING;
    }
    w->missing_reported = 0;
    /* Loaded into a scratch copy so that a malformed file never touches the keys in use. */
    et_uplink_params tmp = *base;
    tmp.device_id[0] = 0;
    tmp.psk_len = 0;
    int rc = et_uplink_load_credentials(w->path, &tmp, err, errlen);
    if (rc != 0) {
        et_creds_wipe(&tmp, sizeof(tmp));
        w->load_errors++;
        return ET_CREDS_BAD;
    }
    if (sb.st_mode & S_IROTH) {
        w->world_readable++;
        et_warn("credentials %s: readable by every user (mode %03o): its PSK lets anyone pose as this gateway; "
                "chmod 600 it", w->path, (unsigned)(sb.st_mode & 0777));
    }
    *out = tmp;
    et_creds_wipe(&tmp, sizeof(tmp));
    w->loads++;
    return ET_CREDS_LOADED;
}
