/*
 * bridge/bridge.h - the wabridge daemon: everything `wabridge -c config.yaml` runs.
 *
 * br_bridge_start joins the parts (DESIGN.md "Threads"): the database (migrated at start), the
 * appservice endpoint (matrix/as_server; transactions land in the mx_inbox table), the homeserver
 * client, the WhatsApp transport (wa/net) with its engine workers (wa/worker; each login pinned to
 * one), and the portal workers (each with its own database connection and homeserver client). A
 * pump thread reads the Matrix inbox in order and hands each event to the serial queue of its
 * portal (or management room); the engine workers hand received WhatsApp messages to the same
 * queues. A queue entry leaves the inbox (mx_inbox row, or the engine's event buffer row) only
 * after it was bridged and the message mapping stored.
 *
 * br_bridge_stop drains: the endpoint stops taking transactions, queued work finishes, the engines
 * close their connections, leases are released.
 */
#ifndef BR_BRIDGE_H
#define BR_BRIDGE_H

#include "bridge/config.h"

#include <stdint.h>

typedef struct br_bridge br_bridge;

/* Counters (since start), for tests and the log. */
typedef struct br_stats {
    uint64_t mx_events;   /* Matrix events taken from the inbox */
    uint64_t mx_direct;   /* of them, handed on by the endpoint without the pump's read */
    uint64_t mx_bridged;  /* Matrix messages sent to WhatsApp */
    uint64_t wa_messages; /* WhatsApp messages received */
    uint64_t wa_bridged;  /* WhatsApp messages sent to Matrix */
    uint64_t commands;    /* management commands answered */
    uint64_t failures;    /* events that failed with a notice */
} br_stats;

/* cfg is borrowed and must outlive the bridge. 0, or -1 with err filled (and nothing running). */
int br_bridge_start(const br_config *cfg, br_bridge **out, char *err, size_t errcap);
/* Drains and stops; frees the bridge. */
void br_bridge_stop(br_bridge *b);
void br_bridge_stats(br_bridge *b, br_stats *out);

#endif
