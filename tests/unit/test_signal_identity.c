/*
 * tests/unit/test_signal_identity.c - identity keys in wa/signal: trust on first use, a peer that
 * re-registers (same address, new identity) is accepted from its pkmsg and from its bundle, its
 * old session is dropped first, wa_signal_take_identity_change says so once; a pkmsg with a new
 * identity that cannot be read puts the old session and identity back; wa_signal_forget_user
 * drops every device of a user (not a user whose name merely starts the same).
 */
#include "check.h"
#include "signal_peer.h"

#include <stdlib.h>

/* from encrypts text for (to_name, 1); to decrypts it as from_name; returns the decrypt result. */
static int deliver(peer *from, const char *to_name, peer *to, const char *from_name,
                   const char *text, wa_signal_type *type_out)
{
    wb_buf ct, pt;
    wb_buf_init(&ct);
    wb_buf_init(&pt);
    wa_signal_type type = WA_SIGNAL_MSG;
    CHECK_INT(
        wa_signal_encrypt(from->sig, to_name, 1, (const uint8_t *)text, strlen(text), &ct, &type),
        WA_OK);
    int rc = wa_signal_decrypt(to->sig, from_name, 1, type, ct.data, ct.len, &pt);
    if (rc == WA_OK) CHECK(pt.len == strlen(text) && memcmp(pt.data, text, pt.len) == 0);
    if (type_out) *type_out = type;
    wb_buf_free(&ct);
    wb_buf_free(&pt);
    return rc;
}

static bool stored_identity(peer *p, const char *address, const uint8_t key[32])
{
    uint8_t got[32];
    return p->store.identity_load(p->store.ctx, address, got) == WA_STORE_OK &&
           memcmp(got, key, 32) == 0;
}

static void test_reregister_pkmsg(void)
{
    peer alice, bob, bob2;
    peer_init(&alice, 1111);
    peer_init(&bob, 2222);
    /* first use: bob's pkmsg is trusted and no change is reported */
    wa_prekey_bundle b = bundle_of(&alice, true);
    CHECK_INT(wa_signal_process_bundle(bob.sig, "alice", 1, &b), WA_OK);
    CHECK(!wa_signal_take_identity_change(bob.sig));
    CHECK_INT(deliver(&bob, "alice", &alice, "bob", "hello", NULL), WA_OK);
    CHECK(!wa_signal_take_identity_change(alice.sig));
    CHECK(stored_identity(&alice, "bob:1", bob.dev.identity.pub));
    CHECK_INT(deliver(&alice, "bob", &bob, "alice", "hi", NULL), WA_OK);

    /* bob re-registers: a new identity under the same address; his first pkmsg is read, the
     * change reported once, the new key stored, the old session gone (alice answers on the new
     * one, which bob can read) */
    peer_init(&bob2, 3333);
    b = bundle_of(&alice, true);
    CHECK_INT(wa_signal_process_bundle(bob2.sig, "alice", 1, &b), WA_OK);
    wa_signal_type t;
    CHECK_INT(deliver(&bob2, "alice", &alice, "bob", "new phone, who dis", &t), WA_OK);
    CHECK_INT(t, WA_SIGNAL_PKMSG);
    CHECK(wa_signal_take_identity_change(alice.sig));
    CHECK(!wa_signal_take_identity_change(alice.sig));
    CHECK(stored_identity(&alice, "bob:1", bob2.dev.identity.pub));
    CHECK_INT(deliver(&alice, "bob", &bob2, "alice", "welcome back", NULL), WA_OK);
    CHECK_INT(deliver(&bob2, "alice", &alice, "bob", "thanks", &t), WA_OK);
    CHECK_INT(t, WA_SIGNAL_MSG);
    CHECK(!wa_signal_take_identity_change(alice.sig));
    /* the old bob's messages no longer decrypt: his session went with his key */
    CHECK(deliver(&bob, "alice", &alice, "bob", "stale", NULL) != WA_OK);
    peer_free(&alice);
    peer_free(&bob);
    peer_free(&bob2);
}

static void test_bad_pkmsg_restores(void)
{
    peer alice, bob, mallory;
    peer_init(&alice, 1111);
    peer_init(&bob, 2222);
    peer_init(&mallory, 4444);
    wa_prekey_bundle b = bundle_of(&alice, true);
    CHECK_INT(wa_signal_process_bundle(bob.sig, "alice", 1, &b), WA_OK);
    CHECK_INT(deliver(&bob, "alice", &alice, "bob", "hello", NULL), WA_OK);
    CHECK_INT(deliver(&alice, "bob", &bob, "alice", "hi", NULL), WA_OK);
    /* a pkmsg under bob's address with another identity and a prekey alice no longer has:
     * unreadable,
     * and bob's session and identity stay as they were */
    b = bundle_of(&alice, true);
    CHECK_INT(wa_signal_process_bundle(mallory.sig, "alice", 1, &b), WA_OK);
    CHECK_INT(alice.store.prekey_delete(alice.store.ctx, b.prekey_id), WA_STORE_OK);
    wb_buf ct, pt;
    wb_buf_init(&ct);
    wb_buf_init(&pt);
    wa_signal_type type;
    CHECK_INT(wa_signal_encrypt(mallory.sig, "alice", 1, (const uint8_t *)"x", 1, &ct, &type),
              WA_OK);
    CHECK_INT(type, WA_SIGNAL_PKMSG);
    CHECK(wa_signal_decrypt(alice.sig, "bob", 1, type, ct.data, ct.len, &pt) != WA_OK);
    CHECK(!wa_signal_take_identity_change(alice.sig));
    CHECK(stored_identity(&alice, "bob:1", bob.dev.identity.pub));
    CHECK(wa_signal_has_session(alice.sig, "bob", 1));
    CHECK_INT(deliver(&bob, "alice", &alice, "bob", "still me", NULL), WA_OK);
    CHECK_INT(deliver(&alice, "bob", &bob, "alice", "good", NULL), WA_OK);
    wb_buf_free(&ct);
    wb_buf_free(&pt);
    peer_free(&alice);
    peer_free(&bob);
    peer_free(&mallory);
}

