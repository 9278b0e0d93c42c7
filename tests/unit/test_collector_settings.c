/* test_collector_settings.c - central settings at the collector (store_settings.c): versions
 * per scope, the fleet < device merge, the checks done before storing, who is sent a document
 * (only agents that write schema 3, only while they neither run nor refused those versions),
 * and the reports kept in snapshot order. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#define COLL_TESTDB_TAG "settings-test"
#include "coll_testdb.h"

static json_t *J(const char *text)
{
    json_t *o = json_loads(text, 0, NULL);
    assert_non_null(o);
    return o;
}

static int put(coll_store *s, const char *device, const char *text, int64_t *version, char *err)
{
    json_t *o = J(text);
    int rc = store_settings_put(s, device, o, 1790000000000LL, version, err, 160);
    json_decref(o);
    return rc;
}

static const char *value_of(const et_settings *set, const char *name)
{
    for (unsigned i = 0; i < set->n; i++)
        if (!strcmp(set->e[i].name, name))
            return set->e[i].value;
    return "(absent)";
}

static void report(coll_store *s, uint64_t seq, uint64_t f, uint64_t d, uint64_t rf, uint64_t rd, const char *why)
{
    static et_snapshot w;
    memset(&w, 0, sizeof w);
    w.schema = 3;
    w.seq = seq;
    w.set_fleet = f;
    w.set_device = d;
    w.set_rej_fleet = rf;
    w.set_rej_device = rd;
    snprintf(w.set_reason, sizeof w.set_reason, "%s", why);
    assert_int_equal(store_settings_report(s, "gw-1", &w, 1790000000000LL), 0);
}

#define T0 1790000000000LL
#define REDELIVER_MS 30000

static int due(coll_store *s, int64_t now_ms, uint8_t *doc, size_t *n)
{
    return store_settings_due(s, "gw-1", now_ms, REDELIVER_MS, doc, ET_SET_DOC_MAX, n);
}

static void test_versions_merge_and_delivery(void **state)
{
    (void)state;
    coll_store *s = open_db();
    uint8_t psk[16] = {1};
    assert_int_equal(store_device_add(s, "gw-1", psk, sizeof psk, 0), 0);
    char err[160];
    int64_t v = 0;
    /* checked before anything is stored */
    assert_int_equal(put(s, NULL, "{\"spool.dir\":\"/tmp\"}", &v, err), STORE_Q_BADARG);
    assert_non_null(strstr(err, "cannot be set centrally"));
    assert_int_equal(put(s, NULL, "{\"agent.interval\":5}", &v, err), STORE_Q_BADARG);
    assert_int_equal(put(s, "gw-9", "{}", &v, err), STORE_Q_NOTFOUND);
    /* versions rise per scope */
    assert_int_equal(put(s, NULL, "{\"agent.interval\":\"30s\",\"agent.allow\":[\"main.a\",\"main.b\"]}", &v, err),
                     STORE_Q_OK);
    assert_int_equal(v, 1);
    assert_int_equal(put(s, NULL, "{\"agent.interval\":\"20s\",\"agent.allow\":[\"main.a\",\"main.b\"]}", &v, err),
                     STORE_Q_OK);
    assert_int_equal(v, 2);
    assert_int_equal(put(s, "gw-1", "{\"agent.interval\":\"5s\",\"agent.allow\":[\"main.c\"]}", &v, err), STORE_Q_OK);
    assert_int_equal(v, 1);

    /* an agent that never wrote schema 3 is sent nothing (it would refuse the whole answer) */
    uint8_t doc[ET_SET_DOC_MAX];
    size_t n = 0;
    assert_int_equal(due(s, T0, doc, &n), 0);
    report(s, 10, 0, 0, 0, 0, "");
    assert_int_equal(due(s, T0, doc, &n), 1);
    static et_settings set;
    assert_int_equal(et_settings_decode(doc, n, &set, err, sizeof err), 0);
    assert_true(set.fleet_version == 2 && set.device_version == 1);
    /* the device's keys replace the fleet's, its list replaces the fleet's list */
    assert_int_equal(set.n, 2);
    assert_string_equal(value_of(&set, "agent.interval"), "5s");
    assert_string_equal(value_of(&set, "agent.allow"), "main.c");

    /* refused: not sent again until a new version */
    report(s, 11, 0, 0, 2, 1, "agent.interval: bad duration");
    assert_int_equal(due(s, T0, doc, &n), 0);
    json_t *q = NULL;
    assert_int_equal(store_q_settings(s, "gw-1", &q), STORE_Q_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(q, "rejected"), "reason")),
                        "agent.interval: bad duration");
    assert_false(json_is_true(json_object_get(q, "in_sync")));
    json_decref(q);
    /* an older snapshot arriving late (findings go first) does not undo a later report */
    report(s, 9, 0, 0, 0, 0, "");
    assert_int_equal(due(s, T0, doc, &n), 0);
    /* a new device version: sent; once applied, not any more */
    assert_int_equal(put(s, "gw-1", "{\"agent.interval\":\"6s\"}", &v, err), STORE_Q_OK);
    assert_int_equal(v, 2);
    assert_int_equal(due(s, T0, doc, &n), 1);
    report(s, 12, 2, 2, 0, 0, "");
    assert_int_equal(due(s, T0, doc, &n), 0);
    assert_int_equal(store_q_settings(s, "gw-1", &q), STORE_Q_OK);
    assert_true(json_is_true(json_object_get(q, "in_sync")));
    assert_true(json_is_null(json_object_get(q, "rejected")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(q, "effective"), "agent.interval")), "6s");
    json_decref(q);
    assert_int_equal(store_q_settings(s, NULL, &q), STORE_Q_OK);
    assert_int_equal(json_integer_value(json_object_get(q, "version")), 2);
    json_decref(q);
    store_close(s);
}

