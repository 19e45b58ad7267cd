/*
 * matrix/client.c - the client-server API client on libcurl (see client.h).
 *
 * Everything funnels into call(): build the URL (path + query + user_id), run one attempt with
 * libcurl, classify the outcome (success, retryable, final) and sleep before the next attempt as
 * the policy says. Answers are read into a bounded buffer; JSON answers are parsed with cJSON and
 * error answers mined for errcode / error / retry_after_ms.
 */
#include "matrix/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define MX_JSON_MAX  (8u * 1024u * 1024u)   /* bytes of a JSON answer we accept */
#define MX_MEDIA_MAX (100u * 1024u * 1024u) /* default bound of a download */

typedef struct ghost_set {
    char **slots; /* open addressing; NULL = empty */
    size_t cap;   /* power of two, 0 before first insert */
    size_t len;   /* entries, kept <= cap / 2 */
} ghost_set;

struct mx_client {
    CURL *curl;              /* one easy handle, reused (keep-alive) */
    char *hs_url;            /* without trailing '/' */
    char *auth_header;       /* "Authorization: Bearer <as_token>"; secret, never logged */
    char *server_name;       /* homeserver name */
    char *bot_id;            /* "@bot:server" */
    long timeout_ms;         /* per attempt, > 0 */
    long connect_timeout_ms; /* per attempt, > 0 */
    unsigned max_attempts;   /* per call, >= 1 */
    long backoff_initial_ms; /* first retry delay, > 0 */
    long backoff_max_ms;     /* cap of the doubling delay */
    long deadline_ms;        /* total budget of one call, waits included */
    mx_ghost_store ghosts;   /* caller's persistence hook (fields may be NULL) */
    mx_puppet_auth puppets;  /* caller's double puppeting tokens (fields may be NULL) */
    ghost_set known;         /* registered ghosts (MXIDs) */
    uint64_t rng;            /* xorshift state for jitter, never 0 */
    uint64_t txn_prefix;     /* random per client, makes txn ids unique across restarts */
    uint64_t txn_counter;    /* increments per txn id */
    mx_client_stats stats;   /* counters since mx_client_new */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool set_has(const ghost_set *g, const char *k)
{
    if (!g->cap) return false;
    for (size_t i = fnv1a(k) & (g->cap - 1);; i = (i + 1) & (g->cap - 1)) {
        if (!g->slots[i]) return false;
        if (strcmp(g->slots[i], k) == 0) return true;
    }
}

static void set_put(char **slots, size_t cap, char *k)
{
    size_t i = fnv1a(k) & (cap - 1);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = k;
}

static int set_add(ghost_set *g, const char *k)
{
    if (set_has(g, k)) return MX_OK;
    if ((g->len + 1) * 2 > g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 64;
        char **n = calloc(ncap, sizeof *n);
        if (!n) return MX_ERR_NOMEM;
        for (size_t i = 0; i < g->cap; i++)
            if (g->slots[i]) set_put(n, ncap, g->slots[i]);
        free(g->slots);
        g->slots = n;
        g->cap = ncap;
    }
    char *copy = strdup(k);
    if (!copy) return MX_ERR_NOMEM;
    set_put(g->slots, g->cap, copy);
    g->len++;
    return MX_OK;
}

static int set_err(mx_error *err, int code, long status, const char *errcode, const char *msg)
{
    if (err) {
        err->code = code;
        err->http_status = status;
        snprintf(err->errcode, sizeof err->errcode, "%s", errcode ? errcode : "");
        snprintf(err->error, sizeof err->error, "%s", msg ? msg : mx_strerror(code));
    }
    return code;
}

char *mx_url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1);
    if (!out) return NULL;
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* snprintf into a malloc'd string. */
static char *strf(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

/* ---- lifecycle ---- */

mx_client *mx_client_new(const mx_client_config *cfg)
{
    if (!cfg || !cfg->hs_url || !cfg->as_token || !cfg->server_name || !cfg->bot_localpart)
        return NULL;
    pthread_once(&curl_once, curl_init_once);
    mx_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->curl = curl_easy_init();
    c->hs_url = strdup(cfg->hs_url);
    c->auth_header = strf("Authorization: Bearer %s", cfg->as_token);
    c->server_name = strdup(cfg->server_name);
    c->bot_id = strf("@%s:%s", cfg->bot_localpart, cfg->server_name);
    if (!c->curl || !c->hs_url || !c->auth_header || !c->server_name || !c->bot_id) {
        mx_client_free(c);
        return NULL;
    }
    size_t n = strlen(c->hs_url);
    while (n && c->hs_url[n - 1] == '/')
        c->hs_url[--n] = '\0';
    c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 5000;
    c->max_attempts = cfg->max_attempts ? cfg->max_attempts : 8;
    c->backoff_initial_ms = cfg->backoff_initial_ms > 0 ? cfg->backoff_initial_ms : 200;
    c->backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 10000;
    c->deadline_ms = cfg->deadline_ms > 0 ? cfg->deadline_ms : 120000;
    c->ghosts = cfg->ghosts;
    c->puppets = cfg->puppets;
    uint64_t seed[2] = {0, 0};
    if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed) {
        seed[0] = (uint64_t)now_ms() ^ (uint64_t)(uintptr_t)c;
        seed[1] = seed[0] * 0x9e3779b97f4a7c15ull;
    }
    c->rng = seed[0] | 1;
    c->txn_prefix = seed[1];
    return c;
}

