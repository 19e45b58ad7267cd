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
#include "bridge/group.h"
#include "wa/message.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD      "portal"
#define RETRY_MS 2000

/* Copies src into dst (cap bytes), cut at a character boundary when too long. */
static void set_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

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
    /* seen just now with the same push name: registered, name set (the hot path) */
    size_t slot = (size_t)(br_hash(jid) % (sizeof(pw->ghost_seen) / sizeof(pw->ghost_seen[0])));
    const char *pn = push_name ? push_name : "";
    if (strcmp(pw->ghost_seen[slot].jid, jid) == 0 &&
        (!pn[0] || strcmp(pw->ghost_seen[slot].push, pn) == 0))
        return 0;
    mx_error err;
    if (mx_client_ensure_registered(pw->mx, local, &err) != MX_OK) {
        WB_WARN(MOD, "registering ghost %s failed: %s", mxid, err.error);
        return -1;
    }
    if (strlen(jid) < sizeof(pw->ghost_seen[slot].jid) &&
        strlen(pn) < sizeof(pw->ghost_seen[slot].push)) {
        memcpy(pw->ghost_seen[slot].jid, jid, strlen(jid) + 1);
        memcpy(pw->ghost_seen[slot].push, pn, strlen(pn) + 1);
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

bool br_portal_ghost_of(br_pworker *pw, const char *jid, char *mxid, size_t cap, char *name,
                        size_t name_cap)
{
    if (ghost_ensure(pw, jid, NULL, mxid, cap) != 0) return false;
    db_ghost g;
    snprintf(name, name_cap, "%s", db_ghost_get(pw->db, jid, &g) == DB_OK ? g.name : "");
    return true;
}

int br_portal_ensure_dm(br_pworker *pw, br_login *l, const char *chat, const char *name_hint,
                        db_portal *out)
{
    br_bridge *b = pw->b;
    br_room_ref ref;
    if (br_room_of_chat(b, l->id, chat, &ref)) { /* the hot path: known portal, known room */
        memset(out, 0, sizeof(*out));
        out->id = ref.portal_id;
        out->receiver_login_id = l->id;
        set_str(out->chat_jid, sizeof(out->chat_jid), chat);
        set_str(out->mxid, sizeof(out->mxid), ref.room);
        return 0;
    }
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
    /* double puppeting: the user's invite is accepted for them */
    if (br_puppet_ok(pw, l)) br_puppet_join(pw, room, l->mxid);
    db_portal_set_mxid(pw->db, pid, room);
    db_portal_set_name(pw->db, pid, name, "");
    snprintf(out->mxid, sizeof(out->mxid), "%s", room);
    br_room_remember(b, room, chat, l->id, pid);
    WB_INFO(MOD, "portal %lld: %s <-> %s (login %lld)", (long long)pid, room, chat,
            (long long)l->id);
    free(room);
    return 0;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- mentions: WhatsApp users <-> Matrix users ---- */

static bool resolve_jid_to_mx(void *ctx, const char *jid, char *mxid, size_t mxid_cap, char *name,
                              size_t name_cap)
{
    br_pworker *pw = ctx;
    char id[DB_ID_MAX], user[DB_ID_MAX], local[DB_ID_MAX];
    br_user_jid(jid, user, sizeof(user));
    if (!ghost_id_of(user, id, sizeof(id)) ||
        br_config_ghost_localpart(pw->b->cfg, id, local, sizeof(local)) != 0)
        return false;
    if ((size_t)snprintf(mxid, mxid_cap, "@%s:%s", local, pw->b->cfg->hs_domain) >= mxid_cap)
        return false;
    db_ghost g;
    snprintf(name, name_cap, "%s",
             db_ghost_get(pw->db, user, &g) == DB_OK && g.name[0] ? g.name : "");
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
    br_format_resolver r = {
        .ctx = pw, .jid_to_mx = resolve_jid_to_mx, .mx_to_jid = resolve_mx_to_jid};
    return r;
}

/* ---- WhatsApp -> Matrix ---- */

static void br_wa_msg_release(br_wa_msg *m)
{
    free(m->plaintext);
    free(m);
}

/* One attempt; 0 done (bridged, duplicate, or dropped for good), -1 try again later. */
/* A homeserver transaction id for what a WhatsApp message becomes (the same after a crash). */
static void txn_of(int64_t login_id, const char *wa_id, char *txn, size_t cap)
{
    snprintf(txn, cap, "wa-%lld-%s", (long long)login_id, wa_id);
    for (char *p = txn; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            *p = '_';
}

/* The m.room.message content of a WhatsApp text: body, HTML, mentions, reply. */
static cJSON *text_content(br_pworker *pw, const db_portal *portal, const wa_msg *msg, bool own)
{
    cJSON *c = cJSON_CreateObject();
    br_format_resolver res = resolver_of(pw);
    br_formatted f = {0};
    cJSON_AddStringToObject(c, "msgtype", own ? "m.notice" : "m.text");
    if (br_format_wa_to_mx(msg->text ? msg->text : "", (const char *const *)msg->mentions,
                           msg->n_mentions, &res, &f) == 0) {
        cJSON_AddStringToObject(c, "body", f.body);
        if (f.html) {
            cJSON_AddStringToObject(c, "format", "org.matrix.custom.html");
            cJSON_AddStringToObject(c, "formatted_body", f.html);
        }
        br_formatted_free(&f);
    } else {
        cJSON_AddStringToObject(c, "body", msg->text ? msg->text : "");
    }
    if (msg->n_mentions) {
        cJSON *ids = cJSON_AddArrayToObject(cJSON_AddObjectToObject(c, "m.mentions"), "user_ids");
        for (size_t i = 0; i < msg->n_mentions; i++) {
            char mxid[DB_ID_MAX], name[DB_ID_MAX];
            if (resolve_jid_to_mx(pw, msg->mentions[i], mxid, sizeof(mxid), name, sizeof(name)))
                cJSON_AddItemToArray(ids, cJSON_CreateString(mxid));
        }
    }
    db_message quoted;
    if (msg->reply_id[0] &&
        db_message_by_wa(pw->db, portal->id, msg->reply_id, "", &quoted) == DB_OK) {
        cJSON *rel = cJSON_AddObjectToObject(c, "m.relates_to");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(rel, "m.in_reply_to"), "event_id",
                                quoted.mxid);
    }
    return c;
}

/* ---- duplicate checks of WhatsApp messages ---- */

static uint32_t absent_hash(int64_t portal_id, const char *id)
{
    uint32_t h = 2166136261u ^ (uint32_t)portal_id ^ (uint32_t)((uint64_t)portal_id >> 32);
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h & (BR_ABSENT_MAX - 1);
}

/* Takes note i (index) out of its bucket and frees its slot. */
static void absent_unlink(br_pworker *pw, uint32_t i)
{
    uint32_t *link = &pw->absent_bucket[absent_hash(pw->absent[i].portal_id, pw->absent[i].id)];
    while (*link && *link != i + 1)
        link = &pw->absent[*link - 1].next;
    if (*link) *link = pw->absent[i].next;
    pw->absent[i].portal_id = 0;
}

/* Takes (portal_id, id) off the worker's note of ids known absent; true when it was there. */
bool br_absent_take(br_pworker *pw, int64_t portal_id, const char *id)
{
    for (uint32_t k = pw->absent_bucket[absent_hash(portal_id, id)]; k;
         k = pw->absent[k - 1].next) {
        if (pw->absent[k - 1].portal_id != portal_id || strcmp(pw->absent[k - 1].id, id) != 0)
            continue;
        absent_unlink(pw, k - 1);
        return true;
    }
    return false;
}

/* Notes (portal_id, id) as absent; when the ring is full the oldest note goes (its check asks
 * again). Ids too long to note are asked about each time. */
void br_absent_note(br_pworker *pw, int64_t portal_id, const char *id)
{
    size_t len = strlen(id);
    if (len >= BR_ABSENT_ID || portal_id == 0) return;
    uint32_t i = pw->absent_next++ & (BR_ABSENT_MAX - 1);
    if (pw->absent[i].portal_id) absent_unlink(pw, i);
    pw->absent[i].portal_id = portal_id;
    memcpy(pw->absent[i].id, id, len + 1);
    uint32_t *bucket = &pw->absent_bucket[absent_hash(portal_id, id)];
    pw->absent[i].next = *bucket;
    *bucket = i + 1;
}

/* Bridged before (a mapping row of its first part in the portal)? Answered from the note, else
 * by one query for it and the messages of the same chat queued behind it on this worker, whose
 * answers are noted (a mapping row this worker stores takes its id off the note: br_absent_take;
 * the portal's rows are stored by this worker only). A failed query answers no, as the single
 * check did: a message sent again keeps its transaction id, which the homeserver deduplicates. */
static bool bridged_before(br_pworker *pw, int64_t portal_id, const br_wa_msg *m, bool group)
{
    if (br_absent_take(pw, portal_id, m->id)) return false;
    const char *ids[BR_ABSENT_QUERY];
    char *copies[BR_ABSENT_QUERY];
    size_t n = 0;
    ids[n] = copies[n] = strdup(m->id);
    if (!copies[n]) return false;
    n++;
    pthread_mutex_lock(&pw->lock);
    size_t seen = 0;
    for (const br_job *j = pw->head; j && n < BR_ABSENT_QUERY && seen < BR_ABSENT_SCAN;
         j = j->next, seen++) {
        if (j->fn != br_portal_job_wa_message) continue;
        const br_wa_msg *q = j->arg;
        if (strcmp(q->chat, m->chat) != 0 || (!group && q->login_id != m->login_id)) continue;
        if (!(copies[n] = strdup(q->id))) break;
        ids[n] = copies[n];
        n++;
    }
    pthread_mutex_unlock(&pw->lock);
    bool present[BR_ABSENT_QUERY];
    bool found = false;
    if (db_message_present(pw->db, portal_id, ids, n, present) == DB_OK) {
        found = present[0];
        for (size_t i = 1; i < n; i++) {
            br_absent_take(pw, portal_id, ids[i]); /* (noted once) */
            if (!present[i]) br_absent_note(pw, portal_id, ids[i]);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(copies[i]);
    return found;
}

static void store_mapping(br_pworker *pw, const db_portal *portal, int64_t login_id,
                          const char *wa_id, const char *sender, const char *event_id,
                          int64_t ts_ms, const char *relay_sender)
{
    db_message row = {.portal_id = portal->id, .login_id = login_id, .timestamp_ms = ts_ms};
    if (relay_sender) snprintf(row.relay_sender, sizeof(row.relay_sender), "%s", relay_sender);
    snprintf(row.wa_id, sizeof(row.wa_id), "%s", wa_id);
    snprintf(row.sender_jid, sizeof(row.sender_jid), "%s", sender);
    snprintf(row.mxid, sizeof(row.mxid), "%s", event_id);
    snprintf(row.mx_room, sizeof(row.mx_room), "%s", portal->mxid);
    br_absent_take(pw, row.portal_id, row.wa_id);
    int rc = db_message_insert_later(pw->db, &row); /* goes with the worker's next statement */
    if (rc != DB_OK && rc != DB_ERR_UNIQUE)
        WB_WARN(MOD, "storing the mapping of %s failed: %s", wa_id, db_conn_error(pw->db)->message);
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
    char chat[DB_ID_MAX], sender[DB_ID_MAX];
    br_user_jid(m->chat, chat, sizeof(chat));
    br_user_jid(m->sender, sender, sizeof(sender));
    wa_msg msg = {0};
    int prc = m->plaintext ? wa_message_parse(m->plaintext, m->len, &msg) : WA_ERR_CRYPTO;
    bool own = false;
    if (prc == WA_OK && msg.dest_jid[0]) {
        /* sent from another device of this account: it belongs to the chat it went to */
        br_user_jid(msg.dest_jid, chat, sizeof(chat));
        own = true;
    }
    int result = 0;
    wa_jid cj;
    bool group =
        chat[0] && wa_jid_parse_cstr(chat, &cj) == WA_OK && wa_jid_kind_of(&cj) == WA_JID_GROUP;
    if (!group && (!chat[0] || wa_jid_parse_cstr(chat, &cj) != WA_OK ||
                   (wa_jid_kind_of(&cj) != WA_JID_PN && wa_jid_kind_of(&cj) != WA_JID_LID))) {
        WB_INFO(MOD, "login %lld: message %s in %s: chat kind not bridged yet", (long long)l->id,
                m->id, m->chat);
        goto done;
    }
    if (prc == WA_OK && msg.kind == WA_MSG_NONE) goto done; /* e.g. a bare key distribution */
    db_portal portal;
    if (group && strstr(sender, "@lid")) { /* LID-addressed groups: the phone number's ghost */
        char pn[DB_ID_MAX];
        if (db_lid_to_pn(pw->db, l->id, sender, pn, sizeof(pn)) == DB_OK)
            set_str(sender, sizeof(sender), pn);
    }
    if (group) {
        /* our own account writing in the group (from another device) shows as ours */
        char me[DB_ID_MAX];
        snprintf(me, sizeof(me), "%s@s.whatsapp.net", l->phone);
        if (strcmp(sender, me) == 0 || (l->lid[0] && strcmp(sender, l->lid) == 0)) own = true;
        bool known = br_room_of_chat(b, 0, chat, &(br_room_ref){0});
        if (br_portal_ensure_group(pw, l, chat, NULL, NULL, &portal)) {
            result = -1;
            goto out;
        }
        if (!known) br_login_group_info(l, chat); /* name, topic and members follow */
    } else if (br_portal_ensure_dm(pw, l, chat, own ? "" : m->notify, &portal)) {
        result = -1;
        goto out;
    }
    /* A redelivery or a restart may have been bridged before. A direct chat's message decrypted
     * just now was not: had its mapping row been stored, the engine's commit of the decryption
     * (the session advanced, the buffer row), which came before it, would have been too - the WAL
     * is one sequence - and the message would have come as a redelivery from the buffer. Not so
     * for a while after the engine's commit or barrier failed (its messages were handed on all
     * the same: br_engine.unsure_until_ms). A group's message may come through two logins:
     * always asked. */
    if ((group || !m->fresh) && bridged_before(pw, portal.id, m, group)) goto done;
    char ghost[DB_ID_MAX], puppet[DB_ID_MAX] = "";
    const char *as_user = NULL;          /* own messages come through the bot... */
    const char *who = own ? "" : sender; /* "" = the login's own account */
    /* ...or, double puppeting, as the user: the login's own, or in a group another login's
       (its ghost stays out of the room) */
    if (own && br_puppet_ok(pw, l))
        set_str(puppet, sizeof(puppet), l->mxid);
    else if (!own && group && !br_puppet_of_jid(pw, sender, puppet, sizeof(puppet)))
        puppet[0] = '\0';
    if (puppet[0] && br_puppet_join(pw, portal.mxid, puppet) != 0) puppet[0] = '\0';
    if (puppet[0]) {
        as_user = puppet;
    } else if (!own) {
        if (ghost_ensure(pw, sender, m->notify, ghost, sizeof(ghost)) ||
            (group && br_group_ghost_join(pw, portal.mxid, ghost) != 0)) {
            result = -1;
            goto out;
        }
        as_user = ghost;
    }
    char txn[DB_ID_MAX + 64];
    txn_of(group ? 0 : l->id, m->id, txn, sizeof(txn)); /* a group's: the same from any login */
    mx_error err;
    char *event_id = NULL;
    int rc = MX_OK;
    db_message target;
    bool has_target =
        prc == WA_OK &&
        (msg.kind == WA_MSG_EDIT || msg.kind == WA_MSG_REACTION || msg.kind == WA_MSG_REVOKE) &&
        db_message_by_wa(pw->db, portal.id, msg.target.id, "", &target) == DB_OK;
    if (prc == WA_OK &&
        (msg.kind == WA_MSG_EDIT || msg.kind == WA_MSG_REACTION || msg.kind == WA_MSG_REVOKE) &&
        !has_target) {
        WB_INFO(MOD, "login %lld: %s of %s, a message not bridged: ignored", (long long)l->id,
                wa_msg_kind_name(msg.kind), msg.target.id);
        goto done;
    }
    if (prc == WA_OK && msg.kind == WA_MSG_REVOKE) {
        /* the sender deletes its message: redact it (as the ghost when it is its own event) */
        bool theirs = strcmp(target.sender_jid, who) == 0 && as_user;
        cJSON *extra = NULL;
        if (theirs && puppet[0]) br_puppet_mark(b, extra = cJSON_CreateObject());
        rc = mx_client_redact_ex(pw->mx, theirs ? as_user : NULL, portal.mxid, target.mxid,
                                 "deleted on WhatsApp", extra, txn, &event_id, &err);
        cJSON_Delete(extra);
    } else if (prc == WA_OK && msg.kind == WA_MSG_REACTION) {
        db_reaction old;
        bool had = db_reaction_get(pw->db, portal.id, msg.target.id, who, &old) == DB_OK;
        if (had) { /* one reaction per sender: the new one replaces it, "" removes it */
            char rtxn[DB_ID_MAX + 80];
            snprintf(rtxn, sizeof(rtxn), "%s-undo", txn);
            cJSON *extra = NULL;
            if (puppet[0]) br_puppet_mark(b, extra = cJSON_CreateObject());
            mx_client_redact_ex(pw->mx, as_user, portal.mxid, old.mxid, NULL, extra, rtxn, NULL,
                                &err);
            cJSON_Delete(extra);
            db_reaction_delete(pw->db, old.mxid);
        }
        if (msg.reaction[0]) {
            cJSON *c = cJSON_CreateObject();
            cJSON *rel = cJSON_AddObjectToObject(c, "m.relates_to");
            cJSON_AddStringToObject(rel, "rel_type", "m.annotation");
            cJSON_AddStringToObject(rel, "event_id", target.mxid);
            cJSON_AddStringToObject(rel, "key", msg.reaction);
            if (puppet[0]) br_puppet_mark(b, c);
            rc = mx_client_send(pw->mx, as_user, portal.mxid, "m.reaction", c, txn, m->ts_ms,
                                &event_id, &err);
            cJSON_Delete(c);
            if (rc == MX_OK) {
                db_reaction r = {.portal_id = portal.id, .timestamp_ms = m->ts_ms};
                snprintf(r.target_wa_id, sizeof(r.target_wa_id), "%s", msg.target.id);
                snprintf(r.sender_jid, sizeof(r.sender_jid), "%s", who);
                snprintf(r.emoji, sizeof(r.emoji), "%s", msg.reaction);
                snprintf(r.mxid, sizeof(r.mxid), "%s", event_id);
                snprintf(r.mx_room, sizeof(r.mx_room), "%s", portal.mxid);
                db_reaction_put(pw->db, &r);
            }
        } else {
            goto done; /* a removal: nothing more to show */
        }
    } else {
        cJSON *c;
        if (prc != WA_OK || msg.kind == WA_MSG_UNSUPPORTED) {
            c = cJSON_CreateObject();
            char note[160];
            if (prc != WA_OK)
                snprintf(note, sizeof(note), "⚠ A message could not be decrypted.");
            else
                snprintf(note, sizeof(note), "⚠ A message of a kind not bridged yet (%s).",
                         msg.unsupported);
            cJSON_AddStringToObject(c, "msgtype", "m.notice");
            cJSON_AddStringToObject(c, "body", note);
            if (puppet[0]) { /* a notice of the bridge's, not words of the user: the bot's */
                puppet[0] = '\0';
                as_user = NULL;
            }
        } else if (msg.kind == WA_MSG_EDIT) {
            cJSON *nc = text_content(pw, &portal, &msg, own && !puppet[0]);
            cJSON_DeleteItemFromObject(nc, "m.relates_to");
            c = cJSON_Duplicate(nc, true);
            const char *nb = jstr(nc, "body");
            size_t nlen = nb ? strlen(nb) + 3 : 3;
            char *starred = malloc(nlen);
            if (starred) {
                snprintf(starred, nlen, "* %s", nb ? nb : "");
                cJSON_ReplaceItemInObjectCaseSensitive(c, "body", cJSON_CreateString(starred));
                free(starred);
            }
            cJSON_DeleteItemFromObject(c, "formatted_body");
            cJSON_DeleteItemFromObject(c, "format");
            cJSON_AddItemToObject(c, "m.new_content", nc);
            cJSON *rel = cJSON_AddObjectToObject(c, "m.relates_to");
            cJSON_AddStringToObject(rel, "rel_type", "m.replace");
            cJSON_AddStringToObject(rel, "event_id", target.mxid);
        } else {
            c = text_content(pw, &portal, &msg, own && !puppet[0]);
        }
        if (puppet[0]) {
            br_puppet_mark(b, c);
        } else if (own) {
            cJSON *o = cJSON_AddObjectToObject(c, "fi.mau.whatsapp.own_device");
            cJSON_AddBoolToObject(o, "from_own_device", true);
        }
        rc = mx_client_send(pw->mx, as_user, portal.mxid, "m.room.message", c, txn, m->ts_ms,
                            &event_id, &err);
        if (rc != MX_OK && own && puppet[0] && err.http_status >= 400 && err.http_status < 500) {
            /* the homeserver refused it from the user (power levels, a changed registration):
               the bot's way, as without double puppeting, rather than losing it */
            WB_WARN(MOD, "sending %s as %s failed (%s): through the bot", m->id, puppet, err.error);
            cJSON_DeleteItemFromObjectCaseSensitive(c, BR_PUPPET_KEY);
            cJSON_ReplaceItemInObjectCaseSensitive(c, "msgtype", cJSON_CreateString("m.notice"));
            cJSON *o = cJSON_AddObjectToObject(c, "fi.mau.whatsapp.own_device");
            cJSON_AddBoolToObject(o, "from_own_device", true);
            char btxn[DB_ID_MAX + 80];
            snprintf(btxn, sizeof(btxn), "%s-bot", txn);
            as_user = NULL;
            puppet[0] = '\0';
            rc = mx_client_send(pw->mx, NULL, portal.mxid, "m.room.message", c, btxn, m->ts_ms,
                                &event_id, &err);
        }
        cJSON_Delete(c);
    }
    if (rc != MX_OK) {
        WB_WARN(MOD, "sending %s to %s failed: %s", m->id, portal.mxid, err.error);
        free(event_id);
        result = err.http_status == 403 || err.http_status == 400 ? 0 : -1;
        if (result == 0) goto done;
        goto out;
    }
    {
        /* the mapping and the buffer row's deletion in one statement, sent behind the worker's
         * next statement (write-behind: the worker flushes when idle; a crash before leaves the
         * buffer row, and the message is found bridged or sent again with the same txn id) */
        db_message row = {.portal_id = portal.id, .login_id = l->id, .timestamp_ms = m->ts_ms};
        set_str(row.wa_id, sizeof(row.wa_id), m->id);
        set_str(row.sender_jid, sizeof(row.sender_jid), who);
        set_str(row.mxid, sizeof(row.mxid), event_id);
        set_str(row.mx_room, sizeof(row.mx_room), portal.mxid);
        free(event_id);
        atomic_fetch_add(&b->stats.wa_bridged, 1);
        br_absent_take(pw, portal.id, m->id); /* (the same message queued twice: by two logins) */
        int mrc = db_message_insert_done_later(pw->db, &row, l->id, m->chat, m->id);
        if (mrc == DB_OK) goto out;
        if (mrc != DB_ERR_UNIQUE)
            WB_WARN(MOD, "storing the mapping of %s failed: %s", m->id,
                    db_conn_error(pw->db)->message);
    }
done:
    db_event_buffer_done(pw->db, l->id, m->chat, m->id);
out:
    if (prc == WA_OK) wa_msg_free(&msg);
    return result;
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

void br_portal_job_wa_signal(br_pworker *pw, void *arg)
{
    br_wa_signal *sg = arg;
    br_room_ref ref;
    char ghost[DB_ID_MAX];
    mx_error err;
    if (sg->identity) { /* in the contact's DM portal, when there is one */
        char pn[DB_ID_MAX], who[DB_ID_MAX];
        set_str(who, sizeof(who), sg->chat);
        if (strstr(who, "@lid") && db_lid_to_pn(pw->db, sg->login_id, who, pn, sizeof(pn)) == DB_OK)
            set_str(who, sizeof(who), pn);
        if (br_room_of_chat(pw->b, sg->login_id, who, &ref) ||
            br_room_of_chat(pw->b, sg->login_id, sg->chat, &ref)) {
            char *at = strchr(who, '@');
            if (at) *at = '\0';
            br_notice(pw, ref.room,
                      "🔒 The security code of +%s changed (a new phone, or WhatsApp "
                      "reinstalled). Messages go on as before.",
                      who);
        }
        free(sg);
        return;
    }
    bool group = strstr(sg->chat, "@g.us") != NULL;
    if (sg->self_read) { /* read on another device: the user's own m.read, double puppeting */
        br_login *l = br_login_find(pw->b, sg->login_id);
        db_message row;
        if (l && br_puppet_ok(pw, l) &&
            br_room_of_chat(pw->b, group ? 0 : sg->login_id, sg->chat, &ref) &&
            db_message_by_wa(pw->db, ref.portal_id, sg->id, "", &row) == DB_OK &&
            br_puppet_join(pw, ref.room, l->mxid) == 0) {
            atomic_store(&l->dp_read, br_hash(row.mxid));
            if (mx_client_read_receipt(pw->mx, l->mxid, ref.room, row.mxid, &err) != MX_OK)
                WB_DEBUG(MOD, "read receipt of %s in %s failed: %s", l->mxid, ref.room, err.error);
        }
        goto out;
    }
    if (group && strstr(sg->who, "@lid")) { /* LID-addressed groups: the phone number's ghost */
        char pn[DB_ID_MAX];
        if (db_lid_to_pn(pw->db, sg->login_id, sg->who, pn, sizeof(pn)) == DB_OK)
            set_str(sg->who, sizeof(sg->who), pn);
    }
    if (!br_room_of_chat(pw->b, group ? 0 : sg->login_id, sg->chat, &ref)) goto out;
    /* a double-puppeted login in a group: its ghost stays out, and its typing and receipts are
       not shown as its user either: they carry no echo marker, so they would come back to
       WhatsApp through that user's own login */
    if (group && br_puppet_of_jid(pw, sg->who, ghost, sizeof(ghost))) goto out;
    if (ghost_ensure(pw, sg->who, NULL, ghost, sizeof(ghost)) != 0 ||
        (group && br_group_ghost_join(pw, ref.room, ghost) != 0))
        goto out;
    if (sg->typing_event) {
        bool typing = strcmp(sg->state, "composing") == 0 || strcmp(sg->state, "recording") == 0;
        if (mx_client_typing(pw->mx, ghost, ref.room, typing, 30000, &err) != MX_OK)
            WB_DEBUG(MOD, "typing in %s failed: %s", ref.room, err.error);
    } else {
        db_message row;
        if (db_message_by_wa(pw->db, ref.portal_id, sg->id, "", &row) == DB_OK &&
            mx_client_read_receipt(pw->mx, ghost, ref.room, row.mxid, &err) != MX_OK)
            WB_DEBUG(MOD, "read receipt in %s failed: %s", ref.room, err.error);
    }
out:
    free(sg);
}

/* ---- Matrix -> WhatsApp ---- */

/* The login a Matrix user acts through in a portal; NULL (with a notice when useful) if none. */
static br_login *portal_login(br_pworker *pw, const br_room_ref *ref, const char *sender, bool tell)
{
    if (ref->receiver == 0) { /* a group: the sender's own login (one in the group, we hope) */
        br_login *ls[1];
        if (br_logins_of(pw->b, sender, ls, 1) == 1) return ls[0];
        if (tell && br_config_perm(pw->b->cfg, sender) >= BR_PERM_USER)
            br_notice(pw, ref->room,
                      "⚠ Your message was not sent: you are not logged in to "
                      "WhatsApp (send `login qr` in your management room).");
        return NULL;
    }
    br_login *l = br_login_find(pw->b, ref->receiver);
    if (!l) {
        db_login row;
        if (tell && db_login_get(pw->db, ref->receiver, &row) == DB_OK &&
            strcmp(row.mxid, sender) == 0)
            br_notice(pw, ref->room,
                      "⚠ Your message was not sent: this WhatsApp login is not "
                      "running (state %s). Send `login qr` in the management room.",
                      row.state);
        return NULL;
    }
    if (strcmp(l->mxid, sender) != 0) return NULL; /* someone else in a DM portal (relay later) */
    return l;
}

/* Relay mode: the portal's relay login, for a Matrix user without an own login here who may be
 * relayed (bridge.relay.enabled, permission relay or more); NULL when there is none. */
static br_login *relay_for(br_pworker *pw, const br_room_ref *ref, const char *sender)
{
    const br_config *cfg = pw->b->cfg;
    if (!cfg->relay_enabled || br_config_perm(cfg, sender) < BR_PERM_RELAY) return NULL;
    db_portal p;
    if (db_portal_get(pw->db, ref->portal_id, &p) != DB_OK || p.relay_login_id == 0) return NULL;
    br_login *l = br_login_find(pw->b, p.relay_login_id);
    return l && !l->removed ? l : NULL;
}

/* Who sends a Matrix user's event to WhatsApp: their own login, else the relay login (*relayed
 * set); NULL when neither (with a notice when tell and useful). */
static br_login *sender_login(br_pworker *pw, const br_room_ref *ref, const char *sender, bool tell,
                              bool *relayed)
{
    *relayed = false;
    br_login *l = portal_login(pw, ref, sender, false);
    if (l) return l;
    if ((l = relay_for(pw, ref, sender))) {
        *relayed = true;
        return l;
    }
    if (tell) portal_login(pw, ref, sender, true);
    return NULL;
}

/* A relayed sender's name as WhatsApp shows it: the Matrix display name, else the localpart. */
static void relay_name(br_pworker *pw, const char *sender, char *out, size_t cap)
{
    char *dn = NULL;
    mx_error err;
    if (mx_client_get_profile(pw->mx, sender, &dn, NULL, &err) == MX_OK && dn && dn[0]) {
        set_str(out, cap, dn);
    } else {
        const char *at = sender[0] == '@' ? sender + 1 : sender, *colon = strchr(at, ':');
        size_t n = colon ? (size_t)(colon - at) : strlen(at);
        snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), at);
    }
    free(dn);
}

/* Sends m as the event's WhatsApp message and stores the mapping; notices on failure. */
static const char *kind_word(wa_msg_kind k)
{
    return k == WA_MSG_TEXT       ? "message"
           : k == WA_MSG_EDIT     ? "edit"
           : k == WA_MSG_REACTION ? "reaction"
                                  : "deletion";
}

/* What the completion of an asynchronous send needs (flat: freed with free()). */
typedef struct send_ctx {
    int64_t inbox_id;
    int64_t login_id;
    wa_msg_kind kind;
    char room[DB_ID_MAX];
    char event_id[DB_ID_MAX];
} send_ctx;

/* On the portal's queue once WhatsApp acked (or refused) the message: the inbox row goes now. */
static void job_send_done(br_pworker *pw, void *arg)
{
    br_send_done *d = arg;
    send_ctx *c = d->ctx;
    if (d->result == 1) {
        atomic_fetch_add(&pw->b->stats.mx_bridged, 1);
    } else {
        WB_INFO(MOD, "login %lld: %s %s not sent: %s", (long long)c->login_id, kind_word(c->kind),
                d->id, d->err);
        /* what was recorded on the way out did not happen */
        db_message_delete(pw->db, c->event_id);
        db_reaction_delete(pw->db, c->event_id);
        br_notice(pw, c->room, "⚠ Your %s was not sent to WhatsApp: %s.", kind_word(c->kind),
                  d->err);
        atomic_fetch_add(&pw->b->stats.failures, 1);
    }
    db_inbox_delete_later(pw->db, c->inbox_id);
    free(c);
    free(d);
}

/* Sends m as the event's WhatsApp message without waiting for the ack: the mapping is stored now
 * (so an edit or reaction right after finds it), the inbox row goes when the ack comes
 * (job_send_done). Notices at once when it cannot be handed over. */
static void send_to_wa(br_pworker *pw, const br_room_ref *ref, br_login *l, const wa_msg *m,
                       const char *event_id, bool map, const char *relay_sender)
{
    char id[WA_MESSAGE_ID_MAX], err[256];
    br_message_id_for(event_id, id); /* the same after a crash: one message to the receivers */
    send_ctx *c = calloc(1, sizeof(*c));
    if (!c) return;
    c->inbox_id = pw->cur_inbox_id;
    c->login_id = l->id;
    c->kind = m->kind;
    set_str(c->room, sizeof(c->room), ref->room);
    set_str(c->event_id, sizeof(c->event_id), event_id);
    if (map) {
        db_portal portal = {.id = ref->portal_id};
        set_str(portal.mxid, sizeof(portal.mxid), ref->room);
        store_mapping(pw, &portal, l->id, id, "", event_id, br_now_ms(), relay_sender);
    }
    char key[DB_ID_MAX + 64];
    br_portal_key(ref->receiver, ref->chat, key, sizeof(key));
    if (br_login_send_async(l, ref->chat, m, id, key, job_send_done, c, err, sizeof(err)) != 0) {
        WB_INFO(MOD, "login %lld: %s %s to %s not sent: %s", (long long)l->id,
                wa_msg_kind_name(m->kind), id, ref->chat, err);
        if (map) db_message_delete(pw->db, event_id);
        br_notice(pw, ref->room, "⚠ Your %s was not sent to WhatsApp: %s.", kind_word(m->kind),
                  err);
        atomic_fetch_add(&pw->b->stats.failures, 1);
        free(c);
        return;
    }
    pw->deferred = true; /* job_send_done deletes the inbox row */
}

/* A target Matrix event -> its WhatsApp message key in this chat. */
static bool target_key(br_pworker *pw, const br_room_ref *ref, br_login *l, const char *event_id,
                       wa_msg_key *key, db_message *row)
{
    if (!event_id || db_message_by_mxid(pw->db, event_id, row) != DB_OK) return false;
    memset(key, 0, sizeof(*key));
    set_str(key->id, sizeof(key->id), row->wa_id);
    set_str(key->remote_jid, sizeof(key->remote_jid), ref->chat);
    key->from_me = row->sender_jid[0] == '\0';
    return true;
}

static void bridge_mx_message(br_pworker *pw, const br_room_ref *ref, const cJSON *ev,
                              const char *sender, const char *event_id)
{
    br_bridge *b = pw->b;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(ev, "content");
    bool relayed;
    br_login *l = sender_login(pw, ref, sender, true, &relayed);
    if (!l) return;
    const char *relay = relayed ? sender : NULL; /* recorded with the message */
    const cJSON *rel = cJSON_GetObjectItemCaseSensitive(content, "m.relates_to");
    const char *rel_type = jstr(rel, "rel_type");
    bool is_edit = rel_type && strcmp(rel_type, "m.replace") == 0;
    const cJSON *src = content; /* an edit's new text is in m.new_content */
    if (is_edit) src = cJSON_GetObjectItemCaseSensitive(content, "m.new_content");
    const char *msgtype = jstr(src, "msgtype"), *body = jstr(src, "body");
    if (!msgtype || !body ||
        (strcmp(msgtype, "m.text") != 0 && strcmp(msgtype, "m.emote") != 0 &&
         strcmp(msgtype, "m.notice") != 0)) {
        br_notice(pw, ref->room, "⚠ Your %s message was not bridged: that kind is not bridged yet.",
                  msgtype ? msgtype : "(no msgtype)");
        atomic_fetch_add(&b->stats.failures, 1);
        return;
    }
    const char *format = jstr(src, "format"), *html = jstr(src, "formatted_body");
    if (!format || strcmp(format, "org.matrix.custom.html") != 0) html = NULL;
    const cJSON *reply = rel ? cJSON_GetObjectItemCaseSensitive(rel, "m.in_reply_to") : NULL;
    br_format_resolver res = resolver_of(pw);
    br_wa_text wt = {0};
    if (br_format_mx_to_wa_ex(body, html, reply != NULL && !is_edit, &res, &wt) != 0) {
        br_notice(pw, ref->room, "⚠ Your message could not be converted for WhatsApp.");
        return;
    }
    char text[65536], name[256] = "";
    bool emote = strcmp(msgtype, "m.emote") == 0;
    if (relayed) relay_name(pw, sender, name, sizeof(name));
    if (relayed && emote)
        snprintf(text, sizeof(text), "* *%s* %s", name, wt.text);
    else if (relayed)
        snprintf(text, sizeof(text), "*%s*: %s", name, wt.text);
    else if (emote)
        snprintf(text, sizeof(text), "_* %s_", wt.text);
    else
        snprintf(text, sizeof(text), "%s", wt.text);
    wa_msg m = {
        .kind = WA_MSG_TEXT, .text = text, .mentions = wt.mentions, .n_mentions = wt.n_mentions};
    db_message row;
    if (is_edit) {
        /* only the writer edits: the login's own message, or a relayed one by its Matrix user */
        if (!target_key(pw, ref, l, jstr(rel, "event_id"), &m.target, &row) || !m.target.from_me ||
            row.login_id != l->id || strcmp(row.relay_sender, relay ? relay : "") != 0) {
            br_notice(pw, ref->room,
                      "⚠ Your edit was not sent: only your own bridged messages "
                      "can be edited on WhatsApp.");
            br_wa_text_free(&wt);
            return;
        }
        m.kind = WA_MSG_EDIT;
    } else if (reply) {
        const char *quoted = jstr(reply, "event_id");
        if (quoted && db_message_by_mxid(pw->db, quoted, &row) == DB_OK) {
            set_str(m.reply_id, sizeof(m.reply_id), row.wa_id);
            if (row.sender_jid[0])
                set_str(m.reply_sender, sizeof(m.reply_sender), row.sender_jid);
            else
                snprintf(m.reply_sender, sizeof(m.reply_sender), "%s@s.whatsapp.net", l->phone);
        }
    }
    send_to_wa(pw, ref, l, &m, event_id, !is_edit, relay);
    br_wa_text_free(&wt);
}

static void bridge_mx_reaction(br_pworker *pw, const br_room_ref *ref, const cJSON *ev,
                               const char *sender, const char *event_id)
{
    const cJSON *rel = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(ev, "content"), "m.relates_to");
    const char *rel_type = jstr(rel, "rel_type"), *key = jstr(rel, "key");
    br_login *l = portal_login(pw, ref, sender, false); /* reactions are not relayed */
    const char *relay = NULL;
    if (!l || !rel_type || strcmp(rel_type, "m.annotation") != 0 || !key) return;
    wa_msg m = {.kind = WA_MSG_REACTION};
    db_message row;
    if (!target_key(pw, ref, l, jstr(rel, "event_id"), &m.target, &row)) return;
    snprintf(m.reaction, sizeof(m.reaction), "%s", key);
    send_to_wa(pw, ref, l, &m, event_id, false, relay);
    db_reaction r = {.portal_id = ref->portal_id, .timestamp_ms = br_now_ms()};
    snprintf(r.target_wa_id, sizeof(r.target_wa_id), "%s", row.wa_id);
    snprintf(r.emoji, sizeof(r.emoji), "%s", key);
    snprintf(r.mxid, sizeof(r.mxid), "%s", event_id);
    snprintf(r.mx_room, sizeof(r.mx_room), "%s", ref->room);
    db_reaction_put(pw->db, &r);
}

static void bridge_mx_redaction(br_pworker *pw, const br_room_ref *ref, const cJSON *ev,
                                const char *sender, const char *event_id)
{
    const char *redacts = jstr(ev, "redacts");
    if (!redacts) redacts = jstr(cJSON_GetObjectItemCaseSensitive(ev, "content"), "redacts");
    bool relayed;
    br_login *l = sender_login(pw, ref, sender, false, &relayed);
    const char *relay = relayed ? sender : NULL;
    if (!l || !redacts) return;
    db_reaction r;
    if (db_reaction_by_mxid(pw->db, redacts, &r) == DB_OK) { /* a reaction taken back */
        if (r.sender_jid[0] || relayed) return;              /* someone else's */
        wa_msg m = {.kind = WA_MSG_REACTION};
        set_str(m.target.id, sizeof(m.target.id), r.target_wa_id);
        set_str(m.target.remote_jid, sizeof(m.target.remote_jid), ref->chat);
        db_message row;
        m.target.from_me =
            db_message_by_wa(pw->db, ref->portal_id, r.target_wa_id, "", &row) == DB_OK &&
            row.sender_jid[0] == '\0';
        send_to_wa(pw, ref, l, &m, event_id, false, relay);
        db_reaction_delete(pw->db, redacts);
        return;
    }
    wa_msg m = {.kind = WA_MSG_REVOKE};
    db_message row;
    if (!target_key(pw, ref, l, redacts, &m.target, &row)) return;
    if (!m.target.from_me || row.login_id != l->id ||
        strcmp(row.relay_sender, relay ? relay : "") != 0) {
        br_notice(pw, ref->room, "⚠ Only your own messages can be deleted on WhatsApp.");
        return;
    }
    send_to_wa(pw, ref, l, &m, event_id, false, relay);
}

/* A Matrix user renames a group portal or changes its topic: the group follows (when the user
 * may do it on WhatsApp; the engine reports a refusal). */
static void bridge_mx_group_info(br_pworker *pw, const br_room_ref *ref, const char *sender,
                                 const char *type, const cJSON *content)
{
    br_login *l = portal_login(pw, ref, sender, false);
    if (!l) return;
    bool name = strcmp(type, "m.room.name") == 0;
    const char *v = jstr(content, name ? "name" : "topic");
    if (!v) v = "";
    db_portal p;
    if (db_portal_get(pw->db, ref->portal_id, &p) == DB_OK &&
        strcmp(name ? p.name : p.topic, v) == 0)
        return;                /* what the bridge itself set */
    if (name && !v[0]) return; /* WhatsApp groups always have a subject */
    br_login_group_set(l, ref->chat, name, v, ref->room);
    db_portal_set_name(pw->db, ref->portal_id, name ? v : p.name, name ? p.topic : v);
}

/* A member change asked of WhatsApp through l: recorded first (group_call, with the event's inbox
 * row deleted in the same durable transaction, so a restart never asks twice), then sent. When it
 * cannot be (no record, login not running): a notice, and false (the caller puts the room back). */
static bool ask_group_change(br_pworker *pw, const br_room_ref *ref, br_login *l, int change,
                             const char *jid, int undo_level)
{
    db_group_call call = {
        .login_id = l->id, .change = change, .undo_level = undo_level, .created_ms = br_now_ms()};
    set_str(call.group, sizeof(call.group), ref->chat);
    set_str(call.room, sizeof(call.room), ref->room);
    set_str(call.target, sizeof(call.target), jid);
    if (db_group_call_add(pw->db, &call, pw->cur_inbox_id, &call.id) != DB_OK) {
        WB_WARN(MOD, "group call not recorded: %s", db_conn_error(pw->db)->message);
        br_notice(pw, ref->room,
                  "⚠ The group was not changed: the bridge could not record the "
                  "change (its database failed). Try again.");
        return false;
    }
    pw->cur_inbox_id = 0; /* gone with the record */
    pw->deferred = true;
    if (br_login_group_participant(l, &call) == 0) return true;
    db_group_call_done(pw->db, call.id);
    br_notice(pw, ref->room, "⚠ Your login is not running: the group was not changed.");
    return false;
}

/* A Matrix user invites a ghost to a group portal, or kicks or bans one: the WhatsApp group
 * follows through the user's login (br_group_job_participants brings the answer). */
static void bridge_mx_member(br_pworker *pw, const br_room_ref *ref, const char *sender,
                             const char *ghost, const char *membership)
{
    if (!membership) return;
    bool add = strcmp(membership, "invite") == 0;
    if (!add && strcmp(membership, "leave") != 0 && strcmp(membership, "ban") != 0) return;
    char jid[DB_ID_MAX];
    if (!resolve_mx_to_jid(pw, ghost, jid, sizeof(jid))) return;
    br_login *l = portal_login(pw, ref, sender, false);
    if (!l) {
        br_notice(pw, ref->room,
                  "⚠ Only users logged in to WhatsApp can %s group members; the room shows the "
                  "group as it is.",
                  add ? "add" : "remove");
        br_group_member_undo(pw, ref->room, ghost, add);
        return;
    }
    if (!ask_group_change(pw, ref, l, add ? WA_GROUP_ADD : WA_GROUP_REMOVE, jid, 0))
        br_group_member_undo(pw, ref->room, ghost, add);
}

/* A user's level in m.room.power_levels content (users_default when not named). */
static int pl_level(const cJSON *content, const char *mxid)
{
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(content, "users"), mxid);
    if (cJSON_IsNumber(v)) return v->valueint;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(content, "users_default");
    return cJSON_IsNumber(d) ? d->valueint : 0;
}

#define PL_CANDIDATES 128 /* users of one power-level change looked at */

static void add_candidate(char (*cand)[DB_ID_MAX], size_t *n, const char *mxid)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(cand[i], mxid) == 0) return;
    if (*n < PL_CANDIDATES) snprintf(cand[(*n)++], DB_ID_MAX, "%s", mxid);
}

