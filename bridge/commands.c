/*
 * bridge/commands.c - the bot's management room: the room a user opens by starting a DM with the
 * bot, where commands need no prefix; elsewhere the prefix (bridge.command_prefix, "!wa") is
 * needed. Every command answers: usage on wrong arguments, a refusal without permission.
 */
#include "bridge/bridge_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD      "commands"
#define MAX_ARGS 32

static const char *const help_text =
    "Commands (in this room the prefix %s is optional):\n"
    "  help                          this list\n"
    "  login qr                      link a WhatsApp account by scanning a QR code\n"
    "  login phone NUMBER            link by a pairing code typed on the phone (NUMBER with "
    "country code)\n"
    "  logout [NUMBER]               unlink a WhatsApp account\n"
    "  ping                          show your logins and their connection state\n"
    "  list-logins                   the same, with login ids\n"
    "  sync                          bring your WhatsApp groups over as portal rooms\n"
    "  start-chat NUMBER             open a portal room with a WhatsApp user\n"
    "  create-group NAME NUMBER...   create a WhatsApp group (and its portal room)\n"
    "  login-matrix TOKEN            double puppeting with your own Matrix access token (where "
    "allowed)\n"
    "  logout-matrix                 forget that token\n"
    "In a portal room (with the prefix):\n"
    "  set-relay [NUMBER]            relay mode: send the messages of users without their own "
    "login through your WhatsApp account\n"
    "  unset-relay                   stop relaying in this room";

void br_command_on_invite(br_pworker *pw, const char *room, const char *sender, bool is_direct)
{
    br_bridge *b = pw->b;
    mx_error err;
    if (mx_client_join(pw->mx, NULL, room, NULL, &err) != MX_OK) {
        WB_WARN(MOD, "joining %s (invited by %s) failed: %s", room, sender, err.error);
        return;
    }
    br_perm perm = br_config_perm(b->cfg, sender);
    if (perm < BR_PERM_COMMANDS) {
        br_notice(pw, room, "You are not allowed to use this bridge.");
        mx_client_leave(pw->mx, NULL, room, &err);
        return;
    }
    char current[DB_ID_MAX] = "";
    db_user_management_room(pw->db, sender, current, sizeof(current));
    if (is_direct || !current[0]) {
        db_user_set_management_room(pw->db, sender, room);
        br_notice(pw, room,
                  "Hello, I am the WhatsApp bridge bot. This is your management room: send `help` "
                  "for the commands, or `login qr` to link your WhatsApp account.");
    } else {
        br_notice(pw, room, "Hello. Send `%s help` for the commands.", b->cfg->command_prefix);
    }
}

static bool all_digits(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max) return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return false;
    return true;
}

/* "+1 (555) 123-4567" style arguments: keep the digits. */
static void digits_of(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (; *in && o + 1 < cap; in++)
        if (isdigit((unsigned char)*in))
            out[o++] = *in;
        else if (!strchr("+-() .", *in)) {
            o = 0;
            break;
        }
    out[o] = '\0';
}

static void cmd_ping(br_pworker *pw, const char *room, const char *sender, bool ids)
{
    br_login *ls[16];
    size_t n = br_logins_of(pw->b, sender, ls, 16);
    if (n == 0) {
        br_notice(pw, room, "You are not logged in. Send `login qr` to link a WhatsApp account.");
        return;
    }
    char text[4096];
    size_t o = (size_t)snprintf(text, sizeof(text), "Your WhatsApp logins:");
    for (size_t i = 0; i < n && o < sizeof(text); i++) {
        if (ids)
            o += (size_t)snprintf(text + o, sizeof(text) - o, "\n  #%lld +%s: %s",
                                  (long long)ls[i]->id, ls[i]->phone[0] ? ls[i]->phone : "?",
                                  br_login_state_name(ls[i]));
        else
            o += (size_t)snprintf(text + o, sizeof(text) - o, "\n  +%s: %s",
                                  ls[i]->phone[0] ? ls[i]->phone : "(pairing)",
                                  br_login_state_name(ls[i]));
    }
    br_notice(pw, room, "%s", text);
}

