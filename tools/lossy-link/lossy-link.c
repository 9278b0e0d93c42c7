/*
 * NAME
 *     lossy-link - userspace UDP impairment proxy (a netem substitute)
 *
 * SYNOPSIS
 *     lossy-link --listen ADDR:PORT --upstream ADDR:PORT [options]
 *
 * DESCRIPTION
 *     The kernel on the test machine has no netem, so lossy-link stands between a
 *     UDP client (the agent's CoAP/DTLS uplink) and its server (the collector) and
 *     damages the traffic on purpose: loss, delay, jitter, reordering, duplication,
 *     scheduled outages, a bandwidth cap and NAT-style source-port rebinding.
 *
 *     Clients send to --listen.  Each distinct client address gets a flow with its
 *     own upstream socket, connected to --upstream, exactly like a NAT mapping: the
 *     upstream server sees one source port per client.  Replies arriving on that
 *     socket are sent back to the client from the --listen socket.
 *
 *     "up" is client -> upstream, "down" is upstream -> client.
 *
 *     Impairments are applied to each received datagram in this order: outage,
 *     loss, bandwidth cap (bottleneck queue), delay + jitter, duplication,
 *     reordering.  Jitter is uniform in [0, JITTER] added to DELAY, so no packet
 *     is ever early; jitter alone never reorders packets of one flow (each flow
 *     and direction is kept FIFO), reordering is only what --reorder asks for.
 *     A reordered packet is held back until the next packet of the same flow and
 *     direction has been scheduled, then sent right after it; if none arrives
 *     within --reorder-hold-ms it is released on its own (counted as
 *     reorder_timeouts, not reordered).  Packets already queued when an outage
 *     starts are dropped if they come due inside it.
 *
 *     With --seed the random decisions are reproducible: each direction has its
 *     own generator and draws the same number of values per received datagram, so
 *     the Nth datagram in a direction always meets the same fate.
 *
 * OPTIONS
 *     --listen ADDR:PORT        address clients send to (PORT 0 = pick one; the
 *                               chosen address is printed in the ready line)
 *     --upstream ADDR:PORT      the real server
 *         ADDR is a numeric IPv4 address, "localhost", or [IPv6].
 *     --loss PCT                loss in both directions (0..100, fractional ok)
 *     --loss-up PCT, --loss-down PCT
 *     --delay-ms MS             one-way delay in both directions
 *     --delay-up-ms MS, --delay-down-ms MS
 *     --jitter-ms MS            extra uniform [0, MS] delay in both directions
 *     --jitter-up-ms MS, --jitter-down-ms MS
 *     --reorder PCT             chance a packet is held back and sent after the
 *     --reorder-up PCT, --reorder-down PCT        next one of its flow
 *     --reorder-hold-ms MS      longest hold for a reordered packet (default 200)
 *     --dup PCT                 chance a packet is sent twice
 *     --dup-up PCT, --dup-down PCT
 *     --rate-kbps KBPS          bottleneck rate per direction (payload + 28
 *     --rate-up-kbps KBPS, --rate-down-kbps KBPS  bytes of IP/UDP header)
 *     --rate-buffer-ms MS       bottleneck buffer; beyond it packets are dropped
 *                               as queue drops (default 1000)
 *     --outage START_S:DURATION_S
 *                               drop everything both ways in [START, START+DUR)
 *                               seconds after the proxy became ready; repeatable
 *                               (up to 64), fractional seconds ok
 *     --rebind-every S          replace every flow's upstream socket every S
 *                               seconds (new source port; old socket closed)
 *     --seed N                  seed for all random decisions (default: from
 *                               time and pid; reported in the stats)
 *     --max-queue N             packets queued at most (default 4096)
 *     --max-queue-bytes N       payload bytes queued at most (default 33554432)
 *     --max-flows N             flows at most (default 256); datagrams from
 *                               further clients are dropped (dropped_no_flow)
 *     --flow-idle-s S           forget flows idle this long (default 300, 0 =
 *                               never); a forgotten client gets a new port later
 *     --stats-file PATH         rewrite PATH with the stats JSON every second
 *                               (atomically: PATH.tmp + rename), on SIGUSR2 and
 *                               at exit
 *     --ready-file PATH         write "ADDR:PORT\n" of the listen socket to PATH
 *                               (atomically) once listening
 *     --verbose                 log flow creation, expiry and rebinds to stderr
 *     -h, --help                this text
 *
 * OUTPUT
 *     Once listening, one line "ready ADDR:PORT" on stdout.  Stats are one JSON
 *     line on stderr (on SIGUSR2 and at exit); human-readable messages on stderr
 *     start with "lossy-link:", JSON lines with "{".  Stats fields: seq, seed,
 *     uptime_s, in_outage, flows_active, flows_created, flows_expired,
 *     flows_rejected, rebinds, rebind_failures, queue_len, queue_bytes,
 *     queue_peak, then "up" and "down" objects with received, bytes_received,
 *     forwarded, bytes_forwarded, dropped_loss, dropped_outage, dropped_queue,
 *     dropped_no_flow, dropped_send, dropped_oversize, duplicated, reordered,
 *     reorder_timeouts, queued; then "flows": [{client, upstream_port, rebinds,
 *     up, down}].  Once the queue is empty:
 *         received + duplicated == forwarded + all dropped_*.
 *
 * SIGNALS
 *     SIGUSR1   rebind every flow now
 *     SIGUSR2   print stats to stderr (and rewrite --stats-file)
 *     SIGTERM, SIGINT, SIGHUP   print final stats and exit 0; queued packets are
 *               discarded
 *
 * EXIT STATUS
 *     0 on signal-driven exit, 1 on a runtime failure (e.g. cannot bind),
 *     2 on bad command-line arguments.
 *
 * EXAMPLE
 *     lossy-link --listen 127.0.0.1:5684 --upstream 127.0.0.1:15684 \
 *         --loss 30 --delay-ms 300 --outage 20:60 --rebind-every 45 --seed 7
 *
 * DESIGN NOTES
 *     Single-threaded epoll loop; every socket non-blocking; signals via
 *     signalfd.  Delayed packets live in a binary min-heap keyed by (due time,
 *     sequence) so equal deadlines keep arrival order.  Queued packets are
 *     malloc'ed at their exact size: this is a host test tool, and the count and
 *     byte caps keep memory bounded no matter what arrives.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define LL_NAME "lossy-link"
#define LL_MAX_DGRAM 65536 /* > largest UDP payload over IPv4 (65507) or IPv6 (65527) */
#define LL_MAX_OUTAGES 64
#define LL_RECV_BURST 256 /* datagrams read per readiness event, so timers still run */
#define LL_HEADER_BYTES 28 /* IPv4 + UDP header, charged against --rate-kbps */
#define LL_SOCK_BUF (4 * 1024 * 1024)

