/*
 * tests/db/store_cases.h - one test body for every wa_store implementation.
 *
 * store_cases_run exercises every function of wa/store.h (write, read, update, delete) with
 * realistic data, text full of quotes, backslashes and SQL, binary of every byte value, and the
 * transaction rules. It runs against the PostgreSQL store (test_db_store) and the in-memory store
 * (test_store_mem), so both behave the same as far as the engine can tell.
 */
#ifndef WB_TESTS_STORE_CASES_H
#define WB_TESTS_STORE_CASES_H

#include "wa/store.h"

typedef struct store_hooks {
    /* Makes the next store call inside an open transaction fail as a lost database would. */
    void (*break_next)(wa_store *st, void *arg);
    void *arg; /* for break_next */
} store_hooks;

/* Runs the cases on an empty store; adds the CHECKs that passed and failed to the counters (the
 * caller adds them to its own check.h counters, which are per file). */
void store_cases_run(wa_store *st, const store_hooks *hooks, int *passed, int *failed);

#endif
