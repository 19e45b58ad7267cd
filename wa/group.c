/*
 * wa/group.c - group IQ builders, result parsers and the w:gp2 notification parser (wa/group.h).
 * Everything here reads nodes that came from the network: no attribute is assumed to exist, no
 * number is trusted to fit, nothing is indexed without a bounds check.
 */
#include "wa/group.h"

#include <stdio.h>
#include <string.h>

const char *wa_group_change_tag(wa_group_change c)
{
    switch (c) {
    case WA_GROUP_ADD: return "add";
    case WA_GROUP_REMOVE: return "remove";
    case WA_GROUP_PROMOTE: return "promote";
    case WA_GROUP_DEMOTE: return "demote";
    }
    return NULL;
}

const char *wa_group_setting_tag(wa_group_setting s)
{
    switch (s) {
    case WA_GROUP_ANNOUNCE: return "announcement";
    case WA_GROUP_NOT_ANNOUNCE: return "not_announcement";
    case WA_GROUP_LOCKED: return "locked";
    case WA_GROUP_UNLOCKED: return "unlocked";
    }
    return NULL;
}

/* --- builders --- */

static bool usable(const char *s)
{
    return s && *s;
}

static wa_node *group_iq(wb_arena *a, const char *id, const char *to, const char *type,
                         wa_node *child)
{
    if (!usable(id) || !usable(to) || !child) return NULL;
    wa_node *iq = wa_node_new(a, "iq");
    if (!iq || wa_node_set_attr(a, iq, "id", id) != WA_OK ||
        wa_node_set_attr(a, iq, "to", to) != WA_OK ||
        wa_node_set_attr(a, iq, "type", type) != WA_OK ||
        wa_node_set_attr(a, iq, "xmlns", WA_GROUP_XMLNS) != WA_OK ||
        wa_node_add_child(a, iq, child) != WA_OK)
        return NULL;
    return iq;
}

/* Appends <participant jid/> for each JID; false when one is empty or memory ran out. */
static bool add_participants(wb_arena *a, wa_node *parent, const char *const *jids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!usable(jids[i])) return false;
        wa_node *p = wa_node_new(a, "participant");
        if (!p || wa_node_set_attr(a, p, "jid", jids[i]) != WA_OK ||
            wa_node_add_child(a, parent, p) != WA_OK)
            return false;
    }
    return true;
}

wa_node *wa_group_iq_create(wb_arena *a, const char *id, const char *subject, const char *key,
                            const char *const *participants, size_t n)
{
    if (!subject || (n && !participants)) return NULL;
    wa_node *create = wa_node_new(a, "create");
    if (!create || wa_node_set_attr(a, create, "subject", subject) != WA_OK) return NULL;
    if (usable(key) && wa_node_set_attr(a, create, "key", key) != WA_OK) return NULL;
    if (!add_participants(a, create, participants, n)) return NULL;
    if (!n) wa_node_set_empty_list(create);
    return group_iq(a, id, WA_GROUP_SERVER_JID, "set", create);
}

wa_node *wa_group_iq_info(wb_arena *a, const char *id, const char *group)
{
    wa_node *q = wa_node_new(a, "query");
    if (!q || wa_node_set_attr(a, q, "request", "interactive") != WA_OK) return NULL;
    return group_iq(a, id, group, "get", q);
}

wa_node *wa_group_iq_participants(wb_arena *a, const char *id, const char *group,
                                  wa_group_change change, const char *const *participants, size_t n)
{
    const char *tag = wa_group_change_tag(change);
    if (!tag || !n || !participants) return NULL;
    wa_node *c = wa_node_new(a, tag);
    if (!c || !add_participants(a, c, participants, n)) return NULL;
    return group_iq(a, id, group, "set", c);
}

wa_node *wa_group_iq_subject(wb_arena *a, const char *id, const char *group, const char *subject)
{
    if (!subject) return NULL;
    wa_node *s = wa_node_new(a, "subject");
    if (!s || wa_node_set_bytes(a, s, subject, strlen(subject)) != WA_OK) return NULL;
    return group_iq(a, id, group, "set", s);
}

