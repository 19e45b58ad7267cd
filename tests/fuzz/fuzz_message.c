/*
 * tests/fuzz/fuzz_message.c - libFuzzer target for the Message protobuf parser (wa_message_parse),
 * which reads whatever a peer encrypted for us.
 *
 * Whatever the bytes, parsing must return cleanly (no crash, no read past the end, no leak:
 * ASan/UBSan/LSan watch), leave an empty wa_msg on failure, and on success give a consistent
 * result (a text for TEXT and EDIT, nothing else claims a text). What parses and can be encoded
 * again must survive the round trip: encode(parse(x)) parses to the same kind, text, target,
 * reaction, mentions, reply and sender key.
 */
#include "wa/message.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const wa_msg *a, const wa_msg *b)
{
    if (a->kind != b->kind || !same_str(a->text, b->text) ||
        strcmp(a->reaction, b->reaction) != 0 || strcmp(a->target.id, b->target.id) != 0 ||
        strcmp(a->target.remote_jid, b->target.remote_jid) != 0 ||
        strcmp(a->target.participant, b->target.participant) != 0 ||
        a->target.from_me != b->target.from_me || a->n_mentions != b->n_mentions ||
        strcmp(a->reply_id, b->reply_id) != 0 || a->skdm_len != b->skdm_len ||
        (a->skdm_len && memcmp(a->skdm, b->skdm, a->skdm_len) != 0) ||
        strcmp(a->skdm_group, b->skdm_group) != 0)
        abort();
    for (size_t i = 0; i < a->n_mentions; i++)
        if (strcmp(a->mentions[i], b->mentions[i]) != 0) abort();
    if (a->reply_id[0] &&
        (strcmp(a->reply_sender, b->reply_sender) != 0 || !same_str(a->reply_text, b->reply_text)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wa_msg m;
    int rc = wa_message_parse(data, size, &m);
    if (rc != WA_OK) {
        if (rc != WA_ERR_PROTO && rc != WA_ERR_NOMEM) abort();
        if (m.text || m.mentions || m.n_mentions || m.reply_text || m.skdm || m.kind) abort();
        return 0;
    }
    bool texty = m.kind == WA_MSG_TEXT || m.kind == WA_MSG_EDIT;
    if (texty != (m.text != NULL)) abort();
    if ((m.kind == WA_MSG_UNSUPPORTED) != (m.unsupported[0] != '\0')) abort();
    /* what we understood, we can say again: the same way */
    wb_buf b;
    wb_buf_init(&b);
    if (wa_message_encode(&m, &b) == WA_OK) {
        wa_msg again;
        if (wa_message_parse(b.data, b.len, &again) != WA_OK) abort();
        m.dest_jid[0] = '\0'; /* not encoded */
        check_same(&m, &again);
        wa_msg_free(&again);
    }
    wb_buf_free(&b);
    wa_msg_free(&m);
    return 0;
}
