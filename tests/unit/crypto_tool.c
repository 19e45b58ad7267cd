/*
 * tests/unit/crypto_tool.c - lets tests/interop/check_signatures.mjs drive our crypto in one batch.
 * Reads a JSON array of requests on stdin and prints a JSON array of answers:
 *   {"op":"pub","priv":hex}                      -> {"pub":hex}
 *   {"op":"sign","priv":hex,"msg":hex}           -> {"sig":hex}
 *   {"op":"verify","pub":hex,"msg":hex,"sig":hex} -> {"ok":bool}
 *   {"op":"chain","root":hex,"inter":hex,"server_pub":hex} -> {"chain":hex}  (CertChain bytes)
 */
#include "vector_json.h"
#include "wa/noise.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t hex_field(const cJSON *req, const char *name, uint8_t *out, size_t cap)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(req, name);
    size_t n = 0;
    if (!cJSON_IsString(f) ||
        !wb_hex_decode(f->valuestring, strlen(f->valuestring), out, cap, &n)) {
        fprintf(stderr, "crypto_tool: bad field %s\n", name);
        exit(2);
    }
    return n;
}

static void add_hex(cJSON *obj, const char *name, const uint8_t *p, size_t n)
{
    char *hex = malloc(2 * n + 1);
    wb_hex_encode(p, n, hex);
    cJSON_AddStringToObject(obj, name, hex);
    free(hex);
}

int main(void)
{
    wb_buf in;
    wb_buf_init(&in);
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        wb_buf_append(&in, chunk, got);
    wb_buf_u8(&in, 0);
    cJSON *reqs = cJSON_Parse((const char *)in.data);
    if (!cJSON_IsArray(reqs)) {
        fprintf(stderr, "crypto_tool: stdin is not a JSON array\n");
        return 2;
    }
    wa_crypto *c = wa_crypto_new(NULL, 0);
    cJSON *answers = cJSON_CreateArray();
    const cJSON *req;
    static uint8_t msg[65536];
    cJSON_ArrayForEach(req, reqs)
    {
        const char *op = cJSON_GetObjectItemCaseSensitive(req, "op")->valuestring;
        cJSON *a = cJSON_CreateObject();
        uint8_t k1[32], k2[32], k3[32], sig[64];
        wa_keypair kp;
        if (strcmp(op, "pub") == 0) {
            hex_field(req, "priv", k1, 32);
            wa_keypair_from_private(c, k1, &kp);
            add_hex(a, "pub", kp.pub, 32);
        } else if (strcmp(op, "sign") == 0) {
            hex_field(req, "priv", k1, 32);
            size_t n = hex_field(req, "msg", msg, sizeof(msg));
            if (wa_xeddsa_sign(c, k1, msg, n, sig) != WA_OK) return 1;
            add_hex(a, "sig", sig, 64);
        } else if (strcmp(op, "verify") == 0) {
            hex_field(req, "pub", k1, 32);
            size_t n = hex_field(req, "msg", msg, sizeof(msg));
            hex_field(req, "sig", sig, 64);
            cJSON_AddBoolToObject(a, "ok", wa_xeddsa_verify(c, k1, msg, n, sig));
        } else if (strcmp(op, "chain") == 0) {
            wa_keypair root, inter;
            hex_field(req, "root", k1, 32);
            hex_field(req, "inter", k2, 32);
            hex_field(req, "server_pub", k3, 32);
            wa_keypair_from_private(c, k1, &root);
            wa_keypair_from_private(c, k2, &inter);
            wa_cert_params p = {7, 99, 1700000000, 2000000000};
            wb_buf chain;
            wb_buf_init(&chain);
            if (wa_cert_chain_build(c, &root, &inter, k3, &p, &chain) != WA_OK) return 1;
            add_hex(a, "chain", chain.data, chain.len);
            wb_buf_free(&chain);
        } else {
            fprintf(stderr, "crypto_tool: unknown op %s\n", op);
            return 2;
        }
        cJSON_AddItemToArray(answers, a);
    }
    char *s = cJSON_PrintUnformatted(answers);
    puts(s);
    free(s);
    cJSON_Delete(answers);
    cJSON_Delete(reqs);
    wb_buf_free(&in);
    wa_crypto_free(c);
    return 0;
}
