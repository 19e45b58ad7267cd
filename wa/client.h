/*
 * wa/client.h - one WhatsApp Web companion device: pairing, login and the connection lifecycle,
 * sans-I/O.
 *
 * The client never touches a socket or a clock. The runtime (wa/net, or a test) drives it:
 *
 *   wa_client_start()         -> asks for a socket (wa_client_io: WA_IO_OPEN)
 *   wa_client_on_open()       -> the socket is up: the handshake starts (bytes in wa_client_output)
 *   wa_client_on_data()       <- bytes from the socket, in any chunks
 *   wa_client_on_closed()     <- the socket is gone; the client schedules a reconnect (or not)
 *   wa_client_tick()          <- time passed; call again by wa_client_deadline()
 *   wa_client_output()        -> bytes to write now (the runtime clears the buffer after writing)
 *   wa_client_next_event()    -> what happened, for the bridge (QR to show, paired, connected...)
 *
 * All times are milliseconds on the runtime's monotonic clock, except `wall` (unix seconds) used
 * for certificate dates and IQ ids. State that must survive a restart (keys, the paired identity,
 * prekeys) goes through the wa_store given at creation, so a new process logs in without pairing.
 * One client is used by one thread at a time.
 */
#ifndef WA_CLIENT_H
#define WA_CLIENT_H

#include "util/bytes.h"
#include "wa/binary/node.h"
#include "wa/crypto.h"
#include "wa/message.h"
#include "wa/noise.h"
#include "wa/recv.h"
#include "wa/store.h"

#include <stdbool.h>
#include <stdint.h>

#define WA_PREKEY_UPLOAD_FIRST  812 /* one-time prekeys uploaded after pairing */
#define WA_PREKEY_MIN           5   /* below this many on the server, upload more */
#define WA_PREKEY_UPLOAD_MORE   812
#define WA_HANDSHAKE_TIMEOUT_MS 20000
#define WA_PING_MIN_MS          15000
#define WA_PING_MAX_MS          30000
#define WA_PING_DEADLINE_MS     20000
#define WA_QR_FIRST_MS          60000
#define WA_QR_NEXT_MS           20000
#define WA_BACKOFF_MAX_MS       60000
#define WA_STABLE_MS            60000 /* connected this long: the backoff starts over */

typedef enum wa_io { WA_IO_NONE = 0, WA_IO_OPEN, WA_IO_CLOSE } wa_io;

typedef enum wa_event_type {
    WA_EV_QR = 1,       /* text: the QR code's content; shown until the next QR or the end */
    WA_EV_QR_TIMEOUT,   /* every QR ref expired unscanned (or no code was entered); stopped */
    WA_EV_PAIR_CODE,    /* text: the 8-character code to type on the phone (pairing by code) */
    WA_EV_PAIR_SUCCESS, /* text: our device JID; the server restarts the stream next */
    WA_EV_CONNECTED,    /* <success>: logged in; text: our LID device JID */
    WA_EV_READY,        /* the offline queue is delivered: the account is live */
    WA_EV_DISCONNECTED, /* code: stream error / failure / 0 for network; ms: reconnect delay,
                           or -1 when the client will not reconnect by itself */
    WA_EV_LOGGED_OUT,   /* code: 401 / 403 / 516 ...; the store was wiped; no reconnect */
    WA_EV_ERROR,        /* text: something went wrong that the user may want to see */
    WA_EV_MESSAGE,      /* a message arrived: take it with wa_client_next_message */
    WA_EV_SENT,         /* text: id of our message the server accepted */
    WA_EV_SEND_FAILED,  /* text: id of our message that could not be sent (reason in the log) */
    WA_EV_RECEIPT,      /* text: "id type chat[ participant]": a receipt for our message (type "" =
                           delivered, "read", "played", "retry", ...; participant: who, in a
                           group); one event per message id (a receipt's <list> names more) */
    WA_EV_PRESENCE,     /* text: "jid available|unavailable"; ms: last seen (unix seconds), or 0
                           when unknown or hidden (after wa_client_subscribe_presence) */
    WA_EV_CHAT_STATE,   /* text: "chat sender composing|recording|paused" (sender = chat in 1:1) */
} wa_event_type;

typedef struct wa_event {
    wa_event_type type;
    int code;       /* see the type */
    int64_t ms;     /* see the type */
    char text[512]; /* see the type; NUL-terminated */
} wa_event;

typedef struct wa_client_config {
    wa_store *store;           /* not owned; must outlive the client */
    wa_crypto *crypto;         /* not owned; the client's thread only */
    const uint8_t *trust_root; /* 32 bytes; NULL = WhatsApp's real root */
    const char *push_name;     /* shown to contacts; NULL = "" */
    const char *os_name;       /* DeviceProps.os, e.g. "wabridge" */
    uint32_t version[3];       /* the WhatsApp Web version we claim; {0} = the built-in default */
} wa_client_config;

typedef enum wa_client_state {
    WA_CLIENT_IDLE = 0,   /* not started, or stopped */
    WA_CLIENT_CONNECTING, /* socket requested */
    WA_CLIENT_HANDSHAKE,  /* Noise handshake in progress */
    WA_CLIENT_PAIRING,    /* registered, showing QR codes */
    WA_CLIENT_LOGGING_IN, /* login payload sent, waiting for <success> */
    WA_CLIENT_CONNECTED,  /* logged in */
    WA_CLIENT_BACKOFF,    /* waiting to reconnect */
    WA_CLIENT_LOGGED_OUT, /* terminal until a new pairing */
} wa_client_state;

