/*
 * tests/unit/test_vectors.c - the codec against Baileys' golden vectors (tests/vectors/binary).
 *
 * encode.json: our encoding of each node must equal Baileys' bytes (or, for large ones, their
 * length and SHA-256), and our decoding of those bytes must equal Baileys' decoded tree, content
 * kinds included. decode.json: forms Baileys reads but never writes, decoded to Baileys' tree.
 * Usage: test_vectors <dir with encode.json and decode.json>
 */
#include "check.h"
#include "vector_json.h"

#include <mbedtls/sha256.h>
#include <stdlib.h>

#define MIN_ENCODE_VECTORS 200

static uint8_t *hex_bytes(const char *hex, size_t *len)
{
    size_t hl = strlen(hex);
    uint8_t *out = malloc(hl / 2 + 1);
    if (!wb_hex_decode(hex, hl, out, hl / 2, len)) abort();
    return out;
}

static void check_decoded(const char *name, const uint8_t *bytes, size_t len, const cJSON *want)
{
    /* exact-size copy so that ASan catches a read past the end */
    uint8_t *exact = malloc(len ? len : 1);
    memcpy(exact, bytes, len);
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *n;
    wa_errinfo ei;
    int rc = wa_binary_decode(exact, len, &a, &n, &ei);
    if (rc != WA_OK) fprintf(stderr, "%s: decode failed: %s\n", name, ei.message);
    CHECK_INT(rc, WA_OK);
    if (rc == WA_OK) {
        const char *why = vj_node_matches(n, want);
        if (why) fprintf(stderr, "%s: decoded tree differs from Baileys': %s\n", name, why);
        CHECK(why == NULL);
    }
    wb_arena_free(&a);
    free(exact);
}

static int run_encode(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/encode.json", dir);
    char *text = vj_read_file(path, NULL);
    CHECK(text != NULL);
    if (!text) return 0;
    cJSON *root = cJSON_Parse(text);
    CHECK(cJSON_IsArray(root));
    int count = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, root)
    {
        const char *name = cJSON_GetObjectItemCaseSensitive(v, "name")->valuestring;
        wb_arena a;
        wb_arena_init(&a, 0);
        wa_node *n = vj_node_from_json(cJSON_GetObjectItemCaseSensitive(v, "node"), &a);
        CHECK(n != NULL);
        if (!n) continue;
        wb_buf out;
        wb_buf_init(&out);
        CHECK_INT(wa_binary_encode(n, &out), WA_OK);
        const cJSON *hex = cJSON_GetObjectItemCaseSensitive(v, "hex");
        if (cJSON_IsString(hex)) {
            size_t want_len;
            uint8_t *want = hex_bytes(hex->valuestring, &want_len);
            bool same = want_len == out.len && memcmp(want, out.data, out.len) == 0;
            if (!same) {
                char *got = malloc(out.len * 2 + 1);
                wb_hex_encode(out.data, out.len, got);
                fprintf(stderr, "%s: encoding differs\n  got  %s\n  want %s\n", name, got,
                        hex->valuestring);
                free(got);
            }
            CHECK(same);
            free(want);
        } else {
            unsigned char digest[32];
            char digest_hex[65];
            mbedtls_sha256_ret(out.data, out.len, digest, 0);
            wb_hex_encode(digest, 32, digest_hex);
            CHECK_INT(out.len, cJSON_GetObjectItemCaseSensitive(v, "len")->valuedouble);
            const char *want = cJSON_GetObjectItemCaseSensitive(v, "sha256")->valuestring;
            if (strcmp(digest_hex, want) != 0) fprintf(stderr, "%s: encoding hash differs\n", name);
            CHECK_STR(digest_hex, want);
        }
        /* Decode Baileys' bytes (equal to ours when the checks above passed). */
        check_decoded(name, out.data, out.len, cJSON_GetObjectItemCaseSensitive(v, "decoded"));
        wb_buf_free(&out);
        wb_arena_free(&a);
        count++;
    }
    cJSON_Delete(root);
    free(text);
    return count;
}

static int run_decode(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/decode.json", dir);
    char *text = vj_read_file(path, NULL);
    CHECK(text != NULL);
    if (!text) return 0;
    cJSON *root = cJSON_Parse(text);
    int count = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, root)
    {
        size_t len;
        uint8_t *bytes = hex_bytes(cJSON_GetObjectItemCaseSensitive(v, "hex")->valuestring, &len);
        check_decoded(cJSON_GetObjectItemCaseSensitive(v, "name")->valuestring, bytes, len,
                      cJSON_GetObjectItemCaseSensitive(v, "decoded"));
        free(bytes);
        count++;
    }
    cJSON_Delete(root);
    free(text);
    return count;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <tests/vectors/binary>\n", argv[0]);
        return 2;
    }
    int enc = run_encode(argv[1]);
    int dec = run_decode(argv[1]);
    printf("%d encode vectors, %d decode vectors\n", enc, dec);
    CHECK(enc >= MIN_ENCODE_VECTORS);
    CHECK(dec >= 20);
    return CHECK_DONE();
}
