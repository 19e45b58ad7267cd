/*
 * tests/sim/wa-server/main.c - wa-sim: the WhatsApp server simulator process.
 *
 * One libwebsockets service thread serves WhatsApp Web clients on ws://127.0.0.1:PORT/ws/chat; a
 * libmicrohttpd thread serves the admin API that tests and the demo use. Both take the simulator's
 * lock (sim.h) around every call into the protocol logic; the admin thread wakes the socket thread
 * with lws_cancel_service when it queued output.
 *
 *   wa-sim [--port N] [--admin-port N] [--seed TEXT] [--time UNIX] [--verbose]
 *          [--exit-on-eof] [--account PHONE[:LID[:NAME]]]...
 * Prints one JSON line when ready: {"ws":..., "admin":..., "root":hex}. Port 0 picks a free port.
 * --exit-on-eof: stop when standard input reaches end of file. A test that starts wa-sim with a
 * pipe as its stdin gets it stopped however the test ends, even by SIGKILL; otherwise a leftover
 * wa-sim keeps the test's inherited stderr open and ctest waits for it until its timeout.
 *
 * Admin API (JSON bodies):
 *   GET  /admin/state                       accounts, devices (online, prekeys, queued), the root
 *   GET  /admin/messages?phone=P[&from=K]   what the phone of P received (from its K-th message
 *                                           on, 0 = the first): {"messages":[{sender,
 *                                           chat, id, text, t, own, failed, kind, target,
 *                                           rx_us}]} (kind:
 *                                           text, edit, reaction, revoke, unsupported, none;
 *                                           text: an edit's new text, a reaction's emoji;
 *                                           target: the id an edit/reaction/revoke acts on;
 *                                           rx_us: CLOCK_MONOTONIC us when its frame arrived)
 *   POST /admin/accounts {phone,lid?,name?} add an account with a simulated primary phone
 *   POST /admin/scan {phone,qr}             the phone of `phone` scans a QR text
 *   POST /admin/pair-code {phone,code}      the user types the companion's pairing code on the
 *                                           phone
 *   POST /admin/send {phone,to,text}        the phone of `phone` sends a text to `to` (PN or LID
 *                                           user JID); answers {"id":..., "sent_us":...}
 *                                           (sent_us: CLOCK_MONOTONIC us when the stanza was put
 *                                           on the receivers' connections). Optional fields:
 *        mentions:[jid...], reply_id, reply_sender, reply_text   a text with mentions / a reply
 *        edit: id                           edits the phone's own message id to `text`
 *        react: id, emoji ("" removes), from_me (bool: the phone's own message), participant
 *        revoke: id                         deletes the phone's own message id for everyone
 *   POST /admin/read {phone,chat,ids[]}     the phone reads those messages of chat (user or group
 *                                           JID): its companions get <receipt type="read-self">
 *   POST /admin/stream-error {phone,device?,code}  send <stream:error code> and close
 *   POST /admin/kick {phone,device?}        close the device's connection without a word
 *   POST /admin/corrupt-next {phone,count?} flip a ciphertext byte in the next messages to the
 *                                           companions of phone (fault injection: retry receipts)
 *   POST /admin/restart                     drop every connection (state is kept)
 *   POST /admin/reregister {phone,announce?} the phone of P is registered anew: a new identity
 *                                           key, no sessions; announce (bool): its contacts get
 *                                           <notification type="encrypt"><identity/>
 *   POST /admin/quiet-devices {quiet}       fault: pairings and logouts are not announced to
 *                                           other clients (they learn of devices by phash)
 *   POST /admin/reuse-device-ids {reuse}    a new companion takes the lowest free device number
 *                                           (a re-paired device: same address, new identity)
 *   POST /admin/group-fault {mode}          fault on companions' participant calls (add, remove,
 *                                           promote, demote): "unanswered" (made, the answer
 *                                           never sent), "lost" (neither made nor answered),
 *                                           "none"
 *   Groups (sim_group.h; members are phone numbers or user JIDs):
 *   POST /admin/group/create {phone,subject,members[]}  the phone creates a group -> {"jid"}
 *   POST /admin/group/send {phone,group,text}           the phone sends a group text -> {"id"}
 *   POST /admin/group/participants {phone,group,action,members[]}  the phone (an admin) adds,
 *                                           removes, promotes or demotes -> {"results":[{jid,
 *                                           error}]} (error 0: done, 404 no account / not in,
 *                                           409 already in)
 *   POST /admin/group/setting {phone,group,setting}  the phone (an admin) sets locked, unlocked,
 *                                           announcement or not_announcement
 *   GET  /admin/group?jid=G                 the group: subject, members (phone, lid, admin),
 *                                           invite, last:{id, sender, skmsg hex}
 */
