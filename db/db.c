/*
 * db/db.c - connections, lazily prepared statements, reconnects, transactions and the pool.
 *
 * The rules of db/db.h in code. Before a statement is sent the connection is checked (a cheap poll
 * of its socket catches a server that hung up while we were idle, e.g. pg_terminate_backend), so a
 * statement is never sent on a connection already known dead. When a connection breaks while a
 * statement is in flight, the statement is re-run only if it is idempotent and outside a
 * transaction; a transaction whose connection broke stays "lost" until the caller rolls it back, so
 * no later statement of it can slip through in autocommit mode on the new session.
 */
#include "db/db.h"
#include "db/db_internal.h"

#include <libpq-fe.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DB_MAX_PARAMS 64

/* A write queued by db_exec_deferred: sent with the transaction's next statement or its COMMIT. */
typedef struct deferred_stmt {
    const db_stmt *st;
    int nparams;
    char *values[DB_MAX_PARAMS]; /* copies (NULL: SQL NULL), in one block starting at values[..] */
    int lengths[DB_MAX_PARAMS];
    int formats[DB_MAX_PARAMS];
    char *block;       /* the copies' storage */
    int64_t *affected; /* receives the rows it changed once it ran (NULL: not wanted) */
    int64_t *first;    /* receives its first row's first column (an id it RETURNING), -1 when
                          it returned no row (NULL: not wanted) */
    int key_nparams;   /* > 0: a whole-row write of the row its first key_nparams parameters
                          name; a later one of the same row replaces it among held commits */
    uint32_t key_hash; /* (key_nparams > 0) of st and the key parameters: compared first */
} deferred_stmt;

/* Statements queued with their parameters: db_exec_deferred's (inside a transaction) and
 * db_exec_later's (outside one). */
typedef struct stmt_queue {
    deferred_stmt *items;
    size_t n, cap;
    size_t dead;     /* items superseded in place (st NULL, no block), left out when it is sent */
    uint32_t *index; /* held commits only: the live keyed items by key_hash (open addressing;
                        an entry is an item's index + 1, 0 = free), so that a commit finds the
                        row it supersedes without reading every held item */
    size_t index_cap, index_n; /* slots (a power of 2) and entries */
} stmt_queue;

static void queue_clear(stmt_queue *q);
static uint32_t key_hash_of(const deferred_stmt *d);

struct db_conn {
    PGconn *pg;               /* the libpq connection; reset in place on reconnect */
    db_conn_opts opts;        /* with defaults filled in */
    db_error err;             /* the last error (code DB_OK after a success) */
    const db_stmt **prepared; /* statements prepared on the current server session */
    size_t nprepared;         /* entries used in prepared */
    size_t capprepared;       /* entries allocated in prepared */
    bool in_tx;               /* between db_begin and db_commit/db_rollback */
    bool tx_failed;           /* a statement of the open transaction failed on the server */
    bool tx_lost;             /* the connection broke inside the open transaction */
    bool unsynced;            /* async_commit: something may have committed since db_sync */
    bool sent_unsynced;       /* async_commit: statements reached the server since db_sync */
    bool sync_lost;           /* the session ended with sent_unsynced: the next db_sync fails */
    bool commit_sync;         /* db_commit_sync: the COMMIT's round trip carries the sync */
    bool commit_synced;       /* ... and it did */
    /* Lazy BEGIN: db_begin sends nothing; BEGIN travels with the transaction's first statement
     * (or its COMMIT) in one pipeline. While begin_pending, nothing of the transaction reached
     * the server, so a lost connection loses nothing and may simply be re-established. */
    bool begin_pending;
    const char *begin_sql; /* "BEGIN ..." for the flags given to db_begin */
    stmt_queue deferred;   /* db_exec_deferred's queue, sent in the next round trip */
    stmt_queue later;      /* db_exec_later's queue (outside transactions) */
    /* hold_commits: the writes of transactions committed without a round trip, in commit order;
     * sent as one transaction ahead of the next round trip, or by db_sync with its WAL flush */
    stmt_queue held;
    uint64_t held_losses;   /* held batches that failed (db_held_losses) */
    uint64_t sync_failures; /* db_sync calls that failed (db_sync_failures) */
    bool held_unreported;   /* one failed since the last db_sync, which must say so */
    char held_error[256];   /* why the last one failed */
    uint64_t later_failures;
    char later_error[256]; /* the last failure of a later write */
    uint64_t reconnects;   /* successful reconnects after a loss */
    uint64_t rng;          /* xorshift state for retry jitter */
};

const char *db_strerror(int err)
{
    switch ((db_err)err) {
    case DB_OK: return "no error";
    case DB_ERR_NOMEM: return "out of memory";
    case DB_ERR_INVALID: return "invalid argument";
    case DB_ERR_CONNECT: return "cannot connect to PostgreSQL";
    case DB_ERR_CONN_LOST: return "connection lost; transaction not committed";
    case DB_ERR_IN_DOUBT: return "connection lost; outcome unknown";
    case DB_ERR_SERVER: return "PostgreSQL error";
    case DB_ERR_UNIQUE: return "unique violation";
    case DB_ERR_SERIALIZATION: return "serialization failure";
    case DB_ERR_NOT_FOUND: return "not found";
    case DB_ERR_TX_ABORTED: return "transaction aborted by an earlier error";
    case DB_ERR_SCHEMA_TOO_NEW: return "database schema is newer than this wabridge";
    case DB_ERR_SCHEMA_OLD: return "database schema needs migrating";
    case DB_ERR_MIGRATION: return "migration failed";
    case DB_ERR_IO: return "I/O error";
    case DB_ERR_TIMEOUT: return "timed out";
    case DB_ERR_STATE: return "call out of order";
    }
    return "unknown error";
}

static void silent_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int set_error(db_conn *c, int code, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int set_error(db_conn *c, int code, const char *sqlstate, const char *fmt, ...)
{
    c->err.code = code;
    snprintf(c->err.sqlstate, sizeof(c->err.sqlstate), "%s", sqlstate ? sqlstate : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err.message, sizeof(c->err.message), fmt, ap);
    va_end(ap);
    /* libpq messages end in a newline; messages read better without it */
    size_t n = strlen(c->err.message);
    while (n > 0 && (c->err.message[n - 1] == '\n' || c->err.message[n - 1] == ' '))
        c->err.message[--n] = '\0';
    /* and some span lines ("... failed: ...\n\tIs the server running ..."): keep it one line */
    for (char *p = c->err.message; *p; p++)
        if (*p == '\n' || *p == '\t') *p = ' ';
    return code;
}

int db_set_error(db_conn *c, int code, const char *sqlstate, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof(c->err.message)];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return set_error(c, code, sqlstate, "%s", msg);
}

int64_t db_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void clear_error(db_conn *c)
{
    c->err.code = DB_OK;
    c->err.sqlstate[0] = '\0';
    c->err.message[0] = '\0';
}

/* The db_err for a server SQLSTATE. */
static int code_for_sqlstate(const char *st)
{
    if (!st) return DB_ERR_SERVER;
    if (strcmp(st, "23505") == 0) return DB_ERR_UNIQUE;
    if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0) return DB_ERR_SERIALIZATION;
    if (strcmp(st, "25P02") == 0) return DB_ERR_TX_ABORTED;
    return DB_ERR_SERVER;
}

/* Records the error of a failed result: "what: primary message (detail)". */
static int set_result_error(db_conn *c, int code, const PGresult *res, const char *what)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    if (!msg) msg = PQerrorMessage(c->pg);
    if (code == 0) code = code_for_sqlstate(st);
    if (detail) return set_error(c, code, st, "%s: %s (%s)", what, msg, detail);
    return set_error(c, code, st, "%s: %s", what, msg);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool conn_bad(const db_conn *c)
{
    return !c->pg || PQstatus(c->pg) != CONNECTION_OK;
}

/* Notices a server that hung up while we were idle: its farewell (an error and EOF) is already in
 * the socket. Costs one poll() system call. */
static bool conn_alive(db_conn *c)
{
    if (conn_bad(c)) return false;
    struct pollfd pfd = {PQsocket(c->pg), POLLIN, 0};
    if (pfd.fd < 0) return false;
    /* the farewell message and the end of the stream may need two reads */
    for (int i = 0; i < 4 && poll(&pfd, 1, 0) > 0; i++) {
        if (!PQconsumeInput(c->pg)) return false;
        PGnotify *n;
        while ((n = PQnotifies(c->pg)) != NULL)
            PQfreemem(n);
        if (conn_bad(c)) return false;
    }
    return !conn_bad(c);
}

