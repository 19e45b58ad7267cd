/*
 * wa/crypto.c - primitives of wa/crypto.h: libsignal-protocol-c for Curve25519, mbedtls for the
 * rest, and the mbedtls-backed crypto provider that libsignal-protocol-c needs.
 */
#include "wa/crypto.h"

#include "wa/err.h"

#include <mbedtls/aes.h>
#include <mbedtls/cipher.h>
#include <mbedtls/gcm.h>
#include <mbedtls/hkdf.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>
#include <signal/curve.h>
#include <signal/signal_protocol.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct wa_crypto {
    signal_context *signal;   /* owns libsignal's objects made through it */
    bool seeded;              /* true: random bytes come from the stream below, not the kernel */
    uint8_t stream_key[32];   /* seeded mode: HMAC key of the stream; secret */
    uint64_t stream_counter;  /* seeded mode: blocks produced so far */
    uint8_t stream_block[32]; /* seeded mode: current block */
    size_t stream_used;       /* seeded mode: bytes of stream_block already handed out */
};

void wa_wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n--)
        *v++ = 0;
}

bool wa_ct_equal(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= x[i] ^ y[i];
    return diff == 0;
}

int wa_random(wa_crypto *c, uint8_t *out, size_t n)
{
    if (c->seeded) {
        while (n) {
            if (c->stream_used == sizeof(c->stream_block)) {
                uint8_t ctr[8];
                for (int i = 0; i < 8; i++)
                    ctr[i] = (uint8_t)(c->stream_counter >> (56 - 8 * i));
                wa_hmac_sha256(c->stream_key, sizeof(c->stream_key), ctr, sizeof(ctr),
                               c->stream_block);
                c->stream_counter++;
                c->stream_used = 0;
            }
            size_t take = sizeof(c->stream_block) - c->stream_used;
            if (take > n) take = n;
            memcpy(out, c->stream_block + c->stream_used, take);
            c->stream_used += take;
            out += take;
            n -= take;
        }
        return WA_OK;
    }
    while (n) {
        ssize_t got = getrandom(out, n, 0);
        if (got < 0) return WA_ERR_CRYPTO;
        out += got;
        n -= (size_t)got;
    }
    return WA_OK;
}

/* --- the crypto provider of libsignal-protocol-c --- */

static int provider_random(uint8_t *data, size_t len, void *user_data)
{
    return wa_random(user_data, data, len) == WA_OK ? 0 : SG_ERR_UNKNOWN;
}

static int provider_hmac_init(void **ctx, const uint8_t *key, size_t key_len, void *user_data)
{
    mbedtls_md_context_t *md = malloc(sizeof(*md));
    if (!md) return SG_ERR_NOMEM;
    mbedtls_md_init(md);
    if (mbedtls_md_setup(md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 1) != 0 ||
        mbedtls_md_hmac_starts(md, key, key_len) != 0) {
        mbedtls_md_free(md);
        free(md);
        return SG_ERR_UNKNOWN;
    }
    *ctx = md;
    return 0;
}

static int provider_hmac_update(void *ctx, const uint8_t *data, size_t len, void *user_data)
{
    return mbedtls_md_hmac_update(ctx, data, len) == 0 ? 0 : SG_ERR_UNKNOWN;
}

static int provider_hmac_final(void *ctx, signal_buffer **output, void *user_data)
{
    uint8_t mac[32];
    if (mbedtls_md_hmac_finish(ctx, mac) != 0) return SG_ERR_UNKNOWN;
    *output = signal_buffer_create(mac, sizeof(mac));
    return *output ? 0 : SG_ERR_NOMEM;
}

static void provider_hmac_cleanup(void *ctx, void *user_data)
{
    if (!ctx) return;
    mbedtls_md_free(ctx);
    free(ctx);
}

static int provider_sha512_init(void **ctx, void *user_data)
{
    mbedtls_sha512_context *sha = malloc(sizeof(*sha));
    if (!sha) return SG_ERR_NOMEM;
    mbedtls_sha512_init(sha);
    if (mbedtls_sha512_starts_ret(sha, 0) != 0) {
        free(sha);
        return SG_ERR_UNKNOWN;
    }
    *ctx = sha;
    return 0;
}

