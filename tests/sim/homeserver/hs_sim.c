/*
 * tests/sim/homeserver/hs_sim.c - hs-sim, a homeserver simulator for wabridge's tests.
 *
 * Enough of the Matrix client-server API for the bridge's matrix/client and for matrix-js-sdk
 * clients (register, login, rooms, state, send, redact, /sync with long polling, /messages,
 * typing, receipts, presence, profile, media, the spec's default push rules), appservice pushes
 * like Synapse (hs_as.c), and an admin API for tests under /_hssim/: inject faults (status codes,
 * 429 with retry_after_ms or a Retry-After header, slow answers, dropped connections), refuse
 * connections for a while, read statistics and room events, and each event's timing (when it was
 * stored, when its appservice push began: GET /_hssim/rooms/{id}/timing, for the benchmarks).
 * Everything lives in memory behind one lock. Listens on 127.0.0.1 only.
 *
 *   hs-sim [-v] [--push-backoff-ms N] [--legacy-push] [--no-prev-content] <port|0> <server_name>
 *          [registration.yaml|- [more-registration.yaml...]]
 *
 * --no-prev-content: state events do not carry unsigned.prev_content (the spec makes it optional),
 * for testing clients that must do without.
 * Several registration files may be given, like Synapse's app_service_config_files: each as_token
 * may act as its bot and masquerade (?user_id=) as the users its namespaces cover (403 M_FORBIDDEN
 * for anyone else); a registration whose url is null gets no transactions (double puppeting).
 *
 * prints "port <n>" on stdout once it listens; SIGTERM / SIGINT stop it.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "hs_state.h"
#include "util/bytes.h"

hs_state G;

#define HS_MAX_BODY (64u * 1024u * 1024u)
#define HS_MAX_SEG  12

/* ---- helpers ---- */

int64_t hs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t hs_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t hs_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void hs_sleep_ms(long ms)
{
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

char *hs_strf(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    if (!s) abort();
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

void hs_random_hex(char *out, size_t nbytes)
{
    uint8_t buf[64];
    if (nbytes > sizeof buf) nbytes = sizeof buf;
    if (getrandom(buf, nbytes, 0) != (ssize_t)nbytes) abort();
    wb_hex_encode(buf, nbytes, out);
}

static char *xstrdup(const char *s)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) abort();
    return d;
}

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- request / response ---- */

typedef struct hreq {
    wb_buf body;    /* request body */
    bool too_large; /* body passed HS_MAX_BODY */
    struct MHD_Connection *conn;
    const char *method;
    const char *url;   /* unescaped path */
    char *user_id;     /* authenticated user (malloc'd), NULL before auth */
    char *txn_key;     /* key for send txnId dedupe: the token, or "as|" + user */
    bool is_as;        /* authenticated with an appservice's as_token */
    hs_appservice *as; /* that appservice (NULL for a user's token) */
} hreq;

typedef struct hres {
    int status;
    char *body; /* malloc'd */
    size_t len;
    char ctype[128];
} hres;

static void reply_json(hres *rs, int status, cJSON *o)
{
    free(rs->body);
    rs->status = status;
    rs->body = cJSON_PrintUnformatted(o);
    rs->len = strlen(rs->body);
    snprintf(rs->ctype, sizeof rs->ctype, "application/json");
    cJSON_Delete(o);
}

static void reply_err(hres *rs, int status, const char *errcode, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "errcode", errcode);
    cJSON_AddStringToObject(o, "error", msg);
    reply_json(rs, status, o);
}

static void reply_empty(hres *rs)
{
    reply_json(rs, 200, cJSON_CreateObject());
}

static const char *query(hreq *rq, const char *k)
{
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, k);
}

/* Parses the body as a JSON object, or answers 400 and returns NULL. Empty body = {}. */
static cJSON *body_json(hreq *rq, hres *rs)
{
    if (rq->body.len == 0) return cJSON_CreateObject();
    cJSON *o = cJSON_ParseWithLength((const char *)rq->body.data, rq->body.len);
    if (!o) {
        reply_err(rs, 400, "M_NOT_JSON", "Content not JSON.");
        return NULL;
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        reply_err(rs, 400, "M_BAD_JSON", "Content must be a JSON object.");
        return NULL;
    }
    return o;
}

/* ---- users and tokens (lock held) ---- */

static hs_user *find_user(const char *id)
{
    for (size_t i = 0; i < G.n_users; i++)
        if (strcmp(G.users[i].id, id) == 0) return &G.users[i];
    return NULL;
}

static hs_user *add_user(const char *id, const char *password)
{
    HS_GROW(G.users, G.n_users, G.cap_users);
    hs_user *u = &G.users[G.n_users++];
    memset(u, 0, sizeof *u);
    u->id = xstrdup(id);
    u->password = xstrdup(password);
    return u;
}

static hs_token *new_token(const char *user_id)
{
    HS_GROW(G.tokens, G.n_tokens, G.cap_tokens);
    hs_token *t = &G.tokens[G.n_tokens++];
    char hex[33];
    hs_random_hex(hex, 16);
    t->token = hs_strf("syt_%s", hex);
    hs_random_hex(hex, 5);
    t->device_id = hs_strf("DEV%s", hex);
    t->user_id = xstrdup(user_id);
    return t;
}

static bool valid_localpart(const char *s)
{
    if (!*s || strlen(s) > 200) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || strchr("._=-/+", *s)))
            return false;
    return true;
}

/* Authenticates rq; on failure fills rs and returns false. Lock held. */
static bool authenticate(hreq *rq, hres *rs)
{
    const char *tok = NULL;
    const char *auth = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) tok = auth + 7;
    if (!tok) tok = query(rq, "access_token");
    if (!tok || !*tok) {
        reply_err(rs, 401, "M_MISSING_TOKEN", "Missing access token.");
        return false;
    }
    hs_appservice *as = hs_as_by_token(tok);
    if (as) {
        /* an appservice may act as its bot and as the users its namespaces cover, nobody else
           (exclusive or not); Synapse answers 403 M_FORBIDDEN */
        const char *as_user = query(rq, "user_id");
        const char *uid = as_user ? as_user : as->bot_id;
        if (!hs_as_interested_user(as, uid)) {
            char *m = hs_strf("Application service cannot masquerade as this user (%s).", uid);
            reply_err(rs, 403, "M_FORBIDDEN", m);
            free(m);
            return false;
        }
        if (!find_user(uid)) {
            char *m = hs_strf("Application service has not registered this user (%s)", uid);
            reply_err(rs, 403, "M_FORBIDDEN", m);
            free(m);
            return false;
        }
        rq->user_id = xstrdup(uid);
        rq->txn_key = hs_strf("as|%s", uid);
        rq->is_as = true;
        rq->as = as;
        return true;
    }
    for (size_t i = 0; i < G.n_tokens; i++) {
        if (strcmp(G.tokens[i].token, tok) == 0) {
            rq->user_id = xstrdup(G.tokens[i].user_id);
            rq->txn_key = xstrdup(tok);
            return true;
        }
    }
    reply_err(rs, 401, "M_UNKNOWN_TOKEN", "Invalid access token passed.");
    return false;
}

/* ---- rooms (lock held) ---- */

static hs_room *find_room(const char *id)
{
    for (size_t i = 0; i < G.n_rooms; i++)
        if (strcmp(G.rooms[i].id, id) == 0) return &G.rooms[i];
    return NULL;
}

static const char *resolve_alias(const char *alias)
{
    for (size_t i = 0; i < G.n_aliases; i++)
        if (strcmp(G.aliases[i].alias, alias) == 0) return G.aliases[i].room_id;
    return NULL;
}

const cJSON *hs_state_get(const hs_room *r, const char *type, const char *key, size_t *idx)
{
    for (size_t i = 0; i < r->n_state; i++) {
        const hs_state_ent *s = &r->state[i];
        if (strcmp(s->type, type) == 0 && strcmp(s->key, key) == 0) {
            if (idx) *idx = s->idx;
            return r->events[s->idx].ev;
        }
    }
    return NULL;
}

/* Latest state event (type, key) in r, or NULL. */
static const cJSON *state_get(hs_room *r, const char *type, const char *key)
{
    return hs_state_get(r, type, key, NULL);
}

/* Keeps the state index and the member list up to date with event idx of r. */
static void state_note(hs_room *r, size_t idx, const char *type, const char *key)
{
    if (strcmp(type, "m.room.member") == 0) {
        HS_GROW(r->members, r->n_members, r->cap_members);
        r->members[r->n_members++] = idx;
    }
    for (size_t i = 0; i < r->n_state; i++) {
        if (strcmp(r->state[i].type, type) == 0 && strcmp(r->state[i].key, key) == 0) {
            r->state[i].idx = idx;
            return;
        }
    }
    HS_GROW(r->state, r->n_state, r->cap_state);
    r->state[r->n_state++] = (hs_state_ent){xstrdup(type), xstrdup(key), idx};
}

/* Current membership of user in r ("join", "invite", "leave", "ban") or NULL. */
static const char *membership(hs_room *r, const char *user)
{
    const cJSON *ev = state_get(r, "m.room.member", user);
    return ev ? str_of(cJSON_GetObjectItemCaseSensitive(ev, "content"), "membership") : NULL;
}

static bool is_member(hs_room *r, const char *user, const char *m)
{
    const char *cur = membership(r, user);
    return cur && strcmp(cur, m) == 0;
}

/* Appends an event (content taken); returns the stored event. */
static hs_event *room_append_ex(hs_room *r, const char *sender, const char *type,
                                const char *state_key, cJSON *content, int64_t ts,
                                const char *redacts);

static hs_event *room_append(hs_room *r, const char *sender, const char *type,
                             const char *state_key, cJSON *content, int64_t ts)
{
    return room_append_ex(r, sender, type, state_key, content, ts, NULL);
}

/* redacts: for m.room.redaction, the target (top-level key, as room versions up to 10 have it);
 * set before the event is offered to the appservice. A state event that replaces an earlier one
 * carries it in unsigned as Synapse does: prev_content, prev_sender, replaces_state. */
