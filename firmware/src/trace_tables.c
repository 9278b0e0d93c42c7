/* trace_tables.c - the execution-trace reader's per-generation string and stack tables, and
 * the global site and reason tables they are resolved into when a generation ends. */
#include "trace_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- strings ---- */
static void str_put(et_trace_parser *p, uint64_t id, const uint8_t *b, uint32_t len)
{
    if (p->s_count >= p->lim.max_strings || p->s_used + len > p->lim.max_string_bytes) {
        p->trunc.strings++;
        return;
    }
    uint32_t i = hash64(id) & p->smask;
    while (p->s[i].gen == p->gen_idx) {
        if (p->s[i].id == id) { /* duplicate ID: Go rejects the trace; keep the first */
            p->trunc.malformed++;
            return;
        }
        i = (i + 1) & p->smask;
    }
    p->s[i].gen = p->gen_idx;
    p->s[i].id = id;
    p->s[i].off = p->s_used;
    p->s[i].len = (uint16_t)len;
    memcpy(p->sbytes + p->s_used, b, len);
    p->s_used += len;
    p->s_count++;
}

/* NULL if unknown. *len gets the length (strings are not NUL-terminated in the arena). */
const char *tr_str_get(et_trace_parser *p, uint64_t id, uint32_t *len)
{
    uint32_t i = hash64(id) & p->smask;
    while (p->s[i].gen == p->gen_idx) {
        if (p->s[i].id == id) {
            *len = p->s[i].len;
            return p->sbytes + p->s[i].off;
        }
        i = (i + 1) & p->smask;
    }
    return NULL;
}

/* ---- needed stacks ---- */
static struct tstk *stk_slot(et_trace_parser *p, uint64_t id, int insert)
{
    uint32_t i = hash64(id) & p->kmask;
    while (p->k[i].gen == p->gen_idx) {
        if (p->k[i].id == id)
            return &p->k[i];
        i = (i + 1) & p->kmask;
    }
    if (!insert)
        return NULL;
    if (p->k_count >= p->lim.max_stacks) {
        p->trunc.stacks++;
        return NULL;
    }
    p->k[i].gen = p->gen_idx;
    p->k[i].state = 1;
    p->k[i].id = id;
    p->k[i].site = 0;
    p->k_count++;
    return &p->k[i];
}

static void want_stacks(et_trace_parser *p)
{
    for (uint32_t i = 0; i < p->g_hw; i++) {
        struct tg *g = &p->g[i];
        if (!(g->flags & GF_USED))
            continue;
        if (g->flags & GF_CREATE_PEND)
            stk_slot(p, g->create_site, 1);
        if (g->flags & GF_START_PEND)
            stk_slot(p, g->start_site, 1);
        if (g->flags & GF_BLOCK_PEND)
            stk_slot(p, g->block_site, 1);
    }
    p->stk_scanned = 1;
}

/* ---- sites ---- */
static int has_prefix(const char *s, uint32_t n, const char *pre)
{
    size_t l = strlen(pre);
    return n >= l && memcmp(s, pre, l) == 0;
}

static int is_std_func(const char *s, uint32_t n) { return et_func_is_stdlib_n(s, n); }

static uint8_t frame_hint(const char *s, uint32_t n)
{
#define H(pre, st) if (has_prefix(s, n, pre)) return st
    H("runtime.chanrecv", ET_G_CHAN_RECV);
    H("runtime.chansend", ET_G_CHAN_SEND);
    H("runtime.selectgo", ET_G_SELECT);
    H("sync.(*Cond).Wait", ET_G_COND_WAIT);
    H("sync.(*WaitGroup).Wait", ET_G_WAITGROUP);
    H("sync.(*RWMutex).RLock", ET_G_RWMUTEX_R);
    H("sync.(*RWMutex).Lock", ET_G_RWMUTEX_W);
    H("sync.(*Mutex).Lock", ET_G_MUTEX);
    H("internal/sync.(*Mutex).Lock", ET_G_MUTEX);
    H("time.Sleep", ET_G_SLEEP);
    H("runtime.netpollblock", ET_G_IO_WAIT);
    H("internal/poll.", ET_G_IO_WAIT);
#undef H
    if (n == 13 && memcmp(s, "runtime.block", 13) == 0)
        return ET_G_SELECT_NO_CASES;
    return ET_G_UNKNOWN;
}

