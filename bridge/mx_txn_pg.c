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

/* ids (f only): each batch event's inbox row id, -1 when skipped or not inserted */
static int commit_some(db_conn *conn, br_mx_txn_pg *f, const char *txn_id,
                       const mx_event_batch *batch)
{
    size_t total = batch->count, n = 0;
    db_inbox_event *rows = calloc(total ? total : 1, sizeof(*rows));
    char **keys = calloc(total ? total : 1, sizeof(*keys));
    size_t *at = calloc(total ? total : 1, sizeof(*at)); /* rows[k] is the batch's event at[k] */
    int64_t *ids = calloc(total ? total : 1, sizeof(*ids));
    int rc = rows && keys && at && ids ? MX_OK : MX_ERR_NOMEM;
    if (f) f->nids = 0;
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
        at[n++] = i;
    }
    bool duplicate = false;
    if (rc == MX_OK && n == 0 && total > 0) { /* only echoes: nothing to keep */
        free(keys);
        free(rows);
        free(at);
        free(ids);
        return MX_TXN_STORED;
    }
    /* committed (asynchronously, on the endpoint's connection), then made durable before the
     * homeserver hears so (db_sync); in between, on_stored may start bridging the events */
    if (rc == MX_OK &&
        db_mx_txn_accept_ids(conn, txn_id, rows, n, now_ms(), &duplicate, ids) != DB_OK) {
        fprintf(stderr, "wabridge: cannot store transaction %s: %s\n", txn_id,
                db_conn_error(conn)->message);
        rc = MX_ERR_STORE;
    }
    if (rc == MX_OK && f && total > f->ids_cap) { /* (without room: nids stays 0) */
        int64_t *grown = realloc(f->ids, total * sizeof(*grown));
        if (grown) {
            f->ids = grown;
            f->ids_cap = total;
        }
    }
    if (rc == MX_OK && f && total <= f->ids_cap) {
        for (size_t i = 0; i < total; i++)
            f->ids[i] = -1;
        for (size_t k = 0; k < n; k++)
            f->ids[at[k]] = ids[k];
        f->nids = total;
    }
    if (f) f->taken = false;
    if (rc == MX_OK && !duplicate && f && f->on_stored)
        f->taken = f->on_stored(f->stored_arg, batch);
    if (rc == MX_OK && db_sync(conn) != DB_OK) {
        fprintf(stderr, "wabridge: cannot make transaction %s durable: %s\n", txn_id,
                db_conn_error(conn)->message);
        rc = MX_ERR_STORE;
    }
    for (size_t i = 0; keys && i < total; i++)
        free(keys[i]);
    free(keys);
    free(rows);
    free(at);
    free(ids);
    if (rc != MX_OK) return rc;
    return duplicate ? MX_TXN_DUPLICATE : MX_TXN_STORED;
}

static int commit_pg(void *ctx, const char *txn_id, const mx_event_batch *batch)
{
    return commit_some(ctx, NULL, txn_id, batch);
}

static int commit_filtered(void *ctx, const char *txn_id, const mx_event_batch *batch)
{
    br_mx_txn_pg *f = ctx;
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

void br_mx_txn_pg_free(br_mx_txn_pg *cfg)
{
    free(cfg->ids);
    cfg->ids = NULL;
    cfg->nids = cfg->ids_cap = 0;
}
