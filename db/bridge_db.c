/*
 * db/bridge_db.c - statements for the bridge's rows (see bridge_db.h).
 */
#include "db/bridge_db.h"
#include "db/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define I DB_STMT_IDEMPOTENT

static const db_stmt st_user_ensure = {
    "bridge_user_ensure",
    "INSERT INTO mx_user (mxid, created_ms) VALUES ($1, $2) ON CONFLICT (mxid) DO NOTHING", I};
static const db_stmt st_login_create = {
    "bridge_login_create", "INSERT INTO wa_login (mxid, created_ms) VALUES ($1, $2) RETURNING id",
    0};
static const db_stmt st_login_delete = {"bridge_login_delete", "DELETE FROM wa_login WHERE id = $1",
                                        I};
static const db_stmt st_sweep_orphans = {
    "bridge_sweep_orphans",
    "WITH b AS (DELETE FROM wa_event_buffer x WHERE NOT EXISTS"
    " (SELECT 1 FROM wa_login l WHERE l.id = x.login_id) RETURNING 1),"
    " s AS (DELETE FROM wa_sent_message x WHERE NOT EXISTS"
    " (SELECT 1 FROM wa_login l WHERE l.id = x.login_id) RETURNING 1)"
    " SELECT (SELECT count(*) FROM b) + (SELECT count(*) FROM s)",
    I};
static const db_stmt st_login_lease = {
    "bridge_login_lease",
    "UPDATE wa_login SET owner = $1, lease_expires_ms = $2 + $3 WHERE id IN ("
    " SELECT id FROM wa_login WHERE owner IS NULL OR owner = $1 OR lease_expires_ms < $2"
    " ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING id",
    I};
static const db_stmt st_portal_ensure = {
    "bridge_portal_ensure",
    "WITH ins AS (INSERT INTO portal (chat_jid, receiver_login_id, created_ms)"
    " VALUES ($1, $2, $3) ON CONFLICT (chat_jid, receiver_login_id) DO NOTHING RETURNING id)"
    " SELECT id FROM ins UNION ALL SELECT id FROM portal WHERE chat_jid = $1"
    " AND receiver_login_id IS NOT DISTINCT FROM $2 LIMIT 1",
    I};
