/*
 * bridge/bridge.c - the daemon's frame (see bridge.h and bridge_internal.h): start-up and drain,
 * the portal workers' serial queues, the Matrix inbox pump, the lease heartbeat, and the
 * appservice endpoint's callbacks.
 */
#include "bridge/bridge_internal.h"
#include "bridge/mx_ghosts_pg.h"
#include "bridge/mx_txn_pg.h"
#include "db/migrate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PUMP_BATCH     256
#define LEASE_RENEW_MS 20000
#define MOD            "bridge"

int64_t br_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- portal workers ---- */

uint64_t br_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

void br_user_jid(const char *jid, char *out, size_t cap)
{
    wa_jid j;
    out[0] = '\0';
    if (!jid || wa_jid_parse_cstr(jid, &j) != WA_OK) return;
    j.device = 0;
    j.ad = false;
    j.agent = 0;
    wa_jid_format(&j, out, cap);
}

void br_enqueue(br_bridge *b, const char *key, br_job_fn fn, void *arg)
{
    br_pworker *pw = &b->pworkers[br_hash(key) % (uint64_t)b->n_pworkers];
    br_job *j = calloc(1, sizeof(*j));
    if (!j) {
        WB_ERROR(MOD, "out of memory queueing a job for %s", key);
        return;
    }
    j->fn = fn;
    j->arg = arg;
    pthread_mutex_lock(&pw->lock);
    if (pw->tail)
        pw->tail->next = j;
    else
        pw->head = j;
    pw->tail = j;
    pw->depth++;
    pthread_cond_signal(&pw->cond);
    pthread_mutex_unlock(&pw->lock);
}

/* Sends the worker's write-behind (mapping rows, handled inbox rows' deletions) and logs what
 * failed of it since the last time. */
static void pworker_flush(br_pworker *pw)
{
    db_flush(pw->db);
    char last[256];
    uint64_t failures = db_later_failures(pw->db, last, sizeof(last));
    if (failures != pw->later_failures)
        WB_WARN(MOD, "portal worker %d: %llu bookkeeping write(s) failed, the last: %s", pw->index,
                (unsigned long long)(failures - pw->later_failures), last);
    pw->later_failures = failures;
}

static void *pworker_main(void *arg)
{
    br_pworker *pw = arg;
    pthread_mutex_lock(&pw->lock);
    for (;;) {
        br_job *j = pw->head;
        if (!j) {
            /* idle: what the jobs left behind goes out now */
            pthread_mutex_unlock(&pw->lock);
            pworker_flush(pw);
            pthread_mutex_lock(&pw->lock);
            if (pw->head) continue;
            if (atomic_load(&pw->b->workers_exit)) break; /* drained */
            pthread_cond_wait(&pw->cond, &pw->lock);
            continue;
        }
        pw->head = j->next;
        if (!pw->head) pw->tail = NULL;
        pw->depth--;
        pw->busy = true;
        pthread_mutex_unlock(&pw->lock);
        j->fn(pw, j->arg);
        free(j);
        pthread_mutex_lock(&pw->lock);
        pw->busy = false;
    }
    pthread_mutex_unlock(&pw->lock);
    return NULL;
}

/* ---- rooms ----
 * The cache is an array with two open-addressing indexes over it (by room id, by receiver and
 * chat): slots hold array index + 1, 0 = empty; power-of-two sizes at most half full. Entries
 * leave only with a login (br_room_forget_login), which rebuilds both. */

static uint64_t chat_hash(int64_t receiver, const char *chat)
{
    return br_hash(chat) ^ ((uint64_t)receiver * 0x9e3779b97f4a7c15ull);
}

static void rooms_index(br_bridge *b, size_t i)
{
    size_t mask = b->cap_index - 1;
    size_t k = (size_t)br_hash(b->rooms[i].room) & mask;
    while (b->by_room[k])
        k = (k + 1) & mask;
    b->by_room[k] = i + 1;
    k = (size_t)chat_hash(b->rooms[i].receiver, b->rooms[i].chat) & mask;
    while (b->by_chat[k])
        k = (k + 1) & mask;
    b->by_chat[k] = i + 1;
}

