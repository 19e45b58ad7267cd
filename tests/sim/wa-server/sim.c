/*
 * tests/sim/wa-server/sim.c - wa-sim's protocol logic (sim.h): handshake, pairing, login, IQs,
 * admin.
 */
#include "sim.h"

#include "util/base64.h"
#include "wa/proto/wa.pb.h"

#include <pb_decode.h>
#include <pb_encode.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const uint8_t ADV_ACCOUNT_SIG_PREFIX[] = {6, 0};
static const uint8_t ADV_DEVICE_SIG_PREFIX[] = {6, 1};

static void logf_(sim *s, const char *fmt, ...)
{
    if (!s->verbose) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

uint64_t sim_now(const sim *s)
{
    return s->fixed_time ? s->fixed_time : (uint64_t)time(NULL);
}

int sim_init(sim *s, const uint8_t *seed, size_t seed_len, uint64_t fixed_time)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->crypto = wa_crypto_new(seed, seed_len);
    if (!s->crypto) return -1;
    s->fixed_time = fixed_time;
    s->next_serial = 1;
    s->next_id = 1;
    if (wa_keypair_generate(s->crypto, &s->root) != WA_OK ||
        wa_keypair_generate(s->crypto, &s->intermediate) != WA_OK ||
        wa_keypair_generate(s->crypto, &s->server_static) != WA_OK)
        return -1;
    uint64_t now = sim_now(s);
    wa_cert_params p = {.intermediate_serial = 1,
                        .leaf_serial = 2,
                        .not_before = now - 86400,
                        .not_after = now + 365 * 86400ull};
    wb_buf_init(&s->cert_chain);
    return wa_cert_chain_build(s->crypto, &s->root, &s->intermediate, s->server_static.pub, &p,
                               &s->cert_chain) == WA_OK
               ? 0
               : -1;
}

void sim_free(sim *s)
{
    while (s->conns)
        sim_conn_free(s, s->conns);
    wb_buf_free(&s->cert_chain);
    wa_crypto_free(s->crypto);
    pthread_mutex_destroy(&s->lock);
}

sim_account *sim_account_find(sim *s, const char *phone)
{
    for (int i = 0; i < s->naccounts; i++)
        if (strcmp(s->accounts[i].phone, phone) == 0) return &s->accounts[i];
    return NULL;
}

static sim_account *account_by_lid(sim *s, const char *lid)
{
    for (int i = 0; i < s->naccounts; i++)
        if (strcmp(s->accounts[i].lid, lid) == 0) return &s->accounts[i];
    return NULL;
}

static bool all_digits(const char *p, size_t max)
{
    size_t n = strlen(p);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9') return false;
    return true;
}

sim_account *sim_account_add(sim *s, const char *phone, const char *lid, const char *name)
{
    if (!all_digits(phone, 20) || (lid && !all_digits(lid, 20))) return NULL;
    if (sim_account_find(s, phone) || s->naccounts == SIM_MAX_ACCOUNTS) return NULL;
    sim_account *a = &s->accounts[s->naccounts];
    memset(a, 0, sizeof(*a));
    snprintf(a->phone, sizeof(a->phone), "%s", phone);
    if (lid)
        snprintf(a->lid, sizeof(a->lid), "%s", lid);
    else /* a LID unrelated to the number, as on the real service */
        snprintf(a->lid, sizeof(a->lid), "1%014u", (unsigned)(s->naccounts + 1) * 7919u);
    if (account_by_lid(s, a->lid)) return NULL;
    snprintf(a->name, sizeof(a->name), "%s", name ? name : "Sim Phone");
    if (wa_keypair_generate(s->crypto, &a->identity) != WA_OK) return NULL;
    uint8_t raw[4];
    wa_random(s->crypto, raw, 4);
    a->raw_id = (uint32_t)raw[0] << 24 | raw[1] << 16 | raw[2] << 8 | raw[3];
    a->next_key_index = 1;
    s->naccounts++;
    return a;
}

sim_conn *sim_conn_new(sim *s, void *wsi)
{
    sim_conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->wsi = wsi;
    c->serial = s->next_serial++;
    c->device_index = -1;
    wa_frame_reader_init(&c->reader, true, 1u << 20);
    wb_buf_init(&c->out);
    if (wa_noise_init(&c->noise, s->crypto, WA_NOISE_RESPONDER, NULL) != WA_OK) {
        free(c);
        return NULL;
    }
    c->next = s->conns;
    s->conns = c;
    return c;
}

