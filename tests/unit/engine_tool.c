/*
 * tests/unit/engine_tool.c - one of our engines as a process, for Node tests that put it next to
 * unmodified Baileys (tests/interop/engine_baileys_chat.mjs).
 *
 *   engine_tool WS_URL ADMIN_URL ROOT_HEX PHONE
 * It pairs by QR with the account PHONE (the simulated phone scans through ADMIN_URL), then
 * prints one JSON line per event and reads one JSON command per line.
 *
 * Events: {"event":"connected","lid"}; {"event":"ready"}; {"event":"message","id","sender","chat",
 * "type","kind","text","mentions":[...],"reply_id","reply_sender","reply_text","target":{"id",
 * "remote_jid","from_me","participant"},"reaction","dest","unsupported","parts":[{"skmsg",
 * "skdm_only","error"}]} (wa_received_parse; "text" also for old readers); {"event":"sent","id"};
 * {"event":"send_failed","id"}; {"event":"receipt","text"}; {"event":"presence","text","ms"};
 * {"event":"chatstate","text"}; {"event":"error","text"}; {"event":"identity_change","jid","met",
 * "taken","announced"} (WA_EV_IDENTITY_CHANGE and wa_client_next_identity_change);
 * {"event":"group_result","req","op","code","group","error_text","info":{"jid","subject",
 * "addressing_mode","participants":[{"jid","phone_number","admin","superadmin"}]},
 * "participants":[{"jid","error"}],"invite_code","groups":[jid...]} (wa_client_next_group_result);
 * {"event":"group","group","author","changes":[{"type","participants":[jid...],"text"}]}
 * (wa_client_next_group_update; type: create, add, remove, leave, promote, demote, subject,
 * description, announce, locked, ephemeral, invite, delete, member_add_mode, unknown).
 *
 * Commands:
 *   {"op":"send","to":JID,"text":...[,"mentions":[JID...],"reply_id","reply_sender","reply_text"]}
 *       -> {"event":"sending","rc":0,"id":...}
 *   {"op":"edit","to","id","text"} / {"op":"react","to","id","emoji"[,"from_me","participant"]} /
 *   {"op":"revoke","to","id"}        -> {"event":"result","op":...,"rc":0,"id":...}
 *   {"op":"read","chat","ids":[...][,"sender","played":true]} / {"op":"presence","available":b} /
 *   {"op":"subscribe","jid"} / {"op":"chatstate","to","state":"composing|recording|paused"}
 *                                    -> {"event":"result","op":...,"rc":0}
 *   {"op":"forget_session","address":"name:device"} (to break a session on purpose) ->
 *       {"event":"forgot","rc":0}.
 *   Groups: {"op":"group_create","subject","participants":[JID...]} / {"op":"group_info","group"} /
 *   {"op":"group_participants","group","action":"add|remove|promote|demote","participants":[...]}
 *   / {"op":"group_leave","group"} -> {"event":"result","op":...,"rc":0,"req":N} (the answer
 *   comes as a group_result with that req); {"op":"group_send","group","text"} ->
 *   {"event":"result","op":"group_send","rc":0,"id":...}.
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

/* The parsed message (wa_received_parse) into the event object. */
static void add_parsed(cJSON *m, const wa_received *r)
{
    wa_msg p;
    int rc = wa_received_parse(r, &p);
    cJSON_AddNumberToObject(m, "parse_rc", rc);
    if (rc != WA_OK) return;
    cJSON_AddStringToObject(m, "kind", wa_msg_kind_name(p.kind));
    if (p.text) {
        cJSON_DeleteItemFromObject(m, "text");
        cJSON_AddStringToObject(m, "text", p.text);
    }
    cJSON *mentions = cJSON_AddArrayToObject(m, "mentions");
    for (size_t i = 0; i < p.n_mentions; i++)
        cJSON_AddItemToArray(mentions, cJSON_CreateString(p.mentions[i]));
    cJSON_AddStringToObject(m, "reply_id", p.reply_id);
    cJSON_AddStringToObject(m, "reply_sender", p.reply_sender);
    if (p.reply_text) cJSON_AddStringToObject(m, "reply_text", p.reply_text);
    cJSON *target = cJSON_AddObjectToObject(m, "target");
    cJSON_AddStringToObject(target, "id", p.target.id);
    cJSON_AddStringToObject(target, "remote_jid", p.target.remote_jid);
    cJSON_AddBoolToObject(target, "from_me", p.target.from_me);
    cJSON_AddStringToObject(target, "participant", p.target.participant);
    cJSON_AddStringToObject(m, "reaction", p.reaction);
    cJSON_AddStringToObject(m, "dest", p.dest_jid);
    cJSON_AddStringToObject(m, "unsupported", p.unsupported);
    wa_msg_free(&p);
}

