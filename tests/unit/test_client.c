/*
 * tests/unit/test_client.c - the engine's connection lifecycle (wa/client) against the simulator's
 * protocol logic (tests/sim/wa-server/sim.c), wired together in memory on a virtual clock: pairing
 * by QR, the 515 restart, login, prekey upload, a restart from the store without pairing, QR
 * expiry, stream errors and failures, keepalive, handshake timeout, a wrong trust root, backoff,
 * logout.
 */
#include "check.h"
#include "sim.h"
#include "wa/client.h"
#include "wa/store_mem.h"

#include <stdlib.h>

#define PHONE "15550000001"

typedef struct rig {
    sim s;
    wa_store store;
    wa_client *client;
    sim_conn *conn;   /* the client's connection on the server side, when open */
    int64_t now;      /* virtual monotonic clock, ms */
    uint64_t wall;    /* virtual unix seconds */
    bool scan_qr;     /* the phone scans the first QR it sees */
    bool server_mute; /* the server's bytes are lost */
    int enter_code;   /* pairing by code: 1 = type the code shown, 2 = type a wrong one */
    char code[9];     /* a code to type once the bytes settle */
    wa_event events[256];
    int nevents;
} rig;

static void rig_init(rig *r, const uint8_t *trust_root)
{
    memset(r, 0, sizeof(*r));
    CHECK_INT(sim_init(&r->s, (const uint8_t *)"test", 4, 1800000000), 0);
    CHECK(sim_account_add(&r->s, PHONE, "100000000000001", "Phone") != NULL);
    CHECK_INT(wa_store_mem_new(&r->store), WA_STORE_OK);
    r->now = 1000;
    r->wall = 1800000000;
    r->scan_qr = true;
}

static wa_client *rig_client(rig *r, wa_crypto *crypto, const uint8_t *root)
{
    wa_client_config cfg = {.store = &r->store,
                            .crypto = crypto,
                            .trust_root = root,
                            .push_name = "Bridge Ü",
                            .os_name = "wabridge-test"};
    int err;
    wa_client *c = wa_client_new(&cfg, &err);
    CHECK(c != NULL);
    return c;
}

static void close_conn(rig *r)
{
    if (r->conn) sim_conn_free(&r->s, r->conn);
    r->conn = NULL;
}

/* Moves bytes and events until nothing happens; returns after at most `steps` rounds. */
static void pump(rig *r)
{
    for (int round = 0; round < 1000; round++) {
        bool moved = false;
        wa_io io = wa_client_io(r->client);
        if (io == WA_IO_OPEN) {
            close_conn(r);
            r->conn = sim_conn_new(&r->s, NULL);
            wa_client_on_open(r->client, r->now, r->wall);
            moved = true;
        } else if (io == WA_IO_CLOSE) {
            close_conn(r);
            moved = true;
        }
        wb_buf *out = wa_client_output(r->client);
        if (out->len && r->conn) {
            if (sim_conn_receive(&r->s, r->conn, out->data, out->len) < 0) {
                close_conn(r);
                wa_client_on_closed(r->client, r->now);
            }
            out->len = 0;
            moved = true;
        } else if (out->len) {
            out->len = 0;
        }
        if (r->conn && r->conn->hello_pending) {
            r->now += 50;
            sim_conn_timer(&r->s, r->conn);
            moved = true;
        }
        if (r->conn && r->conn->out.len) {
            wb_buf bytes = r->conn->out;
            wb_buf_init(&r->conn->out);
            if (!r->server_mute)
                wa_client_on_data(r->client, bytes.data, bytes.len, r->now, r->wall);
            wb_buf_free(&bytes);
            moved = true;
        } else if (r->conn && r->conn->state == SIM_CONN_CLOSING) {
            close_conn(r);
            wa_client_on_closed(r->client, r->now);
            moved = true;
        }
        wa_event ev;
        while (wa_client_next_event(r->client, &ev)) {
            if (r->nevents < 256) r->events[r->nevents++] = ev;
            if (ev.type == WA_EV_PAIR_CODE && r->enter_code) {
                /* the user types it once the phone got the request: after the bytes settle */
                memcpy(r->code, ev.text, 8);
                r->code[8] = 0;
                if (r->enter_code == 2) r->code[0] = r->code[0] == 'A' ? 'B' : 'A';
                r->enter_code = 0;
            }
            if (ev.type == WA_EV_QR && r->scan_qr) {
                char err[160];
                CHECK_INT(sim_admin_scan(&r->s, PHONE, ev.text, err, sizeof(err)), 0);
                r->scan_qr = false;
            }
            moved = true;
        }
        if (!moved && r->code[0]) {
            char err[160];
            CHECK_INT(sim_admin_pair_code(&r->s, PHONE, r->code, err, sizeof(err)), 0);
            r->code[0] = 0;
            moved = true;
        }
        if (!moved) return;
    }
}

