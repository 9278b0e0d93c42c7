/* store_pg_findings.c - the part of a snapshot past its row and series on PostgreSQL: sites and
 * their per-snapshot counts, findings with their state machine and history, attachments. The
 * rules are store_put.c's (the event names and the stack's JSON come from its shared helpers);
 * the statements are PostgreSQL's: least/greatest for SQLite's scalar min/max, RETURNING for
 * last_insert_rowid, and one multi-row INSERT for a snapshot's site counts (a round trip per
 * row would cost more than the rest of the snapshot). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg_int.h"

void store_pg_caches_drop(store_pg *p)
{
    memset(p->sc, 0, sizeof(p->sc));
    p->sc_used = 0;
}

/* ---- sites ----------------------------------------------------------------------------- */

static const char SITE_UPSERT[] =
    "INSERT INTO sites AS x(target,key,state,function,file,line,created_by,first_seen)"
    " VALUES($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT(target,key) DO UPDATE SET"
    " state=coalesce(excluded.state,x.state), function=coalesce(excluded.function,x.function),"
    " file=coalesce(excluded.file,x.file), line=coalesce(excluded.line,x.line),"
    " created_by=coalesce(excluded.created_by,x.created_by), first_seen=least(x.first_seen,excluded.first_seen)";

int store_pg_put_sites(store_pg *p, int64_t tid, const et_snapshot *w, int64_t t, int64_t received)
{
    uint32_t n = w->nsites < ET_SNAP_MAX_SITES ? w->nsites : ET_SNAP_MAX_SITES;
    if (!n)
        return 0;
    /* names arrive with full entries only; a reference creates the row nameless */
    for (uint32_t i = 0; i < n; i++) {
        const et_snap_site *si = &w->sites[i];
        scache_ent *c = store_scache_find(p->sc, &p->sc_used, tid, si->key);
        int named = !si->ref;
        if (c->target && (c->named || !named))
            continue;
        pg_args a = {0};
        pga_i64(&a, tid);
        pga_i64(&a, si->key);
        if (named) {
            pga_text(&a, et_snap_state_name(si->state));
            pga_text(&a, si->func);
            pga_text(&a, si->file);
            pga_i64(&a, si->line);
            pga_text(&a, si->created_by);
        } else {
            for (int k = 0; k < 5; k++)
                pga_null(&a);
        }
        pga_i64(&a, t);
        if (pg_exec(p, SITE_UPSERT, &a))
            return -1;
        if (!c->target)
            p->sc_used++;
        c->target = tid;
        c->key = si->key;
        c->named = (uint8_t)(c->named | named);
    }
    /* integers only: printed into the statement, no escaping involved */
    char sql[128 + ET_SNAP_MAX_SITES * 120];
    size_t len = (size_t)snprintf(sql, sizeof(sql),
                                  "INSERT INTO site_counts(target,key,t,count,max_wait_min,received) VALUES");
    for (uint32_t i = 0; i < n && len < sizeof(sql); i++) {
        const et_snap_site *si = &w->sites[i];
        len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s(%lld,%lld,%lld,%lld,%lld,%lld)", i ? "," : "",
                                (long long)tid, (long long)si->key, (long long)t, (long long)si->count,
                                (long long)si->max_wait_min, (long long)received);
    }
    return len < sizeof(sql) ? pg_exec(p, sql, NULL) : -1;
}

/* ---- findings -------------------------------------------------------------------------- */

static const char FINDING_INS[] =
    "INSERT INTO findings(device,target,fingerprint,kind,confidence,state,evidence,function,file,line,"
    "created_by,count,max_count,growth_per_min,oldest_wait_s,value,first_seen,last_seen,snapshots,"
    "last_snapshot,status,stack,go_version) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$12,$13,$14,$15,"
    "$16,$16,1,$17,'open',$18,$19) RETURNING id";

