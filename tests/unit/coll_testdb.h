/* coll_testdb.h - a throw-away collector database per test (the collector unit suites).
 *
 * Define COLL_TESTDB_TAG ("store-test", ...) before including: the file is
 * /tmp/et-<tag>-<pid>.db, removed with its -wal and -shm before and after each test. */
#ifndef COLL_TESTDB_H
#define COLL_TESTDB_H

#include <stdio.h>
#include <unistd.h>

#include "store.h"

static char dbpath[128];

static inline void rm_db(void)
{
    char p[160];
    unlink(dbpath);
    snprintf(p, sizeof(p), "%s-wal", dbpath);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", dbpath);
    unlink(p);
}

static inline int setup(void **state)
{
    (void)state;
    snprintf(dbpath, sizeof(dbpath), "/tmp/et-%s-%d.db", COLL_TESTDB_TAG, (int)getpid());
    rm_db();
    return 0;
}

static inline int teardown(void **state)
{
    (void)state;
    rm_db();
    return 0;
}

static inline coll_store *open_db(void)
{
    char err[256];
    coll_store *s = store_open(dbpath, err, sizeof(err));
    if (!s)
        fail_msg("store_open: %s", err);
    return s;
}

#endif
