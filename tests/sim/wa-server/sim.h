/*
 * tests/sim/wa-server/sim.h - the WhatsApp server simulator's state and protocol logic (wa-sim).
 *
 * No I/O here: main.c owns the sockets (libwebsockets) and the admin HTTP API (libmicrohttpd) and
 * calls these functions with the simulator's lock held. A connection receives bytes and answers by
 * appending encrypted frames to its `out` buffer, which main.c writes to the socket.
 *
 * What it simulates today: the Noise responder with its own certificate chain, accounts with a
 * primary phone (identity key, ADV signing), QR pairing (pair-device refs, pair-success,
 * pair-device-sign, 515), login (<success>, offline marker), the IQs a client sends after login
 * (prekey count and upload, passive, digest, props, blocklist, privacy, ping, logout), unknown IQs
 * answered with an empty result, and the admin actions (scan a QR, list devices, kick, stream
 * errors).
 *
 * Messaging: the prekey store (uploads kept per device, `encrypt get` bundles with one-time prekeys
 * consumed), usync device lists and LIDs (counted in usync_queries), <notification type="devices">
 * to every logged-in connection when a companion pairs or logs out, 1:1 fan-out of
 * <message><participants><to><enc> to every addressed device through a per-device queue (delivered
 * at once when the device is online, at its next login otherwise, and again at every login until
 * the device acks or receipts it), the ack of a fan-out carrying the server's phash (the
 * participant hash of every device of the chat, whatsmeow's participantListHashV2 form), receipts
 * routed to the sending device, and a primary phone per
 * account (device 0) that speaks Signal for real (wa/signal over an in-memory store): it decrypts
 * what is sent to it (recording each message's kind and target) and sends texts, replies with
 * mentions, edits, reactions and revokes on admin request; a phone that cannot read a message
 * asks again with a retry receipt (with its keys when it has no session with the sender, e.g.
 * after sim_admin_reregister gave it a new identity) (sim_admin_send_msg; over HTTP, POST
 * /admin/send with the optional fields mentions, reply_id / reply_sender / reply_text, edit, react
 * + emoji / from_me / participant, and revoke, listed at the top of main.c).
 *
 * Receipts, presence and chat state: a <receipt> (delivered, read, played, retry; with a <list> of
 * more ids) goes to the device that sent each message (one receipt per sending device, the other
 * ids in its <list>). A device's <presence type="available|unavailable"> makes its account
 * available while any of its connections is; subscribers (<presence type="subscribe" to>, kept per
 * connection) get <presence from type="available|unavailable" [last]> at once and at every change
 * (a connection that closes counts as unavailable). <chatstate to><composing/>|<paused/> goes to
 * every online device of the peer as <chatstate from=sender>, not queued (it is ephemeral); to a
 * group, to every other member's online devices as <chatstate from=group participant=sender>.
 *
 * Groups live in sim_group.c (sim_group.h): LID-addressed groups, the w:g2 IQs, w:gp2
 * notifications, group messages (skmsg + pairwise SKDM) fanned out to every member device, and the
 * phones as members with sender keys. Admin: POST /admin/group/create {phone, subject, members[]},
 * POST /admin/group/send {phone, group, text}, POST /admin/group/participants {phone, group,
 * action, members[]}, GET /admin/group?jid=G (members, invite, the last skmsg).
 */
#ifndef WA_SIM_H
#define WA_SIM_H

#include "wa/binary/node.h"
#include "wa/message.h"
#include "wa/noise.h"
#include "wa/signal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SIM_MAX_DEVICES  16
#define SIM_MAX_ACCOUNTS 256
#define SIM_REFS         6
#define SIM_ID_MAX       128   /* longest stanza id we accept, without the NUL */
#define SIM_PREKEYS_MAX  20000 /* one-time prekeys kept per device */
#define SIM_QUEUE_MAX    20000 /* stanzas queued per device */
#define SIM_PHONE_MSGS   4096  /* messages a phone remembers */

#define SIM_SENT_RING   4096 /* messages remembered for routing receipts to their sender */
#define SIM_MAX_SUBS    64   /* presence subscriptions kept per connection */
#define SIM_RECEIPT_IDS 256  /* message ids of one <receipt> (its id and <list>) routed */

