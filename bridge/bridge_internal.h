/*
 * bridge/bridge_internal.h - what the daemon's files (bridge.c, login.c, portal.c, commands.c)
 * share. Not a public API.
 *
 * Threads and who touches what:
 *  - portal workers (br_pworker): serial queues of jobs; a job key (a portal, a management room)
 *    always hashes to the same worker, so one portal's jobs run one at a time, in order. Each
 * worker owns a db_conn and an mx_client.
 *  - engine workers (br_engine): wa_worker threads; a login's client is only touched there. Each
 *    owns a db_conn used by the stores of its logins. They never call the homeserver.
 *  - the pump: reads mx_inbox in id order and queues each event on its key's worker.
 * b->lock guards the login list and the room -> portal cache.
 */
#ifndef BR_BRIDGE_INTERNAL_H
#define BR_BRIDGE_INTERNAL_H

#include "bridge/bridge.h"
#include "bridge/config.h"
#include "bridge/mx_txn_pg.h"
#include "db/bridge_rows.h"
#include "matrix/as_server.h"
#include "matrix/client.h"
#include "util/log.h"
#include "wa/client.h"
#include "wa/message.h"
#include "wa/worker.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>

#define BR_MAX_LOGINS   4096
#define BR_LEASE_MS     60000 /* a login lease lasts this long; renewed every 20 s */
#define BR_SEND_WAIT_MS 60000 /* how long a portal waits for WhatsApp to accept a message */
#define BR_GROUP_CALLS  16    /* group calls from Matrix waiting per login (create, members) */
/* Sends of one login waiting for their ack: the pipeline that keeps a login's throughput up
 * (a send's round trip is several ms, more on a loaded machine). The engine queues them all
 * (WA_MAX_SENDS, far above): a send it refused for room would be a message not sent. */
#define BR_MAX_INFLIGHT 96
_Static_assert(BR_MAX_INFLIGHT < WA_MAX_SENDS, "the engine must queue a login's whole window");
_Static_assert(BR_MAX_INFLIGHT <= WA_MAX_FANOUTS, "each unacked send keeps its ack check");

typedef struct br_bridge br_bridge;
typedef struct br_pworker br_pworker;

#define BR_UNSURE_MS    (10 * 60 * 1000) /* see br_engine.unsure_until_ms */
#define BR_ABSENT_MAX   4096 /* duplicate checks noted (portal.c bridged_before); a power of 2 */
#define BR_ABSENT_QUERY 64   /* ids asked in one query */
#define BR_ABSENT_SCAN  1024 /* queued jobs looked through for one query */
#define BR_ABSENT_ID    96   /* longest id noted, incl. NUL (WhatsApp's have 16-40 characters) */

typedef void (*br_job_fn)(br_pworker *pw, void *arg);

typedef struct br_job br_job;
struct br_job {
    br_job *next;
    br_job_fn fn;
    void *arg; /* owned by the job: fn frees it */
};

struct br_pworker {
    br_bridge *b;
    int index;
    pthread_t thread;
    pthread_mutex_t lock; /* guards the queue */
    pthread_cond_t cond;
    br_job *head, *tail;
    size_t depth; /* jobs queued */
    bool busy;    /* a job is running */
    db_conn *db;
    mx_client *mx;
    int64_t cur_inbox_id;  /* the inbox row of the Matrix event being handled */
    uint64_t joined[1024]; /* hashes of (room, ghost) this worker saw joined */
    struct {
        char jid[96];   /* a ghost this worker checked... */
        char push[128]; /* ...with this push name: nothing to change while it stays the same */
    } ghost_seen[256];
    /* WhatsApp message ids known to have no mapping row in their portal, from one query for a
     * burst of a chat's queued messages (portal.c bridged_before): each answers one duplicate
     * check. A ring (the oldest note goes first) with a hash index: bucket and next are note
     * index + 1, 0 none. */
    uint32_t absent_next;
    uint32_t absent_bucket[BR_ABSENT_MAX];
    struct {
        int64_t portal_id; /* 0: a free slot */
        uint32_t next;     /* the next note of the bucket */
        char id[BR_ABSENT_ID];
    } absent[BR_ABSENT_MAX];
    bool deferred;           /* its deletion waits for an asynchronous send's completion */
    uint64_t later_failures; /* write-behind failures of db seen so far (logged when they grow) */
};