/* Session settings asked for in the options, after every (re)connect. */
static bool apply_session(db_conn *c)
{
    if (!c->opts.async_commit) return true;
    PGresult *r = PQexec(c->pg, "SET synchronous_commit = off");
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

static int reconnect(db_conn *c)
{
    int64_t deadline = now_ms() + c->opts.reconnect_timeout_ms;
    int wait = 25;
    for (;;) {
        PQreset(c->pg);
        if (PQstatus(c->pg) == CONNECTION_OK && apply_session(c)) {
            PQsetNoticeProcessor(c->pg, silent_notice, NULL);
            c->nprepared = 0;
            c->reconnects++;
            /* commits of the old session not yet durable may be lost: the next sync says so */
            if (c->sent_unsynced) c->sync_lost = true;
            c->sent_unsynced = false;
            return DB_OK;
        }
        if (now_ms() >= deadline)
            return set_error(c, DB_ERR_CONNECT, NULL, "reconnect: %s", PQerrorMessage(c->pg));
        sleep_ms(wait);
        if (wait < 500) wait *= 2;
    }
}

/* Makes sure the connection is usable before anything is sent. Inside a transaction a dead
 * connection means the transaction is gone: it is marked lost (and the session re-established so
 * the rollback and later work can proceed). */
static int ensure_conn(db_conn *c)
{
    if (conn_alive(c)) return DB_OK;
    int rc = reconnect(c);
    if (c->in_tx && !c->begin_pending) {
        c->tx_lost = true;
        if (rc == DB_OK)
            set_error(c, DB_ERR_CONN_LOST, NULL,
                      "connection lost inside a transaction; nothing of it was committed");
        return DB_ERR_CONN_LOST;
    }
    return rc;
}

int db_conn_open(const char *conninfo, const db_conn_opts *opts, db_conn **out, db_error *err)
{
    *out = NULL;
    db_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        if (err) *err = (db_error){DB_ERR_NOMEM, "", "db_conn_open: out of memory"};
        return DB_ERR_NOMEM;
    }
    if (opts) c->opts = *opts;
    if (c->opts.reconnect_timeout_ms <= 0) c->opts.reconnect_timeout_ms = 15000;
    if (c->opts.tx_max_attempts <= 0) c->opts.tx_max_attempts = 5;
    c->rng = (uint64_t)now_ms() * 0x9e3779b97f4a7c15ULL | 1;
    c->pg = PQconnectdb(conninfo ? conninfo : "");
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK || !apply_session(c)) {
        if (err) {
            set_error(c, DB_ERR_CONNECT, NULL, "connect: %s",
                      c->pg ? PQerrorMessage(c->pg) : "out of memory");
            *err = c->err;
        }
        PQfinish(c->pg);
        free(c);
        return DB_ERR_CONNECT;
    }
    PQsetNoticeProcessor(c->pg, silent_notice, NULL);
    *out = c;
    return DB_OK;
}

static int held_send(db_conn *c);
static void held_first(db_conn *c);
static int exec_simple(db_conn *c, const char *sql, const char *what, int lost_code);

void db_conn_close(db_conn *c)
{
    if (!c) return;
    if (c->held.n && !conn_bad(c)) { /* what was committed, made durable */
        held_send(c);
        db_sync(c);
    }
    PQfinish(c->pg);
    free(c->prepared);
    queue_clear(&c->deferred);
    free(c->deferred.items);
    queue_clear(&c->later);
    free(c->later.items);
    queue_clear(&c->held);
    free(c->held.items);
    free(c->held.index);
    free(c);
}

const db_error *db_conn_error(const db_conn *c)
{
    return &c->err;
}

int db_conn_backend_pid(const db_conn *c)
{
    return c->pg ? PQbackendPID(c->pg) : 0;
}

uint64_t db_conn_reconnects(const db_conn *c)
{
    return c->reconnects;
}

bool db_conn_in_tx(const db_conn *c)
{
    return c->in_tx;
}

static bool is_prepared(const db_conn *c, const db_stmt *st)
{
    for (size_t i = 0; i < c->nprepared; i++)
        if (c->prepared[i] == st) return true;
    return false;
}

/* Prepares st on this session unless done already. Returns DB_ERR_CONN_LOST when the connection
 * broke (nothing was executed). */
static int ensure_prepared(db_conn *c, const db_stmt *st)
{
    if (is_prepared(c, st)) return DB_OK;
    if (c->nprepared == c->capprepared) {
        size_t cap = c->capprepared ? c->capprepared * 2 : 32;
        const db_stmt **p = realloc(c->prepared, cap * sizeof(*p));
        if (!p) return set_error(c, DB_ERR_NOMEM, NULL, "%s: out of memory", st->name);
        c->prepared = p;
        c->capprepared = cap;
    }
    PGresult *res = PQprepare(c->pg, st->name, st->sql, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        int code = conn_bad(c) ? DB_ERR_CONN_LOST : 0;
        set_result_error(c, code, res, st->name);
        PQclear(res);
        if (code == DB_ERR_CONN_LOST && c->in_tx && !c->begin_pending) c->tx_lost = true;
        if (code == 0 && c->in_tx) c->tx_failed = true;
        return c->err.code;
    }
    PQclear(res);
    c->prepared[c->nprepared++] = st;
    return DB_OK;
}

/* Refuses statements of a transaction that already failed or lost its connection. */
static int check_tx_usable(db_conn *c, const char *what)
{
    if (!c->in_tx) return DB_OK;
    if (c->tx_lost)
        return set_error(c, DB_ERR_CONN_LOST, NULL,
                         "%s: the transaction was lost with its connection; roll it back", what);
    if (c->tx_failed)
        return set_error(c, DB_ERR_TX_ABORTED, "25P02",
                         "%s: an earlier statement of this transaction failed; roll it back", what);
    return DB_OK;
}

/* Parameters as libpq wants them. */
typedef struct wire_params {
    const char *values[DB_MAX_PARAMS]; /* NULL: SQL NULL */
    int lengths[DB_MAX_PARAMS];        /* for binary values */
    int formats[DB_MAX_PARAMS];        /* 0 text, 1 binary */
    char nums[DB_MAX_PARAMS][24];      /* integers formatted as text */
} wire_params;

static int to_wire(db_conn *c, const db_stmt *st, const db_param *params, int nparams,
                   wire_params *w)
{
    for (int i = 0; i < nparams; i++) {
        const db_param *p = &params[i];
        w->lengths[i] = 0;
        w->formats[i] = 0;
        switch (p->kind) {
        case DB_PARAM_NULL: w->values[i] = NULL; break;
        case DB_PARAM_TEXT: w->values[i] = p->ptr; break;
        case DB_PARAM_BYTES:
            if (p->len > 0x7fffffff)
                return set_error(c, DB_ERR_INVALID, NULL, "%s: parameter too large", st->name);
            w->values[i] = p->len ? p->ptr : ""; /* a NULL pointer would mean SQL NULL */
            w->lengths[i] = (int)p->len;
            w->formats[i] = 1;
            break;
        case DB_PARAM_INT:
            snprintf(w->nums[i], sizeof(w->nums[i]), "%lld", (long long)p->i);
            w->values[i] = w->nums[i];
            break;
        case DB_PARAM_BOOL: w->values[i] = p->i ? "t" : "f"; break;
        default: return set_error(c, DB_ERR_INVALID, NULL, "%s: bad parameter kind", st->name);
        }
    }
    return DB_OK;
}

/* ---- lazy BEGIN and deferred writes ---- */

static void queue_clear(stmt_queue *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->items[i].block);
    q->n = q->dead = 0;
    if (q->index_n) memset(q->index, 0, q->index_cap * sizeof(*q->index));
    q->index_n = 0;
}

/* Closes the gaps superseded items left (one pass, in order). */
static void queue_compact(stmt_queue *q)
{
    if (!q->dead) return;
    size_t kept = 0;
    for (size_t i = 0; i < q->n; i++) {
        if (!q->items[i].st) continue;
        if (kept != i) q->items[kept] = q->items[i]; /* (an item is ~1 KB) */
        kept++;
    }
    q->n = kept;
    q->dead = 0;
}

static void defer_clear(db_conn *c)
{
    queue_clear(&c->deferred);
}

/* Queues st with its parameters (copied) on q. */
static int queue_add(db_conn *c, stmt_queue *q, const db_stmt *st, const wire_params *w,
                     int nparams)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 8;
        deferred_stmt *d = realloc(q->items, cap * sizeof(*d));
        if (!d) return set_error(c, DB_ERR_NOMEM, NULL, "%s: out of memory", st->name);
        q->items = d;
        q->cap = cap;
    }
    size_t total = 0, len[DB_MAX_PARAMS];
    for (int i = 0; i < nparams; i++) {
        len[i] = !w->values[i]   ? 0
                 : w->formats[i] ? (size_t)w->lengths[i]
                                 : strlen(w->values[i]) + 1;
        total += len[i];
    }
    deferred_stmt *d = &q->items[q->n];
    d->affected = NULL;
    d->first = NULL;
    d->key_nparams = 0;
    d->block = malloc(total ? total : 1);
    if (!d->block) return set_error(c, DB_ERR_NOMEM, NULL, "%s: out of memory", st->name);
    d->st = st;
    d->nparams = nparams;
    char *at = d->block;
    for (int i = 0; i < nparams; i++) {
        d->values[i] = w->values[i] ? at : NULL;
        if (len[i]) memcpy(at, w->values[i], len[i]);
        at += len[i];
        d->lengths[i] = w->lengths[i];
        d->formats[i] = w->formats[i];
    }
    q->n++;
    return DB_OK;
}