enum { DIR_UP = 0, DIR_DOWN = 1, DIR_COUNT = 2 };
static const char *const dir_name[DIR_COUNT] = {"up", "down"};

/* epoll tags: low 32 bits are a tag or flow index + TAG_FLOW_BASE, high 32 the flow generation */
enum { TAG_LISTEN = 0, TAG_SIGNAL = 1, TAG_FLOW_BASE = 2 };

struct dir_cfg {
    double loss_pct, dup_pct, reorder_pct;
    int64_t delay_us, jitter_us;
    uint64_t rate_bps; /* 0 = unlimited */
};

struct outage {
    int64_t start_us, end_us; /* relative to proxy start */
};

struct config {
    struct sockaddr_storage listen_addr, upstream_addr;
    socklen_t listen_len, upstream_len;
    bool have_listen, have_upstream;
    struct dir_cfg dir[DIR_COUNT];
    struct outage outages[LL_MAX_OUTAGES];
    int n_outages;
    int64_t rebind_every_us; /* 0 = never */
    uint64_t seed;
    bool seed_given;
    uint32_t max_queue;
    uint64_t max_queue_bytes;
    uint32_t max_flows;
    int64_t flow_idle_us; /* 0 = never */
    int64_t reorder_hold_us;
    int64_t rate_buffer_us;
    const char *stats_file;
    const char *ready_file;
    bool verbose;
};

struct dir_stats {
    uint64_t received, bytes_received, forwarded, bytes_forwarded;
    uint64_t dropped_loss, dropped_outage, dropped_queue, dropped_no_flow, dropped_send, dropped_oversize;
    uint64_t duplicated, reordered, reorder_timeouts;
    uint64_t queued; /* currently in the heap */
};

struct packet {
    int64_t due_us;
    uint64_t seq;     /* tie-break: equal due times leave in arrival order */
    uint32_t heap_pos;
    uint32_t flow;
    uint8_t dir;
    uint32_t len;
    unsigned char data[];
};

struct flow {
    bool used;
    uint32_t gen;
    struct sockaddr_storage client;
    socklen_t client_len;
    int up_fd;
    uint16_t up_port;
    int64_t last_active_us;
    uint32_t queued;                  /* packets in the heap for this flow (pins it against expiry) */
    struct packet *held[DIR_COUNT];   /* packet held back for reordering, also in the heap */
    struct packet *held_dup[DIR_COUNT]; /* its duplicate, if any: it travels right behind it */
    int64_t last_due[DIR_COUNT];      /* FIFO clamp so jitter never reorders */
    uint64_t rebinds;
    uint64_t forwarded[DIR_COUNT];
    int32_t hash_next;
};

struct rng {
    uint64_t s[4];
};

struct state {
    struct config cfg;
    int ep, listen_fd, sig_fd;
    int64_t start_us;
    uint64_t next_seq;

    struct packet **heap;
    uint32_t heap_len;
    uint64_t queue_bytes;
    uint32_t queue_peak;

    struct flow *flows;
    int32_t *buckets;
    uint32_t bucket_mask;
    uint32_t flows_active;
    uint64_t flows_created, flows_expired, flows_rejected;
    uint64_t rebinds, rebind_failures;

    int64_t link_free_us[DIR_COUNT]; /* when each direction's bottleneck is idle again */
    struct rng rng[DIR_COUNT];
    struct dir_stats st[DIR_COUNT];

    int64_t next_rebind_us, next_tick_us;
    uint64_t stats_seq;
    char *json;
    size_t json_cap;
    bool stop;
};

static unsigned char rx_buf[LL_MAX_DGRAM];

/* ---------------------------------------------------------------- utilities */

static void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void msg(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, LL_NAME ": %s\n", line);
}

/* Nearest integer for the bounded, non-negative values the parser admits; avoids needing libm. */
static int64_t round_i64(double v) { return (int64_t)(v + 0.5); }

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman & Vigna, public domain algorithm, written from the paper's description) */
static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* uniform in [0, 1) */
static double rng_unit(struct rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
        snprintf(out, cap, "%s:%u", host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
        snprintf(out, cap, "[%s]:%u", host, port);
    } else {
        snprintf(out, cap, "?");
    }
}

static uint16_t addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}

/* Large socket buffers, so a burst is not lost in the kernel while the proxy waits for the CPU on a
 * busy machine: losses must be the ones we chose.  The FORCE variants pass net.core.rmem_max when
 * running as root; otherwise the capped request is the best we can do. */
static void big_socket_buffers(int fd)
{
    int buf = LL_SOCK_BUF;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
}

/* Write a whole file atomically (PATH.tmp then rename) so a reader never sees half of it. */
static int write_file_atomic(const char *path, const char *data, size_t len)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------- command-line parsing */

