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

#endif
