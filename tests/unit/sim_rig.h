/*
 * tests/unit/sim_rig.h - engines (wa/client) and wa-sim's logic (tests/sim/wa-server) wired
 * together in memory on a virtual clock, for the unit tests of the engine (test_client,
 * test_engine_kinds, test_engine_groups, test_engine_sessions).
 *
 * A rig is one simulated server and up to SIM_RIG_MAX_PEERS peers: engines with an in-memory
 * store, each paired with an account of the server. The rig plays the network (it moves bytes
 * between an engine and its server-side connection until nothing moves), the clock (it ticks the
 * engines at their deadlines) and the app: it keeps what each engine hands over (events,
 * messages, group results and updates) for the test to look at, and the account's phone scans the
 * QR code the engine shows (or the user types its pairing code).
 *
 * The rig checks what it does with check.h. check.h counts per file: a test adds the rig's counts
 * to its own with sim_rig_add_checks() before CHECK_DONE().
 */
#ifndef WB_TESTS_SIM_RIG_H
#define WB_TESTS_SIM_RIG_H

#include "sim.h"
#include "wa/client.h"

#include <stdbool.h>
#include <stdint.h>

#define SIM_RIG_MAX_PEERS  8
#define SIM_RIG_MAX_EVENTS 1024 /* per peer; later ones are not kept */
#define SIM_RIG_MAX_MSGS   64   /* per peer; later ones are taken and dropped */
#define SIM_RIG_MAX_GROUP  64   /* group results, and group updates, kept per peer */

/* A received message, parsed, with what its parts said. */
typedef struct sim_rig_msg {
    char id[128];
    char chat[WA_JID_STR_MAX];
    char sender[WA_JID_STR_MAX];
    char type[32]; /* the stanza's type */
    size_t nparts;
    bool skmsg[WA_RECV_MAX_PARTS];     /* part i was a sender key message */
    bool skdm_only[WA_RECV_MAX_PARTS]; /* part i carried only a sender key distribution */
    uint8_t hash[WA_RECV_MAX_PARTS][32];
    wa_msg m; /* freed by sim_rig_free */
} sim_rig_msg;

/* An engine and what it handed over. */
typedef struct sim_rig_peer {
    const char *phone; /* the account it pairs with; not owned */
    wa_store store;    /* in memory */
    wa_client *client; /* NULL until sim_rig_peer_client */
    sim_conn *conn;    /* its connection on the server side, when open */
    bool scan_qr;      /* the phone scans the next QR code shown (then false); true at first */
    int pair_code;     /* pairing by code: 1 = the user types the code shown, 2 = a wrong one */
    bool server_mute;  /* the server's bytes to it are lost */
    bool hold_groups;  /* group results and updates stay in the engine until sim_rig_take_groups */
    wa_event events[SIM_RIG_MAX_EVENTS];
    int nevents;
    sim_rig_msg msgs[SIM_RIG_MAX_MSGS];
    int nmsgs;
    wa_group_result results[SIM_RIG_MAX_GROUP];
    int nresults;
    wa_group_update updates[SIM_RIG_MAX_GROUP];
    int nupdates;
} sim_rig_peer;

typedef struct sim_rig {
    sim s;
    wa_crypto *crypto; /* the engines'; not owned, free it after sim_rig_free */
    int64_t now;       /* virtual monotonic clock, ms */
    uint64_t wall;     /* virtual unix seconds */
    bool wall_follows; /* wall moves on with the clock's ticks (else it stays) */
    int64_t hello_ms;  /* virtual ms a server hello timer takes to fire */
    sim_rig_peer *peers[SIM_RIG_MAX_PEERS]; /* in the order added; owned */
    int npeers;
    char group[WA_JID_STR_MAX]; /* the group a test works in, "" when none */
} sim_rig;

/* Starts the server's logic (sim_init with seed, the time fixed at 1800000000) with no accounts;
 * the clock at 1000 ms and 1800000000 s (which stays unless wall_follows is set). Returns
 * sim_init's 0 or -1. */
int sim_rig_init(sim_rig *r, const char *seed, wa_crypto *crypto);
/* Closes the connections and frees the peers (engines, stores, what they handed over), then the
 * server. */
void sim_rig_free(sim_rig *r);

/* A new peer for the account of phone, with an empty store and no engine yet. */
sim_rig_peer *sim_rig_peer_add(sim_rig *r, const char *phone);
/* Makes p's engine (on its store, not started) trusting trust_root (NULL: WhatsApp's real one). */
wa_client *sim_rig_peer_client(sim_rig *r, sim_rig_peer *p, const char *push_name,
                               const uint8_t *trust_root);
/* A new peer for phone, its engine started and paired (or logged in) within 2 s. */
sim_rig_peer *sim_rig_pair(sim_rig *r, const char *phone, const char *push_name);
/* Drops p's connection on the server side (the engine is not told). */
void sim_rig_close(sim_rig *r, sim_rig_peer *p);

/* Moves bytes and events between the engines and the server until nothing moves. */
void sim_rig_pump(sim_rig *r);
/* Runs the virtual clock forward by ms, ticking every engine at its deadline. */
void sim_rig_advance(sim_rig *r, int64_t ms);
/* Takes p's group results and updates from its engine (updates are acked as they are taken). */
void sim_rig_take_groups(sim_rig_peer *p);

/* p sends text (or m) to a chat, then 100 ms go by; returns the engine's answer, id set. */
int sim_rig_send_text(sim_rig *r, sim_rig_peer *p, const char *to, const char *text, char *id);
int sim_rig_send(sim_rig *r, sim_rig_peer *p, const char *to, const wa_msg *m, char *id);

/* p's events of type t whose text starts with text_prefix (NULL: any). */
int sim_rig_count(const sim_rig_peer *p, wa_event_type t, const char *text_prefix);
/* p's last event of type t (NULL if none). */
const wa_event *sim_rig_last(const sim_rig_peer *p, wa_event_type t);
/* The first message p received with id (NULL if none), and how many it received. */
const sim_rig_msg *sim_rig_got(const sim_rig_peer *p, const char *id);
int sim_rig_got_count(const sim_rig_peer *p, const char *id);
/* The first message `id` the phone of `phone` saw, read or not (NULL if none). */
const sim_phone_msg *sim_rig_phone_got(sim_rig *r, const char *phone, const char *id);
/* The queued stanza `id` for device `dev` of account `phone`, decoded into a (NULL if none). */
wa_node *sim_rig_queued(sim_rig *r, const char *phone, uint16_t dev, const char *id, wb_arena *a);

/* Adds the checks the rig made to the caller's counters (check_passed, check_failed) and starts
 * its own again from 0. */
void sim_rig_add_checks(int *passed, int *failed);

#endif
