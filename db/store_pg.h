/*
 * db/store_pg.h - the engine's store (wa/store.h) on PostgreSQL, for one login.
 *
 * db_store_new wraps a db_conn (borrowed: the engine worker's own connection, which must outlive
 * the store) and a wa_login id. Reads and single writes run in autocommit mode and are idempotent,
 * so they are re-run transparently after a reconnect; begin/commit/rollback map to a SQL
 * transaction. Errors become wa_store_err codes; last_error carries db/'s message with SQLSTATE.
 */
#ifndef DB_STORE_PG_H
#define DB_STORE_PG_H

#include "db/db.h"
#include "wa/store.h"

#include <stdint.h>

/* Fills *out with the PostgreSQL store of login_id; free with out->destroy(out->ctx). */
int db_store_new(db_conn *conn, int64_t login_id, wa_store *out);

#endif
