/*
 * util/bytes.h - a bounds-checked byte cursor and a growing byte builder.
 *
 * Every parser of outside bytes in wabridge (binary nodes, Noise frames, protobuf glue, media)
 * reads through a wb_cur and every encoder writes through a wb_buf, after the CBS/CBB pair of
 * BoringSSL's bytestring.h. A read that would pass the end fails (returns false) and leaves the
 * cursor where it was; a write that cannot allocate fails and marks the builder as failed, so a
 * caller may check once at the end. Nothing here does raw pointer arithmetic on behalf of its
 * callers.
 */
#ifndef WB_UTIL_BYTES_H
#define WB_UTIL_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A read-only view over bytes the caller owns; the cursor never frees them. */
typedef struct wb_cur {
    const uint8_t *data; /* next unread byte */
    size_t len;          /* bytes left to read */
} wb_cur;

void wb_cur_init(wb_cur *c, const uint8_t *data, size_t len);
/* Bytes left to read. */
static inline size_t wb_cur_left(const wb_cur *c)
{
    return c->len;
}
/* Each reader returns false, consuming nothing, when fewer bytes are left than it needs. */
static inline bool wb_cur_u8(wb_cur *c, uint8_t *out)
{
    if (c->len < 1) return false;
    *out = c->data[0];
    c->data++;
    c->len--;
    return true;
}
bool wb_cur_u16be(wb_cur *c, uint16_t *out);
bool wb_cur_u20be(wb_cur *c, uint32_t *out); /* 3 bytes, top 4 bits ignored */
bool wb_cur_u24be(wb_cur *c, uint32_t *out);
bool wb_cur_u32be(wb_cur *c, uint32_t *out);
/* Points *out at the next n bytes (inside the caller's buffer) and skips them. */
bool wb_cur_bytes(wb_cur *c, size_t n, const uint8_t **out);
/* Splits off the next n bytes as a cursor of their own. */
bool wb_cur_sub(wb_cur *c, size_t n, wb_cur *out);
bool wb_cur_skip(wb_cur *c, size_t n);
/* Offset of the cursor from the start `base` it was made from, for error messages. */
size_t wb_cur_offset(const wb_cur *c, const uint8_t *base);

/* A growing byte buffer; owns its memory (free with wb_buf_free, or take it with wb_buf_steal). */
typedef struct wb_buf {
    uint8_t *data; /* malloc'd, NULL until the first write */
    size_t len;    /* bytes written */
    size_t cap;    /* bytes allocated */
    bool failed;   /* an allocation failed or a limit was hit; every later write is ignored */
} wb_buf;

void wb_buf_init(wb_buf *b);
void wb_buf_free(wb_buf *b);
/* Makes room for n more bytes; false (and failed set) if that cannot be done. */
bool wb_buf_reserve(wb_buf *b, size_t n);
static inline bool wb_buf_u8(wb_buf *b, uint8_t v)
{
    if (b->len == b->cap && !wb_buf_reserve(b, 1)) return false;
    if (b->failed) return false;
    b->data[b->len++] = v;
    return true;
}
bool wb_buf_u16be(wb_buf *b, uint16_t v);
bool wb_buf_u20be(wb_buf *b, uint32_t v); /* v < 2^20 */
bool wb_buf_u24be(wb_buf *b, uint32_t v); /* v < 2^24 */
bool wb_buf_u32be(wb_buf *b, uint32_t v);
bool wb_buf_append(wb_buf *b, const void *p, size_t n);
/* Returns the written bytes (caller frees with free()) and resets the builder. */
uint8_t *wb_buf_steal(wb_buf *b, size_t *len);

/* Lowercase hex of n bytes into out (2n+1 bytes including the NUL). */
void wb_hex_encode(const uint8_t *p, size_t n, char *out);
/* Parses exactly 2*n hex digits (either case) into out; false on any other character or length. */
bool wb_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t out_cap, size_t *out_len);

#endif
