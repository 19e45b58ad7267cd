/*
 * tests/unit/test_crypto_fast.c - the fast paths of wa/crypto.c: X25519, SHA-256 and HMAC-SHA256 on
 * OpenSSL, and the buffered random source.
 *
 *   - The override: libsignal-protocol-c's calls to curve25519_donna land in ours. Checked where
 *     the library looks (its GOT slot for the symbol, read after a call through the library) and
 *     as the dynamic linker would resolve it (dlsym RTLD_DEFAULT); both fail if the library's own
 *     function were used.
 *   - X25519: RFC 7748 (section 5.2 vectors, 1 and 1,000 iterations, section 6.1) through
 *     curve25519_donna and through wa_x25519; ours against the library's own function on random
 *     clamped and unclamped secrets, a point with the top bit set, and low-order points.
 *   - SHA-256 (FIPS 180-2 examples), HMAC-SHA256 (RFC 4231, all seven cases), and the crypto
 *     provider's HMAC through libsignal's HKDF (RFC 5869), several times to reuse its contexts.
 *   - Randomness: a seeded context still gives the same stream as before (golden mode), the pool
 *     refills across pages, and a forked child does not repeat its parent's bytes.
 */
#define _GNU_SOURCE /* RTLD_NEXT, RTLD_DEFAULT, dl_iterate_phdr */
#include "check.h"
#include "util/bytes.h"
#include "wa/crypto.h"
#include "wa/err.h"

#include <dlfcn.h>
#include <link.h>
#include <signal/curve.h>
#include <signal/hkdf.h>
#include <signal/signal_protocol.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#if __ELF_NATIVE_CLASS == 64
#define RELOC_SYMBOL(info) ELF64_R_SYM(info)
#else
#define RELOC_SYMBOL(info) ELF32_R_SYM(info)
#endif

typedef ElfW(Rela) elf_rela;
typedef ElfW(Sym) elf_sym;

int curve25519_donna(uint8_t *out, const uint8_t *secret, const uint8_t *basepoint);
typedef int x25519_fn(uint8_t *out, const uint8_t *secret, const uint8_t *basepoint);

static wa_crypto *crypto;

static void unhex(const char *hex, uint8_t *out, size_t len)
{
    size_t n = 0;
    if (!wb_hex_decode(hex, strlen(hex), out, len, &n) || n != len) {
        fprintf(stderr, "bad hex in the test: %s\n", hex);
        exit(2);
    }
}

static bool equals_hex(const uint8_t *p, size_t n, const char *hex)
{
    char buf[2 * 64 + 1];
    if (n > 64) return false;
    wb_hex_encode(p, n, buf);
    if (strcmp(buf, hex) == 0) return true;
    fprintf(stderr, "  got  %s\n  want %s\n", buf, hex);
    return false;
}

static void clamp(uint8_t k[32])
{
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
}

/* --- the override --- */

/* libsignal-protocol-c's own curve25519_donna: the next definition after this executable's. */
static x25519_fn *library_donna(void)
{
    void *sym = dlsym(RTLD_NEXT, "curve25519_donna");
    x25519_fn *fn;
    memcpy(&fn, &sym, sizeof(fn));
    return fn;
}

typedef struct got_search {
    const char *object; /* part of the shared object's file name */
    const char *symbol;
    void *value; /* what the object's relocated slot for symbol holds */
    bool found;
} got_search;

/* The in-memory dynamic section's pointers are relocated by glibc; a raw one is an offset. */
static ElfW(Addr) absolute(ElfW(Addr) p, ElfW(Addr) base)
{
    return p < base ? p + base : p;
}

static void scan_relocations(got_search *g, ElfW(Addr) base, const elf_rela *rela, size_t size,
                             const elf_sym *syms, const char *strs)
{
    for (size_t i = 0; !g->found && i < size / sizeof(*rela); i++) {
        const char *name = strs + syms[RELOC_SYMBOL(rela[i].r_info)].st_name;
        if (strcmp(name, g->symbol) != 0) continue;
        memcpy(&g->value, (const void *)(base + rela[i].r_offset), sizeof(g->value));
        g->found = true;
    }
}