static const db_stmt st_message_insert = {
    "bridge_message_insert",
    "INSERT INTO message (portal_id, login_id, wa_id, part_id, sender_jid, mxid, mx_room,"
    " timestamp_ms, edit_count, relay_sender) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    0};
#define MESSAGE_COLS                                                                               \
    "portal_id, login_id, wa_id, part_id, sender_jid, mxid, mx_room, timestamp_ms, edit_count,"    \
    " relay_sender"
static const db_stmt st_message_insert_done = {
    "bridge_message_insert_done",
    "WITH gone AS (DELETE FROM wa_event_buffer WHERE login_id = $11 AND chat_jid = $12"
    " AND message_id = $13)"
    " INSERT INTO message (portal_id, login_id, wa_id, part_id, sender_jid, mxid, mx_room,"
    " timestamp_ms, edit_count, relay_sender) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    0};
static const db_stmt st_message_by_wa = {
    "bridge_message_by_wa",
    "SELECT " MESSAGE_COLS " FROM message WHERE portal_id = $1 AND wa_id = $2 AND part_id = $3", I};
static const db_stmt st_message_present = {
    "bridge_message_present",
    "SELECT wa_id FROM message WHERE portal_id = $1 AND part_id = ''"
    " AND wa_id = ANY ($2::text[])",
    I};
static const db_stmt st_message_by_mxid = {
    "bridge_message_by_mxid", "SELECT " MESSAGE_COLS " FROM message WHERE mxid = $1", I};
static const db_stmt st_message_delete = {"bridge_message_delete",
                                          "DELETE FROM message WHERE mxid = $1", I};
/* A transaction's events, each only if its txn id is new (the txn row's insertion gates the
 * inbox rows), in one statement: one round trip, one implicit SQL transaction. Returns one row
 * per inserted event (its id and event id), or one row with NULLs when none was; the first column
 * is 1 when the txn id was new. The ids follow the events' order (ORDER BY ord). */
static const db_stmt st_txn_accept = {
    "bridge_txn_accept",
    "WITH t AS (INSERT INTO mx_txn (txn_id, received_ms) VALUES ($1, $2)"
    " ON CONFLICT (txn_id) DO NOTHING RETURNING txn_id),"
    " i AS (INSERT INTO mx_inbox (txn_id, event_id, room_id, event_json, received_ms)"
    " SELECT t.txn_id, e.event_id, e.room_id, e.event_json, $2 FROM t,"
    " unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY"
    " AS e(event_id, room_id, event_json, ord) ORDER BY e.ord"
    " ON CONFLICT (event_id) DO NOTHING RETURNING id, event_id)"
    " SELECT (SELECT count(*) FROM t), i.id, i.event_id FROM (VALUES (1)) AS one (x)"
    " LEFT JOIN i ON true",
    I};
static const db_stmt st_txn_prune = {"bridge_txn_prune",
                                     "DELETE FROM mx_txn WHERE received_ms < $1", I};
static const db_stmt st_inbox_peek = {
    "bridge_inbox_peek",
    "SELECT id, event_id, room_id, event_json, attempts FROM mx_inbox ORDER BY id LIMIT $1", I};
static const db_stmt st_inbox_delete = {"bridge_inbox_delete", "DELETE FROM mx_inbox WHERE id = $1",
                                        I};
static const db_stmt st_inbox_delete_many = {
    "bridge_inbox_delete_many", "DELETE FROM mx_inbox WHERE id = ANY ($1::bigint[])", I};
static const db_stmt st_kv_set = {"bridge_kv_set",
                                  "INSERT INTO kv_store (key, value) VALUES ($1, $2)"
                                  " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                                  I};
static const db_stmt st_kv_get = {"bridge_kv_get", "SELECT value FROM kv_store WHERE key = $1", I};
static const db_stmt st_kv_delete = {"bridge_kv_delete", "DELETE FROM kv_store WHERE key = $1", I};

int db_user_ensure(db_conn *c, const char *mxid)
{
    if (!mxid) return db_set_error(c, DB_ERR_INVALID, NULL, "db_user_ensure: no mxid");
    db_param p[2] = {db_p_text(mxid), db_p_int(db_now_ms())};
    return db_exec(c, &st_user_ensure, p, 2, NULL);
}

int db_login_create(db_conn *c, const char *mxid, int64_t *id)
{
    *id = 0;
    int rc = db_user_ensure(c, mxid);
    if (rc) return rc;
    db_param p[2] = {db_p_text(mxid), db_p_int(db_now_ms())};
    db_result *r;
    rc = db_exec_row(c, &st_login_create, p, 2, &r);
    if (rc) return rc;
    *id = db_result_int(r, 0, 0);
    db_result_free(r);
    return DB_OK;
}

int db_login_delete(db_conn *c, int64_t id)
{
    db_param p[1] = {db_p_int(id)};
    return db_exec(c, &st_login_delete, p, 1, NULL);
}

int db_sweep_orphans(db_conn *c, int64_t *n)
{
    if (n) *n = 0;
    db_result *r = NULL;
    int rc = db_exec_row(c, &st_sweep_orphans, NULL, 0, &r);
    if (rc == DB_OK && n && r) *n = db_result_int(r, 0, 0);
    db_result_free(r);
    return rc;
}

int db_login_lease(db_conn *c, const char *owner, int64_t lease_ms, int64_t *ids, size_t max,
                   size_t *n)
{
    *n = 0;
    if (!owner) return db_set_error(c, DB_ERR_INVALID, NULL, "db_login_lease: no owner");
    db_param p[4] = {db_p_text(owner), db_p_int(db_now_ms()), db_p_int(lease_ms),
                     db_p_int((int64_t)max)};
    db_result *r;
    int rc = db_exec(c, &st_login_lease, p, 4, &r);
    if (rc) return rc;
    for (int i = 0; i < db_result_rows(r) && (size_t)i < max; i++)
        ids[(*n)++] = db_result_int(r, i, 0);
    db_result_free(r);
    return DB_OK;
}

int db_portal_ensure(db_conn *c, const char *chat_jid, int64_t receiver_login_id, int64_t *id)
{
    *id = 0;
    if (!chat_jid) return db_set_error(c, DB_ERR_INVALID, NULL, "db_portal_ensure: no chat");
    db_param p[3] = {db_p_text(chat_jid),
                     receiver_login_id ? db_p_int(receiver_login_id) : db_p_null(),
                     db_p_int(db_now_ms())};
    db_result *r;
    int rc = db_exec_row(c, &st_portal_ensure, p, 3, &r);
    if (rc) return rc;
    *id = db_result_int(r, 0, 0);
    db_result_free(r);
    return DB_OK;
}

static void message_params(const db_message *m, db_param *p)
{
    p[0] = db_p_int(m->portal_id);
    p[1] = m->login_id ? db_p_int(m->login_id) : db_p_null();
    p[2] = db_p_text(m->wa_id);
    p[3] = db_p_text(m->part_id);
    p[4] = db_p_text(m->sender_jid);
    p[5] = db_p_text(m->mxid);
    p[6] = db_p_text(m->mx_room);
    p[7] = db_p_int(m->timestamp_ms);
    p[8] = db_p_int(m->edit_count);
    p[9] = db_p_text(m->relay_sender);
}

/* A write now, or (later) behind the connection's next statement (db_exec_later). */
static int write_now_or_later(db_conn *c, const db_stmt *st, const db_param *p, int n, bool later)
{
    return later ? db_exec_later(c, st, p, n) : db_exec(c, st, p, n, NULL);
}

static int message_insert(db_conn *c, const db_message *m, bool later)
{
    db_param p[10];
    message_params(m, p);
    return write_now_or_later(c, &st_message_insert, p, 10, later);
}

int db_message_insert(db_conn *c, const db_message *m)
{
    return message_insert(c, m, false);
}

int db_message_insert_later(db_conn *c, const db_message *m)
{
    return message_insert(c, m, true);
}

static int message_insert_done(db_conn *c, const db_message *m, int64_t login_id, const char *chat,
                               const char *id, bool later)
{
    if (!chat || !id) return db_set_error(c, DB_ERR_INVALID, NULL, "db_message_insert_done: no id");
    db_param p[13];
    message_params(m, p);
    p[10] = db_p_int(login_id);
    p[11] = db_p_text(chat);
    p[12] = db_p_text(id);
    return write_now_or_later(c, &st_message_insert_done, p, 13, later);
}

int db_message_insert_done(db_conn *c, const db_message *m, int64_t login_id, const char *chat,
                           const char *id)
{
    return message_insert_done(c, m, login_id, chat, id, false);
}

int db_message_insert_done_later(db_conn *c, const db_message *m, int64_t login_id,
                                 const char *chat, const char *id)
{
    return message_insert_done(c, m, login_id, chat, id, true);
}

static void message_fill(void *arg, size_t i, db_param *p)
{
    message_params(&((const db_message *)arg)[i], p);
}

int db_message_insert_many(db_conn *c, const db_message *m, size_t n)
{
    return db_exec_batch(c, &st_message_insert, 10, n, message_fill, (void *)m, NULL);
}

static int read_message(db_conn *c, const db_stmt *st, const db_param *p, int n, db_message *out)
{
    db_result *r;
    int rc = db_exec_row(c, st, p, n, &r);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    out->portal_id = db_result_int(r, 0, 0);
    out->login_id = db_result_int(r, 0, 1);
    bool ok = db_result_copy_text(r, 0, 2, out->wa_id, sizeof(out->wa_id)) &&
              db_result_copy_text(r, 0, 3, out->part_id, sizeof(out->part_id)) &&
              db_result_copy_text(r, 0, 4, out->sender_jid, sizeof(out->sender_jid)) &&
              db_result_copy_text(r, 0, 5, out->mxid, sizeof(out->mxid)) &&
              db_result_copy_text(r, 0, 6, out->mx_room, sizeof(out->mx_room)) &&
              db_result_copy_text(r, 0, 9, out->relay_sender, sizeof(out->relay_sender));
    out->timestamp_ms = db_result_int(r, 0, 7);
    out->edit_count = (int)db_result_int(r, 0, 8);
    db_result_free(r);
    if (!ok) return db_set_error(c, DB_ERR_INVALID, NULL, "%s: a stored id is too long", st->name);
    return DB_OK;
}

int db_message_by_wa(db_conn *c, int64_t portal_id, const char *wa_id, const char *part_id,
                     db_message *out)
{
    db_param p[3] = {db_p_int(portal_id), db_p_text(wa_id), db_p_text(part_id ? part_id : "")};
    return read_message(c, &st_message_by_wa, p, 3, out);
}

/* text[] literal of ids: each element quoted, \ and " escaped; NULL when out of memory */
static char *text_array(const char *const *v, size_t n)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++)
        cap += 2 * strlen(v[i]) + 3;
    char *out = malloc(cap), *at = out;
    if (!out) return NULL;
    *at++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i) *at++ = ',';
        *at++ = '"';
        for (const char *p = v[i]; *p; p++) {
            if (*p == '"' || *p == '\\') *at++ = '\\';
            *at++ = *p;
        }
        *at++ = '"';
    }
    *at++ = '}';
    *at = '\0';
    return out;
}

