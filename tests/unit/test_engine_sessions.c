/*
 * tests/unit/test_engine_sessions.c - Signal sessions and device lists in the engine (wa/client)
 * against the simulator's logic (tests/sim/wa-server), wired in memory on a virtual clock:
 *
 *  - identity changes: a contact's phone registers anew; its next message (a pkmsg with another
 *    identity key) is read and raises WA_EV_IDENTITY_CHANGE first; a message of ours on the old
 *    session is asked again with keys and sent again on the new one (the bundle path); an
 *    announced change (<notification type="encrypt"><identity/>) drops every session of the user;
 *  - phash: a device added to a contact without a devices notification; the ack's phash differs
 *    from ours, the device list is asked again, and the next message reaches the new device (in
 *    1:1 chats, and in a group: the members' device lists);
 *  - a retry receipt without keys from a device we have no session with: its keys are fetched
 *    and the message sent again;
 *  - group notifications acked only once taken (a peek neither takes nor acks): one left untaken
 *    comes again after a reconnect and is handed over once;
 *  - 1:1 messages to a LID: device lists and sessions by LID, both ways;
 *  - chat states in a group reach the other members with participant = the sender;
 *  - the plaintext kept for retries is stored when the server acks the message (or when the
 *    connection goes before the ack), not when it is sent.
 */
#include "check.h"
#include "sim_group.h"
#include "sim_rig.h"
#include "wa/store_mem.h"

#include <stdlib.h>

#define PHONE_A "15550000051"
#define PHONE_B "15550000052"
#define PHONE_C "15550000053"
#define LID_A   "100000000000051"
#define LID_B   "100000000000052"
#define LID_C   "100000000000053"
#define JID_A   PHONE_A "@s.whatsapp.net"
#define JID_B   PHONE_B "@s.whatsapp.net"
#define JID_C   PHONE_C "@s.whatsapp.net"

/* Index of the first event of type t with text (-1 when none). */
static int event_at(const sim_rig_peer *p, wa_event_type t, const char *text)
{
    for (int i = 0; i < p->nevents; i++)
        if (p->events[i].type == t && (!text || strcmp(p->events[i].text, text) == 0)) return i;
    return -1;
}

/* The message `id` the phone of `phone` could read (NULL if it read none). */
static const sim_phone_msg *phone_read(sim_rig *r, const char *phone, const char *id)
{
    size_t n = 0;
    const sim_phone_msg *m = sim_admin_phone_messages(&r->s, phone, &n);
    for (size_t i = 0; i < n; i++)
        if (!m[i].failed && strcmp(m[i].id, id) == 0) return &m[i];
    return NULL;
}

/* Whether the phone of `phone` failed to read message `id` at least once. */
static bool phone_failed(sim_rig *r, const char *phone, const char *id)
{
    size_t n = 0;
    const sim_phone_msg *m = sim_admin_phone_messages(&r->s, phone, &n);
    for (size_t i = 0; i < n; i++)
        if (m[i].failed && strcmp(m[i].id, id) == 0) return true;
    return false;
}

static void phone_says(sim_rig *r, const char *phone, const char *to, const char *text, char *id)
{
    char err[160];
    CHECK_INT(sim_admin_send_text(&r->s, phone, to, text, id, WA_MESSAGE_ID_MAX, err, sizeof(err)),
              0);
    sim_rig_advance(r, 100);
}

