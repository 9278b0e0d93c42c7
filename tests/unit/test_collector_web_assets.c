/* test_collector_web_assets.c - the web page built into the collector: "/" is the page, the
 * page's scripts and uPlot are there with the right content types, and any other path (a
 * traversal, a prefix, an empty or missing path) misses instead of reaching outside the table. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "web_assets.h"

static void found(const char *path, const char *type_prefix, const char *needle)
{
    const unsigned char *data = NULL;
    size_t len = 0;
    const char *type = NULL;
    assert_int_equal(web_asset_find(path, &data, &len, &type), 0);
    assert_non_null(data);
    assert_true(len > 0);
    assert_non_null(type);
    assert_memory_equal(type, type_prefix, strlen(type_prefix));
    assert_non_null(memmem(data, len, needle, strlen(needle)));
}

static void test_page_and_its_files(void **state)
{
    (void)state;
    found("/", "text/html", "<!doctype html>");
    found("/index.html", "text/html", "/assets/app.js");
    found("/assets/app.js", "text/javascript", "uPlot");
    found("/assets/app.css", "text/css", "{");
    found("/assets/uPlot.min.js", "text/javascript", "uPlot");
    found("/assets/uPlot.min.css", "text/css", ".uplot");
    assert_int_equal(strlen(web_assets_version), 16);
}

static void test_unknown_paths_miss(void **state)
{
    (void)state;
    const char *bad[] = {"", "/assets/", "/assets", "/assets/../index.html", "/../collector/web/app.js",
                         "/assets/app.js/", "/ASSETS/app.js", "/assets/app.js?x=1", "//", "/favicon.ico",
                         "assets/app.js"};
    const unsigned char *data = NULL;
    size_t len = 0;
    const char *type = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(web_asset_find(bad[i], &data, &len, &type), -1);
    assert_int_equal(web_asset_find(NULL, &data, &len, &type), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_and_its_files),
        cmocka_unit_test(test_unknown_paths_miss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
