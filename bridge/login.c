/*
 * bridge/login.c - a Matrix user's WhatsApp account: creating it (login by QR or by code), starting
 * it on an engine worker with its PostgreSQL store, reporting its progress to the management room,
 * handing its received messages to the portal queues, sending for the portals, logging out.
 *
 * The engine callback runs on the engine thread: it never calls the homeserver, it queues jobs.
 */
#include "bridge/bridge_internal.h"
#include "bridge/group.h"
#include "bridge/qr.h"
#include "db/store_pg.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "login"

static void pending_free(br_pending_send *p);

br_login *br_login_find(br_bridge *b, int64_t id)
{
    br_login *l = NULL;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->n_logins && !l; i++)
        if (b->logins[i]->id == id) l = b->logins[i];
    pthread_mutex_unlock(&b->lock);
    return l;
}

size_t br_logins_of(br_bridge *b, const char *mxid, br_login **out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->n_logins && n < max; i++)
        if (!b->logins[i]->removed && strcmp(b->logins[i]->mxid, mxid) == 0)
            out[n++] = b->logins[i];
    pthread_mutex_unlock(&b->lock);
    return n;
}

const char *br_login_state_name(br_login *l)
{
    return wa_client_state_name((wa_client_state)atomic_load(&l->state));
}

/* ---- jobs run on the management room's portal worker ---- */

typedef struct login_note {
    int64_t login_id;
    wa_event ev;
} login_note;

static void post_qr(br_pworker *pw, br_login *l, const char *code)
{
    wb_buf png;
    wb_buf_init(&png);
    mx_error err;
    char *mxc = NULL;
    if (br_qr_png(code, 8, &png) != 0 || mx_client_upload(pw->mx, NULL, "image/png", "qr.png",
                                                          png.data, png.len, &mxc, &err) != MX_OK) {
        wb_buf_free(&png);
        br_notice(pw, l->mgmt_room, "Scan this code with WhatsApp (Linked devices):\n%s", code);
        return;
    }
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "msgtype", "m.image");
    cJSON_AddStringToObject(c, "body", code);
    cJSON_AddStringToObject(c, "url", mxc);
    cJSON *info = cJSON_AddObjectToObject(c, "info");
    cJSON_AddStringToObject(info, "mimetype", "image/png");
    cJSON_AddNumberToObject(info, "size", (double)png.len);
    wb_buf_free(&png);
    free(mxc);
    if (l->qr_event[0]) {
        /* the QR rotated: replace the image in place */
        cJSON *nc = cJSON_Duplicate(c, true);
        cJSON_AddItemToObject(c, "m.new_content", nc);
        cJSON *rel = cJSON_AddObjectToObject(c, "m.relates_to");
        cJSON_AddStringToObject(rel, "rel_type", "m.replace");
        cJSON_AddStringToObject(rel, "event_id", l->qr_event);
        if (mx_client_send(pw->mx, NULL, l->mgmt_room, "m.room.message", c, NULL, 0, NULL, &err) !=
            MX_OK)
            WB_WARN(MOD, "editing the QR failed: %s", err.error);
    } else {
        char *eid = NULL;
        if (mx_client_send(pw->mx, NULL, l->mgmt_room, "m.room.message", c, NULL, 0, &eid, &err) ==
            MX_OK) {
            snprintf(l->qr_event, sizeof(l->qr_event), "%s", eid);
            free(eid);
        } else {
            WB_WARN(MOD, "posting the QR failed: %s", err.error);
        }
    }
    cJSON_Delete(c);
}

static void redact_qr(br_pworker *pw, br_login *l)
{
    if (!l->qr_event[0]) return;
    mx_error err;
    mx_client_redact(pw->mx, NULL, l->mgmt_room, l->qr_event, "login finished", NULL, NULL, &err);
    l->qr_event[0] = '\0';
}

static void forget_login(br_bridge *b, br_login *l);

static void job_login_note(br_pworker *pw, void *arg)
{
    login_note *n = arg;
    br_bridge *b = pw->b;
    br_login *l = br_login_find(b, n->login_id);
    if (!l) {
        free(n);
        return;
    }
    const char *room = l->mgmt_room;
    switch (n->ev.type) {
    case WA_EV_QR:
        if (room[0]) post_qr(pw, l, n->ev.text);
        break;
    case WA_EV_PAIR_CODE:
        if (room[0])
            br_notice(pw, room,
                      "Your pairing code: %s\nOn your phone: WhatsApp > Linked devices > Link a "
                      "device > Link with phone number instead, then type the code.",
                      n->ev.text);
        break;
    case WA_EV_PAIR_SUCCESS: {
        char phone[64] = "";
        const char *at = strchr(n->ev.text, '@'), *colon = strchr(n->ev.text, ':');
        const char *end = colon && (!at || colon < at) ? colon : at;
        if (end && (size_t)(end - n->ev.text) < sizeof(phone)) {
            memcpy(phone, n->ev.text, (size_t)(end - n->ev.text));
            phone[end - n->ev.text] = '\0';
        }
        snprintf(l->phone, sizeof(l->phone), "%s", phone);
        db_login_set_state(pw->db, l->id, "paired", phone);
        if (room[0]) redact_qr(pw, l);
        break;
    }
    case WA_EV_CONNECTED:
        db_login_set_state(pw->db, l->id, "connected", NULL);
        if (l->pairing && room[0]) {
            br_notice(pw, room, "Successfully logged in as +%s", l->phone);
            l->pairing = false;
        }
        break;
    case WA_EV_QR_TIMEOUT:
        if (room[0]) {
            redact_qr(pw, l);
            br_notice(pw, room,
                      "Login timed out: no code was scanned. Send `login qr` to try again.");
        }
        forget_login(b, l);
        db_login_delete(pw->db, n->login_id);
        break;
    case WA_EV_LOGGED_OUT:
        if (room[0])
            br_notice(pw, room,
                      "You were logged out of WhatsApp (+%s, code %d). Send `login qr` "
                      "to log in again.",
                      l->phone, n->ev.code);
        db_login_set_state(pw->db, l->id, "logged_out", NULL);
        forget_login(b, l);
        break;
    case WA_EV_ERROR:
        if (room[0] && l->pairing) br_notice(pw, room, "WhatsApp: %s", n->ev.text);
        break;
    default: break;
    }
    free(n);
}

/* ---- the engine side (engine thread) ---- */

static void note(br_login *l, const wa_event *ev)
{
    login_note *n = calloc(1, sizeof(*n));
    if (!n) return;
    n->login_id = l->id;
    n->ev = *ev;
    char key[DB_ID_MAX + 16];
    snprintf(key, sizeof(key), "room:%s", l->mgmt_room[0] ? l->mgmt_room : l->mxid);
    br_enqueue(l->eng->b, key, job_login_note, n);
}

