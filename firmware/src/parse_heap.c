/* parse_heap.c - heap profile, debug=1 text (see parse_heap.h).
 *
 * Format (Go 1.21 .. 1.27 runtime/pprof/pprof.go writeHeapInternal), frame lines written
 * through a tabwriter, so columns are separated by one or more tabs:
 *     heap profile: 130: 507632 [133: 511968] @ heap/8192
 *     1: 4096 [1: 4096] @ 0x47de96 0x4ea5b8 0x44aba7 0x485b81
 *     #	0x4ea5b7	main.allocate+0x57		/src/main.go:31
 *     <blank>
 *     # runtime.MemStats
 *     # Alloc = 2872776
 *     # Stack = 360448 / 360448
 *     # PauseNs = [51988 0 0 ...]          (256 numbers: may exceed the line buffer; ignored)
 *     # GCCPUFraction = 0.00047162412235782084
 *     # MaxRSS = 3772416
 */
#include "parse_heap.h"
#include "textscan.h"
#include "base.h"
#include "gstate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t skip_sp(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

/* ---- site picking ---- */

void et_hpick_init(et_hpick *k)
{
    k->rank = 0;
    k->cut = 0;
}

int et_hpick_func(et_hpick *k, const char *func, size_t len)
{
    if (k->rank == 3)
        return 0;
    int r = !et_func_is_stdlib_n(func, len) ? 3 : !et_func_is_runtime_n(func, len) ? 2 : 1;
    if (r <= k->rank)
        return 0;
    k->rank = r;
    k->cut |= et_strlcpyn(k->f.func, sizeof(k->f.func), func, len);
    k->f.file[0] = 0;
    k->f.line = 0;
    return 1;
}

void et_hpick_file(et_hpick *k, const char *file, size_t len, uint32_t line)
{
    if (len >= sizeof(k->f.file)) {
        /* keep the tail: the file name is the useful part */
        file += len - (sizeof(k->f.file) - 1);
        len = sizeof(k->f.file) - 1;
        k->cut = 1;
    }
    memcpy(k->f.file, file, len);
    k->f.file[len] = 0;
    k->f.line = line;
}

/* ---- site table ---- */

void et_hprofile_reset(et_hprofile *out)
{
    memset(out, 0, offsetof(et_hprofile, sites));
}

static uint64_t site_key(const et_frame *f)
{
    uint64_t h = ET_FNV_INIT;
    if (!f)
        return et_fnv1a_str(h, "");
    h = et_fnv1a_str(h, f->func);
    h = et_fnv1a_str(h, f->file);
    uint8_t lb[4] = {(uint8_t)f->line, (uint8_t)(f->line >> 8), (uint8_t)(f->line >> 16),
                     (uint8_t)(f->line >> 24)};
    return et_fnv1a(h, lb, 4);
}

static uint32_t slot_of(uint64_t key)
{
    return (uint32_t)(key ^ (key >> 31)) & (ET_HP_HASH_SLOTS - 1);
}

static void index_rebuild(et_hprofile *out, et_hindex *ix)
{
    memset(ix->slot, 0, sizeof(ix->slot));
    uint32_t n = out->nsites < ET_MAX_HSITES - 1 ? out->nsites : ET_MAX_HSITES - 1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = slot_of(out->sites[i].key);
        while (ix->slot[s])
            s = (s + 1) & (ET_HP_HASH_SLOTS - 1);
        ix->slot[s] = (uint16_t)(i + 1);
    }
}

static et_hsite *overflow_site(et_hprofile *out)
{
    et_hsite *o = &out->sites[ET_MAX_HSITES - 1];
    if (out->nsites < ET_MAX_HSITES) {
        out->nsites = ET_MAX_HSITES;
        memset(o, 0, sizeof(*o));
        o->overflow = 1;
        et_strlcpy(o->user.func, "(overflow)", sizeof(o->user.func));
    }
    return o;
}

static void site_add(et_hsite *s, uint64_t io, uint64_t ib, uint64_t ao, uint64_t ab)
{
    s->inuse_objects += io;
    s->inuse_bytes += ib;
    s->alloc_objects += ao;
    s->alloc_bytes += ab;
}

