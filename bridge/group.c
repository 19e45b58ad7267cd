/*
 * bridge/group.c - group portals: one Matrix room per WhatsApp group, shared by every login in it
 * (portal.receiver_login_id NULL). The room is made by the bot, named and described after the
 * group; the Matrix users of the logins in the group are invited; each participant's ghost joins
 * when it first speaks or when the group's member list is read. Group answers and notifications of
 * the engine (wa/client.h: WA_EV_GROUP_RESULT, WA_EV_GROUP) arrive here as jobs on the group
 * portal's queue, copied out of the engine (never shared with its thread).
 */
#include "bridge/bridge_internal.h"
#include "bridge/group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "group"

/* ---- copies of engine data that travel to the portal workers ---- */

void br_group_data_free(br_group_data *g)
{
    if (!g) return;
    free(g->members);
    free(g);
}

static br_group_data *group_data_new(size_t nmembers)
{
    br_group_data *g = calloc(1, sizeof(*g));
    if (!g) return NULL;
    if (nmembers) {
        g->members = calloc(nmembers, sizeof(*g->members));
        if (!g->members) {
            free(g);
            return NULL;
        }
    }
    return g;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* A participant as the bridge names it: its phone-number JID when WhatsApp tells it (LID groups
 * give both), else what it is. */
static void member_jid(const wa_group_participant *p, char *out, size_t cap)
{
    if (p->phone_number && p->phone_number[0])
        br_user_jid(p->phone_number, out, cap);
    else
        br_user_jid(p->jid, out, cap);
}

br_group_data *br_group_data_from_info(int64_t login_id, const wa_group_info *info)
{
    br_group_data *g = group_data_new(info->nparticipants);
    if (!g) return NULL;
    g->login_id = login_id;
    copy_str(g->group, sizeof(g->group), info->jid);
    copy_str(g->subject, sizeof(g->subject), info->subject);
    copy_str(g->topic, sizeof(g->topic), info->description);
    g->has_info = true;
    for (size_t i = 0; i < info->nparticipants; i++) {
        member_jid(&info->participants[i], g->members[i].jid, sizeof(g->members[i].jid));
        g->members[i].admin = info->participants[i].admin;
        const wa_group_participant *pp = &info->participants[i];
        const char *lid = pp->lid ? pp->lid : (pp->phone_number ? pp->jid : NULL);
        br_user_jid(lid, g->members[i].lid, sizeof(g->members[i].lid));
    }
    g->nmembers = info->nparticipants;
    return g;
}

br_group_data *br_group_data_from_change(int64_t login_id, const wa_group_event *ev,
                                         const wa_group_change_event *ch)
{
    if (ch->type == WA_GROUP_EV_CREATE && ch->info) {
        br_group_data *g = br_group_data_from_info(login_id, ch->info);
        if (g) g->change = ch->type;
        return g;
    }
    br_group_data *g = group_data_new(ch->nparticipants);
    if (!g) return NULL;
    g->login_id = login_id;
    g->change = ch->type;
    copy_str(g->group, sizeof(g->group), ev->group);
    br_user_jid(ev->author_pn ? ev->author_pn : ev->author, g->author, sizeof(g->author));
    copy_str(g->author_name, sizeof(g->author_name), ev->notify);
    if (ch->type == WA_GROUP_EV_SUBJECT) copy_str(g->subject, sizeof(g->subject), ch->text);
    if (ch->type == WA_GROUP_EV_DESCRIPTION) copy_str(g->topic, sizeof(g->topic), ch->text);
    for (size_t i = 0; i < ch->nparticipants; i++)
        member_jid(&ch->participants[i], g->members[i].jid, sizeof(g->members[i].jid));
    g->nmembers = ch->nparticipants;
    return g;
}

br_group_data *br_group_data_from_participants(int64_t login_id, const wa_group_result *r,
                                               const char *asked, int asked_change)
{
    br_group_data *g = group_data_new(1);
    if (!g) return NULL;
    g->login_id = login_id;
    copy_str(g->group, sizeof(g->group), r->group);
    g->result_code = r->code;
    g->participants_change = asked_change;
    /* one participant asked per call: the answer's entry (by whatever JID WhatsApp uses) is its
     * outcome; the ghost is the one the user acted on */
    copy_str(g->members[0].jid, sizeof(g->members[0].jid), asked);
    g->members[0].error = r->code;
    if (r->nparticipants > 0 && !r->code) g->members[0].error = r->participants[0].error;
    g->nmembers = 1;
    return g;
}

/* ---- a change as wa_group_event_buffer keeps it ---- */

char *br_group_data_to_json(const br_group_data *g)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "change", (double)g->change);
    cJSON_AddStringToObject(o, "group", g->group);
    cJSON_AddBoolToObject(o, "has_info", g->has_info);
    cJSON_AddStringToObject(o, "subject", g->subject);
    cJSON_AddStringToObject(o, "topic", g->topic);
    cJSON_AddStringToObject(o, "author", g->author);
    cJSON_AddStringToObject(o, "author_name", g->author_name);
    cJSON *ms = cJSON_AddArrayToObject(o, "members");
    for (size_t i = 0; ms && i < g->nmembers; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m) break;
        cJSON_AddStringToObject(m, "jid", g->members[i].jid);
        cJSON_AddStringToObject(m, "lid", g->members[i].lid);
        cJSON_AddBoolToObject(m, "admin", g->members[i].admin);
        cJSON_AddItemToArray(ms, m);
    }
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