static void cmd_login(br_pworker *pw, const char *room, const char *sender, int argc, char **argv)
{
    const char *usage = "Usage: `login qr` or `login phone NUMBER` (NUMBER with country code).";
    if (argc < 2 || (strcmp(argv[1], "qr") != 0 && strcmp(argv[1], "phone") != 0)) {
        br_notice(pw, room, "%s", usage);
        return;
    }
    char phone[64] = "";
    if (strcmp(argv[1], "phone") == 0) {
        if (argc != 3) {
            br_notice(pw, room, "%s", usage);
            return;
        }
        digits_of(argv[2], phone, sizeof(phone));
        if (!all_digits(phone, 7, 15)) {
            br_notice(pw, room,
                      "`%s` is not a phone number: give it with the country code, e.g. "
                      "`login phone +15551234567`.",
                      argv[2]);
            return;
        }
    } else if (argc != 2) {
        br_notice(pw, room, "%s", usage);
        return;
    }
    br_login *ls[16];
    size_t n = br_logins_of(pw->b, sender, ls, 16);
    for (size_t i = 0; i < n; i++)
        if (ls[i]->pairing) {
            br_notice(pw, room,
                      "A login is already in progress: finish it or wait for it to time "
                      "out.");
            return;
        }
    char err[256];
    if (br_login_begin(pw, sender, room, phone[0] ? phone : NULL, err, sizeof(err)) != 0) {
        br_notice(pw, room, "The login could not start: %s", err);
        return;
    }
    if (!phone[0])
        br_notice(pw, room,
                  "Scan the QR code below with WhatsApp on your phone: Settings > Linked "
                  "devices > Link a device.");
}

static br_login *pick_login(br_pworker *pw, const char *room, const char *sender, const char *arg)
{
    br_login *ls[16];
    size_t n = br_logins_of(pw->b, sender, ls, 16);
    if (n == 0) {
        br_notice(pw, room, "You are not logged in.");
        return NULL;
    }
    if (!arg) {
        if (n == 1) return ls[0];
        br_notice(pw, room, "You have %zu logins: name the number (see `list-logins`).", n);
        return NULL;
    }
    char want[64];
    digits_of(arg, want, sizeof(want));
    for (size_t i = 0; i < n; i++)
        if (strcmp(ls[i]->phone, want) == 0) return ls[i];
    br_notice(pw, room, "No login of yours has the number `%s`.", arg);
    return NULL;
}

typedef struct start_chat_job {
    int64_t login_id;
    char chat[DB_ID_MAX];
    char reply_room[DB_ID_MAX];
} start_chat_job;

/* Runs on the portal's own queue, so it cannot race a message creating the same room. */
static void job_start_chat(br_pworker *pw, void *arg)
{
    start_chat_job *j = arg;
    br_login *l = br_login_find(pw->b, j->login_id);
    db_portal p;
    if (!l)
        br_notice(pw, j->reply_room, "That login is gone.");
    else if (br_portal_ensure_dm(pw, l, j->chat, NULL, &p) != 0)
        br_notice(pw, j->reply_room, "The portal room for %s could not be created.", j->chat);
    else
        br_notice(pw, j->reply_room, "Portal room for +%.*s: %s (you were invited).",
                  (int)(strchr(j->chat, '@') - j->chat), j->chat, p.mxid);
    free(j);
}

static void cmd_start_chat(br_pworker *pw, const char *room, const char *sender, int argc,
                           char **argv)
{
    if (argc != 2) {
        br_notice(pw, room, "Usage: `start-chat NUMBER` (with country code).");
        return;
    }
    char phone[64];
    digits_of(argv[1], phone, sizeof(phone));
    if (!all_digits(phone, 7, 15)) {
        br_notice(pw, room, "`%s` is not a phone number.", argv[1]);
        return;
    }
    br_login *l = pick_login(pw, room, sender, NULL);
    if (!l) return;
    start_chat_job *j = calloc(1, sizeof(*j));
    if (!j) return;
    j->login_id = l->id;
    snprintf(j->chat, sizeof(j->chat), "%s@s.whatsapp.net", phone);
    snprintf(j->reply_room, sizeof(j->reply_room), "%s", room);
    char key[DB_ID_MAX + 64];
    br_portal_key(l->id, j->chat, key, sizeof(key));
    br_enqueue(pw->b, key, job_start_chat, j);
}

