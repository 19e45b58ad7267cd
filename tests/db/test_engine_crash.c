/*
 * tests/db/test_engine_crash.c - crash safety of the receive path (wa/recv.h, "Nothing is lost"):
 * our engine in a separate process (engine_crash_tool) with its store in PostgreSQL, paired to an
 * account on wa-sim, is SIGKILLed at chosen points of chosen messages and started again on the
 * same database; every text the peer's phone sends must reach the tool's bridge table exactly
 * once and in order, and the Signal session must go on working both ways.
 *
 * The peer's phone sends 18 texts in 10 rounds (bursts of 1-3); in each round one message is
 * armed with a point (see engine_crash_tool.c):
 *   before_commit  (a pkmsg, then the middle of a burst): nothing was committed; wa-sim redelivers
 *                  and the engine decrypts again from the stored session (origin "live")
 *   after_commit   (a pkmsg, then the middle of a burst): committed but not acked; the redelivery
 *                  is answered from the event buffer (origin "buffer"), not decrypted again
 *   after_ack      acked, not bridged: the restarted bridge takes it from the buffer ("drain")
 *   after_bridge   acked and bridged: nothing comes again
 *   dup_slow       no kill: the receipt is lost, the stanza comes twice to the same process while
 *                  its buffer row is still there; the second copy is answered from the buffer and
 *                  the bridge does not take it twice
 *   dup_fast       the same, but the bridge took and deleted the row before the second copy came
 * After the rounds with a restart, the engine writes to the phone and the phone must decrypt it.
 *
 * A redelivery of a stanza whose buffer row the bridge already deleted (dup_fast, and a receipt
 * still in wa_net's queue when the process died) cannot be answered from the buffer; libsignal
 * reports a duplicate message, which the engine takes as already handled: it sends the receipt,
 * no retry receipt and no message. Such a retry receipt fails the test (WB_CRASH_STRICT=0 only
 * reports it).
 *   test_engine_crash path/to/wa-sim path/to/engine_crash_tool
 */
#include "check.h"
#include "db/bridge_db.h"
#include "db/migrate.h"
#include "pgtest.h"
#include "sim_proc.h"
#include "wa/err.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OUR_PHONE  "15550000021"
#define PEER_PHONE "15550000022"
#define NMSG       18
#define WAIT_MS    30000

static sim_proc simp;
static char conninfo[700];
static int64_t login_id;
static const char *tool_path;
static bool strict;

/* --- the tool process --- */

typedef struct tool {
    pid_t pid;
    int to_fd;      /* its stdin */
    int from_fd;    /* its stdout */
    char buf[8192]; /* bytes read, not yet a whole line */
    size_t len;
} tool;

/* What the tools said, over all runs. */
static struct said {
    char origin[NMSG][16]; /* bridged: live, buffer or drain; "" = not bridged */
    int bridged[NMSG];     /* "bridged" lines per message */
    int dups[NMSG];        /* "dup" lines per message: a second copy not taken */
    int gaps;              /* redeliveries answered with a retry receipt, not a receipt */
    int errors;            /* any other error line */
    int starts;            /* processes started */
} said;

static int msg_index(const char *text)
{
    int i;
    if (sscanf(text, "crash-m%d", &i) != 1 || i < 0 || i >= NMSG) return -1;
    return i;
}