static void copy_str(char *dst, size_t cap, const char *s, uint32_t n)
{
    et_strlcpyn(dst, cap, s, n);
}

static void copy_tail(char *dst, size_t cap, const char *s, uint32_t n)
{
    if (n >= cap) {
        s += n - (cap - 1);
        n = (uint32_t)(cap - 1);
    }
    et_strlcpyn(dst, cap, s, n);
}

static uint32_t site_intern(et_trace_parser *p, const struct tsite *cand)
{
    uint32_t i = hash64(cand->key) & p->sitemask;
    while (p->sidx[i]) {
        struct tsite *s = &p->site[p->sidx[i] - 1];
        if (s->key == cand->key && strcmp(s->top, cand->top) == 0 && s->user.line == cand->user.line &&
            strcmp(s->user.func, cand->user.func) == 0 && strcmp(s->user.file, cand->user.file) == 0)
            return p->sidx[i] - 1;
        i = (i + 1) & p->sitemask;
    }
    if (p->nsites >= p->lim.max_sites) {
        p->trunc.sites++;
        return 1;
    }
    uint32_t idx = p->nsites++;
    p->site[idx] = *cand;
    p->sidx[i] = idx + 1;
    return idx;
}

/* Stack (this generation's ID) -> global site index; 0 if no stack or not available. */
uint32_t tr_resolve_stack(et_trace_parser *p, uint32_t id)
{
    if (!id)
        return 0;
    struct tstk *k = stk_slot(p, id, 0);
    if (!k || k->state != 2) {
        p->trunc.stacks++;
        return 0;
    }
    if (k->n == 0) /* an empty stack: nothing to say, nothing lost */
        return 0;
    if (k->site)
        return k->site - 1;
    struct tsite c;
    memset(&c, 0, sizeof c);
    int have_top = 0, have_user = 0;
    const char *first = NULL, *first_file = NULL;
    uint32_t first_len = 0, first_file_len = 0, first_line = 0;
    for (uint32_t f = 0; f < k->n; f++) {
        const struct tfr *fr = &p->fr[k->off + f];
        uint32_t fl = 0, ffl = 0;
        if (fr->func == 0) /* pc=0 func=0: the runtime could not symbolize it */
            continue;
        const char *fn = tr_str_get(p, fr->func, &fl);
        const char *file = tr_str_get(p, fr->file, &ffl);
        if (!fn) {
            p->trunc.strings++;
            continue;
        }
        if (!c.hint)
            c.hint = frame_hint(fn, fl);
        if (!first) {
            first = fn;
            first_len = fl;
            first_file = file;
            first_file_len = ffl;
            first_line = fr->line;
        }
        if (!have_top && !tr_is_runtime_func(fn, fl)) {
            copy_str(c.top, sizeof c.top, fn, fl);
            have_top = 1;
            if (!have_user) { /* provisional user frame: innermost non-runtime */
                copy_str(c.user.func, sizeof c.user.func, fn, fl);
                if (file)
                    copy_tail(c.user.file, sizeof c.user.file, file, ffl);
                c.user.line = fr->line;
            }
        }
        if (!have_user && !tr_is_runtime_func(fn, fl) && !is_std_func(fn, fl)) {
            copy_str(c.user.func, sizeof c.user.func, fn, fl);
            c.user.file[0] = 0;
            if (file)
                copy_tail(c.user.file, sizeof c.user.file, file, ffl);
            c.user.line = fr->line;
            have_user = 1;
        }
        if (have_top && have_user && c.hint)
            break;
    }
    if (!first) /* only unsymbolized frames */
        return 0;
    if (!have_top) { /* all runtime: the runtime's own goroutines */
        copy_str(c.top, sizeof c.top, first, first_len);
        copy_str(c.user.func, sizeof c.user.func, first, first_len);
        if (first_file)
            copy_tail(c.user.file, sizeof c.user.file, first_file, first_file_len);
        c.user.line = first_line;
    }
    c.stdlib_only = (uint8_t)!have_user;
    uint64_t h = et_fnv1a_str(ET_FNV_INIT, c.top);
    h = et_fnv1a_str(h, c.user.func);
    h = et_fnv1a_str(h, c.user.file);
    h = et_fnv1a(h, &c.user.line, sizeof c.user.line);
    c.key = h;
    uint32_t idx = site_intern(p, &c);
    k->site = idx + 1;
    return idx;
}