/* Hands a finished asynchronous send to its portal queue; p is unlisted and freed. */
static void complete_async(br_bridge *b, br_pending_send *p, int result, const char *why)
{
    p->done->result = result;
    snprintf(p->done->id, sizeof(p->done->id), "%s", p->id);
    if (why) snprintf(p->done->err, sizeof(p->done->err), "%s", why);
    br_enqueue(b, p->key, p->done_fn, p->done);
    pending_free(p);
}

static void resolve_pending(br_login *l, const char *id, int result)
{
    br_pending_send *done = NULL;
    pthread_mutex_lock(&l->send_lock);
    for (br_pending_send **pp = &l->pending; *pp;) {
        br_pending_send *p = *pp;
        if (strcmp(p->id, id) != 0) {
            pp = &p->next;
            continue;
        }
        if (!p->done_fn) {
            p->result = result;
            pp = &p->next;
            continue;
        }
        *pp = p->next; /* an asynchronous send: completed below, outside the lock */
        l->n_pending--;
        p->next = done;
        done = p;
    }
    pthread_cond_broadcast(&l->send_cond);
    pthread_mutex_unlock(&l->send_lock);
    while (done) {
        br_pending_send *p = done;
        done = p->next;
        complete_async(l->eng->b, p, result,
                       result == 1 ? NULL : "WhatsApp did not accept the message");
    }
}

/* A login nobody completed within bridge.login_timeout_s. */
static void job_login_timeout(br_pworker *pw, void *arg)
{
    int64_t id = *(int64_t *)arg;
    free(arg);
    br_login *l = br_login_find(pw->b, id);
    if (!l || atomic_load(&l->paired)) return;
    WB_INFO(MOD, "login %lld: not completed in time", (long long)id);
    if (l->mgmt_room[0]) {
        redact_qr(pw, l);
        br_notice(pw, l->mgmt_room,
                  "Login timed out: nothing was scanned or typed in %lld s. "
                  "Send `login qr` to try again.",
                  (long long)pw->b->cfg->qr_timeout_s);
    }
    forget_login(pw->b, l);
    db_login_delete(pw->db, id);
}

void br_logins_sweep(br_bridge *b)
{
    int64_t now = br_now_ms();
    pthread_mutex_lock(&b->lock);
    size_t n = b->n_logins;
    br_login *all[BR_MAX_LOGINS];
    memcpy(all, b->logins, n * sizeof(all[0]));
    pthread_mutex_unlock(&b->lock);
    for (size_t i = 0; i < n; i++) {
        br_login *l = all[i];
        if (l->pairing_until_ms && l->pairing_until_ms < now && !atomic_load(&l->paired)) {
            l->pairing_until_ms = 0; /* once */
            int64_t *id = malloc(sizeof(*id));
            if (id) {
                *id = l->id;
                char key[DB_ID_MAX + 16];
                snprintf(key, sizeof(key), "room:%s", l->mgmt_room[0] ? l->mgmt_room : l->mxid);
                br_enqueue(b, key, job_login_timeout, id);
            }
        }
        br_pending_send *late = NULL;
        pthread_mutex_lock(&l->send_lock);
        for (br_pending_send **pp = &l->pending; *pp;) {
            br_pending_send *p = *pp;
            if (p->done_fn && p->deadline_ms < now) {
                *pp = p->next;
                l->n_pending--;
                p->next = late;
                late = p;
            } else {
                pp = &p->next;
            }
        }
        pthread_cond_broadcast(&l->send_cond);
        pthread_mutex_unlock(&l->send_lock);
        while (late) {
            br_pending_send *p = late;
            late = p->next;
            complete_async(b, p, -1, "no answer from WhatsApp in time");
        }
    }
}

/* Queues a received message on its portal's queue (a group's one queue, whichever login got it). */
static void queue_wa_msg(br_login *l, br_wa_msg *m)
{
    char chat_user[DB_ID_MAX], key[DB_ID_MAX + 64];
    br_user_jid(m->chat, chat_user, sizeof(chat_user));
    br_portal_key(strstr(chat_user, "@g.us") ? 0 : l->id, chat_user, key, sizeof(key));
    br_enqueue(l->eng->b, key, br_portal_job_wa_message, m);
}

static void take_messages(br_login *l)
{
    wa_received r;
    bool sure = br_now_ms() >= l->eng->unsure_until_ms;
    while (wa_client_next_message(l->client, &r)) {
        atomic_fetch_add(&l->eng->b->stats.wa_messages, 1);
        WB_DEBUG(MOD, "login %lld: message %s from %s in %s (%zu part(s))", (long long)l->id, r.id,
                 r.sender, r.chat, r.nparts);
        /* one Matrix message per WhatsApp message: the first readable part carries it */
        br_wa_msg *m = calloc(1, sizeof(*m));
        if (m) {
            m->login_id = l->id;
            snprintf(m->chat, sizeof(m->chat), "%s", r.chat);
            snprintf(m->sender, sizeof(m->sender), "%s", r.sender);
            snprintf(m->id, sizeof(m->id), "%s", r.id);
            snprintf(m->notify, sizeof(m->notify), "%s", r.notify);
            m->ts_ms = (int64_t)r.t * 1000;
            for (size_t i = 0; i < r.nparts && !m->plaintext; i++) {
                if (r.parts[i].error != WA_OK || !r.parts[i].plaintext.len) continue;
                m->plaintext = malloc(r.parts[i].plaintext.len);
                if (!m->plaintext) continue;
                memcpy(m->plaintext, r.parts[i].plaintext.data, r.parts[i].plaintext.len);
                m->len = r.parts[i].plaintext.len;
                m->fresh = sure && !r.parts[i].from_buffer;
            }
            queue_wa_msg(l, m);
        }
        wa_received_free(&r);
    }
}

/* ---- groups (engine thread: copies go to the group portal's queue) ---- */

static void queue_group(br_login *l, br_group_data *g, br_job_fn fn)
{
    char key[DB_ID_MAX + 64];
    br_portal_key(0, g->group, key, sizeof(key));
    br_enqueue(l->eng->b, key, fn, g);
}

static void refuse_info_change(br_login *l, const char *group, const char *room, bool subject,
                               int code);

/* An answer that carries no group: its code, the group it is about and the room to tell
 * (NULL when out of memory). */
static br_group_data *bare_answer(br_login *l, int code, const char *group, const char *room)
{
    br_group_data *g = calloc(1, sizeof(*g));
    if (!g) return NULL;
    g->login_id = l->id;
    g->result_code = code;
    snprintf(g->group, sizeof(g->group), "%s", group);
    snprintf(g->reply_room, sizeof(g->reply_room), "%s", room);
    return g;
}