/* 1. identity changes */
static void test_identity_change(sim_rig *r, sim_rig_peer *a, sim_rig_peer *b)
{
    char id[WA_MESSAGE_ID_MAX], pid[WA_MESSAGE_ID_MAX];
    wa_identity_change ch;
    /* a conversation with B's phone (trust on first use: no change) */
    phone_says(r, PHONE_B, JID_A, "hello from the old phone", pid);
    CHECK(sim_rig_got(a, pid) != NULL);
    CHECK_INT(sim_rig_send_text(r, a, JID_B, "hello old phone", id), WA_OK);
    CHECK(phone_read(r, PHONE_B, id) != NULL);
    CHECK(sim_rig_got(b, id) != NULL);
    CHECK_INT(sim_rig_count(a, WA_EV_IDENTITY_CHANGE, NULL), 0);
    CHECK(!wa_client_next_identity_change(a->client, &ch));

    /* B reinstalls WhatsApp quietly: its first message carries the new key; A reads it, and the
     * change comes first */
    char err[160];
    CHECK_INT(sim_admin_reregister(&r->s, PHONE_B, false, err, sizeof(err)), 0);
    phone_says(r, PHONE_B, JID_A, "new phone", pid);
    CHECK(sim_rig_got(a, pid) != NULL);
    CHECK_INT(sim_rig_count(a, WA_EV_IDENTITY_CHANGE, NULL), 1);
    int at = event_at(a, WA_EV_IDENTITY_CHANGE, JID_B);
    CHECK(at >= 0 && at < event_at(a, WA_EV_MESSAGE, pid));
    CHECK_INT(at >= 0 ? a->events[at].code : -1, 1);
    CHECK(wa_client_next_identity_change(a->client, &ch));
    CHECK_STR(ch.jid, JID_B);
    CHECK(!ch.announced);
    CHECK_INT(ch.t, r->wall);
    CHECK(!wa_client_next_identity_change(a->client, &ch));
    /* A answers on the new session: the new phone reads it */
    CHECK_INT(sim_rig_send_text(r, a, JID_B, "welcome back", id), WA_OK);
    CHECK(phone_read(r, PHONE_B, id) != NULL);
    CHECK_INT(sim_rig_count(a, WA_EV_IDENTITY_CHANGE, NULL), 1);

    /* again, and this time A writes first, on the old session: the phone cannot read it and asks
     * again with its keys; A takes the new key (the change is raised) and sends it again */
    CHECK_INT(sim_admin_reregister(&r->s, PHONE_B, false, err, sizeof(err)), 0);
    CHECK_INT(sim_rig_send_text(r, a, JID_B, "are you there?", id), WA_OK);
    sim_rig_advance(r, 500);
    CHECK(phone_failed(r, PHONE_B, id));
    CHECK(phone_read(r, PHONE_B, id) != NULL);
    CHECK_INT(sim_rig_count(a, WA_EV_IDENTITY_CHANGE, JID_B), 2);
    CHECK(wa_client_next_identity_change(a->client, &ch));
    CHECK_STR(ch.jid, JID_B);
    CHECK(sim_rig_got(b, id) != NULL); /* B's companion read it the first time */
    CHECK_INT(sim_rig_got_count(b, id), 1);

    /* announced: the server tells A; every session with B goes (B's companion's too), the next
     * message starts from fresh keys without another change, and reaches everyone */
    CHECK_INT(sim_admin_reregister(&r->s, PHONE_B, true, err, sizeof(err)), 0);
    sim_rig_advance(r, 100);
    CHECK_INT(sim_rig_count(a, WA_EV_IDENTITY_CHANGE, NULL), 3);
    CHECK(wa_client_next_identity_change(a->client, &ch));
    CHECK_STR(ch.jid, JID_B);
    CHECK(ch.announced);
    CHECK_INT(a->events[a->nevents - 1].type == WA_EV_IDENTITY_CHANGE
                  ? a->events[a->nevents - 1].code
                  : -1,
              0);
    CHECK(!wa_client_next_identity_change(a->client, &ch));
    sim_account *acct_a = sim_account_find(&r->s, PHONE_A);
    CHECK_INT(acct_a->devices[0].queued, 0); /* the notification was acked */
    CHECK_INT(sim_rig_send_text(r, a, JID_B, "after the notice", id), WA_OK);
    CHECK(phone_read(r, PHONE_B, id) != NULL);
    CHECK(sim_rig_got(b, id) != NULL);
    CHECK_INT(sim_rig_count(a, WA_EV_IDENTITY_CHANGE, NULL), 3);
    CHECK_INT(sim_rig_count(a, WA_EV_ERROR, NULL), 0);
}

