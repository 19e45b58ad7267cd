/*
 * tests/db/test_mx_txn_pg.c - the appservice endpoint with its transactions stored in PostgreSQL:
 * a transaction is in mx_txn / mx_inbox before the 200; a repeated id is answered 200 and adds
 * nothing, also after a restart (new server, new connection); when the database cannot commit,
 * the homeserver gets 500 (and will retry) and nothing half-written remains.
 */
#include "bridge/mx_txn_pg.h"
#include "check.h"
#include "db/bridge_db.h"
#include "db/migrate.h"
#include "matrix/err.h"
#include "pgtest.h"

#include <curl/curl.h>

#define HS_TOKEN "hs-token-for-tests"

static long put_txn(uint16_t port, const char *txn, const char *body)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/_matrix/app/v1/transactions/%s", port, txn);
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Authorization: Bearer " HS_TOKEN);
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(h, CURLOPT_WRITEDATA, devnull);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    fclose(devnull);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    return status;
}

static size_t inbox_count(db_conn *c)
{
    db_inbox_row rows[64];
    size_t n = 0;
    CHECK_INT(db_inbox_peek(c, rows, 64, &n), DB_OK);
    db_inbox_rows_free(rows, n);
    return n;
}

static bool skip_ghost(void *arg, const mx_event *e)
{
    (void)arg;
    return e->kind == MX_EVENT_TIMELINE && e->sender && strncmp(e->sender, "@ghost_", 7) == 0;
}

static mx_as_server *start(db_conn *conn, mx_txn_store *st)
{
    *st = br_mx_txn_store_pg(conn);
    mx_as_config cfg = {.hs_token = HS_TOKEN};
    mx_as_server *s = NULL;
    CHECK_INT(mx_as_server_start(&cfg, st, NULL, &s), MX_OK);
    return s;
}

/* on_stored: what the endpoint tells the bridge once the rows are committed */
typedef struct stored_seen {
    const char *conninfo;
    br_mx_txn_pg *f;
    int calls;
    size_t events;
    bool ids_known;    /* every non-echo event has its row id */
    bool rows_visible; /* the rows are committed (another session reads them) */
} stored_seen;

static bool on_stored(void *arg, const mx_event_batch *batch)
{
    stored_seen *s = arg;
    s->calls++;
    s->events = batch->count;
    s->ids_known = s->f->nids == batch->count && batch->count == 3 && s->f->ids[1] > 0;
    db_conn *other = NULL;
    db_error e;
    s->rows_visible = false;
    if (db_conn_open(s->conninfo, NULL, &other, &e) == DB_OK) {
        s->rows_visible = inbox_count(other) == 7;
        db_conn_close(other);
    }
    return true;
}

