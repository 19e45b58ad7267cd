/*
 * tests/unit/test_recv.c - durable receiving (wa/recv): a <message> with pkmsg then msg parts is
 * decrypted and its plaintext buffered in the same store transaction; a redelivered stanza is
 * answered from the buffer (decrypting twice would fail); a store that cannot commit leaves
 * neither the plaintext nor the advanced session, so the redelivery decrypts again; unreadable
 * parts are reported per part; bad stanzas are refused; receipts and acks are addressed right.
 */
#include "signal_peer.h"
#include "wa/recv.h"

#include <stdlib.h>

/* <message from=from id t type><enc v=2 type>ct</enc></message> */
static wa_node *stanza(wb_arena *a, const char *from, const char *id, wa_signal_type type,
                       const wb_buf *ct)
{
    wa_node *m = wa_node_new(a, "message");
    wa_node_set_attr(a, m, "from", from);
    wa_node_set_attr(a, m, "id", id);
    wa_node_set_attr(a, m, "t", "1795655111");
    wa_node_set_attr(a, m, "type", "text");
    wa_node_set_attr(a, m, "notify", "Alice");
    wa_node *enc = wa_node_new(a, "enc");
    wa_node_set_attr(a, enc, "v", "2");
    wa_node_set_attr(a, enc, "type", type == WA_SIGNAL_PKMSG ? "pkmsg" : "msg");
    wa_node_set_bytes(a, enc, ct->data, ct->len);
    wa_node_add_child(a, m, enc);
    return m;
}

static size_t buffered(peer *p)
{
    return wa_store_mem_count(&p->store);
}

