/*
 * tests/unit/test_message.c - the Message protobuf codec (wa/message.h): texts, own-device
 * copies, extendedTextMessage, unknown fields skipped, malformed input refused; the parsed form
 * (wa_msg) of every kind, round trips through wa_message_encode, the shapes Baileys and current
 * WhatsApp send (bare and wrapped edits), contextInfo with mentions and a quote, unsupported
 * content named, and malformed input (truncated, bad wire types, too deep) refused without a
 * leak. The bytes are the standard protobuf encoding: a conversation "hi" is 0a 02 68 69.
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

/* Appends a length-delimited field (tests build protobufs by hand, independently of the codec). */
static void field(wb_buf *b, unsigned num, const void *p, size_t n)
{
    uint64_t key = (uint64_t)num << 3 | 2;
    while (key >= 0x80) {
        wb_buf_u8(b, (uint8_t)(key | 0x80));
        key >>= 7;
    }
    wb_buf_u8(b, (uint8_t)key);
    size_t len = n;
    while (len >= 0x80) {
        wb_buf_u8(b, (uint8_t)(len | 0x80));
        len >>= 7;
    }
    wb_buf_u8(b, (uint8_t)len);
    wb_buf_append(b, p, n);
}

static void sub(wb_buf *b, unsigned num, wb_buf *inner)
{
    field(b, num, inner->data, inner->len);
    wb_buf_free(inner);
}

static void varint_field(wb_buf *b, unsigned num, uint64_t v)
{
    uint64_t key = (uint64_t)num << 3;
    while (key >= 0x80) {
        wb_buf_u8(b, (uint8_t)(key | 0x80));
        key >>= 7;
    }
    wb_buf_u8(b, (uint8_t)key);
    while (v >= 0x80) {
        wb_buf_u8(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    wb_buf_u8(b, (uint8_t)v);
}

#define STR(b, num, s) field(b, num, s, strlen(s))

static void roundtrip(const wa_msg *in, wa_msg *out)
{
    wb_buf b;
    wb_buf_init(&b);
    CHECK_INT(wa_message_encode(in, &b), WA_OK);
    CHECK_INT(wa_message_parse(b.data, b.len, out), WA_OK);
    wb_buf_free(&b);
}

static void test_text_kinds(void)
{
    wa_msg m, p;
    /* a plain text is a conversation */
    memset(&m, 0, sizeof(m));
    m.kind = WA_MSG_TEXT;
    m.text = "hi";
    wb_buf b;
    wb_buf_init(&b);
    CHECK_INT(wa_message_encode(&m, &b), WA_OK);
    CHECK(b.len == 4 && memcmp(b.data, "\x0a\x02hi", 4) == 0);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_TEXT);
    CHECK_STR(p.text, "hi");
    CHECK(p.n_mentions == 0 && !p.reply_id[0] && !p.dest_jid[0] && !p.unsupported[0]);
    wa_msg_free(&p);
    CHECK(p.text == NULL && p.kind == WA_MSG_NONE);
    wb_buf_free(&b);

    /* mentions and a reply make an extendedTextMessage with contextInfo */
    char *mentions[] = {"15550000001@s.whatsapp.net", "15550000002@s.whatsapp.net"};
    m.text = "@15550000001 @15550000002 look";
    m.mentions = mentions;
    m.n_mentions = 2;
    snprintf(m.reply_id, sizeof(m.reply_id), "3EB0QUOTED");
    snprintf(m.reply_sender, sizeof(m.reply_sender), "15550000002@s.whatsapp.net");
    m.reply_text = "the quoted one";
    CHECK_INT(wa_message_encode(&m, &b), WA_OK);
    CHECK(b.len > 2 && b.data[0] == 0x32); /* field 6, length-delimited */
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_TEXT);
    CHECK_STR(p.text, m.text);
    CHECK_INT(p.n_mentions, 2);
    if (p.n_mentions == 2) {
        CHECK_STR(p.mentions[0], mentions[0]);
        CHECK_STR(p.mentions[1], mentions[1]);
    }
    CHECK_STR(p.reply_id, "3EB0QUOTED");
    CHECK_STR(p.reply_sender, "15550000002@s.whatsapp.net");
    CHECK_STR(p.reply_text, "the quoted one");
    /* the old reader finds the text too */
    const uint8_t *t;
    size_t tl;
    CHECK_INT(wa_message_get_text(b.data, b.len, &t, &tl, NULL, NULL), WA_OK);
    CHECK(tl == strlen(m.text) && memcmp(t, m.text, tl) == 0);
    wa_msg_free(&p);
    wb_buf_free(&b);

    /* a reply quoting an extendedTextMessage, the way Baileys writes it by hand */
    wb_buf ext, ctx, quoted, qext;
    wb_buf_init(&ext);
    wb_buf_init(&ctx);
    wb_buf_init(&quoted);
    wb_buf_init(&qext);
    STR(&ext, 1, "answer");
    STR(&ctx, 1, "ABCD");
    STR(&ctx, 2, "15550000003@s.whatsapp.net");
    STR(&qext, 1, "question?");
    sub(&quoted, 6, &qext);
    sub(&ctx, 3, &quoted);
    varint_field(&ctx, 21, 4); /* forwardingScore: ignored */
    sub(&ext, 17, &ctx);
    varint_field(&ext, 9, 1); /* font: ignored */
    sub(&b, 6, &ext);
    wb_buf mci;
    wb_buf_init(&mci);
    STR(&mci, 3, "0123456789abcdef0123456789abcdef"); /* messageContextInfo.messageSecret */
    sub(&b, 35, &mci);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_TEXT);
    CHECK_STR(p.text, "answer");
    CHECK_STR(p.reply_id, "ABCD");
    CHECK_STR(p.reply_sender, "15550000003@s.whatsapp.net");
    CHECK_STR(p.reply_text, "question?");
    CHECK(p.n_mentions == 0 && p.mentions == NULL);
    wa_msg_free(&p);
    wb_buf_free(&b);

    /* an extendedTextMessage without text is an empty text */
    const uint8_t empty_ext[] = {0x32, 0x00};
    CHECK_INT(wa_message_parse(empty_ext, sizeof(empty_ext), &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_TEXT);
    CHECK_STR(p.text, "");
    wa_msg_free(&p);

    /* encoding needs a text */
    memset(&m, 0, sizeof(m));
    m.kind = WA_MSG_TEXT;
    CHECK_INT(wa_message_encode(&m, &b), WA_ERR_INVALID);
    CHECK_INT(b.len, 0);
}

