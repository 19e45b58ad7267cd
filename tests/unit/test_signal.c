/*
 * tests/unit/test_signal.c - wa/signal between two of our own devices over in-memory stores:
 * a session from a bundle (with and without a one-time prekey), pkmsg then msg both ways,
 * out-of-order and duplicate messages, a forged signed prekey, tampered ciphertexts, padding, the
 * one-time prekey consumed, and the session surviving a new wa_signal on the same store; sessions
 * kept by LID when the LID <-> phone number map knows it (one kept by phone number moves).
 * The interop with libsignal from npm is tests/interop/signal_interop.mjs.
 */
#include "check.h"
#include "signal_peer.h"
#include "wa/signal.h"
#include "wa/store_mem.h"

#include <signal/protocol.h>
#include <signal/ratchet.h>
#include <signal/session_record.h>
#include <signal/session_state.h>
#include <signal/signal_protocol.h>
#include <stdlib.h>

/* from encrypts text for to; to decrypts; returns the type used. */
static wa_signal_type send_text(peer *from, const char *from_name, peer *to, const char *to_name,
                                const char *text)
{
    wb_buf ct, pt;
    wb_buf_init(&ct);
    wb_buf_init(&pt);
    wa_signal_type type = WA_SIGNAL_MSG;
    CHECK_INT(
        wa_signal_encrypt(from->sig, to_name, 1, (const uint8_t *)text, strlen(text), &ct, &type),
        WA_OK);
    CHECK_INT(wa_signal_decrypt(to->sig, from_name, 1, type, ct.data, ct.len, &pt), WA_OK);
    CHECK(pt.len == strlen(text) && memcmp(pt.data, text, pt.len) == 0);
    wb_buf_free(&ct);
    wb_buf_free(&pt);
    return type;
}

static void test_conversation(bool with_prekey)
{
    peer alice, bob;
    peer_init(&alice, 1111);
    peer_init(&bob, 2222);
    wa_prekey_bundle b = bundle_of(&bob, with_prekey);
    CHECK(!wa_signal_has_session(alice.sig, "bob", 1));
    CHECK_INT(wa_signal_process_bundle(alice.sig, "bob", 1, &b), WA_OK);
    CHECK(wa_signal_has_session(alice.sig, "bob", 1));
    /* until bob answers, alice's messages carry the prekey setup */
    CHECK_INT(send_text(&alice, "alice", &bob, "bob", "hello bob"), WA_SIGNAL_PKMSG);
    CHECK_INT(send_text(&alice, "alice", &bob, "bob", "still there?"), WA_SIGNAL_PKMSG);
    CHECK_INT(send_text(&bob, "bob", &alice, "alice", "hi alice"), WA_SIGNAL_MSG);
    CHECK_INT(send_text(&alice, "alice", &bob, "bob", "good"), WA_SIGNAL_MSG);
    if (with_prekey) {
        wa_prekey pk;
        CHECK_INT(bob.store.prekey_load(bob.store.ctx, 100, &pk), WA_STORE_NOT_FOUND); /* used */
    }

    /* out of order, then a duplicate */
    wb_buf c[3], pt;
    wa_signal_type t[3];
    wb_buf_init(&pt);
    const char *texts[3] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++) {
        wb_buf_init(&c[i]);
        CHECK_INT(wa_signal_encrypt(bob.sig, "alice", 1, (const uint8_t *)texts[i],
                                    strlen(texts[i]), &c[i], &t[i]),
                  WA_OK);
    }
    int order[3] = {2, 0, 1};
    for (int k = 0; k < 3; k++) {
        int i = order[k];
        CHECK_INT(wa_signal_decrypt(alice.sig, "bob", 1, t[i], c[i].data, c[i].len, &pt), WA_OK);
        CHECK(pt.len == strlen(texts[i]) && memcmp(pt.data, texts[i], pt.len) == 0);
    }
    CHECK_INT(wa_signal_decrypt(alice.sig, "bob", 1, t[0], c[0].data, c[0].len, &pt), WA_ERR_STATE);
    /* tampered: a flipped byte fails the MAC (and the session is not advanced); garbage is not a
     * message */
    wb_buf_free(&c[1]);
    wb_buf_init(&c[1]);
    CHECK_INT(wa_signal_encrypt(bob.sig, "alice", 1, (const uint8_t *)"four", 4, &c[1], &t[1]),
              WA_OK);
    c[1].data[c[1].len - 12] ^= 1; /* inside the AES ciphertext */
    CHECK_INT(wa_signal_decrypt(alice.sig, "bob", 1, t[1], c[1].data, c[1].len, &pt), WA_ERR_AUTH);
    c[1].data[c[1].len - 12] ^= 1; /* inside the AES ciphertext */
    CHECK_INT(wa_signal_decrypt(alice.sig, "bob", 1, t[1], c[1].data, c[1].len, &pt), WA_OK);
    CHECK_INT(
        wa_signal_decrypt(alice.sig, "bob", 1, WA_SIGNAL_MSG, (const uint8_t *)"\x33xx", 3, &pt),
        WA_ERR_PROTO);
    for (int i = 0; i < 3; i++)
        wb_buf_free(&c[i]);

    /* the session is in the store: a new wa_signal (a restart) goes on with it */
    wa_signal_free(alice.sig);
    alice.sig = wa_signal_new(crypto, &alice.store, NULL);
    CHECK_INT(send_text(&alice, "alice", &bob, "bob", "after a restart"), WA_SIGNAL_MSG);
    CHECK_INT(send_text(&bob, "bob", &alice, "alice", "welcome back"), WA_SIGNAL_MSG);

    /* big messages */
    size_t big = 64 * 1024;
    char *text = malloc(big + 1);
    memset(text, 'x', big);
    text[big] = 0;
    send_text(&alice, "alice", &bob, "bob", text);
    free(text);
    wb_buf_free(&pt);
    peer_free(&alice);
    peer_free(&bob);
}