/* A Matrix user changes a group portal's power levels: each ghost (or logged-in user) whose level
 * goes from below 50 to 50 or more is made admin on WhatsApp through the sender's login, from 50
 * or more to below is no longer admin (br_group_job_participants brings the answer and puts a
 * refused level back). The levels before are the event's unsigned.prev_content; without it, the
 * admins the bridge recorded (group_admin) at 50, everybody else at users_default. The bridge's
 * own power-level events come from the bot and never arrive here. */
static void bridge_mx_power_levels(br_pworker *pw, const br_room_ref *ref, const char *sender,
                                   const cJSON *ev)
{
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(ev, "content");
    const cJSON *prev = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(ev, "unsigned"), "prev_content");
    if (!cJSON_IsObject(content)) return;
    if (!cJSON_IsObject(prev)) prev = NULL;
    char(*cand)[DB_ID_MAX] = calloc(PL_CANDIDATES, DB_ID_MAX);
    char(*admins)[DB_ID_MAX] = calloc(PL_CANDIDATES, DB_ID_MAX);
    if (!cand || !admins) goto done;
    size_t nc = 0, na = 0;
    const cJSON *u;
    cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(content, "users"))
        add_candidate(cand, &nc, u->string);
    if (prev) {
        cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(prev, "users"))
            add_candidate(cand, &nc, u->string);
    } else if (db_group_admins(pw->db, ref->portal_id, admins, PL_CANDIDATES, &na) == DB_OK) {
        for (size_t i = 0; i < na; i++) {
            char mxid[DB_ID_MAX], name[DB_ID_MAX];
            if (br_group_member_mxid(pw, admins[i], mxid, sizeof(mxid), name, sizeof(name)))
                add_candidate(cand, &nc, mxid);
        }
    }
    struct {
        char jid[DB_ID_MAX];
        int before;
        bool promote;
    } ch[16];
    size_t nch = 0;
    for (size_t i = 0; i < nc && nch < sizeof(ch) / sizeof(ch[0]); i++) {
        char jid[DB_ID_MAX];
        if (strcmp(cand[i], pw->b->bot_mxid) == 0 ||
            !resolve_mx_to_jid(pw, cand[i], jid, sizeof(jid)))
            continue;
        int now = pl_level(content, cand[i]), before;
        if (prev) {
            before = pl_level(prev, cand[i]);
        } else {
            bool recorded = false;
            for (size_t k = 0; k < na && !recorded; k++)
                recorded = strcmp(admins[k], jid) == 0;
            before = recorded ? BR_GROUP_ADMIN_LEVEL : pl_level(content, "");
        }
        if ((before >= BR_GROUP_ADMIN_LEVEL) == (now >= BR_GROUP_ADMIN_LEVEL)) continue;
        snprintf(ch[nch].jid, sizeof(ch[nch].jid), "%s", jid);
        ch[nch].before = before;
        ch[nch].promote = now >= BR_GROUP_ADMIN_LEVEL;
        memmove(cand[nch], cand[i], DB_ID_MAX); /* cand[0..nch) now: the mxids of ch */
        nch++;
    }
    if (!nch) goto done;
    br_login *l = portal_login(pw, ref, sender, false);
    if (!l)
        br_notice(pw, ref->room,
                  "⚠ Only users logged in to WhatsApp can change the group's admins; the power "
                  "levels are put back as the group is.");
    for (size_t i = 0; i < nch; i++) {
        if (l && ask_group_change(pw, ref, l, ch[i].promote ? WA_GROUP_PROMOTE : WA_GROUP_DEMOTE,
                                  ch[i].jid, ch[i].before))
            continue;
        br_group_level_undo(pw, ref->room, cand[i], ch[i].before);
    }
