/*
 * tests/unit/test_engine_live.c - our engine (wa_client on a wa_worker over wa_net) against the
 * wa-sim process over real WebSockets: pairing by QR (the simulated phone scans through the admin
 * API), the 515 restart, login, prekey upload; then a new engine with the same store logs in
 * without pairing; then the server logs it out.
 *   test_engine_live path/to/wa-sim
 * Built with WB_ENGINE_PG (tests/db), the store is PostgreSQL (the db tests' private server) and
 * the second engine opens a new connection and a new store: a restarted process logs in from the
 * database alone.
 */
#include "check.h"
#include "sim_proc.h"
#include "wa/store_mem.h"
#include "wa/worker.h"
#ifdef WB_ENGINE_PG
#include "db/bridge_db.h"
#include "db/migrate.h"
#include "db/store_pg.h"
#include "pgtest.h"
#endif

#include <cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define PHONE "15550000002"

typedef struct seen {
    pthread_mutex_t lock;
    int qr, paired, connected, ready, logged_out, errors;
    char last_error[512];
} seen;

static seen events = {.lock = PTHREAD_MUTEX_INITIALIZER};

static sim_proc simp;

static long admin(const char *path, const char *body, wb_buf *out)
{
    return sim_proc_admin(&simp, path, body, out);
}

static void on_event(void *user, int login, const wa_event *ev)
{
    pthread_mutex_lock(&events.lock);
    switch (ev->type) {
    case WA_EV_QR: {
        events.qr++;
        /* the phone scans it (from this worker thread: the admin API answers at once) */
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "phone", PHONE);
        cJSON_AddStringToObject(o, "qr", ev->text);
        char *body = cJSON_PrintUnformatted(o);
        long st = admin("/admin/scan", body, NULL);
        if (st != 200) events.errors++;
        free(body);
        cJSON_Delete(o);
        break;
    }
    case WA_EV_PAIR_SUCCESS: events.paired++; break;
    case WA_EV_CONNECTED: events.connected++; break;
    case WA_EV_READY: events.ready++; break;
    case WA_EV_LOGGED_OUT: events.logged_out++; break;
    case WA_EV_ERROR:
        events.errors++;
        snprintf(events.last_error, sizeof(events.last_error), "%s", ev->text);
        break;
    default: break;
    }
    pthread_mutex_unlock(&events.lock);
}

/* Waits up to ms for *counter to reach want. */
static bool wait_for(int *counter, int want, int ms)
{
    for (int waited = 0; waited < ms; waited += 20) {
        pthread_mutex_lock(&events.lock);
        int v = *counter;
        pthread_mutex_unlock(&events.lock);
        if (v >= want) return true;
        usleep(20000);
    }
    return false;
}

static void logout_call(wa_client *c, void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    wa_client_logout(c, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* The store of one "process": in memory (shared across restarts by the test), or PostgreSQL. */
typedef struct test_store {
    wa_store store;
#ifdef WB_ENGINE_PG
    db_conn *conn;
    char conninfo[700];
    int64_t login_id;
#endif
} test_store;

static void store_open(test_store *ts, bool first)
{
#ifdef WB_ENGINE_PG
    if (first) {
        pgtest_fresh_db("wb_engine_live", ts->conninfo, sizeof(ts->conninfo));
        ts->conn = pgtest_connect(ts->conninfo);
        db_migrate_report rep;
        CHECK_INT(db_migrate(ts->conn, db_migrations_embedded, db_migrations_embedded_count, &rep),
                  DB_OK);
        CHECK_INT(db_user_ensure(ts->conn, "@alice:example.org"), DB_OK);
        CHECK_INT(db_login_create(ts->conn, "@alice:example.org", &ts->login_id), DB_OK);
    } else {
        ts->conn = pgtest_connect(ts->conninfo);
    }
    CHECK_INT(db_store_new(ts->conn, ts->login_id, &ts->store), WA_STORE_OK);
#else
    if (first) wa_store_mem_new(&ts->store);
#endif
}

static void store_close(test_store *ts, bool last)
{
#ifdef WB_ENGINE_PG
    ts->store.destroy(ts->store.ctx);
    db_conn_close(ts->conn);
    (void)last;
#else
    if (last) ts->store.destroy(ts->store.ctx);
#endif
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
#ifdef WB_ENGINE_PG
    pgtest_require();
#endif
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *const sim_args[] = {"--account", PHONE ":100000000000002:Sim", NULL};
    int started = sim_proc_start(&simp, argv[1], sim_args);
    CHECK_INT(started, 0);
    if (started != 0) return CHECK_DONE();
    wa_crypto *crypto = wa_crypto_new(NULL, 0);
    test_store ts;
    memset(&ts, 0, sizeof(ts));
    store_open(&ts, true);
    wa_client_config cfg = {
        .store = &ts.store, .crypto = crypto, .trust_root = simp.root, .push_name = "Live Test"};

    /* 1. pair by QR and log in */
    wa_net *net = wa_net_new(NULL);
    CHECK(net != NULL);
    wa_worker *w = wa_worker_new(net, on_event, NULL);
    wa_client *c = wa_client_new(&cfg, NULL);
    CHECK(wa_worker_add(w, c, simp.ws_url) >= 0);
    CHECK(wait_for(&events.ready, 1, 45000));
    CHECK_INT(events.qr, 1);
    CHECK_INT(events.paired, 1);
    CHECK_INT(events.connected, 1);
    if (events.errors) fprintf(stderr, "error: %s\n", events.last_error);
    CHECK_INT(events.errors, 0);
    wb_buf state;
    wb_buf_init(&state);
    CHECK_INT(admin("/admin/state", NULL, &state), 200);
    CHECK(strstr((char *)state.data, "\"prekeys\":812") != NULL);
    CHECK(strstr((char *)state.data, "\"online\":true") != NULL);
    wa_worker_free(w);
    wa_client_free(c);
    store_close(&ts, false);

    /* 2. a new engine on the same store logs in without pairing */
    store_open(&ts, false);
    w = wa_worker_new(net, on_event, NULL);
    c = wa_client_new(&cfg, NULL);
    CHECK(wa_client_is_paired(c));
    CHECK(wa_worker_add(w, c, simp.ws_url) >= 0);
    CHECK(wait_for(&events.ready, 2, 45000));
    CHECK_INT(events.qr, 1);
    CHECK_INT(events.connected, 2);

    /* 3. logout removes the companion from the account */
    wa_worker_call(w, 0, logout_call, NULL, true);
    CHECK(wait_for(&events.logged_out, 1, 30000));
    state.len = 0;
    admin("/admin/state", NULL, &state);
    CHECK(strstr((char *)state.data, "\"devices\":[]") != NULL);

    wa_worker_free(w);
    wa_client_free(c);
    wa_net_free(net);
    store_close(&ts, true);
    wa_crypto_free(crypto);
    wb_buf_free(&state);
    sim_proc_stop(&simp);
    curl_global_cleanup();
    return CHECK_DONE();
}