/* Prepares the deferred statements and st (may be NULL) on this session. */
static int prepare_pending(db_conn *c, const db_stmt *st)
{
    for (size_t i = 0; i < c->deferred.n; i++) {
        int rc = ensure_prepared(c, c->deferred.items[i].st);
        if (rc) return rc;
    }
    return st ? ensure_prepared(c, st) : DB_OK;
}

/* One round trip in pipeline mode: [BEGIN] [the deferred writes] [st] [COMMIT], then a sync.
 * *out (may be NULL) receives st's result; *affected (may be NULL) the rows the writes and st
 * changed; *commit_sent whether a COMMIT may have reached the server. Returns DB_OK, the first
 * failing statement's error (the server skips the rest of the pipeline), or DB_ERR_CONN_LOST. */
/* What makes a COMMIT durable: synchronous for this transaction, which writes a WAL record (a
 * transaction that wrote none - an xid alone, an insert that did nothing - commits without
 * flushing the WAL even when synchronous_commit is on). */
#define SYNC_COMMIT "SET LOCAL synchronous_commit = on"
#define WAL_RECORD  "SELECT pg_logical_emit_message(true, 'wabridge', 'sync')"
static const char *const durable_sql[2] = {SYNC_COMMIT, WAL_RECORD};

static int pipeline_once(db_conn *c, bool with_begin, const db_stmt *st, const wire_params *w,
                         int nparams, bool with_commit, PGresult **out, int64_t *affected,
                         bool *commit_sent)
{
    *commit_sent = false;
    if (out) *out = NULL;
    if (affected) *affected = 0;
    if (!PQenterPipelineMode(c->pg))
        return set_error(c, DB_ERR_STATE, NULL, "%s: cannot enter pipeline mode",
                         st ? st->name : "COMMIT");
    bool sent = true;
    c->sent_unsynced |= c->opts.async_commit;
    if (with_begin)
        sent = PQsendQueryParams(c->pg, c->begin_sql, 0, NULL, NULL, NULL, NULL, 0) == 1;
    for (size_t i = 0; i < c->deferred.n && sent; i++) {
        const deferred_stmt *d = &c->deferred.items[i];
        sent = PQsendQueryPrepared(c->pg, d->st->name, d->nparams, (const char *const *)d->values,
                                   d->lengths, d->formats, 1) == 1;
    }
    if (st && sent)
        sent = PQsendQueryPrepared(c->pg, st->name, nparams, w->values, w->lengths, w->formats,
                                   1) == 1;
    /* commit_sync (db_commit_sync, db_sync's held batch): this COMMIT is synchronous, and the
     * transaction certainly writes WAL (a commit without any is never flushed) */
    bool with_sync = with_commit && c->commit_sync;
    for (size_t i = 0; with_sync && sent && i < 2; i++)
        sent = PQsendQueryParams(c->pg, durable_sql[i], 0, NULL, NULL, NULL, NULL, 0) == 1;
    if (with_commit && sent) {
        sent = PQsendQueryParams(c->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
        *commit_sent = sent;
    }
    if (sent) sent = PQpipelineSync(c->pg) == 1;
    /* the results, query by query (each query's results end with a NULL) */
    size_t q = 0, first_defer = with_begin ? 1 : 0, main_q = first_defer + c->deferred.n;
    size_t durable_q = main_q + (st ? 1 : 0), commit_q = durable_q + (with_sync ? 2 : 0);
    int err = DB_OK;
    bool synced = false;
    while (sent && !synced) {
        PGresult *res = PQgetResult(c->pg);
        if (!res) {
            if (conn_bad(c)) break;
            q++;
            continue;
        }
        ExecStatusType s = PQresultStatus(res);
        const char *what =
            q >= first_defer && q < main_q ? c->deferred.items[q - first_defer].st->name
            : st && q == main_q            ? st->name
            : with_begin && q == 0         ? "BEGIN"
            : with_sync && q >= durable_q && q < commit_q ? durable_sql[q - durable_q]
                                                          : "COMMIT";
        if (with_sync && q >= durable_q && q < commit_q &&
            (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)) {
            PQclear(res);
            continue;
        }
        if (s == PGRES_PIPELINE_SYNC) {
            synced = true;
        } else if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            bool tx_cmd = (with_begin && q == 0) || (with_commit && q == commit_q);
            if (tx_cmd && strcmp(PQcmdStatus(res), "ROLLBACK") == 0 && err == DB_OK)
                err = set_error(c, DB_ERR_TX_ABORTED, "25P02", "COMMIT: the server rolled back");
            if (!tx_cmd && affected) *affected += db_result_affected(res);
            if (q >= first_defer && q < main_q && c->deferred.items[q - first_defer].affected)
                *c->deferred.items[q - first_defer].affected = db_result_affected(res);
            if (q >= first_defer && q < main_q && c->deferred.items[q - first_defer].first)
                *c->deferred.items[q - first_defer].first =
                    PQntuples(res) > 0 && PQnfields(res) > 0 ? db_result_int(res, 0, 0) : -1;
            if (st && q == main_q && out && err == DB_OK) {
                *out = res; /* kept for the caller */
                continue;
            }
        } else if (s != PGRES_PIPELINE_ABORTED && err == DB_OK && !conn_bad(c)) {
            err = set_result_error(c, 0, res, what);
        }
        PQclear(res);
        if (conn_bad(c)) break;
    }
    if (!synced || conn_bad(c)) {
        if (out && *out) {
            PQclear(*out);
            *out = NULL;
        }
        set_error(c, DB_ERR_CONN_LOST, NULL, "%s: connection lost: %s", st ? st->name : "COMMIT",
                  PQerrorMessage(c->pg));
        return DB_ERR_CONN_LOST;
    }
    PQexitPipelineMode(c->pg);
    if (with_sync && err == DB_OK) c->commit_synced = true;
    if (err && out && *out) {
        PQclear(*out);
        *out = NULL;
    }
    return err;
}

/* Inside a transaction with its BEGIN not yet sent or writes queued: sends them with st (NULL:
 * only them) and, with_commit, the COMMIT, in one round trip. Afterwards nothing is pending. When
 * the transaction begins in this round trip and the connection is lost before a COMMIT was sent,
 * the server rolled everything back: the connection is re-established and the round trip
 * repeated. */
static int run_pending(db_conn *c, const db_stmt *st, const wire_params *w, int nparams,
                       bool with_commit, PGresult **out, int64_t *affected)
{
    int rc;
    /* held writes go first (while any are held, no transaction is open on the server). If they are
     * lost, this transaction fails too: what it read from caches may stand on them */
    if (c->begin_pending && c->held.n && held_send(c) != DB_OK) {
        c->begin_pending = false;
        defer_clear(c);
        c->tx_lost = true;
        return set_error(c, DB_ERR_CONN_LOST, NULL,
                         "the writes held before this transaction were lost (%s); nothing of it "
                         "was committed",
                         c->held_error);
    }
    for (int attempt = 0;; attempt++) {
        bool fresh = c->begin_pending;
        rc = ensure_conn(c);
        if (rc == DB_OK) rc = prepare_pending(c, st);
        if (rc == DB_ERR_CONN_LOST && fresh && attempt < 3) continue; /* nothing ran */
        if (rc != DB_OK) break;
        bool commit_sent = false;
        rc = pipeline_once(c, fresh, st, w, nparams, with_commit, out, affected, &commit_sent);
        if (rc == DB_ERR_CONN_LOST && fresh && !commit_sent && attempt < 3) continue;
        if (rc == DB_ERR_CONN_LOST && commit_sent) {
            c->err.code = rc = DB_ERR_IN_DOUBT;
            size_t n = strlen(c->err.message);
            snprintf(c->err.message + n, sizeof(c->err.message) - n,
                     " [during COMMIT: it may or may not have happened]");
        }
        break;
    }
    c->begin_pending = false;
    defer_clear(c);
    if (rc == DB_OK)
        clear_error(c);
    else if (rc == DB_ERR_CONN_LOST || rc == DB_ERR_IN_DOUBT)
        c->tx_lost = true;
    else
        c->tx_failed = true; /* the server aborted the transaction at the error */
    return rc;
}

/* ---- held commits (db_conn_opts.hold_commits) ---- */

/* Sends the held writes as one transaction in one round trip (committed asynchronously like any
 * other of the connection, or durably when db_sync sends it: commit_sync); nothing else may be
 * pending. A connection lost before the COMMIT left loses nothing: it is re-established and the
 * batch sent again. A failure loses the batch: counted, and reported by the next db_sync. */