void sim_conn_free(sim *s, sim_conn *c)
{
    for (sim_conn **p = &s->conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    wa_frame_reader_free(&c->reader);
    wb_buf_free(&c->out);
    wa_noise_clear(&c->noise);
    free(c);
}

/* Prints a stanza in verbose mode; dir is "S->C" or "C->S". */
static void log_node(sim *s, sim_conn *c, const char *dir, const wa_node *n)
{
    if (!s->verbose) return;
    wb_buf text;
    wb_buf_init(&text);
    wa_node_print(n, 32, &text);
    fprintf(stderr, "[%llu] %s %s", (unsigned long long)c->serial, dir, (const char *)text.data);
    wb_buf_free(&text);
}

int sim_send_node(sim *s, sim_conn *c, const wa_node *n)
{
    log_node(s, c, "S->C", n);
    return wa_noise_send_node(&c->noise, n, &c->out);
}

/* The number the next companion of acct gets: one above the highest ever used. */
static uint16_t next_device_id(const sim_account *acct)
{
    uint16_t id = 1;
    for (int i = 0; i < acct->ndevices; i++)
        if (acct->devices[i].id >= id) id = (uint16_t)(acct->devices[i].id + 1);
    return id;
}

/* Sends <iq from="s.whatsapp.net" type="result" id=id> with one optional child. */
static void send_result(sim *s, sim_conn *c, wb_arena *a, const char *id, wa_node *child)
{
    wa_node *iq = wa_node_new(a, "iq");
    wa_node_set_attr(a, iq, "from", WA_SERVER_PN);
    wa_node_set_attr(a, iq, "type", "result");
    wa_node_set_attr(a, iq, "id", id);
    if (child) wa_node_add_child(a, iq, child);
    sim_send_node(s, c, iq);
}

static void send_stream_error(sim *s, sim_conn *c, wb_arena *a, const char *code)
{
    wa_node *e = wa_node_new(a, "stream:error");
    wa_node_set_attr(a, e, "code", code);
    sim_send_node(s, c, e);
    c->state = SIM_CONN_CLOSING;
}

static void send_failure(sim *s, sim_conn *c, wb_arena *a, const char *reason)
{
    wa_node *f = wa_node_new(a, "failure");
    wa_node_set_attr(a, f, "reason", reason);
    wa_node_set_attr(a, f, "location", "sim");
    sim_send_node(s, c, f);
    c->state = SIM_CONN_CLOSING;
}

static void u32_be(const uint8_t *p, size_t n, uint32_t *out)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    *out = v;
}

/* The ClientPayload decides: registration (pairing) or login. */
static int on_client_payload(sim *s, sim_conn *c, const uint8_t *p, size_t len)
{
    proto_ClientPayload cp = proto_ClientPayload_init_zero;
    pb_istream_t is = pb_istream_from_buffer(p, len);
    if (!pb_decode(&is, proto_ClientPayload_fields, &cp)) {
        logf_(s, "[%llu] ClientPayload does not decode\n", (unsigned long long)c->serial);
        return -1;
    }
    if (cp.has_devicePairingData) {
        const proto_ClientPayload_DevicePairingRegistrationData *d = &cp.devicePairingData;
        if (d->eIdent.size != 32 || d->eRegid.size != 4) return -1;
        memcpy(c->identity_pub, d->eIdent.bytes, 32);
        u32_be(d->eRegid.bytes, 4, &c->registration_id);
        c->state = SIM_CONN_PAIRING;
        c->hello_pending = true;
        logf_(s, "[%llu] registration payload\n", (unsigned long long)c->serial);
        return 0;
    }
    /* login: username (phone) and device must name a device paired with this noise key */
    char phone[24];
    snprintf(phone, sizeof(phone), "%llu", (unsigned long long)cp.username);
    sim_account *acct = cp.has_username ? sim_account_find(s, phone) : NULL;
    c->account = acct;
    c->device_index = -1;
    for (int i = 0; acct && i < acct->ndevices; i++) {
        sim_device *dev = &acct->devices[i];
        if (dev->present && dev->id == cp.device && wa_ct_equal(dev->noise_pub, c->noise_pub, 32))
            c->device_index = i;
    }
    c->state = SIM_CONN_LOGGED_IN;
    c->hello_pending = true;
    logf_(s, "[%llu] login %s:%u -> %s\n", (unsigned long long)c->serial, phone, cp.device,
          c->device_index >= 0 ? "known device" : "unknown device");
    return 0;
}

