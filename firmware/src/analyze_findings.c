/* analyze_findings.c - turns the detectors' verdicts into findings: fingerprints, the
 * bounded findings list, ordering. */
#include "analyze_int.h"
#include "base.h"

#include <string.h>

/* Coarse state class for fingerprints, chosen so that every sampling mode agrees: debug=1
 * cannot tell a channel send from a receive, a select or running code (the runtime frames
 * that would say are not printed), so those are one class; sync primitives, IO, sleeps and
 * syscalls show as library frames in every mode. */
const char *an_state_class(unsigned st)
{
    switch (st) {
    case ET_G_MUTEX:
    case ET_G_RWMUTEX_R:
    case ET_G_RWMUTEX_W:
    case ET_G_COND_WAIT:
    case ET_G_WAITGROUP:
    case ET_G_SEMACQUIRE:
        return "sync";
    case ET_G_IO_WAIT:
        return "io";
    case ET_G_SLEEP:
    case ET_G_TIMER_WAIT:
        return "sleep";
    case ET_G_SYSCALL:
        return "syscall";
    case ET_G_RUNTIME:
        return "runtime";
    default:
        return "chan";
    }
}

/* Hash a function name without generic type arguments ("pkg.F[...]" and "pkg.F[go.shape.int]"
 * print differently across releases and builds). */
static uint64_t hash_func(uint64_t h, const char *f)
{
    int depth = 0;
    for (; *f; f++) {
        if (*f == '[') {
            depth++;
            continue;
        }
        if (*f == ']' && depth > 0) {
            depth--;
            continue;
        }
        if (depth == 0)
            h = et_fnv1a(h, f, 1);
    }
    return et_fnv1a(h, "", 1);
}

/* kind + coarse state class + the site's function, generic arguments stripped. Not the
 * creating function: debug=1 and proto profiles do not carry it, and a fingerprint must not
 * change with the sampling mode (the finding still reports created_by when known). Never
 * files, lines, PCs or offsets. */
void an_fingerprint(et_finding *f, const char *state_cls, const char *func)
{
    uint64_t h = et_fnv1a_str(ET_FNV_INIT, et_finding_kind_name((enum et_finding_kind)f->kind));
    h = et_fnv1a(h, "", 1);
    h = et_fnv1a_str(h, state_cls);
    h = et_fnv1a(h, "", 1);
    h = hash_func(h, func);
    et_hex64(h, f->fingerprint);
}

et_finding *an_push(et_findings *out, const et_finding *f)
{
    if (out->n < ET_MAX_FINDINGS) {
        out->f[out->n] = *f;
        return &out->f[out->n++];
    }
    /* full: replace the least confident if this one beats it */
    uint32_t lo = 0;
    for (uint32_t i = 1; i < out->n; i++)
        if (out->f[i].confidence < out->f[lo].confidence)
            lo = i;
    out->dropped++;
    if (out->f[lo].confidence < f->confidence) {
        out->f[lo] = *f;
        return &out->f[lo];
    }
    return NULL;
}

void an_fill_from_site(et_finding *f, const et_an_site *s)
{
    f->state = s->state;
    f->site = s->user;
    memcpy(f->created_by, s->created_by, ET_FUNC_MAX);
    f->nstack = s->nstack;
    for (int i = 0; i < s->nstack; i++)
        memcpy(f->stack[i], s->stack[i], ET_FUNC_MAX);
}

void et_analyzer_findings(const et_analyzer *a, et_findings *out)
{
    memset(out, 0, sizeof *out);
    const et_an_rec *nr = an_newest(a);
    uint64_t now = nr ? nr->t_ms : 0;

    an_findings_goroutine(a, out, now);
    an_findings_deadlock(a, out, now);
    an_findings_memory(a, out, now);
    an_findings_threads(a, out, now);

    /* most confident first, then most goroutines */
    for (uint32_t i = 1; i < out->n; i++) {
        et_finding tmp = out->f[i];
        uint32_t j = i;
        while (j > 0 && (out->f[j - 1].confidence < tmp.confidence ||
                         (out->f[j - 1].confidence == tmp.confidence && out->f[j - 1].count < tmp.count))) {
            out->f[j] = out->f[j - 1];
            j--;
        }
        out->f[j] = tmp;
    }
}

