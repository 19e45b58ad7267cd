/*
 * bridge/format.c - message text between WhatsApp markup and Matrix HTML (see format.h and
 * docs/formatting.md).
 *
 * WhatsApp -> Matrix runs in two passes over the text. The first marks roles: ``` regions (they
 * may span lines), then for each line its `code` spans and the *, _ and ~ pairs, found left to
 * right with at most one open marker of each kind, so the work is linear and needs no recursion.
 * The second pass walks the lines, groups "> ", "- " and "1. " lines into blocks and writes the
 * body and the HTML side by side.
 *
 * Matrix -> WhatsApp is a small HTML tokenizer feeding a writer. Open elements live on an explicit
 * stack of at most FMT_MAX_DEPTH entries (deeper tags are dropped, their text kept); the writer
 * keeps the WhatsApp side's rules: markers only around non-blank text and never across a line
 * break, a "> " or list prefix on every line, block boundaries as line breaks, HTML whitespace
 * collapsed outside <pre>.
 *
 * Every output passes through utf8_append at the end, so it is valid UTF-8 whatever came in.
 */
#include "bridge/format.h"

#include "util/bytes.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FMT_MAX_DEPTH    256  /* open HTML elements tracked; deeper start tags are dropped */
#define FMT_MAX_PREFIX   96   /* bytes of "> " / list indentation written at a line start */
#define FMT_MAX_LINKTEXT 2048 /* bytes of link text kept to compare with the href */
#define FMT_MXID_CAP     256  /* Matrix user IDs are at most 255 bytes */
#define FMT_NAME_CAP     256
#define FMT_JID_CAP      128

/* ---- small helpers -------------------------------------------------------------------------- */

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}

static unsigned char to_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static bool starts_with_ci(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    if (n < k) return false;
    for (size_t i = 0; i < k; i++)
        if (to_lower((unsigned char)s[i]) != (unsigned char)prefix[i]) return false;
    return true;
}

static bool buf_str(wb_buf *b, const char *s)
{
    return wb_buf_append(b, s, strlen(s));
}

/* Inserts n bytes at offset pos (<= len). */
static bool buf_insert(wb_buf *b, size_t pos, const char *s, size_t n)
{
    assert(pos <= b->len);
    if (!wb_buf_reserve(b, n)) return false;
    memmove(b->data + pos + n, b->data + pos, b->len - pos);
    memcpy(b->data + pos, s, n);
    b->len += n;
    return true;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when p does not start one. */
static size_t utf8_seq(const uint8_t *p, size_t n, uint32_t *cp)
{
    if (n == 0) return 0;
    uint8_t c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static size_t utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Appends s[0..n) to dst as valid UTF-8: every byte that does not start a valid sequence (and any
 * NUL) becomes U+FFFD. */
static bool utf8_append(wb_buf *dst, const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_seq(p + i, n - i, &cp);
        if (k == 0 || cp == 0) {
            if (!wb_buf_append(dst, "\xEF\xBF\xBD", 3)) return false;
            i++;
            continue;
        }
        size_t run = i + k;
        /* copy a run of valid sequences in one go */
        while (run < n) {
            size_t k2 = utf8_seq(p + run, n - run, &cp);
            if (k2 == 0 || cp == 0) break;
            run += k2;
        }
        if (!wb_buf_append(dst, p + i, run - i)) return false;
        i = run;
    }
    return !dst->failed;
}

/* The builder's bytes as a valid UTF-8 C string (the builder is freed); NULL on failure. */
static char *finish_utf8(wb_buf *b)
{
    wb_buf out;
    wb_buf_init(&out);
    if (b->failed || !utf8_append(&out, (const char *)b->data, b->len) || !wb_buf_u8(&out, '\0')) {
        wb_buf_free(b);
        wb_buf_free(&out);
        return NULL;
    }
    wb_buf_free(b);
    return (char *)wb_buf_steal(&out, NULL);
}

/* Whether the code point is a letter or digit of a script written in words, for WhatsApp's
 * "markers only at word boundaries" rule. Emoji, punctuation and symbols are not. */
static bool cp_is_word(uint32_t cp)
{
    if (cp < 0x80) return is_alnum((unsigned char)cp);
    return (cp >= 0xC0 && cp <= 0x24F && cp != 0xD7 && cp != 0xF7) || /* Latin */
           (cp >= 0x370 && cp <= 0x52F) ||                            /* Greek, Cyrillic */
           (cp >= 0x531 && cp <= 0x6FF) ||                            /* Armenian..Arabic */
           (cp >= 0x900 && cp <= 0xDFF) ||                            /* Indic */
           (cp >= 0xE00 && cp <= 0xEFF) ||                            /* Thai, Lao */
           (cp >= 0x1E00 && cp <= 0x1FFF) ||                          /* Latin/Greek ext. */
           (cp >= 0x3040 && cp <= 0x30FF) ||                          /* kana */
           (cp >= 0x3400 && cp <= 0x9FFF) ||                          /* CJK */
           (cp >= 0xAC00 && cp <= 0xD7AF);                            /* Hangul */
}

/* Is the character that starts at t[i] (i < e) a word character? */
static bool word_at(const char *t, size_t i, size_t e)
{
    uint32_t cp;
    size_t k = utf8_seq((const uint8_t *)t + i, e - i, &cp);
    return k != 0 && cp_is_word(cp);
}

/* Is the character that ends just before t[i] (i > s) a word character? */
static bool word_before(const char *t, size_t s, size_t i)
{
    size_t j = i - 1;
    for (int back = 0; back < 3 && j > s && ((unsigned char)t[j] & 0xC0) == 0x80; back++)
        j--;
    uint32_t cp;
    size_t k = utf8_seq((const uint8_t *)t + j, i - j, &cp);
    return k == i - j && cp_is_word(cp);
}

static bool html_escape_into(wb_buf *b, const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: continue;
        }
        wb_buf_append(b, s + run, i - run);
        buf_str(b, rep);
        run = i + 1;
    }
    return wb_buf_append(b, s + run, n - run);
}

char *br_html_escape(const char *s)
{
    if (!s) return NULL;
    wb_buf b;
    wb_buf_init(&b);
    html_escape_into(&b, s, strlen(s));
    if (!wb_buf_u8(&b, '\0')) {
        wb_buf_free(&b);
        return NULL;
    }
    return (char *)wb_buf_steal(&b, NULL);
}

/* The user part of a JID: "15551234567" of "15551234567:3@s.whatsapp.net" (or of the
 * "user.agent:device@server" form). */
static size_t jid_user_len(const char *jid)
{
    return strcspn(jid, "@:.");
}

void br_formatted_free(br_formatted *f)
{
    if (!f) return;
    free(f->body);
    free(f->html);
    f->body = f->html = NULL;
}

