/*
 * wa/client.c - the companion device state machine of wa/client.h: device keys, Noise handshake
 * with the right ClientPayload, QR pairing (refs, pair-success checks, device signature), login,
 * prekeys, passive, keepalive, stream errors and failures, reconnect with backoff, logout; 1:1
 * and group messages in and out (device lists cached per connection and checked against the
 * server's phash, sender keys for groups, PN and LID chats), retry receipts (keys fetched when a
 * device sends none and we have no session), identity changes, the group calls (w:g2 IQs) and
 * group notifications (w:gp2, acked when the app takes them).
 */
#include "wa/client.h"

#include "util/base64.h"
#include "wa/message.h"
#include "wa/proto/wa.pb.h"
#include "wa/senderkey.h"
#include "wa/signal.h"

#include <mbedtls/md5.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t ADV_ACCOUNT_SIG_PREFIX[] = {6, 0};
static const uint8_t ADV_DEVICE_SIG_PREFIX[] = {6, 1};
static const uint8_t ADV_HOSTED_ACCOUNT_SIG_PREFIX[] = {6, 5};
static const uint32_t DEFAULT_VERSION[3] = {2, 3000, 1029496320};
#define QR_PREFIX        "https://wa.me/settings/linked_devices#"
#define MAX_REFS         16
#define MAX_PENDING      160  /* IQs in flight: sends, group calls and the client's own */
#define PLATFORM_ID      "1"  /* DeviceProps.PlatformType CHROME */
#define MAX_DEVICE_USERS 8192 /* device lists kept; beyond, the cache starts over */

typedef enum iq_kind {
    IQ_NONE = 0,
    IQ_COUNT,       /* encrypt <count/> */
    IQ_UPLOAD,      /* encrypt prekey upload */
    IQ_PASSIVE,     /* passive <active/> */
    IQ_DIGEST,      /* encrypt <digest/> */
    IQ_PING,        /* w:p keepalive */
    IQ_LOGOUT,      /* md remove-companion-device */
    IQ_USYNC,       /* usync device lists for an outgoing message (arg: job) */
    IQ_KEYS,        /* encrypt <key> prekey bundles for an outgoing message (arg: job) */
    IQ_LINK_HELLO,  /* md link_code_companion_reg companion_hello */
    IQ_LINK_FINISH, /* md link_code_companion_reg companion_finish */
    IQ_SEND_INFO,   /* w:g2 group info for an outgoing group message (arg: job) */
    IQ_GROUP,       /* a group call of the bridge or our own participating (arg: call slot) */
    IQ_DIRTY,       /* urn:xmpp:whatsapp:dirty <clean> */
    IQ_RETRY_KEYS,  /* encrypt <key> for a retry receipt's device (arg: retry_waits slot) */
} iq_kind;

typedef struct pending_iq {
    char id[32];
    iq_kind kind;
    uint32_t arg; /* IQ_UPLOAD: the highest prekey id in the upload; jobs and calls: the slot */
} pending_iq;

/* What a <message> stanza says about its content besides the ciphertext (WhatsApp Web's
 * attributes, see wa_client_send_message). */
typedef struct msg_attrs {
    const char *type; /* "text" or "reaction" */
    const char *edit; /* "1" edit, "7" sender revoke, "8" admin revoke; NULL = none */
    bool hide_fail;   /* <enc decrypt-fail="hide">: a peer that cannot read it shows nothing */
} msg_attrs;

/* A group notification waiting for the app: acked to the server only when taken, so that one
 * the app never took (a crash, a full queue) is delivered again by the server. */
typedef struct queued_update {
    wa_group_update u;   /* for the app (its arena holds note) */
    const wa_node *note; /* the notification, for its ack (in u.arena) */
} queued_update;

#define WA_TAKEN_RING   64  /* notifications remembered as taken */
#define WA_NOTE_KEY_MAX 192 /* "group id" of a notification, with its NUL */

/* An outgoing message waiting for the group info, device lists and sessions. */
typedef struct send_job {
    bool used;
    uint32_t slot;           /* its index in client_slots.jobs (the IQs it asks name it) */
    bool waiting;            /* queued behind an earlier message to the same chat: messages to a
                                chat leave in the order they were given, whatever round trips
                                each one needs */
    uint64_t seq;            /* order of wa_client_send_message calls */
    bool group;              /* to is a group: sender keys */
    bool lid;                /* our LID device sends: a group with addressing_mode="lid", or a
                                1:1 chat with a LID user (device lists and sessions by LID) */
    char id[32];             /* message id */
    char to[WA_JID_STR_MAX]; /* the chat: the recipient user (PN) or the group */
    msg_attrs attrs;         /* stanza attributes for the content */
    wb_buf plaintext;        /* Message protobuf */
    wa_jid *devices;         /* malloc'd: every device to encrypt for (theirs and our others) */
    size_t ndevices;         /* entries in devices */
    size_t devices_cap;      /* allocated entries */
} send_job;

/* A message whose fan-out waits for the server's ack (its participant hash). */
typedef struct sent_fanout {
    char id[32];               /* message id; "" for a free slot */
    char chat[WA_JID_STR_MAX]; /* the user or group it went to */
    bool group;                /* a group: its members' device lists */
    bool lid;                  /* a group addressed by LID (our LID device sent) */
    char phash[16];            /* our participant hash of the devices it went to */
    wb_buf plaintext;          /* kept for retries: stored when the server acks (sent_keep) */
    int64_t sent_ms;           /* when it went (wall clock) */
} sent_fanout;

#define WA_MAX_RETRY_WAITS 16 /* retry receipts waiting for their device's keys */

/* --- a string map (chained hash): device lists per user, sets of JIDs --- */

typedef struct smap_node {
    struct smap_node *next;
    size_t n;       /* values */
    uint16_t *vals; /* n values stored after the key (inside this allocation), or NULL */
    char key[];     /* NUL-terminated */
} smap_node;

typedef struct smap {
    smap_node **b; /* nb buckets (a power of two); NULL until the first put */
    size_t nb;     /* buckets */
    size_t n;      /* keys */
} smap;

/* What we know of a group we are in, for sending; kept for the connection. */
typedef struct group_entry {
    char jid[WA_JID_STR_MAX]; /* the group */
    bool lid;                 /* addressing_mode="lid": members and our identity are LIDs */
    bool stale;               /* a change we made is not reflected yet: ask the info again */
    bool desc_known;          /* desc_id is the current description's id */
    char desc_id[128];        /* the current description's id ("" when none) */
    smap members;             /* user JIDs, as the group names them */
    smap keyed;               /* device JIDs that got our current sender key on this connection */
} group_entry;

/* A group call waiting for its answer. */
typedef struct group_call {
    bool used;
    uint32_t req_id;            /* what the call returned (0: the client's own) */
    wa_group_op op;             /* which call */
    wa_group_change change;     /* PARTICIPANTS */
    char group[WA_JID_STR_MAX]; /* the group ("" for create and participating) */
    bool info_first;            /* DESCRIPTION: the info (for the current id) is asked first */
    char *desc;                 /* DESCRIPTION: the new text (malloc'd; NULL = delete) */
    char desc_id[32];           /* DESCRIPTION: the new description's id */
} group_call;

/* The slots a login uses only once it sends, calls or takes a group notification (~71 KB):
 * allocated then, so an idle login does not carry them. */
typedef struct client_slots {
    send_job **jobs;   /* outgoing messages in preparation: njobs entries, each malloc'd
                          (so a job stays put while the array grows), reused when done */
    uint32_t njobs;    /* entries in jobs (at most WA_MAX_SENDS) */
    uint32_t nwaiting; /* jobs queued behind an earlier message to their chat */
    group_call calls[WA_MAX_GROUP_CALLS];       /* group calls waiting for their answer */
    sent_fanout fanouts[WA_MAX_FANOUTS];        /* sent, ack awaited (a ring) */
    char taken[WA_TAKEN_RING][WA_NOTE_KEY_MAX]; /* group notifications taken (and so acked): a
                                                   redelivery is acked again, not queued */
} client_slots;

static bool slots(wa_client *c);

struct wa_client {
    wa_client_config cfg;
    wa_signal *sig;             /* Signal sessions of this device (over cfg.store) */
    wa_senderkey *sk;           /* sender keys of this device (over cfg.store) */
    client_slots *sl;           /* sends, group calls, fan-outs (NULL until the first) */
    uint64_t job_seq;           /* the last send_job.seq given */
    smap devices;               /* user JID -> device numbers (usync), for this connection */
    smap lids_seen;             /* LID users whose PN twin was stored on this connection */
    smap recreated;             /* devices whose session a retry made anew on this connection */
    group_entry **groups;       /* groups we know, for this connection */
    size_t ngroups, groups_cap; /* used / allocated */
    uint32_t next_req;          /* the last request id handed out */
    wa_group_result *gresults;  /* answers not yet taken (oldest first) */
    size_t ngresults, gresults_cap;
    queued_update *gupdates; /* notifications not yet taken (oldest first), not yet acked */
    size_t ngupdates, gupdates_cap;
    int next_taken;                          /* next slot of sl->taken to reuse */
    bool dropping_results, dropping_updates; /* a full queue was reported (once until a take) */
    wa_identity_change *idchanges;           /* identity changes not yet taken (oldest first) */
    size_t nidchanges, idchanges_cap;
    struct {
        char id[128]; /* message id we asked again for */
        int count;    /* retry receipts sent for it */
    } retries[32];    /* the latest messages we could not decrypt (a ring) */
    int next_retry;   /* next ring slot to reuse */
    struct {
        bool used;
        wb_buf receipt; /* the retry receipt, binary-encoded, while its device's keys are asked */
    } retry_waits[WA_MAX_RETRY_WAITS];
    int next_fanout;          /* next slot of sl->fanouts to reuse */
    wa_received *inbox;       /* received messages not yet taken */
    size_t ninbox, inbox_cap; /* entries [inbox_head, ninbox) are waiting to be taken */
    size_t inbox_head;
    uint8_t root[WA_KEY_LEN]; /* trust root of the server's certificate chain */
    wa_device dev;            /* this device, as stored */
    wa_client_state state;
    uint64_t wall; /* the latest wall time we were given (unix seconds), for timestamps */
    wa_io io;      /* pending socket request for the runtime */
    wb_buf out;    /* bytes for the socket */
    wa_noise noise;
    wa_frame_reader reader;
    /* timers: 0 = not armed */
    int64_t handshake_deadline;
    int64_t next_ping;
    int64_t ping_deadline;
    int64_t qr_deadline;
    int64_t reconnect_at;
    int64_t connected_since;
    /* reconnect */
    int failures; /* consecutive failed connections, for the backoff */
    bool stopped; /* no reconnect (stop, logout, QR timeout, replaced) */
    /* pairing */
    char refs[MAX_REFS][64];
    int nrefs, next_ref;
    /* pairing by code */
    char lc_phone[24]; /* the account's number; "" = QR pairing */
    char lc_code[9];   /* the code shown to the user, once the server registered it */
    bool lc_sent;      /* companion_hello sent on this connection */
    char lc_ref[64];   /* the server's link_code_pairing_ref for it; "" = not answered yet */
    wa_keypair lc_eph; /* our ephemeral key of the code pairing; secret */
    /* IQs */
    pending_iq pending[MAX_PENDING];
    uint32_t iq_counter;
    char iq_prefix[24];
    /* events */
    wa_event *events;
    size_t nevents, events_cap, events_head;
};

/* --- a string map --- */

static size_t smap_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (size_t)h;
}

static smap_node *smap_get(const smap *m, const char *key)
{
    if (!m->nb) return NULL;
    for (smap_node *x = m->b[smap_hash(key) & (m->nb - 1)]; x; x = x->next)
        if (strcmp(x->key, key) == 0) return x;
    return NULL;
}

static bool smap_has(const smap *m, const char *key)
{
    return smap_get(m, key) != NULL;
}

static void smap_del(smap *m, const char *key)
{
    if (!m->nb) return;
    for (smap_node **pp = &m->b[smap_hash(key) & (m->nb - 1)]; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) != 0) continue;
        smap_node *x = *pp;
        *pp = x->next;
        free(x);
        m->n--;
        return;
    }
}

static bool smap_grow(smap *m)
{
    size_t nb = m->nb ? m->nb * 2 : 16;
    smap_node **b = calloc(nb, sizeof(*b));
    if (!b) return false;
    for (size_t i = 0; i < m->nb; i++) {
        for (smap_node *x = m->b[i], *next; x; x = next) {
            next = x->next;
            size_t h = smap_hash(x->key) & (nb - 1);
            x->next = b[h];
            b[h] = x;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return true;
}

/* Inserts key with n values (replacing what it had); false when out of memory. */
static bool smap_put(smap *m, const char *key, const uint16_t *vals, size_t n)
{
    smap_del(m, key);
    if (m->n >= m->nb && !smap_grow(m)) return false;
    size_t off = offsetof(smap_node, key) + strlen(key) + 1;
    off = (off + 1) & ~(size_t)1; /* the values are uint16_t */
    smap_node *x = malloc(off + n * sizeof(uint16_t));
    if (!x) return false;
    strcpy(x->key, key);
    x->n = n;
    x->vals = n ? (uint16_t *)(void *)((char *)x + off) : NULL;
    if (n) memcpy(x->vals, vals, n * sizeof(uint16_t));
    size_t h = smap_hash(key) & (m->nb - 1);
    x->next = m->b[h];
    m->b[h] = x;
    m->n++;
    return true;
}

static void smap_clear(smap *m)
{
    for (size_t i = 0; i < m->nb; i++)
        for (smap_node *x = m->b[i], *next; x; x = next) {
            next = x->next;
            free(x);
        }
    free(m->b);
    memset(m, 0, sizeof(*m));
}

/* --- caches: device lists per user, groups --- */

/* "user@server" of a JID string (device and agent dropped); false when it is not a JID. */
static bool user_of(const char *jid, char *out, size_t cap)
{
    wa_jid j;
    if (!jid || wa_jid_parse_cstr(jid, &j) != WA_OK) return false;
    wa_jid u = wa_jid_to_user(&j);
    return wa_jid_format(&u, out, cap) > 0;
}

/* Forgets the device list of jid's user: it changed (a devices notification, a retry). */
static void devices_forget(wa_client *c, const char *jid)
{
    char user[WA_JID_STR_MAX];
    if (user_of(jid, user, sizeof(user))) smap_del(&c->devices, user);
}

/* Whether jid names our own account (PN or LID user), any device. */
static bool is_my_user(const wa_client *c, const char *jid)
{
    char user[WA_JID_STR_MAX], mine[WA_JID_STR_MAX];
    if (!user_of(jid, user, sizeof(user))) return false;
    return (user_of(c->dev.pn, mine, sizeof(mine)) && strcmp(user, mine) == 0) ||
           (user_of(c->dev.lid, mine, sizeof(mine)) && strcmp(user, mine) == 0);
}

/* Our sending device in a group: the LID device in "lid" groups, else the PN one; its Signal
 * name and device. */
static int my_group_identity(const wa_client *c, bool lid, wa_jid *me, char *name, size_t cap,
                             uint32_t *device)
{
    const char *jid = lid ? c->dev.lid : c->dev.pn;
    if (!jid[0] || wa_jid_parse_cstr(jid, me) != WA_OK) return WA_ERR_STATE;
    return wa_signal_address(me, name, cap, device);
}

static group_entry *group_find(wa_client *c, const char *jid)
{
    for (size_t i = 0; jid && i < c->ngroups; i++)
        if (strcmp(c->groups[i]->jid, jid) == 0) return c->groups[i];
    return NULL;
}

static void group_entry_free(group_entry *g)
{
    smap_clear(&g->members);
    smap_clear(&g->keyed);
    free(g);
}

static void groups_clear(wa_client *c)
{
    for (size_t i = 0; i < c->ngroups; i++)
        group_entry_free(c->groups[i]);
    free(c->groups);
    c->groups = NULL;
    c->ngroups = c->groups_cap = 0;
}

static void group_drop(wa_client *c, const char *jid)
{
    for (size_t i = 0; i < c->ngroups; i++) {
        if (strcmp(c->groups[i]->jid, jid) != 0) continue;
        group_entry_free(c->groups[i]);
        c->groups[i] = c->groups[--c->ngroups];
        return;
    }
}

/* A member left or was removed: forget our sender key (both identities, the mode may be unknown)
 * so that the next message starts a new chain the departed never see. */
static void group_rotate(wa_client *c, const char *jid)
{
    for (int lid = 0; lid < 2; lid++) {
        wa_jid me;
        char name[WA_JID_STR_MAX];
        uint32_t device;
        if (my_group_identity(c, lid, &me, name, sizeof(name), &device) == WA_OK)
            wa_senderkey_forget(c->sk, jid, name, device);
    }
    group_entry *g = group_find(c, jid);
    if (g) smap_clear(&g->keyed);
}

/* Records a group's members and mode from its info; a member gone since we last knew rotates our
 * key (a notification we missed). NULL when out of memory. */
static group_entry *group_put_info(wa_client *c, const wa_group_info *info)
{
    if (!info || !info->jid) return NULL;
    group_entry *g = group_find(c, info->jid);
    bool fresh = !g;
    if (fresh) {
        if (c->ngroups == c->groups_cap) {
            size_t cap = c->groups_cap ? c->groups_cap * 2 : 8;
            group_entry **grown = realloc(c->groups, cap * sizeof(*grown));
            if (!grown) return NULL;
            c->groups = grown;
            c->groups_cap = cap;
        }
        g = calloc(1, sizeof(*g));
        if (!g) return NULL;
        snprintf(g->jid, sizeof(g->jid), "%s", info->jid);
        c->groups[c->ngroups++] = g;
    }
    smap members = {0};
    for (size_t i = 0; i < info->nparticipants; i++) {
        char user[WA_JID_STR_MAX];
        if (user_of(info->participants[i].jid, user, sizeof(user)))
            smap_put(&members, user, NULL, 0);
    }
    bool shrank = false;
    for (size_t i = 0; !fresh && i < g->members.nb && !shrank; i++)
        for (smap_node *x = g->members.b[i]; x && !shrank; x = x->next)
            shrank = !smap_has(&members, x->key);
    smap_clear(&g->members);
    g->members = members;
    g->lid = info->addressing_mode && strcmp(info->addressing_mode, "lid") == 0;
    g->stale = false;
    g->desc_known = true;
    snprintf(g->desc_id, sizeof(g->desc_id), "%s",
             info->description_id ? info->description_id : "");
    if (shrank) group_rotate(c, g->jid);
    return g;
}

/* We are out of the group (left, removed, deleted): our key goes, and what we knew of it. */
static void group_forget(wa_client *c, const char *jid)
{
    group_rotate(c, jid);
    group_drop(c, jid);
}

/* --- group results and updates for the bridge --- */

const char *wa_group_op_name(wa_group_op op)
{
    static const char *const names[] = {"?",       "create",       "info",    "participants",
                                        "subject", "description",  "setting", "leave",
                                        "invite",  "participating"};
    return (unsigned)op < sizeof(names) / sizeof(names[0]) ? names[op] : "?";
}

void wa_group_result_free(wa_group_result *r)
{
    if (!r) return;
    wb_arena_free(&r->arena);
    memset(r, 0, sizeof(*r));
}

void wa_group_update_free(wa_group_update *u)
{
    if (!u) return;
    wb_arena_free(&u->arena);
    memset(u, 0, sizeof(*u));
}

/* Appends *item (elem bytes) to a queue capped at WA_MAX_GROUP_QUEUE; the oldest entry is handed
 * to drop when full. False when out of memory (the caller frees item). */
static bool queue_push(void **q, size_t *n, size_t *cap, size_t elem, const void *item,
                       void (*drop)(void *))
{
    if (*n == WA_MAX_GROUP_QUEUE) {
        drop(*q);
        memmove(*q, (char *)*q + elem, (*n - 1) * elem);
        (*n)--;
    }
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        void *grown = realloc(*q, ncap * elem);
        if (!grown) return false;
        *q = grown;
        *cap = ncap;
    }
    memcpy((char *)*q + *n * elem, item, elem);
    (*n)++;
    return true;
}

static void drop_result(void *p)
{
    wa_group_result_free(p);
}

static void drop_update(void *p)
{
    wa_group_update_free(&((queued_update *)p)->u);
}

/* Queues r for the bridge (ownership moves) and raises WA_EV_GROUP_RESULT. */
static void emit(wa_client *c, wa_event_type type, int code, int64_t ms, const char *fmt, ...);
static void push_group_result(wa_client *c, wa_group_result *r)
{
    wa_group_result copy = *r;
    if (c->ngresults == WA_MAX_GROUP_QUEUE && !c->dropping_results) {
        c->dropping_results = true;
        emit(c, WA_EV_ERROR, 0, 0, "group results not taken: the oldest are dropped");
    }
    if (!queue_push((void **)&c->gresults, &c->ngresults, &c->gresults_cap, sizeof(*r), &copy,
                    drop_result)) {
        wa_group_result_free(r);
        return;
    }
    emit(c, WA_EV_GROUP_RESULT, copy.code, copy.req_id, "%s %s", wa_group_op_name(copy.op),
         copy.group);
}

/* "from id" of a notification: what a redelivery repeats. */
static void note_key(const wa_node *n, char out[WA_NOTE_KEY_MAX])
{
    const char *from = wa_node_attr(n, "from"), *id = wa_node_attr(n, "id");
    snprintf(out, WA_NOTE_KEY_MAX, "%s %s", from ? from : "", id ? id : "");
}

/* Queues u (ownership moves; note: the notification in u's arena) and raises WA_EV_GROUP. */
static void push_group_update(wa_client *c, wa_group_update *u, const wa_node *note)
{
    queued_update copy = {.u = *u, .note = note};
    if (c->ngupdates == WA_MAX_GROUP_QUEUE && !c->dropping_updates) {
        c->dropping_updates = true;
        emit(c, WA_EV_ERROR, 0, 0, "group updates not taken: the oldest are dropped");
    }
    if (!queue_push((void **)&c->gupdates, &c->ngupdates, &c->gupdates_cap, sizeof(copy), &copy,
                    drop_update)) {
        wa_group_update_free(u);
        return;
    }
    emit(c, WA_EV_GROUP, (int)copy.u.event.nchanges, 0, "%s", copy.u.event.group);
}

bool wa_client_next_group_result(wa_client *c, wa_group_result *out)
{
    if (!c->ngresults) return false;
    c->dropping_results = false;
    *out = c->gresults[0];
    memmove(c->gresults, c->gresults + 1, (c->ngresults - 1) * sizeof(*c->gresults));
    c->ngresults--;
    return true;
}

const wa_group_update *wa_client_peek_group_update(const wa_client *c)
{
    return c->ngupdates ? &c->gupdates[0].u : NULL;
}

bool wa_client_next_group_update(wa_client *c, wa_group_update *out)
{
    if (!c->ngupdates) return false;
    c->dropping_updates = false;
    queued_update *q = &c->gupdates[0];
    /* taken: now the server may forget it (offline, the redelivery at the next login is acked
     * then, from the taken ring) */
    if (slots(c)) { /* (out of memory: a redelivery would be queued again) */
        note_key(q->note, c->sl->taken[c->next_taken]);
        c->next_taken = (c->next_taken + 1) % WA_TAKEN_RING;
    }
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *ack = wa_group_notification_ack(&a, q->note);
    if (ack && c->state == WA_CLIENT_CONNECTED) wa_client_send_node(c, ack);
    wb_arena_free(&a);
    *out = q->u;
    memmove(c->gupdates, c->gupdates + 1, (c->ngupdates - 1) * sizeof(*c->gupdates));
    c->ngupdates--;
    return true;
}

static void drop_nothing(void *p)
{
    (void)p;
}

/* A contact's identity key changed (jid: the device, or the user when announced): queued for the
 * app and raised as WA_EV_IDENTITY_CHANGE. */
static void identity_changed(wa_client *c, const char *jid, bool announced, uint64_t t)
{
    wa_identity_change ch;
    memset(&ch, 0, sizeof(ch));
    snprintf(ch.jid, sizeof(ch.jid), "%s", jid);
    ch.announced = announced;
    ch.t = t ? t : c->wall;
    queue_push((void **)&c->idchanges, &c->nidchanges, &c->idchanges_cap, sizeof(ch), &ch,
               drop_nothing);
    emit(c, WA_EV_IDENTITY_CHANGE, announced ? 0 : 1, 0, "%s", jid);
}

/* After a Signal call about jid's device: raises what it met. */
static void identity_check(wa_client *c, const char *jid)
{
    if (wa_signal_take_identity_change(c->sig)) identity_changed(c, jid, false, 0);
}

bool wa_client_next_identity_change(wa_client *c, wa_identity_change *out)
{
    if (!c->nidchanges) return false;
    *out = c->idchanges[0];
    memmove(c->idchanges, c->idchanges + 1, (c->nidchanges - 1) * sizeof(*c->idchanges));
    c->nidchanges--;
    return true;
}

/* A copy of n in a (its strings then live as long as a): parsers point into the node. */
static wa_node *copy_node(wb_arena *a, const wa_node *n)
{
    wb_buf b;
    wb_buf_init(&b);
    wa_node *out = NULL;
    if (wa_binary_encode(n, &b) != WA_OK || wa_binary_decode(b.data, b.len, a, &out, NULL) != WA_OK)
        out = NULL;
    wb_buf_free(&b);
    return out;
}

/* --- helpers --- */

static void emit(wa_client *c, wa_event_type type, int code, int64_t ms, const char *fmt, ...)
{
    if (c->nevents == c->events_cap) {
        /* compact, then grow */
        if (c->events_head) {
            memmove(c->events, c->events + c->events_head,
                    (c->nevents - c->events_head) * sizeof(wa_event));
            c->nevents -= c->events_head;
            c->events_head = 0;
        }
        if (c->nevents == c->events_cap) {
            size_t cap = c->events_cap ? c->events_cap * 2 : 16;
            wa_event *grown = realloc(c->events, cap * sizeof(wa_event));
            if (!grown) return;
            c->events = grown;
            c->events_cap = cap;
        }
    }
    wa_event *ev = &c->events[c->nevents++];
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    ev->code = code;
    ev->ms = ms;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ev->text, sizeof(ev->text), fmt, ap);
        va_end(ap);
    }
}

