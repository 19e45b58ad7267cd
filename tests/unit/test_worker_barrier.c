/*
 * tests/unit/test_worker_barrier.c - the engine worker's group commit (wa/worker.h): one engine
 * paired with the wa-sim process through a worker whose barrier the test controls.
 *   - the barrier runs before output leaves: every message event is preceded by a barrier that
 *     began after the message's data arrived (checked through the order of calls);
 *   - a burst of messages arriving while a barrier is slow shares barriers (fewer than half as
 *     many flushes as messages);
 *   - with a commit hook (wa_worker_set_commit), a message is raised after a commit that came
 *     after its data and before the batch's barrier (no barrier between that commit and it);
 *   - while the barrier fails, nothing the engine would send leaves: the phone's message stays
 *     unacknowledged at the server (wa-sim keeps it queued) and the connection is reopened; once
 *     the barrier works again the message is redelivered and acked, the server's queue empties.
 *   test_worker_barrier path/to/wa-sim
 */
#include "check.h"
#include "sim_proc.h"
#include "wa/message.h"
#include "wa/store_mem.h"
#include "wa/worker.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static const char *const ALICE = "15550000021", *const BOB = "15550000022";
static sim_proc simp;

static atomic_int barrier_calls, barrier_fail, barrier_delay_ms, ready, messages, disconnects;
static atomic_int calls_at_last_message;
static atomic_int commit_calls, barrier_at_commit, commits_at_message, barrier_at_message;

static int commit(void *arg)
{
    (void)arg;
    atomic_store(&barrier_at_commit, atomic_load(&barrier_calls));
    atomic_fetch_add(&commit_calls, 1);
    return 0;
}

static int barrier(void *arg)
{
    (void)arg;
    atomic_fetch_add(&barrier_calls, 1);
    int delay = atomic_load(&barrier_delay_ms); /* a slow disk: work queues up meanwhile */
    if (delay) usleep((useconds_t)delay * 1000);
    return atomic_load(&barrier_fail) ? -1 : 0;
}

static void on_event(void *user, int login, const wa_event *e)
{
    (void)user;
    (void)login;
    if (e->type == WA_EV_QR) {
        char body[1024];
        snprintf(body, sizeof(body), "{\"phone\":\"%s\",\"qr\":\"%s\"}", ALICE, e->text);
        sim_proc_admin(&simp, "/admin/scan", body, NULL);
    }
    if (e->type == WA_EV_READY) atomic_fetch_add(&ready, 1);
    if (e->type == WA_EV_DISCONNECTED) atomic_fetch_add(&disconnects, 1);
    if (e->type == WA_EV_MESSAGE) {
        atomic_store(&calls_at_last_message, atomic_load(&barrier_calls));
        atomic_store(&commits_at_message, atomic_load(&commit_calls));
        atomic_store(&barrier_at_message, atomic_load(&barrier_calls));
        atomic_fetch_add(&messages, 1);
    }
}

static bool wait_for(atomic_int *v, int want, int ms)
{
    for (int waited = 0; waited < ms; waited += 20) {
        if (atomic_load(v) >= want) return true;
        usleep(20000);
    }
    return false;
}

static void do_drain(wa_client *c, void *arg)
{
    int *n = arg;
    wa_received r;
    while (wa_client_next_message(c, &r)) {
        (*n)++;
        wa_received_free(&r);
    }
}

/* How many stanzas wa-sim holds unacked for Alice's companion (from /admin/state). */
static int queued_for_companion(void)
{
    wb_buf out;
    wb_buf_init(&out);
    int q = -1;
    if (sim_proc_admin(&simp, "/admin/state", NULL, &out) == 200 && out.data) {
        cJSON *st = cJSON_Parse((const char *)out.data), *acc;
        cJSON_ArrayForEach(acc, cJSON_GetObjectItem(st, "accounts"))
        {
            const cJSON *ph = cJSON_GetObjectItem(acc, "phone"), *dev;
            if (!cJSON_IsString(ph) || strcmp(ph->valuestring, ALICE) != 0) continue;
            cJSON_ArrayForEach(dev, cJSON_GetObjectItem(acc, "devices"))
            {
                const cJSON *id = cJSON_GetObjectItem(dev, "id"),
                            *pend = cJSON_GetObjectItem(dev, "queued");
                if (cJSON_IsNumber(id) && id->valueint != 0 && cJSON_IsNumber(pend))
                    q = pend->valueint;
            }
        }
        cJSON_Delete(st);
    }
    wb_buf_free(&out);
    return q;
}