static hs_event *room_append_ex(hs_room *r, const char *sender, const char *type,
                                const char *state_key, cJSON *content, int64_t ts,
                                const char *redacts)
{
    const cJSON *prev = state_key && !G.no_prev_content ? state_get(r, type, state_key) : NULL;
    cJSON *prev_content =
        prev ? cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(prev, "content"), 1) : NULL;
    char *prev_sender = prev ? xstrdup(str_of(prev, "sender")) : NULL;
    char *prev_id = prev ? xstrdup(str_of(prev, "event_id")) : NULL;
    HS_GROW(r->events, r->n_events, r->cap_events);
    hs_event *e = &r->events[r->n_events++];
    memset(e, 0, sizeof *e);
    cJSON *ev = cJSON_CreateObject();
    char hex[17];
    hs_random_hex(hex, 8);
    char *eid = hs_strf("$e%llu_%s", (unsigned long long)++G.counter, hex);
    cJSON_AddStringToObject(ev, "type", type);
    cJSON_AddStringToObject(ev, "room_id", r->id);
    cJSON_AddStringToObject(ev, "sender", sender);
    cJSON_AddItemToObject(ev, "content", content ? content : cJSON_CreateObject());
    cJSON_AddStringToObject(ev, "event_id", eid);
    cJSON_AddNumberToObject(ev, "origin_server_ts", (double)(ts > 0 ? ts : hs_now_ms()));
    if (state_key) cJSON_AddStringToObject(ev, "state_key", state_key);
    if (redacts) cJSON_AddStringToObject(ev, "redacts", redacts);
    cJSON *uns = cJSON_AddObjectToObject(ev, "unsigned");
    cJSON_AddNumberToObject(uns, "age", 0);
    if (prev_content) {
        cJSON_AddItemToObject(uns, "prev_content", prev_content);
        cJSON_AddStringToObject(uns, "prev_sender", prev_sender);
        cJSON_AddStringToObject(uns, "replaces_state", prev_id);
    }
    free(prev_sender);
    free(prev_id);
    free(eid);
    e->ev = ev;
    e->pos = ++G.pos;
    e->rx_us = hs_mono_us();
    if (state_key) state_note(r, r->n_events - 1, type, state_key);
    hs_as_offer_event(r, ev);
    pthread_cond_broadcast(&G.cv);
    return e;
}

void hs_event_pushed(const cJSON *ev, int64_t us)
{
    hs_room *r = find_room(str_of(ev, "room_id"));
    const char *id = str_of(ev, "event_id");
    if (!r || !id) return;
    for (size_t i = r->n_events; i-- > 0;) { /* a pushed event is one of the newest */
        if (strcmp(str_of(r->events[i].ev, "event_id"), id) == 0) {
            if (!r->events[i].push_us) r->events[i].push_us = us;
            return;
        }
    }
}

static hs_room *new_room(void)
{
    HS_GROW(G.rooms, G.n_rooms, G.cap_rooms);
    hs_room *r = &G.rooms[G.n_rooms++];
    memset(r, 0, sizeof *r);
    char hex[17];
    hs_random_hex(hex, 8);
    r->id = hs_strf("!%s:%s", hex, G.server_name);
    return r;
}

static cJSON *member_content(const char *membership_, const char *user_id)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "membership", membership_);
    hs_user *u = user_id ? find_user(user_id) : NULL;
    if (u && u->displayname) cJSON_AddStringToObject(c, "displayname", u->displayname);
    if (u && u->avatar_url) cJSON_AddStringToObject(c, "avatar_url", u->avatar_url);
    return c;
}

/* ---- faults (lock held) ---- */

static bool take_fault(const char *method, const char *url, hs_fault *out)
{
    for (size_t i = 0; i < G.n_faults; i++) {
        hs_fault *f = &G.faults[i];
        if (f->count <= 0) continue;
        if (f->method && strcmp(f->method, method) != 0) continue;
        if (!strstr(url, f->match)) continue;
        f->count--;
        *out = *f;
        G.faults_applied++;
        return true;
    }
    return false;
}

/* ---- handlers: account ---- */

static void h_versions(hreq *rq, hres *rs)
{
    cJSON *o = cJSON_CreateObject();
    const char *v[] = {"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4",  "v1.5",
                       "v1.6",   "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"};
    cJSON_AddItemToObject(o, "versions", cJSON_CreateStringArray(v, (int)(sizeof v / sizeof v[0])));
    cJSON_AddObjectToObject(o, "unstable_features");
    reply_json(rs, 200, o);
}

static void h_register(hreq *rq, hres *rs)
{
    cJSON *b = body_json(rq, rs);
    if (!b) return;
    const char *type = str_of(b, "type");
    const char *username = str_of(b, "username");
    bool inhibit = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "inhibit_login"));
    if (type && strcmp(type, "m.login.application_service") == 0) {
        if (!authenticate(rq, rs)) goto out;
        if (!rq->is_as) {
            reply_err(rs, 401, "M_MISSING_TOKEN", "Appservice token required");
            goto out;
        }
        if (!username || !valid_localpart(username)) {
            reply_err(rs, 400, "M_INVALID_USERNAME", "Invalid username");
            goto out;
        }
        char *uid = hs_strf("@%s:%s", username, G.server_name);
        if (!hs_as_interested_user(rq->as, uid)) {
            reply_err(rs, 400, "M_EXCLUSIVE", "User ID not in the appservice's namespace");
        } else if (find_user(uid)) {
            reply_err(rs, 400, "M_USER_IN_USE", "User ID already taken.");
        } else {
            add_user(uid, NULL);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "user_id", uid);
            if (!inhibit) {
                hs_token *t = new_token(uid);
                cJSON_AddStringToObject(o, "access_token", t->token);
                cJSON_AddStringToObject(o, "device_id", t->device_id);
            }
            reply_json(rs, 200, o);
        }
        free(uid);
        goto out;
    }
    const cJSON *auth = cJSON_GetObjectItemCaseSensitive(b, "auth");
    const char *atype = str_of(auth, "type");
    if (!atype || strcmp(atype, "m.login.dummy") != 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON *flows = cJSON_AddArrayToObject(o, "flows");
        cJSON *f = cJSON_CreateObject();
        const char *st[] = {"m.login.dummy"};
        cJSON_AddItemToObject(f, "stages", cJSON_CreateStringArray(st, 1));
        cJSON_AddItemToArray(flows, f);
        cJSON_AddObjectToObject(o, "params");
        char hex[17];
        hs_random_hex(hex, 8);
        cJSON_AddStringToObject(o, "session", hex);
        reply_json(rs, 401, o);
        goto out;
    }
    const char *password = str_of(b, "password");
    char gen[24];
    if (!username) {
        snprintf(gen, sizeof gen, "u%llu", (unsigned long long)++G.counter);
        username = gen;
    }
    if (!valid_localpart(username)) {
        reply_err(rs, 400, "M_INVALID_USERNAME",
                  "User ID can only contain characters a-z, 0-9, or '=_-./+'");
        goto out;
    }
    if (!password) {
        reply_err(rs, 400, "M_MISSING_PARAM", "Missing password");
        goto out;
    }
    char *uid = hs_strf("@%s:%s", username, G.server_name);
    if (hs_as_user_exclusive(uid)) {
        reply_err(rs, 400, "M_EXCLUSIVE", "User ID reserved by an application service");
    } else if (find_user(uid)) {
        reply_err(rs, 400, "M_USER_IN_USE", "User ID already taken.");
    } else {
        add_user(uid, password);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "user_id", uid);
        cJSON_AddStringToObject(o, "home_server", G.server_name);
        if (!inhibit) {
            hs_token *t = new_token(uid);
            cJSON_AddStringToObject(o, "access_token", t->token);
            cJSON_AddStringToObject(o, "device_id", t->device_id);
        }
        reply_json(rs, 200, o);
    }
    free(uid);
out:
    cJSON_Delete(b);
}

static void h_login(hreq *rq, hres *rs)
{
    if (strcmp(rq->method, "GET") == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON *flows = cJSON_AddArrayToObject(o, "flows");
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "type", "m.login.password");
        cJSON_AddItemToArray(flows, f);
        f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "type", "m.login.application_service");
        cJSON_AddItemToArray(flows, f);
        reply_json(rs, 200, o);
        return;
    }
    cJSON *b = body_json(rq, rs);
    if (!b) return;
    const char *type = str_of(b, "type");
    const char *user = str_of(cJSON_GetObjectItemCaseSensitive(b, "identifier"), "user");
    if (!user) user = str_of(b, "user");
    const char *password = str_of(b, "password");
    if (!type || strcmp(type, "m.login.password") != 0) {
        reply_err(rs, 400, "M_UNKNOWN", "Unknown login type");
    } else if (!user || !password) {
        reply_err(rs, 400, "M_MISSING_PARAM", "Missing user or password");
    } else {
        char *uid = user[0] == '@' ? xstrdup(user) : hs_strf("@%s:%s", user, G.server_name);
        hs_user *u = find_user(uid);
        if (!u || !u->password || strcmp(u->password, password) != 0) {
            reply_err(rs, 403, "M_FORBIDDEN", "Invalid username or password");
        } else {
            hs_token *t = new_token(uid);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "user_id", uid);
            cJSON_AddStringToObject(o, "access_token", t->token);
            cJSON_AddStringToObject(o, "device_id", t->device_id);
            cJSON_AddStringToObject(o, "home_server", G.server_name);
            reply_json(rs, 200, o);
        }
        free(uid);
    }
    cJSON_Delete(b);
}

static void h_whoami(hreq *rq, hres *rs)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "user_id", rq->user_id);
    cJSON_AddBoolToObject(o, "is_guest", 0);
    reply_json(rs, 200, o);
}

/* ---- handlers: rooms ---- */

static void add_invite(hs_room *r, const char *sender, const char *target, bool is_direct)
{
    cJSON *c = member_content("invite", target);
    if (is_direct) cJSON_AddBoolToObject(c, "is_direct", 1);
    room_append(r, sender, "m.room.member", target, c, 0);
}

