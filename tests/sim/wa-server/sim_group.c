/*
 * tests/sim/wa-server/sim_group.c - wa-sim's groups (sim_group.h): state per group JID, the w:g2
 * IQs with WhatsApp-shaped answers, w:gp2 notifications to every member device, group messages
 * fanned out per device with receipts routed back, and the phones' sender keys.
 */
#include "sim_group.h"

#include "util/base64.h"
#include "wa/message.h"
#include "wa/senderkey.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_MAX_MEMBERS 1024 /* WhatsApp's limit */
#define GROUP_SUBJECT_MAX 512  /* bytes kept of a subject (WhatsApp: 100 characters) */
#define GROUP_DESC_MAX    8192 /* bytes kept of a description (WhatsApp: 2048 characters) */
#define GROUP_RING        4096 /* group messages remembered for routing receipts */
#define GROUP_MAX_ENCS    4    /* <enc> children passed on per device */

typedef struct member {
    sim_account *acct; /* the member */
    bool admin;        /* admin or superadmin */
    bool superadmin;   /* the creator */
} member;

/* A phone's sender key reached this device (it got the SKDM pairwise). */
typedef struct skdm_note {
    sim_account *sender; /* the phone's account */
    sim_account *acct;   /* the receiving device's account */
    uint16_t device;     /* the receiving device (0: that account's phone) */
} skdm_note;

typedef struct group {
    char id[24];                     /* user part: 120363 + 12 digits */
    char jid[32];                    /* id@g.us */
    char subject[GROUP_SUBJECT_MAX]; /* the name */
    sim_account *subject_owner;      /* who set it */
    uint64_t subject_time;           /* when (unix s) */
    char *description;               /* malloc'd; NULL when none */
    char desc_id[SIM_ID_MAX + 1];    /* its id; "" when none */
    sim_account *desc_owner;         /* who set it */
    uint64_t desc_time;              /* when */
    sim_account *creator;            /* superadmin */
    uint64_t creation;               /* unix s */
    bool announce;                   /* only admins send */
    bool locked;                     /* only admins edit the info */
    char invite[24];                 /* the invite code */
    member *members;                 /* malloc'd */
    size_t nmembers, members_cap;    /* used / allocated */
    skdm_note *notes;                /* malloc'd: the phones' sender-key memory */
    size_t nnotes, notes_cap;        /* used / allocated */
    char last_id[SIM_ID_MAX + 1];    /* the last group message with a skmsg */
    char last_sender[64];            /* its participant */
    uint8_t *last_skmsg;             /* malloc'd ciphertext */
    size_t last_len;                 /* bytes in last_skmsg */
} group;

/* A group message: who sent it, for routing receipts; a phone's content for its retries. */
typedef struct group_msg {
    char id[SIM_ID_MAX + 1]; /* "" for a free slot */
    group *g;
    sim_account *from;
    uint16_t from_dev;
    uint8_t *plain;   /* a phone's message (Message bytes), malloc'd; NULL for a companion's */
    size_t plain_len; /* bytes in plain */
} group_msg;

struct sim_groups {
    group **v;        /* malloc'd */
    size_t n, cap;    /* used / allocated */
    group_msg *ring;  /* GROUP_RING entries, malloc'd */
    size_t ring_next; /* next slot */
};

static void glog(sim *s, const char *fmt, ...)
{
    if (!s->verbose) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "group: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static int set_err(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

static struct sim_groups *groups_of(sim *s)
{
    if (!s->groups) {
        s->groups = calloc(1, sizeof(*s->groups));
        if (s->groups) s->groups->ring = calloc(GROUP_RING, sizeof(group_msg));
        if (s->groups && !s->groups->ring) {
            free(s->groups);
            s->groups = NULL;
        }
    }
    return s->groups;
}

static void group_free(group *g)
{
    free(g->description);
    free(g->members);
    free(g->notes);
    free(g->last_skmsg);
    free(g);
}

void sim_groups_free(sim *s)
{
    if (!s->groups) return;
    for (size_t i = 0; i < s->groups->n; i++)
        group_free(s->groups->v[i]);
    free(s->groups->v);
    for (size_t i = 0; i < GROUP_RING; i++)
        free(s->groups->ring[i].plain);
    free(s->groups->ring);
    free(s->groups);
    s->groups = NULL;
}

bool sim_group_is_jid(const char *jid)
{
    wa_jid j;
    return jid && wa_jid_parse_cstr(jid, &j) == WA_OK && strcmp(j.server, WA_SERVER_GROUP) == 0 &&
           j.user[0];
}

static group *find_group(sim *s, const char *jid)
{
    wa_jid j;
    if (!s->groups || !jid || wa_jid_parse_cstr(jid, &j) != WA_OK ||
        strcmp(j.server, WA_SERVER_GROUP) != 0)
        return NULL;
    for (size_t i = 0; i < s->groups->n; i++)
        if (strcmp(s->groups->v[i]->id, j.user) == 0) return s->groups->v[i];
    return NULL;
}

static member *member_of(group *g, const sim_account *acct)
{
    for (size_t i = 0; i < g->nmembers; i++)
        if (g->members[i].acct == acct) return &g->members[i];
    return NULL;
}

static bool is_admin(group *g, const sim_account *acct)
{
    member *m = member_of(g, acct);
    return m && m->admin;
}

static int add_member(group *g, sim_account *acct, bool admin, bool superadmin)
{
    if (g->nmembers == GROUP_MAX_MEMBERS) return -1;
    if (g->nmembers == g->members_cap) {
        size_t cap = g->members_cap ? g->members_cap * 2 : 8;
        member *grown = realloc(g->members, cap * sizeof(*grown));
        if (!grown) return -1;
        g->members = grown;
        g->members_cap = cap;
    }
    g->members[g->nmembers++] = (member){.acct = acct, .admin = admin, .superadmin = superadmin};
    return 0;
}

static void drop_member(group *g, const sim_account *acct)
{
    for (size_t i = 0; i < g->nmembers; i++) {
        if (g->members[i].acct != acct) continue;
        memmove(&g->members[i], &g->members[i + 1], (g->nmembers - i - 1) * sizeof(member));
        g->nmembers--;
        return;
    }
}

/* The account a request names: digits (a phone number, '+' allowed) or a PN / LID JID. */
static sim_account *account_named(sim *s, const char *who)
{
    if (!who || !*who) return NULL;
    const char *digits = who[0] == '+' ? who + 1 : who;
    if (!strchr(digits, '@')) return sim_account_find(s, digits);
    wa_jid j;
    return wa_jid_parse_cstr(who, &j) == WA_OK ? sim_account_of_jid(s, &j, NULL) : NULL;
}

static void random_digits(sim *s, char *out, size_t n)
{
    uint8_t r[32];
    wa_random(s->crypto, r, n < sizeof(r) ? n : sizeof(r));
    for (size_t i = 0; i < n && i < sizeof(r); i++)
        out[i] = (char)('0' + r[i] % 10);
    out[n < sizeof(r) ? n : sizeof(r)] = '\0';
}

static void new_invite(sim *s, group *g)
{
    uint8_t r[16];
    char b64[WB_BASE64_LEN(16)];
    wa_random(s->crypto, r, sizeof(r));
    wb_base64_encode(r, sizeof(r), b64, false);
    for (char *p = b64; *p; p++)
        if (*p == '+' || *p == '/' || *p == '=') *p = 'x';
    snprintf(g->invite, sizeof(g->invite), "%.22s", b64);
}

static void message_id(sim *s, char *out, size_t cap)
{
    uint8_t r[8];
    char hex[17];
    wa_random(s->crypto, r, sizeof(r));
    wb_hex_encode(r, sizeof(r), hex);
    for (char *h = hex; *h; h++)
        if (*h >= 'a' && *h <= 'f') *h = (char)(*h - 'a' + 'A');
    snprintf(out, cap, "3EB0%s", hex);
}

static group *group_new(sim *s, sim_account *creator, const char *subject)
{
    struct sim_groups *gs = groups_of(s);
    if (!gs) return NULL;
    if (gs->n == gs->cap) {
        size_t cap = gs->cap ? gs->cap * 2 : 8;
        group **grown = realloc(gs->v, cap * sizeof(*grown));
        if (!grown) return NULL;
        gs->v = grown;
        gs->cap = cap;
    }
    group *g = calloc(1, sizeof(*g));
    if (!g) return NULL;
    do {
        char digits[13];
        random_digits(s, digits, 12);
        snprintf(g->id, sizeof(g->id), "120363%s", digits);
        snprintf(g->jid, sizeof(g->jid), "%s@%s", g->id, WA_SERVER_GROUP);
    } while (find_group(s, g->jid));
    snprintf(g->subject, sizeof(g->subject), "%s", subject);
    g->subject_owner = g->creator = creator;
    g->subject_time = g->creation = sim_now(s);
    new_invite(s, g);
    if (add_member(g, creator, true, true) != 0) {
        group_free(g);
        return NULL;
    }
    gs->v[gs->n++] = g;
    return g;
}

/* --- the phones' sender-key memory --- */

static bool noted(const group *g, const sim_account *sender, const sim_account *acct, uint16_t dev)
{
    for (size_t i = 0; i < g->nnotes; i++)
        if (g->notes[i].sender == sender && g->notes[i].acct == acct && g->notes[i].device == dev)
            return true;
    return false;
}

static void note(group *g, sim_account *sender, sim_account *acct, uint16_t dev)
{
    if (noted(g, sender, acct, dev)) return;
    if (g->nnotes == g->notes_cap) {
        size_t cap = g->notes_cap ? g->notes_cap * 2 : 16;
        skdm_note *grown = realloc(g->notes, cap * sizeof(*grown));
        if (!grown) return;
        g->notes = grown;
        g->notes_cap = cap;
    }
    g->notes[g->nnotes++] = (skdm_note){.sender = sender, .acct = acct, .device = dev};
}

void sim_groups_forget_phone(sim *s, const sim_account *acct)
{
    for (size_t k = 0; s->groups && k < s->groups->n; k++) {
        group *g = s->groups->v[k];
        size_t kept = 0;
        for (size_t i = 0; i < g->nnotes; i++)
            if (g->notes[i].sender != acct && !(g->notes[i].acct == acct && !g->notes[i].device))
                g->notes[kept++] = g->notes[i];
        g->nnotes = kept;
    }
}

/* A member left or was removed: every phone in the group forgets its own sender key (the next
 * text starts a new chain, distributed to the remaining devices only). */
static void rotate_phone_keys(sim *s, group *g)
{
    for (size_t i = 0; i < g->nmembers; i++) {
        sim_account *acct = g->members[i].acct;
        if (!acct->primary) continue;
        wa_senderkey *sk = wa_senderkey_new(s->crypto, &acct->primary->store, NULL);
        char name[40];
        sim_signal_name(acct, name, sizeof(name));
        if (sk) wa_senderkey_forget(sk, g->jid, name, 0);
        wa_senderkey_free(sk);
    }
    g->nnotes = 0;
    glog(s, "%s: membership shrank, the phones' sender keys are rotated\n", g->jid);
}

/* --- nodes --- */

static void lid_jid(const sim_account *acct, uint16_t dev, char *out, size_t cap)
{
    sim_device_jid(acct, dev, true, out, cap);
}

static void pn_jid(const sim_account *acct, char *out, size_t cap)
{
    sim_device_jid(acct, 0, false, out, cap);
}

static void set_time(sim *s, wb_arena *a, wa_node *n, const char *key, uint64_t t)
{
    char v[24];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)(t ? t : sim_now(s)));
    wa_node_set_attr(a, n, key, v);
}

