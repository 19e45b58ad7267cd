/*
 * tests/unit/test_noise.c - the crypto primitives, the Noise handshake between our initiator and
 * our responder, the transport cipher, the frame reader, and every way a certificate chain must be
 * rejected. The byte-for-byte comparison with Baileys is test_noise_vectors.c.
 */
#include "check.h"
#include "wa/noise.h"

#include <stdlib.h>

static wa_crypto *crypto;

static void test_primitives(void)
{
    /* RFC 7748 section 6.1: Alice and Bob */
    uint8_t a_priv[32], b_pub[32], shared_want[32];
    size_t n;
    wb_hex_decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", 64, a_priv,
                  32, &n);
    wb_hex_decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", 64, b_pub, 32,
                  &n);
    wb_hex_decode("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", 64,
                  shared_want, 32, &n);
    uint8_t shared[32];
    CHECK_INT(wa_x25519(crypto, a_priv, b_pub, shared), WA_OK);
    CHECK(memcmp(shared, shared_want, 32) == 0);
    wa_keypair a;
    CHECK_INT(wa_keypair_from_private(crypto, a_priv, &a), WA_OK);
    char hex[65];
    wb_hex_encode(a.pub, 32, hex);
    CHECK_STR(hex, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    uint8_t zero[32] = {0};
    CHECK_INT(wa_x25519(crypto, a_priv, zero, shared), WA_ERR_CRYPTO); /* low order */

    /* XEdDSA: sign, verify, tamper */
    wa_keypair k;
    CHECK_INT(wa_keypair_generate(crypto, &k), WA_OK);
    uint8_t sig[64];
    const uint8_t msg[] = "WhatsAppLongTerm1";
    CHECK_INT(wa_xeddsa_sign(crypto, k.priv, msg, sizeof(msg), sig), WA_OK);
    CHECK(wa_xeddsa_verify(crypto, k.pub, msg, sizeof(msg), sig));
    sig[5] ^= 1;
    CHECK(!wa_xeddsa_verify(crypto, k.pub, msg, sizeof(msg), sig));
    sig[5] ^= 1;
    CHECK(!wa_xeddsa_verify(crypto, a.pub, msg, sizeof(msg), sig));
    CHECK(!wa_xeddsa_verify(crypto, k.pub, msg, sizeof(msg) - 1, sig));

    /* HKDF: RFC 5869 test case 1 */
    uint8_t ikm[22], salt[13], info[10], okm[42];
    memset(ikm, 0x0b, sizeof(ikm));
    for (int i = 0; i < 13; i++)
        salt[i] = (uint8_t)i;
    for (int i = 0; i < 10; i++)
        info[i] = (uint8_t)(0xf0 + i);
    CHECK_INT(wa_hkdf_sha256(ikm, 22, salt, 13, info, 10, okm, 42), WA_OK);
    char okm_hex[85];
    wb_hex_encode(okm, 42, okm_hex);
    CHECK_STR(okm_hex, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                       "34007208d5b887185865");

    /* AES-GCM: round trip, bad tag, bad AD */
    uint8_t key[32] = {1}, iv[12] = {2}, pt[40], ct[56], back[40];
    memset(pt, 0x42, sizeof(pt));
    CHECK_INT(wa_aes_gcm_encrypt(key, iv, 12, (const uint8_t *)"ad", 2, pt, 40, ct), WA_OK);
    CHECK_INT(wa_aes_gcm_decrypt(key, iv, 12, (const uint8_t *)"ad", 2, ct, 56, back), WA_OK);
    CHECK(memcmp(back, pt, 40) == 0);
    CHECK_INT(wa_aes_gcm_decrypt(key, iv, 12, (const uint8_t *)"ax", 2, ct, 56, back), WA_ERR_AUTH);
    ct[55] ^= 0x80;
    CHECK_INT(wa_aes_gcm_decrypt(key, iv, 12, (const uint8_t *)"ad", 2, ct, 56, back), WA_ERR_AUTH);
    CHECK_INT(wa_aes_gcm_decrypt(key, iv, 12, NULL, 0, ct, 10, back), WA_ERR_TRUNCATED);

    /* seeded randomness is reproducible, kernel randomness is not */
    wa_crypto *s1 = wa_crypto_new((const uint8_t *)"seed", 4);
    wa_crypto *s2 = wa_crypto_new((const uint8_t *)"seed", 4);
    uint8_t r1[100], r2[100];
    wa_random(s1, r1, 100);
    wa_random(s2, r2, 50);
    wa_random(s2, r2 + 50, 50);
    CHECK(memcmp(r1, r2, 100) == 0);
    wa_random(crypto, r1, 32);
    wa_random(crypto, r2, 32);
    CHECK(memcmp(r1, r2, 32) != 0);
    wa_crypto_free(s1);
    wa_crypto_free(s2);
}