static void h_create_room(hreq *rq, hres *rs)
{
    cJSON *b = body_json(rq, rs);
    if (!b) return;
    const char *preset = str_of(b, "preset");
    const char *vis = str_of(b, "visibility");
    bool public_room =
        preset ? strcmp(preset, "public_chat") == 0 : (vis && strcmp(vis, "public") == 0);
    const char *alias_name = str_of(b, "room_alias_name");
    char *alias = alias_name ? hs_strf("#%s:%s", alias_name, G.server_name) : NULL;
    if (alias && resolve_alias(alias)) {
        reply_err(rs, 400, "M_ROOM_IN_USE", "Room alias already taken");
        free(alias);
        cJSON_Delete(b);
        return;
    }
    const cJSON *inv = cJSON_GetObjectItemCaseSensitive(b, "invite");
    if (inv && !cJSON_IsArray(inv)) {
        reply_err(rs, 400, "M_BAD_JSON", "invite must be an array");
        free(alias);
        cJSON_Delete(b);
        return;
    }
    hs_room *r = new_room();
    const char *me = rq->user_id;
    cJSON *cc = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(b, "creation_content"), 1);
    if (!cJSON_IsObject(cc)) {
        cJSON_Delete(cc);
        cc = cJSON_CreateObject();
    }
    cJSON_DeleteItemFromObject(cc, "creator");
    cJSON_AddStringToObject(cc, "creator", me);
    if (!cJSON_GetObjectItem(cc, "room_version")) cJSON_AddStringToObject(cc, "room_version", "10");
    room_append(r, me, "m.room.create", "", cc, 0);
    room_append(r, me, "m.room.member", me, member_content("join", me), 0);
    cJSON *pl = cJSON_CreateObject();
    cJSON *plu = cJSON_AddObjectToObject(pl, "users");
    cJSON_AddNumberToObject(plu, me, 100);
    cJSON_AddNumberToObject(pl, "users_default", 0);
    cJSON_AddObjectToObject(pl, "events");
    cJSON_AddNumberToObject(pl, "events_default", 0);
    cJSON_AddNumberToObject(pl, "state_default", 50);
    cJSON_AddNumberToObject(pl, "ban", 50);
    cJSON_AddNumberToObject(pl, "kick", 50);
    cJSON_AddNumberToObject(pl, "redact", 50);
    cJSON_AddNumberToObject(pl, "invite", 0);
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(b, "power_level_content_override");
    const cJSON *it;
    if (cJSON_IsObject(ov)) {
        cJSON_ArrayForEach(it, ov)
        {
            cJSON_DeleteItemFromObject(pl, it->string);
            cJSON_AddItemToObject(pl, it->string, cJSON_Duplicate(it, 1));
        }
    }
    room_append(r, me, "m.room.power_levels", "", pl, 0);
    if (alias) {
        HS_GROW(G.aliases, G.n_aliases, G.cap_aliases);
        G.aliases[G.n_aliases].alias = xstrdup(alias);
        G.aliases[G.n_aliases++].room_id = xstrdup(r->id);
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "alias", alias);
        room_append(r, me, "m.room.canonical_alias", "", c, 0);
    }
    cJSON *jr = cJSON_CreateObject();
    cJSON_AddStringToObject(jr, "join_rule", public_room ? "public" : "invite");
    room_append(r, me, "m.room.join_rules", "", jr, 0);
    cJSON *hv = cJSON_CreateObject();
    cJSON_AddStringToObject(hv, "history_visibility", "shared");
    room_append(r, me, "m.room.history_visibility", "", hv, 0);
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(b, "initial_state"))
    {
        const char *t = str_of(it, "type");
        const char *sk = str_of(it, "state_key");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!t || !cJSON_IsObject(c)) continue;
        room_append(r, me, t, sk ? sk : "", cJSON_Duplicate(c, 1), 0);
    }
    const char *name = str_of(b, "name"), *topic = str_of(b, "topic");
    if (name) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", name);
        room_append(r, me, "m.room.name", "", c, 0);
    }
    if (topic) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "topic", topic);
        room_append(r, me, "m.room.topic", "", c, 0);
    }
    bool direct = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "is_direct"));
    cJSON_ArrayForEach(it, inv)
    {
        if (cJSON_IsString(it)) add_invite(r, me, it->valuestring, direct);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "room_id", r->id);
    if (alias) cJSON_AddStringToObject(o, "room_alias", alias);
    reply_json(rs, 200, o);
    free(alias);
    cJSON_Delete(b);
}

static void h_join(hreq *rq, hres *rs, const char *target)
{
    const char *rid = target[0] == '#' ? resolve_alias(target) : target;
    hs_room *r = rid ? find_room(rid) : NULL;
    if (!r) {
        reply_err(rs, 404, "M_NOT_FOUND", "No such room.");
        return;
    }
    const char *m = membership(r, rq->user_id);
    const cJSON *jr = state_get(r, "m.room.join_rules", "");
    const char *rule =
        jr ? str_of(cJSON_GetObjectItemCaseSensitive(jr, "content"), "join_rule") : NULL;
    bool ok = (m && (strcmp(m, "invite") == 0 || strcmp(m, "join") == 0)) ||
              (rule && strcmp(rule, "public") == 0);
    if (m && strcmp(m, "ban") == 0) ok = false;
    if (!ok) {
        reply_err(rs, 403, "M_FORBIDDEN", "You are not invited to this room.");
        return;
    }
    if (!m || strcmp(m, "join") != 0)
        room_append(r, rq->user_id, "m.room.member", rq->user_id,
                    member_content("join", rq->user_id), 0);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "room_id", r->id);
    reply_json(rs, 200, o);
}

static hs_room *room_for(hres *rs, const char *room_id)
{
    hs_room *r = find_room(room_id);
    if (!r) reply_err(rs, 404, "M_NOT_FOUND", "Unknown room");
    return r;
}

static bool require_joined(hs_room *r, hreq *rq, hres *rs)
{
    if (is_member(r, rq->user_id, "join")) return true;
    char *m = hs_strf("User %s not in room %s", rq->user_id, r->id);
    reply_err(rs, 403, "M_FORBIDDEN", m);
    free(m);
    return false;
}

static void h_membership(hreq *rq, hres *rs, hs_room *r, const char *action)
{
    cJSON *b = body_json(rq, rs);
    if (!b) return;
    const char *target = str_of(b, "user_id");
    const char *reason = str_of(b, "reason");
    if (strcmp(action, "leave") == 0) {
        const char *m = membership(r, rq->user_id);
        if (!m || (strcmp(m, "join") != 0 && strcmp(m, "invite") != 0)) {
            reply_err(rs, 403, "M_FORBIDDEN", "You are not in this room.");
        } else {
            cJSON *c = member_content("leave", NULL);
            if (reason) cJSON_AddStringToObject(c, "reason", reason);
            room_append(r, rq->user_id, "m.room.member", rq->user_id, c, 0);
            reply_empty(rs);
        }
    } else if (!target) {
        reply_err(rs, 400, "M_MISSING_PARAM", "Missing user_id");
    } else if (!require_joined(r, rq, rs)) {
    } else if (strcmp(action, "invite") == 0) {
        const char *m = membership(r, target);
        if (m && strcmp(m, "join") == 0) {
            reply_err(rs, 403, "M_FORBIDDEN", "User is already in the room.");
        } else if (m && strcmp(m, "ban") == 0) {
            reply_err(rs, 403, "M_FORBIDDEN", "User is banned from the room.");
        } else {
            if (!m || strcmp(m, "invite") != 0) add_invite(r, rq->user_id, target, false);
            reply_empty(rs);
        }
    } else { /* kick / ban */
        const char *m = membership(r, target);
        bool ban = strcmp(action, "ban") == 0;
        if (!ban && (!m || (strcmp(m, "join") != 0 && strcmp(m, "invite") != 0))) {
            reply_err(rs, 403, "M_FORBIDDEN", "The target user is not in the room.");
        } else {
            cJSON *c = member_content(ban ? "ban" : "leave", NULL);
            if (reason) cJSON_AddStringToObject(c, "reason", reason);
            room_append(r, rq->user_id, "m.room.member", target, c, 0);
            reply_empty(rs);
        }
    }
    cJSON_Delete(b);
}

/* Answers {"event_id": e's id}. */
static void reply_event_id(hres *rs, const hs_event *e)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event_id", str_of(e->ev, "event_id"));
    reply_json(rs, 200, o);
}

static void h_state(hreq *rq, hres *rs, hs_room *r, const char *type, const char *key)
{
    if (strcmp(rq->method, "GET") == 0) {
        const char *m = membership(r, rq->user_id);
        if (!m || (strcmp(m, "join") != 0 && strcmp(m, "leave") != 0)) {
            reply_err(rs, 403, "M_FORBIDDEN", "You are not in this room.");
            return;
        }
        if (!type) { /* the whole state */
            cJSON *arr = cJSON_CreateArray();
            for (size_t i = 0; i < r->n_events; i++) {
                const cJSON *ev = r->events[i].ev;
                const char *t = str_of(ev, "type"), *sk = str_of(ev, "state_key");
                if (t && sk && state_get(r, t, sk) == ev)
                    cJSON_AddItemToArray(arr, cJSON_Duplicate(ev, 1));
            }
            reply_json(rs, 200, arr);
            return;
        }
        const cJSON *ev = state_get(r, type, key);
        if (!ev) {
            reply_err(rs, 404, "M_NOT_FOUND", "Event not found.");
            return;
        }
        reply_json(rs, 200, cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(ev, "content"), 1));
        return;
    }
    if (!type) {
        reply_err(rs, 405, "M_UNRECOGNIZED", "Method not allowed");
        return;
    }
    cJSON *b = body_json(rq, rs);
    if (!b) return;
    if (!require_joined(r, rq, rs)) {
        cJSON_Delete(b);
        return;
    }
    hs_event *e = room_append(r, rq->user_id, type, key, b, 0);
    reply_event_id(rs, e);
}

/* The room's index of events sent with a txnId (a client's retry gets the same event back):
 * open addressing over (sender's key, txnId). */
