/*
 * wa/client.h - one WhatsApp Web companion device: pairing, login and the connection lifecycle,
 * 1:1 and group messages, group calls and notifications; sans-I/O.
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
#include "wa/group.h"
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
                           group); one event per message id (a receipt's <list> names more).
                           "read-self": another device of this account read a contact's message
                           id in chat (1:1: the receipt's recipient; a group: the group) */
    WA_EV_PRESENCE,     /* text: "jid available|unavailable"; ms: last seen (unix seconds), or 0
                           when unknown or hidden (after wa_client_subscribe_presence) */
    WA_EV_CHAT_STATE,   /* text: "chat sender composing|recording|paused" (sender = chat in 1:1) */
    WA_EV_GROUP_RESULT, /* a group call was answered: ms = its request id (0: the client's own
                           participating query), code = 0 done, WhatsApp's error code (401 not an
                           admin, 403 not a member, 404 no such group, 406, 409, 500...) or a
                           negative wa_err (WA_ERR_TIMEOUT: the connection closed first,
                           WA_ERR_PROTO: an answer we cannot read); text: "op group" (op as
                           wa_group_op_name); take it with wa_client_next_group_result */
    WA_EV_GROUP,        /* a group changed (<notification type="w:gp2">): text = the group JID,
                           code = the number of changes; take it with wa_client_next_group_update
                           (the notification is acked to the server when it is taken) */
    WA_EV_IDENTITY_CHANGE, /* a contact's security code changed: text = the JID, code = 1 when
                              we met the new key (in a message or prekey keys: a device JID,
                              "user:N@server", device 0 = the phone), 0 when the server announced
                              it (<notification type="encrypt"><identity/>: the user JID); take
                              it with wa_client_next_identity_change. The new key is trusted
                              already (WhatsApp's behaviour: "X's security code changed" is only
                              a notice) and the message that carried it comes as WA_EV_MESSAGE */
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
 * wa_client_start on an unpaired client; the code comes as WA_EV_PAIR_CODE once the server has
 * registered the request (so the phone accepts it as soon as it shows), and QR events stop. */
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
/* The type of the event wa_client_next_event would return next, without taking it; false when
 * none is queued. */
bool wa_client_peek_event(const wa_client *c, wa_event_type *type);

/* Takes the oldest received message (ownership moves to out: wa_received_free it). The message's
 * plaintext stays in the store's event buffer until the bridge deletes it (event_buffer_delete)
 * once the Matrix event id is stored. */
bool wa_client_next_message(wa_client *c, wa_received *out);
/* The Message inside a received message (wa/message.h), from its first readable part (parts that
 * only carried a sender key, skdm_only, are skipped: the key is processed already). out is the
 * caller's to wa_msg_free. WA_ERR_INVALID when no part could be read, WA_ERR_PROTO when none is a
 * Message. A group message's parts come pairwise first, then the skmsg; each part's hash is its
 * key in the event buffer. A stanza whose parts were all read before (Signal: duplicate, the
 * buffer row already deleted) or only carried a key is receipted and raises no WA_EV_MESSAGE. */
int wa_received_parse(const wa_received *r, wa_msg *out);

#define WA_MESSAGE_ID_MAX 32 /* bytes an id_out must hold */

