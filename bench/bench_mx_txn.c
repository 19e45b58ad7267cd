/*
 * bench/bench_mx_txn.c - appservice transactions accepted per second by matrix/as_server, against
 * a bare libmicrohttpd handler that reads the body and answers 200 {} (same process, same run,
 * same client).
 *
 * Each transaction carries 50 realistic m.room.message events (~21 KB). The endpoint
 * authenticates, parses, commits to the in-memory mx_txn_store and hands the events to a counting
 * dispatcher; the client drops the stored events every 100 transactions (the bridge deletes inbox
 * rows once bridged), so memory stays flat. The bare server only swallows the body. One libcurl
 * client on a keep-alive connection sends transactions back to back (a homeserver has one
 * transaction in flight per appservice, so this is the shape of the real load). Both servers use
 * the same MHD flags and thread count. A third server runs the endpoint on a store that records
 * nothing, to separate the endpoint's own cost (auth, parse, hand-over) from the in-memory store's
 * copies. They are measured in alternation, two rounds, and the best round of each is kept. The
 * figures are the overhead ratios bare / endpoint. bench_mx_txn [SECONDS per round] Prints one JSON
 * line.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/mx_txn_pg.h"
#include "db/migrate.h"
#include "matrix/as_server.h"
#include "matrix/err.h"

#define EVENTS_PER_TXN 50
#define TOKEN          "bench-hs-token-0123456789abcdef"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the bare server ---- */

