/*
 * tests/unit/test_client.c - the engine's connection lifecycle (wa/client) against the simulator's
 * protocol logic (tests/sim/wa-server/sim.c), wired together in memory on a virtual clock: pairing
 * by QR, the 515 restart, login, prekey upload, a restart from the store without pairing, QR
 * expiry, stream errors and failures, keepalive, handshake timeout, a wrong trust root, backoff,
 * logout.
 */
#include "check.h"
#include "sim_rig.h"

#include <stdlib.h>

#define PHONE "15550000001"

/* A rig with the one account and its peer, no engine yet; the wall clock follows the virtual
 * one and each server hello timer takes 50 ms. */
static sim_rig_peer *rig_init(sim_rig *r, wa_crypto *crypto)
{
    CHECK_INT(sim_rig_init(r, "test", crypto), 0);
    r->wall_follows = true;
    r->hello_ms = 50;
    CHECK(sim_account_add(&r->s, PHONE, "100000000000001", "Phone") != NULL);
    return sim_rig_peer_add(r, PHONE);
}

static void rig_client(sim_rig *r, sim_rig_peer *p, const uint8_t *root)
{
    sim_rig_peer_client(r, p, "Bridge Ü", root);
}

static void test_pair_login_restart_logout(wa_crypto *crypto)
{
    sim_rig r;
    sim_rig_peer *p = rig_init(&r, crypto);
    rig_client(&r, p, r.s.root.pub);
    CHECK(!wa_client_is_paired(p->client));
    CHECK_INT(wa_client_start(p->client, r.now, r.wall), WA_OK);
    sim_rig_advance(&r, 1000);
    CHECK_INT(sim_rig_count(p, WA_EV_QR, NULL), 1);
    const wa_event *qr = sim_rig_last(p, WA_EV_QR);
    CHECK(qr && strncmp(qr->text, "https://wa.me/settings/linked_devices#2@sim", 43) == 0);
    CHECK_INT(sim_rig_count(p, WA_EV_PAIR_SUCCESS, NULL), 1);
    CHECK_STR(sim_rig_last(p, WA_EV_PAIR_SUCCESS)->text, PHONE ":1@s.whatsapp.net");
    const wa_event *disc = sim_rig_last(p, WA_EV_DISCONNECTED);
    CHECK(disc && disc->code == 515 && disc->ms == 0);
    CHECK_INT(sim_rig_count(p, WA_EV_CONNECTED, NULL), 1);
    CHECK_STR(sim_rig_last(p, WA_EV_CONNECTED)->text, "100000000000001:1@lid");
    CHECK_INT(sim_rig_count(p, WA_EV_READY, NULL), 1);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);
    CHECK(wa_client_is_paired(p->client));
    sim_account *acct = sim_account_find(&r.s, PHONE);
    CHECK(acct->ndevices == 1 && acct->devices[0].prekeys == WA_PREKEY_UPLOAD_FIRST);
    size_t uploaded = 0;
    p->store.prekeys_count_uploaded(p->store.ctx, &uploaded);
    CHECK_INT(uploaded, WA_PREKEY_UPLOAD_FIRST);

    /* keepalive: pings go out every 15-30 s and are answered; the connection stays up */
    int before = p->nevents;
    sim_rig_advance(&r, 120000);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);
    CHECK_INT(p->nevents, before);

    /* a new process with the same store logs in without pairing, uploading nothing more */
    sim_rig_close(&r, p);
    wa_client_free(p->client);
    p->nevents = 0;
    rig_client(&r, p, r.s.root.pub);
    CHECK(wa_client_is_paired(p->client));
    CHECK_STR(wa_client_jid(p->client), PHONE ":1@s.whatsapp.net");
    wa_client_start(p->client, r.now, r.wall);
    sim_rig_advance(&r, 1000);
    CHECK_INT(sim_rig_count(p, WA_EV_QR, NULL), 0);
    CHECK_INT(sim_rig_count(p, WA_EV_CONNECTED, NULL), 1);
    CHECK_INT(acct->devices[0].prekeys, WA_PREKEY_UPLOAD_FIRST);
    CHECK_INT(acct->ndevices, 1);

    /* logout removes the companion on the server and wipes the store */
    CHECK_INT(wa_client_logout(p->client, r.now), WA_OK);
    sim_rig_advance(&r, 1000);
    CHECK_INT(sim_rig_count(p, WA_EV_LOGGED_OUT, NULL), 1);
    CHECK(!acct->devices[0].present);
    CHECK(!wa_client_is_paired(p->client));
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_LOGGED_OUT);
    sim_rig_advance(&r, 600000); /* and it does not come back by itself */
    CHECK_INT(sim_rig_count(p, WA_EV_CONNECTED, NULL), 1);
    CHECK(p->conn == NULL);
    sim_rig_free(&r);
}