typedef struct server_keys {
    wa_keypair root, intermediate, server_static;
    wb_buf chain;
} server_keys;

static void make_server(server_keys *sk, const wa_cert_params *params)
{
    wa_keypair_generate(crypto, &sk->root);
    wa_keypair_generate(crypto, &sk->intermediate);
    wa_keypair_generate(crypto, &sk->server_static);
    wb_buf_init(&sk->chain);
    CHECK_INT(wa_cert_chain_build(crypto, &sk->root, &sk->intermediate, sk->server_static.pub,
                                  params, &sk->chain),
              WA_OK);
}

static const wa_cert_params default_params = {
    .intermediate_serial = 7, .leaf_serial = 99, .not_before = 1700000000, .not_after = 2000000000};

/* Runs a handshake; returns the initiator's result. Fills both sides when all goes well. */
static int handshake(server_keys *sk, const wa_cert_policy *policy, wa_noise *client,
                     wa_noise *server, wa_keypair *noise_key, wa_errinfo *ei)
{
    wb_buf c2s, s2c, payload;
    wb_buf_init(&c2s);
    wb_buf_init(&s2c);
    wb_buf_init(&payload);
    wa_keypair_generate(crypto, noise_key);
    wa_noise_init(client, crypto, WA_NOISE_INITIATOR, NULL);
    wa_noise_init(server, crypto, WA_NOISE_RESPONDER, NULL);
    CHECK_INT(wa_noise_client_hello(client, &c2s), WA_OK);

    wa_frame_reader sr, cr;
    wa_frame_reader_init(&sr, true, 0);
    wa_frame_reader_init(&cr, false, 0);
    const uint8_t *f;
    size_t flen;
    /* deliver the client's bytes one at a time: framing must cope */
    int got = 0;
    for (size_t i = 0; i < c2s.len && got == 0; i++) {
        wa_frame_reader_push(&sr, c2s.data + i, 1);
        got = wa_frame_reader_next(&sr, &f, &flen, ei);
    }
    CHECK_INT(got, 1);
    CHECK_INT(wa_noise_server_hello(server, f, flen, &sk->server_static, sk->chain.data,
                                    sk->chain.len, &s2c, ei),
              WA_OK);
    wa_frame_reader_push(&cr, s2c.data, s2c.len);
    CHECK_INT(wa_frame_reader_next(&cr, &f, &flen, ei), 1);
    c2s.len = 0;
    const uint8_t client_payload[] = "a ClientPayload";
    int rc = wa_noise_client_finish(client, f, flen, policy, noise_key, client_payload,
                                    sizeof(client_payload), &c2s, ei);
    if (rc == WA_OK) {
        wa_frame_reader_push(&sr, c2s.data, c2s.len);
        CHECK_INT(wa_frame_reader_next(&sr, &f, &flen, ei), 1);
        uint8_t client_static[32];
        CHECK_INT(wa_noise_server_finish(server, f, flen, client_static, &payload, ei), WA_OK);
        CHECK(memcmp(client_static, noise_key->pub, 32) == 0);
        CHECK(payload.len == sizeof(client_payload) &&
              memcmp(payload.data, client_payload, payload.len) == 0);
    }
    wa_frame_reader_free(&sr);
    wa_frame_reader_free(&cr);
    wb_buf_free(&c2s);
    wb_buf_free(&s2c);
    wb_buf_free(&payload);
    return rc;
}