static void test_edit_reaction_revoke(void)
{
    wa_msg m, p;
    wb_buf b;
    wb_buf_init(&b);
    /* an edit is wrapped: editedMessage (58) {message {protocolMessage {type 14 ...}}} */
    memset(&m, 0, sizeof(m));
    m.kind = WA_MSG_EDIT;
    m.text = "fixed typo";
    m.timestamp_ms = 1800000000123;
    snprintf(m.target.id, sizeof(m.target.id), "3EB0ORIGINAL");
    snprintf(m.target.remote_jid, sizeof(m.target.remote_jid), "15550000002@s.whatsapp.net");
    m.target.from_me = true;
    CHECK_INT(wa_message_encode(&m, &b), WA_OK);
    CHECK(b.len > 3 && b.data[0] == 0xd2 && b.data[1] == 0x03); /* 58 << 3 | 2 */
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_EDIT);
    CHECK_STR(p.text, "fixed typo");
    CHECK_STR(p.target.id, "3EB0ORIGINAL");
    CHECK_STR(p.target.remote_jid, "15550000002@s.whatsapp.net");
    CHECK(p.target.from_me && !p.target.participant[0]);
    CHECK(p.timestamp_ms == 1800000000123);
    wa_msg_free(&p);
    wb_buf_free(&b);

    /* an edit with mentions keeps them */
    char *mention[] = {"15550000009@s.whatsapp.net"};
    m.mentions = mention;
    m.n_mentions = 1;
    roundtrip(&m, &p);
    CHECK_INT(p.kind, WA_MSG_EDIT);
    CHECK_INT(p.n_mentions, 1);
    if (p.n_mentions) CHECK_STR(p.mentions[0], mention[0]);
    wa_msg_free(&p);

    /* the bare form Baileys sends: protocolMessage {key, editedMessage, timestampMs, type} */
    wb_buf proto, key, edited;
    wb_buf_init(&proto);
    wb_buf_init(&key);
    wb_buf_init(&edited);
    STR(&key, 1, "15550000001@s.whatsapp.net");
    varint_field(&key, 2, 1);
    STR(&key, 3, "BAE5EDITME");
    sub(&proto, 1, &key);
    STR(&edited, 1, "new words");
    sub(&proto, 14, &edited);
    varint_field(&proto, 15, 1800000000999);
    varint_field(&proto, 2, 14);
    sub(&b, 12, &proto);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_EDIT);
    CHECK_STR(p.text, "new words");
    CHECK_STR(p.target.id, "BAE5EDITME");
    CHECK(p.target.from_me);
    wa_msg_free(&p);
    wb_buf_free(&b);

    /* an edit of a caption (no text): an empty text */
    wb_buf_init(&proto);
    wb_buf_init(&key);
    wb_buf_init(&edited);
    STR(&key, 3, "MEDIA1");
    sub(&proto, 1, &key);
    varint_field(&proto, 2, 14);
    wb_buf img;
    wb_buf_init(&img);
    STR(&img, 3, "caption"); /* imageMessage.caption */
    sub(&edited, 3, &img);
    sub(&proto, 14, &edited);
    sub(&b, 12, &proto);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_EDIT);
    CHECK_STR(p.text, "");
    CHECK(!p.unsupported[0]);
    wa_msg_free(&p);
    wb_buf_free(&b);

    /* a reaction: reactionMessage (46) {key, text, senderTimestampMs} */
    memset(&m, 0, sizeof(m));
    m.kind = WA_MSG_REACTION;
    snprintf(m.reaction, sizeof(m.reaction), "\xf0\x9f\x91\x8d"); /* thumbs up */
    snprintf(m.target.id, sizeof(m.target.id), "3EB0LIKED");
    snprintf(m.target.remote_jid, sizeof(m.target.remote_jid), "15550000002@s.whatsapp.net");
    m.timestamp_ms = 1800000000001;
    CHECK_INT(wa_message_encode(&m, &b), WA_OK);
    CHECK(b.len > 3 && b.data[0] == 0xf2 && b.data[1] == 0x02);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_REACTION);
    CHECK_STR(p.reaction, "\xf0\x9f\x91\x8d");
    CHECK_STR(p.target.id, "3EB0LIKED");
    CHECK(!p.target.from_me && p.text == NULL);
    CHECK(p.timestamp_ms == 1800000000001);
    wa_msg_free(&p);
    wb_buf_free(&b);
    /* removal: an empty text, still written */
    m.reaction[0] = '\0';
    snprintf(m.target.participant, sizeof(m.target.participant), "15550000003@s.whatsapp.net");
    roundtrip(&m, &p);
    CHECK_INT(p.kind, WA_MSG_REACTION);
    CHECK_STR(p.reaction, "");
    CHECK_STR(p.target.participant, "15550000003@s.whatsapp.net");
    wa_msg_free(&p);
    /* an emoji longer than the field is cut between characters */
    wb_buf react;
    wb_buf_init(&react);
    char long_emoji[200] = "";
    for (int i = 0; i < 20; i++)
        strcat(long_emoji, "\xf0\x9f\x98\x80"); /* 80 bytes */
    STR(&react, 2, long_emoji);
    sub(&b, 46, &react);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_REACTION);
    CHECK_INT(strlen(p.reaction), 60);
    wa_msg_free(&p);
    wb_buf_free(&b);

    /* a revoke: protocolMessage {key, type REVOKE} */
    memset(&m, 0, sizeof(m));
    m.kind = WA_MSG_REVOKE;
    snprintf(m.target.id, sizeof(m.target.id), "3EB0GONE");
    snprintf(m.target.remote_jid, sizeof(m.target.remote_jid), "15550000002@s.whatsapp.net");
    m.target.from_me = true;
    CHECK_INT(wa_message_encode(&m, &b), WA_OK);
    CHECK(b.len > 2 && b.data[0] == 0x62); /* field 12 */
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_REVOKE);
    CHECK_STR(p.target.id, "3EB0GONE");
    CHECK(p.target.from_me);
    wa_msg_free(&p);
    wb_buf_free(&b);
    /* a protocolMessage without a type is a REVOKE (the proto2 default) when it has a key */
    wb_buf_init(&proto);
    wb_buf_init(&key);
    STR(&key, 3, "X");
    sub(&proto, 1, &key);
    sub(&b, 12, &proto);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_REVOKE);
    wa_msg_free(&p);
    wb_buf_free(&b);

    /* encoding needs a target */
    m.target.id[0] = '\0';
    CHECK_INT(wa_message_encode(&m, &b), WA_ERR_INVALID);
    m.kind = WA_MSG_UNSUPPORTED;
    CHECK_INT(wa_message_encode(&m, &b), WA_ERR_INVALID);
    m.kind = WA_MSG_NONE;
    CHECK_INT(wa_message_encode(&m, &b), WA_ERR_INVALID);
    m.kind = (wa_msg_kind)42;
    CHECK_INT(wa_message_encode(&m, &b), WA_ERR_INVALID);
    CHECK_INT(b.len, 0);
}

