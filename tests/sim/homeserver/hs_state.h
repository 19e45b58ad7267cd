/*
 * tests/sim/homeserver/hs_state.h - the in-memory homeserver of hs-sim, shared by its files.
 *
 * One global state (users, tokens, rooms with their event lists, media, faults, the appservice
 * queue) behind one mutex, and one condition variable broadcast on every change (long-polling
 * /sync and the appservice pusher wait on it). Fine for a test simulator; not a homeserver.
 */
#ifndef HS_STATE_H
#define HS_STATE_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "matrix/registration.h"

#define HS_MAX_REGEX 8
#define HS_MAX_AS    4 /* registration files */

typedef struct hs_user {
    char *id;             /* "@local:server" */
    char *password;       /* NULL for appservice users */
    char *displayname;    /* NULL = unset */
    char *avatar_url;     /* NULL = unset */
    char *presence;       /* "online" / "offline" / "unavailable"; NULL = never set */
    char *status_msg;     /* NULL = none */
    int64_t presence_pos; /* stream position of the last presence change */
    int64_t presence_ts;  /* ms since epoch of the last change */
} hs_user;

typedef struct hs_token {
    char *token;     /* access token (secret) */
    char *user_id;   /* whose */
    char *device_id; /* device */
} hs_token;

typedef struct hs_event {
    cJSON *ev;       /* the event as clients see it (owned) */
    int64_t pos;     /* global stream position */
    char *txn_token; /* access token (or "as|user") that sent it with a txnId, NULL otherwise */
    char *txn_id;    /* that txnId */
    int64_t rx_us;   /* monotonic us at which it was stored (a client's send arrived) */
    int64_t push_us; /* monotonic us at which the appservice push carrying it began; 0 = not yet */
} hs_event;

typedef struct hs_typing {
    char *user_id;
    int64_t until_ms; /* monotonic ms at which the typing notice expires */
} hs_typing;

typedef struct hs_receipt {
    char *user_id;
    char *event_id;
    char *type; /* "m.read", ... */
    int64_t ts; /* ms since epoch */
} hs_receipt;

/* A room's current state: the latest event of each (type, state key), as an index of events. */
typedef struct hs_state_ent {
    char *type, *key; /* owned copies */
    size_t idx;       /* into the room's events */
} hs_state_ent;

typedef struct hs_room {
    char *id;                        /* "!hex:server" */
    hs_event *events;                /* in order; positions increase */
    size_t n_events, cap_events;     /* used / allocated */
    hs_state_ent *state;             /* current state (a short list: looked up linearly) */
    size_t n_state, cap_state;       /* used / allocated */
    size_t *members;                 /* indexes of every m.room.member event, in order */
    size_t n_members, cap_members;   /* used / allocated */
    hs_typing *typing;               /* who typed; expired entries stay with until_ms past */
    size_t n_typing, cap_typing;     /* used / allocated */
    int64_t typing_pos;              /* stream position of the last typing change */
    hs_receipt *receipts;            /* the latest receipt per (user, type) */
    size_t n_receipts, cap_receipts; /* used / allocated */
    int64_t receipt_pos;             /* stream position of the last receipt change */
    uint32_t *txn_slots;             /* events sent with a txnId, by hash (index + 1; 0 empty) */
    size_t txn_cap, n_txn;           /* slots (a power of 2) / used */
} hs_room;

typedef struct hs_media {
    char *id;           /* media id (random hex) */
    char *content_type; /* as uploaded */
    char *filename;     /* ?filename= of the upload, NULL when none */
    uint8_t *data;      /* the bytes (malloc'd, at least 1 byte allocated) */
    size_t len;         /* bytes in data */
} hs_media;

typedef struct hs_alias {
    char *alias;   /* "#name:server" */
    char *room_id; /* what it points to */
} hs_alias;

/* A fault rule: the next `count` requests whose path contains `match` (and method, if set). */
typedef struct hs_fault {
    char *match;         /* substring of the path; "" = any (admin paths never match) */
    char *method;        /* NULL = any */
    int count;           /* remaining applications */
    int status;          /* answer this status (0 = none: only delay / close) */
    char *errcode;       /* errcode for the answer (NULL = M_UNKNOWN or M_LIMIT_EXCEEDED) */
    long retry_after_ms; /* for 429, in the body */
    long retry_after_s;  /* for 429, as a Retry-After header (seconds); 0 = none */
    long delay_ms;       /* sleep this long */
    bool after;          /* delay after processing (the request takes effect) instead of before */
    bool close;          /* drop the connection without an answer */
} hs_fault;

/* One registered appservice. */
typedef struct hs_appservice {
    mx_registration reg;               /* its file (tokens are secrets: never printed) */
    regex_t user_re[HS_MAX_REGEX];     /* compiled user namespaces */
    bool user_exclusive[HS_MAX_REGEX]; /* the namespace of the same index is exclusive */
    size_t n_user_re;                  /* entries used in user_re */
    char *bot_id;                      /* "@sender_localpart:server" */
    bool pushes;                       /* it has a url (not null, not ""): transactions go there */
    cJSON *queue;                      /* array of events waiting to be pushed */
    cJSON *eph;                        /* array of ephemeral events waiting */
    uint64_t txn;                      /* last txnId used */
    pthread_t pusher;                  /* its pusher thread (when pushes) */
} hs_appservice;

