/* test_command.c - the downlink command document (wire/command.h): round trip, the strict
 * decoder's refusals, and the answer split that keeps old agents reading the diagnostic. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "command.h"
#include "capture.h"

static et_cmd_list two(void)
{
    et_cmd_list l;
    memset(&l, 0, sizeof l);
    l.n = 2;
    l.c[0] = (et_cmd){.id = 7, .expiry_ms = 1790000000000ull, .kind = ET_CMD_TRACE, .seconds = 5};
    strcpy(l.c[0].target, "svc-a:8080");
    l.c[1] = (et_cmd){.id = 8, .expiry_ms = 1790000000001ull, .kind = ET_CMD_REDISCOVER};
    return l;
}

static void test_round_trip(void **state)
{
    (void)state;
    et_cmd_list l = two(), back;
    uint8_t buf[ET_CMD_DOC_MAX];
    size_t n = 0;
    char err[128];
    assert_int_equal(et_cmd_encode(&l, buf, sizeof buf, &n, err, sizeof err), 0);
    assert_int_equal(et_cmd_decode(buf, n, &back, err, sizeof err), 0);
    assert_int_equal(back.n, 2);
    assert_memory_equal(&l, &back, sizeof l);
    assert_string_equal(et_cmd_kind_name(ET_CMD_GOROUTINE_DEBUG2), "goroutine-debug2");
    assert_int_equal(et_cmd_kind_parse("goroutineleak"), ET_CMD_GOROUTINELEAK);
    assert_int_equal(et_cmd_kind_parse("nope"), 0);
}

static void expect_refused(const uint8_t *b, size_t n, const char *why)
{
    et_cmd_list l;
    char err[160] = "";
    assert_int_equal(et_cmd_decode(b, n, &l, err, sizeof err), -1);
    assert_int_equal(l.n, 0);
    if (!strstr(err, why))
        fail_msg("reason '%s' does not mention '%s'", err, why);
}

static void test_strict(void **state)
{
    (void)state;
    /* {0:1, 1:[{1:7,2:9,3:1,4:"t",5:31}]} : seconds out of range */
    const uint8_t secs[] = {0xa2, 0, 1, 1, 0x81, 0xa5, 1, 7, 2, 9, 3, 1, 4, 0x61, 't', 5, 0x18, 31};
    expect_refused(secs, sizeof secs, "seconds");
    /* unknown kind 6 */
    const uint8_t kind[] = {0xa2, 0, 1, 1, 0x81, 0xa4, 1, 7, 2, 9, 3, 6, 4, 0x61, 't'};
    expect_refused(kind, sizeof kind, "kind");
    /* heap without a target */
    const uint8_t notarget[] = {0xa2, 0, 1, 1, 0x81, 0xa3, 1, 7, 2, 9, 3, 4};
    expect_refused(notarget, sizeof notarget, "needs a target");
    /* id 0 */
    const uint8_t id0[] = {0xa2, 0, 1, 1, 0x81, 0xa3, 1, 0, 2, 9, 3, 5};
    expect_refused(id0, sizeof id0, "id 0");
    /* duplicate key inside a command */
    const uint8_t dup[] = {0xa2, 0, 1, 1, 0x81, 0xa4, 1, 7, 1, 8, 2, 9, 3, 5};
    expect_refused(dup, sizeof dup, "duplicate");
    /* unknown top-level key 3 */
    const uint8_t top[] = {0xa3, 0, 1, 1, 0x80, 3, 0};
    expect_refused(top, sizeof top, "out of range");
    /* key 2 (settings) must be a byte string */
    const uint8_t set[] = {0xa3, 0, 1, 1, 0x80, 2, 0};
    expect_refused(set, sizeof set, "settings: expected a byte string");
    /* a later document version */
    const uint8_t ver[] = {0xa2, 0, 2, 1, 0x80};
    expect_refused(ver, sizeof ver, "version 2");
    /* trailing byte */
    const uint8_t trail[] = {0xa2, 0, 1, 1, 0x80, 0};
    expect_refused(trail, sizeof trail, "CBOR");
    /* nine commands */
    uint8_t nine[96] = {0xa2, 0, 1, 1, 0x89};
    size_t n = 5;
    for (int i = 0; i < 9; i++) {
        const uint8_t c[] = {0xa3, 1, (uint8_t)(i + 1), 2, 9, 3, 5};
        memcpy(nine + n, c, sizeof c);
        n += sizeof c;
    }
    expect_refused(nine, n, "more than 8");
    /* a trace without seconds gets the default */
    const uint8_t def[] = {0xa2, 0, 1, 1, 0x81, 0xa4, 1, 7, 2, 9, 3, 1, 4, 0x61, 't'};
    et_cmd_list l;
    char err[128];
    assert_int_equal(et_cmd_decode(def, sizeof def, &l, err, sizeof err), 0);
    assert_int_equal(l.c[0].seconds, ET_CMD_SECONDS_DEFAULT);
}

