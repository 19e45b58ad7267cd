/*
 * tests/unit/senderkey_tool.c - our sender keys (wa/senderkey over an in-memory store), driven by
 * tests/interop/senderkey_interop.mjs through JSON lines on stdin/stdout (one request, one answer).
 * Every request names the sender key by "group", "name" and "device":
 *   {"op":"create"}                     -> {"skdm":hex}   our key (made when missing)
 *   {"op":"process","skdm":hex}         -> {"ok":true}    a peer's SKDM
 *   {"op":"encrypt","plaintext":hex}    -> {"ciphertext":hex}
 *   {"op":"decrypt","ciphertext":hex}   -> {"plaintext":hex} or {"error":...}
 *   {"op":"forget"}                     -> {"ok":true}
 *   {"op":"message","skdm":hex}         -> {"message":hex}  Message{senderKeyDistributionMessage}
 *   {"op":"find","message":hex}         -> {"group":...,"skdm":hex}
 * Plaintexts are unpadded: the tool pads and unpads as WhatsApp does.
 */
#include "vector_json.h"
#include "wa/senderkey.h"
#include "wa/store_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static wa_senderkey *sk;

static void add_hex(cJSON *o, const char *key, const uint8_t *p, size_t n)
{
    char *hex = malloc(2 * n + 1);
    wb_hex_encode(p, n, hex);
    cJSON_AddStringToObject(o, key, hex);
    free(hex);
}

static bool get_hex(const cJSON *o, const char *key, wb_buf *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v)) return false;
    size_t hl = strlen(v->valuestring), n = 0;
    if (!wb_buf_reserve(out, hl / 2 + 1)) return false;
    if (!wb_hex_decode(v->valuestring, hl, out->data, hl / 2, &n)) return false;
    out->len = n;
    return true;
}

static cJSON *handle(const cJSON *req)
{
    cJSON *ans = cJSON_CreateObject();
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(req, "op");
    const cJSON *group = cJSON_GetObjectItemCaseSensitive(req, "group");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "name");
    const cJSON *device = cJSON_GetObjectItemCaseSensitive(req, "device");
    wb_buf in, out;
    wb_buf_init(&in);
    wb_buf_init(&out);
    int rc = WA_ERR_INVALID;
    if (cJSON_IsString(op) && strcmp(op->valuestring, "find") == 0) {
        const uint8_t *g = NULL, *s = NULL;
        size_t gl = 0, sl = 0;
        rc = get_hex(req, "message", &in) ? wa_senderkey_find(in.data, in.len, &g, &gl, &s, &sl)
                                          : WA_ERR_INVALID;
        if (rc == WA_OK) {
            char *gs = strndup((const char *)g, gl);
            cJSON_AddStringToObject(ans, "group", gs ? gs : "");
            free(gs);
            add_hex(ans, "skdm", s, sl);
        }
    } else if (!cJSON_IsString(op) || !cJSON_IsString(group)) {
        cJSON_AddStringToObject(ans, "error", "op and group required");
        rc = WA_OK;
    } else if (strcmp(op->valuestring, "message") == 0) {
        rc = get_hex(req, "skdm", &in)
                 ? wa_senderkey_message(group->valuestring, in.data, in.len, &out)
                 : WA_ERR_INVALID;
        if (rc == WA_OK) add_hex(ans, "message", out.data, out.len);
    } else if (!cJSON_IsString(name) || !cJSON_IsNumber(device)) {
        cJSON_AddStringToObject(ans, "error", "name and device required");
        rc = WA_OK;
    } else {
        const char *g = group->valuestring, *n = name->valuestring;
        uint32_t d = (uint32_t)device->valueint;
        if (strcmp(op->valuestring, "create") == 0) {
            rc = wa_senderkey_create(sk, g, n, d, &out);
            if (rc == WA_OK) add_hex(ans, "skdm", out.data, out.len);
        } else if (strcmp(op->valuestring, "process") == 0 && get_hex(req, "skdm", &in)) {
            rc = wa_senderkey_process(sk, g, n, d, in.data, in.len);
            if (rc == WA_OK) cJSON_AddBoolToObject(ans, "ok", true);
        } else if (strcmp(op->valuestring, "encrypt") == 0 && get_hex(req, "plaintext", &in)) {
            rc = wa_senderkey_encrypt(sk, g, n, d, in.data, in.len, &out);
            if (rc == WA_OK) add_hex(ans, "ciphertext", out.data, out.len);
        } else if (strcmp(op->valuestring, "decrypt") == 0 && get_hex(req, "ciphertext", &in)) {
            rc = wa_senderkey_decrypt(sk, g, n, d, in.data, in.len, &out);
            if (rc == WA_OK) add_hex(ans, "plaintext", out.data, out.len);
        } else if (strcmp(op->valuestring, "forget") == 0) {
            rc = wa_senderkey_forget(sk, g, n, d);
            if (rc == WA_OK) cJSON_AddBoolToObject(ans, "ok", true);
        }
    }
    if (rc != WA_OK) cJSON_AddStringToObject(ans, "error", wa_strerror(rc));
    wb_buf_free(&in);
    wb_buf_free(&out);
    return ans;
}

int main(void)
{
    wa_crypto *crypto = wa_crypto_new(NULL, 0);
    wa_store store;
    if (!crypto || wa_store_mem_new(&store) != WA_STORE_OK) return 1;
    sk = wa_senderkey_new(crypto, &store, NULL);
    if (!sk) return 1;
    static char line[1 << 20];
    while (fgets(line, sizeof(line), stdin)) {
        cJSON *req = cJSON_Parse(line);
        cJSON *ans = req ? handle(req) : cJSON_CreateObject();
        if (!req) cJSON_AddStringToObject(ans, "error", "not JSON");
        char *s = cJSON_PrintUnformatted(ans);
        puts(s);
        fflush(stdout);
        free(s);
        cJSON_Delete(ans);
        cJSON_Delete(req);
    }
    wa_senderkey_free(sk);
    store.destroy(store.ctx);
    wa_crypto_free(crypto);
    return 0;
}
