/*
 * tests/matrix/test_mx_as_server.c - conformance of the appservice endpoint (matrix/as_server.h):
 * tokens (missing / wrong / Bearer / legacy ?access_token= on unprefixed paths), spec error
 * bodies, duplicate txnIds (also after a "restart": a new server on the same store), store
 * failures answered 500 and retried, malformed and oversized bodies (Content-Length and chunked),
 * Content-Length on every answer, users/rooms queries, ping, ephemeral events, and concurrent
 * transactions whose events reach the dispatcher in commit order.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>

#include "matrix/as_server.h"
#include "matrix/err.h"
#include "mx_test.h"
#include "tests/unit/check.h"

#define TOKEN "hs-secret-token-0123456789"

/* What the dispatcher saw, in order. */
typedef struct seen {
    pthread_mutex_t mu;
    char **json; /* event JSON copies */
    size_t n, cap;
    size_t calls; /* on_events calls */
    char last_ping[64];
} seen;

static seen S = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_events(void *ctx, const char *txn_id, const mx_event_batch *b)
{
    seen *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->calls++;
    for (size_t i = 0; i < b->count; i++) {
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 64;
            s->json = realloc(s->json, s->cap * sizeof *s->json);
        }
        s->json[s->n++] = strdup(b->events[i].json);
    }
    pthread_mutex_unlock(&s->mu);
}

static bool query_user(void *ctx, const char *user_id)
{
    return strncmp(user_id, "@whatsapp_", 10) == 0;
}

static bool query_alias(void *ctx, const char *alias)
{
    return strcmp(alias, "#whatsapp_group:example.org") == 0;
}

static void on_ping(void *ctx, const char *txn)
{
    seen *s = ctx;
    pthread_mutex_lock(&s->mu);
    snprintf(s->last_ping, sizeof s->last_ping, "%s", txn ? txn : "(none)");
    pthread_mutex_unlock(&s->mu);
}

static size_t seen_count(void)
{
    pthread_mutex_lock(&S.mu);
    size_t n = S.n;
    pthread_mutex_unlock(&S.mu);
    return n;
}

static unsigned g_port;

static long req(const char *method, const char *path, const char *auth, const char *body,
                char **out)
{
    char url[512], hdr[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", g_port, path);
    const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
    if (auth) {
        snprintf(hdr, sizeof hdr, "Authorization: %s", auth);
        headers[1] = hdr;
    }
    return t_http(method, url, headers, body, body ? strlen(body) : 0, out);
}

/* status + errcode in one check */
#define EXPECT(st, ec, method, path, auth, body)                                                   \
    do {                                                                                           \
        char *out_ = NULL;                                                                         \
        CHECK_INT(req(method, path, auth, body, &out_), st);                                       \
        CHECK_STR(t_errcode(out_), ec);                                                            \
        free(out_);                                                                                \
    } while (0)

#define BEARER "Bearer " TOKEN
#define TXN_BODY                                                                                   \
    "{\"events\":[{\"type\":\"m.room.message\",\"event_id\":\"$a\",\"room_id\":\"!r:x\","          \
    "\"sender\":\"@u:x\",\"content\":{}}]}"

/* Sends a raw request, returns the whole answer (malloc'd). */
static char *raw(const char *request, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return strdup("");
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, request + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += (size_t)n;
    }
    wb_buf b;
    wb_buf_init(&b);
    char buf[4096];
    for (int i = 0; i < 1000; i++) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        wb_buf_append(&b, buf, (size_t)n);
    }
    close(fd);
    wb_buf_u8(&b, 0);
    size_t l;
    return (char *)wb_buf_steal(&b, &l);
}

static bool has_content_length(const char *resp)
{
    const char *end = strstr(resp, "\r\n\r\n");
    for (const char *p = resp; p && (!end || p < end); p = strstr(p, "\r\n")) {
        p += (p == resp) ? 0 : 2;
        if (strncasecmp(p, "Content-Length:", 15) == 0) return true;
        if (p == resp) p++;
    }
    return false;
}

