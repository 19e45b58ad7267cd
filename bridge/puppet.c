/*
 * bridge/puppet.c - double puppeting: the bridge acts as a logged-in user's own Matrix account.
 *
 * What a user writes on their other WhatsApp devices (the phone, WhatsApp Web) reaches the bridge
 * as an own-device copy. Without double puppeting it shows through the bot (an m.notice); with it,
 * the bridge sends it as the user, through a second appservice registration whose namespace
 * covers the real users (config double_puppet.secrets: its as_token plus ?user_id=). Every event
 * sent so carries the marker BR_PUPPET_KEY = the bot's localpart, so its echo in the homeserver's
 * transactions is recognised and dropped (never bridged back to WhatsApp).
 *
 * With double_puppet.allow_manual, a user may instead give the bridge an access token of their
 * own (`login-matrix <token>` in the management room, checked with whoami to be theirs; kept in
 * mx_user.double_puppet_token, cached in memory for the clients' hook); it wins over the secret.
 *
 * Each login checks its user once (GET /account/whoami as the user) on the first portal job that
 * needs it; a refusal is logged and the login keeps the bot's way (a homeserver that did not
 * answer is asked again next time). The user's own ghost
 * (@whatsapp_<their number>) is left out of rooms where the user is present in person.
 */
#define _GNU_SOURCE /* memmem */
#include "bridge/bridge_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "puppet"

/* A user's own access token (login-matrix). */
struct br_manual_puppet {
    char mxid[DB_ID_MAX];
    char *token; /* secret; wiped when dropped */
};

static void wipe_free(char *s)
{
    if (!s) return;
    memset(s, 0, strlen(s));
    free(s);
}

/* Sets (token not NULL) or drops mxid's cached token. Takes puppet_lock. */
static void manual_set(br_bridge *b, const char *mxid, const char *token)
{
    pthread_mutex_lock(&b->puppet_lock);
    size_t i = 0;
    while (i < b->n_manual && strcmp(b->manual[i].mxid, mxid) != 0)
        i++;
    if (i < b->n_manual) { /* drop the old one (the last entry takes its place) */
        wipe_free(b->manual[i].token);
        b->manual[i] = b->manual[--b->n_manual];
    }
    char *copy = token ? strdup(token) : NULL;
    struct br_manual_puppet *grown =
        copy ? realloc(b->manual, (b->n_manual + 1) * sizeof(*b->manual)) : NULL;
    if (grown) {
        b->manual = grown;
        snprintf(grown[b->n_manual].mxid, sizeof(grown[b->n_manual].mxid), "%s", mxid);
        grown[b->n_manual++].token = copy;
    } else {
        wipe_free(copy);
    }
    pthread_mutex_unlock(&b->puppet_lock);
}

static bool manual_get(br_bridge *b, const char *mxid, char *token, size_t cap)
{
    bool found = false;
    pthread_mutex_lock(&b->puppet_lock);
    for (size_t i = 0; i < b->n_manual && !found; i++) {
        if (strcmp(b->manual[i].mxid, mxid) != 0 || strlen(b->manual[i].token) >= cap) continue;
        memcpy(token, b->manual[i].token, strlen(b->manual[i].token) + 1);
        found = true;
    }
    pthread_mutex_unlock(&b->puppet_lock);
    return found;
}

void br_puppet_free(br_bridge *b)
{
    for (size_t i = 0; i < b->n_manual; i++)
        wipe_free(b->manual[i].token);
    free(b->manual);
    b->manual = NULL;
    b->n_manual = 0;
}

/* mx_puppet_auth.token_for: the user's own token (login-matrix), else the double puppeting
 * as_token of the user's server. */
static bool token_for(void *ctx, const char *user_id, char *token, size_t cap, bool *masquerade)
{
    br_bridge *b = ctx;
    if (br_is_ours(b, user_id)) return false; /* the bot and the ghosts: our own as_token */
    if (b->cfg->dp_allow_manual && manual_get(b, user_id, token, cap)) {
        *masquerade = false;
        return true;
    }
    const char *tok = br_config_dp_as_token(b->cfg, user_id);
    if (!tok || strlen(tok) >= cap) return false;
    memcpy(token, tok, strlen(tok) + 1);
    *masquerade = true;
    return true;
}

mx_puppet_auth br_puppet_auth(br_bridge *b)
{
    mx_puppet_auth a = {.ctx = b, .token_for = token_for};
    return a;
}

bool br_puppet_ok(br_pworker *pw, br_login *l)
{
    int st = atomic_load(&l->dp_state);
    if (st) return st > 0;
    bool manual = false;
    if (pw->b->cfg->dp_allow_manual) { /* the user's own token, from the database */
        char tok[1024];
        manual = db_user_puppet_token(pw->db, l->mxid, tok, sizeof(tok)) == DB_OK && tok[0];
        if (manual) manual_set(pw->b, l->mxid, tok);
        memset(tok, 0, sizeof(tok));
    }
    if (!manual && !br_config_dp_as_token(pw->b->cfg, l->mxid)) {
        atomic_store(&l->dp_state, -1); /* no secret for the user's server: the bot's way */
        return false;
    }
    char *who = NULL;
    mx_error err;
    int rc = mx_client_whoami(pw->mx, l->mxid, &who, &err);
    bool ok = rc == MX_OK && who && strcmp(who, l->mxid) == 0;
    if (ok)
        WB_INFO(MOD, "login %lld: double puppeting %s", (long long)l->id, l->mxid);
    else
        WB_WARN(MOD,
                "login %lld: double puppeting %s does not work (whoami: %s%s%s): own messages "
                "come through the bot",
                (long long)l->id, l->mxid, rc == MX_OK ? "another user " : err.errcode,
                rc == MX_OK ? (who ? who : "") : " ", rc == MX_OK ? "" : err.error);
    free(who);
    /* the homeserver was unreachable or failing: not an answer, ask again next time */
    bool transient = !ok && rc != MX_OK &&
                     (err.http_status == 0 || err.http_status >= 500 || err.http_status == 429);
    if (!transient) atomic_store(&l->dp_state, ok ? 1 : -1);
    return ok;
}

