/* uplink_policy.c - the uplink's settings and decisions that need no connection: defaults,
 * the credentials file, the certificate check, the answer classes and the budget rule (see
 * uplink.h). Kept apart from uplink.c, which is the CoAP/DTLS state machine, so that each
 * rule can be read and unit-tested on its own. */
#include <stdio.h>
#include <string.h>

#include <ini.h>

#include "base.h"
#include "uplink.h"

void et_uplink_params_defaults(et_uplink_params *p)
{
    memset(p, 0, sizeof(*p));
    p->ack_timeout_ms = 4000;
    p->ack_random_factor_milli = 1500;
    p->max_retransmit = 6;
    p->block_size = 1024;
    p->backoff_min_ms = 2000;
    p->backoff_max_ms = 300000;
    p->hold_min_ms = 30000;
    p->hold_max_ms = 3600000;
    p->use_cid = 1;
}

int et_uplink_classify(unsigned cls, unsigned detail)
{
    if (cls == 2 && (detail == 1 || detail == 4))
        return ET_UPLINK_ACK;
    /* The only answers that delete a record: bytes that no collector will ever store. */
    if (cls == 4 && (detail == 0 || detail == 22))
        return ET_UPLINK_DROP;
    if (cls == 4 && (detail == 1 || detail == 3))
        return ET_UPLINK_REFUSED;
    /* 4.08 (the collector lost a half-received body, e.g. it restarted) and 4.29 (busy) are
     * about this moment, not this record: the whole body goes again after the usual backoff. */
    if (cls == 4 && (detail == 8 || detail == 29))
        return ET_UPLINK_RETRY;
    /* 4.13 (over the collector's current max_body), 4.15, 5.01 (unknown envelope/schema
     * version or dictionary) and any 4.xx this agent does not know: a collector upgrade or a
     * config change could store this record, so it is kept and retried slowly. */
    if (cls == 4 || (cls == 5 && detail == 1))
        return ET_UPLINK_HOLD;
    return ET_UPLINK_RETRY;
}

uint32_t et_uplink_stall_ms(const et_uplink_params *p, size_t body_len, uint32_t level)
{
    uint64_t ack = p->ack_timeout_ms, factor = p->ack_random_factor_milli ? p->ack_random_factor_milli : 1000;
    uint64_t bs = p->block_size ? p->block_size : 1024;
    uint64_t blocks = body_len > bs ? (body_len + bs - 1) / bs : 1;
    uint64_t span = ack * ((1ull << ET_MIN(p->max_retransmit, 20u)) - 1) * factor / 1000;
    uint64_t s = (ack * factor / 1000 + ack + (blocks - 1) * ack) << ET_MIN(level, 20u);
    /* at or past MAX_TRANSMIT_SPAN libcoap's own timeout comes first: a probe would be wasted */
    return ack && s < span ? (uint32_t)s : 0;
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

typedef struct cred_ctx {
    et_uplink_params *p;
    char err[120];
} cred_ctx;

static int cred_handler(void *user, const char *section, const char *name, const char *value)
{
    cred_ctx *c = user;
    if (strcmp(section, "credentials"))
        return 1;
    if (!strcmp(name, "device_id")) {
        if (et_strlcpy(c->p->device_id, value, sizeof(c->p->device_id)) || !value[0]) {
            snprintf(c->err, sizeof(c->err), "device_id empty or too long");
            return 0;
        }
    } else if (!strcmp(name, "psk")) {
        size_t n = strlen(value);
        if (n == 0 || n % 2 || n / 2 > ET_UPLINK_PSK_MAX) {
            snprintf(c->err, sizeof(c->err), "psk must be 2..%d hex digits", 2 * ET_UPLINK_PSK_MAX);
            return 0;
        }
        for (size_t i = 0; i < n; i += 2) {
            int hi = hexval(value[i]), lo = hexval(value[i + 1]);
            if (hi < 0 || lo < 0) {
                snprintf(c->err, sizeof(c->err), "psk is not hex");
                return 0;
            }
            c->p->psk[i / 2] = (uint8_t)(hi << 4 | lo);
        }
        c->p->psk_len = n / 2;
    } else if (!strcmp(name, "collector")) {
        if (et_strlcpy(c->p->collector, value, sizeof(c->p->collector))) {
            snprintf(c->err, sizeof(c->err), "collector URL too long");
            return 0;
        }
    }
    return 1; /* unknown keys: ignored, for forward compatibility */
}

int et_uplink_load_credentials(const char *path, et_uplink_params *p, char *err, size_t errlen)
{
    cred_ctx c = {.p = p};
    int rc = ini_parse(path, cred_handler, &c);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot read", path);
        return -1;
    }
    if (rc > 0) {
        snprintf(err, errlen, "%s:%d: %s", path, rc, c.err[0] ? c.err : "syntax error");
        return -1;
    }
    if (!p->device_id[0] || !p->psk_len) {
        snprintf(err, errlen, "%s: needs device_id and psk in [credentials]", path);
        return -1;
    }
    return 0;
}

int et_uplink_check_pki(const et_uplink_params *p, char *err, size_t errlen)
{
    if (!p->pki_cert[0] || p->pki_ca[0])
        return 0;
    if (!p->insecure_skip_verify) {
        snprintf(err, errlen, "pki_cert without pki_ca: the collector's certificate could not be verified, so anyone "
                              "on the path could pose as the collector. Set pki_ca, or insecure_skip_verify = yes");
        return -1;
    }
    /* every start, so it cannot be forgotten in a log rotated away */
    et_warn("uplink: insecure_skip_verify = yes: the collector's certificate is NOT verified; anyone on the path "
            "can pose as the collector");
    return 0;
}

int et_uplink_budget_allows(uint64_t budget, uint8_t flags, uint32_t len, uint32_t block_size, uint64_t bytes_today)
{
    if (!budget)
        return 1;
    uint64_t cost = len + (len / (block_size ? block_size : 1024) + 1) * ET_UPLINK_DATAGRAM_OVERHEAD;
    uint64_t limit = (flags & SPOOL_F_FINDING) ? budget : budget / 4 * 3;
    /* A record that alone costs more than the day's limit would otherwise wait for ever, and
     * everything behind it with it: it goes as the first thing of a UTC day, and what follows
     * waits for the next day's budget. */
    if (cost > limit)
        return bytes_today == 0;
    return bytes_today + cost <= limit;
}
