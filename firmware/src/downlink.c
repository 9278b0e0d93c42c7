/* downlink.c - runs the commands of a collector answer at most once each (downlink.h). */
#include "downlink.h"
#include "base.h"
#include "snapshot.h"

#include <stdio.h>

void et_downlink_answer(spool *sp, const uint8_t *payload, size_t len, et_cmd_fn fn, void *ctx,
                        et_downlink_stats *st)
{
    const uint8_t *doc;
    size_t dlen = et_cmd_split_answer(payload, len, &doc);
    if (!dlen)
        return;
    et_cmd_list l;
    char err[160];
    if (et_cmd_decode(doc, dlen, &l, err, sizeof(err))) {
        st->bad++;
        et_warn("downlink: refused a command document of %zu bytes: %s", dlen, err);
        return;
    }
    int64_t wall = et_now_wall_ms();
    int clock_ok = !et_wall_clock_untrusted(wall);
    for (unsigned i = 0; i < l.n; i++) {
        const et_cmd *c = &l.c[i];
        st->received++;
        /* an unsynced clock cannot tell; the collector stops handing it out at expiry anyway */
        if (clock_ok && (uint64_t)wall >= c->expiry_ms) {
            st->expired++;
            continue;
        }
        int claimed = spool_cmd_claim(sp, c->id);
        if (claimed == 0) {
            st->repeated++;
            continue;
        }
        if (claimed < 0) {
            et_warn("downlink: cannot record command %llu in the spool state; not running it now",
                    (unsigned long long)c->id);
            continue;
        }
        st->run++;
        et_info("downlink: command %llu: %s%s%s", (unsigned long long)c->id, et_cmd_kind_name(c->kind),
                c->target[0] ? " " : "", c->target);
        if (fn)
            fn(ctx, c);
    }
}

void et_downlink_settings(const uint8_t *payload, size_t len, et_settings_fn fn, void *ctx)
{
    const uint8_t *doc;
    size_t dlen = et_cmd_split_answer(payload, len, &doc);
    static et_cmd_list l; /* holds a settings document: not on the answer handler's stack */
    char err[160];
    if (!fn || !dlen || et_cmd_decode(doc, dlen, &l, err, sizeof(err)) || !l.settings_len)
        return;
    fn(ctx, l.settings, l.settings_len);
}
