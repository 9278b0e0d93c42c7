/* agent.c - `edgetrace-agent run`: the daemon. Wires every stage onto one event loop:
 *
 *   discover (every 60 s) -> sample/parse/analyze (per target timers, sample.c)
 *     -> snapshot (wire/) -> spool (flash) -> uplink (CoAP/DTLS) -> collector
 *
 * One thread. The loop owns the sockets of the local fetches, libcoap's epoll fd, the
 * timers and a signalfd for SIGTERM/SIGINT/SIGHUP. A snapshot is in the spool before the
 * uplink ever sees it, and leaves the spool only on the collector's acknowledgement. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base.h"
#include "config.h"
#include "discover.h"
#include "finding.h"
#include "httpc.h"
#include "loop.h"
#include "parse_proc.h"
#include "sample.h"
#include "snapshot.h"
#include "spool.h"
#include "uplink.h"
#include "capture_run.h"
#include "settings_apply.h"
#include "uplink_creds.h"

#define DISCOVER_PERIOD_MS 60000u
#define SPOOL_TICK_MS 1000u
/* The /proc scan runs SCAN_BUDGET entries (fd readlinks) per loop turn, one turn every
 * SCAN_STEP_MS: a few ms of work at a time, so CoAP retransmissions and HTTP timeouts keep
 * their deadlines while a Go server with 16k fds is scanned. */
#define SCAN_BUDGET 256u
#define SCAN_STEP_MS 5u

typedef struct agent {
    et_config conf;
    et_config local;        /* agent.conf as loaded: what central settings are merged onto */
    et_settings_state set;  /* central settings applied / refused (settings_apply.h) */
    et_loop *loop;
    et_httpc *http;
    et_sched *sched;
    spool *sp;
    et_uplink *up;
    et_caprun *caprun; /* downlink capture commands */
    et_wire_enc *enc;
    uint8_t boot_id[16];
    int sigfd;
    int stopping;
    /* discovery */
    et_target_set found;
    et_confirm_job confirm;
    int confirming;                  /* scan or confirm in progress */
    et_scan_job scan;
    et_timer_id scan_timer;
    et_discover_opts dopts;
    /* per-sampler site memos for the steady-state site references */
    struct {
        const et_sampler *sp;
        et_site_memo memo;
    } memos[ET_SAMPLE_MAX_TARGETS];
    et_snapshot snap; /* one snapshot buffer, reused: ~200 KB is too much for the stack */
    uint8_t wire[ET_WIRE_MAX];
    uint64_t snapshots, spool_errors;
    uint8_t *dict; /* zstd dictionary ([uplink] dict), kept for the encoder's lifetime */
    size_t dict_len;
    /* credentials: watched while running (uplink_creds.h); cur is what the uplink uses */
    et_creds_watch cw;
    int watch_creds;
    int have_creds;
    struct {
        char device_id[64];
        uint8_t psk[ET_UPLINK_PSK_MAX];
        size_t psk_len;
        char collector[160];
    } cur;
} agent;

static et_site_memo *memo_for(agent *a, const et_sampler *sp)
{
    for (int i = 0; i < ET_SAMPLE_MAX_TARGETS; i++)
        if (a->memos[i].sp == sp)
            return &a->memos[i].memo;
    for (int i = 0; i < ET_SAMPLE_MAX_TARGETS; i++)
        if (!a->memos[i].sp) {
            a->memos[i].sp = sp;
            memset(&a->memos[i].memo, 0, sizeof a->memos[i].memo);
            return &a->memos[i].memo;
        }
    return NULL;
}

