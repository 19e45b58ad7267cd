/*
 * tests/db/store_cases.c - the shared wa_store cases (see store_cases.h).
 */
#include "store_cases.h"

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Deterministic pseudo-random bytes (xorshift64), so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static void fill(void *p, size_t n)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        b[i] = (uint8_t)rng_state;
    }
}

/* Text that breaks naive SQL, JSON or C string handling. */
static const char *nasty[] = {
    "O'Brien \"the\" \\ boss",
    "Robert'); DROP TABLE wa_session;--",
    "%s%n%x \\x00 \\\\ E'\\047' $1 ? :name",
    "Zoë 🇧🇷 مرحبا 你好 \t\r\n",
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void make_device(wa_device *d, bool paired)
{
    memset(d, 0, sizeof(*d));
    fill(&d->noise, sizeof(d->noise));
    fill(&d->identity, sizeof(d->identity));
    d->registration_id = 0x2abc;
    d->signed_prekey_id = 1;
    fill(&d->signed_prekey, sizeof(d->signed_prekey));
    fill(d->signed_prekey_sig, sizeof(d->signed_prekey_sig));
    fill(d->adv_secret, sizeof(d->adv_secret));
    d->next_prekey_id = 1;
    if (paired) {
        d->adv_details_len = 97;
        fill(d->adv_details, d->adv_details_len);
        fill(d->adv_account_sig_key, sizeof(d->adv_account_sig_key));
        fill(d->adv_account_sig, sizeof(d->adv_account_sig));
        fill(d->adv_device_sig, sizeof(d->adv_device_sig));
        d->paired = true;
        snprintf(d->platform, sizeof(d->platform), "android");
        snprintf(d->push_name, sizeof(d->push_name), "%s", nasty[0]);
        snprintf(d->pn, sizeof(d->pn), "15551234567:12@s.whatsapp.net");
        snprintf(d->lid, sizeof(d->lid), "123456789012345:12@lid");
    }
}

static bool device_equal(const wa_device *a, const wa_device *b)
{
    return memcmp(&a->noise, &b->noise, sizeof(a->noise)) == 0 &&
           memcmp(&a->identity, &b->identity, sizeof(a->identity)) == 0 &&
           a->registration_id == b->registration_id && a->signed_prekey_id == b->signed_prekey_id &&
           memcmp(&a->signed_prekey, &b->signed_prekey, sizeof(a->signed_prekey)) == 0 &&
           memcmp(a->signed_prekey_sig, b->signed_prekey_sig, WA_SIG_LEN) == 0 &&
           memcmp(a->adv_secret, b->adv_secret, WA_KEY_LEN) == 0 &&
           a->adv_details_len == b->adv_details_len &&
           memcmp(a->adv_details, b->adv_details, a->adv_details_len) == 0 &&
           a->paired == b->paired &&
           (!a->paired ||
            (memcmp(a->adv_account_sig_key, b->adv_account_sig_key, WA_KEY_LEN) == 0 &&
             memcmp(a->adv_account_sig, b->adv_account_sig, WA_SIG_LEN) == 0 &&
             memcmp(a->adv_device_sig, b->adv_device_sig, WA_SIG_LEN) == 0)) &&
           strcmp(a->platform, b->platform) == 0 && strcmp(a->push_name, b->push_name) == 0 &&
           strcmp(a->business_name, b->business_name) == 0 && strcmp(a->pn, b->pn) == 0 &&
           strcmp(a->lid, b->lid) == 0 && a->next_prekey_id == b->next_prekey_id;
}

static void case_device(wa_store *st)
{
    void *x = st->ctx;
    wa_device d, got;
    CHECK_INT(st->device_load(x, &got), WA_STORE_NOT_FOUND);
    make_device(&d, false);
    CHECK_INT(st->device_save(x, &d), WA_STORE_OK);
    CHECK_INT(st->device_load(x, &got), WA_STORE_OK);
    CHECK(device_equal(&d, &got));
    CHECK(!got.paired);
    /* pairing completes: update */
    make_device(&d, true);
    d.next_prekey_id = 812;
    d.signed_prekey_id = 7;
    CHECK_INT(st->device_save(x, &d), WA_STORE_OK);
    CHECK_INT(st->device_load(x, &got), WA_STORE_OK);
    CHECK(device_equal(&d, &got));
    CHECK_STR(got.push_name, nasty[0]);
    wa_keypair kp;
    uint8_t sig[WA_SIG_LEN];
    CHECK_INT(st->signed_prekey_load(x, 7, &kp, sig), WA_STORE_OK);
    CHECK(memcmp(&kp, &d.signed_prekey, sizeof(kp)) == 0);
    CHECK(memcmp(sig, d.signed_prekey_sig, WA_SIG_LEN) == 0);
    CHECK_INT(st->signed_prekey_load(x, 8, &kp, sig), WA_STORE_NOT_FOUND);
    /* adv details of every byte value, at the size limit */
    d.adv_details_len = WA_ADV_MAX;
    for (size_t i = 0; i < WA_ADV_MAX; i++)
        d.adv_details[i] = (uint8_t)i;
    CHECK_INT(st->device_save(x, &d), WA_STORE_OK);
    CHECK_INT(st->device_load(x, &got), WA_STORE_OK);
    CHECK(device_equal(&d, &got));
    d.adv_details_len = WA_ADV_MAX + 1;
    CHECK_INT(st->device_save(x, &d), WA_STORE_ERR_INVALID);
    CHECK_INT(st->device_delete(x), WA_STORE_OK);
    CHECK_INT(st->device_load(x, &got), WA_STORE_NOT_FOUND);
    CHECK_INT(st->device_delete(x), WA_STORE_OK); /* deleting nothing is fine */
}

static void case_identity(wa_store *st)
{
    void *x = st->ctx;
    const char *addrs[] = {"15551234567:0", "15551234567:12", "123456789012345_1:3", nasty[1]};
    uint8_t keys[4][WA_KEY_LEN], got[WA_KEY_LEN];
    for (int i = 0; i < 4; i++) {
        CHECK_INT(st->identity_load(x, addrs[i], got), WA_STORE_NOT_FOUND);
        fill(keys[i], WA_KEY_LEN);
        CHECK_INT(st->identity_save(x, addrs[i], keys[i]), WA_STORE_OK);
    }
    for (int i = 0; i < 4; i++) {
        CHECK_INT(st->identity_load(x, addrs[i], got), WA_STORE_OK);
        CHECK(memcmp(got, keys[i], WA_KEY_LEN) == 0);
    }
    fill(keys[1], WA_KEY_LEN); /* the peer re-registered */
    CHECK_INT(st->identity_save(x, addrs[1], keys[1]), WA_STORE_OK);
    CHECK_INT(st->identity_load(x, addrs[1], got), WA_STORE_OK);
    CHECK(memcmp(got, keys[1], WA_KEY_LEN) == 0);
    CHECK_INT(st->identity_delete(x, addrs[1]), WA_STORE_OK);
    CHECK_INT(st->identity_load(x, addrs[1], got), WA_STORE_NOT_FOUND);
    CHECK_INT(st->identity_load(x, addrs[0], got), WA_STORE_OK);
    CHECK_INT(st->identity_load(x, NULL, got), WA_STORE_ERR_INVALID);
}

/* The server said a user's identity changed: every device's identity goes, no other user's. */
static void case_identity_prefix(wa_store *st)
{
    void *x = st->ctx;
    const char *addrs[] = {"4555:0", "4555:1", "4555:12", "45551:0", "4555_1:0"};
    uint8_t key[WA_KEY_LEN], got[WA_KEY_LEN];
    for (int i = 0; i < 5; i++) {
        fill(key, WA_KEY_LEN);
        CHECK_INT(st->identity_save(x, addrs[i], key), WA_STORE_OK);
    }
    size_t deleted = 99;
    CHECK_INT(st->identity_delete_prefix(x, "4555:", &deleted), WA_STORE_OK);
    CHECK_INT((int)deleted, 3);
    for (int i = 0; i < 5; i++)
        CHECK_INT(st->identity_load(x, addrs[i], got), i < 3 ? WA_STORE_NOT_FOUND : WA_STORE_OK);
    CHECK_INT(st->identity_delete_prefix(x, "4555:", NULL), WA_STORE_OK);
    CHECK_INT(st->identity_delete_prefix(x, "", NULL), WA_STORE_ERR_INVALID);
    CHECK_INT(st->identity_delete_prefix(x, NULL, NULL), WA_STORE_ERR_INVALID);
}

static void case_sessions(wa_store *st)
{
    void *x = st->ctx;
    const char *addrs[] = {"1555:0", "1555:1", "1555:23", "15551:1", "2555:1", nasty[2]};
    uint8_t rec[6][1800];
    wb_buf b;
    wb_buf_init(&b);
    CHECK_INT(st->session_load(x, addrs[0], &b), WA_STORE_NOT_FOUND);
    CHECK_INT((int)b.len, 0);
    for (int i = 0; i < 6; i++) {
        fill(rec[i], sizeof(rec[i]));
        CHECK_INT(st->session_save(x, addrs[i], rec[i], sizeof(rec[i]) - (size_t)i * 100),
                  WA_STORE_OK);
    }
    for (int i = 0; i < 6; i++) {
        b.len = 0;
        CHECK_INT(st->session_load(x, addrs[i], &b), WA_STORE_OK);
        CHECK(b.len == sizeof(rec[i]) - (size_t)i * 100 && memcmp(b.data, rec[i], b.len) == 0);
    }
    /* every byte value, and an advanced (longer) session */
    uint8_t all[512];
    for (int i = 0; i < 512; i++)
        all[i] = (uint8_t)(255 - i % 256);
    CHECK_INT(st->session_save(x, addrs[0], all, sizeof(all)), WA_STORE_OK);
    b.len = 0;
    CHECK_INT(st->session_load(x, addrs[0], &b), WA_STORE_OK);
    CHECK(b.len == sizeof(all) && memcmp(b.data, all, sizeof(all)) == 0);
    CHECK_INT(st->session_save(x, addrs[4], NULL, 0), WA_STORE_OK); /* empty record */
    b.len = 0;
    CHECK_INT(st->session_load(x, addrs[4], &b), WA_STORE_OK);
    CHECK_INT((int)b.len, 0);
    /* "1555:" removes 1555's devices, not 15551's */
    size_t deleted = 99;
    CHECK_INT(st->session_delete_prefix(x, "1555:", &deleted), WA_STORE_OK);
    CHECK_INT((int)deleted, 3);
    CHECK_INT(st->session_load(x, addrs[1], &b), WA_STORE_NOT_FOUND);
    b.len = 0;
    CHECK_INT(st->session_load(x, addrs[3], &b), WA_STORE_OK);
    CHECK_INT(st->session_delete(x, addrs[3]), WA_STORE_OK);
    CHECK_INT(st->session_load(x, addrs[3], &b), WA_STORE_NOT_FOUND);
    b.len = 0;
    CHECK_INT(st->session_load(x, addrs[5], &b), WA_STORE_OK);
    CHECK(b.len == sizeof(rec[5]) - 500 && memcmp(b.data, rec[5], b.len) == 0);
    CHECK_INT(st->session_delete_prefix(x, "", NULL), WA_STORE_ERR_INVALID);
    wb_buf_free(&b);
}

static void case_prekeys(wa_store *st)
{
    void *x = st->ctx;
    wa_prekey keys[50], got, list[60];
    for (int i = 0; i < 50; i++) {
        keys[i].id = (uint32_t)(1000 + i);
        fill(&keys[i].key, sizeof(keys[i].key));
        keys[i].uploaded = false;
    }
    CHECK_INT(st->prekey_load(x, 1000, &got), WA_STORE_NOT_FOUND);
    CHECK_INT(st->prekeys_save(x, keys, 50), WA_STORE_OK);
    CHECK_INT(st->prekey_load(x, 1017, &got), WA_STORE_OK);
    CHECK(got.id == 1017 && !got.uploaded && memcmp(&got.key, &keys[17].key, 64) == 0);
    size_t n = 0;
    CHECK_INT(st->prekeys_unuploaded(x, list, 10, &n), WA_STORE_OK);
    CHECK_INT((int)n, 10);
    for (size_t i = 0; i < n; i++)
        CHECK(list[i].id == 1000 + i && memcmp(&list[i].key, &keys[i].key, 64) == 0);
    CHECK_INT(st->prekeys_count_uploaded(x, &n), WA_STORE_OK);
    CHECK_INT((int)n, 0);
    CHECK_INT(st->prekeys_mark_uploaded(x, 1029), WA_STORE_OK);
    CHECK_INT(st->prekeys_count_uploaded(x, &n), WA_STORE_OK);
    CHECK_INT((int)n, 30);
    CHECK_INT(st->prekeys_unuploaded(x, list, 60, &n), WA_STORE_OK);
    CHECK_INT((int)n, 20);
    CHECK(n > 0 && list[0].id == 1030);
    CHECK_INT(st->prekey_load(x, 1005, &got), WA_STORE_OK);
    CHECK(got.uploaded);
    /* a peer used 1005: it goes */
    CHECK_INT(st->prekey_delete(x, 1005), WA_STORE_OK);
    CHECK_INT(st->prekey_load(x, 1005, &got), WA_STORE_NOT_FOUND);
    CHECK_INT(st->prekeys_count_uploaded(x, &n), WA_STORE_OK);
    CHECK_INT((int)n, 29);
    /* replace one (update) */
    fill(&keys[40].key, sizeof(keys[40].key));
    keys[40].uploaded = true;
    CHECK_INT(st->prekeys_save(x, &keys[40], 1), WA_STORE_OK);
    CHECK_INT(st->prekey_load(x, 1040, &got), WA_STORE_OK);
    CHECK(got.uploaded && memcmp(&got.key, &keys[40].key, 64) == 0);
    CHECK_INT(st->prekeys_save(x, NULL, 0), WA_STORE_OK);
}

static void case_sender_keys(wa_store *st)
{
    void *x = st->ctx;
    const char *group = "120363025246125888@g.us";
    uint8_t rec[700];
    fill(rec, sizeof(rec));
    wb_buf b;
    wb_buf_init(&b);
    CHECK_INT(st->sender_key_load(x, group, "1555:3", &b), WA_STORE_NOT_FOUND);
    CHECK_INT(st->sender_key_save(x, group, "1555:3", rec, sizeof(rec)), WA_STORE_OK);
    CHECK_INT(st->sender_key_save(x, group, nasty[3], rec, 100), WA_STORE_OK);
    CHECK_INT(st->sender_key_load(x, group, "1555:3", &b), WA_STORE_OK);
    CHECK(b.len == sizeof(rec) && memcmp(b.data, rec, b.len) == 0);
    fill(rec, sizeof(rec));
    CHECK_INT(st->sender_key_save(x, group, "1555:3", rec, 650), WA_STORE_OK);
    b.len = 0;
    CHECK_INT(st->sender_key_load(x, group, "1555:3", &b), WA_STORE_OK);
    CHECK(b.len == 650 && memcmp(b.data, rec, 650) == 0);
    CHECK_INT(st->sender_key_load(x, "other@g.us", "1555:3", &b), WA_STORE_NOT_FOUND);
    CHECK_INT(st->sender_key_delete(x, group, "1555:3"), WA_STORE_OK);
    CHECK_INT(st->sender_key_load(x, group, "1555:3", &b), WA_STORE_NOT_FOUND);
    b.len = 0;
    CHECK_INT(st->sender_key_load(x, group, nasty[3], &b), WA_STORE_OK);
    CHECK_INT((int)b.len, 100);
    wb_buf_free(&b);
}

static void case_appstate(wa_store *st)
{
    void *x = st->ctx;
    uint8_t ids[3][6], data[3][32], fp[3][20];
    wb_buf kd, f, kid;
    wb_buf_init(&kd);
    wb_buf_init(&f);
    wb_buf_init(&kid);
    CHECK_INT(st->appstate_key_latest(x, &kid), WA_STORE_NOT_FOUND);
    int64_t ts[3] = {1700000000000, 1700000500000, 1690000000000};
    for (int i = 0; i < 3; i++) {
        fill(ids[i], 6);
        ids[i][0] = 0; /* key ids start with zero bytes in practice */
        fill(data[i], 32);
        fill(fp[i], 20);
        CHECK_INT(st->appstate_key_save(x, ids[i], 6, data[i], 32, fp[i], 20, ts[i]), WA_STORE_OK);
    }
    int64_t t = 0;
    CHECK_INT(st->appstate_key_load(x, ids[2], 6, &kd, &f, &t), WA_STORE_OK);
    CHECK(kd.len == 32 && memcmp(kd.data, data[2], 32) == 0);
    CHECK(f.len == 20 && memcmp(f.data, fp[2], 20) == 0);
    CHECK(t == ts[2]);
    CHECK_INT(st->appstate_key_latest(x, &kid), WA_STORE_OK);
    CHECK(kid.len == 6 && memcmp(kid.data, ids[1], 6) == 0);
    /* update: key 2 becomes the newest */
    CHECK_INT(st->appstate_key_save(x, ids[2], 6, data[0], 32, fp[0], 0, 1800000000000),
              WA_STORE_OK);
    kid.len = kd.len = f.len = 0;
    CHECK_INT(st->appstate_key_latest(x, &kid), WA_STORE_OK);
    CHECK(kid.len == 6 && memcmp(kid.data, ids[2], 6) == 0);
    CHECK_INT(st->appstate_key_load(x, ids[2], 6, &kd, &f, NULL), WA_STORE_OK);
    CHECK(kd.len == 32 && memcmp(kd.data, data[0], 32) == 0 && f.len == 0);
    CHECK_INT(st->appstate_key_delete(x, ids[2], 6), WA_STORE_OK);
    CHECK_INT(st->appstate_key_load(x, ids[2], 6, &kd, &f, NULL), WA_STORE_NOT_FOUND);
    CHECK_INT(st->appstate_key_load(x, ids[2], 5, &kd, &f, NULL), WA_STORE_NOT_FOUND);

    /* versions and MACs */
    uint64_t v = 99;
    uint8_t hash[WA_LTHASH_LEN], got_hash[WA_LTHASH_LEN];
    CHECK_INT(st->appstate_version_load(x, "regular_high", &v, got_hash), WA_STORE_NOT_FOUND);
    CHECK(v == 0);
    fill(hash, sizeof(hash));
    CHECK_INT(st->appstate_version_save(x, "regular_high", 41, hash), WA_STORE_OK);
    CHECK_INT(st->appstate_version_save(x, "critical_block", 7, hash), WA_STORE_OK);
    CHECK_INT(st->appstate_version_load(x, "regular_high", &v, got_hash), WA_STORE_OK);
    CHECK(v == 41 && memcmp(hash, got_hash, WA_LTHASH_LEN) == 0);
    fill(hash, sizeof(hash));
    CHECK_INT(st->appstate_version_save(x, "regular_high", 42, hash), WA_STORE_OK);
    CHECK_INT(st->appstate_version_load(x, "regular_high", &v, got_hash), WA_STORE_OK);
    CHECK(v == 42 && memcmp(hash, got_hash, WA_LTHASH_LEN) == 0);

    wa_appstate_mac macs[5];
    fill(macs, sizeof(macs));
    uint8_t vm[WA_KEY_LEN];
    CHECK_INT(st->appstate_mac_load(x, "regular_high", macs[0].index_mac, vm), WA_STORE_NOT_FOUND);
    CHECK_INT(st->appstate_macs_save(x, "regular_high", 42, macs, 5), WA_STORE_OK);
    CHECK_INT(st->appstate_macs_save(x, "critical_block", 7, macs, 2), WA_STORE_OK);
    for (int i = 0; i < 5; i++) {
        CHECK_INT(st->appstate_mac_load(x, "regular_high", macs[i].index_mac, vm), WA_STORE_OK);
        CHECK(memcmp(vm, macs[i].value_mac, WA_KEY_LEN) == 0);
    }
    fill(macs[1].value_mac, WA_KEY_LEN); /* the value at index 1 changed */
    CHECK_INT(st->appstate_macs_save(x, "regular_high", 43, &macs[1], 1), WA_STORE_OK);
    CHECK_INT(st->appstate_mac_load(x, "regular_high", macs[1].index_mac, vm), WA_STORE_OK);
    CHECK(memcmp(vm, macs[1].value_mac, WA_KEY_LEN) == 0);
    uint8_t del[2][WA_KEY_LEN];
    memcpy(del[0], macs[0].index_mac, WA_KEY_LEN);
    memcpy(del[1], macs[3].index_mac, WA_KEY_LEN);
    CHECK_INT(st->appstate_macs_delete(x, "regular_high", (const uint8_t(*)[WA_KEY_LEN])del, 2),
              WA_STORE_OK);
    CHECK_INT(st->appstate_mac_load(x, "regular_high", macs[0].index_mac, vm), WA_STORE_NOT_FOUND);
    CHECK_INT(st->appstate_mac_load(x, "regular_high", macs[3].index_mac, vm), WA_STORE_NOT_FOUND);
    CHECK_INT(st->appstate_mac_load(x, "regular_high", macs[4].index_mac, vm), WA_STORE_OK);
    /* forgetting a collection drops its MACs, not the other collection's */
    CHECK_INT(st->appstate_version_delete(x, "regular_high"), WA_STORE_OK);
    CHECK_INT(st->appstate_version_load(x, "regular_high", &v, got_hash), WA_STORE_NOT_FOUND);
    CHECK_INT(st->appstate_mac_load(x, "regular_high", macs[4].index_mac, vm), WA_STORE_NOT_FOUND);
    CHECK_INT(st->appstate_mac_load(x, "critical_block", macs[0].index_mac, vm), WA_STORE_OK);
    CHECK_INT(st->appstate_version_load(x, "critical_block", &v, got_hash), WA_STORE_OK);
    wb_buf_free(&kd);
    wb_buf_free(&f);
    wb_buf_free(&kid);
}

static void case_contacts(wa_store *st)
{
    void *x = st->ctx;
    wa_contact c, got;
    memset(&c, 0, sizeof(c));
    snprintf(c.jid, sizeof(c.jid), "15551234567@s.whatsapp.net");
    CHECK_INT(st->contact_load(x, c.jid, &got), WA_STORE_NOT_FOUND);
    snprintf(c.first_name, sizeof(c.first_name), "%s", nasty[0]);
    snprintf(c.full_name, sizeof(c.full_name), "%s", nasty[1]);
    snprintf(c.push_name, sizeof(c.push_name), "%s", nasty[2]);
    CHECK_INT(st->contact_save(x, &c), WA_STORE_OK);
    CHECK_INT(st->contact_load(x, c.jid, &got), WA_STORE_OK);
    CHECK_STR(got.jid, c.jid);
    CHECK_STR(got.first_name, nasty[0]);
    CHECK_STR(got.full_name, nasty[1]);
    CHECK_STR(got.push_name, nasty[2]);
    CHECK_STR(got.business_name, "");
    snprintf(c.business_name, sizeof(c.business_name), "%s", nasty[3]);
    c.first_name[0] = '\0';
    CHECK_INT(st->contact_save(x, &c), WA_STORE_OK);
    CHECK_INT(st->contact_load(x, c.jid, &got), WA_STORE_OK);
    CHECK_STR(got.first_name, "");
    CHECK_STR(got.business_name, nasty[3]);
    CHECK_INT(st->contact_delete(x, c.jid), WA_STORE_OK);
    CHECK_INT(st->contact_load(x, c.jid, &got), WA_STORE_NOT_FOUND);

    wa_chat_settings s, gs;
    memset(&s, 0, sizeof(s));
    snprintf(s.chat_jid, sizeof(s.chat_jid), "120363025246125888@g.us");
    CHECK_INT(st->chat_settings_load(x, s.chat_jid, &gs), WA_STORE_NOT_FOUND);
    s.muted_until_ms = -1;
    s.pinned = true;
    CHECK_INT(st->chat_settings_save(x, &s), WA_STORE_OK);
    CHECK_INT(st->chat_settings_load(x, s.chat_jid, &gs), WA_STORE_OK);
    CHECK(gs.muted_until_ms == -1 && gs.pinned && !gs.archived && !gs.marked_unread);
    CHECK_STR(gs.chat_jid, s.chat_jid);
    s.muted_until_ms = 1800000000000;
    s.pinned = false;
    s.archived = s.marked_unread = true;
    CHECK_INT(st->chat_settings_save(x, &s), WA_STORE_OK);
    CHECK_INT(st->chat_settings_load(x, s.chat_jid, &gs), WA_STORE_OK);
    CHECK(gs.muted_until_ms == 1800000000000 && !gs.pinned && gs.archived && gs.marked_unread);
    CHECK_INT(st->chat_settings_delete(x, s.chat_jid), WA_STORE_OK);
    CHECK_INT(st->chat_settings_load(x, s.chat_jid, &gs), WA_STORE_NOT_FOUND);
}

static void case_lid_map(wa_store *st)
{
    void *x = st->ctx;
    char out[WA_ADDRESS_MAX];
    CHECK_INT(st->pn_for_lid(x, "111", out), WA_STORE_NOT_FOUND);
    CHECK_INT(st->lid_map_save(x, "111", "1555"), WA_STORE_OK);
    CHECK_INT(st->lid_map_save(x, "222", "2555"), WA_STORE_OK);
    CHECK_INT(st->pn_for_lid(x, "111", out), WA_STORE_OK);
    CHECK_STR(out, "1555");
    CHECK_INT(st->lid_for_pn(x, "2555", out), WA_STORE_OK);
    CHECK_STR(out, "222");
    /* the same again changes nothing */
    CHECK_INT(st->lid_map_save(x, "111", "1555"), WA_STORE_OK);
    CHECK_INT(st->lid_for_pn(x, "1555", out), WA_STORE_OK);
    CHECK_STR(out, "111");
    /* 1555 got a new LID: the old pairing goes */
    CHECK_INT(st->lid_map_save(x, "333", "1555"), WA_STORE_OK);
    CHECK_INT(st->lid_for_pn(x, "1555", out), WA_STORE_OK);
    CHECK_STR(out, "333");
    CHECK_INT(st->pn_for_lid(x, "111", out), WA_STORE_NOT_FOUND);
    /* LID 333 turns out to be another number: update */
    CHECK_INT(st->lid_map_save(x, "333", "3555"), WA_STORE_OK);
    CHECK_INT(st->pn_for_lid(x, "333", out), WA_STORE_OK);
    CHECK_STR(out, "3555");
    CHECK_INT(st->lid_for_pn(x, "1555", out), WA_STORE_NOT_FOUND);
    CHECK_INT(st->lid_map_delete(x, "333"), WA_STORE_OK);
    CHECK_INT(st->pn_for_lid(x, "333", out), WA_STORE_NOT_FOUND);
    CHECK_INT(st->lid_for_pn(x, "3555", out), WA_STORE_NOT_FOUND);
    CHECK_INT(st->lid_for_pn(x, "2555", out), WA_STORE_OK);
}

static void case_secrets(wa_store *st)
{
    void *x = st->ctx;
    const char *chat = "120363025246125888@g.us", *sender = "1555@s.whatsapp.net";
    uint8_t sec[WA_KEY_LEN], got[WA_KEY_LEN];
    fill(sec, sizeof(sec));
    CHECK_INT(st->msg_secret_load(x, chat, sender, "3EB0C431C26A1916E0C1", got),
              WA_STORE_NOT_FOUND);
    CHECK_INT(st->msg_secret_save(x, chat, sender, "3EB0C431C26A1916E0C1", sec), WA_STORE_OK);
    CHECK_INT(st->msg_secret_save(x, chat, sender, nasty[1], sec), WA_STORE_OK);
    CHECK_INT(st->msg_secret_load(x, chat, sender, "3EB0C431C26A1916E0C1", got), WA_STORE_OK);
    CHECK(memcmp(sec, got, WA_KEY_LEN) == 0);
    fill(sec, sizeof(sec));
    CHECK_INT(st->msg_secret_save(x, chat, sender, "3EB0C431C26A1916E0C1", sec), WA_STORE_OK);
    CHECK_INT(st->msg_secret_load(x, chat, sender, "3EB0C431C26A1916E0C1", got), WA_STORE_OK);
    CHECK(memcmp(sec, got, WA_KEY_LEN) == 0);
    CHECK_INT(st->msg_secret_load(x, chat, "other", "3EB0C431C26A1916E0C1", got),
              WA_STORE_NOT_FOUND);
    CHECK_INT(st->msg_secret_delete(x, chat, sender, "3EB0C431C26A1916E0C1"), WA_STORE_OK);
    CHECK_INT(st->msg_secret_load(x, chat, sender, "3EB0C431C26A1916E0C1", got),
              WA_STORE_NOT_FOUND);
    CHECK_INT(st->msg_secret_load(x, chat, sender, nasty[1], got), WA_STORE_OK);
}

typedef struct walk {
    int count;       /* events seen */
    int64_t last_ts; /* server_ts of the previous one */
    bool ordered;    /* oldest first so far */
    bool content_ok; /* all fields as written */
    int stop_after;  /* return 7 after this many (0: never) */
} walk;

static int walk_fn(void *arg, const wa_buffered_event *ev)
{
    walk *w = arg;
    w->count++;
    if (ev->server_ts_ms < w->last_ts) w->ordered = false;
    w->last_ts = ev->server_ts_ms;
    int i = (int)(ev->server_ts_ms - 1700000000000);
    char id[32];
    snprintf(id, sizeof(id), "3EB0%04d", i);
    if (strcmp(ev->message_id, id) != 0 || strcmp(ev->sender_jid, nasty[i % 4]) != 0 ||
        strcmp(ev->chat_jid, "1555@s.whatsapp.net") != 0 ||
        ev->plaintext_len != (size_t)(100 + i) || ev->plaintext[0] != (uint8_t)i ||
        ev->ciphertext_hash[0] != (uint8_t)i || ev->inserted_ms <= 0)
        w->content_ok = false;
    return (w->stop_after && w->count == w->stop_after) ? 7 : 0;
}

static void make_event(wa_buffered_event *ev, uint8_t *pt, int i)
{
    memset(ev, 0, sizeof(*ev));
    static char ids[16][32];
    fill(ev->ciphertext_hash, WA_KEY_LEN);
    ev->ciphertext_hash[0] = (uint8_t)i;
    snprintf(ids[i % 16], sizeof(ids[0]), "3EB0%04d", i);
    ev->chat_jid = "1555@s.whatsapp.net";
    ev->sender_jid = nasty[i % 4];
    ev->message_id = ids[i % 16];
    fill(pt, (size_t)(100 + i));
    pt[0] = (uint8_t)i;
    ev->plaintext = pt;
    ev->plaintext_len = (size_t)(100 + i);
    ev->server_ts_ms = 1700000000000 + i;
}

static void case_event_buffer(wa_store *st)
{
    void *x = st->ctx;
    wa_buffered_event ev[5];
    uint8_t pt[5][200];
    wb_buf b;
    wb_buf_init(&b);
    int64_t ts = 0;
    for (int i = 0; i < 5; i++) {
        make_event(&ev[i], pt[i], i);
        CHECK_INT(st->event_buffer_load(x, ev[i].ciphertext_hash, &b, &ts), WA_STORE_NOT_FOUND);
        CHECK_INT(st->event_buffer_save(x, &ev[i]), WA_STORE_OK);
    }
    CHECK_INT(st->event_buffer_load(x, ev[3].ciphertext_hash, &b, &ts), WA_STORE_OK);
    CHECK(b.len == ev[3].plaintext_len && memcmp(b.data, pt[3], b.len) == 0);
    CHECK(ts == ev[3].server_ts_ms);
    walk w = {0, 0, true, true, 0};
    CHECK_INT(st->event_buffer_foreach(x, walk_fn, &w), WA_STORE_OK);
    CHECK_INT(w.count, 5);
    CHECK(w.ordered && w.content_ok);
    walk w2 = {0, 0, true, true, 2};
    CHECK_INT(st->event_buffer_foreach(x, walk_fn, &w2), 7);
    CHECK_INT(w2.count, 2);
    /* a redelivery stores the same again: still one row */
    CHECK_INT(st->event_buffer_save(x, &ev[3]), WA_STORE_OK);
    /* bridged: the row goes */
    CHECK_INT(st->event_buffer_delete(x, ev[3].ciphertext_hash), WA_STORE_OK);
    CHECK_INT(st->event_buffer_load(x, ev[3].ciphertext_hash, &b, NULL), WA_STORE_NOT_FOUND);
    walk w3 = {0, 0, true, true, 0};
    CHECK_INT(st->event_buffer_foreach(x, walk_fn, &w3), WA_STORE_OK);
    CHECK_INT(w3.count, 4);
    size_t n = 99;
    CHECK_INT(st->event_buffer_prune(x, now_ms() - 3600 * 1000, &n), WA_STORE_OK);
    CHECK_INT((int)n, 0);
    CHECK_INT(st->event_buffer_prune(x, now_ms() + 1000, &n), WA_STORE_OK);
    CHECK_INT((int)n, 4);
    walk w4 = {0, 0, true, true, 0};
    CHECK_INT(st->event_buffer_foreach(x, walk_fn, &w4), WA_STORE_OK);
    CHECK_INT(w4.count, 0);
    wb_buf_free(&b);
}

static void case_sent(wa_store *st)
{
    void *x = st->ctx;
    const char *chat = "120363025246125888@g.us";
    uint8_t pt[3000];
    fill(pt, sizeof(pt));
    wb_buf b;
    wb_buf_init(&b);
    int64_t t0 = 1700000000000;
    CHECK_INT(st->sent_load(x, chat, "3EB0AA", &b), WA_STORE_NOT_FOUND);
    CHECK_INT(st->sent_save(x, chat, "3EB0AA", pt, sizeof(pt), t0), WA_STORE_OK);
    CHECK_INT(st->sent_save(x, chat, "3EB0BB", pt, 10, t0 + 1000), WA_STORE_OK);
    CHECK_INT(st->sent_save(x, nasty[1], "3EB0CC", pt, 20, t0 + 2000), WA_STORE_OK);
    CHECK_INT(st->sent_load(x, chat, "3EB0AA", &b), WA_STORE_OK);
    CHECK(b.len == sizeof(pt) && memcmp(b.data, pt, b.len) == 0);
    CHECK_INT(st->sent_save(x, chat, "3EB0AA", pt + 5, 50, t0 + 50), WA_STORE_OK);
    b.len = 0;
    CHECK_INT(st->sent_load(x, chat, "3EB0AA", &b), WA_STORE_OK);
    CHECK(b.len == 50 && memcmp(b.data, pt + 5, 50) == 0);
    CHECK_INT(st->sent_delete(x, chat, "3EB0BB"), WA_STORE_OK);
    CHECK_INT(st->sent_load(x, chat, "3EB0BB", &b), WA_STORE_NOT_FOUND);
    size_t n = 0;
    CHECK_INT(st->sent_prune(x, t0 + 1500, &n), WA_STORE_OK);
    CHECK_INT((int)n, 1);
    CHECK_INT(st->sent_load(x, chat, "3EB0AA", &b), WA_STORE_NOT_FOUND);
    b.len = 0;
    CHECK_INT(st->sent_load(x, nasty[1], "3EB0CC", &b), WA_STORE_OK);
    CHECK_INT((int)b.len, 20);
    wb_buf_free(&b);
}

/* The decrypt path: plaintext into the buffer and the advanced session, atomically. */
static void case_transactions(wa_store *st, const store_hooks *hooks)
{
    void *x = st->ctx;
    wa_buffered_event ev;
    uint8_t pt[200], sess_old[400], sess_new[420];
    make_event(&ev, pt, 9);
    fill(sess_old, sizeof(sess_old));
    fill(sess_new, sizeof(sess_new));
    const char *addr = "1555:7";
    CHECK_INT(st->session_save(x, addr, sess_old, sizeof(sess_old)), WA_STORE_OK);
    wb_buf b;
    wb_buf_init(&b);

    /* rolled back: neither the event nor the new session; the epoch moves on (what was kept on
     * the strength of the writes is not good) */
    CHECK(st->epoch != NULL);
    uint64_t epoch = st->epoch(x);
    CHECK_INT(st->begin(x), WA_STORE_OK);
    CHECK_INT(st->begin(x), WA_STORE_ERR_STATE);
    CHECK_INT(st->event_buffer_save(x, &ev), WA_STORE_OK);
    CHECK_INT(st->session_save(x, addr, sess_new, sizeof(sess_new)), WA_STORE_OK);
    CHECK(st->epoch(x) == epoch);
    CHECK_INT(st->rollback(x), WA_STORE_OK);
    CHECK(st->epoch(x) != epoch);
    epoch = st->epoch(x);
    CHECK_INT(st->event_buffer_load(x, ev.ciphertext_hash, &b, NULL), WA_STORE_NOT_FOUND);
    CHECK_INT(st->session_load(x, addr, &b), WA_STORE_OK);
    CHECK(b.len == sizeof(sess_old) && memcmp(b.data, sess_old, b.len) == 0);
    CHECK_INT(st->commit(x), WA_STORE_ERR_STATE);

    /* the store fails between the two writes: commit refuses, nothing is half-written (a read
     * first, so that the transaction has certainly reached the backend: a store may hold writes
     * back until then, and one that lost nothing yet may carry on on a new connection) */
    if (hooks && hooks->break_next) {
        CHECK_INT(st->begin(x), WA_STORE_OK);
        CHECK_INT(st->event_buffer_save(x, &ev), WA_STORE_OK);
        CHECK_INT(st->session_load(x, "1555999:9", &b), WA_STORE_NOT_FOUND); /* never cached */
        hooks->break_next(st, hooks->arg);
        /* the failure shows at the write, or (a write deferred to commit) at the commit */
        int rc = st->session_save(x, addr, sess_new, sizeof(sess_new));
        CHECK(rc == WA_STORE_ERR_IO || rc == WA_STORE_OK);
        if (rc) CHECK(strlen(st->last_error(x)) > 0);
        CHECK(st->commit(x) < 0);
        CHECK(strlen(st->last_error(x)) > 0);
        CHECK(st->epoch(x) != epoch);
        CHECK_INT(st->rollback(x), WA_STORE_OK);
        CHECK_INT(st->event_buffer_load(x, ev.ciphertext_hash, &b, NULL), WA_STORE_NOT_FOUND);
        b.len = 0;
        CHECK_INT(st->session_load(x, addr, &b), WA_STORE_OK);
        CHECK(b.len == sizeof(sess_old) && memcmp(b.data, sess_old, b.len) == 0);
        /* and the store works again afterwards */
        CHECK_INT(st->session_save(x, "1555:8", sess_old, 10), WA_STORE_OK);
    }

    /* committed: both */
    CHECK_INT(st->begin(x), WA_STORE_OK);
    CHECK_INT(st->event_buffer_save(x, &ev), WA_STORE_OK);
    CHECK_INT(st->session_save(x, addr, sess_new, sizeof(sess_new)), WA_STORE_OK);
    wa_prekey pk = {4242, {{0}, {0}}, true};
    fill(&pk.key, sizeof(pk.key));
    CHECK_INT(st->prekeys_save(x, &pk, 1), WA_STORE_OK); /* a multi-statement call inside */
    epoch = st->epoch(x);
    CHECK_INT(st->commit(x), WA_STORE_OK);
    CHECK(st->epoch(x) == epoch); /* committed: nothing lost */
    b.len = 0;
    CHECK_INT(st->event_buffer_load(x, ev.ciphertext_hash, &b, NULL), WA_STORE_OK);
    CHECK(b.len == ev.plaintext_len && memcmp(b.data, pt, b.len) == 0);
    b.len = 0;
    CHECK_INT(st->session_load(x, addr, &b), WA_STORE_OK);
    CHECK(b.len == sizeof(sess_new) && memcmp(b.data, sess_new, b.len) == 0);
    wa_prekey got;
    CHECK_INT(st->prekey_load(x, 4242, &got), WA_STORE_OK);
    wb_buf_free(&b);
}

static void case_wipe(wa_store *st)
{
    void *x = st->ctx;
    wa_device d;
    make_device(&d, true);
    CHECK_INT(st->device_save(x, &d), WA_STORE_OK);
    CHECK_INT(st->wipe(x), WA_STORE_OK);
    wa_device got;
    wb_buf b;
    wb_buf_init(&b);
    uint8_t k[WA_KEY_LEN];
    char out[WA_ADDRESS_MAX];
    CHECK_INT(st->device_load(x, &got), WA_STORE_NOT_FOUND);
    CHECK_INT(st->session_load(x, "1555:7", &b), WA_STORE_NOT_FOUND);
    CHECK_INT(st->identity_load(x, "15551234567:0", k), WA_STORE_NOT_FOUND);
    CHECK_INT(st->lid_for_pn(x, "2555", out), WA_STORE_NOT_FOUND);
    CHECK_INT(st->sent_load(x, nasty[1], "3EB0CC", &b), WA_STORE_NOT_FOUND);
    size_t n = 1;
    CHECK_INT(st->prekeys_count_uploaded(x, &n), WA_STORE_OK);
    CHECK_INT((int)n, 0);
    wb_buf_free(&b);
}

void store_cases_run(wa_store *st, const store_hooks *hooks, int *passed, int *failed)
{
    case_device(st);
    case_identity(st);
    case_identity_prefix(st);
    case_sessions(st);
    case_prekeys(st);
    case_sender_keys(st);
    case_appstate(st);
    case_contacts(st);
    case_lid_map(st);
    case_secrets(st);
    case_event_buffer(st);
    case_sent(st);
    case_transactions(st, hooks);
    case_wipe(st);
    *passed += check_passed;
    *failed += check_failed;
    check_passed = check_failed = 0;
}