void br_wa_text_free(br_wa_text *t)
{
    if (!t) return;
    free(t->text);
    for (size_t i = 0; i < t->n_mentions; i++)
        free(t->mentions[i]);
    free(t->mentions);
    memset(t, 0, sizeof(*t));
}

/* ---- WhatsApp -> Matrix --------------------------------------------------------------------- */

enum {
    ROLE_TEXT = 0,
    ROLE_OPEN,        /* an opening *, _ or ~ that has its closer */
    ROLE_CLOSE,       /* its closer */
    ROLE_CODE1_OPEN,  /* ` that starts an inline code span */
    ROLE_CODE1_CLOSE, /* ` that ends it */
    ROLE_CODE3_OPEN,  /* first byte of a ``` that starts a code region */
    ROLE_CODE3_CLOSE, /* first byte of the ``` that ends it */
};

enum { LINE_NONE, LINE_TEXT, LINE_QUOTE, LINE_BULLET, LINE_NUMBER, LINE_PRE };

typedef struct wa_conv {
    const char *t;                /* the WhatsApp text */
    size_t n;                     /* its length */
    uint8_t *role;                /* ROLE_* per byte */
    const char *const *mentioned; /* contextInfo.mentionedJid */
    size_t n_mentioned;           /* entries in mentioned */
    const br_format_resolver *r;  /* may be NULL */
    wb_buf body, html;            /* the two outputs */
    bool needs_html;              /* something only HTML can say was written */
} wa_conv;

/* Index of the next byte with role `want` at or after i, or n. */
static size_t next_role(const wa_conv *c, size_t i, uint8_t want)
{
    while (i < c->n && c->role[i] != want)
        i++;
    return i;
}

static size_t find_triple(const char *t, size_t n, size_t from)
{
    for (size_t i = from; i + 3 <= n; i++)
        if (t[i] == '`' && t[i + 1] == '`' && t[i + 2] == '`') return i;
    return SIZE_MAX;
}

/* ```code``` regions: the first ``` pairs with the next one that leaves content between them. */
static void mark_code3(wa_conv *c)
{
    size_t i = 0;
    while ((i = find_triple(c->t, c->n, i)) != SIZE_MAX) {
        size_t j = find_triple(c->t, c->n, i + 4);
        if (j == SIZE_MAX) return; /* no closer after i: none after any later opener either */
        c->role[i] = ROLE_CODE3_OPEN;
        c->role[j] = ROLE_CODE3_CLOSE;
        i = j + 3;
    }
}

/* Marks the `code` spans and the *, _, ~ pairs of one line's content [s, e). */
static void mark_inline(wa_conv *c, size_t s, size_t e)
{
    const char *t = c->t;
    struct {
        char mark;
        size_t pos;
    } open[3];
    size_t n_open = 0;
    bool code_possible = true; /* false once a ` found no closer: later ones cannot either */
    bool in_url = false;       /* inside http(s)://...: no marker opens there */
    for (size_t i = s; i < e; i++) {
        if (c->role[i] == ROLE_CODE3_OPEN) {
            i = next_role(c, i + 3, ROLE_CODE3_CLOSE) + 2;
            in_url = false;
            continue;
        }
        unsigned char ch = (unsigned char)t[i];
        bool boundary_before = i == s || !word_before(t, s, i);
        if (is_space(ch)) {
            in_url = false;
            continue;
        }
        if (!in_url && boundary_before &&
            (starts_with_ci(t + i, e - i, "http://") || starts_with_ci(t + i, e - i, "https://"))) {
            in_url = true;
            continue;
        }
        if (ch == '`') {
            if (in_url || !code_possible || !boundary_before || i + 1 >= e ||
                is_space((unsigned char)t[i + 1]))
                continue;
            size_t j;
            for (j = i + 2; j < e && c->role[j] == ROLE_TEXT; j++)
                if (t[j] == '`' && !is_space((unsigned char)t[j - 1]) &&
                    (j + 1 == e || !word_at(t, j + 1, e)))
                    break;
            if (j < e && c->role[j] == ROLE_TEXT) {
                c->role[i] = ROLE_CODE1_OPEN;
                c->role[j] = ROLE_CODE1_CLOSE;
                i = j;
            } else if (j == e) {
                code_possible = false;
            }
            continue;
        }
        if (ch != '*' && ch != '_' && ch != '~') continue;
        size_t k = 0;
        while (k < n_open && open[k].mark != (char)ch)
            k++;
        if (k < n_open && open[k].pos + 1 < i && !is_space((unsigned char)t[i - 1]) &&
            (i + 1 == e || !word_at(t, i + 1, e))) {
            c->role[open[k].pos] = ROLE_OPEN;
            c->role[i] = ROLE_CLOSE;
            n_open = k; /* markers opened inside and never closed stay text */
            continue;
        }
        if (k == n_open && !in_url && boundary_before && i + 1 < e &&
            !is_space((unsigned char)t[i + 1])) {
            assert(n_open < 3);
            open[n_open].mark = (char)ch;
            open[n_open].pos = i;
            n_open++;
        }
    }
}

/* Classifies the line [ls, le); *cs = where its content starts, *num = a numbered item's number. */
static int classify_line(const wa_conv *c, size_t ls, size_t le, size_t *cs, unsigned long *num)
{
    const char *t = c->t;
    size_t len = le - ls;
    *cs = ls;
    if (len >= 1 && t[ls] == '>' && (len == 1 || t[ls + 1] == ' ')) {
        *cs = len == 1 ? le : ls + 2;
        return LINE_QUOTE;
    }
    if (len >= 2 && (t[ls] == '-' || t[ls] == '*') && t[ls + 1] == ' ') {
        *cs = ls + 2;
        return LINE_BULLET;
    }
    size_t k = ls;
    unsigned long v = 0;
    while (k < le && k - ls < 9 && is_digit((unsigned char)t[k]))
        v = v * 10 + (unsigned long)(t[k++] - '0');
    if (k > ls && k + 1 < le && t[k] == '.' && t[k + 1] == ' ') {
        *cs = k + 2;
        *num = v;
        return LINE_NUMBER;
    }
    if (c->role[ls] == ROLE_CODE3_OPEN) {
        size_t j = next_role(c, ls + 3, ROLE_CODE3_CLOSE);
        if (j + 3 == le && memchr(t + ls + 3, '\n', j - ls - 3)) return LINE_PRE;
    }
    return LINE_TEXT;
}

static const char *mentioned_jid(const wa_conv *c, const char *digits, size_t nd)
{
    for (size_t i = 0; i < c->n_mentioned; i++) {
        const char *jid = c->mentioned[i];
        if (jid && jid_user_len(jid) == nd && memcmp(jid, digits, nd) == 0) return jid;
    }
    return NULL;
}