static void test_wrappers_and_others(void)
{
    wa_msg m, p;
    wb_buf b, inner;
    wb_buf_init(&b);
    wb_buf_init(&inner);
    /* a reaction copied to our other device: deviceSentMessage keeps the destination */
    memset(&m, 0, sizeof(m));
    m.kind = WA_MSG_REACTION;
    snprintf(m.reaction, sizeof(m.reaction), "x");
    snprintf(m.target.id, sizeof(m.target.id), "ID1");
    CHECK_INT(wa_message_encode(&m, &inner), WA_OK);
    CHECK_INT(wa_message_device_sent("15550000002@s.whatsapp.net", inner.data, inner.len, &b),
              WA_OK);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_REACTION);
    CHECK_STR(p.dest_jid, "15550000002@s.whatsapp.net");
    CHECK_STR(p.target.id, "ID1");
    wa_msg_free(&p);
    wb_buf_free(&b);
    wb_buf_free(&inner);

    /* an ephemeral (disappearing) text is a text */
    wb_buf fp;
    wb_buf_init(&fp);
    STR(&inner, 1, "vanishing");
    sub(&fp, 1, &inner);
    sub(&b, 40, &fp);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_TEXT);
    CHECK_STR(p.text, "vanishing");
    wa_msg_free(&p);
    wb_buf_free(&b);

    /* media and the like: unsupported, named */
    wb_buf img;
    wb_buf_init(&img);
    STR(&img, 1, "https://mmg.whatsapp.net/x");
    sub(&b, 3, &img);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_UNSUPPORTED);
    CHECK_STR(p.unsupported, "imageMessage");
    CHECK(p.text == NULL);
    wa_msg_free(&p);
    /* a document with a caption is opened to the document */
    wb_buf_init(&fp);
    wb_buf_init(&inner);
    STR(&img, 1, "https://mmg.whatsapp.net/d");
    sub(&inner, 7, &img);
    sub(&fp, 1, &inner);
    wb_buf_free(&b);
    sub(&b, 53, &fp);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_UNSUPPORTED);
    CHECK_STR(p.unsupported, "documentMessage");
    wa_msg_free(&p);
    wb_buf_free(&b);
    /* view-once is not opened */
    wb_buf_init(&fp);
    wb_buf_init(&inner);
    STR(&img, 1, "u");
    sub(&inner, 3, &img);
    sub(&fp, 1, &inner);
    sub(&b, 55, &fp);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_STR(p.unsupported, "viewOnceMessageV2");
    wa_msg_free(&p);
    wb_buf_free(&b);
    /* a field unknown to us: named by number */
    STR(&b, 200, "future");
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_UNSUPPORTED);
    CHECK_STR(p.unsupported, "field 200");
    wa_msg_free(&p);
    /* ... but text next to it wins, wherever it stands */
    STR(&b, 1, "text after");
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_TEXT);
    CHECK_STR(p.text, "text after");
    CHECK_STR(p.unsupported, "");
    wa_msg_free(&p);
    wb_buf_free(&b);

    /* protocol messages we do not show, and an empty message: nothing */
    wb_buf proto;
    wb_buf_init(&proto);
    varint_field(&proto, 2, 5); /* HISTORY_SYNC_NOTIFICATION */
    STR(&proto, 6, "\x0a\x00");
    sub(&b, 12, &proto);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_NONE);
    CHECK(!p.unsupported[0]);
    wa_msg_free(&p);
    wb_buf_free(&b);
    CHECK_INT(wa_message_parse(NULL, 0, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_NONE);
    wa_msg_free(&p);

    /* a senderKeyDistributionMessage alone, and with a text; and encoded by us */
    memset(&m, 0, sizeof(m));
    uint8_t skdm[40];
    for (size_t i = 0; i < sizeof(skdm); i++)
        skdm[i] = (uint8_t)(0x33 + i);
    m.skdm = skdm;
    m.skdm_len = sizeof(skdm);
    snprintf(m.skdm_group, sizeof(m.skdm_group), "120363000000000001@g.us");
    roundtrip(&m, &p);
    CHECK_INT(p.kind, WA_MSG_NONE);
    CHECK(p.skdm_len == sizeof(skdm) && p.skdm && memcmp(p.skdm, skdm, sizeof(skdm)) == 0);
    CHECK_STR(p.skdm_group, "120363000000000001@g.us");
    wa_msg_free(&p);
    m.kind = WA_MSG_TEXT;
    m.text = "with a key";
    roundtrip(&m, &p);
    CHECK_INT(p.kind, WA_MSG_TEXT);
    CHECK_STR(p.text, "with a key");
    CHECK(p.skdm_len == sizeof(skdm));
    wa_msg_free(&p);

    /* more mentions than we keep */
    wb_buf ext, ctx;
    wb_buf_init(&ext);
    wb_buf_init(&ctx);
    for (int i = 0; i < WA_MSG_MAX_MENTIONS + 10; i++)
        STR(&ctx, 15, "1@s.whatsapp.net");
    STR(&ext, 1, "everyone");
    sub(&ext, 17, &ctx);
    sub(&b, 6, &ext);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.n_mentions, WA_MSG_MAX_MENTIONS);
    wa_msg_free(&p);
    wb_buf_free(&b);
    CHECK_STR(wa_msg_kind_name(WA_MSG_REVOKE), "revoke");
    CHECK_STR(wa_msg_kind_name((wa_msg_kind)99), "?");
}

