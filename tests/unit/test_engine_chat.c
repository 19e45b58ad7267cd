/*
 * tests/unit/test_engine_chat.c - 1:1 texts between two of our engines and a simulated phone,
 * through the wa-sim process over WebSockets: both engines pair by QR; A writes to B (B's engine
 * and B's phone both get it, A gets the server's ack and B's delivery receipt); B answers; B's
 * phone writes to A.
 *   test_engine_chat path/to/wa-sim
 */
#include "check.h"
#include "sim_proc.h"
#include "wa/message.h"
#include "wa/store_mem.h"
#include "wa/worker.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static const char *const PHONES[2] = {"15550000011", "15550000012"};
static sim_proc simp;

typedef struct seen {
    pthread_mutex_t lock;
    int ready[2], messages[2], sent[2], receipts[2], errors;
    char last_error[512];
} seen;
static seen ev = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_event(void *user, int login, const wa_event *e)
{
    if (login < 0 || login > 1) return;
    pthread_mutex_lock(&ev.lock);
    if (e->type == WA_EV_QR) {
        char body[1024];
        snprintf(body, sizeof(body), "{\"phone\":\"%s\",\"qr\":\"%s\"}", PHONES[login], e->text);
        if (sim_proc_admin(&simp, "/admin/scan", body, NULL) != 200) ev.errors++;
    }
    if (e->type == WA_EV_READY) ev.ready[login]++;
    if (e->type == WA_EV_MESSAGE) ev.messages[login]++;
    if (e->type == WA_EV_SENT) ev.sent[login]++;
    if (e->type == WA_EV_RECEIPT) ev.receipts[login]++;
    if (e->type == WA_EV_ERROR) {
        ev.errors++;
        snprintf(ev.last_error, sizeof(ev.last_error), "%s", e->text);
    }
    pthread_mutex_unlock(&ev.lock);
}

static bool wait_for(int *counter, int want, int ms)
{
    for (int waited = 0; waited < ms; waited += 20) {
        pthread_mutex_lock(&ev.lock);
        int v = *counter;
        pthread_mutex_unlock(&ev.lock);
        if (v >= want) return true;
        usleep(20000);
    }
    return false;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct send_req {
    const char *to;
    const char *text;
    int rc;
} send_req;

static void do_send(wa_client *c, void *arg)
{
    send_req *r = arg;
    char id[32];
    r->rc = wa_client_send_text(c, r->to, r->text, id, mono_ms());
}

typedef struct take_req {
    char text[256];
    char sender[WA_JID_STR_MAX];
    bool got;
} take_req;

static void do_take(wa_client *c, void *arg)
{
    take_req *t = arg;
    wa_received r;
    t->got = false;
    if (!wa_client_next_message(c, &r)) return;
    const uint8_t *txt;
    size_t len;
    if (r.nparts && wa_message_get_text(r.parts[0].plaintext.data, r.parts[0].plaintext.len, &txt,
                                        &len, NULL, NULL) == WA_OK) {
        snprintf(t->text, sizeof(t->text), "%.*s", (int)len, (const char *)txt);
        snprintf(t->sender, sizeof(t->sender), "%s", r.sender);
        t->got = true;
    }
    wa_received_free(&r);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *const args[] = {"--account", "15550000011:100000000000011:Alice", "--account",
                                "15550000012:100000000000012:Bob", NULL};
    if (sim_proc_start(&simp, argv[1], args) != 0) return 1;
    wa_crypto *crypto = wa_crypto_new(NULL, 0);
    wa_net *net = wa_net_new(NULL);
    wa_worker *w = wa_worker_new(net, on_event, NULL);
    wa_store stores[2];
    wa_client *c[2];
    for (int i = 0; i < 2; i++) {
        wa_store_mem_new(&stores[i]);
        wa_client_config cfg = {.store = &stores[i], .crypto = crypto, .trust_root = simp.root};
        c[i] = wa_client_new(&cfg, NULL);
        CHECK_INT(wa_worker_add(w, c[i], simp.ws_url), i);
    }
    CHECK(wait_for(&ev.ready[0], 1, 45000) && wait_for(&ev.ready[1], 1, 45000));

    /* A -> B */
    send_req s = {"15550000012@s.whatsapp.net", "hello Bob, from engine A", -1};
    wa_worker_call(w, 0, do_send, &s, true);
    CHECK_INT(s.rc, WA_OK);
    CHECK(wait_for(&ev.messages[1], 1, 20000));
    take_req t = {0};
    wa_worker_call(w, 1, do_take, &t, true);
    CHECK(t.got);
    CHECK_STR(t.text, "hello Bob, from engine A");
    CHECK(strncmp(t.sender, "15550000011", 11) == 0);
    CHECK(wait_for(&ev.sent[0], 1, 10000));
    CHECK(wait_for(&ev.receipts[0], 1, 10000));
    /* B's phone got it too */
    wb_buf out;
    wb_buf_init(&out);
    CHECK_INT(sim_proc_admin(&simp, "/admin/messages?phone=15550000012", NULL, &out), 200);
    CHECK(out.data && strstr((const char *)out.data, "hello Bob, from engine A") != NULL);
    /* from=K: only the messages after the first K (what a poller has not seen yet) */
    out.len = 0;
    CHECK_INT(sim_proc_admin(&simp, "/admin/messages?phone=15550000012&from=1000", NULL, &out),
              200);
    CHECK(out.data && strstr((const char *)out.data, "\"messages\":[]") != NULL);
    out.len = 0;
    CHECK_INT(sim_proc_admin(&simp, "/admin/messages?phone=15550000012&from=x", NULL, &out), 400);

    /* B -> A, on the session B now has */
    send_req s2 = {"15550000011@s.whatsapp.net", "hi A, B here", -1};
    wa_worker_call(w, 1, do_send, &s2, true);
    CHECK_INT(s2.rc, WA_OK);
    CHECK(wait_for(&ev.messages[0], 1, 20000));
    wa_worker_call(w, 0, do_take, &t, true);
    CHECK(t.got);
    CHECK_STR(t.text, "hi A, B here");

    /* B's phone -> A */
    int before = ev.messages[0];
    CHECK_INT(sim_proc_admin(&simp, "/admin/send",
                             "{\"phone\":\"15550000012\",\"to\":\"15550000011@s.whatsapp.net\","
                             "\"text\":\"from Bob's phone\"}",
                             NULL),
              200);
    CHECK(wait_for(&ev.messages[0], before + 1, 20000));
    /* A may get B's engine's own-device copy first or not at all; find the phone's text */
    bool found = false;
    for (int i = 0; i < 4 && !found; i++) {
        wa_worker_call(w, 0, do_take, &t, true);
        found = t.got && strcmp(t.text, "from Bob's phone") == 0;
    }
    CHECK(found);
    if (ev.errors) fprintf(stderr, "last error: %s\n", ev.last_error);

    wa_worker_free(w);
    for (int i = 0; i < 2; i++) {
        wa_client_free(c[i]);
        stores[i].destroy(stores[i].ctx);
    }
    wa_net_free(net);
    wa_crypto_free(crypto);
    wb_buf_free(&out);
    sim_proc_stop(&simp);
    curl_global_cleanup();
    return CHECK_DONE();
}
