/*
 * wa/store_mem.c - wa/store.h in memory: one flat list of (kind, key) -> value records.
 *
 * Simplicity over speed: records live in one array searched linearly, keys are the fields of a
 * lookup each written as a 4-byte length and its bytes, values are the bytes to hand back. A
 * transaction is a deep copy of the array taken at begin and put back by rollback.
 */
#include "wa/store_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum rec_kind {
    K_DEVICE = 1,
    K_IDENTITY,
    K_SESSION,
    K_PREKEY,
    K_SENDER_KEY,
    K_AS_KEY,
    K_AS_VERSION,
    K_AS_MAC,
    K_CONTACT,
    K_CHAT,
    K_LID_BY_LID,
    K_LID_BY_PN,
    K_SECRET,
    K_EVENT,
    K_SENT,
};

typedef struct rec {
    int kind;      /* enum rec_kind */
    uint8_t *key;  /* malloc'd: the lookup fields, each as u32be length + bytes */
    size_t klen;   /* bytes in key */
    uint8_t *val;  /* malloc'd value (may be NULL when vlen is 0) */
    size_t vlen;   /* bytes in val */
    int64_t order; /* sort key for listings (ids, timestamps) */
    uint64_t seq;  /* insertion sequence, breaks ties in order */
} rec;

typedef struct rec_list {
    rec *v;     /* records */
    size_t n;   /* used */
    size_t cap; /* allocated */
} rec_list;

typedef struct mem_store {
    rec_list recs;     /* the data */
    rec_list snapshot; /* copy taken by begin */
    bool in_tx;        /* between begin and commit/rollback */
    uint64_t epoch;    /* rollbacks and failed commits (epoch()) */
    bool tx_failed;    /* an injected failure hit the open transaction: commit must fail */
    uint64_t seq;      /* next insertion sequence number */
    int fail_after;    /* > 0: countdown to an injected failure */
    char err[160];     /* last error */
} mem_store;

/* ---- records ---- */

static void list_free(rec_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].val);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static bool list_copy(rec_list *dst, const rec_list *src)
{
    memset(dst, 0, sizeof(*dst));
    if (src->n == 0) return true;
    dst->v = calloc(src->n, sizeof(rec));
    if (!dst->v) return false;
    dst->cap = src->n;
    for (size_t i = 0; i < src->n; i++) {
        rec r = src->v[i];
        r.key = malloc(r.klen ? r.klen : 1);
        r.val = malloc(r.vlen ? r.vlen : 1);
        if (!r.key || !r.val) {
            free(r.key);
            free(r.val);
            list_free(dst);
            return false;
        }
        if (r.klen) memcpy(r.key, src->v[i].key, r.klen);
        if (r.vlen) memcpy(r.val, src->v[i].val, r.vlen);
        dst->v[dst->n++] = r;
    }
    return true;
}

static rec *find(mem_store *s, int kind, const wb_buf *key)
{
    for (size_t i = 0; i < s->recs.n; i++) {
        rec *r = &s->recs.v[i];
        if (r->kind == kind && r->klen == key->len &&
            (key->len == 0 || memcmp(r->key, key->data, key->len) == 0))
            return r;
    }
    return NULL;
}

static void remove_at(mem_store *s, size_t i)
{
    free(s->recs.v[i].key);
    free(s->recs.v[i].val);
    s->recs.v[i] = s->recs.v[--s->recs.n];
}

static bool del(mem_store *s, int kind, const wb_buf *key)
{
    rec *r = find(s, kind, key);
    if (!r) return false;
    remove_at(s, (size_t)(r - s->recs.v));
    return true;
}

/* Inserts or replaces; the value bytes are copied. */
static int put(mem_store *s, int kind, const wb_buf *key, const void *val, size_t vlen,
               int64_t order)
{
    if (key->failed) return WA_STORE_ERR_NOMEM;
    uint8_t *v = malloc(vlen ? vlen : 1);
    if (!v) return WA_STORE_ERR_NOMEM;
    if (vlen) memcpy(v, val, vlen);
    rec *r = find(s, kind, key);
    if (r) {
        free(r->val);
        r->val = v;
        r->vlen = vlen;
        r->order = order;
        return WA_STORE_OK;
    }
    if (s->recs.n == s->recs.cap) {
        size_t cap = s->recs.cap ? s->recs.cap * 2 : 64;
        rec *nv = realloc(s->recs.v, cap * sizeof(rec));
        if (!nv) {
            free(v);
            return WA_STORE_ERR_NOMEM;
        }
        s->recs.v = nv;
        s->recs.cap = cap;
    }
    uint8_t *k = malloc(key->len ? key->len : 1);
    if (!k) {
        free(v);
        return WA_STORE_ERR_NOMEM;
    }
    if (key->len) memcpy(k, key->data, key->len);
    s->recs.v[s->recs.n++] = (rec){kind, k, key->len, v, vlen, order, s->seq++};
    return WA_STORE_OK;
}

