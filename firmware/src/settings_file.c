/* settings_file.c - encoder and strict decoder of the kept settings file (settings_file.h). */
#include "settings_file.h"

#include <string.h>

#include <tinycbor/cbor.h>

#include "command.h" /* et_wire_failf */

int et_settings_file_encode(const et_settings_kept *k, uint8_t *out, size_t cap, size_t *n)
{
    CborEncoder enc, arr;
    cbor_encoder_init(&enc, out, cap, 0);
    CborError e = cbor_encoder_create_array(&enc, &arr, 5);
    e |= cbor_encode_uint(&arr, ET_SET_FILE_VERSION);
    e |= cbor_encode_byte_string(&arr, k->doc, k->doclen);
    e |= cbor_encode_uint(&arr, k->rej_fleet);
    e |= cbor_encode_uint(&arr, k->rej_device);
    e |= cbor_encode_text_stringz(&arr, k->reason);
    e |= cbor_encoder_close_container(&enc, &arr);
    if (e)
        return -1;
    *n = cbor_encoder_get_buffer_size(&enc, out);
    return 0;
}

static int get_uint(CborValue *v, const char *name, uint64_t *out, char *err, size_t errlen)
{
    if (!cbor_value_is_unsigned_integer(v))
        return et_wire_failf(err, errlen, "%s: expected an unsigned integer", name);
    cbor_value_get_uint64(v, out);
    return cbor_value_advance_fixed(v) ? et_wire_failf(err, errlen, "%s: bad CBOR", name) : 0;
}

static int decode(const uint8_t *buf, size_t len, et_settings_kept *k, char *err, size_t errlen)
{
    CborParser p;
    CborValue top, a;
    CborError e = cbor_parser_init(buf, len, 0, &p, &top);
    if (!e)
        e = cbor_value_validate(&top, CborValidateCompleteData | CborValidateUtf8 | CborValidateNoTags);
    if (e)
        return et_wire_failf(err, errlen, "CBOR: %s", cbor_error_string(e));
    size_t items = 0;
    if (!cbor_value_is_array(&top) || cbor_value_get_array_length(&top, &items) || items != 5)
        return et_wire_failf(err, errlen, "expected an array of 5");
    if (cbor_value_enter_container(&top, &a))
        return et_wire_failf(err, errlen, "CBOR: cannot enter the array");
    uint64_t ver;
    if (get_uint(&a, "file version", &ver, err, errlen))
        return -1;
    if (ver != ET_SET_FILE_VERSION)
        return et_wire_failf(err, errlen, "file version %llu; this agent reads %d", (unsigned long long)ver,
                             ET_SET_FILE_VERSION);
    size_t n = 0;
    if (!cbor_value_is_byte_string(&a) || cbor_value_calculate_string_length(&a, &n) || n > sizeof k->doc)
        return et_wire_failf(err, errlen, "applied document: expected at most %d bytes", ET_SET_DOC_MAX);
    n = sizeof k->doc;
    if (cbor_value_copy_byte_string(&a, k->doc, &n, &a))
        return et_wire_failf(err, errlen, "applied document: bad CBOR");
    k->doclen = n;
    if (get_uint(&a, "refused fleet version", &k->rej_fleet, err, errlen) ||
        get_uint(&a, "refused device version", &k->rej_device, err, errlen))
        return -1;
    n = 0;
    if (!cbor_value_is_text_string(&a) || cbor_value_calculate_string_length(&a, &n) || n >= sizeof k->reason)
        return et_wire_failf(err, errlen, "reason: expected < %d bytes of text", ET_SET_REASON_MAX);
    n = sizeof k->reason - 1;
    if (cbor_value_copy_text_string(&a, k->reason, &n, &a))
        return et_wire_failf(err, errlen, "reason: bad CBOR");
    k->reason[n] = 0;
    if (memchr(k->reason, 0, n))
        return et_wire_failf(err, errlen, "reason: contains a NUL byte");
    if (cbor_value_leave_container(&top, &a) || cbor_value_get_next_byte(&top) != buf + len)
        return et_wire_failf(err, errlen, "trailing bytes");
    return 0;
}

int et_settings_file_decode(const uint8_t *buf, size_t len, et_settings_kept *k, char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    if (!buf || !len || len > ET_SET_FILE_MAX)
        return et_wire_failf(err, errlen, "settings file of %zu bytes (1..%d)", len, ET_SET_FILE_MAX);
    if (decode(buf, len, k, err, errlen)) {
        memset(k, 0, sizeof *k);
        return -1;
    }
    return 0;
}
