/*
 * wa/store.h - the WhatsApp engine's storage interface: what a companion device must remember.
 *
 * The engine (wa/) never includes db/: it is handed a wa_store, a table of functions plus the
 * implementation's context, for one login. db/store_pg.c implements it on PostgreSQL
 * (db_store_new); wa/store_mem.c in memory for unit tests. It covers the device's own identity,
 * peers' identity keys, Signal sessions, one-time and signed prekeys, sender keys, app-state sync
 * keys / collection versions / mutation MACs, contacts, chat settings, the LID <-> phone number
 * map, message secrets, the decrypted-event buffer and the buffer of recently sent plaintexts.
 *
 * Transactions (DESIGN.md "Nothing is lost"): begin() ... commit() makes every call in between one
 * atomic unit, e.g. "put the decrypted plaintext into the event buffer AND save the advanced Signal
 * session" before the ack is sent. rollback() forgets all of it. Calls outside begin/commit are
 * each atomic on their own. Transactions do not nest. Inside a transaction a store may hold writes
 * back until commit (or its next read) and report their failure there: commit()'s answer is the
 * one that counts.
 *
 * Conventions: every function returns WA_STORE_OK (0), WA_STORE_NOT_FOUND (1, a normal answer of a
 * lookup) or a negative wa_store_err; last_error() describes the last failure. Addresses and JIDs
 * are NUL-terminated strings formatted by the engine (wa_jid_format, Signal "user[.agent]:device");
 * text must be valid UTF-8 without NUL bytes; binary values may hold any byte. Variable-length
 * values are appended to a caller's wb_buf (the caller frees it); fixed-size keys are arrays.
 * Nothing returned points into the store's memory unless said so.
 */
#ifndef WA_STORE_H
#define WA_STORE_H

#include "util/bytes.h"
#include "wa/binary/jid.h"
#include "wa/crypto.h" /* wa_keypair, WA_KEY_LEN (32: keys, secrets, MACs), WA_SIG_LEN */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum wa_store_err {
    WA_STORE_OK = 0,
    WA_STORE_NOT_FOUND = 1,     /* nothing stored under that key (not an error) */
    WA_STORE_ERR_NOMEM = -1,    /* an allocation failed */
    WA_STORE_ERR_INVALID = -2,  /* bad argument (too long, NULL, out of range) */
    WA_STORE_ERR_IO = -3,       /* the backend failed; nothing of the open transaction was
                                   written: roll back, retry later (do not ack) */
    WA_STORE_ERR_IN_DOUBT = -4, /* the backend lost contact during commit: it may or may not
                                   have been written */
    WA_STORE_ERR_STATE = -5,    /* begin inside a transaction, commit outside one */
    WA_STORE_ERR_CONFLICT = -6, /* a uniqueness rule was broken (e.g. LID map both ways) */
} wa_store_err;

/* A static English name for the code; never NULL. */
static inline const char *wa_store_strerror(int err)
{
    switch (err) {
    case WA_STORE_OK: return "no error";
    case WA_STORE_NOT_FOUND: return "not found";
    case WA_STORE_ERR_NOMEM: return "out of memory";
    case WA_STORE_ERR_INVALID: return "invalid argument";
    case WA_STORE_ERR_IO: return "storage failed; nothing written";
    case WA_STORE_ERR_IN_DOUBT: return "storage lost contact during commit; outcome unknown";
    case WA_STORE_ERR_STATE: return "transaction call out of order";
    case WA_STORE_ERR_CONFLICT: return "conflicts with a stored value";
    }
    return "unknown error";
}

#define WA_LTHASH_LEN   128            /* app-state LTHash */
#define WA_ADV_MAX      1024           /* bytes of ADV device identity details we keep */
#define WA_NAME_MAX     256            /* bytes of a name (push name, contact name) incl. NUL */
#define WA_PLATFORM_MAX 64             /* bytes of a platform name incl. NUL */
#define WA_ADDRESS_MAX  WA_JID_STR_MAX /* bytes of a Signal address or JID incl. NUL */

