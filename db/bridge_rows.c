/*
 * db/bridge_rows.c - statements for the rows of db/bridge_rows.h.
 */
#include "db/bridge_rows.h"
#include "db/db_internal.h"

#include <stdlib.h>
#include <string.h>

#define I DB_STMT_IDEMPOTENT

static const db_stmt st_user_room = {
    "rows_user_room", "SELECT coalesce(management_room, '') FROM mx_user WHERE mxid = $1", I};
static const db_stmt st_user_set_room = {
    "rows_user_set_room",
    "INSERT INTO mx_user (mxid, management_room, created_ms) VALUES ($1, $2, $3)"
    " ON CONFLICT (mxid) DO UPDATE SET management_room = EXCLUDED.management_room",
    I};
static const db_stmt st_user_puppet = {
    "rows_user_puppet", "SELECT coalesce(double_puppet_token, '') FROM mx_user WHERE mxid = $1", I};
static const db_stmt st_user_set_puppet = {
    "rows_user_set_puppet",
    "INSERT INTO mx_user (mxid, double_puppet_token, created_ms) VALUES ($1, $2, $3)"
    " ON CONFLICT (mxid) DO UPDATE SET double_puppet_token = EXCLUDED.double_puppet_token",
    I};
static const db_stmt st_user_by_room = {
    "rows_user_by_room", "SELECT mxid FROM mx_user WHERE management_room = $1 LIMIT 1", I};

#define LOGIN_COLS                                                                                 \
    "id, mxid, coalesce(phone, ''), state, created_ms, coalesce(owner, ''),"                       \
    " coalesce(lease_expires_ms, 0)"
static const db_stmt st_login_list = {
    "rows_login_list",
    "SELECT " LOGIN_COLS " FROM wa_login WHERE $1::text IS NULL OR mxid = $1 ORDER BY id LIMIT $2",
    I};
static const db_stmt st_login_get = {"rows_login_get",
                                     "SELECT " LOGIN_COLS " FROM wa_login WHERE id = $1", I};
static const db_stmt st_login_state = {
    "rows_login_state", "UPDATE wa_login SET state = $2, phone = coalesce($3, phone) WHERE id = $1",
    I};
static const db_stmt st_login_take = {
    "rows_login_take", "UPDATE wa_login SET owner = $2, lease_expires_ms = $3 WHERE id = $1", I};
static const db_stmt st_login_release = {
    "rows_login_release",
    "UPDATE wa_login SET owner = NULL, lease_expires_ms = NULL WHERE id = $1 AND owner = $2", I};

#define PORTAL_COLS                                                                                \
    "id, chat_jid, coalesce(receiver_login_id, 0), coalesce(mxid, ''), name, topic,"               \
    " coalesce(relay_login_id, 0)"
static const db_stmt st_portal_list = {
    "rows_portal_list",
    "SELECT " PORTAL_COLS " FROM portal WHERE mxid IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
    I};
static const db_stmt st_portal_get = {"rows_portal_get",
                                      "SELECT " PORTAL_COLS " FROM portal WHERE id = $1", I};
static const db_stmt st_portal_by_mxid = {"rows_portal_by_mxid",
                                          "SELECT " PORTAL_COLS " FROM portal WHERE mxid = $1", I};
static const db_stmt st_portal_set_mxid = {"rows_portal_set_mxid",
                                           "UPDATE portal SET mxid = $2 WHERE id = $1", I};
static const db_stmt st_portal_set_name = {
    "rows_portal_set_name",
    "UPDATE portal SET name = $2, topic = $3, name_set = true, topic_set = true WHERE id = $1", I};
static const db_stmt st_portal_set_relay = {
    "rows_portal_set_relay", "UPDATE portal SET relay_login_id = $2 WHERE id = $1", I};
static const db_stmt st_portal_del_login = {"rows_portal_del_login",
                                            "DELETE FROM portal WHERE receiver_login_id = $1", I};

static const db_stmt st_ghost_get = {"rows_ghost_get",
                                     "SELECT jid, mxid, name FROM ghost WHERE jid = $1", I};
