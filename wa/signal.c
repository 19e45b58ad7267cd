/*
 * wa/signal.c - libsignal-protocol-c's stores on wa_store, and the encrypt/decrypt calls of
 * wa/signal.h. Every library call's result is checked before the next call: Debian's build keeps
 * assert(), so a NULL object would abort the process.
 */
#include "wa/signal.h"

#include "wa/err.h"

#include <signal/curve.h>
#include <signal/protocol.h>
#include <signal/ratchet.h>
#include <signal/session_builder.h>
#include <signal/session_cipher.h>
#include <signal/session_pre_key.h>
#include <signal/session_record.h>
#include <signal/session_state.h>
#include <signal/signal_protocol.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LID_NAME_MAX 64 /* bytes of a LID Signal name ("123456789012345_1") incl. NUL */

/* Sending without a write per message. A session's stored record says where its sending chain
 * resumes after a restart: WA_SIGNAL_RESERVE keys ahead of the record the ciphers use, which is
 * kept here in memory. While the ciphers only step that chain within the reserve, the stored
 * record stays what it is, and a message goes out without waiting for a write to become durable.
 * After a crash the session goes on from the stored record, its chain stepped to the resume point,
 * past every key that may have been used: never the same key twice. (Stored: "WBR1", the resume
 * index in 4 bytes big endian, then the record; a serialized record starts with a protobuf tag,
 * never 'W', so a record stored bare is read as it is.)
 * The receiver skips the unused keys (Signal receivers accept gaps of up to 2,000). Anything else
 * that changes in the record (a received message, a new ratchet step) is written at once, again
 * with the reserve. What is kept is only good while the store's epoch stays the one it was
 * written in (a rollback, a lost commit: the stored record may be older); else the store is
 * asked again. */
#define WA_SIGNAL_RESERVE 64
#define WA_SIGNAL_KEPT    32 /* sessions kept per login; the oldest goes when full */

typedef struct kept_record {
    char key[WA_ADDRESS_MAX]; /* the session's store key */
    signal_buffer *current;   /* the record as the ciphers left it */
    signal_buffer *stored;    /* the record as stored (after the resume index) */
    ratchet_chain_key *chain; /* its sending chain key (a reference) */
    signal_buffer *ratchet;   /* the sending chain's ratchet key (which chain it is) */
    uint32_t reserved;        /* the resume index stored: every key below it may be used */
    uint64_t epoch;           /* the store's epoch when it was written */
} kept_record;

struct wa_signal {
    wa_crypto *crypto;                 /* borrowed */
    wa_store *store;                   /* borrowed */
    signal_context *ctx;               /* the crypto's context */
    signal_protocol_store_context *sc; /* owns the store callbacks below */
    wa_device dev;                     /* this device: identity, registration id, signed prekey */
    bool identity_changed;             /* a pkmsg or bundle came with a peer identity key other
                                          than the stored one (wa_signal_take_identity_change) */
    struct {
        char pn[WA_ADDRESS_MAX];       /* a phone-number Signal name ("15551234567"), "" if free */
        char lid[LID_NAME_MAX];        /* its LID name ("123456789012345_1"), "" if none is known */
    } lids[WA_SIGNAL_LID_CACHE];       /* the store's LID map as address_key used it; emptied by
                                          wa_signal_lids_changed */
    size_t lids_next;                  /* the slot the next new name takes */
    kept_record *kept[WA_SIGNAL_KEPT]; /* sessions whose stored record is ahead (see below) */
    size_t kept_next;                  /* the slot the next new one takes when all are used */
};

static void kept_free(kept_record *k)
{
    if (!k) return;
    signal_buffer_bzero_free(k->current);
    signal_buffer_bzero_free(k->stored);
    signal_buffer_free(k->ratchet);
    if (k->chain) SIGNAL_UNREF(k->chain);
    free(k);
}

static void kept_drop_prefix(wa_signal *s, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < WA_SIGNAL_KEPT; i++)
        if (s->kept[i] && strncmp(s->kept[i]->key, prefix, n) == 0) {
            kept_free(s->kept[i]);
            s->kept[i] = NULL;
        }
}

static void kept_drop(wa_signal *s, const char *key)
{
    for (size_t i = 0; i < WA_SIGNAL_KEPT; i++)
        if (s->kept[i] && strcmp(s->kept[i]->key, key) == 0) {
            kept_free(s->kept[i]);
            s->kept[i] = NULL;
        }
}

static uint64_t store_epoch(const wa_signal *s)
{
    return s->store->epoch ? s->store->epoch(s->store->ctx) : 0;
}

/* The kept record of key while still good, else NULL (and a stale one is dropped). */
static kept_record *kept_find(wa_signal *s, const char *key)
{
    for (size_t i = 0; i < WA_SIGNAL_KEPT; i++) {
        kept_record *k = s->kept[i];
        if (!k || strcmp(k->key, key) != 0) continue;
        if (k->epoch == store_epoch(s)) return k;
        kept_free(k);
        s->kept[i] = NULL;
        return NULL;
    }
    return NULL;
}

/* Frees k, stored as the ciphers left it, to resume right there (else the next load would skip
 * to its resume index: a gap for its receivers each time), unless the store's epoch moved. */
static void kept_let_go(wa_signal *s, kept_record *k)
{
    if (k->epoch == store_epoch(s))
        s->store->session_save(s->store->ctx, k->key, signal_buffer_data(k->current),
                               signal_buffer_len(k->current));
    kept_free(k);
}

