/*
 * tests/unit/sim_proc.c - wa-sim as a child process (sim_proc.h).
 */
#include "sim_proc.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int sim_proc_start(sim_proc *p, const char *path, const char *const *args)
{
    memset(p, 0, sizeof(*p));
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
        dup2(fds[1], 1);
        close(fds[0]);
        const char *argv[64] = {path};
        int n = 1;
        for (int i = 0; args && args[i] && n < 63; i++)
            argv[n++] = args[i];
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    char line[1024];
    size_t n = 0;
    while (n < sizeof(line) - 1 && read(fds[0], line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = '\0';
    close(fds[0]);
    p->pid = pid;
    cJSON *j = cJSON_Parse(line);
    const cJSON *ws = j ? cJSON_GetObjectItem(j, "ws") : NULL;
    const cJSON *admin = j ? cJSON_GetObjectItem(j, "admin") : NULL;
    const cJSON *root = j ? cJSON_GetObjectItem(j, "root") : NULL;
    size_t rl = 0;
    int rc =
        cJSON_IsString(ws) && cJSON_IsString(admin) && cJSON_IsString(root) &&
                wb_hex_decode(root->valuestring, strlen(root->valuestring), p->root, 32, &rl) &&
                rl == 32
            ? 0
            : -1;
    if (rc == 0) {
        snprintf(p->ws_url, sizeof(p->ws_url), "%s", ws->valuestring);
        snprintf(p->admin_url, sizeof(p->admin_url), "%s", admin->valuestring);
    } else {
        fprintf(stderr, "wa-sim did not start: \"%s\"\n", line);
        sim_proc_stop(p);
    }
    cJSON_Delete(j);
    return rc;
}

void sim_proc_stop(sim_proc *p)
{
    if (p->pid <= 0) return;
    kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

static size_t sink(char *data, size_t size, size_t n, void *user)
{
    wb_buf_append(user, data, size * n);
    return size * n;
}

long sim_proc_admin(const sim_proc *p, const char *path, const char *body, wb_buf *out)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", p->admin_url, path);
    CURL *h = curl_easy_init();
    if (!h) return 0;
    wb_buf ignore;
    wb_buf_init(&ignore);
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (body) curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out ? out : &ignore);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    wb_buf_free(&ignore);
    if (out && wb_buf_reserve(out, 1)) out->data[out->len] = '\0';
    return status;
}
