/*
 * tests/unit/test_engine_groups.c - groups in the client (wa/client.h): engines and wa-sim's logic
 * (tests/sim/wa-server/sim.c, sim_group.c) wired in memory on a virtual clock. A and A2 are two
 * companions of Alice's account, B one of Bob's (B2 pairs later); Carol and Dave are simulated
 * phones only. Every account's phone is a group member too.
 *
 * Checked: the participating query after login; A creates a LID group (result with the info, the
 * create notification at B and A2); sends to the group: B and A2 read the SKDM pairwise then the
 * skmsg (parts in that order, hashes of the ciphertexts), every phone reads it, a second text is
 * skmsg only, device lists come from one usync and are cached (1:1 too); B and Carol's phone
 * answer; every group call (info, subject, description with and without the current id known,
 * setting, invite get and revoke, promote, add with a per-participant error, refusals 401 / 404,
 * bad arguments); a dirty group list is fetched again; a companion that pairs (a devices
 * notification) gets the next message; a receiver that lost our sender key asks again and gets
 * the content pairwise with the key; a redelivered stanza whose buffer rows are gone is receipted
 * without a message or a retry; removals and a leave rotate our key (the removed cannot decrypt
 * what follows, the others can), a leave and a removal of ourselves forget the group (sends then
 * fail); every queue drains; a phone that first wrote to Alice's phone number sends its SKDM on
 * that same session in a LID group, and Alice's engines read it without a retry.
 */
#include "check.h"
#include "sim_group.h"
#include "sim_rig.h"
#include "wa/store_mem.h"
#include "wa/senderkey.h"

#include <cJSON.h>
#include <stdlib.h>

#define PHONE_A "15550000051"
#define PHONE_B "15550000052"
#define PHONE_C "15550000053"
#define PHONE_D "15550000054"
#define PHONE_E "15550000055"
#define LID_A   "100000000000051"
#define LID_B   "100000000000052"
#define LID_C   "100000000000053"
#define LID_D   "100000000000054"
#define LID_E   "100000000000055"
#define JID_A   PHONE_A "@s.whatsapp.net"
#define JID_B   PHONE_B "@s.whatsapp.net"
#define JID_C   PHONE_C "@s.whatsapp.net"
#define JID_D   PHONE_D "@s.whatsapp.net"

static const wa_group_result *result_of(const sim_rig_peer *p, uint32_t req, wa_group_op op)
{
    for (int i = p->nresults - 1; i >= 0; i--)
        if (p->results[i].req_id == req && p->results[i].op == op) return &p->results[i];
    return NULL;
}

/* The latest update of p with a change of type t; its change in *ch. */
static const wa_group_update *update_of(const sim_rig_peer *p, wa_group_event_type t,
                                        const wa_group_change_event **ch)
{
    for (int i = p->nupdates - 1; i >= 0; i--)
        for (size_t k = 0; k < p->updates[i].event.nchanges; k++)
            if (p->updates[i].event.changes[k].type == t) {
                if (ch) *ch = &p->updates[i].event.changes[k];
                return &p->updates[i];
            }
    return NULL;
}

/* Waits for p's group call req to be answered (advance) and returns its result. */
static const wa_group_result *answered(sim_rig *r, const sim_rig_peer *p, uint32_t req,
                                       wa_group_op op)
{
    sim_rig_advance(r, 100);
    const wa_group_result *res = result_of(p, req, op);
    CHECK(res != NULL);
    return res;
}

/* The last skmsg sent to the group, as wa-sim kept it; its bytes into out (replaced). */
static bool last_skmsg(sim_rig *r, wb_buf *out, char *sender, size_t cap)
{
    char *json = sim_admin_group_json(&r->s, r->group);
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    const cJSON *last = o ? cJSON_GetObjectItem(o, "last") : NULL;
    const cJSON *hex = last ? cJSON_GetObjectItem(last, "skmsg") : NULL;
    const cJSON *who = last ? cJSON_GetObjectItem(last, "sender") : NULL;
    bool ok = cJSON_IsString(hex) && cJSON_IsString(who);
    out->len = 0;
    if (ok) {
        size_t n = strlen(hex->valuestring) / 2, len = 0;
        ok = wb_buf_reserve(out, n + 1) &&
             wb_hex_decode(hex->valuestring, n * 2, out->data, n + 1, &len) && len == n;
        out->len = ok ? n : 0;
        snprintf(sender, cap, "%s", who->valuestring);
    }
    cJSON_Delete(o);
    free(json);
    return ok;
}

/* Whether the phone of `phone` can decrypt the last skmsg of the group with the sender keys it
 * holds (its store), from (name, device). */
static int phone_decrypt_last(sim_rig *r, const char *phone, const char *name, uint32_t device)
{
    wb_buf ct, plain;
    wb_buf_init(&ct);
    wb_buf_init(&plain);
    char sender[64];
    int rc = WA_ERR_INVALID;
    sim_phone *p = sim_phone_of(&r->s, sim_account_find(&r->s, phone));
    wa_senderkey *sk = p ? wa_senderkey_new(r->crypto, &p->store, NULL) : NULL;
    if (sk && last_skmsg(r, &ct, sender, sizeof(sender)))
        rc = wa_senderkey_decrypt(sk, r->group, name, device, ct.data, ct.len, &plain);
    wa_senderkey_free(sk);
    wb_buf_free(&ct);
    wb_buf_free(&plain);
    return rc;
}

