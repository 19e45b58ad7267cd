/*
 * wa/binary/jid.h - WhatsApp JIDs: parse, format, compare.
 *
 * A JID names a user, a device of a user, a group, a broadcast list, a newsletter... as
 * `user[.agent][:device]@server`. One person has two user identities, a phone number (PN, on
 * s.whatsapp.net) and a LID (on lid); a device adds `:N` (0 is the phone). Messenger users
 * (`user:device@msgr`) and interop users (`integrator-user:device@interop`) carry the device
 * always. A wa_jid is a plain value: copy it with `=`, no allocation, no free.
 */
#ifndef WA_BINARY_JID_H
#define WA_BINARY_JID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WA_JID_USER_MAX   128 /* bytes; a longer user is not taken as a JID */
#define WA_JID_SERVER_MAX 64  /* bytes */
/* Longest formatted JID plus its NUL. */
#define WA_JID_STR_MAX (WA_JID_USER_MAX + WA_JID_SERVER_MAX + 32)

#define WA_SERVER_PN         "s.whatsapp.net"
#define WA_SERVER_PN_AT      "@s.whatsapp.net" /* the server itself, as IQs address it */
#define WA_SERVER_LID        "lid"
#define WA_SERVER_GROUP      "g.us"
#define WA_SERVER_BROADCAST  "broadcast"
#define WA_SERVER_NEWSLETTER "newsletter"
#define WA_SERVER_HOSTED     "hosted"
#define WA_SERVER_HOSTED_LID "hosted.lid"
#define WA_SERVER_MSGR       "msgr"
#define WA_SERVER_INTEROP    "interop"
#define WA_SERVER_BOT        "bot"
#define WA_SERVER_LEGACY     "c.us"
#define WA_SERVER_CALL       "call"

/* AD_JID domain bytes. Any other domain byte is a raw agent on s.whatsapp.net. */
#define WA_DOMAIN_PN         0
#define WA_DOMAIN_LID        1
#define WA_DOMAIN_HOSTED     128
#define WA_DOMAIN_HOSTED_LID 129

typedef enum wa_jid_kind {
    WA_JID_OTHER = 0,  /* a server we do not know */
    WA_JID_SERVER,     /* "@s.whatsapp.net" etc.: empty user */
    WA_JID_PN,         /* phone number user or device */
    WA_JID_LID,        /* LID user or device */
    WA_JID_GROUP,      /* g.us */
    WA_JID_STATUS,     /* status@broadcast */
    WA_JID_BROADCAST,  /* other broadcast lists */
    WA_JID_NEWSLETTER, /* channels */
    WA_JID_HOSTED,     /* hosted (business platform) PN */
    WA_JID_HOSTED_LID, /* hosted LID */
    WA_JID_MSGR,       /* Messenger user */
    WA_JID_INTEROP,    /* interop user */
    WA_JID_BOT,        /* bot */
    WA_JID_LEGACY,     /* c.us, the old name of s.whatsapp.net */
    WA_JID_CALL,       /* call */
} wa_jid_kind;

typedef struct wa_jid {
    char user[WA_JID_USER_MAX + 1];     /* NUL-terminated, may be empty */
    char server[WA_JID_SERVER_MAX + 1]; /* NUL-terminated, never empty */
    uint16_t device;                    /* 0 = the main device (phone) */
    uint16_t integrator;                /* interop only */
    uint8_t agent;                      /* raw agent (AD domain byte) on s.whatsapp.net, else 0 */
    bool ad;                            /* written with a device part: encodes as AD_JID */
} wa_jid;

/* Parses s[0..len). Returns 0 (WA_OK) or WA_ERR_BAD_JID when s is not a JID we can represent
 * exactly (no '@', empty server, a non-numeric device, a part too long...). */
int wa_jid_parse(const char *s, size_t len, wa_jid *out);
/* Convenience for NUL-terminated strings. */
int wa_jid_parse_cstr(const char *s, wa_jid *out);

/* Builds a JID from parts; user may be NULL for "". Returns WA_ERR_BAD_JID if a part is too long.
 */
int wa_jid_make(wa_jid *out, const char *user, const char *server, uint16_t device);

/* Writes the canonical string (snprintf rules: returns the length it needs, NUL-terminates when
 * cap > 0). A buffer of WA_JID_STR_MAX bytes is always enough. */
size_t wa_jid_format(const wa_jid *j, char *buf, size_t cap);

wa_jid_kind wa_jid_kind_of(const wa_jid *j);
const char *wa_jid_kind_name(wa_jid_kind k);

/* Orders by server, user, agent, device, integrator; 0 when the JIDs are the same address. */
int wa_jid_compare(const wa_jid *a, const wa_jid *b);
bool wa_jid_equal(const wa_jid *a, const wa_jid *b);
/* Same user on the same server, whatever the device and agent; c.us and s.whatsapp.net are one. */
bool wa_jid_same_user(const wa_jid *a, const wa_jid *b);
/* The user without device or agent (c.us normalised to s.whatsapp.net). */
wa_jid wa_jid_to_user(const wa_jid *j);

/* The AD_JID domain byte for j, or -1 when j cannot be sent as an AD_JID. */
int wa_jid_ad_domain(const wa_jid *j);

#endif
