/*
 * tests/db/test_db_core.c - db/db.h against a real PostgreSQL: parameters and results verbatim,
 * errors with SQLSTATE, transactions and their retries, the pool, and lost connections (a backend
 * killed while idle, while a statement runs, inside a transaction).
 */
#include "check.h"
#include "db/db.h"
#include "pgtest.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char conninfo[1024];

static const db_stmt st_echo = {
    "t_echo", "SELECT $1::text, $2::bytea, $3::bigint, $4::boolean, $5::text IS NULL",
    DB_STMT_IDEMPOTENT};
static const db_stmt st_ins = {"t_ins", "INSERT INTO t (k, txt, bin) VALUES ($1, $2, $3)", 0};
static const db_stmt st_get = {"t_get", "SELECT txt, bin FROM t WHERE k = $1", DB_STMT_IDEMPOTENT};
static const db_stmt st_count = {"t_count", "SELECT count(*) FROM t", DB_STMT_IDEMPOTENT};
static const db_stmt st_bad_sql = {"t_bad_sql", "SELEKT 1", 0};
static const db_stmt st_sleep = {"t_sleep", "SELECT pg_sleep($1::float8 / 1000)", 0};
static const db_stmt st_sleep_idem = {"t_sleep_idem", "SELECT pg_sleep($1::float8 / 1000)",
                                      DB_STMT_IDEMPOTENT};
static const db_stmt st_counter_get = {"t_counter_get", "SELECT n FROM counter WHERE id = 1", 0};
static const db_stmt st_counter_set = {"t_counter_set", "UPDATE counter SET n = $1 WHERE id = 1",
                                       0};

static int64_t count_rows(db_conn *c)
{
    db_result *r;
    if (db_exec_row(c, &st_count, NULL, 0, &r) != DB_OK) return -1;
    int64_t n = db_result_int(r, 0, 0);
    db_result_free(r);
    return n;
}

static void reset_table(db_conn *c)
{
    CHECK_INT(db_exec_script(c, "DROP TABLE IF EXISTS t; CREATE TABLE t (k bigint PRIMARY KEY,"
                                " txt text, bin bytea);"
                                "DROP TABLE IF EXISTS counter; CREATE TABLE counter (id int"
                                " PRIMARY KEY, n bigint); INSERT INTO counter VALUES (1, 0);"),
              DB_OK);
}

static void test_params_verbatim(db_conn *c)
{
    static const char *texts[] = {
        "plain",
        "it's \"quoted\"",
        "back\\slash \\\\ and \\x00 \\n",
        "'; DROP TABLE t; --",
        "$1 $2 ?? %s %n {} [] E'\\047'",
        "Ünïcödé 💬 مرحبا 你好",
        "",
        "line\nbreak\ttab\r",
    };
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        db_param p[5] = {db_p_text(texts[i]), db_p_bytes(all, sizeof(all)),
                         db_p_int(INT64_MIN + (int64_t)i), db_p_bool(i % 2), db_p_null()};
        db_result *r;
        CHECK_INT(db_exec_row(c, &st_echo, p, 5, &r), DB_OK);
        if (!r) continue;
        CHECK_STR(db_result_text(r, 0, 0), texts[i]);
        size_t n;
        const uint8_t *b = db_result_bytes(r, 0, 1, &n);
        CHECK(n == 256 && memcmp(b, all, 256) == 0);
        CHECK(db_result_int(r, 0, 2) == INT64_MIN + (int64_t)i);
        CHECK(db_result_bool(r, 0, 3) == (i % 2 == 1));
        CHECK(db_result_bool(r, 0, 4));
        db_result_free(r);

        /* and through a table */
        db_param q[3] = {db_p_int((int64_t)i), db_p_text(texts[i]), db_p_bytes(all, 256 - i)};
        CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_OK);
        db_param k = db_p_int((int64_t)i);
        CHECK_INT(db_exec_row(c, &st_get, &k, 1, &r), DB_OK);
        if (!r) continue;
        CHECK_STR(db_result_text(r, 0, 0), texts[i]);
        b = db_result_bytes(r, 0, 1, &n);
        CHECK(n == 256 - i && memcmp(b, all, n) == 0);
        db_result_free(r);
    }
    /* empty bytea is not NULL */
    db_param p[5] = {db_p_text("x"), db_p_bytes(NULL, 0), db_p_int(0), db_p_bool(false),
                     db_p_text(NULL)};
    db_result *r;
    CHECK_INT(db_exec_row(c, &st_echo, p, 5, &r), DB_OK);
    if (r) {
        CHECK(!db_result_isnull(r, 0, 1));
        CHECK(db_result_bool(r, 0, 4)); /* db_p_text(NULL) is SQL NULL */
        db_result_free(r);
    }
}

static void test_errors(db_conn *c)
{
    db_param q[3] = {db_p_int(0), db_p_text("dup"), db_p_bytes("x", 1)};
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_ERR_UNIQUE);
    const db_error *e = db_conn_error(c);
    CHECK_STR(e->sqlstate, "23505");
    CHECK(strstr(e->message, "t_ins") != NULL);
    CHECK(strstr(e->message, "duplicate key") != NULL);
    CHECK_INT(db_exec(c, &st_bad_sql, NULL, 0, NULL), DB_ERR_SERVER);
    CHECK_STR(db_conn_error(c)->sqlstate, "42601");
    db_param k = db_p_int(424242);
    db_result *r = (db_result *)1;
    CHECK_INT(db_exec_row(c, &st_get, &k, 1, &r), DB_ERR_NOT_FOUND);
    CHECK(r == NULL);
    for (int i = 0; i >= -16; i--)
        CHECK(db_strerror(i) != NULL && strcmp(db_strerror(i), "unknown error") != 0);
    CHECK_STR(db_strerror(-999), "unknown error");
    /* a bad connection string */
    db_conn *bad;
    db_error err;
    CHECK_INT(db_conn_open("host=/nonexistent/dir port=1", NULL, &bad, &err), DB_ERR_CONNECT);
    CHECK(bad == NULL && strstr(err.message, "connect") != NULL);
}