void sim_conn_timer(sim *s, sim_conn *c)
{
    if (!c->hello_pending) return;
    c->hello_pending = false;
    wb_arena a;
    wb_arena_init(&a, 0);
    if (c->state == SIM_CONN_PAIRING) {
        wa_node *iq = wa_node_new(&a, "iq");
        char id[16];
        snprintf(id, sizeof(id), "pd-%u", s->next_id++);
        wa_node_set_attr(&a, iq, "from", WA_SERVER_PN);
        wa_node_set_attr(&a, iq, "type", "set");
        wa_node_set_attr(&a, iq, "id", id);
        wa_node_set_attr(&a, iq, "xmlns", "md");
        wa_node *pd = wa_node_new(&a, "pair-device");
        for (int i = 0; i < SIM_REFS; i++) {
            uint8_t r[9];
            char b64[WB_BASE64_LEN(9)];
            wa_random(s->crypto, r, sizeof(r));
            wb_base64_encode(r, sizeof(r), b64, true);
            snprintf(c->refs[i], sizeof(c->refs[i]), "2@sim%llu.%d.%s",
                     (unsigned long long)c->serial, i, b64);
            wa_node *ref = wa_node_new(&a, "ref");
            wa_node_set_bytes(&a, ref, c->refs[i], strlen(c->refs[i]));
            wa_node_add_child(&a, pd, ref);
        }
        wa_node_add_child(&a, iq, pd);
        sim_send_node(s, c, iq);
    } else if (c->state == SIM_CONN_LOGGED_IN) {
        if (c->device_index < 0) {
            send_failure(s, c, &a, "401");
        } else {
            char t[24], lid[48], creation[24];
            snprintf(t, sizeof(t), "%llu", (unsigned long long)sim_now(s));
            snprintf(creation, sizeof(creation), "%llu", (unsigned long long)sim_now(s) - 86400);
            snprintf(lid, sizeof(lid), "%s:%u@lid", c->account->lid,
                     c->account->devices[c->device_index].id);
            wa_node *ok = wa_node_new(&a, "success");
            wa_node_set_attr(&a, ok, "t", t);
            wa_node_set_attr(&a, ok, "props", "1");
            wa_node_set_attr(&a, ok, "lid", lid);
            wa_node_set_attr(&a, ok, "creation", creation);
            wa_node_set_attr(&a, ok, "location", "sim");
            wa_node_set_attr(&a, ok, "abprops", "1");
            sim_send_node(s, c, ok);
        }
    }
    wb_arena_free(&a);
}

/* --- IQs --- */

static wa_node *child_with_bytes(wb_arena *a, const char *tag, const void *p, size_t n)
{
    wa_node *x = wa_node_new(a, tag);
    wa_node_set_bytes(a, x, p, n);
    return x;
}

static void on_prekey_upload(sim *s, sim_conn *c, wa_node *iq)
{
    wa_node *list = wa_node_child(iq, "list");
    if (c->device_index >= 0 && list)
        c->account->devices[c->device_index].prekeys += (uint32_t)list->nchildren;
}

/* pair-device-sign: the companion's signed device identity; check it and finish pairing. */
static int on_pair_device_sign(sim *s, sim_conn *c, wb_arena *a, wa_node *sign)
{
    wa_node *di = wa_node_child(sign, "device-identity");
    if (c->state != SIM_CONN_PAIRED || !di || di->kind != WA_CONTENT_BYTES) return -1;
    proto_ADVSignedDeviceIdentity sdi = proto_ADVSignedDeviceIdentity_init_zero;
    pb_istream_t is = pb_istream_from_buffer(di->data, di->data_len);
    if (!pb_decode(&is, proto_ADVSignedDeviceIdentity_fields, &sdi) ||
        sdi.deviceSignature.size != 64 || sdi.details.size != c->pending_details_len ||
        memcmp(sdi.details.bytes, c->pending_details, c->pending_details_len) != 0) {
        logf_(s, "[%llu] pair-device-sign does not match what we sent\n",
              (unsigned long long)c->serial);
        return -1;
    }
    /* device signature over [6,1] || details || companion identity || account signature key */
    uint8_t msg[2 + 256 + 64];
    size_t n = 0;
    memcpy(msg, ADV_DEVICE_SIG_PREFIX, 2);
    n = 2;
    memcpy(msg + n, c->pending_details, c->pending_details_len);
    n += c->pending_details_len;
    memcpy(msg + n, c->identity_pub, 32);
    n += 32;
    memcpy(msg + n, c->account->identity.pub, 32);
    n += 32;
    if (!wa_xeddsa_verify(s->crypto, c->identity_pub, msg, n, sdi.deviceSignature.bytes)) {
        logf_(s, "[%llu] device signature does not verify\n", (unsigned long long)c->serial);
        return -1;
    }
    sim_account *acct = c->account;
    if (acct->ndevices == SIM_MAX_DEVICES) return -1;
    sim_device *dev = &acct->devices[acct->ndevices];
    memset(dev, 0, sizeof(*dev));
    dev->id = next_device_id(acct);
    memcpy(dev->noise_pub, c->noise_pub, 32);
    memcpy(dev->identity_pub, c->identity_pub, 32);
    dev->registration_id = c->registration_id;
    dev->key_index = acct->next_key_index - 1;
    dev->present = true;
    acct->ndevices++;
    logf_(s, "[%llu] paired %s:%u\n", (unsigned long long)c->serial, acct->phone, dev->id);
    send_stream_error(s, c, a, "515");
    return 0;
}

