/*
 * tests/matrix/test_mx_push.c - hs-sim pushes to our appservice endpoint, end to end.
 *
 * A matrix-js-sdk user (tests/interop/hs_push_sender.mjs) creates a room on hs-sim and invites a
 * ghost. The invite reaches our dispatcher although the first three commits fail (hs-sim retries
 * the same txnId with backoff; the endpoint answered 500); the room's message sent before the
 * ghost joined is never pushed; after the ghost joins (through matrix/client), the user's message
 * arrives exactly once, in order after the join, followed by the typing EDU. A second hs-sim in
 * legacy mode (unprefixed paths, ?access_token=) pushes to the same endpoint.
 *   test_mx_push <hs-sim> <node> <hs_push_sender.mjs>
 */
#include <pthread.h>

#include "matrix/as_server.h"
#include "matrix/client.h"
#include "matrix/registration.h"
#include "mx_test.h"
#include "tests/unit/check.h"

#define DOMAIN "push.test"
#define GHOST  "@whatsapp_42:" DOMAIN

static struct {
    pthread_mutex_t mu;
    cJSON *events; /* array of dispatched events, in order */
} D = {PTHREAD_MUTEX_INITIALIZER, NULL};

static void on_events(void *ctx, const char *txn, const mx_event_batch *b)
{
    pthread_mutex_lock(&D.mu);
    for (size_t i = 0; i < b->count; i++)
        cJSON_AddItemToArray(D.events, cJSON_Parse(b->events[i].json));
    pthread_mutex_unlock(&D.mu);
}

/* Every commit the endpoint made, in order: (txnId, result). */
static struct {
    pthread_mutex_t mu;
    char ids[512][48];
    int rc[512];
    int n;
    mx_txn_store inner;
} C = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int recording_commit(void *ctx, const char *txn, const mx_event_batch *b)
{
    int rc = C.inner.commit(C.inner.ctx, txn, b);
    pthread_mutex_lock(&C.mu);
    if (C.n < 512) {
        snprintf(C.ids[C.n], sizeof C.ids[0], "%s", txn);
        C.rc[C.n++] = rc;
    }
    pthread_mutex_unlock(&C.mu);
    return rc;
}

/* Synapse's discipline: a new txnId only after the previous one was accepted, and a failed one
 * retried with the same id. */
static bool one_in_flight(void)
{
    bool ok = true;
    pthread_mutex_lock(&C.mu);
    for (int i = 1; i < C.n; i++) {
        bool same = strcmp(C.ids[i], C.ids[i - 1]) == 0;
        bool prev_ok = C.rc[i - 1] == MX_TXN_STORED || C.rc[i - 1] == MX_TXN_DUPLICATE;
        if (!same && !prev_ok) ok = false; /* moved on before success */
        if (same && prev_ok) ok = false;   /* repeated an accepted one */
    }
    pthread_mutex_unlock(&C.mu);
    return ok;
}

/* Index of the first dispatched event matching (type, field == value), or -1. */
static int find(const char *type, const char *field, const char *value, int *count)
{
    int idx = -1, n = 0, i = 0;
    pthread_mutex_lock(&D.mu);
    const cJSON *e;
    cJSON_ArrayForEach(e, D.events)
    {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(e, "type"));
        const cJSON *f = cJSON_GetObjectItem(e, field);
        if (!f) f = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "content"), field);
        const char *v = cJSON_GetStringValue(f);
        if (t && strcmp(t, type) == 0 && (!value || (v && strcmp(v, value) == 0))) {
            if (idx < 0) idx = i;
            n++;
        }
        i++;
    }
    pthread_mutex_unlock(&D.mu);
    if (count) *count = n;
    return idx;
}