/* Who sent a message to whom: a receipt names the chat, not always the sending device. */
typedef struct sim_sent {
    char id[SIM_ID_MAX + 1];  /* message id; "" for a free slot */
    struct sim_account *from; /* sending account */
    uint16_t from_device;     /* sending device (0: the phone) */
    struct sim_account *to;   /* receiving account */
    uint8_t *plain;           /* a phone's message to `to` (Message bytes), for its retries;
                                 malloc'd, NULL for a companion's */
    size_t plain_len;         /* bytes in plain */
    char type[12];            /* the phone's stanza type ("text", "reaction") */
    char edit[4];             /* its edit attribute, "" when none */
    bool hide_fail;           /* its <enc decrypt-fail="hide"> */
} sim_sent;

typedef struct sim_prekey {
    uint32_t id;     /* 24-bit prekey id */
    uint8_t pub[32]; /* public key, raw */
} sim_prekey;

/* A stanza waiting for a device: delivered at once when it is online, and again at each login
 * until the device acks it (an <ack> of the same class and id, or a <receipt> for a message). */
typedef struct sim_queued sim_queued;
struct sim_queued {
    sim_queued *next;
    bool is_receipt;         /* "receipt" class; otherwise a "message" */
    char id[SIM_ID_MAX + 1]; /* the stanza id acks name */
    uint8_t *node;           /* the stanza, binary-encoded without the flag byte; malloc'd */
    size_t node_len;         /* bytes in node */
    bool delivered;          /* sent at least once */
};

/* A message the simulated phone received. */
typedef struct sim_phone_msg {
    char sender[64];         /* the sending device's JID as the stanza named it */
    char chat[64];           /* the chat: the sender's user, or the destination of an own copy */
    char id[SIM_ID_MAX + 1]; /* message id */
    char *text;              /* conversation or extendedTextMessage.text, the new text of an edit,
                                the emoji of a reaction; "" if none; malloc'd */
    char kind[16];           /* wa_msg_kind_name of the content: text, edit, reaction, revoke... */
    char target[SIM_ID_MAX + 1]; /* edit / reaction / revoke: the id of the message acted on */
    uint64_t t;                  /* server time, unix seconds */
    bool own;                    /* a deviceSentMessage copy from one of the account's companions */
    bool failed;                 /* could not be decrypted or decoded (text says why) */
    int64_t rx_us; /* monotonic us at which the frame carrying it arrived (bench timing) */
} sim_phone_msg;

/* The primary phone's Signal side (device 0 of an account); made on first use. */
typedef struct sim_phone {
    wa_store store;            /* in memory: device record, one-time prekeys, sessions */
    wa_signal *signal;         /* sessions over store */
    uint32_t registration_id;  /* Signal registration id */
    uint32_t signed_prekey_id; /* id of the signed prekey */
    uint8_t signed_prekey[32]; /* public, raw */
    uint8_t signed_prekey_sig[64];
    uint32_t next_prekey_id; /* the next one-time prekey handed out gets this id */
    sim_phone_msg *msgs;     /* received, oldest first; malloc'd */
    size_t nmsgs;            /* used entries of msgs */
} sim_phone;

typedef struct sim_device {
    uint16_t id;              /* device number (1.. for companions) */
    uint8_t noise_pub[32];    /* the companion's Noise static key: its login credential */
    uint8_t identity_pub[32]; /* the companion's Signal identity key */
    uint32_t registration_id; /* Signal registration id */
    uint32_t key_index;       /* ADV key index */
    uint32_t prekeys;         /* one-time prekeys on file and not yet used (counts those that
                                 sim_admin_add_device registered without key material) */
    bool present;             /* false once removed (logout, admin) */
    /* keys from the upload IQ (encrypt set) */
    bool has_keys;                 /* identity and signed prekey uploaded: bundles can be given */
    uint32_t signed_prekey_id;     /* 24 bits */
    uint8_t signed_prekey[32];     /* public, raw */
    uint8_t signed_prekey_sig[64]; /* XEdDSA by the identity over 05 || signed_prekey */
    sim_prekey *otks;              /* one-time prekeys with key material, oldest first; malloc'd */
    size_t notks;                  /* used entries of otks */
    size_t otks_cap;               /* allocated entries of otks */
    /* what waits for the device */
    sim_queued *queue_head; /* oldest first */
    sim_queued *queue_tail;
    size_t queued; /* entries in the queue */
} sim_device;

typedef struct sim_account sim_account;
struct sim_account {
    char phone[24];          /* digits of the phone number (PN user) */
    char lid[24];            /* digits of the LID user */
    char name[64];           /* push name of the primary phone */
    wa_keypair identity;     /* the primary phone's identity key: signs ADV device identities */
    uint32_t raw_id;         /* ADV rawId of the account */
    uint32_t next_key_index; /* ADV key index of the next companion */
    sim_device devices[SIM_MAX_DEVICES]; /* companions (device 0, the phone, is `phone`) */
    int ndevices;                        /* used entries of devices */
    sim_phone *primary;                  /* the phone's Signal side; NULL until first needed */
    uint64_t last_seen; /* presence: when its last available connection went (unix s); 0 never */
};