static void test_handshake_and_transport(void)
{
    server_keys sk;
    make_server(&sk, &default_params);
    wa_cert_policy policy = {.now = 1800000000};
    memcpy(policy.root, sk.root.pub, 32);
    wa_noise client, server;
    wa_keypair noise_key;
    wa_errinfo ei;
    CHECK_INT(handshake(&sk, &policy, &client, &server, &noise_key, &ei), WA_OK);
    CHECK_INT(client.state, WA_NOISE_TRANSPORT);
    CHECK_INT(server.state, WA_NOISE_TRANSPORT);
    CHECK(memcmp(client.send_key, server.recv_key, 32) == 0);
    CHECK(memcmp(client.recv_key, server.send_key, 32) == 0);
    CHECK(memcmp(client.send_key, client.recv_key, 32) != 0);

    /* several frames each way, packed into one buffer and read back in order */
    wb_buf wire, plain;
    wb_buf_init(&wire);
    wb_buf_init(&plain);
    for (int i = 0; i < 5; i++) {
        char msg[32];
        snprintf(msg, sizeof(msg), "frame %d", i);
        CHECK_INT(wa_noise_send(&server, (const uint8_t *)msg, strlen(msg), &wire), WA_OK);
    }
    wa_frame_reader r;
    wa_frame_reader_init(&r, false, 0);
    wa_frame_reader_push(&r, wire.data, wire.len);
    const uint8_t *f;
    size_t flen;
    for (int i = 0; i < 5; i++) {
        char want[32];
        snprintf(want, sizeof(want), "frame %d", i);
        CHECK_INT(wa_frame_reader_next(&r, &f, &flen, &ei), 1);
        CHECK_INT(wa_noise_recv(&client, f, flen, &plain), WA_OK);
        CHECK(plain.len == strlen(want) && memcmp(plain.data, want, plain.len) == 0);
    }
    CHECK_INT(wa_frame_reader_next(&r, &f, &flen, &ei), 0);
    wa_frame_reader_free(&r);

    /* a replayed or tampered frame fails and the state is then unusable */
    wire.len = 0;
    wa_noise_send(&client, (const uint8_t *)"hello", 5, &wire);
    uint8_t copy[64];
    memcpy(copy, wire.data, wire.len);
    CHECK_INT(wa_noise_recv(&server, wire.data + 3, wire.len - 3, &plain), WA_OK);
    CHECK_INT(wa_noise_recv(&server, copy + 3, wire.len - 3, &plain), WA_ERR_AUTH); /* replay */
    CHECK_INT(server.state, WA_NOISE_FAILED);
    CHECK_INT(wa_noise_send(&server, (const uint8_t *)"x", 1, &wire), WA_ERR_STATE);

    wb_buf_free(&wire);
    wb_buf_free(&plain);
    wa_noise_clear(&client);
    wa_noise_clear(&server);
    wb_buf_free(&sk.chain);
}

static void expect_cert_failure(server_keys *sk, const wa_cert_policy *policy, const char *reason)
{
    wa_noise client, server;
    wa_keypair noise_key;
    wa_errinfo ei = {0};
    int rc = handshake(sk, policy, &client, &server, &noise_key, &ei);
    CHECK_INT(rc, WA_ERR_CERT);
    if (!strstr(ei.message, reason))
        fprintf(stderr, "want a reason with \"%s\", got \"%s\"\n", reason, ei.message);
    CHECK(strstr(ei.message, reason) != NULL);
    CHECK_INT(client.state, WA_NOISE_FAILED);
    wa_noise_clear(&client);
    wa_noise_clear(&server);
}