#include "sim.h"
#include "sim_group.h"

#include <cJSON.h>
#include <libwebsockets.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_BODY_MAX (64 * 1024)
#define HELLO_PAUSE_US 50000  /* Baileys 6 needs a short pause before the first stanza */
#define CLOSE_GRACE_US 300000 /* after a stream error, the client's time to close first */

static sim g_sim;
static struct lws_context *g_lws;
static volatile sig_atomic_t g_stop;

typedef struct session {
    sim_conn *conn;
    bool close_next; /* the last bytes were written: close at the next writeable */
} session;

static void want_write(sim_conn *c)
{
    if (c->out.len || c->state == SIM_CONN_CLOSING) lws_callback_on_writable(c->wsi);
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    session *ss = user;
    int rc = 0;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        pthread_mutex_lock(&g_sim.lock);
        ss->conn = sim_conn_new(&g_sim, wsi);
        ss->close_next = false;
        pthread_mutex_unlock(&g_sim.lock);
        return ss->conn ? 0 : -1;
    case LWS_CALLBACK_RECEIVE:
        if (!ss->conn) return -1;
        pthread_mutex_lock(&g_sim.lock);
        rc = sim_conn_receive(&g_sim, ss->conn, in, len);
        if (ss->conn->hello_pending) lws_set_timer_usecs(wsi, HELLO_PAUSE_US);
        /* a message or receipt may have gone to other connections too */
        for (sim_conn *c = g_sim.conns; c; c = c->next)
            want_write(c);
        pthread_mutex_unlock(&g_sim.lock);
        return rc < 0 ? -1 : 0;
    case LWS_CALLBACK_TIMER:
        if (!ss->conn || ss->close_next) return -1;
        pthread_mutex_lock(&g_sim.lock);
        sim_conn_timer(&g_sim, ss->conn);
        want_write(ss->conn);
        pthread_mutex_unlock(&g_sim.lock);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (!ss->conn) return -1;
        pthread_mutex_lock(&g_sim.lock);
        sim_conn *c = ss->conn;
        size_t n = c->out.len;
        unsigned char *buf = n ? malloc(LWS_PRE + n) : NULL;
        if (buf) memcpy(buf + LWS_PRE, c->out.data, n);
        c->out.len = 0;
        bool closing = c->state == SIM_CONN_CLOSING;
        pthread_mutex_unlock(&g_sim.lock);
        if (buf) {
            int w = lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_BINARY);
            free(buf);
            if (w < (int)n) return -1;
        }
        if (closing && !ss->close_next) {
            /* like the real server, give the client a moment to read a stream error and hang up
             * itself before we close (Baileys decodes frames asynchronously) */
            ss->close_next = true;
            lws_set_timer_usecs(wsi, CLOSE_GRACE_US);
        }
        return 0;
    }
    case LWS_CALLBACK_CLOSED:
        if (ss->conn) {
            pthread_mutex_lock(&g_sim.lock);
            sim_conn_free(&g_sim, ss->conn);
            ss->conn = NULL;
            /* its presence may have gone to subscribers: write on the other connections */
            for (sim_conn *c = g_sim.conns; c; c = c->next)
                want_write(c);
            pthread_mutex_unlock(&g_sim.lock);
        }
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        pthread_mutex_lock(&g_sim.lock);
        for (sim_conn *c = g_sim.conns; c; c = c->next)
            want_write(c);
        pthread_mutex_unlock(&g_sim.lock);
        return 0;
    default: return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"wa-chat", ws_callback, sizeof(session), 1 << 16, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* --- admin API --- */

