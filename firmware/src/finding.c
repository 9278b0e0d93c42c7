/* finding.c - names, JSON and text output of findings (see finding.h). */
#include "finding.h"
#include "base.h"

#include <math.h>
#include <string.h>

const char *et_finding_kind_name(enum et_finding_kind k)
{
    static const char *const names[ET_F_KIND_COUNT] = {
        [ET_F_GOROUTINE_LEAK] = "goroutine-leak", [ET_F_DEADLOCK] = "deadlock",
        [ET_F_HEAP_GROWTH] = "heap-growth",       [ET_F_RSS_GROWTH] = "rss-growth",
        [ET_F_THREAD_LEAK] = "thread-leak",
    };
    return (unsigned)k < ET_F_KIND_COUNT ? names[k] : "unknown";
}

const char *et_confidence_name(enum et_confidence c)
{
    switch (c) {
    case ET_C_SUSPECTED:
        return "suspected";
    case ET_C_LIKELY:
        return "likely";
    case ET_C_CONFIRMED:
        return "confirmed";
    }
    return "unknown";
}

const char *et_evidence_name(unsigned bit_index)
{
    static const char *const names[ET_EVIDENCE_COUNT] = {
        "trend", "cluster", "wait", "trace", "gc-proof", "stack-growth", "heap-site", "memstats", "proc", "survivors",
    };
    return bit_index < ET_EVIDENCE_COUNT ? names[bit_index] : "unknown";
}

const char *et_no_site_name(unsigned code)
{
    static const char *const names[ET_NS_COUNT] = {
        [ET_NS_NONE] = "", [ET_NS_PROFILE_LAG] = "profile-lag", [ET_NS_NO_SITE_GREW] = "no-site-grew",
        [ET_NS_TRUNCATED] = "profile-truncated", [ET_NS_NO_PROFILE] = "no-heap-sites",
    };
    return code < ET_NS_COUNT ? names[code] : "unknown";
}

const char *et_no_site_text(unsigned code)
{
    static const char *const text[ET_NS_COUNT] = {
        [ET_NS_NONE] = "",
        [ET_NS_PROFILE_LAG] = "the heap profile counts allocations as of the last completed GC cycles, and this "
                              "growth is under 4 cycles old: the site shows once the profile has moved across GCs",
        [ET_NS_NO_SITE_GREW] = "no single allocation site has grown by 512 KiB and 10% across GC cycles yet: "
                               "the growth is slow for the sampled profile, or spread over many sites",
        [ET_NS_TRUNCATED] = "the heap profile had more sites than the agent keeps, and the growing one may be among "
                            "those folded away",
        [ET_NS_NO_PROFILE] = "the heap profile lists no allocation sites (runtime.MemProfileRate is 0?)",
    };
    return code < ET_NS_COUNT ? text[code] : "unknown";
}

void et_findings_keep(et_findings *fs, enum et_confidence min)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < fs->n && i < ET_MAX_FINDINGS; i++)
        if (fs->f[i].confidence >= (uint8_t)min) {
            if (w != i)
                fs->f[w] = fs->f[i];
            w++;
        }
    fs->n = w;
}

/* Length of a valid UTF-8 sequence at s (1..4), or 0 if invalid (overlongs, surrogates and
 * code points above U+10FFFF are invalid too). */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    int n;
    unsigned min;
    if ((c & 0xe0) == 0xc0) {
        n = 2;
        min = 0x80;
        c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        min = 0x800;
        c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        min = 0x10000;
        c &= 0x07;
    } else {
        return 0;
    }
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0; /* also stops at the NUL terminator */
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return n;
}

void et_json_string(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    fputc('"', out);
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc((int)c, out);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            switch (c) {
            case '\n':
                fputs("\\n", out);
                break;
            case '\r':
                fputs("\\r", out);
                break;
            case '\t':
                fputs("\\t", out);
                break;
            default:
                fprintf(out, "\\u%04x", c);
            }
            p++;
        } else if (c < 0x80) {
            fputc((int)c, out);
            p++;
        } else {
            int n = utf8_len(p);
            if (n == 0) {
                fputs("\\ufffd", out);
                p++;
            } else {
                fwrite(p, 1, (size_t)n, out);
                p += n;
            }
        }
    }
    fputc('"', out);
}

/* JSON has no NaN or infinity. */
static double finite_or_zero(double v)
{
    return isfinite(v) ? v : 0.0;
}

static void json_number(FILE *out, double v)
{
    v = finite_or_zero(v);
    if (v == floor(v) && fabs(v) < 1e15)
        fprintf(out, "%.0f", v);
    else
        fprintf(out, "%.3f", v);
}

