/*
 * tests/unit/sim_proc.h - runs the wa-sim process for a test or benchmark and talks to its admin
 * API.
 */
#ifndef WB_TESTS_SIM_PROC_H
#define WB_TESTS_SIM_PROC_H

#include "util/bytes.h"

#include <stdint.h>
#include <sys/types.h>

typedef struct sim_proc {
    pid_t pid;           /* the wa-sim process; it dies with its parent */
    char ws_url[256];    /* ws://127.0.0.1:PORT/ws/chat */
    char admin_url[256]; /* http://127.0.0.1:PORT */
    uint8_t root[32];    /* its certificate root, for the engine's trust */
} sim_proc;

/* Starts wa-sim at path with extra arguments (NULL-terminated array, may be NULL). 0 or -1. */
int sim_proc_start(sim_proc *p, const char *path, const char *const *args);
void sim_proc_stop(sim_proc *p);
/* POSTs body (JSON) to the admin API, or GETs when body is NULL; returns the HTTP status and
 * appends the answer (NUL-terminated) to out when out is not NULL. */
long sim_proc_admin(const sim_proc *p, const char *path, const char *body, wb_buf *out);

#endif