static void phone_send(const char *text)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"phone\":\"%s\",\"to\":\"%s@s.whatsapp.net\",\"text\":\"%s\"}",
             BOB, ALICE, text);
    CHECK_INT(sim_proc_admin(&simp, "/admin/send", body, NULL), 200);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *const args[] = {"--account", "15550000021:100000000000021:Alice", "--account",
                                "15550000022:100000000000022:Bob", NULL};
    if (sim_proc_start(&simp, argv[1], args) != 0) return 1;
    wa_crypto *crypto = wa_crypto_new(NULL, 0);
    wa_net *net = wa_net_new(NULL);
    wa_worker *w = wa_worker_new(net, on_event, NULL);
    wa_worker_set_barrier(w, barrier, NULL);
    wa_store store;
    wa_store_mem_new(&store);
    wa_client_config cfg = {.store = &store, .crypto = crypto, .trust_root = simp.root};
    wa_client *c = wa_client_new(&cfg, NULL);
    CHECK_INT(wa_worker_add(w, c, simp.ws_url), 0);
    CHECK(wait_for(&ready, 1, 45000));
    CHECK(atomic_load(&barrier_calls) > 0);
    uint64_t flushes0 = 0, failures = 0;
    wa_worker_flush_stats(w, &flushes0, &failures);
    CHECK_INT(failures, 0);

    /* a message: raised after a barrier that came after its data */
    int before_calls = atomic_load(&barrier_calls);
    phone_send("one");
    CHECK(wait_for(&messages, 1, 20000));
    CHECK(atomic_load(&calls_at_last_message) > before_calls);
    int taken = 0;
    wa_worker_call(w, 0, do_drain, &taken, true);
    CHECK_INT(taken, 1);

    /* a burst of 40 while each barrier takes 30 ms: they share barriers */
    uint64_t f1 = 0, f2 = 0;
    atomic_store(&barrier_delay_ms, 30);
    wa_worker_flush_stats(w, &f1, NULL);
    for (int i = 0; i < 40; i++) {
        char t[32];
        snprintf(t, sizeof(t), "burst %d", i);
        phone_send(t);
    }
    CHECK(wait_for(&messages, 41, 30000));
    wa_worker_flush_stats(w, &f2, NULL);
    atomic_store(&barrier_delay_ms, 0);
    fprintf(stderr, "40 messages in %llu flushes\n", (unsigned long long)(f2 - f1));
    CHECK(f2 - f1 > 0 && f2 - f1 < 20);
    wa_worker_call(w, 0, do_drain, &taken, true);
    CHECK_INT(taken, 41);

    /* with a commit hook: raised after a commit that came after its data, before the barrier */
    wa_worker_set_commit(w, commit, NULL);
    int commits0 = atomic_load(&commit_calls);
    phone_send("two");
    CHECK(wait_for(&messages, 42, 20000));
    CHECK(atomic_load(&commits_at_message) > commits0);
    CHECK_INT(atomic_load(&barrier_at_message), atomic_load(&barrier_at_commit));
    CHECK(atomic_load(&barrier_calls) > atomic_load(&barrier_at_message)); /* then the barrier */
    wa_worker_call(w, 0, do_drain, &taken, true);
    CHECK_INT(taken, 42);

    /* the barrier fails: nothing leaves */
    atomic_store(&barrier_fail, 1);
    int disc0 = atomic_load(&disconnects), msg0 = atomic_load(&messages);
    phone_send("during the outage");
    CHECK(wait_for(&disconnects, disc0 + 1, 20000)); /* the connection was reopened */
    usleep(1500 * 1000);
    wa_worker_flush_stats(w, NULL, &failures);
    CHECK(failures > 0);
    CHECK(queued_for_companion() >= 1); /* not acked: the server still holds it */

    /* the barrier works again: redelivered, acked, the server's queue empties */
    atomic_store(&barrier_fail, 0);
    bool drained = false;
    for (int i = 0; i < 300 && !drained; i++) {
        drained = queued_for_companion() == 0;
        if (!drained) usleep(100 * 1000);
    }
    CHECK(drained);
    CHECK(wait_for(&messages, msg0 + 1, 20000)); /* (raised before the failing barrier too) */
    int more = 0;
    wa_worker_call(w, 0, do_drain, &more, true);
    CHECK(more >= 1); /* at least once: the app takes a repeat by its id */
    fprintf(stderr, "after the outage: %d message(s) taken\n", more);

    wa_worker_free(w);
    wa_client_free(c);
    store.destroy(store.ctx);
    wa_net_free(net);
    wa_crypto_free(crypto);
    sim_proc_stop(&simp);
    curl_global_cleanup();
    return CHECK_DONE();
}