static const char usage_text[] =
    "usage: lossy-link --listen ADDR:PORT --upstream ADDR:PORT [options]\n"
    "\n"
    "Userspace UDP impairment proxy. Each client address gets its own upstream\n"
    "socket (like a NAT); traffic is damaged in both directions.\n"
    "\"up\" = client -> upstream, \"down\" = upstream -> client.\n"
    "\n"
    "  --listen ADDR:PORT         where clients send (PORT 0 = any, see ready line)\n"
    "  --upstream ADDR:PORT       the real server (ADDR: IPv4, localhost or [IPv6])\n"
    "  --loss PCT                 loss both ways (0..100); --loss-up, --loss-down\n"
    "  --delay-ms MS              one-way delay; --delay-up-ms, --delay-down-ms\n"
    "  --jitter-ms MS             extra uniform [0,MS] delay; --jitter-up-ms, --jitter-down-ms\n"
    "  --reorder PCT              hold a packet back until after the next one;\n"
    "                             --reorder-up, --reorder-down\n"
    "  --reorder-hold-ms MS       longest hold of a reordered packet (default 200)\n"
    "  --dup PCT                  send a packet twice; --dup-up, --dup-down\n"
    "  --rate-kbps KBPS           bottleneck rate; --rate-up-kbps, --rate-down-kbps\n"
    "  --rate-buffer-ms MS        bottleneck buffer before queue drops (default 1000)\n"
    "  --outage START_S:DUR_S     drop everything both ways in that window after\n"
    "                             start (repeatable, up to 64)\n"
    "  --rebind-every S           new upstream source port for every flow every S s\n"
    "  --seed N                   make random decisions reproducible\n"
    "  --max-queue N              queued packets at most (default 4096)\n"
    "  --max-queue-bytes N        queued payload bytes at most (default 33554432)\n"
    "  --max-flows N              flows at most (default 256)\n"
    "  --flow-idle-s S            forget idle flows after S s (default 300, 0 = never)\n"
    "  --stats-file PATH          rewrite stats JSON every second, on SIGUSR2, at exit\n"
    "  --ready-file PATH          write \"ADDR:PORT\" there once listening\n"
    "  --verbose                  log flow and rebind events\n"
    "  -h, --help                 this text\n"
    "\n"
    "Prints \"ready ADDR:PORT\" on stdout once listening. SIGUSR1 rebinds all flows,\n"
    "SIGUSR2 prints one stats JSON line to stderr, SIGTERM/SIGINT/SIGHUP print stats\n"
    "and exit 0. Bad arguments exit 2. See the comment at the top of lossy-link.c.\n";

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, LL_NAME ": %s\n" LL_NAME ": try --help\n", line);
    exit(2);
}

static double parse_double(const char *opt, const char *s, double lo, double hi)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (s[0] == '\0' || end == s || *end != '\0' || errno == ERANGE || !(v >= lo && v <= hi))
        die_usage("%s: expected a number in [%g, %g], got '%s'", opt, lo, hi, s);
    return v;
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi)
{
    char *end = NULL;
    errno = 0;
    /* strtoull quietly accepts "-1"; a leading sign is never meant here */
    if (s[0] < '0' || s[0] > '9')
        die_usage("%s: expected an integer in [%" PRIu64 ", %" PRIu64 "], got '%s'", opt, lo, hi, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno == ERANGE || v < lo || v > hi)
        die_usage("%s: expected an integer in [%" PRIu64 ", %" PRIu64 "], got '%s'", opt, lo, hi, s);
    return (uint64_t)v;
}

/* Milliseconds (fractional ok) to microseconds, bounded to ten minutes. */
static int64_t parse_ms(const char *opt, const char *s)
{
    return (int64_t)round_i64(parse_double(opt, s, 0, 600000) * 1000.0);
}

static void parse_addr(const char *opt, const char *s, bool port_zero_ok, struct sockaddr_storage *out,
                       socklen_t *out_len)
{
    char host[128];
    const char *port_str;
    memset(out, 0, sizeof *out);
    if (s[0] == '[') {
        const char *close_br = strchr(s, ']');
        if (!close_br || close_br[1] != ':' || (size_t)(close_br - s - 1) >= sizeof host)
            die_usage("%s: expected [IPv6]:PORT, got '%s'", opt, s);
        memcpy(host, s + 1, (size_t)(close_br - s - 1));
        host[close_br - s - 1] = '\0';
        port_str = close_br + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s || (size_t)(colon - s) >= sizeof host || strchr(s, ':') != colon)
            die_usage("%s: expected ADDR:PORT (numeric IPv4, localhost or [IPv6]), got '%s'", opt, s);
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port_str = colon + 1;
    }
    uint64_t port = parse_u64(opt, port_str, port_zero_ok ? 0 : 1, 65535);
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *out_len = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *out_len = sizeof *a6;
    } else {
        die_usage("%s: '%s' is not a numeric IPv4/IPv6 address", opt, host);
    }
}

static void parse_outage(struct config *c, const char *s)
{
    const char *colon = strchr(s, ':');
    char start[64];
    if (!colon || (size_t)(colon - s) >= sizeof start)
        die_usage("--outage: expected START_S:DURATION_S, got '%s'", s);
    if (c->n_outages >= LL_MAX_OUTAGES)
        die_usage("--outage: at most %d outages", LL_MAX_OUTAGES);
    memcpy(start, s, (size_t)(colon - s));
    start[colon - s] = '\0';
    double st = parse_double("--outage START_S", start, 0, 1e7);
    double dur = parse_double("--outage DURATION_S", colon + 1, 0, 1e7);
    if (dur <= 0)
        die_usage("--outage: DURATION_S must be > 0, got '%s'", colon + 1);
    c->outages[c->n_outages].start_us = (int64_t)round_i64(st * 1e6);
    c->outages[c->n_outages].end_us = (int64_t)round_i64((st + dur) * 1e6);
    c->n_outages++;
}

