/*
 * wa/binary/decode.c - bytes to node tree, and the frame flag byte with capped zlib inflate.
 *
 * The input is untrusted: every read goes through a wb_cur, every declared length and count is
 * checked against the bytes that are left before anything is allocated, nesting is capped at
 * WA_BINARY_MAX_DEPTH, and a JID's parts must be plain strings (no JID inside a JID). Errors carry
 * the offset and what was found there.
 */
#include "wa/binary/node.h"
#include "wa/binary/tokens.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

typedef struct decoder {
    wb_cur cur;          /* what is left of the input */
    const uint8_t *base; /* start of the input, for offsets in errors */
    wb_arena *arena;     /* where the tree goes */
    wa_errinfo *ei;      /* may be NULL */
} decoder;

/* A decoded string: points at a static token, into the arena, or at a NUL-terminated literal. */
typedef struct str_view {
    const char *ptr;
    size_t len;
} str_view;

static int fail(decoder *d, int code, const char *fmt, ...)
{
    if (d->ei) {
        d->ei->code = code;
        d->ei->offset = wb_cur_offset(&d->cur, d->base);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->ei->message, sizeof(d->ei->message), fmt, ap);
        va_end(ap);
        size_t used = strlen(d->ei->message);
        snprintf(d->ei->message + used, sizeof(d->ei->message) - used, " at offset %zu",
                 d->ei->offset);
    }
    return code;
}

static int read_u8(decoder *d, uint8_t *v, const char *what)
{
    return wb_cur_u8(&d->cur, v) ? WA_OK : fail(d, WA_ERR_TRUNCATED, "input ends inside %s", what);
}

static int read_u16(decoder *d, uint16_t *v, const char *what)
{
    return wb_cur_u16be(&d->cur, v) ? WA_OK
                                    : fail(d, WA_ERR_TRUNCATED, "input ends inside %s", what);
}

/* Copies n bytes from the input into the arena as a NUL-terminated string. */
static int read_raw(decoder *d, size_t n, str_view *out)
{
    const uint8_t *p;
    if (!wb_cur_bytes(&d->cur, n, &p))
        return fail(d, WA_ERR_TRUNCATED, "declared length %zu but only %zu bytes left", n,
                    wb_cur_left(&d->cur));
    char *s = wb_arena_strndup(d->arena, (const char *)p, n);
    if (!s) return fail(d, WA_ERR_NOMEM, "out of memory for %zu bytes", n);
    *out = (str_view){s, n};
    return WA_OK;
}

static int read_binary_length(decoder *d, uint8_t tag, size_t *n)
{
    uint8_t n8 = 0;
    uint32_t n32;
    switch (tag) {
    case WA_TAG_BINARY_8:
        if (read_u8(d, &n8, "BINARY_8 length") != WA_OK) return WA_ERR_TRUNCATED;
        *n = n8;
        return WA_OK;
    case WA_TAG_BINARY_20:
        if (!wb_cur_u20be(&d->cur, &n32))
            return fail(d, WA_ERR_TRUNCATED, "input ends inside BINARY_20 length");
        *n = n32;
        return WA_OK;
    case WA_TAG_BINARY_32:
        if (!wb_cur_u32be(&d->cur, &n32))
            return fail(d, WA_ERR_TRUNCATED, "input ends inside BINARY_32 length");
        *n = n32;
        return WA_OK;
    }
    return fail(d, WA_ERR_BAD_TAG, "tag 0x%02x is not a binary length", tag);
}

