/*
 * wa/crypto.c - primitives of wa/crypto.h, and the crypto provider that libsignal-protocol-c needs.
 *
 * What runs where, and why:
 *   - SHA-256 and HMAC-SHA256 (the provider's HMAC is most of Signal's per-message work: the chain
 *     key step, the message keys' HKDF, the MAC) on OpenSSL's libcrypto, which uses the CPU's SHA
 *     extensions; mbedtls 2.28 hashes in portable C, about 5x slower per HMAC.
 *   - X25519 on OpenSSL too, by defining curve25519_donna here: libsignal-protocol-c exports that
 *     symbol and calls it through its PLT, so this definition, linked into the executable, replaces
 *     the library's 32-bit one (4-5x slower) for every agreement and key generation it does.
 *     wa_crypto_x25519_override_active() says whether that took effect.
 *   - XEdDSA stays in libsignal-protocol-c; AES (CBC, CTR, GCM), HKDF, PBKDF2 and SHA-512 stay on
 *     mbedtls (hardware AES already, or not on a hot path).
 *   - Randomness comes from the kernel a page (4 KiB) at a time (see random_pool) instead of one
 *     getrandom call per request: every Signal message asks for one pad byte.
 */
#define _GNU_SOURCE /* RTLD_NEXT, RTLD_DEFAULT */
#include "wa/crypto.h"

#include "wa/err.h"

#include <dlfcn.h>
#include <errno.h>
#include <mbedtls/aes.h>
#include <mbedtls/cipher.h>
#include <mbedtls/gcm.h>
#include <mbedtls/hkdf.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <signal/curve.h>
#include <signal/signal_protocol.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#define RANDOM_POOL_MAX_REQUEST 64 /* larger requests go to the kernel directly */
#define HMAC_IDLE_MAX           4  /* idle HMAC contexts a wa_crypto keeps for reuse */

/* Kernel random bytes, fetched a pool at a time. The pool is a page of its own marked
 * MADV_WIPEONFORK: a forked child sees the page zeroed (left == 0) and refills it from the kernel,
 * so a parent and its child never hand out the same bytes. Bytes handed out are zeroed in the pool.
 * Its size is kept in wa_crypto, outside the page, since a child's copy of the page is zeros. */
typedef struct random_pool {
    size_t left;     /* bytes not handed out yet: the last `left` of bytes[] */
    uint8_t bytes[]; /* the rest of the page; secret */
} random_pool;

/* One HMAC-SHA256 computation for the provider (or wa_hmac_sha256), reused through a free list. */
typedef struct wa_hmac {
    EVP_MD_CTX *inner;    /* SHA-256 of (key ^ ipad) || message */
    EVP_MD_CTX *outer;    /* SHA-256 of (key ^ opad), waiting for the inner digest */
    struct wa_hmac *next; /* in wa_crypto's idle list */
} wa_hmac;