static int set_err(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

/* --- pairing by code --- */

#define LC_ITERATIONS 131072 /* PBKDF2 rounds of the code key (2 << 16) */
static const char LC_BUNDLE_INFO[] = "link_code_pairing_key_bundle_encryption_key";

static int send_pair_success(sim *s, sim_conn *c, sim_account *acct, const uint8_t adv[32],
                             char *err, size_t errlen);

static const wa_node *child_bytes(const wa_node *n, const char *tag, size_t want)
{
    const wa_node *x = wa_node_child(n, tag);
    if (!x || (x->kind != WA_CONTENT_BYTES && x->kind != WA_CONTENT_STRING)) return NULL;
    return want && x->data_len != want ? NULL : x;
}

/* companion_hello: remember the wrapped key; companion_finish: check the bundle, derive the ADV
 * secret, pair. */
static void on_link_code(sim *s, sim_conn *c, wb_arena *a, wa_node *iq, wa_node *lc)
{
    const char *stage = wa_node_attr(lc, "stage");
    const char *id = wa_node_attr(iq, "id");
    if (stage && strcmp(stage, "companion_hello") == 0) {
        const wa_node *wrapped =
            child_bytes(lc, "link_code_pairing_wrapped_companion_ephemeral_pub", 80);
        const wa_node *auth = child_bytes(lc, "companion_server_auth_key_pub", 32);
        wa_jid jid;
        if (!wrapped || !auth || wa_node_attr_jid(lc, "jid", &jid) != WA_OK ||
            strlen(jid.user) >= sizeof(c->lc_phone) || !wa_ct_equal(auth->data, c->noise_pub, 32)) {
            send_stream_error(s, c, a, "400");
            return;
        }
        memcpy(c->lc_wrapped, wrapped->data, 80);
        memcpy(c->lc_phone, jid.user, strlen(jid.user) + 1);
        uint8_t r[6];
        wa_random(s->crypto, r, sizeof(r));
        char hex[13];
        wb_hex_encode(r, sizeof(r), hex);
        snprintf(c->lc_ref, sizeof(c->lc_ref), "simlinkref%s", hex);
        c->lc_hello = true;
        c->lc_primary_sent = false;
        wa_node *reg = wa_node_new(a, "link_code_companion_reg");
        wa_node_add_child(
            a, reg, child_with_bytes(a, "link_code_pairing_ref", c->lc_ref, strlen(c->lc_ref)));
        send_result(s, c, a, id, reg);
        return;
    }
    if (stage && strcmp(stage, "companion_finish") == 0 && c->lc_primary_sent) {
        const wa_node *bundle = wa_node_child(lc, "link_code_pairing_wrapped_key_bundle");
        const wa_node *ident = child_bytes(lc, "companion_identity_public", 32);
        const wa_node *ref = child_bytes(lc, "link_code_pairing_ref", strlen(c->lc_ref));
        sim_account *acct = sim_account_find(s, c->lc_phone);
        uint8_t shared[32], key[32], plain[96], id_shared[32], ikm[96], adv[32];
        bool ok = acct && bundle && bundle->kind == WA_CONTENT_BYTES &&
                  bundle->data_len == 32 + 12 + 96 + 16 && ident && ref &&
                  memcmp(ref->data, c->lc_ref, ref->data_len) == 0 &&
                  wa_ct_equal(ident->data, c->identity_pub, 32);
        ok = ok &&
             wa_x25519(s->crypto, c->lc_primary_eph.priv, c->lc_companion_eph, shared) == WA_OK;
        ok = ok && wa_hkdf_sha256(shared, 32, bundle->data, 32, (const uint8_t *)LC_BUNDLE_INFO,
                                  sizeof(LC_BUNDLE_INFO) - 1, key, 32) == WA_OK;
        /* a wrong code gave us a wrong companion key: the bundle does not open */
        ok = ok && wa_aes_gcm_decrypt(key, bundle->data + 32, 12, NULL, 0, bundle->data + 44,
                                      96 + 16, plain) == WA_OK;
        ok = ok && wa_ct_equal(plain, c->identity_pub, 32) &&
             wa_ct_equal(plain + 32, acct->identity.pub, 32);
        ok = ok && wa_x25519(s->crypto, acct->identity.priv, c->identity_pub, id_shared) == WA_OK;
        if (ok) {
            memcpy(ikm, shared, 32);
            memcpy(ikm + 32, id_shared, 32);
            memcpy(ikm + 64, plain + 64, 32);
            ok = wa_hkdf_sha256(ikm, 96, NULL, 0, (const uint8_t *)"adv_secret", 10, adv, 32) ==
                 WA_OK;
        }
        wa_wipe(shared, sizeof(shared));
        wa_wipe(key, sizeof(key));
        wa_wipe(ikm, sizeof(ikm));
        if (!ok) {
            logf_(s, "[%llu] companion_finish does not check out (wrong code?)\n",
                  (unsigned long long)c->serial);
            wa_node *e = wa_node_new(a, "error");
            wa_node_set_attr(a, e, "code", "400");
            wa_node_set_attr(a, e, "text", "bad-request");
            wa_node *res = wa_node_new(a, "iq");
            wa_node_set_attr(a, res, "from", WA_SERVER_PN);
            wa_node_set_attr(a, res, "type", "error");
            wa_node_set_attr(a, res, "id", id);
            wa_node_add_child(a, res, e);
            sim_send_node(s, c, res);
            return;
        }
        send_result(s, c, a, id, NULL);
        char err[160];
        send_pair_success(s, c, acct, adv, err, sizeof(err));
        wa_wipe(adv, sizeof(adv));
        return;
    }
    send_result(s, c, a, id, NULL);
}

int sim_admin_pair_code(sim *s, const char *phone, const char *code, char *err, size_t errlen)
{
    sim_conn *c = NULL;
    for (sim_conn *x = s->conns; x; x = x->next)
        if (x->state == SIM_CONN_PAIRING && x->lc_hello && strcmp(x->lc_phone, phone) == 0) c = x;
    if (!c) return set_err(err, errlen, "no companion is waiting for a code for this phone");
    sim_account *acct = sim_account_find(s, phone);
    if (!acct) return set_err(err, errlen, "no such account");
    if (strlen(code) != 8) return set_err(err, errlen, "a pairing code has 8 characters");
    /* unwrap the companion's ephemeral key with the code the user typed */
    uint8_t key[32];
    if (wa_pbkdf2_sha256((const uint8_t *)code, 8, c->lc_wrapped, 32, LC_ITERATIONS, key, 32) !=
            WA_OK ||
        wa_aes_ctr(key, c->lc_wrapped + 32, c->lc_wrapped + 48, 32, c->lc_companion_eph) != WA_OK)
        return set_err(err, errlen, "cannot derive the code key");
    /* wrap ours the same way */
    uint8_t wrapped[80];
    wa_keypair_generate(s->crypto, &c->lc_primary_eph);
    wa_random(s->crypto, wrapped, 48);
    if (wa_pbkdf2_sha256((const uint8_t *)code, 8, wrapped, 32, LC_ITERATIONS, key, 32) != WA_OK ||
        wa_aes_ctr(key, wrapped + 32, c->lc_primary_eph.pub, 32, wrapped + 48) != WA_OK)
        return set_err(err, errlen, "cannot wrap the primary key");
    wa_wipe(key, sizeof(key));
    c->lc_primary_sent = true;
    c->account = acct;
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *n = wa_node_new(&a, "notification");
    char id[16], t[24];
    snprintf(id, sizeof(id), "lc-%u", s->next_id++);
    snprintf(t, sizeof(t), "%llu", (unsigned long long)sim_now(s));
    wa_node_set_attr(&a, n, "from", WA_SERVER_PN);
    wa_node_set_attr(&a, n, "type", "link_code_companion_reg");
    wa_node_set_attr(&a, n, "id", id);
    wa_node_set_attr(&a, n, "t", t);
    wa_node *reg = wa_node_new(&a, "link_code_companion_reg");
    wa_node_set_attr(&a, reg, "stage", "primary_hello");
    wa_node_add_child(&a, reg,
                      child_with_bytes(&a, "link_code_pairing_ref", c->lc_ref, strlen(c->lc_ref)));
    wa_node_add_child(&a, reg,
                      child_with_bytes(&a, "primary_identity_pub", acct->identity.pub, 32));
    wa_node_add_child(
        &a, reg,
        child_with_bytes(&a, "link_code_pairing_wrapped_primary_ephemeral_pub", wrapped, 80));
    wa_node_add_child(&a, n, reg);
    sim_send_node(s, c, n);
    wb_arena_free(&a);
    return 0;
}

static void on_iq(sim *s, sim_conn *c, wb_arena *a, wa_node *iq)
{
    const char *id = wa_node_attr(iq, "id");
    const char *type = wa_node_attr(iq, "type");
    const char *xmlns = wa_node_attr(iq, "xmlns");
    if (!id) return;
    if (type && strcmp(type, "result") == 0) {
        wa_node *sign = wa_node_child(iq, "pair-device-sign");
        if (sign && on_pair_device_sign(s, c, a, sign) != 0) send_stream_error(s, c, a, "401");
        return; /* other results (pair-device) need nothing */
    }
    if (!xmlns) xmlns = "";
    wa_node *lc = wa_node_child(iq, "link_code_companion_reg");
    if (lc && strcmp(xmlns, "md") == 0 && c->state == SIM_CONN_PAIRING) {
        on_link_code(s, c, a, iq, lc);
        return;
    }
    if (c->state != SIM_CONN_LOGGED_IN) {
        send_result(s, c, a, id, NULL);
        return;
    }
    wa_node *first = iq->kind == WA_CONTENT_LIST && iq->nchildren ? iq->children[0] : NULL;
    const char *what = first ? first->tag : "";
    if (strcmp(xmlns, "encrypt") == 0 && strcmp(what, "count") == 0) {
        char v[16];
        snprintf(v, sizeof(v), "%u", c->account->devices[c->device_index].prekeys);
        wa_node *count = wa_node_new(a, "count");
        wa_node_set_attr(a, count, "value", v);
        send_result(s, c, a, id, count);
    } else if (strcmp(xmlns, "encrypt") == 0 && type && strcmp(type, "set") == 0) {
        on_prekey_upload(s, c, iq);
        send_result(s, c, a, id, NULL);
    } else if (strcmp(xmlns, "encrypt") == 0 && strcmp(what, "digest") == 0) {
        send_result(s, c, a, id, wa_node_new(a, "digest"));
    } else if (strcmp(xmlns, "passive") == 0) {
        send_result(s, c, a, id, NULL);
        if (strcmp(what, "active") == 0) {
            wa_node *ib = wa_node_new(a, "ib");
            wa_node_set_attr(a, ib, "from", WA_SERVER_PN);
            wa_node *off = wa_node_new(a, "offline");
            wa_node_set_attr(a, off, "count", "0");
            wa_node_add_child(a, ib, off);
            sim_send_node(s, c, ib);
        }
    } else if (strcmp(xmlns, "abt") == 0) {
        wa_node *props = wa_node_new(a, "props");
        wa_node_set_attr(a, props, "protocol", "1");
        wa_node_set_attr(a, props, "hash", "simhash");
        send_result(s, c, a, id, props);
    } else if (strcmp(xmlns, "blocklist") == 0) {
        send_result(s, c, a, id, wa_node_new(a, "list"));
    } else if (strcmp(xmlns, "privacy") == 0 && type && strcmp(type, "get") == 0) {
        static const char *cats[] = {"readreceipts", "last",     "online", "profile",
                                     "status",       "groupadd", "calladd"};
        wa_node *privacy = wa_node_new(a, "privacy");
        for (size_t i = 0; i < sizeof(cats) / sizeof(cats[0]); i++) {
            wa_node *cat = wa_node_new(a, "category");
            wa_node_set_attr(a, cat, "name", cats[i]);
            wa_node_set_attr(a, cat, "value", "all");
            wa_node_add_child(a, privacy, cat);
        }
        send_result(s, c, a, id, privacy);
    } else if (strcmp(xmlns, "md") == 0 && strcmp(what, "remove-companion-device") == 0) {
        /* logout: the companion removes itself */
        c->account->devices[c->device_index].present = false;
        send_result(s, c, a, id, NULL);
        logf_(s, "[%llu] device %s:%u logged out\n", (unsigned long long)c->serial,
              c->account->phone, c->account->devices[c->device_index].id);
        send_stream_error(s, c, a, "401");
    } else {
        /* w:p ping and everything not simulated yet: an empty result */
        send_result(s, c, a, id, NULL);
    }
}

static int on_node(sim *s, sim_conn *c, wa_node *n, wb_arena *a)
{
    log_node(s, c, "C->S", n);
    if (strcmp(n->tag, "iq") == 0) on_iq(s, c, a, n);
    /* ib, presence, receipts, acks: nothing to answer yet */
    return 0;
}

int sim_conn_receive(sim *s, sim_conn *c, const uint8_t *p, size_t len)
{
    if (c->state == SIM_CONN_CLOSING) return 0;
    if (wa_frame_reader_push(&c->reader, p, len) != WA_OK) return -1;
    const uint8_t *f;
    size_t flen;
    wa_errinfo ei;
    int got;
    while ((got = wa_frame_reader_next(&c->reader, &f, &flen, &ei)) == 1) {
        if (c->noise.state == WA_NOISE_START) {
            if (wa_noise_server_hello(&c->noise, f, flen, &s->server_static, s->cert_chain.data,
                                      s->cert_chain.len, &c->out, &ei) != WA_OK) {
                logf_(s, "[%llu] handshake: %s\n", (unsigned long long)c->serial, ei.message);
                return -1;
            }
        } else if (c->noise.state == WA_NOISE_SENT_SERVER_HELLO) {
            wb_buf payload;
            wb_buf_init(&payload);
            int rc = wa_noise_server_finish(&c->noise, f, flen, c->noise_pub, &payload, &ei);
            if (rc == WA_OK) rc = on_client_payload(s, c, payload.data, payload.len);
            wb_buf_free(&payload);
            if (rc != 0) {
                logf_(s, "[%llu] clientFinish: %s\n", (unsigned long long)c->serial, ei.message);
                return -1;
            }
        } else {
            wb_buf plain;
            wb_buf_init(&plain);
            if (wa_noise_recv(&c->noise, f, flen, &plain) != WA_OK) {
                wb_buf_free(&plain);
                logf_(s, "[%llu] bad transport frame\n", (unsigned long long)c->serial);
                return -1;
            }
            wb_arena a;
            wb_arena_init(&a, 0);
            wa_node *n;
            int rc = wa_binary_unpack(plain.data, plain.len, 0, &a, &n, &ei);
            wb_buf_free(&plain);
            if (rc == WA_OK)
                on_node(s, c, n, &a);
            else
                logf_(s, "[%llu] bad node: %s\n", (unsigned long long)c->serial, ei.message);
            wb_arena_free(&a);
            if (rc != WA_OK) return -1;
            if (c->state == SIM_CONN_CLOSING) return 0;
        }
    }
    if (got < 0) {
        logf_(s, "[%llu] stream: %s\n", (unsigned long long)c->serial, ei.message);
        return -1;
    }
    return 0;
}

/* --- admin --- */

static sim_conn *conn_by_ref(sim *s, const char *ref, size_t ref_len)
{
    for (sim_conn *c = s->conns; c; c = c->next) {
        if (c->state != SIM_CONN_PAIRING) continue;
        for (int i = 0; i < SIM_REFS; i++)
            if (strlen(c->refs[i]) == ref_len && memcmp(c->refs[i], ref, ref_len) == 0) return c;
    }
    return NULL;
}

/* The phone signs the companion in: ADVDeviceIdentity, account signature, HMAC with the ADV
 * secret (from the QR, or agreed through the pairing code), then pair-success. */
static int send_pair_success(sim *s, sim_conn *c, sim_account *acct, const uint8_t adv[32],
                             char *err, size_t errlen)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    c->account = acct;
    proto_ADVDeviceIdentity di = proto_ADVDeviceIdentity_init_zero;
    di.has_rawId = di.has_timestamp = di.has_keyIndex = true;
    di.rawId = acct->raw_id;
    di.timestamp = sim_now(s);
    di.keyIndex = acct->next_key_index++;
    pb_ostream_t os = pb_ostream_from_buffer(c->pending_details, sizeof(c->pending_details));
    if (!pb_encode(&os, proto_ADVDeviceIdentity_fields, &di)) {
        wb_arena_free(&a);
        return set_err(err, errlen, "cannot encode ADVDeviceIdentity");
    }
    c->pending_details_len = os.bytes_written;

    proto_ADVSignedDeviceIdentity sdi = proto_ADVSignedDeviceIdentity_init_zero;
    sdi.has_details = sdi.has_accountSignatureKey = sdi.has_accountSignature = true;
    sdi.details.size = (pb_size_t)c->pending_details_len;
    memcpy(sdi.details.bytes, c->pending_details, c->pending_details_len);
    sdi.accountSignatureKey.size = 32;
    memcpy(sdi.accountSignatureKey.bytes, acct->identity.pub, 32);
    uint8_t msg[2 + 256 + 32];
    memcpy(msg, ADV_ACCOUNT_SIG_PREFIX, 2);
    memcpy(msg + 2, c->pending_details, c->pending_details_len);
    memcpy(msg + 2 + c->pending_details_len, c->identity_pub, 32);
    wa_xeddsa_sign(s->crypto, acct->identity.priv, msg, 2 + c->pending_details_len + 32,
                   sdi.accountSignature.bytes);
    sdi.accountSignature.size = 64;
    uint8_t sdi_bytes[512];
    os = pb_ostream_from_buffer(sdi_bytes, sizeof(sdi_bytes));
    pb_encode(&os, proto_ADVSignedDeviceIdentity_fields, &sdi);

    proto_ADVSignedDeviceIdentityHMAC h = proto_ADVSignedDeviceIdentityHMAC_init_zero;
    h.has_details = h.has_hmac = true;
    h.details.size = (pb_size_t)os.bytes_written;
    memcpy(h.details.bytes, sdi_bytes, os.bytes_written);
    h.hmac.size = 32;
    wa_hmac_sha256(adv, 32, sdi_bytes, os.bytes_written, h.hmac.bytes);
    uint8_t hmac_bytes[600];
    os = pb_ostream_from_buffer(hmac_bytes, sizeof(hmac_bytes));
    pb_encode(&os, proto_ADVSignedDeviceIdentityHMAC_fields, &h);

    uint16_t next_dev = next_device_id(acct);
    char jid[48], lid[48];
    snprintf(jid, sizeof(jid), "%s:%u@s.whatsapp.net", acct->phone, next_dev);
    snprintf(lid, sizeof(lid), "%s:%u@lid", acct->lid, next_dev);

    wa_node *iq = wa_node_new(&a, "iq");
    snprintf(c->pair_iq_id, sizeof(c->pair_iq_id), "ps-%u", s->next_id++);
    wa_node_set_attr(&a, iq, "from", WA_SERVER_PN);
    wa_node_set_attr(&a, iq, "type", "set");
    wa_node_set_attr(&a, iq, "id", c->pair_iq_id);
    wa_node_set_attr(&a, iq, "xmlns", "md");
    wa_node *ps = wa_node_new(&a, "pair-success");
    wa_node_add_child(&a, ps,
                      child_with_bytes(&a, "device-identity", hmac_bytes, os.bytes_written));
    wa_node *platform = wa_node_new(&a, "platform");
    wa_node_set_attr(&a, platform, "name", "smba");
    wa_node_add_child(&a, ps, platform);
    wa_node *device = wa_node_new(&a, "device");
    wa_node_set_attr(&a, device, "jid", jid);
    wa_node_set_attr(&a, device, "lid", lid);
    wa_node_add_child(&a, ps, device);
    wa_node_add_child(&a, iq, ps);
    sim_send_node(s, c, iq);
    c->state = SIM_CONN_PAIRED;
    wb_arena_free(&a);
    return 0;
}

