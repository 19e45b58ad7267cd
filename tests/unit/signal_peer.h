/*
 * tests/unit/signal_peer.h - a device of our own for Signal tests: keys, an in-memory store, a
 * wa_signal, and the bundle others start a session from.
 */
#ifndef WB_TESTS_SIGNAL_PEER_H
#define WB_TESTS_SIGNAL_PEER_H

#include "check.h"
#include "wa/signal.h"
#include "wa/store_mem.h"

static wa_crypto *crypto;

typedef struct peer {
    wa_store store;
    wa_device dev;
    wa_signal *sig;
    uint32_t next_prekey;
} peer;

static wa_crypto *crypto;

static inline void peer_init(peer *p, uint32_t reg_id)
{
    memset(p, 0, sizeof(*p));
    wa_store_mem_new(&p->store);
    wa_keypair_generate(crypto, &p->dev.noise);
    wa_keypair_generate(crypto, &p->dev.identity);
    wa_keypair_generate(crypto, &p->dev.signed_prekey);
    p->dev.signed_prekey_id = 7;
    p->dev.registration_id = reg_id;
    uint8_t msg[33] = {0x05};
    memcpy(msg + 1, p->dev.signed_prekey.pub, 32);
    wa_xeddsa_sign(crypto, p->dev.identity.priv, msg, 33, p->dev.signed_prekey_sig);
    p->store.device_save(p->store.ctx, &p->dev);
    int err;
    p->sig = wa_signal_new(crypto, &p->store, &err);
    CHECK(p->sig != NULL);
    p->next_prekey = 100;
}

static inline wa_prekey_bundle bundle_of(peer *p, bool with_prekey)
{
    wa_prekey_bundle b = {.registration_id = p->dev.registration_id,
                          .signed_prekey_id = p->dev.signed_prekey_id};
    memcpy(b.signed_prekey, p->dev.signed_prekey.pub, 32);
    memcpy(b.signature, p->dev.signed_prekey_sig, 64);
    memcpy(b.identity, p->dev.identity.pub, 32);
    if (with_prekey) {
        wa_prekey pk = {.id = p->next_prekey++};
        wa_keypair_generate(crypto, &pk.key);
        p->store.prekeys_save(p->store.ctx, &pk, 1);
        b.has_prekey = true;
        b.prekey_id = pk.id;
        memcpy(b.prekey, pk.key.pub, 32);
    }
    return b;
}

static inline void peer_free(peer *p)
{
    wa_signal_free(p->sig);
    p->store.destroy(p->store.ctx);
}

#endif
