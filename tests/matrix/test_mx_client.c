/*
 * tests/matrix/test_mx_client.c - matrix/client against hs-sim: every call, then fault runs.
 *
 * Starts our appservice endpoint (for the homeserver's ping) and hs-sim with a registration made
 * by matrix/registration. Calls: start-up while the homeserver refuses connections, whoami,
 * appservice ping, ghost registration with the cache and its persistence hook, masquerading,
 * createRoom with all options, membership, state, send with txnIds, redact, typing, receipts,
 * presence, profile, media with authenticated download and the fallback. Fault runs: 5xx bursts,
 * 429 storms with retry_after_ms, slow answers beyond the client's timeout (the request took
 * effect: the retry must not duplicate it), dropped connections, the homeserver down mid-run, 4xx
 * not retried, the retry budget. After the runs every send is in the room exactly once.
 * Double puppeting: hs-sim also loads a second registration (url null, a non-exclusive namespace
 * covering @alice only): its as_token acts as alice and nobody else, and mx_puppet_auth makes the
 * client use it (or a user's own access token) for calls "as" that user.
 *   test_mx_client <path to hs-sim>
 */
#include "matrix/as_server.h"
#include "matrix/client.h"
#include "matrix/registration.h"
#include "mx_test.h"
#include "tests/unit/check.h"

#define DOMAIN "test.local"

static unsigned hs_port;

/* Events of a room as hs-sim stores them (admin API). */
static cJSON *room_events(const char *room_id)
{
    char *esc = mx_url_escape(room_id);
    char what[256];
    snprintf(what, sizeof what, "rooms/%s/events", esc);
    free(esc);
    cJSON *o = t_admin_get(hs_port, what);
    cJSON *evs = cJSON_DetachItemFromObject(o, "events");
    cJSON_Delete(o);
    return evs ? evs : cJSON_CreateArray();
}

/* How many events of type (and, when body != NULL, content.body) the room holds. */
static int count_events(const char *room_id, const char *type, const char *body)
{
    cJSON *evs = room_events(room_id);
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, evs)
    {
        const cJSON *t = cJSON_GetObjectItem(e, "type");
        const cJSON *b = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "content"), "body");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, type) != 0) continue;
        if (body && (!cJSON_IsString(b) || strcmp(b->valuestring, body) != 0)) continue;
        n++;
    }
    cJSON_Delete(evs);
    return n;
}

static cJSON *text(const char *body)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "msgtype", "m.text");
    cJSON_AddStringToObject(c, "body", body);
    return c;
}

/* ghost persistence hook: remembers what was registered */
typedef struct ghost_db {
    char ids[16][96];
    int n;
    int asked;
} ghost_db;

static bool gdb_known(void *ctx, const char *uid)
{
    ghost_db *g = ctx;
    g->asked++;
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->ids[i], uid) == 0) return true;
    return false;
}

static void gdb_remember(void *ctx, const char *uid)
{
    ghost_db *g = ctx;
    if (g->n < 16) snprintf(g->ids[g->n++], sizeof g->ids[0], "%s", uid);
}

static unsigned pings;
static void on_ping(void *ctx, const char *txn)
{
    pings++;
}

static mx_client *new_client(const mx_registration *reg, long timeout_ms, unsigned attempts,
                             ghost_db *g)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", hs_port);
    mx_client_config cc = {.hs_url = url,
                           .as_token = reg->as_token,
                           .server_name = DOMAIN,
                           .bot_localpart = reg->sender_localpart,
                           .timeout_ms = timeout_ms,
                           .connect_timeout_ms = 1000,
                           .max_attempts = attempts,
                           .backoff_initial_ms = 40,
                           .backoff_max_ms = 400,
                           .deadline_ms = 20000};
    if (g) cc.ghosts = (mx_ghost_store){g, gdb_known, gdb_remember};
    return mx_client_new(&cc);
}

