/*
 * bridge/mx_ghosts_pg.h - the Matrix client's cache of registered ghosts, kept in PostgreSQL
 * (mx_registered_user), so a restarted bridge does not ask the homeserver to register every ghost
 * again.
 */
#ifndef BR_MX_GHOSTS_PG_H
#define BR_MX_GHOSTS_PG_H

#include "db/db.h"
#include "matrix/client.h"

/* The hook over conn (borrowed: the connection of the thread that uses the mx_client). */
mx_ghost_store br_mx_ghost_store_pg(db_conn *conn);

#endif