static int wait_find(const char *type, const char *field, const char *value, long ms)
{
    int64_t end = t_now_ms() + ms;
    int idx;
    while ((idx = find(type, field, value, NULL)) < 0 && t_now_ms() < end)
        t_sleep_ms(20);
    return idx;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: test_mx_push <hs-sim> <node> <hs_push_sender.mjs>\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    D.events = cJSON_CreateArray();
    mx_mem_store *ms = mx_mem_store_new();
    C.inner = mx_mem_store_iface(ms);
    mx_txn_store store = {.commit = recording_commit};
    mx_as_handler h = {.on_events = on_events};
    mx_registration reg;
    char path[] = "/tmp/mxpush-regXXXXXX";
    mx_as_server *as = t_endpoint_with_registration(&store, &h, DOMAIN, &reg, path);
    CHECK(as != NULL);
    if (!as) return CHECK_DONE();

    const char *argv_hs[] = {argv[1], "--push-backoff-ms", "30", "0", DOMAIN, path, NULL};
    t_proc hs;
    CHECK(t_spawn(argv_hs, true, &hs));
    if (!hs.port) return CHECK_DONE();
    char hs_url[64];
    snprintf(hs_url, sizeof hs_url, "http://127.0.0.1:%u", hs.port);
    mx_client_config cc = {.hs_url = hs_url,
                           .as_token = reg.as_token,
                           .server_name = DOMAIN,
                           .bot_localpart = reg.sender_localpart,
                           .timeout_ms = 5000,
                           .backoff_initial_ms = 50};
    mx_client *c = mx_client_new(&cc);
    mx_error e;
    CHECK_INT(mx_client_startup(c, reg.id, 5000, &e), MX_OK);
    CHECK_INT(mx_client_ensure_registered(c, "whatsapp_42", &e), MX_OK);

    /* the first three commits fail: the homeserver must retry the same transaction */
    mx_mem_store_fail_next(ms, 3);
    const char *argv_node[] = {argv[2], argv[3], hs_url, GHOST, NULL};
    t_proc node;
    CHECK(t_spawn(argv_node, false, &node));
    char line[512], room[512] = "", sent[512] = "";
    int64_t node_deadline = t_now_ms() + 40000; /* the script's own watchdog is 40 s */
    for (int i = 0; i < 50 && !room[0]; i++) {
        if (!t_read_line(&node, line, sizeof line, (long)(node_deadline - t_now_ms()))) break;
        if (strncmp(line, "@@ room ", 8) == 0) snprintf(room, sizeof room, "%s", line + 8);
    }
    CHECK(room[0] == '!');

    /* the invite of our ghost arrives (after 3 failed commits) */
    int inv = wait_find("m.room.member", "state_key", GHOST, 10000);
    CHECK(inv >= 0);
    mx_as_stats st;
    mx_as_server_stats(as, &st);
    CHECK_INT(st.txn_failed, 3);
    CHECK(mx_mem_store_commit_calls(ms) >= 4);
    /* the three failures and the success are the same transaction */
    pthread_mutex_lock(&C.mu);
    CHECK(C.n >= 4);
    if (C.n >= 4) {
        for (int k = 0; k < 3; k++)
            CHECK_INT(C.rc[k], MX_ERR_STORE);
        CHECK_INT(C.rc[3], MX_TXN_STORED);
        CHECK_STR(C.ids[1], C.ids[0]);
        CHECK_STR(C.ids[2], C.ids[0]);
        CHECK_STR(C.ids[3], C.ids[0]);
    }
    pthread_mutex_unlock(&C.mu);

    /* join as the ghost; then the js user's message arrives once */
    CHECK_INT(mx_client_join(c, GHOST, room, NULL, &e), MX_OK);
    for (int i = 0; i < 50 && !sent[0]; i++) {
        if (!t_read_line(&node, line, sizeof line, (long)(node_deadline - t_now_ms()))) break;
        if (strncmp(line, "@@ sent ", 8) == 0) snprintf(sent, sizeof sent, "%s", line + 8);
    }
    CHECK(sent[0] == '$');
    CHECK_INT(t_wait(&node, 10000), 0);
    int msg = wait_find("m.room.message", "event_id", sent, 10000);
    int typing = wait_find("m.typing", "room_id", room, 5000);
    t_sleep_ms(300); /* time for a duplicate to show up, if any */
    int copies = 0;
    find("m.room.message", "event_id", sent, &copies);
    CHECK_INT(copies, 1);
    CHECK_INT(find("m.room.message", "body", "hello from js", NULL), msg);
    /* the message sent before any ghost joined was not pushed */
    CHECK_INT(find("m.room.message", "body", "before-join", NULL), -1);
    /* order: invite, then the ghost's join, then the message */
    int join = -1, i = 0;
    pthread_mutex_lock(&D.mu);
    const cJSON *ev;
    cJSON_ArrayForEach(ev, D.events)
    {
        const char *m = cJSON_GetStringValue(
            cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "content"), "membership"));
        const char *sk = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "state_key"));
        if (join < 0 && m && sk && strcmp(m, "join") == 0 && strcmp(sk, GHOST) == 0) join = i;
        i++;
    }
    pthread_mutex_unlock(&D.mu);
    CHECK(inv >= 0 && join > inv && msg > join);
    CHECK(typing > msg);
    /* every event the store holds was handed over, and vice versa */
    pthread_mutex_lock(&D.mu);
    CHECK_INT(mx_mem_store_event_count(ms), (size_t)cJSON_GetArraySize(D.events));
    pthread_mutex_unlock(&D.mu);
    CHECK(t_stat(hs.port, "push_attempts") >= t_stat(hs.port, "push_ok") + 3);
    CHECK(t_stat(hs.port, "push_queued") == 0);
    CHECK(one_in_flight());
    CHECK_INT(t_stop(&hs), 0);

    /* legacy homeserver: unprefixed paths with ?access_token= */
    const char *argv_legacy[] = {
        argv[1], "--legacy-push", "--push-backoff-ms", "30", "0", DOMAIN, path, NULL};
    t_proc old;
    CHECK(t_spawn(argv_legacy, true, &old));
    snprintf(hs_url, sizeof hs_url, "http://127.0.0.1:%u", old.port);
    mx_client *c2 = mx_client_new(&cc);
    mx_client_free(c2);
    cc.hs_url = hs_url;
    c2 = mx_client_new(&cc);
    CHECK_INT(mx_client_wait_versions(c2, 5000, NULL, &e), MX_OK);
    char *r2 = NULL, *ev_id = NULL;
    CHECK_INT(mx_client_create_room(c2, NULL, NULL, &r2, &e), MX_OK);
    cJSON *content = cJSON_Parse("{\"msgtype\":\"m.notice\",\"body\":\"legacy path\"}");
    CHECK_INT(mx_client_send(c2, NULL, r2, "m.room.message", content, NULL, 0, &ev_id, &e), MX_OK);
    cJSON_Delete(content);
    CHECK(ev_id && wait_find("m.room.message", "event_id", ev_id, 10000) >= 0);
    free(r2);
    free(ev_id);
    mx_client_free(c2);
    CHECK_INT(t_stop(&old), 0);

    mx_client_free(c);
    mx_as_server_stop(as);
    mx_mem_store_free(ms);
    unlink(path);
    mx_registration_free(&reg);
    cJSON_Delete(D.events);
    curl_global_cleanup();
    return CHECK_DONE();
}