/* ---- snapshot: one per target per cycle ---------------------------------------------- */
static void on_cycle(void *ud, const et_cycle *c)
{
    agent *a = ud;
    et_snapshot *s = &a->snap;
    const et_sample_target *t = c->target;
    et_snapshot_init(s);
    /* seq comes from the spool state, so it keeps rising across agent restarts */
    uint64_t seq = spool_next_seq(a->sp);
    et_snapshot_new_id(s->id, a->boot_id, seq);
    et_strlcpy(s->device_id, a->conf.device_id, sizeof s->device_id);
    et_strlcpy(s->board, ET_BOARD, sizeof s->board);
    et_strlcpy(s->agent_version, ET_VERSION, sizeof s->agent_version);
    s->seq = seq;
    memcpy(s->boot_id, a->boot_id, sizeof s->boot_id);
    s->mono_ms = c->t_ms;
    s->wall_ms = et_now_wall_ms();
    if (et_wall_clock_untrusted(s->wall_ms))
        s->flags |= ET_SNAP_F_WALL_UNTRUSTED;
    if (c->deep)
        s->flags |= ET_SNAP_F_DEEP;
    if (c->target_down)
        s->flags |= ET_SNAP_F_TARGET_DOWN;
    et_strlcpy(s->service, t->service, sizeof s->service);
    et_strlcpy(s->pod_namespace, t->pod_namespace, sizeof s->pod_namespace);
    et_strlcpy(s->pod_name, t->pod_name, sizeof s->pod_name);
    et_strlcpy(s->container, t->container, sizeof s->container);
    s->pid = (uint32_t)(t->pid > 0 ? t->pid : 0);
    s->start_ticks = t->start_ticks;
    et_strlcpy(s->go_version, t->go_version, sizeof s->go_version);
    et_strlcpy(s->url, t->url, sizeof s->url);
    if (c->goroutine) {
        et_snapshot_set_sites(s, c->goroutine, 0);
        et_site_memo *m = memo_for(a, c->sampler);
        if (m)
            et_snapshot_apply_memo(s, m, 0);
    }
    if (c->heap && c->heap->ms.present)
        et_snapshot_set_memstats(s, &c->heap->ms);
    if (c->proc)
        et_snapshot_set_proc(s, c->proc);
    /* Findings the agent would alert on; the suspected ones stay on the device until
     * they firm up (a metered link should not carry every passing doubt). */
    et_findings keep = *c->findings;
    et_findings_keep(&keep, ET_C_LIKELY);
    for (uint32_t i = 0; i < keep.n; i++)
        et_snapshot_add_finding(s, &keep.f[i]);
    s->findings_dropped = c->findings->dropped;
    spool_stats st;
    spool_get_stats(a->sp, &st);
    s->spool_routine_dropped = st.routine_dropped;
    s->spool_findings_dropped = st.findings_dropped;
    s->spool_corrupt_dropped = st.corrupt_dropped;
    s->spool_bytes_today = st.bytes_written_today;
    s->cost_bytes = c->cost.bytes;
    s->cost_ms = c->cost.ms;
    if (a->up) {
        et_uplink_stats us;
        et_uplink_get_stats(a->up, &us);
        /* Schema 3 carries the central settings state; writing it also tells the collector
         * that this agent takes settings documents (older agents refuse them). */
        if (us.peer_schema >= 3) {
            s->schema = 3;
            s->uplink_held = us.held;
            s->uplink_rejected = us.rejected;
            s->uplink_held_now = us.held_now;
            s->set_fleet = a->set.fleet;
            s->set_device = a->set.device;
            s->set_rej_fleet = a->set.rej_fleet;
            s->set_rej_device = a->set.rej_device;
            et_strlcpy(s->set_reason, a->set.reason, sizeof s->set_reason);
        }
    }
    if (a->up && s->schema < 3) {
        /* Records the collector could not take, and the survivor evidence of slow leaks, travel
         * in schema 2, but only to a collector that said it reads schema 2: an older one would
         * reject the whole snapshot. */
        et_uplink_stats us;
        et_uplink_get_stats(a->up, &us);
        int needs_v2 = us.held || us.rejected || us.held_now;
        for (uint32_t i = 0; i < s->nfindings && !needs_v2; i++)
            needs_v2 = et_finding_needs_v2(&s->findings[i]);
        if (us.peer_schema >= 2 && needs_v2) {
            s->schema = 2;
            s->uplink_held = us.held;
            s->uplink_rejected = us.rejected;
            s->uplink_held_now = us.held_now;
        }
    }

    char err[160];
    size_t n = 0;
    if (et_wire_encode(a->enc, s, a->wire, sizeof a->wire, &n, err, sizeof err) != 0) {
        et_error("snapshot for %s: %s", t->service, err);
        return;
    }
    if (spool_append(a->sp, s->nfindings ? SPOOL_F_FINDING : 0, s->id, a->wire, n) != 0) {
        a->spool_errors++;
        et_error("spool append failed for %s (%zu bytes)", t->service, n);
        return;
    }
    a->snapshots++;
    et_info("%s: %llu goroutines, %u findings, %zu bytes spooled%s%s", t->service,
            (unsigned long long)s->goroutines, s->nfindings, n, c->error[0] ? "; " : "", c->error);
    if (a->up)
        et_uplink_kick(a->up);
}