void mx_client_free(mx_client *c)
{
    if (!c) return;
    if (c->curl) curl_easy_cleanup(c->curl);
    free(c->hs_url);
    if (c->auth_header) {
        memset(c->auth_header, 0, strlen(c->auth_header));
        free(c->auth_header);
    }
    free(c->server_name);
    free(c->bot_id);
    for (size_t i = 0; i < c->known.cap; i++)
        free(c->known.slots[i]);
    free(c->known.slots);
    free(c);
}

const char *mx_client_bot_id(const mx_client *c)
{
    return c->bot_id;
}

char *mx_client_user_id(const mx_client *c, const char *localpart)
{
    return strf("@%s:%s", localpart, c->server_name);
}

void mx_client_new_txn_id(mx_client *c, char *buf, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, cap, "wb%016llx.%lld.%llu", (unsigned long long)c->txn_prefix,
             (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
             (unsigned long long)++c->txn_counter);
}

void mx_client_stats_get(const mx_client *c, mx_client_stats *out)
{
    *out = c->stats;
}

/* ---- one request ---- */

typedef struct resp {
    wb_buf body;         /* answer body, at most max bytes */
    size_t max;          /* bound */
    bool overflow;       /* the body passed max */
    long retry_after_ms; /* from a Retry-After header (seconds), 0 = none */
    char content_type[128];
} resp;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    resp *r = ud;
    size_t len = size * n;
    if (r->body.len + len > r->max) {
        r->overflow = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (!wb_buf_append(&r->body, p, len)) return 0;
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    resp *r = ud;
    size_t len = size * n;
    char line[256];
    size_t k = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, p, k);
    line[k] = '\0';
    while (k && (line[k - 1] == '\r' || line[k - 1] == '\n'))
        line[--k] = '\0';
    if (strncasecmp(line, "retry-after:", 12) == 0) {
        long secs = strtol(line + 12, NULL, 10);
        if (secs > 0 && secs < 3600) r->retry_after_ms = secs * 1000;
    } else if (strncasecmp(line, "content-type:", 13) == 0) {
        const char *v = line + 13;
        while (*v == ' ')
            v++;
        snprintf(r->content_type, sizeof r->content_type, "%.127s", v);
    }
    return len;
}

/* What call() needs to know about a request. */
typedef struct req {
    const char *method;       /* "GET", "PUT", "POST" */
    const char *path;         /* escaped path */
    const char *as_user;      /* NULL = bot */
    const char *query;        /* extra query string or NULL */
    const uint8_t *body;      /* request body or NULL */
    size_t body_len;          /* bytes in body */
    const char *content_type; /* of the body; NULL = application/json */
    bool raw;                 /* keep the answer as bytes (media) instead of JSON */
    size_t max_answer;        /* bytes; 0 = MX_JSON_MAX */
    unsigned max_attempts;    /* 0 = client's */
    long deadline_ms;         /* 0 = client's */
} req;

typedef struct answer {
    long status; /* final HTTP status, 0 = none */
    cJSON *json; /* parsed body of a 2xx JSON answer (owned) */
    wb_buf raw;  /* body of a 2xx raw answer (owned) */
    char content_type[128];
} answer;

/* masquerade false: no ?user_id= (a puppet's own access token). */
static char *build_url(mx_client *c, const req *r, bool masquerade)
{
    char *user = NULL;
    if (r->as_user && masquerade) {
        user = mx_url_escape(r->as_user);
        if (!user) return NULL;
    }
    bool q = r->query && *r->query;
    char *url = strf("%s%s%s%s%s%s", c->hs_url, r->path, (q || user) ? "?" : "", q ? r->query : "",
                     (q && user) ? "&user_id=" : (user ? "user_id=" : ""), user ? user : "");
    free(user);
    return url;
}