static wa_node *participant_node(wb_arena *a, const sim_account *acct, const char *type)
{
    char lid[64], pn[64];
    lid_jid(acct, 0, lid, sizeof(lid));
    pn_jid(acct, pn, sizeof(pn));
    wa_node *p = wa_node_new(a, "participant");
    wa_node_set_attr(a, p, "jid", lid);
    wa_node_set_attr(a, p, "phone_number", pn);
    if (type) wa_node_set_attr(a, p, "type", type);
    return p;
}

/* <group id subject s_t s_o creation creator size addressing_mode><participant/>...
 * <description id participant t><body/></description>? <announcement/>? <locked/>?</group> */
static wa_node *group_node(sim *s, wb_arena *a, const group *g)
{
    char jid[64], pn[64], size[16];
    wa_node *n = wa_node_new(a, "group");
    wa_node_set_attr(a, n, "id", g->id);
    wa_node_set_attr(a, n, "subject", g->subject);
    set_time(s, a, n, "s_t", g->subject_time);
    lid_jid(g->subject_owner, 0, jid, sizeof(jid));
    wa_node_set_attr(a, n, "s_o", jid);
    set_time(s, a, n, "creation", g->creation);
    lid_jid(g->creator, 0, jid, sizeof(jid));
    wa_node_set_attr(a, n, "creator", jid);
    pn_jid(g->creator, pn, sizeof(pn));
    wa_node_set_attr(a, n, "creator_pn", pn);
    snprintf(size, sizeof(size), "%zu", g->nmembers);
    wa_node_set_attr(a, n, "size", size);
    wa_node_set_attr(a, n, "addressing_mode", "lid");
    for (size_t i = 0; i < g->nmembers; i++) {
        const member *m = &g->members[i];
        wa_node_add_child(a, n,
                          participant_node(a, m->acct,
                                           m->superadmin ? "superadmin"
                                           : m->admin    ? "admin"
                                                         : NULL));
    }
    if (g->description) {
        wa_node *d = wa_node_new(a, "description");
        wa_node_set_attr(a, d, "id", g->desc_id);
        lid_jid(g->desc_owner, 0, jid, sizeof(jid));
        wa_node_set_attr(a, d, "participant", jid);
        set_time(s, a, d, "t", g->desc_time);
        wa_node *body = wa_node_new(a, "body");
        wa_node_set_bytes(a, body, g->description, strlen(g->description));
        wa_node_add_child(a, d, body);
        wa_node_add_child(a, n, d);
    }
    if (g->announce) wa_node_add_child(a, n, wa_node_new(a, "announcement"));
    if (g->locked) wa_node_add_child(a, n, wa_node_new(a, "locked"));
    return n;
}

static void iq_answer(sim *s, sim_conn *c, wb_arena *a, const char *id, const char *from,
                      wa_node *child)
{
    wa_node *iq = wa_node_new(a, "iq");
    wa_node_set_attr(a, iq, "from", from);
    wa_node_set_attr(a, iq, "type", "result");
    wa_node_set_attr(a, iq, "id", id);
    if (child) wa_node_add_child(a, iq, child);
    sim_send_node(s, c, iq);
}

