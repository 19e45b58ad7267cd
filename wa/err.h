/*
 * wa/err.h - the one error enum of the WhatsApp engine, and wa_strerror to name each code.
 *
 * Functions of wa/ return WA_OK (0) or a negative wa_err. Where a caller needs to know more than
 * the code (which byte of a frame was bad, which tag), the function also fills a wa_errinfo.
 */
#ifndef WA_ERR_H
#define WA_ERR_H

#include <stddef.h>

typedef enum wa_err {
    WA_OK = 0,
    WA_ERR_NOMEM = -1,        /* an allocation failed */
    WA_ERR_INVALID = -2,      /* the caller passed something unusable (a node without tag, ...) */
    WA_ERR_TRUNCATED = -3,    /* the input ended before a declared length or field */
    WA_ERR_BAD_TAG = -4,      /* a tag byte that is not valid where it stands */
    WA_ERR_BAD_TOKEN = -5,    /* a dictionary index with no token */
    WA_ERR_BAD_PACKED = -6,   /* a nibble or hex digit outside its alphabet */
    WA_ERR_TOO_DEEP = -7,     /* nodes nested deeper than WA_BINARY_MAX_DEPTH */
    WA_ERR_TOO_LARGE = -8,    /* a length or count beyond a fixed limit or beyond the input */
    WA_ERR_TRAILING = -9,     /* bytes left after a complete node */
    WA_ERR_INFLATE = -10,     /* zlib could not inflate a compressed frame */
    WA_ERR_BAD_JID = -11,     /* a string that is not a JID where one is required */
    WA_ERR_UNSUPPORTED = -12, /* a valid value this code does not handle (e.g. an unknown flag) */
    WA_ERR_AUTH = -13,        /* an authentication tag, MAC or signature did not verify */
    WA_ERR_CRYPTO = -14,      /* a cryptographic library call failed */
    WA_ERR_STATE = -15,       /* the call does not fit the object's current state */
    WA_ERR_CERT = -16,        /* the server's certificate chain was rejected */
    WA_ERR_PROTO = -17,       /* a protobuf message could not be decoded or encoded */
    WA_ERR_TIMEOUT = -18,     /* the peer did not answer in time */
} wa_err;

/* A static English name for the code; never NULL. */
const char *wa_strerror(int err);

/* Detail about an error: where in the input and what was found. */
typedef struct wa_errinfo {
    int code;          /* the wa_err returned */
    size_t offset;     /* byte offset into the input where the problem was seen */
    char message[160]; /* human-readable, e.g. "unknown string tag 0xf2 at offset 17" */
} wa_errinfo;

#endif