static int held_send(db_conn *c)
{
    if (!c->held.n) return DB_OK;
    queue_compact(&c->held);
    stmt_queue mine = c->deferred; /* the caller's own transaction's, if it has begun */
    const char *begin_sql = c->begin_sql;
    c->deferred = c->held;
    c->held = (stmt_queue){0};
    c->begin_sql = "BEGIN";
    int rc = DB_OK;
    for (int attempt = 0;; attempt++) {
        rc = ensure_conn(c);
        if (rc == DB_OK) rc = prepare_pending(c, NULL);
        if (rc == DB_ERR_CONN_LOST && attempt < 3) continue; /* nothing ran */
        if (rc != DB_OK) break;
        bool commit_sent = false;
        rc = pipeline_once(c, true, NULL, NULL, 0, true, NULL, NULL, &commit_sent);
        if (rc == DB_ERR_CONN_LOST && !commit_sent && attempt < 3) continue;
        if (rc == DB_ERR_CONN_LOST && commit_sent) c->err.code = rc = DB_ERR_IN_DOUBT;
        break;
    }
    if (rc != DB_OK && !conn_bad(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        exec_simple(c, "ROLLBACK", "ROLLBACK", DB_ERR_CONN_LOST);
    c->held = c->deferred; /* emptied, its storage kept for the next batch */
    queue_clear(&c->held);
    c->deferred = mine;
    c->begin_sql = begin_sql;
    if (rc == DB_OK) {
        c->unsynced = true;
        return DB_OK;
    }
    c->held_losses++;
    c->held_unreported = true;
    snprintf(c->held_error, sizeof(c->held_error), "%.255s", c->err.message);
    return rc;
}

/* Held writes go ahead of whatever reaches the server next (read-your-writes, commit order). A
 * failure is kept for db_sync; the caller's statement runs all the same. */
static void held_first(db_conn *c)
{
    if (c->held.n) held_send(c);
}

int db_send_held(db_conn *c)
{
    if (c->in_tx) return set_error(c, DB_ERR_STATE, NULL, "db_send_held: a transaction is open");
    return c->held.n ? held_send(c) : DB_OK;
}

uint64_t db_held_losses(const db_conn *c)
{
    return c->held_losses;
}

/* db_exec_deferred inside a transaction for a caller who wants a value once it has run (*out is
 * -1 until then): *d is the queued statement, to be told where to put it (NULL on failure). */
static int defer_with_out(db_conn *c, const char *what, const db_stmt *st, const db_param *params,
                          int nparams, int64_t *out, deferred_stmt **d)
{
    *d = NULL;
    if (!c || !c->in_tx || !out)
        return c ? set_error(c, DB_ERR_INVALID, NULL, "%s: no transaction", what) : DB_ERR_INVALID;
    *out = -1;
    int rc = db_exec_deferred(c, st, params, nparams);
    if (rc == DB_OK) *d = &c->deferred.items[c->deferred.n - 1];
    return rc;
}

int db_exec_deferred_count(db_conn *c, const db_stmt *st, const db_param *params, int nparams,
                           int64_t *affected)
{
    deferred_stmt *d;
    int rc = defer_with_out(c, "db_exec_deferred_count", st, params, nparams, affected, &d);
    if (d) d->affected = affected;
    return rc;
}

int db_exec_deferred_first(db_conn *c, const db_stmt *st, const db_param *params, int nparams,
                           int64_t *first)
{
    deferred_stmt *d;
    int rc = defer_with_out(c, "db_exec_deferred_first", st, params, nparams, first, &d);
    if (d) d->first = first;
    return rc;
}

int db_exec_deferred_row(db_conn *c, const db_stmt *st, const db_param *params, int nparams,
                         int key_nparams)
{
    if (key_nparams <= 0 || key_nparams > nparams)
        return c ? set_error(c, DB_ERR_INVALID, NULL, "db_exec_deferred_row: bad key")
                 : DB_ERR_INVALID;
    int rc = db_exec_deferred(c, st, params, nparams);
    if (rc == DB_OK && c->in_tx) {
        deferred_stmt *d = &c->deferred.items[c->deferred.n - 1];
        d->key_nparams = key_nparams;
        d->key_hash = key_hash_of(d);
    }
    return rc;
}

int db_exec_deferred(db_conn *c, const db_stmt *st, const db_param *params, int nparams)
{
    if (!c || !st || nparams < 0 || nparams > DB_MAX_PARAMS || (nparams > 0 && !params))
        return c ? set_error(c, DB_ERR_INVALID, NULL, "db_exec_deferred: bad arguments")
                 : DB_ERR_INVALID;
    if (!c->in_tx) return db_exec(c, st, params, nparams, NULL);
    if (c->opts.async_commit) c->unsynced = true;
    int rc = check_tx_usable(c, st->name);
    if (rc) return rc;
    wire_params w;
    rc = to_wire(c, st, params, nparams, &w);
    return rc ? rc : queue_add(c, &c->deferred, st, &w, nparams);
}

/* ---- write-behind outside transactions (db_exec_later) ---- */

static void later_failed(db_conn *c, const char *what, const char *msg)
{
    c->later_failures++;
    snprintf(c->later_error, sizeof(c->later_error), "%.64s: %.180s", what, msg);
    size_t n = strlen(c->later_error);
    while (n > 0 && (c->later_error[n - 1] == '\n' || c->later_error[n - 1] == ' '))
        c->later_error[--n] = '\0';
}

/* One round trip: the queued later writes, then st (may be NULL) and its sync. The writes go as
 * one implicit transaction (batch: one sync after them all, one commit) or each as its own (a sync
 * after each). When a write of a batch fails, the server skips the rest and the batch's
 * transaction is gone: the failing write is counted failed and the others are queued again, to be
 * sent each as its own transaction (a second later_round_trip, batch false, right after: see
 * later_pipeline), so a failing write touches no other. The writes' failures are counted
 * (later_failures); the queue holds only such a retry afterwards. st's outcome as db_exec gives it:
 * DB_OK (*out: its result when out is not NULL), its server error, or DB_ERR_CONN_LOST (*st_sent:
 * whether it may have run). */
static int later_round_trip(db_conn *c, bool batch, const db_stmt *st, const wire_params *w,
                            int nparams, PGresult **out, bool *st_sent)
{
    *st_sent = false;
    if (out) *out = NULL;
    held_first(c);
    size_t n = c->later.n;
    int rc = ensure_conn(c);
    for (size_t i = 0; i < n && rc == DB_OK; i++) {
        deferred_stmt *d = &c->later.items[i];
        int prc = ensure_prepared(c, d->st);
        if (prc == DB_ERR_CONN_LOST) rc = prc;
        if (prc != DB_OK && prc != DB_ERR_CONN_LOST) {
            later_failed(c, d->st->name, c->err.message);
            d->st = NULL; /* not sent */
        }
    }
    if (rc == DB_OK && st) rc = ensure_prepared(c, st);
    if (rc != DB_OK) {
        for (size_t i = 0; i < n; i++)
            if (c->later.items[i].st) later_failed(c, c->later.items[i].st->name, c->err.message);
        queue_clear(&c->later);
        return rc;
    }
    if (!PQenterPipelineMode(c->pg)) {
        queue_clear(&c->later);
        return set_error(c, DB_ERR_STATE, NULL, "later writes: cannot enter pipeline mode");
    }
    c->sent_unsynced |= c->opts.async_commit;
    /* the writes sent, in order (indexes into the queue), and the sync segment of each */
    size_t *sent_idx = malloc((n + 1) * sizeof(*sent_idx));
    size_t nsent = 0, segs = 0; /* syncs sent */
    bool sent = sent_idx != NULL;
    for (size_t i = 0; i < n && sent; i++) {
        const deferred_stmt *d = &c->later.items[i];
        if (!d->st) continue;
        sent = PQsendQueryPrepared(c->pg, d->st->name, d->nparams, (const char *const *)d->values,
                                   d->lengths, d->formats, 1) == 1 &&
               (batch || PQpipelineSync(c->pg) == 1);
        if (sent) {
            sent_idx[nsent++] = i;
            if (!batch) segs++;
        }
    }
    if (batch && nsent && sent) {
        sent = PQpipelineSync(c->pg) == 1;
        if (sent) segs++;
    }
    size_t st_seg = segs;
    if (st && sent) {
        sent = PQsendQueryPrepared(c->pg, st->name, nparams, w->values, w->lengths, w->formats,
                                   1) == 1 &&
               PQpipelineSync(c->pg) == 1;
        *st_sent = sent;
        if (sent) segs++;
    }
    /* results: one per query sent (its outcome, or "aborted" after a failure), then a sync per
     * segment */
    size_t seg = 0, got = 0;  /* syncs and the writes' results read */
    size_t failed = SIZE_MAX; /* the write of a batch that failed (index into sent_idx) */
    int st_rc = DB_OK;
    while (sent && seg < segs) {
        PGresult *res = PQgetResult(c->pg);
        if (!res) {
            if (conn_bad(c)) break;
            continue; /* the end of a query's results */
        }
        ExecStatusType s = PQresultStatus(res);
        bool is_st = st && seg == st_seg;
        size_t q = got; /* the write this result belongs to (not st's) */
        if (s == PGRES_PIPELINE_SYNC) {
            seg++;
        } else if (!is_st) {
            got++;
            if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_PIPELINE_ABORTED &&
                !conn_bad(c) && q < nsent) {
                const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
                later_failed(c, c->later.items[sent_idx[q]].st->name, msg ? msg : "failed");
                if (batch && failed == SIZE_MAX) failed = q;
            }
        } else if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            if (out && !*out) {
                *out = res;
                continue;
            }
        } else if (!conn_bad(c)) {
            st_rc = set_result_error(c, 0, res, st->name);
        }
        PQclear(res);
        if (conn_bad(c)) break;
    }
    bool lost = !sent_idx || seg < segs || conn_bad(c);
    if (lost) {
        /* the writes whose outcome did not arrive may or may not have run */
        size_t from = batch ? (seg > 0 ? nsent : 0) : seg;
        for (size_t k = from; k < nsent && sent_idx; k++)
            later_failed(c, c->later.items[sent_idx[k]].st->name,
                         "connection lost; may or may not have run");
        queue_clear(&c->later);
        free(sent_idx);
        if (out && *out) {
            PQclear(*out);
            *out = NULL;
        }
        if (!sent_idx) {
            PQexitPipelineMode(c->pg);
            return set_error(c, DB_ERR_NOMEM, NULL, "later writes: out of memory");
        }
        return set_error(c, DB_ERR_CONN_LOST, NULL, "%s: connection lost: %s",
                         st ? st->name : "later writes", PQerrorMessage(c->pg));
    }
    PQexitPipelineMode(c->pg);
    /* a failed batch: every other write it held goes again, each on its own (kept in order at
     * the front of the queue; the rest freed) */
    size_t keep = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        bool retry = false;
        if (k < nsent && sent_idx[k] == i) {
            retry = failed != SIZE_MAX && k != failed;
            k++;
        }
        if (retry)
            c->later.items[keep++] = c->later.items[i];
        else
            free(c->later.items[i].block);
    }
    c->later.n = keep;
    free(sent_idx);
    if (st_rc != DB_OK && out && *out) {
        PQclear(*out);
        *out = NULL;
    }
    if (st_rc == DB_OK) clear_error(c);
    return st_rc;
}

