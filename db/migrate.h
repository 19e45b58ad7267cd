/*
 * db/migrate.h - schema migrations: numbered SQL files applied in order, once, under a lock.
 *
 * The schema is the list of migrations/NNNN_name.sql, embedded into the binary at build time
 * (db_migrations_embedded) so an installed wabridge needs no files; tests may load a directory
 * instead. db_migrate takes a PostgreSQL advisory lock (so two processes starting at once never
 * apply one twice), creates the bookkeeping table schema_version, then applies each missing
 * migration in its own transaction together with its schema_version row. A database whose recorded
 * version is newer than the newest migration known here is refused with DB_ERR_SCHEMA_TOO_NEW.
 * Migrations run as plain SQL scripts inside a transaction (so no CREATE INDEX CONCURRENTLY).
 */
#ifndef DB_MIGRATE_H
#define DB_MIGRATE_H

#include "db/db.h"

#include <stddef.h>

typedef struct db_migration {
    int version;      /* 1, 2, 3, ... in order, no gaps */
    const char *name; /* from the file name: 0002_bridge.sql -> "bridge" */
    const char *sql;  /* the file's text */
} db_migration;

/* The migrations compiled into this binary (generated from migrations/ at build time). */
extern const db_migration db_migrations_embedded[];
extern const size_t db_migrations_embedded_count;

/* Reads every NNNN_name.sql of dir, sorted by version. The caller frees with db_migrations_free.
 * Errors (unreadable directory, duplicate or missing versions) go to err. */
int db_migrations_load_dir(const char *dir, db_migration **out, size_t *count, db_error *err);
void db_migrations_free(db_migration *m, size_t count);

/* What db_migrate did. */
typedef struct db_migrate_report {
    int from_version; /* schema version found (0: empty database) */
    int to_version;   /* schema version left */
    int applied;      /* migrations applied by this call */
} db_migrate_report;

/* Brings the database to the newest of the given migrations (sorted, versions 1..n). report may be
 * NULL. On failure the database stays at the last migration that committed, and the connection's
 * error names the migration, the SQLSTATE and the server's message. */
int db_migrate(db_conn *c, const db_migration *m, size_t count, db_migrate_report *report);

/* The recorded schema version (0 when the database has never been migrated). */
int db_schema_version(db_conn *c, int *version);

/* For start-up without migrating: DB_OK when the database is exactly at the newest version,
 * DB_ERR_SCHEMA_OLD when migrations are missing, DB_ERR_SCHEMA_TOO_NEW when it is newer. */
int db_schema_check(db_conn *c, const db_migration *m, size_t count);

#endif
