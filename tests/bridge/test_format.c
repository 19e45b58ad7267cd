/*
 * tests/bridge/test_format.c - message text conversion between WhatsApp markup and Matrix HTML
 * (bridge/format.h): a table of cases each way, round trips, mentions through a fake resolver,
 * and hostile inputs (broken and deeply nested HTML, invalid UTF-8, huge entities).
 */
#include "check.h"
#include "bridge/format.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the fake resolver ---------------------------------------------------------------------- */

static const struct {
    const char *jid, *mxid, *name;
} PEOPLE[] = {
    {"15551234567@s.whatsapp.net", "@whatsapp_15551234567:example.org", "Alice"},
    {"123@lid", "@whatsapp_lid-123:example.org", "Bob <B&B>"},
    {"4470001@s.whatsapp.net", "@me:example.org", ""}, /* the logged-in user, no name */
};

static int resolver_calls;

static bool fake_jid_to_mx(void *ctx, const char *jid, char *mxid, size_t mxid_cap, char *name,
                           size_t name_cap)
{
    (void)ctx;
    resolver_calls++;
    for (size_t i = 0; i < sizeof(PEOPLE) / sizeof(PEOPLE[0]); i++) {
        if (strcmp(jid, PEOPLE[i].jid) != 0) continue;
        snprintf(mxid, mxid_cap, "%s", PEOPLE[i].mxid);
        snprintf(name, name_cap, "%s", PEOPLE[i].name);
        return true;
    }
    return false;
}

static bool fake_mx_to_jid(void *ctx, const char *mxid, char *jid, size_t jid_cap)
{
    (void)ctx;
    resolver_calls++;
    for (size_t i = 0; i < sizeof(PEOPLE) / sizeof(PEOPLE[0]); i++) {
        if (strcmp(mxid, PEOPLE[i].mxid) != 0) continue;
        snprintf(jid, jid_cap, "%s", PEOPLE[i].jid);
        return true;
    }
    return false;
}

static const br_format_resolver RESOLVER = {NULL, fake_jid_to_mx, fake_mx_to_jid};
static const char *const MENTIONED[] = {"15551234567@s.whatsapp.net", "123@lid",
                                        "4470001@s.whatsapp.net"};
#define N_MENTIONED (sizeof(MENTIONED) / sizeof(MENTIONED[0]))

/* ---- helpers -------------------------------------------------------------------------------- */

static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        size_t len;
        uint32_t v, min;
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2, v = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3, v = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4, v = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80) return false;
            v = (v << 6) | (p[i] & 0x3F);
        }
        if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return false;
        p += len;
    }
    return true;
}

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void fail_header(int line, const char *what, const char *input)
{
    fprintf(stderr, "%s:%d: %s case failed\n  input:    \"%s\"\n", __FILE__, line, what, input);
}

static void show(const char *label, const char *s)
{
    if (s)
        fprintf(stderr, "  %s\"%s\"\n", label, s);
    else
        fprintf(stderr, "  %s(null)\n", label);
}

/* ---- WhatsApp -> Matrix --------------------------------------------------------------------- */

typedef struct wa_case {
    int line;
    const char *text;
    const char *body; /* expected body; NULL = same as text */
    const char *html; /* expected formatted_body; NULL = none */
} wa_case;

#define WA(text, body, html)                                                                       \
    {                                                                                              \
        __LINE__, text, body, html                                                                 \
    }

