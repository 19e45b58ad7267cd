/*
 * tests/db/test_db_bridge.c - the bridge's rows (db/bridge_db.h): appservice transactions into the
 * inbox exactly once, inbox order and deletion, portals, the message map, the key-value table and
 * login leases shared by several processes; group notifications kept until shown, and the
 * record of group admins; a user's double puppeting token (migration 0006); what deleting a
 * portal or a login takes with it, now that the per-message rows carry no foreign key (migration
 * 0008), and the startup sweep of rows written for a login being deleted.
 */
#include "check.h"
#include "db/bridge_db.h"
#include "db/bridge_rows.h"
#include "db/migrate.h"
#include "pgtest.h"

#include <string.h>

static const db_stmt st_inbox_count = {"t_inbox_count", "SELECT count(*) FROM mx_inbox", 0};

static int64_t inbox_count(db_conn *c)
{
    db_result *r;
    if (db_exec_row(c, &st_inbox_count, NULL, 0, &r) != DB_OK) return -1;
    int64_t n = db_result_int(r, 0, 0);
    db_result_free(r);
    return n;
}

static void test_inbox(db_conn *c)
{
    const char *json0 = "{\"type\":\"m.room.message\",\"content\":{\"body\":\"it's \\\"fine\\\" "
                        "\\\\ '; DROP TABLE mx_inbox;--\"},\"sender\":\"@a:x\"}";
    db_inbox_event ev[3] = {{"$e0", "!room:x", json0},
                            {"$e1", "!room:x", "{\"type\":\"m.reaction\"}"},
                            {"$e2", "!other:x", "{\"emoji\":\"👍🏽\"}"}};
    bool dup = true;
    int64_t id1[3] = {0, 0, 0}, id2[2] = {0, 0};
    CHECK_INT(db_mx_txn_accept_ids(c, "txn1", ev, 3, 1700000000000, &dup, id1), DB_OK);
    CHECK(!dup);
    CHECK_INT(inbox_count(c), 3);
    CHECK(id1[0] > 0 && id1[0] < id1[1] && id1[1] < id1[2]); /* the rows' ids, in order */
    /* Synapse retries the transaction: 200 again, nothing added */
    int64_t again[3] = {0, 0, 0};
    CHECK_INT(db_mx_txn_accept_ids(c, "txn1", ev, 3, 1700000001000, &dup, again), DB_OK);
    CHECK(dup);
    CHECK_INT(inbox_count(c), 3);
    CHECK(again[0] == -1 && again[1] == -1 && again[2] == -1);
    /* an event repeated in another transaction is kept once */
    db_inbox_event ev2[2] = {{"$e2", "!other:x", "{}"}, {"$e3", "!room:x", "{}"}};
    CHECK_INT(db_mx_txn_accept_ids(c, "txn2", ev2, 2, 1700000002000, &dup, id2), DB_OK);
    CHECK(!dup);
    CHECK_INT(inbox_count(c), 4);
    CHECK_INT(id2[0], -1);
    CHECK(id2[1] > id1[2]);
    CHECK_INT(db_mx_txn_accept(c, "txn-empty", NULL, 0, 1700000002000, &dup), DB_OK);
    CHECK(!dup); /* a new id without events is still recorded */
    CHECK_INT(db_mx_txn_accept(c, "txn-empty", NULL, 0, 1700000002000, &dup), DB_OK);
    CHECK(dup);
    /* an event twice in one transaction is kept once; array-literal characters pass verbatim */
    const char *odd = "{\"a\":\"x,} \\\"{NULL\",\"b\":[1,2]}";
    db_inbox_event ev3[3] = {{"$e4", "!room:x", "{}"},
                             {"$e4", "!room:x", "{\"again\":1}"},
                             {"$e,5 {x}", "!room:x", odd}};
    int64_t id3[3] = {0, 0, 0};
    CHECK_INT(db_mx_txn_accept_ids(c, "txn3", ev3, 3, 1700000002000, &dup, id3), DB_OK);
    CHECK(!dup);
    CHECK(id3[0] > id2[1] && id3[1] == -1 && id3[2] > id3[0]);
    CHECK_INT(inbox_count(c), 6);
    db_inbox_row odd_rows[10];
    size_t n_odd = 0;
    CHECK_INT(db_inbox_peek(c, odd_rows, 10, &n_odd), DB_OK);
    CHECK_INT((int)n_odd, 6);
    if (n_odd == 6) {
        CHECK_STR(odd_rows[4].event_json, "{}");
        CHECK_STR(odd_rows[5].event_id, "$e,5 {x}");
        CHECK_STR(odd_rows[5].event_json, odd);
        int64_t gone[2] = {odd_rows[4].id, odd_rows[5].id};
        CHECK_INT(db_inbox_delete_many(c, gone, 2), DB_OK);
    }
    db_inbox_rows_free(odd_rows, n_odd);

    db_inbox_row rows[10];
    size_t n = 0;
    CHECK_INT(db_inbox_peek(c, rows, 10, &n), DB_OK);
    CHECK_INT((int)n, 4);
    if (n == 4) {
        CHECK_STR(rows[0].event_id, "$e0");
        CHECK_STR(rows[0].event_json, json0);
        CHECK_STR(rows[2].event_json, "{\"emoji\":\"👍🏽\"}");
        CHECK_STR(rows[3].event_id, "$e3");
        CHECK(rows[0].id < rows[1].id && rows[1].id < rows[2].id && rows[2].id < rows[3].id);
        CHECK(rows[0].id == id1[0] && rows[2].id == id1[2] && rows[3].id == id2[1]);
        CHECK_INT(db_inbox_delete(c, rows[0].id), DB_OK);
        int64_t ids[2] = {rows[1].id, rows[3].id};
        CHECK_INT(db_inbox_delete_many(c, ids, 2), DB_OK);
    }
    db_inbox_rows_free(rows, n);
    CHECK_INT(db_inbox_peek(c, rows, 10, &n), DB_OK);
    CHECK_INT((int)n, 1);
    if (n == 1) CHECK_STR(rows[0].event_id, "$e2");
    db_inbox_rows_free(rows, n);
    CHECK_INT(db_inbox_delete_many(c, NULL, 0), DB_OK);
    /* a transaction repeated after its events were bridged (and deleted) adds none of them back */
    CHECK_INT(db_mx_txn_accept(c, "txn1", ev, 3, 1700000001200, &dup), DB_OK);
    CHECK(dup);
    CHECK_INT(inbox_count(c), 1);
    /* old transaction ids are forgotten; a forgotten id would be accepted again */
    int64_t pruned = 0;
    CHECK_INT(db_mx_txn_prune(c, 1700000001500, &pruned), DB_OK);
    CHECK_INT(pruned, 1);
    CHECK_INT(db_mx_txn_accept(c, "txn2", NULL, 0, 1700000003000, &dup), DB_OK);
    CHECK(dup);
}