typedef enum sim_conn_state {
    SIM_CONN_HANDSHAKE = 0, /* Noise handshake in progress */
    SIM_CONN_PAIRING,       /* registration payload: waiting for a QR scan */
    SIM_CONN_PAIRED,        /* pair-success sent, waiting for pair-device-sign */
    SIM_CONN_LOGGED_IN,     /* login payload accepted */
    SIM_CONN_CLOSING,       /* flush `out`, then close */
} sim_conn_state;

typedef struct sim_conn sim_conn;
struct sim_conn {
    sim_conn *next;  /* list of live connections */
    void *wsi;       /* main.c's socket handle */
    uint64_t serial; /* connection number, for logs and admin */
    sim_conn_state state;
    wa_frame_reader reader; /* client bytes -> frames (strips the intro) */
    wa_noise noise;         /* responder */
    wb_buf out;             /* framed, encrypted bytes to write */
    bool hello_pending;     /* a post-handshake stanza waits for the short pause */
    bool active;            /* logged in and past <passive><active/>: live stanzas go out */
    /* registration */
    uint8_t noise_pub[32];        /* client's Noise static key (from the handshake) */
    uint8_t identity_pub[32];     /* from devicePairingData.eIdent */
    uint32_t registration_id;     /* from devicePairingData.eRegid */
    char refs[SIM_REFS][40];      /* pair-device refs offered */
    char pair_iq_id[16];          /* id of the pair-success IQ */
    uint8_t pending_details[256]; /* ADVDeviceIdentity bytes sent in pair-success */
    size_t pending_details_len;
    /* pairing by code (companion_hello .. companion_finish) */
    bool lc_hello;                /* companion_hello received */
    char lc_phone[24];            /* the phone number the companion asked for */
    uint8_t lc_wrapped[80];       /* salt32 || iv16 || AES-CTR(code key, companion ephemeral) */
    char lc_ref[40];              /* link_code_pairing_ref we handed out */
    bool lc_primary_sent;         /* primary_hello sent: lc_primary_eph is set */
    wa_keypair lc_primary_eph;    /* the phone's ephemeral key for this pairing; secret */
    uint8_t lc_companion_eph[32]; /* unwrapped with the code the user typed */
    /* after login or pairing */
    sim_account *account;
    int device_index; /* into account->devices, or -1 */
    /* presence */
    bool available; /* said <presence type="available"> (and not "unavailable" since) */
    struct {
        sim_account *account; /* whose presence this connection asked for */
        bool lid;             /* it asked by LID: answers come from the LID JID */
    } subs[SIM_MAX_SUBS];
    int nsubs; /* used entries of subs */
};

typedef struct sim {
    pthread_mutex_t lock; /* held by every caller of the functions below */
    wa_crypto *crypto;    /* seeded in deterministic mode */
    wa_keypair root;      /* the simulator's certificate root (engines trust its public key) */
    wa_keypair intermediate;
    wa_keypair server_static; /* Noise static key; the leaf certificate's key */
    int64_t frame_rx_us;      /* monotonic us at which the frame being handled arrived */
    wb_buf cert_chain;        /* CertChain protobuf */
    uint64_t fixed_time;      /* deterministic mode: the clock; 0 = real time */
    sim_account accounts[SIM_MAX_ACCOUNTS];
    int naccounts;
    sim_conn *conns; /* live connections */
    uint64_t next_serial;
    uint32_t next_id;       /* for server-initiated IQ ids */
    bool verbose;           /* log stanzas to stderr */
    char corrupt_phone[24]; /* fault: messages to this account's companions get a flipped byte */
    int corrupt_left;       /* how many more messages to corrupt */
    sim_sent *sent;         /* SIM_SENT_RING entries, malloc'd on first use */
    size_t sent_next;       /* the ring's next slot */
    uint64_t usync_queries; /* usync IQs answered (tests count them: device-list caching) */
    bool quiet_devices;     /* fault: pairings and logouts are not announced (no <notification
                               type="devices">): clients learn of new devices by phash only */
    bool reuse_device_ids;  /* a new companion takes the lowest number no present device has
                               (a re-paired device then has a known address, a new identity) */
    int group_fault;        /* fault on a companion's add/remove/promote/demote call: 1 made but
                               never answered, 2 neither made nor answered (SIM_GROUP_FAULT_*) */

    /* sim_group.c: the groups and their messages; NULL until the first group */
    struct sim_groups *groups;
} sim;