typedef struct br_engine {
    br_bridge *b;
    int index;
    wa_worker *w;
    db_conn *db;       /* the engine thread's connection (stores of its logins) */
    wa_crypto *crypto; /* the engine thread's randomness */
    struct br_login *by_handle[BR_MAX_LOGINS]; /* wa_worker login handle -> login */
    /* until then, no received message counts as fresh (br_wa_msg.fresh): a held batch or a
     * barrier failed lately, and a redelivery may be decrypted again from before it */
    int64_t unsure_until_ms;
} br_engine;

/* A message sent to WhatsApp, waiting for the server's ack (WA_EV_SENT / WA_EV_SEND_FAILED). */
typedef struct br_pending_send br_pending_send;
struct br_pending_send {
    br_pending_send *next;
    char id[WA_MESSAGE_ID_MAX];
    int result; /* 0 waiting, 1 sent, -1 failed */
    /* asynchronous sends: the completion queued on the portal's queue (NULL: a waiter) */
    br_job_fn done_fn;
    struct br_send_done *done;
    char key[DB_ID_MAX + 64];
    int64_t deadline_ms; /* completed as failed when no ack came by then */
    char to[DB_ID_MAX];  /* the chat */
    wa_msg msg;          /* a deep copy, sent again when the connection was lost before the ack */
    struct br_login *login; /* asynchronous sends: whose */
};

/* What an asynchronous send's completion job gets (owned by it). */
typedef struct br_send_done {
    int result;    /* 1 sent, -1 failed */
    char err[256]; /* why, when failed */
    char id[WA_MESSAGE_ID_MAX];
    void *ctx; /* the caller's, freed by the completion */
} br_send_done;

typedef struct br_login {
    int64_t id;
    char mxid[DB_ID_MAX];      /* the Matrix user */
    char mgmt_room[DB_ID_MAX]; /* where login progress is reported; "" = none */
    char phone[64];            /* digits, once paired */
    char lid[DB_ID_MAX];       /* our LID user JID, once connected ("" before) */
    br_engine *eng;
    int handle;        /* wa_worker login handle, -1 before it is added */
    wa_client *client; /* engine thread only */
    wa_store store;
    _Atomic int state; /* wa_client_state, mirrored for other threads */
    bool pairing;      /* started by a login command (not yet paired) */
    _Atomic int64_t
        pairing_until_ms;      /* the login times out then (bridge.login_timeout_s); 0 = none */
    _Atomic bool paired;       /* the engine reported pair success */
    char qr_event[DB_ID_MAX];  /* the QR image event, edited as the QR rotates; management worker */
    char pair_phone[64];       /* login by code: the phone number */
    bool removed;              /* logged out / deleted: ignore late events */
    pthread_mutex_t send_lock; /* guards pending */
    pthread_cond_t send_cond;
    br_pending_send *pending;
    int n_pending;            /* entries in pending */
    bool typing_in_group;     /* the user's last typing state sent to a group (portal workers) */
    _Atomic uint64_t dp_read; /* br_hash of the event last marked read as the user (a read-self
                                 receipt): its m.receipt echo is not sent back to WhatsApp */
    _Atomic int dp_state;     /* double puppeting of mxid: 0 not checked yet, 1 works, -1 does not
                                 (no secret for its server, or whoami failed): the bot's way */
    struct br_login *next_dead;
    struct {
        uint32_t req_id; /* a group call from Matrix waiting for its answer (0: free) */
        char room[DB_ID_MAX];
        char jid[DB_ID_MAX];      /* participants: whom it was about; settling: the group */
        int change;               /* participants: the wa_group_change asked */
        int undo_level;           /* promote/demote: the power level to put back when refused */
        int64_t call_id;          /* participants: its group_call row */
        int64_t settle_before_ms; /* a group query settling the calls (group_call) made before
                                     this moment whose answers were lost (0: not one) */
    } group_calls[BR_GROUP_CALLS];
    /* guarded by send_lock */ /* unlisted logins, freed at shutdown (late jobs may hold one) */
} br_login;

