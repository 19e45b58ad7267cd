/*
 * tests/db/engine_crash_tool.c - one "bridge process" for test_engine_crash: our engine (wa_client
 * on a wa_worker over wa_net) with its store in PostgreSQL, and a minimal bridge that takes the
 * received texts into a table of its own, in the same database.
 *
 * The engine is not changed: the tool hands it a wa_store that forwards every call to the
 * PostgreSQL store (db_store_new) and only watches begin / event_buffer_save / commit / rollback,
 * so it can SIGKILL the whole process at a chosen point of a chosen message:
 *   before_commit   the decrypted text and the advanced session are written, COMMIT not sent
 *   after_commit    COMMIT succeeded; the receipt is not built yet (the engine builds it after)
 *   after_ack       the message reached the bridge callback and the server has its receipt
 *                   (wa-sim's queue for this device is empty), the bridge did not take it yet
 *   after_bridge    bridged and acked
 * and, without a kill, two duplicate deliveries: dup_slow / dup_fast make wa-sim drop the
 * connection right after the COMMIT, so the receipt is lost and the stanza comes again at the next
 * login; with dup_slow the bridge holds its messages until that login (a slow bridge: the row is
 * still in the event buffer when the redelivery comes), with dup_fast it bridges at once (the row
 * is gone when the redelivery comes).
 *
 * The bridge (on the worker thread, in the event callback): for each received text, one SQL
 * transaction on the store's connection inserts (chat, message id, text) into crash_bridged,
 * unique per (login, chat, id), and deletes the message's event-buffer row (wa/recv.h: "deleted by
 * the bridge once the Matrix event id is stored"). At each login (WA_EV_READY) it first takes what
 * the engine queued, then every row still in the event buffer (committed but never bridged).
 *
 *   engine_crash_tool CONNINFO LOGIN_ID WS_URL ADMIN_URL ROOT_HEX OUR_PHONE PEER_PHONE
 * stdin, one command a line:     stdout, one event a line:
 *   arm POINT TEXT  -> armed       ready JID
 *   send TEXT       -> sent ID     bridged TEXT ORIGIN   (ORIGIN: live, buffer or drain)
 *   quit                           dup TEXT ORIGIN       (already bridged: not taken again)
 *                                  dying POINT TEXT
 *                                  error CODE TEXT
 */
#include "db/store_pg.h"
#include "sim_proc.h"
#include "wa/message.h"
#include "wa/worker.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define TEXT_MAX 256 /* bytes of a test message's text, with the NUL */

typedef enum kill_point {
    KP_NONE = 0,
    KP_BEFORE_COMMIT,
    KP_AFTER_COMMIT,
    KP_AFTER_ACK,
    KP_AFTER_BRIDGE,
    KP_DUP_SLOW,
    KP_DUP_FAST,
} kill_point;

static const char *const POINT_NAMES[] = {
    "none", "before_commit", "after_commit", "after_ack", "after_bridge", "dup_slow", "dup_fast"};

static struct tool {
    wa_store pg;      /* the PostgreSQL store */
    wa_store watched; /* pg's functions with four of them watched (same ctx) */
    db_conn *conn;    /* the store's connection: the worker thread only */
    int64_t login_id;
    wa_worker *worker;
    wa_client *client;
    sim_proc sim; /* only admin_url is used */
    char our_phone[32], peer_jid[64];
    char our_jid[WA_JID_STR_MAX]; /* our device JID, once paired */

    pthread_mutex_t lock; /* guards the fields below and stdout */
    kill_point armed;     /* the point armed for the message whose text is armed_text */
    char armed_text[TEXT_MAX];
    bool hold; /* dup_slow: bridge nothing until the next login */
    /* worker thread only: the open store transaction stored the armed message */
    bool tx_has_armed;
} T = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&T.lock);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&T.lock);
    va_end(ap);
}

/* Copies the text of a Message protobuf into out ("" when it has none). */
static void text_of(const uint8_t *p, size_t len, char *out, size_t cap)
{
    const uint8_t *t;
    size_t tl;
    out[0] = '\0';
    if (wa_message_get_text(p, len, &t, &tl, NULL, NULL) == WA_OK)
        snprintf(out, cap, "%.*s", (int)tl, (const char *)t);
}

/* The point armed for this text, disarming it (KP_NONE when none). */
static kill_point take_armed(const char *text, bool disarm)
{
    pthread_mutex_lock(&T.lock);
    kill_point p = T.armed != KP_NONE && strcmp(T.armed_text, text) == 0 ? T.armed : KP_NONE;
    if (p != KP_NONE && disarm) T.armed = KP_NONE;
    pthread_mutex_unlock(&T.lock);
    return p;
}