/* ---- discovery ---------------------------------------------------------------------- */
static void to_sample_target(const et_target *d, const char *proc_root, et_sample_target *t)
{
    memset(t, 0, sizeof *t);
    et_strlcpy(t->service, d->name, sizeof t->service);
    et_strlcpy(t->pod_namespace, d->k8s_namespace, sizeof t->pod_namespace);
    et_strlcpy(t->pod_name, d->k8s_pod, sizeof t->pod_name);
    et_strlcpy(t->container, d->k8s_container, sizeof t->container);
    t->identity_hash = d->identity_hash;
    char url[ET_URL_MAX + ET_PPROF_PREFIX_MAX];
    snprintf(url, sizeof url, "%s%s", d->base_url, d->pprof_prefix[0] ? d->pprof_prefix : "/debug/pprof/");
    size_t l = strlen(url);
    while (l > 0 && url[l - 1] == '/')
        url[--l] = 0;
    et_strlcpy(t->url, url, sizeof t->url);
    t->pid = d->pid;
    t->start_ticks = d->start_ticks;
    /* A configured loopback target that discovery did not match (discover = no): find the
     * process behind the port, so that its RSS and threads are followed too. */
    et_url u;
    if (!t->pid && !d->foreign_netns && et_url_parse(d->base_url, &u) == 0 &&
        (!strcmp(u.host, "127.0.0.1") || !strcmp(u.host, "localhost") || !strcmp(u.host, "::1"))) {
        t->pid = et_pid_for_local_port(proc_root, u.port);
        et_procstat ps;
        if (t->pid && et_proc_read(proc_root, t->pid, &ps) == 0)
            t->start_ticks = ps.start_time_ticks;
    }
    et_strlcpy(t->go_version, d->go_version, sizeof t->go_version);
    int fd = et_target_open_netns(d, proc_root);
    t->netns_fd = fd >= 0 ? fd : -1;
    t->interval_ms = d->interval_ms;
    t->profiles = d->profiles;
}

/* [target "NAME"] interval / profiles, from agent.conf or central settings (which may name
 * a discovered service: such a target has no url). */
static const et_conf_target *conf_target(const et_config *c, const char *name)
{
    for (uint32_t i = 0; i < c->ntargets; i++)
        if (!strcmp(c->targets[i].name, name))
            return &c->targets[i];
    return NULL;
}

static void target_policy(agent *a, et_sample_target *t)
{
    const et_conf_target *ct = conf_target(&a->conf, t->service);
    if (ct && (ct->interval_ms || ct->profiles)) {
        t->interval_ms = ct->interval_ms;
        t->profiles = ct->profiles;
    }
}