done:
    free(cand);
    free(admins);
}

/* Ephemeral events: our user's typing and read receipts in a portal. */
static void bridge_mx_ephemeral(br_pworker *pw, const br_room_ref *ref, const char *type,
                                const cJSON *content)
{
    /* who may act here: a DM portal's own user, or in a group every Matrix user with a login */
    br_login *ls[BR_MAX_LOGINS < 64 ? BR_MAX_LOGINS : 64];
    size_t n = 0;
    if (ref->receiver) {
        br_login *l = br_login_find(pw->b, ref->receiver);
        if (l) ls[n++] = l;
    } else {
        pthread_mutex_lock(&pw->b->lock);
        for (size_t i = 0; i < pw->b->n_logins && n < 64; i++)
            if (!pw->b->logins[i]->removed) ls[n++] = pw->b->logins[i];
        pthread_mutex_unlock(&pw->b->lock);
    }
    bool group = ref->receiver == 0;
    if (strcmp(type, "m.typing") == 0) {
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(content, "user_ids"), *u;
        for (size_t k = 0; k < n; k++) {
            bool typing = false;
            cJSON_ArrayForEach(u, ids) if (cJSON_IsString(u) &&
                                           strcmp(u->valuestring, ls[k]->mxid) == 0) typing = true;
            /* in a group, only the users the event names (typing or who just stopped) */
            if (!group || typing || ls[k]->typing_in_group) {
                br_login_chat_state(ls[k], ref->chat, typing);
                if (group) ls[k]->typing_in_group = typing;
            }
        }
        return;
    }
    if (strcmp(type, "m.receipt") != 0) return;
    const cJSON *e;
    cJSON_ArrayForEach(e, content)
    {
        const cJSON *read = cJSON_GetObjectItemCaseSensitive(e, "m.read");
        for (size_t k = 0; k < n; k++) {
            if (!cJSON_GetObjectItemCaseSensitive(read, ls[k]->mxid)) continue;
            /* the echo of a receipt we made as the user (read on their phone): already read */
            if (e->string && atomic_load(&ls[k]->dp_read) == br_hash(e->string)) continue;
            db_message row;
            if (e->string && db_message_by_mxid(pw->db, e->string, &row) == DB_OK &&
                row.sender_jid[0] != '\0')
                br_login_mark_read_from(ls[k], ref->chat, group ? row.sender_jid : NULL, row.wa_id);
        }
    }
}