/* later_round_trip as a batch. When a write of the batch failed, its other writes go again each
 * on its own, and, st having run before them, an idempotent st (a read, say) runs again after
 * them, so that it sees them as it would have; a st that is not idempotent keeps its outcome, and
 * those writes land just after it. */
static int later_pipeline(db_conn *c, const db_stmt *st, const wire_params *w, int nparams,
                          PGresult **out, bool *st_sent)
{
    int rc = later_round_trip(c, true, st, w, nparams, out, st_sent);
    if (!c->later.n) return rc;
    if (st && *st_sent && rc != DB_ERR_CONN_LOST && (st->flags & DB_STMT_IDEMPOTENT)) {
        if (out && *out) {
            PQclear(*out);
            *out = NULL;
        }
        return later_round_trip(c, false, st, w, nparams, out, st_sent);
    }
    db_error saved = c->err;
    bool retry_sent;
    later_round_trip(c, false, NULL, NULL, 0, NULL, &retry_sent);
    c->err = saved; /* st's outcome stands */
    return rc;
}

int db_exec_later(db_conn *c, const db_stmt *st, const db_param *params, int nparams)
{
    if (!c || !st || nparams < 0 || nparams > DB_MAX_PARAMS || (nparams > 0 && !params))
        return c ? set_error(c, DB_ERR_INVALID, NULL, "db_exec_later: bad arguments")
                 : DB_ERR_INVALID;
    if (c->in_tx) return db_exec_deferred(c, st, params, nparams);
    if (c->opts.async_commit) c->unsynced = true;
    wire_params w;
    int rc = to_wire(c, st, params, nparams, &w);
    return rc ? rc : queue_add(c, &c->later, st, &w, nparams);
}

int db_flush(db_conn *c)
{
    if (c->in_tx || !c->later.n) return DB_OK;
    uint64_t before = c->later_failures;
    bool st_sent;
    int rc = later_pipeline(c, NULL, NULL, 0, NULL, &st_sent);
    if (rc == DB_OK && c->later_failures != before)
        rc = set_error(c, DB_ERR_SERVER, NULL, "%s", c->later_error);
    return rc;
}

uint64_t db_later_failures(const db_conn *c, char *last, size_t cap)
{
    if (last && cap) snprintf(last, cap, "%s", c->later_error);
    return c->later_failures;
}

int db_exec(db_conn *c, const db_stmt *st, const db_param *params, int nparams, db_result **out)
{
    if (c->opts.async_commit) c->unsynced = true;
    if (out) *out = NULL;
    if (!c || !st || nparams < 0 || nparams > DB_MAX_PARAMS || (nparams > 0 && !params))
        return c ? set_error(c, DB_ERR_INVALID, NULL, "db_exec: bad arguments") : DB_ERR_INVALID;
    int rc = check_tx_usable(c, st->name);
    if (rc) return rc;

    wire_params w;
    rc = to_wire(c, st, params, nparams, &w);
    if (rc) return rc;
    if (c->in_tx && (c->begin_pending || c->deferred.n)) {
        PGresult *res = NULL;
        rc = run_pending(c, st, &w, nparams, false, out ? &res : NULL, NULL);
        if (out) *out = res;
        return rc;
    }
    if (!c->in_tx) held_first(c);
    if (!c->in_tx && c->later.n) { /* the queued later writes travel ahead of st */
        PGresult *res = NULL;
        bool st_sent = false;
        rc = later_pipeline(c, st, &w, nparams, out ? &res : NULL, &st_sent);
        if (rc == DB_OK && out) *out = res;
        if (rc != DB_ERR_CONN_LOST) return rc;
        if (st_sent && !(st->flags & DB_STMT_IDEMPOTENT)) {
            c->err.code = DB_ERR_IN_DOUBT;
            return DB_ERR_IN_DOUBT;
        }
        /* not run, or safe to run again: the usual path below reconnects */
    }

    for (int attempt = 0;; attempt++) {
        rc = ensure_conn(c);
        if (rc) return rc;
        rc = ensure_prepared(c, st);
        if (rc == DB_ERR_CONN_LOST && !c->in_tx && attempt < 3) continue; /* nothing ran */
        if (rc) return rc;
        c->sent_unsynced |= c->opts.async_commit;
        PGresult *res = PQexecPrepared(c->pg, st->name, nparams, w.values, w.lengths, w.formats, 1);
        ExecStatusType s = PQresultStatus(res);
        if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            clear_error(c);
            if (out)
                *out = res;
            else
                PQclear(res);
            return DB_OK;
        }
        if (conn_bad(c)) {
            set_result_error(c, DB_ERR_CONN_LOST, res, st->name);
            PQclear(res);
            if (c->in_tx) {
                c->tx_lost = true;
                return DB_ERR_CONN_LOST;
            }
            if ((st->flags & DB_STMT_IDEMPOTENT) && attempt < 3) continue;
            c->err.code = DB_ERR_IN_DOUBT;
            size_t n = strlen(c->err.message);
            snprintf(c->err.message + n, sizeof(c->err.message) - n,
                     " [connection lost; the statement may or may not have run]");
            return DB_ERR_IN_DOUBT;
        }
        const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (sqlstate && strcmp(sqlstate, "26000") == 0 && !c->in_tx && attempt < 1) {
            /* the server forgot our prepared statements (DISCARD ALL): prepare again */
            PQclear(res);
            c->nprepared = 0;
            continue;
        }
        rc = set_result_error(c, 0, res, st->name);
        PQclear(res);
        if (c->in_tx) c->tx_failed = true;
        return rc;
    }
}

/* Sends the batch and reads every result. Returns DB_OK, a server error, or DB_ERR_CONN_LOST
 * (with *commit_sent telling whether a COMMIT of ours may have reached the server). */
