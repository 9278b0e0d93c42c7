/* store_put.c - writing one snapshot: every field of the wire snapshot, the per-target
 * summary, sites and their counts, findings with their state machine and history.
 *
 * Cost matters (>= 5,000 durable snapshots/s on 2 cores): statements are prepared once; the
 * target lookup and the sites' names go through in-memory caches, so a steady-state snapshot is
 * one snapshots row, one series row, one site_counts row per carried site, and one devices
 * update. Each snapshot runs in a SAVEPOINT inside the batch's transaction: a failure undoes
 * that snapshot alone (the caller answers 5.xx; the retry is new, not a duplicate). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "store_pg_int.h"

static const char *const SQL[ST_COUNT] = {
    [ST_SNAP_INS] =
        "INSERT INTO snapshots(snapshot_id,device,target,received,t,wall_ms,wall_trusted,mono_ms,boot_id,seq,"
        "board,agent_version,incarnation,flags,schema,nfindings,size,payload)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18) ON CONFLICT DO NOTHING",
    [ST_TARGET_INS] = "INSERT INTO targets(device,service,ident,namespace,pod,container,port,url,incarnation,"
                      "first_seen,last_seen) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?10)",
    [ST_TARGET_GET] = "SELECT id, coalesce(last_seen,0), coalesce(last_t,0), coalesce(last_snapshot,0),"
                      " coalesce(interval_ms,0), coalesce(last_goroutines,-1), coalesce(last_heap_inuse,-1),"
                      " coalesce(last_rss_bytes,-1), coalesce(last_threads,-1), coalesce(pid,0),"
                      " coalesce(go_version,''), coalesce(incarnation,'')"
                      " FROM targets WHERE device=?1 AND service=?2 AND ident=?3",
    [ST_TARGET_FLUSH] = "UPDATE targets SET last_seen=?2, last_t=?3, last_snapshot=?4, interval_ms=nullif(?5,0),"
                        " last_goroutines=nullif(?6,-1), last_heap_inuse=nullif(?7,-1), last_rss_bytes=nullif(?8,-1),"
                        " last_threads=nullif(?9,-1), pid=?10, go_version=?11, incarnation=?12 WHERE id=?1",
    [ST_SERIES_INS] =
        "INSERT OR REPLACE INTO series(target,t,snap,goroutines,goroutines_other,nsites_total,by_state,"
        "heap_alloc,heap_inuse,heap_idle,heap_released,heap_sys,stack_inuse,sys,next_gc,num_gc,"
        "rss_kb,cpu_ticks,threads,fds,spool_dropped,spool_routine_dropped,spool_findings_dropped,"
        "spool_corrupt_dropped,spool_bytes_today,findings_dropped,sites_truncated,cost_bytes,cost_ms)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,"
        "?27,?28,?29)",
    /* names arrive with full entries only; a reference creates the row nameless and a later
     * full entry (or the agent's periodic refresh) fills it */
    [ST_SITE_UPSERT] = "INSERT INTO sites(target,key,state,function,file,line,created_by,first_seen)"
                       " VALUES(?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT(target,key) DO UPDATE SET"
                       " state=coalesce(excluded.state,state), function=coalesce(excluded.function,function),"
                       " file=coalesce(excluded.file,file), line=coalesce(excluded.line,line),"
                       " created_by=coalesce(excluded.created_by,created_by),"
                       " first_seen=min(first_seen,excluded.first_seen)",
    [ST_SITECOUNT_INS] =
        "INSERT OR REPLACE INTO site_counts(target,key,t,count,max_wait_min) VALUES(?1,?2,?3,?4,?5)",
    [ST_FINDING_GET] = "SELECT id, confidence, status, last_seen, coalesce(cleared_at,0) FROM findings"
                       " WHERE device=?1 AND target=?2 AND fingerprint=?3",
    [ST_FINDING_INS] =
        "INSERT INTO findings(device,target,fingerprint,kind,confidence,state,evidence,function,file,line,"
        "created_by,count,max_count,growth_per_min,oldest_wait_s,value,first_seen,last_seen,snapshots,"
        "last_snapshot,status,stack,go_version) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?12,?13,?14,?15,"
        "?16,?16,1,?17,'open',?18,?19)",
    /* Snapshots can arrive out of order after an outage: the last values are the ones of the
     * newest snapshot, not of the last one to arrive. */
    [ST_FINDING_UPD] =
        "UPDATE findings SET snapshots=snapshots+1, first_seen=min(first_seen,?14),"
        " kind=CASE WHEN ?14>=last_seen THEN ?2 ELSE kind END,"
        " confidence=CASE WHEN ?14>=last_seen THEN ?3 ELSE confidence END,"
        " state=CASE WHEN ?14>=last_seen THEN ?4 ELSE state END,"
        " evidence=evidence|?5,"
        " function=CASE WHEN ?14>=last_seen THEN ?6 ELSE function END,"
        " file=CASE WHEN ?14>=last_seen THEN ?7 ELSE file END,"
        " line=CASE WHEN ?14>=last_seen THEN ?8 ELSE line END,"
        " created_by=CASE WHEN ?14>=last_seen THEN ?9 ELSE created_by END,"
        " count=CASE WHEN ?14>=last_seen THEN ?10 ELSE count END,"
        " max_count=max(max_count,?10),"
        " growth_per_min=CASE WHEN ?14>=last_seen THEN ?11 ELSE growth_per_min END,"
        " oldest_wait_s=max(oldest_wait_s,?12),"
        " value=CASE WHEN ?14>=last_seen THEN ?13 ELSE value END,"
        " last_snapshot=CASE WHEN ?14>=last_seen THEN ?15 ELSE last_snapshot END,"
        " stack=CASE WHEN ?14>=last_seen THEN ?16 ELSE stack END,"
        " go_version=CASE WHEN ?14>=last_seen THEN ?17 ELSE go_version END,"
        " status=coalesce(?18,status), cleared_at=CASE WHEN ?18='open' THEN NULL ELSE cleared_at END,"
        " last_seen=max(last_seen,?14) WHERE id=?1",
    /* the survivor evidence of the newest snapshot that carried any */
    [ST_FINDING_SURV] = "UPDATE findings SET survivors=?2, survivors_of=?3, oldest_id=?4, wait_hist=?5 WHERE id=?1",
    [ST_FINDING_EVENT] = "INSERT INTO finding_events(finding,t,event,confidence) VALUES(?1,?2,?3,?4)",
    [ST_FINDING_COUNT] = "INSERT OR REPLACE INTO finding_counts(finding,t,count) VALUES(?1,?2,?3)",
    [ST_FINDING_OPEN] = "SELECT id, fingerprint, confidence FROM findings WHERE target=?1 AND status='open'",
    [ST_FINDING_CLEAR] = "UPDATE findings SET status='cleared', cleared_at=?2 WHERE id=?1",
    [ST_DEVICE_SEEN] = "UPDATE devices SET snapshots=snapshots+1, last_seen=max(coalesce(last_seen,0),?2),"
                       " first_seen=coalesce(first_seen,?2), board=?3, agent_version=?4,"
                       " spool_routine_dropped=?5, spool_findings_dropped=?6, spool_corrupt_dropped=?7,"
                       " spool_bytes_today=?8 WHERE id=?1",
    [ST_ATTACH_INS] = "INSERT INTO attachments(snap,idx,kind,finding,data) VALUES(?1,?2,?3,?4,?5)",
    [ST_SAVEPOINT] = "SAVEPOINT snap",
    [ST_RELEASE] = "RELEASE snap",
    [ST_ROLLBACK_TO] = "ROLLBACK TO snap",
};