static void test_cert_rejections(void)
{
    server_keys sk;
    make_server(&sk, &default_params);
    wa_cert_policy policy = {.now = 1800000000};
    memcpy(policy.root, sk.root.pub, 32);

    /* the real WhatsApp root does not vouch for the simulator's chain */
    wa_cert_policy real = {.now = 1800000000};
    memcpy(real.root, wa_noise_whatsapp_root, 32);
    expect_cert_failure(&sk, &real, "intermediate certificate signature");

    /* expired, and not yet valid */
    wa_cert_policy late = policy, early = policy;
    late.now = 2000000001;
    early.now = 1600000000;
    expect_cert_failure(&sk, &late, "not valid now");
    expect_cert_failure(&sk, &early, "not valid now");

    /* a leaf key that is not the server's static key */
    wa_keypair other;
    wa_keypair_generate(crypto, &other);
    sk.chain.len = 0;
    wa_cert_chain_build(crypto, &sk.root, &sk.intermediate, other.pub, &default_params, &sk.chain);
    expect_cert_failure(&sk, &policy, "leaf key");

    /* a leaf signed by another key than the intermediate's */
    sk.chain.len = 0;
    wa_keypair rogue;
    wa_keypair_generate(crypto, &rogue);
    {
        wb_buf a, b;
        wb_buf_init(&a);
        wb_buf_init(&b);
        /* intermediate from the real chain, leaf from a chain whose intermediate is rogue */
        wa_cert_chain_build(crypto, &sk.root, &sk.intermediate, sk.server_static.pub,
                            &default_params, &a);
        wa_cert_chain_build(crypto, &sk.root, &rogue, sk.server_static.pub, &default_params, &b);
        /* CertChain: field 1 leaf, field 2 intermediate, each length-prefixed (< 128 bytes) */
        CHECK(a.data[0] == 0x0a && b.data[0] == 0x0a);
        size_t leaf_b = 2 + b.data[1];
        size_t leaf_a = 2 + a.data[1];
        wb_buf_append(&sk.chain, b.data, leaf_b);                  /* rogue-signed leaf */
        wb_buf_append(&sk.chain, a.data + leaf_a, a.len - leaf_a); /* genuine intermediate */
        wb_buf_free(&a);
        wb_buf_free(&b);
    }
    expect_cert_failure(&sk, &policy, "leaf certificate signature");

    /* wrong issuer serial */
    wa_cert_params bad_serial = default_params;
    sk.chain.len = 0;
    wa_cert_chain_build(crypto, &sk.root, &sk.intermediate, sk.server_static.pub, &bad_serial,
                        &sk.chain);
    /* rebuild the leaf with an issuer serial that is not the intermediate's */
    {
        wa_cert_params p2 = default_params;
        p2.intermediate_serial = 8; /* leaf says issuer 8, intermediate (from p1) is 7 */
        wb_buf a, b;
        wb_buf_init(&a);
        wb_buf_init(&b);
        wa_cert_chain_build(crypto, &sk.root, &sk.intermediate, sk.server_static.pub,
                            &default_params, &a);
        wa_cert_chain_build(crypto, &sk.root, &sk.intermediate, sk.server_static.pub, &p2, &b);
        sk.chain.len = 0;
        size_t leaf_b = 2 + b.data[1];
        size_t leaf_a = 2 + a.data[1];
        wb_buf_append(&sk.chain, b.data, leaf_b);
        wb_buf_append(&sk.chain, a.data + leaf_a, a.len - leaf_a);
        wb_buf_free(&a);
        wb_buf_free(&b);
    }
    expect_cert_failure(&sk, &policy, "issuer serial");

    /* garbage instead of a chain */
    sk.chain.len = 0;
    wb_buf_append(&sk.chain, "\xff\xff\xff", 3);
    expect_cert_failure(&sk, &policy, "malformed");
    wb_buf_free(&sk.chain);
}

