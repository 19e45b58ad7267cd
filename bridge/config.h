/*
 * bridge/config.h - the daemon's configuration: one YAML file plus environment overrides.
 *
 * br_config_load reads the file (config.sample.yaml documents every option), lays the
 * environment over it (every option has the variable "WABRIDGE_" + its dotted path uppercased,
 * '.' -> '_'), checks every value and fills a br_config, or fails with one message that names the
 * option (or the variable) and the YAML line. Unknown keys, duplicate keys and mistyped values are
 * errors: a typo never passes silently. The parser reads outside input and never crashes on it
 * (tests/fuzz/fuzz_config.c).
 *
 * Also here: who may use the bridge (permissions), the ghost localpart and display name
 * templates, `wabridge -e` (write the sample) and `wabridge -g` (generate tokens and the
 * registration file). The loaded config is the process's one piece of global state; nothing in
 * this module keeps any.
 */
#ifndef BR_CONFIG_H
#define BR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ordered: each level may do what the ones below it may. */
typedef enum br_perm {
    BR_PERM_NONE = 0, /* nothing: the bridge ignores the user */
    BR_PERM_RELAY,    /* messages may be relayed through a logged-in user's WhatsApp account
                         (where bridge.relay.enabled) */
    BR_PERM_COMMANDS, /* may talk to the bot (help, status), no own WhatsApp login */
    BR_PERM_USER,     /* may log in with an own WhatsApp account and bridge chats */
    BR_PERM_ADMIN,    /* everything, including admin commands for other users */
} br_perm;

/* who: "*", a domain "example.org", or an MXID "@a:example.org" */
typedef struct br_perm_rule {
    char *who;
    br_perm level;
} br_perm_rule;

/* double_puppet.secrets: the bridge acts as the real users of server through a second
 * appservice registration (url null, a non-exclusive user namespace covering them): its
 * as_token plus ?user_id=. */
typedef struct br_dp_secret {
    char *server;   /* a server name, e.g. "example.org" (only homeserver.domain for now) */
    char *as_token; /* secret: the "<token>" of "as_token:<token>"; wiped when freed */
} br_dp_secret;

/* Every string is malloc'd, never NULL after a successful parse, owned by the struct
 * (br_config_free). Secrets (as_token, hs_token, db_uri) are wiped when freed; never log them. */
typedef struct br_config {
    char *hs_address;        /* homeserver.address, e.g. "http://127.0.0.1:8008" (required,
                                http/https URL; trailing '/' removed) */
    char *hs_domain;         /* homeserver.domain, e.g. "example.org" (required) */
    char *as_address;        /* appservice.address: URL the homeserver pushes to; default
                                "http://127.0.0.1:29318" (trailing '/' removed) */
    char *as_hostname;       /* appservice.hostname: listen IPv4 address; default "127.0.0.1" */
    uint16_t as_port;        /* appservice.port; default 29318 */
    char *as_id;             /* appservice.id; default "whatsapp" */
    char *as_token;          /* appservice.as_token (required; "generate" allowed only for -g) */
    char *hs_token;          /* appservice.hs_token (same; must differ from as_token) */
    char *bot_username;      /* appservice.bot.username; default "whatsappbot" */
    char *bot_displayname;   /* appservice.bot.displayname; default "WhatsApp bridge bot" */
    char *bot_avatar;        /* appservice.bot.avatar: mxc:// URI or ""; default "" */
    char *username_template; /* appservice.username_template; default "whatsapp_{{.}}"; {{.}}
                                exactly once, after a non-empty prefix */
    char
        *displayname_template; /* bridge.displayname_template; default "{{.PushName}} (WA)";
                                  placeholders {{.PushName}} {{.ContactName}} {{.Phone}} {{.JID}} */
    char *db_uri;              /* database.uri (required): postgres:// URI or libpq conninfo */
    int db_max_conns;          /* database.max_open_conns; default 8; 1..1000 */
    int engine_workers;        /* workers.engine; 0 = number of cores (default); 0..1024 */
    int portal_workers;        /* workers.portal; 0 = 2 x cores (default); 0..4096 */
    char *wa_url;              /* whatsapp.url; default "wss://web.whatsapp.com/ws/chat" */
    uint8_t wa_trust_root[32]; /* whatsapp.trust_root: 32 bytes as base64 or hex */
    bool wa_trust_root_set;    /* false = use WhatsApp's real root */
    char *wa_ca_file;          /* whatsapp.ca_file: TLS CA bundle path, "" = system CAs */
    char *wa_os_name;          /* whatsapp.os_name; default "wabridge" */
    char *command_prefix;      /* bridge.command_prefix; default "!wa" */
    bool relay_enabled;        /* bridge.relay.enabled; default false */
    int64_t qr_timeout_s;      /* bridge.login_timeout_s: seconds a login (QR or code) may wait;
                                  default 180; 10..3600 */
    br_perm_rule *perms;       /* bridge.permissions: who -> level; default none (nobody) */
    size_t n_perms;            /* entries in perms */
    br_dp_secret *dp_secrets;  /* double_puppet.secrets: server -> as_token; default none */
    size_t n_dp_secrets;       /* entries in dp_secrets */
    bool dp_allow_manual;      /* double_puppet.allow_manual: users may give their own access token
                                  (login-matrix TOKEN); default false */
    char *log_level;           /* logging.level: debug|info|warn|error; default "info" */
    bool log_json;             /* logging.json; default false */
} br_config;