/* The same with an engine's store (the keys it keeps). */
static int engine_decrypt_last(sim_rig *r, sim_rig_peer *p, const char *name, uint32_t device)
{
    wb_buf ct, plain;
    wb_buf_init(&ct);
    wb_buf_init(&plain);
    char sender[64];
    int rc = WA_ERR_INVALID;
    wa_senderkey *sk = wa_senderkey_new(r->crypto, &p->store, NULL);
    if (sk && last_skmsg(r, &ct, sender, sizeof(sender)))
        rc = wa_senderkey_decrypt(sk, r->group, name, device, ct.data, ct.len, &plain);
    wa_senderkey_free(sk);
    wb_buf_free(&ct);
    wb_buf_free(&plain);
    return rc;
}

static const wa_group_participant *participant(const wa_group_info *info, const char *jid)
{
    for (size_t i = 0; info && i < info->nparticipants; i++)
        if (strcmp(info->participants[i].jid, jid) == 0) return &info->participants[i];
    return NULL;
}

static void test_create(sim_rig *r)
{
    sim_rig_peer *a = r->peers[0], *a2 = r->peers[1], *b = r->peers[2];
    /* after login every engine asked for its groups (request id 0): none yet */
    for (int i = 0; i < 3; i++) {
        const wa_group_result *res = result_of(r->peers[i], 0, WA_GROUP_OP_PARTICIPATING);
        CHECK(res && res->code == 0 && res->ngroups == 0);
    }
    const char *members[] = {JID_B, JID_C};
    uint32_t req = 0;
    CHECK_INT(wa_client_group_create(a->client, "Engines", members, 2, &req), WA_OK);
    CHECK(req > 0);
    const wa_group_result *res = answered(r, a, req, WA_GROUP_OP_CREATE);
    CHECK(res && res->code == 0 && res->info);
    if (!res || !res->info) return;
    snprintf(r->group, sizeof(r->group), "%s", res->group);
    CHECK(strstr(r->group, "@g.us") != NULL);
    CHECK_STR(res->info->jid, r->group);
    CHECK_STR(res->info->subject, "Engines");
    CHECK_STR(res->info->addressing_mode, "lid");
    CHECK_INT(res->info->nparticipants, 3);
    const wa_group_participant *me = participant(res->info, LID_A "@lid");
    CHECK(me && me->superadmin && me->phone_number && strcmp(me->phone_number, JID_A) == 0);
    char want[256];
    snprintf(want, sizeof(want), "create %s", r->group);
    CHECK_INT(sim_rig_count(a, WA_EV_GROUP_RESULT, want), 1);
    bool ms_ok = false;
    for (int i = 0; i < a->nevents; i++)
        if (a->events[i].type == WA_EV_GROUP_RESULT && a->events[i].ms == (int64_t)req)
            ms_ok = a->events[i].code == 0;
    CHECK(ms_ok);
    /* B and A2 learn of it from the create notification */
    const wa_group_change_event *ch = NULL;
    const wa_group_update *up = update_of(b, WA_GROUP_EV_CREATE, &ch);
    CHECK(up && strcmp(up->event.group, r->group) == 0 && up->event.author &&
          strcmp(up->event.author, LID_A "@lid") == 0);
    CHECK(ch && ch->info && strcmp(ch->info->subject, "Engines") == 0 &&
          ch->info->nparticipants == 3);
    CHECK(update_of(a2, WA_GROUP_EV_CREATE, NULL) != NULL);
    snprintf(want, sizeof(want), "%s", r->group);
    CHECK(sim_rig_count(b, WA_EV_GROUP, want) >= 1);
}