static void test_portals_messages(db_conn *c, int64_t l1, int64_t l2)
{
    int64_t g1 = 0, g2 = 0, d1 = 0, d2 = 0, d1b = 0;
    CHECK_INT(db_portal_ensure(c, "120363025246125888@g.us", 0, &g1), DB_OK);
    CHECK_INT(db_portal_ensure(c, "120363025246125888@g.us", 0, &g2), DB_OK);
    CHECK(g1 > 0 && g1 == g2);
    CHECK_INT(db_portal_ensure(c, "15551234567@s.whatsapp.net", l1, &d1), DB_OK);
    CHECK_INT(db_portal_ensure(c, "15551234567@s.whatsapp.net", l2, &d2), DB_OK);
    CHECK_INT(db_portal_ensure(c, "15551234567@s.whatsapp.net", l1, &d1b), DB_OK);
    CHECK(d1 != d2 && d1 == d1b && d1 != g1);

    db_message m, got;
    memset(&m, 0, sizeof(m));
    m.portal_id = g1;
    m.login_id = l1;
    snprintf(m.wa_id, sizeof(m.wa_id), "3EB0C431C26A1916E0C1");
    snprintf(m.sender_jid, sizeof(m.sender_jid), "15551234567@s.whatsapp.net");
    snprintf(m.mxid, sizeof(m.mxid), "$Xw8mHzIyTaVI-i1kUwJcRnKnG3mG9bkl3hZ0eqHPX7k");
    snprintf(m.mx_room, sizeof(m.mx_room), "!ZmUQqXHiTyzjqgQKbS:example.org");
    m.timestamp_ms = 1700000000123;
    CHECK_INT(db_message_insert(c, &m), DB_OK);
    db_message cap = m; /* a second part: the caption */
    snprintf(cap.part_id, sizeof(cap.part_id), "caption");
    snprintf(cap.mxid, sizeof(cap.mxid), "$caption-event");
    CHECK_INT(db_message_insert(c, &cap), DB_OK);
    CHECK_INT(db_message_insert(c, &m), DB_ERR_UNIQUE); /* duplicate detection */
    CHECK_INT(db_message_by_wa(c, g1, m.wa_id, "", &got), DB_OK);
    CHECK_STR(got.mxid, m.mxid);
    CHECK_STR(got.mx_room, m.mx_room);
    CHECK(got.timestamp_ms == m.timestamp_ms && got.login_id == l1 && got.portal_id == g1);
    CHECK_INT(db_message_by_wa(c, g1, m.wa_id, "caption", &got), DB_OK);
    CHECK_STR(got.mxid, "$caption-event");
    CHECK_INT(db_message_by_mxid(c, "$caption-event", &got), DB_OK);
    CHECK_STR(got.part_id, "caption");
    CHECK_INT(db_message_by_wa(c, d1, m.wa_id, "", &got), DB_ERR_NOT_FOUND);
    CHECK_INT(db_message_delete(c, m.mxid), DB_OK);
    CHECK_INT(db_message_by_mxid(c, m.mxid, &got), DB_ERR_NOT_FOUND);

    /* many parts in one round trip; a duplicate among them undoes them all */
    db_message many[20];
    for (int i = 0; i < 20; i++) {
        many[i] = m;
        snprintf(many[i].wa_id, sizeof(many[i].wa_id), "MANY%02d", i);
        snprintf(many[i].mxid, sizeof(many[i].mxid), "$many%02d", i);
    }
    CHECK_INT(db_message_insert_many(c, many, 10), DB_OK);
    CHECK_INT(db_message_by_wa(c, g1, "MANY09", "", &got), DB_OK);
    CHECK_STR(got.mxid, "$many09");
    snprintf(many[15].mxid, sizeof(many[15].mxid), "$many03"); /* taken */
    CHECK_INT(db_message_insert_many(c, many + 10, 10), DB_ERR_UNIQUE);
    CHECK_INT(db_message_by_wa(c, g1, "MANY10", "", &got), DB_ERR_NOT_FOUND);
    CHECK_INT(db_message_by_wa(c, g1, "MANY03", "", &got), DB_OK);
    /* which of a burst are bridged, in one query: by portal, first parts only, ids verbatim */
    snprintf(many[0].wa_id, sizeof(many[0].wa_id), "odd\"id\\,{x}");
    snprintf(many[0].mxid, sizeof(many[0].mxid), "$odd");
    CHECK_INT(db_message_insert(c, &many[0]), DB_OK);
    const char *ask[6] = {"MANY09", "MANY10", "odd\"id\\,{x}", "odd", "3EB0C431C26A1916E0C1",
                          "MANY00"};
    bool present[6] = {false, true, false, true, true, false};
    CHECK_INT(db_message_present(c, g1, ask, 6, present), DB_OK);
    CHECK(present[0] && !present[1] && present[2] && !present[3] && !present[4] && present[5]);
    CHECK_INT(db_message_present(c, d1, ask, 6, present), DB_OK); /* another portal */
    CHECK(!present[0] && !present[2] && !present[5]);
    CHECK_INT(db_message_present(c, g1, ask, 0, present), DB_OK);

    /* the mapping and the event buffer row's deletion together; a duplicate keeps the row */
    static const db_stmt buf_put = {
        "t_buf_put",
        "INSERT INTO wa_event_buffer (login_id, ciphertext_hash, chat_jid, sender_jid, message_id,"
        " plaintext, server_ts_ms, inserted_ms)"
        " VALUES ($1, sha256(convert_to($2::text, 'UTF8')), $3, $3, $2, '', 1, 1)",
        0};
    static const db_stmt buf_count = {
        "t_buf_count",
        "SELECT count(*) FROM wa_event_buffer WHERE login_id = $1 AND message_id = $2", 0};
    db_param bp[3] = {db_p_int(l1), db_p_text("DONE01"), db_p_text("15551234567@s.whatsapp.net")};
    CHECK_INT(db_exec(c, &buf_put, bp, 3, NULL), DB_OK);
    db_message d = m;
    snprintf(d.wa_id, sizeof(d.wa_id), "DONE01");
    snprintf(d.mxid, sizeof(d.mxid), "$done01");
    db_param cp[2] = {db_p_int(l1), db_p_text("DONE01")};
    db_result *r = NULL;
    CHECK_INT(db_message_insert_done(c, &d, l1, "15551234567@s.whatsapp.net", "DONE01"), DB_OK);
    CHECK_INT(db_message_by_wa(c, g1, "DONE01", "", &got), DB_OK);
    CHECK_INT(db_exec_row(c, &buf_count, cp, 2, &r), DB_OK);
    CHECK_INT(r ? db_result_int(r, 0, 0) : -1, 0); /* the buffer row went with it */
    db_result_free(r);
    CHECK_INT(db_exec(c, &buf_put, bp, 3, NULL), DB_OK); /* redelivered, buffered again */
    CHECK_INT(db_message_insert_done(c, &d, l1, "15551234567@s.whatsapp.net", "DONE01"),
              DB_ERR_UNIQUE);
    CHECK_INT(db_exec_row(c, &buf_count, cp, 2, &r), DB_OK);
    CHECK_INT(r ? db_result_int(r, 0, 0) : -1, 1); /* neither happened */
    db_result_free(r);
}

