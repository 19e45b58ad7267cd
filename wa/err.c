/*
 * wa/err.c - names of the wa_err codes.
 */
#include "wa/err.h"

const char *wa_strerror(int err)
{
    switch ((wa_err)err) {
    case WA_OK: return "no error";
    case WA_ERR_NOMEM: return "out of memory";
    case WA_ERR_INVALID: return "invalid argument";
    case WA_ERR_TRUNCATED: return "input truncated";
    case WA_ERR_BAD_TAG: return "unexpected tag";
    case WA_ERR_BAD_TOKEN: return "unknown dictionary token";
    case WA_ERR_BAD_PACKED: return "invalid packed nibble or hex digit";
    case WA_ERR_TOO_DEEP: return "nodes nested too deeply";
    case WA_ERR_TOO_LARGE: return "length or count too large";
    case WA_ERR_TRAILING: return "trailing bytes after node";
    case WA_ERR_INFLATE: return "zlib inflate failed";
    case WA_ERR_BAD_JID: return "malformed JID";
    case WA_ERR_UNSUPPORTED: return "unsupported";
    case WA_ERR_AUTH: return "authentication failed (tag, MAC or signature)";
    case WA_ERR_CRYPTO: return "cryptographic library failure";
    case WA_ERR_STATE: return "not valid in the current state";
    case WA_ERR_CERT: return "server certificate chain rejected";
    case WA_ERR_PROTO: return "malformed protobuf message";
    case WA_ERR_TIMEOUT: return "timed out";
    }
    return "unknown error";
}
