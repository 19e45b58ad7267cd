/*
 * db/db.h - PostgreSQL access for wabridge: connections, prepared statements, transactions, a pool.
 *
 * PostgreSQL holds all of the bridge's state and db/ is the only code that speaks SQL. Each engine
 * or portal worker owns one db_conn; the HTTP side borrows connections from a small db_pool.
 * Statements are static db_stmt values prepared lazily on each connection the first time they run;
 * parameters always travel as parameters (PQexecPrepared), never spliced into SQL text. Results
 * come back in binary format, so bytea needs no escaping and integers no parsing.
 *
 * Lost connections: every call first makes sure the connection is up (reconnecting with backoff up
 * to db_conn_opts.reconnect_timeout_ms). A statement that was in flight when the connection broke
 * is re-run only when that is safe: it is marked DB_STMT_IDEMPOTENT and runs outside a transaction.
 * Otherwise the caller hears DB_ERR_CONN_LOST (inside a transaction: nothing of it was committed)
 * or DB_ERR_IN_DOUBT (a COMMIT or a non-idempotent statement whose outcome is unknown). db_tx()
 * wraps a whole transaction and re-runs it after a serialization failure, a deadlock or a lost
 * connection.
 *
 * Errors: functions return DB_OK (0) or a negative db_err; the connection keeps the details of the
 * last error (db_conn_error): the code, the server's SQLSTATE and message, and which statement.
 * A db_conn is used by one thread at a time.
 */
#ifndef DB_DB_H
#define DB_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum db_err {
    DB_OK = 0,
    DB_ERR_NOMEM = -1,     /* an allocation failed */
    DB_ERR_INVALID = -2,   /* the caller passed something unusable */
    DB_ERR_CONNECT = -3,   /* could not (re)connect before the reconnect timeout */
    DB_ERR_CONN_LOST = -4, /* connection lost; the transaction was not committed (safe to redo) */
    DB_ERR_IN_DOUBT = -5,  /* connection lost during COMMIT or a non-idempotent statement */
    DB_ERR_SERVER = -6,    /* the server reported an error: see sqlstate and message */
    DB_ERR_UNIQUE = -7,    /* unique violation (SQLSTATE 23505) */
    DB_ERR_SERIALIZATION = -8,   /* serialization failure or deadlock, retries exhausted */
    DB_ERR_NOT_FOUND = -9,       /* no such row */
    DB_ERR_TX_ABORTED = -10,     /* an earlier statement of this transaction failed; roll back */
    DB_ERR_SCHEMA_TOO_NEW = -11, /* the database was migrated by a newer wabridge */
    DB_ERR_SCHEMA_OLD = -12,     /* the database needs migrations: run wabridge --migrate */
    DB_ERR_MIGRATION = -13,      /* a migration failed or the migration list is malformed */
    DB_ERR_IO = -14,             /* reading migration files failed */
    DB_ERR_TIMEOUT = -15,        /* no pooled connection became free in time */
    DB_ERR_STATE = -16,          /* call out of order (COMMIT without BEGIN, nested BEGIN) */
} db_err;

/* A static English name for the code; never NULL. */
const char *db_strerror(int err);

/* What went wrong, where. */
typedef struct db_error {
    int code;          /* the db_err returned */
    char sqlstate[6];  /* the server's five-character SQLSTATE, "" when not from the server */
    char message[512]; /* "stmt_name: server message" or our own description */
} db_error;

/* Tuning of one connection; zero fields take the defaults shown. */
typedef struct db_conn_opts {
    int reconnect_timeout_ms; /* how long to keep trying to reconnect (default 15000) */
    int tx_max_attempts;      /* db_tx attempts on serialization failure/lost connection (5) */
    bool async_commit;        /* SET synchronous_commit = off on this session: commits return
                                 before the WAL is flushed (a crash may lose the last few hundred
                                 ms of them). Only for writes that are replayed idempotently. */
    bool hold_commits;        /* with async_commit: a transaction that sent nothing before its
                                 COMMIT (only db_exec_deferred writes, none counted) commits with
                                 no round trip: its writes are held, in commit order, and sent as
                                 one transaction ahead of the next statement to reach the server,
                                 at the latest by db_sync (ahead of its WAL flush). Until then
                                 other connections do not see them and a crash loses them; a held
                                 batch that fails is lost whole (db_held_losses), and the next
                                 db_sync fails. For a connection whose commits are vouched for by
                                 db_sync before anything acts on them (the engine's). */
} db_conn_opts;