bool wa_client_next_event(wa_client *c, wa_event *ev)
{
    if (c->events_head == c->nevents) {
        c->events_head = c->nevents = 0;
        return false;
    }
    *ev = c->events[c->events_head++];
    return true;
}

bool wa_client_peek_event(const wa_client *c, wa_event_type *type)
{
    if (c->events_head == c->nevents) return false;
    *type = c->events[c->events_head].type;
    return true;
}

static uint32_t random_u32(wa_client *c)
{
    uint8_t b[4];
    wa_random(c->cfg.crypto, b, 4);
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void put_be(uint8_t *p, uint32_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static int pb_encode_buf(const pb_msgdesc_t *fields, const void *msg, uint8_t *buf, size_t cap,
                         size_t *len)
{
    pb_ostream_t os = pb_ostream_from_buffer(buf, cap);
    if (!pb_encode(&os, fields, msg)) return WA_ERR_PROTO;
    *len = os.bytes_written;
    return WA_OK;
}

/* Signs 0x05 || pub with the identity key (Signal's signed prekey signature). */
static int sign_prekey(wa_client *c, const wa_keypair *identity, const uint8_t pub[32],
                       uint8_t sig[64])
{
    uint8_t msg[33];
    msg[0] = 0x05;
    memcpy(msg + 1, pub, 32);
    return wa_xeddsa_sign(c->cfg.crypto, identity->priv, msg, sizeof(msg), sig);
}

static int create_device(wa_client *c)
{
    wa_device *d = &c->dev;
    memset(d, 0, sizeof(*d));
    int rc = wa_keypair_generate(c->cfg.crypto, &d->noise);
    if (rc == WA_OK) rc = wa_keypair_generate(c->cfg.crypto, &d->identity);
    if (rc == WA_OK) rc = wa_keypair_generate(c->cfg.crypto, &d->signed_prekey);
    if (rc == WA_OK) rc = wa_random(c->cfg.crypto, d->adv_secret, sizeof(d->adv_secret));
    if (rc != WA_OK) return rc;
    d->registration_id = 1 + random_u32(c) % 16380;
    d->signed_prekey_id = 1;
    d->next_prekey_id = 1;
    rc = sign_prekey(c, &d->identity, d->signed_prekey.pub, d->signed_prekey_sig);
    if (rc != WA_OK) return rc;
    snprintf(d->push_name, sizeof(d->push_name), "%s", c->cfg.push_name ? c->cfg.push_name : "");
    return c->cfg.store->device_save(c->cfg.store->ctx, d) == WA_STORE_OK ? WA_OK : WA_ERR_STATE;
}

wa_client *wa_client_new(const wa_client_config *cfg, int *err)
{
    int rc = WA_ERR_NOMEM;
    wa_client *c = calloc(1, sizeof(*c));
    if (!c) goto fail;
    c->cfg = *cfg;
    if (!c->cfg.version[0]) memcpy(c->cfg.version, DEFAULT_VERSION, sizeof(DEFAULT_VERSION));
    memcpy(c->root, cfg->trust_root ? cfg->trust_root : wa_noise_whatsapp_root, WA_KEY_LEN);
    wb_buf_init(&c->out);
    wa_frame_reader_init(&c->reader, false, 0);
    int src = cfg->store->device_load(cfg->store->ctx, &c->dev);
    if (src == WA_STORE_NOT_FOUND)
        rc = create_device(c);
    else
        rc = src == WA_STORE_OK ? WA_OK : WA_ERR_STATE;
    if (rc != WA_OK) goto fail;
    c->sig = wa_signal_new(cfg->crypto, cfg->store, &rc);
    if (!c->sig) goto fail;
    c->sk = wa_senderkey_new(cfg->crypto, cfg->store, &rc);
    if (!c->sk) goto fail;
    snprintf(c->iq_prefix, sizeof(c->iq_prefix), "%u.%u", random_u32(c) % 100000,
             random_u32(c) % 100000);
    if (err) *err = WA_OK;
    return c;
fail:
    if (err) *err = rc;
    wa_client_free(c);
    return NULL;
}

void wa_client_free(wa_client *c)
{
    if (!c) return;
    wb_buf_free(&c->out);
    wa_frame_reader_free(&c->reader);
    wa_noise_clear(&c->noise);
    free(c->events);
    wa_signal_free(c->sig);
    wa_senderkey_free(c->sk);
    for (uint32_t i = 0; c->sl && i < c->sl->njobs; i++) {
        wb_buf_free(&c->sl->jobs[i]->plaintext);
        free(c->sl->jobs[i]->devices);
        free(c->sl->jobs[i]);
    }
    if (c->sl) free(c->sl->jobs);
    for (int i = 0; c->sl && i < WA_MAX_GROUP_CALLS; i++)
        free(c->sl->calls[i].desc);
    for (int i = 0; c->sl && i < WA_MAX_FANOUTS; i++)
        wb_buf_free(&c->sl->fanouts[i].plaintext);
    free(c->sl);
    smap_clear(&c->devices);
    smap_clear(&c->lids_seen);
    smap_clear(&c->recreated);
    groups_clear(c);
    for (size_t i = 0; i < c->ngresults; i++)
        wa_group_result_free(&c->gresults[i]);
    free(c->gresults);
    for (size_t i = 0; i < c->ngupdates; i++)
        wa_group_update_free(&c->gupdates[i].u);
    free(c->gupdates);
    for (size_t i = c->inbox_head; i < c->ninbox; i++)
        wa_received_free(&c->inbox[i]);
    free(c->inbox);
    free(c->idchanges);
    for (int i = 0; i < WA_MAX_RETRY_WAITS; i++)
        wb_buf_free(&c->retry_waits[i].receipt);
    wa_wipe(&c->dev, sizeof(c->dev));
    free(c);
}

wa_client_state wa_client_get_state(const wa_client *c)
{
    return c->state;
}

const char *wa_client_state_name(wa_client_state s)
{
    static const char *const names[] = {"idle",       "connecting", "handshake", "pairing",
                                        "logging-in", "connected",  "backoff",   "logged-out"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

bool wa_client_is_paired(const wa_client *c)
{
    return c->dev.paired;
}

const char *wa_client_jid(const wa_client *c)
{
    return c->dev.pn;
}

wa_io wa_client_io(wa_client *c)
{
    wa_io io = c->io;
    c->io = WA_IO_NONE;
    return io;
}

wb_buf *wa_client_output(wa_client *c)
{
    return &c->out;
}

int64_t wa_client_deadline(const wa_client *c)
{
    int64_t d = INT64_MAX;
    const int64_t timers[] = {c->handshake_deadline, c->next_ping, c->ping_deadline, c->qr_deadline,
                              c->reconnect_at};
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
        if (timers[i] && timers[i] < d) d = timers[i];
    return d;
}

static void clear_timers(wa_client *c)
{
    c->handshake_deadline = c->next_ping = c->ping_deadline = c->qr_deadline = 0;
    c->reconnect_at = 0;
}

/* --- sending --- */

int wa_client_send_node(wa_client *c, const wa_node *n)
{
    if (c->noise.state != WA_NOISE_TRANSPORT) return WA_ERR_STATE;
    return wa_noise_send_node(&c->noise, n, &c->out);
}

/* Whether another IQ can be registered as pending (its answer would be lost otherwise). */
static bool pending_room(const wa_client *c)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (c->pending[i].kind == IQ_NONE) return true;
    return false;
}

/* A new IQ id, registered as pending with kind and arg (id[32]). */
static void register_iq(wa_client *c, iq_kind kind, uint32_t arg, char *id)
{
    snprintf(id, 32, "%s-%u", c->iq_prefix, ++c->iq_counter);
    for (int i = 0; i < MAX_PENDING; i++) {
        if (c->pending[i].kind == IQ_NONE) {
            snprintf(c->pending[i].id, sizeof(c->pending[i].id), "%s", id);
            c->pending[i].kind = kind;
            c->pending[i].arg = arg;
            break;
        }
    }
}

/* Builds <iq id to type xmlns> registered as pending; returns the node (in a). */
static wa_node *new_iq(wa_client *c, wb_arena *a, const char *to, const char *type,
                       const char *xmlns, iq_kind kind, uint32_t arg)
{
    char id[32];
    register_iq(c, kind, arg, id);
    wa_node *iq = wa_node_new(a, "iq");
    wa_node_set_attr(a, iq, "id", id);
    wa_node_set_attr(a, iq, "to", to);
    wa_node_set_attr(a, iq, "type", type);
    wa_node_set_attr(a, iq, "xmlns", xmlns);
    return iq;
}

static pending_iq take_pending(wa_client *c, const char *id)
{
    pending_iq none = {.kind = IQ_NONE};
    for (int i = 0; id && i < MAX_PENDING; i++) {
        if (c->pending[i].kind != IQ_NONE && strcmp(c->pending[i].id, id) == 0) {
            pending_iq p = c->pending[i];
            c->pending[i].kind = IQ_NONE;
            return p;
        }
    }
    return none;
}

static wa_node *bytes_node(wb_arena *a, const char *tag, const void *p, size_t n)
{
    wa_node *x = wa_node_new(a, tag);
    wa_node_set_bytes(a, x, p, n);
    return x;
}

static void send_simple_iq(wa_client *c, const char *to, const char *type, const char *xmlns,
                           const char *child, iq_kind kind)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *iq = new_iq(c, &a, to, type, xmlns, kind, 0);
    if (child) wa_node_add_child(&a, iq, wa_node_new(&a, child));
    wa_client_send_node(c, iq);
    wb_arena_free(&a);
}

/* --- connection lifecycle --- */

static void job_done(wa_client *c, send_job *j);
static void job_fail(wa_client *c, send_job *j, const char *why);

/* The connection is gone: messages still being prepared are dropped without an event, like
 * those sent but not acked yet (the caller sends them again, same id, once connected); group
 * calls are answered with WA_ERR_TIMEOUT; what we learned for the connection (device lists,
 * groups, who has our sender keys) is forgotten. */
static void abandon_connection_work(wa_client *c)
{
    for (uint32_t i = 0; c->sl && i < c->sl->njobs; i++)
        if (c->sl->jobs[i]->used) job_done(c, c->sl->jobs[i]);
    for (int i = 0; c->sl && i < WA_MAX_GROUP_CALLS; i++) {
        group_call *g = &c->sl->calls[i];
        if (!g->used) continue;
        wa_group_result r;
        memset(&r, 0, sizeof(r));
        wb_arena_init(&r.arena, 0);
        r.req_id = g->req_id;
        r.op = g->op;
        r.change = g->change;
        r.code = WA_ERR_TIMEOUT;
        r.error_text = "";
        snprintf(r.group, sizeof(r.group), "%s", g->group);
        free(g->desc);
        memset(g, 0, sizeof(*g));
        push_group_result(c, &r);
    }
    for (int i = 0; i < WA_MAX_RETRY_WAITS; i++) { /* the peer asks again */
        c->retry_waits[i].used = false;
        c->retry_waits[i].receipt.len = 0;
    }
    smap_clear(&c->devices);
    smap_clear(&c->lids_seen);
    smap_clear(&c->recreated);
    groups_clear(c);
}

static void reset_connection(wa_client *c)
{
    abandon_connection_work(c);
    c->lc_sent = false;
    c->lc_ref[0] = '\0';
    wa_noise_clear(&c->noise);
    wa_frame_reader_free(&c->reader);
    wa_frame_reader_init(&c->reader, false, 0);
    c->out.len = 0;
    memset(c->pending, 0, sizeof(c->pending));
    c->nrefs = c->next_ref = 0;
    clear_timers(c);
}

static int64_t backoff_ms(wa_client *c)
{
    int64_t d = 1000;
    for (int i = 1; i < c->failures && d < WA_BACKOFF_MAX_MS; i++)
        d *= 2;
    return d > WA_BACKOFF_MAX_MS ? WA_BACKOFF_MAX_MS : d;
}

/* Counts a failed connection and returns the delay before the next attempt. A connection that was
 * stable for WA_STABLE_MS starts the count over. */
static int64_t fail_backoff(wa_client *c, int64_t now)
{
    if (c->state == WA_CLIENT_CONNECTED && c->connected_since &&
        now - c->connected_since >= WA_STABLE_MS) {
        c->failures = 0;
    }
    c->failures++;
    return backoff_ms(c);
}

static void sent_keep_all(wa_client *c);
static bool sent_pending(const wa_client *c, const char *chat, const char *id, wb_buf *out);

/* Closes the socket. delay_ms >= 0 schedules a reconnect; -1 stays down. */
static void drop(wa_client *c, int64_t now, int code, int64_t delay_ms, const char *why)
{
    if (c->state != WA_CLIENT_LOGGED_OUT) sent_keep_all(c);
    c->connected_since = 0;
    reset_connection(c);
    c->io = WA_IO_CLOSE;
    if (delay_ms < 0 || c->stopped) {
        c->state = c->state == WA_CLIENT_LOGGED_OUT ? WA_CLIENT_LOGGED_OUT : WA_CLIENT_IDLE;
        emit(c, WA_EV_DISCONNECTED, code, -1, "%s", why);
        return;
    }
    c->state = WA_CLIENT_BACKOFF;
    c->reconnect_at = now + (delay_ms ? delay_ms : 1);
    emit(c, WA_EV_DISCONNECTED, code, delay_ms, "%s", why);
}

static void logged_out(wa_client *c, int64_t now, int code, const char *why)
{
    c->stopped = true;
    c->state = WA_CLIENT_LOGGED_OUT;
    wa_store *st = c->cfg.store;
    wa_signal_forget_kept(c->sig); /* (not stored again after the wipe) */
    st->wipe(st->ctx);
    for (int i = 0; c->sl && i < WA_MAX_FANOUTS; i++) { /* nothing to retry any more */
        wa_wipe(c->sl->fanouts[i].plaintext.data, c->sl->fanouts[i].plaintext.len);
        c->sl->fanouts[i].plaintext.len = 0;
        c->sl->fanouts[i].id[0] = '\0';
    }
    /* a new identity for a future pairing, and sessions over it */
    create_device(c);
    wa_signal_free(c->sig);
    c->sig = wa_signal_new(c->cfg.crypto, st, NULL);
    wa_senderkey_free(c->sk);
    c->sk = wa_senderkey_new(c->cfg.crypto, st, NULL);
    reset_connection(c);
    c->io = WA_IO_CLOSE;
    emit(c, WA_EV_LOGGED_OUT, code, -1, "%s", why);
}

int wa_client_start(wa_client *c, int64_t now, uint64_t wall)
{
    if (c->state != WA_CLIENT_IDLE && c->state != WA_CLIENT_LOGGED_OUT &&
        c->state != WA_CLIENT_BACKOFF)
        return WA_ERR_STATE;
    c->stopped = false;
    if (wall) c->wall = wall;
    reset_connection(c);
    c->state = WA_CLIENT_CONNECTING;
    c->io = WA_IO_OPEN;
    c->handshake_deadline = now + WA_HANDSHAKE_TIMEOUT_MS;
    return WA_OK;
}

void wa_client_stop(wa_client *c, int64_t now)
{
    c->stopped = true;
    if (c->state == WA_CLIENT_IDLE || c->state == WA_CLIENT_LOGGED_OUT) return;
    drop(c, now, 0, -1, "stopped");
}

void wa_client_on_open(wa_client *c, int64_t now, uint64_t wall)
{
    if (c->state != WA_CLIENT_CONNECTING) return;
    if (wall) c->wall = wall;
    if (wa_noise_init(&c->noise, c->cfg.crypto, WA_NOISE_INITIATOR, NULL) != WA_OK ||
        wa_noise_client_hello(&c->noise, &c->out) != WA_OK) {
        drop(c, now, 0, fail_backoff(c, now), "cannot start the handshake");
        return;
    }
    c->state = WA_CLIENT_HANDSHAKE;
    c->handshake_deadline = now + WA_HANDSHAKE_TIMEOUT_MS;
}

void wa_client_on_closed(wa_client *c, int64_t now)
{
    if (c->state == WA_CLIENT_IDLE || c->state == WA_CLIENT_LOGGED_OUT ||
        c->state == WA_CLIENT_BACKOFF)
        return;
    drop(c, now, 0, c->stopped ? -1 : fail_backoff(c, now), "connection lost");
}

/* --- the ClientPayload --- */

/* Copies src into dst[cap], cutting only between UTF-8 characters. */
static void copy_utf8(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void user_agent(wa_client *c, proto_ClientPayload *p)
{
    p->has_userAgent = true;
    proto_ClientPayload_UserAgent *ua = &p->userAgent;
    ua->has_platform = true;
    ua->platform = proto_ClientPayload_UserAgent_Platform_WEB;
    ua->has_appVersion = true;
    ua->appVersion.has_primary = ua->appVersion.has_secondary = ua->appVersion.has_tertiary = true;
    ua->appVersion.primary = c->cfg.version[0];
    ua->appVersion.secondary = c->cfg.version[1];
    ua->appVersion.tertiary = c->cfg.version[2];
    ua->has_releaseChannel = true;
    ua->releaseChannel = proto_ClientPayload_UserAgent_ReleaseChannel_RELEASE;
    ua->has_mcc = ua->has_mnc = ua->has_osVersion = ua->has_device = ua->has_osBuildNumber = true;
    strcpy(ua->mcc, "000");
    strcpy(ua->mnc, "000");
    strcpy(ua->osVersion, "0.1");
    strcpy(ua->device, "Desktop");
    strcpy(ua->osBuildNumber, "0.1");
    ua->has_localeLanguageIso6391 = ua->has_localeCountryIso31661Alpha2 = true;
    strcpy(ua->localeLanguageIso6391, "en");
    strcpy(ua->localeCountryIso31661Alpha2, "US");
    p->has_webInfo = true;
    p->webInfo.has_webSubPlatform = true;
    p->webInfo.webSubPlatform = proto_ClientPayload_WebInfo_WebSubPlatform_WEB_BROWSER;
    p->has_connectType = p->has_connectReason = true;
    p->connectType = proto_ClientPayload_ConnectType_WIFI_UNKNOWN;
    p->connectReason = proto_ClientPayload_ConnectReason_USER_ACTIVATED;
    if (c->dev.push_name[0]) {
        p->has_pushName = true;
        copy_utf8(p->pushName, sizeof(p->pushName), c->dev.push_name);
    }
}

static int client_payload(wa_client *c, uint8_t *buf, size_t cap, size_t *len)
{
    proto_ClientPayload p = proto_ClientPayload_init_zero;
    user_agent(c, &p);
    if (c->dev.paired) {
        wa_jid me;
        if (wa_jid_parse_cstr(c->dev.pn, &me) != WA_OK) return WA_ERR_BAD_JID;
        p.has_username = p.has_device = p.has_passive = p.has_pull = p.has_lidDbMigrated = true;
        p.username = strtoull(me.user, NULL, 10);
        p.device = me.device;
        p.passive = true;
        p.pull = true;
        p.lidDbMigrated = false;
    } else {
        p.has_passive = p.has_pull = true;
        p.passive = false;
        p.pull = false;
        p.has_devicePairingData = true;
        proto_ClientPayload_DevicePairingRegistrationData *d = &p.devicePairingData;
        d->has_eRegid = d->has_eKeytype = d->has_eIdent = d->has_eSkeyId = true;
        d->has_eSkeyVal = d->has_eSkeySig = d->has_buildHash = d->has_deviceProps = true;
        d->eRegid.size = 4;
        put_be(d->eRegid.bytes, c->dev.registration_id, 4);
        d->eKeytype.size = 1;
        d->eKeytype.bytes[0] = 5;
        d->eIdent.size = 32;
        memcpy(d->eIdent.bytes, c->dev.identity.pub, 32);
        d->eSkeyId.size = 3;
        put_be(d->eSkeyId.bytes, c->dev.signed_prekey_id, 3);
        d->eSkeyVal.size = 32;
        memcpy(d->eSkeyVal.bytes, c->dev.signed_prekey.pub, 32);
        d->eSkeySig.size = 64;
        memcpy(d->eSkeySig.bytes, c->dev.signed_prekey_sig, 64);
        char version[48];
        snprintf(version, sizeof(version), "%u.%u.%u", c->cfg.version[0], c->cfg.version[1],
                 c->cfg.version[2]);
        d->buildHash.size = 16;
        mbedtls_md5_ret((const unsigned char *)version, strlen(version), d->buildHash.bytes);
        proto_DeviceProps props = proto_DeviceProps_init_zero;
        props.has_os = props.has_platformType = props.has_requireFullSync = true;
        snprintf(props.os, sizeof(props.os), "%s", c->cfg.os_name ? c->cfg.os_name : "wabridge");
        props.platformType = proto_DeviceProps_PlatformType_CHROME;
        props.requireFullSync = false;
        props.has_version = true;
        props.version.has_primary = props.version.has_secondary = props.version.has_tertiary = true;
        props.version.primary = 10;
        props.version.secondary = 15;
        props.version.tertiary = 7;
        props.has_historySyncConfig = true;
        props.historySyncConfig.has_storageQuotaMb = true;
        props.historySyncConfig.storageQuotaMb = 10240;
        props.historySyncConfig.has_inlineInitialPayloadInE2EeMsg = true;
        props.historySyncConfig.inlineInitialPayloadInE2EeMsg = true;
        size_t plen;
        int rc = pb_encode_buf(proto_DeviceProps_fields, &props, d->deviceProps.bytes,
                               sizeof(d->deviceProps.bytes), &plen);
        if (rc != WA_OK) return rc;
        d->deviceProps.size = (pb_size_t)plen;
    }
    return pb_encode_buf(proto_ClientPayload_fields, &p, buf, cap, len);
}

/* --- stanzas --- */

static void show_next_qr(wa_client *c, int64_t now)
{
    if (c->next_ref >= c->nrefs) {
        c->stopped = true;
        emit(c, WA_EV_QR_TIMEOUT, 0, 0, "no QR code was scanned in time");
        drop(c, now, 0, -1, "QR codes expired");
        return;
    }
    char noise[WB_BASE64_LEN(32)], ident[WB_BASE64_LEN(32)], adv[WB_BASE64_LEN(32)];
    wb_base64_encode(c->dev.noise.pub, 32, noise, false);
    wb_base64_encode(c->dev.identity.pub, 32, ident, false);
    wb_base64_encode(c->dev.adv_secret, 32, adv, false);
    if (!c->lc_phone[0])
        emit(c, WA_EV_QR, 0, 0, QR_PREFIX "%s,%s,%s,%s," PLATFORM_ID, c->refs[c->next_ref], noise,
             ident, adv);
    c->qr_deadline = now + (c->next_ref == 0 ? WA_QR_FIRST_MS : WA_QR_NEXT_MS);
    c->next_ref++;
}

static void answer_iq(wa_client *c, const wa_node *iq, wa_node *child, wb_arena *a)
{
    wa_node *res = wa_node_new(a, "iq");
    wa_node_set_attr(a, res, "to", WA_SERVER_PN);
    wa_node_set_attr(a, res, "type", "result");
    wa_node_set_attr(a, res, "id", wa_node_attr(iq, "id"));
    if (child) wa_node_add_child(a, res, child);
    wa_client_send_node(c, res);
}

/* --- pairing by code --- */

#define LC_ITERATIONS 131072 /* PBKDF2 rounds of the code key */
static const char CROCKFORD[] = "123456789ABCDEFGHJKLMNPQRSTVWXYZ";
static const char LC_BUNDLE_INFO[] = "link_code_pairing_key_bundle_encryption_key";

/* salt32 || iv16 || AES-CTR(PBKDF2(code, salt), iv, pub) */
static int lc_wrap(wa_client *c, const uint8_t pub[32], uint8_t out[80])
{
    uint8_t key[32];
    int rc = wa_random(c->cfg.crypto, out, 48);
    if (rc == WA_OK)
        rc = wa_pbkdf2_sha256((const uint8_t *)c->lc_code, 8, out, 32, LC_ITERATIONS, key, 32);
    if (rc == WA_OK) rc = wa_aes_ctr(key, out + 32, pub, 32, out + 48);
    wa_wipe(key, sizeof(key));
    return rc;
}

static int lc_unwrap(wa_client *c, const uint8_t in[80], uint8_t pub[32])
{
    uint8_t key[32];
    int rc = wa_pbkdf2_sha256((const uint8_t *)c->lc_code, 8, in, 32, LC_ITERATIONS, key, 32);
    if (rc == WA_OK) rc = wa_aes_ctr(key, in + 32, in + 48, 32, pub);
    wa_wipe(key, sizeof(key));
    return rc;
}

static void lc_send_hello(wa_client *c)
{
    uint8_t raw[5], wrapped[80];
    wa_random(c->cfg.crypto, raw, sizeof(raw));
    /* 40 bits -> 8 Crockford base32 characters */
    uint64_t v = 0;
    for (int i = 0; i < 5; i++)
        v = v << 8 | raw[i];
    for (int i = 0; i < 8; i++)
        c->lc_code[i] = CROCKFORD[(v >> (35 - 5 * i)) & 31];
    c->lc_code[8] = '\0';
    if (wa_keypair_generate(c->cfg.crypto, &c->lc_eph) != WA_OK ||
        lc_wrap(c, c->lc_eph.pub, wrapped) != WA_OK) {
        emit(c, WA_EV_ERROR, 0, 0, "cannot prepare the pairing code");
        return;
    }
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *iq = new_iq(c, &a, WA_SERVER_PN_AT, "set", "md", IQ_LINK_HELLO, 0);
    wa_node *reg = wa_node_new(&a, "link_code_companion_reg");
    char jid[48];
    snprintf(jid, sizeof(jid), "%s@" WA_SERVER_PN, c->lc_phone);
    wa_node_set_attr(&a, reg, "jid", jid);
    wa_node_set_attr(&a, reg, "stage", "companion_hello");
    wa_node_set_attr(&a, reg, "should_show_push_notification", "true");
    wa_node_add_child(
        &a, reg, bytes_node(&a, "link_code_pairing_wrapped_companion_ephemeral_pub", wrapped, 80));
    wa_node_add_child(&a, reg,
                      bytes_node(&a, "companion_server_auth_key_pub", c->dev.noise.pub, 32));
    wa_node *platform = wa_node_new(&a, "companion_platform_id");
    wa_node_set_string(&a, platform, PLATFORM_ID);
    wa_node_add_child(&a, reg, platform);
    wa_node *display = wa_node_new(&a, "companion_platform_display");
    wa_node_set_string(&a, display, "Chrome (wabridge)");
    wa_node_add_child(&a, reg, display);
    wa_node *nonce = wa_node_new(&a, "link_code_pairing_nonce");
    wa_node_set_string(&a, nonce, "0");
    wa_node_add_child(&a, reg, nonce);
    wa_node_add_child(&a, iq, reg);
    wa_client_send_node(c, iq);
    wb_arena_free(&a);
    c->lc_sent = true;
    /* the code is shown when the server answers (lc_on_registered): before that the phone has
     * nothing to match it with, and a user who types it at once is told no companion waits */
}

/* The server's answer to companion_hello: the request is registered under a pairing ref, which
 * the phone's primary_hello names; now the code may be shown. */
static void lc_on_registered(wa_client *c, const wa_node *n, int64_t now)
{
    const wa_node *reg = wa_node_child(n, "link_code_companion_reg");
    const wa_node *ref = reg ? wa_node_child(reg, "link_code_pairing_ref") : NULL;
    if (!c->lc_sent || !ref || ref->data_len == 0 || ref->data_len >= sizeof(c->lc_ref)) {
        c->stopped = true;
        emit(c, WA_EV_ERROR, 0, 0, "the server did not register the pairing code");
        drop(c, now, 0, -1, "pairing by code failed");
        return;
    }
    memcpy(c->lc_ref, ref->data, ref->data_len);
    c->lc_ref[ref->data_len] = '\0';
    emit(c, WA_EV_PAIR_CODE, 0, 0, "%s", c->lc_code);
}

int wa_client_pair_phone(wa_client *c, const char *phone, int64_t now)
{
    size_t n = strlen(phone);
    if (c->dev.paired || n == 0 || n >= sizeof(c->lc_phone)) return WA_ERR_STATE;
    for (size_t i = 0; i < n; i++)
        if (phone[i] < '0' || phone[i] > '9') return WA_ERR_INVALID;
    memcpy(c->lc_phone, phone, n + 1);
    if (c->state == WA_CLIENT_PAIRING && !c->lc_sent) lc_send_hello(c);
    return WA_OK;
}

/* The phone's answer: primary_hello with its wrapped ephemeral key and its identity. */
static void lc_on_primary_hello(wa_client *c, const wa_node *n, const wa_node *reg, wb_arena *a)
{
    wa_node *ack = wa_node_new(a, "ack");
    wa_node_set_attr(a, ack, "id", wa_node_attr(n, "id") ? wa_node_attr(n, "id") : "");
    wa_node_set_attr(a, ack, "to", WA_SERVER_PN);
    wa_node_set_attr(a, ack, "class", "notification");
    wa_node_set_attr(a, ack, "type", "link_code_companion_reg");
    const wa_node *ref = wa_node_child(reg, "link_code_pairing_ref");
    const wa_node *pid = wa_node_child(reg, "primary_identity_pub");
    const wa_node *wrapped = wa_node_child(reg, "link_code_pairing_wrapped_primary_ephemeral_pub");
    if (!c->lc_ref[0] || !ref || ref->data_len != strlen(c->lc_ref) ||
        memcmp(ref->data, c->lc_ref, ref->data_len) != 0 || !pid || pid->data_len != 32 ||
        !wrapped || wrapped->data_len != 80) {
        wa_client_send_node(c, ack);
        emit(c, WA_EV_ERROR, 0, 0, "malformed primary_hello from the phone");
        return;
    }
    uint8_t primary_eph[32], shared[32], id_shared[32], random[32], key[32], plain[96];
    uint8_t bundle[32 + 12 + 96 + 16], ikm[96];
    int rc = lc_unwrap(c, wrapped->data, primary_eph);
    if (rc == WA_OK) rc = wa_x25519(c->cfg.crypto, c->lc_eph.priv, primary_eph, shared);
    if (rc == WA_OK) rc = wa_random(c->cfg.crypto, random, 32);
    if (rc == WA_OK) rc = wa_random(c->cfg.crypto, bundle, 32 + 12); /* salt, iv */
    if (rc == WA_OK)
        rc = wa_hkdf_sha256(shared, 32, bundle, 32, (const uint8_t *)LC_BUNDLE_INFO,
                            sizeof(LC_BUNDLE_INFO) - 1, key, 32);
    memcpy(plain, c->dev.identity.pub, 32);
    memcpy(plain + 32, pid->data, 32);
    memcpy(plain + 64, random, 32);
    if (rc == WA_OK) rc = wa_aes_gcm_encrypt(key, bundle + 32, 12, NULL, 0, plain, 96, bundle + 44);
    if (rc == WA_OK) rc = wa_x25519(c->cfg.crypto, c->dev.identity.priv, pid->data, id_shared);
    memcpy(ikm, shared, 32);
    memcpy(ikm + 32, id_shared, 32);
    memcpy(ikm + 64, random, 32);
    if (rc == WA_OK)
        rc = wa_hkdf_sha256(ikm, 96, NULL, 0, (const uint8_t *)"adv_secret", 10, c->dev.adv_secret,
                            32);
    if (rc == WA_OK && c->cfg.store->device_save(c->cfg.store->ctx, &c->dev) != WA_STORE_OK)
        rc = WA_ERR_STATE;
    wa_wipe(shared, sizeof(shared));
    wa_wipe(id_shared, sizeof(id_shared));
    wa_wipe(key, sizeof(key));
    wa_wipe(ikm, sizeof(ikm));
    wa_wipe(random, sizeof(random));
    if (rc != WA_OK) {
        wa_client_send_node(c, ack);
        emit(c, WA_EV_ERROR, rc, 0, "pairing by code failed: %s", wa_strerror(rc));
        return;
    }
    wa_node *iq = new_iq(c, a, WA_SERVER_PN_AT, "set", "md", IQ_LINK_FINISH, 0);
    wa_node *fin = wa_node_new(a, "link_code_companion_reg");
    char jid[48];
    snprintf(jid, sizeof(jid), "%s@" WA_SERVER_PN, c->lc_phone);
    wa_node_set_attr(a, fin, "jid", jid);
    wa_node_set_attr(a, fin, "stage", "companion_finish");
    wa_node_add_child(
        a, fin, bytes_node(a, "link_code_pairing_wrapped_key_bundle", bundle, sizeof(bundle)));
    wa_node_add_child(a, fin, bytes_node(a, "companion_identity_public", c->dev.identity.pub, 32));
    wa_node_add_child(a, fin, bytes_node(a, "link_code_pairing_ref", ref->data, ref->data_len));
    wa_node_add_child(a, iq, fin);
    wa_client_send_node(c, iq);
    wa_client_send_node(c, ack);
}

static void on_pair_device(wa_client *c, const wa_node *iq, const wa_node *pd, wb_arena *a,
                           int64_t now)
{
    answer_iq(c, iq, NULL, a);
    c->nrefs = c->next_ref = 0;
    for (size_t i = 0; i < pd->nchildren && c->nrefs < MAX_REFS; i++) {
        const wa_node *ref = pd->children[i];
        if (strcmp(ref->tag, "ref") != 0 || ref->data_len == 0 ||
            ref->data_len >= sizeof(c->refs[0]))
            continue;
        memcpy(c->refs[c->nrefs], ref->data, ref->data_len);
        c->refs[c->nrefs][ref->data_len] = '\0';
        c->nrefs++;
    }
    c->state = WA_CLIENT_PAIRING;
    c->handshake_deadline = 0;
    show_next_qr(c, now);
    if (c->lc_phone[0] && !c->lc_sent && c->state == WA_CLIENT_PAIRING) lc_send_hello(c);
}

/* Verifies pair-success and answers with our device signature; saves the paired identity. */
static int on_pair_success(wa_client *c, const wa_node *iq, const wa_node *ps, wb_arena *a,
                           int64_t now, char *why, size_t whylen)
{
    const wa_node *di = wa_node_child(ps, "device-identity");
    const wa_node *dev = wa_node_child(ps, "device");
    const wa_node *platform = wa_node_child(ps, "platform");
    const wa_node *biz = wa_node_child(ps, "biz");
    if (!di || di->kind != WA_CONTENT_BYTES || !dev || !wa_node_attr(dev, "jid")) {
        snprintf(why, whylen, "pair-success without device-identity or device");
        return WA_ERR_PROTO;
    }
    proto_ADVSignedDeviceIdentityHMAC h = proto_ADVSignedDeviceIdentityHMAC_init_zero;
    pb_istream_t is = pb_istream_from_buffer(di->data, di->data_len);
    if (!pb_decode(&is, proto_ADVSignedDeviceIdentityHMAC_fields, &h) || h.hmac.size != 32) {
        snprintf(why, whylen, "device-identity is not an ADVSignedDeviceIdentityHMAC");
        return WA_ERR_PROTO;
    }
    bool hosted = h.has_accountType && h.accountType == proto_ADVEncryptionType_HOSTED;
    uint8_t mac_in[2 + sizeof(h.details.bytes)], mac[32];
    size_t n = 0;
    if (hosted) {
        memcpy(mac_in, ADV_HOSTED_ACCOUNT_SIG_PREFIX, 2);
        n = 2;
    }
    memcpy(mac_in + n, h.details.bytes, h.details.size);
    wa_hmac_sha256(c->dev.adv_secret, 32, mac_in, n + h.details.size, mac);
    if (!wa_ct_equal(mac, h.hmac.bytes, 32)) {
        snprintf(why, whylen, "pair-success HMAC does not match our ADV secret");
        return WA_ERR_AUTH;
    }
    proto_ADVSignedDeviceIdentity sdi = proto_ADVSignedDeviceIdentity_init_zero;
    is = pb_istream_from_buffer(h.details.bytes, h.details.size);
    if (!pb_decode(&is, proto_ADVSignedDeviceIdentity_fields, &sdi) ||
        sdi.accountSignatureKey.size != 32 || sdi.accountSignature.size != 64) {
        snprintf(why, whylen, "malformed ADVSignedDeviceIdentity");
        return WA_ERR_PROTO;
    }
    proto_ADVDeviceIdentity ident = proto_ADVDeviceIdentity_init_zero;
    is = pb_istream_from_buffer(sdi.details.bytes, sdi.details.size);
    if (!pb_decode(&is, proto_ADVDeviceIdentity_fields, &ident)) {
        snprintf(why, whylen, "malformed ADVDeviceIdentity");
        return WA_ERR_PROTO;
    }
    bool hosted_dev = ident.has_deviceType && ident.deviceType == proto_ADVEncryptionType_HOSTED;
    /* the account (the phone) signed [6,0] || details || our identity key */
    uint8_t msg[2 + sizeof(sdi.details.bytes) + 64];
    memcpy(msg, hosted_dev ? ADV_HOSTED_ACCOUNT_SIG_PREFIX : ADV_ACCOUNT_SIG_PREFIX, 2);
    memcpy(msg + 2, sdi.details.bytes, sdi.details.size);
    memcpy(msg + 2 + sdi.details.size, c->dev.identity.pub, 32);
    if (!wa_xeddsa_verify(c->cfg.crypto, sdi.accountSignatureKey.bytes, msg,
                          2 + sdi.details.size + 32, sdi.accountSignature.bytes)) {
        snprintf(why, whylen, "the account signature of pair-success does not verify");
        return WA_ERR_AUTH;
    }
    /* our device signature: [6,1] || details || our identity key || account signature key */
    memcpy(msg, ADV_DEVICE_SIG_PREFIX, 2);
    memcpy(msg + 2 + sdi.details.size + 32, sdi.accountSignatureKey.bytes, 32);
    sdi.has_deviceSignature = true;
    sdi.deviceSignature.size = 64;
    int rc = wa_xeddsa_sign(c->cfg.crypto, c->dev.identity.priv, msg, 2 + sdi.details.size + 64,
                            sdi.deviceSignature.bytes);
    if (rc != WA_OK) return rc;

    /* save the paired identity before answering: a crash now means pairing again, not a device
     * the phone lists that we cannot use */
    wa_device *d = &c->dev;
    d->adv_details_len = sdi.details.size;
    memcpy(d->adv_details, sdi.details.bytes, sdi.details.size);
    memcpy(d->adv_account_sig_key, sdi.accountSignatureKey.bytes, 32);
    memcpy(d->adv_account_sig, sdi.accountSignature.bytes, 64);
    memcpy(d->adv_device_sig, sdi.deviceSignature.bytes, 64);
    snprintf(d->pn, sizeof(d->pn), "%s", wa_node_attr(dev, "jid"));
    snprintf(d->lid, sizeof(d->lid), "%s",
             wa_node_attr(dev, "lid") ? wa_node_attr(dev, "lid") : "");
    snprintf(d->platform, sizeof(d->platform), "%s",
             platform && wa_node_attr(platform, "name") ? wa_node_attr(platform, "name") : "");
    snprintf(d->business_name, sizeof(d->business_name), "%s",
             biz && wa_node_attr(biz, "name") ? wa_node_attr(biz, "name") : "");
    d->paired = true;
    if (c->cfg.store->device_save(c->cfg.store->ctx, d) != WA_STORE_OK) {
        d->paired = false;
        snprintf(why, whylen, "cannot save the paired device");
        return WA_ERR_STATE;
    }

    /* reply: the signed identity without the account signature key */
    sdi.has_accountSignatureKey = false;
    uint8_t enc[512];
    size_t enc_len;
    rc = pb_encode_buf(proto_ADVSignedDeviceIdentity_fields, &sdi, enc, sizeof(enc), &enc_len);
    if (rc != WA_OK) return rc;
    wa_node *sign = wa_node_new(a, "pair-device-sign");
    wa_node *didn = bytes_node(a, "device-identity", enc, enc_len);
    char key_index[16];
    snprintf(key_index, sizeof(key_index), "%u", ident.keyIndex);
    wa_node_set_attr(a, didn, "key-index", key_index);
    wa_node_add_child(a, sign, didn);
    answer_iq(c, iq, sign, a);
    c->qr_deadline = 0;
    emit(c, WA_EV_PAIR_SUCCESS, 0, 0, "%s", d->pn);
    return WA_OK;
}

static void upload_prekeys(wa_client *c, size_t count)
{
    wa_store *st = c->cfg.store;
    wa_prekey *keys = calloc(count, sizeof(*keys));
    if (!keys) return;
    /* reuse keys generated earlier but never uploaded, then make new ones */
    size_t have = 0;
    st->prekeys_unuploaded(st->ctx, keys, count, &have);
    for (size_t i = have; i < count; i++) {
        keys[i].id = c->dev.next_prekey_id++ & 0xFFFFFF;
        wa_keypair_generate(c->cfg.crypto, &keys[i].key);
        keys[i].uploaded = false;
    }
    if (st->prekeys_save(st->ctx, keys + have, count - have) != WA_STORE_OK ||
        st->device_save(st->ctx, &c->dev) != WA_STORE_OK) {
        emit(c, WA_EV_ERROR, 0, 0, "cannot store new prekeys; not uploading");
        free(keys);
        return;
    }
    wb_arena a;
    wb_arena_init(&a, 1 << 16);
    uint32_t max_id = 0;
    for (size_t i = 0; i < count; i++)
        if (keys[i].id > max_id) max_id = keys[i].id;
    wa_node *iq = new_iq(c, &a, WA_SERVER_PN_AT, "set", "encrypt", IQ_UPLOAD, max_id);
    uint8_t b[4];
    put_be(b, c->dev.registration_id, 4);
    wa_node_add_child(&a, iq, bytes_node(&a, "registration", b, 4));
    wa_node_add_child(&a, iq, bytes_node(&a, "type", "\x05", 1));
    wa_node_add_child(&a, iq, bytes_node(&a, "identity", c->dev.identity.pub, 32));
    wa_node *list = wa_node_new(&a, "list");
    for (size_t i = 0; i < count; i++) {
        wa_node *key = wa_node_new(&a, "key");
        put_be(b, keys[i].id, 3);
        wa_node_add_child(&a, key, bytes_node(&a, "id", b, 3));
        wa_node_add_child(&a, key, bytes_node(&a, "value", keys[i].key.pub, 32));
        wa_node_add_child(&a, list, key);
    }
    wa_node_add_child(&a, iq, list);
    wa_node *skey = wa_node_new(&a, "skey");
    put_be(b, c->dev.signed_prekey_id, 3);
    wa_node_add_child(&a, skey, bytes_node(&a, "id", b, 3));
    wa_node_add_child(&a, skey, bytes_node(&a, "value", c->dev.signed_prekey.pub, 32));
    wa_node_add_child(&a, skey, bytes_node(&a, "signature", c->dev.signed_prekey_sig, 64));
    wa_node_add_child(&a, iq, skey);
    wa_client_send_node(c, iq);
    wb_arena_free(&a);
    wa_wipe(keys, count * sizeof(*keys));
    free(keys);
}

static void schedule_ping(wa_client *c, int64_t now)
{
    c->next_ping = now + WA_PING_MIN_MS + random_u32(c) % (WA_PING_MAX_MS - WA_PING_MIN_MS + 1);
}

static void remember_lid_pair(wa_client *c, const char *lid, const char *pn);

static void on_success(wa_client *c, const wa_node *n, int64_t now)
{
    const char *lid = wa_node_attr(n, "lid");
    if (lid && strcmp(lid, c->dev.lid) != 0) {
        snprintf(c->dev.lid, sizeof(c->dev.lid), "%s", lid);
        c->cfg.store->device_save(c->cfg.store->ctx, &c->dev);
    }
    /* our own pair: our sessions with our other devices are kept by LID like anyone's */
    char lid_user[WA_JID_STR_MAX], pn_user[WA_JID_STR_MAX];
    if (user_of(c->dev.lid, lid_user, sizeof(lid_user)) &&
        user_of(c->dev.pn, pn_user, sizeof(pn_user)))
        remember_lid_pair(c, lid_user, pn_user);
    c->state = WA_CLIENT_CONNECTED;
    c->handshake_deadline = 0;
    c->connected_since = now;
    emit(c, WA_EV_CONNECTED, 0, 0, "%s", c->dev.lid);
    send_simple_iq(c, WA_SERVER_PN_AT, "get", "encrypt", "count", IQ_COUNT);
    schedule_ping(c, now);
}

static void on_usync_result(wa_client *c, const wa_node *n, send_job *j, wb_arena *a);
static void on_keys_result(wa_client *c, const wa_node *n, send_job *j, wb_arena *a);
static void on_send_info_result(wa_client *c, const wa_node *n, send_job *j, wb_arena *a);
static void on_group_answer(wa_client *c, const wa_node *n, uint32_t slot);
static void on_group_notification(wa_client *c, const wa_node *n, wb_arena *a);
static void on_devices_notification(wa_client *c, const wa_node *n, wb_arena *a);
static int group_call_participating(wa_client *c, uint32_t req_id);
static void on_retry_keys(wa_client *c, const wa_node *n, uint32_t slot, bool ok);

static void on_iq_result(wa_client *c, const wa_node *n, int64_t now)
{
    pending_iq p = take_pending(c, wa_node_attr(n, "id"));
    const char *type = wa_node_attr(n, "type");
    bool ok = type && strcmp(type, "result") == 0;
    wa_store *st = c->cfg.store;
    switch (p.kind) {
    case IQ_COUNT: {
        const wa_node *count = wa_node_child(n, "count");
        const char *v = count ? wa_node_attr(count, "value") : NULL;
        long have = v ? strtol(v, NULL, 10) : 0;
        if (ok && have < WA_PREKEY_MIN)
            upload_prekeys(c, have == 0 ? WA_PREKEY_UPLOAD_FIRST : WA_PREKEY_UPLOAD_MORE);
        send_simple_iq(c, WA_SERVER_PN_AT, "set", "passive", "active", IQ_PASSIVE);
        break;
    }
    case IQ_UPLOAD:
        if (ok)
            st->prekeys_mark_uploaded(st->ctx, p.arg);
        else
            emit(c, WA_EV_ERROR, 0, 0, "the server refused our prekeys");
        break;
    case IQ_PING: c->ping_deadline = 0; break;
    case IQ_USYNC:
    case IQ_KEYS:
    case IQ_SEND_INFO: {
        send_job *j =
            c->sl && p.arg < c->sl->njobs && c->sl->jobs[p.arg]->used ? c->sl->jobs[p.arg] : NULL;
        if (!j) break;
        wb_arena a;
        wb_arena_init(&a, 0);
        if (p.kind == IQ_SEND_INFO)
            on_send_info_result(c, n, j, &a); /* its error code tells why */
        else if (!ok)
            job_fail(c, j, p.kind == IQ_USYNC ? "device list query refused" : "key query refused");
        else if (p.kind == IQ_USYNC)
            on_usync_result(c, n, j, &a);
        else
            on_keys_result(c, n, j, &a);
        wb_arena_free(&a);
        break;
    }
    case IQ_GROUP: on_group_answer(c, n, p.arg); break;
    case IQ_RETRY_KEYS: on_retry_keys(c, n, p.arg, ok); break;
    case IQ_LINK_HELLO:
    case IQ_LINK_FINISH:
        if (ok && p.kind == IQ_LINK_HELLO) lc_on_registered(c, n, now);
        if (!ok) {
            c->stopped = true;
            emit(c, WA_EV_ERROR, 0, 0, "the phone refused the pairing code");
            drop(c, now, 0, -1, "pairing by code failed");
        }
        break;
    case IQ_LOGOUT: logged_out(c, now, 0, "logged out"); break;
    case IQ_PASSIVE:
    case IQ_DIGEST:
    case IQ_DIRTY:
    case IQ_NONE: break;
    }
}

static void on_stream_error(wa_client *c, const wa_node *n, int64_t now)
{
    const char *code_s = wa_node_attr(n, "code");
    int code = code_s ? atoi(code_s) : 0;
    bool replaced = false;
    const wa_node *conflict = wa_node_child(n, "conflict");
    if (conflict) {
        const char *t = wa_node_attr(conflict, "type");
        replaced = t && strcmp(t, "replaced") == 0;
        if (!code) code = 409;
    }
    if (code == 515) { /* restart: after pairing, or the server's request */
        drop(c, now, 515, 0, "the server asked for a restart");
    } else if (code == 401 || code == 516) {
        logged_out(c, now, code, code == 516 ? "this device was removed" : "logged out");
    } else if (code == 409 || replaced) {
        c->stopped = true;
        drop(c, now, 409, -1, "another client connected with this device (replaced)");
    } else if (code == 429) {
        int64_t delay = fail_backoff(c, now); /* rate limited: wait four times as long */
        drop(c, now, 429, delay * 4 > WA_BACKOFF_MAX_MS * 4 ? WA_BACKOFF_MAX_MS * 4 : delay * 4,
             "rate limited by the server");
    } else {
        drop(c, now, code, fail_backoff(c, now), "stream error");
    }
}

static void on_failure(wa_client *c, const wa_node *n, int64_t now)
{
    const char *r = wa_node_attr(n, "reason");
    int reason = r ? atoi(r) : 0;
    switch (reason) {
    case 401:
    case 403:
    case 406: logged_out(c, now, reason, "the server refused the login"); break;
    case 405:
        c->stopped = true;
        drop(c, now, reason, -1, "the server says this client version is outdated");
        break;
    default: drop(c, now, reason, fail_backoff(c, now), "login failed");
    }
}

/* --- shared by sending and retries --- */

/* The stanza attributes WhatsApp Web (and whatsmeow) give a content: type "reaction" for
 * reactions; edit 1 (edit), 7 (revoke of our own message, or a reaction removed), 8 (an admin's
 * revoke of someone else's); decrypt-fail="hide" on the <enc> of all of these. */
static msg_attrs msg_attrs_of(const wa_msg *m)
{
    msg_attrs a = {.type = m->kind == WA_MSG_REACTION ? "reaction" : "text"};
    if (m->kind == WA_MSG_EDIT)
        a.edit = "1";
    else if (m->kind == WA_MSG_REVOKE)
        a.edit = m->target.from_me ? "7" : "8";
    else if (m->kind == WA_MSG_REACTION && !m->reaction[0])
        a.edit = "7";
    a.hide_fail = a.edit != NULL || m->kind == WA_MSG_REACTION;
    return a;
}

/* <message id to type [edit]> for content with attributes a. */
static wa_node *message_stanza(wb_arena *ar, const char *id, const char *to, const msg_attrs *a)
{
    wa_node *msg = wa_node_new(ar, "message");
    wa_node_set_attr(ar, msg, "id", id);
    wa_node_set_attr(ar, msg, "to", to);
    wa_node_set_attr(ar, msg, "type", a->type);
    if (a->edit) wa_node_set_attr(ar, msg, "edit", a->edit);
    return msg;
}

/* <enc v="2" type="pkmsg|msg" [decrypt-fail="hide"]> with the ciphertext. */
static wa_node *enc_node(wb_arena *ar, const wb_buf *ct, wa_signal_type type, const msg_attrs *a)
{
    wa_node *enc = wa_node_new(ar, "enc");
    wa_node_set_attr(ar, enc, "v", "2");
    wa_node_set_attr(ar, enc, "type", type == WA_SIGNAL_PKMSG ? "pkmsg" : "msg");
    if (a->hide_fail) wa_node_set_attr(ar, enc, "decrypt-fail", "hide");
    wa_node_set_bytes(ar, enc, ct->data, ct->len);
    return enc;
}

/* <device-identity>: our ADV identity (without the account signature key), as pair-device-sign
 * sent it; NULL before pairing. */
static wa_node *device_identity_node(wa_client *c, wb_arena *a)
{
    if (!c->dev.paired) return NULL;
    proto_ADVSignedDeviceIdentity sdi = proto_ADVSignedDeviceIdentity_init_zero;
    sdi.has_details = sdi.has_accountSignature = sdi.has_deviceSignature = true;
    sdi.details.size = (pb_size_t)c->dev.adv_details_len;
    memcpy(sdi.details.bytes, c->dev.adv_details, c->dev.adv_details_len);
    sdi.accountSignature.size = 64;
    memcpy(sdi.accountSignature.bytes, c->dev.adv_account_sig, 64);
    sdi.deviceSignature.size = 64;
    memcpy(sdi.deviceSignature.bytes, c->dev.adv_device_sig, 64);
    uint8_t enc[512];
    size_t enc_len;
    if (pb_encode_buf(proto_ADVSignedDeviceIdentity_fields, &sdi, enc, sizeof(enc), &enc_len) !=
        WA_OK)
        return NULL;
    return bytes_node(a, "device-identity", enc, enc_len);
}

static bool bytes_of(const wa_node *parent, const char *tag, size_t want, const uint8_t **out)
{
    const wa_node *x = wa_node_child(parent, tag);
    if (!x || x->kind != WA_CONTENT_BYTES || (want && x->data_len != want)) return false;
    *out = x->data;
    return true;
}

static uint32_t be_uint(const uint8_t *p, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* A <user> of an `encrypt <key>` answer (or a retry receipt's keys) as a bundle for the device
 * jid (Signal address name, device); a changed identity key is raised. */
static int process_bundle_node(wa_client *c, const wa_node *u, const wa_jid *jid, const char *name,
                               uint32_t device)
{
    const uint8_t *reg, *ident, *sid, *sval, *ssig, *kid, *kval;
    const wa_node *skey = wa_node_child(u, "skey"), *key = wa_node_child(u, "key");
    if (!bytes_of(u, "registration", 4, &reg) || !bytes_of(u, "identity", 32, &ident) || !skey ||
        !bytes_of(skey, "id", 3, &sid) || !bytes_of(skey, "value", 32, &sval) ||
        !bytes_of(skey, "signature", 64, &ssig))
        return WA_ERR_PROTO;
    wa_prekey_bundle b = {.registration_id = be_uint(reg, 4), .signed_prekey_id = be_uint(sid, 3)};
    memcpy(b.identity, ident, 32);
    memcpy(b.signed_prekey, sval, 32);
    memcpy(b.signature, ssig, 64);
    if (key && bytes_of(key, "id", 3, &kid) && bytes_of(key, "value", 32, &kval)) {
        b.has_prekey = true;
        b.prekey_id = be_uint(kid, 3);
        memcpy(b.prekey, kval, 32);
    }
    int rc = wa_signal_process_bundle(c->sig, name, device, &b);
    char js[WA_JID_STR_MAX];
    wa_jid_format(jid, js, sizeof(js));
    if (rc != WA_OK) emit(c, WA_EV_ERROR, rc, 0, "refused the keys of %s", js);
    identity_check(c, js);
    return rc;
}

/* --- retry receipts --- */

#define WA_RETRY_MAX 5

/* The keys a peer needs to start a new session with us: a fresh one-time prekey, the signed
 * prekey, our identity and our ADV identity. */
static wa_node *retry_keys(wa_client *c, wb_arena *a)
{
    wa_prekey pk = {.id = c->dev.next_prekey_id++ & 0xFFFFFF, .uploaded = true};
    wa_store *st = c->cfg.store;
    if (wa_keypair_generate(c->cfg.crypto, &pk.key) != WA_OK ||
        st->prekeys_save(st->ctx, &pk, 1) != WA_STORE_OK ||
        st->device_save(st->ctx, &c->dev) != WA_STORE_OK)
        return NULL;
    uint8_t b[4];
    wa_node *keys = wa_node_new(a, "keys");
    wa_node_add_child(a, keys, bytes_node(a, "type", "\x05", 1));
    wa_node_add_child(a, keys, bytes_node(a, "identity", c->dev.identity.pub, 32));
    wa_node *key = wa_node_new(a, "key");
    put_be(b, pk.id, 3);
    wa_node_add_child(a, key, bytes_node(a, "id", b, 3));
    wa_node_add_child(a, key, bytes_node(a, "value", pk.key.pub, 32));
    wa_node_add_child(a, keys, key);
    wa_node *skey = wa_node_new(a, "skey");
    put_be(b, c->dev.signed_prekey_id, 3);
    wa_node_add_child(a, skey, bytes_node(a, "id", b, 3));
    wa_node_add_child(a, skey, bytes_node(a, "value", c->dev.signed_prekey.pub, 32));
    wa_node_add_child(a, skey, bytes_node(a, "signature", c->dev.signed_prekey_sig, 64));
    wa_node_add_child(a, keys, skey);
    wa_node *di = device_identity_node(c, a);
    if (di) wa_node_add_child(a, keys, di);
    wa_wipe(&pk, sizeof(pk));
    return keys;
}

/* Asks the sender to encrypt the message again. False when we gave up (too many retries). */
static bool send_retry_receipt(wa_client *c, const wa_node *n, const wa_received *r, wb_arena *a)
{
    int slot = -1;
    for (int i = 0; i < 32; i++)
        if (strcmp(c->retries[i].id, r->id) == 0) slot = i;
    if (slot < 0) {
        slot = c->next_retry;
        c->next_retry = (c->next_retry + 1) % 32;
        snprintf(c->retries[slot].id, sizeof(c->retries[slot].id), "%s", r->id);
        c->retries[slot].count = 0;
    }
    int count = ++c->retries[slot].count;
    if (count > WA_RETRY_MAX) return false;
    wa_node *rec = wa_recv_receipt(a, n);
    wa_node_set_attr(a, rec, "type", "retry");
    const char *recipient = wa_node_attr(n, "recipient");
    if (recipient) wa_node_set_attr(a, rec, "recipient", recipient);
    wa_node *retry = wa_node_new(a, "retry");
    char cnt[16];
    snprintf(cnt, sizeof(cnt), "%d", count);
    wa_node_set_attr(a, retry, "count", cnt);
    wa_node_set_attr(a, retry, "id", r->id);
    wa_node_set_attr(a, retry, "t", wa_node_attr(n, "t") ? wa_node_attr(n, "t") : "0");
    wa_node_set_attr(a, retry, "v", "1");
    wa_node_add_child(a, rec, retry);
    uint8_t b[4];
    put_be(b, c->dev.registration_id, 4);
    wa_node_add_child(a, rec, bytes_node(a, "registration", b, 4));
    /* keys from the second attempt, or at once when we have no session to speak of */
    wa_jid sender;
    char name[WA_JID_STR_MAX];
    uint32_t device;
    bool no_session = wa_jid_parse_cstr(r->sender, &sender) == WA_OK &&
                      wa_signal_address(&sender, name, sizeof(name), &device) == WA_OK &&
                      !wa_signal_has_session(c->sig, name, device);
    if (count > 1 || no_session) {
        wa_node *keys = retry_keys(c, a);
        if (keys) wa_node_add_child(a, rec, keys);
    }
    wa_client_send_node(c, rec);
    return true;
}

/* A peer could not decrypt our message: start again from the keys it sent (if any) and send the
 * stored plaintext to that device alone. In a group (from = the group, participant = the device)
 * the content goes pairwise with our current sender key (SKDM) added, as <message to=group
 * participant=device>. The peer's device list may have changed: it is asked again next time. */
static bool retry_fetch_keys(wa_client *c, const wa_node *n, const char *device_jid, wb_arena *a);

static void on_retry_receipt(wa_client *c, const wa_node *n, wb_arena *a, bool keys_fetched)
{
    const char *id = wa_node_attr(n, "id");
    const char *from =
        wa_node_attr(n, "participant") ? wa_node_attr(n, "participant") : wa_node_attr(n, "from");
    const wa_node *retry = wa_node_child(n, "retry");
    wa_jid dev, fj;
    char name[WA_JID_STR_MAX];
    uint32_t device;
    if (!id || !from || !retry || wa_jid_parse_cstr(from, &dev) != WA_OK ||
        wa_signal_address(&dev, name, sizeof(name), &device) != WA_OK)
        return;
    const char *count_s = wa_node_attr(retry, "count");
    int count = count_s ? atoi(count_s) : 1;
    if (count > WA_RETRY_MAX) return;
    devices_forget(c, from);
    const char *group = wa_node_attr(n, "from");
    bool in_group = group && wa_jid_parse_cstr(group, &fj) == WA_OK &&
                    wa_jid_kind_of(&fj) == WA_JID_GROUP && wa_node_attr(n, "participant");
    /* the chat is the peer's user; for our own devices, the destination of the copy; in a
     * group, the group */
    wa_jid chat = wa_jid_to_user(&dev);
    const char *recipient = wa_node_attr(n, "recipient");
    wa_jid rj;
    if (recipient && wa_jid_parse_cstr(recipient, &rj) == WA_OK) chat = wa_jid_to_user(&rj);
    char chat_s[WA_JID_STR_MAX];
    if (in_group)
        snprintf(chat_s, sizeof(chat_s), "%s", group);
    else
        wa_jid_format(&chat, chat_s, sizeof(chat_s));
    wb_buf pt;
    wb_buf_init(&pt);
    wa_store *st = c->cfg.store;
    if (!sent_pending(c, chat_s, id, &pt) &&
        st->sent_load(st->ctx, chat_s, id, &pt) != WA_STORE_OK) {
        emit(c, WA_EV_ERROR, 0, 0, "retry for %s from %s: message not kept", id, from);
        wb_buf_free(&pt);
        return;
    }
    const wa_node *keys = wa_node_child(n, "keys");
    bool no_session = !wa_signal_has_session(c->sig, name, device);
    if (!keys && !keys_fetched && (no_session || (count >= 2 && !smap_has(&c->recreated, from)))) {
        /* no session and no keys: ask the server for the device's, as a send would, and go on
         * when they come; so too, once per connection and device, when it asks again on a session
         * we have (whatsmeow recreates it then) */
        if (!no_session) {
            if (c->recreated.n >= MAX_DEVICE_USERS) smap_clear(&c->recreated);
            smap_put(&c->recreated, from, NULL, 0);
        }
        wb_buf_free(&pt);
        if (!retry_fetch_keys(c, n, from, a))
            emit(c, WA_EV_ERROR, 0, 0, "retry for %s from %s: cannot ask for its keys", id, from);
        return;
    }
    if (keys) {
        /* the receipt's keys and registration make a bundle like an `encrypt <key>` answer */
        wa_node *u = wa_node_new(a, "user");
        const wa_node *reg = wa_node_child(n, "registration");
        if (reg) wa_node_add_child(a, u, (wa_node *)reg);
        for (size_t i = 0; i < keys->nchildren; i++)
            wa_node_add_child(a, u, keys->children[i]);
        process_bundle_node(c, u, &dev, name, device);
    }
    wb_buf body;
    wb_buf_init(&body);
    if (in_group) {
        /* the content, and our sender key so that the device reads what follows */
        group_entry *g = group_find(c, group);
        bool lid = g ? g->lid : strcmp(dev.server, WA_SERVER_LID) == 0;
        wa_jid me;
        char my_name[WA_JID_STR_MAX];
        uint32_t my_device;
        wb_buf skdm;
        wb_buf_init(&skdm);
        wb_buf_append(&body, pt.data, pt.len);
        if (my_group_identity(c, lid, &me, my_name, sizeof(my_name), &my_device) == WA_OK &&
            wa_senderkey_create(c->sk, group, my_name, my_device, &skdm) == WA_OK)
            wa_senderkey_message(group, skdm.data, skdm.len, &body);
        wb_buf_free(&skdm);
    } else if (is_my_user(c, from)) {
        wa_message_device_sent(chat_s, pt.data, pt.len, &body);
    } else {
        wb_buf_append(&body, pt.data, pt.len);
    }
    wb_buf ct;
    wb_buf_init(&ct);
    wa_signal_type type;
    /* the same stanza attributes as the first time: they follow from the content */
    wa_msg content;
    msg_attrs attrs = {.type = "text"};
    if (wa_message_parse(pt.data, pt.len, &content) == WA_OK) {
        attrs = msg_attrs_of(&content);
        wa_msg_free(&content);
    }
    if (wa_signal_encrypt(c->sig, name, device, body.data, body.len, &ct, &type) == WA_OK) {
        wa_node *msg = message_stanza(a, id, in_group ? group : from, &attrs);
        if (in_group) wa_node_set_attr(a, msg, "participant", from);
        wa_node *enc = enc_node(a, &ct, type, &attrs);
        wa_node_set_attr(a, enc, "count", count_s ? count_s : "1");
        wa_node_add_child(a, msg, enc);
        if (type == WA_SIGNAL_PKMSG) {
            wa_node *di = device_identity_node(c, a);
            if (di) wa_node_add_child(a, msg, di);
        }
        wa_client_send_node(c, msg);
    } else {
        emit(c, WA_EV_ERROR, 0, 0, "retry for %s from %s: no session to send it again", id, from);
    }
    wb_buf_free(&ct);
    if (body.data) wa_wipe(body.data, body.len);
    wb_buf_free(&body);
    wa_wipe(pt.data, pt.len);
    wb_buf_free(&pt);
}

/* Keeps the retry receipt n and asks for the keys of device_jid (IQ_RETRY_KEYS). False when no
 * slot or IQ is free. */
static bool retry_fetch_keys(wa_client *c, const wa_node *n, const char *device_jid, wb_arena *a)
{
    int slot = -1;
    for (int i = 0; i < WA_MAX_RETRY_WAITS && slot < 0; i++)
        if (!c->retry_waits[i].used) slot = i;
    if (slot < 0 || !pending_room(c)) return false;
    wb_buf *b = &c->retry_waits[slot].receipt;
    b->len = 0;
    if (wa_binary_encode(n, b) != WA_OK || b->failed) return false;
    wa_node *iq = new_iq(c, a, WA_SERVER_PN_AT, "get", "encrypt", IQ_RETRY_KEYS, (uint32_t)slot);
    wa_node *key = wa_node_new(a, "key");
    wa_node *u = wa_node_new(a, "user");
    wa_node_set_attr(a, u, "jid", device_jid);
    wa_node_add_child(a, key, u);
    wa_node_add_child(a, iq, key);
    if (wa_client_send_node(c, iq) != WA_OK) {
        take_pending(c, wa_node_attr(iq, "id"));
        return false;
    }
    c->retry_waits[slot].used = true;
    return true;
}

/* The keys for a waiting retry receipt: a session from them, then the receipt is answered. */
static void on_retry_keys(wa_client *c, const wa_node *n, uint32_t slot, bool ok)
{
    if (slot >= WA_MAX_RETRY_WAITS || !c->retry_waits[slot].used) return;
    c->retry_waits[slot].used = false;
    wb_arena a;
    wb_arena_init(&a, 0);
    wb_buf *b = &c->retry_waits[slot].receipt;
    wa_node *receipt = NULL;
    if (wa_binary_decode(b->data, b->len, &a, &receipt, NULL) != WA_OK) receipt = NULL;
    b->len = 0;
    const char *from = receipt ? wa_node_attr(receipt, "participant") : NULL;
    if (receipt && !from) from = wa_node_attr(receipt, "from");
    wa_jid dev;
    char name[WA_JID_STR_MAX];
    uint32_t device;
    if (!from || wa_jid_parse_cstr(from, &dev) != WA_OK ||
        wa_signal_address(&dev, name, sizeof(name), &device) != WA_OK) {
        wb_arena_free(&a);
        return;
    }
    const wa_node *list = ok ? wa_node_child(n, "list") : NULL;
    for (size_t i = 0; list && list->kind == WA_CONTENT_LIST && i < list->nchildren; i++) {
        wa_jid jid;
        if (wa_node_attr_jid(list->children[i], "jid", &jid) == WA_OK && wa_jid_equal(&jid, &dev))
            process_bundle_node(c, list->children[i], &dev, name, device);
    }
    if (!wa_signal_has_session(c->sig, name, device))
        emit(c, WA_EV_ERROR, 0, 0, "retry for %s from %s: the server has no keys for it",
             wa_node_attr(receipt, "id") ? wa_node_attr(receipt, "id") : "?", from);
    else
        on_retry_receipt(c, receipt, &a, true);
    wb_arena_free(&a);
}

/* --- messages in --- */

static void inbox_push(wa_client *c, wa_received *r)
{
    if (c->ninbox == c->inbox_cap && c->inbox_head > 0) { /* taken ones make room */
        memmove(c->inbox, c->inbox + c->inbox_head,
                (c->ninbox - c->inbox_head) * sizeof(*c->inbox));
        c->ninbox -= c->inbox_head;
        c->inbox_head = 0;
    }
    if (c->ninbox == c->inbox_cap) {
        size_t cap = c->inbox_cap ? c->inbox_cap * 2 : 8;
        wa_received *grown = realloc(c->inbox, cap * sizeof(*grown));
        if (!grown) {
            wa_received_free(r);
            return;
        }
        c->inbox = grown;
        c->inbox_cap = cap;
    }
    c->inbox[c->ninbox++] = *r;
}

bool wa_client_next_message(wa_client *c, wa_received *out)
{
    if (c->inbox_head == c->ninbox) return false;
    *out = c->inbox[c->inbox_head++]; /* no shifting: a backlog is taken in linear time */
    if (c->inbox_head == c->ninbox) c->inbox_head = c->ninbox = 0;
    return true;
}

/* Stores lid <-> pn (user JIDs) unless the map has it already; once per connection. */
static void remember_lid_pair(wa_client *c, const char *lid, const char *pn)
{
    if (smap_has(&c->lids_seen, lid)) return;
    wa_store *st = c->cfg.store;
    char known[WA_ADDRESS_MAX];
    if (!(st->pn_for_lid(st->ctx, lid, known) == WA_STORE_OK && strcmp(known, pn) == 0)) {
        st->lid_map_save(st->ctx, lid, pn);
        char user[WA_ADDRESS_MAX];
        const char *at = strchr(pn, '@');
        size_t n = at ? (size_t)(at - pn) : strlen(pn);
        if (n < sizeof(user)) {
            memcpy(user, pn, n);
            user[n] = '\0';
        }
        wa_signal_lids_changed(c->sig, n < sizeof(user) ? user : NULL);
    }
    if (c->lids_seen.n >= MAX_DEVICE_USERS) smap_clear(&c->lids_seen);
    smap_put(&c->lids_seen, lid, NULL, 0);
}

/* A stanza that names its sender on both servers (sender_lid / sender_pn, participant_pn /
 * participant_lid) teaches the LID <-> phone number map, written once per connection. Learnt
 * before the stanza is decrypted: the sender's sessions are kept by LID (wa/signal.h). */
static void learn_lid(wa_client *c, const wa_node *n, const char *sender)
{
    static const char *const twins[] = {"sender_lid", "sender_pn", "participant_lid",
                                        "participant_pn"};
    char user[WA_JID_STR_MAX], twin[WA_JID_STR_MAX];
    if (!user_of(sender, user, sizeof(user))) return;
    for (size_t i = 0; i < sizeof(twins) / sizeof(twins[0]); i++) {
        if (!user_of(wa_node_attr(n, twins[i]), twin, sizeof(twin))) continue;
        wa_jid u, t;
        if (wa_jid_parse_cstr(user, &u) != WA_OK || wa_jid_parse_cstr(twin, &t) != WA_OK) return;
        bool lid_first = wa_jid_kind_of(&u) == WA_JID_LID && wa_jid_kind_of(&t) == WA_JID_PN;
        bool pn_first = wa_jid_kind_of(&u) == WA_JID_PN && wa_jid_kind_of(&t) == WA_JID_LID;
        if (!lid_first && !pn_first) continue;
        remember_lid_pair(c, lid_first ? user : twin, lid_first ? twin : user);
        return;
    }
}

static void on_message(wa_client *c, const wa_node *n, wb_arena *a, int64_t now)
{
    wa_received r;
    const char *sender = wa_node_attr(n, "participant");
    learn_lid(c, n, sender ? sender : wa_node_attr(n, "from"));
    int rc = wa_recv_decrypt_sk(c->sig, c->sk, c->cfg.store, n, now, &r);
    if (rc != WA_OK)
        wa_signal_take_identity_change(c->sig); /* rolled back: nothing was kept */
    else
        identity_check(c, r.sender); /* before its message: "security code changed" first */
    if (rc == WA_ERR_STATE) {
        /* not stored: no ack, the server will deliver it again */
        emit(c, WA_EV_ERROR, rc, 0, "cannot store message %s; it will be redelivered",
             wa_node_attr(n, "id") ? wa_node_attr(n, "id") : "?");
        return;
    }
    if (rc != WA_OK) {
        wa_client_send_node(c, wa_recv_ack(a, n)); /* unusable: drop it at the server */
        return;
    }
    /* content: a part to show; handled: a sender key taken, or a part read before (a duplicate
     * whose buffer row the bridge already deleted); failed: a part to ask for again */
    bool content = false, handled = false, failed = false;
    int failure = WA_OK;
    for (size_t i = 0; i < r.nparts; i++) {
        const wa_received_part *part = &r.parts[i];
        if (part->error == WA_OK && !part->skdm_only) {
            content = true;
        } else if (part->error == WA_OK || part->error == WA_ERR_STATE) {
            handled = true;
        } else {
            failed = true;
            failure = part->error;
        }
    }
    if (content || (handled && !failed))
        wa_client_send_node(c, wa_recv_receipt(a, n));
    else if (!failed || !send_retry_receipt(c, n, &r, a))
        wa_client_send_node(c, wa_recv_ack(a, n));
    if (failed && !content)
        emit(c, WA_EV_ERROR, failure, 0, "cannot decrypt message %s from %s: %s (asked again)",
             r.id, r.sender, wa_strerror(failure));
    if (content) {
        inbox_push(c, &r);
        emit(c, WA_EV_MESSAGE, 0, 0, "%s", c->inbox[c->ninbox - 1].id);
    } else {
        wa_received_free(&r);
    }
}

static void on_receipt(wa_client *c, const wa_node *n, wb_arena *a)
{
    const char *id = wa_node_attr(n, "id"), *from = wa_node_attr(n, "from");
    const char *type = wa_node_attr(n, "type"), *participant = wa_node_attr(n, "participant");
    /* another device of ours read a contact's messages: in a 1:1 chat the receipt comes from our
       own JID with the chat as its recipient (a group's comes from the group) */
    const char *chat = from, *recipient = wa_node_attr(n, "recipient");
    if (type && strcmp(type, "read-self") == 0 && recipient && recipient[0]) chat = recipient;
    wa_node *ack = wa_node_new(a, "ack");
    wa_node_set_attr(a, ack, "id", id ? id : "");
    wa_node_set_attr(a, ack, "to", from ? from : WA_SERVER_PN);
    wa_node_set_attr(a, ack, "class", "receipt");
    if (type) wa_node_set_attr(a, ack, "type", type);
    if (participant) wa_node_set_attr(a, ack, "participant", participant);
    wa_client_send_node(c, ack);
    if (type && strcmp(type, "retry") == 0) on_retry_receipt(c, n, a, false);
    /* one event per message: the stanza's id, then the ids its <list> names */
    const wa_node *list = wa_node_child(n, "list");
    size_t nitems = list && list->kind == WA_CONTENT_LIST ? list->nchildren : 0;
    for (size_t i = 0; i <= nitems; i++) {
        const char *mid = id;
        if (i > 0) {
            const wa_node *item = list->children[i - 1];
            mid = strcmp(item->tag, "item") == 0 ? wa_node_attr(item, "id") : NULL;
            if (!mid || !mid[0]) continue;
        }
        emit(c, WA_EV_RECEIPT, 0, 0, "%s %s %s%s%s", mid ? mid : "", type ? type : "",
             chat ? chat : "", participant ? " " : "", participant ? participant : "");
    }
}

/* <presence from [type="unavailable"] [last]>: a contact we subscribed to came or went. */
static void on_presence(wa_client *c, const wa_node *n)
{
    const char *from = wa_node_attr(n, "from"), *type = wa_node_attr(n, "type");
    const char *last = wa_node_attr(n, "last");
    if (!from || (type && strcmp(type, "available") != 0 && strcmp(type, "unavailable") != 0))
        return; /* errors, subscription answers without a state */
    bool available = !type || strcmp(type, "unavailable") != 0;
    int64_t seen = 0;
    if (last && last[0] >= '0' && last[0] <= '9') seen = strtoll(last, NULL, 10); /* not "deny" */
    emit(c, WA_EV_PRESENCE, 0, seen, "%s %s", from, available ? "available" : "unavailable");
}

/* <chatstate from [participant]><composing [media="audio"]/> | <paused/></chatstate>. */
static void on_chat_state(wa_client *c, const wa_node *n)
{
    const char *from = wa_node_attr(n, "from"), *participant = wa_node_attr(n, "participant");
    const wa_node *st = n->kind == WA_CONTENT_LIST && n->nchildren ? n->children[0] : NULL;
    if (!from || !st) return;
    const char *state, *media = wa_node_attr(st, "media");
    if (strcmp(st->tag, "composing") == 0)
        state = media && strcmp(media, "audio") == 0 ? "recording" : "composing";
    else if (strcmp(st->tag, "paused") == 0)
        state = "paused";
    else
        return;
    emit(c, WA_EV_CHAT_STATE, 0, 0, "%s %s %s", from, participant ? participant : from, state);
}

/* --- messages out --- */

/* The slots, allocated at first use; false when out of memory. */
static bool slots(wa_client *c)
{
    if (!c->sl) c->sl = calloc(1, sizeof(*c->sl));
    return c->sl != NULL;
}

/* A free job: one done before, else a new one (NULL when WA_MAX_SENDS are in use, or out of
 * memory). */
static send_job *job_new(wa_client *c)
{
    if (!slots(c)) return NULL;
    client_slots *sl = c->sl;
    send_job *j = NULL;
    uint32_t slot = 0;
    while (slot < sl->njobs && sl->jobs[slot]->used)
        slot++;
    if (slot < sl->njobs) {
        j = sl->jobs[slot];
        wb_buf_free(&j->plaintext);
        free(j->devices);
    } else {
        if (sl->njobs >= WA_MAX_SENDS) return NULL;
        send_job **grown = realloc(sl->jobs, (sl->njobs + 1) * sizeof(*grown));
        if (!grown) return NULL;
        sl->jobs = grown;
        j = malloc(sizeof(*j));
        if (!j) return NULL;
        sl->jobs[sl->njobs++] = j;
    }
    memset(j, 0, sizeof(*j));
    j->used = true;
    j->slot = slot;
    return j;
}

/* The job is over (sent, or failed): its slot is free again. */
static void job_done(wa_client *c, send_job *j)
{
    if (j->waiting) c->sl->nwaiting--;
    j->waiting = false;
    if (j->plaintext.data) wa_wipe(j->plaintext.data, j->plaintext.len);
    wb_buf_free(&j->plaintext);
    free(j->devices);
    j->devices = NULL;
    j->ndevices = j->devices_cap = 0;
    j->used = false;
}

static void job_fail(wa_client *c, send_job *j, const char *why)
{
    emit(c, WA_EV_SEND_FAILED, 0, 0, "%s", j->id);
    emit(c, WA_EV_ERROR, 0, 0, "message %s not sent: %s", j->id, why);
    job_done(c, j);
}

/* A new message id as WhatsApp Web makes them: 3EB0 and 16 upper-case hex digits. */
static void new_message_id(wa_client *c, char id[WA_MESSAGE_ID_MAX])
{
    uint8_t rnd[8];
    wa_random(c->cfg.crypto, rnd, sizeof(rnd));
    memcpy(id, "3EB0", 4);
    wb_hex_encode(rnd, sizeof(rnd), id + 4);
    for (char *p = id; *p; p++)
        if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 'a' + 'A');
}

static void job_start(wa_client *c, send_job *j, wb_arena *a);

/* True when an earlier message to j's chat is still on its way (being prepared, or waiting). */
static bool job_behind(const wa_client *c, const send_job *j)
{
    for (uint32_t i = 0; c->sl && i < c->sl->njobs; i++) {
        const send_job *o = c->sl->jobs[i];
        if (o != j && o->used && strcmp(o->to, j->to) == 0 && (!o->waiting || o->seq < j->seq))
            return true;
    }
    return false;
}

static int job_seq_cmp(const void *x, const void *y)
{
    uint64_t a = (*(send_job *const *)x)->seq, b = (*(send_job *const *)y)->seq;
    return a < b ? -1 : a > b;
}

/* Starts the waiting messages whose turn has come, oldest first, while a request can be made
 * (MAX_PENDING: an answer frees one, and the next node kicks again). One pass in the order they
 * were given is enough: a message is held only by an earlier one to its chat, which the pass met
 * before it (and started, unless that one is held too). */
static void jobs_kick(wa_client *c)
{
    if (c->state != WA_CLIENT_CONNECTED || !c->sl || !c->sl->nwaiting) return;
    send_job **w = malloc(c->sl->nwaiting * sizeof(*w));
    if (!w) return; /* (tried again after the next node) */
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->sl->njobs && n < c->sl->nwaiting; i++)
        if (c->sl->jobs[i]->used && c->sl->jobs[i]->waiting) w[n++] = c->sl->jobs[i];
    qsort(w, n, sizeof(*w), job_seq_cmp);
    for (uint32_t i = 0; i < n && pending_room(c); i++) {
        if (!w[i]->used || !w[i]->waiting || job_behind(c, w[i])) continue;
        w[i]->waiting = false;
        c->sl->nwaiting--;
        wb_arena a;
        wb_arena_init(&a, 0);
        job_start(c, w[i], &a);
        wb_arena_free(&a);
    }
    free(w);
}

int wa_client_send_text(wa_client *c, const char *to_jid, const char *text, char *id_out,
                        int64_t now)
{
    wa_msg m = {.kind = WA_MSG_TEXT, .text = (char *)text};
    return wa_client_send_message(c, to_jid, &m, id_out, now);
}

static int send_message_id(wa_client *c, const char *to_jid, const wa_msg *msg, const char *id,
                           int64_t now);

int wa_client_send_message(wa_client *c, const char *to_jid, const wa_msg *msg, char *id_out,
                           int64_t now)
{
    char id[WA_MESSAGE_ID_MAX];
    new_message_id(c, id);
    int rc = send_message_id(c, to_jid, msg, id, now);
    if (rc == WA_OK && id_out) memcpy(id_out, id, strlen(id) + 1);
    return rc;
}

int wa_client_send_message_id(wa_client *c, const char *to_jid, const wa_msg *m, const char *id,
                              int64_t now)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 8 || n >= WA_MESSAGE_ID_MAX) return WA_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'A' && id[i] <= 'Z')))
            return WA_ERR_INVALID;
    return send_message_id(c, to_jid, m, id, now);
}