static int provider_sha512_update(void *ctx, const uint8_t *data, size_t len, void *user_data)
{
    return mbedtls_sha512_update_ret(ctx, data, len) == 0 ? 0 : SG_ERR_UNKNOWN;
}

static int provider_sha512_final(void *ctx, signal_buffer **output, void *user_data)
{
    uint8_t digest[64];
    if (mbedtls_sha512_finish_ret(ctx, digest) != 0) return SG_ERR_UNKNOWN;
    /* the library reuses the context after final: start it again */
    if (mbedtls_sha512_starts_ret(ctx, 0) != 0) return SG_ERR_UNKNOWN;
    *output = signal_buffer_create(digest, sizeof(digest));
    return *output ? 0 : SG_ERR_NOMEM;
}

static void provider_sha512_cleanup(void *ctx, void *user_data)
{
    if (!ctx) return;
    mbedtls_sha512_free(ctx);
    free(ctx);
}

static int provider_cipher(signal_buffer **output, int cipher, const uint8_t *key, size_t key_len,
                           const uint8_t *iv, size_t iv_len, const uint8_t *in, size_t len,
                           mbedtls_operation_t op)
{
    mbedtls_cipher_type_t type;
    if (key_len != 32 || iv_len != 16) return SG_ERR_INVAL;
    if (cipher == SG_CIPHER_AES_CBC_PKCS5)
        type = MBEDTLS_CIPHER_AES_256_CBC;
    else if (cipher == SG_CIPHER_AES_CTR_NOPADDING)
        type = MBEDTLS_CIPHER_AES_256_CTR;
    else
        return SG_ERR_INVAL;
    mbedtls_cipher_context_t ctx;
    mbedtls_cipher_init(&ctx);
    uint8_t *out = malloc(len + 32);
    size_t out_len = 0, fin_len = 0;
    int rc = out ? 0 : SG_ERR_NOMEM;
    if (rc == 0 &&
        (mbedtls_cipher_setup(&ctx, mbedtls_cipher_info_from_type(type)) != 0 ||
         mbedtls_cipher_setkey(&ctx, key, 256, op) != 0 ||
         (type == MBEDTLS_CIPHER_AES_256_CBC &&
          mbedtls_cipher_set_padding_mode(&ctx, MBEDTLS_PADDING_PKCS7) != 0) ||
         mbedtls_cipher_set_iv(&ctx, iv, iv_len) != 0 || mbedtls_cipher_reset(&ctx) != 0 ||
         mbedtls_cipher_update(&ctx, in, len, out, &out_len) != 0 ||
         mbedtls_cipher_finish(&ctx, out + out_len, &fin_len) != 0))
        rc = SG_ERR_UNKNOWN;
    if (rc == 0) {
        *output = signal_buffer_create(out, out_len + fin_len);
        if (!*output) rc = SG_ERR_NOMEM;
    }
    if (out) {
        wa_wipe(out, len + 32);
        free(out);
    }
    mbedtls_cipher_free(&ctx);
    return rc;
}

static int provider_encrypt(signal_buffer **output, int cipher, const uint8_t *key, size_t key_len,
                            const uint8_t *iv, size_t iv_len, const uint8_t *plaintext,
                            size_t plaintext_len, void *user_data)
{
    return provider_cipher(output, cipher, key, key_len, iv, iv_len, plaintext, plaintext_len,
                           MBEDTLS_ENCRYPT);
}

static int provider_decrypt(signal_buffer **output, int cipher, const uint8_t *key, size_t key_len,
                            const uint8_t *iv, size_t iv_len, const uint8_t *ciphertext,
                            size_t ciphertext_len, void *user_data)
{
    return provider_cipher(output, cipher, key, key_len, iv, iv_len, ciphertext, ciphertext_len,
                           MBEDTLS_DECRYPT);
}

