/*
 * matrix/mem_store.c - mx_mem_store: the transaction store of as_server.h kept in memory.
 *
 * For tests and benchmarks: transaction ids in an open-addressing hash set, stored events as
 * copies of their JSON in commit order. A test "restarts" the endpoint by stopping one server and
 * starting another on the same store; the store keeps what the first committed, as PostgreSQL
 * would.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "matrix/as_server.h"
#include "matrix/err.h"

struct mx_mem_store {
    pthread_mutex_t mu;  /* guards everything below */
    char **ids;          /* hash set of txn ids (malloc'd strings); NULL = empty slot */
    size_t ids_cap;      /* slots, a power of two (0 before the first insert) */
    size_t ids_len;      /* ids stored; kept <= ids_cap / 2 */
    char **events;       /* JSON copies in commit order */
    size_t events_len;   /* events stored */
    size_t events_cap;   /* slots allocated in events */
    unsigned fail_next;  /* commits still to fail */
    size_t commit_calls; /* commits attempted */
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool ids_contains(mx_mem_store *m, const char *id)
{
    if (!m->ids_cap) return false;
    for (size_t i = fnv1a(id) & (m->ids_cap - 1);; i = (i + 1) & (m->ids_cap - 1)) {
        if (!m->ids[i]) return false;
        if (strcmp(m->ids[i], id) == 0) return true;
    }
}

static void ids_put(char **ids, size_t cap, char *id)
{
    size_t i = fnv1a(id) & (cap - 1);
    while (ids[i])
        i = (i + 1) & (cap - 1);
    ids[i] = id;
}

static int ids_add(mx_mem_store *m, const char *id)
{
    if ((m->ids_len + 1) * 2 > m->ids_cap) {
        size_t ncap = m->ids_cap ? m->ids_cap * 2 : 64;
        char **n = calloc(ncap, sizeof *n);
        if (!n) return MX_ERR_NOMEM;
        for (size_t i = 0; i < m->ids_cap; i++)
            if (m->ids[i]) ids_put(n, ncap, m->ids[i]);
        free(m->ids);
        m->ids = n;
        m->ids_cap = ncap;
    }
    char *copy = strdup(id);
    if (!copy) return MX_ERR_NOMEM;
    ids_put(m->ids, m->ids_cap, copy);
    m->ids_len++;
    return MX_OK;
}

static int mem_commit(void *ctx, const char *txn_id, const mx_event_batch *batch)
{
    mx_mem_store *m = ctx;
    int rc = MX_TXN_STORED;
    pthread_mutex_lock(&m->mu);
    m->commit_calls++;
    if (m->fail_next) {
        m->fail_next--;
        rc = MX_ERR_STORE;
        goto out;
    }
    if (ids_contains(m, txn_id)) {
        rc = MX_TXN_DUPLICATE;
        goto out;
    }
    /* all or nothing: make room and copy first, then record the id */
    if (m->events_len + batch->count > m->events_cap) {
        size_t ncap = m->events_cap ? m->events_cap : 256;
        while (ncap < m->events_len + batch->count)
            ncap *= 2;
        char **n = realloc(m->events, ncap * sizeof *n);
        if (!n) {
            rc = MX_ERR_NOMEM;
            goto out;
        }
        m->events = n;
        m->events_cap = ncap;
    }
    size_t base = m->events_len;
    for (size_t i = 0; i < batch->count; i++) {
        m->events[base + i] = strdup(batch->events[i].json);
        if (!m->events[base + i]) {
            for (size_t k = 0; k < i; k++)
                free(m->events[base + k]);
            rc = MX_ERR_NOMEM;
            goto out;
        }
    }
    if (ids_add(m, txn_id) != MX_OK) {
        for (size_t k = 0; k < batch->count; k++)
            free(m->events[base + k]);
        rc = MX_ERR_NOMEM;
        goto out;
    }
    m->events_len += batch->count;
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

mx_mem_store *mx_mem_store_new(void)
{
    mx_mem_store *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->mu, NULL);
    return m;
}

void mx_mem_store_free(mx_mem_store *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->ids_cap; i++)
        free(m->ids[i]);
    free(m->ids);
    for (size_t i = 0; i < m->events_len; i++)
        free(m->events[i]);
    free(m->events);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

mx_txn_store mx_mem_store_iface(mx_mem_store *m)
{
    mx_txn_store s = {.ctx = m, .commit = mem_commit};
    return s;
}

void mx_mem_store_fail_next(mx_mem_store *m, unsigned n)
{
    pthread_mutex_lock(&m->mu);
    m->fail_next = n;
    pthread_mutex_unlock(&m->mu);
}

size_t mx_mem_store_txn_count(mx_mem_store *m)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->ids_len;
    pthread_mutex_unlock(&m->mu);
    return n;
}

size_t mx_mem_store_event_count(mx_mem_store *m)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->events_len;
    pthread_mutex_unlock(&m->mu);
    return n;
}

size_t mx_mem_store_commit_calls(mx_mem_store *m)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->commit_calls;
    pthread_mutex_unlock(&m->mu);
    return n;
}

char *mx_mem_store_event_json(mx_mem_store *m, size_t i)
{
    pthread_mutex_lock(&m->mu);
    char *s = i < m->events_len ? strdup(m->events[i]) : NULL;
    pthread_mutex_unlock(&m->mu);
    return s;
}

void mx_mem_store_forget_events(mx_mem_store *m)
{
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->events_len; i++)
        free(m->events[i]);
    m->events_len = 0;
    pthread_mutex_unlock(&m->mu);
}