/* Mines an error answer for errcode / error / retry_after_ms. */
static void parse_error_body(const resp *rs, mx_error *e)
{
    e->errcode[0] = '\0';
    e->error[0] = '\0';
    if (!rs->body.len) return;
    cJSON *o = cJSON_ParseWithLength((const char *)rs->body.data, rs->body.len);
    if (!o) return;
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(o, "errcode");
    const cJSON *er = cJSON_GetObjectItemCaseSensitive(o, "error");
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(o, "retry_after_ms");
    if (cJSON_IsString(ec)) snprintf(e->errcode, sizeof e->errcode, "%s", ec->valuestring);
    if (cJSON_IsString(er)) snprintf(e->error, sizeof e->error, "%s", er->valuestring);
    if (cJSON_IsNumber(ra) && ra->valuedouble > 0 && ra->valuedouble < 3600e3)
        e->retry_after_ms = (long)ra->valuedouble;
    cJSON_Delete(o);
}

static int call(mx_client *c, const req *r, answer *ans, mx_error *err)
{
    mx_error local;
    if (!err) err = &local;
    memset(err, 0, sizeof *err);
    memset(ans, 0, sizeof *ans);
    wb_buf_init(&ans->raw);
    /* a double-puppeted user: that user's token instead of ours */
    char *puppet_auth = NULL;
    bool masquerade = true;
    if (r->as_user && c->puppets.token_for) {
        char tok[1024];
        bool puppet =
            c->puppets.token_for(c->puppets.ctx, r->as_user, tok, sizeof tok, &masquerade);
        tok[sizeof tok - 1] = '\0';
        if (puppet) puppet_auth = strf("Authorization: Bearer %s", tok);
        memset(tok, 0, sizeof tok);
        if (puppet && !puppet_auth) return set_err(err, MX_ERR_NOMEM, 0, NULL, NULL);
    }
    const char *auth = puppet_auth ? puppet_auth : c->auth_header;
    char *url = build_url(c, r, masquerade);
    if (!url) {
        if (puppet_auth) memset(puppet_auth, 0, strlen(puppet_auth));
        free(puppet_auth);
        return set_err(err, MX_ERR_NOMEM, 0, NULL, NULL);
    }
    unsigned max_attempts = r->max_attempts ? r->max_attempts : c->max_attempts;
    int64_t deadline = now_ms() + (r->deadline_ms ? r->deadline_ms : c->deadline_ms);
    long backoff = c->backoff_initial_ms;
    int rc = MX_ERR_NETWORK;
    for (unsigned attempt = 1;; attempt++) {
        err->attempts = attempt;
        c->stats.requests++;
        if (attempt > 1) c->stats.retries++;
        resp rs;
        memset(&rs, 0, sizeof rs);
        wb_buf_init(&rs.body);
        rs.max = r->max_answer ? r->max_answer : MX_JSON_MAX;
        struct curl_slist *hdr = NULL, *h2;
        char ct[160];
        snprintf(ct, sizeof ct, "Content-Type: %s",
                 r->content_type ? r->content_type : "application/json");
        if (!(h2 = curl_slist_append(hdr, auth)) || !(hdr = h2) ||
            !(h2 = curl_slist_append(hdr, "Expect:")) || !(hdr = h2) ||
            (r->body && (!(h2 = curl_slist_append(hdr, ct)) || !(hdr = h2)))) {
            curl_slist_free_all(hdr);
            free(url);
            if (puppet_auth) memset(puppet_auth, 0, strlen(puppet_auth));
            free(puppet_auth);
            return set_err(err, MX_ERR_NOMEM, 0, NULL, NULL);
        }
        int64_t left = deadline - now_ms();
        long tmo = c->timeout_ms < left ? c->timeout_ms : (long)(left > 1 ? left : 1);
        CURL *h = c->curl;
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, tmo);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                         c->connect_timeout_ms < tmo ? c->connect_timeout_ms : tmo);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &rs);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &rs);
        if (strcmp(r->method, "GET") == 0) {
            curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        } else {
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body ? (const char *)r->body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)(r->body ? r->body_len : 0));
        }
        CURLcode cc = curl_easy_perform(h);
        curl_slist_free_all(hdr);
        long status = 0;
        if (cc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        bool retry = false;
        long wait = 0;
        err->http_status = status;
        if (cc != CURLE_OK) {
            if (rs.overflow) {
                wb_buf_free(&rs.body);
                rc = set_err(err, MX_ERR_TOO_LARGE, 0, NULL, "answer larger than the limit");
                break;
            }
            rc = cc == CURLE_OPERATION_TIMEDOUT ? MX_ERR_TIMEOUT : MX_ERR_NETWORK;
            set_err(err, rc, 0, NULL, curl_easy_strerror(cc));
            retry = true;
        } else if (status >= 200 && status < 300) {
            snprintf(ans->content_type, sizeof ans->content_type, "%s", rs.content_type);
            ans->status = status;
            if (r->raw) {
                ans->raw = rs.body;
                wb_buf_init(&rs.body);
                rc = MX_OK;
            } else {
                ans->json = rs.body.len
                                ? cJSON_ParseWithLength((const char *)rs.body.data, rs.body.len)
                                : cJSON_CreateObject();
                rc = ans->json
                         ? MX_OK
                         : set_err(err, MX_ERR_UNEXPECTED, status, NULL, "answer is not JSON");
            }
            wb_buf_free(&rs.body);
            if (rc == MX_OK) { /* forget what failed attempts left behind */
                err->code = MX_OK;
                err->errcode[0] = err->error[0] = '\0';
                err->retry_after_ms = 0;
            }
            break;
        } else {
            err->retry_after_ms = 0;
            parse_error_body(&rs, err); /* errcode, error, retry_after_ms */
            if (status == 429) {
                if (!err->retry_after_ms) err->retry_after_ms = rs.retry_after_ms;
                wait = err->retry_after_ms;
                rc = MX_ERR_RATE_LIMITED;
                retry = true;
            } else {
                rc = MX_ERR_HTTP;
                retry = status >= 500;
            }
            err->code = rc;
            if (!err->error[0]) snprintf(err->error, sizeof err->error, "HTTP %ld", status);
        }
        wb_buf_free(&rs.body);
        if (!retry || attempt >= max_attempts) break;
        if (wait <= 0) {
            /* full jitter in [backoff/2, backoff] */
            wait = backoff / 2 + (long)(xorshift(&c->rng) % (uint64_t)(backoff / 2 + 1));
            backoff = backoff * 2 > c->backoff_max_ms ? c->backoff_max_ms : backoff * 2;
        }
        if (now_ms() + wait >= deadline) break;
        sleep_ms(wait);
    }
    free(url);
    if (puppet_auth) memset(puppet_auth, 0, strlen(puppet_auth));
    free(puppet_auth);
    if (rc != MX_OK) err->code = rc;
    return rc;
}

