/*
 * db/bridge_db.h - the bridge's rows: users, logins and their leases, portals, the message map,
 * the Matrix transaction inbox, and the key-value table.
 *
 * The hot paths of bridge/ and matrix/ as plain functions over a db_conn: accepting a pushed
 * appservice transaction (txn id + its events in one SQL transaction, DESIGN.md "Nothing is lost"),
 * taking inbox events and deleting them once bridged, recording a message's WhatsApp id <-> Matrix
 * event id, and taking login leases (DESIGN.md "Scaling out"). More tables get functions here as
 * bridge/ grows. Strings are UTF-8; fixed buffers are NUL-terminated.
 */
#ifndef DB_BRIDGE_DB_H
#define DB_BRIDGE_DB_H

#include "db/db.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DB_ID_MAX 256 /* bytes of a Matrix or WhatsApp identifier incl. NUL */

/* Creates the Matrix user if missing. */
int db_user_ensure(db_conn *c, const char *mxid);
/* Creates a login of mxid (creating the user if needed); *id receives wa_login.id. */
int db_login_create(db_conn *c, const char *mxid, int64_t *id);
/* Deletes a login and everything it owns (ON DELETE CASCADE, and the triggers of migration 0008
 * for the rows that carry no foreign key). */
int db_login_delete(db_conn *c, int64_t id);
/* Deletes the engine's rows whose login is gone: buffered events and sent plaintexts written for a
 * login while it was being deleted (these tables carry no foreign key: migration 0008). Run at
 * startup; *n (may be NULL) receives how many went. */
int db_sweep_orphans(db_conn *c, int64_t *n);
/* Takes up to max logins whose lease is free or expired (or already ours) for owner, for
 * lease_ms from now; rows locked by another taker are skipped. ids receives them, *n the count. */
int db_login_lease(db_conn *c, const char *owner, int64_t lease_ms, int64_t *ids, size_t max,
                   size_t *n);

/* The portal of chat_jid for receiver (0: a shared portal, e.g. a group); created if missing. */
int db_portal_ensure(db_conn *c, const char *chat_jid, int64_t receiver_login_id, int64_t *id);

/* One part of a bridged message. */
typedef struct db_message {
    int64_t portal_id;            /* portal.id */
    int64_t login_id;             /* login that bridged it, 0: none */
    char wa_id[DB_ID_MAX];        /* WhatsApp message id */
    char part_id[DB_ID_MAX];      /* "" for the first (or only) part */
    char sender_jid[DB_ID_MAX];   /* WhatsApp sender */
    char mxid[DB_ID_MAX];         /* Matrix event id */
    char mx_room[DB_ID_MAX];      /* Matrix room id */
    int64_t timestamp_ms;         /* message time */
    int edit_count;               /* edits bridged so far */
    char relay_sender[DB_ID_MAX]; /* relay mode: the Matrix user who wrote it, "" = not relayed */
} db_message;

/* DB_ERR_UNIQUE when the part or the event id is already mapped (a duplicate). */
int db_message_insert(db_conn *c, const db_message *m);
/* Inserts m and deletes the engine's event buffer row (login_id, chat, id) of the message it
 * bridged, in one statement: both or neither (DB_ERR_UNIQUE when m is a duplicate). */
int db_message_insert_done(db_conn *c, const db_message *m, int64_t login_id, const char *chat,
                           const char *id);
/* Both behind the connection's next statement (db_exec_later: write-behind; a failure, such as
 * a duplicate, is counted by db_later_failures; the caller flushes with db_flush when idle). */
int db_message_insert_later(db_conn *c, const db_message *m);
int db_message_insert_done_later(db_conn *c, const db_message *m, int64_t login_id,
                                 const char *chat, const char *id);
/* Inserts n parts in one round trip and one transaction (or the open one): all or nothing. */
int db_message_insert_many(db_conn *c, const db_message *m, size_t n);
int db_message_by_wa(db_conn *c, int64_t portal_id, const char *wa_id, const char *part_id,
                     db_message *out);
/* Which of n WhatsApp message ids have a mapping row (their first part) in the portal, in one
 * query: present[i] for wa_ids[i]. */
int db_message_present(db_conn *c, int64_t portal_id, const char *const *wa_ids, size_t n,
                       bool *present);
int db_message_by_mxid(db_conn *c, const char *mxid, db_message *out);
int db_message_delete(db_conn *c, const char *mxid);

/* An event of an appservice transaction. */
typedef struct db_inbox_event {
    const char *event_id;   /* Matrix event id */
    const char *room_id;    /* Matrix room id */
    const char *event_json; /* the event, verbatim */
} db_inbox_event;

/* Stores a pushed transaction: the txn id and its events, in one statement (one SQL transaction,
 * one round trip), durable when this returns DB_OK (on a connection with asynchronous commits,
 * made so by a db_sync after it). A txn id seen before adds nothing and sets *duplicate. An event
 * id already in the inbox is skipped. */
int db_mx_txn_accept(db_conn *c, const char *txn_id, const db_inbox_event *events, size_t n,
                     int64_t received_ms, bool *duplicate);
/* The same, committed as the connection commits (asynchronously on an async_commit connection:
 * the caller makes it durable with db_sync), and ids (n entries, may be NULL) receive each
 * event's inbox row id (arrival order), or -1 for an event not inserted (a repeated txn, or an
 * event id already in the inbox). */
int db_mx_txn_accept_ids(db_conn *c, const char *txn_id, const db_inbox_event *events, size_t n,
                         int64_t received_ms, bool *duplicate, int64_t *ids);

/* Forgets transaction ids received before before_ms (the homeserver stopped retrying them). */
int db_mx_txn_prune(db_conn *c, int64_t before_ms, int64_t *deleted);

/* An inbox row as read back. */
typedef struct db_inbox_row {
    int64_t id;               /* mx_inbox.id, arrival order */
    char event_id[DB_ID_MAX]; /* Matrix event id */
    char room_id[DB_ID_MAX];  /* Matrix room id */
    char *event_json;         /* malloc'd; free with db_inbox_rows_free */
    int attempts;             /* failed attempts so far */
} db_inbox_row;

/* Up to max oldest inbox rows (all rooms); *n receives the count. */
int db_inbox_peek(db_conn *c, db_inbox_row *rows, size_t max, size_t *n);
void db_inbox_rows_free(db_inbox_row *rows, size_t n);
/* Removes bridged events. */
int db_inbox_delete(db_conn *c, int64_t id);
/* The same behind the connection's next statement (db_exec_later: write-behind; failures are
 * counted by db_later_failures, and the caller flushes with db_flush when idle). */
int db_inbox_delete_later(db_conn *c, int64_t id);
int db_inbox_delete_many(db_conn *c, const int64_t *ids, size_t n);

/* The key-value table. db_kv_get copies into buf (cap bytes); DB_ERR_NOT_FOUND when unset. */
/* Ghosts (and the bot) registered on the homeserver: registration is asked for once. */
int db_registered_user_known(db_conn *c, const char *mxid, bool *known);
int db_registered_user_add(db_conn *c, const char *mxid); /* idempotent */

int db_kv_set(db_conn *c, const char *key, const char *value);
int db_kv_get(db_conn *c, const char *key, char *buf, size_t cap);
int db_kv_delete(db_conn *c, const char *key);

#endif