/* Rebuilds both indexes for cap_rooms entries; false when out of memory (nothing changed). */
static bool rooms_reindex(br_bridge *b)
{
    size_t cap = 128;
    while (cap < 2 * b->cap_rooms)
        cap *= 2;
    size_t *br = calloc(cap, sizeof(*br)), *bc = calloc(cap, sizeof(*bc));
    if (!br || !bc) {
        free(br);
        free(bc);
        return false;
    }
    free(b->by_room);
    free(b->by_chat);
    b->by_room = br;
    b->by_chat = bc;
    b->cap_index = cap;
    for (size_t i = 0; i < b->n_rooms; i++)
        rooms_index(b, i);
    return true;
}

static br_room_ref *find_room(br_bridge *b, const char *room)
{
    if (!b->cap_index) return NULL;
    size_t mask = b->cap_index - 1;
    for (size_t k = (size_t)br_hash(room) & mask; b->by_room[k]; k = (k + 1) & mask)
        if (strcmp(b->rooms[b->by_room[k] - 1].room, room) == 0)
            return &b->rooms[b->by_room[k] - 1];
    return NULL;
}

static br_room_ref *find_chat(br_bridge *b, int64_t receiver, const char *chat)
{
    if (!b->cap_index) return NULL;
    size_t mask = b->cap_index - 1;
    for (size_t k = (size_t)chat_hash(receiver, chat) & mask; b->by_chat[k]; k = (k + 1) & mask) {
        br_room_ref *r = &b->rooms[b->by_chat[k] - 1];
        if (r->receiver == receiver && strcmp(r->chat, chat) == 0) return r;
    }
    return NULL;
}

void br_room_remember(br_bridge *b, const char *room, const char *chat, int64_t receiver,
                      int64_t portal_id)
{
    pthread_mutex_lock(&b->lock);
    if (find_room(b, room)) {
        pthread_mutex_unlock(&b->lock);
        return;
    }
    if (b->n_rooms == b->cap_rooms) {
        size_t cap = b->cap_rooms ? b->cap_rooms * 2 : 64;
        br_room_ref *r = realloc(b->rooms, cap * sizeof(*r));
        if (!r) {
            pthread_mutex_unlock(&b->lock);
            return;
        }
        b->rooms = r;
        b->cap_rooms = cap;
        if (!rooms_reindex(b)) {
            pthread_mutex_unlock(&b->lock);
            return;
        }
    }
    br_room_ref *r = &b->rooms[b->n_rooms];
    snprintf(r->room, sizeof(r->room), "%s", room);
    snprintf(r->chat, sizeof(r->chat), "%s", chat);
    r->receiver = receiver;
    r->portal_id = portal_id;
    rooms_index(b, b->n_rooms++);
    pthread_mutex_unlock(&b->lock);
}

bool br_room_lookup(br_bridge *b, const char *room, br_room_ref *out)
{
    pthread_mutex_lock(&b->lock);
    const br_room_ref *r = find_room(b, room);
    if (r) *out = *r;
    pthread_mutex_unlock(&b->lock);
    return r != NULL;
}

bool br_room_of_chat(br_bridge *b, int64_t receiver, const char *chat, br_room_ref *out)
{
    pthread_mutex_lock(&b->lock);
    const br_room_ref *r = find_chat(b, receiver, chat);
    if (r) *out = *r;
    pthread_mutex_unlock(&b->lock);
    return r != NULL;
}