/* Runs the virtual clock forward by ms, ticking the client at its deadlines. */
static void advance(rig *r, int64_t ms)
{
    int64_t end = r->now + ms;
    pump(r);
    for (int i = 0; i < 100000; i++) {
        int64_t d = wa_client_deadline(r->client);
        if (d > end) break;
        if (d > r->now) {
            r->wall += (uint64_t)(d - r->now) / 1000;
            r->now = d;
        }
        wa_client_tick(r->client, r->now, r->wall);
        pump(r);
    }
    r->now = end;
}

static int count_events(rig *r, wa_event_type t)
{
    int n = 0;
    for (int i = 0; i < r->nevents; i++)
        n += r->events[i].type == t;
    return n;
}

static const wa_event *last_event(rig *r, wa_event_type t)
{
    for (int i = r->nevents - 1; i >= 0; i--)
        if (r->events[i].type == t) return &r->events[i];
    return NULL;
}

static void rig_free(rig *r)
{
    close_conn(r);
    wa_client_free(r->client);
    r->store.destroy(r->store.ctx);
    sim_free(&r->s);
}

static void test_pair_login_restart_logout(wa_crypto *crypto)
{
    rig r;
    rig_init(&r, NULL);
    r.client = rig_client(&r, crypto, r.s.root.pub);
    CHECK(!wa_client_is_paired(r.client));
    CHECK_INT(wa_client_start(r.client, r.now, r.wall), WA_OK);
    advance(&r, 1000);
    CHECK_INT(count_events(&r, WA_EV_QR), 1);
    const wa_event *qr = last_event(&r, WA_EV_QR);
    CHECK(qr && strncmp(qr->text, "https://wa.me/settings/linked_devices#2@sim", 43) == 0);
    CHECK_INT(count_events(&r, WA_EV_PAIR_SUCCESS), 1);
    CHECK_STR(last_event(&r, WA_EV_PAIR_SUCCESS)->text, PHONE ":1@s.whatsapp.net");
    const wa_event *disc = last_event(&r, WA_EV_DISCONNECTED);
    CHECK(disc && disc->code == 515 && disc->ms == 0);
    CHECK_INT(count_events(&r, WA_EV_CONNECTED), 1);
    CHECK_STR(last_event(&r, WA_EV_CONNECTED)->text, "100000000000001:1@lid");
    CHECK_INT(count_events(&r, WA_EV_READY), 1);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_CONNECTED);
    CHECK(wa_client_is_paired(r.client));
    sim_account *acct = sim_account_find(&r.s, PHONE);
    CHECK(acct->ndevices == 1 && acct->devices[0].prekeys == WA_PREKEY_UPLOAD_FIRST);
    size_t uploaded = 0;
    r.store.prekeys_count_uploaded(r.store.ctx, &uploaded);
    CHECK_INT(uploaded, WA_PREKEY_UPLOAD_FIRST);

    /* keepalive: pings go out every 15-30 s and are answered; the connection stays up */
    int before = r.nevents;
    advance(&r, 120000);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_CONNECTED);
    CHECK_INT(r.nevents, before);

    /* a new process with the same store logs in without pairing, uploading nothing more */
    close_conn(&r);
    wa_client_free(r.client);
    r.nevents = 0;
    r.client = rig_client(&r, crypto, r.s.root.pub);
    CHECK(wa_client_is_paired(r.client));
    CHECK_STR(wa_client_jid(r.client), PHONE ":1@s.whatsapp.net");
    wa_client_start(r.client, r.now, r.wall);
    advance(&r, 1000);
    CHECK_INT(count_events(&r, WA_EV_QR), 0);
    CHECK_INT(count_events(&r, WA_EV_CONNECTED), 1);
    CHECK_INT(acct->devices[0].prekeys, WA_PREKEY_UPLOAD_FIRST);
    CHECK_INT(acct->ndevices, 1);

    /* logout removes the companion on the server and wipes the store */
    CHECK_INT(wa_client_logout(r.client, r.now), WA_OK);
    advance(&r, 1000);
    CHECK_INT(count_events(&r, WA_EV_LOGGED_OUT), 1);
    CHECK(!acct->devices[0].present);
    CHECK(!wa_client_is_paired(r.client));
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_LOGGED_OUT);
    advance(&r, 600000); /* and it does not come back by itself */
    CHECK_INT(count_events(&r, WA_EV_CONNECTED), 1);
    CHECK(r.conn == NULL);
    rig_free(&r);
}