/* 2. phash: a device the server knows and we do not */
static void test_phash(sim_rig *r, sim_rig_peer *a)
{
    char id[WA_MESSAGE_ID_MAX], id3[WA_MESSAGE_ID_MAX], id4[WA_MESSAGE_ID_MAX];
    CHECK_INT(sim_rig_send_text(r, a, JID_C, "one", id), WA_OK);
    CHECK(phone_read(r, PHONE_C, id) != NULL);
    uint64_t q0 = r->s.usync_queries;
    CHECK_INT(sim_rig_send_text(r, a, JID_C, "two", id), WA_OK);
    CHECK(phone_read(r, PHONE_C, id) != NULL);
    CHECK_INT(r->s.usync_queries - q0, 0); /* the list is cached, and the phash agrees */
    /* C links a companion and nobody is told */
    r->s.quiet_devices = true;
    sim_rig_peer *c1 = sim_rig_pair(r, PHONE_C, "Peer");
    r->s.quiet_devices = false;
    CHECK_STR(wa_client_jid(c1->client), PHONE_C ":1@s.whatsapp.net");
    q0 = r->s.usync_queries;
    CHECK_INT(sim_rig_send_text(r, a, JID_C, "three", id3), WA_OK);
    CHECK(phone_read(r, PHONE_C, id3) != NULL);
    CHECK(sim_rig_got(c1, id3) == NULL); /* sent from the old list... */
    CHECK_INT(sim_rig_count(a, WA_EV_SENT, id3), 1);
    CHECK_INT(r->s.usync_queries - q0, 0);
    /* ...and the ack's phash said so: the next message asks again and reaches the new device */
    CHECK_INT(sim_rig_send_text(r, a, JID_C, "four", id4), WA_OK);
    CHECK_INT(r->s.usync_queries - q0, 1);
    CHECK(phone_read(r, PHONE_C, id4) != NULL);
    const sim_rig_msg *g = sim_rig_got(c1, id4);
    CHECK(g && g->m.text && strcmp(g->m.text, "four") == 0);
    CHECK_INT(sim_rig_send_text(r, a, JID_C, "five", id), WA_OK);
    CHECK(sim_rig_got(c1, id) != NULL);
    CHECK_INT(r->s.usync_queries - q0, 1); /* cached again: the hashes agree */
    CHECK_INT(sim_rig_count(a, WA_EV_ERROR, NULL), 0);
}

/* 3. a retry receipt without keys from a device we have no session with */
static void test_retry_without_keys(sim_rig *r, sim_rig_peer *a, sim_rig_peer *c1)
{
    char id[WA_MESSAGE_ID_MAX], err[160];
    /* C's companion is away; our message to it is damaged on the way, and we lose our session
     * with it (as after a restore): when it asks again, without keys (it has a session with us),
     * we fetch its keys and send the message again on a new session */
    wa_client_stop(c1->client, r->now);
    sim_rig_advance(r, 100);
    CHECK_INT(sim_admin_corrupt_next(&r->s, PHONE_C, 1, err, sizeof(err)), 0);
    CHECK_INT(sim_rig_send_text(r, a, JID_C, "through the static", id), WA_OK);
    CHECK(phone_read(r, PHONE_C, id) != NULL);
    CHECK_INT(a->store.session_delete(a->store.ctx, PHONE_C ":1"), WA_STORE_OK);
    wa_store_mem_changed_behind(&a->store);
    int errors = sim_rig_count(a, WA_EV_ERROR, NULL);
    CHECK_INT(wa_client_start(c1->client, r->now, r->wall), WA_OK);
    sim_rig_advance(r, 2000);
    CHECK_INT(wa_client_get_state(c1->client), WA_CLIENT_CONNECTED);
    const sim_rig_msg *g = sim_rig_got(c1, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "through the static") == 0);
    CHECK_INT(sim_rig_got_count(c1, id), 1);
    CHECK_INT(sim_rig_count(a, WA_EV_ERROR, NULL), errors);
    /* and the conversation goes on on the new session */
    CHECK_INT(sim_rig_send_text(r, a, JID_C, "clear now", id), WA_OK);
    CHECK(sim_rig_got(c1, id) != NULL);
    CHECK_INT(sim_rig_send_text(r, c1, JID_A, "loud and clear", id), WA_OK);
    CHECK(sim_rig_got(a, id) != NULL);
}

