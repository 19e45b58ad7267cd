/*
 * wa/message.c - minimal Message protobuf writing and reading (wa/message.h), over wb_buf/wb_cur.
 */
#include "wa/message.h"

#include <string.h>

static void put_varint(wb_buf *out, uint64_t v)
{
    while (v >= 0x80) {
        wb_buf_u8(out, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    wb_buf_u8(out, (uint8_t)v);
}

/* A length-delimited field (wire type 2). */
static void put_bytes(wb_buf *out, unsigned field, const void *p, size_t len)
{
    put_varint(out, (uint64_t)field << 3 | 2);
    put_varint(out, len);
    wb_buf_append(out, p, len);
}

int wa_message_text(const char *text, size_t len, wb_buf *out)
{
    put_bytes(out, 1, text, len);
    return out->failed ? WA_ERR_NOMEM : WA_OK;
}

int wa_message_device_sent(const char *destination_jid, const uint8_t *inner, size_t inner_len,
                           wb_buf *out)
{
    wb_buf dsm;
    wb_buf_init(&dsm);
    put_bytes(&dsm, 1, destination_jid, strlen(destination_jid));
    put_bytes(&dsm, 2, inner, inner_len);
    put_bytes(out, 31, dsm.data, dsm.len);
    int rc = dsm.failed || out->failed ? WA_ERR_NOMEM : WA_OK;
    wb_buf_free(&dsm);
    return rc;
}

static bool get_varint(wb_cur *c, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        if (!wb_cur_u8(c, &b)) return false;
        r |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* Finds length-delimited field `field` in p[0..len); WA_ERR_UNSUPPORTED when absent. */
static int find_field(const uint8_t *p, size_t len, unsigned field, const uint8_t **out,
                      size_t *out_len)
{
    wb_cur c;
    wb_cur_init(&c, p, len);
    while (wb_cur_left(&c)) {
        uint64_t key, n;
        const uint8_t *skip;
        if (!get_varint(&c, &key)) return WA_ERR_PROTO;
        switch (key & 7) {
        case 0:
            if (!get_varint(&c, &n)) return WA_ERR_PROTO;
            break;
        case 1:
            if (!wb_cur_skip(&c, 8)) return WA_ERR_PROTO;
            break;
        case 5:
            if (!wb_cur_skip(&c, 4)) return WA_ERR_PROTO;
            break;
        case 2:
            if (!get_varint(&c, &n) || n > wb_cur_left(&c) || !wb_cur_bytes(&c, n, &skip))
                return WA_ERR_PROTO;
            if ((key >> 3) == field) {
                *out = skip;
                *out_len = n;
                return WA_OK;
            }
            break;
        default: return WA_ERR_PROTO;
        }
    }
    return WA_ERR_UNSUPPORTED;
}

int wa_message_get_text(const uint8_t *p, size_t len, const uint8_t **text, size_t *text_len,
                        const uint8_t **dest, size_t *dest_len)
{
    const uint8_t *dsm;
    size_t dsm_len;
    int rc = find_field(p, len, 31, &dsm, &dsm_len);
    if (rc == WA_OK) {
        const uint8_t *d = NULL, *inner;
        size_t dl = 0, il;
        find_field(dsm, dsm_len, 1, &d, &dl);
        if (dest) {
            *dest = d;
            *dest_len = dl;
        }
        rc = find_field(dsm, dsm_len, 2, &inner, &il);
        return rc == WA_OK ? wa_message_get_text(inner, il, text, text_len, NULL, NULL) : rc;
    }
    if (rc == WA_ERR_PROTO) return rc;
    rc = find_field(p, len, 1, text, text_len);
    if (rc != WA_ERR_UNSUPPORTED) return rc;
    const uint8_t *ext;
    size_t ext_len;
    rc = find_field(p, len, 6, &ext, &ext_len);
    return rc == WA_OK ? find_field(ext, ext_len, 1, text, text_len) : rc;
}
