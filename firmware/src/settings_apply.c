/* settings_apply.c - merge, validate and keep central settings (settings_apply.h). */
#include "settings_apply.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "settings_file.h"

int et_settings_merge(const et_config *local, const et_settings *set, et_config *out, char *err, size_t errlen)
{
    *out = *local;
    int allow_replaced = 0;
    for (unsigned i = 0; i < set->n; i++) {
        const et_setting *e = &set->e[i];
        char sec[80], key[32], why[160];
        if (et_settings_split(e->name, sec, sizeof sec, key, sizeof key, err, errlen))
            return -1;
        if (et_config_pinned(local, e->name))
            continue; /* the operator pinned it in agent.conf: the file wins */
        /* a list in a set replaces the file's list (else nothing could ever be removed) */
        if (!strcmp(e->name, "agent.allow") && !allow_replaced) {
            out->nallow = 0;
            allow_replaced = 1;
        }
        if (et_config_set(out, sec, key, e->value, e->name, why, sizeof why)) {
            snprintf(err, errlen, "%s", why);
            return -1;
        }
    }
    return 0;
}

void et_settings_state_init(et_settings_state *st, const char *spool_dir)
{
    memset(st, 0, sizeof *st);
    snprintf(st->path, sizeof st->path, "%s/settings", spool_dir);
}

/* The applied document and the kept refusal into the file: tmp + fsync + rename, so a power
 * cut leaves the old file or the new one, never half. Bytes written, or -1. */
static long persist(et_settings_state *st)
{
    static et_settings_kept k; /* ~650 bytes: not on the answer handler's stack */
    memcpy(k.doc, st->doc, st->doclen);
    k.doclen = st->doclen;
    k.rej_fleet = st->rej_fleet;
    k.rej_device = st->rej_device;
    et_strlcpy(k.reason, st->reason, sizeof k.reason);
    uint8_t buf[ET_SET_FILE_MAX];
    size_t len;
    if (et_settings_file_encode(&k, buf, sizeof buf, &len))
        return -1;
    char tmp[sizeof st->path + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", st->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = write(fd, buf, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, st->path) != 0) {
        unlink(tmp);
        return -1;
    }
    st->kept_rej_fleet = st->rej_fleet;
    st->kept_rej_device = st->rej_device;
    return (long)len;
}

/* persist, charging the flash bytes to the spool's account (sp may be NULL) */
static void keep(et_settings_state *st, spool *sp, const char *what)
{
    long w = persist(st);
    if (w < 0)
        et_warn("settings: cannot keep %s (%s): %s until the next restart", st->path, strerror(errno), what);
    else if (sp)
        spool_account_write(sp, (uint64_t)w);
}

static int refuse(et_settings_state *st, uint64_t fleet, uint64_t device, const char *why, spool *sp)
{
    st->rej_fleet = fleet;
    st->rej_device = device;
    et_strlcpy(st->reason, why, sizeof st->reason);
    st->refused++;
    et_warn("settings: refused fleet v%llu / device v%llu: %s; keeping the settings in use (%llu refused so far)",
            (unsigned long long)fleet, (unsigned long long)device, why, (unsigned long long)st->refused);
    /* a pair worth remembering (a document that did not decode names none), not yet on flash */
    if ((fleet || device) && (fleet != st->kept_rej_fleet || device != st->kept_rej_device))
        keep(st, sp, "refused");
    return ET_SET_REFUSED;
}

int et_settings_take(et_settings_state *st, const et_config *local, const uint8_t *doc, size_t len, et_config *out,
                     spool *sp)
{
    static et_settings set; /* ~5 KB: not on the answer handler's stack */
    char err[ET_SET_REASON_MAX];
    if (et_settings_decode(doc, len, &set, err, sizeof err)) {
        char why[ET_SET_REASON_MAX + 16];
        snprintf(why, sizeof why, "document: %s", err);
        return refuse(st, 0, 0, why, sp);
    }
    if ((set.fleet_version == st->fleet && set.device_version == st->device) ||
        (set.fleet_version == st->rej_fleet && set.device_version == st->rej_device))
        return ET_SET_SAME; /* re-sent until our snapshots report it: nothing new */
    if (et_settings_merge(local, &set, out, err, sizeof err))
        return refuse(st, set.fleet_version, set.device_version, err, sp);
    memcpy(st->doc, doc, len); /* len <= ET_SET_DOC_MAX: it decoded */
    st->doclen = len;
    st->fleet = set.fleet_version;
    st->device = set.device_version;
    st->rej_fleet = st->rej_device = 0;
    st->reason[0] = 0;
    keep(st, sp, "applied");
    st->applied++;
    et_info("settings: applied fleet v%llu / device v%llu (%u entries)", (unsigned long long)st->fleet,
            (unsigned long long)st->device, set.n);
    return ET_SET_APPLIED;
}

int et_settings_restore(et_settings_state *st, const et_config *local, et_config *out)
{
    uint8_t buf[ET_SET_FILE_MAX + 1];
    FILE *f = fopen(st->path, "rb");
    if (!f)
        return ET_SET_SAME;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    static et_settings_kept k;
    static et_settings set;
    char err[ET_SET_REASON_MAX];
    if (et_settings_file_decode(buf, n, &k, err, sizeof err)) {
        /* a file from before refusals were kept: the bare applied document */
        if (et_settings_decode(buf, n, &set, err, sizeof err)) {
            et_warn("settings: %s unreadable (%s): running with agent.conf until the collector sends a set",
                    st->path, err);
            return ET_SET_SAME;
        }
        memset(&k, 0, sizeof k);
        memcpy(k.doc, buf, n);
        k.doclen = n;
    }
    if (k.rej_fleet || k.rej_device) {
        /* reported again from the first snapshot on, so the collector holds the set back */
        st->rej_fleet = st->kept_rej_fleet = k.rej_fleet;
        st->rej_device = st->kept_rej_device = k.rej_device;
        et_strlcpy(st->reason, k.reason, sizeof st->reason);
        et_info("settings: fleet v%llu / device v%llu stay refused: %s", (unsigned long long)k.rej_fleet,
                (unsigned long long)k.rej_device, k.reason);
    }
    if (!k.doclen)
        return ET_SET_SAME;
    if (et_settings_decode(k.doc, k.doclen, &set, err, sizeof err) ||
        et_settings_merge(local, &set, out, err, sizeof err)) {
        /* agent.conf may have changed since (a new pin, a removed target): it stays in charge */
        et_warn("settings: %s no longer applies (%s): running with agent.conf until the collector sends a set",
                st->path, err);
        return ET_SET_SAME;
    }
    memcpy(st->doc, k.doc, k.doclen);
    st->doclen = k.doclen;
    st->fleet = set.fleet_version;
    st->device = set.device_version;
    et_info("settings: restored fleet v%llu / device v%llu from %s", (unsigned long long)st->fleet,
            (unsigned long long)st->device, st->path);
    return ET_SET_APPLIED;
}