int sim_admin_scan(sim *s, const char *phone, const char *qr, char *err, size_t errlen)
{
    sim_account *acct = sim_account_find(s, phone);
    if (!acct) return set_err(err, errlen, "no such account");
    const char *hash = strchr(qr, '#');
    const char *body = hash ? hash + 1 : qr;
    /* ref,noise,identity,adv[,platform] */
    const char *parts[5] = {0};
    size_t lens[5] = {0};
    int nparts = 0;
    const char *start = body;
    for (const char *q = body;; q++) {
        if (*q == ',' || *q == '\0') {
            if (nparts < 5) {
                parts[nparts] = start;
                lens[nparts] = (size_t)(q - start);
            }
            nparts++;
            start = q + 1;
            if (*q == '\0') break;
        }
    }
    if (nparts < 4 || nparts > 5) return set_err(err, errlen, "QR text has not 4 or 5 fields");
    sim_conn *c = conn_by_ref(s, parts[0], lens[0]);
    if (!c) return set_err(err, errlen, "no connection is showing this QR ref");
    uint8_t noise[32], ident[32], adv[32];
    size_t n1, n2, n3;
    if (!wb_base64_decode(parts[1], lens[1], noise, 32, &n1) || n1 != 32 ||
        !wb_base64_decode(parts[2], lens[2], ident, 32, &n2) || n2 != 32 ||
        !wb_base64_decode(parts[3], lens[3], adv, 32, &n3) || n3 != 32)
        return set_err(err, errlen, "QR keys are not base64 of 32 bytes");
    if (!wa_ct_equal(noise, c->noise_pub, 32) || !wa_ct_equal(ident, c->identity_pub, 32))
        return set_err(err, errlen, "QR keys do not match the connection's");

    return send_pair_success(s, c, acct, adv, err, errlen);
}