static int read_packed(decoder *d, uint8_t tag, str_view *out)
{
    static const char nibbles[16] = "0123456789-.\0\0\0\0";
    static const char hexes[16] = "0123456789ABCDEF";
    uint8_t start = 0;
    if (read_u8(d, &start, "packed string length") != WA_OK) return WA_ERR_TRUNCATED;
    size_t nbytes = start & 0x7F;
    const uint8_t *p;
    if (!wb_cur_bytes(&d->cur, nbytes, &p))
        return fail(d, WA_ERR_TRUNCATED, "packed string of %zu bytes but only %zu left", nbytes,
                    wb_cur_left(&d->cur));
    size_t len = nbytes * 2;
    if ((start & 0x80) && len > 0) len--;
    char *s = wb_arena_alloc(d->arena, len + 1);
    if (!s) return fail(d, WA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < len; i++) {
        uint8_t v = (i % 2 == 0) ? p[i / 2] >> 4 : p[i / 2] & 0x0F;
        if (tag == WA_TAG_HEX_8) {
            s[i] = hexes[v];
        } else if (v > 11) {
            return fail(d, WA_ERR_BAD_PACKED, "invalid nibble %u in packed string", v);
        } else {
            s[i] = nibbles[v];
        }
    }
    s[len] = '\0';
    *out = (str_view){s, len};
    return WA_OK;
}

static int read_string(decoder *d, uint8_t tag, str_view *out, bool allow_jid);

/* A part of a JID: any string form but a JID. */
static int read_jid_part(decoder *d, str_view *out, const char *what)
{
    uint8_t tag = 0;
    if (read_u8(d, &tag, what) != WA_OK) return WA_ERR_TRUNCATED;
    return read_string(d, tag, out, false);
}

static int store_jid(decoder *d, const wa_jid *j, str_view *out)
{
    char buf[WA_JID_STR_MAX];
    size_t len = wa_jid_format(j, buf, sizeof(buf));
    char *s = wb_arena_strndup(d->arena, buf, len);
    if (!s) return fail(d, WA_ERR_NOMEM, "out of memory");
    *out = (str_view){s, len};
    return WA_OK;
}

static int copy_jid_part(decoder *d, char *dst, size_t cap, str_view part, const char *what)
{
    if (part.len >= cap || memchr(part.ptr, '\0', part.len))
        return fail(d, WA_ERR_BAD_JID, "JID %s of %zu bytes is not valid", what, part.len);
    memcpy(dst, part.ptr, part.len);
    dst[part.len] = '\0';
    return WA_OK;
}

static int read_jid(decoder *d, uint8_t tag, str_view *out)
{
    wa_jid j;
    memset(&j, 0, sizeof(j));
    str_view user, server;
    int rc;
    uint8_t domain = 0, device8 = 0;
    switch (tag) {
    case WA_TAG_JID_PAIR:
        if ((rc = read_jid_part(d, &user, "JID_PAIR user")) != WA_OK) return rc;
        if ((rc = read_jid_part(d, &server, "JID_PAIR server")) != WA_OK) return rc;
        if (server.len == 0) return fail(d, WA_ERR_BAD_JID, "JID_PAIR with an empty server");
        break;
    case WA_TAG_AD_JID:
        if ((rc = read_u8(d, &domain, "AD_JID domain")) != WA_OK) return rc;
        if ((rc = read_u8(d, &device8, "AD_JID device")) != WA_OK) return rc;
        if ((rc = read_jid_part(d, &user, "AD_JID user")) != WA_OK) return rc;
        j.device = device8;
        j.ad = true;
        switch (domain) {
        case WA_DOMAIN_LID: server = (str_view){WA_SERVER_LID, 3}; break;
        case WA_DOMAIN_HOSTED: server = (str_view){WA_SERVER_HOSTED, 6}; break;
        case WA_DOMAIN_HOSTED_LID: server = (str_view){WA_SERVER_HOSTED_LID, 10}; break;
        default: server = (str_view){WA_SERVER_PN, 14}; j.agent = domain;
        }
        break;
    case WA_TAG_FB_JID:
        if ((rc = read_jid_part(d, &user, "FB_JID user")) != WA_OK) return rc;
        if ((rc = read_u16(d, &j.device, "FB_JID device")) != WA_OK) return rc;
        if ((rc = read_jid_part(d, &server, "FB_JID server")) != WA_OK) return rc;
        if (server.len == 0) return fail(d, WA_ERR_BAD_JID, "FB_JID with an empty server");
        break;
    default: /* WA_TAG_INTEROP_JID */
        if ((rc = read_jid_part(d, &user, "INTEROP_JID user")) != WA_OK) return rc;
        if ((rc = read_u16(d, &j.device, "INTEROP_JID device")) != WA_OK) return rc;
        if ((rc = read_u16(d, &j.integrator, "INTEROP_JID integrator")) != WA_OK) return rc;
        if ((rc = read_jid_part(d, &server, "INTEROP_JID server")) != WA_OK) return rc;
        if (server.len == 0) return fail(d, WA_ERR_BAD_JID, "INTEROP_JID with an empty server");
        break;
    }
    if ((rc = copy_jid_part(d, j.user, sizeof(j.user), user, "user")) != WA_OK) return rc;
    if ((rc = copy_jid_part(d, j.server, sizeof(j.server), server, "server")) != WA_OK) return rc;
    return store_jid(d, &j, out);
}