/* Sends a message to a user and to our own other devices (as deviceSentMessage): device lists
 * (usync; kept per user for the connection, dropped by a <notification type="devices">, a retry
 * receipt from that user, or a server ack whose phash, the participant hash of the devices the
 * server fanned out to, differs from ours: the next message asks again), missing sessions (prekey
 * bundles), then one <enc> per device, the advanced sessions and the plaintext for retries
 * (sent_save) in one store transaction. A user JID on s.whatsapp.net goes from our PN device to
 * the user's PN devices; a LID (user@lid) from our LID device to the LID devices, sessions kept
 * by LID address (peer_recipient_pn names the number when a message taught us the pair). A retry
 * receipt is answered on the device's session: from the keys it carries, or, with none, from keys
 * fetched from the server first when we have no session (or, once per connection and device, when
 * it asks a second time). A device whose identity key changed is trusted anew
 * (WA_EV_IDENTITY_CHANGE).
 * A group JID (@g.us) goes through sender keys: the participants and addressing mode (from the
 * group info, kept for the connection and updated by w:gp2 notifications), their devices, our
 * sender key (made when missing: our LID device in "lid" groups, our PN device in "pn" groups),
 * its SKDM pairwise (pkmsg/msg in <participants><to>) for each device that has not had it on this
 * connection, the content once as <enc type="skmsg">, <device-identity> when any pkmsg, and a
 * phash of the devices (a different one in the server's ack: the group info and the members'
 * device lists are asked again). A retry receipt from a group member is answered pairwise to
 * that device (content + SKDM). Our sender key is forgotten (rotated) when a member leaves or is
 * removed. m is a TEXT, EDIT, REACTION or REVOKE (wa_message_encode); the stanza carries what
 * WhatsApp Web puts there: type="reaction" for a reaction (else "text"), edit="1" for an edit,
 * edit="7" for a revoke of our own message or a reaction's removal (edit="8": an admin's revoke of
 * someone else's message), and <enc decrypt-fail="hide"> for edits, revokes and reactions. An edit
 * or revoke without target.remote_jid gets the chat; an edit is always of our own message
 * (from_me); a zero timestamp_ms becomes the last wall time the client was given. id_out gets the
 * message id (at least WA_MESSAGE_ID_MAX bytes). WA_EV_SENT / WA_EV_SEND_FAILED follow (also for a
 * group we are not in: the group info is refused, or the server's ack carries an error). A
 * connection that closes first (the message still being prepared, or sent and not acked) gives
 * neither: send it again with the same id (wa_client_send_message_id) once connected. Connected
 * only; WA_ERR_TOO_LARGE when WA_MAX_SENDS messages are being prepared or queued already (a
 * chat's messages wait behind its first while that one asks for device lists and keys). */
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
/* A contact's identity key changed (WA_EV_IDENTITY_CHANGE). Trust on first use; a changed key
 * is accepted: the old session of that device is dropped (every session of the user when the
 * server announced it) and the next message starts from the new key. */
typedef struct wa_identity_change {
    char jid[WA_JID_STR_MAX]; /* the device (met) or the user (announced), as the event's text */
    bool announced;           /* the server said so; false: met in a pkmsg or a prekey bundle */
    uint64_t t;               /* unix seconds: the notification's time, else the client's clock */
} wa_identity_change;
/* Takes the oldest identity change (false when there is none). Beyond WA_MAX_GROUP_QUEUE untaken
 * ones the oldest are dropped; the events carry the JIDs all the same. */
bool wa_client_next_identity_change(wa_client *c, wa_identity_change *out);

/* Sends a node now (connected only). Returns WA_ERR_STATE when not connected. */
int wa_client_send_node(wa_client *c, const wa_node *n);

/* --- groups (wa/group.h has the shapes) ---
 *
 * Each call sends one w:g2 IQ (connected only, else WA_ERR_STATE; WA_ERR_BAD_JID for a group that
 * is not "...@g.us" or a participant that is not a user JID; WA_ERR_INVALID for an empty subject,
 * a participants call without participants, or an unknown change or setting; WA_ERR_TOO_LARGE
 * when WA_MAX_GROUP_CALLS are waiting) and returns at once with a
 * request id (> 0) in *req_id_out (may be NULL). The answer comes as WA_EV_GROUP_RESULT (ms = the
 * id) and its wa_group_result from wa_client_next_group_result, in the order the answers came. A
 * connection that closes first answers every waiting call with WA_ERR_TIMEOUT.
 * Participants are user JIDs, PN or LID. Results keep the client's group cache current (a
 * removal we made rotates our sender key, a leave forgets the group).
 *
 * The client also asks for every group we are in after login (<ib><offline>) and when the server
 * says the list is dirty (<ib><dirty type="groups">, then cleaned): those results have request
 * id 0. Group notifications (w:gp2) become WA_EV_GROUP and a wa_group_update each, in order;
 * each is acked to the server only when wa_client_next_group_update takes it (on the connection
 * of the moment; taken offline, the redelivery is acked at the next login), so one never taken
 * (a crash) comes again; a redelivery of one still queued or already taken is not handed over a
 * second time (in this process). */

/* Messages being prepared or queued behind an earlier one to their chat, per client. */
#define WA_MAX_SENDS 1024
/* Sent messages whose ack is awaited, kept in a ring for the ack's participant-hash check and for
 * retries: an app that keeps more unacked at once has the oldest stored early and unchecked. */
#define WA_MAX_FANOUTS 128

/* Beyond WA_MAX_GROUP_QUEUE untaken results (or updates) the oldest are dropped, with one
 * WA_EV_ERROR until the next take. */
