/*
 * tests/unit/test_message.c - the minimal Message protobuf codec (wa/message.h): texts, own-device
 * copies, extendedTextMessage, unknown fields skipped, malformed input refused. The bytes are the
 * standard protobuf encoding: a conversation "hi" is 0a 02 68 69.
 */
#include "check.h"
#include "wa/message.h"

static void expect_text(const uint8_t *p, size_t n, const char *want, const char *want_dest)
{
    const uint8_t *t = NULL, *d = NULL;
    size_t tl = 0, dl = 0;
    CHECK_INT(wa_message_get_text(p, n, &t, &tl, &d, &dl), WA_OK);
    CHECK(t && tl == strlen(want) && memcmp(t, want, tl) == 0);
    if (want_dest) CHECK(d && dl == strlen(want_dest) && memcmp(d, want_dest, dl) == 0);
}

int main(void)
{
    wb_buf b;
    wb_buf_init(&b);
    CHECK_INT(wa_message_text("hi", 2, &b), WA_OK);
    CHECK(b.len == 4 && memcmp(b.data, "\x0a\x02hi", 4) == 0);
    expect_text(b.data, b.len, "hi", NULL);

    /* a long text: the length is a multi-byte varint */
    wb_buf big;
    wb_buf_init(&big);
    char text[300];
    memset(text, 'z', sizeof(text) - 1);
    text[299] = 0;
    wa_message_text(text, 299, &big);
    CHECK(big.data[1] == (0x80 | (299 & 0x7f)) && big.data[2] == 299 >> 7);
    expect_text(big.data, big.len, text, NULL);

    /* the own-device copy: field 31 (f2 01), destination, inner message */
    wb_buf own;
    wb_buf_init(&own);
    CHECK_INT(wa_message_device_sent("15551234567@s.whatsapp.net", b.data, b.len, &own), WA_OK);
    CHECK(own.data[0] == 0xfa && own.data[1] == 0x01);
    expect_text(own.data, own.len, "hi", "15551234567@s.whatsapp.net");

    /* extendedTextMessage (6) {text (1)} after an unknown varint field and a fixed32 field */
    const uint8_t ext[] = {0x08, 0x96, 0x01, 0x3d, 1,   2,   3,  4,
                           0x32, 0x05, 0x0a, 0x03, 'y', 'e', 's'};
    expect_text(ext, sizeof(ext), "yes", NULL);

    /* no text, and broken input */
    const uint8_t reaction[] = {0xf2, 0x02, 0x00}; /* field 46, empty */
    const uint8_t *t;
    size_t tl;
    CHECK_INT(wa_message_get_text(reaction, sizeof(reaction), &t, &tl, NULL, NULL),
              WA_ERR_UNSUPPORTED);
    const uint8_t cut[] = {0x0a, 0x09, 'x'};
    CHECK_INT(wa_message_get_text(cut, sizeof(cut), &t, &tl, NULL, NULL), WA_ERR_PROTO);
    const uint8_t bad_wire[] = {0x0f, 0x00};
    CHECK_INT(wa_message_get_text(bad_wire, sizeof(bad_wire), &t, &tl, NULL, NULL), WA_ERR_PROTO);
    const uint8_t endless[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                               0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK_INT(wa_message_get_text(endless, sizeof(endless), &t, &tl, NULL, NULL), WA_ERR_PROTO);

    wb_buf_free(&b);
    wb_buf_free(&big);
    wb_buf_free(&own);
    return CHECK_DONE();
}
