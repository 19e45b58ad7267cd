/*
 * bridge/portal.c - portals (a Matrix room for a WhatsApp chat), their ghosts, and the messages
 * that cross: WhatsApp -> Matrix (from the engine or the event buffer) and Matrix -> WhatsApp
 * (from the inbox). Runs on portal workers; one portal's jobs run in order on one worker.
 *
 * Nothing is lost: a WhatsApp message leaves the engine's event buffer only after its Matrix event
 * id is stored in `message`; a Matrix event leaves the inbox only after it was sent (or answered
 * with a notice). A message already mapped is not bridged twice (a restart re-reads both inboxes),
 * and the homeserver send uses a transaction id made from the WhatsApp id, so a send repeated after
 * a crash is not duplicated either.
 */
#include "bridge/bridge_internal.h"
#include "bridge/format.h"
#include "wa/message.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD           "portal"
#define RETRY_MS      2000

void br_portal_key(int64_t login_id, const char *chat_user_jid, char *key, size_t cap)
{
    snprintf(key, cap, "portal:%lld:%s", (long long)login_id, chat_user_jid);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* "15551234567@s.whatsapp.net" -> "15551234567"; "123@lid" -> "lid-123". */
static bool ghost_id_of(const char *jid, char *id, size_t cap)
{
    wa_jid j;
    if (wa_jid_parse_cstr(jid, &j) != WA_OK || !j.user[0]) return false;
    wa_jid_kind k = wa_jid_kind_of(&j);
    if (k == WA_JID_PN || k == WA_JID_LEGACY)
        snprintf(id, cap, "%s", j.user);
    else if (k == WA_JID_LID)
        snprintf(id, cap, "lid-%s", j.user);
    else
        return false;
    return true;
}

static void user_jid_of(const char *jid, char *out, size_t cap)
{
    wa_jid j;
    out[0] = '\0';
    if (wa_jid_parse_cstr(jid, &j) != WA_OK) return;
    j.device = 0;
    j.ad = false;
    j.agent = 0;
    wa_jid_format(&j, out, cap);
}

/* The ghost of a WhatsApp user: registered on the homeserver, its display name kept current.
 * mxid gets its Matrix id. */
static int ghost_ensure(br_pworker *pw, const char *jid, const char *push_name, char *mxid,
                        size_t cap)
{
    const br_config *cfg = pw->b->cfg;
    char id[DB_ID_MAX], local[DB_ID_MAX];
    if (!ghost_id_of(jid, id, sizeof(id))) return -1;
    if (br_config_ghost_localpart(cfg, id, local, sizeof(local)) != 0) return -1;
    if ((size_t)snprintf(mxid, cap, "@%s:%s", local, cfg->hs_domain) >= cap) return -1;
    mx_error err;
    if (mx_client_ensure_registered(pw->mx, local, &err) != MX_OK) {
        WB_WARN(MOD, "registering ghost %s failed: %s", mxid, err.error);
        return -1;
    }
    db_ghost g;
    bool known = db_ghost_get(pw->db, jid, &g) == DB_OK;
    char name[DB_ID_MAX];
    const char *phone = strncmp(id, "lid-", 4) == 0 ? "" : id;
    br_config_displayname(cfg, push_name && push_name[0] ? push_name : (known ? g.name : ""), "",
                          phone, jid, name, sizeof(name));
    bool want_name = (push_name && push_name[0]) || !known;
    if (!known || (want_name && strcmp(g.name, name) != 0)) {
        if (mx_client_set_displayname(pw->mx, mxid, name, &err) != MX_OK)
            WB_WARN(MOD, "setting %s's name failed: %s", mxid, err.error);
        memset(&g, 0, sizeof(g));
        snprintf(g.jid, sizeof(g.jid), "%s", jid);
        snprintf(g.mxid, sizeof(g.mxid), "%s", mxid);
        snprintf(g.name, sizeof(g.name), "%s", name);
        db_ghost_upsert(pw->db, &g);
    }
    return 0;
}

int br_portal_ensure_dm(br_pworker *pw, br_login *l, const char *chat, const char *name_hint,
                        db_portal *out)
{
    br_bridge *b = pw->b;
    int64_t pid;
    if (db_portal_ensure(pw->db, chat, l->id, &pid) != DB_OK ||
        db_portal_get(pw->db, pid, out) != DB_OK) {
        WB_WARN(MOD, "portal row for %s: %s", chat, db_conn_error(pw->db)->message);
        return -1;
    }
    if (out->mxid[0]) return 0;
    char ghost[DB_ID_MAX];
    if (ghost_ensure(pw, chat, name_hint, ghost, sizeof(ghost))) return -1;
    db_ghost g;
    const char *name = db_ghost_get(pw->db, chat, &g) == DB_OK ? g.name : chat;
    const char *invite[] = {l->mxid, b->bot_mxid, NULL};
    cJSON *pl = cJSON_CreateObject();
    cJSON *users = cJSON_AddObjectToObject(pl, "users");
    cJSON_AddNumberToObject(users, ghost, 100);
    cJSON_AddNumberToObject(users, b->bot_mxid, 100);
    cJSON_AddNumberToObject(users, l->mxid, 50);
    mx_create_room opts = {.name = name,
                           .preset = "trusted_private_chat",
                           .is_direct = true,
                           .invite = invite,
                           .power_level_override = pl};
    char *room = NULL;
    mx_error err;
    int rc = mx_client_create_room(pw->mx, ghost, &opts, &room, &err);
    cJSON_Delete(pl);
    if (rc != MX_OK) {
        WB_WARN(MOD, "creating the room for %s failed: %s", chat, err.error);
        return -1;
    }
    if (mx_client_join(pw->mx, NULL, room, NULL, &err) != MX_OK)
        WB_WARN(MOD, "the bot could not join %s: %s", room, err.error);
    db_portal_set_mxid(pw->db, pid, room);
    db_portal_set_name(pw->db, pid, name, "");
    snprintf(out->mxid, sizeof(out->mxid), "%s", room);
    br_room_remember(b, room, chat, l->id, pid);
    WB_INFO(MOD, "portal %lld: %s <-> %s (login %lld)", (long long)pid, room, chat,
            (long long)l->id);
    free(room);
    return 0;
}

/* ---- mentions: WhatsApp users <-> Matrix users ---- */

static bool resolve_jid_to_mx(void *ctx, const char *jid, char *mxid, size_t mxid_cap, char *name,
                              size_t name_cap)
{
    br_pworker *pw = ctx;
    char id[DB_ID_MAX], user[DB_ID_MAX], local[DB_ID_MAX];
    user_jid_of(jid, user, sizeof(user));
    if (!ghost_id_of(user, id, sizeof(id)) ||
        br_config_ghost_localpart(pw->b->cfg, id, local, sizeof(local)) != 0)
        return false;
    if ((size_t)snprintf(mxid, mxid_cap, "@%s:%s", local, pw->b->cfg->hs_domain) >= mxid_cap)
        return false;
    db_ghost g;
    snprintf(name, name_cap, "%s", db_ghost_get(pw->db, user, &g) == DB_OK && g.name[0] ? g.name : "");
    return true;
}

static bool resolve_mx_to_jid(void *ctx, const char *mxid, char *jid, size_t jid_cap)
{
    br_pworker *pw = ctx;
    const char *colon = strchr(mxid, ':');
    if (mxid[0] != '@' || !colon) return false;
    char local[DB_ID_MAX], id[DB_ID_MAX];
    size_t n = (size_t)(colon - mxid - 1);
    if (n >= sizeof(local)) return false;
    memcpy(local, mxid + 1, n);
    local[n] = '\0';
    if (strcmp(colon + 1, pw->b->cfg->hs_domain) == 0 &&
        br_config_ghost_id(pw->b->cfg, local, id, sizeof(id))) {
        if (strncmp(id, "lid-", 4) == 0)
            return (size_t)snprintf(jid, jid_cap, "%s@lid", id + 4) < jid_cap;
        return (size_t)snprintf(jid, jid_cap, "%s@s.whatsapp.net", id) < jid_cap;
    }
    /* a Matrix user with a login: their own WhatsApp number */
    br_login *ls[1];
    if (br_logins_of(pw->b, mxid, ls, 1) == 1 && ls[0]->phone[0])
        return (size_t)snprintf(jid, jid_cap, "%s@s.whatsapp.net", ls[0]->phone) < jid_cap;
    return false;
}

static br_format_resolver resolver_of(br_pworker *pw)
{
    br_format_resolver r = {.ctx = pw, .jid_to_mx = resolve_jid_to_mx,
                            .mx_to_jid = resolve_mx_to_jid};
    return r;
}

/* ---- WhatsApp -> Matrix ---- */

static void br_wa_msg_release(br_wa_msg *m)
{
    free(m->plaintext);
    free(m);
}

/* One attempt; 0 done (bridged, duplicate, or dropped for good), -1 try again later. */
static int bridge_wa_message(br_pworker *pw, br_wa_msg *m)
{
    br_bridge *b = pw->b;
    br_login *l = br_login_find(b, m->login_id);
    if (!l) {
        /* logged out meanwhile (its buffer went with it), or not running here (yet): keep it */
        db_login row;
        return db_login_get(pw->db, m->login_id, &row) == DB_OK &&
                       strcmp(row.state, "logged_out") != 0
                   ? -1
                   : 0;
    }
    const uint8_t *text = NULL, *dest = NULL;
    size_t text_len = 0, dest_len = 0;
    char chat[DB_ID_MAX], sender[DB_ID_MAX];
    user_jid_of(m->chat, chat, sizeof(chat));
    user_jid_of(m->sender, sender, sizeof(sender));
    int prc = m->plaintext ? wa_message_get_text(m->plaintext, m->len, &text, &text_len, &dest,
                                                 &dest_len)
                           : WA_ERR_CRYPTO;
    bool own = false;
    if (dest && dest_len > 0 && dest_len < sizeof(chat)) {
        /* sent from another device of this account: it belongs to the chat it went to */
        char d[DB_ID_MAX];
        memcpy(d, dest, dest_len);
        d[dest_len] = '\0';
        user_jid_of(d, chat, sizeof(chat));
        own = true;
    }
    wa_jid cj;
    if (!chat[0] || wa_jid_parse_cstr(chat, &cj) != WA_OK ||
        (wa_jid_kind_of(&cj) != WA_JID_PN && wa_jid_kind_of(&cj) != WA_JID_LID)) {
        WB_INFO(MOD, "login %lld: message %s in %s: chat kind not bridged yet", (long long)l->id,
                m->id, m->chat);
        db_event_buffer_done(pw->db, l->id, m->chat, m->id);
        return 0;
    }
    db_portal portal;
    if (br_portal_ensure_dm(pw, l, chat, own ? "" : m->notify, &portal)) return -1;
    db_message prev;
    if (db_message_by_wa(pw->db, portal.id, m->id, "", &prev) == DB_OK) {
        db_event_buffer_done(pw->db, l->id, m->chat, m->id);
        return 0; /* bridged before (a redelivery or a restart) */
    }
    char ghost[DB_ID_MAX];
    const char *as_user = NULL; /* own messages come through the bot */
    if (!own) {
        if (ghost_ensure(pw, sender, m->notify, ghost, sizeof(ghost))) return -1;
        as_user = ghost;
    }
    cJSON *c = cJSON_CreateObject();
    if (prc == WA_OK) {
        char *raw = strndup((const char *)text, text_len);
        br_format_resolver res = resolver_of(pw);
        br_formatted f = {0};
        cJSON_AddStringToObject(c, "msgtype", own ? "m.notice" : "m.text");
        if (raw && br_format_wa_to_mx(raw, NULL, 0, &res, &f) == 0) {
            cJSON_AddStringToObject(c, "body", f.body);
            if (f.html) {
                cJSON_AddStringToObject(c, "format", "org.matrix.custom.html");
                cJSON_AddStringToObject(c, "formatted_body", f.html);
            }
            br_formatted_free(&f);
        } else {
            cJSON_AddStringToObject(c, "body", raw ? raw : "");
        }
        free(raw);
    } else {
        cJSON_AddStringToObject(c, "msgtype", "m.notice");
        cJSON_AddStringToObject(c, "body", prc == WA_ERR_CRYPTO
                                               ? "⚠ A message could not be decrypted."
                                               : "⚠ A message of a kind not bridged yet.");
    }
    if (own) {
        cJSON *o = cJSON_AddObjectToObject(c, "fi.mau.whatsapp.own_device");
        cJSON_AddBoolToObject(o, "from_own_device", true);
    }
    char txn[DB_ID_MAX + 64];
    snprintf(txn, sizeof(txn), "wa-%lld-%s", (long long)l->id, m->id);
    for (char *p = txn; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            *p = '_';
    char *event_id = NULL;
    mx_error err;
    int rc = mx_client_send(pw->mx, as_user, portal.mxid, "m.room.message", c, txn, m->ts_ms,
                            &event_id, &err);
    cJSON_Delete(c);
    if (rc != MX_OK) {
        WB_WARN(MOD, "sending %s to %s failed: %s", m->id, portal.mxid, err.error);
        return err.http_status == 403 || err.http_status == 400 ? 0 : -1;
    }
    db_message row = {.portal_id = portal.id, .login_id = l->id, .timestamp_ms = m->ts_ms};
    snprintf(row.wa_id, sizeof(row.wa_id), "%s", m->id);
    snprintf(row.sender_jid, sizeof(row.sender_jid), "%s", own ? "" : sender);
    snprintf(row.mxid, sizeof(row.mxid), "%s", event_id);
    snprintf(row.mx_room, sizeof(row.mx_room), "%s", portal.mxid);
    free(event_id);
    int drc = db_message_insert(pw->db, &row);
    if (drc != DB_OK && drc != DB_ERR_UNIQUE) {
        WB_WARN(MOD, "storing the mapping of %s failed: %s", m->id,
                db_conn_error(pw->db)->message);
        return -1;
    }
    db_event_buffer_done(pw->db, l->id, m->chat, m->id);
    atomic_fetch_add(&b->stats.wa_bridged, 1);
    return 0;
}

void br_portal_job_wa_message(br_pworker *pw, void *arg)
{
    br_wa_msg *m = arg;
    WB_DEBUG(MOD, "login %lld: bridging %s from %s", (long long)m->login_id, m->id, m->sender);
    while (bridge_wa_message(pw, m) != 0) {
        WB_DEBUG(MOD, "login %lld: %s not bridged yet, again in %d ms", (long long)m->login_id,
                 m->id, RETRY_MS);
        if (atomic_load(&pw->b->stopping)) break; /* stays in the event buffer for next time */
        sleep_ms(RETRY_MS);
    }
    br_wa_msg_release(m);
}

/* ---- Matrix -> WhatsApp ---- */

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void bridge_mx_message(br_pworker *pw, const br_room_ref *ref, const cJSON *ev,
                              const char *sender, const char *event_id)
{
    br_bridge *b = pw->b;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(ev, "content");
    const char *msgtype = jstr(content, "msgtype"), *body = jstr(content, "body");
    br_login *l = br_login_find(b, ref->receiver);
    if (!l) {
        db_login row;
        if (db_login_get(pw->db, ref->receiver, &row) == DB_OK && strcmp(row.mxid, sender) == 0)
            br_notice(pw, ref->room, "⚠ Your message was not sent: this WhatsApp login is not "
                      "running (state %s). Send `login qr` in the management room.", row.state);
        return;
    }
    if (strcmp(l->mxid, sender) != 0) return; /* someone else in a DM portal (relay mode later) */
    const cJSON *rel = cJSON_GetObjectItemCaseSensitive(content, "m.relates_to");
    if (rel && jstr(rel, "rel_type") && strcmp(jstr(rel, "rel_type"), "m.replace") == 0) {
        br_notice(pw, ref->room, "⚠ Edits are not bridged to WhatsApp yet.");
        return;
    }
    if (!msgtype || !body ||
        (strcmp(msgtype, "m.text") != 0 && strcmp(msgtype, "m.emote") != 0 &&
         strcmp(msgtype, "m.notice") != 0)) {
        br_notice(pw, ref->room, "⚠ Your %s message was not bridged: that kind is not bridged yet.",
                  msgtype ? msgtype : "(no msgtype)");
        atomic_fetch_add(&b->stats.failures, 1);
        return;
    }
    const char *format = jstr(content, "format"), *html = jstr(content, "formatted_body");
    if (!format || strcmp(format, "org.matrix.custom.html") != 0) html = NULL;
    bool is_reply = rel && cJSON_GetObjectItemCaseSensitive(rel, "m.in_reply_to");
    br_format_resolver res = resolver_of(pw);
    br_wa_text wt = {0};
    if (br_format_mx_to_wa_ex(body, html, is_reply, &res, &wt) != 0) {
        br_notice(pw, ref->room, "⚠ Your message could not be converted for WhatsApp.");
        return;
    }
    char text[65536];
    if (strcmp(msgtype, "m.emote") == 0)
        snprintf(text, sizeof(text), "_* %s_", wt.text);
    else
        snprintf(text, sizeof(text), "%s", wt.text);
    wa_msg m = {.kind = WA_MSG_TEXT, .text = text, .mentions = wt.mentions,
                .n_mentions = wt.n_mentions};
    /* the id comes from the event: sent again after a crash, it is the same message */
    char id[WA_MESSAGE_ID_MAX], err[256];
    br_message_id_for(event_id, id);
    int rc = br_login_send(l, ref->chat, &m, id, err, sizeof(err));
    br_wa_text_free(&wt);
    if (rc != 0) {
        br_notice(pw, ref->room, "⚠ Your message was not sent to WhatsApp: %s.", err);
        atomic_fetch_add(&b->stats.failures, 1);
        return;
    }
    db_message row = {.portal_id = ref->portal_id, .login_id = l->id, .timestamp_ms = br_now_ms()};
    snprintf(row.wa_id, sizeof(row.wa_id), "%s", id);
    snprintf(row.sender_jid, sizeof(row.sender_jid), "%s", wa_client_jid(l->client));
    snprintf(row.mxid, sizeof(row.mxid), "%s", event_id);
    snprintf(row.mx_room, sizeof(row.mx_room), "%s", ref->room);
    int drc = db_message_insert(pw->db, &row);
    if (drc != DB_OK && drc != DB_ERR_UNIQUE) /* UNIQUE: sent before a restart, mapped already */
        WB_WARN(MOD, "storing the mapping of %s failed: %s", event_id,
                db_conn_error(pw->db)->message);
    atomic_fetch_add(&b->stats.mx_bridged, 1);
}

void br_portal_job_mx_event(br_pworker *pw, void *arg)
{
    br_mx_job *job = arg;
    br_bridge *b = pw->b;
    const cJSON *ev = job->ev;
    const char *type = jstr(ev, "type"), *sender = jstr(ev, "sender"), *room = jstr(ev, "room_id"),
               *event_id = jstr(ev, "event_id"), *state_key = jstr(ev, "state_key");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(ev, "content");
    if (!type || !sender || !room || br_is_ours(b, sender)) goto done;
    if (strcmp(type, "m.room.member") == 0 && state_key && strcmp(state_key, b->bot_mxid) == 0) {
        const char *membership = jstr(content, "membership");
        if (membership && strcmp(membership, "invite") == 0) {
            const cJSON *direct = cJSON_GetObjectItemCaseSensitive(content, "is_direct");
            br_command_on_invite(pw, room, sender, cJSON_IsTrue(direct));
        }
        goto done;
    }
    if (strcmp(type, "m.room.message") != 0 || !event_id) goto done;
    br_room_ref ref;
    if (br_room_lookup(b, room, &ref)) {
        bridge_mx_message(pw, &ref, ev, sender, event_id);
        goto done;
    }
    const char *body = jstr(content, "body");
    if (!body) goto done;
    char owner[DB_ID_MAX];
    bool mgmt = db_user_by_management_room(pw->db, room, owner, sizeof(owner)) == DB_OK &&
                strcmp(owner, sender) == 0;
    br_command_handle(pw, room, sender, body, mgmt);
done:
    db_inbox_delete(pw->db, job->inbox_id);
    cJSON_Delete(job->ev);
    free(job);
}