static void test_kv(db_conn *c)
{
    char buf[64];
    CHECK_INT(db_kv_get(c, "bot_sync", buf, sizeof(buf)), DB_ERR_NOT_FOUND);
    CHECK_INT(db_kv_set(c, "bot_sync", "s72594_4483_1934"), DB_OK);
    CHECK_INT(db_kv_get(c, "bot_sync", buf, sizeof(buf)), DB_OK);
    CHECK_STR(buf, "s72594_4483_1934");
    CHECK_INT(db_kv_set(c, "bot_sync", "it's \\ new"), DB_OK);
    CHECK_INT(db_kv_get(c, "bot_sync", buf, sizeof(buf)), DB_OK);
    CHECK_STR(buf, "it's \\ new");
    CHECK_INT(db_kv_get(c, "bot_sync", buf, 4), DB_ERR_INVALID);
    CHECK_INT(db_kv_delete(c, "bot_sync"), DB_OK);
    CHECK_INT(db_kv_get(c, "bot_sync", buf, sizeof(buf)), DB_ERR_NOT_FOUND);
}

static void test_puppet_token(db_conn *c)
{
    char tok[256], room[64];
    CHECK_INT(db_user_puppet_token(c, "@dan:example.org", tok, sizeof(tok)), DB_ERR_NOT_FOUND);
    /* a user with a login and no token: "" */
    CHECK_INT(db_user_puppet_token(c, "@alice:example.org", tok, sizeof(tok)), DB_OK);
    CHECK_STR(tok, "");
    CHECK_INT(db_user_set_puppet_token(c, "@alice:example.org", "syt_YWxpY2U_secret"), DB_OK);
    CHECK_INT(db_user_puppet_token(c, "@alice:example.org", tok, sizeof(tok)), DB_OK);
    CHECK_STR(tok, "syt_YWxpY2U_secret");
    CHECK_INT(db_user_puppet_token(c, "@alice:example.org", tok, 4), DB_ERR_INVALID);
    /* the management room is another column: both stay */
    CHECK_INT(db_user_set_management_room(c, "@alice:example.org", "!mgmt:example.org"), DB_OK);
    CHECK_INT(db_user_puppet_token(c, "@alice:example.org", tok, sizeof(tok)), DB_OK);
    CHECK_STR(tok, "syt_YWxpY2U_secret");
    CHECK_INT(db_user_management_room(c, "@alice:example.org", room, sizeof(room)), DB_OK);
    CHECK_STR(room, "!mgmt:example.org");
    /* a new user is created with it; NULL clears */
    CHECK_INT(db_user_set_puppet_token(c, "@dan:example.org", "t2"), DB_OK);
    CHECK_INT(db_user_puppet_token(c, "@dan:example.org", tok, sizeof(tok)), DB_OK);
    CHECK_STR(tok, "t2");
    CHECK_INT(db_user_set_puppet_token(c, "@alice:example.org", NULL), DB_OK);
    CHECK_INT(db_user_puppet_token(c, "@alice:example.org", tok, sizeof(tok)), DB_OK);
    CHECK_STR(tok, "");
}

