/*
 * wa/binary/node.c - building, reading and comparing node trees (node.h).
 */
#include "wa/binary/node.h"

#include <assert.h>
#include <string.h>

wa_node *wa_node_new(wb_arena *a, const char *tag)
{
    assert(tag != NULL);
    wa_node *n = wb_arena_zalloc(a, sizeof(*n));
    if (!n) return NULL;
    n->tag = wb_arena_strndup(a, tag, strlen(tag));
    return n->tag ? n : NULL;
}

int wa_node_set_attr_len(wb_arena *a, wa_node *n, const char *key, const char *value, size_t len)
{
    char *v = wb_arena_strndup(a, value, len);
    if (!v) return WA_ERR_NOMEM;
    for (size_t i = 0; i < n->nattrs; i++) {
        if (strcmp(n->attrs[i].key, key) == 0) {
            n->attrs[i].value = v;
            n->attrs[i].value_len = len;
            return WA_OK;
        }
    }
    if (n->nattrs == n->attrs_cap) {
        size_t cap = n->attrs_cap ? n->attrs_cap * 2 : 4;
        wa_attr *grown = wb_arena_alloc(a, cap * sizeof(*grown));
        if (!grown) return WA_ERR_NOMEM;
        if (n->nattrs) memcpy(grown, n->attrs, n->nattrs * sizeof(*grown));
        n->attrs = grown;
        n->attrs_cap = cap;
    }
    char *k = wb_arena_strndup(a, key, strlen(key));
    if (!k) return WA_ERR_NOMEM;
    n->attrs[n->nattrs++] = (wa_attr){k, v, len};
    return WA_OK;
}

int wa_node_set_attr(wb_arena *a, wa_node *n, const char *key, const char *value)
{
    return wa_node_set_attr_len(a, n, key, value, strlen(value));
}

int wa_node_set_attr_jid(wb_arena *a, wa_node *n, const char *key, const wa_jid *jid)
{
    char buf[WA_JID_STR_MAX];
    size_t len = wa_jid_format(jid, buf, sizeof(buf));
    return wa_node_set_attr_len(a, n, key, buf, len);
}

int wa_node_add_child(wb_arena *a, wa_node *n, wa_node *child)
{
    assert(child != NULL && child != n);
    if (n->kind != WA_CONTENT_LIST) {
        n->kind = WA_CONTENT_LIST;
        n->children = NULL;
        n->nchildren = n->children_cap = 0;
    }
    if (n->nchildren == n->children_cap) {
        size_t cap = n->children_cap ? n->children_cap * 2 : 4;
        wa_node **grown = wb_arena_alloc(a, cap * sizeof(*grown));
        if (!grown) return WA_ERR_NOMEM;
        if (n->nchildren) memcpy(grown, n->children, n->nchildren * sizeof(*grown));
        n->children = grown;
        n->children_cap = cap;
    }
    n->children[n->nchildren++] = child;
    return WA_OK;
}

void wa_node_set_empty_list(wa_node *n)
{
    n->kind = WA_CONTENT_LIST;
    n->children = NULL;
    n->nchildren = n->children_cap = 0;
}

int wa_node_set_bytes(wb_arena *a, wa_node *n, const void *data, size_t len)
{
    char *copy = wb_arena_strndup(a, data, len);
    if (!copy) return WA_ERR_NOMEM;
    n->kind = WA_CONTENT_BYTES;
    n->data = (const uint8_t *)copy;
    n->data_len = len;
    return WA_OK;
}

int wa_node_set_string(wb_arena *a, wa_node *n, const char *s)
{
    int rc = wa_node_set_bytes(a, n, s, strlen(s));
    if (rc == WA_OK) n->kind = WA_CONTENT_STRING;
    return rc;
}

const char *wa_node_attr(const wa_node *n, const char *key)
{
    for (size_t i = 0; i < n->nattrs; i++)
        if (strcmp(n->attrs[i].key, key) == 0) return n->attrs[i].value;
    return NULL;
}

int wa_node_attr_jid(const wa_node *n, const char *key, wa_jid *out)
{
    for (size_t i = 0; i < n->nattrs; i++)
        if (strcmp(n->attrs[i].key, key) == 0)
            return wa_jid_parse(n->attrs[i].value, n->attrs[i].value_len, out);
    return WA_ERR_INVALID;
}

wa_node *wa_node_child(const wa_node *n, const char *tag)
{
    if (n->kind != WA_CONTENT_LIST) return NULL;
    for (size_t i = 0; i < n->nchildren; i++)
        if (strcmp(n->children[i]->tag, tag) == 0) return n->children[i];
    return NULL;
}

bool wa_node_equal(const wa_node *a, const wa_node *b)
{
    if (strcmp(a->tag, b->tag) != 0 || a->nattrs != b->nattrs || a->kind != b->kind) return false;
    for (size_t i = 0; i < a->nattrs; i++) {
        const wa_attr *x = &a->attrs[i], *y = &b->attrs[i];
        if (strcmp(x->key, y->key) != 0 || x->value_len != y->value_len ||
            memcmp(x->value, y->value, x->value_len) != 0)
            return false;
    }
    switch (a->kind) {
    case WA_CONTENT_NONE: return true;
    case WA_CONTENT_BYTES:
    case WA_CONTENT_STRING:
        return a->data_len == b->data_len &&
               (a->data_len == 0 || memcmp(a->data, b->data, a->data_len) == 0);
    case WA_CONTENT_LIST:
        if (a->nchildren != b->nchildren) return false;
        for (size_t i = 0; i < a->nchildren; i++)
            if (!wa_node_equal(a->children[i], b->children[i])) return false;
        return true;
    }
    return false;
}
