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
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/prctl.h>
#include <unistd.h>

#define PHONE "15550000002"

static char ws_url[256], admin_url[256];
static uint8_t root[32];

typedef struct seen {
    pthread_mutex_t lock;
    int qr, paired, connected, ready, logged_out, errors;
    char last_error[512];
} seen;

static seen events = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t sink(char *p, size_t size, size_t n, void *user)
{
    wb_buf_append(user, p, size * n);
    return size * n;
}

/* POSTs a JSON body (or GETs when body is NULL); returns the HTTP status, fills out. */
static long admin(const char *path, const char *body, wb_buf *out)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", admin_url, path);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (body) curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    wb_buf ignore;
    wb_buf_init(&ignore);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out ? out : &ignore);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    wb_buf_free(&ignore);
    if (out) wb_buf_u8(out, 0);
    return status;
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

static pid_t start_sim(const char *path)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
        dup2(fds[1], 1);
        close(fds[0]);
        execl(path, path, "--account", PHONE ":100000000000002:Sim", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[1024];
    size_t n = 0;
    while (n < sizeof(line) - 1 && read(fds[0], line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = '\0';
    close(fds[0]);
    cJSON *j = cJSON_Parse(line);
    if (!j) return -1;
    snprintf(ws_url, sizeof(ws_url), "%s", cJSON_GetObjectItem(j, "ws")->valuestring);
    snprintf(admin_url, sizeof(admin_url), "%s", cJSON_GetObjectItem(j, "admin")->valuestring);
    size_t rl;
    wb_hex_decode(cJSON_GetObjectItem(j, "root")->valuestring, 64, root, 32, &rl);
    cJSON_Delete(j);
    return pid;
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
    pid_t sim = start_sim(argv[1]);
    CHECK(sim > 0);
    if (sim <= 0) return CHECK_DONE();
    wa_crypto *crypto = wa_crypto_new(NULL, 0);
    test_store ts;
    memset(&ts, 0, sizeof(ts));
    store_open(&ts, true);
    wa_client_config cfg = {
        .store = &ts.store, .crypto = crypto, .trust_root = root, .push_name = "Live Test"};

    /* 1. pair by QR and log in */
    wa_net *net = wa_net_new(NULL);
    CHECK(net != NULL);
    wa_worker *w = wa_worker_new(net, on_event, NULL);
    wa_client *c = wa_client_new(&cfg, NULL);
    CHECK(wa_worker_add(w, c, ws_url) >= 0);
    CHECK(wait_for(&events.ready, 1, 15000));
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
    CHECK(wa_worker_add(w, c, ws_url) >= 0);
    CHECK(wait_for(&events.ready, 2, 15000));
    CHECK_INT(events.qr, 1);
    CHECK_INT(events.connected, 2);

    /* 3. logout removes the companion from the account */
    wa_worker_call(w, 0, logout_call, NULL, true);
    CHECK(wait_for(&events.logged_out, 1, 10000));
    state.len = 0;
    admin("/admin/state", NULL, &state);
    CHECK(strstr((char *)state.data, "\"devices\":[]") != NULL);

    wa_worker_free(w);
    wa_client_free(c);
    wa_net_free(net);
    store_close(&ts, true);
    wa_crypto_free(crypto);
    wb_buf_free(&state);
    kill(sim, SIGTERM);
    waitpid(sim, NULL, 0);
    curl_global_cleanup();
    return CHECK_DONE();
}