typedef struct ins_arg {
    int64_t first; /* first key */
    int n;         /* rows */
    int fail_at;   /* return an error after this many rows (-1: never) */
    int runs;      /* times the body ran */
    db_conn *kill; /* kill this connection's backend during the first run */
} ins_arg;

static int ins_body(db_conn *c, void *arg)
{
    ins_arg *a = arg;
    a->runs++;
    for (int i = 0; i < a->n; i++) {
        if (i == a->fail_at) return DB_ERR_INVALID;
        if (a->kill && a->runs == 1 && i == a->n / 2) pgtest_kill_backend(a->kill);
        db_param q[3] = {db_p_int(a->first + i), db_p_text("tx"), db_p_bytes("tx", 2)};
        int rc = db_exec(c, &st_ins, q, 3, NULL);
        if (rc) return rc;
    }
    return DB_OK;
}

static void test_transactions(db_conn *c)
{
    reset_table(c);
    ins_arg a = {100, 10, -1, 0, NULL};
    CHECK_INT(db_tx(c, 0, ins_body, &a), DB_OK);
    CHECK_INT(count_rows(c), 10);
    /* the body fails halfway: nothing of it stays */
    ins_arg b = {200, 10, 5, 0, NULL};
    CHECK_INT(db_tx(c, 0, ins_body, &b), DB_ERR_INVALID);
    CHECK_INT(count_rows(c), 10);
    CHECK(!db_conn_in_tx(c));
    /* a statement fails: the rest of the transaction is refused, commit reports it */
    CHECK_INT(db_begin(c, 0), DB_OK);
    db_param q[3] = {db_p_int(300), db_p_text("a"), db_p_bytes("a", 1)};
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_OK);
    q[0] = db_p_int(100); /* duplicate */
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_ERR_UNIQUE);
    q[0] = db_p_int(301);
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_ERR_TX_ABORTED);
    CHECK_INT(db_commit(c), DB_ERR_TX_ABORTED);
    CHECK_INT(count_rows(c), 10);
    /* explicit rollback */
    CHECK_INT(db_begin(c, DB_TX_REPEATABLE_READ), DB_OK);
    CHECK_INT(db_begin(c, 0), DB_ERR_STATE);
    q[0] = db_p_int(302);
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_OK);
    CHECK_INT(db_rollback(c), DB_OK);
    CHECK_INT(count_rows(c), 10);
    CHECK_INT(db_commit(c), DB_ERR_STATE);
    CHECK_INT(db_rollback(c), DB_OK); /* harmless outside a transaction */
}

/* Two threads increment one counter in SERIALIZABLE transactions: conflicts are retried by db_tx
 * and no increment is lost. */
typedef struct incr_arg {
    int done;      /* increments committed */
    int conflicts; /* bodies that ran more than once */
    int rc;        /* first failure */
} incr_arg;

static int incr_body(db_conn *c, void *arg)
{
    (void)arg;
    db_result *r;
    int rc = db_exec_row(c, &st_counter_get, NULL, 0, &r);
    if (rc) return rc;
    int64_t n = db_result_int(r, 0, 0);
    db_result_free(r);
    usleep(200);
    db_param p = db_p_int(n + 1);
    return db_exec(c, &st_counter_set, &p, 1, NULL);
}

static void *incr_thread(void *arg)
{
    incr_arg *a = arg;
    db_conn_opts opts = {.tx_max_attempts = 100};
    db_conn *c;
    if (db_conn_open(conninfo, &opts, &c, NULL) != DB_OK) {
        a->rc = -1;
        return NULL;
    }
    for (int i = 0; i < 100; i++) {
        int rc = db_tx(c, DB_TX_SERIALIZABLE, incr_body, NULL);
        if (rc) {
            if (!a->rc) a->rc = rc;
            fprintf(stderr, "incr: %s\n", db_conn_error(c)->message);
        } else {
            a->done++;
        }
    }
    db_conn_close(c);
    return NULL;
}

static void test_serialization_retry(db_conn *c)
{
    reset_table(c);
    pthread_t t1, t2;
    incr_arg a1 = {0, 0, 0}, a2 = {0, 0, 0};
    pthread_create(&t1, NULL, incr_thread, &a1);
    pthread_create(&t2, NULL, incr_thread, &a2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK_INT(a1.rc, 0);
    CHECK_INT(a2.rc, 0);
    db_result *r;
    CHECK_INT(db_exec_row(c, &st_counter_get, NULL, 0, &r), DB_OK);
    if (r) {
        CHECK_INT(db_result_int(r, 0, 0), a1.done + a2.done);
        CHECK_INT(a1.done + a2.done, 200);
        db_result_free(r);
    }
}

typedef struct killer {
    db_conn *victim; /* whose backend to kill */
    int delay_ms;    /* after this long */
} killer;

static void *kill_later(void *arg)
{
    killer *k = arg;
    usleep((useconds_t)k->delay_ms * 1000);
    pgtest_kill_backend(k->victim);
    return NULL;
}

static void test_reconnect(db_conn *c)
{
    reset_table(c);
    /* killed while idle: the next statement (idempotent or not) reconnects first */
    uint64_t before = db_conn_reconnects(c);
    int pid = db_conn_backend_pid(c);
    CHECK(pgtest_kill_backend(c));
    usleep(100 * 1000);
    CHECK_INT(count_rows(c), 0);
    CHECK(db_conn_reconnects(c) == before + 1);
    CHECK(db_conn_backend_pid(c) != pid);
    CHECK(pgtest_kill_backend(c));
    usleep(100 * 1000);
    db_param q[3] = {db_p_int(1), db_p_text("after kill"), db_p_bytes("k", 1)};
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_OK);
    CHECK_INT(count_rows(c), 1);

    /* killed while a non-idempotent statement runs: reported, not retried */
    pthread_t t;
    killer k = {c, 300};
    pthread_create(&t, NULL, kill_later, &k);
    db_param ms = db_p_int(3000);
    CHECK_INT(db_exec(c, &st_sleep, &ms, 1, NULL), DB_ERR_IN_DOUBT);
    pthread_join(t, NULL);
    CHECK(strstr(db_conn_error(c)->message, "may or may not") != NULL);
    /* killed while an idempotent statement runs: re-run on a new connection */
    pthread_create(&t, NULL, kill_later, &k);
    ms = db_p_int(800);
    CHECK_INT(db_exec(c, &st_sleep_idem, &ms, 1, NULL), DB_OK);
    pthread_join(t, NULL);
    CHECK_INT(count_rows(c), 1);
}