typedef struct admin_req {
    char *body; /* accumulated POST body */
    size_t len; /* bytes in body */
    bool too_big;
} admin_req;

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *json)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned status, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    char *s = cJSON_PrintUnformatted(o);
    enum MHD_Result ret = reply(conn, status, s);
    free(s);
    cJSON_Delete(o);
    return ret;
}

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_int(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valueint : dflt;
}

/* The optional fields of /admin/send as a wa_msg (pointing into body; m->mentions is malloc'd).
 * False for a plain text. */
static bool admin_msg(const cJSON *body, wa_msg *m)
{
    memset(m, 0, sizeof(*m));
    const char *text = json_str(body, "text"), *edit = json_str(body, "edit");
    const char *react = json_str(body, "react"), *revoke = json_str(body, "revoke");
    const char *reply = json_str(body, "reply_id");
    const cJSON *mentions = cJSON_GetObjectItemCaseSensitive(body, "mentions");
    m->text = (char *)text;
    if (edit) {
        m->kind = WA_MSG_EDIT;
        snprintf(m->target.id, sizeof(m->target.id), "%s", edit);
    } else if (react) {
        const char *emoji = json_str(body, "emoji"), *participant = json_str(body, "participant");
        m->kind = WA_MSG_REACTION;
        snprintf(m->target.id, sizeof(m->target.id), "%s", react);
        snprintf(m->reaction, sizeof(m->reaction), "%s", emoji ? emoji : "");
        m->target.from_me = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "from_me"));
        if (participant)
            snprintf(m->target.participant, sizeof(m->target.participant), "%s", participant);
    } else if (revoke) {
        m->kind = WA_MSG_REVOKE;
        snprintf(m->target.id, sizeof(m->target.id), "%s", revoke);
        m->target.from_me = true;
    } else if (reply || cJSON_IsArray(mentions)) {
        m->kind = WA_MSG_TEXT;
    } else {
        return false;
    }
    if (reply) {
        const char *sender = json_str(body, "reply_sender");
        snprintf(m->reply_id, sizeof(m->reply_id), "%s", reply);
        snprintf(m->reply_sender, sizeof(m->reply_sender), "%s", sender ? sender : "");
        m->reply_text = (char *)json_str(body, "reply_text");
    }
    int n = cJSON_IsArray(mentions) ? cJSON_GetArraySize(mentions) : 0;
    if (n > 0 && (m->mentions = calloc((size_t)n, sizeof(char *)))) {
        for (int i = 0; i < n; i++) {
            const cJSON *j = cJSON_GetArrayItem(mentions, i);
            if (cJSON_IsString(j)) m->mentions[m->n_mentions++] = j->valuestring;
        }
    }
    return true;
}