typedef struct db_conn db_conn;

/* Connects with a libpq connection string (URI or key=value). On failure *out is NULL and err (if
 * not NULL) says why. The caller frees the connection with db_conn_close. */
int db_conn_open(const char *conninfo, const db_conn_opts *opts, db_conn **out, db_error *err);
void db_conn_close(db_conn *c);
/* The last error seen on this connection (code DB_OK after a success). Never NULL. */
const db_error *db_conn_error(const db_conn *c);
/* Server process id of the current session (for tests: pg_terminate_backend). */
int db_conn_backend_pid(const db_conn *c);
/* How many times this connection was re-established after a loss. */
uint64_t db_conn_reconnects(const db_conn *c);
/* True between db_begin and db_commit/db_rollback. */
bool db_conn_in_tx(const db_conn *c);
/* With async_commit: makes every commit of this connection so far durable (one synchronous
 * commit, whose WAL flush covers all earlier ones); DB_OK at once when nothing ran since the last
 * sync, or without async_commit. Not inside a transaction. A failure (the connection lost) means
 * earlier commits may not be durable: the caller must not act as if they were. */
int db_sync(db_conn *c);
/* db_commit, then db_sync, in one round trip when it can (the transaction's statements queued
 * with db_exec_deferred and not sent yet: they, the COMMIT and the sync's transaction travel in
 * one pipeline); else the two calls. DB_OK: committed and durable, with every earlier commit of
 * the connection. When the commit went through and the sync failed: DB_ERR_IN_DOUBT (committed,
 * maybe not durable). */
int db_commit_sync(db_conn *c);
/* hold_commits: how many held batches failed to commit so far (their transactions are lost:
 * whatever was cached as committed by them must be read again). */
uint64_t db_held_losses(const db_conn *c);
/* hold_commits: sends the held writes now (one transaction, committed asynchronously: visible to
 * other connections, durable at the next db_sync). A failure is counted and reported as the held
 * batches' are. Not inside a transaction. */
int db_send_held(db_conn *c);
/* How many db_sync calls failed so far (commits before them may not be durable). */
uint64_t db_sync_failures(const db_conn *c);

/* A statement: a static value, prepared on a connection the first time it runs there. */
typedef struct db_stmt {
    const char *name; /* prepared statement name, unique in the program */
    const char *sql;  /* one SQL statement with $1..$n placeholders */
    int flags;        /* DB_STMT_* */
} db_stmt;

/* Running it twice has the effect of running it once (reads, upserts of whole rows, deletes):
 * db/ may re-run it after reconnecting when the connection broke while it was in flight. */
#define DB_STMT_IDEMPOTENT 1

/* A parameter value. Build with the db_p_* helpers; no allocation, values are borrowed. */
typedef enum db_param_kind {
    DB_PARAM_NULL = 0, /* SQL NULL */
    DB_PARAM_TEXT,     /* NUL-terminated UTF-8 (text may not contain NUL bytes) */
    DB_PARAM_BYTES,    /* binary (bytea), any byte values */
    DB_PARAM_INT,      /* an integer, for int2/int4/int8 columns */
    DB_PARAM_BOOL,     /* a boolean */
} db_param_kind;

typedef struct db_param {
    db_param_kind kind; /* which of the fields below is meaningful */
    const void *ptr;    /* TEXT: the string; BYTES: the bytes (may be NULL when len is 0) */
    size_t len;         /* BYTES: byte count */
    int64_t i;          /* INT: value; BOOL: 0 or 1 */
} db_param;

