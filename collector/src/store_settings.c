/* store_settings.c - central settings at the collector (store.h, "central settings"): the
 * fleet set and each device's set, versioned per scope; what each device reported applying or
 * refusing (snapshot key 18); and the merged document handed to a device in its answers.
 *
 * Tables (store schema 6): settings(scope, version, entries JSON, updated_ms) with scope ''
 * for the fleet, else a device id; settings_state(device, seq, applied / refused versions,
 * reason). A device with a settings_state row has written snapshot schema 3, so it reads the
 * settings key of the command document; an older agent is never sent one (it would refuse
 * the whole document, commands included). On either backend (store_sq.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "store_sq.h"

/* {"agent.interval":"10s","agent.allow":["a","b"],...} into entries appended to out, with
 * the wire's rules on names, repeats and lengths. A name already in out (from the fleet set)
 * is replaced: the device's set wins over the fleet's. */
static int add_entries(et_settings *out, json_t *o, char *err, size_t errlen)
{
    if (!json_is_object(o)) {
        snprintf(err, errlen, "settings: expected an object of \"SECTION.KEY\": value");
        return -1;
    }
    const char *name;
    json_t *v;
    json_object_foreach(o, name, v)
    {
        unsigned k = 0;
        for (unsigned i = 0; i < out->n; i++) /* drop what a lower scope said for this name */
            if (strcmp(out->e[i].name, name))
                out->e[k++] = out->e[i];
        out->n = k;
        size_t nv = json_is_array(v) ? json_array_size(v) : 1;
        if (json_is_array(v) && strcmp(name, "agent.allow")) {
            snprintf(err, errlen, "setting '%.60s': only agent.allow takes a list", name);
            return -1;
        }
        for (size_t i = 0; i < nv; i++) {
            json_t *x = json_is_array(v) ? json_array_get(v, i) : v;
            if (!json_is_string(x)) {
                snprintf(err, errlen, "setting '%.60s': values are strings, as in agent.conf (\"30s\", \"16M\")", name);
                return -1;
            }
            if (out->n >= ET_SET_MAX) {
                snprintf(err, errlen, "more than %d settings", ET_SET_MAX);
                return -1;
            }
            et_setting *e = &out->e[out->n++];
            if ((size_t)snprintf(e->name, sizeof e->name, "%s", name) >= sizeof e->name ||
                (size_t)snprintf(e->value, sizeof e->value, "%s", json_string_value(x)) >= sizeof e->value) {
                snprintf(err, errlen, "setting '%.60s': name or value too long", name);
                return -1;
            }
        }
    }
    return et_settings_check(out, err, errlen);
}

/* The stored set of SCOPE ('' = fleet): version (0 = none) and entries (NULL = none; the
 * caller decrefs). 0 or -1. */
static int load_scope(coll_store *s, const char *scope, int64_t *version, json_t **entries, int64_t *updated)
{
    *version = 0;
    *entries = NULL;
    if (updated)
        *updated = 0;
    sq *st = sq_prep(s, "SELECT version, entries, updated_ms FROM settings WHERE scope=?1");
    if (!st)
        return -1;
    sq_text(st, 1, scope);
    int rc = sq_step(st);
    if (rc == 1) {
        *version = sq_int(st, 0);
        const char *text = sq_str(st, 1);
        *entries = text ? json_loads(text, 0, NULL) : NULL;
        if (updated)
            *updated = sq_int(st, 2);
    }
    sq_done(st);
    return rc >= 0 ? 0 : -1;
}

/* The set DEVICE should run: the fleet's entries, the device's on top. 0 or -1 (err). */
static int merged(json_t *fleet, json_t *dev, et_settings *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (fleet && add_entries(out, fleet, err, errlen))
        return -1;
    if (dev && add_entries(out, dev, err, errlen))
        return -1;
    return 0;
}

static int device_known(coll_store *s, const char *device)
{
    sq *st = sq_prep(s, "SELECT 1 FROM devices WHERE id=?1");
    if (!st)
        return -1;
    sq_text(st, 1, device);
    int rc = sq_step(st);
    sq_done(st);
    return rc;
}

