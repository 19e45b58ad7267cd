/*
 * db/store_pg.c - wa/store.h on PostgreSQL: one prepared statement per operation, keyed by login.
 *
 * Every statement names the login ($1) and every write is an upsert or a delete of whole rows, so
 * all of them are marked idempotent and survive a reconnect outside transactions. Operations made
 * of several statements (a batch of prekeys or MACs, the LID map, wipe) run in the caller's open
 * transaction or, outside one, in a db_tx of their own, so they are always atomic.
 */
#include "db/store_pg.h"
#include "db/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define I DB_STMT_IDEMPOTENT

/* The hot cache of Signal sessions and identity keys. One process writes a login's rows (its
 * lease), so what this store saved is what the database holds: loads of cached entries need no
 * round trip, an identity saved unchanged is not written again, and a session saved inside a
 * transaction is written at commit, all of them in one pipeline (libsignal loads a session
 * several times per message and saves it once). A rollback or a failed commit forgets every entry
 * the transaction touched, so the next load reads the database again. */
#define CACHE_SLOTS 128 /* per kind and login; the least recently used clean entry makes room */

typedef struct cache_ent {
    char addr[WA_ADDRESS_MAX]; /* "" = free */
    uint8_t *rec;              /* session record / identity key (heap), NULL when absent */
    size_t len;                /* bytes in rec */
    bool absent;               /* known not to be stored */
    bool dirty;                /* session saved in the open transaction, written at commit */
    bool touched;              /* changed in the open transaction */
    uint64_t used;             /* LRU tick */
} cache_ent;

typedef struct pg_cache {
    cache_ent sessions[CACHE_SLOTS];
    cache_ent identities[CACHE_SLOTS];
    uint64_t tick;
} pg_cache;

/* Which ciphertexts may be in the event buffer, so that the check every received message makes
 * ("was this one decrypted before?", only true for a redelivery) needs no round trip when the
 * answer is no. The same lease as the cache: only this store adds rows of its login. Rows present
 * at first use are loaded once; the ones this store saves since are remembered in a ring. A hash in
 * neither is not buffered... unless saved more than EVBUF_RECENT messages ago and still there (not
 * bridged yet): then a redelivery of it is decrypted again and fails, which loses nothing - the
 * row is bridged from the buffer. A fingerprint seen here only means "ask the database". */
#define EVBUF_RECENT 1024

typedef struct evbuf_filter {
    uint64_t *present; /* fingerprints of the rows present at first use, sorted */
    size_t npresent;
    uint64_t recent[EVBUF_RECENT]; /* saved since (a ring) */
    size_t nrecent, next;
} evbuf_filter;

typedef struct pg_store {
    db_conn *conn;       /* borrowed; used by one thread at a time */
    int64_t login_id;    /* wa_login.id of every row we touch */
    pg_cache *cache;     /* allocated on first use (idle logins stay small) */
    evbuf_filter *evbuf; /* allocated on first use */
    uint64_t held_seen;  /* db_held_losses of conn when the cache was last known good */
    uint64_t undone;     /* rollbacks and failed commits (part of epoch()) */
    char err[640];       /* last error, "" after success */
} pg_store;

/* ---- statements ---- */

static const db_stmt st_device_load = {
    "store_device_load",
    "SELECT noise_priv, noise_pub, identity_priv, identity_pub, registration_id, signed_prekey_id,"
    " signed_prekey_priv, signed_prekey_pub, signed_prekey_sig, adv_secret, adv_details,"
    " adv_account_sig_key, adv_account_sig, adv_device_sig, platform, push_name, business_name,"
    " pn, lid, next_prekey_id FROM wa_device WHERE login_id = $1",
    I};
static const db_stmt st_device_save = {
    "store_device_save",
    "INSERT INTO wa_device (login_id, noise_priv, noise_pub, identity_priv, identity_pub,"
    " registration_id, signed_prekey_id, signed_prekey_priv, signed_prekey_pub, signed_prekey_sig,"
    " adv_secret, adv_details, adv_account_sig_key, adv_account_sig, adv_device_sig, platform,"
    " push_name, business_name, pn, lid, next_prekey_id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,"
    " $19, $20, $21)"
    " ON CONFLICT (login_id) DO UPDATE SET noise_priv = EXCLUDED.noise_priv,"
    " noise_pub = EXCLUDED.noise_pub, identity_priv = EXCLUDED.identity_priv,"
    " identity_pub = EXCLUDED.identity_pub, registration_id = EXCLUDED.registration_id,"
    " signed_prekey_id = EXCLUDED.signed_prekey_id,"
    " signed_prekey_priv = EXCLUDED.signed_prekey_priv,"
    " signed_prekey_pub = EXCLUDED.signed_prekey_pub,"
    " signed_prekey_sig = EXCLUDED.signed_prekey_sig, adv_secret = EXCLUDED.adv_secret,"
    " adv_details = EXCLUDED.adv_details, adv_account_sig_key = EXCLUDED.adv_account_sig_key,"
    " adv_account_sig = EXCLUDED.adv_account_sig, adv_device_sig = EXCLUDED.adv_device_sig,"
    " platform = EXCLUDED.platform, push_name = EXCLUDED.push_name,"
    " business_name = EXCLUDED.business_name, pn = EXCLUDED.pn, lid = EXCLUDED.lid,"
    " next_prekey_id = EXCLUDED.next_prekey_id",
    I};
static const db_stmt st_device_delete = {"store_device_delete",
                                         "DELETE FROM wa_device WHERE login_id = $1", I};
static const db_stmt st_signed_prekey_load = {
    "store_signed_prekey_load",
    "SELECT signed_prekey_priv, signed_prekey_pub, signed_prekey_sig FROM wa_device"
    " WHERE login_id = $1 AND signed_prekey_id = $2",
    I};

static const db_stmt st_identity_load = {
    "store_identity_load",
    "SELECT identity_key FROM wa_identity WHERE login_id = $1 AND address = $2", I};
static const db_stmt st_identity_save = {
    "store_identity_save",
    "INSERT INTO wa_identity (login_id, address, identity_key) VALUES ($1, $2, $3)"
    " ON CONFLICT (login_id, address) DO UPDATE SET identity_key = EXCLUDED.identity_key",
    I};
static const db_stmt st_identity_delete = {
    "store_identity_delete", "DELETE FROM wa_identity WHERE login_id = $1 AND address = $2", I};
static const db_stmt st_identity_delete_prefix = {
    "store_identity_delete_prefix",
    "DELETE FROM wa_identity WHERE login_id = $1 AND starts_with(address, $2)", I};

static const db_stmt st_session_load = {
    "store_session_load", "SELECT record FROM wa_session WHERE login_id = $1 AND address = $2", I};
static const db_stmt st_session_save = {
    "store_session_save",
    "INSERT INTO wa_session (login_id, address, record) VALUES ($1, $2, $3)"
    " ON CONFLICT (login_id, address) DO UPDATE SET record = EXCLUDED.record",
    I};
static const db_stmt st_session_delete = {
    "store_session_delete", "DELETE FROM wa_session WHERE login_id = $1 AND address = $2", I};
static const db_stmt st_session_delete_prefix = {
    "store_session_delete_prefix",
    "DELETE FROM wa_session WHERE login_id = $1 AND starts_with(address, $2)", I};

static const db_stmt st_prekey_load = {
    "store_prekey_load",
    "SELECT key_id, priv, pub, uploaded FROM wa_prekey WHERE login_id = $1 AND key_id = $2", I};
static const db_stmt st_prekey_save = {
    "store_prekey_save",
    "INSERT INTO wa_prekey (login_id, key_id, priv, pub, uploaded) VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (login_id, key_id) DO UPDATE SET priv = EXCLUDED.priv, pub = EXCLUDED.pub,"
    " uploaded = EXCLUDED.uploaded",
    I};
static const db_stmt st_prekey_delete = {
    "store_prekey_delete", "DELETE FROM wa_prekey WHERE login_id = $1 AND key_id = $2", I};
static const db_stmt st_prekeys_unuploaded = {
    "store_prekeys_unuploaded",
    "SELECT key_id, priv, pub, uploaded FROM wa_prekey WHERE login_id = $1 AND NOT uploaded"
    " ORDER BY key_id LIMIT $2",
    I};
static const db_stmt st_prekeys_mark = {
    "store_prekeys_mark",
    "UPDATE wa_prekey SET uploaded = true WHERE login_id = $1 AND key_id <= $2 AND NOT uploaded",
    I};
static const db_stmt st_prekeys_count = {
    "store_prekeys_count", "SELECT count(*) FROM wa_prekey WHERE login_id = $1 AND uploaded", I};

static const db_stmt st_sender_key_load = {
    "store_sender_key_load",
    "SELECT record FROM wa_sender_key WHERE login_id = $1 AND group_id = $2 AND sender = $3", I};
