/*
 * matrix/event.h - the events of an appservice transaction, parsed out of its JSON body.
 *
 * A homeserver pushes `{"events": [...], "ephemeral": [...]}` (ephemeral also under the unstable
 * key `de.sorunome.msc2409.ephemeral`). mx_event_batch_parse checks the body (UTF-8, one JSON
 * object, `events` an array) and turns it into a flat array of mx_event in arrival order: the
 * timeline events first, then the ephemeral ones. Each event keeps its whole JSON (the body's own
 * bytes) so a store can write it as is, plus the few fields a dispatcher routes on. A body of the
 * wrong shape is rejected as a whole (the homeserver gets 400); a single unusable element (not an
 * object, or without a string `type`) is skipped and counted, so one odd event cannot stall the
 * stream.
 */
#ifndef MX_EVENT_H
#define MX_EVENT_H

#include <stdbool.h>
#include <stddef.h>

#include "util/arena.h"

/* Limits of one transaction body; bodies beyond them are rejected with MX_ERR_TOO_LARGE. */
#define MX_EVENT_MAX_PER_TXN 10000 /* timeline + ephemeral events in one transaction */

typedef enum mx_event_kind {
    MX_EVENT_TIMELINE = 0,  /* a room event (PDU) from `events` */
    MX_EVENT_EPHEMERAL = 1, /* an EDU from `ephemeral` (typing, receipt, presence) */
} mx_event_kind;

/* One event; every string lives in the batch's arena and is NUL-terminated. */
typedef struct mx_event {
    mx_event_kind kind;
    const char *type;      /* never NULL */
    const char *event_id;  /* NULL when absent (ephemeral events have none) */
    const char *room_id;   /* NULL when absent (presence) */
    const char *sender;    /* NULL when absent */
    const char *state_key; /* NULL unless a state event (the empty string is a valid key) */
    const char *json;      /* the whole event: its bytes exactly as in the body */
    size_t json_len;       /* bytes in json, without the NUL */
} mx_event;

/* Parsed transaction: owns its events and their strings (all in `arena`). */
typedef struct mx_event_batch {
    mx_event *events;  /* count entries, timeline events first, each group in body order */
    size_t count;      /* number of events kept */
    size_t n_timeline; /* how many of them are MX_EVENT_TIMELINE */
    size_t skipped;    /* elements dropped because they were not objects with a string type */
    wb_arena arena;    /* backing memory */
} mx_event_batch;

/* Detail about a rejected body, for logs and for the `error` text of the 400 answer. */
typedef struct mx_parse_error {
    int code;          /* the mx_err returned */
    char message[128]; /* e.g. "`events` is not an array"; never contains body bytes */
} mx_parse_error;

/* Parses `len` bytes of a transaction body (need not be NUL-terminated). On MX_OK *out must be
 * released with mx_event_batch_free; on error nothing is left to free and *err (if not NULL) says
 * why: MX_ERR_NOT_JSON (not UTF-8 or not JSON), MX_ERR_BAD_JSON (not an object, `events` missing
 * or not an array, `ephemeral` not an array), MX_ERR_TOO_LARGE (more than MX_EVENT_MAX_PER_TXN
 * events, or nesting deeper than 256), MX_ERR_NOMEM. Strict RFC 8259: no trailing commas, no
 * leading zeros, no raw control characters in strings, surrogate escapes must pair. */
int mx_event_batch_parse(const char *body, size_t len, mx_event_batch *out, mx_parse_error *err);
void mx_event_batch_free(mx_event_batch *b);

/* True when the n bytes are well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool mx_utf8_valid(const char *s, size_t n);

#endif