static void test_messages(sim_rig *r)
{
    sim_rig_peer *a = r->peers[0], *a2 = r->peers[1], *b = r->peers[2];
    char id1[WA_MESSAGE_ID_MAX], id2[WA_MESSAGE_ID_MAX], id3[WA_MESSAGE_ID_MAX];
    uint64_t q0 = r->s.usync_queries;
    CHECK_INT(sim_rig_send_text(r, a, r->group, "hello group", id1), WA_OK);
    CHECK_INT(sim_rig_count(a, WA_EV_SENT, id1), 1);
    CHECK_INT(r->s.usync_queries - q0, 1); /* every member in one query */
    const sim_rig_msg *g = sim_rig_got(b, id1);
    CHECK(g != NULL);
    if (g) {
        CHECK_STR(g->chat, r->group);
        CHECK_STR(g->sender, LID_A ":1@lid");
        CHECK(g->m.kind == WA_MSG_TEXT && g->m.text && strcmp(g->m.text, "hello group") == 0);
        /* the SKDM pairwise first (taken, nothing to show), then the skmsg */
        CHECK_INT(g->nparts, 2);
        CHECK(!g->skmsg[0] && g->skdm_only[0] && g->skmsg[1] && !g->skdm_only[1]);
        wb_buf ct;
        wb_buf_init(&ct);
        char sender[64];
        uint8_t h[32];
        CHECK(last_skmsg(r, &ct, sender, sizeof(sender)));
        wa_sha256(ct.data, ct.len, h);
        CHECK(memcmp(h, g->hash[1], 32) == 0);
        CHECK_STR(sender, LID_A ":1@lid");
        wb_buf_free(&ct);
    }
    g = sim_rig_got(a2, id1);
    CHECK(g && g->m.text && strcmp(g->m.text, "hello group") == 0 &&
          strcmp(g->chat, r->group) == 0);
    const sim_phone_msg *pm = sim_rig_phone_got(r, PHONE_C, id1);
    CHECK(pm && !pm->failed && strcmp(pm->text, "hello group") == 0 &&
          strcmp(pm->chat, r->group) == 0);
    CHECK(sim_rig_phone_got(r, PHONE_B, id1) != NULL);
    pm = sim_rig_phone_got(r, PHONE_A, id1);
    CHECK(pm && pm->own && !pm->failed);

    /* the second text: skmsg only, and no device list asked again */
    CHECK_INT(sim_rig_send_text(r, a, r->group, "second", id2), WA_OK);
    g = sim_rig_got(b, id2);
    CHECK(g && g->nparts == 1 && g->skmsg[0] && g->m.text && strcmp(g->m.text, "second") == 0);
    pm = sim_rig_phone_got(r, PHONE_C, id2);
    CHECK(pm && !pm->failed && strcmp(pm->text, "second") == 0);
    CHECK_INT(r->s.usync_queries - q0, 1);

    /* B answers; Carol's phone too */
    CHECK_INT(sim_rig_send_text(r, b, r->group, "Bob here", id3), WA_OK);
    g = sim_rig_got(a, id3);
    CHECK(g && strcmp(g->sender, LID_B ":1@lid") == 0 && g->m.text &&
          strcmp(g->m.text, "Bob here") == 0);
    CHECK(sim_rig_got(a2, id3) != NULL);
    pm = sim_rig_phone_got(r, PHONE_C, id3);
    CHECK(pm && !pm->failed && strcmp(pm->text, "Bob here") == 0);
    char pid[64], err[160];
    CHECK_INT(sim_admin_group_send(&r->s, PHONE_C, r->group, "Carol's phone", pid, sizeof(pid), err,
                                   sizeof(err)),
              0);
    sim_rig_advance(r, 100);
    g = sim_rig_got(a, pid);
    CHECK(g && strcmp(g->sender, LID_C "@lid") == 0 && g->m.text &&
          strcmp(g->m.text, "Carol's phone") == 0);
    CHECK(sim_rig_got(a2, pid) && sim_rig_got(b, pid));

    /* 1:1 sends use the cache too: one usync for the first, none for the second */
    uint64_t q1 = r->s.usync_queries;
    CHECK_INT(sim_rig_send_text(r, a, JID_B, "direct 1", id1), WA_OK);
    CHECK_INT(sim_rig_send_text(r, a, JID_B, "direct 2", id2), WA_OK);
    CHECK_INT(r->s.usync_queries - q1, 1);
    CHECK(sim_rig_got(b, id1) && sim_rig_got(b, id2) && sim_rig_got(a2, id2));
}

