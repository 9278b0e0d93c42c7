/* store_pg.c - the PostgreSQL backend's handle: connect (with migration), transactions,
 * devices, and writing a snapshot. See store.h for the contract and store_pg_int.h for how
 * store.c routes here.
 *
 * Durability: the server's default synchronous_commit=on, so COMMIT returns once the WAL is
 * flushed on the database host; ingest acknowledges after that, as with SQLite.
 *
 * Exactly once across nodes: snap_keys(device, snapshot_id) is the dedup authority, a plain
 * (unpartitioned) table with that primary key, because a UNIQUE constraint on a partitioned
 * table must contain the partition key and a retry's arrival time differs from the first
 * copy's. Two nodes storing the same snapshot at once: the second INSERT waits for the first
 * transaction and then finds the row (duplicate) or, if the first rolled back, inserts it.
 *
 * Each snapshot runs in SAVEPOINT snap inside the batch's transaction, as on SQLite: a failure
 * undoes that snapshot alone. A lost connection (database restart) fails the batch; the next
 * store_begin reconnects, so ingest answers 5.00 meanwhile and the agents retry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_int.h"
#include "store_pg_int.h"

int store_is_pg_url(const char *path)
{
    return path && (!strncmp(path, "postgresql://", 13) || !strncmp(path, "postgres://", 11));
}

/* ---- parameters and statements ------------------------------------------------------------ */

static pg_args *slot(pg_args *a)
{
    if (a->n >= PGA_MAX)
        abort(); /* a programming error: no statement here has that many parameters */
    a->fmt[a->n] = 0;
    a->len[a->n] = 0;
    return a;
}
void pga_text(pg_args *a, const char *v) { slot(a)->v[a->n++] = v; }
void pga_null(pg_args *a) { slot(a)->v[a->n++] = NULL; }
void pga_i64(pg_args *a, int64_t v)
{
    slot(a);
    snprintf(a->buf[a->n], sizeof(a->buf[0]), "%lld", (long long)v);
    a->v[a->n] = a->buf[a->n];
    a->n++;
}
void pga_f64(pg_args *a, double v)
{
    slot(a);
    snprintf(a->buf[a->n], sizeof(a->buf[0]), "%.17g", v);
    a->v[a->n] = a->buf[a->n];
    a->n++;
}
void pga_u64(pg_args *a, uint64_t v) { pga_i64(a, v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v); }
void pga_bin(pg_args *a, const void *p, size_t n)
{
    slot(a);
    a->v[a->n] = p;
    a->len[a->n] = (int)n;
    a->fmt[a->n] = 1;
    a->n++;
}

static int ensure_conn(store_pg *p);