static void test_auth_and_routes(mx_mem_store *m)
{
    /* missing token: 401 M_UNAUTHORIZED; wrong: 403 M_FORBIDDEN; nothing stored either way */
    EXPECT(401, "M_UNAUTHORIZED", "PUT", "/_matrix/app/v1/transactions/t1", NULL, TXN_BODY);
    EXPECT(403, "M_FORBIDDEN", "PUT", "/_matrix/app/v1/transactions/t1", "Bearer nope", TXN_BODY);
    EXPECT(403, "M_FORBIDDEN", "PUT", "/_matrix/app/v1/transactions/t1", "Bearer " TOKEN "x",
           TXN_BODY);
    EXPECT(403, "M_FORBIDDEN", "PUT", "/_matrix/app/v1/transactions/t1", "Bearer hs-secret",
           TXN_BODY);
    EXPECT(403, "M_FORBIDDEN", "PUT", "/_matrix/app/v1/transactions/t1", "Basic " TOKEN, TXN_BODY);
    EXPECT(401, "M_UNAUTHORIZED", "PUT", "/_matrix/app/v1/transactions/t1", "Bearer ", TXN_BODY);
    EXPECT(403, "M_FORBIDDEN", "PUT", "/transactions/t1?access_token=wrong", NULL, TXN_BODY);
    EXPECT(401, "M_UNAUTHORIZED", "GET", "/_matrix/app/v1/users/@whatsapp_1:x", NULL, NULL);
    EXPECT(401, "M_UNAUTHORIZED", "POST", "/_matrix/app/v1/ping", NULL, "{}");
    CHECK_INT(mx_mem_store_commit_calls(m), 0);

    /* unknown paths and methods */
    EXPECT(404, "M_UNRECOGNIZED", "GET", "/_matrix/app/v1/nothing", BEARER, NULL);
    EXPECT(404, "M_UNRECOGNIZED", "PUT", "/_matrix/app/v1/transactions/", BEARER, TXN_BODY);
    EXPECT(405, "M_UNRECOGNIZED", "GET", "/_matrix/app/v1/transactions/t1", BEARER, NULL);
    EXPECT(405, "M_UNRECOGNIZED", "POST", "/_matrix/app/v1/users/@a:x", BEARER, "{}");
    EXPECT(404, "M_UNRECOGNIZED", "GET", "/_matrix/app/v1/pingx", BEARER, NULL);

    /* Bearer on the v1 path, and the legacy unprefixed path with ?access_token= */
    EXPECT(200, "", "PUT", "/_matrix/app/v1/transactions/t1", BEARER, TXN_BODY);
    EXPECT(200, "", "PUT", "/transactions/legacy1?access_token=" TOKEN, NULL, TXN_BODY);
    EXPECT(200, "", "GET", "/users/@whatsapp_9:x?access_token=" TOKEN, NULL, NULL);
    CHECK_INT(mx_mem_store_txn_count(m), 2);
    CHECK_INT(seen_count(), 2);

    /* users / rooms queries; the path arrives percent-encoded as homeservers send it */
    char *out = NULL;
    CHECK_INT(req("GET", "/_matrix/app/v1/users/%40whatsapp_123%3Aexample.org", BEARER, NULL, &out),
              200);
    CHECK_STR(out, "{}");
    free(out);
    EXPECT(404, "M_NOT_FOUND", "GET", "/_matrix/app/v1/users/%40alice%3Aexample.org", BEARER, NULL);
    EXPECT(200, "", "GET", "/_matrix/app/v1/rooms/%23whatsapp_group%3Aexample.org", BEARER, NULL);
    EXPECT(404, "M_NOT_FOUND", "GET", "/_matrix/app/v1/rooms/%23other%3Aexample.org", BEARER, NULL);

    /* ping */
    CHECK_INT(req("POST", "/_matrix/app/v1/ping", BEARER, "{\"transaction_id\":\"ping-42\"}", &out),
              200);
    CHECK_STR(out, "{}");
    free(out);
    CHECK_STR(S.last_ping, "ping-42");
    EXPECT(400, "M_NOT_JSON", "POST", "/_matrix/app/v1/ping", BEARER, "{oops");
}

