/*
 * bench/bench_signal.c - Signal 1:1 sessions (wa/signal over libsignal-protocol-c, in-memory
 * stores): encrypt + decrypt per second, and the fan-out of one message to 100 devices.
 *
 * Two devices, Alice and Bob, each with its own wa_store_mem and wa_signal. Alice starts from Bob's
 * bundle, Bob reads her pkmsg and answers, so every measured message is a `msg` on an established
 * session. One "op" is one ~100-byte message encrypted by one side and decrypted by the other
 * (WhatsApp's padding included):
 *   - "one way": Alice sends, Bob reads (the symmetric ratchet: a chain-key step per message);
 *   - "alternating": the sender switches every message (a DH ratchet step per message, as in a
 *     chat where both answer each other).
 * Fan-out: Alice has sessions with 100 devices (each answered once, so all are `msg` sessions) and
 * encrypts one message for all of them; the figure is milliseconds per message (100 encryptions).
 * Group (wa/senderkey): one message to a group of those 100 devices. "first" is the message after
 * a key change (a member left, or the first one): a new sender key, its SenderKeyDistribution-
 * Message wrapped in a Message and encrypted pairwise for each of the 100 devices, plus the text
 * once as a skmsg; "steady" is every later message: the text once as a skmsg, averaged over the
 * first 100 messages of a new key (Baileys' sender record grows by one skipped key per message, so
 * a fixed window keeps the reference comparable). Checked once: a device reads the SKDM and
 * decrypts the skmsg.
 * bench/bench_signal_node.mjs does the same work with libsignal 6.0.0 from npm; bench/run prints
 * both and the ratios. Each figure is the median of 3 rounds; times are CPU time of the process
 * (user + system), not wall time, so that other work sharing the machine skews them less. Prints
 * one JSON line ("x25519_openssl": whether libsignal-protocol-c's X25519 calls reach wa/crypto.c's
 * OpenSSL-backed curve25519_donna, as they should). bench_signal [SECONDS per measurement, split
 * among its rounds]
 * [one_way|alternating|fanout|group: only this, for perf]
 */
#include "wa/senderkey.h"
#include "wa/signal.h"
#include "wa/store_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MSG_LEN      100 /* bytes of plaintext per message */
#define FANOUT       100 /* devices one message goes to */
#define FANOUT_ROUND 10  /* fan-out messages between clock reads */
#define GROUP        "120363000000000042@g.us"
#define STEADY_BATCH 100 /* group messages timed per new key */
#define ROUNDS       3   /* rounds per measurement (SECONDS split among them); the median counts */

typedef struct device {
    wa_store store; /* in memory */
    wa_device dev;  /* identity, signed prekey, registration id */
    wa_signal *sig; /* sessions over store */
} device;

static wa_crypto *crypto;

/* CPU seconds of this process: other work on the machine changes them less than wall time. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_signal: %s failed (%d)\n", what, rc);
    exit(1);
}

static void device_init(device *d, uint32_t reg_id)
{
    memset(d, 0, sizeof(*d));
    if (wa_store_mem_new(&d->store) != WA_STORE_OK) die("store", 0);
    wa_keypair_generate(crypto, &d->dev.noise);
    wa_keypair_generate(crypto, &d->dev.identity);
    wa_keypair_generate(crypto, &d->dev.signed_prekey);
    d->dev.signed_prekey_id = 7;
    d->dev.registration_id = reg_id;
    uint8_t msg[33] = {0x05};
    memcpy(msg + 1, d->dev.signed_prekey.pub, 32);
    wa_xeddsa_sign(crypto, d->dev.identity.priv, msg, 33, d->dev.signed_prekey_sig);
    d->store.device_save(d->store.ctx, &d->dev);
    int err = 0;
    d->sig = wa_signal_new(crypto, &d->store, &err);
    if (!d->sig) die("wa_signal_new", err);
}

static void device_free(device *d)
{
    wa_signal_free(d->sig);
    d->store.destroy(d->store.ctx);
}

/* d's bundle with a fresh one-time prekey. */
static wa_prekey_bundle bundle_of(device *d, uint32_t prekey_id)
{
    wa_prekey_bundle b = {.registration_id = d->dev.registration_id,
                          .signed_prekey_id = d->dev.signed_prekey_id,
                          .has_prekey = true,
                          .prekey_id = prekey_id};
    memcpy(b.signed_prekey, d->dev.signed_prekey.pub, 32);
    memcpy(b.signature, d->dev.signed_prekey_sig, 64);
    memcpy(b.identity, d->dev.identity.pub, 32);
    wa_prekey pk = {.id = prekey_id};
    wa_keypair_generate(crypto, &pk.key);
    d->store.prekeys_save(d->store.ctx, &pk, 1);
    memcpy(b.prekey, pk.key.pub, 32);
    return b;
}

