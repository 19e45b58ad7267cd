/*
 * util/base64.h - Base64 (RFC 4648, standard alphabet with padding) encoding and strict decoding.
 */
#ifndef WB_UTIL_BASE64_H
#define WB_UTIL_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes needed for the encoding of n bytes, with its NUL. */
#define WB_BASE64_LEN(n) (((n) + 2) / 3 * 4 + 1)
/* Writes the encoding and a NUL; returns its length. url selects '-' '_' and no padding. */
size_t wb_base64_encode(const uint8_t *p, size_t n, char *out, bool url);
/* Decodes s[0..len) (either alphabet, padding optional); false on any other character or when
 * out_cap is too small. */
bool wb_base64_decode(const char *s, size_t len, uint8_t *out, size_t out_cap, size_t *out_len);

#endif
