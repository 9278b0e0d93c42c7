/* pprof_export.h - writes a goroutine profile in pprof's profile.proto format, gzipped, from
 * stored sites and stacks, so `go tool pprof` opens the collector's evidence directly.
 *
 * The encoder is written here by hand (profile.proto is small and stable; see
 * github.com/google/pprof/proto/profile.proto): sample type goroutine/count, period
 * goroutine/count 1, one Function per (name, file), one Location per (function, line), one
 * placeholder Mapping that says functions, file names and lines are present (so pprof never
 * tries to symbolize). gzip through zlib.
 *
 * Usage: b = pprof_new(); pprof_add_sample(b, frames, n, count)...; pprof_finish_gz(b, ...). */
#ifndef COLL_PPROF_EXPORT_H
#define COLL_PPROF_EXPORT_H

#include <stddef.h>
#include <stdint.h>

typedef struct pprof_frame {
    const char *function;  /* "main.(*Pipeline).aggregate" */
    const char *file;      /* may be NULL or "" */
    int64_t line;
} pprof_frame;

typedef struct pprof_builder pprof_builder;

pprof_builder *pprof_new(void);
/* One sample: frames[0] is the leaf (where the goroutines wait), frames[n-1] the root.
 * Returns 0, or -1 on allocation failure or when the profile's limits are reached. */
int pprof_add_sample(pprof_builder *b, const pprof_frame *frames, size_t n, int64_t count);
/* Encodes, gzips and frees the builder. *out is malloc'ed (caller frees). 0 ok, -1 error. */
int pprof_finish_gz(pprof_builder *b, int64_t time_ms, uint8_t **out, size_t *outlen);
void pprof_free(pprof_builder *b);

/* The uncompressed encoding (for tests). Does not free the builder. */
int pprof_encode(pprof_builder *b, int64_t time_ms, uint8_t **out, size_t *outlen);

#endif
