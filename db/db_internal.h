/*
 * db/db_internal.h - what the files of db/ share and nobody else needs.
 */
#ifndef DB_DB_INTERNAL_H
#define DB_DB_INTERNAL_H

#include "db/db.h"

/* Records an error on the connection (printf-style message) and returns code. */
int db_set_error(db_conn *c, int code, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Milliseconds since the Unix epoch (wall clock), for *_ms columns. */
int64_t db_now_ms(void);

#endif
