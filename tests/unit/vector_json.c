/*
 * tests/unit/vector_json.c - JSON nodes of the golden vectors to wa_node, and comparison.
 */
#include "vector_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *vj_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size + 1);
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[size] = '\0';
    if (len) *len = (size_t)size;
    return buf;
}

/* Content bytes of {"bytes": hex} or {"bytes_pattern": [len, step]} into a malloc'd buffer. */
static uint8_t *content_bytes(const cJSON *content, size_t *len)
{
    const cJSON *hex = cJSON_GetObjectItemCaseSensitive(content, "bytes");
    const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(content, "bytes_pattern");
    if (cJSON_IsString(hex)) {
        size_t hl = strlen(hex->valuestring);
        uint8_t *out = malloc(hl / 2 + 1);
        if (!wb_hex_decode(hex->valuestring, hl, out, hl / 2, len)) {
            free(out);
            return NULL;
        }
        return out;
    }
    if (cJSON_IsArray(pattern) && cJSON_GetArraySize(pattern) == 2) {
        size_t n = (size_t)cJSON_GetArrayItem(pattern, 0)->valuedouble;
        unsigned step = (unsigned)cJSON_GetArrayItem(pattern, 1)->valuedouble;
        uint8_t *out = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            out[i] = (uint8_t)(i * step + 7);
        *len = n;
        return out;
    }
    return NULL;
}

wa_node *vj_node_from_json(const cJSON *j, wb_arena *a)
{
    const cJSON *tag = cJSON_GetObjectItemCaseSensitive(j, "tag");
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(j, "attrs");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(j, "content");
    if (!cJSON_IsString(tag) || !cJSON_IsArray(attrs)) return NULL;
    wa_node *n = wa_node_new(a, tag->valuestring);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, attrs)
    {
        const cJSON *k = cJSON_GetArrayItem(kv, 0), *v = cJSON_GetArrayItem(kv, 1);
        if (!cJSON_IsString(k) || !cJSON_IsString(v)) return NULL;
        wa_node_set_attr(a, n, k->valuestring, v->valuestring);
    }
    if (!content) return n;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(content, "list");
    const cJSON *str = cJSON_GetObjectItemCaseSensitive(content, "string");
    if (cJSON_IsArray(list)) {
        wa_node_set_empty_list(n);
        const cJSON *child;
        cJSON_ArrayForEach(child, list)
        {
            wa_node *c = vj_node_from_json(child, a);
            if (!c) return NULL;
            wa_node_add_child(a, n, c);
        }
    } else if (cJSON_IsString(str)) {
        wa_node_set_string(a, n, str->valuestring);
    } else {
        size_t len;
        uint8_t *b = content_bytes(content, &len);
        if (!b) return NULL;
        wa_node_set_bytes(a, n, b, len);
        free(b);
    }
    return n;
}

const char *vj_node_matches(const wa_node *n, const cJSON *j)
{
    static char why[256];
    const cJSON *tag = cJSON_GetObjectItemCaseSensitive(j, "tag");
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(j, "attrs");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(j, "content");
    if (!cJSON_IsString(tag) || strcmp(tag->valuestring, n->tag) != 0) {
        snprintf(why, sizeof(why), "tag %s differs", n->tag);
        return why;
    }
    if ((size_t)cJSON_GetArraySize(attrs) != n->nattrs) {
        snprintf(why, sizeof(why), "<%s>: %zu attributes, want %d", n->tag, n->nattrs,
                 cJSON_GetArraySize(attrs));
        return why;
    }
    for (size_t i = 0; i < n->nattrs; i++) {
        const cJSON *kv = cJSON_GetArrayItem(attrs, (int)i);
        const char *k = cJSON_GetArrayItem(kv, 0)->valuestring;
        const char *v = cJSON_GetArrayItem(kv, 1)->valuestring;
        if (strcmp(k, n->attrs[i].key) != 0 || strlen(v) != n->attrs[i].value_len ||
            memcmp(v, n->attrs[i].value, n->attrs[i].value_len) != 0) {
            snprintf(why, sizeof(why), "<%s>: attribute %zu is %s=\"%.60s\", want %s=\"%.60s\"",
                     n->tag, i, n->attrs[i].key, n->attrs[i].value, k, v);
            return why;
        }
    }
    if (!content) return n->kind == WA_CONTENT_NONE ? NULL : "content where none is expected";
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(content, "list");
    const cJSON *str = cJSON_GetObjectItemCaseSensitive(content, "string");
    if (cJSON_IsArray(list)) {
        if (n->kind != WA_CONTENT_LIST) return "expected a list";
        if ((size_t)cJSON_GetArraySize(list) != n->nchildren) return "child count differs";
        for (size_t i = 0; i < n->nchildren; i++) {
            const char *r = vj_node_matches(n->children[i], cJSON_GetArrayItem(list, (int)i));
            if (r) return r;
        }
        return NULL;
    }
    if (cJSON_IsString(str)) {
        if (n->kind != WA_CONTENT_STRING) return "expected string content";
        if (strlen(str->valuestring) != n->data_len ||
            memcmp(str->valuestring, n->data, n->data_len) != 0)
            return "string content differs";
        return NULL;
    }
    if (n->kind != WA_CONTENT_BYTES) return "expected bytes content";
    size_t len;
    uint8_t *b = content_bytes(content, &len);
    const char *r = (!b || len != n->data_len || (len && memcmp(b, n->data, len) != 0))
                        ? "bytes content differs"
                        : NULL;
    free(b);
    return r;
}
