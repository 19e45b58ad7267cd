/*
 * tests/db/test_db_restart.c - PostgreSQL restarted under load (pg_ctl restart -m fast, twice):
 * engine workers keep committing "decrypted event + advanced session" transactions and a portal
 * worker keeps inserting message mappings. Afterwards every transaction reported committed is in
 * the database, nothing half-written is, and every worker went on working after the restarts.
 * Runs alone (RUN_SERIAL): it restarts the server the other tests share.
 */
#include "check.h"
#include "db/bridge_db.h"
#include "db/migrate.h"
#include "db/store_pg.h"
#include "pgtest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_OPS 100000
#define RUN_MS  4000

static char conninfo[1024];
static int64_t login_id;
static int64_t portal_id;
static atomic_int stop;
static atomic_int restarts_done;

typedef struct worker {
    int index;           /* 0, 1: engine workers */
    int committed;       /* transactions committed (ops 0..committed-1) */
    int in_doubt;        /* commits whose outcome was unknown (then retried) */
    int failures;        /* errors seen (and retried) */
    int after_restart;   /* commits after the last restart */
    uint64_t reconnects; /* times its connection was re-established */
    uint8_t *doubt;      /* MAX_OPS flags: op i had an in-doubt commit */
} worker;

static void event_hash(int w, int i, uint8_t h[WA_KEY_LEN])
{
    memset(h, 0, WA_KEY_LEN);
    h[0] = (uint8_t)w;
    h[1] = (uint8_t)(i >> 16);
    h[2] = (uint8_t)(i >> 8);
    h[3] = (uint8_t)i;
}

static void *engine_worker(void *arg)
{
    worker *w = arg;
    db_conn *c = pgtest_connect(conninfo);
    wa_store st;
    db_store_new(c, login_id, &st);
    char addr[32];
    snprintf(addr, sizeof(addr), "1555%d:1", w->index);
    uint8_t session[600], pt[300];
    memset(pt, 0x5a, sizeof(pt));
    int i = 0;
    while (!atomic_load(&stop) && i < MAX_OPS) {
        wa_buffered_event ev;
        memset(&ev, 0, sizeof(ev));
        event_hash(w->index, i, ev.ciphertext_hash);
        ev.chat_jid = "1555@s.whatsapp.net";
        ev.sender_jid = addr;
        ev.message_id = "3EB0";
        ev.plaintext = pt;
        ev.plaintext_len = sizeof(pt);
        ev.server_ts_ms = i;
        memset(session, 0, sizeof(session));
        memcpy(session, &i, sizeof(i)); /* the session "advances" with every message */
        int rc = st.begin(st.ctx);
        if (rc == WA_STORE_OK) rc = st.event_buffer_save(st.ctx, &ev);
        if (rc == WA_STORE_OK) rc = st.session_save(st.ctx, addr, session, sizeof(session));
        if (rc == WA_STORE_OK) rc = st.commit(st.ctx);
        if (rc == WA_STORE_OK) {
            i++;
            w->committed = i;
            if (atomic_load(&restarts_done) == 2) w->after_restart++;
            continue;
        }
        st.rollback(st.ctx);
        w->failures++;
        if (rc == WA_STORE_ERR_IN_DOUBT) {
            w->in_doubt++;
            w->doubt[i] = 1;
        }
        usleep(20 * 1000); /* the server is restarting: retry the same message */
    }
    w->reconnects = db_conn_reconnects(c);
    st.destroy(st.ctx);
    db_conn_close(c);
    return NULL;
}

typedef struct msg_worker {
    int inserted;      /* message mappings known inserted */
    int resolved;      /* in-doubt inserts resolved by looking them up */
    int after_restart; /* inserts after the last restart */
} msg_worker;

static void *message_worker(void *arg)
{
    msg_worker *mw = arg;
    db_conn *c = pgtest_connect(conninfo);
    int i = 0;
    while (!atomic_load(&stop) && i < MAX_OPS) {
        db_message m;
        memset(&m, 0, sizeof(m));
        m.portal_id = portal_id;
        snprintf(m.wa_id, sizeof(m.wa_id), "WA%06d", i);
        snprintf(m.sender_jid, sizeof(m.sender_jid), "1555@s.whatsapp.net");
        snprintf(m.mxid, sizeof(m.mxid), "$event%06d", i);
        snprintf(m.mx_room, sizeof(m.mx_room), "!room:example.org");
        m.timestamp_ms = i;
        int rc = db_message_insert(c, &m);
        if (rc == DB_ERR_IN_DOUBT || rc == DB_ERR_UNIQUE) {
            /* did it land? the map itself answers */
            db_message got;
            if (db_message_by_wa(c, portal_id, m.wa_id, "", &got) == DB_OK) {
                mw->resolved++;
                rc = DB_OK;
            }
        }
        if (rc == DB_OK) {
            i++;
            mw->inserted = i;
            if (atomic_load(&restarts_done) == 2) mw->after_restart++;
        } else {
            usleep(20 * 1000);
        }
    }
    db_conn_close(c);
    return NULL;
}