static void test_calls(mx_client *c, const mx_registration *reg, ghost_db *g, char **room_out)
{
    mx_error e;
    char *s = NULL;
    /* whoami: the bot, and a ghost before / after registration */
    CHECK_INT(mx_client_whoami(c, NULL, &s, &e), MX_OK);
    CHECK_STR(s, "@whatsappbot:" DOMAIN);
    free(s);
    CHECK_INT(mx_client_whoami(c, "@whatsapp_111:" DOMAIN, &s, &e), MX_ERR_HTTP);
    CHECK_INT(e.http_status, 403);
    CHECK_STR(e.errcode, "M_FORBIDDEN");
    CHECK(strstr(e.error, "not registered") != NULL);
    CHECK_INT(e.attempts, 1); /* 4xx is final */
    /* a user outside our namespaces: no masquerading (Synapse: 403 M_FORBIDDEN) */
    CHECK_INT(mx_client_whoami(c, "@alice:" DOMAIN, &s, &e), MX_ERR_HTTP);
    CHECK_INT(e.http_status, 403);
    CHECK_STR(e.errcode, "M_FORBIDDEN");
    CHECK(strstr(e.error, "cannot masquerade") != NULL);

    /* ghosts: registered once, then from the cache */
    mx_client_stats st0, st1;
    mx_client_stats_get(c, &st0);
    CHECK_INT(mx_client_ensure_registered(c, "whatsapp_111", &e), MX_OK);
    CHECK_INT(mx_client_ensure_registered(c, "whatsapp_111", &e), MX_OK);
    CHECK_INT(mx_client_ensure_registered(c, "whatsapp_222", &e), MX_OK);
    mx_client_stats_get(c, &st1);
    CHECK_INT(st1.registered - st0.registered, 2);
    CHECK_INT(st1.requests - st0.requests, 2);
    CHECK_INT(g->n, 2);
    CHECK_STR(g->ids[0], "@whatsapp_111:" DOMAIN);
    CHECK_INT(mx_client_whoami(c, "@whatsapp_111:" DOMAIN, &s, &e), MX_OK);
    CHECK_STR(s, "@whatsapp_111:" DOMAIN);
    free(s);
    /* outside the namespace: the homeserver refuses (M_EXCLUSIVE) */
    CHECK_INT(mx_client_ensure_registered(c, "alice", &e), MX_ERR_HTTP);
    CHECK_STR(e.errcode, "M_EXCLUSIVE");
    /* a fresh client with an empty cache and no hook: M_USER_IN_USE counts as registered */
    mx_client *c2 = new_client(reg, 2000, 3, NULL);
    CHECK_INT(mx_client_ensure_registered(c2, "whatsapp_111", &e), MX_OK);
    mx_client_free(c2);
    /* a fresh client whose hook knows the ghost does not ask the homeserver */
    mx_client *c3 = new_client(reg, 2000, 3, g);
    mx_client_stats_get(c3, &st0);
    CHECK_INT(mx_client_ensure_registered(c3, "whatsapp_222", &e), MX_OK);
    mx_client_stats_get(c3, &st1);
    CHECK_INT(st1.requests, 0);
    mx_client_free(c3);

    /* createRoom with everything */
    const char *invite[] = {"@whatsapp_222:" DOMAIN, NULL};
    cJSON *init = cJSON_Parse(
        "[{\"type\":\"m.bridge\",\"state_key\":\"wa\",\"content\":{\"protocol\":\"whatsapp\"}}]");
    cJSON *pl = cJSON_Parse("{\"users\":{\"@whatsappbot:" DOMAIN "\":100,\"@whatsapp_111:" DOMAIN
                            "\":100},\"events_default\":0}");
    mx_create_room cr = {.name = "Group",
                         .topic = "Topic",
                         .is_direct = true,
                         .invite = invite,
                         .initial_state = init,
                         .power_level_override = pl,
                         .room_alias_name = "whatsapp_grp"};
    char *room = NULL;
    CHECK_INT(mx_client_create_room(c, "@whatsapp_111:" DOMAIN, &cr, &room, &e), MX_OK);
    cJSON_Delete(init);
    cJSON_Delete(pl);
    CHECK(room && room[0] == '!');
    if (!room) return;
    *room_out = room;
    cJSON *content = NULL;
    CHECK_INT(
        mx_client_get_state(c, "@whatsapp_111:" DOMAIN, room, "m.room.name", "", &content, &e),
        MX_OK);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(content, "name")), "Group");
    cJSON_Delete(content);
    CHECK_INT(mx_client_get_state(c, "@whatsapp_111:" DOMAIN, room, "m.bridge", "wa", &content, &e),
              MX_OK);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(content, "protocol")), "whatsapp");
    cJSON_Delete(content);
    CHECK_INT(mx_client_get_state(c, "@whatsapp_111:" DOMAIN, room, "m.room.power_levels", "",
                                  &content, &e),
              MX_OK);
    CHECK_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(content, "users"), "@whatsappbot:" DOMAIN)
                  ->valueint,
              100);
    cJSON_Delete(content);
    CHECK_INT(mx_client_get_state(c, "@whatsapp_111:" DOMAIN, room, "m.room.member",
                                  "@whatsapp_222:" DOMAIN, &content, &e),
              MX_OK);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(content, "membership")), "invite");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(content, "is_direct")));
    cJSON_Delete(content);
    CHECK_INT(
        mx_client_get_state(c, "@whatsapp_111:" DOMAIN, room, "m.room.topic", "nope", &content, &e),
        MX_ERR_HTTP);
    CHECK_STR(e.errcode, "M_NOT_FOUND");

    /* membership: join by alias, invite, join, leave, kick */
    char *joined = NULL;
    CHECK_INT(mx_client_join(c, "@whatsapp_222:" DOMAIN, "#whatsapp_grp:" DOMAIN, &joined, &e),
              MX_OK);
    CHECK_STR(joined, room);
    free(joined);
    CHECK_INT(mx_client_invite(c, "@whatsapp_111:" DOMAIN, room, mx_client_bot_id(c), &e), MX_OK);
    CHECK_INT(mx_client_join(c, NULL, room, NULL, &e), MX_OK);
    CHECK_INT(mx_client_leave(c, "@whatsapp_222:" DOMAIN, room, &e), MX_OK);
    cJSON *tx = text("x");
    CHECK_INT(
        mx_client_send(c, "@whatsapp_222:" DOMAIN, room, "m.room.message", tx, NULL, 0, NULL, &e),
        MX_ERR_HTTP);
    cJSON_Delete(tx);
    CHECK_STR(e.errcode, "M_FORBIDDEN");
    CHECK_INT(mx_client_invite(c, "@whatsapp_111:" DOMAIN, room, "@whatsapp_222:" DOMAIN, &e),
              MX_OK);
    CHECK_INT(mx_client_join(c, "@whatsapp_222:" DOMAIN, room, NULL, &e), MX_OK);
    CHECK_INT(mx_client_kick(c, "@whatsapp_111:" DOMAIN, room, "@whatsapp_222:" DOMAIN, "bye", &e),
              MX_OK);
    CHECK_INT(
        mx_client_get_state(c, NULL, room, "m.room.member", "@whatsapp_222:" DOMAIN, &content, &e),
        MX_OK);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(content, "membership")), "leave");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(content, "reason")), "bye");
    cJSON_Delete(content);

    /* state helpers */
    CHECK_INT(mx_client_set_room_name(c, NULL, room, "New name", &e), MX_OK);
    CHECK_INT(mx_client_set_room_topic(c, NULL, room, "New topic", &e), MX_OK);
    CHECK_INT(mx_client_set_room_avatar(c, NULL, room, "mxc://" DOMAIN "/abc", &e), MX_OK);
    cJSON *pl2 = cJSON_Parse("{\"users\":{\"@whatsappbot:" DOMAIN "\":100},\"users_default\":0}");
    CHECK_INT(mx_client_set_power_levels(c, NULL, room, pl2, &e), MX_OK);
    cJSON_Delete(pl2);
    CHECK_INT(mx_client_get_state(c, NULL, room, "m.room.topic", "", &content, &e), MX_OK);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(content, "topic")), "New topic");
    cJSON_Delete(content);
    CHECK_INT(mx_client_get_state(c, NULL, room, "m.room.avatar", "", &content, &e), MX_OK);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(content, "url")), "mxc://" DOMAIN "/abc");
    cJSON_Delete(content);

    /* send: our txnId makes a repeat idempotent; ts massaging */
    char *ev1 = NULL, *ev2 = NULL;
    cJSON *m = text("idempotent");
    CHECK_INT(mx_client_send(c, "@whatsapp_111:" DOMAIN, room, "m.room.message", m, "txn-fixed-1",
                             0, &ev1, &e),
              MX_OK);
    CHECK_INT(mx_client_send(c, "@whatsapp_111:" DOMAIN, room, "m.room.message", m, "txn-fixed-1",
                             0, &ev2, &e),
              MX_OK);
    CHECK_STR(ev1, ev2);
    CHECK_INT(count_events(room, "m.room.message", "idempotent"), 1);
    free(ev2);
    char *ev3 = NULL;
    cJSON_Delete(m);
    m = text("backdated");
    CHECK_INT(mx_client_send(c, "@whatsapp_111:" DOMAIN, room, "m.room.message", m, NULL,
                             1500000000000LL, &ev3, &e),
              MX_OK);
    cJSON_Delete(m);
    cJSON *evs = room_events(room);
    const cJSON *x;
    double ts = 0;
    cJSON_ArrayForEach(x, evs)
    {
        if (ev3 && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(x, "event_id")), ev3) == 0)
            ts = cJSON_GetObjectItem(x, "origin_server_ts")->valuedouble;
    }
    cJSON_Delete(evs);
    CHECK(ts == 1500000000000.0);
    free(ev3);

    /* redact */
    char *red = NULL;
    CHECK_INT(mx_client_redact(c, NULL, room, ev1, "spam", NULL, &red, &e), MX_OK);
    CHECK(red && red[0] == '$');
    CHECK_INT(count_events(room, "m.room.message", "idempotent"), 0); /* content stripped */
    CHECK_INT(count_events(room, "m.room.redaction", NULL), 1);
    free(red);

    /* typing, receipts, presence */
    CHECK_INT(mx_client_typing(c, "@whatsapp_111:" DOMAIN, room, true, 5000, &e), MX_OK);
    CHECK_INT(mx_client_typing(c, "@whatsapp_111:" DOMAIN, room, false, 0, &e), MX_OK);
    CHECK_INT(mx_client_read_receipt(c, "@whatsapp_111:" DOMAIN, room, ev1, &e), MX_OK);
    CHECK_INT(mx_client_read_receipt(c, "@whatsapp_111:" DOMAIN, room, "$nope", &e), MX_ERR_HTTP);
    CHECK_INT(e.http_status, 404);
    CHECK_INT(mx_client_set_presence(c, "@whatsapp_111:" DOMAIN, "online", "on WhatsApp", &e),
              MX_OK);
    CHECK_INT(mx_client_set_presence(c, "@whatsapp_111:" DOMAIN, "dancing", NULL, &e), MX_ERR_HTTP);
    CHECK_STR(e.errcode, "M_INVALID_PARAM");
    free(ev1);

    /* profile */
    CHECK_INT(mx_client_set_displayname(c, "@whatsapp_111:" DOMAIN, "Ann (WA)", &e), MX_OK);
    CHECK_INT(mx_client_set_avatar_url(c, "@whatsapp_111:" DOMAIN, "mxc://" DOMAIN "/av", &e),
              MX_OK);
    char *dn = NULL, *av = NULL;
    CHECK_INT(mx_client_get_profile(c, "@whatsapp_111:" DOMAIN, &dn, &av, &e), MX_OK);
    CHECK_STR(dn, "Ann (WA)");
    CHECK_STR(av, "mxc://" DOMAIN "/av");
    free(dn);
    free(av);
    CHECK_INT(mx_client_get_profile(c, "@nobody:" DOMAIN, &dn, &av, &e), MX_ERR_HTTP);
    CHECK_INT(e.http_status, 404);

    /* media: upload, authenticated download, fallback when the homeserver lacks it */
    uint8_t blob[3000];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t)(i * 7);
    char *mxc = NULL;
    CHECK_INT(mx_client_upload(c, "@whatsapp_111:" DOMAIN, "image/png", "a b.png", blob,
                               sizeof blob, &mxc, &e),
              MX_OK);
    CHECK(mxc && strncmp(mxc, "mxc://" DOMAIN "/", 6 + strlen(DOMAIN) + 1) == 0);
    wb_buf out;
    wb_buf_init(&out);
    char *ct = NULL;
    CHECK_INT(mx_client_download(c, mxc, 0, &out, &ct, &e), MX_OK);
    CHECK_INT(out.len, sizeof blob);
    CHECK(out.len == sizeof blob && memcmp(out.data, blob, sizeof blob) == 0);
    CHECK_STR(ct, "image/png");
    free(ct);
    wb_buf_free(&out);
    CHECK_INT(t_admin(hs_port, "config", "{\"auth_media\":false}"), 200);
    mx_client_stats_get(c, &st0);
    CHECK_INT(mx_client_download(c, mxc, 0, &out, NULL, &e), MX_OK);
    mx_client_stats_get(c, &st1);
    CHECK_INT(st1.requests - st0.requests, 2); /* v1 (404 M_UNRECOGNIZED), then v3 */
    CHECK(out.len == sizeof blob && memcmp(out.data, blob, sizeof blob) == 0);
    wb_buf_free(&out);
    CHECK_INT(t_admin(hs_port, "config", "{\"auth_media\":true}"), 200);
    CHECK_INT(mx_client_download(c, mxc, 100, &out, NULL, &e), MX_ERR_TOO_LARGE);
    wb_buf_free(&out);
    CHECK_INT(mx_client_download(c, "mxc://" DOMAIN "/missing", 0, &out, NULL, &e), MX_ERR_HTTP);
    CHECK_STR(e.errcode, "M_NOT_FOUND");
    CHECK_INT(mx_client_download(c, "https://evil/x", 0, &out, NULL, &e), MX_ERR_INVALID);
    CHECK_INT(mx_client_download(c, "mxc://a/b/c", 0, &out, NULL, &e), MX_ERR_INVALID);
    wb_buf_free(&out);
    free(mxc);
}