/* Queued group notifications (ids "gp...") waiting for device `dev` of `phone`. */
static int queued_notes(sim_rig *r, const char *phone, uint16_t dev)
{
    sim_account *acct = sim_account_find(&r->s, phone);
    int n = 0;
    for (int i = 0; acct && i < acct->ndevices; i++)
        for (sim_queued *q = acct->devices[i].id == dev ? acct->devices[i].queue_head : NULL; q;
             q = q->next)
            n += !q->is_receipt && strncmp(q->id, "gp", 2) == 0;
    return n;
}

static void kick(sim_rig *r, const char *phone, int dev)
{
    char err[160];
    CHECK_INT(sim_admin_stream_error(&r->s, phone, dev, "", err, sizeof(err)), 0);
    sim_rig_advance(r, 5000);
}

/* 4. group notifications are acked when the app takes them */
static void test_notification_ack(sim_rig *r, sim_rig_peer *a, char *group_out)
{
    char err[160];
    const char *members[] = {PHONE_A, PHONE_B};
    a->hold_groups = true;
    int groups_before = sim_rig_count(a, WA_EV_GROUP, NULL);
    CHECK_INT(sim_admin_group_create(&r->s, PHONE_C, "Night shift", members, 2, group_out,
                                     WA_JID_STR_MAX, err, sizeof(err)),
              0);
    sim_rig_advance(r, 100);
    CHECK_INT(sim_rig_count(a, WA_EV_GROUP, group_out), 1);
    CHECK_INT(queued_notes(r, PHONE_A, 1), 1); /* not taken: not acked */
    /* the connection drops: the server delivers it again, the engine hands it over once */
    kick(r, PHONE_A, 1);
    CHECK_INT(wa_client_get_state(a->client), WA_CLIENT_CONNECTED);
    CHECK_INT(sim_rig_count(a, WA_EV_GROUP, group_out), 1);
    CHECK_INT(queued_notes(r, PHONE_A, 1), 1);
    /* a peek (the bridge writes it down before taking it) neither takes nor acks it */
    const wa_group_update *peek = wa_client_peek_group_update(a->client);
    CHECK(peek != NULL && peek->event.group && strcmp(peek->event.group, group_out) == 0);
    CHECK(wa_client_peek_group_update(a->client) == peek);
    sim_rig_advance(r, 100);
    CHECK_INT(queued_notes(r, PHONE_A, 1), 1);
    sim_rig_take_groups(a);
    CHECK_INT(a->nupdates, 1);
    CHECK(wa_client_peek_group_update(a->client) == NULL);
    sim_rig_advance(r, 100);
    CHECK_INT(queued_notes(r, PHONE_A, 1), 0); /* acked once taken */
    kick(r, PHONE_A, 1);
    CHECK_INT(sim_rig_count(a, WA_EV_GROUP, group_out), 1);
    CHECK_INT(a->nupdates, 1);
    /* taken while offline: the ack cannot go; the redelivery at the next login is acked at once
     * and not handed over again */
    const char *promoted[] = {PHONE_A};
    CHECK_INT(sim_admin_group_participants(&r->s, PHONE_C, group_out, "promote", promoted, 1, NULL,
                                           err, sizeof(err)),
              0);
    sim_rig_advance(r, 100);
    CHECK_INT(sim_rig_count(a, WA_EV_GROUP, group_out), 2);
    wa_client_stop(a->client, r->now);
    sim_rig_advance(r, 100);
    sim_rig_take_groups(a);
    CHECK_INT(a->nupdates, 2);
    CHECK_INT(queued_notes(r, PHONE_A, 1), 1);
    CHECK_INT(wa_client_start(a->client, r->now, r->wall), WA_OK);
    sim_rig_advance(r, 2000);
    CHECK_INT(wa_client_get_state(a->client), WA_CLIENT_CONNECTED);
    CHECK_INT(queued_notes(r, PHONE_A, 1), 0);
    CHECK_INT(sim_rig_count(a, WA_EV_GROUP, group_out), 2);
    sim_rig_take_groups(a);
    CHECK_INT(a->nupdates, 2);
    a->hold_groups = false;
    CHECK_INT(sim_rig_count(a, WA_EV_GROUP, NULL) - groups_before, 2);
}

