/*
 * tests/unit/test_group.c - wa/group: every IQ builder's shape (and that it survives the binary
 * codec), the parsers on answers shaped like WhatsApp's (group info with admins, description,
 * settings, LID participants with phone numbers; per-participant errors with an add_request;
 * invite codes; error results; the participating list), each w:gp2 notification kind (create,
 * add, remove, leave, promote, demote, subject, description set and deleted, announce, locked,
 * ephemeral, invite, delete, member add mode, unknown, several changes in one), the notification
 * ack, and garbage that must be refused or skipped without a crash.
 */
#include "check.h"
#include "wa/group.h"

#include <stdarg.h>

static wb_arena A;

/* node("tag", "k1", "v1", "k2", "v2", NULL) */
static wa_node *node(const char *tag, ...)
{
    wa_node *n = wa_node_new(&A, tag);
    va_list ap;
    va_start(ap, tag);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k) break;
        wa_node_set_attr(&A, n, k, va_arg(ap, const char *));
    }
    va_end(ap);
    return n;
}

static wa_node *add(wa_node *parent, wa_node *child)
{
    wa_node_add_child(&A, parent, child);
    return parent;
}

static wa_node *bytes(wa_node *n, const char *s)
{
    wa_node_set_bytes(&A, n, s, strlen(s));
    return n;
}

/* Encodes and decodes n: what goes on the wire must come back the same. */
static wa_node *roundtrip(const wa_node *n)
{
    wb_buf b;
    wb_buf_init(&b);
    CHECK_INT(wa_binary_encode(n, &b), WA_OK);
    wa_node *back = NULL;
    CHECK_INT(wa_binary_decode(b.data, b.len, &A, &back, NULL), WA_OK);
    wb_buf_free(&b);
    CHECK(back && wa_node_equal(n, back));
    return back;
}

static void check_iq(const wa_node *iq, const char *id, const char *to, const char *type,
                     const char *child)
{
    CHECK(iq != NULL);
    if (!iq) return;
    CHECK_STR(iq->tag, "iq");
    CHECK_STR(wa_node_attr(iq, "id"), id);
    CHECK_STR(wa_node_attr(iq, "to"), to);
    CHECK_STR(wa_node_attr(iq, "type"), type);
    CHECK_STR(wa_node_attr(iq, "xmlns"), "w:g2");
    CHECK(iq->kind == WA_CONTENT_LIST && iq->nchildren == 1);
    if (iq->nchildren) CHECK_STR(iq->children[0]->tag, child);
    roundtrip(iq);
}

static const char G[] = "120363041234567890@g.us";

