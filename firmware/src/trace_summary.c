/* trace_summary.c - the execution-trace reader's result: goroutines still alive grouped by
 * (creator, entry, block site, reason, state), totals and truncation counters; and the
 * names of wire events and goroutine states. */
#include "trace_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ev_names[64] = {
    [1] = "EventBatch", [2] = "Stacks", [3] = "Stack", [4] = "Strings", [5] = "String",
    [6] = "CPUSamples", [7] = "CPUSample", [8] = "Frequency", [9] = "ProcsChange",
    [10] = "ProcStart", [11] = "ProcStop", [12] = "ProcSteal", [13] = "ProcStatus",
    [14] = "GoCreate", [15] = "GoCreateSyscall", [16] = "GoStart", [17] = "GoDestroy",
    [18] = "GoDestroySyscall", [19] = "GoStop", [20] = "GoBlock", [21] = "GoUnblock",
    [22] = "GoSyscallBegin", [23] = "GoSyscallEnd", [24] = "GoSyscallEndBlocked",
    [25] = "GoStatus", [26] = "STWBegin", [27] = "STWEnd", [28] = "GCActive", [29] = "GCBegin",
    [30] = "GCEnd", [31] = "GCSweepActive", [32] = "GCSweepBegin", [33] = "GCSweepEnd",
    [34] = "GCMarkAssistActive", [35] = "GCMarkAssistBegin", [36] = "GCMarkAssistEnd",
    [37] = "HeapAlloc", [38] = "HeapGoal", [39] = "GoLabel", [40] = "UserTaskBegin",
    [41] = "UserTaskEnd", [42] = "UserRegionBegin", [43] = "UserRegionEnd", [44] = "UserLog",
    [45] = "GoSwitch", [46] = "GoSwitchDestroy", [47] = "GoCreateBlocked",
    [48] = "GoStatusStack", [49] = "ExperimentalBatch", [50] = "Sync", [51] = "ClockSnapshot",
    [52] = "EndOfGeneration",
};

const char *et_trace_event_name(unsigned typ)
{
    return typ < 64 && ev_names[typ] ? ev_names[typ] : "?";
}

const char *et_tg_state_name(unsigned s)
{
    static const char *const n[] = {"NotExist", "Runnable", "Running", "Waiting", "Syscall"};
    return s < ET_TG_STATE_COUNT ? n[s] : "Bad";
}

/* ---- summary ---- */
static uint8_t norm_state(et_trace_parser *p, const struct tg *g)
{
    switch (g->state) {
    case ET_TG_RUNNING: return ET_G_RUNNING;
    case ET_TG_RUNNABLE: return ET_G_RUNNABLE;
    case ET_TG_SYSCALL: return ET_G_SYSCALL;
    default: break;
    }
    const char *r = p->reasons[g->reason < p->nreasons ? g->reason : 0];
    uint8_t hint = g->block_site < p->nsites ? p->site[g->block_site].hint : 0;
    if (!strcmp(r, "chan receive")) return ET_G_CHAN_RECV;
    if (!strcmp(r, "chan send")) return ET_G_CHAN_SEND;
    if (!strcmp(r, "select")) return ET_G_SELECT;
    if (!strcmp(r, "sync.(*Cond).Wait")) return ET_G_COND_WAIT;
    if (!strcmp(r, "sleep")) return ET_G_SLEEP;
    if (!strcmp(r, "network")) return ET_G_IO_WAIT;
    if (!strcmp(r, "forever"))
        return hint == ET_G_CHAN_RECV ? ET_G_CHAN_RECV_NIL : hint == ET_G_CHAN_SEND ? ET_G_CHAN_SEND_NIL : ET_G_SELECT_NO_CASES;
    if (!strcmp(r, "sync")) {
        if (hint == ET_G_MUTEX || hint == ET_G_RWMUTEX_R || hint == ET_G_RWMUTEX_W || hint == ET_G_WAITGROUP)
            return hint;
        return ET_G_SEMACQUIRE;
    }
    if (!strcmp(r, "system goroutine wait") || !strncmp(r, "GC ", 3) || !strcmp(r, "wait until GC ends") ||
        !strcmp(r, "wait for debug call"))
        return ET_G_RUNTIME;
    if (hint)
        return hint;
    if (g->block_site > 1 && p->site[g->block_site].stdlib_only &&
        tr_is_runtime_func(p->site[g->block_site].top, (uint32_t)strlen(p->site[g->block_site].top)))
        return ET_G_RUNTIME;
    return ET_G_UNKNOWN;
}

static int group_cmp(const void *a, const void *b)
{
    const et_trace_group *x = a, *y = b;
    int wx = x->go_state == ET_TG_WAITING, wy = y->go_state == ET_TG_WAITING;
    if (wx != wy)
        return wy - wx;
    if (x->overflow != y->overflow)
        return x->overflow - y->overflow;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    if (x->oldest_ns != y->oldest_ns)
        return x->oldest_ns < y->oldest_ns ? 1 : -1;
    return x->key < y->key ? -1 : x->key > y->key;
}