static const db_stmt st_ghost_by_mxid = {"rows_ghost_by_mxid",
                                         "SELECT jid, mxid, name FROM ghost WHERE mxid = $1", I};
static const db_stmt st_ghost_upsert = {
    "rows_ghost_upsert",
    "INSERT INTO ghost (jid, mxid, name, name_set, updated_ms) VALUES ($1, $2, $3, $3 <> '', $4)"
    " ON CONFLICT (jid) DO UPDATE SET mxid = EXCLUDED.mxid, name = EXCLUDED.name,"
    " name_set = EXCLUDED.name_set, updated_ms = EXCLUDED.updated_ms",
    I};

#define REACTION_COLS "portal_id, target_wa_id, sender_jid, emoji, mxid, mx_room, timestamp_ms"
static const db_stmt st_reaction_put = {
    "rows_reaction_put",
    "INSERT INTO reaction (" REACTION_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (portal_id, target_wa_id, target_part_id, sender_jid) DO UPDATE SET"
    " emoji = EXCLUDED.emoji, mxid = EXCLUDED.mxid, mx_room = EXCLUDED.mx_room,"
    " timestamp_ms = EXCLUDED.timestamp_ms",
    I};
static const db_stmt st_reaction_get = {"rows_reaction_get",
                                        "SELECT " REACTION_COLS
                                        " FROM reaction WHERE portal_id = $1 AND target_wa_id = $2"
                                        " AND target_part_id = '' AND sender_jid = $3",
                                        I};
static const db_stmt st_reaction_by_mxid = {
    "rows_reaction_by_mxid", "SELECT " REACTION_COLS " FROM reaction WHERE mxid = $1", I};
static const db_stmt st_reaction_delete = {"rows_reaction_delete",
                                           "DELETE FROM reaction WHERE mxid = $1", I};

static const db_stmt st_lid_del = {
    "rows_lid_del", "DELETE FROM wa_lid_map WHERE login_id = $1 AND (lid = $2 OR pn = $3)", I};
static const db_stmt st_lid_put = {
    "rows_lid_put", "INSERT INTO wa_lid_map (login_id, lid, pn) VALUES ($1, $2, $3)", 0};
static const db_stmt st_lid_to_pn = {
    "rows_lid_to_pn", "SELECT pn FROM wa_lid_map WHERE login_id = $1 AND lid = $2", I};

static const db_stmt st_inbox_after = {
    "rows_inbox_after",
    "SELECT id, event_id, room_id, event_json, attempts FROM mx_inbox WHERE id > $1"
    " ORDER BY id LIMIT $2",
    I};
static const db_stmt st_inbox_failed = {
    "rows_inbox_failed", "UPDATE mx_inbox SET attempts = attempts + 1 WHERE id = $1", 0};
static const db_stmt st_inbox_count = {"rows_inbox_count", "SELECT count(*) FROM mx_inbox", I};

static const db_stmt st_buffer_pending = {
    "rows_buffer_pending",
    "SELECT chat_jid, sender_jid, message_id, plaintext, server_ts_ms FROM wa_event_buffer"
    " WHERE login_id = $1 ORDER BY server_ts_ms, inserted_ms",
    I};
static const db_stmt st_buffer_done = {
    "rows_buffer_done",
    "DELETE FROM wa_event_buffer WHERE login_id = $1 AND chat_jid = $2 AND message_id = $3", I};
static const db_stmt st_buffer_count = {
    "rows_buffer_count", "SELECT count(*) FROM wa_event_buffer WHERE login_id = $1", I};

static const db_stmt st_gevent_save = {
    "rows_gevent_save",
    "INSERT INTO wa_group_event_buffer (login_id, group_jid, note_key, change_index, data,"
    " inserted_ms) VALUES ($1, $2, $3, $4, $5, (extract(epoch FROM clock_timestamp()) * 1000)"
    "::bigint) ON CONFLICT (login_id, note_key, change_index) DO UPDATE SET data = EXCLUDED.data"
    " RETURNING id",
    I};
