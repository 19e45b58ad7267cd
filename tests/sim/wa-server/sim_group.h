/*
 * tests/sim/wa-server/sim_group.h - wa-sim's groups (sim_group.c): group state, the w:g2 IQs,
 * group messages fanned out to every member device, receipts, w:gp2 notifications, and the
 * simulated phones as group members with sender keys.
 *
 * A group is "<id>@g.us" (id = 120363 + 12 digits), LID-addressed as WhatsApp's new groups are:
 * participants are listed as "LID@lid" with phone_number="PN@s.whatsapp.net", and a group message
 * names its sender as participant="LID:device@lid" (participant_pn = the PN user). Members are
 * accounts; every present device of a member (the phone and its companions) gets the group's
 * messages and notifications.
 *
 * IQs (xmlns="w:g2"): create, query (info), add / remove / promote / demote (admins only; a result
 * per participant: 404 no account, 409 already in / not in), subject, description (prev must be
 * the current id, else 409), announcement / not_announcement / locked / unlocked (admins), invite
 * (get the code; set: a new one, admins; <invite code> to @g.us: join by code), leave,
 * participating. Errors: 404 no such group, 403 not a member, 401 not an admin, 400 bad request.
 * Each change is a <notification type="w:gp2" from=group participant=author> to every member
 * device but the author's (the removed ones included), queued like messages and acked with
 * <ack class="notification">.
 *
 * Chat states: <chatstate to=group> goes to the other members' online devices as <chatstate
 * from=group participant=sender> (not queued), as WhatsApp relays typing in groups.
 *
 * Messages: <message to=group><participants><to jid=device><enc pkmsg|msg/></to>...</participants>
 * <enc type="skmsg"/></message> (or, with participant=device, a retry resend for that device
 * only) goes to every member device except the sender: each gets <message from=group
 * participant=sender ...> with its own <enc> (if any) before the skmsg. Receipts go back to the
 * sending device as <receipt from=group participant=reader>. Phones decrypt what they get (the
 * SKDM inside a pkmsg/msg, then the skmsg) into the account's message log (chat = the group), send
 * group texts with their own sender key (SKDM to each device that lacks it), and forget their key
 * when a member leaves or is removed, so the next text starts a new chain.
 *
 * Admin (main.c): POST /admin/group/create {phone, subject, members[]} -> {jid};
 * POST /admin/group/send {phone, group, text} -> {id}; POST /admin/group/participants {phone,
 * group, action, members[]} -> {results:[{jid, error}]}; POST /admin/group/setting {phone, group,
 * setting: locked|unlocked|announcement|not_announcement}; GET /admin/group?jid=G -> the group with
 * its members and the last skmsg sent to it (sender, id, hex). Members are phone numbers or JIDs.
 */
#ifndef WA_SIM_GROUP_H
#define WA_SIM_GROUP_H

#include "sim.h"

#include <cJSON.h>

/* --- called by sim.c --- */
/* Whether jid is a group JID ("...@g.us"). */
bool sim_group_is_jid(const char *jid);
void sim_group_on_iq(sim *s, sim_conn *c, wb_arena *a, wa_node *iq);
void sim_group_on_message(sim *s, sim_conn *c, wb_arena *a, wa_node *msg);
void sim_group_on_receipt(sim *s, sim_conn *c, wb_arena *a, wa_node *r);
/* <chatstate to=group><composing [media]/> | <paused/>: to every online device of the other
 * members as <chatstate from=group participant=sender's LID user>, not queued (ephemeral). */
void sim_group_on_chatstate(sim *s, sim_conn *c, wb_arena *a, wa_node *n);
void sim_groups_free(sim *s);
/* acct's phone lost its Signal state: its sender keys are new, and it must be sent the others'
 * again. */
void sim_groups_forget_phone(sim *s, const sim_account *acct);

/* --- admin (main.c); each returns 0 or -1 with a message in err --- */
/* The phone of `phone` creates a group with members (phone numbers or user JIDs). */
int sim_admin_group_create(sim *s, const char *phone, const char *subject,
                           const char *const *members, size_t n, char *jid_out, size_t jid_len,
                           char *err, size_t errlen);
/* The phone of `phone` sends a text to the group. */
int sim_admin_group_send(sim *s, const char *phone, const char *group, const char *text,
                         char *id_out, size_t id_len, char *err, size_t errlen);
/* The phone of `phone` (an admin) adds, removes, promotes or demotes members; results (may be
 * NULL) gets [{jid, error}]. */
/* The phone of `phone` (an admin) locks or unlocks the group's info, or makes it announce-only. */
int sim_admin_group_setting(sim *s, const char *phone, const char *group, const char *setting,
                            char *err, size_t errlen);
int sim_admin_group_participants(sim *s, const char *phone, const char *group, const char *action,
                                 const char *const *members, size_t n, cJSON *results, char *err,
                                 size_t errlen);
/* The group as JSON (caller frees), or NULL when there is no such group. */
char *sim_admin_group_json(sim *s, const char *group);
/* The whole admin POST /admin/group/... request: 1 handled (*out: JSON to answer, caller frees),
 * -1 handled with an error in err, 0 not a group URL. */
int sim_group_admin_post(sim *s, const char *url, const cJSON *body, char **out, char *err,
                         size_t errlen);

/* --- provided by sim.c for sim_group.c (thin wrappers of its static helpers) --- */
sim_account *sim_account_of_jid(sim *s, const wa_jid *j, bool *lid);
sim_device *sim_companion(sim_account *acct, uint16_t id);
/* "user[:device]@server" of an account's device on the LID or PN server. */
void sim_device_jid(const sim_account *acct, uint16_t device, bool lid, char *out, size_t cap);
/* The participant hash of every device of the accounts (on the LID or PN server), as the server
 * puts it on a message's ack. out[16]. */
void sim_phash(sim_account *const *accts, size_t n, bool lid, char out[16]);
/* The name the phones' Signal stores give an account. */
void sim_signal_name(const sim_account *acct, char *out, size_t cap);
sim_phone *sim_phone_of(sim *s, sim_account *acct);
/* Encrypts plain from phone p for device dev of acct (0: its phone), starting a session from a
 * bundle when there is none. 0 or -1. */
int sim_phone_encrypt(sim *s, sim_phone *p, sim_account *acct, uint16_t dev, const wb_buf *plain,
                      wb_buf *out, wa_signal_type *type);
/* Encrypts plain again from phone p for device dev of acct, answering its retry receipt r: a new
 * session from the receipt's <keys> when it has them. 0 or -1. */
int sim_phone_retry_encrypt(sim *s, sim_phone *p, sim_account *acct, uint16_t dev, const wa_node *r,
                            const wb_buf *plain, wb_buf *out, wa_signal_type *type);
/* Queues n for a companion (and sends it now when online). */
void sim_deliver(sim *s, sim_account *acct, sim_device *dev, const wa_node *n, bool is_receipt,
                 const char *id);
/* Adds an entry to the phone's received-message log (NULL when it is full). */
sim_phone_msg *sim_phone_record(sim *s, sim_account *acct, const char *sender, const char *chat,
                                const char *id, const uint8_t *text, size_t text_len, bool own,
                                bool failed);

#endif
