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
    /* deleting the login deletes its rows (seen by a new store: a store's cache assumes that it
     * alone writes its login's rows, as the lease makes it) */
    CHECK_INT(db_login_delete(c, login_b), DB_OK);
    b.destroy(b.ctx);
    CHECK_INT(db_store_new(c, login_b, &b), WA_STORE_OK);
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

/* The session/identity cache: what a transaction saved is in the database after its commit (a
 * second store on another connection reads it), also when it saved more sessions than the cache
 * holds; a rollback leaves the database and the cache as before; an unchanged identity is not
 * written again (the row keeps what another writer put there meanwhile, which only a test does). */
/* The event buffer's "decrypted before?" check: rows present when the store first looks and rows
 * it saved since are asked of the database; any other hash is answered "no" without a round trip
 * (seen here: with the backend killed, the answer comes and nothing reconnects). */
static void test_evbuf_filter(db_conn *c)
{
    int64_t login = 0;
    CHECK_INT(db_login_create(c, "@carol:example.org", &login), DB_OK);
    wa_buffered_event ev = {.chat_jid = "1555:0@s.whatsapp.net",
                            .sender_jid = "1555:0@s.whatsapp.net",
                            .message_id = "FILTER1",
                            .plaintext = (const uint8_t *)"old",
                            .plaintext_len = 3,
                            .server_ts_ms = 1};
    memset(ev.ciphertext_hash, 0xa1, WA_KEY_LEN);
    wa_store a, st;
    CHECK_INT(db_store_new(c, login, &a), WA_STORE_OK);
    CHECK_INT(a.event_buffer_save(a.ctx, &ev), WA_STORE_OK); /* before st looks */
    a.destroy(a.ctx);
    CHECK_INT(db_store_new(c, login, &st), WA_STORE_OK);
    wb_buf b;
    wb_buf_init(&b);
    CHECK_INT(st.event_buffer_load(st.ctx, ev.ciphertext_hash, &b, NULL), WA_STORE_OK);
    CHECK(b.len == 3 && memcmp(b.data, "old", 3) == 0);
    /* saved by this store, in a transaction: found */
    wa_buffered_event ev2 = ev;
    ev2.message_id = "FILTER2";
    ev2.plaintext = (const uint8_t *)"new";
    memset(ev2.ciphertext_hash, 0xa2, WA_KEY_LEN);
    CHECK_INT(st.begin(st.ctx), WA_STORE_OK);
    CHECK_INT(st.event_buffer_save(st.ctx, &ev2), WA_STORE_OK);
    CHECK_INT(st.commit(st.ctx), WA_STORE_OK);
    b.len = 0;
    CHECK_INT(st.event_buffer_load(st.ctx, ev2.ciphertext_hash, &b, NULL), WA_STORE_OK);
    CHECK(b.len == 3 && memcmp(b.data, "new", 3) == 0);
    /* deleted: the database says so */
    CHECK_INT(st.event_buffer_delete(st.ctx, ev2.ciphertext_hash), WA_STORE_OK);
    CHECK_INT(st.event_buffer_load(st.ctx, ev2.ciphertext_hash, &b, NULL), WA_STORE_NOT_FOUND);
    /* never buffered: answered without the database */
    uint64_t reconnects = db_conn_reconnects(c);
    CHECK(pgtest_kill_backend(c));
    usleep(100 * 1000);
    uint8_t fresh[WA_KEY_LEN];
    memset(fresh, 0xa3, sizeof(fresh));
    CHECK_INT(st.event_buffer_load(st.ctx, fresh, &b, NULL), WA_STORE_NOT_FOUND);
    CHECK(db_conn_reconnects(c) == reconnects);
    /* a known one is asked of the database (which reconnects) */
    b.len = 0;
    CHECK_INT(st.event_buffer_load(st.ctx, ev.ciphertext_hash, &b, NULL), WA_STORE_OK);
    CHECK(db_conn_reconnects(c) == reconnects + 1);
    CHECK_INT(st.event_buffer_delete(st.ctx, ev.ciphertext_hash), WA_STORE_OK);
    wb_buf_free(&b);
    st.destroy(st.ctx);
}