wa_crypto *wa_crypto_new(const uint8_t *seed, size_t seed_len)
{
    wa_crypto *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    if (seed) {
        c->seeded = true;
        wa_sha256(seed, seed_len, c->stream_key);
        c->stream_used = sizeof(c->stream_block);
    }
    signal_crypto_provider provider = {
        .random_func = provider_random,
        .hmac_sha256_init_func = provider_hmac_init,
        .hmac_sha256_update_func = provider_hmac_update,
        .hmac_sha256_final_func = provider_hmac_final,
        .hmac_sha256_cleanup_func = provider_hmac_cleanup,
        .sha512_digest_init_func = provider_sha512_init,
        .sha512_digest_update_func = provider_sha512_update,
        .sha512_digest_final_func = provider_sha512_final,
        .sha512_digest_cleanup_func = provider_sha512_cleanup,
        .encrypt_func = provider_encrypt,
        .decrypt_func = provider_decrypt,
        .user_data = c,
    };
    if (signal_context_create(&c->signal, c) != 0 ||
        signal_context_set_crypto_provider(c->signal, &provider) != 0) {
        wa_crypto_free(c);
        return NULL;
    }
    return c;
}

void wa_crypto_free(wa_crypto *c)
{
    if (!c) return;
    if (c->signal) signal_context_destroy(c->signal);
    wa_wipe(c, sizeof(*c));
    free(c);
}

signal_context *wa_crypto_signal(wa_crypto *c)
{
    return c->signal;
}

/* --- Curve25519 through libsignal-protocol-c --- */

static void clamp(uint8_t k[32])
{
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
}

static int load_private(wa_crypto *c, const uint8_t priv[32], ec_private_key **out)
{
    uint8_t k[32];
    memcpy(k, priv, 32);
    clamp(k);
    int rc = curve_decode_private_point(out, k, 32, c->signal);
    wa_wipe(k, sizeof(k));
    return rc == 0 ? WA_OK : WA_ERR_CRYPTO;
}

static int load_public(wa_crypto *c, const uint8_t pub[32], ec_public_key **out)
{
    uint8_t k[33];
    k[0] = 0x05; /* DJB_TYPE */
    memcpy(k + 1, pub, 32);
    return curve_decode_point(out, k, sizeof(k), c->signal) == 0 ? WA_OK : WA_ERR_CRYPTO;
}

int wa_keypair_from_private(wa_crypto *c, const uint8_t priv[WA_KEY_LEN], wa_keypair *out)
{
    ec_private_key *sk = NULL;
    ec_public_key *pk = NULL;
    signal_buffer *buf = NULL;
    int rc = load_private(c, priv, &sk);
    if (rc == WA_OK && curve_generate_public_key(&pk, sk) != 0) rc = WA_ERR_CRYPTO;
    if (rc == WA_OK && (ec_public_key_serialize(&buf, pk) != 0 || signal_buffer_len(buf) != 33))
        rc = WA_ERR_CRYPTO;
    if (rc == WA_OK) {
        memcpy(out->priv, priv, 32);
        clamp(out->priv);
        memcpy(out->pub, signal_buffer_data(buf) + 1, 32);
    }
    signal_buffer_free(buf);
    if (pk) SIGNAL_UNREF(pk);
    if (sk) SIGNAL_UNREF(sk);
    return rc;
}

int wa_keypair_generate(wa_crypto *c, wa_keypair *out)
{
    uint8_t priv[32];
    int rc = wa_random(c, priv, sizeof(priv));
    if (rc == WA_OK) rc = wa_keypair_from_private(c, priv, out);
    wa_wipe(priv, sizeof(priv));
    return rc;
}

int wa_x25519(wa_crypto *c, const uint8_t priv[WA_KEY_LEN], const uint8_t pub[WA_KEY_LEN],
              uint8_t out[WA_KEY_LEN])
{
    ec_private_key *sk = NULL;
    ec_public_key *pk = NULL;
    uint8_t *shared = NULL;
    int rc = load_private(c, priv, &sk);
    if (rc == WA_OK) rc = load_public(c, pub, &pk);
    if (rc == WA_OK && curve_calculate_agreement(&shared, pk, sk) != 32) rc = WA_ERR_CRYPTO;
    if (rc == WA_OK) {
        static const uint8_t zero[32];
        memcpy(out, shared, 32);
        if (wa_ct_equal(out, zero, 32)) rc = WA_ERR_CRYPTO; /* low-order point */
    }
    if (shared) {
        wa_wipe(shared, 32);
        free(shared);
    }
    if (pk) SIGNAL_UNREF(pk);
    if (sk) SIGNAL_UNREF(sk);
    return rc;
}

