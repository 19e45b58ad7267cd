/*
 * wa/binary/encode.c - node tree to bytes.
 *
 * A node is written as a list: [tag, key1, value1, ..., content?]. Each string takes the shortest
 * form that decodes back to the same string, tried in this order: dictionary token, packed nibbles
 * (digits, '-', '.'), packed hex (digits, 'A'-'F'), JID, raw bytes. This is the order WhatsApp Web
 * and Baileys use, so our bytes equal theirs (tests/vectors/binary proves it).
 */
#include "wa/binary/node.h"
#include "wa/binary/tokens.h"

#include <string.h>

static uint32_t fnv1a(const char *s, size_t len)
{
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x01000193u;
    }
    return h;
}

const wa_token_slot *wa_token_lookup(const char *s, size_t len)
{
    if (len == 0 || len > 255) return NULL;
    uint32_t i = fnv1a(s, len) & (WA_TOKENS_HASH_SIZE - 1);
    for (unsigned probe = 0; probe <= wa_tokens_hash_max_probe; probe++) {
        const wa_token_slot *slot = &wa_tokens_hash[i];
        if (!slot->str) return NULL;
        if (slot->len == len && memcmp(slot->str, s, len) == 0) return slot;
        i = (i + 1) & (WA_TOKENS_HASH_SIZE - 1);
    }
    return NULL;
}

static int write_bytes_header(wb_buf *out, size_t len)
{
    if (len >= (1ull << 32)) return WA_ERR_INVALID;
    if (len >= (1u << 20)) {
        wb_buf_u8(out, WA_TAG_BINARY_32);
        wb_buf_u32be(out, (uint32_t)len);
    } else if (len >= 256) {
        wb_buf_u8(out, WA_TAG_BINARY_20);
        wb_buf_u20be(out, (uint32_t)len);
    } else {
        wb_buf_u8(out, WA_TAG_BINARY_8);
        wb_buf_u8(out, (uint8_t)len);
    }
    return WA_OK;
}

static int write_raw(wb_buf *out, const char *s, size_t len)
{
    int rc = write_bytes_header(out, len);
    if (rc != WA_OK) return rc;
    wb_buf_append(out, s, len);
    return WA_OK;
}

static int nibble_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c == '-') return 10;
    if (c == '.') return 11;
    return -1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Returns true if every character has a value under `value` (nibble or uppercase hex). */
