/*
 * bench/bench_db.c - operations per second of the database hot paths, single and batched.
 *
 * The paths every bridged message takes: the engine's "load + save a Signal session", the decrypt
 * commit ("decrypted event into the buffer + advanced session" in one transaction, DESIGN.md
 * "Nothing is lost"), the portal's "insert a message mapping", and the appservice's "append an
 * inbox event, delete it once bridged". Each runs one operation per transaction (what a lone
 * message costs: one durable commit) and batched (100 per transaction, or pipelined in one round
 * trip), the way bursts are written. Durable means the server's defaults (fsync on,
 * synchronous_commit on); the settings in force are printed with the results.
 *
 * usage: WABRIDGE_BENCH_PG='host=/tmp/... port=5432 user=wabridge dbname=wb_bench' bench_db [secs]
 * The database is migrated to the latest schema; the bench works under a login of its own and
 * deletes it (and everything it wrote) at the end. secs (default 2) bounds each case.
 */
#include "db/bridge_db.h"
#include "db/db.h"
#include "db/migrate.h"
#include "db/store_pg.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 100

static double case_secs = 2.0;
static char conninfo[1024];
static int64_t login_id, portal_id;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, db_conn *c)
{
    fprintf(stderr, "bench_db: %s: %s\n", what, c ? db_conn_error(c)->message : "");
    exit(1);
}

static db_conn *connect_or_die(void)
{
    db_conn *c;
    db_error err;
    if (db_conn_open(conninfo, NULL, &c, &err) != DB_OK) {
        fprintf(stderr, "bench_db: %s\n", err.message);
        exit(1);
    }
    return c;
}

/* A case: runs `step` (doing `per_step` operations) in 3 rounds of case_secs / 3 and gives the
 * median ops/s, which shrugs off a slow fsync or a checkpoint in one round. */
typedef int (*step_fn)(db_conn *c, wa_store *st, long iter);

static double run_case(const char *name, db_conn *c, wa_store *st, step_fn step, int per_step)
{
    double rate[3];
    static long iters; /* continues across rounds and calls: keys stay unique */
    for (int round = 0; round < 3; round++) {
        long n = 0;
        double t0 = now_s(), t;
        do {
            if (step(c, st, iters++) != 0) die(name, c);
            n++;
            t = now_s();
        } while (t - t0 < case_secs / 3);
        rate[round] = (double)n * per_step / (t - t0);
    }
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (rate[j] < rate[i]) {
                double x = rate[i];
                rate[i] = rate[j];
                rate[j] = x;
            }
    (void)name;
    return rate[1];
}

/* ---- Signal sessions ---- */

static uint8_t session_rec[1200]; /* a typical serialized session record */

static int session_one(wa_store *st, long i)
{
    char addr[32];
    snprintf(addr, sizeof(addr), "1555%04ld:1", i % 500);
    wb_buf b;
    wb_buf_init(&b);
    int rc = st->session_load(st->ctx, addr, &b);
    wb_buf_free(&b);
    if (rc != WA_STORE_OK && rc != WA_STORE_NOT_FOUND) return rc;
    session_rec[0] = (uint8_t)i;
    return st->session_save(st->ctx, addr, session_rec, sizeof(session_rec));
}

static int step_session_single(db_conn *c, wa_store *st, long i)
{
    (void)c;
    return session_one(st, i);
}

static int step_session_tx(db_conn *c, wa_store *st, long i)
{
    (void)c;
    int rc = st->begin(st->ctx);
    for (int k = 0; rc == 0 && k < BATCH; k++)
        rc = session_one(st, i * BATCH + k);
    if (rc) {
        st->rollback(st->ctx);
        return rc;
    }
    return st->commit(st->ctx);
}

/* ---- the decrypt commit: event buffer + session ---- */

static uint8_t plaintext[400];

static int decrypt_one(wa_store *st, long i)
{
    wa_buffered_event ev;
    memset(&ev, 0, sizeof(ev));
    memcpy(ev.ciphertext_hash, &i, sizeof(i));
    ev.chat_jid = "15550001111@s.whatsapp.net";
    ev.sender_jid = "15550001111:3@s.whatsapp.net";
    ev.message_id = "3EB0C431C26A1916E0C1";
    ev.plaintext = plaintext;
    ev.plaintext_len = sizeof(plaintext);
    ev.server_ts_ms = 1700000000000 + i;
    int rc = st->event_buffer_save(st->ctx, &ev);
    if (rc == 0) rc = st->session_save(st->ctx, "15550001111:3", session_rec, sizeof(session_rec));
    return rc;
}

static int step_decrypt_single(db_conn *c, wa_store *st, long i)
{
    (void)c;
    int rc = st->begin(st->ctx);
    if (rc == 0) rc = decrypt_one(st, i);
    if (rc) {
        st->rollback(st->ctx);
        return rc;
    }
    return st->commit(st->ctx);
}