#define SIM_GROUP_FAULT_UNANSWERED 1
#define SIM_GROUP_FAULT_LOST       2

int sim_init(sim *s, const uint8_t *seed, size_t seed_len, uint64_t fixed_time);
void sim_free(sim *s);
uint64_t sim_now(const sim *s);

sim_account *sim_account_add(sim *s, const char *phone, const char *lid, const char *name);
sim_account *sim_account_find(sim *s, const char *phone);

sim_conn *sim_conn_new(sim *s, void *wsi);
void sim_conn_free(sim *s, sim_conn *c);
/* Feeds bytes from the socket. Returns 0, or -1 when the connection must be closed now. */
int sim_conn_receive(sim *s, sim_conn *c, const uint8_t *p, size_t len);
/* The short pause after the handshake is over: send what waited. */
void sim_conn_timer(sim *s, sim_conn *c);
/* Encrypts and queues one node. */
int sim_send_node(sim *s, sim_conn *c, const wa_node *n);

/* Admin actions; each returns 0 or -1 with a message in err. */
int sim_admin_scan(sim *s, const char *phone, const char *qr, char *err, size_t errlen);
/* The user types `code` on the phone of `phone`: the primary_hello notification goes out. */
int sim_admin_pair_code(sim *s, const char *phone, const char *code, char *err, size_t errlen);
int sim_admin_stream_error(sim *s, const char *phone, int device, const char *code, char *err,
                           size_t errlen);
/* Registers a companion as if it had paired (benchmarks: no pairing per device), with `prekeys`
 * one-time prekeys on file. Returns the device number, or -1. */
int sim_admin_add_device(sim *s, const char *phone, const uint8_t noise_pub[32],
                         const uint8_t identity_pub[32], uint32_t prekeys, char *err,
                         size_t errlen);
/* Fault injection: the next `count` messages delivered to companions of `phone` carry a flipped
 * ciphertext byte (so their Signal MAC fails and the device must ask again). */
int sim_admin_corrupt_next(sim *s, const char *phone, int count, char *err, size_t errlen);
/* The phone of `phone` reads messages ids[0..n) of chat (a user or group JID): its companions get
 * <receipt type="read-self"> (1:1: from the account, recipient = chat; a group: from the group,
 * participant = the account), queued for offline ones. The senders get no read receipt. */
int sim_admin_read_self(sim *s, const char *phone, const char *chat, const char *const *ids,
                        size_t n, char *err, size_t errlen);
/* JSON of the accounts and their devices; caller frees. */
char *sim_admin_state_json(sim *s);
/* The messages the phone of `phone` received (NULL and *n = 0 when none); valid until the next call
 * into the simulator. */
const sim_phone_msg *sim_admin_phone_messages(sim *s, const char *phone, size_t *n);
/* CLOCK_MONOTONIC in us (comparable with hs-sim's timing: the benchmarks' clock). */
int64_t sim_mono_us(void);
/* The phone of `phone` sends `text` to `to` (a PN or LID user JID): to every device of the
 * recipient, and as a deviceSentMessage to its own companions. The message id goes to id_out. */
int sim_admin_send_text(sim *s, const char *phone, const char *to, const char *text, char *id_out,
                        size_t id_len, char *err, size_t errlen);
/* The same for any content wa_message_encode takes (a text with mentions or a reply, an edit, a
 * reaction, a revoke), with the stanza attributes WhatsApp gives it (type="reaction", edit="1" /
 * "7", <enc decrypt-fail="hide">). */
int sim_admin_send_msg(sim *s, const char *phone, const char *to, const wa_msg *m, char *id_out,
                       size_t id_len, char *err, size_t errlen);
/* The phone of `phone` is registered anew (a new phone, WhatsApp reinstalled): a new identity key,
 * no Signal sessions, no sender keys. Its companions stay linked (WhatsApp would unlink them;
 * tests pair again when they need to). With announce, the companions of every other account get
 * <notification type="encrypt" from=PN user id t><identity/></notification>, queued until acked
 * (WhatsApp tells the user's contacts); without, peers find out from the new key itself. */
int sim_admin_reregister(sim *s, const char *phone, bool announce, char *err, size_t errlen);
/* True while a connection of acct said it is available. */
bool sim_account_available(const sim *s, const sim_account *acct);

#endif