/* Flags of br_config_parse_ex. */
#define BR_CONFIG_ALLOW_GENERATE 1u /* accept the tokens "generate" (what -g reads) */

/* Parses a config held in memory. env: NULL-terminated "NAME=value" array (pass environ), or NULL
 * for none; an empty variable counts as unset. On success *out is filled (free it with
 * br_config_free); on failure *out is left zeroed and err gets one message naming the option (and
 * the YAML line when known), e.g. "appservice.port: expected an integer 1-65535, got \"abc\"
 * (line 12)". Secrets are never quoted in messages. Returns 0 or -1. */
int br_config_parse(const char *yaml, size_t len, char *const *env, br_config *out, char *err,
                    size_t errcap);
/* The same with flags (BR_CONFIG_ALLOW_GENERATE). */
int br_config_parse_ex(const char *yaml, size_t len, char *const *env, unsigned flags,
                       br_config *out, char *err, size_t errcap);
/* Reads the file at path (at most 1 MiB) and parses it as above. */
int br_config_load(const char *path, char *const *env, br_config *out, char *err, size_t errcap);
/* Frees every string (wiping secrets) and zeroes *c. NULL is fine. */
void br_config_free(br_config *c);

/* The level for mxid: the most specific rule wins (exact MXID > its domain > "*"); none, or an
 * mxid that is not "@localpart:domain", gives BR_PERM_NONE. Domains compare case-insensitively. */
br_perm br_config_perm(const br_config *c, const char *mxid);
/* The double puppeting as_token for mxid's server (double_puppet.secrets), NULL when none. */
const char *br_config_dp_as_token(const br_config *c, const char *mxid);
/* "none", "relay", "commands", "user", "admin"; never NULL. */
const char *br_perm_name(br_perm p);

/* The text of config.sample.yaml, embedded at build time (static, NUL-terminated). */
const char *br_config_example(void);
/* Writes the sample to path (mode 0600: it will hold secrets); refuses to overwrite an existing
 * file. Returns 0 or -1 with err. */
int br_config_write_example(const char *path, char *err, size_t errcap);

/* Ghost MXID localpart for a WhatsApp user id ("15551234567" or "lid-123": lowercase letters,
 * digits, '-', '.', '_'), from username_template. Returns 0, or -1 for an id with other characters
 * or when out (cap bytes with the NUL) is too small. */
int br_config_ghost_localpart(const br_config *c, const char *id, char *out, size_t cap);
/* Reverse: localpart -> id; false when the localpart does not match the template (or the id part
 * is empty, has characters an id cannot have, or does not fit in cap). */
bool br_config_ghost_id(const br_config *c, const char *localpart, char *id, size_t cap);
/* Display name from displayname_template. Any argument may be NULL or "". A missing PushName
 * falls back to ContactName, then to +Phone, then to the JID (ContactName likewise to PushName);
 * {{.Phone}} renders as "+<digits>". What an empty placeholder leaves behind ("()", "[]",
 * doubled or edge spaces) is removed; control characters become spaces. A result longer than cap
 * is cut at a UTF-8 character boundary. Returns 0, or -1 when out is NULL or cap is 0. */
int br_config_displayname(const br_config *c, const char *push_name, const char *contact_name,
                          const char *phone, const char *jid, char *out, size_t cap);

/* Effective thread counts: workers.engine (0 = online cores) and workers.portal (0 = 2 x cores). */
int br_config_engine_workers(const br_config *c);
int br_config_portal_workers(const br_config *c);

/* wabridge -g: reads the config at config_path (environment applied: env as for
 * br_config_parse, environ for the plain call); if as_token / hs_token are "generate", creates
 * random tokens (mx_registration_generate) and writes them back into the config file in place
 * (only those values change; comments and layout stay; atomic replace, mode kept), then writes the
 * registration file (mx_registration_write, mode 0600) with url = as_address, id, bot localpart,
 * and the ghost prefix (username_template before {{.}}). A second run keeps the tokens. A token
 * given by the environment is used as is; "generate" there is an error (nothing to write back).
 * Returns 0 or -1 with err. */
int br_config_generate_registration(const char *config_path, const char *reg_path, char *err,
                                    size_t errcap);
int br_config_generate_registration_env(const char *config_path, const char *reg_path,
                                        char *const *env, char *err, size_t errcap);

#endif