static int step_decrypt_tx(db_conn *c, wa_store *st, long i)
{
    (void)c;
    int rc = st->begin(st->ctx);
    for (int k = 0; rc == 0 && k < BATCH; k++)
        rc = decrypt_one(st, 10000000 + i * BATCH + k);
    if (rc) {
        st->rollback(st->ctx);
        return rc;
    }
    return st->commit(st->ctx);
}

/* ---- message mappings ---- */

static long msg_seq;

static void make_message(db_message *m)
{
    long i = msg_seq++;
    memset(m, 0, sizeof(*m));
    m->portal_id = portal_id;
    m->login_id = login_id;
    snprintf(m->wa_id, sizeof(m->wa_id), "3EB0%016lX", (unsigned long)i);
    snprintf(m->sender_jid, sizeof(m->sender_jid), "15550001111@s.whatsapp.net");
    snprintf(m->mxid, sizeof(m->mxid), "$bench%016lX-i1kUwJcRnKnG3mG9bkl3hZ0eqHPX7k",
             (unsigned long)i);
    snprintf(m->mx_room, sizeof(m->mx_room), "!ZmUQqXHiTyzjqgQKbS:example.org");
    m->timestamp_ms = 1700000000000 + i;
}

static int step_message_single(db_conn *c, wa_store *st, long i)
{
    (void)st;
    (void)i;
    db_message m;
    make_message(&m);
    return db_message_insert(c, &m);
}

static int step_message_tx(db_conn *c, wa_store *st, long i)
{
    (void)st;
    (void)i;
    int rc = db_begin(c, 0);
    for (int k = 0; rc == 0 && k < BATCH; k++) {
        db_message m;
        make_message(&m);
        rc = db_message_insert(c, &m);
    }
    if (rc) {
        db_rollback(c);
        return rc;
    }
    return db_commit(c);
}

static db_message batch_msgs[BATCH];

static int step_message_pipeline(db_conn *c, wa_store *st, long i)
{
    (void)st;
    (void)i;
    for (int k = 0; k < BATCH; k++)
        make_message(&batch_msgs[k]);
    return db_message_insert_many(c, batch_msgs, BATCH);
}

/* ---- the Matrix inbox ---- */

static long txn_seq;
static const char event_json[] =
    "{\"type\":\"m.room.message\",\"sender\":\"@alice:example.org\",\"room_id\":"
    "\"!ZmUQqXHiTyzjqgQKbS:example.org\",\"origin_server_ts\":1700000000000,\"content\":"
    "{\"msgtype\":\"m.text\",\"body\":\"hello from Matrix, a message of typical length\"}}";

static int inbox_cycle(db_conn *c, int n)
{
    char txn[32];
    snprintf(txn, sizeof(txn), "bench%ld", txn_seq++);
    /* (the ids restart at 0 each run: db_mx_txn_prune at the end forgets them) */
    static char ids[BATCH][48];
    db_inbox_event ev[BATCH];
    for (int k = 0; k < n; k++) {
        snprintf(ids[k], sizeof(ids[k]), "$%s-%d", txn, k);
        ev[k] = (db_inbox_event){ids[k], "!ZmUQqXHiTyzjqgQKbS:example.org", event_json};
    }
    bool dup;
    int rc = db_mx_txn_accept(c, txn, ev, (size_t)n, 1700000000000, &dup);
    if (rc) return rc;
    db_inbox_row rows[BATCH];
    size_t got = 0;
    rc = db_inbox_peek(c, rows, (size_t)n, &got);
    if (rc) return rc;
    int64_t del[BATCH];
    for (size_t k = 0; k < got; k++)
        del[k] = rows[k].id;
    db_inbox_rows_free(rows, got);
    if (n == 1) return got == 1 ? db_inbox_delete(c, del[0]) : -1;
    return db_inbox_delete_many(c, del, got);
}

static int step_inbox_single(db_conn *c, wa_store *st, long i)
{
    (void)st;
    (void)i;
    return inbox_cycle(c, 1);
}

static int step_inbox_batch(db_conn *c, wa_store *st, long i)
{
    (void)st;
    (void)i;
    return inbox_cycle(c, BATCH);
}

/* ---- two engine workers at once (2 cores) ---- */

typedef struct par_arg {
    int index;   /* 0 or 1 */
    long ops;    /* decrypt commits done */
    double secs; /* how long */
} par_arg;