static void test_reregister_bundle(void)
{
    peer alice, bob, bob2;
    peer_init(&alice, 1111);
    peer_init(&bob, 2222);
    peer_init(&bob2, 3333);
    wa_prekey_bundle b = bundle_of(&bob, true);
    CHECK_INT(wa_signal_process_bundle(alice.sig, "bob", 1, &b), WA_OK);
    CHECK(!wa_signal_take_identity_change(alice.sig));
    CHECK_INT(deliver(&alice, "bob", &bob, "alice", "hello", NULL), WA_OK);
    /* the same key again (keys asked for anew): no change */
    b = bundle_of(&bob, true);
    CHECK_INT(wa_signal_process_bundle(alice.sig, "bob", 1, &b), WA_OK);
    CHECK(!wa_signal_take_identity_change(alice.sig));
    /* a bundle with another identity for that address: accepted, reported, a fresh session */
    b = bundle_of(&bob2, true);
    CHECK_INT(wa_signal_process_bundle(alice.sig, "bob", 1, &b), WA_OK);
    CHECK(wa_signal_take_identity_change(alice.sig));
    CHECK(stored_identity(&alice, "bob:1", bob2.dev.identity.pub));
    wa_signal_type t;
    CHECK_INT(deliver(&alice, "bob", &bob2, "alice", "for the new bob", &t), WA_OK);
    CHECK_INT(t, WA_SIGNAL_PKMSG);
    /* a forged bundle (bad signature) with yet another identity: refused, nothing changes */
    peer eve;
    peer_init(&eve, 5555);
    b = bundle_of(&eve, true);
    b.signature[5] ^= 1;
    CHECK_INT(wa_signal_process_bundle(alice.sig, "bob", 1, &b), WA_ERR_AUTH);
    CHECK(!wa_signal_take_identity_change(alice.sig));
    CHECK(stored_identity(&alice, "bob:1", bob2.dev.identity.pub));
    CHECK_INT(deliver(&alice, "bob", &bob2, "alice", "still for the new bob", NULL), WA_OK);
    peer_free(&alice);
    peer_free(&bob);
    peer_free(&bob2);
    peer_free(&eve);
}

static void test_forget_user(void)
{
    peer alice, bob;
    peer_init(&alice, 1111);
    peer_init(&bob, 2222);
    const char *names[] = {"1555", "1555", "15551"};
    uint32_t devices[] = {1, 7, 1};
    for (int i = 0; i < 3; i++) {
        wa_prekey_bundle b = bundle_of(&bob, true);
        CHECK_INT(wa_signal_process_bundle(alice.sig, names[i], devices[i], &b), WA_OK);
    }
    CHECK_INT(wa_signal_forget_user(alice.sig, "1555"), WA_OK);
    CHECK(!wa_signal_has_session(alice.sig, "1555", 1));
    CHECK(!wa_signal_has_session(alice.sig, "1555", 7));
    CHECK(wa_signal_has_session(alice.sig, "15551", 1));
    uint8_t key[32];
    CHECK_INT(alice.store.identity_load(alice.store.ctx, "1555:7", key), WA_STORE_NOT_FOUND);
    CHECK_INT(alice.store.identity_load(alice.store.ctx, "15551:1", key), WA_STORE_OK);
    /* a new key after forgetting is a first use, not a change */
    peer bob2;
    peer_init(&bob2, 3333);
    wa_prekey_bundle b = bundle_of(&bob2, true);
    CHECK_INT(wa_signal_process_bundle(alice.sig, "1555", 1, &b), WA_OK);
    CHECK(!wa_signal_take_identity_change(alice.sig));
    CHECK_INT(wa_signal_forget_user(alice.sig, ""), WA_ERR_INVALID);
    peer_free(&alice);
    peer_free(&bob);
    peer_free(&bob2);
}

int main(void)
{
    crypto = wa_crypto_new(NULL, 0);
    test_reregister_pkmsg();
    test_bad_pkmsg_restores();
    test_reregister_bundle();
    test_forget_user();
    wa_crypto_free(crypto);
    return CHECK_DONE();
}
