/* textscan.c - shared scanning primitives of the text parsers. See textscan.h. */
#include "textscan.h"

#include <string.h>

int et_txt_starts(const char *s, size_t len, const char *lit, size_t litlen)
{
    return len >= litlen && memcmp(s, lit, litlen) == 0;
}

size_t et_txt_u64(const char *s, size_t len, uint64_t *v)
{
    uint64_t x = 0;
    size_t i = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        uint64_t d = (uint64_t)(s[i] - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
        i++;
    }
    *v = x;
    return i;
}

int et_txt_file_line(const char *s, size_t len, size_t *flen, uint32_t *line)
{
    size_t end = len;
    while (end > 0) {
        const char *c = memrchr(s, ':', end);
        if (!c)
            return 0;
        size_t pos = (size_t)(c - s);
        uint64_t v;
        size_t nd = et_txt_u64(s + pos + 1, len - pos - 1, &v);
        if (nd > 0 && (pos + 1 + nd == len || s[pos + 1 + nd] == ' ' || s[pos + 1 + nd] == '\t')) {
            *flen = pos;
            *line = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
            return 1;
        }
        end = pos;
    }
    return 0;
}

int et_txt_looks_like_html(const char *s, size_t len)
{
    while (len && (*s == ' ' || *s == '\t' || *s == '\xef' || *s == '\xbb' || *s == '\xbf'))
        s++, len--;
    return len > 0 && s[0] == '<';
}