void et_hprofile_add(et_hprofile *out, et_hindex *ix, const et_frame *site, uint64_t io, uint64_t ib,
                     uint64_t ao, uint64_t ab)
{
    uint64_t key = site_key(site);
    uint32_t s = slot_of(key);
    while (ix->slot[s]) {
        et_hsite *hs = &out->sites[ix->slot[s] - 1];
        if (hs->key == key) {
            site_add(hs, io, ib, ao, ab);
            return;
        }
        s = (s + 1) & (ET_HP_HASH_SLOTS - 1);
    }
    et_hsite *ns;
    if (out->nsites < ET_MAX_HSITES - 1) {
        uint32_t i = out->nsites++;
        ix->slot[s] = (uint16_t)(i + 1);
        ns = &out->sites[i];
    } else {
        /* Full: the smallest site (by inuse bytes) makes room if the newcomer is larger. A
         * folded site that comes back later starts again from zero: the overflow site keeps
         * the totals honest. */
        uint32_t min_i = 0;
        for (uint32_t i = 1; i < ET_MAX_HSITES - 1; i++)
            if (out->sites[i].inuse_bytes < out->sites[min_i].inuse_bytes)
                min_i = i;
        et_hsite *o = overflow_site(out);
        out->trunc.sites++;
        if (ib <= out->sites[min_i].inuse_bytes) {
            site_add(o, io, ib, ao, ab);
            return;
        }
        et_hsite *m = &out->sites[min_i];
        site_add(o, m->inuse_objects, m->inuse_bytes, m->alloc_objects, m->alloc_bytes);
        ns = m;
        memset(ns, 0, sizeof(*ns));
        ns->key = key;
        if (site)
            ns->user = *site;
        site_add(ns, io, ib, ao, ab);
        index_rebuild(out, ix);
        return;
    }
    memset(ns, 0, sizeof(*ns));
    ns->key = key;
    if (site)
        ns->user = *site;
    site_add(ns, io, ib, ao, ab);
}

/* ---- text parser ---- */

