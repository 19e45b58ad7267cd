/*
 * wa/message.h - the Message protobuf shapes the engine builds and reads itself, by hand over
 * wb_buf / wb_cur (no generated code: a Message has a hundred fields and we read a handful).
 *
 * The parsed form (wa_msg) is what the bridge shows: a text (conversation = 1, or
 * extendedTextMessage = 6 {text = 1, contextInfo = 17}), an edit (protocolMessage = 12 of type
 * MESSAGE_EDIT = 14 with editedMessage = 14, as current clients send it wrapped in
 * Message.editedMessage = 58 {message = 1}, or bare as Baileys sends it), a reaction
 * (reactionMessage = 46 {key = 1, text = 2, senderTimestampMs = 4}), a revoke (protocolMessage
 * type REVOKE = 0 with key = 1), the name of any other content for a notice, and a
 * senderKeyDistributionMessage (= 2 {groupId = 1, axolotlSenderKeyDistributionMessage = 2}) for the
 * group code. A deviceSentMessage (= 31 {destinationJid = 1, message = 2}), the copy our other
 * devices get, is opened and its destination kept; ephemeralMessage (40), documentWithCaption (53),
 * groupMentioned (62) and lottieSticker (74) wrappers are opened too. MessageKey = {remoteJid = 1,
 * fromMe = 2, id = 3, participant = 4}; ContextInfo = {stanzaId = 1, participant = 2,
 * quotedMessage = 3, mentionedJid = 15}. Field numbers are WAProto.proto's (the live tests check
 * them against unmodified Baileys both ways).
 */
#ifndef WA_MESSAGE_H
#define WA_MESSAGE_H

#include "util/bytes.h"
#include "wa/binary/jid.h"
#include "wa/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WA_MSG_MAX_MENTIONS 1024 /* mentionedJid entries kept; more are ignored */
#define WA_MSG_MAX_DEPTH    8    /* nested Messages (copies, wrappers, edits, quotes) we open */

/* Appends Message{conversation: text}. */
int wa_message_text(const char *text, size_t len, wb_buf *out);
/* Appends Message{deviceSentMessage: {destinationJid, message: inner}}. */
int wa_message_device_sent(const char *destination_jid, const uint8_t *inner, size_t inner_len,
                           wb_buf *out);
/* Finds the text of a Message (conversation or extendedTextMessage.text, looking inside a
 * deviceSentMessage, whose destination goes to dest when not NULL). Points into p. WA_OK, or
 * WA_ERR_UNSUPPORTED when the message has no text, WA_ERR_PROTO when it is not a protobuf. */
int wa_message_get_text(const uint8_t *p, size_t len, const uint8_t **text, size_t *text_len,
                        const uint8_t **dest, size_t *dest_len);

typedef enum wa_msg_kind {
    WA_MSG_NONE = 0, /* nothing to show (protocol messages we ignore, a bare
                        senderKeyDistributionMessage) */
    WA_MSG_TEXT,
    WA_MSG_EDIT,
    WA_MSG_REACTION,
    WA_MSG_REVOKE,
    WA_MSG_UNSUPPORTED
} wa_msg_kind;

/* A MessageKey: which message an edit, reaction or revoke acts on, from its sender's point of
 * view (from_me = the message is the sender's own). */
typedef struct wa_msg_key {
    char id[128];                     /* the message id */
    char remote_jid[WA_JID_STR_MAX];  /* the chat */
    char participant[WA_JID_STR_MAX]; /* groups: who wrote it when it is not from_me; "" in 1:1 */
    bool from_me;
} wa_msg_key;

typedef struct wa_msg {
    wa_msg_kind kind;
    /* TEXT / EDIT: the (new) text, malloc'd ("" for an edit without text); NULL otherwise */
    char *text;
    /* contextInfo.mentionedJid, malloc'd (each and the array); n_mentions entries */
    char **mentions;
    size_t n_mentions;
    /* a reply: contextInfo.stanzaId of the quoted message ("" = not a reply), its
     * contextInfo.participant, and the quoted text (quotedMessage; malloc'd, NULL = none; sent as
     * quotedMessage.conversation) */
    char reply_id[128];
    char reply_sender[WA_JID_STR_MAX];
    char *reply_text;
    /* EDIT / REACTION / REVOKE: the message acted on */
    wa_msg_key target;
    /* REACTION: the emoji; "" = reaction removed */
    char reaction[64];
    /* EDIT: protocolMessage.timestampMs, REACTION: senderTimestampMs (unix ms); 0 = absent */
    int64_t timestamp_ms;
    /* set when it came as a deviceSentMessage (our other device): the chat it went to */
    char dest_jid[WA_JID_STR_MAX];
    /* UNSUPPORTED: the Message field's name, e.g. "imageMessage" ("field 123" when unknown) */
    char unsupported[64];
    /* senderKeyDistributionMessage (for the group code): axolotlSenderKeyDistributionMessage,
     * malloc'd (NULL = none), skdm_len bytes, and its groupId */
    uint8_t *skdm;
    size_t skdm_len;
    char skdm_group[WA_JID_STR_MAX];
} wa_msg;

/* Parses a Message protobuf (padding already removed) from outside. Never reads past p[len]; on
 * success out owns its allocations (wa_msg_free). WA_ERR_PROTO on bytes that are not a protobuf
 * (or nest deeper than WA_MSG_MAX_DEPTH), WA_ERR_NOMEM; out is empty (and needs no free) after an
 * error. */
int wa_message_parse(const uint8_t *p, size_t len, wa_msg *out);
/* Appends a Message: TEXT (conversation, or extendedTextMessage when it has mentions or a
 * reply), EDIT (editedMessage {message {protocolMessage type MESSAGE_EDIT, key = target,
 * editedMessage = the text as for TEXT, timestampMs}}), REACTION (reactionMessage {key = target,
 * text, senderTimestampMs}), REVOKE (protocolMessage {key = target, type REVOKE}); a
 * senderKeyDistributionMessage too when skdm is set (kind may then be NONE). WA_ERR_INVALID for
 * other kinds or a missing text / target id. */
int wa_message_encode(const wa_msg *m, wb_buf *out);
/* Frees what m owns and empties it; NULL and an empty m are fine. */
void wa_msg_free(wa_msg *m);
/* "text", "edit", "reaction", "revoke", "unsupported" or "none". */
const char *wa_msg_kind_name(wa_msg_kind k);

#endif