static void test_interrupted_tx(db_conn *c)
{
    reset_table(c);
    /* explicit transaction: after the kill nothing of it runs, in it or in autocommit */
    CHECK_INT(db_begin(c, 0), DB_OK);
    db_param q[3] = {db_p_int(1), db_p_text("half"), db_p_bytes("h", 1)};
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_OK);
    CHECK(pgtest_kill_backend(c));
    usleep(100 * 1000);
    q[0] = db_p_int(2);
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_ERR_CONN_LOST);
    q[0] = db_p_int(3);
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_ERR_CONN_LOST);
    CHECK_INT(db_commit(c), DB_ERR_CONN_LOST);
    CHECK(!db_conn_in_tx(c));
    CHECK_INT(count_rows(c), 0);

    /* killed while idle inside a transaction, then COMMIT: certainly not committed */
    CHECK_INT(db_begin(c, 0), DB_OK);
    q[0] = db_p_int(4);
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_OK);
    CHECK(pgtest_kill_backend(c));
    usleep(100 * 1000);
    CHECK_INT(db_commit(c), DB_ERR_CONN_LOST);
    CHECK(!db_conn_in_tx(c));
    CHECK_INT(count_rows(c), 0);

    /* db_tx: the connection dies halfway through the body; the whole body runs again */
    ins_arg a = {10, 20, -1, 0, c};
    CHECK_INT(db_tx(c, 0, ins_body, &a), DB_OK);
    CHECK_INT(a.runs, 2);
    CHECK_INT(count_rows(c), 20);
}

/* Lazy BEGIN and deferred writes: one round trip carries BEGIN, the queued writes and the next
 * statement (or the COMMIT); errors show there and roll the transaction back. */
static void test_deferred(db_conn *c)
{
    reset_table(c);
    db_param q[3] = {db_p_int(1), db_p_text("first"), db_p_bytes("1", 1)};
    /* a backend killed before the transaction's first statement: nothing of it had reached the
     * server, so the statement runs on a new connection and the transaction goes on */
    CHECK_INT(db_begin(c, 0), DB_OK);
    uint64_t before = db_conn_reconnects(c);
    CHECK(pgtest_kill_backend(c));
    usleep(100 * 1000);
    CHECK_INT(db_exec_deferred(c, &st_ins, q, 3), DB_OK);
    q[0] = db_p_int(2);
    CHECK_INT(db_exec_deferred(c, &st_ins, q, 3), DB_OK);
    /* a read after queued writes sees them (they go first, in order) */
    CHECK_INT(count_rows(c), 2);
    CHECK(db_conn_reconnects(c) == before + 1);
    q[0] = db_p_int(3);
    CHECK_INT(db_exec_deferred(c, &st_ins, q, 3), DB_OK);
    CHECK_INT(db_commit(c), DB_OK);
    CHECK_INT(count_rows(c), 3);

    /* only deferred writes, sent with COMMIT; the parameters were copied when queued */
    CHECK_INT(db_begin(c, 0), DB_OK);
    for (int64_t k = 10; k < 13; k++) {
        char txt[16];
        snprintf(txt, sizeof(txt), "row %d", (int)k);
        db_param p[3] = {db_p_int(k), db_p_text(txt), db_p_null()};
        CHECK_INT(db_exec_deferred(c, &st_ins, p, 3), DB_OK);
        memset(txt, 'x', sizeof(txt) - 1); /* the caller's buffer changes after the call */
    }
    CHECK_INT(db_commit(c), DB_OK);
    db_result *r;
    db_param k11 = db_p_int(11);
    CHECK_INT(db_exec_row(c, &st_get, &k11, 1, &r), DB_OK);
    CHECK_STR(db_result_text(r, 0, 0), "row 11");
    CHECK(db_result_isnull(r, 0, 1));
    db_result_free(r);
    CHECK_INT(count_rows(c), 6);

    /* a deferred write that fails at COMMIT: its own error, and nothing of the transaction */
    CHECK_INT(db_begin(c, 0), DB_OK);
    q[0] = db_p_int(20);
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_OK);
    q[0] = db_p_int(1); /* exists */
    CHECK_INT(db_exec_deferred(c, &st_ins, q, 3), DB_OK);
    CHECK_INT(db_commit(c), DB_ERR_UNIQUE);
    CHECK(strstr(db_conn_error(c)->message, "t_ins") != NULL);
    CHECK(!db_conn_in_tx(c));
    CHECK_INT(count_rows(c), 6);

    /* ...or at the next statement, which then fails with it; the transaction is rolled back */
    CHECK_INT(db_begin(c, 0), DB_OK);
    q[0] = db_p_int(21);
    CHECK_INT(db_exec_deferred(c, &st_ins, q, 3), DB_OK);
    q[0] = db_p_int(2); /* exists */
    CHECK_INT(db_exec_deferred(c, &st_ins, q, 3), DB_OK);
    CHECK_INT(count_rows(c), -1);
    CHECK_INT(db_conn_error(c)->code, DB_ERR_UNIQUE);
    CHECK_INT(db_commit(c), DB_ERR_TX_ABORTED);
    CHECK_INT(count_rows(c), 6);

    /* rolled back before anything was sent: nothing happens, the connection stays usable */
    CHECK_INT(db_begin(c, 0), DB_OK);
    q[0] = db_p_int(30);
    CHECK_INT(db_exec_deferred(c, &st_ins, q, 3), DB_OK);
    CHECK_INT(db_rollback(c), DB_OK);
    CHECK_INT(count_rows(c), 6);
    /* an empty transaction commits; outside a transaction a deferred write runs at once */
    CHECK_INT(db_begin(c, DB_TX_SERIALIZABLE), DB_OK);
    CHECK_INT(db_commit(c), DB_OK);
    q[0] = db_p_int(31);
    CHECK_INT(db_exec_deferred(c, &st_ins, q, 3), DB_OK);
    CHECK_INT(count_rows(c), 7);

    /* a backend killed after the first round trip: the transaction is lost, as before */
    CHECK_INT(db_begin(c, 0), DB_OK);
    q[0] = db_p_int(40);
    CHECK_INT(db_exec(c, &st_ins, q, 3, NULL), DB_OK);
    CHECK(pgtest_kill_backend(c));
    usleep(100 * 1000);
    q[0] = db_p_int(41);
    CHECK_INT(db_exec_deferred(c, &st_ins, q, 3), DB_OK);
    CHECK_INT(db_commit(c), DB_ERR_CONN_LOST);
    CHECK_INT(count_rows(c), 7);
}