/* Sends `n` messages with the given label; returns how many calls returned MX_OK. */
static int send_n(mx_client *c, const char *room, const char *label, int n, mx_error *e)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char body[64];
        snprintf(body, sizeof body, "%s-%d", label, i);
        cJSON *m = text(body);
        if (mx_client_send(c, "@whatsapp_111:" DOMAIN, room, "m.room.message", m, NULL, 0, NULL,
                           e) == MX_OK)
            ok++;
        cJSON_Delete(m);
    }
    return ok;
}

/* every message label-0..n-1 is in the room exactly once */
static bool exactly_once(const char *room, const char *label, int n)
{
    bool ok = true;
    for (int i = 0; i < n; i++) {
        char body[64];
        snprintf(body, sizeof body, "%s-%d", label, i);
        int k = count_events(room, "m.room.message", body);
        if (k != 1) {
            fprintf(stderr, "%s: %d copies\n", body, k);
            ok = false;
        }
    }
    return ok;
}

/* ---- double puppeting ---- */

#define DP_TOKEN "dp-as-token-for-the-test"

/* The second registration: no url, a non-exclusive namespace covering alice (and only her). */
static bool write_dp_registration(char *path)
{
    int fd = mkstemp(path);
    if (fd < 0) return false;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return false;
    }
    fprintf(f,
            "id: doublepuppet\nurl: null\nas_token: %s\nhs_token: dp-hs-token-unused\n"
            "sender_localpart: dp-sender\nrate_limited: false\nnamespaces:\n  users:\n"
            "  - regex: '@alice:test\\.local'\n    exclusive: false\n",
            DP_TOKEN);
    return fclose(f) == 0;
}