static void test_builders(void)
{
    const char *people[] = {"15550000002@s.whatsapp.net", "100000000000003@lid"};
    wa_node *iq = wa_group_iq_create(&A, "c1", "Team", "3EB0KEY", people, 2);
    check_iq(iq, "c1", "@g.us", "set", "create");
    wa_node *create = iq->children[0];
    CHECK_STR(wa_node_attr(create, "subject"), "Team");
    CHECK_STR(wa_node_attr(create, "key"), "3EB0KEY");
    CHECK_INT(create->nchildren, 2);
    CHECK_STR(create->children[0]->tag, "participant");
    CHECK_STR(wa_node_attr(create->children[1], "jid"), "100000000000003@lid");
    iq = wa_group_iq_create(&A, "c2", "Alone", NULL, NULL, 0);
    check_iq(iq, "c2", "@g.us", "set", "create");
    CHECK(wa_node_attr(iq->children[0], "key") == NULL);
    CHECK(wa_group_iq_create(&A, "c3", NULL, NULL, people, 2) == NULL);
    const char *bad[] = {"15550000002@s.whatsapp.net", ""};
    CHECK(wa_group_iq_create(&A, "c4", "x", NULL, bad, 2) == NULL);
    CHECK(wa_group_iq_create(&A, "", "x", NULL, people, 2) == NULL);

    iq = wa_group_iq_info(&A, "i1", G);
    check_iq(iq, "i1", G, "get", "query");
    CHECK_STR(wa_node_attr(iq->children[0], "request"), "interactive");
    CHECK(wa_group_iq_info(&A, "i2", "") == NULL);

    static const char *const tags[] = {"add", "remove", "promote", "demote"};
    for (int c = WA_GROUP_ADD; c <= WA_GROUP_DEMOTE; c++) {
        iq = wa_group_iq_participants(&A, "p", G, (wa_group_change)c, people, 2);
        check_iq(iq, "p", G, "set", tags[c]);
        CHECK_INT(iq->children[0]->nchildren, 2);
        CHECK_STR(wa_node_attr(iq->children[0]->children[0], "jid"), people[0]);
    }
    CHECK(wa_group_iq_participants(&A, "p", G, WA_GROUP_ADD, people, 0) == NULL);
    CHECK(wa_group_iq_participants(&A, "p", G, (wa_group_change)9, people, 1) == NULL);

    iq = wa_group_iq_subject(&A, "s1", G, "New name ✓");
    check_iq(iq, "s1", G, "set", "subject");
    CHECK(iq->children[0]->kind == WA_CONTENT_BYTES &&
          iq->children[0]->data_len == strlen("New name ✓"));

    iq = wa_group_iq_description(&A, "d1", G, "About us", "DESC2", "DESC1");
    check_iq(iq, "d1", G, "set", "description");
    wa_node *d = iq->children[0];
    CHECK_STR(wa_node_attr(d, "id"), "DESC2");
    CHECK_STR(wa_node_attr(d, "prev"), "DESC1");
    CHECK(wa_node_attr(d, "delete") == NULL);
    CHECK(wa_node_child(d, "body") && wa_node_child(d, "body")->data_len == 8);
    iq = wa_group_iq_description(&A, "d2", G, NULL, "DESC3", NULL);
    check_iq(iq, "d2", G, "set", "description");
    CHECK_STR(wa_node_attr(iq->children[0], "delete"), "true");
    CHECK(wa_node_attr(iq->children[0], "prev") == NULL);
    CHECK(wa_node_child(iq->children[0], "body") == NULL);
    CHECK(wa_group_iq_description(&A, "d3", G, "x", NULL, NULL) == NULL);

    iq = wa_group_iq_leave(&A, "l1", G);
    check_iq(iq, "l1", "@g.us", "set", "leave");
    CHECK_STR(wa_node_attr(wa_node_child(iq->children[0], "group"), "id"), G);

    check_iq(wa_group_iq_invite(&A, "v1", G, false), "v1", G, "get", "invite");
    check_iq(wa_group_iq_invite(&A, "v2", G, true), "v2", G, "set", "invite");
    check_iq(wa_group_iq_setting(&A, "x1", G, WA_GROUP_ANNOUNCE), "x1", G, "set", "announcement");
    check_iq(wa_group_iq_setting(&A, "x2", G, WA_GROUP_UNLOCKED), "x2", G, "set", "unlocked");
    CHECK(wa_group_iq_setting(&A, "x3", G, (wa_group_setting)7) == NULL);
    iq = wa_group_iq_participating(&A, "all");
    check_iq(iq, "all", "@g.us", "get", "participating");
    CHECK(wa_node_child(iq->children[0], "participants") &&
          wa_node_child(iq->children[0], "description"));
}