static size_t txn_hash(const char *key, const char *txn)
{
    size_t h = 1469598103934665603u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    h = (h ^ '|') * 1099511628211u;
    for (const unsigned char *p = (const unsigned char *)txn; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return h;
}

static hs_event *txn_find(hs_room *r, const char *key, const char *txn)
{
    if (!r->txn_cap) return NULL;
    for (size_t i = txn_hash(key, txn) & (r->txn_cap - 1);; i = (i + 1) & (r->txn_cap - 1)) {
        if (!r->txn_slots[i]) return NULL;
        hs_event *e = &r->events[r->txn_slots[i] - 1];
        if (strcmp(e->txn_id, txn) == 0 && strcmp(e->txn_token, key) == 0) return e;
    }
}

/* Marks e (an event of r) as sent by the client of key with txn, and indexes it. */
static void txn_put(hs_room *r, hs_event *e, const char *key, const char *txn)
{
    e->txn_id = xstrdup(txn);
    e->txn_token = xstrdup(key);
    size_t index = (size_t)(e - r->events);
    if (2 * (r->n_txn + 1) > r->txn_cap) {
        size_t cap = r->txn_cap ? 2 * r->txn_cap : 64;
        uint32_t *slots = calloc(cap, sizeof(*slots));
        if (!slots) {
            fprintf(stderr, "hs-sim: out of memory\n");
            exit(1);
        }
        for (size_t i = 0; i < r->txn_cap; i++) {
            if (!r->txn_slots[i]) continue;
            const hs_event *old = &r->events[r->txn_slots[i] - 1];
            size_t j = txn_hash(old->txn_token, old->txn_id) & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = r->txn_slots[i];
        }
        free(r->txn_slots);
        r->txn_slots = slots;
        r->txn_cap = cap;
    }
    size_t j = txn_hash(e->txn_token, e->txn_id) & (r->txn_cap - 1);
    while (r->txn_slots[j])
        j = (j + 1) & (r->txn_cap - 1);
    r->txn_slots[j] = (uint32_t)index + 1;
    r->n_txn++;
}

static void h_send(hreq *rq, hres *rs, hs_room *r, const char *type, const char *txn)
{
    /* a repeated txnId from the same client gives the same event back */
    hs_event *seen = txn_find(r, rq->txn_key, txn);
    if (seen) {
        __atomic_fetch_add(&G.send_repeats, 1, __ATOMIC_RELAXED);
        reply_event_id(rs, seen);
        return;
    }
    cJSON *b = body_json(rq, rs);
    if (!b) return;
    if (!require_joined(r, rq, rs)) {
        cJSON_Delete(b);
        return;
    }
    int64_t ts = 0;
    const char *tsq = query(rq, "ts");
    if (tsq && rq->is_as) ts = strtoll(tsq, NULL, 10);
    hs_event *e = room_append(r, rq->user_id, type, NULL, b, ts);
    txn_put(r, e, rq->txn_key, txn);
    reply_event_id(rs, e);
}

static hs_event *find_event(hs_room *r, const char *event_id)
{
    for (size_t i = 0; i < r->n_events; i++)
        if (strcmp(str_of(r->events[i].ev, "event_id"), event_id) == 0) return &r->events[i];
    return NULL;
}

static void h_redact(hreq *rq, hres *rs, hs_room *r, const char *event_id, const char *txn)
{
    hs_event *seen = txn_find(r, rq->txn_key, txn);
    if (seen) {
        __atomic_fetch_add(&G.send_repeats, 1, __ATOMIC_RELAXED);
        reply_event_id(rs, seen);
        return;
    }
    cJSON *b = body_json(rq, rs);
    if (!b) return;
    if (!require_joined(r, rq, rs)) {
        cJSON_Delete(b);
        return;
    }
    hs_event *target = find_event(r, event_id);
    if (target) {
        /* strip the content (a real server keeps some keys of state events) */
        cJSON_ReplaceItemInObjectCaseSensitive(target->ev, "content", cJSON_CreateObject());
    }
    cJSON_DeleteItemFromObjectCaseSensitive(b, "redacts");
    cJSON_AddStringToObject(b, "redacts", event_id); /* room version 11 keeps it in content */
    hs_event *e = room_append_ex(r, rq->user_id, "m.room.redaction", NULL, b, 0, event_id);
    txn_put(r, e, rq->txn_key, txn);
    reply_event_id(rs, e);
}

static cJSON *typing_edu(hs_room *r)
{
    cJSON *edu = cJSON_CreateObject();
    cJSON_AddStringToObject(edu, "type", "m.typing");
    cJSON_AddStringToObject(edu, "room_id", r->id);
    cJSON *ids = cJSON_AddArrayToObject(cJSON_AddObjectToObject(edu, "content"), "user_ids");
    int64_t now = hs_mono_ms();
    for (size_t i = 0; i < r->n_typing; i++)
        if (r->typing[i].until_ms > now)
            cJSON_AddItemToArray(ids, cJSON_CreateString(r->typing[i].user_id));
    return edu;
}

static void h_typing(hreq *rq, hres *rs, hs_room *r, const char *user)
{
    if (strcmp(user, rq->user_id) != 0) {
        reply_err(rs, 403, "M_FORBIDDEN", "Cannot set another user's typing state");
        return;
    }
    cJSON *b = body_json(rq, rs);
    if (!b) return;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "typing");
    if (!cJSON_IsBool(t)) {
        reply_err(rs, 400, "M_BAD_JSON", "Missing typing");
    } else if (require_joined(r, rq, rs)) {
        size_t i;
        for (i = 0; i < r->n_typing && strcmp(r->typing[i].user_id, user) != 0; i++) {
        }
        if (i == r->n_typing) {
            HS_GROW(r->typing, r->n_typing, r->cap_typing);
            r->typing[r->n_typing++] = (hs_typing){xstrdup(user), 0};
        }
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(b, "timeout");
        long ms = cJSON_IsNumber(to) ? (long)to->valuedouble : 30000;
        r->typing[i].until_ms = cJSON_IsTrue(t) ? hs_mono_ms() + ms : 0;
        r->typing_pos = ++G.pos;
        cJSON *edu = typing_edu(r);
        hs_as_offer_ephemeral(r, edu);
        cJSON_Delete(edu);
        pthread_cond_broadcast(&G.cv);
        reply_empty(rs);
    }
    cJSON_Delete(b);
}

static cJSON *receipt_edu(hs_room *r)
{
    cJSON *edu = cJSON_CreateObject();
    cJSON_AddStringToObject(edu, "type", "m.receipt");
    cJSON_AddStringToObject(edu, "room_id", r->id);
    cJSON *c = cJSON_AddObjectToObject(edu, "content");
    for (size_t i = 0; i < r->n_receipts; i++) {
        hs_receipt *x = &r->receipts[i];
        cJSON *e = cJSON_GetObjectItemCaseSensitive(c, x->event_id);
        if (!e) e = cJSON_AddObjectToObject(c, x->event_id);
        cJSON *t = cJSON_GetObjectItemCaseSensitive(e, x->type);
        if (!t) t = cJSON_AddObjectToObject(e, x->type);
        cJSON *u = cJSON_AddObjectToObject(t, x->user_id);
        cJSON_AddNumberToObject(u, "ts", (double)x->ts);
    }
    return edu;
}

static void h_receipt(hreq *rq, hres *rs, hs_room *r, const char *type, const char *event_id)
{
    if (strcmp(type, "m.read") != 0 && strcmp(type, "m.read.private") != 0 &&
        strcmp(type, "m.fully_read") != 0) {
        reply_err(rs, 400, "M_INVALID_PARAM", "Unknown receipt type");
        return;
    }
    if (!require_joined(r, rq, rs)) return;
    if (!find_event(r, event_id)) {
        reply_err(rs, 404, "M_NOT_FOUND", "Unknown event");
        return;
    }
    size_t i;
    for (i = 0; i < r->n_receipts; i++)
        if (strcmp(r->receipts[i].user_id, rq->user_id) == 0 &&
            strcmp(r->receipts[i].type, type) == 0)
            break;
    if (i == r->n_receipts) {
        HS_GROW(r->receipts, r->n_receipts, r->cap_receipts);
        r->receipts[r->n_receipts++] = (hs_receipt){xstrdup(rq->user_id), NULL, xstrdup(type), 0};
    }
    free(r->receipts[i].event_id);
    r->receipts[i].event_id = xstrdup(event_id);
    r->receipts[i].ts = hs_now_ms();
    r->receipt_pos = ++G.pos;
    cJSON *edu = receipt_edu(r);
    hs_as_offer_ephemeral(r, edu);
    cJSON_Delete(edu);
    pthread_cond_broadcast(&G.cv);
    reply_empty(rs);
}

static void h_members(hreq *rq, hres *rs, hs_room *r, bool joined_only)
{
    if (!require_joined(r, rq, rs)) return;
    cJSON *o = cJSON_CreateObject();
    cJSON *chunk =
        joined_only ? cJSON_AddObjectToObject(o, "joined") : cJSON_AddArrayToObject(o, "chunk");
    for (size_t i = 0; i < r->n_events; i++) {
        const cJSON *ev = r->events[i].ev;
        const char *t = str_of(ev, "type"), *sk = str_of(ev, "state_key");
        if (!t || !sk || strcmp(t, "m.room.member") != 0 || state_get(r, t, sk) != ev) continue;
        if (joined_only) {
            if (is_member(r, sk, "join")) cJSON_AddObjectToObject(chunk, sk);
        } else {
            cJSON_AddItemToArray(chunk, cJSON_Duplicate(ev, 1));
        }
    }
    reply_json(rs, 200, o);
}

/* Copy of an event for user's client: adds unsigned.transaction_id for the sender's own sends. */
static cJSON *client_event(const hs_event *e, const char *txn_key)
{
    cJSON *c = cJSON_Duplicate(e->ev, 1);
    if (e->txn_id && txn_key && strcmp(e->txn_token, txn_key) == 0) {
        cJSON *u = cJSON_GetObjectItemCaseSensitive(c, "unsigned");
        if (u) cJSON_AddStringToObject(u, "transaction_id", e->txn_id);
    }
    return c;
}

static int64_t parse_token(const char *t)
{
    if (!t || (t[0] != 's' && t[0] != 't')) return -1;
    char *end;
    long long v = strtoll(t + 1, &end, 10);
    return (*end || v < 0) ? -1 : v;
}

static void h_messages(hreq *rq, hres *rs, hs_room *r)
{
    const char *m = membership(r, rq->user_id);
    if (!m || (strcmp(m, "join") != 0 && strcmp(m, "leave") != 0)) {
        reply_err(rs, 403, "M_FORBIDDEN", "You are not in this room.");
        return;
    }
    const char *dir = query(rq, "dir");
    bool back = !dir || strcmp(dir, "b") == 0;
    if (dir && strcmp(dir, "b") != 0 && strcmp(dir, "f") != 0) {
        reply_err(rs, 400, "M_INVALID_PARAM", "dir must be b or f");
        return;
    }
    const char *from_s = query(rq, "from");
    int64_t from = from_s ? parse_token(from_s) : (back ? G.pos : 0);
    if (from < 0) {
        reply_err(rs, 400, "M_INVALID_PARAM", "Invalid from token");
        return;
    }
    const char *lim_s = query(rq, "limit");
    long limit = lim_s ? strtol(lim_s, NULL, 10) : 10;
    if (limit <= 0 || limit > 1000) limit = 10;
    cJSON *o = cJSON_CreateObject();
    cJSON *chunk = cJSON_AddArrayToObject(o, "chunk");
    int64_t end = from;
    long n = 0;
    if (back) {
        for (size_t i = r->n_events; i-- > 0 && n < limit;) {
            if (r->events[i].pos > from) continue;
            cJSON_AddItemToArray(chunk, client_event(&r->events[i], rq->txn_key));
            end = r->events[i].pos - 1;
            n++;
        }
    } else {
        for (size_t i = 0; i < r->n_events && n < limit; i++) {
            if (r->events[i].pos <= from) continue;
            cJSON_AddItemToArray(chunk, client_event(&r->events[i], rq->txn_key));
            end = r->events[i].pos;
            n++;
        }
    }
    char tok[32];
    snprintf(tok, sizeof tok, "s%lld", (long long)from);
    cJSON_AddStringToObject(o, "start", tok);
    if (n == limit) {
        snprintf(tok, sizeof tok, "s%lld", (long long)end);
        cJSON_AddStringToObject(o, "end", tok);
    }
    reply_json(rs, 200, o);
}

/* ---- /sync ---- */

static cJSON *stripped(const cJSON *ev)
{
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "type", str_of(ev, "type"));
    cJSON_AddStringToObject(s, "state_key", str_of(ev, "state_key"));
    cJSON_AddStringToObject(s, "sender", str_of(ev, "sender"));
    cJSON_AddItemToObject(s, "content",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(ev, "content"), 1));
    return s;
}

