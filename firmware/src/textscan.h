/* textscan.h - the small scanning primitives the line-oriented parsers share (goroutine and
 * heap text profiles, /proc files). Pure functions over (pointer, length): no NUL
 * terminator is needed, nothing is allocated, nothing reads past len. */
#ifndef ET_TEXTSCAN_H
#define ET_TEXTSCAN_H

#include <stddef.h>
#include <stdint.h>

/* 1 if s[0..len) starts with lit[0..litlen). */
int et_txt_starts(const char *s, size_t len, const char *lit, size_t litlen);
/* Parses a decimal at s; returns the digits consumed (0 if none). Saturates at UINT64_MAX
 * instead of wrapping: hostile input must not turn a huge count into a small one. */
size_t et_txt_u64(const char *s, size_t len, uint64_t *v);
/* Splits "path/file.go:123 +0x1f" (or "...:123" at the end) at the last ':' that is followed
 * by digits and then a blank or the end. 1 with *flen and *line set, 0 if there is none. */
int et_txt_file_line(const char *s, size_t len, size_t *flen, uint32_t *line);
/* 1 if the text (after blanks and a UTF-8 BOM) starts with '<': an HTML error page where a
 * profile was expected. */
int et_txt_looks_like_html(const char *s, size_t len);

#endif