static void take_group_results(br_login *l)
{
    wa_group_result r;
    while (wa_client_next_group_result(l->client, &r)) {
        char reply[DB_ID_MAX] = "", asked[DB_ID_MAX] = "";
        int asked_change = 0, undo_level = 0;
        int64_t call_id = 0, settle_before = 0;
        pthread_mutex_lock(&l->send_lock);
        for (int i = 0; i < BR_GROUP_CALLS; i++)
            if (l->group_calls[i].req_id == r.req_id && r.req_id) {
                snprintf(reply, sizeof(reply), "%s", l->group_calls[i].room);
                snprintf(asked, sizeof(asked), "%s", l->group_calls[i].jid);
                asked_change = l->group_calls[i].change;
                undo_level = l->group_calls[i].undo_level;
                call_id = l->group_calls[i].call_id;
                settle_before = l->group_calls[i].settle_before_ms;
                l->group_calls[i].req_id = 0;
            }
        pthread_mutex_unlock(&l->send_lock);
        if (r.op == WA_GROUP_OP_PARTICIPANTS && reply[0]) {
            br_group_data *g = br_group_data_from_participants(l->id, &r, asked, asked_change);
            if (g) {
                snprintf(g->reply_room, sizeof(g->reply_room), "%s", reply);
                g->undo_level = undo_level;
                g->call_id = call_id;
                queue_group(l, g, br_group_job_participants);
            }
        } else if (r.op == WA_GROUP_OP_INFO && settle_before) {
            /* what the group is now settles the calls whose answers were lost; a query that was
             * lost in turn waits for the next connection */
            br_group_data *g = r.info ? br_group_data_from_info(l->id, r.info)
                               : r.code != WA_ERR_TIMEOUT
                                   ? bare_answer(l, r.code ? r.code : -1, asked, "")
                                   : NULL; /* (asked: the group asked) */
            if (g) {
                g->settle_before_ms = settle_before;
                queue_group(l, g, br_group_job_settle);
            }
        } else if ((r.op == WA_GROUP_OP_SUBJECT || r.op == WA_GROUP_OP_DESCRIPTION) && reply[0]) {
            /* a refusal is told and the room follows the group again; a lost answer is not */
            if (r.code != 0 && r.code != WA_ERR_TIMEOUT)
                refuse_info_change(l, r.group, reply, r.op == WA_GROUP_OP_SUBJECT, r.code);
        } else if (r.op == WA_GROUP_OP_PARTICIPATING) {
            for (size_t i = 0; i < r.ngroups; i++) {
                br_group_data *g = br_group_data_from_info(l->id, &r.groups[i]);
                if (g) queue_group(l, g, br_group_job_info);
            }
        } else if ((r.op == WA_GROUP_OP_INFO || r.op == WA_GROUP_OP_CREATE) && r.info) {
            br_group_data *g = br_group_data_from_info(l->id, r.info);
            if (g) {
                snprintf(g->reply_room, sizeof(g->reply_room), "%s", reply);
                queue_group(l, g, br_group_job_info);
            }
        } else if (reply[0]) { /* a refused create: tell the user (the group key: any will do) */
            br_group_data *g = bare_answer(l, r.code ? r.code : -1, reply, reply);
            if (g) queue_group(l, g, br_group_job_info);
        }
        if (r.code)
            WB_INFO(MOD, "login %lld: group %s %s answered %d %s", (long long)l->id,
                    wa_group_op_name(r.op), r.group, r.code, r.error_text ? r.error_text : "");
        wa_group_result_free(&r);
    }
}

/* Group notifications: each written to wa_group_event_buffer (one row per change, on the engine's
 * connection) before it is taken, which acks it to WhatsApp; the rows go when the portal showed
 * the changes. When the write fails the notification stays untaken (not acked): it is tried again
 * at the next group event, and WhatsApp delivers it again at the next login. */
static void take_group_updates(br_login *l)
{
    const wa_group_update *next;
    while ((next = wa_client_peek_group_update(l->client))) {
        const wa_group_event *ev = &next->event;
        size_t n = ev->nchanges;
        br_group_data **gs = calloc(n ? n : 1, sizeof(*gs));
        char **data = calloc(n ? n : 1, sizeof(*data));
        int64_t *ids = calloc(n ? n : 1, sizeof(*ids));
        bool ok = gs && data && ids;
        for (size_t i = 0; ok && i < n; i++) {
            gs[i] = br_group_data_from_change(l->id, ev, &ev->changes[i]);
            data[i] = gs[i] ? br_group_data_to_json(gs[i]) : NULL;
            ok = data[i] != NULL;
        }
        char key[2 * DB_ID_MAX];
        snprintf(key, sizeof(key), "%s %s", ev->group ? ev->group : "", ev->id ? ev->id : "");
        if (ok && db_group_event_save(l->eng->db, l->id, ev->group ? ev->group : "", key,
                                      (const char *const *)data, n, ids) != DB_OK) {
            WB_WARN(MOD, "login %lld: group notification %s not saved, not acked: %s",
                    (long long)l->id, key, db_conn_error(l->eng->db)->message);
            ok = false;
        }
        if (ok) {
            wa_group_update u;
            wa_client_next_group_update(l->client, &u); /* taken: acked */
            for (size_t i = 0; i < n; i++) {
                gs[i]->buffer_id = ids[i];
                queue_group(l, gs[i], br_group_job_change);
                gs[i] = NULL;
            }
            wa_group_update_free(&u);
        }
        for (size_t i = 0; i < n; i++) {
            if (gs) br_group_data_free(gs[i]);
            if (data) free(data[i]);
        }
        free(gs);
        free(data);
        free(ids);
        if (!ok) break;
    }
}

typedef struct group_req {
    int kind;        /* 0 info, 1 participating, 2 create, 3 subject, 4 description, 5 participant,
                        6 info settling lost answers */
    int change;      /* 5: wa_group_change */
    int undo_level;  /* 5, promote/demote: the power level to put back when refused */
    int64_t call_id; /* 5: its group_call row */
    int64_t settle_before_ms; /* 6: the calls made before this moment are settled */
    char group[DB_ID_MAX];
    char subject[DB_ID_MAX];
    char *text; /* description (heap) */
    char (*participants)[DB_ID_MAX];
    size_t n;
    char room[DB_ID_MAX];
    br_login *l;
} group_req;

/* A call whose answer goes back to a Matrix room (engine thread). */
static void remember_call(br_login *l, uint32_t req, const group_req *r)
{
    pthread_mutex_lock(&l->send_lock);
    for (int i = 0; i < BR_GROUP_CALLS; i++)
        if (!l->group_calls[i].req_id) {
            l->group_calls[i].req_id = req;
            snprintf(l->group_calls[i].room, sizeof(l->group_calls[i].room), "%s", r->room);
            snprintf(l->group_calls[i].jid, sizeof(l->group_calls[i].jid), "%s",
                     r->kind == 5   ? r->subject
                     : r->kind == 6 ? r->group
                                    : "");
            l->group_calls[i].change = r->change;
            l->group_calls[i].undo_level = r->undo_level;
            l->group_calls[i].call_id = r->call_id;
            l->group_calls[i].settle_before_ms = r->settle_before_ms;
            break;
        }
    pthread_mutex_unlock(&l->send_lock);
}