typedef struct hs_state {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast on every change of pos (the /sync waiters), quit, restart */
    pthread_cond_t push_cv; /* broadcast on every event offered to an appservice, and quit */
    pthread_cond_t main_cv; /* signalled on refuse and quit (the main thread) */
    char *server_name;
    int64_t pos;      /* global stream position, increments on every change */
    uint64_t counter; /* id generator */
    uint64_t epoch;   /* increments when the HTTP daemon is restarted (wakes long polls) */
    bool restarting;  /* the daemon is being stopped for a refuse: long polls answer at once, or
                         stopping it would wait for them (clients poll up to 30 s) */
    bool quit;        /* SIGTERM / SIGINT seen */
    bool verbose;     /* log each request's method, path (no query) and status to stderr */
    long refuse_ms;   /* pending refuse request for the main thread (0 = none) */
    bool auth_media;  /* serve /_matrix/client/v1/media (default true) */

    bool no_prev_content; /* --no-prev-content: state events without unsigned.prev_content */

    /* growing arrays: n_* entries used, cap_* allocated */
    hs_user *users; /* registered accounts */
    size_t n_users, cap_users;
    hs_token *tokens; /* access tokens ("" once logged out) */
    size_t n_tokens, cap_tokens;
    hs_room *rooms; /* every room */
    size_t n_rooms, cap_rooms;
    hs_media *media; /* uploaded files */
    size_t n_media, cap_media;
    hs_alias *aliases; /* room aliases */
    size_t n_aliases, cap_aliases;
    hs_fault *faults; /* fault rules; the first matching one applies */
    size_t n_faults, cap_faults;

    /* appservices, in the order their registration files were given (like Synapse's
       app_service_config_files) */
    hs_appservice as[HS_MAX_AS];
    size_t n_as;              /* entries used in as */
    bool legacy_push;         /* push to {url}/transactions/{id}?access_token= */
    long push_backoff_ms;     /* first retry delay of a failed push */
    long push_backoff_max_ms; /* cap of the doubling delay */

    /* statistics */
    uint64_t requests, faults_applied, push_attempts, push_ok, push_events;
    uint64_t send_repeats; /* sends answered from their txnId (a client's retry) */
} hs_state;

extern hs_state G;

/* Small helpers used by the files of hs-sim. */
int64_t hs_now_ms(void);  /* wall clock, ms since epoch */
int64_t hs_mono_ms(void); /* monotonic ms */
int64_t hs_mono_us(void); /* monotonic us (CLOCK_MONOTONIC: comparable across processes) */
/* Notes that the appservice push of ev (a room event) begins now (bench timing). */
void hs_event_pushed(const cJSON *ev, int64_t us);
void hs_sleep_ms(long ms);
char *hs_strf(const char *f, ...) __attribute__((format(printf, 1, 2)));
void hs_random_hex(char *out, size_t nbytes); /* 2*nbytes hex + NUL */
#define HS_GROW(arr, n, cap)                                                                       \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            size_t nc_ = (cap) ? (cap)*2 : 16;                                                     \
            void *p_ = realloc((arr), nc_ * sizeof *(arr));                                        \
            if (!p_) abort();                                                                      \
            (arr) = p_;                                                                            \
            (cap) = nc_;                                                                           \
        }                                                                                          \
    } while (0)

/* Appservices. An appservice is interested in a user when the user is its bot or matches one of
 * its user namespaces (exclusive or not): then its as_token may masquerade as the user. */
bool hs_as_interested_user(const hs_appservice *as, const char *user_id);
/* Some appservice's exclusive namespace holds user_id (others may not register it). */
bool hs_as_user_exclusive(const char *user_id);
/* The appservice whose as_token is token, NULL if none. */
hs_appservice *hs_as_by_token(const char *token);
/* Queues ev (duplicated) for every appservice with a url interested in it (its sender or
 * state_key is in its namespaces, or one of its namespaced users is joined to r). Lock held. */
void hs_as_offer_event(hs_room *r, const cJSON *ev);
/* The latest state event (type, key) of r, or NULL; its index in r->events in *idx (may be NULL).
 */
const cJSON *hs_state_get(const hs_room *r, const char *type, const char *key, size_t *idx);
void hs_as_offer_ephemeral(hs_room *r, const cJSON *edu); /* r NULL = presence (always offered) */
void *hs_as_pusher(void *arg);                            /* arg: the hs_appservice */
/* Events waiting in every queue (lock held). */
size_t hs_as_queued(void);
/* POST {url}/_matrix/app/v1/ping of as; called without the lock. Returns HTTP status or 0 on
 * failure. */
long hs_as_ping(const hs_appservice *as, const char *txn_id, long *duration_ms);

#endif
