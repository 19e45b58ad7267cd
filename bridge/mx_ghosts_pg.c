/*
 * bridge/mx_ghosts_pg.c - mx_ghost_store on PostgreSQL (bridge/mx_ghosts_pg.h). A database error
 * only costs a registration request (M_USER_IN_USE then confirms the ghost), so it is logged, not
 * fatal.
 */
#include "bridge/mx_ghosts_pg.h"

#include "db/bridge_db.h"

#include <stdio.h>

static bool known(void *ctx, const char *user_id)
{
    bool yes = false;
    if (db_registered_user_known(ctx, user_id, &yes) != DB_OK)
        fprintf(stderr, "wabridge: ghost cache lookup failed: %s\n", db_conn_error(ctx)->message);
    return yes;
}

static void remember(void *ctx, const char *user_id)
{
    if (db_registered_user_add(ctx, user_id) != DB_OK)
        fprintf(stderr, "wabridge: cannot remember ghost %s: %s\n", user_id,
                db_conn_error(ctx)->message);
}

mx_ghost_store br_mx_ghost_store_pg(db_conn *conn)
{
    mx_ghost_store st = {.ctx = conn, .known = known, .remember = remember};
    return st;
}