static void *par_worker(void *arg)
{
    par_arg *a = arg;
    db_conn *c = connect_or_die();
    wa_store st;
    db_store_new(c, login_id, &st);
    double t0 = now_s(), t;
    long i = 0;
    do {
        int rc = st.begin(st.ctx);
        if (rc == 0) rc = decrypt_one(&st, 50000000L * (a->index + 2) + i);
        if (rc == 0) rc = st.commit(st.ctx);
        if (rc) die("parallel decrypt", c);
        i++;
        t = now_s();
    } while (t - t0 < case_secs);
    a->ops = i;
    a->secs = t - t0;
    st.destroy(st.ctx);
    db_conn_close(c);
    return NULL;
}

static const db_stmt st_setting = {"bench_setting", "SELECT current_setting($1)", 0};

static void print_setting(db_conn *c, const char *name)
{
    db_param p = db_p_text(name);
    db_result *r;
    if (db_exec_row(c, &st_setting, &p, 1, &r) == DB_OK) {
        printf("%s=%s ", name, db_result_text(r, 0, 0));
        db_result_free(r);
    }
}

int main(int argc, char **argv)
{
    const char *ci = getenv("WABRIDGE_BENCH_PG");
    if (!ci || !*ci) {
        fprintf(stderr, "usage: WABRIDGE_BENCH_PG='<libpq connection string>' bench_db [secs]\n");
        return 2;
    }
    snprintf(conninfo, sizeof(conninfo), "%s", ci);
    if (argc > 1) case_secs = atof(argv[1]) > 0 ? atof(argv[1]) : 2.0;
    for (size_t i = 0; i < sizeof(session_rec); i++)
        session_rec[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof(plaintext); i++)
        plaintext[i] = (uint8_t)(i * 13);

    db_conn *c = connect_or_die();
    if (db_migrate(c, db_migrations_embedded, db_migrations_embedded_count, NULL) != DB_OK)
        die("migrate", c);
    if (db_login_create(c, "@bench:example.org", &login_id) != DB_OK) die("login", c);
    if (db_portal_ensure(c, "15550001111@s.whatsapp.net", login_id, &portal_id) != DB_OK)
        die("portal", c);
    wa_store st;
    db_store_new(c, login_id, &st);

    printf("server: ");
    print_setting(c, "server_version");
    print_setting(c, "fsync");
    print_setting(c, "synchronous_commit");
    printf("\ncase length: %.1f s (median of 3 rounds)\n", case_secs);

    /* the same cases without waiting for the WAL flush: the CPU-bound ceiling, for comparison */
    char async_ci[1200];
    snprintf(async_ci, sizeof(async_ci), "%s options='-c synchronous_commit=off'", conninfo);
    db_conn *ca;
    db_error err;
    if (db_conn_open(async_ci, NULL, &ca, &err) != DB_OK) {
        fprintf(stderr, "bench_db: %s\n", err.message);
        return 1;
    }
    wa_store sta;
    db_store_new(ca, login_id, &sta);

    static const struct {
        const char *name; /* row label */
        step_fn step;     /* one step */
        int per_step;     /* operations per step */
    } cases[] = {
        {"session load+save, 1 per transaction", step_session_single, 1},
        {"session load+save, 100 per transaction", step_session_tx, BATCH},
        {"decrypt commit (event + session), 1 per tx", step_decrypt_single, 1},
        {"decrypt commit (event + session), 100 per tx", step_decrypt_tx, BATCH},
        {"message mapping insert, 1 per transaction", step_message_single, 1},
        {"message mapping insert, 100 per transaction", step_message_tx, BATCH},
        {"message mapping insert, 100 pipelined in 1 tx", step_message_pipeline, BATCH},
        {"inbox append + delete, 1 event per txn", step_inbox_single, 1},
        {"inbox append + delete, 100 events per txn", step_inbox_batch, BATCH},
    };
    printf("\n| %-46s | %10s | %14s |\n", "operation", "ops/s", "ops/s no-flush");
    printf("|------------------------------------------------|------------|----------------|\n");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double durable = run_case(cases[i].name, c, &st, cases[i].step, cases[i].per_step);
        double fast = run_case(cases[i].name, ca, &sta, cases[i].step, cases[i].per_step);
        printf("| %-46s | %10.0f | %14.0f |\n", cases[i].name, durable, fast);
        fflush(stdout);
    }
    sta.destroy(sta.ctx);
    db_conn_close(ca);

    pthread_t t[2];
    par_arg pa[2] = {{0, 0, 0}, {1, 0, 0}};
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, par_worker, &pa[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("| %-46s | %10.0f | %14s |\n", "decrypt commit, 1 per tx, 2 workers (total)",
           pa[0].ops / pa[0].secs + pa[1].ops / pa[1].secs, "");

    st.destroy(st.ctx);
    /* the bench's transactions all carry received_ms 1700000000000 */
    if (db_mx_txn_prune(c, 1700000000001, NULL) != DB_OK) die("cleanup", c);
    if (db_login_delete(c, login_id) != DB_OK) die("cleanup", c);
    db_conn_close(c);
    return 0;
}