wa_node *wa_group_iq_description(wb_arena *a, const char *id, const char *group, const char *text,
                                 const char *new_id, const char *prev_id)
{
    if (!usable(new_id)) return NULL;
    wa_node *d = wa_node_new(a, "description");
    if (!d || wa_node_set_attr(a, d, "id", new_id) != WA_OK) return NULL;
    if (usable(prev_id) && wa_node_set_attr(a, d, "prev", prev_id) != WA_OK) return NULL;
    if (usable(text)) {
        wa_node *body = wa_node_new(a, "body");
        if (!body || wa_node_set_bytes(a, body, text, strlen(text)) != WA_OK ||
            wa_node_add_child(a, d, body) != WA_OK)
            return NULL;
    } else if (wa_node_set_attr(a, d, "delete", "true") != WA_OK) {
        return NULL;
    }
    return group_iq(a, id, group, "set", d);
}

wa_node *wa_group_iq_leave(wb_arena *a, const char *id, const char *group)
{
    if (!usable(group)) return NULL;
    wa_node *leave = wa_node_new(a, "leave");
    wa_node *g = wa_node_new(a, "group");
    if (!leave || !g || wa_node_set_attr(a, g, "id", group) != WA_OK ||
        wa_node_add_child(a, leave, g) != WA_OK)
        return NULL;
    return group_iq(a, id, WA_GROUP_SERVER_JID, "set", leave);
}

wa_node *wa_group_iq_invite(wb_arena *a, const char *id, const char *group, bool revoke)
{
    return group_iq(a, id, group, revoke ? "set" : "get", wa_node_new(a, "invite"));
}

wa_node *wa_group_iq_setting(wb_arena *a, const char *id, const char *group, wa_group_setting s)
{
    const char *tag = wa_group_setting_tag(s);
    return tag ? group_iq(a, id, group, "set", wa_node_new(a, tag)) : NULL;
}

wa_node *wa_group_iq_participating(wb_arena *a, const char *id)
{
    wa_node *p = wa_node_new(a, "participating");
    wa_node *parts = wa_node_new(a, "participants");
    wa_node *desc = wa_node_new(a, "description");
    if (!p || !parts || !desc || wa_node_add_child(a, p, parts) != WA_OK ||
        wa_node_add_child(a, p, desc) != WA_OK)
        return NULL;
    return group_iq(a, id, WA_GROUP_SERVER_JID, "get", p);
}

/* --- parsing helpers --- */

/* A decimal attribute (at most 18 digits, optional leading '-'), or 0 when absent or not one. */
static int64_t attr_int(const wa_node *n, const char *key)
{
    const char *v = wa_node_attr(n, key);
    if (!v || !*v) return 0;
    bool neg = *v == '-';
    if (neg) v++;
    int64_t r = 0;
    size_t digits = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || ++digits > 18) return 0;
        r = r * 10 + (*v - '0');
    }
    return digits ? (neg ? -r : r) : 0;
}

static const char *attr_or_null(const wa_node *n, const char *key)
{
    const char *v = wa_node_attr(n, key);
    return v && *v ? v : NULL;
}

static size_t count_children(const wa_node *n, const char *tag)
{
    size_t k = 0;
    for (size_t i = 0; n && n->kind == WA_CONTENT_LIST && i < n->nchildren; i++)
        if (strcmp(n->children[i]->tag, tag) == 0) k++;
    return k;
}

/* The bytes or string content of n as a C string in a (a copy: NUL bytes inside end it). */
static const char *content_str(wb_arena *a, const wa_node *n)
{
    if (!n || (n->kind != WA_CONTENT_BYTES && n->kind != WA_CONTENT_STRING)) return NULL;
    return wb_arena_strndup(a, (const char *)n->data, n->data_len);
}

static void parse_participant(const wa_node *p, wa_group_participant *out)
{
    memset(out, 0, sizeof(*out));
    out->jid = attr_or_null(p, "jid");
    out->phone_number = attr_or_null(p, "phone_number");
    out->lid = attr_or_null(p, "lid");
    const char *type = wa_node_attr(p, "type");
    out->superadmin = type && strcmp(type, "superadmin") == 0;
    out->admin = out->superadmin || (type && strcmp(type, "admin") == 0);
    out->error = (int)attr_int(p, "error");
    const wa_node *req = wa_node_child(p, "add_request");
    if (req) {
        out->invite_code = attr_or_null(req, "code");
        out->invite_expiration = attr_int(req, "expiration");
    }
}