static enum MHD_Result admin_post(struct MHD_Connection *conn, const char *url, cJSON *body)
{
    char err[160] = "";
    int rc = -1;
    pthread_mutex_lock(&g_sim.lock);
    if (strcmp(url, "/admin/accounts") == 0) {
        const char *phone = json_str(body, "phone");
        rc = phone && sim_account_add(&g_sim, phone, json_str(body, "lid"), json_str(body, "name"))
                 ? 0
                 : -1;
        if (rc) snprintf(err, sizeof(err), "cannot add account (digits only, unique)");
    } else if (strcmp(url, "/admin/scan") == 0) {
        const char *phone = json_str(body, "phone"), *qr = json_str(body, "qr");
        rc = phone && qr ? sim_admin_scan(&g_sim, phone, qr, err, sizeof(err)) : -1;
        if (!phone || !qr) snprintf(err, sizeof(err), "phone and qr are required");
    } else if (strcmp(url, "/admin/pair-code") == 0) {
        const char *phone = json_str(body, "phone"), *code = json_str(body, "code");
        rc = phone && code ? sim_admin_pair_code(&g_sim, phone, code, err, sizeof(err)) : -1;
        if (!phone || !code) snprintf(err, sizeof(err), "phone and code are required");
    } else if (strcmp(url, "/admin/stream-error") == 0 || strcmp(url, "/admin/kick") == 0) {
        const char *phone = json_str(body, "phone");
        const char *code = strcmp(url, "/admin/kick") == 0 ? "" : json_str(body, "code");
        rc = phone && code ? sim_admin_stream_error(&g_sim, phone, json_int(body, "device", -1),
                                                    code, err, sizeof(err))
                           : -1;
        if (!phone || !code) snprintf(err, sizeof(err), "phone (and code) are required");
    } else if (strcmp(url, "/admin/devices") == 0) {
        const char *phone = json_str(body, "phone"), *noise = json_str(body, "noise_pub");
        const char *ident = json_str(body, "identity_pub");
        uint8_t nk[32], ik[32];
        size_t n1 = 0, n2 = 0;
        if (phone && noise && ident && wb_hex_decode(noise, strlen(noise), nk, 32, &n1) &&
            wb_hex_decode(ident, strlen(ident), ik, 32, &n2) && n1 == 32 && n2 == 32) {
            int id = sim_admin_add_device(
                &g_sim, phone, nk, ik, (uint32_t)json_int(body, "prekeys", 812), err, sizeof(err));
            if (id > 0) {
                pthread_mutex_unlock(&g_sim.lock);
                char ok[32];
                snprintf(ok, sizeof(ok), "{\"id\":%d}", id);
                return reply(conn, MHD_HTTP_OK, ok);
            }
        } else {
            snprintf(err, sizeof(err), "phone, noise_pub and identity_pub (hex) are required");
        }
    } else if (strcmp(url, "/admin/send") == 0) {
        const char *phone = json_str(body, "phone"), *to = json_str(body, "to");
        const char *text = json_str(body, "text");
        char id[64];
        wa_msg m;
        bool rich = admin_msg(body, &m);
        if (phone && to && (text || rich)) {
            int sent =
                rich ? sim_admin_send_msg(&g_sim, phone, to, &m, id, sizeof(id), err, sizeof(err))
                     : sim_admin_send_text(&g_sim, phone, to, text, id, sizeof(id), err,
                                           sizeof(err));
            free(m.mentions);
            if (sent == 0) {
                int64_t sent_us = sim_mono_us(); /* the stanza waits in the connection's output */
                pthread_mutex_unlock(&g_sim.lock);
                lws_cancel_service(g_lws);
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "id", id);
                cJSON_AddNumberToObject(o, "sent_us", (double)sent_us);
                char *out = cJSON_PrintUnformatted(o);
                enum MHD_Result ret = reply(conn, MHD_HTTP_OK, out ? out : "{}");
                free(out);
                cJSON_Delete(o);
                return ret;
            }
        } else {
            free(m.mentions);
            snprintf(err, sizeof(err), "phone, to and text (or edit/react/revoke) are required");
        }
    } else if (strcmp(url, "/admin/read") == 0) {
        const char *phone = json_str(body, "phone"), *chat = json_str(body, "chat");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(body, "ids");
        const char *idv[64];
        size_t n = 0;
        for (int i = 0; cJSON_IsArray(ids) && i < cJSON_GetArraySize(ids) && n < 64; i++) {
            const cJSON *it = cJSON_GetArrayItem(ids, i);
            if (cJSON_IsString(it)) idv[n++] = it->valuestring;
        }
        rc = phone && chat && n ? sim_admin_read_self(&g_sim, phone, chat, idv, n, err, sizeof(err))
                                : -1;
        if (!phone || !chat || !n) snprintf(err, sizeof(err), "phone, chat and ids[] are required");
    } else if (strcmp(url, "/admin/corrupt-next") == 0) {
        const char *phone = json_str(body, "phone");
        rc = phone ? sim_admin_corrupt_next(&g_sim, phone, json_int(body, "count", 1), err,
                                            sizeof(err))
                   : -1;
        if (!phone) snprintf(err, sizeof(err), "phone is required");
    } else if (strcmp(url, "/admin/reregister") == 0) {
        const char *phone = json_str(body, "phone");
        const cJSON *announce = cJSON_GetObjectItemCaseSensitive(body, "announce");
        rc = phone ? sim_admin_reregister(&g_sim, phone, cJSON_IsTrue(announce), err, sizeof(err))
                   : -1;
        if (!phone) snprintf(err, sizeof(err), "phone is required");
    } else if (strcmp(url, "/admin/quiet-devices") == 0) {
        g_sim.quiet_devices = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "quiet"));
        rc = 0;
    } else if (strcmp(url, "/admin/reuse-device-ids") == 0) {
        g_sim.reuse_device_ids = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "reuse"));
        rc = 0;
    } else if (strcmp(url, "/admin/group-fault") == 0) {
        const char *mode = json_str(body, "mode");
        rc = 0;
        if (mode && strcmp(mode, "unanswered") == 0)
            g_sim.group_fault = SIM_GROUP_FAULT_UNANSWERED;
        else if (mode && strcmp(mode, "lost") == 0)
            g_sim.group_fault = SIM_GROUP_FAULT_LOST;
        else if (mode && strcmp(mode, "none") == 0)
            g_sim.group_fault = 0;
        else {
            rc = -1;
            snprintf(err, sizeof(err), "mode is none, unanswered or lost");
        }
    } else if (strcmp(url, "/admin/restart") == 0) {
        for (sim_conn *c = g_sim.conns; c; c = c->next)
            c->state = SIM_CONN_CLOSING;
        rc = 0;
    } else if (strncmp(url, "/admin/group/", 13) == 0) { /* sim_group.c */
        char *out = NULL;
        rc = sim_group_admin_post(&g_sim, url, body, &out, err, sizeof(err)) == 1 ? 0 : -1;
        if (rc == 0) {
            pthread_mutex_unlock(&g_sim.lock);
            lws_cancel_service(g_lws);
            enum MHD_Result ret = reply(conn, MHD_HTTP_OK, out);
            free(out);
            return ret;
        }
    } else {
        pthread_mutex_unlock(&g_sim.lock);
        return reply_error(conn, MHD_HTTP_NOT_FOUND, "no such admin call");
    }
    pthread_mutex_unlock(&g_sim.lock);
    lws_cancel_service(g_lws);
    return rc == 0 ? reply(conn, MHD_HTTP_OK, "{}") : reply_error(conn, MHD_HTTP_BAD_REQUEST, err);
}