int sim_admin_stream_error(sim *s, const char *phone, int device, const char *code, char *err,
                           size_t errlen)
{
    int hits = 0;
    for (sim_conn *c = s->conns; c; c = c->next) {
        if (c->state != SIM_CONN_LOGGED_IN || c->device_index < 0) continue;
        if (strcmp(c->account->phone, phone) != 0) continue;
        if (device >= 0 && c->account->devices[c->device_index].id != device) continue;
        wb_arena a;
        wb_arena_init(&a, 0);
        if (code && *code)
            send_stream_error(s, c, &a, code);
        else
            c->state = SIM_CONN_CLOSING; /* a plain kick */
        wb_arena_free(&a);
        hits++;
    }
    return hits ? 0 : set_err(err, errlen, "no such logged-in connection");
}

int sim_admin_add_device(sim *s, const char *phone, const uint8_t noise_pub[32],
                         const uint8_t identity_pub[32], uint32_t prekeys, char *err, size_t errlen)
{
    sim_account *acct = sim_account_find(s, phone);
    if (!acct) return set_err(err, errlen, "no such account");
    if (acct->ndevices == SIM_MAX_DEVICES) return set_err(err, errlen, "account has 16 devices");
    sim_device *dev = &acct->devices[acct->ndevices];
    memset(dev, 0, sizeof(*dev));
    dev->id = next_device_id(acct);
    memcpy(dev->noise_pub, noise_pub, 32);
    memcpy(dev->identity_pub, identity_pub, 32);
    dev->key_index = acct->next_key_index++;
    dev->prekeys = prekeys;
    dev->present = true;
    acct->ndevices++;
    return dev->id;
}