static void test_frame_reader(void)
{
    wa_errinfo ei;
    const uint8_t *f;
    size_t flen;
    wa_frame_reader r;

    /* routing info before the intro, then an empty frame and a 3-byte frame */
    wa_frame_reader_init(&r, true, 0);
    const uint8_t stream[] = {'E', 'D', 0, 1, 0, 0, 2, 0xaa, 0xbb, 'W', 'A',
                              6,   3,   0, 0, 0, 0, 0, 3,    1,    2,   3};
    wa_frame_reader_push(&r, stream, sizeof(stream));
    CHECK_INT(wa_frame_reader_next(&r, &f, &flen, &ei), 1);
    CHECK_INT(flen, 0);
    CHECK_INT(wa_frame_reader_next(&r, &f, &flen, &ei), 1);
    CHECK(flen == 3 && f[2] == 3);
    CHECK_INT(wa_frame_reader_next(&r, &f, &flen, &ei), 0);
    wa_frame_reader_free(&r);

    /* a wrong intro, another dictionary version */
    wa_frame_reader_init(&r, true, 0);
    wa_frame_reader_push(&r, (const uint8_t *)"GET / HTTP/1.1", 14);
    CHECK_INT(wa_frame_reader_next(&r, &f, &flen, &ei), WA_ERR_BAD_TAG);
    CHECK_INT(wa_frame_reader_push(&r, (const uint8_t *)"x", 1), WA_ERR_STATE);
    wa_frame_reader_free(&r);
    wa_frame_reader_init(&r, true, 0);
    wa_frame_reader_push(&r, (const uint8_t *)"WA\x06\x02", 4);
    CHECK_INT(wa_frame_reader_next(&r, &f, &flen, &ei), WA_ERR_UNSUPPORTED);
    wa_frame_reader_free(&r);

    /* an oversized frame is refused from its length alone */
    wa_frame_reader_init(&r, false, 1024);
    wa_frame_reader_push(&r, (const uint8_t *)"\x00\x04\x01", 3);
    CHECK_INT(wa_frame_reader_next(&r, &f, &flen, &ei), WA_ERR_TOO_LARGE);
    wa_frame_reader_free(&r);

    /* many frames through one reader: memory stays bounded */
    wa_frame_reader_init(&r, false, 0);
    uint8_t frame[1003] = {0, 0x03, 0xe8};
    for (int i = 0; i < 2000; i++) {
        wa_frame_reader_push(&r, frame, sizeof(frame));
        CHECK(wa_frame_reader_next(&r, &f, &flen, &ei) == 1 && flen == 1000);
    }
    CHECK(r.buf.cap < 8192);
    wa_frame_reader_free(&r);
}

static void test_bad_handshake_input(void)
{
    wa_noise ns;
    wa_errinfo ei;
    wb_buf out;
    wb_buf_init(&out);
    wa_cert_policy policy = {0};
    wa_keypair nk;
    wa_keypair_generate(crypto, &nk);
    /* responder: garbage, an empty message, a short ephemeral */
    wa_noise_init(&ns, crypto, WA_NOISE_RESPONDER, NULL);
    CHECK_INT(wa_noise_server_hello(&ns, (const uint8_t *)"\xff\xff", 2, &nk, NULL, 0, &out, &ei),
              WA_ERR_PROTO);
    wa_noise_init(&ns, crypto, WA_NOISE_RESPONDER, NULL);
    CHECK_INT(wa_noise_server_hello(&ns, NULL, 0, &nk, NULL, 0, &out, &ei), WA_ERR_PROTO);
    /* initiator: serverHello before clientHello, then a serverHello with a corrupt static */
    wa_noise_init(&ns, crypto, WA_NOISE_INITIATOR, NULL);
    CHECK_INT(wa_noise_client_finish(&ns, NULL, 0, &policy, &nk, NULL, 0, &out, &ei), WA_ERR_STATE);
    server_keys sk;
    make_server(&sk, &default_params);
    wa_noise server;
    wa_noise_init(&server, crypto, WA_NOISE_RESPONDER, NULL);
    wb_buf hello, sh;
    wb_buf_init(&hello);
    wb_buf_init(&sh);
    wa_noise_client_hello(&ns, &hello);
    wa_noise_server_hello(&server, hello.data + 7, hello.len - 7, &sk.server_static, sk.chain.data,
                          sk.chain.len, &sh, &ei);
    sh.data[3 + 2 + 2 + 32 + 2 + 5] ^= 1; /* inside the encrypted static key */
    int rc = wa_noise_client_finish(&ns, sh.data + 3, sh.len - 3, &policy, &nk, NULL, 0, &out, &ei);
    CHECK(rc == WA_ERR_AUTH || rc == WA_ERR_PROTO);
    CHECK_INT(ns.state, WA_NOISE_FAILED);
    wb_buf_free(&hello);
    wb_buf_free(&sh);
    wb_buf_free(&sk.chain);
    wb_buf_free(&out);
}

int main(void)
{
    crypto = wa_crypto_new(NULL, 0);
    CHECK(crypto != NULL);
    test_primitives();
    test_handshake_and_transport();
    test_cert_rejections();
    test_frame_reader();
    test_bad_handshake_input();
    wa_crypto_free(crypto);
    return CHECK_DONE();
}