/* Builds the sync answer for user since `since` (0 = initial); *any = something to report. */
static cJSON *build_sync(const char *user, const char *txn_key, int64_t since, bool *any)
{
    *any = false;
    cJSON *o = cJSON_CreateObject();
    cJSON *rooms = cJSON_AddObjectToObject(o, "rooms");
    cJSON *join = cJSON_AddObjectToObject(rooms, "join");
    cJSON *invite = cJSON_AddObjectToObject(rooms, "invite");
    cJSON *leave = cJSON_AddObjectToObject(rooms, "leave");
    for (size_t ri = 0; ri < G.n_rooms; ri++) {
        hs_room *r = &G.rooms[ri];
        const cJSON *mev = state_get(r, "m.room.member", user);
        if (!mev) continue;
        const char *m = str_of(cJSON_GetObjectItemCaseSensitive(mev, "content"), "membership");
        size_t midx = 0;
        hs_state_get(r, "m.room.member", user, &midx);
        int64_t mpos = r->events[midx].pos;
        if (strcmp(m, "join") == 0) {
            /* fresh = not joined at `since`: send the room's history, otherwise what is new */
            const char *was = NULL;
            for (size_t k = 0; k < r->n_members && r->events[r->members[k]].pos <= since; k++) {
                const cJSON *ev = r->events[r->members[k]].ev;
                if (strcmp(str_of(ev, "state_key"), user) == 0)
                    was = str_of(cJSON_GetObjectItemCaseSensitive(ev, "content"), "membership");
            }
            bool fresh = since == 0 || !was || strcmp(was, "join") != 0;
            cJSON *jr = cJSON_CreateObject();
            cJSON *state = cJSON_AddArrayToObject(cJSON_AddObjectToObject(jr, "state"), "events");
            cJSON *tl = cJSON_AddObjectToObject(jr, "timeline");
            cJSON *tle = cJSON_AddArrayToObject(tl, "events");
            size_t first = 0;
            if (fresh) {
                if (r->n_events > 100) first = r->n_events - 100;
                /* state before the timeline: current state events older than it */
                for (size_t i = 0; i < first; i++) {
                    const cJSON *ev = r->events[i].ev;
                    const char *t = str_of(ev, "type"), *sk = str_of(ev, "state_key");
                    if (t && sk && state_get(r, t, sk) == ev)
                        cJSON_AddItemToArray(state, cJSON_Duplicate(ev, 1));
                }
            } else { /* the first event after since (positions increase: a binary search) */
                size_t lo = 0, hi = r->n_events;
                while (lo < hi) {
                    size_t mid = lo + (hi - lo) / 2;
                    if (r->events[mid].pos <= since)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                first = lo;
            }
            for (size_t i = first; i < r->n_events; i++)
                cJSON_AddItemToArray(tle, client_event(&r->events[i], txn_key));
            cJSON_AddBoolToObject(tl, "limited", fresh && first > 0);
            char tok[32];
            snprintf(tok, sizeof tok, "s%lld",
                     (long long)(first < r->n_events ? r->events[first].pos - 1 : G.pos));
            cJSON_AddStringToObject(tl, "prev_batch", tok);
            cJSON *eph = cJSON_AddArrayToObject(cJSON_AddObjectToObject(jr, "ephemeral"), "events");
            if (r->typing_pos > since || (fresh && r->n_typing))
                cJSON_AddItemToArray(eph, typing_edu(r));
            if (r->receipt_pos > since || (fresh && r->n_receipts))
                cJSON_AddItemToArray(eph, receipt_edu(r));
            cJSON_AddArrayToObject(cJSON_AddObjectToObject(jr, "account_data"), "events");
            cJSON *un = cJSON_AddObjectToObject(jr, "unread_notifications");
            cJSON_AddNumberToObject(un, "notification_count", 0);
            cJSON_AddNumberToObject(un, "highlight_count", 0);
            if (fresh || cJSON_GetArraySize(tle) || cJSON_GetArraySize(eph)) {
                cJSON_AddItemToObject(join, r->id, jr);
                *any = true;
            } else {
                cJSON_Delete(jr);
            }
        } else if (strcmp(m, "invite") == 0 && mpos > since) {
            cJSON *ir = cJSON_AddObjectToObject(invite, r->id);
            cJSON *evs =
                cJSON_AddArrayToObject(cJSON_AddObjectToObject(ir, "invite_state"), "events");
            const char *types[] = {"m.room.create", "m.room.join_rules",      "m.room.name",
                                   "m.room.avatar", "m.room.canonical_alias", "m.room.encryption"};
            for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
                const cJSON *ev = state_get(r, types[k], "");
                if (ev) cJSON_AddItemToArray(evs, stripped(ev));
            }
            const char *inviter = str_of(mev, "sender");
            const cJSON *iev = inviter ? state_get(r, "m.room.member", inviter) : NULL;
            if (iev) cJSON_AddItemToArray(evs, stripped(iev));
            cJSON *me = stripped(mev);
            cJSON_AddStringToObject(me, "event_id", str_of(mev, "event_id"));
            cJSON_AddItemToArray(evs, me);
            *any = true;
        } else if (since > 0 && mpos > since) { /* left / kicked / banned since */
            cJSON *lr = cJSON_AddObjectToObject(leave, r->id);
            cJSON_AddArrayToObject(cJSON_AddObjectToObject(lr, "state"), "events");
            cJSON *tl = cJSON_AddObjectToObject(lr, "timeline");
            cJSON *tle = cJSON_AddArrayToObject(tl, "events");
            for (size_t i = 0; i < r->n_events; i++)
                if (r->events[i].pos > since && r->events[i].pos <= mpos)
                    cJSON_AddItemToArray(tle, client_event(&r->events[i], txn_key));
            cJSON_AddBoolToObject(tl, "limited", 0);
            *any = true;
        }
    }
    cJSON *pres = cJSON_AddArrayToObject(cJSON_AddObjectToObject(o, "presence"), "events");
    for (size_t i = 0; i < G.n_users; i++) {
        hs_user *u = &G.users[i];
        if (!u->presence || u->presence_pos <= since) continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "type", "m.presence");
        cJSON_AddStringToObject(e, "sender", u->id);
        cJSON *c = cJSON_AddObjectToObject(e, "content");
        cJSON_AddStringToObject(c, "presence", u->presence);
        if (u->status_msg) cJSON_AddStringToObject(c, "status_msg", u->status_msg);
        cJSON_AddNumberToObject(c, "last_active_ago", (double)(hs_now_ms() - u->presence_ts));
        cJSON_AddItemToArray(pres, e);
        *any = true;
    }
    cJSON_AddArrayToObject(cJSON_AddObjectToObject(o, "account_data"), "events");
    cJSON_AddArrayToObject(cJSON_AddObjectToObject(o, "to_device"), "events");
    cJSON_AddObjectToObject(o, "device_one_time_keys_count");
    char tok[32];
    snprintf(tok, sizeof tok, "s%lld", (long long)G.pos);
    cJSON_AddStringToObject(o, "next_batch", tok);
    return o;
}

static void h_sync(hreq *rq, hres *rs)
{
    const char *since_s = query(rq, "since");
    int64_t since = since_s ? parse_token(since_s) : 0;
    if (since < 0) {
        reply_err(rs, 400, "M_INVALID_PARAM", "Invalid since token");
        return;
    }
    const char *to_s = query(rq, "timeout");
    long timeout = to_s ? strtol(to_s, NULL, 10) : 0;
    if (timeout < 0) timeout = 0;
    if (timeout > 60000) timeout = 60000;
    int64_t deadline = hs_mono_ms() + timeout;
    uint64_t epoch = G.epoch;
    for (;;) {
        bool any;
        cJSON *o = build_sync(rq->user_id, rq->txn_key, since, &any);
        int64_t left = deadline - hs_mono_ms();
        if (any || since == 0 || left <= 0 || G.quit || G.epoch != epoch || G.restarting) {
            reply_json(rs, 200, o);
            return;
        }
        cJSON_Delete(o);
        int64_t pos = G.pos;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long w = left > 200 ? 200 : (long)left; /* wake up regularly (typing expiry, shutdown) */
        ts.tv_nsec += w * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        while (G.pos == pos && !G.quit && G.epoch == epoch && !G.restarting &&
               pthread_cond_timedwait(&G.cv, &G.mu, &ts) == 0) {
        }
    }
}

/* ---- presence, profile ---- */

static void h_presence(hreq *rq, hres *rs, const char *user)
{
    hs_user *u = find_user(user);
    if (!u) {
        reply_err(rs, 404, "M_NOT_FOUND", "Unknown user");
        return;
    }
    if (strcmp(rq->method, "GET") == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "presence", u->presence ? u->presence : "offline");
        if (u->status_msg) cJSON_AddStringToObject(o, "status_msg", u->status_msg);
        if (u->presence)
            cJSON_AddNumberToObject(o, "last_active_ago", (double)(hs_now_ms() - u->presence_ts));
        reply_json(rs, 200, o);
        return;
    }
    if (strcmp(user, rq->user_id) != 0) {
        reply_err(rs, 403, "M_FORBIDDEN", "Can only set your own presence");
        return;
    }
    cJSON *b = body_json(rq, rs);
    if (!b) return;
    const char *p = str_of(b, "presence");
    if (!p ||
        (strcmp(p, "online") != 0 && strcmp(p, "offline") != 0 && strcmp(p, "unavailable") != 0)) {
        reply_err(rs, 400, "M_INVALID_PARAM", "Invalid presence state");
    } else {
        free(u->presence);
        free(u->status_msg);
        u->presence = xstrdup(p);
        u->status_msg = xstrdup(str_of(b, "status_msg"));
        u->presence_pos = ++G.pos;
        u->presence_ts = hs_now_ms();
        cJSON *edu = cJSON_CreateObject();
        cJSON_AddStringToObject(edu, "type", "m.presence");
        cJSON_AddStringToObject(edu, "sender", u->id);
        cJSON *c = cJSON_AddObjectToObject(edu, "content");
        cJSON_AddStringToObject(c, "presence", p);
        if (u->status_msg) cJSON_AddStringToObject(c, "status_msg", u->status_msg);
        hs_as_offer_ephemeral(NULL, edu);
        cJSON_Delete(edu);
        pthread_cond_broadcast(&G.cv);
        reply_empty(rs);
    }
    cJSON_Delete(b);
}

static void h_profile(hreq *rq, hres *rs, const char *user, const char *field)
{
    hs_user *u = find_user(user);
    if (!u) {
        reply_err(rs, 404, "M_NOT_FOUND", "Profile was not found");
        return;
    }
    if (field && strcmp(field, "displayname") != 0 && strcmp(field, "avatar_url") != 0) {
        reply_err(rs, 404, "M_UNRECOGNIZED", "Unknown profile field");
        return;
    }
    if (strcmp(rq->method, "GET") == 0) {
        cJSON *o = cJSON_CreateObject();
        if (u->displayname && (!field || strcmp(field, "displayname") == 0))
            cJSON_AddStringToObject(o, "displayname", u->displayname);
        if (u->avatar_url && (!field || strcmp(field, "avatar_url") == 0))
            cJSON_AddStringToObject(o, "avatar_url", u->avatar_url);
        reply_json(rs, 200, o);
        return;
    }
    if (!field || strcmp(rq->method, "PUT") != 0) {
        reply_err(rs, 405, "M_UNRECOGNIZED", "Method not allowed");
        return;
    }
    if (!rq->user_id) {
        reply_err(rs, 401, "M_MISSING_TOKEN", "Missing access token.");
        return;
    }
    if (strcmp(user, rq->user_id) != 0) {
        reply_err(rs, 403, "M_FORBIDDEN", "Cannot set another user's profile");
        return;
    }
    cJSON *b = body_json(rq, rs);
    if (!b) return;
    const char *v = str_of(b, field);
    if (!v) {
        reply_err(rs, 400, "M_BAD_JSON", "Missing field");
    } else {
        char **slot = strcmp(field, "displayname") == 0 ? &u->displayname : &u->avatar_url;
        free(*slot);
        *slot = xstrdup(v);
        /* like Synapse: a new member event in every joined room */
        for (size_t i = 0; i < G.n_rooms; i++)
            if (is_member(&G.rooms[i], user, "join"))
                room_append(&G.rooms[i], user, "m.room.member", user, member_content("join", user),
                            0);
        reply_empty(rs);
    }
    cJSON_Delete(b);
}

