/*
 * tests/bridge/test_group_data.c - a group notification's change as wa_group_event_buffer keeps it
 * (bridge/group.c br_group_data_to_json / br_group_data_from_json): what the portal worker needs
 * comes back the same after a restart (removal with a LID participant, subject with quotes and
 * non-ASCII text, a create with the whole member list and its admins); rows that do not parse
 * are refused.
 */
#include "bridge/group.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static br_group_data *round_trip(const br_group_data *g)
{
    char *json = br_group_data_to_json(g);
    CHECK(json != NULL);
    br_group_data *back = json ? br_group_data_from_json(g->login_id, json) : NULL;
    CHECK(back != NULL);
    free(json);
    return back;
}

static void same(const br_group_data *a, const br_group_data *b)
{
    CHECK(a->login_id == b->login_id);
    CHECK_INT((int)a->change, (int)b->change);
    CHECK(a->has_info == b->has_info);
    CHECK_STR(a->group, b->group);
    CHECK_STR(a->subject, b->subject);
    CHECK_STR(a->topic, b->topic);
    CHECK_STR(a->author, b->author);
    CHECK_STR(a->author_name, b->author_name);
    CHECK_INT((int)a->nmembers, (int)b->nmembers);
    for (size_t i = 0; i < a->nmembers && i < b->nmembers; i++) {
        CHECK_STR(a->members[i].jid, b->members[i].jid);
        CHECK_STR(a->members[i].lid, b->members[i].lid);
        CHECK(a->members[i].admin == b->members[i].admin);
    }
    CHECK(b->buffer_id == 0); /* the row id is the caller's to set */
}

int main(void)
{
    /* a removal by Bob of a LID-addressed participant whose phone number WhatsApp gave */
    wa_group_participant rp = {.jid = "900000000000053@lid",
                               .phone_number = "15550000053@s.whatsapp.net"};
    wa_group_change_event rm = {
        .type = WA_GROUP_EV_REMOVE, .participants = &rp, .nparticipants = 1};
    wa_group_event ev = {.group = "120363000000000001@g.us",
                         .id = "1234",
                         .author = "900000000000052@lid",
                         .author_pn = "15550000052@s.whatsapp.net",
                         .notify = "Bob \"the builder\"",
                         .changes = &rm,
                         .nchanges = 1};
    br_group_data *g = br_group_data_from_change(7, &ev, &rm);
    CHECK(g != NULL);
    if (!g) return CHECK_DONE();
    CHECK_STR(g->members[0].jid, "15550000053@s.whatsapp.net");
    CHECK_STR(g->author, "15550000052@s.whatsapp.net");
    br_group_data *back = round_trip(g);
    if (back) same(g, back);
    br_group_data_free(back);
    br_group_data_free(g);

    /* a subject with quotes, a backslash and non-ASCII text */
    wa_group_change_event subj = {.type = WA_GROUP_EV_SUBJECT,
                                  .text = "Caf\xc3\xa9 \"plans\" \\ 🎉"};
    ev.changes = &subj;
    g = br_group_data_from_change(7, &ev, &subj);
    CHECK(g != NULL);
    back = g ? round_trip(g) : NULL;
    if (back) {
        same(g, back);
        CHECK_STR(back->subject, "Caf\xc3\xa9 \"plans\" \\ 🎉");
    }
    br_group_data_free(back);
    br_group_data_free(g);

    /* a create: the whole group, admins included */
    wa_group_participant ps[3] = {
        {.jid = "15550000052@s.whatsapp.net", .admin = true, .superadmin = true},
        {.jid = "15550000051@s.whatsapp.net", .lid = "900000000000051@lid"},
        {.jid = "15550000053@s.whatsapp.net", .admin = true}};
    wa_group_info info = {.jid = "120363000000000002@g.us",
                          .subject = "Weekend",
                          .description = "Saturday",
                          .participants = ps,
                          .nparticipants = 3};
    wa_group_change_event cr = {.type = WA_GROUP_EV_CREATE, .info = &info};
    ev.group = info.jid;
    ev.changes = &cr;
    g = br_group_data_from_change(9, &ev, &cr);
    CHECK(g != NULL);
    back = g ? round_trip(g) : NULL;
    if (back) {
        same(g, back);
        CHECK(back->has_info);
        CHECK_INT((int)back->nmembers, 3);
        CHECK(back->members[0].admin && !back->members[1].admin && back->members[2].admin);
        CHECK_STR(back->members[1].lid, "900000000000051@lid");
        CHECK_STR(back->topic, "Saturday");
    }
    br_group_data_free(back);
    br_group_data_free(g);

    /* what does not parse is refused, not half read */
    CHECK(br_group_data_from_json(1, NULL) == NULL);
    CHECK(br_group_data_from_json(1, "") == NULL);
    CHECK(br_group_data_from_json(1, "{\"change\":3}") == NULL);
    CHECK(br_group_data_from_json(1, "{\"members\":[]}") == NULL);
    CHECK(br_group_data_from_json(1, "[1,2]") == NULL);
    br_group_data *empty = br_group_data_from_json(1, "{\"change\":3,\"members\":[]}");
    CHECK(empty != NULL && empty->nmembers == 0 && empty->group[0] == '\0');
    br_group_data_free(empty);
    return CHECK_DONE();
}
