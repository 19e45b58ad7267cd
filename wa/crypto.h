/*
 * wa/crypto.h - the engine's cryptographic primitives, named after what WhatsApp uses them for.
 *
 * Curve25519 (X25519 agreement, XEdDSA signatures) comes from libsignal-protocol-c, which the
 * engine needs anyway for Signal sessions, with its X25519 replaced by OpenSSL's (wa/crypto.c
 * defines the library's curve25519_donna); SHA-256 and HMAC-SHA256 from OpenSSL's libcrypto (it
 * uses the CPU's SHA extensions); HKDF, PBKDF2, SHA-512 and AES (GCM, CBC, CTR) from mbedtls. A
 * wa_crypto is the per-thread context: it owns a signal_context whose crypto provider is built on
 * those, and a random source that is the kernel's (getrandom, fetched a page at a time) unless a
 * test seeds it, in which case every key and signature nonce it produces is reproducible
 * (simulator golden mode).
 *
 * Keys: private keys are 32 raw bytes (clamped), public keys 32 raw bytes (WhatsApp's wire form;
 * the 0x05-prefixed 33-byte form lives only inside Signal structures). Callers wipe what they keep
 * with wa_wipe. One wa_crypto per thread: it is not thread-safe.
 */
#ifndef WA_CRYPTO_H
#define WA_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct signal_context signal_context;

#define WA_KEY_LEN 32
#define WA_SIG_LEN 64

typedef struct wa_keypair {
    uint8_t priv[WA_KEY_LEN]; /* clamped X25519 scalar; secret */
    uint8_t pub[WA_KEY_LEN];  /* X25519 public point, raw */
} wa_keypair;

typedef struct wa_crypto wa_crypto;

/* Creates a context; seed NULL for kernel randomness, else a deterministic stream from the seed. */
wa_crypto *wa_crypto_new(const uint8_t *seed, size_t seed_len);
void wa_crypto_free(wa_crypto *c);
/* The signal_context (for Signal sessions); owned by c. */
signal_context *wa_crypto_signal(wa_crypto *c);

/* Fills out with random bytes from c's source. Returns 0 or WA_ERR_*. Small requests are served
 * from c's pool of kernel randomness (refilled a page at a time, not shared with a forked child).
 */
int wa_random(wa_crypto *c, uint8_t *out, size_t n);
/* Overwrites n bytes with zeros in a way the compiler keeps. */
void wa_wipe(void *p, size_t n);
/* Constant-time equality of two n-byte buffers. */
bool wa_ct_equal(const void *a, const void *b, size_t n);

/* A new random key pair, or (wa_keypair_from_private) the pair of a given private key (clamped). */
int wa_keypair_generate(wa_crypto *c, wa_keypair *out);
int wa_keypair_from_private(wa_crypto *c, const uint8_t priv[WA_KEY_LEN], wa_keypair *out);
/* X25519: out = DH(priv, pub). Fails on a low-order public key (all-zero result). */
int wa_x25519(wa_crypto *c, const uint8_t priv[WA_KEY_LEN], const uint8_t pub[WA_KEY_LEN],
              uint8_t out[WA_KEY_LEN]);
/* XEdDSA over a Curve25519 key (as Signal and WhatsApp sign). */
int wa_xeddsa_sign(wa_crypto *c, const uint8_t priv[WA_KEY_LEN], const uint8_t *msg, size_t len,
                   uint8_t sig[WA_SIG_LEN]);
bool wa_xeddsa_verify(wa_crypto *c, const uint8_t pub[WA_KEY_LEN], const uint8_t *msg, size_t len,
                      const uint8_t sig[WA_SIG_LEN]);

/* True when libsignal-protocol-c's X25519 calls resolve to wa/crypto.c's curve25519_donna
 * (OpenSSL) rather than the library's own; the build exports it from every executable that links
 * wa_core, and tests/unit/test_crypto_fast checks this. */
bool wa_crypto_x25519_override_active(void);

void wa_sha256(const uint8_t *p, size_t n, uint8_t out[32]);
void wa_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *p, size_t n,
                    uint8_t out[32]);
/* HKDF-SHA256 (RFC 5869); salt may be NULL (zeros). out_len <= 255 * 32. */
int wa_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                   const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len);
/* PBKDF2-HMAC-SHA256 (the pairing code's key). */
int wa_pbkdf2_sha256(const uint8_t *pw, size_t pw_len, const uint8_t *salt, size_t salt_len,
                     unsigned iterations, uint8_t *out, size_t out_len);
/* AES-256-CTR with a 16-byte initial counter block; encrypts and decrypts (out may equal in). */
int wa_aes_ctr(const uint8_t key[32], const uint8_t iv[16], const uint8_t *in, size_t len,
               uint8_t *out);
/* AES-256-GCM with a 16-byte tag appended to the ciphertext: out holds len + 16 bytes. */
int wa_aes_gcm_encrypt(const uint8_t key[32], const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                       size_t ad_len, const uint8_t *in, size_t len, uint8_t *out);
/* Checks and removes the tag: in holds len bytes (>= 16), out gets len - 16. WA_ERR_AUTH if the
 * tag does not match (out is then zeroed). */
int wa_aes_gcm_decrypt(const uint8_t key[32], const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                       size_t ad_len, const uint8_t *in, size_t len, uint8_t *out);

#endif