static void test_leases(db_conn *c, const char *conninfo)
{
    int64_t ids[10];
    size_t n = 0;
    db_conn *c2 = pgtest_connect(conninfo); /* process B */
    CHECK_INT(db_login_lease(c, "proc-a", 60000, ids, 2, &n), DB_OK);
    CHECK_INT((int)n, 2);
    CHECK_INT(db_login_lease(c2, "proc-b", 60000, ids, 10, &n), DB_OK);
    CHECK_INT((int)n, 1);
    /* A renews its own two, B's lease still holds */
    CHECK_INT(db_login_lease(c, "proc-a", 60000, ids, 10, &n), DB_OK);
    CHECK_INT((int)n, 2);
    /* B's lease runs out: A picks its login up */
    CHECK_INT(db_login_lease(c2, "proc-b", -1000, ids, 10, &n), DB_OK);
    CHECK_INT((int)n, 1);
    CHECK_INT(db_login_lease(c, "proc-a", 60000, ids, 10, &n), DB_OK);
    CHECK_INT((int)n, 3);
    CHECK_INT(db_login_lease(c2, "proc-b", 60000, ids, 10, &n), DB_OK);
    CHECK_INT((int)n, 0);
    db_conn_close(c2);
}

/* wa_group_event_buffer: a notification's changes saved together, a redelivery adds nothing,
 * rows read back in order per login, dropped once shown; group_admin set, listed, unset. */