static void die(kill_point p, const char *text)
{
    say("dying %s %s", POINT_NAMES[p], text);
    raise(SIGKILL);
}

/* --- wa-sim's view of our device --- */

/* Our device's entry in /admin/state: online and queued; false when it cannot be read. */
static bool sim_device_state(bool *online, long *queued)
{
    wa_jid me;
    if (wa_jid_parse_cstr(T.our_jid, &me) != WA_OK) return false;
    wb_buf out;
    wb_buf_init(&out);
    bool found = false;
    if (sim_proc_admin(&T.sim, "/admin/state", NULL, &out) == 200) {
        cJSON *j = cJSON_Parse((const char *)out.data);
        const cJSON *acct, *dev;
        cJSON_ArrayForEach(acct, cJSON_GetObjectItem(j, "accounts"))
        {
            const cJSON *phone = cJSON_GetObjectItem(acct, "phone");
            if (!cJSON_IsString(phone) || strcmp(phone->valuestring, T.our_phone) != 0) continue;
            cJSON_ArrayForEach(dev, cJSON_GetObjectItem(acct, "devices"))
            {
                if (cJSON_GetNumberValue(cJSON_GetObjectItem(dev, "id")) != me.device) continue;
                *online = cJSON_IsTrue(cJSON_GetObjectItem(dev, "online"));
                *queued = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(dev, "queued"));
                found = true;
            }
        }
        cJSON_Delete(j);
    }
    wb_buf_free(&out);
    return found;
}

/* Waits (blocking the worker: nothing else of ours runs meanwhile) until wa-sim has nothing
 * queued for us, i.e. our receipts reached it. */
static void wait_acked(void)
{
    for (int i = 0; i < 1000; i++) {
        bool online;
        long queued;
        if (sim_device_state(&online, &queued) && queued == 0) return;
        usleep(10000);
    }
    say("error 0 wa-sim still has stanzas queued for us after 10 s");
}

/* Makes wa-sim drop our connection and waits until it has forgotten it, so what we write next on
 * it is lost. */
static void kick_and_wait(void)
{
    char body[96];
    snprintf(body, sizeof(body), "{\"phone\":\"%s\"}", T.our_phone);
    if (sim_proc_admin(&T.sim, "/admin/kick", body, NULL) != 200) say("error 0 kick refused");
    for (int i = 0; i < 1000; i++) {
        bool online = true;
        long queued;
        if (sim_device_state(&online, &queued) && !online) return;
        usleep(10000);
    }
    say("error 0 wa-sim still shows us online 10 s after the kick");
}

/* --- the watched store --- */

static int w_begin(void *ctx)
{
    T.tx_has_armed = false;
    return T.pg.begin(ctx);
}

static int w_rollback(void *ctx)
{
    T.tx_has_armed = false;
    return T.pg.rollback(ctx);
}

static int w_event_buffer_save(void *ctx, const wa_buffered_event *ev)
{
    char text[TEXT_MAX];
    text_of(ev->plaintext, ev->plaintext_len, text, sizeof(text));
    kill_point p = take_armed(text, false);
    if (p == KP_BEFORE_COMMIT || p == KP_AFTER_COMMIT || p == KP_DUP_SLOW || p == KP_DUP_FAST)
        T.tx_has_armed = true;
    return T.pg.event_buffer_save(ctx, ev);
}

static int w_commit(void *ctx)
{
    kill_point p = KP_NONE;
    if (T.tx_has_armed) {
        pthread_mutex_lock(&T.lock);
        p = T.armed;
        T.armed = KP_NONE;
        char text[TEXT_MAX];
        snprintf(text, sizeof(text), "%s", T.armed_text);
        pthread_mutex_unlock(&T.lock);
        T.tx_has_armed = false;
        if (p == KP_BEFORE_COMMIT) die(p, text); /* the open transaction dies with us */
        int rc = T.pg.commit(ctx);
        if (rc != WA_STORE_OK) return rc;
        if (p == KP_AFTER_COMMIT) die(p, text);
        if (p == KP_DUP_SLOW || p == KP_DUP_FAST) {
            if (p == KP_DUP_SLOW) {
                pthread_mutex_lock(&T.lock);
                T.hold = true;
                pthread_mutex_unlock(&T.lock);
            }
            kick_and_wait(); /* the receipt the engine writes next is lost */
        }
        return rc;
    }
    return T.pg.commit(ctx);
}

/* --- the bridge --- */

static const db_stmt ST_BRIDGE = {
    "crash_bridge",
    "INSERT INTO crash_bridged (login_id, chat, msg_id, body, origin) VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (login_id, chat, msg_id) DO NOTHING",
    0};