static inline db_param db_p_null(void)
{
    db_param p = {DB_PARAM_NULL, NULL, 0, 0};
    return p;
}
/* NULL s gives SQL NULL. */
static inline db_param db_p_text(const char *s)
{
    db_param p = {s ? DB_PARAM_TEXT : DB_PARAM_NULL, s, 0, 0};
    return p;
}
static inline db_param db_p_bytes(const void *data, size_t len)
{
    db_param p = {DB_PARAM_BYTES, data, len, 0};
    return p;
}
static inline db_param db_p_int(int64_t v)
{
    db_param p = {DB_PARAM_INT, NULL, 0, v};
    return p;
}
static inline db_param db_p_bool(bool v)
{
    db_param p = {DB_PARAM_BOOL, NULL, 0, v ? 1 : 0};
    return p;
}

/* A query result (libpq's PGresult). Free with db_result_free. */
typedef struct pg_result db_result;

/* Runs a statement. When out is not NULL it receives the result (free it with db_result_free) on
 * success; on failure *out is NULL. At most 64 parameters. */
int db_exec(db_conn *c, const db_stmt *st, const db_param *params, int nparams, db_result **out);
/* Runs a statement and reads one row; DB_ERR_NOT_FOUND when it returned none. */
int db_exec_row(db_conn *c, const db_stmt *st, const db_param *params, int nparams,
                db_result **out);

int db_result_rows(const db_result *r);
/* Rows changed by an INSERT/UPDATE/DELETE. */
int64_t db_result_affected(const db_result *r);
bool db_result_isnull(const db_result *r, int row, int col);
/* Bytes of a column (text or bytea); NULL columns give length 0. The pointer lives as long as the
 * result and is followed by a NUL byte, so text columns are C strings. */
const uint8_t *db_result_bytes(const db_result *r, int row, int col, size_t *len);
const char *db_result_text(const db_result *r, int row, int col);
/* int2/int4/int8 columns; NULL gives 0. */
int64_t db_result_int(const db_result *r, int row, int col);
bool db_result_bool(const db_result *r, int row, int col);
/* Copies a text column into buf (cap bytes, always NUL-terminated); false when it does not fit. */
bool db_result_copy_text(const db_result *r, int row, int col, char *buf, size_t cap);
/* Copies a bytea column of exactly n bytes into out; false on any other length (or NULL). */
bool db_result_copy_fixed(const db_result *r, int row, int col, void *out, size_t n);
void db_result_free(db_result *r);

/* Transactions. */
#define DB_TX_REPEATABLE_READ 1 /* isolation REPEATABLE READ (default READ COMMITTED) */
#define DB_TX_SERIALIZABLE    2 /* isolation SERIALIZABLE */
#define DB_TX_READ_ONLY       4
#define DB_TX_IDEMPOTENT      8  /* db_tx may re-run the body even when a COMMIT was in doubt */
#define DB_TX_DURABLE         16 /* db_tx commits with db_commit_sync */

/* Opens a transaction. Nothing is sent yet: BEGIN travels with the transaction's first statement
 * (or its COMMIT) in the same round trip, so a lost or refused connection shows there; a
 * transaction in which nothing ran commits without a round trip. */
int db_begin(db_conn *c, int flags);
/* Commits. A transaction in which a statement failed is rolled back and DB_ERR_TX_ABORTED returned;
 * when a deferred write (db_exec_deferred) fails at commit, its own error is returned (rolled
 * back too). A connection lost during COMMIT gives DB_ERR_IN_DOUBT. */
int db_commit(db_conn *c);
/* Rolls back; also clears the state of a transaction whose connection was lost. */
int db_rollback(db_conn *c);

/* The body of a transaction. It may run more than once, so it must not have side effects outside
 * the database that cannot be repeated. Return DB_OK to commit, anything else to roll back. */
typedef int (*db_tx_fn)(db_conn *c, void *arg);
/* BEGIN; fn; COMMIT. Re-runs the whole transaction (up to tx_max_attempts) after a serialization
 * failure, a deadlock, or a connection lost before COMMIT; with DB_TX_IDEMPOTENT also after a
 * COMMIT in doubt. Returns fn's error (after rolling back) or the commit's. */