/* One session per device whichever JID names it: a session made by phone number before the LID
 * was known moves to the LID key when the map learns it (asked by LID or by phone number); with
 * the map known, a new session is kept by LID at once; forgetting the user clears both. */
static void test_lid_keys(void)
{
    peer alice, bob, carol;
    peer_init(&alice, 1111);
    peer_init(&bob, 2222);
    peer_init(&carol, 3333);
    wa_store *st = &alice.store;
    wa_prekey_bundle b = bundle_of(&bob, true);
    CHECK_INT(wa_signal_process_bundle(alice.sig, "15550000002", 1, &b), WA_OK);
    CHECK_INT(send_text(&alice, "alice", &bob, "15550000002", "by phone number"), WA_SIGNAL_PKMSG);
    CHECK_INT(send_text(&bob, "15550000002", &alice, "alice", "answer"), WA_SIGNAL_MSG);
    CHECK(!wa_signal_has_session(alice.sig, "100000000000002_1", 1)); /* the map is empty */
    wb_buf rec;
    wb_buf_init(&rec);
    uint8_t ik[WA_KEY_LEN];
    CHECK_INT(st->session_load(st->ctx, "15550000002:1", &rec), WA_STORE_OK);
    /* the map learns Bob's LID: asked by LID, the session moves and goes on */
    CHECK_INT(st->lid_map_save(st->ctx, "100000000000002@lid", "15550000002@s.whatsapp.net"),
              WA_STORE_OK);
    wa_signal_lids_changed(alice.sig, "15550000002");
    CHECK_INT(send_text(&bob, "100000000000002_1", &alice, "alice", "by LID now"), WA_SIGNAL_MSG);
    CHECK_INT(st->session_load(st->ctx, "15550000002:1", &rec), WA_STORE_NOT_FOUND);
    CHECK_INT(st->identity_load(st->ctx, "15550000002:1", ik), WA_STORE_NOT_FOUND);
    CHECK_INT(st->session_load(st->ctx, "100000000000002_1:1", &rec), WA_STORE_OK);
    CHECK_INT(st->identity_load(st->ctx, "100000000000002_1:1", ik), WA_STORE_OK);
    CHECK(memcmp(ik, bob.dev.identity.pub, WA_KEY_LEN) == 0);
    /* by phone number it is the same session, both ways */
    CHECK(wa_signal_has_session(alice.sig, "15550000002", 1));
    CHECK_INT(send_text(&alice, "alice", &bob, "15550000002", "same session"), WA_SIGNAL_MSG);
    CHECK_INT(send_text(&bob, "15550000002", &alice, "alice", "indeed"), WA_SIGNAL_MSG);
    CHECK_INT(st->session_load(st->ctx, "15550000002:1", &rec), WA_STORE_NOT_FOUND);

    /* the map known first: a session by phone number is kept by LID at once; the old way
     * (asked by phone number) moves a session kept under the phone number too */
    CHECK_INT(st->lid_map_save(st->ctx, "100000000000003@lid", "15550000003@s.whatsapp.net"),
              WA_STORE_OK);
    wa_signal_lids_changed(alice.sig, NULL);
    b = bundle_of(&carol, true);
    CHECK_INT(wa_signal_process_bundle(alice.sig, "15550000003", 1, &b), WA_OK);
    CHECK_INT(st->session_load(st->ctx, "15550000003:1", &rec), WA_STORE_NOT_FOUND);
    CHECK_INT(st->session_load(st->ctx, "100000000000003_1:1", &rec), WA_STORE_OK);
    CHECK_INT(send_text(&alice, "alice", &carol, "15550000003", "hello Carol"), WA_SIGNAL_PKMSG);
    CHECK_INT(send_text(&carol, "100000000000003_1", &alice, "alice", "hi"), WA_SIGNAL_MSG);

    /* forgetting Bob by phone number clears his LID keys */
    CHECK_INT(wa_signal_forget_user(alice.sig, "15550000002"), WA_OK);
    CHECK(!wa_signal_has_session(alice.sig, "100000000000002_1", 1));
    CHECK_INT(st->identity_load(st->ctx, "100000000000002_1:1", ik), WA_STORE_NOT_FOUND);
    CHECK(wa_signal_has_session(alice.sig, "100000000000003_1", 1));
    wb_buf_free(&rec);
    peer_free(&alice);
    peer_free(&bob);
    peer_free(&carol);
}

