/*
 * bridge/mx_txn_pg.h - the appservice endpoint's durability on PostgreSQL.
 *
 * matrix/as_server answers a homeserver transaction 200 only after its mx_txn_store committed it;
 * this store commits the transaction id and its events to mx_txn / mx_inbox in one SQL transaction
 * (db_mx_txn_accept), so a crash after the 200 loses nothing and a repeated id, before or after a
 * restart, adds nothing (DESIGN.md "Nothing is lost"). Ephemeral events (typing, receipts,
 * presence) have no event id: they are keyed "~txn_id/index" so a repeat is still recognised.
 */
#ifndef BR_MX_TXN_PG_H
#define BR_MX_TXN_PG_H

#include "db/db.h"
#include "matrix/as_server.h"

/* The store over conn (borrowed: the HTTP side's own connection; commits are serialised by the
 * endpoint, so one connection suffices). */
mx_txn_store br_mx_txn_store_pg(db_conn *conn);

/* The same, leaving out the events skip(arg, event) names (the bridge's own echoes: the
 * homeserver pushes every event of a room our users are in, including what we sent). A
 * transaction with nothing left is answered 200 without touching the database. cfg is borrowed
 * and must outlive the store. */
typedef bool (*br_mx_skip_fn)(void *arg, const mx_event *e);
typedef struct br_mx_txn_pg {
    db_conn *conn;
    br_mx_skip_fn skip;
    void *skip_arg;
    /* after a commit that stored events (until the next commit, under the endpoint's commit lock,
     * e.g. in its on_events): ids[i] is the inbox row id of the batch's event i, or -1 (skipped,
     * or not inserted); nids == the batch's count. Freed with br_mx_txn_pg_free. */
    int64_t *ids;
    size_t nids, ids_cap;
    /* Called (may be NULL) once the stored events' rows are committed and before the commit is
     * made durable (and so before the 200): what it starts for them (the bridging) overlaps the
     * WAL flush. Anything it causes must be safe to repeat, as after a crash before the flush the
     * homeserver pushes the transaction again. Returns whether it took the events. */
    bool (*on_stored)(void *arg, const mx_event_batch *batch);
    void *stored_arg;
    bool taken; /* what on_stored answered for the last transaction stored */
} br_mx_txn_pg;
mx_txn_store br_mx_txn_store_pg_filtered(br_mx_txn_pg *cfg);
void br_mx_txn_pg_free(br_mx_txn_pg *cfg);

#endif
