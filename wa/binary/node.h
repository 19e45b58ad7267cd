/*
 * wa/binary/node.h - WhatsApp's binary XML: the node tree, its encoder and decoder, and frames.
 *
 * Every stanza of the WhatsApp Web protocol is a node: a tag, string attributes, and optional
 * content that is either a list of child nodes, bytes, or a string. On the wire a node is a list of
 * strings with a compact encoding (dictionary tokens, packed digits, JIDs). A decrypted Noise frame
 * carries one flag byte (bit 0x02: zlib-compressed) and then one node.
 *
 * Ownership: every node, attribute and string of a tree lives in one wb_arena that the caller owns;
 * wb_arena_free releases the whole tree. Decoding never keeps a pointer into the input buffer.
 */
#ifndef WA_BINARY_NODE_H
#define WA_BINARY_NODE_H

#include "util/arena.h"
#include "util/bytes.h"
#include "wa/binary/jid.h"
#include "wa/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Tags of the binary format (dictionary version 3). 1..235 are single-byte tokens. */
enum {
    WA_TAG_LIST_EMPTY = 0,
    WA_TAG_DICTIONARY_0 = 236,
    WA_TAG_DICTIONARY_1 = 237,
    WA_TAG_DICTIONARY_2 = 238,
    WA_TAG_DICTIONARY_3 = 239,
    WA_TAG_INTEROP_JID = 245,
    WA_TAG_FB_JID = 246,
    WA_TAG_AD_JID = 247,
    WA_TAG_LIST_8 = 248,
    WA_TAG_LIST_16 = 249,
    WA_TAG_JID_PAIR = 250,
    WA_TAG_HEX_8 = 251,
    WA_TAG_BINARY_8 = 252,
    WA_TAG_BINARY_20 = 253,
    WA_TAG_BINARY_32 = 254,
    WA_TAG_NIBBLE_8 = 255,
};

#define WA_BINARY_PACKED_MAX 127         /* longest string sent packed (nibble or hex) */
#define WA_BINARY_MAX_DEPTH  64          /* deepest nesting the decoder accepts */
#define WA_BINARY_MAX_FRAME  (16u << 20) /* a frame's length field holds 3 bytes */
#define WA_FRAME_FLAG_ZLIB   0x02        /* frame flag bit: the node is zlib-deflated */

typedef enum wa_content_kind {
    WA_CONTENT_NONE = 0, /* no content (the node's list has an odd length) */
    WA_CONTENT_LIST,     /* child nodes, possibly none */
    WA_CONTENT_BYTES,    /* raw bytes (BINARY_8/20/32 on the wire) */
    WA_CONTENT_STRING,   /* a string: token, packed digits, JID (or raw, when we build it) */
} wa_content_kind;

typedef struct wa_attr {
    const char *key;   /* NUL-terminated */
    const char *value; /* NUL-terminated; may hold NUL bytes inside when decoded from raw bytes */
    size_t value_len;  /* bytes in value, without the terminating NUL */
} wa_attr;

typedef struct wa_node wa_node;
struct wa_node {
    const char *tag;      /* NUL-terminated, never empty */
    wa_attr *attrs;       /* in wire order; keys are unique when built with wa_node_set_attr */
    size_t nattrs;        /* used entries of attrs */
    size_t attrs_cap;     /* allocated entries of attrs */
    wa_content_kind kind; /* which of the fields below holds the content */
    wa_node **children;   /* WA_CONTENT_LIST: nchildren pointers */
    size_t nchildren;     /* WA_CONTENT_LIST: count */
    size_t children_cap;  /* WA_CONTENT_LIST: allocated pointers */
    const uint8_t *data;  /* WA_CONTENT_BYTES / STRING: content (NUL-terminated for STRING) */
    size_t data_len;      /* WA_CONTENT_BYTES / STRING: bytes, without the terminating NUL */
};

/* --- Building (all strings and bytes are copied into the arena; NULL/negative on no memory) --- */
wa_node *wa_node_new(wb_arena *a, const char *tag);
/* Sets key to value, replacing an existing value of the same key. */
int wa_node_set_attr(wb_arena *a, wa_node *n, const char *key, const char *value);
int wa_node_set_attr_len(wb_arena *a, wa_node *n, const char *key, const char *value, size_t len);
int wa_node_set_attr_jid(wb_arena *a, wa_node *n, const char *key, const wa_jid *jid);
/* Makes the content a (possibly empty) list and appends child, which must live in the same arena.
 */
int wa_node_add_child(wb_arena *a, wa_node *n, wa_node *child);
/* Makes the content an empty list (encoded as LIST_EMPTY, unlike no content at all). */
void wa_node_set_empty_list(wa_node *n);
int wa_node_set_bytes(wb_arena *a, wa_node *n, const void *data, size_t len);
int wa_node_set_string(wb_arena *a, wa_node *n, const char *s);

/* --- Reading --- */
/* The value of key, or NULL. */
const char *wa_node_attr(const wa_node *n, const char *key);
/* Parses the value of key as a JID: WA_OK, WA_ERR_BAD_JID, or WA_ERR_INVALID when it is absent. */
int wa_node_attr_jid(const wa_node *n, const char *key, wa_jid *out);
/* The first child with this tag, or NULL. */
wa_node *wa_node_child(const wa_node *n, const char *tag);
/* Deep equality: tag, attributes in order, content kind and content. */
bool wa_node_equal(const wa_node *a, const wa_node *b);

/* --- Encoding and decoding --- */
/* Appends the encoding of n (no flag byte) to out. WA_ERR_INVALID for an empty tag, a list or
 * string too long for the format; WA_ERR_NOMEM when out cannot grow. */
int wa_binary_encode(const wa_node *n, wb_buf *out);
/* Decodes exactly one node filling all of in[0..len). Errors: TRUNCATED, BAD_TAG, BAD_TOKEN,
 * BAD_PACKED, TOO_DEEP, TOO_LARGE, TRAILING, NOMEM; ei (may be NULL) says where and what. */
int wa_binary_decode(const uint8_t *in, size_t len, wb_arena *a, wa_node **out, wa_errinfo *ei);

/* A frame payload is the flag byte and the node. pack writes flag 0 (no compression). */
int wa_binary_pack(const wa_node *n, wb_buf *out);
/* Reads the flag byte, inflates when bit 0x02 is set (never past max_inflated bytes: a larger
 * result is WA_ERR_TOO_LARGE), then decodes. max_inflated 0 means WA_BINARY_MAX_FRAME. */
int wa_binary_unpack(const uint8_t *in, size_t len, size_t max_inflated, wb_arena *a, wa_node **out,
                     wa_errinfo *ei);

/* --- Logging --- */
/* Appends a readable XML-like rendering of n to out: attributes quoted and escaped, bytes shown as
 * hex (at most max_hex bytes, then the total length), children indented by two spaces per level.
 * Appends a NUL at the end (not counted in out->len). Returns WA_OK or WA_ERR_NOMEM. */
int wa_node_print(const wa_node *n, size_t max_hex, wb_buf *out);

#endif
