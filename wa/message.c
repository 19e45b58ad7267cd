/*
 * wa/message.c - minimal Message protobuf writing and reading (wa/message.h), over wb_buf/wb_cur.
 */
#include "wa/message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_varint(wb_buf *out, uint64_t v)
{
    while (v >= 0x80) {
        wb_buf_u8(out, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    wb_buf_u8(out, (uint8_t)v);
}

/* A length-delimited field (wire type 2). */
static void put_bytes(wb_buf *out, unsigned field, const void *p, size_t len)
{
    put_varint(out, (uint64_t)field << 3 | 2);
    put_varint(out, len);
    wb_buf_append(out, p, len);
}

int wa_message_text(const char *text, size_t len, wb_buf *out)
{
    put_bytes(out, 1, text, len);
    return out->failed ? WA_ERR_NOMEM : WA_OK;
}

int wa_message_device_sent(const char *destination_jid, const uint8_t *inner, size_t inner_len,
                           wb_buf *out)
{
    wb_buf dsm;
    wb_buf_init(&dsm);
    put_bytes(&dsm, 1, destination_jid, strlen(destination_jid));
    put_bytes(&dsm, 2, inner, inner_len);
    put_bytes(out, 31, dsm.data, dsm.len);
    int rc = dsm.failed || out->failed ? WA_ERR_NOMEM : WA_OK;
    wb_buf_free(&dsm);
    return rc;
}

static bool get_varint(wb_cur *c, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        if (!wb_cur_u8(c, &b)) return false;
        r |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* Finds length-delimited field `field` in p[0..len); WA_ERR_UNSUPPORTED when absent. */
static int find_field(const uint8_t *p, size_t len, unsigned field, const uint8_t **out,
                      size_t *out_len)
{
    wb_cur c;
    wb_cur_init(&c, p, len);
    while (wb_cur_left(&c)) {
        uint64_t key, n;
        const uint8_t *skip;
        if (!get_varint(&c, &key)) return WA_ERR_PROTO;
        switch (key & 7) {
        case 0:
            if (!get_varint(&c, &n)) return WA_ERR_PROTO;
            break;
        case 1:
            if (!wb_cur_skip(&c, 8)) return WA_ERR_PROTO;
            break;
        case 5:
            if (!wb_cur_skip(&c, 4)) return WA_ERR_PROTO;
            break;
        case 2:
            if (!get_varint(&c, &n) || n > wb_cur_left(&c) || !wb_cur_bytes(&c, n, &skip))
                return WA_ERR_PROTO;
            if ((key >> 3) == field) {
                *out = skip;
                *out_len = n;
                return WA_OK;
            }
            break;
        default: return WA_ERR_PROTO;
        }
    }
    return WA_ERR_UNSUPPORTED;
}

int wa_message_get_text(const uint8_t *p, size_t len, const uint8_t **text, size_t *text_len,
                        const uint8_t **dest, size_t *dest_len)
{
    const uint8_t *dsm;
    size_t dsm_len;
    int rc = find_field(p, len, 31, &dsm, &dsm_len);
    if (rc == WA_OK) {
        const uint8_t *d = NULL, *inner;
        size_t dl = 0, il;
        find_field(dsm, dsm_len, 1, &d, &dl);
        if (dest) {
            *dest = d;
            *dest_len = dl;
        }
        rc = find_field(dsm, dsm_len, 2, &inner, &il);
        return rc == WA_OK ? wa_message_get_text(inner, il, text, text_len, NULL, NULL) : rc;
    }
    if (rc == WA_ERR_PROTO) return rc;
    rc = find_field(p, len, 1, text, text_len);
    if (rc != WA_ERR_UNSUPPORTED) return rc;
    const uint8_t *ext;
    size_t ext_len;
    rc = find_field(p, len, 6, &ext, &ext_len);
    return rc == WA_OK ? find_field(ext, ext_len, 1, text, text_len) : rc;
}

/* --- the parsed form --- */

enum {
    F_CONVERSATION = 1,
    F_SKDM = 2,
    F_EXTENDED_TEXT = 6,
    F_PROTOCOL = 12,
    F_FAST_RATCHET_SKDM = 15,
    F_DEVICE_SENT = 31,
    F_MESSAGE_CONTEXT_INFO = 35,
    F_EPHEMERAL = 40,
    F_REACTION = 46,
    F_DOCUMENT_WITH_CAPTION = 53,
    F_EDITED = 58,
    F_GROUP_MENTIONED = 62,
    F_LOTTIE_STICKER = 74,
};
enum { EXT_TEXT = 1, EXT_CONTEXT_INFO = 17 };
enum { CTX_STANZA_ID = 1, CTX_PARTICIPANT = 2, CTX_QUOTED = 3, CTX_MENTIONED = 15 };
enum { KEY_REMOTE_JID = 1, KEY_FROM_ME = 2, KEY_ID = 3, KEY_PARTICIPANT = 4 };
enum { PROTO_KEY = 1, PROTO_TYPE = 2, PROTO_EDITED = 14, PROTO_TIMESTAMP = 15 };
enum { PROTO_REVOKE = 0, PROTO_MESSAGE_EDIT = 14 };
enum { REACT_KEY = 1, REACT_TEXT = 2, REACT_TIMESTAMP = 4 };
enum { FUTURE_PROOF_MESSAGE = 1 };
enum { DSM_DESTINATION = 1, DSM_MESSAGE = 2 };
enum { SKDM_GROUP = 1, SKDM_BYTES = 2 };

/* Message's fields by number (WAProto.proto), for the notice about what we cannot show. */
static const struct {
    uint16_t num;
    const char *name;
} MESSAGE_FIELDS[] = {
    {3, "imageMessage"},
    {4, "contactMessage"},
    {5, "locationMessage"},
    {7, "documentMessage"},
    {8, "audioMessage"},
    {9, "videoMessage"},
    {10, "call"},
    {11, "chat"},
    {13, "contactsArrayMessage"},
    {14, "highlyStructuredMessage"},
    {16, "sendPaymentMessage"},
    {18, "liveLocationMessage"},
    {22, "requestPaymentMessage"},
    {23, "declinePaymentRequestMessage"},
    {24, "cancelPaymentRequestMessage"},
    {25, "templateMessage"},
    {26, "stickerMessage"},
    {28, "groupInviteMessage"},
    {29, "templateButtonReplyMessage"},
    {30, "productMessage"},
    {36, "listMessage"},
    {37, "viewOnceMessage"},
    {38, "orderMessage"},
    {39, "listResponseMessage"},
    {41, "invoiceMessage"},
    {42, "buttonsMessage"},
    {43, "buttonsResponseMessage"},
    {44, "paymentInviteMessage"},
    {45, "interactiveMessage"},
    {47, "stickerSyncRmrMessage"},
    {48, "interactiveResponseMessage"},
    {49, "pollCreationMessage"},
    {50, "pollUpdateMessage"},
    {51, "keepInChatMessage"},
    {54, "requestPhoneNumberMessage"},
    {55, "viewOnceMessageV2"},
    {56, "encReactionMessage"},
    {59, "viewOnceMessageV2Extension"},
    {60, "pollCreationMessageV2"},
    {61, "scheduledCallCreationMessage"},
    {63, "pinInChatMessage"},
    {64, "pollCreationMessageV3"},
    {65, "scheduledCallEditMessage"},
    {66, "ptvMessage"},
    {67, "botInvokeMessage"},
    {69, "callLogMesssage"},
    {70, "messageHistoryBundle"},
    {71, "encCommentMessage"},
    {72, "bcallMessage"},
    {75, "eventMessage"},
    {76, "encEventResponseMessage"},
    {77, "commentMessage"},
    {78, "newsletterAdminInviteMessage"},
    {80, "placeholderMessage"},
    {82, "secretEncryptedMessage"},
    {83, "albumMessage"},
    {85, "eventCoverImage"},
    {86, "stickerPackMessage"},
    {87, "statusMentionMessage"},
    {88, "pollResultSnapshotMessage"},
    {90, "pollCreationOptionImageMessage"},
    {91, "associatedChildMessage"},
    {92, "groupStatusMentionMessage"},
    {93, "pollCreationMessageV4"},
    {95, "statusAddYours"},
    {96, "groupStatusMessage"},
    {97, "richResponseMessage"},
    {98, "statusNotificationMessage"},
    {99, "limitSharingMessage"},
    {100, "botTaskMessage"},
    {101, "questionMessage"},
    {102, "messageHistoryNotice"},
    {103, "groupStatusMessageV2"},
    {104, "botForwardedMessage"},
    {105, "statusQuestionAnswerMessage"},
    {106, "questionReplyMessage"},
    {107, "questionResponseMessage"},
    {109, "statusQuotedMessage"},
    {110, "statusStickerInteractionMessage"},
    {111, "pollCreationMessageV5"},
    {113, "newsletterFollowerInviteMessageV2"},
    {114, "pollResultSnapshotMessageV3"},
};

const char *wa_msg_kind_name(wa_msg_kind k)
{
    static const char *const names[] = {"none",     "text",   "edit",
                                        "reaction", "revoke", "unsupported"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

void wa_msg_free(wa_msg *m)
{
    if (!m) return;
    free(m->text);
    for (size_t i = 0; i < m->n_mentions; i++)
        free(m->mentions[i]);
    free(m->mentions);
    free(m->reply_text);
    free(m->skdm);
    memset(m, 0, sizeof(*m));
}

/* One protobuf field: its number, wire type and value (a varint, or the bytes of a
 * length-delimited field; fixed-size values are skipped). */
typedef struct pb_field {
    uint32_t num;
    unsigned wire;
    uint64_t varint;
    wb_cur bytes;
} pb_field;

/* 1 with the next field in f, 0 at the end, WA_ERR_PROTO on bytes that are not protobuf. */
static int next_field(wb_cur *c, pb_field *f)
{
    if (!wb_cur_left(c)) return 0;
    uint64_t key, n;
    if (!get_varint(c, &key) || (key >> 3) == 0 || (key >> 3) > 0x1FFFFFFF) return WA_ERR_PROTO;
    f->num = (uint32_t)(key >> 3);
    f->wire = (unsigned)(key & 7);
    f->varint = 0;
    wb_cur_init(&f->bytes, NULL, 0);
    switch (f->wire) {
    case 0: return get_varint(c, &f->varint) ? 1 : WA_ERR_PROTO;
    case 1: return wb_cur_skip(c, 8) ? 1 : WA_ERR_PROTO;
    case 5: return wb_cur_skip(c, 4) ? 1 : WA_ERR_PROTO;
    case 2:
        if (!get_varint(c, &n) || n > wb_cur_left(c) || !wb_cur_sub(c, (size_t)n, &f->bytes))
            return WA_ERR_PROTO;
        return 1;
    default: return WA_ERR_PROTO; /* groups (3, 4) are not used by WhatsApp */
    }
}

/* Copies a string field into dst[cap], cut between UTF-8 characters and at a NUL. */
static void copy_field(char *dst, size_t cap, const wb_cur *v)
{
    size_t n = v->len;
    const void *nul = n ? memchr(v->data, 0, n) : NULL;
    if (nul) n = (size_t)((const uint8_t *)nul - v->data);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && (v->data[n] & 0xC0) == 0x80)
            n--;
    }
    if (n) memcpy(dst, v->data, n);
    dst[n] = '\0';
}

static char *dup_field(const wb_cur *v)
{
    char *s = malloc(v->len + 1);
    if (!s) return NULL;
    if (v->len) memcpy(s, v->data, v->len);
    s[v->len] = '\0';
    return s;
}

static int parse_message(wb_cur msg, int depth, wa_msg *out);

static int parse_key(wb_cur c, wa_msg_key *key)
{
    pb_field f;
    int rc;
    memset(key, 0, sizeof(*key));
    while ((rc = next_field(&c, &f)) == 1) {
        if (f.num == KEY_FROM_ME && f.wire == 0)
            key->from_me = f.varint != 0;
        else if (f.wire != 2)
            continue;
        else if (f.num == KEY_REMOTE_JID)
            copy_field(key->remote_jid, sizeof(key->remote_jid), &f.bytes);
        else if (f.num == KEY_ID)
            copy_field(key->id, sizeof(key->id), &f.bytes);
        else if (f.num == KEY_PARTICIPANT)
            copy_field(key->participant, sizeof(key->participant), &f.bytes);
    }
    return rc;
}

/* A nested Message parsed on its own (a quote, an edit's new content). */
static int parse_inner(const wb_cur *v, int depth, wa_msg *inner)
{
    memset(inner, 0, sizeof(*inner));
    int rc = parse_message(*v, depth, inner);
    if (rc != WA_OK) wa_msg_free(inner);
    return rc;
}

static int parse_context_info(wb_cur c, int depth, wa_msg *out)
{
    pb_field f;
    int rc;
    while ((rc = next_field(&c, &f)) == 1) {
        if (f.wire != 2) continue;
        if (f.num == CTX_STANZA_ID) {
            copy_field(out->reply_id, sizeof(out->reply_id), &f.bytes);
        } else if (f.num == CTX_PARTICIPANT) {
            copy_field(out->reply_sender, sizeof(out->reply_sender), &f.bytes);
        } else if (f.num == CTX_MENTIONED && out->n_mentions < WA_MSG_MAX_MENTIONS) {
            if ((out->n_mentions & (out->n_mentions - 1)) == 0) { /* 0, 1, 2, 4, ...: grow */
                size_t cap = out->n_mentions ? out->n_mentions * 2 : 1;
                char **grown = realloc(out->mentions, cap * sizeof(*grown));
                if (!grown) return WA_ERR_NOMEM;
                out->mentions = grown;
            }
            char *jid = malloc(WA_JID_STR_MAX);
            if (!jid) return WA_ERR_NOMEM;
            copy_field(jid, WA_JID_STR_MAX, &f.bytes);
            out->mentions[out->n_mentions++] = jid;
        } else if (f.num == CTX_QUOTED) {
            wa_msg quoted;
            rc = parse_inner(&f.bytes, depth + 1, &quoted);
            if (rc != WA_OK) return rc;
            if (quoted.text) {
                free(out->reply_text);
                out->reply_text = quoted.text;
                quoted.text = NULL;
            }
            wa_msg_free(&quoted);
        }
    }
    return rc;
}

/* A content field claims the message when nothing did before it (the first one wins). */
static bool claim(wa_msg *out, wa_msg_kind kind)
{
    if (out->kind != WA_MSG_NONE) return false;
    out->kind = kind;
    return true;
}

static int parse_extended_text(wb_cur c, int depth, wa_msg *out)
{
    if (!claim(out, WA_MSG_TEXT)) return WA_OK;
    pb_field f;
    int rc;
    while ((rc = next_field(&c, &f)) == 1) {
        if (f.wire != 2) continue;
        if (f.num == EXT_TEXT) {
            free(out->text);
            if (!(out->text = dup_field(&f.bytes))) return WA_ERR_NOMEM;
        } else if (f.num == EXT_CONTEXT_INFO) {
            rc = parse_context_info(f.bytes, depth, out);
            if (rc != WA_OK) return rc;
        }
    }
    if (rc == WA_OK && !out->text && !(out->text = dup_field(&(wb_cur){0}))) return WA_ERR_NOMEM;
    return rc;
}

/* protocolMessage: REVOKE and MESSAGE_EDIT are shown; other types (history sync, app state keys,
 * ephemeral settings...) are nothing to show. */
static int parse_protocol(wb_cur c, int depth, wa_msg *out)
{
    pb_field f;
    int rc;
    uint64_t type = PROTO_REVOKE; /* the proto2 default */
    bool has_key = false;
    wa_msg_key key;
    wa_msg edited = {0};
    int64_t ts = 0;
    while ((rc = next_field(&c, &f)) == 1) {
        if (f.num == PROTO_TYPE && f.wire == 0) {
            type = f.varint;
        } else if (f.num == PROTO_TIMESTAMP && f.wire == 0) {
            ts = (int64_t)f.varint;
        } else if (f.num == PROTO_KEY && f.wire == 2) {
            if ((rc = parse_key(f.bytes, &key)) != WA_OK) break;
            has_key = true;
        } else if (f.num == PROTO_EDITED && f.wire == 2) {
            wa_msg_free(&edited);
            if ((rc = parse_inner(&f.bytes, depth + 1, &edited)) != WA_OK) break;
        }
    }
    if (rc == WA_OK && has_key && (type == PROTO_REVOKE || type == PROTO_MESSAGE_EDIT) &&
        claim(out, type == PROTO_REVOKE ? WA_MSG_REVOKE : WA_MSG_EDIT)) {
        out->target = key;
        if (type == PROTO_MESSAGE_EDIT) {
            out->timestamp_ms = ts;
            out->text = edited.text ? edited.text : dup_field(&(wb_cur){0});
            edited.text = NULL;
            out->mentions = edited.mentions;
            out->n_mentions = edited.n_mentions;
            edited.mentions = NULL;
            edited.n_mentions = 0;
            if (!out->text) rc = WA_ERR_NOMEM;
        }
    }
    wa_msg_free(&edited);
    return rc;
}

static int parse_reaction(wb_cur c, wa_msg *out)
{
    if (!claim(out, WA_MSG_REACTION)) return WA_OK;
    pb_field f;
    int rc;
    while ((rc = next_field(&c, &f)) == 1) {
        if (f.num == REACT_KEY && f.wire == 2) {
            if ((rc = parse_key(f.bytes, &out->target)) != WA_OK) break;
        } else if (f.num == REACT_TEXT && f.wire == 2) {
            copy_field(out->reaction, sizeof(out->reaction), &f.bytes);
        } else if (f.num == REACT_TIMESTAMP && f.wire == 0) {
            out->timestamp_ms = (int64_t)f.varint;
        }
    }
    return rc;
}

static int parse_skdm(wb_cur c, wa_msg *out)
{
    pb_field f;
    int rc;
    while ((rc = next_field(&c, &f)) == 1) {
        if (f.wire != 2) continue;
        if (f.num == SKDM_GROUP) {
            copy_field(out->skdm_group, sizeof(out->skdm_group), &f.bytes);
        } else if (f.num == SKDM_BYTES) {
            free(out->skdm);
            out->skdm_len = 0;
            if (!(out->skdm = malloc(f.bytes.len ? f.bytes.len : 1))) return WA_ERR_NOMEM;
            if (f.bytes.len) memcpy(out->skdm, f.bytes.data, f.bytes.len);
            out->skdm_len = f.bytes.len;
        }
    }
    return rc;
}

/* Opens a wrapper's (FutureProofMessage's or deviceSentMessage's) inner Message into out. */
static int parse_wrapped(wb_cur c, int depth, unsigned inner_field, wa_msg *out, char *dest,
                         size_t dest_cap)
{
    pb_field f;
    int rc;
    while ((rc = next_field(&c, &f)) == 1) {
        if (f.wire != 2) continue;
        if (f.num == inner_field) {
            if ((rc = parse_message(f.bytes, depth + 1, out)) != WA_OK) break;
        } else if (dest && f.num == DSM_DESTINATION) {
            copy_field(dest, dest_cap, &f.bytes);
        }
    }
    return rc;
}

static void note_unsupported(wa_msg *out, uint32_t num)
{
    if (out->unsupported[0]) return;
    for (size_t i = 0; i < sizeof(MESSAGE_FIELDS) / sizeof(MESSAGE_FIELDS[0]); i++) {
        if (MESSAGE_FIELDS[i].num == num) {
            snprintf(out->unsupported, sizeof(out->unsupported), "%s", MESSAGE_FIELDS[i].name);
            return;
        }
    }
    snprintf(out->unsupported, sizeof(out->unsupported), "field %u", (unsigned)num);
}

static int parse_message(wb_cur msg, int depth, wa_msg *out)
{
    if (depth > WA_MSG_MAX_DEPTH) return WA_ERR_PROTO;
    pb_field f;
    int rc;
    while ((rc = next_field(&msg, &f)) == 1) {
        if (f.wire != 2) continue; /* no Message field is a scalar */
        rc = WA_OK;
        switch (f.num) {
        case F_CONVERSATION:
            if (claim(out, WA_MSG_TEXT) && !(out->text = dup_field(&f.bytes))) rc = WA_ERR_NOMEM;
            break;
        case F_SKDM: rc = parse_skdm(f.bytes, out); break;
        case F_EXTENDED_TEXT: rc = parse_extended_text(f.bytes, depth, out); break;
        case F_PROTOCOL: rc = parse_protocol(f.bytes, depth, out); break;
        case F_REACTION: rc = parse_reaction(f.bytes, out); break;
        case F_DEVICE_SENT:
            /* only the outermost message can be a copy for our own devices */
            if (depth == 0)
                rc = parse_wrapped(f.bytes, depth, DSM_MESSAGE, out, out->dest_jid,
                                   sizeof(out->dest_jid));
            break;
        case F_EPHEMERAL:
        case F_DOCUMENT_WITH_CAPTION:
        case F_EDITED:
        case F_GROUP_MENTIONED:
        case F_LOTTIE_STICKER:
            rc = parse_wrapped(f.bytes, depth, FUTURE_PROOF_MESSAGE, out, NULL, 0);
            break;
        case F_MESSAGE_CONTEXT_INFO:
        case F_FAST_RATCHET_SKDM: break; /* metadata, nothing to show */
        default: note_unsupported(out, f.num);
        }
        if (rc != WA_OK) return rc;
    }
    return rc;
}

int wa_message_parse(const uint8_t *p, size_t len, wa_msg *out)
{
    memset(out, 0, sizeof(*out));
    wb_cur c;
    wb_cur_init(&c, p, len);
    int rc = parse_message(c, 0, out);
    if (rc != WA_OK) {
        wa_msg_free(out);
        return rc;
    }
    if (!out->skdm) out->skdm_group[0] = '\0'; /* a group without a key is nothing */
    if (out->kind == WA_MSG_NONE && out->unsupported[0])
        out->kind = WA_MSG_UNSUPPORTED;
    else if (out->kind != WA_MSG_UNSUPPORTED)
        out->unsupported[0] = '\0';
    return WA_OK;
}

/* --- building --- */

static void put_varint_field(wb_buf *out, unsigned field, uint64_t v)
{
    put_varint(out, (uint64_t)field << 3);
    put_varint(out, v);
}

static void put_string(wb_buf *out, unsigned field, const char *s)
{
    put_bytes(out, field, s, strlen(s));
}

/* Puts sub (a finished nested message) as field `field` of out, and frees it. */
static void put_sub(wb_buf *out, unsigned field, wb_buf *sub)
{
    if (sub->failed) out->failed = true;
    put_bytes(out, field, sub->data, sub->len);
    wb_buf_free(sub);
}

static void put_key(wb_buf *out, unsigned field, const wa_msg_key *k)
{
    wb_buf key;
    wb_buf_init(&key);
    if (k->remote_jid[0]) put_string(&key, KEY_REMOTE_JID, k->remote_jid);
    put_varint_field(&key, KEY_FROM_ME, k->from_me);
    put_string(&key, KEY_ID, k->id);
    if (k->participant[0]) put_string(&key, KEY_PARTICIPANT, k->participant);
    put_sub(out, field, &key);
}

/* conversation, or extendedTextMessage {text, contextInfo} when there is more than text. */
static void put_text(wb_buf *out, const wa_msg *m)
{
    if (!m->n_mentions && !m->reply_id[0]) {
        put_string(out, F_CONVERSATION, m->text);
        return;
    }
    wb_buf ext, ctx;
    wb_buf_init(&ext);
    wb_buf_init(&ctx);
    put_string(&ext, EXT_TEXT, m->text);
    if (m->reply_id[0]) {
        put_string(&ctx, CTX_STANZA_ID, m->reply_id);
        if (m->reply_sender[0]) put_string(&ctx, CTX_PARTICIPANT, m->reply_sender);
        if (m->reply_text) {
            wb_buf quoted;
            wb_buf_init(&quoted);
            put_string(&quoted, F_CONVERSATION, m->reply_text);
            put_sub(&ctx, CTX_QUOTED, &quoted);
        }
    }
    for (size_t i = 0; i < m->n_mentions; i++)
        if (m->mentions[i]) put_string(&ctx, CTX_MENTIONED, m->mentions[i]);
    put_sub(&ext, EXT_CONTEXT_INFO, &ctx);
    put_sub(out, F_EXTENDED_TEXT, &ext);
}

int wa_message_encode(const wa_msg *m, wb_buf *out)
{
    bool needs_text = m->kind == WA_MSG_TEXT || m->kind == WA_MSG_EDIT;
    bool needs_target =
        m->kind == WA_MSG_EDIT || m->kind == WA_MSG_REACTION || m->kind == WA_MSG_REVOKE;
    if ((needs_text && !m->text) || (needs_target && !m->target.id[0]) ||
        (m->kind == WA_MSG_NONE && !m->skdm) || m->kind == WA_MSG_UNSUPPORTED ||
        (unsigned)m->kind > WA_MSG_UNSUPPORTED)
        return WA_ERR_INVALID;
    if (m->skdm) {
        wb_buf skdm;
        wb_buf_init(&skdm);
        if (m->skdm_group[0]) put_string(&skdm, SKDM_GROUP, m->skdm_group);
        put_bytes(&skdm, SKDM_BYTES, m->skdm, m->skdm_len);
        put_sub(out, F_SKDM, &skdm);
    }
    wb_buf a, b;
    wb_buf_init(&a);
    wb_buf_init(&b);
    switch (m->kind) {
    case WA_MSG_TEXT: put_text(out, m); break;
    case WA_MSG_EDIT:
        /* editedMessage {message {protocolMessage {key, type, editedMessage, timestampMs}}} */
        put_key(&a, PROTO_KEY, &m->target);
        put_varint_field(&a, PROTO_TYPE, PROTO_MESSAGE_EDIT);
        put_text(&b, m);
        put_sub(&a, PROTO_EDITED, &b);
        if (m->timestamp_ms > 0) put_varint_field(&a, PROTO_TIMESTAMP, (uint64_t)m->timestamp_ms);
        put_sub(&b, F_PROTOCOL, &a);
        put_sub(&a, FUTURE_PROOF_MESSAGE, &b);
        put_sub(out, F_EDITED, &a);
        break;
    case WA_MSG_REACTION:
        put_key(&a, REACT_KEY, &m->target);
        put_string(&a, REACT_TEXT, m->reaction);
        if (m->timestamp_ms > 0) put_varint_field(&a, REACT_TIMESTAMP, (uint64_t)m->timestamp_ms);
        put_sub(out, F_REACTION, &a);
        break;
    case WA_MSG_REVOKE:
        put_key(&a, PROTO_KEY, &m->target);
        put_varint_field(&a, PROTO_TYPE, PROTO_REVOKE);
        put_sub(out, F_PROTOCOL, &a);
        break;
    default: break;
    }
    wb_buf_free(&a);
    wb_buf_free(&b);
    return out->failed ? WA_ERR_NOMEM : WA_OK;
}