static void pair(rig *r, wa_crypto *crypto)
{
    r->client = rig_client(r, crypto, r->s.root.pub);
    wa_client_start(r->client, r->now, r->wall);
    advance(r, 1000);
    CHECK_INT(wa_client_get_state(r->client), WA_CLIENT_CONNECTED);
    r->nevents = 0;
}

static void test_qr_timeout(wa_crypto *crypto)
{
    rig r;
    rig_init(&r, NULL);
    r.scan_qr = false;
    r.client = rig_client(&r, crypto, r.s.root.pub);
    wa_client_start(r.client, r.now, r.wall);
    advance(&r, 59000);
    CHECK_INT(count_events(&r, WA_EV_QR), 1); /* the first ref lives 60 s */
    advance(&r, 2000);
    CHECK_INT(count_events(&r, WA_EV_QR), 2); /* the next ones 20 s */
    advance(&r, 20000 * 4);
    CHECK_INT(count_events(&r, WA_EV_QR), SIM_REFS);
    advance(&r, 20000);
    CHECK_INT(count_events(&r, WA_EV_QR_TIMEOUT), 1);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_IDLE);
    CHECK(r.conn == NULL);
    advance(&r, 600000);
    CHECK_INT(count_events(&r, WA_EV_QR), SIM_REFS); /* no reconnect by itself */
    rig_free(&r);
}

static void test_stream_errors(wa_crypto *crypto)
{
    rig r;
    rig_init(&r, NULL);
    pair(&r, crypto);
    char err[160];

    /* 515: reconnect at once */
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "515", err, sizeof(err)), 0);
    advance(&r, 100);
    CHECK(last_event(&r, WA_EV_DISCONNECTED)->code == 515);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_CONNECTED);

    /* 503 and other errors: reconnect after a backoff that grows */
    r.nevents = 0;
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "503", err, sizeof(err)), 0);
    pump(&r);
    int64_t first = last_event(&r, WA_EV_DISCONNECTED)->ms;
    CHECK(first >= 1000);
    advance(&r, first + 10);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_CONNECTED);
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "503", err, sizeof(err)), 0);
    pump(&r);
    int64_t second = last_event(&r, WA_EV_DISCONNECTED)->ms;
    CHECK(second > first);
    advance(&r, second + 10);

    /* 429: back off much more */
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "429", err, sizeof(err)), 0);
    pump(&r);
    int64_t limited = last_event(&r, WA_EV_DISCONNECTED)->ms;
    CHECK(limited > second * 2);
    advance(&r, limited + 10);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_CONNECTED);

    /* a stable connection resets the backoff */
    advance(&r, WA_STABLE_MS + 1000);
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "503", err, sizeof(err)), 0);
    pump(&r);
    CHECK(last_event(&r, WA_EV_DISCONNECTED)->ms <= 2000);
    advance(&r, 5000);

    /* a plain kick (socket closed without a word): reconnect */
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "", err, sizeof(err)), 0);
    advance(&r, 5000);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_CONNECTED);

    /* 409 replaced: another client took the device over; do not fight it */
    r.nevents = 0;
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "409", err, sizeof(err)), 0);
    advance(&r, 600000);
    CHECK(last_event(&r, WA_EV_DISCONNECTED)->ms == -1);
    CHECK_INT(count_events(&r, WA_EV_CONNECTED), 0);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_IDLE);

    /* start again, then 401: logged out, store wiped, no reconnect */
    wa_client_start(r.client, r.now, r.wall);
    advance(&r, 1000);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_CONNECTED);
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "401", err, sizeof(err)), 0);
    advance(&r, 600000);
    CHECK_INT(count_events(&r, WA_EV_LOGGED_OUT), 1);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_LOGGED_OUT);
    wa_device d;
    CHECK_INT(r.store.device_load(r.store.ctx, &d), WA_STORE_OK);
    CHECK(!d.paired); /* a fresh identity, ready for a new pairing */
    rig_free(&r);
}