char *sim_admin_state_json(sim *s)
{
    wb_buf b;
    wb_buf_init(&b);
    char root[65];
    wb_hex_encode(s->root.pub, 32, root);
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "{\"root\":\"%s\",\"accounts\":[", root);
    wb_buf_append(&b, tmp, strlen(tmp));
    for (int i = 0; i < s->naccounts; i++) {
        sim_account *acct = &s->accounts[i];
        snprintf(tmp, sizeof(tmp), "%s{\"phone\":\"%s\",\"lid\":\"%s\",\"devices\":[", i ? "," : "",
                 acct->phone, acct->lid);
        wb_buf_append(&b, tmp, strlen(tmp));
        int shown = 0;
        for (int d = 0; d < acct->ndevices; d++) {
            sim_device *dev = &acct->devices[d];
            if (!dev->present) continue;
            bool online = false;
            for (sim_conn *c = s->conns; c; c = c->next)
                if (c->account == acct && c->device_index == d && c->state == SIM_CONN_LOGGED_IN)
                    online = true;
            snprintf(tmp, sizeof(tmp),
                     "%s{\"id\":%u,\"prekeys\":%u,\"key_index\":%u,\"online\":%s}",
                     shown++ ? "," : "", dev->id, dev->prekeys, dev->key_index,
                     online ? "true" : "false");
            wb_buf_append(&b, tmp, strlen(tmp));
        }
        wb_buf_append(&b, "]}", 2);
    }
    int pairing = 0;
    for (sim_conn *c = s->conns; c; c = c->next)
        if (c->state == SIM_CONN_PAIRING) pairing++;
    snprintf(tmp, sizeof(tmp), "],\"pairing\":%d}", pairing);
    wb_buf_append(&b, tmp, strlen(tmp) + 1);
    return (char *)wb_buf_steal(&b, NULL);
}
