/*
 * tests/unit/test_binary.c - the node codec on hand-made cases: the golden bytes of the protocol
 * notes, every way bad input must fail (with the error and offset it must report), frames with and
 * without zlib, the token lookup, and the printer. The Baileys vectors are in test_vectors.c.
 */
#include "check.h"
#include "wa/binary/node.h"
#include "wa/binary/tokens.h"

#include <stdlib.h>
#include <zlib.h>

static size_t from_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    if (!wb_hex_decode(hex, strlen(hex), out, cap, &n)) abort();
    return n;
}

static char *to_hex(const wb_buf *b)
{
    static char out[8192];
    wb_hex_encode(b->data, b->len, out);
    return out;
}

/* <iq id="1234.5678-1" to="@s.whatsapp.net" type="get" xmlns="encrypt"><count/></iq> */
static wa_node *make_count_iq(wb_arena *a, const char *to)
{
    wa_node *iq = wa_node_new(a, "iq");
    wa_node_set_attr(a, iq, "id", "1234.5678-1");
    wa_node_set_attr(a, iq, "to", to);
    wa_node_set_attr(a, iq, "type", "get");
    wa_node_set_attr(a, iq, "xmlns", "encrypt");
    wa_node_add_child(a, iq, wa_node_new(a, "count"));
    return iq;
}

static void test_golden_notes(void)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    wb_buf b;
    wb_buf_init(&b);
    wa_node *iq = make_count_iq(&a, "@s.whatsapp.net");
    CHECK_INT(wa_binary_encode(iq, &b), WA_OK);
    CHECK_STR(to_hex(&b), "f80a1908ff861234b5678a1f11fa0003042916cbf801f80141");

    wa_node *back;
    wa_errinfo ei;
    CHECK_INT(wa_binary_decode(b.data, b.len, &a, &back, &ei), WA_OK);
    CHECK(back && wa_node_equal(iq, back));
    CHECK_STR(wa_node_attr(back, "to"), "@s.whatsapp.net");
    CHECK(wa_node_child(back, "count") != NULL);
    CHECK(wa_node_child(back, "nothing") == NULL);

    /* the AD_JID forms of the notes, as the value of "to" */
    const struct {
        const char *jid, *hex;
    } ad[] = {
        {"15551234567:3@s.whatsapp.net", "f70003ff8615551234567f"},
        {"123456789012345:2@lid", "f70102ff88123456789012345f"},
    };
    for (size_t i = 0; i < 2; i++) {
        b.len = 0;
        wa_node *n = make_count_iq(&a, ad[i].jid);
        CHECK_INT(wa_binary_encode(n, &b), WA_OK);
        CHECK(strstr(to_hex(&b), ad[i].hex) != NULL);
        CHECK_INT(wa_binary_decode(b.data, b.len, &a, &back, NULL), WA_OK);
        CHECK_STR(wa_node_attr(back, "to"), ad[i].jid);
        wa_jid j;
        CHECK_INT(wa_node_attr_jid(back, "to", &j), WA_OK);
        CHECK_INT(j.device, i == 0 ? 3 : 2);
    }
    wb_buf_free(&b);
    wb_arena_free(&a);
}

static void test_tokens(void)
{
    for (int i = 1; i < WA_TOKENS_SINGLE_COUNT; i++) {
        const wa_token_slot *t = wa_token_lookup(wa_tokens_single[i], strlen(wa_tokens_single[i]));
        CHECK(t && t->dict == WA_TOKEN_SINGLE && t->index == i);
    }
    for (int d = 0; d < WA_TOKENS_DICTS; d++)
        for (int i = 0; i < WA_TOKENS_DICT_SIZE; i++) {
            const char *s = wa_tokens_double[d][i];
            const wa_token_slot *t = wa_token_lookup(s, strlen(s));
            CHECK(t && t->dict == d && t->index == i);
        }
    CHECK(wa_token_lookup("", 0) == NULL);
    CHECK(wa_token_lookup("not-a-token-at-all", 18) == NULL);
    CHECK(wa_token_lookup("iqx", 2) != NULL); /* length bounds the comparison */
    CHECK_STR(wa_tokens_single[3], "s.whatsapp.net");
}

