/* api_dbgen.c - writes the API benchmark's fleet database through the collector's own store
 * (store_put_snapshot, the write path ingest uses), so every derived table and summary is what
 * a real collector would have after receiving these snapshots.
 *
 *   api_dbgen DB [--devices 200] [--targets 5] [--days 7] [--interval-s 30] [--batch 5000]
 *   api_dbgen --schema-version
 *
 * Each target sends one snapshot per interval: goroutines by state, 6 sites (the collector sees
 * full site entries), memory and /proc figures. One target in ten starts leaking on day 3: its
 * leak site grows and every snapshot from then carries a goroutine-leak finding with a stack.
 * Prints "snapshots N seconds S rate R/s bytes B" on stdout. Deterministic (fixed seed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "snap.h"
#include "store.h"

static const char *const SERVICES[] = {"billing", "ingest", "auth", "metrics", "gateway", "search", "orders", "mail"};
#define NSERVICES (sizeof(SERVICES) / sizeof(SERVICES[0]))

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return n ? (uint32_t)(rng % n) : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void site(et_snap_site *st, const char *fn, const char *file, uint32_t line, unsigned state, uint32_t count)
{
    memset(st, 0, sizeof(*st));
    snprintf(st->func, sizeof(st->func), "%s", fn);
    snprintf(st->file, sizeof(st->file), "%s", file);
    snprintf(st->created_by, sizeof(st->created_by), "main.main");
    st->line = line;
    st->state = (uint8_t)state;
    st->count = count;
    st->key = et_snap_site_key(st);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: api_dbgen DB [--devices N] [--targets N] [--days N] [--interval-s S] [--batch N]\n");
        return 2;
    }
    if (!strcmp(argv[1], "--schema-version")) { /* the cache key of a generated database */
        printf("%d\n", store_schema_version());
        return 0;
    }
    const char *db = argv[1];
    long devices = 200, targets = 5, days = 7, interval_s = 30, batch = 5000;
    for (int i = 2; i + 1 < argc; i += 2) {
        long v = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--devices"))
            devices = v;
        else if (!strcmp(argv[i], "--targets"))
            targets = v;
        else if (!strcmp(argv[i], "--days"))
            days = v;
        else if (!strcmp(argv[i], "--interval-s"))
            interval_s = v;
        else if (!strcmp(argv[i], "--batch"))
            batch = v;
        else {
            fprintf(stderr, "api_dbgen: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (devices < 1 || targets < 1 || targets > (long)NSERVICES || days < 1 || interval_s < 1 || batch < 1) {
        fprintf(stderr, "api_dbgen: bad sizes\n");
        return 2;
    }
    char err[256];
    coll_store *s = store_open(db, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "api_dbgen: %s\n", err);
        return 1;
    }
    static coll_snap cs;
    et_snapshot *w = &cs.w;
    int64_t end_ms = (int64_t)time(NULL) * 1000;
    int64_t start_ms = end_ms - days * 86400LL * 1000;
    long steps = days * 86400L / interval_s;
    long leak_from = steps * 3 / 7;
    uint64_t n = 0;
    double t0 = now_s();
    /* Devices are provisioned before they send (the fleet view lists provisioned devices). */
    for (long d = 0; d < devices; d++) {
        char id[32];
        uint8_t psk[32];
        memset(psk, (int)d, sizeof(psk));
        snprintf(id, sizeof(id), "gw-%03ld", d);
        if (store_device_add(s, id, psk, sizeof(psk), 1))
            goto dberr;
    }
    if (store_begin(s))
        goto dberr;
    for (long k = 0; k < steps; k++) {
        int64_t t = start_ms + (int64_t)k * interval_s * 1000;
        for (long d = 0; d < devices; d++) {
            for (long j = 0; j < targets; j++) {
                et_snapshot_init(w);
                int leaking = (d * targets + j) % 10 == 3 && k >= leak_from;
                uint32_t leak = leaking ? (uint32_t)((k - leak_from) / 4) : 0;
                snprintf(w->device_id, sizeof(w->device_id), "gw-%03ld", d);
                snprintf(w->board, sizeof(w->board), "rpi4");
                snprintf(w->agent_version, sizeof(w->agent_version), "0.3.0");
                w->seq = (uint64_t)(k * targets + j);
                memset(w->boot_id, 0, sizeof(w->boot_id));
                memcpy(w->boot_id, &d, sizeof(d));
                /* unique per (device, seq): the id's first bytes are the device, the rest the seq */
                memcpy(w->id, &d, 4);
                memcpy(w->id + 4, &w->seq, 8);
                w->mono_ms = (uint64_t)(t - start_ms);
                w->wall_ms = t;
                snprintf(w->service, sizeof(w->service), "%s", SERVICES[j]);
                snprintf(w->pod_namespace, sizeof(w->pod_namespace), "prod");
                snprintf(w->pod_name, sizeof(w->pod_name), "%s-7d9f8b6c4-x%03ld", SERVICES[j], d);
                snprintf(w->container, sizeof(w->container), "%s", SERVICES[j]);
                snprintf(w->url, sizeof(w->url), "http://10.0.0.%ld:%ld/debug/pprof", j + 2, 6060 + j);
                snprintf(w->go_version, sizeof(w->go_version), "go1.23.4");
                w->pid = (uint32_t)(100 + j);
                w->start_ticks = 1000;
                uint32_t base = 40 + rnd(10);
                site(&w->sites[0], "net/http.(*conn).serve", "net/http/server.go", 2039, ET_G_IO_WAIT, base / 2);
                site(&w->sites[1], "main.(*Server).accept", "cmd/server.go", 88, ET_G_IO_WAIT, 1);
                site(&w->sites[2], "main.(*Pool).worker", "pool/pool.go", 41, ET_G_CHAN_RECV, 8);
                site(&w->sites[3], "main.(*Cache).janitor", "cache/cache.go", 120, ET_G_SELECT, 1);
                site(&w->sites[4], "runtime.gopark", "runtime/proc.go", 425, ET_G_RUNNABLE, base - base / 2 - 10);
                site(&w->sites[5], "main.(*Pipeline).aggregate", "p/pipeline.go", 33, ET_G_CHAN_RECV, 2 + leak);
                w->nsites = 6;
                w->nsites_total = 6;
                w->goroutines = base + leak;
                w->by_state[ET_G_IO_WAIT] = base / 2 + 1;
                w->by_state[ET_G_CHAN_RECV] = 10 + leak;
                w->by_state[ET_G_SELECT] = 1;
                w->by_state[ET_G_RUNNABLE] = base - base / 2 - 10;
                w->mem.present = 1;
                w->mem.heap_alloc = 8u << 20;
                w->mem.heap_inuse = (10u << 20) + (uint64_t)leak * 8192 + rnd(1 << 16);
                w->mem.heap_sys = 32u << 20;
                w->mem.stack_inuse = (uint64_t)w->goroutines * 8192;
                w->mem.sys = 48u << 20;
                w->mem.num_gc = (uint32_t)k;
                w->proc.present = 1;
                w->proc.rss_kb = 30000 + leak * 8 + rnd(100);
                w->proc.threads = 9;
                w->proc.fds = 12;
                w->proc.cpu_ticks = (uint64_t)k * 3;
                w->cost_bytes = 9000;
                w->cost_ms = 4;
                if (leaking && leak >= 20) {
                    et_finding f;
                    memset(&f, 0, sizeof(f));
                    f.kind = ET_F_GOROUTINE_LEAK;
                    f.confidence = leak >= 200 ? ET_C_CONFIRMED : ET_C_LIKELY;
                    f.state = ET_G_CHAN_RECV;
                    f.evidence = ET_E_TREND | ET_E_CLUSTER;
                    snprintf(f.fingerprint, sizeof(f.fingerprint), "%016llx", 0xfeed000000000000ULL + (unsigned long long)(d * targets + j));
                    snprintf(f.site.func, sizeof(f.site.func), "main.(*Pipeline).aggregate");
                    snprintf(f.site.file, sizeof(f.site.file), "p/pipeline.go");
                    f.site.line = 33;
                    snprintf(f.created_by, sizeof(f.created_by), "main.(*Pipeline).Start");
                    snprintf(f.stack[0], sizeof(f.stack[0]), "main.(*Pipeline).aggregate");
                    snprintf(f.stack[1], sizeof(f.stack[1]), "main.(*Pipeline).Start.func1");
                    f.nstack = 2;
                    f.count = 2 + leak;
                    f.growth_per_min = 0.5;
                    f.oldest_wait_s = (double)(k - leak_from) * interval_s;
                    et_snapshot_add_finding(w, &f);
                }
                et_snap_id_hex(w->id, cs.snapshot_id);
                snprintf(cs.device_id, sizeof(cs.device_id), "%s", w->device_id);
                if (store_put_snapshot(s, w->device_id, &cs, t + 200, NULL, 0) < 0)
                    goto dberr;
                if (++n % (uint64_t)batch == 0 && (store_commit(s) || store_begin(s)))
                    goto dberr;
            }
        }
        if (k % 2000 == 0 && k) {
            double el = now_s() - t0;
            fprintf(stderr, "api_dbgen: %llu snapshots, %.0f/s\n", (unsigned long long)n, n / el);
        }
    }
    if (store_commit(s))
        goto dberr;
    double el = now_s() - t0;
    long long bytes = store_db_bytes(s);
    store_close(s);
    printf("snapshots %llu seconds %.1f rate %.0f/s bytes %lld\n", (unsigned long long)n, el, n / el, bytes);
    return 0;
dberr:
    fprintf(stderr, "api_dbgen: database: %s\n", store_errmsg(s));
    store_close(s);
    return 1;
}
