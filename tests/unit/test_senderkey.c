/*
 * tests/unit/test_senderkey.c - wa/senderkey between devices of our own over in-memory stores:
 * a key created and distributed, skmsg read by two members, out of order, duplicates, tampering,
 * garbage, a member without the key, rotation (forget + create: the old key's holder cannot read
 * the new chain, the new SKDM fixes it, old messages stay readable), the record surviving a new
 * wa_senderkey, a rolled-back decrypt, the pruning of skipped keys (bounded record, fast decrypt,
 * too-old messages refused) and Message.senderKeyDistributionMessage built and found.
 * The interop with Baileys' group code is tests/interop/senderkey_interop.mjs.
 */
#include "check.h"
#include "wa/message.h"
#include "wa/senderkey.h"
#include "wa/store_mem.h"

#include <stdlib.h>
#include <time.h>

static wa_crypto *crypto;
static const char GROUP[] = "120363000000000001@g.us";

typedef struct member {
    wa_store store;
    wa_senderkey *sk;
    const char *name; /* Signal address name; device 1 */
} member;

static void member_init(member *m, const char *name)
{
    memset(m, 0, sizeof(*m));
    CHECK_INT(wa_store_mem_new(&m->store), WA_STORE_OK);
    int err = -1;
    m->sk = wa_senderkey_new(crypto, &m->store, &err);
    CHECK(m->sk != NULL);
    CHECK_INT(err, WA_OK);
    m->name = name;
}

static void member_free(member *m)
{
    wa_senderkey_free(m->sk);
    m->store.destroy(m->store.ctx);
}

/* from's current SKDM, processed by to. */
static void distribute(member *from, member *to)
{
    wb_buf skdm;
    wb_buf_init(&skdm);
    CHECK_INT(wa_senderkey_create(from->sk, GROUP, from->name, 1, &skdm), WA_OK);
    CHECK_INT(wa_senderkey_process(to->sk, GROUP, from->name, 1, skdm.data, skdm.len), WA_OK);
    wb_buf_free(&skdm);
}

static void encrypt(member *from, const char *text, wb_buf *ct)
{
    wb_buf_init(ct);
    CHECK_INT(wa_senderkey_encrypt(from->sk, GROUP, from->name, 1, (const uint8_t *)text,
                                   strlen(text), ct),
              WA_OK);
}

/* to decrypts ct from `from` and expects text (or, with want != WA_OK, that error). */
static void expect_decrypt(member *to, member *from, const wb_buf *ct, const char *text, int want)
{
    wb_buf pt;
    wb_buf_init(&pt);
    int rc = wa_senderkey_decrypt(to->sk, GROUP, from->name, 1, ct->data, ct->len, &pt);
    CHECK_INT(rc, want);
    if (want == WA_OK) CHECK(pt.len == strlen(text) && memcmp(pt.data, text, pt.len) == 0);
    wb_buf_free(&pt);
}

