/* snapshot_sample.h - a realistic steady-state snapshot for size measurements: a Go service
 * with ~2,000 goroutines in 50 sites (HTTP connections, worker pools, tickers, consumers),
 * as the goroutine parser would summarise it. Shared by tools/bench/snapshot_bench.c and
 * tests/unit/test_snapshot.c (header-only on purpose: both are single-file programs).
 *
 * Names follow what Go prints for a module-based service built in CI: module paths under
 * github.com, files under the build checkout, the standard library under GOROOT. */
#ifndef ET_SNAPSHOT_SAMPLE_H
#define ET_SNAPSHOT_SAMPLE_H

#include <stdio.h>
#include <string.h>

#include "profile.h"
#include "snapshot.h"

typedef struct et_sample_site {
    const char *func, *file;
    unsigned line;
    enum et_gstate state;
    const char *created_by;
} et_sample_site;

/* 50 sites: counts are assigned below (a few big pools, a long tail of singletons). */
static const et_sample_site et_sample_sites[50] = {
    {"net/http.(*conn).serve", "/usr/local/go/src/net/http/server.go", 2043, ET_G_IO_WAIT, "net/http.(*Server).Serve"},
    {"github.com/acme/billing/internal/ingest.(*Worker).run", "/src/billing/internal/ingest/worker.go", 88, ET_G_CHAN_RECV, "github.com/acme/billing/internal/ingest.(*Pool).Start"},
    {"github.com/acme/billing/internal/ledger.(*Writer).flushLoop", "/src/billing/internal/ledger/writer.go", 141, ET_G_SELECT, "github.com/acme/billing/internal/ledger.NewWriter"},
    {"github.com/acme/billing/internal/pubsub.(*Subscriber).consume", "/src/billing/internal/pubsub/subscriber.go", 67, ET_G_SELECT, "github.com/acme/billing/internal/pubsub.(*Client).Subscribe"},
    {"google.golang.org/grpc/internal/transport.(*controlBuffer).get", "/root/go/pkg/mod/google.golang.org/grpc@v1.62.1/internal/transport/controlbuf.go", 418, ET_G_SELECT, "google.golang.org/grpc/internal/transport.newHTTP2Client"},
    {"google.golang.org/grpc/internal/transport.(*recvBufferReader).read", "/root/go/pkg/mod/google.golang.org/grpc@v1.62.1/internal/transport/transport.go", 181, ET_G_SELECT, "google.golang.org/grpc.newClientStreamWithParams"},
    {"github.com/acme/billing/internal/api.(*Server).streamInvoices", "/src/billing/internal/api/stream.go", 203, ET_G_CHAN_RECV, "google.golang.org/grpc.(*Server).serveStreams.func1.1"},
    {"database/sql.(*DB).connectionOpener", "/usr/local/go/src/database/sql/sql.go", 1218, ET_G_SELECT, "database/sql.OpenDB"},
    {"github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose.func1", "/root/go/pkg/mod/github.com/jackc/pgx/v5@v5.5.5/pgconn/pgconn.go", 612, ET_G_SELECT, "github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose"},
    {"github.com/acme/billing/internal/cache.(*LRU).janitor", "/src/billing/internal/cache/lru.go", 97, ET_G_SELECT, "github.com/acme/billing/internal/cache.New"},
    {"github.com/acme/billing/internal/metrics.(*Reporter).loop", "/src/billing/internal/metrics/reporter.go", 54, ET_G_SELECT, "github.com/acme/billing/internal/metrics.Start"},
    {"github.com/acme/billing/internal/ingest.(*Batcher).run", "/src/billing/internal/ingest/batcher.go", 122, ET_G_SELECT, "github.com/acme/billing/internal/ingest.NewBatcher"},
    {"github.com/acme/billing/internal/ratelimit.(*Bucket).refill", "/src/billing/internal/ratelimit/bucket.go", 39, ET_G_SELECT, "github.com/acme/billing/internal/ratelimit.NewBucket"},
    {"net/http.(*persistConn).readLoop", "/usr/local/go/src/net/http/transport.go", 2261, ET_G_IO_WAIT, "net/http.(*Transport).dialConn"},
    {"net/http.(*persistConn).writeLoop", "/usr/local/go/src/net/http/transport.go", 2444, ET_G_SELECT, "net/http.(*Transport).dialConn"},
    {"github.com/acme/billing/internal/webhook.(*Dispatcher).deliver", "/src/billing/internal/webhook/dispatch.go", 176, ET_G_SEMACQUIRE, "github.com/acme/billing/internal/webhook.(*Dispatcher).Run"},
    {"github.com/acme/billing/internal/session.(*Store).gc", "/src/billing/internal/session/store.go", 260, ET_G_SLEEP, "github.com/acme/billing/internal/session.NewStore"},
    {"github.com/acme/billing/internal/ledger.(*Reconciler).Run", "/src/billing/internal/ledger/reconcile.go", 73, ET_G_SELECT, "main.main"},
    {"go.opentelemetry.io/otel/sdk/trace.(*batchSpanProcessor).processQueue", "/root/go/pkg/mod/go.opentelemetry.io/otel/sdk@v1.24.0/trace/batch_span_processor.go", 301, ET_G_SELECT, "go.opentelemetry.io/otel/sdk/trace.NewBatchSpanProcessor.func1"},
    {"github.com/acme/billing/internal/api.(*Server).watchConfig", "/src/billing/internal/api/config.go", 45, ET_G_CHAN_RECV, "github.com/acme/billing/internal/api.NewServer"},
    {"os/signal.signal_recv", "/usr/local/go/src/runtime/sigqueue.go", 152, ET_G_SYSCALL, "os/signal.Notify.func1.1"},
    {"main.main", "/src/billing/cmd/billing/main.go", 118, ET_G_SELECT, ""},
    {"github.com/acme/billing/internal/ingest.(*Pool).supervise", "/src/billing/internal/ingest/pool.go", 151, ET_G_WAITGROUP, "github.com/acme/billing/internal/ingest.(*Pool).Start"},
    {"github.com/acme/billing/internal/export.(*S3Uploader).worker", "/src/billing/internal/export/s3.go", 212, ET_G_CHAN_RECV, "github.com/acme/billing/internal/export.NewS3Uploader"},
    {"github.com/acme/billing/internal/ledger.(*Writer).commit", "/src/billing/internal/ledger/writer.go", 188, ET_G_MUTEX, "github.com/acme/billing/internal/ledger.(*Writer).flushLoop"},
    {"google.golang.org/grpc.(*ccBalancerWrapper).watcher", "/root/go/pkg/mod/google.golang.org/grpc@v1.62.1/balancer_conn_wrappers.go", 112, ET_G_SELECT, "google.golang.org/grpc.newCCBalancerWrapper"},
    {"google.golang.org/grpc.(*addrConn).resetTransport", "/root/go/pkg/mod/google.golang.org/grpc@v1.62.1/clientconn.go", 1242, ET_G_SELECT, "google.golang.org/grpc.(*addrConn).connect"},
    {"google.golang.org/grpc/internal/transport.(*http2Client).reader", "/root/go/pkg/mod/google.golang.org/grpc@v1.62.1/internal/transport/http2_client.go", 1593, ET_G_IO_WAIT, "google.golang.org/grpc/internal/transport.newHTTP2Client"},
    {"google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run", "/root/go/pkg/mod/google.golang.org/grpc@v1.62.1/internal/grpcsync/callback_serializer.go", 83, ET_G_SELECT, "google.golang.org/grpc/internal/grpcsync.NewCallbackSerializer"},
    {"github.com/acme/billing/internal/featureflag.(*Poller).poll", "/src/billing/internal/featureflag/poller.go", 66, ET_G_SELECT, "github.com/acme/billing/internal/featureflag.Start"},
    {"github.com/acme/billing/internal/audit.(*Log).drain", "/src/billing/internal/audit/log.go", 131, ET_G_CHAN_RECV, "github.com/acme/billing/internal/audit.New"},
    {"github.com/acme/billing/internal/health.(*Checker).loop", "/src/billing/internal/health/checker.go", 58, ET_G_SELECT, "github.com/acme/billing/internal/health.NewChecker"},
    {"github.com/acme/billing/internal/ingest.(*Dedup).expire", "/src/billing/internal/ingest/dedup.go", 91, ET_G_SELECT, "github.com/acme/billing/internal/ingest.NewDedup"},
    {"github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper", "/root/go/pkg/mod/github.com/redis/go-redis/v9@v9.5.1/internal/pool/pool.go", 485, ET_G_SELECT, "github.com/redis/go-redis/v9/internal/pool.NewConnPool"},
    {"github.com/acme/billing/internal/currency.(*RateFetcher).run", "/src/billing/internal/currency/rates.go", 77, ET_G_SELECT, "github.com/acme/billing/internal/currency.NewRateFetcher"},
    {"github.com/acme/billing/internal/api.(*Server).ServeHTTP", "/src/billing/internal/api/server.go", 311, ET_G_RWMUTEX_R, "net/http.(*conn).serve"},
    {"github.com/acme/billing/internal/ledger.(*Snapshotter).run", "/src/billing/internal/ledger/snapshot.go", 49, ET_G_SLEEP, "github.com/acme/billing/internal/ledger.NewSnapshotter"},
    {"net/http.(*Server).Serve", "/usr/local/go/src/net/http/server.go", 3255, ET_G_IO_WAIT, "main.main"},
    {"github.com/acme/billing/internal/ingest.(*Decoder).stream", "/src/billing/internal/ingest/decoder.go", 140, ET_G_CHAN_SEND, "github.com/acme/billing/internal/ingest.(*Worker).run"},
    {"github.com/acme/billing/internal/tenant.(*Registry).watch", "/src/billing/internal/tenant/registry.go", 102, ET_G_SELECT, "github.com/acme/billing/internal/tenant.NewRegistry"},
    {"github.com/acme/billing/internal/invoice.(*Renderer).loop", "/src/billing/internal/invoice/render.go", 233, ET_G_COND_WAIT, "github.com/acme/billing/internal/invoice.NewRenderer"},
    {"runtime.gopark", "/usr/local/go/src/runtime/proc.go", 402, ET_G_RUNTIME, ""},
    {"github.com/acme/billing/internal/queue.(*Retry).schedule", "/src/billing/internal/queue/retry.go", 84, ET_G_TIMER_WAIT, "github.com/acme/billing/internal/queue.(*Retry).Start"},
    {"github.com/acme/billing/internal/api.(*Server).Run.func2", "/src/billing/internal/api/server.go", 142, ET_G_CHAN_RECV, "github.com/acme/billing/internal/api.(*Server).Run"},
    {"github.com/acme/billing/internal/ingest.(*Pool).Start.func1", "/src/billing/internal/ingest/pool.go", 64, ET_G_SELECT, "github.com/acme/billing/internal/ingest.(*Pool).Start"},
    {"github.com/acme/billing/internal/notify.(*Mailer).send", "/src/billing/internal/notify/mail.go", 158, ET_G_IO_WAIT, "github.com/acme/billing/internal/notify.(*Mailer).Run"},
    {"github.com/acme/billing/internal/grpcapi.(*Gateway).proxy", "/src/billing/internal/grpcapi/gateway.go", 97, ET_G_SELECT, "github.com/acme/billing/internal/grpcapi.(*Gateway).Start"},
    {"github.com/acme/billing/internal/ledger.(*Index).compact", "/src/billing/internal/ledger/index.go", 320, ET_G_RUNNABLE, "github.com/acme/billing/internal/ledger.(*Index).Start"},
    {"github.com/acme/billing/internal/ingest.(*Worker).handle", "/src/billing/internal/ingest/worker.go", 131, ET_G_RUNNING, "github.com/acme/billing/internal/ingest.(*Pool).Start"},
    {"github.com/acme/billing/internal/debug.(*Server).serve", "/src/billing/internal/debug/server.go", 36, ET_G_IO_WAIT, "main.main"},
};