void br_room_forget_login(br_bridge *b, int64_t login_id)
{
    pthread_mutex_lock(&b->lock);
    br_room_ref *keep = malloc((b->cap_rooms ? b->cap_rooms : 1) * sizeof(*keep));
    if (keep) { /* (out of memory: the login's rooms stay cached; their login is gone anyway) */
        size_t o = 0, n = b->n_rooms;
        for (size_t i = 0; i < n; i++)
            if (b->rooms[i].receiver != login_id) keep[o++] = b->rooms[i];
        br_room_ref *old = b->rooms;
        b->rooms = keep;
        b->n_rooms = o;
        if (rooms_reindex(b)) {
            free(old);
        } else {
            free(keep);
            b->rooms = old;
            b->n_rooms = n;
        }
    }
    pthread_mutex_unlock(&b->lock);
}

static int load_rooms(br_bridge *b)
{
    db_portal page[128];
    size_t n;
    int64_t after = 0;
    do {
        int rc = db_portal_list(b->db_main, after, page, 128, &n);
        if (rc) return rc;
        for (size_t i = 0; i < n; i++) {
            br_room_remember(b, page[i].mxid, page[i].chat_jid, page[i].receiver_login_id,
                             page[i].id);
            after = page[i].id;
        }
    } while (n == 128);
    return 0;
}

/* ---- helpers for the other files ---- */

void br_notice(br_pworker *pw, const char *room, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "msgtype", "m.notice");
    cJSON_AddStringToObject(c, "body", text);
    mx_error err;
    if (mx_client_send(pw->mx, NULL, room, "m.room.message", c, NULL, 0, NULL, &err) != MX_OK)
        WB_WARN("portal", "notice to %s failed: %s", room, err.error);
    cJSON_Delete(c);
}

bool br_is_ours(br_bridge *b, const char *mxid)
{
    if (!mxid) return false;
    if (strcmp(mxid, b->bot_mxid) == 0) return true;
    const char *colon = strchr(mxid, ':');
    if (mxid[0] != '@' || !colon || strcmp(colon + 1, b->cfg->hs_domain) != 0) return false;
    char local[DB_ID_MAX], id[DB_ID_MAX];
    size_t n = (size_t)(colon - mxid - 1);
    if (n >= sizeof(local)) return false;
    memcpy(local, mxid + 1, n);
    local[n] = '\0';
    return br_config_ghost_id(b->cfg, local, id, sizeof(id));
}

/* ---- the appservice endpoint ---- */

static bool skip_echo(void *arg, const mx_event *e);
static void route_inbox_row(br_bridge *b, db_conn *db, db_inbox_row *row);

/* The events just stored, routed here when every row stored before them has been routed (by
 * the pump or here): one thread hand-off and one read less than the pump. Otherwise (after a
 * start, or the pump is behind) the pump reads them. Called under the endpoint's commit lock,
 * with txn_pg.ids set by the commit. */
static bool route_stored(br_bridge *b, const mx_event_batch *batch)
{
    const br_mx_txn_pg *t = &b->txn_pg;
    bool known = t->nids == batch->count; /* (not when the commit could not keep them) */
    int64_t last = -1;
    for (size_t i = 0; known && i < t->nids; i++)
        if (t->ids[i] > last) last = t->ids[i];
    pthread_mutex_lock(&b->route_lock);
    bool direct = last >= 0 && b->stored_upto >= 0 && b->routed_upto >= b->stored_upto;
    for (size_t i = 0; direct && i < batch->count; i++) {
        const mx_event *e = &batch->events[i];
        if (t->ids[i] < 0) continue; /* skipped, or already in the inbox */
        db_inbox_row row = {.id = t->ids[i]};
        snprintf(row.event_id, sizeof(row.event_id), "%s", e->event_id ? e->event_id : "");
        snprintf(row.room_id, sizeof(row.room_id), "%s", e->room_id ? e->room_id : "");
        row.event_json = strndup(e->json, e->json_len);
        if (!row.event_json) { /* the pump reads the rest */
            direct = false;
            break;
        }
        route_inbox_row(b, b->db_http, &row);
        free(row.event_json);
        b->routed_upto = row.id;
        atomic_fetch_add(&b->stats.mx_direct, 1);
    }
    /* rows of unknown ids: none is routed here until the pump has caught up past a known one */
    if (!known)
        b->stored_upto = -1;
    else if (last >= 0)
        b->stored_upto = last;
    pthread_mutex_unlock(&b->route_lock);
    return direct;
}