struct wa_crypto {
    signal_context *signal;   /* owns libsignal's objects made through it */
    EVP_MD *sha256;           /* fetched once: OpenSSL's SHA-256 for the provider's HMACs */
    wa_hmac *hmac_idle;       /* finished HMAC contexts, reset, for the next one */
    int hmac_idle_count;      /* entries of hmac_idle (<= HMAC_IDLE_MAX) */
    random_pool *pool;        /* kernel mode: buffered randomness; NULL: one getrandom per call */
    size_t pool_map_len;      /* bytes mapped for pool (one page) */
    size_t pool_size;         /* bytes of pool->bytes */
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

/* n bytes from the kernel (retrying short reads and interruptions). */
static int kernel_random(uint8_t *out, size_t n)
{
    while (n) {
        ssize_t got = getrandom(out, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return WA_ERR_CRYPTO;
        }
        out += got;
        n -= (size_t)got;
    }
    return WA_OK;
}

/* Maps c's random pool: a page wiped in forked children. Without that (an old kernel), c->pool
 * stays NULL and every request goes to the kernel. */
static void random_pool_map(wa_crypto *c)
{
#ifdef MADV_WIPEONFORK
    long page = sysconf(_SC_PAGESIZE);
    if (page < 1024) return;
    void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    if (madvise(p, (size_t)page, MADV_WIPEONFORK) != 0) {
        munmap(p, (size_t)page);
        return;
    }
    c->pool = p; /* zero-filled: left == 0 */
    c->pool_map_len = (size_t)page;
    c->pool_size = (size_t)page - offsetof(random_pool, bytes);
#else
    (void)c;
#endif
}

static void random_pool_unmap(wa_crypto *c)
{
    if (!c->pool) return;
    wa_wipe(c->pool, c->pool_map_len);
    munmap(c->pool, c->pool_map_len);
    c->pool = NULL;
}

/* n (<= c->pool_size) bytes from c's pool, refilled from the kernel when it runs short (what was
 * left is overwritten). */
static int random_pool_take(wa_crypto *c, uint8_t *out, size_t n)
{
    random_pool *pool = c->pool;
    if (pool->left < n) {
        int rc = kernel_random(pool->bytes, c->pool_size);
        if (rc != WA_OK) {
            wa_wipe(pool->bytes, c->pool_size);
            pool->left = 0;
            return rc;
        }
        pool->left = c->pool_size;
    }
    uint8_t *from = pool->bytes + c->pool_size - pool->left;
    memcpy(out, from, n);
    wa_wipe(from, n);
    pool->left -= n;
    return WA_OK;
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
    if (c->pool && n <= RANDOM_POOL_MAX_REQUEST) return random_pool_take(c, out, n);
    return kernel_random(out, n);
}

/* --- HMAC-SHA256 on OpenSSL's SHA-256 (RFC 2104) --- */

static void hmac_free(wa_hmac *h)
{
    if (!h) return;
    EVP_MD_CTX_free(h->inner); /* frees the digest state with OPENSSL_clear_free */
    EVP_MD_CTX_free(h->outer);
    free(h);
}

static wa_hmac *hmac_new(void)
{
    wa_hmac *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    h->inner = EVP_MD_CTX_new();
    h->outer = EVP_MD_CTX_new();
    if (!h->inner || !h->outer) {
        hmac_free(h);
        return NULL;
    }
    return h;
}

/* Starts HMAC(key, ...) with md (SHA-256). Returns 0 or -1. */
static int hmac_start(wa_hmac *h, const EVP_MD *md, const uint8_t *key, size_t key_len)
{
    uint8_t block[64] = {0}; /* the key zero-padded to SHA-256's block, or its digest; secret */
    int ok = 1;
    if (key_len > sizeof(block))
        ok = EVP_DigestInit_ex2(h->inner, md, NULL) && EVP_DigestUpdate(h->inner, key, key_len) &&
             EVP_DigestFinal_ex(h->inner, block, NULL);
    else if (key_len)
        memcpy(block, key, key_len);
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] ^= 0x36;
    ok = ok && EVP_DigestInit_ex2(h->inner, md, NULL) &&
         EVP_DigestUpdate(h->inner, block, sizeof(block));
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] ^= 0x36 ^ 0x5c;
    ok = ok && EVP_DigestInit_ex2(h->outer, md, NULL) &&
         EVP_DigestUpdate(h->outer, block, sizeof(block));
    wa_wipe(block, sizeof(block));
    return ok ? 0 : -1;
}

static int hmac_update(wa_hmac *h, const uint8_t *p, size_t n)
{
    return EVP_DigestUpdate(h->inner, p, n) ? 0 : -1;
}

static int hmac_finish(wa_hmac *h, uint8_t out[32])
{
    uint8_t inner[32];
    int ok = EVP_DigestFinal_ex(h->inner, inner, NULL) &&
             EVP_DigestUpdate(h->outer, inner, sizeof(inner)) &&
             EVP_DigestFinal_ex(h->outer, out, NULL);
    wa_wipe(inner, sizeof(inner));
    return ok ? 0 : -1;
}

/* --- the crypto provider of libsignal-protocol-c --- */

