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
 * fail); every queue drains.
 */
#include "check.h"
#include "sim.h"
#include "sim_group.h"
#include "wa/client.h"
#include "wa/senderkey.h"
#include "wa/store_mem.h"

#include <cJSON.h>
#include <stdlib.h>

#define PHONE_A "15550000051"
#define PHONE_B "15550000052"
#define PHONE_C "15550000053"
#define PHONE_D "15550000054"
#define LID_A   "100000000000051"
#define LID_B   "100000000000052"
#define LID_C   "100000000000053"
#define LID_D   "100000000000054"
#define JID_A   PHONE_A "@s.whatsapp.net"
#define JID_B   PHONE_B "@s.whatsapp.net"
#define JID_C   PHONE_C "@s.whatsapp.net"
#define JID_D   PHONE_D "@s.whatsapp.net"
#define MAX_EV  1024
#define MAX_GOT 64
#define MAX_RES 64

/* A received message, parsed, with what the parts said. */
typedef struct got {
    char id[128];
    char chat[WA_JID_STR_MAX];
    char sender[WA_JID_STR_MAX];
    size_t nparts;
    bool skmsg[WA_RECV_MAX_PARTS];
    bool skdm_only[WA_RECV_MAX_PARTS];
    uint8_t hash[WA_RECV_MAX_PARTS][32];
    wa_msg m;
} got;

typedef struct peer {
    const char *phone; /* the account it pairs with */
    wa_store store;
    wa_client *client;
    sim_conn *conn; /* its connection on the server side, when open */
    bool scanned;
    wa_event events[MAX_EV];
    int nevents;
    got msgs[MAX_GOT];
    int nmsgs;
    wa_group_result results[MAX_RES];
    int nresults;
    wa_group_update updates[MAX_RES];
    int nupdates;
} peer;

typedef struct rig {
    sim s;
    peer peers[4];
    int npeers;
    int64_t now;
    uint64_t wall;
    wa_crypto *crypto;
    char group[WA_JID_STR_MAX];
} rig;

static void close_conn(rig *r, peer *p)
{
    if (p->conn) sim_conn_free(&r->s, p->conn);
    p->conn = NULL;
}

static void take_messages(peer *p)
{
    wa_received rcv;
    while (wa_client_next_message(p->client, &rcv)) {
        if (p->nmsgs < MAX_GOT) {
            got *g = &p->msgs[p->nmsgs++];
            memset(g, 0, sizeof(*g));
            snprintf(g->id, sizeof(g->id), "%s", rcv.id);
            snprintf(g->chat, sizeof(g->chat), "%s", rcv.chat);
            snprintf(g->sender, sizeof(g->sender), "%s", rcv.sender);
            g->nparts = rcv.nparts;
            for (size_t i = 0; i < rcv.nparts; i++) {
                g->skmsg[i] = rcv.parts[i].skmsg;
                g->skdm_only[i] = rcv.parts[i].skdm_only;
                memcpy(g->hash[i], rcv.parts[i].hash, 32);
            }
            CHECK_INT(wa_received_parse(&rcv, &g->m), WA_OK);
        }
        wa_received_free(&rcv);
    }
}

static void take_group(peer *p)
{
    wa_group_result res;
    while (wa_client_next_group_result(p->client, &res)) {
        if (p->nresults < MAX_RES)
            p->results[p->nresults++] = res;
        else
            wa_group_result_free(&res);
    }
    wa_group_update up;
    while (wa_client_next_group_update(p->client, &up)) {
        if (p->nupdates < MAX_RES)
            p->updates[p->nupdates++] = up;
        else
            wa_group_update_free(&up);
    }
}

