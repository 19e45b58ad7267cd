/*
 * wa/signal.h - Signal sessions for one login: libsignal-protocol-c over the engine's store.
 *
 * The library's stores (sessions, identities, one-time and signed prekeys) are callbacks into the
 * login's wa_store, so every advanced session is written where the caller's transaction is (see
 * wa/store.h begin/commit: "store the plaintext and the session, then ack"). WhatsApp's flavour:
 * message version 3, 32-byte raw keys on the wire (33 with the 0x05 prefix inside Signal), and
 * 1..16 bytes of padding, each equal to the pad length, added before encryption and removed after
 * decryption (neither library does it). Addresses are (name, device): name is the JID's user with
 * its agent ("15551234567", "123456789012345_1" for a LID), device its device number.
 *
 * A device has one session whichever JID a stanza names it by (WhatsApp's clients keep sessions
 * and identities by LID since LIDs came): a phone-number address whose LID the store's map knows
 * (lid_for_pn) is stored under its LID address, and a session kept under the phone number before
 * the map knew it moves to the LID address the first time it is used. Callers may pass either.
 *
 * One wa_signal per login and per thread (the library's objects are not thread-safe).
 */
#ifndef WA_SIGNAL_H
#define WA_SIGNAL_H

#include "util/bytes.h"
#include "wa/crypto.h"
#include "wa/err.h"
#include "wa/store.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct wa_signal wa_signal;

/* phone-number names whose LID (or its absence) a wa_signal keeps */
#define WA_SIGNAL_LID_CACHE 64

typedef enum wa_signal_type {
    WA_SIGNAL_MSG = 0,   /* <enc type="msg">: a message on an established session */
    WA_SIGNAL_PKMSG = 1, /* <enc type="pkmsg">: the first messages, carrying the prekey setup */
} wa_signal_type;

/* A peer device's keys from the server (encrypt <key> answer). */
typedef struct wa_prekey_bundle {
    uint32_t registration_id;
    bool has_prekey;    /* the server may have run out of one-time prekeys */
    uint32_t prekey_id; /* 24 bits */
    uint8_t prekey[WA_KEY_LEN];
    uint32_t signed_prekey_id; /* 24 bits */
    uint8_t signed_prekey[WA_KEY_LEN];
    uint8_t signature[WA_SIG_LEN]; /* the identity's XEdDSA signature over 0x05 || signed_prekey */
    uint8_t identity[WA_KEY_LEN];
} wa_prekey_bundle;

/* The store is borrowed and must hold this login's device (wa_device). NULL on failure. */
wa_signal *wa_signal_new(wa_crypto *crypto, wa_store *store, int *err);
/* Frees s. The sessions it kept in memory (see wa/signal.c, WA_SIGNAL_RESERVE) are stored as
 * they are first, so that they resume without a gap (nothing is written when the store's epoch
 * moved since). */
void wa_signal_free(wa_signal *s);
/* Lets the kept sessions go without storing them (as a crash would: they resume at their stored
 * resume index). Before a wipe of the store (logout), and in tests. */
void wa_signal_forget_kept(wa_signal *s);

/* Starts a session with a peer device from its bundle (checks the signed prekey's signature). */
int wa_signal_process_bundle(wa_signal *s, const char *name, uint32_t device,
                             const wa_prekey_bundle *bundle);
bool wa_signal_has_session(wa_signal *s, const char *name, uint32_t device);

/* Pads plaintext, encrypts it for (name, device) and appends the ciphertext to out. */
int wa_signal_encrypt(wa_signal *s, const char *name, uint32_t device, const uint8_t *plaintext,
                      size_t len, wb_buf *out, wa_signal_type *type);
/* Decrypts and unpads into plain (replaced). Errors: WA_ERR_PROTO (not a Signal message),
 * WA_ERR_AUTH (bad MAC, unknown prekey, no session), WA_ERR_STATE (duplicate message),
 * WA_ERR_BAD_PACKED (bad padding), WA_ERR_CRYPTO. */
int wa_signal_decrypt(wa_signal *s, const char *name, uint32_t device, wa_signal_type type,
                      const uint8_t *ciphertext, size_t len, wb_buf *plain);

/* Identity keys: trusted on first use, and a peer device whose key changes (a pkmsg or a bundle
 * carrying another key than the stored one: the contact re-registered) is trusted again, as
 * WhatsApp does: its old session is dropped before the new one is made (and put back if the new
 * key's message or bundle turns out unusable), the new key stored. True once after a call of
 * wa_signal_process_bundle or wa_signal_decrypt that did so (the caller raises "security code
 * changed"); calling it also clears the mark (do so after a rolled-back transaction). */
bool wa_signal_take_identity_change(wa_signal *s);
/* The store's LID <-> phone number map changed (lid_map_save, lid_map_delete) for the user whose
 * phone-number Signal name is pn ("15551234567"; NULL: any user): what the wa_signal remembered of
 * the map is dropped, and the sessions it keeps under that user's phone-number keys (every kept
 * one for NULL) are stored as they are, from where a load by LID moves them. */
void wa_signal_lids_changed(wa_signal *s, const char *pn);
/* Forgets every session and stored identity of a user's devices (name as in wa_signal_address):
 * the server said its identity changed, so the next message starts over from fresh keys. */
int wa_signal_forget_user(wa_signal *s, const char *name);

/* WhatsApp's padding, exposed for tests and for sender-key messages. */
int wa_signal_pad(wa_crypto *c, const uint8_t *p, size_t len, wb_buf *out);
/* The unpadded length of p[0..len), or -1 when the padding is invalid. */
long wa_signal_unpadded_len(const uint8_t *p, size_t len);

#endif
