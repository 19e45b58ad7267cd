/*
 * util/bytes.c - the bounds-checked cursor and the growing builder of util/bytes.h.
 */
#include "util/bytes.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void wb_cur_init(wb_cur *c, const uint8_t *data, size_t len)
{
    assert(data != NULL || len == 0);
    c->data = data;
    c->len = len;
}

static bool cur_read_be(wb_cur *c, size_t n, uint32_t *out)
{
    if (c->len < n) return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | c->data[i];
    c->data += n;
    c->len -= n;
    *out = v;
    return true;
}

bool wb_cur_u16be(wb_cur *c, uint16_t *out)
{
    uint32_t v;
    if (!cur_read_be(c, 2, &v)) return false;
    *out = (uint16_t)v;
    return true;
}

bool wb_cur_u20be(wb_cur *c, uint32_t *out)
{
    uint32_t v;
    if (!cur_read_be(c, 3, &v)) return false;
    *out = v & 0xFFFFF;
    return true;
}

bool wb_cur_u24be(wb_cur *c, uint32_t *out)
{
    return cur_read_be(c, 3, out);
}

bool wb_cur_u32be(wb_cur *c, uint32_t *out)
{
    return cur_read_be(c, 4, out);
}

bool wb_cur_bytes(wb_cur *c, size_t n, const uint8_t **out)
{
    if (c->len < n) return false;
    *out = c->data;
    c->data += n;
    c->len -= n;
    return true;
}

bool wb_cur_sub(wb_cur *c, size_t n, wb_cur *out)
{
    const uint8_t *p;
    if (!wb_cur_bytes(c, n, &p)) return false;
    wb_cur_init(out, p, n);
    return true;
}

bool wb_cur_skip(wb_cur *c, size_t n)
{
    const uint8_t *p;
    return wb_cur_bytes(c, n, &p);
}

size_t wb_cur_offset(const wb_cur *c, const uint8_t *base)
{
    assert(base <= c->data);
    return (size_t)(c->data - base);
}

void wb_buf_init(wb_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void wb_buf_free(wb_buf *b)
{
    free(b->data);
    wb_buf_init(b);
}

bool wb_buf_reserve(wb_buf *b, size_t n)
{
    if (b->failed) return false;
    if (n <= b->cap - b->len) return true;
    if (n > SIZE_MAX / 2 - b->len) {
        b->failed = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < n)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

bool wb_buf_append(wb_buf *b, const void *p, size_t n)
{
    if (!wb_buf_reserve(b, n)) return false;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}

static bool buf_write_be(wb_buf *b, uint32_t v, size_t n)
{
    if (!wb_buf_reserve(b, n)) return false;
    for (size_t i = 0; i < n; i++)
        b->data[b->len + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    b->len += n;
    return true;
}

bool wb_buf_u16be(wb_buf *b, uint16_t v)
{
    return buf_write_be(b, v, 2);
}

bool wb_buf_u20be(wb_buf *b, uint32_t v)
{
    assert(v < (1u << 20));
    return buf_write_be(b, v & 0xFFFFF, 3);
}

bool wb_buf_u24be(wb_buf *b, uint32_t v)
{
    assert(v < (1u << 24));
    return buf_write_be(b, v, 3);
}

bool wb_buf_u32be(wb_buf *b, uint32_t v)
{
    return buf_write_be(b, v, 4);
}

uint8_t *wb_buf_steal(wb_buf *b, size_t *len)
{
    uint8_t *p = b->failed ? NULL : b->data;
    if (len) *len = b->failed ? 0 : b->len;
    if (b->failed) free(b->data);
    wb_buf_init(b);
    return p;
}

void wb_hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

bool wb_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    if (hex_len % 2 != 0 || hex_len / 2 > out_cap) return false;
    for (size_t i = 0; i < hex_len / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *out_len = hex_len / 2;
    return true;
}