static void test_bodies(mx_mem_store *m, mx_as_server *srv)
{
    size_t txns = mx_mem_store_txn_count(m);
    size_t calls = mx_mem_store_commit_calls(m);
    EXPECT(400, "M_NOT_JSON", "PUT", "/_matrix/app/v1/transactions/bad1", BEARER, "{\"events\":[");
    EXPECT(400, "M_NOT_JSON", "PUT", "/_matrix/app/v1/transactions/bad2", BEARER, "");
    EXPECT(400, "M_NOT_JSON", "PUT", "/_matrix/app/v1/transactions/bad3", BEARER,
           "{\"events\":[{\"type\":\"\xff\"}]}");
    EXPECT(400, "M_BAD_JSON", "PUT", "/_matrix/app/v1/transactions/bad4", BEARER, "[]");
    EXPECT(400, "M_BAD_JSON", "PUT", "/_matrix/app/v1/transactions/bad5", BEARER, "{\"events\":7}");
    EXPECT(400, "M_BAD_JSON", "PUT", "/_matrix/app/v1/transactions/bad6", BEARER, "{}");
    /* a rejected body records nothing: the same id with a good body is new */
    CHECK_INT(mx_mem_store_commit_calls(m), calls);
    EXPECT(200, "", "PUT", "/_matrix/app/v1/transactions/bad1", BEARER, TXN_BODY);
    CHECK_INT(mx_mem_store_txn_count(m), txns + 1);

    /* oversized with Content-Length: 413 without reading it (max_body is 4096 here) */
    char *big = malloc(8192);
    memset(big, ' ', 8191);
    memcpy(big, "{\"events\":[]}", 13);
    big[8191] = '\0';
    EXPECT(413, "M_TOO_LARGE", "PUT", "/_matrix/app/v1/transactions/big1", BEARER, big);
    free(big);
    /* oversized and chunked (no Content-Length): 413 after the body */
    char chunked[16384];
    int n = snprintf(
        chunked, sizeof chunked,
        "PUT /_matrix/app/v1/transactions/big2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        TOKEN);
    for (int i = 0; i < 3; i++) {
        n += snprintf(chunked + n, sizeof chunked - (size_t)n, "800\r\n");
        memset(chunked + n, ' ', 0x800);
        n += 0x800;
        n += snprintf(chunked + n, sizeof chunked - (size_t)n, "\r\n");
    }
    n += snprintf(chunked + n, sizeof chunked - (size_t)n, "0\r\n\r\n");
    char *resp = raw(chunked, (size_t)n);
    CHECK(strncmp(resp, "HTTP/1.1 413", 12) == 0);
    CHECK(strstr(resp, "M_TOO_LARGE") != NULL);
    free(resp);
    CHECK_INT(mx_mem_store_txn_count(m), txns + 1);

    /* Content-Length on answers: 200, 404, 401, 413 */
    const char *reqs[] = {
        "GET /_matrix/app/v1/users/@whatsapp_1:x HTTP/1.1\r\nHost: x\r\nAuthorization: "
        "Bearer " TOKEN "\r\nConnection: close\r\n\r\n",
        "GET /_matrix/app/v1/users/@a:x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
        "\r\nConnection: close\r\n\r\n",
        "GET /_matrix/app/v1/users/@a:x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "PUT /_matrix/app/v1/transactions/cl1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
        "\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"events\":[]}",
        "PUT /_matrix/app/v1/transactions/cl2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
        "\r\nContent-Length: 999999\r\nConnection: close\r\n\r\n",
        "PUT /_matrix/app/v1/transactions/cl3 HTTP/1.0\r\nAuthorization: Bearer " TOKEN
        "\r\nContent-Length: 13\r\n\r\n{\"events\":[]}",
    };
    const char *want[] = {"HTTP/1.1 200", "HTTP/1.1 404", "HTTP/1.1 401",
                          "HTTP/1.1 200", "HTTP/1.1 413", "HTTP/1.1 200"};
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        resp = raw(reqs[i], strlen(reqs[i]));
        CHECK(strncmp(resp, want[i], strlen(want[i])) == 0);
        if (strncmp(resp, want[i], strlen(want[i])) != 0)
            fprintf(stderr, "request %zu answered: %.80s\n", i, resp);
        CHECK(has_content_length(resp));
        CHECK(strstr(resp, "chunked") == NULL);
        free(resp);
    }
    mx_as_stats st;
    mx_as_server_stats(srv, &st); /* every 4xx so far was counted */
    CHECK_INT(st.rejected, 28);
}

