/*
 * tests/unit/test_recv_group.c - durable receiving of group messages (wa/recv.h,
 * wa_recv_decrypt_sk): the pairwise part is read first whatever the order in the stanza, its SKDM
 * processed for (the stanza's chat, the sending device) and, carrying nothing else, marked
 * skdm_only (not buffered, no plaintext); the skmsg is then decrypted and buffered under its hash;
 * a redelivery is answered from the buffer (the pairwise part is a duplicate, WA_ERR_STATE), and
 * once the bridge deleted the row the skmsg is a duplicate too; a store that fails anywhere keeps
 * neither the sender key nor the plaintext; an skmsg without its key is WA_ERR_AUTH; an SKDM in a
 * 1:1 message plants nothing; content and SKDM in one pairwise part (a retry) are both kept.
 */
#include "signal_peer.h"
#include "wa/message.h"
#include "wa/recv.h"
#include "wa/senderkey.h"

#include <stdlib.h>

#define GROUP   "120363000000000001@g.us"
#define GROUP2  "120363000000000002@g.us"
#define SENDER  "100000000000001:2@lid" /* Signal name 100000000000001_1, device 2 */
#define NAME    "100000000000001_1"
#define CONTENT "\x0a\x05hello" /* Message{conversation: "hello"} */

static wa_node *enc_node(wb_arena *a, const char *type, const wb_buf *ct)
{
    wa_node *enc = wa_node_new(a, "enc");
    wa_node_set_attr(a, enc, "v", "2");
    wa_node_set_attr(a, enc, "type", type);
    wa_node_set_bytes(a, enc, ct->data, ct->len);
    return enc;
}

/* <message from=chat [participant] id t type> with the skmsg first, then the pairwise part. */
static wa_node *stanza(wb_arena *a, const char *chat, const char *participant, const char *id,
                       const wb_buf *skmsg, wa_signal_type type, const wb_buf *pairwise)
{
    wa_node *m = wa_node_new(a, "message");
    wa_node_set_attr(a, m, "from", chat);
    if (participant) wa_node_set_attr(a, m, "participant", participant);
    wa_node_set_attr(a, m, "id", id);
    wa_node_set_attr(a, m, "t", "1795655111");
    wa_node_set_attr(a, m, "type", "text");
    if (skmsg) wa_node_add_child(a, m, enc_node(a, "skmsg", skmsg));
    if (pairwise)
        wa_node_add_child(a, m, enc_node(a, type == WA_SIGNAL_PKMSG ? "pkmsg" : "msg", pairwise));
    return m;
}

/* Alice's SKDM for group as a Message, pairwise-encrypted for bob; *type set. */
static void skdm_for(wa_senderkey *sk, peer *alice, const char *group, const char *extra,
                     size_t extra_len, wb_buf *ct, wa_signal_type *type)
{
    wb_buf skdm, msg;
    wb_buf_init(&skdm);
    wb_buf_init(&msg);
    CHECK_INT(wa_senderkey_create(sk, group, NAME, 2, &skdm), WA_OK);
    if (extra) wb_buf_append(&msg, extra, extra_len);
    CHECK_INT(wa_senderkey_message(group, skdm.data, skdm.len, &msg), WA_OK);
    ct->len = 0;
    CHECK_INT(wa_signal_encrypt(alice->sig, "bob", 1, msg.data, msg.len, ct, type), WA_OK);
    wb_buf_free(&skdm);
    wb_buf_free(&msg);
}

static void hash_of(const wb_buf *b, uint8_t h[32])
{
    wa_sha256(b->data, b->len, h);
}