static void answer_free(answer *a)
{
    cJSON_Delete(a->json);
    wb_buf_free(&a->raw);
}

int mx_client_request(mx_client *c, const char *method, const char *path, const char *as_user,
                      const char *query, const cJSON *body, cJSON **json_out, mx_error *err)
{
    if (json_out) *json_out = NULL;
    char *txt = body ? cJSON_PrintUnformatted(body) : NULL;
    if (body && !txt) return set_err(err, MX_ERR_NOMEM, 0, NULL, NULL);
    req r = {.method = method,
             .path = path,
             .as_user = as_user,
             .query = query,
             .body = (const uint8_t *)txt,
             .body_len = txt ? strlen(txt) : 0};
    answer a;
    int rc = call(c, &r, &a, err);
    cJSON_free(txt);
    if (rc == MX_OK && json_out) {
        *json_out = a.json;
        a.json = NULL;
    }
    answer_free(&a);
    return rc;
}

/* Takes a string field of a 2xx answer. */
static int take_string(cJSON *o, const char *field, char **out, mx_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!cJSON_IsString(v) || !v->valuestring) {
        char msg[96];
        snprintf(msg, sizeof msg, "answer has no string `%s`", field);
        return set_err(err, MX_ERR_UNEXPECTED, 200, NULL, msg);
    }
    if (out && !(*out = strdup(v->valuestring))) return set_err(err, MX_ERR_NOMEM, 0, NULL, NULL);
    return MX_OK;
}

/* Request whose answer must carry the string `field` (copied into *out when out is not NULL). */
static int request_string(mx_client *c, const char *method, const char *path, const char *as_user,
                          const char *query, const cJSON *body, const char *field, char **out,
                          mx_error *err)
{
    if (out) *out = NULL;
    cJSON *a = NULL;
    int rc = mx_client_request(c, method, path, as_user, query, body, &a, err);
    if (rc == MX_OK && field) rc = take_string(a, field, out, err);
    cJSON_Delete(a);
    return rc;
}

/* Builds "/_matrix/client/v3/<fmt with escaped components>": each %s argument is escaped. */
static char *cpath(const char *fmt, const char *a, const char *b, const char *c3)
{
    char *ea = a ? mx_url_escape(a) : NULL, *eb = b ? mx_url_escape(b) : NULL,
         *ec = c3 ? mx_url_escape(c3) : NULL;
    char *p = NULL;
    if ((!a || ea) && (!b || eb) && (!c3 || ec))
        p = strf(fmt, ea ? ea : "", eb ? eb : "", ec ? ec : "");
    free(ea);
    free(eb);
    free(ec);
    return p;
}