static void apply_targets(agent *a)
{
    unsigned added = 0;
    for (unsigned i = 0; i < a->found.n; i++) {
        const et_target *d = &a->found.t[i];
        if (d->confirmed == ET_CONFIRM_FAILED && d->source != ET_SRC_CONFIG)
            continue;
        et_sample_target t;
        to_sample_target(d, a->conf.proc_root, &t);
        target_policy(a, &t);
        et_sampler *sp = et_sched_find(a->sched, &t);
        if (sp) {
            const et_sample_target *cur = et_sampler_target(sp);
            if (t.pid && (cur->pid != t.pid || cur->start_ticks != t.start_ticks)) {
                et_info("%s: new incarnation (pid %d)", t.service, t.pid);
                et_sampler_new_incarnation(sp, t.pid, t.start_ticks);
            }
            if (t.netns_fd >= 0)
                close(t.netns_fd);
            continue;
        }
        /* Spread first cycles so that many targets do not all fetch in the same second. */
        if (et_sched_add(a->sched, &t, 200u + added * 700u)) {
            added++;
            et_info("target %s at %s (%s)", t.service, t.url, et_target_source_name(d->source));
        } else if (t.netns_fd >= 0) {
            close(t.netns_fd);
        }
    }
}

static void on_confirmed(void *ud)
{
    agent *a = ud;
    a->confirming = 0;
    et_target_set_compact(&a->found);
    apply_targets(a);
}

static void scan_done(agent *a)
{
    if (!a->conf.discover) {
        a->confirming = 0;
        apply_targets(a);
        return;
    }
    if (et_discover_confirm_start(&a->confirm, a->http, &a->found, a->conf.proc_root, 2000, on_confirmed, a) < 0) {
        a->confirming = 0;
        apply_targets(a);
    }
}

static void on_scan_step(et_loop *l, et_timer_id id, void *ud)
{
    agent *a = ud;
    if (!et_discover_scan_step(&a->scan, SCAN_BUDGET))
        return;
    et_loop_cancel_timer(l, id);
    a->scan_timer = 0;
    scan_done(a);
}

static void discover_now(agent *a)
{
    if (a->confirming)
        return;
    if (et_discover_scan_start(&a->scan, &a->conf, &a->dopts, &a->found) < 0) {
        et_warn("discovery: cannot read %s", a->conf.proc_root);
        return;
    }
    a->confirming = 1;
    if (a->scan.done) {
        scan_done(a);
        return;
    }
    a->scan_timer = et_loop_add_timer(a->loop, 0, SCAN_STEP_MS, on_scan_step, a);
    if (!a->scan_timer) {
        /* timer table full: scan in one go rather than not at all */
        while (!et_discover_scan_step(&a->scan, UINT32_MAX))
            ;
        scan_done(a);
    }
}

/* A downlink command (downlink.h: already claimed, so it runs at most once). */
static void on_command(void *ctx, const et_cmd *c)
{
    agent *a = ctx;
    if (c->kind == ET_CMD_REDISCOVER) {
        discover_now(a);
        return;
    }
    et_caprun_submit(a->caprun, c);
}

/* The keys central settings may set (wire/settings.h), from a merged config into the one in
 * use; identity, spool and uplink addresses stay as started. */
static void take_settable(et_config *dst, const et_config *src)
{
    dst->interval_ms = src->interval_ms;
    dst->deep_interval_ms = src->deep_interval_ms;
    dst->leak_interval_ms = src->leak_interval_ms;
    dst->trace_seconds = src->trace_seconds;
    memcpy(dst->allow, src->allow, sizeof dst->allow);
    dst->nallow = src->nallow;
    dst->budget_bytes_per_day = src->budget_bytes_per_day;
    memcpy(dst->targets, src->targets, sizeof dst->targets);
    dst->ntargets = src->ntargets;
}

/* A valid set, live: the scheduler, each target's own policy, the uplink's budget and its
 * check-in period. No restart: history, sessions and the spool carry on. */
static void settings_live(agent *a, const et_config *next)
{
    for (uint32_t i = 0; i < a->conf.ntargets; i++) { /* overrides the new set dropped */
        et_sampler *sp = conf_target(next, a->conf.targets[i].name) ? NULL
                                                                     : et_sched_find_service(a->sched, a->conf.targets[i].name);
        if (sp)
            et_sampler_set_policy(sp, 0, 0);
    }
    take_settable(&a->conf, next);
    et_sched_conf sc;
    et_sched_conf_from_config(&sc, &a->conf);
    et_sched_retune(a->sched, &sc);
    for (uint32_t i = 0; i < a->conf.ntargets; i++) {
        et_sampler *sp = et_sched_find_service(a->sched, a->conf.targets[i].name);
        if (sp)
            et_sampler_set_policy(sp, a->conf.targets[i].interval_ms, a->conf.targets[i].profiles);
    }
    if (a->up)
        et_uplink_retune(a->up, a->conf.budget_bytes_per_day, a->conf.interval_ms);
}