int main(void)
{
    pgtest_require();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char conninfo[700];
    pgtest_fresh_db("wb_mx_txn", conninfo, sizeof(conninfo));
    db_conn *conn = pgtest_connect(conninfo);
    db_migrate_report rep;
    CHECK_INT(db_migrate(conn, db_migrations_embedded, db_migrations_embedded_count, &rep), DB_OK);

    const char *body =
        "{\"events\":[{\"type\":\"m.room.message\",\"event_id\":\"$a1\",\"room_id\":\"!r:hs\","
        "\"sender\":\"@alice:hs\",\"content\":{\"body\":\"it's \\\"quoted\\\" \\u0000 and ü\"}},"
        "{\"type\":\"m.room.message\",\"event_id\":\"$a2\",\"room_id\":\"!r:hs\","
        "\"sender\":\"@alice:hs\",\"content\":{\"body\":\"second\"}}],"
        "\"ephemeral\":[{\"type\":\"m.typing\",\"room_id\":\"!r:hs\",\"content\":{\"user_ids\":[]}}"
        "]}";
    mx_txn_store st;
    mx_as_server *s = start(conn, &st);
    uint16_t port = mx_as_server_port(s);
    CHECK_INT(put_txn(port, "t1", body), 200);
    CHECK_INT(inbox_count(conn), 3); /* two timeline events and the typing notice */
    db_inbox_row rows[8];
    size_t n = 0;
    db_inbox_peek(conn, rows, 8, &n);
    CHECK(n == 3 && strcmp(rows[0].event_id, "$a1") == 0 && strcmp(rows[1].event_id, "$a2") == 0);
    CHECK(n == 3 && strstr(rows[0].event_json, "\\u0000 and ü") != NULL);
    CHECK(n == 3 && strcmp(rows[2].event_id, "~t1/2") == 0 &&
          strcmp(rows[2].room_id, "!r:hs") == 0);
    db_inbox_rows_free(rows, n);
    CHECK_INT(put_txn(port, "t1", body), 200); /* the homeserver retried: nothing added */
    CHECK_INT(inbox_count(conn), 3);
    mx_as_stats stats;
    mx_as_server_stats(s, &stats);
    CHECK(stats.txn_stored == 1 && stats.txn_duplicate == 1);
    mx_as_server_stop(s);
    db_conn_close(conn);

    /* restart: a new process (connection + server) still knows t1 */
    conn = pgtest_connect(conninfo);
    s = start(conn, &st);
    port = mx_as_server_port(s);
    CHECK_INT(put_txn(port, "t1", body), 200);
    CHECK_INT(inbox_count(conn), 3);
    CHECK_INT(put_txn(port, "t2",
                      "{\"events\":[{\"type\":\"m.room.message\",\"event_id\":\"$b1\",\"room_id\":"
                      "\"!r:hs\",\"sender\":\"@bob:hs\",\"content\":{}}]}"),
              200);
    CHECK_INT(inbox_count(conn), 4);

    /* the database refuses: 500, nothing of the transaction is kept, the retry succeeds */
    db_result *r = NULL;
    static const db_stmt break_stmt = {"break_inbox",
                                       "ALTER TABLE mx_inbox RENAME TO mx_inbox_gone", 0};
    CHECK_INT(db_exec(conn, &break_stmt, NULL, 0, &r), DB_OK);
    db_result_free(r);
    const char *t3 = "{\"events\":[{\"type\":\"m.room.message\",\"event_id\":\"$c1\",\"room_id\":"
                     "\"!r:hs\",\"sender\":\"@bob:hs\",\"content\":{}}]}";
    CHECK_INT(put_txn(port, "t3", t3), 500);
    static const db_stmt fix_stmt = {"fix_inbox", "ALTER TABLE mx_inbox_gone RENAME TO mx_inbox",
                                     0};
    CHECK_INT(db_exec(conn, &fix_stmt, NULL, 0, &r), DB_OK);
    db_result_free(r);
    CHECK_INT(put_txn(port, "t3", t3), 200); /* t3 was not half-recorded: it is new now */
    CHECK_INT(inbox_count(conn), 5);
    mx_as_server_stop(s);

    /* the filtered store: our own echoes stay out; a transaction of echoes only is answered
     * without a trace, one with others keeps the others (ephemeral events always) */
    stored_seen seen = {.conninfo = conninfo};
    br_mx_txn_pg f = {.conn = conn,
                      .skip = skip_ghost,
                      .skip_arg = NULL,
                      .on_stored = on_stored,
                      .stored_arg = &seen};
    seen.f = &f;
    st = br_mx_txn_store_pg_filtered(&f);
    mx_as_config cfg = {.hs_token = HS_TOKEN};
    s = NULL;
    CHECK_INT(mx_as_server_start(&cfg, &st, NULL, &s), MX_OK);
    port = mx_as_server_port(s);
    CHECK_INT(put_txn(port, "t4",
                      "{\"events\":[{\"type\":\"m.room.message\",\"event_id\":\"$g1\",\"room_id\":"
                      "\"!r:hs\",\"sender\":\"@ghost_1:hs\",\"content\":{}}]}"),
              200);
    CHECK_INT(inbox_count(conn), 5);
    CHECK_INT(put_txn(port, "t5",
                      "{\"events\":[{\"type\":\"m.room.message\",\"event_id\":\"$g2\",\"room_id\":"
                      "\"!r:hs\",\"sender\":\"@ghost_2:hs\",\"content\":{}},{\"type\":"
                      "\"m.room.message\",\"event_id\":\"$d1\",\"room_id\":\"!r:hs\",\"sender\":"
                      "\"@dana:hs\",\"content\":{}}],\"ephemeral\":[{\"type\":\"m.typing\","
                      "\"room_id\":\"!r:hs\",\"content\":{\"user_ids\":[\"@ghost_2:hs\"]}}]}"),
              200);
    CHECK_INT(inbox_count(conn), 7); /* $d1 and the typing notice */
    /* told once the rows were committed, with their ids, before the 200 (not for echoes only) */
    CHECK_INT(seen.calls, 1);
    CHECK_INT(seen.events, 3);
    CHECK(seen.ids_known && seen.rows_visible);
    CHECK(f.taken);
    /* the rows' ids, by the batch's events (the echo has none), for the bridge to route them */
    CHECK_INT((int)f.nids, 3);
    if (f.nids == 3) CHECK(f.ids[0] == -1 && f.ids[1] > 0 && f.ids[2] > f.ids[1]);
    /* a repeated transaction adds nothing and is not told again */
    CHECK_INT(put_txn(port, "t5",
                      "{\"events\":[{\"type\":\"m.room.message\",\"event_id\":\"$d1\",\"room_id\":"
                      "\"!r:hs\",\"sender\":\"@dana:hs\",\"content\":{}}]}"),
              200);
    CHECK_INT(seen.calls, 1);
    db_inbox_row all[16];
    n = 0;
    db_inbox_peek(conn, all, 16, &n);
    bool echo = false;
    for (size_t i = 0; i < n; i++)
        echo |= strncmp(all[i].event_id, "$g", 2) == 0;
    CHECK(!echo);
    db_inbox_rows_free(all, n);
    mx_as_server_stop(s);
    br_mx_txn_pg_free(&f);
    db_conn_close(conn);
    curl_global_cleanup();
    return CHECK_DONE();
}
