/*
 * tests/matrix/test_mx_event.c - the transaction body parser (matrix/event.h): accepted shapes,
 * rejected shapes with their error codes, skipped elements, limits, order.
 */
#include <stdlib.h>
#include <string.h>

#include "matrix/err.h"
#include "matrix/event.h"
#include "tests/unit/check.h"

static int parse(const char *s, mx_event_batch *b, mx_parse_error *e)
{
    return mx_event_batch_parse(s, strlen(s), b, e);
}

static void test_ok(void)
{
    mx_event_batch b;
    mx_parse_error e;
    const char *body =
        "{\"events\":[{\"type\":\"m.room.message\",\"event_id\":\"$1\",\"room_id\":\"!r:x\","
        "\"sender\":\"@a:x\",\"content\":{\"body\":\"h\\u00e9\"}},"
        "{\"type\":\"m.room.name\",\"event_id\":\"$2\",\"room_id\":\"!r:x\",\"sender\":\"@a:x\","
        "\"state_key\":\"\",\"content\":{\"name\":\"n\"}}],"
        "\"ephemeral\":[{\"type\":\"m.typing\",\"room_id\":\"!r:x\",\"content\":{\"user_ids\":[]}}]"
        "}";
    CHECK_INT(parse(body, &b, &e), MX_OK);
    CHECK_INT(b.count, 3);
    CHECK_INT(b.n_timeline, 2);
    CHECK_INT(b.skipped, 0);
    CHECK_STR(b.events[0].type, "m.room.message");
    CHECK_STR(b.events[0].event_id, "$1");
    CHECK_STR(b.events[0].room_id, "!r:x");
    CHECK_STR(b.events[0].sender, "@a:x");
    CHECK(b.events[0].state_key == NULL);
    CHECK(strstr(b.events[0].json, "\"body\"") != NULL);
    CHECK_INT(b.events[0].json_len, strlen(b.events[0].json));
    CHECK_STR(b.events[1].state_key, ""); /* an empty state key is still a state event */
    CHECK_INT(b.events[2].kind, MX_EVENT_EPHEMERAL);
    CHECK(b.events[2].event_id == NULL);
    mx_event_batch_free(&b);

    /* the unstable MSC2409 key alone */
    CHECK_INT(parse("{\"events\":[],\"de.sorunome.msc2409.ephemeral\":[{\"type\":\"m.receipt\"}]}",
                    &b, &e),
              MX_OK);
    CHECK_INT(b.count, 1);
    CHECK_INT(b.events[0].kind, MX_EVENT_EPHEMERAL);
    mx_event_batch_free(&b);

    /* both keys (as Synapse sends them): the stable one is used, nothing is doubled */
    CHECK_INT(parse("{\"events\":[],\"ephemeral\":[{\"type\":\"a\"}],"
                    "\"de.sorunome.msc2409.ephemeral\":[{\"type\":\"a\"}]}",
                    &b, &e),
              MX_OK);
    CHECK_INT(b.count, 1);
    mx_event_batch_free(&b);

    /* empty, whitespace around, ephemeral null */
    CHECK_INT(parse(" \n{\"events\":[],\"ephemeral\":null}\r\n ", &b, &e), MX_OK);
    CHECK_INT(b.count, 0);
    mx_event_batch_free(&b);

    /* unusable elements are skipped and counted, the rest kept in order */
    CHECK_INT(parse("{\"events\":[1,{\"type\":\"a\"},{\"no\":\"type\"},{\"type\":5},\"x\",{"
                    "\"type\":\"b\"}]}",
                    &b, &e),
              MX_OK);
    CHECK_INT(b.count, 2);
    CHECK_INT(b.skipped, 4);
    CHECK_STR(b.events[0].type, "a");
    CHECK_STR(b.events[1].type, "b");
    mx_event_batch_free(&b);
}