/* Keeps k for its key (replacing any, else in a free slot, else the oldest's). */
static void kept_put(wa_signal *s, kept_record *k)
{
    kept_drop(s, k->key);
    for (size_t i = 0; i < WA_SIGNAL_KEPT; i++)
        if (!s->kept[i]) {
            s->kept[i] = k;
            return;
        }
    size_t i = s->kept_next;
    s->kept_next = (s->kept_next + 1) % WA_SIGNAL_KEPT;
    kept_let_go(s, s->kept[i]);
    s->kept[i] = k;
}

/* Lets go of the kept records whose key is prefix (whole_key) or starts with it ("": every one),
 * each stored as it is (a hand-over without a gap for its receivers, as at a clean stop). */
static void kept_release(wa_signal *s, const char *prefix, bool whole_key)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < WA_SIGNAL_KEPT; i++)
        if (s->kept[i] && (whole_key ? strcmp(s->kept[i]->key, prefix) == 0
                                     : strncmp(s->kept[i]->key, prefix, n) == 0)) {
            kept_let_go(s, s->kept[i]);
            s->kept[i] = NULL;
        }
}

/* The LID Signal name of a phone-number name (digits only: agent 0, WhatsApp's domain) when the
 * store's map knows it, into lid; else false. Cached, the misses too. */
static bool lid_name(wa_signal *s, const char *name, size_t name_len, char *lid, size_t cap)
{
    if (name_len == 0 || name_len >= WA_ADDRESS_MAX) return false;
    for (size_t i = 0; i < name_len; i++)
        if (name[i] < '0' || name[i] > '9') return false;
    for (size_t i = 0; i < WA_SIGNAL_LID_CACHE; i++)
        if (strlen(s->lids[i].pn) == name_len && memcmp(s->lids[i].pn, name, name_len) == 0) {
            snprintf(lid, cap, "%s", s->lids[i].lid);
            return lid[0] != '\0';
        }
    char pn[WA_ADDRESS_MAX], found[WA_ADDRESS_MAX];
    snprintf(pn, sizeof(pn), "%.*s@%s", (int)name_len, name, WA_SERVER_PN);
    wa_store *st = s->store;
    size_t user = 0;
    if (st->lid_for_pn && st->lid_for_pn(st->ctx, pn, found) == WA_STORE_OK) {
        const char *end = strpbrk(found, ":@");
        if (end && strcmp(strchr(end, '@'), "@" WA_SERVER_LID) == 0 &&
            (size_t)(end - found) < LID_NAME_MAX - 2)
            user = (size_t)(end - found);
    }
    size_t slot = s->lids_next;
    s->lids_next = (s->lids_next + 1) % WA_SIGNAL_LID_CACHE;
    snprintf(s->lids[slot].pn, sizeof(s->lids[slot].pn), "%.*s", (int)name_len, name);
    s->lids[slot].lid[0] = '\0';
    if (user) snprintf(s->lids[slot].lid, sizeof(s->lids[slot].lid), "%.*s_1", (int)user, found);
    snprintf(lid, cap, "%s", s->lids[slot].lid);
    return lid[0] != '\0';
}

/* "name:device", the store's address key. One device has one session whichever JID a stanza
 * names it by, as in WhatsApp's own clients since LIDs came: a phone-number address whose LID the
 * store's map knows is keyed by the LID ("123456789012345_1:0"). */
static void address_key(wa_signal *s, const signal_protocol_address *a, char *out, size_t cap)
{
    char lid[LID_NAME_MAX];
    if (lid_name(s, a->name, a->name_len, lid, sizeof(lid)))
        snprintf(out, cap, "%s:%d", lid, (int)a->device_id);
    else
        snprintf(out, cap, "%.*s:%d", (int)a->name_len, a->name, (int)a->device_id);
}

/* The phone-number key under which this device's session may still be kept from before its LID
 * was known (or from before sessions were kept by LID) into out: a's own key when a is a
 * phone-number address the map resolves, "PN:device" when a is a LID address whose phone number
 * the map knows; "" when none. Asked only when the LID key has no session. */
static void pn_key_of(wa_signal *s, const signal_protocol_address *a, char *out, size_t cap)
{
    char lid[WA_ADDRESS_MAX], pn[WA_ADDRESS_MAX];
    out[0] = '\0';
    if (lid_name(s, a->name, a->name_len, lid, sizeof(lid))) {
        snprintf(out, cap, "%.*s:%d", (int)a->name_len, a->name, (int)a->device_id);
        return;
    }
    size_t user = a->name_len;
    if (user < 3 || user >= LID_NAME_MAX || memcmp(a->name + user - 2, "_1", 2) != 0) return;
    snprintf(lid, sizeof(lid), "%.*s@%s", (int)(user - 2), a->name, WA_SERVER_LID);
    wa_store *st = s->store;
    if (!st->pn_for_lid || st->pn_for_lid(st->ctx, lid, pn) != WA_STORE_OK) return;
    const char *end = strpbrk(pn, ":@");
    if (!end || strcmp(strchr(end, '@'), "@" WA_SERVER_PN) != 0) return;
    snprintf(out, cap, "%.*s:%d", (int)(end - pn), pn, (int)a->device_id);
}

/* A session (and identity) kept under the phone-number key before the LID was known moves to the
 * LID key, unless the LID key has a session of its own. Called when the LID key has none. 1 when
 * it moved, 0 when there was nothing to move, SG_ERR_UNKNOWN when the store failed. */