/* An info result as WhatsApp sends it (LID addressing). */
static wa_node *info_result(void)
{
    wa_node *g = node("group", "id", "120363041234567890", "creator", "100000000000001@lid",
                      "creator_pn", "15550000001@s.whatsapp.net", "creation", "1700000000",
                      "subject", "Team", "s_t", "1700000100", "s_o", "100000000000001@lid", "size",
                      "3", "addressing_mode", "lid", NULL);
    add(g, node("participant", "jid", "100000000000001@lid", "phone_number",
                "15550000001@s.whatsapp.net", "type", "superadmin", NULL));
    add(g, node("participant", "jid", "100000000000002@lid", "phone_number",
                "15550000002@s.whatsapp.net", "type", "admin", NULL));
    add(g, node("participant", "jid", "15550000003@s.whatsapp.net", "lid", "100000000000003@lid",
                NULL));
    add(g, node("participant", NULL)); /* no jid: skipped */
    wa_node *desc = node("description", "id", "DESC1", "participant", "100000000000002@lid", "t",
                         "1700000200", NULL);
    add(desc, bytes(node("body", NULL), "What we do"));
    add(g, desc);
    add(g, node("announcement", NULL));
    add(g, node("locked", NULL));
    add(g, node("ephemeral", "expiration", "604800", NULL));
    add(g, node("member_add_mode", NULL));
    add(g, node("something_new", "x", "y", NULL));
    wa_node *iq = node("iq", "from", G, "type", "result", "id", "i1", NULL);
    return add(iq, g);
}

static void test_info(void)
{
    wa_group_info gi;
    wa_node *iq = roundtrip(info_result());
    CHECK_INT(wa_group_result_code(iq, NULL), 0);
    CHECK_INT(wa_group_parse_info(&A, iq, &gi), WA_OK);
    CHECK_STR(gi.jid, G);
    CHECK_STR(gi.subject, "Team");
    CHECK_STR(gi.subject_owner, "100000000000001@lid");
    CHECK_INT(gi.subject_time, 1700000100);
    CHECK_STR(gi.creator, "100000000000001@lid");
    CHECK_INT(gi.creation, 1700000000);
    CHECK_STR(gi.description, "What we do");
    CHECK_STR(gi.description_id, "DESC1");
    CHECK_STR(gi.description_owner, "100000000000002@lid");
    CHECK_INT(gi.description_time, 1700000200);
    CHECK_STR(gi.addressing_mode, "lid");
    CHECK(gi.announce && gi.locked && gi.ephemeral && !gi.join_approval && !gi.community);
    CHECK_INT(gi.ephemeral_expiration, 604800);
    CHECK_INT(gi.size, 3);
    CHECK_INT(gi.nparticipants, 3);
    CHECK(gi.participants[0].superadmin && gi.participants[0].admin);
    CHECK_STR(gi.participants[0].phone_number, "15550000001@s.whatsapp.net");
    CHECK(gi.participants[1].admin && !gi.participants[1].superadmin);
    CHECK(!gi.participants[2].admin && gi.participants[2].phone_number == NULL);
    CHECK_STR(gi.participants[2].lid, "100000000000003@lid");
    CHECK_INT(gi.participants[2].error, 0);

    /* the <group> itself, a full jid as id, no addressing mode, no size */
    wa_node *g = node("group", "id", G, NULL);
    add(g, node("participant", "jid", "15550000001@s.whatsapp.net", "type", "superadmin", NULL));
    CHECK_INT(wa_group_parse_info(&A, g, &gi), WA_OK);
    CHECK_STR(gi.jid, G);
    CHECK_STR(gi.subject, "");
    CHECK_STR(gi.addressing_mode, "pn");
    CHECK(gi.description == NULL && gi.creator == NULL && !gi.announce);
    CHECK_INT(gi.size, 1);
    /* no group, no id */
    CHECK_INT(wa_group_parse_info(&A, node("iq", "type", "result", NULL), &gi), WA_ERR_INVALID);
    CHECK_INT(wa_group_parse_info(&A, node("group", "subject", "x", NULL), &gi), WA_ERR_INVALID);
    CHECK_INT(wa_group_parse_info(&A, NULL, &gi), WA_ERR_INVALID);
    /* numbers that are not numbers */
    g = node("group", "id", "1", "creation", "12x", "s_t", "99999999999999999999999", "size", "-4",
             NULL);
    CHECK_INT(wa_group_parse_info(&A, g, &gi), WA_OK);
    CHECK(gi.creation == 0 && gi.subject_time == 0 && gi.size == 0);

    /* the participating list */
    wa_node *list = node("iq", "type", "result", "id", "all", NULL);
    wa_node *groups = node("groups", NULL);
    add(groups, node("group", "id", "1", "subject", "one", NULL));
    add(groups, node("group", "subject", "no id: skipped", NULL));
    add(groups, node("group", "id", "2", "subject", "two", NULL));
    add(groups, node("other", NULL));
    add(list, groups);
    wa_group_info *all;
    size_t n;
    CHECK_INT(wa_group_parse_list(&A, roundtrip(list), &all, &n), WA_OK);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(all[0].jid, "1@g.us");
        CHECK_STR(all[1].subject, "two");
    }
    CHECK_INT(wa_group_parse_list(&A, node("iq", NULL), &all, &n), WA_ERR_INVALID);
}