/* Moves bytes and events between the engines and the server until nothing moves. */
static void pump(rig *r)
{
    for (int round = 0; round < 10000; round++) {
        bool moved = false;
        for (int i = 0; i < r->npeers; i++) {
            peer *p = &r->peers[i];
            if (!p->client) continue;
            wa_io io = wa_client_io(p->client);
            if (io == WA_IO_OPEN) {
                close_conn(r, p);
                p->conn = sim_conn_new(&r->s, NULL);
                wa_client_on_open(p->client, r->now, r->wall);
                moved = true;
            } else if (io == WA_IO_CLOSE) {
                close_conn(r, p);
                moved = true;
            }
            wb_buf *out = wa_client_output(p->client);
            if (out->len && p->conn) {
                if (sim_conn_receive(&r->s, p->conn, out->data, out->len) < 0) {
                    close_conn(r, p);
                    wa_client_on_closed(p->client, r->now);
                }
                moved = true;
            }
            out->len = 0;
            if (p->conn && p->conn->hello_pending) {
                sim_conn_timer(&r->s, p->conn);
                moved = true;
            }
            if (p->conn && p->conn->out.len) {
                wb_buf bytes = p->conn->out;
                wb_buf_init(&p->conn->out);
                wa_client_on_data(p->client, bytes.data, bytes.len, r->now, r->wall);
                wb_buf_free(&bytes);
                moved = true;
            } else if (p->conn && p->conn->state == SIM_CONN_CLOSING) {
                close_conn(r, p);
                wa_client_on_closed(p->client, r->now);
                moved = true;
            }
            wa_event ev;
            while (wa_client_next_event(p->client, &ev)) {
                if (p->nevents < MAX_EV) p->events[p->nevents++] = ev;
                if (ev.type == WA_EV_QR && !p->scanned) {
                    char err[160];
                    CHECK_INT(sim_admin_scan(&r->s, p->phone, ev.text, err, sizeof(err)), 0);
                    p->scanned = true;
                }
                if (ev.type == WA_EV_MESSAGE) take_messages(p);
                if (ev.type == WA_EV_GROUP_RESULT || ev.type == WA_EV_GROUP) take_group(p);
                moved = true;
            }
        }
        if (!moved) return;
    }
}

/* Runs the virtual clock forward by ms, ticking every engine at its deadline. */
static void advance(rig *r, int64_t ms)
{
    int64_t end = r->now + ms;
    pump(r);
    for (int i = 0; i < 100000; i++) {
        int64_t d = INT64_MAX;
        for (int k = 0; k < r->npeers; k++)
            if (r->peers[k].client && wa_client_deadline(r->peers[k].client) < d)
                d = wa_client_deadline(r->peers[k].client);
        if (d > end) break;
        if (d > r->now) r->now = d;
        for (int k = 0; k < r->npeers; k++)
            if (r->peers[k].client) wa_client_tick(r->peers[k].client, r->now, r->wall);
        pump(r);
    }
    r->now = end;
}

static peer *add_peer(rig *r, const char *phone)
{
    peer *p = &r->peers[r->npeers++];
    memset(p, 0, sizeof(*p));
    p->phone = phone;
    CHECK_INT(wa_store_mem_new(&p->store), WA_STORE_OK);
    wa_client_config cfg = {.store = &p->store,
                            .crypto = r->crypto,
                            .trust_root = r->s.root.pub,
                            .push_name = strcmp(phone, PHONE_A) == 0 ? "Alice" : "Bob",
                            .os_name = "wabridge-test"};
    p->client = wa_client_new(&cfg, NULL);
    CHECK(p->client != NULL);
    CHECK_INT(wa_client_start(p->client, r->now, r->wall), WA_OK);
    advance(r, 2000);
    CHECK_INT(wa_client_get_state(p->client), WA_CLIENT_CONNECTED);
    return p;
}

static int count(const peer *p, wa_event_type t, const char *text_prefix)
{
    int n = 0;
    for (int i = 0; i < p->nevents; i++)
        if (p->events[i].type == t &&
            (!text_prefix || strncmp(p->events[i].text, text_prefix, strlen(text_prefix)) == 0))
            n++;
    return n;
}

static const got *got_id(const peer *p, const char *id)
{
    const got *found = NULL;
    for (int i = 0; i < p->nmsgs; i++)
        if (strcmp(p->msgs[i].id, id) == 0) found = &p->msgs[i];
    return found;
}

static int got_count(const peer *p, const char *id)
{
    int n = 0;
    for (int i = 0; i < p->nmsgs; i++)
        n += strcmp(p->msgs[i].id, id) == 0;
    return n;
}

static const wa_group_result *result_of(const peer *p, uint32_t req, wa_group_op op)
{
    for (int i = p->nresults - 1; i >= 0; i--)
        if (p->results[i].req_id == req && p->results[i].op == op) return &p->results[i];
    return NULL;
}

/* The latest update of p with a change of type t; its change in *ch. */
static const wa_group_update *update_of(const peer *p, wa_group_event_type t,
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

static const sim_phone_msg *phone_got(rig *r, const char *phone, const char *id)
{
    size_t n = 0;
    const sim_phone_msg *m = sim_admin_phone_messages(&r->s, phone, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].id, id) == 0) return &m[i];
    return NULL;
}

