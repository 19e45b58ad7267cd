/*
 * bridge/mx_txn_pg.c - mx_txn_store on PostgreSQL (bridge/mx_txn_pg.h).
 */
#include "bridge/mx_txn_pg.h"

#include "db/bridge_db.h"
#include "matrix/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int commit_some(db_conn *conn, const br_mx_txn_pg *f, const char *txn_id,
                       const mx_event_batch *batch)
{
    size_t total = batch->count, n = 0;
    db_inbox_event *rows = calloc(total ? total : 1, sizeof(*rows));
    char **keys = calloc(total ? total : 1, sizeof(*keys));
    int rc = rows && keys ? MX_OK : MX_ERR_NOMEM;
    for (size_t i = 0; rc == MX_OK && i < total; i++) {
        const mx_event *e = &batch->events[i];
        if (f && f->skip && f->skip(f->skip_arg, e)) continue;
        if (!e->event_id) {
            size_t len = strlen(txn_id) + 32;
            keys[i] = malloc(len);
            if (!keys[i]) {
                rc = MX_ERR_NOMEM;
                break;
            }
            snprintf(keys[i], len, "~%s/%zu", txn_id, i);
        }
        rows[n].event_id = e->event_id ? e->event_id : keys[i];
        rows[n].room_id = e->room_id ? e->room_id : "";
        rows[n].event_json = e->json;
        n++;
    }
    bool duplicate = false;
    if (rc == MX_OK && n == 0 && total > 0) { /* only echoes: nothing to keep */
        free(keys);
        free(rows);
        return MX_TXN_STORED;
    }
    /* on a connection with asynchronous commits, durable before the homeserver hears so: the
     * commit returns before its WAL flush, which the sync then waits for (db_sync; this costs
     * less than a synchronous commit of the rows here, which flushes them itself) */
    if (rc == MX_OK && (db_mx_txn_accept(conn, txn_id, rows, n, now_ms(), &duplicate) != DB_OK ||
                        db_sync(conn) != DB_OK)) {
        fprintf(stderr, "wabridge: cannot store transaction %s: %s\n", txn_id,
                db_conn_error(conn)->message);
        rc = MX_ERR_STORE;
    }
    for (size_t i = 0; keys && i < total; i++)
        free(keys[i]);
    free(keys);
    free(rows);
    if (rc != MX_OK) return rc;
    return duplicate ? MX_TXN_DUPLICATE : MX_TXN_STORED;
}

static int commit_pg(void *ctx, const char *txn_id, const mx_event_batch *batch)
{
    return commit_some(ctx, NULL, txn_id, batch);
}

static int commit_filtered(void *ctx, const char *txn_id, const mx_event_batch *batch)
{
    const br_mx_txn_pg *f = ctx;
    return commit_some(f->conn, f, txn_id, batch);
}

mx_txn_store br_mx_txn_store_pg_filtered(br_mx_txn_pg *cfg)
{
    mx_txn_store st = {.ctx = cfg, .commit = commit_filtered};
    return st;
}

mx_txn_store br_mx_txn_store_pg(db_conn *conn)
{
    mx_txn_store st = {.ctx = conn, .commit = commit_pg};
    return st;
}