static int migrate_to_lid(wa_signal *s, const char *pn_key, const char *lid_key)
{
    if (!pn_key[0]) return 0;
    wa_store *st = s->store;
    wb_buf b;
    wb_buf_init(&b);
    uint8_t ik[WA_KEY_LEN];
    /* a record kept under the phone-number key is stored first, as it is: it moves with no gap */
    kept_release(s, pn_key, true);
    int rc = st->session_load(st->ctx, pn_key, &b);
    int moved = rc == WA_STORE_OK ? 1 : rc == WA_STORE_NOT_FOUND ? 0 : SG_ERR_UNKNOWN;
    if (moved == 1 && (st->session_save(st->ctx, lid_key, b.data, b.len) != WA_STORE_OK ||
                       st->session_delete(st->ctx, pn_key) < 0))
        moved = SG_ERR_UNKNOWN;
    if (moved == 1) {
        rc = st->identity_load(st->ctx, pn_key, ik);
        if (rc == WA_STORE_OK && (st->identity_save(st->ctx, lid_key, ik) != WA_STORE_OK ||
                                  st->identity_delete(st->ctx, pn_key) < 0))
            moved = SG_ERR_UNKNOWN;
        else if (rc != WA_STORE_OK && rc != WA_STORE_NOT_FOUND)
            moved = SG_ERR_UNKNOWN;
    }
    if (b.data) wa_wipe(b.data, b.len);
    wb_buf_free(&b);
    wa_wipe(ik, sizeof(ik));
    return moved;
}

void wa_signal_lids_changed(wa_signal *s, const char *pn)
{
    memset(s->lids, 0, sizeof(s->lids));
    s->lids_next = 0;
    /* the keys of those kept may name other rows now: each stored as it is, under its key, from
     * where a load by LID moves it (migrate_to_lid) */
    char prefix[WA_ADDRESS_MAX];
    if (pn && (size_t)snprintf(prefix, sizeof(prefix), "%s:", pn) < sizeof(prefix))
        kept_release(s, prefix, false);
    else
        kept_release(s, "", false);
}

/* --- sessions --- */

#define RESERVE_MAGIC "WBR1"

/* The record stored with its resume index: RESERVE_MAGIC, resume (big endian), rec. */
static signal_buffer *wrap_reserve(uint32_t resume, signal_buffer *rec)
{
    size_t n = signal_buffer_len(rec);
    signal_buffer *b = signal_buffer_alloc(8 + n);
    if (!b) return NULL;
    uint8_t *p = signal_buffer_data(b);
    memcpy(p, RESERVE_MAGIC, 4);
    p[4] = (uint8_t)(resume >> 24);
    p[5] = (uint8_t)(resume >> 16);
    p[6] = (uint8_t)(resume >> 8);
    p[7] = (uint8_t)resume;
    memcpy(p + 8, signal_buffer_data(rec), n);
    return b;
}

/* A stored record to go on with: one stored with a resume index has its sending chain stepped
 * there (every key below may have been used before a crash); one stored bare is used as it is. */
static signal_buffer *resumed_record(wa_signal *s, const uint8_t *p, size_t len)
{
    if (len < 8 || memcmp(p, RESERVE_MAGIC, 4) != 0) return signal_buffer_create(p, len);
    uint32_t resume = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
    session_record *rec = NULL;
    if (session_record_deserialize(&rec, p + 8, len - 8, s->ctx) != 0 || !rec) return NULL;
    session_state *st = session_record_get_state(rec);
    ratchet_chain_key *chain =
        st && session_state_has_sender_chain(st) ? session_state_get_sender_chain_key(st) : NULL;
    signal_buffer *out = NULL;
    if (!chain || ratchet_chain_key_get_index(chain) >= resume) {
        out = signal_buffer_create(p + 8, len - 8);
    } else {
        SIGNAL_REF(chain);
        bool ok = true;
        while (ok && ratchet_chain_key_get_index(chain) < resume) {
            ratchet_chain_key *next = NULL;
            ok = ratchet_chain_key_create_next(chain, &next) == 0 && next;
            if (ok) {
                SIGNAL_UNREF(chain);
                chain = next;
            }
        }
        if (ok && session_state_set_sender_chain_key(st, chain) == 0)
            session_record_serialize(&out, rec);
        SIGNAL_UNREF(chain);
    }
    SIGNAL_UNREF(rec);
    return out;
}

static int load_session(signal_buffer **record, signal_buffer **user_record,
                        const signal_protocol_address *address, void *user_data)
{
    wa_signal *s = user_data;
    char key[WA_ADDRESS_MAX], pn_key[WA_ADDRESS_MAX];
    address_key(s, address, key, sizeof(key));
    const kept_record *k = kept_find(s, key);
    if (k) {
        *record = signal_buffer_copy(k->current);
        *user_record = NULL;
        return *record ? 1 : SG_ERR_NOMEM;
    }
    wb_buf b;
    wb_buf_init(&b);
    int rc = s->store->session_load(s->store->ctx, key, &b);
    if (rc == WA_STORE_NOT_FOUND) {
        pn_key_of(s, address, pn_key, sizeof(pn_key));
        int moved = migrate_to_lid(s, pn_key, key);
        if (moved < 0) rc = WA_STORE_ERR_IO;
        if (moved == 1) rc = s->store->session_load(s->store->ctx, key, &b);
    }
    if (rc == WA_STORE_NOT_FOUND) {
        wb_buf_free(&b);
        return 0;
    }
    if (rc != WA_STORE_OK) {
        wb_buf_free(&b);
        return SG_ERR_UNKNOWN;
    }
    *record = resumed_record(s, b.data, b.len);
    *user_record = NULL;
    wa_wipe(b.data, b.len);
    wb_buf_free(&b);
    return *record ? 1 : SG_ERR_NOMEM;
}