static int send_message_id(wa_client *c, const char *to_jid, const wa_msg *msg, const char *id,
                           int64_t now)
{
    (void)now;
    wa_jid to;
    if (c->state != WA_CLIENT_CONNECTED) return WA_ERR_STATE;
    if (wa_jid_parse_cstr(to_jid, &to) != WA_OK) return WA_ERR_BAD_JID;
    wa_jid_kind kind = wa_jid_kind_of(&to);
    if (kind != WA_JID_PN && kind != WA_JID_LID && kind != WA_JID_GROUP) return WA_ERR_BAD_JID;
    if (kind == WA_JID_LID && !c->dev.lid[0]) return WA_ERR_STATE; /* no LID to send from */
    if (msg->kind != WA_MSG_TEXT && msg->kind != WA_MSG_EDIT && msg->kind != WA_MSG_REACTION &&
        msg->kind != WA_MSG_REVOKE)
        return WA_ERR_INVALID;
    wa_jid user = wa_jid_to_user(&to);
    char chat[WA_JID_STR_MAX];
    wa_jid_format(&user, chat, sizeof(chat));
    /* fill in what the caller may leave out: the chat of the target, the timestamps */
    wa_msg m = *msg;
    if (m.kind == WA_MSG_EDIT || m.kind == WA_MSG_REVOKE || m.kind == WA_MSG_REACTION) {
        if (!m.target.remote_jid[0])
            snprintf(m.target.remote_jid, sizeof(m.target.remote_jid), "%s", chat);
        if (m.kind == WA_MSG_EDIT) m.target.from_me = true;
        if (m.kind != WA_MSG_REVOKE && m.timestamp_ms <= 0)
            m.timestamp_ms = (int64_t)c->wall * 1000;
    }
    msg_attrs attrs = msg_attrs_of(&m);
    wb_buf plaintext;
    wb_buf_init(&plaintext);
    int rc = wa_message_encode(&m, &plaintext);
    if (rc != WA_OK) {
        wb_buf_free(&plaintext);
        return rc;
    }
    send_job *j = job_new(c);
    if (!j) {
        wb_buf_free(&plaintext);
        return WA_ERR_TOO_LARGE;
    }
    snprintf(j->id, sizeof(j->id), "%s", id);
    memcpy(j->to, chat, sizeof(j->to));
    j->group = kind == WA_JID_GROUP;
    j->lid = kind == WA_JID_LID; /* a LID chat: our LID devices, sessions by LID */
    j->attrs = attrs;
    j->plaintext = plaintext;
    j->seq = ++c->job_seq;
    /* an earlier message to this chat goes first; and a message starts only with room for the
     * request it may make (it waits for an answer to free one) */
    if (job_behind(c, j) || !pending_room(c)) {
        j->waiting = true;
        c->sl->nwaiting++;
        return WA_OK;
    }
    wb_arena a;
    wb_arena_init(&a, 0);
    job_start(c, j, &a); /* failures from here on are WA_EV_SEND_FAILED */
    wb_arena_free(&a);
    jobs_kick(c);
    return WA_OK;
}