/* ---- media ---- */

static void h_upload(hreq *rq, hres *rs)
{
    HS_GROW(G.media, G.n_media, G.cap_media);
    hs_media *m = &G.media[G.n_media++];
    char hex[25];
    hs_random_hex(hex, 12);
    m->id = xstrdup(hex);
    const char *ct = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Content-Type");
    m->content_type = xstrdup(ct ? ct : "application/octet-stream");
    m->filename = xstrdup(query(rq, "filename"));
    m->len = rq->body.len;
    m->data = malloc(m->len ? m->len : 1);
    if (!m->data) abort();
    if (m->len) memcpy(m->data, rq->body.data, m->len);
    cJSON *o = cJSON_CreateObject();
    char *uri = hs_strf("mxc://%s/%s", G.server_name, m->id);
    cJSON_AddStringToObject(o, "content_uri", uri);
    free(uri);
    reply_json(rs, 200, o);
}

static void h_download(hreq *rq, hres *rs, const char *server, const char *id)
{
    if (strcmp(server, G.server_name) != 0) {
        reply_err(rs, 404, "M_NOT_FOUND", "Remote media is not available here");
        return;
    }
    for (size_t i = 0; i < G.n_media; i++) {
        hs_media *m = &G.media[i];
        if (strcmp(m->id, id) != 0) continue;
        free(rs->body);
        rs->status = 200;
        rs->body = malloc(m->len ? m->len : 1);
        if (!rs->body) abort();
        if (m->len) memcpy(rs->body, m->data, m->len);
        rs->len = m->len;
        snprintf(rs->ctype, sizeof rs->ctype, "%s", m->content_type);
        return;
    }
    reply_err(rs, 404, "M_NOT_FOUND", "Not found");
}

/* ---- admin API ---- */

static void h_admin(hreq *rq, hres *rs, char **seg, int n)
{
    if (n >= 1 && strcmp(seg[0], "fault") == 0 && strcmp(rq->method, "POST") == 0) {
        cJSON *b = body_json(rq, rs);
        if (!b) return;
        HS_GROW(G.faults, G.n_faults, G.cap_faults);
        hs_fault *f = &G.faults[G.n_faults++];
        memset(f, 0, sizeof *f);
        const char *match = str_of(b, "match");
        f->match = xstrdup(match ? match : "");
        f->method = xstrdup(str_of(b, "method"));
        const cJSON *v;
        f->count = cJSON_IsNumber(v = cJSON_GetObjectItem(b, "count")) ? v->valueint : 1;
        f->status = cJSON_IsNumber(v = cJSON_GetObjectItem(b, "status")) ? v->valueint : 0;
        f->errcode = xstrdup(str_of(b, "errcode"));
        f->retry_after_ms =
            cJSON_IsNumber(v = cJSON_GetObjectItem(b, "retry_after_ms")) ? (long)v->valuedouble : 0;
        f->retry_after_s =
            cJSON_IsNumber(v = cJSON_GetObjectItem(b, "retry_after_s")) ? (long)v->valuedouble : 0;
        f->delay_ms =
            cJSON_IsNumber(v = cJSON_GetObjectItem(b, "delay_ms")) ? (long)v->valuedouble : 0;
        f->after = cJSON_IsTrue(cJSON_GetObjectItem(b, "after"));
        f->close = cJSON_IsTrue(cJSON_GetObjectItem(b, "close"));
        cJSON_Delete(b);
        reply_empty(rs);
    } else if (n >= 1 && strcmp(seg[0], "clear") == 0) {
        for (size_t i = 0; i < G.n_faults; i++)
            G.faults[i].count = 0;
        reply_empty(rs);
    } else if (n >= 1 && strcmp(seg[0], "refuse") == 0) {
        cJSON *b = body_json(rq, rs);
        if (!b) return;
        const cJSON *v = cJSON_GetObjectItem(b, "ms");
        G.refuse_ms = cJSON_IsNumber(v) && v->valuedouble > 0 ? (long)v->valuedouble : 1000;
        pthread_cond_signal(&G.main_cv);
        cJSON_Delete(b);
        reply_empty(rs);
    } else if (n >= 1 && strcmp(seg[0], "config") == 0) {
        cJSON *b = body_json(rq, rs);
        if (!b) return;
        const cJSON *v;
        if (cJSON_IsBool(v = cJSON_GetObjectItem(b, "auth_media"))) G.auth_media = cJSON_IsTrue(v);
        if (cJSON_IsNumber(v = cJSON_GetObjectItem(b, "push_backoff_ms")))
            G.push_backoff_ms = (long)v->valuedouble;
        cJSON_Delete(b);
        reply_empty(rs);
    } else if (n >= 1 && strcmp(seg[0], "stats") == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "requests", (double)G.requests);
        cJSON_AddNumberToObject(o, "faults_applied", (double)G.faults_applied);
        cJSON_AddNumberToObject(o, "send_repeats",
                                (double)__atomic_load_n(&G.send_repeats, __ATOMIC_RELAXED));
        cJSON_AddNumberToObject(o, "push_attempts", (double)G.push_attempts);
        cJSON_AddNumberToObject(o, "push_ok", (double)G.push_ok);
        cJSON_AddNumberToObject(o, "push_events", (double)G.push_events);
        cJSON_AddNumberToObject(o, "push_queued", (double)hs_as_queued());
        cJSON_AddNumberToObject(o, "rooms", (double)G.n_rooms);
        cJSON_AddNumberToObject(o, "users", (double)G.n_users);
        cJSON_AddNumberToObject(o, "media", (double)G.n_media);
        reply_json(rs, 200, o);
    } else if (n >= 3 && strcmp(seg[0], "rooms") == 0 && strcmp(seg[2], "timing") == 0) {
        /* when each event was stored and when its appservice push began (monotonic us, the
         * clock wa-sim uses too): what the benchmarks take the bridge's own latency from */
        hs_room *r = room_for(rs, seg[1]);
        if (!r) return;
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "events");
        for (size_t i = 0; i < r->n_events; i++) {
            const cJSON *ev = r->events[i].ev;
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "event_id", str_of(ev, "event_id"));
            cJSON_AddStringToObject(t, "sender", str_of(ev, "sender"));
            cJSON_AddStringToObject(t, "type", str_of(ev, "type"));
            const char *body = str_of(cJSON_GetObjectItemCaseSensitive(ev, "content"), "body");
            if (body) cJSON_AddStringToObject(t, "body", body);
            cJSON_AddNumberToObject(t, "rx_us", (double)r->events[i].rx_us);
            cJSON_AddNumberToObject(t, "push_us", (double)r->events[i].push_us);
            cJSON_AddItemToArray(arr, t);
        }
        reply_json(rs, 200, o);
    } else if (n >= 3 && strcmp(seg[0], "rooms") == 0 && strcmp(seg[2], "events") == 0) {
        hs_room *r = room_for(rs, seg[1]);
        if (!r) return;
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "events");
        for (size_t i = 0; i < r->n_events; i++)
            cJSON_AddItemToArray(arr, cJSON_Duplicate(r->events[i].ev, 1));
        reply_json(rs, 200, o);
    } else {
        reply_err(rs, 404, "M_UNRECOGNIZED", "Unknown admin request");
    }
}

/* ---- routing ---- */

static int split(char *p, char **seg)
{
    int n = 0;
    while (*p && n < HS_MAX_SEG) {
        seg[n++] = p;
        char *s = strchr(p, '/');
        if (!s) break;
        *s = '\0';
        p = s + 1;
        if (!*p) seg[n++] = p; /* keep a trailing empty segment (state key "") */
    }
    return n;
}

static bool is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* The spec's predefined (server-default) push rules, "Predefined Rules" in the client-server API
 * (v1.11): what GET /pushrules/ answers for a user who changed none. "$user_id" and "$localpart"
 * stand for the user's own. */