int db_message_present(db_conn *c, int64_t portal_id, const char *const *wa_ids, size_t n,
                       bool *present)
{
    for (size_t i = 0; i < n; i++)
        present[i] = false;
    if (n == 0) return DB_OK;
    char *arr = text_array(wa_ids, n);
    if (!arr) return db_set_error(c, DB_ERR_NOMEM, NULL, "db_message_present: out of memory");
    db_param p[2] = {db_p_int(portal_id), db_p_text(arr)};
    db_result *r;
    int rc = db_exec(c, &st_message_present, p, 2, &r);
    free(arr);
    if (rc) return rc;
    for (int row = 0; row < db_result_rows(r); row++) {
        const char *id = db_result_text(r, row, 0);
        for (size_t i = 0; i < n; i++)
            if (strcmp(wa_ids[i], id) == 0) present[i] = true;
    }
    db_result_free(r);
    return DB_OK;
}

int db_message_by_mxid(db_conn *c, const char *mxid, db_message *out)
{
    db_param p[1] = {db_p_text(mxid)};
    return read_message(c, &st_message_by_mxid, p, 1, out);
}

int db_message_delete(db_conn *c, const char *mxid)
{
    db_param p[1] = {db_p_text(mxid)};
    return db_exec(c, &st_message_delete, p, 1, NULL);
}

