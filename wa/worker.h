/*
 * wa/worker.h - an engine worker: one thread that runs the wa_client state machines of the logins
 * pinned to it (DESIGN.md "Threads"), fed by the wa_net service thread.
 *
 * Socket events arrive from wa/net's thread and are queued; the worker thread alone touches its
 * clients, so wa/ needs no locks inside. Events of the clients (QR, connected, logged out...) go to
 * the owner's callback on the worker thread: it must not block (a bridge queues them to a portal or
 * management worker). Other threads act on a client only through wa_worker_call.
 */
#ifndef WA_WORKER_H
#define WA_WORKER_H

#include "wa/client.h"
#include "wa/net.h"

typedef struct wa_worker wa_worker;

/* login: the handle wa_worker_add returned; ev: valid during the call. */
typedef void (*wa_worker_event_fn)(void *user, int login, const wa_event *ev);
/* Runs on the worker thread with the client of `login`. */
typedef void (*wa_worker_call_fn)(wa_client *client, void *arg);

wa_worker *wa_worker_new(wa_net *net, wa_worker_event_fn on_event, void *user);
/* Stops the thread; the clients are closed but not freed (their owner frees them). */
void wa_worker_free(wa_worker *w);

/* Pins client (not owned) to this worker, connecting to url when it asks for a socket.
 * Returns the login handle (>= 0) or -1. The client is started on the worker thread. */
int wa_worker_add(wa_worker *w, wa_client *client, const char *url);
/* Runs fn(client, arg) on the worker thread, after what is already queued; waits for it when
 * wait is true. */
int wa_worker_call(wa_worker *w, int login, wa_worker_call_fn fn, void *arg, bool wait);
/* Runs fn(arg) on the worker thread, not tied to a login (e.g. to create a client whose store
 * uses the worker's own database connection, then wa_worker_add it from there). */
typedef void (*wa_worker_run_fn)(void *arg);
int wa_worker_run(wa_worker *w, wa_worker_run_fn fn, void *arg, bool wait);
/* Unpins a login: its connection is closed and no callback mentions it after this returns. The
 * client is not freed (its owner frees it). Call from the worker thread (inside a call/run) or
 * from another thread; not from the event callback of the same login. */
int wa_worker_remove(wa_worker *w, int login);

/* Group commit (DESIGN.md "Nothing is lost"). The worker steps its clients through a batch of
 * inbox items (up to 64, or until the inbox is empty, or a caller waits), then calls fn(arg) once
 * before any of their output is sent or their events raised: fn makes durable whatever the
 * clients' stores committed meanwhile (e.g. db_sync on a connection whose commits are
 * asynchronous) and returns 0, or non-zero when it cannot vouch for them, and then the batch's
 * output is dropped and those clients' connections closed (the server redelivers what was not
 * acked; the clients reconnect). The batch's events are raised all the same, so a message may
 * then be raised twice (again when redelivered): the app takes it once by its id. Without a
 * barrier, output goes out at the end of each batch as it is. fn is called once more after each
 * batch's output has gone, and after runs (wa_worker_run), for what event handlers and runs
 * committed without output: it should return at once when nothing needs it. Set it before adding
 * logins. */
typedef int (*wa_worker_barrier_fn)(void *arg);
void wa_worker_set_barrier(wa_worker *w, wa_worker_barrier_fn fn, void *arg);
/* Received messages sooner: with commit set, a batch first calls commit(arg), which makes what
 * the clients' stores committed visible to other connections without waiting for it to be
 * durable (e.g. sends a connection's held commits), then raises the clients' received messages
 * (WA_EV_MESSAGE when it is a client's next event), then calls the barrier before any output
 * leaves. A crash before the barrier's flush loses nothing: the server redelivers what was not
 * acked and it is decrypted again from the older state; the app takes a message once by its id
 * (as after a failed barrier). */
void wa_worker_set_commit(wa_worker *w, wa_worker_barrier_fn commit, void *arg);
/* Batches flushed so far, and how many of them had their barrier fail. */
void wa_worker_flush_stats(wa_worker *w, uint64_t *flushes, uint64_t *failures);

#endif