/* create-group NAME... NUMBER...: the words that are not phone numbers make the name. */
static void cmd_create_group(br_pworker *pw, const char *room, const char *sender, int argc,
                             char **argv)
{
    const char *usage = "Usage: `create-group NAME NUMBER...` (numbers with country code).";
    char name[256] = "", phones[MAX_ARGS][64];
    const char *jids[MAX_ARGS];
    char jidbuf[MAX_ARGS][80];
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        digits_of(argv[i], phones[n], sizeof(phones[n]));
        bool number = (argv[i][0] == '+' || (argv[i][0] >= '0' && argv[i][0] <= '9')) &&
                      all_digits(phones[n], 7, 15);
        if (number) {
            snprintf(jidbuf[n], sizeof(jidbuf[n]), "%s@s.whatsapp.net", phones[n]);
            jids[n] = jidbuf[n];
            n++;
        } else if (n == 0) {
            size_t o = strlen(name);
            snprintf(name + o, sizeof(name) - o, "%s%s", o ? " " : "", argv[i]);
        } else {
            br_notice(pw, room, "`%s` is not a phone number. %s", argv[i], usage);
            return;
        }
    }
    if (!name[0] || n == 0) {
        br_notice(pw, room, "%s", usage);
        return;
    }
    br_login *l = pick_login(pw, room, sender, NULL);
    if (!l) return;
    if (br_login_group_create(l, name, jids, n, room) != 0)
        br_notice(pw, room, "The group could not be created: this login is not running.");
    else
        br_notice(pw, room, "Creating the WhatsApp group \"%s\" with %zu member(s)...", name, n);
}

/* login-matrix TOKEN / logout-matrix (double_puppet.allow_manual). The message holding a token
 * is redacted (a secret in the room's history), and only the management room takes one. */
static void cmd_matrix_token(br_pworker *pw, const char *room, const char *sender, int argc,
                             char **argv, const char *event_id, bool mgmt_room)
{
    bool login = strcmp(argv[0], "login-matrix") == 0;
    mx_error err;
    if (login && argc >= 2 && event_id &&
        mx_client_redact(pw->mx, NULL, room, event_id, "holds an access token", NULL, NULL, &err) !=
            MX_OK)
        br_notice(pw, room,
                  "⚠ I could not remove your message holding the token: delete it yourself.");
    if (!pw->b->cfg->dp_allow_manual) {
        br_notice(pw, room,
                  "Double puppeting with your own access token is not enabled on this bridge "
                  "(double_puppet.allow_manual).");
        return;
    }
    if (login && !mgmt_room) {
        br_notice(pw, room,
                  "Send `login-matrix` only in your management room: an access token is a "
                  "secret. Log that token out (it was shown here).");
        return;
    }
    if (!login) {
        if (br_puppet_logout_manual(pw, sender) == 0)
            br_notice(pw, room,
                      "Forgot your access token: what you write on your other WhatsApp devices "
                      "shows through the bot again (or through the bridge's own double "
                      "puppeting, where configured). Log the token out if you no longer use it.");
        else
            br_notice(pw, room, "You had not given me an access token.");
        return;
    }
    if (argc != 2) {
        br_notice(pw, room,
                  "Usage: `login-matrix TOKEN` (an access token of your Matrix account).");
        return;
    }
    char why[512];
    if (br_puppet_login_manual(pw, sender, argv[1], why, sizeof(why)) != 0) {
        br_notice(pw, room, "That token was not taken: %s.", why);
        return;
    }
    br_notice(pw, room,
              "Double puppeting on: what you write on your other WhatsApp devices now shows as "
              "sent by you. `logout-matrix` takes it back.");
}