bool br_login_call_in_flight(br_login *l, int64_t call_id)
{
    bool found = false;
    pthread_mutex_lock(&l->send_lock);
    for (int i = 0; i < BR_GROUP_CALLS && !found; i++)
        found = l->group_calls[i].req_id && l->group_calls[i].call_id == call_id;
    pthread_mutex_unlock(&l->send_lock);
    return found;
}

/* A subject or description change WhatsApp refused (or the engine did not send): the portal says
 * so and follows the group again (engine thread). */
static void refuse_info_change(br_login *l, const char *group, const char *room, bool subject,
                               int code)
{
    br_group_data *g = bare_answer(l, code, group, room);
    if (!g) return;
    g->participants_change = subject ? WA_GROUP_OP_SUBJECT : WA_GROUP_OP_DESCRIPTION;
    queue_group(l, g, br_group_job_info_refused);
}

/* A participants call the engine did not send: answered at once with its error, so the portal
 * tells the user and puts the room back (engine thread). */
static void refuse_call(br_login *l, const group_req *r, int rc)
{
    wa_group_result res;
    memset(&res, 0, sizeof(res));
    res.op = WA_GROUP_OP_PARTICIPANTS;
    res.code = rc;
    br_group_data *g = br_group_data_from_participants(l->id, &res, r->subject, r->change);
    if (!g) return; /* the row stays: settled at the next connection */
    snprintf(g->group, sizeof(g->group), "%s", r->group);
    snprintf(g->reply_room, sizeof(g->reply_room), "%s", r->room);
    g->undo_level = r->undo_level;
    g->call_id = r->call_id;
    queue_group(l, g, br_group_job_participants);
}

static void group_on_engine(wa_client *c, void *arg)
{
    group_req *r = arg;
    uint32_t req = 0;
    int rc;
    if (r->kind == 0 || r->kind == 6) {
        rc = wa_client_group_info(c, r->group, &req);
        if (rc == WA_OK && r->kind == 6) remember_call(r->l, req, r);
    } else if (r->kind == 1) {
        rc = wa_client_group_participating(c, &req);
    } else if (r->kind == 3 || r->kind == 4) {
        rc = r->kind == 3 ? wa_client_group_subject(c, r->group, r->subject, &req)
                          : wa_client_group_description(c, r->group, r->text, &req);
        if (rc == WA_OK)
            remember_call(r->l, req, r);
        else
            refuse_info_change(r->l, r->group, r->room, r->kind == 3, rc);
    } else if (r->kind == 5) {
        const char *who[1] = {r->subject};
        rc = wa_client_group_participants(c, r->group, (wa_group_change)r->change, who, 1, &req);
        if (rc == WA_OK)
            remember_call(r->l, req, r);
        else
            refuse_call(r->l, r, rc);
    } else {
        const char *ps[256];
        size_t n = r->n < 256 ? r->n : 256;
        for (size_t i = 0; i < n; i++)
            ps[i] = r->participants[i];
        rc = wa_client_group_create(c, r->subject, ps, n, &req);
        if (rc == WA_OK) remember_call(r->l, req, r);
    }
    if (rc != WA_OK)
        WB_INFO(MOD, "group call %d refused by the engine: %s", r->kind, wa_strerror(rc));
    free(r->participants);
    free(r->text);
    free(r);
}

static int post_group(br_login *l, group_req *r)
{
    r->l = l;
    if (l->removed || l->handle < 0 ||
        wa_worker_call(l->eng->w, l->handle, group_on_engine, r, false) != 0) {
        free(r->participants);
        free(r->text);
        free(r);
        return -1;
    }
    return 0;
}

void br_login_group_info(br_login *l, const char *group)
{
    group_req *r = calloc(1, sizeof(*r));
    if (!r) return;
    snprintf(r->group, sizeof(r->group), "%s", group);
    post_group(l, r);
}

void br_login_group_set(br_login *l, const char *group, bool subject, const char *text,
                        const char *room)
{
    group_req *r = calloc(1, sizeof(*r));
    if (!r) return;
    r->kind = subject ? 3 : 4;
    snprintf(r->group, sizeof(r->group), "%s", group);
    snprintf(r->room, sizeof(r->room), "%s", room);
    if (subject) {
        snprintf(r->subject, sizeof(r->subject), "%s", text);
    } else if (!(r->text = strdup(text))) {
        free(r);
        return;
    }
    post_group(l, r);
}

int br_login_group_participant(br_login *l, const db_group_call *call)
{
    group_req *r = calloc(1, sizeof(*r));
    if (!r) return -1;
    r->kind = 5;
    r->change = call->change;
    r->undo_level = call->undo_level;
    r->call_id = call->id;
    snprintf(r->group, sizeof(r->group), "%s", call->group);
    snprintf(r->subject, sizeof(r->subject), "%s", call->target);
    snprintf(r->room, sizeof(r->room), "%s", call->room);
    return post_group(l, r);
}

/* The connection came (back): the group calls from Matrix recorded before it whose answers were
 * lost (the bridge stopped, or the connection went with them on their way) are settled by asking
 * each group what it is now (br_group_job_settle). Engine thread. */
static void settle_lost_calls(br_login *l)
{
    db_group_call rows[BR_GROUP_CALLS * 4];
    size_t n = 0;
    int64_t now = br_now_ms();
    if (db_group_call_list(l->eng->db, l->id, NULL, now, rows, sizeof(rows) / sizeof(rows[0]),
                           &n) != DB_OK) {
        WB_WARN(MOD, "login %lld: group calls not read (settled at the next connection): %s",
                (long long)l->id, db_conn_error(l->eng->db)->message);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        bool asked = false; /* one query per group */
        for (size_t k = 0; k < i && !asked; k++)
            asked = strcmp(rows[k].group, rows[i].group) == 0;
        if (asked) continue;
        group_req *r = calloc(1, sizeof(*r));
        if (!r) return; /* the rest at the next connection */
        r->kind = 6;
        r->settle_before_ms = now;
        r->l = l;
        snprintf(r->group, sizeof(r->group), "%s", rows[i].group);
        WB_INFO(MOD, "login %lld: asking group %s about calls whose answers were lost",
                (long long)l->id, r->group);
        group_on_engine(l->client, r); /* (we are on the engine thread) */
    }
}

void br_login_group_sync(br_login *l)
{
    group_req *r = calloc(1, sizeof(*r));
    if (!r) return;
    r->kind = 1;
    post_group(l, r);
}