static int batch_once(db_conn *c, const db_stmt *st, int nparams, size_t n, db_batch_fill_fn fill,
                      void *arg, bool own_tx, int64_t *affected, bool *commit_sent)
{
    *commit_sent = false;
    *affected = 0;
    if (!PQenterPipelineMode(c->pg))
        return set_error(c, DB_ERR_STATE, NULL, "%s: cannot enter pipeline mode", st->name);
    bool sent = true;
    c->sent_unsynced |= c->opts.async_commit;
    if (own_tx) sent = PQsendQueryParams(c->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1;
    db_param params[DB_MAX_PARAMS];
    wire_params w;
    int rc = DB_OK;
    for (size_t i = 0; i < n && sent && rc == DB_OK; i++) {
        memset(params, 0, sizeof(params[0]) * (size_t)nparams);
        fill(arg, i, params);
        rc = to_wire(c, st, params, nparams, &w);
        if (rc == DB_OK)
            sent = PQsendQueryPrepared(c->pg, st->name, nparams, w.values, w.lengths, w.formats,
                                       1) == 1;
    }
    if (own_tx && sent && rc == DB_OK) {
        sent = PQsendQueryParams(c->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
        *commit_sent = sent;
    }
    if (sent) sent = PQpipelineSync(c->pg) == 1;
    /* read until the sync (or the connection dies); the first error wins */
    int err = DB_OK;
    bool synced = false;
    while (sent && !synced) {
        PGresult *res = PQgetResult(c->pg);
        if (!res) {
            if (conn_bad(c)) break;
            continue; /* end of one query's results */
        }
        ExecStatusType s = PQresultStatus(res);
        if (s == PGRES_PIPELINE_SYNC) {
            synced = true;
        } else if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            const char *tag = PQcmdStatus(res);
            if (strcmp(tag, "ROLLBACK") == 0 && err == DB_OK)
                err = set_error(c, DB_ERR_TX_ABORTED, "25P02", "%s: rolled back", st->name);
            else if (strcmp(tag, "BEGIN") != 0 && strcmp(tag, "COMMIT") != 0)
                *affected += db_result_affected(res);
        } else if (s == PGRES_PIPELINE_ABORTED) {
            /* skipped after an earlier error */
        } else if (err == DB_OK && !conn_bad(c)) {
            err = set_result_error(c, 0, res, st->name);
        }
        PQclear(res);
        if (conn_bad(c)) break;
    }
    if (!synced || conn_bad(c)) {
        set_error(c, DB_ERR_CONN_LOST, NULL, "%s: connection lost during a batch: %s", st->name,
                  PQerrorMessage(c->pg));
        return DB_ERR_CONN_LOST;
    }
    PQexitPipelineMode(c->pg);
    if (rc) return rc;
    if (err && own_tx) {
        /* the server aborted our transaction at the error; COMMIT turned into a rollback */
        PGresult *res = PQexec(c->pg, "ROLLBACK");
        PQclear(res);
    }
    return err;
}

int db_exec_batch(db_conn *c, const db_stmt *st, int nparams, size_t n, db_batch_fill_fn fill,
                  void *arg, int64_t *affected)
{
    if (c->opts.async_commit) c->unsynced = true;
    if (affected) *affected = 0;
    if (!c || !st || !fill || nparams < 0 || nparams > DB_MAX_PARAMS)
        return c ? set_error(c, DB_ERR_INVALID, NULL, "db_exec_batch: bad arguments")
                 : DB_ERR_INVALID;
    int rc = check_tx_usable(c, st->name);
    if (rc) return rc;
    if (n == 0) return DB_OK;
    if (!c->in_tx) held_first(c);
    db_flush(c);
    if (c->in_tx && (c->begin_pending || c->deferred.n)) {
        rc = run_pending(c, NULL, NULL, 0, false, NULL, NULL);
        if (rc) return rc;
    }
    bool own_tx = !c->in_tx;
    for (int attempt = 0;; attempt++) {
        rc = ensure_conn(c);
        if (rc) return rc;
        rc = ensure_prepared(c, st);
        if (rc == DB_ERR_CONN_LOST && own_tx && attempt < 3) continue;
        if (rc) return rc;
        int64_t count = 0;
        bool commit_sent = false;
        rc = batch_once(c, st, nparams, n, fill, arg, own_tx, &count, &commit_sent);
        if (rc == DB_OK) {
            if (affected) *affected = count;
            clear_error(c);
            return DB_OK;
        }
        if (rc != DB_ERR_CONN_LOST) {
            if (!own_tx) c->tx_failed = true;
            return rc;
        }
        if (!own_tx) {
            c->tx_lost = true;
            return DB_ERR_CONN_LOST;
        }
        if ((st->flags & DB_STMT_IDEMPOTENT) && attempt < 3) continue;
        if (!commit_sent) return DB_ERR_CONN_LOST; /* never committed */
        c->err.code = DB_ERR_IN_DOUBT;
        return DB_ERR_IN_DOUBT;
    }
}

int db_exec_row(db_conn *c, const db_stmt *st, const db_param *params, int nparams, db_result **out)
{
    int rc = db_exec(c, st, params, nparams, out);
    if (rc) return rc;
    if (PQntuples(*out) < 1) {
        PQclear(*out);
        *out = NULL;
        return set_error(c, DB_ERR_NOT_FOUND, NULL, "%s: no row", st->name);
    }
    return DB_OK;
}

int db_result_rows(const db_result *r)
{
    return r ? PQntuples(r) : 0;
}

int64_t db_result_affected(const db_result *r)
{
    const char *s = r ? PQcmdTuples((PGresult *)r) : "";
    return *s ? strtoll(s, NULL, 10) : 0;
}

bool db_result_isnull(const db_result *r, int row, int col)
{
    return PQgetisnull(r, row, col) != 0;
}

const uint8_t *db_result_bytes(const db_result *r, int row, int col, size_t *len)
{
    *len = (size_t)PQgetlength(r, row, col);
    return (const uint8_t *)PQgetvalue(r, row, col);
}

const char *db_result_text(const db_result *r, int row, int col)
{
    return PQgetvalue(r, row, col);
}

int64_t db_result_int(const db_result *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) return 0;
    const uint8_t *p = (const uint8_t *)PQgetvalue(r, row, col);
    int n = PQgetlength(r, row, col);
    if (PQfformat(r, col) == 0) return strtoll((const char *)p, NULL, 10);
    uint64_t v = 0;
    for (int i = 0; i < n && i < 8; i++)
        v = (v << 8) | p[i];
    switch (n) {
    case 2: return (int16_t)v;
    case 4: return (int32_t)v;
    case 8: return (int64_t)v;
    }
    return 0;
}

bool db_result_bool(const db_result *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) return false;
    const char *p = PQgetvalue(r, row, col);
    if (PQfformat(r, col) == 0) return p[0] == 't';
    return p[0] != 0;
}

bool db_result_copy_text(const db_result *r, int row, int col, char *buf, size_t cap)
{
    size_t n = (size_t)PQgetlength(r, row, col);
    if (cap == 0) return false;
    if (n >= cap) {
        buf[0] = '\0';
        return false;
    }
    memcpy(buf, PQgetvalue(r, row, col), n);
    buf[n] = '\0';
    return true;
}

bool db_result_copy_fixed(const db_result *r, int row, int col, void *out, size_t n)
{
    if (PQgetisnull(r, row, col) || (size_t)PQgetlength(r, row, col) != n) return false;
    memcpy(out, PQgetvalue(r, row, col), n);
    return true;
}

void db_result_free(db_result *r)
{
    PQclear(r);
}

/* Runs a statement with no parameters through the simple protocol; reports a lost connection as
 * lost_code (CONN_LOST when nothing can have committed, IN_DOUBT otherwise). */
static int exec_simple(db_conn *c, const char *sql, const char *what, int lost_code)
{
    c->sent_unsynced |= c->opts.async_commit;
    PGresult *res = PQexec(c->pg, sql);
    ExecStatusType s = PQresultStatus(res);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
        PQclear(res);
        clear_error(c);
        return DB_OK;
    }
    int rc = set_result_error(c, conn_bad(c) ? lost_code : 0, res, what);
    PQclear(res);
    return rc;
}

/* A transaction that may be held: the option is on, it began plainly, and no caller waits for a
 * count of rows its writes changed. */
static bool holdable(const db_conn *c)
{
    if (!c->opts.hold_commits || !c->opts.async_commit || strcmp(c->begin_sql, "BEGIN") != 0)
        return false;
    for (size_t i = 0; i < c->deferred.n; i++)
        if (c->deferred.items[i].affected || c->deferred.items[i].first) return false;
    return true;
}

/* The key_hash of d (FNV-1a over st and the key parameters' bytes). */
static uint32_t key_hash_of(const deferred_stmt *d)
{
    uint32_t h = 2166136261u;
    uintptr_t st = (uintptr_t)d->st;
    for (size_t i = 0; i < sizeof(st); i++)
        h = (h ^ (uint8_t)(st >> (8 * i))) * 16777619u;
    for (int i = 0; i < d->key_nparams; i++) {
        size_t len = !d->values[i]   ? 0
                     : d->formats[i] ? (size_t)d->lengths[i]
                                     : strlen(d->values[i]);
        for (size_t k = 0; k < len; k++)
            h = (h ^ (uint8_t)d->values[i][k]) * 16777619u;
        h = (h ^ (d->values[i] ? 0x100u : 0x200u)) * 16777619u; /* (separates the parameters) */
    }
    return h;
}