#define WA_MAX_GROUP_CALLS 64  /* group calls waiting for their answer */
#define WA_MAX_GROUP_QUEUE 256 /* results / updates kept for the bridge */

typedef enum wa_group_op {
    WA_GROUP_OP_CREATE = 1,    /* info: the new group (we are its superadmin) */
    WA_GROUP_OP_INFO,          /* info: the group */
    WA_GROUP_OP_PARTICIPANTS,  /* change + participants: the outcome per participant */
    WA_GROUP_OP_SUBJECT,       /* nothing more */
    WA_GROUP_OP_DESCRIPTION,   /* nothing more */
    WA_GROUP_OP_SETTING,       /* nothing more */
    WA_GROUP_OP_LEAVE,         /* nothing more; the group is forgotten */
    WA_GROUP_OP_INVITE,        /* invite_code */
    WA_GROUP_OP_PARTICIPATING, /* groups: every group we are in */
} wa_group_op;

/* "create", "info", "participants", "subject", "description", "setting", "leave", "invite",
 * "participating"; "?" for others. */
const char *wa_group_op_name(wa_group_op op);

/* The answer to a group call. Strings and arrays live in arena (wa_group_result_free). */
typedef struct wa_group_result {
    uint32_t req_id;                    /* what the call returned; 0: the client's own query */
    wa_group_op op;                     /* which call */
    int code;                           /* as WA_EV_GROUP_RESULT's code: 0 = done */
    const char *error_text;             /* WhatsApp's error text ("not-authorized"...), or "" */
    char group[WA_JID_STR_MAX];         /* the group ("" for participating; create: the new
                                           group, "" when refused) */
    wa_group_change change;             /* PARTICIPANTS: add / remove / promote / demote */
    wa_group_info *info;                /* CREATE / INFO: the group, or NULL */
    wa_group_info *groups;              /* PARTICIPATING: ngroups groups */
    size_t ngroups;                     /* entries in groups */
    wa_group_participant *participants; /* PARTICIPANTS: each one's error (0 = done; 403 with an
                                           invite_code: privacy, send an invite instead) */
    size_t nparticipants;               /* entries in participants */
    const char *invite_code;            /* INVITE: the code (link: WA_GROUP_INVITE_URL code) */
    wb_arena arena;                     /* owns everything above */
} wa_group_result;

/* A group notification, parsed (wa/group.h's wa_group_event: group, author, time, one change per
 * child: create with the group, add, remove, leave, promote, demote, subject, description,
 * announce, locked, ephemeral, invite, delete...). */
typedef struct wa_group_update {
    wa_group_event event; /* points into arena */
    wb_arena arena;       /* owns the event's strings and arrays */
} wa_group_update;

int wa_client_group_create(wa_client *c, const char *subject, const char *const *participants,
                           size_t n, uint32_t *req_id_out);
int wa_client_group_info(wa_client *c, const char *group, uint32_t *req_id_out);
int wa_client_group_participants(wa_client *c, const char *group, wa_group_change change,
                                 const char *const *participants, size_t n, uint32_t *req_id_out);
int wa_client_group_subject(wa_client *c, const char *group, const char *subject,
                            uint32_t *req_id_out);
/* text NULL or "" deletes the description. The current description id comes from the client's
 * cache; without it, the group info is asked first (one request id all the same). */
int wa_client_group_description(wa_client *c, const char *group, const char *text,
                                uint32_t *req_id_out);
int wa_client_group_setting(wa_client *c, const char *group, wa_group_setting s,
                            uint32_t *req_id_out);
int wa_client_group_leave(wa_client *c, const char *group, uint32_t *req_id_out);
/* revoke false: the current invite code; true: a new one (the old link stops working). */
int wa_client_group_invite_link(wa_client *c, const char *group, bool revoke, uint32_t *req_id_out);
int wa_client_group_participating(wa_client *c, uint32_t *req_id_out);

/* Takes the oldest group answer / notification (ownership moves to out: free it with
 * wa_group_result_free / wa_group_update_free). False when there is none. */
bool wa_client_next_group_result(wa_client *c, wa_group_result *out);
bool wa_client_next_group_update(wa_client *c, wa_group_update *out);
/* The update wa_client_next_group_update would take next, neither taken nor acked (NULL when
 * none): an app that keeps updates durably writes it down first, then takes it. Valid until the
 * next call into the client; owned by the client. */
const wa_group_update *wa_client_peek_group_update(const wa_client *c);
void wa_group_result_free(wa_group_result *r);
void wa_group_update_free(wa_group_update *u);

#endif