static void iq_error(sim *s, sim_conn *c, wb_arena *a, const char *id, const char *from, int code)
{
    const char *text = code == 400   ? "bad-request"
                       : code == 401 ? "not-authorized"
                       : code == 403 ? "forbidden"
                       : code == 404 ? "item-not-found"
                       : code == 406 ? "not-acceptable"
                       : code == 409 ? "conflict"
                                     : "internal-server-error";
    char v[8];
    snprintf(v, sizeof(v), "%d", code);
    wa_node *e = wa_node_new(a, "error");
    wa_node_set_attr(a, e, "code", v);
    wa_node_set_attr(a, e, "text", text);
    wa_node *iq = wa_node_new(a, "iq");
    wa_node_set_attr(a, iq, "from", from);
    wa_node_set_attr(a, iq, "type", "error");
    wa_node_set_attr(a, iq, "id", id);
    wa_node_add_child(a, iq, e);
    sim_send_node(s, c, iq);
}

/* Sends <notification type="w:gp2" from=group participant=author ...>change</notification> to
 * every device of the members and of `extra` (the removed), the author's included (a creator
 * matches the create notification's key with its request). */
static void notify(sim *s, wb_arena *a, group *g, sim_account *author, wa_node *change,
                   sim_account *const *extra, size_t nextra)
{
    char id[24], jid[64], pn[64];
    snprintf(id, sizeof(id), "gp%u", s->next_id++);
    wa_node *n = wa_node_new(a, "notification");
    wa_node_set_attr(a, n, "from", g->jid);
    wa_node_set_attr(a, n, "type", "w:gp2");
    wa_node_set_attr(a, n, "id", id);
    if (author) {
        lid_jid(author, 0, jid, sizeof(jid));
        pn_jid(author, pn, sizeof(pn));
        wa_node_set_attr(a, n, "participant", jid);
        wa_node_set_attr(a, n, "participant_pn", pn);
        wa_node_set_attr(a, n, "notify", author->name);
    }
    set_time(s, a, n, "t", 0);
    wa_node_add_child(a, n, change);
    for (size_t i = 0; i < g->nmembers + nextra; i++) {
        sim_account *acct = i < g->nmembers ? g->members[i].acct : extra[i - g->nmembers];
        for (int d = 0; d < acct->ndevices; d++) {
            sim_device *dev = &acct->devices[d];
            if (!dev->present) continue;
            sim_deliver(s, acct, dev, n, false, id);
        }
    }
}

/* --- membership changes (IQs and admin) --- */

/* Applies `change` (add, remove, promote, demote) by author to the named accounts; answers per
 * participant into result (a node, may be NULL) and json (may be NULL); notifies. */
static void change_members(sim *s, wb_arena *a, group *g, sim_account *author, const char *change,
                           const char *const *who, size_t n, wa_node *result, cJSON *json)
{
    bool add = strcmp(change, "add") == 0, remove = strcmp(change, "remove") == 0;
    bool promote = strcmp(change, "promote") == 0;
    wa_node *note_change = wa_node_new(a, change);
    sim_account *removed[64];
    size_t nremoved = 0, done = 0;
    for (size_t i = 0; i < n; i++) {
        sim_account *acct = account_named(s, who[i]);
        member *m = acct ? member_of(g, acct) : NULL;
        int error = 0;
        if (!acct)
            error = 404;
        else if (add && m)
            error = 409;
        else if (!add && !m)
            error = 404;
        else if (add && add_member(g, acct, false, false) != 0)
            error = 500;
        else if (remove && nremoved == sizeof(removed) / sizeof(removed[0]))
            error = 500;
        if (!error && remove) {
            drop_member(g, acct);
            removed[nremoved++] = acct;
        } else if (!error && !add) {
            m->admin = promote || m->superadmin;
        }
        if (result) {
            wa_node *p = wa_node_new(a, "participant");
            wa_node_set_attr(a, p, "jid", who[i]);
            if (error) {
                char e[8];
                snprintf(e, sizeof(e), "%d", error);
                wa_node_set_attr(a, p, "error", e);
            } else if (promote) {
                wa_node_set_attr(a, p, "type", "admin");
            }
            wa_node_add_child(a, result, p);
        }
        if (json) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "jid", who[i]);
            cJSON_AddNumberToObject(r, "error", error);
            cJSON_AddItemToArray(json, r);
        }
        if (!error) {
            wa_node_add_child(a, note_change, participant_node(a, acct, NULL));
            done++;
        }
    }
    if (!done) return;
    if (nremoved) rotate_phone_keys(s, g);
    notify(s, a, g, author, note_change, removed, nremoved);
    glog(s, "%s: %s of %zu by %s\n", g->jid, change, done, author ? author->phone : "server");
}

static void leave(sim *s, wb_arena *a, group *g, sim_account *acct)
{
    drop_member(g, acct);
    wa_node *rm = wa_node_new(a, "remove");
    wa_node_add_child(a, rm, participant_node(a, acct, NULL));
    rotate_phone_keys(s, g);
    sim_account *extra[1] = {acct};
    notify(s, a, g, acct, rm, extra, 1);
    /* the creator left: another member becomes superadmin, as WhatsApp keeps an admin */
    bool has_admin = false;
    for (size_t i = 0; i < g->nmembers; i++)
        has_admin |= g->members[i].admin;
    if (!has_admin && g->nmembers) g->members[0].admin = true;
}

static group *create(sim *s, wb_arena *a, sim_account *creator, const char *subject,
                     const char *const *who, size_t n, const char *key)
{
    group *g = group_new(s, creator, subject);
    if (!g) return NULL;
    for (size_t i = 0; i < n; i++) {
        sim_account *acct = account_named(s, who[i]);
        if (acct && !member_of(g, acct)) add_member(g, acct, false, false);
    }
    wa_node *c = wa_node_new(a, "create");
    wa_node_set_attr(a, c, "reason", "create");
    if (key) wa_node_set_attr(a, c, "key", key);
    wa_node_add_child(a, c, group_node(s, a, g));
    notify(s, a, g, creator, c, NULL, 0);
    glog(s, "%s created by %s with %zu members\n", g->jid, creator->phone, g->nmembers);
    return g;
}

/* --- IQs --- */

static size_t participant_jids(const wa_node *n, const char **out, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; n && n->kind == WA_CONTENT_LIST && i < n->nchildren && k < max; i++) {
        const char *jid = wa_node_attr(n->children[i], "jid");
        if (strcmp(n->children[i]->tag, "participant") == 0 && jid) out[k++] = jid;
    }
    return k;
}

static char *content_text(const wa_node *n, size_t max)
{
    if (!n || (n->kind != WA_CONTENT_BYTES && n->kind != WA_CONTENT_STRING)) return NULL;
    size_t len = n->data_len < max ? n->data_len : max;
    return strndup((const char *)n->data, len);
}