#define NOMEM(err) set_err(err, MX_ERR_NOMEM, 0, NULL, NULL)

/* ---- start-up ---- */

int mx_client_wait_versions(mx_client *c, long wait_ms, char **versions_out, mx_error *err)
{
    if (versions_out) *versions_out = NULL;
    req r = {.method = "GET",
             .path = "/_matrix/client/versions",
             .max_attempts = 1000000,
             .deadline_ms = wait_ms > 0 ? wait_ms : 1};
    answer a;
    int rc = call(c, &r, &a, err);
    if (rc == MX_OK) {
        if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(a.json, "versions")))
            rc = set_err(err, MX_ERR_UNEXPECTED, a.status, NULL, "answer has no `versions` array");
        else if (versions_out && !(*versions_out = cJSON_PrintUnformatted(a.json)))
            rc = NOMEM(err);
    }
    answer_free(&a);
    return rc;
}

int mx_client_whoami(mx_client *c, const char *as_user, char **user_id, mx_error *err)
{
    return request_string(c, "GET", "/_matrix/client/v3/account/whoami", as_user, NULL, NULL,
                          "user_id", user_id, err);
}

int mx_client_appservice_ping(mx_client *c, const char *as_id, const char *txn_id, mx_error *err)
{
    char *p = cpath("/_matrix/client/v1/appservice/%s/ping", as_id, NULL, NULL);
    if (!p) return NOMEM(err);
    cJSON *b = cJSON_CreateObject();
    if (txn_id) cJSON_AddStringToObject(b, "transaction_id", txn_id);
    int rc = mx_client_request(c, "POST", p, NULL, NULL, b, NULL, err);
    cJSON_Delete(b);
    free(p);
    return rc;
}

int mx_client_startup(mx_client *c, const char *as_id, long wait_ms, mx_error *err)
{
    int rc = mx_client_wait_versions(c, wait_ms, NULL, err);
    if (rc != MX_OK) return rc;
    char *me = NULL;
    rc = mx_client_whoami(c, NULL, &me, err);
    if (rc != MX_OK) return rc;
    bool is_bot = strcmp(me, c->bot_id) == 0;
    free(me);
    if (!is_bot)
        return set_err(err, MX_ERR_UNEXPECTED, 200, NULL, "whoami is not the bot: wrong as_token?");
    char txn[64];
    mx_client_new_txn_id(c, txn, sizeof txn);
    return mx_client_appservice_ping(c, as_id, txn, err);
}

/* ---- ghosts ---- */

int mx_client_ensure_registered(mx_client *c, const char *localpart, mx_error *err)
{
    char *uid = mx_client_user_id(c, localpart);
    if (!uid) return NOMEM(err);
    int rc = MX_OK;
    if (set_has(&c->known, uid)) goto out;
    if (c->ghosts.known && c->ghosts.known(c->ghosts.ctx, uid)) {
        rc = set_add(&c->known, uid);
        goto out;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "m.login.application_service");
    cJSON_AddStringToObject(b, "username", localpart);
    cJSON_AddBoolToObject(b, "inhibit_login", 1);
    mx_error e;
    rc = mx_client_request(c, "POST", "/_matrix/client/v3/register", NULL, NULL, b, NULL, &e);
    cJSON_Delete(b);
    c->stats.registered++;
    if (rc == MX_ERR_HTTP && strcmp(e.errcode, "M_USER_IN_USE") == 0) rc = MX_OK;
    if (rc != MX_OK) {
        if (err) *err = e;
        goto out;
    }
    if (err) memset(err, 0, sizeof *err);
    if (c->ghosts.remember) c->ghosts.remember(c->ghosts.ctx, uid);
    rc = set_add(&c->known, uid);
out:
    free(uid);
    return rc;
}

/* ---- rooms ---- */

int mx_client_create_room(mx_client *c, const char *as_user, const mx_create_room *o,
                          char **room_id, mx_error *err)
{
    static const mx_create_room none;
    if (!o) o = &none;
    cJSON *b = cJSON_CreateObject();
    if (!b) return NOMEM(err);
    cJSON_AddStringToObject(b, "preset", o->preset ? o->preset : "private_chat");
    cJSON_AddStringToObject(b, "visibility", "private");
    if (o->name) cJSON_AddStringToObject(b, "name", o->name);
    if (o->topic) cJSON_AddStringToObject(b, "topic", o->topic);
    if (o->room_alias_name) cJSON_AddStringToObject(b, "room_alias_name", o->room_alias_name);
    if (o->is_direct) cJSON_AddBoolToObject(b, "is_direct", 1);
    if (o->invite) {
        cJSON *inv = cJSON_AddArrayToObject(b, "invite");
        for (const char *const *u = o->invite; *u; u++)
            cJSON_AddItemToArray(inv, cJSON_CreateString(*u));
    }
    if (o->initial_state)
        cJSON_AddItemToObject(b, "initial_state", cJSON_Duplicate(o->initial_state, 1));
    if (o->power_level_override)
        cJSON_AddItemToObject(b, "power_level_content_override",
                              cJSON_Duplicate(o->power_level_override, 1));
    if (o->creation_content)
        cJSON_AddItemToObject(b, "creation_content", cJSON_Duplicate(o->creation_content, 1));
    int rc = request_string(c, "POST", "/_matrix/client/v3/createRoom", as_user, NULL, b, "room_id",
                            room_id, err);
    cJSON_Delete(b);
    return rc;
}

