/*
 * wa/recv.c - durable decryption of <message> stanzas, pairwise and sender-key parts
 * (wa/recv.h).
 */
#include "wa/recv.h"

#include "wa/message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int wa_signal_address(const wa_jid *jid, char *name, size_t cap, uint32_t *device)
{
    int domain = wa_jid_ad_domain(jid);
    if (domain < 0) return WA_ERR_BAD_JID;
    int n = domain ? snprintf(name, cap, "%s_%d", jid->user, domain)
                   : snprintf(name, cap, "%s", jid->user);
    if (n < 0 || (size_t)n >= cap) return WA_ERR_BAD_JID;
    *device = jid->device;
    return WA_OK;
}

static void copy_attr(const wa_node *n, const char *key, char *dst, size_t cap)
{
    const char *v = wa_node_attr(n, key);
    snprintf(dst, cap, "%s", v ? v : "");
}

void wa_received_free(wa_received *r)
{
    for (size_t i = 0; i < r->nparts; i++) {
        if (r->parts[i].plaintext.data)
            wa_wipe(r->parts[i].plaintext.data, r->parts[i].plaintext.len);
        wb_buf_free(&r->parts[i].plaintext);
    }
    r->nparts = 0;
}

/* A freshly decrypted pairwise plaintext of a group message may carry the sender's key: process
 * it for (the stanza's chat, the sending device), never for the groupId inside (a peer must not
 * plant keys in another group). A Message with nothing else in it is skdm_only: its plaintext is
 * dropped and it is not buffered. */
static void take_skdm(wa_senderkey *sk, const wa_received *r, const char *name, uint32_t device,
                      wa_received_part *part)
{
    const uint8_t *skdm;
    size_t skdm_len;
    if (wa_senderkey_find(part->plaintext.data, part->plaintext.len, NULL, NULL, &skdm,
                          &skdm_len) != WA_OK)
        return;
    int rc = wa_senderkey_process(sk, r->chat, name, device, skdm, skdm_len);
    wa_msg m;
    if (wa_message_parse(part->plaintext.data, part->plaintext.len, &m) != WA_OK) return;
    part->skdm_only = m.kind == WA_MSG_NONE;
    wa_msg_free(&m);
    if (!part->skdm_only) return;
    wa_wipe(part->plaintext.data, part->plaintext.len);
    part->plaintext.len = 0;
    part->error = rc;
}

/* One part inside the open transaction. */
static int read_part(wa_signal *sig, wa_senderkey *sk, wa_store *st, const wa_received *r,
                     const char *name, uint32_t device, const wa_node *enc, int64_t now_ms,
                     wa_received_part *part)
{
    wa_sha256(enc->data, enc->data_len, part->hash);
    int64_t ts = 0;
    int rc = st->event_buffer_load(st->ctx, part->hash, &part->plaintext, &ts);
    if (rc == WA_STORE_OK) {
        part->from_buffer = true;
        return WA_OK;
    }
    if (rc != WA_STORE_NOT_FOUND) return WA_ERR_STATE;
    part->plaintext.len = 0;
    if (part->skmsg)
        rc = wa_senderkey_decrypt(sk, r->chat, name, device, enc->data, enc->data_len,
                                  &part->plaintext);
    else
        rc = wa_signal_decrypt(sig, name, device, part->type, enc->data, enc->data_len,
                               &part->plaintext);
    if (rc != WA_OK) {
        part->error = rc;
        return WA_OK; /* the part is unreadable, the stanza is not: retry receipt later */
    }
    if (!part->skmsg && sk && strcmp(r->sender, r->chat) != 0) {
        take_skdm(sk, r, name, device, part);
        if (part->skdm_only) return WA_OK;
    }
    wa_buffered_event ev = {.chat_jid = r->chat,
                            .sender_jid = r->sender,
                            .message_id = r->id,
                            .plaintext = part->plaintext.data,
                            .plaintext_len = part->plaintext.len,
                            .server_ts_ms = (int64_t)r->t * 1000,
                            .inserted_ms = now_ms};
    memcpy(ev.ciphertext_hash, part->hash, 32);
    return st->event_buffer_save(st->ctx, &ev) == WA_STORE_OK ? WA_OK : WA_ERR_STATE;
}