static void test_group_events(db_conn *c, int64_t l1, int64_t l2)
{
    const char *grp = "120363025246125999@g.us";
    const char *data[2] = {"{\"change\":3,\"members\":[]}", "{\"change\":5,\"members\":[]}"};
    int64_t ids[2] = {0, 0}, again[2] = {0, 0}, other[1] = {0}, n = -1;
    CHECK_INT(db_group_event_save(c, l1, grp, "g 1001", data, 2, ids), DB_OK);
    CHECK(ids[0] > 0 && ids[1] > ids[0]);
    CHECK_INT(db_group_event_count(c, l1, &n), DB_OK);
    CHECK_INT((int)n, 2);
    /* the server delivers it again (not acked: a crash before the ack): the same rows */
    CHECK_INT(db_group_event_save(c, l1, grp, "g 1001", data, 2, again), DB_OK);
    CHECK(again[0] == ids[0] && again[1] == ids[1]);
    CHECK_INT(db_group_event_count(c, l1, &n), DB_OK);
    CHECK_INT((int)n, 2);
    /* the same notification for another login of the group is that login's own row */
    CHECK_INT(db_group_event_save(c, l2, grp, "g 1001", data, 1, other), DB_OK);
    CHECK(other[0] > 0 && other[0] != ids[0] && other[0] != ids[1]);
    db_group_event *rows = NULL;
    size_t nr = 0;
    CHECK_INT(db_group_event_pending(c, l1, &rows, &nr), DB_OK);
    CHECK_INT((int)nr, 2);
    if (nr == 2) {
        CHECK(rows[0].id == ids[0] && rows[1].id == ids[1]);
        CHECK_STR(rows[0].group, grp);
        CHECK_STR(rows[0].data, data[0]);
        CHECK_STR(rows[1].data, data[1]);
    }
    db_group_events_free(rows, nr);
    /* shown: gone; showing it twice (a replay) is no error */
    CHECK_INT(db_group_event_done(c, ids[0]), DB_OK);
    CHECK_INT(db_group_event_done(c, ids[0]), DB_OK);
    CHECK_INT(db_group_event_pending(c, l1, &rows, &nr), DB_OK);
    CHECK_INT((int)nr, 1);
    if (nr == 1) CHECK(rows[0].id == ids[1]);
    db_group_events_free(rows, nr);
    CHECK_INT(db_group_event_done(c, ids[1]), DB_OK);
    CHECK_INT(db_group_event_count(c, l1, &n), DB_OK);
    CHECK_INT((int)n, 0);
    CHECK_INT(db_group_event_count(c, l2, &n), DB_OK);
    CHECK_INT((int)n, 1);
    /* nothing to save is no transaction and no error; a missing key is refused */
    CHECK_INT(db_group_event_save(c, l1, grp, "g 1002", NULL, 0, NULL), DB_OK);
    CHECK(db_group_event_save(c, l1, grp, NULL, data, 1, ids) != DB_OK);

    int64_t pid = 0;
    CHECK_INT(db_portal_ensure(c, grp, 0, &pid), DB_OK);
    char admins[4][DB_ID_MAX];
    size_t na = 9;
    CHECK_INT(db_group_admins(c, pid, admins, 4, &na), DB_OK);
    CHECK_INT((int)na, 0);
    CHECK_INT(db_group_admin_set(c, pid, "15550000002@s.whatsapp.net", true), DB_OK);
    CHECK_INT(db_group_admin_set(c, pid, "15550000001@s.whatsapp.net", true), DB_OK);
    CHECK_INT(db_group_admin_set(c, pid, "15550000001@s.whatsapp.net", true), DB_OK);
    CHECK_INT(db_group_admins(c, pid, admins, 4, &na), DB_OK);
    CHECK_INT((int)na, 2);
    if (na == 2) {
        CHECK_STR(admins[0], "15550000001@s.whatsapp.net");
        CHECK_STR(admins[1], "15550000002@s.whatsapp.net");
    }
    CHECK_INT(db_group_admin_set(c, pid, "15550000002@s.whatsapp.net", false), DB_OK);
    CHECK_INT(db_group_admin_set(c, pid, "15550000003@s.whatsapp.net", false), DB_OK);
    CHECK_INT(db_group_admins(c, pid, admins, 4, &na), DB_OK);
    CHECK_INT((int)na, 1);
    if (na == 1) CHECK_STR(admins[0], "15550000001@s.whatsapp.net");
    /* a whole member list at once: 1 no longer admin, 3 and 4 admins, 5 a plain member */
    const char *jids[4] = {"15550000001@s.whatsapp.net", "15550000003@s.whatsapp.net",
                           "15550000004@s.whatsapp.net", "15550000005@s.whatsapp.net"};
    bool admin[4] = {false, true, true, false};
    CHECK_INT(db_group_admin_put(c, pid, jids, admin, 4), DB_OK);
    CHECK_INT(db_group_admins(c, pid, admins, 4, &na), DB_OK);
    CHECK_INT((int)na, 2);
    if (na == 2) {
        CHECK_STR(admins[0], "15550000003@s.whatsapp.net");
        CHECK_STR(admins[1], "15550000004@s.whatsapp.net");
    }
    /* at most max are given */
    CHECK_INT(db_group_admins(c, pid, admins, 1, &na), DB_OK);
    CHECK_INT((int)na, 1);
    const char *empty[1] = {""};
    CHECK(db_group_admin_put(c, pid, empty, admin, 1) != DB_OK);
}

