/*
 * matrix/client.h - the client-server API client: what the bridge calls on the homeserver.
 *
 * Blocking calls over one libcurl easy handle (keep-alive), one mx_client per thread (portal
 * workers each own one). Every request carries `Authorization: Bearer <as_token>`; a call made
 * "as" a ghost adds `?user_id=<mxid>` (appservice masquerading); as_user NULL means the bot. A
 * call "as" a double-puppeted real user carries the token mx_puppet_auth gives for that user.
 *
 * Retries: network errors, timeouts and 5xx are retried with exponential backoff (jittered);
 * 429 waits `retry_after_ms` (body) or Retry-After (header) when given. Each attempt has its own
 * timeout, and every call a total budget (attempts and deadline). Sends and redactions carry a
 * txnId the caller may choose, kept the same across retries, so a retried send after a lost answer
 * is not duplicated by the homeserver. Errors come back as an mx_err plus an mx_error carrying the
 * HTTP status, errcode and error text of the homeserver's answer.
 *
 * Ghost registration is cached (mx_ghost_cache: in memory, with hooks so the bridge can persist
 * it in the database): ensure_registered asks the homeserver once per ghost.
 *
 * Strings returned through `char **out` are malloc'd and owned by the caller (free()).
 * Never logs tokens.
 */
#ifndef MX_CLIENT_H
#define MX_CLIENT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "matrix/err.h"
#include "util/bytes.h"

/* What went wrong in the last failed call. */
typedef struct mx_error {
    int code;            /* the mx_err returned */
    long http_status;    /* last HTTP status seen, 0 when none (network error) */
    char errcode[64];    /* homeserver errcode, e.g. "M_FORBIDDEN"; "" when none */
    char error[256];     /* homeserver error text or a local description */
    long retry_after_ms; /* from the last 429, 0 when none */
    unsigned attempts;   /* attempts made by the call */
} mx_error;

/* Persistence hook for registered ghosts (the bridge stores them in PostgreSQL). Both may be
 * NULL; `known` is asked on a cache miss before the homeserver, `remember` after a successful
 * registration (or M_USER_IN_USE). */
typedef struct mx_ghost_store {
    void *ctx;
    bool (*known)(void *ctx, const char *user_id);
    void (*remember)(void *ctx, const char *user_id);
} mx_ghost_store;

/* Double puppeting: another token that acts for a real Matrix user (not the bot, not a ghost).
 * token_for is asked on every call made "as" a user (as_user not NULL), on the calling thread; it
 * returns true with token filled (NUL-terminated, at most cap bytes) when such a token exists:
 * *masquerade true = an appservice's as_token (a second registration whose namespace covers the
 * user): `?user_id=<as_user>` is added as usual; false = the user's own access token, sent bare.
 * false = not a puppet: the bridge's own as_token with `?user_id=`. May be NULL. The token is
 * wiped from memory after the call and never logged. */
typedef struct mx_puppet_auth {
    void *ctx;
    bool (*token_for)(void *ctx, const char *user_id, char *token, size_t cap, bool *masquerade);
} mx_puppet_auth;

typedef struct mx_client_config {
    const char *hs_url;        /* e.g. "http://127.0.0.1:8008" (no trailing slash needed); copied */
    const char *as_token;      /* copied; never logged */
    const char *server_name;   /* homeserver name for building MXIDs, e.g. "example.org"; copied */
    const char *bot_localpart; /* the sender_localpart; copied */
    long timeout_ms;           /* per attempt; 0 = 30000 */
    long connect_timeout_ms;   /* 0 = 5000 */
    unsigned max_attempts;     /* per call; 0 = 8 */
    long backoff_initial_ms;   /* first retry delay; 0 = 200 */
    long backoff_max_ms;       /* cap of the delay; 0 = 10000 */
    long deadline_ms;          /* total budget of one call incl. waits; 0 = 120000 */
    mx_ghost_store ghosts;     /* optional persistence of the ghost cache */
    mx_puppet_auth puppets;    /* optional: tokens of double-puppeted users */
} mx_client_config;

typedef struct mx_client mx_client;