static void test_duplicates_and_failures(mx_mem_store *m, mx_as_server **srv,
                                         const mx_as_config *cfg, const mx_txn_store *store,
                                         const mx_as_handler *h)
{
    const char *body2 = "{\"events\":[{\"type\":\"a\",\"event_id\":\"$d1\"},{\"type\":\"b\","
                        "\"event_id\":\"$d2\"}]}";
    size_t ev0 = mx_mem_store_event_count(m), seen0 = seen_count();
    EXPECT(200, "", "PUT", "/_matrix/app/v1/transactions/dup1", BEARER, body2);
    EXPECT(200, "", "PUT", "/_matrix/app/v1/transactions/dup1", BEARER, body2);
    EXPECT(200, "", "PUT", "/transactions/dup1?access_token=" TOKEN, NULL, body2);
    CHECK_INT(mx_mem_store_event_count(m), ev0 + 2);
    CHECK_INT(seen_count(), seen0 + 2);
    mx_as_stats st;
    mx_as_server_stats(*srv, &st);
    CHECK_INT(st.txn_duplicate, 2);

    /* "restart": a new server on the same store; the old id is still a duplicate */
    mx_as_server_stop(*srv);
    mx_as_config c2 = *cfg;
    c2.port = (uint16_t)g_port;
    CHECK_INT(mx_as_server_start(&c2, store, h, srv), MX_OK);
    EXPECT(200, "", "PUT", "/_matrix/app/v1/transactions/dup1", BEARER, body2);
    CHECK_INT(mx_mem_store_event_count(m), ev0 + 2);
    CHECK_INT(seen_count(), seen0 + 2);
    EXPECT(200, "", "PUT", "/_matrix/app/v1/transactions/after-restart", BEARER, body2);
    CHECK_INT(mx_mem_store_event_count(m), ev0 + 4);

    /* the store fails: 500, nothing dispatched; the homeserver's retry of the same id lands once */
    mx_mem_store_fail_next(m, 2);
    EXPECT(500, "M_UNKNOWN", "PUT", "/_matrix/app/v1/transactions/flaky", BEARER, body2);
    EXPECT(500, "M_UNKNOWN", "PUT", "/_matrix/app/v1/transactions/flaky", BEARER, body2);
    CHECK_INT(seen_count(), seen0 + 4);
    EXPECT(200, "", "PUT", "/_matrix/app/v1/transactions/flaky", BEARER, body2);
    EXPECT(200, "", "PUT", "/_matrix/app/v1/transactions/flaky", BEARER, body2);
    CHECK_INT(mx_mem_store_event_count(m), ev0 + 6);
    CHECK_INT(seen_count(), seen0 + 6);
    mx_as_server_stats(*srv, &st);
    CHECK_INT(st.txn_failed, 2);

    /* ephemeral events under both keys are handed over after the timeline events */
    size_t s0 = seen_count();
    EXPECT(200, "", "PUT", "/_matrix/app/v1/transactions/eph1", BEARER,
           "{\"events\":[{\"type\":\"m.room.message\"}],\"ephemeral\":[{\"type\":\"m.typing\"}],"
           "\"de.sorunome.msc2409.ephemeral\":[{\"type\":\"m.typing\"}]}");
    EXPECT(200, "", "PUT", "/_matrix/app/v1/transactions/eph2", BEARER,
           "{\"events\":[],\"de.sorunome.msc2409.ephemeral\":[{\"type\":\"m.receipt\"}]}");
    CHECK_INT(seen_count(), s0 + 3);
    pthread_mutex_lock(&S.mu);
    CHECK(strstr(S.json[s0], "m.room.message") != NULL);
    CHECK(strstr(S.json[s0 + 1], "m.typing") != NULL);
    CHECK(strstr(S.json[s0 + 2], "m.receipt") != NULL);
    pthread_mutex_unlock(&S.mu);
}

#define CONC_THREADS 8
#define CONC_TXNS    20
#define CONC_EVENTS  5

static void *conc_thread(void *arg)
{
    int k = (int)(intptr_t)arg;
    int ok = 0;
    for (int i = 0; i < CONC_TXNS; i++) {
        char body[1024], path[128];
        int n = snprintf(body, sizeof body, "{\"events\":[");
        for (int j = 0; j < CONC_EVENTS; j++)
            n += snprintf(body + n, sizeof body - (size_t)n,
                          "%s{\"type\":\"c\",\"content\":{\"t\":%d,\"i\":%d,\"j\":%d}}",
                          j ? "," : "", k, i, j);
        snprintf(body + n, sizeof body - (size_t)n, "]}");
        snprintf(path, sizeof path, "/_matrix/app/v1/transactions/c%d-%d", k, i);
        if (req("PUT", path, BEARER, body, NULL) == 200) ok++;
    }
    return (void *)(intptr_t)ok;
}

