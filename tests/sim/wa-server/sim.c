/*
 * tests/sim/wa-server/sim.c - wa-sim's protocol logic (sim.h): handshake, pairing, login, IQs,
 * messaging (prekey store, usync, per-device queues, receipts, the simulated phone), admin.
 */
#include "sim.h"
#include "sim_group.h"

#include "util/base64.h"
#include "wa/proto/wa.pb.h"
#include "wa/recv.h"
#include "wa/store_mem.h"

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

static void device_release(sim_device *dev);
static void phone_free(sim_phone *p);

void sim_free(sim *s)
{
    while (s->conns)
        sim_conn_free(s, s->conns);
    for (int i = 0; i < s->naccounts; i++) {
        for (int d = 0; d < s->accounts[i].ndevices; d++)
            device_release(&s->accounts[i].devices[d]);
        phone_free(s->accounts[i].primary);
        s->accounts[i].primary = NULL;
    }
    for (size_t i = 0; s->sent && i < SIM_SENT_RING; i++)
        free(s->sent[i].plain);
    free(s->sent);
    sim_groups_free(s);
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

static void presence_changed(sim *s, sim_account *acct);

void sim_conn_free(sim *s, sim_conn *c)
{
    for (sim_conn **p = &s->conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    /* a connection that goes away is unavailable: tell the subscribers if the account went */
    if (c->available && c->account && !sim_account_available(s, c->account)) {
        c->account->last_seen = sim_now(s);
        presence_changed(s, c->account);
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

/* The number the next companion of acct gets: one above the highest ever used (with
 * reuse_device_ids: the lowest one no present device has). */
static uint16_t next_device_id(const sim *s, const sim_account *acct)
{
    uint16_t id = 1;
    if (s->reuse_device_ids) {
        for (bool taken = true; taken; id++) {
            taken = false;
            for (int i = 0; i < acct->ndevices; i++)
                taken |= acct->devices[i].present && acct->devices[i].id == id;
            if (!taken) return id;
        }
    }
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

static void device_jid(const sim_account *acct, uint16_t device, bool lid, char *out, size_t cap);

/* <notification from=PN lid=LID type="devices"><add|remove><device jid key-index/></...>: an
 * account's device list changed; every logged-in connection hears it at once (not queued), as
 * clients cache device lists. */
static void notify_devices(sim *s, const sim_account *acct, const sim_device *dev, bool add)
{
    if (s->quiet_devices) return;
    wb_arena a;
    wb_arena_init(&a, 0);
    char id[24], t[24], pn[64], lid[64], djid[64], ki[16];
    snprintf(id, sizeof(id), "dev%u", s->next_id++);
    snprintf(t, sizeof(t), "%llu", (unsigned long long)sim_now(s));
    device_jid(acct, 0, false, pn, sizeof(pn));
    device_jid(acct, 0, true, lid, sizeof(lid));
    device_jid(acct, dev->id, false, djid, sizeof(djid));
    snprintf(ki, sizeof(ki), "%u", dev->key_index);
    wa_node *n = wa_node_new(&a, "notification");
    wa_node_set_attr(&a, n, "from", pn);
    wa_node_set_attr(&a, n, "lid", lid);
    wa_node_set_attr(&a, n, "type", "devices");
    wa_node_set_attr(&a, n, "id", id);
    wa_node_set_attr(&a, n, "t", t);
    wa_node *ch = wa_node_new(&a, add ? "add" : "remove");
    wa_node *d = wa_node_new(&a, "device");
    wa_node_set_attr(&a, d, "jid", djid);
    wa_node_set_attr(&a, d, "key-index", ki);
    wa_node_add_child(&a, ch, d);
    wa_node_add_child(&a, n, ch);
    for (sim_conn *x = s->conns; x; x = x->next)
        if (x->state == SIM_CONN_LOGGED_IN && x->device_index >= 0 && x->active)
            sim_send_node(s, x, n);
    wb_arena_free(&a);
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
    dev->id = next_device_id(s, acct);
    memcpy(dev->noise_pub, c->noise_pub, 32);
    memcpy(dev->identity_pub, c->identity_pub, 32);
    dev->registration_id = c->registration_id;
    dev->key_index = acct->next_key_index - 1;
    dev->present = true;
    acct->ndevices++;
    logf_(s, "[%llu] paired %s:%u\n", (unsigned long long)c->serial, acct->phone, dev->id);
    notify_devices(s, acct, dev, true);
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

/* --- messaging: addresses, prekeys, the phone's Signal side, queues --- */

static bool valid_id(const char *id)
{
    if (!id) return false;
    size_t n = strlen(id);
    return n > 0 && n <= SIM_ID_MAX;
}

/* The account a PN or LID JID names (any device), or NULL; *lid says which server it used. */
static sim_account *account_of_jid(sim *s, const wa_jid *j, bool *lid)
{
    bool is_lid = strcmp(j->server, WA_SERVER_LID) == 0;
    if (lid) *lid = is_lid;
    if (is_lid) return account_by_lid(s, j->user);
    if (strcmp(j->server, WA_SERVER_PN) == 0 || strcmp(j->server, WA_SERVER_LEGACY) == 0)
        return sim_account_find(s, j->user);
    return NULL;
}

static sim_device *companion(sim_account *acct, uint16_t id)
{
    for (int i = 0; i < acct->ndevices; i++)
        if (acct->devices[i].present && acct->devices[i].id == id) return &acct->devices[i];
    return NULL;
}

/* "user[:device]@server" of an account's device, on the LID or the PN server. */
static void device_jid(const sim_account *acct, uint16_t device, bool lid, char *out, size_t cap)
{
    const char *user = lid ? acct->lid : acct->phone;
    const char *server = lid ? WA_SERVER_LID : WA_SERVER_PN;
    if (device)
        snprintf(out, cap, "%s:%u@%s", user, device, server);
    else
        snprintf(out, cap, "%s@%s", user, server);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* The participant hash the server puts on a message's ack: "2:" and the base64 of the first 6
 * bytes of SHA-256 over the sorted JIDs of every device of the accounts (the phone and the present
 * companions, on the LID or the PN server), each as "user.0:device@server", concatenated (the
 * form whatsmeow compares with its own, participantListHashV2). out[16]. */
void sim_phash(sim_account *const *accts, size_t n, bool lid, char out[16])
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += 1 + (size_t)accts[i]->ndevices;
    char(*jids)[64] = calloc(total ? total : 1, sizeof(*jids));
    const char **sorted = calloc(total ? total : 1, sizeof(*sorted));
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; jids && sorted && i < n; i++) {
        bool dup = false;
        for (size_t p = 0; p < i; p++)
            dup |= accts[p] == accts[i];
        for (int d = -1; !dup && d < accts[i]->ndevices; d++) {
            if (d >= 0 && !accts[i]->devices[d].present) continue;
            snprintf(jids[k], sizeof(jids[k]), "%s.0:%u@%s", lid ? accts[i]->lid : accts[i]->phone,
                     d < 0 ? 0u : (unsigned)accts[i]->devices[d].id,
                     lid ? WA_SERVER_LID : WA_SERVER_PN);
            sorted[k] = jids[k];
            k++;
        }
    }
    if (jids && sorted) {
        qsort(sorted, k, sizeof(*sorted), cmp_str);
        wb_buf all;
        wb_buf_init(&all);
        for (size_t i = 0; i < k; i++)
            wb_buf_append(&all, sorted[i], strlen(sorted[i]));
        uint8_t hash[32];
        if (!all.failed && all.len) {
            wa_sha256(all.data, all.len, hash);
            memcpy(out, "2:", 2);
            wb_base64_encode(hash, 6, out + 2, false);
        }
        wb_buf_free(&all);
    }
    free(jids);
    free(sorted);
}

/* The phone's Signal address name for an account: its LID user with agent 1, whatever server a
 * stanza used (only the phone's own store sees it). */
static void signal_name(const sim_account *acct, char *out, size_t cap)
{
    snprintf(out, cap, "%s_1", acct->lid);
}

static void phone_free(sim_phone *p)
{
    if (!p) return;
    wa_signal_free(p->signal);
    if (p->store.destroy) p->store.destroy(p->store.ctx);
    for (size_t i = 0; i < p->nmsgs; i++)
        free(p->msgs[i].text);
    free(p->msgs);
    free(p);
}

/* The phone of acct with its identity (the account's), a signed prekey and a Signal store; made on
 * first use. NULL when out of memory. */
static sim_phone *phone_of(sim *s, sim_account *acct)
{
    if (acct->primary) return acct->primary;
    sim_phone *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    if (wa_store_mem_new(&p->store) != WA_STORE_OK) {
        free(p);
        return NULL;
    }
    wa_device dev;
    memset(&dev, 0, sizeof(dev));
    dev.identity = acct->identity;
    uint8_t r[2];
    int rc = wa_keypair_generate(s->crypto, &dev.noise);
    if (rc == WA_OK) rc = wa_keypair_generate(s->crypto, &dev.signed_prekey);
    if (rc == WA_OK) rc = wa_random(s->crypto, r, sizeof(r));
    dev.registration_id = ((uint32_t)r[0] << 8 | r[1]) & 0x3fff;
    if (!dev.registration_id) dev.registration_id = 1;
    dev.signed_prekey_id = 1;
    uint8_t msg[33] = {0x05};
    memcpy(msg + 1, dev.signed_prekey.pub, 32);
    if (rc == WA_OK)
        rc = wa_xeddsa_sign(s->crypto, acct->identity.priv, msg, 33, dev.signed_prekey_sig);
    dev.paired = true;
    dev.next_prekey_id = 1;
    snprintf(dev.pn, sizeof(dev.pn), "%s@%s", acct->phone, WA_SERVER_PN);
    snprintf(dev.lid, sizeof(dev.lid), "%s@%s", acct->lid, WA_SERVER_LID);
    int err = WA_OK;
    if (rc == WA_OK && p->store.device_save(p->store.ctx, &dev) == WA_STORE_OK)
        p->signal = wa_signal_new(s->crypto, &p->store, &err);
    p->registration_id = dev.registration_id;
    p->signed_prekey_id = dev.signed_prekey_id;
    memcpy(p->signed_prekey, dev.signed_prekey.pub, 32);
    memcpy(p->signed_prekey_sig, dev.signed_prekey_sig, 64);
    p->next_prekey_id = 1;
    wa_wipe(&dev, sizeof(dev));
    if (!p->signal) {
        logf_(s, "phone %s: cannot set up Signal (%s)\n", acct->phone, wa_strerror(err));
        phone_free(p);
        return NULL;
    }
    acct->primary = p;
    return p;
}

/* Takes a bundle for device `dev` of acct (0: the phone), consuming a one-time prekey when one is
 * left. -1 when the device is unknown or has not uploaded its keys. */
static int take_bundle(sim *s, sim_account *acct, uint16_t dev, wa_prekey_bundle *b)
{
    memset(b, 0, sizeof(*b));
    if (dev == 0) {
        sim_phone *p = phone_of(s, acct);
        if (!p) return -1;
        wa_prekey pk = {.id = p->next_prekey_id, .uploaded = true};
        if (wa_keypair_generate(s->crypto, &pk.key) != WA_OK ||
            p->store.prekeys_save(p->store.ctx, &pk, 1) != WA_STORE_OK)
            return -1;
        p->next_prekey_id = (p->next_prekey_id % 0xffffff) + 1;
        b->registration_id = p->registration_id;
        b->has_prekey = true;
        b->prekey_id = pk.id;
        memcpy(b->prekey, pk.key.pub, 32);
        wa_wipe(&pk, sizeof(pk));
        b->signed_prekey_id = p->signed_prekey_id;
        memcpy(b->signed_prekey, p->signed_prekey, 32);
        memcpy(b->signature, p->signed_prekey_sig, 64);
        memcpy(b->identity, acct->identity.pub, 32);
        return 0;
    }
    sim_device *d = companion(acct, dev);
    if (!d || !d->has_keys) return -1;
    b->registration_id = d->registration_id;
    if (d->notks) { /* oldest first */
        b->has_prekey = true;
        b->prekey_id = d->otks[0].id;
        memcpy(b->prekey, d->otks[0].pub, 32);
        memmove(d->otks, d->otks + 1, (d->notks - 1) * sizeof(*d->otks));
        d->notks--;
    }
    if (d->prekeys) d->prekeys--;
    b->signed_prekey_id = d->signed_prekey_id;
    memcpy(b->signed_prekey, d->signed_prekey, 32);
    memcpy(b->signature, d->signed_prekey_sig, 64);
    memcpy(b->identity, d->identity_pub, 32);
    return 0;
}

static void put_be(uint8_t *out, uint32_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* <user jid><registration/><type/><identity/><skey><id/><value/><signature/></skey>[<key>]</user>,
 * as the transcript shows. */
static wa_node *bundle_node(wb_arena *a, const char *jid, const wa_prekey_bundle *b)
{
    uint8_t reg[4], skid[3], kid[3], type = 5;
    put_be(reg, b->registration_id, 4);
    put_be(skid, b->signed_prekey_id, 3);
    put_be(kid, b->prekey_id, 3);
    wa_node *u = wa_node_new(a, "user");
    wa_node_set_attr(a, u, "jid", jid);
    wa_node_add_child(a, u, child_with_bytes(a, "registration", reg, 4));
    wa_node_add_child(a, u, child_with_bytes(a, "type", &type, 1));
    wa_node_add_child(a, u, child_with_bytes(a, "identity", b->identity, 32));
    wa_node *skey = wa_node_new(a, "skey");
    wa_node_add_child(a, skey, child_with_bytes(a, "id", skid, 3));
    wa_node_add_child(a, skey, child_with_bytes(a, "value", b->signed_prekey, 32));
    wa_node_add_child(a, skey, child_with_bytes(a, "signature", b->signature, 64));
    wa_node_add_child(a, u, skey);
    if (b->has_prekey) {
        wa_node *key = wa_node_new(a, "key");
        wa_node_add_child(a, key, child_with_bytes(a, "id", kid, 3));
        wa_node_add_child(a, key, child_with_bytes(a, "value", b->prekey, 32));
        wa_node_add_child(a, u, key);
    }
    return u;
}

/* encrypt set: registration id, identity, one-time prekeys and the signed prekey. Malformed
 * entries are skipped. */
static void on_prekey_upload(sim *s, sim_conn *c, wa_node *iq)
{
    if (c->device_index < 0) return;
    sim_device *dev = &c->account->devices[c->device_index];
    const wa_node *reg = child_bytes(iq, "registration", 4);
    const wa_node *ident = child_bytes(iq, "identity", 32);
    const wa_node *skey = wa_node_child(iq, "skey");
    if (reg) u32_be(reg->data, 4, &dev->registration_id);
    if (ident) memcpy(dev->identity_pub, ident->data, 32);
    if (skey) {
        const wa_node *id = child_bytes(skey, "id", 3), *val = child_bytes(skey, "value", 32);
        const wa_node *sig = child_bytes(skey, "signature", 64);
        if (id && val && sig) {
            u32_be(id->data, 3, &dev->signed_prekey_id);
            memcpy(dev->signed_prekey, val->data, 32);
            memcpy(dev->signed_prekey_sig, sig->data, 64);
            dev->has_keys = true;
        } else {
            logf_(s, "[%llu] prekey upload: malformed <skey>\n", (unsigned long long)c->serial);
        }
    }
    wa_node *list = wa_node_child(iq, "list");
    uint32_t added = 0;
    for (size_t i = 0; list && list->kind == WA_CONTENT_LIST && i < list->nchildren; i++) {
        const wa_node *k = list->children[i];
        const wa_node *id = child_bytes(k, "id", 3), *val = child_bytes(k, "value", 32);
        if (strcmp(k->tag, "key") != 0 || !id || !val) continue;
        if (dev->notks >= SIM_PREKEYS_MAX) break;
        if (dev->notks == dev->otks_cap) {
            size_t cap = dev->otks_cap ? dev->otks_cap * 2 : 1024;
            sim_prekey *grown = realloc(dev->otks, cap * sizeof(*grown));
            if (!grown) break;
            dev->otks = grown;
            dev->otks_cap = cap;
        }
        sim_prekey *pk = &dev->otks[dev->notks++];
        u32_be(id->data, 3, &pk->id);
        memcpy(pk->pub, val->data, 32);
        added++;
    }
    dev->prekeys += added;
}

static void queue_clear(sim_device *dev)
{
    sim_queued *q = dev->queue_head;
    while (q) {
        sim_queued *next = q->next;
        free(q->node);
        free(q);
        q = next;
    }
    dev->queue_head = dev->queue_tail = NULL;
    dev->queued = 0;
}

/* A companion removed or freed: forget its keys and what waited for it. */
static void device_release(sim_device *dev)
{
    queue_clear(dev);
    free(dev->otks);
    dev->otks = NULL;
    dev->notks = dev->otks_cap = 0;
    dev->has_keys = false;
}

/* Sends a queued stanza on c, with offline="1" when it waited for this login. */
static void send_queued(sim *s, sim_conn *c, const sim_queued *q, bool offline)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *n;
    if (wa_binary_decode(q->node, q->node_len, &a, &n, NULL) == WA_OK) {
        if (offline) wa_node_set_attr(&a, n, "offline", "1");
        sim_send_node(s, c, n);
    }
    wb_arena_free(&a);
}

/* Queues n for a companion of acct and sends it at once on the device's live connections. */
static void deliver(sim *s, sim_account *acct, sim_device *dev, const wa_node *n, bool is_receipt,
                    const char *id)
{
    if (dev->queued >= SIM_QUEUE_MAX) {
        logf_(s, "queue of %s:%u is full: %s %s dropped\n", acct->phone, dev->id,
              is_receipt ? "receipt" : "message", id);
        return;
    }
    sim_queued *q = calloc(1, sizeof(*q));
    wb_buf b;
    wb_buf_init(&b);
    if (!q || wa_binary_encode(n, &b) != WA_OK || b.failed || !b.len) {
        logf_(s, "cannot queue %s for %s:%u\n", id, acct->phone, dev->id);
        free(q);
        wb_buf_free(&b);
        return;
    }
    q->node = wb_buf_steal(&b, &q->node_len);
    q->is_receipt = is_receipt;
    snprintf(q->id, sizeof(q->id), "%s", id);
    if (dev->queue_tail)
        dev->queue_tail->next = q;
    else
        dev->queue_head = q;
    dev->queue_tail = q;
    dev->queued++;
    int index = (int)(dev - acct->devices);
    for (sim_conn *c = s->conns; c; c = c->next) {
        if (c->active && c->state == SIM_CONN_LOGGED_IN && c->account == acct &&
            c->device_index == index) {
            send_queued(s, c, q, false);
            q->delivered = true;
        }
    }
}

/* Removes what the device acked: entries of that class and id. Returns how many. */
static int queue_ack(sim_device *dev, bool is_receipt, const char *id)
{
    int removed = 0;
    sim_queued *prev = NULL;
    sim_queued **pp = &dev->queue_head;
    while (*pp) {
        sim_queued *q = *pp;
        if (q->is_receipt == is_receipt && strcmp(q->id, id) == 0) {
            *pp = q->next;
            if (dev->queue_tail == q) dev->queue_tail = prev;
            free(q->node);
            free(q);
            dev->queued--;
            removed++;
        } else {
            prev = q;
            pp = &q->next;
        }
    }
    return removed;
}

/* --- the Message protobuf, as far as the phone needs it (field numbers of WAProto.proto) --- */

static void pb_varint(wb_buf *b, uint64_t v)
{
    while (v >= 0x80) {
        wb_buf_u8(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    wb_buf_u8(b, (uint8_t)v);
}

static void pb_bytes(wb_buf *b, uint32_t field, const void *p, size_t n)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    if (n) wb_buf_append(b, p, n);
}

/* Message{conversation = 1}; with dest, Message{deviceSentMessage = 31{destinationJid = 1,
 * message = 2}} for the sender's own devices. */
static void encode_text(wb_buf *out, const char *text, const char *dest)
{
    wb_buf inner, dsm;
    wb_buf_init(&inner);
    wb_buf_init(&dsm);
    pb_bytes(&inner, 1, text, strlen(text));
    if (!dest) {
        wb_buf_append(out, inner.data, inner.len);
    } else {
        pb_bytes(&dsm, 1, dest, strlen(dest));
        pb_bytes(&dsm, 2, inner.data, inner.len);
        pb_bytes(out, 31, dsm.data, dsm.len);
    }
    if (inner.failed || dsm.failed) out->failed = true;
    wb_buf_free(&inner);
    wb_buf_free(&dsm);
}

static bool pb_read_varint(wb_cur *c, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t byte;
        if (!wb_cur_u8(c, &byte)) return false;
        r |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* Reads the next field: false at the end, or with *bad set on bytes that are not protobuf.
 * Length-delimited values land in *value (*is_bytes); other wire types are skipped. */
static bool pb_next(wb_cur *c, uint32_t *field, wb_cur *value, bool *is_bytes, bool *bad)
{
    if (!wb_cur_left(c)) return false;
    uint64_t key, v;
    *is_bytes = false;
    if (!pb_read_varint(c, &key) || key >> 3 == 0 || key >> 3 > 0x1fffffff) goto bad;
    *field = (uint32_t)(key >> 3);
    switch (key & 7) {
    case 0:
        if (!pb_read_varint(c, &v)) goto bad;
        return true;
    case 1:
        if (!wb_cur_skip(c, 8)) goto bad;
        return true;
    case 5:
        if (!wb_cur_skip(c, 4)) goto bad;
        return true;
    case 2:
        if (!pb_read_varint(c, &v) || v > wb_cur_left(c) || !wb_cur_sub(c, (size_t)v, value))
            goto bad;
        *is_bytes = true;
        return true;
    default: goto bad; /* groups are not used by WhatsApp */
    }
bad:
    *bad = true;
    return false;
}

/* The text of a Message: conversation (1), extendedTextMessage (6).text (1), or the same inside
 * deviceSentMessage (31).message (2), whose destinationJid (1) goes to dest. -1 on bad bytes. */
static int decode_text(wb_cur msg, int depth, wb_buf *text, char *dest, size_t dest_cap)
{
    uint32_t f, g;
    wb_cur v, w;
    bool is_bytes, inner_bytes, bad = false;
    while (pb_next(&msg, &f, &v, &is_bytes, &bad)) {
        if (!is_bytes) continue;
        if (f == 1) {
            text->len = 0;
            wb_buf_append(text, v.data, v.len);
        } else if (f == 6) {
            while (pb_next(&v, &g, &w, &inner_bytes, &bad))
                if (inner_bytes && g == 1) {
                    text->len = 0;
                    wb_buf_append(text, w.data, w.len);
                }
        } else if (f == 31 && depth == 0) {
            while (pb_next(&v, &g, &w, &inner_bytes, &bad)) {
                if (inner_bytes && g == 1 && dest && w.len < dest_cap) {
                    memcpy(dest, w.data, w.len);
                    dest[w.len] = '\0';
                } else if (inner_bytes && g == 2 && decode_text(w, depth + 1, text, NULL, 0) != 0) {
                    bad = true;
                }
            }
        }
    }
    return bad ? -1 : 0;
}

/* --- the phone receives --- */

/* Records a message the phone received; returns it (NULL when not kept). */
static sim_phone_msg *phone_record(sim *s, sim_account *acct, const char *sender, const char *chat,
                                   const char *id, const uint8_t *text, size_t text_len, bool own,
                                   bool failed)
{
    sim_phone *p = acct->primary;
    if (!p || p->nmsgs == SIM_PHONE_MSGS) return NULL;
    if ((p->nmsgs & (p->nmsgs - 1)) == 0) { /* 0, 1, 2, 4, ...: grow to the next power of two */
        sim_phone_msg *grown = realloc(p->msgs, (p->nmsgs ? p->nmsgs * 2 : 1) * sizeof(*grown));
        if (!grown) return NULL;
        p->msgs = grown;
    }
    sim_phone_msg *m = &p->msgs[p->nmsgs];
    memset(m, 0, sizeof(*m));
    m->text = malloc(text_len + 1);
    if (!m->text) return NULL;
    if (text_len) memcpy(m->text, text, text_len);
    m->text[text_len] = '\0';
    snprintf(m->sender, sizeof(m->sender), "%s", sender);
    m->rx_us = s->frame_rx_us;
    snprintf(m->chat, sizeof(m->chat), "%s", chat);
    snprintf(m->id, sizeof(m->id), "%s", id);
    m->t = sim_now(s);
    m->own = own;
    m->failed = failed;
    p->nmsgs++;
    logf_(s, "phone %s got %s from %s: %s%s\n", acct->phone, id, sender, failed ? "FAILED " : "",
          m->text);
    return m;
}

/* An <enc> for the phone of acct from device from_dev of from_acct. Returns 0 when it decrypted. */
static int phone_receive(sim *s, sim_account *acct, sim_account *from_acct, uint16_t from_dev,
                         const char *sender, const char *chat, const char *id, const wa_node *enc)
{
    sim_phone *p = phone_of(s, acct);
    if (!p) return -1;
    const char *type = wa_node_attr(enc, "type");
    const char *why = NULL;
    if (enc->kind != WA_CONTENT_BYTES || !type)
        why = "no ciphertext";
    else if (strcmp(type, "pkmsg") != 0 && strcmp(type, "msg") != 0)
        why = "not a pkmsg or msg (groups are not simulated)";
    if (why) {
        phone_record(s, acct, sender, chat, id, (const uint8_t *)why, strlen(why), false, true);
        return -1;
    }
    char name[40];
    signal_name(from_acct, name, sizeof(name));
    wb_buf plain, text;
    wb_buf_init(&plain);
    wb_buf_init(&text);
    int rc = wa_signal_decrypt(p->signal, name, from_dev,
                               strcmp(type, "pkmsg") == 0 ? WA_SIGNAL_PKMSG : WA_SIGNAL_MSG,
                               enc->data, enc->data_len, &plain);
    char dest[64] = "";
    if (rc == WA_OK) {
        wb_cur cur;
        wb_cur_init(&cur, plain.data, plain.len);
        if (decode_text(cur, 0, &text, dest, sizeof(dest)) != 0 || text.failed) rc = WA_ERR_PROTO;
    }
    bool own = from_acct == acct;
    wa_msg parsed;
    if (rc == WA_OK && wa_message_parse(plain.data, plain.len, &parsed) != WA_OK) rc = WA_ERR_PROTO;
    bool seen = false; /* phones show a message id once: a resend with the same id is a repeat */
    for (size_t i = 0; rc == WA_OK && i < p->nmsgs && !seen; i++)
        seen = !p->msgs[i].failed && strcmp(p->msgs[i].id, id) == 0 &&
               strcmp(p->msgs[i].sender, sender) == 0;
    if (seen) {
        logf_(s, "phone %s: %s from %s again: a repeat, not shown twice\n", acct->phone, id,
              sender);
        wa_msg_free(&parsed);
    } else if (rc == WA_OK) {
        /* what the phone would show: the text, an edit's new text, a reaction's emoji */
        const char *shown = parsed.kind == WA_MSG_EDIT       ? parsed.text
                            : parsed.kind == WA_MSG_REACTION ? parsed.reaction
                                                             : NULL;
        sim_phone_msg *m = phone_record(s, acct, sender, own && dest[0] ? dest : chat, id,
                                        shown ? (const uint8_t *)shown : text.data,
                                        shown ? strlen(shown) : text.len, own, false);
        if (m) {
            snprintf(m->kind, sizeof(m->kind), "%s", wa_msg_kind_name(parsed.kind));
            snprintf(m->target, sizeof(m->target), "%s", parsed.target.id);
        }
        wa_msg_free(&parsed);
    } else {
        char msg[96];
        snprintf(msg, sizeof(msg), "cannot read: %s", wa_strerror(rc));
        phone_record(s, acct, sender, chat, id, (const uint8_t *)msg, strlen(msg), own, true);
    }
    wb_buf_free(&plain);
    wb_buf_free(&text);
    return rc == WA_OK ? 0 : -1;
}

/* --- routing --- */

/* Remembers that device from_dev of `from` sent message id to `to`. */
static void sent_note(sim *s, sim_account *from, uint16_t from_dev, sim_account *to, const char *id)
{
    if (!s->sent && !(s->sent = calloc(SIM_SENT_RING, sizeof(*s->sent)))) return;
    sim_sent *e = &s->sent[s->sent_next];
    s->sent_next = (s->sent_next + 1) % SIM_SENT_RING;
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->from = from;
    e->from_device = from_dev;
    e->to = to;
    free(e->plain);
    e->plain = NULL;
    e->plain_len = 0;
}

/* The newest record of message id sent to `to`, or NULL. */
static const sim_sent *sent_find(const sim *s, const sim_account *to, const char *id)
{
    for (size_t k = 0; s->sent && k < SIM_SENT_RING; k++) {
        const sim_sent *e = &s->sent[(s->sent_next + SIM_SENT_RING - 1 - k) % SIM_SENT_RING];
        if (e->to == to && strcmp(e->id, id) == 0) return e;
    }
    return NULL;
}

/* <message from id t type [notify] [recipient] [sender_lid|sender_pn]> for one device. */
static wa_node *message_node(sim *s, wb_arena *a, const sim_account *from, uint16_t from_dev,
                             bool lid, const char *id, const char *type, const char *recipient)
{
    char jid[64], alt[64], t[24];
    device_jid(from, from_dev, lid, jid, sizeof(jid));
    device_jid(from, 0, !lid, alt, sizeof(alt));
    snprintf(t, sizeof(t), "%llu", (unsigned long long)sim_now(s));
    wa_node *n = wa_node_new(a, "message");
    wa_node_set_attr(a, n, "from", jid);
    wa_node_set_attr(a, n, "id", id);
    wa_node_set_attr(a, n, "t", t);
    wa_node_set_attr(a, n, "type", type ? type : "text");
    if (recipient)
        wa_node_set_attr(a, n, "recipient", recipient);
    else
        wa_node_set_attr(a, n, "notify", from->name);
    wa_node_set_attr(a, n, lid ? "sender_pn" : "sender_lid", alt);
    return n;
}

/* A receipt from `who` (user, or its device for retries) to a device of the sender. */
static wa_node *receipt_node(sim *s, wb_arena *a, const sim_account *who, uint16_t who_dev,
                             bool lid, const char *id, const char *type)
{
    char jid[64], t[24];
    device_jid(who, who_dev, lid, jid, sizeof(jid));
    snprintf(t, sizeof(t), "%llu", (unsigned long long)sim_now(s));
    wa_node *n = wa_node_new(a, "receipt");
    wa_node_set_attr(a, n, "from", jid);
    wa_node_set_attr(a, n, "id", id);
    wa_node_set_attr(a, n, "t", t);
    if (type) wa_node_set_attr(a, n, "type", type);
    return n;
}

#define SIM_MAX_ENCS  4 /* <enc> children per <to> we pass on */
#define SIM_RETRY_MAX 5 /* retry receipts a phone sends for one message */

/* The phone of acct could not read message id from device `dev` of `from` (sender: that device's
 * JID): it asks again, as WhatsApp clients do, with <receipt type="retry"><retry count id t v/>
 * <registration/> and, since it has no session with that device (it lost its state) or from the
 * second attempt, <keys> to start one: a fresh one-time prekey, the signed prekey, its identity. */
static void phone_retry(sim *s, wb_arena *a, sim_account *acct, sim_account *from, sim_device *dev,
                        bool lid, const char *id, const char *sender)
{
    sim_phone *p = acct->primary;
    if (!p) return;
    int count = 0;
    for (size_t i = 0; i < p->nmsgs; i++)
        count += p->msgs[i].failed && strcmp(p->msgs[i].id, id) == 0 &&
                 strcmp(p->msgs[i].sender, sender) == 0;
    if (count < 1 || count > SIM_RETRY_MAX) return;
    char name[40], cnt[16], t[24];
    signal_name(from, name, sizeof(name));
    wa_prekey_bundle b;
    bool keys = count > 1 || !wa_signal_has_session(p->signal, name, dev->id);
    if (take_bundle(s, acct, 0, &b) != 0) return;
    wa_node *r = receipt_node(s, a, acct, 0, lid, id, "retry");
    wa_node *retry = wa_node_new(a, "retry");
    snprintf(cnt, sizeof(cnt), "%d", count);
    snprintf(t, sizeof(t), "%llu", (unsigned long long)sim_now(s));
    wa_node_set_attr(a, retry, "count", cnt);
    wa_node_set_attr(a, retry, "id", id);
    wa_node_set_attr(a, retry, "t", t);
    wa_node_set_attr(a, retry, "v", "1");
    wa_node_add_child(a, r, retry);
    wa_node *bn = bundle_node(a, sender, &b); /* <registration> and the keys, as a bundle has */
    wa_node_add_child(a, r, (wa_node *)wa_node_child(bn, "registration"));
    if (keys) {
        wa_node *k = wa_node_new(a, "keys");
        static const char *const parts[] = {"type", "identity", "key", "skey"};
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
            const wa_node *x = wa_node_child(bn, parts[i]);
            if (x) wa_node_add_child(a, k, (wa_node *)x);
        }
        wa_node_add_child(a, r, k);
    }
    logf_(s, "phone %s asks %s again for %s (count %d%s)\n", acct->phone, sender, id, count,
          keys ? ", keys" : "");
    deliver(s, from, dev, r, true, id);
}

/* One <to jid> of a client's message: to the phone (decrypted here) or to a companion's queue. */
static void route_to_device(sim *s, sim_conn *c, wb_arena *a, const wa_node *msg, const char *to,
                            bool lid, const wa_jid *target, wa_node **encs, size_t nencs)
{
    const char *id = wa_node_attr(msg, "id");
    sim_account *me = c->account;
    sim_device *my = &me->devices[c->device_index];
    sim_account *ta = account_of_jid(s, target, NULL);
    if (!ta || (ta == me && target->device == my->id) || nencs == 0) {
        logf_(s, "[%llu] message %s: no such device %s:%u (or nothing for it)\n",
              (unsigned long long)c->serial, id, target->user, target->device);
        return;
    }
    bool own = ta == me;
    if (target->device == 0) {
        char sender[64], chat[64];
        device_jid(me, my->id, lid, sender, sizeof(sender));
        device_jid(me, 0, lid, chat, sizeof(chat));
        int ok = 0;
        for (size_t i = 0; i < nencs; i++)
            ok |= phone_receive(s, ta, me, my->id, sender, own ? to : chat, id, encs[i]) == 0;
        if (ok && !own) /* the phone confirms delivery to the sending device */
            deliver(s, me, my, receipt_node(s, a, ta, 0, lid, id, NULL), true, id);
        else if (!own)
            phone_retry(s, a, ta, me, my, lid, id, sender);
        return;
    }
    sim_device *td = companion(ta, target->device);
    if (!td) {
        logf_(s, "[%llu] message %s: %s:%u is not a device\n", (unsigned long long)c->serial, id,
              target->user, target->device);
        return;
    }
    wa_node *n =
        message_node(s, a, me, my->id, lid, id, wa_node_attr(msg, "type"), own ? to : NULL);
    static const char *const copied[] = {"category", "edit"};
    for (size_t i = 0; i < sizeof(copied) / sizeof(copied[0]); i++) {
        const char *v = wa_node_attr(msg, copied[i]);
        if (v) wa_node_set_attr(a, n, copied[i], v);
    }
    bool corrupt = s->corrupt_left > 0 && strcmp(ta->phone, s->corrupt_phone) == 0;
    if (corrupt) s->corrupt_left--;
    for (size_t i = 0; i < nencs; i++) {
        wa_node *enc = encs[i];
        if (corrupt && enc->data_len > 20) {
            /* a copy with one flipped byte inside the ciphertext (the MAC will not match) */
            wa_node *bad = wa_node_new(a, "enc");
            for (size_t k = 0; k < enc->nattrs; k++)
                wa_node_set_attr_len(a, bad, enc->attrs[k].key, enc->attrs[k].value,
                                     enc->attrs[k].value_len);
            wa_node_set_bytes(a, bad, enc->data, enc->data_len);
            ((uint8_t *)bad->data)[bad->data_len - 12] ^= 0x01;
            enc = bad;
            logf_(s, "[%llu] message %s: corrupted for %s:%u (fault injection)\n",
                  (unsigned long long)c->serial, id, ta->phone, target->device);
        }
        wa_node_add_child(a, n, enc);
    }
    wa_node *di = wa_node_child(msg, "device-identity");
    if (di) wa_node_add_child(a, n, di);
    deliver(s, ta, td, n, false, id);
}

/* The <enc> children of n that carry bytes (at most SIM_MAX_ENCS). */
static size_t enc_children(const wa_node *n, wa_node **encs)
{
    size_t k = 0;
    for (size_t i = 0; n->kind == WA_CONTENT_LIST && i < n->nchildren && k < SIM_MAX_ENCS; i++)
        if (strcmp(n->children[i]->tag, "enc") == 0 && n->children[i]->kind == WA_CONTENT_BYTES)
            encs[k++] = n->children[i];
    return k;
}

/* A client sends: <message id to type><participants><to jid><enc/></to>...</participants>
 * [<device-identity/>]</message>, or <enc> directly for one device (retries, peer messages). */
static void on_message(sim *s, sim_conn *c, wb_arena *a, wa_node *msg)
{
    const char *id = wa_node_attr(msg, "id");
    const char *to = wa_node_attr(msg, "to");
    if (c->state != SIM_CONN_LOGGED_IN || c->device_index < 0 || !valid_id(id) || !to) {
        logf_(s, "[%llu] message without id or to, or before login: ignored\n",
              (unsigned long long)c->serial);
        return;
    }
    if (sim_group_is_jid(to)) {
        sim_group_on_message(s, c, a, msg); /* sim_group.c */
        return;
    }
    wa_jid chat;
    bool lid = false;
    bool chat_ok = wa_jid_parse_cstr(to, &chat) == WA_OK && account_of_jid(s, &chat, &lid);
    wa_node *encs[SIM_MAX_ENCS];
    wa_node *parts = wa_node_child(msg, "participants");
    if (chat_ok)
        sent_note(s, c->account, c->account->devices[c->device_index].id,
                  account_of_jid(s, &chat, NULL), id);
    if (!chat_ok) {
        logf_(s, "[%llu] message %s to %s: only 1:1 chats with known accounts are simulated\n",
              (unsigned long long)c->serial, id, to);
    } else if (parts) {
        for (size_t i = 0; parts->kind == WA_CONTENT_LIST && i < parts->nchildren; i++) {
            wa_node *p = parts->children[i];
            wa_jid target;
            if (strcmp(p->tag, "to") != 0 || wa_node_attr_jid(p, "jid", &target) != WA_OK) continue;
            route_to_device(s, c, a, msg, to, lid, &target, encs, enc_children(p, encs));
        }
    } else {
        route_to_device(s, c, a, msg, to, lid, &chat, encs, enc_children(msg, encs));
    }
    char t[24], phash[16] = "";
    snprintf(t, sizeof(t), "%llu", (unsigned long long)sim_now(s));
    wa_node *ack = wa_node_new(a, "ack");
    wa_node_set_attr(a, ack, "class", "message");
    wa_node_set_attr(a, ack, "id", id);
    wa_node_set_attr(a, ack, "from", to);
    wa_node_set_attr(a, ack, "t", t);
    if (chat_ok && parts) { /* a fan-out: the devices the server knows for it */
        sim_account *accts[2] = {account_of_jid(s, &chat, NULL), c->account};
        sim_phash(accts, 2, lid, phash);
        if (phash[0]) wa_node_set_attr(a, ack, "phash", phash);
    }
    sim_send_node(s, c, ack);
}

/* A client's <receipt id to [type]>[<list><item id/>...]: acks those messages for this device and
 * goes on to the devices that sent them (delivered, read, played, retry): one receipt per sending
 * device, its first id as the receipt's id and the others in its <list>. */
static int phone_retry_encrypt(sim *s, sim_phone *p, sim_account *acct, uint16_t dev,
                               const wa_node *r, const wb_buf *plain, wb_buf *out,
                               wa_signal_type *type);

/* The phone that sent m answers the retry receipt r of device dev of acct, as WhatsApp's phones
 * do: the same content encrypted again (a new session from the receipt's keys when it has them),
 * in a <message> like the first with <enc count> for that device only. */
static void phone_resend(sim *s, wb_arena *a, const sim_sent *m, sim_account *acct, sim_device *dev,
                         bool lid, const wa_node *r)
{
    sim_phone *p = phone_of(s, m->from);
    const wa_node *retry = wa_node_child(r, "retry");
    const char *count = retry ? wa_node_attr(retry, "count") : NULL;
    wb_buf plain, ct;
    wb_buf_init(&plain);
    wb_buf_init(&ct);
    wb_buf_append(&plain, m->plain, m->plain_len);
    wa_signal_type t;
    int rc = p ? phone_retry_encrypt(s, p, acct, dev->id, r, &plain, &ct, &t) : -1;
    if (rc == 0) {
        wa_node *n = message_node(s, a, m->from, 0, lid, m->id, m->type, NULL);
        if (m->edit[0]) wa_node_set_attr(a, n, "edit", m->edit);
        wa_node *enc = wa_node_new(a, "enc");
        wa_node_set_attr(a, enc, "v", "2");
        wa_node_set_attr(a, enc, "type", t == WA_SIGNAL_PKMSG ? "pkmsg" : "msg");
        wa_node_set_attr(a, enc, "count", count ? count : "1");
        if (m->hide_fail) wa_node_set_attr(a, enc, "decrypt-fail", "hide");
        wa_node_set_bytes(a, enc, ct.data, ct.len);
        wa_node_add_child(a, n, enc);
        deliver(s, acct, dev, n, false, m->id);
    }
    logf_(s, "phone %s %s %s again for %s:%u (retry %s)\n", m->from->phone,
          rc == 0 ? "sent" : "cannot send", m->id, acct->phone, dev->id, count ? count : "?");
    if (plain.data) wa_wipe(plain.data, plain.len);
    wb_buf_free(&plain);
    wb_buf_free(&ct);
}

static void on_receipt(sim *s, sim_conn *c, wb_arena *a, wa_node *r)
{
    const char *id = wa_node_attr(r, "id"), *to = wa_node_attr(r, "to");
    const char *type = wa_node_attr(r, "type");
    if (c->state != SIM_CONN_LOGGED_IN || c->device_index < 0 || !valid_id(id)) return;
    sim_account *me = c->account;
    sim_device *my = &me->devices[c->device_index];
    const char *ids[SIM_RECEIPT_IDS];
    size_t nids = 0;
    ids[nids++] = id;
    queue_ack(my, false, id);
    wa_node *list = wa_node_child(r, "list");
    for (size_t i = 0; list && list->kind == WA_CONTENT_LIST && i < list->nchildren; i++) {
        const char *item = wa_node_attr(list->children[i], "id");
        if (!valid_id(item)) continue;
        queue_ack(my, false, item);
        if (nids < SIM_RECEIPT_IDS) ids[nids++] = item;
    }
    if (sim_group_is_jid(to)) {
        sim_group_on_receipt(s, c, a, r); /* sim_group.c */
        return;
    }
    bool delivered = !type || strcmp(type, "inactive") == 0;
    bool retry = type && strcmp(type, "retry") == 0;
    if (!to || !(delivered || retry || strcmp(type, "read") == 0 || strcmp(type, "played") == 0))
        return; /* sender, peer_msg, hist_sync, read-self...: nothing for the sender */
    wa_jid tj;
    bool lid = false;
    sim_account *ta = wa_jid_parse_cstr(to, &tj) == WA_OK ? account_of_jid(s, &tj, &lid) : NULL;
    /* the sending device of each message: remembered from the message, else the one `to` names */
    struct {
        sim_account *acct;
        uint16_t dev;
        wa_node *receipt, *list;
    } out[SIM_RECEIPT_IDS];
    size_t nout = 0;
    for (size_t k = 0; k < nids; k++) {
        const sim_sent *orig = sent_find(s, me, ids[k]);
        if (retry && k == 0 && orig && orig->from_device == 0 && orig->plain && orig->from != me) {
            phone_resend(s, a, orig, me, my, lid, r);
            return;
        }
        sim_account *sender = orig ? orig->from : ta;
        uint16_t dev = orig ? orig->from_device : (ta ? tj.device : 0);
        if (!sender || sender == me || dev == 0 || !companion(sender, dev))
            continue; /* the phone needs no receipts */
        size_t o = 0;
        while (o < nout && !(out[o].acct == sender && out[o].dev == dev))
            o++;
        if (o == nout) {
            out[o].acct = sender;
            out[o].dev = dev;
            out[o].list = NULL;
            out[o].receipt =
                receipt_node(s, a, me, retry ? my->id : 0, lid, ids[k], delivered ? NULL : type);
            for (size_t i = 0; retry && r->kind == WA_CONTENT_LIST && i < r->nchildren; i++)
                wa_node_add_child(a, out[o].receipt, r->children[i]); /* <retry>, <keys>... */
            nout++;
            continue;
        }
        if (!out[o].list) {
            out[o].list = wa_node_new(a, "list");
            wa_node_add_child(a, out[o].receipt, out[o].list);
        }
        wa_node *item = wa_node_new(a, "item");
        wa_node_set_attr(a, item, "id", ids[k]);
        wa_node_add_child(a, out[o].list, item);
    }
    for (size_t o = 0; o < nout; o++)
        deliver(s, out[o].acct, companion(out[o].acct, out[o].dev), out[o].receipt, true,
                wa_node_attr(out[o].receipt, "id"));
}

/* --- presence and chat state --- */

bool sim_account_available(const sim *s, const sim_account *acct)
{
    for (const sim_conn *c = s->conns; c; c = c->next)
        if (c->account == acct && c->available && c->state == SIM_CONN_LOGGED_IN) return true;
    return false;
}

/* <presence from=acct's user JID type="available|unavailable" [last]> */
static wa_node *presence_node(sim *s, wb_arena *a, const sim_account *acct, bool lid)
{
    char jid[64], last[24];
    device_jid(acct, 0, lid, jid, sizeof(jid));
    bool available = sim_account_available(s, acct);
    wa_node *n = wa_node_new(a, "presence");
    wa_node_set_attr(a, n, "from", jid);
    wa_node_set_attr(a, n, "type", available ? "available" : "unavailable");
    if (!available && acct->last_seen) {
        snprintf(last, sizeof(last), "%llu", (unsigned long long)acct->last_seen);
        wa_node_set_attr(a, n, "last", last);
    }
    return n;
}

/* The account came or went: every connection subscribed to it hears of it. */
static void presence_changed(sim *s, sim_account *acct)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    for (sim_conn *c = s->conns; c; c = c->next) {
        if (c->state != SIM_CONN_LOGGED_IN || c->device_index < 0) continue;
        for (int i = 0; i < c->nsubs; i++)
            if (c->subs[i].account == acct)
                sim_send_node(s, c, presence_node(s, &a, acct, c->subs[i].lid));
    }
    wb_arena_free(&a);
}

/* <presence type="available|unavailable" [name]>, or <presence type="subscribe" to>. Without a
 * type it only tells the server a new push name (Baileys does that): no change. */
static void on_presence(sim *s, sim_conn *c, wb_arena *a, wa_node *n)
{
    if (c->state != SIM_CONN_LOGGED_IN || c->device_index < 0) return;
    const char *type = wa_node_attr(n, "type"), *to = wa_node_attr(n, "to");
    if (type && strcmp(type, "subscribe") == 0) {
        wa_jid tj;
        bool lid = false;
        sim_account *ta =
            to && wa_jid_parse_cstr(to, &tj) == WA_OK ? account_of_jid(s, &tj, &lid) : NULL;
        if (!ta) return;
        int i = 0;
        while (i < c->nsubs && !(c->subs[i].account == ta && c->subs[i].lid == lid))
            i++;
        if (i == c->nsubs && c->nsubs < SIM_MAX_SUBS) {
            c->subs[c->nsubs].account = ta;
            c->subs[c->nsubs].lid = lid;
            c->nsubs++;
        }
        sim_send_node(s, c, presence_node(s, a, ta, lid)); /* the state now */
        return;
    }
    if (!type || (strcmp(type, "available") != 0 && strcmp(type, "unavailable") != 0)) return;
    bool before = sim_account_available(s, c->account);
    c->available = strcmp(type, "available") == 0;
    bool after = sim_account_available(s, c->account);
    if (before == after) return;
    if (!after) c->account->last_seen = sim_now(s);
    presence_changed(s, c->account);
}

/* <chatstate to=peer><composing [media]/> | <paused/></chatstate>: to every online device of the
 * peer, from the sender's user JID (on the server `to` used). Not queued. To a group: see
 * sim_group_on_chatstate. */
static void on_chatstate(sim *s, sim_conn *c, wb_arena *a, wa_node *n)
{
    if (c->state != SIM_CONN_LOGGED_IN || c->device_index < 0) return;
    const char *to = wa_node_attr(n, "to");
    if (sim_group_is_jid(to)) {
        sim_group_on_chatstate(s, c, a, n); /* sim_group.c */
        return;
    }
    wa_node *st = n->kind == WA_CONTENT_LIST && n->nchildren ? n->children[0] : NULL;
    wa_jid tj;
    bool lid = false;
    sim_account *ta =
        to && wa_jid_parse_cstr(to, &tj) == WA_OK ? account_of_jid(s, &tj, &lid) : NULL;
    if (!ta || ta == c->account || !st) return;
    char from[64];
    device_jid(c->account, 0, lid, from, sizeof(from));
    wa_node *out = wa_node_new(a, "chatstate");
    wa_node_set_attr(a, out, "from", from);
    wa_node *child = wa_node_new(a, st->tag);
    const char *media = wa_node_attr(st, "media");
    if (media) wa_node_set_attr(a, child, "media", media);
    wa_node_add_child(a, out, child);
    for (sim_conn *x = s->conns; x; x = x->next)
        if (x->account == ta && x->state == SIM_CONN_LOGGED_IN && x->device_index >= 0 && x->active)
            sim_send_node(s, x, out);
}

static void on_ack(sim *s, sim_conn *c, wa_node *n)
{
    const char *cls = wa_node_attr(n, "class"), *id = wa_node_attr(n, "id");
    if (c->state != SIM_CONN_LOGGED_IN || c->device_index < 0 || !cls || !valid_id(id)) return;
    sim_device *dev = &c->account->devices[c->device_index];
    if (strcmp(cls, "message") == 0)
        queue_ack(dev, false, id);
    else if (strcmp(cls, "receipt") == 0)
        queue_ack(dev, true, id);
    else if (strcmp(cls, "notification") == 0)
        queue_ack(dev, false, id); /* group notifications are queued like messages */
}

/* At <passive><active/>: everything queued goes out in order, then <ib><offline count/>. */
static void flush_queue(sim *s, sim_conn *c, wb_arena *a)
{
    int count = 0;
    if (c->device_index >= 0) {
        sim_device *dev = &c->account->devices[c->device_index];
        for (sim_queued *q = dev->queue_head; q; q = q->next) {
            send_queued(s, c, q, true);
            q->delivered = true;
            count++;
        }
    }
    c->active = true;
    char n[16];
    snprintf(n, sizeof(n), "%d", count);
    wa_node *ib = wa_node_new(a, "ib");
    wa_node_set_attr(a, ib, "from", WA_SERVER_PN);
    wa_node *off = wa_node_new(a, "offline");
    wa_node_set_attr(a, off, "count", n);
    wa_node_add_child(a, ib, off);
    sim_send_node(s, c, ib);
}

/* --- IQs of messaging: usync and prekey fetch --- */

/* usync: for each listed user (PN or LID JID, or a +phone <contact>) its devices (0 and present
 * companions with their key index), its LID, and whether it is on WhatsApp, as asked. */
static void on_usync(sim *s, sim_conn *c, wb_arena *a, const char *iq_id, wa_node *iq)
{
    wa_node *us = wa_node_child(iq, "usync");
    wa_node *query = us ? wa_node_child(us, "query") : NULL;
    wa_node *list = us ? wa_node_child(us, "list") : NULL;
    if (!query || !list) {
        send_result(s, c, a, iq_id, NULL);
        return;
    }
    s->usync_queries++;
    bool want_devices = wa_node_child(query, "devices") != NULL;
    bool want_lid = wa_node_child(query, "lid") != NULL;
    bool want_contact = wa_node_child(query, "contact") != NULL;
    wa_node *res = wa_node_new(a, "usync");
    static const char *const echoed[] = {"sid", "index", "last", "mode", "context"};
    for (size_t i = 0; i < sizeof(echoed) / sizeof(echoed[0]); i++) {
        const char *v = wa_node_attr(us, echoed[i]);
        if (v) wa_node_set_attr(a, res, echoed[i], v);
    }
    wa_node_add_child(a, res, wa_node_new(a, "result"));
    wa_node *out = wa_node_new(a, "list");
    for (size_t i = 0; list->kind == WA_CONTENT_LIST && i < list->nchildren; i++) {
        wa_node *u = list->children[i];
        if (strcmp(u->tag, "user") != 0) continue;
        const char *jid = wa_node_attr(u, "jid");
        sim_account *acct = NULL;
        wa_jid j;
        char pn_jid[64];
        if (jid && wa_jid_parse_cstr(jid, &j) == WA_OK) acct = account_of_jid(s, &j, NULL);
        const wa_node *contact = child_bytes(u, "contact", 0);
        if (!jid && contact) {
            char digits[24];
            const char *p = (const char *)contact->data;
            size_t n = contact->data_len;
            if (n && p[0] == '+') p++, n--;
            if (n < sizeof(digits)) {
                memcpy(digits, p, n);
                digits[n] = '\0';
                acct = all_digits(digits, 20) ? sim_account_find(s, digits) : NULL;
            }
            if (!acct) continue;
            device_jid(acct, 0, false, pn_jid, sizeof(pn_jid));
            jid = pn_jid;
        }
        if (!jid) continue;
        wa_node *ou = wa_node_new(a, "user");
        wa_node_set_attr(a, ou, "jid", jid);
        if (want_devices) {
            wa_node *devs = wa_node_new(a, "devices");
            wa_node *dl = wa_node_new(a, "device-list");
            wa_node_set_empty_list(dl);
            for (int d = -1; acct && d < acct->ndevices; d++) {
                if (d >= 0 && !acct->devices[d].present) continue;
                char num[16], ki[16];
                wa_node *dev = wa_node_new(a, "device");
                snprintf(num, sizeof(num), "%u", d < 0 ? 0u : acct->devices[d].id);
                wa_node_set_attr(a, dev, "id", num);
                if (d >= 0) {
                    snprintf(ki, sizeof(ki), "%u", acct->devices[d].key_index);
                    wa_node_set_attr(a, dev, "key-index", ki);
                }
                wa_node_add_child(a, dl, dev);
            }
            wa_node_add_child(a, devs, dl);
            wa_node_add_child(a, ou, devs);
        }
        if (want_lid && acct) {
            char lid[64];
            device_jid(acct, 0, true, lid, sizeof(lid));
            wa_node *l = wa_node_new(a, "lid");
            wa_node_set_attr(a, l, "val", lid);
            wa_node_add_child(a, ou, l);
        }
        if (want_contact) {
            wa_node *ct = wa_node_new(a, "contact");
            wa_node_set_attr(a, ct, "type", acct ? "in" : "out");
            wa_node_add_child(a, ou, ct);
        }
        wa_node_add_child(a, out, ou);
    }
    wa_node_add_child(a, res, out);
    send_result(s, c, a, iq_id, res);
}

/* encrypt get <key><user jid/>...: a bundle per known device; unknown ones are left out. */
static void on_key_fetch(sim *s, sim_conn *c, wb_arena *a, const char *iq_id, wa_node *iq)
{
    wa_node *key = wa_node_child(iq, "key");
    wa_node *out = wa_node_new(a, "list");
    wa_node_set_empty_list(out);
    for (size_t i = 0; key && key->kind == WA_CONTENT_LIST && i < key->nchildren; i++) {
        wa_node *u = key->children[i];
        const char *jid = wa_node_attr(u, "jid");
        wa_jid j;
        wa_prekey_bundle b;
        sim_account *acct = NULL;
        if (strcmp(u->tag, "user") == 0 && jid && wa_jid_parse_cstr(jid, &j) == WA_OK)
            acct = account_of_jid(s, &j, NULL);
        if (!acct || take_bundle(s, acct, j.device, &b) != 0) {
            logf_(s, "[%llu] no keys for %s\n", (unsigned long long)c->serial, jid ? jid : "?");
            continue;
        }
        wa_node_add_child(a, out, bundle_node(a, jid, &b));
    }
    send_result(s, c, a, iq_id, out);
}

/* --- the phone sends (admin) --- */

/* Encrypts plain from phone p for device dev of acct (0: its phone), starting a session from a
 * bundle when there is none. */
static int phone_encrypt(sim *s, sim_phone *p, sim_account *acct, uint16_t dev, const wb_buf *plain,
                         wb_buf *out, wa_signal_type *type)
{
    char name[40];
    signal_name(acct, name, sizeof(name));
    if (!wa_signal_has_session(p->signal, name, dev)) {
        wa_prekey_bundle b;
        if (take_bundle(s, acct, dev, &b) != 0 ||
            wa_signal_process_bundle(p->signal, name, dev, &b) != WA_OK)
            return -1;
    }
    return wa_signal_encrypt(p->signal, name, dev, plain->data, plain->len, out, type) == WA_OK
               ? 0
               : -1;
}

static uint32_t get_be(const uint8_t *p, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* A retry receipt r from device dev of acct for a message phone p sent: encrypts plain again for
 * that device, as WhatsApp's phones answer retries. The receipt's <keys> (with <registration>)
 * start a new session first: the device lost the old one; without them the session is kept (one
 * from a bundle when there is none). 0 or -1. */
static int phone_retry_encrypt(sim *s, sim_phone *p, sim_account *acct, uint16_t dev,
                               const wa_node *r, const wb_buf *plain, wb_buf *out,
                               wa_signal_type *type)
{
    const wa_node *keys = wa_node_child(r, "keys");
    if (keys) {
        const wa_node *reg = child_bytes(r, "registration", 4);
        const wa_node *ident = child_bytes(keys, "identity", 32);
        const wa_node *skey = wa_node_child(keys, "skey"), *key = wa_node_child(keys, "key");
        const wa_node *sid = skey ? child_bytes(skey, "id", 3) : NULL;
        const wa_node *sval = skey ? child_bytes(skey, "value", 32) : NULL;
        const wa_node *ssig = skey ? child_bytes(skey, "signature", 64) : NULL;
        const wa_node *kid = key ? child_bytes(key, "id", 3) : NULL;
        const wa_node *kval = key ? child_bytes(key, "value", 32) : NULL;
        if (!reg || !ident || !sid || !sval || !ssig) return -1;
        wa_prekey_bundle b = {.registration_id = get_be(reg->data, 4),
                              .signed_prekey_id = get_be(sid->data, 3)};
        memcpy(b.identity, ident->data, 32);
        memcpy(b.signed_prekey, sval->data, 32);
        memcpy(b.signature, ssig->data, 64);
        if (kid && kval) {
            b.has_prekey = true;
            b.prekey_id = get_be(kid->data, 3);
            memcpy(b.prekey, kval->data, 32);
        }
        char name[40];
        signal_name(acct, name, sizeof(name));
        if (wa_signal_process_bundle(p->signal, name, dev, &b) != WA_OK) return -1;
    }
    return phone_encrypt(s, p, acct, dev, plain, out, type);
}

static wa_node *enc_node(wb_arena *a, const wb_buf *ct, wa_signal_type type)
{
    wa_node *enc = wa_node_new(a, "enc");
    wa_node_set_attr(a, enc, "v", "2");
    wa_node_set_attr(a, enc, "type", type == WA_SIGNAL_PKMSG ? "pkmsg" : "msg");
    wa_node_set_bytes(a, enc, ct->data, ct->len);
    return enc;
}

/* Stanza attributes of a content, as WhatsApp Web sets them (see wa_client_send_message). */
typedef struct sim_msg_attrs {
    const char *type; /* "text" or "reaction" */
    const char *edit; /* "1", "7", "8" or NULL */
    bool hide_fail;   /* <enc decrypt-fail="hide"> */
} sim_msg_attrs;

/* The phone of `me` sends peer_plain to every device of ta (its phone decrypts here) and own_plain
 * (the deviceSentMessage copy) to its own companions. */
static int phone_fanout(sim *s, sim_account *me, sim_account *ta, bool lid,
                        const wb_buf *peer_plain, const wb_buf *own_plain,
                        const sim_msg_attrs *attrs, const char *id)
{
    sim_phone *p = phone_of(s, me);
    if (!p) return 0;
    char from[64], dest[64];
    device_jid(me, 0, lid, from, sizeof(from));
    device_jid(ta, 0, lid, dest, sizeof(dest));
    int sent = 0;
    wb_arena a;
    wb_arena_init(&a, 0);
    wb_buf ct;
    sent_note(s, me, 0, ta, id);
    sim_sent *note = s->sent ? &s->sent[(s->sent_next + SIM_SENT_RING - 1) % SIM_SENT_RING] : NULL;
    if (note && strcmp(note->id, id) == 0 && peer_plain->len &&
        (note->plain = malloc(peer_plain->len))) { /* kept for the retries of its devices */
        memcpy(note->plain, peer_plain->data, peer_plain->len);
        note->plain_len = peer_plain->len;
        snprintf(note->type, sizeof(note->type), "%s", attrs->type);
        snprintf(note->edit, sizeof(note->edit), "%s", attrs->edit ? attrs->edit : "");
        note->hide_fail = attrs->hide_fail;
    }
    for (int side = 0; side < 2 && !peer_plain->failed && !own_plain->failed; side++) {
        sim_account *acct = side == 0 ? ta : me;
        for (int d = side == 0 ? -1 : 0; d < acct->ndevices; d++) {
            sim_device *dev = d >= 0 ? &acct->devices[d] : NULL;
            if (dev && (!dev->present || !dev->has_keys)) continue;
            wa_signal_type type;
            wb_buf_init(&ct);
            if (phone_encrypt(s, p, acct, dev ? dev->id : 0, side == 0 ? peer_plain : own_plain,
                              &ct, &type) != 0) {
                logf_(s, "phone %s cannot encrypt for %s:%u\n", me->phone, acct->phone,
                      dev ? dev->id : 0);
                wb_buf_free(&ct);
                continue;
            }
            wa_node *enc = enc_node(&a, &ct, type);
            if (attrs->hide_fail) wa_node_set_attr(&a, enc, "decrypt-fail", "hide");
            wb_buf_free(&ct);
            if (!dev) { /* the recipient's phone is simulated too */
                phone_receive(s, ta, me, 0, from, from, id, enc);
            } else {
                wa_node *n = message_node(s, &a, me, 0, lid, id, attrs->type, side ? dest : NULL);
                if (attrs->edit) wa_node_set_attr(&a, n, "edit", attrs->edit);
                wa_node_add_child(&a, n, enc);
                deliver(s, acct, dev, n, false, id);
            }
            sent++;
        }
    }
    wb_arena_free(&a);
    return sent;
}

/* Checks the accounts of an admin send and makes a message id; NULL (err set) when unusable. */
static sim_account *send_prepare(sim *s, const char *phone, const char *to, sim_account **ta,
                                 bool *lid, char id[24], char *err, size_t errlen)
{
    sim_account *me = sim_account_find(s, phone);
    wa_jid tj;
    if (!me) {
        set_err(err, errlen, "no such account");
        return NULL;
    }
    *ta = wa_jid_parse_cstr(to, &tj) == WA_OK ? account_of_jid(s, &tj, lid) : NULL;
    if (!*ta) {
        set_err(err, errlen, "`to` is not the PN or LID JID of an account");
        return NULL;
    }
    if (*ta == me) {
        set_err(err, errlen, "the phone cannot message its own account");
        return NULL;
    }
    if (!phone_of(s, me)) {
        set_err(err, errlen, "the phone's Signal state cannot be set up");
        return NULL;
    }
    uint8_t r[8];
    char hex[17];
    wa_random(s->crypto, r, sizeof(r));
    wb_hex_encode(r, sizeof(r), hex);
    for (char *h = hex; *h; h++)
        if (*h >= 'a' && *h <= 'f') *h = (char)(*h - 'a' + 'A');
    snprintf(id, 24, "3EB0%s", hex);
    return me;
}

int sim_admin_send_text(sim *s, const char *phone, const char *to, const char *text, char *id_out,
                        size_t id_len, char *err, size_t errlen)
{
    sim_account *ta;
    bool lid = false;
    char id[24], dest[64];
    sim_account *me = send_prepare(s, phone, to, &ta, &lid, id, err, errlen);
    if (!me) return -1;
    device_jid(ta, 0, lid, dest, sizeof(dest));
    wb_buf peer_plain, own_plain;
    wb_buf_init(&peer_plain);
    wb_buf_init(&own_plain);
    encode_text(&peer_plain, text, NULL);
    encode_text(&own_plain, text, dest);
    sim_msg_attrs attrs = {.type = "text"};
    int sent = phone_fanout(s, me, ta, lid, &peer_plain, &own_plain, &attrs, id);
    wb_buf_free(&peer_plain);
    wb_buf_free(&own_plain);
    if (!sent) return set_err(err, errlen, "no device could be reached");
    snprintf(id_out, id_len, "%s", id);
    return 0;
}

int sim_admin_send_msg(sim *s, const char *phone, const char *to, const wa_msg *msg, char *id_out,
                       size_t id_len, char *err, size_t errlen)
{
    sim_account *ta;
    bool lid = false;
    char id[24], dest[64];
    sim_account *me = send_prepare(s, phone, to, &ta, &lid, id, err, errlen);
    if (!me) return -1;
    device_jid(ta, 0, lid, dest, sizeof(dest));
    wa_msg m = *msg;
    if (m.kind != WA_MSG_TEXT && !m.target.remote_jid[0])
        snprintf(m.target.remote_jid, sizeof(m.target.remote_jid), "%s", dest);
    if (m.kind == WA_MSG_EDIT) m.target.from_me = true;
    if ((m.kind == WA_MSG_EDIT || m.kind == WA_MSG_REACTION) && !m.timestamp_ms)
        m.timestamp_ms = (int64_t)sim_now(s) * 1000;
    sim_msg_attrs attrs = {.type = m.kind == WA_MSG_REACTION ? "reaction" : "text"};
    if (m.kind == WA_MSG_EDIT)
        attrs.edit = "1";
    else if (m.kind == WA_MSG_REVOKE)
        attrs.edit = m.target.from_me ? "7" : "8";
    else if (m.kind == WA_MSG_REACTION && !m.reaction[0])
        attrs.edit = "7";
    attrs.hide_fail = attrs.edit || m.kind == WA_MSG_REACTION;
    wb_buf peer_plain, own_plain;
    wb_buf_init(&peer_plain);
    wb_buf_init(&own_plain);
    int rc = wa_message_encode(&m, &peer_plain);
    if (rc == WA_OK) rc = wa_message_device_sent(dest, peer_plain.data, peer_plain.len, &own_plain);
    int sent = rc == WA_OK ? phone_fanout(s, me, ta, lid, &peer_plain, &own_plain, &attrs, id) : 0;
    wb_buf_free(&peer_plain);
    wb_buf_free(&own_plain);
    if (rc != WA_OK) return set_err(err, errlen, "cannot encode that message (text or target?)");
    if (!sent) return set_err(err, errlen, "no device could be reached");
    snprintf(id_out, id_len, "%s", id);
    return 0;
}

const sim_phone_msg *sim_admin_phone_messages(sim *s, const char *phone, size_t *n)
{
    sim_account *acct = sim_account_find(s, phone);
    *n = acct && acct->primary ? acct->primary->nmsgs : 0;
    return *n ? acct->primary->msgs : NULL;
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
    } else if (strcmp(xmlns, "encrypt") == 0 && strcmp(what, "key") == 0) {
        on_key_fetch(s, c, a, id, iq);
    } else if (strcmp(xmlns, "w:g2") == 0) {
        sim_group_on_iq(s, c, a, iq); /* sim_group.c */
    } else if (strcmp(xmlns, "usync") == 0) {
        on_usync(s, c, a, id, iq);
    } else if (strcmp(xmlns, "encrypt") == 0 && strcmp(what, "digest") == 0) {
        send_result(s, c, a, id, wa_node_new(a, "digest"));
    } else if (strcmp(xmlns, "passive") == 0) {
        send_result(s, c, a, id, NULL);
        if (strcmp(what, "active") == 0) flush_queue(s, c, a);
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
        device_release(&c->account->devices[c->device_index]);
        notify_devices(s, c->account, &c->account->devices[c->device_index], false);
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
    if (strcmp(n->tag, "iq") == 0)
        on_iq(s, c, a, n);
    else if (strcmp(n->tag, "message") == 0)
        on_message(s, c, a, n);
    else if (strcmp(n->tag, "receipt") == 0)
        on_receipt(s, c, a, n);
    else if (strcmp(n->tag, "ack") == 0)
        on_ack(s, c, n);
    else if (strcmp(n->tag, "presence") == 0)
        on_presence(s, c, a, n);
    else if (strcmp(n->tag, "chatstate") == 0)
        on_chatstate(s, c, a, n);
    /* ib: nothing to answer */
    return 0;
}

int64_t sim_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int sim_conn_receive(sim *s, sim_conn *c, const uint8_t *p, size_t len)
{
    if (c->state == SIM_CONN_CLOSING) return 0;
    if (wa_frame_reader_push(&c->reader, p, len) != WA_OK) return -1;
    s->frame_rx_us = sim_mono_us();
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

    uint16_t next_dev = next_device_id(s, acct);
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

int sim_admin_read_self(sim *s, const char *phone, const char *chat, const char *const *ids,
                        size_t n, char *err, size_t errlen)
{
    sim_account *me = sim_account_find(s, phone);
    if (!me) return set_err(err, errlen, "no such account");
    if (!chat || !chat[0] || n == 0) return set_err(err, errlen, "chat and ids are required");
    for (size_t i = 0; i < n; i++)
        if (!valid_id(ids[i])) return set_err(err, errlen, "bad message id");
    bool group = sim_group_is_jid(chat);
    char self[64], t[24];
    device_jid(me, 0, false, self, sizeof(self));
    snprintf(t, sizeof(t), "%llu", (unsigned long long)sim_now(s));
    wb_arena a;
    wb_arena_init(&a, 0);
    /* what WhatsApp tells the account's other devices: 1:1 from us with the chat as recipient;
       a group from the group, with us as the participant (the reader) */
    wa_node *r = wa_node_new(&a, "receipt");
    wa_node_set_attr(&a, r, "from", group ? chat : self);
    if (group)
        wa_node_set_attr(&a, r, "participant", self);
    else
        wa_node_set_attr(&a, r, "recipient", chat);
    wa_node_set_attr(&a, r, "id", ids[0]);
    wa_node_set_attr(&a, r, "type", "read-self");
    wa_node_set_attr(&a, r, "t", t);
    wa_receipt_add_ids(&a, r, ids, n);
    int sent = 0;
    for (int i = 0; i < me->ndevices; i++) {
        sim_device *dev = &me->devices[i];
        if (!dev->present || dev->id == 0) continue;
        deliver(s, me, dev, r, true, ids[0]);
        sent++;
    }
    wb_arena_free(&a);
    logf_(s, "phone %s read %zu message(s) in %s: read-self to %d companion(s)\n", phone, n, chat,
          sent);
    return 0;
}

int sim_admin_corrupt_next(sim *s, const char *phone, int count, char *err, size_t errlen)
{
    if (!sim_account_find(s, phone)) return set_err(err, errlen, "no such account");
    snprintf(s->corrupt_phone, sizeof(s->corrupt_phone), "%s", phone);
    s->corrupt_left = count > 0 ? count : 1;
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

int sim_admin_reregister(sim *s, const char *phone, bool announce, char *err, size_t errlen)
{
    sim_account *acct = sim_account_find(s, phone);
    if (!acct) return set_err(err, errlen, "no such account");
    wa_keypair id;
    if (wa_keypair_generate(s->crypto, &id) != WA_OK)
        return set_err(err, errlen, "cannot make a key");
    acct->identity = id;
    wa_wipe(&id, sizeof(id));
    phone_free(acct->primary); /* made again, with the new identity, on first use */
    acct->primary = NULL;
    sim_groups_forget_phone(s, acct);
    logf_(s, "phone %s registered anew%s\n", acct->phone, announce ? " (announced)" : "");
    if (!announce) return 0;
    wb_arena a;
    wb_arena_init(&a, 0);
    char nid[24], t[24], from[64];
    snprintf(nid, sizeof(nid), "enc%u", s->next_id++);
    snprintf(t, sizeof(t), "%llu", (unsigned long long)sim_now(s));
    device_jid(acct, 0, false, from, sizeof(from));
    wa_node *n = wa_node_new(&a, "notification");
    wa_node_set_attr(&a, n, "from", from);
    wa_node_set_attr(&a, n, "type", "encrypt");
    wa_node_set_attr(&a, n, "id", nid);
    wa_node_set_attr(&a, n, "t", t);
    wa_node_add_child(&a, n, wa_node_new(&a, "identity"));
    for (int i = 0; i < s->naccounts; i++) {
        sim_account *other = &s->accounts[i];
        for (int d = 0; other != acct && d < other->ndevices; d++)
            if (other->devices[d].present) deliver(s, other, &other->devices[d], n, false, nid);
    }
    wb_arena_free(&a);
    return 0;
}

int sim_admin_add_device(sim *s, const char *phone, const uint8_t noise_pub[32],
                         const uint8_t identity_pub[32], uint32_t prekeys, char *err, size_t errlen)
{
    sim_account *acct = sim_account_find(s, phone);
    if (!acct) return set_err(err, errlen, "no such account");
    if (acct->ndevices == SIM_MAX_DEVICES) return set_err(err, errlen, "account has 16 devices");
    sim_device *dev = &acct->devices[acct->ndevices];
    memset(dev, 0, sizeof(*dev));
    dev->id = next_device_id(s, acct);
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
                     "%s{\"id\":%u,\"prekeys\":%u,\"key_index\":%u,\"online\":%s,"
                     "\"queued\":%zu}",
                     shown++ ? "," : "", dev->id, dev->prekeys, dev->key_index,
                     online ? "true" : "false", dev->queued);
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

/* --- for sim_group.c (sim_group.h): the helpers above, under public names --- */

sim_account *sim_account_of_jid(sim *s, const wa_jid *j, bool *lid)
{
    return account_of_jid(s, j, lid);
}

sim_device *sim_companion(sim_account *acct, uint16_t id)
{
    return companion(acct, id);
}

void sim_device_jid(const sim_account *acct, uint16_t device, bool lid, char *out, size_t cap)
{
    device_jid(acct, device, lid, out, cap);
}

void sim_signal_name(const sim_account *acct, char *out, size_t cap)
{
    signal_name(acct, out, cap);
}

sim_phone *sim_phone_of(sim *s, sim_account *acct)
{
    return phone_of(s, acct);
}

int sim_phone_encrypt(sim *s, sim_phone *p, sim_account *acct, uint16_t dev, const wb_buf *plain,
                      wb_buf *out, wa_signal_type *type)
{
    return phone_encrypt(s, p, acct, dev, plain, out, type);
}

int sim_phone_retry_encrypt(sim *s, sim_phone *p, sim_account *acct, uint16_t dev, const wa_node *r,
                            const wb_buf *plain, wb_buf *out, wa_signal_type *type)
{
    return phone_retry_encrypt(s, p, acct, dev, r, plain, out, type);
}

void sim_deliver(sim *s, sim_account *acct, sim_device *dev, const wa_node *n, bool is_receipt,
                 const char *id)
{
    deliver(s, acct, dev, n, is_receipt, id);
}

sim_phone_msg *sim_phone_record(sim *s, sim_account *acct, const char *sender, const char *chat,
                                const char *id, const uint8_t *text, size_t text_len, bool own,
                                bool failed)
{
    return phone_record(s, acct, sender, chat, id, text, text_len, own, failed);
}
