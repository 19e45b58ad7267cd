/*
 * tests/unit/test_noise_vectors.c - our Noise initiator and responder against the handshake in
 * tests/vectors/noise/handshake.json, whose client bytes Baileys 7.0.0-rc14 produced with the same
 * fixed keys (tests/interop/gen_noise_vectors.mjs). Every byte on the wire must be equal.
 *   test_noise_vectors <tests/vectors/noise/handshake.json>
 */
#include "check.h"
#include "vector_json.h"
#include "wa/noise.h"

#include <stdlib.h>

static cJSON *vec;

/* The field as bytes; aborts the test on a missing field. */
static uint8_t *field(const char *name, size_t *len)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(vec, name);
    if (!cJSON_IsString(f)) {
        fprintf(stderr, "vector field %s missing\n", name);
        exit(1);
    }
    size_t hl = strlen(f->valuestring);
    uint8_t *out = malloc(hl / 2 + 1);
    if (!wb_hex_decode(f->valuestring, hl, out, hl / 2, len)) exit(1);
    return out;
}

static void key_from(wa_crypto *c, const char *name, wa_keypair *kp)
{
    size_t n;
    uint8_t *priv = field(name, &n);
    CHECK_INT(n, 32);
    CHECK_INT(wa_keypair_from_private(c, priv, kp), WA_OK);
    free(priv);
}

static void expect_bytes(const char *name, const wb_buf *got)
{
    size_t n;
    uint8_t *want = field(name, &n);
    bool same = n == got->len && memcmp(want, got->data, n) == 0;
    if (!same) fprintf(stderr, "%s differs from Baileys (%zu vs %zu bytes)\n", name, got->len, n);
    CHECK(same);
    free(want);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    char *text = vj_read_file(argv[1], NULL);
    vec = text ? cJSON_Parse(text) : NULL;
    CHECK(vec != NULL);
    if (!vec) return CHECK_DONE();
    wa_crypto *c = wa_crypto_new(NULL, 0);
    wa_keypair ce, nk, se, ss;
    key_from(c, "client_ephemeral_priv", &ce);
    key_from(c, "noise_key_priv", &nk);
    key_from(c, "server_ephemeral_priv", &se);
    key_from(c, "server_static_priv", &ss);
    size_t n, chain_len, payload_len, root_len;
    uint8_t *chain = field("cert_chain", &chain_len);
    uint8_t *payload = field("client_payload", &payload_len);
    uint8_t *root = field("root_pub", &root_len);
    wa_cert_policy policy = {.now = (uint64_t)cJSON_GetObjectItem(vec, "now")->valuedouble};
    memcpy(policy.root, root, 32);

    wa_noise client, server;
    wa_errinfo ei;
    wb_buf wire, plain;
    wb_buf_init(&wire);
    wb_buf_init(&plain);
    CHECK_INT(wa_noise_init(&client, c, WA_NOISE_INITIATOR, &ce), WA_OK);
    CHECK_INT(wa_noise_init(&server, c, WA_NOISE_RESPONDER, &se), WA_OK);

    /* -> clientHello (with the intro) */
    CHECK_INT(wa_noise_client_hello(&client, &wire), WA_OK);
    expect_bytes("client_hello_wire", &wire);

    /* <- serverHello: our responder, same keys and chain, same bytes */
    wb_buf sh;
    wb_buf_init(&sh);
    CHECK_INT(wa_noise_server_hello(&server, wire.data + 7, wire.len - 7, &ss, chain, chain_len,
                                    &sh, &ei),
              WA_OK);
    wb_buf sh_payload = {.data = sh.data + 3, .len = sh.len - 3};
    expect_bytes("server_hello", &sh_payload);

    /* -> clientFinish from the vector's serverHello: Baileys' bytes exactly */
    uint8_t *server_hello = field("server_hello", &n);
    wire.len = 0;
    int rc = wa_noise_client_finish(&client, server_hello, n, &policy, &nk, payload, payload_len,
                                    &wire, &ei);
    if (rc != WA_OK) fprintf(stderr, "client_finish: %s\n", ei.message);
    CHECK_INT(rc, WA_OK);
    expect_bytes("client_finish_wire", &wire);

    /* our responder reads Baileys' clientFinish */
    uint8_t client_static[32];
    size_t fin_len;
    uint8_t *fin = field("client_finish_wire", &fin_len);
    CHECK_INT(wa_noise_server_finish(&server, fin + 3, fin_len - 3, client_static, &plain, &ei),
              WA_OK);
    CHECK(memcmp(client_static, nk.pub, 32) == 0);
    CHECK(plain.len == payload_len && memcmp(plain.data, payload, payload_len) == 0);

    /* transport, both ways */
    size_t cp_len, sp_len, sw_len;
    uint8_t *client_plain = field("client_plain", &cp_len);
    uint8_t *server_plain = field("server_plain", &sp_len);
    uint8_t *server_wire = field("server_transport_wire", &sw_len);
    wire.len = 0;
    CHECK_INT(wa_noise_send(&client, client_plain, cp_len, &wire), WA_OK);
    expect_bytes("client_transport_wire", &wire);
    CHECK_INT(wa_noise_recv(&server, wire.data + 3, wire.len - 3, &plain), WA_OK);
    CHECK(plain.len == cp_len && memcmp(plain.data, client_plain, cp_len) == 0);
    wire.len = 0;
    CHECK_INT(wa_noise_send(&server, server_plain, sp_len, &wire), WA_OK);
    expect_bytes("server_transport_wire", &wire);
    CHECK_INT(wa_noise_recv(&client, server_wire + 3, sw_len - 3, &plain), WA_OK);
    CHECK(plain.len == sp_len && memcmp(plain.data, server_plain, sp_len) == 0);

    free(server_hello);
    free(fin);
    free(client_plain);
    free(server_plain);
    free(server_wire);
    free(chain);
    free(payload);
    free(root);
    wb_buf_free(&wire);
    wb_buf_free(&plain);
    wb_buf_free(&sh);
    wa_noise_clear(&client);
    wa_noise_clear(&server);
    wa_crypto_free(c);
    cJSON_Delete(vec);
    free(text);
    return CHECK_DONE();
}
