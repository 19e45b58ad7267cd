/*
 * wa/store_mem.h - the engine's store (wa/store.h) in memory, for unit tests of wa/.
 *
 * Behaves like the PostgreSQL store (db/store_pg.c) as seen through wa_store: the same lookups,
 * NOT_FOUND answers, transactions (begin takes a snapshot, rollback restores it) and orderings.
 * Tests can make it fail on purpose to check that the engine does not ack what it could not store.
 * Not thread-safe; everything is lost when it is destroyed.
 */
#ifndef WA_STORE_MEM_H
#define WA_STORE_MEM_H

#include "wa/store.h"

/* Fills *out with a new empty store; free with out->destroy(out->ctx). */
int wa_store_mem_new(wa_store *out);

/* Makes the n-th following store call (1 = the next one) fail with WA_STORE_ERR_IO, as a lost
 * database would; 0 disarms. The failing call changes nothing. */
void wa_store_mem_fail_after(wa_store *st, int n);
/* For tests that change the store behind the engine's back (as a restore from a backup would):
 * its epoch moves on, so what the engine kept on the strength of earlier writes is let go. */
void wa_store_mem_changed_behind(wa_store *st);

/* How many records the store holds (all kinds together), for tests. */
size_t wa_store_mem_count(const wa_store *st);

#endif
