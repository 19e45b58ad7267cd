/*
 * wa/net.c - the libwebsockets transport of wa/net.h: a request queue, one service thread.
 */
#include "wa/net.h"

#include "util/bytes.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct net_conn net_conn;
struct net_conn {
    net_conn *next;
    uint64_t id;     /* what owners hold */
    struct lws *wsi; /* NULL until the connect request is processed */
    wa_net_callbacks cb;
    void *user;
    wb_buf out;           /* bytes waiting for a writeable callback */
    bool connect_pending; /* the service thread has not started the connect yet */
    bool closing;         /* close after out is written */
    bool gone;            /* closed: on_closed was called */
    bool detached;        /* the owner wants no more callbacks */
    bool queued;          /* on the todo list */
    net_conn *next_todo;
    bool tls;
    int port;
    char host[256];
    char path[512];
};

struct wa_net {
    struct lws_context *ctx;
    pthread_t thread;
    pthread_mutex_t lock;    /* guards conns and every net_conn field but wsi callbacks' locals */
    pthread_mutex_t cb_lock; /* held by the service thread while it runs an owner's callback, so
                                wa_net_detach_user can wait for one in progress */
    net_conn *conns;
    net_conn *dead; /* finished connections, freed on the service thread's next turn (a
                       synchronous lws callback may still hold one) */
    net_conn *todo; /* connections with something for the service thread to start: a connect,
                       bytes to write, a close (so a wake-up looks at those, not at all) */
    uint64_t next_id;
    bool stop;
};

static net_conn *find(wa_net *n, uint64_t id)
{
    for (net_conn *c = n->conns; c; c = c->next)
        if (c->id == id && !c->gone) return c;
    return NULL;
}

/* Puts c on the todo list (call with lock held, then wake the service thread). */
static void mark(wa_net *n, net_conn *c)
{
    if (c->queued) return;
    c->queued = true;
    c->next_todo = n->todo;
    n->todo = c;
}

static void unlink_conn(wa_net *n, net_conn *c)
{
    if (c->queued) {
        for (net_conn **p = &n->todo; *p; p = &(*p)->next_todo)
            if (*p == c) {
                *p = c->next_todo;
                break;
            }
        c->queued = false;
    }
    for (net_conn **p = &n->conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            return;
        }
    }
}

/* The owner's callbacks of c, or zeros once it detached. Call with cb_lock held. */
static wa_net_callbacks callbacks_of(wa_net *n, net_conn *c, void **user)
{
    static const wa_net_callbacks none;
    pthread_mutex_lock(&n->lock);
    wa_net_callbacks cb = c->detached ? none : c->cb;
    *user = c->user;
    pthread_mutex_unlock(&n->lock);
    return cb;
}

/* Retires c and tells its owner, outside the lock. */
static void finish(wa_net *n, net_conn *c, const char *why)
{
    pthread_mutex_lock(&n->lock);
    bool was_gone = c->gone;
    if (!was_gone) {
        c->gone = true;
        unlink_conn(n, c);
        c->next = n->dead;
        n->dead = c;
    }
    pthread_mutex_unlock(&n->lock);
    if (was_gone) return;
    pthread_mutex_lock(&n->cb_lock);
    void *user;
    wa_net_callbacks cb = callbacks_of(n, c, &user);
    if (cb.on_closed) cb.on_closed(user, c->id, why);
    pthread_mutex_unlock(&n->cb_lock);
}

static void free_dead(wa_net *n)
{
    pthread_mutex_lock(&n->lock);
    net_conn *dead = n->dead;
    n->dead = NULL;
    pthread_mutex_unlock(&n->lock);
    while (dead) {
        net_conn *next = dead->next;
        wb_buf_free(&dead->out);
        free(dead);
        dead = next;
    }
}