/* This companion device's identity. Before pairing the adv_* signature fields are empty. */
typedef struct wa_device {
    wa_keypair noise;                        /* static Noise key */
    wa_keypair identity;                     /* Signal identity key */
    uint32_t registration_id;                /* Signal registration id (14 bits) */
    uint32_t signed_prekey_id;               /* id of signed_prekey */
    wa_keypair signed_prekey;                /* current signed prekey */
    uint8_t signed_prekey_sig[WA_SIG_LEN];   /* identity's signature over signed_prekey.pub */
    uint8_t adv_secret[WA_KEY_LEN];          /* ADV secret key, from the pairing QR */
    uint8_t adv_details[WA_ADV_MAX];         /* ADVSignedDeviceIdentity.details (protobuf) */
    size_t adv_details_len;                  /* bytes used in adv_details */
    uint8_t adv_account_sig_key[WA_KEY_LEN]; /* primary's account signature key */
    uint8_t adv_account_sig[WA_SIG_LEN];     /* account signature */
    uint8_t adv_device_sig[WA_SIG_LEN];      /* our device signature */
    bool paired;                             /* the adv_account_* and adv_device_sig are set */
    char platform[WA_PLATFORM_MAX];          /* primary's platform, e.g. "android" */
    char push_name[WA_NAME_MAX];             /* our own push name */
    char business_name[WA_NAME_MAX];         /* verified business name, "" if none */
    char pn[WA_ADDRESS_MAX];  /* our device JID on s.whatsapp.net, "" before pairing */
    char lid[WA_ADDRESS_MAX]; /* our device JID on lid, "" if unknown */
    uint32_t next_prekey_id;  /* id the next generated one-time prekey gets */
} wa_device;

typedef struct wa_prekey {
    uint32_t id;    /* 24-bit prekey id */
    wa_keypair key; /* the key pair */
    bool uploaded;  /* the server has it */
} wa_prekey;

typedef struct wa_appstate_mac {
    uint8_t index_mac[WA_KEY_LEN]; /* identifies the mutation's index */
    uint8_t value_mac[WA_KEY_LEN]; /* MAC of the current value at that index */
} wa_appstate_mac;

typedef struct wa_contact {
    char jid[WA_ADDRESS_MAX];        /* the contact's user JID */
    char first_name[WA_NAME_MAX];    /* from the address book */
    char full_name[WA_NAME_MAX];     /* from the address book */
    char push_name[WA_NAME_MAX];     /* what they call themselves */
    char business_name[WA_NAME_MAX]; /* verified business name */
} wa_contact;

typedef struct wa_chat_settings {
    char chat_jid[WA_ADDRESS_MAX]; /* the chat */
    int64_t muted_until_ms;        /* 0: not muted, -1: forever, else Unix ms */
    bool pinned;                   /* pinned in the chat list */
    bool archived;                 /* archived */
    bool marked_unread;            /* manually marked unread */
} wa_chat_settings;

/* A decrypted message waiting in the event buffer. In callbacks the pointers are valid only for
 * the duration of the call. */
typedef struct wa_buffered_event {
    uint8_t ciphertext_hash[WA_KEY_LEN]; /* SHA-256 of the ciphertext: the buffer's key */
    const char *chat_jid;                /* chat it arrived in */
    const char *sender_jid;              /* sender device */
    const char *message_id;              /* WhatsApp message id */
    const uint8_t *plaintext;            /* decrypted bytes (padding removed) */
    size_t plaintext_len;                /* bytes in plaintext */
    int64_t server_ts_ms;                /* the stanza's timestamp */
    int64_t inserted_ms;                 /* when it was buffered */
} wa_buffered_event;

typedef int (*wa_store_event_fn)(void *arg, const wa_buffered_event *ev);