static const wa_case WA_CASES[] = {
    WA("hello", NULL, NULL),
    WA("*bold*", NULL, "<strong>bold</strong>"),
    WA("_italic_", NULL, "<em>italic</em>"),
    WA("~strike~", NULL, "<del>strike</del>"),
    WA("`code`", NULL, "<code>code</code>"),
    WA("```mono```", NULL, "<code>mono</code>"),
    WA("```\nline1\nline2\n```", NULL, "<pre><code>line1\nline2\n</code></pre>"),
    WA("2*3*4", NULL, NULL),
    WA("snake_case_names", NULL, NULL),
    WA("a * b * c", NULL, NULL),
    WA("x *not bold *", NULL, NULL),
    WA("x * not bold*", NULL, NULL),
    WA("**", NULL, NULL),
    WA("*unclosed", NULL, NULL),
    WA("price: 5*", NULL, NULL),
    WA("*bold*s", NULL, NULL),
    WA("é*x*", NULL, NULL),
    WA("*bold* and _it_", NULL, "<strong>bold</strong> and <em>it</em>"),
    WA("*bold _both_*", NULL, "<strong>bold <em>both</em></strong>"),
    WA("_*both*_", NULL, "<em><strong>both</strong></em>"),
    WA("~*_all_*~", NULL, "<del><strong><em>all</em></strong></del>"),
    WA("*a* _b_ ~c~ `d`", NULL, "<strong>a</strong> <em>b</em> <del>c</del> <code>d</code>"),
    WA("`*not bold*`", NULL, "<code>*not bold*</code>"),
    WA("```*x* _y_```", NULL, "<code>*x* _y_</code>"),
    WA("_hello_world_", NULL, "<em>hello_world</em>"),
    WA("*bold*.", NULL, "<strong>bold</strong>."),
    WA("(*bold*)", NULL, "(<strong>bold</strong>)"),
    WA("*¡olé!*", NULL, "<strong>¡olé!</strong>"),
    WA("*bold*🎉", NULL, "<strong>bold</strong>🎉"),
    WA("a < b & c", NULL, NULL),
    WA("*a < b*", NULL, "<strong>a &lt; b</strong>"),
    WA("say \"hi\" *'now'*", NULL, "say &quot;hi&quot; <strong>&#39;now&#39;</strong>"),
    WA("line1\nline2", NULL, NULL),
    WA("*line1*\nline2", NULL, "<strong>line1</strong><br/>line2"),
    WA("*no\nbold*", NULL, NULL),
    WA("> quoted", NULL, "<blockquote>quoted</blockquote>"),
    WA("> a\n> b\nafter", NULL, "<blockquote>a<br/>b</blockquote>after"),
    WA("> a\n>\n> b", NULL, "<blockquote>a<br/><br/>b</blockquote>"),
    WA(">no space", NULL, NULL),
    WA("- one\n- two", NULL, "<ul><li>one</li><li>two</li></ul>"),
    WA("* one\n* two", NULL, "<ul><li>one</li><li>two</li></ul>"),
    WA("1. one\n2. two", NULL, "<ol><li>one</li><li>two</li></ol>"),
    WA("3. three\n4. four", NULL, "<ol start=\"3\"><li>three</li><li>four</li></ol>"),
    WA("intro\n- a\n- b\noutro", NULL, "intro<ul><li>a</li><li>b</li></ul>outro"),
    WA("- *bold item*", NULL, "<ul><li><strong>bold item</strong></li></ul>"),
    WA("- a\n1. b", NULL, "<ul><li>a</li></ul><ol><li>b</li></ol>"),
    WA("a\n\n- b", NULL, "a<br/><br/><ul><li>b</li></ul>"),
    WA("- a\n\nb", NULL, "<ul><li>a</li></ul><br/>b"),
    WA("> a\n\n> b", NULL, "<blockquote>a</blockquote><br/><blockquote>b</blockquote>"),
    WA("```\ncode\n```\ntext", NULL, "<pre><code>code\n</code></pre>text"),
    WA("see ```a\nb``` ok", NULL, "see <pre><code>a\nb</code></pre> ok"),
    WA("```\n*x* <y>\n```", NULL, "<pre><code>*x* &lt;y&gt;\n</code></pre>"),
    WA("https://example.com/_foo_", NULL, NULL),
    WA("see https://example.com/a_b_c *now*", NULL,
       "see https://example.com/a_b_c <strong>now</strong>"),
    WA("*see https://example.com*", NULL, "<strong>see https://example.com</strong>"),
    WA("hi @15551234567!", "hi Alice!",
       "hi <a href=\"https://matrix.to/#/@whatsapp_15551234567:example.org\">Alice</a>!"),
    WA("@123 look", "Bob <B&B> look",
       "<a href=\"https://matrix.to/#/@whatsapp_lid-123:example.org\">Bob &lt;B&amp;B&gt;</a> "
       "look"),
    WA("@4470001", "@me:example.org",
       "<a href=\"https://matrix.to/#/@me:example.org\">@me:example.org</a>"),
    WA("*@15551234567*", "*Alice*",
       "<strong><a href=\"https://matrix.to/#/@whatsapp_15551234567:example.org\">Alice</a>"
       "</strong>"),
    WA("@999 not mentioned", NULL, NULL),
    WA("mail a@15551234567", NULL, NULL),
    WA("@155512345678", NULL, NULL),
    WA("`@15551234567`", NULL, "<code>@15551234567</code>"),
};