int store_settings_put(coll_store *s, const char *device, json_t *settings, int64_t now_ms, int64_t *version,
                       char *err, size_t errlen)
{
    const char *scope = device ? device : "";
    if (device) {
        int k = device_known(s, device);
        if (k <= 0)
            return k < 0 ? -1 : STORE_Q_NOTFOUND;
    }
    /* cheap checks here (names, repeats, lengths, the document's size); the values are the
     * agent's to judge, with its config parser */
    static et_settings set;
    memset(&set, 0, sizeof set);
    if (add_entries(&set, settings, err, errlen))
        return STORE_Q_BADARG;
    uint8_t doc[ET_SET_DOC_MAX * 2];
    size_t n;
    if (et_settings_encode(&set, doc, sizeof doc, &n, err, errlen))
        return STORE_Q_BADARG;
    char *text = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return -1;
    /* the version only ever rises: one counter per scope, bumped in the same transaction */
    int rc = store_begin(s);
    sq *st = rc ? NULL
                : sq_prep(s, "INSERT INTO settings AS x(scope, version, entries, updated_ms) VALUES(?1, 1, ?2, ?3)"
                             " ON CONFLICT(scope) DO UPDATE SET version=x.version+1, entries=?2, updated_ms=?3"
                             " RETURNING version");
    if (st) {
        sq_text(st, 1, scope);
        sq_text(st, 2, text);
        sq_i64(st, 3, now_ms);
        rc = sq_exec(st, version);
    } else {
        rc = -1;
    }
    sq_done(st);
    free(text);
    if (rc || store_commit(s)) {
        snprintf(err, errlen, "database: %s", store_errmsg(s));
        store_rollback(s);
        return -1;
    }
    return STORE_Q_OK;
}

int store_settings_due(coll_store *s, const char *device, int64_t now_ms, int64_t redeliver_ms, uint8_t *doc,
                       size_t cap, size_t *len)
{
    *len = 0;
    int64_t af = 0, ad = 0, rf = 0, rd = 0, sent = 0, sf = 0, sd = 0;
    sq *st = sq_prep(s, "SELECT applied_fleet, applied_device, rejected_fleet, rejected_device, sent_ms,"
                        " sent_fleet, sent_device FROM settings_state WHERE device=?1");
    if (!st)
        return -1;
    sq_text(st, 1, device);
    int rc = sq_step(st);
    if (rc == 1) {
        af = sq_int(st, 0);
        ad = sq_int(st, 1);
        rf = sq_int(st, 2);
        rd = sq_int(st, 3);
        sent = sq_int(st, 4);
        sf = sq_int(st, 5);
        sd = sq_int(st, 6);
    }
    sq_done(st);
    if (rc != 1) /* never wrote schema 3: an agent that would refuse the document */
        return rc;
    int64_t fv, dv;
    json_t *fleet, *dev;
    if (load_scope(s, "", &fv, &fleet, NULL) || load_scope(s, device, &dv, &dev, NULL)) {
        json_decref(fleet);
        return -1;
    }
    int out = 0;
    /* nothing set, already running it, or already refused it (a new version is needed); the
     * same versions handed out lately are not sent again before redeliver_ms: the device's
     * report of them is on its way in a snapshot, and each copy costs up to ET_SET_DOC_MAX
     * bytes of a metered link. New versions go out at once. */
    int recent = sf == fv && sd == dv && sent > now_ms - redeliver_ms;
    if ((fv || dv) && !(fv == af && dv == ad) && !(fv == rf && dv == rd) && !recent) {
        static et_settings set;
        char err[160];
        if (merged(fleet, dev, &set, err, sizeof err) == 0) {
            set.fleet_version = (uint64_t)fv;
            set.device_version = (uint64_t)dv;
            out = et_settings_encode(&set, doc, cap, len, err, sizeof err) == 0 ? 1 : -1;
        } else {
            out = -1;
        }
    }
    json_decref(fleet);
    json_decref(dev);
    if (out == 1) {
        /* marked as handed out now, as store_cmd_due marks commands */
        if (!(st = sq_prep(s, "UPDATE settings_state SET sent_ms=?1, sent_fleet=?2, sent_device=?3 WHERE device=?4")))
            return -1;
        sq_i64(st, 1, now_ms);
        sq_i64(st, 2, fv);
        sq_i64(st, 3, dv);
        sq_text(st, 4, device);
        rc = sq_exec(st, NULL);
        sq_done(st);
        if (rc) {
            *len = 0;
            return -1;
        }
    }
    return out;
}

static int savepoint(coll_store *s, const char *sql)
{
    sq *st = sq_prep(s, sql);
    int rc = st ? sq_exec(st, NULL) : -1;
    sq_done(st);
    return rc;
}