static void test_login_refused(wa_crypto *crypto)
{
    rig r;
    rig_init(&r, NULL);
    pair(&r, crypto);
    /* the phone removed the device while we were away: the login is refused with 401 */
    close_conn(&r);
    wa_client_on_closed(r.client, r.now);
    sim_account *acct = sim_account_find(&r.s, PHONE);
    acct->devices[0].present = false;
    advance(&r, 10000);
    CHECK_INT(count_events(&r, WA_EV_LOGGED_OUT), 1);
    CHECK_INT(last_event(&r, WA_EV_LOGGED_OUT)->code, 401);
    CHECK(!wa_client_is_paired(r.client));
    rig_free(&r);
}

static void test_killed_during_login(wa_crypto *crypto)
{
    rig r;
    rig_init(&r, NULL);
    pair(&r, crypto);
    /* a restart; the socket dies after the handshake, before <success> */
    char err[160];
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "", err, sizeof(err)), 0);
    pump(&r);
    advance(&r, 2000); /* backoff, then the new connection's handshake starts */
    for (int i = 0; i < 50 && wa_client_get_state(r.client) != WA_CLIENT_LOGGING_IN; i++)
        advance(&r, 10);
    if (wa_client_get_state(r.client) == WA_CLIENT_CONNECTED) {
        /* the whole login ran inside one pump: kill the next one at the same point instead */
        CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "", err, sizeof(err)), 0);
        pump(&r);
    }
    close_conn(&r);
    wa_client_on_closed(r.client, r.now);
    CHECK(wa_client_get_state(r.client) == WA_CLIENT_BACKOFF);
    advance(&r, 30000);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_CONNECTED);
    CHECK(wa_client_is_paired(r.client)); /* nothing lost, no new pairing */
    CHECK_INT(count_events(&r, WA_EV_QR), 0);
    rig_free(&r);
}

static void test_timeouts(wa_crypto *crypto)
{
    rig r;
    rig_init(&r, NULL);
    pair(&r, crypto);
    /* pings unanswered: the connection is dropped within ping interval + deadline */
    r.server_mute = true;
    advance(&r, WA_PING_MAX_MS + WA_PING_DEADLINE_MS + 100);
    CHECK(count_events(&r, WA_EV_DISCONNECTED) >= 1);
    CHECK_STR(r.events[0].text, "keepalive ping unanswered");
    /* the server stays silent mid-handshake: 20 s, then retry with backoff */
    r.nevents = 0;
    advance(&r, WA_HANDSHAKE_TIMEOUT_MS + 5000);
    const wa_event *e = last_event(&r, WA_EV_DISCONNECTED);
    CHECK(e && strcmp(e->text, "the server did not answer in time") == 0 && e->ms > 0);
    r.server_mute = false;
    advance(&r, 130000);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_CONNECTED);
    rig_free(&r);
}

static void test_wrong_root(wa_crypto *crypto)
{
    rig r;
    rig_init(&r, NULL);
    r.client = rig_client(&r, crypto, NULL); /* trusts WhatsApp's real root, not the simulator */
    wa_client_start(r.client, r.now, r.wall);
    advance(&r, 600000);
    const wa_event *e = last_event(&r, WA_EV_ERROR);
    CHECK(e && strstr(e->text, "intermediate certificate signature") != NULL);
    CHECK_INT(count_events(&r, WA_EV_QR), 0);
    CHECK_INT(count_events(&r, WA_EV_ERROR), 1); /* a certificate error is not retried */
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_IDLE);
    rig_free(&r);
}

