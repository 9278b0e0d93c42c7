/* trace_cmd.c - `edgetrace-agent trace FILE|URL|- [--json] [--goroutines]`: read a Go execution
 * trace and print the goroutine lifecycle summary (trace.h).
 *
 *   FILE   a trace file written by runtime/trace or saved from /debug/pprof/trace
 *   -      the trace on stdin
 *   URL    http://HOST:PORT/debug/pprof/trace?seconds=N - streamed straight into the parser
 *          (httpc.h), never held whole
 *
 * Options:
 *   --json             one JSON object (schema below) instead of text
 *   --goroutines       also list every goroutine's final state (validation against Go's parser)
 *   --chunk N          feed the parser N bytes at a time (tests: any chunking must give the same result)
 *   --max-goroutines N / --max-strings N / --max-string-bytes N / --max-stacks N: parser caps
 *
 * JSON: {"format":"go 1.25 trace","status":"ok|partial|error","error":"...","bytes":N,
 *        "generations":N,"batches":N,"events":N,"transitions":N,"window_ns":N,
 *        "goroutines":{"seen","created","ended","waiting","runnable","running","syscall"},
 *        "event_counts":{"GoBlock":N,...},"trunc":{...},"memory_bound":N,
 *        "groups":[{"created_by","start_func","block_func","block_file","block_line","reason",
 *                   "go_state","state","count","created_in_window","blocked_before_window",
 *                   "oldest_ns","stdlib_only","key"}],
 *        "goroutine_list":[{"id","state","reason","transitions","created"}]   (with --goroutines)}
 *
 * Exit status: 0 complete, 3 partial (printed, marked partial), 1 unreadable / not a trace /
 * unsupported version, 2 usage.
 *
 * Called as main.c does for every subcommand: argv[0] the program, argv[1] "trace", options
 * from argv[2]. (Also accepts argv[0] == "trace" with options from argv[1].) */
#include "trace.h"
#include "base.h"
#include "gstate.h"
#include "httpc.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

int trace_cmd_main(int argc, char **argv);

/* URL sources need the HTTP client (httpc.c). Weak references keep this file linkable in a
 * build without it: the URL path then reports that it is unavailable. */
#pragma weak et_http_get_sync
#pragma weak et_http_opts_default
#pragma weak et_http_strerror

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

struct gl_ctx {
    FILE *f;
    int json;
    unsigned long n;
};

static void on_goroutine(void *ctx, const et_trace_goroutine *g)
{
    struct gl_ctx *c = ctx;
    if (c->json) {
        fprintf(c->f, "%s{\"id\":%llu,\"state\":\"%s\",\"reason\":", c->n ? "," : "", (unsigned long long)g->id,
                et_tg_state_name(g->state));
        json_str(c->f, g->reason);
        fprintf(c->f, ",\"transitions\":%u,\"created\":%s}", g->transitions, g->created ? "true" : "false");
    } else {
        fprintf(c->f, "g %llu %s transitions=%u created=%d reason=\"%s\"\n", (unsigned long long)g->id,
                et_tg_state_name(g->state), g->transitions, g->created, g->reason);
    }
    c->n++;
}

static const char *status_name(int s)
{
    switch (s) {
    case ET_TRACE_OK: return "ok";
    case ET_TRACE_PARTIAL: return "partial";
    case ET_TRACE_ERR_VERSION: return "unsupported-version";
    default: return "error";
    }
}

static void fmt_dur(char *b, size_t n, uint64_t ns)
{
    if (ns >= 1000000000ull)
        snprintf(b, n, "%.2fs", (double)ns / 1e9);
    else if (ns >= 1000000ull)
        snprintf(b, n, "%.1fms", (double)ns / 1e6);
    else
        snprintf(b, n, "%.1fus", (double)ns / 1e3);
}