/* Decodes hex and expects `code`; also that the error message names an offset. */
static void expect_error(const char *hex, int code, const char *why)
{
    uint8_t in[4096];
    size_t n = from_hex(hex, in, sizeof(in));
    /* Copy to an exact-size heap block so ASan sees any read past the end. */
    uint8_t *exact = malloc(n ? n : 1);
    memcpy(exact, in, n);
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *out = (wa_node *)1;
    wa_errinfo ei;
    int rc = wa_binary_decode(exact, n, &a, &out, &ei);
    if (rc != code)
        fprintf(stderr, "%s: got %d (%s: %s), want %d\n", why, rc, wa_strerror(rc), ei.message,
                code);
    CHECK_INT(rc, code);
    CHECK(out == NULL);
    CHECK(ei.code == code && strstr(ei.message, "offset") != NULL);
    CHECK(ei.offset <= n);
    wb_arena_free(&a);
    free(exact);
}

static void test_bad_input(void)
{
    expect_error("", WA_ERR_TRUNCATED, "empty");
    expect_error("f8", WA_ERR_TRUNCATED, "list size missing");
    expect_error("f802", WA_ERR_TRUNCATED, "tag missing");
    expect_error("f8031908fc", WA_ERR_TRUNCATED, "attribute value cut short");
    expect_error("f8031908", WA_ERR_TOO_LARGE, "attribute with no bytes left");
    expect_error("f80219", WA_ERR_TRUNCATED, "content missing");
    expect_error("00", WA_ERR_BAD_TAG, "node with an empty list");
    expect_error("fc", WA_ERR_BAD_TAG, "not a list tag");
    expect_error("f801f0", WA_ERR_BAD_TAG, "unknown tag 0xf0");
    expect_error("f801f5", WA_ERR_TRUNCATED, "interop jid cut short");
    expect_error("f80100", WA_ERR_BAD_TAG, "empty tag");
    expect_error("f801ec", WA_ERR_TRUNCATED, "double token index missing");
    expect_error("f801fc05616263", WA_ERR_TRUNCATED, "BINARY_8 longer than the input");
    expect_error("f801fd0fffff6162", WA_ERR_TRUNCATED, "BINARY_20 longer than the input");
    expect_error("f801feffffffff61", WA_ERR_TRUNCATED, "BINARY_32 of 4 GiB");
    expect_error("f801ff02c1", WA_ERR_TRUNCATED, "packed longer than the input");
    expect_error("f801ff01c1", WA_ERR_BAD_PACKED, "nibble 12");
    expect_error("f801ff02f112", WA_ERR_BAD_PACKED, "pad nibble in the middle");
    expect_error("f801fa00fa0003", WA_ERR_BAD_TAG, "JID inside a JID");
    expect_error("f801fa0300", WA_ERR_BAD_JID, "JID_PAIR with empty server");
    expect_error("f80219f8ff", WA_ERR_TOO_LARGE, "255 children in 0 bytes");
    expect_error("f80219f9ffff0119", WA_ERR_TOO_LARGE, "65535 children in 2 bytes");
    expect_error("f9ffff19", WA_ERR_TOO_LARGE, "32767 attributes in 0 bytes");
    expect_error("f8011900", WA_ERR_TRAILING, "trailing byte");
    expect_error("f80219f8", WA_ERR_TRUNCATED, "child count missing");
}

static void test_bad_input_fix(void)
{
    /* 0x48 is a single-byte token, so "f8021948" is a node with string content: valid. */
    uint8_t in[] = {0xf8, 0x02, 0x19, 0x48};
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *out;
    CHECK_INT(wa_binary_decode(in, sizeof(in), &a, &out, NULL), WA_OK);
    CHECK(out && out->kind == WA_CONTENT_STRING);
    CHECK_STR((const char *)out->data, wa_tokens_single[0x48]);
    wb_arena_free(&a);
}

static void test_depth(void)
{
    /* Nest <iq><iq>...</iq></iq>: each level is f8 02 19 f8 01 (a list of one child). */
    for (int levels = WA_BINARY_MAX_DEPTH - 1; levels <= WA_BINARY_MAX_DEPTH + 1; levels++) {
        wb_buf b;
        wb_buf_init(&b);
        for (int i = 0; i < levels - 1; i++) {
            const uint8_t step[] = {0xf8, 0x02, 0x19, 0xf8, 0x01};
            wb_buf_append(&b, step, sizeof(step));
        }
        const uint8_t leaf[] = {0xf8, 0x01, 0x19};
        wb_buf_append(&b, leaf, sizeof(leaf));
        wb_arena a;
        wb_arena_init(&a, 0);
        wa_node *out;
        wa_errinfo ei;
        int rc = wa_binary_decode(b.data, b.len, &a, &out, &ei);
        CHECK_INT(rc, levels <= WA_BINARY_MAX_DEPTH ? WA_OK : WA_ERR_TOO_DEEP);
        if (rc == WA_OK) {
            /* and our encoder writes the same bytes back */
            wb_buf again;
            wb_buf_init(&again);
            CHECK_INT(wa_binary_encode(out, &again), WA_OK);
            CHECK(again.len == b.len && memcmp(again.data, b.data, b.len) == 0);
            wb_buf_free(&again);
        }
        wb_arena_free(&a);
        wb_buf_free(&b);
    }
    /* a hugely deep input fails fast without recursing through it */
    wb_buf b;
    wb_buf_init(&b);
    for (int i = 0; i < 100000; i++) {
        const uint8_t step[] = {0xf8, 0x02, 0x19, 0xf8, 0x01};
        wb_buf_append(&b, step, sizeof(step));
    }
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *out;
    CHECK_INT(wa_binary_decode(b.data, b.len, &a, &out, NULL), WA_ERR_TOO_DEEP);
    wb_arena_free(&a);
    wb_buf_free(&b);
}