typedef struct buffered {
    uint8_t hash[WA_KEY_LEN];
    char chat[WA_ADDRESS_MAX];
    char sender[WA_ADDRESS_MAX];
    char id[128];
    char text[TEXT_MAX];
} buffered;

typedef struct buffered_list {
    buffered *items; /* malloc'd */
    size_t n, cap;
    const char *only_id;     /* when not NULL: rows of this message id only */
    const char *only_sender; /* with only_id */
} buffered_list;

static int collect(void *arg, const wa_buffered_event *ev)
{
    buffered_list *l = arg;
    if (l->only_id &&
        (strcmp(ev->message_id, l->only_id) != 0 || strcmp(ev->sender_jid, l->only_sender) != 0))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        buffered *grown = realloc(l->items, cap * sizeof(*grown));
        if (!grown) return -1;
        l->items = grown;
        l->cap = cap;
    }
    buffered *b = &l->items[l->n++];
    memcpy(b->hash, ev->ciphertext_hash, WA_KEY_LEN);
    snprintf(b->chat, sizeof(b->chat), "%s", ev->chat_jid);
    snprintf(b->sender, sizeof(b->sender), "%s", ev->sender_jid);
    snprintf(b->id, sizeof(b->id), "%s", ev->message_id);
    text_of(ev->plaintext, ev->plaintext_len, b->text, sizeof(b->text));
    return 0;
}

/* One bridging transaction: the text into crash_bridged, the buffer rows of the message out. */
static void bridge_one(const char *chat, const char *sender, const char *id, const char *text,
                       const char *origin)
{
    wa_store *st = &T.pg;
    buffered_list rows = {.only_id = id, .only_sender = sender};
    db_param p[5] = {db_p_int(T.login_id), db_p_text(chat), db_p_text(id), db_p_text(text),
                     db_p_text(origin)};
    db_result *r = NULL;
    int rc = st->begin(st->ctx);
    if (rc == WA_STORE_OK) rc = db_exec(T.conn, &ST_BRIDGE, p, 5, &r) == DB_OK ? 0 : -1;
    int64_t inserted = r ? db_result_affected(r) : 0;
    if (r) db_result_free(r);
    if (rc == 0) rc = st->event_buffer_foreach(st->ctx, collect, &rows);
    for (size_t i = 0; rc == 0 && i < rows.n; i++)
        rc = st->event_buffer_delete(st->ctx, rows.items[i].hash) >= 0 ? 0 : -1;
    if (rc == 0) rc = st->commit(st->ctx);
    if (rc != 0) {
        st->rollback(st->ctx);
        say("error %d bridging %s failed: %s", rc, text, st->last_error(st->ctx));
    } else {
        say("%s %s %s", inserted ? "bridged" : "dup", text, origin);
    }
    free(rows.items);
}

/* Takes what the engine queued (unless held). */
static void bridge_inbox(void)
{
    wa_received r;
    while (wa_client_next_message(T.client, &r)) {
        for (size_t i = 0; i < r.nparts; i++) {
            if (r.parts[i].error != WA_OK) continue;
            char text[TEXT_MAX];
            text_of(r.parts[i].plaintext.data, r.parts[i].plaintext.len, text, sizeof(text));
            kill_point p = take_armed(text, false);
            if (p == KP_AFTER_ACK) {
                wait_acked();
                die(p, text);
            }
            bridge_one(r.chat, r.sender, r.id, text, r.parts[i].from_buffer ? "buffer" : "live");
            if (p == KP_AFTER_BRIDGE) {
                wait_acked();
                die(p, text);
            }
        }
        wa_received_free(&r);
    }
}

/* Bridges every row left in the event buffer: committed, but the process died before its bridge
 * took it. */
static void bridge_leftovers(void)
{
    buffered_list rows = {0};
    if (T.pg.event_buffer_foreach(T.pg.ctx, collect, &rows) != WA_STORE_OK)
        say("error 0 event_buffer_foreach: %s", T.pg.last_error(T.pg.ctx));
    for (size_t i = 0; i < rows.n; i++)
        bridge_one(rows.items[i].chat, rows.items[i].sender, rows.items[i].id, rows.items[i].text,
                   "drain");
    free(rows.items);
}

/* --- the engine's events (worker thread) --- */

