/* fuzz_collector_alert_http.c - the alert client's two parsers of outside input: the
 * Alertmanager response's status line (from the network) and alertmanager_url (from the
 * config). Byte 0 picks which one gets the rest. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alert_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] & 1) {
        /* exactly n bytes, no terminator: the parser must not read past them */
        char *b = malloc(n ? n : 1);
        if (!b)
            return 0;
        memcpy(b, p, n);
        int code = alert_http_status(b, n);
        if (code != -1 && (code < 100 || code > 999))
            abort();
        free(b);
    } else {
        char *s = malloc(n + 1);
        if (!s)
            return 0;
        memcpy(s, p, n);
        s[n] = 0;
        alert_url u;
        char err[128];
        if (alert_url_parse(s, &u, err, sizeof(err)) == 0) {
            /* what goes into the request line and Host header: bounded and clean */
            if (!u.host[0] || strlen(u.path) >= sizeof(u.path) || strpbrk(u.path, " \r\n?#"))
                abort();
        }
        free(s);
    }
    return 0;
}