static const db_stmt st_sender_key_save = {
    "store_sender_key_save",
    "INSERT INTO wa_sender_key (login_id, group_id, sender, record) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (login_id, group_id, sender) DO UPDATE SET record = EXCLUDED.record",
    I};
static const db_stmt st_sender_key_delete = {
    "store_sender_key_delete",
    "DELETE FROM wa_sender_key WHERE login_id = $1 AND group_id = $2 AND sender = $3", I};

static const db_stmt st_askey_save = {
    "store_askey_save",
    "INSERT INTO wa_appstate_key (login_id, key_id, key_data, fingerprint, timestamp_ms)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (login_id, key_id) DO UPDATE SET"
    " key_data = EXCLUDED.key_data, fingerprint = EXCLUDED.fingerprint,"
    " timestamp_ms = EXCLUDED.timestamp_ms",
    I};
static const db_stmt st_askey_load = {
    "store_askey_load",
    "SELECT key_data, fingerprint, timestamp_ms FROM wa_appstate_key"
    " WHERE login_id = $1 AND key_id = $2",
    I};
static const db_stmt st_askey_latest = {"store_askey_latest",
                                        "SELECT key_id FROM wa_appstate_key WHERE login_id = $1"
                                        " ORDER BY timestamp_ms DESC, key_id DESC LIMIT 1",
                                        I};
static const db_stmt st_askey_delete = {
    "store_askey_delete", "DELETE FROM wa_appstate_key WHERE login_id = $1 AND key_id = $2", I};
static const db_stmt st_asver_load = {
    "store_asver_load",
    "SELECT version, hash FROM wa_appstate_version WHERE login_id = $1 AND name = $2", I};
static const db_stmt st_asver_save = {
    "store_asver_save",
    "INSERT INTO wa_appstate_version (login_id, name, version, hash) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (login_id, name) DO UPDATE SET version = EXCLUDED.version, hash = EXCLUDED.hash",
    I};
static const db_stmt st_asver_delete = {
    "store_asver_delete", "DELETE FROM wa_appstate_version WHERE login_id = $1 AND name = $2", I};
static const db_stmt st_asmac_delete_all = {
    "store_asmac_delete_all", "DELETE FROM wa_appstate_mac WHERE login_id = $1 AND name = $2", I};
static const db_stmt st_asmac_save = {
    "store_asmac_save",
    "INSERT INTO wa_appstate_mac (login_id, name, index_mac, value_mac, version)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (login_id, name, index_mac) DO UPDATE SET"
    " value_mac = EXCLUDED.value_mac, version = EXCLUDED.version",
    I};
static const db_stmt st_asmac_delete = {
    "store_asmac_delete",
    "DELETE FROM wa_appstate_mac WHERE login_id = $1 AND name = $2 AND index_mac = $3", I};
static const db_stmt st_asmac_load = {
    "store_asmac_load",
    "SELECT value_mac FROM wa_appstate_mac WHERE login_id = $1 AND name = $2 AND index_mac = $3",
    I};

static const db_stmt st_contact_load = {
    "store_contact_load",
    "SELECT first_name, full_name, push_name, business_name FROM wa_contact"
    " WHERE login_id = $1 AND jid = $2",
    I};
static const db_stmt st_contact_save = {
    "store_contact_save",
    "INSERT INTO wa_contact (login_id, jid, first_name, full_name, push_name, business_name)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (login_id, jid) DO UPDATE SET"
    " first_name = EXCLUDED.first_name, full_name = EXCLUDED.full_name,"
    " push_name = EXCLUDED.push_name, business_name = EXCLUDED.business_name",
    I};
static const db_stmt st_contact_delete = {
    "store_contact_delete", "DELETE FROM wa_contact WHERE login_id = $1 AND jid = $2", I};
static const db_stmt st_chat_load = {
    "store_chat_load",
    "SELECT muted_until_ms, pinned, archived, marked_unread FROM wa_chat_settings"
    " WHERE login_id = $1 AND chat_jid = $2",
    I};
static const db_stmt st_chat_save = {
    "store_chat_save",
    "INSERT INTO wa_chat_settings (login_id, chat_jid, muted_until_ms, pinned, archived,"
    " marked_unread) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (login_id, chat_jid) DO UPDATE"
    " SET muted_until_ms = EXCLUDED.muted_until_ms, pinned = EXCLUDED.pinned,"
    " archived = EXCLUDED.archived, marked_unread = EXCLUDED.marked_unread",
    I};
static const db_stmt st_chat_delete = {
    "store_chat_delete", "DELETE FROM wa_chat_settings WHERE login_id = $1 AND chat_jid = $2", I};

static const db_stmt st_lid_unpair = {
    "store_lid_unpair", "DELETE FROM wa_lid_map WHERE login_id = $1 AND (pn = $3 AND lid <> $2)",
    I};
static const db_stmt st_lid_save = {"store_lid_save",
                                    "INSERT INTO wa_lid_map (login_id, lid, pn) VALUES ($1, $2, $3)"
                                    " ON CONFLICT (login_id, lid) DO UPDATE SET pn = EXCLUDED.pn",
                                    I};
static const db_stmt st_lid_for_pn = {
    "store_lid_for_pn", "SELECT lid FROM wa_lid_map WHERE login_id = $1 AND pn = $2", I};
static const db_stmt st_pn_for_lid = {
    "store_pn_for_lid", "SELECT pn FROM wa_lid_map WHERE login_id = $1 AND lid = $2", I};
static const db_stmt st_lid_delete = {"store_lid_delete",
                                      "DELETE FROM wa_lid_map WHERE login_id = $1 AND lid = $2", I};

static const db_stmt st_secret_save = {
    "store_secret_save",
    "INSERT INTO wa_message_secret (login_id, chat_jid, sender_jid, message_id, secret)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (login_id, chat_jid, sender_jid, message_id)"
    " DO UPDATE SET secret = EXCLUDED.secret",
    I};
static const db_stmt st_secret_load = {
    "store_secret_load",
    "SELECT secret FROM wa_message_secret WHERE login_id = $1 AND chat_jid = $2"
    " AND sender_jid = $3 AND message_id = $4",
    I};
static const db_stmt st_secret_delete = {
    "store_secret_delete",
    "DELETE FROM wa_message_secret WHERE login_id = $1 AND chat_jid = $2 AND sender_jid = $3"
    " AND message_id = $4",
    I};

static const db_stmt st_evbuf_save = {
    "store_evbuf_save",
    "INSERT INTO wa_event_buffer (login_id, ciphertext_hash, chat_jid, sender_jid, message_id,"
    " plaintext, server_ts_ms, inserted_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (login_id, ciphertext_hash) DO UPDATE SET chat_jid = EXCLUDED.chat_jid,"
    " sender_jid = EXCLUDED.sender_jid, message_id = EXCLUDED.message_id,"
    " plaintext = EXCLUDED.plaintext, server_ts_ms = EXCLUDED.server_ts_ms",
    I};
static const db_stmt st_evbuf_load = {"store_evbuf_load",
                                      "SELECT plaintext, server_ts_ms FROM wa_event_buffer"
                                      " WHERE login_id = $1 AND ciphertext_hash = $2",
                                      I};
static const db_stmt st_evbuf_hashes = {
    "store_evbuf_hashes", "SELECT ciphertext_hash FROM wa_event_buffer WHERE login_id = $1", I};
static const db_stmt st_evbuf_delete = {
    "store_evbuf_delete",
    "DELETE FROM wa_event_buffer WHERE login_id = $1 AND ciphertext_hash = $2", I};
static const db_stmt st_evbuf_all = {
    "store_evbuf_all",
    "SELECT ciphertext_hash, chat_jid, sender_jid, message_id, plaintext, server_ts_ms,"
    " inserted_ms FROM wa_event_buffer WHERE login_id = $1 ORDER BY inserted_ms, server_ts_ms",
    I};
static const db_stmt st_evbuf_prune = {
    "store_evbuf_prune", "DELETE FROM wa_event_buffer WHERE login_id = $1 AND inserted_ms < $2", I};

static const db_stmt st_sent_save = {
    "store_sent_save",
    "INSERT INTO wa_sent_message (login_id, chat_jid, message_id, plaintext, sent_ms)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (login_id, chat_jid, message_id) DO UPDATE SET"
    " plaintext = EXCLUDED.plaintext, sent_ms = EXCLUDED.sent_ms",
    I};
static const db_stmt st_sent_load = {
    "store_sent_load",
    "SELECT plaintext FROM wa_sent_message WHERE login_id = $1 AND chat_jid = $2"
    " AND message_id = $3",
    I};
static const db_stmt st_sent_delete = {
    "store_sent_delete",
    "DELETE FROM wa_sent_message WHERE login_id = $1 AND chat_jid = $2 AND message_id = $3", I};