static void test_wa_to_mx_table(void)
{
    for (size_t i = 0; i < sizeof(WA_CASES) / sizeof(WA_CASES[0]); i++) {
        const wa_case *c = &WA_CASES[i];
        const char *want_body = c->body ? c->body : c->text;
        br_formatted f;
        int rc = br_format_wa_to_mx(c->text, MENTIONED, N_MENTIONED, &RESOLVER, &f);
        if (rc == 0 && str_eq(f.body, want_body) && str_eq(f.html, c->html)) {
            check_passed++;
        } else {
            check_failed++;
            fail_header(c->line, "WhatsApp -> Matrix", c->text);
            fprintf(stderr, "  rc:       %d\n", rc);
            show("body:     ", f.body);
            show("expected: ", want_body);
            show("html:     ", f.html);
            show("expected: ", c->html);
        }
        br_formatted_free(&f);
    }
}

static void test_wa_to_mx_api(void)
{
    br_formatted f;
    CHECK_INT(br_format_wa_to_mx(NULL, NULL, 0, NULL, &f), -1);
    CHECK(f.body == NULL && f.html == NULL);
    /* no resolver: mentions stay text */
    CHECK_INT(br_format_wa_to_mx("hi @15551234567", MENTIONED, N_MENTIONED, NULL, &f), 0);
    CHECK_STR(f.body, "hi @15551234567");
    CHECK(f.html == NULL);
    br_formatted_free(&f);
    /* a mentioned JID with a device part still matches */
    const char *const dev[] = {"15551234567:12@s.whatsapp.net"};
    resolver_calls = 0;
    CHECK_INT(br_format_wa_to_mx("@15551234567", dev, 1, &RESOLVER, &f), 0);
    CHECK_INT(resolver_calls, 1); /* asked, with the device JID: unknown to the fake */
    CHECK_STR(f.body, "@15551234567");
    br_formatted_free(&f);
    CHECK_INT(br_format_wa_to_mx("", NULL, 0, NULL, &f), 0);
    CHECK_STR(f.body, "");
    CHECK(f.html == NULL);
    br_formatted_free(&f);
    br_formatted_free(&f); /* twice is fine */
    br_formatted_free(NULL);

    char *e = br_html_escape("<a href=\"x\">'&'</a>");
    CHECK_STR(e, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    free(e);
    CHECK(br_html_escape(NULL) == NULL);
}

/* ---- Matrix -> WhatsApp --------------------------------------------------------------------- */

typedef struct mx_case {
    int line;
    const char *body;     /* NULL: "fallback body" */
    const char *html;     /* NULL: plain */
    const char *text;     /* expected WhatsApp text */
    const char *mention1; /* expected mentions (NULL = fewer) */
    const char *mention2;
} mx_case;

#define MXH(html, text)                                                                            \
    {                                                                                              \
        __LINE__, NULL, html, text, NULL, NULL                                                     \
    }
#define MXM(html, text, m1, m2)                                                                    \
    {                                                                                              \
        __LINE__, NULL, html, text, m1, m2                                                         \
    }
#define MXP(body, text)                                                                            \
    {                                                                                              \
        __LINE__, body, NULL, text, NULL, NULL                                                     \
    }

#define ALICE_PILL "<a href=\"https://matrix.to/#/@whatsapp_15551234567:example.org\">Alice</a>"

static const mx_case MX_CASES[] = {
    MXP("hello", "hello"),
    MXP("*kept* as typed", "*kept* as typed"),
    MXP("a\n\n\n\nb  \n\n", "a\n\nb"),
    MXP("\n\nleading", "leading"),
    MXP("> quote\n\nnot stripped without the flag", "> quote\n\nnot stripped without the flag"),
    MXP("a\xff\xfe"
        "b",
        "a\xEF\xBF\xBD\xEF\xBF\xBD"
        "b"),
    MXH("<strong>bold</strong>", "*bold*"),
    MXH("<b>bold</b>", "*bold*"),
    MXH("<em>it</em> <i>it</i>", "_it_ _it_"),
    MXH("<del>x</del> <s>y</s> <strike>z</strike>", "~x~ ~y~ ~z~"),
    MXH("<code>a*b</code>", "`a*b`"),
    MXH("<code>a`b</code>", "```a`b```"),
    MXH("<code><b>x</b></code>", "`x`"),
    MXH("<pre><code>line1\nline2\n</code></pre>", "```\nline1\nline2\n```"),
    MXH("<pre>x</pre>", "```\nx\n```"),
    MXH("<pre><b>x</b>  y</pre>", "```\nx  y\n```"),
    MXH("before<pre><code class=\"language-c\">int x;\n</code></pre>after",
        "before\n```\nint x;\n```\nafter"),
    MXH("<blockquote>quoted</blockquote>reply", "> quoted\nreply"),
    MXH("<blockquote><p>a</p><p>b</p></blockquote>", "> a\n>\n> b"),
    MXH("<blockquote>a<br><br>b</blockquote>", "> a\n>\n> b"),
    MXH("<blockquote><blockquote>deep</blockquote>x</blockquote>", "> > deep\n> x"),
    MXH("<ul><li>one</li><li>two</li></ul>", "- one\n- two"),
    MXH("<ol><li>one</li><li>two</li></ol>", "1. one\n2. two"),
    MXH("<ol start=\"5\"><li>five</li><li>six</li></ol>", "5. five\n6. six"),
    MXH("<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>", "- a\n  - b\n- c"),
    MXH("<ol><li>a</li><li>b<ol><li>c</li></ol></li></ol>", "1. a\n2. b\n   1. c"),
    MXH("<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n", "- a\n- b"),
    MXH("<ul><li>a<li>b</ul>", "- a\n- b"),
    MXH("<li>orphan</li>", "- orphan"),
    MXH("a<br>b<br/>c<br />d", "a\nb\nc\nd"),
    MXH("<p>one</p><p>two</p>", "one\n\ntwo"),
    MXH("<p>a</p>\n\n<p>b</p>", "a\n\nb"),
    MXH("<div>one</div><div>two</div>", "one\ntwo"),
    MXH("<h1>Title</h1><p>text</p>", "*Title*\n\ntext"),
    MXH("<h2>Sub</h2>", "*Sub*"),
    MXH("one<br><br><br><br>two", "one\n\ntwo"),
    MXH("text<br><br>", "text"),
    MXH("a   b\n\tc", "a b c"),
    MXH("<b>bold </b>text", "*bold* text"),
    MXH("<b> </b>x", "x"),
    MXH("<b>a<br>b</b>", "*a*\n*b*"),
    MXH("<b><b>nested</b></b>", "*nested*"),
    MXH("<strong><em>both</em></strong>", "*_both_*"),
    MXH("<b>x <i>y</b> z</i>", "*x _y_* z"),
    MXH("<a href=\"https://example.com\">site</a>", "site (https://example.com)"),
    MXH("<a href=\"https://example.com\">https://example.com</a>", "https://example.com"),
    MXH("<a href=\"https://example.com/\">example.com</a>", "example.com"),
    MXH("<a href=\"mailto:a@b.c\">a@b.c</a>", "a@b.c"),
    MXH("<a href=\"https://e.com\"></a>", "https://e.com"),
    MXH("<a href='x' title=\"y\">z</a>", "z (x)"),
    MXH("<a href=https://u.example/ >unquoted</a>", "unquoted (https://u.example/)"),
    MXH("<a href=\"https://e.com/?a=1&amp;b=2\">q</a>", "q (https://e.com/?a=1&b=2)"),
    MXH("<a name=\"x\">anchor</a>", "anchor"),
    MXM("hi " ALICE_PILL "!", "hi @15551234567!", "15551234567@s.whatsapp.net", NULL),
    MXM("<a href=\"https://matrix.to/#/%40whatsapp_lid-123%3Aexample.org?via=example.org\">Bob</a>",
        "@123", "123@lid", NULL),
    MXM("<a href=\"matrix:u/me:example.org\">me</a> and " ALICE_PILL, "@4470001 and @15551234567",
        "4470001@s.whatsapp.net", "15551234567@s.whatsapp.net"),
    MXM(ALICE_PILL " " ALICE_PILL, "@15551234567 @15551234567", "15551234567@s.whatsapp.net", NULL),
    MXM("<b>" ALICE_PILL "</b>", "*@15551234567*", "15551234567@s.whatsapp.net", NULL),
    MXH("<a href=\"https://matrix.to/#/@stranger:example.org\">Stranger</a>: hi", "Stranger: hi"),
    MXH("<a href=\"https://matrix.to/#/#room:example.org\">#room</a>",
        "#room (https://matrix.to/#/#room:example.org)"),
    MXH("<mx-reply><blockquote><a href=\"https://matrix.to/#/!r/$e\">In reply to</a> " ALICE_PILL
        "<br>orig</blockquote></mx-reply>my reply",
        "my reply"),
    MXH("<script>alert(1)</script>safe<style>p{}</style>", "safe"),
    MXH("<SCRIPT>x</script >y", "y"),
    MXH("<unknown>kept</unknown> <span data-mx-color=\"red\">text</span>", "kept text"),
    MXH("<B>upper</B>", "*upper*"),
    MXH("a &amp; b &lt;c&gt; &quot;d&quot; &#39;e&#39; &apos;f&apos;", "a & b <c> \"d\" 'e' 'f'"),
    MXH("&#233;&#xE9;&#x1F600;", "éé😀"),
    MXH("&bogus; &#xD800; &#99999999999; &#; &#0; &", "&bogus; &#xD800; &#99999999999; &#; &#0; &"),
    MXH("a&nbsp;b", "a\xC2\xA0"
                    "b"),
    MXH("<!-- comment -->visible<!-- unterminated", "visible"),
    MXH("<!DOCTYPE html><?xml?>doc", "doc"),
    MXH("<b>unclosed bold", "*unclosed bold*"),
    MXH("text <b", "text"),
    MXH("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
    MXH("<p>a &lt; b</p>", "a < b"),
    MXH("<img alt=\":party:\" src=\"mxc://x/y\">", ":party:"),
    MXH("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"),
    MXH("<pre>a\n\n\n\nb</pre>", "```\na\n\nb\n```"),
    MXH("<p>x\xff\xc0y</p>", "x\xEF\xBF\xBD\xEF\xBF\xBDy"),
    MXH("</b></i></blockquote>stray ends", "stray ends"),
};

#define FALLBACK_BODY "fallback body"

static void test_mx_to_wa_table(void)
{
    for (size_t i = 0; i < sizeof(MX_CASES) / sizeof(MX_CASES[0]); i++) {
        const mx_case *c = &MX_CASES[i];
        const char *body = c->body ? c->body : FALLBACK_BODY;
        br_wa_text t;
        int rc = br_format_mx_to_wa(body, c->html, &RESOLVER, &t);
        size_t want_n = c->mention2 ? 2 : c->mention1 ? 1 : 0;
        bool ok = rc == 0 && str_eq(t.text, c->text) && t.n_mentions == want_n &&
                  (want_n < 1 || str_eq(t.mentions[0], c->mention1)) &&
                  (want_n < 2 || str_eq(t.mentions[1], c->mention2));
        if (ok) {
            check_passed++;
        } else {
            check_failed++;
            fail_header(c->line, "Matrix -> WhatsApp", c->html ? c->html : body);
            fprintf(stderr, "  rc:       %d\n", rc);
            show("text:     ", t.text);
            show("expected: ", c->text);
            fprintf(stderr, "  mentions: %zu, expected %zu\n", t.n_mentions, want_n);
            for (size_t k = 0; k < t.n_mentions; k++)
                show("mention:  ", t.mentions[k]);
        }
        br_wa_text_free(&t);
    }
}

static void test_mx_to_wa_api(void)
{
    br_wa_text t;
    CHECK_INT(br_format_mx_to_wa(NULL, NULL, NULL, &t), -1);
    CHECK(t.text == NULL && t.mentions == NULL && t.n_mentions == 0);

    /* html only, no body */
    CHECK_INT(br_format_mx_to_wa(NULL, "<b>x</b>", NULL, &t), 0);
    CHECK_STR(t.text, "*x*");
    br_wa_text_free(&t);

    /* no resolver: pills are their text */
    CHECK_INT(br_format_mx_to_wa("Alice", ALICE_PILL, NULL, &t), 0);
    CHECK_STR(t.text, "Alice");
    CHECK_INT(t.n_mentions, 0);
    br_wa_text_free(&t);

    /* the reply fallback of a plain body, stripped when the event is a reply */
    const char *reply = "> <@alice:example.org> original\n> more\n\nmy reply\n\nsecond";
    CHECK_INT(br_format_mx_to_wa_ex(reply, NULL, true, NULL, &t), 0);
    CHECK_STR(t.text, "my reply\n\nsecond");
    br_wa_text_free(&t);
    CHECK_INT(br_format_mx_to_wa_ex(reply, NULL, false, NULL, &t), 0);
    CHECK_STR(t.text, "> <@alice:example.org> original\n> more\n\nmy reply\n\nsecond");
    br_wa_text_free(&t);
    CHECK_INT(br_format_mx_to_wa_ex("> just a quote", NULL, true, NULL, &t), 0);
    CHECK_STR(t.text, "> just a quote");
    br_wa_text_free(&t);
    CHECK_INT(br_format_mx_to_wa_ex("> q\nnot a fallback\n\nx", NULL, true, NULL, &t), 0);
    CHECK_STR(t.text, "> q\nnot a fallback\n\nx");
    br_wa_text_free(&t);

    char *s = br_format_strip_reply_fallback("> a\n>\n> b\n\nrest");
    CHECK_STR(s, "rest");
    free(s);
    s = br_format_strip_reply_fallback("> a\n\n");
    CHECK_STR(s, "");
    free(s);
    s = br_format_strip_reply_fallback("plain");
    CHECK_STR(s, "plain");
    free(s);
    CHECK(br_format_strip_reply_fallback(NULL) == NULL);

    /* HTML that yields nothing (only the reply) falls back to the body, minus its fallback */
    CHECK_INT(
        br_format_mx_to_wa("> <@a:b> x\n\nreply", "<mx-reply><blockquote>x</blockquote>", NULL, &t),
        0);
    CHECK_STR(t.text, "reply");
    br_wa_text_free(&t);
    /* an image with no alt text: the body */
    CHECK_INT(br_format_mx_to_wa(":custom:", "<img src=\"mxc://a/b\">", NULL, &t), 0);
    CHECK_STR(t.text, ":custom:");
    br_wa_text_free(&t);
    br_wa_text_free(&t);
    br_wa_text_free(NULL);
}

/* ---- round trips ---------------------------------------------------------------------------- */

static const char *const ROUND_TRIPS[] = {
    "*bold*",
    "_italic_",
    "~strike~",
    "`code`",
    "*bold* _it_ ~st~ `code`",
    "*bold _both_*",
    "_*both*_",
    "*a < b & c*",
    "> quoted\n> two",
    "> *q* _r_",
    "- a\n- b",
    "1. a\n2. b",
    "3. c\n4. d",
    "```\nint x;\nint y;\n```",
    "```\ncode\n```\ntext",
    "intro\n- a\n- b\noutro",
    "a\n\n- b",
    "- a\n\nb",
    "> a\n\n> b",
    "x\n*y*\n\nz",
    "hi @15551234567 and @123",
    "*@15551234567* look",
};

static void test_round_trips(void)
{
    for (size_t i = 0; i < sizeof(ROUND_TRIPS) / sizeof(ROUND_TRIPS[0]); i++) {
        const char *in = ROUND_TRIPS[i];
        br_formatted f;
        br_wa_text t = {0};
        int rc1 = br_format_wa_to_mx(in, MENTIONED, N_MENTIONED, &RESOLVER, &f);
        int rc2 = rc1 == 0 && f.html ? br_format_mx_to_wa(f.body, f.html, &RESOLVER, &t) : -1;
        if (rc2 == 0 && str_eq(t.text, in)) {
            check_passed++;
        } else {
            check_failed++;
            fail_header(__LINE__, "round trip", in);
            show("html:     ", rc1 == 0 ? f.html : NULL);
            show("back:     ", t.text);
        }
        br_formatted_free(&f);
        br_wa_text_free(&t);
    }
    /* the mentions come back too */
    br_formatted f;
    br_wa_text t;
    CHECK_INT(
        br_format_wa_to_mx("@123 and @15551234567 and @123", MENTIONED, N_MENTIONED, &RESOLVER, &f),
        0);
    CHECK_INT(br_format_mx_to_wa(f.body, f.html, &RESOLVER, &t), 0);
    CHECK_STR(t.text, "@123 and @15551234567 and @123");
    CHECK_INT(t.n_mentions, 2);
    if (t.n_mentions == 2) {
        CHECK_STR(t.mentions[0], "123@lid");
        CHECK_STR(t.mentions[1], "15551234567@s.whatsapp.net");
    }
    br_formatted_free(&f);
    br_wa_text_free(&t);
}

/* ---- hostile inputs ------------------------------------------------------------------------- */

static char *repeat(const char *unit, size_t times, const char *tail)
{
    size_t ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(ul * times + tl + 1);
    if (!s) abort();
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * ul, unit, ul);
    memcpy(s + ul * times, tail, tl + 1);
    return s;
}

/* Runs both directions on s; both must succeed with valid UTF-8 and not take long. */
static void hostile(int line, const char *what, const char *s)
{
    clock_t t0 = clock();
    br_formatted f;
    br_wa_text t1, t2;
    int rc1 = br_format_wa_to_mx(s, MENTIONED, N_MENTIONED, &RESOLVER, &f);
    int rc2 = br_format_mx_to_wa(s, s, &RESOLVER, &t1);
    int rc3 = br_format_mx_to_wa_ex(s, NULL, true, &RESOLVER, &t2);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    bool ok = rc1 == 0 && rc2 == 0 && rc3 == 0 && valid_utf8(f.body) &&
              (!f.html || valid_utf8(f.html)) && valid_utf8(t1.text) && valid_utf8(t2.text) &&
              secs < 2.0;
    if (ok) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "%s:%d: hostile input \"%s\" failed: rc %d %d %d, %.2f s\n", __FILE__, line,
                what, rc1, rc2, rc3, secs);
    }
    br_formatted_free(&f);
    br_wa_text_free(&t1);
    br_wa_text_free(&t2);
}

