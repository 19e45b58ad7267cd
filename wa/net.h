/*
 * wa/net.h - the WebSocket transport of the engine: one libwebsockets service thread carrying every
 * WhatsApp connection of the process.
 *
 * The service thread only moves bytes. Other threads ask for connections, sends and closes by
 * connection id (never by pointer, so a connection that died meanwhile is simply not found); the
 * requests are queued and the service thread is woken with lws_cancel_service. What arrives is
 * handed to the owner's callbacks, on the service thread: they must copy what they keep and return
 * quickly (an engine worker queues it; see wa/worker.h).
 *
 * URLs: wss://web.whatsapp.com/ws/chat (TLS with the system's CAs) or ws://host:port/path for the
 * simulator. Every connection sends `Origin: https://web.whatsapp.com`.
 */
#ifndef WA_NET_H
#define WA_NET_H

#include <stddef.h>
#include <stdint.h>

#define WA_DEFAULT_URL    "wss://web.whatsapp.com/ws/chat"
#define WA_DEFAULT_ORIGIN "https://web.whatsapp.com"

typedef struct wa_net wa_net;

typedef struct wa_net_callbacks {
    void (*on_open)(void *user, uint64_t conn);
    void (*on_data)(void *user, uint64_t conn, const uint8_t *p, size_t len);
    /* The connection is gone (or never came up); its id is dead from now on. */
    void (*on_closed)(void *user, uint64_t conn, const char *why);
} wa_net_callbacks;

/* Starts the service thread. ca_file NULL uses the system's CAs. NULL on failure. */
wa_net *wa_net_new(const char *ca_file);
/* Closes every connection (on_closed is called for each) and stops the thread. */
void wa_net_free(wa_net *n);

/* Asks for a connection; returns its id (never 0), or 0 for a malformed URL. The outcome comes
 * through cb (on_open, or on_closed). */
uint64_t wa_net_connect(wa_net *n, const char *url, const wa_net_callbacks *cb, void *user);
/* Queues bytes (copied); 0, or -1 when the connection is unknown (closed). */
int wa_net_send(wa_net *n, uint64_t conn, const uint8_t *p, size_t len);
/* Closes after the queued bytes are written. */
void wa_net_close(wa_net *n, uint64_t conn);
/* Closes every connection made with this user pointer, and no callback for any of them runs after
 * this returns (one in progress is waited for): the owner may then free what `user` points to.
 * Not from a callback. */
void wa_net_detach_user(wa_net *n, const void *user);
/* Live connections, for tests and statistics. */
size_t wa_net_count(wa_net *n);

#endif