/* A document not yet reported is handed out again only after the quiet period (one answer
 * per upload on a metered link would otherwise carry it every time), per device, and at
 * once when a version changes. */
static void test_redelivery_throttled(void **state)
{
    (void)state;
    coll_store *s = open_db();
    uint8_t psk[16] = {1};
    assert_int_equal(store_device_add(s, "gw-1", psk, sizeof psk, 0), 0);
    assert_int_equal(store_device_add(s, "gw-2", psk, sizeof psk, 0), 0);
    char err[160];
    int64_t v = 0;
    assert_int_equal(put(s, NULL, "{\"agent.interval\":\"20s\"}", &v, err), STORE_Q_OK);
    report(s, 1, 0, 0, 0, 0, "");
    static et_snapshot w;
    memset(&w, 0, sizeof w);
    w.schema = 3;
    w.seq = 1;
    assert_int_equal(store_settings_report(s, "gw-2", &w, T0), 0);
    uint8_t doc[ET_SET_DOC_MAX];
    size_t n = 0;
    assert_int_equal(due(s, T0, doc, &n), 1);
    assert_true(n > 0);
    /* the next answers within the period carry nothing */
    assert_int_equal(due(s, T0 + 1000, doc, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(due(s, T0 + REDELIVER_MS - 1, doc, &n), 0);
    /* per device: another device is sent its copy */
    assert_int_equal(store_settings_due(s, "gw-2", T0 + 1000, REDELIVER_MS, doc, sizeof doc, &n), 1);
    /* after the period (that answer may have been lost): again, then quiet again */
    assert_int_equal(due(s, T0 + REDELIVER_MS, doc, &n), 1);
    assert_int_equal(due(s, T0 + REDELIVER_MS + 1, doc, &n), 0);
    /* a new version goes out at once */
    assert_int_equal(put(s, "gw-1", "{\"agent.interval\":\"7s\"}", &v, err), STORE_Q_OK);
    assert_int_equal(due(s, T0 + REDELIVER_MS + 2, doc, &n), 1);
    static et_settings set;
    assert_int_equal(et_settings_decode(doc, n, &set, err, sizeof err), 0);
    assert_true(set.fleet_version == 1 && set.device_version == 1);
    assert_int_equal(due(s, T0 + REDELIVER_MS + 3, doc, &n), 0);
    /* a report keeps the mark: the same versions are still not re-sent early */
    report(s, 2, 0, 0, 0, 0, "");
    assert_int_equal(due(s, T0 + REDELIVER_MS + 4, doc, &n), 0);
    assert_int_equal(due(s, T0 + 2 * REDELIVER_MS + 2, doc, &n), 1);
    /* the device re-sent a snapshot we hold (it did not hear that answer): at once, period 0 */
    assert_int_equal(due(s, T0 + 2 * REDELIVER_MS + 3, doc, &n), 0);
    assert_int_equal(store_settings_due(s, "gw-1", T0 + 2 * REDELIVER_MS + 3, 0, doc, sizeof doc, &n), 1);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_versions_merge_and_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redelivery_throttled, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