int store_put_prepare(coll_store *s)
{
    for (int i = 0; i < ST_COUNT; i++)
        if (SQL[i] && store_prep(s, &s->st[i], SQL[i]))
            return -1;
    return 0;
}

void store_caches_drop(coll_store *s)
{
    memset(s->tc, 0, sizeof(s->tc));
    memset(s->sc, 0, sizeof(s->sc));
    s->sc_used = 0;
}

/* Runs a statement to completion; the statement is reset and its bindings cleared. */
static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v) { sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC); }
static void bind_i64(sqlite3_stmt *st, int i, int64_t v) { sqlite3_bind_int64(st, i, v); }
static void bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
    /* SQLite integers are signed 64-bit: a counter past INT64_MAX is stored saturated */
    sqlite3_bind_int64(st, i, v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v);
}

static int tcache_write(coll_store *s, tcache_ent *e)
{
    sqlite3_stmt *st = s->st[ST_TARGET_FLUSH];
    bind_i64(st, 1, e->id);
    bind_i64(st, 2, e->last_seen);
    bind_i64(st, 3, e->last_t);
    bind_i64(st, 4, e->last_snap);
    bind_i64(st, 5, e->interval_ms);
    bind_i64(st, 6, e->goroutines);
    bind_i64(st, 7, e->heap_inuse);
    bind_i64(st, 8, e->rss_bytes);
    bind_i64(st, 9, e->threads);
    bind_i64(st, 10, e->pid);
    bind_text(st, 11, e->go_version);
    bind_text(st, 12, e->incarnation);
    if (step_done(st))
        return -1;
    e->dirty = 0;
    return 0;
}