int db_tx(db_conn *c, int flags, db_tx_fn fn, void *arg);

/* Runs one write statement n times, row i's parameters filled in by fill(arg, i, params), in a
 * single round trip (libpq pipeline mode). Inside an open transaction the rows join it; outside,
 * they get a transaction of their own (BEGIN and COMMIT travel in the same pipeline), so the batch
 * is all or nothing. A lost connection re-runs the whole batch when st is idempotent and no
 * transaction was open; otherwise it is reported as for db_exec. *affected (may be NULL) receives
 * the rows changed in total. At most 64 parameters per row. */
typedef void (*db_batch_fill_fn)(void *arg, size_t i, db_param *params);
int db_exec_batch(db_conn *c, const db_stmt *st, int nparams, size_t n, db_batch_fill_fn fill,
                  void *arg, int64_t *affected);

/* A write whose outcome the caller needs only at commit: inside a transaction it is queued (its
 * parameters copied) and sent in the same round trip as the transaction's next statement, or as
 * its COMMIT; an error then shows there (that statement or db_commit fails, and the transaction
 * is rolled back). Outside a transaction it runs at once, like db_exec. */
int db_exec_deferred(db_conn *c, const db_stmt *st, const db_param *params, int nparams);
/* The same inside a transaction, and *affected (which must stay valid until then) receives the
 * rows it changed when it has run: after the next statement or the COMMIT succeeded (-1 before). */
int db_exec_deferred_count(db_conn *c, const db_stmt *st, const db_param *params, int nparams,
                           int64_t *affected);
/* The same, and *first (valid until then) receives the first column of its first row (st has
 * RETURNING: the id of the row it inserted), or -1 when it returned no row. */
int db_exec_deferred_first(db_conn *c, const db_stmt *st, const db_param *params, int nparams,
                           int64_t *first);
/* db_exec_deferred of a whole-row write (an upsert that sets every column) of the row its first
 * key_nparams parameters name: among held commits (hold_commits) a later write of the same row,
 * in the same transaction or a later one, replaces it, so a batch writes each row once. */
int db_exec_deferred_row(db_conn *c, const db_stmt *st, const db_param *params, int nparams,
                         int key_nparams);

/* Write-behind, for writes whose failure the caller would only log (a mapping row, the deletion
 * of a handled inbox row): outside a transaction, st is queued (parameters copied) and sent in
 * the same round trip as this connection's next statement, ahead of it, the queued writes in one
 * transaction (one commit), or by db_flush. A failure touches nothing else: when one write fails
 * the others go again, each in its own transaction, in a second round trip, after which an
 * idempotent next statement runs again (a statement that is not sees them only after it). Failures
 * are counted (db_later_failures). A db_begin sends the queue first. Inside a transaction:
 * db_exec_deferred. */
int db_exec_later(db_conn *c, const db_stmt *st, const db_param *params, int nparams);
/* Sends the queued later writes now (one round trip). DB_OK when all of them succeeded. */
int db_flush(db_conn *c);
/* How many later writes failed so far; last (may be NULL) receives the last failure. */
uint64_t db_later_failures(const db_conn *c, char *last, size_t cap);

/* Runs SQL text with no parameters (migrations, tests). Several statements may be separated by
 * semicolons. Never build this text from data. */
int db_exec_script(db_conn *c, const char *sql);

/* A fixed-size pool of connections for threads that do not own one (the HTTP side). Connections are
 * opened lazily. Thread-safe. */
typedef struct db_pool db_pool;

int db_pool_new(const char *conninfo, int size, const db_conn_opts *opts, db_pool **out);
/* Waits up to timeout_ms (negative: forever) for a free connection. */
int db_pool_get(db_pool *p, int timeout_ms, db_conn **out, db_error *err);
/* Returns a connection; a transaction left open is rolled back. */
void db_pool_put(db_pool *p, db_conn *c);
/* All connections must have been returned. */
void db_pool_free(db_pool *p);

#endif