static const db_stmt st_count_events = {
    "t_count_events",
    "SELECT count(*), count(*) FILTER (WHERE get_byte(ciphertext_hash, 0) = $1)"
    " FROM wa_event_buffer WHERE get_byte(ciphertext_hash, 0) = $1",
    0};
static const db_stmt st_count_messages = {"t_count_messages",
                                          "SELECT count(*), count(DISTINCT wa_id) FROM message", 0};

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

int main(void)
{
    pgtest_require();
    if (!getenv("WABRIDGE_TEST_PG_HARNESS")) {
        printf("needs the harness to restart the server: skipped\n");
        return PGTEST_SKIP;
    }
    pgtest_fresh_db("wb_test_restart", conninfo, sizeof(conninfo));
    db_conn *c = pgtest_connect(conninfo);
    CHECK_INT(db_migrate(c, db_migrations_embedded, db_migrations_embedded_count, NULL), DB_OK);
    CHECK_INT(db_login_create(c, "@load:example.org", &login_id), DB_OK);
    CHECK_INT(db_portal_ensure(c, "1555@s.whatsapp.net", login_id, &portal_id), DB_OK);
    db_conn_close(c);

    worker ws[2];
    msg_worker mw = {0, 0, 0};
    pthread_t t[3];
    for (int i = 0; i < 2; i++) {
        ws[i] = (worker){i, 0, 0, 0, 0, 0, calloc(MAX_OPS, 1)};
        pthread_create(&t[i], NULL, engine_worker, &ws[i]);
    }
    pthread_create(&t[2], NULL, message_worker, &mw);

    sleep_ms(RUN_MS / 4);
    int before = ws[0].committed + ws[1].committed;
    CHECK(pgtest_restart_server());
    atomic_store(&restarts_done, 1);
    sleep_ms(RUN_MS / 4);
    CHECK(pgtest_restart_server());
    atomic_store(&restarts_done, 2);
    sleep_ms(RUN_MS / 2);
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);

    printf("engine workers: %d + %d committed (%d before the first restart), %llu + %llu "
           "reconnects, %d + %d errors retried, %d in doubt; messages: %d inserted, %d in-doubt "
           "resolved\n",
           ws[0].committed, ws[1].committed, before, (unsigned long long)ws[0].reconnects,
           (unsigned long long)ws[1].reconnects, ws[0].failures, ws[1].failures,
           ws[0].in_doubt + ws[1].in_doubt, mw.inserted, mw.resolved);
    CHECK(before > 0);
    /* both restarts were felt: every session was cut twice (errors are optional: a connection
     * cut while idle is re-established before anything is sent) */
    CHECK(ws[0].reconnects >= 2 && ws[1].reconnects >= 2);

    /* verify with a fresh connection: everything committed is there */
    c = pgtest_connect(conninfo);
    wa_store st;
    db_store_new(c, login_id, &st);
    for (int w = 0; w < 2; w++) {
        CHECK(ws[w].after_restart > 0); /* recovered */
        int missing = 0;
        for (int i = 0; i < ws[w].committed; i++) {
            uint8_t h[WA_KEY_LEN];
            event_hash(w, i, h);
            if (st.event_buffer_load(st.ctx, h, NULL, NULL) != WA_STORE_OK) missing++;
        }
        CHECK_INT(missing, 0);
        /* nothing beyond: the op in flight at the end never started a commit */
        uint8_t h[WA_KEY_LEN];
        event_hash(w, ws[w].committed, h);
        CHECK_INT(st.event_buffer_load(st.ctx, h, NULL, NULL), WA_STORE_NOT_FOUND);
        db_param p = db_p_int(w);
        db_result *r;
        CHECK_INT(db_exec_row(c, &st_count_events, &p, 1, &r), DB_OK);
        if (r) {
            CHECK_INT(db_result_int(r, 0, 0), ws[w].committed);
            db_result_free(r);
        }
        /* the session is the one saved with the last committed event: never half-written */
        char addr[32];
        snprintf(addr, sizeof(addr), "1555%d:1", w);
        wb_buf b;
        wb_buf_init(&b);
        CHECK_INT(st.session_load(st.ctx, addr, &b), WA_STORE_OK);
        int last = -1;
        if (b.len == 600) memcpy(&last, b.data, sizeof(last));
        CHECK_INT(last, ws[w].committed - 1);
        wb_buf_free(&b);
        free(ws[w].doubt);
    }
    CHECK(mw.after_restart > 0);
    db_result *r;
    CHECK_INT(db_exec_row(c, &st_count_messages, NULL, 0, &r), DB_OK);
    if (r) {
        CHECK_INT(db_result_int(r, 0, 0), mw.inserted);
        CHECK_INT(db_result_int(r, 0, 1), mw.inserted);
        db_result_free(r);
    }
    st.destroy(st.ctx);
    db_conn_close(c);
    return CHECK_DONE();
}