static void test_forged_bundle(void)
{
    peer alice, bob;
    peer_init(&alice, 1);
    peer_init(&bob, 2);
    wa_prekey_bundle b = bundle_of(&bob, true);
    b.signature[10] ^= 1;
    CHECK_INT(wa_signal_process_bundle(alice.sig, "bob", 1, &b), WA_ERR_AUTH);
    CHECK(!wa_signal_has_session(alice.sig, "bob", 1));
    wb_buf ct;
    wb_buf_init(&ct);
    wa_signal_type type;
    CHECK_INT(wa_signal_encrypt(alice.sig, "bob", 1, (const uint8_t *)"x", 1, &ct, &type),
              WA_ERR_STATE);
    wb_buf_free(&ct);
    peer_free(&alice);
    peer_free(&bob);
}

static void test_padding(void)
{
    for (int i = 0; i < 200; i++) {
        wb_buf b;
        wb_buf_init(&b);
        CHECK_INT(wa_signal_pad(crypto, (const uint8_t *)"abc", 3, &b), WA_OK);
        uint8_t pad = b.data[b.len - 1];
        CHECK(pad >= 1 && pad <= 15 && b.len == 3u + pad);
        for (size_t k = 3; k < b.len; k++)
            CHECK(b.data[k] == pad);
        CHECK_INT(wa_signal_unpadded_len(b.data, b.len), 3);
        wb_buf_free(&b);
    }
    CHECK_INT(wa_signal_unpadded_len((const uint8_t *)"", 0), -1);
    CHECK_INT(wa_signal_unpadded_len((const uint8_t *)"ab\x00", 3), -1);
    CHECK_INT(wa_signal_unpadded_len((const uint8_t *)"ab\x05", 3), -1);
    CHECK_INT(wa_signal_unpadded_len((const uint8_t *)"ab\x01", 3), 2);
}

/* Where the sending chain of the session the store holds for addr resumes after a restart: the
 * resume index stored with it ("WBR1" + 4 bytes big endian), else its record's chain index; -1. */
