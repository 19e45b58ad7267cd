/*
 * matrix/as_server.c - the application service endpoint on libmicrohttpd (see as_server.h).
 *
 * One request runs in three steps on a server thread: the first callback (headers only) routes,
 * authenticates and checks Content-Length, answering at once when any of these fails; the middle
 * callbacks gather the body up to max_body; the last one parses, commits and answers. Commit and
 * hand-over to the dispatcher happen under commit_mu, so events reach on_events in the order their
 * transactions were committed.
 */
#include "matrix/as_server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "matrix/err.h"
#include "util/bytes.h"

#define MX_AS_DEFAULT_MAX_BODY (32u * 1024u * 1024u)

struct mx_as_server {
    struct MHD_Daemon *daemon; /* running until mx_as_server_stop */
    char *hs_token;            /* malloc'd copy; compared in constant time, never logged */
    size_t hs_token_len;       /* bytes in hs_token, > 0 */
    size_t max_body;           /* bytes */
    uint16_t port;             /* bound port */
    mx_txn_store store;        /* caller's durability */
    mx_as_handler handler;     /* caller's callbacks (fields may be NULL) */
    pthread_mutex_t commit_mu; /* serialises commit + on_events */
    pthread_mutex_t stats_mu;  /* guards stats */
    mx_as_stats stats;         /* counters */
};

enum route {
    R_NONE = 0,
    R_TXN,
    R_USER,
    R_ROOM,
    R_PING,
};

/* Per-request state, created on the first callback and freed in request_completed. */
typedef struct request {
    enum route route;
    char *arg;      /* malloc'd path argument (txnId, userId, alias); NULL for ping */
    wb_buf body;    /* gathered body, at most max_body bytes */
    bool too_large; /* the body passed max_body; the rest is discarded */
} request;

/* ---- answers ---- */

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *json)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result answer_error(mx_as_server *s, struct MHD_Connection *c, unsigned status,
                                    const char *errcode, const char *error)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "errcode", errcode);
    cJSON_AddStringToObject(o, "error", error);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    enum MHD_Result ok =
        answer(c, status, txt ? txt : "{\"errcode\":\"M_UNKNOWN\",\"error\":\"out of memory\"}");
    cJSON_free(txt);
    if (status >= 400 && status < 500) {
        pthread_mutex_lock(&s->stats_mu);
        s->stats.rejected++;
        pthread_mutex_unlock(&s->stats_mu);
    }
    return ok;
}

/* ---- authentication ---- */

/* Constant time in the contents of `given` (its length and the expected length may leak). */
static bool token_equal(const char *expected, size_t elen, const char *given, size_t glen)
{
    volatile unsigned char d = (unsigned char)(elen != glen);
    for (size_t i = 0; i < glen; i++)
        d |= (unsigned char)given[i] ^ (unsigned char)expected[i % elen];
    return d == 0;
}

/* 0 = authenticated, otherwise the HTTP status to answer (401 no token, 403 wrong token). */
static unsigned authenticate(mx_as_server *s, struct MHD_Connection *c)
{
    const char *given = NULL;
    const char *auth =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth) {
        if (strncasecmp(auth, "Bearer ", 7) != 0) return 403;
        given = auth + 7;
        while (*given == ' ')
            given++;
    } else {
        given = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "access_token");
    }
    if (!given || !*given) return 401;
    return token_equal(s->hs_token, s->hs_token_len, given, strlen(given)) ? 0 : 403;
}

/* ---- routing ---- */

/* Splits the (already unescaped) path into a route and its argument. Returns 0, 404 or 405. */
static unsigned route_path(const char *url, const char *method, enum route *route, const char **arg)
{
    static const char v1[] = "/_matrix/app/v1/";
    const char *p;
    if (strncmp(url, v1, sizeof v1 - 1) == 0) {
        p = url + sizeof v1 - 1;
    } else if (url[0] == '/') {
        p = url + 1; /* legacy: unprefixed */
    } else {
        return 404;
    }
    static const struct {
        const char *prefix;
        enum route route;
        const char *method;
        bool has_arg;
    } table[] = {
        {"transactions/", R_TXN, "PUT", true},
        {"users/", R_USER, "GET", true},
        {"rooms/", R_ROOM, "GET", true},
        {"ping", R_PING, "POST", false},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        size_t n = strlen(table[i].prefix);
        if (strncmp(p, table[i].prefix, n) != 0) continue;
        if (table[i].has_arg ? p[n] == '\0' : p[n] != '\0') return 404;
        if (strcmp(method, table[i].method) != 0) return 405;
        *route = table[i].route;
        *arg = table[i].has_arg ? p + n : NULL;
        return 0;
    }
    return 404;
}