static int sub_device_sessions(signal_int_list **sessions, const char *name, size_t name_len,
                               void *user_data)
{
    *sessions = signal_int_list_alloc(); /* not used by the ciphers; devices come from usync */
    return *sessions ? 0 : SG_ERR_NOMEM;
}

/* The record with its state's sending chain key replaced by chain, serialized into *out. */
static int with_chain(session_record *rec, ratchet_chain_key *chain, signal_buffer **out)
{
    session_state *st = session_record_get_state(rec);
    if (session_state_set_sender_chain_key(st, chain) != 0) return SG_ERR_UNKNOWN;
    return session_record_serialize(out, rec) == 0 && *out ? 0 : SG_ERR_NOMEM;
}

/* Saves what the ciphers left, with a resume index WA_SIGNAL_RESERVE keys ahead of its sending
 * chain (see WA_SIGNAL_RESERVE): nothing is written when the stored record already stands for it
 * (only that chain moved, within the reserve); a record changed otherwise on the same chain (a
 * message received) is stored with the same resume index. */
static int store_session(const signal_protocol_address *address, uint8_t *record, size_t len,
                         uint8_t *user_record, size_t user_len, void *user_data)
{
    wa_signal *s = user_data;
    char key[WA_ADDRESS_MAX];
    address_key(s, address, key, sizeof(key));
    session_record *rec = NULL;
    session_state *st = NULL;
    ratchet_chain_key *chain = NULL;
    if (s->store->epoch && session_record_deserialize(&rec, record, len, s->ctx) == 0 && rec)
        st = session_record_get_state(rec);
    if (!st || !session_state_has_sender_chain(st) ||
        !(chain = session_state_get_sender_chain_key(st))) {
        /* nothing to reserve (or no epoch to keep it by): stored as it is */
        if (rec) SIGNAL_UNREF(rec);
        kept_drop(s, key);
        return s->store->session_save(s->store->ctx, key, record, len) == WA_STORE_OK
                   ? 0
                   : SG_ERR_UNKNOWN;
    }
    SIGNAL_REF(chain); /* the record's own: with_chain replaces it */
    uint32_t index = ratchet_chain_key_get_index(chain);
    signal_buffer *current = signal_buffer_create(record, len), *stored = NULL, *ratchet = NULL,
                  *wrapped = NULL;
    int rc = current ? 0 : SG_ERR_NOMEM;
    if (rc == 0 &&
        (ec_public_key_serialize(&ratchet, session_state_get_sender_ratchet_key(st)) != 0 ||
         !ratchet))
        rc = SG_ERR_NOMEM;
    kept_record *k = rc == 0 ? kept_find(s, key) : NULL;
    bool same_chain = k && index <= k->reserved && signal_buffer_compare(ratchet, k->ratchet) == 0;
    uint32_t resume = same_chain ? k->reserved : index + WA_SIGNAL_RESERVE;
    /* on the same chain the record is stored with the chain key it was stored with before (the
     * resume index stands for both), so that "only the chain moved" compares equal */
    if (rc == 0) rc = with_chain(rec, same_chain ? k->chain : chain, &stored);
    if (rc == 0 && same_chain && signal_buffer_compare(stored, k->stored) == 0) {
        signal_buffer_bzero_free(k->current); /* nothing to write */
        k->current = current;
        current = NULL;
    } else if (rc == 0) {
        wrapped = wrap_reserve(resume, stored);
        if (!wrapped)
            rc = SG_ERR_NOMEM;
        else if (s->store->session_save(s->store->ctx, key, signal_buffer_data(wrapped),
                                        signal_buffer_len(wrapped)) != WA_STORE_OK)
            rc = SG_ERR_UNKNOWN;
        kept_record *nk = rc == 0 ? calloc(1, sizeof(*nk)) : NULL;
        if (nk) {
            snprintf(nk->key, sizeof(nk->key), "%s", key);
            nk->current = current;
            nk->stored = stored;
            nk->chain = same_chain ? k->chain : chain;
            SIGNAL_REF(nk->chain);
            nk->ratchet = ratchet;
            nk->reserved = resume;
            nk->epoch = store_epoch(s);
            current = stored = ratchet = NULL;
            kept_put(s, nk); /* (replaces k) */
        } else {
            kept_drop(s, key); /* the next load reads the stored record (its chain resumes ahead) */
        }
    } else {
        kept_drop(s, key);
    }
    signal_buffer_bzero_free(current);
    signal_buffer_bzero_free(stored);
    signal_buffer_bzero_free(wrapped);
    signal_buffer_free(ratchet);
    SIGNAL_UNREF(chain);
    SIGNAL_UNREF(rec);
    return rc;
}

static int contains_session(const signal_protocol_address *address, void *user_data)
{
    signal_buffer *record = NULL, *user_record = NULL;
    int rc = load_session(&record, &user_record, address, user_data);
    signal_buffer_bzero_free(record);
    signal_buffer_free(user_record);
    return rc == 1 ? 1 : 0;
}

static int delete_session(const signal_protocol_address *address, void *user_data)
{
    wa_signal *s = user_data;
    char key[WA_ADDRESS_MAX];
    address_key(s, address, key, sizeof(key));
    kept_drop(s, key);
    int rc = s->store->session_delete(s->store->ctx, key);
    return rc == WA_STORE_OK ? 1 : rc == WA_STORE_NOT_FOUND ? 0 : SG_ERR_UNKNOWN;
}