/* An IQ to "@g.us": create, leave, participating, join by invite code. */
static void server_iq(sim *s, sim_conn *c, wb_arena *a, const char *id, const char *to,
                      const char *type, wa_node *first)
{
    sim_account *me = c->account;
    bool set = type && strcmp(type, "set") == 0;
    const char *what = first ? first->tag : "";
    if (set && strcmp(what, "create") == 0) {
        const char *subject = wa_node_attr(first, "subject");
        if (!subject || !*subject || strlen(subject) >= GROUP_SUBJECT_MAX) {
            iq_error(s, c, a, id, to, 406);
            return;
        }
        const char *who[GROUP_MAX_MEMBERS];
        size_t n = participant_jids(first, who, GROUP_MAX_MEMBERS);
        group *g = create(s, a, me, subject, who, n, wa_node_attr(first, "key"));
        if (!g) {
            iq_error(s, c, a, id, to, 500);
            return;
        }
        iq_answer(s, c, a, id, to, group_node(s, a, g));
    } else if (set && strcmp(what, "leave") == 0) {
        wa_node *res = wa_node_new(a, "leave");
        for (size_t i = 0; first->kind == WA_CONTENT_LIST && i < first->nchildren; i++) {
            const char *gid = wa_node_attr(first->children[i], "id");
            group *g = gid ? find_group(s, gid) : NULL;
            if (!g || !member_of(g, me)) continue;
            leave(s, a, g, me);
            wa_node *gn = wa_node_new(a, "group");
            wa_node_set_attr(a, gn, "id", g->jid);
            wa_node_add_child(a, res, gn);
        }
        iq_answer(s, c, a, id, to, res);
    } else if (strcmp(what, "participating") == 0) {
        wa_node *list = wa_node_new(a, "groups");
        wa_node_set_empty_list(list);
        for (size_t i = 0; s->groups && i < s->groups->n; i++)
            if (member_of(s->groups->v[i], me))
                wa_node_add_child(a, list, group_node(s, a, s->groups->v[i]));
        iq_answer(s, c, a, id, to, list);
    } else if (strcmp(what, "invite") == 0 && wa_node_attr(first, "code")) {
        const char *code = wa_node_attr(first, "code");
        group *g = NULL;
        for (size_t i = 0; s->groups && i < s->groups->n && !g; i++)
            if (strcmp(s->groups->v[i]->invite, code) == 0) g = s->groups->v[i];
        if (!g) {
            iq_error(s, c, a, id, to, 406);
            return;
        }
        if (set && !member_of(g, me)) {
            const char *who[1] = {me->phone};
            change_members(s, a, g, me, "add", who, 1, NULL, NULL);
        }
        if (set) {
            wa_node *gn = wa_node_new(a, "group");
            wa_node_set_attr(a, gn, "jid", g->jid);
            iq_answer(s, c, a, id, to, gn);
        } else {
            iq_answer(s, c, a, id, to, group_node(s, a, g));
        }
    } else {
        iq_answer(s, c, a, id, to, NULL);
    }
}

void sim_group_on_iq(sim *s, sim_conn *c, wb_arena *a, wa_node *iq)
{
    const char *id = wa_node_attr(iq, "id"), *type = wa_node_attr(iq, "type");
    const char *to = wa_node_attr(iq, "to");
    if (!id || c->device_index < 0) return;
    if (!to) to = WA_SERVER_GROUP;
    wa_node *first = iq->kind == WA_CONTENT_LIST && iq->nchildren ? iq->children[0] : NULL;
    const char *what = first ? first->tag : "";
    if (strcmp(to, "@g.us") == 0 || strcmp(to, WA_SERVER_GROUP) == 0) {
        server_iq(s, c, a, id, to, type, first);
        return;
    }
    group *g = find_group(s, to);
    sim_account *me = c->account;
    bool set = type && strcmp(type, "set") == 0;
    if (!g) {
        iq_error(s, c, a, id, to, 404);
        return;
    }
    if (!member_of(g, me)) {
        iq_error(s, c, a, id, to, 403);
        return;
    }
    bool admin = is_admin(g, me);
    if (strcmp(what, "query") == 0) {
        iq_answer(s, c, a, id, to, group_node(s, a, g));
    } else if (set && (strcmp(what, "add") == 0 || strcmp(what, "remove") == 0 ||
                       strcmp(what, "promote") == 0 || strcmp(what, "demote") == 0)) {
        if (!admin) {
            iq_error(s, c, a, id, to, 401);
            return;
        }
        if (s->group_fault == SIM_GROUP_FAULT_LOST) {
            glog(s, "fault: %s call %s to %s lost", what, id, to);
            return;
        }
        const char *who[GROUP_MAX_MEMBERS];
        size_t n = participant_jids(first, who, GROUP_MAX_MEMBERS);
        wa_node *res = wa_node_new(a, what);
        change_members(s, a, g, me, what, who, n, res, NULL);
        if (s->group_fault == SIM_GROUP_FAULT_UNANSWERED) {
            glog(s, "fault: %s call %s to %s made, not answered", what, id, to);
            return;
        }
        iq_answer(s, c, a, id, to, res);
    } else if (set && strcmp(what, "subject") == 0) {
        char *subject = content_text(first, GROUP_SUBJECT_MAX);
        if (!subject || !*subject || (g->locked && !admin)) {
            iq_error(s, c, a, id, to, subject && *subject ? 401 : 406);
            free(subject);
            return;
        }
        snprintf(g->subject, sizeof(g->subject), "%s", subject);
        free(subject);
        g->subject_owner = me;
        g->subject_time = sim_now(s);
        wa_node *ch = wa_node_new(a, "subject");
        char owner[64];
        lid_jid(me, 0, owner, sizeof(owner));
        wa_node_set_attr(a, ch, "subject", g->subject);
        wa_node_set_attr(a, ch, "s_o", owner);
        set_time(s, a, ch, "s_t", g->subject_time);
        notify(s, a, g, me, ch, NULL, 0);
        iq_answer(s, c, a, id, to, NULL);
    } else if (set && strcmp(what, "description") == 0) {
        const char *new_id = wa_node_attr(first, "id"), *prev = wa_node_attr(first, "prev");
        const char *del = wa_node_attr(first, "delete");
        if (g->locked && !admin) {
            iq_error(s, c, a, id, to, 401);
            return;
        }
        if (!new_id || strlen(new_id) > SIM_ID_MAX) {
            iq_error(s, c, a, id, to, 400);
            return;
        }
        if (strcmp(prev ? prev : "", g->desc_id) != 0) {
            iq_error(s, c, a, id, to, 409); /* somebody changed it meanwhile */
            return;
        }
        char *text = del && strcmp(del, "true") == 0
                         ? NULL
                         : content_text(wa_node_child(first, "body"), GROUP_DESC_MAX);
        free(g->description);
        g->description = text && *text ? text : NULL;
        if (text && !*text) free(text);
        snprintf(g->desc_id, sizeof(g->desc_id), "%s", new_id);
        g->desc_owner = me;
        g->desc_time = sim_now(s);
        wa_node *ch = wa_node_new(a, "description");
        wa_node_set_attr(a, ch, "id", g->desc_id);
        if (g->description) {
            wa_node *body = wa_node_new(a, "body");
            wa_node_set_bytes(a, body, g->description, strlen(g->description));
            wa_node_add_child(a, ch, body);
        } else {
            wa_node_add_child(a, ch, wa_node_new(a, "delete"));
        }
        notify(s, a, g, me, ch, NULL, 0);
        iq_answer(s, c, a, id, to, NULL);
    } else if (set && (strcmp(what, "announcement") == 0 || strcmp(what, "not_announcement") == 0 ||
                       strcmp(what, "locked") == 0 || strcmp(what, "unlocked") == 0)) {
        if (!admin) {
            iq_error(s, c, a, id, to, 401);
            return;
        }
        if (strstr(what, "announcement"))
            g->announce = strcmp(what, "announcement") == 0;
        else
            g->locked = strcmp(what, "locked") == 0;
        notify(s, a, g, me, wa_node_new(a, what), NULL, 0);
        iq_answer(s, c, a, id, to, NULL);
    } else if (strcmp(what, "invite") == 0) {
        if (!admin) {
            iq_error(s, c, a, id, to, 401);
            return;
        }
        if (set) {
            new_invite(s, g);
            wa_node *ch = wa_node_new(a, "invite");
            wa_node_set_attr(a, ch, "code", g->invite);
            notify(s, a, g, me, ch, NULL, 0);
        }
        wa_node *inv = wa_node_new(a, "invite");
        wa_node_set_attr(a, inv, "code", g->invite);
        iq_answer(s, c, a, id, to, inv);
    } else {
        iq_answer(s, c, a, id, to, NULL);
    }
}

