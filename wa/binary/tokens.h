/*
 * wa/binary/tokens.h - the dictionary (version 3) of WhatsApp's binary node format.
 *
 * Frequent strings travel as one byte (single-byte tokens 1..235) or two (dictionary 0..3, then an
 * index). The tables live in tokens.c, generated from the pinned Baileys package by
 * tests/interop/gen_tokens.mjs; tests/interop/check_tokens.mjs compares the compiled tables with
 * it.
 */
#ifndef WA_BINARY_TOKENS_H
#define WA_BINARY_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#define WA_TOKENS_SINGLE_COUNT 236 /* index 0 is the empty string and never sent as a token */
#define WA_TOKENS_DICTS        4
#define WA_TOKENS_DICT_SIZE    256
#define WA_TOKENS_HASH_SIZE    4096
#define WA_TOKEN_SINGLE        255 /* wa_token_slot.dict for a single-byte token */

typedef struct wa_token_slot {
    const char *str; /* NULL for an empty slot */
    uint8_t len;     /* strlen(str) */
    uint8_t dict;    /* 0..3, or WA_TOKEN_SINGLE */
    uint8_t index;   /* index in the single table or in dictionary `dict` */
} wa_token_slot;

extern const char *const wa_tokens_single[WA_TOKENS_SINGLE_COUNT];
extern const char *const wa_tokens_double[WA_TOKENS_DICTS][WA_TOKENS_DICT_SIZE];
extern const wa_token_slot wa_tokens_hash[WA_TOKENS_HASH_SIZE];
extern const unsigned wa_tokens_hash_max_probe;

/* Finds the token for s[0..len); NULL when s is not in the dictionary (the empty string never is).
 */
const wa_token_slot *wa_token_lookup(const char *s, size_t len);

#endif