/* The endpoint's store: the events' rows committed, not yet durable (txn_pg.on_stored). Routing
 * them now lets their bridging overlap the WAL flush the 200 waits for; a crash before the flush
 * makes the homeserver push them again, and a message bridged twice keeps its WhatsApp id (one
 * message to the receivers) and Matrix transaction id. */
static bool on_stored(void *arg, const mx_event_batch *batch)
{
    return route_stored(arg, batch);
}

static void on_events(void *ctx, const char *txn_id, const mx_event_batch *batch)
{
    br_bridge *b = ctx;
    (void)txn_id;
    /* only our own echoes: nothing was stored, nothing for the pump to read */
    bool stored = false;
    for (size_t i = 0; i < batch->count && !stored; i++)
        stored = !skip_echo(b, &batch->events[i]);
    bool taken = b->txn_pg.taken;
    b->txn_pg.taken = false;
    if (!stored || taken) return;
    pthread_mutex_lock(&b->pump_lock);
    b->pump_wake = true;
    pthread_cond_signal(&b->pump_cond);
    pthread_mutex_unlock(&b->pump_lock);
}

/* What we sent ourselves comes back in every transaction (the bot's and the ghosts' events, and
 * what we sent as double-puppeted users, marked BR_PUPPET_KEY): never bridged, so never stored.
 * Ephemeral events (no event id) always are. */
static bool skip_echo(void *arg, const mx_event *e)
{
    if (e->kind != MX_EVENT_TIMELINE || !e->event_id || !e->sender) return false;
    return br_is_ours(arg, e->sender) || br_puppet_is_echo(arg, e->json, e->json_len);
}

static bool query_user(void *ctx, const char *user_id)
{
    return br_is_ours(ctx, user_id);
}

/* ---- the inbox pump ---- */

/* db: the calling thread's connection */
static void route_inbox_row(br_bridge *b, db_conn *db, db_inbox_row *row)
{
    cJSON *ev = cJSON_Parse(row->event_json);
    if (!ev) {
        WB_WARN(MOD, "inbox row %lld is not JSON: dropped", (long long)row->id);
        db_inbox_delete(db, row->id);
        return;
    }
    br_mx_job *job = calloc(1, sizeof(*job));
    if (!job) {
        cJSON_Delete(ev);
        return;
    }
    job->inbox_id = row->id;
    job->ev = ev;
    char key[DB_ID_MAX + 64];
    br_room_ref ref;
    if (row->room_id[0] && br_room_lookup(b, row->room_id, &ref))
        br_portal_key(ref.receiver, ref.chat, key, sizeof(key));
    else
        snprintf(key, sizeof(key), "room:%s", row->room_id);
    atomic_fetch_add(&b->stats.mx_events, 1);
    br_enqueue(b, key, br_portal_job_mx_event, job);
}

static void *pump_main(void *arg)
{
    br_bridge *b = arg;
    int64_t after = 0;
    db_inbox_row rows[PUMP_BATCH];
    while (!atomic_load(&b->stopping)) {
        size_t n = 0;
        int rc = db_inbox_peek_after(b->db_pump, after, rows, PUMP_BATCH, &n);
        if (rc) {
            WB_WARN(MOD, "reading the Matrix inbox failed: %s", db_conn_error(b->db_pump)->message);
            sleep_ms(1000);
            continue;
        }
        /* rows the endpoint routed meanwhile (route_stored) are not routed again */
        pthread_mutex_lock(&b->route_lock);
        for (size_t i = 0; i < n; i++) {
            if (rows[i].id <= b->routed_upto) continue;
            route_inbox_row(b, b->db_pump, &rows[i]);
            b->routed_upto = rows[i].id;
        }
        if (n) after = rows[n - 1].id;
        if (b->routed_upto > after) after = b->routed_upto;
        pthread_mutex_unlock(&b->route_lock);
        db_inbox_rows_free(rows, n);
        if (n == PUMP_BATCH) continue;
        pthread_mutex_lock(&b->pump_lock);
        if (!b->pump_wake && !atomic_load(&b->stopping)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&b->pump_cond, &b->pump_lock, &ts);
        }
        b->pump_wake = false;
        pthread_mutex_unlock(&b->pump_lock);
    }
    return NULL;
}

