/* command.c - encoder and strict decoder of the downlink command document (command.h).
 * tinycbor, like the snapshot schema; no allocation, bounded by ET_CMD_MAX. */
#include "command.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <tinycbor/cbor.h>

static const char *const kind_names[ET_CMD_KIND_MAX + 1] = {
    NULL, "trace", "goroutine-debug2", "goroutineleak", "heap", "rediscover",
};

const char *et_cmd_kind_name(unsigned kind) { return kind <= ET_CMD_KIND_MAX ? kind_names[kind] : NULL; }

unsigned et_cmd_kind_parse(const char *name)
{
    for (unsigned k = 1; name && k <= ET_CMD_KIND_MAX; k++)
        if (!strcmp(name, kind_names[k]))
            return k;
    return 0;
}

int et_wire_failf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The rules both sides apply: the collector before queueing, the agent after decoding. */
static int cmd_check(const et_cmd *c, char *err, size_t errlen)
{
    if (!c->id)
        return et_wire_failf(err, errlen, "command id 0");
    if (c->kind < 1 || c->kind > ET_CMD_KIND_MAX)
        return et_wire_failf(err, errlen, "command %llu: unknown kind %u", (unsigned long long)c->id, c->kind);
    if (c->kind != ET_CMD_REDISCOVER && !c->target[0])
        return et_wire_failf(err, errlen, "command %llu: %s needs a target", (unsigned long long)c->id,
                     kind_names[c->kind]);
    if (c->kind == ET_CMD_TRACE && (c->seconds < 1 || c->seconds > ET_CMD_SECONDS_MAX))
        return et_wire_failf(err, errlen, "command %llu: trace seconds %u not in 1..%d", (unsigned long long)c->id,
                     c->seconds, ET_CMD_SECONDS_MAX);
    if (c->kind != ET_CMD_TRACE && c->seconds)
        return et_wire_failf(err, errlen, "command %llu: seconds only apply to trace", (unsigned long long)c->id);
    return 0;
}

int et_cmd_encode(const et_cmd_list *l, uint8_t *out, size_t cap, size_t *n, char *err, size_t errlen)
{
    if (l->n > ET_CMD_MAX)
        return et_wire_failf(err, errlen, "%u commands, at most %d", l->n, ET_CMD_MAX);
    CborEncoder enc, top, arr;
    cbor_encoder_init(&enc, out, cap, 0);
    if (l->settings_len > ET_SET_DOC_MAX)
        return et_wire_failf(err, errlen, "settings document of %zu bytes, at most %d", l->settings_len,
                             ET_SET_DOC_MAX);
    CborError e = cbor_encoder_create_map(&enc, &top, 2 + (l->settings_len > 0));
    e |= cbor_encode_uint(&top, 0);
    e |= cbor_encode_uint(&top, ET_CMD_VERSION);
    e |= cbor_encode_uint(&top, 1);
    e |= cbor_encoder_create_array(&top, &arr, l->n);
    for (unsigned i = 0; i < l->n; i++) {
        const et_cmd *c = &l->c[i];
        if (cmd_check(c, err, errlen))
            return -1;
        CborEncoder m;
        size_t nk = 3 + (c->target[0] != 0) + (c->kind == ET_CMD_TRACE);
        e |= cbor_encoder_create_map(&arr, &m, nk);
        e |= cbor_encode_uint(&m, 1);
        e |= cbor_encode_uint(&m, c->id);
        e |= cbor_encode_uint(&m, 2);
        e |= cbor_encode_uint(&m, c->expiry_ms);
        e |= cbor_encode_uint(&m, 3);
        e |= cbor_encode_uint(&m, c->kind);
        if (c->target[0]) {
            e |= cbor_encode_uint(&m, 4);
            e |= cbor_encode_text_string(&m, c->target, strnlen(c->target, ET_CMD_TARGET_MAX - 1));
        }
        if (c->kind == ET_CMD_TRACE) {
            e |= cbor_encode_uint(&m, 5);
            e |= cbor_encode_uint(&m, c->seconds);
        }
        e |= cbor_encoder_close_container(&arr, &m);
    }
    e |= cbor_encoder_close_container(&top, &arr);
    if (l->settings_len) {
        e |= cbor_encode_uint(&top, 2);
        e |= cbor_encode_byte_string(&top, l->settings, l->settings_len);
    }
    e |= cbor_encoder_close_container(&enc, &top);
    if (e)
        return et_wire_failf(err, errlen, "command document: %s", cbor_error_string(e));
    *n = cbor_encoder_get_buffer_size(&enc, out);
    return 0;
}