int wa_received_parse(const wa_received *r, wa_msg *out)
{
    memset(out, 0, sizeof(*out));
    int rc = WA_ERR_INVALID;
    for (size_t i = 0; i < r->nparts; i++) {
        const wa_received_part *part = &r->parts[i];
        wa_msg m;
        if (part->error != WA_OK || part->skdm_only) continue;
        int prc = wa_message_parse(part->plaintext.data, part->plaintext.len, &m);
        if (prc != WA_OK) {
            if (rc != WA_OK) rc = prc;
            continue;
        }
        rc = WA_OK;
        if (out->kind == WA_MSG_NONE && m.kind != WA_MSG_NONE) {
            /* the content: take all of it, keeping a key found before */
            uint8_t *skdm = out->skdm;
            size_t skdm_len = out->skdm_len;
            char group[WA_JID_STR_MAX];
            memcpy(group, out->skdm_group, sizeof(group));
            if (skdm && !m.skdm) {
                m.skdm = skdm, m.skdm_len = skdm_len;
                memcpy(m.skdm_group, group, sizeof(group));
            } else {
                free(skdm);
            }
            *out = m;
            continue;
        }
        if (!out->skdm && m.skdm) {
            out->skdm = m.skdm, out->skdm_len = m.skdm_len;
            memcpy(out->skdm_group, m.skdm_group, sizeof(out->skdm_group));
            m.skdm = NULL;
        }
        if (!out->dest_jid[0]) memcpy(out->dest_jid, m.dest_jid, sizeof(out->dest_jid));
        wa_msg_free(&m);
    }
    return rc;
}