static void *lease_main(void *arg)
{
    br_bridge *b = arg;
    int64_t next = br_now_ms() + LEASE_RENEW_MS;
    while (!atomic_load(&b->stopping)) {
        sleep_ms(200);
        br_logins_sweep(b);
        if (br_now_ms() < next) continue;
        next = br_now_ms() + LEASE_RENEW_MS;
        br_logins_resume(b);
    }
    return NULL;
}

/* ---- start / stop ---- */

static int fail(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* async: the portal workers' and the engines' connections. What the portal workers write
 * (message rows, deleting bridged inbox and buffer rows) is replayed idempotently after a crash,
 * so those commits need not wait for the WAL flush. The engines' rows must survive (event buffer,
 * Signal state): their worker's barrier (db_sync) makes them durable before any output or event
 * acts on them, and hold: their transactions of writes travel with that sync (db.h
 * hold_commits). The endpoint's connection (the inbox) too, with a db_sync before each answer. */
static int open_db_opts(const br_config *cfg, db_conn **out, bool async, bool hold, char *err,
                        size_t cap)
{
    db_error e;
    db_conn_opts opts = {
        .reconnect_timeout_ms = 30000, .async_commit = async, .hold_commits = hold};
    if (db_conn_open(cfg->db_uri, &opts, out, &e) != DB_OK)
        return fail(err, cap, "database: cannot connect (database.uri): %s", e.message);
    return 0;
}

static int open_db(const br_config *cfg, db_conn **out, char *err, size_t cap)
{
    return open_db_opts(cfg, out, false, false, err, cap);
}

static mx_client *new_mx(br_bridge *b)
{
    mx_client_config mc = {
        .hs_url = b->cfg->hs_address,
        .as_token = b->cfg->as_token,
        .server_name = b->cfg->hs_domain,
        .bot_localpart = b->cfg->bot_username,
        .puppets = br_puppet_auth(b),
    };
    return mx_client_new(&mc);
}

/* The engine worker's barrier: its connection's commits so far made durable. */
static int engine_barrier(void *arg)
{
    br_engine *e = arg;
    int rc = db_sync(e->db);
    if (rc != DB_OK) {
        e->unsure_until_ms = br_now_ms() + BR_UNSURE_MS;
        WB_WARN(MOD,
                "engine %d: commits not confirmed durable (%s): that batch's acks and "
                "messages are dropped, its connections reopened",
                e->index, db_conn_error(e->db)->message);
    }
    return rc;
}

/* The engine worker's commit: the held writes sent (visible, durable at the barrier), so that the
 * batch's received messages can be bridged while the barrier's flush runs. */
static int engine_commit(void *arg)
{
    br_engine *e = arg;
    int rc = db_send_held(e->db);
    if (rc != DB_OK) e->unsure_until_ms = br_now_ms() + BR_UNSURE_MS;
    return rc;
}