static int get_uint(CborValue *v, const char *name, uint64_t max, uint64_t *out, char *err, size_t errlen)
{
    if (!cbor_value_is_unsigned_integer(v))
        return et_wire_failf(err, errlen, "%s: expected an unsigned integer", name);
    uint64_t x;
    cbor_value_get_uint64(v, &x);
    if (x > max)
        return et_wire_failf(err, errlen, "%s: %llu out of range", name, (unsigned long long)x);
    *out = x;
    CborError e = cbor_value_advance_fixed(v);
    return e ? et_wire_failf(err, errlen, "%s: %s", name, cbor_error_string(e)) : 0;
}

static int get_cmd(CborValue *v, et_cmd *c, char *err, size_t errlen)
{
    if (!cbor_value_is_map(v))
        return et_wire_failf(err, errlen, "command: expected a map");
    CborValue m;
    CborError e = cbor_value_enter_container(v, &m);
    if (e)
        return et_wire_failf(err, errlen, "command: %s", cbor_error_string(e));
    unsigned seen = 0;
    memset(c, 0, sizeof(*c));
    while (!cbor_value_at_end(&m)) {
        uint64_t key, x;
        if (get_uint(&m, "command key", 5, &key, err, errlen))
            return -1;
        if (key < 1)
            return et_wire_failf(err, errlen, "command: unknown key 0");
        if (seen & (1u << key))
            return et_wire_failf(err, errlen, "command: duplicate key %llu", (unsigned long long)key);
        seen |= 1u << key;
        if (cbor_value_at_end(&m))
            return et_wire_failf(err, errlen, "command: key %llu has no value", (unsigned long long)key);
        switch (key) {
        case 1:
            if (get_uint(&m, "id", UINT64_MAX, &c->id, err, errlen))
                return -1;
            break;
        case 2:
            if (get_uint(&m, "expiry", UINT64_MAX, &c->expiry_ms, err, errlen))
                return -1;
            break;
        case 3:
            if (get_uint(&m, "kind", ET_CMD_KIND_MAX, &x, err, errlen))
                return -1;
            c->kind = (uint8_t)x;
            break;
        case 4: {
            if (!cbor_value_is_text_string(&m))
                return et_wire_failf(err, errlen, "target: expected a text string");
            size_t len = 0;
            e = cbor_value_calculate_string_length(&m, &len);
            if (e || len == 0 || len >= ET_CMD_TARGET_MAX)
                return et_wire_failf(err, errlen, "target: length %zu not in 1..%d", len, ET_CMD_TARGET_MAX - 1);
            size_t n = ET_CMD_TARGET_MAX - 1;
            e = cbor_value_copy_text_string(&m, c->target, &n, &m);
            if (e)
                return et_wire_failf(err, errlen, "target: %s", cbor_error_string(e));
            c->target[n] = 0;
            if (memchr(c->target, 0, n))
                return et_wire_failf(err, errlen, "target: contains a NUL byte");
            break;
        }
        case 5:
            if (get_uint(&m, "seconds", ET_CMD_SECONDS_MAX, &x, err, errlen))
                return -1;
            c->seconds = (uint32_t)x;
            break;
        }
    }
    e = cbor_value_leave_container(v, &m);
    if (e)
        return et_wire_failf(err, errlen, "command: %s", cbor_error_string(e));
    if ((seen & 0xe) != 0xe)
        return et_wire_failf(err, errlen, "command: id, expiry and kind are required");
    if (c->kind == ET_CMD_TRACE && !c->seconds)
        c->seconds = ET_CMD_SECONDS_DEFAULT;
    return cmd_check(c, err, errlen);
}