static void test_group_conversation(void)
{
    member alice, bob, carol;
    member_init(&alice, "15550000001");
    member_init(&bob, "100000000000002_1");
    member_init(&carol, "15550000003");

    /* no key yet: encrypt is refused, has says no */
    wb_buf ct;
    wb_buf_init(&ct);
    CHECK(!wa_senderkey_has(alice.sk, GROUP, alice.name, 1));
    CHECK_INT(wa_senderkey_encrypt(alice.sk, GROUP, alice.name, 1, (const uint8_t *)"x", 1, &ct),
              WA_ERR_STATE);
    wb_buf_free(&ct);

    /* the SKDM is stable until a message is sent: the same bytes twice */
    wb_buf d1, d2;
    wb_buf_init(&d1);
    wb_buf_init(&d2);
    CHECK_INT(wa_senderkey_create(alice.sk, GROUP, alice.name, 1, &d1), WA_OK);
    CHECK_INT(wa_senderkey_create(alice.sk, GROUP, alice.name, 1, &d2), WA_OK);
    CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0);
    CHECK(d1.len > 40 && d1.data[0] == 0x33); /* version 3 | 3, then the protobuf */
    CHECK(wa_senderkey_has(alice.sk, GROUP, alice.name, 1));
    wb_buf_free(&d1);
    wb_buf_free(&d2);

    distribute(&alice, &bob);
    distribute(&alice, &carol);
    wb_buf m[4];
    const char *texts[4] = {"hello group", "second", "third", "fourth"};
    for (int i = 0; i < 4; i++)
        encrypt(&alice, texts[i], &m[i]);
    CHECK(m[0].data[0] == 0x33);
    /* bob in order, carol out of order */
    for (int i = 0; i < 4; i++)
        expect_decrypt(&bob, &alice, &m[i], texts[i], WA_OK);
    int order[4] = {3, 0, 2, 1};
    for (int k = 0; k < 4; k++)
        expect_decrypt(&carol, &alice, &m[order[k]], texts[order[k]], WA_OK);
    /* duplicates */
    expect_decrypt(&bob, &alice, &m[1], NULL, WA_ERR_STATE);
    expect_decrypt(&carol, &alice, &m[3], NULL, WA_ERR_STATE);
    /* tampered ciphertext and signature, garbage, no key for the sender */
    wb_buf t;
    encrypt(&alice, "tampered", &t);
    t.data[t.len - 70] ^= 1; /* inside the AES ciphertext: the signature fails */
    expect_decrypt(&bob, &alice, &t, NULL, WA_ERR_AUTH);
    t.data[t.len - 70] ^= 1;
    t.data[t.len - 1] ^= 1; /* the signature itself */
    expect_decrypt(&bob, &alice, &t, NULL, WA_ERR_AUTH);
    t.data[t.len - 1] ^= 1;
    expect_decrypt(&bob, &alice, &t, "tampered", WA_OK); /* nothing was advanced by the failures */
    wb_buf garbage;
    wb_buf_init(&garbage);
    wb_buf_append(&garbage, "\x33not a sender key message", 26);
    expect_decrypt(&bob, &alice, &garbage, NULL, WA_ERR_PROTO);
    garbage.len = 1;
    expect_decrypt(&bob, &alice, &garbage, NULL, WA_ERR_PROTO);
    wb_buf_free(&garbage);
    expect_decrypt(&carol, &bob, &t, NULL, WA_ERR_AUTH); /* carol has no key of "bob" */
    CHECK_INT(wa_senderkey_process(bob.sk, GROUP, alice.name, 1, (const uint8_t *)"\x33xx", 3),
              WA_ERR_PROTO);
    wb_buf_free(&t);

    /* bob answers in the group with his own key */
    distribute(&bob, &alice);
    distribute(&bob, &carol);
    wb_buf r;
    encrypt(&bob, "bob here", &r);
    expect_decrypt(&alice, &bob, &r, "bob here", WA_OK);
    expect_decrypt(&carol, &bob, &r, "bob here", WA_OK);
    wb_buf_free(&r);

    /* carol leaves: alice rotates; carol cannot read the new chain, bob can once he has the new
     * SKDM; messages of the old chain stay readable for bob */
    wb_buf old;
    encrypt(&alice, "before carol left", &old);
    CHECK_INT(wa_senderkey_forget(alice.sk, GROUP, alice.name, 1), WA_OK);
    CHECK(!wa_senderkey_has(alice.sk, GROUP, alice.name, 1));
    CHECK_INT(wa_senderkey_forget(alice.sk, GROUP, alice.name, 1), WA_OK); /* twice: fine */
    wb_buf fresh;
    wb_buf_init(&fresh);
    CHECK_INT(wa_senderkey_create(alice.sk, GROUP, alice.name, 1, &fresh), WA_OK);
    wb_buf n1;
    encrypt(&alice, "after carol left", &n1);
    expect_decrypt(&carol, &alice, &n1, NULL, WA_ERR_AUTH);
    expect_decrypt(&bob, &alice, &n1, NULL, WA_ERR_AUTH);
    CHECK_INT(wa_senderkey_process(bob.sk, GROUP, alice.name, 1, fresh.data, fresh.len), WA_OK);
    expect_decrypt(&bob, &alice, &n1, "after carol left", WA_OK);
    expect_decrypt(&bob, &alice, &old, "before carol left", WA_OK);
    expect_decrypt(&carol, &alice, &old, "before carol left", WA_OK);
    wb_buf_free(&fresh);
    wb_buf_free(&n1);
    wb_buf_free(&old);

    /* the key is in the store: a new wa_senderkey over bob's store reads on */
    wa_senderkey_free(bob.sk);
    bob.sk = wa_senderkey_new(crypto, &bob.store, NULL);
    wb_buf later;
    encrypt(&alice, "after a restart", &later);
    expect_decrypt(&bob, &alice, &later, "after a restart", WA_OK);
    wb_buf_free(&later);

    /* a decrypt inside a rolled-back transaction leaves the record as it was */
    wb_buf tx;
    encrypt(&alice, "rolled back", &tx);
    CHECK_INT(bob.store.begin(bob.store.ctx), WA_STORE_OK);
    expect_decrypt(&bob, &alice, &tx, "rolled back", WA_OK);
    CHECK_INT(bob.store.rollback(bob.store.ctx), WA_STORE_OK);
    expect_decrypt(&bob, &alice, &tx, "rolled back", WA_OK);
    expect_decrypt(&bob, &alice, &tx, NULL, WA_ERR_STATE);
    wb_buf_free(&tx);

    /* bad names */
    wb_buf x;
    wb_buf_init(&x);
    CHECK_INT(wa_senderkey_create(alice.sk, "", alice.name, 1, &x), WA_ERR_INVALID);
    CHECK_INT(wa_senderkey_create(alice.sk, GROUP, "", 1, &x), WA_ERR_INVALID);
    wb_buf_free(&x);

    for (int i = 0; i < 4; i++)
        wb_buf_free(&m[i]);
    member_free(&alice);
    member_free(&bob);
    member_free(&carol);
}