static int provider_random(uint8_t *data, size_t len, void *user_data)
{
    return wa_random(user_data, data, len) == WA_OK ? 0 : SG_ERR_UNKNOWN;
}

/* An HMAC context for c: an idle one, or a new one. */
static wa_hmac *hmac_acquire(wa_crypto *c)
{
    wa_hmac *h = c->hmac_idle;
    if (!h) return hmac_new();
    c->hmac_idle = h->next;
    c->hmac_idle_count--;
    h->next = NULL;
    return h;
}

/* Back to c's idle list, or freed. Either way the digest states go (OpenSSL clears them as it frees
 * them): nothing of the key or the MAC stays behind. */
static void hmac_release(wa_crypto *c, wa_hmac *h)
{
    if (c->hmac_idle_count < HMAC_IDLE_MAX && EVP_MD_CTX_reset(h->inner) &&
        EVP_MD_CTX_reset(h->outer)) {
        h->next = c->hmac_idle;
        c->hmac_idle = h;
        c->hmac_idle_count++;
        return;
    }
    hmac_free(h);
}

static int provider_hmac_init(void **ctx, const uint8_t *key, size_t key_len, void *user_data)
{
    wa_crypto *c = user_data;
    wa_hmac *h = hmac_acquire(c);
    if (!h) return SG_ERR_NOMEM;
    if (hmac_start(h, c->sha256, key, key_len) != 0) {
        hmac_release(c, h);
        return SG_ERR_UNKNOWN;
    }
    *ctx = h;
    return 0;
}

static int provider_hmac_update(void *ctx, const uint8_t *data, size_t len, void *user_data)
{
    return hmac_update(ctx, data, len) == 0 ? 0 : SG_ERR_UNKNOWN;
}

static int provider_hmac_final(void *ctx, signal_buffer **output, void *user_data)
{
    uint8_t mac[32];
    if (hmac_finish(ctx, mac) != 0) return SG_ERR_UNKNOWN;
    *output = signal_buffer_create(mac, sizeof(mac));
    wa_wipe(mac, sizeof(mac));
    return *output ? 0 : SG_ERR_NOMEM;
}

static void provider_hmac_cleanup(void *ctx, void *user_data)
{
    if (ctx) hmac_release(user_data, ctx);
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
    } else {
        random_pool_map(c);
    }
    c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!c->sha256) {
        wa_crypto_free(c);
        return NULL;
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
    while (c->hmac_idle) {
        wa_hmac *h = c->hmac_idle;
        c->hmac_idle = h->next;
        hmac_free(h);
    }
    EVP_MD_free(c->sha256);
    random_pool_unmap(c);
    wa_wipe(c, sizeof(*c));
    free(c);
}

signal_context *wa_crypto_signal(wa_crypto *c)
{
    return c->signal;
}

/* --- X25519 for libsignal-protocol-c, on OpenSSL --- */

/* libsignal-protocol-c's X25519 (src/curve25519/curve25519-donna.h), which its curve.c calls for a
 * public key (basepoint = 9) and for every agreement: out = secret * basepoint on Curve25519, u
 * coordinates only. Its semantics, which this definition keeps: the secret is used as given (the
 * library does not clamp it: its keys are clamped when generated), the basepoint's top bit is
 * ignored, a non-canonical u is reduced, the result is fully reduced, a low-order point gives 32
 * zero bytes, and the return value is 0 (anything else is an error to the library).
 *
 * OpenSSL's X25519 clamps the secret, so it gives the same answer exactly when the secret is
 * already clamped, which every Signal key is; it refuses the all-zero result. For the other cases
 * (an unclamped secret, a low-order point, OpenSSL failing) this calls the library's own function,
 * found behind this one with dlsym(RTLD_NEXT); -1 if it cannot be found. */
int curve25519_donna(uint8_t *out, const uint8_t *secret, const uint8_t *basepoint);

typedef int x25519_fn(uint8_t *out, const uint8_t *secret, const uint8_t *basepoint);