int wa_client_mark_read(wa_client *c, const char *chat, const char *sender, const char *const *ids,
                        size_t n, bool played, uint64_t wall)
{
    if (c->state != WA_CLIENT_CONNECTED) return WA_ERR_STATE;
    wa_jid cj, sj;
    if (!chat || wa_jid_parse_cstr(chat, &cj) != WA_OK ||
        (sender && wa_jid_parse_cstr(sender, &sj) != WA_OK))
        return WA_ERR_BAD_JID;
    if (!ids || n == 0) return WA_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (!ids[i] || !ids[i][0] || strlen(ids[i]) >= 128) return WA_ERR_INVALID;
    if (wall) c->wall = wall;
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *r = wa_node_new(&a, "receipt");
    char t[24];
    snprintf(t, sizeof(t), "%llu", (unsigned long long)c->wall);
    wa_node_set_attr(&a, r, "id", ids[0]);
    wa_node_set_attr(&a, r, "to", chat);
    if (sender) wa_node_set_attr(&a, r, "participant", sender);
    wa_node_set_attr(&a, r, "type", played ? "played" : "read");
    wa_node_set_attr(&a, r, "t", t);
    wa_receipt_add_ids(&a, r, ids, n);
    int rc = wa_client_send_node(c, r);
    wb_arena_free(&a);
    return rc;
}

