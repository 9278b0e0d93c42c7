/* parse_goroutine.c - goroutine / goroutineleak text profiles, debug=1 and debug=2.
 *
 * Formats (read from Go 1.21 .. 1.27 runtime/pprof/pprof.go and runtime/traceback.go):
 *
 * debug=1 (printCountProfile + printStackRecord, written through a tabwriter, so the columns
 * of a frame line are separated by one *or more* tabs):
 *     goroutine profile: total 7            ("goroutineleak profile: total N" for the leak one)
 *     3 @ 0x43e8ce 0x40b40b 0x4a2c85 0x471a81
 *     # labels: {"k":"v"}                   (optional)
 *     #	0x4a2c84	main.leak.func1+0x24		/src/main.go:12
 *     <blank line>
 *
 * debug=2 (runtime.Stack(all=true), goroutineheader + traceback):
 *     goroutine 18 [chan receive, 15 minutes, locked to thread]:
 *     goroutine 1 gp=0xc000002380 m=0 mp=0x5f3d40 [running]:      (GOTRACEBACK=system)
 *     goroutine 7 [select] {k: v}:                                 (1.27 header labels)
 *     goroutine 9 [chan send (leaked)]:                            (1.26+, GC-proved leak)
 *     main.worker(0xc000012345, {0x0, 0x0})
 *     	/src/main.go:12 +0x1d
 *     ...additional frames elided... / ...N frames elided...
 *     created by main.main in goroutine 1
 *     	/src/main.go:30 +0x5e
 *     <blank line>
 *
 * The hot path is memchr line splitting over the caller's buffer; only a line that spans
 * two chunks is copied (into carry[]). Nothing is allocated. */
#include "parse_goroutine.h"
#include "textscan.h"
#include "base.h"

#include <string.h>

enum { PEND_USER = 1, PEND_NONRT = 2, PEND_LAST = 4 };

/* ---------------------------------------------------------------------------------------
 * small helpers */

/* Parses "0x1a2b" (stops at the first non-hex digit); 1 if any digit. */
static int parse_hex(const char *s, size_t len, uint64_t *v)
{
    uint64_t x = 0;
    size_t i = 0;
    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        i = 2;
    size_t start = i;
    for (; i < len; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            break;
        x = (x << 4) | d;
    }
    *v = x;
    return i > start;
}

/* Copies a function name; returns 1 if cut. */
static int copy_func(char dst[ET_FUNC_MAX], const char *s, size_t len)
{
    if (len < ET_FUNC_MAX) {
        memcpy(dst, s, len);
        dst[len] = 0;
        return 0;
    }
    memcpy(dst, s, ET_FUNC_MAX - 1);
    dst[ET_FUNC_MAX - 1] = 0;
    return 1;
}

