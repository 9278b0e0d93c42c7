/* uplink_creds.h - watching the credentials file while the agent runs.
 *
 * A gateway may start before it is provisioned (or, on Kubernetes, before the node's key is
 * added to the Secret), and a key may be rotated while it runs. The agent polls the file's
 * stat() (device, inode, size, mtime, ctime) on a loop timer every few seconds: no inotify,
 * which works on BusyBox, on flash file systems and on Kubernetes Secret volumes (their keys
 * are symlinks swapped in place, so stat() sees a new inode). Only a changed stamp reads the
 * file, so the cost of a quiet tick is one stat().
 *
 *   et_creds_watch w; et_creds_watch_init(&w, "/etc/edgetrace/credentials");
 *   switch (et_creds_poll(&w, &base, &out, err, sizeof err)) { ... }
 *
 * The outcomes are reported once per change of the file, never once per tick, so a missing
 * or broken file does not fill the log. Bad contents never replace good ones: the caller keeps
 * the identity it has. */
#ifndef ET_UPLINK_CREDS_H
#define ET_UPLINK_CREDS_H

#include <stdint.h>
#include <sys/types.h>

#include "uplink.h"

#define ET_CREDS_POLL_MS 2000u

enum et_creds_event {
    ET_CREDS_UNCHANGED = 0, /* same stamp as last time (or the same state): nothing to do */
    ET_CREDS_LOADED,        /* new, valid credentials in *out: use them */
    ET_CREDS_MISSING,       /* absent or unreadable (once per episode); err: the reason, no path */
    ET_CREDS_BAD,           /* the file changed and is malformed: err says where and why (with the
                               path); keep the old ones */
};

typedef struct et_creds_stamp {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns, ctime_ns;
} et_creds_stamp;

typedef struct et_creds_watch {
    char path[280];
    int seen;                /* stamp holds the file's last stamp */
    int missing_reported;    /* ET_CREDS_MISSING returned for the current episode */
    et_creds_stamp stamp;
    uint64_t loads;          /* valid files taken */
    uint64_t load_errors;    /* malformed or unreadable files (each change counted once) */
    uint64_t world_readable; /* loads of a file that others could read (warned) */
} et_creds_watch;

void et_creds_watch_init(et_creds_watch *w, const char *path);
/* DIR/DEVICE_ID (the Kubernetes Secret mounted as a directory, one key per node) into out.
 * -1 if the id is empty, has a '/' or is "." / "..", or the path is too long. */
int et_creds_path_in_dir(const char *dir, const char *device_id, char *out, size_t cap);
/* One look at the file. On ET_CREDS_LOADED *out is *base with the file's fields on top;
 * otherwise *out is untouched. A file others can read is taken (with a warning and a count):
 * refusing it would stop an installed gateway for a mode bit. */
int et_creds_poll(et_creds_watch *w, const et_uplink_params *base, et_uplink_params *out, char *err, size_t errlen);
/* Wipes key material (not optimised away). */
void et_creds_wipe(void *p, size_t n);

#endif