static void on_settings(void *ctx, const uint8_t *doc, size_t len)
{
    agent *a = ctx;
    static et_config next; /* ~10 KB */
    if (et_settings_take(&a->set, &a->local, doc, len, &next, a->sp) == ET_SET_APPLIED)
        settings_live(a, &next);
}

static void kick_uplink(void *ud)
{
    agent *a = ud;
    if (a->up)
        et_uplink_kick(a->up);
}

static void report_started(void *ud, uint64_t cmd_id)
{
    agent *a = ud;
    if (a->up)
        et_uplink_report_started(a->up, cmd_id);
}

static void on_discover_timer(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    discover_now(ud);
}

static void on_spool_tick(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    agent *a = ud;
    spool_tick(a->sp);
}

static void on_creds_timer(et_loop *l, et_timer_id id, void *ud);

static void on_signal(et_loop *l, int fd, unsigned ev, void *ud)
{
    (void)ev;
    agent *a = ud;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            discover_now(a);
            if (a->watch_creds)
                on_creds_timer(l, 0, a); /* and look at the credentials file now */
            continue;
        }
        et_info("signal %u: stopping", si.ssi_signo);
        a->stopping = 1;
        et_loop_stop(l);
    }
}

/* /etc/machine-id is unique per installation; its first 12 hex digits make a readable id. */
static void default_device_id(char *out, size_t cap)
{
    FILE *f = fopen("/etc/machine-id", "r");
    char buf[64] = "";
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            buf[0] = 0;
        fclose(f);
    }
    buf[strcspn(buf, "\r\n")] = 0;
    if (strlen(buf) >= 12) {
        buf[12] = 0;
        snprintf(out, cap, "gw-%.12s", buf);
    } else {
        char host[64] = "gateway";
        gethostname(host, sizeof host - 1);
        et_strlcpy(out, host, cap);
    }
}

/* ---- credentials ----------------------------------------------------------------------- */

/* What the file says, once per change (et_creds_poll reports each state once). */
static void report_creds(agent *a, int ev, const char *why)
{
    if (ev == ET_CREDS_MISSING && !a->have_creds)
        et_warn("no credentials at %s: sampling and spooling; snapshots are delivered once they exist (%s)",
                a->cw.path, why);
    else if (ev == ET_CREDS_MISSING)
        et_warn("credentials %s are gone (%s): the ones loaded before stay in use", a->cw.path, why);
    else if (ev == ET_CREDS_BAD)
        et_error("credentials %s (%llu bad so far): %s", why,
                 (unsigned long long)a->cw.load_errors,
                 a->have_creds ? "the ones loaded before stay in use"
                               : "sampling and spooling; snapshots are delivered once the file is valid");
}

static void remember_creds(agent *a, const et_uplink_params *up)
{
    et_creds_wipe(&a->cur, sizeof a->cur);
    et_strlcpy(a->cur.device_id, up->device_id, sizeof a->cur.device_id);
    memcpy(a->cur.psk, up->psk, up->psk_len);
    a->cur.psk_len = up->psk_len;
    et_strlcpy(a->cur.collector, up->collector, sizeof a->cur.collector);
}

/* [uplink] settings on top of what the credentials file gave (its collector only if the
 * config names none), then the uplink, which drains whatever the spool holds. */