int br_login_group_create(br_login *l, const char *subject, const char *const *participants,
                          size_t n, const char *reply_room)
{
    group_req *r = calloc(1, sizeof(*r));
    if (!r) return -1;
    r->kind = 2;
    snprintf(r->subject, sizeof(r->subject), "%s", subject);
    snprintf(r->room, sizeof(r->room), "%s", reply_room);
    r->participants = calloc(n ? n : 1, sizeof(*r->participants));
    if (!r->participants) {
        free(r);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        snprintf(r->participants[i], sizeof(r->participants[i]), "%s", participants[i]);
    r->n = n;
    return post_group(l, r);
}

/* The connection came (back): what was handed over on an earlier one and never acked is sent
 * again, in the order it was first sent, with the same ids (receivers show an id once). Engine
 * thread. */
static void resend_unacked(br_login *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    pthread_mutex_lock(&l->send_lock);
    int n = 0;
    for (br_pending_send *p = l->pending; p; p = p->next) {
        if (p->result != 0) continue;
        if (wa_client_send_message_id(l->client, p->to, &p->msg, p->id, now) == WA_OK) n++;
        p->deadline_ms = br_now_ms() + BR_SEND_WAIT_MS;
    }
    pthread_mutex_unlock(&l->send_lock);
    if (n) WB_INFO(MOD, "login %lld: %d unacknowledged message(s) sent again", (long long)l->id, n);
}

void br_login_on_engine_event(void *user, int handle, const wa_event *ev)
{
    br_engine *e = user;
    br_login *l = handle >= 0 && handle < BR_MAX_LOGINS ? e->by_handle[handle] : NULL;
    if (!l || l->removed) return;
    atomic_store(&l->state, (int)wa_client_get_state(l->client));
    switch (ev->type) {
    case WA_EV_MESSAGE: take_messages(l); break;
    case WA_EV_PAIR_SUCCESS:
        atomic_store(&l->paired, true);
        note(l, ev);
        break;
    case WA_EV_SENT: resolve_pending(l, ev->text, 1); break;
    case WA_EV_SEND_FAILED: resolve_pending(l, ev->text, -1); break;
    case WA_EV_DISCONNECTED:
        WB_INFO(MOD, "login %lld disconnected (code %d), reconnecting in %lld ms", (long long)l->id,
                ev->code, (long long)ev->ms);
        break;
    case WA_EV_READY: WB_INFO(MOD, "login %lld is live", (long long)l->id); break;
    case WA_EV_CONNECTED:
        br_user_jid(ev->text, l->lid, sizeof(l->lid));
        resend_unacked(l);
        settle_lost_calls(l);
        note(l, ev);
        break;
    case WA_EV_IDENTITY_CHANGE: {
        wa_identity_change ic;
        while (wa_client_next_identity_change(l->client, &ic)) {
            br_wa_signal *sg = calloc(1, sizeof(*sg));
            if (!sg) continue;
            sg->login_id = l->id;
            sg->identity = true;
            br_user_jid(ic.jid, sg->chat, sizeof(sg->chat));
            snprintf(sg->who, sizeof(sg->who), "%s", sg->chat);
            char key[DB_ID_MAX + 64]; /* the DM's queue: the notice comes before the message */
            br_portal_key(l->id, sg->chat, key, sizeof(key));
            br_enqueue(l->eng->b, key, br_portal_job_wa_signal, sg);
        }
        break;
    }
    case WA_EV_GROUP_RESULT: take_group_results(l); break;
    case WA_EV_GROUP: take_group_updates(l); break;
    case WA_EV_RECEIPT:
    case WA_EV_CHAT_STATE: {
        /* "id type chat [participant]" / "chat sender state" */
        char a[DB_ID_MAX] = "", t[64] = "", c3[DB_ID_MAX] = "", c4[DB_ID_MAX] = "";
        if (sscanf(ev->text, "%255s %63s %255s %255s", a, t, c3, c4) < 2) break;
        br_wa_signal *sg = calloc(1, sizeof(*sg));
        if (!sg) break;
        sg->login_id = l->id;
        if (ev->type == WA_EV_RECEIPT) {
            /* type "" (delivered) leaves the second word out: only read receipts are shown;
               read-self: the user read a contact's message on another device */
            sg->self_read = strcmp(t, "read-self") == 0;
            if ((strcmp(t, "read") != 0 && !sg->self_read) || !c3[0]) {
                free(sg);
                break;
            }
            snprintf(sg->id, sizeof(sg->id), "%s", a);
            br_user_jid(c3, sg->chat, sizeof(sg->chat));
            if (c4[0]) /* a group: who read it */
                br_user_jid(c4, sg->who, sizeof(sg->who));
            else
                snprintf(sg->who, sizeof(sg->who), "%s", sg->chat);
        } else {
            sg->typing_event = true;
            br_user_jid(a, sg->chat, sizeof(sg->chat));
            br_user_jid(t, sg->who, sizeof(sg->who));
            snprintf(sg->state, sizeof(sg->state), "%.31s", c3);
        }
        char key[DB_ID_MAX + 64];
        br_portal_key(strstr(sg->chat, "@g.us") ? 0 : l->id, sg->chat, key, sizeof(key));
        br_enqueue(l->eng->b, key, br_portal_job_wa_signal, sg);
        break;
    }
    default:
        WB_INFO(MOD, "login %lld: event %d %s", (long long)l->id, (int)ev->type,
                ev->type == WA_EV_QR ? "(qr)" : ev->text);
        note(l, ev);
        break;
    }
}

/* ---- creating and starting logins ---- */

typedef struct start_req {
    br_login *l;
    const char *url;
    int rc;
    char err[1024];
} start_req;

/* Runs on the engine thread: the store uses the engine's connection. */
static void start_on_engine(void *arg)
{
    start_req *r = arg;
    br_login *l = r->l;
    br_engine *e = l->eng;
    const br_config *cfg = e->b->cfg;
    if (db_store_new(e->db, l->id, &l->store) != DB_OK) {
        snprintf(r->err, sizeof(r->err), "store: %s", db_conn_error(e->db)->message);
        r->rc = -1;
        return;
    }
    wa_client_config cc = {
        .store = &l->store,
        .crypto = e->crypto,
        .trust_root = cfg->wa_trust_root_set ? cfg->wa_trust_root : NULL,
        .push_name = "wabridge",
        .os_name = cfg->wa_os_name,
    };
    int werr = 0;
    l->client = wa_client_new(&cc, &werr);
    if (!l->client) {
        snprintf(r->err, sizeof(r->err), "engine: %s", wa_strerror(werr));
        l->store.destroy(l->store.ctx);
        r->rc = -1;
        return;
    }
    if (l->pair_phone[0]) wa_client_pair_phone(l->client, l->pair_phone, 0);
    l->handle = wa_worker_add(e->w, l->client, r->url);
    if (l->handle < 0 || l->handle >= BR_MAX_LOGINS) {
        snprintf(r->err, sizeof(r->err), "engine: too many logins on one worker");
        r->rc = -1;
        return;
    }
    e->by_handle[l->handle] = l;
    r->rc = 0;
}

static br_login *login_new(br_bridge *b, int64_t id, const char *mxid)
{
    br_login *l = calloc(1, sizeof(*l));
    if (!l) return NULL;
    l->id = id;
    l->handle = -1;
    snprintf(l->mxid, sizeof(l->mxid), "%s", mxid);
    pthread_mutex_init(&l->send_lock, NULL);
    pthread_cond_init(&l->send_cond, NULL);
    pthread_mutex_lock(&b->lock);
    l->eng = &b->engines[b->next_engine++ % b->n_engines];
    pthread_mutex_unlock(&b->lock);
    return l;
}

/* Lists the login (so jobs find it) without starting its engine. */
static int login_list(br_bridge *b, br_login *l, char *err, size_t cap)
{
    pthread_mutex_lock(&b->lock);
    if (b->n_logins == BR_MAX_LOGINS) {
        pthread_mutex_unlock(&b->lock);
        snprintf(err, cap, "too many logins in this process");
        return -1;
    }
    b->logins[b->n_logins++] = l;
    pthread_mutex_unlock(&b->lock);
    return 0;
}

/* Starts a listed login's engine. */
static int login_start(br_bridge *b, br_login *l, char *err, size_t cap)
{
    start_req r = {.l = l, .url = b->cfg->wa_url};
    wa_worker_run(l->eng->w, start_on_engine, &r, true);
    if (r.rc) {
        snprintf(err, cap, "%s", r.err);
        forget_login(b, l);
        return -1;
    }
    return 0;
}

int br_login_begin(br_pworker *pw, const char *mxid, const char *room, const char *phone, char *err,
                   size_t cap)
{
    br_bridge *b = pw->b;
    int64_t id;
    if (db_login_create(pw->db, mxid, &id) != DB_OK) {
        snprintf(err, cap, "database: %s", db_conn_error(pw->db)->message);
        return -1;
    }
    /* ours from now on: the heartbeat renews the lease */
    db_login_take(pw->db, id, b->owner, BR_LEASE_MS);
    db_login_set_state(pw->db, id, "pairing", NULL);
    br_login *l = login_new(b, id, mxid);
    if (!l) {
        db_login_delete(pw->db, id);
        snprintf(err, cap, "out of memory");
        return -1;
    }
    snprintf(l->mgmt_room, sizeof(l->mgmt_room), "%s", room);
    l->pairing = true;
    l->pairing_until_ms = br_now_ms() + b->cfg->qr_timeout_s * 1000;
    if (phone) snprintf(l->pair_phone, sizeof(l->pair_phone), "%s", phone);
    if (login_list(b, l, err, cap) || login_start(b, l, err, cap)) {
        db_login_delete(pw->db, id);
        return -1;
    }
    return 0;
}

/* Re-bridges what the engine decrypted but the bridge had not delivered (a crash, a restart). */
static void requeue_buffer(br_bridge *b, br_login *l)
{
    db_buffered *rows;
    size_t n;
    if (db_event_buffer_pending(b->db_main, l->id, &rows, &n) != DB_OK) {
        WB_WARN(MOD, "login %lld: reading the event buffer failed: %s", (long long)l->id,
                db_conn_error(b->db_main)->message);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        br_wa_msg *m = calloc(1, sizeof(*m));
        if (!m) break;
        m->login_id = l->id;
        snprintf(m->chat, sizeof(m->chat), "%s", rows[i].chat);
        snprintf(m->sender, sizeof(m->sender), "%s", rows[i].sender);
        snprintf(m->id, sizeof(m->id), "%s", rows[i].id);
        m->ts_ms = rows[i].ts_ms;
        m->plaintext = rows[i].plaintext;
        m->len = rows[i].len;
        rows[i].plaintext = NULL;
        queue_wa_msg(l, m);
    }
    if (n) WB_INFO(MOD, "login %lld: %zu buffered message(s) to bridge", (long long)l->id, n);
    db_buffered_free(rows, n);
}

/* Shows again the group notifications that were acked but not shown (a crash, a restart). */
static void requeue_group_events(br_bridge *b, br_login *l)
{
    db_group_event *rows;
    size_t n;
    if (db_group_event_pending(b->db_main, l->id, &rows, &n) != DB_OK) {
        WB_WARN(MOD, "login %lld: reading the group event buffer failed: %s", (long long)l->id,
                db_conn_error(b->db_main)->message);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        br_group_data *g = br_group_data_from_json(l->id, rows[i].data);
        if (!g) { /* unreadable: nothing to show, ever */
            WB_WARN(MOD, "login %lld: group event %lld unreadable, dropped", (long long)l->id,
                    (long long)rows[i].id);
            db_group_event_done(b->db_main, rows[i].id);
            continue;
        }
        g->buffer_id = rows[i].id;
        queue_group(l, g, br_group_job_change);
    }
    if (n) WB_INFO(MOD, "login %lld: %zu buffered group change(s) to show", (long long)l->id, n);
    db_group_events_free(rows, n);
}

/* Leases held by an earlier process on this host that is gone (killed, crashed) are released:
 * waiting for them to expire would keep those logins down for up to a minute. */
static void release_dead_leases(br_bridge *b)
{
    const char *colon = strrchr(b->owner, ':');
    size_t host_len = colon ? (size_t)(colon - b->owner) : 0;
    db_login rows[64];
    size_t n = 0;
    if (!host_len || db_login_list(b->db_main, NULL, rows, 64, &n) != DB_OK) return;
    for (size_t i = 0; i < n; i++) {
        const char *o = rows[i].owner;
        if (!o[0] || strcmp(o, b->owner) == 0 || strncmp(o, b->owner, host_len + 1) != 0) continue;
        long pid = strtol(o + host_len + 1, NULL, 10);
        if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            WB_INFO(MOD, "login %lld: the lease of %s (gone) is released", (long long)rows[i].id,
                    o);
            db_login_release(b->db_main, rows[i].id, o);
        }
    }
}

