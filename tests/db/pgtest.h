/*
 * tests/db/pgtest.h - how the db tests find their PostgreSQL and get a database of their own.
 *
 * ctest starts one private server per run (pg_harness.sh, a FIXTURES_SETUP test) and passes its
 * state folder in WABRIDGE_TEST_PG_STATE; the folder's `conninfo` file holds the libpq connection
 * string without a database name. To run against another server, set WABRIDGE_TEST_PG to such a
 * string (host=... port=... user=...; the user must be allowed to create databases). Each test
 * creates a fresh database named after itself, so tests can run in parallel. Without either
 * variable a test exits 77, which ctest reports as skipped.
 */
#ifndef WB_TESTS_PGTEST_H
#define WB_TESTS_PGTEST_H

#include "db/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PGTEST_SKIP 77

/* Reads the base connection string; false when no server was given. */
static inline bool pgtest_base(char *buf, size_t cap)
{
    const char *direct = getenv("WABRIDGE_TEST_PG");
    if (direct && *direct) {
        snprintf(buf, cap, "%s", direct);
        return true;
    }
    const char *state = getenv("WABRIDGE_TEST_PG_STATE");
    if (!state || !*state) return false;
    char path[1024];
    snprintf(path, sizeof(path), "%s/conninfo", state);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    if (!ok) return false;
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf[0] != '\0';
}

/* Exits 77 (skipped) when no server is configured. */
static inline void pgtest_require(void)
{
    char base[512];
    if (!pgtest_base(base, sizeof(base))) {
        printf("no PostgreSQL for the tests (WABRIDGE_TEST_PG_STATE / WABRIDGE_TEST_PG unset): "
               "skipped\n");
        exit(PGTEST_SKIP);
    }
}

/* Connection string for database dbname on the test server. */
static inline void pgtest_conninfo(const char *dbname, char *out, size_t cap)
{
    char base[512];
    if (!pgtest_base(base, sizeof(base))) base[0] = '\0';
    snprintf(out, cap, "%s dbname=%s", base, dbname);
}

/* Opens a connection or exits. */
static inline db_conn *pgtest_connect(const char *conninfo)
{
    db_conn *c;
    db_error err;
    db_conn_opts opts = {.reconnect_timeout_ms = 30000};
    if (db_conn_open(conninfo, &opts, &c, &err) != DB_OK) {
        fprintf(stderr, "cannot connect (%s): %s\n", conninfo, err.message);
        exit(1);
    }
    return c;
}

/* Drops and creates database name (an identifier made of [a-z0-9_] chosen by the test itself),
 * and writes its connection string to out. */
static inline void pgtest_fresh_db(const char *name, char *out, size_t cap)
{
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            fprintf(stderr, "pgtest_fresh_db: bad database name %s\n", name);
            exit(1);
        }
    }
    char admin[640];
    pgtest_conninfo("postgres", admin, sizeof(admin));
    db_conn *c = pgtest_connect(admin);
    char sql[256];
    /* identifiers cannot be parameters; name is checked above */
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    if (db_exec_script(c, sql) != DB_OK) {
        fprintf(stderr, "%s: %s\n", sql, db_conn_error(c)->message);
        exit(1);
    }
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (db_exec_script(c, sql) != DB_OK) {
        fprintf(stderr, "%s: %s\n", sql, db_conn_error(c)->message);
        exit(1);
    }
    db_conn_close(c);
    pgtest_conninfo(name, out, cap);
}

/* Kills the server process behind c from another connection (pg_terminate_backend). */
static inline bool pgtest_kill_backend(const db_conn *c)
{
    static const db_stmt st = {"pgtest_terminate", "SELECT pg_terminate_backend($1)", 0};
    char admin[640];
    pgtest_conninfo("postgres", admin, sizeof(admin));
    db_conn *a = pgtest_connect(admin);
    db_param p = db_p_int(db_conn_backend_pid(c));
    db_result *r;
    bool ok = db_exec_row(a, &st, &p, 1, &r) == DB_OK && db_result_bool(r, 0, 0);
    if (r) db_result_free(r);
    db_conn_close(a);
    return ok;
}

/* Restarts the test server (pg_ctl restart -m fast); true on success. Needs the harness. */
static inline bool pgtest_restart_server(void)
{
    const char *harness = getenv("WABRIDGE_TEST_PG_HARNESS");
    const char *state = getenv("WABRIDGE_TEST_PG_STATE");
    if (!harness || !state) return false;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "sh '%s' restart '%s'", harness, state);
    return system(cmd) == 0;
}

#endif