static int uplink_open(agent *a, et_uplink_params *up, char *err, size_t errlen)
{
    if (a->conf.collector[0])
        et_strlcpy(up->collector, a->conf.collector, sizeof up->collector);
    if (!up->collector[0]) {
        if (a->have_creds)
            remember_creds(a, up);
        return 0; /* nowhere to send: the caller says so */
    }
    up->ack_timeout_ms = a->conf.ack_timeout_ms;
    up->max_retransmit = a->conf.max_retransmit;
    up->budget_bytes_per_day = a->conf.budget_bytes_per_day;
    if (a->conf.pki_cert[0]) {
        et_strlcpy(up->pki_cert, a->conf.pki_cert, sizeof up->pki_cert);
        et_strlcpy(up->pki_key, a->conf.pki_key, sizeof up->pki_key);
        et_strlcpy(up->pki_ca, a->conf.pki_ca, sizeof up->pki_ca);
        up->insecure_skip_verify = a->conf.insecure_skip_verify;
    }
    up->hold_max_ms = a->conf.hold_max_ms;
    /* a command reaches an idle gateway within one sampling interval (README "Commands") */
    up->checkin_ms = a->conf.interval_ms;
    et_strlcpy(up->state_dir, a->conf.spool_dir, sizeof up->state_dir);
    if (!up->device_id[0])
        et_strlcpy(up->device_id, a->conf.device_id, sizeof up->device_id);
    a->up = et_uplink_create(a->loop, a->sp, up, err, errlen);
    if (!a->up)
        return -1;
    et_uplink_set_command_handler(a->up, on_command, a);
    et_uplink_set_settings_handler(a->up, on_settings, a);
    /* The DTLS identity is what the collector believes; keep the snapshot's device id
     * the same so that the two never disagree. */
    et_strlcpy(a->conf.device_id, up->device_id, sizeof a->conf.device_id);
    remember_creds(a, up);
    et_uplink_kick(a->up); /* whatever is in the spool: an earlier run's, or this one's */
    return 0;
}

/* A valid file appeared or changed: the first one starts the uplink; a new key (rotation)
 * makes it drop its session and handshake again; the same contents (touch, a Secret
 * re-projected) change nothing. */
static void take_creds(agent *a, et_uplink_params *np)
{
    char err[256];
    int first = !a->have_creds;
    if (!first && !strcmp(np->device_id, a->cur.device_id) && np->psk_len == a->cur.psk_len &&
        !memcmp(np->psk, a->cur.psk, np->psk_len) && !strcmp(np->collector, a->cur.collector))
        return;
    a->have_creds = 1;
    int moved = strcmp(np->collector, a->cur.collector) && !a->conf.collector[0];
    if (a->up && !moved) {
        if (et_uplink_set_identity(a->up, np->device_id, np->psk, np->psk_len) == 0) {
            remember_creds(a, np);
            et_strlcpy(a->conf.device_id, np->device_id, sizeof a->conf.device_id);
            et_warn("credentials %s: new key for %s: new DTLS session", a->cw.path, np->device_id);
        }
        return;
    }
    if (a->up) {
        /* the file names another collector: a new uplink (the spool keeps what was in flight) */
        et_uplink_destroy(a->up);
        a->up = NULL;
    }
    if (uplink_open(a, np, err, sizeof err) != 0)
        et_error("credentials %s: uplink: %s; sampling and spooling go on", a->cw.path, err);
    else if (!a->up)
        et_warn("credentials %s: no collector ([uplink] collector or the file's): snapshots stay in the spool",
                a->cw.path);
    else
        et_warn("credentials %s: loaded for %s: delivering the spooled snapshots", a->cw.path, a->conf.device_id);
}

static void on_creds_timer(et_loop *l, et_timer_id id, void *ud)
{
    (void)l;
    (void)id;
    agent *a = ud;
    static et_uplink_params np; /* ~1 KB: not on every tick's stack */
    char err[256];
    et_uplink_params_defaults(&np);
    int ev = et_creds_poll(&a->cw, &np, &np, err, sizeof err);
    if (ev == ET_CREDS_LOADED)
        take_creds(a, &np);
    else if (ev != ET_CREDS_UNCHANGED)
        report_creds(a, ev, err);
    et_creds_wipe(&np, sizeof np);
}