int br_logins_resume(br_bridge *b)
{
    int64_t ids[256];
    size_t n = 0;
    static _Atomic bool first = true;
    if (atomic_exchange(&first, false)) release_dead_leases(b);
    if (db_login_lease(b->db_main, b->owner, BR_LEASE_MS, ids, 256, &n) != DB_OK) {
        WB_WARN(MOD, "taking login leases failed: %s", db_conn_error(b->db_main)->message);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (br_login_find(b, ids[i])) continue;
        db_login row;
        if (db_login_get(b->db_main, ids[i], &row) != DB_OK) continue;
        if (strcmp(row.state, "logged_out") == 0) continue;
        if (strcmp(row.state, "new") == 0 || strcmp(row.state, "pairing") == 0) {
            /* a login that never finished pairing: nobody is watching its QR any more */
            db_login_delete(b->db_main, ids[i]);
            continue;
        }
        br_login *l = login_new(b, row.id, row.mxid);
        if (!l) break;
        snprintf(l->phone, sizeof(l->phone), "%s", row.phone);
        db_user_management_room(b->db_main, row.mxid, l->mgmt_room, sizeof(l->mgmt_room));
        char err[1024];
        if (login_list(b, l, err, sizeof(err))) {
            WB_WARN(MOD, "login %lld could not start: %s", (long long)row.id, err);
            break;
        }
        /* what was decrypted but not bridged goes first, before anything new arrives */
        requeue_buffer(b, l);
        requeue_group_events(b, l);
        if (login_start(b, l, err, sizeof(err)))
            WB_WARN(MOD, "login %lld could not start: %s", (long long)row.id, err);
        else
            WB_INFO(MOD, "login %lld (+%s of %s) started", (long long)row.id, row.phone, row.mxid);
    }
    return 0;
}