static void test_content_kinds(void)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    wb_buf b;
    wb_buf_init(&b);
    wa_node *n = wa_node_new(&a, "enc");
    wa_node_set_attr(&a, n, "v", "2");
    wa_node_set_attr(&a, n, "type", "msg");
    wa_node_set_attr(&a, n, "v", "3"); /* replaces, keeps the position */
    CHECK_INT(n->nattrs, 2);
    CHECK_STR(wa_node_attr(n, "v"), "3");

    /* bytes of every length class, with NUL and high bytes */
    const size_t sizes[] = {0, 1, 255, 256, (1u << 20) - 1, 1u << 20, (1u << 20) + 7};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *data = malloc(sizes[i] + 1);
        for (size_t k = 0; k < sizes[i]; k++)
            data[k] = (uint8_t)(k * 31 + 7);
        wa_node_set_bytes(&a, n, data, sizes[i]);
        b.len = 0;
        CHECK_INT(wa_binary_encode(n, &b), WA_OK);
        uint8_t want_tag = sizes[i] >= (1u << 20) ? WA_TAG_BINARY_32
                           : sizes[i] >= 256      ? WA_TAG_BINARY_20
                                                  : WA_TAG_BINARY_8;
        CHECK(memchr(b.data, want_tag, 12) != NULL);
        wa_node *back;
        CHECK_INT(wa_binary_decode(b.data, b.len, &a, &back, NULL), WA_OK);
        CHECK(back && back->kind == WA_CONTENT_BYTES && back->data_len == sizes[i] &&
              memcmp(back->data, data, sizes[i]) == 0);
        free(data);
    }

    /* strings: a token, packed nibbles, packed hex, raw, JID, empty */
    const char *strings[] = {"message",
                             "0123456789-.",
                             "1",
                             "ABCDEF0123",
                             "ABCDEF01234",
                             "hello, world",
                             "15551234567@s.whatsapp.net",
                             "",
                             "abcdef"};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        wa_node_set_string(&a, n, strings[i]);
        b.len = 0;
        CHECK_INT(wa_binary_encode(n, &b), WA_OK);
        wa_node *back;
        CHECK_INT(wa_binary_decode(b.data, b.len, &a, &back, NULL), WA_OK);
        /* raw strings come back as bytes (BINARY_n on the wire), the others as strings */
        CHECK(back && back->data_len == strlen(strings[i]) &&
              memcmp(back->data, strings[i], back->data_len) == 0);
    }

    /* an empty list is not the same as no content */
    wa_node *e = wa_node_new(&a, "list");
    b.len = 0;
    wa_binary_encode(e, &b);
    CHECK_INT(b.len, 3); /* f8 01 <token "list"> */
    wa_node_set_empty_list(e);
    wb_buf b2;
    wb_buf_init(&b2);
    wa_binary_encode(e, &b2);
    CHECK_INT(b2.len, b.len + 1);
    CHECK(b2.data[1] == 2 && b2.data[3] == WA_TAG_LIST_EMPTY);
    wa_node *back;
    CHECK_INT(wa_binary_decode(b2.data, b2.len, &a, &back, NULL), WA_OK);
    CHECK(back->kind == WA_CONTENT_LIST && back->nchildren == 0);
    CHECK_INT(wa_binary_decode(b.data, b.len, &a, &back, NULL), WA_OK);
    CHECK(back->kind == WA_CONTENT_NONE);

    /* a list of 300 children uses LIST_16 */
    wa_node *big = wa_node_new(&a, "list");
    for (int i = 0; i < 300; i++) {
        wa_node *c = wa_node_new(&a, "item");
        char id[16];
        snprintf(id, sizeof(id), "%d", i);
        wa_node_set_attr(&a, c, "id", id);
        wa_node_add_child(&a, big, c);
    }
    b.len = 0;
    CHECK_INT(wa_binary_encode(big, &b), WA_OK);
    CHECK(b.data[3] == WA_TAG_LIST_16 || b.data[2] == WA_TAG_LIST_16);
    CHECK_INT(wa_binary_decode(b.data, b.len, &a, &back, NULL), WA_OK);
    CHECK(wa_node_equal(big, back));

    /* invalid nodes are refused by the encoder */
    wa_node bad = {0};
    bad.tag = "";
    CHECK_INT(wa_binary_encode(&bad, &b), WA_ERR_INVALID);

    wb_buf_free(&b);
    wb_buf_free(&b2);
    wb_arena_free(&a);
}