/* ---- handlers of complete requests ---- */

static enum MHD_Result do_transaction(mx_as_server *s, struct MHD_Connection *c, request *rq)
{
    mx_event_batch batch;
    mx_parse_error perr;
    int rc = mx_event_batch_parse((const char *)rq->body.data, rq->body.len, &batch, &perr);
    if (rc == MX_ERR_NOT_JSON) return answer_error(s, c, 400, "M_NOT_JSON", perr.message);
    if (rc == MX_ERR_BAD_JSON) return answer_error(s, c, 400, "M_BAD_JSON", perr.message);
    if (rc == MX_ERR_TOO_LARGE) return answer_error(s, c, 413, "M_TOO_LARGE", perr.message);
    if (rc != MX_OK) return answer_error(s, c, 500, "M_UNKNOWN", mx_strerror(rc));

    pthread_mutex_lock(&s->commit_mu);
    rc = s->store.commit(s->store.ctx, rq->arg, &batch);
    if (rc == MX_TXN_STORED && s->handler.on_events)
        s->handler.on_events(s->handler.ctx, rq->arg, &batch);
    pthread_mutex_unlock(&s->commit_mu);

    pthread_mutex_lock(&s->stats_mu);
    if (rc == MX_TXN_STORED) {
        s->stats.txn_stored++;
        s->stats.events += batch.count;
    } else if (rc == MX_TXN_DUPLICATE) {
        s->stats.txn_duplicate++;
    } else {
        s->stats.txn_failed++;
    }
    pthread_mutex_unlock(&s->stats_mu);
    mx_event_batch_free(&batch);
    if (rc == MX_TXN_STORED || rc == MX_TXN_DUPLICATE) return answer(c, 200, "{}");
    return answer_error(s, c, 500, "M_UNKNOWN", "could not store the transaction");
}

static enum MHD_Result do_ping(mx_as_server *s, struct MHD_Connection *c, request *rq)
{
    char *txn = NULL;
    if (rq->body.len) {
        if (!mx_utf8_valid((const char *)rq->body.data, rq->body.len))
            return answer_error(s, c, 400, "M_NOT_JSON", "body is not valid UTF-8");
        cJSON *o = cJSON_ParseWithLength((const char *)rq->body.data, rq->body.len);
        if (!o) return answer_error(s, c, 400, "M_NOT_JSON", "body is not valid JSON");
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            return answer_error(s, c, 400, "M_BAD_JSON", "body is not a JSON object");
        }
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "transaction_id");
        if (cJSON_IsString(t) && t->valuestring) txn = strdup(t->valuestring);
        cJSON_Delete(o);
    }
    if (s->handler.on_ping) s->handler.on_ping(s->handler.ctx, txn);
    free(txn);
    return answer(c, 200, "{}");
}

static enum MHD_Result do_query(mx_as_server *s, struct MHD_Connection *c, request *rq)
{
    bool found = false;
    if (rq->route == R_USER && s->handler.query_user)
        found = s->handler.query_user(s->handler.ctx, rq->arg);
    if (rq->route == R_ROOM && s->handler.query_alias)
        found = s->handler.query_alias(s->handler.ctx, rq->arg);
    if (found) return answer(c, 200, "{}");
    return answer_error(s, c, 404, "M_NOT_FOUND",
                        rq->route == R_USER ? "no such user" : "no such alias");
}

