/*
 * tests/fuzz/fuzz_mx_txn.c - libFuzzer target for appservice transaction bodies (the JSON →
 * events parser of matrix/event.h, which the endpoint runs on every PUT /transactions body).
 *
 * Whatever the bytes, the parser must return cleanly (ASan/UBSan watch). A rejection must name
 * itself. An accepted body is checked against cJSON (differential): cJSON must accept it too, the
 * events with a string type must be the ones kept, and each kept event's own bytes must parse back
 * to an object with the same type and event_id. Timeline events come first.
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "matrix/err.h"
#include "matrix/event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* cJSON cuts strings at an escaped NUL where our reader refuses such a field: skip the field
 * comparisons for inputs that contain one. */
static bool has_escaped_nul(const char *p, size_t n)
{
    for (size_t i = 0; i + 6 <= n; i++)
        if (memcmp(p + i, "\\u0000", 6) == 0) return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mx_event_batch b;
    mx_parse_error e;
    const char *body = (const char *)data;
    int rc = mx_event_batch_parse(body, size, &b, &e);
    if (rc != MX_OK) {
        if (e.code != rc || e.message[0] == '\0') abort();
        return 0;
    }
    /* differential: what we accept, cJSON accepts too, as an object with an `events` array */
    cJSON *root = cJSON_ParseWithLength(body, size);
    if (!cJSON_IsObject(root) || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "events")))
        abort();
    bool nul = has_escaped_nul(body, size);
    if (!nul) {
        size_t usable = 0;
        const cJSON *ev;
        cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(root, "events"))
        {
            if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(ev, "type"))) usable++;
        }
        if (usable != b.n_timeline) abort();
    }
    cJSON_Delete(root);
    if (b.count > MX_EVENT_MAX_PER_TXN || b.n_timeline > b.count) abort();
    for (size_t i = 0; i < b.count; i++) {
        const mx_event *ev = &b.events[i];
        if (!ev->type || !ev->json || strlen(ev->json) != ev->json_len) abort();
        if ((i < b.n_timeline) != (ev->kind == MX_EVENT_TIMELINE)) abort();
        cJSON *o = cJSON_ParseWithLength(ev->json, ev->json_len);
        if (!cJSON_IsObject(o)) abort();
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
        if (!cJSON_IsString(t) || (!nul && strcmp(t->valuestring, ev->type) != 0)) abort();
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "event_id");
        if (!nul && ((cJSON_IsString(id) != (ev->event_id != NULL)) ||
                     (ev->event_id && strcmp(id->valuestring, ev->event_id) != 0)))
            abort();
        cJSON_Delete(o);
    }
    mx_event_batch_free(&b);
    return 0;
}