/* Write-behind outside transactions: queued writes travel ahead of the next statement, as one
 * transaction; a failing one is counted and touches nothing else (the others go again, each on its
 * own, and an idempotent statement runs again after them). */
static void test_later(db_conn *c)
{
    reset_table(c);
    char last[256];
    uint64_t fails0 = db_later_failures(c, NULL, 0);
    for (int64_t k = 1; k <= 3; k++) {
        db_param p[3] = {db_p_int(k), db_p_text("later"), db_p_null()};
        CHECK_INT(db_exec_later(c, &st_ins, p, 3), DB_OK);
    }
    CHECK_INT(count_rows(c), 3); /* sent with the read, ahead of it */
    static const db_stmt st_xmins = {
        "t_xmins", "SELECT count(DISTINCT xmin::text) FROM t WHERE k BETWEEN 1 AND 3", 0};
    db_result *xr = NULL;
    CHECK_INT(db_exec_row(c, &st_xmins, NULL, 0, &xr), DB_OK);
    CHECK_INT(xr ? db_result_int(xr, 0, 0) : -1, 1); /* one transaction, one commit */
    db_result_free(xr);
    /* a duplicate among them: the others and the statement are not affected */
    db_param d[3] = {db_p_int(2), db_p_text("dup"), db_p_null()};
    CHECK_INT(db_exec_later(c, &st_ins, d, 3), DB_OK);
    db_param e[3] = {db_p_int(4), db_p_text("later"), db_p_null()};
    CHECK_INT(db_exec_later(c, &st_ins, e, 3), DB_OK);
    CHECK_INT(count_rows(c), 4);
    CHECK(db_later_failures(c, last, sizeof(last)) == fails0 + 1);
    CHECK(strstr(last, "t_ins") != NULL && strstr(last, "duplicate") != NULL);
    /* the same ahead of a statement that may not run twice: it keeps its outcome, and the
     * failed batch's other writes are in place when db_exec returns */
    d[0] = db_p_int(3);
    CHECK_INT(db_exec_later(c, &st_ins, d, 3), DB_OK);
    e[0] = db_p_int(40);
    CHECK_INT(db_exec_later(c, &st_ins, e, 3), DB_OK);
    db_param f[3] = {db_p_int(41), db_p_text("once"), db_p_null()};
    CHECK_INT(db_exec(c, &st_ins, f, 3, NULL), DB_OK);
    CHECK_INT(count_rows(c), 6);
    CHECK(db_later_failures(c, NULL, 0) == fails0 + 2);
    static const db_stmt st_del_4x = {"t_del_4x", "DELETE FROM t WHERE k IN (40, 41)", 0};
    CHECK_INT(db_exec(c, &st_del_4x, NULL, 0, NULL), DB_OK);
    /* db_flush: sends them now, and says whether all went well */
    e[0] = db_p_int(5);
    CHECK_INT(db_exec_later(c, &st_ins, e, 3), DB_OK);
    CHECK_INT(db_flush(c), DB_OK);
    CHECK_INT(db_flush(c), DB_OK);                     /* nothing queued */
    CHECK_INT(db_exec_later(c, &st_ins, e, 3), DB_OK); /* 5 again */
    CHECK(db_flush(c) != DB_OK);
    CHECK(db_later_failures(c, NULL, 0) == fails0 + 3);
    /* a transaction sends them first, outside it: its rollback leaves them */
    e[0] = db_p_int(6);
    CHECK_INT(db_exec_later(c, &st_ins, e, 3), DB_OK);
    CHECK_INT(db_begin(c, 0), DB_OK);
    e[0] = db_p_int(7);
    CHECK_INT(db_exec(c, &st_ins, e, 3, NULL), DB_OK);
    CHECK_INT(db_rollback(c), DB_OK);
    CHECK_INT(count_rows(c), 6);
    /* a backend that died while writes were queued: they go out on the new connection */
    e[0] = db_p_int(8);
    CHECK_INT(db_exec_later(c, &st_ins, e, 3), DB_OK);
    CHECK(pgtest_kill_backend(c));
    usleep(100 * 1000);
    CHECK_INT(count_rows(c), 7);
    CHECK(db_later_failures(c, NULL, 0) == fails0 + 3);
}