static void set_bad(et_hparser *p, const char *why, const char *line, size_t len)
{
    if (p->bad)
        return;
    p->bad = 1;
    size_t n = 0;
    while (why[n] && n < sizeof(p->bad_reason) - 1) {
        p->bad_reason[n] = why[n];
        n++;
    }
    if (line && n + 6 < sizeof(p->bad_reason)) {
        p->bad_reason[n++] = ':';
        p->bad_reason[n++] = ' ';
        p->bad_reason[n++] = '"';
        for (size_t i = 0; i < len && n < sizeof(p->bad_reason) - 2; i++) {
            unsigned char c = (unsigned char)line[i];
            p->bad_reason[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
        }
        p->bad_reason[n++] = '"';
    }
    p->bad_reason[n] = 0;
}

/* Go's scaleHeapSample (runtime/pprof/protomem.go, 1.21 .. 1.27): a sampled bucket of
 * `count` objects of `size` bytes each stands for count / (1 - e^(-size/rate)) objects. The
 * proto profile is written scaled, debug=1 raw; scaling here makes both formats agree. */
static uint64_t to_u64(double d)
{
    if (!(d > 0.0))
        return 0;
    if (d >= 18446744073709549568.0)
        return UINT64_MAX;
    return (uint64_t)d;
}

static void scale_sample(uint64_t *count, uint64_t *bytes, uint64_t rate)
{
    if (*count == 0 || *bytes == 0) {
        *count = *bytes = 0;
        return;
    }
    if (rate <= 1)
        return;
    uint64_t n = *count, avg = *bytes / n; /* one bucket = one object size: exact */
    if (avg == 0)
        return;
    double scale = 1.0 / (1.0 - exp(-(double)avg / (double)rate));
    *count = to_u64((double)n * scale);
    *bytes = to_u64((double)n * (double)avg * scale);
}

static void end_record(et_hparser *p)
{
    if (!p->in_record)
        return;
    p->in_record = 0;
    scale_sample(&p->rec[0], &p->rec[1], p->out->sample_rate);
    scale_sample(&p->rec[2], &p->rec[3], p->out->sample_rate);
    p->out->total_inuse_objects += p->rec[0];
    p->out->total_inuse_bytes += p->rec[1];
    p->out->total_alloc_objects += p->rec[2];
    p->out->total_alloc_bytes += p->rec[3];
    if ((p->rec[0] | p->rec[1] | p->rec[2] | p->rec[3]) == 0)
        return; /* "0: 0 [0: 0]": an empty bucket says nothing and would take a site */
    if (p->pick.cut)
        p->out->trunc.strings++;
    et_hprofile_add(p->out, &p->index, p->pick.rank ? &p->pick.f : NULL, p->rec[0], p->rec[1], p->rec[2],
                    p->rec[3]);
}

/* "A: B [C: D]" -> 4 numbers; returns chars consumed or 0. */
static size_t parse_quad(const char *s, size_t len, uint64_t v[4])
{
    size_t i = 0, n;
    if (!(n = et_txt_u64(s, len, &v[0])))
        return 0;
    i += n;
    if (i >= len || s[i] != ':')
        return 0;
    i = skip_sp(s, len, i + 1);
    if (!(n = et_txt_u64(s + i, len - i, &v[1])))
        return 0;
    i = skip_sp(s, len, i + n);
    if (i >= len || s[i] != '[')
        return 0;
    if (!(n = et_txt_u64(s + i + 1, len - i - 1, &v[2])))
        return 0;
    i += 1 + n;
    if (i >= len || s[i] != ':')
        return 0;
    i = skip_sp(s, len, i + 1);
    if (!(n = et_txt_u64(s + i, len - i, &v[3])))
        return 0;
    i += n;
    if (i >= len || s[i] != ']')
        return 0;
    return i + 1;
}

static void frame_line(et_hparser *p, const char *s, size_t len)
{
    size_t i = 1;
    while (i < len && s[i] == '\t')
        i++;
    while (i < len && s[i] != '\t')
        i++;
    while (i < len && s[i] == '\t')
        i++;
    if (i >= len)
        return;
    size_t fs = i;
    while (i < len && s[i] != '\t')
        i++;
    const char *plus = memrchr(s + fs, '+', i - fs);
    size_t fn = plus ? (size_t)(plus - (s + fs)) : i - fs;
    if (!et_hpick_func(&p->pick, s + fs, fn))
        return;
    while (i < len && s[i] == '\t')
        i++;
    size_t flen;
    uint32_t line;
    if (i < len && et_txt_file_line(s + i, len - i, &flen, &line))
        et_hpick_file(&p->pick, s + i, flen, line);
}

struct ms_key {
    const char *name;
    size_t off; /* offsetof in et_memstats; uint64 fields */
};

static const struct ms_key ms_keys[] = {
    {"Alloc", offsetof(et_memstats, alloc)},
    {"TotalAlloc", offsetof(et_memstats, total_alloc)},
    {"Sys", offsetof(et_memstats, sys)},
    {"Mallocs", offsetof(et_memstats, mallocs)},
    {"Frees", offsetof(et_memstats, frees)},
    {"HeapAlloc", offsetof(et_memstats, heap_alloc)},
    {"HeapSys", offsetof(et_memstats, heap_sys)},
    {"HeapIdle", offsetof(et_memstats, heap_idle)},
    {"HeapInuse", offsetof(et_memstats, heap_inuse)},
    {"HeapReleased", offsetof(et_memstats, heap_released)},
    {"HeapObjects", offsetof(et_memstats, heap_objects)},
    {"NextGC", offsetof(et_memstats, next_gc)},
    {"LastGC", offsetof(et_memstats, last_gc_ns)},
};

static void memstats_line(et_hparser *p, const char *s, size_t len)
{
    /* "# Key = value" */
    if (!et_txt_starts(s, len, "# ", 2))
        return;
    const char *eq = memmem(s, len, " = ", 3);
    if (!eq)
        return;
    const char *k = s + 2;
    size_t kl = (size_t)(eq - k);
    const char *v = eq + 3;
    size_t vl = len - (size_t)(v - s);
    et_memstats *ms = &p->out->ms;
    uint64_t x;
    for (size_t i = 0; i < ET_ARRAY_LEN(ms_keys); i++) {
        if (strlen(ms_keys[i].name) == kl && memcmp(ms_keys[i].name, k, kl) == 0) {
            if (et_txt_u64(v, vl, &x))
                memcpy((char *)ms + ms_keys[i].off, &x, sizeof(x));
            return;
        }
    }
    if (kl == 5 && memcmp(k, "Stack", 5) == 0) {
        size_t n = et_txt_u64(v, vl, &x);
        if (!n)
            return;
        ms->stack_inuse = x;
        size_t j = n;
        while (j < vl && (v[j] == ' ' || v[j] == '/'))
            j++;
        if (et_txt_u64(v + j, vl - j, &x))
            ms->stack_sys = x;
    } else if (kl == 5 && memcmp(k, "NumGC", 5) == 0) {
        if (et_txt_u64(v, vl, &x))
            ms->num_gc = x > UINT32_MAX ? UINT32_MAX : (uint32_t)x;
    } else if (kl == 11 && memcmp(k, "NumForcedGC", 11) == 0) {
        if (et_txt_u64(v, vl, &x))
            ms->num_forced_gc = x > UINT32_MAX ? UINT32_MAX : (uint32_t)x;
    } else if (kl == 13 && memcmp(k, "GCCPUFraction", 13) == 0) {
        char tmp[64];
        size_t n = vl < sizeof(tmp) - 1 ? vl : sizeof(tmp) - 1;
        memcpy(tmp, v, n);
        tmp[n] = 0;
        char *end;
        double d = strtod(tmp, &end);
        if (end != tmp && d >= 0.0 && d <= 1.0)
            ms->gc_cpu_fraction = d;
    }
}

static void do_line(et_hparser *p, const char *s, size_t len, int cut)
{
    if (len && s[len - 1] == '\r')
        len--;
    if (cut && !et_txt_starts(s, len, "# Pause", 7)) /* PauseNs/PauseEnd are long and unused */
        p->out->trunc.lines++;
    if (!p->saw_any) {
        if (len == 0)
            return;
        p->saw_any = 1;
        if (et_txt_starts(s, len, "heap profile: ", 14)) {
            uint64_t v[4];
            size_t n = parse_quad(s + 14, len - 14, v);
            if (!n) {
                set_bad(p, "bad heap profile header", s, len);
                return;
            }
            p->saw_header = 1;
            /* Totals are summed from the (scaled) records instead: the header's are raw and
             * its alloc bytes may carry a +1 Go adds for old pprof versions. */
            const char *r = memmem(s, len, "@ heap/", 7);
            if (r) {
                /* Go prints 2*MemProfileRate here for compatibility with the C++ heap
                 * profiler (runtime/pprof/pprof.go writeHeapInternal). */
                size_t off = (size_t)(r - s) + 7;
                uint64_t rate2;
                et_txt_u64(s + off, len - off, &rate2);
                p->out->sample_rate = rate2 / 2;
            }
            p->state = 1;
        } else if (et_txt_looks_like_html(s, len)) {
            set_bad(p, "HTML page, not a heap profile", s, len);
        } else if (len >= 2 && (unsigned char)s[0] == 0x1f && (unsigned char)s[1] == 0x8b) {
            set_bad(p, "gzip data (a proto profile?), not a text heap profile", NULL, 0);
        } else {
            set_bad(p, "not a heap profile", s, len);
        }
        return;
    }
    if (p->bad)
        return;
    if (len == 0) {
        end_record(p);
        return;
    }
    if (p->state == 2) {
        memstats_line(p, s, len);
        return;
    }
    if (s[0] == '#') {
        if (len > 1 && s[1] == '\t') {
            if (p->in_record)
                frame_line(p, s, len);
            return;
        }
        if (et_txt_starts(s, len, "# runtime.MemStats", 18)) {
            end_record(p);
            p->state = 2;
            p->out->ms.present = 1;
        }
        return;
    }
    if (s[0] >= '0' && s[0] <= '9') {
        uint64_t v[4];
        size_t n = parse_quad(s, len, v);
        if (n && et_txt_starts(s + n, len - n, " @", 2)) {
            end_record(p);
            p->in_record = 1;
            memcpy(p->rec, v, sizeof(v));
            et_hpick_init(&p->pick);
            return;
        }
    }
    p->out->trunc.malformed++;
}

void et_hparse_init(et_hparser *p, et_hprofile *out)
{
    memset(p, 0, offsetof(et_hparser, carry));
    p->out = out;
    et_hprofile_reset(out);
}

int et_hparse_feed(et_hparser *p, const char *buf, size_t len)
{
    if (p->bad)
        return -1;
    p->bytes += len;
    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        size_t take = nl ? (size_t)(nl - buf) : len;
        if (p->carry_len == 0 && !p->carry_over && nl) {
            int cut = take > ET_HP_LINE_MAX;
            do_line(p, buf, cut ? ET_HP_LINE_MAX : take, cut);
        } else {
            size_t room = ET_HP_LINE_MAX - p->carry_len;
            size_t n = take < room ? take : room;
            memcpy(p->carry + p->carry_len, buf, n);
            p->carry_len += (uint32_t)n;
            if (n < take)
                p->carry_over = 1;
            if (!nl)
                break;
            do_line(p, p->carry, p->carry_len, p->carry_over);
            p->carry_len = 0;
            p->carry_over = 0;
        }
        size_t adv = (size_t)(nl - buf) + 1;
        buf += adv;
        len -= adv;
        if (p->bad)
            return -1;
    }
    return p->bad ? -1 : 0;
}

int et_hparse_finish(et_hparser *p, char *err, size_t errlen)
{
    if (!p->bad && (p->carry_len > 0 || p->carry_over)) {
        do_line(p, p->carry, p->carry_len, p->carry_over);
        p->carry_len = 0;
        p->carry_over = 0;
    }
    if (!p->bad && !p->saw_any)
        set_bad(p, p->bytes ? "blank body, not a heap profile" : "empty body", NULL, 0);
    if (p->bad) {
        if (err && errlen)
            et_strlcpy(err, p->bad_reason, errlen);
        return -1;
    }
    end_record(p);
    if (err && errlen)
        err[0] = 0;
    return 0;
}