/* Key building: each field as u32be length + bytes. */
static void kf_bytes(wb_buf *b, const void *p, size_t n)
{
    wb_buf_u32be(b, (uint32_t)n);
    wb_buf_append(b, p, n);
}

static void kf_str(wb_buf *b, const char *s)
{
    kf_bytes(b, s, strlen(s));
}

static void kf_u64(wb_buf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (56 - 8 * i));
    kf_bytes(b, x, 8);
}

/* Value reading helpers over a cursor. */
static bool vr_bytes(wb_cur *c, const uint8_t **p, size_t *n)
{
    uint32_t len;
    if (!wb_cur_u32be(c, &len)) return false;
    *n = len;
    return wb_cur_bytes(c, len, p);
}

static bool vr_i64(wb_cur *c, int64_t *v)
{
    uint32_t hi, lo;
    if (!wb_cur_u32be(c, &hi) || !wb_cur_u32be(c, &lo)) return false;
    *v = (int64_t)(((uint64_t)hi << 32) | lo);
    return true;
}

static void vw_i64(wb_buf *b, int64_t v)
{
    wb_buf_u32be(b, (uint32_t)((uint64_t)v >> 32));
    wb_buf_u32be(b, (uint32_t)v);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Every operation starts here: the injected failure, and clearing the last error. */
static int enter(mem_store *s)
{
    if (s->in_tx && s->tx_failed) {
        snprintf(s->err, sizeof(s->err), "the transaction failed earlier; roll it back");
        return WA_STORE_ERR_IO;
    }
    if (s->fail_after > 0 && --s->fail_after == 0) {
        snprintf(s->err, sizeof(s->err), "injected failure (wa_store_mem_fail_after)");
        if (s->in_tx) s->tx_failed = true;
        return WA_STORE_ERR_IO;
    }
    s->err[0] = '\0';
    return WA_STORE_OK;
}

static int bad(mem_store *s, const char *what)
{
    snprintf(s->err, sizeof(s->err), "invalid argument: %s", what);
    return WA_STORE_ERR_INVALID;
}

#define ENTER(s)                                                                                   \
    do {                                                                                           \
        int enter_rc_ = enter(s);                                                                  \
        if (enter_rc_) return enter_rc_;                                                           \
    } while (0)

/* Finishes an operation that built a key: frees it, passes rc through. */
static int finish(wb_buf *key, int rc)
{
    wb_buf_free(key);
    return rc;
}

/* ---- generic shapes ---- */

static int put_key(mem_store *s, int kind, wb_buf *key, const void *v, size_t n, int64_t order)
{
    return finish(key, put(s, kind, key, v, n, order));
}

static int get_key(mem_store *s, int kind, wb_buf *key, void *out, size_t n, wb_buf *out_buf)
{
    rec *r = find(s, kind, key);
    wb_buf_free(key);
    if (!r) return WA_STORE_NOT_FOUND;
    if (out) {
        if (r->vlen != n) return bad(s, "stored value has another size");
        memcpy(out, r->val, n);
    }
    if (out_buf && !wb_buf_append(out_buf, r->val, r->vlen)) return WA_STORE_ERR_NOMEM;
    return WA_STORE_OK;
}

static int del_key(mem_store *s, int kind, wb_buf *key)
{
    del(s, kind, key);
    return finish(key, WA_STORE_OK);
}

/* ---- lifecycle and transactions ---- */

static void m_destroy(void *ctx)
{
    mem_store *s = ctx;
    list_free(&s->recs);
    list_free(&s->snapshot);
    free(s);
}

static const char *m_last_error(void *ctx)
{
    return ((mem_store *)ctx)->err;
}

static int m_begin(void *ctx)
{
    mem_store *s = ctx;
    ENTER(s);
    if (s->in_tx) {
        snprintf(s->err, sizeof(s->err), "begin: a transaction is already open");
        return WA_STORE_ERR_STATE;
    }
    if (!list_copy(&s->snapshot, &s->recs)) return WA_STORE_ERR_NOMEM;
    s->in_tx = true;
    return WA_STORE_OK;
}

static int m_commit(void *ctx)
{
    mem_store *s = ctx;
    if (!s->in_tx) {
        snprintf(s->err, sizeof(s->err), "commit: no transaction is open");
        return WA_STORE_ERR_STATE;
    }
    int rc = enter(s);
    if (rc) {
        /* a failed commit writes nothing, like a database that went away */
        s->epoch++;
        list_free(&s->recs);
        s->recs = s->snapshot;
        memset(&s->snapshot, 0, sizeof(s->snapshot));
        s->in_tx = false;
        s->tx_failed = false;
        return rc;
    }
    list_free(&s->snapshot);
    s->in_tx = false;
    return WA_STORE_OK;
}

static uint64_t m_epoch(void *ctx)
{
    return ((const mem_store *)ctx)->epoch;
}

static int m_rollback(void *ctx)
{
    mem_store *s = ctx;
    s->err[0] = '\0';
    if (!s->in_tx) return WA_STORE_OK;
    s->epoch++;
    list_free(&s->recs);
    s->recs = s->snapshot;
    memset(&s->snapshot, 0, sizeof(s->snapshot));
    s->in_tx = false;
    s->tx_failed = false;
    return WA_STORE_OK;
}

static int m_wipe(void *ctx)
{
    mem_store *s = ctx;
    ENTER(s);
    while (s->recs.n > 0)
        remove_at(s, s->recs.n - 1);
    return WA_STORE_OK;
}

/* ---- device ---- */

static int m_device_load(void *ctx, wa_device *out)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    wb_buf_init(&k);
    return get_key(s, K_DEVICE, &k, out, sizeof(*out), NULL);
}

