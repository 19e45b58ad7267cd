/*
 * tests/db/test_mx_ghosts_pg.c - registered ghosts remembered in PostgreSQL: the first bridge
 * registers a ghost at the homeserver (hs-sim) once; a restarted bridge (new client, empty memory
 * cache, same database) does not ask the homeserver again.
 *   test_mx_ghosts_pg path/to/hs-sim
 */
#include "bridge/mx_ghosts_pg.h"
#include "check.h"
#include "db/bridge_db.h"
#include "db/migrate.h"
#include "matrix/err.h"
#include "matrix/registration.h"
#include "mx_test.h"
#include "pgtest.h"

#define DOMAIN "example.org"

static unsigned hs_port;

static mx_client *new_client(const mx_registration *reg, db_conn *conn)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", hs_port);
    mx_client_config cc = {.hs_url = url,
                           .as_token = reg->as_token,
                           .server_name = DOMAIN,
                           .bot_localpart = reg->sender_localpart,
                           .timeout_ms = 5000,
                           .deadline_ms = 20000,
                           .ghosts = br_mx_ghost_store_pg(conn)};
    return mx_client_new(&cc);
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    pgtest_require();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char conninfo[700];
    pgtest_fresh_db("wb_mx_ghosts", conninfo, sizeof(conninfo));
    db_conn *conn = pgtest_connect(conninfo);
    db_migrate_report rep;
    CHECK_INT(db_migrate(conn, db_migrations_embedded, db_migrations_embedded_count, &rep), DB_OK);

    mx_registration reg;
    mx_registration_params rp = {.url = "http://127.0.0.1:1", .domain = DOMAIN};
    CHECK_INT(mx_registration_generate(&rp, &reg), MX_OK);
    char path[] = "/tmp/mxghosts-regXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK_INT(mx_registration_write(&reg, path), MX_OK);
    const char *argv_hs[] = {argv[1], "0", DOMAIN, path, NULL};
    t_proc hs;
    CHECK(t_spawn(argv_hs, true, &hs));
    hs_port = hs.port;
    if (!hs_port) return CHECK_DONE();

    mx_error e;
    mx_client_stats st;
    mx_client *c = new_client(&reg, conn);
    CHECK_INT(mx_client_ensure_registered(c, "whatsapp_15551234567", &e), MX_OK);
    CHECK_INT(mx_client_ensure_registered(c, "whatsapp_15551234567", &e), MX_OK);
    mx_client_stats_get(c, &st);
    CHECK_INT(st.registered, 1); /* asked the homeserver once */
    bool known = false;
    CHECK_INT(db_registered_user_known(conn, "@whatsapp_15551234567:" DOMAIN, &known), DB_OK);
    CHECK(known);
    mx_client_free(c);

    /* a restarted bridge: empty memory cache, the database remembers */
    db_conn_close(conn);
    conn = pgtest_connect(conninfo);
    c = new_client(&reg, conn);
    CHECK_INT(mx_client_ensure_registered(c, "whatsapp_15551234567", &e), MX_OK);
    mx_client_stats_get(c, &st);
    CHECK_INT(st.registered, 0);
    CHECK_INT(st.requests, 0); /* not a single request to the homeserver */
    CHECK_INT(mx_client_ensure_registered(c, "whatsapp_lid-100000000000001", &e), MX_OK);
    mx_client_stats_get(c, &st);
    CHECK_INT(st.registered, 1);
    mx_client_free(c);

    t_stop(&hs);
    unlink(path);
    mx_registration_free(&reg);
    db_conn_close(conn);
    curl_global_cleanup();
    return CHECK_DONE();
}