/* --- messages --- */

/* Remembers who sent message id to g; a phone's content (plain, may be NULL) too. */
static void ring_note(sim *s, group *g, sim_account *from, uint16_t dev, const char *id,
                      const wb_buf *plain)
{
    struct sim_groups *gs = groups_of(s);
    if (!gs) return;
    group_msg *e = &gs->ring[gs->ring_next];
    gs->ring_next = (gs->ring_next + 1) % GROUP_RING;
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->g = g;
    e->from = from;
    e->from_dev = dev;
    free(e->plain);
    e->plain = plain && plain->len ? malloc(plain->len) : NULL;
    e->plain_len = e->plain ? plain->len : 0;
    if (e->plain) memcpy(e->plain, plain->data, plain->len);
}

static const group_msg *ring_find(sim *s, const group *g, const char *id)
{
    for (size_t k = 0; s->groups && k < GROUP_RING; k++) {
        const group_msg *e =
            &s->groups->ring[(s->groups->ring_next + GROUP_RING - 1 - k) % GROUP_RING];
        if (e->g == g && strcmp(e->id, id) == 0) return e;
    }
    return NULL;
}

static void remember_last(group *g, const char *id, const char *sender, const wa_node *skmsg)
{
    uint8_t *copy = skmsg ? malloc(skmsg->data_len ? skmsg->data_len : 1) : NULL;
    if (!copy) return;
    memcpy(copy, skmsg->data, skmsg->data_len);
    free(g->last_skmsg);
    g->last_skmsg = copy;
    g->last_len = skmsg->data_len;
    snprintf(g->last_id, sizeof(g->last_id), "%s", id);
    snprintf(g->last_sender, sizeof(g->last_sender), "%s", sender);
}

/* <message from=group participant=sender addressing_mode participant_pn id t type notify> */
static wa_node *group_message_node(sim *s, wb_arena *a, const group *g, const sim_account *from,
                                   uint16_t from_dev, const char *id, const char *type)
{
    char jid[64], pn[64];
    lid_jid(from, from_dev, jid, sizeof(jid));
    pn_jid(from, pn, sizeof(pn));
    wa_node *n = wa_node_new(a, "message");
    wa_node_set_attr(a, n, "from", g->jid);
    wa_node_set_attr(a, n, "participant", jid);
    wa_node_set_attr(a, n, "participant_pn", pn);
    wa_node_set_attr(a, n, "addressing_mode", "lid");
    wa_node_set_attr(a, n, "id", id);
    set_time(s, a, n, "t", 0);
    wa_node_set_attr(a, n, "type", type ? type : "text");
    wa_node_set_attr(a, n, "notify", from->name);
    return n;
}

/* A group message for the phone of acct from device from_dev of `from`: the pairwise parts carry
 * the sender's SKDM, the skmsg the message. Records what it read; confirms delivery. */
static void phone_receive(sim *s, wb_arena *a, group *g, sim_account *acct, sim_account *from,
                          uint16_t from_dev, const char *id, wa_node *const *encs, size_t n)
{
    sim_phone *p = sim_phone_of(s, acct);
    wa_senderkey *sk = p ? wa_senderkey_new(s->crypto, &p->store, NULL) : NULL;
    if (!sk) return;
    char name[40], sender[64];
    sim_signal_name(from, name, sizeof(name));
    lid_jid(from, from_dev, sender, sizeof(sender));
    bool own = from == acct, read = false;
    wb_buf plain;
    wb_buf_init(&plain);
    for (size_t i = 0; i < n; i++) {
        const char *type = wa_node_attr(encs[i], "type");
        if (!type || encs[i]->kind != WA_CONTENT_BYTES) continue;
        bool skmsg = strcmp(type, "skmsg") == 0;
        int rc;
        if (skmsg)
            rc = wa_senderkey_decrypt(sk, g->jid, name, from_dev, encs[i]->data, encs[i]->data_len,
                                      &plain);
        else if (strcmp(type, "pkmsg") == 0 || strcmp(type, "msg") == 0)
            rc = wa_signal_decrypt(p->signal, name, from_dev,
                                   strcmp(type, "pkmsg") == 0 ? WA_SIGNAL_PKMSG : WA_SIGNAL_MSG,
                                   encs[i]->data, encs[i]->data_len, &plain);
        else
            continue;
        const uint8_t *skdm, *text;
        size_t skdm_len, text_len;
        if (rc == WA_OK && !skmsg &&
            wa_senderkey_find(plain.data, plain.len, NULL, NULL, &skdm, &skdm_len) == WA_OK)
            rc = wa_senderkey_process(sk, g->jid, name, from_dev, skdm, skdm_len);
        if (rc == WA_OK &&
            wa_message_get_text(plain.data, plain.len, &text, &text_len, NULL, NULL) == WA_OK) {
            sim_phone_msg *m =
                sim_phone_record(s, acct, sender, g->jid, id, text, text_len, own, false);
            if (m) snprintf(m->kind, sizeof(m->kind), "text");
            read = true;
        } else if (rc != WA_OK) {
            char why[96];
            snprintf(why, sizeof(why), "cannot read the %s: %s", type, wa_strerror(rc));
            sim_phone_record(s, acct, sender, g->jid, id, (const uint8_t *)why, strlen(why), own,
                             true);
        }
    }
    wb_buf_free(&plain);
    wa_senderkey_free(sk);
    sim_device *to = from_dev ? sim_companion(from, from_dev) : NULL;
    if (read && !own && to) { /* the phone confirms delivery to the sending device */
        char jid[64];
        lid_jid(acct, 0, jid, sizeof(jid));
        wa_node *r = wa_node_new(a, "receipt");
        wa_node_set_attr(a, r, "from", g->jid);
        wa_node_set_attr(a, r, "participant", jid);
        wa_node_set_attr(a, r, "id", id);
        set_time(s, a, r, "t", 0);
        sim_deliver(s, from, to, r, true, id);
    }
}

typedef struct target {
    sim_account *acct;
    uint16_t device;
    wa_node *to; /* its <to> in <participants> */
} target;

static void ack(sim *s, sim_conn *c, wb_arena *a, const char *id, const char *from, int error,
                const group *g)
{
    wa_node *n = wa_node_new(a, "ack");
    wa_node_set_attr(a, n, "class", "message");
    wa_node_set_attr(a, n, "id", id);
    wa_node_set_attr(a, n, "from", from);
    set_time(s, a, n, "t", 0);
    sim_account **accts = g && g->nmembers ? calloc(g->nmembers, sizeof(*accts)) : NULL;
    if (accts) { /* a fan-out: the hash of every member device the server knows */
        char phash[16];
        for (size_t i = 0; i < g->nmembers; i++)
            accts[i] = g->members[i].acct;
        sim_phash(accts, g->nmembers, true, phash);
        if (phash[0]) wa_node_set_attr(a, n, "phash", phash);
        free(accts);
    }
    if (error) {
        char e[8];
        snprintf(e, sizeof(e), "%d", error);
        wa_node_set_attr(a, n, "error", e);
    }
    sim_send_node(s, c, n);
}