static int cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int br_bridge_start(const br_config *cfg, br_bridge **out, char *err, size_t cap)
{
    *out = NULL;
    br_bridge *b = calloc(1, sizeof(*b));
    if (!b) return fail(err, cap, "out of memory");
    b->cfg = cfg;
    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(b->owner, sizeof(b->owner), "%s:%d", host, (int)getpid());
    snprintf(b->bot_mxid, sizeof(b->bot_mxid), "@%s:%s", cfg->bot_username, cfg->hs_domain);
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->puppet_lock, NULL);
    pthread_mutex_init(&b->pump_lock, NULL);
    pthread_mutex_init(&b->route_lock, NULL);
    b->stored_upto = -1;
    pthread_cond_init(&b->pump_cond, NULL);

    /* database: connect and migrate */
    /* db_http: the endpoint's; each transaction is made durable by db_sync before its 200
     * (bridge/mx_txn_pg.c) */
    if (open_db(cfg, &b->db_main, err, cap) ||
        open_db_opts(cfg, &b->db_http, true, false, err, cap) ||
        open_db(cfg, &b->db_pump, err, cap))
        goto fail;
    db_migrate_report rep;
    if (db_migrate(b->db_main, db_migrations_embedded, db_migrations_embedded_count, &rep) !=
        DB_OK) {
        fail(err, cap, "database: migration failed: %s", db_conn_error(b->db_main)->message);
        goto fail;
    }
    if (rep.applied)
        WB_INFO(MOD, "database migrated from version %d to %d", rep.from_version, rep.to_version);
    int64_t orphans = 0;
    if (db_sweep_orphans(b->db_main, &orphans) != DB_OK)
        WB_WARN(MOD, "database: deleting rows of deleted logins failed: %s",
                db_conn_error(b->db_main)->message);
    else if (orphans)
        WB_INFO(MOD, "database: %lld rows of deleted logins deleted", (long long)orphans);
    if (load_rooms(b)) {
        fail(err, cap, "database: reading portals failed: %s", db_conn_error(b->db_main)->message);
        goto fail;
    }

    /* the appservice endpoint first: the homeserver's ping must find it */
    mx_as_config ac = {
        .bind_addr = cfg->as_hostname, .port = cfg->as_port, .hs_token = cfg->hs_token};
    b->txn_pg = (br_mx_txn_pg){.conn = b->db_http,
                               .skip = skip_echo,
                               .skip_arg = b,
                               .on_stored = on_stored,
                               .stored_arg = b};
    mx_txn_store store = br_mx_txn_store_pg_filtered(&b->txn_pg);
    mx_as_handler h = {.ctx = b, .on_events = on_events, .query_user = query_user};
    if (mx_as_server_start(&ac, &store, &h, &b->as) != MX_OK) {
        fail(err, cap, "appservice: cannot listen on %s:%u (appservice.hostname/port)",
             cfg->as_hostname, (unsigned)cfg->as_port);
        goto fail;
    }
    WB_INFO(MOD, "appservice endpoint on %s:%u", cfg->as_hostname,
            (unsigned)mx_as_server_port(b->as));

    /* the homeserver: reachable, our token valid, the bot registered with its profile */
    b->mx_main = new_mx(b);
    if (!b->mx_main) {
        fail(err, cap, "out of memory");
        goto fail;
    }
    mx_error me;
    if (mx_client_wait_versions(b->mx_main, 60000, NULL, &me) != MX_OK) {
        fail(err, cap, "homeserver: %s not reachable (homeserver.address): %s", cfg->hs_address,
             me.error);
        goto fail;
    }
    if (mx_client_ensure_registered(b->mx_main, cfg->bot_username, &me) != MX_OK) {
        fail(err, cap,
             "homeserver: cannot register the bot %s (is the registration installed?): %s",
             b->bot_mxid, me.error);
        goto fail;
    }
    char *who = NULL;
    if (mx_client_whoami(b->mx_main, NULL, &who, &me) != MX_OK) {
        fail(err, cap, "homeserver: as_token refused (appservice.as_token): %s %s", me.errcode,
             me.error);
        goto fail;
    }
    free(who);
    if (mx_client_appservice_ping(b->mx_main, cfg->as_id, NULL, &me) != MX_OK)
        WB_WARN(MOD, "the homeserver could not ping us at %s: %s (continuing)", cfg->as_address,
                me.error);
    if (cfg->bot_displayname[0] &&
        mx_client_set_displayname(b->mx_main, NULL, cfg->bot_displayname, &me) != MX_OK)
        WB_WARN(MOD, "setting the bot's display name failed: %s", me.error);
    if (cfg->bot_avatar[0] &&
        mx_client_set_avatar_url(b->mx_main, NULL, cfg->bot_avatar, &me) != MX_OK)
        WB_WARN(MOD, "setting the bot's avatar failed: %s", me.error);

    /* portal workers */
    b->n_pworkers = cfg->portal_workers > 0 ? cfg->portal_workers : 2 * cores();
    b->pworkers = calloc((size_t)b->n_pworkers, sizeof(*b->pworkers));
    if (!b->pworkers) goto nomem;
    for (int i = 0; i < b->n_pworkers; i++) {
        br_pworker *pw = &b->pworkers[i];
        pw->b = b;
        pw->index = i;
        pthread_mutex_init(&pw->lock, NULL);
        pthread_cond_init(&pw->cond, NULL);
        if (open_db_opts(cfg, &pw->db, true, false, err, cap)) goto fail;
        mx_client_config mc = {.hs_url = cfg->hs_address,
                               .as_token = cfg->as_token,
                               .server_name = cfg->hs_domain,
                               .bot_localpart = cfg->bot_username,
                               .ghosts = br_mx_ghost_store_pg(pw->db),
                               .puppets = br_puppet_auth(b)};
        pw->mx = mx_client_new(&mc);
        if (!pw->mx) goto nomem;
        if (pthread_create(&pw->thread, NULL, pworker_main, pw) != 0) goto nomem;
    }

    /* WhatsApp: the transport and the engine workers */
    b->net = wa_net_new(cfg->wa_ca_file && cfg->wa_ca_file[0] ? cfg->wa_ca_file : NULL);
    if (!b->net) {
        fail(err, cap, "whatsapp: cannot start the WebSocket transport");
        goto fail;
    }
    b->n_engines = cfg->engine_workers > 0 ? cfg->engine_workers : cores();
    b->engines = calloc((size_t)b->n_engines, sizeof(*b->engines));
    if (!b->engines) goto nomem;
    extern void br_login_on_engine_event(void *user, int login, const wa_event *ev);
    for (int i = 0; i < b->n_engines; i++) {
        br_engine *e = &b->engines[i];
        e->b = b;
        e->index = i;
        /* group commit: the stores' commits return before the WAL flush; the worker's barrier
         * (one synchronous commit per batch) makes them durable before any ack or message of
         * the batch leaves (wa/worker.h) */
        /* held commits: a message's session and buffer rows travel with the batch's sync */
        if (open_db_opts(cfg, &e->db, true, true, err, cap)) goto fail;
        e->crypto = wa_crypto_new(NULL, 0);
        if (!e->crypto) goto nomem;
        e->w = wa_worker_new(b->net, br_login_on_engine_event, e);
        if (!e->w) goto nomem;
        wa_worker_set_barrier(e->w, engine_barrier, e);
        wa_worker_set_commit(e->w, engine_commit, e);
    }

    /* the logins we hold, then the pump (inbox events need their logins listed) */
    br_logins_resume(b);
    if (pthread_create(&b->pump_thread, NULL, pump_main, b) != 0) goto nomem;
    if (pthread_create(&b->lease_thread, NULL, lease_main, b) != 0) goto nomem;
    WB_INFO(MOD, "running as %s: %d engine worker(s), %d portal worker(s)", b->bot_mxid,
            b->n_engines, b->n_pworkers);
    b->started = true;
    *out = b;
    return 0;
