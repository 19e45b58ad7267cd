/*
 * bridge/format.h - message text between WhatsApp markup and Matrix HTML.
 *
 * WhatsApp carries formatting inline in the text (*bold*, _italic_, ~strike~, ```mono```,
 * `code`, "> " quotes, "- " and "1. " lists) and mentions as "@<number>" plus the message's
 * contextInfo.mentionedJid list. Matrix carries a plain `body` and an HTML `formatted_body`
 * (org.matrix.custom.html) with pills (<a href="https://matrix.to/#/@user:server">). This module
 * converts both ways; it never touches the network or the database: mentions are resolved through
 * the caller's br_format_resolver. The conversion table is docs/formatting.md.
 *
 * Both directions accept any bytes (invalid UTF-8, broken HTML) and always produce valid UTF-8;
 * they fail (-1) only on allocation failure or a NULL text. Nothing recurses per tag or marker,
 * so deep nesting cannot exhaust the stack.
 */
#ifndef BR_FORMAT_H
#define BR_FORMAT_H

#include <stdbool.h>
#include <stddef.h>

/* Looks up mentions; either callback may be NULL (= nothing is known). Called synchronously from
 * the conversion functions only. Output strings must be NUL-terminated within their caps. */
typedef struct br_format_resolver {
    void *ctx; /* passed back to the callbacks */
    /* WhatsApp -> Matrix: a mentioned WhatsApp user (JID "15551234567@s.whatsapp.net" or
     * "123@lid") -> its Matrix user and display name (name may be left empty: the mxid is
     * shown); false = unknown (the mention stays "@15551234567" text). */
    bool (*jid_to_mx)(void *ctx, const char *jid, char *mxid, size_t mxid_cap, char *name,
                      size_t name_cap);
    /* Matrix -> WhatsApp: a pilled Matrix user -> the WhatsApp JID (a ghost, or a logged-in
     * user); false = not on WhatsApp (the pill becomes its plain text). */
    bool (*mx_to_jid)(void *ctx, const char *mxid, char *jid, size_t jid_cap);
} br_format_resolver;

/* A Matrix m.text content. Both strings malloc'd, owned by the struct (br_formatted_free). */
typedef struct br_formatted {
    char *body; /* plain text: the WhatsApp text with mentions replaced by names */
    char *html; /* formatted_body, NULL when the text has no formatting and no mentions */
} br_formatted;

/* A WhatsApp text message. Everything malloc'd, owned by the struct (br_wa_text_free). */
typedef struct br_wa_text {
    char *text;        /* the conversation text, WhatsApp markup */
    char **mentions;   /* JIDs for contextInfo.mentionedJid, no duplicates; NULL when none */
    size_t n_mentions; /* entries in mentions */
} br_wa_text;

/* WhatsApp text (+ the message's contextInfo.mentionedJid list, may be NULL when
 * n_mentioned is 0) -> Matrix. r may be NULL. Returns 0, or -1 (only on allocation failure or a
 * NULL text; out is then zeroed). */
int br_format_wa_to_mx(const char *text, const char *const *mentioned_jids, size_t n_mentioned,
                       const br_format_resolver *r, br_formatted *out);

/* Matrix body + optional formatted_body (html NULL = plain text) -> WhatsApp text and mentions.
 * An <mx-reply> in the HTML is always dropped. Never fails on bad HTML: it degrades to text.
 * When the HTML yields no text at all, the body is used instead. Returns 0, or -1 (allocation
 * failure, or both body and html NULL; out is then zeroed). */
int br_format_mx_to_wa(const char *body, const char *html, const br_format_resolver *r,
                       br_wa_text *out);

/* The same, and when strip_reply_fallback is set (the event is a reply: m.relates_to has
 * m.in_reply_to) a plain body loses its reply fallback (br_format_strip_reply_fallback). */
int br_format_mx_to_wa_ex(const char *body, const char *html, bool strip_reply_fallback,
                          const br_format_resolver *r, br_wa_text *out);

/* A copy of a Matrix plain body without its reply fallback: the leading lines that start with
 * "> " (or are just ">") up to and including the first empty line. A body that does not have
 * that shape is copied unchanged. Caller frees; NULL on allocation failure or NULL body. */
char *br_format_strip_reply_fallback(const char *body);

/* Free the strings and zero the struct; NULL and zeroed structs are fine. */
void br_formatted_free(br_formatted *f);
void br_wa_text_free(br_wa_text *t);

/* Escapes text for HTML (& < > " '). Caller frees; NULL on allocation failure or NULL s. */
char *br_html_escape(const char *s);

#endif