/* "@<digits>" at t[i] whose JID is mentioned and known: writes the pill, returns bytes used. */
static size_t emit_mention(wa_conv *c, size_t s, size_t i, size_t e)
{
    const char *t = c->t;
    if (!c->r || !c->r->jid_to_mx || (i > s && word_before(t, s, i))) return 0;
    size_t k = i + 1;
    while (k < e && is_digit((unsigned char)t[k]))
        k++;
    if (k == i + 1 || (k < e && word_at(t, k, e))) return 0;
    const char *jid = mentioned_jid(c, t + i + 1, k - i - 1);
    if (!jid) return 0;
    char mxid[FMT_MXID_CAP] = "", name[FMT_NAME_CAP] = "";
    if (!c->r->jid_to_mx(c->r->ctx, jid, mxid, sizeof(mxid), name, sizeof(name))) return 0;
    mxid[sizeof(mxid) - 1] = name[sizeof(name) - 1] = '\0';
    if (!mxid[0]) return 0;
    const char *shown = name[0] ? name : mxid;
    buf_str(&c->body, shown);
    buf_str(&c->html, "<a href=\"https://matrix.to/#/");
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)mxid; *p; p++) {
        if (is_alnum(*p) || strchr("-._~@:=/+", *p)) {
            wb_buf_u8(&c->html, *p);
        } else {
            char pct[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            wb_buf_append(&c->html, pct, 3);
        }
    }
    buf_str(&c->html, "\">");
    html_escape_into(&c->html, shown, strlen(shown));
    buf_str(&c->html, "</a>");
    c->needs_html = true;
    return k - i;
}

/* Writes a ```code``` region's content; multi-line content becomes a <pre> block. */
static void emit_code3(wa_conv *c, size_t from, size_t to)
{
    const char *t = c->t;
    if (memchr(t + from, '\n', to - from)) {
        if (t[from] == '\n') from++; /* "```\ncode\n```": the first line break is the fence's */
        buf_str(&c->html, "<pre><code>");
        html_escape_into(&c->html, t + from, to - from);
        buf_str(&c->html, "</code></pre>");
    } else {
        buf_str(&c->html, "<code>");
        html_escape_into(&c->html, t + from, to - from);
        buf_str(&c->html, "</code>");
    }
    c->needs_html = true;
}

static const char *tag_for(char mark, bool open)
{
    switch (mark) {
    case '*': return open ? "<strong>" : "</strong>";
    case '_': return open ? "<em>" : "</em>";
    default: return open ? "<del>" : "</del>";
    }
}

/* Writes the content [s, e) of one line (already marked) to body and html. */
static void emit_inline(wa_conv *c, size_t s, size_t e)
{
    const char *t = c->t;
    size_t run = s; /* start of text not yet written */
    size_t i = s;
    while (i < e) {
        uint8_t role = c->role[i];
        size_t used = 0;
        if (role == ROLE_TEXT && t[i] == '@') {
            wb_buf_append(&c->body, t + run, i - run);
            html_escape_into(&c->html, t + run, i - run);
            run = i;
            used = emit_mention(c, s, i, e);
            if (used) run = i + used;
        }
        if (used) {
            i += used;
            continue;
        }
        if (role == ROLE_TEXT) {
            i++;
            continue;
        }
        wb_buf_append(&c->body, t + run, i - run);
        html_escape_into(&c->html, t + run, i - run);
        if (role == ROLE_OPEN || role == ROLE_CLOSE) {
            wb_buf_u8(&c->body, (uint8_t)t[i]);
            buf_str(&c->html, tag_for(t[i], role == ROLE_OPEN));
            c->needs_html = true;
            i++;
        } else if (role == ROLE_CODE1_OPEN) {
            size_t j = next_role(c, i + 1, ROLE_CODE1_CLOSE);
            assert(j < e);
            wb_buf_append(&c->body, t + i, j + 1 - i);
            buf_str(&c->html, "<code>");
            html_escape_into(&c->html, t + i + 1, j - i - 1);
            buf_str(&c->html, "</code>");
            c->needs_html = true;
            i = j + 1;
        } else if (role == ROLE_CODE3_OPEN) {
            size_t j = next_role(c, i + 3, ROLE_CODE3_CLOSE);
            assert(j + 3 <= c->n);
            wb_buf_append(&c->body, t + i, j + 3 - i);
            emit_code3(c, i + 3, j);
            i = j + 3;
        } else {
            /* a stray closing role cannot happen: openers always skip past theirs */
            assert(false);
            i++;
        }
        run = i;
    }
    wb_buf_append(&c->body, t + run, e - run);
    html_escape_into(&c->html, t + run, e - run);
}

static void close_block(wa_conv *c, int kind)
{
    if (kind == LINE_QUOTE) buf_str(&c->html, "</blockquote>");
    if (kind == LINE_BULLET) buf_str(&c->html, "</ul>");
    if (kind == LINE_NUMBER) buf_str(&c->html, "</ol>");
}

int br_format_wa_to_mx(const char *text, const char *const *mentioned_jids, size_t n_mentioned,
                       const br_format_resolver *r, br_formatted *out)
{
    memset(out, 0, sizeof(*out));
    if (!text) return -1;
    wa_conv c = {.t = text,
                 .n = strlen(text),
                 .mentioned = mentioned_jids,
                 .n_mentioned = mentioned_jids ? n_mentioned : 0,
                 .r = r};
    c.role = calloc(c.n + 1, 1);
    if (!c.role) return -1;
    wb_buf_init(&c.body);
    wb_buf_init(&c.html);
    mark_code3(&c);

    int prev = LINE_NONE;    /* kind of the previous line */
    bool prev_empty = false; /* the previous line was an empty text line */
    size_t ls = 0;
    while (ls <= c.n) {
        /* the line: up to a line break outside ``` regions */
        size_t le = ls;
        while (le < c.n && text[le] != '\n') {
            if (c.role[le] == ROLE_CODE3_OPEN)
                le = next_role(&c, le + 3, ROLE_CODE3_CLOSE) + 3;
            else
                le++;
        }
        size_t cs;
        unsigned long num = 1;
        int kind = classify_line(&c, ls, le, &cs, &num);
        if (kind == LINE_TEXT || kind == LINE_QUOTE || kind == LINE_BULLET || kind == LINE_NUMBER)
            mark_inline(&c, cs, le);
        wb_buf_append(&c.body, text + ls, cs - ls); /* the line's prefix stays in the body */

        if (kind == LINE_TEXT) {
            if (prev != LINE_TEXT) close_block(&c, prev);
            if (prev == LINE_TEXT) buf_str(&c.html, "<br/>");
            emit_inline(&c, cs, le);
            prev_empty = cs == le;
        } else {
            /* a text run that ended with an empty line keeps it as a line break */
            if (prev == LINE_TEXT && prev_empty) buf_str(&c.html, "<br/>");
            if (kind != prev || kind == LINE_PRE) {
                close_block(&c, prev);
                if (kind == LINE_QUOTE) buf_str(&c.html, "<blockquote>");
                if (kind == LINE_BULLET) buf_str(&c.html, "<ul>");
                if (kind == LINE_NUMBER && num == 1) buf_str(&c.html, "<ol>");
                if (kind == LINE_NUMBER && num != 1) {
                    char start[40];
                    snprintf(start, sizeof(start), "<ol start=\"%lu\">", num);
                    buf_str(&c.html, start);
                }
            } else if (kind == LINE_QUOTE) {
                buf_str(&c.html, "<br/>");
            }
            if (kind == LINE_PRE) {
                size_t j = next_role(&c, ls + 3, ROLE_CODE3_CLOSE);
                wb_buf_append(&c.body, text + ls, le - ls);
                emit_code3(&c, ls + 3, j);
            } else if (kind == LINE_QUOTE) {
                emit_inline(&c, cs, le);
            } else {
                buf_str(&c.html, "<li>");
                emit_inline(&c, cs, le);
                buf_str(&c.html, "</li>");
            }
            c.needs_html = true;
        }
        prev = kind;
        if (le >= c.n) break;
        wb_buf_u8(&c.body, '\n');
        ls = le + 1;
    }
    close_block(&c, prev);
    free(c.role);

    out->body = finish_utf8(&c.body);
    if (c.needs_html)
        out->html = finish_utf8(&c.html);
    else
        wb_buf_free(&c.html);
    if (!out->body || (c.needs_html && !out->html)) {
        br_formatted_free(out);
        return -1;
    }
    return 0;
}