static void test_malformed(void)
{
    wa_msg p;
    wb_buf b, ext, ctx;
    wb_buf_init(&b);
    /* a field longer than the input */
    const uint8_t cut[] = {0x0a, 0x09, 'x'};
    CHECK_INT(wa_message_parse(cut, sizeof(cut), &p), WA_ERR_PROTO);
    CHECK(p.text == NULL && p.kind == WA_MSG_NONE);
    /* field number 0, wire types 3, 4, 6, 7 */
    const uint8_t zero[] = {0x02, 0x00};
    CHECK_INT(wa_message_parse(zero, sizeof(zero), &p), WA_ERR_PROTO);
    for (uint8_t wire = 3; wire < 8; wire++) {
        if (wire == 5) continue;
        uint8_t bad[] = {(uint8_t)(0x08 | wire), 0x00, 0x00, 0x00, 0x00};
        CHECK_INT(wa_message_parse(bad, sizeof(bad), &p), WA_ERR_PROTO);
    }
    /* an endless varint */
    const uint8_t endless[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                               0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK_INT(wa_message_parse(endless, sizeof(endless), &p), WA_ERR_PROTO);
    /* garbage inside contextInfo after a mention was taken: refused, nothing leaks */
    wb_buf_init(&ext);
    wb_buf_init(&ctx);
    STR(&ctx, 15, "1@s.whatsapp.net");
    wb_buf_append(&ctx, "\x0a\x7f", 2);
    STR(&ext, 1, "text");
    sub(&ext, 17, &ctx);
    sub(&b, 6, &ext);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_ERR_PROTO);
    CHECK(p.text == NULL && p.mentions == NULL && p.n_mentions == 0);
    wb_buf_free(&b);
    /* a bad key inside a reaction */
    const uint8_t bad_key[] = {0xf2, 0x02, 0x04, 0x0a, 0x02, 0x1a, 0x05};
    CHECK_INT(wa_message_parse(bad_key, sizeof(bad_key), &p), WA_ERR_PROTO);
    /* nesting deeper than WA_MSG_MAX_DEPTH (ephemeral in ephemeral in ...) */
    wb_buf nest;
    wb_buf_init(&nest);
    STR(&nest, 1, "deep");
    for (int i = 0; i < WA_MSG_MAX_DEPTH + 2; i++) {
        wb_buf fp, outer;
        wb_buf_init(&fp);
        wb_buf_init(&outer);
        sub(&fp, 1, &nest);
        sub(&outer, 40, &fp);
        nest = outer;
    }
    CHECK_INT(wa_message_parse(nest.data, nest.len, &p), WA_ERR_PROTO);
    wb_buf_free(&nest);
    /* a few levels are fine */
    wb_buf_init(&nest);
    STR(&nest, 1, "shallow");
    for (int i = 0; i < 3; i++) {
        wb_buf fp, outer;
        wb_buf_init(&fp);
        wb_buf_init(&outer);
        sub(&fp, 1, &nest);
        sub(&outer, 40, &fp);
        nest = outer;
    }
    CHECK_INT(wa_message_parse(nest.data, nest.len, &p), WA_OK);
    CHECK_STR(p.text, "shallow");
    wa_msg_free(&p);
    wb_buf_free(&nest);
    /* a deviceSentMessage inside a deviceSentMessage is not opened */
    wb_buf in1, dsm1, dsm2;
    wb_buf_init(&in1);
    wb_buf_init(&dsm1);
    wb_buf_init(&dsm2);
    STR(&in1, 1, "inner");
    STR(&dsm1, 1, "a@s.whatsapp.net");
    sub(&dsm1, 2, &in1);
    wb_buf_init(&in1);
    sub(&in1, 31, &dsm1);
    STR(&dsm2, 1, "b@s.whatsapp.net");
    sub(&dsm2, 2, &in1);
    sub(&b, 31, &dsm2);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_INT(p.kind, WA_MSG_NONE);
    CHECK_STR(p.dest_jid, "b@s.whatsapp.net");
    wa_msg_free(&p);
    wb_buf_free(&b);
    /* strings with a NUL or longer than their field */
    wb_buf key, proto;
    wb_buf_init(&key);
    wb_buf_init(&proto);
    field(&key, 3, "AB\0CD", 5);
    char long_jid[400];
    memset(long_jid, 'x', sizeof(long_jid) - 1);
    long_jid[sizeof(long_jid) - 1] = 0;
    STR(&key, 1, long_jid);
    sub(&proto, 1, &key);
    sub(&b, 12, &proto);
    CHECK_INT(wa_message_parse(b.data, b.len, &p), WA_OK);
    CHECK_STR(p.target.id, "AB");
    CHECK_INT(strlen(p.target.remote_jid), WA_JID_STR_MAX - 1);
    wa_msg_free(&p);
    wb_buf_free(&b);
    wa_msg_free(NULL);
}

int main(void)
{
    test_text_kinds();
    test_edit_reaction_revoke();
    test_wrappers_and_others();
    test_malformed();

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