static void test_cache(db_conn *c, const char *conninfo, int64_t login)
{
    db_conn *c2 = pgtest_connect(conninfo);
    wa_store st, other;
    CHECK_INT(db_store_new(c, login, &st), WA_STORE_OK);
    CHECK_INT(db_store_new(c2, login, &other), WA_STORE_OK);
    char addr[64];
    uint8_t rec[300];
    wb_buf b;
    wb_buf_init(&b);
    CHECK_INT(st.begin(st.ctx), WA_STORE_OK);
    for (int i = 0; i < 300; i++) { /* more than the cache's 128 slots */
        snprintf(addr, sizeof(addr), "1777%d:0", i);
        memset(rec, i & 0xff, sizeof(rec));
        CHECK_INT(st.session_save(st.ctx, addr, rec, 100 + (size_t)i % 200), WA_STORE_OK);
        b.len = 0;
        CHECK_INT(st.session_load(st.ctx, addr, &b), WA_STORE_OK); /* read back in the tx */
        CHECK_INT(b.len, 100 + i % 200);
    }
    CHECK_INT(st.commit(st.ctx), WA_STORE_OK);
    int same = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(addr, sizeof(addr), "1777%d:0", i);
        b.len = 0;
        if (other.session_load(other.ctx, addr, &b) == WA_STORE_OK &&
            b.len == 100 + (size_t)i % 200 && b.data[0] == (uint8_t)(i & 0xff))
            same++;
    }
    CHECK_INT(same, 300);
    /* rolled back: neither the database nor the cache keep the new record */
    CHECK_INT(st.begin(st.ctx), WA_STORE_OK);
    memset(rec, 0xee, sizeof(rec));
    CHECK_INT(st.session_save(st.ctx, "17770:0", rec, 50), WA_STORE_OK);
    CHECK_INT(st.rollback(st.ctx), WA_STORE_OK);
    b.len = 0;
    CHECK_INT(st.session_load(st.ctx, "17770:0", &b), WA_STORE_OK);
    CHECK(b.len == 100 && b.data[0] == 0);
    b.len = 0;
    CHECK_INT(other.session_load(other.ctx, "17770:0", &b), WA_STORE_OK);
    CHECK(b.len == 100 && b.data[0] == 0);
    /* a missing session is remembered as missing, and a save replaces that */
    CHECK_INT(st.session_load(st.ctx, "17779999:0", &b), WA_STORE_NOT_FOUND);
    CHECK_INT(st.session_load(st.ctx, "17779999:0", &b), WA_STORE_NOT_FOUND);
    CHECK_INT(st.session_save(st.ctx, "17779999:0", rec, 7), WA_STORE_OK);
    b.len = 0;
    CHECK_INT(st.session_load(st.ctx, "17779999:0", &b), WA_STORE_OK);
    CHECK_INT(b.len, 7);
    /* identities: saved once, an unchanged save writes nothing */
    uint8_t k1[WA_KEY_LEN], k2[WA_KEY_LEN], got[WA_KEY_LEN];
    memset(k1, 0x31, sizeof(k1));
    memset(k2, 0x32, sizeof(k2));
    CHECK_INT(st.identity_save(st.ctx, "1777:1", k1), WA_STORE_OK);
    CHECK_INT(other.identity_save(other.ctx, "1777:1", k2), WA_STORE_OK); /* behind its back */
    CHECK_INT(st.identity_save(st.ctx, "1777:1", k1), WA_STORE_OK);       /* unchanged: skipped */
    CHECK_INT(other.identity_load(other.ctx, "1777:1", got), WA_STORE_OK);
    CHECK(memcmp(got, k2, WA_KEY_LEN) == 0);
    CHECK_INT(st.identity_save(st.ctx, "1777:1", k2), WA_STORE_OK); /* changed: written */
    CHECK_INT(st.session_delete_prefix(st.ctx, "1777", NULL), WA_STORE_OK);
    CHECK_INT(st.session_load(st.ctx, "17771:0", &b), WA_STORE_NOT_FOUND);
    wb_buf_free(&b);
    st.destroy(st.ctx);
    other.destroy(other.ctx);
    db_conn_close(c2);
}

/* On a connection that holds commits (the engine's): the store's cases hold as they do
 * elsewhere, and when a held batch is lost the cache forgets what it took as committed. */