/* Strict decimal parse of a Content-Length value. */
static bool parse_length(const char *v, unsigned long long *out)
{
    if (!v || !*v) return false;
    unsigned long long n = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9') return false;
        if (n > (~0ull - 9) / 10) return false;
        n = n * 10 + (unsigned)(*v - '0');
    }
    *out = n;
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    mx_as_server *s = cls;
    request *rq = *con_cls;
    if (!rq) {
        /* first call: headers only */
        enum route route = R_NONE;
        const char *arg = NULL;
        unsigned st = route_path(url, method, &route, &arg);
        if (st == 404) return answer_error(s, c, 404, "M_UNRECOGNIZED", "unrecognized request");
        if (st == 405) return answer_error(s, c, 405, "M_UNRECOGNIZED", "method not allowed");
        st = authenticate(s, c);
        if (st == 401) return answer_error(s, c, 401, "M_UNAUTHORIZED", "missing hs_token");
        if (st == 403) return answer_error(s, c, 403, "M_FORBIDDEN", "bad hs_token");
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        unsigned long long clen = 0;
        if (cl && parse_length(cl, &clen) && clen > s->max_body)
            return answer_error(s, c, 413, "M_TOO_LARGE", "body too large");
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        rq->route = route;
        if (arg && !(rq->arg = strdup(arg))) {
            free(rq);
            return MHD_NO;
        }
        wb_buf_init(&rq->body);
        if (cl && clen && !wb_buf_reserve(&rq->body, (size_t)clen)) {
            free(rq->arg);
            free(rq);
            return MHD_NO;
        }
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (!rq->too_large && rq->body.len + n > s->max_body) {
            rq->too_large = true;
            wb_buf_free(&rq->body);
        }
        if (!rq->too_large && !wb_buf_append(&rq->body, upload_data, n)) return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->too_large) return answer_error(s, c, 413, "M_TOO_LARGE", "body too large");
    switch (rq->route) {
    case R_TXN: return do_transaction(s, c, rq);
    case R_PING: return do_ping(s, c, rq);
    case R_USER:
    case R_ROOM: return do_query(s, c, rq);
    case R_NONE: break;
    }
    return answer_error(s, c, 404, "M_UNRECOGNIZED", "unrecognized request");
}

static void request_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    request *rq = *con_cls;
    if (!rq) return;
    free(rq->arg);
    wb_buf_free(&rq->body);
    free(rq);
    *con_cls = NULL;
}

int mx_as_server_start(const mx_as_config *cfg, const mx_txn_store *store,
                       const mx_as_handler *handler, mx_as_server **out)
{
    *out = NULL;
    if (!cfg || !store || !store->commit || !cfg->hs_token || !*cfg->hs_token)
        return MX_ERR_INVALID;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(cfg->port);
    if (inet_pton(AF_INET, cfg->bind_addr ? cfg->bind_addr : "127.0.0.1", &sa.sin_addr) != 1)
        return MX_ERR_INVALID;
    mx_as_server *s = calloc(1, sizeof *s);
    if (!s) return MX_ERR_NOMEM;
    s->hs_token = strdup(cfg->hs_token);
    if (!s->hs_token) {
        free(s);
        return MX_ERR_NOMEM;
    }
    s->hs_token_len = strlen(s->hs_token);
    s->max_body = cfg->max_body ? cfg->max_body : MX_AS_DEFAULT_MAX_BODY;
    s->store = *store;
    if (handler) s->handler = *handler;
    pthread_mutex_init(&s->commit_mu, NULL);
    pthread_mutex_init(&s->stats_mu, NULL);
    unsigned threads = cfg->threads ? cfg->threads : 4;
    s->daemon = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(cfg->conn_timeout_s ? cfg->conn_timeout_s : 60),
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        pthread_mutex_destroy(&s->commit_mu);
        pthread_mutex_destroy(&s->stats_mu);
        free(s->hs_token);
        free(s);
        return MX_ERR_IO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    *out = s;
    return MX_OK;
}

uint16_t mx_as_server_port(const mx_as_server *s)
{
    return s->port;
}

void mx_as_server_stats(mx_as_server *s, mx_as_stats *out)
{
    pthread_mutex_lock(&s->stats_mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->stats_mu);
}

void mx_as_server_stop(mx_as_server *s)
{
    if (!s) return;
    MHD_stop_daemon(s->daemon);
    pthread_mutex_destroy(&s->commit_mu);
    pthread_mutex_destroy(&s->stats_mu);
    /* wipe the secret before it goes back to the allocator */
    memset(s->hs_token, 0, s->hs_token_len);
    free(s->hs_token);
    free(s);
}