void sim_group_on_message(sim *s, sim_conn *c, wb_arena *a, wa_node *msg)
{
    const char *id = wa_node_attr(msg, "id"), *to = wa_node_attr(msg, "to");
    sim_account *me = c->account;
    if (!me || c->device_index < 0 || !id || !to) return;
    uint16_t my = me->devices[c->device_index].id;
    group *g = find_group(s, to);
    member *m = g ? member_of(g, me) : NULL;
    if (!g || !m || (g->announce && !m->admin)) {
        glog(s, "message %s to %s refused (%s)\n", id, to,
             !g   ? "no such group"
             : !m ? "not a member"
                  : "announcement group");
        ack(s, c, a, id, to, !g ? 404 : 403, NULL);
        return;
    }
    /* with participant=device: a resend (retry) for that device only, <enc> at the root */
    wa_jid only;
    memset(&only, 0, sizeof(only));
    sim_account *only_acct = NULL;
    const char *participant = wa_node_attr(msg, "participant");
    if (participant && (wa_jid_parse_cstr(participant, &only) != WA_OK ||
                        !(only_acct = sim_account_of_jid(s, &only, NULL)))) {
        ack(s, c, a, id, to, 400, NULL);
        return;
    }
    wa_node *skmsg = NULL, *root[GROUP_MAX_ENCS];
    size_t nroot = 0;
    for (size_t i = 0; msg->kind == WA_CONTENT_LIST && i < msg->nchildren; i++) {
        wa_node *e = msg->children[i];
        const char *type = wa_node_attr(e, "type");
        if (strcmp(e->tag, "enc") != 0 || !type || e->kind != WA_CONTENT_BYTES) continue;
        if (strcmp(type, "skmsg") == 0)
            skmsg = e;
        else if (nroot < GROUP_MAX_ENCS)
            root[nroot++] = e;
    }
    /* the devices <participants> names */
    wa_node *parts = wa_node_child(msg, "participants");
    size_t nparts = parts && parts->kind == WA_CONTENT_LIST ? parts->nchildren : 0;
    target *targets = nparts ? calloc(nparts, sizeof(*targets)) : NULL;
    size_t ntargets = 0;
    for (size_t i = 0; targets && i < nparts; i++) {
        wa_jid j;
        wa_node *t = parts->children[i];
        sim_account *acct;
        if (strcmp(t->tag, "to") != 0 || wa_node_attr_jid(t, "jid", &j) != WA_OK ||
            !(acct = sim_account_of_jid(s, &j, NULL)))
            continue;
        targets[ntargets++] = (target){.acct = acct, .device = j.device, .to = t};
    }
    char sender[64];
    lid_jid(me, my, sender, sizeof(sender));
    if (skmsg) remember_last(g, id, sender, skmsg);
    ring_note(s, g, me, my, id, NULL);
    wa_node *di = wa_node_child(msg, "device-identity");
    const char *type = wa_node_attr(msg, "type");
    size_t reached = 0;
    for (size_t k = 0; k < g->nmembers; k++) {
        sim_account *acct = g->members[k].acct;
        for (int d = -1; d < acct->ndevices; d++) {
            sim_device *dev = d >= 0 ? &acct->devices[d] : NULL;
            uint16_t dev_id = dev ? dev->id : 0;
            if ((dev && !dev->present) || (acct == me && dev_id == my)) continue;
            if (only_acct && (acct != only_acct || dev_id != only.device)) continue;
            wa_node *encs[GROUP_MAX_ENCS + 1];
            size_t n = 0;
            if (only_acct) {
                for (size_t i = 0; i < nroot; i++)
                    encs[n++] = root[i];
            }
            for (size_t t = 0; t < ntargets && !only_acct; t++) {
                if (targets[t].acct != acct || targets[t].device != dev_id) continue;
                wa_node *tn = targets[t].to;
                for (size_t i = 0; tn->kind == WA_CONTENT_LIST && i < tn->nchildren; i++)
                    if (strcmp(tn->children[i]->tag, "enc") == 0 &&
                        tn->children[i]->kind == WA_CONTENT_BYTES && n < GROUP_MAX_ENCS)
                        encs[n++] = tn->children[i];
                break;
            }
            bool pairwise = n > 0;
            if (skmsg) encs[n++] = skmsg;
            if (!n) continue;
            reached++;
            if (!dev) {
                phone_receive(s, a, g, acct, me, my, id, encs, n);
                continue;
            }
            wa_node *out = group_message_node(s, a, g, me, my, id, type);
            const char *edit = wa_node_attr(msg, "edit");
            if (edit) wa_node_set_attr(a, out, "edit", edit);
            for (size_t i = 0; i < n; i++)
                wa_node_add_child(a, out, encs[i]);
            if (pairwise && di) wa_node_add_child(a, out, di);
            sim_deliver(s, acct, dev, out, false, id);
        }
    }
    free(targets);
    glog(s, "message %s from %s to %s: %zu devices\n", id, sender, g->jid, reached);
    ack(s, c, a, id, to, 0, only_acct ? NULL : g);
}

/* The phone that sent m answers the retry receipt r of device dev of acct, as WhatsApp's phones
 * do: the content again, pairwise, with its sender key (SKDM) added so that the device reads what
 * follows, in <message from=group participant=phone><enc count/></message> to that device only. */
static void phone_resend(sim *s, wb_arena *a, group *g, const group_msg *m, sim_account *acct,
                         sim_device *dev, const wa_node *r)
{
    sim_phone *p = sim_phone_of(s, m->from);
    wa_senderkey *sk = p ? wa_senderkey_new(s->crypto, &p->store, NULL) : NULL;
    const wa_node *retry = wa_node_child(r, "retry");
    const char *count = retry ? wa_node_attr(retry, "count") : NULL;
    char name[40];
    sim_signal_name(m->from, name, sizeof(name));
    wb_buf skdm, body, ct;
    wb_buf_init(&skdm);
    wb_buf_init(&body);
    wb_buf_init(&ct);
    wb_buf_append(&body, m->plain, m->plain_len);
    wa_signal_type t;
    int rc = sk ? wa_senderkey_create(sk, g->jid, name, 0, &skdm) : WA_ERR_STATE;
    if (rc == WA_OK) rc = wa_senderkey_message(g->jid, skdm.data, skdm.len, &body);
    if (rc == WA_OK && sim_phone_retry_encrypt(s, p, acct, dev->id, r, &body, &ct, &t) != 0)
        rc = WA_ERR_STATE;
    if (rc == WA_OK) {
        wa_node *enc = wa_node_new(a, "enc");
        wa_node_set_attr(a, enc, "v", "2");
        wa_node_set_attr(a, enc, "type", t == WA_SIGNAL_PKMSG ? "pkmsg" : "msg");
        wa_node_set_attr(a, enc, "count", count ? count : "1");
        wa_node_set_bytes(a, enc, ct.data, ct.len);
        wa_node *out = group_message_node(s, a, g, m->from, 0, m->id, "text");
        wa_node_add_child(a, out, enc);
        sim_deliver(s, acct, dev, out, false, m->id);
        note(g, m->from, acct, dev->id);
    }
    glog(s, "phone %s %s %s again for %s:%u (retry %s)\n", m->from->phone,
         rc == WA_OK ? "sent" : "cannot send", m->id, acct->phone, dev->id, count ? count : "?");
    wa_senderkey_free(sk);
    wb_buf_free(&skdm);
    if (body.data) wa_wipe(body.data, body.len);
    wb_buf_free(&body);
    wb_buf_free(&ct);
}