typedef struct puppet_tokens {
    const char *as_user;              /* puppeted with the dp as_token (masquerade) */
    const char *own_user, *own_token; /* puppeted with an own access token */
    int asked;
} puppet_tokens;

static bool token_for(void *ctx, const char *user_id, char *token, size_t cap, bool *masquerade)
{
    puppet_tokens *p = ctx;
    p->asked++;
    if (p->as_user && strcmp(user_id, p->as_user) == 0) {
        snprintf(token, cap, "%s", DP_TOKEN);
        *masquerade = true;
        return true;
    }
    if (p->own_user && strcmp(user_id, p->own_user) == 0) {
        snprintf(token, cap, "%s", p->own_token);
        *masquerade = false;
        return true;
    }
    return false;
}

/* Registers a user with a password; returns its access token (caller frees) or NULL. */
static char *register_user(mx_client *c, const char *name)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "username", name);
    cJSON_AddStringToObject(b, "password", "pw");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(b, "auth"), "type", "m.login.dummy");
    cJSON *o = NULL;
    mx_error e;
    int rc = mx_client_request(c, "POST", "/_matrix/client/v3/register", NULL, NULL, b, &o, &e);
    cJSON_Delete(b);
    if (rc != MX_OK) fprintf(stderr, "register %s: %s %s\n", name, e.errcode, e.error);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "access_token");
    char *tok = cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
    cJSON_Delete(o);
    return tok;
}