static int send_text(rig *r, peer *p, const char *to, const char *text, char *id)
{
    int rc = wa_client_send_text(p->client, to, text, id, r->now);
    advance(r, 100);
    return rc;
}

/* Waits for p's group call req to be answered (advance) and returns its result. */
static const wa_group_result *answered(rig *r, const peer *p, uint32_t req, wa_group_op op)
{
    advance(r, 100);
    const wa_group_result *res = result_of(p, req, op);
    CHECK(res != NULL);
    return res;
}

/* The last skmsg sent to the group, as wa-sim kept it; its bytes into out (replaced). */
static bool last_skmsg(rig *r, wb_buf *out, char *sender, size_t cap)
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
static int phone_decrypt_last(rig *r, const char *phone, const char *name, uint32_t device)
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
static int engine_decrypt_last(rig *r, peer *p, const char *name, uint32_t device)
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

/* The queued stanza `id` for device `dev` of account `phone`, decoded into a (NULL if none). */
static wa_node *queued(rig *r, const char *phone, uint16_t dev, const char *id, wb_arena *a)
{
    sim_account *acct = sim_account_find(&r->s, phone);
    for (int i = 0; acct && i < acct->ndevices; i++) {
        if (acct->devices[i].id != dev) continue;
        for (sim_queued *q = acct->devices[i].queue_head; q; q = q->next) {
            wa_node *n;
            if (!q->is_receipt && strcmp(q->id, id) == 0 &&
                wa_binary_decode(q->node, q->node_len, a, &n, NULL) == WA_OK)
                return n;
        }
    }
    return NULL;
}

static const wa_group_participant *participant(const wa_group_info *info, const char *jid)
{
    for (size_t i = 0; info && i < info->nparticipants; i++)
        if (strcmp(info->participants[i].jid, jid) == 0) return &info->participants[i];
    return NULL;
}