static const char *change_name(wa_group_event_type t)
{
    static const char *const names[] = {
        "unknown", "create",    "add",     "remove",      "leave",
        "promote", "demote",    "subject", "description", "announce",
        "locked",  "ephemeral", "invite",  "delete",      "member_add_mode"};
    return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

static cJSON *info_json(const wa_group_info *g)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "jid", g->jid);
    cJSON_AddStringToObject(o, "subject", g->subject);
    cJSON_AddStringToObject(o, "addressing_mode", g->addressing_mode ? g->addressing_mode : "");
    cJSON *ps = cJSON_AddArrayToObject(o, "participants");
    for (size_t i = 0; i < g->nparticipants; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "jid", g->participants[i].jid);
        if (g->participants[i].phone_number)
            cJSON_AddStringToObject(p, "phone_number", g->participants[i].phone_number);
        cJSON_AddBoolToObject(p, "admin", g->participants[i].admin);
        cJSON_AddBoolToObject(p, "superadmin", g->participants[i].superadmin);
        cJSON_AddItemToArray(ps, p);
    }
    return o;
}

/* Every group answer and notification waiting in the client, one line each. */
static void emit_group(wa_client *c)
{
    wa_group_result r;
    while (wa_client_next_group_result(c, &r)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", "group_result");
        cJSON_AddNumberToObject(o, "req", r.req_id);
        cJSON_AddStringToObject(o, "op", wa_group_op_name(r.op));
        cJSON_AddNumberToObject(o, "code", r.code);
        cJSON_AddStringToObject(o, "group", r.group);
        cJSON_AddStringToObject(o, "error_text", r.error_text ? r.error_text : "");
        if (r.info) cJSON_AddItemToObject(o, "info", info_json(r.info));
        cJSON *ps = cJSON_AddArrayToObject(o, "participants");
        for (size_t i = 0; i < r.nparticipants; i++) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "jid", r.participants[i].jid);
            cJSON_AddNumberToObject(p, "error", r.participants[i].error);
            cJSON_AddItemToArray(ps, p);
        }
        cJSON *gs = cJSON_AddArrayToObject(o, "groups");
        for (size_t i = 0; i < r.ngroups; i++)
            cJSON_AddItemToArray(gs, cJSON_CreateString(r.groups[i].jid));
        if (r.invite_code) cJSON_AddStringToObject(o, "invite_code", r.invite_code);
        wa_group_result_free(&r);
        emit(o);
    }
    wa_group_update u;
    while (wa_client_next_group_update(c, &u)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", "group");
        cJSON_AddStringToObject(o, "group", u.event.group);
        cJSON_AddStringToObject(o, "author", u.event.author ? u.event.author : "");
        cJSON *chs = cJSON_AddArrayToObject(o, "changes");
        for (size_t i = 0; i < u.event.nchanges; i++) {
            const wa_group_change_event *ch = &u.event.changes[i];
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "type", change_name(ch->type));
            if (ch->text) cJSON_AddStringToObject(x, "text", ch->text);
            cJSON *ps = cJSON_AddArrayToObject(x, "participants");
            for (size_t k = 0; k < ch->nparticipants; k++)
                cJSON_AddItemToArray(ps, cJSON_CreateString(ch->participants[k].jid));
            cJSON_AddItemToArray(chs, x);
        }
        wa_group_update_free(&u);
        emit(o);
    }
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
    case WA_EV_CONNECTED:
        cJSON_AddStringToObject(o, "event", "connected");
        cJSON_AddStringToObject(o, "lid", e->text);
        break;
    case WA_EV_READY: cJSON_AddStringToObject(o, "event", "ready"); break;
    case WA_EV_GROUP_RESULT:
    case WA_EV_GROUP:
        cJSON_Delete(o);
        emit_group(c);
        return;
    case WA_EV_SENT:
        cJSON_AddStringToObject(o, "event", "sent");
        cJSON_AddStringToObject(o, "id", e->text);
        break;
    case WA_EV_RECEIPT:
        cJSON_AddStringToObject(o, "event", "receipt");
        cJSON_AddStringToObject(o, "text", e->text);
        break;
    case WA_EV_PRESENCE:
        cJSON_AddStringToObject(o, "event", "presence");
        cJSON_AddStringToObject(o, "text", e->text);
        cJSON_AddNumberToObject(o, "ms", (double)e->ms);
        break;
    case WA_EV_CHAT_STATE:
        cJSON_AddStringToObject(o, "event", "chatstate");
        cJSON_AddStringToObject(o, "text", e->text);
        break;
    case WA_EV_ERROR:
        cJSON_AddStringToObject(o, "event", "error");
        cJSON_AddStringToObject(o, "text", e->text);
        break;
    case WA_EV_SEND_FAILED:
        cJSON_AddStringToObject(o, "event", "send_failed");
        cJSON_AddStringToObject(o, "id", e->text);
        break;
    case WA_EV_IDENTITY_CHANGE: {
        wa_identity_change ch;
        cJSON_AddStringToObject(o, "event", "identity_change");
        cJSON_AddStringToObject(o, "jid", e->text);
        cJSON_AddBoolToObject(o, "met", e->code == 1);
        if (wa_client_next_identity_change(c, &ch)) {
            cJSON_AddStringToObject(o, "taken", ch.jid);
            cJSON_AddBoolToObject(o, "announced", ch.announced);
        }
        break;
    }
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
            cJSON_AddStringToObject(m, "chat", r.chat);
            cJSON_AddStringToObject(m, "type", r.type);
            if (r.nparts && wa_message_get_text(r.parts[0].plaintext.data, r.parts[0].plaintext.len,
                                                &t, &len, NULL, NULL) == WA_OK) {
                char *text = strndup((const char *)t, len);
                cJSON_AddStringToObject(m, "text", text ? text : "");
                free(text);
            }
            add_parsed(m, &r);
            cJSON *parts = cJSON_AddArrayToObject(m, "parts");
            for (size_t i = 0; i < r.nparts; i++) {
                cJSON *x = cJSON_CreateObject();
                cJSON_AddBoolToObject(x, "skmsg", r.parts[i].skmsg);
                cJSON_AddBoolToObject(x, "skdm_only", r.parts[i].skdm_only);
                cJSON_AddNumberToObject(x, "error", r.parts[i].error);
                cJSON_AddItemToArray(parts, x);
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

/* A command for the worker thread. */
typedef struct send_req {
    const cJSON *cmd; /* the command */
    const char *op;   /* its "op" */
    char id[32];      /* message id, for the sends */
    uint32_t req;     /* group calls: the request id */
    int rc;
} send_req;

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

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

/* send / edit / react / revoke: a wa_msg for wa_client_send_message. */
static int do_message(wa_client *c, send_req *r, int64_t now)
{
    const cJSON *cmd = r->cmd;
    const char *to = str_of(cmd, "to"), *text = str_of(cmd, "text"), *id = str_of(cmd, "id");
    const char *reply = str_of(cmd, "reply_id");
    const cJSON *mentions = cJSON_GetObjectItem(cmd, "mentions");
    wa_msg m;
    memset(&m, 0, sizeof(m));
    m.text = (char *)text;
    if (strcmp(r->op, "send") == 0) {
        m.kind = WA_MSG_TEXT;
    } else if (strcmp(r->op, "edit") == 0) {
        m.kind = WA_MSG_EDIT;
    } else if (strcmp(r->op, "react") == 0) {
        const char *emoji = str_of(cmd, "emoji"), *participant = str_of(cmd, "participant");
        m.kind = WA_MSG_REACTION;
        snprintf(m.reaction, sizeof(m.reaction), "%s", emoji ? emoji : "");
        m.target.from_me = cJSON_IsTrue(cJSON_GetObjectItem(cmd, "from_me"));
        if (participant)
            snprintf(m.target.participant, sizeof(m.target.participant), "%s", participant);
    } else {
        m.kind = WA_MSG_REVOKE;
        m.target.from_me = true;
    }
    if (id) snprintf(m.target.id, sizeof(m.target.id), "%s", id);
    if (reply) {
        const char *sender = str_of(cmd, "reply_sender");
        snprintf(m.reply_id, sizeof(m.reply_id), "%s", reply);
        snprintf(m.reply_sender, sizeof(m.reply_sender), "%s", sender ? sender : "");
        m.reply_text = (char *)str_of(cmd, "reply_text");
    }
    char *list[64];
    for (int i = 0; cJSON_IsArray(mentions) && i < cJSON_GetArraySize(mentions) && i < 64; i++) {
        const cJSON *j = cJSON_GetArrayItem(mentions, i);
        if (cJSON_IsString(j)) list[m.n_mentions++] = j->valuestring;
    }
    m.mentions = list;
    return to ? wa_client_send_message(c, to, &m, r->id, now) : WA_ERR_INVALID;
}

/* The strings of cmd[key] (at most max). */
static size_t strings_of(const cJSON *cmd, const char *key, const char **out, size_t max)
{
    const cJSON *arr = cJSON_GetObjectItem(cmd, key);
    size_t n = 0;
    for (int i = 0; cJSON_IsArray(arr) && i < cJSON_GetArraySize(arr) && n < max; i++) {
        const cJSON *j = cJSON_GetArrayItem(arr, i);
        if (cJSON_IsString(j)) out[n++] = j->valuestring;
    }
    return n;
}

/* group_*: the group calls, and a text to a group. */
static int do_group(wa_client *c, send_req *r, int64_t now)
{
    const cJSON *cmd = r->cmd;
    const char *group = str_of(cmd, "group");
    const char *list[64];
    size_t n = strings_of(cmd, "participants", list, 64);
    if (strcmp(r->op, "group_create") == 0)
        return wa_client_group_create(c, str_of(cmd, "subject"), list, n, &r->req);
    if (strcmp(r->op, "group_info") == 0) return wa_client_group_info(c, group, &r->req);
    if (strcmp(r->op, "group_leave") == 0) return wa_client_group_leave(c, group, &r->req);
    if (strcmp(r->op, "group_participants") == 0) {
        const char *action = str_of(cmd, "action");
        wa_group_change ch = !action                          ? WA_GROUP_ADD
                             : strcmp(action, "remove") == 0  ? WA_GROUP_REMOVE
                             : strcmp(action, "promote") == 0 ? WA_GROUP_PROMOTE
                             : strcmp(action, "demote") == 0  ? WA_GROUP_DEMOTE
                                                              : WA_GROUP_ADD;
        return wa_client_group_participants(c, group, ch, list, n, &r->req);
    }
    const char *text = str_of(cmd, "text");
    return group && text ? wa_client_send_text(c, group, text, r->id, now) : WA_ERR_INVALID;
}

static void do_send(wa_client *c, void *arg)
{
    send_req *r = arg;
    const cJSON *cmd = r->cmd;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (strcmp(r->op, "read") == 0) {
        const cJSON *ids = cJSON_GetObjectItem(cmd, "ids");
        const char *list[64];
        size_t n = 0;
        for (int i = 0; cJSON_IsArray(ids) && i < cJSON_GetArraySize(ids) && n < 64; i++) {
            const cJSON *j = cJSON_GetArrayItem(ids, i);
            if (cJSON_IsString(j)) list[n++] = j->valuestring;
        }
        r->rc = wa_client_mark_read(c, str_of(cmd, "chat"), str_of(cmd, "sender"), list, n,
                                    cJSON_IsTrue(cJSON_GetObjectItem(cmd, "played")),
                                    (uint64_t)time(NULL));
    } else if (strcmp(r->op, "presence") == 0) {
        r->rc = wa_client_send_presence(c, cJSON_IsTrue(cJSON_GetObjectItem(cmd, "available")));
    } else if (strcmp(r->op, "subscribe") == 0) {
        r->rc = wa_client_subscribe_presence(c, str_of(cmd, "jid"));
    } else if (strcmp(r->op, "chatstate") == 0) {
        const char *st = str_of(cmd, "state");
        wa_chat_state cs = st && strcmp(st, "recording") == 0 ? WA_CHAT_RECORDING
                           : st && strcmp(st, "paused") == 0  ? WA_CHAT_PAUSED
                                                              : WA_CHAT_COMPOSING;
        const char *to = str_of(cmd, "to");
        r->rc = to ? wa_client_send_chat_state(c, to, cs) : WA_ERR_INVALID;
    } else if (strncmp(r->op, "group_", 6) == 0) {
        r->rc = do_group(c, r, now);
    } else {
        r->rc = do_message(c, r, now);
    }
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
        static const char *const ops[] = {"send",       "edit",       "react",
                                          "revoke",     "read",       "presence",
                                          "subscribe",  "chatstate",  "group_create",
                                          "group_info", "group_send", "group_participants",
                                          "group_leave"};
        for (size_t i = 0; cJSON_IsString(op) && i < sizeof(ops) / sizeof(ops[0]); i++) {
            if (strcmp(op->valuestring, ops[i]) != 0) continue;
            send_req r = {.cmd = cmd, .op = ops[i], .rc = -1};
            wa_worker_call(w, 0, do_send, &r, true);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "event", i == 0 ? "sending" : "result");
            cJSON_AddStringToObject(o, "op", ops[i]);
            cJSON_AddNumberToObject(o, "rc", r.rc);
            cJSON_AddStringToObject(o, "id", r.id);
            if (strncmp(ops[i], "group_", 6) == 0) cJSON_AddNumberToObject(o, "req", r.req);
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
