/* settings.c - encoder and strict decoder of the central settings document (settings.h).
 * tinycbor, like command.c; no allocation, bounded by ET_SET_MAX. */
#include "settings.h"

#include <stdio.h>
#include <string.h>

#include <tinycbor/cbor.h>

#include "command.h" /* et_wire_failf */

/* What may be set from afar: sampling policy and the byte budget, never identity, storage or
 * where the data goes (a stolen API token must not redirect a fleet). */
static const char *const agent_keys[] = {"interval", "deep_interval", "leak_interval", "trace_seconds", "allow"};
static const char *const target_keys[] = {"interval", "profiles"};

static int in_list(const char *k, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(k, list[i]))
            return 1;
    return 0;
}

int et_settings_split(const char *name, char *section, size_t seclen, char *key, size_t keylen, char *err,
                      size_t errlen)
{
    const char *dot = strrchr(name, '.');
    if (!dot || !dot[1])
        return et_wire_failf(err, errlen, "setting '%s': expected SECTION.KEY", name);
    if ((size_t)snprintf(key, keylen, "%s", dot + 1) >= keylen)
        return et_wire_failf(err, errlen, "setting '%s': key too long", name);
    size_t slen = (size_t)(dot - name);
    if (slen == 5 && !strncmp(name, "agent", 5) && in_list(key, agent_keys, sizeof agent_keys / sizeof *agent_keys)) {
        snprintf(section, seclen, "agent");
        return 0;
    }
    if (slen == 6 && !strncmp(name, "uplink", 6) && !strcmp(key, "budget_bytes_per_day")) {
        snprintf(section, seclen, "uplink");
        return 0;
    }
    if (slen > 7 && !strncmp(name, "target.", 7) && in_list(key, target_keys, 2)) {
        const char *t = name + 7;
        size_t tlen = slen - 7;
        /* the config names a target [target "NAME"]: a quote or a bracket would end it early */
        if (tlen >= 64 || memchr(t, '"', tlen) || memchr(t, ']', tlen))
            return et_wire_failf(err, errlen, "setting '%s': bad target name", name);
        if ((size_t)snprintf(section, seclen, "target \"%.*s\"", (int)tlen, t) >= seclen)
            return et_wire_failf(err, errlen, "setting '%s': target name too long", name);
        return 0;
    }
    return et_wire_failf(err, errlen, "setting '%s' cannot be set centrally", name);
}

int et_settings_check(const et_settings *s, char *err, size_t errlen)
{
    if (s->n > ET_SET_MAX)
        return et_wire_failf(err, errlen, "%u settings, at most %d", s->n, ET_SET_MAX);
    for (unsigned i = 0; i < s->n; i++) {
        const et_setting *e = &s->e[i];
        char sec[80], key[32];
        if (!memchr(e->name, 0, sizeof e->name) || !memchr(e->value, 0, sizeof e->value))
            return et_wire_failf(err, errlen, "setting %u: too long", i);
        if (et_settings_split(e->name, sec, sizeof sec, key, sizeof key, err, errlen))
            return -1;
        if (!e->value[0])
            return et_wire_failf(err, errlen, "setting '%s': empty value", e->name);
        if (!strcmp(e->name, "agent.allow"))
            continue;
        for (unsigned j = 0; j < i; j++)
            if (!strcmp(s->e[j].name, e->name))
                return et_wire_failf(err, errlen, "setting '%s' given twice", e->name);
    }
    return 0;
}

int et_settings_encode(const et_settings *s, uint8_t *out, size_t cap, size_t *n, char *err, size_t errlen)
{
    if (et_settings_check(s, err, errlen))
        return -1;
    CborEncoder enc, top, arr, pair;
    cbor_encoder_init(&enc, out, cap, 0);
    CborError e = cbor_encoder_create_map(&enc, &top, 4);
    e |= cbor_encode_uint(&top, 0);
    e |= cbor_encode_uint(&top, ET_SET_VERSION);
    e |= cbor_encode_uint(&top, 1);
    e |= cbor_encode_uint(&top, s->fleet_version);
    e |= cbor_encode_uint(&top, 2);
    e |= cbor_encode_uint(&top, s->device_version);
    e |= cbor_encode_uint(&top, 3);
    e |= cbor_encoder_create_array(&top, &arr, s->n);
    for (unsigned i = 0; i < s->n; i++) {
        e |= cbor_encoder_create_array(&arr, &pair, 2);
        e |= cbor_encode_text_stringz(&pair, s->e[i].name);
        e |= cbor_encode_text_stringz(&pair, s->e[i].value);
        e |= cbor_encoder_close_container(&arr, &pair);
    }
    e |= cbor_encoder_close_container(&top, &arr);
    e |= cbor_encoder_close_container(&enc, &top);
    if (e)
        return et_wire_failf(err, errlen, "settings document: %s", e == CborErrorOutOfMemory
                                                                  ? "larger than its buffer"
                                                                  : cbor_error_string(e));
    *n = cbor_encoder_get_buffer_size(&enc, out);
    if (*n > ET_SET_DOC_MAX)
        return et_wire_failf(err, errlen, "settings document of %zu bytes, at most %d", *n, ET_SET_DOC_MAX);
    return 0;
}