static const db_stmt st_sent_prune = {
    "store_sent_prune", "DELETE FROM wa_sent_message WHERE login_id = $1 AND sent_ms < $2", I};

/* wipe: every engine table of the login. */
static const db_stmt st_wipe[] = {
    {"store_wipe_device", "DELETE FROM wa_device WHERE login_id = $1", I},
    {"store_wipe_identity", "DELETE FROM wa_identity WHERE login_id = $1", I},
    {"store_wipe_prekey", "DELETE FROM wa_prekey WHERE login_id = $1", I},
    {"store_wipe_session", "DELETE FROM wa_session WHERE login_id = $1", I},
    {"store_wipe_sender_key", "DELETE FROM wa_sender_key WHERE login_id = $1", I},
    {"store_wipe_askey", "DELETE FROM wa_appstate_key WHERE login_id = $1", I},
    {"store_wipe_asver", "DELETE FROM wa_appstate_version WHERE login_id = $1", I},
    {"store_wipe_asmac", "DELETE FROM wa_appstate_mac WHERE login_id = $1", I},
    {"store_wipe_contact", "DELETE FROM wa_contact WHERE login_id = $1", I},
    {"store_wipe_chat", "DELETE FROM wa_chat_settings WHERE login_id = $1", I},
    {"store_wipe_lid", "DELETE FROM wa_lid_map WHERE login_id = $1", I},
    {"store_wipe_secret", "DELETE FROM wa_message_secret WHERE login_id = $1", I},
    {"store_wipe_evbuf", "DELETE FROM wa_event_buffer WHERE login_id = $1", I},
    {"store_wipe_sent", "DELETE FROM wa_sent_message WHERE login_id = $1", I},
};

/* ---- helpers ---- */

/* Maps a db_err to a wa_store_err and remembers the message. */
static int fail(pg_store *s, int rc)
{
    const db_error *e = db_conn_error(s->conn);
    if (e->sqlstate[0])
        snprintf(s->err, sizeof(s->err), "%s [SQLSTATE %s]", e->message, e->sqlstate);
    else
        snprintf(s->err, sizeof(s->err), "%s", e->message[0] ? e->message : db_strerror(rc));
    switch (rc) {
    case DB_OK: return WA_STORE_OK;
    case DB_ERR_NOT_FOUND: return WA_STORE_NOT_FOUND;
    case DB_ERR_NOMEM: return WA_STORE_ERR_NOMEM;
    case DB_ERR_INVALID: return WA_STORE_ERR_INVALID;
    case DB_ERR_IN_DOUBT: return WA_STORE_ERR_IN_DOUBT;
    case DB_ERR_UNIQUE: return WA_STORE_ERR_CONFLICT;
    case DB_ERR_STATE: return WA_STORE_ERR_STATE;
    default: return WA_STORE_ERR_IO;
    }
}

static int done(pg_store *s, int rc)
{
    if (rc == DB_OK) {
        s->err[0] = '\0';
        return WA_STORE_OK;
    }
    if (rc == DB_ERR_NOT_FOUND) return WA_STORE_NOT_FOUND;
    return fail(s, rc);
}

static int invalid(pg_store *s, const char *what)
{
    snprintf(s->err, sizeof(s->err), "invalid argument: %s", what);
    return WA_STORE_ERR_INVALID;
}

/* Runs a write. */
static int run(pg_store *s, const db_stmt *st, const db_param *p, int n)
{
    return done(s, db_exec(s->conn, st, p, n, NULL));
}

/* Runs a write and reports rows affected. */
static int run_count(pg_store *s, const db_stmt *st, const db_param *p, int n, size_t *count)
{
    db_result *r;
    int rc = db_exec(s->conn, st, p, n, &r);
    if (count) *count = rc == DB_OK ? (size_t)db_result_affected(r) : 0;
    db_result_free(r);
    return done(s, rc);
}

/* Appends a bytea column to a caller's buffer. */
static int append_col(pg_store *s, const db_result *r, int col, wb_buf *out)
{
    size_t n;
    const uint8_t *p = db_result_bytes(r, 0, col, &n);
    if (out && !wb_buf_append(out, p, n)) return invalid(s, "buffer allocation failed");
    return WA_STORE_OK;
}

/* A body for db_tx that runs a multi-statement store operation. */
typedef int (*multi_fn)(pg_store *s, const void *arg);
typedef struct multi_call {
    pg_store *s;     /* the store */
    multi_fn fn;     /* the statements */
    const void *arg; /* their input */
} multi_call;

static int multi_body(db_conn *c, void *arg)
{
    (void)c;
    multi_call *m = arg;
    return m->fn(m->s, m->arg);
}

/* Runs fn (returning db_err) atomically: inside the open transaction, or in one of its own. */
static int atomically(pg_store *s, multi_fn fn, const void *arg)
{
    if (db_conn_in_tx(s->conn)) return done(s, fn(s, arg));
    multi_call m = {s, fn, arg};
    return done(s, db_tx(s->conn, DB_TX_IDEMPOTENT, multi_body, &m));
}

#define LOGIN db_p_int(s->login_id)

/* ---- the cache ---- */

static void ent_clear(cache_ent *e)
{
    free(e->rec);
    memset(e, 0, sizeof(*e));
}

static cache_ent *cache_find(pg_store *s, cache_ent *tab, const char *addr)
{
    if (!s->cache) return NULL;
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (tab[i].addr[0] && strcmp(tab[i].addr, addr) == 0) {
            tab[i].used = ++s->cache->tick;
            return &tab[i];
        }
    return NULL;
}

/* Writes one dirty session now (to free its slot inside a big transaction). */
static int session_write(pg_store *s, const cache_ent *e)
{
    db_param p[3] = {LOGIN, db_p_text(e->addr), db_p_bytes(e->rec, e->len)};
    return db_exec(s->conn, &st_session_save, p, 3, NULL);
}

/* The cache's sessions (identities false) or identities table, allocated on first use; NULL when
 * out of memory (the caller goes to the database). */
static cache_ent *cache_table(pg_store *s, bool identities)
{
    if (!s->cache && !(s->cache = calloc(1, sizeof(*s->cache)))) return NULL;
    return identities ? s->cache->identities : s->cache->sessions;
}

/* A slot for addr in tab (its entry, or a free / least recently used clean one, emptied); NULL
 * when there is none (the caller goes to the database). */
static cache_ent *cache_slot(pg_store *s, cache_ent *tab, const char *addr)
{
    if (!tab || strlen(addr) >= WA_ADDRESS_MAX) return NULL;
    cache_ent *e = cache_find(s, tab, addr), *victim = NULL;
    if (e) return e;
    for (int i = 0; i < CACHE_SLOTS && !e; i++) {
        if (!tab[i].addr[0])
            e = &tab[i];
        else if (!tab[i].dirty && (!victim || tab[i].used < victim->used))
            victim = &tab[i];
    }
    if (!e && !victim) { /* all dirty: write the oldest through and take its slot */
        for (int i = 0; i < CACHE_SLOTS; i++)
            if (!victim || tab[i].used < victim->used) victim = &tab[i];
        if (session_write(s, victim) != DB_OK) return NULL;
        victim->dirty = false;
    }
    if (!e) e = victim;
    ent_clear(e);
    snprintf(e->addr, sizeof(e->addr), "%s", addr);
    e->used = ++s->cache->tick;
    return e;
}

/* Sets an entry's value (a copy); false when out of memory (the entry is then dropped). */
static bool ent_set(cache_ent *e, const uint8_t *rec, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        ent_clear(e);
        return false;
    }
    if (len) memcpy(copy, rec, len);
    free(e->rec);
    e->rec = copy;
    e->len = len;
    e->absent = false;
    return true;
}

static void cache_forget_prefix(pg_store *s, cache_ent *tab, const char *prefix)
{
    if (!s->cache) return;
    size_t n = strlen(prefix);
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (tab[i].addr[0] && strncmp(tab[i].addr, prefix, n) == 0) ent_clear(&tab[i]);
}

/* After a rollback or a failed commit: what the transaction touched is unknown again. */
static void cache_forget_touched(pg_store *s)
{
    if (!s->cache) return;
    for (int i = 0; i < CACHE_SLOTS; i++) {
        if (s->cache->sessions[i].touched) ent_clear(&s->cache->sessions[i]);
        if (s->cache->identities[i].touched) ent_clear(&s->cache->identities[i]);
    }
}

static void cache_settle(pg_store *s)
{
    if (!s->cache) return;
    for (int i = 0; i < CACHE_SLOTS; i++) {
        s->cache->sessions[i].dirty = s->cache->sessions[i].touched = false;
        s->cache->identities[i].touched = false;
    }
}