/* Site counts summing to 2,000 over 50 sites: 1,200 HTTP connections, pools of 256/128/64,
 * then a tail. */
static const unsigned et_sample_counts[50] = {
    1200, 256, 128, 64, 48, 40, 32, 24, 16, 16, 12, 12, 10, 8, 8, 8, 6, 6, 5, 5,
    4, 4, 4, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* Fills gp as the goroutine parser would for nsites <= 50 sites of the table above; the
 * counts are scaled to `total` goroutines. Deterministic. */
static inline void et_sample_gprofile(et_gprofile *gp, unsigned nsites, unsigned total)
{
    memset(gp, 0, sizeof *gp);
    if (nsites > 50)
        nsites = 50;
    unsigned sum = 0;
    for (unsigned i = 0; i < 50; i++)
        sum += et_sample_counts[i];
    unsigned acc = 0;
    for (unsigned i = 0; i < nsites; i++) {
        et_gsite *g = &gp->sites[i];
        const et_sample_site *t = &et_sample_sites[i];
        unsigned c = (unsigned)((unsigned long long)et_sample_counts[i] * total / sum);
        if (c == 0)
            c = 1;
        if (i == nsites - 1 && acc + c < total)
            c = total - acc;
        acc += c;
        g->state = (uint8_t)t->state;
        g->count = c;
        snprintf(g->user.func, sizeof g->user.func, "%s", t->func);
        snprintf(g->user.file, sizeof g->user.file, "%s", t->file);
        g->user.line = t->line;
        snprintf(g->created_by, sizeof g->created_by, "%s", t->created_by);
        g->max_wait_min = (t->state == ET_G_IO_WAIT || t->state == ET_G_SELECT) ? 30u + i : 0u;
        g->key = 1000u + i;
        gp->by_state[g->state] += c;
    }
    gp->nsites = nsites;
    gp->goroutines = acc;
    gp->header_total = acc;
    gp->debug = 1;
    snprintf(gp->go_version, sizeof gp->go_version, "go1.23.4");
}

/* A routine (no findings) snapshot of gp with the usual identity and figures. */
static inline void et_sample_snapshot(et_snapshot *s, const et_gprofile *gp, unsigned top_n, uint64_t seq)
{
    et_snapshot_init(s);
    for (unsigned i = 0; i < ET_SNAP_ID_LEN; i++)
        s->id[i] = (uint8_t)(0xa5 ^ (i * 37) ^ (uint8_t)seq);
    snprintf(s->device_id, sizeof s->device_id, "gw-0042");
    snprintf(s->board, sizeof s->board, "rpi4");
    snprintf(s->agent_version, sizeof s->agent_version, "0.1.0");
    s->seq = seq;
    for (unsigned i = 0; i < 16; i++)
        s->boot_id[i] = (uint8_t)(0x3c + 11 * i);
    s->mono_ms = 86400000ull * 3 + 30000ull * seq;
    s->wall_ms = 1763900000000LL + (int64_t)(30000 * seq);
    snprintf(s->service, sizeof s->service, "billing");
    snprintf(s->pod_namespace, sizeof s->pod_namespace, "payments");
    snprintf(s->pod_name, sizeof s->pod_name, "billing-7d9f8c6b5-x2x4q");
    snprintf(s->container, sizeof s->container, "billing");
    s->pid = 2817;
    s->start_ticks = 48213377;
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:6060");
    et_snapshot_set_sites(s, gp, top_n);
    et_memstats ms;
    memset(&ms, 0, sizeof ms);
    ms.present = 1;
    ms.heap_alloc = 48213424;
    ms.heap_inuse = 53739520;
    ms.heap_idle = 21102592;
    ms.heap_released = 15368192;
    ms.heap_sys = 74842112;
    ms.stack_inuse = 8585216;
    ms.sys = 97541384;
    ms.next_gc = 93424816;
    ms.num_gc = 18231;
    et_snapshot_set_memstats(s, &ms);
    et_procstat ps;
    memset(&ps, 0, sizeof ps);
    ps.present = 1;
    ps.vm_rss_kb = 131072;
    ps.threads = 23;
    ps.fds = 1247;
    ps.utime_ticks = 912345;
    ps.stime_ticks = 123456;
    ps.start_time_ticks = 48213377;
    et_snapshot_set_proc(s, &ps);
    s->spool_bytes_today = 1843200;
    s->cost_bytes = 96000;
    s->cost_ms = 41;
}

#endif