static void pair(sim_rig *r, sim_rig_peer *p)
{
    rig_client(r, p, r->s.root.pub);
    wa_client_start(p->client, r->now, r->wall);
    sim_rig_advance(r, 1000);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);
    p->nevents = 0;
}

static void test_qr_timeout(wa_crypto *crypto)
{
    sim_rig r;
    sim_rig_peer *p = rig_init(&r, crypto);
    p->scan_qr = false;
    rig_client(&r, p, r.s.root.pub);
    wa_client_start(p->client, r.now, r.wall);
    sim_rig_advance(&r, 59000);
    CHECK_INT(sim_rig_count(p, WA_EV_QR, NULL), 1); /* the first ref lives 60 s */
    sim_rig_advance(&r, 2000);
    CHECK_INT(sim_rig_count(p, WA_EV_QR, NULL), 2); /* the next ones 20 s */
    sim_rig_advance(&r, 20000 * 4);
    CHECK_INT(sim_rig_count(p, WA_EV_QR, NULL), SIM_REFS);
    sim_rig_advance(&r, 20000);
    CHECK_INT(sim_rig_count(p, WA_EV_QR_TIMEOUT, NULL), 1);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_IDLE);
    CHECK(p->conn == NULL);
    sim_rig_advance(&r, 600000);
    CHECK_INT(sim_rig_count(p, WA_EV_QR, NULL), SIM_REFS); /* no reconnect by itself */
    sim_rig_free(&r);
}

static void test_stream_errors(wa_crypto *crypto)
{
    sim_rig r;
    sim_rig_peer *p = rig_init(&r, crypto);
    pair(&r, p);
    char err[160];

    /* 515: reconnect at once */
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "515", err, sizeof(err)), 0);
    sim_rig_advance(&r, 100);
    CHECK(sim_rig_last(p, WA_EV_DISCONNECTED)->code == 515);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);

    /* 503 and other errors: reconnect after a backoff that grows */
    p->nevents = 0;
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "503", err, sizeof(err)), 0);
    sim_rig_pump(&r);
    int64_t first = sim_rig_last(p, WA_EV_DISCONNECTED)->ms;
    CHECK(first >= 1000);
    sim_rig_advance(&r, first + 10);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "503", err, sizeof(err)), 0);
    sim_rig_pump(&r);
    int64_t second = sim_rig_last(p, WA_EV_DISCONNECTED)->ms;
    CHECK(second > first);
    sim_rig_advance(&r, second + 10);

    /* 429: back off much more */
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "429", err, sizeof(err)), 0);
    sim_rig_pump(&r);
    int64_t limited = sim_rig_last(p, WA_EV_DISCONNECTED)->ms;
    CHECK(limited > second * 2);
    sim_rig_advance(&r, limited + 10);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);

    /* a stable connection resets the backoff */
    sim_rig_advance(&r, WA_STABLE_MS + 1000);
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "503", err, sizeof(err)), 0);
    sim_rig_pump(&r);
    CHECK(sim_rig_last(p, WA_EV_DISCONNECTED)->ms <= 2000);
    sim_rig_advance(&r, 5000);

    /* a plain kick (socket closed without a word): reconnect */
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "", err, sizeof(err)), 0);
    sim_rig_advance(&r, 5000);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);

    /* 409 replaced: another client took the device over; do not fight it */
    p->nevents = 0;
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "409", err, sizeof(err)), 0);
    sim_rig_advance(&r, 600000);
    CHECK(sim_rig_last(p, WA_EV_DISCONNECTED)->ms == -1);
    CHECK_INT(sim_rig_count(p, WA_EV_CONNECTED, NULL), 0);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_IDLE);

    /* start again, then 401: logged out, store wiped, no reconnect */
    wa_client_start(p->client, r.now, r.wall);
    sim_rig_advance(&r, 1000);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "401", err, sizeof(err)), 0);
    sim_rig_advance(&r, 600000);
    CHECK_INT(sim_rig_count(p, WA_EV_LOGGED_OUT, NULL), 1);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_LOGGED_OUT);
    wa_device d;
    CHECK_INT(p->store.device_load(p->store.ctx, &d), WA_STORE_OK);
    CHECK(!d.paired); /* a fresh identity, ready for a new pairing */
    sim_rig_free(&r);
}