static void cache_free(pg_store *s)
{
    if (!s->cache) return;
    for (int i = 0; i < CACHE_SLOTS; i++) {
        ent_clear(&s->cache->sessions[i]);
        ent_clear(&s->cache->identities[i]);
    }
    free(s->cache);
    s->cache = NULL;
}

/* The store, its cache emptied if a held batch of its connection was lost since (db.h
 * hold_commits): the cache took that batch's writes as committed. */
static pg_store *checked(void *ctx)
{
    pg_store *s = ctx;
    uint64_t losses = db_held_losses(s->conn);
    if (losses != s->held_seen) {
        cache_free(s);
        s->held_seen = losses;
    }
    return s;
}

/* The sessions saved in the open transaction: queued to travel with the COMMIT (one round trip). */
static int cache_write_dirty(pg_store *s)
{
    if (!s->cache) return DB_OK;
    for (int i = 0; i < CACHE_SLOTS; i++) {
        const cache_ent *e = &s->cache->sessions[i];
        if (!e->dirty) continue;
        db_param p[3] = {db_p_int(s->login_id), db_p_text(e->addr), db_p_bytes(e->rec, e->len)};
        int rc = db_exec_deferred_row(s->conn, &st_session_save, p, 3, 2); /* (login, address) */
        if (rc) return rc;
    }
    return DB_OK;
}

/* ---- lifecycle and transactions ---- */

static void evbuf_filter_free(pg_store *s)
{
    if (!s->evbuf) return;
    free(s->evbuf->present);
    free(s->evbuf);
    s->evbuf = NULL;
}

static void pg_destroy(void *ctx)
{
    cache_free(ctx);
    evbuf_filter_free(ctx);
    free(ctx);
}

static const char *pg_last_error(void *ctx)
{
    pg_store *s = ctx;
    return s->err;
}

static int pg_begin(void *ctx)
{
    pg_store *s = checked(ctx);
    return done(s, db_begin(s->conn, 0));
}

static int pg_commit(void *ctx)
{
    pg_store *s = ctx;
    int rc = db_conn_in_tx(s->conn) ? cache_write_dirty(s) : DB_OK;
    if (rc != DB_OK) {
        db_rollback(s->conn);
        cache_forget_touched(s);
        s->undone++;
        return done(s, rc);
    }
    rc = db_commit(s->conn);
    if (rc != DB_OK) {
        cache_forget_touched(s); /* not committed, or in doubt */
        s->undone++;
    } else
        cache_settle(s);
    return done(s, rc);
}

/* Writes this store took as committed may be lost after: a transaction undone, a held batch lost,
 * a sync that failed, a new database session (an asynchronous commit on the old one may not have
 * reached the disk). */
static uint64_t pg_epoch(void *ctx)
{
    const pg_store *s = ctx;
    return s->undone + db_held_losses(s->conn) + db_sync_failures(s->conn) +
           db_conn_reconnects(s->conn);
}

static int pg_rollback(void *ctx)
{
    pg_store *s = ctx;
    cache_forget_touched(s);
    if (db_conn_in_tx(s->conn)) s->undone++;
    return done(s, db_rollback(s->conn));
}

static int wipe_fn(pg_store *s, const void *arg)
{
    (void)arg;
    db_param p[1] = {LOGIN};
    for (size_t i = 0; i < sizeof(st_wipe) / sizeof(st_wipe[0]); i++) {
        int rc = db_exec(s->conn, &st_wipe[i], p, 1, NULL);
        if (rc) return rc;
    }
    return DB_OK;
}

static int pg_wipe(void *ctx)
{
    cache_free(ctx);
    evbuf_filter_free(ctx);
    return atomically(ctx, wipe_fn, NULL);
}

/* ---- device ---- */

static int pg_device_load(void *ctx, wa_device *d)
{
    pg_store *s = ctx;
    db_param p[1] = {LOGIN};
    db_result *r;
    int rc = db_exec_row(s->conn, &st_device_load, p, 1, &r);
    if (rc) return done(s, rc);
    memset(d, 0, sizeof(*d));
    bool ok = db_result_copy_fixed(r, 0, 0, d->noise.priv, WA_KEY_LEN) &&
              db_result_copy_fixed(r, 0, 1, d->noise.pub, WA_KEY_LEN) &&
              db_result_copy_fixed(r, 0, 2, d->identity.priv, WA_KEY_LEN) &&
              db_result_copy_fixed(r, 0, 3, d->identity.pub, WA_KEY_LEN) &&
              db_result_copy_fixed(r, 0, 6, d->signed_prekey.priv, WA_KEY_LEN) &&
              db_result_copy_fixed(r, 0, 7, d->signed_prekey.pub, WA_KEY_LEN) &&
              db_result_copy_fixed(r, 0, 8, d->signed_prekey_sig, WA_SIG_LEN) &&
              db_result_copy_fixed(r, 0, 9, d->adv_secret, WA_KEY_LEN);
    d->registration_id = (uint32_t)db_result_int(r, 0, 4);
    d->signed_prekey_id = (uint32_t)db_result_int(r, 0, 5);
    size_t n;
    const uint8_t *adv = db_result_bytes(r, 0, 10, &n);
    if (n > WA_ADV_MAX) ok = false;
    if (ok) {
        memcpy(d->adv_details, adv, n);
        d->adv_details_len = n;
    }
    d->paired = db_result_copy_fixed(r, 0, 11, d->adv_account_sig_key, WA_KEY_LEN) &&
                db_result_copy_fixed(r, 0, 12, d->adv_account_sig, WA_SIG_LEN) &&
                db_result_copy_fixed(r, 0, 13, d->adv_device_sig, WA_SIG_LEN);
    ok = ok && db_result_copy_text(r, 0, 14, d->platform, sizeof(d->platform)) &&
         db_result_copy_text(r, 0, 15, d->push_name, sizeof(d->push_name)) &&
         db_result_copy_text(r, 0, 16, d->business_name, sizeof(d->business_name)) &&
         db_result_copy_text(r, 0, 17, d->pn, sizeof(d->pn)) &&
         db_result_copy_text(r, 0, 18, d->lid, sizeof(d->lid));
    d->next_prekey_id = (uint32_t)db_result_int(r, 0, 19);
    db_result_free(r);
    if (!ok) {
        snprintf(s->err, sizeof(s->err), "wa_device of login %lld: a stored value has a bad size",
                 (long long)s->login_id);
        return WA_STORE_ERR_IO;
    }
    s->err[0] = '\0';
    return WA_STORE_OK;
}

static int pg_device_save(void *ctx, const wa_device *d)
{
    pg_store *s = ctx;
    if (d->adv_details_len > WA_ADV_MAX) return invalid(s, "adv_details_len");
    size_t sk = d->paired ? WA_KEY_LEN : 0, sg = d->paired ? WA_SIG_LEN : 0;
    db_param p[21] = {
        LOGIN,
        db_p_bytes(d->noise.priv, WA_KEY_LEN),
        db_p_bytes(d->noise.pub, WA_KEY_LEN),
        db_p_bytes(d->identity.priv, WA_KEY_LEN),
        db_p_bytes(d->identity.pub, WA_KEY_LEN),
        db_p_int(d->registration_id),
        db_p_int(d->signed_prekey_id),
        db_p_bytes(d->signed_prekey.priv, WA_KEY_LEN),
        db_p_bytes(d->signed_prekey.pub, WA_KEY_LEN),
        db_p_bytes(d->signed_prekey_sig, WA_SIG_LEN),
        db_p_bytes(d->adv_secret, WA_KEY_LEN),
        db_p_bytes(d->adv_details, d->adv_details_len),
        db_p_bytes(d->adv_account_sig_key, sk),
        db_p_bytes(d->adv_account_sig, sg),
        db_p_bytes(d->adv_device_sig, sg),
        db_p_text(d->platform),
        db_p_text(d->push_name),
        db_p_text(d->business_name),
        db_p_text(d->pn),
        db_p_text(d->lid),
        db_p_int(d->next_prekey_id),
    };
    return run(s, &st_device_save, p, 21);
}

static int pg_device_delete(void *ctx)
{
    pg_store *s = ctx;
    db_param p[1] = {LOGIN};
    return run(s, &st_device_delete, p, 1);
}

static int pg_signed_prekey_load(void *ctx, uint32_t id, wa_keypair *out, uint8_t sig[WA_SIG_LEN])
{
    pg_store *s = ctx;
    db_param p[2] = {LOGIN, db_p_int(id)};
    db_result *r;
    int rc = db_exec_row(s->conn, &st_signed_prekey_load, p, 2, &r);
    if (rc) return done(s, rc);
    bool ok = db_result_copy_fixed(r, 0, 0, out->priv, WA_KEY_LEN) &&
              db_result_copy_fixed(r, 0, 1, out->pub, WA_KEY_LEN) &&
              db_result_copy_fixed(r, 0, 2, sig, WA_SIG_LEN);
    db_result_free(r);
    return ok ? done(s, DB_OK) : invalid(s, "stored signed prekey has a bad size");
}