static void test_raw_bytes(void)
{
    mx_event_batch b;
    /* each event's JSON is its exact bytes: big integers, exponents and escapes survive */
    const char *body =
        "{ \"events\" : [ {\"type\":\"a\",\"n\":12345678901234567890123,\"e\":1.0E+5,"
        "\"s\":\"\\u00e9\\n\"} ,\n {\"type\":\"b\",\"k\":[{\"x\":\"]}\\\"\"}]} ] }";
    CHECK_INT(parse(body, &b, NULL), MX_OK);
    CHECK_INT(b.count, 2);
    if (b.count == 2) {
        CHECK_STR(b.events[0].json, "{\"type\":\"a\",\"n\":12345678901234567890123,\"e\":1.0E+5,"
                                    "\"s\":\"\\u00e9\\n\"}");
        CHECK_STR(b.events[1].json, "{\"type\":\"b\",\"k\":[{\"x\":\"]}\\\"\"}]}");
    }
    mx_event_batch_free(&b);
    /* a key spelled with escapes is the same key; the event keeps its own bytes */
    CHECK_INT(parse("{\"ev\\u0065nts\":[{\"type\":\"a\",\"x\": 1}]}", &b, NULL), MX_OK);
    CHECK_INT(b.count, 1);
    if (b.count == 1) CHECK_STR(b.events[0].json, "{\"type\":\"a\",\"x\": 1}");
    mx_event_batch_free(&b);
    /* duplicate keys: the first one wins, as in cJSON */
    CHECK_INT(
        parse("{\"events\":[{\"type\":\"first\"}],\"events\":[{\"type\":\"second\"}]}", &b, NULL),
        MX_OK);
    CHECK_INT(b.count, 1);
    if (b.count == 1) CHECK_STR(b.events[0].json, "{\"type\":\"first\"}");
    mx_event_batch_free(&b);
    /* control characters outside strings are not JSON whitespace (the fuzzer's find) */
    const char ctl[] = "{\"events\":[1\r\0\0,\"x\",{\"type\":\"a\"}]}";
    CHECK_INT(mx_event_batch_parse(ctl, sizeof ctl - 1, &b, NULL), MX_ERR_NOT_JSON);
    CHECK_INT(parse("{\"events\":[{\"type\":\"a\x01\"}]}", &b, NULL), MX_ERR_NOT_JSON);
    CHECK_INT(parse("{\"events\":\f[]}", &b, NULL), MX_ERR_NOT_JSON);
}

