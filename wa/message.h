/*
 * wa/message.h - the few Message protobuf shapes the engine builds and reads itself, without the
 * generated code: a text (Message.conversation = 1), its own-device copy (Message.deviceSentMessage
 * = 31 {destinationJid = 1, message = 2}), and reading the text back (conversation, or
 * extendedTextMessage = 6 .text = 1, inside a deviceSentMessage too). Field numbers are those of
 * WAProto.proto (checked by tests/interop/check_proto.mjs for the generated messages; these are
 * checked against Baileys in the live tests). The rich message kinds come with the bridge.
 */
#ifndef WA_MESSAGE_H
#define WA_MESSAGE_H

#include "util/bytes.h"
#include "wa/err.h"

#include <stddef.h>

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

#endif