int main(void)
{
    crypto = wa_crypto_new(NULL, 0);
    peer alice, bob;
    peer_init(&alice, 11);
    peer_init(&bob, 22);
    /* alice is 15551234567:3 on the PN server: Signal name "15551234567", device 3 */
    wa_jid aj;
    char name[64];
    uint32_t dev;
    wa_jid_parse_cstr("15551234567:3@s.whatsapp.net", &aj);
    CHECK_INT(wa_signal_address(&aj, name, sizeof(name), &dev), WA_OK);
    CHECK_STR(name, "15551234567");
    CHECK_INT(dev, 3);
    wa_jid_parse_cstr("100000000000001:2@lid", &aj);
    CHECK_INT(wa_signal_address(&aj, name, sizeof(name), &dev), WA_OK);
    CHECK_STR(name, "100000000000001_1");
    wa_jid_parse_cstr("120363@g.us", &aj);
    CHECK_INT(wa_signal_address(&aj, name, sizeof(name), &dev), WA_ERR_BAD_JID);

    wa_prekey_bundle b = bundle_of(&bob, true);
    CHECK_INT(wa_signal_process_bundle(alice.sig, "bob", 1, &b), WA_OK);
    wb_arena a;
    wb_arena_init(&a, 0);
    wb_buf ct;
    wb_buf_init(&ct);
    wa_signal_type type;
    const char *text = "\x0a\x05hello"; /* Message{conversation: "hello"} */
    CHECK_INT(wa_signal_encrypt(alice.sig, "bob", 1, (const uint8_t *)text, 7, &ct, &type), WA_OK);

    wa_node *m = stanza(&a, "15551234567:3@s.whatsapp.net", "ID1", type, &ct);
    wa_received r;
    size_t before = buffered(&bob);
    CHECK_INT(wa_recv_decrypt(bob.sig, &bob.store, m, 1000, &r), WA_OK);
    CHECK_INT(r.nparts, 1);
    CHECK(r.parts[0].error == WA_OK && !r.parts[0].from_buffer &&
          r.parts[0].type == WA_SIGNAL_PKMSG);
    CHECK(r.parts[0].plaintext.len == 7 && memcmp(r.parts[0].plaintext.data, text, 7) == 0);
    CHECK_STR(r.id, "ID1");
    CHECK_STR(r.sender, "15551234567:3@s.whatsapp.net");
    CHECK_STR(r.notify, "Alice");
    CHECK(r.t == 1795655111);
    CHECK(buffered(&bob) > before); /* the plaintext row (and the session) are stored */
    wa_received_free(&r);

    /* the server redelivers the same stanza: answered from the buffer */
    CHECK_INT(wa_recv_decrypt(bob.sig, &bob.store, m, 2000, &r), WA_OK);
    CHECK(r.nparts == 1 && r.parts[0].error == WA_OK && r.parts[0].from_buffer);
    CHECK(r.parts[0].plaintext.len == 7 && memcmp(r.parts[0].plaintext.data, text, 7) == 0);
    wa_received_free(&r);

    /* the store fails on commit: nothing is kept, and the redelivery decrypts from scratch */
    ct.len = 0;
    CHECK_INT(wa_signal_encrypt(alice.sig, "bob", 1, (const uint8_t *)"\x0a\x03two", 5, &ct, &type),
              WA_OK);
    wa_node *m2 = stanza(&a, "15551234567:3@s.whatsapp.net", "ID2", type, &ct);
    size_t mid = buffered(&bob);
    int fails_at = 0;
    int rc = WA_OK;
    /* make each store call fail in turn until the whole step succeeds: never half-written */
    for (fails_at = 1; fails_at < 40; fails_at++) {
        wa_store_mem_fail_after(&bob.store, fails_at);
        rc = wa_recv_decrypt(bob.sig, &bob.store, m2, 3000, &r);
        wa_store_mem_fail_after(&bob.store, 0);
        if (rc == WA_OK) break;
        CHECK_INT(rc, WA_ERR_STATE);
        CHECK_INT(buffered(&bob), mid);
    }
    CHECK_INT(rc, WA_OK);
    CHECK(fails_at > 1); /* at least one failure was injected and survived */
    CHECK(r.nparts == 1 && r.parts[0].error == WA_OK && !r.parts[0].from_buffer);
    CHECK(r.parts[0].plaintext.len == 5 &&
          memcmp(r.parts[0].plaintext.data, "\x0a\x03two", 5) == 0);
    wa_received_free(&r);

    /* an unreadable part is reported, the stanza is still committed (for a retry receipt) */
    ct.len = 0;
    wa_signal_encrypt(alice.sig, "bob", 1, (const uint8_t *)"\x0a\x01x", 3, &ct, &type);
    ct.data[ct.len - 12] ^= 1;
    wa_node *m3 = stanza(&a, "15551234567:3@s.whatsapp.net", "ID3", type, &ct);
    CHECK_INT(wa_recv_decrypt(bob.sig, &bob.store, m3, 4000, &r), WA_OK);
    CHECK(r.nparts == 1 && r.parts[0].error == WA_ERR_AUTH);
    wa_received_free(&r);

    /* stanzas we cannot use */
    wa_node *bad = wa_node_new(&a, "message");
    wa_node_set_attr(&a, bad, "from", "120363@g.us");
    wa_node_set_attr(&a, bad, "id", "X");
    CHECK_INT(wa_recv_decrypt(bob.sig, &bob.store, bad, 0, &r), WA_ERR_INVALID);
    wa_node *noid = wa_node_new(&a, "message");
    wa_node_set_attr(&a, noid, "from", "1@s.whatsapp.net");
    CHECK_INT(wa_recv_decrypt(bob.sig, &bob.store, noid, 0, &r), WA_ERR_INVALID);

    /* answers */
    wa_node *rec = wa_recv_receipt(&a, m);
    CHECK_STR(rec->tag, "receipt");
    CHECK_STR(wa_node_attr(rec, "id"), "ID1");
    CHECK_STR(wa_node_attr(rec, "to"), "15551234567:3@s.whatsapp.net");
    wa_node *ack = wa_recv_ack(&a, m);
    CHECK_STR(wa_node_attr(ack, "class"), "message");

    wb_buf_free(&ct);
    wb_arena_free(&a);
    peer_free(&alice);
    peer_free(&bob);
    wa_crypto_free(crypto);
    return CHECK_DONE();
}