void et_findings_json(FILE *out, const et_findings *fs)
{
    fputc('[', out);
    for (uint32_t i = 0; i < fs->n && i < ET_MAX_FINDINGS; i++) {
        const et_finding *f = &fs->f[i];
        if (i)
            fputc(',', out);
        fputs("{\"kind\":", out);
        et_json_string(out, et_finding_kind_name((enum et_finding_kind)f->kind));
        fputs(",\"confidence\":", out);
        et_json_string(out, et_confidence_name((enum et_confidence)f->confidence));
        fputs(",\"function\":", out);
        et_json_string(out, f->site.func);
        fputs(",\"file\":", out);
        et_json_string(out, f->site.file);
        fprintf(out, ",\"line\":%lu", (unsigned long)f->site.line);
        fputs(",\"state\":", out);
        /* state is meaningful for goroutine and deadlock findings only */
        et_json_string(out, (f->kind == ET_F_GOROUTINE_LEAK || f->kind == ET_F_DEADLOCK ||
                             (f->kind == ET_F_THREAD_LEAK && f->site.func[0]))
                                ? et_gstate_name((enum et_gstate)f->state)
                                : "");
        fprintf(out, ",\"count\":%lu", (unsigned long)f->count);
        fputs(",\"growth_per_min\":", out);
        json_number(out, f->growth_per_min);
        fputs(",\"oldest_wait_s\":", out);
        json_number(out, f->oldest_wait_s);
        fputs(",\"created_by\":", out);
        et_json_string(out, f->created_by);
        fputs(",\"fingerprint\":", out);
        et_json_string(out, f->fingerprint);
        fputs(",\"evidence\":[", out);
        int first = 1;
        for (unsigned b = 0; b < ET_EVIDENCE_COUNT; b++)
            if (f->evidence & (1u << b)) {
                if (!first)
                    fputc(',', out);
                et_json_string(out, et_evidence_name(b));
                first = 0;
            }
        fprintf(out, "],\"value\":%llu,", (unsigned long long)f->value);
        if (f->kind == ET_F_GOROUTINE_LEAK)
            fprintf(out, "\"survivors\":%lu,\"survivors_of\":%lu,\"oldest_id\":%llu,\"wait_hist\":[%lu,%lu,%lu,%lu],",
                    (unsigned long)f->survivors, (unsigned long)f->survivors_of, (unsigned long long)f->oldest_id,
                    (unsigned long)f->wait_hist[0], (unsigned long)f->wait_hist[1], (unsigned long)f->wait_hist[2],
                    (unsigned long)f->wait_hist[3]);
        if (f->kind == ET_F_HEAP_GROWTH) {
            fputs("\"no_site\":", out);
            et_json_string(out, et_no_site_name(f->no_site));
            fputs(",\"no_site_reason\":", out);
            et_json_string(out, et_no_site_text(f->no_site));
            fputc(',', out);
        }
        fputs("\"stack\":[", out);
        for (unsigned k = 0; k < f->nstack && k < ET_STACK_MAX; k++) {
            if (k)
                fputc(',', out);
            et_json_string(out, f->stack[k]);
        }
        fputs("]}", out);
    }
    fputc(']', out);
}

static void print_bytes(FILE *out, double v)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    double a = fabs(v);
    while (a >= 1024 && i < 4) {
        a /= 1024;
        v /= 1024;
        i++;
    }
    fprintf(out, "%.1f %s", v, u[i]);
}

void et_findings_print(FILE *out, const et_findings *fs)
{
    if (fs->n == 0) {
        fputs("no findings\n", out);
        return;
    }
    for (uint32_t i = 0; i < fs->n && i < ET_MAX_FINDINGS; i++) {
        const et_finding *f = &fs->f[i];
        fprintf(out, "%s [%s]", et_finding_kind_name((enum et_finding_kind)f->kind),
                et_confidence_name((enum et_confidence)f->confidence));
        if (f->site.func[0])
            fprintf(out, " %s (%s:%lu)", f->site.func, f->site.file[0] ? f->site.file : "?",
                    (unsigned long)f->site.line);
        fputc('\n', out);
        switch (f->kind) {
        case ET_F_GOROUTINE_LEAK:
        case ET_F_DEADLOCK:
            fprintf(out, "    %lu goroutines in %s", (unsigned long)f->count, et_gstate_name((enum et_gstate)f->state));
            if (f->growth_per_min > 0)
                fprintf(out, ", +%.1f/min", finite_or_zero(f->growth_per_min));
            if (f->oldest_wait_s > 0)
                fprintf(out, ", oldest waiting %.0f min", f->oldest_wait_s / 60.0);
            fputc('\n', out);
            if (f->survivors_of)
                fprintf(out, "    %lu of the %lu oldest goroutines of an earlier dump still parked (oldest id %llu)\n",
                        (unsigned long)f->survivors, (unsigned long)f->survivors_of, (unsigned long long)f->oldest_id);
            break;
        case ET_F_HEAP_GROWTH:
        case ET_F_RSS_GROWTH:
            fputs("    ", out);
            print_bytes(out, (double)f->value);
            fputs(", +", out);
            print_bytes(out, finite_or_zero(f->growth_per_min));
            fputs("/min\n", out);
            if (f->no_site)
                fprintf(out, "    no site: %s\n", et_no_site_text(f->no_site));
            break;
        case ET_F_THREAD_LEAK:
            fprintf(out, "    %llu threads, +%.1f/min\n", (unsigned long long)f->value, finite_or_zero(f->growth_per_min));
            break;
        default:
            break;
        }
        if (f->created_by[0])
            fprintf(out, "    created by %s\n", f->created_by);
        fputs("    evidence:", out);
        for (unsigned b = 0; b < ET_EVIDENCE_COUNT; b++)
            if (f->evidence & (1u << b))
                fprintf(out, " %s", et_evidence_name(b));
        fprintf(out, "   fingerprint %s\n", f->fingerprint);
        for (unsigned k = 0; k < f->nstack && k < ET_STACK_MAX; k++)
            fprintf(out, "      %s\n", f->stack[k]);
    }
    if (fs->dropped)
        fprintf(out, "(%lu more findings not shown)\n", (unsigned long)fs->dropped);
}