/* ---- removing ---- */

typedef struct free_req {
    br_login *l;
} free_req;

static void free_on_engine(void *arg)
{
    br_login *l = arg;
    if (l->handle >= 0) {
        wa_worker_remove(l->eng->w, l->handle);
        l->eng->by_handle[l->handle] = NULL;
    }
    if (l->client) {
        wa_client_free(l->client);
        l->client = NULL;
        l->store.destroy(l->store.ctx);
    }
}

/* Stops and unlists a login (its rows stay unless the caller deletes them). Not from the engine
 * thread. The struct stays allocated (late jobs may still hold its id; they find nothing). */
static void forget_login(br_bridge *b, br_login *l)
{
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->n_logins; i++)
        if (b->logins[i] == l) {
            b->logins[i] = b->logins[--b->n_logins];
            break;
        }
    l->next_dead = b->dead;
    b->dead = l;
    pthread_mutex_unlock(&b->lock);
    l->removed = true;
    wa_worker_run(l->eng->w, free_on_engine, l, true);
    pthread_mutex_lock(&l->send_lock);
    pthread_cond_broadcast(&l->send_cond);
    pthread_mutex_unlock(&l->send_lock);
}

static void logout_on_engine(wa_client *c, void *arg)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *(int *)arg = wa_client_logout(c, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

int br_login_logout(br_pworker *pw, br_login *l)
{
    int rc = 0;
    if (l->handle >= 0) wa_worker_call(l->eng->w, l->handle, logout_on_engine, &rc, true);
    forget_login(pw->b, l);
    br_room_forget_login(pw->b, l->id);
    db_login_delete(pw->db, l->id);
    return rc;
}

/* Sends never acked at shutdown: their completions cannot run any more (the Matrix inbox keeps
 * their events, replayed at the next start with the same message ids). */
static void free_pending(br_login *l)
{
    while (l->pending) {
        br_pending_send *p = l->pending;
        l->pending = p->next;
        if (p->done) free(p->done->ctx);
        free(p->done);
        pending_free(p);
    }
}

void br_logins_stop(br_bridge *b)
{
    pthread_mutex_lock(&b->lock);
    size_t n = b->n_logins;
    br_login *all[BR_MAX_LOGINS];
    memcpy(all, b->logins, n * sizeof(all[0]));
    b->n_logins = 0;
    pthread_mutex_unlock(&b->lock);
    for (size_t i = 0; i < n; i++) {
        br_login *l = all[i];
        l->removed = true;
        wa_worker_run(l->eng->w, free_on_engine, l, true);
        db_login_release(b->db_main, l->id, b->owner);
        free_pending(l);
        pthread_mutex_destroy(&l->send_lock);
        pthread_cond_destroy(&l->send_cond);
        free(l);
    }
    while (b->dead) {
        br_login *l = b->dead;
        b->dead = l->next_dead;
        free_pending(l);
        pthread_mutex_destroy(&l->send_lock);
        pthread_cond_destroy(&l->send_cond);
        free(l);
    }
}

/* ---- sending for the portals ---- */

/* A deep copy of what a wa_msg owns (text, mentions, reply text); the rest is by value. */
static void msg_copy(wa_msg *dst, const wa_msg *src)
{
    *dst = *src;
    dst->text = src->text ? strdup(src->text) : NULL;
    dst->reply_text = src->reply_text ? strdup(src->reply_text) : NULL;
    dst->skdm = NULL;
    dst->skdm_len = 0;
    dst->mentions = NULL;
    dst->n_mentions = 0;
    if (src->n_mentions && (dst->mentions = calloc(src->n_mentions, sizeof(char *)))) {
        for (size_t i = 0; i < src->n_mentions; i++)
            if ((dst->mentions[i] = strdup(src->mentions[i]))) dst->n_mentions = i + 1;
    }
}

static void pending_free(br_pending_send *p)
{
    free(p->msg.text);
    free(p->msg.reply_text);
    for (size_t i = 0; i < p->msg.n_mentions; i++)
        free(p->msg.mentions[i]);
    free(p->msg.mentions);
    free(p);
}

/* Lists p last among l's pending sends (in order: sent again in this order after a reconnect);
 * count: n_pending grows too. */
static void pending_append(br_login *l, br_pending_send *p, bool count)
{
    pthread_mutex_lock(&l->send_lock);
    br_pending_send **tail = &l->pending;
    while (*tail)
        tail = &(*tail)->next;
    p->next = NULL;
    *tail = p;
    if (count) l->n_pending++;
    pthread_mutex_unlock(&l->send_lock);
}

typedef struct send_req {
    br_login *l;
    const char *to;
    const wa_msg *m;
    char id[WA_MESSAGE_ID_MAX];
    int rc;
    br_pending_send *p;
} send_req;

static void send_on_engine(wa_client *c, void *arg)
{
    send_req *r = arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r->rc = wa_client_send_message_id(c, r->to, r->m, r->id,
                                      (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    if (r->rc == WA_OK) {
        r->p->result = 0;
        /* listed before the events of this step are dispatched, so the ack is never missed */
        pending_append(r->l, r->p, true);
    }
}

void br_message_id_for(const char *event_id, char id[WA_MESSAGE_ID_MAX])
{
    uint8_t h[32];
    wa_sha256((const uint8_t *)event_id, strlen(event_id), h);
    static const char hex[] = "0123456789ABCDEF";
    memcpy(id, "3EB0", 4);
    for (int i = 0; i < 8; i++) {
        id[4 + 2 * i] = hex[h[i] >> 4];
        id[5 + 2 * i] = hex[h[i] & 15];
    }
    id[20] = '\0';
}

/* Hands the send to the engine (waiting for the connection when it is coming); p is listed as
 * pending before the engine can report the ack. 0, or -1 with err (p not listed). */
static int submit_send(br_login *l, const char *to, const wa_msg *m, br_pending_send *p, char *err,
                       size_t errcap)
{
    if (l->removed || l->handle < 0) {
        snprintf(err, errcap, "not logged in");
        return -1;
    }
    snprintf(p->to, sizeof(p->to), "%s", to);
    msg_copy(&p->msg, m);
    send_req r = {.l = l, .to = to, .m = m, .p = p};
    snprintf(r.id, sizeof(r.id), "%s", p->id);
    /* not connected yet (starting, reconnecting): wait for it rather than fail */
    int64_t give_up = br_now_ms() + BR_SEND_WAIT_MS;
    for (;;) {
        wa_worker_call(l->eng->w, l->handle, send_on_engine, &r, true);
        wa_client_state st = (wa_client_state)atomic_load(&l->state);
        if (r.rc != WA_ERR_STATE || l->removed || st == WA_CLIENT_LOGGED_OUT ||
            st == WA_CLIENT_IDLE || br_now_ms() > give_up || atomic_load(&l->eng->b->stopping))
            break;
        struct timespec pause = {0, 100 * 1000000L};
        nanosleep(&pause, NULL);
    }
    if (r.rc != WA_OK) {
        snprintf(err, errcap, "%s",
                 r.rc == WA_ERR_STATE ? "not connected to WhatsApp" : wa_strerror(r.rc));
        return -1;
    }
    return 0;
}

/* On the engine: an asynchronous send listed (in order: sent again in this order after a
 * reconnect) and handed to the client. Not connected: it waits in the list for the connection
 * (resend_unacked); refused: completed as failed now. */
static void send_async_on_engine(wa_client *c, void *arg)
{
    br_pending_send *p = arg;
    br_login *l = p->login;
    pending_append(l, p, false); /* (counted in n_pending when it was submitted) */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int rc = wa_client_send_message_id(c, p->to, &p->msg, p->id,
                                       (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    wa_client_state st = wa_client_get_state(c);
    if (rc == WA_OK ||
        (rc == WA_ERR_STATE && st != WA_CLIENT_LOGGED_OUT && st != WA_CLIENT_IDLE && !l->removed))
        return;
    bool listed = false;
    pthread_mutex_lock(&l->send_lock);
    for (br_pending_send **pp = &l->pending; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            l->n_pending--;
            listed = true;
            break;
        }
    pthread_cond_broadcast(&l->send_cond);
    pthread_mutex_unlock(&l->send_lock);
    if (listed)
        complete_async(l->eng->b, p, -1,
                       rc == WA_ERR_STATE       ? "not connected to WhatsApp"
                       : rc == WA_ERR_TOO_LARGE ? "too many messages are waiting to be sent; "
                                                  "send it again in a moment"
                                                : wa_strerror(rc));
}

int br_login_send_async(br_login *l, const char *to, const wa_msg *m, const char *id,
                        const char *key, br_job_fn done_fn, void *ctx, char *err, size_t errcap)
{
    if (l->removed || l->handle < 0) {
        snprintf(err, errcap, "not logged in");
        return -1;
    }
    br_pending_send *p = calloc(1, sizeof(*p));
    br_send_done *d = calloc(1, sizeof(*d));
    if (!p || !d) {
        free(p);
        free(d);
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    snprintf(p->id, sizeof(p->id), "%s", id);
    snprintf(p->key, sizeof(p->key), "%s", key);
    snprintf(p->to, sizeof(p->to), "%s", to);
    msg_copy(&p->msg, m);
    p->login = l;
    p->done_fn = done_fn;
    p->done = d;
    d->ctx = ctx;
    p->deadline_ms = br_now_ms() + BR_SEND_WAIT_MS;
    /* at most BR_MAX_INFLIGHT sends of a login are on their way at once: the portal queue
     * waits here, in order; the engine takes the send without the portal waiting for it */
    pthread_mutex_lock(&l->send_lock);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += BR_SEND_WAIT_MS / 1000;
    while (l->n_pending >= BR_MAX_INFLIGHT && !l->removed)
        if (pthread_cond_timedwait(&l->send_cond, &l->send_lock, &dl) != 0) break;
    l->n_pending++;
    pthread_mutex_unlock(&l->send_lock);
    if (wa_worker_call(l->eng->w, l->handle, send_async_on_engine, p, false) != 0) {
        pthread_mutex_lock(&l->send_lock);
        l->n_pending--;
        pthread_mutex_unlock(&l->send_lock);
        pending_free(p);
        free(d);
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    return 0; /* p belongs to the engine now, then to the pending list */
}

int br_login_send(br_login *l, const char *to, const wa_msg *m, const char *id, char *err,
                  size_t errcap)
{
    br_pending_send *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    snprintf(p->id, sizeof(p->id), "%s", id);
    if (submit_send(l, to, m, p, err, errcap) != 0) {
        pending_free(p);
        return -1;
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += BR_SEND_WAIT_MS / 1000;
    pthread_mutex_lock(&l->send_lock);
    while (p->result == 0 && !l->removed)
        if (pthread_cond_timedwait(&l->send_cond, &l->send_lock, &dl) != 0) break;
    int result = p->result;
    WB_DEBUG(MOD, "login %lld: send %s to %s: %s", (long long)l->id, p->id, to,
             result == 1    ? "acked"
             : result == -1 ? "refused"
                            : "no ack in time");
    for (br_pending_send **pp = &l->pending; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            l->n_pending--;
            break;
        }
    pthread_mutex_unlock(&l->send_lock);
    pending_free(p);
    if (result == 1) return 0;
    snprintf(err, errcap, "%s",
             result == -1 ? "WhatsApp did not accept the message"
                          : "no answer from WhatsApp in time");
    return -1;
}

/* ---- receipts and chat state for the portals (fire and forget) ---- */

typedef struct mark_req {
    char chat[DB_ID_MAX];
    char sender[DB_ID_MAX]; /* a group message's sender, "" in a DM */
    char id[WA_MESSAGE_ID_MAX + 96];
    int state; /* chat state: -1 = a read receipt instead */
} mark_req;

static void mark_on_engine(wa_client *c, void *arg)
{
    mark_req *r = arg;
    if (r->state < 0) {
        const char *ids[1] = {r->id};
        int rc = wa_client_mark_read(c, r->chat, r->sender[0] ? r->sender : NULL, ids, 1, false,
                                     (uint64_t)time(NULL));
        WB_DEBUG(MOD, "read receipt for %s in %s: %s", r->id, r->chat, wa_strerror(rc));
    } else {
        wa_client_send_chat_state(c, r->chat, (wa_chat_state)r->state);
    }
    free(r);
}

static void post_mark(br_login *l, const char *chat, const char *sender, const char *id, int state)
{
    if (l->removed || l->handle < 0) return;
    if ((wa_client_state)atomic_load(&l->state) != WA_CLIENT_CONNECTED) return; /* not kept */
    mark_req *r = calloc(1, sizeof(*r));
    if (!r) return;
    snprintf(r->chat, sizeof(r->chat), "%s", chat);
    snprintf(r->id, sizeof(r->id), "%s", id ? id : "");
    snprintf(r->sender, sizeof(r->sender), "%s", sender ? sender : "");
    r->state = state;
    if (wa_worker_call(l->eng->w, l->handle, mark_on_engine, r, false) != 0) free(r);
}

void br_login_mark_read(br_login *l, const char *chat, const char *wa_id)
{
    post_mark(l, chat, NULL, wa_id, -1);
}

void br_login_mark_read_from(br_login *l, const char *chat, const char *sender, const char *wa_id)
{
    post_mark(l, chat, sender, wa_id, -1);
}

void br_login_chat_state(br_login *l, const char *chat, bool typing)
{
    post_mark(l, chat, NULL, NULL, typing ? WA_CHAT_COMPOSING : WA_CHAT_PAUSED);
}