int store_tcache_flush(coll_store *s)
{
    for (int i = 0; i < TCACHE; i++)
        if (s->tc[i].dirty && tcache_write(s, &s->tc[i]))
            return -1;
    return 0;
}

/* ---- target identity ------------------------------------------------------------------ */

/* The port of the target's pprof URL ("http://10.0.0.5:6060/debug/pprof" -> 6060); 0 when the
 * URL names none. Two instances of one binary on one gateway differ only by it. */
int store_url_port(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *end = p + strcspn(p, "/?#");
    const char *colon = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == ':')
            colon = q;
        else if (*q == ']')
            colon = NULL; /* IPv6 literal: only a colon after the ']' starts the port */
    if (!colon || colon + 1 >= end)
        return 0;
    long v = 0;
    for (const char *q = colon + 1; q < end; q++) {
        if (*q < '0' || *q > '9')
            return 0;
        v = v * 10 + (*q - '0');
        if (v > 65535)
            return 0;
    }
    return (int)v;
}

/* The key that tells targets apart: every identity part uncut, and the port. */
void store_target_ident(const et_snapshot *w, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s/%s|%d", w->pod_namespace, w->pod_name, w->container, store_url_port(w->url));
}

static uint32_t fnv(uint32_t h, const char *p)
{
    for (; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return (h ^ 0xff) * 16777619u;
}

/* Finds the target's cache slot; a miss evicts (writing back) the slot's old target. Called
 * before the snapshot's savepoint, so an eviction's write-back survives a rolled-back
 * snapshot. *hit tells whether the slot already holds this target. */
static tcache_ent *tcache_slot(coll_store *s, const char *device, const char *service, const char *ident, int *hit)
{
    uint32_t h = fnv(fnv(fnv(2166136261u, device), service), ident);
    tcache_ent *e = &s->tc[h % TCACHE];
    *hit = e->id > 0 && !strcmp(e->device, device) && !strcmp(e->service, service) && !strcmp(e->ident, ident);
    if (!*hit && e->dirty && tcache_write(s, e))
        return NULL;
    return e;
}

static void cpy(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* Loads or creates the target row into slot e (inside the savepoint). */
static int target_load(coll_store *s, tcache_ent *e, const char *device, const et_snapshot *w, const char *ident,
                       const char *incarnation, int64_t t)
{
    sqlite3_stmt *st = s->st[ST_TARGET_GET];
    bind_text(st, 1, device);
    bind_text(st, 2, w->service);
    bind_text(st, 3, ident);
    int rc = sqlite3_step(st);
    memset(e, 0, sizeof(*e));
    if (rc == SQLITE_ROW) {
        e->id = sqlite3_column_int64(st, 0);
        e->last_seen = sqlite3_column_int64(st, 1);
        e->last_t = sqlite3_column_int64(st, 2);
        e->last_snap = sqlite3_column_int64(st, 3);
        e->interval_ms = sqlite3_column_int64(st, 4);
        e->goroutines = sqlite3_column_int64(st, 5);
        e->heap_inuse = sqlite3_column_int64(st, 6);
        e->rss_bytes = sqlite3_column_int64(st, 7);
        e->threads = sqlite3_column_int64(st, 8);
        e->pid = (uint32_t)sqlite3_column_int64(st, 9);
        cpy(e->go_version, sizeof(e->go_version), (const char *)sqlite3_column_text(st, 10));
        cpy(e->incarnation, sizeof(e->incarnation), (const char *)sqlite3_column_text(st, 11));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    if (rc == SQLITE_DONE) {
        st = s->st[ST_TARGET_INS];
        bind_text(st, 1, device);
        bind_text(st, 2, w->service);
        bind_text(st, 3, ident);
        bind_text(st, 4, w->pod_namespace);
        bind_text(st, 5, w->pod_name);
        bind_text(st, 6, w->container);
        bind_i64(st, 7, store_url_port(w->url));
        bind_text(st, 8, w->url);
        bind_text(st, 9, incarnation);
        bind_i64(st, 10, t);
        if (step_done(st))
            return -1;
        e->id = sqlite3_last_insert_rowid(s->db);
        e->goroutines = e->heap_inuse = e->rss_bytes = e->threads = -1;
    }
    cpy(e->device, sizeof(e->device), device);
    cpy(e->service, sizeof(e->service), w->service);
    cpy(e->ident, sizeof(e->ident), ident);
    return 0;
}

/* After the snapshot is stored: the target's summary follows its newest snapshot. */
static void target_seen(tcache_ent *e, const et_snapshot *w, const char *incarnation, int64_t t, int64_t snap)
{
    if (t > e->last_seen)
        e->last_seen = t;
    if (t >= e->last_t) {
        int64_t d = t - e->last_t;
        /* the sampling interval, smoothed; gaps over an hour are outages, not the interval */
        if (e->last_t > 0 && d > 0 && d < 3600 * 1000)
            e->interval_ms = e->interval_ms ? (e->interval_ms * 7 + d) / 8 : d;
        e->last_t = t;
        e->last_snap = snap;
        if (!(w->flags & ET_SNAP_F_TARGET_DOWN)) {
            e->goroutines = (int64_t)w->goroutines;
            e->heap_inuse = w->mem.present ? (int64_t)w->mem.heap_inuse : -1;
            e->rss_bytes = w->proc.present ? (int64_t)w->proc.rss_kb * 1024 : -1;
            e->threads = w->proc.present ? (int64_t)w->proc.threads : -1;
        }
        e->pid = w->pid;
        if (w->go_version[0])
            cpy(e->go_version, sizeof(e->go_version), w->go_version);
        cpy(e->incarnation, sizeof(e->incarnation), incarnation);
    }
    e->dirty = 1;
}

/* ---- sites ----------------------------------------------------------------------------- */

/* 1 if (target, key) is cached with at least the naming `named` asks for; else records it. */
scache_ent *store_scache_find(scache_ent *sc, unsigned *used, int64_t target, uint32_t key)
{
    if (*used >= SCACHE / 2) {
        memset(sc, 0, SCACHE * sizeof(*sc));
        *used = 0;
    }
    uint32_t h = (uint32_t)(target * 2654435761u) ^ (key * 40503u);
    for (uint32_t i = 0;; i++) {
        scache_ent *c = &sc[(h + i) % SCACHE];
        if (c->target == 0 || (c->target == target && c->key == key))
            return c;
    }
}

static int put_sites(coll_store *s, int64_t tid, const et_snapshot *w, int64_t t)
{
    for (uint32_t i = 0; i < w->nsites && i < ET_SNAP_MAX_SITES; i++) {
        const et_snap_site *si = &w->sites[i];
        scache_ent *c = store_scache_find(s->sc, &s->sc_used, tid, si->key);
        int named = !si->ref;
        if (!(c->target && (c->named || !named))) {
            sqlite3_stmt *st = s->st[ST_SITE_UPSERT];
            bind_i64(st, 1, tid);
            bind_i64(st, 2, si->key);
            if (named) {
                bind_text(st, 3, et_snap_state_name(si->state));
                bind_text(st, 4, si->func);
                bind_text(st, 5, si->file);
                bind_i64(st, 6, si->line);
                bind_text(st, 7, si->created_by);
            }
            bind_i64(st, 8, t);
            if (step_done(st))
                return -1;
            if (!c->target)
                s->sc_used++;
            c->target = tid;
            c->key = si->key;
            c->named = (uint8_t)(c->named | named);
        }
        sqlite3_stmt *st = s->st[ST_SITECOUNT_INS];
        bind_i64(st, 1, tid);
        bind_i64(st, 2, si->key);
        bind_i64(st, 3, t);
        bind_i64(st, 4, si->count);
        bind_i64(st, 5, si->max_wait_min);
        if (step_done(st))
            return -1;
    }
    return 0;
}

/* ---- series ---------------------------------------------------------------------------- */

/* by_state as a JSON object of the non-zero states ({"chan receive":12,...}): one column
 * instead of twenty, and SQLite's json_extract still reaches each. */
void store_by_state_json(const et_snapshot *w, char *out, size_t cap)
{
    size_t n = 0;
    out[n++] = '{';
    for (unsigned i = 0; i < ET_G_STATE_COUNT; i++) {
        if (!w->by_state[i])
            continue;
        int k = snprintf(out + n, cap - n, "%s\"%s\":%u", n > 1 ? "," : "", et_snap_state_name(i), w->by_state[i]);
        if (k < 0 || (size_t)k >= cap - n - 1)
            break;
        n += (size_t)k;
    }
    out[n++] = '}';
    out[n] = 0;
}

static int put_series(coll_store *s, int64_t tid, const et_snapshot *w, int64_t t, int64_t snap)
{
    char bys[ET_G_STATE_COUNT * 48 + 4];
    sqlite3_stmt *st = s->st[ST_SERIES_INS];
    int down = (w->flags & ET_SNAP_F_TARGET_DOWN) != 0;
    bind_i64(st, 1, tid);
    bind_i64(st, 2, t);
    bind_i64(st, 3, snap);
    if (!down) { /* a target that did not answer has no figures: NULL, not 0 */
        bind_u64(st, 4, w->goroutines);
        bind_u64(st, 5, w->goroutines_other);
        bind_i64(st, 6, w->nsites_total);
        store_by_state_json(w, bys, sizeof(bys));
        bind_text(st, 7, bys);
    }
    if (w->mem.present) {
        const et_snap_mem *m = &w->mem;
        bind_u64(st, 8, m->heap_alloc);
        bind_u64(st, 9, m->heap_inuse);
        bind_u64(st, 10, m->heap_idle);
        bind_u64(st, 11, m->heap_released);
        bind_u64(st, 12, m->heap_sys);
        bind_u64(st, 13, m->stack_inuse);
        bind_u64(st, 14, m->sys);
        bind_u64(st, 15, m->next_gc);
        bind_i64(st, 16, m->num_gc);
    }
    if (w->proc.present) {
        bind_u64(st, 17, w->proc.rss_kb);
        bind_u64(st, 18, w->proc.cpu_ticks);
        bind_i64(st, 19, w->proc.threads);
        bind_i64(st, 20, w->proc.fds);
    }
    bind_u64(st, 21, w->spool_routine_dropped + w->spool_findings_dropped + w->spool_corrupt_dropped);
    bind_u64(st, 22, w->spool_routine_dropped);
    bind_u64(st, 23, w->spool_findings_dropped);
    bind_u64(st, 24, w->spool_corrupt_dropped);
    bind_u64(st, 25, w->spool_bytes_today);
    bind_i64(st, 26, w->findings_dropped);
    bind_i64(st, 27, w->sites_truncated);
    bind_u64(st, 28, w->cost_bytes);
    bind_i64(st, 29, w->cost_ms);
    return step_done(st);
}

/* ---- findings -------------------------------------------------------------------------- */

/* Names are spelled here rather than taken from the agent's finding.c: the collector links
 * wire/ only. They must match finding.h's enum order (and FORMAT.md). */
const char *store_kind_name(unsigned k)
{
    static const char *const names[] = {"goroutine-leak", "deadlock", "heap-growth", "rss-growth", "thread-leak"};
    return k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

const char *store_confidence_name(unsigned c)
{
    static const char *const names[] = {"suspected", "likely", "confirmed"};
    return c < sizeof(names) / sizeof(names[0]) ? names[c] : "unknown";
}

/* A JSON array of strings; bytes that need it are escaped (hostile input stays valid JSON
 * as far as quoting goes; query.c/store_query.c re-validate UTF-8 when reading). */
void store_stack_json(const et_finding *f, char *out, size_t cap)
{
    size_t n = 0;
    out[n++] = '[';
    for (unsigned i = 0; i < f->nstack && i < ET_STACK_MAX; i++) {
        if (n + 8 >= cap)
            break;
        if (i)
            out[n++] = ',';
        out[n++] = '"';
        for (const unsigned char *p = (const unsigned char *)f->stack[i]; *p && n + 8 < cap; p++) {
            if (*p == '"' || *p == '\\') {
                out[n++] = '\\';
                out[n++] = (char)*p;
            } else if (*p < 0x20) {
                n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *p);
            } else {
                out[n++] = (char)*p;
            }
        }
        out[n++] = '"';
    }
    out[n++] = ']';
    out[n] = 0;
}

const char *store_finding_event(const char *status, int64_t cleared_at, int64_t last_seen, const char *oldconf,
                                const char *conf, int64_t t, int *reopen)
{
    /* a sighting newer than the clearing reopens; a newer one with another confidence is worth
     * a history line; an older one (arriving late after an outage) changes neither */
    *reopen = !strcmp(status, "cleared") && t > cleared_at;
    if (*reopen)
        return "reopened";
    return t >= last_seen && strcmp(oldconf, conf) != 0 ? "confidence" : NULL;
}

static int event(coll_store *s, int64_t fid, int64_t t, const char *ev, const char *conf)
{
    sqlite3_stmt *st = s->st[ST_FINDING_EVENT];
    bind_i64(st, 1, fid);
    bind_i64(st, 2, t);
    bind_text(st, 3, ev);
    bind_text(st, 4, conf);
    return step_done(st);
}

static int put_finding(coll_store *s, const char *device, int64_t tid, const et_snapshot *w, const et_finding *f,
                       const char *snapshot_id, int64_t t)
{
    char stack[STORE_STACK_JSON_MAX];
    const char *conf = store_confidence_name(f->confidence);
    const char *gstate = f->kind == 0 || f->kind == 1 ? et_snap_state_name(f->state) : "";
    char fp[sizeof(f->fingerprint)];
    cpy(fp, sizeof(fp), f->fingerprint);
    store_stack_json(f, stack, sizeof(stack));

    sqlite3_stmt *st = s->st[ST_FINDING_GET];
    bind_text(st, 1, device);
    bind_i64(st, 2, tid);
    bind_text(st, 3, fp);
    int rc = sqlite3_step(st);
    int64_t fid = 0, last_seen = 0, cleared_at = 0;
    char oldconf[16] = "", status[16] = "";
    if (rc == SQLITE_ROW) {
        fid = sqlite3_column_int64(st, 0);
        cpy(oldconf, sizeof(oldconf), (const char *)sqlite3_column_text(st, 1));
        cpy(status, sizeof(status), (const char *)sqlite3_column_text(st, 2));
        last_seen = sqlite3_column_int64(st, 3);
        cleared_at = sqlite3_column_int64(st, 4);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    int existing = fid != 0;

    if (!fid) {
        st = s->st[ST_FINDING_INS];
        bind_text(st, 1, device);
        bind_i64(st, 2, tid);
        bind_text(st, 3, fp);
        bind_text(st, 4, store_kind_name(f->kind));
        bind_text(st, 5, conf);
        bind_text(st, 6, gstate);
        bind_i64(st, 7, f->evidence);
        bind_text(st, 8, f->site.func);
        bind_text(st, 9, f->site.file);
        bind_i64(st, 10, f->site.line);
        bind_text(st, 11, f->created_by);
        bind_i64(st, 12, f->count);
        sqlite3_bind_double(st, 13, f->growth_per_min);
        sqlite3_bind_double(st, 14, f->oldest_wait_s);
        bind_u64(st, 15, f->value);
        bind_i64(st, 16, t);
        bind_text(st, 17, snapshot_id);
        bind_text(st, 18, stack);
        bind_text(st, 19, w->go_version);
        if (step_done(st))
            return -1;
        fid = sqlite3_last_insert_rowid(s->db);
        if (event(s, fid, t, "opened", conf))
            return -1;
    } else {
        int reopen;
        const char *ev = store_finding_event(status, cleared_at, last_seen, oldconf, conf, t, &reopen);
        const char *newstatus = reopen ? "open" : NULL;
        if (ev && event(s, fid, t, ev, conf))
            return -1;
        st = s->st[ST_FINDING_UPD];
        bind_i64(st, 1, fid);
        bind_text(st, 2, store_kind_name(f->kind));
        bind_text(st, 3, conf);
        bind_text(st, 4, gstate);
        bind_i64(st, 5, f->evidence);
        bind_text(st, 6, f->site.func);
        bind_text(st, 7, f->site.file);
        bind_i64(st, 8, f->site.line);
        bind_text(st, 9, f->created_by);
        bind_i64(st, 10, f->count);
        sqlite3_bind_double(st, 11, f->growth_per_min);
        sqlite3_bind_double(st, 12, f->oldest_wait_s);
        bind_u64(st, 13, f->value);
        bind_i64(st, 14, t);
        bind_text(st, 15, snapshot_id);
        bind_text(st, 16, stack);
        bind_text(st, 17, w->go_version);
        if (newstatus)
            bind_text(st, 18, newstatus);
        if (step_done(st))
            return -1;
    }
    if ((f->survivors_of || f->oldest_id) && (!existing || t >= last_seen)) {
        char hist[64];
        snprintf(hist, sizeof hist, "[%u,%u,%u,%u]", f->wait_hist[0], f->wait_hist[1], f->wait_hist[2],
                 f->wait_hist[3]);
        st = s->st[ST_FINDING_SURV];
        bind_i64(st, 1, fid);
        bind_i64(st, 2, f->survivors);
        bind_i64(st, 3, f->survivors_of);
        bind_u64(st, 4, f->oldest_id);
        bind_text(st, 5, hist);
        if (step_done(st))
            return -1;
    }
    st = s->st[ST_FINDING_COUNT];
    bind_i64(st, 1, fid);
    bind_i64(st, 2, t);
    bind_i64(st, 3, f->count);
    return step_done(st);
}

/* The newest snapshot of a target that answered: its open findings that this snapshot does
 * not carry are cleared. */
static int clear_missing(coll_store *s, int64_t tid, const et_snapshot *w, int64_t t)
{
    enum { MAXC = 64 };
    int64_t ids[MAXC];
    char confs[MAXC][16];
    int n = 0;
    sqlite3_stmt *st = s->st[ST_FINDING_OPEN];
    bind_i64(st, 1, tid);
    int rc;
    while (n < MAXC && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *fp = (const char *)sqlite3_column_text(st, 1);
        int carried = 0;
        for (uint32_t i = 0; i < w->nfindings && i < ET_SNAP_MAX_FINDINGS && !carried; i++)
            carried = fp && !strncmp(fp, w->findings[i].fingerprint, sizeof(w->findings[i].fingerprint));
        if (!carried) {
            ids[n] = sqlite3_column_int64(st, 0);
            cpy(confs[n], sizeof(confs[n]), (const char *)sqlite3_column_text(st, 2));
            n++;
        }
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    for (int i = 0; i < n; i++) {
        st = s->st[ST_FINDING_CLEAR];
        bind_i64(st, 1, ids[i]);
        bind_i64(st, 2, t);
        if (step_done(st) || event(s, ids[i], t, "cleared", confs[i]))
            return -1;
    }
    return 0;
}

const char *store_attach_kind(unsigned k)
{
    static const char *const names[] = {"goroutine-debug2", "goroutine-debug1", "heap-debug1", "trace"};
    return k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

/* ---- one snapshot ---------------------------------------------------------------------- */

/* Everything of one snapshot, inside the savepoint. -1 error, STORE_DUPLICATE, STORE_NEW. */
static int put_all(coll_store *s, tcache_ent *e, int hit, const char *device, const coll_snap *snap,
                   int64_t received_ms, const uint8_t *payload, size_t payload_len, const char *ident, int64_t t)
{
    const et_snapshot *w = &snap->w;
    char incarnation[COLL_ID_MAX], boot[37];
    snprintf(incarnation, sizeof(incarnation), "%lu:%llu", (unsigned long)w->pid, (unsigned long long)w->start_ticks);
    if (!hit && target_load(s, e, device, w, ident, incarnation, t))
        return -1;
    int64_t tid = e->id;
    et_snap_uuid_text(w->boot_id, boot);
    sqlite3_stmt *st = s->st[ST_SNAP_INS];
    bind_text(st, 1, snap->snapshot_id);
    bind_text(st, 2, device);
    bind_i64(st, 3, tid);
    bind_i64(st, 4, received_ms);
    bind_i64(st, 5, t);
    bind_i64(st, 6, w->wall_ms);
    bind_i64(st, 7, !(w->flags & ET_SNAP_F_WALL_UNTRUSTED));
    bind_u64(st, 8, w->mono_ms);
    bind_text(st, 9, boot);
    bind_u64(st, 10, w->seq);
    bind_text(st, 11, w->board);
    bind_text(st, 12, w->agent_version);
    bind_text(st, 13, incarnation);
    bind_i64(st, 14, w->flags);
    bind_i64(st, 15, w->schema);
    bind_i64(st, 16, w->nfindings);
    bind_i64(st, 17, (int64_t)payload_len);
    if (payload)
        sqlite3_bind_blob(st, 18, payload, (int)payload_len, SQLITE_STATIC);
    if (step_done(st))
        return -1;
    if (sqlite3_changes(s->db) == 0)
        return STORE_DUPLICATE; /* everything was stored when the first copy arrived */
    int64_t snap_row = sqlite3_last_insert_rowid(s->db);
    if (put_series(s, tid, w, t, snap_row) || put_sites(s, tid, w, t))
        return -1;
    for (uint32_t i = 0; i < w->nfindings && i < ET_SNAP_MAX_FINDINGS; i++)
        if (put_finding(s, device, tid, w, &w->findings[i], snap->snapshot_id, t))
            return -1;
    if (t >= e->last_t && !(w->flags & ET_SNAP_F_TARGET_DOWN) && clear_missing(s, tid, w, t))
        return -1;
    for (uint32_t i = 0; i < w->nattach && i < ET_SNAP_MAX_ATTACH; i++) {
        const et_snap_attach *a = &w->attach[i];
        st = s->st[ST_ATTACH_INS];
        bind_i64(st, 1, snap_row);
        bind_i64(st, 2, i);
        bind_text(st, 3, store_attach_kind(a->kind));
        if (a->finding < w->nfindings && a->finding < ET_SNAP_MAX_FINDINGS)
            bind_text(st, 4, w->findings[a->finding].fingerprint);
        sqlite3_bind_blob(st, 5, a->data, (int)(a->len < ET_SNAP_ATTACH_MAX ? a->len : ET_SNAP_ATTACH_MAX),
                          SQLITE_STATIC);
        if (step_done(st))
            return -1;
    }
    st = s->st[ST_DEVICE_SEEN];
    bind_text(st, 1, device);
    bind_i64(st, 2, received_ms);
    bind_text(st, 3, w->board);
    bind_text(st, 4, w->agent_version);
    bind_u64(st, 5, w->spool_routine_dropped);
    bind_u64(st, 6, w->spool_findings_dropped);
    bind_u64(st, 7, w->spool_corrupt_dropped);
    bind_u64(st, 8, w->spool_bytes_today);
    if (step_done(st))
        return -1;
    target_seen(e, w, incarnation, t, snap_row);
    return STORE_NEW;
}

int store_put_snapshot(coll_store *s, const char *device, const coll_snap *snap, int64_t received_ms,
                       const uint8_t *payload, size_t payload_len)
{
    if (s->pg)
        return store_pg_put_snapshot(s->pg, device, snap, received_ms, payload, payload_len);
    if (!s->in_txn)
        return -1;
    const et_snapshot *w = &snap->w;
    /* When did it happen? The device's wall clock if it says the clock was synced,
     * otherwise the time it reached us (the best bound we have). */
    int64_t t = !(w->flags & ET_SNAP_F_WALL_UNTRUSTED) && w->wall_ms > 0 ? w->wall_ms : received_ms;
    char ident[TIDENT_MAX];
    store_target_ident(w, ident, sizeof(ident));
    int hit;
    tcache_ent *e = tcache_slot(s, device, w->service, ident, &hit);
    if (!e)
        return -1;
    tcache_ent saved = *e;
    if (step_done(s->st[ST_SAVEPOINT]))
        return -1;
    int rc = put_all(s, e, hit, device, snap, received_ms, payload, payload_len, ident, t);
    if (rc == STORE_NEW) {
        if (step_done(s->st[ST_RELEASE]) == 0)
            return STORE_NEW;
        rc = -1;
    }
    /* A duplicate or a failure: nothing of this snapshot stays. The slot goes back to what it
     * was (a target row created in the savepoint is gone with it), and the site cache, which
     * may name rows just undone, is dropped. */
    step_done(s->st[ST_ROLLBACK_TO]);
    step_done(s->st[ST_RELEASE]);
    if (hit)
        *e = saved;
    else
        memset(e, 0, sizeof(*e));
    if (rc < 0) {
        memset(s->sc, 0, sizeof(s->sc));
        s->sc_used = 0;
    }
    return rc;
}