static int accept_txn(db_conn *c, const char *txn_id, const db_inbox_event *events, size_t n,
                      int64_t received_ms, bool *duplicate, int64_t *ids, bool durable);

int db_mx_txn_accept(db_conn *c, const char *txn_id, const db_inbox_event *events, size_t n,
                     int64_t received_ms, bool *duplicate)
{
    return accept_txn(c, txn_id, events, n, received_ms, duplicate, NULL, true);
}

int db_mx_txn_accept_ids(db_conn *c, const char *txn_id, const db_inbox_event *events, size_t n,
                         int64_t received_ms, bool *duplicate, int64_t *ids)
{
    return accept_txn(c, txn_id, events, n, received_ms, duplicate, ids, false);
}

/* The events' three columns as text[] literals (arr[0..2]); false when out of memory. */
static bool inbox_arrays(const db_inbox_event *events, size_t n, char *arr[3])
{
    const char **col = malloc((n ? n : 1) * sizeof(*col));
    bool ok = col != NULL;
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; ok && i < n; i++)
            col[i] = k == 0   ? events[i].event_id
                     : k == 1 ? events[i].room_id
                              : events[i].event_json;
        arr[k] = ok ? text_array(col, n) : NULL;
        ok = ok && arr[k];
    }
    free(col);
    return ok;
}

static int accept_txn(db_conn *c, const char *txn_id, const db_inbox_event *events, size_t n,
                      int64_t received_ms, bool *duplicate, int64_t *ids, bool durable)
{
    if (duplicate) *duplicate = false;
    for (size_t i = 0; ids && i < n; i++)
        ids[i] = -1;
    if (!txn_id || (!events && n))
        return db_set_error(c, DB_ERR_INVALID, NULL, "db_mx_txn_accept: bad arguments");
    for (size_t i = 0; i < n; i++)
        if (!events[i].event_id || !events[i].room_id || !events[i].event_json)
            return db_set_error(c, DB_ERR_INVALID, NULL, "db_mx_txn_accept: bad arguments");
    char *arr[3] = {NULL, NULL, NULL};
    if (!inbox_arrays(events, n, arr)) {
        for (int k = 0; k < 3; k++)
            free(arr[k]);
        return db_set_error(c, DB_ERR_NOMEM, NULL, "db_mx_txn_accept: out of memory");
    }
    /* idempotent: a repeat after an unknown commit finds the txn id and adds nothing */
    db_param p[5] = {db_p_text(txn_id), db_p_int(received_ms), db_p_text(arr[0]), db_p_text(arr[1]),
                     db_p_text(arr[2])};
    db_result *r = NULL;
    int rc = db_exec(c, &st_txn_accept, p, 5, &r);
    for (int k = 0; k < 3; k++)
        free(arr[k]);
    if (rc) return rc;
    bool fresh = db_result_rows(r) > 0 && db_result_int(r, 0, 0) == 1;
    /* each inserted row to its event (by id: an event already in the inbox was not inserted) */
    for (int row = 0, from = 0; ids && row < db_result_rows(r); row++) {
        if (db_result_isnull(r, row, 1)) continue;
        const char *id = db_result_text(r, row, 2);
        for (size_t k = 0; k < n; k++) {
            size_t i = ((size_t)from + k) % n;
            if (ids[i] < 0 && strcmp(events[i].event_id, id) == 0) {
                ids[i] = db_result_int(r, row, 1);
                from = (int)((i + 1) % n);
                break;
            }
        }
    }
    db_result_free(r);
    if (duplicate) *duplicate = !fresh;
    return durable ? db_sync(c) : DB_OK;
}