/* A portal known to have a room (cache of the portal table for routing Matrix events). */
typedef struct br_room_ref {
    char room[DB_ID_MAX];
    char chat[DB_ID_MAX];
    int64_t receiver; /* login id, 0 for a shared portal */
    int64_t portal_id;
} br_room_ref;

struct br_bridge {
    const br_config *cfg;
    char owner[128]; /* lease owner name: host:pid */
    char bot_mxid[DB_ID_MAX];
    db_conn *db_http;    /* the endpoint's commits */
    br_mx_txn_pg txn_pg; /* its store's settings (drops our own echoes) */
    db_conn *db_pump;    /* the pump's reads */
    db_conn *db_main;    /* start-up and the lease heartbeat */
    mx_client *mx_main;
    mx_as_server *as;
    wa_net *net;
    br_engine *engines;
    int n_engines;
    br_pworker *pworkers;
    int n_pworkers;
    pthread_t pump_thread, lease_thread;
    pthread_mutex_t pump_lock;
    pthread_cond_t pump_cond;
    bool pump_wake;
    /* Routing inbox rows to the portal queues, in id order, by the pump or (the usual case, one
     * thread hand-off and one read less) by the endpoint right after its commit: route_lock
     * guards both. routed_upto: every inbox row up to it has been routed; stored_upto: the last
     * row id the endpoint stored (-1: none known yet, as after a start). */
    pthread_mutex_t route_lock;
    int64_t routed_upto, stored_upto;
    _Atomic bool stopping;
    _Atomic bool workers_exit; /* portal workers stop once their queue is empty */
    bool started;              /* br_bridge_start completed */
    pthread_mutex_t lock;      /* guards logins, rooms */
    br_login *logins[BR_MAX_LOGINS];
    size_t n_logins;
    br_login *dead;     /* unlisted logins, freed at shutdown */
    br_room_ref *rooms; /* the room cache (bridge.c "rooms") */
    size_t n_rooms, cap_rooms;
    size_t *by_room, *by_chat; /* its two hash indexes, cap_index slots each */
    size_t cap_index;
    int next_engine;
    /* double puppeting with users' own access tokens (login-matrix), read by the matrix/
       clients' hook on any portal worker: a cache of mx_user.double_puppet_token */
    pthread_mutex_t puppet_lock; /* guards manual, n_manual */
    struct br_manual_puppet *manual;
    size_t n_manual;
    struct {
        _Atomic uint64_t mx_events, mx_direct, mx_bridged, wa_messages, wa_bridged, commands,
            failures;
    } stats;
};

/* ---- bridge.c ---- */
/* Queues fn(arg) on the worker of key (arg is freed by fn). */
void br_enqueue(br_bridge *b, const char *key, br_job_fn fn, void *arg);
int64_t br_now_ms(void);
/* FNV-1a of a string (queue keys, the workers' small caches). */
uint64_t br_hash(const char *s);
/* The user JID (no device, no agent) of a JID string; "" when it does not parse (or is NULL). */
void br_user_jid(const char *jid, char *out, size_t cap);
void br_room_remember(br_bridge *b, const char *room, const char *chat, int64_t receiver,
                      int64_t portal_id);