static int find_got_slot(struct dl_phdr_info *info, size_t size, void *arg)
{
    got_search *g = arg;
    if (!info->dlpi_name || !strstr(info->dlpi_name, g->object)) return 0;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn) return 0;
    ElfW(Addr) base = info->dlpi_addr, jmprel = 0, rela = 0, symtab = 0, strtab = 0;
    size_t jmprel_size = 0, rela_size = 0;
    long pltrel = 0;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_JMPREL: jmprel = absolute(dyn->d_un.d_ptr, base); break;
        case DT_PLTRELSZ: jmprel_size = dyn->d_un.d_val; break;
        case DT_PLTREL: pltrel = (long)dyn->d_un.d_val; break;
        case DT_RELA: rela = absolute(dyn->d_un.d_ptr, base); break;
        case DT_RELASZ: rela_size = dyn->d_un.d_val; break;
        case DT_SYMTAB: symtab = absolute(dyn->d_un.d_ptr, base); break;
        case DT_STRTAB: strtab = absolute(dyn->d_un.d_ptr, base); break;
        default: break;
        }
    }
    if (!symtab || !strtab) return 0;
    const elf_sym *syms = (const elf_sym *)symtab;
    const char *strs = (const char *)strtab;
    if (jmprel && pltrel == DT_RELA)
        scan_relocations(g, base, (const elf_rela *)jmprel, jmprel_size, syms, strs);
    if (rela) scan_relocations(g, base, (const elf_rela *)rela, rela_size, syms, strs);
    return 1;
}

static void test_override(void)
{
    CHECK(wa_crypto_x25519_override_active());
    void *resolved = dlsym(RTLD_DEFAULT, "curve25519_donna");
    x25519_fn *fn;
    memcpy(&fn, &resolved, sizeof(fn));
    CHECK(fn == curve25519_donna);

    /* the library does have its own, which ours hides */
    x25519_fn *own = library_donna();
    CHECK(own != NULL && own != curve25519_donna);
    Dl_info where;
    void *own_addr;
    memcpy(&own_addr, &own, sizeof(own_addr));
    CHECK(own && dladdr(own_addr, &where) && where.dli_fname &&
          strstr(where.dli_fname, "libsignal-protocol-c"));

    /* a call through the library (a public key: curve25519_donna(pub, priv, 9)), then its slot */
    uint8_t priv[32] = {1, 2, 3};
    clamp(priv);
    ec_private_key *sk = NULL;
    ec_public_key *pk = NULL;
    CHECK_INT(curve_decode_private_point(&sk, priv, 32, wa_crypto_signal(crypto)), 0);
    CHECK_INT(curve_generate_public_key(&pk, sk), 0);
    if (pk) SIGNAL_UNREF(pk);
    if (sk) SIGNAL_UNREF(sk);
    got_search g = {.object = "libsignal-protocol-c", .symbol = "curve25519_donna"};
    dl_iterate_phdr(find_got_slot, &g);
    CHECK(g.found);
    x25519_fn *slot;
    memcpy(&slot, &g.value, sizeof(slot));
    CHECK(slot == curve25519_donna);
}

/* --- X25519 --- */

/* X25519(k, u) through curve25519_donna: the scalar clamped first, as RFC 7748 decodes it. */
static void x25519(uint8_t out[32], const uint8_t k[32], const uint8_t u[32])
{
    uint8_t e[32];
    memcpy(e, k, 32);
    clamp(e);
    CHECK_INT(curve25519_donna(out, e, u), 0);
}