/* ---- identities ---- */

static int load_fixed(pg_store *s, const db_stmt *st, const db_param *p, int n, void *out,
                      size_t len)
{
    db_result *r;
    int rc = db_exec_row(s->conn, st, p, n, &r);
    if (rc) return done(s, rc);
    bool ok = db_result_copy_fixed(r, 0, 0, out, len);
    db_result_free(r);
    if (!ok) {
        snprintf(s->err, sizeof(s->err), "%s: stored value is not %zu bytes", st->name, len);
        return WA_STORE_ERR_IO;
    }
    return done(s, DB_OK);
}

static int load_buf(pg_store *s, const db_stmt *st, const db_param *p, int n, wb_buf *out)
{
    db_result *r;
    int rc = db_exec_row(s->conn, st, p, n, &r);
    if (rc) return done(s, rc);
    rc = append_col(s, r, 0, out);
    db_result_free(r);
    return rc ? rc : done(s, DB_OK);
}

static int pg_identity_load(void *ctx, const char *address, uint8_t key[WA_KEY_LEN])
{
    pg_store *s = checked(ctx);
    if (!address) return invalid(s, "address");
    cache_ent *e = cache_find(s, s->cache ? s->cache->identities : NULL, address);
    if (e && e->absent) return WA_STORE_NOT_FOUND;
    if (e && e->len == WA_KEY_LEN) {
        memcpy(key, e->rec, WA_KEY_LEN);
        return done(s, DB_OK);
    }
    db_param p[2] = {LOGIN, db_p_text(address)};
    int rc = load_fixed(s, &st_identity_load, p, 2, key, WA_KEY_LEN);
    if (rc == WA_STORE_OK || rc == WA_STORE_NOT_FOUND) {
        cache_ent *c = cache_slot(s, cache_table(s, true), address);
        if (c && rc == WA_STORE_OK) ent_set(c, key, WA_KEY_LEN);
        if (c && rc == WA_STORE_NOT_FOUND) c->absent = true;
    }
    return rc;
}

static int pg_identity_save(void *ctx, const char *address, const uint8_t key[WA_KEY_LEN])
{
    pg_store *s = checked(ctx);
    if (!address) return invalid(s, "address");
    cache_ent *e = cache_find(s, s->cache ? s->cache->identities : NULL, address);
    if (e && !e->absent && e->len == WA_KEY_LEN && memcmp(e->rec, key, WA_KEY_LEN) == 0)
        return done(s, DB_OK); /* unchanged: nothing to write */
    db_param p[3] = {LOGIN, db_p_text(address), db_p_bytes(key, WA_KEY_LEN)};
    int rc = run(s, &st_identity_save, p, 3);
    if (rc == WA_STORE_OK) {
        cache_ent *c = e ? e : cache_slot(s, cache_table(s, true), address);
        if (c && ent_set(c, key, WA_KEY_LEN)) c->touched = db_conn_in_tx(s->conn);
    } else if (e) {
        ent_clear(e);
    }
    return rc;
}

static int pg_identity_delete(void *ctx, const char *address)
{
    pg_store *s = checked(ctx);
    if (!address) return invalid(s, "address");
    cache_ent *e = cache_find(s, s->cache ? s->cache->identities : NULL, address);
    if (e) ent_clear(e);
    db_param p[2] = {LOGIN, db_p_text(address)};
    return run(s, &st_identity_delete, p, 2);
}

static int pg_identity_delete_prefix(void *ctx, const char *prefix, size_t *deleted)
{
    pg_store *s = checked(ctx);
    if (!prefix || !*prefix) return invalid(s, "prefix");
    if (s->cache) cache_forget_prefix(s, s->cache->identities, prefix);
    db_param p[2] = {LOGIN, db_p_text(prefix)};
    return run_count(s, &st_identity_delete_prefix, p, 2, deleted);
}

/* ---- sessions ---- */

static int pg_session_load(void *ctx, const char *address, wb_buf *record)
{
    pg_store *s = checked(ctx);
    if (!address) return invalid(s, "address");
    cache_ent *e = cache_find(s, s->cache ? s->cache->sessions : NULL, address);
    if (e && e->absent) return WA_STORE_NOT_FOUND;
    if (e && e->rec) {
        if (record && !wb_buf_append(record, e->rec, e->len))
            return invalid(s, "buffer allocation failed");
        return done(s, DB_OK);
    }
    db_param p[2] = {LOGIN, db_p_text(address)};
    wb_buf got;
    wb_buf_init(&got);
    int rc = load_buf(s, &st_session_load, p, 2, &got);
    if (rc == WA_STORE_OK || rc == WA_STORE_NOT_FOUND) {
        cache_ent *c = cache_slot(s, cache_table(s, false), address);
        if (c && rc == WA_STORE_OK) ent_set(c, got.data, got.len);
        if (c && rc == WA_STORE_NOT_FOUND) c->absent = true;
    }
    if (rc == WA_STORE_OK && record && !wb_buf_append(record, got.data, got.len))
        rc = invalid(s, "buffer allocation failed");
    wb_buf_free(&got);
    return rc;
}

static int pg_session_save(void *ctx, const char *address, const uint8_t *rec, size_t len)
{
    pg_store *s = checked(ctx);
    if (!address || (!rec && len)) return invalid(s, "address/record");
    if (db_conn_in_tx(s->conn)) { /* written at commit, with the transaction's other sessions */
        cache_ent *c = cache_slot(s, cache_table(s, false), address);
        if (c && ent_set(c, rec, len)) {
            c->dirty = c->touched = true;
            return done(s, DB_OK);
        }
    }
    cache_ent *e = cache_find(s, s->cache ? s->cache->sessions : NULL, address);
    db_param p[3] = {LOGIN, db_p_text(address), db_p_bytes(rec, len)};
    int rc = run(s, &st_session_save, p, 3);
    if (e && (rc != WA_STORE_OK || !ent_set(e, rec, len))) ent_clear(e);
    return rc;
}

static int pg_session_delete(void *ctx, const char *address)
{
    pg_store *s = checked(ctx);
    if (!address) return invalid(s, "address");
    cache_ent *e = cache_find(s, s->cache ? s->cache->sessions : NULL, address);
    if (e) ent_clear(e);
    db_param p[2] = {LOGIN, db_p_text(address)};
    return run(s, &st_session_delete, p, 2);
}

static int pg_session_delete_prefix(void *ctx, const char *prefix, size_t *deleted)
{
    pg_store *s = checked(ctx);
    if (!prefix || !*prefix) return invalid(s, "prefix");
    if (s->cache) cache_forget_prefix(s, s->cache->sessions, prefix);
    db_param p[2] = {LOGIN, db_p_text(prefix)};
    return run_count(s, &st_session_delete_prefix, p, 2, deleted);
}

/* ---- prekeys ---- */

static bool read_prekey(const db_result *r, int row, wa_prekey *k)
{
    k->id = (uint32_t)db_result_int(r, row, 0);
    k->uploaded = db_result_bool(r, row, 3);
    return db_result_copy_fixed(r, row, 1, k->key.priv, WA_KEY_LEN) &&
           db_result_copy_fixed(r, row, 2, k->key.pub, WA_KEY_LEN);
}

static int pg_prekey_load(void *ctx, uint32_t id, wa_prekey *out)
{
    pg_store *s = ctx;
    db_param p[2] = {LOGIN, db_p_int(id)};
    db_result *r;
    int rc = db_exec_row(s->conn, &st_prekey_load, p, 2, &r);
    if (rc) return done(s, rc);
    bool ok = read_prekey(r, 0, out);
    db_result_free(r);
    return ok ? done(s, DB_OK) : invalid(s, "stored prekey has a bad size");
}

typedef struct prekey_batch {
    const wa_prekey *keys; /* to save */
    size_t n;              /* how many */
} prekey_batch;

static int prekeys_save_fn(pg_store *s, const void *arg)
{
    const prekey_batch *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        const wa_prekey *k = &b->keys[i];
        db_param p[5] = {LOGIN, db_p_int(k->id), db_p_bytes(k->key.priv, WA_KEY_LEN),
                         db_p_bytes(k->key.pub, WA_KEY_LEN), db_p_bool(k->uploaded)};
        int rc = db_exec(s->conn, &st_prekey_save, p, 5, NULL);
        if (rc) return rc;
    }
    return DB_OK;
}

static int pg_prekeys_save(void *ctx, const wa_prekey *keys, size_t n)
{
    pg_store *s = ctx;
    if (!keys && n) return invalid(s, "keys");
    prekey_batch b = {keys, n};
    return atomically(s, prekeys_save_fn, &b);
}