/* 5. 1:1 messages addressed by LID */
static void test_lid_chat(sim_rig *r, sim_rig_peer *a, sim_rig_peer *c1)
{
    char id[WA_MESSAGE_ID_MAX], err[160];
    sim_rig_peer *a2 = sim_rig_pair(r, PHONE_A, "Peer");
    int c1_errors =
        sim_rig_count(c1, WA_EV_ERROR, NULL); /* the damaged message of the retry test */
    uint64_t q0 = r->s.usync_queries;
    CHECK_INT(sim_rig_send_text(r, a, LID_C "@lid", "by lid", id), WA_OK);
    CHECK_INT(sim_rig_count(a, WA_EV_SENT, id), 1);
    CHECK_INT(r->s.usync_queries - q0, 1); /* C's and our LID devices */
    const sim_phone_msg *pm = phone_read(r, PHONE_C, id);
    CHECK(pm && strcmp(pm->text, "by lid") == 0);
    CHECK_STR(pm ? pm->sender : "", LID_A ":1@lid");
    const sim_rig_msg *g = sim_rig_got(c1, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "by lid") == 0);
    CHECK_STR(g ? g->sender : "", LID_A ":1@lid");
    g = sim_rig_got(a2, id); /* our other device: the copy names the LID chat */
    CHECK(g && g->m.text && strcmp(g->m.text, "by lid") == 0);
    CHECK_STR(g ? g->m.dest_jid : "", LID_C "@lid");
    /* the sessions are the LID addresses' */
    wb_buf rec;
    wb_buf_init(&rec);
    CHECK_INT(a->store.session_load(a->store.ctx, LID_C "_1:0", &rec), WA_STORE_OK);
    CHECK_INT(a->store.session_load(a->store.ctx, LID_C "_1:1", &rec), WA_STORE_OK);
    CHECK_INT(a->store.session_load(a->store.ctx, LID_A "_1:2", &rec), WA_STORE_OK);
    wb_buf_free(&rec);
    /* answers by LID, from the companion and from the phone */
    CHECK_INT(sim_rig_send_text(r, c1, LID_A "@lid", "lid back", id), WA_OK);
    g = sim_rig_got(a, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "lid back") == 0);
    CHECK_STR(g ? g->sender : "", LID_C ":1@lid");
    CHECK(sim_rig_got(a2, id) != NULL);
    CHECK_INT(sim_admin_send_text(&r->s, PHONE_C, LID_A "@lid", "phone by lid", id,
                                  WA_MESSAGE_ID_MAX, err, sizeof(err)),
              0);
    sim_rig_advance(r, 100);
    g = sim_rig_got(a, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "phone by lid") == 0);
    CHECK_STR(g ? g->sender : "", LID_C "@lid");
    /* what the messages taught: C's LID is C's number (and the next send names it) */
    char pn[WA_ADDRESS_MAX] = "";
    CHECK_INT(a->store.pn_for_lid(a->store.ctx, LID_C "@lid", pn), WA_STORE_OK);
    CHECK_STR(pn, JID_C);
    q0 = r->s.usync_queries;
    CHECK_INT(sim_rig_send_text(r, a, LID_C "@lid", "again by lid", id), WA_OK);
    CHECK_INT(r->s.usync_queries - q0, 0); /* cached, and the phash agrees */
    CHECK(phone_read(r, PHONE_C, id) != NULL);
    CHECK(sim_rig_got(c1, id) != NULL);
    /* a chat on a server messages do not go to is refused */
    CHECK_INT(wa_client_send_text(a->client, "123@broadcast", "x", id, r->now), WA_ERR_BAD_JID);
    CHECK_INT(sim_rig_count(a, WA_EV_ERROR, NULL), 0);
    CHECK_INT(sim_rig_count(c1, WA_EV_ERROR, NULL), c1_errors);
}

