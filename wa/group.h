/*
 * wa/group.h - WhatsApp groups, sans-I/O: the group IQs (xmlns "w:g2") the engine sends, the
 * parsers of their results, and the parser of group notifications (<notification type="w:gp2">).
 *
 * Builders return a complete <iq id to type xmlns="w:g2"> in the caller's arena (the caller picks
 * the id and matches the answer by it); NULL when out of memory or an argument is unusable. Group
 * JIDs are "<id>@g.us"; participants are user JIDs (PN or LID, no device). Shapes follow what
 * WhatsApp Web sends (whatsmeow group.go, Baileys groups.ts):
 *   create        <iq to="@g.us" type="set"><create subject key><participant jid/>...</create>
 *   info          <iq to=group type="get"><query request="interactive"/>
 *   add/remove/promote/demote  <iq to=group type="set"><add><participant jid/>...</add>
 *   subject       <iq to=group type="set"><subject>bytes</subject>
 *   description   <iq to=group type="set"><description id prev><body>bytes</body></description>,
 *                 or <description id prev delete="true"/> to clear it
 *   leave         <iq to="@g.us" type="set"><leave><group id=group/></leave>
 *   invite link   <iq to=group type="get|set"><invite/> (set: revoke, a new code)
 *   settings      <iq to=group type="set"><announcement/> | not_announcement | locked | unlocked
 *   participating <iq to="@g.us" type="get"><participating><participants/><description/>...
 *
 * Parsers fill plain structs whose strings point into the node's arena or into the arena `a`
 * passed in (both must outlive the struct; usually they are the same arena). They never fail on
 * an unknown child or attribute (WhatsApp adds them all the time): those are skipped.
 */
#ifndef WA_GROUP_H
#define WA_GROUP_H

#include "util/arena.h"
#include "wa/binary/node.h"
#include "wa/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WA_GROUP_XMLNS        "w:g2"
#define WA_GROUP_NOTIFICATION "w:gp2" /* <notification type> of group changes */
#define WA_GROUP_SERVER_JID   "@g.us" /* the IQ target of create, leave, participating */
#define WA_GROUP_INVITE_URL   "https://chat.whatsapp.com/"

typedef enum wa_group_change {
    WA_GROUP_ADD = 0, /* <add> */
    WA_GROUP_REMOVE,  /* <remove> */
    WA_GROUP_PROMOTE, /* <promote>: make admin */
    WA_GROUP_DEMOTE,  /* <demote>: no longer admin */
} wa_group_change;

typedef enum wa_group_setting {
    WA_GROUP_ANNOUNCE = 0, /* only admins send */
    WA_GROUP_NOT_ANNOUNCE, /* everybody sends */
    WA_GROUP_LOCKED,       /* only admins edit the group's info */
    WA_GROUP_UNLOCKED,     /* everybody edits it */
} wa_group_setting;

/* The tag of a change ("add", ...) or of a setting ("announcement", ...). */
const char *wa_group_change_tag(wa_group_change c);
const char *wa_group_setting_tag(wa_group_setting s);

/* --- builders --- */
/* subject is the group's name (WhatsApp refuses more than 100 characters with 406); key (may be
 * NULL) is the client's creation key, echoed in the create notification. We are added implicitly.
 */
wa_node *wa_group_iq_create(wb_arena *a, const char *id, const char *subject, const char *key,
                            const char *const *participants, size_t n);
wa_node *wa_group_iq_info(wb_arena *a, const char *id, const char *group);
wa_node *wa_group_iq_participants(wb_arena *a, const char *id, const char *group,
                                  wa_group_change change, const char *const *participants,
                                  size_t n);
wa_node *wa_group_iq_subject(wb_arena *a, const char *id, const char *group, const char *subject);
/* text NULL or "" deletes the description. new_id is the new description's id (a fresh message
 * id); prev_id (may be NULL) the current one, from wa_group_info.description_id. */
wa_node *wa_group_iq_description(wb_arena *a, const char *id, const char *group, const char *text,
                                 const char *new_id, const char *prev_id);
wa_node *wa_group_iq_leave(wb_arena *a, const char *id, const char *group);
/* revoke false: the current invite code (get); true: a new code, the old link stops working. */
wa_node *wa_group_iq_invite(wb_arena *a, const char *id, const char *group, bool revoke);
wa_node *wa_group_iq_setting(wb_arena *a, const char *id, const char *group, wa_group_setting s);
/* Every group we are in, with participants and descriptions. */
wa_node *wa_group_iq_participating(wb_arena *a, const char *id);

/* --- results --- */
typedef struct wa_group_participant {
    const char *jid;           /* user JID, PN or LID; never NULL */
    const char *phone_number;  /* the PN of a LID participant (attribute phone_number), or NULL */
    const char *lid;           /* the LID of a PN participant (attribute lid), or NULL */
    bool admin;                /* type="admin" or "superadmin" */
    bool superadmin;           /* type="superadmin": the creator */
    int error;                 /* per-participant result of add/remove/...: 0 done, else WhatsApp's
                                  code (403 privacy: invite instead, 408 left recently, 409 already
                                  in, 404 no account, 401/500 ...) */
    const char *invite_code;   /* with error 403: <add_request code> to send an invite, or NULL */
    int64_t invite_expiration; /* unix seconds of that code, 0 if none */
} wa_group_participant;

