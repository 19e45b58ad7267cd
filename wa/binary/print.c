/*
 * wa/binary/print.c - a readable XML-like rendering of nodes, for logs and test failures.
 *
 *   <iq id="1.2-3" type="get" xmlns="encrypt">
 *     <count/>
 *   </iq>
 *   <enc type="msg" v="2">33a1...(112 bytes)</enc>
 *
 * Quotes, '<', '>', '&' and control bytes in attributes and strings are escaped, so one node is one
 * well-delimited block whatever it holds.
 */
#include "wa/binary/node.h"

#include <stdio.h>
#include <string.h>

static void put(wb_buf *out, const char *s)
{
    wb_buf_append(out, s, strlen(s));
}

static void put_escaped(wb_buf *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': put(out, "&quot;"); break;
        case '&': put(out, "&amp;"); break;
        case '<': put(out, "&lt;"); break;
        case '>': put(out, "&gt;"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char esc[8];
                snprintf(esc, sizeof(esc), "\\x%02x", c);
                put(out, esc);
            } else {
                wb_buf_u8(out, c);
            }
        }
    }
}

static void put_hex(wb_buf *out, const uint8_t *p, size_t len, size_t max_hex)
{
    size_t shown = len < max_hex ? len : max_hex;
    if (!wb_buf_reserve(out, shown * 2 + 1)) return;
    wb_hex_encode(p, shown, (char *)out->data + out->len);
    out->len += shown * 2;
    if (shown < len) {
        char more[40];
        snprintf(more, sizeof(more), "...(%zu bytes)", len);
        put(out, more);
    }
}

static void indent(wb_buf *out, unsigned depth)
{
    for (unsigned i = 0; i < depth; i++)
        put(out, "  ");
}

static void print_node(const wa_node *n, size_t max_hex, unsigned depth, wb_buf *out)
{
    indent(out, depth);
    put(out, "<");
    put(out, n->tag);
    for (size_t i = 0; i < n->nattrs; i++) {
        put(out, " ");
        put(out, n->attrs[i].key);
        put(out, "=\"");
        put_escaped(out, n->attrs[i].value, n->attrs[i].value_len);
        put(out, "\"");
    }
    switch (n->kind) {
    case WA_CONTENT_NONE: put(out, "/>\n"); return;
    case WA_CONTENT_STRING:
        put(out, ">");
        put_escaped(out, (const char *)n->data, n->data_len);
        break;
    case WA_CONTENT_BYTES:
        put(out, ">");
        put_hex(out, n->data, n->data_len, max_hex);
        break;
    case WA_CONTENT_LIST:
        if (n->nchildren == 0) {
            put(out, "></");
            put(out, n->tag);
            put(out, ">\n");
            return;
        }
        put(out, ">\n");
        for (size_t i = 0; i < n->nchildren; i++)
            print_node(n->children[i], max_hex, depth + 1, out);
        indent(out, depth);
        break;
    }
    put(out, "</");
    put(out, n->tag);
    put(out, ">\n");
}

int wa_node_print(const wa_node *n, size_t max_hex, wb_buf *out)
{
    print_node(n, max_hex, 0, out);
    if (!wb_buf_reserve(out, 1)) return WA_ERR_NOMEM;
    out->data[out->len] = '\0';
    return out->failed ? WA_ERR_NOMEM : WA_OK;
}