void sim_group_on_receipt(sim *s, sim_conn *c, wb_arena *a, wa_node *r)
{
    const char *id = wa_node_attr(r, "id"), *to = wa_node_attr(r, "to");
    const char *type = wa_node_attr(r, "type");
    sim_account *me = c->account;
    if (!me || c->device_index < 0 || !id) return;
    bool delivered = !type || strcmp(type, "inactive") == 0;
    bool retry = type && strcmp(type, "retry") == 0;
    if (!(delivered || retry || strcmp(type, "read") == 0 || strcmp(type, "played") == 0)) return;
    group *g = find_group(s, to);
    if (!g) return;
    /* the sending device: remembered from the message, else the one participant names */
    const group_msg *orig = ring_find(s, g, id);
    sim_account *sender = orig ? orig->from : NULL;
    uint16_t dev = orig ? orig->from_dev : 0;
    wa_jid pj;
    if (!orig && wa_node_attr_jid(r, "participant", &pj) == WA_OK) {
        sender = sim_account_of_jid(s, &pj, NULL);
        dev = pj.device;
    }
    if (retry && orig && orig->plain && sender != me && dev == 0) {
        phone_resend(s, a, g, orig, me, &me->devices[c->device_index], r);
        return;
    }
    sim_device *td = sender && sender != me && dev ? sim_companion(sender, dev) : NULL;
    if (!td) return; /* the phones need no other receipts; our own devices neither */
    char jid[64];
    lid_jid(me, retry ? me->devices[c->device_index].id : 0, jid, sizeof(jid));
    wa_node *out = wa_node_new(a, "receipt");
    wa_node_set_attr(a, out, "from", g->jid);
    wa_node_set_attr(a, out, "participant", jid);
    wa_node_set_attr(a, out, "id", id);
    set_time(s, a, out, "t", 0);
    if (!delivered) wa_node_set_attr(a, out, "type", type);
    for (size_t i = 0; r->kind == WA_CONTENT_LIST && i < r->nchildren; i++)
        wa_node_add_child(a, out, r->children[i]); /* <list>, <retry>/<keys> of retries */
    sim_deliver(s, sender, td, out, true, id);
}

void sim_group_on_chatstate(sim *s, sim_conn *c, wb_arena *a, wa_node *n)
{
    const char *to = wa_node_attr(n, "to");
    wa_node *st = n->kind == WA_CONTENT_LIST && n->nchildren ? n->children[0] : NULL;
    sim_account *me = c->account;
    group *g = find_group(s, to);
    if (!me || !g || !member_of(g, me) || !st) return; /* no such group, or not a member */
    if (strcmp(st->tag, "composing") != 0 && strcmp(st->tag, "paused") != 0) return;
    char sender[64];
    lid_jid(me, 0, sender, sizeof(sender));
    wa_node *out = wa_node_new(a, "chatstate");
    wa_node_set_attr(a, out, "from", g->jid);
    wa_node_set_attr(a, out, "participant", sender);
    wa_node *child = wa_node_new(a, st->tag);
    const char *media = wa_node_attr(st, "media");
    if (media) wa_node_set_attr(a, child, "media", media);
    wa_node_add_child(a, out, child);
    for (sim_conn *x = s->conns; x; x = x->next)
        if (x->account && x->account != me && member_of(g, x->account) &&
            x->state == SIM_CONN_LOGGED_IN && x->device_index >= 0 && x->active)
            sim_send_node(s, x, out);
}

/* --- admin --- */

int sim_admin_group_create(sim *s, const char *phone, const char *subject,
                           const char *const *members, size_t n, char *jid_out, size_t jid_len,
                           char *err, size_t errlen)
{
    sim_account *me = sim_account_find(s, phone);
    if (!me) return set_err(err, errlen, "no such account");
    if (!subject || !*subject || strlen(subject) >= GROUP_SUBJECT_MAX)
        return set_err(err, errlen, "a subject is required");
    for (size_t i = 0; i < n; i++)
        if (!account_named(s, members[i])) return set_err(err, errlen, "a member is no account");
    wb_arena a;
    wb_arena_init(&a, 0);
    group *g = create(s, &a, me, subject, members, n, NULL);
    wb_arena_free(&a);
    if (!g) return set_err(err, errlen, "cannot create the group");
    snprintf(jid_out, jid_len, "%s", g->jid);
    return 0;
}

int sim_admin_group_setting(sim *s, const char *phone, const char *group_jid, const char *setting,
                            char *err, size_t errlen)
{
    sim_account *me = sim_account_find(s, phone);
    group *g = find_group(s, group_jid);
    if (!me || !g) return set_err(err, errlen, "no such account or group");
    if (!setting ||
        (strcmp(setting, "announcement") != 0 && strcmp(setting, "not_announcement") != 0 &&
         strcmp(setting, "locked") != 0 && strcmp(setting, "unlocked") != 0))
        return set_err(err, errlen,
                       "setting is announcement, not_announcement, locked or unlocked");
    if (!is_admin(g, me)) return set_err(err, errlen, "the phone is not an admin of the group");
    if (strstr(setting, "announcement"))
        g->announce = strcmp(setting, "announcement") == 0;
    else
        g->locked = strcmp(setting, "locked") == 0;
    wb_arena a;
    wb_arena_init(&a, 0);
    notify(s, &a, g, me, wa_node_new(&a, setting), NULL, 0);
    wb_arena_free(&a);
    return 0;
}

int sim_admin_group_participants(sim *s, const char *phone, const char *group_jid,
                                 const char *action, const char *const *members, size_t n,
                                 cJSON *results, char *err, size_t errlen)
{
    sim_account *me = sim_account_find(s, phone);
    group *g = find_group(s, group_jid);
    if (!me || !g) return set_err(err, errlen, "no such account or group");
    if (!action || (strcmp(action, "add") != 0 && strcmp(action, "remove") != 0 &&
                    strcmp(action, "promote") != 0 && strcmp(action, "demote") != 0))
        return set_err(err, errlen, "action is add, remove, promote or demote");
    if (!is_admin(g, me)) return set_err(err, errlen, "the phone is not an admin of the group");
    wb_arena a;
    wb_arena_init(&a, 0);
    change_members(s, &a, g, me, action, members, n, NULL, results);
    wb_arena_free(&a);
    return 0;
}

