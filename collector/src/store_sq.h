/* store_sq.h - one prepared query on either backend, for the read side and the rarely written
 * tables (store_query.c, store_cli.c, store_cmd.c): the SQL is written once, in the dialect
 * both engines share, so a query answers the same JSON on SQLite and on PostgreSQL without a
 * second copy of it.
 *
 * Parameters are spelled ?1, ?2 ... (PostgreSQL gets them as $1, $2 ...). The SQL must stay in
 * the common dialect: CAST(x AS TEXT) rather than ::text, no scalar min()/max(), no CROSS JOIN
 * ... ON, no boolean in a result column (PostgreSQL's 't'/'f' are read as 1/0 all the same).
 * The hot write path (store_put.c, store_pg.c) keeps its own prepared statements. */
#ifndef COLL_STORE_SQ_H
#define COLL_STORE_SQ_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct sq sq;
enum { SQ_NULL, SQ_INT, SQ_REAL, SQ_TEXT };

/* NULL on error (store_errmsg says why) */
sq *sq_prep(coll_store *s, const char *sql);
void sq_text(sq *q, int i, const char *v); /* NULL binds NULL */
void sq_i64(sq *q, int i, int64_t v);
void sq_blob(sq *q, int i, const void *p, size_t n);
/* 1 = a row, 0 = done, -1 = error */
int sq_step(sq *q);
int sq_ncols(sq *q);
const char *sq_name(sq *q, int c);
int sq_type(sq *q, int c);
int sq_isnull(sq *q, int c);
int64_t sq_int(sq *q, int c);   /* 0 for NULL */
double sq_real(sq *q, int c);   /* 0 for NULL */
const char *sq_str(sq *q, int c); /* NULL for NULL */
/* the bytes of a blob column, valid until the next step; *n its length */
const void *sq_bytes(sq *q, int c, size_t *n);
void sq_done(sq *q);
/* run a statement without rows: 0 or -1; *id (may be NULL) gets the value of the first column of
 * a RETURNING clause */
int sq_exec(sq *q, int64_t *id);

#endif