static void start_connects(wa_net *n)
{
    /* collect under the lock, connect outside it: lws may call back synchronously */
    net_conn *todo[64], *cancelled[64];
    size_t ntodo = 0, ncancelled = 0;
    free_dead(n);
    pthread_mutex_lock(&n->lock);
    while (n->todo && ntodo < 64 && ncancelled < 64) {
        net_conn *c = n->todo;
        n->todo = c->next_todo;
        c->queued = false;
        if (c->connect_pending && c->closing) {
            c->connect_pending = false;
            cancelled[ncancelled++] = c;
        } else if (c->connect_pending) {
            c->connect_pending = false;
            todo[ntodo++] = c;
        } else if (c->wsi && (c->out.len || c->closing)) {
            lws_callback_on_writable(c->wsi);
        }
    }
    bool more = n->todo != NULL;
    pthread_mutex_unlock(&n->lock);
    for (size_t i = 0; i < ncancelled; i++)
        finish(n, cancelled[i], "closed before connecting");
    for (size_t i = 0; i < ntodo; i++) {
        net_conn *c = todo[i];
        struct lws_client_connect_info info;
        memset(&info, 0, sizeof(info));
        info.context = n->ctx;
        info.address = c->host;
        info.port = c->port;
        info.path = c->path;
        info.host = c->host;
        info.origin = WA_DEFAULT_ORIGIN;
        info.ssl_connection = c->tls ? LCCSCF_USE_SSL : 0;
        info.protocol = NULL;
        info.local_protocol_name = "wa";
        info.userdata = c;
        info.pwsi = &c->wsi;
        if (!lws_client_connect_via_info(&info) && !c->gone) finish(n, c, "cannot connect");
    }
    if (more) lws_cancel_service(n->ctx); /* more to do */
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    wa_net *n = lws_context_user(lws_get_context(wsi));
    net_conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (n) start_connects(n);
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED: {
        if (!c) return -1;
        void *owner;
        pthread_mutex_lock(&n->cb_lock);
        wa_net_callbacks cb = callbacks_of(n, c, &owner);
        if (cb.on_open) cb.on_open(owner, c->id);
        pthread_mutex_unlock(&n->cb_lock);
        pthread_mutex_lock(&n->lock);
        if (c->out.len || c->closing) lws_callback_on_writable(wsi);
        pthread_mutex_unlock(&n->lock);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (!c || !len) return 0;
        void *owner;
        pthread_mutex_lock(&n->cb_lock);
        wa_net_callbacks cb = callbacks_of(n, c, &owner);
        if (cb.on_data) cb.on_data(owner, c->id, in, len);
        pthread_mutex_unlock(&n->cb_lock);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (!c) return -1;
        pthread_mutex_lock(&n->lock);
        wb_buf out = c->out;
        wb_buf_init(&c->out);
        bool closing = c->closing;
        pthread_mutex_unlock(&n->lock);
        if (out.len) {
            /* lws needs LWS_PRE bytes of headroom before the payload */
            unsigned char *buf = malloc(LWS_PRE + out.len);
            if (!buf) {
                wb_buf_free(&out);
                return -1;
            }
            memcpy(buf + LWS_PRE, out.data, out.len);
            int w = lws_write(wsi, buf + LWS_PRE, out.len, LWS_WRITE_BINARY);
            free(buf);
            size_t want = out.len;
            wb_buf_free(&out);
            if (w < (int)want) return -1;
            if (closing) lws_callback_on_writable(wsi); /* close on the next turn */
            return 0;
        }
        return closing ? -1 : 0;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c) finish(n, c, in && len ? (const char *)in : "connection error");
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c) finish(n, c, "closed");
        return 0;
    default: return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"wa", callback, 0, 1 << 16, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *service(void *arg)
{
    wa_net *n = arg;
    for (;;) {
        pthread_mutex_lock(&n->lock);
        bool stop = n->stop;
        pthread_mutex_unlock(&n->lock);
        if (stop) break;
        if (lws_service(n->ctx, 0) < 0) break;
    }
    return NULL;
}

wa_net *wa_net_new(const char *ca_file)
{
    wa_net *n = calloc(1, sizeof(*n));
    if (!n) return NULL;
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->cb_lock, NULL);
    n->next_id = 1;
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_filepath = ca_file;
    info.user = n;
    info.fd_limit_per_thread = 1 + 16384; /* thousands of logins on one thread */
    n->ctx = lws_create_context(&info);
    if (!n->ctx || pthread_create(&n->thread, NULL, service, n) != 0) {
        if (n->ctx) lws_context_destroy(n->ctx);
        free(n);
        return NULL;
    }
    return n;
}