static void test_split(void **state)
{
    (void)state;
    const uint8_t *doc;
    const uint8_t plain[] = "new abc s=2";
    assert_int_equal(et_cmd_split_answer(plain, sizeof plain - 1, &doc), 0);
    assert_null(doc);
    const uint8_t with[] = {'d', 'u', 'p', ' ', 's', '=', '2', 0, 0xa2, 0, 1, 1, 0x80};
    assert_int_equal(et_cmd_split_answer(with, sizeof with, &doc), 5);
    assert_ptr_equal(doc, with + 8);
    /* what an agent before commands does with the answer: a C string up to the NUL */
    assert_string_equal((const char *)with, "dup s=2");
}

/* "r=ID" started reports: round trip, and the hostile values refused. */
static void test_started_query(void **state)
{
    (void)state;
    char q[24];
    uint64_t id = 0;
    int n = et_cmd_started_format(18446744073709551615ull, q, sizeof q);
    assert_string_equal(q, "r=18446744073709551615");
    assert_int_equal(et_cmd_started_parse((const uint8_t *)q, (size_t)n, &id), 0);
    assert_true(id == 18446744073709551615ull);
    assert_int_equal(et_cmd_started_parse((const uint8_t *)"r=7", 3, &id), 0);
    assert_int_equal(id, 7);
    static const char *const bad[] = {"r=", "r=0", "r=07", "r=-1", "r=1x", "d=gw", "r=18446744073709551616",
                                      "r=99999999999999999999", "R=1", "r=1 "};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(et_cmd_started_parse((const uint8_t *)bad[i], strlen(bad[i]), &id), -1);
    assert_int_equal(et_cmd_started_parse(NULL, 0, &id), -1);
}

/* The capture record: round trip with its data in place, and the refusals. */
static void test_capture_record(void **state)
{
    (void)state;
    static uint8_t data[ET_CAPTURE_DATA_MAX], wire[ET_CAPTURE_WIRE_MAX];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 31);
    et_capture c = {.cmd_id = 9, .kind = ET_CMD_TRACE, .cut = 1, .wall_ms = 5, .data = data, .len = sizeof data};
    strcpy(c.target, "svc");
    size_t n;
    char err[160];
    assert_int_equal(et_capture_encode(&c, wire, sizeof wire, &n, err, sizeof err), 0);
    assert_true(et_capture_is(wire, n));
    et_capture d;
    assert_int_equal(et_capture_decode(wire, n, &d, err, sizeof err), 0);
    assert_int_equal(d.cmd_id, 9);
    assert_int_equal(d.kind, ET_CMD_TRACE);
    assert_true(d.cut);
    assert_int_equal(d.len, sizeof data);
    assert_memory_equal(d.data, data, sizeof data);
    assert_true(d.data > wire && d.data + d.len <= wire + n);
    /* one byte more than the cap is refused by the encoder */
    c.len = sizeof data + 1;
    assert_int_equal(et_capture_encode(&c, wire, sizeof wire, &n, err, sizeof err), -1);
    /* a snapshot envelope is not a capture; a later version is refused; a truncated one too */
    const uint8_t snap[] = {'E', 'T', 1, 0, 0xa0};
    assert_false(et_capture_is(snap, sizeof snap));
    c.len = 10;
    assert_int_equal(et_capture_encode(&c, wire, sizeof wire, &n, err, sizeof err), 0);
    wire[2] = 2;
    assert_int_equal(et_capture_decode(wire, n, &d, err, sizeof err), -1);
    wire[2] = 1;
    assert_int_equal(et_capture_decode(wire, n - 1, &d, err, sizeof err), -1);
    /* rediscover is not a capture kind */
    c.kind = ET_CMD_REDISCOVER;
    assert_int_equal(et_capture_encode(&c, wire, sizeof wire, &n, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_strict),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_started_query),
        cmocka_unit_test(test_capture_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