int wa_xeddsa_sign(wa_crypto *c, const uint8_t priv[WA_KEY_LEN], const uint8_t *msg, size_t len,
                   uint8_t sig[WA_SIG_LEN])
{
    ec_private_key *sk = NULL;
    signal_buffer *out = NULL;
    int rc = load_private(c, priv, &sk);
    if (rc == WA_OK && (curve_calculate_signature(c->signal, &out, sk, msg, len) != 0 ||
                        signal_buffer_len(out) != WA_SIG_LEN))
        rc = WA_ERR_CRYPTO;
    if (rc == WA_OK) memcpy(sig, signal_buffer_data(out), WA_SIG_LEN);
    signal_buffer_free(out);
    if (sk) SIGNAL_UNREF(sk);
    return rc;
}

bool wa_xeddsa_verify(wa_crypto *c, const uint8_t pub[WA_KEY_LEN], const uint8_t *msg, size_t len,
                      const uint8_t sig[WA_SIG_LEN])
{
    ec_public_key *pk = NULL;
    if (load_public(c, pub, &pk) != WA_OK) return false;
    bool ok = curve_verify_signature(pk, msg, len, sig, WA_SIG_LEN) == 1;
    SIGNAL_UNREF(pk);
    return ok;
}

/* --- mbedtls --- */

void wa_sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    mbedtls_sha256_ret(p, n, out, 0);
}

void wa_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *p, size_t n, uint8_t out[32])
{
    mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, key_len, p, n, out);
}

int wa_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                   const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len)
{
    return mbedtls_hkdf(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), salt, salt_len, ikm, ikm_len,
                        info, info_len, out, out_len) == 0
               ? WA_OK
               : WA_ERR_CRYPTO;
}

int wa_aes_gcm_encrypt(const uint8_t key[32], const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                       size_t ad_len, const uint8_t *in, size_t len, uint8_t *out)
{
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    int rc = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 256) == 0 &&
                     mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, len, iv, iv_len, ad,
                                               ad_len, in, out, 16, out + len) == 0
                 ? WA_OK
                 : WA_ERR_CRYPTO;
    mbedtls_gcm_free(&gcm);
    return rc;
}

int wa_aes_gcm_decrypt(const uint8_t key[32], const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                       size_t ad_len, const uint8_t *in, size_t len, uint8_t *out)
{
    if (len < 16) return WA_ERR_TRUNCATED;
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    int rc = WA_ERR_CRYPTO;
    if (mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 256) == 0) {
        int r = mbedtls_gcm_auth_decrypt(&gcm, len - 16, iv, iv_len, ad, ad_len, in + len - 16, 16,
                                         in, out);
        rc = r == 0 ? WA_OK : r == MBEDTLS_ERR_GCM_AUTH_FAILED ? WA_ERR_AUTH : WA_ERR_CRYPTO;
    }
    mbedtls_gcm_free(&gcm);
    return rc;
}

int wa_pbkdf2_sha256(const uint8_t *pw, size_t pw_len, const uint8_t *salt, size_t salt_len,
                     unsigned iterations, uint8_t *out, size_t out_len)
{
    mbedtls_md_context_t md;
    mbedtls_md_init(&md);
    int rc = mbedtls_md_setup(&md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 1) == 0 &&
                     mbedtls_pkcs5_pbkdf2_hmac(&md, pw, pw_len, salt, salt_len, iterations,
                                               (uint32_t)out_len, out) == 0
                 ? WA_OK
                 : WA_ERR_CRYPTO;
    mbedtls_md_free(&md);
    return rc;
}

int wa_aes_ctr(const uint8_t key[32], const uint8_t iv[16], const uint8_t *in, size_t len,
               uint8_t *out)
{
    mbedtls_aes_context aes;
    mbedtls_aes_init(&aes);
    uint8_t nonce[16], stream[16];
    size_t off = 0;
    memcpy(nonce, iv, 16);
    int rc = mbedtls_aes_setkey_enc(&aes, key, 256) == 0 &&
                     mbedtls_aes_crypt_ctr(&aes, len, &off, nonce, stream, in, out) == 0
                 ? WA_OK
                 : WA_ERR_CRYPTO;
    mbedtls_aes_free(&aes);
    wa_wipe(stream, sizeof(stream));
    return rc;
}