static int delete_all_sessions(const char *name, size_t name_len, void *user_data)
{
    wa_signal *s = user_data;
    char prefix[WA_ADDRESS_MAX], lid[LID_NAME_MAX];
    size_t n = 0, m = 0;
    if (lid_name(s, name, name_len, lid, sizeof(lid))) { /* and the phone number's leftovers */
        snprintf(prefix, sizeof(prefix), "%s:", lid);
        kept_drop_prefix(s, prefix);
        if (s->store->session_delete_prefix(s->store->ctx, prefix, &m) != WA_STORE_OK)
            return SG_ERR_UNKNOWN;
    }
    snprintf(prefix, sizeof(prefix), "%.*s:", (int)name_len, name);
    kept_drop_prefix(s, prefix);
    return s->store->session_delete_prefix(s->store->ctx, prefix, &n) == WA_STORE_OK
               ? (int)(n + m)
               : SG_ERR_UNKNOWN;
}

/* --- prekeys --- */

/* An ec_key_pair from raw keys. */
static int key_pair(wa_signal *s, const wa_keypair *kp, ec_key_pair **out)
{
    ec_private_key *priv = NULL;
    ec_public_key *pub = NULL;
    uint8_t pub33[33] = {0x05};
    memcpy(pub33 + 1, kp->pub, 32);
    int rc = curve_decode_private_point(&priv, kp->priv, 32, s->ctx);
    if (rc == 0) rc = curve_decode_point(&pub, pub33, 33, s->ctx);
    if (rc == 0) rc = ec_key_pair_create(out, pub, priv);
    if (pub) SIGNAL_UNREF(pub);
    if (priv) SIGNAL_UNREF(priv);
    return rc;
}

static int load_pre_key(signal_buffer **record, uint32_t id, void *user_data)
{
    wa_signal *s = user_data;
    wa_prekey pk;
    int src = s->store->prekey_load(s->store->ctx, id, &pk);
    if (src == WA_STORE_NOT_FOUND) return SG_ERR_INVALID_KEY_ID;
    if (src != WA_STORE_OK) return SG_ERR_UNKNOWN;
    ec_key_pair *kp = NULL;
    session_pre_key *spk = NULL;
    int rc = key_pair(s, &pk.key, &kp);
    if (rc == 0) rc = session_pre_key_create(&spk, id, kp);
    if (rc == 0) rc = session_pre_key_serialize(record, spk);
    if (spk) SIGNAL_UNREF(spk);
    if (kp) SIGNAL_UNREF(kp);
    wa_wipe(&pk, sizeof(pk));
    return rc == 0 ? SG_SUCCESS : rc;
}

static int store_pre_key(uint32_t id, uint8_t *record, size_t len, void *user_data)
{
    wa_signal *s = user_data;
    session_pre_key *spk = NULL;
    signal_buffer *priv = NULL, *pub = NULL;
    int rc = session_pre_key_deserialize(&spk, record, len, s->ctx);
    ec_key_pair *kp = rc == 0 ? session_pre_key_get_key_pair(spk) : NULL;
    if (rc == 0) rc = ec_private_key_serialize(&priv, ec_key_pair_get_private(kp));
    if (rc == 0) rc = ec_public_key_serialize(&pub, ec_key_pair_get_public(kp));
    if (rc == 0 && (signal_buffer_len(priv) != 32 || signal_buffer_len(pub) != 33))
        rc = SG_ERR_INVALID_KEY;
    if (rc == 0) {
        wa_prekey pk = {.id = id, .uploaded = false};
        memcpy(pk.key.priv, signal_buffer_data(priv), 32);
        memcpy(pk.key.pub, signal_buffer_data(pub) + 1, 32);
        rc = s->store->prekeys_save(s->store->ctx, &pk, 1) == WA_STORE_OK ? 0 : SG_ERR_UNKNOWN;
        wa_wipe(&pk, sizeof(pk));
    }
    signal_buffer_bzero_free(priv);
    signal_buffer_free(pub);
    if (spk) SIGNAL_UNREF(spk);
    return rc;
}

static int contains_pre_key(uint32_t id, void *user_data)
{
    wa_signal *s = user_data;
    wa_prekey pk;
    int rc = s->store->prekey_load(s->store->ctx, id, &pk);
    wa_wipe(&pk, sizeof(pk));
    return rc == WA_STORE_OK ? 1 : 0;
}

static int remove_pre_key(uint32_t id, void *user_data)
{
    wa_signal *s = user_data;
    int rc = s->store->prekey_delete(s->store->ctx, id);
    return rc == WA_STORE_OK || rc == WA_STORE_NOT_FOUND ? 0 : SG_ERR_UNKNOWN;
}

static int load_signed_pre_key(signal_buffer **record, uint32_t id, void *user_data)
{
    wa_signal *s = user_data;
    if (id != s->dev.signed_prekey_id) return SG_ERR_INVALID_KEY_ID;
    ec_key_pair *kp = NULL;
    session_signed_pre_key *spk = NULL;
    int rc = key_pair(s, &s->dev.signed_prekey, &kp);
    if (rc == 0)
        rc = session_signed_pre_key_create(&spk, id, 0, kp, s->dev.signed_prekey_sig, WA_SIG_LEN);
    if (rc == 0) rc = session_signed_pre_key_serialize(record, spk);
    if (spk) SIGNAL_UNREF(spk);
    if (kp) SIGNAL_UNREF(kp);
    return rc == 0 ? SG_SUCCESS : rc;
}

static int store_signed_pre_key(uint32_t id, uint8_t *record, size_t len, void *user_data)
{
    return SG_ERR_INVAL; /* the signed prekey lives in the device record */
}

