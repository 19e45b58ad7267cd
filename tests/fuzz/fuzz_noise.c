/*
 * tests/fuzz/fuzz_noise.c - libFuzzer target for what a Noise peer can send: the byte stream a
 * server reads (intro, routing info, frames) and the handshake messages both sides parse
 * (clientHello, serverHello with a certificate chain, clientFinish), and transport frames. Nothing
 * may crash or read out of bounds; every failure must leave the state FAILED or unchanged, never
 * half-advanced. The first input byte picks the path.
 */
#include "wa/noise.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static wa_crypto *crypto;
static wa_keypair server_static, noise_key;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!crypto) {
        crypto = wa_crypto_new((const uint8_t *)"fuzz", 4);
        wa_keypair_generate(crypto, &server_static);
        wa_keypair_generate(crypto, &noise_key);
    }
    if (size < 1) return 0;
    uint8_t path = data[0] % 4;
    data++;
    size--;
    wa_errinfo ei;
    wb_buf out;
    wb_buf_init(&out);
    wa_noise ns;
    if (path == 0) {
        /* server side stream: frames after the intro, each offered to the handshake */
        wa_frame_reader r;
        wa_frame_reader_init(&r, true, 1 << 16);
        size_t half = size / 2;
        wa_frame_reader_push(&r, data, half);
        wa_frame_reader_push(&r, data + half, size - half);
        const uint8_t *f;
        size_t flen;
        wa_noise_init(&ns, crypto, WA_NOISE_RESPONDER, NULL);
        while (wa_frame_reader_next(&r, &f, &flen, &ei) == 1) {
            if (ns.state == WA_NOISE_START)
                wa_noise_server_hello(&ns, f, flen, &server_static, (const uint8_t *)"chain", 5,
                                      &out, &ei);
            else if (ns.state == WA_NOISE_SENT_SERVER_HELLO) {
                uint8_t cs[32];
                wb_buf payload;
                wb_buf_init(&payload);
                wa_noise_server_finish(&ns, f, flen, cs, &payload, &ei);
                wb_buf_free(&payload);
            }
        }
        wa_frame_reader_free(&r);
    } else if (path == 1) {
        /* client side: the input is the serverHello */
        wa_noise_init(&ns, crypto, WA_NOISE_INITIATOR, NULL);
        wa_noise_client_hello(&ns, &out);
        wa_cert_policy policy = {.now = 1800000000};
        memcpy(policy.root, server_static.pub, 32);
        int rc = wa_noise_client_finish(&ns, data, size, &policy, &noise_key, (const uint8_t *)"p",
                                        1, &out, &ei);
        if (rc != WA_OK && ns.state != WA_NOISE_FAILED) abort();
    } else if (path == 2) {
        /* a certificate chain on its own */
        wa_cert_policy policy = {.now = 1800000000};
        memcpy(policy.root, server_static.pub, 32);
        if (wa_cert_chain_verify(crypto, data, size, &policy, server_static.pub, &ei) == WA_OK)
            abort(); /* nothing the fuzzer makes is signed by our root */
    } else {
        /* a transport frame into a fresh transport state */
        wa_noise_init(&ns, crypto, WA_NOISE_INITIATOR, NULL);
        ns.state = WA_NOISE_TRANSPORT;
        wb_buf plain;
        wb_buf_init(&plain);
        int rc = wa_noise_recv(&ns, data, size, &plain);
        if (rc != WA_OK && ns.state != WA_NOISE_FAILED) abort();
        wb_buf_free(&plain);
    }
    wa_noise_clear(&ns);
    wb_buf_free(&out);
    return 0;
}