void wa_net_free(wa_net *n)
{
    if (!n) return;
    pthread_mutex_lock(&n->lock);
    n->stop = true;
    pthread_mutex_unlock(&n->lock);
    lws_cancel_service(n->ctx);
    pthread_join(n->thread, NULL);
    lws_context_destroy(n->ctx); /* closes every wsi: CLOSED callbacks run here */
    while (n->conns)
        finish(n, n->conns, "transport stopped");
    free_dead(n);
    pthread_mutex_destroy(&n->lock);
    pthread_mutex_destroy(&n->cb_lock);
    free(n);
}

/* ws://host[:port]/path or wss://... */
static bool parse_url(const char *url, net_conn *c)
{
    const char *rest;
    if (strncmp(url, "wss://", 6) == 0) {
        c->tls = true;
        c->port = 443;
        rest = url + 6;
    } else if (strncmp(url, "ws://", 5) == 0) {
        c->tls = false;
        c->port = 80;
        rest = url + 5;
    } else {
        return false;
    }
    const char *slash = strchr(rest, '/');
    size_t hostport = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *colon = memchr(rest, ':', hostport);
    size_t hostlen = colon ? (size_t)(colon - rest) : hostport;
    if (hostlen == 0 || hostlen >= sizeof(c->host)) return false;
    memcpy(c->host, rest, hostlen);
    c->host[hostlen] = '\0';
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != rest + hostport || port <= 0 || port > 65535) return false;
        c->port = (int)port;
    }
    snprintf(c->path, sizeof(c->path), "%s", slash ? slash : "/");
    return strlen(slash ? slash : "/") < sizeof(c->path);
}

uint64_t wa_net_connect(wa_net *n, const char *url, const wa_net_callbacks *cb, void *user)
{
    net_conn *c = calloc(1, sizeof(*c));
    if (!c) return 0;
    if (!parse_url(url, c)) {
        free(c);
        return 0;
    }
    wb_buf_init(&c->out);
    c->cb = *cb;
    c->user = user;
    c->connect_pending = true;
    pthread_mutex_lock(&n->lock);
    c->id = n->next_id++;
    c->next = n->conns;
    n->conns = c;
    mark(n, c);
    uint64_t id = c->id;
    pthread_mutex_unlock(&n->lock);
    lws_cancel_service(n->ctx);
    return id;
}

int wa_net_send(wa_net *n, uint64_t conn, const uint8_t *p, size_t len)
{
    pthread_mutex_lock(&n->lock);
    net_conn *c = find(n, conn);
    int rc = c && !c->closing && wb_buf_append(&c->out, p, len) ? 0 : -1;
    if (rc == 0) mark(n, c);
    pthread_mutex_unlock(&n->lock);
    if (rc == 0) lws_cancel_service(n->ctx);
    return rc;
}

void wa_net_close(wa_net *n, uint64_t conn)
{
    pthread_mutex_lock(&n->lock);
    net_conn *c = find(n, conn);
    if (c) {
        c->closing = true;
        mark(n, c);
    }
    pthread_mutex_unlock(&n->lock);
    lws_cancel_service(n->ctx);
}

void wa_net_detach_user(wa_net *n, const void *user)
{
    pthread_mutex_lock(&n->lock);
    for (net_conn *c = n->conns; c; c = c->next) {
        if (c->user == user) {
            c->closing = true;
            c->detached = true;
            mark(n, c);
        }
    }
    for (net_conn *c = n->dead; c; c = c->next)
        if (c->user == user) c->detached = true;
    pthread_mutex_unlock(&n->lock);
    /* a callback already running for it finishes before we return */
    pthread_mutex_lock(&n->cb_lock);
    pthread_mutex_unlock(&n->cb_lock);
    lws_cancel_service(n->ctx);
}

size_t wa_net_count(wa_net *n)
{
    size_t count = 0;
    pthread_mutex_lock(&n->lock);
    for (net_conn *c = n->conns; c; c = c->next)
        count++;
    pthread_mutex_unlock(&n->lock);
    return count;
}
