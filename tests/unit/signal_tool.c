/*
 * tests/unit/signal_tool.c - one of our devices (wa/signal over an in-memory store), driven by
 * tests/interop/signal_interop.mjs through JSON lines on stdin/stdout (one request, one answer):
 *   {"op":"bundle"}                                   -> our keys with a fresh one-time prekey
 *   {"op":"process_bundle","name","device",bundle}    -> {"ok":true} or {"error":...}
 *   {"op":"encrypt","name","device","plaintext":hex}  -> {"type":"pkmsg"|"msg","ciphertext":hex,
 *                                                         "counter" (msg: the chain key's index)}
 *   {"op":"decrypt","name","device","type","ciphertext":hex} -> {"plaintext":hex} or {"error":...}
 *   {"op":"restart"}                                  -> {"ok":true}: a new wa_signal on the same
 *                                                        store, as after a crash (what it kept in
 *                                                        memory is gone)
 * Plaintexts are unpadded: the tool pads and unpads as WhatsApp does.
 */
#include "vector_json.h"
#include "wa/signal.h"
#include "wa/store_mem.h"

#include <signal/protocol.h>
#include <signal/signal_protocol.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static wa_crypto *crypto;
static wa_store store;
static wa_device dev;
static wa_signal *sig;
static uint32_t next_prekey = 1;

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

static bool get_key(const cJSON *o, const char *key, uint8_t out[32])
{
    wb_buf b;
    wb_buf_init(&b);
    bool ok = get_hex(o, key, &b) && b.len == 32;
    if (ok) memcpy(out, b.data, 32);
    wb_buf_free(&b);
    return ok;
}

static cJSON *handle(const cJSON *req)
{
    cJSON *ans = cJSON_CreateObject();
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(req, "op");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "name");
    const cJSON *device = cJSON_GetObjectItemCaseSensitive(req, "device");
    if (!cJSON_IsString(op)) {
        cJSON_AddStringToObject(ans, "error", "no op");
        return ans;
    }
    if (strcmp(op->valuestring, "restart") == 0) {
        wa_signal_forget_kept(sig); /* a crash: what was kept in memory is not stored */
        wa_signal_free(sig);
        sig = wa_signal_new(crypto, &store, NULL);
        if (sig)
            cJSON_AddBoolToObject(ans, "ok", true);
        else
            cJSON_AddStringToObject(ans, "error", "cannot start again");
        return ans;
    }
    if (strcmp(op->valuestring, "bundle") == 0) {
        wa_prekey pk = {.id = next_prekey++};
        wa_keypair_generate(crypto, &pk.key);
        store.prekeys_save(store.ctx, &pk, 1);
        cJSON_AddNumberToObject(ans, "registration_id", dev.registration_id);
        add_hex(ans, "identity", dev.identity.pub, 32);
        cJSON_AddNumberToObject(ans, "signed_prekey_id", dev.signed_prekey_id);
        add_hex(ans, "signed_prekey", dev.signed_prekey.pub, 32);
        add_hex(ans, "signature", dev.signed_prekey_sig, 64);
        cJSON_AddNumberToObject(ans, "prekey_id", pk.id);
        add_hex(ans, "prekey", pk.key.pub, 32);
        return ans;
    }
    if (!cJSON_IsString(name) || !cJSON_IsNumber(device)) {
        cJSON_AddStringToObject(ans, "error", "name and device required");
        return ans;
    }
    uint32_t dev_id = (uint32_t)device->valueint;
    wb_buf in, out;
    wb_buf_init(&in);
    wb_buf_init(&out);
    int rc = WA_ERR_INVALID;
    if (strcmp(op->valuestring, "process_bundle") == 0) {
        wa_prekey_bundle b = {0};
        const cJSON *pkid = cJSON_GetObjectItemCaseSensitive(req, "prekey_id");
        b.registration_id = (uint32_t)cJSON_GetObjectItem(req, "registration_id")->valueint;
        b.signed_prekey_id = (uint32_t)cJSON_GetObjectItem(req, "signed_prekey_id")->valueint;
        wb_buf sigb;
        wb_buf_init(&sigb);
        bool ok = get_key(req, "identity", b.identity) &&
                  get_key(req, "signed_prekey", b.signed_prekey) &&
                  get_hex(req, "signature", &sigb) && sigb.len == 64;
        if (ok) memcpy(b.signature, sigb.data, 64);
        wb_buf_free(&sigb);
        if (ok && cJSON_IsNumber(pkid)) {
            b.has_prekey = true;
            b.prekey_id = (uint32_t)pkid->valueint;
            ok = get_key(req, "prekey", b.prekey);
        }
        rc = ok ? wa_signal_process_bundle(sig, name->valuestring, dev_id, &b) : WA_ERR_INVALID;
        if (rc == WA_OK) cJSON_AddBoolToObject(ans, "ok", true);
    } else if (strcmp(op->valuestring, "encrypt") == 0 && get_hex(req, "plaintext", &in)) {
        wa_signal_type type;
        rc = wa_signal_encrypt(sig, name->valuestring, dev_id, in.data, in.len, &out, &type);
        if (rc == WA_OK) {
            cJSON_AddStringToObject(ans, "type", type == WA_SIGNAL_PKMSG ? "pkmsg" : "msg");
            add_hex(ans, "ciphertext", out.data, out.len);
            signal_message *m = NULL;
            if (type == WA_SIGNAL_MSG &&
                signal_message_deserialize(&m, out.data, out.len, wa_crypto_signal(crypto)) == 0 &&
                m) {
                cJSON_AddNumberToObject(ans, "counter", signal_message_get_counter(m));
                SIGNAL_UNREF(m);
            }
        }
    } else if (strcmp(op->valuestring, "decrypt") == 0 && get_hex(req, "ciphertext", &in)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(req, "type");
        wa_signal_type t = cJSON_IsString(type) && strcmp(type->valuestring, "pkmsg") == 0
                               ? WA_SIGNAL_PKMSG
                               : WA_SIGNAL_MSG;
        rc = wa_signal_decrypt(sig, name->valuestring, dev_id, t, in.data, in.len, &out);
        if (rc == WA_OK) add_hex(ans, "plaintext", out.data, out.len);
    }
    if (rc != WA_OK) cJSON_AddStringToObject(ans, "error", wa_strerror(rc));
    wb_buf_free(&in);
    wb_buf_free(&out);
    return ans;
}

int main(void)
{
    crypto = wa_crypto_new(NULL, 0);
    wa_store_mem_new(&store);
    wa_keypair_generate(crypto, &dev.noise);
    wa_keypair_generate(crypto, &dev.identity);
    wa_keypair_generate(crypto, &dev.signed_prekey);
    dev.signed_prekey_id = 1;
    dev.registration_id = 4321;
    uint8_t msg[33] = {0x05};
    memcpy(msg + 1, dev.signed_prekey.pub, 32);
    wa_xeddsa_sign(crypto, dev.identity.priv, msg, 33, dev.signed_prekey_sig);
    store.device_save(store.ctx, &dev);
    sig = wa_signal_new(crypto, &store, NULL);
    if (!sig) return 1;
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
    wa_signal_free(sig);
    store.destroy(store.ctx);
    wa_crypto_free(crypto);
    return 0;
}