/* Out-of-order arrivals (after an outage): the last values are those of the newest snapshot. */
static const char FINDING_UPD[] =
    "UPDATE findings SET snapshots=snapshots+1, first_seen=least(first_seen,$14),"
    " kind=CASE WHEN $14>=last_seen THEN $2 ELSE kind END,"
    " confidence=CASE WHEN $14>=last_seen THEN $3 ELSE confidence END,"
    " state=CASE WHEN $14>=last_seen THEN $4 ELSE state END,"
    " evidence=evidence|$5,"
    " function=CASE WHEN $14>=last_seen THEN $6 ELSE function END,"
    " file=CASE WHEN $14>=last_seen THEN $7 ELSE file END,"
    " line=CASE WHEN $14>=last_seen THEN $8 ELSE line END,"
    " created_by=CASE WHEN $14>=last_seen THEN $9 ELSE created_by END,"
    " count=CASE WHEN $14>=last_seen THEN $10 ELSE count END,"
    " max_count=greatest(max_count,$10),"
    " growth_per_min=CASE WHEN $14>=last_seen THEN $11 ELSE growth_per_min END,"
    " oldest_wait_s=greatest(oldest_wait_s,$12),"
    " value=CASE WHEN $14>=last_seen THEN $13 ELSE value END,"
    " last_snapshot=CASE WHEN $14>=last_seen THEN $15 ELSE last_snapshot END,"
    " stack=CASE WHEN $14>=last_seen THEN $16 ELSE stack END,"
    " go_version=CASE WHEN $14>=last_seen THEN $17 ELSE go_version END,"
    " status=coalesce($18,status), cleared_at=CASE WHEN $18='open' THEN NULL ELSE cleared_at END,"
    " last_seen=greatest(last_seen,$14) WHERE id=$1";

static int event(store_pg *p, int64_t fid, int64_t t, const char *ev, const char *conf)
{
    pg_args a = {0};
    pga_i64(&a, fid);
    pga_i64(&a, t);
    pga_text(&a, ev);
    pga_text(&a, conf);
    return pg_exec(p, "INSERT INTO finding_events(finding,t,event,confidence) VALUES($1,$2,$3,$4)", &a);
}

static void cpy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* the finding's figures, in FINDING_UPD's order $2..$13 ($14..$17 follow) */
static void finding_args(pg_args *a, const et_finding *f, const char *conf, const char *gstate)
{
    pga_text(a, store_kind_name(f->kind));
    pga_text(a, conf);
    pga_text(a, gstate);
    pga_i64(a, f->evidence);
    pga_text(a, f->site.func);
    pga_text(a, f->site.file);
    pga_i64(a, f->site.line);
    pga_text(a, f->created_by);
    pga_i64(a, f->count);
    pga_f64(a, f->growth_per_min);
    pga_f64(a, f->oldest_wait_s);
    pga_u64(a, f->value);
}

static int put_finding(store_pg *p, const char *device, int64_t tid, const et_snapshot *w, const et_finding *f,
                       const char *snapshot_id, int64_t t)
{
    char stack[STORE_STACK_JSON_MAX];
    const char *conf = store_confidence_name(f->confidence);
    const char *gstate = f->kind == 0 || f->kind == 1 ? et_snap_state_name(f->state) : "";
    char fp[sizeof(f->fingerprint) + 1];
    memcpy(fp, f->fingerprint, sizeof(f->fingerprint));
    fp[sizeof(f->fingerprint)] = 0;
    store_stack_json(f, stack, sizeof(stack));

    pg_args a = {0};
    pga_text(&a, device);
    pga_i64(&a, tid);
    pga_text(&a, fp);
    /* FOR UPDATE: two nodes storing sightings of one finding at once apply them one after the other */
    PGresult *r = pg_run(p,
                         "SELECT id, confidence, status, last_seen, coalesce(cleared_at,0) FROM findings"
                         " WHERE device=$1 AND target=$2 AND fingerprint=$3 FOR UPDATE",
                         &a);
    if (!r)
        return -1;
    int64_t fid = 0, last_seen = 0, cleared_at = 0;
    char oldconf[16] = "", status[16] = "";
    if (PQntuples(r) == 1) {
        fid = pg_i64(r, 0, 0);
        cpy(oldconf, sizeof(oldconf), PQgetvalue(r, 0, 1));
        cpy(status, sizeof(status), PQgetvalue(r, 0, 2));
        last_seen = pg_i64(r, 0, 3);
        cleared_at = pg_i64(r, 0, 4);
    }
    PQclear(r);
    int existing = fid != 0;
    if (!existing) {
        /* $1..$3 are already device, target, fingerprint */
        finding_args(&a, f, conf, gstate);
        pga_i64(&a, t);
        pga_text(&a, snapshot_id);
        pga_text(&a, stack);
        pga_text(&a, w->go_version);
        if (!(r = pg_run(p, FINDING_INS, &a)))
            return -1;
        fid = pg_i64(r, 0, 0);
        PQclear(r);
        if (event(p, fid, t, "opened", conf))
            return -1;
    } else {
        int reopen;
        const char *ev = store_finding_event(status, cleared_at, last_seen, oldconf, conf, t, &reopen);
        if (ev && event(p, fid, t, ev, conf))
            return -1;
        a.n = 0;
        pga_i64(&a, fid);
        finding_args(&a, f, conf, gstate);
        pga_i64(&a, t);
        pga_text(&a, snapshot_id);
        pga_text(&a, stack);
        pga_text(&a, w->go_version);
        if (reopen)
            pga_text(&a, "open");
        else
            pga_null(&a);
        if (pg_exec(p, FINDING_UPD, &a))
            return -1;
    }
    if ((f->survivors_of || f->oldest_id) && (!existing || t >= last_seen)) {
        char hist[64];
        snprintf(hist, sizeof hist, "[%u,%u,%u,%u]", f->wait_hist[0], f->wait_hist[1], f->wait_hist[2],
                 f->wait_hist[3]);
        a.n = 0;
        pga_i64(&a, fid);
        pga_i64(&a, f->survivors);
        pga_i64(&a, f->survivors_of);
        pga_u64(&a, f->oldest_id);
        pga_text(&a, hist);
        if (pg_exec(p, "UPDATE findings SET survivors=$2, survivors_of=$3, oldest_id=$4, wait_hist=$5 WHERE id=$1",
                    &a))
            return -1;
    }
    a.n = 0;
    pga_i64(&a, fid);
    pga_i64(&a, t);
    pga_i64(&a, f->count);
    return pg_exec(p,
                   "INSERT INTO finding_counts(finding,t,count) VALUES($1,$2,$3)"
                   " ON CONFLICT(finding,t) DO UPDATE SET count=excluded.count",
                   &a);
}

