/*
 * tests/fuzz/fuzz_binary_decode.c - libFuzzer target for the binary node decoder and frame
 * unpacker.
 *
 * Input: a frame payload (flag byte + node, zlib when flag bit 0x02 is set). Whatever the bytes,
 * the decoder must return cleanly (no crash, no read past the end: ASan/UBSan watch). When it
 * accepts a frame, re-encoding must succeed and be a fixed point: encode(decode(encode(decode(x))))
 * equals encode(decode(x)) (the first round may normalise strings, e.g. "1:0@lid" read raw becomes
 * "1@lid").
 */
#include "wa/binary/node.h"

#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_INFLATED (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wb_arena a;
    wb_arena_init(&a, 0);
    wa_node *n;
    wa_errinfo ei;
    int rc = wa_binary_unpack(data, size, FUZZ_MAX_INFLATED, &a, &n, &ei);
    if (rc != WA_OK) {
        /* every failure must name itself */
        if (ei.code != rc || ei.message[0] == '\0') abort();
        wb_arena_free(&a);
        return 0;
    }
    wb_buf first, second;
    wb_buf_init(&first);
    wb_buf_init(&second);
    if (wa_binary_encode(n, &first) != WA_OK) abort();
    wa_node *again;
    if (wa_binary_decode(first.data, first.len, &a, &again, &ei) != WA_OK) abort();
    wa_node *third;
    if (wa_binary_encode(again, &second) != WA_OK) abort();
    if (wa_binary_decode(second.data, second.len, &a, &third, &ei) != WA_OK) abort();
    if (!wa_node_equal(again, third)) abort();
    if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0) {
        /* not yet a fixed point after one round: it must be after two */
        wb_buf third_enc;
        wb_buf_init(&third_enc);
        if (wa_binary_encode(third, &third_enc) != WA_OK) abort();
        if (third_enc.len != second.len || memcmp(third_enc.data, second.data, second.len) != 0)
            abort();
        wb_buf_free(&third_enc);
    }
    wb_buf print;
    wb_buf_init(&print);
    if (wa_node_print(n, 16, &print) != WA_OK) abort();
    wb_buf_free(&print);
    wb_buf_free(&first);
    wb_buf_free(&second);
    wb_arena_free(&a);
    return 0;
}