int mx_client_join(mx_client *c, const char *as_user, const char *room, char **room_id,
                   mx_error *err)
{
    char *p = cpath("/_matrix/client/v3/join/%s", room, NULL, NULL);
    if (!p) return NOMEM(err);
    cJSON *b = cJSON_CreateObject();
    int rc = request_string(c, "POST", p, as_user, NULL, b, "room_id", room_id, err);
    cJSON_Delete(b);
    free(p);
    return rc;
}

static int membership(mx_client *c, const char *as_user, const char *room, const char *what,
                      const char *user_id, const char *reason, mx_error *err)
{
    char *p = cpath("/_matrix/client/v3/rooms/%s/%s", room, what, NULL);
    if (!p) return NOMEM(err);
    cJSON *b = cJSON_CreateObject();
    if (user_id) cJSON_AddStringToObject(b, "user_id", user_id);
    if (reason) cJSON_AddStringToObject(b, "reason", reason);
    int rc = mx_client_request(c, "POST", p, as_user, NULL, b, NULL, err);
    cJSON_Delete(b);
    free(p);
    return rc;
}

int mx_client_invite(mx_client *c, const char *as_user, const char *room_id, const char *user_id,
                     mx_error *err)
{
    return membership(c, as_user, room_id, "invite", user_id, NULL, err);
}

int mx_client_leave(mx_client *c, const char *as_user, const char *room_id, mx_error *err)
{
    return membership(c, as_user, room_id, "leave", NULL, NULL, err);
}

int mx_client_kick(mx_client *c, const char *as_user, const char *room_id, const char *user_id,
                   const char *reason, mx_error *err)
{
    return membership(c, as_user, room_id, "kick", user_id, reason, err);
}

/* ---- events ---- */

int mx_client_send_state(mx_client *c, const char *as_user, const char *room_id, const char *type,
                         const char *state_key, const cJSON *content, char **event_id,
                         mx_error *err)
{
    char *p =
        cpath("/_matrix/client/v3/rooms/%s/state/%s/%s", room_id, type, state_key ? state_key : "");
    if (!p) return NOMEM(err);
    int rc = request_string(c, "PUT", p, as_user, NULL, content, "event_id", event_id, err);
    free(p);
    return rc;
}

static int state_one(mx_client *c, const char *as_user, const char *room_id, const char *type,
                     const char *field, const char *value, mx_error *err)
{
    cJSON *b = cJSON_CreateObject();
    if (!b || !cJSON_AddStringToObject(b, field, value)) {
        cJSON_Delete(b);
        return NOMEM(err);
    }
    int rc = mx_client_send_state(c, as_user, room_id, type, "", b, NULL, err);
    cJSON_Delete(b);
    return rc;
}

int mx_client_set_room_name(mx_client *c, const char *as_user, const char *room_id,
                            const char *name, mx_error *err)
{
    return state_one(c, as_user, room_id, "m.room.name", "name", name, err);
}

int mx_client_set_room_topic(mx_client *c, const char *as_user, const char *room_id,
                             const char *topic, mx_error *err)
{
    return state_one(c, as_user, room_id, "m.room.topic", "topic", topic, err);
}

int mx_client_set_room_avatar(mx_client *c, const char *as_user, const char *room_id,
                              const char *mxc_url, mx_error *err)
{
    return state_one(c, as_user, room_id, "m.room.avatar", "url", mxc_url, err);
}

int mx_client_set_power_levels(mx_client *c, const char *as_user, const char *room_id,
                               const cJSON *content, mx_error *err)
{
    return mx_client_send_state(c, as_user, room_id, "m.room.power_levels", "", content, NULL, err);
}

int mx_client_get_state(mx_client *c, const char *as_user, const char *room_id, const char *type,
                        const char *state_key, cJSON **content_out, mx_error *err)
{
    char *p =
        cpath("/_matrix/client/v3/rooms/%s/state/%s/%s", room_id, type, state_key ? state_key : "");
    if (!p) return NOMEM(err);
    int rc = mx_client_request(c, "GET", p, as_user, NULL, NULL, content_out, err);
    free(p);
    return rc;
}