bool br_command_handle(br_pworker *pw, const char *room, const char *sender, const char *body,
                       const char *event_id, bool mgmt_room)
{
    br_bridge *b = pw->b;
    const char *prefix = b->cfg->command_prefix;
    size_t plen = strlen(prefix);
    while (isspace((unsigned char)*body))
        body++;
    if (strncmp(body, prefix, plen) == 0 &&
        (body[plen] == '\0' || isspace((unsigned char)body[plen])))
        body += plen;
    else if (!mgmt_room)
        return false;
    char line[2048];
    snprintf(line, sizeof(line), "%s", body);
    char *argv[MAX_ARGS];
    int argc = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t\r\n", &save); t && argc < MAX_ARGS;
         t = strtok_r(NULL, " \t\r\n", &save))
        argv[argc++] = t;
    if (argc == 0) return mgmt_room;
    atomic_fetch_add(&b->stats.commands, 1);
    br_perm perm = br_config_perm(b->cfg, sender);
    if (perm < BR_PERM_COMMANDS) {
        br_notice(pw, room, "You are not allowed to use this bridge.");
        return true;
    }
    for (char *p = argv[0]; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *cmd = argv[0];
    if (strcmp(cmd, "help") == 0) {
        br_notice(pw, room, help_text, prefix);
        return true;
    }
    if (strcmp(cmd, "ping") == 0 || strcmp(cmd, "list-logins") == 0) {
        cmd_ping(pw, room, sender, strcmp(cmd, "list-logins") == 0);
        return true;
    }
    if (strcmp(cmd, "set-relay") == 0 || strcmp(cmd, "unset-relay") == 0) {
        br_notice(pw, room, "`%s` works in a portal room (a bridged chat), with the prefix %s.",
                  cmd, prefix);
        return true;
    }
    bool known = strcmp(cmd, "login") == 0 || strcmp(cmd, "logout") == 0 ||
                 strcmp(cmd, "sync") == 0 || strcmp(cmd, "start-chat") == 0 ||
                 strcmp(cmd, "create-group") == 0 || strcmp(cmd, "login-matrix") == 0 ||
                 strcmp(cmd, "logout-matrix") == 0;
    if (!known) {
        br_notice(pw, room, "Unknown command `%s`. Send `help` for the list.", cmd);
        return true;
    }
    if (perm < BR_PERM_USER) {
        br_notice(pw, room,
                  "You are not allowed to log in through this bridge (your permission "
                  "level is %s).",
                  br_perm_name(perm));
        return true;
    }
    if (strcmp(cmd, "login-matrix") == 0 || strcmp(cmd, "logout-matrix") == 0) {
        cmd_matrix_token(pw, room, sender, argc, argv, event_id, mgmt_room);
    } else if (strcmp(cmd, "login") == 0) {
        cmd_login(pw, room, sender, argc, argv);
    } else if (strcmp(cmd, "logout") == 0) {
        if (argc > 2) {
            br_notice(pw, room, "Usage: `logout [NUMBER]`.");
            return true;
        }
        br_login *l = pick_login(pw, room, sender, argc == 2 ? argv[1] : NULL);
        if (!l) return true;
        char phone[64];
        snprintf(phone, sizeof(phone), "%s", l->phone);
        br_login_logout(pw, l);
        br_notice(pw, room, "Logged out of WhatsApp (+%s).", phone);
    } else if (strcmp(cmd, "start-chat") == 0) {
        cmd_start_chat(pw, room, sender, argc, argv);
    } else if (strcmp(cmd, "sync") == 0) {
        br_login *ls[16];
        size_t n = br_logins_of(pw->b, sender, ls, 16);
        if (n == 0) {
            br_notice(pw, room, "You are not logged in.");
            return true;
        }
        for (size_t i = 0; i < n; i++)
            br_login_group_sync(ls[i]);
        br_notice(pw, room,
                  "Syncing your WhatsApp groups: a portal room appears for each one "
                  "(you are invited). Contacts come with the first message (contact sync is not "
                  "available yet).");
    } else {
        cmd_create_group(pw, room, sender, argc, argv);
    }
    return true;
}