static void test_create(rig *r)
{
    peer *a = &r->peers[0], *a2 = &r->peers[1], *b = &r->peers[2];
    /* after login every engine asked for its groups (request id 0): none yet */
    for (int i = 0; i < 3; i++) {
        const wa_group_result *res = result_of(&r->peers[i], 0, WA_GROUP_OP_PARTICIPATING);
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
    CHECK_INT(count(a, WA_EV_GROUP_RESULT, want), 1);
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
    CHECK(count(b, WA_EV_GROUP, want) >= 1);
}

static void test_messages(rig *r)
{
    peer *a = &r->peers[0], *a2 = &r->peers[1], *b = &r->peers[2];
    char id1[WA_MESSAGE_ID_MAX], id2[WA_MESSAGE_ID_MAX], id3[WA_MESSAGE_ID_MAX];
    uint64_t q0 = r->s.usync_queries;
    CHECK_INT(send_text(r, a, r->group, "hello group", id1), WA_OK);
    CHECK_INT(count(a, WA_EV_SENT, id1), 1);
    CHECK_INT(r->s.usync_queries - q0, 1); /* every member in one query */
    const got *g = got_id(b, id1);
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
    g = got_id(a2, id1);
    CHECK(g && g->m.text && strcmp(g->m.text, "hello group") == 0 &&
          strcmp(g->chat, r->group) == 0);
    const sim_phone_msg *pm = phone_got(r, PHONE_C, id1);
    CHECK(pm && !pm->failed && strcmp(pm->text, "hello group") == 0 &&
          strcmp(pm->chat, r->group) == 0);
    CHECK(phone_got(r, PHONE_B, id1) != NULL);
    pm = phone_got(r, PHONE_A, id1);
    CHECK(pm && pm->own && !pm->failed);

    /* the second text: skmsg only, and no device list asked again */
    CHECK_INT(send_text(r, a, r->group, "second", id2), WA_OK);
    g = got_id(b, id2);
    CHECK(g && g->nparts == 1 && g->skmsg[0] && g->m.text && strcmp(g->m.text, "second") == 0);
    pm = phone_got(r, PHONE_C, id2);
    CHECK(pm && !pm->failed && strcmp(pm->text, "second") == 0);
    CHECK_INT(r->s.usync_queries - q0, 1);

    /* B answers; Carol's phone too */
    CHECK_INT(send_text(r, b, r->group, "Bob here", id3), WA_OK);
    g = got_id(a, id3);
    CHECK(g && strcmp(g->sender, LID_B ":1@lid") == 0 && g->m.text &&
          strcmp(g->m.text, "Bob here") == 0);
    CHECK(got_id(a2, id3) != NULL);
    pm = phone_got(r, PHONE_C, id3);
    CHECK(pm && !pm->failed && strcmp(pm->text, "Bob here") == 0);
    char pid[64], err[160];
    CHECK_INT(sim_admin_group_send(&r->s, PHONE_C, r->group, "Carol's phone", pid, sizeof(pid), err,
                                   sizeof(err)),
              0);
    advance(r, 100);
    g = got_id(a, pid);
    CHECK(g && strcmp(g->sender, LID_C "@lid") == 0 && g->m.text &&
          strcmp(g->m.text, "Carol's phone") == 0);
    CHECK(got_id(a2, pid) && got_id(b, pid));

    /* 1:1 sends use the cache too: one usync for the first, none for the second */
    uint64_t q1 = r->s.usync_queries;
    CHECK_INT(send_text(r, a, JID_B, "direct 1", id1), WA_OK);
    CHECK_INT(send_text(r, a, JID_B, "direct 2", id2), WA_OK);
    CHECK_INT(r->s.usync_queries - q1, 1);
    CHECK(got_id(b, id1) && got_id(b, id2) && got_id(a2, id2));
}

static void test_calls(rig *r)
{
    peer *a = &r->peers[0], *b = &r->peers[2];
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
    advance(r, 100);
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
static void test_new_device(rig *r)
{
    peer *a = &r->peers[0];
    peer *b2 = add_peer(r, PHONE_B);
    CHECK_STR(wa_client_jid(b2->client), PHONE_B ":2@s.whatsapp.net");
    uint64_t q0 = r->s.usync_queries;
    char id[WA_MESSAGE_ID_MAX];
    CHECK_INT(send_text(r, a, r->group, "hello B2", id), WA_OK);
    CHECK_INT(r->s.usync_queries - q0, 1); /* Bob's devices asked again */
    const got *g = got_id(b2, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "hello B2") == 0 && g->nparts == 2 &&
          g->skdm_only[0]);
    g = got_id(&r->peers[2], id);
    CHECK(g && g->nparts == 1); /* B had the key already */
}

/* B lost A's sender key: it asks again and gets the content pairwise, with the key. */
static void test_retry(rig *r)
{
    peer *a = &r->peers[0], *b = &r->peers[2];
    char id1[WA_MESSAGE_ID_MAX], id2[WA_MESSAGE_ID_MAX], id3[WA_MESSAGE_ID_MAX];
    CHECK_INT(send_text(r, a, r->group, "before the loss", id1), WA_OK);
    CHECK(got_id(b, id1) != NULL);
    CHECK_INT(b->store.sender_key_delete(b->store.ctx, r->group, LID_A "_1:1"), WA_STORE_OK);
    int errors = count(b, WA_EV_ERROR, NULL);
    uint64_t q0 = r->s.usync_queries;
    CHECK_INT(send_text(r, a, r->group, "after the loss", id2), WA_OK);
    const got *g = got_id(b, id2);
    CHECK(g && g->m.text && strcmp(g->m.text, "after the loss") == 0);
    CHECK(g && g->nparts == 1 && !g->skmsg[0] && !g->skdm_only[0]); /* pairwise, with the key */
    CHECK_INT(count(b, WA_EV_ERROR, NULL) - errors, 1);             /* "asked again" */
    char want[320];
    snprintf(want, sizeof(want), "%s retry %s", id2, r->group);
    CHECK_INT(count(a, WA_EV_RECEIPT, want), 1);
    CHECK_INT(send_text(r, a, r->group, "and on", id3), WA_OK);
    g = got_id(b, id3);
    CHECK(g && g->nparts == 1 && g->skmsg[0] && g->m.text && strcmp(g->m.text, "and on") == 0);
    CHECK_INT(r->s.usync_queries - q0, 1); /* the retry dropped Bob's device list */
}

/* A stanza delivered again after the bridge deleted its buffer rows: Signal says duplicate, the
 * client receipts it, raises no message and asks for no retry. */
static void test_duplicate(rig *r)
{
    peer *a = &r->peers[0], *b = &r->peers[2];
    wa_client_stop(b->client, r->now);
    advance(r, 100);
    char id[WA_MESSAGE_ID_MAX];
    CHECK_INT(send_text(r, a, r->group, "only once", id), WA_OK);
    wb_arena ar;
    wb_arena_init(&ar, 0);
    wa_node *copy = queued(r, PHONE_B, 1, id, &ar);
    CHECK(copy != NULL);
    CHECK_INT(wa_client_start(b->client, r->now, r->wall), WA_OK);
    advance(r, 2000);
    const got *g = got_id(b, id);
    CHECK(g && g->nparts == 1 && g->m.text && strcmp(g->m.text, "only once") == 0);
    for (size_t i = 0; g && i < g->nparts; i++)
        CHECK_INT(b->store.event_buffer_delete(b->store.ctx, g->hash[i]), WA_STORE_OK);
    char want[320];
    snprintf(want, sizeof(want), "%s  %s", id, r->group);
    int receipts = count(a, WA_EV_RECEIPT, want), errors = count(b, WA_EV_ERROR, NULL);
    if (copy) CHECK_INT(sim_send_node(&r->s, b->conn, copy), 0);
    advance(r, 100);
    CHECK_INT(got_count(b, id), 1);
    CHECK_INT(count(b, WA_EV_ERROR, NULL), errors);
    CHECK_INT(count(a, WA_EV_RECEIPT, want) - receipts, 1); /* B's receipt for the copy */
    snprintf(want, sizeof(want), "%s retry", id);
    CHECK_INT(count(a, WA_EV_RECEIPT, want), 0);
    wb_arena_free(&ar);
}

static void test_rotation(rig *r)
{
    peer *a = &r->peers[0], *a2 = &r->peers[1], *b = &r->peers[2];
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
    CHECK_INT(send_text(r, a, r->group, "without Carol", id), WA_OK);
    const got *g = got_id(b, id);
    CHECK(g && g->nparts == 2 && g->skdm_only[0]); /* a new key, distributed again */
    CHECK(phone_got(r, PHONE_C, id) == NULL);
    CHECK_INT(phone_decrypt_last(r, PHONE_C, LID_A "_1", 1), WA_ERR_AUTH);
    const sim_phone_msg *pm = phone_got(r, PHONE_D, id);
    CHECK(pm && !pm->failed && strcmp(pm->text, "without Carol") == 0);
    CHECK(got_id(a2, id) != NULL);

    /* B (an admin) removes Dave: A hears it and rotates too */
    const char *dave[] = {JID_D};
    CHECK_INT(wa_client_group_participants(b->client, r->group, WA_GROUP_REMOVE, dave, 1, &req),
              WA_OK);
    res = answered(r, b, req, WA_GROUP_OP_PARTICIPANTS);
    CHECK(res && res->code == 0);
    CHECK(update_of(a, WA_GROUP_EV_REMOVE, &ch) && ch &&
          strcmp(ch->participants[0].jid, LID_D "@lid") == 0);
    CHECK_INT(send_text(r, a, r->group, "without Dave", id), WA_OK);
    g = got_id(b, id);
    CHECK(g && g->nparts == 2 && g->m.text && strcmp(g->m.text, "without Dave") == 0);
    CHECK(phone_got(r, PHONE_D, id) == NULL);
    CHECK_INT(phone_decrypt_last(r, PHONE_D, LID_A "_1", 1), WA_ERR_AUTH);
    /* B's own next text is on a new key of B's too */
    CHECK_INT(send_text(r, b, r->group, "Bob without Dave", id), WA_OK);
    CHECK(got_id(a, id) != NULL);
    CHECK_INT(phone_decrypt_last(r, PHONE_D, LID_B "_1", 1), WA_ERR_AUTH);

    /* B leaves: forgotten at B (its sends fail), a leave at A, and A rotates again */
    CHECK_INT(wa_client_group_leave(b->client, r->group, &req), WA_OK);
    res = answered(r, b, req, WA_GROUP_OP_LEAVE);
    CHECK(res && res->code == 0);
    CHECK(update_of(a, WA_GROUP_EV_LEAVE, &ch) && ch &&
          strcmp(ch->participants[0].jid, LID_B "@lid") == 0);
    CHECK_INT(send_text(r, b, r->group, "not a member", id), WA_OK);
    CHECK_INT(count(b, WA_EV_SEND_FAILED, id), 1);
    CHECK_INT(send_text(r, a, r->group, "after Bob left", id), WA_OK);
    CHECK(got_id(b, id) == NULL && got_id(a2, id) != NULL);
    CHECK_INT(engine_decrypt_last(r, b, LID_A "_1", 1), WA_ERR_AUTH);

    /* A adds Bob back: B's next send asks for the group again and A reads it */
    const char *bob[] = {JID_B};
    CHECK_INT(wa_client_group_participants(a->client, r->group, WA_GROUP_ADD, bob, 1, &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_PARTICIPANTS);
    CHECK(res && res->code == 0 && res->participants[0].error == 0);
    CHECK(update_of(b, WA_GROUP_EV_ADD, NULL) != NULL);
    CHECK_INT(send_text(r, b, r->group, "Bob is back", id), WA_OK);
    g = got_id(a, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "Bob is back") == 0);
    CHECK_INT(send_text(r, a, r->group, "welcome back", id), WA_OK);
    CHECK(got_id(b, id) != NULL);

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
    CHECK_INT(send_text(r, a, r->group, "removed", id), WA_OK);
    CHECK_INT(count(a, WA_EV_SEND_FAILED, id), 1);
    CHECK_INT(send_text(r, a2, r->group, "removed too", id), WA_OK);
    CHECK_INT(count(a2, WA_EV_SEND_FAILED, id), 1);
    CHECK_INT(wa_client_group_info(a->client, r->group, &req), WA_OK);
    res = answered(r, a, req, WA_GROUP_OP_INFO);
    CHECK(res && res->code == 403);
}

/* A call waiting when the connection closes is answered with WA_ERR_TIMEOUT; calls need a
 * connection. */
static void test_offline(rig *r)
{
    peer *b = &r->peers[2];
    uint32_t req;
    CHECK_INT(wa_client_group_info(b->client, r->group, &req), WA_OK);
    wa_client_stop(b->client, r->now); /* before the answer could come */
    advance(r, 100);
    const wa_group_result *res = result_of(b, req, WA_GROUP_OP_INFO);
    CHECK(res && res->code == WA_ERR_TIMEOUT);
    CHECK_INT(wa_client_group_info(b->client, r->group, &req), WA_ERR_STATE);
    CHECK_INT(wa_client_group_participating(b->client, &req), WA_ERR_STATE);
    const char *m[] = {JID_A};
    CHECK_INT(wa_client_group_create(b->client, "x", m, 1, &req), WA_ERR_STATE);
}

int main(void)
{
    rig *r = calloc(1, sizeof(*r));
    CHECK_INT(sim_init(&r->s, (const uint8_t *)"groups", 6, 1800000000), 0);
    CHECK(sim_account_add(&r->s, PHONE_A, LID_A, "Alice Phone") != NULL);
    CHECK(sim_account_add(&r->s, PHONE_B, LID_B, "Bob Phone") != NULL);
    CHECK(sim_account_add(&r->s, PHONE_C, LID_C, "Carol Phone") != NULL);
    CHECK(sim_account_add(&r->s, PHONE_D, LID_D, "Dave Phone") != NULL);
    r->crypto = wa_crypto_new(NULL, 0);
    r->now = 1000;
    r->wall = 1800000000;
    add_peer(r, PHONE_A);
    add_peer(r, PHONE_A);
    add_peer(r, PHONE_B);
    CHECK_STR(wa_client_jid(r->peers[1].client), PHONE_A ":2@s.whatsapp.net");
    test_create(r);
    if (r->group[0]) {
        test_messages(r);
        test_calls(r);
        test_new_device(r);
        test_retry(r);
        test_duplicate(r);
        for (int i = 0; i < r->npeers; i++) /* B's one "asked again" in test_retry */
            CHECK_INT(count(&r->peers[i], WA_EV_ERROR, NULL), i == 2 ? 1 : 0);
        test_rotation(r);
        advance(r, 1000);
        /* everything was acked: messages, receipts, notifications */
        for (int i = 0; i < r->s.naccounts; i++)
            for (int d = 0; d < r->s.accounts[i].ndevices; d++)
                CHECK_INT(r->s.accounts[i].devices[d].queued, 0);
        test_offline(r);
    }
    for (int i = 0; i < r->npeers; i++) {
        peer *p = &r->peers[i];
        close_conn(r, p);
        for (int k = 0; k < p->nmsgs; k++)
            wa_msg_free(&p->msgs[k].m);
        for (int k = 0; k < p->nresults; k++)
            wa_group_result_free(&p->results[k]);
        for (int k = 0; k < p->nupdates; k++)
            wa_group_update_free(&p->updates[k]);
        wa_client_free(p->client);
        p->store.destroy(p->store.ctx);
    }
    sim_free(&r->s);
    wa_crypto_free(r->crypto);
    free(r);
    return CHECK_DONE();
}