/* The interface. All functions take ctx as their first argument. */
typedef struct wa_store {
    void *ctx; /* the implementation's state, owned by it */

    /* -- lifecycle and transactions -- */
    void (*destroy)(void *ctx);           /* frees ctx (not the data) */
    const char *(*last_error)(void *ctx); /* describes the last failure; never NULL */
    int (*begin)(void *ctx);
    int (*commit)(void *ctx);
    int (*rollback)(void *ctx);
    /* A count that changes whenever writes the store accepted may be lost after all: a rollback,
     * a failed commit, a commit the database could not make durable. What the engine keeps beside
     * the store on the strength of a write (wa/signal.c: sessions' current records) is only good
     * while it stays the same. May be NULL: then nothing is kept. */
    uint64_t (*epoch)(void *ctx);
    int (*wipe)(void *ctx); /* logout: forget everything of this login */

    /* -- this device -- */
    int (*device_load)(void *ctx, wa_device *out);
    int (*device_save)(void *ctx, const wa_device *dev);
    int (*device_delete)(void *ctx);
    /* The signed prekey with this id (from the device record). */
    int (*signed_prekey_load)(void *ctx, uint32_t id, wa_keypair *out, uint8_t sig[WA_SIG_LEN]);

    /* -- peers' identity keys -- */
    int (*identity_load)(void *ctx, const char *address, uint8_t key[WA_KEY_LEN]);
    int (*identity_save)(void *ctx, const char *address, const uint8_t key[WA_KEY_LEN]);
    int (*identity_delete)(void *ctx, const char *address);
    /* Deletes every identity whose address starts with prefix (all devices of a user: "1555:"),
     * as session_delete_prefix; *deleted (may be NULL) receives the count. */
    int (*identity_delete_prefix)(void *ctx, const char *prefix, size_t *deleted);

    /* -- Signal sessions -- */
    int (*session_load)(void *ctx, const char *address, wb_buf *record);
    int (*session_save)(void *ctx, const char *address, const uint8_t *rec, size_t len);
    int (*session_delete)(void *ctx, const char *address);
    /* Deletes every session whose address starts with prefix (all devices of a user: "1555:"...).
     * *deleted (may be NULL) receives the count. */
    int (*session_delete_prefix)(void *ctx, const char *prefix, size_t *deleted);

    /* -- one-time prekeys -- */
    int (*prekey_load)(void *ctx, uint32_t id, wa_prekey *out);
    int (*prekeys_save)(void *ctx, const wa_prekey *keys, size_t n); /* insert or replace */
    int (*prekey_delete)(void *ctx, uint32_t id);
    /* Up to max prekeys not yet uploaded, lowest ids first; *n receives the count. */
    int (*prekeys_unuploaded)(void *ctx, wa_prekey *out, size_t max, size_t *n);
    /* Marks every prekey with id <= up_to_id uploaded. */
    int (*prekeys_mark_uploaded)(void *ctx, uint32_t up_to_id);
    int (*prekeys_count_uploaded)(void *ctx, size_t *n);

    /* -- group sender keys -- */
    int (*sender_key_load)(void *ctx, const char *group, const char *sender, wb_buf *record);
    int (*sender_key_save)(void *ctx, const char *group, const char *sender, const uint8_t *rec,
                           size_t len);
    int (*sender_key_delete)(void *ctx, const char *group, const char *sender);

    /* -- app state -- */
    int (*appstate_key_save)(void *ctx, const uint8_t *key_id, size_t key_id_len,
                             const uint8_t *key_data, size_t key_data_len, const uint8_t *fp,
                             size_t fp_len, int64_t timestamp_ms);
    int (*appstate_key_load)(void *ctx, const uint8_t *key_id, size_t key_id_len, wb_buf *key_data,
                             wb_buf *fp, int64_t *timestamp_ms);
    /* The id of the newest key (by timestamp), for encoding our own patches. */
    int (*appstate_key_latest)(void *ctx, wb_buf *key_id);
    int (*appstate_key_delete)(void *ctx, const uint8_t *key_id, size_t key_id_len);
    /* NOT_FOUND (and version 0, zero hash) for a collection never synced. */
    int (*appstate_version_load)(void *ctx, const char *name, uint64_t *version,
                                 uint8_t hash[WA_LTHASH_LEN]);
    int (*appstate_version_save)(void *ctx, const char *name, uint64_t version,
                                 const uint8_t hash[WA_LTHASH_LEN]);
    /* Forgets a collection: its version and all of its MACs (before a full resync). */
    int (*appstate_version_delete)(void *ctx, const char *name);
    int (*appstate_macs_save)(void *ctx, const char *name, uint64_t version,
                              const wa_appstate_mac *macs, size_t n);
    int (*appstate_macs_delete)(void *ctx, const char *name,
                                const uint8_t (*index_macs)[WA_KEY_LEN], size_t n);
    int (*appstate_mac_load)(void *ctx, const char *name, const uint8_t index_mac[WA_KEY_LEN],
                             uint8_t value_mac[WA_KEY_LEN]);

    /* -- contacts and chats -- */
    int (*contact_load)(void *ctx, const char *jid, wa_contact *out);
    int (*contact_save)(void *ctx, const wa_contact *c);
    int (*contact_delete)(void *ctx, const char *jid);
    int (*chat_settings_load)(void *ctx, const char *chat_jid, wa_chat_settings *out);
    int (*chat_settings_save)(void *ctx, const wa_chat_settings *s);
    int (*chat_settings_delete)(void *ctx, const char *chat_jid);

    /* -- LID <-> phone number users (no device part; the engine writes user JIDs, "123@lid" and
     *    "1555@s.whatsapp.net", learnt from the sender_lid / sender_pn of messages) -- */
    /* Records lid <-> pn, replacing any older pairing of either side. */
    int (*lid_map_save)(void *ctx, const char *lid, const char *pn);
    int (*lid_for_pn)(void *ctx, const char *pn, char lid[WA_ADDRESS_MAX]);
    int (*pn_for_lid)(void *ctx, const char *lid, char pn[WA_ADDRESS_MAX]);
    int (*lid_map_delete)(void *ctx, const char *lid);

    /* -- message secrets -- */
    int (*msg_secret_save)(void *ctx, const char *chat, const char *sender, const char *id,
                           const uint8_t secret[WA_KEY_LEN]);
    int (*msg_secret_load)(void *ctx, const char *chat, const char *sender, const char *id,
                           uint8_t secret[WA_KEY_LEN]);
    int (*msg_secret_delete)(void *ctx, const char *chat, const char *sender, const char *id);

    /* -- the decrypted-event buffer -- */
    /* Inserts or replaces ev (keyed by ev->ciphertext_hash); inserted_ms is set by the store. */
    int (*event_buffer_save)(void *ctx, const wa_buffered_event *ev);
    /* Looks an event up by hash: appends the plaintext, gives the server timestamp (may be NULL).
     */
    int (*event_buffer_load)(void *ctx, const uint8_t hash[WA_KEY_LEN], wb_buf *plaintext,
                             int64_t *server_ts_ms);
    int (*event_buffer_delete)(void *ctx, const uint8_t hash[WA_KEY_LEN]);
    /* Calls fn for every buffered event, oldest first; a non-zero return from fn stops the walk
     * and is returned. Do not call other store functions from fn. */
    int (*event_buffer_foreach)(void *ctx, wa_store_event_fn fn, void *arg);
    /* Deletes events buffered before before_ms; *deleted (may be NULL) receives the count. */
    int (*event_buffer_prune)(void *ctx, int64_t before_ms, size_t *deleted);

    /* -- recently sent plaintexts, for retry receipts -- */
    int (*sent_save)(void *ctx, const char *chat, const char *id, const uint8_t *plaintext,
                     size_t len, int64_t sent_ms);
    int (*sent_load)(void *ctx, const char *chat, const char *id, wb_buf *plaintext);
    int (*sent_delete)(void *ctx, const char *chat, const char *id);
    int (*sent_prune)(void *ctx, int64_t before_ms, size_t *deleted);
} wa_store;

#endif