static const db_stmt st_gevent_pending = {"rows_gevent_pending",
                                          "SELECT id, group_jid, data FROM wa_group_event_buffer"
                                          " WHERE login_id = $1 ORDER BY id",
                                          I};
static const db_stmt st_gevent_done = {"rows_gevent_done",
                                       "DELETE FROM wa_group_event_buffer WHERE id = $1", I};
/* the inbox row goes with the call's insertion: a restart never sends the call again */
static const db_stmt st_gcall_add = {
    "rows_gcall_add",
    "WITH gone AS (DELETE FROM mx_inbox WHERE id = $8)"
    " INSERT INTO group_call (login_id, group_jid, room, change, target_jid, undo_level,"
    " created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    0};
static const db_stmt st_gcall_list = {
    "rows_gcall_list",
    "SELECT id, login_id, group_jid, room, change, target_jid, undo_level, created_ms"
    " FROM group_call WHERE login_id = $1 AND ($2::text IS NULL OR group_jid = $2)"
    " AND created_ms < $3 ORDER BY id LIMIT $4",
    I};
static const db_stmt st_gcall_done = {"rows_gcall_done", "DELETE FROM group_call WHERE id = $1", I};
static const db_stmt st_gevent_count = {
    "rows_gevent_count", "SELECT count(*) FROM wa_group_event_buffer WHERE login_id = $1", I};
/* $3: admin (the row is there afterwards) or not (it is gone) */
static const db_stmt st_gadmin_put = {
    "rows_gadmin_put",
    "WITH gone AS (DELETE FROM group_admin WHERE portal_id = $1::bigint AND user_jid = $2::text"
    " AND NOT $3::boolean) INSERT INTO group_admin (portal_id, user_jid) SELECT $1::bigint,"
    " $2::text WHERE $3::boolean ON CONFLICT DO NOTHING",
    I};
static const db_stmt st_gadmin_list = {
    "rows_gadmin_list",
    "SELECT user_jid FROM group_admin WHERE portal_id = $1 ORDER BY user_jid LIMIT $2", I};

static int copy_one_text(db_conn *c, const db_stmt *st, const char *key, char *out, size_t cap)
{
    if (!key) return db_set_error(c, DB_ERR_INVALID, NULL, "%s: no key", st->name);
    db_param p[1] = {db_p_text(key)};
    db_result *r;
    int rc = db_exec_row(c, st, p, 1, &r);
    if (rc) return rc;
    bool ok = db_result_copy_text(r, 0, 0, out, cap);
    db_result_free(r);
    return ok ? DB_OK : db_set_error(c, DB_ERR_INVALID, NULL, "%s: value too long", st->name);
}

int db_user_management_room(db_conn *c, const char *mxid, char *room, size_t cap)
{
    return copy_one_text(c, &st_user_room, mxid, room, cap);
}

int db_user_set_management_room(db_conn *c, const char *mxid, const char *room)
{
    db_param p[3] = {db_p_text(mxid), db_p_text(room), db_p_int(db_now_ms())};
    return db_exec(c, &st_user_set_room, p, 3, NULL);
}

int db_user_by_management_room(db_conn *c, const char *room, char *mxid, size_t cap)
{
    return copy_one_text(c, &st_user_by_room, room, mxid, cap);
}

int db_user_puppet_token(db_conn *c, const char *mxid, char *token, size_t cap)
{
    return copy_one_text(c, &st_user_puppet, mxid, token, cap);
}

int db_user_set_puppet_token(db_conn *c, const char *mxid, const char *token)
{
    db_param p[3] = {db_p_text(mxid), token ? db_p_text(token) : db_p_null(),
                     db_p_int(db_now_ms())};
    return db_exec(c, &st_user_set_puppet, p, 3, NULL);
}

static void login_row(const db_result *r, int i, db_login *l)
{
    memset(l, 0, sizeof(*l));
    l->id = db_result_int(r, i, 0);
    db_result_copy_text(r, i, 1, l->mxid, sizeof(l->mxid));
    db_result_copy_text(r, i, 2, l->phone, sizeof(l->phone));
    db_result_copy_text(r, i, 3, l->state, sizeof(l->state));
    l->created_ms = db_result_int(r, i, 4);
    db_result_copy_text(r, i, 5, l->owner, sizeof(l->owner));
    l->lease_expires_ms = db_result_int(r, i, 6);
}

int db_login_list(db_conn *c, const char *mxid, db_login *out, size_t max, size_t *n)
{
    *n = 0;
    db_param p[2] = {db_p_text(mxid), db_p_int((int64_t)max)};
    db_result *r;
    int rc = db_exec(c, &st_login_list, p, 2, &r);
    if (rc) return rc;
    for (int i = 0; i < db_result_rows(r) && *n < max; i++)
        login_row(r, i, &out[(*n)++]);
    db_result_free(r);
    return DB_OK;
}

int db_login_get(db_conn *c, int64_t id, db_login *out)
{
    db_param p[1] = {db_p_int(id)};
    db_result *r;
    int rc = db_exec_row(c, &st_login_get, p, 1, &r);
    if (rc) return rc;
    login_row(r, 0, out);
    db_result_free(r);
    return DB_OK;
}

int db_login_set_state(db_conn *c, int64_t id, const char *state, const char *phone)
{
    db_param p[3] = {db_p_int(id), db_p_text(state), db_p_text(phone)};
    return db_exec(c, &st_login_state, p, 3, NULL);
}

int db_login_take(db_conn *c, int64_t id, const char *owner, int64_t lease_ms)
{
    db_param p[3] = {db_p_int(id), db_p_text(owner), db_p_int(db_now_ms() + lease_ms)};
    return db_exec(c, &st_login_take, p, 3, NULL);
}

int db_login_release(db_conn *c, int64_t id, const char *owner)
{
    db_param p[2] = {db_p_int(id), db_p_text(owner)};
    return db_exec(c, &st_login_release, p, 2, NULL);
}

static void portal_row(const db_result *r, int i, db_portal *p)
{
    memset(p, 0, sizeof(*p));
    p->id = db_result_int(r, i, 0);
    db_result_copy_text(r, i, 1, p->chat_jid, sizeof(p->chat_jid));
    p->receiver_login_id = db_result_int(r, i, 2);
    db_result_copy_text(r, i, 3, p->mxid, sizeof(p->mxid));
    db_result_copy_text(r, i, 4, p->name, sizeof(p->name));
    db_result_copy_text(r, i, 5, p->topic, sizeof(p->topic));
    p->relay_login_id = db_result_int(r, i, 6);
}

int db_portal_list(db_conn *c, int64_t after_id, db_portal *out, size_t max, size_t *n)
{
    *n = 0;
    db_param p[2] = {db_p_int(after_id), db_p_int((int64_t)max)};
    db_result *r;
    int rc = db_exec(c, &st_portal_list, p, 2, &r);
    if (rc) return rc;
    for (int i = 0; i < db_result_rows(r) && *n < max; i++)
        portal_row(r, i, &out[(*n)++]);
    db_result_free(r);
    return DB_OK;
}

static int portal_one(db_conn *c, const db_stmt *st, db_param p, db_portal *out)
{
    db_result *r;
    int rc = db_exec_row(c, st, &p, 1, &r);
    if (rc) return rc;
    portal_row(r, 0, out);
    db_result_free(r);
    return DB_OK;
}

int db_portal_get(db_conn *c, int64_t id, db_portal *out)
{
    return portal_one(c, &st_portal_get, db_p_int(id), out);
}

int db_portal_by_mxid(db_conn *c, const char *room, db_portal *out)
{
    if (!room) return db_set_error(c, DB_ERR_INVALID, NULL, "db_portal_by_mxid: no room");
    return portal_one(c, &st_portal_by_mxid, db_p_text(room), out);
}

int db_portal_set_mxid(db_conn *c, int64_t id, const char *room)
{
    db_param p[2] = {db_p_int(id), db_p_text(room)};
    return db_exec(c, &st_portal_set_mxid, p, 2, NULL);
}

int db_portal_set_name(db_conn *c, int64_t id, const char *name, const char *topic)
{
    db_param p[3] = {db_p_int(id), db_p_text(name ? name : ""), db_p_text(topic ? topic : "")};
    return db_exec(c, &st_portal_set_name, p, 3, NULL);
}

int db_portal_set_relay(db_conn *c, int64_t id, int64_t relay_login_id)
{
    db_param p[2] = {db_p_int(id), relay_login_id ? db_p_int(relay_login_id) : db_p_null()};
    return db_exec(c, &st_portal_set_relay, p, 2, NULL);
}

int db_portal_delete_for_login(db_conn *c, int64_t login_id)
{
    db_param p[1] = {db_p_int(login_id)};
    return db_exec(c, &st_portal_del_login, p, 1, NULL);
}

static int ghost_one(db_conn *c, const db_stmt *st, const char *key, db_ghost *out)
{
    if (!key) return db_set_error(c, DB_ERR_INVALID, NULL, "%s: no key", st->name);
    db_param p[1] = {db_p_text(key)};
    db_result *r;
    int rc = db_exec_row(c, st, p, 1, &r);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    db_result_copy_text(r, 0, 0, out->jid, sizeof(out->jid));
    db_result_copy_text(r, 0, 1, out->mxid, sizeof(out->mxid));
    db_result_copy_text(r, 0, 2, out->name, sizeof(out->name));
    db_result_free(r);
    return DB_OK;
}

int db_ghost_get(db_conn *c, const char *jid, db_ghost *out)
{
    return ghost_one(c, &st_ghost_get, jid, out);
}

int db_ghost_by_mxid(db_conn *c, const char *mxid, db_ghost *out)
{
    return ghost_one(c, &st_ghost_by_mxid, mxid, out);
}

int db_ghost_upsert(db_conn *c, const db_ghost *g)
{
    db_param p[4] = {db_p_text(g->jid), db_p_text(g->mxid), db_p_text(g->name),
                     db_p_int(db_now_ms())};
    return db_exec(c, &st_ghost_upsert, p, 4, NULL);
}

int db_reaction_put(db_conn *c, const db_reaction *r)
{
    db_param p[7] = {db_p_int(r->portal_id),   db_p_text(r->target_wa_id), db_p_text(r->sender_jid),
                     db_p_text(r->emoji),      db_p_text(r->mxid),         db_p_text(r->mx_room),
                     db_p_int(r->timestamp_ms)};
    return db_exec(c, &st_reaction_put, p, 7, NULL);
}

static int reaction_one(db_conn *c, const db_stmt *st, const db_param *p, int np, db_reaction *out)
{
    db_result *r;
    int rc = db_exec_row(c, st, p, np, &r);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    out->portal_id = db_result_int(r, 0, 0);
    db_result_copy_text(r, 0, 1, out->target_wa_id, sizeof(out->target_wa_id));
    db_result_copy_text(r, 0, 2, out->sender_jid, sizeof(out->sender_jid));
    db_result_copy_text(r, 0, 3, out->emoji, sizeof(out->emoji));
    db_result_copy_text(r, 0, 4, out->mxid, sizeof(out->mxid));
    db_result_copy_text(r, 0, 5, out->mx_room, sizeof(out->mx_room));
    out->timestamp_ms = db_result_int(r, 0, 6);
    db_result_free(r);
    return DB_OK;
}

int db_reaction_get(db_conn *c, int64_t portal_id, const char *target_wa_id, const char *sender_jid,
                    db_reaction *out)
{
    db_param p[3] = {db_p_int(portal_id), db_p_text(target_wa_id), db_p_text(sender_jid)};
    return reaction_one(c, &st_reaction_get, p, 3, out);
}

int db_reaction_by_mxid(db_conn *c, const char *mxid, db_reaction *out)
{
    db_param p[1] = {db_p_text(mxid)};
    return reaction_one(c, &st_reaction_by_mxid, p, 1, out);
}

int db_reaction_delete(db_conn *c, const char *mxid)
{
    db_param p[1] = {db_p_text(mxid)};
    return db_exec(c, &st_reaction_delete, p, 1, NULL);
}

int db_lid_map_put(db_conn *c, int64_t login_id, const char *lid, const char *pn)
{
    db_param p[3] = {db_p_int(login_id), db_p_text(lid), db_p_text(pn)};
    int rc = db_begin(c, 0);
    if (rc) return rc;
    rc = db_exec(c, &st_lid_del, p, 3, NULL);
    if (!rc) rc = db_exec(c, &st_lid_put, p, 3, NULL);
    if (rc) {
        db_rollback(c);
        return rc;
    }
    return db_commit(c);
}

int db_lid_to_pn(db_conn *c, int64_t login_id, const char *lid, char *pn, size_t cap)
{
    db_param p[2] = {db_p_int(login_id), db_p_text(lid)};
    db_result *r;
    int rc = db_exec_row(c, &st_lid_to_pn, p, 2, &r);
    if (rc) return rc;
    bool ok = db_result_copy_text(r, 0, 0, pn, cap);
    db_result_free(r);
    return ok ? DB_OK : db_set_error(c, DB_ERR_INVALID, NULL, "db_lid_to_pn: too long");
}

int db_inbox_peek_after(db_conn *c, int64_t after_id, db_inbox_row *rows, size_t max, size_t *n)
{
    *n = 0;
    db_param p[2] = {db_p_int(after_id), db_p_int((int64_t)max)};
    db_result *r;
    int rc = db_exec(c, &st_inbox_after, p, 2, &r);
    if (rc) return rc;
    for (int i = 0; i < db_result_rows(r) && *n < max; i++) {
        db_inbox_row *row = &rows[*n];
        memset(row, 0, sizeof(*row));
        row->id = db_result_int(r, i, 0);
        db_result_copy_text(r, i, 1, row->event_id, sizeof(row->event_id));
        db_result_copy_text(r, i, 2, row->room_id, sizeof(row->room_id));
        row->event_json = strdup(db_result_text(r, i, 3));
        row->attempts = (int)db_result_int(r, i, 4);
        if (!row->event_json) {
            db_inbox_rows_free(rows, *n);
            *n = 0;
            db_result_free(r);
            return db_set_error(c, DB_ERR_NOMEM, NULL, "db_inbox_peek_after: out of memory");
        }
        (*n)++;
    }
    db_result_free(r);
    return DB_OK;
}

int db_inbox_failed(db_conn *c, int64_t id)
{
    db_param p[1] = {db_p_int(id)};
    return db_exec(c, &st_inbox_failed, p, 1, NULL);
}

static int count_of(db_conn *c, const db_stmt *st, const db_param *p, int np, int64_t *n)
{
    db_result *r;
    int rc = db_exec_row(c, st, p, np, &r);
    if (rc) return rc;
    *n = db_result_int(r, 0, 0);
    db_result_free(r);
    return DB_OK;
}

int db_inbox_count(db_conn *c, int64_t *n)
{
    return count_of(c, &st_inbox_count, NULL, 0, n);
}

int db_event_buffer_pending(db_conn *c, int64_t login_id, db_buffered **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    db_param p[1] = {db_p_int(login_id)};
    db_result *r;
    int rc = db_exec(c, &st_buffer_pending, p, 1, &r);
    if (rc) return rc;
    int rows = db_result_rows(r);
    if (rows == 0) {
        db_result_free(r);
        return DB_OK;
    }
    db_buffered *b = calloc((size_t)rows, sizeof(*b));
    if (!b) {
        db_result_free(r);
        return db_set_error(c, DB_ERR_NOMEM, NULL, "db_event_buffer_pending: out of memory");
    }
    for (int i = 0; i < rows; i++) {
        db_result_copy_text(r, i, 0, b[i].chat, sizeof(b[i].chat));
        db_result_copy_text(r, i, 1, b[i].sender, sizeof(b[i].sender));
        db_result_copy_text(r, i, 2, b[i].id, sizeof(b[i].id));
        size_t len;
        const uint8_t *pt = db_result_bytes(r, i, 3, &len);
        b[i].plaintext = malloc(len ? len : 1);
        if (!b[i].plaintext) {
            db_buffered_free(b, (size_t)i);
            db_result_free(r);
            return db_set_error(c, DB_ERR_NOMEM, NULL, "db_event_buffer_pending: out of memory");
        }
        if (len) memcpy(b[i].plaintext, pt, len);
        b[i].len = len;
        b[i].ts_ms = db_result_int(r, i, 4);
    }
    db_result_free(r);
    *out = b;
    *n = (size_t)rows;
    return DB_OK;
}

void db_buffered_free(db_buffered *rows, size_t n)
{
    if (!rows) return;
    for (size_t i = 0; i < n; i++)
        free(rows[i].plaintext);
    free(rows);
}

int db_event_buffer_done(db_conn *c, int64_t login_id, const char *chat, const char *id)
{
    db_param p[3] = {db_p_int(login_id), db_p_text(chat), db_p_text(id)};
    return db_exec(c, &st_buffer_done, p, 3, NULL);
}

int db_event_buffer_count(db_conn *c, int64_t login_id, int64_t *n)
{
    db_param p[1] = {db_p_int(login_id)};
    return count_of(c, &st_buffer_count, p, 1, n);
}

/* ---- group notifications ---- */

typedef struct gevent_save_arg {
    int64_t login_id;
    const char *group, *note_key;
    const char *const *data;
    size_t n;
    int64_t *ids;
} gevent_save_arg;

static int gevent_save_tx(db_conn *c, void *arg)
{
    gevent_save_arg *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        db_param p[5] = {db_p_int(a->login_id), db_p_text(a->group), db_p_text(a->note_key),
                         db_p_int((int64_t)i), db_p_text(a->data[i])};
        db_result *r;
        int rc = db_exec_row(c, &st_gevent_save, p, 5, &r);
        if (rc) return rc;
        a->ids[i] = db_result_int(r, 0, 0);
        db_result_free(r);
    }
    return DB_OK;
}