typedef struct wa_group_info {
    const char *jid;                    /* "<id>@g.us" */
    const char *subject;                /* "" when none */
    const char *subject_owner;          /* who set it (s_o), or NULL */
    int64_t subject_time;               /* unix seconds (s_t), 0 if unknown */
    const char *description;            /* body, or NULL when there is none */
    const char *description_id;         /* its id (the prev of the next change), or NULL */
    const char *description_owner;      /* who set it, or NULL */
    int64_t description_time;           /* unix seconds, 0 if unknown */
    const char *creator;                /* creator attribute, or NULL */
    int64_t creation;                   /* unix seconds, 0 if unknown */
    const char *addressing_mode;        /* "lid" or "pn" (absent means pn) */
    bool announce;                      /* <announcement/>: only admins send */
    bool locked;                        /* <locked/>: only admins edit the info */
    bool ephemeral;                     /* <ephemeral expiration/> */
    uint32_t ephemeral_expiration;      /* seconds */
    bool join_approval;                 /* <membership_approval_mode/> */
    bool community;                     /* <parent/> */
    size_t size;                        /* size attribute, else the number of participants */
    wa_group_participant *participants; /* in a; nparticipants entries */
    size_t nparticipants;
} wa_group_info;

/* WhatsApp's result code of an IQ: 0 for type="result", the <error code> of type="error" (400,
 * 401 not admin, 403 not in the group, 404 no such group, 406 bad subject, 409, 500...), or a
 * negative wa_err when n is not an IQ answer. text (may be NULL) gets the error's text or "". */
int wa_group_result_code(const wa_node *iq, const char **text);

/* The group of an info or create result, of a <group> node, or of a create notification's
 * <create>. WA_ERR_INVALID when there is no <group id>, WA_ERR_NOMEM. */
int wa_group_parse_info(wb_arena *a, const wa_node *n, wa_group_info *out);
/* participating result: every <groups><group>; *out in a. */
int wa_group_parse_list(wb_arena *a, const wa_node *iq, wa_group_info **out, size_t *n);
/* The <add|remove|promote|demote><participant jid error?/>... of a participants result: the
 * outcome per participant (error 0 = done). WA_ERR_INVALID when the child is missing. */
int wa_group_parse_participants(wb_arena *a, const wa_node *iq, wa_group_change change,
                                wa_group_participant **out, size_t *n);
/* The <invite code> of an invite result: the code (the link is WA_GROUP_INVITE_URL + code). */
int wa_group_parse_invite(const wa_node *iq, const char **code);

/* --- notifications --- */
typedef enum wa_group_event_type {
    WA_GROUP_EV_UNKNOWN = 0, /* a child we do not know (tag in text) */
    WA_GROUP_EV_CREATE,      /* the group was created with us in it (info set) */
    WA_GROUP_EV_ADD,         /* participants joined (reason: "invite", "linked_group_join"...) */
    WA_GROUP_EV_REMOVE,      /* participants were removed by the author */
    WA_GROUP_EV_LEAVE,       /* participants left by themselves */
    WA_GROUP_EV_PROMOTE,     /* participants became admins */
    WA_GROUP_EV_DEMOTE,      /* participants are no longer admins */
    WA_GROUP_EV_SUBJECT,     /* text: the new subject (time, owner set) */
    WA_GROUP_EV_DESCRIPTION, /* text: the new description, NULL when deleted; id: its id */
    WA_GROUP_EV_ANNOUNCE,    /* on: only admins send */
    WA_GROUP_EV_LOCKED,      /* on: only admins edit the info */
    WA_GROUP_EV_EPHEMERAL,   /* on + expiration (seconds) */
    WA_GROUP_EV_INVITE,      /* text: the new invite code (the link was revoked) */
    WA_GROUP_EV_DELETE,      /* the group was deleted; text: the reason */
    WA_GROUP_EV_MEMBER_ADD_MODE, /* text: "admin_add" or "all_member_add" */
} wa_group_event_type;

/* One change of a notification (a notification may carry several). */
typedef struct wa_group_change_event {
    wa_group_event_type type;
    const char *text;                   /* see the type, else NULL */
    const char *id;                     /* description id, else NULL */
    const char *reason;                 /* add/remove reason attribute, or NULL */
    const char *owner;                  /* subject owner (s_o), or NULL */
    int64_t time;                       /* subject time (s_t), 0 if none */
    bool on;                            /* announce / locked / ephemeral */
    uint32_t expiration;                /* ephemeral seconds */
    wa_group_participant *participants; /* add/remove/leave/promote/demote; in a */
    size_t nparticipants;
    wa_group_info *info; /* CREATE: the group; in a */
} wa_group_change_event;

typedef struct wa_group_event {
    const char *group;              /* from: the group JID */
    const char *id;                 /* the notification's id (ack it) */
    const char *author;             /* participant: who made the change, or NULL (the server) */
    const char *author_pn;          /* participant_pn, or NULL */
    const char *notify;             /* the author's push name, or NULL */
    int64_t t;                      /* unix seconds */
    wa_group_change_event *changes; /* in a */
    size_t nchanges;
} wa_group_event;

/* Parses <notification type="w:gp2" from=group id participant t>. WA_ERR_INVALID when n is not
 * one (wrong tag or type, no from), WA_ERR_NOMEM. */
int wa_group_parse_notification(wb_arena *a, const wa_node *n, wa_group_event *out);
/* The <ack class="notification" id to type="w:gp2" [participant]> for a notification. */
wa_node *wa_group_notification_ack(wb_arena *a, const wa_node *n);

#endif
