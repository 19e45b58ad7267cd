/*
 * bench/bench_engine_conns.c - N logged-in, idle engines in one bridge-side process.
 *
 * Starts wa-sim, registers N companion devices there (no pairing: /admin/devices), makes N
 * wa_clients with their devices in N in-memory stores, runs them all on one engine worker over one
 * wa_net service thread, waits until every one is connected (<success>, offline queue done), and
 * prints the process's resident memory before and after, per login. The memory counted is what a
 * login costs the bridge: the client, its Noise state and buffers, its store records, its
 * WebSocket connection.
 *   bench_engine_conns path/to/wa-sim [N=1000]
 */
#include "sim_proc.h"
#include "wa/store_mem.h"
#include "wa/worker.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PER_ACCOUNT 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int ready, failed;

static void on_event(void *user, int login, const wa_event *ev)
{
    pthread_mutex_lock(&lock);
    if (ev->type == WA_EV_READY) ready++;
    if (ev->type == WA_EV_ERROR || ev->type == WA_EV_LOGGED_OUT) {
        failed++;
        fprintf(stderr, "login %d: %s\n", login, ev->text);
    }
    pthread_mutex_unlock(&lock);
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/wa-sim [N]\n", argv[0]);
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 1000;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    sim_proc sim;
    if (sim_proc_start(&sim, argv[1], NULL) != 0) return 1;
    wa_crypto *crypto = wa_crypto_new(NULL, 0);
    wa_net *net = wa_net_new(NULL);
    wa_worker *w = wa_worker_new(net, on_event, NULL);
    wa_store *stores = calloc((size_t)n, sizeof(*stores));
    wa_client **clients = calloc((size_t)n, sizeof(*clients));

    long before = rss_kib(); /* everything below counts: stores, clients, connections */
    /* devices: registered at the simulator, saved as paired in each store */
    for (int i = 0; i < n; i++) {
        char phone[24], body[512];
        snprintf(phone, sizeof(phone), "1555%07d", i / PER_ACCOUNT);
        if (i % PER_ACCOUNT == 0) {
            snprintf(body, sizeof(body), "{\"phone\":\"%s\"}", phone);
            if (sim_proc_admin(&sim, "/admin/accounts", body, NULL) != 200) return 1;
        }
        wa_store_mem_new(&stores[i]);
        wa_device d;
        memset(&d, 0, sizeof(d));
        wa_keypair_generate(crypto, &d.noise);
        wa_keypair_generate(crypto, &d.identity);
        wa_keypair_generate(crypto, &d.signed_prekey);
        d.signed_prekey_id = 1;
        d.registration_id = 1 + (uint32_t)i;
        char noise[65], ident[65];
        wb_hex_encode(d.noise.pub, 32, noise);
        wb_hex_encode(d.identity.pub, 32, ident);
        snprintf(body, sizeof(body),
                 "{\"phone\":\"%s\",\"noise_pub\":\"%s\",\"identity_pub\":\"%s\",\"prekeys\":812}",
                 phone, noise, ident);
        wb_buf answer;
        wb_buf_init(&answer);
        if (sim_proc_admin(&sim, "/admin/devices", body, &answer) != 200) return 1;
        int id = 0;
        sscanf((const char *)answer.data, "{\"id\":%d}", &id);
        wb_buf_free(&answer);
        snprintf(d.pn, sizeof(d.pn), "%s:%d@s.whatsapp.net", phone, id);
        d.paired = true;
        stores[i].device_save(stores[i].ctx, &d);
    }

    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        wa_client_config cfg = {.store = &stores[i], .crypto = crypto, .trust_root = sim.root};
        clients[i] = wa_client_new(&cfg, NULL);
        wa_worker_add(w, clients[i], sim.ws_url);
    }
    int got = 0;
    for (int waited = 0; waited < 120000; waited += 50) {
        pthread_mutex_lock(&lock);
        got = ready;
        pthread_mutex_unlock(&lock);
        if (got >= n || failed) break;
        usleep(50000);
    }
    double t1 = now_s();
    sleep(2); /* idle: keepalive state only */
    long after = rss_kib();
    printf(
        "{\"logins\":%d,\"connected\":%d,\"failed\":%d,\"connect_s\":%.2f,\"rss_before_kib\":%ld,"
        "\"rss_after_kib\":%ld,\"kib_per_login\":%.1f,\"net_connections\":%zu}\n",
        n, got, failed, t1 - t0, before, after, (double)(after - before) / n, wa_net_count(net));

    wa_worker_free(w);
    for (int i = 0; i < n; i++) {
        wa_client_free(clients[i]);
        stores[i].destroy(stores[i].ctx);
    }
    wa_net_free(net);
    wa_crypto_free(crypto);
    sim_proc_stop(&sim);
    free(stores);
    free(clients);
    curl_global_cleanup();
    return got >= n && !failed ? 0 : 1;
}