/* The rows of a login's engine and its messages, counted by login (or by portal: login 0). */
static int64_t rows_of(db_conn *c, const char *table, int64_t login, int64_t portal)
{
    static const db_stmt counts[] = {
        {"t_count_buf", "SELECT count(*) FROM wa_event_buffer WHERE login_id = $1", 0},
        {"t_count_sent", "SELECT count(*) FROM wa_sent_message WHERE login_id = $1", 0},
        {"t_count_msg", "SELECT count(*) FROM message WHERE portal_id = $1", 0},
        {"t_count_msg_login", "SELECT count(*) FROM message WHERE login_id = $1", 0},
    };
    const db_stmt *st = strcmp(table, "buf") == 0    ? &counts[0]
                        : strcmp(table, "sent") == 0 ? &counts[1]
                        : portal                     ? &counts[2]
                                                     : &counts[3];
    db_param p[1] = {db_p_int(portal ? portal : login)};
    db_result *r = NULL;
    if (db_exec_row(c, st, p, 1, &r) != DB_OK || !r) return -1;
    int64_t n = db_result_int(r, 0, 0);
    db_result_free(r);
    return n;
}

static void put_engine_rows(db_conn *c, int64_t login, const char *id)
{
    static const db_stmt buf = {
        "t_orphan_buf",
        "INSERT INTO wa_event_buffer (login_id, ciphertext_hash, chat_jid, sender_jid, message_id,"
        " plaintext, server_ts_ms, inserted_ms)"
        " VALUES ($1, sha256(convert_to($2::text, 'UTF8')), 'x@s.whatsapp.net', 'x', $2, '', 1, 1)",
        0};
    static const db_stmt sent = {
        "t_orphan_sent",
        "INSERT INTO wa_sent_message (login_id, chat_jid, message_id, plaintext, sent_ms)"
        " VALUES ($1, 'x@s.whatsapp.net', $2, 'p', 1)",
        0};
    db_param p[2] = {db_p_int(login), db_p_text(id)};
    CHECK_INT(db_exec(c, &buf, p, 2, NULL), DB_OK);
    CHECK_INT(db_exec(c, &sent, p, 2, NULL), DB_OK);
}

