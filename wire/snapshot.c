/* snapshot.c - building and encoding snapshots (agent side; also linked by the collector).
 *
 * The CBOR keys below are the schema; wire/FORMAT.md documents each one. Any change to a key,
 * type or unit here must bump ET_SNAP_SCHEMA_VERSION and update snapshot_decode.c + FORMAT.md.
 *
 * Nothing here allocates per snapshot: et_wire_enc_create sizes one block for the zstd
 * context (ZSTD_initStaticCCtx) and the CBOR scratch buffer, and every encode reuses it.
 * This file must not call firmware/src functions (the collector links wire/ without them). */
#define ZSTD_STATIC_LINKING_ONLY
#include "snapshot.h"
#include "snapshot_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#include <tinycbor/cbor.h>
#include <zstd.h>

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Bounded copy that always terminates (wire/ cannot use base.c's et_strlcpy). */
static void copy_str(char *dst, size_t dstsz, const char *src)
{
    size_t n = strnlen(src, dstsz - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* ---- names ------------------------------------------------------------------------------ */
static const char *const state_names[ET_G_STATE_COUNT] = {
    [ET_G_UNKNOWN] = "unknown",
    [ET_G_RUNNING] = "running",
    [ET_G_RUNNABLE] = "runnable",
    [ET_G_SYSCALL] = "syscall",
    [ET_G_IO_WAIT] = "IO wait",
    [ET_G_CHAN_SEND] = "chan send",
    [ET_G_CHAN_RECV] = "chan receive",
    [ET_G_CHAN_SEND_NIL] = "chan send (nil chan)",
    [ET_G_CHAN_RECV_NIL] = "chan receive (nil chan)",
    [ET_G_SELECT] = "select",
    [ET_G_SELECT_NO_CASES] = "select (no cases)",
    [ET_G_MUTEX] = "sync.Mutex.Lock",
    [ET_G_RWMUTEX_R] = "sync.RWMutex.RLock",
    [ET_G_RWMUTEX_W] = "sync.RWMutex.Lock",
    [ET_G_COND_WAIT] = "sync.Cond.Wait",
    [ET_G_WAITGROUP] = "sync.WaitGroup.Wait",
    [ET_G_SEMACQUIRE] = "semacquire",
    [ET_G_SLEEP] = "sleep",
    [ET_G_TIMER_WAIT] = "timer wait",
    [ET_G_RUNTIME] = "runtime",
};

const char *et_snap_state_name(unsigned state)
{
    return state < ET_G_STATE_COUNT && state_names[state] ? state_names[state] : "?";
}

void et_snap_id_hex(const uint8_t id[ET_SNAP_ID_LEN], char out[2 * ET_SNAP_ID_LEN + 1])
{
    static const char hx[] = "0123456789abcdef";
    for (unsigned i = 0; i < ET_SNAP_ID_LEN; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[2 * ET_SNAP_ID_LEN] = 0;
}

void et_snap_uuid_text(const uint8_t b[16], char out[37])
{
    static const char hx[] = "0123456789abcdef";
    size_t o = 0;
    for (unsigned i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hx[b[i] >> 4];
        out[o++] = hx[b[i] & 15];
    }
    out[o] = 0;
}

const char *et_wire_status_name(int status)
{
    switch (status) {
    case ET_WIRE_OK: return "ok";
    case ET_WIRE_EENVELOPE: return "bad envelope";
    case ET_WIRE_ETOOBIG: return "too big";
    case ET_WIRE_EZSTD: return "bad zstd frame";
    case ET_WIRE_EDICT: return "unknown dictionary";
    case ET_WIRE_ECBOR: return "malformed CBOR";
    case ET_WIRE_ESCHEMA: return "schema violation";
    case ET_WIRE_EUNSUPPORTED: return "unsupported";
    case ET_WIRE_ENOMEM: return "out of memory";
    case ET_WIRE_EVERSION: return "unknown version";
    default: return "?";
    }
}

/* ---- building ---------------------------------------------------------------------------- */
void et_snapshot_init(et_snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->schema = ET_SNAP_SCHEMA_MIN;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int et_snapshot_new_id(uint8_t id[ET_SNAP_ID_LEN], const uint8_t boot_id[16], uint64_t seq)
{
    ssize_t got = getrandom(id, ET_SNAP_ID_LEN, GRND_NONBLOCK);
    if (got == (ssize_t)ET_SNAP_ID_LEN)
        return 0;
    /* No entropy yet (early boot on a board without a hardware RNG): boot_id is random per
     * boot and seq is unique within it, so their hash is unique enough for dedup. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint8_t zero[16] = {0};
    const uint8_t *b = boot_id ? boot_id : zero;
    pid_t pid = getpid();
    uint64_t h1 = fnv(0xcbf29ce484222325ULL, b, 16);
    h1 = fnv(h1, &seq, sizeof seq);
    h1 = fnv(h1, &ts, sizeof ts);
    uint64_t h2 = fnv(h1 ^ 0x9e3779b97f4a7c15ULL, &pid, sizeof pid);
    h2 = fnv(h2, b, 16);
    for (unsigned i = 0; i < 8; i++) {
        id[i] = (uint8_t)(h1 >> (8 * i));
        id[8 + i] = (uint8_t)(h2 >> (8 * i));
    }
    return 1;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int et_read_boot_id(const char *path, uint8_t out[16])
{
    char buf[64];
    int fd = open(path ? path : "/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    unsigned nib = 0;
    for (ssize_t i = 0; i < n && nib < 32; i++) {
        if (buf[i] == '-')
            continue;
        int v = hexval((unsigned char)buf[i]);
        if (v < 0)
            break;
        if (nib % 2 == 0)
            out[nib / 2] = (uint8_t)(v << 4);
        else
            out[nib / 2] |= (uint8_t)v;
        nib++;
    }
    return nib == 32 ? 0 : -1;
}

int et_wall_clock_untrusted(int64_t wall_ms)
{
    if (wall_ms < ET_WALL_SANE_FLOOR_MS)
        return 1;
    struct timex tx;
    memset(&tx, 0, sizeof tx);
    int r = adjtimex(&tx);
    /* No adjtimex (e.g. a sandbox) tells us nothing: fall back on the floor alone. */
    if (r < 0)
        return 0;
    return r == TIME_ERROR || (tx.status & STA_UNSYNC) ? 1 : 0;
}

/* Keeps the last two path elements: "/home/ci/src/acme/billing/ingest/worker.go" ->
 * "ingest/worker.go". */
static const char *file_tail(const char *path)
{
    const char *last = strrchr(path, '/');
    if (!last)
        return path;
    const char *p = last;
    while (p > path && p[-1] != '/')
        p--;
    return p > path ? p : path;
}

void et_snapshot_set_sites(et_snapshot *s, const et_gprofile *gp, unsigned top_n)
{
    if (top_n == 0)
        top_n = ET_SNAP_DEFAULT_TOP_N;
    if (top_n > ET_SNAP_MAX_SITES)
        top_n = ET_SNAP_MAX_SITES;
    s->goroutines = gp->header_total > gp->goroutines ? gp->header_total : gp->goroutines;
    uint32_t nsites = gp->nsites > ET_MAX_GSITES ? ET_MAX_GSITES : gp->nsites;
    s->nsites_total = nsites;
    for (unsigned i = 0; i < ET_G_STATE_COUNT; i++)
        s->by_state[i] = gp->by_state[i];
    if (!s->go_version[0])
        copy_str(s->go_version, sizeof s->go_version, gp->go_version);
    s->sites_truncated = gp->trunc.sites;

    /* Selection of the top_n largest counts: O(nsites * top_n) with no scratch memory; ties
     * keep profile order so the output is deterministic. */
    uint8_t taken[(ET_MAX_GSITES + 7) / 8];
    memset(taken, 0, sizeof taken);
    uint64_t listed = 0;
    s->nsites = 0;
    while (s->nsites < top_n) {
        int best = -1;
        for (uint32_t i = 0; i < nsites; i++) {
            if (taken[i / 8] & (1u << (i % 8)))
                continue;
            if (best < 0 || gp->sites[i].count > gp->sites[best].count)
                best = (int)i;
        }
        if (best < 0 || gp->sites[best].count == 0)
            break;
        taken[best / 8] |= (uint8_t)(1u << (best % 8));
        const et_gsite *g = &gp->sites[best];
        et_snap_site *d = &s->sites[s->nsites++];
        memset(d, 0, sizeof *d);
        d->state = g->state < ET_G_STATE_COUNT ? g->state : ET_G_UNKNOWN;
        d->count = g->count;
        d->line = g->user.line;
        d->max_wait_min = g->max_wait_min;
        copy_str(d->func, sizeof d->func, g->user.func);
        copy_str(d->file, sizeof d->file, file_tail(g->user.file));
        copy_str(d->created_by, sizeof d->created_by, g->created_by);
        d->key = et_snap_site_key(d);
        listed += g->count;
    }
    s->goroutines_other = s->goroutines > listed ? s->goroutines - listed : 0;
}

uint32_t et_snap_site_key(const et_snap_site *st)
{
    /* Fields separated by a 0 byte so that ("ab","c") and ("a","bc") differ. */
    static const uint8_t sep = 0;
    uint8_t num[5] = {st->state, (uint8_t)st->line, (uint8_t)(st->line >> 8), (uint8_t)(st->line >> 16),
                      (uint8_t)(st->line >> 24)};
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv(h, num, sizeof num);
    h = fnv(h, st->func, strnlen(st->func, sizeof st->func));
    h = fnv(h, &sep, 1);
    h = fnv(h, st->file, strnlen(st->file, sizeof st->file));
    h = fnv(h, &sep, 1);
    h = fnv(h, st->created_by, strnlen(st->created_by, sizeof st->created_by));
    return (uint32_t)(h ^ (h >> 32));
}

void et_snapshot_apply_memo(et_snapshot *s, et_site_memo *m, unsigned refresh_every)
{
    if (refresh_every == 0)
        refresh_every = 10;
    if (m->since_refresh == 0 || m->since_refresh >= refresh_every) {
        m->n = 0;
        m->since_refresh = 0;
    }
    m->since_refresh++;
    for (uint32_t i = 0; i < s->nsites && i < ET_SNAP_MAX_SITES; i++) {
        et_snap_site *st = &s->sites[i];
        st->ref = 0;
        uint32_t j;
        for (j = 0; j < m->n; j++)
            if (m->keys[j] == st->key)
                break;
        if (j < m->n)
            st->ref = 1;
        else if (m->n < ET_SITE_MEMO_MAX)
            m->keys[m->n++] = st->key; /* a full memo only means more full entries */
    }
}

void et_snapshot_set_memstats(et_snapshot *s, const et_memstats *ms)
{
    memset(&s->mem, 0, sizeof s->mem);
    if (!ms->present)
        return;
    s->mem.present = 1;
    s->mem.heap_alloc = ms->heap_alloc;
    s->mem.heap_inuse = ms->heap_inuse;
    s->mem.heap_idle = ms->heap_idle;
    s->mem.heap_released = ms->heap_released;
    s->mem.heap_sys = ms->heap_sys;
    s->mem.stack_inuse = ms->stack_inuse;
    s->mem.sys = ms->sys;
    s->mem.next_gc = ms->next_gc;
    s->mem.num_gc = ms->num_gc;
}

void et_snapshot_set_proc(et_snapshot *s, const et_procstat *ps)
{
    memset(&s->proc, 0, sizeof s->proc);
    if (!ps->present)
        return;
    s->proc.present = 1;
    s->proc.rss_kb = ps->vm_rss_kb;
    s->proc.threads = ps->threads;
    s->proc.fds = ps->fds;
    s->proc.cpu_ticks = ps->utime_ticks + ps->stime_ticks;
    if (!s->start_ticks)
        s->start_ticks = ps->start_time_ticks;
}

int et_snapshot_add_finding(et_snapshot *s, const et_finding *f)
{
    if (s->nfindings >= ET_SNAP_MAX_FINDINGS) {
        s->findings_dropped++;
        return -1;
    }
    s->findings[s->nfindings++] = *f;
    return 0;
}

int et_snapshot_add_attachment(et_snapshot *s, unsigned kind, unsigned finding_idx, const void *data, size_t len)
{
    if (s->nattach >= ET_SNAP_MAX_ATTACH)
        return -1;
    et_snap_attach *a = &s->attach[s->nattach++];
    int cut = len > ET_SNAP_ATTACH_MAX;
    a->kind = (uint8_t)kind;
    a->finding = (uint8_t)finding_idx;
    a->len = (uint32_t)(cut ? ET_SNAP_ATTACH_MAX : len);
    memcpy(a->data, data, a->len);
    return cut;
}

/* ---- CBOR encoding ------------------------------------------------------------------------ */
/* Every helper returns the accumulated tinycbor error; OutOfMemory is the only one that can
 * happen with valid input (buffer too small). Zero values are omitted: the decoder reads a
 * missing key as zero, and omitting them is most of the size win on a quiet target. */
static CborError put_u(CborEncoder *m, int key, uint64_t v)
{
    if (!v)
        return CborNoError;
    CborError e = cbor_encode_uint(m, (uint64_t)key);
    return e | cbor_encode_uint(m, v);
}

static CborError put_i(CborEncoder *m, int key, int64_t v)
{
    if (!v)
        return CborNoError;
    CborError e = cbor_encode_uint(m, (uint64_t)key);
    return e | cbor_encode_int(m, v);
}

/* Strings are fixed char arrays: bounded by the array even if not terminated. */
static CborError put_s(CborEncoder *m, int key, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap - 1);
    if (!n)
        return CborNoError;
    CborError e = cbor_encode_uint(m, (uint64_t)key);
    return e | cbor_encode_text_string(m, s, n);
}

static CborError put_f(CborEncoder *m, int key, double v)
{
    if (v == 0.0 || v != v)
        return CborNoError;
    CborError e = cbor_encode_uint(m, (uint64_t)key);
    /* float32: a growth rate or a wait in seconds needs 7 digits at most */
    return e | cbor_encode_float(m, (float)v);
}

static CborError put_b(CborEncoder *m, int key, const uint8_t *b, size_t n)
{
    CborError e = cbor_encode_uint(m, (uint64_t)key);
    return e | cbor_encode_byte_string(m, b, n);
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static CborError enc_site(CborEncoder *arr, const et_snap_site *st)
{
    CborEncoder a;
    CborError e;
    if (st->ref) {
        e = cbor_encoder_create_array(arr, &a, 3);
        e |= cbor_encode_uint(&a, st->key);
        e |= cbor_encode_uint(&a, st->count);
        e |= cbor_encode_uint(&a, st->max_wait_min);
        return e | cbor_encoder_close_container(arr, &a);
    }
    e = cbor_encoder_create_array(arr, &a, 7);
    e |= cbor_encode_uint(&a, st->state);
    e |= cbor_encode_uint(&a, st->count);
    e |= cbor_encode_text_string(&a, st->func, strnlen(st->func, sizeof st->func - 1));
    e |= cbor_encode_text_string(&a, st->file, strnlen(st->file, sizeof st->file - 1));
    e |= cbor_encode_uint(&a, st->line);
    e |= cbor_encode_uint(&a, st->max_wait_min);
    e |= cbor_encode_text_string(&a, st->created_by, strnlen(st->created_by, sizeof st->created_by - 1));
    return e | cbor_encoder_close_container(arr, &a);
}

/* The survivor evidence or the no-site reason (schema 2) a finding carries, if any. */
int et_finding_needs_v2(const et_finding *f)
{
    return (f->evidence >> ET_EVIDENCE_COUNT_V1) != 0 || f->survivors || f->survivors_of || f->oldest_id || f->no_site ||
           f->wait_hist[0] || f->wait_hist[1] || f->wait_hist[2] || f->wait_hist[3];
}

static CborError enc_finding(CborEncoder *arr, const et_finding *f, int v2)
{
    CborEncoder m;
    CborError e = cbor_encoder_create_map(arr, &m, CborIndefiniteLength);
    /* kind 0 (goroutine-leak) is meaningful: always written */
    e |= cbor_encode_uint(&m, ETK_F_KIND);
    e |= cbor_encode_uint(&m, f->kind);
    e |= put_u(&m, ETK_F_CONFIDENCE, f->confidence);
    /* a schema 1 collector knows evidence bits 0-8 only */
    e |= put_u(&m, ETK_F_EVIDENCE, v2 ? f->evidence : f->evidence & ((1u << ET_EVIDENCE_COUNT_V1) - 1));
    e |= put_s(&m, ETK_F_FINGERPRINT, f->fingerprint, sizeof f->fingerprint);
    e |= put_s(&m, ETK_F_FUNC, f->site.func, sizeof f->site.func);
    e |= put_s(&m, ETK_F_FILE, f->site.file, sizeof f->site.file);
    e |= put_u(&m, ETK_F_LINE, f->site.line);
    e |= put_u(&m, ETK_F_STATE, f->state);
    e |= put_u(&m, ETK_F_COUNT, f->count);
    e |= put_f(&m, ETK_F_GROWTH, f->growth_per_min);
    e |= put_f(&m, ETK_F_OLDEST_WAIT, f->oldest_wait_s);
    e |= put_u(&m, ETK_F_VALUE, f->value);
    e |= put_s(&m, ETK_F_CREATED_BY, f->created_by, sizeof f->created_by);
    unsigned ns = f->nstack > ET_STACK_MAX ? ET_STACK_MAX : f->nstack;
    if (ns) {
        CborEncoder st;
        e |= cbor_encode_uint(&m, ETK_F_STACK);
        e |= cbor_encoder_create_array(&m, &st, ns);
        for (unsigned i = 0; i < ns; i++)
            e |= cbor_encode_text_string(&st, f->stack[i], strnlen(f->stack[i], ET_FUNC_MAX - 1));
        e |= cbor_encoder_close_container(&m, &st);
    }
    e |= put_u(&m, ETK_F_FIRST_SEEN, f->first_seen_ms);
    e |= put_u(&m, ETK_F_LAST_SEEN, f->last_seen_ms);
    if (v2) {
        e |= put_u(&m, ETK_F_SURVIVORS, f->survivors);
        e |= put_u(&m, ETK_F_SURVIVORS_OF, f->survivors_of);
        e |= put_u(&m, ETK_F_OLDEST_ID, f->oldest_id);
        e |= put_u(&m, ETK_F_NO_SITE, f->no_site);
        if (f->wait_hist[0] || f->wait_hist[1] || f->wait_hist[2] || f->wait_hist[3]) {
            CborEncoder h;
            e |= cbor_encode_uint(&m, ETK_F_WAIT_HIST);
            e |= cbor_encoder_create_array(&m, &h, ET_WAIT_BUCKETS);
            for (unsigned i = 0; i < ET_WAIT_BUCKETS; i++)
                e |= cbor_encode_uint(&h, f->wait_hist[i]);
            e |= cbor_encoder_close_container(&m, &h);
        }
    }
    return e | cbor_encoder_close_container(arr, &m);
}

/* Maps are written with indefinite length (one 0xff byte at the end) so that zero fields can
 * be skipped without counting them first; the decoder accepts both forms. */
int et_snapshot_encode_cbor(const et_snapshot *s, uint8_t *buf, size_t cap, size_t *out_len, char *err,
                            size_t errlen)
{
    CborEncoder root, m, sub;
    CborError e = CborNoError;
    /* The collector rejects these; failing here points at the agent code that forgot them. */
    if (!s->device_id[0] || !s->service[0] || all_zero(s->id, ET_SNAP_ID_LEN)) {
        seterr(err, errlen, "snapshot without %s", !s->device_id[0] ? "device_id" : !s->service[0] ? "service" : "id");
        return -1;
    }
    cbor_encoder_init(&root, buf, cap, 0);
    e |= cbor_encoder_create_map(&root, &m, CborIndefiniteLength);
    e |= cbor_encode_uint(&m, ETK_SCHEMA);
    e |= cbor_encode_uint(&m, s->schema ? s->schema : ET_SNAP_SCHEMA_MIN);
    e |= put_b(&m, ETK_ID, s->id, ET_SNAP_ID_LEN);
    e |= cbor_encode_uint(&m, ETK_DEVICE_ID);
    e |= cbor_encode_text_string(&m, s->device_id, strnlen(s->device_id, sizeof s->device_id - 1));
    e |= put_s(&m, ETK_BOARD, s->board, sizeof s->board);
    e |= put_s(&m, ETK_AGENT_VERSION, s->agent_version, sizeof s->agent_version);
    e |= cbor_encode_uint(&m, ETK_SEQ);
    e |= cbor_encode_uint(&m, s->seq);
    if (!all_zero(s->boot_id, 16))
        e |= put_b(&m, ETK_BOOT_ID, s->boot_id, 16);
    e |= put_u(&m, ETK_FLAGS, s->flags);
    e |= put_u(&m, ETK_MONO_MS, s->mono_ms);
    e |= put_i(&m, ETK_WALL_MS, s->wall_ms);

    /* target */
    e |= cbor_encode_uint(&m, ETK_TARGET);
    e |= cbor_encoder_create_map(&m, &sub, CborIndefiniteLength);
    e |= put_s(&sub, ETK_T_SERVICE, s->service, sizeof s->service);
    e |= put_s(&sub, ETK_T_NAMESPACE, s->pod_namespace, sizeof s->pod_namespace);
    e |= put_s(&sub, ETK_T_POD, s->pod_name, sizeof s->pod_name);
    e |= put_s(&sub, ETK_T_CONTAINER, s->container, sizeof s->container);
    e |= put_u(&sub, ETK_T_PID, s->pid);
    e |= put_u(&sub, ETK_T_START_TICKS, s->start_ticks);
    e |= put_s(&sub, ETK_T_GO_VERSION, s->go_version, sizeof s->go_version);
    e |= put_s(&sub, ETK_T_URL, s->url, sizeof s->url);
    e |= cbor_encoder_close_container(&m, &sub);

    /* goroutines */
    unsigned nsites = s->nsites > ET_SNAP_MAX_SITES ? ET_SNAP_MAX_SITES : s->nsites;
    int any_state = 0;
    for (unsigned i = 0; i < ET_G_STATE_COUNT; i++)
        any_state |= s->by_state[i] != 0;
    if (s->goroutines || s->nsites_total || s->goroutines_other || nsites || any_state) {
        e |= cbor_encode_uint(&m, ETK_GOROUTINES);
        e |= cbor_encoder_create_map(&m, &sub, CborIndefiniteLength);
        e |= put_u(&sub, ETK_G_TOTAL, s->goroutines);
        e |= put_u(&sub, ETK_G_NSITES_TOTAL, s->nsites_total);
        e |= put_u(&sub, ETK_G_OTHER, s->goroutines_other);
        if (any_state) {
            CborEncoder bs;
            e |= cbor_encode_uint(&sub, ETK_G_BY_STATE);
            e |= cbor_encoder_create_map(&sub, &bs, CborIndefiniteLength);
            for (unsigned i = 0; i < ET_G_STATE_COUNT; i++)
                e |= put_u(&bs, (int)i, s->by_state[i]);
            e |= cbor_encoder_close_container(&sub, &bs);
        }
        if (nsites) {
            CborEncoder arr;
            e |= cbor_encode_uint(&sub, ETK_G_SITES);
            e |= cbor_encoder_create_array(&sub, &arr, nsites);
            for (unsigned i = 0; i < nsites; i++)
                e |= enc_site(&arr, &s->sites[i]);
            e |= cbor_encoder_close_container(&sub, &arr);
        }
        e |= cbor_encoder_close_container(&m, &sub);
    }

    if (s->mem.present) {
        e |= cbor_encode_uint(&m, ETK_MEM);
        e |= cbor_encoder_create_map(&m, &sub, CborIndefiniteLength);
        e |= put_u(&sub, ETK_M_HEAP_ALLOC, s->mem.heap_alloc);
        e |= put_u(&sub, ETK_M_HEAP_INUSE, s->mem.heap_inuse);
        e |= put_u(&sub, ETK_M_HEAP_IDLE, s->mem.heap_idle);
        e |= put_u(&sub, ETK_M_HEAP_RELEASED, s->mem.heap_released);
        e |= put_u(&sub, ETK_M_HEAP_SYS, s->mem.heap_sys);
        e |= put_u(&sub, ETK_M_STACK_INUSE, s->mem.stack_inuse);
        e |= put_u(&sub, ETK_M_SYS, s->mem.sys);
        e |= put_u(&sub, ETK_M_NUM_GC, s->mem.num_gc);
        e |= put_u(&sub, ETK_M_NEXT_GC, s->mem.next_gc);
        e |= cbor_encoder_close_container(&m, &sub);
    }
    if (s->proc.present) {
        e |= cbor_encode_uint(&m, ETK_PROC);
        e |= cbor_encoder_create_map(&m, &sub, CborIndefiniteLength);
        e |= put_u(&sub, ETK_P_RSS_KB, s->proc.rss_kb);
        e |= put_u(&sub, ETK_P_THREADS, s->proc.threads);
        e |= put_u(&sub, ETK_P_FDS, s->proc.fds);
        e |= put_u(&sub, ETK_P_CPU_TICKS, s->proc.cpu_ticks);
        e |= cbor_encoder_close_container(&m, &sub);
    }

    unsigned nf = s->nfindings > ET_SNAP_MAX_FINDINGS ? ET_SNAP_MAX_FINDINGS : s->nfindings;
    if (nf) {
        CborEncoder arr;
        e |= cbor_encode_uint(&m, ETK_FINDINGS);
        e |= cbor_encoder_create_array(&m, &arr, nf);
        for (unsigned i = 0; i < nf; i++)
            e |= enc_finding(&arr, &s->findings[i], s->schema >= 2);
        e |= cbor_encoder_close_container(&m, &arr);
    }

    /* schema 2 fields only in a schema 2 snapshot: a schema 1 collector rejects unknown keys */
    int v2 = s->schema >= 2;
    if (s->spool_routine_dropped || s->spool_findings_dropped || s->spool_corrupt_dropped ||
        s->spool_bytes_today || s->findings_dropped || s->sites_truncated ||
        (v2 && (s->uplink_held || s->uplink_rejected || s->uplink_held_now))) {
        e |= cbor_encode_uint(&m, ETK_COUNTERS);
        e |= cbor_encoder_create_map(&m, &sub, CborIndefiniteLength);
        e |= put_u(&sub, ETK_C_SPOOL_ROUTINE_DROPPED, s->spool_routine_dropped);
        e |= put_u(&sub, ETK_C_SPOOL_FINDINGS_DROPPED, s->spool_findings_dropped);
        e |= put_u(&sub, ETK_C_SPOOL_CORRUPT_DROPPED, s->spool_corrupt_dropped);
        e |= put_u(&sub, ETK_C_SPOOL_BYTES_TODAY, s->spool_bytes_today);
        e |= put_u(&sub, ETK_C_FINDINGS_DROPPED, s->findings_dropped);
        e |= put_u(&sub, ETK_C_SITES_TRUNCATED, s->sites_truncated);
        if (v2) {
            e |= put_u(&sub, ETK_C_UPLINK_HELD, s->uplink_held);
            e |= put_u(&sub, ETK_C_UPLINK_REJECTED, s->uplink_rejected);
            e |= put_u(&sub, ETK_C_UPLINK_HELD_NOW, s->uplink_held_now);
        }
        e |= cbor_encoder_close_container(&m, &sub);
    }
    if (s->cost_bytes || s->cost_ms) {
        e |= cbor_encode_uint(&m, ETK_COST);
        e |= cbor_encoder_create_map(&m, &sub, CborIndefiniteLength);
        e |= put_u(&sub, ETK_K_BYTES, s->cost_bytes);
        e |= put_u(&sub, ETK_K_MS, s->cost_ms);
        e |= cbor_encoder_close_container(&m, &sub);
    }
    if (s->schema >= 3 && (s->set_fleet || s->set_device || s->set_rej_fleet || s->set_rej_device)) {
        e |= cbor_encode_uint(&m, ETK_SETTINGS);
        e |= cbor_encoder_create_map(&m, &sub, CborIndefiniteLength);
        e |= put_u(&sub, ETK_S_FLEET, s->set_fleet);
        e |= put_u(&sub, ETK_S_DEVICE, s->set_device);
        e |= put_u(&sub, ETK_S_REJ_FLEET, s->set_rej_fleet);
        e |= put_u(&sub, ETK_S_REJ_DEVICE, s->set_rej_device);
        if (s->set_reason[0]) {
            e |= cbor_encode_uint(&sub, ETK_S_REASON);
            e |= cbor_encode_text_string(&sub, s->set_reason, strnlen(s->set_reason, sizeof s->set_reason - 1));
        }
        e |= cbor_encoder_close_container(&m, &sub);
    }
    unsigned na = s->nattach > ET_SNAP_MAX_ATTACH ? ET_SNAP_MAX_ATTACH : s->nattach;
    if (na) {
        CborEncoder arr, a;
        e |= cbor_encode_uint(&m, ETK_ATTACH);
        e |= cbor_encoder_create_array(&m, &arr, na);
        for (unsigned i = 0; i < na; i++) {
            const et_snap_attach *at = &s->attach[i];
            uint32_t len = at->len > ET_SNAP_ATTACH_MAX ? ET_SNAP_ATTACH_MAX : at->len;
            e |= cbor_encoder_create_array(&arr, &a, 3);
            e |= cbor_encode_uint(&a, at->kind);
            e |= cbor_encode_uint(&a, at->finding);
            e |= cbor_encode_byte_string(&a, at->data, len);
            e |= cbor_encoder_close_container(&arr, &a);
        }
        e |= cbor_encoder_close_container(&m, &arr);
    }
    e |= cbor_encoder_close_container(&root, &m);
    if (e != CborNoError) {
        seterr(err, errlen, "snapshot CBOR encoding failed: %s%s", cbor_error_string(e),
               (e & CborErrorOutOfMemory) ? " (buffer too small)" : "");
        return -1;
    }
    *out_len = cbor_encoder_get_buffer_size(&root, buf);
    return 0;
}

/* ---- envelope + zstd -------------------------------------------------------------------- */
struct et_wire_enc {
    ZSTD_CCtx *cctx;        /* static context inside block */
    const ZSTD_CDict *cdict;
    uint32_t dict_id;
    int raw;
    size_t total;           /* bytes of the block */
    uint8_t *cbor;          /* ET_SNAP_CBOR_MAX scratch inside block */
    void *block;            /* the one allocation */
};

#define ET_WIRE_MAX_WLOG 17

static size_t align16(size_t n) { return (n + 15u) & ~(size_t)15u; }

et_wire_enc *et_wire_enc_create(const et_wire_params *p, char *err, size_t errlen)
{
    et_wire_params dflt;
    memset(&dflt, 0, sizeof dflt);
    if (!p)
        p = &dflt;
    int level = p->level ? p->level : 3;
    /* 2^15: every routine snapshot (0.5-5 KB) fits the window many times over; only the rare
     * snapshot with many findings and attachments (up to 80 KB) would gain from more, and the
     * workspace grows with the window (2^15: ~190 KB, 2^17: ~550 KB). */
    int wlog = p->window_log ? p->window_log : 15;
    if (wlog > ET_WIRE_MAX_WLOG)
        wlog = ET_WIRE_MAX_WLOG;
    if (wlog < ZSTD_WINDOWLOG_MIN)
        wlog = ZSTD_WINDOWLOG_MIN;
    if (level < 1 || level > 19) {
        seterr(err, errlen, "zstd level %d out of range 1..19", level);
        return NULL;
    }

    /* Compression parameters for the largest snapshot, window capped: the workspace sized
     * from them covers every smaller input. */
    ZSTD_compressionParameters cp = ZSTD_getCParams(level, ET_SNAP_CBOR_MAX, p->dict ? p->dict_len : 0);
    cp.windowLog = (unsigned)wlog;
    /* Match-finder tables of 2^13 entries: inputs are a few KB, bigger tables only cost RAM. */
    if (cp.chainLog > 13)
        cp.chainLog = 13;
    if (cp.hashLog > 13)
        cp.hashLog = 13;
    cp = ZSTD_adjustCParams(cp, ET_SNAP_CBOR_MAX, p->dict ? p->dict_len : 0);

    ZSTD_CCtx_params *cpp = ZSTD_createCCtxParams();
    if (!cpp) {
        seterr(err, errlen, "out of memory");
        return NULL;
    }
    ZSTD_CCtxParams_init(cpp, level);
    ZSTD_CCtxParams_setParameter(cpp, ZSTD_c_windowLog, (int)cp.windowLog);
    ZSTD_CCtxParams_setParameter(cpp, ZSTD_c_hashLog, (int)cp.hashLog);
    ZSTD_CCtxParams_setParameter(cpp, ZSTD_c_chainLog, (int)cp.chainLog);
    ZSTD_CCtxParams_setParameter(cpp, ZSTD_c_searchLog, (int)cp.searchLog);
    ZSTD_CCtxParams_setParameter(cpp, ZSTD_c_minMatch, (int)cp.minMatch);
    ZSTD_CCtxParams_setParameter(cpp, ZSTD_c_strategy, (int)cp.strategy);
    size_t cctx_size = ZSTD_estimateCCtxSize_usingCCtxParams(cpp);
    ZSTD_freeCCtxParams(cpp);
    size_t cdict_size = p->dict ? ZSTD_estimateCDictSize_advanced(p->dict_len, cp, ZSTD_dlm_byRef) : 0;
    /* A CDict attached to the context may need room for its tables to be copied. */
    if (p->dict)
        cctx_size += cdict_size;
    if (ZSTD_isError(cctx_size) || ZSTD_isError(cdict_size)) {
        seterr(err, errlen, "zstd size estimate failed");
        return NULL;
    }

    size_t total = align16(sizeof(et_wire_enc)) + align16(ET_SNAP_CBOR_MAX) + align16(cctx_size) +
                   align16(cdict_size);
    uint8_t *block = malloc(total);
    if (!block) {
        seterr(err, errlen, "out of memory (%zu bytes)", total);
        return NULL;
    }
    et_wire_enc *e = (et_wire_enc *)(void *)block;
    memset(e, 0, sizeof *e);
    e->block = block;
    e->total = total;
    e->raw = p->raw;
    size_t off = align16(sizeof(et_wire_enc));
    e->cbor = block + off;
    off += align16(ET_SNAP_CBOR_MAX);
    e->cctx = ZSTD_initStaticCCtx(block + off, align16(cctx_size));
    off += align16(cctx_size);
    if (!e->cctx) {
        seterr(err, errlen, "ZSTD_initStaticCCtx failed");
        free(block);
        return NULL;
    }
    size_t r = 0;
    r |= ZSTD_isError(ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_compressionLevel, level));
    r |= ZSTD_isError(ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_windowLog, (int)cp.windowLog));
    r |= ZSTD_isError(ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_hashLog, (int)cp.hashLog));
    r |= ZSTD_isError(ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_chainLog, (int)cp.chainLog));
    /* Integrity is covered by the spool CRC and DTLS; 4 checksum bytes would be 0.4% of a
     * 1 KB snapshot for nothing. The content size lets the collector bound its buffer. */
    r |= ZSTD_isError(ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_checksumFlag, 0));
    r |= ZSTD_isError(ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_contentSizeFlag, 1));
    r |= ZSTD_isError(ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_dictIDFlag, 1));
    if (p->dict) {
        e->cdict = ZSTD_initStaticCDict(block + off, align16(cdict_size), p->dict, p->dict_len, ZSTD_dlm_byRef,
                                        ZSTD_dct_auto, cp);
        if (!e->cdict) {
            seterr(err, errlen, "zstd dictionary rejected (ZSTD_initStaticCDict)");
            free(block);
            return NULL;
        }
        e->dict_id = ZSTD_getDictID_fromCDict(e->cdict);
        r |= ZSTD_isError(ZSTD_CCtx_refCDict(e->cctx, e->cdict));
    }
    if (r) {
        seterr(err, errlen, "zstd parameter rejected");
        free(block);
        return NULL;
    }
    return e;
}