/* Returns NULL when out of memory or a required field (hs_url, as_token, server_name,
 * bot_localpart) is missing. */
mx_client *mx_client_new(const mx_client_config *cfg);
void mx_client_free(mx_client *c);
/* The bot's MXID, "@<bot_localpart>:<server_name>" (owned by c). */
const char *mx_client_bot_id(const mx_client *c);
/* A fresh unique transaction id (for mx_client_send when the caller wants to keep it for a retry
 * after a crash). Writes into buf (at least 48 bytes). */
void mx_client_new_txn_id(mx_client *c, char *buf, size_t cap);

/* ---- start-up ---- */

/* GET /_matrix/client/versions, retried until it answers or wait_ms passes; *versions_out (may be
 * NULL) receives the JSON body. */
int mx_client_wait_versions(mx_client *c, long wait_ms, char **versions_out, mx_error *err);
/* GET /account/whoami as as_user (NULL = bot); *user_id receives the answer. */
int mx_client_whoami(mx_client *c, const char *as_user, char **user_id, mx_error *err);
/* POST /_matrix/client/v1/appservice/{as_id}/ping: the homeserver calls our endpoint's ping. */
int mx_client_appservice_ping(mx_client *c, const char *as_id, const char *txn_id, mx_error *err);
/* versions (waiting up to wait_ms) + whoami must be the bot + appservice ping. */
int mx_client_startup(mx_client *c, const char *as_id, long wait_ms, mx_error *err);

/* ---- ghosts ---- */

/* Registers @localpart:server (appservice registration) unless known; M_USER_IN_USE counts as
 * success. Cached after success. */
int mx_client_ensure_registered(mx_client *c, const char *localpart, mx_error *err);
/* "@localpart:server" (caller frees). */
char *mx_client_user_id(const mx_client *c, const char *localpart);

/* ---- rooms ---- */

typedef struct mx_create_room {
    const char *name;            /* NULL = none */
    const char *topic;           /* NULL = none */
    const char *preset;          /* "private_chat" (NULL), "trusted_private_chat", "public_chat" */
    const char *room_alias_name; /* localpart of an alias to create, NULL = none */
    bool is_direct;              /* mark as a DM */
    const char *const *invite;   /* NULL-terminated MXIDs to invite, may be NULL */
    const cJSON *initial_state;  /* array of {type, state_key, content}, borrowed, may be NULL */
    const cJSON *power_level_override; /* object, borrowed, may be NULL */
    const cJSON *creation_content;     /* object, borrowed, may be NULL */
} mx_create_room;

int mx_client_create_room(mx_client *c, const char *as_user, const mx_create_room *opts,
                          char **room_id, mx_error *err);
/* Joins a room id or alias; *room_id (may be NULL) receives the id joined. */
int mx_client_join(mx_client *c, const char *as_user, const char *room_id_or_alias, char **room_id,
                   mx_error *err);
int mx_client_invite(mx_client *c, const char *as_user, const char *room_id, const char *user_id,
                     mx_error *err);
int mx_client_leave(mx_client *c, const char *as_user, const char *room_id, mx_error *err);
int mx_client_kick(mx_client *c, const char *as_user, const char *room_id, const char *user_id,
                   const char *reason, mx_error *err);

/* ---- events ---- */

/* PUT /rooms/{room}/state/{type}/{state_key}; content borrowed; *event_id may be NULL. */
int mx_client_send_state(mx_client *c, const char *as_user, const char *room_id, const char *type,
                         const char *state_key, const cJSON *content, char **event_id,
                         mx_error *err);
int mx_client_set_room_name(mx_client *c, const char *as_user, const char *room_id,
                            const char *name, mx_error *err);
int mx_client_set_room_topic(mx_client *c, const char *as_user, const char *room_id,
                             const char *topic, mx_error *err);
int mx_client_set_room_avatar(mx_client *c, const char *as_user, const char *room_id,
                              const char *mxc_url, mx_error *err);
int mx_client_set_power_levels(mx_client *c, const char *as_user, const char *room_id,
                               const cJSON *content, mx_error *err);