static void test_rejects(void)
{
    static const struct {
        const char *body;
        int code;
    } cases[] = {
        {"", MX_ERR_NOT_JSON},
        {"{", MX_ERR_NOT_JSON},
        {"{\"events\":[]} x", MX_ERR_NOT_JSON},
        {"{\"events\":[]}{}", MX_ERR_NOT_JSON},
        {"[]", MX_ERR_BAD_JSON},
        {"\"events\"", MX_ERR_BAD_JSON},
        {"null", MX_ERR_BAD_JSON},
        {"{}", MX_ERR_BAD_JSON},
        {"{\"events\":{}}", MX_ERR_BAD_JSON},
        {"{\"events\":\"a\"}", MX_ERR_BAD_JSON},
        {"{\"events\":[],\"ephemeral\":{}}", MX_ERR_BAD_JSON},
        {"{\"events\":[],\"ephemeral\":7}", MX_ERR_BAD_JSON},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mx_event_batch b;
        mx_parse_error e;
        int rc = parse(cases[i].body, &b, &e);
        CHECK_INT(rc, cases[i].code);
        CHECK_INT(e.code, cases[i].code);
        CHECK(e.message[0] != '\0');
    }
    /* invalid UTF-8: overlong, surrogate, truncated, stray continuation */
    const char *bad[] = {
        "{\"events\":[{\"type\":\"\xc0\xaf\"}]}", "{\"events\":[{\"type\":\"\xed\xa0\x80\"}]}",
        "{\"events\":[{\"type\":\"\xe2\x82\"}]}", "{\"events\":[{\"type\":\"\x80\"}]}",
        "{\"events\":[{\"type\":\"\xf5\x80\x80\x80\"}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mx_event_batch b;
        mx_parse_error e;
        CHECK_INT(parse(bad[i], &b, &e), MX_ERR_NOT_JSON);
    }
    CHECK(mx_utf8_valid("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                        strlen("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")));
    /* a NUL inside the declared length is not JSON */
    mx_event_batch b;
    CHECK_INT(mx_event_batch_parse("{\"events\":[]}\0garbage", 22, &b, NULL), MX_ERR_NOT_JSON);
    /* not NUL-terminated input is read only up to len */
    char buf[16];
    memcpy(buf, "{\"events\":[]}XYZ", 16);
    CHECK_INT(mx_event_batch_parse(buf, 13, &b, NULL), MX_OK);
    mx_event_batch_free(&b);
}

static void test_strict(void)
{
    static const char *bad[] = {
        "{\"events\":[],}",
        "{\"events\":[1,]}",
        "{\"events\":[01]}",
        "{\"events\":[1.]}",
        "{\"events\":[-]}",
        "{\"events\":[.5]}",
        "{\"events\":[1e]}",
        "{\"events\":[+1]}",
        "{\"events\":[tru]}",
        "{\"events\":[nul]}",
        "{\"events\":[\"\\x\"]}",
        "{\"events\":[\"\\u12\"]}",
        "{\"events\":[\"\\ud800\"]}",
        "{\"events\":[\"\\udc00\"]}",
        "{\"events\":[\"\\ud800\\u0041\"]}",
        "{\"events\":[\"a\tb\"]}",
        "{\"events\":[\"abc]}",
        "{\"events\" []}",
        "{events:[]}",
        "{'events':[]}",
        "{\"events\":[]]",
        "{\"events\":[}",
        "{\"a\":1 \"events\":[]}",
        "{\"events\":[{\"type\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mx_event_batch b;
        int rc = parse(bad[i], &b, NULL);
        CHECK_INT(rc, MX_ERR_NOT_JSON);
        if (rc == MX_OK) mx_event_batch_free(&b);
    }
    static const char *good[] = {
        "{\"events\":[0,-0,-1.5e-3,1E+2,true,false,null,\"\\ud83d\\ude00\\/\\b\\f\\r\\t\"]}",
        "{\"x\":{\"events\":1},\"events\":[[],{}]}",
        "\t{\"events\"\r\n:\n[ ] }\n",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        mx_event_batch b;
        CHECK_INT(parse(good[i], &b, NULL), MX_OK);
        mx_event_batch_free(&b);
    }
    /* escapes in the routing fields are decoded; an escaped NUL makes a field unusable */
    mx_event_batch b;
    CHECK_INT(
        parse("{\"events\":[{\"type\":\"m.\\u0072oom\",\"sender\":\"@\\u00e9\\ud83d\\ude00:x\","
              "\"room_id\":\"!a\\u0000b\"},{\"type\":\"a\\u0000\"}]}",
              &b, NULL),
        MX_OK);
    CHECK_INT(b.count, 1);
    CHECK_INT(b.skipped, 1);
    if (b.count == 1) {
        CHECK_STR(b.events[0].type, "m.room");
        CHECK_STR(b.events[0].sender, "@\xc3\xa9\xf0\x9f\x98\x80:x");
        CHECK(b.events[0].room_id == NULL);
    }
    mx_event_batch_free(&b);
}

static void test_limits(void)
{
    /* MX_EVENT_MAX_PER_TXN + 1 events */
    size_t n = MX_EVENT_MAX_PER_TXN + 1;
    char *s = malloc(16 + n * 13);
    strcpy(s, "{\"events\":[");
    size_t len = strlen(s);
    for (size_t i = 0; i < n; i++) {
        memcpy(s + len, i ? ",{\"type\":\"a\"}" : "{\"type\":\"a\"}", i ? 13 : 12);
        len += i ? 13 : 12;
    }
    memcpy(s + len, "]}", 3);
    mx_event_batch b;
    mx_parse_error e;
    CHECK_INT(mx_event_batch_parse(s, strlen(s), &b, &e), MX_ERR_TOO_LARGE);
    free(s);
    /* nesting deeper than the limit is refused without deep recursion */
    size_t depth = 100000;
    char *d = malloc(depth * 2 + 32);
    strcpy(d, "{\"events\":[{\"type\":\"a\",\"c\":");
    size_t l = strlen(d);
    memset(d + l, '[', depth);
    memset(d + l + depth, ']', depth);
    strcpy(d + l + 2 * depth, "}]}");
    CHECK_INT(mx_event_batch_parse(d, strlen(d), &b, &e), MX_ERR_TOO_LARGE);
    free(d);
}

int main(void)
{
    test_ok();
    test_raw_bytes();
    test_rejects();
    test_strict();
    test_limits();
    return CHECK_DONE();
}