int wa_client_send_presence(wa_client *c, bool available)
{
    if (c->state != WA_CLIENT_CONNECTED) return WA_ERR_STATE;
    const char *name =
        c->cfg.push_name && c->cfg.push_name[0] ? c->cfg.push_name : c->dev.push_name;
    if (!name[0]) return WA_ERR_STATE; /* the server wants a name with a presence */
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *p = wa_node_new(&a, "presence");
    wa_node_set_attr(&a, p, "name", name);
    wa_node_set_attr(&a, p, "type", available ? "available" : "unavailable");
    int rc = wa_client_send_node(c, p);
    wb_arena_free(&a);
    return rc;
}

int wa_client_subscribe_presence(wa_client *c, const char *jid)
{
    if (c->state != WA_CLIENT_CONNECTED) return WA_ERR_STATE;
    wa_jid j;
    if (!jid || wa_jid_parse_cstr(jid, &j) != WA_OK) return WA_ERR_BAD_JID;
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *p = wa_node_new(&a, "presence");
    wa_node_set_attr(&a, p, "type", "subscribe");
    wa_node_set_attr(&a, p, "to", jid);
    int rc = wa_client_send_node(c, p);
    wb_arena_free(&a);
    return rc;
}

int wa_client_send_chat_state(wa_client *c, const char *chat, wa_chat_state st)
{
    if (c->state != WA_CLIENT_CONNECTED) return WA_ERR_STATE;
    wa_jid j;
    if (!chat || wa_jid_parse_cstr(chat, &j) != WA_OK) return WA_ERR_BAD_JID;
    if (st != WA_CHAT_COMPOSING && st != WA_CHAT_RECORDING && st != WA_CHAT_PAUSED)
        return WA_ERR_INVALID;
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *cs = wa_node_new(&a, "chatstate");
    wa_node_set_attr(&a, cs, "to", chat);
    wa_node *child = wa_node_new(&a, st == WA_CHAT_PAUSED ? "paused" : "composing");
    if (st == WA_CHAT_RECORDING) wa_node_set_attr(&a, child, "media", "audio");
    wa_node_add_child(&a, cs, child);
    int rc = wa_client_send_node(c, cs);
    wb_arena_free(&a);
    return rc;
}

/* Whether dev is this very device (as PN or as LID). */
static bool is_me(const wa_client *c, const wa_jid *dev)
{
    wa_jid me;
    return (wa_jid_parse_cstr(c->dev.pn, &me) == WA_OK && wa_jid_same_user(&me, dev) &&
            me.device == dev->device) ||
           (c->dev.lid[0] && wa_jid_parse_cstr(c->dev.lid, &me) == WA_OK &&
            wa_jid_same_user(&me, dev) && me.device == dev->device);
}

static void job_devices(wa_client *c, send_job *j, wb_arena *a);

/* A group message needs the group's members and addressing mode first (kept for the
 * connection); a 1:1 message goes on to the device lists. */
static void job_start(wa_client *c, send_job *j, wb_arena *a)
{
    if (j->group) {
        group_entry *g = group_find(c, j->to);
        if (!g || g->stale) {
            char id[32];
            register_iq(c, IQ_SEND_INFO, j->slot, id);
            wa_node *iq = wa_group_iq_info(a, id, j->to);
            if (!iq || wa_client_send_node(c, iq) != WA_OK) {
                take_pending(c, id);
                job_fail(c, j, "cannot ask for the group info");
            }
            return;
        }
        j->lid = g->lid;
    }
    job_devices(c, j, a);
}

static void on_send_info_result(wa_client *c, const wa_node *n, send_job *j, wb_arena *a)
{
    const char *text = "";
    int code = wa_group_result_code(n, &text);
    wa_group_info info;
    if (code != 0) {
        char why[128];
        snprintf(why, sizeof(why), "the group info was refused (%d %s)", code, text);
        job_fail(c, j, why);
        return;
    }
    group_entry *g = NULL;
    if (wa_group_parse_info(a, n, &info) == WA_OK && strcmp(info.jid, j->to) == 0)
        g = group_put_info(c, &info);
    if (!g) {
        job_fail(c, j, "unreadable group info");
        return;
    }
    j->lid = g->lid;
    job_devices(c, j, a);
}

/* The users whose devices get the message: the recipient (1:1) or every member (group), and us.
 * The strings belong to the cache, the job and me (WA_JID_STR_MAX bytes); NULL on failure. */
static const char **job_users(wa_client *c, send_job *j, char *me, size_t *n)
{
    *n = 0;
    group_entry *g = j->group ? group_find(c, j->to) : NULL;
    if (j->group && !g) return NULL;
    if (!user_of(j->lid ? c->dev.lid : c->dev.pn, me, WA_JID_STR_MAX)) return NULL;
    const char **users = malloc(((g ? g->members.n : 1) + 1) * sizeof(*users));
    if (!users) return NULL;
    if (g) {
        for (size_t i = 0; i < g->members.nb; i++)
            for (smap_node *x = g->members.b[i]; x; x = x->next)
                if (strcmp(x->key, me) != 0) users[(*n)++] = x->key;
    } else {
        users[(*n)++] = j->to;
    }
    users[(*n)++] = me;
    return users;
}

/* <iq xmlns="usync"> asking for the devices of users. */
static wa_node *usync_devices_iq(wa_client *c, wb_arena *a, const send_job *j,
                                 const char *const *users, size_t n)
{
    wa_node *iq = new_iq(c, a, WA_SERVER_PN, "get", "usync", IQ_USYNC, j->slot);
    wa_node *usync = wa_node_new(a, "usync");
    char sid[48];
    snprintf(sid, sizeof(sid), "%s-%u", c->iq_prefix, ++c->iq_counter);
    wa_node_set_attr(a, usync, "sid", sid);
    wa_node_set_attr(a, usync, "mode", "query");
    wa_node_set_attr(a, usync, "last", "true");
    wa_node_set_attr(a, usync, "index", "0");
    wa_node_set_attr(a, usync, "context", "message");
    wa_node *query = wa_node_new(a, "query");
    wa_node *devices = wa_node_new(a, "devices");
    wa_node_set_attr(a, devices, "version", "2");
    wa_node_add_child(a, query, devices);
    wa_node_add_child(a, usync, query);
    wa_node *list = wa_node_new(a, "list");
    for (size_t i = 0; i < n; i++) {
        wa_node *u = wa_node_new(a, "user");
        wa_node_set_attr(a, u, "jid", users[i]);
        wa_node_add_child(a, list, u);
    }
    wa_node_add_child(a, usync, list);
    wa_node_add_child(a, iq, usync);
    return iq;
}

/* Adds the devices of user (but this one) to the job; false when out of memory. */
static bool job_add_devices(wa_client *c, send_job *j, const char *user, const uint16_t *ids,
                            size_t n)
{
    wa_jid u;
    if (wa_jid_parse_cstr(user, &u) != WA_OK) return true;
    for (size_t k = 0; k < n; k++) {
        wa_jid dev = u;
        dev.device = ids[k];
        dev.ad = dev.device != 0;
        if (is_me(c, &dev)) continue;
        if (j->ndevices == j->devices_cap) {
            size_t cap = j->devices_cap ? j->devices_cap * 2 : 8;
            wa_jid *grown = realloc(j->devices, cap * sizeof(*grown));
            if (!grown) return false;
            j->devices = grown;
            j->devices_cap = cap;
        }
        j->devices[j->ndevices++] = dev;
    }
    return true;
}

static void job_fetch_keys(wa_client *c, send_job *j, wb_arena *a);

/* Every device is known: on to the sessions. */
static void job_devices_known(wa_client *c, send_job *j, wb_arena *a)
{
    if (!j->ndevices && !j->group) {
        job_fail(c, j, "the recipient has no devices");
        return;
    }
    job_fetch_keys(c, j, a);
}

/* The devices of the users the cache knows go into the job now (so that the cache may change
 * meanwhile); the others are asked for in one usync. */
static void job_devices(wa_client *c, send_job *j, wb_arena *a)
{
    char me[WA_JID_STR_MAX];
    size_t nusers = 0;
    const char **users = job_users(c, j, me, &nusers);
    if (!users) {
        job_fail(c, j, j->group ? "not in the group" : "no identity to send from");
        return;
    }
    j->ndevices = 0;
    size_t missing = 0;
    bool ok = true;
    for (size_t i = 0; i < nusers && ok; i++) {
        const smap_node *x = smap_get(&c->devices, users[i]);
        if (x)
            ok = job_add_devices(c, j, users[i], x->vals, x->n);
        else
            users[missing++] = users[i]; /* compacted in place: the ones to ask for */
    }
    if (!ok) {
        free(users);
        job_fail(c, j, "out of memory");
        return;
    }
    if (missing) {
        wa_node *iq = usync_devices_iq(c, a, j, users, missing);
        free(users);
        if (wa_client_send_node(c, iq) != WA_OK) {
            take_pending(c, wa_node_attr(iq, "id"));
            job_fail(c, j, "cannot ask for the device lists");
        }
        return;
    }
    free(users);
    job_devices_known(c, j, a);
}

static void job_encrypt_and_send(wa_client *c, send_job *j, wb_arena *a);

/* Devices without a session need a prekey bundle first. */
static void job_fetch_keys(wa_client *c, send_job *j, wb_arena *a)
{
    wa_node *iq = new_iq(c, a, WA_SERVER_PN_AT, "get", "encrypt", IQ_KEYS, j->slot);
    wa_node *key = wa_node_new(a, "key");
    int missing = 0;
    for (size_t i = 0; i < j->ndevices; i++) {
        char name[WA_JID_STR_MAX];
        uint32_t device;
        if (wa_signal_address(&j->devices[i], name, sizeof(name), &device) != WA_OK ||
            wa_signal_has_session(c->sig, name, device))
            continue;
        wa_node *u = wa_node_new(a, "user");
        wa_node_set_attr_jid(a, u, "jid", &j->devices[i]);
        wa_node_add_child(a, key, u);
        missing++;
    }
    if (!missing) {
        /* every session exists: drop the IQ we registered and send now */
        take_pending(c, wa_node_attr(iq, "id"));
        job_encrypt_and_send(c, j, a);
        return;
    }
    wa_node_add_child(a, iq, key);
    if (wa_client_send_node(c, iq) != WA_OK) {
        take_pending(c, wa_node_attr(iq, "id"));
        job_fail(c, j, "cannot ask for keys");
    }
}

static void on_usync_result(wa_client *c, const wa_node *n, send_job *j, wb_arena *a)
{
    const wa_node *usync = wa_node_child(n, "usync");
    const wa_node *list = usync ? wa_node_child(usync, "list") : NULL;
    for (size_t u = 0; list && list->kind == WA_CONTENT_LIST && u < list->nchildren; u++) {
        const wa_node *user = list->children[u];
        char key[WA_JID_STR_MAX];
        if (strcmp(user->tag, "user") != 0 || !user_of(wa_node_attr(user, "jid"), key, sizeof(key)))
            continue;
        const wa_node *devs = wa_node_child(user, "devices");
        const wa_node *dl = devs ? wa_node_child(devs, "device-list") : NULL;
        uint16_t ids[64];
        size_t nids = 0;
        for (size_t d = 0; dl && dl->kind == WA_CONTENT_LIST && d < dl->nchildren && nids < 64;
             d++) {
            const char *id = wa_node_attr(dl->children[d], "id");
            char *end;
            unsigned long v = id ? strtoul(id, &end, 10) : 0;
            if (id && *id && !*end && v <= UINT16_MAX) ids[nids++] = (uint16_t)v;
        }
        if (c->devices.n >= MAX_DEVICE_USERS) smap_clear(&c->devices);
        smap_put(&c->devices, key, ids, nids);
        if (!job_add_devices(c, j, key, ids, nids)) {
            job_fail(c, j, "out of memory");
            return;
        }
    }
    job_devices_known(c, j, a); /* whoever the answer left out has no devices */
}

static void on_keys_result(wa_client *c, const wa_node *n, send_job *j, wb_arena *a)
{
    const wa_node *list = wa_node_child(n, "list");
    for (size_t i = 0; list && list->kind == WA_CONTENT_LIST && i < list->nchildren; i++) {
        const wa_node *u = list->children[i];
        wa_jid jid;
        char name[WA_JID_STR_MAX];
        uint32_t device;
        if (wa_node_attr_jid(u, "jid", &jid) == WA_OK &&
            wa_signal_address(&jid, name, sizeof(name), &device) == WA_OK)
            process_bundle_node(c, u, &jid, name, device);
    }
    job_encrypt_and_send(c, j, a);
}

static void ack_expect(wa_client *c, const send_job *j, const wa_jid *me);

/* 1:1: one <enc> per device (our other devices get a deviceSentMessage), the advanced sessions
 * in one transaction (mostly nothing to write: wa/signal.c reserves keys ahead). The plaintext is
 * kept for retries from the server's ack on (ack_expect). */
static void job_send_direct(wa_client *c, send_job *j, wb_arena *a)
{
    wa_node *msg = message_stanza(a, j->id, j->to, &j->attrs);
    wa_node *participants = wa_node_new(a, "participants");
    wa_jid to;
    wa_jid_parse_cstr(j->to, &to);
    wb_buf own;
    wb_buf_init(&own);
    wa_message_device_sent(j->to, j->plaintext.data, j->plaintext.len, &own);
    wa_store *st = c->cfg.store;
    if (st->begin(st->ctx) != WA_STORE_OK) {
        wb_buf_free(&own);
        job_fail(c, j, "cannot open a store transaction");
        return;
    }
    bool any_pkmsg = false;
    int sent = 0;
    for (size_t i = 0; i < j->ndevices; i++) {
        char name[WA_JID_STR_MAX];
        uint32_t device;
        if (wa_signal_address(&j->devices[i], name, sizeof(name), &device) != WA_OK) continue;
        bool theirs = wa_jid_same_user(&j->devices[i], &to);
        const wb_buf *pt = theirs ? &j->plaintext : &own;
        wb_buf ct;
        wb_buf_init(&ct);
        wa_signal_type type;
        if (wa_signal_encrypt(c->sig, name, device, pt->data, pt->len, &ct, &type) == WA_OK) {
            wa_node *t = wa_node_new(a, "to");
            wa_node_set_attr_jid(a, t, "jid", &j->devices[i]);
            wa_node_add_child(a, t, enc_node(a, &ct, type, &j->attrs));
            wa_node_add_child(a, participants, t);
            any_pkmsg |= type == WA_SIGNAL_PKMSG;
            sent++;
        }
        wb_buf_free(&ct);
    }
    if (own.data) wa_wipe(own.data, own.len);
    wb_buf_free(&own);
    const char *why = NULL;
    if (!sent)
        why = "no device of the recipient could be reached";
    else if (st->commit(st->ctx) != WA_STORE_OK)
        why = "cannot store the advanced sessions";
    if (why) {
        st->rollback(st->ctx);
        job_fail(c, j, why);
        return;
    }
    wa_node_add_child(a, msg, participants);
    char pn[WA_ADDRESS_MAX];
    if (j->lid && st->pn_for_lid(st->ctx, j->to, pn) == WA_STORE_OK)
        wa_node_set_attr(a, msg, "peer_recipient_pn", pn); /* as WhatsApp Web (and whatsmeow) */
    if (any_pkmsg) {
        wa_node *di = device_identity_node(c, a);
        if (di) wa_node_add_child(a, msg, di);
    }
    wa_client_send_node(c, msg);
    wa_jid me;
    if (wa_jid_parse_cstr(j->lid ? c->dev.lid : c->dev.pn, &me) == WA_OK) ack_expect(c, j, &me);
    job_done(c, j); /* WA_EV_SENT comes with the server's ack */
}