static bool packable(const char *s, size_t len, int (*value)(char))
{
    if (len == 0 || len > WA_BINARY_PACKED_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if (value(s[i]) < 0) return false;
    return true;
}

static void write_packed(wb_buf *out, uint8_t tag, const char *s, size_t len, int (*value)(char))
{
    wb_buf_u8(out, tag);
    wb_buf_u8(out, (uint8_t)((len + 1) / 2 | (len % 2 ? 0x80 : 0)));
    if (!wb_buf_reserve(out, (len + 1) / 2)) return;
    for (size_t i = 0; i + 1 < len; i += 2)
        out->data[out->len++] = (uint8_t)(value(s[i]) << 4 | value(s[i + 1]));
    if (len % 2) out->data[out->len++] = (uint8_t)(value(s[len - 1]) << 4 | 0x0F);
}

static int write_string(wb_buf *out, const char *s, size_t len);

/* Writes j in its binary form; returns WA_ERR_BAD_JID when it has none (the caller writes raw). */
static int write_jid(wb_buf *out, const wa_jid *j)
{
    if (strcmp(j->server, WA_SERVER_MSGR) == 0) {
        wb_buf_u8(out, WA_TAG_FB_JID);
        write_string(out, j->user, strlen(j->user));
        wb_buf_u16be(out, j->device);
        return write_string(out, j->server, strlen(j->server));
    }
    if (strcmp(j->server, WA_SERVER_INTEROP) == 0) {
        wb_buf_u8(out, WA_TAG_INTEROP_JID);
        write_string(out, j->user, strlen(j->user));
        wb_buf_u16be(out, j->device);
        wb_buf_u16be(out, j->integrator);
        return write_string(out, j->server, strlen(j->server));
    }
    if (j->ad || j->agent) {
        int domain = wa_jid_ad_domain(j);
        if (domain < 0 || j->device > 255) return WA_ERR_BAD_JID;
        wb_buf_u8(out, WA_TAG_AD_JID);
        wb_buf_u8(out, (uint8_t)domain);
        wb_buf_u8(out, (uint8_t)j->device);
        return write_string(out, j->user, strlen(j->user));
    }
    wb_buf_u8(out, WA_TAG_JID_PAIR);
    if (j->user[0])
        write_string(out, j->user, strlen(j->user));
    else
        wb_buf_u8(out, WA_TAG_LIST_EMPTY);
    return write_string(out, j->server, strlen(j->server));
}

static int write_string(wb_buf *out, const char *s, size_t len)
{
    if (len == 0) return write_raw(out, s, 0);
    const wa_token_slot *tok = wa_token_lookup(s, len);
    if (tok) {
        if (tok->dict != WA_TOKEN_SINGLE)
            wb_buf_u8(out, (uint8_t)(WA_TAG_DICTIONARY_0 + tok->dict));
        wb_buf_u8(out, tok->index);
        return WA_OK;
    }
    if (packable(s, len, nibble_value)) {
        write_packed(out, WA_TAG_NIBBLE_8, s, len, nibble_value);
        return WA_OK;
    }
    if (packable(s, len, hex_value)) {
        write_packed(out, WA_TAG_HEX_8, s, len, hex_value);
        return WA_OK;
    }
    if (memchr(s, '@', len)) {
        wa_jid j;
        if (wa_jid_parse(s, len, &j) == WA_OK) {
            size_t mark = out->len;
            if (write_jid(out, &j) == WA_OK) return WA_OK;
            out->len = mark; /* no binary form: fall through to raw */
        }
    }
    return write_raw(out, s, len);
}

static int write_list_start(wb_buf *out, size_t n)
{
    if (n == 0) {
        wb_buf_u8(out, WA_TAG_LIST_EMPTY);
    } else if (n < 256) {
        wb_buf_u8(out, WA_TAG_LIST_8);
        wb_buf_u8(out, (uint8_t)n);
    } else if (n <= 0xFFFF) {
        wb_buf_u8(out, WA_TAG_LIST_16);
        wb_buf_u16be(out, (uint16_t)n);
    } else {
        return WA_ERR_INVALID;
    }
    return WA_OK;
}

static int encode_node(const wa_node *n, wb_buf *out, unsigned depth)
{
    if (!n->tag || !n->tag[0] || depth > WA_BINARY_MAX_DEPTH) return WA_ERR_INVALID;
    if (n->nattrs > (0xFFFF - 2) / 2) return WA_ERR_INVALID;
    int rc = write_list_start(out, 2 * n->nattrs + 1 + (n->kind != WA_CONTENT_NONE));
    if (rc == WA_OK) rc = write_string(out, n->tag, strlen(n->tag));
    for (size_t i = 0; rc == WA_OK && i < n->nattrs; i++) {
        rc = write_string(out, n->attrs[i].key, strlen(n->attrs[i].key));
        if (rc == WA_OK) rc = write_string(out, n->attrs[i].value, n->attrs[i].value_len);
    }
    if (rc != WA_OK) return rc;
    switch (n->kind) {
    case WA_CONTENT_NONE: break;
    case WA_CONTENT_STRING: rc = write_string(out, (const char *)n->data, n->data_len); break;
    case WA_CONTENT_BYTES:
        rc = write_bytes_header(out, n->data_len);
        if (rc == WA_OK) wb_buf_append(out, n->data, n->data_len);
        break;
    case WA_CONTENT_LIST:
        rc = write_list_start(out, n->nchildren);
        for (size_t i = 0; rc == WA_OK && i < n->nchildren; i++)
            rc = encode_node(n->children[i], out, depth + 1);
        break;
    }
    return rc;
}

int wa_binary_encode(const wa_node *n, wb_buf *out)
{
    size_t mark = out->len;
    int rc = encode_node(n, out, 1);
    if (rc == WA_OK && out->failed) rc = WA_ERR_NOMEM;
    if (rc != WA_OK && !out->failed) out->len = mark;
    return rc;
}

int wa_binary_pack(const wa_node *n, wb_buf *out)
{
    if (!wb_buf_u8(out, 0)) return WA_ERR_NOMEM;
    return wa_binary_encode(n, out);
}
