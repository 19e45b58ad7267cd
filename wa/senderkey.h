/*
 * wa/senderkey.h - group sender keys for one login: libsignal-protocol-c's group session builder
 * and group cipher over the engine's store.
 *
 * A group message is encrypted once, with the sender's own chain ("sender key"), as an <enc
 * type="skmsg">. Every member device learns the key from a SenderKeyDistributionMessage (SKDM)
 * that the sender puts, pairwise encrypted (pkmsg/msg), into that device's <to> of the same
 * stanza, as Message.senderKeyDistributionMessage {groupId = 1, axolotlSenderKeyDistributionMessage
 * = 2} (wa_senderkey_message builds it, wa_senderkey_find reads it). When a member leaves, the
 * remaining senders forget their key (wa_senderkey_forget) so that the next message starts a new
 * chain the departed member never sees.
 *
 * A sender key is named by (group, sender): group is the group JID ("120363...@g.us"), sender is
 * the Signal address of the sending device (name and device, see wa_signal_address: "15551234567",
 * "123456789012345_1" for a LID). The store keeps the record under (group, "name:device"), like
 * Baileys' "group::name::device". Plaintexts carry WhatsApp's padding (wa_signal_pad), added and
 * removed here.
 *
 * Record size: every message skipped by a sender leaves one stored message key, and Baileys'
 * sender skips every other iteration, so a receiver's record grows by one key per message up to the
 * library's 2,000 (~78 KB, 12-15 ms per decrypt as the library rebuilds every key on load). The
 * store callback keeps only the newest WA_SENDERKEY_MAX_SKIPPED keys per chain: a message delayed
 * by more than that many skipped iterations cannot be read (the sender is asked again).
 *
 * One wa_senderkey per login and per thread, like wa_signal.
 */
#ifndef WA_SENDERKEY_H
#define WA_SENDERKEY_H

#include "util/bytes.h"
#include "wa/crypto.h"
#include "wa/err.h"
#include "wa/store.h"

#include <stdbool.h>
#include <stdint.h>

#define WA_SENDERKEY_MAX_SKIPPED 256 /* stored skipped message keys per chain (library: 2000) */

typedef struct wa_senderkey wa_senderkey;

/* The store is borrowed. NULL on failure (err set). */
wa_senderkey *wa_senderkey_new(wa_crypto *crypto, wa_store *store, int *err);
void wa_senderkey_free(wa_senderkey *sk);

/* Our sender key for group, with us as (name, device): creates it when there is none (new key id,
 * chain key and signing key), then appends the SenderKeyDistributionMessage bytes (version byte +
 * protobuf) of its current state to skdm. */
int wa_senderkey_create(wa_senderkey *sk, const char *group, const char *name, uint32_t device,
                        wb_buf *skdm);
/* Whether a sender key record exists for (group, name, device). */
bool wa_senderkey_has(wa_senderkey *sk, const char *group, const char *name, uint32_t device);
/* Forgets the key of (group, name, device): ours (the next wa_senderkey_create makes a new one,
 * after a member left) or a peer's. WA_OK also when there was none. */
int wa_senderkey_forget(wa_senderkey *sk, const char *group, const char *name, uint32_t device);

/* A peer's SKDM for group from device (name, device): adds its chain to the record (up to the
 * library's five chains per sender). WA_ERR_PROTO when skdm is not one. */
int wa_senderkey_process(wa_senderkey *sk, const char *group, const char *name, uint32_t device,
                         const uint8_t *skdm, size_t len);

/* Pads plaintext and encrypts it with our key (create it first), appending the signed
 * SenderKeyMessage (the <enc type="skmsg"> bytes) to out. WA_ERR_STATE when we have no key. */
int wa_senderkey_encrypt(wa_senderkey *sk, const char *group, const char *name, uint32_t device,
                         const uint8_t *plaintext, size_t len, wb_buf *out);
/* Decrypts a skmsg of (name, device) in group and unpads into plain (replaced). Errors:
 * WA_ERR_PROTO (not a SenderKeyMessage), WA_ERR_AUTH (no key for this sender or key id, bad
 * signature or ciphertext: ask for a retry, the sender distributes its key again), WA_ERR_STATE
 * (a message already read, or older than the stored keys), WA_ERR_BAD_PACKED (bad padding),
 * WA_ERR_CRYPTO. The advanced record is saved through the store (use the caller's transaction). */
int wa_senderkey_decrypt(wa_senderkey *sk, const char *group, const char *name, uint32_t device,
                         const uint8_t *ciphertext, size_t len, wb_buf *plain);

/* Appends Message{senderKeyDistributionMessage: {groupId: group, axolotlSenderKeyDistribution-
 * Message: skdm}} (the plaintext to encrypt pairwise for each device lacking our key). */
int wa_senderkey_message(const char *group, const uint8_t *skdm, size_t len, wb_buf *out);
/* Finds Message.senderKeyDistributionMessage in a decrypted Message (also inside a
 * deviceSentMessage). group/skdm point into p; group may be NULL. WA_OK, WA_ERR_UNSUPPORTED when
 * there is none, WA_ERR_PROTO when p is not a protobuf. Process it with the stanza's chat as the
 * group, not the groupId inside (a peer must not plant keys in another group). */
int wa_senderkey_find(const uint8_t *p, size_t len, const uint8_t **group, size_t *group_len,
                      const uint8_t **skdm, size_t *skdm_len);

/* Rewrites a serialized SenderKeyRecordStructure keeping only the newest `max` skipped message
 * keys of each chain; out is replaced. Exposed for tests. WA_ERR_PROTO on bytes that do not parse.
 */
int wa_senderkey_prune_record(const uint8_t *rec, size_t len, size_t max, wb_buf *out);

#endif