/* ---- Matrix -> WhatsApp: the writer --------------------------------------------------------- */

enum {
    K_NONE,
    K_FMT,      /* b strong i em s del strike: a marker pair */
    K_CODE,     /* code: `x` */
    K_PRE,      /* pre: ```\nx\n``` */
    K_QUOTE,    /* blockquote: "> " lines */
    K_UL,       /* ul: "- " items */
    K_OL,       /* ol: "1. " items */
    K_LI,       /* li */
    K_HEADING,  /* h1-h6: a bold line */
    K_LINK,     /* a */
    K_SUPPRESS, /* mx-reply: nothing inside is written */
    /* the rest are not kept on the stack */
    K_BLOCK1, /* div, table rows...: starts on a new line */
    K_BLOCK2, /* p: a paragraph, a blank line around it */
    K_BR,     /* br */
    K_HR,     /* hr */
    K_IMG,    /* img: its alt text */
    K_CELL,   /* td, th: a space between cells */
    K_RAW,    /* script, style: the content is dropped unparsed */
};

typedef struct tag_def {
    const char *name;
    uint8_t kind; /* K_* */
    char mark;    /* K_FMT: the WhatsApp marker */
} tag_def;

static const tag_def TAGS[] = {
    {"a", K_LINK, 0},
    {"b", K_FMT, '*'},
    {"strong", K_FMT, '*'},
    {"i", K_FMT, '_'},
    {"em", K_FMT, '_'},
    {"s", K_FMT, '~'},
    {"del", K_FMT, '~'},
    {"strike", K_FMT, '~'},
    {"code", K_CODE, '`'},
    {"pre", K_PRE, 0},
    {"blockquote", K_QUOTE, 0},
    {"ul", K_UL, 0},
    {"ol", K_OL, 0},
    {"li", K_LI, 0},
    {"h1", K_HEADING, '*'},
    {"h2", K_HEADING, '*'},
    {"h3", K_HEADING, '*'},
    {"h4", K_HEADING, '*'},
    {"h5", K_HEADING, '*'},
    {"h6", K_HEADING, '*'},
    {"mx-reply", K_SUPPRESS, 0},
    {"p", K_BLOCK2, 0},
    {"div", K_BLOCK1, 0},
    {"table", K_BLOCK1, 0},
    {"tr", K_BLOCK1, 0},
    {"thead", K_BLOCK1, 0},
    {"tbody", K_BLOCK1, 0},
    {"details", K_BLOCK1, 0},
    {"summary", K_BLOCK1, 0},
    {"dl", K_BLOCK1, 0},
    {"dt", K_BLOCK1, 0},
    {"dd", K_BLOCK1, 0},
    {"br", K_BR, 0},
    {"hr", K_HR, 0},
    {"img", K_IMG, 0},
    {"td", K_CELL, 0},
    {"th", K_CELL, 0},
    {"script", K_RAW, 0},
    {"style", K_RAW, 0},
};
#define N_TAGS (sizeof(TAGS) / sizeof(TAGS[0]))

/* An open element. */
typedef struct mx_el {
    uint8_t kind;     /* K_* (only the kinds before K_BLOCK1) */
    uint8_t tag;      /* index in TAGS, to match its end tag */
    uint8_t fmt;      /* FMT_*: what opening it did to the marker state */
    bool skip;        /* a resolved pill: its text is replaced by "@number" */
    bool li_done;     /* li: its marker has been written */
    char marker[24];  /* li: "- " or "12. " */
    long next_number; /* ol: the number of the next item */
    char *href;       /* a: the link target (malloc'd) when its text is collected */
} mx_el;

enum { FMT_NOTHING, FMT_COUNTED, FMT_SLOT };

/* An active WhatsApp marker, in opening order. */
typedef struct fmt_slot {
    char mark;    /* * _ ~ or ` */
    bool emitted; /* the opening marker is in the output (on the current line) */
    size_t pos;   /* offset just after the opening marker */
} fmt_slot;

typedef struct mx_writer {
    wb_buf out;       /* the WhatsApp text */
    bool any;         /* some content has been written */
    bool line_start;  /* nothing (not even the prefix) is on the current line yet */
    bool space;       /* a collapsed space is owed before the next content on this line */
    int trailing_nl;  /* line breaks written since the last content */
    int want_nl;      /* line breaks the next content must follow (block boundaries) */
    bool fresh;       /* a quote or list (item) just opened, nothing in it yet */
    fmt_slot fmt[4];  /* active markers, at most one per kind */
    int n_fmt;        /* entries in fmt */
    int depth_of[4];  /* open elements per marker kind (* _ ~ `) */
    int pre;          /* open <pre> elements */
    bool pre_first;   /* nothing of the <pre> content seen yet (a first \n is dropped) */
    int suppress;     /* open <mx-reply> elements: nothing is written */
    int skip;         /* open resolved pills: their text is not written */
    int link;         /* stack index of the <a> whose text is collected, -1 none */
    wb_buf link_text; /* that text, up to FMT_MAX_LINKTEXT bytes */
    mx_el stack[FMT_MAX_DEPTH];
    size_t depth; /* entries in stack */
    const br_format_resolver *r;
    char **mentions; /* JIDs, malloc'd */
    size_t n_mentions, cap_mentions;
    bool had_reply; /* an <mx-reply> was seen */
    bool failed;    /* an allocation failed */
} mx_writer;

