/*
 * wa/worker.c - the engine worker of wa/worker.h: an inbox, a timer wheel of one (the earliest
 * client deadline), and the loop that moves bytes between wa_net and the clients.
 */
#include "wa/worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LOGINS 4096

typedef enum item_kind {
    ITEM_OPEN,
    ITEM_DATA,
    ITEM_CLOSED,
    ITEM_CALL,
    ITEM_START,
    ITEM_RUN,
    ITEM_REMOVE
} item_kind;

typedef struct item item;
struct item {
    item *next;
    item_kind kind;
    int login;
    uint64_t conn; /* OPEN / DATA / CLOSED: which connection it is about */
    uint8_t *data; /* DATA: copied bytes */
    size_t len;
    wa_worker_call_fn fn;    /* CALL */
    wa_worker_run_fn run_fn; /* RUN */
    void *arg;
    bool *done; /* CALL with wait: set when run */
};

typedef struct slot {
    wa_worker *w;
    int index;
    wa_client *client;
    char url[512];
    uint64_t conn; /* current connection id, 0 when none */
    bool dirty;    /* stepped since the last flush: output, IO requests or events may wait */
} slot;

struct wa_worker {
    wa_net *net;
    wa_worker_event_fn on_event;
    void *user;
    pthread_t thread;
    pthread_mutex_t lock; /* guards the inbox, nslots and stop */
    pthread_cond_t cond;  /* inbox not empty, or a call finished */
    item *head, *tail;
    bool stop;
    slot *slots[MAX_LOGINS];
    int nslots;
    wa_worker_barrier_fn barrier; /* made durable what the clients committed (or NULL) */
    void *barrier_arg;
    wa_worker_barrier_fn commit; /* made it visible, before messages are raised (or NULL) */
    void *commit_arg;
    _Atomic uint64_t flushes, barrier_failures;
};