static void json_copy(const cJSON *o, const char *key, char *dst, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    copy_str(dst, cap, cJSON_IsString(v) ? v->valuestring : "");
}

br_group_data *br_group_data_from_json(int64_t login_id, const char *data)
{
    cJSON *o = data ? cJSON_Parse(data) : NULL;
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "members");
    const cJSON *change = cJSON_GetObjectItemCaseSensitive(o, "change");
    if (!cJSON_IsObject(o) || !cJSON_IsArray(ms) || !cJSON_IsNumber(change)) {
        cJSON_Delete(o);
        return NULL;
    }
    size_t n = (size_t)cJSON_GetArraySize(ms);
    br_group_data *g = group_data_new(n);
    if (!g) {
        cJSON_Delete(o);
        return NULL;
    }
    g->login_id = login_id;
    g->change = (wa_group_event_type)change->valueint;
    g->has_info = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "has_info"));
    json_copy(o, "group", g->group, sizeof(g->group));
    json_copy(o, "subject", g->subject, sizeof(g->subject));
    json_copy(o, "topic", g->topic, sizeof(g->topic));
    json_copy(o, "author", g->author, sizeof(g->author));
    json_copy(o, "author_name", g->author_name, sizeof(g->author_name));
    const cJSON *m;
    cJSON_ArrayForEach(m, ms)
    {
        br_group_member *gm = &g->members[g->nmembers++];
        json_copy(m, "jid", gm->jid, sizeof(gm->jid));
        json_copy(m, "lid", gm->lid, sizeof(gm->lid));
        gm->admin = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "admin"));
    }
    cJSON_Delete(o);
    return g;
}

/* ---- rooms ---- */

/* The ghost joins the room (invited by the bot first); cached per worker. */
int br_group_ghost_join(br_pworker *pw, const char *room, const char *ghost_mxid)
{
    char key[2 * DB_ID_MAX + 2];
    snprintf(key, sizeof(key), "%s|%s", room, ghost_mxid);
    uint64_t h = br_hash(key);
    size_t slot = (size_t)(h % (sizeof(pw->joined) / sizeof(pw->joined[0])));
    if (pw->joined[slot] == h) return 0;
    mx_error err;
    mx_client_invite(pw->mx, NULL, room, ghost_mxid, &err); /* fails harmlessly when joined */
    if (mx_client_join(pw->mx, ghost_mxid, room, NULL, &err) != MX_OK) {
        WB_WARN(MOD, "%s could not join %s: %s", ghost_mxid, room, err.error);
        return -1;
    }
    pw->joined[slot] = h;
    return 0;
}