static int m_device_save(void *ctx, const wa_device *d)
{
    mem_store *s = ctx;
    ENTER(s);
    if (d->adv_details_len > WA_ADV_MAX) return bad(s, "adv_details_len");
    wa_device copy = *d;
    if (!copy.paired) {
        /* like the database: unpaired devices keep no account signatures */
        memset(copy.adv_account_sig_key, 0, sizeof(copy.adv_account_sig_key));
        memset(copy.adv_account_sig, 0, sizeof(copy.adv_account_sig));
        memset(copy.adv_device_sig, 0, sizeof(copy.adv_device_sig));
    }
    wb_buf k;
    wb_buf_init(&k);
    return put_key(s, K_DEVICE, &k, &copy, sizeof(copy), 0);
}

static int m_device_delete(void *ctx)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    wb_buf_init(&k);
    return del_key(s, K_DEVICE, &k);
}

static int m_signed_prekey_load(void *ctx, uint32_t id, wa_keypair *out, uint8_t sig[WA_SIG_LEN])
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    wb_buf_init(&k);
    rec *r = find(s, K_DEVICE, &k);
    wb_buf_free(&k);
    if (!r) return WA_STORE_NOT_FOUND;
    const wa_device *d = (const wa_device *)(const void *)r->val;
    if (d->signed_prekey_id != id) return WA_STORE_NOT_FOUND;
    *out = d->signed_prekey;
    memcpy(sig, d->signed_prekey_sig, WA_SIG_LEN);
    return WA_STORE_OK;
}

/* ---- identities and sessions ---- */

static int key1(mem_store *s, wb_buf *k, const char *a)
{
    wb_buf_init(k);
    if (!a) return bad(s, "NULL key");
    kf_str(k, a);
    return WA_STORE_OK;
}

static int key2(mem_store *s, wb_buf *k, const char *a, const char *b)
{
    wb_buf_init(k);
    if (!a || !b) return bad(s, "NULL key");
    kf_str(k, a);
    kf_str(k, b);
    return WA_STORE_OK;
}

static int key3(mem_store *s, wb_buf *k, const char *a, const char *b, const char *c)
{
    wb_buf_init(k);
    if (!a || !b || !c) return bad(s, "NULL key");
    kf_str(k, a);
    kf_str(k, b);
    kf_str(k, c);
    return WA_STORE_OK;
}

#define KEY(call)                                                                                  \
    do {                                                                                           \
        int key_rc_ = (call);                                                                      \
        if (key_rc_) return key_rc_;                                                               \
    } while (0)

static int m_identity_load(void *ctx, const char *address, uint8_t key[WA_KEY_LEN])
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, address));
    return get_key(s, K_IDENTITY, &k, key, WA_KEY_LEN, NULL);
}

static int m_identity_save(void *ctx, const char *address, const uint8_t key[WA_KEY_LEN])
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, address));
    return put_key(s, K_IDENTITY, &k, key, WA_KEY_LEN, 0);
}

static int m_identity_delete(void *ctx, const char *address)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, address));
    return del_key(s, K_IDENTITY, &k);
}

static int m_session_load(void *ctx, const char *address, wb_buf *record)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, address));
    return get_key(s, K_SESSION, &k, NULL, 0, record);
}

static int m_session_save(void *ctx, const char *address, const uint8_t *rec_, size_t len)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!rec_ && len) return bad(s, "record");
    wb_buf k;
    KEY(key1(s, &k, address));
    return put_key(s, K_SESSION, &k, rec_, len, 0);
}

static int m_session_delete(void *ctx, const char *address)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, address));
    return del_key(s, K_SESSION, &k);
}

/* Deletes the records of kind whose address key starts with prefix. */
static int delete_prefix(mem_store *s, int kind, const char *prefix, size_t *deleted)
{
    if (!prefix || !*prefix) return bad(s, "prefix");
    size_t plen = strlen(prefix), count = 0;
    for (size_t i = 0; i < s->recs.n;) {
        rec *r = &s->recs.v[i];
        /* key: u32be length + address */
        if (r->kind == kind && r->klen >= 4 + plen && memcmp(r->key + 4, prefix, plen) == 0) {
            remove_at(s, i);
            count++;
        } else {
            i++;
        }
    }
    if (deleted) *deleted = count;
    return WA_STORE_OK;
}

