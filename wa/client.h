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
    WA_EV_RECEIPT,      /* text: "id type chat": a receipt for our message (type "" = delivered) */
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
/* Sends a text to a user (PN JID) and to our own other devices (as deviceSentMessage): device
 * lists (usync), missing sessions (prekey bundles), then one <enc> per device. id_out gets the
 * message id (at least WA_MESSAGE_ID_MAX bytes). WA_EV_SENT / WA_EV_SEND_FAILED follow. Connected
 * only. */
int wa_client_send_text(wa_client *c, const char *to_jid, const char *text, char *id_out,
                        int64_t now);
/* Sends a node now (connected only). Returns WA_ERR_STATE when not connected. */
int wa_client_send_node(wa_client *c, const wa_node *n);

#endif