static long stored_chain_index(peer *p, const char *addr)
{
    wb_buf b;
    wb_buf_init(&b);
    long idx = -1;
    session_record *r = NULL;
    if (p->store.session_load(p->store.ctx, addr, &b) == WA_STORE_OK && b.len >= 8 &&
        memcmp(b.data, "WBR1", 4) == 0) {
        idx = (long)((uint32_t)b.data[4] << 24 | (uint32_t)b.data[5] << 16 |
                     (uint32_t)b.data[6] << 8 | b.data[7]);
    } else if (b.len &&
               session_record_deserialize(&r, b.data, b.len, wa_crypto_signal(crypto)) == 0 && r) {
        session_state *st = session_record_get_state(r);
        if (st && session_state_has_sender_chain(st))
            idx = (long)ratchet_chain_key_get_index(session_state_get_sender_chain_key(st));
        SIGNAL_UNREF(r);
    }
    wb_buf_free(&b);
    return idx;
}

/* The record the store holds for addr (caller frees). */
static wb_buf stored_record(peer *p, const char *addr)
{
    wb_buf b;
    wb_buf_init(&b);
    p->store.session_load(p->store.ctx, addr, &b);
    return b;
}

static bool same_buf(const wb_buf *a, const wb_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* alice encrypts text for bob (a msg), bob decrypts it; returns its counter (-1 on failure). */
static long send_counted(peer *alice, peer *bob, const char *text)
{
    wb_buf ct, pt;
    wb_buf_init(&ct);
    wb_buf_init(&pt);
    wa_signal_type type = WA_SIGNAL_PKMSG;
    long counter = -1;
    signal_message *m = NULL;
    if (wa_signal_encrypt(alice->sig, "bob", 1, (const uint8_t *)text, strlen(text), &ct, &type) ==
            WA_OK &&
        type == WA_SIGNAL_MSG &&
        signal_message_deserialize(&m, ct.data, ct.len, wa_crypto_signal(crypto)) == 0 && m) {
        counter = (long)signal_message_get_counter(m);
        SIGNAL_UNREF(m);
    }
    CHECK_INT(wa_signal_decrypt(bob->sig, "alice", 1, type, ct.data, ct.len, &pt), WA_OK);
    CHECK(pt.len == strlen(text) && memcmp(pt.data, text, pt.len) == 0);
    wb_buf_free(&ct);
    wb_buf_free(&pt);
    return counter;
}

/* bob sends text to alice: alice's stored record of bob changes at once, with its sending chain
 * 64 keys ahead (a new chain: index 0 + the reserve). */
static void receive_written(peer *alice, peer *bob, const char *text)
{
    wb_buf before = stored_record(alice, "bob:1");
    send_text(bob, "bob", alice, "alice", text);
    wb_buf now = stored_record(alice, "bob:1");
    CHECK(!same_buf(&before, &now));
    CHECK_INT(stored_chain_index(alice, "bob:1"), 64);
    wb_buf_free(&now);
    wb_buf_free(&before);
}

/* Sending without a write per message: the stored record's sending chain is 64 keys ahead of the
 * one in use, and stays as it is while sends stay within that; anything else that changes the
 * record is written at once; after a restart, or once the store's epoch moved (a rollback), the
 * session goes on from the stored record: keys are skipped, never used twice, and the receiver
 * reads on; a change of the LID map stores the kept records as they are (no gap). */
static void test_reserve(void)
{
    peer alice, bob;
    peer_init(&alice, 1111);
    peer_init(&bob, 2222);
    wa_prekey_bundle b = bundle_of(&bob, true);
    CHECK_INT(wa_signal_process_bundle(alice.sig, "bob", 1, &b), WA_OK);
    send_text(&alice, "alice", &bob, "bob", "hello");
    send_text(&bob, "bob", &alice, "alice", "hi"); /* a ratchet step: a new chain, written */
    CHECK_INT(stored_chain_index(&alice, "bob:1"), 64);
    wb_buf first = stored_record(&alice, "bob:1");
    for (long i = 0; i < 64; i++) {
        char t[16];
        snprintf(t, sizeof(t), "m%ld", i);
        CHECK_INT(send_counted(&alice, &bob, t), i); /* one after the other, no gap */
    }
    wb_buf now = stored_record(&alice, "bob:1");
    CHECK(same_buf(&first, &now)); /* 64 messages, not one write */
    wb_buf_free(&now);
    /* the 65th key is past the reserve: written again, 64 ahead */
    CHECK_INT(send_counted(&alice, &bob, "m64"), 64);
    CHECK_INT(stored_chain_index(&alice, "bob:1"), 65 + 64);
    /* a crash: the kept record is gone, the stored one goes on past every key used */
    wa_signal_forget_kept(alice.sig);
    wa_signal_free(alice.sig);
    alice.sig = wa_signal_new(crypto, &alice.store, NULL);
    long c1 = send_counted(&alice, &bob, "after a crash");
    CHECK_INT(c1, 65 + 64);
    CHECK_INT(stored_chain_index(&alice, "bob:1"), c1 + 1 + 64);
    /* a clean restart: what was kept is stored as it is, and the chain goes on without a gap */
    CHECK_INT(send_counted(&alice, &bob, "before a restart"), c1 + 1);
    wa_signal_free(alice.sig);
    CHECK_INT(stored_chain_index(&alice, "bob:1"), c1 + 2);
    alice.sig = wa_signal_new(crypto, &alice.store, NULL);
    CHECK_INT(send_counted(&alice, &bob, "after a restart"), c1 + 2);
    /* a receive changes the record: written at once (a ratchet step: a new chain, 64 ahead) */
    receive_written(&alice, &bob, "back");
    /* a second message on bob's chain changes only alice's receiving chain: written too, with
     * the same reserve */
    receive_written(&alice, &bob, "and again");
    /* a rollback moves the store's epoch: what was kept is let go, the stored record goes on */
    CHECK_INT(send_counted(&alice, &bob, "n0"), 0);
    CHECK_INT(send_counted(&alice, &bob, "n1"), 1);
    CHECK_INT(alice.store.begin(alice.store.ctx), WA_STORE_OK);
    CHECK_INT(alice.store.rollback(alice.store.ctx), WA_STORE_OK);
    CHECK_INT(send_counted(&alice, &bob, "n after a rollback"), 64);
    CHECK_INT(send_counted(&alice, &bob, "n next"), 65);
    /* the LID map changes (the keys of kept sessions may name other rows now): those kept under
     * the user's phone-number keys (all of them, for any user) are stored as they are, and go on
     * without a gap; another user's change leaves them kept */
    wa_signal_lids_changed(alice.sig, "bo");
    CHECK_INT(stored_chain_index(&alice, "bob:1"), 65 + 64); /* as the rollback left it */
    wa_signal_lids_changed(alice.sig, "bob");
    CHECK_INT(stored_chain_index(&alice, "bob:1"), 66);
    CHECK_INT(send_counted(&alice, &bob, "after a map change"), 66);
    wa_signal_lids_changed(alice.sig, NULL);
    CHECK_INT(stored_chain_index(&alice, "bob:1"), 67);
    CHECK_INT(send_counted(&alice, &bob, "after any map change"), 67);
    /* more sessions than are kept (32): the oldest is let go stored as it is, so it resumes
     * where it was, without a gap */
    peer many[33];
    for (int i = 0; i < 33; i++) {
        char name[16];
        snprintf(name, sizeof(name), "m%d", i);
        peer_init(&many[i], 3000 + (uint32_t)i);
        wa_prekey_bundle mb = bundle_of(&many[i], false);
        CHECK_INT(wa_signal_process_bundle(alice.sig, name, 1, &mb), WA_OK);
        wb_buf ct;
        wb_buf_init(&ct);
        wa_signal_type t;
        CHECK_INT(wa_signal_encrypt(alice.sig, name, 1, (const uint8_t *)"x", 1, &ct, &t), WA_OK);
        wb_buf_free(&ct);
    }
    CHECK_INT(stored_chain_index(&alice, "m1:1"), 64); /* still kept: resumes ahead */
    CHECK_INT(stored_chain_index(&alice, "m0:1"), 1);  /* let go: resumes where it was */
    for (int i = 0; i < 33; i++)
        peer_free(&many[i]);
    /* the session deleted: gone from memory too */
    CHECK_INT(wa_signal_forget_user(alice.sig, "bob"), WA_OK);
    CHECK(!wa_signal_has_session(alice.sig, "bob", 1));
    wb_buf_free(&first);
    peer_free(&alice);
    peer_free(&bob);
}

int main(void)
{
    crypto = wa_crypto_new(NULL, 0);
    test_conversation(true);
    test_conversation(false);
    test_forged_bundle();
    test_padding();
    test_lid_keys();
    test_reserve();
    wa_crypto_free(crypto);
    return CHECK_DONE();
}