/* 6. chat states in a group */
static void test_group_chat_state(sim_rig *r, sim_rig_peer *a, sim_rig_peer *b, sim_rig_peer *c1,
                                  sim_rig_peer *a2, const char *group)
{
    char want[256];
    int before_a = sim_rig_count(a, WA_EV_CHAT_STATE, NULL),
        before_a2 = sim_rig_count(a2, WA_EV_CHAT_STATE, NULL);
    CHECK_INT(wa_client_send_chat_state(a->client, group, WA_CHAT_COMPOSING), WA_OK);
    sim_rig_advance(r, 100);
    snprintf(want, sizeof(want), "%s %s composing", group, LID_A "@lid");
    CHECK_INT(sim_rig_count(b, WA_EV_CHAT_STATE, want), 1);
    CHECK_INT(sim_rig_count(c1, WA_EV_CHAT_STATE, want), 1);
    CHECK_INT(sim_rig_count(a, WA_EV_CHAT_STATE, NULL), before_a); /* not to the sender's account */
    CHECK_INT(sim_rig_count(a2, WA_EV_CHAT_STATE, NULL), before_a2);
    CHECK_INT(wa_client_send_chat_state(c1->client, group, WA_CHAT_RECORDING), WA_OK);
    CHECK_INT(wa_client_send_chat_state(c1->client, group, WA_CHAT_PAUSED), WA_OK);
    sim_rig_advance(r, 100);
    snprintf(want, sizeof(want), "%s %s recording", group, LID_C "@lid");
    CHECK_INT(sim_rig_count(a, WA_EV_CHAT_STATE, want), 1);
    CHECK_INT(sim_rig_count(a2, WA_EV_CHAT_STATE, want), 1);
    snprintf(want, sizeof(want), "%s %s paused", group, LID_C "@lid");
    CHECK_INT(sim_rig_count(a, WA_EV_CHAT_STATE, want), 1);
    CHECK_INT(sim_rig_count(b, WA_EV_CHAT_STATE, want), 1);
    /* a group we are not in: nothing goes anywhere */
    int before_b = sim_rig_count(b, WA_EV_CHAT_STATE, NULL);
    CHECK_INT(wa_client_send_chat_state(a->client, "120363999999999999@g.us", WA_CHAT_COMPOSING),
              WA_OK);
    sim_rig_advance(r, 100);
    CHECK_INT(sim_rig_count(b, WA_EV_CHAT_STATE, NULL), before_b);
}

/* 2b. phash of a group message: a member's device nobody announced */
static void test_group_phash(sim_rig *r, sim_rig_peer *a, sim_rig_peer *b, const char *group)
{
    char id[WA_MESSAGE_ID_MAX];
    CHECK_INT(sim_rig_send_text(r, a, group, "to the shift", id), WA_OK);
    CHECK(sim_rig_got(b, id) != NULL);
    uint64_t q0 = r->s.usync_queries;
    CHECK_INT(sim_rig_send_text(r, a, group, "still the shift", id), WA_OK);
    CHECK(sim_rig_got(b, id) != NULL);
    CHECK_INT(r->s.usync_queries - q0, 0); /* members' devices cached, the phash agrees */
    r->s.quiet_devices = true;
    sim_rig_peer *b2 = sim_rig_pair(r, PHONE_B, "Peer");
    r->s.quiet_devices = false;
    /* the server gives the new device the skmsg all the same; without our key it asks again
     * and gets it pairwise (the group retry); the ack's phash made us drop the lists */
    CHECK_INT(sim_rig_send_text(r, a, group, "old list", id), WA_OK);
    CHECK(sim_rig_got(b, id) != NULL);
    CHECK_INT(sim_rig_count(b2, WA_EV_ERROR, NULL), 1);
    CHECK(sim_rig_got(b2, id) != NULL);
    CHECK_INT(r->s.usync_queries - q0, 0);
    CHECK_INT(sim_rig_send_text(r, a, group, "new list", id), WA_OK);
    CHECK_INT(r->s.usync_queries - q0, 1); /* the members' devices asked again */
    const sim_rig_msg *g = sim_rig_got(b2, id);
    CHECK(g && g->m.text && strcmp(g->m.text, "new list") == 0);
    CHECK_INT(sim_rig_count(b2, WA_EV_ERROR, NULL),
              1); /* read at once: the device is on the list */
    CHECK(sim_rig_got(b, id) != NULL);
    CHECK_INT(sim_rig_send_text(r, a, group, "cached again", id), WA_OK);
    CHECK_INT(r->s.usync_queries - q0, 1);
    CHECK(sim_rig_got(b2, id) != NULL);
    CHECK_INT(sim_rig_count(a, WA_EV_ERROR, NULL), 0);
}