#define MAX_BATCH 64 /* inbox items stepped before their output goes out together */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void push(wa_worker *w, item *it)
{
    pthread_mutex_lock(&w->lock);
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void push_net(slot *s, item_kind kind, uint64_t conn, const uint8_t *p, size_t len)
{
    item *it = calloc(1, sizeof(*it));
    if (!it) return;
    it->kind = kind;
    it->login = s->index;
    it->conn = conn;
    if (len) {
        it->data = malloc(len);
        if (!it->data) {
            free(it);
            return;
        }
        memcpy(it->data, p, len);
        it->len = len;
    }
    push(s->w, it);
}

static void net_open(void *user, uint64_t conn)
{
    push_net(user, ITEM_OPEN, conn, NULL, 0);
}

static void net_data(void *user, uint64_t conn, const uint8_t *p, size_t len)
{
    push_net(user, ITEM_DATA, conn, p, len);
}

static void net_closed(void *user, uint64_t conn, const char *why)
{
    push_net(user, ITEM_CLOSED, conn, NULL, 0);
}

static const wa_net_callbacks net_cb = {net_open, net_data, net_closed};

/* After any step of a client: sockets it asked for, bytes it wrote, events it raised. */
static void service_client(wa_worker *w, slot *s)
{
    wa_io io;
    while ((io = wa_client_io(s->client)) != WA_IO_NONE) {
        if (io == WA_IO_OPEN) {
            if (s->conn) wa_net_close(w->net, s->conn);
            s->conn = wa_net_connect(w->net, s->url, &net_cb, s);
            if (!s->conn) wa_client_on_closed(s->client, now_ms());
        } else if (s->conn) {
            wa_net_close(w->net, s->conn);
            s->conn = 0;
        }
    }
    wb_buf *out = wa_client_output(s->client);
    if (out->len) {
        if (s->conn) wa_net_send(w->net, s->conn, out->data, out->len);
        out->len = 0;
    }
    wa_event ev;
    while (wa_client_next_event(s->client, &ev))
        if (w->on_event) w->on_event(w->user, s->index, &ev);
    /* what the owner's handling of the events wrote (e.g. an ack of a notification it took)
     * goes out with the next flush, behind its own barrier */
    if (wa_client_output(s->client)->len) s->dirty = true;
}

/* A batch ends: one barrier makes what the stepped clients committed durable, then their output
 * goes out and their events are raised. If the barrier fails, none of their output may leave (an
 * ack or a message could stand for a commit that is lost): it is dropped and their connections
 * closed, so the server redelivers and the clients reconnect. Their events are still raised. */
static bool flush_once(wa_worker *w);

static void flush(wa_worker *w)
{
    for (int round = 0; round < 4; round++) /* again for what event handlers wrote */
        if (!flush_once(w)) break;
    /* what event handlers and runs committed without output, made durable too (a store may
     * hold commits until the barrier: db.h hold_commits) */
    if (w->barrier && w->barrier(w->barrier_arg) != 0) w->barrier_failures++;
}

static bool flush_once(wa_worker *w)
{
    pthread_mutex_lock(&w->lock);
    int n = w->nslots;
    pthread_mutex_unlock(&w->lock);
    bool any = false;
    for (int i = 0; i < n && !any; i++)
        any = w->slots[i] && w->slots[i]->dirty;
    if (!any) return false;
    if (w->commit) { /* received messages go to the app while the barrier's flush runs */
        w->commit(w->commit_arg);
        for (int i = 0; i < n; i++) {
            slot *s = w->slots[i];
            wa_event_type t;
            wa_event ev;
            while (s && s->dirty && wa_client_peek_event(s->client, &t) && t == WA_EV_MESSAGE &&
                   wa_client_next_event(s->client, &ev))
                if (w->on_event) w->on_event(w->user, s->index, &ev);
        }
    }
    bool durable = !w->barrier || w->barrier(w->barrier_arg) == 0;
    w->flushes++;
    if (!durable) w->barrier_failures++;
    for (int i = 0; i < n; i++) {
        slot *s = w->slots[i];
        if (!s || !s->dirty) continue;
        s->dirty = false;
        if (!durable) {
            wa_client_output(s->client)->len = 0;
            if (s->conn) {
                wa_net_close(w->net, s->conn);
                s->conn = 0;
                wa_client_on_closed(s->client, now_ms());
            }
        }
        service_client(w, s);
    }
    return true;
}

static void remove_slot(wa_worker *w, int login)
{
    if (login < 0 || login >= MAX_LOGINS) return;
    pthread_mutex_lock(&w->lock);
    slot *s = w->slots[login];
    w->slots[login] = NULL;
    pthread_mutex_unlock(&w->lock);
    if (!s) return;
    if (s->conn) wa_net_close(w->net, s->conn);
    wa_net_detach_user(w->net, s);
    free(s);
}

static void run_item(wa_worker *w, item *it)
{
    if (it->kind == ITEM_RUN) {
        it->run_fn(it->arg);
        return;
    }
    if (it->kind == ITEM_REMOVE) {
        remove_slot(w, it->login);
        return;
    }
    slot *s = it->login >= 0 && it->login < MAX_LOGINS ? w->slots[it->login] : NULL;
    if (!s) return;
    int64_t now = now_ms();
    uint64_t wall = (uint64_t)time(NULL);
    switch (it->kind) {
    case ITEM_START: wa_client_start(s->client, now, wall); break;
    case ITEM_OPEN:
        if (it->conn == s->conn) wa_client_on_open(s->client, now, wall);
        break;
    case ITEM_DATA:
        if (it->conn == s->conn) wa_client_on_data(s->client, it->data, it->len, now, wall);
        break;
    case ITEM_CLOSED:
        if (it->conn == s->conn) {
            s->conn = 0;
            wa_client_on_closed(s->client, now);
        }
        break;
    case ITEM_CALL: it->fn(s->client, it->arg); break;
    case ITEM_RUN:
    case ITEM_REMOVE: break;
    }
    if (!w->slots[it->login]) return; /* the call removed it */
    s->dirty = true;                  /* serviced by the batch's flush */
}

static void *worker_main(void *arg)
{
    wa_worker *w = arg;
    int batch = 0;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        item *it = w->head;
        if (it) {
            w->head = it->next;
            if (!w->head) w->tail = NULL;
            pthread_mutex_unlock(&w->lock);
            /* runs and removals see (and may act on) everything before them sent */
            bool fence = it->kind == ITEM_RUN || it->kind == ITEM_REMOVE;
            if (fence) flush(w);
            run_item(w, it);
            pthread_mutex_lock(&w->lock);
            /* a batch ends when the inbox is empty, at its size, or for a caller who waits */
            if (fence || it->done || !w->head || ++batch >= MAX_BATCH) {
                pthread_mutex_unlock(&w->lock);
                flush(w);
                batch = 0;
                pthread_mutex_lock(&w->lock);
            }
            if (it->done) {
                *it->done = true;
                pthread_cond_broadcast(&w->cond);
            }
            free(it->data);
            free(it);
            continue;
        }
        /* nothing queued: run due timers, then sleep until the next one or new work */
        int64_t now = now_ms(), next = INT64_MAX;
        int n = w->nslots;
        pthread_mutex_unlock(&w->lock);
        for (int i = 0; i < n; i++) {
            slot *s = w->slots[i];
            if (!s) continue;
            if (wa_client_deadline(s->client) <= now) {
                wa_client_tick(s->client, now, (uint64_t)time(NULL));
                s->dirty = true;
            }
        }
        flush(w);
        for (int i = 0; i < n; i++) {
            slot *s = w->slots[i];
            if (!s) continue;
            int64_t d = wa_client_deadline(s->client);
            if (d < next) next = d;
        }
        pthread_mutex_lock(&w->lock);
        if (w->head || w->stop) continue;
        if (next <= now_ms()) continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t wait = next == INT64_MAX ? 1000 : next - now_ms();
        if (wait > 1000) wait = 1000;
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (wait % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    }
    pthread_mutex_unlock(&w->lock);
    flush(w);
    return NULL;
}

wa_worker *wa_worker_new(wa_net *net, wa_worker_event_fn on_event, void *user)
{
    wa_worker *w = calloc(1, sizeof(*w));
    if (!w) return NULL;
    w->net = net;
    w->on_event = on_event;
    w->user = user;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        free(w);
        return NULL;
    }
    return w;
}