static void on_event(void *user, int login, const wa_event *e)
{
    switch (e->type) {
    case WA_EV_QR: {
        char body[1024];
        snprintf(body, sizeof(body), "{\"phone\":\"%s\",\"qr\":\"%s\"}", T.our_phone, e->text);
        if (sim_proc_admin(&T.sim, "/admin/scan", body, NULL) != 200) say("error 0 scan refused");
        break;
    }
    case WA_EV_READY:
        snprintf(T.our_jid, sizeof(T.our_jid), "%s", wa_client_jid(T.client));
        pthread_mutex_lock(&T.lock);
        T.hold = false;
        pthread_mutex_unlock(&T.lock);
        bridge_inbox();
        bridge_leftovers();
        say("ready %s", T.our_jid);
        break;
    case WA_EV_MESSAGE: {
        pthread_mutex_lock(&T.lock);
        bool hold = T.hold;
        pthread_mutex_unlock(&T.lock);
        if (!hold) bridge_inbox();
        break;
    }
    case WA_EV_SENT: say("sent %s", e->text); break;
    case WA_EV_SEND_FAILED: say("error 0 send failed %s", e->text); break;
    case WA_EV_ERROR: say("error %d %s", e->code, e->text); break;
    case WA_EV_LOGGED_OUT: say("error %d logged out", e->code); break;
    default: break;
    }
}

typedef struct send_req {
    char text[TEXT_MAX];
    int rc;
} send_req;

static void do_send(wa_client *c, void *arg)
{
    send_req *r = arg;
    char id[64];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r->rc = wa_client_send_text(c, T.peer_jid, r->text, id,
                                (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr,
                "usage: %s CONNINFO LOGIN_ID WS_URL ADMIN_URL ROOT_HEX OUR_PHONE "
                "PEER_PHONE\n",
                argv[0]);
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    T.login_id = strtoll(argv[2], NULL, 10);
    snprintf(T.sim.admin_url, sizeof(T.sim.admin_url), "%s", argv[4]);
    size_t root_len = 0;
    if (!wb_hex_decode(argv[5], strlen(argv[5]), T.sim.root, 32, &root_len) || root_len != 32)
        return 2;
    snprintf(T.our_phone, sizeof(T.our_phone), "%s", argv[6]);
    snprintf(T.peer_jid, sizeof(T.peer_jid), "%s@s.whatsapp.net", argv[7]);

    db_error err;
    db_conn_opts opts = {.reconnect_timeout_ms = 15000};
    if (db_conn_open(argv[1], &opts, &T.conn, &err) != DB_OK) {
        fprintf(stderr, "engine_crash_tool: %s\n", err.message);
        return 1;
    }
    if (db_store_new(T.conn, T.login_id, &T.pg) != WA_STORE_OK) return 1;
    T.watched = T.pg;
    T.watched.begin = w_begin;
    T.watched.commit = w_commit;
    T.watched.rollback = w_rollback;
    T.watched.event_buffer_save = w_event_buffer_save;

    wa_crypto *crypto = wa_crypto_new(NULL, 0);
    wa_client_config cfg = {
        .store = &T.watched, .crypto = crypto, .trust_root = T.sim.root, .push_name = "Crash Test"};
    int rc = 0;
    T.client = wa_client_new(&cfg, &rc);
    if (!T.client) {
        fprintf(stderr, "engine_crash_tool: wa_client_new: %d\n", rc);
        return 1;
    }
    wa_net *net = wa_net_new(NULL);
    T.worker = wa_worker_new(net, on_event, NULL);
    if (!net || !T.worker || wa_worker_add(T.worker, T.client, argv[3]) < 0) return 1;

    char line[512];
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, "arm ", 4) == 0) {
            char *point = line + 4, *text = strchr(point, ' ');
            if (!text) continue;
            *text++ = '\0';
            kill_point p = KP_NONE;
            for (int i = 1; i < (int)(sizeof(POINT_NAMES) / sizeof(POINT_NAMES[0])); i++)
                if (strcmp(point, POINT_NAMES[i]) == 0) p = (kill_point)i;
            pthread_mutex_lock(&T.lock);
            T.armed = p;
            snprintf(T.armed_text, sizeof(T.armed_text), "%.*s", TEXT_MAX - 1, text);
            pthread_mutex_unlock(&T.lock);
            say(p == KP_NONE ? "error 0 unknown point %s" : "armed %s", point);
        } else if (strncmp(line, "send ", 5) == 0) {
            send_req r = {.rc = -1};
            snprintf(r.text, sizeof(r.text), "%.*s", TEXT_MAX - 1, line + 5);
            wa_worker_call(T.worker, 0, do_send, &r, true);
            if (r.rc != WA_OK) say("error %d send %s", r.rc, r.text);
        } else if (strcmp(line, "quit") == 0) {
            break;
        }
    }
    wa_worker_free(T.worker);
    wa_client_free(T.client);
    wa_net_free(net);
    T.pg.destroy(T.pg.ctx);
    db_conn_close(T.conn);
    wa_crypto_free(crypto);
    curl_global_cleanup();
    return 0;
}
