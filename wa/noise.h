/*
 * wa/noise.h - WhatsApp's Noise_XX_25519_AESGCM_SHA256 handshake, transport cipher, framing and the
 * server certificate chain. Sans-I/O: functions take received bytes and append bytes to send.
 *
 * The initiator (the engine) and the responder (the simulator) are one state machine seen from two
 * sides. Steps are named after the Noise paper: mix_hash, mix_key, encrypt_and_hash,
 * decrypt_and_hash, split. WhatsApp's deviations: the 32-byte protocol name is h0 as it is (not
 * hashed), the prologue is the intro header "WA" 6 3, AES-GCM's IV is 8 zero bytes and a 32-bit
 * big-endian counter, and the handshake messages are HandshakeMessage protobufs.
 *
 * On the wire every frame is a 3-byte big-endian length and a payload; the client's first bytes are
 * the intro header (optionally preceded by ED 00 01 + 3-byte length + routing info). After the
 * handshake every payload is AES-GCM(key, counter) of a flag byte and a binary node.
 */
#ifndef WA_NOISE_H
#define WA_NOISE_H

#include "util/bytes.h"
#include "wa/binary/node.h"
#include "wa/crypto.h"
#include "wa/err.h"

#include <stdbool.h>
#include <stdint.h>

#define WA_NOISE_PROTOCOL  "Noise_XX_25519_AESGCM_SHA256\0\0\0\0" /* exactly 32 bytes: h0 */
#define WA_NOISE_INTRO_LEN 4
extern const uint8_t wa_noise_intro[WA_NOISE_INTRO_LEN]; /* 'W' 'A' 6 3 (dictionary version 3) */
/* WhatsApp's long-term root ("WhatsAppLongTerm1"): the default trust root of the engine. */
extern const uint8_t wa_noise_whatsapp_root[WA_KEY_LEN];
#define WA_FRAME_MAX ((1u << 24) - 1) /* 3-byte length */

typedef enum wa_noise_role { WA_NOISE_INITIATOR, WA_NOISE_RESPONDER } wa_noise_role;

typedef enum wa_noise_state {
    WA_NOISE_START = 0,         /* nothing sent or received */
    WA_NOISE_SENT_HELLO,        /* initiator: clientHello sent, waiting for serverHello */
    WA_NOISE_SENT_SERVER_HELLO, /* responder: serverHello sent, waiting for clientFinish */
    WA_NOISE_TRANSPORT,         /* split done: frames are encrypted */
    WA_NOISE_FAILED,            /* a step failed; the connection must be dropped */
} wa_noise_state;

typedef struct wa_noise {
    wa_crypto *crypto;    /* not owned */
    wa_noise_role role;   /* which side we are */
    wa_noise_state state; /* see above */
    uint8_t h[32];        /* handshake hash */
    uint8_t ck[32];       /* chaining key; secret */
    uint8_t k[32];        /* handshake cipher key; secret */
    uint32_t n;           /* handshake nonce, reset by mix_key */
    wa_keypair e;         /* our ephemeral key pair; secret, wiped after the handshake */
    uint8_t re[32];       /* the peer's ephemeral public key */
    uint8_t rs[32];       /* the peer's static public key, once known */
    uint8_t send_key[32]; /* transport: key we encrypt with; secret */
    uint8_t recv_key[32]; /* transport: key we decrypt with; secret */
    uint32_t send_n;      /* transport: frames encrypted so far */
    uint32_t recv_n;      /* transport: frames decrypted so far */
} wa_noise;

/* What the initiator accepts from the server: a chain ending at `root`, valid at `now`. */
typedef struct wa_cert_policy {
    uint8_t root[WA_KEY_LEN]; /* root public key (wa_noise_whatsapp_root by default) */
    uint64_t now;             /* unix seconds, compared with notBefore/notAfter; 0 skips dates */
} wa_cert_policy;

/* Starts a handshake. `ephemeral` may be NULL (a fresh key is generated) or fixed for tests. */
int wa_noise_init(wa_noise *ns, wa_crypto *c, wa_noise_role role, const wa_keypair *ephemeral);
/* Wipes every secret. */
void wa_noise_clear(wa_noise *ns);