static int compare_strings(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* A device JID in its long form, as the participant hash takes it: "user.agent:device@server"
 * whatever the device (0 included) and agent (0 but for raw agents on s.whatsapp.net). */
static void long_jid(const wa_jid *j, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%u:%u@%s", j->user, (unsigned)j->agent, (unsigned)j->device, j->server);
}

/* WhatsApp's participant hash of a fan-out (whatsmeow's participantListHashV2): "2:" and the
 * base64 of the first 6 bytes of SHA-256 over the sorted device JIDs in their long form,
 * concatenated; the devices are devs and our sending device me. out[16]; "" when out of memory. */
static void participant_hash(const wa_jid *devs, size_t ndevs, const wa_jid *me, char out[16])
{
    size_t n = ndevs + 1;
    char *text = malloc(n * WA_JID_STR_MAX);
    char **sorted = malloc(n * sizeof(*sorted));
    wb_buf all;
    wb_buf_init(&all);
    uint8_t hash[32];
    out[0] = '\0';
    if (text && sorted) {
        for (size_t i = 0; i < n; i++) {
            sorted[i] = text + i * WA_JID_STR_MAX;
            long_jid(i < ndevs ? &devs[i] : me, sorted[i], WA_JID_STR_MAX);
        }
        qsort(sorted, n, sizeof(*sorted), compare_strings);
        for (size_t i = 0; i < n; i++)
            wb_buf_append(&all, sorted[i], strlen(sorted[i]));
        if (!all.failed) {
            wa_sha256(all.data, all.len, hash);
            memcpy(out, "2:", 2);
            wb_base64_encode(hash, 6, out + 2, false);
        }
    }
    wb_buf_free(&all);
    free(sorted);
    free(text);
}

/* A sent message's plaintext into the store for retries (a write the worker's barrier makes
 * durable before the ack's WA_EV_SENT is raised, so before the app lets go of the message). Until
 * the ack it is only in memory: a message that went before a crash and whose ack was not seen is
 * sent again by the app, from its own copy. */
static void sent_keep(wa_client *c, sent_fanout *f)
{
    if (!f->plaintext.len) return;
    wa_store *st = c->cfg.store;
    if (st->sent_save(st->ctx, f->chat, f->id, f->plaintext.data, f->plaintext.len, f->sent_ms) !=
        WA_STORE_OK)
        emit(c, WA_EV_ERROR, 0, 0, "message %s: cannot keep it for retries: %s", f->id,
             st->last_error(st->ctx));
    wa_wipe(f->plaintext.data, f->plaintext.len);
    f->plaintext.len = 0;
}

/* The message's fan-out is out: its phash waits for the server's ack (which names the hash of
 * the devices the server knows when they differ from ours; the oldest entry goes when full, its
 * plaintext stored first), and its plaintext with it. */
static void ack_expect(wa_client *c, const send_job *j, const wa_jid *me)
{
    if (!c->sl) return; /* (j is one of its jobs) */
    sent_fanout *f = &c->sl->fanouts[c->next_fanout];
    c->next_fanout = (c->next_fanout + 1) % WA_MAX_FANOUTS;
    if (f->id[0]) sent_keep(c, f);
    snprintf(f->id, sizeof(f->id), "%s", j->id);
    snprintf(f->chat, sizeof(f->chat), "%s", j->to);
    f->group = j->group;
    f->lid = j->lid;
    participant_hash(j->devices, j->ndevices, me, f->phash);
    f->plaintext.len = 0;
    wb_buf_append(&f->plaintext, j->plaintext.data, j->plaintext.len);
    if (f->plaintext.failed) { /* (no room: stored now) */
        wb_buf_free(&f->plaintext);
        wa_store *st = c->cfg.store;
        st->sent_save(st->ctx, j->to, j->id, j->plaintext.data, j->plaintext.len,
                      (int64_t)c->wall * 1000);
    }
    f->sent_ms = (int64_t)c->wall * 1000;
}

/* The plaintext of a message sent and not acked yet, for a retry (false when not here). */
static bool sent_pending(const wa_client *c, const char *chat, const char *id, wb_buf *out)
{
    for (int i = 0; c->sl && i < WA_MAX_FANOUTS; i++) {
        const sent_fanout *f = &c->sl->fanouts[i];
        if (f->id[0] && f->plaintext.len && strcmp(f->id, id) == 0 && strcmp(f->chat, chat) == 0) {
            wb_buf_append(out, f->plaintext.data, f->plaintext.len);
            return !out->failed;
        }
    }
    return false;
}

/* Connection lost: acks of what went will not come; the plaintexts are stored (the messages may
 * have reached the server, and retries for them come later). */
static void sent_keep_all(wa_client *c)
{
    for (int i = 0; c->sl && i < WA_MAX_FANOUTS; i++)
        if (c->sl->fanouts[i].id[0]) sent_keep(c, &c->sl->fanouts[i]);
}

/* The server's ack of our message `id` names the participant hash of the devices it fanned out
 * to: when it differs from ours, some device of the chat is unknown to us (or gone), so the device
 * lists (and a group's members) are asked again at the next message (whatsmeow does the same and
 * does not send again: the new device gets the next message). */
static void on_ack_phash(wa_client *c, const char *id, const char *phash, bool refused)
{
    for (int i = 0; c->sl && i < WA_MAX_FANOUTS; i++) {
        sent_fanout *f = &c->sl->fanouts[i];
        if (!f->id[0] || strcmp(f->id, id) != 0) continue;
        if (refused) { /* nobody got it: nothing to retry */
            wa_wipe(f->plaintext.data, f->plaintext.len);
            f->plaintext.len = 0;
            f->id[0] = '\0';
            return;
        }
        sent_keep(c, f);
        if (phash && strcmp(phash, f->phash) != 0) {
            if (f->group) {
                group_entry *g = group_find(c, f->chat);
                if (g) {
                    g->stale = true;
                    for (size_t b = 0; b < g->members.nb; b++)
                        for (smap_node *x = g->members.b[b]; x; x = x->next)
                            devices_forget(c, x->key);
                }
                devices_forget(c, f->lid ? c->dev.lid : c->dev.pn);
            } else {
                devices_forget(c, f->chat);
                devices_forget(c, f->lid ? c->dev.lid : c->dev.pn);
            }
        }
        f->id[0] = '\0';
        return;
    }
}

/* A group: our sender key (made when missing) encrypts the content once (skmsg); its SKDM goes
 * pairwise to every device that has not had it on this connection; the advanced key and
 * sessions and the plaintext kept for retries in one transaction. */
static void job_send_group(wa_client *c, send_job *j, wb_arena *a)
{
    group_entry *g = group_find(c, j->to);
    wa_jid me;
    char my_name[WA_JID_STR_MAX];
    uint32_t my_device;
    if (!g) {
        job_fail(c, j, "not in the group");
        return;
    }
    if (my_group_identity(c, j->lid, &me, my_name, sizeof(my_name), &my_device) != WA_OK) {
        job_fail(c, j, "no identity to send to the group from");
        return;
    }
    wa_store *st = c->cfg.store;
    wb_buf skdm, skdm_msg, skct;
    wb_buf_init(&skdm);
    wb_buf_init(&skdm_msg);
    wb_buf_init(&skct);
    const char **keyed = j->ndevices ? calloc(j->ndevices, sizeof(*keyed)) : NULL;
    size_t nkeyed = 0;
    int rc = j->ndevices && !keyed ? WA_ERR_NOMEM : WA_OK;
    bool in_tx = rc == WA_OK && st->begin(st->ctx) == WA_STORE_OK;
    if (rc == WA_OK && !in_tx) rc = WA_ERR_STATE;
    if (rc == WA_OK) rc = wa_senderkey_create(c->sk, j->to, my_name, my_device, &skdm);
    if (rc == WA_OK) rc = wa_senderkey_message(j->to, skdm.data, skdm.len, &skdm_msg);
    if (rc == WA_OK)
        rc = wa_senderkey_encrypt(c->sk, j->to, my_name, my_device, j->plaintext.data,
                                  j->plaintext.len, &skct);
    wa_node *participants = wa_node_new(a, "participants");
    bool any_pkmsg = false;
    for (size_t i = 0; rc == WA_OK && i < j->ndevices; i++) {
        char djid[WA_JID_STR_MAX], name[WA_JID_STR_MAX];
        uint32_t device;
        wa_jid_format(&j->devices[i], djid, sizeof(djid));
        if (smap_has(&g->keyed, djid) ||
            wa_signal_address(&j->devices[i], name, sizeof(name), &device) != WA_OK)
            continue;
        wb_buf ct;
        wb_buf_init(&ct);
        wa_signal_type type;
        if (wa_signal_encrypt(c->sig, name, device, skdm_msg.data, skdm_msg.len, &ct, &type) ==
            WA_OK) {
            wa_node *t = wa_node_new(a, "to");
            wa_node_set_attr_jid(a, t, "jid", &j->devices[i]);
            wa_node_add_child(a, t, enc_node(a, &ct, type, &j->attrs));
            wa_node_add_child(a, participants, t);
            any_pkmsg |= type == WA_SIGNAL_PKMSG;
            keyed[nkeyed++] = wb_arena_strndup(a, djid, strlen(djid));
        }
        wb_buf_free(&ct);
    }
    if (rc == WA_OK && st->commit(st->ctx) != WA_STORE_OK) rc = WA_ERR_STATE;
    if (rc != WA_OK && in_tx) st->rollback(st->ctx);
    if (rc == WA_OK) {
        for (size_t i = 0; i < nkeyed; i++)
            if (keyed[i]) smap_put(&g->keyed, keyed[i], NULL, 0);
        wa_node *msg = message_stanza(a, j->id, j->to, &j->attrs);
        char phash[16];
        participant_hash(j->devices, j->ndevices, &me, phash);
        if (phash[0]) wa_node_set_attr(a, msg, "phash", phash);
        ack_expect(c, j, &me);
        if (participants->nchildren) wa_node_add_child(a, msg, participants);
        if (any_pkmsg) {
            wa_node *di = device_identity_node(c, a);
            if (di) wa_node_add_child(a, msg, di);
        }
        wa_node *enc = wa_node_new(a, "enc");
        wa_node_set_attr(a, enc, "v", "2");
        wa_node_set_attr(a, enc, "type", "skmsg");
        wa_node_set_bytes(a, enc, skct.data, skct.len);
        wa_node_add_child(a, msg, enc);
        wa_client_send_node(c, msg);
        job_done(c, j); /* WA_EV_SENT comes with the server's ack */
    } else {
        char why[128];
        snprintf(why, sizeof(why), "sender key: %s", wa_strerror(rc));
        job_fail(c, j, why);
    }
    free(keyed);
    if (skdm_msg.data) wa_wipe(skdm_msg.data, skdm_msg.len);
    wb_buf_free(&skdm);
    wb_buf_free(&skdm_msg);
    wb_buf_free(&skct);
}

static void job_encrypt_and_send(wa_client *c, send_job *j, wb_arena *a)
{
    if (j->group)
        job_send_group(c, j, a);
    else
        job_send_direct(c, j, a);
}

/* --- group calls --- */

/* A free call slot for op (own: the client's own call, request id 0); NULL when WA_MAX_GROUP_CALLS
 * wait already or no IQ can be registered. */
static group_call *call_new(wa_client *c, wa_group_op op, const char *group, bool own,
                            uint32_t *slot)
{
    if (!pending_room(c) || !slots(c)) return NULL;
    for (uint32_t i = 0; i < WA_MAX_GROUP_CALLS; i++) {
        group_call *g = &c->sl->calls[i];
        if (g->used) continue;
        memset(g, 0, sizeof(*g));
        g->used = true;
        g->op = op;
        if (!own) {
            if (++c->next_req == 0) c->next_req = 1;
            g->req_id = c->next_req;
        }
        snprintf(g->group, sizeof(g->group), "%s", group ? group : "");
        *slot = i;
        return g;
    }
    return NULL;
}

static void call_free(group_call *g)
{
    free(g->desc);
    memset(g, 0, sizeof(*g));
}

/* Sends the call's IQ (built with id, registered for slot); on failure the call is dropped. */
static int call_send(wa_client *c, group_call *g, wa_node *iq, const char *id, uint32_t *req_id_out)
{
    int rc = iq ? wa_client_send_node(c, iq) : WA_ERR_INVALID;
    if (rc != WA_OK) {
        take_pending(c, id);
        call_free(g);
        return rc;
    }
    if (req_id_out) *req_id_out = g->req_id;
    return WA_OK;
}

static bool group_jid_ok(const char *group)
{
    wa_jid j;
    return group && wa_jid_parse_cstr(group, &j) == WA_OK && wa_jid_kind_of(&j) == WA_JID_GROUP &&
           j.user[0];
}

static bool users_ok(const char *const *users, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        wa_jid j;
        if (!users[i] || wa_jid_parse_cstr(users[i], &j) != WA_OK || !j.user[0]) return false;
        wa_jid_kind k = wa_jid_kind_of(&j);
        if (k != WA_JID_PN && k != WA_JID_LID) return false;
    }
    return true;
}

/* The common checks of a call about one group. */
static int call_check(const wa_client *c, const char *group)
{
    if (c->state != WA_CLIENT_CONNECTED) return WA_ERR_STATE;
    return group_jid_ok(group) ? WA_OK : WA_ERR_BAD_JID;
}

/* Builds and sends one w:g2 IQ for a new call: build(a, id) makes it. */
typedef wa_node *(*iq_builder)(wb_arena *a, const char *id, const void *arg);

static int call_start(wa_client *c, wa_group_op op, const char *group, const void *arg,
                      iq_builder build, uint32_t *req_id_out)
{
    uint32_t slot;
    group_call *g = call_new(c, op, group, false, &slot);
    if (!g) return WA_ERR_TOO_LARGE;
    wb_arena a;
    wb_arena_init(&a, 0);
    char id[32];
    register_iq(c, IQ_GROUP, slot, id);
    int rc = call_send(c, g, build(&a, id, arg), id, req_id_out);
    wb_arena_free(&a);
    return rc;
}

typedef struct create_args {
    const char *subject, *key;
    const char *const *participants;
    size_t n;
} create_args;

static wa_node *build_create(wb_arena *a, const char *id, const void *arg)
{
    const create_args *x = arg;
    return wa_group_iq_create(a, id, x->subject, x->key, x->participants, x->n);
}

int wa_client_group_create(wa_client *c, const char *subject, const char *const *participants,
                           size_t n, uint32_t *req_id_out)
{
    if (c->state != WA_CLIENT_CONNECTED) return WA_ERR_STATE;
    if (!subject || !*subject) return WA_ERR_INVALID;
    if ((n && !participants) || !users_ok(participants, n)) return WA_ERR_BAD_JID;
    char key[WA_MESSAGE_ID_MAX];
    new_message_id(c, key);
    create_args x = {subject, key, participants, n};
    return call_start(c, WA_GROUP_OP_CREATE, "", &x, build_create, req_id_out);
}

static wa_node *build_info(wb_arena *a, const char *id, const void *arg)
{
    return wa_group_iq_info(a, id, arg);
}

int wa_client_group_info(wa_client *c, const char *group, uint32_t *req_id_out)
{
    int rc = call_check(c, group);
    return rc ? rc : call_start(c, WA_GROUP_OP_INFO, group, group, build_info, req_id_out);
}

typedef struct participants_args {
    const char *group;
    wa_group_change change;
    const char *const *participants;
    size_t n;
} participants_args;

static wa_node *build_participants(wb_arena *a, const char *id, const void *arg)
{
    const participants_args *x = arg;
    return wa_group_iq_participants(a, id, x->group, x->change, x->participants, x->n);
}

int wa_client_group_participants(wa_client *c, const char *group, wa_group_change change,
                                 const char *const *participants, size_t n, uint32_t *req_id_out)
{
    int rc = call_check(c, group);
    if (rc) return rc;
    if (!n || !wa_group_change_tag(change)) return WA_ERR_INVALID;
    if (!participants || !users_ok(participants, n)) return WA_ERR_BAD_JID;
    uint32_t slot;
    group_call *g = call_new(c, WA_GROUP_OP_PARTICIPANTS, group, false, &slot);
    if (!g) return WA_ERR_TOO_LARGE;
    g->change = change;
    participants_args x = {group, change, participants, n};
    wb_arena a;
    wb_arena_init(&a, 0);
    char id[32];
    register_iq(c, IQ_GROUP, slot, id);
    rc = call_send(c, g, build_participants(&a, id, &x), id, req_id_out);
    wb_arena_free(&a);
    return rc;
}

typedef struct text_args {
    const char *group, *text;
} text_args;

static wa_node *build_subject(wb_arena *a, const char *id, const void *arg)
{
    const text_args *x = arg;
    return wa_group_iq_subject(a, id, x->group, x->text);
}

int wa_client_group_subject(wa_client *c, const char *group, const char *subject,
                            uint32_t *req_id_out)
{
    int rc = call_check(c, group);
    if (rc) return rc;
    if (!subject || !*subject) return WA_ERR_INVALID;
    text_args x = {group, subject};
    return call_start(c, WA_GROUP_OP_SUBJECT, group, &x, build_subject, req_id_out);
}

/* Sends the description IQ of call g (slot) with the current description's id prev. */
static int send_description(wa_client *c, group_call *g, uint32_t slot, const char *text,
                            const char *prev)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    char id[32];
    register_iq(c, IQ_GROUP, slot, id);
    wa_node *iq =
        wa_group_iq_description(&a, id, g->group, text, g->desc_id, prev && *prev ? prev : NULL);
    int rc = iq ? wa_client_send_node(c, iq) : WA_ERR_INVALID;
    if (rc != WA_OK) take_pending(c, id);
    wb_arena_free(&a);
    return rc;
}

int wa_client_group_description(wa_client *c, const char *group, const char *text,
                                uint32_t *req_id_out)
{
    int rc = call_check(c, group);
    if (rc) return rc;
    uint32_t slot;
    group_call *g = call_new(c, WA_GROUP_OP_DESCRIPTION, group, false, &slot);
    if (!g) return WA_ERR_TOO_LARGE;
    new_message_id(c, g->desc_id);
    const group_entry *e = group_find(c, group);
    if (e && e->desc_known && !e->stale) {
        rc = send_description(c, g, slot, text, e->desc_id);
        if (rc != WA_OK) {
            call_free(g);
            return rc;
        }
    } else {
        /* the current id first: the server refuses a description whose prev is not it */
        g->info_first = true;
        if (text && *text && !(g->desc = strdup(text))) {
            call_free(g);
            return WA_ERR_NOMEM;
        }
        wb_arena a;
        wb_arena_init(&a, 0);
        char id[32];
        register_iq(c, IQ_GROUP, slot, id);
        rc = call_send(c, g, wa_group_iq_info(&a, id, group), id, NULL);
        wb_arena_free(&a);
        if (rc != WA_OK) return rc;
    }
    if (req_id_out) *req_id_out = g->req_id;
    return WA_OK;
}

typedef struct setting_args {
    const char *group;
    wa_group_setting setting;
} setting_args;

static wa_node *build_setting(wb_arena *a, const char *id, const void *arg)
{
    const setting_args *x = arg;
    return wa_group_iq_setting(a, id, x->group, x->setting);
}

int wa_client_group_setting(wa_client *c, const char *group, wa_group_setting s,
                            uint32_t *req_id_out)
{
    int rc = call_check(c, group);
    if (rc) return rc;
    if (!wa_group_setting_tag(s)) return WA_ERR_INVALID;
    setting_args x = {group, s};
    return call_start(c, WA_GROUP_OP_SETTING, group, &x, build_setting, req_id_out);
}

static wa_node *build_leave(wb_arena *a, const char *id, const void *arg)
{
    return wa_group_iq_leave(a, id, arg);
}

int wa_client_group_leave(wa_client *c, const char *group, uint32_t *req_id_out)
{
    int rc = call_check(c, group);
    return rc ? rc : call_start(c, WA_GROUP_OP_LEAVE, group, group, build_leave, req_id_out);
}

typedef struct invite_args {
    const char *group;
    bool revoke;
} invite_args;

static wa_node *build_invite(wb_arena *a, const char *id, const void *arg)
{
    const invite_args *x = arg;
    return wa_group_iq_invite(a, id, x->group, x->revoke);
}

int wa_client_group_invite_link(wa_client *c, const char *group, bool revoke, uint32_t *req_id_out)
{
    int rc = call_check(c, group);
    if (rc) return rc;
    invite_args x = {group, revoke};
    return call_start(c, WA_GROUP_OP_INVITE, group, &x, build_invite, req_id_out);
}

/* participating; req_id 0: the client's own (after login, on a dirty group list). */
static int group_call_participating(wa_client *c, uint32_t req_id)
{
    uint32_t slot;
    group_call *g = call_new(c, WA_GROUP_OP_PARTICIPATING, "", req_id == 0, &slot);
    if (!g) return WA_ERR_TOO_LARGE;
    wb_arena a;
    wb_arena_init(&a, 0);
    char id[32];
    register_iq(c, IQ_GROUP, slot, id);
    int rc = call_send(c, g, wa_group_iq_participating(&a, id), id, NULL);
    wb_arena_free(&a);
    return rc;
}