static int read_string(decoder *d, uint8_t tag, str_view *out, bool allow_jid)
{
    if (tag >= 1 && tag < WA_TOKENS_SINGLE_COUNT) {
        const char *t = wa_tokens_single[tag];
        *out = (str_view){t, strlen(t)};
        return WA_OK;
    }
    uint8_t index = 0;
    size_t n;
    switch (tag) {
    case WA_TAG_LIST_EMPTY: *out = (str_view){"", 0}; return WA_OK;
    case WA_TAG_DICTIONARY_0:
    case WA_TAG_DICTIONARY_1:
    case WA_TAG_DICTIONARY_2:
    case WA_TAG_DICTIONARY_3: {
        if (read_u8(d, &index, "double-byte token") != WA_OK) return WA_ERR_TRUNCATED;
        const char *t = wa_tokens_double[tag - WA_TAG_DICTIONARY_0][index];
        *out = (str_view){t, strlen(t)};
        return WA_OK;
    }
    case WA_TAG_BINARY_8:
    case WA_TAG_BINARY_20:
    case WA_TAG_BINARY_32: {
        int rc = read_binary_length(d, tag, &n);
        return rc != WA_OK ? rc : read_raw(d, n, out);
    }
    case WA_TAG_NIBBLE_8:
    case WA_TAG_HEX_8: return read_packed(d, tag, out);
    case WA_TAG_JID_PAIR:
    case WA_TAG_AD_JID:
    case WA_TAG_FB_JID:
    case WA_TAG_INTEROP_JID:
        if (!allow_jid) return fail(d, WA_ERR_BAD_TAG, "JID tag 0x%02x inside a JID", tag);
        return read_jid(d, tag, out);
    }
    return fail(d, WA_ERR_BAD_TAG, "tag 0x%02x is not a string", tag);
}

static int read_list_size(decoder *d, uint8_t tag, size_t *n)
{
    uint8_t n8 = 0;
    uint16_t n16 = 0;
    switch (tag) {
    case WA_TAG_LIST_EMPTY: *n = 0; return WA_OK;
    case WA_TAG_LIST_8:
        if (read_u8(d, &n8, "LIST_8 size") != WA_OK) return WA_ERR_TRUNCATED;
        *n = n8;
        return WA_OK;
    case WA_TAG_LIST_16:
        if (read_u16(d, &n16, "LIST_16 size") != WA_OK) return WA_ERR_TRUNCATED;
        *n = n16;
        return WA_OK;
    }
    return fail(d, WA_ERR_BAD_TAG, "tag 0x%02x is not a list", tag);
}

static int decode_node(decoder *d, wa_node *node, unsigned depth);

