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
 * Each login checks its user once (GET /account/whoami as the user) on the first portal job that
 * needs it; a failure is logged and the login keeps the bot's way. The user's own ghost
 * (@whatsapp_<their number>) is left out of rooms where the user is present in person.
 */
#define _GNU_SOURCE /* memmem */
#include "bridge/bridge_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "puppet"

/* mx_puppet_auth.token_for: the double puppeting as_token of a real user's server. */
static bool token_for(void *ctx, const char *user_id, char *token, size_t cap, bool *masquerade)
{
    br_bridge *b = ctx;
    if (br_is_ours(b, user_id)) return false; /* the bot and the ghosts: our own as_token */
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
    if (!br_config_dp_as_token(pw->b->cfg, l->mxid)) {
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
    atomic_store(&l->dp_state, ok ? 1 : -1);
    return ok;
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
