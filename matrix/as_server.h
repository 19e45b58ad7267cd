/*
 * matrix/as_server.h - the application service endpoint: what the homeserver calls.
 *
 * An HTTP server (libmicrohttpd, its own threads) serving the Application Service API:
 *   PUT  /_matrix/app/v1/transactions/{txnId}   events + ephemeral events
 *   GET  /_matrix/app/v1/users/{userId}         does this user exist (may we create it)?
 *   GET  /_matrix/app/v1/rooms/{roomAlias}      does this alias exist (may we create it)?
 *   POST /_matrix/app/v1/ping                   reachability check
 * and the same without the /_matrix/app/v1 prefix for older homeservers. The homeserver proves
 * itself with the hs_token: `Authorization: Bearer ...` or, legacy, `?access_token=...`, compared
 * in constant time. Errors are the spec's JSON bodies; every answer carries Content-Length.
 *
 * Nothing is lost: a transaction is answered 200 only after the caller's mx_txn_store committed it
 * (or said it had it already); any store error answers 500 so the homeserver retries the same
 * txnId. Newly stored events then go to the dispatcher callback, in arrival order (commit + hand
 * over happen under one lock). The server never calls out: its threads only authenticate, parse,
 * store and enqueue. matrix/ knows no database; the bridge implements mx_txn_store on PostgreSQL,
 * tests use mx_mem_store below.
 */
#ifndef MX_AS_SERVER_H
#define MX_AS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "matrix/event.h"

/* What mx_txn_store.commit returns besides a negative mx_err. */
#define MX_TXN_STORED    0 /* new transaction: id and events are durable now */
#define MX_TXN_DUPLICATE 1 /* the id was committed before: nothing was added */

/* Durability, provided by the caller. commit() must, atomically, record txn_id and the events of
 * the batch (its strings are only valid during the call: copy them) and return MX_TXN_STORED; or
 * return MX_TXN_DUPLICATE when txn_id is already recorded (adding nothing); or a negative mx_err
 * when it could not (the homeserver then gets 500 and retries). May be called from several
 * server threads, but never concurrently: the server serialises commits. */
typedef struct mx_txn_store {
    void *ctx;
    int (*commit)(void *ctx, const char *txn_id, const mx_event_batch *batch);
} mx_txn_store;

/* The bridge's side of the endpoint. Every callback runs on a server thread and must not block
 * on the network (enqueue, answer from memory). Any callback may be NULL. */
typedef struct mx_as_handler {
    void *ctx;
    /* Newly committed events, in arrival order; called right after a MX_TXN_STORED commit, under
     * the commit lock (so calls never overlap and never reorder). The batch is borrowed. */
    void (*on_events)(void *ctx, const char *txn_id, const mx_event_batch *batch);
    /* GET users/{userId}: true = the user exists or was just created (200), false = 404. */
    bool (*query_user)(void *ctx, const char *user_id);
    /* GET rooms/{alias}: true = the alias exists or was just created (200), false = 404. */
    bool (*query_alias)(void *ctx, const char *alias);
    /* POST ping with its transaction_id (NULL when absent). */
    void (*on_ping)(void *ctx, const char *transaction_id);
} mx_as_handler;

typedef struct mx_as_config {
    const char *bind_addr;   /* IPv4 address to listen on; NULL = "127.0.0.1" */
    uint16_t port;           /* 0 = pick a free port (see mx_as_server_port) */
    const char *hs_token;    /* the registration's hs_token; copied; never logged */
    size_t max_body;         /* bytes; larger bodies get 413 M_TOO_LARGE; 0 = 32 MiB */
    unsigned threads;        /* server threads; 0 = 4 */
    unsigned conn_timeout_s; /* idle connection timeout in seconds; 0 = 60 */
} mx_as_config;

/* Counters, for tests and metrics (monotonic since start). */
typedef struct mx_as_stats {
    uint64_t txn_stored;    /* transactions committed as new */
    uint64_t txn_duplicate; /* transactions answered 200 as repeats */
    uint64_t txn_failed;    /* transactions answered 500 because the store failed */
    uint64_t events;        /* events handed to on_events */
    uint64_t rejected;      /* requests answered 4xx */
} mx_as_stats;

typedef struct mx_as_server mx_as_server;

/* Starts listening. `store` is required (the server keeps the struct by value, not its ctx's
 * ownership); `handler` may be NULL. Returns MX_OK and *out, or MX_ERR_INVALID / MX_ERR_IO
 * (port in use) / MX_ERR_NOMEM. */
int mx_as_server_start(const mx_as_config *cfg, const mx_txn_store *store,
                       const mx_as_handler *handler, mx_as_server **out);
/* The port actually bound (useful with port 0). */
uint16_t mx_as_server_port(const mx_as_server *s);
void mx_as_server_stats(mx_as_server *s, mx_as_stats *out);
/* Stops listening, waits for requests in progress, frees everything. NULL is fine. */
void mx_as_server_stop(mx_as_server *s);

/* ---- An in-memory mx_txn_store, for tests and benchmarks (not durable across processes). ---- */

typedef struct mx_mem_store mx_mem_store;

mx_mem_store *mx_mem_store_new(void);
void mx_mem_store_free(mx_mem_store *m);
/* The store interface over m (m must outlive every server using it). */
mx_txn_store mx_mem_store_iface(mx_mem_store *m);
/* The next n commits fail with MX_ERR_STORE (simulates a database outage). */
void mx_mem_store_fail_next(mx_mem_store *m, unsigned n);
size_t mx_mem_store_txn_count(mx_mem_store *m);
size_t mx_mem_store_event_count(mx_mem_store *m);
/* Copy of the JSON of stored event i (0-based, in commit order); caller frees; NULL if out of
 * range. */
char *mx_mem_store_event_json(mx_mem_store *m, size_t i);
/* Drops the stored events (as the bridge deletes inbox rows once bridged); transaction ids stay,
 * so repeats are still recognised. event_count counts what is left. */
void mx_mem_store_forget_events(mx_mem_store *m);
/* How many commits were attempted (stored + duplicate + failed). */
size_t mx_mem_store_commit_calls(mx_mem_store *m);

#endif
