/*
 * tests/unit/test_jid.c - parsing, formatting and comparing every kind of JID.
 */
#include "check.h"
#include "wa/binary/jid.h"
#include "wa/err.h"

static void roundtrip(const char *in, const char *canonical, wa_jid_kind kind)
{
    wa_jid j;
    char buf[WA_JID_STR_MAX];
    int rc = wa_jid_parse_cstr(in, &j);
    CHECK_INT(rc, WA_OK);
    if (rc != WA_OK) return;
    wa_jid_format(&j, buf, sizeof(buf));
    CHECK_STR(buf, canonical);
    CHECK_STR(wa_jid_kind_name(wa_jid_kind_of(&j)), wa_jid_kind_name(kind));
}

static void test_kinds(void)
{
    roundtrip("15551234567@s.whatsapp.net", "15551234567@s.whatsapp.net", WA_JID_PN);
    roundtrip("15551234567:3@s.whatsapp.net", "15551234567:3@s.whatsapp.net", WA_JID_PN);
    roundtrip("15551234567:0@s.whatsapp.net", "15551234567@s.whatsapp.net", WA_JID_PN);
    roundtrip("15551234567.2:3@s.whatsapp.net", "15551234567.2:3@s.whatsapp.net", WA_JID_PN);
    roundtrip("15551234567_2:3@s.whatsapp.net", "15551234567.2:3@s.whatsapp.net", WA_JID_PN);
    roundtrip("123456789012345:2@lid", "123456789012345:2@lid", WA_JID_LID);
    roundtrip("120363041234567890@g.us", "120363041234567890@g.us", WA_JID_GROUP);
    roundtrip("15551234567-1600000000@g.us", "15551234567-1600000000@g.us", WA_JID_GROUP);
    roundtrip("status@broadcast", "status@broadcast", WA_JID_STATUS);
    roundtrip("1600000000@broadcast", "1600000000@broadcast", WA_JID_BROADCAST);
    roundtrip("120363012345678901@newsletter", "120363012345678901@newsletter", WA_JID_NEWSLETTER);
    roundtrip("15551234567:99@hosted", "15551234567:99@hosted", WA_JID_HOSTED);
    roundtrip("123456789:99@hosted.lid", "123456789:99@hosted.lid", WA_JID_HOSTED_LID);
    roundtrip("100012345@msgr", "100012345:0@msgr", WA_JID_MSGR);
    roundtrip("100012345:7@msgr", "100012345:7@msgr", WA_JID_MSGR);
    roundtrip("5-1234567:2@interop", "5-1234567:2@interop", WA_JID_INTEROP);
    roundtrip("13135550002@bot", "13135550002@bot", WA_JID_BOT);
    roundtrip("16505361212@c.us", "16505361212@c.us", WA_JID_LEGACY);
    roundtrip("ABCDEF0123@call", "ABCDEF0123@call", WA_JID_CALL);
    roundtrip("@s.whatsapp.net", "@s.whatsapp.net", WA_JID_SERVER);
    /* a '.' not followed by a valid agent stays in the user, as Baileys reads it */
    roundtrip("s.whatsapp.net@s.whatsapp.net", "s.whatsapp.net@s.whatsapp.net", WA_JID_PN);
    roundtrip("1.300:1@s.whatsapp.net", "1.300:1@s.whatsapp.net", WA_JID_PN);
    roundtrip("1.1:1@s.whatsapp.net", "1.1:1@s.whatsapp.net", WA_JID_PN);
    roundtrip("x.06@s.whatsapp.net", "x.06@s.whatsapp.net", WA_JID_PN); /* found by the fuzzer */
    roundtrip("someone@example.org", "someone@example.org", WA_JID_OTHER);
}