/* The logins of mxid check their double puppet again (after login-matrix / logout-matrix). */
static void recheck(br_bridge *b, const char *mxid)
{
    br_login *ls[64];
    size_t n = br_logins_of(b, mxid, ls, 64);
    for (size_t i = 0; i < n; i++)
        atomic_store(&ls[i]->dp_state, 0);
}

int br_puppet_login_manual(br_pworker *pw, const char *mxid, const char *token, char *why,
                           size_t cap)
{
    br_bridge *b = pw->b;
    /* whoami with the token itself (no ?user_id=): whose is it? */
    mx_client_config mc = {.hs_url = b->cfg->hs_address,
                           .as_token = token,
                           .server_name = b->cfg->hs_domain,
                           .bot_localpart = b->cfg->bot_username,
                           .max_attempts = 3};
    mx_client *c = mx_client_new(&mc);
    if (!c) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    char *who = NULL;
    mx_error err;
    int rc = mx_client_whoami(c, NULL, &who, &err);
    mx_client_free(c);
    if (rc != MX_OK) {
        snprintf(why, cap, "the homeserver does not accept that token (%s)",
                 err.errcode[0] ? err.errcode : mx_strerror(rc));
        free(who);
        return -1;
    }
    bool mine = who && strcmp(who, mxid) == 0;
    if (!mine) snprintf(why, cap, "that token belongs to %s, not to you", who ? who : "nobody");
    free(who);
    if (!mine) return -1;
    if (db_user_set_puppet_token(pw->db, mxid, token) != DB_OK) {
        snprintf(why, cap, "it could not be stored: %s", db_conn_error(pw->db)->message);
        return -1;
    }
    manual_set(b, mxid, token);
    recheck(b, mxid);
    WB_INFO(MOD, "%s gave an access token for double puppeting", mxid);
    return 0;
}

int br_puppet_logout_manual(br_pworker *pw, const char *mxid)
{
    char tok[1024];
    bool had = db_user_puppet_token(pw->db, mxid, tok, sizeof(tok)) == DB_OK && tok[0];
    memset(tok, 0, sizeof(tok));
    if (!had) return -1;
    if (db_user_set_puppet_token(pw->db, mxid, NULL) != DB_OK) return -1;
    manual_set(pw->b, mxid, NULL);
    recheck(pw->b, mxid);
    WB_INFO(MOD, "%s took back the access token for double puppeting", mxid);
    return 0;
}

bool br_puppet_of_jid(br_pworker *pw, const char *jid, char *mxid, size_t cap)
{
    char user[DB_ID_MAX];
    br_user_jid(jid, user, sizeof(user));
    const char *at = strchr(user, '@');
    if (!at || strcmp(at, "@s.whatsapp.net") != 0) return false;
    size_t n = (size_t)(at - user);
    br_bridge *b = pw->b;
    br_login *found = NULL;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->n_logins && !found; i++) {
        br_login *l = b->logins[i];
        if (!l->removed && strlen(l->phone) == n && memcmp(l->phone, user, n) == 0) found = l;
    }
    pthread_mutex_unlock(&b->lock);
    if (!found || !br_puppet_ok(pw, found)) return false;
    return (size_t)snprintf(mxid, cap, "%s", found->mxid) < cap;
}

int br_puppet_join(br_pworker *pw, const char *room, const char *mxid)
{
    char key[2 * DB_ID_MAX + 8];
    snprintf(key, sizeof(key), "dp|%s|%s", room, mxid);
    uint64_t h = br_hash(key);
    size_t slot = (size_t)(h % (sizeof(pw->joined) / sizeof(pw->joined[0])));
    if (pw->joined[slot] == h) return 0;
    mx_error err;
    if (mx_client_join(pw->mx, mxid, room, NULL, &err) != MX_OK) {
        /* not invited (yet): the bot invites, then the user joins */
        mx_client_invite(pw->mx, NULL, room, mxid, &err);
        if (mx_client_join(pw->mx, mxid, room, NULL, &err) != MX_OK) {
            WB_WARN(MOD, "%s could not join %s as a double puppet: %s", mxid, room, err.error);
            return -1;
        }
    }
    pw->joined[slot] = h;
    return 0;
}

void br_puppet_mark(const br_bridge *b, cJSON *content)
{
    cJSON_DeleteItemFromObjectCaseSensitive(content, BR_PUPPET_KEY);
    cJSON_AddStringToObject(content, BR_PUPPET_KEY, b->cfg->bot_username);
}

bool br_puppet_is_echo(const br_bridge *b, const char *json, size_t len)
{
    static const char key[] = BR_PUPPET_KEY;
    if (!json || !memmem(json, len, key, sizeof(key) - 1)) return false; /* the common case */
    cJSON *ev = cJSON_ParseWithLength(json, len);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(ev, "content");
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(content, BR_PUPPET_KEY);
    bool ours = cJSON_IsString(src) && strcmp(src->valuestring, b->cfg->bot_username) == 0;
    cJSON_Delete(ev);
    return ours;
}