static const db_stmt st_fail = {"t_store_fail", "SELECT 1 / 0", 0};

static void test_held(const char *conninfo, db_conn *c, int64_t login, int64_t login_b)
{
    db_conn_opts o = {.async_commit = true, .hold_commits = true};
    db_conn *h;
    db_error e;
    CHECK_INT(db_conn_open(conninfo, &o, &h, &e), DB_OK);
    if (!h) return;
    wa_store st, other;
    CHECK_INT(db_store_new(h, login, &st), WA_STORE_OK);
    store_hooks hooks = {break_pg, h};
    store_cases_run(&st, &hooks, &check_passed, &check_failed);
    st.destroy(st.ctx);
    db_sync(
        h); /* (the cases broke the connection after commits: this sync says they may be lost) */

    CHECK_INT(db_store_new(h, login_b, &st), WA_STORE_OK);
    CHECK_INT(db_store_new(c, login_b, &other), WA_STORE_OK);
    uint8_t rec[32];
    wb_buf b;
    wb_buf_init(&b);
    memset(rec, 1, sizeof(rec));
    CHECK_INT(st.begin(st.ctx), WA_STORE_OK);
    CHECK_INT(st.session_save(st.ctx, "1888:0", rec, 10), WA_STORE_OK);
    CHECK_INT(st.commit(st.ctx), WA_STORE_OK);
    CHECK_INT(other.session_load(other.ctx, "1888:0", &b), WA_STORE_NOT_FOUND); /* held */
    CHECK_INT(db_sync(h), DB_OK);
    other.destroy(other.ctx); /* (it remembers the session as missing) */
    CHECK_INT(db_store_new(c, login_b, &other), WA_STORE_OK);
    CHECK_INT(other.session_load(other.ctx, "1888:0", &b), WA_STORE_OK);
    CHECK_INT(b.len, 10);
    /* the next batch fails on the server: its session write is lost, and so is the cached copy;
     * the epoch moves on when the loss shows */
    memset(rec, 2, sizeof(rec));
    uint64_t epoch = st.epoch(st.ctx);
    CHECK_INT(st.begin(st.ctx), WA_STORE_OK);
    CHECK_INT(st.session_save(st.ctx, "1888:0", rec, 20), WA_STORE_OK);
    CHECK_INT(st.commit(st.ctx), WA_STORE_OK);
    CHECK_INT(db_begin(h, 0), DB_OK);
    CHECK_INT(db_exec_deferred(h, &st_fail, NULL, 0), DB_OK);
    CHECK_INT(db_commit(h), DB_OK);
    CHECK(st.epoch(st.ctx) == epoch);
    CHECK(db_sync(h) != DB_OK);
    CHECK(st.epoch(st.ctx) != epoch);
    b.len = 0;
    CHECK_INT(st.session_load(st.ctx, "1888:0", &b), WA_STORE_OK);
    CHECK(b.len == 10 && b.data[0] == 1);
    /* and it works on */
    CHECK_INT(st.begin(st.ctx), WA_STORE_OK);
    CHECK_INT(st.session_save(st.ctx, "1888:0", rec, 30), WA_STORE_OK);
    CHECK_INT(st.commit(st.ctx), WA_STORE_OK);
    CHECK_INT(db_sync(h), DB_OK);
    b.len = 0;
    other.destroy(other.ctx);
    CHECK_INT(db_store_new(c, login_b, &other), WA_STORE_OK);
    CHECK_INT(other.session_load(other.ctx, "1888:0", &b), WA_STORE_OK);
    CHECK(b.len == 30 && b.data[0] == 2);
    wb_buf_free(&b);
    st.destroy(st.ctx);
    other.destroy(other.ctx);
    db_conn_close(h);
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
    test_cache(c, conninfo, login2);
    test_evbuf_filter(c);
    int64_t login4 = 0, login5 = 0;
    CHECK_INT(db_login_create(c, "@carol:example.org", &login4), DB_OK);
    CHECK_INT(db_login_create(c, "@carol:example.org", &login5), DB_OK);
    test_held(conninfo, c, login4, login5);
    db_conn_close(c);
    return CHECK_DONE();
}