static int m_session_delete_prefix(void *ctx, const char *prefix, size_t *deleted)
{
    mem_store *s = ctx;
    ENTER(s);
    return delete_prefix(s, K_SESSION, prefix, deleted);
}

static int m_identity_delete_prefix(void *ctx, const char *prefix, size_t *deleted)
{
    mem_store *s = ctx;
    ENTER(s);
    return delete_prefix(s, K_IDENTITY, prefix, deleted);
}

/* ---- prekeys ---- */

static void prekey_key(wb_buf *k, uint32_t id)
{
    wb_buf_init(k);
    kf_u64(k, id);
}

static int m_prekey_load(void *ctx, uint32_t id, wa_prekey *out)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    prekey_key(&k, id);
    return get_key(s, K_PREKEY, &k, out, sizeof(*out), NULL);
}

static int m_prekeys_save(void *ctx, const wa_prekey *keys, size_t n)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!keys && n) return bad(s, "keys");
    for (size_t i = 0; i < n; i++) {
        wb_buf k;
        prekey_key(&k, keys[i].id);
        int rc = put_key(s, K_PREKEY, &k, &keys[i], sizeof(keys[i]), keys[i].id);
        if (rc) return rc;
    }
    return WA_STORE_OK;
}

static int m_prekey_delete(void *ctx, uint32_t id)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    prekey_key(&k, id);
    return del_key(s, K_PREKEY, &k);
}

static int m_prekeys_unuploaded(void *ctx, wa_prekey *out, size_t max, size_t *n)
{
    mem_store *s = ctx;
    *n = 0;
    ENTER(s);
    /* repeated selection of the lowest id above the last one taken: fine for test sizes */
    int64_t last = -1;
    while (*n < max) {
        const rec *best = NULL;
        for (size_t i = 0; i < s->recs.n; i++) {
            const rec *r = &s->recs.v[i];
            const wa_prekey *pk = (const wa_prekey *)(const void *)r->val;
            if (r->kind != K_PREKEY || pk->uploaded || r->order <= last) continue;
            if (!best || r->order < best->order) best = r;
        }
        if (!best) break;
        memcpy(&out[(*n)++], best->val, sizeof(wa_prekey));
        last = best->order;
    }
    return WA_STORE_OK;
}

static int m_prekeys_mark_uploaded(void *ctx, uint32_t up_to_id)
{
    mem_store *s = ctx;
    ENTER(s);
    for (size_t i = 0; i < s->recs.n; i++) {
        rec *r = &s->recs.v[i];
        if (r->kind == K_PREKEY && r->order <= (int64_t)up_to_id)
            ((wa_prekey *)(void *)r->val)->uploaded = true;
    }
    return WA_STORE_OK;
}

static int m_prekeys_count_uploaded(void *ctx, size_t *n)
{
    mem_store *s = ctx;
    *n = 0;
    ENTER(s);
    for (size_t i = 0; i < s->recs.n; i++) {
        const rec *r = &s->recs.v[i];
        if (r->kind == K_PREKEY && ((const wa_prekey *)(const void *)r->val)->uploaded) (*n)++;
    }
    return WA_STORE_OK;
}

/* ---- sender keys ---- */

static int m_sender_key_load(void *ctx, const char *group, const char *sender, wb_buf *record)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key2(s, &k, group, sender));
    return get_key(s, K_SENDER_KEY, &k, NULL, 0, record);
}

static int m_sender_key_save(void *ctx, const char *group, const char *sender, const uint8_t *r,
                             size_t len)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!r && len) return bad(s, "record");
    wb_buf k;
    KEY(key2(s, &k, group, sender));
    return put_key(s, K_SENDER_KEY, &k, r, len, 0);
}

static int m_sender_key_delete(void *ctx, const char *group, const char *sender)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key2(s, &k, group, sender));
    return del_key(s, K_SENDER_KEY, &k);
}

/* ---- app state ---- */

static int m_askey_save(void *ctx, const uint8_t *key_id, size_t key_id_len,
                        const uint8_t *key_data, size_t key_data_len, const uint8_t *fp,
                        size_t fp_len, int64_t ts)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!key_id || !key_id_len || (!key_data && key_data_len) || (!fp && fp_len))
        return bad(s, "app-state key");
    wb_buf k, v;
    wb_buf_init(&k);
    wb_buf_init(&v);
    kf_bytes(&k, key_id, key_id_len);
    kf_bytes(&v, key_data, key_data_len);
    kf_bytes(&v, fp, fp_len);
    vw_i64(&v, ts);
    int rc = v.failed ? WA_STORE_ERR_NOMEM : put(s, K_AS_KEY, &k, v.data, v.len, ts);
    wb_buf_free(&v);
    return finish(&k, rc);
}