/* from encrypts pt for (to_name, to_dev); to decrypts it from (from_name, 1) and checks it. */
static void transfer(device *from, const char *to_name, uint32_t to_dev, device *to,
                     const char *from_name, const uint8_t *pt, wb_buf *ct, wb_buf *plain)
{
    wa_signal_type type;
    ct->len = 0;
    int rc = wa_signal_encrypt(from->sig, to_name, to_dev, pt, MSG_LEN, ct, &type);
    if (rc != WA_OK) die("encrypt", rc);
    rc = wa_signal_decrypt(to->sig, from_name, 1, type, ct->data, ct->len, plain);
    if (rc != WA_OK) die("decrypt", rc);
    if (plain->len != MSG_LEN || memcmp(plain->data, pt, MSG_LEN) != 0) die("round trip", 0);
}

/* Messages per second for `seconds`: alternating switches the sender every message. */
static double measure_pair(device *alice, device *bob, bool alternating, double seconds)
{
    uint8_t pt[MSG_LEN];
    memset(pt, 'x', sizeof(pt));
    wb_buf ct, plain;
    wb_buf_init(&ct);
    wb_buf_init(&plain);
    long n = 0;
    double start = now_s(), end = start + seconds, t = start;
    while (t < end) {
        for (int i = 0; i < 100; i++, n++) {
            memcpy(pt, &n, sizeof(n)); /* every message differs */
            if (alternating && (n & 1))
                transfer(bob, "alice", 1, alice, "bob", pt, &ct, &plain);
            else
                transfer(alice, "bob", 1, bob, "alice", pt, &ct, &plain);
        }
        t = now_s();
    }
    wb_buf_free(&ct);
    wb_buf_free(&plain);
    return (double)n / (t - start);
}

/* Milliseconds per message of a 1:1 fan-out to the FANOUT devices "peer0".."peer99". */
static double measure_fanout(device *alice, double seconds)
{
    uint8_t pt[MSG_LEN];
    memset(pt, 'f', sizeof(pt));
    wb_buf ct;
    wb_buf_init(&ct);
    char name[32];
    long messages = 0;
    double start = now_s(), t = start;
    while (t < start + seconds) {
        for (int r = 0; r < FANOUT_ROUND; r++, messages++) {
            for (int i = 0; i < FANOUT; i++) {
                snprintf(name, sizeof(name), "peer%d", i);
                wa_signal_type type;
                ct.len = 0;
                int rc = wa_signal_encrypt(alice->sig, name, 1, pt, MSG_LEN, &ct, &type);
                if (rc != WA_OK || type != WA_SIGNAL_MSG) die("fan-out encrypt", rc);
            }
        }
        t = now_s();
    }
    wb_buf_free(&ct);
    return (t - start) * 1000.0 / (double)messages;
}

static double median3(double a, double b, double c)
{
    if (a > b) {
        double x = a;
        a = b;
        b = x;
    }
    return c < a ? a : c > b ? b : c;
}