static void usage(void)
{
    fprintf(stderr, "usage: edgetrace-agent run [--config FILE] [--device-id ID] [-v]\n");
}


/* A dictionary is a few KB to ~100 KB (zstd --train's default is 110 KB); anything bigger is a
 * wrong file. Read once at start: the encoder keeps a reference. */
#define DICT_MAX (128u * 1024u)
static int load_dict(agent *a, char *err, size_t errlen)
{
    FILE *f = fopen(a->conf.dict, "rb");
    if (!f) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    a->dict = malloc(DICT_MAX + 1);
    size_t n = a->dict ? fread(a->dict, 1, DICT_MAX + 1, f) : 0;
    fclose(f);
    if (!a->dict || n == 0 || n > DICT_MAX) {
        snprintf(err, errlen, "%s", !a->dict ? "out of memory" : n ? "larger than 128 KiB" : "empty");
        return -1;
    }
    a->dict_len = n;
    return 0;
}

int agent_run_main(int argc, char **argv)
{
    const char *conf_path = "/etc/edgetrace/agent.conf";
    const char *device_id = NULL;
    int verbose = 0;
    for (int i = 2; i < argc; i++) {
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) && i + 1 < argc)
            conf_path = argv[++i];
        else if (!strcmp(argv[i], "--device-id") && i + 1 < argc)
            device_id = argv[++i];
        else if (!strcmp(argv[i], "-v"))
            verbose++;
        else {
            usage();
            return 2;
        }
    }
    static agent A; /* large (snapshot + wire buffers): static storage, not stack */
    agent *a = &A;
    a->sigfd = -1;
    char err[256];
    et_config_defaults(&a->conf);
    if (et_config_load(&a->conf, conf_path, 1, err, sizeof err) != 0) {
        fprintf(stderr, "edgetrace-agent: %s\n", err);
        return 2;
    }
    et_log_level = a->conf.log_level + verbose;
    /* --device-id beats [agent] device_id: a DaemonSet passes the node name ($(NODE_NAME)) to
     * one ConfigMap shared by every node. */
    if (device_id && et_strlcpy(a->conf.device_id, device_id, sizeof a->conf.device_id)) {
        fprintf(stderr, "edgetrace-agent: --device-id too long\n");
        return 2;
    }
    if (!a->conf.device_id[0])
        default_device_id(a->conf.device_id, sizeof a->conf.device_id);
    if (et_read_boot_id(NULL, a->boot_id) != 0)
        memset(a->boot_id, 0, sizeof a->boot_id);

    spool_params spp = {
        .dir = a->conf.spool_dir,
        .max_bytes = a->conf.spool_max_bytes,
        .fsync_policy = a->conf.fsync_policy,
    };
    a->sp = spool_open(&spp, err, sizeof err);
    if (!a->sp) {
        fprintf(stderr, "edgetrace-agent: spool %s: %s\n", a->conf.spool_dir, err);
        return 1;
    }
    /* the file as loaded is the base of every central set; the last set applied (kept in the
     * spool directory) comes back before anything is sampled */
    a->local = a->conf;
    et_settings_state_init(&a->set, a->conf.spool_dir);
    {
        static et_config next;
        if (et_settings_restore(&a->set, &a->local, &next) == ET_SET_APPLIED)
            take_settable(&a->conf, &next);
    }
    et_wire_params wp = {.level = 3}; /* dfast: the device zstd carries no slower strategy */
    if (a->conf.dict[0] && load_dict(a, err, sizeof err) != 0) {
        fprintf(stderr, "edgetrace-agent: dict %s: %s\n", a->conf.dict, err);
        return 2;
    }
    wp.dict = a->dict;
    wp.dict_len = a->dict_len;
    a->enc = et_wire_enc_create(&wp, err, sizeof err);
    a->loop = et_loop_create(128, 256);
    a->http = a->loop ? et_httpc_create(a->loop, 4) : NULL;
    et_sched_conf sc;
    et_sched_conf_from_config(&sc, &a->conf);
    a->sched = a->http ? et_sched_create(a->loop, a->http, &sc, on_cycle, a) : NULL;
    a->caprun = a->sched ? et_caprun_create(a->loop, a->http, a->sched, a->sp, a->boot_id, kick_uplink, a) : NULL;
    if (a->caprun)
        et_caprun_on_started(a->caprun, report_started);
    if (!a->enc || !a->sched || !a->caprun) {
        fprintf(stderr, "edgetrace-agent: out of memory at start\n");
        return 1;
    }

    /* The credentials file may be absent (not provisioned yet, or the node's key not yet in
     * the Kubernetes Secret), unreadable or broken: the agent samples and spools anyway and
     * watches the file, so the backlog goes as soon as a valid file appears. */
    char cpath[sizeof a->cw.path];
    if (a->conf.credentials_dir[0]) {
        if (et_creds_path_in_dir(a->conf.credentials_dir, a->conf.device_id, cpath, sizeof cpath) != 0) {
            fprintf(stderr, "edgetrace-agent: credentials_dir %s: device id '%s' cannot name a file in it\n",
                    a->conf.credentials_dir, a->conf.device_id);
            return 2;
        }
    } else {
        et_strlcpy(cpath, a->conf.credentials, sizeof cpath);
    }
    et_creds_watch_init(&a->cw, cpath);
    a->watch_creds = !a->conf.pki_cert[0]; /* certificates instead of the PSK: nothing to watch */
    et_uplink_params up;
    et_uplink_params_defaults(&up);
    if (a->watch_creds) {
        int ev = et_creds_poll(&a->cw, &up, &up, err, sizeof err);
        if (ev == ET_CREDS_LOADED)
            a->have_creds = 1;
        else
            report_creds(a, ev, err);
    }
    if (a->conf.collector[0])
        et_strlcpy(up.collector, a->conf.collector, sizeof up.collector);
    if (a->have_creds || a->conf.pki_cert[0] || !strncmp(up.collector, "coap:", 5)) {
        /* a plain coap:// collector (tests) names the device by query: no key needed */
        if (uplink_open(a, &up, err, sizeof err) != 0) {
            fprintf(stderr, "edgetrace-agent: uplink: %s\n", err);
            return 1;
        }
    }
    et_creds_wipe(&up, sizeof up);
    if (!a->up && a->have_creds)
        et_warn("no collector configured ([uplink] collector or the credentials file): snapshots stay in the spool");
    if (a->watch_creds)
        et_loop_add_timer(a->loop, ET_CREDS_POLL_MS, ET_CREDS_POLL_MS, on_creds_timer, a);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    a->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (a->sigfd >= 0)
        et_loop_watch(a->loop, a->sigfd, ET_EV_READ, on_signal, a);

    et_discover_opts_default(&a->dopts);
    a->dopts.proc_root = a->conf.proc_root;
    a->dopts.scan_proc = a->conf.discover;
    discover_now(a);
    et_loop_add_timer(a->loop, DISCOVER_PERIOD_MS, DISCOVER_PERIOD_MS, on_discover_timer, a);
    et_loop_add_timer(a->loop, SPOOL_TICK_MS, SPOOL_TICK_MS, on_spool_tick, a);
    et_info("device %s: running", a->conf.device_id);

    int rc = et_loop_run(a->loop) == 0 ? 0 : 1;

    et_caprun_destroy(a->caprun); /* before the client its request uses */
    et_sched_destroy(a->sched);
    if (a->up)
        et_uplink_destroy(a->up);
    et_discover_scan_abort(&a->scan);
    spool_close(a->sp); /* persists acks and counters */
    et_httpc_destroy(a->http);
    if (a->sigfd >= 0)
        close(a->sigfd);
    et_loop_destroy(a->loop);
    et_wire_enc_free(a->enc);
    free(a->dict);
    et_creds_wipe(&a->cur, sizeof a->cur);
    et_info("stopped after %llu snapshots", (unsigned long long)a->snapshots);
    return rc;
}