static void test_login_refused(wa_crypto *crypto)
{
    sim_rig r;
    sim_rig_peer *p = rig_init(&r, crypto);
    pair(&r, p);
    /* the phone removed the device while we were away: the login is refused with 401 */
    sim_rig_close(&r, p);
    wa_client_on_closed(p->client, r.now);
    sim_account *acct = sim_account_find(&r.s, PHONE);
    acct->devices[0].present = false;
    sim_rig_advance(&r, 10000);
    CHECK_INT(sim_rig_count(p, WA_EV_LOGGED_OUT, NULL), 1);
    CHECK_INT(sim_rig_last(p, WA_EV_LOGGED_OUT)->code, 401);
    CHECK(!wa_client_is_paired(p->client));
    sim_rig_free(&r);
}

static void test_killed_during_login(wa_crypto *crypto)
{
    sim_rig r;
    sim_rig_peer *p = rig_init(&r, crypto);
    pair(&r, p);
    /* a restart; the socket dies after the handshake, before <success> */
    char err[160];
    CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "", err, sizeof(err)), 0);
    sim_rig_pump(&r);
    sim_rig_advance(&r, 2000); /* backoff, then the new connection's handshake starts */
    for (int i = 0; i < 50 && wa_client_get_state(p->client) != WA_CLIENT_LOGGING_IN; i++)
        sim_rig_advance(&r, 10);
    if (wa_client_get_state(p->client) == WA_CLIENT_CONNECTED) {
        /* the whole login ran inside one pump: kill the next one at the same point instead */
        CHECK_INT(sim_admin_stream_error(&r.s, PHONE, -1, "", err, sizeof(err)), 0);
        sim_rig_pump(&r);
    }
    sim_rig_close(&r, p);
    wa_client_on_closed(p->client, r.now);
    CHECK(wa_client_get_state(p->client) == WA_CLIENT_BACKOFF);
    sim_rig_advance(&r, 30000);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);
    CHECK(wa_client_is_paired(p->client)); /* nothing lost, no new pairing */
    CHECK_INT(sim_rig_count(p, WA_EV_QR, NULL), 0);
    sim_rig_free(&r);
}

static void test_timeouts(wa_crypto *crypto)
{
    sim_rig r;
    sim_rig_peer *p = rig_init(&r, crypto);
    pair(&r, p);
    /* pings unanswered: the connection is dropped within ping interval + deadline */
    p->server_mute = true;
    sim_rig_advance(&r, WA_PING_MAX_MS + WA_PING_DEADLINE_MS + 100);
    CHECK(sim_rig_count(p, WA_EV_DISCONNECTED, NULL) >= 1);
    CHECK_STR(p->events[0].text, "keepalive ping unanswered");
    /* the server stays silent mid-handshake: 20 s, then retry with backoff */
    p->nevents = 0;
    sim_rig_advance(&r, WA_HANDSHAKE_TIMEOUT_MS + 5000);
    const wa_event *e = sim_rig_last(p, WA_EV_DISCONNECTED);
    CHECK(e && strcmp(e->text, "the server did not answer in time") == 0 && e->ms > 0);
    p->server_mute = false;
    sim_rig_advance(&r, 130000);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);
    sim_rig_free(&r);
}

static void test_wrong_root(wa_crypto *crypto)
{
    sim_rig r;
    sim_rig_peer *p = rig_init(&r, crypto);
    rig_client(&r, p, NULL); /* trusts WhatsApp's real root, not the simulator */
    wa_client_start(p->client, r.now, r.wall);
    sim_rig_advance(&r, 600000);
    const wa_event *e = sim_rig_last(p, WA_EV_ERROR);
    CHECK(e && strstr(e->text, "intermediate certificate signature") != NULL);
    CHECK_INT(sim_rig_count(p, WA_EV_QR, NULL), 0);
    CHECK_INT(sim_rig_count(p, WA_EV_ERROR, NULL), 1); /* a certificate error is not retried */
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_IDLE);
    sim_rig_free(&r);
}

