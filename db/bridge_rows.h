/*
 * db/bridge_rows.h - the rest of the bridge's rows, as bridge/ uses them: users and their
 * management rooms, logins and their state, portals and their rooms, ghosts, the inbox read in
 * order after a position, and the engine's decrypted-event buffer read and cleared by the bridge.
 *
 * Companion to db/bridge_db.h (the hot paths that were there first). Same conventions: DB_OK or a
 * negative db_err, details in db_conn_error; fixed buffers NUL-terminated, DB_ID_MAX bytes.
 */
#ifndef DB_BRIDGE_ROWS_H
#define DB_BRIDGE_ROWS_H

#include "db/bridge_db.h"

/* ---- users ---- */

/* The user's management room ("" when none); DB_ERR_NOT_FOUND when the user is unknown. */
int db_user_management_room(db_conn *c, const char *mxid, char *room, size_t cap);
/* Creates the user if needed and records its management room. */
int db_user_set_management_room(db_conn *c, const char *mxid, const char *room);
/* Whose management room this is; DB_ERR_NOT_FOUND when nobody's. */
int db_user_by_management_room(db_conn *c, const char *room, char *mxid, size_t cap);
/* The user's own access token for double puppeting (login-matrix; a secret) into token, "" when
 * none; DB_ERR_NOT_FOUND when the user is unknown. */
int db_user_puppet_token(db_conn *c, const char *mxid, char *token, size_t cap);
/* Creates the user if needed and records its token (NULL clears it). */
int db_user_set_puppet_token(db_conn *c, const char *mxid, const char *token);

/* ---- logins ---- */

typedef struct db_login {
    int64_t id;
    char mxid[DB_ID_MAX]; /* the Matrix user it belongs to */
    char phone[64];       /* digits; "" before pairing */
    char state[32];       /* new, pairing, connected, logged_out, ... */
    int64_t created_ms;
    char owner[128]; /* lease holder ("" = none) */
    int64_t lease_expires_ms;
} db_login;

/* Logins of mxid (NULL: every login), oldest first; at most max; *n the count. */
int db_login_list(db_conn *c, const char *mxid, db_login *out, size_t max, size_t *n);
int db_login_get(db_conn *c, int64_t id, db_login *out);
/* Sets the state, and the phone when phone is not NULL. */
int db_login_set_state(db_conn *c, int64_t id, const char *state, const char *phone);
/* Takes the lease of a login we just created (owner, for lease_ms from now). */
int db_login_take(db_conn *c, int64_t id, const char *owner, int64_t lease_ms);
/* Gives up our lease on a login (shutdown): another process may take it at once. */
int db_login_release(db_conn *c, int64_t id, const char *owner);

/* ---- portals ---- */

#define DB_TOPIC_MAX                                                                               \
    8192 /* bytes of a room topic / group description incl. NUL (WhatsApp allows                   \
            2,048 characters) */

typedef struct db_portal {
    int64_t id;
    char chat_jid[DB_ID_MAX];  /* WhatsApp chat */
    int64_t receiver_login_id; /* 0: shared (group) portal */
    char mxid[DB_ID_MAX];      /* Matrix room id, "" until created */
    char name[DB_ID_MAX];
    char topic[DB_TOPIC_MAX];
    int64_t relay_login_id; /* relay mode: the login relaying for users without one; 0 = none */
} db_portal;

/* Portals that have a room, at most max, from after_id on (id order, for paging). */
int db_portal_list(db_conn *c, int64_t after_id, db_portal *out, size_t max, size_t *n);
int db_portal_get(db_conn *c, int64_t id, db_portal *out);
int db_portal_by_mxid(db_conn *c, const char *room, db_portal *out);
int db_portal_set_mxid(db_conn *c, int64_t id, const char *room);
int db_portal_set_name(db_conn *c, int64_t id, const char *name, const char *topic);
/* Relay mode: relay_login_id relays in the portal (0 = none). */
int db_portal_set_relay(db_conn *c, int64_t id, int64_t relay_login_id);
/* Portals of a login (its DMs; groups come through user_portal). */
int db_portal_delete_for_login(db_conn *c, int64_t login_id);

/* ---- ghosts ---- */

typedef struct db_ghost {
    char jid[DB_ID_MAX];  /* WhatsApp user, no device */
    char mxid[DB_ID_MAX]; /* the puppet */
    char name[DB_ID_MAX]; /* display name set on the homeserver, "" = none yet */
} db_ghost;

int db_ghost_get(db_conn *c, const char *jid, db_ghost *out);
int db_ghost_by_mxid(db_conn *c, const char *mxid, db_ghost *out);
/* Inserts or updates (mxid, name). */
int db_ghost_upsert(db_conn *c, const db_ghost *g);

/* ---- reactions (one per sender and target, as WhatsApp allows) ---- */

typedef struct db_reaction {
    int64_t portal_id;
    char target_wa_id[DB_ID_MAX]; /* the message reacted to */
    char sender_jid[DB_ID_MAX];   /* who reacted ("" = the login's own account) */
    char emoji[64];
    char mxid[DB_ID_MAX]; /* the m.reaction event */
    char mx_room[DB_ID_MAX];
    int64_t timestamp_ms;
} db_reaction;