static void test_jid_encoding(void)
{
    /* each JID kind is written in its own binary form and comes back the same */
    const struct {
        const char *jid;
        uint8_t tag;
        const char *back;
    } cases[] = {
        {"15551234567@s.whatsapp.net", WA_TAG_JID_PAIR, "15551234567@s.whatsapp.net"},
        {"15551234567:0@s.whatsapp.net", WA_TAG_AD_JID, "15551234567@s.whatsapp.net"},
        {"15551234567.2:3@s.whatsapp.net", WA_TAG_AD_JID, "15551234567.2:3@s.whatsapp.net"},
        {"15551234567.7@s.whatsapp.net", WA_TAG_AD_JID, "15551234567.7@s.whatsapp.net"},
        {"1234:1@hosted", WA_TAG_AD_JID, "1234:1@hosted"},
        {"1234:1@hosted.lid", WA_TAG_AD_JID, "1234:1@hosted.lid"},
        {"100012345:7@msgr", WA_TAG_FB_JID, "100012345:7@msgr"},
        {"100012345@msgr", WA_TAG_FB_JID, "100012345:0@msgr"},
        {"5-1234567:2@interop", WA_TAG_INTEROP_JID, "5-1234567:2@interop"},
        {"120363041234567890@g.us", WA_TAG_JID_PAIR, "120363041234567890@g.us"},
        {"status@broadcast", WA_TAG_JID_PAIR, "status@broadcast"},
        {"1@newsletter", WA_TAG_JID_PAIR, "1@newsletter"},
        {"13135550002@bot", WA_TAG_JID_PAIR, "13135550002@bot"},
        {"15551234567:300@s.whatsapp.net", WA_TAG_BINARY_8, "15551234567:300@s.whatsapp.net"},
        {"x:1@g.us", WA_TAG_BINARY_8, "x:1@g.us"},
        {"a@b@c", WA_TAG_BINARY_8, "a@b@c"},
    };
    wb_arena a;
    wb_arena_init(&a, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wa_node *n = wa_node_new(&a, "to");
        wa_node_set_attr(&a, n, "jid", cases[i].jid);
        wb_buf b;
        wb_buf_init(&b);
        CHECK_INT(wa_binary_encode(n, &b), WA_OK);
        /* f8 03 <to token> <jid token> <value...> */
        CHECK(b.len > 4);
        if (b.data[4] != cases[i].tag)
            fprintf(stderr, "JID %s: tag 0x%02x\n", cases[i].jid, b.data[4]);
        CHECK_INT(b.data[4], cases[i].tag);
        wa_node *back;
        CHECK_INT(wa_binary_decode(b.data, b.len, &a, &back, NULL), WA_OK);
        CHECK_STR(wa_node_attr(back, "jid"), cases[i].back);
        wb_buf_free(&b);
    }
    wb_arena_free(&a);
}