static void test_garbage_from_server(wa_crypto *crypto)
{
    sim_rig r;
    sim_rig_peer *p = rig_init(&r, crypto);
    pair(&r, p);
    /* bytes that are no valid frame: dropped and retried, no crash */
    const uint8_t junk[] = {0,  0,  20, 1,  2,  3,  4,  5,  6,  7,  8, 9,
                            10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    wa_client_on_data(p->client, junk, sizeof(junk), r.now, r.wall);
    sim_rig_pump(&r);
    CHECK(sim_rig_last(p, WA_EV_ERROR) != NULL);
    CHECK(sim_rig_last(p, WA_EV_DISCONNECTED)->ms > 0);
    sim_rig_advance(&r, 10000);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);
    sim_rig_free(&r);
}

static void test_pair_by_code(wa_crypto *crypto)
{
    sim_rig r;
    sim_rig_peer *p = rig_init(&r, crypto);
    p->scan_qr = false;
    p->pair_code = 1;
    rig_client(&r, p, r.s.root.pub);
    CHECK_INT(wa_client_pair_phone(p->client, "15x", r.now), WA_ERR_INVALID);
    wa_client_start(p->client, r.now, r.wall);
    CHECK_INT(wa_client_pair_phone(p->client, PHONE, r.now), WA_OK);
    sim_rig_advance(&r, 5000);
    CHECK_INT(sim_rig_count(p, WA_EV_QR, NULL), 0); /* a code, not QR codes */
    const wa_event *code = sim_rig_last(p, WA_EV_PAIR_CODE);
    CHECK(code && strlen(code->text) == 8 &&
          strspn(code->text, "123456789ABCDEFGHJKLMNPQRSTVWXYZ") == 8);
    CHECK_INT(sim_rig_count(p, WA_EV_PAIR_SUCCESS, NULL), 1);
    CHECK_INT(sim_rig_count(p, WA_EV_READY, NULL), 1);
    CHECK(wa_client_is_paired(p->client));
    CHECK_INT(wa_client_pair_phone(p->client, PHONE, r.now), WA_ERR_STATE); /* already paired */
    sim_rig_free(&r);

    /* a mistyped code: the phone cannot open the bundle, the companion is told and stops */
    p = rig_init(&r, crypto);
    p->scan_qr = false;
    p->pair_code = 2;
    rig_client(&r, p, r.s.root.pub);
    wa_client_start(p->client, r.now, r.wall);
    wa_client_pair_phone(p->client, PHONE, r.now);
    sim_rig_advance(&r, 5000);
    CHECK_INT(sim_rig_count(p, WA_EV_PAIR_SUCCESS, NULL), 0);
    const wa_event *e = sim_rig_last(p, WA_EV_ERROR);
    CHECK(e && strstr(e->text, "refused the pairing code") != NULL);
    CHECK(!wa_client_is_paired(p->client));
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_IDLE);
    CHECK_INT(sim_account_find(&r.s, PHONE)->ndevices, 0);
    sim_rig_free(&r);

    /* a primary_hello that names another pairing ref than the server's answer gave is refused */
    p = rig_init(&r, crypto);
    p->scan_qr = false;
    rig_client(&r, p, r.s.root.pub);
    wa_client_start(p->client, r.now, r.wall);
    wa_client_pair_phone(p->client, PHONE, r.now);
    sim_rig_advance(&r, 1000);
    code = sim_rig_last(p, WA_EV_PAIR_CODE);
    CHECK(code && p->conn && p->conn->lc_hello);
    if (code && p->conn) {
        p->conn->lc_ref[0] = p->conn->lc_ref[0] == 'x' ? 'y' : 'x';
        char err[160];
        CHECK_INT(sim_admin_pair_code(&r.s, PHONE, code->text, err, sizeof(err)), 0);
    }
    sim_rig_advance(&r, 1000);
    e = sim_rig_last(p, WA_EV_ERROR);
    CHECK(e && strstr(e->text, "malformed primary_hello") != NULL);
    CHECK_INT(sim_rig_count(p, WA_EV_PAIR_SUCCESS, NULL), 0);
    CHECK(!wa_client_is_paired(p->client));
    sim_rig_free(&r);
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
    sim_rig_add_checks(&check_passed, &check_failed);
    return CHECK_DONE();
}