/* GET /admin/messages?phone=P: what the simulated phone of P received. */
static enum MHD_Result admin_messages(struct MHD_Connection *conn, const char *phone, size_t from)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(o, "messages");
    pthread_mutex_lock(&g_sim.lock);
    bool known = sim_account_find(&g_sim, phone) != NULL;
    size_t n = 0;
    const sim_phone_msg *m = sim_admin_phone_messages(&g_sim, phone, &n);
    for (size_t i = from; i < n && list; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "sender", m[i].sender);
        cJSON_AddStringToObject(e, "chat", m[i].chat);
        cJSON_AddStringToObject(e, "id", m[i].id);
        cJSON_AddStringToObject(e, "text", m[i].text);
        cJSON_AddNumberToObject(e, "t", (double)m[i].t);
        cJSON_AddBoolToObject(e, "own", m[i].own);
        cJSON_AddBoolToObject(e, "failed", m[i].failed);
        cJSON_AddNumberToObject(e, "rx_us", (double)m[i].rx_us);
        cJSON_AddStringToObject(e, "kind", m[i].kind);
        cJSON_AddStringToObject(e, "target", m[i].target);
        cJSON_AddItemToArray(list, e);
    }
    pthread_mutex_unlock(&g_sim.lock);
    char *out = known ? cJSON_PrintUnformatted(o) : NULL;
    enum MHD_Result ret = known && out ? reply(conn, MHD_HTTP_OK, out)
                          : known ? reply_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "no memory")
                                  : reply_error(conn, MHD_HTTP_NOT_FOUND, "no such account");
    free(out);
    cJSON_Delete(o);
    return ret;
}