/* ---- batches (pipeline mode) ---- */

static const db_stmt st_slow_ins = {
    "t_slow_ins", "INSERT INTO t (k, txt, bin) SELECT $1, $2, $3 FROM pg_sleep(0.01)", 0};
static const db_stmt st_slow_upsert = {
    "t_slow_upsert",
    "INSERT INTO t (k, txt, bin) SELECT $1, $2, $3 FROM pg_sleep(0.01) ON CONFLICT (k) DO NOTHING",
    DB_STMT_IDEMPOTENT};

typedef struct batch_arg {
    int64_t first; /* key of row 0 */
    int64_t dup;   /* row index that repeats key `first` (-1: none) */
} batch_arg;

static void batch_fill(void *arg, size_t i, db_param *p)
{
    const batch_arg *b = arg;
    int64_t k = (int64_t)i == b->dup ? b->first : b->first + (int64_t)i;
    p[0] = db_p_int(k);
    p[1] = db_p_text(i % 2 ? "odd 'row'" : "even \\ row");
    p[2] = db_p_bytes(&p[0].i, sizeof(p[0].i));
}

static void test_batches(db_conn *c)
{
    reset_table(c);
    batch_arg a = {1000, -1};
    int64_t n = 0;
    CHECK_INT(db_exec_batch(c, &st_ins, 3, 500, batch_fill, &a, &n), DB_OK);
    CHECK_INT(n, 500);
    CHECK_INT(count_rows(c), 500);
    db_param k = db_p_int(1001);
    db_result *r;
    CHECK_INT(db_exec_row(c, &st_get, &k, 1, &r), DB_OK);
    if (r) {
        CHECK_STR(db_result_text(r, 0, 0), "odd 'row'");
        db_result_free(r);
    }
    /* a duplicate in the middle: the whole batch is undone, the connection still works */
    batch_arg d = {5000, 50};
    CHECK_INT(db_exec_batch(c, &st_ins, 3, 100, batch_fill, &d, &n), DB_ERR_UNIQUE);
    CHECK_STR(db_conn_error(c)->sqlstate, "23505");
    CHECK_INT(count_rows(c), 500);
    /* inside a transaction: joins it, rolled back with it */
    CHECK_INT(db_begin(c, 0), DB_OK);
    batch_arg e = {6000, -1};
    CHECK_INT(db_exec_batch(c, &st_ins, 3, 100, batch_fill, &e, &n), DB_OK);
    CHECK_INT(count_rows(c), 600);
    CHECK_INT(db_rollback(c), DB_OK);
    CHECK_INT(count_rows(c), 500);
    /* a batch after the backend was killed while idle */
    CHECK(pgtest_kill_backend(c));
    usleep(100 * 1000);
    CHECK_INT(db_exec_batch(c, &st_ins, 3, 100, batch_fill, &e, &n), DB_OK);
    CHECK_INT(count_rows(c), 600);
    /* killed while a non-idempotent batch runs: not retried, nothing of it committed */
    pthread_t t;
    killer kl = {c, 300};
    pthread_create(&t, NULL, kill_later, &kl);
    batch_arg f = {7000, -1};
    int rc = db_exec_batch(c, &st_slow_ins, 3, 100, batch_fill, &f, &n);
    pthread_join(t, NULL);
    CHECK(rc == DB_ERR_IN_DOUBT || rc == DB_ERR_CONN_LOST);
    CHECK_INT(count_rows(c), 600);
    /* killed while an idempotent batch runs: run again, all rows there once */
    pthread_create(&t, NULL, kill_later, &kl);
    CHECK_INT(db_exec_batch(c, &st_slow_upsert, 3, 100, batch_fill, &f, &n), DB_OK);
    pthread_join(t, NULL);
    CHECK_INT(count_rows(c), 700);
    CHECK_INT(db_exec_batch(c, &st_ins, 3, 0, batch_fill, &f, &n), DB_OK);
}

/* ---- the pool ---- */

typedef struct pool_arg {
    db_pool *pool; /* shared */
    int ok;        /* successful queries */
} pool_arg;

static void *pool_thread(void *arg)
{
    pool_arg *a = arg;
    for (int i = 0; i < 50; i++) {
        db_conn *c;
        if (db_pool_get(a->pool, 5000, &c, NULL) != DB_OK) continue;
        if (count_rows(c) >= 0) a->ok++;
        db_pool_put(a->pool, c);
    }
    return NULL;
}