void et_wire_enc_free(et_wire_enc *e)
{
    if (e)
        free(e->block);
}

uint32_t et_wire_enc_dict_id(const et_wire_enc *e) { return e ? e->dict_id : 0; }

size_t et_wire_enc_memory(const et_wire_enc *e) { return e ? e->total : 0; }

int et_wire_encode(et_wire_enc *e, const et_snapshot *s, uint8_t *out, size_t cap, size_t *out_len, char *err,
                   size_t errlen)
{
    size_t clen = 0;
    if (cap < ET_WIRE_HDR_LEN + 16) {
        seterr(err, errlen, "output buffer too small");
        return -1;
    }
    if (et_snapshot_encode_cbor(s, e->cbor, ET_SNAP_CBOR_MAX, &clen, err, errlen) != 0)
        return -1;
    out[0] = ET_WIRE_MAGIC0;
    out[1] = ET_WIRE_MAGIC1;
    out[2] = ET_WIRE_VERSION;
    if (e->raw) {
        if (clen > cap - ET_WIRE_HDR_LEN) {
            seterr(err, errlen, "output buffer too small (%zu bytes of CBOR)", clen);
            return -1;
        }
        out[3] = 0;
        memcpy(out + ET_WIRE_HDR_LEN, e->cbor, clen);
        *out_len = ET_WIRE_HDR_LEN + clen;
        return 0;
    }
    out[3] = (uint8_t)(ET_WIRE_F_ZSTD | (e->cdict ? ET_WIRE_F_DICT : 0));
    size_t z = ZSTD_compress2(e->cctx, out + ET_WIRE_HDR_LEN, cap - ET_WIRE_HDR_LEN, e->cbor, clen);
    if (ZSTD_isError(z)) {
        seterr(err, errlen, "zstd compression failed: %s", ZSTD_getErrorName(z));
        return -1;
    }
    /* A small steady-state snapshot (ids, counts) may not compress: then the frame header
     * is pure overhead and the raw CBOR goes out instead. */
    if (z >= clen && clen <= cap - ET_WIRE_HDR_LEN) {
        out[3] = 0;
        memcpy(out + ET_WIRE_HDR_LEN, e->cbor, clen);
        z = clen;
    }
    *out_len = ET_WIRE_HDR_LEN + z;
    return 0;
}
