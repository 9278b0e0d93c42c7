/* test_collector_keys.c - device keys in the store (collector/src/store_keys.c): the database
 * files are 0600 even under umask 000; rotation keeps the old key until promote; revoke erases
 * the keys and keeps the device listed; keys provisioned before the table existed are
 * carried over. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "store_keys.h"

#define COLL_TESTDB_TAG "keys-test"
#include "coll_testdb.h"

static int mode_of(const char *suffix)
{
    char p[sizeof(dbpath) + 16];
    struct stat st;
    snprintf(p, sizeof(p), "%s%s", dbpath, suffix);
    if (stat(p, &st))
        return -1;
    return (int)(st.st_mode & 0777);
}

static void test_files_0600_under_umask_000(void **state)
{
    (void)state;
    mode_t old = umask(0);
    coll_store *s = open_db(); /* no prepare: store_open itself tightens */
    uint8_t psk[32] = {1};
    assert_int_equal(store_keys_set(s, "gw-1", psk, sizeof(psk)), 0);
    assert_int_equal(mode_of(""), 0600);
    assert_int_equal(mode_of("-wal"), 0600);
    assert_int_equal(mode_of("-shm"), 0600);
    store_close(s);
    rm_db();
    char err[256];
    assert_int_equal(store_keys_prepare_file(dbpath, err, sizeof(err)), 0); /* created 0600 up front */
    assert_int_equal(mode_of(""), 0600);
    umask(old);
}

static void test_rotate_promote_revoke(void **state)
{
    (void)state;
    coll_store *s = open_db();
    uint8_t a[32], b[32];
    memset(a, 0xaa, sizeof(a));
    memset(b, 0xbb, sizeof(b));
    store_key_state k;
    assert_int_equal(store_keys_get(s, "gw-1", &k, NULL), 0);
    assert_int_equal(store_keys_rotate(s, "gw-1", b, sizeof(b), 1), 0); /* unknown device */
    assert_int_equal(store_keys_set(s, "gw-1", a, sizeof(a)), 0);
    assert_int_equal(store_keys_rotate(s, "gw-1", b, sizeof(b), 12345), 1);
    struct sqlite3_stmt *cache = NULL;
    assert_int_equal(store_keys_get(s, "gw-1", &k, &cache), 1);
    assert_memory_equal(k.psk, a, 32);
    assert_int_equal(k.next_len, 32);
    assert_memory_equal(k.next_psk, b, 32);
    assert_int_equal(k.next_deadline_ms, 12345);
    assert_int_equal(k.revoked_ms, 0);
    assert_int_equal(store_keys_promote(s, "gw-1"), 1);
    assert_int_equal(store_keys_promote(s, "gw-1"), 0); /* nothing left to promote */
    assert_int_equal(store_keys_get(s, "gw-1", &k, &cache), 1);
    assert_memory_equal(k.psk, b, 32);
    assert_int_equal(k.next_len, 0);
    assert_int_equal(store_keys_revoke(s, "gw-1", 777), 1);
    assert_int_equal(store_keys_get(s, "gw-1", &k, &cache), 1);
    assert_int_equal(k.psk_len, 0); /* erased */
    assert_int_equal(k.revoked_ms, 777);
    assert_int_equal(store_keys_rotate(s, "gw-1", a, sizeof(a), 1), 0); /* a revoked device is not rotated */
    assert_int_equal(store_keys_revoke(s, "gw-nobody", 1), 0);
    store_keys_wipe(&k);
    for (size_t i = 0; i < sizeof(k); i++)
        assert_int_equal(((uint8_t *)&k)[i], 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(store_keys_list(s, 1, f), 1);
    fclose(f);
    assert_non_null(strstr(buf, "\"device\":\"gw-1\",\"state\":\"revoked\",\"revoked_at\":777"));
    free(buf);
    /* provision --force: a fresh key clears the revocation */
    assert_int_equal(store_keys_set(s, "gw-1", a, sizeof(a)), 0);
    assert_int_equal(store_keys_get(s, "gw-1", &k, &cache), 1);
    assert_int_equal(k.revoked_ms, 0);
    assert_memory_equal(k.psk, a, 32);
    store_keys_forget(&cache);
    store_close(s);
}

/* Databases provisioned before device_keys existed: the keys move over when opened. */
static void test_keys_carried_over_from_devices(void **state)
{
    (void)state;
    coll_store *s = open_db();
    uint8_t a[32];
    memset(a, 0x5a, sizeof(a));
    assert_int_equal(store_device_add(s, "gw-old", a, sizeof(a), 0), 0);
    assert_int_equal(sqlite3_exec(store_db(s), "DELETE FROM device_keys", NULL, NULL, NULL), SQLITE_OK);
    store_close(s);
    s = open_db();
    store_key_state k;
    assert_int_equal(store_keys_get(s, "gw-old", &k, NULL), 1);
    assert_memory_equal(k.psk, a, 32);
    store_keys_wipe(&k);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_files_0600_under_umask_000, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_promote_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_carried_over_from_devices, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