typedef struct wa_client wa_client;

/* Loads the device from the store, or creates and saves a new one. NULL on failure (err set). */
wa_client *wa_client_new(const wa_client_config *cfg, int *err);
void wa_client_free(wa_client *c);

wa_client_state wa_client_get_state(const wa_client *c);
const char *wa_client_state_name(wa_client_state s);
/* True once paired (the device has an identity on the account). */
bool wa_client_is_paired(const wa_client *c);
/* Our device JID ("" before pairing). */
const char *wa_client_jid(const wa_client *c);

int wa_client_start(wa_client *c, int64_t now, uint64_t wall);
/* Closes the connection and stays idle (no reconnect). */
void wa_client_stop(wa_client *c, int64_t now);
/* Pairs by phone code instead of QR: `phone` is the account's number (digits). Call after
 * wa_client_start on an unpaired client; the code comes as WA_EV_PAIR_CODE, and QR events stop. */
int wa_client_pair_phone(wa_client *c, const char *phone, int64_t now);
/* Asks the server to remove this companion, then wipes the store. */
int wa_client_logout(wa_client *c, int64_t now);

wa_io wa_client_io(wa_client *c);
void wa_client_on_open(wa_client *c, int64_t now, uint64_t wall);
void wa_client_on_data(wa_client *c, const uint8_t *p, size_t len, int64_t now, uint64_t wall);
void wa_client_on_closed(wa_client *c, int64_t now);
void wa_client_tick(wa_client *c, int64_t now, uint64_t wall);
/* The next time wa_client_tick must be called, or INT64_MAX. */
int64_t wa_client_deadline(const wa_client *c);
wb_buf *wa_client_output(wa_client *c);
bool wa_client_next_event(wa_client *c, wa_event *ev);

/* Takes the oldest received message (ownership moves to out: wa_received_free it). The message's
 * plaintext stays in the store's event buffer until the bridge deletes it (event_buffer_delete)
 * once the Matrix event id is stored. */
bool wa_client_next_message(wa_client *c, wa_received *out);
/* The Message inside a received message (wa/message.h), from its first readable part (a bare
 * senderKeyDistributionMessage in another part is merged in). out is the caller's to wa_msg_free.
 * WA_ERR_INVALID when no part could be read, WA_ERR_PROTO when none is a Message. */
int wa_received_parse(const wa_received *r, wa_msg *out);

#define WA_MESSAGE_ID_MAX 32 /* bytes an id_out must hold */

/* Sends a message to a user (PN JID) and to our own other devices (as deviceSentMessage): device
 * lists (usync), missing sessions (prekey bundles), then one <enc> per device. m is a TEXT, EDIT,
 * REACTION or REVOKE (wa_message_encode); the stanza carries what WhatsApp Web puts there:
 * type="reaction" for a reaction (else "text"), edit="1" for an edit, edit="7" for a revoke of our
 * own message or a reaction's removal (edit="8": an admin's revoke of someone else's message), and
 * <enc decrypt-fail="hide"> for edits, revokes and reactions. An edit or revoke without
 * target.remote_jid gets the chat; an edit is always of our own message (from_me); a zero
 * timestamp_ms becomes the last wall time the client was given. id_out gets the message id (at
 * least WA_MESSAGE_ID_MAX bytes). WA_EV_SENT / WA_EV_SEND_FAILED follow. Connected only.
 * Groups (@g.us) go to the sender-key path: WA_ERR_UNSUPPORTED until it exists. */
int wa_client_send_message(wa_client *c, const char *to_jid, const wa_msg *m, char *id_out,
                           int64_t now);
/* The same with the caller's message id (8..31 characters, 0-9 A-Z): a bridge derives it from its
 * own event id, so a send repeated after a crash carries the same id and receivers, which
 * deduplicate by id, show it once. */
int wa_client_send_message_id(wa_client *c, const char *to_jid, const wa_msg *m, const char *id,
                              int64_t now);
/* wa_client_send_message of a plain TEXT. */
int wa_client_send_text(wa_client *c, const char *to_jid, const char *text, char *id_out,
                        int64_t now);
/* Tells the sender we read (or, played = true, listened to) messages: one
 * <receipt id=ids[0] to=chat [participant=sender] type="read"|"played" t=wall> with
 * <list><item id/>...</list> for the other ids. sender: who wrote them in a group, NULL in 1:1.
 * Connected only; WA_ERR_INVALID without ids or with an empty or too long one. */
int wa_client_mark_read(wa_client *c, const char *chat, const char *sender, const char *const *ids,
                        size_t n, bool played, uint64_t wall);
/* <presence name=push name type="available"|"unavailable">: online or not for our contacts (and
 * WhatsApp sends us presences only while we are available). WA_ERR_STATE without a push name. */
int wa_client_send_presence(wa_client *c, bool available);
/* <presence type="subscribe" to=jid>: the server answers with the user's presence now and at
 * every change (WA_EV_PRESENCE), for as long as this connection lasts. */
int wa_client_subscribe_presence(wa_client *c, const char *jid);

typedef enum wa_chat_state { WA_CHAT_COMPOSING, WA_CHAT_RECORDING, WA_CHAT_PAUSED } wa_chat_state;
/* <chatstate to=chat><composing/> | <composing media="audio"/> | <paused/></chatstate>: typing,
 * recording a voice message, or stopped. */
int wa_client_send_chat_state(wa_client *c, const char *chat, wa_chat_state st);
/* Sends a node now (connected only). Returns WA_ERR_STATE when not connected. */
int wa_client_send_node(wa_client *c, const wa_node *n);

#endif