int sim_admin_group_send(sim *s, const char *phone, const char *group_jid, const char *text,
                         char *id_out, size_t id_len, char *err, size_t errlen)
{
    sim_account *me = sim_account_find(s, phone);
    group *g = find_group(s, group_jid);
    if (!me || !g) return set_err(err, errlen, "no such account or group");
    if (!member_of(g, me)) return set_err(err, errlen, "the phone is not a member");
    sim_phone *p = sim_phone_of(s, me);
    wa_senderkey *sk = p ? wa_senderkey_new(s->crypto, &p->store, NULL) : NULL;
    if (!sk) return set_err(err, errlen, "the phone's Signal state cannot be set up");
    char name[40], id[24], sender[64];
    sim_signal_name(me, name, sizeof(name));
    lid_jid(me, 0, sender, sizeof(sender));
    message_id(s, id, sizeof(id));
    wb_buf skdm, skdm_msg, plain, sk_ct;
    wb_buf_init(&skdm);
    wb_buf_init(&skdm_msg);
    wb_buf_init(&plain);
    wb_buf_init(&sk_ct);
    int rc = wa_senderkey_create(sk, g->jid, name, 0, &skdm);
    if (rc == WA_OK) rc = wa_senderkey_message(g->jid, skdm.data, skdm.len, &skdm_msg);
    if (rc == WA_OK) rc = wa_message_text(text, strlen(text), &plain);
    if (rc == WA_OK) rc = wa_senderkey_encrypt(sk, g->jid, name, 0, plain.data, plain.len, &sk_ct);
    wa_senderkey_free(sk);
    wb_arena a;
    wb_arena_init(&a, 0);
    size_t reached = 0;
    if (rc == WA_OK) {
        wa_node *skmsg = wa_node_new(&a, "enc");
        wa_node_set_attr(&a, skmsg, "v", "2");
        wa_node_set_attr(&a, skmsg, "type", "skmsg");
        wa_node_set_bytes(&a, skmsg, sk_ct.data, sk_ct.len);
        remember_last(g, id, sender, skmsg);
        ring_note(s, g, me, 0, id, &plain);
        for (size_t k = 0; k < g->nmembers; k++) {
            sim_account *acct = g->members[k].acct;
            for (int d = acct == me ? 0 : -1; d < acct->ndevices; d++) {
                sim_device *dev = d >= 0 ? &acct->devices[d] : NULL;
                uint16_t dev_id = dev ? dev->id : 0;
                if (dev && (!dev->present || !dev->has_keys)) continue;
                wa_node *encs[2];
                size_t n = 0;
                if (!noted(g, me, acct, dev_id)) { /* this device lacks our key: SKDM pairwise */
                    wb_buf ct;
                    wa_signal_type t;
                    wb_buf_init(&ct);
                    if (sim_phone_encrypt(s, p, acct, dev_id, &skdm_msg, &ct, &t) == 0) {
                        wa_node *e = wa_node_new(&a, "enc");
                        wa_node_set_attr(&a, e, "v", "2");
                        wa_node_set_attr(&a, e, "type", t == WA_SIGNAL_PKMSG ? "pkmsg" : "msg");
                        wa_node_set_bytes(&a, e, ct.data, ct.len);
                        encs[n++] = e;
                        note(g, me, acct, dev_id);
                    }
                    wb_buf_free(&ct);
                }
                encs[n++] = skmsg;
                reached++;
                if (!dev) {
                    phone_receive(s, &a, g, acct, me, 0, id, encs, n);
                    continue;
                }
                wa_node *out = group_message_node(s, &a, g, me, 0, id, "text");
                for (size_t i = 0; i < n; i++)
                    wa_node_add_child(&a, out, encs[i]);
                sim_deliver(s, acct, dev, out, false, id);
            }
        }
    }
    wb_arena_free(&a);
    wb_buf_free(&skdm);
    wb_buf_free(&skdm_msg);
    wb_buf_free(&plain);
    wb_buf_free(&sk_ct);
    if (rc != WA_OK) return set_err(err, errlen, wa_strerror(rc));
    glog(s, "phone %s sent %s to %s: %zu devices\n", me->phone, id, g->jid, reached);
    snprintf(id_out, id_len, "%s", id);
    return 0;
}

char *sim_admin_group_json(sim *s, const char *group_jid)
{
    group *g = find_group(s, group_jid);
    if (!g) return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "jid", g->jid);
    cJSON_AddStringToObject(o, "subject", g->subject);
    cJSON_AddStringToObject(o, "creator", g->creator->phone);
    cJSON_AddNumberToObject(o, "creation", (double)g->creation);
    if (g->description) cJSON_AddStringToObject(o, "description", g->description);
    cJSON_AddStringToObject(o, "description_id", g->desc_id);
    cJSON_AddBoolToObject(o, "announce", g->announce);
    cJSON_AddBoolToObject(o, "locked", g->locked);
    cJSON_AddStringToObject(o, "invite", g->invite);
    cJSON *members = cJSON_AddArrayToObject(o, "members");
    for (size_t i = 0; i < g->nmembers; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "phone", g->members[i].acct->phone);
        cJSON_AddStringToObject(m, "lid", g->members[i].acct->lid);
        cJSON_AddBoolToObject(m, "admin", g->members[i].admin);
        cJSON_AddBoolToObject(m, "superadmin", g->members[i].superadmin);
        cJSON_AddItemToArray(members, m);
    }
    if (g->last_skmsg) {
        cJSON *last = cJSON_AddObjectToObject(o, "last");
        char *hex = malloc(2 * g->last_len + 1);
        if (hex) {
            wb_hex_encode(g->last_skmsg, g->last_len, hex);
            cJSON_AddStringToObject(last, "skmsg", hex);
            free(hex);
        }
        cJSON_AddStringToObject(last, "id", g->last_id);
        cJSON_AddStringToObject(last, "sender", g->last_sender);
    }
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The strings of body[key] (at most max); -1 when it is not an array of strings. */
static int json_strings(const cJSON *body, const char *key, const char **out, size_t max, size_t *n)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(body, key), *v;
    *n = 0;
    if (!arr) return 0;
    if (!cJSON_IsArray(arr)) return -1;
    cJSON_ArrayForEach(v, arr)
    {
        if (!cJSON_IsString(v) || *n == max) return -1;
        out[(*n)++] = v->valuestring;
    }
    return 0;
}

int sim_group_admin_post(sim *s, const char *url, const cJSON *body, char **out, char *err,
                         size_t errlen)
{
    if (strncmp(url, "/admin/group/", 13) != 0) return 0;
    const char *what = url + 13;
    const char *phone = json_str(body, "phone"), *group_jid = json_str(body, "group");
    const char *members[GROUP_MAX_MEMBERS];
    size_t n = 0;
    char id[64];
    cJSON *o = cJSON_CreateObject();
    int rc = -1;
    if (json_strings(body, "members", members, GROUP_MAX_MEMBERS, &n) != 0) {
        set_err(err, errlen, "members is an array of phone numbers or JIDs");
    } else if (!phone) {
        set_err(err, errlen, "phone is required");
    } else if (strcmp(what, "create") == 0) {
        rc = sim_admin_group_create(s, phone, json_str(body, "subject"), members, n, id, sizeof(id),
                                    err, errlen);
        if (rc == 0) cJSON_AddStringToObject(o, "jid", id);
    } else if (strcmp(what, "send") == 0) {
        const char *text = json_str(body, "text");
        rc = group_jid && text
                 ? sim_admin_group_send(s, phone, group_jid, text, id, sizeof(id), err, errlen)
                 : set_err(err, errlen, "group and text are required");
        if (rc == 0) cJSON_AddStringToObject(o, "id", id);
    } else if (strcmp(what, "participants") == 0) {
        cJSON *results = cJSON_AddArrayToObject(o, "results");
        rc = group_jid ? sim_admin_group_participants(s, phone, group_jid, json_str(body, "action"),
                                                      members, n, results, err, errlen)
                       : set_err(err, errlen, "group is required");
    } else if (strcmp(what, "setting") == 0) {
        rc = group_jid ? sim_admin_group_setting(s, phone, group_jid, json_str(body, "setting"),
                                                 err, errlen)
                       : set_err(err, errlen, "group is required");
    } else {
        set_err(err, errlen, "no such group call");
    }
    *out = rc == 0 ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (rc == 0 && !*out) rc = set_err(err, errlen, "no memory");
    return rc == 0 ? 1 : -1;
}