int mx_client_send(mx_client *c, const char *as_user, const char *room_id, const char *type,
                   const cJSON *content, const char *txn_id, int64_t ts_ms, char **event_id,
                   mx_error *err)
{
    char txn[64];
    if (!txn_id) {
        mx_client_new_txn_id(c, txn, sizeof txn);
        txn_id = txn;
    }
    char *p = cpath("/_matrix/client/v3/rooms/%s/send/%s/%s", room_id, type, txn_id);
    if (!p) return NOMEM(err);
    char q[32] = "";
    if (ts_ms > 0) snprintf(q, sizeof q, "ts=%lld", (long long)ts_ms);
    int rc = request_string(c, "PUT", p, as_user, q, content, "event_id", event_id, err);
    free(p);
    return rc;
}

int mx_client_redact(mx_client *c, const char *as_user, const char *room_id, const char *event_id,
                     const char *reason, const char *txn_id, char **redaction_id, mx_error *err)
{
    return mx_client_redact_ex(c, as_user, room_id, event_id, reason, NULL, txn_id, redaction_id,
                               err);
}

int mx_client_redact_ex(mx_client *c, const char *as_user, const char *room_id,
                        const char *event_id, const char *reason, const cJSON *extra,
                        const char *txn_id, char **redaction_id, mx_error *err)
{
    char txn[64];
    if (!txn_id) {
        mx_client_new_txn_id(c, txn, sizeof txn);
        txn_id = txn;
    }
    char *p = cpath("/_matrix/client/v3/rooms/%s/redact/%s/%s", room_id, event_id, txn_id);
    if (!p) return NOMEM(err);
    cJSON *b = extra ? cJSON_Duplicate(extra, true) : cJSON_CreateObject();
    if (!b) {
        free(p);
        return NOMEM(err);
    }
    if (reason) {
        cJSON_DeleteItemFromObjectCaseSensitive(b, "reason");
        cJSON_AddStringToObject(b, "reason", reason);
    }
    int rc = request_string(c, "PUT", p, as_user, NULL, b, "event_id", redaction_id, err);
    cJSON_Delete(b);
    free(p);
    return rc;
}

int mx_client_typing(mx_client *c, const char *as_user, const char *room_id, bool typing,
                     long timeout_ms, mx_error *err)
{
    const char *uid = as_user ? as_user : c->bot_id;
    char *p = cpath("/_matrix/client/v3/rooms/%s/typing/%s", room_id, uid, NULL);
    if (!p) return NOMEM(err);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddBoolToObject(b, "typing", typing);
    if (typing)
        cJSON_AddNumberToObject(b, "timeout", (double)(timeout_ms > 0 ? timeout_ms : 30000));
    int rc = mx_client_request(c, "PUT", p, as_user, NULL, b, NULL, err);
    cJSON_Delete(b);
    free(p);
    return rc;
}

int mx_client_read_receipt(mx_client *c, const char *as_user, const char *room_id,
                           const char *event_id, mx_error *err)
{
    char *p = cpath("/_matrix/client/v3/rooms/%s/receipt/m.read/%s", room_id, event_id, NULL);
    if (!p) return NOMEM(err);
    cJSON *b = cJSON_CreateObject();
    int rc = mx_client_request(c, "POST", p, as_user, NULL, b, NULL, err);
    cJSON_Delete(b);
    free(p);
    return rc;
}

int mx_client_set_presence(mx_client *c, const char *as_user, const char *presence,
                           const char *status_msg, mx_error *err)
{
    const char *uid = as_user ? as_user : c->bot_id;
    char *p = cpath("/_matrix/client/v3/presence/%s/status", uid, NULL, NULL);
    if (!p) return NOMEM(err);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "presence", presence);
    if (status_msg) cJSON_AddStringToObject(b, "status_msg", status_msg);
    int rc = mx_client_request(c, "PUT", p, as_user, NULL, b, NULL, err);
    cJSON_Delete(b);
    free(p);
    return rc;
}

/* ---- profile ---- */

static int profile_put(mx_client *c, const char *as_user, const char *field, const char *value,
                       mx_error *err)
{
    const char *uid = as_user ? as_user : c->bot_id;
    char *p = cpath("/_matrix/client/v3/profile/%s/%s", uid, field, NULL);
    if (!p) return NOMEM(err);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, field, value);
    int rc = mx_client_request(c, "PUT", p, as_user, NULL, b, NULL, err);
    cJSON_Delete(b);
    free(p);
    return rc;
}

