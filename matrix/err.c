/*
 * matrix/err.c - names of the mx_err codes.
 */
#include "matrix/err.h"

const char *mx_strerror(int err)
{
    switch ((mx_err)err) {
    case MX_OK: return "no error";
    case MX_ERR_NOMEM: return "out of memory";
    case MX_ERR_INVALID: return "invalid argument";
    case MX_ERR_NOT_JSON: return "body is not JSON";
    case MX_ERR_BAD_JSON: return "JSON of the wrong shape";
    case MX_ERR_TOO_LARGE: return "too large";
    case MX_ERR_NETWORK: return "network error";
    case MX_ERR_TIMEOUT: return "timed out";
    case MX_ERR_HTTP: return "homeserver returned an error";
    case MX_ERR_RATE_LIMITED: return "rate limited";
    case MX_ERR_STORE: return "transaction store failed";
    case MX_ERR_IO: return "I/O error";
    case MX_ERR_UNEXPECTED: return "unexpected answer from homeserver";
    case MX_ERR_EXISTS: return "already exists";
    }
    return "unknown error";
}