static void test_hostile(void)
{
    static const struct {
        const char *what, *unit, *tail;
        size_t times;
    } REPEATS[] = {
        {"10k nested <b>", "<b>", "x", 10000},
        {"10k nested <blockquote>", "<blockquote>", "x<br>y<br><br>z", 10000},
        {"10k nested lists", "<ul><li>", "x<br>y", 10000},
        {"10k nested <ol>", "<ol start=99999999999>", "<li>x</li>", 10000},
        {"10k nested <pre>", "<pre>", "x\ny", 10000},
        {"10k nested links", "<a href=\"https://e.com\">", "x", 10000},
        {"10k nested pills", "<a href=\"https://matrix.to/#/@whatsapp_lid-123:example.org\">", "x",
         10000},
        {"10k nested mx-reply", "<mx-reply>", "x", 10000},
        {"10k nested code", "<code>`", "x", 10000},
        {"10k end tags", "</b></blockquote></li>", "x", 10000},
        {"open then 100k end tags", "</b>", "", 100000},
        {"10k lone <", "<", "", 10000},
        {"10k unterminated comment", "<!--", "", 10000},
        {"10k unterminated attr", "<a href=\"", "x", 10000},
        {"10k &", "&", "", 10000},
        {"huge entity", "9", ";", 10000},
        {"10k *", "*", "", 10000},
        {"10k *a ", "*a ", "", 10000},
        {"10k _a_", "_a_", "", 10000},
        {"10k `", "`", "", 10000},
        {"10k `a", "`a", "", 10000},
        {"10k ```", "```", "", 10000},
        {"10k ```a\\n", "```a\n", "", 10000},
        {"10k quote lines", "> *a* _b_\n", "", 10000},
        {"10k list lines", "- a\n1. b\n\n", "", 10000},
        {"10k mentions", "@15551234567 @123 ", "", 10000},
        {"10k invalid utf-8", "\xff\xc3(\xe2\x28\xa1\xf0\x90\x28", "", 10000},
        {"10k http://", "http://", "*x*", 10000},
    };
    for (size_t i = 0; i < sizeof(REPEATS) / sizeof(REPEATS[0]); i++) {
        char *s = repeat(REPEATS[i].unit, REPEATS[i].times, REPEATS[i].tail);
        hostile(__LINE__, REPEATS[i].what, s);
        free(s);
    }
    char *s = repeat("9", 10000, ";");
    char *e = malloc(strlen(s) + 3);
    memcpy(e, "&#", 2);
    strcpy(e + 2, s);
    hostile(__LINE__, "&#999...;", e);
    br_wa_text t;
    CHECK_INT(br_format_mx_to_wa("b", e, NULL, &t), 0);
    CHECK(t.text && strncmp(t.text, "&#999", 5) == 0 && strlen(t.text) == strlen(e));
    br_wa_text_free(&t);
    free(e);
    free(s);

    /* a 256-deep stack of <b> then 100k end tags that match nothing below it */
    s = repeat("<i>", 300, "");
    char *ends = repeat("</b>", 100000, "");
    char *doc = malloc(strlen(s) + strlen(ends) + 2);
    strcpy(doc, s);
    strcat(doc, "x");
    strcat(doc, ends);
    hostile(__LINE__, "deep stack + 100k unmatched end tags", doc);
    free(doc);
    free(ends);
    free(s);

    /* invalid UTF-8 inside markup and mentions */
    hostile(__LINE__, "bad utf-8 in markup", "*\xff*\n> \xc0\xaf\n- \xed\xa0\x80 @123\xff");
    hostile(__LINE__, "bad utf-8 in attr", "<a href=\"https://matrix.to/#/@\xff:x\">\xfe</a>");
    hostile(__LINE__, "truncated sequence", "*abc\xe2\x82*");

    /* deep nesting keeps the output bounded: one "x" per line, prefixes capped */
    s = repeat("<blockquote>", 10000, "x");
    CHECK_INT(br_format_mx_to_wa(NULL, s, NULL, &t), 0);
    CHECK(t.text && strlen(t.text) < 200 && t.text[strlen(t.text) - 1] == 'x');
    br_wa_text_free(&t);
    free(s);
}

int main(void)
{
    test_wa_to_mx_table();
    test_wa_to_mx_api();
    test_mx_to_wa_table();
    test_mx_to_wa_api();
    test_round_trips();
    test_hostile();
    return CHECK_DONE();
}