/* Copies a file path keeping its tail (the file name is the useful part); 1 if cut. */
static int copy_file(char dst[ET_FILE_MAX], const char *s, size_t len)
{
    if (len < ET_FILE_MAX) {
        memcpy(dst, s, len);
        dst[len] = 0;
        return 0;
    }
    memcpy(dst, s + len - (ET_FILE_MAX - 1), ET_FILE_MAX - 1);
    dst[ET_FILE_MAX - 1] = 0;
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * the per-goroutine accumulator */

void et_gacc_begin(et_gacc *a)
{
    /* Only the fields read before being written are reset: clearing the whole struct
     * (~2 KiB) per goroutine would dominate a 100k-goroutine dump. */
    et_ginfer_init(&a->inf);
    a->printed_state = ET_G_UNKNOWN;
    a->has_user = a->has_nonrt = a->has_last = 0;
    a->pend = 0;
    a->leaked = 0;
    a->has_wait = 0;
    a->cut_strings = 0;
    a->wait_min = 0;
    a->goid = 0;
    a->nframes = 0;
    a->block_func[0] = 0;
    a->created_by[0] = 0;
    a->labels[0] = 0;
}

void et_gacc_func(et_gacc *a, const char *func, size_t len)
{
    uint32_t i = a->nframes++;
    a->pend = 0;
    if (i < ET_STACK_MAX)
        a->cut_strings |= (uint8_t)copy_func(a->stack[i], func, len);
    if (!a->has_user) {
        int is_std = et_func_is_stdlib_n(func, len);
        et_ginfer_frame_cls(&a->inf, func, len, is_std);
        if (!is_std) {
            a->has_user = 1;
            a->cut_strings |= (uint8_t)copy_func(a->user.func, func, len);
            a->user.file[0] = 0;
            a->user.line = 0;
            a->pend |= PEND_USER;
        }
        if (!a->has_nonrt && !et_func_is_runtime_n(func, len)) {
            a->has_nonrt = 1;
            a->cut_strings |= (uint8_t)copy_func(a->nonrt.func, func, len);
            a->nonrt.file[0] = 0;
            a->nonrt.line = 0;
            a->pend |= PEND_NONRT;
            copy_func(a->block_func, func, len);
        }
    }
    /* Outermost frame other than goexit: the goroutine's entry function (conn.serve,
     * signal.loop, runtime.bgsweep), the fallback site of all-runtime stacks and the last
     * slot of a cut sample stack. */
    if (!(len == 14 && memcmp(func, "runtime.goexit", 14) == 0)) {
        a->has_last = 1;
        copy_func(a->last.func, func, len);
        a->last.file[0] = 0;
        a->last.line = 0;
        a->pend |= PEND_LAST;
    }
}

void et_gacc_file(et_gacc *a, const char *file, size_t len, uint32_t line)
{
    if (!a->pend)
        return;
    if (a->pend & PEND_USER) {
        a->cut_strings |= (uint8_t)copy_file(a->user.file, file, len);
        a->user.line = line;
    }
    if (a->pend & PEND_NONRT) {
        copy_file(a->nonrt.file, file, len);
        a->nonrt.line = line;
    }
    if (a->pend & PEND_LAST) {
        copy_file(a->last.file, file, len);
        a->last.line = line;
    }
    a->pend = 0;
}

void et_gprofile_reset(et_gprofile *out, int kind, int debug)
{
    /* The sites array is large; only the header is cleared, sites are initialised as they
     * are created. */
    memset(out, 0, offsetof(et_gprofile, sites));
    out->kind = (uint8_t)kind;
    out->debug = (uint8_t)debug;
}

et_gsite *et_gprofile_site(et_gprofile *out, uint16_t *index, uint64_t key, int *created)
{
    *created = 0;
    uint32_t slot = (uint32_t)(key ^ (key >> 29)) & (ET_GP_HASH_SLOTS - 1);
    for (;;) {
        uint16_t v = index[slot];
        if (v == 0)
            break;
        et_gsite *s = &out->sites[v - 1];
        if (s->key == key && !s->overflow)
            return s;
        slot = (slot + 1) & (ET_GP_HASH_SLOTS - 1);
    }
    if (out->nsites < ET_MAX_GSITES - 1) {
        uint32_t i = out->nsites++;
        index[slot] = (uint16_t)(i + 1);
        et_gsite *s = &out->sites[i];
        memset(s, 0, sizeof(*s));
        s->key = key;
        *created = 1;
        return s;
    }
    /* Full: everything new goes to the single overflow site in the last slot. */
    et_gsite *o = &out->sites[ET_MAX_GSITES - 1];
    if (out->nsites < ET_MAX_GSITES) {
        out->nsites = ET_MAX_GSITES;
        memset(o, 0, sizeof(*o));
        o->overflow = 1;
        o->stdlib_only = 1;
        et_strlcpy(o->user.func, "(overflow)", sizeof(o->user.func));
    }
    return o;
}

/* Counters saturate: a hostile "4294967295 @ ..." record must not wrap a site's count. */
static void sat_add(uint32_t *a, uint32_t b)
{
    *a = *a > UINT32_MAX - b ? UINT32_MAX : *a + b;
}

static const et_frame no_frames = {"(no frames)", "", 0};

/* debug=2: one goroutine's id and printed wait into its site's oldest-ids list (ascending,
 * bounded: insertion into a handful of slots) and wait histogram. */
static void note_goroutine(et_gsite *s, uint64_t id, uint32_t wait_min)
{
    uint32_t b = wait_min < 1 ? 0 : (wait_min < 5 ? 1 : (wait_min < 30 ? 2 : 3));
    sat_add(&s->wait_hist[b], 1);
    uint32_t n = s->nids;
    if (n == ET_GSITE_IDS && id >= s->ids[n - 1])
        return;
    uint32_t k = n < ET_GSITE_IDS ? n : ET_GSITE_IDS - 1; /* slot freed for the newcomer */
    while (k > 0 && s->ids[k - 1] > id) {
        s->ids[k] = s->ids[k - 1];
        s->id_wait_min[k] = s->id_wait_min[k - 1];
        k--;
    }
    s->ids[k] = id;
    s->id_wait_min[k] = wait_min;
    if (n < ET_GSITE_IDS)
        s->nids = (uint8_t)(n + 1);
}

void et_gacc_commit(et_gprofile *out, uint16_t *index, et_gacc *a, uint32_t count)
{
    enum et_gstate inferred = et_ginfer_result(&a->inf);
    enum et_gstate st = et_gstate_refine((enum et_gstate)a->printed_state, inferred);
    const et_frame *site_frame;
    int stdlib_only = !a->has_user;
    if (a->has_user)
        site_frame = &a->user;
    else if (a->has_nonrt)
        site_frame = &a->nonrt;
    else if (a->has_last)
        site_frame = &a->last;
    else
        site_frame = &no_frames; /* a goroutine caught with an empty stack (being created) */

    uint64_t h = ET_FNV_INIT;
    uint8_t sb = (uint8_t)st;
    h = et_fnv1a(h, &sb, 1);
    h = et_fnv1a_str(h, site_frame->func);
    h = et_fnv1a_str(h, site_frame->file);
    uint8_t lb[4] = {(uint8_t)site_frame->line, (uint8_t)(site_frame->line >> 8),
                     (uint8_t)(site_frame->line >> 16), (uint8_t)(site_frame->line >> 24)};
    h = et_fnv1a(h, lb, 4);
    /* created_by is deliberately not part of the key: only debug=2 prints it, and a site
     * must keep one key whether this cycle fetched debug=1, debug=2 or the proto profile,
     * or the analyzer would see it vanish and reappear on every deep cycle. */

    int created;
    et_gsite *s = et_gprofile_site(out, index, h, &created);
    if (!s->overflow && !created && !s->created_by[0] && a->created_by[0])
        memcpy(s->created_by, a->created_by, sizeof(s->created_by));
    if (s->overflow) {
        sat_add(&out->trunc.sites, count);
    } else if (created) {
        s->state = sb;
        s->stdlib_only = (uint8_t)stdlib_only;
        s->user = *site_frame;
        memcpy(s->block_func, a->block_func, sizeof(s->block_func));
        memcpy(s->created_by, a->created_by, sizeof(s->created_by));
        memcpy(s->labels, a->labels, sizeof(s->labels));
        uint32_t n = a->nframes < ET_STACK_MAX ? a->nframes : ET_STACK_MAX;
        for (uint32_t i = 0; i < n; i++)
            memcpy(s->stack[i], a->stack[i], strlen(a->stack[i]) + 1);
        if (a->nframes > ET_STACK_MAX) {
            /* Keep the entry function visible: last slot = outermost frame. */
            if (a->has_last)
                memcpy(s->stack[ET_STACK_MAX - 1], a->last.func, strlen(a->last.func) + 1);
            out->trunc.frames += a->nframes - ET_STACK_MAX;
        }
        s->nstack = (uint8_t)n;
        if (a->cut_strings)
            out->trunc.strings++;
    }
    sat_add(&s->count, count);
    if (a->has_wait) {
        sat_add(&s->waiting_count, count);
        if (a->wait_min > s->max_wait_min)
            s->max_wait_min = a->wait_min;
    }
    if (a->leaked)
        sat_add(&s->leaked_count, count);
    if (a->goid && !s->overflow)
        note_goroutine(s, a->goid, a->has_wait ? a->wait_min : 0);
    out->goroutines += count;
    sat_add(&out->by_state[st], count);
    if (!stdlib_only) {
        if (et_gstate_is_sync_blocked(st))
            sat_add(&out->user_sync_blocked, count);
        else
            sat_add(&out->user_other, count);
    }
}

/* ---------------------------------------------------------------------------------------
 * line handlers */

static void set_bad(et_gparser *p, const char *why, const char *line, size_t len)
{
    if (p->bad)
        return;
    p->bad = 1;
    size_t n = strlen(why);
    if (n >= sizeof(p->bad_reason))
        n = sizeof(p->bad_reason) - 1;
    memcpy(p->bad_reason, why, n);
    /* Quote the start of the offending line, printable bytes only. */
    size_t room = sizeof(p->bad_reason) - 1 - n;
    if (line && room > 4) {
        p->bad_reason[n++] = ':';
        p->bad_reason[n++] = ' ';
        p->bad_reason[n++] = '"';
        room -= 4;
        for (size_t i = 0; i < len && i < room; i++) {
            unsigned char c = (unsigned char)line[i];
            p->bad_reason[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
        }
        p->bad_reason[n++] = '"';
    }
    p->bad_reason[n] = 0;
}

static void end_record(et_gparser *p)
{
    if (!p->in_record)
        return;
    p->in_record = 0;
    et_gacc *a = &p->acc;
    if (p->debug == 2) {
        /* goroutineleak?debug=2 dumps every goroutine; only the GC-proved ones count. */
        if (p->kind == ET_GP_GOROUTINELEAK && !a->leaked)
            return;
        p->out->header_total++;
        et_gacc_commit(p->out, p->index, a, 1);
    } else {
        if (p->rec_count == 0)
            return;
        if (p->out->kind == ET_GP_GOROUTINELEAK)
            a->leaked = 1; /* every record of a goroutineleak profile is GC-proved */
        et_gacc_commit(p->out, p->index, a, p->rec_count);
    }
}

/* "file:line[ +0xoff][ fp=.. sp=.. pc=..]" -> file, line. Paths may contain ':' and spaces,
 * so the separator is the last ':' followed by digits and then a space or the end. */
/* debug=2 "goroutine N [reason, M minutes, locked to thread] {labels}:" */
static void d2_header(et_gparser *p, const char *s, size_t len)
{
    end_record(p);
    et_gacc *a = &p->acc;
    et_gacc_begin(a);
    p->in_record = 1;
    p->ancestors = 0;
    /* "goroutine N": both callers checked the prefix and a first digit. */
    uint64_t id = 0;
    for (size_t k = 10; k < len && s[k] >= '0' && s[k] <= '9'; k++) {
        uint64_t d = (uint64_t)(s[k] - '0');
        if (id > (UINT64_MAX - d) / 10) {
            id = 0; /* more than 64 bits: not an id any runtime prints */
            break;
        }
        id = id * 10 + d;
    }
    a->goid = id;
    const char *lb = memchr(s, '[', len);
    if (!lb) {
        p->out->trunc.malformed++;
        return;
    }
    size_t off = (size_t)(lb - s) + 1;
    const char *rb = memchr(s + off, ']', len - off);
    size_t inner_end = rb ? (size_t)(rb - s) : len;
    /* Split at ", ": first part is the reason/status, then optional attributes. */
    size_t i = off;
    int part = 0;
    while (i < inner_end) {
        size_t j = i;
        while (j < inner_end && !(s[j] == ',' && j + 1 < inner_end && s[j + 1] == ' '))
            j++;
        if (part == 0) {
            int leaked;
            a->printed_state = (uint8_t)et_gstate_from_reason(s + i, j - i, &leaked);
            a->leaked = (uint8_t)leaked;
        } else if (j - i > 8 && memcmp(s + j - 8, " minutes", 8) == 0) {
            uint64_t m;
            if (et_txt_u64(s + i, j - i, &m) > 0) {
                a->has_wait = 1;
                a->wait_min = m > UINT32_MAX ? UINT32_MAX : (uint32_t)m;
            }
        }
        part++;
        i = j + 2;
    }
    /* Go 1.27 header labels: " {k: v, k2: v2}:" after the ']' (GODEBUG=tracebacklabels=1). */
    if (rb) {
        size_t r = (size_t)(rb - s) + 1;
        if (r + 1 < len && s[r] == ' ' && s[r + 1] == '{') {
            size_t l = len - (r + 1);
            if (l > 0 && s[len - 1] == ':')
                l--;
            et_strlcpyn(a->labels, sizeof(a->labels), s + r + 1, l);
        }
    }
}

/* debug=2 "pkg.func(args)" -> "pkg.func" */
static void d2_func(et_gparser *p, const char *s, size_t len)
{
    if (p->ancestors)
        return;
    size_t n = len;
    if (len > 0 && s[len - 1] == ')') {
        const char *lp = memrchr(s, '(', len);
        /* "main.(*T).m()" and "main.F[...](...)": the args group is the last one. A name
         * that is only "(...)" would leave nothing: keep the whole line then. */
        if (lp && lp != s)
            n = (size_t)(lp - s);
    }
    et_gacc_func(&p->acc, s, n);
}

static void d2_line(et_gparser *p, const char *s, size_t len)
{
    if (len == 0) {
        end_record(p);
        return;
    }
    char c = s[0];
    if (c == '\t') {
        if (!p->in_record || p->ancestors)
            return;
        size_t flen;
        uint32_t line;
        if (et_txt_file_line(s + 1, len - 1, &flen, &line))
            et_gacc_file(&p->acc, s + 1, flen, line);
        else
            p->acc.pend = 0; /* "goroutine running on other thread; stack unavailable" */
        return;
    }
    if (c == 'g' && et_txt_starts(s, len, "goroutine ", 10) && len > 10 && s[10] >= '0' && s[10] <= '9') {
        d2_header(p, s, len);
        return;
    }
    if (!p->in_record) {
        p->out->trunc.malformed++;
        return;
    }
    if (c == 'c' && et_txt_starts(s, len, "created by ", 11)) {
        size_t l = len - 11;
        const char *in = memmem(s + 11, l, " in goroutine ", 14);
        if (in)
            l = (size_t)(in - (s + 11));
        if (copy_func(p->acc.created_by, s + 11, l))
            p->acc.cut_strings = 1;
        p->acc.pend = 0;
        p->ancestors = 1; /* anything after the creator is ancestry, not this stack */
        return;
    }
    if (c == '.' && et_txt_starts(s, len, "...", 3)) {
        p->acc.pend = 0; /* "...additional frames elided..." / "...N frames elided..." */
        return;
    }
    if (c == '[' && et_txt_starts(s, len, "[originating from goroutine", 27)) {
        p->ancestors = 1;
        return;
    }
    d2_func(p, s, len);
}

/* debug=1 "#<tabs>0xpc<tabs>func+0xoff<tabs>file:line" */
static void d1_frame(et_gparser *p, const char *s, size_t len)
{
    size_t i = 1;
    while (i < len && s[i] == '\t')
        i++;
    while (i < len && s[i] != '\t') /* pc */
        i++;
    while (i < len && s[i] == '\t')
        i++;
    if (i >= len)
        return; /* "#\t0x1234": a PC with no symbol; nothing to say about it */
    size_t fs = i;
    if (p->rec_frames++ == 0) {
        /* The frame's PC is the return address minus one (runtime.CallersFrames); any other
         * value means printStackRecord hid runtime frames above it. */
        uint64_t pc;
        size_t k = 1;
        while (k < len && s[k] == '\t')
            k++;
        if (parse_hex(s + k, fs - k, &pc) && !(pc == p->rec_pc0 || pc + 1 == p->rec_pc0))
            et_ginfer_hidden_runtime(&p->acc.inf);
    }
    while (i < len && s[i] != '\t')
        i++;
    size_t fe = i;
    const char *plus = memrchr(s + fs, '+', fe - fs);
    size_t fn_len = plus ? (size_t)(plus - (s + fs)) : fe - fs;
    et_gacc_func(&p->acc, s + fs, fn_len);
    while (i < len && s[i] == '\t')
        i++;
    size_t flen;
    uint32_t line;
    if (i < len && et_txt_file_line(s + i, len - i, &flen, &line))
        et_gacc_file(&p->acc, s + i, flen, line);
}

static void d1_line(et_gparser *p, const char *s, size_t len)
{
    if (len == 0) {
        end_record(p);
        return;
    }
    char c = s[0];
    if (c == '#') {
        if (!p->in_record) {
            if (!et_txt_starts(s, len, "# ", 2))
                p->out->trunc.malformed++;
            return;
        }
        if (len > 1 && s[1] == '\t') {
            d1_frame(p, s, len);
        } else if (et_txt_starts(s, len, "# labels: ", 10)) {
            et_strlcpyn(p->acc.labels, sizeof(p->acc.labels), s + 10, len - 10);
        }
        return;
    }
    if (c >= '0' && c <= '9') {
        uint64_t n;
        size_t nd = et_txt_u64(s, len, &n);
        if (nd < len && s[nd] == ' ' && et_txt_starts(s + nd, len - nd, " @", 2)) {
            end_record(p);
            et_gacc_begin(&p->acc);
            p->in_record = 1;
            p->rec_count = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
            p->rec_frames = 0;
            p->rec_pc0 = 0;
            size_t k = nd + 2;
            while (k < len && s[k] == ' ')
                k++;
            parse_hex(s + k, len - k, &p->rec_pc0);
            return;
        }
    }
    if (et_txt_starts(s, len, "goroutine profile: total ", 25) ||
        et_txt_starts(s, len, "goroutineleak profile: total ", 29)) {
        /* A second header (concatenated dumps) closes the previous record. */
        end_record(p);
        return;
    }
    p->out->trunc.malformed++;
}

/* The first non-empty line decides the format. */
static void first_line(et_gparser *p, const char *s, size_t len)
{
    uint64_t total;
    p->saw_any = 1;
    if (et_txt_starts(s, len, "goroutine profile: total ", 25)) {
        p->debug = 1;
        p->out->kind = ET_GP_GOROUTINE;
        et_txt_u64(s + 25, len - 25, &total);
        p->out->header_total = total;
        p->saw_header = 1;
    } else if (et_txt_starts(s, len, "goroutineleak profile: total ", 29)) {
        p->debug = 1;
        p->out->kind = ET_GP_GOROUTINELEAK;
        et_txt_u64(s + 29, len - 29, &total);
        p->out->header_total = total;
        p->saw_header = 1;
    } else if (et_txt_starts(s, len, "goroutine ", 10) && len > 10 && s[10] >= '0' && s[10] <= '9' &&
               memchr(s, '[', len)) {
        p->debug = 2;
        d2_header(p, s, len);
    } else if (et_txt_looks_like_html(s, len)) {
        set_bad(p, "HTML page, not a goroutine profile", s, len);
    } else if (et_txt_starts(s, len, "heap profile:", 13)) {
        set_bad(p, "heap profile, not a goroutine profile", NULL, 0);
    } else if (len >= 2 && (unsigned char)s[0] == 0x1f && (unsigned char)s[1] == 0x8b) {
        set_bad(p, "gzip data (a proto profile?), not a text goroutine profile", NULL, 0);
    } else {
        set_bad(p, "not a goroutine profile", s, len);
    }
    p->out->debug = (uint8_t)p->debug;
}

static void do_line(et_gparser *p, const char *s, size_t len)
{
    if (len && s[len - 1] == '\r')
        len--;
    if (!p->saw_any) {
        if (len == 0)
            return;
        first_line(p, s, len);
        return;
    }
    if (p->bad)
        return;
    if (p->debug == 2)
        d2_line(p, s, len);
    else
        d1_line(p, s, len);
}

/* ---------------------------------------------------------------------------------------
 * public API */

void et_gparse_init(et_gparser *p, et_gprofile *out, int kind, int debug)
{
    memset(p, 0, offsetof(et_gparser, carry));
    memset(p->index, 0, sizeof(p->index));
    p->out = out;
    p->kind = kind;
    p->debug = 0;
    (void)debug; /* detected from the first line; a caller's hint cannot be more right */
    et_gprofile_reset(out, kind, 0);
}

int et_gparse_feed(et_gparser *p, const char *buf, size_t len)
{
    if (p->bad)
        return -1;
    p->bytes += len;
    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        size_t take = nl ? (size_t)(nl - buf) : len;
        if (p->carry_len == 0 && !p->carry_over && nl) {
            /* Fast path: a whole line inside the caller's buffer. */
            if (take > ET_GP_LINE_MAX) {
                p->out->trunc.lines++;
                take = ET_GP_LINE_MAX;
            }
            do_line(p, buf, take);
        } else {
            size_t room = ET_GP_LINE_MAX - p->carry_len;
            size_t n = take < room ? take : room;
            memcpy(p->carry + p->carry_len, buf, n);
            p->carry_len += (uint32_t)n;
            if (n < take && !p->carry_over) {
                p->carry_over = 1;
                p->out->trunc.lines++;
            }
            if (!nl)
                break;
            do_line(p, p->carry, p->carry_len);
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

int et_gparse_finish(et_gparser *p, char *err, size_t errlen)
{
    if (!p->bad && (p->carry_len > 0 || p->carry_over)) {
        /* Go ends every line with '\n'; a last line without one means the body was cut
         * (debug=2 stops at 64 MiB, runtime/pprof writeGoroutineStacks) */
        p->out->input_cut = 1;
        do_line(p, p->carry, p->carry_len);
        p->carry_len = 0;
        p->carry_over = 0;
    }
    if (!p->bad && !p->saw_any)
        set_bad(p, p->bytes ? "blank body, not a goroutine profile" : "empty body", NULL, 0);
    if (p->bad) {
        if (err && errlen)
            et_strlcpy(err, p->bad_reason, errlen);
        return -1;
    }
    /* runtime.Stack fills its buffer line by line, so Go's 64 MiB debug=2 cap can also end on
     * a newline: an exactly 64 MiB body, or a last frame without its file line, is cut too. */
    if (p->debug == 2 && (p->bytes == (uint64_t)64 << 20 || (p->in_record && p->acc.pend)))
        p->out->input_cut = 1;
    end_record(p);
    et_gprofile *out = p->out;
    if (p->debug == 1 && out->goroutines == 0 && out->header_total > 0 && out->trunc.malformed > 0) {
        if (err && errlen)
            et_strlcpy(err, "goroutine profile header but no parsable records", errlen);
        return -1;
    }
    if (err && errlen)
        err[0] = 0;
    return 0;
}