int db_group_event_save(db_conn *c, int64_t login_id, const char *group, const char *note_key,
                        const char *const *data, size_t n, int64_t *ids)
{
    if (!group || !note_key || (n && (!data || !ids)))
        return db_set_error(c, DB_ERR_INVALID, NULL, "db_group_event_save: missing argument");
    if (!n) return DB_OK;
    gevent_save_arg a = {login_id, group, note_key, data, n, ids};
    /* re-running the body is harmless: each row is an upsert of the same key */
    return db_tx(c, DB_TX_IDEMPOTENT, gevent_save_tx, &a);
}

int db_group_event_pending(db_conn *c, int64_t login_id, db_group_event **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    db_param p[1] = {db_p_int(login_id)};
    db_result *r;
    int rc = db_exec(c, &st_gevent_pending, p, 1, &r);
    if (rc) return rc;
    int rows = db_result_rows(r);
    db_group_event *e = rows ? calloc((size_t)rows, sizeof(*e)) : NULL;
    if (rows && !e) {
        db_result_free(r);
        return db_set_error(c, DB_ERR_NOMEM, NULL, "db_group_event_pending: out of memory");
    }
    for (int i = 0; i < rows; i++) {
        e[i].id = db_result_int(r, i, 0);
        db_result_copy_text(r, i, 1, e[i].group, sizeof(e[i].group));
        e[i].data = strdup(db_result_text(r, i, 2));
        if (!e[i].data) {
            db_group_events_free(e, (size_t)i);
            db_result_free(r);
            return db_set_error(c, DB_ERR_NOMEM, NULL, "db_group_event_pending: out of memory");
        }
    }
    db_result_free(r);
    *out = e;
    *n = (size_t)rows;
    return DB_OK;
}