static void test_results(void)
{
    /* add: one done, one refused by privacy (an invite code instead), one already in */
    wa_node *iq = node("iq", "type", "result", "id", "p", "from", G, NULL);
    wa_node *addn = node("add", NULL);
    add(addn, node("participant", "jid", "100000000000004@lid", NULL));
    wa_node *p403 = node("participant", "jid", "100000000000005@lid", "error", "403", NULL);
    add(p403, node("add_request", "code", "AbCdEf", "expiration", "1700600000", NULL));
    add(addn, p403);
    add(addn, node("participant", "jid", "100000000000006@lid", "error", "409", NULL));
    add(iq, addn);
    wa_group_participant *ps;
    size_t n;
    CHECK_INT(wa_group_parse_participants(&A, roundtrip(iq), WA_GROUP_ADD, &ps, &n), WA_OK);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_INT(ps[0].error, 0);
        CHECK_INT(ps[1].error, 403);
        CHECK_STR(ps[1].invite_code, "AbCdEf");
        CHECK_INT(ps[1].invite_expiration, 1700600000);
        CHECK_INT(ps[2].error, 409);
        CHECK(ps[2].invite_code == NULL);
    }
    CHECK_INT(wa_group_parse_participants(&A, iq, WA_GROUP_REMOVE, &ps, &n), WA_ERR_INVALID);
    CHECK_INT(n, 0);

    /* invite code */
    const char *code;
    iq = add(node("iq", "type", "result", NULL), node("invite", "code", "Xy12Zw", NULL));
    CHECK_INT(wa_group_parse_invite(roundtrip(iq), &code), WA_OK);
    CHECK_STR(code, "Xy12Zw");
    CHECK_INT(wa_group_parse_invite(node("iq", NULL), &code), WA_ERR_INVALID);

    /* errors */
    const char *text;
    iq = add(node("iq", "type", "error", "id", "x", NULL),
             node("error", "code", "403", "text", "forbidden", NULL));
    CHECK_INT(wa_group_result_code(iq, &text), 403);
    CHECK_STR(text, "forbidden");
    CHECK_INT(wa_group_result_code(node("iq", "type", "error", NULL), &text), 500);
    CHECK_STR(text, "");
    CHECK_INT(wa_group_result_code(node("iq", "type", "get", NULL), NULL), WA_ERR_INVALID);
    CHECK_INT(wa_group_result_code(node("message", "type", "result", NULL), NULL), WA_ERR_INVALID);
}

static wa_node *notification(const char *participant)
{
    return node("notification", "from", G, "type", "w:gp2", "id", "N1", "participant", participant,
                "participant_pn", "15550000001@s.whatsapp.net", "notify", "Alice", "t",
                "1700001000", NULL);
}

static wa_group_event parse(wa_node *n)
{
    wa_group_event ev;
    CHECK_INT(wa_group_parse_notification(&A, roundtrip(n), &ev), WA_OK);
    return ev;
}