int et_trace_parser_finish(et_trace_parser *p, et_trace_summary *out)
{
    memset(out, 0, sizeof *out);
    if (p->hdr_len == 0 && !p->dead)
        tr_die(p, ET_TRACE_ERR_FORMAT, "empty input");
    else if (p->hdr_len < 16 && !p->dead)
        tr_die(p, ET_TRACE_ERR_FORMAT, "truncated trace header");
    if (p->pend_len && !p->dead)
        tr_partial(p, "trace truncated inside a batch (%u of %u bytes)", p->pend_len, p->pend_total ? p->pend_total : p->pend_len);
    if (p->gen_open) {
        if (p->ver >= 26 && !p->dead)
            tr_partial(p, "incomplete generation %llu: no end-of-generation marker (trace likely truncated)",
                    (unsigned long long)p->cur_gen);
        tr_gen_end(p);
    }
    uint64_t end = p->end_ns;
    /* Per-goroutine view and the groups. Groups are keyed by indices (sites and reasons are
     * interned by name, so equal indices mean equal names). */
    uint32_t gk[ET_TRACE_MAX_GROUPS][5];
    for (uint32_t i = 0; i < p->g_hw; i++) {
        struct tg *g = &p->g[i];
        if (!(g->flags & GF_USED))
            continue;
        tr_emit_goroutine(p, g);
        out->goroutines.seen++;
        if (g->flags & GF_CREATED)
            out->goroutines.created++;
        switch (g->state) {
        case ET_TG_WAITING: out->goroutines.waiting++; break;
        case ET_TG_RUNNABLE: out->goroutines.runnable++; break;
        case ET_TG_RUNNING: out->goroutines.running++; break;
        case ET_TG_SYSCALL: out->goroutines.syscall++; break;
        default: out->goroutines.ended++; continue; /* ended but not retired (no generation end) */
        }
        int blockish = g->state == ET_TG_WAITING || g->state == ET_TG_SYSCALL;
        uint32_t key[5] = {
            (g->flags & GF_CREATED) ? g->create_site : 0,
            (g->flags & GF_CREATED) ? g->start_site : 0,
            blockish ? g->block_site : 0,
            g->state == ET_TG_WAITING ? g->reason : 0,
            g->state,
        };
        uint64_t since = (g->flags & GF_BEFORE) ? p->start_ns : g->since;
        uint64_t age = end > since ? end - since : 0;
        et_trace_group *gr = NULL;
        for (uint32_t j = 0; j < out->ngroups; j++)
            if (!memcmp(gk[j], key, sizeof key) && !out->groups[j].overflow) {
                gr = &out->groups[j];
                break;
            }
        if (!gr) {
            if (out->ngroups < ET_TRACE_MAX_GROUPS - 1) {
                uint32_t j = out->ngroups++;
                memcpy(gk[j], key, sizeof key);
                gr = &out->groups[j];
                const struct tsite *cs = &p->site[key[0] < p->nsites ? key[0] : 0];
                const struct tsite *ss = &p->site[key[1] < p->nsites ? key[1] : 0];
                const struct tsite *bs = &p->site[key[2] < p->nsites ? key[2] : 0];
                et_strlcpy(gr->created_by, cs->top, sizeof gr->created_by);
                et_strlcpy(gr->start_func, ss->top, sizeof gr->start_func);
                gr->block = bs->user;
                et_strlcpy(gr->block_func, bs->top, sizeof gr->block_func);
                gr->stdlib_only = key[2] > 1 ? bs->stdlib_only : 0;
                et_strlcpy(gr->reason, p->reasons[key[3] < p->nreasons ? key[3] : 0], sizeof gr->reason);
                gr->go_state = g->state;
                gr->state = norm_state(p, g);
                uint64_t h = et_fnv1a_str(ET_FNV_INIT, gr->created_by);
                h = et_fnv1a_str(h, gr->start_func);
                h = et_fnv1a_str(h, gr->block.func);
                h = et_fnv1a_str(h, gr->block.file);
                h = et_fnv1a(h, &gr->block.line, sizeof gr->block.line);
                h = et_fnv1a_str(h, gr->reason);
                h = et_fnv1a(h, &gr->go_state, 1);
                gr->key = h;
            } else {
                p->trunc.groups++;
                if (out->ngroups == ET_TRACE_MAX_GROUPS - 1) {
                    uint32_t j = out->ngroups++;
                    memset(gk[j], 0xff, sizeof gk[j]);
                    out->groups[j].overflow = 1;
                    et_strlcpy(out->groups[j].block_func, "(groups overflow)", ET_FUNC_MAX);
                    out->groups[j].go_state = ET_TG_WAITING;
                }
                gr = &out->groups[ET_TRACE_MAX_GROUPS - 1];
            }
        }
        gr->count++;
        if (g->flags & GF_CREATED)
            gr->created_in_window++;
        if (g->flags & GF_BEFORE)
            gr->blocked_before_window += g->state == ET_TG_WAITING;
        if (age > gr->oldest_ns)
            gr->oldest_ns = age;
    }
    qsort(out->groups, out->ngroups, sizeof out->groups[0], group_cmp);
    out->goroutines.seen += p->retired;
    out->goroutines.created += p->retired_created;
    out->goroutines.ended += p->retired;
    if (p->trunc.goroutines || p->trunc.threads || p->trunc.strings || p->trunc.stacks || p->trunc.sites ||
        p->trunc.malformed || p->trunc.orphan_events)
        tr_partial(p, "caps hit or malformed input: see trunc counters");
    out->status = p->status;
    out->go_minor = (uint8_t)p->ver;
    et_strlcpy(out->error, p->error, sizeof out->error);
    out->generations = p->generations;
    out->bytes = p->dead ? p->bytes : p->bytes + p->pend_len; /* staged bytes of a cut batch count */
    out->batches = p->batches;
    out->events = p->events;
    memcpy(out->event_counts, p->evcount, sizeof out->event_counts);
    out->transitions = p->transitions;
    out->start_ns = p->start_ns;
    out->end_ns = p->end_ns;
    out->window_ns = p->end_ns > p->start_ns ? p->end_ns - p->start_ns : 0;
    out->trunc = p->trunc;
    return out->status;
}