int db_mx_txn_prune(db_conn *c, int64_t before_ms, int64_t *deleted)
{
    db_param p[1] = {db_p_int(before_ms)};
    db_result *r;
    int rc = db_exec(c, &st_txn_prune, p, 1, &r);
    if (deleted) *deleted = rc ? 0 : db_result_affected(r);
    db_result_free(r);
    return rc;
}

int db_inbox_peek(db_conn *c, db_inbox_row *rows, size_t max, size_t *n)
{
    *n = 0;
    db_param p[1] = {db_p_int((int64_t)max)};
    db_result *r;
    int rc = db_exec(c, &st_inbox_peek, p, 1, &r);
    if (rc) return rc;
    for (int i = 0; i < db_result_rows(r) && (size_t)i < max; i++) {
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
            return db_set_error(c, DB_ERR_NOMEM, NULL, "db_inbox_peek: out of memory");
        }
        (*n)++;
    }
    db_result_free(r);
    return DB_OK;
}

void db_inbox_rows_free(db_inbox_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rows[i].event_json);
        rows[i].event_json = NULL;
    }
}

int db_inbox_delete(db_conn *c, int64_t id)
{
    db_param p[1] = {db_p_int(id)};
    return db_exec(c, &st_inbox_delete, p, 1, NULL);
}

int db_inbox_delete_later(db_conn *c, int64_t id)
{
    db_param p[1] = {db_p_int(id)};
    return db_exec_later(c, &st_inbox_delete, p, 1);
}

int db_inbox_delete_many(db_conn *c, const int64_t *ids, size_t n)
{
    if (n == 0) return DB_OK;
    /* an int8[] parameter in array text form: "{1,2,3}" (integers only, formatted here) */
    size_t cap = n * 21 + 3;
    char *arr = malloc(cap);
    if (!arr) return db_set_error(c, DB_ERR_NOMEM, NULL, "db_inbox_delete_many: out of memory");
    size_t len = 0;
    arr[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(arr + len, cap - len, "%s%lld", i ? "," : "", (long long)ids[i]);
    arr[len++] = '}';
    arr[len] = '\0';
    db_param p[1] = {db_p_text(arr)};
    int rc = db_exec(c, &st_inbox_delete_many, p, 1, NULL);
    free(arr);
    return rc;
}

int db_kv_set(db_conn *c, const char *key, const char *value)
{
    db_param p[2] = {db_p_text(key), db_p_text(value)};
    return db_exec(c, &st_kv_set, p, 2, NULL);
}

static const db_stmt st_reg_user_known = {"bridge_registered_user_known",
                                          "SELECT 1 FROM mx_registered_user WHERE mxid = $1", I};
static const db_stmt st_reg_user_add = {"bridge_registered_user_add",
                                        "INSERT INTO mx_registered_user (mxid, registered_ms)"
                                        " VALUES ($1, $2) ON CONFLICT (mxid) DO NOTHING",
                                        I};

int db_registered_user_known(db_conn *c, const char *mxid, bool *known)
{
    db_param p[1] = {db_p_text(mxid)};
    db_result *r = NULL;
    int rc = db_exec_row(c, &st_reg_user_known, p, 1, &r);
    db_result_free(r);
    if (rc == DB_ERR_NOT_FOUND) {
        *known = false;
        return DB_OK;
    }
    *known = rc == DB_OK;
    return rc;
}

int db_registered_user_add(db_conn *c, const char *mxid)
{
    db_param p[2] = {db_p_text(mxid), db_p_int(db_now_ms())};
    return db_exec(c, &st_reg_user_add, p, 2, NULL);
}

int db_kv_get(db_conn *c, const char *key, char *buf, size_t cap)
{
    db_param p[1] = {db_p_text(key)};
    db_result *r;
    int rc = db_exec_row(c, &st_kv_get, p, 1, &r);
    if (rc) return rc;
    bool ok = db_result_copy_text(r, 0, 0, buf, cap);
    db_result_free(r);
    return ok ? DB_OK : db_set_error(c, DB_ERR_INVALID, NULL, "db_kv_get: value too long");
}

int db_kv_delete(db_conn *c, const char *key)
{
    db_param p[1] = {db_p_text(key)};
    return db_exec(c, &st_kv_delete, p, 1, NULL);
}