/* Every <participant jid> child of n, into a new array in a (entries without jid are skipped). */
static int parse_participant_list(wb_arena *a, const wa_node *n, wa_group_participant **out,
                                  size_t *count)
{
    *out = NULL;
    *count = 0;
    size_t max = count_children(n, "participant");
    if (!max) return WA_OK;
    wa_group_participant *list = wb_arena_zalloc(a, max * sizeof(*list));
    if (!list) return WA_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n->nchildren && k < max; i++) {
        const wa_node *c = n->children[i];
        if (strcmp(c->tag, "participant") != 0) continue;
        parse_participant(c, &list[k]);
        if (list[k].jid) k++;
    }
    *out = list;
    *count = k;
    return WA_OK;
}

/* --- results --- */

int wa_group_result_code(const wa_node *iq, const char **text)
{
    if (text) *text = "";
    if (!iq || strcmp(iq->tag, "iq") != 0) return WA_ERR_INVALID;
    const char *type = wa_node_attr(iq, "type");
    if (type && strcmp(type, "result") == 0) return 0;
    if (!type || strcmp(type, "error") != 0) return WA_ERR_INVALID;
    const wa_node *e = wa_node_child(iq, "error");
    int64_t code = e ? attr_int(e, "code") : 0;
    if (text && e && wa_node_attr(e, "text")) *text = wa_node_attr(e, "text");
    return code > 0 && code < 100000 ? (int)code : 500;
}

static int parse_group_node(wb_arena *a, const wa_node *g, wa_group_info *out)
{
    memset(out, 0, sizeof(*out));
    const char *id = attr_or_null(g, "id");
    if (!id) id = attr_or_null(g, "jid");
    if (!id) return WA_ERR_INVALID;
    if (strchr(id, '@')) {
        out->jid = id;
    } else {
        size_t n = strlen(id) + sizeof("@" WA_SERVER_GROUP);
        char *jid = wb_arena_alloc(a, n);
        if (!jid) return WA_ERR_NOMEM;
        snprintf(jid, n, "%s@%s", id, WA_SERVER_GROUP);
        out->jid = jid;
    }
    const char *subject = wa_node_attr(g, "subject");
    out->subject = subject ? subject : "";
    out->subject_owner = attr_or_null(g, "s_o");
    out->subject_time = attr_int(g, "s_t");
    out->creator = attr_or_null(g, "creator");
    out->creation = attr_int(g, "creation");
    const char *mode = attr_or_null(g, "addressing_mode");
    out->addressing_mode = mode && strcmp(mode, "lid") == 0 ? "lid" : "pn";
    for (size_t i = 0; g->kind == WA_CONTENT_LIST && i < g->nchildren; i++) {
        const wa_node *c = g->children[i];
        if (strcmp(c->tag, "description") == 0) {
            const wa_node *body = wa_node_child(c, "body");
            if (body) {
                out->description = content_str(a, body);
                if (!out->description) out->description = "";
            }
            out->description_id = attr_or_null(c, "id");
            out->description_owner = attr_or_null(c, "participant");
            out->description_time = attr_int(c, "t");
        } else if (strcmp(c->tag, "announcement") == 0) {
            out->announce = true;
        } else if (strcmp(c->tag, "locked") == 0) {
            out->locked = true;
        } else if (strcmp(c->tag, "ephemeral") == 0) {
            int64_t e = attr_int(c, "expiration");
            out->ephemeral = true;
            out->ephemeral_expiration = e > 0 && e <= UINT32_MAX ? (uint32_t)e : 0;
        } else if (strcmp(c->tag, "membership_approval_mode") == 0) {
            out->join_approval = true;
        } else if (strcmp(c->tag, "parent") == 0) {
            out->community = true;
        }
    }
    int rc = parse_participant_list(a, g, &out->participants, &out->nparticipants);
    if (rc != WA_OK) return rc;
    int64_t size = attr_int(g, "size");
    out->size = size > 0 ? (size_t)size : out->nparticipants;
    return WA_OK;
}

int wa_group_parse_info(wb_arena *a, const wa_node *n, wa_group_info *out)
{
    memset(out, 0, sizeof(*out));
    if (!n) return WA_ERR_INVALID;
    const wa_node *g = strcmp(n->tag, "group") == 0 ? n : wa_node_child(n, "group");
    return g ? parse_group_node(a, g, out) : WA_ERR_INVALID;
}

