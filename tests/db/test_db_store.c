/*
 * tests/db/test_db_store.c - the engine's store on PostgreSQL (db/store_pg.c): the shared store
 * cases, logins kept apart, and lost connections inside and outside transactions.
 */
#include "check.h"
#include "db/bridge_db.h"
#include "db/migrate.h"
#include "db/store_pg.h"
#include "pgtest.h"
#include "store_cases.h"

#include <string.h>
#include <unistd.h>

static void break_pg(wa_store *st, void *arg)
{
    (void)st;
    pgtest_kill_backend(arg);
    usleep(50 * 1000);
}

static void test_logins_apart(db_conn *c, int64_t login_a, int64_t login_b)
{
    wa_store a, b;
    CHECK_INT(db_store_new(c, login_a, &a), WA_STORE_OK);
    CHECK_INT(db_store_new(c, login_b, &b), WA_STORE_OK);
    uint8_t k1[WA_KEY_LEN], k2[WA_KEY_LEN], got[WA_KEY_LEN];
    memset(k1, 0x11, sizeof(k1));
    memset(k2, 0x22, sizeof(k2));
    CHECK_INT(a.identity_save(a.ctx, "1555:1", k1), WA_STORE_OK);
    CHECK_INT(b.identity_save(b.ctx, "1555:1", k2), WA_STORE_OK);
    CHECK_INT(a.identity_load(a.ctx, "1555:1", got), WA_STORE_OK);
    CHECK(memcmp(got, k1, WA_KEY_LEN) == 0);
    CHECK_INT(b.identity_load(b.ctx, "1555:1", got), WA_STORE_OK);
    CHECK(memcmp(got, k2, WA_KEY_LEN) == 0);
    CHECK_INT(a.wipe(a.ctx), WA_STORE_OK);
    CHECK_INT(a.identity_load(a.ctx, "1555:1", got), WA_STORE_NOT_FOUND);
    CHECK_INT(b.identity_load(b.ctx, "1555:1", got), WA_STORE_OK);
    /* deleting the login deletes its rows */
    CHECK_INT(db_login_delete(c, login_b), DB_OK);
    CHECK_INT(b.identity_load(b.ctx, "1555:1", got), WA_STORE_NOT_FOUND);
    /* a store of a login that does not exist cannot write */
    CHECK_INT(b.identity_save(b.ctx, "1555:1", k2), WA_STORE_ERR_IO);
    CHECK(strstr(b.last_error(b.ctx), "23503") != NULL); /* foreign key violation */
    a.destroy(a.ctx);
    b.destroy(b.ctx);
}

static void test_reconnect(db_conn *c, int64_t login)
{
    wa_store st;
    CHECK_INT(db_store_new(c, login, &st), WA_STORE_OK);
    uint8_t rec[300], got_key[WA_KEY_LEN];
    memset(rec, 0xab, sizeof(rec));
    CHECK_INT(st.session_save(st.ctx, "9999:1", rec, sizeof(rec)), WA_STORE_OK);
    /* outside a transaction every store call survives a killed backend */
    uint64_t before = db_conn_reconnects(c);
    CHECK(pgtest_kill_backend(c));
    usleep(50 * 1000);
    wb_buf b;
    wb_buf_init(&b);
    CHECK_INT(st.session_load(st.ctx, "9999:1", &b), WA_STORE_OK);
    CHECK(b.len == sizeof(rec));
    CHECK(db_conn_reconnects(c) == before + 1);
    CHECK(pgtest_kill_backend(c));
    usleep(50 * 1000);
    CHECK_INT(st.session_save(st.ctx, "9999:2", rec, 10), WA_STORE_OK);
    CHECK(pgtest_kill_backend(c));
    usleep(50 * 1000);
    CHECK_INT(st.identity_load(st.ctx, "nobody:0", got_key), WA_STORE_NOT_FOUND);
    wb_buf_free(&b);
    st.destroy(st.ctx);
}

int main(void)
{
    pgtest_require();
    char conninfo[1024];
    pgtest_fresh_db("wb_test_store", conninfo, sizeof(conninfo));
    db_conn *c = pgtest_connect(conninfo);
    CHECK_INT(db_migrate(c, db_migrations_embedded, db_migrations_embedded_count, NULL), DB_OK);
    int64_t login = 0, login2 = 0, login3 = 0;
    CHECK_INT(db_login_create(c, "@alice:example.org", &login), DB_OK);
    CHECK_INT(db_login_create(c, "@alice:example.org", &login2), DB_OK);
    CHECK_INT(db_login_create(c, "@bob:example.org", &login3), DB_OK);

    wa_store st;
    CHECK_INT(db_store_new(c, login, &st), WA_STORE_OK);
    store_hooks hooks = {break_pg, c};
    store_cases_run(&st, &hooks, &check_passed, &check_failed);
    st.destroy(st.ctx);

    test_logins_apart(c, login2, login3);
    test_reconnect(c, login);
    db_conn_close(c);
    return CHECK_DONE();
}