enum {
    OPT_LISTEN = 256, OPT_UPSTREAM, OPT_LOSS, OPT_LOSS_UP, OPT_LOSS_DOWN, OPT_DELAY, OPT_DELAY_UP,
    OPT_DELAY_DOWN, OPT_JITTER, OPT_JITTER_UP, OPT_JITTER_DOWN, OPT_REORDER, OPT_REORDER_UP,
    OPT_REORDER_DOWN, OPT_REORDER_HOLD, OPT_DUP, OPT_DUP_UP, OPT_DUP_DOWN, OPT_RATE, OPT_RATE_UP,
    OPT_RATE_DOWN, OPT_RATE_BUFFER, OPT_OUTAGE, OPT_REBIND_EVERY, OPT_SEED, OPT_MAX_QUEUE,
    OPT_MAX_QUEUE_BYTES, OPT_MAX_FLOWS, OPT_FLOW_IDLE, OPT_STATS_FILE, OPT_READY_FILE, OPT_VERBOSE,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"upstream", required_argument, NULL, OPT_UPSTREAM},
    {"loss", required_argument, NULL, OPT_LOSS},
    {"loss-up", required_argument, NULL, OPT_LOSS_UP},
    {"loss-down", required_argument, NULL, OPT_LOSS_DOWN},
    {"delay-ms", required_argument, NULL, OPT_DELAY},
    {"delay-up-ms", required_argument, NULL, OPT_DELAY_UP},
    {"delay-down-ms", required_argument, NULL, OPT_DELAY_DOWN},
    {"jitter-ms", required_argument, NULL, OPT_JITTER},
    {"jitter-up-ms", required_argument, NULL, OPT_JITTER_UP},
    {"jitter-down-ms", required_argument, NULL, OPT_JITTER_DOWN},
    {"reorder", required_argument, NULL, OPT_REORDER},
    {"reorder-up", required_argument, NULL, OPT_REORDER_UP},
    {"reorder-down", required_argument, NULL, OPT_REORDER_DOWN},
    {"reorder-hold-ms", required_argument, NULL, OPT_REORDER_HOLD},
    {"dup", required_argument, NULL, OPT_DUP},
    {"dup-up", required_argument, NULL, OPT_DUP_UP},
    {"dup-down", required_argument, NULL, OPT_DUP_DOWN},
    {"rate-kbps", required_argument, NULL, OPT_RATE},
    {"rate-up-kbps", required_argument, NULL, OPT_RATE_UP},
    {"rate-down-kbps", required_argument, NULL, OPT_RATE_DOWN},
    {"rate-buffer-ms", required_argument, NULL, OPT_RATE_BUFFER},
    {"outage", required_argument, NULL, OPT_OUTAGE},
    {"rebind-every", required_argument, NULL, OPT_REBIND_EVERY},
    {"seed", required_argument, NULL, OPT_SEED},
    {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
    {"max-queue-bytes", required_argument, NULL, OPT_MAX_QUEUE_BYTES},
    {"max-flows", required_argument, NULL, OPT_MAX_FLOWS},
    {"flow-idle-s", required_argument, NULL, OPT_FLOW_IDLE},
    {"stats-file", required_argument, NULL, OPT_STATS_FILE},
    {"ready-file", required_argument, NULL, OPT_READY_FILE},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void parse_args(struct config *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    c->max_queue = 4096;
    c->max_queue_bytes = 32u * 1024 * 1024;
    c->max_flows = 256;
    c->flow_idle_us = 300 * 1000000LL;
    c->reorder_hold_us = 200 * 1000;
    c->rate_buffer_us = 1000 * 1000;

    int ch;
    opterr = 1; /* getopt names the bad option itself; we add the exit status */
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        const char *o = optarg;
        struct dir_cfg *up = &c->dir[DIR_UP], *dn = &c->dir[DIR_DOWN];
        switch (ch) {
        case OPT_LISTEN: parse_addr("--listen", o, true, &c->listen_addr, &c->listen_len); c->have_listen = true; break;
        case OPT_UPSTREAM: parse_addr("--upstream", o, false, &c->upstream_addr, &c->upstream_len); c->have_upstream = true; break;
        case OPT_LOSS: up->loss_pct = dn->loss_pct = parse_double("--loss", o, 0, 100); break;
        case OPT_LOSS_UP: up->loss_pct = parse_double("--loss-up", o, 0, 100); break;
        case OPT_LOSS_DOWN: dn->loss_pct = parse_double("--loss-down", o, 0, 100); break;
        case OPT_DELAY: up->delay_us = dn->delay_us = parse_ms("--delay-ms", o); break;
        case OPT_DELAY_UP: up->delay_us = parse_ms("--delay-up-ms", o); break;
        case OPT_DELAY_DOWN: dn->delay_us = parse_ms("--delay-down-ms", o); break;
        case OPT_JITTER: up->jitter_us = dn->jitter_us = parse_ms("--jitter-ms", o); break;
        case OPT_JITTER_UP: up->jitter_us = parse_ms("--jitter-up-ms", o); break;
        case OPT_JITTER_DOWN: dn->jitter_us = parse_ms("--jitter-down-ms", o); break;
        case OPT_REORDER: up->reorder_pct = dn->reorder_pct = parse_double("--reorder", o, 0, 100); break;
        case OPT_REORDER_UP: up->reorder_pct = parse_double("--reorder-up", o, 0, 100); break;
        case OPT_REORDER_DOWN: dn->reorder_pct = parse_double("--reorder-down", o, 0, 100); break;
        case OPT_REORDER_HOLD:
            c->reorder_hold_us = parse_ms("--reorder-hold-ms", o);
            if (c->reorder_hold_us < 1000)
                die_usage("--reorder-hold-ms: must be at least 1, got '%s'", o);
            break;
        case OPT_DUP: up->dup_pct = dn->dup_pct = parse_double("--dup", o, 0, 100); break;
        case OPT_DUP_UP: up->dup_pct = parse_double("--dup-up", o, 0, 100); break;
        case OPT_DUP_DOWN: dn->dup_pct = parse_double("--dup-down", o, 0, 100); break;
        case OPT_RATE: up->rate_bps = dn->rate_bps = parse_u64("--rate-kbps", o, 1, 100000000) * 1000; break;
        case OPT_RATE_UP: up->rate_bps = parse_u64("--rate-up-kbps", o, 1, 100000000) * 1000; break;
        case OPT_RATE_DOWN: dn->rate_bps = parse_u64("--rate-down-kbps", o, 1, 100000000) * 1000; break;
        case OPT_RATE_BUFFER:
            c->rate_buffer_us = parse_ms("--rate-buffer-ms", o);
            if (c->rate_buffer_us < 1000)
                die_usage("--rate-buffer-ms: must be at least 1, got '%s'", o);
            break;
        case OPT_OUTAGE: parse_outage(c, o); break;
        case OPT_REBIND_EVERY: {
            double s = parse_double("--rebind-every", o, 0.01, 1e7);
            c->rebind_every_us = (int64_t)round_i64(s * 1e6);
            break;
        }
        case OPT_SEED: c->seed = parse_u64("--seed", o, 0, UINT64_MAX); c->seed_given = true; break;
        case OPT_MAX_QUEUE: c->max_queue = (uint32_t)parse_u64("--max-queue", o, 1, 1000000); break;
        case OPT_MAX_QUEUE_BYTES: c->max_queue_bytes = parse_u64("--max-queue-bytes", o, LL_MAX_DGRAM, 1ULL << 32); break;
        case OPT_MAX_FLOWS: c->max_flows = (uint32_t)parse_u64("--max-flows", o, 1, 65536); break;
        case OPT_FLOW_IDLE: c->flow_idle_us = (int64_t)round_i64(parse_double("--flow-idle-s", o, 0, 1e7) * 1e6); break;
        case OPT_STATS_FILE:
            if (o[0] == '\0' || strlen(o) > PATH_MAX - 8)
                die_usage("--stats-file: bad path");
            c->stats_file = o;
            break;
        case OPT_READY_FILE:
            if (o[0] == '\0' || strlen(o) > PATH_MAX - 8)
                die_usage("--ready-file: bad path");
            c->ready_file = o;
            break;
        case OPT_VERBOSE: c->verbose = true; break;
        case 'h': fputs(usage_text, stdout); exit(0);
        default: fputs(LL_NAME ": try --help\n", stderr); exit(2);
        }
    }
    if (optind < argc)
        die_usage("unexpected argument '%s'", argv[optind]);
    if (!c->have_listen)
        die_usage("--listen ADDR:PORT is required");
    if (!c->have_upstream)
        die_usage("--upstream ADDR:PORT is required");
}