int wa_group_parse_list(wb_arena *a, const wa_node *iq, wa_group_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    const wa_node *groups = iq ? wa_node_child(iq, "groups") : NULL;
    if (!groups) return WA_ERR_INVALID;
    size_t max = count_children(groups, "group");
    if (!max) return WA_OK;
    wa_group_info *list = wb_arena_zalloc(a, max * sizeof(*list));
    if (!list) return WA_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < groups->nchildren && k < max; i++) {
        const wa_node *g = groups->children[i];
        if (strcmp(g->tag, "group") != 0) continue;
        int rc = parse_group_node(a, g, &list[k]);
        if (rc == WA_ERR_NOMEM) return rc;
        if (rc == WA_OK) k++;
    }
    *out = list;
    *n = k;
    return WA_OK;
}

int wa_group_parse_participants(wb_arena *a, const wa_node *iq, wa_group_change change,
                                wa_group_participant **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    const char *tag = wa_group_change_tag(change);
    const wa_node *c = iq && tag ? wa_node_child(iq, tag) : NULL;
    return c ? parse_participant_list(a, c, out, n) : WA_ERR_INVALID;
}

int wa_group_parse_invite(const wa_node *iq, const char **code)
{
    const wa_node *inv = iq ? wa_node_child(iq, "invite") : NULL;
    *code = inv ? attr_or_null(inv, "code") : NULL;
    return *code ? WA_OK : WA_ERR_INVALID;
}

/* --- notifications --- */

/* The user part of a JID string (before ':' or '@'), for comparing two JIDs of one person. */
static size_t user_len(const char *jid)
{
    return strcspn(jid, ":@");
}

static bool same_user(const char *a, const char *b)
{
    if (!a || !b) return false;
    size_t la = user_len(a), lb = user_len(b);
    const char *sa = strchr(a, '@'), *sb = strchr(b, '@');
    return la == lb && memcmp(a, b, la) == 0 && sa && sb && strcmp(sa, sb) == 0;
}

static const struct {
    const char *tag;
    wa_group_event_type type;
    bool on;
} SIMPLE[] = {
    {"announcement", WA_GROUP_EV_ANNOUNCE, true}, {"not_announcement", WA_GROUP_EV_ANNOUNCE, false},
    {"locked", WA_GROUP_EV_LOCKED, true},         {"unlocked", WA_GROUP_EV_LOCKED, false},
    {"ephemeral", WA_GROUP_EV_EPHEMERAL, true},   {"not_ephemeral", WA_GROUP_EV_EPHEMERAL, false},
};

