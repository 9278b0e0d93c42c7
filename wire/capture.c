/* capture.c - encoder and strict decoder of the capture record (capture.h). */
#include "capture.h"

#include <stdio.h>
#include <string.h>

#include <tinycbor/cbor.h>

#define failf et_wire_failf

int et_capture_is(const uint8_t *buf, size_t len) { return len >= 4 && buf[0] == 'E' && buf[1] == ET_CAPTURE_MAGIC1; }

int et_capture_encode(const et_capture *c, uint8_t *out, size_t cap, size_t *n, char *err, size_t errlen)
{
    if (!c->cmd_id || c->kind < ET_CMD_TRACE || c->kind > ET_CMD_HEAP || c->len > ET_CAPTURE_DATA_MAX || cap < 4)
        return failf(err, errlen, "capture: invalid fields");
    out[0] = 'E', out[1] = ET_CAPTURE_MAGIC1, out[2] = ET_CAPTURE_VERSION, out[3] = c->zstd ? ET_CAPTURE_F_ZSTD : 0;
    CborEncoder enc, m;
    cbor_encoder_init(&enc, out + 4, cap - 4, 0);
    CborError e = cbor_encoder_create_map(&enc, &m, 7);
    e |= cbor_encode_uint(&m, 1);
    e |= cbor_encode_uint(&m, c->cmd_id);
    e |= cbor_encode_uint(&m, 2);
    e |= cbor_encode_uint(&m, c->kind);
    e |= cbor_encode_uint(&m, 3);
    e |= cbor_encode_text_string(&m, c->target, strnlen(c->target, ET_CMD_TARGET_MAX - 1));
    e |= cbor_encode_uint(&m, 4);
    e |= cbor_encode_boolean(&m, c->cut != 0);
    e |= cbor_encode_uint(&m, 5);
    e |= cbor_encode_text_string(&m, c->error, strnlen(c->error, ET_CAPTURE_ERR_MAX - 1));
    e |= cbor_encode_uint(&m, 6);
    e |= cbor_encode_byte_string(&m, c->data ? c->data : (const uint8_t *)"", c->len);
    e |= cbor_encode_uint(&m, 7);
    e |= cbor_encode_uint(&m, c->wall_ms);
    e |= cbor_encoder_close_container(&enc, &m);
    if (e)
        return failf(err, errlen, "capture: %s", cbor_error_string(e));
    *n = 4 + cbor_encoder_get_buffer_size(&enc, out + 4);
    return 0;
}

static int get_text(CborValue *v, const char *name, char *buf, size_t cap, char *err, size_t errlen)
{
    size_t len = 0;
    if (!cbor_value_is_text_string(v) || cbor_value_calculate_string_length(v, &len) || len >= cap)
        return failf(err, errlen, "%s: expected a text string shorter than %zu bytes", name, cap);
    size_t n = cap - 1;
    if (cbor_value_copy_text_string(v, buf, &n, v))
        return failf(err, errlen, "%s: unreadable", name);
    buf[n] = 0;
    return memchr(buf, 0, n) ? failf(err, errlen, "%s: contains a NUL byte", name) : 0;
}

int et_capture_decode(const uint8_t *buf, size_t len, et_capture *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    if (!et_capture_is(buf, len))
        return failf(err, errlen, "not a capture record");
    if (buf[2] != ET_CAPTURE_VERSION || (buf[3] & ~ET_CAPTURE_F_ZSTD))
        return failf(err, errlen, "capture record version %u flags %u unknown", buf[2], buf[3]);
    c->zstd = buf[3] & ET_CAPTURE_F_ZSTD;
    CborParser p;
    CborValue top, m;
    if (cbor_parser_init(buf + 4, len - 4, 0, &p, &top) ||
        cbor_value_validate(&top, CborValidateCompleteData | CborValidateUtf8 | CborValidateNoTags |
                                      CborValidateNoUndefined) ||
        !cbor_value_is_map(&top) || cbor_value_enter_container(&top, &m))
        return failf(err, errlen, "capture: not one well-formed CBOR map");
    unsigned seen = 0;
    while (!cbor_value_at_end(&m)) {
        uint64_t key, x;
        if (!cbor_value_is_unsigned_integer(&m) || cbor_value_get_uint64(&m, &key) || key < 1 || key > 7)
            return failf(err, errlen, "capture: unknown key");
        if (seen & (1u << key))
            return failf(err, errlen, "capture: duplicate key %u", (unsigned)key);
        seen |= 1u << key;
        if (cbor_value_advance_fixed(&m) || cbor_value_at_end(&m))
            return failf(err, errlen, "capture: key %u has no value", (unsigned)key);
        if (key == 1 || key == 2 || key == 7) {
            if (!cbor_value_is_unsigned_integer(&m) || cbor_value_get_uint64(&m, &x))
                return failf(err, errlen, "capture: key %u: expected an unsigned integer", (unsigned)key);
            if ((key == 1 && !x) || (key == 2 && (x < ET_CMD_TRACE || x > ET_CMD_HEAP)))
                return failf(err, errlen, "capture: key %u: %llu out of range", (unsigned)key, (unsigned long long)x);
            if (key == 1)
                c->cmd_id = x;
            else if (key == 2)
                c->kind = (uint8_t)x;
            else
                c->wall_ms = x;
            cbor_value_advance_fixed(&m);
        } else if (key == 3) {
            if (get_text(&m, "target", c->target, sizeof(c->target), err, errlen))
                return -1;
        } else if (key == 5) {
            if (get_text(&m, "error", c->error, sizeof(c->error), err, errlen))
                return -1;
        } else if (key == 4) {
            bool b;
            if (!cbor_value_is_boolean(&m) || cbor_value_get_boolean(&m, &b))
                return failf(err, errlen, "capture: cut: expected a boolean");
            c->cut = b;
            cbor_value_advance_fixed(&m);
        } else {
            size_t n = 0;
            /* a definite-length byte string: the data is used in place, never copied */
            if (!cbor_value_is_byte_string(&m) || !cbor_value_is_length_known(&m) ||
                cbor_value_get_string_length(&m, &n) || n > ET_CAPTURE_DATA_MAX)
                return failf(err, errlen, "capture: data: a byte string of at most %u bytes expected",
                             ET_CAPTURE_DATA_MAX);
            const uint8_t *next = cbor_value_get_next_byte(&m);
            if (cbor_value_advance(&m))
                return failf(err, errlen, "capture: data: unreadable");
            c->data = cbor_value_get_next_byte(&m) - n;
            c->len = n;
            if (c->data < next)
                return failf(err, errlen, "capture: data: unreadable");
        }
    }
    if (cbor_value_leave_container(&top, &m))
        return failf(err, errlen, "capture: unreadable map");
    if (seen != 0xfe)
        return failf(err, errlen, "capture: every key 1..7 is required");
    return 0;
}