static void tool_start(tool *t)
{
    int in[2], out[2];
    memset(t, 0, sizeof(*t));
    if (pipe(in) != 0 || pipe(out) != 0) abort();
    char login[32];
    snprintf(login, sizeof(login), "%lld", (long long)login_id);
    char root[65];
    wb_hex_encode(simp.root, 32, root);
    t->pid = fork();
    if (t->pid < 0) abort();
    if (t->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl(tool_path, tool_path, conninfo, login, simp.ws_url, simp.admin_url, root, OUR_PHONE,
              PEER_PHONE, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    t->to_fd = in[1];
    t->from_fd = out[0];
    said.starts++;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Notes what a line says (see the tool's header). */
static void note(const char *line)
{
    fprintf(stderr, "  tool: %s\n", line);
    char kind[16], text[256], origin[16];
    int code;
    if (sscanf(line, "%15s %255s %15s", kind, text, origin) == 3) {
        int i = msg_index(text);
        if (i >= 0 && strcmp(kind, "bridged") == 0) {
            said.bridged[i]++;
            snprintf(said.origin[i], sizeof(said.origin[i]), "%s", origin);
        } else if (i >= 0 && strcmp(kind, "dup") == 0) {
            said.dups[i]++;
        }
    }
    if (sscanf(line, "error %d", &code) == 1) {
        if (code == WA_ERR_STATE && strstr(line, "cannot decrypt message"))
            said.gaps++;
        else
            said.errors++;
    }
}

/* The next line from the tool within ms; false at EOF or timeout. */
static bool tool_line(tool *t, int ms, char *line, size_t cap)
{
    int64_t end = mono_ms() + ms;
    for (;;) {
        char *nl = memchr(t->buf, '\n', t->len);
        if (nl) {
            size_t n = (size_t)(nl - t->buf);
            snprintf(line, cap, "%.*s", (int)n, t->buf);
            memmove(t->buf, nl + 1, t->len - n - 1);
            t->len -= n + 1;
            note(line);
            return true;
        }
        int64_t left = end - mono_ms();
        if (left <= 0 || t->len == sizeof(t->buf)) return false;
        struct pollfd p = {.fd = t->from_fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        ssize_t got = read(t->from_fd, t->buf + t->len, sizeof(t->buf) - t->len);
        if (got <= 0) return false;
        t->len += (size_t)got;
    }
}

/* Reads lines until one starts with prefix; false at EOF or timeout. */
static bool tool_wait(tool *t, const char *prefix, int ms)
{
    int64_t end = mono_ms() + ms;
    char line[1024];
    while (mono_ms() < end) {
        if (!tool_line(t, (int)(end - mono_ms()), line, sizeof(line))) return false;
        if (strncmp(line, prefix, strlen(prefix)) == 0) return true;
    }
    return false;
}

/* Sends one command line (without its newline). */
static void tool_cmd(tool *t, const char *cmd)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%s\n", cmd);
    if (n > 0 && write(t->to_fd, line, (size_t)n) != n) fprintf(stderr, "write to tool failed\n");
}

/* Waits for the tool to end, reading what it still says; returns its wait status (-1 when it
 * had to be killed after WAIT_MS). */
static int tool_reap(tool *t)
{
    char line[1024];
    while (tool_line(t, WAIT_MS, line, sizeof(line)))
        ;
    close(t->to_fd);
    close(t->from_fd);
    int status = 0;
    int64_t end = mono_ms() + WAIT_MS;
    while (waitpid(t->pid, &status, WNOHANG) == 0) {
        if (mono_ms() > end) {
            kill(t->pid, SIGKILL);
            waitpid(t->pid, &status, 0);
            status = -1;
            break;
        }
        usleep(10000);
    }
    t->pid = 0;
    return status;
}

static bool killed(int status)
{
    return status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

/* --- what the database and wa-sim say --- */

/* The bridge table's texts in bridging order, joined by spaces. */
static void bridged_order(db_conn *c, char *out, size_t cap)
{
    static const db_stmt st = {"crash_order",
                               "SELECT string_agg(body, ' ' ORDER BY seq) FROM crash_bridged"
                               " WHERE login_id = $1",
                               0};
    db_param p = db_p_int(login_id);
    db_result *r = NULL;
    out[0] = '\0';
    if (db_exec_row(c, &st, &p, 1, &r) == DB_OK && !db_result_isnull(r, 0, 0))
        db_result_copy_text(r, 0, 0, out, cap);
    if (r) db_result_free(r);
}

static int64_t count_rows(db_conn *c, const db_stmt *st)
{
    db_param p = db_p_int(login_id);
    db_result *r = NULL;
    int64_t n = -1;
    if (db_exec_row(c, st, &p, 1, &r) == DB_OK) n = db_result_int(r, 0, 0);
    if (r) db_result_free(r);
    return n;
}

static const db_stmt ST_COUNT_BRIDGED = {
    "crash_count", "SELECT count(*) FROM crash_bridged WHERE login_id = $1", 0};
static const db_stmt ST_COUNT_BUFFER = {
    "crash_buffer", "SELECT count(*) FROM wa_event_buffer WHERE login_id = $1", 0};

/* Waits until the bridge table has n rows. */
static bool wait_bridged(db_conn *c, int64_t n)
{
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end; usleep(20000))
        if (count_rows(c, &ST_COUNT_BRIDGED) >= n) return true;
    return false;
}

/* Our companion's queue at wa-sim (-1 when not found). */
static long sim_queued(void)
{
    wb_buf out;
    wb_buf_init(&out);
    long queued = -1;
    if (sim_proc_admin(&simp, "/admin/state", NULL, &out) == 200) {
        cJSON *j = cJSON_Parse((const char *)out.data);
        const cJSON *acct, *dev;
        cJSON_ArrayForEach(acct, cJSON_GetObjectItem(j, "accounts"))
        {
            const cJSON *phone = cJSON_GetObjectItem(acct, "phone");
            if (!cJSON_IsString(phone) || strcmp(phone->valuestring, OUR_PHONE) != 0) continue;
            cJSON_ArrayForEach(dev, cJSON_GetObjectItem(acct, "devices"))
            {
                queued = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(dev, "queued"));
            }
        }
        cJSON_Delete(j);
    }
    wb_buf_free(&out);
    return queued;
}

static bool wait_sim_idle(void)
{
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end; usleep(20000))
        if (sim_queued() == 0) return true;
    return false;
}

/* True once the peer's phone has decrypted a message with this text. */
static bool phone_has(const char *text)
{
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end; usleep(50000)) {
        wb_buf out;
        wb_buf_init(&out);
        bool ok = false;
        if (sim_proc_admin(&simp, "/admin/messages?phone=" PEER_PHONE, NULL, &out) == 200) {
            cJSON *j = cJSON_Parse((const char *)out.data);
            const cJSON *m;
            cJSON_ArrayForEach(m, cJSON_GetObjectItem(j, "messages"))
            {
                const cJSON *t = cJSON_GetObjectItem(m, "text");
                if (cJSON_IsString(t) && strcmp(t->valuestring, text) == 0 &&
                    !cJSON_IsTrue(cJSON_GetObjectItem(m, "failed")))
                    ok = true;
            }
            cJSON_Delete(j);
        }
        wb_buf_free(&out);
        if (ok) return true;
    }
    return false;
}

/* The peer's phone sends a text to our account. */
static bool phone_send(const char *text)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"phone\":\"" PEER_PHONE "\",\"to\":\"" OUR_PHONE "@s.whatsapp.net\","
             "\"text\":\"%s\"}",
             text);
    return sim_proc_admin(&simp, "/admin/send", body, NULL) == 200;
}