static int parse_change(wb_arena *a, const wa_group_event *ev, const wa_node *c,
                        wa_group_change_event *out)
{
    memset(out, 0, sizeof(*out));
    const char *tag = c->tag;
    static const struct {
        const char *tag;
        wa_group_event_type type;
    } LISTS[] = {{"add", WA_GROUP_EV_ADD},
                 {"remove", WA_GROUP_EV_REMOVE},
                 {"leave", WA_GROUP_EV_LEAVE},
                 {"promote", WA_GROUP_EV_PROMOTE},
                 {"demote", WA_GROUP_EV_DEMOTE}};
    for (size_t i = 0; i < sizeof(LISTS) / sizeof(LISTS[0]); i++) {
        if (strcmp(tag, LISTS[i].tag) != 0) continue;
        out->type = LISTS[i].type;
        out->reason = attr_or_null(c, "reason");
        int rc = parse_participant_list(a, c, &out->participants, &out->nparticipants);
        if (rc != WA_OK) return rc;
        /* a removal of oneself is a leave (as WhatsApp shows it) */
        if (out->type == WA_GROUP_EV_REMOVE && out->nparticipants == 1 &&
            (same_user(out->participants[0].jid, ev->author) ||
             same_user(out->participants[0].jid, ev->author_pn)))
            out->type = WA_GROUP_EV_LEAVE;
        return WA_OK;
    }
    for (size_t i = 0; i < sizeof(SIMPLE) / sizeof(SIMPLE[0]); i++) {
        if (strcmp(tag, SIMPLE[i].tag) != 0) continue;
        out->type = SIMPLE[i].type;
        out->on = SIMPLE[i].on;
        if (out->type == WA_GROUP_EV_EPHEMERAL) {
            int64_t e = attr_int(c, "expiration");
            out->expiration = e > 0 && e <= UINT32_MAX ? (uint32_t)e : 0;
        }
        return WA_OK;
    }
    if (strcmp(tag, "create") == 0) {
        out->type = WA_GROUP_EV_CREATE;
        out->reason = attr_or_null(c, "reason");
        out->info = wb_arena_zalloc(a, sizeof(*out->info));
        if (!out->info) return WA_ERR_NOMEM;
        int rc = wa_group_parse_info(a, c, out->info);
        if (rc == WA_ERR_INVALID) out->info = NULL; /* a create without its group: no info */
        return rc == WA_ERR_NOMEM ? rc : WA_OK;
    }
    if (strcmp(tag, "subject") == 0) {
        out->type = WA_GROUP_EV_SUBJECT;
        const char *s = wa_node_attr(c, "subject");
        out->text = s ? s : content_str(a, c);
        if (!out->text) out->text = "";
        out->owner = attr_or_null(c, "s_o");
        out->time = attr_int(c, "s_t");
        return WA_OK;
    }
    if (strcmp(tag, "description") == 0) {
        out->type = WA_GROUP_EV_DESCRIPTION;
        out->id = attr_or_null(c, "id");
        const wa_node *body = wa_node_child(c, "body");
        if (body && !wa_node_child(c, "delete")) {
            out->text = content_str(a, body);
            if (!out->text) out->text = "";
        }
        return WA_OK;
    }
    if (strcmp(tag, "invite") == 0) {
        out->type = WA_GROUP_EV_INVITE;
        out->text = attr_or_null(c, "code");
        return WA_OK;
    }
    if (strcmp(tag, "delete") == 0) {
        out->type = WA_GROUP_EV_DELETE;
        out->text = attr_or_null(c, "reason");
        return WA_OK;
    }
    if (strcmp(tag, "member_add_mode") == 0) {
        out->type = WA_GROUP_EV_MEMBER_ADD_MODE;
        out->text = content_str(a, c);
        return WA_OK;
    }
    out->type = WA_GROUP_EV_UNKNOWN;
    out->text = tag;
    return WA_OK;
}

int wa_group_parse_notification(wb_arena *a, const wa_node *n, wa_group_event *out)
{
    memset(out, 0, sizeof(*out));
    const char *type = n ? wa_node_attr(n, "type") : NULL;
    if (!n || strcmp(n->tag, "notification") != 0 || !type ||
        strcmp(type, WA_GROUP_NOTIFICATION) != 0)
        return WA_ERR_INVALID;
    out->group = attr_or_null(n, "from");
    if (!out->group) return WA_ERR_INVALID;
    out->id = attr_or_null(n, "id");
    out->author = attr_or_null(n, "participant");
    out->author_pn = attr_or_null(n, "participant_pn");
    out->notify = attr_or_null(n, "notify");
    out->t = attr_int(n, "t");
    if (n->kind != WA_CONTENT_LIST || !n->nchildren) return WA_OK;
    out->changes = wb_arena_zalloc(a, n->nchildren * sizeof(*out->changes));
    if (!out->changes) return WA_ERR_NOMEM;
    for (size_t i = 0; i < n->nchildren; i++) {
        int rc = parse_change(a, out, n->children[i], &out->changes[out->nchanges]);
        if (rc != WA_OK) return rc;
        out->nchanges++;
    }
    return WA_OK;
}

wa_node *wa_group_notification_ack(wb_arena *a, const wa_node *n)
{
    const char *id = wa_node_attr(n, "id"), *from = wa_node_attr(n, "from");
    if (!usable(id) || !usable(from)) return NULL;
    wa_node *ack = wa_node_new(a, "ack");
    const char *participant = wa_node_attr(n, "participant");
    const char *type = wa_node_attr(n, "type");
    if (!ack || wa_node_set_attr(a, ack, "class", "notification") != WA_OK ||
        wa_node_set_attr(a, ack, "id", id) != WA_OK ||
        wa_node_set_attr(a, ack, "to", from) != WA_OK ||
        (type && wa_node_set_attr(a, ack, "type", type) != WA_OK) ||
        (participant && wa_node_set_attr(a, ack, "participant", participant) != WA_OK))
        return NULL;
    return ack;
}