/* ----------------------------------------------------------------- min-heap */

static bool pkt_before(const struct packet *a, const struct packet *b)
{
    return a->due_us < b->due_us || (a->due_us == b->due_us && a->seq < b->seq);
}

static void heap_set(struct state *s, uint32_t i, struct packet *p)
{
    s->heap[i] = p;
    p->heap_pos = i;
}

static void heap_sift_up(struct state *s, uint32_t i)
{
    struct packet *p = s->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!pkt_before(p, s->heap[parent]))
            break;
        heap_set(s, i, s->heap[parent]);
        i = parent;
    }
    heap_set(s, i, p);
}

static void heap_sift_down(struct state *s, uint32_t i)
{
    struct packet *p = s->heap[i];
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, best = i;
        const struct packet *bp = p;
        if (l < s->heap_len && pkt_before(s->heap[l], bp)) {
            best = l;
            bp = s->heap[l];
        }
        if (r < s->heap_len && pkt_before(s->heap[r], bp))
            best = r;
        if (best == i)
            break;
        heap_set(s, i, s->heap[best]);
        i = best;
    }
    heap_set(s, i, p);
}

static void heap_push(struct state *s, struct packet *p)
{
    s->heap[s->heap_len] = p;
    p->heap_pos = s->heap_len;
    s->heap_len++;
    heap_sift_up(s, s->heap_len - 1);
}

static struct packet *heap_pop(struct state *s)
{
    struct packet *top = s->heap[0];
    s->heap_len--;
    if (s->heap_len > 0) {
        heap_set(s, 0, s->heap[s->heap_len]);
        heap_sift_down(s, 0);
    }
    return top;
}

/* Re-key an entry already in the heap (used when a held packet gets its final slot). */
static void heap_fix(struct state *s, struct packet *p)
{
    heap_sift_up(s, p->heap_pos);
    heap_sift_down(s, p->heap_pos);
}

/* -------------------------------------------------------------------- flows */

