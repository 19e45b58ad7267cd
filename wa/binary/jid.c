/*
 * wa/binary/jid.c - parsing, formatting and comparison of JIDs (see jid.h for the forms).
 */
#include "wa/binary/jid.h"

#include "wa/err.h"

#include <string.h>

static bool parse_uint(const char *s, size_t len, unsigned max, unsigned *out)
{
    if (len == 0 || len > 5) return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max) return false;
    *out = v;
    return true;
}

static bool copy_part(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap) return false;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return true;
}

static const char *memchr_c(const char *s, size_t len, char c)
{
    return len ? memchr(s, c, len) : NULL;
}

int wa_jid_parse(const char *s, size_t len, wa_jid *out)
{
    memset(out, 0, sizeof(*out));
    const char *at = memchr_c(s, len, '@');
    if (!at) return WA_ERR_BAD_JID;
    const char *server = at + 1;
    size_t server_len = len - (size_t)(server - s);
    if (server_len == 0 || memchr_c(server, server_len, '@') || memchr_c(server, server_len, ':') ||
        memchr_c(server, server_len, '\0'))
        return WA_ERR_BAD_JID;
    if (!copy_part(out->server, sizeof(out->server), server, server_len)) return WA_ERR_BAD_JID;

    const char *user = s;
    size_t user_len = (size_t)(at - s);
    if (memchr_c(user, user_len, '\0')) return WA_ERR_BAD_JID;

    const char *colon = memchr_c(user, user_len, ':');
    if (colon) {
        unsigned device;
        size_t dev_len = user_len - (size_t)(colon + 1 - user);
        if (!parse_uint(colon + 1, dev_len, 65535, &device)) return WA_ERR_BAD_JID;
        out->device = (uint16_t)device;
        out->ad = true;
        user_len = (size_t)(colon - user);
    }

    if (strcmp(out->server, WA_SERVER_INTEROP) == 0) {
        const char *dash = memchr_c(user, user_len, '-');
        unsigned integrator;
        if (!dash || !parse_uint(user, (size_t)(dash - user), 65535, &integrator))
            return WA_ERR_BAD_JID;
        out->integrator = (uint16_t)integrator;
        user_len -= (size_t)(dash + 1 - user);
        user = dash + 1;
    } else if (strcmp(out->server, WA_SERVER_PN) == 0) {
        /* user.agent (whatsmeow's form) or user_agent (Baileys' form). A '.' that is not followed
         * by a valid agent is part of the user; a '_' must be. Agents 1, 128 and 129 are the
         * domains of other servers, so no PN JID carries them. */
        const char *dot = memchr_c(user, user_len, '.');
        const char *under = memchr_c(user, user_len, '_');
        const char *sep = under ? under : dot;
        if (sep) {
            unsigned agent;
            /* canonical digits only ("2", not "02" or "0"), so that formatting the JID gives
             * back the same string and the encoding reaches a fixed point */
            bool ok = sep[1] != '0' &&
                      parse_uint(sep + 1, user_len - (size_t)(sep + 1 - user), 255, &agent) &&
                      agent != WA_DOMAIN_LID && agent != WA_DOMAIN_HOSTED &&
                      agent != WA_DOMAIN_HOSTED_LID;
            if (ok) {
                out->agent = (uint8_t)agent;
                user_len = (size_t)(sep - user);
            } else if (sep == under) {
                return WA_ERR_BAD_JID;
            }
        }
    }
    if (!copy_part(out->user, sizeof(out->user), user, user_len)) return WA_ERR_BAD_JID;
    return WA_OK;
}

int wa_jid_parse_cstr(const char *s, wa_jid *out)
{
    return wa_jid_parse(s, strlen(s), out);
}

int wa_jid_make(wa_jid *out, const char *user, const char *server, uint16_t device)
{
    memset(out, 0, sizeof(*out));
    if (!user) user = "";
    if (!server || !*server) return WA_ERR_BAD_JID;
    if (!copy_part(out->user, sizeof(out->user), user, strlen(user)) ||
        !copy_part(out->server, sizeof(out->server), server, strlen(server)))
        return WA_ERR_BAD_JID;
    out->device = device;
    out->ad = device != 0;
    return WA_OK;
}

static bool always_shows_device(const wa_jid *j)
{
    return strcmp(j->server, WA_SERVER_MSGR) == 0 || strcmp(j->server, WA_SERVER_INTEROP) == 0;
}

/* Appends s to buf[*at..cap) as far as it fits; *at counts the full length regardless. */
static void put_str(char *buf, size_t cap, size_t *at, const char *s, size_t len)
{
    if (*at < cap) {
        size_t room = cap - *at;
        memcpy(buf + *at, s, len < room ? len : room);
    }
    *at += len;
}

static void put_uint(char *buf, size_t cap, size_t *at, char prefix, unsigned v, char suffix)
{
    char tmp[8];
    size_t n = sizeof(tmp);
    if (suffix) tmp[--n] = suffix;
    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (prefix) tmp[--n] = prefix;
    put_str(buf, cap, at, tmp + n, sizeof(tmp) - n);
}