static void test_concurrent(mx_mem_store *m)
{
    size_t s0 = seen_count(), e0 = mx_mem_store_event_count(m);
    pthread_t th[CONC_THREADS];
    for (int k = 0; k < CONC_THREADS; k++)
        pthread_create(&th[k], NULL, conc_thread, (void *)(intptr_t)k);
    int ok = 0;
    for (int k = 0; k < CONC_THREADS; k++) {
        void *r;
        pthread_join(th[k], &r);
        ok += (int)(intptr_t)r;
    }
    CHECK_INT(ok, CONC_THREADS * CONC_TXNS);
    size_t total = (size_t)CONC_THREADS * CONC_TXNS * CONC_EVENTS;
    CHECK_INT(seen_count() - s0, total);
    CHECK_INT(mx_mem_store_event_count(m) - e0, total);
    /* dispatch order == commit order; per sender, transactions in the order sent; inside a
     * transaction, events contiguous and in body order */
    int last_i[CONC_THREADS];
    for (int k = 0; k < CONC_THREADS; k++)
        last_i[k] = -1;
    bool order_ok = true, same_as_store = true;
    pthread_mutex_lock(&S.mu);
    for (size_t x = 0; x < total; x++) {
        char *st = mx_mem_store_event_json(m, e0 + x);
        if (!st || strcmp(st, S.json[s0 + x]) != 0) same_as_store = false;
        free(st);
        int t = -1, i = -1, j = -1;
        const char *c = strstr(S.json[s0 + x], "\"t\":");
        if (!c || sscanf(c, "\"t\":%d,\"i\":%d,\"j\":%d", &t, &i, &j) != 3 || t < 0 ||
            t >= CONC_THREADS) {
            order_ok = false;
            continue;
        }
        if (j == 0) {
            if (i != last_i[t] + 1) order_ok = false;
            last_i[t] = i;
        } else {
            const char *p = x ? strstr(S.json[s0 + x - 1], "\"t\":") : NULL;
            int pt, pi, pj;
            if (!p || sscanf(p, "\"t\":%d,\"i\":%d,\"j\":%d", &pt, &pi, &pj) != 3 || pt != t ||
                pi != i || pj != j - 1)
                order_ok = false;
        }
    }
    pthread_mutex_unlock(&S.mu);
    CHECK(order_ok);
    CHECK(same_as_store);
    for (int k = 0; k < CONC_THREADS; k++)
        CHECK_INT(last_i[k], CONC_TXNS - 1);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    mx_mem_store *m = mx_mem_store_new();
    mx_txn_store store = mx_mem_store_iface(m);
    mx_as_handler h = {.ctx = &S,
                       .on_events = on_events,
                       .query_user = query_user,
                       .query_alias = query_alias,
                       .on_ping = on_ping};
    mx_as_config cfg = {.hs_token = TOKEN, .max_body = 4096, .threads = 4};
    mx_as_server *srv = NULL;
    CHECK_INT(mx_as_server_start(&cfg, &store, &h, &srv), MX_OK);
    if (!srv) return CHECK_DONE();
    g_port = mx_as_server_port(srv);
    CHECK(g_port != 0);
    /* bad configurations */
    mx_as_server *bad = NULL;
    mx_as_config nocfg = {.hs_token = ""};
    CHECK_INT(mx_as_server_start(&nocfg, &store, &h, &bad), MX_ERR_INVALID);
    mx_as_config taken = {.hs_token = TOKEN, .port = (uint16_t)g_port};
    CHECK_INT(mx_as_server_start(&taken, &store, &h, &bad), MX_ERR_IO);

    test_auth_and_routes(m);
    test_bodies(m, srv);
    test_duplicates_and_failures(m, &srv, &cfg, &store, &h);
    test_concurrent(m);

    /* once the inbox was processed (events dropped), a repeat is still recognised */
    mx_mem_store_forget_events(m);
    CHECK_INT(mx_mem_store_event_count(m), 0);
    size_t txns = mx_mem_store_txn_count(m);
    EXPECT(200, "", "PUT", "/_matrix/app/v1/transactions/dup1", BEARER, TXN_BODY);
    CHECK_INT(mx_mem_store_event_count(m), 0);
    CHECK_INT(mx_mem_store_txn_count(m), txns);

    mx_as_server_stop(srv);
    mx_mem_store_free(m);
    for (size_t i = 0; i < S.n; i++)
        free(S.json[i]);
    free(S.json);
    curl_global_cleanup();
    return CHECK_DONE();
}
