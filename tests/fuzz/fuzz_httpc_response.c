/* fuzz_httpc_response.c - arbitrary bytes as an HTTP response to the socket-free parser.
 * Byte 0 picks options (inflate-on-magic, feed piece size, body cap) so framing splits and
 * the cap paths are explored too; the rest is the response. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpc.h"

static uint8_t zarena[ET_HTTP_ZARENA] __attribute__((aligned(16)));
static char outbuf[ET_HTTP_OUT_CHUNK];

static int sink(void *ud, const char *buf, size_t n)
{
    size_t *total = ud;
    if (n == 0 || n > ET_HTTP_OUT_CHUNK)
        abort(); /* contract: pieces are non-empty and bounded */
    volatile char c = buf[n - 1]; /* touch the bytes: ASan checks they are readable */
    (void)c;
    *total += n;
    return *total > (1u << 22) ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t opt = data[0];
    data++;
    size--;
    static const size_t steps[] = { 1, 3, 17, 4096 };
    size_t step = steps[opt & 3];
    uint64_t cap = (opt & 4) ? 100 : (1u << 20);
    size_t total = 0;
    et_http_parser p;
    et_http_parser_init(&p, zarena, outbuf, cap, (opt & 8) ? 64 : 16384, (opt >> 4) & 1, sink, &total);
    int rc = 0;
    for (size_t i = 0; i < size && rc == 0; i += step) {
        size_t k = size - i < step ? size - i : step;
        rc = et_http_parser_feed(&p, (const char *)data + i, k);
    }
    if (rc == 0)
        rc = et_http_parser_eof(&p);
    if (rc < 0 && p.err == 0)
        abort(); /* a failure always carries a code */
    if (p.body_out != total || total > cap)
        abort();
    if (memchr(p.msg, 0, sizeof(p.msg)) == NULL)
        abort();
    et_http_parser_release(&p);
    return 0;
}