void db_group_events_free(db_group_event *rows, size_t n)
{
    if (!rows) return;
    for (size_t i = 0; i < n; i++)
        free(rows[i].data);
    free(rows);
}

int db_group_event_done(db_conn *c, int64_t id)
{
    db_param p[1] = {db_p_int(id)};
    return db_exec(c, &st_gevent_done, p, 1, NULL);
}

int db_group_event_count(db_conn *c, int64_t login_id, int64_t *n)
{
    db_param p[1] = {db_p_int(login_id)};
    return count_of(c, &st_gevent_count, p, 1, n);
}

/* ---- group admins ---- */

int db_group_admin_set(db_conn *c, int64_t portal_id, const char *jid, bool admin)
{
    return db_group_admin_put(c, portal_id, &jid, &admin, 1);
}

typedef struct gadmin_fill_arg {
    int64_t portal_id;
    const char *const *jids;
    const bool *admin;
} gadmin_fill_arg;

static void gadmin_fill(void *arg, size_t i, db_param *p)
{
    const gadmin_fill_arg *a = arg;
    p[0] = db_p_int(a->portal_id);
    p[1] = db_p_text(a->jids[i]);
    p[2] = db_p_bool(a->admin[i]);
}

int db_group_admin_put(db_conn *c, int64_t portal_id, const char *const *jids, const bool *admin,
                       size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!jids[i] || !jids[i][0])
            return db_set_error(c, DB_ERR_INVALID, NULL, "db_group_admin_put: no jid");
    if (!n) return DB_OK;
    gadmin_fill_arg a = {portal_id, jids, admin};
    return db_exec_batch(c, &st_gadmin_put, 3, n, gadmin_fill, &a, NULL);
}

