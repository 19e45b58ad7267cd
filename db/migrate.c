/*
 * db/migrate.c - applies the numbered migrations under an advisory lock; loads them from a folder.
 *
 * Order of events in db_migrate: validate the list (versions 1..n), take the session advisory lock
 * DB_MIGRATE_LOCK_KEY (waiting for another migrator to finish), create schema_version if missing,
 * read the recorded version, refuse a newer database, then BEGIN / script / INSERT schema_version /
 * COMMIT for each missing migration, and release the lock. If the connection is re-established on
 * the way, the lock went with the old session, so the run stops rather than go on unlocked.
 */
#include "db/migrate.h"
#include "db/db_internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "wabridg" in ASCII: the advisory lock key that serializes migrators. */
#define DB_MIGRATE_LOCK_KEY 0x77616272696467LL

static const db_stmt st_lock = {"migrate_lock", "SELECT pg_advisory_lock($1)", 0};
static const db_stmt st_unlock = {"migrate_unlock", "SELECT pg_advisory_unlock($1)", 0};
static const db_stmt st_has_table = {
    "migrate_has_table", "SELECT to_regclass('schema_version') IS NOT NULL", DB_STMT_IDEMPOTENT};
static const db_stmt st_version = {
    "migrate_version", "SELECT coalesce(max(version), 0) FROM schema_version", DB_STMT_IDEMPOTENT};
static const db_stmt st_record = {
    "migrate_record", "INSERT INTO schema_version (version, name, applied_ms) VALUES ($1, $2, $3)",
    0};

static const db_stmt st_applied = {"migrate_applied",
                                   "SELECT version, name FROM schema_version ORDER BY version",
                                   DB_STMT_IDEMPOTENT};

static const char create_table_sql[] = "CREATE TABLE IF NOT EXISTS schema_version ("
                                       " version integer PRIMARY KEY,"
                                       " name text NOT NULL,"
                                       " applied_ms bigint NOT NULL)";

static int check_list(db_conn *c, const db_migration *m, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (m[i].version != (int)i + 1 || !m[i].sql || !m[i].name)
            return db_set_error(c, DB_ERR_MIGRATION, NULL,
                                "migration list: entry %zu has version %d, expected %zu", i,
                                m[i].version, i + 1);
    }
    return DB_OK;
}

int db_schema_version(db_conn *c, int *version)
{
    *version = 0;
    db_result *r;
    int rc = db_exec_row(c, &st_has_table, NULL, 0, &r);
    if (rc) return rc;
    bool has = db_result_bool(r, 0, 0);
    db_result_free(r);
    if (!has) return DB_OK;
    rc = db_exec_row(c, &st_version, NULL, 0, &r);
    if (rc) return rc;
    *version = (int)db_result_int(r, 0, 0);
    db_result_free(r);
    return DB_OK;
}

/* The migrations already applied must be the ones this binary has under the same numbers: two
 * branches that both added a 0004 would otherwise pass silently. */
static int check_applied_names(db_conn *c, const db_migration *m, size_t count)
{
    db_result *r;
    int rc = db_exec(c, &st_applied, NULL, 0, &r);
    if (rc) return rc;
    for (int i = 0; i < db_result_rows(r); i++) {
        int64_t v = db_result_int(r, i, 0);
        const char *name = db_result_text(r, i, 1);
        if (v >= 1 && (size_t)v <= count && strcmp(m[v - 1].name, name) != 0) {
            rc = db_set_error(c, DB_ERR_MIGRATION, NULL,
                              "schema version %lld was applied as \"%s\" but this wabridge's "
                              "migration %lld is \"%s\": the migration lists differ",
                              (long long)v, name, (long long)v, m[v - 1].name);
            break;
        }
    }
    db_result_free(r);
    return rc;
}

static int too_new(db_conn *c, int have, size_t known)
{
    return db_set_error(c, DB_ERR_SCHEMA_TOO_NEW, NULL,
                        "the database schema is at version %d but this wabridge only knows "
                        "versions up to %zu: it was migrated by a newer wabridge; run that "
                        "version (or restore a backup)",
                        have, known);
}

int db_schema_check(db_conn *c, const db_migration *m, size_t count)
{
    int have;
    int rc = db_schema_version(c, &have);
    if (rc) return rc;
    if (have > (int)count) return too_new(c, have, count);
    if (have > 0 && (rc = check_applied_names(c, m, count)) != DB_OK) return rc;
    if (have < (int)count)
        return db_set_error(c, DB_ERR_SCHEMA_OLD, NULL,
                            "the database schema is at version %d, this wabridge needs %zu: run "
                            "wabridge --migrate",
                            have, count);
    return DB_OK;
}

