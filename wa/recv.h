/*
 * wa/recv.h - receiving an encrypted <message> stanza, durably (DESIGN.md "Nothing is lost").
 *
 * For each <enc> of the stanza, in one store transaction: look the ciphertext's SHA-256 up in the
 * decrypted-event buffer (a redelivered stanza is answered from there: Signal decryption cannot
 * run twice), else decrypt (libsignal saves the advanced session or sender key through the store,
 * inside the transaction) and put the plaintext in the buffer; then commit. Only after the commit
 * may the caller ack the stanza and send the delivery receipt. If the commit fails nothing is
 * acked: the server redelivers and the whole step runs again from the stored state. The buffer row
 * is deleted by the bridge once the Matrix event id is stored.
 *
 * Groups (wa_recv_decrypt_sk): the pairwise parts (pkmsg / msg) are read first; a sender key
 * distribution message (SKDM) found in one is processed for (the stanza's chat, the sending
 * device) in the same transaction; then the skmsg part is decrypted with that sender's key. A
 * part whose Message only carries an SKDM is marked skdm_only: nothing to show, not buffered (a
 * redelivery finds it already read: Signal says "duplicate", WA_ERR_STATE).
 * Sans-I/O: the caller sends the nodes built by wa_recv_ack / wa_recv_receipt.
 */
#ifndef WA_RECV_H
#define WA_RECV_H

#include "wa/binary/node.h"
#include "wa/senderkey.h"
#include "wa/signal.h"
#include "wa/store.h"

#define WA_RECV_MAX_PARTS 4

typedef struct wa_received_part {
    wa_signal_type type; /* pkmsg or msg (pairwise parts; WA_SIGNAL_MSG for an skmsg) */
    bool skmsg;          /* a sender-key part (<enc type="skmsg">) of a group message */
    int error;           /* WA_OK, or why this part could not be read: WA_ERR_STATE = already
                            read (a duplicate: the stanza was handled before), WA_ERR_AUTH = no
                            session / sender key or a bad MAC (ask again), ... */
    bool from_buffer;    /* a redelivery, answered from the event buffer */
    bool skdm_only;      /* the Message only carried a sender key (processed): nothing to show,
                            not buffered, plaintext empty */
    uint8_t hash[32];    /* SHA-256 of the ciphertext: the part's key in the event buffer */
    wb_buf plaintext;    /* the Message protobuf (padding removed); caller frees */
} wa_received_part;

typedef struct wa_received {
    char id[128];                /* the message id */
    char chat[WA_JID_STR_MAX];   /* the stanza's from: the chat */
    char sender[WA_JID_STR_MAX]; /* the sending device: participant (groups) or from */
    char type[32];               /* text, media, ... */
    char notify[256];            /* the sender's push name, "" if none */
    uint64_t t;                  /* server timestamp, unix seconds */
    size_t nparts;
    wa_received_part parts[WA_RECV_MAX_PARTS];
} wa_received;

/* The Signal address of a device JID: name "user" (PN), "user_1" (LID), "user_128" (hosted),
 * "user_129" (hosted LID); device its device number. Returns WA_ERR_BAD_JID for other servers. */
int wa_signal_address(const wa_jid *jid, char *name, size_t cap, uint32_t *device);

/* Decrypts and stores msg's pairwise parts as described above (skmsg parts are left out). WA_OK
 * when everything that could be read is committed (parts carry their own errors: the caller
 * retries those with a retry receipt); a negative wa_err when the stanza is unusable
 * (WA_ERR_INVALID) or the store failed (WA_ERR_STATE: do not ack). Free with wa_received_free. */
int wa_recv_decrypt(wa_signal *sig, wa_store *store, const wa_node *msg, int64_t now_ms,
                    wa_received *out);
/* The same with sender keys (sk may be NULL: as wa_recv_decrypt): pairwise parts first, SKDMs
 * processed, then the skmsg of a stanza with a participant (group or broadcast), in the order
 * the parts are given in out->parts. */
int wa_recv_decrypt_sk(wa_signal *sig, wa_senderkey *sk, wa_store *store, const wa_node *msg,
                       int64_t now_ms, wa_received *out);
void wa_received_free(wa_received *r);

/* <receipt id to [participant]> (delivery) for a message we read. */
wa_node *wa_recv_receipt(wb_arena *a, const wa_node *msg);
/* A receipt for several messages: ids[0] is the receipt's own id attribute (set by the caller),
 * the others go into its <list><item id/>...</list> (nothing when n < 2). */
void wa_receipt_add_ids(wb_arena *a, wa_node *receipt, const char *const *ids, size_t n);
/* <ack class="message" id to [participant]> is implied by the receipt on WhatsApp; kept for
 * stanzas we cannot read at all. */
wa_node *wa_recv_ack(wb_arena *a, const wa_node *msg);

#endif