static int m_askey_load(void *ctx, const uint8_t *key_id, size_t key_id_len, wb_buf *key_data,
                        wb_buf *fp, int64_t *ts)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!key_id || !key_id_len) return bad(s, "key id");
    wb_buf k;
    wb_buf_init(&k);
    kf_bytes(&k, key_id, key_id_len);
    rec *r = find(s, K_AS_KEY, &k);
    wb_buf_free(&k);
    if (!r) return WA_STORE_NOT_FOUND;
    wb_cur c;
    wb_cur_init(&c, r->val, r->vlen);
    const uint8_t *kd, *f;
    size_t kdn, fn;
    int64_t t;
    if (!vr_bytes(&c, &kd, &kdn) || !vr_bytes(&c, &f, &fn) || !vr_i64(&c, &t))
        return bad(s, "corrupt record");
    if (key_data && !wb_buf_append(key_data, kd, kdn)) return WA_STORE_ERR_NOMEM;
    if (fp && !wb_buf_append(fp, f, fn)) return WA_STORE_ERR_NOMEM;
    if (ts) *ts = t;
    return WA_STORE_OK;
}

static int m_askey_latest(void *ctx, wb_buf *key_id)
{
    mem_store *s = ctx;
    ENTER(s);
    const rec *best = NULL;
    for (size_t i = 0; i < s->recs.n; i++) {
        const rec *r = &s->recs.v[i];
        if (r->kind != K_AS_KEY) continue;
        if (!best || r->order > best->order) best = r;
    }
    if (!best) return WA_STORE_NOT_FOUND;
    /* key: u32be length + key id */
    if (key_id && !wb_buf_append(key_id, best->key + 4, best->klen - 4)) return WA_STORE_ERR_NOMEM;
    return WA_STORE_OK;
}

static int m_askey_delete(void *ctx, const uint8_t *key_id, size_t key_id_len)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!key_id || !key_id_len) return bad(s, "key id");
    wb_buf k;
    wb_buf_init(&k);
    kf_bytes(&k, key_id, key_id_len);
    return del_key(s, K_AS_KEY, &k);
}

typedef struct as_version {
    uint64_t version;            /* collection version */
    uint8_t hash[WA_LTHASH_LEN]; /* its LTHash */
} as_version;

static int m_asver_load(void *ctx, const char *name, uint64_t *version, uint8_t hash[WA_LTHASH_LEN])
{
    mem_store *s = ctx;
    *version = 0;
    memset(hash, 0, WA_LTHASH_LEN);
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, name));
    as_version v;
    int rc = get_key(s, K_AS_VERSION, &k, &v, sizeof(v), NULL);
    if (rc) return rc;
    *version = v.version;
    memcpy(hash, v.hash, WA_LTHASH_LEN);
    return WA_STORE_OK;
}

static int m_asver_save(void *ctx, const char *name, uint64_t version,
                        const uint8_t hash[WA_LTHASH_LEN])
{
    mem_store *s = ctx;
    ENTER(s);
    if (version > INT64_MAX) return bad(s, "version");
    wb_buf k;
    KEY(key1(s, &k, name));
    as_version v;
    v.version = version;
    memcpy(v.hash, hash, WA_LTHASH_LEN);
    return put_key(s, K_AS_VERSION, &k, &v, sizeof(v), 0);
}

static int m_asver_delete(void *ctx, const char *name)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, name));
    del(s, K_AS_VERSION, &k);
    /* and every MAC of the collection: their key starts with the same field */
    for (size_t i = 0; i < s->recs.n;) {
        rec *r = &s->recs.v[i];
        if (r->kind == K_AS_MAC && r->klen > k.len && memcmp(r->key, k.data, k.len) == 0)
            remove_at(s, i);
        else
            i++;
    }
    return finish(&k, WA_STORE_OK);
}

static void mac_key(wb_buf *k, const char *name, const uint8_t index_mac[WA_KEY_LEN])
{
    wb_buf_init(k);
    kf_str(k, name);
    kf_bytes(k, index_mac, WA_KEY_LEN);
}

static int m_asmacs_save(void *ctx, const char *name, uint64_t version, const wa_appstate_mac *macs,
                         size_t n)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!name || (!macs && n) || version > INT64_MAX) return bad(s, "name/macs");
    for (size_t i = 0; i < n; i++) {
        wb_buf k;
        mac_key(&k, name, macs[i].index_mac);
        int rc = put_key(s, K_AS_MAC, &k, macs[i].value_mac, WA_KEY_LEN, (int64_t)version);
        if (rc) return rc;
    }
    return WA_STORE_OK;
}

static int m_asmacs_delete(void *ctx, const char *name, const uint8_t (*index_macs)[WA_KEY_LEN],
                           size_t n)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!name || (!index_macs && n)) return bad(s, "name/index_macs");
    for (size_t i = 0; i < n; i++) {
        wb_buf k;
        mac_key(&k, name, index_macs[i]);
        del_key(s, K_AS_MAC, &k);
    }
    return WA_STORE_OK;
}