static void test_fields(void)
{
    wa_jid j;
    CHECK_INT(wa_jid_parse_cstr("5-1234567:2@interop", &j), WA_OK);
    CHECK_STR(j.user, "1234567");
    CHECK_INT(j.integrator, 5);
    CHECK_INT(j.device, 2);
    CHECK_INT(wa_jid_parse_cstr("15551234567.2:3@s.whatsapp.net", &j), WA_OK);
    CHECK_STR(j.user, "15551234567");
    CHECK_INT(j.agent, 2);
    CHECK_INT(j.device, 3);
    CHECK_INT(wa_jid_ad_domain(&j), 2);
    CHECK_INT(wa_jid_parse_cstr("1:65535@lid", &j), WA_OK);
    CHECK_INT(j.device, 65535);
    CHECK_INT(wa_jid_ad_domain(&j), WA_DOMAIN_LID);
    CHECK_INT(wa_jid_parse_cstr("1@g.us", &j), WA_OK);
    CHECK_INT(wa_jid_ad_domain(&j), -1);
    CHECK_INT(wa_jid_make(&j, "123", "lid", 4), WA_OK);
    char buf[WA_JID_STR_MAX];
    wa_jid_format(&j, buf, sizeof(buf));
    CHECK_STR(buf, "123:4@lid");
    /* snprintf rules: the needed length is returned even when the buffer is short */
    char tiny[4];
    CHECK_INT(wa_jid_format(&j, tiny, sizeof(tiny)), 9);
    CHECK_STR(tiny, "123");
}

static void test_rejects(void)
{
    const char *bad[] = {
        "",
        "15551234567",        /* no server */
        "15551234567@",       /* empty server */
        "a@b@c",              /* two '@' */
        "1:@s.whatsapp.net",  /* empty device */
        "1:x@s.whatsapp.net", /* non-numeric device */
        "1:65536@s.whatsapp.net",
        "1:123456@s.whatsapp.net",
        "1_300:1@s.whatsapp.net", /* agent over 255 */
        "1_1:1@s.whatsapp.net",   /* agent 1 is the lid domain */
        "1_x@s.whatsapp.net",
        "1_0@s.whatsapp.net",  /* agent 0 is no agent */
        "1_02@s.whatsapp.net", /* agents are canonical numbers */
        "1234567:2@interop",   /* no integrator */
        "x-1234567:2@interop",
        "1@s.whatsapp:net",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wa_jid j;
        int rc = wa_jid_parse_cstr(bad[i], &j);
        if (rc != WA_ERR_BAD_JID) fprintf(stderr, "accepted bad JID \"%s\"\n", bad[i]);
        CHECK_INT(rc, WA_ERR_BAD_JID);
    }
    char longuser[WA_JID_USER_MAX + 40];
    memset(longuser, '1', WA_JID_USER_MAX + 1);
    strcpy(longuser + WA_JID_USER_MAX + 1, "@s.whatsapp.net");
    wa_jid j;
    CHECK_INT(wa_jid_parse_cstr(longuser, &j), WA_ERR_BAD_JID);
    CHECK_INT(wa_jid_parse("1@lid\0x", 7, &j), WA_ERR_BAD_JID); /* NUL inside */
}

static void test_compare(void)
{
    wa_jid a, b, c, d;
    wa_jid_parse_cstr("15551234567:3@s.whatsapp.net", &a);
    wa_jid_parse_cstr("15551234567@s.whatsapp.net", &b);
    wa_jid_parse_cstr("15551234567@c.us", &c);
    wa_jid_parse_cstr("15551234567@lid", &d);
    CHECK(!wa_jid_equal(&a, &b));
    CHECK(wa_jid_compare(&b, &a) < 0);
    CHECK(wa_jid_compare(&a, &b) > 0);
    CHECK(wa_jid_same_user(&a, &b));
    CHECK(wa_jid_same_user(&a, &c));
    CHECK(!wa_jid_same_user(&a, &d));
    wa_jid u = wa_jid_to_user(&a);
    CHECK(wa_jid_equal(&u, &b));
    u = wa_jid_to_user(&c);
    CHECK(wa_jid_equal(&u, &b));
    wa_jid e;
    wa_jid_parse_cstr("15551234567:3@s.whatsapp.net", &e);
    CHECK(wa_jid_equal(&a, &e));
    CHECK_INT(wa_jid_compare(&a, &e), 0);
}

int main(void)
{
    test_kinds();
    test_fields();
    test_rejects();
    test_compare();
    return CHECK_DONE();
}
