/*
 * wa/senderkey.c - libsignal-protocol-c's sender-key store on wa_store, the group session builder
 * and group cipher calls of wa/senderkey.h, the pruning of stored skipped keys, and the
 * Message.senderKeyDistributionMessage protobuf by hand (over wb_buf / wb_cur). Every library
 * call's result is checked before the next call (Debian's build keeps assert()).
 */
#include "wa/senderkey.h"

#include "wa/signal.h"

#include <signal/group_cipher.h>
#include <signal/group_session_builder.h>
#include <signal/protocol.h>
#include <signal/signal_protocol.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct wa_senderkey {
    wa_crypto *crypto;                 /* borrowed */
    wa_store *store;                   /* borrowed */
    signal_context *ctx;               /* the crypto's context */
    signal_protocol_store_context *sc; /* only the sender-key store is set */
};

/* --- protobuf glue --- */

static void pb_varint(wb_buf *out, uint64_t v)
{
    while (v >= 0x80) {
        wb_buf_u8(out, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    wb_buf_u8(out, (uint8_t)v);
}

static void pb_bytes(wb_buf *out, unsigned field, const void *p, size_t len)
{
    pb_varint(out, (uint64_t)field << 3 | 2);
    pb_varint(out, len);
    wb_buf_append(out, p, len);
}

static bool pb_read_varint(wb_cur *c, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        if (!wb_cur_u8(c, &b)) return false;
        r |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* One field: its number, its value (length-delimited fields only: *value), and the raw bytes of
 * the whole field (key included) in *raw. false at the end or on bad bytes (*bad set). */
typedef struct pb_field {
    uint32_t number;
    bool is_bytes;
    wb_cur value;
    const uint8_t *raw;
    size_t raw_len;
} pb_field;

static bool pb_next(wb_cur *c, pb_field *f, bool *bad)
{
    if (!wb_cur_left(c)) return false;
    const uint8_t *start = c->data;
    size_t before = wb_cur_left(c);
    uint64_t key, v;
    f->is_bytes = false;
    if (!pb_read_varint(c, &key) || key >> 3 == 0 || key >> 3 > 0x1fffffff) goto bad;
    f->number = (uint32_t)(key >> 3);
    switch (key & 7) {
    case 0:
        if (!pb_read_varint(c, &v)) goto bad;
        break;
    case 1:
        if (!wb_cur_skip(c, 8)) goto bad;
        break;
    case 5:
        if (!wb_cur_skip(c, 4)) goto bad;
        break;
    case 2:
        if (!pb_read_varint(c, &v) || v > wb_cur_left(c) || !wb_cur_sub(c, (size_t)v, &f->value))
            goto bad;
        f->is_bytes = true;
        break;
    default: goto bad;
    }
    f->raw = start;
    f->raw_len = before - wb_cur_left(c);
    return true;
bad:
    *bad = true;
    return false;
}

/* SenderKeyStateStructure: senderKeyId = 1, senderChainKey = 2, senderSigningKey = 3,
 * senderMessageKeys = 4 (repeated, oldest first). Copies st to out without its oldest keys beyond
 * max. */
static int prune_state(wb_cur st, size_t max, wb_buf *out)
{
    pb_field f;
    bool bad = false;
    size_t keys = 0;
    wb_cur scan = st;
    while (pb_next(&scan, &f, &bad))
        if (f.number == 4) keys++;
    if (bad) return WA_ERR_PROTO;
    size_t drop = keys > max ? keys - max : 0;
    while (pb_next(&st, &f, &bad)) {
        if (f.number == 4 && drop) {
            drop--;
            continue;
        }
        wb_buf_append(out, f.raw, f.raw_len);
    }
    return out->failed ? WA_ERR_NOMEM : WA_OK;
}

int wa_senderkey_prune_record(const uint8_t *rec, size_t len, size_t max, wb_buf *out)
{
    wb_cur c;
    wb_cur_init(&c, rec, len);
    pb_field f;
    bool bad = false;
    out->len = 0;
    while (pb_next(&c, &f, &bad)) {
        if (f.number != 1 || !f.is_bytes) {
            wb_buf_append(out, f.raw, f.raw_len);
            continue;
        }
        wb_buf state;
        wb_buf_init(&state);
        int rc = prune_state(f.value, max, &state);
        if (rc == WA_OK) pb_bytes(out, 1, state.data, state.len);
        wb_buf_free(&state);
        if (rc != WA_OK) return rc;
    }
    if (bad) return WA_ERR_PROTO;
    return out->failed ? WA_ERR_NOMEM : WA_OK;
}

/* --- the library's sender-key store --- */

/* The store's keys of a sender key name: the group and "name:device". */
static bool name_keys(const signal_protocol_sender_key_name *n, char *group, char *sender)
{
    if (n->group_id_len >= WA_ADDRESS_MAX || memchr(n->group_id, 0, n->group_id_len)) return false;
    memcpy(group, n->group_id, n->group_id_len);
    group[n->group_id_len] = '\0';
    int w = snprintf(sender, WA_ADDRESS_MAX, "%.*s:%d", (int)n->sender.name_len, n->sender.name,
                     (int)n->sender.device_id);
    return w > 0 && w < WA_ADDRESS_MAX;
}

static int store_sender_key(const signal_protocol_sender_key_name *name, uint8_t *record,
                            size_t len, uint8_t *user_record, size_t user_len, void *user_data)
{
    wa_senderkey *sk = user_data;
    char group[WA_ADDRESS_MAX], sender[WA_ADDRESS_MAX];
    if (!name_keys(name, group, sender)) return SG_ERR_INVAL;
    wb_buf pruned;
    wb_buf_init(&pruned);
    int rc = wa_senderkey_prune_record(record, len, WA_SENDERKEY_MAX_SKIPPED, &pruned);
    if (rc == WA_OK)
        rc = sk->store->sender_key_save(sk->store->ctx, group, sender, pruned.data, pruned.len) ==
                     WA_STORE_OK
                 ? 0
                 : SG_ERR_UNKNOWN;
    else
        rc = rc == WA_ERR_NOMEM ? SG_ERR_NOMEM : SG_ERR_INVALID_PROTO_BUF;
    if (pruned.data) wa_wipe(pruned.data, pruned.len);
    wb_buf_free(&pruned);
    return rc;
}

static int load_sender_key(signal_buffer **record, signal_buffer **user_record,
                           const signal_protocol_sender_key_name *name, void *user_data)
{
    wa_senderkey *sk = user_data;
    char group[WA_ADDRESS_MAX], sender[WA_ADDRESS_MAX];
    if (!name_keys(name, group, sender)) return SG_ERR_INVAL;
    wb_buf b;
    wb_buf_init(&b);
    int rc = sk->store->sender_key_load(sk->store->ctx, group, sender, &b);
    if (rc == WA_STORE_OK) {
        *record = signal_buffer_create(b.data, b.len);
        *user_record = NULL;
        rc = *record ? 1 : SG_ERR_NOMEM;
    } else {
        rc = rc == WA_STORE_NOT_FOUND ? 0 : SG_ERR_UNKNOWN;
    }
    if (b.data) wa_wipe(b.data, b.len);
    wb_buf_free(&b);
    return rc;
}

wa_senderkey *wa_senderkey_new(wa_crypto *crypto, wa_store *store, int *err)
{
    wa_senderkey *sk = calloc(1, sizeof(*sk));
    int rc = sk ? WA_OK : WA_ERR_NOMEM;
    if (sk) {
        sk->crypto = crypto;
        sk->store = store;
        sk->ctx = wa_crypto_signal(crypto);
        if (signal_protocol_store_context_create(&sk->sc, sk->ctx) != 0) rc = WA_ERR_NOMEM;
    }
    if (rc == WA_OK) {
        signal_protocol_sender_key_store ks = {store_sender_key, load_sender_key, NULL, sk};
        if (signal_protocol_store_context_set_sender_key_store(sk->sc, &ks) != 0)
            rc = WA_ERR_CRYPTO;
    }
    if (err) *err = rc;
    if (rc != WA_OK) {
        wa_senderkey_free(sk);
        return NULL;
    }
    return sk;
}

void wa_senderkey_free(wa_senderkey *sk)
{
    if (!sk) return;
    if (sk->sc) signal_protocol_store_context_destroy(sk->sc);
    free(sk);
}

static signal_protocol_sender_key_name key_name(const char *group, const char *name,
                                                uint32_t device)
{
    signal_protocol_sender_key_name n = {
        .group_id = group,
        .group_id_len = strlen(group),
        .sender = {.name = name, .name_len = strlen(name), .device_id = (int32_t)device}};
    return n;
}

static bool valid_name(const char *group, const char *name)
{
    return group && name && *group && *name && strlen(group) < WA_ADDRESS_MAX &&
           strlen(name) < WA_ADDRESS_MAX - 12;
}

int wa_senderkey_create(wa_senderkey *sk, const char *group, const char *name, uint32_t device,
                        wb_buf *skdm)
{
    if (!valid_name(group, name)) return WA_ERR_INVALID;
    signal_protocol_sender_key_name n = key_name(group, name, device);
    group_session_builder *builder = NULL;
    sender_key_distribution_message *msg = NULL;
    int rc = group_session_builder_create(&builder, sk->sc, sk->ctx) == 0 ? WA_OK : WA_ERR_NOMEM;
    if (rc == WA_OK && group_session_builder_create_session(builder, &msg, &n) != 0)
        rc = WA_ERR_CRYPTO;
    if (rc == WA_OK) {
        signal_buffer *ser = ciphertext_message_get_serialized((ciphertext_message *)msg);
        wb_buf_append(skdm, signal_buffer_data(ser), signal_buffer_len(ser));
        if (skdm->failed) rc = WA_ERR_NOMEM;
    }
    if (msg) SIGNAL_UNREF(msg);
    if (builder) group_session_builder_free(builder);
    return rc;
}

bool wa_senderkey_has(wa_senderkey *sk, const char *group, const char *name, uint32_t device)
{
    if (!valid_name(group, name)) return false;
    signal_protocol_sender_key_name n = key_name(group, name, device);
    signal_buffer *rec = NULL, *user = NULL;
    int rc = load_sender_key(&rec, &user, &n, sk);
    signal_buffer_bzero_free(rec);
    return rc == 1;
}

int wa_senderkey_forget(wa_senderkey *sk, const char *group, const char *name, uint32_t device)
{
    if (!valid_name(group, name)) return WA_ERR_INVALID;
    char sender[WA_ADDRESS_MAX];
    snprintf(sender, sizeof(sender), "%s:%u", name, device);
    int rc = sk->store->sender_key_delete(sk->store->ctx, group, sender);
    return rc == WA_STORE_OK || rc == WA_STORE_NOT_FOUND ? WA_OK : WA_ERR_STATE;
}

int wa_senderkey_process(wa_senderkey *sk, const char *group, const char *name, uint32_t device,
                         const uint8_t *skdm, size_t len)
{
    if (!valid_name(group, name)) return WA_ERR_INVALID;
    signal_protocol_sender_key_name n = key_name(group, name, device);
    sender_key_distribution_message *msg = NULL;
    group_session_builder *builder = NULL;
    if (!skdm || len < 2 || sender_key_distribution_message_deserialize(&msg, skdm, len, sk->ctx))
        return WA_ERR_PROTO;
    int rc = group_session_builder_create(&builder, sk->sc, sk->ctx) == 0 ? WA_OK : WA_ERR_NOMEM;
    if (rc == WA_OK && group_session_builder_process_session(builder, &n, msg) != 0)
        rc = WA_ERR_CRYPTO;
    if (builder) group_session_builder_free(builder);
    SIGNAL_UNREF(msg);
    return rc;
}

int wa_senderkey_encrypt(wa_senderkey *sk, const char *group, const char *name, uint32_t device,
                         const uint8_t *plaintext, size_t len, wb_buf *out)
{
    if (!valid_name(group, name)) return WA_ERR_INVALID;
    if (!wa_senderkey_has(sk, group, name, device)) return WA_ERR_STATE;
    signal_protocol_sender_key_name n = key_name(group, name, device);
    wb_buf padded;
    wb_buf_init(&padded);
    int rc = wa_signal_pad(sk->crypto, plaintext, len, &padded);
    group_cipher *cipher = NULL;
    ciphertext_message *msg = NULL;
    if (rc == WA_OK && group_cipher_create(&cipher, sk->sc, &n, sk->ctx) != 0) rc = WA_ERR_NOMEM;
    if (rc == WA_OK) {
        int sg = group_cipher_encrypt(cipher, padded.data, padded.len, &msg);
        rc = sg == 0                   ? WA_OK
             : sg == SG_ERR_NO_SESSION ? WA_ERR_STATE
             : sg == SG_ERR_NOMEM      ? WA_ERR_NOMEM
                                       : WA_ERR_CRYPTO;
    }
    if (rc == WA_OK) {
        signal_buffer *ser = ciphertext_message_get_serialized(msg);
        wb_buf_append(out, signal_buffer_data(ser), signal_buffer_len(ser));
        if (out->failed) rc = WA_ERR_NOMEM;
    }
    if (msg) SIGNAL_UNREF(msg);
    if (cipher) group_cipher_free(cipher);
    if (padded.data) wa_wipe(padded.data, padded.len);
    wb_buf_free(&padded);
    return rc;
}

int wa_senderkey_decrypt(wa_senderkey *sk, const char *group, const char *name, uint32_t device,
                         const uint8_t *ciphertext, size_t len, wb_buf *plain)
{
    if (!valid_name(group, name)) return WA_ERR_INVALID;
    signal_protocol_sender_key_name n = key_name(group, name, device);
    sender_key_message *msg = NULL;
    if (!ciphertext || len < 2 || sender_key_message_deserialize(&msg, ciphertext, len, sk->ctx))
        return WA_ERR_PROTO;
    group_cipher *cipher = NULL;
    signal_buffer *out = NULL;
    int rc = group_cipher_create(&cipher, sk->sc, &n, sk->ctx) == 0 ? WA_OK : WA_ERR_NOMEM;
    if (rc == WA_OK) {
        int sg = group_cipher_decrypt(cipher, msg, NULL, &out);
        switch (sg) {
        case 0: break;
        case SG_ERR_DUPLICATE_MESSAGE: rc = WA_ERR_STATE; break;
        case SG_ERR_NOMEM: rc = WA_ERR_NOMEM; break;
        case SG_ERR_NO_SESSION:      /* no record for this sender */
        case SG_ERR_INVALID_MESSAGE: /* unknown key id, bad signature, too far ahead */
        case SG_ERR_INVALID_KEY:     /* the signing key does not decode */
        case SG_ERR_INVALID_KEY_ID:  /* (mapped by the library, kept for safety) */
        case SG_ERR_UNKNOWN: rc = WA_ERR_AUTH; break; /* the provider: bad CBC padding */
        default: rc = WA_ERR_CRYPTO;
        }
    }
    if (cipher) group_cipher_free(cipher);
    SIGNAL_UNREF(msg);
    if (rc != WA_OK) {
        signal_buffer_bzero_free(out);
        return rc;
    }
    long keep = wa_signal_unpadded_len(signal_buffer_data(out), signal_buffer_len(out));
    plain->len = 0;
    if (keep >= 0) wb_buf_append(plain, signal_buffer_data(out), (size_t)keep);
    signal_buffer_bzero_free(out);
    if (keep < 0) return WA_ERR_BAD_PACKED;
    return plain->failed ? WA_ERR_NOMEM : WA_OK;
}

/* --- Message.senderKeyDistributionMessage --- */

int wa_senderkey_message(const char *group, const uint8_t *skdm, size_t len, wb_buf *out)
{
    wb_buf inner;
    wb_buf_init(&inner);
    pb_bytes(&inner, 1, group, strlen(group));
    pb_bytes(&inner, 2, skdm, len);
    pb_bytes(out, 2, inner.data, inner.len);
    int rc = inner.failed || out->failed ? WA_ERR_NOMEM : WA_OK;
    wb_buf_free(&inner);
    return rc;
}

/* The last length-delimited field `number` of m (protobuf: the last one wins), or not found. */
static int find_bytes(wb_cur m, uint32_t number, wb_cur *out)
{
    pb_field f;
    bool bad = false, found = false;
    while (pb_next(&m, &f, &bad)) {
        if (f.number == number && f.is_bytes) {
            *out = f.value;
            found = true;
        }
    }
    if (bad) return WA_ERR_PROTO;
    return found ? WA_OK : WA_ERR_UNSUPPORTED;
}

int wa_senderkey_find(const uint8_t *p, size_t len, const uint8_t **group, size_t *group_len,
                      const uint8_t **skdm, size_t *skdm_len)
{
    wb_cur msg, dsm, inner, skd, g, a;
    wb_cur_init(&msg, p, len);
    int rc = find_bytes(msg, 31, &dsm); /* deviceSentMessage: look at its message (2) */
    if (rc == WA_ERR_PROTO) return rc;
    if (rc == WA_OK) {
        rc = find_bytes(dsm, 2, &inner);
        if (rc != WA_OK) return rc;
        msg = inner;
    }
    rc = find_bytes(msg, 2, &skd);
    if (rc != WA_OK) return rc;
    rc = find_bytes(skd, 2, &a);
    if (rc != WA_OK) return rc;
    if (find_bytes(skd, 1, &g) != WA_OK) wb_cur_init(&g, NULL, 0);
    if (group) {
        *group = g.data;
        *group_len = g.len;
    }
    *skdm = a.data;
    *skdm_len = a.len;
    return WA_OK;
}