void br_portal_job_mx_event(br_pworker *pw, void *arg)
{
    br_mx_job *job = arg;
    br_bridge *b = pw->b;
    const cJSON *ev = job->ev;
    const char *type = jstr(ev, "type"), *sender = jstr(ev, "sender"), *room = jstr(ev, "room_id"),
               *event_id = jstr(ev, "event_id"), *state_key = jstr(ev, "state_key");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(ev, "content");
    pw->cur_inbox_id = job->inbox_id;
    pw->deferred = false;
    br_room_ref ref;
    bool portal = room && br_room_lookup(b, room, &ref);
    WB_DEBUG(MOD, "matrix %s %s from %s in %s%s", type ? type : "?", event_id ? event_id : "-",
             sender ? sender : "-", room ? room : "-", portal ? " (portal)" : "");
    if (type && room && !event_id && portal) { /* typing, receipts */
        bridge_mx_ephemeral(pw, &ref, type, content);
        goto done;
    }
    if (!type || !sender || !room || !event_id || br_is_ours(b, sender)) goto done;
    if (strcmp(type, "m.room.member") == 0 && state_key && strcmp(state_key, b->bot_mxid) == 0) {
        const char *membership = jstr(content, "membership");
        if (membership && strcmp(membership, "invite") == 0) {
            const cJSON *direct = cJSON_GetObjectItemCaseSensitive(content, "is_direct");
            br_command_on_invite(pw, room, sender, cJSON_IsTrue(direct));
        }
        goto done;
    }
    if (portal && ref.receiver == 0 && strcmp(type, "m.room.member") == 0 && state_key &&
        strcmp(state_key, b->bot_mxid) != 0 && br_is_ours(b, state_key)) {
        bridge_mx_member(pw, &ref, sender, state_key, jstr(content, "membership"));
        goto done;
    }
    if (portal) {
        if (strcmp(type, "m.room.message") == 0) {
            const char *body = jstr(content, "body");
            if (!body || !br_command_in_portal(pw, &ref, sender, body, event_id))
                bridge_mx_message(pw, &ref, ev, sender, event_id);
        } else if (strcmp(type, "m.reaction") == 0)
            bridge_mx_reaction(pw, &ref, ev, sender, event_id);
        else if (strcmp(type, "m.room.redaction") == 0)
            bridge_mx_redaction(pw, &ref, ev, sender, event_id);
        else if (ref.receiver == 0 && state_key && state_key[0] == '\0' &&
                 (strcmp(type, "m.room.name") == 0 || strcmp(type, "m.room.topic") == 0))
            bridge_mx_group_info(pw, &ref, sender, type, content);
        else if (ref.receiver == 0 && state_key && state_key[0] == '\0' &&
                 strcmp(type, "m.room.power_levels") == 0)
            bridge_mx_power_levels(pw, &ref, sender, ev);
        goto done;
    }
    if (strcmp(type, "m.room.message") != 0) goto done;
    const char *body = jstr(content, "body");
    if (!body) goto done;
    char owner[DB_ID_MAX];
    bool mgmt = db_user_by_management_room(pw->db, room, owner, sizeof(owner)) == DB_OK &&
                strcmp(owner, sender) == 0;
    br_command_handle(pw, room, sender, body, event_id, mgmt);
done:
    if (!pw->deferred) db_inbox_delete_later(pw->db, job->inbox_id);
    pw->deferred = false;
    cJSON_Delete(job->ev);
    free(job);
}