int main(void)
{
    crypto = wa_crypto_new(NULL, 0);
    peer alice, bob;
    peer_init(&alice, 11);
    peer_init(&bob, 22);
    wa_senderkey *ask = wa_senderkey_new(crypto, &alice.store, NULL);
    wa_senderkey *bsk = wa_senderkey_new(crypto, &bob.store, NULL);
    CHECK(ask && bsk);
    wa_prekey_bundle b = bundle_of(&bob, true);
    CHECK_INT(wa_signal_process_bundle(alice.sig, "bob", 1, &b), WA_OK);
    wb_arena a;
    wb_arena_init(&a, 0);
    wb_buf pw, sk1;
    wb_buf_init(&pw);
    wb_buf_init(&sk1);
    wa_signal_type type;

    /* 1. SKDM pairwise + skmsg: the key first, then the content */
    skdm_for(ask, &alice, GROUP, NULL, 0, &pw, &type);
    CHECK_INT(wa_senderkey_encrypt(ask, GROUP, NAME, 2, (const uint8_t *)CONTENT, 7, &sk1), WA_OK);
    wa_node *m = stanza(&a, GROUP, SENDER, "G1", &sk1, type, &pw);
    wa_received r;
    size_t before = wa_store_mem_count(&bob.store);
    CHECK_INT(wa_recv_decrypt_sk(bob.sig, bsk, &bob.store, m, 1000, &r), WA_OK);
    CHECK_INT(r.nparts, 2);
    uint8_t h[32];
    CHECK(!r.parts[0].skmsg && r.parts[0].skdm_only && r.parts[0].error == WA_OK &&
          r.parts[0].plaintext.len == 0 && r.parts[0].type == WA_SIGNAL_PKMSG);
    hash_of(&pw, h);
    CHECK(memcmp(h, r.parts[0].hash, 32) == 0);
    CHECK(r.parts[1].skmsg && !r.parts[1].skdm_only && r.parts[1].error == WA_OK &&
          !r.parts[1].from_buffer);
    CHECK(r.parts[1].plaintext.len == 7 && memcmp(r.parts[1].plaintext.data, CONTENT, 7) == 0);
    hash_of(&sk1, h);
    CHECK(memcmp(h, r.parts[1].hash, 32) == 0);
    CHECK_STR(r.chat, GROUP);
    CHECK_STR(r.sender, SENDER);
    CHECK(wa_senderkey_has(bsk, GROUP, NAME, 2));
    CHECK(wa_store_mem_count(&bob.store) > before);
    wb_buf plain;
    wb_buf_init(&plain);
    CHECK_INT(bob.store.event_buffer_load(bob.store.ctx, r.parts[1].hash, &plain, NULL),
              WA_STORE_OK);
    CHECK(plain.len == 7);
    plain.len = 0;
    CHECK_INT(bob.store.event_buffer_load(bob.store.ctx, r.parts[0].hash, &plain, NULL),
              WA_STORE_NOT_FOUND); /* the key alone is not buffered */
    wa_received_free(&r);

    /* 2. redelivered: the skmsg from the buffer, the pairwise part a duplicate */
    CHECK_INT(wa_recv_decrypt_sk(bob.sig, bsk, &bob.store, m, 2000, &r), WA_OK);
    CHECK(r.nparts == 2 && r.parts[0].error == WA_ERR_STATE && r.parts[1].error == WA_OK &&
          r.parts[1].from_buffer && r.parts[1].plaintext.len == 7);
    /* the bridge deletes the row; the next copy is a duplicate all through */
    CHECK_INT(bob.store.event_buffer_delete(bob.store.ctx, r.parts[1].hash), WA_STORE_OK);
    wa_received_free(&r);
    CHECK_INT(wa_recv_decrypt_sk(bob.sig, bsk, &bob.store, m, 3000, &r), WA_OK);
    CHECK(r.nparts == 2 && r.parts[0].error == WA_ERR_STATE && r.parts[1].error == WA_ERR_STATE);
    wa_received_free(&r);

    /* 3. a second message on the chain: skmsg only */
    sk1.len = 0;
    CHECK_INT(wa_senderkey_encrypt(ask, GROUP, NAME, 2, (const uint8_t *)"\x0a\x03two", 5, &sk1),
              WA_OK);
    m = stanza(&a, GROUP, SENDER, "G2", &sk1, type, NULL);
    CHECK_INT(wa_recv_decrypt_sk(bob.sig, bsk, &bob.store, m, 4000, &r), WA_OK);
    CHECK(r.nparts == 1 && r.parts[0].skmsg && r.parts[0].error == WA_OK &&
          r.parts[0].plaintext.len == 5);
    wa_received_free(&r);
    /* without sender keys (wa_recv_decrypt) the skmsg is left out */
    CHECK_INT(wa_recv_decrypt(bob.sig, &bob.store, m, 4000, &r), WA_OK);
    CHECK_INT(r.nparts, 0);
    wa_received_free(&r);

    /* 4. the store fails anywhere: neither the key nor the plaintext is kept */
    skdm_for(ask, &alice, GROUP2, NULL, 0, &pw, &type);
    sk1.len = 0;
    CHECK_INT(wa_senderkey_encrypt(ask, GROUP2, NAME, 2, (const uint8_t *)CONTENT, 7, &sk1), WA_OK);
    m = stanza(&a, GROUP2, SENDER, "G3", &sk1, type, &pw);
    size_t mid = wa_store_mem_count(&bob.store);
    int rc = WA_OK, fails_at;
    for (fails_at = 1; fails_at < 80; fails_at++) {
        wa_store_mem_fail_after(&bob.store, fails_at);
        rc = wa_recv_decrypt_sk(bob.sig, bsk, &bob.store, m, 5000, &r);
        wa_store_mem_fail_after(&bob.store, 0);
        if (rc == WA_OK) break;
        CHECK_INT(rc, WA_ERR_STATE);
        CHECK_INT(wa_store_mem_count(&bob.store), mid);
        CHECK(!wa_senderkey_has(bsk, GROUP2, NAME, 2));
    }
    CHECK_INT(rc, WA_OK);
    CHECK(fails_at > 2);
    CHECK(r.nparts == 2 && r.parts[0].skdm_only && r.parts[1].error == WA_OK &&
          r.parts[1].plaintext.len == 7);
    CHECK(wa_senderkey_has(bsk, GROUP2, NAME, 2));
    wa_received_free(&r);

    /* 5. an skmsg of a sender whose key we do not have: ask again */
    wa_senderkey *other = wa_senderkey_new(crypto, &alice.store, NULL);
    sk1.len = 0;
    CHECK_INT(wa_senderkey_create(other, GROUP, "999_1", 3, &plain), WA_OK);
    CHECK_INT(wa_senderkey_encrypt(other, GROUP, "999_1", 3, (const uint8_t *)CONTENT, 7, &sk1),
              WA_OK);
    m = stanza(&a, GROUP, "999:3@lid", "G4", &sk1, type, NULL);
    CHECK_INT(wa_recv_decrypt_sk(bob.sig, bsk, &bob.store, m, 6000, &r), WA_OK);
    CHECK(r.nparts == 1 && r.parts[0].error == WA_ERR_AUTH);
    wa_received_free(&r);
    wa_senderkey_free(other);

    /* 6. an SKDM in a 1:1 message plants no key; content and SKDM in one part keep both */
    peer carol;
    peer_init(&carol, 33);
    b = bundle_of(&bob, true);
    CHECK_INT(wa_signal_process_bundle(carol.sig, "bob", 1, &b), WA_OK);
    wa_senderkey *csk = wa_senderkey_new(crypto, &carol.store, NULL);
    wb_buf skdm, msg;
    wb_buf_init(&skdm);
    wb_buf_init(&msg);
    CHECK_INT(wa_senderkey_create(csk, GROUP, "15557777777", 0, &skdm), WA_OK);
    CHECK_INT(wa_senderkey_message(GROUP, skdm.data, skdm.len, &msg), WA_OK);
    pw.len = 0;
    CHECK_INT(wa_signal_encrypt(carol.sig, "bob", 1, msg.data, msg.len, &pw, &type), WA_OK);
    m = stanza(&a, "15557777777@s.whatsapp.net", NULL, "D1", NULL, type, &pw);
    CHECK_INT(wa_recv_decrypt_sk(bob.sig, bsk, &bob.store, m, 7000, &r), WA_OK);
    CHECK(r.nparts == 1 && r.parts[0].error == WA_OK && !r.parts[0].skdm_only);
    CHECK(!wa_senderkey_has(bsk, GROUP, "15557777777", 0));
    CHECK(!wa_senderkey_has(bsk, "15557777777@s.whatsapp.net", "15557777777", 0));
    wa_received_free(&r);
    /* the retry shape: the content and the key pairwise, in the group */
    msg.len = 0;
    wb_buf_append(&msg, CONTENT, 7);
    CHECK_INT(wa_senderkey_message(GROUP, skdm.data, skdm.len, &msg), WA_OK);
    pw.len = 0;
    CHECK_INT(wa_signal_encrypt(carol.sig, "bob", 1, msg.data, msg.len, &pw, &type), WA_OK);
    m = stanza(&a, GROUP, "15557777777@s.whatsapp.net", "G5", NULL, type, &pw);
    CHECK_INT(wa_recv_decrypt_sk(bob.sig, bsk, &bob.store, m, 8000, &r), WA_OK);
    CHECK(r.nparts == 1 && r.parts[0].error == WA_OK && !r.parts[0].skdm_only &&
          r.parts[0].plaintext.len == msg.len);
    CHECK(wa_senderkey_has(bsk, GROUP, "15557777777", 0));
    wa_msg parsed;
    CHECK_INT(wa_message_parse(r.parts[0].plaintext.data, r.parts[0].plaintext.len, &parsed),
              WA_OK);
    CHECK(parsed.kind == WA_MSG_TEXT && parsed.text && strcmp(parsed.text, "hello") == 0);
    wa_msg_free(&parsed);
    wa_received_free(&r);

    wb_buf_free(&skdm);
    wb_buf_free(&msg);
    wb_buf_free(&plain);
    wb_buf_free(&pw);
    wb_buf_free(&sk1);
    wb_arena_free(&a);
    wa_senderkey_free(csk);
    wa_senderkey_free(ask);
    wa_senderkey_free(bsk);
    peer_free(&carol);
    peer_free(&alice);
    peer_free(&bob);
    wa_crypto_free(crypto);
    return CHECK_DONE();
}