nomem:
    fail(err, cap, "out of memory (or too few threads)");
fail:
    br_bridge_stop(b);
    return -1;
}

void br_bridge_stop(br_bridge *b)
{
    if (!b) return;
    bool started = b->started;
    if (started) WB_INFO(MOD, "stopping: draining queues");
    /* no new transactions: the homeserver keeps them and retries later */
    if (b->as) mx_as_server_stop(b->as);
    b->as = NULL;
    atomic_store(&b->stopping, true);
    pthread_mutex_lock(&b->pump_lock);
    pthread_cond_broadcast(&b->pump_cond);
    pthread_mutex_unlock(&b->pump_lock);
    if (b->pump_thread) pthread_join(b->pump_thread, NULL);
    if (b->lease_thread) pthread_join(b->lease_thread, NULL);
    /* portal workers finish what is queued (they may still send to WhatsApp) and the acks of
     * what they sent come back (bounded: what does not is replayed from the inbox next time) */
    for (int waited = 0; b->pworkers && waited < 10000; waited += 20) {
        bool quiet = true;
        for (int i = 0; i < b->n_pworkers && quiet; i++) {
            br_pworker *pw = &b->pworkers[i];
            pthread_mutex_lock(&pw->lock);
            quiet = !pw->head && !pw->busy;
            pthread_mutex_unlock(&pw->lock);
        }
        pthread_mutex_lock(&b->lock);
        for (size_t i = 0; i < b->n_logins && quiet; i++)
            quiet = b->logins[i]->pending == NULL;
        pthread_mutex_unlock(&b->lock);
        if (quiet) break;
        br_logins_sweep(b);
        sleep_ms(20);
    }
    atomic_store(&b->workers_exit, true);
    for (int i = 0; b->pworkers && i < b->n_pworkers; i++) {
        br_pworker *pw = &b->pworkers[i];
        if (!pw->thread) continue;
        pthread_mutex_lock(&pw->lock);
        pthread_cond_broadcast(&pw->cond);
        pthread_mutex_unlock(&pw->lock);
        pthread_join(pw->thread, NULL);
    }
    br_logins_stop(b);
    for (int i = 0; b->engines && i < b->n_engines; i++) {
        br_engine *e = &b->engines[i];
        if (e->w) wa_worker_free(e->w);
        if (e->crypto) wa_crypto_free(e->crypto);
        if (e->db) db_conn_close(e->db);
    }
    if (b->net) wa_net_free(b->net);
    for (int i = 0; b->pworkers && i < b->n_pworkers; i++) {
        br_pworker *pw = &b->pworkers[i];
        while (pw->head) { /* only left when a worker never started */
            br_job *j = pw->head;
            pw->head = j->next;
            free(j);
        }
        if (pw->mx) mx_client_free(pw->mx);
        if (pw->db) db_conn_close(pw->db);
        pthread_mutex_destroy(&pw->lock);
        pthread_cond_destroy(&pw->cond);
    }
    free(b->pworkers);
    free(b->engines);
    if (b->mx_main) mx_client_free(b->mx_main);
    if (b->db_pump) db_conn_close(b->db_pump);
    if (b->db_http) db_conn_close(b->db_http);
    br_mx_txn_pg_free(&b->txn_pg);
    if (b->db_main) db_conn_close(b->db_main);
    free(b->rooms);
    br_puppet_free(b);
    free(b->by_room);
    free(b->by_chat);
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->puppet_lock);
    pthread_mutex_destroy(&b->pump_lock);
    pthread_mutex_destroy(&b->route_lock);
    pthread_cond_destroy(&b->pump_cond);
    if (started)
        WB_INFO(MOD, "stopped: %llu Matrix event(s) routed (%llu straight from the endpoint)",
                (unsigned long long)atomic_load(&b->stats.mx_events),
                (unsigned long long)atomic_load(&b->stats.mx_direct));
    free(b);
}

void br_bridge_stats(br_bridge *b, br_stats *out)
{
    out->mx_events = atomic_load(&b->stats.mx_events);
    out->mx_direct = atomic_load(&b->stats.mx_direct);
    out->mx_bridged = atomic_load(&b->stats.mx_bridged);
    out->wa_messages = atomic_load(&b->stats.wa_messages);
    out->wa_bridged = atomic_load(&b->stats.wa_bridged);
    out->commands = atomic_load(&b->stats.commands);
    out->failures = atomic_load(&b->stats.failures);
}
