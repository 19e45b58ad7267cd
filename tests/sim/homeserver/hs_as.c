/*
 * tests/sim/homeserver/hs_as.c - appservice pushes of hs-sim, the way Synapse does them.
 *
 * Events enter a queue when the appservice is interested: the sender or the state_key is in its
 * user namespaces, or a namespaced user is joined to the room (so an invite of a ghost is pushed,
 * but a room's other events only once a ghost joined). One pusher thread sends one transaction
 * at a time (up to 100 events + 100 ephemeral), and retries the SAME txnId with exponential
 * backoff until the appservice answers 200; newer events wait meanwhile.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_state.h"

bool hs_as_user_in_ns(const char *user_id)
{
    if (!G.has_as || !user_id) return false;
    for (size_t i = 0; i < G.n_user_re; i++)
        if (regexec(&G.user_re[i], user_id, 0, NULL, 0) == 0) return true;
    return false;
}

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A namespaced user is joined to r (current state). */
static bool room_has_ns_member(hs_room *r)
{
    for (size_t i = 0; i < r->n_events; i++) {
        const cJSON *ev = r->events[i].ev;
        const char *t = str_of(ev, "type"), *sk = str_of(ev, "state_key");
        if (!t || !sk || strcmp(t, "m.room.member") != 0 || !hs_as_user_in_ns(sk)) continue;
        /* is this the latest member event of sk? */
        bool latest = true;
        for (size_t k = i + 1; k < r->n_events && latest; k++) {
            const char *t2 = str_of(r->events[k].ev, "type"),
                       *sk2 = str_of(r->events[k].ev, "state_key");
            if (t2 && sk2 && strcmp(t2, "m.room.member") == 0 && strcmp(sk2, sk) == 0)
                latest = false;
        }
        const char *m = str_of(cJSON_GetObjectItemCaseSensitive(ev, "content"), "membership");
        if (latest && m && strcmp(m, "join") == 0) return true;
    }
    return false;
}

void hs_as_offer_event(hs_room *r, const cJSON *ev)
{
    if (!G.has_as || !G.reg.url) return;
    bool want = hs_as_user_in_ns(str_of(ev, "sender")) ||
                hs_as_user_in_ns(str_of(ev, "state_key")) || room_has_ns_member(r);
    if (!want) return;
    cJSON_AddItemToArray(G.as_queue, cJSON_Duplicate(ev, 1));
    pthread_cond_broadcast(&G.cv);
}

void hs_as_offer_ephemeral(hs_room *r, const cJSON *edu)
{
    if (!G.has_as || !G.reg.url || !G.reg.receive_ephemeral) return;
    if (r && !room_has_ns_member(r)) return;
    cJSON_AddItemToArray(G.as_eph, cJSON_Duplicate(edu, 1));
    pthread_cond_broadcast(&G.cv);
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    return s * n;
}

/* One HTTP request to the appservice; returns the status, 0 on network failure. */
static long as_http(const char *method, const char *path, const char *body, long timeout_ms)
{
    CURL *h = curl_easy_init();
    if (!h) return 0;
    const char *base = G.reg.url;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    char *url = G.legacy_push
                    ? hs_strf("%.*s%s?access_token=%s", (int)bl, base, path, G.reg.hs_token)
                    : hs_strf("%.*s/_matrix/app/v1%s", (int)bl, base, path);
    char *auth = hs_strf("Authorization: Bearer %s", G.reg.hs_token);
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
    curl_easy_cleanup(h);
    free(url);
    free(auth);
    return status;
}

long hs_as_ping(const char *txn_id, long *duration_ms)
{
    if (!G.has_as || !G.reg.url) return 0;
    cJSON *b = cJSON_CreateObject();
    if (txn_id) cJSON_AddStringToObject(b, "transaction_id", txn_id);
    char *txt = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    int64_t t0 = hs_mono_ms();
    long st = as_http("POST", "/ping", txt, 5000);
    *duration_ms = (long)(hs_mono_ms() - t0);
    cJSON_free(txt);
    return st;
}

/* Moves up to 100 items from the front of src into a new array. */
static cJSON *take_front(cJSON *src, int max)
{
    cJSON *out = cJSON_CreateArray();
    for (int i = 0; i < max && cJSON_GetArraySize(src) > 0; i++)
        cJSON_AddItemToArray(out, cJSON_DetachItemFromArray(src, 0));
    return out;
}

void *hs_as_pusher(void *arg)
{
    pthread_mutex_lock(&G.mu);
    while (!G.quit) {
        if (cJSON_GetArraySize(G.as_queue) == 0 && cJSON_GetArraySize(G.as_eph) == 0) {
            pthread_cond_wait(&G.cv, &G.mu);
            continue;
        }
        cJSON *body = cJSON_CreateObject();
        cJSON *evs = take_front(G.as_queue, 100);
        cJSON *eph = take_front(G.as_eph, 100);
        int n = cJSON_GetArraySize(evs);
        cJSON_AddItemToObject(body, "events", evs);
        if (G.reg.receive_ephemeral) {
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
        uint64_t txn = ++G.as_txn;
        long backoff = G.push_backoff_ms;
        char path[64];
        snprintf(path, sizeof path, "/transactions/%llu", (unsigned long long)txn);
        while (!G.quit) {
            G.push_attempts++;
            pthread_mutex_unlock(&G.mu);
            long st = as_http("PUT", path, txt, 10000);
            pthread_mutex_lock(&G.mu);
            if (G.verbose)
                fprintf(stderr, "hs-sim: push txn %llu (%d events) -> %ld\n",
                        (unsigned long long)txn, n, st);
            if (st == 200) {
                G.push_ok++;
                G.push_events += (uint64_t)n;
                pthread_cond_broadcast(&G.cv);
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
    return NULL;
}
