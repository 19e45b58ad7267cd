/*
 * tests/db/test_db_migrate.c - migrations: empty to latest, a second run changes nothing, several
 * runners at once apply each migration once, a newer database is refused, a failing migration
 * leaves the previous version, and the embedded list equals migrations/.
 */
#include "check.h"
#include "db/migrate.h"
#include "pgtest.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef WB_MIGRATIONS_DIR
#error WB_MIGRATIONS_DIR must name the migrations folder
#endif

static const db_stmt st_fingerprint = {
    "t_fingerprint",
    "SELECT md5(string_agg(table_name || '.' || column_name || ':' || data_type || ':' ||"
    " is_nullable || ':' || coalesce(column_default, ''), ',' ORDER BY table_name, column_name))"
    " || (SELECT md5(string_agg(indexname || indexdef, ',' ORDER BY indexname)) FROM pg_indexes"
    "     WHERE schemaname = 'public')"
    " || (SELECT string_agg(version || name || applied_ms, ',' ORDER BY version)"
    "     FROM schema_version)"
    " FROM information_schema.columns WHERE table_schema = 'public'",
    0};
static const db_stmt st_tables = {
    "t_tables",
    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
    " AND table_name = ANY ($1::text[])",
    0};
static const db_stmt st_versions = {"t_versions",
                                    "SELECT count(*), count(DISTINCT version)"
                                    " FROM schema_version",
                                    0};
static const db_stmt st_add_version = {
    "t_add_version", "INSERT INTO schema_version VALUES ($1, 'from the future', 0)", 0};

static const db_stmt st_rename = {"t_rename",
                                  "UPDATE schema_version SET name = $2 WHERE version = $1", 0};

static char *fingerprint(db_conn *c)
{
    db_result *r;
    if (db_exec_row(c, &st_fingerprint, NULL, 0, &r) != DB_OK) return strdup("?");
    char *s = strdup(db_result_text(r, 0, 0));
    db_result_free(r);
    return s;
}

static void test_empty_to_latest(db_conn *c)
{
    int v = -1;
    CHECK_INT(db_schema_version(c, &v), DB_OK);
    CHECK_INT(v, 0);
    CHECK_INT(db_schema_check(c, db_migrations_embedded, db_migrations_embedded_count),
              DB_ERR_SCHEMA_OLD);
    CHECK(strstr(db_conn_error(c)->message, "--migrate") != NULL);
    db_migrate_report rep;
    CHECK_INT(db_migrate(c, db_migrations_embedded, db_migrations_embedded_count, &rep), DB_OK);
    CHECK_INT(rep.from_version, 0);
    CHECK_INT(rep.to_version, (int)db_migrations_embedded_count);
    CHECK_INT(rep.applied, (int)db_migrations_embedded_count);
    CHECK_INT(db_schema_check(c, db_migrations_embedded, db_migrations_embedded_count), DB_OK);
    /* every table of the issue exists */
    db_param p = db_p_text(
        "{mx_user,wa_login,wa_device,wa_identity,wa_prekey,wa_session,wa_sender_key,"
        "wa_appstate_key,wa_appstate_version,wa_appstate_mac,wa_contact,wa_chat_settings,"
        "wa_lid_map,wa_message_secret,wa_event_buffer,wa_sent_message,portal,ghost,message,"
        "reaction,user_portal,disappearing_message,backfill_task,mx_txn,mx_inbox,"
        "mx_registered_user,mx_room_state,kv_store,schema_version,wa_group_event_buffer,group_"
        "admin}");
    db_result *r;
    CHECK_INT(db_exec_row(c, &st_tables, &p, 1, &r), DB_OK);
    if (r) {
        CHECK_INT(db_result_int(r, 0, 0), 31);
        db_result_free(r);
    }

    /* a second run changes nothing */
    char *before = fingerprint(c);
    CHECK_INT(db_migrate(c, db_migrations_embedded, db_migrations_embedded_count, &rep), DB_OK);
    CHECK_INT(rep.applied, 0);
    CHECK_INT(rep.from_version, (int)db_migrations_embedded_count);
    char *after = fingerprint(c);
    CHECK_STR(after, before);
    CHECK(strlen(before) > 64);
    free(before);
    free(after);
}

typedef struct runner {
    const char *conninfo;  /* database to migrate */
    pthread_barrier_t *go; /* all start together */
    int rc;                /* db_migrate's answer */
    int applied;           /* migrations this runner applied */
} runner;

static void *run_migrate(void *arg)
{
    runner *r = arg;
    db_conn *c = pgtest_connect(r->conninfo);
    pthread_barrier_wait(r->go);
    db_migrate_report rep;
    r->rc = db_migrate(c, db_migrations_embedded, db_migrations_embedded_count, &rep);
    r->applied = rep.applied;
    if (r->rc) fprintf(stderr, "runner: %s\n", db_conn_error(c)->message);
    db_conn_close(c);
    return NULL;
}

static void test_concurrent(void)
{
    char ci[1024];
    pgtest_fresh_db("wb_test_migrate_race", ci, sizeof(ci));
    enum { N = 4 };
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    runner rs[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        rs[i] = (runner){ci, &go, -1, 0};
        pthread_create(&t[i], NULL, run_migrate, &rs[i]);
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(rs[i].rc, DB_OK);
        total += rs[i].applied;
    }
    pthread_barrier_destroy(&go);
    CHECK_INT(total, (int)db_migrations_embedded_count);
    db_conn *c = pgtest_connect(ci);
    db_result *r;
    CHECK_INT(db_exec_row(c, &st_versions, NULL, 0, &r), DB_OK);
    if (r) {
        CHECK_INT(db_result_int(r, 0, 0), (int)db_migrations_embedded_count);
        CHECK_INT(db_result_int(r, 0, 1), (int)db_migrations_embedded_count);
        db_result_free(r);
    }
    db_conn_close(c);
}