static const char DEFAULT_PUSH_RULES[] =
    "{\"override\":["
    "{\"rule_id\":\".m.rule.master\",\"default\":true,\"enabled\":false,\"conditions\":[],"
    "\"actions\":[]},"
    "{\"rule_id\":\".m.rule.suppress_notices\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_match\",\"key\":\"content.msgtype\",\"pattern\":\"m.notice\"}],"
    "\"actions\":[]},"
    "{\"rule_id\":\".m.rule.invite_for_me\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_match\",\"key\":\"type\",\"pattern\":\"m.room.member\"},"
    "{\"kind\":\"event_match\",\"key\":\"content.membership\",\"pattern\":\"invite\"},"
    "{\"kind\":\"event_match\",\"key\":\"state_key\",\"pattern\":\"$user_id\"}],"
    "\"actions\":[\"notify\",{\"set_tweak\":\"sound\",\"value\":\"default\"}]},"
    "{\"rule_id\":\".m.rule.member_event\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_match\",\"key\":\"type\",\"pattern\":\"m.room.member\"}],\"actions\":[]},"
    "{\"rule_id\":\".m.rule.is_user_mention\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_property_contains\",\"key\":\"content.m\\\\.mentions.user_ids\","
    "\"value\":\"$user_id\"}],"
    "\"actions\":[\"notify\",{\"set_tweak\":\"sound\",\"value\":\"default\"},"
    "{\"set_tweak\":\"highlight\"}]},"
    "{\"rule_id\":\".m.rule.contains_display_name\",\"default\":true,\"enabled\":true,"
    "\"conditions\":["
    "{\"kind\":\"contains_display_name\"}],\"actions\":[\"notify\",{\"set_tweak\":\"sound\","
    "\"value\":\"default\"},{\"set_tweak\":\"highlight\"}]},"
    "{\"rule_id\":\".m.rule.is_room_mention\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_property_is\",\"key\":\"content.m\\\\.mentions.room\",\"value\":true},"
    "{\"kind\":\"sender_notification_permission\",\"key\":\"room\"}],"
    "\"actions\":[\"notify\",{\"set_tweak\":\"highlight\"}]},"
    "{\"rule_id\":\".m.rule.roomnotif\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_match\",\"key\":\"content.body\",\"pattern\":\"@room\"},"
    "{\"kind\":\"sender_notification_permission\",\"key\":\"room\"}],"
    "\"actions\":[\"notify\",{\"set_tweak\":\"highlight\"}]},"
    "{\"rule_id\":\".m.rule.tombstone\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_match\",\"key\":\"type\",\"pattern\":\"m.room.tombstone\"},"
    "{\"kind\":\"event_match\",\"key\":\"state_key\",\"pattern\":\"\"}],"
    "\"actions\":[\"notify\",{\"set_tweak\":\"highlight\"}]},"
    "{\"rule_id\":\".m.rule.reaction\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_match\",\"key\":\"type\",\"pattern\":\"m.reaction\"}],\"actions\":[]},"
    "{\"rule_id\":\".m.rule.room.server_acl\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_match\",\"key\":\"type\",\"pattern\":\"m.room.server_acl\"},"
    "{\"kind\":\"event_match\",\"key\":\"state_key\",\"pattern\":\"\"}],\"actions\":[]},"
    "{\"rule_id\":\".m.rule.suppress_edits\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_property_is\",\"key\":\"content.m\\\\.relates_to.rel_type\","
    "\"value\":\"m.replace\"}],\"actions\":[]}],"
    "\"content\":["
    "{\"rule_id\":\".m.rule.contains_user_name\",\"default\":true,\"enabled\":true,"
    "\"pattern\":\"$localpart\","
    "\"actions\":[\"notify\",{\"set_tweak\":\"sound\",\"value\":\"default\"},"
    "{\"set_tweak\":\"highlight\"}]}],"
    "\"room\":[],\"sender\":[],"
    "\"underride\":["
    "{\"rule_id\":\".m.rule.call\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_match\",\"key\":\"type\",\"pattern\":\"m.call.invite\"}],"
    "\"actions\":[\"notify\",{\"set_tweak\":\"sound\",\"value\":\"ring\"}]},"
    "{\"rule_id\":\".m.rule.encrypted_room_one_to_one\",\"default\":true,\"enabled\":true,"
    "\"conditions\":[{\"kind\":\"room_member_count\",\"is\":\"2\"},"
    "{\"kind\":\"event_match\",\"key\":\"type\",\"pattern\":\"m.room.encrypted\"}],"
    "\"actions\":[\"notify\",{\"set_tweak\":\"sound\",\"value\":\"default\"}]},"
    "{\"rule_id\":\".m.rule.room_one_to_one\",\"default\":true,\"enabled\":true,"
    "\"conditions\":[{\"kind\":\"room_member_count\",\"is\":\"2\"},"
    "{\"kind\":\"event_match\",\"key\":\"type\",\"pattern\":\"m.room.message\"}],"
    "\"actions\":[\"notify\",{\"set_tweak\":\"sound\",\"value\":\"default\"}]},"
    "{\"rule_id\":\".m.rule.message\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_match\",\"key\":\"type\",\"pattern\":\"m.room.message\"}],"
    "\"actions\":[\"notify\"]},"
    "{\"rule_id\":\".m.rule.encrypted\",\"default\":true,\"enabled\":true,\"conditions\":["
    "{\"kind\":\"event_match\",\"key\":\"type\",\"pattern\":\"m.room.encrypted\"}],"
    "\"actions\":[\"notify\"]}]}";

/* Replaces the string values "$user_id" and "$localpart" anywhere under item. */
static void push_rules_fill(cJSON *item, const char *user_id, const char *localpart)
{
    for (cJSON *c = item->child; c; c = c->next) {
        if (cJSON_IsString(c) && strcmp(c->valuestring, "$user_id") == 0)
            cJSON_SetValuestring(c, user_id);
        else if (cJSON_IsString(c) && strcmp(c->valuestring, "$localpart") == 0)
            cJSON_SetValuestring(c, localpart);
        else
            push_rules_fill(c, user_id, localpart);
    }
}

/* The ruleset (override, content, room, sender, underride) of user_id; the caller owns it. */
static cJSON *default_push_rules(const char *user_id)
{
    cJSON *set = cJSON_Parse(DEFAULT_PUSH_RULES);
    if (!set) abort(); /* a constant: cannot fail but for memory */
    const char *colon = strchr(user_id, ':');
    size_t n = colon ? (size_t)(colon - user_id - 1) : strlen(user_id + 1);
    char *localpart = hs_strf("%.*s", (int)n, user_id + 1);
    push_rules_fill(set, user_id, localpart);
    free(localpart);
    return set;
}

/* Client API (after /_matrix/client/<version>/), lock held. */
static void route_client(hreq *rq, hres *rs, char **seg, int n)
{
    const char *M = rq->method;
    if (n >= 1 && is(seg[0], "register") && is(M, "POST")) return h_register(rq, rs);
    if (n >= 1 && is(seg[0], "login")) return h_login(rq, rs);
    if (n >= 1 && is(seg[0], "profile") && n >= 2 && is(M, "GET"))
        return h_profile(rq, rs, seg[1], n >= 3 ? seg[2] : NULL);
    if (n >= 2 && is(seg[0], "directory") && is(seg[1], "room") && n >= 3) {
        const char *rid = resolve_alias(seg[2]);
        if (!rid) return reply_err(rs, 404, "M_NOT_FOUND", "Room alias not found");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "room_id", rid);
        cJSON_AddItemToObject(o, "servers",
                              cJSON_CreateStringArray((const char *[]){G.server_name}, 1));
        return reply_json(rs, 200, o);
    }
    if (!authenticate(rq, rs)) return;
    if (n >= 2 && is(seg[0], "account") && is(seg[1], "whoami")) return h_whoami(rq, rs);
    if (n >= 1 && is(seg[0], "logout")) {
        /* the token just authenticated is the request's txn_key (not for the as_token) */
        for (size_t i = 0; !rq->is_as && i < G.n_tokens; i++)
            if (strcmp(G.tokens[i].token, rq->txn_key) == 0) G.tokens[i].token[0] = '\0';
        return reply_empty(rs);
    }
    if (n >= 1 && is(seg[0], "capabilities")) {
        cJSON *o = cJSON_CreateObject();
        cJSON *c = cJSON_AddObjectToObject(o, "capabilities");
        cJSON *rv = cJSON_AddObjectToObject(c, "m.room_versions");
        cJSON_AddStringToObject(rv, "default", "10");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(rv, "available"), "10", "stable");
        return reply_json(rs, 200, o);
    }
    if (n >= 1 && is(seg[0], "pushrules")) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "global", default_push_rules(rq->user_id));
        return reply_json(rs, 200, o);
    }
    if (n >= 3 && is(seg[0], "user") && is(seg[2], "filter")) {
        if (is(M, "POST")) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "filter_id", "0");
            return reply_json(rs, 200, o);
        }
        return reply_empty(rs);
    }
    if (n >= 3 && is(seg[0], "user") && (is(seg[2], "account_data") || is(seg[2], "rooms"))) {
        if (is(M, "GET")) return reply_err(rs, 404, "M_NOT_FOUND", "Account data not found");
        return reply_empty(rs);
    }
    if (n >= 2 && is(seg[0], "voip") && is(seg[1], "turnServer")) return reply_empty(rs);
    if (n >= 1 && is(seg[0], "joined_rooms")) {
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "joined_rooms");
        for (size_t i = 0; i < G.n_rooms; i++)
            if (is_member(&G.rooms[i], rq->user_id, "join"))
                cJSON_AddItemToArray(arr, cJSON_CreateString(G.rooms[i].id));
        return reply_json(rs, 200, o);
    }
    if (n >= 1 && is(seg[0], "sync") && is(M, "GET")) return h_sync(rq, rs);
    if (n >= 1 && is(seg[0], "createRoom") && is(M, "POST")) return h_create_room(rq, rs);
    if (n >= 2 && is(seg[0], "join") && is(M, "POST")) return h_join(rq, rs, seg[1]);
    if (n >= 3 && is(seg[0], "presence") && is(seg[2], "status")) return h_presence(rq, rs, seg[1]);
    if (n >= 2 && is(seg[0], "profile")) return h_profile(rq, rs, seg[1], n >= 3 ? seg[2] : NULL);
    if (n >= 3 && is(seg[0], "rooms")) {
        const char *a = seg[2];
        if (is(a, "join") && is(M, "POST")) return h_join(rq, rs, seg[1]);
        hs_room *r = room_for(rs, seg[1]);
        if (!r) return;
        if ((is(a, "invite") || is(a, "leave") || is(a, "kick") || is(a, "ban")) && is(M, "POST"))
            return h_membership(rq, rs, r, a);
        if (is(a, "state")) return h_state(rq, rs, r, n >= 4 ? seg[3] : NULL, n >= 5 ? seg[4] : "");
        if (is(a, "send") && n >= 5 && is(M, "PUT")) return h_send(rq, rs, r, seg[3], seg[4]);
        if (is(a, "redact") && n >= 5 && is(M, "PUT")) return h_redact(rq, rs, r, seg[3], seg[4]);
        if (is(a, "typing") && n >= 4 && is(M, "PUT")) return h_typing(rq, rs, r, seg[3]);
        if (is(a, "receipt") && n >= 5 && is(M, "POST"))
            return h_receipt(rq, rs, r, seg[3], seg[4]);
        if (is(a, "read_markers") && is(M, "POST")) return reply_empty(rs);
        if (is(a, "messages") && is(M, "GET")) return h_messages(rq, rs, r);
        if (is(a, "members") && is(M, "GET")) return h_members(rq, rs, r, false);
        if (is(a, "joined_members") && is(M, "GET")) return h_members(rq, rs, r, true);
        if (is(a, "event") && n >= 4 && is(M, "GET")) {
            hs_event *e = find_event(r, seg[3]);
            if (!e) return reply_err(rs, 404, "M_NOT_FOUND", "Event not found");
            return reply_json(rs, 200, client_event(e, rq->txn_key));
        }
    }
    reply_err(rs, 404, "M_UNRECOGNIZED", "Unrecognized request");
}

/* Everything but the ping (which calls out), lock held. */
static void route(hreq *rq, hres *rs, char *path)
{
    char *seg[HS_MAX_SEG];
    static const char *client_prefixes[] = {"/_matrix/client/v3/", "/_matrix/client/r0/",
                                            "/_matrix/client/unstable/", "/_matrix/client/v1/"};
    if (strncmp(path, "/_hssim/", 8) == 0) {
        int n = split(path + 8, seg);
        return h_admin(rq, rs, seg, n);
    }
    if (is(path, "/_matrix/client/versions")) return h_versions(rq, rs);
    bool media_v3 = strncmp(path, "/_matrix/media/v3/", 18) == 0 ||
                    strncmp(path, "/_matrix/media/r0/", 18) == 0;
    bool media_v1 = strncmp(path, "/_matrix/client/v1/media/", 25) == 0;
    if (media_v3 || media_v1) {
        int n = split(path + (media_v3 ? 18 : 25), seg);
        if (media_v1 && !G.auth_media)
            return reply_err(rs, 404, "M_UNRECOGNIZED", "Unrecognized request");
        if (n >= 1 && is(seg[0], "config")) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "m.upload.size", HS_MAX_BODY);
            return reply_json(rs, 200, o);
        }
        if (n >= 1 && is(seg[0], "upload") && is(rq->method, "POST")) {
            if (!authenticate(rq, rs)) return;
            return h_upload(rq, rs);
        }
        if (n >= 3 && is(seg[0], "download") && is(rq->method, "GET")) {
            if (media_v1 && !authenticate(rq, rs)) return;
            return h_download(rq, rs, seg[1], seg[2]);
        }
        return reply_err(rs, 404, "M_UNRECOGNIZED", "Unrecognized request");
    }
    for (size_t i = 0; i < sizeof client_prefixes / sizeof client_prefixes[0]; i++) {
        size_t l = strlen(client_prefixes[i]);
        if (strncmp(path, client_prefixes[i], l) == 0) {
            int n = split(path + l, seg);
            return route_client(rq, rs, seg, n);
        }
    }
    reply_err(rs, 404, "M_UNRECOGNIZED", "Unrecognized request");
}