static uint32_t addr_hash(const struct sockaddr_storage *ss)
{
    /* FNV-1a over family, port and address bytes only: sockaddr padding may hold garbage */
    uint32_t h = 2166136261u;
    const unsigned char *p;
    size_t n;
    uint16_t port = addr_port(ss);
    if (ss->ss_family == AF_INET) {
        p = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
        n = 4;
    } else {
        p = (const unsigned char *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        n = 16;
    }
    h = (h ^ (uint32_t)ss->ss_family) * 16777619u;
    h = (h ^ (port & 0xff)) * 16777619u;
    h = (h ^ (port >> 8)) * 16777619u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static bool addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a, *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return false;
}

static int32_t flow_find(struct state *s, const struct sockaddr_storage *client)
{
    for (int32_t i = s->buckets[addr_hash(client) & s->bucket_mask]; i >= 0; i = s->flows[i].hash_next)
        if (addr_equal(&s->flows[i].client, client))
            return i;
    return -1;
}

static uint64_t flow_tag(const struct state *s, uint32_t idx)
{
    return ((uint64_t)s->flows[idx].gen << 32) | (uint64_t)(idx + TAG_FLOW_BASE);
}

/* A fresh socket connected to the upstream: the kernel picks a new ephemeral source port. */
static int open_upstream_socket(struct state *s, uint32_t idx, uint16_t *port_out)
{
    int fd = socket(s->cfg.upstream_addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    big_socket_buffers(fd);
    /* connect() also filters: only the upstream's replies reach this flow, as with a NAT */
    if (connect(fd, (const struct sockaddr *)&s->cfg.upstream_addr, s->cfg.upstream_len) != 0) {
        close(fd);
        return -1;
    }
    struct sockaddr_storage local;
    socklen_t ll = sizeof local;
    if (getsockname(fd, (struct sockaddr *)&local, &ll) != 0) {
        close(fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = flow_tag(s, idx)};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return -1;
    }
    *port_out = addr_port(&local);
    return fd;
}

static int32_t flow_create(struct state *s, const struct sockaddr_storage *client, socklen_t client_len,
                           int64_t now)
{
    if (s->flows_active >= s->cfg.max_flows)
        return -1;
    uint32_t idx = 0;
    while (idx < s->cfg.max_flows && s->flows[idx].used)
        idx++;
    if (idx == s->cfg.max_flows)
        return -1;
    struct flow *f = &s->flows[idx];
    uint32_t gen = f->gen + 1;
    memset(f, 0, sizeof *f);
    f->gen = gen;
    uint16_t port = 0;
    int fd = open_upstream_socket(s, idx, &port);
    if (fd < 0) {
        msg("cannot open upstream socket for a new flow: %s", strerror(errno));
        f->up_fd = -1;
        return -1;
    }
    f->used = true;
    f->client = *client;
    f->client_len = client_len;
    f->up_fd = fd;
    f->up_port = port;
    f->last_active_us = now;
    uint32_t b = addr_hash(client) & s->bucket_mask;
    f->hash_next = s->buckets[b];
    s->buckets[b] = (int32_t)idx;
    s->flows_active++;
    s->flows_created++;
    if (s->cfg.verbose) {
        char a[64];
        format_addr(client, a, sizeof a);
        msg("flow %s created, upstream source port %u", a, port);
    }
    return (int32_t)idx;
}

static void flow_destroy(struct state *s, uint32_t idx)
{
    struct flow *f = &s->flows[idx];
    uint32_t b = addr_hash(&f->client) & s->bucket_mask;
    int32_t *link = &s->buckets[b];
    while (*link >= 0 && *link != (int32_t)idx)
        link = &s->flows[*link].hash_next;
    if (*link == (int32_t)idx)
        *link = f->hash_next;
    close(f->up_fd); /* also removes it from the epoll set */
    f->up_fd = -1;
    f->used = false;
    s->flows_active--;
}

static void flow_rebind(struct state *s, uint32_t idx)
{
    struct flow *f = &s->flows[idx];
    uint16_t port = 0;
    /* open the new socket before closing the old one so the kernel cannot hand back the same port */
    int fd = open_upstream_socket(s, idx, &port);
    if (fd < 0) {
        s->rebind_failures++;
        msg("rebind failed: %s", strerror(errno));
        return;
    }
    if (s->cfg.verbose) {
        char a[64];
        format_addr(&f->client, a, sizeof a);
        msg("flow %s rebound: upstream source port %u -> %u", a, f->up_port, port);
    }
    close(f->up_fd);
    f->up_fd = fd;
    f->up_port = port;
    f->rebinds++;
    s->rebinds++;
}

static void rebind_all(struct state *s)
{
    for (uint32_t i = 0; i < s->cfg.max_flows; i++)
        if (s->flows[i].used)
            flow_rebind(s, i);
}

static void expire_idle_flows(struct state *s, int64_t now)
{
    if (s->cfg.flow_idle_us <= 0)
        return;
    for (uint32_t i = 0; i < s->cfg.max_flows; i++) {
        struct flow *f = &s->flows[i];
        /* a flow with packets still queued stays: the heap refers to it by index */
        if (f->used && f->queued == 0 && now - f->last_active_us >= s->cfg.flow_idle_us) {
            if (s->cfg.verbose) {
                char a[64];
                format_addr(&f->client, a, sizeof a);
                msg("flow %s expired after idling", a);
            }
            flow_destroy(s, i);
            s->flows_expired++;
        }
    }
}

/* -------------------------------------------------------------- impairments */

static bool in_outage(const struct state *s, int64_t now)
{
    int64_t rel = now - s->start_us;
    for (int i = 0; i < s->cfg.n_outages; i++)
        if (rel >= s->cfg.outages[i].start_us && rel < s->cfg.outages[i].end_us)
            return true;
    return false;
}

static struct packet *packet_alloc(struct state *s, int dir, uint32_t flow, const unsigned char *data, uint32_t len)
{
    if (s->heap_len >= s->cfg.max_queue || s->queue_bytes + len > s->cfg.max_queue_bytes)
        return NULL;
    struct packet *p = malloc(sizeof *p + len);
    if (!p)
        return NULL;
    p->dir = (uint8_t)dir;
    p->flow = flow;
    p->len = len;
    memcpy(p->data, data, len);
    return p;
}

static void enqueue(struct state *s, struct packet *p, int64_t due)
{
    p->due_us = due;
    p->seq = s->next_seq++;
    heap_push(s, p);
    s->queue_bytes += p->len;
    s->flows[p->flow].queued++;
    s->st[p->dir].queued++;
    if (s->heap_len > s->queue_peak)
        s->queue_peak = s->heap_len;
}

/* One datagram arrived in direction dir for flow idx: decide its fate and schedule it. */
static void impair_and_schedule(struct state *s, int dir, uint32_t idx, const unsigned char *data, uint32_t len,
                                int64_t now)
{
    const struct dir_cfg *dc = &s->cfg.dir[dir];
    struct dir_stats *st = &s->st[dir];
    struct flow *f = &s->flows[idx];

    /* Draw every value up front, always in the same order, so that the fate of the Nth datagram of a
     * direction depends only on the seed, not on timing or on which branch earlier datagrams took. */
    struct rng *r = &s->rng[dir];
    double u_loss = rng_unit(r), u_dup = rng_unit(r), u_reorder = rng_unit(r), u_jitter = rng_unit(r);

    if (in_outage(s, now)) {
        st->dropped_outage++;
        return;
    }
    if (dc->loss_pct > 0 && u_loss * 100.0 < dc->loss_pct) {
        st->dropped_loss++;
        return;
    }

    /* Bottleneck: the packet leaves the bottleneck once everything ahead of it has been serialised.
     * A backlog longer than the buffer means the bottleneck queue is full: tail drop. */
    int64_t depart = now;
    if (dc->rate_bps > 0) {
        int64_t start = s->link_free_us[dir] > now ? s->link_free_us[dir] : now;
        if (start - now > s->cfg.rate_buffer_us) {
            st->dropped_queue++;
            return;
        }
        depart = start + (int64_t)(((uint64_t)len + LL_HEADER_BYTES) * 8u * 1000000u / dc->rate_bps);
    }
    int64_t due = depart + dc->delay_us + (int64_t)(u_jitter * (double)(dc->jitter_us + 1));
    if (due < f->last_due[dir])
        due = f->last_due[dir]; /* FIFO per flow and direction: jitter alone never reorders */

    struct packet *p = packet_alloc(s, dir, idx, data, len);
    if (!p) {
        st->dropped_queue++;
        return;
    }
    if (dc->rate_bps > 0)
        s->link_free_us[dir] = depart;
    f->last_due[dir] = due;

    struct packet *held = f->held[dir];
    bool hold = !held && dc->reorder_pct > 0 && u_reorder * 100.0 < dc->reorder_pct;
    if (hold) {
        /* Held back: if no later packet of this flow shows up, it leaves on its own after the hold. */
        enqueue(s, p, due + s->cfg.reorder_hold_us);
        f->held[dir] = p;
    } else {
        enqueue(s, p, due);
    }

    if (dc->dup_pct > 0 && u_dup * 100.0 < dc->dup_pct) {
        struct packet *copy = packet_alloc(s, dir, idx, data, len);
        if (copy) {
            enqueue(s, copy, hold ? due + s->cfg.reorder_hold_us : due);
            st->duplicated++;
            if (hold)
                f->held_dup[dir] = copy;
        }
    }

    if (held) {
        /* This packet (and its duplicate) overtakes the held one, which now leaves right after them,
         * followed by the held packet's own duplicate if it had one. */
        struct packet *held_copy = f->held_dup[dir];
        f->held[dir] = NULL;
        f->held_dup[dir] = NULL;
        held->due_us = due;
        held->seq = s->next_seq++;
        heap_fix(s, held);
        if (held_copy) {
            held_copy->due_us = due;
            held_copy->seq = s->next_seq++;
            heap_fix(s, held_copy);
        }
        st->reordered++;
    }
}

/* --------------------------------------------------------------------- I/O */

static void send_packet(struct state *s, struct packet *p, int64_t now)
{
    struct flow *f = &s->flows[p->flow];
    struct dir_stats *st = &s->st[p->dir];
    if (f->held[p->dir] == p) {
        f->held[p->dir] = NULL; /* the hold ran out before another packet came */
        st->reorder_timeouts++;
    }
    if (f->held_dup[p->dir] == p)
        f->held_dup[p->dir] = NULL;
    if (in_outage(s, now)) {
        st->dropped_outage++;
        return;
    }
    ssize_t n;
    if (p->dir == DIR_UP)
        n = send(f->up_fd, p->data, p->len, MSG_DONTWAIT | MSG_NOSIGNAL);
    else
        n = sendto(s->listen_fd, p->data, p->len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&f->client,
                   f->client_len);
    if (n != (ssize_t)p->len) {
        /* A full socket buffer or an ICMP error on a UDP path: the datagram is lost, as on a real link. */
        st->dropped_send++;
        return;
    }
    st->forwarded++;
    st->bytes_forwarded += p->len;
    f->forwarded[p->dir]++;
}

static void send_due(struct state *s, int64_t now)
{
    while (s->heap_len > 0 && s->heap[0]->due_us <= now) {
        struct packet *p = heap_pop(s);
        s->queue_bytes -= p->len;
        s->flows[p->flow].queued--;
        s->st[p->dir].queued--;
        send_packet(s, p, now);
        free(p);
    }
}

static void on_listen_readable(struct state *s)
{
    for (int i = 0; i < LL_RECV_BURST; i++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        memset(&from, 0, sizeof from);
        /* MSG_TRUNC makes recvfrom report the real size, so an oversized datagram is seen, not cut */
        ssize_t n = recvfrom(s->listen_fd, rx_buf, sizeof rx_buf, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fl);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            return; /* e.g. ECONNREFUSED from an earlier ICMP to a client: nothing to do */
        }
        int64_t now = mono_us();
        struct dir_stats *st = &s->st[DIR_UP];
        st->received++;
        st->bytes_received += (uint64_t)n;
        if ((size_t)n > sizeof rx_buf) {
            st->dropped_oversize++;
            continue;
        }
        if (from.ss_family != AF_INET && from.ss_family != AF_INET6) {
            st->dropped_no_flow++;
            continue;
        }
        int32_t idx = flow_find(s, &from);
        if (idx < 0) {
            idx = flow_create(s, &from, fl, now);
            if (idx < 0) {
                s->flows_rejected++;
                st->dropped_no_flow++;
                continue;
            }
        }
        s->flows[idx].last_active_us = now;
        impair_and_schedule(s, DIR_UP, (uint32_t)idx, rx_buf, (uint32_t)n, now);
    }
}

static void on_upstream_readable(struct state *s, uint32_t idx)
{
    struct flow *f = &s->flows[idx];
    for (int i = 0; i < LL_RECV_BURST && f->used; i++) {
        ssize_t n = recv(f->up_fd, rx_buf, sizeof rx_buf, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
            if (errno == EINTR || errno == ECONNREFUSED)
                continue; /* ECONNREFUSED: upstream not listening (yet); keep draining */
            return;
        }
        int64_t now = mono_us();
        struct dir_stats *st = &s->st[DIR_DOWN];
        st->received++;
        st->bytes_received += (uint64_t)n;
        if ((size_t)n > sizeof rx_buf) {
            st->dropped_oversize++;
            continue;
        }
        f->last_active_us = now;
        impair_and_schedule(s, DIR_DOWN, idx, rx_buf, (uint32_t)n, now);
    }
}

/* ------------------------------------------------------------------- stats */

struct jbuf {
    char *p;
    size_t cap, len;
};

static void jb_add(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jb_add(struct jbuf *b, const char *fmt, ...)
{
    if (b->len >= b->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len)
        b->len = b->cap; /* truncated: the buffer is sized for max_flows, so this should never happen */
    else
        b->len += (size_t)n;
}

static size_t stats_json(struct state *s, int64_t now)
{
    struct jbuf b = {s->json, s->json_cap, 0};
    s->stats_seq++;
    jb_add(&b,
           "{\"seq\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"uptime_s\":%.3f,\"in_outage\":%s,\"flows_active\":%" PRIu32
           ",\"flows_created\":%" PRIu64 ",\"flows_expired\":%" PRIu64 ",\"flows_rejected\":%" PRIu64
           ",\"rebinds\":%" PRIu64 ",\"rebind_failures\":%" PRIu64 ",\"queue_len\":%" PRIu32
           ",\"queue_bytes\":%" PRIu64 ",\"queue_peak\":%" PRIu32,
           s->stats_seq, s->cfg.seed, (double)(now - s->start_us) / 1e6, in_outage(s, now) ? "true" : "false",
           s->flows_active, s->flows_created, s->flows_expired, s->flows_rejected, s->rebinds, s->rebind_failures,
           s->heap_len, s->queue_bytes, s->queue_peak);
    for (int d = 0; d < DIR_COUNT; d++) {
        const struct dir_stats *st = &s->st[d];
        jb_add(&b,
               ",\"%s\":{\"received\":%" PRIu64 ",\"bytes_received\":%" PRIu64 ",\"forwarded\":%" PRIu64
               ",\"bytes_forwarded\":%" PRIu64 ",\"dropped_loss\":%" PRIu64 ",\"dropped_outage\":%" PRIu64
               ",\"dropped_queue\":%" PRIu64 ",\"dropped_no_flow\":%" PRIu64 ",\"dropped_send\":%" PRIu64
               ",\"dropped_oversize\":%" PRIu64 ",\"duplicated\":%" PRIu64 ",\"reordered\":%" PRIu64
               ",\"reorder_timeouts\":%" PRIu64 ",\"queued\":%" PRIu64 "}",
               dir_name[d], st->received, st->bytes_received, st->forwarded, st->bytes_forwarded, st->dropped_loss,
               st->dropped_outage, st->dropped_queue, st->dropped_no_flow, st->dropped_send, st->dropped_oversize,
               st->duplicated, st->reordered, st->reorder_timeouts, st->queued);
    }
    jb_add(&b, ",\"flows\":[");
    bool first = true;
    for (uint32_t i = 0; i < s->cfg.max_flows; i++) {
        const struct flow *f = &s->flows[i];
        if (!f->used)
            continue;
        char a[64];
        format_addr(&f->client, a, sizeof a);
        jb_add(&b,
               "%s{\"client\":\"%s\",\"upstream_port\":%u,\"rebinds\":%" PRIu64 ",\"up\":%" PRIu64
               ",\"down\":%" PRIu64 "}",
               first ? "" : ",", a, f->up_port, f->rebinds, f->forwarded[DIR_UP], f->forwarded[DIR_DOWN]);
        first = false;
    }
    jb_add(&b, "]}\n");
    return b.len;
}

static void emit_stats(struct state *s, bool to_stderr, int64_t now)
{
    size_t n = stats_json(s, now);
    if (to_stderr) {
        fwrite(s->json, 1, n, stderr);
        fflush(stderr);
    }
    if (s->cfg.stats_file && write_file_atomic(s->cfg.stats_file, s->json, n) != 0)
        msg("cannot write stats file %s: %s", s->cfg.stats_file, strerror(errno));
}

/* ---------------------------------------------------------------- main loop */

static void on_signal(struct state *s)
{
    struct signalfd_siginfo si;
    while (read(s->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGUSR1: rebind_all(s); break;
        case SIGUSR2: emit_stats(s, true, mono_us()); break;
        default: s->stop = true; break;
        }
    }
}

static int next_timeout_ms(const struct state *s, int64_t now)
{
    int64_t next = s->next_tick_us;
    if (s->cfg.rebind_every_us > 0 && s->next_rebind_us < next)
        next = s->next_rebind_us;
    if (s->heap_len > 0 && s->heap[0]->due_us < next)
        next = s->heap[0]->due_us;
    if (next <= now)
        return 0;
    /* round up: waking a little late keeps "delay >= configured"; waking early would only spin */
    int64_t ms = (next - now + 999) / 1000;
    return ms > 1000 ? 1000 : (int)ms;
}

static int setup(struct state *s)
{
    struct config *c = &s->cfg;
    if (!c->seed_given)
        c->seed = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)mono_us();
    rng_seed(&s->rng[DIR_UP], c->seed ^ 0x7570000000000000ULL);   /* "up" */
    rng_seed(&s->rng[DIR_DOWN], c->seed ^ 0x646f776e00000000ULL); /* "down" */

    s->heap = calloc(c->max_queue, sizeof *s->heap);
    s->flows = calloc(c->max_flows, sizeof *s->flows);
    uint32_t nb = 1;
    while (nb < 2 * c->max_flows)
        nb <<= 1;
    s->buckets = malloc(nb * sizeof *s->buckets);
    s->bucket_mask = nb - 1;
    s->json_cap = 4096 + (size_t)c->max_flows * 200;
    s->json = malloc(s->json_cap);
    if (!s->heap || !s->flows || !s->buckets || !s->json) {
        msg("out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < nb; i++)
        s->buckets[i] = -1;
    for (uint32_t i = 0; i < c->max_flows; i++)
        s->flows[i].up_fd = -1;

    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
        msg("sigprocmask: %s", strerror(errno));
        return -1;
    }
    s->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    if (s->sig_fd < 0 || s->ep < 0) {
        msg("signalfd/epoll: %s", strerror(errno));
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_SIGNAL};
    epoll_ctl(s->ep, EPOLL_CTL_ADD, s->sig_fd, &ev);

    s->listen_fd = socket(c->listen_addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->listen_fd < 0) {
        msg("socket: %s", strerror(errno));
        return -1;
    }
    big_socket_buffers(s->listen_fd);
    char want[64];
    format_addr(&c->listen_addr, want, sizeof want);
    if (bind(s->listen_fd, (const struct sockaddr *)&c->listen_addr, c->listen_len) != 0) {
        msg("cannot listen on %s: %s", want, strerror(errno));
        return -1;
    }
    ev.data.u64 = TAG_LISTEN;
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->listen_fd, &ev) != 0) {
        msg("epoll_ctl: %s", strerror(errno));
        return -1;
    }

    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    getsockname(s->listen_fd, (struct sockaddr *)&bound, &bl);
    char actual[64], line[96];
    format_addr(&bound, actual, sizeof actual);

    s->start_us = mono_us();
    s->next_tick_us = s->start_us + 1000000;
    s->next_rebind_us = s->start_us + c->rebind_every_us;

    if (c->stats_file)
        emit_stats(s, false, s->start_us);
    int n = snprintf(line, sizeof line, "%s\n", actual);
    if (c->ready_file && write_file_atomic(c->ready_file, line, (size_t)n) != 0) {
        msg("cannot write ready file %s: %s", c->ready_file, strerror(errno));
        return -1;
    }
    printf("ready %s\n", actual);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    static struct state s;
    parse_args(&s.cfg, argc, argv);
    if (setup(&s) != 0)
        return 1;

    struct epoll_event evs[64];
    while (!s.stop) {
        int64_t now = mono_us();
        send_due(&s, now);
        if (s.cfg.rebind_every_us > 0 && now >= s.next_rebind_us) {
            rebind_all(&s);
            /* catch up without a burst of rebinds if the loop was stalled */
            while (s.next_rebind_us <= now)
                s.next_rebind_us += s.cfg.rebind_every_us;
        }
        if (now >= s.next_tick_us) {
            expire_idle_flows(&s, now);
            if (s.cfg.stats_file)
                emit_stats(&s, false, now);
            while (s.next_tick_us <= now)
                s.next_tick_us += 1000000;
        }

        int n = epoll_wait(s.ep, evs, (int)(sizeof evs / sizeof evs[0]), next_timeout_ms(&s, mono_us()));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            msg("epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            uint32_t low = (uint32_t)tag;
            if (low == TAG_LISTEN) {
                on_listen_readable(&s);
            } else if (low == TAG_SIGNAL) {
                on_signal(&s);
            } else {
                uint32_t idx = low - TAG_FLOW_BASE;
                /* the generation check skips events for a flow slot that was recycled in this batch */
                if (idx < s.cfg.max_flows && s.flows[idx].used && s.flows[idx].gen == (uint32_t)(tag >> 32))
                    on_upstream_readable(&s, idx);
            }
        }
    }

    emit_stats(&s, true, mono_us());
    while (s.heap_len > 0)
        free(heap_pop(&s));
    for (uint32_t i = 0; i < s.cfg.max_flows; i++)
        if (s.flows[i].used)
            close(s.flows[i].up_fd);
    close(s.listen_fd);
    close(s.sig_fd);
    close(s.ep);
    free(s.heap);
    free(s.flows);
    free(s.buckets);
    free(s.json);
    return 0;
}