static bool holds(const wb_buf *b, const char *text)
{
    size_t n = strlen(text);
    for (size_t i = 0; i + n <= b->len; i++)
        if (memcmp(b->data + i, text, n) == 0) return true;
    return false;
}

/* 7. the plaintext kept for retries: stored at the ack, or when the connection goes */
static void test_sent_kept(sim_rig *r, sim_rig_peer *a)
{
    char id[WA_MESSAGE_ID_MAX];
    wb_buf pt;
    wb_buf_init(&pt);
    /* (C's devices known: the next sends are encrypted at once) */
    CHECK_INT(sim_rig_send_text(r, a, JID_C, "warm", id), WA_OK);
    CHECK_INT(wa_client_send_text(a->client, JID_C, "kept at the ack", id, r->now), WA_OK);
    CHECK(wa_client_output(a->client)->len > 0); /* encrypted and written out already */
    CHECK_INT(a->store.sent_load(a->store.ctx, JID_C, id, &pt), WA_STORE_NOT_FOUND);
    sim_rig_advance(r, 100);
    CHECK_INT(sim_rig_count(a, WA_EV_SENT, id), 1);
    CHECK_INT(a->store.sent_load(a->store.ctx, JID_C, id, &pt), WA_STORE_OK);
    CHECK(holds(&pt, "kept at the ack"));
    /* the connection goes before the ack: stored then */
    CHECK_INT(wa_client_send_text(a->client, JID_C, "cut off", id, r->now), WA_OK);
    CHECK(wa_client_output(a->client)->len > 0);
    wa_client_stop(a->client, r->now);
    pt.len = 0;
    CHECK_INT(a->store.sent_load(a->store.ctx, JID_C, id, &pt), WA_STORE_OK);
    CHECK(holds(&pt, "cut off"));
    CHECK_INT(sim_rig_count(a, WA_EV_SENT, id), 0);
    sim_rig_advance(r, 100);
    CHECK_INT(wa_client_start(a->client, r->now, r->wall), WA_OK);
    sim_rig_advance(r, 2000);
    CHECK_INT(wa_client_get_state(a->client), WA_CLIENT_CONNECTED);
    wb_buf_free(&pt);
}

int main(void)
{
    wa_crypto *crypto = wa_crypto_new(NULL, 0);
    sim_rig *r = calloc(1, sizeof(*r));
    CHECK_INT(sim_rig_init(r, "sessions", crypto), 0);
    CHECK(sim_account_add(&r->s, PHONE_A, LID_A, "Alice Phone") != NULL);
    CHECK(sim_account_add(&r->s, PHONE_B, LID_B, "Bob Phone") != NULL);
    CHECK(sim_account_add(&r->s, PHONE_C, LID_C, "Carol Phone") != NULL);
    sim_rig_peer *a = sim_rig_pair(r, PHONE_A, "Peer");
    sim_rig_peer *b = sim_rig_pair(r, PHONE_B, "Peer");
    /* our own number and LID are in the map from the login on, before any stanza names them */
    char own[WA_ADDRESS_MAX] = "";
    CHECK_INT(a->store.pn_for_lid(a->store.ctx, LID_A "@lid", own), WA_STORE_OK);
    CHECK_STR(own, JID_A);
    test_identity_change(r, a, b);
    test_phash(r, a);
    test_retry_without_keys(r, a, r->peers[2]);
    char group[WA_JID_STR_MAX];
    test_notification_ack(r, a, group);
    test_lid_chat(r, a, r->peers[2]);
    test_group_chat_state(r, a, b, r->peers[2], r->peers[3], group);
    test_group_phash(r, a, b, group);
    test_sent_kept(r, a);
    sim_rig_free(r);
    free(r);
    wa_crypto_free(crypto);
    sim_rig_add_checks(&check_passed, &check_failed);
    return CHECK_DONE();
}