static int pg_prekey_delete(void *ctx, uint32_t id)
{
    pg_store *s = ctx;
    db_param p[2] = {LOGIN, db_p_int(id)};
    return run(s, &st_prekey_delete, p, 2);
}

static int pg_prekeys_unuploaded(void *ctx, wa_prekey *out, size_t max, size_t *n)
{
    pg_store *s = ctx;
    *n = 0;
    db_param p[2] = {LOGIN, db_p_int((int64_t)max)};
    db_result *r;
    int rc = db_exec(s->conn, &st_prekeys_unuploaded, p, 2, &r);
    if (rc) return done(s, rc);
    int rows = db_result_rows(r);
    bool ok = true;
    for (int i = 0; i < rows && (size_t)i < max; i++) {
        ok = ok && read_prekey(r, i, &out[i]);
        (*n)++;
    }
    db_result_free(r);
    return ok ? done(s, DB_OK) : invalid(s, "stored prekey has a bad size");
}

static int pg_prekeys_mark_uploaded(void *ctx, uint32_t up_to_id)
{
    pg_store *s = ctx;
    db_param p[2] = {LOGIN, db_p_int(up_to_id)};
    return run(s, &st_prekeys_mark, p, 2);
}

static int pg_prekeys_count_uploaded(void *ctx, size_t *n)
{
    pg_store *s = ctx;
    db_param p[1] = {LOGIN};
    db_result *r;
    int rc = db_exec_row(s->conn, &st_prekeys_count, p, 1, &r);
    *n = rc ? 0 : (size_t)db_result_int(r, 0, 0);
    db_result_free(r);
    return done(s, rc);
}

/* ---- sender keys ---- */

static int pg_sender_key_load(void *ctx, const char *group, const char *sender, wb_buf *record)
{
    pg_store *s = ctx;
    if (!group || !sender) return invalid(s, "group/sender");
    db_param p[3] = {LOGIN, db_p_text(group), db_p_text(sender)};
    return load_buf(s, &st_sender_key_load, p, 3, record);
}

static int pg_sender_key_save(void *ctx, const char *group, const char *sender, const uint8_t *rec,
                              size_t len)
{
    pg_store *s = ctx;
    if (!group || !sender || (!rec && len)) return invalid(s, "group/sender/record");
    db_param p[4] = {LOGIN, db_p_text(group), db_p_text(sender), db_p_bytes(rec, len)};
    return run(s, &st_sender_key_save, p, 4);
}

static int pg_sender_key_delete(void *ctx, const char *group, const char *sender)
{
    pg_store *s = ctx;
    if (!group || !sender) return invalid(s, "group/sender");
    db_param p[3] = {LOGIN, db_p_text(group), db_p_text(sender)};
    return run(s, &st_sender_key_delete, p, 3);
}

/* ---- app state ---- */

static int pg_askey_save(void *ctx, const uint8_t *key_id, size_t key_id_len,
                         const uint8_t *key_data, size_t key_data_len, const uint8_t *fp,
                         size_t fp_len, int64_t ts)
{
    pg_store *s = ctx;
    if (!key_id || !key_id_len || (!key_data && key_data_len) || (!fp && fp_len))
        return invalid(s, "app-state key");
    db_param p[5] = {LOGIN, db_p_bytes(key_id, key_id_len), db_p_bytes(key_data, key_data_len),
                     db_p_bytes(fp, fp_len), db_p_int(ts)};
    return run(s, &st_askey_save, p, 5);
}

static int pg_askey_load(void *ctx, const uint8_t *key_id, size_t key_id_len, wb_buf *key_data,
                         wb_buf *fp, int64_t *ts)
{
    pg_store *s = ctx;
    if (!key_id || !key_id_len) return invalid(s, "key id");
    db_param p[2] = {LOGIN, db_p_bytes(key_id, key_id_len)};
    db_result *r;
    int rc = db_exec_row(s->conn, &st_askey_load, p, 2, &r);
    if (rc) return done(s, rc);
    rc = append_col(s, r, 0, key_data);
    if (rc == WA_STORE_OK) {
        size_t n;
        const uint8_t *f = db_result_bytes(r, 0, 1, &n);
        if (fp && !wb_buf_append(fp, f, n)) rc = invalid(s, "buffer allocation failed");
    }
    if (ts) *ts = db_result_int(r, 0, 2);
    db_result_free(r);
    return rc ? rc : done(s, DB_OK);
}

static int pg_askey_latest(void *ctx, wb_buf *key_id)
{
    pg_store *s = ctx;
    db_param p[1] = {LOGIN};
    return load_buf(s, &st_askey_latest, p, 1, key_id);
}

static int pg_askey_delete(void *ctx, const uint8_t *key_id, size_t key_id_len)
{
    pg_store *s = ctx;
    if (!key_id || !key_id_len) return invalid(s, "key id");
    db_param p[2] = {LOGIN, db_p_bytes(key_id, key_id_len)};
    return run(s, &st_askey_delete, p, 2);
}

static int pg_asver_load(void *ctx, const char *name, uint64_t *version,
                         uint8_t hash[WA_LTHASH_LEN])
{
    pg_store *s = ctx;
    *version = 0;
    memset(hash, 0, WA_LTHASH_LEN);
    if (!name) return invalid(s, "name");
    db_param p[2] = {LOGIN, db_p_text(name)};
    db_result *r;
    int rc = db_exec_row(s->conn, &st_asver_load, p, 2, &r);
    if (rc) return done(s, rc);
    *version = (uint64_t)db_result_int(r, 0, 0);
    bool ok = db_result_copy_fixed(r, 0, 1, hash, WA_LTHASH_LEN);
    db_result_free(r);
    return ok ? done(s, DB_OK) : invalid(s, "stored LTHash has a bad size");
}

static int pg_asver_save(void *ctx, const char *name, uint64_t version,
                         const uint8_t hash[WA_LTHASH_LEN])
{
    pg_store *s = ctx;
    if (!name || version > INT64_MAX) return invalid(s, "name/version");
    db_param p[4] = {LOGIN, db_p_text(name), db_p_int((int64_t)version),
                     db_p_bytes(hash, WA_LTHASH_LEN)};
    return run(s, &st_asver_save, p, 4);
}

static int asver_delete_fn(pg_store *s, const void *arg)
{
    db_param p[2] = {LOGIN, db_p_text(arg)};
    int rc = db_exec(s->conn, &st_asver_delete, p, 2, NULL);
    if (rc == DB_OK) rc = db_exec(s->conn, &st_asmac_delete_all, p, 2, NULL);
    return rc;
}

static int pg_asver_delete(void *ctx, const char *name)
{
    pg_store *s = ctx;
    if (!name) return invalid(s, "name");
    return atomically(s, asver_delete_fn, name);
}

typedef struct mac_batch {
    const char *name;                        /* collection */
    uint64_t version;                        /* for saves */
    const wa_appstate_mac *macs;             /* saves */
    const uint8_t (*index_macs)[WA_KEY_LEN]; /* deletes */
    size_t n;                                /* entries */
} mac_batch;

static int macs_save_fn(pg_store *s, const void *arg)
{
    const mac_batch *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        db_param p[5] = {LOGIN, db_p_text(b->name), db_p_bytes(b->macs[i].index_mac, WA_KEY_LEN),
                         db_p_bytes(b->macs[i].value_mac, WA_KEY_LEN),
                         db_p_int((int64_t)b->version)};
        int rc = db_exec(s->conn, &st_asmac_save, p, 5, NULL);
        if (rc) return rc;
    }
    return DB_OK;
}

static int macs_delete_fn(pg_store *s, const void *arg)
{
    const mac_batch *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        db_param p[3] = {LOGIN, db_p_text(b->name), db_p_bytes(b->index_macs[i], WA_KEY_LEN)};
        int rc = db_exec(s->conn, &st_asmac_delete, p, 3, NULL);
        if (rc) return rc;
    }
    return DB_OK;
}

static int pg_asmacs_save(void *ctx, const char *name, uint64_t version,
                          const wa_appstate_mac *macs, size_t n)
{
    pg_store *s = ctx;
    if (!name || (!macs && n) || version > INT64_MAX) return invalid(s, "name/macs");
    mac_batch b = {name, version, macs, NULL, n};
    return atomically(s, macs_save_fn, &b);
}

static int pg_asmacs_delete(void *ctx, const char *name, const uint8_t (*index_macs)[WA_KEY_LEN],
                            size_t n)
{
    pg_store *s = ctx;
    if (!name || (!index_macs && n)) return invalid(s, "name/index_macs");
    mac_batch b = {name, 0, NULL, index_macs, n};
    return atomically(s, macs_delete_fn, &b);
}