PGresult *pg_run_bin(store_pg *p, const char *sql, const pg_args *a, int binary)
{
    p->err[0] = 0;
    /* The server restarted (or the network cut) since the last statement: reconnect, but only
     * between transactions, so no half batch is ever resumed on a new session. */
    if (PQstatus(p->conn) != CONNECTION_OK && !p->in_txn && ensure_conn(p))
        return NULL;
    /* without parameters PQexec, which also runs a script of several statements (migrations) */
    PGresult *r = a ? PQexecParams(p->conn, sql, a->n, NULL, a->v, a->len, a->fmt, binary) : PQexec(p->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    PQclear(r);
    return NULL;
}

PGresult *pg_run(store_pg *p, const char *sql, const pg_args *a) { return pg_run_bin(p, sql, a, 0); }

int pg_exec(store_pg *p, const char *sql, const pg_args *a)
{
    PGresult *r = pg_run(p, sql, a);
    PQclear(r);
    return r ? 0 : -1;
}

int64_t pg_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- handle ------------------------------------------------------------------------------ */

static void notice_quiet(void *arg, const char *msg)
{
    /* "relation already exists, skipping" and the like: not worth the collector's log */
    (void)arg;
    (void)msg;
}

coll_store *store_pg_open(const char *url, int readonly, char *err, size_t errlen)
{
    coll_store *s = calloc(1, sizeof(*s));
    store_pg *p = calloc(1, sizeof(*p));
    if (!s || !p) {
        free(s);
        free(p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->pg = p;
    p->readonly = readonly;
    p->conn = PQconnectdb(url);
    if (PQstatus(p->conn) != CONNECTION_OK) {
        /* PQerrorMessage never contains the password (libpq leaves it out) */
        snprintf(err, errlen, "postgresql: %s", PQerrorMessage(p->conn));
        store_close(s);
        return NULL;
    }
    PQsetNoticeProcessor(p->conn, notice_quiet, NULL);
    char merr[256];
    if (!readonly && (store_pg_migrate(p, merr, sizeof(merr)) || store_pg_partitions_ahead(p, now_ms()))) {
        snprintf(err, errlen, "postgresql: %s", merr[0] ? merr : PQerrorMessage(p->conn));
        store_close(s);
        return NULL;
    }
    p->schema = store_pg_schema_read(p);
    if (p->schema != STORE_PG_SCHEMA_VERSION) {
        snprintf(err, errlen, "postgresql: database schema %d, this collector reads %d (start `serve` once to upgrade)",
                 p->schema, STORE_PG_SCHEMA_VERSION);
        store_close(s);
        return NULL;
    }
    if (readonly && pg_exec(p, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", NULL)) {
        snprintf(err, errlen, "postgresql: %s", PQerrorMessage(p->conn));
        store_close(s);
        return NULL;
    }
    return s;
}

void store_pg_close(store_pg *p)
{
    if (!p)
        return;
    PQfinish(p->conn);
    free(p);
}

const char *store_pg_errmsg(store_pg *p) { return p->err[0] ? p->err : PQerrorMessage(p->conn); }

static int ensure_conn(store_pg *p)
{
    if (PQstatus(p->conn) == CONNECTION_OK)
        return 0;
    PQreset(p->conn);
    if (PQstatus(p->conn) != CONNECTION_OK)
        return -1;
    p->generation++;
    return p->readonly ? pg_exec(p, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", NULL) : 0;
}

int store_pg_begin(store_pg *p)
{
    if (p->in_txn)
        return 0;
    if (p->readonly || pg_exec(p, "BEGIN", NULL))
        return -1;
    p->in_txn = 1;
    return 0;
}

int store_pg_commit(store_pg *p)
{
    if (!p->in_txn)
        return 0;
    /* COMMIT of a transaction that failed answers ROLLBACK (COMMAND_OK): check the tag */
    PGresult *r = pg_run(p, "COMMIT", NULL);
    int ok = r && !strcmp(PQcmdStatus(r), "COMMIT");
    PQclear(r);
    p->in_txn = 0;
    if (!ok) {
        if (r)
            snprintf(p->err, sizeof(p->err), "transaction aborted, rolled back");
        if (PQtransactionStatus(p->conn) != PQTRANS_IDLE)
            pg_exec(p, "ROLLBACK", NULL);
        store_pg_caches_drop(p);
        return -1;
    }
    return 0;
}

void store_pg_rollback(store_pg *p)
{
    store_pg_caches_drop(p);
    if (p->in_txn || PQtransactionStatus(p->conn) == PQTRANS_INTRANS || PQtransactionStatus(p->conn) == PQTRANS_INERROR)
        pg_exec(p, "ROLLBACK", NULL);
    p->in_txn = 0;
}

int store_pg_device_add(store_pg *p, const char *id, const uint8_t *psk, size_t psklen, int replace)
{
    pg_args a = {0};
    pga_text(&a, id);
    pga_bin(&a, psk, psklen);
    pga_i64(&a, now_ms());
    return pg_exec(p,
                   replace ? "INSERT INTO devices(id,psk,created) VALUES($1,$2,$3)"
                             " ON CONFLICT(id) DO UPDATE SET psk=excluded.psk"
                           : "INSERT INTO devices(id,psk,created) VALUES($1,$2,$3)",
                   &a);
}

int store_pg_device_psk(store_pg *p, const char *id, uint8_t *psk, size_t cap, size_t *len)
{
    pg_args a = {0};
    pga_text(&a, id);
    PGresult *r = pg_run_bin(p, "SELECT psk FROM devices WHERE id=$1", &a, 1);
    if (!r)
        return -1;
    int ret = 0;
    if (PQntuples(r) == 1) {
        int n = PQgetlength(r, 0, 0);
        ret = n > 0 && (size_t)n <= cap ? 1 : -1;
        if (ret == 1) {
            memcpy(psk, PQgetvalue(r, 0, 0), (size_t)n);
            *len = (size_t)n;
        }
    }
    PQclear(r);
    return ret;
}

int64_t store_pg_count(store_pg *p, const char *table)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\"", table);
    PGresult *r = pg_run(p, sql, NULL);
    int64_t n = r && PQntuples(r) == 1 ? pg_i64(r, 0, 0) : -1;
    PQclear(r);
    return n;
}

/* the session advisory lock of the fleet's leader ("etld") */
#define LOCK_LEAD "1702126692"

int store_pg_lead(store_pg *p)
{
    /* a broken connection lost the lock with its session, whether or not libpq has reconnected yet */
    if (p->lead_gen == p->generation + 1 && PQstatus(p->conn) == CONNECTION_OK)
        return 1;
    p->lead_gen = 0;
    /* A session lock: held until this connection ends, when another node's next try gets it.
     * A leader whose host vanishes without closing its TCP connection must not hold it for the
     * kernel's default two hours: the server probes this session after 10 s idle, 3 x 5 s (no
     * effect on a unix socket, where the peer's death is seen at once). */
    PGresult *r = pg_run(p,
                         "SELECT set_config('tcp_keepalives_idle','10',false),"
                         " set_config('tcp_keepalives_interval','5',false),"
                         " set_config('tcp_keepalives_count','3',false), pg_try_advisory_lock(" LOCK_LEAD ")",
                         NULL);
    if (!r)
        return -1;
    int got = PQntuples(r) == 1 && PQgetvalue(r, 0, 3)[0] == 't';
    PQclear(r);
    if (got)
        p->lead_gen = p->generation + 1; /* read after pg_run, which may have reconnected */
    return got;
}

int64_t store_pg_db_bytes(store_pg *p)
{
    PGresult *r = pg_run(p, "SELECT pg_database_size(current_database())", NULL);
    int64_t n = r && PQntuples(r) == 1 ? pg_i64(r, 0, 0) : -1;
    PQclear(r);
    return n;
}

/* ---- one snapshot -------------------------------------------------------------------------- */

/* The target's row, created or with its summary moved on when this snapshot is its newest
 * (the interval smoothed as store_put.c does). One statement: no cache to keep coherent with
 * the other nodes. */
static const char TARGET_UPSERT[] =
    "INSERT INTO targets AS x(device,service,ident,namespace,pod,container,port,url,incarnation,first_seen,last_seen,"
    " last_t,last_snapshot,last_goroutines,last_heap_inuse,last_rss_bytes,last_threads,pid,go_version)"
    " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$10,$10,NULL,$11,$12,$13,$14,$15,nullif($16,''))"
    " ON CONFLICT(device,service,ident) DO UPDATE SET"
    " last_seen=greatest(x.last_seen,$10),"
    " interval_ms=CASE WHEN $10>x.last_t AND x.last_t>0 AND $10-x.last_t<3600000"
    "   THEN CASE WHEN x.interval_ms IS NULL THEN $10-x.last_t ELSE (x.interval_ms*7+$10-x.last_t)/8 END"
    "   ELSE x.interval_ms END,"
    " last_goroutines=CASE WHEN $10>=x.last_t AND $17=0 THEN $11 ELSE x.last_goroutines END,"
    " last_heap_inuse=CASE WHEN $10>=x.last_t AND $17=0 THEN $12 ELSE x.last_heap_inuse END,"
    " last_rss_bytes=CASE WHEN $10>=x.last_t AND $17=0 THEN $13 ELSE x.last_rss_bytes END,"
    " last_threads=CASE WHEN $10>=x.last_t AND $17=0 THEN $14 ELSE x.last_threads END,"
    " pid=CASE WHEN $10>=x.last_t THEN $15 ELSE x.pid END,"
    " go_version=CASE WHEN $10>=x.last_t THEN coalesce(nullif($16,''),x.go_version) ELSE x.go_version END,"
    " incarnation=CASE WHEN $10>=x.last_t THEN $9 ELSE x.incarnation END,"
    " last_t=greatest(x.last_t,$10)"
    " RETURNING id, last_t";

static const char SNAP_INS[] =
    "INSERT INTO snapshots(snapshot_id,device,target,received,t,wall_ms,wall_trusted,mono_ms,boot_id,seq,"
    "board,agent_version,incarnation,flags,schema,nfindings,size,payload)"
    " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) RETURNING id";

static const char SERIES_INS[] =
    "INSERT INTO series(target,t,snap,received,goroutines,goroutines_other,nsites_total,by_state,"
    "heap_alloc,heap_inuse,heap_idle,heap_released,heap_sys,stack_inuse,sys,next_gc,num_gc,"
    "rss_kb,cpu_ticks,threads,fds,spool_dropped,spool_routine_dropped,spool_findings_dropped,"
    "spool_corrupt_dropped,spool_bytes_today,findings_dropped,sites_truncated,cost_bytes,cost_ms)"
    " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,"
    "$27,$28,$29,$30)";

static const char DEVICE_SEEN[] =
    "UPDATE devices SET snapshots=snapshots+1, last_seen=greatest(coalesce(last_seen,0),$2),"
    " first_seen=coalesce(first_seen,$2), board=$3, agent_version=$4,"
    " spool_routine_dropped=$5, spool_findings_dropped=$6, spool_corrupt_dropped=$7,"
    " spool_bytes_today=$8 WHERE id=$1";

static int put_series(store_pg *p, int64_t tid, const et_snapshot *w, int64_t t, int64_t snap, int64_t received)
{
    pg_args a = {0};
    char bs[1024];
    pga_i64(&a, tid);
    pga_i64(&a, t);
    pga_i64(&a, snap);
    pga_i64(&a, received);
    if (!(w->flags & ET_SNAP_F_TARGET_DOWN)) {
        store_by_state_json(w, bs, sizeof(bs));
        pga_u64(&a, w->goroutines);
        pga_u64(&a, w->goroutines_other);
        pga_i64(&a, w->nsites_total);
        pga_text(&a, bs);
    } else {
        for (int i = 0; i < 4; i++)
            pga_null(&a);
    }
    const et_snap_mem *m = &w->mem;
    if (m->present) {
        pga_u64(&a, m->heap_alloc);
        pga_u64(&a, m->heap_inuse);
        pga_u64(&a, m->heap_idle);
        pga_u64(&a, m->heap_released);
        pga_u64(&a, m->heap_sys);
        pga_u64(&a, m->stack_inuse);
        pga_u64(&a, m->sys);
        pga_u64(&a, m->next_gc);
        pga_u64(&a, m->num_gc);
    } else {
        for (int i = 0; i < 9; i++)
            pga_null(&a);
    }
    if (w->proc.present) {
        pga_u64(&a, w->proc.rss_kb);
        pga_u64(&a, w->proc.cpu_ticks);
        pga_i64(&a, w->proc.threads);
        pga_i64(&a, w->proc.fds);
    } else {
        for (int i = 0; i < 4; i++)
            pga_null(&a);
    }
    pga_u64(&a, w->spool_routine_dropped + w->spool_findings_dropped + w->spool_corrupt_dropped);
    pga_u64(&a, w->spool_routine_dropped);
    pga_u64(&a, w->spool_findings_dropped);
    pga_u64(&a, w->spool_corrupt_dropped);
    pga_u64(&a, w->spool_bytes_today);
    pga_i64(&a, w->findings_dropped);
    pga_i64(&a, w->sites_truncated);
    pga_u64(&a, w->cost_bytes);
    pga_i64(&a, w->cost_ms);
    return pg_exec(p, SERIES_INS, &a);
}

/* Everything of one snapshot, inside the savepoint. -1, STORE_DUPLICATE or STORE_NEW. */
static int put_all(store_pg *p, const char *device, const coll_snap *snap, int64_t received_ms,
                   const uint8_t *payload, size_t payload_len)
{
    const et_snapshot *w = &snap->w;
    int64_t t = !(w->flags & ET_SNAP_F_WALL_UNTRUSTED) && w->wall_ms > 0 ? w->wall_ms : received_ms;
    pg_args a = {0};
    pga_text(&a, device);
    pga_text(&a, snap->snapshot_id);
    pga_i64(&a, received_ms);
    PGresult *r = pg_run(p, "INSERT INTO snap_keys(device,snapshot_id,received) VALUES($1,$2,$3)"
                            " ON CONFLICT DO NOTHING", &a);
    if (!r)
        return -1;
    int fresh = atoi(PQcmdTuples(r)) == 1;
    PQclear(r);
    if (!fresh)
        return STORE_DUPLICATE; /* everything was stored when the first copy arrived */

    char ident[TIDENT_MAX], incarnation[COLL_ID_MAX], boot[37];
    store_target_ident(w, ident, sizeof(ident));
    snprintf(incarnation, sizeof(incarnation), "%lu:%llu", (unsigned long)w->pid, (unsigned long long)w->start_ticks);
    int down = (w->flags & ET_SNAP_F_TARGET_DOWN) != 0;
    a.n = 0;
    pga_text(&a, device);
    pga_text(&a, w->service);
    pga_text(&a, ident);
    pga_text(&a, w->pod_namespace);
    pga_text(&a, w->pod_name);
    pga_text(&a, w->container);
    pga_i64(&a, store_url_port(w->url));
    pga_text(&a, w->url);
    pga_text(&a, incarnation);
    pga_i64(&a, t);
    if (down)
        pga_null(&a);
    else
        pga_u64(&a, w->goroutines);
    if (!down && w->mem.present)
        pga_u64(&a, w->mem.heap_inuse);
    else
        pga_null(&a);
    if (!down && w->proc.present) {
        pga_i64(&a, (int64_t)w->proc.rss_kb * 1024);
        pga_i64(&a, w->proc.threads);
    } else {
        pga_null(&a);
        pga_null(&a);
    }
    pga_i64(&a, w->pid);
    pga_text(&a, w->go_version);
    pga_i64(&a, down);
    if (!(r = pg_run(p, TARGET_UPSERT, &a)))
        return -1;
    int64_t tid = pg_i64(r, 0, 0);
    int newest = pg_i64(r, 0, 1) == t; /* last_t moved to t: no newer snapshot of the target is stored */
    PQclear(r);

    et_snap_uuid_text(w->boot_id, boot);
    a.n = 0;
    pga_text(&a, snap->snapshot_id);
    pga_text(&a, device);
    pga_i64(&a, tid);
    pga_i64(&a, received_ms);
    pga_i64(&a, t);
    pga_i64(&a, w->wall_ms);
    pga_i64(&a, !(w->flags & ET_SNAP_F_WALL_UNTRUSTED));
    pga_u64(&a, w->mono_ms);
    pga_text(&a, boot);
    pga_u64(&a, w->seq);
    pga_text(&a, w->board);
    pga_text(&a, w->agent_version);
    pga_text(&a, incarnation);
    pga_i64(&a, w->flags);
    pga_i64(&a, w->schema);
    pga_i64(&a, w->nfindings);
    pga_i64(&a, (int64_t)payload_len);
    if (payload)
        pga_bin(&a, payload, payload_len);
    else
        pga_null(&a);
    if (!(r = pg_run(p, SNAP_INS, &a)))
        return -1;
    int64_t snap_row = pg_i64(r, 0, 0);
    PQclear(r);
    if (put_series(p, tid, w, t, snap_row, received_ms) || store_pg_put_sites(p, tid, w, t, received_ms) ||
        store_pg_put_findings(p, device, tid, w, snap->snapshot_id, t, newest) ||
        store_pg_put_attachments(p, snap_row, w, received_ms))
        return -1;
    a.n = 0;
    pga_i64(&a, tid);
    pga_i64(&a, snap_row);
    pga_i64(&a, t);
    if (pg_exec(p, "UPDATE targets SET last_snapshot=$2 WHERE id=$1 AND last_t=$3", &a))
        return -1;
    a.n = 0;
    pga_text(&a, device);
    pga_i64(&a, received_ms);
    pga_text(&a, w->board);
    pga_text(&a, w->agent_version);
    pga_u64(&a, w->spool_routine_dropped);
    pga_u64(&a, w->spool_findings_dropped);
    pga_u64(&a, w->spool_corrupt_dropped);
    pga_u64(&a, w->spool_bytes_today);
    return pg_exec(p, DEVICE_SEEN, &a) ? -1 : STORE_NEW;
}

int store_pg_put_snapshot(store_pg *p, const char *device, const coll_snap *snap, int64_t received_ms,
                          const uint8_t *payload, size_t payload_len)
{
    if (!p->in_txn || pg_exec(p, "SAVEPOINT snap", NULL))
        return -1;
    int rc = put_all(p, device, snap, received_ms, payload, payload_len);
    if (rc == STORE_NEW) {
        if (!pg_exec(p, "RELEASE snap", NULL))
            return STORE_NEW;
        rc = -1;
    }
    /* A duplicate or a failure: nothing of this snapshot stays, the batch goes on. Keep the
     * failing statement's message for the caller's log line over ROLLBACK TO's. */
    char keep[sizeof(p->err)];
    snprintf(keep, sizeof(keep), "%s", store_pg_errmsg(p));
    pg_exec(p, "ROLLBACK TO snap", NULL);
    pg_exec(p, "RELEASE snap", NULL);
    if (rc < 0)
        store_pg_caches_drop(p); /* it may name site rows just undone */
    if (rc < 0)
        snprintf(p->err, sizeof(p->err), "%s", keep);
    return rc;
}