/* A member shows in the room as their own Matrix user when they are a double-puppeted login
 * (their ghost stays out), else as their ghost; joined either way. mxid receives who. */
static int member_join(br_pworker *pw, const char *room, const char *jid, char *mxid, size_t cap)
{
    if (br_puppet_of_jid(pw, jid, mxid, cap)) return br_puppet_join(pw, room, mxid);
    char name[DB_ID_MAX];
    if (!br_portal_ghost_of(pw, jid, mxid, cap, name, sizeof(name))) return -1;
    return br_group_ghost_join(pw, room, mxid);
}

static void ghost_leave(br_pworker *pw, const char *room, const char *jid, bool kicked)
{
    char mxid[DB_ID_MAX], name[DB_ID_MAX];
    if (!br_portal_ghost_of(pw, jid, mxid, sizeof(mxid), name, sizeof(name))) return;
    mx_error err;
    if (kicked)
        mx_client_kick(pw->mx, NULL, room, mxid, "removed on WhatsApp", &err);
    else
        mx_client_leave(pw->mx, mxid, room, &err);
    memset(pw->joined, 0, sizeof(pw->joined)); /* simplest correct invalidation */
}

int br_portal_ensure_group(br_pworker *pw, br_login *l, const char *group, const char *subject,
                           const char *topic, db_portal *out)
{
    br_bridge *b = pw->b;
    br_room_ref ref;
    if (br_room_of_chat(b, 0, group, &ref)) {
        memset(out, 0, sizeof(*out));
        out->id = ref.portal_id;
        copy_str(out->chat_jid, sizeof(out->chat_jid), group);
        copy_str(out->mxid, sizeof(out->mxid), ref.room);
        db_portal full;
        if (db_portal_get(pw->db, ref.portal_id, &full) == DB_OK) *out = full;
        return 0;
    }
    int64_t pid;
    if (db_portal_ensure(pw->db, group, 0, &pid) != DB_OK ||
        db_portal_get(pw->db, pid, out) != DB_OK) {
        WB_WARN(MOD, "portal row for %s: %s", group, db_conn_error(pw->db)->message);
        return -1;
    }
    if (out->mxid[0]) {
        br_room_remember(b, out->mxid, group, 0, pid);
        return 0;
    }
    const char *invite[] = {l->mxid, NULL};
    cJSON *pl = cJSON_CreateObject();
    cJSON *users = cJSON_AddObjectToObject(pl, "users");
    cJSON_AddNumberToObject(users, b->bot_mxid, 100);
    cJSON_AddNumberToObject(pl, "users_default", 0);
    cJSON_AddNumberToObject(pl, "state_default", 0); /* name and topic: anyone, as in WhatsApp */
    /* the homeserver's per-event levels are replaced as a whole (Synapse: name 50, power levels
     * 100, ...): name and topic stay anyone's; the group's admins (50) may change power levels,
     * which makes others admins on WhatsApp; what WhatsApp has no equivalent for stays the bot's */
    cJSON *events = cJSON_AddObjectToObject(pl, "events");
    cJSON_AddNumberToObject(events, "m.room.name", 0);
    cJSON_AddNumberToObject(events, "m.room.topic", 0);
    cJSON_AddNumberToObject(events, "m.room.power_levels", BR_GROUP_ADMIN_LEVEL);
    cJSON_AddNumberToObject(events, "m.room.avatar", BR_GROUP_ADMIN_LEVEL);
    cJSON_AddNumberToObject(events, "m.room.canonical_alias", BR_GROUP_ADMIN_LEVEL);
    cJSON_AddNumberToObject(events, "m.room.history_visibility", 100);
    cJSON_AddNumberToObject(events, "m.room.encryption", 100);
    cJSON_AddNumberToObject(events, "m.room.tombstone", 100);
    cJSON_AddNumberToObject(events, "m.room.server_acl", 100);
    mx_create_room opts = {.name = subject && subject[0] ? subject : group,
                           .topic = topic && topic[0] ? topic : NULL,
                           .preset = "private_chat",
                           .invite = invite,
                           .power_level_override = pl};
    char *room = NULL;
    mx_error err;
    int rc = mx_client_create_room(pw->mx, NULL, &opts, &room, &err);
    cJSON_Delete(pl);
    if (rc != MX_OK) {
        WB_WARN(MOD, "creating the room of %s failed: %s", group, err.error);
        return -1;
    }
    db_portal_set_mxid(pw->db, pid, room);
    db_portal_set_name(pw->db, pid, subject ? subject : "", topic ? topic : "");
    copy_str(out->mxid, sizeof(out->mxid), room);
    copy_str(out->name, sizeof(out->name), subject);
    copy_str(out->topic, sizeof(out->topic), topic);
    br_room_remember(b, room, group, 0, pid);
    WB_INFO(MOD, "group portal %lld: %s <-> %s", (long long)pid, room, group);
    free(room);
    return 0;
}