bool br_room_lookup(br_bridge *b, const char *room, br_room_ref *out);
void br_room_forget_login(br_bridge *b, int64_t login_id);
/* The portal room of a chat (receiver: login id, 0 for shared portals), if it has one. */
bool br_room_of_chat(br_bridge *b, int64_t receiver, const char *chat, br_room_ref *out);
/* Sends a notice (as the bot) to room; errors are logged. */
void br_notice(br_pworker *pw, const char *room, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool br_is_ours(br_bridge *b, const char *mxid); /* the bot or a ghost */

/* ---- login.c ---- */
br_login *br_login_find(br_bridge *b, int64_t id);
/* Logins of a Matrix user (up to max); returns the count. */
size_t br_logins_of(br_bridge *b, const char *mxid, br_login **out, size_t max);
/* Starts a new login for mxid, reporting to room (QR, or code when phone is not NULL). */
int br_login_begin(br_pworker *pw, const char *mxid, const char *room, const char *phone, char *err,
                   size_t errcap);
/* Starts the logins this process holds leases for (at start-up). */
int br_logins_resume(br_bridge *b);
int br_login_logout(br_pworker *pw, br_login *l);
void br_logins_stop(br_bridge *b);
/* Sends m to a WhatsApp chat from l as message `id` and waits for the server's ack (waiting for
 * the connection first when the login is (re)connecting). 0 = sent. */
int br_login_send(br_login *l, const char *to, const wa_msg *m, const char *id, char *err,
                  size_t errcap);
/* The same without waiting for the ack: 0 when the engine took it (the completion job done_fn
 * then runs on key's portal queue with a br_send_done whose ctx is ctx), -1 when it could not
 * (err filled; nothing queued; ctx stays the caller's). Waits for the connection like
 * br_login_send when the login is (re)connecting. */
int br_login_send_async(br_login *l, const char *to, const wa_msg *m, const char *id,
                        const char *key, br_job_fn done_fn, void *ctx, char *err, size_t errcap);
/* Completes, as failed, asynchronous sends whose ack is overdue (called every second). */
void br_logins_sweep(br_bridge *b);
/* The WhatsApp message id of a Matrix event: "3EB0" + 16 hex digits of SHA-256(event id). The
 * same event always gets the same id, so a send repeated after a crash is one message to the
 * receivers, which deduplicate by id. */
void br_message_id_for(const char *event_id, char id[WA_MESSAGE_ID_MAX]);
const char *br_login_state_name(br_login *l);
/* A read receipt for a contact's message / our typing state, sent when connected (not queued). */
void br_login_mark_read(br_login *l, const char *chat, const char *wa_id);
void br_login_chat_state(br_login *l, const char *chat, bool typing);
/* The same for a group message (sender: its sender's user JID). */
void br_login_mark_read_from(br_login *l, const char *chat, const char *sender, const char *wa_id);
/* Asks for a group's info; the answer comes as a group-info job on the group's portal queue. */
void br_login_group_info(br_login *l, const char *group);
/* A group's subject (subject true) or description, from Matrix in room: a refusal comes to the
 * portal as br_group_job_info_refused. */
void br_login_group_set(br_login *l, const char *group, bool subject, const char *text,
                        const char *room);
/* sync: every group of the login (each answer a group-info job). */
void br_login_group_sync(br_login *l);
/* A Matrix user invited or kicked a ghost in a group portal, or changed the power level of a ghost
 * (or of a logged-in user) across 50: the change recorded as call (a group_call row, call->id)
 * is asked of WhatsApp through l. The answer comes to the portal as br_group_job_participants,
 * which shows it (a refusal: a notice, and the room put back, undo_level for a promote or demote)
 * and drops the row; a call the engine refuses to send is answered so too. A call whose answer is
 * lost (connection gone, bridge stopped) is settled when l is connected again
 * (br_group_job_settle). -1: l is not running (nothing sent). */
int br_login_group_participant(br_login *l, const db_group_call *call);
/* Whether a group_call row's call is on its way on l's connection (its answer still to come). */
bool br_login_call_in_flight(br_login *l, int64_t call_id);
/* create-group: the answer (a group-info job) is also reported in reply_room. */
int br_login_group_create(br_login *l, const char *subject, const char *const *participants,
                          size_t n, const char *reply_room);

/* ---- portal.c ---- */
/* A received WhatsApp message (from the engine, or the event buffer at start-up). */
typedef struct br_wa_msg {
    int64_t login_id;
    char chat[DB_ID_MAX];
    char sender[DB_ID_MAX];
    char id[DB_ID_MAX];
    char notify[256];
    int64_t ts_ms;
    uint8_t *plaintext; /* Message protobuf, malloc'd; NULL when undecryptable */
    size_t len;
    /* decrypted just now, for the first time (not a redelivery answered from the event buffer,
     * nor a buffer row bridged again at start-up): see portal.c bridged_before */
    bool fresh;
} br_wa_msg;
/* The portal job key of a WhatsApp chat for a login. */
void br_portal_key(int64_t login_id, const char *chat_user_jid, char *key, size_t cap);
void br_portal_job_wa_message(br_pworker *pw, void *arg); /* arg: br_wa_msg */
/* A Matrix room event for a portal (or an unknown room). arg: br_mx_job */
typedef struct br_mx_job {
    int64_t inbox_id;
    cJSON *ev; /* owned */
} br_mx_job;
void br_portal_job_mx_event(br_pworker *pw, void *arg);
/* A contact's receipt or typing on WhatsApp, shown on Matrix. arg: br_wa_signal */
typedef struct br_wa_signal {
    int64_t login_id;
    bool typing_event; /* true: chat state; false: a read receipt */
    bool identity;     /* the contact's security code changed (a notice in the DM portal) */
    bool self_read;    /* read receipt: the user read a contact's message on another device */
    char chat[DB_ID_MAX];
    char who[DB_ID_MAX]; /* the contact (user JID) */
    char id[DB_ID_MAX];  /* receipt: our message id */
    char state[32];      /* typing: composing / recording / paused */
} br_wa_signal;
void br_portal_job_wa_signal(br_pworker *pw, void *arg);
/* The ghost of a WhatsApp user: registered, its name kept current. false when jid is not a user. */
/* The worker's note of WhatsApp ids known to have no mapping row in their portal (see
 * br_pworker.absent): note one; take one off (true when it was noted). */
void br_absent_note(br_pworker *pw, int64_t portal_id, const char *id);
bool br_absent_take(br_pworker *pw, int64_t portal_id, const char *id);
bool br_portal_ghost_of(br_pworker *pw, const char *jid, char *mxid, size_t cap, char *name,
                        size_t name_cap);
/* Finds or creates the DM portal of login l with chat (a user JID), with its room. */
int br_portal_ensure_dm(br_pworker *pw, br_login *l, const char *chat, const char *name_hint,
                        db_portal *out);

/* ---- puppet.c: double puppeting ---- */
/* The content key marking what the bridge sent as a user (its value: the bot's localpart). */
#define BR_PUPPET_KEY "fi.mau.double_puppet_source"
/* The matrix/ client hook: the as_token of double_puppet.secrets for a real user's server. */
mx_puppet_auth br_puppet_auth(br_bridge *b);
/* Does double puppeting work for l's Matrix user? Checked once per login (whoami as the user,
 * on pw's client), then cached in l->dp_state; a failure is logged. */
bool br_puppet_ok(br_pworker *pw, br_login *l);
/* The Matrix user of the login whose WhatsApp account is jid, when double puppeting works for
 * it (mxid filled); false otherwise (then jid is shown by its ghost). */
bool br_puppet_of_jid(br_pworker *pw, const char *jid, char *mxid, size_t cap);
/* The puppeted user joins room (invited by the bot when needed); cached per worker. 0 or -1. */
int br_puppet_join(br_pworker *pw, const char *room, const char *mxid);
/* login-matrix: token must be an access token of mxid (checked with whoami, with that token);
 * then it is stored (mx_user.double_puppet_token) and the user's logins check again. 0, or -1
 * with why (never quoting the token). */
int br_puppet_login_manual(br_pworker *pw, const char *mxid, const char *token, char *why,
                           size_t cap);
/* logout-matrix: forgets the user's token (0, or -1 when there was none). */
int br_puppet_logout_manual(br_pworker *pw, const char *mxid);
/* Frees the token cache (at shutdown). */
void br_puppet_free(br_bridge *b);
/* Adds BR_PUPPET_KEY to an event content sent as a user. */
void br_puppet_mark(const br_bridge *b, cJSON *content);
/* An event (its JSON) whose content carries our BR_PUPPET_KEY: our own echo. */
bool br_puppet_is_echo(const br_bridge *b, const char *json, size_t len);

/* ---- commands.c ---- */
/* A message in a management room (or a prefixed command elsewhere). Returns true if handled. */
bool br_command_handle(br_pworker *pw, const char *room, const char *sender, const char *body,
                       const char *event_id, bool mgmt_room);
/* The bot was invited to a room by sender. */
/* A message in a portal room: a command when it starts with the prefix (set-relay, unset-relay
 * and the general ones), answered there; false when it is a message to bridge. */
bool br_command_in_portal(br_pworker *pw, const br_room_ref *ref, const char *sender,
                          const char *body, const char *event_id);
void br_command_on_invite(br_pworker *pw, const char *room, const char *sender, bool is_direct);

#endif