static int mark_index(char mark)
{
    switch (mark) {
    case '*': return 0;
    case '_': return 1;
    case '~': return 2;
    default: return 3;
    }
}

static void w_prefix(mx_writer *w, bool blank_line)
{
    char p[FMT_MAX_PREFIX];
    size_t n = 0;
    for (size_t i = 0; i < w->depth; i++) {
        mx_el *el = &w->stack[i];
        if (el->kind == K_QUOTE) {
            if (n + 2 <= sizeof(p)) {
                p[n++] = '>';
                p[n++] = ' ';
            }
        } else if (el->kind == K_LI && !blank_line) {
            size_t len = strlen(el->marker);
            if (n + len <= sizeof(p)) {
                if (el->li_done)
                    memset(p + n, ' ', len);
                else
                    memcpy(p + n, el->marker, len);
                n += len;
            }
            el->li_done = true;
        }
    }
    if (blank_line)
        while (n > 0 && p[n - 1] == ' ')
            n--;
    wb_buf_append(&w->out, p, n);
}

/* Writes the closing marker of slot k. A `code` span that itself holds a backtick becomes a
 * ```code``` one. */
static void w_end_mark(mx_writer *w, int k)
{
    fmt_slot *f = &w->fmt[k];
    if (f->mark == '`' && !w->out.failed &&
        memchr(w->out.data + f->pos, '`', w->out.len - f->pos)) {
        buf_insert(&w->out, f->pos, "``", 2);
        buf_str(&w->out, "```");
        return;
    }
    wb_buf_u8(&w->out, (uint8_t)f->mark);
}

static void w_line_break(mx_writer *w)
{
    if (w->suppress || w->skip) return;
    if (!w->pre) {
        /* WhatsApp markers do not span lines: close them here, reopen on the next line */
        for (int k = w->n_fmt - 1; k >= 0; k--) {
            if (w->fmt[k].emitted) w_end_mark(w, k);
            w->fmt[k].emitted = false;
        }
    }
    if (w->line_start) w_prefix(w, true);
    wb_buf_u8(&w->out, '\n');
    w->line_start = true;
    w->space = false;
    w->trailing_nl++;
}

static void w_flush_breaks(mx_writer *w)
{
    if (w->any)
        while (w->trailing_nl < w->want_nl)
            w_line_break(w);
    w->want_nl = 0;
}

/* Content (never collapsible whitespace, except inside <pre>). */
static void w_content(mx_writer *w, const char *p, size_t n)
{
    if (w->suppress || w->skip || n == 0) return;
    if (w->link >= 0 && !w->link_text.failed) {
        if (w->space && w->link_text.len > 0) wb_buf_u8(&w->link_text, ' ');
        wb_buf_append(&w->link_text, p, n);
        if (w->link_text.len > FMT_MAX_LINKTEXT) w->link_text.failed = true;
    }
    w_flush_breaks(w);
    if (w->line_start) {
        w_prefix(w, false);
        w->line_start = false;
        w->space = false;
    }
    if (w->space) {
        wb_buf_u8(&w->out, ' ');
        w->space = false;
    }
    if (!w->pre) {
        for (int k = 0; k < w->n_fmt; k++) {
            if (w->fmt[k].emitted) continue;
            wb_buf_u8(&w->out, (uint8_t)w->fmt[k].mark);
            w->fmt[k].emitted = true;
            w->fmt[k].pos = w->out.len;
        }
    }
    wb_buf_append(&w->out, p, n);
    w->trailing_nl = 0;
    w->any = true;
    w->fresh = false;
}

static void w_space(mx_writer *w)
{
    if (w->suppress || w->skip) return;
    if (!w->line_start && w->trailing_nl == 0) w->space = true;
}

/* Text from the document: entities already decoded. */
static void w_text(mx_writer *w, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (w->pre) {
            bool first = w->pre_first;
            w->pre_first = false;
            if (p[i] == '\n') {
                if (!first) w_line_break(w);
                i++;
                continue;
            }
            if (p[i] == '\r') {
                i++;
                continue;
            }
            size_t j = i;
            while (j < n && p[j] != '\n' && p[j] != '\r')
                j++;
            w_content(w, p + i, j - i);
            i = j;
            continue;
        }
        if (is_space((unsigned char)p[i])) {
            w_space(w);
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !is_space((unsigned char)p[j]))
            j++;
        w_content(w, p + i, j - i);
        i = j;
    }
}

static void w_block(mx_writer *w, int n)
{
    if (w->suppress || w->skip) return;
    if (w->want_nl < n) w->want_nl = n;
}

/* A block element starts: its line breaks belong to the enclosing context, written now. */
static void w_block_open(mx_writer *w, int n)
{
    if (w->fresh) {
        /* <blockquote><p>x: the paragraph starts where the quote does */
        w->want_nl = 0;
        return;
    }
    w_block(w, n);
    if (!w->suppress && !w->skip) w_flush_breaks(w);
}

static void w_br(mx_writer *w)
{
    if (w->suppress || w->skip || !w->any) return;
    w_flush_breaks(w);
    w_line_break(w);
}

static void fmt_open(mx_writer *w, mx_el *el, char mark)
{
    el->fmt = FMT_NOTHING;
    int idx = mark_index(mark);
    if (w->pre || (mark != '`' && w->depth_of[3] > 0)) return; /* no markup inside code */
    w->depth_of[idx]++;
    el->fmt = FMT_COUNTED;
    if (w->depth_of[idx] > 1) return; /* <b><b>x</b></b> is *x* */
    assert(w->n_fmt < 4);
    w->fmt[w->n_fmt].mark = mark;
    w->fmt[w->n_fmt].emitted = false;
    w->fmt[w->n_fmt].pos = 0;
    w->n_fmt++;
    el->fmt = FMT_SLOT;
}

static void fmt_close(mx_writer *w, const mx_el *el, char mark)
{
    if (el->fmt == FMT_NOTHING) return;
    w->depth_of[mark_index(mark)]--;
    if (el->fmt != FMT_SLOT) return;
    for (int k = w->n_fmt - 1; k >= 0; k--) {
        if (w->fmt[k].mark != mark) continue;
        if (w->fmt[k].emitted) w_end_mark(w, k);
        memmove(&w->fmt[k], &w->fmt[k + 1], (size_t)(w->n_fmt - k - 1) * sizeof(fmt_slot));
        w->n_fmt--;
        return;
    }
}

static void add_mention(mx_writer *w, const char *jid)
{
    for (size_t i = 0; i < w->n_mentions; i++)
        if (strcmp(w->mentions[i], jid) == 0) return;
    if (w->n_mentions == w->cap_mentions) {
        size_t cap = w->cap_mentions ? w->cap_mentions * 2 : 4;
        char **m = realloc(w->mentions, cap * sizeof(*m));
        if (!m) {
            w->failed = true;
            return;
        }
        w->mentions = m;
        w->cap_mentions = cap;
    }
    char *copy = strdup(jid);
    if (!copy) {
        w->failed = true;
        return;
    }
    w->mentions[w->n_mentions++] = copy;
}

