/*
 * tests/fuzz/fuzz_format.c - libFuzzer target for message text conversion (bridge/format.h),
 * which runs on every WhatsApp text and every Matrix m.text the bridge relays.
 *
 * The first byte picks the direction and options, the rest is the text: WhatsApp markup into
 * br_format_wa_to_mx, or a Matrix formatted_body (or plain body) into br_format_mx_to_wa. Both
 * directions run every time (the HTML one also on the other's output, like a round trip). Each
 * call must succeed and every output must be valid UTF-8 with its mentions free of duplicates;
 * anything else aborts. ASan/UBSan watch the rest.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

/* Every JID whose user part is digits is "known"; so is every "@wa_<digits>:example.org". */
static bool digits_only(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

static bool fuzz_jid_to_mx(void *ctx, const char *jid, char *mxid, size_t mxid_cap, char *name,
                           size_t name_cap)
{
    (void)ctx;
    size_t ul = strcspn(jid, "@:");
    if (!digits_only(jid, ul) || ul > 20) return false;
    snprintf(mxid, mxid_cap, "@wa_%.*s:example.org", (int)ul, jid);
    snprintf(name, name_cap, "<Name & \"%.*s\">", (int)ul, jid);
    return true;
}

static bool fuzz_mx_to_jid(void *ctx, const char *mxid, char *jid, size_t jid_cap)
{
    (void)ctx;
    if (strncmp(mxid, "@wa_", 4) != 0) return false;
    size_t ul = strcspn(mxid + 4, ":");
    if (!digits_only(mxid + 4, ul) || ul > 20 || strcmp(mxid + 4 + ul, ":example.org") != 0)
        return false;
    snprintf(jid, jid_cap, "%.*s@s.whatsapp.net", (int)ul, mxid + 4);
    return true;
}

static const br_format_resolver RESOLVER = {NULL, fuzz_jid_to_mx, fuzz_mx_to_jid};
static const char *const MENTIONED[] = {"15551234567@s.whatsapp.net", "123@lid", "1@s.whatsapp.net",
                                        "9:4@s.whatsapp.net"};

/* The HTML we generate is well nested: every '<' in it starts one of our tags (text is escaped)
 * and every end tag closes the innermost open element. */
static void check_nesting(const char *html)
{
    char stack[64][12];
    size_t depth = 0;
    for (const char *p = strchr(html, '<'); p; p = strchr(p + 1, '<')) {
        bool end = p[1] == '/';
        const char *name = p + 1 + end;
        size_t n = strcspn(name, " />");
        if (n == 0 || n >= sizeof(stack[0]) || !strchr(name, '>')) abort();
        if (n == 2 && memcmp(name, "br", 2) == 0) continue;
        if (!end) {
            if (depth == 64) abort(); /* our nesting is shallow: block, item, 3 marks, code */
            memcpy(stack[depth], name, n);
            stack[depth++][n] = '\0';
        } else if (depth == 0 || strlen(stack[depth - 1]) != n ||
                   memcmp(stack[--depth], name, n) != 0) {
            abort();
        }
    }
    if (depth != 0) abort();
}

static void check_wa(const br_wa_text *t)
{
    if (!t->text || !valid_utf8(t->text)) abort();
    for (size_t i = 0; i < t->n_mentions; i++) {
        if (!t->mentions[i]) abort();
        for (size_t k = 0; k < i; k++)
            if (strcmp(t->mentions[i], t->mentions[k]) == 0) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t mode = data[0];
    char *s = malloc(size);
    if (!s) return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    const br_format_resolver *r = (mode & 4) ? NULL : &RESOLVER;

    /* WhatsApp -> Matrix, then its HTML back */
    br_formatted f;
    if (br_format_wa_to_mx(s, MENTIONED, (mode & 8) ? 0 : 4, r, &f) != 0) abort();
    if (!f.body || !valid_utf8(f.body) || (f.html && !valid_utf8(f.html))) abort();
    if (f.html) check_nesting(f.html);
    /* with no resolver the body is the text itself */
    if (!r && valid_utf8(s) && strcmp(f.body, s) != 0) abort();
    br_wa_text t;
    if (br_format_mx_to_wa(f.body, f.html, r, &t) != 0) abort();
    check_wa(&t);
    br_wa_text_free(&t);
    br_formatted_free(&f);

    /* Matrix -> WhatsApp: the input as formatted_body, or as a plain body */
    bool plain = mode & 1, strip = mode & 2;
    if (br_format_mx_to_wa_ex(s, plain ? NULL : s, strip, r, &t) != 0) abort();
    check_wa(&t);
    br_wa_text_free(&t);

    char *st = br_format_strip_reply_fallback(s);
    if (!st || strlen(st) > strlen(s)) abort();
    free(st);
    free(s);
    return 0;
}