static int read_children(decoder *d, wa_node *node, uint8_t tag, unsigned depth)
{
    size_t n;
    int rc = read_list_size(d, tag, &n);
    if (rc != WA_OK) return rc;
    /* The smallest node is 3 bytes (LIST_8, 1, token): refuse counts the input cannot hold. */
    if (n > wb_cur_left(&d->cur) / 3)
        return fail(d, WA_ERR_TOO_LARGE, "list of %zu nodes but only %zu bytes left", n,
                    wb_cur_left(&d->cur));
    node->kind = WA_CONTENT_LIST;
    node->nchildren = node->children_cap = n;
    node->children = NULL;
    if (n == 0) return WA_OK;
    wa_node *block = wb_arena_zalloc(d->arena, n * sizeof(wa_node));
    node->children = wb_arena_alloc(d->arena, n * sizeof(wa_node *));
    if (!block || !node->children) return fail(d, WA_ERR_NOMEM, "out of memory for %zu nodes", n);
    for (size_t i = 0; i < n; i++) {
        node->children[i] = &block[i];
        if ((rc = decode_node(d, &block[i], depth + 1)) != WA_OK) return rc;
    }
    return WA_OK;
}

static int decode_node(decoder *d, wa_node *node, unsigned depth)
{
    if (depth > WA_BINARY_MAX_DEPTH)
        return fail(d, WA_ERR_TOO_DEEP, "nodes nested deeper than %d", WA_BINARY_MAX_DEPTH);
    uint8_t tag = 0;
    size_t size = 0;
    int rc;
    if ((rc = read_u8(d, &tag, "node list header")) != WA_OK) return rc;
    if ((rc = read_list_size(d, tag, &size)) != WA_OK) return rc;
    if (size == 0) return fail(d, WA_ERR_BAD_TAG, "node with an empty list");
    str_view s;
    if ((rc = read_u8(d, &tag, "node tag")) != WA_OK) return rc;
    if ((rc = read_string(d, tag, &s, true)) != WA_OK) return rc;
    if (s.len == 0 || memchr(s.ptr, '\0', s.len))
        return fail(d, WA_ERR_BAD_TAG, "node with an empty or binary tag");
    node->tag = s.ptr;

    size_t nattrs = (size - 1) / 2;
    if (nattrs > wb_cur_left(&d->cur) / 2)
        return fail(d, WA_ERR_TOO_LARGE, "%zu attributes but only %zu bytes left", nattrs,
                    wb_cur_left(&d->cur));
    node->nattrs = node->attrs_cap = nattrs;
    node->attrs = nattrs ? wb_arena_alloc(d->arena, nattrs * sizeof(wa_attr)) : NULL;
    if (nattrs && !node->attrs) return fail(d, WA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nattrs; i++) {
        str_view key, value;
        if ((rc = read_u8(d, &tag, "attribute key")) != WA_OK) return rc;
        if ((rc = read_string(d, tag, &key, true)) != WA_OK) return rc;
        if (memchr(key.ptr, '\0', key.len))
            return fail(d, WA_ERR_BAD_TAG, "attribute key with a NUL byte");
        if ((rc = read_u8(d, &tag, "attribute value")) != WA_OK) return rc;
        if ((rc = read_string(d, tag, &value, true)) != WA_OK) return rc;
        node->attrs[i] = (wa_attr){key.ptr, value.ptr, value.len};
    }

    node->kind = WA_CONTENT_NONE;
    if (size % 2 == 1) return WA_OK;
    if ((rc = read_u8(d, &tag, "node content")) != WA_OK) return rc;
    switch (tag) {
    case WA_TAG_LIST_EMPTY:
    case WA_TAG_LIST_8:
    case WA_TAG_LIST_16: return read_children(d, node, tag, depth);
    case WA_TAG_BINARY_8:
    case WA_TAG_BINARY_20:
    case WA_TAG_BINARY_32: {
        size_t n;
        if ((rc = read_binary_length(d, tag, &n)) != WA_OK) return rc;
        if ((rc = read_raw(d, n, &s)) != WA_OK) return rc;
        node->kind = WA_CONTENT_BYTES;
        break;
    }
    default:
        if ((rc = read_string(d, tag, &s, true)) != WA_OK) return rc;
        node->kind = WA_CONTENT_STRING;
    }
    node->data = (const uint8_t *)s.ptr;
    node->data_len = s.len;
    return WA_OK;
}

