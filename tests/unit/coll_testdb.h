/* coll_testdb.h - a throw-away collector database per test (the collector unit suites).
 *
 * Define COLL_TESTDB_TAG ("store-test", ...) before including: the file is
 * /tmp/et-<tag>-<pid>.db, removed with its -wal and -shm before and after each test.
 * With ET_TEST_PG_URL set (test_collector_pg.py does), a suite that runs on both backends uses
 * that PostgreSQL database instead, emptied (schema public dropped) before and after each test. */
#ifndef COLL_TESTDB_H
#define COLL_TESTDB_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "store.h"

static char dbpath[512];

static inline const char *test_pg_url(void)
{
    const char *u = getenv("ET_TEST_PG_URL");
    return u && *u ? u : NULL;
}

static inline void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static inline void rm_db(void)
{
    if (test_pg_url()) {
        PGconn *c = PQconnectdb(test_pg_url());
        PQsetNoticeProcessor(c, quiet_notice, NULL); /* "drop cascades to ...": one line per table */
        PGresult *r = PQexec(c, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        PQfinish(c);
        if (!ok)
            fail_msg("emptying %s failed", test_pg_url());
        return;
    }
    char p[sizeof(dbpath) + 8];
    unlink(dbpath);
    snprintf(p, sizeof(p), "%s-wal", dbpath);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", dbpath);
    unlink(p);
}

static inline int setup(void **state)
{
    (void)state;
    if (test_pg_url())
        snprintf(dbpath, sizeof(dbpath), "%s", test_pg_url());
    else
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