static x25519_fn *library_donna; /* set once by find_library_donna, then only read */
static pthread_once_t library_donna_once = PTHREAD_ONCE_INIT;

static void find_library_donna(void)
{
    void *sym = dlsym(RTLD_NEXT, "curve25519_donna");
    memcpy(&library_donna, &sym, sizeof(sym)); /* POSIX: a function's address in a void * */
}

static int library_x25519(uint8_t *out, const uint8_t *secret, const uint8_t *basepoint)
{
    pthread_once(&library_donna_once, find_library_donna);
    if (!library_donna || library_donna == curve25519_donna) return -1;
    return library_donna(out, secret, basepoint);
}

static bool is_clamped(const uint8_t k[32])
{
    return (k[0] & 7) == 0 && (k[31] & 0xc0) == 0x40;
}

/* X25519 public key of a clamped secret: out = secret * 9. Returns 0 or -1. */
static int openssl_x25519_base(uint8_t out[32], const uint8_t secret[32])
{
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
    size_t len = 32;
    int ok = key && EVP_PKEY_get_raw_public_key(key, out, &len) == 1 && len == 32;
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}

/* X25519 agreement with a clamped secret: out = secret * u. Returns 0, or -1 (a low-order u, which
 * OpenSSL refuses, or a failure). The secret is imported with a placeholder public half: a
 * derivation reads only the private half, and importing the private half alone would make OpenSSL
 * compute the public one, a second scalar multiplication as long as the agreement itself. */
static int openssl_x25519(uint8_t out[32], const uint8_t secret[32], const uint8_t u[32])
{
    static const uint8_t placeholder[32] = {0};
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, (void *)secret, 32),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)placeholder, 32),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY *key = NULL, *peer = NULL;
    EVP_PKEY_CTX *import = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL), *derive = NULL;
    size_t len = 32;
    int ok = import && EVP_PKEY_fromdata_init(import) == 1 &&
             EVP_PKEY_fromdata(import, &key, EVP_PKEY_KEYPAIR, params) == 1 &&
             (peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, u, 32)) != NULL &&
             (derive = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL)) != NULL &&
             EVP_PKEY_derive_init(derive) == 1 &&
             EVP_PKEY_derive_set_peer_ex(derive, peer, 0) == 1 &&
             EVP_PKEY_derive(derive, out, &len) == 1 && len == 32;
    EVP_PKEY_CTX_free(derive);
    EVP_PKEY_free(peer);
    EVP_PKEY_free(key);
    EVP_PKEY_CTX_free(import);
    return ok ? 0 : -1;
}

int curve25519_donna(uint8_t *out, const uint8_t *secret, const uint8_t *basepoint)
{
    static const uint8_t nine[32] = {9};
    if (is_clamped(secret)) {
        int rc = memcmp(basepoint, nine, 32) == 0 ? openssl_x25519_base(out, secret)
                                                  : openssl_x25519(out, secret, basepoint);
        if (rc == 0) return 0;
    }
    return library_x25519(out, secret, basepoint);
}

bool wa_crypto_x25519_override_active(void)
{
    void *resolved = dlsym(RTLD_DEFAULT, "curve25519_donna");
    x25519_fn *fn;
    memcpy(&fn, &resolved, sizeof(fn));
    return fn == curve25519_donna;
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

/* --- SHA-256 and HMAC-SHA256 on OpenSSL; the rest on mbedtls --- */

/* OpenSSL fails here only when it cannot allocate; mbedtls then computes the same digest, so that
 * these two stay total (their callers have no error path). */
void wa_sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    if (EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL) != 1) mbedtls_sha256_ret(p, n, out, 0);
}

void wa_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *p, size_t n, uint8_t out[32])
{
    wa_hmac *h = hmac_new();
    bool ok = h && hmac_start(h, EVP_sha256(), key, key_len) == 0 && hmac_update(h, p, n) == 0 &&
              hmac_finish(h, out) == 0;
    hmac_free(h);
    if (!ok) mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, key_len, p, n, out);
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