static int m_asmac_load(void *ctx, const char *name, const uint8_t index_mac[WA_KEY_LEN],
                        uint8_t value_mac[WA_KEY_LEN])
{
    mem_store *s = ctx;
    ENTER(s);
    if (!name) return bad(s, "name");
    wb_buf k;
    mac_key(&k, name, index_mac);
    return get_key(s, K_AS_MAC, &k, value_mac, WA_KEY_LEN, NULL);
}

/* ---- contacts and chats ---- */

static int m_contact_load(void *ctx, const char *jid, wa_contact *out)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, jid));
    return get_key(s, K_CONTACT, &k, out, sizeof(*out), NULL);
}

static int m_contact_save(void *ctx, const wa_contact *c)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, c->jid));
    return put_key(s, K_CONTACT, &k, c, sizeof(*c), 0);
}

static int m_contact_delete(void *ctx, const char *jid)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, jid));
    return del_key(s, K_CONTACT, &k);
}

static int m_chat_load(void *ctx, const char *chat_jid, wa_chat_settings *out)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, chat_jid));
    return get_key(s, K_CHAT, &k, out, sizeof(*out), NULL);
}

static int m_chat_save(void *ctx, const wa_chat_settings *c)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, c->chat_jid));
    return put_key(s, K_CHAT, &k, c, sizeof(*c), 0);
}

static int m_chat_delete(void *ctx, const char *chat_jid)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key1(s, &k, chat_jid));
    return del_key(s, K_CHAT, &k);
}

/* ---- LID map: two records, one per direction ---- */

static int lookup_text(mem_store *s, int kind, const char *key, char out[WA_ADDRESS_MAX])
{
    wb_buf k;
    KEY(key1(s, &k, key));
    rec *r = find(s, kind, &k);
    wb_buf_free(&k);
    if (!r) return WA_STORE_NOT_FOUND;
    if (r->vlen >= WA_ADDRESS_MAX) return bad(s, "stored value too long");
    memcpy(out, r->val, r->vlen);
    out[r->vlen] = '\0';
    return WA_STORE_OK;
}

static void unlink_pair(mem_store *s, int kind, const char *key, int other_kind)
{
    char other[WA_ADDRESS_MAX];
    if (lookup_text(s, kind, key, other) != WA_STORE_OK) return;
    wb_buf k;
    if (key1(s, &k, key) == WA_STORE_OK) del(s, kind, &k);
    wb_buf_free(&k);
    if (key1(s, &k, other) == WA_STORE_OK) del(s, other_kind, &k);
    wb_buf_free(&k);
}

static int m_lid_map_save(void *ctx, const char *lid, const char *pn)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!lid || !pn || strlen(lid) >= WA_ADDRESS_MAX || strlen(pn) >= WA_ADDRESS_MAX)
        return bad(s, "lid/pn");
    unlink_pair(s, K_LID_BY_LID, lid, K_LID_BY_PN);
    unlink_pair(s, K_LID_BY_PN, pn, K_LID_BY_LID);
    wb_buf k;
    KEY(key1(s, &k, lid));
    int rc = put_key(s, K_LID_BY_LID, &k, pn, strlen(pn), 0);
    if (rc) return rc;
    KEY(key1(s, &k, pn));
    return put_key(s, K_LID_BY_PN, &k, lid, strlen(lid), 0);
}

static int m_lid_for_pn(void *ctx, const char *pn, char lid[WA_ADDRESS_MAX])
{
    mem_store *s = ctx;
    ENTER(s);
    return lookup_text(s, K_LID_BY_PN, pn, lid);
}

static int m_pn_for_lid(void *ctx, const char *lid, char pn[WA_ADDRESS_MAX])
{
    mem_store *s = ctx;
    ENTER(s);
    return lookup_text(s, K_LID_BY_LID, lid, pn);
}

static int m_lid_map_delete(void *ctx, const char *lid)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!lid) return bad(s, "lid");
    unlink_pair(s, K_LID_BY_LID, lid, K_LID_BY_PN);
    return WA_STORE_OK;
}

/* ---- message secrets ---- */

static int m_secret_save(void *ctx, const char *chat, const char *sender, const char *id,
                         const uint8_t secret[WA_KEY_LEN])
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key3(s, &k, chat, sender, id));
    return put_key(s, K_SECRET, &k, secret, WA_KEY_LEN, 0);
}

static int m_secret_load(void *ctx, const char *chat, const char *sender, const char *id,
                         uint8_t secret[WA_KEY_LEN])
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key3(s, &k, chat, sender, id));
    return get_key(s, K_SECRET, &k, secret, WA_KEY_LEN, NULL);
}