static int contains_signed_pre_key(uint32_t id, void *user_data)
{
    wa_signal *s = user_data;
    return id == s->dev.signed_prekey_id;
}

static int remove_signed_pre_key(uint32_t id, void *user_data)
{
    return 0;
}

/* --- identities --- */

static int identity_key_pair(signal_buffer **public_data, signal_buffer **private_data,
                             void *user_data)
{
    wa_signal *s = user_data;
    uint8_t pub33[33] = {0x05};
    memcpy(pub33 + 1, s->dev.identity.pub, 32);
    *public_data = signal_buffer_create(pub33, 33);
    *private_data = signal_buffer_create(s->dev.identity.priv, 32);
    return *public_data && *private_data ? 0 : SG_ERR_NOMEM;
}

static int registration_id(void *user_data, uint32_t *id)
{
    wa_signal *s = user_data;
    *id = s->dev.registration_id;
    return 0;
}

static int save_identity(const signal_protocol_address *address, uint8_t *key, size_t len,
                         void *user_data)
{
    wa_signal *s = user_data;
    char akey[WA_ADDRESS_MAX];
    address_key(s, address, akey, sizeof(akey));
    if (!key) return s->store->identity_delete(s->store->ctx, akey) >= 0 ? 0 : SG_ERR_UNKNOWN;
    if (len != 33 || key[0] != 0x05) return SG_ERR_INVALID_KEY;
    return s->store->identity_save(s->store->ctx, akey, key + 1) == WA_STORE_OK ? 0
                                                                                : SG_ERR_UNKNOWN;
}

static int is_trusted_identity(const signal_protocol_address *address, uint8_t *key, size_t len,
                               void *user_data)
{
    /* WhatsApp trusts on first use and accepts a changed key (it shows "security code changed"):
     * the change is noticed before the library runs (identity_swap_begin) */
    return 1;
}

/* --- identity changes --- */

/* What an address had before a key other than its stored identity took over: the old session
 * is dropped first (WhatsApp starts over with the new key) and comes back if the new one fails. */
typedef struct identity_swap {
    bool changed;            /* a stored identity differs from the new key */
    bool had_session;        /* record holds the old session */
    wb_buf record;           /* the old session record */
    uint8_t old[WA_KEY_LEN]; /* the old identity key */
} identity_swap;

/* Compares key with the stored identity of akey; when they differ, drops the session (kept in
 * sw for identity_swap_end). WA_OK, or WA_ERR_STATE when the store fails. */
static int identity_swap_begin(wa_signal *s, const char *akey, const uint8_t key[WA_KEY_LEN],
                               identity_swap *sw)
{
    memset(sw, 0, sizeof(*sw));
    wb_buf_init(&sw->record);
    wa_store *st = s->store;
    int rc = st->identity_load(st->ctx, akey, sw->old);
    if (rc == WA_STORE_NOT_FOUND || (rc == WA_STORE_OK && wa_ct_equal(sw->old, key, WA_KEY_LEN)))
        return WA_OK; /* first use, or the same key */
    if (rc != WA_STORE_OK) return WA_ERR_STATE;
    sw->changed = true;
    const kept_record *k = kept_find(s, akey); /* the current record, when kept */
    if (k) {
        wb_buf_append(&sw->record, signal_buffer_data(k->current), signal_buffer_len(k->current));
        rc = sw->record.failed ? WA_STORE_ERR_NOMEM : WA_STORE_OK;
        kept_drop(s, akey);
    } else {
        rc = st->session_load(st->ctx, akey, &sw->record);
    }
    if (rc != WA_STORE_OK && rc != WA_STORE_NOT_FOUND) return WA_ERR_STATE;
    sw->had_session = rc == WA_STORE_OK;
    if (sw->had_session && st->session_delete(st->ctx, akey) < 0) return WA_ERR_STATE;
    return WA_OK;
}

/* The new key's session was made (ok) or not: on failure the old session and identity return. */
static void identity_swap_end(wa_signal *s, const char *akey, identity_swap *sw, bool ok)
{
    wa_store *st = s->store;
    if (sw->changed && ok) {
        s->identity_changed = true;
    } else if (sw->changed) {
        if (sw->had_session)
            st->session_save(st->ctx, akey, sw->record.data, sw->record.len);
        else
            st->session_delete(st->ctx, akey);
        st->identity_save(st->ctx, akey, sw->old);
    }
    if (sw->record.data) wa_wipe(sw->record.data, sw->record.len);
    wb_buf_free(&sw->record);
}

bool wa_signal_take_identity_change(wa_signal *s)
{
    bool changed = s->identity_changed;
    s->identity_changed = false;
    return changed;
}

int wa_signal_forget_user(wa_signal *s, const char *name)
{
    char prefix[WA_ADDRESS_MAX], lid[LID_NAME_MAX];
    int n = snprintf(prefix, sizeof(prefix), "%s:", name);
    if (!name[0] || n < 0 || (size_t)n >= sizeof(prefix)) return WA_ERR_INVALID;
    /* the name's keys, and those of its LID when the map knows it (where address_key put them) */
    const char *names[2] = {name, lid_name(s, name, strlen(name), lid, sizeof(lid)) ? lid : NULL};
    wa_store *st = s->store;
    for (int i = 0; i < 2 && names[i]; i++) {
        snprintf(prefix, sizeof(prefix), "%s:", names[i]);
        kept_drop_prefix(s, prefix);
        if (st->session_delete_prefix(st->ctx, prefix, NULL) != WA_STORE_OK ||
            st->identity_delete_prefix(st->ctx, prefix, NULL) != WA_STORE_OK)
            return WA_ERR_STATE;
    }
    return WA_OK;
}