static void test_garbage_from_server(wa_crypto *crypto)
{
    rig r;
    rig_init(&r, NULL);
    pair(&r, crypto);
    /* bytes that are no valid frame: dropped and retried, no crash */
    const uint8_t junk[] = {0,  0,  20, 1,  2,  3,  4,  5,  6,  7,  8, 9,
                            10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    wa_client_on_data(r.client, junk, sizeof(junk), r.now, r.wall);
    pump(&r);
    CHECK(last_event(&r, WA_EV_ERROR) != NULL);
    CHECK(last_event(&r, WA_EV_DISCONNECTED)->ms > 0);
    advance(&r, 10000);
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_CONNECTED);
    rig_free(&r);
}

static void test_pair_by_code(wa_crypto *crypto)
{
    rig r;
    rig_init(&r, NULL);
    r.scan_qr = false;
    r.enter_code = 1;
    r.client = rig_client(&r, crypto, r.s.root.pub);
    CHECK_INT(wa_client_pair_phone(r.client, "15x", r.now), WA_ERR_INVALID);
    wa_client_start(r.client, r.now, r.wall);
    CHECK_INT(wa_client_pair_phone(r.client, PHONE, r.now), WA_OK);
    advance(&r, 5000);
    CHECK_INT(count_events(&r, WA_EV_QR), 0); /* a code, not QR codes */
    const wa_event *code = last_event(&r, WA_EV_PAIR_CODE);
    CHECK(code && strlen(code->text) == 8 &&
          strspn(code->text, "123456789ABCDEFGHJKLMNPQRSTVWXYZ") == 8);
    CHECK_INT(count_events(&r, WA_EV_PAIR_SUCCESS), 1);
    CHECK_INT(count_events(&r, WA_EV_READY), 1);
    CHECK(wa_client_is_paired(r.client));
    CHECK_INT(wa_client_pair_phone(r.client, PHONE, r.now), WA_ERR_STATE); /* already paired */
    rig_free(&r);

    /* a mistyped code: the phone cannot open the bundle, the companion is told and stops */
    rig_init(&r, NULL);
    r.scan_qr = false;
    r.enter_code = 2;
    r.client = rig_client(&r, crypto, r.s.root.pub);
    wa_client_start(r.client, r.now, r.wall);
    wa_client_pair_phone(r.client, PHONE, r.now);
    advance(&r, 5000);
    CHECK_INT(count_events(&r, WA_EV_PAIR_SUCCESS), 0);
    const wa_event *e = last_event(&r, WA_EV_ERROR);
    CHECK(e && strstr(e->text, "refused the pairing code") != NULL);
    CHECK(!wa_client_is_paired(r.client));
    CHECK_INT(wa_client_get_state(r.client), WA_CLIENT_IDLE);
    CHECK_INT(sim_account_find(&r.s, PHONE)->ndevices, 0);
    rig_free(&r);
}

static void test_sim_deterministic(void)
{
    /* wa-sim --seed/--time: the same seed gives the same keys and certificate chain */
    sim a, b, c;
    CHECK_INT(sim_init(&a, (const uint8_t *)"golden", 6, 1800000000), 0);
    CHECK_INT(sim_init(&b, (const uint8_t *)"golden", 6, 1800000000), 0);
    CHECK_INT(sim_init(&c, (const uint8_t *)"other", 5, 1800000000), 0);
    CHECK(memcmp(a.root.pub, b.root.pub, 32) == 0 && memcmp(a.root.pub, c.root.pub, 32) != 0);
    CHECK(a.cert_chain.len == b.cert_chain.len &&
          memcmp(a.cert_chain.data, b.cert_chain.data, a.cert_chain.len) == 0);
    CHECK(sim_now(&a) == 1800000000);
    sim_free(&a);
    sim_free(&b);
    sim_free(&c);
}

int main(void)
{
    test_sim_deterministic();
    wa_crypto *crypto = wa_crypto_new(NULL, 0);
    test_pair_login_restart_logout(crypto);
    test_qr_timeout(crypto);
    test_pair_by_code(crypto);
    test_stream_errors(crypto);
    test_login_refused(crypto);
    test_killed_during_login(crypto);
    test_timeouts(crypto);
    test_wrong_root(crypto);
    test_garbage_from_server(crypto);
    wa_crypto_free(crypto);
    return CHECK_DONE();
}