/* The newest snapshot of a target that answered: its open findings it does not carry are cleared. */
static int clear_missing(store_pg *p, int64_t tid, const et_snapshot *w, int64_t t)
{
    pg_args a = {0};
    pga_i64(&a, tid);
    PGresult *r = pg_run(p, "SELECT id, fingerprint, confidence FROM findings WHERE target=$1 AND status='open'", &a);
    if (!r)
        return -1;
    int err = 0;
    for (int i = 0; i < PQntuples(r) && !err; i++) {
        const char *fp = PQgetvalue(r, i, 1);
        int carried = 0;
        for (uint32_t k = 0; k < w->nfindings && k < ET_SNAP_MAX_FINDINGS && !carried; k++)
            carried = !strncmp(fp, w->findings[k].fingerprint, sizeof(w->findings[k].fingerprint));
        if (carried)
            continue;
        pg_args c = {0};
        pga_i64(&c, pg_i64(r, i, 0));
        pga_i64(&c, t);
        err = pg_exec(p, "UPDATE findings SET status='cleared', cleared_at=$2 WHERE id=$1", &c) ||
              event(p, pg_i64(r, i, 0), t, "cleared", PQgetvalue(r, i, 2));
    }
    PQclear(r);
    return err ? -1 : 0;
}

int store_pg_put_findings(store_pg *p, const char *device, int64_t tid, const et_snapshot *w, const char *snapshot_id,
                          int64_t t, int newest)
{
    for (uint32_t i = 0; i < w->nfindings && i < ET_SNAP_MAX_FINDINGS; i++)
        if (put_finding(p, device, tid, w, &w->findings[i], snapshot_id, t))
            return -1;
    if (newest && !(w->flags & ET_SNAP_F_TARGET_DOWN) && clear_missing(p, tid, w, t))
        return -1;
    return 0;
}

/* ---- attachments ----------------------------------------------------------------------- */

int store_pg_put_attachments(store_pg *p, int64_t snap_row, const et_snapshot *w, int64_t received)
{
    for (uint32_t i = 0; i < w->nattach && i < ET_SNAP_MAX_ATTACH; i++) {
        const et_snap_attach *at = &w->attach[i];
        char fp[sizeof(w->findings[0].fingerprint) + 1] = "";
        pg_args a = {0};
        pga_i64(&a, snap_row);
        pga_i64(&a, i);
        pga_text(&a, store_attach_kind(at->kind));
        if (at->finding < w->nfindings && at->finding < ET_SNAP_MAX_FINDINGS) {
            memcpy(fp, w->findings[at->finding].fingerprint, sizeof(fp) - 1);
            pga_text(&a, fp);
        } else {
            pga_null(&a);
        }
        pga_bin(&a, at->data, at->len < ET_SNAP_ATTACH_MAX ? at->len : ET_SNAP_ATTACH_MAX);
        pga_i64(&a, received);
        if (pg_exec(p, "INSERT INTO attachments(snap,idx,kind,finding,data,received) VALUES($1,$2,$3,$4,$5,$6)", &a))
            return -1;
    }
    return 0;
}