int wa_recv_decrypt(wa_signal *sig, wa_store *st, const wa_node *msg, int64_t now_ms,
                    wa_received *out)
{
    return wa_recv_decrypt_sk(sig, NULL, st, msg, now_ms, out);
}

int wa_recv_decrypt_sk(wa_signal *sig, wa_senderkey *sk, wa_store *st, const wa_node *msg,
                       int64_t now_ms, wa_received *out)
{
    memset(out, 0, sizeof(*out));
    copy_attr(msg, "id", out->id, sizeof(out->id));
    copy_attr(msg, "from", out->chat, sizeof(out->chat));
    copy_attr(msg, "type", out->type, sizeof(out->type));
    copy_attr(msg, "notify", out->notify, sizeof(out->notify));
    const char *t = wa_node_attr(msg, "t");
    out->t = t ? strtoull(t, NULL, 10) : 0;
    const char *participant = wa_node_attr(msg, "participant");
    snprintf(out->sender, sizeof(out->sender), "%s", participant ? participant : out->chat);
    wa_jid sender;
    char name[WA_JID_STR_MAX];
    uint32_t device;
    if (!out->id[0] || wa_jid_parse_cstr(out->sender, &sender) != WA_OK ||
        wa_signal_address(&sender, name, sizeof(name), &device) != WA_OK)
        return WA_ERR_INVALID;
    if (st->begin(st->ctx) != WA_STORE_OK) return WA_ERR_STATE;
    int rc = WA_OK;
    /* pass 0: the pairwise parts (they may carry the sender key); pass 1: the skmsg */
    for (int pass = 0; pass < (sk && participant ? 2 : 1) && rc == WA_OK; pass++) {
        for (size_t i = 0; msg->kind == WA_CONTENT_LIST && i < msg->nchildren; i++) {
            const wa_node *enc = msg->children[i];
            const char *type = wa_node_attr(enc, "type");
            if (strcmp(enc->tag, "enc") != 0 || !type || enc->kind != WA_CONTENT_BYTES) continue;
            bool skmsg = strcmp(type, "skmsg") == 0;
            if (pass == 0 && strcmp(type, "pkmsg") != 0 && strcmp(type, "msg") != 0) continue;
            if (pass == 1 && !skmsg) continue;
            if (out->nparts == WA_RECV_MAX_PARTS) break;
            wa_received_part *part = &out->parts[out->nparts++];
            wb_buf_init(&part->plaintext);
            part->skmsg = skmsg;
            part->type = strcmp(type, "pkmsg") == 0 ? WA_SIGNAL_PKMSG : WA_SIGNAL_MSG;
            rc = read_part(sig, sk, st, out, name, device, enc, now_ms, part);
            if (rc != WA_OK) break;
        }
    }
    if (rc == WA_OK && st->commit(st->ctx) != WA_STORE_OK) rc = WA_ERR_STATE;
    if (rc != WA_OK) {
        st->rollback(st->ctx);
        wa_received_free(out);
    }
    return rc;
}

static wa_node *answer(wb_arena *a, const char *tag, const wa_node *msg)
{
    wa_node *n = wa_node_new(a, tag);
    const char *id = wa_node_attr(msg, "id"), *from = wa_node_attr(msg, "from");
    const char *participant = wa_node_attr(msg, "participant");
    wa_node_set_attr(a, n, "id", id ? id : "");
    wa_node_set_attr(a, n, "to", from ? from : WA_SERVER_PN);
    if (participant) wa_node_set_attr(a, n, "participant", participant);
    return n;
}

wa_node *wa_recv_receipt(wb_arena *a, const wa_node *msg)
{
    return answer(a, "receipt", msg);
}

void wa_receipt_add_ids(wb_arena *a, wa_node *receipt, const char *const *ids, size_t n)
{
    if (n < 2) return;
    wa_node *list = wa_node_new(a, "list");
    for (size_t i = 1; i < n; i++) {
        wa_node *item = wa_node_new(a, "item");
        wa_node_set_attr(a, item, "id", ids[i]);
        wa_node_add_child(a, list, item);
    }
    wa_node_add_child(a, receipt, list);
}

wa_node *wa_recv_ack(wb_arena *a, const wa_node *msg)
{
    wa_node *n = answer(a, "ack", msg);
    wa_node_set_attr(a, n, "class", "message");
    return n;
}
