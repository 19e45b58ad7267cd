/*
 * tests/sim/homeserver/hs_as.c - appservice pushes of hs-sim, the way Synapse does them.
 *
 * Several appservices may be registered (one registration file each). Each one with a url has
 * its own queue: an event enters it when that appservice is interested: the sender or the
 * state_key is in its user namespaces, or one of its namespaced users is joined to the room (so
 * an invite of a ghost is pushed, but a room's other events only once a ghost joined). A
 * registration whose url is null (or empty) gets no transactions: it only lends its as_token
 * (e.g. double puppeting). Per appservice, one pusher thread sends one transaction at a time (up
 * to 100 events + 100 ephemeral), and retries the SAME txnId with exponential backoff until the
 * appservice answers 200; newer events wait meanwhile.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_state.h"

static bool in_namespace(const hs_appservice *as, const char *user_id, bool exclusive_only)
{
    for (size_t i = 0; i < as->n_user_re; i++)
        if ((!exclusive_only || as->user_exclusive[i]) &&
            regexec(&as->user_re[i], user_id, 0, NULL, 0) == 0)
            return true;
    return false;
}

bool hs_as_interested_user(const hs_appservice *as, const char *user_id)
{
    if (!as || !user_id) return false;
    return strcmp(user_id, as->bot_id) == 0 || in_namespace(as, user_id, false);
}

bool hs_as_user_exclusive(const char *user_id)
{
    for (size_t i = 0; user_id && i < G.n_as; i++)
        if (strcmp(user_id, G.as[i].bot_id) == 0 || in_namespace(&G.as[i], user_id, true))
            return true;
    return false;
}

hs_appservice *hs_as_by_token(const char *token)
{
    for (size_t i = 0; token && i < G.n_as; i++)
        if (strcmp(token, G.as[i].reg.as_token) == 0) return &G.as[i];
    return NULL;
}

size_t hs_as_queued(void)
{
    size_t n = 0;
    for (size_t i = 0; i < G.n_as; i++)
        if (G.as[i].pushes)
            n +=
                (size_t)cJSON_GetArraySize(G.as[i].queue) + (size_t)cJSON_GetArraySize(G.as[i].eph);
    return n;
}

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A user in as's namespaces is joined to r (current state). */
static bool room_has_ns_member(const hs_appservice *as, hs_room *r)
{
    for (size_t i = 0; i < r->n_state; i++) { /* the current members */
        const hs_state_ent *s = &r->state[i];
        if (strcmp(s->type, "m.room.member") != 0 || !hs_as_interested_user(as, s->key)) continue;
        const cJSON *ev = r->events[s->idx].ev;
        const char *m = str_of(cJSON_GetObjectItemCaseSensitive(ev, "content"), "membership");
        if (m && strcmp(m, "join") == 0) return true;
    }
    return false;
}

void hs_as_offer_event(hs_room *r, const cJSON *ev)
{
    for (size_t i = 0; i < G.n_as; i++) {
        hs_appservice *as = &G.as[i];
        if (!as->pushes) continue;
        bool want = hs_as_interested_user(as, str_of(ev, "sender")) ||
                    hs_as_interested_user(as, str_of(ev, "state_key")) || room_has_ns_member(as, r);
        if (!want) continue;
        cJSON_AddItemToArray(as->queue, cJSON_Duplicate(ev, 1));
        pthread_cond_broadcast(&G.push_cv);
    }
}

void hs_as_offer_ephemeral(hs_room *r, const cJSON *edu)
{
    for (size_t i = 0; i < G.n_as; i++) {
        hs_appservice *as = &G.as[i];
        if (!as->pushes || !as->reg.receive_ephemeral) continue;
        if (r && !room_has_ns_member(as, r)) continue;
        cJSON_AddItemToArray(as->eph, cJSON_Duplicate(edu, 1));
        pthread_cond_broadcast(&G.push_cv);
    }
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    return s * n;
}

/* One HTTP request to the appservice on h (a handle of the calling thread, so its connection
 * is kept open for the next request, as a homeserver's HTTP client pool does); returns the status,
 * 0 on network failure. */