static void print_text(FILE *f, const et_trace_summary *s)
{
    fprintf(f, "trace: go 1.%u format, %u generations, %llu bytes, %llu events, window %.3fs, status %s%s%s\n",
            s->go_minor, s->generations, (unsigned long long)s->bytes, (unsigned long long)s->events,
            (double)s->window_ns / 1e9, status_name(s->status), s->error[0] ? ": " : "", s->error);
    fprintf(f, "goroutines: seen %llu  created %llu  ended %llu  waiting %llu  runnable %llu  running %llu  syscall %llu\n",
            (unsigned long long)s->goroutines.seen, (unsigned long long)s->goroutines.created,
            (unsigned long long)s->goroutines.ended, (unsigned long long)s->goroutines.waiting,
            (unsigned long long)s->goroutines.runnable, (unsigned long long)s->goroutines.running,
            (unsigned long long)s->goroutines.syscall);
    fprintf(f, "\ngoroutines alive at the end, by (created by, block site, reason):\n");
    fprintf(f, "%6s %6s %9s  %-9s %-18s %-40s %s\n", "COUNT", "NEW", "FOR", "STATE", "REASON", "BLOCK SITE", "CREATED BY");
    for (uint32_t i = 0; i < s->ngroups; i++) {
        const et_trace_group *g = &s->groups[i];
        char d[32], site[200];
        fmt_dur(d, sizeof d, g->oldest_ns);
        if (g->block.func[0])
            snprintf(site, sizeof site, "%s (%s:%u)", g->block.func, g->block.file, g->block.line);
        else
            snprintf(site, sizeof site, "-");
        fprintf(f, "%6u %6u %9s  %-9s %-18s %-40s %s%s%s\n", g->count, g->created_in_window, d,
                et_tg_state_name(g->go_state), g->reason[0] ? g->reason : "-", site,
                g->created_by[0] ? g->created_by : "(before window)", g->start_func[0] ? " -> " : "", g->start_func);
    }
    const et_trace_trunc *t = &s->trunc;
    if (t->goroutines || t->strings || t->stacks || t->frames || t->sites || t->threads || t->groups || t->malformed ||
        t->orphan_events)
        fprintf(f, "\ntruncated: goroutines %llu strings %llu stacks %llu frames %llu sites %llu threads %llu groups %llu "
                   "malformed %llu orphan-events %llu\n",
                (unsigned long long)t->goroutines, (unsigned long long)t->strings, (unsigned long long)t->stacks,
                (unsigned long long)t->frames, (unsigned long long)t->sites, (unsigned long long)t->threads,
                (unsigned long long)t->groups, (unsigned long long)t->malformed, (unsigned long long)t->orphan_events);
}

static void print_json_tail(FILE *f, const et_trace_summary *s, size_t bound)
{
    fprintf(f, "\"format\":\"go 1.%u trace\",\"status\":\"%s\",\"error\":", s->go_minor, status_name(s->status));
    json_str(f, s->error);
    fprintf(f, ",\"bytes\":%llu,\"generations\":%u,\"batches\":%llu,\"events\":%llu,\"transitions\":%llu,"
               "\"start_ns\":%llu,\"end_ns\":%llu,\"window_ns\":%llu,\"memory_bound\":%zu,",
            (unsigned long long)s->bytes, s->generations, (unsigned long long)s->batches, (unsigned long long)s->events,
            (unsigned long long)s->transitions, (unsigned long long)s->start_ns, (unsigned long long)s->end_ns,
            (unsigned long long)s->window_ns, bound);
    fprintf(f, "\"goroutines\":{\"seen\":%llu,\"created\":%llu,\"ended\":%llu,\"waiting\":%llu,\"runnable\":%llu,"
               "\"running\":%llu,\"syscall\":%llu},",
            (unsigned long long)s->goroutines.seen, (unsigned long long)s->goroutines.created,
            (unsigned long long)s->goroutines.ended, (unsigned long long)s->goroutines.waiting,
            (unsigned long long)s->goroutines.runnable, (unsigned long long)s->goroutines.running,
            (unsigned long long)s->goroutines.syscall);
    fprintf(f, "\"event_counts\":{");
    int first = 1;
    for (unsigned i = 0; i < 64; i++)
        if (s->event_counts[i]) {
            fprintf(f, "%s\"%s\":%llu", first ? "" : ",", et_trace_event_name(i), (unsigned long long)s->event_counts[i]);
            first = 0;
        }
    const et_trace_trunc *t = &s->trunc;
    fprintf(f, "},\"trunc\":{\"goroutines\":%llu,\"strings\":%llu,\"stacks\":%llu,\"frames\":%llu,\"sites\":%llu,"
               "\"threads\":%llu,\"groups\":%llu,\"malformed\":%llu,\"orphan_events\":%llu},",
            (unsigned long long)t->goroutines, (unsigned long long)t->strings, (unsigned long long)t->stacks,
            (unsigned long long)t->frames, (unsigned long long)t->sites, (unsigned long long)t->threads,
            (unsigned long long)t->groups, (unsigned long long)t->malformed, (unsigned long long)t->orphan_events);
    fprintf(f, "\"groups\":[");
    for (uint32_t i = 0; i < s->ngroups; i++) {
        const et_trace_group *g = &s->groups[i];
        char key[17];
        et_hex64(g->key, key);
        fprintf(f, "%s{\"created_by\":", i ? "," : "");
        json_str(f, g->created_by);
        fprintf(f, ",\"start_func\":");
        json_str(f, g->start_func);
        fprintf(f, ",\"block_func\":");
        json_str(f, g->block_func);
        fprintf(f, ",\"block_user_func\":");
        json_str(f, g->block.func);
        fprintf(f, ",\"block_file\":");
        json_str(f, g->block.file);
        fprintf(f, ",\"block_line\":%u,\"reason\":", g->block.line);
        json_str(f, g->reason);
        fprintf(f, ",\"go_state\":\"%s\",\"state\":%u,\"count\":%u,\"created_in_window\":%u,\"blocked_before_window\":%u,"
                   "\"oldest_ns\":%llu,\"stdlib_only\":%s,\"overflow\":%s,\"key\":\"%s\"}",
                et_tg_state_name(g->go_state), g->state, g->count, g->created_in_window, g->blocked_before_window,
                (unsigned long long)g->oldest_ns, g->stdlib_only ? "true" : "false", g->overflow ? "true" : "false", key);
    }
    fprintf(f, "]}\n");
}

