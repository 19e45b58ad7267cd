/*
 * matrix/registration.h - the appservice registration file: generate, write, read back.
 *
 * The homeserver admin installs the file `wabridge -g` writes; the bridge and hs-sim read it. It
 * holds two random secrets (as_token: we call the homeserver; hs_token: it calls us), the
 * exclusive user namespaces (the bot, and the ghosts `@<prefix>.+:<domain>`, the domain
 * regex-escaped), `rate_limited: false`, and ephemeral events switched on (stable and MSC2409).
 */
#ifndef MX_REGISTRATION_H
#define MX_REGISTRATION_H

#include <stdbool.h>
#include <stddef.h>

#define MX_REG_MAX_NAMESPACES 8 /* per kind (users, aliases, rooms) kept when reading */

typedef struct mx_reg_namespace {
    char *regex;    /* malloc'd POSIX-ERE-compatible regex, anchored with ^…$ when we write it */
    bool exclusive; /* only this appservice may create/use matching ids */
} mx_reg_namespace;

/* Every string is malloc'd and owned by the struct (mx_registration_free). */
typedef struct mx_registration {
    char *id;               /* appservice id, e.g. "whatsapp" */
    char *url;              /* where the homeserver pushes; NULL = none */
    char *as_token;         /* secret: our token at the homeserver; never log */
    char *hs_token;         /* secret: the homeserver's token at us; never log */
    char *sender_localpart; /* the bot's localpart */
    bool rate_limited;      /* false: ghosts are exempt from rate limits */
    bool receive_ephemeral; /* push typing/receipts/presence (stable key or MSC2409 key) */
    mx_reg_namespace users[MX_REG_MAX_NAMESPACES];
    size_t n_users; /* entries used in users */
    mx_reg_namespace aliases[MX_REG_MAX_NAMESPACES];
    size_t n_aliases; /* entries used in aliases */
} mx_registration;

typedef struct mx_registration_params {
    const char *id;            /* appservice id; NULL = "whatsapp" */
    const char *url;           /* our endpoint, e.g. "http://127.0.0.1:29318"; required */
    const char *domain;        /* homeserver name, e.g. "example.org"; required */
    const char *bot_localpart; /* NULL = "whatsappbot" */
    const char *ghost_prefix;  /* ghost localpart prefix; NULL = "whatsapp_" */
} mx_registration_params;

/* Fills *out with fresh random tokens (64 hex chars each, from getrandom) and the namespaces.
 * Returns MX_OK, MX_ERR_INVALID, MX_ERR_IO (no randomness) or MX_ERR_NOMEM. */
int mx_registration_generate(const mx_registration_params *p, mx_registration *out);
/* Writes r as YAML to path (created with mode 0600: it holds secrets; replaced atomically). */
int mx_registration_write(const mx_registration *r, const char *path);
/* Reads a registration file. Unknown keys are ignored; id, as_token, hs_token and
 * sender_localpart are required (MX_ERR_BAD_JSON if missing: wrong shape), MX_ERR_IO if the file
 * cannot be read or is not YAML. */
int mx_registration_load(const char *path, mx_registration *out);
void mx_registration_free(mx_registration *r);

/* Escapes regex metacharacters of s (for a domain inside a namespace regex). Caller frees. */
char *mx_regex_escape(const char *s);

#endif
