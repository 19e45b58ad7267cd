/*
 * matrix/err.h - the one error enum of the Matrix layer, and mx_strerror to name each code.
 *
 * Functions of matrix/ return MX_OK (0) or a negative mx_err. Calls that talk to a homeserver also
 * fill an mx_error (see client.h) with the HTTP status and the homeserver's errcode and error text.
 */
#ifndef MX_ERR_H
#define MX_ERR_H

typedef enum mx_err {
    MX_OK = 0,
    MX_ERR_NOMEM = -1,        /* an allocation failed */
    MX_ERR_INVALID = -2,      /* the caller passed something unusable */
    MX_ERR_NOT_JSON = -3,     /* a body that is not JSON (or not UTF-8) */
    MX_ERR_BAD_JSON = -4,     /* JSON of the wrong shape (missing or mistyped field) */
    MX_ERR_TOO_LARGE = -5,    /* a body or count beyond a configured limit */
    MX_ERR_NETWORK = -6,      /* connection refused, reset, DNS, TLS: no HTTP answer */
    MX_ERR_TIMEOUT = -7,      /* no complete answer within the timeout */
    MX_ERR_HTTP = -8,         /* the homeserver answered with an error status (see mx_error) */
    MX_ERR_RATE_LIMITED = -9, /* 429 and the retry budget was spent */
    MX_ERR_STORE = -10,       /* the transaction store failed to commit */
    MX_ERR_IO = -11,          /* a file or socket operation failed (errno kept where useful) */
    MX_ERR_UNEXPECTED = -12,  /* the homeserver answered 2xx with something we cannot use */
    MX_ERR_EXISTS = -13,      /* the thing already exists (e.g. M_USER_IN_USE) */
} mx_err;

/* A static English name for the code; never NULL. */
const char *mx_strerror(int err);

#endif