/* ---- admins ----
 * A group's admins show as power level 50 in its portal (their ghosts; the Matrix user of a login
 * that is admin), everybody else at the room's default; levels Matrix users set otherwise (e.g.
 * 100) are left alone. */

/* The named members' levels follow members[i].admin (user JIDs); other entries stay. The bridge's
 * record of the group's admins (group_admin) follows too. */
static void set_admin_levels(br_pworker *pw, br_login *l, int64_t portal_id, const char *room,
                             const br_group_member *members, size_t n)
{
    const char **jids = calloc(n ? n : 1, sizeof(*jids));
    bool *admin = calloc(n ? n : 1, sizeof(*admin));
    size_t k = 0;
    for (size_t i = 0; jids && admin && i < n; i++)
        if (members[i].jid[0]) {
            jids[k] = members[i].jid;
            admin[k++] = members[i].admin;
        }
    if (!jids || !admin || db_group_admin_put(pw->db, portal_id, jids, admin, k) != DB_OK)
        WB_WARN(MOD, "admin record of %s: %s", room,
                jids && admin ? db_conn_error(pw->db)->message : "out of memory");
    free(jids);
    free(admin);
    mx_error err;
    cJSON *pl = NULL;
    if (mx_client_get_state(pw->mx, NULL, room, "m.room.power_levels", "", &pl, &err) != MX_OK ||
        !pl)
        return;
    cJSON *users = cJSON_GetObjectItemCaseSensitive(pl, "users");
    if (!cJSON_IsObject(users)) {
        cJSON_Delete(pl);
        return;
    }
    char own[DB_ID_MAX];
    snprintf(own, sizeof(own), "%s@s.whatsapp.net", l->phone);
    bool changed = false;
    for (size_t i = 0; i < n; i++) {
        char mxid[DB_ID_MAX], name[DB_ID_MAX];
        if (strcmp(members[i].jid, own) == 0)
            snprintf(mxid, sizeof(mxid), "%s", l->mxid);
        else if (!br_portal_ghost_of(pw, members[i].jid, mxid, sizeof(mxid), name, sizeof(name)))
            continue;
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(users, mxid);
        int level = cJSON_IsNumber(cur) ? cur->valueint : 0;
        if (members[i].admin && level < BR_GROUP_ADMIN_LEVEL) {
            if (cur)
                cJSON_SetNumberValue(cur, BR_GROUP_ADMIN_LEVEL);
            else
                cJSON_AddNumberToObject(users, mxid, BR_GROUP_ADMIN_LEVEL);
            changed = true;
        } else if (!members[i].admin && level == BR_GROUP_ADMIN_LEVEL) {
            cJSON_DeleteItemFromObjectCaseSensitive(users, mxid);
            changed = true;
        }
    }
    if (changed && mx_client_set_power_levels(pw->mx, NULL, room, pl, &err) != MX_OK)
        WB_WARN(MOD, "power levels of %s: %s", room, err.error);
    cJSON_Delete(pl);
}

/* ---- jobs ---- */