static void test_notifications(void)
{
    const char *alice = "100000000000001@lid";
    /* create (we were added at creation) */
    wa_node *n = notification(alice);
    wa_node *create = node("create", "reason", "create", "key", "3EB0KEY", NULL);
    wa_node *g = info_result()->children[0];
    add(create, g);
    add(n, create);
    wa_group_event ev = parse(n);
    CHECK_STR(ev.group, G);
    CHECK_STR(ev.id, "N1");
    CHECK_STR(ev.author, alice);
    CHECK_STR(ev.author_pn, "15550000001@s.whatsapp.net");
    CHECK_STR(ev.notify, "Alice");
    CHECK_INT(ev.t, 1700001000);
    CHECK_INT(ev.nchanges, 1);
    CHECK_INT(ev.changes[0].type, WA_GROUP_EV_CREATE);
    CHECK(ev.changes[0].info && ev.changes[0].info->nparticipants == 3);
    if (ev.changes[0].info) CHECK_STR(ev.changes[0].info->subject, "Team");

    /* add with a reason, remove by an admin, remove of oneself (= leave), promote, demote */
    static const struct {
        const char *tag;
        const char *who;
        wa_group_event_type want;
    } lists[] = {
        {"add", "100000000000004@lid", WA_GROUP_EV_ADD},
        {"remove", "100000000000004@lid", WA_GROUP_EV_REMOVE},
        {"remove", "100000000000001@lid", WA_GROUP_EV_LEAVE},
        {"remove", "15550000001@s.whatsapp.net", WA_GROUP_EV_LEAVE},
        {"leave", "100000000000004@lid", WA_GROUP_EV_LEAVE},
        {"promote", "100000000000004@lid", WA_GROUP_EV_PROMOTE},
        {"demote", "100000000000004@lid", WA_GROUP_EV_DEMOTE},
    };
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        n = notification(alice);
        wa_node *c = node(lists[i].tag, "reason", "invite", NULL);
        add(c, node("participant", "jid", lists[i].who, "phone_number",
                    "15550000004@s.whatsapp.net", NULL));
        add(n, c);
        ev = parse(n);
        CHECK_INT(ev.nchanges, 1);
        CHECK_INT(ev.changes[0].type, lists[i].want);
        CHECK_INT(ev.changes[0].nparticipants, 1);
        CHECK_STR(ev.changes[0].participants[0].jid, lists[i].who);
        CHECK_STR(ev.changes[0].participants[0].phone_number, "15550000004@s.whatsapp.net");
        CHECK_STR(ev.changes[0].reason, "invite");
    }
    /* two removed at once is a removal even when one is the author */
    n = notification(alice);
    wa_node *rm = node("remove", NULL);
    add(rm, node("participant", "jid", alice, NULL));
    add(rm, node("participant", "jid", "100000000000004@lid", NULL));
    add(n, rm);
    ev = parse(n);
    CHECK_INT(ev.changes[0].type, WA_GROUP_EV_REMOVE);
    CHECK_INT(ev.changes[0].nparticipants, 2);

    /* subject, description set and deleted, settings, invite, delete, add mode, unknown: one
     * notification with several changes */
    n = notification(alice);
    add(n, node("subject", "subject", "Renamed", "s_o", alice, "s_t", "1700002000", NULL));
    wa_node *desc = node("description", "id", "DESC2", NULL);
    add(desc, bytes(node("body", NULL), "New text"));
    add(n, desc);
    wa_node *deleted = node("description", "id", "DESC3", NULL);
    add(deleted, node("delete", NULL));
    add(n, deleted);
    add(n, node("announcement", NULL));
    add(n, node("not_announcement", NULL));
    add(n, node("locked", NULL));
    add(n, node("unlocked", NULL));
    add(n, node("ephemeral", "expiration", "86400", NULL));
    add(n, node("not_ephemeral", NULL));
    add(n, node("invite", "code", "NewCode1", NULL));
    add(n, node("delete", "reason", "admin", NULL));
    add(n, bytes(node("member_add_mode", NULL), "admin_add"));
    add(n, node("brand_new_thing", NULL));
    ev = parse(n);
    CHECK_INT(ev.nchanges, 13);
    if (ev.nchanges == 13) {
        wa_group_change_event *c = ev.changes;
        CHECK_INT(c[0].type, WA_GROUP_EV_SUBJECT);
        CHECK_STR(c[0].text, "Renamed");
        CHECK_STR(c[0].owner, alice);
        CHECK_INT(c[0].time, 1700002000);
        CHECK_INT(c[1].type, WA_GROUP_EV_DESCRIPTION);
        CHECK_STR(c[1].text, "New text");
        CHECK_STR(c[1].id, "DESC2");
        CHECK_INT(c[2].type, WA_GROUP_EV_DESCRIPTION);
        CHECK(c[2].text == NULL);
        CHECK_STR(c[2].id, "DESC3");
        CHECK(c[3].type == WA_GROUP_EV_ANNOUNCE && c[3].on);
        CHECK(c[4].type == WA_GROUP_EV_ANNOUNCE && !c[4].on);
        CHECK(c[5].type == WA_GROUP_EV_LOCKED && c[5].on);
        CHECK(c[6].type == WA_GROUP_EV_LOCKED && !c[6].on);
        CHECK(c[7].type == WA_GROUP_EV_EPHEMERAL && c[7].on && c[7].expiration == 86400);
        CHECK(c[8].type == WA_GROUP_EV_EPHEMERAL && !c[8].on);
        CHECK_INT(c[9].type, WA_GROUP_EV_INVITE);
        CHECK_STR(c[9].text, "NewCode1");
        CHECK_INT(c[10].type, WA_GROUP_EV_DELETE);
        CHECK_STR(c[10].text, "admin");
        CHECK_INT(c[11].type, WA_GROUP_EV_MEMBER_ADD_MODE);
        CHECK_STR(c[11].text, "admin_add");
        CHECK_INT(c[12].type, WA_GROUP_EV_UNKNOWN);
        CHECK_STR(c[12].text, "brand_new_thing");
    }

    /* a notification from the server (no author), without children */
    ev = parse(node("notification", "from", G, "type", "w:gp2", "id", "N2", NULL));
    CHECK(ev.author == NULL && ev.nchanges == 0 && ev.t == 0);
    /* not ours */
    CHECK_INT(wa_group_parse_notification(
                  &A, node("notification", "from", G, "type", "encrypt", NULL), &ev),
              WA_ERR_INVALID);
    CHECK_INT(wa_group_parse_notification(&A, node("notification", "type", "w:gp2", NULL), &ev),
              WA_ERR_INVALID);
    CHECK_INT(
        wa_group_parse_notification(&A, node("message", "from", G, "type", "w:gp2", NULL), &ev),
        WA_ERR_INVALID);
    /* a create without its group, a participant list without jids */
    n = notification(alice);
    add(n, node("create", NULL));
    wa_node *empty = node("add", NULL);
    add(empty, node("participant", NULL));
    add(n, empty);
    ev = parse(n);
    CHECK(ev.nchanges == 2 && ev.changes[0].info == NULL && ev.changes[1].nparticipants == 0);

    /* the ack */
    wa_node *ack = wa_group_notification_ack(&A, notification(alice));
    CHECK(ack != NULL);
    if (ack) {
        CHECK_STR(ack->tag, "ack");
        CHECK_STR(wa_node_attr(ack, "class"), "notification");
        CHECK_STR(wa_node_attr(ack, "id"), "N1");
        CHECK_STR(wa_node_attr(ack, "to"), G);
        CHECK_STR(wa_node_attr(ack, "type"), "w:gp2");
        CHECK_STR(wa_node_attr(ack, "participant"), alice);
    }
    CHECK(wa_group_notification_ack(&A, node("notification", "from", G, NULL)) == NULL);
}

int main(void)
{
    wb_arena_init(&A, 0);
    test_builders();
    test_info();
    test_results();
    test_notifications();
    wb_arena_free(&A);
    return CHECK_DONE();
}
