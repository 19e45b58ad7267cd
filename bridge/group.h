/*
 * bridge/group.h - group portals (bridge/group.c): the room of a WhatsApp group, shared by the
 * logins in it, kept in step with the group's name, description and members.
 */
#ifndef BR_GROUP_H
#define BR_GROUP_H

#include "bridge/bridge_internal.h"
#include "wa/client.h"
#include "wa/group.h"

/* A WhatsApp group admin's power level in the group portal. */
#define BR_GROUP_ADMIN_LEVEL 50

/* What the portal workers need of a group answer or notification, copied off the engine thread.
 * Owned by the job that gets it (br_group_data_free). */
typedef struct br_group_member {
    char jid[DB_ID_MAX]; /* user JID (the phone-number one when WhatsApp gives it) */
    char lid[DB_ID_MAX]; /* its LID user JID when known, else "" */
    bool admin;
    int error; /* an answer to our add/remove/...: WhatsApp's code for this one, 0 = done */
} br_group_member;

typedef struct br_group_data {
    int64_t login_id;
    char group[DB_ID_MAX];
    bool has_info;              /* subject, topic and members are the whole group */
    wa_group_event_type change; /* a notification's change (0 for an info) */
    char subject[DB_ID_MAX];
    char topic[DB_TOPIC_MAX];
    char author[DB_ID_MAX]; /* who made the change, "" = the server */
    char author_name[256];
    br_group_member *members; /* info: every participant; change: those it names */
    size_t nmembers;
    char reply_room[DB_ID_MAX]; /* create-group: where to answer, "" = none */
    int result_code;            /* create-group, participants: WhatsApp's answer (0 = done) */
    int participants_change;    /* participants answer: the wa_group_change asked */
    int undo_level;             /* promote/demote from Matrix: the power level to put back */
    int64_t buffer_id; /* a notification's row in wa_group_event_buffer (0: none), dropped once
                          the change is shown */
    int64_t call_id;   /* participants answer: its group_call row (0: none), dropped once shown */
    int64_t settle_before_ms; /* settling info: the group_call rows made before this moment */
} br_group_data;

br_group_data *br_group_data_from_info(int64_t login_id, const wa_group_info *info);
br_group_data *br_group_data_from_change(int64_t login_id, const wa_group_event *ev,
                                         const wa_group_change_event *ch);
/* The answer to a participants call from Matrix; asked/asked_change: what was asked (used when
 * the whole call was refused and the answer names nobody). */
br_group_data *br_group_data_from_participants(int64_t login_id, const wa_group_result *r,
                                               const char *asked, int asked_change);
void br_group_data_free(br_group_data *g);
/* A notification's change as it is kept in wa_group_event_buffer (JSON, malloc'd; NULL when out
 * of memory) and back (NULL when data does not parse). */
char *br_group_data_to_json(const br_group_data *g);
br_group_data *br_group_data_from_json(int64_t login_id, const char *data);

/* Jobs on the group portal's queue (arg: br_group_data). */
void br_group_job_info(br_pworker *pw, void *arg);
void br_group_job_change(br_pworker *pw, void *arg);
void br_group_job_participants(br_pworker *pw, void *arg);
/* What a group is now, asked when the login was connected again: the group calls from Matrix made
 * before g->settle_before_ms whose answers were lost (and are not on their way now) are shown as
 * made, or as not made (a notice, the room put back); their rows go. */
void br_group_job_settle(br_pworker *pw, void *arg);
/* WhatsApp refused a subject or description change from Matrix (g->participants_change:
 * WA_GROUP_OP_SUBJECT or _DESCRIPTION, g->result_code its answer): a notice in g->reply_room,
 * and the group's info asked so that the room shows the group as it is. */
void br_group_job_info_refused(br_pworker *pw, void *arg);

/* The portal of a group (room made by the bot when missing, l's user invited). */
int br_portal_ensure_group(br_pworker *pw, br_login *l, const char *group, const char *subject,
                           const char *topic, db_portal *out);
/* A member change made in Matrix did not happen on WhatsApp: the room is put back as the group
 * is (an invited ghost's invite taken back, a kicked ghost back in). */
void br_group_member_undo(br_pworker *pw, const char *room, const char *ghost, bool added);
/* A power-level change made in Matrix did not happen on WhatsApp: mxid's level in room goes back
 * to level (set by the bot, so it does not come back as a change to bridge). */
void br_group_level_undo(br_pworker *pw, const char *room, const char *mxid, int level);
/* The Matrix user a group member (user JID) is in the portal: the user of a login with that
 * phone number, else the member's ghost; name: what to call them in a notice. */
bool br_group_member_mxid(br_pworker *pw, const char *jid, char *mxid, size_t cap, char *name,
                          size_t name_cap);
/* A ghost joins a group portal (invited by the bot); 0 when in. */
int br_group_ghost_join(br_pworker *pw, const char *room, const char *ghost_mxid);

#endif