/* ---- Matrix -> WhatsApp: entities, links, elements ------------------------------------------ */

/* Decodes the character reference at s[0] == '&'. Returns the bytes consumed (0: not a valid
 * reference, the '&' is text) and its UTF-8 in out[0..*out_len). */
static size_t decode_entity(const char *s, size_t n, char out[4], size_t *out_len)
{
    assert(n > 0 && s[0] == '&');
    if (n >= 3 && s[1] == '#') {
        bool hex = s[2] == 'x' || s[2] == 'X';
        size_t i = hex ? 3 : 2, start = i;
        uint32_t v = 0;
        while (i < n && i - start < 8) {
            unsigned char c = (unsigned char)s[i];
            int d = is_digit(c)                                  ? c - '0'
                    : (hex && is_alpha(c) && to_lower(c) <= 'f') ? to_lower(c) - 'a' + 10
                                                                 : -1;
            if (d < 0) break;
            v = v * (hex ? 16 : 10) + (uint32_t)d;
            i++;
        }
        if (i == start || i >= n || s[i] != ';') return 0;
        if (v == 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
        *out_len = utf8_encode(v, out);
        return i + 1;
    }
    static const struct {
        const char *name;
        const char *utf8;
    } named[] = {{"amp;", "&"},   {"lt;", "<"},   {"gt;", ">"},
                 {"quot;", "\""}, {"apos;", "'"}, {"nbsp;", "\xC2\xA0"}};
    for (size_t k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
        size_t len = strlen(named[k].name);
        if (n - 1 >= len && memcmp(s + 1, named[k].name, len) == 0) {
            *out_len = strlen(named[k].utf8);
            memcpy(out, named[k].utf8, *out_len);
            return len + 1;
        }
    }
    return 0;
}

/* Decodes the entities of an attribute value into b (NUL-terminated). */
static void decode_attr(wb_buf *b, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] == '&') {
            char u[4];
            size_t ul = 0, used = decode_entity(s + i, n - i, u, &ul);
            if (used) {
                wb_buf_append(b, u, ul);
                i += used;
                continue;
            }
        }
        wb_buf_u8(b, (uint8_t)s[i++]);
    }
    wb_buf_u8(b, '\0');
}