size_t wa_jid_format(const wa_jid *j, char *buf, size_t cap)
{
    /* Hand-written rather than snprintf: decoding formats one JID per JID on the wire. */
    size_t at = 0;
    if (strcmp(j->server, WA_SERVER_INTEROP) == 0) put_uint(buf, cap, &at, 0, j->integrator, '-');
    put_str(buf, cap, &at, j->user, strlen(j->user));
    if (j->agent) put_uint(buf, cap, &at, '.', j->agent, 0);
    if (j->device || always_shows_device(j)) put_uint(buf, cap, &at, ':', j->device, 0);
    put_str(buf, cap, &at, "@", 1);
    put_str(buf, cap, &at, j->server, strlen(j->server));
    if (cap) buf[at < cap ? at : cap - 1] = '\0';
    return at;
}

wa_jid_kind wa_jid_kind_of(const wa_jid *j)
{
    static const struct {
        const char *server;
        wa_jid_kind kind;
    } kinds[] = {
        {WA_SERVER_PN, WA_JID_PN},
        {WA_SERVER_LID, WA_JID_LID},
        {WA_SERVER_GROUP, WA_JID_GROUP},
        {WA_SERVER_BROADCAST, WA_JID_BROADCAST},
        {WA_SERVER_NEWSLETTER, WA_JID_NEWSLETTER},
        {WA_SERVER_HOSTED, WA_JID_HOSTED},
        {WA_SERVER_HOSTED_LID, WA_JID_HOSTED_LID},
        {WA_SERVER_MSGR, WA_JID_MSGR},
        {WA_SERVER_INTEROP, WA_JID_INTEROP},
        {WA_SERVER_BOT, WA_JID_BOT},
        {WA_SERVER_LEGACY, WA_JID_LEGACY},
        {WA_SERVER_CALL, WA_JID_CALL},
    };
    if (j->user[0] == '\0') return WA_JID_SERVER;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(j->server, kinds[i].server) != 0) continue;
        if (kinds[i].kind == WA_JID_BROADCAST && strcmp(j->user, "status") == 0)
            return WA_JID_STATUS;
        return kinds[i].kind;
    }
    return WA_JID_OTHER;
}

const char *wa_jid_kind_name(wa_jid_kind k)
{
    static const char *const names[] = {
        [WA_JID_OTHER] = "other",
        [WA_JID_SERVER] = "server",
        [WA_JID_PN] = "pn",
        [WA_JID_LID] = "lid",
        [WA_JID_GROUP] = "group",
        [WA_JID_STATUS] = "status",
        [WA_JID_BROADCAST] = "broadcast",
        [WA_JID_NEWSLETTER] = "newsletter",
        [WA_JID_HOSTED] = "hosted",
        [WA_JID_HOSTED_LID] = "hosted-lid",
        [WA_JID_MSGR] = "msgr",
        [WA_JID_INTEROP] = "interop",
        [WA_JID_BOT] = "bot",
        [WA_JID_LEGACY] = "legacy",
        [WA_JID_CALL] = "call",
    };
    if ((unsigned)k >= sizeof(names) / sizeof(names[0])) return "?";
    return names[k];
}

int wa_jid_compare(const wa_jid *a, const wa_jid *b)
{
    int c = strcmp(a->server, b->server);
    if (c) return c;
    c = strcmp(a->user, b->user);
    if (c) return c;
    if (a->agent != b->agent) return a->agent < b->agent ? -1 : 1;
    if (a->device != b->device) return a->device < b->device ? -1 : 1;
    if (a->integrator != b->integrator) return a->integrator < b->integrator ? -1 : 1;
    return 0;
}

bool wa_jid_equal(const wa_jid *a, const wa_jid *b)
{
    return wa_jid_compare(a, b) == 0;
}

static const char *canonical_server(const char *server)
{
    return strcmp(server, WA_SERVER_LEGACY) == 0 ? WA_SERVER_PN : server;
}

bool wa_jid_same_user(const wa_jid *a, const wa_jid *b)
{
    return strcmp(canonical_server(a->server), canonical_server(b->server)) == 0 &&
           strcmp(a->user, b->user) == 0 && a->integrator == b->integrator;
}

wa_jid wa_jid_to_user(const wa_jid *j)
{
    wa_jid u = *j;
    u.device = 0;
    u.agent = 0;
    u.ad = false;
    if (strcmp(u.server, WA_SERVER_LEGACY) == 0) strcpy(u.server, WA_SERVER_PN);
    return u;
}

int wa_jid_ad_domain(const wa_jid *j)
{
    if (strcmp(j->server, WA_SERVER_PN) == 0) return j->agent;
    if (j->agent) return -1;
    if (strcmp(j->server, WA_SERVER_LID) == 0) return WA_DOMAIN_LID;
    if (strcmp(j->server, WA_SERVER_HOSTED) == 0) return WA_DOMAIN_HOSTED;
    if (strcmp(j->server, WA_SERVER_HOSTED_LID) == 0) return WA_DOMAIN_HOSTED_LID;
    return -1;
}