/* Initiator, step 1: appends the intro header and the clientHello frame to out. */
int wa_noise_client_hello(wa_noise *ns, wb_buf *out);
/* Initiator, step 2: reads the serverHello payload (one frame, without its length), verifies the
 * server's certificate chain against policy, and appends the clientFinish frame carrying our static
 * key `noise_key` and the encrypted ClientPayload `payload`. Then switches to transport. */
int wa_noise_client_finish(wa_noise *ns, const uint8_t *server_hello, size_t len,
                           const wa_cert_policy *policy, const wa_keypair *noise_key,
                           const uint8_t *payload, size_t payload_len, wb_buf *out, wa_errinfo *ei);

/* Responder, step 1: reads the clientHello payload and appends the serverHello frame, proving
 * `server_static` and carrying `cert_chain` (CertChain protobuf bytes). */
int wa_noise_server_hello(wa_noise *ns, const uint8_t *client_hello, size_t len,
                          const wa_keypair *server_static, const uint8_t *cert_chain,
                          size_t cert_len, wb_buf *out, wa_errinfo *ei);
/* Responder, step 2: reads clientFinish; puts the client's static key in client_static and the
 * decrypted ClientPayload in payload; switches to transport. */
int wa_noise_server_finish(wa_noise *ns, const uint8_t *client_finish, size_t len,
                           uint8_t client_static[WA_KEY_LEN], wb_buf *payload, wa_errinfo *ei);

/* Transport: appends one frame (length + ciphertext of plaintext) to out. */
int wa_noise_send(wa_noise *ns, const uint8_t *plaintext, size_t len, wb_buf *out);
/* Transport: packs a node as a frame payload (flag byte 0) and sends it as wa_noise_send does. */
int wa_noise_send_node(wa_noise *ns, const wa_node *n, wb_buf *out);
/* Transport: decrypts one frame payload into out (replacing its contents). WA_ERR_AUTH on a bad
 * tag: the connection is then unusable (state FAILED). */
int wa_noise_recv(wa_noise *ns, const uint8_t *frame, size_t len, wb_buf *out);

/* Appends a plain frame (3-byte length + bytes). */
int wa_frame_write(wb_buf *out, const uint8_t *p, size_t len);

/* Splits a byte stream into frames. The responder's reader first strips the client's intro. */
typedef struct wa_frame_reader {
    wb_buf buf;        /* bytes received and not yet consumed */
    size_t start;      /* offset of the first unconsumed byte in buf */
    size_t max_frame;  /* frames longer than this are an error (WA_ERR_TOO_LARGE) */
    bool expect_intro; /* responder: the stream starts with the intro header */
    bool failed;       /* an error was returned; everything after is refused */
} wa_frame_reader;

void wa_frame_reader_init(wa_frame_reader *r, bool expect_intro, size_t max_frame);
void wa_frame_reader_free(wa_frame_reader *r);
int wa_frame_reader_push(wa_frame_reader *r, const uint8_t *p, size_t len);
/* 1 and a frame (valid until the next push or next call), 0 when more bytes are needed, or a
 * negative wa_err (bad intro, oversized frame). */
int wa_frame_reader_next(wa_frame_reader *r, const uint8_t **frame, size_t *len, wa_errinfo *ei);

/* --- certificate chain --- */
typedef struct wa_cert_params {
    uint32_t intermediate_serial; /* the leaf's issuerSerial must equal it */
    uint32_t leaf_serial;
    uint64_t not_before; /* unix seconds */
    uint64_t not_after;
} wa_cert_params;

/* Simulator: builds CertChain{leaf, intermediate}: the intermediate (issuerSerial 0, key =
 * intermediate.pub) signed by root, the leaf (key = server_static_pub) signed by intermediate. */
int wa_cert_chain_build(wa_crypto *c, const wa_keypair *root, const wa_keypair *intermediate,
                        const uint8_t server_static_pub[WA_KEY_LEN], const wa_cert_params *params,
                        wb_buf *out);
/* Engine: checks a CertChain against policy and the server's static key. WA_ERR_CERT with the
 * reason in ei: wrong root/bad signature, wrong issuer serial, expired or not yet valid, leaf key
 * that is not the server's static key, malformed. */
int wa_cert_chain_verify(wa_crypto *c, const uint8_t *chain, size_t len,
                         const wa_cert_policy *policy, const uint8_t server_static_pub[WA_KEY_LEN],
                         wa_errinfo *ei);

#endif