static void test_other_list(db_conn *c)
{
    /* another branch's migration 2 was applied here */
    db_param p[2] = {db_p_int(2), db_p_text("someone_elses_feature")};
    CHECK_INT(db_exec(c, &st_rename, p, 2, NULL), DB_OK);
    CHECK_INT(db_migrate(c, db_migrations_embedded, db_migrations_embedded_count, NULL),
              DB_ERR_MIGRATION);
    CHECK(strstr(db_conn_error(c)->message, "someone_elses_feature") != NULL);
    CHECK_INT(db_schema_check(c, db_migrations_embedded, db_migrations_embedded_count),
              DB_ERR_MIGRATION);
    p[1] = db_p_text(db_migrations_embedded[1].name);
    CHECK_INT(db_exec(c, &st_rename, p, 2, NULL), DB_OK);
    CHECK_INT(db_schema_check(c, db_migrations_embedded, db_migrations_embedded_count), DB_OK);
}

static void test_too_new(db_conn *c)
{
    db_param p = db_p_int((int64_t)db_migrations_embedded_count + 1);
    CHECK_INT(db_exec(c, &st_add_version, &p, 1, NULL), DB_OK);
    db_migrate_report rep;
    CHECK_INT(db_migrate(c, db_migrations_embedded, db_migrations_embedded_count, &rep),
              DB_ERR_SCHEMA_TOO_NEW);
    const char *msg = db_conn_error(c)->message;
    CHECK(strstr(msg, "newer wabridge") != NULL);
    CHECK_INT(rep.applied, 0);
    CHECK_INT(db_schema_check(c, db_migrations_embedded, db_migrations_embedded_count),
              DB_ERR_SCHEMA_TOO_NEW);
    printf("refusal reads: %s\n", db_conn_error(c)->message);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void test_failing_and_dir(void)
{
    /* the folder loader reads exactly what was embedded */
    db_migration *m;
    size_t n;
    db_error err;
    CHECK_INT(db_migrations_load_dir(WB_MIGRATIONS_DIR, &m, &n, &err), DB_OK);
    CHECK_INT((int)n, (int)db_migrations_embedded_count);
    for (size_t i = 0; i < n && i < db_migrations_embedded_count; i++) {
        CHECK_INT(m[i].version, db_migrations_embedded[i].version);
        CHECK_STR(m[i].name, db_migrations_embedded[i].name);
        CHECK_STR(m[i].sql, db_migrations_embedded[i].sql);
    }
    db_migrations_free(m, n);

    char dir[] = "/tmp/wb-migrations.XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    write_file(dir, "0001_first.sql", "CREATE TABLE a (x int);\n-- it's fine\n");
    write_file(dir, "0002_broken.sql",
               "CREATE TABLE b (x int);\nINSERT INTO a VALUES (1);\nCREAT TABLE oops;\n");
    write_file(dir, "README", "not a migration");
    CHECK_INT(db_migrations_load_dir(dir, &m, &n, &err), DB_OK);
    CHECK_INT((int)n, 2);
    char ci[1024];
    pgtest_fresh_db("wb_test_migrate_fail", ci, sizeof(ci));
    db_conn *c = pgtest_connect(ci);
    db_migrate_report rep;
    CHECK_INT(db_migrate(c, m, n, &rep), DB_ERR_MIGRATION);
    const db_error *e = db_conn_error(c);
    CHECK(strstr(e->message, "0002_broken") != NULL);
    CHECK_STR(e->sqlstate, "42601");
    CHECK_INT(rep.to_version, 1);
    CHECK_INT(rep.applied, 1);
    int v;
    CHECK_INT(db_schema_version(c, &v), DB_OK);
    CHECK_INT(v, 1);
    /* nothing of 0002 stayed: table b does not exist, a is empty */
    CHECK_INT(db_exec_script(c, "SELECT * FROM b"), DB_ERR_SERVER);
    CHECK_STR(db_conn_error(c)->sqlstate, "42P01");
    db_migrations_free(m, n);
    db_conn_close(c);

    /* a gap in the numbering is refused */
    write_file(dir, "0002_broken.sql", "");
    char p2[512];
    snprintf(p2, sizeof(p2), "%s/0002_broken.sql", dir);
    unlink(p2);
    write_file(dir, "0003_gap.sql", "SELECT 1;");
    CHECK_INT(db_migrations_load_dir(dir, &m, &n, &err), DB_ERR_MIGRATION);
    CHECK(strstr(err.message, "gap") != NULL);
    CHECK_INT(db_migrations_load_dir("/nonexistent", &m, &n, &err), DB_ERR_IO);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
}

int main(void)
{
    pgtest_require();
    char ci[1024];
    pgtest_fresh_db("wb_test_migrate", ci, sizeof(ci));
    db_conn *c = pgtest_connect(ci);
    test_empty_to_latest(c);
    test_other_list(c);
    test_too_new(c);
    db_conn_close(c);
    test_concurrent();
    test_failing_and_dir();
    return CHECK_DONE();
}