static void test_parent_deletes(db_conn *c, int64_t keep)
{
    int64_t gone = 0, dm = 0, dm_keep = 0, group = 0;
    CHECK_INT(db_login_create(c, "@dave:example.org", &gone), DB_OK);
    CHECK_INT(db_portal_ensure(c, "15557654321@s.whatsapp.net", gone, &dm), DB_OK);
    CHECK_INT(db_portal_ensure(c, "15557654321@s.whatsapp.net", keep, &dm_keep), DB_OK);
    CHECK_INT(db_portal_ensure(c, "120363000000000777@g.us", 0, &group), DB_OK);
    db_message m;
    memset(&m, 0, sizeof(m));
    snprintf(m.sender_jid, sizeof(m.sender_jid), "15557654321@s.whatsapp.net");
    snprintf(m.mx_room, sizeof(m.mx_room), "!room:example.org");
    const struct {
        int64_t portal, login;
    } msgs[] = {{dm, gone}, {dm, gone}, {dm_keep, keep}, {group, gone}, {group, keep}};
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        m.portal_id = msgs[i].portal;
        m.login_id = msgs[i].login;
        snprintf(m.wa_id, sizeof(m.wa_id), "PARENT%zu", i);
        snprintf(m.mxid, sizeof(m.mxid), "$parent%zu", i);
        CHECK_INT(db_message_insert(c, &m), DB_OK);
    }
    put_engine_rows(c, gone, "G1");
    put_engine_rows(c, keep, "K1");
    CHECK_INT(rows_of(c, "msg", 0, dm), 2);

    /* a portal's deletion takes its messages, and no other portal's */
    CHECK_INT(db_portal_delete_for_login(c, gone), DB_OK);
    CHECK_INT(rows_of(c, "msg", 0, dm), 0);
    CHECK_INT(rows_of(c, "msg", 0, dm_keep), 1);
    CHECK_INT(rows_of(c, "msg", 0, group), 2);

    /* a login's deletion takes its engine's rows; its messages elsewhere stay, without it */
    CHECK_INT(db_login_delete(c, gone), DB_OK);
    CHECK_INT(rows_of(c, "buf", gone, 0), 0);
    CHECK_INT(rows_of(c, "sent", gone, 0), 0);
    CHECK_INT(rows_of(c, "buf", keep, 0), 1);
    CHECK_INT(rows_of(c, "sent", keep, 0), 1);
    CHECK_INT(rows_of(c, "msg", 0, group), 2);
    CHECK_INT(rows_of(c, "msg", gone, 0), 0);
    db_message got;
    CHECK_INT(db_message_by_wa(c, group, "PARENT3", "", &got), DB_OK);
    CHECK(got.login_id == 0);
    CHECK_INT(db_message_by_wa(c, group, "PARENT4", "", &got), DB_OK);
    CHECK(got.login_id == keep);

    /* a row written for the deleted login (its engine still finishing) is not refused; the
     * startup sweep deletes such rows and only those */
    put_engine_rows(c, gone, "G2");
    CHECK_INT(rows_of(c, "buf", gone, 0), 1);
    int64_t n = -1;
    CHECK_INT(db_sweep_orphans(c, &n), DB_OK);
    CHECK_INT(n, 2);
    CHECK_INT(rows_of(c, "buf", gone, 0), 0);
    CHECK_INT(rows_of(c, "sent", gone, 0), 0);
    CHECK_INT(rows_of(c, "buf", keep, 0), 1);
    CHECK_INT(rows_of(c, "sent", keep, 0), 1);
    CHECK_INT(db_sweep_orphans(c, &n), DB_OK);
    CHECK_INT(n, 0);

    /* a login deleted with its DM portals (the portal's own key cascades) takes their messages */
    int64_t l5 = 0, dm5 = 0;
    CHECK_INT(db_login_create(c, "@erin:example.org", &l5), DB_OK);
    CHECK_INT(db_portal_ensure(c, "15557654321@s.whatsapp.net", l5, &dm5), DB_OK);
    m.portal_id = dm5;
    m.login_id = l5;
    snprintf(m.wa_id, sizeof(m.wa_id), "PARENT9");
    snprintf(m.mxid, sizeof(m.mxid), "$parent9");
    CHECK_INT(db_message_insert(c, &m), DB_OK);
    CHECK_INT(db_login_delete(c, l5), DB_OK);
    CHECK_INT(rows_of(c, "msg", 0, dm5), 0);
}