static void test_double_puppet(const mx_registration *reg)
{
    mx_error e;
    char *s = NULL;
    mx_client *c = new_client(reg, 2000, 3, NULL);
    /* the dp namespace is not exclusive: alice registers herself like anyone */
    char *alice_tok = register_user(c, "alice");
    char *bob_tok = register_user(c, "bob");
    CHECK(alice_tok && bob_tok);
    /* the bridge's own as_token still may not act as alice */
    CHECK_INT(mx_client_whoami(c, "@alice:" DOMAIN, &s, &e), MX_ERR_HTTP);
    CHECK_STR(e.errcode, "M_FORBIDDEN");

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", hs_port);
    puppet_tokens pt = {
        .as_user = "@alice:" DOMAIN, .own_user = "@bob:" DOMAIN, .own_token = bob_tok};
    mx_client_config cc = {.hs_url = url,
                           .as_token = reg->as_token,
                           .server_name = DOMAIN,
                           .bot_localpart = reg->sender_localpart,
                           .max_attempts = 2,
                           .puppets = {&pt, token_for}};
    mx_client *p = mx_client_new(&cc);
    /* the dp as_token + ?user_id=alice: whoami answers alice */
    CHECK_INT(mx_client_whoami(p, "@alice:" DOMAIN, &s, &e), MX_OK);
    CHECK_STR(s, "@alice:" DOMAIN);
    free(s);
    s = NULL;
    /* bob's own access token, sent bare: bob */
    CHECK_INT(mx_client_whoami(p, "@bob:" DOMAIN, &s, &e), MX_OK);
    CHECK_STR(s, "@bob:" DOMAIN);
    free(s);
    s = NULL;
    /* the bot and ghosts keep the bridge's token (the hook says no) */
    CHECK_INT(mx_client_whoami(p, NULL, &s, &e), MX_OK);
    CHECK_STR(s, "@whatsappbot:" DOMAIN);
    free(s);
    s = NULL;
    CHECK(pt.asked == 2); /* as_user NULL: not asked */

    /* the dp as_token outside its namespace (bob) is refused like Synapse does */
    pt.own_user = NULL;
    pt.as_user = "@bob:" DOMAIN;
    CHECK_INT(mx_client_whoami(p, "@bob:" DOMAIN, &s, &e), MX_ERR_HTTP);
    CHECK_INT(e.http_status, 403);
    CHECK_STR(e.errcode, "M_FORBIDDEN");
    CHECK(strstr(e.error, "cannot masquerade as this user (@bob:" DOMAIN ")") != NULL);
    CHECK_INT(e.attempts, 1);
    /* nor as one of the bridge's ghosts */
    pt.as_user = "@whatsapp_111:" DOMAIN;
    CHECK_INT(mx_client_whoami(p, "@whatsapp_111:" DOMAIN, &s, &e), MX_ERR_HTTP);
    CHECK_STR(e.errcode, "M_FORBIDDEN");
    /* its own sender (the registration's bot) is fine without ?user_id= */
    mx_client_config dc = cc;
    dc.as_token = DP_TOKEN;
    dc.bot_localpart = "dp-sender";
    dc.puppets = (mx_puppet_auth){0};
    mx_client *d = mx_client_new(&dc);
    CHECK_INT(mx_client_whoami(d, NULL, &s, &e), MX_OK);
    CHECK_STR(s, "@dp-sender:" DOMAIN);
    free(s);
    s = NULL;
    /* appservice registration outside its namespace fails */
    CHECK_INT(mx_client_ensure_registered(d, "carol", &e), MX_ERR_HTTP);
    CHECK_STR(e.errcode, "M_EXCLUSIVE");
    /* no url: its ping is refused, no transaction ever goes anywhere */
    CHECK_INT(mx_client_appservice_ping(d, "doublepuppet", NULL, &e), MX_ERR_HTTP);
    CHECK_STR(e.errcode, "M_URL_NOT_SET");
    mx_client_free(d);
    mx_client_free(p);
    mx_client_free(c);
    free(alice_tok);
    free(bob_tok);
}