int db_group_admins(db_conn *c, int64_t portal_id, char (*out)[DB_ID_MAX], size_t max, size_t *n)
{
    *n = 0;
    db_param p[2] = {db_p_int(portal_id), db_p_int((int64_t)max)};
    db_result *r;
    int rc = db_exec(c, &st_gadmin_list, p, 2, &r);
    if (rc) return rc;
    int rows = db_result_rows(r);
    for (int i = 0; i < rows && (size_t)i < max; i++)
        db_result_copy_text(r, i, 0, out[i], DB_ID_MAX);
    *n = (size_t)rows < max ? (size_t)rows : max;
    db_result_free(r);
    return DB_OK;
}

/* ---- group_call ---- */

int db_group_call_add(db_conn *c, const db_group_call *call, int64_t inbox_id, int64_t *id)
{
    *id = 0;
    if (!call->group[0] || !call->target[0])
        return db_set_error(c, DB_ERR_INVALID, NULL, "db_group_call_add: missing argument");
    db_param p[8] = {db_p_int(call->login_id),   db_p_text(call->group),
                     db_p_text(call->room),      db_p_int(call->change),
                     db_p_text(call->target),    db_p_int(call->undo_level),
                     db_p_int(call->created_ms), db_p_int(inbox_id)};
    db_result *r;
    int rc = db_exec_row(c, &st_gcall_add, p, 8, &r);
    if (rc) return rc;
    *id = db_result_int(r, 0, 0);
    db_result_free(r);
    return db_sync(c);
}

