/*
 * tests/matrix/mx_test.h - helpers shared by the Matrix tests: start and stop hs-sim (or node) as
 * a child process, plain HTTP requests with libcurl, monotonic time. Header-only (static
 * functions) so each test is one .c file. Everything talks to 127.0.0.1 only.
 */
#ifndef MX_TEST_H
#define MX_TEST_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "matrix/as_server.h"
#include "matrix/registration.h"
#include "util/bytes.h"

extern char **environ;

/* Our appservice endpoint on a fresh registration for domain: starts the endpoint on a free port,
 * points the registration's url at it and writes the registration to path (a mkstemp template,
 * rewritten with the file's name). NULL on failure; the caller stops the server and frees reg. */
static inline mx_as_server *t_endpoint_with_registration(const mx_txn_store *store,
                                                         const mx_as_handler *h, const char *domain,
                                                         mx_registration *reg, char *path)
{
    mx_registration_params rp = {.url = "http://127.0.0.1:1", .domain = domain};
    if (mx_registration_generate(&rp, reg) != MX_OK) return NULL;
    mx_as_config ac = {.hs_token = reg->hs_token};
    mx_as_server *as = NULL;
    if (mx_as_server_start(&ac, store, h, &as) != MX_OK) return NULL;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", mx_as_server_port(as));
    free(reg->url);
    reg->url = strdup(url);
    int fd = mkstemp(path);
    if (fd < 0 || !reg->url || mx_registration_write(reg, path) != MX_OK) {
        if (fd >= 0) close(fd);
        mx_as_server_stop(as);
        return NULL;
    }
    close(fd);
    return as;
}

static inline int64_t t_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void t_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A child process and, for hs-sim, the port it printed. */
typedef struct t_proc {
    pid_t pid;     /* 0 when not running */
    int out_fd;    /* read end of its stdout, -1 when not captured */
    unsigned port; /* from "port <n>" */
} t_proc;

/* Spawns argv with stdout on a pipe; when want_port, waits up to 5 s for "port <n>". */
static inline bool t_spawn(const char *const *argv, bool want_port, t_proc *p)
{
    int fds[2];
    memset(p, 0, sizeof *p);
    p->out_fd = -1;
    if (pipe(fds) != 0) return false;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    int rc = posix_spawn(&p->pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        p->pid = 0;
        return false;
    }
    p->out_fd = fds[0];
    if (!want_port) return true;
    char buf[256];
    size_t len = 0;
    int64_t end = t_now_ms() + 5000;
    while (t_now_ms() < end && len < sizeof buf - 1) {
        struct pollfd pf = {p->out_fd, POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0) continue;
        ssize_t n = read(p->out_fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = '\0';
        const char *m = strstr(buf, "port ");
        if (m && strchr(m, '\n')) {
            p->port = (unsigned)strtoul(m + 5, NULL, 10);
            return p->port != 0;
        }
    }
    return false;
}

/* Reads one line of the child's stdout (without '\n') within ms; false on timeout/EOF. */
static inline bool t_read_line(t_proc *p, char *line, size_t cap, long ms)
{
    size_t len = 0;
    int64_t end = t_now_ms() + ms;
    while (t_now_ms() < end && len < cap - 1) {
        struct pollfd pf = {p->out_fd, POLLIN, 0};
        if (poll(&pf, 1, 50) <= 0) continue;
        char ch;
        ssize_t n = read(p->out_fd, &ch, 1);
        if (n <= 0) return false;
        if (ch == '\n') {
            line[len] = '\0';
            return true;
        }
        line[len++] = ch;
    }
    return false;
}

/* Waits up to ms for the child to exit; returns its exit status, or -1 (then kills it). */
static inline int t_wait(t_proc *p, long ms)
{
    if (!p->pid) return -1;
    int st = 0;
    int64_t end = t_now_ms() + ms;
    for (;;) {
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) break;
        if (t_now_ms() > end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            p->pid = 0;
            return -1;
        }
        t_sleep_ms(20);
    }
    p->pid = 0;
    if (p->out_fd >= 0) close(p->out_fd);
    p->out_fd = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* SIGTERM, then the exit status (0 = clean shutdown, no sanitizer report), -1 on timeout. */
static inline int t_stop(t_proc *p)
{
    if (!p->pid) return -1;
    kill(p->pid, SIGTERM);
    return t_wait(p, 5000);
}

static inline size_t t_sink(char *d, size_t s, size_t n, void *ud)
{
    wb_buf_append(ud, d, s * n);
    return s * n;
}

/* One HTTP request; returns the status (0 on network failure); *body_out (may be NULL) gets the
 * answer as a NUL-terminated malloc'd string. headers: NULL-terminated, may be NULL. */
static inline long t_http(const char *method, const char *url, const char *const *headers,
                          const char *body, size_t body_len, char **body_out)
{
    CURL *h = curl_easy_init();
    wb_buf b;
    wb_buf_init(&b);
    struct curl_slist *hl = curl_slist_append(NULL, "Expect:");
    for (const char *const *x = headers; x && *x; x++)
        hl = curl_slist_append(hl, *x);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, t_sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
    }
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    wb_buf_u8(&b, 0);
    if (body_out)
        *body_out = (char *)wb_buf_steal(&b, &(size_t){0});
    else
        wb_buf_free(&b);
    return status;
}

/* errcode of a JSON error body (static buffer), "" when none. */
static inline const char *t_errcode(const char *body)
{
    static char ec[64];
    ec[0] = '\0';
    cJSON *o = body ? cJSON_Parse(body) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "errcode");
    if (cJSON_IsString(v)) snprintf(ec, sizeof ec, "%s", v->valuestring);
    cJSON_Delete(o);
    return ec;
}

/* POST to hs-sim's admin API; returns the status. */
static inline long t_admin(unsigned port, const char *what, const char *json)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/_hssim/%s", port, what);
    return t_http("POST", url, NULL, json, strlen(json), NULL);
}

/* GET an admin path and parse the JSON answer (caller deletes). */
static inline cJSON *t_admin_get(unsigned port, const char *what)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/_hssim/%s", port, what);
    char *b = NULL;
    long st = t_http("GET", url, NULL, NULL, 0, &b);
    cJSON *o = st == 200 ? cJSON_Parse(b) : NULL;
    free(b);
    return o;
}

static inline double t_stat(unsigned port, const char *key)
{
    cJSON *o = t_admin_get(port, "stats");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    cJSON_Delete(o);
    return d;
}

#endif