int store_settings_report(coll_store *s, const char *device, const et_snapshot *w, int64_t now_ms)
{
    /* snapshots arrive out of order (findings first): only a later one may replace the state */
    /* inside a batch, in its own savepoint: a failure here must not take the batch's snapshots
     * with it (on PostgreSQL an error aborts the whole transaction otherwise) */
    int sp = store_in_txn(s);
    if (sp && savepoint(s, "SAVEPOINT settings_report"))
        return -1;
    sq *st = sq_prep(s, "INSERT INTO settings_state AS x(device, seq, reported_ms, applied_fleet, applied_device,"
                        " rejected_fleet, rejected_device, reason) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)"
                        " ON CONFLICT(device) DO UPDATE SET seq=?2, reported_ms=?3, applied_fleet=?4,"
                        " applied_device=?5, rejected_fleet=?6, rejected_device=?7, reason=?8 WHERE x.seq<=?2");
    if (!st)
        return -1;
    sq_text(st, 1, device);
    sq_i64(st, 2, (int64_t)w->seq);
    sq_i64(st, 3, now_ms);
    sq_i64(st, 4, (int64_t)w->set_fleet);
    sq_i64(st, 5, (int64_t)w->set_device);
    sq_i64(st, 6, (int64_t)w->set_rej_fleet);
    sq_i64(st, 7, (int64_t)w->set_rej_device);
    sq_text(st, 8, w->set_reason);
    int rc = sq_exec(st, NULL);
    sq_done(st);
    if (sp && rc)
        savepoint(s, "ROLLBACK TO settings_report");
    if (sp)
        savepoint(s, "RELEASE settings_report");
    return rc;
}

int store_q_settings(coll_store *s, const char *device, json_t **out)
{
    *out = NULL;
    if (device) {
        int k = device_known(s, device);
        if (k <= 0)
            return k < 0 ? -1 : STORE_Q_NOTFOUND;
    }
    int64_t fv, dv = 0, fu, du = 0;
    json_t *fleet, *dev = NULL;
    if (load_scope(s, "", &fv, &fleet, &fu) || (device && load_scope(s, device, &dv, &dev, &du))) {
        json_decref(fleet);
        return -1;
    }
    json_t *o = json_object();
    if (!device) {
        json_object_set_new(o, "scope", json_string("fleet"));
        json_object_set_new(o, "version", json_integer(fv));
        json_object_set_new(o, "settings", fleet ? fleet : json_object());
        json_object_set_new(o, "updated_ms", fu ? json_integer(fu) : json_null());
        *out = o;
        return STORE_Q_OK;
    }
    json_object_set_new(o, "scope", json_string("device"));
    json_object_set_new(o, "device", json_string(device));
    json_object_set_new(o, "version", json_integer(dv));
    json_object_set_new(o, "fleet_version", json_integer(fv));
    json_object_set_new(o, "settings", dev ? dev : json_object());
    json_object_set_new(o, "updated_ms", du ? json_integer(du) : json_null());
    /* what the device will be sent: the fleet's set with its own on top */
    json_t *eff = fleet ? json_deep_copy(fleet) : json_object();
    json_t *d = json_object_get(o, "settings");
    json_object_update(eff, d);
    json_object_set_new(o, "effective", eff);
    json_decref(fleet);
    sq *st = sq_prep(s, "SELECT applied_fleet, applied_device, rejected_fleet, rejected_device, reason, reported_ms"
                        " FROM settings_state WHERE device=?1");
    if (!st) {
        json_decref(o);
        return -1;
    }
    sq_text(st, 1, device);
    int rc = sq_step(st);
    if (rc == 1) {
        int64_t af = sq_int(st, 0), ad = sq_int(st, 1);
        int64_t rf = sq_int(st, 2), rd = sq_int(st, 3);
        const char *reason = sq_str(st, 4) ? sq_str(st, 4) : "";
        json_object_set_new(o, "applied", json_pack("{s:I,s:I}", "fleet", (json_int_t)af, "device", (json_int_t)ad));
        json_object_set_new(o, "rejected",
                            rf || rd || *reason ? json_pack("{s:I,s:I,s:s}", "fleet", (json_int_t)rf, "device",
                                                            (json_int_t)rd, "reason", reason)
                                                : json_null());
        json_object_set_new(o, "reported_ms", json_integer(sq_int(st, 5)));
        json_object_set_new(o, "in_sync", json_boolean(af == fv && ad == dv));
    } else {
        /* no schema 3 snapshot yet: an agent that does not take central settings (or none yet) */
        json_object_set_new(o, "applied", json_null());
        json_object_set_new(o, "rejected", json_null());
        json_object_set_new(o, "reported_ms", json_null());
        json_object_set_new(o, "in_sync", json_false());
    }
    sq_done(st);
    if (rc < 0) {
        json_decref(o);
        return -1;
    }
    *out = o;
    return STORE_Q_OK;
}