static enum MHD_Result bare(void *cls, struct MHD_Connection *c, const char *url,
                            const char *method, const char *version, const char *data, size_t *size,
                            void **con_cls)
{
    if (!*con_cls) {
        *con_cls = (void *)1;
        return MHD_YES;
    }
    if (*size) {
        *size = 0; /* swallow */
        return MHD_YES;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(2, (void *)"{}", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

/* ---- the dispatcher of the real endpoint ---- */

static size_t dispatched;

/* A store that records nothing: isolates the endpoint's own cost from the in-memory store's. */
static int null_commit(void *ctx, const char *txn, const mx_event_batch *b)
{
    return MX_TXN_STORED;
}
static size_t dispatched_null;
static void on_events_null(void *ctx, const char *txn, const mx_event_batch *b)
{
    dispatched_null += b->count;
}
static void on_events(void *ctx, const char *txn, const mx_event_batch *b)
{
    dispatched += b->count;
}

/* ---- the client ---- */

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    return s * n;
}

/* Events stored and then "bridged" (dropped from the in-memory inbox every 100 transactions,
 * as the bridge deletes inbox rows once processed, so memory stays flat). */
static mx_mem_store *inbox;
/* With WABRIDGE_BENCH_PG set, the endpoint commits to PostgreSQL (bridge/mx_txn_pg.c) instead,
 * and "bridging" deletes the inbox rows. */
static db_conn *pg;
static const db_stmt st_clear = {"bench_inbox_clear", "DELETE FROM mx_inbox", 0};
static size_t inbox_total;

/* Sends transactions for `seconds`; returns transactions per second (0 on any non-200). */
static double run(CURL *h, unsigned port, const char *body, double seconds, unsigned long *txn_seq)
{
    char url[128];
    struct curl_slist *hdr = curl_slist_append(NULL, "Authorization: Bearer " TOKEN);
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Expect:");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    size_t n = 0;
    double start = now_s(), el;
    do {
        snprintf(url, sizeof url, "http://127.0.0.1:%u/_matrix/app/v1/transactions/%lu", port,
                 ++*txn_seq);
        curl_easy_setopt(h, CURLOPT_URL, url);
        long st = 0;
        if (curl_easy_perform(h) != CURLE_OK) return 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
        if (st != 200) return 0;
        if (++n % 100 == 0) {
            if (pg) {
                db_exec(pg, &st_clear, NULL, 0, NULL);
            } else {
                inbox_total += mx_mem_store_event_count(inbox);
                mx_mem_store_forget_events(inbox);
            }
        }
        el = now_s() - start;
    } while (el < seconds);
    curl_slist_free_all(hdr);
    return (double)n / el;
}

static char *make_body(void)
{
    size_t cap = EVENTS_PER_TXN * 600 + 64, len = 0;
    char *b = malloc(cap);
    len += (size_t)snprintf(b + len, cap - len, "{\"events\":[");
    for (int i = 0; i < EVENTS_PER_TXN; i++)
        len += (size_t)snprintf(
            b + len, cap - len,
            "%s{\"type\":\"m.room.message\",\"room_id\":\"!kHLbQdXzGwhDxFwAhE:example.org\","
            "\"sender\":\"@alice:example.org\",\"event_id\":\"$Yk3Xq2dVbQfTzU8wRr6pLmNo%"
            "04dAbCdEfGhIj\","
            "\"origin_server_ts\":17000000%05d,\"content\":{\"msgtype\":\"m.text\",\"body\":"
            "\"Message "
            "number %d of the benchmark, with a few words to make it a realistic chat line.\","
            "\"m.relates_to\":{\"m.in_reply_to\":{\"event_id\":\"$prev%04d\"}}},\"unsigned\":{"
            "\"age\":"
            "%d,\"transaction_id\":\"m%d.%d\"}}",
            i ? "," : "", i, i, i, i, i * 3, i, i);
    snprintf(b + len, cap - len, "]}");
    return b;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    if (seconds <= 0) seconds = 3.0;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char *body = make_body();

    mx_mem_store *m = mx_mem_store_new();
    inbox = m;
    mx_txn_store store = mx_mem_store_iface(m);
    const char *pg_info = getenv("WABRIDGE_BENCH_PG");
    db_conn *commit_conn = NULL;
    if (pg_info && *pg_info) {
        db_error err;
        db_migrate_report rep;
        if (db_conn_open(pg_info, NULL, &commit_conn, &err) != DB_OK ||
            db_conn_open(pg_info, NULL, &pg, &err) != DB_OK ||
            db_migrate(pg, db_migrations_embedded, db_migrations_embedded_count, &rep) != DB_OK) {
            fprintf(stderr, "bench_mx_txn: PostgreSQL: %s\n", err.message);
            return 1;
        }
        store = br_mx_txn_store_pg(commit_conn);
    }
    mx_as_handler h = {.on_events = on_events};
    mx_as_config cfg = {.hs_token = TOKEN, .threads = 2};
    mx_as_server *srv = NULL;
    if (mx_as_server_start(&cfg, &store, &h, &srv) != MX_OK) return 1;

    mx_txn_store nstore = {.commit = null_commit};
    mx_as_handler nh = {.on_events = on_events_null};
    mx_as_server *nsrv = NULL;
    if (mx_as_server_start(&cfg, &nstore, &nh, &nsrv) != MX_OK) return 1;

    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL, bare, NULL,
                                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                            MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_END);
    if (!d) return 1;
    unsigned bare_port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    unsigned mx_port = mx_as_server_port(srv), null_port = mx_as_server_port(nsrv);

    CURL *c = curl_easy_init();
    unsigned long seq = 0;
    double best_bare = 0, best_mx = 0, best_null = 0;
    run(c, bare_port, body, seconds / 4, &seq); /* warm-up */
    run(c, mx_port, body, seconds / 4, &seq);
    for (int round = 0; round < 2; round++) {
        double b = run(c, bare_port, body, seconds, &seq);
        double x = run(c, mx_port, body, seconds, &seq);
        double y = run(c, null_port, body, seconds, &seq);
        if (y > best_null) best_null = y;
        if (b > best_bare) best_bare = b;
        if (x > best_mx) best_mx = x;
    }
    curl_easy_cleanup(c);
    inbox_total += mx_mem_store_event_count(m);
    int ok = best_bare > 0 && best_mx > 0 && (pg || dispatched == inbox_total);
    printf("{\"impl\":\"wabridge-as_server%s\",\"events_per_txn\":%d,\"body_bytes\":%zu,"
           "\"bare_txn_per_s\":%.0f,\"endpoint_txn_per_s\":%.0f,\"endpoint_events_per_s\":%.0f,"
           "\"overhead_ratio\":%.2f,\"null_store_txn_per_s\":%.0f,\"null_store_ratio\":%.2f,"
           "\"stored_events\":%zu}\n",
           pg ? "+postgresql" : "", EVENTS_PER_TXN, strlen(body), best_bare, best_mx,
           best_mx * EVENTS_PER_TXN, best_mx > 0 ? best_bare / best_mx : 0, best_null,
           best_null > 0 ? best_bare / best_null : 0, inbox_total);
    MHD_stop_daemon(d);
    mx_as_server_stop(srv);
    mx_as_server_stop(nsrv);
    mx_mem_store_free(m);
    if (pg) db_conn_close(pg);
    if (commit_conn) db_conn_close(commit_conn);
    free(body);
    curl_global_cleanup();
    return ok ? 0 : 1;
}