/* Number of senderMessageKeys (field 4) in every state of a stored record. */
static size_t stored_keys(member *m, const char *sender)
{
    wb_buf rec;
    wb_buf_init(&rec);
    CHECK_INT(m->store.sender_key_load(m->store.ctx, GROUP, sender, &rec), WA_STORE_OK);
    /* a cap at or above the count leaves the record as it is: the smallest such cap is the count */
    size_t n = 0;
    wb_buf a, b;
    wb_buf_init(&a);
    wb_buf_init(&b);
    CHECK_INT(wa_senderkey_prune_record(rec.data, rec.len, 100000, &a), WA_OK);
    CHECK(a.len == rec.len && memcmp(a.data, rec.data, rec.len) == 0); /* no-op copies exactly */
    for (size_t max = 0; max <= 4096; max++) {
        CHECK_INT(wa_senderkey_prune_record(rec.data, rec.len, max, &b), WA_OK);
        if (b.len == rec.len) {
            n = max;
            break;
        }
    }
    wb_buf_free(&a);
    wb_buf_free(&b);
    wb_buf_free(&rec);
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A sender like Baileys' that skips every other iteration: the receiver keeps one skipped key per
 * message, but never more than WA_SENDERKEY_MAX_SKIPPED, and decrypts stay fast. */
static void test_pruning(void)
{
    member alice, bob;
    member_init(&alice, "15550000001");
    member_init(&bob, "15550000002");
    distribute(&alice, &bob);
    const int rounds = 1200;
    wb_buf first_read;
    wb_buf_init(&first_read);
    double t0 = now_s();
    for (int i = 0; i < rounds; i++) {
        wb_buf skipped, read;
        char text[32];
        snprintf(text, sizeof(text), "n%d", i);
        encrypt(&alice, "never read", &skipped);
        encrypt(&alice, text, &read);
        expect_decrypt(&bob, &alice, &read, text, WA_OK);
        if (i == 0)
            wb_buf_append(&first_read, skipped.data, skipped.len); /* the oldest skipped one */
        wb_buf_free(&skipped);
        wb_buf_free(&read);
    }
    double per_ms = (now_s() - t0) * 1000.0 / rounds;
    size_t kept = stored_keys(&bob, "15550000001:1");
    printf("pruning: %zu skipped keys kept after %d messages, %.3f ms per encrypt+decrypt\n", kept,
           rounds, per_ms);
    CHECK_INT(kept, WA_SENDERKEY_MAX_SKIPPED);
    /* the record stays small (unpruned it would hold 1,200 keys, ~47 KB); the time above is shown,
     * not asserted (machines differ) */
    wb_buf rec;
    wb_buf_init(&rec);
    CHECK_INT(bob.store.sender_key_load(bob.store.ctx, GROUP, "15550000001:1", &rec), WA_STORE_OK);
    printf("pruning: the record holds %zu bytes\n", rec.len);
    CHECK(rec.len < 16 * 1024);
    wb_buf_free(&rec);
    /* the oldest skipped message fell off: refused as too old, not crashed */
    expect_decrypt(&bob, &alice, &first_read, NULL, WA_ERR_STATE);
    wb_buf_free(&first_read);
    /* a recent skipped one is still readable */
    wb_buf a, b;
    encrypt(&alice, "late", &a);
    encrypt(&alice, "now", &b);
    expect_decrypt(&bob, &alice, &b, "now", WA_OK);
    expect_decrypt(&bob, &alice, &a, "late", WA_OK);
    wb_buf_free(&a);
    wb_buf_free(&b);

    /* garbage records are refused by the pruner */
    wb_buf out;
    wb_buf_init(&out);
    CHECK_INT(wa_senderkey_prune_record((const uint8_t *)"\x0a\x05\x22", 3, 1, &out), WA_ERR_PROTO);
    CHECK_INT(wa_senderkey_prune_record((const uint8_t *)"\x0a\x02\x22\x09", 4, 1, &out),
              WA_ERR_PROTO);
    CHECK_INT(wa_senderkey_prune_record(NULL, 0, 1, &out), WA_OK);
    CHECK_INT(out.len, 0);
    wb_buf_free(&out);
    member_free(&alice);
    member_free(&bob);
}

static void test_message_glue(void)
{
    const uint8_t skdm[] = {0x33, 0x08, 0x01, 0x10, 0x00};
    wb_buf m;
    wb_buf_init(&m);
    CHECK_INT(wa_senderkey_message(GROUP, skdm, sizeof(skdm), &m), WA_OK);
    const uint8_t *g = NULL, *s = NULL;
    size_t gl = 0, sl = 0;
    CHECK_INT(wa_senderkey_find(m.data, m.len, &g, &gl, &s, &sl), WA_OK);
    CHECK(gl == strlen(GROUP) && memcmp(g, GROUP, gl) == 0);
    CHECK(sl == sizeof(skdm) && memcmp(s, skdm, sl) == 0);
    /* Message{field 2 = SKDM} in WAProto: 0x12 len 0x0a len group... */
    CHECK(m.data[0] == 0x12 && m.data[2] == 0x0a);
    /* inside a deviceSentMessage, and next to a text */
    wb_buf dsm;
    wb_buf_init(&dsm);
    CHECK_INT(wa_message_device_sent(GROUP, m.data, m.len, &dsm), WA_OK);
    CHECK_INT(wa_senderkey_find(dsm.data, dsm.len, NULL, NULL, &s, &sl), WA_OK);
    CHECK(sl == sizeof(skdm) && memcmp(s, skdm, sl) == 0);
    wb_buf both;
    wb_buf_init(&both);
    CHECK_INT(wa_message_text("hi", 2, &both), WA_OK);
    wb_buf_append(&both, m.data, m.len);
    CHECK_INT(wa_senderkey_find(both.data, both.len, NULL, NULL, &s, &sl), WA_OK);
    /* none, and garbage */
    wb_buf text;
    wb_buf_init(&text);
    CHECK_INT(wa_message_text("hi", 2, &text), WA_OK);
    CHECK_INT(wa_senderkey_find(text.data, text.len, NULL, NULL, &s, &sl), WA_ERR_UNSUPPORTED);
    CHECK_INT(wa_senderkey_find((const uint8_t *)"\x12\x7f", 2, NULL, NULL, &s, &sl), WA_ERR_PROTO);
    CHECK_INT(wa_senderkey_find((const uint8_t *)"\x12\x00", 2, NULL, NULL, &s, &sl),
              WA_ERR_UNSUPPORTED);
    wb_buf_free(&text);
    wb_buf_free(&both);
    wb_buf_free(&dsm);
    wb_buf_free(&m);
}

int main(void)
{
    crypto = wa_crypto_new(NULL, 0);
    test_group_conversation();
    test_pruning();
    test_message_glue();
    wa_crypto_free(crypto);
    return CHECK_DONE();
}