void wa_worker_free(wa_worker *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    for (int i = 0; i < w->nslots; i++) {
        if (!w->slots[i]) continue;
        /* old connections of this slot may still report: detach them all before freeing */
        wa_net_detach_user(w->net, w->slots[i]);
        free(w->slots[i]);
    }
    while (w->head) {
        item *it = w->head;
        w->head = it->next;
        free(it->data);
        free(it);
    }
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

int wa_worker_add(wa_worker *w, wa_client *client, const char *url)
{
    slot *s = calloc(1, sizeof(*s));
    if (!s) return -1;
    s->w = w;
    s->client = client;
    snprintf(s->url, sizeof(s->url), "%s", url);
    pthread_mutex_lock(&w->lock);
    if (w->nslots == MAX_LOGINS) {
        pthread_mutex_unlock(&w->lock);
        free(s);
        return -1;
    }
    s->index = w->nslots;
    w->slots[w->nslots++] = s;
    pthread_mutex_unlock(&w->lock);
    item *it = calloc(1, sizeof(*it));
    if (!it) return -1;
    it->kind = ITEM_START;
    it->login = s->index;
    push(w, it);
    return s->index;
}

int wa_worker_call(wa_worker *w, int login, wa_worker_call_fn fn, void *arg, bool wait)
{
    item *it = calloc(1, sizeof(*it));
    if (!it) return -1;
    bool done = false;
    it->kind = ITEM_CALL;
    it->login = login;
    it->fn = fn;
    it->arg = arg;
    it->done = wait ? &done : NULL;
    push(w, it);
    if (wait) {
        pthread_mutex_lock(&w->lock);
        while (!done && !w->stop)
            pthread_cond_wait(&w->cond, &w->lock);
        pthread_mutex_unlock(&w->lock);
    }
    return 0;
}

int wa_worker_run(wa_worker *w, wa_worker_run_fn fn, void *arg, bool wait)
{
    item *it = calloc(1, sizeof(*it));
    if (!it) return -1;
    bool done = false;
    it->kind = ITEM_RUN;
    it->login = -1;
    it->run_fn = fn;
    it->arg = arg;
    it->done = wait ? &done : NULL;
    push(w, it);
    if (wait) {
        pthread_mutex_lock(&w->lock);
        while (!done && !w->stop)
            pthread_cond_wait(&w->cond, &w->lock);
        pthread_mutex_unlock(&w->lock);
    }
    return 0;
}

int wa_worker_remove(wa_worker *w, int login)
{
    if (pthread_equal(pthread_self(), w->thread)) {
        remove_slot(w, login);
        return 0;
    }
    item *it = calloc(1, sizeof(*it));
    if (!it) return -1;
    bool done = false;
    it->kind = ITEM_REMOVE;
    it->login = login;
    it->done = &done;
    push(w, it);
    pthread_mutex_lock(&w->lock);
    while (!done && !w->stop)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

void wa_worker_set_barrier(wa_worker *w, wa_worker_barrier_fn fn, void *arg)
{
    pthread_mutex_lock(&w->lock);
    w->barrier = fn;
    w->barrier_arg = arg;
    pthread_mutex_unlock(&w->lock);
}

void wa_worker_set_commit(wa_worker *w, wa_worker_barrier_fn commit, void *arg)
{
    pthread_mutex_lock(&w->lock);
    w->commit = commit;
    w->commit_arg = arg;
    pthread_mutex_unlock(&w->lock);
}

void wa_worker_flush_stats(wa_worker *w, uint64_t *flushes, uint64_t *failures)
{
    if (flushes) *flushes = w->flushes;
    if (failures) *failures = w->barrier_failures;
}