uint32_t tr_reason_intern(et_trace_parser *p, const char *s, uint32_t n)
{
    if (n == 0)
        return 0;
    char tmp[ET_TRACE_REASON_MAX];
    copy_str(tmp, sizeof tmp, s, n);
    for (uint32_t i = 1; i < p->nreasons; i++)
        if (strcmp(p->reasons[i], tmp) == 0)
            return i;
    if (p->nreasons >= MAX_REASONS)
        return MAX_REASONS - 1; /* last slot doubles as "(other)" */
    uint32_t i = p->nreasons++;
    if (i == MAX_REASONS - 1)
        et_strlcpy(p->reasons[i], "(other)", ET_TRACE_REASON_MAX);
    else
        memcpy(p->reasons[i], tmp, sizeof tmp);
    return i;
}

/* ---- batch kinds ---- */
void tr_do_strings(et_trace_parser *p, const uint8_t *d, const uint8_t *end)
{
    d++; /* EvStrings */
    while (d < end) {
        uint64_t id, len;
        if (*d++ != EV_STRING || uv(&d, end, &id) != 1 || uv(&d, end, &len) != 1 || len > MAX_STRING ||
            len > (uint64_t)(end - d)) {
            p->trunc.malformed++;
            tr_partial(p, "malformed string table in generation %llu", (unsigned long long)p->cur_gen);
            return;
        }
        str_put(p, id, d, (uint32_t)len);
        d += len;
    }
}

void tr_do_stacks(et_trace_parser *p, const uint8_t *d, const uint8_t *end)
{
    if (!p->stk_scanned)
        want_stacks(p);
    p->gen_saw_stacks = 1;
    d++; /* EvStacks */
    while (d < end) {
        uint64_t id, nf;
        if (*d++ != EV_STACK || uv(&d, end, &id) != 1 || uv(&d, end, &nf) != 1 || nf > MAX_WIRE_FRAMES) {
            p->trunc.malformed++;
            tr_partial(p, "malformed stack table in generation %llu", (unsigned long long)p->cur_gen);
            return;
        }
        struct tstk *k = stk_slot(p, id, 0);
        int keep = k && k->state == 1;
        uint32_t kept = 0;
        if (keep) {
            k->off = p->fr_used;
            k->n = 0;
        }
        for (uint64_t f = 0; f < nf; f++) {
            uint64_t pc, fn, file, line;
            if (uv(&d, end, &pc) != 1 || uv(&d, end, &fn) != 1 || uv(&d, end, &file) != 1 || uv(&d, end, &line) != 1) {
                p->trunc.malformed++;
                tr_partial(p, "malformed stack %llu in generation %llu", (unsigned long long)id, (unsigned long long)p->cur_gen);
                if (keep)
                    k->state = 2;
                return;
            }
            if (!keep)
                continue;
            if (kept >= KEEP_FRAMES || p->fr_used >= p->lim.max_frames) {
                p->trunc.frames++;
                continue;
            }
            struct tfr *fr = &p->fr[p->fr_used++];
            fr->func = fn > UINT32_MAX ? 0 : (uint32_t)fn;
            fr->file = file > UINT32_MAX ? 0 : (uint32_t)file;
            fr->line = line > UINT32_MAX ? UINT32_MAX : (uint32_t)line;
            kept++;
        }
        if (keep) {
            k->n = (uint16_t)kept;
            k->state = 2;
        }
    }
}