static void test_x25519_rfc7748(void)
{
    static const char *const vectors[][3] = {
        {"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
         "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
         "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
        /* u has its top bit set: it must be ignored */
        {"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
         "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
         "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
    };
    uint8_t k[32], u[32], out[32];
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        unhex(vectors[i][0], k, 32);
        unhex(vectors[i][1], u, 32);
        x25519(out, k, u);
        CHECK(equals_hex(out, 32, vectors[i][2]));
    }

    /* iterated: k, u = X25519(k, u), k, starting from the base point */
    uint8_t old[32];
    memset(k, 0, 32);
    k[0] = 9;
    memcpy(u, k, 32);
    for (int i = 1; i <= 1000; i++) {
        memcpy(old, k, 32);
        x25519(out, k, u);
        memcpy(k, out, 32);
        memcpy(u, old, 32);
        if (i == 1)
            CHECK(equals_hex(k, 32,
                             "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"));
    }
    CHECK(equals_hex(k, 32, "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"));

    /* section 6.1: the public keys (base point 9) and the shared secret both ways */
    uint8_t a[32], b[32], a_pub[32], b_pub[32], nine[32] = {9};
    unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", a, 32);
    unhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", b, 32);
    x25519(a_pub, a, nine);
    x25519(b_pub, b, nine);
    const char *a_want = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const char *b_want = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    CHECK(equals_hex(a_pub, 32, a_want));
    CHECK(equals_hex(b_pub, 32, b_want));
    const char *shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    x25519(out, a, b_pub);
    CHECK(equals_hex(out, 32, shared));
    x25519(out, b, a_pub);
    CHECK(equals_hex(out, 32, shared));

    /* the same through libsignal's API (wa_x25519 -> curve_calculate_agreement) */
    CHECK_INT(wa_x25519(crypto, a, b_pub, out), WA_OK);
    CHECK(equals_hex(out, 32, shared));
    wa_keypair kp;
    CHECK_INT(wa_keypair_from_private(crypto, b, &kp), WA_OK);
    CHECK(memcmp(kp.pub, b_pub, 32) == 0);
}

/* Ours and the library's own give the same answer (and return value) for any input. */
static void test_x25519_same_as_library(void)
{
    x25519_fn *own = library_donna();
    if (!own) return; /* test_override failed already */
    uint8_t k[32], u[32], ours[32], theirs[32];
    int mismatches = 0;
    for (int i = 0; i < 200; i++) {
        CHECK_INT(wa_random(crypto, k, 32), WA_OK);
        CHECK_INT(wa_random(crypto, u, 32), WA_OK);
        if (i % 4 != 3) clamp(k); /* every fourth secret unclamped: the library's path */
        if (i % 2) u[31] |= 0x80; /* the top bit of u is ignored */
        int rc_ours = curve25519_donna(ours, k, u);
        int rc_theirs = own(theirs, k, u);
        if (rc_ours != rc_theirs || memcmp(ours, theirs, 32) != 0) mismatches++;
        /* the public key of the same secret (base point 9) */
        uint8_t nine[32] = {9};
        rc_ours = curve25519_donna(ours, k, nine);
        rc_theirs = own(theirs, k, nine);
        if (rc_ours != rc_theirs || memcmp(ours, theirs, 32) != 0) mismatches++;
    }
    CHECK_INT(mismatches, 0);

    /* low-order points (and non-canonical forms of them): 32 zero bytes and 0, as the library */
    static const char *const low_order[] = {
        "0000000000000000000000000000000000000000000000000000000000000000", /* 0 */
        "0100000000000000000000000000000000000000000000000000000000000000", /* 1 */
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p - 1 */
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p = 0 */
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p + 1 = 1 */
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", /* order 8 */
    };
    static const uint8_t zero[32];
    CHECK_INT(wa_random(crypto, k, 32), WA_OK);
    clamp(k);
    for (size_t i = 0; i < sizeof(low_order) / sizeof(low_order[0]); i++) {
        unhex(low_order[i], u, 32);
        memset(ours, 0xff, 32);
        CHECK_INT(curve25519_donna(ours, k, u), 0);
        CHECK(memcmp(ours, zero, 32) == 0);
        CHECK_INT(wa_x25519(crypto, k, u, ours), WA_ERR_CRYPTO); /* refused above the library */
    }
}

/* --- SHA-256, HMAC-SHA256, the provider's HMAC --- */

static void test_sha256(void)
{
    uint8_t out[32];
    wa_sha256((const uint8_t *)"", 0, out);
    CHECK(equals_hex(out, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    wa_sha256((const uint8_t *)"abc", 3, out);
    CHECK(equals_hex(out, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    wa_sha256((const uint8_t *)two_blocks, strlen(two_blocks), out);
    CHECK(equals_hex(out, 32, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    const char *long_msg = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmn"
                           "opjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    wa_sha256((const uint8_t *)long_msg, strlen(long_msg), out);
    CHECK(equals_hex(out, 32, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"));
    uint8_t *million = malloc(1000000);
    if (!million) exit(2);
    memset(million, 'a', 1000000);
    wa_sha256(million, 1000000, out);
    CHECK(equals_hex(out, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    free(million);
}

static void test_hmac_rfc4231(void)
{
    uint8_t key[131], data[152], out[32];
    /* 1 */
    memset(key, 0x0b, 20);
    wa_hmac_sha256(key, 20, (const uint8_t *)"Hi There", 8, out);
    CHECK(equals_hex(out, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
    /* 2: a key shorter than the output */
    const char *q = "what do ya want for nothing?";
    wa_hmac_sha256((const uint8_t *)"Jefe", 4, (const uint8_t *)q, strlen(q), out);
    CHECK(equals_hex(out, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
    /* 3 */
    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    wa_hmac_sha256(key, 20, data, 50, out);
    CHECK(equals_hex(out, 32, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"));
    /* 4 */
    for (int i = 0; i < 25; i++)
        key[i] = (uint8_t)(i + 1);
    memset(data, 0xcd, 50);
    wa_hmac_sha256(key, 25, data, 50, out);
    CHECK(equals_hex(out, 32, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"));
    /* 5: truncated to 128 bits */
    memset(key, 0x0c, 20);
    wa_hmac_sha256(key, 20, (const uint8_t *)"Test With Truncation", 20, out);
    CHECK(equals_hex(out, 16, "a3b6167473100ee06e0c796c2955552b"));
    /* 6, 7: a key longer than a block (hashed first) */
    memset(key, 0xaa, 131);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    wa_hmac_sha256(key, 131, (const uint8_t *)m6, strlen(m6), out);
    CHECK(equals_hex(out, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));
    const char *m7 = "This is a test using a larger than block-size key and a larger than "
                     "block-size data. The key needs to be hashed before being used by the HMAC "
                     "algorithm.";
    wa_hmac_sha256(key, 131, (const uint8_t *)m7, strlen(m7), out);
    CHECK(equals_hex(out, 32, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"));
}

/* The crypto provider's HMAC, as libsignal uses it: its HKDF (message version 3 = RFC 5869). */
static void test_provider_hkdf(void)
{
    uint8_t ikm[22], salt[13], info[10];
    memset(ikm, 0x0b, sizeof(ikm));
    for (int i = 0; i < 13; i++)
        salt[i] = (uint8_t)i;
    for (int i = 0; i < 10; i++)
        info[i] = (uint8_t)(0xf0 + i);
    for (int round = 0; round < 3; round++) { /* again: the provider reuses its HMAC contexts */
        hkdf_context *hkdf = NULL;
        CHECK_INT(hkdf_create(&hkdf, 3, wa_crypto_signal(crypto)), 0);
        if (!hkdf) return;
        uint8_t *okm = NULL;
        CHECK_INT(hkdf_derive_secrets(hkdf, &okm, ikm, sizeof(ikm), salt, sizeof(salt), info,
                                      sizeof(info), 42),
                  42);
        CHECK(okm && equals_hex(okm, 42,
                                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                                "34007208d5b887185865"));
        free(okm);
        okm = NULL;
        CHECK_INT(hkdf_derive_secrets(hkdf, &okm, ikm, sizeof(ikm), NULL, 0, NULL, 0, 42), 42);
        CHECK(okm && equals_hex(okm, 42,
                                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                                "9d201395faa4b61a96c8"));
        free(okm);
        SIGNAL_UNREF(hkdf);
    }
}

/* --- randomness --- */

static void test_random(void)
{
    /* golden mode: the stream is HMAC-SHA256(SHA-256(seed), counter), as before */
    wa_crypto *s1 = wa_crypto_new((const uint8_t *)"wabridge", 8);
    wa_crypto *s2 = wa_crypto_new((const uint8_t *)"wabridge", 8);
    CHECK(s1 && s2);
    if (s1 && s2) {
        uint8_t r1[40], r2[40];
        CHECK_INT(wa_random(s1, r1, 40), WA_OK);
        CHECK_INT(wa_random(s2, r2, 1), WA_OK);
        CHECK_INT(wa_random(s2, r2 + 1, 39), WA_OK);
        CHECK(memcmp(r1, r2, 40) == 0);
        CHECK(equals_hex(r1, 40,
                         "e55b87a470ce80918dab28b5a04509bd6a55120ccc60cae46f715e065f989fb9"
                         "d1c30ebf7a4e8454"));
    }
    wa_crypto_free(s1);
    wa_crypto_free(s2);

    /* the pool: one-byte draws over several refills cover every value */
    int seen[256] = {0}, distinct = 0;
    for (int i = 0; i < 20000; i++) {
        uint8_t b;
        CHECK_INT(wa_random(crypto, &b, 1), WA_OK);
        if (!seen[b]++) distinct++;
    }
    CHECK_INT(distinct, 256);
    /* 64-byte draws (the largest the pool serves) never repeat; then a large one, direct */
    uint8_t prev[64] = {0}, cur[64];
    int repeats = 0;
    for (int i = 0; i < 300; i++) {
        CHECK_INT(wa_random(crypto, cur, sizeof(cur)), WA_OK);
        if (memcmp(prev, cur, sizeof(cur)) == 0) repeats++;
        memcpy(prev, cur, sizeof(cur));
    }
    CHECK_INT(repeats, 0);
    uint8_t big[1000], zero[1000] = {0};
    CHECK_INT(wa_random(crypto, big, sizeof(big)), WA_OK);
    CHECK(memcmp(big, zero, sizeof(big)) != 0);

    /* a forked child draws other bytes than its parent, though it copied the parent's pool */
    uint8_t one;
    CHECK_INT(wa_random(crypto, &one, 1), WA_OK); /* the pool is full now */
    int fds[2];
    CHECK_INT(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        uint8_t child[32];
        int ok = wa_random(crypto, child, sizeof(child)) == WA_OK &&
                 write(fds[1], child, sizeof(child)) == (ssize_t)sizeof(child);
        _exit(ok ? 0 : 1);
    }
    CHECK(pid > 0);
    uint8_t parent[32], child[32];
    CHECK_INT(wa_random(crypto, parent, sizeof(parent)), WA_OK);
    close(fds[1]);
    ssize_t got = read(fds[0], child, sizeof(child));
    close(fds[0]);
    int status = 0;
    if (pid > 0) waitpid(pid, &status, 0);
    CHECK_INT(got, (ssize_t)sizeof(child));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(memcmp(parent, child, sizeof(parent)) != 0);
}

int main(void)
{
    crypto = wa_crypto_new(NULL, 0);
    if (!crypto) return 2;
    test_override();
    test_x25519_rfc7748();
    test_x25519_same_as_library();
    test_sha256();
    test_hmac_rfc4231();
    test_provider_hkdf();
    test_random();
    wa_crypto_free(crypto);
    return CHECK_DONE();
}