static void test_calls(sim_rig *r)
{
    sim_rig_peer *a = r->peers[0], *b = r->peers[2];
    uint32_t req;
    /* info */
    CHECK_INT(wa_client_group_info(b->client, r->group, &req), WA_OK);
    const wa_group_result *res = answered(r, b, req, WA_GROUP_OP_INFO);
    CHECK(res && res->code == 0 && res->info && res->info->nparticipants == 3 &&
          strcmp(res->group, r->group) == 0);
    CHECK_INT(wa_client_group_info(a->client, "120363000000000099@g.us", &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_INFO);
    CHECK(res && res->code == 404 && !res->info);
    /* subject */
    CHECK_INT(wa_client_group_subject(a->client, r->group, "Renamed", &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_SUBJECT);
    CHECK(res && res->code == 0);
    const wa_group_change_event *ch = NULL;
    CHECK(update_of(b, WA_GROUP_EV_SUBJECT, &ch) && ch && strcmp(ch->text, "Renamed") == 0);
    /* description: the id is known from the create */
    CHECK_INT(wa_client_group_description(a->client, r->group, "What it is for", &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_DESCRIPTION);
    CHECK(res && res->code == 0);
    CHECK(update_of(b, WA_GROUP_EV_DESCRIPTION, &ch) && ch && ch->text &&
          strcmp(ch->text, "What it is for") == 0);
    /* B knows the new id from the notification */
    CHECK_INT(wa_client_group_description(b->client, r->group, "Bob's words", &req), WA_OK);
    res = answered(r, b, req, WA_GROUP_OP_DESCRIPTION);
    CHECK(res && res->code == 0);
    CHECK_INT(wa_client_group_info(a->client, r->group, &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_INFO);
    CHECK(res && res->info && res->info->description &&
          strcmp(res->info->description, "Bob's words") == 0);
    /* setting */
    CHECK_INT(wa_client_group_setting(a->client, r->group, WA_GROUP_LOCKED, &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_SETTING);
    CHECK(res && res->code == 0);
    CHECK(update_of(b, WA_GROUP_EV_LOCKED, &ch) && ch && ch->on);
    /* invite: get, revoke; a non-admin is refused */
    CHECK_INT(wa_client_group_invite_link(a->client, r->group, false, &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_INVITE);
    CHECK(res && res->code == 0 && res->invite_code && res->invite_code[0]);
    char code1[64] = "";
    if (res && res->invite_code) snprintf(code1, sizeof(code1), "%s", res->invite_code);
    CHECK_INT(wa_client_group_invite_link(a->client, r->group, true, &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_INVITE);
    CHECK(res && res->code == 0 && res->invite_code && strcmp(res->invite_code, code1) != 0);
    CHECK(update_of(b, WA_GROUP_EV_INVITE, NULL) != NULL);
    CHECK_INT(wa_client_group_invite_link(b->client, r->group, false, &req), WA_OK);
    res = answered(r, b, req, WA_GROUP_OP_INVITE);
    CHECK(res && res->code == 401 && !res->invite_code);
    /* B cannot remove anyone yet; A promotes B */
    const char *carol[] = {JID_C};
    CHECK_INT(wa_client_group_participants(b->client, r->group, WA_GROUP_REMOVE, carol, 1, &req),
              WA_OK);
    res = answered(r, b, req, WA_GROUP_OP_PARTICIPANTS);
    CHECK(res && res->code == 401);
    const char *bob[] = {JID_B};
    CHECK_INT(wa_client_group_participants(a->client, r->group, WA_GROUP_PROMOTE, bob, 1, &req),
              WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_PARTICIPANTS);
    CHECK(res && res->code == 0 && res->change == WA_GROUP_PROMOTE && res->nparticipants == 1 &&
          res->participants[0].error == 0);
    CHECK(update_of(b, WA_GROUP_EV_PROMOTE, &ch) && ch && ch->nparticipants == 1 &&
          strcmp(ch->participants[0].jid, LID_B "@lid") == 0);
    /* an add with a per-participant error, and one that works (Dave) */
    const char *nobody[] = {"15559999999@s.whatsapp.net", JID_D};
    CHECK_INT(wa_client_group_participants(a->client, r->group, WA_GROUP_ADD, nobody, 2, &req),
              WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_PARTICIPANTS);
    CHECK(res && res->code == 0 && res->nparticipants == 2 && res->participants[0].error == 404 &&
          res->participants[1].error == 0);
    CHECK(update_of(b, WA_GROUP_EV_ADD, &ch) && ch && ch->nparticipants == 1 &&
          strcmp(ch->participants[0].jid, LID_D "@lid") == 0);
    /* our add left A's cache stale: a description now asks for the current id first */
    CHECK_INT(wa_client_group_description(a->client, r->group, "After Dave", &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_DESCRIPTION);
    CHECK(res && res->code == 0);
    CHECK(update_of(b, WA_GROUP_EV_DESCRIPTION, &ch) && ch && ch->text &&
          strcmp(ch->text, "After Dave") == 0);
    /* and deletes it */
    CHECK_INT(wa_client_group_description(a->client, r->group, NULL, &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_DESCRIPTION);
    CHECK(res && res->code == 0);
    CHECK(update_of(b, WA_GROUP_EV_DESCRIPTION, &ch) && ch && ch->text == NULL);
    /* participating on request */
    CHECK_INT(wa_client_group_participating(b->client, &req), WA_OK);
    res = answered(r, b, req, WA_GROUP_OP_PARTICIPATING);
    CHECK(res && res->code == 0 && res->ngroups == 1 && strcmp(res->groups[0].jid, r->group) == 0 &&
          res->groups[0].nparticipants == 4);
    /* a dirty group list: asked again by the client itself (request id 0) */
    int before = 0;
    for (int i = 0; i < a->nresults; i++)
        before += a->results[i].req_id == 0;
    wb_arena ar;
    wb_arena_init(&ar, 0);
    wa_node *ib = wa_node_new(&ar, "ib");
    wa_node_set_attr(&ar, ib, "from", WA_SERVER_PN);
    wa_node *dirty = wa_node_new(&ar, "dirty");
    wa_node_set_attr(&ar, dirty, "type", "groups");
    wa_node_set_attr(&ar, dirty, "timestamp", "1800000000");
    wa_node_add_child(&ar, ib, dirty);
    CHECK_INT(sim_send_node(&r->s, a->conn, ib), 0);
    wb_arena_free(&ar);
    sim_rig_advance(r, 100);
    int after = 0;
    for (int i = 0; i < a->nresults; i++)
        after += a->results[i].req_id == 0;
    CHECK_INT(after - before, 1);
    res = result_of(a, 0, WA_GROUP_OP_PARTICIPATING);
    CHECK(res && res->code == 0 && res->ngroups == 1);
    /* refusals before anything is sent */
    const char *bad[] = {"not a jid"};
    CHECK_INT(wa_client_group_create(a->client, "", carol, 1, &req), WA_ERR_INVALID);
    CHECK_INT(wa_client_group_create(a->client, "x", bad, 1, &req), WA_ERR_BAD_JID);
    CHECK_INT(wa_client_group_info(a->client, JID_B, &req), WA_ERR_BAD_JID);
    CHECK_INT(wa_client_group_participants(a->client, r->group, WA_GROUP_ADD, carol, 0, &req),
              WA_ERR_INVALID);
    CHECK_INT(wa_client_group_participants(a->client, r->group, WA_GROUP_ADD, bad, 1, &req),
              WA_ERR_BAD_JID);
    CHECK_INT(wa_client_group_subject(a->client, r->group, "", &req), WA_ERR_INVALID);
    CHECK_INT(wa_client_group_setting(a->client, r->group, (wa_group_setting)9, &req),
              WA_ERR_INVALID);
}

/* A companion that pairs is announced (devices notification): the next message reaches it. */
static void test_new_device(sim_rig *r)
{
    sim_rig_peer *a = r->peers[0];
    sim_rig_peer *b2 = sim_rig_pair(r, PHONE_B, "Bob");
    CHECK_STR(wa_client_jid(b2->client), PHONE_B ":2@s.whatsapp.net");
    uint64_t q0 = r->s.usync_queries;
    char id[WA_MESSAGE_ID_MAX];
    CHECK_INT(sim_rig_send_text(r, a, r->group, "hello B2", id), WA_OK);
    CHECK_INT(r->s.usync_queries - q0, 1); /* Bob's devices asked again */
    const sim_rig_msg *g = sim_rig_got(b2, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "hello B2") == 0 && g->nparts == 2 &&
          g->skdm_only[0]);
    g = sim_rig_got(r->peers[2], id);
    CHECK(g && g->nparts == 1); /* B had the key already */
}

/* B lost A's sender key: it asks again and gets the content pairwise, with the key. */
static void test_retry(sim_rig *r)
{
    sim_rig_peer *a = r->peers[0], *b = r->peers[2];
    char id1[WA_MESSAGE_ID_MAX], id2[WA_MESSAGE_ID_MAX], id3[WA_MESSAGE_ID_MAX];
    CHECK_INT(sim_rig_send_text(r, a, r->group, "before the loss", id1), WA_OK);
    CHECK(sim_rig_got(b, id1) != NULL);
    CHECK_INT(b->store.sender_key_delete(b->store.ctx, r->group, LID_A "_1:1"), WA_STORE_OK);
    int errors = sim_rig_count(b, WA_EV_ERROR, NULL);
    uint64_t q0 = r->s.usync_queries;
    CHECK_INT(sim_rig_send_text(r, a, r->group, "after the loss", id2), WA_OK);
    const sim_rig_msg *g = sim_rig_got(b, id2);
    CHECK(g && g->m.text && strcmp(g->m.text, "after the loss") == 0);
    CHECK(g && g->nparts == 1 && !g->skmsg[0] && !g->skdm_only[0]); /* pairwise, with the key */
    CHECK_INT(sim_rig_count(b, WA_EV_ERROR, NULL) - errors, 1);     /* "asked again" */
    char want[320];
    snprintf(want, sizeof(want), "%s retry %s", id2, r->group);
    CHECK_INT(sim_rig_count(a, WA_EV_RECEIPT, want), 1);
    CHECK_INT(sim_rig_send_text(r, a, r->group, "and on", id3), WA_OK);
    g = sim_rig_got(b, id3);
    CHECK(g && g->nparts == 1 && g->skmsg[0] && g->m.text && strcmp(g->m.text, "and on") == 0);
    CHECK_INT(r->s.usync_queries - q0, 1); /* the retry dropped Bob's device list */
}

/* A stanza delivered again after the bridge deleted its buffer rows: Signal says duplicate, the
 * client receipts it, raises no message and asks for no retry. */
static void test_duplicate(sim_rig *r)
{
    sim_rig_peer *a = r->peers[0], *b = r->peers[2];
    wa_client_stop(b->client, r->now);
    sim_rig_advance(r, 100);
    char id[WA_MESSAGE_ID_MAX];
    CHECK_INT(sim_rig_send_text(r, a, r->group, "only once", id), WA_OK);
    wb_arena ar;
    wb_arena_init(&ar, 0);
    wa_node *copy = sim_rig_queued(r, PHONE_B, 1, id, &ar);
    CHECK(copy != NULL);
    CHECK_INT(wa_client_start(b->client, r->now, r->wall), WA_OK);
    sim_rig_advance(r, 2000);
    const sim_rig_msg *g = sim_rig_got(b, id);
    CHECK(g && g->nparts == 1 && g->m.text && strcmp(g->m.text, "only once") == 0);
    for (size_t i = 0; g && i < g->nparts; i++)
        CHECK_INT(b->store.event_buffer_delete(b->store.ctx, g->hash[i]), WA_STORE_OK);
    char want[320];
    snprintf(want, sizeof(want), "%s  %s", id, r->group);
    int receipts = sim_rig_count(a, WA_EV_RECEIPT, want),
        errors = sim_rig_count(b, WA_EV_ERROR, NULL);
    if (copy) CHECK_INT(sim_send_node(&r->s, b->conn, copy), 0);
    sim_rig_advance(r, 100);
    CHECK_INT(sim_rig_got_count(b, id), 1);
    CHECK_INT(sim_rig_count(b, WA_EV_ERROR, NULL), errors);
    CHECK_INT(sim_rig_count(a, WA_EV_RECEIPT, want) - receipts, 1); /* B's receipt for the copy */
    snprintf(want, sizeof(want), "%s retry", id);
    CHECK_INT(sim_rig_count(a, WA_EV_RECEIPT, want), 0);
    wb_arena_free(&ar);
}

static void test_rotation(sim_rig *r)
{
    sim_rig_peer *a = r->peers[0], *a2 = r->peers[1], *b = r->peers[2];
    char id[WA_MESSAGE_ID_MAX];
    uint32_t req;
    /* A removes Carol: A's key rotates; Carol's phone cannot read A's next text, the others can */
    const char *carol[] = {JID_C};
    CHECK_INT(wa_client_group_participants(a->client, r->group, WA_GROUP_REMOVE, carol, 1, &req),
              WA_OK);
    const wa_group_result *res = answered(r, a, req, WA_GROUP_OP_PARTICIPANTS);
    CHECK(res && res->code == 0 && res->nparticipants == 1 && res->participants[0].error == 0);
    const wa_group_change_event *ch = NULL;
    CHECK(update_of(b, WA_GROUP_EV_REMOVE, &ch) && ch &&
          strcmp(ch->participants[0].jid, LID_C "@lid") == 0);
    CHECK_INT(sim_rig_send_text(r, a, r->group, "without Carol", id), WA_OK);
    const sim_rig_msg *g = sim_rig_got(b, id);
    CHECK(g && g->nparts == 2 && g->skdm_only[0]); /* a new key, distributed again */
    CHECK(sim_rig_phone_got(r, PHONE_C, id) == NULL);
    CHECK_INT(phone_decrypt_last(r, PHONE_C, LID_A "_1", 1), WA_ERR_AUTH);
    const sim_phone_msg *pm = sim_rig_phone_got(r, PHONE_D, id);
    CHECK(pm && !pm->failed && strcmp(pm->text, "without Carol") == 0);
    CHECK(sim_rig_got(a2, id) != NULL);

    /* B (an admin) removes Dave: A hears it and rotates too */
    const char *dave[] = {JID_D};
    CHECK_INT(wa_client_group_participants(b->client, r->group, WA_GROUP_REMOVE, dave, 1, &req),
              WA_OK);
    res = answered(r, b, req, WA_GROUP_OP_PARTICIPANTS);
    CHECK(res && res->code == 0);
    CHECK(update_of(a, WA_GROUP_EV_REMOVE, &ch) && ch &&
          strcmp(ch->participants[0].jid, LID_D "@lid") == 0);
    CHECK_INT(sim_rig_send_text(r, a, r->group, "without Dave", id), WA_OK);
    g = sim_rig_got(b, id);
    CHECK(g && g->nparts == 2 && g->m.text && strcmp(g->m.text, "without Dave") == 0);
    CHECK(sim_rig_phone_got(r, PHONE_D, id) == NULL);
    CHECK_INT(phone_decrypt_last(r, PHONE_D, LID_A "_1", 1), WA_ERR_AUTH);
    /* B's own next text is on a new key of B's too */
    CHECK_INT(sim_rig_send_text(r, b, r->group, "Bob without Dave", id), WA_OK);
    CHECK(sim_rig_got(a, id) != NULL);
    CHECK_INT(phone_decrypt_last(r, PHONE_D, LID_B "_1", 1), WA_ERR_AUTH);

    /* B leaves: forgotten at B (its sends fail), a leave at A, and A rotates again */
    CHECK_INT(wa_client_group_leave(b->client, r->group, &req), WA_OK);
    res = answered(r, b, req, WA_GROUP_OP_LEAVE);
    CHECK(res && res->code == 0);
    CHECK(update_of(a, WA_GROUP_EV_LEAVE, &ch) && ch &&
          strcmp(ch->participants[0].jid, LID_B "@lid") == 0);
    CHECK_INT(sim_rig_send_text(r, b, r->group, "not a member", id), WA_OK);
    CHECK_INT(sim_rig_count(b, WA_EV_SEND_FAILED, id), 1);
    CHECK_INT(sim_rig_send_text(r, a, r->group, "after Bob left", id), WA_OK);
    CHECK(sim_rig_got(b, id) == NULL && sim_rig_got(a2, id) != NULL);
    CHECK_INT(engine_decrypt_last(r, b, LID_A "_1", 1), WA_ERR_AUTH);

    /* A adds Bob back: B's next send asks for the group again and A reads it */
    const char *bob[] = {JID_B};
    CHECK_INT(wa_client_group_participants(a->client, r->group, WA_GROUP_ADD, bob, 1, &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_PARTICIPANTS);
    CHECK(res && res->code == 0 && res->participants[0].error == 0);
    CHECK(update_of(b, WA_GROUP_EV_ADD, NULL) != NULL);
    CHECK_INT(sim_rig_send_text(r, b, r->group, "Bob is back", id), WA_OK);
    g = sim_rig_got(a, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "Bob is back") == 0);
    CHECK_INT(sim_rig_send_text(r, a, r->group, "welcome back", id), WA_OK);
    CHECK(sim_rig_got(b, id) != NULL);

    /* Bob, made admin again, removes Alice: A and A2 forget the group, their sends fail */
    CHECK_INT(wa_client_group_participants(a->client, r->group, WA_GROUP_PROMOTE, bob, 1, &req),
              WA_OK);
    answered(r, a, req, WA_GROUP_OP_PARTICIPANTS);
    const char *alice[] = {JID_A};
    CHECK_INT(wa_client_group_participants(b->client, r->group, WA_GROUP_REMOVE, alice, 1, &req),
              WA_OK);
    res = answered(r, b, req, WA_GROUP_OP_PARTICIPANTS);
    CHECK(res && res->code == 0 && res->participants[0].error == 0);
    CHECK(update_of(a, WA_GROUP_EV_REMOVE, &ch) && ch &&
          strcmp(ch->participants[0].jid, LID_A "@lid") == 0);
    CHECK(update_of(a2, WA_GROUP_EV_REMOVE, NULL) != NULL);
    CHECK_INT(sim_rig_send_text(r, a, r->group, "removed", id), WA_OK);
    CHECK_INT(sim_rig_count(a, WA_EV_SEND_FAILED, id), 1);
    CHECK_INT(sim_rig_send_text(r, a2, r->group, "removed too", id), WA_OK);
    CHECK_INT(sim_rig_count(a2, WA_EV_SEND_FAILED, id), 1);
    CHECK_INT(wa_client_group_info(a->client, r->group, &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_INFO);
    CHECK(res && res->code == 403);
}

/* Erin's phone (no history with Alice) first writes to Alice's phone number: A and A2 start a
 * session from the pkmsg (from = PN, sender_lid = LID). Then Erin makes a LID group with Alice and
 * writes there: her phone sends the SKDM on that same session (a msg, addressed by LID now), as a
 * real phone does. A and A2 must read it at once, without a retry. */
static void test_dm_then_group(sim_rig *r)
{
    sim_rig_peer *a = r->peers[0], *a2 = r->peers[1];
    int errors[2] = {sim_rig_count(a, WA_EV_ERROR, NULL), sim_rig_count(a2, WA_EV_ERROR, NULL)};
    char id[WA_MESSAGE_ID_MAX], err[128], gjid[WA_JID_STR_MAX];
    CHECK_INT(
        sim_admin_send_text(&r->s, PHONE_E, JID_A, "hi Alice", id, sizeof(id), err, sizeof(err)),
        0);
    sim_rig_advance(r, 100);
    const sim_rig_msg *g = sim_rig_got(a, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "hi Alice") == 0);
    CHECK(sim_rig_got(a2, id) != NULL);
    const char *members[] = {JID_A};
    CHECK_INT(sim_admin_group_create(&r->s, PHONE_E, "Erin's", members, 1, gjid, sizeof(gjid), err,
                                     sizeof(err)),
              0);
    sim_rig_advance(r, 100);
    CHECK_INT(sim_admin_group_send(&r->s, PHONE_E, gjid, "hello Erin's group", id, sizeof(id), err,
                                   sizeof(err)),
              0);
    sim_rig_advance(r, 100);
    for (int i = 0; i < 2; i++) {
        sim_rig_peer *p = i ? a2 : a;
        g = sim_rig_got(p, id);
        CHECK(g && strcmp(g->chat, gjid) == 0 && strcmp(g->sender, LID_E "@lid") == 0 &&
              g->m.text && strcmp(g->m.text, "hello Erin's group") == 0);
        CHECK(g && g->nparts == 2 && !g->skmsg[0] && g->skdm_only[0] && g->skmsg[1]);
        CHECK_INT(sim_rig_count(p, WA_EV_ERROR, NULL) - errors[i], 0); /* no retry needed */
    }
    /* Erin's phone writes to the phone number again: the same (now LID) session reads it */
    CHECK_INT(
        sim_admin_send_text(&r->s, PHONE_E, JID_A, "still me", id, sizeof(id), err, sizeof(err)),
        0);
    sim_rig_advance(r, 100);
    g = sim_rig_got(a, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "still me") == 0);
    /* and A answers on the phone number: Erin's phone reads it */
    CHECK_INT(sim_rig_send_text(r, a, PHONE_E "@s.whatsapp.net", "hi Erin", id), WA_OK);
    const sim_phone_msg *pm = sim_rig_phone_got(r, PHONE_E, id);
    CHECK(pm && !pm->failed && strcmp(pm->text, "hi Erin") == 0);
    CHECK_INT(
        sim_admin_group_send(&r->s, PHONE_E, gjid, "second", id, sizeof(id), err, sizeof(err)), 0);
    sim_rig_advance(r, 100);
    g = sim_rig_got(a, id);
    CHECK(g && g->nparts == 1 && g->skmsg[0] && g->m.text && strcmp(g->m.text, "second") == 0);

    /* A loses Erin's sender key: it asks again, and Erin's phone sends the content pairwise with
     * its key (the retry's answer); what follows is skmsg only again */
    CHECK_INT(a->store.sender_key_delete(a->store.ctx, gjid, LID_E "_1:0"), WA_STORE_OK);
    CHECK_INT(sim_admin_group_send(&r->s, PHONE_E, gjid, "after the loss", id, sizeof(id), err,
                                   sizeof(err)),
              0);
    sim_rig_advance(r, 100);
    g = sim_rig_got(a, id);
    CHECK(g && g->nparts == 1 && !g->skmsg[0] && !g->skdm_only[0] && g->m.text &&
          strcmp(g->m.text, "after the loss") == 0);
    CHECK_INT(sim_rig_count(a, WA_EV_ERROR, NULL) - errors[0], 1); /* "asked again" */
    CHECK_INT(
        sim_admin_group_send(&r->s, PHONE_E, gjid, "and on", id, sizeof(id), err, sizeof(err)), 0);
    sim_rig_advance(r, 100);
    g = sim_rig_got(a, id);
    CHECK(g && g->nparts == 1 && g->skmsg[0] && g->m.text && strcmp(g->m.text, "and on") == 0);
    /* A loses the session and the key: its retry carries keys, the phone starts a new session */
    CHECK_INT(a->store.sender_key_delete(a->store.ctx, gjid, LID_E "_1:0"), WA_STORE_OK);
    CHECK_INT(a->store.session_delete(a->store.ctx, LID_E "_1:0"), WA_STORE_OK);
    wa_store_mem_changed_behind(&a->store);
    CHECK_INT(
        sim_admin_group_send(&r->s, PHONE_E, gjid, "new session", id, sizeof(id), err, sizeof(err)),
        0);
    sim_rig_advance(r, 100);
    g = sim_rig_got(a, id);
    CHECK(g && g->nparts == 1 && !g->skmsg[0] && g->m.text &&
          strcmp(g->m.text, "new session") == 0);
    CHECK(sim_rig_got(a2, id) != NULL);
    CHECK_INT(sim_rig_count(a, WA_EV_ERROR, NULL) - errors[0], 2);
    CHECK_INT(sim_rig_count(a2, WA_EV_ERROR, NULL) - errors[1], 0);
    /* the same in a chat: A lost the session, Erin's phone answers the retry with a new one */
    CHECK_INT(a->store.session_delete(a->store.ctx, LID_E "_1:0"), WA_STORE_OK);
    wa_store_mem_changed_behind(&a->store);
    CHECK_INT(sim_admin_send_text(&r->s, PHONE_E, JID_A, "lost and found", id, sizeof(id), err,
                                  sizeof(err)),
              0);
    sim_rig_advance(r, 100);
    g = sim_rig_got(a, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "lost and found") == 0);
    CHECK_INT(sim_rig_count(a, WA_EV_ERROR, NULL) - errors[0], 3);
    CHECK_INT(sim_rig_got_count(a, id), 1);
}

/* A call waiting when the connection closes is answered with WA_ERR_TIMEOUT; calls need a
 * connection. */
static void test_offline(sim_rig *r)
{
    sim_rig_peer *b = r->peers[2];
    uint32_t req;
    CHECK_INT(wa_client_group_info(b->client, r->group, &req), WA_OK);
    wa_client_stop(b->client, r->now); /* before the answer could come */
    sim_rig_advance(r, 100);
    const wa_group_result *res = result_of(b, req, WA_GROUP_OP_INFO);
    CHECK(res && res->code == WA_ERR_TIMEOUT);
    CHECK_INT(wa_client_group_info(b->client, r->group, &req), WA_ERR_STATE);
    CHECK_INT(wa_client_group_participating(b->client, &req), WA_ERR_STATE);
    const char *m[] = {JID_A};
    CHECK_INT(wa_client_group_create(b->client, "x", m, 1, &req), WA_ERR_STATE);
}

int main(void)
{
    wa_crypto *crypto = wa_crypto_new(NULL, 0);
    sim_rig *r = calloc(1, sizeof(*r));
    CHECK_INT(sim_rig_init(r, "groups", crypto), 0);
    CHECK(sim_account_add(&r->s, PHONE_A, LID_A, "Alice Phone") != NULL);
    CHECK(sim_account_add(&r->s, PHONE_B, LID_B, "Bob Phone") != NULL);
    CHECK(sim_account_add(&r->s, PHONE_C, LID_C, "Carol Phone") != NULL);
    CHECK(sim_account_add(&r->s, PHONE_D, LID_D, "Dave Phone") != NULL);
    CHECK(sim_account_add(&r->s, PHONE_E, LID_E, "Erin Phone") != NULL);
    sim_rig_pair(r, PHONE_A, "Alice");
    sim_rig_pair(r, PHONE_A, "Alice");
    sim_rig_pair(r, PHONE_B, "Bob");
    CHECK_STR(wa_client_jid(r->peers[1]->client), PHONE_A ":2@s.whatsapp.net");
    test_create(r);
    if (r->group[0]) {
        test_messages(r);
        test_calls(r);
        test_new_device(r);
        test_retry(r);
        test_duplicate(r);
        for (int i = 0; i < r->npeers; i++) /* B's one "asked again" in test_retry */
            CHECK_INT(sim_rig_count(r->peers[i], WA_EV_ERROR, NULL), i == 2 ? 1 : 0);
        test_rotation(r);
        sim_rig_advance(r, 1000);
        /* everything was acked: messages, receipts, notifications */
        for (int i = 0; i < r->s.naccounts; i++)
            for (int d = 0; d < r->s.accounts[i].ndevices; d++)
                CHECK_INT(r->s.accounts[i].devices[d].queued, 0);
        test_dm_then_group(r);
        test_offline(r);
    }
    sim_rig_free(r);
    free(r);
    wa_crypto_free(crypto);
    sim_rig_add_checks(&check_passed, &check_failed);
    return CHECK_DONE();
}