static int m_secret_delete(void *ctx, const char *chat, const char *sender, const char *id)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key3(s, &k, chat, sender, id));
    return del_key(s, K_SECRET, &k);
}

/* ---- event buffer: value = chat, sender, id, plaintext (length-prefixed), server ts ---- */

static int m_evbuf_save(void *ctx, const wa_buffered_event *ev)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!ev->chat_jid || !ev->sender_jid || !ev->message_id ||
        (!ev->plaintext && ev->plaintext_len))
        return bad(s, "event");
    wb_buf k, v;
    wb_buf_init(&k);
    wb_buf_init(&v);
    kf_bytes(&k, ev->ciphertext_hash, WA_KEY_LEN);
    kf_str(&v, ev->chat_jid);
    kf_str(&v, ev->sender_jid);
    kf_str(&v, ev->message_id);
    kf_bytes(&v, ev->plaintext, ev->plaintext_len);
    vw_i64(&v, ev->server_ts_ms);
    int rc = v.failed ? WA_STORE_ERR_NOMEM : put(s, K_EVENT, &k, v.data, v.len, now_ms());
    wb_buf_free(&v);
    return finish(&k, rc);
}

/* Decodes an event record; strings are copied into the caller's arrays. */
static bool decode_event(const rec *r, wa_buffered_event *ev, char *chat, char *sender, char *id)
{
    wb_cur c;
    wb_cur_init(&c, r->val, r->vlen);
    const uint8_t *p[3];
    size_t n[3];
    char *dst[3] = {chat, sender, id};
    for (int i = 0; i < 3; i++) {
        if (!vr_bytes(&c, &p[i], &n[i]) || n[i] >= WA_ADDRESS_MAX) return false;
        memcpy(dst[i], p[i], n[i]);
        dst[i][n[i]] = '\0';
    }
    if (!vr_bytes(&c, &ev->plaintext, &ev->plaintext_len) || !vr_i64(&c, &ev->server_ts_ms))
        return false;
    memcpy(ev->ciphertext_hash, r->key + 4, WA_KEY_LEN);
    ev->chat_jid = chat;
    ev->sender_jid = sender;
    ev->message_id = id;
    ev->inserted_ms = r->order;
    return true;
}

static int m_evbuf_load(void *ctx, const uint8_t hash[WA_KEY_LEN], wb_buf *plaintext,
                        int64_t *server_ts_ms)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    wb_buf_init(&k);
    kf_bytes(&k, hash, WA_KEY_LEN);
    rec *r = find(s, K_EVENT, &k);
    wb_buf_free(&k);
    if (!r) return WA_STORE_NOT_FOUND;
    wa_buffered_event ev;
    char chat[WA_ADDRESS_MAX], sender[WA_ADDRESS_MAX], id[WA_ADDRESS_MAX];
    if (!decode_event(r, &ev, chat, sender, id)) return bad(s, "corrupt record");
    if (plaintext && !wb_buf_append(plaintext, ev.plaintext, ev.plaintext_len))
        return WA_STORE_ERR_NOMEM;
    if (server_ts_ms) *server_ts_ms = ev.server_ts_ms;
    return WA_STORE_OK;
}

static int m_evbuf_delete(void *ctx, const uint8_t hash[WA_KEY_LEN])
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    wb_buf_init(&k);
    kf_bytes(&k, hash, WA_KEY_LEN);
    return del_key(s, K_EVENT, &k);
}

static int cmp_rec_order(const void *a, const void *b)
{
    const rec *x = *(const rec *const *)a, *y = *(const rec *const *)b;
    if (x->order != y->order) return x->order < y->order ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int m_evbuf_foreach(void *ctx, wa_store_event_fn fn, void *arg)
{
    mem_store *s = ctx;
    ENTER(s);
    size_t n = 0;
    const rec **list = malloc((s->recs.n ? s->recs.n : 1) * sizeof(*list));
    if (!list) return WA_STORE_ERR_NOMEM;
    for (size_t i = 0; i < s->recs.n; i++)
        if (s->recs.v[i].kind == K_EVENT) list[n++] = &s->recs.v[i];
    qsort(list, n, sizeof(*list), cmp_rec_order);
    int ret = WA_STORE_OK;
    for (size_t i = 0; i < n && ret == 0; i++) {
        wa_buffered_event ev;
        char chat[WA_ADDRESS_MAX], sender[WA_ADDRESS_MAX], id[WA_ADDRESS_MAX];
        if (decode_event(list[i], &ev, chat, sender, id)) ret = fn(arg, &ev);
    }
    free(list);
    return ret;
}

static size_t prune(mem_store *s, int kind, int64_t before)
{
    size_t count = 0;
    for (size_t i = 0; i < s->recs.n;) {
        if (s->recs.v[i].kind == kind && s->recs.v[i].order < before) {
            remove_at(s, i);
            count++;
        } else {
            i++;
        }
    }
    return count;
}

static int m_evbuf_prune(void *ctx, int64_t before_ms, size_t *deleted)
{
    mem_store *s = ctx;
    ENTER(s);
    size_t n = prune(s, K_EVENT, before_ms);
    if (deleted) *deleted = n;
    return WA_STORE_OK;
}

/* ---- sent messages ---- */

static int m_sent_save(void *ctx, const char *chat, const char *id, const uint8_t *plaintext,
                       size_t len, int64_t sent_ms)
{
    mem_store *s = ctx;
    ENTER(s);
    if (!plaintext && len) return bad(s, "plaintext");
    wb_buf k;
    KEY(key2(s, &k, chat, id));
    return put_key(s, K_SENT, &k, plaintext, len, sent_ms);
}

static int m_sent_load(void *ctx, const char *chat, const char *id, wb_buf *plaintext)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key2(s, &k, chat, id));
    return get_key(s, K_SENT, &k, NULL, 0, plaintext);
}