/* One group message after a key change: new key, SKDM to every device pairwise, the text once. */
static void group_first(wa_senderkey *sk, device *alice, const uint8_t *pt, wb_buf *skdm,
                        wb_buf *skdm_msg, wb_buf *ct)
{
    char name[32];
    int rc = wa_senderkey_forget(sk, GROUP, "alice", 1);
    skdm->len = skdm_msg->len = 0;
    if (rc == WA_OK) rc = wa_senderkey_create(sk, GROUP, "alice", 1, skdm);
    if (rc == WA_OK) rc = wa_senderkey_message(GROUP, skdm->data, skdm->len, skdm_msg);
    for (int i = 0; rc == WA_OK && i < FANOUT; i++) {
        snprintf(name, sizeof(name), "peer%d", i);
        wa_signal_type type;
        ct->len = 0;
        rc = wa_signal_encrypt(alice->sig, name, 1, skdm_msg->data, skdm_msg->len, ct, &type);
    }
    ct->len = 0;
    if (rc == WA_OK) rc = wa_senderkey_encrypt(sk, GROUP, "alice", 1, pt, MSG_LEN, ct);
    if (rc != WA_OK) die("group message", rc);
}

static void measure_group(device *alice, device *devs, double seconds, double *first_ms,
                          double *steady_us)
{
    int rc = 0;
    wa_senderkey *sk = wa_senderkey_new(crypto, &alice->store, &rc);
    wa_senderkey *reader = wa_senderkey_new(crypto, &devs[0].store, &rc);
    if (!sk || !reader) die("wa_senderkey_new", rc);
    uint8_t pt[MSG_LEN];
    memset(pt, 'g', sizeof(pt));
    wb_buf skdm, skdm_msg, ct, plain;
    wb_buf_init(&skdm);
    wb_buf_init(&skdm_msg);
    wb_buf_init(&ct);
    wb_buf_init(&plain);
    /* checked once: device 0 reads the key and the message */
    group_first(sk, alice, pt, &skdm, &skdm_msg, &ct);
    rc = wa_senderkey_process(reader, GROUP, "alice", 1, skdm.data, skdm.len);
    if (rc == WA_OK) rc = wa_senderkey_decrypt(reader, GROUP, "alice", 1, ct.data, ct.len, &plain);
    if (rc != WA_OK || plain.len != MSG_LEN || memcmp(plain.data, pt, MSG_LEN) != 0)
        die("group round trip", rc);

    double first[ROUNDS], steady[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        long n = 0;
        double start = now_s(), t = start;
        while (t < start + seconds / ROUNDS) {
            group_first(sk, alice, pt, &skdm, &skdm_msg, &ct);
            n++;
            t = now_s();
        }
        first[round] = (t - start) * 1000.0 / (double)n;
    }
    for (int round = 0; round < ROUNDS; round++) {
        /* the first STEADY_BATCH messages on a new key, again and again; only those are timed */
        long n = 0;
        double spent = 0;
        while (spent < seconds / ROUNDS) {
            skdm.len = 0;
            rc = wa_senderkey_forget(sk, GROUP, "alice", 1);
            if (rc == WA_OK) rc = wa_senderkey_create(sk, GROUP, "alice", 1, &skdm);
            if (rc != WA_OK) die("group key", rc);
            double start = now_s();
            for (int i = 0; i < STEADY_BATCH; i++, n++) {
                ct.len = 0;
                memcpy(pt, &n, sizeof(n));
                rc = wa_senderkey_encrypt(sk, GROUP, "alice", 1, pt, MSG_LEN, &ct);
                if (rc != WA_OK) die("group encrypt", rc);
            }
            spent += now_s() - start;
        }
        steady[round] = spent * 1e6 / (double)n;
    }
    *first_ms = median3(first[0], first[1], first[2]);
    *steady_us = median3(steady[0], steady[1], steady[2]);
    wa_senderkey_free(reader);
    wa_senderkey_free(sk);
    wb_buf_free(&skdm);
    wb_buf_free(&skdm_msg);
    wb_buf_free(&ct);
    wb_buf_free(&plain);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    if (seconds <= 0) seconds = 3.0;
    const char *only = argc > 2 ? argv[2] : "";
    crypto = wa_crypto_new(NULL, 0);
    if (!crypto) die("wa_crypto_new", 0);

    /* 1. a pair: Alice starts from Bob's bundle, Bob answers once */
    device alice, bob;
    device_init(&alice, 1001);
    device_init(&bob, 1002);
    wa_prekey_bundle b = bundle_of(&bob, 1);
    int rc = wa_signal_process_bundle(alice.sig, "bob", 1, &b);
    if (rc != WA_OK) die("process_bundle", rc);
    uint8_t pt[MSG_LEN];
    memset(pt, 'x', sizeof(pt));
    wb_buf ct, plain;
    wb_buf_init(&ct);
    wb_buf_init(&plain);
    transfer(&alice, "bob", 1, &bob, "alice", pt, &ct, &plain);
    transfer(&bob, "alice", 1, &alice, "bob", pt, &ct, &plain);
    measure_pair(&alice, &bob, false, seconds / 10); /* warm-up */
    double one_way = 0, alternating = 0, r[ROUNDS];
    if (!*only || strcmp(only, "one_way") == 0) {
        for (int i = 0; i < ROUNDS; i++)
            r[i] = measure_pair(&alice, &bob, false, seconds / ROUNDS);
        one_way = median3(r[0], r[1], r[2]);
    }
    if (!*only || strcmp(only, "alternating") == 0) {
        for (int i = 0; i < ROUNDS; i++)
            r[i] = measure_pair(&alice, &bob, true, seconds / ROUNDS);
        alternating = median3(r[0], r[1], r[2]);
    }

    /* 2. fan-out: Alice and 100 devices, each session answered once */
    int nfan = !*only || strcmp(only, "fanout") == 0 || strcmp(only, "group") == 0 ? FANOUT : 0;
    device *devs = calloc(FANOUT, sizeof(*devs));
    if (!devs) die("calloc", 0);
    char name[32];
    for (int i = 0; i < nfan; i++) {
        device_init(&devs[i], 2000 + (uint32_t)i);
        snprintf(name, sizeof(name), "peer%d", i);
        b = bundle_of(&devs[i], 1);
        rc = wa_signal_process_bundle(alice.sig, name, 1, &b);
        if (rc != WA_OK) die("process_bundle", rc);
        transfer(&alice, name, 1, &devs[i], "alice", pt, &ct, &plain);
        transfer(&devs[i], "alice", 1, &alice, name, pt, &ct, &plain);
    }
    double fanout_ms = 0;
    if (nfan && strcmp(only, "group") != 0) {
        for (int i = 0; i < ROUNDS; i++)
            r[i] = measure_fanout(&alice, seconds / ROUNDS);
        fanout_ms = median3(r[0], r[1], r[2]);
    }

    /* 3. a group of the 100 devices */
    double group_first_ms = 0, group_steady_us = 0;
    if (nfan) measure_group(&alice, devs, seconds, &group_first_ms, &group_steady_us);

    printf("{\"msg_len\":%d,\"one_way_per_s\":%.0f,\"alternating_per_s\":%.0f,"
           "\"fanout_devices\":%d,\"fanout_ms\":%.3f,\"group_first_ms\":%.3f,"
           "\"group_steady_us\":%.1f,\"x25519_openssl\":%s}\n",
           MSG_LEN, one_way, alternating, FANOUT, fanout_ms, group_first_ms, group_steady_us,
           wa_crypto_x25519_override_active() ? "true" : "false");

    for (int i = 0; i < nfan; i++)
        device_free(&devs[i]);
    free(devs);
    device_free(&alice);
    device_free(&bob);
    wb_buf_free(&ct);
    wb_buf_free(&plain);
    wa_crypto_free(crypto);
    return 0;
}