int wa_binary_decode(const uint8_t *in, size_t len, wb_arena *a, wa_node **out, wa_errinfo *ei)
{
    decoder d = {.base = in, .arena = a, .ei = ei};
    wb_cur_init(&d.cur, in, len);
    if (ei) memset(ei, 0, sizeof(*ei));
    *out = NULL;
    wa_node *node = wb_arena_zalloc(a, sizeof(*node));
    if (!node) return fail(&d, WA_ERR_NOMEM, "out of memory");
    int rc = decode_node(&d, node, 1);
    if (rc != WA_OK) return rc;
    if (wb_cur_left(&d.cur) != 0)
        return fail(&d, WA_ERR_TRAILING, "%zu bytes left after the node", wb_cur_left(&d.cur));
    *out = node;
    return WA_OK;
}

/* Inflates src into a buffer of at most max bytes. */
static int inflate_capped(const uint8_t *src, size_t len, size_t max, wb_buf *out, wa_errinfo *ei)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit(&zs) != Z_OK) return WA_ERR_NOMEM;
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)len;
    int rc = WA_OK, zrc = Z_OK;
    while (zrc != Z_STREAM_END) {
        size_t room = len * 4 + 1024;
        if (room > max + 1 - out->len) room = max + 1 - out->len;
        if (room == 0 || !wb_buf_reserve(out, room)) {
            rc = out->failed ? WA_ERR_NOMEM : WA_ERR_TOO_LARGE;
            break;
        }
        zs.next_out = out->data + out->len;
        zs.avail_out = (uInt)room;
        zrc = inflate(&zs, Z_NO_FLUSH);
        out->len += room - zs.avail_out;
        if (out->len > max) {
            rc = WA_ERR_TOO_LARGE;
            break;
        }
        if (zrc == Z_BUF_ERROR && zs.avail_in == 0) zrc = Z_DATA_ERROR; /* input ended early */
        if (zrc != Z_OK && zrc != Z_STREAM_END) {
            rc = WA_ERR_INFLATE;
            break;
        }
    }
    if (rc == WA_OK && zs.avail_in != 0) rc = WA_ERR_TRAILING;
    if (rc != WA_OK && ei) {
        ei->code = rc;
        ei->offset = 1 + (len - zs.avail_in);
        snprintf(ei->message, sizeof(ei->message), "%s (compressed frame, limit %zu bytes)",
                 rc == WA_ERR_TOO_LARGE  ? "inflated size over the limit"
                 : rc == WA_ERR_TRAILING ? "bytes after the zlib stream"
                                         : (zs.msg ? zs.msg : "zlib error"),
                 max);
    }
    inflateEnd(&zs);
    return rc;
}

int wa_binary_unpack(const uint8_t *in, size_t len, size_t max_inflated, wb_arena *a, wa_node **out,
                     wa_errinfo *ei)
{
    *out = NULL;
    if (ei) memset(ei, 0, sizeof(*ei));
    if (len < 1) {
        if (ei) {
            ei->code = WA_ERR_TRUNCATED;
            snprintf(ei->message, sizeof(ei->message), "empty frame: no flag byte");
        }
        return WA_ERR_TRUNCATED;
    }
    if (!(in[0] & WA_FRAME_FLAG_ZLIB)) return wa_binary_decode(in + 1, len - 1, a, out, ei);
    if (max_inflated == 0) max_inflated = WA_BINARY_MAX_FRAME;
    wb_buf plain;
    wb_buf_init(&plain);
    int rc = inflate_capped(in + 1, len - 1, max_inflated, &plain, ei);
    if (rc == WA_OK) rc = wa_binary_decode(plain.data, plain.len, a, out, ei);
    wb_buf_free(&plain);
    return rc;
}