/* Name, topic, the login's user invited, every participant's ghost joined. */
static void apply_info(br_pworker *pw, br_login *l, const br_group_data *g)
{
    for (size_t i = 0; i < g->nmembers; i++)
        if (g->members[i].lid[0] && g->members[i].jid[0] &&
            strcmp(g->members[i].lid, g->members[i].jid))
            db_lid_map_put(pw->db, l->id, g->members[i].lid, g->members[i].jid);
    db_portal p;
    if (br_portal_ensure_group(pw, l, g->group, g->subject, g->topic, &p) != 0) return;
    mx_error err;
    if (g->subject[0] && strcmp(p.name, g->subject) != 0) {
        mx_client_set_room_name(pw->mx, NULL, p.mxid, g->subject, &err);
        db_portal_set_name(pw->db, p.id, g->subject, g->topic);
    }
    if (strcmp(p.topic, g->topic) != 0) {
        mx_client_set_room_topic(pw->mx, NULL, p.mxid, g->topic, &err);
        db_portal_set_name(pw->db, p.id, g->subject[0] ? g->subject : p.name, g->topic);
    }
    mx_client_invite(pw->mx, NULL, p.mxid, l->mxid, &err);        /* fails harmlessly when in */
    if (br_puppet_ok(pw, l)) br_puppet_join(pw, p.mxid, l->mxid); /* accepted for the user */
    char own[DB_ID_MAX];
    snprintf(own, sizeof(own), "%s@s.whatsapp.net", l->phone);
    for (size_t i = 0; i < g->nmembers; i++) {
        if (strcmp(g->members[i].jid, own) == 0) continue; /* the user, not a ghost */
        char mxid[DB_ID_MAX];
        member_join(pw, p.mxid, g->members[i].jid, mxid, sizeof(mxid));
    }
    set_admin_levels(pw, l, p.id, p.mxid, g->members, g->nmembers);
}

void br_group_job_info(br_pworker *pw, void *arg)
{
    br_group_data *g = arg;
    br_login *l = br_login_find(pw->b, g->login_id);
    if (l) apply_info(pw, l, g);
    if (l && g->reply_room[0]) {
        br_room_ref ref;
        if (g->result_code != 0)
            br_notice(pw, g->reply_room, "The group could not be created: WhatsApp said %d.",
                      g->result_code);
        else if (br_room_of_chat(pw->b, 0, g->group, &ref))
            br_notice(pw, g->reply_room, "Created the WhatsApp group \"%s\": %s", g->subject,
                      ref.room);
    }
    br_group_data_free(g);
}

/* Tests only: a pause before a buffered notification is shown, so that a test can kill the
 * bridge between the ack to WhatsApp and the change reaching Matrix. */