/* ---- sources ---- */
struct url_ctx {
    et_trace_parser *p;
    int failed;
};

static int url_body(void *ud, const char *buf, size_t n)
{
    struct url_ctx *c = ud;
    if (et_trace_parser_feed(c->p, (const uint8_t *)buf, n) < 0) {
        c->failed = 1;
        return -1; /* no point downloading the rest */
    }
    return 0;
}

static int feed_url(et_trace_parser *p, const char *url, char *err, size_t errsz)
{
    if (!et_http_get_sync || !et_http_opts_default || !et_http_strerror) {
        snprintf(err, errsz, "%s: URL sources are not available in this build (no HTTP client)", url);
        return -1;
    }
    et_http_opts o;
    et_http_opts_default(&o);
    o.max_body = UINT64_MAX;      /* the parser, not the client, bounds memory */
    o.total_timeout_ms = 300000;  /* ?seconds=N windows */
    o.accept_gzip = 1;
    struct url_ctx c = {p, 0};
    et_http_result res;
    memset(&res, 0, sizeof res);
    int r = et_http_get_sync(url, &o, url_body, &c, &res);
    if (r != 0 && !(r == ET_HTTP_EABORTED && c.failed)) {
        snprintf(err, errsz, "%s: %s%s%s", url, et_http_strerror(r), res.msg[0] ? ": " : "", res.msg);
        /* Bytes already fed still count: the summary will say partial. */
        return res.bytes_body ? 0 : -1;
    }
    return 0;
}

/* A regular file is fed through a read-only mapping that slides MAP_WINDOW bytes at a time:
 * the parser reads the page cache in place instead of read() first copying every byte into
 * a buffer (11% of the run on a 176 MB trace), and one window at most is resident, so the
 * peak RSS stays that of a 256 KiB buffer. A file that shrinks while mapped raises SIGBUS on
 * the pages past its new end: the guard turns that into a read error for this file, and the
 * summary of what was read says partial, as for any truncated trace. */
#define MAP_WINDOW (256u << 10)

static sigjmp_buf map_jmp;
static volatile sig_atomic_t map_armed;

static void on_sigbus(int sig)
{
    if (map_armed)
        siglongjmp(map_jmp, 1);
    signal(sig, SIG_DFL); /* not from our mapping: the default action, as without us */
    raise(sig);
}

/* Feeds st->st_size bytes of fd. 1 done, 0 could not map (nothing fed: read it instead),
 * -1 the file shrank (message in err). */
static int feed_mapped(et_trace_parser *p, int fd, const struct stat *st, char *err, size_t errsz)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigbus;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &old) < 0)
        return 0;
    /* volatile: changed between sigsetjmp and a siglongjmp back to it */
    volatile off_t off = 0;
    volatile size_t n = 0;
    uint8_t *volatile win = NULL;
    volatile int rc = 1;
    if (sigsetjmp(map_jmp, 1)) {
        map_armed = 0;
        snprintf(err, errsz, "file shrank while being read (mapped at byte %lld)", (long long)off);
        rc = -1;
        goto out;
    }
    for (; off < st->st_size; off += (off_t)n) {
        n = (size_t)ET_MIN((uint64_t)MAP_WINDOW, (uint64_t)(st->st_size - off));
        /* MAP_POPULATE: the window's pages in one call, not one fault per 64 KiB */
        void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, off);
        if (m == MAP_FAILED) {
            if (off == 0) {
                rc = 0;
                goto out;
            }
            snprintf(err, errsz, "mmap at byte %lld: %s", (long long)off, strerror(errno));
            rc = -1;
            goto out;
        }
        win = m;
        map_armed = 1;
        int r = et_trace_parser_feed(p, win, n);
        map_armed = 0;
        munmap(win, n);
        win = NULL;
        if (r < 0)
            break;
    }
out:
    if (win)
        munmap(win, n);
    sigaction(SIGBUS, &old, NULL);
    return rc;
}