int wa_client_group_participating(wa_client *c, uint32_t *req_id_out)
{
    if (c->state != WA_CLIENT_CONNECTED) return WA_ERR_STATE;
    uint32_t slot;
    group_call *g = call_new(c, WA_GROUP_OP_PARTICIPATING, "", false, &slot);
    if (!g) return WA_ERR_TOO_LARGE;
    wb_arena a;
    wb_arena_init(&a, 0);
    char id[32];
    register_iq(c, IQ_GROUP, slot, id);
    int rc = call_send(c, g, wa_group_iq_participating(&a, id), id, req_id_out);
    wb_arena_free(&a);
    return rc;
}

/* What a successful answer changes in our cache; WA_OK or why it cannot be read. */
static int apply_group_answer(wa_client *c, group_call *g, const wa_node *iq, wa_group_result *r)
{
    wb_arena *a = &r->arena;
    int rc = WA_OK;
    switch (g->op) {
    case WA_GROUP_OP_CREATE:
    case WA_GROUP_OP_INFO:
        r->info = wb_arena_zalloc(a, sizeof(*r->info));
        rc = r->info ? wa_group_parse_info(a, iq, r->info) : WA_ERR_NOMEM;
        if (rc == WA_OK) {
            snprintf(r->group, sizeof(r->group), "%s", r->info->jid);
            group_put_info(c, r->info);
        } else {
            r->info = NULL;
        }
        break;
    case WA_GROUP_OP_PARTICIPANTS: {
        rc = wa_group_parse_participants(a, iq, g->change, &r->participants, &r->nparticipants);
        bool done = false;
        for (size_t i = 0; rc == WA_OK && i < r->nparticipants; i++)
            done |= r->participants[i].error == 0;
        group_entry *e = group_find(c, g->group);
        if (done && e) e->stale = true; /* the members as the group names them: ask again */
        if (done && g->change == WA_GROUP_REMOVE) group_rotate(c, g->group);
        break;
    }
    case WA_GROUP_OP_DESCRIPTION: {
        group_entry *e = group_find(c, g->group);
        if (e) {
            snprintf(e->desc_id, sizeof(e->desc_id), "%s", g->desc_id);
            e->desc_known = true;
        }
        break;
    }
    case WA_GROUP_OP_LEAVE: group_forget(c, g->group); break;
    case WA_GROUP_OP_INVITE: rc = wa_group_parse_invite(iq, &r->invite_code); break;
    case WA_GROUP_OP_PARTICIPATING:
        rc = wa_group_parse_list(a, iq, &r->groups, &r->ngroups);
        if (rc != WA_OK) break;
        /* the whole list: groups we no longer are in go */
        for (size_t i = c->ngroups; i-- > 0;) {
            bool listed = false;
            for (size_t k = 0; k < r->ngroups && !listed; k++)
                listed = strcmp(r->groups[k].jid, c->groups[i]->jid) == 0;
            if (!listed) group_drop(c, c->groups[i]->jid);
        }
        for (size_t k = 0; k < r->ngroups; k++)
            group_put_info(c, &r->groups[k]);
        break;
    case WA_GROUP_OP_SUBJECT:
    case WA_GROUP_OP_SETTING: break;
    }
    return rc == WA_ERR_NOMEM ? rc : rc != WA_OK ? WA_ERR_PROTO : WA_OK;
}

/* The answer to group call `slot`: into a wa_group_result for the bridge (or, for a description
 * that needed the current id, on to the description IQ itself). */
static void on_group_answer(wa_client *c, const wa_node *n, uint32_t slot)
{
    group_call *g =
        c->sl && slot < WA_MAX_GROUP_CALLS && c->sl->calls[slot].used ? &c->sl->calls[slot] : NULL;
    if (!g) return;
    wa_group_result r;
    memset(&r, 0, sizeof(r));
    wb_arena_init(&r.arena, 0);
    r.req_id = g->req_id;
    r.op = g->op;
    r.change = g->change;
    r.error_text = "";
    snprintf(r.group, sizeof(r.group), "%s", g->group);
    const wa_node *iq = copy_node(&r.arena, n);
    const char *text = "";
    r.code = iq ? wa_group_result_code(iq, &text) : WA_ERR_NOMEM;
    r.error_text = text ? text : "";
    if (r.code == 0 && g->info_first) {
        wa_group_info info;
        r.code = wa_group_parse_info(&r.arena, iq, &info) == WA_OK ? 0 : WA_ERR_PROTO;
        if (r.code == 0) {
            group_put_info(c, &info);
            g->info_first = false;
            r.code = send_description(c, g, slot, g->desc, info.description_id);
            if (r.code == WA_OK) {
                wb_arena_free(&r.arena); /* the description's own answer comes next */
                return;
            }
        }
    } else if (r.code == 0) {
        r.code = apply_group_answer(c, g, iq, &r);
    }
    call_free(g);
    push_group_result(c, &r);
}

/* --- group and device notifications --- */

static bool participant_is_me(const wa_client *c, const wa_group_participant *p)
{
    return is_my_user(c, p->jid) || (p->phone_number && is_my_user(c, p->phone_number)) ||
           (p->lid && is_my_user(c, p->lid));
}

/* A participant's user JIDs (as named, and its PN / LID twin) leave the member set. */
static void members_del(group_entry *g, const wa_group_participant *p)
{
    const char *names[3] = {p->jid, p->phone_number, p->lid};
    for (int i = 0; g && i < 3; i++) {
        char user[WA_JID_STR_MAX];
        if (user_of(names[i], user, sizeof(user))) smap_del(&g->members, user);
    }
}

/* What a notification changes for sending: members, our sender key, the description id. */
static void apply_group_event(wa_client *c, const wa_group_event *ev)
{
    for (size_t i = 0; i < ev->nchanges; i++) {
        const wa_group_change_event *ch = &ev->changes[i];
        group_entry *g = group_find(c, ev->group);
        switch (ch->type) {
        case WA_GROUP_EV_CREATE:
            if (ch->info) group_put_info(c, ch->info);
            break;
        case WA_GROUP_EV_ADD:
            for (size_t k = 0; g && k < ch->nparticipants; k++) {
                char user[WA_JID_STR_MAX];
                if (user_of(ch->participants[k].jid, user, sizeof(user)))
                    smap_put(&g->members, user, NULL, 0);
            }
            break;
        case WA_GROUP_EV_REMOVE:
        case WA_GROUP_EV_LEAVE: {
            bool me = false;
            for (size_t k = 0; k < ch->nparticipants; k++) {
                me |= participant_is_me(c, &ch->participants[k]);
                members_del(g, &ch->participants[k]);
            }
            if (me)
                group_forget(c, ev->group); /* we are out */
            else
                group_rotate(c, ev->group); /* a new key the departed never see */
            break;
        }
        case WA_GROUP_EV_DESCRIPTION:
            if (g) {
                snprintf(g->desc_id, sizeof(g->desc_id), "%s", ch->id ? ch->id : "");
                g->desc_known = ch->id != NULL;
            }
            break;
        case WA_GROUP_EV_DELETE: group_forget(c, ev->group); break;
        default: break;
        }
    }
}

/* <notification type="w:gp2">: applied to our cache and queued for the app; acked when the app
 * takes it (wa_client_next_group_update). A redelivery (the server sends it again at each login
 * until acked) of one still queued is not queued twice; of one taken already, acked at once. */
static void on_group_notification(wa_client *c, const wa_node *n, wb_arena *a)
{
    char key[WA_NOTE_KEY_MAX], other[WA_NOTE_KEY_MAX];
    note_key(n, key);
    for (int i = 0; c->sl && i < WA_TAKEN_RING; i++)
        if (strcmp(c->sl->taken[i], key) == 0) {
            wa_node *ack = wa_group_notification_ack(a, n);
            if (ack) wa_client_send_node(c, ack);
            return;
        }
    for (size_t i = 0; i < c->ngupdates; i++) {
        note_key(c->gupdates[i].note, other);
        if (strcmp(other, key) == 0) return; /* acked when taken */
    }
    wa_group_update u;
    memset(&u, 0, sizeof(u));
    wb_arena_init(&u.arena, 0);
    const wa_node *copy = copy_node(&u.arena, n);
    int rc = copy ? wa_group_parse_notification(&u.arena, copy, &u.event) : WA_ERR_NOMEM;
    if (rc == WA_OK) {
        apply_group_event(c, &u.event);
        push_group_update(c, &u, copy);
        return;
    }
    wb_arena_free(&u.arena);
    emit(c, WA_EV_ERROR, rc, 0, "unreadable group notification %s",
         wa_node_attr(n, "id") ? wa_node_attr(n, "id") : "?");
    wa_node *ack = wa_group_notification_ack(a, n); /* nothing to keep: never again */
    if (ack) wa_client_send_node(c, ack);
}

/* <notification type="devices" from=user [lid]>: that user's device list changed; it is asked
 * again at the next message. */
static void on_devices_notification(wa_client *c, const wa_node *n, wb_arena *a)
{
    devices_forget(c, wa_node_attr(n, "from"));
    devices_forget(c, wa_node_attr(n, "lid"));
    for (size_t i = 0; n->kind == WA_CONTENT_LIST && i < n->nchildren; i++) {
        const wa_node *ch = n->children[i];
        for (size_t k = 0; ch->kind == WA_CONTENT_LIST && k < ch->nchildren; k++)
            if (strcmp(ch->children[k]->tag, "device") == 0) {
                devices_forget(c, wa_node_attr(ch->children[k], "jid"));
                devices_forget(c, wa_node_attr(ch->children[k], "lid"));
            }
    }
    wa_node *ack = wa_group_notification_ack(a, n);
    if (ack) wa_client_send_node(c, ack);
}

/* Forgets every session and identity of user (a user JID) and of its PN / LID twin when the map
 * knows it. */
static void forget_user_keys(wa_client *c, const wa_jid *user)
{
    char us[WA_JID_STR_MAX], twin[WA_ADDRESS_MAX] = "";
    wa_jid_format(user, us, sizeof(us));
    wa_store *st = c->cfg.store;
    wa_jid_kind k = wa_jid_kind_of(user);
    if (k == WA_JID_PN && st->lid_for_pn(st->ctx, us, twin) != WA_STORE_OK) twin[0] = '\0';
    if (k == WA_JID_LID && st->pn_for_lid(st->ctx, us, twin) != WA_STORE_OK) twin[0] = '\0';
    const char *jids[2] = {us, twin};
    for (int i = 0; i < 2; i++) {
        wa_jid j;
        char name[WA_JID_STR_MAX];
        uint32_t device;
        if (!jids[i][0] || wa_jid_parse_cstr(jids[i], &j) != WA_OK) continue;
        j = wa_jid_to_user(&j);
        if (wa_signal_address(&j, name, sizeof(name), &device) == WA_OK &&
            wa_signal_forget_user(c->sig, name) != WA_OK)
            emit(c, WA_EV_ERROR, WA_ERR_STATE, 0, "cannot forget the old keys of %s", jids[i]);
        devices_forget(c, jids[i]);
    }
}

/* <notification type="encrypt" from>: from the server, <count value/> (our one-time prekeys run
 * low: upload more); from a user, <identity/> (the user re-registered: every session and identity
 * of theirs goes, so the next message starts from their new keys, and the app hears of it).
 * Acked either way. */
static void on_encrypt_notification(wa_client *c, const wa_node *n, wb_arena *a)
{
    const char *from = wa_node_attr(n, "from");
    const wa_node *count = wa_node_child(n, "count");
    wa_jid fj;
    if (count && from && strcmp(from, WA_SERVER_PN) == 0) {
        const char *v = wa_node_attr(count, "value");
        if (v && strtol(v, NULL, 10) < WA_PREKEY_MIN) upload_prekeys(c, WA_PREKEY_UPLOAD_MORE);
    } else if (wa_node_child(n, "identity") && from && wa_jid_parse_cstr(from, &fj) == WA_OK &&
               (wa_jid_kind_of(&fj) == WA_JID_PN || wa_jid_kind_of(&fj) == WA_JID_LID) &&
               !is_my_user(c, from)) {
        wa_jid user = wa_jid_to_user(&fj);
        char us[WA_JID_STR_MAX];
        wa_jid_format(&user, us, sizeof(us));
        forget_user_keys(c, &user);
        const char *t = wa_node_attr(n, "t");
        identity_changed(c, us, true, t ? strtoull(t, NULL, 10) : 0);
    }
    wa_node *ack = wa_group_notification_ack(a, n);
    if (ack) wa_client_send_node(c, ack);
}

static void on_node(wa_client *c, wa_node *n, int64_t now)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    const char *tag = n->tag;
    if (strcmp(tag, "iq") == 0) {
        const char *type = wa_node_attr(n, "type");
        if (type && (strcmp(type, "result") == 0 || strcmp(type, "error") == 0)) {
            on_iq_result(c, n, now);
        } else {
            const wa_node *pd = wa_node_child(n, "pair-device");
            const wa_node *ps = wa_node_child(n, "pair-success");
            if (pd && !c->dev.paired) {
                on_pair_device(c, n, pd, &a, now);
            } else if (ps && !c->dev.paired) {
                char why[160] = "";
                if (on_pair_success(c, n, ps, &a, now, why, sizeof(why)) != WA_OK) {
                    c->stopped = true;
                    emit(c, WA_EV_ERROR, 0, 0, "pairing failed: %s", why);
                    drop(c, now, 0, -1, why);
                }
            } else {
                answer_iq(c, n, NULL, &a); /* pings and requests we do not handle yet */
            }
        }
    } else if (strcmp(tag, "message") == 0 && c->state == WA_CLIENT_CONNECTED) {
        on_message(c, n, &a, now);
    } else if (strcmp(tag, "receipt") == 0 && c->state == WA_CLIENT_CONNECTED) {
        on_receipt(c, n, &a);
    } else if (strcmp(tag, "presence") == 0 && c->state == WA_CLIENT_CONNECTED) {
        on_presence(c, n);
    } else if (strcmp(tag, "chatstate") == 0 && c->state == WA_CLIENT_CONNECTED) {
        on_chat_state(c, n);
    } else if (strcmp(tag, "ack") == 0) {
        const char *cls = wa_node_attr(n, "class"), *id = wa_node_attr(n, "id");
        const char *error = wa_node_attr(n, "error");
        if (cls && strcmp(cls, "message") == 0 && id && error) {
            on_ack_phash(c, id, NULL, true);
            emit(c, WA_EV_SEND_FAILED, atoi(error), 0, "%s", id);
            emit(c, WA_EV_ERROR, atoi(error), 0, "message %s refused by the server (error %s)", id,
                 error);
        } else if (cls && strcmp(cls, "message") == 0 && id) {
            on_ack_phash(c, id, wa_node_attr(n, "phash"), false);
            emit(c, WA_EV_SENT, 0, 0, "%s", id);
        }
    } else if (strcmp(tag, "notification") == 0) {
        const char *type = wa_node_attr(n, "type");
        const wa_node *reg = wa_node_child(n, "link_code_companion_reg");
        if (type && strcmp(type, "link_code_companion_reg") == 0 && reg && !c->dev.paired)
            lc_on_primary_hello(c, n, reg, &a);
        else if (type && strcmp(type, WA_GROUP_NOTIFICATION) == 0 &&
                 c->state == WA_CLIENT_CONNECTED)
            on_group_notification(c, n, &a);
        else if (type && strcmp(type, "devices") == 0 && c->state == WA_CLIENT_CONNECTED)
            on_devices_notification(c, n, &a);
        else if (type && strcmp(type, "encrypt") == 0 && c->state == WA_CLIENT_CONNECTED)
            on_encrypt_notification(c, n, &a);
    } else if (strcmp(tag, "success") == 0) {
        on_success(c, n, now);
    } else if (strcmp(tag, "failure") == 0) {
        on_failure(c, n, now);
    } else if (strcmp(tag, "stream:error") == 0) {
        on_stream_error(c, n, now);
    } else if (strcmp(tag, "ib") == 0) {
        const wa_node *dirty = wa_node_child(n, "dirty");
        const char *dtype = dirty ? wa_node_attr(dirty, "type") : NULL;
        if (wa_node_child(n, "offline")) {
            emit(c, WA_EV_READY, 0, 0, NULL);
            send_simple_iq(c, WA_SERVER_PN_AT, "get", "encrypt", "digest", IQ_DIGEST);
            group_call_participating(c, 0);
        } else if (dtype && strcmp(dtype, "groups") == 0 && c->state == WA_CLIENT_CONNECTED) {
            /* the group list changed while we could not hear it: fetch it, then say so */
            group_call_participating(c, 0);
            wa_node *iq =
                new_iq(c, &a, WA_SERVER_PN, "set", "urn:xmpp:whatsapp:dirty", IQ_DIRTY, 0);
            wa_node *clean = wa_node_new(&a, "clean");
            wa_node_set_attr(&a, clean, "type", "groups");
            const char *ts = wa_node_attr(dirty, "timestamp");
            if (ts) wa_node_set_attr(&a, clean, "timestamp", ts);
            wa_node_add_child(&a, iq, clean);
            wa_client_send_node(c, iq);
        }
    }
    wb_arena_free(&a);
}

void wa_client_on_data(wa_client *c, const uint8_t *p, size_t len, int64_t now, uint64_t wall)
{
    if (c->state == WA_CLIENT_IDLE || c->state == WA_CLIENT_BACKOFF ||
        c->state == WA_CLIENT_LOGGED_OUT || c->state == WA_CLIENT_CONNECTING)
        return;
    if (wall) c->wall = wall;
    wa_errinfo ei = {0};
    if (wa_frame_reader_push(&c->reader, p, len) != WA_OK) {
        drop(c, now, 0, fail_backoff(c, now), "out of memory");
        return;
    }
    const uint8_t *f;
    size_t flen;
    int got;
    while ((got = wa_frame_reader_next(&c->reader, &f, &flen, &ei)) == 1) {
        if (c->state == WA_CLIENT_HANDSHAKE && c->noise.state == WA_NOISE_SENT_HELLO) {
            uint8_t payload[2048];
            size_t plen;
            wa_cert_policy policy = {.now = wall};
            memcpy(policy.root, c->root, 32);
            int rc = client_payload(c, payload, sizeof(payload), &plen);
            if (rc == WA_OK)
                rc = wa_noise_client_finish(&c->noise, f, flen, &policy, &c->dev.noise, payload,
                                            plen, &c->out, &ei);
            if (rc != WA_OK) {
                emit(c, WA_EV_ERROR, rc, 0, "handshake failed: %s",
                     ei.message[0] ? ei.message : wa_strerror(rc));
                drop(c, now, 0, rc == WA_ERR_CERT ? -1 : fail_backoff(c, now), "handshake failed");
                return;
            }
            c->state = c->dev.paired ? WA_CLIENT_LOGGING_IN : WA_CLIENT_HANDSHAKE;
            continue;
        }
        wb_buf plain;
        wb_buf_init(&plain);
        int rc = wa_noise_recv(&c->noise, f, flen, &plain);
        wb_arena a;
        wb_arena_init(&a, 0);
        wa_node *n = NULL;
        if (rc == WA_OK) rc = wa_binary_unpack(plain.data, plain.len, 0, &a, &n, &ei);
        wb_buf_free(&plain);
        if (rc != WA_OK) {
            wb_arena_free(&a);
            emit(c, WA_EV_ERROR, rc, 0, "bad frame from the server: %s",
                 ei.message[0] ? ei.message : wa_strerror(rc));
            drop(c, now, 0, fail_backoff(c, now), "bad frame");
            return;
        }
        wa_client_state before = c->state;
        on_node(c, n, now);
        wb_arena_free(&a);
        jobs_kick(c); /* a message done: the next one to its chat may go */
        if (c->state == WA_CLIENT_BACKOFF || c->state == WA_CLIENT_IDLE ||
            c->state == WA_CLIENT_LOGGED_OUT || (before != c->state && c->io == WA_IO_CLOSE))
            return;
    }
    if (got < 0) {
        drop(c, now, 0, fail_backoff(c, now), "bad framing");
    }
}

void wa_client_tick(wa_client *c, int64_t now, uint64_t wall)
{
    if (wall) c->wall = wall;
    if (c->reconnect_at && now >= c->reconnect_at) {
        c->reconnect_at = 0;
        wa_client_start(c, now, wall);
        return;
    }
    if (c->handshake_deadline && now >= c->handshake_deadline) {
        drop(c, now, 0, fail_backoff(c, now), "the server did not answer in time");
        return;
    }
    if (c->qr_deadline && now >= c->qr_deadline) {
        c->qr_deadline = 0;
        show_next_qr(c, now);
        return;
    }
    if (c->ping_deadline && now >= c->ping_deadline) {
        drop(c, now, 0, fail_backoff(c, now), "keepalive ping unanswered");
        return;
    }
    if (c->next_ping && now >= c->next_ping && c->state == WA_CLIENT_CONNECTED) {
        /* one ping at a time: a later ping must not push the first one's deadline out */
        if (!c->ping_deadline) {
            send_simple_iq(c, WA_SERVER_PN, "get", "w:p", "ping", IQ_PING);
            c->ping_deadline = now + WA_PING_DEADLINE_MS;
        }
        schedule_ping(c, now);
    }
}

int wa_client_logout(wa_client *c, int64_t now)
{
    if (c->state != WA_CLIENT_CONNECTED) {
        /* offline: forget locally; the phone will drop the device on its own */
        logged_out(c, now, 0, "logged out (offline)");
        return WA_OK;
    }
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *iq = new_iq(c, &a, WA_SERVER_PN, "set", "md", IQ_LOGOUT, 0);
    wa_node *rm = wa_node_new(&a, "remove-companion-device");
    wa_node_set_attr(&a, rm, "jid", c->dev.pn);
    wa_node_set_attr(&a, rm, "reason", "user_initiated");
    wa_node_add_child(&a, iq, rm);
    int rc = wa_client_send_node(c, iq);
    wb_arena_free(&a);
    return rc;
}