int db_group_call_list(db_conn *c, int64_t login_id, const char *group, int64_t before_ms,
                       db_group_call *out, size_t max, size_t *n)
{
    *n = 0;
    db_param p[4] = {db_p_int(login_id), db_p_text(group), db_p_int(before_ms),
                     db_p_int((int64_t)max)};
    db_result *r;
    int rc = db_exec(c, &st_gcall_list, p, 4, &r);
    if (rc) return rc;
    int rows = db_result_rows(r);
    for (int i = 0; i < rows && (size_t)i < max; i++) {
        db_group_call *g = &out[i];
        memset(g, 0, sizeof(*g));
        g->id = db_result_int(r, i, 0);
        g->login_id = db_result_int(r, i, 1);
        db_result_copy_text(r, i, 2, g->group, sizeof(g->group));
        db_result_copy_text(r, i, 3, g->room, sizeof(g->room));
        g->change = (int)db_result_int(r, i, 4);
        db_result_copy_text(r, i, 5, g->target, sizeof(g->target));
        g->undo_level = (int)db_result_int(r, i, 6);
        g->created_ms = db_result_int(r, i, 7);
    }
    *n = (size_t)rows < max ? (size_t)rows : max;
    db_result_free(r);
    return DB_OK;
}

int db_group_call_done(db_conn *c, int64_t id)
{
    db_param p[1] = {db_p_int(id)};
    return db_exec(c, &st_gcall_done, p, 1, NULL);
}