static int apply_one(db_conn *c, const db_migration *mg)
{
    int rc = db_begin(c, 0);
    if (rc) return rc;
    rc = db_exec_script(c, mg->sql);
    if (rc == DB_OK) {
        db_param p[3] = {db_p_int(mg->version), db_p_text(mg->name), db_p_int(db_now_ms())};
        rc = db_exec(c, &st_record, p, 3, NULL);
    }
    if (rc == DB_OK) return db_commit(c);
    db_error saved = *db_conn_error(c);
    db_rollback(c);
    return db_set_error(c, DB_ERR_MIGRATION, saved.sqlstate, "migration %04d_%s failed (%s): %s",
                        mg->version, mg->name, db_strerror(rc), saved.message);
}

int db_migrate(db_conn *c, const db_migration *m, size_t count, db_migrate_report *report)
{
    db_migrate_report rep = {0, 0, 0};
    if (report) *report = rep;
    if (db_conn_in_tx(c))
        return db_set_error(c, DB_ERR_STATE, NULL, "db_migrate: a transaction is open");
    int rc = check_list(c, m, count);
    if (rc) return rc;

    db_param key = db_p_int(DB_MIGRATE_LOCK_KEY);
    rc = db_exec(c, &st_lock, &key, 1, NULL);
    if (rc) return rc;
    uint64_t session = db_conn_reconnects(c);

    rc = db_exec_script(c, create_table_sql);
    int have = 0;
    if (rc == DB_OK) rc = db_schema_version(c, &have);
    rep.from_version = rep.to_version = have;
    if (rc == DB_OK && have > (int)count) rc = too_new(c, have, count);
    if (rc == DB_OK && have > 0) rc = check_applied_names(c, m, count);
    for (size_t i = (size_t)have; rc == DB_OK && i < count; i++) {
        if (db_conn_reconnects(c) != session) {
            rc = db_set_error(c, DB_ERR_CONN_LOST, NULL,
                              "migrate: the connection (and with it the migration lock) was lost "
                              "after version %d; run the migration again",
                              rep.to_version);
            break;
        }
        rc = apply_one(c, &m[i]);
        if (rc == DB_OK) {
            rep.to_version = m[i].version;
            rep.applied++;
        }
    }
    if (db_conn_reconnects(c) == session) {
        db_error saved = *db_conn_error(c);
        db_exec(c, &st_unlock, &key, 1, NULL);
        if (rc) db_set_error(c, saved.code, saved.sqlstate, "%s", saved.message);
    }
    if (report) *report = rep;
    return rc;
}

/* ---- loading a folder ---- */

static int cmp_version(const void *a, const void *b)
{
    const db_migration *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            size_t ncap = cap ? cap * 2 : 8192;
            char *n = realloc(buf, ncap);
            if (!n) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = n;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

static void load_error(db_error *err, int code, const char *what, const char *name)
{
    if (!err) return;
    err->code = code;
    err->sqlstate[0] = '\0';
    snprintf(err->message, sizeof(err->message), "migrations: %s: %.400s", what, name);
}

int db_migrations_load_dir(const char *dir, db_migration **out, size_t *count, db_error *err)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        load_error(err, DB_ERR_IO, "cannot open folder", dir);
        return DB_ERR_IO;
    }
    db_migration *m = NULL;
    size_t n = 0, cap = 0;
    int rc = DB_OK;
    struct dirent *e;
    while (rc == DB_OK && (e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        size_t len = strlen(nm);
        size_t digits = strspn(nm, "0123456789");
        if (digits == 0 || digits > 9 || nm[digits] != '_' || len < digits + 6 ||
            strcmp(nm + len - 4, ".sql") != 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            db_migration *nmg = realloc(m, ncap * sizeof(*m));
            if (!nmg) {
                rc = DB_ERR_NOMEM;
                load_error(err, rc, "out of memory", nm);
                break;
            }
            m = nmg;
            cap = ncap;
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, nm);
        char *sql = read_file(path);
        char *name = strndup(nm + digits + 1, len - digits - 5);
        if (!sql || !name) {
            free(sql);
            free(name);
            rc = DB_ERR_IO;
            load_error(err, rc, "cannot read", path);
            break;
        }
        m[n].version = atoi(nm);
        m[n].name = name;
        m[n].sql = sql;
        n++;
    }
    closedir(d);
    if (rc == DB_OK) {
        qsort(m, n, sizeof(*m), cmp_version);
        for (size_t i = 0; i < n; i++) {
            if (m[i].version != (int)i + 1) {
                rc = DB_ERR_MIGRATION;
                load_error(err, rc, "versions must run 1, 2, 3... without gaps or duplicates",
                           m[i].name);
                break;
            }
        }
    }
    if (rc) {
        db_migrations_free(m, n);
        return rc;
    }
    *out = m;
    *count = n;
    return DB_OK;
}

void db_migrations_free(db_migration *m, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free((char *)m[i].name);
        free((char *)m[i].sql);
    }
    free(m);
}