static enum MHD_Result admin_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_size, void **con_cls)
{
    if (strcmp(method, "GET") == 0 && strcmp(url, "/admin/group") == 0) { /* sim_group.c */
        const char *jid = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "jid");
        pthread_mutex_lock(&g_sim.lock);
        char *json = jid ? sim_admin_group_json(&g_sim, jid) : NULL;
        pthread_mutex_unlock(&g_sim.lock);
        enum MHD_Result r = json ? reply(conn, MHD_HTTP_OK, json)
                                 : reply_error(conn, MHD_HTTP_NOT_FOUND, "no such group");
        free(json);
        return r;
    }
    if (strcmp(method, "GET") == 0 && strcmp(url, "/admin/messages") == 0) {
        const char *phone = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "phone");
        if (!phone) return reply_error(conn, MHD_HTTP_BAD_REQUEST, "phone is required");
        const char *from = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "from");
        char *end = NULL;
        unsigned long long k = from ? strtoull(from, &end, 10) : 0;
        if (from && (!*from || *end || from[0] == '-'))
            return reply_error(conn, MHD_HTTP_BAD_REQUEST, "from must be a message index");
        return admin_messages(conn, phone, (size_t)k);
    }
    if (strcmp(method, "GET") == 0) {
        if (strcmp(url, "/admin/state") != 0)
            return reply_error(conn, MHD_HTTP_NOT_FOUND, "no such admin call");
        pthread_mutex_lock(&g_sim.lock);
        char *json = sim_admin_state_json(&g_sim);
        pthread_mutex_unlock(&g_sim.lock);
        enum MHD_Result r = reply(conn, MHD_HTTP_OK, json);
        free(json);
        return r;
    }
    if (strcmp(method, "POST") != 0)
        return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET or POST");
    admin_req *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req) return MHD_NO;
        *con_cls = req;
        return MHD_YES;
    }
    if (*upload_size) {
        if (req->len + *upload_size > ADMIN_BODY_MAX) {
            req->too_big = true;
        } else {
            char *grown = realloc(req->body, req->len + *upload_size + 1);
            if (!grown) return MHD_NO;
            req->body = grown;
            memcpy(req->body + req->len, upload_data, *upload_size);
            req->len += *upload_size;
            req->body[req->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (req->too_big) return reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "body too large");
    cJSON *body = req->body ? cJSON_Parse(req->body) : cJSON_CreateObject();
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return reply_error(conn, MHD_HTTP_BAD_REQUEST, "body is not a JSON object");
    }
    enum MHD_Result r = admin_post(conn, url, body);
    cJSON_Delete(body);
    return r;
}

static void admin_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                       enum MHD_RequestTerminationCode toe)
{
    admin_req *req = *con_cls;
    if (req) {
        free(req->body);
        free(req);
    }
    *con_cls = NULL;
}

static void on_signal(int sig)
{
    g_stop = 1;
    if (g_lws) lws_cancel_service(g_lws);
}

/* --exit-on-eof: reads standard input until it ends (or fails), then stops the service loop
 * unless main is already past it (g_lws_live false: the context may be going away). */
static pthread_mutex_t g_lws_lock = PTHREAD_MUTEX_INITIALIZER;
static bool g_lws_live; /* under g_lws_lock: the service loop runs, g_lws may be woken */

static void *watch_stdin(void *arg)
{
    (void)arg;
    char buf[256];
    while (fread(buf, 1, sizeof(buf), stdin) > 0) {
    }
    pthread_mutex_lock(&g_lws_lock);
    if (g_lws_live) {
        g_stop = 1;
        lws_cancel_service(g_lws);
    }
    pthread_mutex_unlock(&g_lws_lock);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: wa-sim [--port N] [--admin-port N] [--seed TEXT] [--time UNIX] "
                    "[--verbose] [--exit-on-eof] [--account PHONE[:LID[:NAME]]]...\n");
}