static void test_frames(void)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *iq = make_count_iq(&a, "@s.whatsapp.net");
    wb_buf plain;
    wb_buf_init(&plain);
    CHECK_INT(wa_binary_pack(iq, &plain), WA_OK);
    CHECK_INT(plain.data[0], 0);
    wa_node *back;
    CHECK_INT(wa_binary_unpack(plain.data, plain.len, 0, &a, &back, NULL), WA_OK);
    CHECK(wa_node_equal(iq, back));

    /* the same node deflated, flag 0x02 */
    uLongf zlen = compressBound(plain.len);
    uint8_t *z = malloc(zlen + 1);
    z[0] = WA_FRAME_FLAG_ZLIB;
    CHECK(compress(z + 1, &zlen, plain.data + 1, plain.len - 1) == Z_OK);
    CHECK_INT(wa_binary_unpack(z, zlen + 1, 0, &a, &back, NULL), WA_OK);
    CHECK(back && wa_node_equal(iq, back));
    /* a limit below the inflated size refuses it */
    wa_errinfo ei;
    CHECK_INT(wa_binary_unpack(z, zlen + 1, plain.len - 2, &a, &back, &ei), WA_ERR_TOO_LARGE);
    /* truncated and corrupt streams */
    CHECK_INT(wa_binary_unpack(z, zlen - 2, 0, &a, &back, &ei), WA_ERR_INFLATE);
    z[3] ^= 0xFF;
    int rc = wa_binary_unpack(z, zlen + 1, 0, &a, &back, &ei);
    CHECK(rc == WA_ERR_INFLATE || rc == WA_ERR_TRUNCATED || rc == WA_ERR_BAD_TAG);
    free(z);
    CHECK_INT(wa_binary_unpack(plain.data, 0, 0, &a, &back, &ei), WA_ERR_TRUNCATED);

    /* a zlib bomb: 64 MiB of zeros in ~64 KiB; refused at the 16 MiB default cap */
    size_t bomb_plain = 64u << 20;
    uint8_t *zeros = calloc(1, bomb_plain);
    uLongf blen = compressBound(bomb_plain);
    uint8_t *bomb = malloc(blen + 1);
    bomb[0] = WA_FRAME_FLAG_ZLIB;
    CHECK(compress2(bomb + 1, &blen, zeros, bomb_plain, 9) == Z_OK);
    free(zeros);
    CHECK_INT(wa_binary_unpack(bomb, blen + 1, 0, &a, &back, &ei), WA_ERR_TOO_LARGE);
    CHECK(strstr(ei.message, "limit") != NULL);
    free(bomb);
    wb_buf_free(&plain);
    wb_arena_free(&a);
}

/* Inputs the fuzzer once failed on: decoding then re-encoding must reach a fixed point. */
static void test_fuzz_regressions(void)
{
    /* <message.247@s.whatsapp.net ip4="1\xfc\x0b5-/.06_0@s.whatsapp.net"/>: a raw string that
     * looked like a JID with an agent "_0" (tests/fuzz/regressions/binary-jid-agent-not-canonical)
     */
    uint8_t in[] = {0xf8, 0x03, 0xf7, 0xf7, 0x00, 0x13, 0x91, 0xf7, 0x00, 0x00, 0xfc, 0x0b,
                    '1',  0xfc, 0x0b, '5',  '-',  '/',  '.',  '0',  '6',  '_',  '0'};
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *n, *again;
    CHECK_INT(wa_binary_decode(in, sizeof(in), &a, &n, NULL), WA_OK);
    wb_buf first, second;
    wb_buf_init(&first);
    wb_buf_init(&second);
    CHECK_INT(wa_binary_encode(n, &first), WA_OK);
    CHECK_INT(wa_binary_decode(first.data, first.len, &a, &again, NULL), WA_OK);
    CHECK(wa_node_equal(n, again));
    CHECK_INT(wa_binary_encode(again, &second), WA_OK);
    CHECK(first.len == second.len && memcmp(first.data, second.data, first.len) == 0);
    wb_buf_free(&first);
    wb_buf_free(&second);
    wb_arena_free(&a);
}

static void test_print(void)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *msg = wa_node_new(&a, "message");
    wa_node_set_attr(&a, msg, "id", "3EB0\"<x>&");
    wa_node *enc = wa_node_new(&a, "enc");
    wa_node_set_attr(&a, enc, "type", "pkmsg");
    uint8_t bytes[40];
    for (int i = 0; i < 40; i++)
        bytes[i] = (uint8_t)i;
    wa_node_set_bytes(&a, enc, bytes, sizeof(bytes));
    wa_node_add_child(&a, msg, enc);
    wa_node *body = wa_node_new(&a, "body");
    wa_node_set_string(&a, body, "line\none");
    wa_node_add_child(&a, msg, body);
    wa_node_add_child(&a, msg, wa_node_new(&a, "empty"));
    wb_buf out;
    wb_buf_init(&out);
    CHECK_INT(wa_node_print(msg, 4, &out), WA_OK);
    CHECK_STR((const char *)out.data, "<message id=\"3EB0&quot;&lt;x&gt;&amp;\">\n"
                                      "  <enc type=\"pkmsg\">00010203...(40 bytes)</enc>\n"
                                      "  <body>line\\x0aone</body>\n"
                                      "  <empty/>\n"
                                      "</message>\n");
    wb_buf_free(&out);
    wb_arena_free(&a);
}

int main(void)
{
    test_golden_notes();
    test_tokens();
    test_bad_input();
    test_bad_input_fix();
    test_depth();
    test_content_kinds();
    test_jid_encoding();
    test_frames();
    test_print();
    test_fuzz_regressions();
    return CHECK_DONE();
}