/* GET one state event's content (*content_out owned by the caller: cJSON_Delete). */
int mx_client_get_state(mx_client *c, const char *as_user, const char *room_id, const char *type,
                        const char *state_key, cJSON **content_out, mx_error *err);

/* PUT /rooms/{room}/send/{type}/{txn_id}. txn_id NULL = a fresh one (kept across retries).
 * ts_ms > 0 adds ?ts= (appservice timestamp massaging). */
int mx_client_send(mx_client *c, const char *as_user, const char *room_id, const char *type,
                   const cJSON *content, const char *txn_id, int64_t ts_ms, char **event_id,
                   mx_error *err);
/* PUT /rooms/{room}/redact/{event}/{txn_id}; reason may be NULL; txn_id as for send. */
int mx_client_redact(mx_client *c, const char *as_user, const char *room_id, const char *event_id,
                     const char *reason, const char *txn_id, char **redaction_id, mx_error *err);
/* The same with extra keys in the request body (borrowed object, may be NULL; the homeserver
 * keeps them in the redaction's content, e.g. a double puppeting marker). */
int mx_client_redact_ex(mx_client *c, const char *as_user, const char *room_id,
                        const char *event_id, const char *reason, const cJSON *extra,
                        const char *txn_id, char **redaction_id, mx_error *err);
int mx_client_typing(mx_client *c, const char *as_user, const char *room_id, bool typing,
                     long timeout_ms, mx_error *err);
/* POST /rooms/{room}/receipt/m.read/{event}. */
int mx_client_read_receipt(mx_client *c, const char *as_user, const char *room_id,
                           const char *event_id, mx_error *err);
/* PUT /presence/{user}/status; presence "online" / "offline" / "unavailable"; msg may be NULL. */
int mx_client_set_presence(mx_client *c, const char *as_user, const char *presence,
                           const char *status_msg, mx_error *err);

/* ---- profile ---- */

int mx_client_set_displayname(mx_client *c, const char *as_user, const char *name, mx_error *err);
int mx_client_set_avatar_url(mx_client *c, const char *as_user, const char *mxc_url, mx_error *err);
/* GET /profile/{user}; either out may be NULL; absent fields give NULL. */
int mx_client_get_profile(mx_client *c, const char *user_id, char **displayname, char **avatar_url,
                          mx_error *err);

/* ---- media ---- */

/* POST /_matrix/media/v3/upload; *mxc_uri receives "mxc://server/id". filename may be NULL. */
int mx_client_upload(mx_client *c, const char *as_user, const char *content_type,
                     const char *filename, const uint8_t *data, size_t len, char **mxc_uri,
                     mx_error *err);
/* Downloads an mxc:// URI: authenticated /_matrix/client/v1/media/download first, falling back to
 * /_matrix/media/v3/download when the homeserver does not know the former (404/405
 * M_UNRECOGNIZED). Appends to *out (caller's builder); *content_type may be NULL. max_len bounds
 * the body (0 = 100 MiB). */
int mx_client_download(mx_client *c, const char *mxc_uri, size_t max_len, wb_buf *out,
                       char **content_type, mx_error *err);

/* ---- low level ---- */

/* One request with the retry policy. path starts with "/_matrix/..." and has its components
 * escaped (see mx_url_escape); query (may be NULL) is appended after `?`/`&` as given. body may
 * be NULL. On 2xx *json_out (may be NULL) receives the parsed body (cJSON_Delete). */
int mx_client_request(mx_client *c, const char *method, const char *path, const char *as_user,
                      const char *query, const cJSON *body, cJSON **json_out, mx_error *err);
/* Percent-escapes everything but RFC 3986 unreserved characters (caller frees). */
char *mx_url_escape(const char *s);

/* Counters for tests (since mx_client_new). */
typedef struct mx_client_stats {
    uint64_t requests;   /* HTTP attempts made */
    uint64_t retries;    /* attempts that were retries */
    uint64_t registered; /* ghosts registered at the homeserver (cache misses that asked) */
} mx_client_stats;
void mx_client_stats_get(const mx_client *c, mx_client_stats *out);

#endif