/* Same statement, same key parameters (byte for byte). */
static bool same_row(const deferred_stmt *a, const deferred_stmt *b)
{
    if (a->key_hash != b->key_hash) return false;
    if (a->st != b->st || a->key_nparams != b->key_nparams) return false;
    for (int i = 0; i < a->key_nparams; i++) {
        if (!a->values[i] != !b->values[i] || a->formats[i] != b->formats[i]) return false;
        if (!a->values[i]) continue;
        size_t la = a->formats[i] ? (size_t)a->lengths[i] : strlen(a->values[i]);
        size_t lb = b->formats[i] ? (size_t)b->lengths[i] : strlen(b->values[i]);
        if (la != lb || memcmp(a->values[i], b->values[i], la) != 0) return false;
    }
    return true;
}

/* The slot of d's row in q->index: the one holding an item of the same row, else the free slot
 * where it goes. */
static size_t index_slot(const stmt_queue *q, const deferred_stmt *d)
{
    size_t mask = q->index_cap - 1;
    for (size_t s = d->key_hash & mask;; s = (s + 1) & mask)
        if (!q->index[s] || same_row(&q->items[q->index[s] - 1], d)) return s;
}

/* Makes room in q->index for more entries, at most half of it used (false when out of
 * memory). */
static bool index_room(stmt_queue *q, size_t more)
{
    if (q->index_cap && (q->index_n + more) * 2 <= q->index_cap) return true;
    size_t cap = q->index_cap ? q->index_cap : 64;
    while ((q->index_n + more) * 2 > cap)
        cap *= 2;
    uint32_t *idx = calloc(cap, sizeof(*idx));
    if (!idx) return false;
    free(q->index);
    q->index = idx;
    q->index_cap = cap;
    q->index_n = 0;
    for (size_t i = 0; i < q->n; i++) /* the live keyed items, each row once */
        if (q->items[i].st && q->items[i].key_nparams > 0) {
            q->index[index_slot(q, &q->items[i])] = (uint32_t)i + 1;
            q->index_n++;
        }
    return true;
}

/* Appends from's statements to to (their storage moves too); from is left empty. A keyed write
 * (db_exec_deferred_row) supersedes an earlier one of the same row in to, which is left as a gap
 * (closed once, when to is sent): only the last state of a row travels (a batch of messages to
 * one contact writes its session once). The rows are found through to's index, so a commit costs
 * the same however much is held. */
static int queue_move(db_conn *c, stmt_queue *to, stmt_queue *from)
{
    if (to->n + from->n > to->cap) {
        size_t cap = to->cap ? to->cap : 8;
        while (cap < to->n + from->n)
            cap *= 2;
        deferred_stmt *d = realloc(to->items, cap * sizeof(*d));
        if (!d) return set_error(c, DB_ERR_NOMEM, NULL, "COMMIT: out of memory");
        to->items = d;
        to->cap = cap;
    }
    size_t keyed = 0;
    for (size_t j = 0; j < from->n; j++)
        keyed += from->items[j].key_nparams > 0;
    if (keyed && !index_room(to, keyed))
        return set_error(c, DB_ERR_NOMEM, NULL, "COMMIT: out of memory");
    memcpy(to->items + to->n, from->items, from->n * sizeof(*from->items));
    size_t first = to->n;
    to->n += from->n;
    to->dead += from->dead;
    from->n = from->dead = 0;
    for (size_t k = first; k < to->n; k++) {
        if (!to->items[k].st || to->items[k].key_nparams <= 0) continue;
        size_t s = index_slot(to, &to->items[k]);
        if (to->index[s]) { /* an earlier write of the row: superseded */
            deferred_stmt *old = &to->items[to->index[s] - 1];
            free(old->block);
            old->block = NULL;
            old->st = NULL;
            old->key_nparams = 0;
            to->dead++;
        } else {
            to->index_n++;
        }
        to->index[s] = (uint32_t)k + 1;
    }
    return DB_OK;
}

int db_begin(db_conn *c, int flags)
{
    /* (not unsynced yet: a transaction in which nothing runs commits nothing) */
    if (c->in_tx) return set_error(c, DB_ERR_STATE, NULL, "BEGIN: a transaction is already open");
    const char *sql = "BEGIN";
    if (flags & DB_TX_SERIALIZABLE)
        sql = (flags & DB_TX_READ_ONLY) ? "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"
                                        : "BEGIN ISOLATION LEVEL SERIALIZABLE";
    else if (flags & DB_TX_REPEATABLE_READ)
        sql = (flags & DB_TX_READ_ONLY) ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                                        : "BEGIN ISOLATION LEVEL REPEATABLE READ";
    else if (flags & DB_TX_READ_ONLY)
        sql = "BEGIN READ ONLY";
    db_flush(c); /* later writes go first, outside it (their failures are counted) */
    /* sent with the first statement (see run_pending) */
    c->in_tx = true;
    c->begin_pending = true;
    c->begin_sql = sql;
    c->tx_failed = false;
    c->tx_lost = false;
    clear_error(c);
    return DB_OK;
}

int db_commit(db_conn *c)
{
    if (!c->in_tx) return set_error(c, DB_ERR_STATE, NULL, "COMMIT: no transaction is open");
    if (!c->tx_lost && !c->tx_failed && (c->begin_pending || c->deferred.n)) {
        if (c->begin_pending && !c->deferred.n) { /* nothing ran: nothing to commit */
            c->in_tx = c->begin_pending = false;
            clear_error(c);
            return DB_OK;
        }
        if (c->begin_pending && holdable(c)) { /* only writes, none of them counted: held */
            int rc = queue_move(c, &c->held, &c->deferred);
            if (rc == DB_OK) {
                c->in_tx = c->begin_pending = false;
                c->unsynced = true;
                clear_error(c);
                return DB_OK;
            }
        }
        int rc = run_pending(c, NULL, NULL, 0, true, NULL, NULL);
        if (rc == DB_OK || rc == DB_ERR_IN_DOUBT || rc == DB_ERR_CONN_LOST) {
            c->in_tx = c->tx_lost = false;
            return rc;
        }
        /* a statement failed: the server's transaction is aborted; end it */
        db_error saved = c->err;
        if (!conn_bad(c)) exec_simple(c, "ROLLBACK", "ROLLBACK", DB_ERR_CONN_LOST);
        c->in_tx = c->tx_failed = false;
        c->err = saved;
        return rc;
    }
    c->begin_pending = false;
    defer_clear(c);
    if (c->tx_lost) {
        c->in_tx = false;
        c->tx_lost = false;
        return set_error(c, DB_ERR_CONN_LOST, NULL,
                         "COMMIT: the connection was lost inside the transaction; not committed");
    }
    if (c->tx_failed) {
        if (!conn_bad(c)) exec_simple(c, "ROLLBACK", "ROLLBACK", DB_ERR_CONN_LOST);
        c->in_tx = false;
        c->tx_failed = false;
        return set_error(c, DB_ERR_TX_ABORTED, "25P02",
                         "COMMIT: a statement of the transaction failed; rolled back");
    }
    if (!conn_alive(c)) {
        /* the server went away before COMMIT was sent: certainly not committed */
        ensure_conn(c);
        c->in_tx = false;
        c->tx_lost = false;
        return set_error(c, DB_ERR_CONN_LOST, NULL,
                         "COMMIT: the connection was lost before COMMIT; not committed");
    }
    c->in_tx = false;
    c->sent_unsynced |= c->opts.async_commit;
    PGresult *res = PQexec(c->pg, "COMMIT");
    ExecStatusType s = PQresultStatus(res);
    if (s == PGRES_COMMAND_OK) {
        bool rolled_back = strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
        PQclear(res);
        if (rolled_back)
            return set_error(c, DB_ERR_TX_ABORTED, "25P02", "COMMIT: the server rolled back");
        clear_error(c);
        return DB_OK;
    }
    int rc = set_result_error(c, conn_bad(c) ? DB_ERR_IN_DOUBT : 0, res, "COMMIT");
    PQclear(res);
    return rc;
}

int db_commit_sync(db_conn *c)
{
    if (!c || !c->opts.async_commit) return db_commit(c); /* synchronous: durable already */
    /* one round trip when the COMMIT travels in a pipeline with the transaction's queued
     * statements and nothing earlier stands in the way (a lost session, a held batch) */
    bool together = c->in_tx && !c->tx_lost && !c->tx_failed && c->deferred.n && !c->held.n &&
                    !c->sync_lost && !c->held_unreported && !(c->sent_unsynced && !conn_alive(c));
    c->commit_sync = together;
    c->commit_synced = false;
    int rc = db_commit(c);
    c->commit_sync = false;
    if (rc != DB_OK) return rc;
    if (c->commit_synced) {
        c->commit_synced = false;
        c->unsynced = c->sent_unsynced = false;
        return DB_OK;
    }
    rc = db_sync(c);
    if (rc != DB_OK) c->err.code = rc = DB_ERR_IN_DOUBT; /* committed; durable? */
    return rc;
}