static int m_sent_delete(void *ctx, const char *chat, const char *id)
{
    mem_store *s = ctx;
    ENTER(s);
    wb_buf k;
    KEY(key2(s, &k, chat, id));
    return del_key(s, K_SENT, &k);
}

static int m_sent_prune(void *ctx, int64_t before_ms, size_t *deleted)
{
    mem_store *s = ctx;
    ENTER(s);
    size_t n = prune(s, K_SENT, before_ms);
    if (deleted) *deleted = n;
    return WA_STORE_OK;
}

int wa_store_mem_new(wa_store *out)
{
    memset(out, 0, sizeof(*out));
    mem_store *s = calloc(1, sizeof(*s));
    if (!s) return WA_STORE_ERR_NOMEM;
    *out = (wa_store){
        .ctx = s,
        .destroy = m_destroy,
        .last_error = m_last_error,
        .begin = m_begin,
        .commit = m_commit,
        .rollback = m_rollback,
        .epoch = m_epoch,
        .wipe = m_wipe,
        .device_load = m_device_load,
        .device_save = m_device_save,
        .device_delete = m_device_delete,
        .signed_prekey_load = m_signed_prekey_load,
        .identity_load = m_identity_load,
        .identity_save = m_identity_save,
        .identity_delete = m_identity_delete,
        .identity_delete_prefix = m_identity_delete_prefix,
        .session_load = m_session_load,
        .session_save = m_session_save,
        .session_delete = m_session_delete,
        .session_delete_prefix = m_session_delete_prefix,
        .prekey_load = m_prekey_load,
        .prekeys_save = m_prekeys_save,
        .prekey_delete = m_prekey_delete,
        .prekeys_unuploaded = m_prekeys_unuploaded,
        .prekeys_mark_uploaded = m_prekeys_mark_uploaded,
        .prekeys_count_uploaded = m_prekeys_count_uploaded,
        .sender_key_load = m_sender_key_load,
        .sender_key_save = m_sender_key_save,
        .sender_key_delete = m_sender_key_delete,
        .appstate_key_save = m_askey_save,
        .appstate_key_load = m_askey_load,
        .appstate_key_latest = m_askey_latest,
        .appstate_key_delete = m_askey_delete,
        .appstate_version_load = m_asver_load,
        .appstate_version_save = m_asver_save,
        .appstate_version_delete = m_asver_delete,
        .appstate_macs_save = m_asmacs_save,
        .appstate_macs_delete = m_asmacs_delete,
        .appstate_mac_load = m_asmac_load,
        .contact_load = m_contact_load,
        .contact_save = m_contact_save,
        .contact_delete = m_contact_delete,
        .chat_settings_load = m_chat_load,
        .chat_settings_save = m_chat_save,
        .chat_settings_delete = m_chat_delete,
        .lid_map_save = m_lid_map_save,
        .lid_for_pn = m_lid_for_pn,
        .pn_for_lid = m_pn_for_lid,
        .lid_map_delete = m_lid_map_delete,
        .msg_secret_save = m_secret_save,
        .msg_secret_load = m_secret_load,
        .msg_secret_delete = m_secret_delete,
        .event_buffer_save = m_evbuf_save,
        .event_buffer_load = m_evbuf_load,
        .event_buffer_delete = m_evbuf_delete,
        .event_buffer_foreach = m_evbuf_foreach,
        .event_buffer_prune = m_evbuf_prune,
        .sent_save = m_sent_save,
        .sent_load = m_sent_load,
        .sent_delete = m_sent_delete,
        .sent_prune = m_sent_prune,
    };
    return WA_STORE_OK;
}

void wa_store_mem_fail_after(wa_store *st, int n)
{
    ((mem_store *)st->ctx)->fail_after = n > 0 ? n : 0;
}

void wa_store_mem_changed_behind(wa_store *st)
{
    ((mem_store *)st->ctx)->epoch++;
}

size_t wa_store_mem_count(const wa_store *st)
{
    return ((const mem_store *)st->ctx)->recs.n;
}