/* Inserts or replaces the sender's reaction to the target. */
int db_reaction_put(db_conn *c, const db_reaction *r);
int db_reaction_get(db_conn *c, int64_t portal_id, const char *target_wa_id, const char *sender_jid,
                    db_reaction *out);
int db_reaction_by_mxid(db_conn *c, const char *mxid, db_reaction *out);
int db_reaction_delete(db_conn *c, const char *mxid);

/* ---- LID <-> phone number, as learnt from group member lists (the engine's wa_lid_map) ---- */

/* Records lid <-> pn for a login (user JIDs, no device); replaces older pairings of either. */
int db_lid_map_put(db_conn *c, int64_t login_id, const char *lid, const char *pn);
/* The phone-number JID of a LID JID; DB_ERR_NOT_FOUND when unknown. */
int db_lid_to_pn(db_conn *c, int64_t login_id, const char *lid, char *pn, size_t cap);

/* ---- Matrix inbox in order ---- */

/* Up to max inbox rows with id > after_id, oldest first. */
int db_inbox_peek_after(db_conn *c, int64_t after_id, db_inbox_row *rows, size_t max, size_t *n);
/* Counts a failed attempt on an inbox row. */
int db_inbox_failed(db_conn *c, int64_t id);
int db_inbox_count(db_conn *c, int64_t *n);

/* ---- the engine's decrypted-event buffer, as the bridge sees it ---- */

typedef struct db_buffered {
    char chat[DB_ID_MAX];   /* chat JID */
    char sender[DB_ID_MAX]; /* sending device JID */
    char id[DB_ID_MAX];     /* WhatsApp message id */
    uint8_t *plaintext;     /* Message protobuf, malloc'd */
    size_t len;
    int64_t ts_ms; /* server time */
} db_buffered;

/* Rows of login_id not yet bridged, oldest first (a restart re-bridges them). */
int db_event_buffer_pending(db_conn *c, int64_t login_id, db_buffered **out, size_t *n);
void db_buffered_free(db_buffered *rows, size_t n);
/* Drops a bridged message (every part of it). */
int db_event_buffer_done(db_conn *c, int64_t login_id, const char *chat, const char *id);
int db_event_buffer_count(db_conn *c, int64_t login_id, int64_t *n);

/* ---- group notifications waiting to be shown on Matrix (wa_group_event_buffer) ----
 * Written on the engine thread before the notification is acked to WhatsApp; removed by the
 * portal worker once the change is shown; read again at start-up (a crash in between). */

typedef struct db_group_event {
    int64_t id;
    char group[DB_ID_MAX]; /* group JID */
    char *data;            /* the change (the bridge's JSON), malloc'd */
} db_group_event;

/* Saves the n changes of one notification (note_key: its "from id") in one transaction, all or
 * none; ids[i] receives change i's row id. A row saved by an earlier delivery of the same
 * notification is kept (its data replaced) and its id given. */
int db_group_event_save(db_conn *c, int64_t login_id, const char *group, const char *note_key,
                        const char *const *data, size_t n, int64_t *ids);
/* Rows of login_id not yet shown, oldest first (*out malloc'd: db_group_events_free). */
int db_group_event_pending(db_conn *c, int64_t login_id, db_group_event **out, size_t *n);
void db_group_events_free(db_group_event *rows, size_t n);
/* Drops a row once its change was shown (no row: nothing to do). */
int db_group_event_done(db_conn *c, int64_t id);
int db_group_event_count(db_conn *c, int64_t login_id, int64_t *n);

/* ---- group admins as the bridge last showed them (group_admin) ---- */

/* Records whether a member (user JID) of a group portal's group is admin. */
int db_group_admin_set(db_conn *c, int64_t portal_id, const char *jid, bool admin);
/* The same for n members at once (one round trip; all or none). */
int db_group_admin_put(db_conn *c, int64_t portal_id, const char *const *jids, const bool *admin,
                       size_t n);
/* The admins recorded for a portal (up to max user JIDs); *n the count. */
int db_group_admins(db_conn *c, int64_t portal_id, char (*out)[DB_ID_MAX], size_t max, size_t *n);

/* ---- group changes asked from Matrix, until WhatsApp's answer is shown (group_call) ---- */

typedef struct db_group_call {
    int64_t id;
    int64_t login_id;
    char group[DB_ID_MAX];  /* group JID */
    char room[DB_ID_MAX];   /* the portal room, where the answer is told */
    int change;             /* wa_group_change */
    char target[DB_ID_MAX]; /* whom it is about (a user JID) */
    int undo_level;         /* promote/demote: the power level put back when not made */
    int64_t created_ms;
} db_group_call;

/* Records a call (call->id and login_id..created_ms; id is ignored) and deletes the Matrix event's
 * inbox row inbox_id (<= 0: none) in one transaction, durable when this returns DB_OK; *id: the
 * row's id. */
int db_group_call_add(db_conn *c, const db_group_call *call, int64_t inbox_id, int64_t *id);
/* The calls of login_id in group (NULL: any group) created before before_ms, oldest first, up
 * to max; *n the count. */
int db_group_call_list(db_conn *c, int64_t login_id, const char *group, int64_t before_ms,
                       db_group_call *out, size_t max, size_t *n);
/* Drops a call once its answer is shown (no row: nothing to do). */
int db_group_call_done(db_conn *c, int64_t id);

#endif