static void test_pool(void)
{
    db_pool *p;
    CHECK_INT(db_pool_new(conninfo, 2, NULL, &p), DB_OK);
    pool_arg args[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (pool_arg){p, 0};
        pthread_create(&t[i], NULL, pool_thread, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(args[i].ok, 50);
    }
    db_conn *a, *b, *c;
    db_error err;
    CHECK_INT(db_pool_get(p, 1000, &a, &err), DB_OK);
    CHECK_INT(db_pool_get(p, 1000, &b, &err), DB_OK);
    CHECK_INT(db_pool_get(p, 100, &c, &err), DB_ERR_TIMEOUT);
    /* a connection returned inside a transaction is rolled back */
    CHECK_INT(db_begin(a, 0), DB_OK);
    db_pool_put(p, a);
    CHECK(!db_conn_in_tx(a));
    CHECK_INT(db_pool_get(p, 100, &c, &err), DB_OK);
    db_pool_put(p, c);
    db_pool_put(p, b);
    db_pool_free(p);
}

/* async_commit + db_sync: commits return early; db_sync flushes the WAL past every one of them,
 * refuses inside a transaction, and reports a lost connection instead of vouching. */
static const db_stmt st_setting = {"t_setting", "SELECT current_setting('synchronous_commit')",
                                   DB_STMT_IDEMPOTENT};
static const db_stmt st_insert_lsn = {
    "t_insert_lsn", "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
    DB_STMT_IDEMPOTENT};
static const db_stmt st_flush_lsn = {"t_flush_lsn",
                                     "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint",
                                     DB_STMT_IDEMPOTENT};

static int64_t lsn_of(db_conn *c, const db_stmt *st)
{
    db_result *r;
    if (db_exec_row(c, st, NULL, 0, &r) != DB_OK) return -1;
    int64_t v = db_result_int(r, 0, 0);
    db_result_free(r);
    return v;
}

static void test_sync(void)
{
    db_conn_opts o = {.async_commit = true};
    db_conn *a;
    db_error e;
    CHECK_INT(db_conn_open(conninfo, &o, &a, &e), DB_OK);
    if (!a) return;
    db_result *r;
    CHECK_INT(db_exec_row(a, &st_setting, NULL, 0, &r), DB_OK);
    CHECK_STR(db_result_text(r, 0, 0), "off");
    db_result_free(r);
    CHECK_INT(db_sync(a), DB_OK); /* nothing to do */
    int flushed_all = 0;
    for (int i = 0; i < 20; i++) {
        db_param p[3] = {db_p_int(900000 + i), db_p_text("async"), db_p_null()};
        CHECK_INT(db_exec(a, &st_ins, p, 3, NULL), DB_OK);
        int64_t written = lsn_of(a, &st_insert_lsn);
        CHECK_INT(db_sync(a), DB_OK);
        if (lsn_of(a, &st_flush_lsn) >= written) flushed_all++;
    }
    CHECK_INT(flushed_all, 20);
    CHECK_INT(db_begin(a, 0), DB_OK);
    CHECK_INT(db_sync(a), DB_ERR_STATE);
    CHECK_INT(db_rollback(a), DB_OK);
    /* the backend dies after a write: db_sync cannot vouch for it */
    db_param p[3] = {db_p_int(900100), db_p_text("async"), db_p_null()};
    CHECK_INT(db_exec(a, &st_ins, p, 3, NULL), DB_OK);
    CHECK(pgtest_kill_backend(a));
    usleep(200 * 1000);
    CHECK(db_sync(a) != DB_OK);
    /* later statements reconnect; a sync after them works again */
    db_param q[3] = {db_p_int(900101), db_p_text("async"), db_p_null()};
    CHECK_INT(db_exec(a, &st_ins, q, 3, NULL), DB_OK);
    CHECK_INT(db_sync(a), DB_OK);
    /* the backend dies after a write and a later statement reconnects before the sync: the sync
     * still says the write may be lost (once) */
    db_param q2[3] = {db_p_int(900103), db_p_text("async"), db_p_null()};
    CHECK_INT(db_exec(a, &st_ins, q2, 3, NULL), DB_OK);
    CHECK(pgtest_kill_backend(a));
    usleep(200 * 1000);
    db_param q3[3] = {db_p_int(900104), db_p_text("async"), db_p_null()};
    CHECK_INT(db_exec(a, &st_ins, q3, 3, NULL), DB_OK); /* (on a new session) */
    CHECK(db_sync(a) != DB_OK);
    CHECK_INT(db_sync(a), DB_OK);
    /* db_commit_sync: the transaction's writes, its COMMIT and the sync in one round trip; the
     * WAL is flushed past the writes when it returns, and nothing is left for db_sync (which,
     * with the backend gone, would otherwise say so) */
    for (int i = 0; i < 5; i++) {
        CHECK_INT(db_begin(a, 0), DB_OK);
        db_param p2[3] = {db_p_int(900200 + i), db_p_text("durable"), db_p_null()};
        CHECK_INT(db_exec_deferred(a, &st_ins, p2, 3), DB_OK);
        int64_t at = -1;
        CHECK_INT(db_exec_deferred_first(a, &st_insert_lsn, NULL, 0, &at), DB_OK);
        CHECK_INT(db_commit_sync(a), DB_OK);
        int64_t fl = lsn_of(a, &st_flush_lsn);
        CHECK(at > 0 && fl >= at);
    }
    CHECK_INT(db_begin(a, 0), DB_OK);
    db_param p3[3] = {db_p_int(900210), db_p_text("durable"), db_p_null()};
    CHECK_INT(db_exec_deferred(a, &st_ins, p3, 3), DB_OK);
    CHECK_INT(db_commit_sync(a), DB_OK);
    CHECK(pgtest_kill_backend(a));
    usleep(200 * 1000);
    CHECK_INT(db_sync(a), DB_OK);
    /* without queued writes it is db_commit then db_sync; a failing write is refused */
    CHECK_INT(db_begin(a, 0), DB_OK);
    db_param p4[3] = {db_p_int(900211), db_p_text("durable"), db_p_null()};
    CHECK_INT(db_exec(a, &st_ins, p4, 3, NULL), DB_OK);
    CHECK_INT(db_commit_sync(a), DB_OK);
    CHECK_INT(db_begin(a, 0), DB_OK);
    CHECK_INT(db_exec_deferred(a, &st_ins, p4, 3), DB_OK); /* the same key again */
    CHECK(db_commit_sync(a) != DB_OK);
    CHECK(!db_conn_in_tx(a));
    CHECK_INT(db_sync(a), DB_OK);
    /* a transaction in which nothing ran committed nothing: the next sync has nothing to vouch
     * for (not even a round trip: the backend's death goes unnoticed) */
    CHECK_INT(db_begin(a, 0), DB_OK);
    CHECK_INT(db_commit(a), DB_OK);
    CHECK(pgtest_kill_backend(a));
    usleep(200 * 1000);
    CHECK_INT(db_sync(a), DB_OK);
    CHECK_INT(db_exec(a, &st_ins, (db_param[3]){db_p_int(900102), db_p_text("async"), db_p_null()},
                      3, NULL),
              DB_OK);
    CHECK_INT(db_sync(a), DB_OK);

    db_conn_close(a);
}

/* hold_commits: a transaction of deferred writes only commits with no round trip; its writes
 * reach the server ahead of the next statement or with db_sync (the other connections see them
 * only then); a held batch that fails is lost whole and the next db_sync says so. */
static void held_insert(db_conn *a, int64_t k)
{
    db_param p[3] = {db_p_int(k), db_p_text("held"), db_p_null()};
    CHECK_INT(db_begin(a, 0), DB_OK);
    CHECK_INT(db_exec_deferred(a, &st_ins, p, 3), DB_OK);
    CHECK_INT(db_commit(a), DB_OK);
}

static bool has_row(db_conn *c, int64_t k)
{
    db_param p[1] = {db_p_int(k)};
    db_result *r;
    if (db_exec(c, &st_get, p, 1, &r) != DB_OK) return false;
    bool found = db_result_rows(r) == 1;
    db_result_free(r);
    return found;
}

/* a write that shows how many times it ran (txt grows): keyed, only the last of a row is sent */
static const db_stmt st_append = {
    "t_append",
    "INSERT INTO t (k, txt) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET txt = t.txt || $2", 0};
static const db_stmt st_del = {"t_del", "DELETE FROM t WHERE k = $1", 0};

static void held_write(db_conn *a, const db_stmt *st, int64_t k, const char *txt, int key)
{
    db_param p[2] = {db_p_int(k), db_p_text(txt ? txt : "")};
    CHECK_INT(db_begin(a, 0), DB_OK);
    if (key)
        CHECK_INT(db_exec_deferred_row(a, st, p, 2, key), DB_OK);
    else
        CHECK_INT(db_exec_deferred(a, st, p, txt ? 2 : 1), DB_OK);
    CHECK_INT(db_commit(a), DB_OK);
}

static const char *txt_of(db_conn *c, int64_t k, char *buf, size_t cap)
{
    db_param p[1] = {db_p_int(k)};
    db_result *r;
    buf[0] = '\0';
    if (db_exec(c, &st_get, p, 1, &r) != DB_OK) return "(error)";
    if (db_result_rows(r) == 1)
        db_result_copy_text(r, 0, 0, buf, cap);
    else
        snprintf(buf, cap, "(none)");
    db_result_free(r);
    return buf;
}

static void del_fill(void *arg, size_t i, db_param *p)
{
    p[0] = db_p_int(((const int64_t *)arg)[i]);
}

static void test_hold(db_conn *c)
{
    reset_table(c);
    db_conn_opts o = {.async_commit = true, .hold_commits = true};
    db_conn *a;
    db_error e;
    CHECK_INT(db_conn_open(conninfo, &o, &a, &e), DB_OK);
    if (!a) return;
    held_insert(a, 1);
    held_insert(a, 2);
    CHECK_INT(count_rows(c), 0); /* held: nothing sent */
    CHECK_INT(db_sync(a), DB_OK);
    CHECK_INT(count_rows(c), 2);
    CHECK_INT(db_sync(a), DB_OK); /* nothing to do */
    /* the next statement to reach the server takes them ahead of it */
    held_insert(a, 3);
    CHECK_INT(count_rows(a), 3);
    CHECK_INT(count_rows(c), 3);
    /* a transaction that read something is committed in its own round trip, as usual */
    held_insert(a, 4);
    CHECK_INT(db_begin(a, 0), DB_OK);
    CHECK(has_row(a, 4));
    db_param p5[3] = {db_p_int(5), db_p_text("read first"), db_p_null()};
    CHECK_INT(db_exec_deferred(a, &st_ins, p5, 3), DB_OK);
    CHECK_INT(db_commit(a), DB_OK);
    CHECK_INT(count_rows(c), 5);
    /* and one whose caller wants a count of changed rows */
    CHECK_INT(db_begin(a, 0), DB_OK);
    db_param p6[3] = {db_p_int(6), db_p_text("counted"), db_p_null()};
    int64_t changed = -1;
    CHECK_INT(db_exec_deferred_count(a, &st_ins, p6, 3, &changed), DB_OK);
    CHECK_INT(db_commit(a), DB_OK);
    CHECK_INT(changed, 1);
    CHECK(has_row(c, 6));
    /* a rolled back transaction leaves nothing held */
    CHECK_INT(db_begin(a, 0), DB_OK);
    db_param p7[3] = {db_p_int(7), db_p_text("rolled back"), db_p_null()};
    CHECK_INT(db_exec_deferred(a, &st_ins, p7, 3), DB_OK);
    CHECK_INT(db_rollback(a), DB_OK);
    held_insert(a, 8);
    CHECK_INT(db_sync(a), DB_OK);
    CHECK(!has_row(c, 7));
    CHECK(has_row(c, 8));
    /* a held batch that fails (k 1 exists) is lost whole, k 9 with it; db_sync says so once */
    held_insert(a, 9);
    held_insert(a, 1);
    CHECK_INT(db_held_losses(a), 0);
    CHECK(db_sync(a) != DB_OK);
    CHECK(strstr(db_conn_error(a)->message, "held") != NULL);
    CHECK_INT(db_held_losses(a), 1);
    CHECK(!has_row(c, 9));
    CHECK_INT(db_sync(a), DB_OK);
    CHECK_INT(count_rows(a), 7); /* the connection works on */
    /* a transaction whose first round trip finds the held writes lost fails as well (it may
     * have acted on them), and commits nothing */
    held_insert(a, 1);
    CHECK_INT(db_begin(a, 0), DB_OK);
    db_param p12[3] = {db_p_int(12), db_p_text("after a loss"), db_p_null()};
    CHECK_INT(db_exec_deferred(a, &st_ins, p12, 3), DB_OK);
    CHECK_INT(db_exec(a, &st_count, NULL, 0, NULL), DB_ERR_CONN_LOST);
    CHECK(strstr(db_conn_error(a)->message, "held") != NULL);
    CHECK_INT(db_commit(a), DB_ERR_CONN_LOST);
    CHECK_INT(db_held_losses(a), 2);
    CHECK(!has_row(c, 12));
    CHECK(db_sync(a) != DB_OK); /* reported once */
    CHECK_INT(db_sync(a), DB_OK);
    /* the backend dies while writes are held: nothing of them had left, so they are sent on a
     * new session; the sync still reports the loss of the session (it cannot vouch for it) */
    held_insert(a, 10);
    CHECK(pgtest_kill_backend(a));
    usleep(200 * 1000);
    CHECK(db_sync(a) != DB_OK);
    CHECK(has_row(c, 10));
    CHECK_INT(db_held_losses(a), 2); /* (no new loss) */
    CHECK_INT(db_sync(a), DB_OK);
    /* keyed whole-row writes: among held commits only the last write of a row is sent */
    char buf[64];
    held_write(a, &st_append, 20, "a", 1);
    held_write(a, &st_append, 20, "b", 1);
    held_write(a, &st_append, 21, "c", 1);
    held_write(a, &st_append, 20, "d", 1);
    held_write(a, &st_append, 22, "x", 1);
    held_write(a, &st_del, 22, NULL, 0); /* a delete between two writes of the row stays */
    held_write(a, &st_append, 22, "y", 1);
    held_write(a, &st_append, 23, "x", 1);
    held_write(a, &st_del, 23, NULL, 0);
    CHECK_INT(db_sync(a), DB_OK);
    CHECK_STR(txt_of(c, 20, buf, sizeof(buf)), "d");
    CHECK_STR(txt_of(c, 21, buf, sizeof(buf)), "c");
    CHECK_STR(txt_of(c, 22, buf, sizeof(buf)), "y");
    CHECK_STR(txt_of(c, 23, buf, sizeof(buf)), "(none)");
    held_write(a, &st_append, 21, "e", 1); /* a row already written: an ordinary upsert */
    CHECK_INT(db_sync(a), DB_OK);
    CHECK_STR(txt_of(c, 21, buf, sizeof(buf)), "ce");
    /* many commits held at once (the index of held rows grows): still the last write of each
     * row, and one transaction writing a row twice sends the second */
    for (int i = 0; i < 3000; i++) {
        char v[16];
        snprintf(v, sizeof(v), "v%d", i);
        held_write(a, &st_append, 100 + i % 40, v, 1);
        if (i % 500 == 7) held_write(a, &st_del, 100 + i % 40, NULL, 0);
    }
    CHECK_INT(db_begin(a, 0), DB_OK);
    db_param p1[2] = {db_p_int(200), db_p_text("p")}, p2[2] = {db_p_int(200), db_p_text("q")};
    CHECK_INT(db_exec_deferred_row(a, &st_append, p1, 2, 1), DB_OK);
    CHECK_INT(db_exec_deferred_row(a, &st_append, p2, 2, 1), DB_OK);
    CHECK_INT(db_commit(a), DB_OK);
    CHECK_INT(db_sync(a), DB_OK);
    int last_ok = 0;
    for (int k = 0; k < 40; k++) {
        char want[16];
        snprintf(want, sizeof(want), "v%d", 2960 + k);
        last_ok += strcmp(txt_of(c, 100 + k, buf, sizeof(buf)), want) == 0;
    }
    CHECK_INT(last_ok, 40);
    CHECK_STR(txt_of(c, 200, buf, sizeof(buf)), "q");
    /* a batch of its own goes after what is held (k 30 is inserted, then deleted) */
    held_insert(a, 30);
    int64_t del = 30;
    CHECK_INT(db_exec_batch(a, &st_del, 1, 1, del_fill, &del, NULL), DB_OK);
    CHECK_INT(db_sync(a), DB_OK);
    CHECK(!has_row(c, 30));
    /* closing sends what is held */
    held_insert(a, 11);
    db_conn_close(a);
    CHECK(has_row(c, 11));
}

int main(void)
{
    pgtest_require();
    pgtest_fresh_db("wb_test_core", conninfo, sizeof(conninfo));
    db_conn *c = pgtest_connect(conninfo);
    reset_table(c);
    test_params_verbatim(c);
    test_errors(c);
    test_transactions(c);
    test_serialization_retry(c);
    test_reconnect(c);
    test_interrupted_tx(c);
    test_deferred(c);
    test_later(c);
    test_batches(c);
    test_pool();
    test_sync();
    test_hold(c);
    db_conn_close(c);
    return CHECK_DONE();
}
