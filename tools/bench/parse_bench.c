/* parse_bench.c - parse throughput and peak RSS of the goroutine text parser.
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Ifirmware/src tools/bench/parse_bench.c \
 *      firmware/src/base.c firmware/src/gstate.c firmware/src/parse_goroutine.c -o parse_bench
 *   ./parse_bench DUMP [repeat]
 *
 * The file is fed to the parser in 64 KiB chunks as the HTTP client would (from the page
 * cache after the first of `repeat` runs). Prints MB/s of the best run by wall clock and by
 * process CPU time (the latter is stable on a busy machine), the process's peak RSS
 * (VmHWM) and the parser's own working set. Exit 1 if parsing failed. */
#include "parse_goroutine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static et_gprofile prof;
static et_gparser parser;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this process: on a shared machine the wall clock also measures the neighbours. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long vm_hwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DUMP [repeat]\n", argv[0]);
        return 2;
    }
    int repeat = argc > 2 ? atoi(argv[2]) : 5;
    if (repeat < 1)
        repeat = 1;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    if (size <= 0) {
        fprintf(stderr, "%s: empty\n", argv[1]);
        return 2;
    }
    /* Streamed from the file (page cache after the first run), never held whole: the peak
     * RSS is then what the parse stage costs, as in the agent. */
    static char chunk[64 * 1024];
    double best = 1e30, best_cpu = 1e30;
    char err[128] = "";
    int rc = 0;
    for (int r = 0; r < repeat; r++) {
        fseek(f, 0, SEEK_SET);
        double t0 = now_s(), c0 = cpu_s();
        et_gparse_init(&parser, &prof, ET_GP_GOROUTINE, 0);
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
            et_gparse_feed(&parser, chunk, n);
        rc = et_gparse_finish(&parser, err, sizeof err);
        double dt = now_s() - t0, dc = cpu_s() - c0;
        if (dt < best)
            best = dt;
        if (dc < best_cpu)
            best_cpu = dc;
    }
    fclose(f);
    long rss = vm_hwm_kb();
    printf("file=%s bytes=%ld debug=%d goroutines=%llu sites=%u trunc_sites=%u trunc_lines=%u malformed=%u "
           "input_cut=%d\n",
           argv[1], size, prof.debug, (unsigned long long)prof.goroutines, prof.nsites, prof.trunc.sites,
           prof.trunc.lines, prof.trunc.malformed, prof.input_cut);
    printf("parse_MBps=%.1f parse_cpu_MBps=%.1f best_ms=%.2f best_cpu_ms=%.2f parser_state_kb=%zu "
           "profile_kb=%zu peak_rss_kb=%ld\n",
           (double)size / best / 1e6, (double)size / best_cpu / 1e6, best * 1e3, best_cpu * 1e3,
           sizeof(parser) / 1024, sizeof(prof) / 1024, rss);
    if (rc != 0) {
        fprintf(stderr, "parse failed: %s\n", err);
        return 1;
    }
    return 0;
}