/* set-relay / unset-relay in a portal room (relay mode, bridge.relay.enabled). */
static void cmd_relay(br_pworker *pw, const br_room_ref *ref, const char *sender, int argc,
                      char **argv)
{
    br_bridge *b = pw->b;
    const char *room = ref->room;
    bool set = strcmp(argv[0], "set-relay") == 0;
    if (!b->cfg->relay_enabled) {
        br_notice(pw, room, "Relay mode is not enabled on this bridge (bridge.relay.enabled).");
        return;
    }
    db_portal p;
    if (db_portal_get(pw->db, ref->portal_id, &p) != DB_OK) {
        br_notice(pw, room, "The portal could not be read; try again.");
        return;
    }
    br_perm perm = br_config_perm(b->cfg, sender);
    if (!set) {
        if (argc != 1) {
            br_notice(pw, room, "Usage: `unset-relay`.");
            return;
        }
        if (p.relay_login_id == 0) {
            br_notice(pw, room, "This room has no relay.");
            return;
        }
        br_login *cur = br_login_find(b, p.relay_login_id);
        if (perm < BR_PERM_ADMIN && (!cur || strcmp(cur->mxid, sender) != 0)) {
            br_notice(pw, room,
                      "Only the user whose account relays here, or a bridge admin, can "
                      "turn the relay off.");
            return;
        }
        if (db_portal_set_relay(pw->db, ref->portal_id, 0) != DB_OK) {
            br_notice(pw, room, "The relay could not be turned off; try again.");
            return;
        }
        br_notice(pw, room,
                  "Relay mode is off: only users with their own WhatsApp login are "
                  "bridged here.");
        return;
    }
    if (argc > 2) {
        br_notice(pw, room, "Usage: `set-relay [NUMBER]`.");
        return;
    }
    if (perm < BR_PERM_USER) {
        br_notice(pw, room,
                  "You are not allowed to relay through this bridge (your permission "
                  "level is %s).",
                  br_perm_name(perm));
        return;
    }
    br_login *l;
    if (ref->receiver) { /* a direct chat: only its own login can relay */
        l = br_login_find(b, ref->receiver);
        if (!l || strcmp(l->mxid, sender) != 0) {
            br_notice(pw, room, "Only the user this chat belongs to can relay here.");
            return;
        }
        if (argc == 2) {
            char want[64];
            digits_of(argv[1], want, sizeof(want));
            if (strcmp(want, l->phone) != 0) {
                br_notice(pw, room, "This chat belongs to your login +%s, not `%s`.", l->phone,
                          argv[1]);
                return;
            }
        }
    } else if (!(l = pick_login(pw, room, sender, argc == 2 ? argv[1] : NULL))) {
        return;
    }
    if (db_portal_set_relay(pw->db, ref->portal_id, l->id) != DB_OK) {
        br_notice(pw, room, "The relay could not be set; try again.");
        return;
    }
    br_notice(pw, room,
              "Relay mode is on: messages of users here without their own WhatsApp login are "
              "sent through +%s, with their name in front.",
              l->phone);
}

bool br_command_in_portal(br_pworker *pw, const br_room_ref *ref, const char *sender,
                          const char *body, const char *event_id)
{
    const char *prefix = pw->b->cfg->command_prefix;
    size_t plen = strlen(prefix);
    const char *p = body;
    while (isspace((unsigned char)*p))
        p++;
    if (strncmp(p, prefix, plen) != 0 || (p[plen] != '\0' && !isspace((unsigned char)p[plen])))
        return false;
    char line[512];
    snprintf(line, sizeof(line), "%s", p + plen);
    char *argv[MAX_ARGS];
    int argc = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t\r\n", &save); t && argc < MAX_ARGS;
         t = strtok_r(NULL, " \t\r\n", &save))
        argv[argc++] = t;
    if (argc > 0) {
        for (char *q = argv[0]; *q; q++)
            *q = (char)tolower((unsigned char)*q);
        if (strcmp(argv[0], "set-relay") == 0 || strcmp(argv[0], "unset-relay") == 0) {
            atomic_fetch_add(&pw->b->stats.commands, 1);
            if (br_config_perm(pw->b->cfg, sender) < BR_PERM_COMMANDS)
                br_notice(pw, ref->room, "You are not allowed to use this bridge.");
            else
                cmd_relay(pw, ref, sender, argc, argv);
            return true;
        }
    }
    return br_command_handle(pw, ref->room, sender, body, event_id, false);
}