static int decode(const uint8_t *buf, size_t len, et_cmd_list *l, char *err, size_t errlen)
{
    CborParser p;
    CborValue top, m;
    CborError e = cbor_parser_init(buf, len, 0, &p, &top);
    if (e)
        return et_wire_failf(err, errlen, "CBOR: %s", cbor_error_string(e));
    /* one pass over the whole document first: bounded nesting, well-formed, valid UTF-8 */
    e = cbor_value_validate(&top, CborValidateCompleteData | CborValidateUtf8 | CborValidateNoTags);
    if (e)
        return et_wire_failf(err, errlen, "CBOR: %s", cbor_error_string(e));
    if (!cbor_value_is_map(&top))
        return et_wire_failf(err, errlen, "expected a map");
    e = cbor_value_enter_container(&top, &m);
    if (e)
        return et_wire_failf(err, errlen, "CBOR: %s", cbor_error_string(e));
    unsigned seen = 0;
    while (!cbor_value_at_end(&m)) {
        uint64_t key, ver;
        if (get_uint(&m, "key", 2, &key, err, errlen))
            return -1;
        if (seen & (1u << key))
            return et_wire_failf(err, errlen, "duplicate key %llu", (unsigned long long)key);
        seen |= 1u << key;
        if (cbor_value_at_end(&m))
            return et_wire_failf(err, errlen, "key %llu has no value", (unsigned long long)key);
        if (key == 0) {
            if (get_uint(&m, "version", UINT64_MAX, &ver, err, errlen))
                return -1;
            if (ver != ET_CMD_VERSION)
                return et_wire_failf(err, errlen, "command document version %llu; this agent reads %d",
                             (unsigned long long)ver, ET_CMD_VERSION);
            continue;
        }
        if (key == 2) { /* the settings document: copied whole, judged by settings.c */
            size_t n = sizeof l->settings;
            if (!cbor_value_is_byte_string(&m) || cbor_value_calculate_string_length(&m, &n) || !n ||
                n > sizeof l->settings)
                return et_wire_failf(err, errlen, "settings: expected a byte string of 1..%d bytes", ET_SET_DOC_MAX);
            n = sizeof l->settings;
            e = cbor_value_copy_byte_string(&m, l->settings, &n, &m);
            if (e)
                return et_wire_failf(err, errlen, "settings: %s", cbor_error_string(e));
            l->settings_len = n;
            continue;
        }
        if (!cbor_value_is_array(&m))
            return et_wire_failf(err, errlen, "commands: expected an array");
        CborValue a;
        e = cbor_value_enter_container(&m, &a);
        if (e)
            return et_wire_failf(err, errlen, "commands: %s", cbor_error_string(e));
        while (!cbor_value_at_end(&a)) {
            if (l->n >= ET_CMD_MAX)
                return et_wire_failf(err, errlen, "more than %d commands", ET_CMD_MAX);
            if (get_cmd(&a, &l->c[l->n], err, errlen))
                return -1;
            l->n++;
        }
        e = cbor_value_leave_container(&m, &a);
        if (e)
            return et_wire_failf(err, errlen, "commands: %s", cbor_error_string(e));
    }
    e = cbor_value_leave_container(&top, &m);
    if (e)
        return et_wire_failf(err, errlen, "CBOR: %s", cbor_error_string(e));
    if ((seen & 3) != 3)
        return et_wire_failf(err, errlen, "version and commands are required");
    if (cbor_value_get_next_byte(&top) != buf + len)
        return et_wire_failf(err, errlen, "trailing bytes after the command document");
    return 0;
}

int et_cmd_decode(const uint8_t *buf, size_t len, et_cmd_list *l, char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    if (!buf || !len || len > ET_CMD_DOC_MAX)
        return et_wire_failf(err, errlen, "command document of %zu bytes (1..%d)", len, ET_CMD_DOC_MAX);
    if (decode(buf, len, l, err, errlen)) {
        memset(l, 0, sizeof(*l));
        return -1;
    }
    return 0;
}

size_t et_cmd_split_answer(const uint8_t *payload, size_t len, const uint8_t **doc)
{
    const uint8_t *nul = payload && len ? memchr(payload, 0, len) : NULL;
    *doc = nul ? nul + 1 : NULL;
    return nul ? len - (size_t)(nul + 1 - payload) : 0;
}

int et_cmd_started_format(uint64_t id, char *buf, size_t cap)
{
    return snprintf(buf, cap, "r=%llu", (unsigned long long)id);
}

int et_cmd_started_parse(const uint8_t *v, size_t len, uint64_t *id)
{
    /* "r=" then 1..20 digits, no leading zero, no overflow: a hostile option changes nothing */
    if (!v || len < 3 || len > 22 || v[0] != 'r' || v[1] != '=' || v[2] == '0')
        return -1;
    uint64_t x = 0;
    for (size_t i = 2; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *id = x;
    return 0;
}