static int pg_asmac_load(void *ctx, const char *name, const uint8_t index_mac[WA_KEY_LEN],
                         uint8_t value_mac[WA_KEY_LEN])
{
    pg_store *s = ctx;
    if (!name) return invalid(s, "name");
    db_param p[3] = {LOGIN, db_p_text(name), db_p_bytes(index_mac, WA_KEY_LEN)};
    return load_fixed(s, &st_asmac_load, p, 3, value_mac, WA_KEY_LEN);
}

/* ---- contacts and chats ---- */

static int pg_contact_load(void *ctx, const char *jid, wa_contact *out)
{
    pg_store *s = ctx;
    if (!jid || strlen(jid) >= sizeof(out->jid)) return invalid(s, "jid");
    db_param p[2] = {LOGIN, db_p_text(jid)};
    db_result *r;
    int rc = db_exec_row(s->conn, &st_contact_load, p, 2, &r);
    if (rc) return done(s, rc);
    memset(out, 0, sizeof(*out));
    snprintf(out->jid, sizeof(out->jid), "%s", jid);
    bool ok = db_result_copy_text(r, 0, 0, out->first_name, sizeof(out->first_name)) &&
              db_result_copy_text(r, 0, 1, out->full_name, sizeof(out->full_name)) &&
              db_result_copy_text(r, 0, 2, out->push_name, sizeof(out->push_name)) &&
              db_result_copy_text(r, 0, 3, out->business_name, sizeof(out->business_name));
    db_result_free(r);
    return ok ? done(s, DB_OK) : invalid(s, "stored contact name too long");
}

static int pg_contact_save(void *ctx, const wa_contact *c)
{
    pg_store *s = ctx;
    db_param p[6] = {LOGIN,
                     db_p_text(c->jid),
                     db_p_text(c->first_name),
                     db_p_text(c->full_name),
                     db_p_text(c->push_name),
                     db_p_text(c->business_name)};
    return run(s, &st_contact_save, p, 6);
}

static int pg_contact_delete(void *ctx, const char *jid)
{
    pg_store *s = ctx;
    if (!jid) return invalid(s, "jid");
    db_param p[2] = {LOGIN, db_p_text(jid)};
    return run(s, &st_contact_delete, p, 2);
}

static int pg_chat_load(void *ctx, const char *chat_jid, wa_chat_settings *out)
{
    pg_store *s = ctx;
    if (!chat_jid || strlen(chat_jid) >= sizeof(out->chat_jid)) return invalid(s, "chat_jid");
    db_param p[2] = {LOGIN, db_p_text(chat_jid)};
    db_result *r;
    int rc = db_exec_row(s->conn, &st_chat_load, p, 2, &r);
    if (rc) return done(s, rc);
    memset(out, 0, sizeof(*out));
    snprintf(out->chat_jid, sizeof(out->chat_jid), "%s", chat_jid);
    out->muted_until_ms = db_result_int(r, 0, 0);
    out->pinned = db_result_bool(r, 0, 1);
    out->archived = db_result_bool(r, 0, 2);
    out->marked_unread = db_result_bool(r, 0, 3);
    db_result_free(r);
    return done(s, DB_OK);
}

static int pg_chat_save(void *ctx, const wa_chat_settings *c)
{
    pg_store *s = ctx;
    db_param p[6] = {LOGIN,
                     db_p_text(c->chat_jid),
                     db_p_int(c->muted_until_ms),
                     db_p_bool(c->pinned),
                     db_p_bool(c->archived),
                     db_p_bool(c->marked_unread)};
    return run(s, &st_chat_save, p, 6);
}

static int pg_chat_delete(void *ctx, const char *chat_jid)
{
    pg_store *s = ctx;
    if (!chat_jid) return invalid(s, "chat_jid");
    db_param p[2] = {LOGIN, db_p_text(chat_jid)};
    return run(s, &st_chat_delete, p, 2);
}

/* ---- LID map ---- */

typedef struct lid_pair {
    const char *lid; /* LID user */
    const char *pn;  /* phone number user */
} lid_pair;

static int lid_save_fn(pg_store *s, const void *arg)
{
    const lid_pair *lp = arg;
    db_param p[3] = {LOGIN, db_p_text(lp->lid), db_p_text(lp->pn)};
    int rc = db_exec(s->conn, &st_lid_unpair, p, 3, NULL);
    if (rc == DB_OK) rc = db_exec(s->conn, &st_lid_save, p, 3, NULL);
    return rc;
}

static int pg_lid_map_save(void *ctx, const char *lid, const char *pn)
{
    pg_store *s = ctx;
    if (!lid || !pn || strlen(lid) >= WA_ADDRESS_MAX || strlen(pn) >= WA_ADDRESS_MAX)
        return invalid(s, "lid/pn");
    lid_pair lp = {lid, pn};
    return atomically(s, lid_save_fn, &lp);
}

static int load_text(pg_store *s, const db_stmt *st, const char *key, char *out, size_t cap)
{
    if (!key) return invalid(s, "key");
    db_param p[2] = {LOGIN, db_p_text(key)};
    db_result *r;
    int rc = db_exec_row(s->conn, st, p, 2, &r);
    if (rc) return done(s, rc);
    bool ok = db_result_copy_text(r, 0, 0, out, cap);
    db_result_free(r);
    return ok ? done(s, DB_OK) : invalid(s, "stored value too long");
}

static int pg_lid_for_pn(void *ctx, const char *pn, char lid[WA_ADDRESS_MAX])
{
    return load_text(ctx, &st_lid_for_pn, pn, lid, WA_ADDRESS_MAX);
}

static int pg_pn_for_lid(void *ctx, const char *lid, char pn[WA_ADDRESS_MAX])
{
    return load_text(ctx, &st_pn_for_lid, lid, pn, WA_ADDRESS_MAX);
}

static int pg_lid_map_delete(void *ctx, const char *lid)
{
    pg_store *s = ctx;
    if (!lid) return invalid(s, "lid");
    db_param p[2] = {LOGIN, db_p_text(lid)};
    return run(s, &st_lid_delete, p, 2);
}

/* ---- message secrets ---- */

static int pg_secret_save(void *ctx, const char *chat, const char *sender, const char *id,
                          const uint8_t secret[WA_KEY_LEN])
{
    pg_store *s = ctx;
    if (!chat || !sender || !id) return invalid(s, "chat/sender/id");
    db_param p[5] = {LOGIN, db_p_text(chat), db_p_text(sender), db_p_text(id),
                     db_p_bytes(secret, WA_KEY_LEN)};
    return run(s, &st_secret_save, p, 5);
}

static int pg_secret_load(void *ctx, const char *chat, const char *sender, const char *id,
                          uint8_t secret[WA_KEY_LEN])
{
    pg_store *s = ctx;
    if (!chat || !sender || !id) return invalid(s, "chat/sender/id");
    db_param p[4] = {LOGIN, db_p_text(chat), db_p_text(sender), db_p_text(id)};
    return load_fixed(s, &st_secret_load, p, 4, secret, WA_KEY_LEN);
}

static int pg_secret_delete(void *ctx, const char *chat, const char *sender, const char *id)
{
    pg_store *s = ctx;
    if (!chat || !sender || !id) return invalid(s, "chat/sender/id");
    db_param p[4] = {LOGIN, db_p_text(chat), db_p_text(sender), db_p_text(id)};
    return run(s, &st_secret_delete, p, 4);
}

/* ---- event buffer ---- */

