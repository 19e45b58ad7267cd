/*
 * tests/fuzz/fuzz_group.c - libFuzzer target for wa/group's parsers.
 *
 * Input: one binary node (no frame flag byte), decoded with wa_binary_decode; when it decodes, it
 * goes through every group parser as an IQ result, a <group>, a participants result of each kind,
 * an invite result, a participating list and a w:gp2 notification (the same node, whatever its
 * tag: parsers must refuse or skip what does not fit). Every string a parser hands back is read in
 * full and every count is walked, so ASan/UBSan see any pointer or length that is off.
 */
#include "wa/group.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t sink;

static void touch(const char *s)
{
    if (s) sink += strlen(s);
}

static void touch_participants(const wa_group_participant *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!p[i].jid) abort(); /* entries without jid are skipped, never returned */
        touch(p[i].jid);
        touch(p[i].phone_number);
        touch(p[i].lid);
        touch(p[i].invite_code);
        if (p[i].superadmin && !p[i].admin) abort();
        sink += (size_t)p[i].error + (size_t)p[i].invite_expiration;
    }
}

static void touch_info(const wa_group_info *g)
{
    if (!g->jid || !g->subject || !g->addressing_mode) abort();
    touch(g->jid);
    touch(g->subject);
    touch(g->subject_owner);
    touch(g->description);
    touch(g->description_id);
    touch(g->description_owner);
    touch(g->creator);
    touch(g->addressing_mode);
    touch_participants(g->participants, g->nparticipants);
    sink += g->size + g->ephemeral_expiration;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *n;
    if (wa_binary_decode(data, size, &a, &n, NULL) != WA_OK) {
        wb_arena_free(&a);
        return 0;
    }
    const char *text = NULL;
    int code = wa_group_result_code(n, &text);
    if (code >= 0 && !text) abort();
    touch(text);

    wa_group_info info;
    if (wa_group_parse_info(&a, n, &info) == WA_OK) touch_info(&info);
    wa_group_info *list;
    size_t nlist;
    if (wa_group_parse_list(&a, n, &list, &nlist) == WA_OK)
        for (size_t i = 0; i < nlist; i++)
            touch_info(&list[i]);
    for (int c = WA_GROUP_ADD; c <= WA_GROUP_DEMOTE; c++) {
        wa_group_participant *ps;
        size_t np;
        if (wa_group_parse_participants(&a, n, (wa_group_change)c, &ps, &np) == WA_OK)
            touch_participants(ps, np);
    }
    const char *invite;
    if (wa_group_parse_invite(n, &invite) == WA_OK) touch(invite);

    wa_group_event ev;
    if (wa_group_parse_notification(&a, n, &ev) == WA_OK) {
        if (!ev.group) abort();
        touch(ev.group);
        touch(ev.id);
        touch(ev.author);
        touch(ev.author_pn);
        touch(ev.notify);
        for (size_t i = 0; i < ev.nchanges; i++) {
            const wa_group_change_event *c = &ev.changes[i];
            touch(c->text);
            touch(c->id);
            touch(c->reason);
            touch(c->owner);
            touch_participants(c->participants, c->nparticipants);
            if (c->info) touch_info(c->info);
            if (c->type == WA_GROUP_EV_CREATE && c->nparticipants) abort();
        }
        wa_node *ack = wa_group_notification_ack(&a, n);
        if (ack) {
            wb_buf b;
            wb_buf_init(&b);
            if (wa_binary_encode(ack, &b) != WA_OK) abort();
            wb_buf_free(&b);
        }
    }
    wb_arena_free(&a);
    return 0;
}