static void percent_decode(char *s)
{
    static const char hexdig[] = "0123456789abcdef";
    char *o = s;
    for (const char *p = s; *p; p++) {
        const char *h1, *h2;
        if (p[0] == '%' && p[1] && p[2] && (h1 = strchr(hexdig, to_lower((unsigned char)p[1]))) &&
            (h2 = strchr(hexdig, to_lower((unsigned char)p[2])))) {
            *o++ = (char)(((h1 - hexdig) << 4) | (h2 - hexdig));
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

/* The Matrix user a link pills ("https://matrix.to/#/@u:s", "matrix:u/u:s"), into mxid. */
static bool pill_user(const char *href, char *mxid, size_t cap)
{
    size_t hl = strlen(href);
    const char *id = NULL;
    bool add_at = false;
    if (starts_with_ci(href, hl, "https://matrix.to/#/"))
        id = href + 20;
    else if (starts_with_ci(href, hl, "http://matrix.to/#/"))
        id = href + 19;
    else if (starts_with_ci(href, hl, "matrix:u/"))
        id = href + 9, add_at = true;
    if (!id) return false;
    size_t len = strcspn(id, "?");
    if (len == 0 || len + 2 > cap) return false;
    size_t o = 0;
    if (add_at) mxid[o++] = '@';
    memcpy(mxid + o, id, len);
    mxid[o + len] = '\0';
    percent_decode(mxid);
    return mxid[0] == '@' && mxid[1] != '\0';
}

static bool w_push(mx_writer *w, uint8_t kind, uint8_t tag, mx_el **out)
{
    if (w->depth == FMT_MAX_DEPTH) return false;
    mx_el *el = &w->stack[w->depth++];
    memset(el, 0, sizeof(*el));
    el->kind = kind;
    el->tag = tag;
    *out = el;
    return true;
}

static void link_open(mx_writer *w, mx_el *el, const char *href)
{
    if (w->suppress || w->skip || w->link >= 0) return; /* no links inside links */
    char mxid[FMT_MXID_CAP];
    if (pill_user(href, mxid, sizeof(mxid))) {
        char jid[FMT_JID_CAP] = "";
        if (w->r && w->r->mx_to_jid && w->r->mx_to_jid(w->r->ctx, mxid, jid, sizeof(jid))) {
            jid[sizeof(jid) - 1] = '\0';
            size_t ul = jid_user_len(jid);
            if (ul > 0) {
                char at[FMT_JID_CAP + 1];
                at[0] = '@';
                memcpy(at + 1, jid, ul);
                w_content(w, at, ul + 1);
                add_mention(w, jid);
                el->skip = true;
                w->skip++;
            }
        }
        return; /* unknown: the pill is its text */
    }
    if (!href[0] || href[0] == '#') return;
    el->href = strdup(href);
    if (!el->href) {
        w->failed = true;
        return;
    }
    w->link = (int)(el - w->stack);
    wb_buf_free(&w->link_text);
}

/* Is the link's text just its target written out? */
static bool link_text_is_href(const char *text, size_t n, const char *href)
{
    const char *schemes[] = {"", "mailto:", "tel:", "http://", "https://"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t sl = strlen(schemes[i]), hl = strlen(href);
        if (hl < sl || strncmp(href, schemes[i], sl) != 0) continue;
        const char *rest = href + sl;
        size_t rl = hl - sl;
        if (rl == n && memcmp(rest, text, n) == 0) return true;
        if (rl == n + 1 && rest[n] == '/' && memcmp(rest, text, n) == 0) return true;
    }
    return false;
}

static void link_close(mx_writer *w, mx_el *el)
{
    if (el->skip) w->skip--;
    if (!el->href) return;
    w->link = -1;
    const char *text = (const char *)w->link_text.data;
    size_t n = w->link_text.failed ? 0 : w->link_text.len;
    bool same = !w->link_text.failed && text && link_text_is_href(text, n, el->href);
    if (!same) {
        if (n > 0 || w->link_text.failed) {
            w_space(w);
            w_content(w, "(", 1);
            w_content(w, el->href, strlen(el->href));
            w_content(w, ")", 1);
        } else {
            w_content(w, el->href, strlen(el->href));
        }
    }
    wb_buf_free(&w->link_text);
    free(el->href);
    el->href = NULL;
}

/* Pops the top element, undoing what opening it did. */
static void w_pop(mx_writer *w)
{
    assert(w->depth > 0);
    mx_el el = w->stack[--w->depth];
    switch (el.kind) {
    case K_FMT: fmt_close(w, &el, TAGS[el.tag].mark); break;
    case K_CODE: fmt_close(w, &el, '`'); break;
    case K_HEADING:
        fmt_close(w, &el, '*');
        w_block(w, 2);
        break;
    case K_QUOTE:
    case K_UL:
    case K_OL:
    case K_LI: w_block(w, 1); break;
    case K_PRE:
        if (w->trailing_nl == 0) w_line_break(w);
        w_content(w, "```", 3);
        w->pre--;
        w_block(w, 1);
        break;
    case K_LINK: link_close(w, &el); break;
    case K_SUPPRESS: w->suppress--; break;
    default: break;
    }
}

typedef struct attr_view {
    const char *p; /* raw value inside the document, NULL when absent */
    size_t n;
} attr_view;

typedef struct start_attrs {
    attr_view href, start, alt;
} start_attrs;

static void handle_start(mx_writer *w, int tag, const start_attrs *a)
{
    const tag_def *d = &TAGS[tag];
    mx_el *el;
    switch (d->kind) {
    case K_BLOCK1: w_block_open(w, 1); return;
    case K_BLOCK2:
    case K_HR: w_block_open(w, 2); return;
    case K_BR: w_br(w); return;
    case K_CELL: w_space(w); return;
    case K_IMG:
        if (a->alt.p) {
            wb_buf b;
            wb_buf_init(&b);
            decode_attr(&b, a->alt.p, a->alt.n);
            if (!b.failed) w_text(w, (const char *)b.data, b.len - 1);
            wb_buf_free(&b);
        }
        return;
    case K_LI:
        /* an open <li> in the same list ends here */
        for (size_t i = w->depth; i > 0; i--) {
            uint8_t k = w->stack[i - 1].kind;
            if (k == K_UL || k == K_OL) break;
            if (k == K_LI) {
                while (w->depth >= i)
                    w_pop(w);
                break;
            }
        }
        break;
    default: break;
    }
    if (d->kind == K_QUOTE || d->kind == K_UL || d->kind == K_OL || d->kind == K_LI ||
        d->kind == K_PRE)
        w_block_open(w, 1);
    if (d->kind == K_HEADING) w_block_open(w, 2);
    if (!w_push(w, d->kind, (uint8_t)tag, &el)) return; /* too deep: the tag is dropped */
    switch (d->kind) {
    case K_FMT:
    case K_HEADING: fmt_open(w, el, d->mark); break;
    case K_CODE: fmt_open(w, el, '`'); break;
    case K_PRE:
        w->pre++;
        w->pre_first = true;
        w_content(w, "```", 3);
        w_line_break(w);
        break;
    case K_OL:
        el->next_number = 1;
        if (a->start.p) {
            wb_buf b;
            wb_buf_init(&b);
            decode_attr(&b, a->start.p, a->start.n);
            if (!b.failed) {
                long v = strtol((const char *)b.data, NULL, 10);
                el->next_number = v < 0 ? 0 : v > 999999999 ? 999999999 : v;
            }
            wb_buf_free(&b);
        }
        break;
    case K_LI: {
        mx_el *list = NULL;
        for (size_t i = w->depth - 1; i > 0 && !list; i--)
            if (w->stack[i - 1].kind == K_UL || w->stack[i - 1].kind == K_OL)
                list = &w->stack[i - 1];
        if (list && list->kind == K_OL) {
            snprintf(el->marker, sizeof(el->marker), "%ld. ", list->next_number);
            if (list->next_number < 999999999) list->next_number++;
        } else {
            memcpy(el->marker, "- ", 3);
        }
        break;
    }
    case K_LINK:
        if (a->href.p) {
            wb_buf b;
            wb_buf_init(&b);
            decode_attr(&b, a->href.p, a->href.n);
            if (!b.failed)
                link_open(w, el, (const char *)b.data);
            else
                w->failed = true;
            wb_buf_free(&b);
        }
        break;
    case K_SUPPRESS:
        w->suppress++;
        w->had_reply = true;
        break;
    default: break;
    }
    if (d->kind == K_QUOTE || d->kind == K_UL || d->kind == K_OL || d->kind == K_LI)
        w->fresh = !w->suppress && !w->skip;
}

static void handle_end(mx_writer *w, int tag)
{
    const tag_def *d = &TAGS[tag];
    switch (d->kind) {
    case K_BLOCK1: w_block(w, 1); return;
    case K_BLOCK2: w_block(w, 2); return;
    case K_CELL: w_space(w); return;
    default: break;
    }
    for (size_t i = w->depth; i > 0; i--) {
        if (w->stack[i - 1].tag != tag) continue;
        while (w->depth >= i)
            w_pop(w);
        return;
    }
}

/* Reads a tag name at h[i..n) into lower case; returns its end. name is "" when too long. */
static size_t read_tag_name(const char *h, size_t n, size_t i, char name[16])
{
    size_t k = 0;
    bool too_long = false;
    while (i < n && (is_alnum((unsigned char)h[i]) || h[i] == '-' || h[i] == '_' || h[i] == ':')) {
        if (k < 15)
            name[k++] = (char)to_lower((unsigned char)h[i]);
        else
            too_long = true;
        i++;
    }
    name[too_long ? 0 : k] = '\0';
    return i;
}

static int lookup_tag(const char *name)
{
    for (size_t i = 0; i < N_TAGS; i++)
        if (strcmp(TAGS[i].name, name) == 0) return (int)i;
    return -1;
}

static size_t find_str(const char *h, size_t n, size_t from, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = from; i + k <= n; i++)
        if (memcmp(h + i, needle, k) == 0) return i;
    return SIZE_MAX;
}

/* Index just past "</name" (any case) from i, or n. */
static size_t find_raw_end(const char *h, size_t n, size_t i, const char *name)
{
    size_t k = strlen(name);
    for (; i + 2 + k <= n; i++)
        if (h[i] == '<' && h[i + 1] == '/' && starts_with_ci(h + i + 2, n - i - 2, name)) return i;
    return n;
}

/* Parses the markup at h[i] == '<'; returns where the text continues. */
static size_t parse_markup(mx_writer *w, const char *h, size_t n, size_t i)
{
    assert(h[i] == '<');
    if (n - i >= 4 && memcmp(h + i, "<!--", 4) == 0) {
        size_t e = find_str(h, n, i + 4, "-->");
        return e == SIZE_MAX ? n : e + 3;
    }
    if (n - i >= 2 && (h[i + 1] == '!' || h[i + 1] == '?')) {
        const char *gt = memchr(h + i, '>', n - i);
        return gt ? (size_t)(gt - h) + 1 : n;
    }
    char name[16];
    if (n - i >= 3 && h[i + 1] == '/' && is_alpha((unsigned char)h[i + 2])) {
        size_t j = read_tag_name(h, n, i + 2, name);
        const char *gt = memchr(h + j, '>', n - j);
        if (!gt) return n; /* an unterminated end tag: dropped */
        int tag = lookup_tag(name);
        if (tag >= 0) handle_end(w, tag);
        return (size_t)(gt - h) + 1;
    }
    if (n - i < 2 || !is_alpha((unsigned char)h[i + 1])) {
        w_text(w, "<", 1); /* "a < b" */
        return i + 1;
    }
    size_t j = read_tag_name(h, n, i + 1, name);
    start_attrs a;
    memset(&a, 0, sizeof(a));
    for (;;) {
        while (j < n && (is_space((unsigned char)h[j]) || h[j] == '/'))
            j++;
        if (j >= n) return n; /* an unterminated start tag: dropped */
        if (h[j] == '>') {
            j++;
            break;
        }
        size_t ns = j;
        while (j < n && !is_space((unsigned char)h[j]) && h[j] != '=' && h[j] != '>' && h[j] != '/')
            j++;
        if (j == ns) j++; /* "<a =x>": a name of one odd byte, so the loop moves on */
        size_t name_len = j - ns;
        while (j < n && is_space((unsigned char)h[j]))
            j++;
        attr_view v = {NULL, 0};
        if (j < n && h[j] == '=') {
            j++;
            while (j < n && is_space((unsigned char)h[j]))
                j++;
            if (j < n && (h[j] == '"' || h[j] == '\'')) {
                const char *q = memchr(h + j + 1, h[j], n - j - 1);
                if (!q) return n;
                v.p = h + j + 1;
                v.n = (size_t)(q - v.p);
                j = (size_t)(q - h) + 1;
            } else {
                v.p = h + j;
                while (j < n && !is_space((unsigned char)h[j]) && h[j] != '>')
                    j++;
                v.n = (size_t)(h + j - v.p);
            }
        } else {
            v.p = h + j; /* a name alone: an empty value */
        }
        const char *an = h + ns;
        if (name_len == 4 && starts_with_ci(an, 4, "href")) a.href = v;
        if (name_len == 5 && starts_with_ci(an, 5, "start")) a.start = v;
        if (name_len == 3 && starts_with_ci(an, 3, "alt")) a.alt = v;
    }
    int tag = lookup_tag(name);
    if (tag < 0) return j;
    if (TAGS[tag].kind == K_RAW) return find_raw_end(h, n, j, TAGS[tag].name);
    handle_start(w, tag, &a);
    return j;
}

static void mx_parse_html(mx_writer *w, const char *h, size_t n)
{
    size_t i = 0;
    while (i < n && !w->failed) {
        if (h[i] == '<') {
            i = parse_markup(w, h, n, i);
            continue;
        }
        if (h[i] == '&') {
            char u[4];
            size_t ul = 0, used = decode_entity(h + i, n - i, u, &ul);
            if (used) {
                w_text(w, u, ul);
                i += used;
            } else {
                w_text(w, "&", 1);
                i++;
            }
            continue;
        }
        size_t j = i;
        while (j < n && h[j] != '<' && h[j] != '&')
            j++;
        w_text(w, h + i, j - i);
        i = j;
    }
    while (w->depth > 0)
        w_pop(w);
}

/* ---- Matrix -> WhatsApp: entry points ------------------------------------------------------- */

/* s as WhatsApp text: valid UTF-8, no run of more than two line breaks, no leading line breaks,
 * no trailing whitespace. */
static char *normalize_wa(const char *s, size_t n)
{
    wb_buf b;
    wb_buf_init(&b);
    if (!utf8_append(&b, s, n)) {
        wb_buf_free(&b);
        return NULL;
    }
    size_t o = 0, nl = 0;
    for (size_t i = 0; i < b.len; i++) {
        uint8_t c = b.data[i];
        if (c == '\n') {
            if (o == 0 || ++nl > 2) continue;
        } else {
            nl = 0;
        }
        b.data[o++] = c;
    }
    while (o > 0 && is_space(b.data[o - 1]))
        o--;
    b.len = o;
    if (!wb_buf_u8(&b, '\0')) {
        wb_buf_free(&b);
        return NULL;
    }
    return (char *)wb_buf_steal(&b, NULL);
}

char *br_format_strip_reply_fallback(const char *body)
{
    if (!body) return NULL;
    const char *p = body;
    bool quoted = false;
    while (*p) {
        size_t len = strcspn(p, "\n");
        bool quote_line = p[0] == '>' && (len == 1 || p[1] == ' ');
        if (len == 0 && quoted) {
            const char *rest = p[len] ? p + len + 1 : p + len;
            return strdup(rest);
        }
        if (!quote_line) break;
        quoted = true;
        if (!p[len]) break;
        p += len + 1;
    }
    return strdup(body);
}

static int mx_plain(const char *body, bool strip, br_wa_text *out)
{
    char *stripped = strip ? br_format_strip_reply_fallback(body) : NULL;
    if (strip && !stripped) return -1;
    const char *s = stripped ? stripped : body;
    out->text = normalize_wa(s, strlen(s));
    free(stripped);
    return out->text ? 0 : -1;
}

int br_format_mx_to_wa_ex(const char *body, const char *html, bool strip_reply_fallback,
                          const br_format_resolver *r, br_wa_text *out)
{
    memset(out, 0, sizeof(*out));
    if (!body && !html) return -1;
    if (!html) return mx_plain(body, strip_reply_fallback, out);

    mx_writer *w = calloc(1, sizeof(*w));
    if (!w) return -1;
    wb_buf_init(&w->out);
    wb_buf_init(&w->link_text);
    w->line_start = true;
    w->link = -1;
    w->r = r;
    mx_parse_html(w, html, strlen(html));
    int rc = 0;
    if (w->failed || w->out.failed) {
        rc = -1;
    } else {
        out->text = normalize_wa((const char *)w->out.data, w->out.len);
        if (!out->text) rc = -1;
    }
    if (rc == 0 && !out->text[0] && body && body[0]) {
        /* nothing in the HTML (only a reply, an image...): the body says it better */
        free(out->text);
        out->text = NULL;
        rc = mx_plain(body, strip_reply_fallback || w->had_reply, out);
    } else if (rc == 0) {
        out->mentions = w->mentions;
        out->n_mentions = w->n_mentions;
        w->mentions = NULL;
        w->n_mentions = 0;
    }
    for (size_t i = 0; i < w->n_mentions; i++)
        free(w->mentions[i]);
    free(w->mentions);
    for (size_t i = 0; i < w->depth; i++)
        free(w->stack[i].href);
    wb_buf_free(&w->out);
    wb_buf_free(&w->link_text);
    free(w);
    if (rc != 0) br_wa_text_free(out);
    return rc;
}

int br_format_mx_to_wa(const char *body, const char *html, const br_format_resolver *r,
                       br_wa_text *out)
{
    return br_format_mx_to_wa_ex(body, html, false, r, out);
}