int mx_client_set_displayname(mx_client *c, const char *as_user, const char *name, mx_error *err)
{
    return profile_put(c, as_user, "displayname", name, err);
}

int mx_client_set_avatar_url(mx_client *c, const char *as_user, const char *mxc_url, mx_error *err)
{
    return profile_put(c, as_user, "avatar_url", mxc_url, err);
}

int mx_client_get_profile(mx_client *c, const char *user_id, char **displayname, char **avatar_url,
                          mx_error *err)
{
    if (displayname) *displayname = NULL;
    if (avatar_url) *avatar_url = NULL;
    char *p = cpath("/_matrix/client/v3/profile/%s", user_id, NULL, NULL);
    if (!p) return NOMEM(err);
    cJSON *a = NULL;
    int rc = mx_client_request(c, "GET", p, NULL, NULL, NULL, &a, err);
    free(p);
    if (rc != MX_OK) return rc;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(a, "displayname");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(a, "avatar_url");
    if (displayname && cJSON_IsString(d)) *displayname = strdup(d->valuestring);
    if (avatar_url && cJSON_IsString(v)) *avatar_url = strdup(v->valuestring);
    cJSON_Delete(a);
    return MX_OK;
}

/* ---- media ---- */

int mx_client_upload(mx_client *c, const char *as_user, const char *content_type,
                     const char *filename, const uint8_t *data, size_t len, char **mxc_uri,
                     mx_error *err)
{
    if (mxc_uri) *mxc_uri = NULL;
    char *q = NULL;
    if (filename) {
        char *f = mx_url_escape(filename);
        q = f ? strf("filename=%s", f) : NULL;
        free(f);
        if (!q) return NOMEM(err);
    }
    static const uint8_t empty[1];
    req r = {.method = "POST",
             .path = "/_matrix/media/v3/upload",
             .as_user = as_user,
             .query = q,
             .body = data ? data : empty,
             .body_len = len,
             .content_type = content_type ? content_type : "application/octet-stream"};
    answer a;
    int rc = call(c, &r, &a, err);
    free(q);
    if (rc == MX_OK) {
        rc = take_string(a.json, "content_uri", mxc_uri, err);
        if (rc == MX_OK && mxc_uri && strncmp(*mxc_uri, "mxc://", 6) != 0) {
            free(*mxc_uri);
            *mxc_uri = NULL;
            rc = set_err(err, MX_ERR_UNEXPECTED, a.status, NULL, "content_uri is not an mxc URI");
        }
    }
    answer_free(&a);
    return rc;
}

/* Splits "mxc://server/media" into escaped server and media id; false if malformed. */
static bool split_mxc(const char *mxc, char **server, char **media)
{
    if (strncmp(mxc, "mxc://", 6) != 0) return false;
    const char *s = mxc + 6, *slash = strchr(s, '/');
    if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/')) return false;
    char *sv = strndup(s, (size_t)(slash - s));
    *server = sv ? mx_url_escape(sv) : NULL;
    *media = mx_url_escape(slash + 1);
    free(sv);
    return *server && *media;
}

int mx_client_download(mx_client *c, const char *mxc_uri, size_t max_len, wb_buf *out,
                       char **content_type, mx_error *err)
{
    if (content_type) *content_type = NULL;
    char *server = NULL, *media = NULL;
    if (!mxc_uri || !split_mxc(mxc_uri, &server, &media)) {
        free(server);
        free(media);
        return set_err(err, MX_ERR_INVALID, 0, NULL, "not an mxc:// URI");
    }
    static const char *const paths[2] = {"/_matrix/client/v1/media/download/%s/%s",
                                         "/_matrix/media/v3/download/%s/%s"};
    int rc = MX_ERR_INVALID;
    for (int i = 0; i < 2; i++) {
        char *p = strf(paths[i], server, media);
        if (!p) {
            rc = NOMEM(err);
            break;
        }
        req r = {.method = "GET",
                 .path = p,
                 .raw = true,
                 .max_answer = max_len ? max_len : MX_MEDIA_MAX};
        answer a;
        mx_error e;
        rc = call(c, &r, &a, &e);
        free(p);
        if (rc == MX_OK) {
            if (!wb_buf_append(out, a.raw.data, a.raw.len) && a.raw.len) rc = NOMEM(&e);
            if (rc == MX_OK && content_type && a.content_type[0])
                *content_type = strdup(a.content_type);
        }
        answer_free(&a);
        if (err) *err = e;
        bool unknown_endpoint =
            rc == MX_ERR_HTTP &&
            (e.http_status == 405 ||
             (e.http_status == 404 && strcmp(e.errcode, "M_UNRECOGNIZED") == 0));
        if (!unknown_endpoint) break;
    }
    free(server);
    free(media);
    return rc;
}
