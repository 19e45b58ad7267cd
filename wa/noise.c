/*
 * wa/noise.c - the Noise XX handshake of WhatsApp Web, the transport cipher, framing and the
 * certificate chain (noise.h). Handshake steps are named after the Noise paper.
 */
#include "wa/noise.h"

#include "wa/proto/wa.pb.h"

#include <pb_decode.h>
#include <pb_encode.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const uint8_t wa_noise_intro[WA_NOISE_INTRO_LEN] = {'W', 'A', 6, 3};

const uint8_t wa_noise_whatsapp_root[WA_KEY_LEN] = {
    0x14, 0x23, 0x75, 0x57, 0x4d, 0x0a, 0x58, 0x71, 0x66, 0xaa, 0xe7, 0x1e, 0xbe, 0x51, 0x64, 0x37,
    0xc4, 0xa2, 0x8b, 0x73, 0xe3, 0x69, 0x5c, 0x6c, 0xe1, 0xf7, 0xf9, 0x54, 0x5d, 0xa8, 0xee, 0x6b,
};

static int fail(wa_noise *ns, wa_errinfo *ei, int code, const char *fmt, ...)
{
    if (ns) ns->state = WA_NOISE_FAILED;
    if (ei) {
        ei->code = code;
        ei->offset = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ei->message, sizeof(ei->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

/* --- protobuf glue --- */

static int pb_to_buf(const pb_msgdesc_t *fields, const void *msg, wb_buf *out)
{
    size_t size;
    if (!pb_get_encoded_size(&size, fields, msg)) return WA_ERR_PROTO;
    if (!wb_buf_reserve(out, size)) return WA_ERR_NOMEM;
    pb_ostream_t os = pb_ostream_from_buffer(out->data + out->len, size);
    if (!pb_encode(&os, fields, msg)) return WA_ERR_PROTO;
    out->len += os.bytes_written;
    return WA_OK;
}

static bool pb_from_bytes(const pb_msgdesc_t *fields, void *msg, const uint8_t *p, size_t len)
{
    pb_istream_t is = pb_istream_from_buffer(p, len);
    return pb_decode(&is, fields, msg);
}

/* --- the symmetric state of the Noise paper --- */

static void mix_hash(wa_noise *ns, const uint8_t *data, size_t len)
{
    uint8_t buf[32 + 4096];
    if (len <= sizeof(buf) - 32) {
        memcpy(buf, ns->h, 32);
        memcpy(buf + 32, data, len);
        wa_sha256(buf, 32 + len, ns->h);
        return;
    }
    wb_buf big;
    wb_buf_init(&big);
    wb_buf_append(&big, ns->h, 32);
    wb_buf_append(&big, data, len);
    wa_sha256(big.data, big.len, ns->h);
    wb_buf_free(&big);
}

static int mix_key(wa_noise *ns, const uint8_t ikm[32])
{
    uint8_t out[64];
    int rc = wa_hkdf_sha256(ikm, 32, ns->ck, 32, NULL, 0, out, sizeof(out));
    if (rc == WA_OK) {
        memcpy(ns->ck, out, 32);
        memcpy(ns->k, out + 32, 32);
        ns->n = 0;
    }
    wa_wipe(out, sizeof(out));
    return rc;
}

static int mix_dh(wa_noise *ns, const uint8_t priv[32], const uint8_t pub[32])
{
    uint8_t shared[32];
    int rc = wa_x25519(ns->crypto, priv, pub, shared);
    if (rc == WA_OK) rc = mix_key(ns, shared);
    wa_wipe(shared, sizeof(shared));
    return rc;
}

static void nonce_iv(uint32_t n, uint8_t iv[12])
{
    memset(iv, 0, 8);
    iv[8] = (uint8_t)(n >> 24);
    iv[9] = (uint8_t)(n >> 16);
    iv[10] = (uint8_t)(n >> 8);
    iv[11] = (uint8_t)n;
}

/* out gets len + 16 bytes. */
static int encrypt_and_hash(wa_noise *ns, const uint8_t *pt, size_t len, uint8_t *out)
{
    uint8_t iv[12];
    nonce_iv(ns->n++, iv);
    int rc = wa_aes_gcm_encrypt(ns->k, iv, sizeof(iv), ns->h, 32, pt, len, out);
    if (rc == WA_OK) mix_hash(ns, out, len + 16);
    return rc;
}

/* out gets len - 16 bytes. */
static int decrypt_and_hash(wa_noise *ns, const uint8_t *ct, size_t len, uint8_t *out)
{
    uint8_t iv[12];
    nonce_iv(ns->n++, iv);
    int rc = wa_aes_gcm_decrypt(ns->k, iv, sizeof(iv), ns->h, 32, ct, len, out);
    if (rc == WA_OK) mix_hash(ns, ct, len);
    return rc;
}

static int split(wa_noise *ns)
{
    uint8_t out[64];
    int rc = wa_hkdf_sha256(NULL, 0, ns->ck, 32, NULL, 0, out, sizeof(out));
    if (rc == WA_OK) {
        /* [0:32] is the initiator's sending key, [32:64] the responder's */
        bool initiator = ns->role == WA_NOISE_INITIATOR;
        memcpy(ns->send_key, initiator ? out : out + 32, 32);
        memcpy(ns->recv_key, initiator ? out + 32 : out, 32);
        ns->send_n = ns->recv_n = 0;
        ns->state = WA_NOISE_TRANSPORT;
    }
    wa_wipe(out, sizeof(out));
    wa_wipe(ns->ck, sizeof(ns->ck));
    wa_wipe(ns->k, sizeof(ns->k));
    wa_wipe(&ns->e, sizeof(ns->e));
    return rc;
}

int wa_noise_init(wa_noise *ns, wa_crypto *c, wa_noise_role role, const wa_keypair *ephemeral)
{
    memset(ns, 0, sizeof(*ns));
    ns->crypto = c;
    ns->role = role;
    _Static_assert(sizeof(WA_NOISE_PROTOCOL) - 1 == 32, "the protocol name is h0: 32 bytes");
    memcpy(ns->h, WA_NOISE_PROTOCOL, 32);
    memcpy(ns->ck, ns->h, 32);
    mix_hash(ns, wa_noise_intro, sizeof(wa_noise_intro)); /* the prologue */
    int rc = ephemeral ? (ns->e = *ephemeral, WA_OK) : wa_keypair_generate(c, &ns->e);
    if (rc != WA_OK) ns->state = WA_NOISE_FAILED;
    return rc;
}

void wa_noise_clear(wa_noise *ns)
{
    wa_wipe(ns, sizeof(*ns));
}

int wa_frame_write(wb_buf *out, const uint8_t *p, size_t len)
{
    if (len > WA_FRAME_MAX) return WA_ERR_TOO_LARGE;
    wb_buf_u24be(out, (uint32_t)len);
    wb_buf_append(out, p, len);
    return out->failed ? WA_ERR_NOMEM : WA_OK;
}

/* Encodes a HandshakeMessage and appends it as a frame. */
static int send_handshake(const proto_HandshakeMessage *hm, wb_buf *out)
{
    wb_buf msg;
    wb_buf_init(&msg);
    int rc = pb_to_buf(proto_HandshakeMessage_fields, hm, &msg);
    if (rc == WA_OK) rc = wa_frame_write(out, msg.data, msg.len);
    wb_buf_free(&msg);
    return rc;
}

int wa_noise_client_hello(wa_noise *ns, wb_buf *out)
{
    if (ns->role != WA_NOISE_INITIATOR || ns->state != WA_NOISE_START) return WA_ERR_STATE;
    mix_hash(ns, ns->e.pub, 32);
    proto_HandshakeMessage hm = proto_HandshakeMessage_init_zero;
    hm.has_clientHello = true;
    hm.clientHello.has_ephemeral = true;
    hm.clientHello.ephemeral.size = 32;
    memcpy(hm.clientHello.ephemeral.bytes, ns->e.pub, 32);
    wb_buf_append(out, wa_noise_intro, sizeof(wa_noise_intro));
    int rc = send_handshake(&hm, out);
    if (rc != WA_OK) return fail(ns, NULL, rc, "cannot encode clientHello");
    ns->state = WA_NOISE_SENT_HELLO;
    return WA_OK;
}

int wa_noise_client_finish(wa_noise *ns, const uint8_t *server_hello, size_t len,
                           const wa_cert_policy *policy, const wa_keypair *noise_key,
                           const uint8_t *payload, size_t payload_len, wb_buf *out, wa_errinfo *ei)
{
    if (ns->role != WA_NOISE_INITIATOR || ns->state != WA_NOISE_SENT_HELLO)
        return fail(NULL, ei, WA_ERR_STATE, "serverHello outside the handshake");
    proto_HandshakeMessage hm = proto_HandshakeMessage_init_zero;
    if (!pb_from_bytes(proto_HandshakeMessage_fields, &hm, server_hello, len))
        return fail(ns, ei, WA_ERR_PROTO, "serverHello is not a HandshakeMessage");
    const proto_HandshakeMessage_ServerHello *sh = &hm.serverHello;
    if (!hm.has_serverHello || sh->ephemeral.size != 32 || sh->static_.size != 48 ||
        sh->payload.size < 16)
        return fail(ns, ei, WA_ERR_PROTO, "serverHello lacks ephemeral, static or payload");

    /* <- e, ee, s, es: the server's ephemeral, then its static key, then the certificate chain */
    memcpy(ns->re, sh->ephemeral.bytes, 32);
    mix_hash(ns, ns->re, 32);
    int rc = mix_dh(ns, ns->e.priv, ns->re);
    if (rc == WA_OK) rc = decrypt_and_hash(ns, sh->static_.bytes, sh->static_.size, ns->rs);
    if (rc != WA_OK) return fail(ns, ei, rc, "cannot decrypt the server's static key");
    rc = mix_dh(ns, ns->e.priv, ns->rs);
    uint8_t cert[sizeof(sh->payload.bytes)];
    if (rc == WA_OK) rc = decrypt_and_hash(ns, sh->payload.bytes, sh->payload.size, cert);
    if (rc != WA_OK) return fail(ns, ei, rc, "cannot decrypt the server's certificate chain");
    rc = wa_cert_chain_verify(ns->crypto, cert, sh->payload.size - 16, policy, ns->rs, ei);
    if (rc != WA_OK) {
        ns->state = WA_NOISE_FAILED;
        return rc;
    }

    /* -> s, se: our static (noise) key, then the ClientPayload */
    proto_HandshakeMessage fin = proto_HandshakeMessage_init_zero;
    fin.has_clientFinish = true;
    fin.clientFinish.has_static_ = fin.clientFinish.has_payload = true;
    if (payload_len + 16 > sizeof(fin.clientFinish.payload.bytes))
        return fail(ns, ei, WA_ERR_TOO_LARGE, "ClientPayload of %zu bytes is too large",
                    payload_len);
    rc = encrypt_and_hash(ns, noise_key->pub, 32, fin.clientFinish.static_.bytes);
    fin.clientFinish.static_.size = 48;
    if (rc == WA_OK) rc = mix_dh(ns, noise_key->priv, ns->re);
    if (rc == WA_OK)
        rc = encrypt_and_hash(ns, payload, payload_len, fin.clientFinish.payload.bytes);
    fin.clientFinish.payload.size = (pb_size_t)(payload_len + 16);
    if (rc == WA_OK) rc = send_handshake(&fin, out);
    if (rc == WA_OK) rc = split(ns);
    if (rc != WA_OK) return fail(ns, ei, rc, "cannot build clientFinish");
    return WA_OK;
}

int wa_noise_server_hello(wa_noise *ns, const uint8_t *client_hello, size_t len,
                          const wa_keypair *server_static, const uint8_t *cert_chain,
                          size_t cert_len, wb_buf *out, wa_errinfo *ei)
{
    if (ns->role != WA_NOISE_RESPONDER || ns->state != WA_NOISE_START)
        return fail(NULL, ei, WA_ERR_STATE, "clientHello outside the handshake");
    proto_HandshakeMessage hm = proto_HandshakeMessage_init_zero;
    if (!pb_from_bytes(proto_HandshakeMessage_fields, &hm, client_hello, len) ||
        !hm.has_clientHello || hm.clientHello.ephemeral.size != 32)
        return fail(ns, ei, WA_ERR_PROTO, "clientHello without a 32-byte ephemeral key");
    memcpy(ns->re, hm.clientHello.ephemeral.bytes, 32);
    mix_hash(ns, ns->re, 32);

    proto_HandshakeMessage sh = proto_HandshakeMessage_init_zero;
    sh.has_serverHello = true;
    proto_HandshakeMessage_ServerHello *s = &sh.serverHello;
    s->has_ephemeral = s->has_static_ = s->has_payload = true;
    if (cert_len + 16 > sizeof(s->payload.bytes))
        return fail(ns, ei, WA_ERR_TOO_LARGE, "certificate chain too large");
    /* -> e, ee, s, es */
    s->ephemeral.size = 32;
    memcpy(s->ephemeral.bytes, ns->e.pub, 32);
    mix_hash(ns, ns->e.pub, 32);
    int rc = mix_dh(ns, ns->e.priv, ns->re);
    if (rc == WA_OK) rc = encrypt_and_hash(ns, server_static->pub, 32, s->static_.bytes);
    s->static_.size = 48;
    if (rc == WA_OK) rc = mix_dh(ns, server_static->priv, ns->re);
    if (rc == WA_OK) rc = encrypt_and_hash(ns, cert_chain, cert_len, s->payload.bytes);
    s->payload.size = (pb_size_t)(cert_len + 16);
    if (rc == WA_OK) rc = send_handshake(&sh, out);
    if (rc != WA_OK) return fail(ns, ei, rc, "cannot build serverHello");
    ns->state = WA_NOISE_SENT_SERVER_HELLO;
    return WA_OK;
}

int wa_noise_server_finish(wa_noise *ns, const uint8_t *client_finish, size_t len,
                           uint8_t client_static[WA_KEY_LEN], wb_buf *payload, wa_errinfo *ei)
{
    if (ns->role != WA_NOISE_RESPONDER || ns->state != WA_NOISE_SENT_SERVER_HELLO)
        return fail(NULL, ei, WA_ERR_STATE, "clientFinish outside the handshake");
    proto_HandshakeMessage hm = proto_HandshakeMessage_init_zero;
    if (!pb_from_bytes(proto_HandshakeMessage_fields, &hm, client_finish, len) ||
        !hm.has_clientFinish || hm.clientFinish.static_.size != 48 ||
        hm.clientFinish.payload.size < 16)
        return fail(ns, ei, WA_ERR_PROTO, "clientFinish lacks static or payload");
    /* <- s, se */
    int rc = decrypt_and_hash(ns, hm.clientFinish.static_.bytes, 48, ns->rs);
    if (rc != WA_OK) return fail(ns, ei, rc, "cannot decrypt the client's static key");
    rc = mix_dh(ns, ns->e.priv, ns->rs);
    size_t plen = hm.clientFinish.payload.size - 16;
    payload->len = 0;
    if (rc == WA_OK && !wb_buf_reserve(payload, plen)) rc = WA_ERR_NOMEM;
    if (rc == WA_OK)
        rc = decrypt_and_hash(ns, hm.clientFinish.payload.bytes, plen + 16, payload->data);
    if (rc != WA_OK) return fail(ns, ei, rc, "cannot decrypt the ClientPayload");
    payload->len = plen;
    memcpy(client_static, ns->rs, 32);
    rc = split(ns);
    return rc == WA_OK ? WA_OK : fail(ns, ei, rc, "split failed");
}

int wa_noise_send(wa_noise *ns, const uint8_t *plaintext, size_t len, wb_buf *out)
{
    if (ns->state != WA_NOISE_TRANSPORT) return WA_ERR_STATE;
    if (len + 16 > WA_FRAME_MAX) return WA_ERR_TOO_LARGE;
    uint8_t iv[12];
    nonce_iv(ns->send_n++, iv);
    if (!wb_buf_u24be(out, (uint32_t)(len + 16)) || !wb_buf_reserve(out, len + 16))
        return WA_ERR_NOMEM;
    int rc = wa_aes_gcm_encrypt(ns->send_key, iv, sizeof(iv), NULL, 0, plaintext, len,
                                out->data + out->len);
    if (rc != WA_OK) return rc;
    out->len += len + 16;
    return WA_OK;
}

int wa_noise_send_node(wa_noise *ns, const wa_node *n, wb_buf *out)
{
    wb_buf plain;
    wb_buf_init(&plain);
    int rc = wa_binary_pack(n, &plain);
    if (rc == WA_OK) rc = wa_noise_send(ns, plain.data, plain.len, out);
    wb_buf_free(&plain);
    return rc;
}

int wa_noise_recv(wa_noise *ns, const uint8_t *frame, size_t len, wb_buf *out)
{
    if (ns->state != WA_NOISE_TRANSPORT) return WA_ERR_STATE;
    if (len < 16) {
        ns->state = WA_NOISE_FAILED;
        return WA_ERR_TRUNCATED;
    }
    out->len = 0;
    if (!wb_buf_reserve(out, len)) return WA_ERR_NOMEM;
    uint8_t iv[12];
    nonce_iv(ns->recv_n++, iv);
    int rc = wa_aes_gcm_decrypt(ns->recv_key, iv, sizeof(iv), NULL, 0, frame, len, out->data);
    if (rc != WA_OK) {
        ns->state = WA_NOISE_FAILED;
        return rc;
    }
    out->len = len - 16;
    return WA_OK;
}

/* --- framing --- */

void wa_frame_reader_init(wa_frame_reader *r, bool expect_intro, size_t max_frame)
{
    memset(r, 0, sizeof(*r));
    wb_buf_init(&r->buf);
    r->expect_intro = expect_intro;
    r->max_frame = max_frame && max_frame < WA_FRAME_MAX ? max_frame : WA_FRAME_MAX;
}

void wa_frame_reader_free(wa_frame_reader *r)
{
    wb_buf_free(&r->buf);
}

int wa_frame_reader_push(wa_frame_reader *r, const uint8_t *p, size_t len)
{
    if (r->failed) return WA_ERR_STATE;
    if (r->start > 0 && r->start == r->buf.len) {
        r->buf.len = r->start = 0;
    } else if (r->start > 65536 && r->start * 2 > r->buf.len) {
        memmove(r->buf.data, r->buf.data + r->start, r->buf.len - r->start);
        r->buf.len -= r->start;
        r->start = 0;
    }
    return wb_buf_append(&r->buf, p, len) ? WA_OK : WA_ERR_NOMEM;
}

int wa_frame_reader_next(wa_frame_reader *r, const uint8_t **frame, size_t *len, wa_errinfo *ei)
{
    if (r->failed) return WA_ERR_STATE;
    wb_cur c;
    wb_cur_init(&c, r->buf.data + r->start, r->buf.len - r->start);
    if (r->expect_intro) {
        /* optional routing info: 'E' 'D' 0 1, 3-byte length, bytes; then 'W' 'A' 6 3 */
        const uint8_t *p;
        if (wb_cur_left(&c) < 4) return 0;
        if (c.data[0] == 'E' && c.data[1] == 'D') {
            uint32_t rlen;
            wb_cur skip = c;
            if (!wb_cur_skip(&skip, 4) || !wb_cur_u24be(&skip, &rlen)) return 0;
            if (rlen > 4096) {
                r->failed = true;
                return fail(NULL, ei, WA_ERR_TOO_LARGE, "routing info of %u bytes", rlen);
            }
            if (!wb_cur_skip(&skip, rlen)) return 0;
            c = skip;
        }
        if (!wb_cur_bytes(&c, 4, &p)) return 0;
        if (memcmp(p, wa_noise_intro, 2) != 0 || p[2] != wa_noise_intro[2]) {
            r->failed = true;
            return fail(NULL, ei, WA_ERR_BAD_TAG, "stream does not start with the WA intro header");
        }
        if (p[3] != wa_noise_intro[3]) {
            r->failed = true;
            return fail(NULL, ei, WA_ERR_UNSUPPORTED, "dictionary version %u (we speak 3)", p[3]);
        }
        r->start = (size_t)(c.data - r->buf.data);
        r->expect_intro = false;
    }
    uint32_t flen;
    wb_cur body = c;
    if (!wb_cur_u24be(&body, &flen)) return 0;
    if (flen > r->max_frame) {
        r->failed = true;
        return fail(NULL, ei, WA_ERR_TOO_LARGE, "frame of %u bytes over the limit of %zu", flen,
                    r->max_frame);
    }
    const uint8_t *p;
    if (!wb_cur_bytes(&body, flen, &p)) return 0;
    *frame = p;
    *len = flen;
    r->start = (size_t)(body.data - r->buf.data);
    return 1;
}

/* --- certificate chain --- */

static int sign_cert(wa_crypto *c, const wa_keypair *signer,
                     const proto_CertChain_NoiseCertificate_Details *d,
                     proto_CertChain_NoiseCertificate *cert)
{
    wb_buf details;
    wb_buf_init(&details);
    int rc = pb_to_buf(proto_CertChain_NoiseCertificate_Details_fields, d, &details);
    if (rc == WA_OK && details.len > sizeof(cert->details.bytes)) rc = WA_ERR_TOO_LARGE;
    if (rc == WA_OK) {
        cert->has_details = cert->has_signature = true;
        cert->details.size = (pb_size_t)details.len;
        memcpy(cert->details.bytes, details.data, details.len);
        cert->signature.size = WA_SIG_LEN;
        rc = wa_xeddsa_sign(c, signer->priv, details.data, details.len, cert->signature.bytes);
    }
    wb_buf_free(&details);
    return rc;
}

int wa_cert_chain_build(wa_crypto *c, const wa_keypair *root, const wa_keypair *intermediate,
                        const uint8_t server_static_pub[WA_KEY_LEN], const wa_cert_params *params,
                        wb_buf *out)
{
    proto_CertChain chain = proto_CertChain_init_zero;
    proto_CertChain_NoiseCertificate_Details d = proto_CertChain_NoiseCertificate_Details_init_zero;
    d.has_serial = d.has_issuerSerial = d.has_key = d.has_notBefore = d.has_notAfter = true;
    d.serial = params->intermediate_serial;
    d.issuerSerial = 0;
    d.key.size = 32;
    memcpy(d.key.bytes, intermediate->pub, 32);
    d.notBefore = params->not_before;
    d.notAfter = params->not_after;
    chain.has_intermediate = chain.has_leaf = true;
    int rc = sign_cert(c, root, &d, &chain.intermediate);
    d.serial = params->leaf_serial;
    d.issuerSerial = params->intermediate_serial;
    memcpy(d.key.bytes, server_static_pub, 32);
    if (rc == WA_OK) rc = sign_cert(c, intermediate, &d, &chain.leaf);
    if (rc == WA_OK) rc = pb_to_buf(proto_CertChain_fields, &chain, out);
    return rc;
}

static int check_cert(wa_crypto *c, const proto_CertChain_NoiseCertificate *cert,
                      const uint8_t signer[32], const char *which,
                      proto_CertChain_NoiseCertificate_Details *d, const wa_cert_policy *policy,
                      wa_errinfo *ei)
{
    if (cert->signature.size != WA_SIG_LEN || cert->details.size == 0)
        return fail(NULL, ei, WA_ERR_CERT, "%s certificate without details or signature", which);
    if (!wa_xeddsa_verify(c, signer, cert->details.bytes, cert->details.size,
                          cert->signature.bytes))
        return fail(NULL, ei, WA_ERR_CERT, "%s certificate signature does not verify", which);
    *d = (proto_CertChain_NoiseCertificate_Details)
        proto_CertChain_NoiseCertificate_Details_init_zero;
    if (!pb_from_bytes(proto_CertChain_NoiseCertificate_Details_fields, d, cert->details.bytes,
                       cert->details.size) ||
        d->key.size != 32)
        return fail(NULL, ei, WA_ERR_CERT, "%s certificate details are malformed", which);
    if (policy->now && ((d->has_notBefore && policy->now < d->notBefore) ||
                        (d->has_notAfter && policy->now > d->notAfter)))
        return fail(NULL, ei, WA_ERR_CERT, "%s certificate not valid now (%llu; valid %llu..%llu)",
                    which, (unsigned long long)policy->now, (unsigned long long)d->notBefore,
                    (unsigned long long)d->notAfter);
    return WA_OK;
}

int wa_cert_chain_verify(wa_crypto *c, const uint8_t *bytes, size_t len,
                         const wa_cert_policy *policy, const uint8_t server_static_pub[WA_KEY_LEN],
                         wa_errinfo *ei)
{
    proto_CertChain chain = proto_CertChain_init_zero;
    if (!pb_from_bytes(proto_CertChain_fields, &chain, bytes, len) || !chain.has_leaf ||
        !chain.has_intermediate)
        return fail(NULL, ei, WA_ERR_CERT, "certificate chain is malformed");
    proto_CertChain_NoiseCertificate_Details inter, leaf;
    int rc = check_cert(c, &chain.intermediate, policy->root, "intermediate", &inter, policy, ei);
    if (rc != WA_OK) return rc;
    if (inter.issuerSerial != 0)
        return fail(NULL, ei, WA_ERR_CERT, "intermediate issuer serial %u is not the root's (0)",
                    inter.issuerSerial);
    rc = check_cert(c, &chain.leaf, inter.key.bytes, "leaf", &leaf, policy, ei);
    if (rc != WA_OK) return rc;
    if (leaf.issuerSerial != inter.serial)
        return fail(NULL, ei, WA_ERR_CERT, "leaf issuer serial %u is not the intermediate's (%u)",
                    leaf.issuerSerial, inter.serial);
    if (!wa_ct_equal(leaf.key.bytes, server_static_pub, 32))
        return fail(NULL, ei, WA_ERR_CERT, "leaf key is not the server's static key");
    return WA_OK;
}