static void test_delay(void)
{
    const char *v = getenv("WABRIDGE_TEST_GROUP_EVENT_DELAY_MS");
    long ms = v ? strtol(v, NULL, 10) : 0;
    if (ms <= 0) return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A group notification (or its row left in wa_group_event_buffer by a crash): shown in the
 * portal, then its row dropped. Showing one twice does no harm: every step sets the room to what
 * the group is (name, topic, members, levels). */
void br_group_job_change(br_pworker *pw, void *arg)
{
    br_group_data *g = arg;
    br_login *l = br_login_find(pw->b, g->login_id);
    br_room_ref ref;
    if (g->buffer_id) test_delay();
    if (!l) goto out;
    if (g->change == WA_GROUP_EV_CREATE) {
        apply_info(pw, l, g);
        goto out;
    }
    if (!br_room_of_chat(pw->b, 0, g->group, &ref)) goto out; /* no portal yet: nothing to show */
    char author[DB_ID_MAX] = "";
    const char *as_user = NULL;
    if (g->author[0] && member_join(pw, ref.room, g->author, author, sizeof(author)) == 0)
        as_user = author;
    mx_error err;
    switch (g->change) {
    case WA_GROUP_EV_SUBJECT:
        if (mx_client_set_room_name(pw->mx, as_user, ref.room, g->subject, &err) != MX_OK &&
            as_user)
            mx_client_set_room_name(pw->mx, NULL, ref.room, g->subject, &err);
        db_portal_set_name(pw->db, ref.portal_id, g->subject, NULL);
        break;
    case WA_GROUP_EV_DESCRIPTION:
        if (mx_client_set_room_topic(pw->mx, as_user, ref.room, g->topic, &err) != MX_OK && as_user)
            mx_client_set_room_topic(pw->mx, NULL, ref.room, g->topic, &err);
        break;
    case WA_GROUP_EV_ADD:
        for (size_t i = 0; i < g->nmembers; i++) {
            char mxid[DB_ID_MAX];
            member_join(pw, ref.room, g->members[i].jid, mxid, sizeof(mxid));
        }
        break;
    case WA_GROUP_EV_PROMOTE:
    case WA_GROUP_EV_DEMOTE:
        for (size_t i = 0; i < g->nmembers; i++)
            g->members[i].admin = g->change == WA_GROUP_EV_PROMOTE;
        set_admin_levels(pw, l, ref.portal_id, ref.room, g->members, g->nmembers);
        break;
    case WA_GROUP_EV_REMOVE:
    case WA_GROUP_EV_LEAVE:
        for (size_t i = 0; i < g->nmembers; i++) {
            ghost_leave(pw, ref.room, g->members[i].jid, g->change == WA_GROUP_EV_REMOVE);
            if (g->members[i].jid[0])
                db_group_admin_set(pw->db, ref.portal_id, g->members[i].jid, false);
        }
        break;
    default: break;
    }
out:
    if (g->buffer_id && db_group_event_done(pw->db, g->buffer_id) != DB_OK)
        WB_WARN(MOD, "group event %lld stays buffered: %s", (long long)g->buffer_id,
                db_conn_error(pw->db)->message);
    br_group_data_free(g);
}

/* Why WhatsApp refused to add or remove someone, for the notice. */
static const char *participant_error(int code, bool whole_call)
{
    switch (code) {
    case 401: /* not-authorized: the login is no admin */
        return whole_call ? "only group admins can do that"
                          : "their privacy settings allow only an invite link";
    case 403: /* forbidden: the whole call when the login is not in the group */
        return whole_call ? "you are not in the group on WhatsApp"
                          : "their privacy settings allow only an invite link";
    case 404: return "no such WhatsApp account";
    case 406: return "the group is full";
    case 408: return "they left the group recently";
    case 409: return "they already are in the group";
    default: return NULL;
    }
}

void br_group_member_undo(br_pworker *pw, const char *room, const char *ghost, bool added)
{
    mx_error err;
    if (added) { /* the invite goes */
        mx_client_kick(pw->mx, NULL, room, ghost, "not added on WhatsApp", &err);
    } else { /* still in the group: back into the room */
        memset(pw->joined, 0, sizeof(pw->joined));
        br_group_ghost_join(pw, room, ghost);
    }
}

void br_group_level_undo(br_pworker *pw, const char *room, const char *mxid, int level)
{
    mx_error err;
    cJSON *pl = NULL;
    if (mx_client_get_state(pw->mx, NULL, room, "m.room.power_levels", "", &pl, &err) != MX_OK ||
        !pl) {
        WB_WARN(MOD, "power levels of %s not put back: %s", room, err.error);
        return;
    }
    cJSON *users = cJSON_GetObjectItemCaseSensitive(pl, "users");
    if (!cJSON_IsObject(users)) users = cJSON_AddObjectToObject(pl, "users");
    const cJSON *def = cJSON_GetObjectItemCaseSensitive(pl, "users_default");
    int deflevel = cJSON_IsNumber(def) ? def->valueint : 0;
    cJSON *cur = cJSON_GetObjectItemCaseSensitive(users, mxid);
    if (cJSON_IsNumber(cur) ? cur->valueint == level : level == deflevel) {
        cJSON_Delete(pl); /* already so */
        return;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(users, mxid);
    if (level != deflevel) cJSON_AddNumberToObject(users, mxid, level);
    if (mx_client_set_power_levels(pw->mx, NULL, room, pl, &err) != MX_OK)
        WB_WARN(MOD, "power levels of %s not put back: %s", room, err.error);
    cJSON_Delete(pl);
}

bool br_group_member_mxid(br_pworker *pw, const char *jid, char *mxid, size_t cap, char *name,
                          size_t name_cap)
{
    bool found = false;
    pthread_mutex_lock(&pw->b->lock);
    for (size_t i = 0; i < pw->b->n_logins && !found; i++) {
        const br_login *l = pw->b->logins[i];
        char own[DB_ID_MAX];
        snprintf(own, sizeof(own), "%s@s.whatsapp.net", l->phone);
        if (l->removed || !l->phone[0] || strcmp(own, jid) != 0) continue;
        copy_str(mxid, cap, l->mxid);
        copy_str(name, name_cap, l->mxid);
        found = true;
    }
    pthread_mutex_unlock(&pw->b->lock);
    return found || br_portal_ghost_of(pw, jid, mxid, cap, name, name_cap);
}

/* Why WhatsApp refused to promote or demote someone, for the notice. */
static const char *admin_error(int code, bool whole_call)
{
    switch (code) {
    case 401: return whole_call ? "only group admins can do that" : "not allowed";
    case 403: return whole_call ? "you are not in the group on WhatsApp" : "not allowed";
    case 404: return "they are not in the group";
    default: return NULL;
    }
}

/* An error of a member change in words: WhatsApp's code, or the engine's reason it was not sent. */
static const char *error_words(int code, char *buf, size_t cap)
{
    if (code < 0) return wa_strerror(code);
    snprintf(buf, cap, "error %d", code);
    return buf;
}

/* The outcome of one member change a Matrix user made (add, remove, promote, demote) about jid:
 * done (error 0), or a notice saying why not (why NULL: from the error; whole_call: the error is
 * the whole call's) in room, and the portal put back as the group is. */
static void show_outcome(br_pworker *pw, const br_room_ref *ref, const char *room, int change,
                         const char *jid, int error, bool whole_call, const char *why,
                         int undo_level)
{
    char mxid[DB_ID_MAX], name[DB_ID_MAX], user[DB_ID_MAX], code[32];
    br_user_jid(jid, user, sizeof(user));
    if (change == WA_GROUP_PROMOTE || change == WA_GROUP_DEMOTE) {
        bool promote = change == WA_GROUP_PROMOTE;
        if (!br_group_member_mxid(pw, user, mxid, sizeof(mxid), name, sizeof(name))) return;
        if (error == 0) { /* the notification that follows finds the level set */
            db_group_admin_set(pw->db, ref->portal_id, user, promote);
            return;
        }
        if (!why) why = admin_error(error, whole_call);
        br_notice(pw, room, "⚠ WhatsApp did not %s %s %s group admin: %s.",
                  promote ? "make" : "remove", name[0] ? name : user, promote ? "a" : "as a",
                  why ? why : error_words(error, code, sizeof(code)));
        br_group_level_undo(pw, ref->room, mxid, undo_level);
        return;
    }
    if (!br_portal_ghost_of(pw, jid, mxid, sizeof(mxid), name, sizeof(name))) return;
    bool add = change == WA_GROUP_ADD;
    if (error == 0) {
        if (add) br_group_ghost_join(pw, ref->room, mxid);
        return;
    }
    if (!why) why = participant_error(error, whole_call);
    char *at = strchr(user, '@');
    if (at) *at = '\0';
    br_notice(pw, room, "⚠ WhatsApp did not %s %s: %s.", add ? "add" : "remove",
              name[0] ? name : user, why ? why : error_words(error, code, sizeof(code)));
    if (!add || error != 409) br_group_member_undo(pw, ref->room, mxid, add);
}

/* WhatsApp's answer to a member change a Matrix user made (add, remove, promote, demote): done,
 * or a notice and the room put back as the group is; then its group_call row goes. An answer lost
 * with the connection (the change may have been made) keeps the row: the group is asked when the
 * login is connected again (br_group_job_settle). */
void br_group_job_participants(br_pworker *pw, void *arg)
{
    br_group_data *g = arg;
    br_room_ref ref;
    bool lost = g->result_code == WA_ERR_TIMEOUT;
    if (br_room_of_chat(pw->b, 0, g->group, &ref)) {
        if (lost)
            br_notice(pw, g->reply_room,
                      "⏳ The connection to WhatsApp was lost before it answered your change of "
                      "the group's members; the group is checked when the connection is back.");
        for (size_t i = 0; !lost && i < g->nmembers; i++)
            show_outcome(pw, &ref, g->reply_room, g->participants_change, g->members[i].jid,
                         g->members[i].error, g->result_code != 0, NULL, g->undo_level);
    }
    if (g->call_id > 0 && !lost) db_group_call_done(pw->db, g->call_id);
    br_group_data_free(g);
}

/* Whether the group (an info: every member) shows the change a group_call row asked for. */
static bool call_made(const br_group_data *g, const db_group_call *call)
{
    if (g->result_code != 0 || !g->has_info) return false; /* the group could not be asked */
    char want[DB_ID_MAX];
    br_user_jid(call->target, want, sizeof(want));
    const br_group_member *m = NULL;
    for (size_t i = 0; i < g->nmembers && !m; i++) {
        char a[DB_ID_MAX], b[DB_ID_MAX];
        br_user_jid(g->members[i].jid, a, sizeof(a));
        br_user_jid(g->members[i].lid, b, sizeof(b));
        if (strcmp(a, want) == 0 || (b[0] && strcmp(b, want) == 0)) m = &g->members[i];
    }
    switch (call->change) {
    case WA_GROUP_ADD: return m != NULL;
    case WA_GROUP_REMOVE: return m == NULL;
    case WA_GROUP_PROMOTE: return m && m->admin;
    default: return !m || !m->admin; /* demote */
    }
}

void br_group_job_settle(br_pworker *pw, void *arg)
{
    br_group_data *g = arg;
    br_login *l = br_login_find(pw->b, g->login_id);
    if (!l) goto out;
    if (g->has_info) apply_info(pw, l, g); /* the room as the group is */
    br_room_ref ref;
    bool known = br_room_of_chat(pw->b, 0, g->group, &ref);
    db_group_call rows[BR_GROUP_CALLS];
    size_t n = 0;
    if (db_group_call_list(pw->db, l->id, g->group, g->settle_before_ms, rows,
                           sizeof(rows) / sizeof(rows[0]), &n) != DB_OK) {
        WB_WARN(MOD, "login %lld: group calls of %s not read (settled at the next connection)",
                (long long)l->id, g->group);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (br_login_call_in_flight(l, rows[i].id)) continue; /* its answer is still to come */
        bool made = call_made(g, &rows[i]);
        WB_INFO(MOD, "login %lld: group call %lld (change %d of %s in %s), answer lost: %s",
                (long long)l->id, (long long)rows[i].id, rows[i].change, rows[i].target,
                rows[i].group, made ? "made" : "not made");
        if (known)
            show_outcome(pw, &ref, rows[i].room, rows[i].change, rows[i].target, made ? 0 : -1,
                         false,
                         "WhatsApp's answer was lost (the bridge or its connection stopped), and "
                         "the group shows it was not done",
                         rows[i].undo_level);
        db_group_call_done(pw->db, rows[i].id);
    }
out:
    br_group_data_free(g);
}

void br_group_job_info_refused(br_pworker *pw, void *arg)
{
    br_group_data *g = arg;
    bool subject = g->participants_change == WA_GROUP_OP_SUBJECT;
    const char *why;
    char code[32];
    switch (g->result_code) {
    case 401: why = "only group admins can change it"; break;
    case 403: why = "you are not in the group on WhatsApp"; break;
    case 406: why = "WhatsApp did not accept it"; break;
    case 409: why = "somebody changed it meanwhile"; break;
    default: why = error_words(g->result_code, code, sizeof(code));
    }
    br_notice(pw, g->reply_room,
              "⚠ WhatsApp did not change the group's %s: %s. The room shows "
              "the group's again.",
              subject ? "name" : "description", why);
    br_login *l = br_login_find(pw->b, g->login_id);
    if (l) br_login_group_info(l, g->group); /* the info job sets the room to the group */
    br_group_data_free(g);
}