static long as_http(CURL *h, const hs_appservice *as, const char *method, const char *path,
                    const char *body, long timeout_ms)
{
    if (!h) return 0;
    const char *base = as->reg.url;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    char *url = G.legacy_push
                    ? hs_strf("%.*s%s?access_token=%s", (int)bl, base, path, as->reg.hs_token)
                    : hs_strf("%.*s/_matrix/app/v1%s", (int)bl, base, path);
    char *auth = hs_strf("Authorization: Bearer %s", as->reg.hs_token);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (!G.legacy_push) hdr = curl_slist_append(hdr, auth);
    hdr = curl_slist_append(hdr, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdr);
    free(url);
    free(auth);
    return status;
}

long hs_as_ping(const hs_appservice *as, const char *txn_id, long *duration_ms)
{
    if (!as->pushes) return 0;
    cJSON *b = cJSON_CreateObject();
    if (txn_id) cJSON_AddStringToObject(b, "transaction_id", txn_id);
    char *txt = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    int64_t t0 = hs_mono_ms();
    CURL *h = curl_easy_init();
    long st = as_http(h, as, "POST", "/ping", txt, 5000);
    if (h) curl_easy_cleanup(h);
    *duration_ms = (long)(hs_mono_ms() - t0);
    cJSON_free(txt);
    return st;
}

/* Moves up to 100 items from the front of src into a new array. (cJSON arrays are lists: their
 * size is a walk, so emptiness is asked of the first child.) */
static cJSON *take_front(cJSON *src, int max)
{
    cJSON *out = cJSON_CreateArray();
    for (int i = 0; i < max && src->child; i++)
        cJSON_AddItemToArray(out, cJSON_DetachItemFromArray(src, 0));
    return out;
}

void *hs_as_pusher(void *arg)
{
    hs_appservice *as = arg;
    CURL *conn = curl_easy_init(); /* one connection, reused push after push */
    pthread_mutex_lock(&G.mu);
    while (!G.quit) {
        if (!as->queue->child && !as->eph->child) {
            pthread_cond_wait(&G.push_cv, &G.mu);
            continue;
        }
        cJSON *body = cJSON_CreateObject();
        cJSON *evs = take_front(as->queue, 100);
        cJSON *eph = take_front(as->eph, 100);
        int n = cJSON_GetArraySize(evs);
        cJSON_AddItemToObject(body, "events", evs);
        if (as->reg.receive_ephemeral) {
            cJSON_AddItemToObject(body, "de.sorunome.msc2409.ephemeral", cJSON_Duplicate(eph, 1));
            cJSON_AddItemToObject(body, "ephemeral", eph);
        } else {
            cJSON_Delete(eph);
        }
        char *txt = cJSON_PrintUnformatted(body);
        int64_t t_us = hs_mono_us();
        cJSON *e;
        cJSON_ArrayForEach(e, evs) hs_event_pushed(e, t_us);
        cJSON_Delete(body);
        uint64_t txn = ++as->txn;
        long backoff = G.push_backoff_ms;
        char path[64];
        snprintf(path, sizeof path, "/transactions/%llu", (unsigned long long)txn);
        while (!G.quit) {
            G.push_attempts++;
            pthread_mutex_unlock(&G.mu);
            long st = as_http(conn, as, "PUT", path, txt, 10000);
            pthread_mutex_lock(&G.mu);
            if (G.verbose)
                fprintf(stderr, "hs-sim: push to %s txn %llu (%d events) -> %ld\n", as->reg.id,
                        (unsigned long long)txn, n, st);
            if (st == 200) {
                G.push_ok++;
                G.push_events += (uint64_t)n;
                pthread_cond_broadcast(&G.push_cv);
                break;
            }
            /* wait backoff (woken early only by quit) */
            int64_t until = hs_mono_ms() + backoff;
            while (!G.quit && hs_mono_ms() < until) {
                pthread_mutex_unlock(&G.mu);
                hs_sleep_ms(until - hs_mono_ms() < 20 ? (long)(until - hs_mono_ms()) : 20);
                pthread_mutex_lock(&G.mu);
            }
            backoff = backoff * 2 > G.push_backoff_max_ms ? G.push_backoff_max_ms : backoff * 2;
        }
        cJSON_free(txt);
    }
    pthread_mutex_unlock(&G.mu);
    if (conn) curl_easy_cleanup(conn);
    return NULL;
}