wa_signal *wa_signal_new(wa_crypto *crypto, wa_store *store, int *err)
{
    wa_signal *s = calloc(1, sizeof(*s));
    int rc = s ? WA_OK : WA_ERR_NOMEM;
    if (s) {
        s->crypto = crypto;
        s->store = store;
        s->ctx = wa_crypto_signal(crypto);
        if (store->device_load(store->ctx, &s->dev) != WA_STORE_OK) rc = WA_ERR_STATE;
    }
    if (rc == WA_OK && signal_protocol_store_context_create(&s->sc, s->ctx) != 0) rc = WA_ERR_NOMEM;
    if (rc == WA_OK) {
        signal_protocol_session_store ss = {
            load_session,   sub_device_sessions, store_session, contains_session,
            delete_session, delete_all_sessions, NULL,          s};
        signal_protocol_pre_key_store ps = {load_pre_key,   store_pre_key, contains_pre_key,
                                            remove_pre_key, NULL,          s};
        signal_protocol_signed_pre_key_store sps = {load_signed_pre_key,
                                                    store_signed_pre_key,
                                                    contains_signed_pre_key,
                                                    remove_signed_pre_key,
                                                    NULL,
                                                    s};
        signal_protocol_identity_key_store is = {
            identity_key_pair, registration_id, save_identity, is_trusted_identity, NULL, s};
        if (signal_protocol_store_context_set_session_store(s->sc, &ss) != 0 ||
            signal_protocol_store_context_set_pre_key_store(s->sc, &ps) != 0 ||
            signal_protocol_store_context_set_signed_pre_key_store(s->sc, &sps) != 0 ||
            signal_protocol_store_context_set_identity_key_store(s->sc, &is) != 0)
            rc = WA_ERR_CRYPTO;
    }
    if (err) *err = rc;
    if (rc != WA_OK) {
        wa_signal_free(s);
        return NULL;
    }
    return s;
}

void wa_signal_forget_kept(wa_signal *s)
{
    if (s) kept_drop_prefix(s, "");
}

void wa_signal_free(wa_signal *s)
{
    if (!s) return;
    if (s->sc) signal_protocol_store_context_destroy(s->sc);
    for (size_t i = 0; i < WA_SIGNAL_KEPT; i++)
        if (s->kept[i]) kept_let_go(s, s->kept[i]);
    wa_wipe(&s->dev, sizeof(s->dev));
    free(s);
}

static signal_protocol_address address_of(const char *name, uint32_t device)
{
    signal_protocol_address a = {.name = name, .name_len = strlen(name), .device_id = (int)device};
    return a;
}

static int public_key(wa_signal *s, const uint8_t raw[32], ec_public_key **out)
{
    uint8_t pub33[33] = {0x05};
    memcpy(pub33 + 1, raw, 32);
    return curve_decode_point(out, pub33, 33, s->ctx);
}

int wa_signal_process_bundle(wa_signal *s, const char *name, uint32_t device,
                             const wa_prekey_bundle *b)
{
    signal_protocol_address addr = address_of(name, device);
    ec_public_key *prekey = NULL, *spk = NULL, *identity = NULL;
    session_pre_key_bundle *bundle = NULL;
    session_builder *builder = NULL;
    char akey[WA_ADDRESS_MAX];
    address_key(s, &addr, akey, sizeof(akey));
    contains_session(&addr, s); /* a session kept by phone number moves to the LID key first */
    identity_swap sw;
    if (identity_swap_begin(s, akey, b->identity, &sw) != WA_OK) {
        identity_swap_end(s, akey, &sw, false);
        return WA_ERR_STATE;
    }
    int rc = b->has_prekey ? public_key(s, b->prekey, &prekey) : 0;
    if (rc == 0) rc = public_key(s, b->signed_prekey, &spk);
    if (rc == 0) rc = public_key(s, b->identity, &identity);
    if (rc == 0)
        rc = session_pre_key_bundle_create(
            &bundle, b->registration_id, (int)device, b->has_prekey ? b->prekey_id : 0, prekey,
            b->signed_prekey_id, spk, b->signature, WA_SIG_LEN, identity);
    if (rc == 0) rc = session_builder_create(&builder, s->sc, &addr, s->ctx);
    if (rc == 0) rc = session_builder_process_pre_key_bundle(builder, bundle);
    if (builder) session_builder_free(builder);
    if (bundle) SIGNAL_UNREF(bundle);
    if (identity) SIGNAL_UNREF(identity);
    if (spk) SIGNAL_UNREF(spk);
    if (prekey) SIGNAL_UNREF(prekey);
    identity_swap_end(s, akey, &sw, rc == 0);
    if (rc == SG_ERR_INVALID_KEY) return WA_ERR_AUTH; /* the signed prekey's signature is bad */
    return rc == 0 ? WA_OK : WA_ERR_CRYPTO;
}

bool wa_signal_has_session(wa_signal *s, const char *name, uint32_t device)
{
    signal_protocol_address addr = address_of(name, device);
    return contains_session(&addr, s) == 1;
}

int wa_signal_pad(wa_crypto *c, const uint8_t *p, size_t len, wb_buf *out)
{
    uint8_t pad;
    int rc = wa_random(c, &pad, 1);
    if (rc != WA_OK) return rc;
    pad &= 0x0F;
    if (pad == 0) pad = 0x0F;
    wb_buf_append(out, p, len);
    for (int i = 0; i < pad; i++)
        wb_buf_u8(out, pad);
    return out->failed ? WA_ERR_NOMEM : WA_OK;
}