/* POST /_matrix/client/v1/appservice/{id}/ping: authenticated by as_token; calls the AS. */
static bool try_ping(hreq *rq, hres *rs, const char *path)
{
    static const char pre[] = "/_matrix/client/v1/appservice/";
    if (strncmp(path, pre, sizeof pre - 1) != 0) return false;
    const char *id = path + sizeof pre - 1;
    const char *slash = strchr(id, '/');
    if (!slash || strcmp(slash, "/ping") != 0) return false;
    pthread_mutex_lock(&G.mu);
    bool ok = authenticate(rq, rs);
    const hs_appservice *as = ok ? rq->as : NULL;
    bool right =
        as && strncmp(as->reg.id, id, (size_t)(slash - id)) == 0 && as->reg.id[slash - id] == '\0';
    pthread_mutex_unlock(&G.mu);
    if (!ok) return true;
    if (!right) {
        reply_err(rs, 403, "M_FORBIDDEN", "Provided access token is not the appservice's");
        return true;
    }
    if (!as->pushes) {
        reply_err(rs, 400, "M_URL_NOT_SET", "Application service has no URL");
        return true;
    }
    cJSON *b = body_json(rq, rs);
    if (!b) return true;
    long duration = 0;
    long st = hs_as_ping(as, str_of(b, "transaction_id"), &duration);
    cJSON_Delete(b);
    if (st == 200) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "duration_ms", (double)duration);
        reply_json(rs, 200, o);
    } else if (st == 0) {
        reply_err(rs, 502, "M_CONNECTION_FAILED", "Connection to the application service failed");
    } else {
        reply_err(rs, 502, "M_BAD_STATUS", "Application service returned an error status");
    }
    return true;
}

/* ---- libmicrohttpd glue ---- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    hreq *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        wb_buf_init(&rq->body);
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (rq->body.len + *upload_data_size > HS_MAX_BODY) rq->too_large = true;
        if (!rq->too_large) wb_buf_append(&rq->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    rq->conn = c;
    rq->method = method;
    rq->url = url;
    hres rs = {0};
    bool admin = strncmp(url, "/_hssim/", 8) == 0;
    hs_fault f = {0};
    bool faulted = false;
    pthread_mutex_lock(&G.mu);
    G.requests++;
    if (!admin) faulted = take_fault(method, url, &f);
    pthread_mutex_unlock(&G.mu);
    if (faulted && f.close) return MHD_NO;
    if (faulted && !f.after && f.delay_ms) hs_sleep_ms(f.delay_ms);
    if (faulted && f.status) {
        cJSON *o = cJSON_CreateObject();
        const char *ec = f.errcode ? f.errcode : f.status == 429 ? "M_LIMIT_EXCEEDED" : "M_UNKNOWN";
        cJSON_AddStringToObject(o, "errcode", ec);
        cJSON_AddStringToObject(o, "error", "injected fault");
        if (f.status == 429 && f.retry_after_ms)
            cJSON_AddNumberToObject(o, "retry_after_ms", (double)f.retry_after_ms);
        reply_json(&rs, f.status, o);
    } else if (rq->too_large) {
        reply_err(&rs, 413, "M_TOO_LARGE", "Request too large");
    } else {
        char *path = xstrdup(url);
        if (!try_ping(rq, &rs, path)) {
            pthread_mutex_lock(&G.mu);
            route(rq, &rs, path);
            pthread_mutex_unlock(&G.mu);
        }
        free(path);
        if (faulted && f.after && f.delay_ms) hs_sleep_ms(f.delay_ms);
    }
    if (G.verbose) fprintf(stderr, "hs-sim: %s %s -> %d\n", method, url, rs.status);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(rs.len, rs.body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(rs.body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", rs.ctype[0] ? rs.ctype : "application/json");
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    if (faulted && f.status == 429 && f.retry_after_s) {
        char ra[24];
        snprintf(ra, sizeof ra, "%ld", f.retry_after_s);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)rs.status, r);
    MHD_destroy_response(r);
    return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    hreq *rq = *con_cls;
    if (!rq) return;
    wb_buf_free(&rq->body);
    free(rq->user_id);
    free(rq->txn_key);
    free(rq);
    *con_cls = NULL;
}

static struct MHD_Daemon *start_daemon(uint16_t port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_CONNECTION_TIMEOUT, 120u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
}

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    int sig;
    sigwait(set, &sig);
    pthread_mutex_lock(&G.mu);
    G.quit = true;
    pthread_cond_broadcast(&G.cv);
    pthread_cond_broadcast(&G.push_cv);
    pthread_cond_signal(&G.main_cv);
    pthread_mutex_unlock(&G.mu);
    return NULL;
}

static int load_registration(const char *path)
{
    if (G.n_as == HS_MAX_AS) {
        fprintf(stderr, "hs-sim: at most %d registrations\n", HS_MAX_AS);
        return -1;
    }
    hs_appservice *as = &G.as[G.n_as];
    memset(as, 0, sizeof *as);
    if (mx_registration_load(path, &as->reg) != 0) {
        fprintf(stderr, "hs-sim: cannot read registration %s\n", path);
        return -1;
    }
    for (size_t i = 0; i < G.n_as; i++) {
        if (strcmp(G.as[i].reg.id, as->reg.id) == 0 ||
            strcmp(G.as[i].reg.as_token, as->reg.as_token) == 0) {
            fprintf(stderr, "hs-sim: registration %s: id or as_token used twice\n", path);
            return -1;
        }
    }
    for (size_t i = 0; i < as->reg.n_users && as->n_user_re < HS_MAX_REGEX; i++) {
        if (regcomp(&as->user_re[as->n_user_re], as->reg.users[i].regex,
                    REG_EXTENDED | REG_NOSUB) != 0) {
            fprintf(stderr, "hs-sim: bad namespace regex %s\n", as->reg.users[i].regex);
            return -1;
        }
        as->user_exclusive[as->n_user_re] = as->reg.users[i].exclusive;
        as->n_user_re++;
    }
    as->pushes = as->reg.url && as->reg.url[0];
    as->bot_id = hs_strf("@%s:%s", as->reg.sender_localpart, G.server_name);
    as->queue = cJSON_CreateArray();
    as->eph = cJSON_CreateArray();
    /* like Synapse's persisted counter: txnIds never repeat across hs-sim runs */
    as->txn = (uint64_t)hs_now_ms() * 1000;
    if (!find_user(as->bot_id)) add_user(as->bot_id, NULL);
    G.n_as++;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: hs-sim [-v] [--push-backoff-ms N] [--legacy-push] [--no-prev-content] "
                    "<port|0> <server_name> [registration.yaml|- [more-registration.yaml...]]\n");
}

int main(int argc, char **argv)
{
    const char *pos[2 + HS_MAX_AS] = {NULL};
    int npos = 0;
    pthread_mutex_init(&G.mu, NULL);
    pthread_cond_init(&G.cv, NULL);
    pthread_cond_init(&G.push_cv, NULL);
    pthread_cond_init(&G.main_cv, NULL);
    G.auth_media = true;
    G.push_backoff_ms = 100;
    G.push_backoff_max_ms = 5000;
    for (int i = 1; i < argc; i++) {
        if (is(argv[i], "-v")) {
            G.verbose = true;
        } else if (is(argv[i], "--legacy-push")) {
            G.legacy_push = true;
        } else if (is(argv[i], "--no-prev-content")) {
            G.no_prev_content = true;
        } else if (is(argv[i], "--push-backoff-ms") && i + 1 < argc) {
            G.push_backoff_ms = strtol(argv[++i], NULL, 10);
            if (G.push_backoff_ms <= 0) G.push_backoff_ms = 1;
        } else if (npos < 2 + HS_MAX_AS) {
            pos[npos++] = argv[i];
        } else {
            usage();
            return 2;
        }
    }
    if (npos < 2) {
        usage();
        return 2;
    }
    char *end;
    long port = strtol(pos[0], &end, 10);
    if (*end || port < 0 || port > 65535) {
        usage();
        return 2;
    }
    G.server_name = xstrdup(pos[1]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (int i = 2; i < npos; i++)
        if (!is(pos[i], "-") && load_registration(pos[i]) != 0) return 1;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t sig_t;
    pthread_create(&sig_t, NULL, signal_thread, &set);
    for (size_t i = 0; i < G.n_as; i++)
        if (G.as[i].pushes) pthread_create(&G.as[i].pusher, NULL, hs_as_pusher, &G.as[i]);

    struct MHD_Daemon *d = start_daemon((uint16_t)port);
    if (!d) {
        fprintf(stderr, "hs-sim: cannot listen on port %ld\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    uint16_t bound = di ? di->port : (uint16_t)port;
    printf("port %u\n", bound);
    fflush(stdout);

    pthread_mutex_lock(&G.mu);
    while (!G.quit) {
        if (!G.refuse_ms) {
            pthread_cond_wait(&G.main_cv, &G.mu);
            continue;
        }
        long ms = G.refuse_ms;
        G.refuse_ms = 0;
        G.epoch++;
        G.restarting = true; /* until the daemon listens again (a poll may start meanwhile) */
        pthread_cond_broadcast(&G.cv);
        pthread_mutex_unlock(&G.mu);
        hs_sleep_ms(20); /* let the admin answer go out */
        MHD_stop_daemon(d);
        hs_sleep_ms(ms);
        d = NULL;
        for (int tries = 0; tries < 100 && !d; tries++) {
            d = start_daemon(bound);
            if (!d) hs_sleep_ms(50);
        }
        if (!d) {
            fprintf(stderr, "hs-sim: cannot listen again on port %u\n", bound);
            return 1;
        }
        pthread_mutex_lock(&G.mu);
        G.restarting = false;
    }
    pthread_mutex_unlock(&G.mu);
    MHD_stop_daemon(d);
    for (size_t i = 0; i < G.n_as; i++)
        if (G.as[i].pushes) pthread_join(G.as[i].pusher, NULL);
    pthread_join(sig_t, NULL);
    curl_global_cleanup();
    return 0;
}