static void test_group_calls(db_conn *c, int64_t l1, int64_t l2)
{
    db_inbox_event ev[1] = {{"$kick1", "!club:x", "{\"type\":\"m.room.member\"}"}};
    int64_t ids[1] = {0};
    bool dup = true;
    CHECK_INT(db_mx_txn_accept_ids(c, "txn-gcall", ev, 1, 1700000005000, &dup, ids), DB_OK);
    int64_t inbox_before = inbox_count(c);
    db_group_call call = {
        .login_id = l1, .change = 1, .undo_level = 0, .created_ms = 1700000005000};
    snprintf(call.group, sizeof(call.group), "120363000000000888@g.us");
    snprintf(call.room, sizeof(call.room), "!club:x");
    snprintf(call.target, sizeof(call.target), "15550001111@s.whatsapp.net");
    int64_t a = 0, b = 0, d = 0;
    /* the call goes in and the event's inbox row out, together */
    CHECK_INT(db_group_call_add(c, &call, ids[0], &a), DB_OK);
    CHECK(a > 0);
    CHECK_INT(inbox_count(c), inbox_before - 1);
    call.change = 2;
    call.undo_level = 50;
    call.created_ms = 1700000006000;
    CHECK_INT(db_group_call_add(c, &call, 0, &b), DB_OK); /* no inbox row */
    CHECK_INT(inbox_count(c), inbox_before - 1);
    snprintf(call.group, sizeof(call.group), "120363000000000999@g.us");
    call.login_id = l2;
    CHECK_INT(db_group_call_add(c, &call, 0, &d), DB_OK);
    call.target[0] = '\0';
    int64_t bad = 0;
    CHECK_INT(db_group_call_add(c, &call, 0, &bad), DB_ERR_INVALID);

    db_group_call out[4];
    size_t n = 0;
    CHECK_INT(db_group_call_list(c, l1, NULL, 1800000000000, out, 4, &n), DB_OK);
    CHECK_INT((int)n, 2);
    if (n == 2) {
        CHECK(out[0].id == a && out[1].id == b); /* oldest first */
        CHECK_INT(out[0].change, 1);
        CHECK_INT(out[1].undo_level, 50);
        CHECK_STR(out[0].room, "!club:x");
        CHECK_STR(out[0].target, "15550001111@s.whatsapp.net");
        CHECK_STR(out[1].group, "120363000000000888@g.us");
        CHECK(out[1].created_ms == 1700000006000);
    }
    /* only those made before a moment, of one group, up to max */
    CHECK_INT(db_group_call_list(c, l1, NULL, 1700000006000, out, 4, &n), DB_OK);
    CHECK_INT((int)n, 1);
    CHECK_INT(db_group_call_list(c, l1, "120363000000000999@g.us", 1800000000000, out, 4, &n),
              DB_OK);
    CHECK_INT((int)n, 0);
    CHECK_INT(db_group_call_list(c, l2, "120363000000000999@g.us", 1800000000000, out, 4, &n),
              DB_OK);
    CHECK_INT((int)n, 1);
    CHECK_INT(db_group_call_list(c, l1, NULL, 1800000000000, out, 1, &n), DB_OK);
    CHECK_INT((int)n, 1);
    CHECK_INT(db_group_call_done(c, a), DB_OK);
    CHECK_INT(db_group_call_done(c, a), DB_OK); /* again: nothing to do */
    CHECK_INT(db_group_call_list(c, l1, NULL, 1800000000000, out, 4, &n), DB_OK);
    CHECK_INT((int)n, 1);
    CHECK_INT(db_group_call_done(c, b), DB_OK);
    CHECK_INT(db_group_call_done(c, d), DB_OK);
}

int main(void)
{
    pgtest_require();
    char ci[1024];
    pgtest_fresh_db("wb_test_bridge", ci, sizeof(ci));
    db_conn *c = pgtest_connect(ci);
    CHECK_INT(db_migrate(c, db_migrations_embedded, db_migrations_embedded_count, NULL), DB_OK);
    int64_t l1, l2, l3;
    CHECK_INT(db_login_create(c, "@alice:example.org", &l1), DB_OK);
    CHECK_INT(db_login_create(c, "@bob:example.org", &l2), DB_OK);
    CHECK_INT(db_login_create(c, "@carol:example.org", &l3), DB_OK);
    test_inbox(c);
    test_portals_messages(c, l1, l2);
    test_kv(c);
    test_group_events(c, l1, l2);
    test_group_calls(c, l1, l2);
    test_puppet_token(c);
    test_leases(c, ci);
    test_parent_deletes(c, l3);
    db_conn_close(c);
    return CHECK_DONE();
}