/* --- the rounds --- */

typedef struct round {
    int n;             /* messages in the burst */
    const char *point; /* armed point, NULL for none */
    int target;        /* which message of the burst is armed */
    bool reply;        /* the engine writes to the phone afterwards */
} round;

static const round ROUNDS[] = {
    {1, "before_commit", 0, false}, /* m0: a pkmsg (consumes a one-time prekey) */
    {1, "after_commit", 0, false},  /* m1: still a pkmsg */
    {1, NULL, 0, true},             /* m2 */
    {3, "before_commit", 1, true},  /* m3 m4 m5 */
    {3, "after_commit", 1, true},   /* m6 m7 m8 */
    {2, "after_ack", 1, true},      /* m9 m10 */
    {2, "after_bridge", 1, true},   /* m11 m12 */
    {1, "dup_slow", 0, true},       /* m13 */
    {1, "dup_fast", 0, true},       /* m14 */
    {3, NULL, 0, true},             /* m15 m16 m17 */
};

static bool is_kill(const char *point)
{
    return point && strncmp(point, "dup_", 4) != 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    pgtest_require();
    tool_path = argv[2];
    strict = !getenv("WB_CRASH_STRICT") || strcmp(getenv("WB_CRASH_STRICT"), "0") != 0;
    curl_global_init(CURL_GLOBAL_DEFAULT);

    pgtest_fresh_db("wb_engine_crash", conninfo, sizeof(conninfo));
    db_conn *c = pgtest_connect(conninfo);
    db_migrate_report rep;
    CHECK_INT(db_migrate(c, db_migrations_embedded, db_migrations_embedded_count, &rep), DB_OK);
    CHECK_INT(db_user_ensure(c, "@crash:example.org"), DB_OK);
    CHECK_INT(db_login_create(c, "@crash:example.org", &login_id), DB_OK);
    CHECK_INT(db_exec_script(c, "CREATE TABLE crash_bridged (seq bigserial PRIMARY KEY,"
                                " login_id bigint NOT NULL, chat text NOT NULL,"
                                " msg_id text NOT NULL, body text NOT NULL, origin text NOT NULL,"
                                " UNIQUE (login_id, chat, msg_id))"),
              DB_OK);

    const char *const sim_args[] = {"--account", OUR_PHONE ":100000000000021:Crash", "--account",
                                    PEER_PHONE ":100000000000022:Peer", NULL};
    int started = sim_proc_start(&simp, argv[1], sim_args);
    CHECK_INT(started, 0);
    if (started != 0) return CHECK_DONE();

    tool t;
    tool_start(&t);
    CHECK(tool_wait(&t, "ready", 60000)); /* pairs by QR, then logs in */

    int next = 0, replies = 0;
    char text[64], expect[NMSG * 12], got[NMSG * 12];
    expect[0] = '\0';
    for (size_t r = 0; r < sizeof(ROUNDS) / sizeof(ROUNDS[0]); r++) {
        const round *rd = &ROUNDS[r];
        fprintf(stderr, "round %zu: %d message(s), %s\n", r, rd->n, rd->point ? rd->point : "-");
        if (rd->point) {
            char cmd[128];
            snprintf(cmd, sizeof(cmd), "arm %s crash-m%02d", rd->point, next + rd->target);
            tool_cmd(&t, cmd);
            CHECK(tool_wait(&t, "armed", WAIT_MS));
        }
        for (int i = 0; i < rd->n; i++) {
            snprintf(text, sizeof(text), "crash-m%02d", next + i);
            CHECK(phone_send(text));
            size_t l = strlen(expect);
            snprintf(expect + l, sizeof(expect) - l, "%s%s", l ? " " : "", text);
        }
        next += rd->n;
        if (is_kill(rd->point)) {
            CHECK(tool_wait(&t, "dying", WAIT_MS));
            CHECK(killed(tool_reap(&t)));
            tool_start(&t);
            CHECK(tool_wait(&t, "ready", WAIT_MS));
        }
        CHECK(wait_bridged(c, next));
        if (rd->point && strncmp(rd->point, "dup_", 4) == 0) {
            /* the second copy came after the reconnect: wait for that login */
            CHECK(tool_wait(&t, "ready", WAIT_MS));
        }
        CHECK(wait_sim_idle());
        if (rd->reply) {
            /* the session still works our way: the phone decrypts what we write */
            char cmd[128];
            snprintf(text, sizeof(text), "crash-reply-%d", replies++);
            snprintf(cmd, sizeof(cmd), "send %s", text);
            tool_cmd(&t, cmd);
            CHECK(tool_wait(&t, "sent", WAIT_MS));
            CHECK(phone_has(text));
            CHECK(wait_sim_idle()); /* the phone's delivery receipt acked */
        }
        bridged_order(c, got, sizeof(got));
        CHECK_STR(got, expect); /* each once, in order, so far */
    }

    /* a clean exit this time; then everything the tools said is read */
    tool_cmd(&t, "quit");
    int status = tool_reap(&t);
    CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* exactly once, in order, from where it had to come */
    bridged_order(c, got, sizeof(got));
    CHECK_STR(got, expect);
    CHECK_INT(count_rows(c, &ST_COUNT_BRIDGED), NMSG);
    CHECK_INT(count_rows(c, &ST_COUNT_BUFFER), 0); /* nothing left behind */
    for (int i = 0; i < NMSG; i++)
        CHECK_INT(said.bridged[i], 1);
    CHECK_STR(said.origin[0], "live");   /* before_commit: decrypted again */
    CHECK_STR(said.origin[1], "buffer"); /* after_commit: from the buffer */
    CHECK_STR(said.origin[4], "live");   /* before_commit */
    CHECK_STR(said.origin[7], "buffer"); /* after_commit */
    CHECK_STR(said.origin[10], "drain"); /* after_ack: taken by the restarted bridge */
    CHECK_STR(said.origin[12], "live");  /* after_bridge: nothing came again */
    CHECK(said.dups[13] >= 1);           /* dup_slow: the second copy, from the buffer, not taken */
    CHECK_INT(said.starts, 1 + 6);       /* six kills */
    CHECK_INT(said.errors, 0);
    CHECK_INT(sim_queued(), 0);
    if (said.gaps)
        fprintf(
            stderr,
            "NOTE: %d redelivered stanza(s) whose buffer row the bridge had already deleted were "
            "answered with a retry receipt (libsignal: duplicate message) instead of a receipt; "
            "each was bridged once all the same\n",
            said.gaps);
    if (strict) CHECK_INT(said.gaps, 0);

    db_conn_close(c);
    sim_proc_stop(&simp);
    curl_global_cleanup();
    return CHECK_DONE();
}