int db_rollback(db_conn *c)
{
    if (!c->in_tx) return DB_OK;
    bool lost = c->tx_lost || c->begin_pending; /* begin_pending: nothing reached the server */
    c->begin_pending = false;
    defer_clear(c);
    c->in_tx = false;
    c->tx_lost = false;
    c->tx_failed = false;
    /* on a lost or broken connection the server has already rolled back */
    if (lost || conn_bad(c)) return DB_OK;
    exec_simple(c, "ROLLBACK", "ROLLBACK", DB_ERR_CONN_LOST);
    return DB_OK;
}

int db_tx(db_conn *c, int flags, db_tx_fn fn, void *arg)
{
    int rc = DB_OK;
    int wait = 2;
    for (int attempt = 1; attempt <= c->opts.tx_max_attempts; attempt++) {
        if (attempt > 1) {
            /* back off with jitter so competing transactions fall out of step */
            c->rng ^= c->rng << 13;
            c->rng ^= c->rng >> 7;
            c->rng ^= c->rng << 17;
            sleep_ms(wait + (int)(c->rng % (uint64_t)wait));
            if (wait < 200) wait *= 2;
        }
        rc = db_begin(c, flags);
        if (rc) return rc;
        rc = fn(c, arg);
        if (rc == DB_OK) {
            rc = (flags & DB_TX_DURABLE) ? db_commit_sync(c) : db_commit(c);
            if (rc == DB_OK) return DB_OK;
            if (rc == DB_ERR_SERIALIZATION || rc == DB_ERR_CONN_LOST) continue;
            if (rc == DB_ERR_IN_DOUBT && (flags & DB_TX_IDEMPOTENT)) continue;
            return rc;
        }
        db_error saved = c->err;
        db_rollback(c);
        c->err = saved;
        if (rc != DB_ERR_SERIALIZATION && rc != DB_ERR_CONN_LOST) return rc;
    }
    return rc;
}

int db_exec_script(db_conn *c, const char *sql)
{
    if (c->opts.async_commit) c->unsynced = true;
    int rc = check_tx_usable(c, "script");
    if (rc) return rc;
    if (!c->in_tx || c->begin_pending) held_first(c);
    db_flush(c);
    if (c->in_tx && (c->begin_pending || c->deferred.n)) {
        rc = run_pending(c, NULL, NULL, 0, false, NULL, NULL);
        if (rc) return rc;
    }
    rc = ensure_conn(c);
    if (rc) return rc;
    rc = exec_simple(c, sql, "script", c->in_tx ? DB_ERR_CONN_LOST : DB_ERR_IN_DOUBT);
    if (rc && c->in_tx) {
        if (rc == DB_ERR_CONN_LOST)
            c->tx_lost = true;
        else
            c->tx_failed = true;
    }
    return rc;
}

static int sync_once(db_conn *c);

int db_sync(db_conn *c)
{
    int rc = sync_once(c);
    if (rc != DB_OK) c->sync_failures++;
    return rc;
}

uint64_t db_sync_failures(const db_conn *c)
{
    return c->sync_failures;
}

static int sync_once(db_conn *c)
{
    if (!c->opts.async_commit || (!c->unsynced && !c->held_unreported && !c->sync_lost))
        return DB_OK;
    if (c->in_tx) return set_error(c, DB_ERR_STATE, NULL, "db_sync: a transaction is open");
    /* commits that reached a session now gone cannot be vouched for (a held batch had not: it is
     * sent on a new session below) */
    bool lost = c->unsynced && !conn_alive(c);
    /* a held batch commits durably: its flush covers every earlier commit (one round trip) */
    bool durable = false;
    if (c->held.n && !lost && !c->later.n) {
        c->commit_sync = true;
        c->commit_synced = false;
        held_send(c);
        c->commit_sync = false;
        durable = c->commit_synced;
        c->commit_synced = false;
    }
    held_first(c);
    if (c->later.n) db_flush(c);
    if (c->held_unreported) {
        c->held_unreported = false;
        return set_error(c, DB_ERR_CONN_LOST, NULL,
                         "db_sync: commits held for this sync were lost: %s", c->held_error);
    }
    if (lost || c->sync_lost) {
        c->sync_lost = c->sent_unsynced = false; /* said once */
        return set_error(c, DB_ERR_CONN_LOST, NULL,
                         "db_sync: the connection was lost; earlier commits may be lost");
    }
    if (durable) {
        c->unsynced = c->sent_unsynced = false;
        return DB_OK;
    }
    if (!c->unsynced) return DB_OK;
    if (!conn_alive(c))
        return set_error(c, DB_ERR_CONN_LOST, NULL,
                         "db_sync: the connection was lost; earlier commits may be lost");
    /* a transaction that writes a WAL record and commits synchronously flushes the WAL up to it,
     * so every earlier commit of the server is on disk too (durable_sql) */
    int rc = exec_simple(c, "BEGIN; " SYNC_COMMIT "; " WAL_RECORD "; COMMIT", "db_sync",
                         DB_ERR_CONN_LOST);
    if (rc == DB_OK)
        c->unsynced = c->sent_unsynced = false;
    else if (!conn_bad(c)) /* an error stops the string: the transaction it began is still open */
        exec_simple(c, "ROLLBACK", "ROLLBACK", DB_ERR_CONN_LOST);
    return rc;
}

/* ---- the pool ---- */

struct db_pool {
    pthread_mutex_t mu;   /* guards everything below */
    pthread_cond_t freed; /* signalled when a connection is returned */
    char *conninfo;       /* copied from db_pool_new */
    db_conn_opts opts;    /* for every connection */
    int size;             /* slots */
    db_conn **conns;      /* size slots; NULL until first opened */
    bool *busy;           /* size flags: slot lent out */
};

int db_pool_new(const char *conninfo, int size, const db_conn_opts *opts, db_pool **out)
{
    *out = NULL;
    if (size <= 0) return DB_ERR_INVALID;
    db_pool *p = calloc(1, sizeof(*p));
    if (!p) return DB_ERR_NOMEM;
    p->conninfo = strdup(conninfo ? conninfo : "");
    p->conns = calloc((size_t)size, sizeof(*p->conns));
    p->busy = calloc((size_t)size, sizeof(*p->busy));
    if (!p->conninfo || !p->conns || !p->busy) {
        free(p->conninfo);
        free(p->conns);
        free(p->busy);
        free(p);
        return DB_ERR_NOMEM;
    }
    if (opts) p->opts = *opts;
    p->size = size;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->freed, NULL);
    *out = p;
    return DB_OK;
}

int db_pool_get(db_pool *p, int timeout_ms, db_conn **out, db_error *err)
{
    *out = NULL;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms > 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&p->mu);
    int slot = -1;
    for (;;) {
        /* prefer an open connection, then an unopened slot */
        for (int i = 0; i < p->size && slot < 0; i++)
            if (!p->busy[i] && p->conns[i]) slot = i;
        for (int i = 0; i < p->size && slot < 0; i++)
            if (!p->busy[i]) slot = i;
        if (slot >= 0) break;
        int rc = timeout_ms < 0 ? pthread_cond_wait(&p->freed, &p->mu)
                                : pthread_cond_timedwait(&p->freed, &p->mu, &deadline);
        if (rc == ETIMEDOUT) {
            pthread_mutex_unlock(&p->mu);
            if (err) *err = (db_error){DB_ERR_TIMEOUT, "", "pool: no connection free in time"};
            return DB_ERR_TIMEOUT;
        }
    }
    p->busy[slot] = true;
    db_conn *c = p->conns[slot];
    pthread_mutex_unlock(&p->mu);
    if (!c) {
        int rc = db_conn_open(p->conninfo, &p->opts, &c, err);
        if (rc) {
            pthread_mutex_lock(&p->mu);
            p->busy[slot] = false;
            pthread_cond_signal(&p->freed);
            pthread_mutex_unlock(&p->mu);
            return rc;
        }
        pthread_mutex_lock(&p->mu);
        p->conns[slot] = c;
        pthread_mutex_unlock(&p->mu);
    }
    *out = c;
    return DB_OK;
}

void db_pool_put(db_pool *p, db_conn *c)
{
    if (!c) return;
    if (c->in_tx) db_rollback(c);
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->size; i++) {
        if (p->conns[i] == c) {
            p->busy[i] = false;
            break;
        }
    }
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->mu);
}

void db_pool_free(db_pool *p)
{
    if (!p) return;
    for (int i = 0; i < p->size; i++)
        db_conn_close(p->conns[i]);
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->mu);
    free(p->conns);
    free(p->busy);
    free(p->conninfo);
    free(p);
}