static uint64_t evbuf_fingerprint(const uint8_t hash[WA_KEY_LEN])
{
    uint64_t f;
    memcpy(&f, hash, sizeof(f)); /* a SHA-256: any 8 bytes are as good as a hash of them */
    return f;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The filter, loaded on first use (NULL when that failed: then every check asks the database). */
static evbuf_filter *evbuf_filter_get(pg_store *s)
{
    if (s->evbuf) return s->evbuf;
    db_param p[1] = {LOGIN};
    db_result *r;
    if (db_exec(s->conn, &st_evbuf_hashes, p, 1, &r) != DB_OK) return NULL;
    evbuf_filter *f = calloc(1, sizeof(*f));
    int rows = db_result_rows(r);
    if (f && rows > 0) f->present = malloc((size_t)rows * sizeof(*f->present));
    if (!f || (rows > 0 && !f->present)) {
        free(f);
        db_result_free(r);
        return NULL;
    }
    for (int i = 0; i < rows; i++) {
        size_t len;
        const uint8_t *h = db_result_bytes(r, i, 0, &len);
        if (len == WA_KEY_LEN) f->present[f->npresent++] = evbuf_fingerprint(h);
    }
    db_result_free(r);
    if (f->npresent) qsort(f->present, f->npresent, sizeof(*f->present), cmp_u64);
    s->evbuf = f;
    return f;
}

static bool evbuf_maybe_present(const evbuf_filter *f, const uint8_t hash[WA_KEY_LEN])
{
    uint64_t fp = evbuf_fingerprint(hash);
    if (f->npresent && bsearch(&fp, f->present, f->npresent, sizeof(fp), cmp_u64)) return true;
    for (size_t i = 0; i < f->nrecent; i++)
        if (f->recent[i] == fp) return true;
    return false;
}

static int pg_evbuf_save(void *ctx, const wa_buffered_event *ev)
{
    pg_store *s = ctx;
    if (!ev->chat_jid || !ev->sender_jid || !ev->message_id ||
        (!ev->plaintext && ev->plaintext_len))
        return invalid(s, "event");
    evbuf_filter *f = evbuf_filter_get(s);
    if (f) { /* remembered before the write: a rollback leaves a harmless "ask the database" */
        f->recent[f->next] = evbuf_fingerprint(ev->ciphertext_hash);
        f->next = (f->next + 1) % EVBUF_RECENT;
        if (f->nrecent < EVBUF_RECENT) f->nrecent++;
    }
    db_param p[8] = {LOGIN,
                     db_p_bytes(ev->ciphertext_hash, WA_KEY_LEN),
                     db_p_text(ev->chat_jid),
                     db_p_text(ev->sender_jid),
                     db_p_text(ev->message_id),
                     db_p_bytes(ev->plaintext, ev->plaintext_len),
                     db_p_int(ev->server_ts_ms),
                     db_p_int(db_now_ms())};
    /* in a transaction: sent with its next statement or its COMMIT */
    return done(s, db_exec_deferred(s->conn, &st_evbuf_save, p, 8));
}

static int pg_evbuf_load(void *ctx, const uint8_t hash[WA_KEY_LEN], wb_buf *plaintext,
                         int64_t *server_ts_ms)
{
    pg_store *s = ctx;
    const evbuf_filter *f = evbuf_filter_get(s);
    if (f && !evbuf_maybe_present(f, hash)) return done(s, DB_ERR_NOT_FOUND); /* no round trip */
    db_param p[2] = {LOGIN, db_p_bytes(hash, WA_KEY_LEN)};
    db_result *r;
    int rc = db_exec_row(s->conn, &st_evbuf_load, p, 2, &r);
    if (rc) return done(s, rc);
    rc = append_col(s, r, 0, plaintext);
    if (server_ts_ms) *server_ts_ms = db_result_int(r, 0, 1);
    db_result_free(r);
    return rc ? rc : done(s, DB_OK);
}

static int pg_evbuf_delete(void *ctx, const uint8_t hash[WA_KEY_LEN])
{
    pg_store *s = ctx;
    db_param p[2] = {LOGIN, db_p_bytes(hash, WA_KEY_LEN)};
    return run(s, &st_evbuf_delete, p, 2);
}

static int pg_evbuf_foreach(void *ctx, wa_store_event_fn fn, void *arg)
{
    pg_store *s = ctx;
    db_param p[1] = {LOGIN};
    db_result *r;
    int rc = db_exec(s->conn, &st_evbuf_all, p, 1, &r);
    if (rc) return done(s, rc);
    int rows = db_result_rows(r);
    int ret = WA_STORE_OK;
    for (int i = 0; i < rows && ret == 0; i++) {
        wa_buffered_event ev;
        if (!db_result_copy_fixed(r, i, 0, ev.ciphertext_hash, WA_KEY_LEN)) continue;
        ev.chat_jid = db_result_text(r, i, 1);
        ev.sender_jid = db_result_text(r, i, 2);
        ev.message_id = db_result_text(r, i, 3);
        ev.plaintext = db_result_bytes(r, i, 4, &ev.plaintext_len);
        ev.server_ts_ms = db_result_int(r, i, 5);
        ev.inserted_ms = db_result_int(r, i, 6);
        ret = fn(arg, &ev);
    }
    db_result_free(r);
    s->err[0] = '\0';
    return ret;
}

static int pg_evbuf_prune(void *ctx, int64_t before_ms, size_t *deleted)
{
    pg_store *s = ctx;
    db_param p[2] = {LOGIN, db_p_int(before_ms)};
    return run_count(s, &st_evbuf_prune, p, 2, deleted);
}

/* ---- sent messages ---- */

static int pg_sent_save(void *ctx, const char *chat, const char *id, const uint8_t *plaintext,
                        size_t len, int64_t sent_ms)
{
    pg_store *s = ctx;
    if (!chat || !id || (!plaintext && len)) return invalid(s, "chat/id/plaintext");
    db_param p[5] = {LOGIN, db_p_text(chat), db_p_text(id), db_p_bytes(plaintext, len),
                     db_p_int(sent_ms)};
    return done(s, db_exec_deferred(s->conn, &st_sent_save, p, 5));
}

static int pg_sent_load(void *ctx, const char *chat, const char *id, wb_buf *plaintext)
{
    pg_store *s = ctx;
    if (!chat || !id) return invalid(s, "chat/id");
    db_param p[3] = {LOGIN, db_p_text(chat), db_p_text(id)};
    return load_buf(s, &st_sent_load, p, 3, plaintext);
}

static int pg_sent_delete(void *ctx, const char *chat, const char *id)
{
    pg_store *s = ctx;
    if (!chat || !id) return invalid(s, "chat/id");
    db_param p[3] = {LOGIN, db_p_text(chat), db_p_text(id)};
    return run(s, &st_sent_delete, p, 3);
}

static int pg_sent_prune(void *ctx, int64_t before_ms, size_t *deleted)
{
    pg_store *s = ctx;
    db_param p[2] = {LOGIN, db_p_int(before_ms)};
    return run_count(s, &st_sent_prune, p, 2, deleted);
}

int db_store_new(db_conn *conn, int64_t login_id, wa_store *out)
{
    memset(out, 0, sizeof(*out));
    if (!conn) return WA_STORE_ERR_INVALID;
    pg_store *s = calloc(1, sizeof(*s));
    if (!s) return WA_STORE_ERR_NOMEM;
    s->conn = conn;
    s->held_seen = db_held_losses(conn);
    s->login_id = login_id;
    *out = (wa_store){
        .ctx = s,
        .destroy = pg_destroy,
        .last_error = pg_last_error,
        .begin = pg_begin,
        .commit = pg_commit,
        .rollback = pg_rollback,
        .epoch = pg_epoch,
        .wipe = pg_wipe,
        .device_load = pg_device_load,
        .device_save = pg_device_save,
        .device_delete = pg_device_delete,
        .signed_prekey_load = pg_signed_prekey_load,
        .identity_load = pg_identity_load,
        .identity_save = pg_identity_save,
        .identity_delete = pg_identity_delete,
        .identity_delete_prefix = pg_identity_delete_prefix,
        .session_load = pg_session_load,
        .session_save = pg_session_save,
        .session_delete = pg_session_delete,
        .session_delete_prefix = pg_session_delete_prefix,
        .prekey_load = pg_prekey_load,
        .prekeys_save = pg_prekeys_save,
        .prekey_delete = pg_prekey_delete,
        .prekeys_unuploaded = pg_prekeys_unuploaded,
        .prekeys_mark_uploaded = pg_prekeys_mark_uploaded,
        .prekeys_count_uploaded = pg_prekeys_count_uploaded,
        .sender_key_load = pg_sender_key_load,
        .sender_key_save = pg_sender_key_save,
        .sender_key_delete = pg_sender_key_delete,
        .appstate_key_save = pg_askey_save,
        .appstate_key_load = pg_askey_load,
        .appstate_key_latest = pg_askey_latest,
        .appstate_key_delete = pg_askey_delete,
        .appstate_version_load = pg_asver_load,
        .appstate_version_save = pg_asver_save,
        .appstate_version_delete = pg_asver_delete,
        .appstate_macs_save = pg_asmacs_save,
        .appstate_macs_delete = pg_asmacs_delete,
        .appstate_mac_load = pg_asmac_load,
        .contact_load = pg_contact_load,
        .contact_save = pg_contact_save,
        .contact_delete = pg_contact_delete,
        .chat_settings_load = pg_chat_load,
        .chat_settings_save = pg_chat_save,
        .chat_settings_delete = pg_chat_delete,
        .lid_map_save = pg_lid_map_save,
        .lid_for_pn = pg_lid_for_pn,
        .pn_for_lid = pg_pn_for_lid,
        .lid_map_delete = pg_lid_map_delete,
        .msg_secret_save = pg_secret_save,
        .msg_secret_load = pg_secret_load,
        .msg_secret_delete = pg_secret_delete,
        .event_buffer_save = pg_evbuf_save,
        .event_buffer_load = pg_evbuf_load,
        .event_buffer_delete = pg_evbuf_delete,
        .event_buffer_foreach = pg_evbuf_foreach,
        .event_buffer_prune = pg_evbuf_prune,
        .sent_save = pg_sent_save,
        .sent_load = pg_sent_load,
        .sent_delete = pg_sent_delete,
        .sent_prune = pg_sent_prune,
    };
    return WA_STORE_OK;
}