static int feed_file(et_trace_parser *p, const char *path, size_t chunk, char *err, size_t errsz)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    struct stat st;
    /* --chunk keeps read(): its point is to feed the parser exactly N bytes at a time. */
    if (f != stdin && !chunk && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        int r = feed_mapped(p, fileno(f), &st, err, errsz);
        if (r < 0) {
            fclose(f);
            return -1;
        }
        /* Mapped: read on from its end (bytes appended since fstat still count). */
        if (r > 0 && fseeko(f, st.st_size, SEEK_SET) < 0) {
            snprintf(err, errsz, "%s: %s", path, strerror(errno));
            rc = -1;
        }
    }
    static uint8_t buf[1 << 16];
    size_t want = chunk && chunk < sizeof buf ? chunk : sizeof buf;
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, want, f)) > 0)
        if (et_trace_parser_feed(p, buf, n) < 0)
            break;
    if (rc == 0 && ferror(f)) {
        snprintf(err, errsz, "%s: read error: %s", path, strerror(errno));
        rc = -1;
    }
    if (f != stdin)
        fclose(f);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: edgetrace-agent trace FILE|URL|- [--json] [--goroutines] [--chunk N]\n"
               "         [--max-goroutines N] [--max-strings N] [--max-string-bytes N] [--max-stacks N]\n");
}

int trace_cmd_main(int argc, char **argv)
{
    const char *src = NULL;
    int json = 0, glist = 0;
    size_t chunk = 0;
    et_trace_limits lim;
    memset(&lim, 0, sizeof lim); /* zero = default */
    int first = argc > 1 && !strcmp(argv[1], "trace") ? 2 : 1;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        uint32_t *cap = NULL;
        if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--goroutines"))
            glist = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--chunk") || !strcmp(a, "--max-goroutines") || !strcmp(a, "--max-strings") ||
                   !strcmp(a, "--max-string-bytes") || !strcmp(a, "--max-stacks")) {
            if (i + 1 >= argc) {
                usage(stderr);
                return 2;
            }
            char *end;
            unsigned long v = strtoul(argv[++i], &end, 10);
            if (*end || v == 0 || v > 0xffffffffUL) {
                fprintf(stderr, "edgetrace-agent trace: bad value for %s\n", a);
                return 2;
            }
            if (!strcmp(a, "--chunk"))
                chunk = v;
            else if (!strcmp(a, "--max-goroutines"))
                cap = &lim.max_goroutines;
            else if (!strcmp(a, "--max-strings"))
                cap = &lim.max_strings;
            else if (!strcmp(a, "--max-string-bytes"))
                cap = &lim.max_string_bytes;
            else
                cap = &lim.max_stacks;
            if (cap)
                *cap = (uint32_t)v;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "edgetrace-agent trace: unknown option %s\n", a);
            usage(stderr);
            return 2;
        } else if (!src) {
            src = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!src) {
        usage(stderr);
        return 2;
    }
    et_trace_parser *p = et_trace_parser_new(&lim);
    et_trace_summary *s = malloc(sizeof *s);
    if (!p || !s) {
        fprintf(stderr, "edgetrace-agent trace: out of memory\n");
        et_trace_parser_free(p);
        free(s);
        return 1;
    }
    size_t bound = et_trace_parser_footprint(p);
    struct gl_ctx gc = {stdout, json, 0};
    if (json)
        fputc('{', stdout);
    if (glist) {
        if (json)
            fputs("\"goroutine_list\":[", stdout);
        et_trace_parser_set_goroutine_fn(p, on_goroutine, &gc);
    }
    char err[256] = "";
    int rc;
    if (!strncmp(src, "http://", 7) || !strncmp(src, "https://", 8))
        rc = feed_url(p, src, err, sizeof err);
    else
        rc = feed_file(p, src, chunk, err, sizeof err);
    int st = et_trace_parser_finish(p, s); /* emits the remaining goroutines through the callback */
    if (glist && json)
        fputs("],", stdout);
    if (rc < 0 && s->bytes == 0) {
        if (json) {
            fputs("\"status\":\"error\",\"error\":", stdout);
            json_str(stdout, err);
            fputs("}\n", stdout);
        }
        fprintf(stderr, "edgetrace-agent trace: %s\n", err);
        et_trace_parser_free(p);
        free(s);
        return 1;
    }
    if (err[0] && st == ET_TRACE_OK) {
        s->status = ET_TRACE_PARTIAL;
        et_strlcpy(s->error, err, sizeof s->error);
    }
    if (json)
        print_json_tail(stdout, s, bound);
    else
        print_text(stdout, s);
    fflush(stdout);
    if (s->status >= ET_TRACE_ERR_FORMAT)
        fprintf(stderr, "edgetrace-agent trace: %s: %s\n", src, s->error);
    int ret = s->status == ET_TRACE_OK ? 0 : s->status == ET_TRACE_PARTIAL ? 3 : 1;
    et_trace_parser_free(p);
    free(s);
    return ret;
}