static void test_faults(const mx_registration *reg, const char *room)
{
    mx_error e;
    mx_client *c = new_client(reg, 600, 10, NULL);
    /* 5xx burst: 3 x 503 then success */
    CHECK_INT(t_admin(hs_port, "fault", "{\"match\":\"/send/\",\"status\":503,\"count\":3}"), 200);
    CHECK_INT(send_n(c, room, "burst", 1, &e), 1);
    CHECK_INT(e.attempts, 4);
    CHECK(exactly_once(room, "burst", 1));

    /* 429 storm: every request limited 6 times, honouring retry_after_ms */
    CHECK_INT(t_admin(hs_port, "fault",
                      "{\"match\":\"/send/\",\"status\":429,\"retry_after_ms\":60,\"count\":6}"),
              200);
    int64_t t0 = t_now_ms();
    CHECK_INT(send_n(c, room, "storm", 3, &e), 3);
    int64_t took = t_now_ms() - t0;
    CHECK(took >= 6 * 60);
    CHECK(exactly_once(room, "storm", 3));

    /* 429 without retry_after_ms but with a Retry-After header (seconds) */
    CHECK_INT(t_admin(hs_port, "fault",
                      "{\"match\":\"/send/\",\"status\":429,\"retry_after_s\":1,\"count\":1}"),
              200);
    t0 = t_now_ms();
    CHECK_INT(send_n(c, room, "header", 1, &e), 1);
    CHECK(t_now_ms() - t0 >= 1000);
    CHECK_INT(e.attempts, 2);
    CHECK(exactly_once(room, "header", 1));

    /* slow answers past the client's 600 ms timeout; the sends DID happen before the delay, so
     * only the txnId keeps the retries from duplicating them */
    CHECK_INT(t_admin(hs_port, "fault",
                      "{\"match\":\"/send/\",\"delay_ms\":1200,\"after\":true,\"count\":2}"),
              200);
    CHECK_INT(send_n(c, room, "slow", 2, &e), 2);
    CHECK(exactly_once(room, "slow", 2));

    /* dropped connections (no answer at all) */
    CHECK_INT(t_admin(hs_port, "fault", "{\"match\":\"/send/\",\"close\":true,\"count\":3}"), 200);
    CHECK_INT(send_n(c, room, "dropped", 2, &e), 2);
    CHECK(exactly_once(room, "dropped", 2));

    /* the homeserver goes away for 1.2 s in the middle of a run */
    CHECK_INT(t_admin(hs_port, "refuse", "{\"ms\":1200}"), 200);
    t_sleep_ms(100);
    t0 = t_now_ms();
    CHECK_INT(send_n(c, room, "outage", 10, &e), 10);
    CHECK(t_now_ms() - t0 >= 900);
    CHECK(exactly_once(room, "outage", 10));

    /* a 4xx is final: one attempt, errcode carried */
    CHECK_INT(
        t_admin(hs_port, "fault",
                "{\"match\":\"/send/\",\"status\":403,\"errcode\":\"M_FORBIDDEN\",\"count\":1}"),
        200);
    CHECK_INT(send_n(c, room, "forbidden", 1, &e), 0);
    CHECK_INT(e.attempts, 1);
    CHECK_INT(e.http_status, 403);
    CHECK_STR(e.errcode, "M_FORBIDDEN");
    CHECK_STR(e.error, "injected fault");
    CHECK_INT(count_events(room, "m.room.message", "forbidden-0"), 0);

    /* the retry budget: 3 attempts, then the last error */
    mx_client *c3 = new_client(reg, 600, 3, NULL);
    CHECK_INT(t_admin(hs_port, "fault", "{\"match\":\"/send/\",\"status\":502,\"count\":100}"),
              200);
    CHECK_INT(send_n(c3, room, "budget", 1, &e), 0);
    CHECK_INT(e.code, MX_ERR_HTTP);
    CHECK_INT(e.attempts, 3);
    CHECK_INT(e.http_status, 502);
    CHECK_INT(t_admin(hs_port, "fault", "{\"match\":\"/send/\",\"status\":429,\"count\":100}"),
              200);
    CHECK_INT(t_admin(hs_port, "clear", "{}"), 200);
    CHECK_INT(t_admin(hs_port, "fault",
                      "{\"match\":\"/send/\",\"status\":429,\"retry_after_ms\":10,\"count\":100}"),
              200);
    CHECK_INT(send_n(c3, room, "budget429", 1, &e), 0);
    CHECK_INT(e.code, MX_ERR_RATE_LIMITED);
    CHECK_INT(e.retry_after_ms, 10);
    CHECK_INT(e.attempts, 3);
    CHECK_INT(t_admin(hs_port, "clear", "{}"), 200);
    mx_client_free(c3);

    /* faults on other calls: createRoom / state / upload / register each survive a 500 burst */
    CHECK_INT(t_admin(hs_port, "fault", "{\"match\":\"/createRoom\",\"status\":500,\"count\":2}"),
              200);
    CHECK_INT(t_admin(hs_port, "fault", "{\"match\":\"/state/\",\"status\":504,\"count\":2}"), 200);
    CHECK_INT(t_admin(hs_port, "fault", "{\"match\":\"/upload\",\"status\":429,\"count\":2}"), 200);
    CHECK_INT(t_admin(hs_port, "fault", "{\"match\":\"/register\",\"status\":503,\"count\":2}"),
              200);
    double rooms0 = t_stat(hs_port, "rooms");
    char *r2 = NULL;
    CHECK_INT(mx_client_create_room(c, NULL, NULL, &r2, &e), MX_OK);
    CHECK_INT(e.attempts, 3);
    CHECK(t_stat(hs_port, "rooms") == rooms0 + 1);
    CHECK_INT(mx_client_set_room_name(c, NULL, r2, "after faults", &e), MX_OK);
    CHECK_INT(e.attempts, 3);
    char *mxc = NULL;
    CHECK_INT(mx_client_upload(c, NULL, "text/plain", NULL, (const uint8_t *)"hi", 2, &mxc, &e),
              MX_OK);
    CHECK_INT(e.attempts, 3);
    CHECK(t_stat(hs_port, "media") == 2);
    CHECK_INT(mx_client_ensure_registered(c, "whatsapp_333", &e), MX_OK);
    free(mxc);
    free(r2);
    mx_client_free(c);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_mx_client <hs-sim>\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    /* our endpoint, for the homeserver's ping */
    mx_mem_store *ms = mx_mem_store_new();
    mx_txn_store store = mx_mem_store_iface(ms);
    mx_as_handler h = {.on_ping = on_ping};
    mx_registration reg;
    char path[] = "/tmp/mxclient-regXXXXXX";
    mx_as_server *as = t_endpoint_with_registration(&store, &h, DOMAIN, &reg, path);
    CHECK(as != NULL);
    if (!as) return CHECK_DONE();

    char dp_path[] = "/tmp/mxclient-dpregXXXXXX";
    CHECK(write_dp_registration(dp_path));
    const char *argv_hs[] = {argv[1], "--push-backoff-ms", "20", "0", DOMAIN, path, dp_path, NULL};
    t_proc hs;
    CHECK(t_spawn(argv_hs, true, &hs));
    hs_port = hs.port;
    if (!hs_port) return CHECK_DONE();

    /* start-up while the homeserver refuses connections for 1.5 s */
    mx_error e;
    ghost_db g = {.n = 0};
    mx_client *c = new_client(&reg, 2000, 8, &g);
    CHECK_INT(t_admin(hs_port, "refuse", "{\"ms\":1500}"), 200);
    t_sleep_ms(100);
    int64_t t0 = t_now_ms();
    int rc = mx_client_startup(c, "whatsapp", 10000, &e);
    CHECK_INT(rc, MX_OK);
    if (rc != MX_OK) fprintf(stderr, "startup: %s %s %s\n", mx_strerror(rc), e.errcode, e.error);
    CHECK(t_now_ms() - t0 >= 1000);
    CHECK_INT(pings, 1);
    char *versions = NULL;
    CHECK_INT(mx_client_wait_versions(c, 1000, &versions, &e), MX_OK);
    CHECK(versions && strstr(versions, "v1.11") != NULL);
    free(versions);
    CHECK_INT(mx_client_appservice_ping(c, "other-id", NULL, &e), MX_ERR_HTTP);
    CHECK_INT(e.http_status, 403);

    /* a wrong as_token fails at whoami with the homeserver's errcode, without retrying */
    mx_registration wrong = reg;
    wrong.as_token = "not-the-token";
    mx_client *cw = new_client(&wrong, 2000, 8, NULL);
    t0 = t_now_ms();
    CHECK_INT(mx_client_startup(cw, "whatsapp", 5000, &e), MX_ERR_HTTP);
    CHECK_INT(e.http_status, 401);
    CHECK_STR(e.errcode, "M_UNKNOWN_TOKEN");
    CHECK_INT(e.attempts, 1); /* a 4xx is not retried */
    CHECK(t_now_ms() - t0 < 5000);
    mx_client_free(cw);

    /* the homeserver never comes up within the wait: a timely failure */
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%u", 1u);
    mx_client_config dc = {.hs_url = dead,
                           .as_token = "x",
                           .server_name = DOMAIN,
                           .bot_localpart = "b",
                           .backoff_initial_ms = 20,
                           .backoff_max_ms = 100};
    mx_client *cd = mx_client_new(&dc);
    t0 = t_now_ms();
    CHECK_INT(mx_client_wait_versions(cd, 500, NULL, &e), MX_ERR_NETWORK);
    CHECK(e.attempts > 2);
    CHECK(t_now_ms() - t0 < 3000); /* the 500 ms budget holds (loose bound: shared machine) */
    mx_client_free(cd);

    char *room = NULL;
    test_calls(c, &reg, &g, &room);
    test_double_puppet(&reg);
    if (room) test_faults(&reg, room);
    free(room);
    mx_client_free(c);

    CHECK_INT(t_stop(&hs), 0);
    mx_as_server_stop(as);
    mx_mem_store_free(ms);
    unlink(path);
    unlink(dp_path);
    mx_registration_free(&reg);
    curl_global_cleanup();
    return CHECK_DONE();
}