long wa_signal_unpadded_len(const uint8_t *p, size_t len)
{
    if (len == 0) return -1;
    uint8_t pad = p[len - 1];
    if (pad == 0 || pad > len) return -1;
    return (long)(len - pad);
}

int wa_signal_encrypt(wa_signal *s, const char *name, uint32_t device, const uint8_t *plaintext,
                      size_t len, wb_buf *out, wa_signal_type *type)
{
    signal_protocol_address addr = address_of(name, device);
    if (!wa_signal_has_session(s, name, device)) return WA_ERR_STATE;
    wb_buf padded;
    wb_buf_init(&padded);
    int rc = wa_signal_pad(s->crypto, plaintext, len, &padded);
    session_cipher *cipher = NULL;
    ciphertext_message *msg = NULL;
    if (rc == WA_OK && session_cipher_create(&cipher, s->sc, &addr, s->ctx) != 0) rc = WA_ERR_NOMEM;
    if (rc == WA_OK && session_cipher_encrypt(cipher, padded.data, padded.len, &msg) != 0)
        rc = WA_ERR_CRYPTO;
    if (rc == WA_OK) {
        signal_buffer *ser = ciphertext_message_get_serialized(msg);
        *type = ciphertext_message_get_type(msg) == CIPHERTEXT_PREKEY_TYPE ? WA_SIGNAL_PKMSG
                                                                           : WA_SIGNAL_MSG;
        wb_buf_append(out, signal_buffer_data(ser), signal_buffer_len(ser));
        if (out->failed) rc = WA_ERR_NOMEM;
    }
    if (msg) SIGNAL_UNREF(msg);
    if (cipher) session_cipher_free(cipher);
    wa_wipe(padded.data, padded.len);
    wb_buf_free(&padded);
    return rc;
}

static int map_error(int sg)
{
    switch (sg) {
    case SG_ERR_INVALID_PROTO_BUF:
    case SG_ERR_INVALID_MESSAGE:
    case SG_ERR_INVALID_VERSION:
    case SG_ERR_LEGACY_MESSAGE: return WA_ERR_PROTO;
    case SG_ERR_DUPLICATE_MESSAGE: return WA_ERR_STATE;
    case SG_ERR_INVALID_MAC:
    case SG_ERR_INVALID_KEY_ID:
    case SG_ERR_INVALID_KEY:
    case SG_ERR_NO_SESSION:
    case SG_ERR_UNTRUSTED_IDENTITY: return WA_ERR_AUTH;
    case SG_ERR_NOMEM: return WA_ERR_NOMEM;
    default: return WA_ERR_CRYPTO;
    }
}

int wa_signal_decrypt(wa_signal *s, const char *name, uint32_t device, wa_signal_type type,
                      const uint8_t *ciphertext, size_t len, wb_buf *plain)
{
    signal_protocol_address addr = address_of(name, device);
    session_cipher *cipher = NULL;
    signal_buffer *out = NULL;
    bool parsed = false;
    int rc = session_cipher_create(&cipher, s->sc, &addr, s->ctx);
    if (rc == 0 && type == WA_SIGNAL_PKMSG) {
        pre_key_signal_message *m = NULL;
        parsed = pre_key_signal_message_deserialize(&m, ciphertext, len, s->ctx) == 0;
        /* a new identity key: the old session goes first (it is back if this one fails) */
        char akey[WA_ADDRESS_MAX];
        address_key(s, &addr, akey, sizeof(akey));
        contains_session(&addr, s); /* as in wa_signal_process_bundle */
        identity_swap sw = {.changed = false};
        wb_buf_init(&sw.record);
        signal_buffer *ik = NULL;
        if (parsed && ec_public_key_serialize(&ik, pre_key_signal_message_get_identity_key(m)) != 0)
            parsed = false;
        if (parsed && (signal_buffer_len(ik) != 33 ||
                       identity_swap_begin(s, akey, signal_buffer_data(ik) + 1, &sw) != WA_OK))
            rc = SG_ERR_UNKNOWN;
        else
            rc = parsed ? session_cipher_decrypt_pre_key_signal_message(cipher, m, NULL, &out) : -1;
        identity_swap_end(s, akey, &sw, rc == 0);
        signal_buffer_free(ik);
        if (m) SIGNAL_UNREF(m);
    } else if (rc == 0) {
        signal_message *m = NULL;
        parsed = signal_message_deserialize(&m, ciphertext, len, s->ctx) == 0;
        rc = parsed ? session_cipher_decrypt_signal_message(cipher, m, NULL, &out) : -1;
        if (m) SIGNAL_UNREF(m);
    }
    if (cipher) session_cipher_free(cipher);
    if (rc != 0) {
        signal_buffer_bzero_free(out);
        if (!parsed) return WA_ERR_PROTO;
        /* the library reports a MAC that does not verify as an invalid message */
        return rc == SG_ERR_INVALID_MESSAGE ? WA_ERR_AUTH : map_error(rc);
    }
    long n = wa_signal_unpadded_len(signal_buffer_data(out), signal_buffer_len(out));
    plain->len = 0;
    if (n >= 0) wb_buf_append(plain, signal_buffer_data(out), (size_t)n);
    signal_buffer_bzero_free(out);
    if (n < 0) return WA_ERR_BAD_PACKED;
    return plain->failed ? WA_ERR_NOMEM : WA_OK;
}
