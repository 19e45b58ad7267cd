/*
 * tests/unit/engine_tool.c - one of our engines as a process, for Node tests that put it next to
 * unmodified Baileys (tests/interop/engine_baileys_chat.mjs).
 *
 *   engine_tool WS_URL ADMIN_URL ROOT_HEX PHONE
 * It pairs by QR with the account PHONE (the simulated phone scans through ADMIN_URL), then
 * prints one JSON line per event ({"event":"ready"}, {"event":"message","id","sender","text"},
 * {"event":"sent","id"}, {"event":"receipt","text"}, {"event":"error","text"}) and reads one JSON
 * command per line: {"op":"send","to":JID,"text":...} -> {"event":"sending","rc":0,"id":...};
 * {"op":"forget_session","address":"name:device"} (to break a session on purpose) ->
 * {"event":"forgot","rc":0}.
 */
#include "sim_proc.h"
#include "wa/message.h"
#include "wa/store_mem.h"
#include "wa/worker.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static sim_proc sim; /* only its URLs: the process belongs to the Node test */
static const char *phone;

static void emit(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    pthread_mutex_lock(&out_lock);
    puts(s);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    free(s);
    cJSON_Delete(o);
}

static void on_event(void *user, int login, const wa_event *e)
{
    wa_client *c = user;
    cJSON *o = cJSON_CreateObject();
    switch (e->type) {
    case WA_EV_QR: {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "phone", phone);
        cJSON_AddStringToObject(req, "qr", e->text);
        char *body = cJSON_PrintUnformatted(req);
        long st = sim_proc_admin(&sim, "/admin/scan", body, NULL);
        free(body);
        cJSON_Delete(req);
        cJSON_AddStringToObject(o, "event", "qr");
        cJSON_AddNumberToObject(o, "scan_status", (double)st);
        break;
    }
    case WA_EV_READY: cJSON_AddStringToObject(o, "event", "ready"); break;
    case WA_EV_SENT:
        cJSON_AddStringToObject(o, "event", "sent");
        cJSON_AddStringToObject(o, "id", e->text);
        break;
    case WA_EV_RECEIPT:
        cJSON_AddStringToObject(o, "event", "receipt");
        cJSON_AddStringToObject(o, "text", e->text);
        break;
    case WA_EV_ERROR:
    case WA_EV_SEND_FAILED:
        cJSON_AddStringToObject(o, "event", "error");
        cJSON_AddStringToObject(o, "text", e->text);
        break;
    case WA_EV_MESSAGE: {
        /* on the worker thread, right after the client raised it: take it now */
        wa_received r;
        while (wa_client_next_message(c, &r)) {
            const uint8_t *t;
            size_t len;
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "event", "message");
            cJSON_AddStringToObject(m, "id", r.id);
            cJSON_AddStringToObject(m, "sender", r.sender);
            if (r.nparts && wa_message_get_text(r.parts[0].plaintext.data, r.parts[0].plaintext.len,
                                                &t, &len, NULL, NULL) == WA_OK) {
                char *text = strndup((const char *)t, len);
                cJSON_AddStringToObject(m, "text", text ? text : "");
                free(text);
            }
            wa_received_free(&r);
            emit(m);
        }
        cJSON_Delete(o);
        return;
    }
    default: cJSON_Delete(o); return;
    }
    emit(o);
}

typedef struct send_req {
    char to[128], text[4096], id[32];
    int rc;
} send_req;

typedef struct forget_req {
    wa_store *store;
    char address[128];
    int rc;
} forget_req;

static void do_forget(wa_client *c, void *arg)
{
    forget_req *f = arg;
    f->rc = f->store->session_delete(f->store->ctx, f->address);
}

static void do_send(wa_client *c, void *arg)
{
    send_req *r = arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r->rc = wa_client_send_text(c, r->to, r->text, r->id,
                                (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: engine_tool WS_URL ADMIN_URL ROOT_HEX PHONE\n");
        return 2;
    }
    snprintf(sim.ws_url, sizeof(sim.ws_url), "%s", argv[1]);
    snprintf(sim.admin_url, sizeof(sim.admin_url), "%s", argv[2]);
    size_t rl = 0;
    if (!wb_hex_decode(argv[3], strlen(argv[3]), sim.root, 32, &rl) || rl != 32) return 2;
    phone = argv[4];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    wa_crypto *crypto = wa_crypto_new(NULL, 0);
    wa_store store;
    wa_store_mem_new(&store);
    wa_client_config cfg = {
        .store = &store, .crypto = crypto, .trust_root = sim.root, .push_name = "Engine"};
    wa_client *c = wa_client_new(&cfg, NULL);
    wa_net *net = wa_net_new(NULL);
    wa_worker *w = wa_worker_new(net, on_event, NULL);
    if (!c || !net || !w) return 1;
    /* the event callback needs the client: re-create the worker with it as user pointer */
    wa_worker_free(w);
    w = wa_worker_new(net, on_event, c);
    wa_worker_add(w, c, sim.ws_url);
    static char line[8192];
    while (fgets(line, sizeof(line), stdin)) {
        cJSON *cmd = cJSON_Parse(line);
        const cJSON *op = cmd ? cJSON_GetObjectItem(cmd, "op") : NULL;
        if (cJSON_IsString(op) && strcmp(op->valuestring, "send") == 0) {
            send_req r = {.rc = -1};
            const cJSON *to = cJSON_GetObjectItem(cmd, "to"),
                        *text = cJSON_GetObjectItem(cmd, "text");
            if (cJSON_IsString(to) && cJSON_IsString(text)) {
                snprintf(r.to, sizeof(r.to), "%s", to->valuestring);
                snprintf(r.text, sizeof(r.text), "%s", text->valuestring);
                wa_worker_call(w, 0, do_send, &r, true);
            }
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "event", "sending");
            cJSON_AddNumberToObject(o, "rc", r.rc);
            cJSON_AddStringToObject(o, "id", r.id);
            emit(o);
        }
        if (cJSON_IsString(op) && strcmp(op->valuestring, "forget_session") == 0) {
            forget_req f = {.store = &store, .rc = -1};
            const cJSON *addr = cJSON_GetObjectItem(cmd, "address");
            if (cJSON_IsString(addr)) {
                snprintf(f.address, sizeof(f.address), "%s", addr->valuestring);
                wa_worker_call(w, 0, do_forget, &f, true);
            }
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "event", "forgot");
            cJSON_AddNumberToObject(o, "rc", f.rc);
            emit(o);
        }
        cJSON_Delete(cmd);
    }
    wa_worker_free(w);
    wa_client_free(c);
    wa_net_free(net);
    store.destroy(store.ctx);
    wa_crypto_free(crypto);
    curl_global_cleanup();
    return 0;
}