static int get_u64(CborValue *v, const char *name, uint64_t *out, char *err, size_t errlen)
{
    if (!cbor_value_is_unsigned_integer(v))
        return et_wire_failf(err, errlen, "%s: expected an unsigned integer", name);
    cbor_value_get_uint64(v, out);
    CborError e = cbor_value_advance_fixed(v);
    return e ? et_wire_failf(err, errlen, "%s: %s", name, cbor_error_string(e)) : 0;
}

static int get_str(CborValue *v, const char *name, char *buf, size_t cap, char *err, size_t errlen)
{
    if (!cbor_value_is_text_string(v))
        return et_wire_failf(err, errlen, "%s: expected a text string", name);
    size_t len = 0;
    CborError e = cbor_value_calculate_string_length(v, &len);
    if (e || len >= cap)
        return et_wire_failf(err, errlen, "%s: longer than %zu bytes", name, cap - 1);
    size_t n = cap - 1;
    e = cbor_value_copy_text_string(v, buf, &n, v);
    if (e)
        return et_wire_failf(err, errlen, "%s: %s", name, cbor_error_string(e));
    buf[n] = 0;
    if (memchr(buf, 0, n))
        return et_wire_failf(err, errlen, "%s: contains a NUL byte", name);
    return 0;
}

static int get_entries(CborValue *v, et_settings *s, char *err, size_t errlen)
{
    if (!cbor_value_is_array(v))
        return et_wire_failf(err, errlen, "settings: expected an array");
    CborValue a, p;
    CborError e = cbor_value_enter_container(v, &a);
    while (!e && !cbor_value_at_end(&a)) {
        if (s->n >= ET_SET_MAX)
            return et_wire_failf(err, errlen, "more than %d settings", ET_SET_MAX);
        size_t len = 0;
        if (!cbor_value_is_array(&a) || cbor_value_get_array_length(&a, &len) || len != 2)
            return et_wire_failf(err, errlen, "setting %u: expected [name, value]", s->n);
        et_setting *x = &s->e[s->n];
        if ((e = cbor_value_enter_container(&a, &p)))
            break;
        if (get_str(&p, "setting name", x->name, sizeof x->name, err, errlen) ||
            get_str(&p, "setting value", x->value, sizeof x->value, err, errlen))
            return -1;
        e = cbor_value_leave_container(&a, &p);
        s->n++;
    }
    if (!e)
        e = cbor_value_leave_container(v, &a);
    return e ? et_wire_failf(err, errlen, "settings: %s", cbor_error_string(e)) : 0;
}

static int decode(const uint8_t *buf, size_t len, et_settings *s, char *err, size_t errlen)
{
    CborParser p;
    CborValue top, m;
    CborError e = cbor_parser_init(buf, len, 0, &p, &top);
    if (!e) /* bounded nesting, well-formed, valid UTF-8, before anything is read */
        e = cbor_value_validate(&top, CborValidateCompleteData | CborValidateUtf8 | CborValidateNoTags);
    if (e)
        return et_wire_failf(err, errlen, "CBOR: %s", cbor_error_string(e));
    if (!cbor_value_is_map(&top))
        return et_wire_failf(err, errlen, "expected a map");
    if ((e = cbor_value_enter_container(&top, &m)))
        return et_wire_failf(err, errlen, "CBOR: %s", cbor_error_string(e));
    unsigned seen = 0;
    while (!cbor_value_at_end(&m)) {
        uint64_t key, ver;
        if (get_u64(&m, "key", &key, err, errlen))
            return -1;
        if (key > 3)
            return et_wire_failf(err, errlen, "unknown key %llu", (unsigned long long)key);
        if (seen & (1u << key))
            return et_wire_failf(err, errlen, "duplicate key %llu", (unsigned long long)key);
        seen |= 1u << key;
        if (cbor_value_at_end(&m))
            return et_wire_failf(err, errlen, "key %llu has no value", (unsigned long long)key);
        switch (key) {
        case 0:
            if (get_u64(&m, "version", &ver, err, errlen))
                return -1;
            if (ver != ET_SET_VERSION)
                return et_wire_failf(err, errlen, "settings document version %llu; this agent reads %d",
                                     (unsigned long long)ver, ET_SET_VERSION);
            break;
        case 1:
            if (get_u64(&m, "fleet version", &s->fleet_version, err, errlen))
                return -1;
            break;
        case 2:
            if (get_u64(&m, "device version", &s->device_version, err, errlen))
                return -1;
            break;
        case 3:
            if (get_entries(&m, s, err, errlen))
                return -1;
            break;
        }
    }
    if ((e = cbor_value_leave_container(&top, &m)))
        return et_wire_failf(err, errlen, "CBOR: %s", cbor_error_string(e));
    if (seen != 0xf)
        return et_wire_failf(err, errlen, "version, fleet version, device version and settings are required");
    if (cbor_value_get_next_byte(&top) != buf + len)
        return et_wire_failf(err, errlen, "trailing bytes after the settings document");
    return et_settings_check(s, err, errlen);
}

int et_settings_decode(const uint8_t *buf, size_t len, et_settings *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    if (!buf || !len || len > ET_SET_DOC_MAX)
        return et_wire_failf(err, errlen, "settings document of %zu bytes (1..%d)", len, ET_SET_DOC_MAX);
    if (decode(buf, len, s, err, errlen)) {
        memset(s, 0, sizeof(*s));
        return -1;
    }
    return 0;
}