int main(int argc, char **argv)
{
    int port = 0, admin_port = 0;
    const char *seed = NULL;
    unsigned long long fixed_time = 0;
    bool verbose = false, exit_on_eof = false;
    const char *accounts[64];
    int naccounts = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--verbose") == 0) {
            verbose = true;
        } else if (strcmp(a, "--exit-on-eof") == 0) {
            exit_on_eof = true;
        } else if (v && strcmp(a, "--port") == 0) {
            port = atoi(v), i++;
        } else if (v && strcmp(a, "--admin-port") == 0) {
            admin_port = atoi(v), i++;
        } else if (v && strcmp(a, "--seed") == 0) {
            seed = v, i++;
        } else if (v && strcmp(a, "--time") == 0) {
            fixed_time = strtoull(v, NULL, 10), i++;
        } else if (v && strcmp(a, "--account") == 0 && naccounts < 64) {
            accounts[naccounts++] = v, i++;
        } else {
            usage();
            return 2;
        }
    }
    if (sim_init(&g_sim, (const uint8_t *)seed, seed ? strlen(seed) : 0, fixed_time) != 0) {
        fprintf(stderr, "wa-sim: cannot initialise\n");
        return 1;
    }
    g_sim.verbose = verbose;
    for (int i = 0; i < naccounts; i++) {
        char buf[160], *lid = NULL, *name = NULL;
        snprintf(buf, sizeof(buf), "%s", accounts[i]);
        if ((lid = strchr(buf, ':'))) {
            *lid++ = '\0';
            if ((name = strchr(lid, ':'))) *name++ = '\0';
            if (!*lid) lid = NULL;
        }
        if (!sim_account_add(&g_sim, buf, lid, name)) {
            fprintf(stderr, "wa-sim: bad --account %s\n", accounts[i]);
            return 2;
        }
    }

    /* thousands of connections: raise the descriptor limit as far as we may */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    lws_set_log_level(verbose ? LLL_ERR | LLL_WARN : LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    g_lws = lws_create_context(&info);
    if (!g_lws) {
        fprintf(stderr, "wa-sim: cannot listen on port %d\n", port);
        return 1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(g_lws, "default");
    int ws_port = vh ? lws_get_vhost_listen_port(vh) : port;

    struct MHD_Daemon *admin = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)admin_port, NULL, NULL,
        admin_handler, NULL, MHD_OPTION_NOTIFY_COMPLETED, admin_done, NULL, MHD_OPTION_END);
    if (!admin) {
        fprintf(stderr, "wa-sim: cannot start the admin API on port %d\n", admin_port);
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(admin, MHD_DAEMON_INFO_BIND_PORT);
    char root[65];
    wb_hex_encode(g_sim.root.pub, 32, root);
    printf("{\"ws\":\"ws://127.0.0.1:%d/ws/chat\",\"admin\":\"http://"
           "127.0.0.1:%u\",\"root\":\"%s\"}\n",
           ws_port, di ? di->port : (unsigned)admin_port, root);
    fflush(stdout);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    g_lws_live = true;
    pthread_t watcher;
    if (exit_on_eof) {
        if (pthread_create(&watcher, NULL, watch_stdin, NULL) != 0) {
            fprintf(stderr, "wa-sim: cannot start the stdin watcher\n");
            return 1;
        }
        pthread_detach(watcher);
    }
    while (!g_stop)
        if (lws_service(g_lws, 0) < 0) break;
    pthread_mutex_lock(&g_lws_lock);
    g_lws_live = false;
    pthread_mutex_unlock(&g_lws_lock);
    MHD_stop_daemon(admin);
    lws_context_destroy(g_lws);
    sim_free(&g_sim);
    return 0;
}
