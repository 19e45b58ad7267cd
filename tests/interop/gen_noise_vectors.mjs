// Writes tests/vectors/noise/handshake.json: a WhatsApp Noise handshake with fixed keys, where the
// client side is Baileys 7.0.0-rc14's own makeNoiseHandler (unmodified) and the server side is a
// responder written here from the protocol notes with Baileys' and libsignal's primitives.
// test_noise_vectors.c replays it: our initiator must produce the same bytes as Baileys, and our
// responder the same serverHello as this one.
//
//   node tests/interop/gen_noise_vectors.mjs [--check]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import libsignal from 'libsignal';
import { proto } from '@whiskeysockets/baileys/WAProto/index.js';
import { NOISE_WA_HEADER, NOISE_MODE, WA_CERT_DETAILS } from '@whiskeysockets/baileys/lib/Defaults/index.js';
import { makeNoiseHandler } from '@whiskeysockets/baileys/lib/Utils/noise-handler.js';
import { aesEncryptGCM, aesDecryptGCM, hkdf, sha256 } from '@whiskeysockets/baileys/lib/Utils/crypto.js';
import { encodeBinaryNode } from '@whiskeysockets/baileys/lib/WABinary/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'vectors', 'noise', 'handshake.json');

// Fixed, clamped private keys; public keys come from libsignal.
const priv = (byte) => {
  const k = Buffer.alloc(32, byte);
  k[0] &= 248; k[31] &= 127; k[31] |= 64;
  return k;
};
const pair = (byte) => {
  const p = priv(byte);
  return { private: p, public: libsignal.curve.getPublicFromPrivateKey(p).subarray(1) };
};
const clientEphemeral = pair(0x11), noiseKey = pair(0x22);
const serverEphemeral = pair(0x33), serverStatic = pair(0x44);
const root = pair(0x55), intermediate = pair(0x66);
const dh = (privKey, pub) => Buffer.from(libsignal.curve.calculateAgreement(Buffer.concat([Buffer.from([5]), pub]), privKey));

// The certificate chain, signed by libsignal (deterministic XEdDSA).
const details = (serial, issuerSerial, key) =>
  Buffer.from(proto.CertChain.NoiseCertificate.Details.encode({ serial, issuerSerial, key, notBefore: 1700000000, notAfter: 2000000000 }).finish());
const interDetails = details(7, 0, intermediate.public);
const leafDetails = details(99, 7, serverStatic.public);
const certChain = Buffer.from(proto.CertChain.encode({
  intermediate: { details: interDetails, signature: libsignal.curve.calculateSignature(root.private, interDetails) },
  leaf: { details: leafDetails, signature: libsignal.curve.calculateSignature(intermediate.private, leafDetails) },
}).finish());

// A responder from the notes: h0 = protocol name, prologue = intro, then e, ee, s, es.
function responder() {
  let h = Buffer.from(NOISE_MODE), ck = h, k = null, n = 0;
  const mixHash = (d) => { h = sha256(Buffer.concat([h, d])); };
  const mixKey = (ikm) => { const o = hkdf(Buffer.from(ikm), 64, { salt: ck, info: '' }); ck = o.subarray(0, 32); k = o.subarray(32); n = 0; };
  const iv = () => { const b = Buffer.alloc(12); b.writeUInt32BE(n++, 8); return b; };
  const enc = (pt) => { const c = aesEncryptGCM(pt, k, iv(), h); mixHash(c); return c; };
  const dec = (ct) => { const p = aesDecryptGCM(ct, k, iv(), h); mixHash(ct); return p; };
  mixHash(NOISE_WA_HEADER);
  return {
    hello(clientEph) {
      mixHash(clientEph);
      mixHash(serverEphemeral.public);
      mixKey(dh(serverEphemeral.private, clientEph));
      const staticEnc = enc(serverStatic.public);
      mixKey(dh(serverStatic.private, clientEph));
      const payload = enc(certChain);
      return { ephemeral: serverEphemeral.public, static: staticEnc, payload };
    },
    finish(fin) {
      const clientStatic = dec(fin.static);
      mixKey(dh(serverEphemeral.private, clientStatic));
      const payload = dec(fin.payload);
      const o = hkdf(Buffer.alloc(0), 64, { salt: ck, info: '' });
      return { clientStatic, payload, recvKey: o.subarray(0, 32), sendKey: o.subarray(32) };
    },
  };
}

const logger = { child() { return this; }, trace() {}, debug() {}, info() {}, warn() {}, error() {}, level: 'silent' };
WA_CERT_DETAILS.PUBLIC_KEY = root.public; // trust the test root, as the notes say
const noise = makeNoiseHandler({ keyPair: clientEphemeral, NOISE_HEADER: NOISE_WA_HEADER, logger });

const clientHelloWire = noise.encodeFrame(proto.HandshakeMessage.encode({ clientHello: { ephemeral: clientEphemeral.public } }).finish());
const server = responder();
const serverHello = Buffer.from(proto.HandshakeMessage.encode({ serverHello: server.hello(clientEphemeral.public) }).finish());
const clientPayload = Buffer.from(proto.ClientPayload.encode({
  username: 15550000001, device: 1, passive: true, pull: true,
  userAgent: { platform: 14, appVersion: { primary: 2, secondary: 3000, tertiary: 1029496320 } },
}).finish());
const keyEnc = noise.processHandshake({ serverHello: proto.HandshakeMessage.decode(serverHello).serverHello }, noiseKey);
const payloadEnc = noise.encrypt(clientPayload);
const clientFinishWire = noise.encodeFrame(proto.HandshakeMessage.encode({ clientFinish: { static: keyEnc, payload: payloadEnc } }).finish());
await noise.finishInit();
const fin = server.finish(proto.HandshakeMessage.decode(clientFinishWire.subarray(3)).clientFinish);
if (!fin.clientStatic.equals(noiseKey.public) || !fin.payload.equals(clientPayload)) throw new Error('responder disagrees with Baileys');

// transport: one frame each way
const clientNode = encodeBinaryNode({ tag: 'iq', attrs: { id: '1.2-3', to: 's.whatsapp.net', type: 'get', xmlns: 'w:p' }, content: [{ tag: 'ping', attrs: {} }] });
const clientTransportWire = noise.encodeFrame(clientNode);
const serverNode = encodeBinaryNode({ tag: 'success', attrs: { t: '1795655111', lid: '100000000000001:1@lid' } });
const iv0 = Buffer.alloc(12);
const serverTransportWire = Buffer.concat([Buffer.from([0, 0, serverNode.length + 16]), aesEncryptGCM(serverNode, fin.sendKey, iv0, Buffer.alloc(0))]);
let decoded = null;
await noise.decodeFrame(serverTransportWire, (node) => { decoded = node; });
if (decoded?.tag !== 'success') throw new Error('Baileys could not read the server frame');
const clientFrameBack = aesDecryptGCM(clientTransportWire.subarray(3), fin.recvKey, iv0, Buffer.alloc(0));
if (!clientFrameBack.equals(clientNode)) throw new Error('server could not read the client frame');

const hex = (b) => Buffer.from(b).toString('hex');
const vector = {
  note: 'client bytes by Baileys 7.0.0-rc14 makeNoiseHandler; server by gen_noise_vectors.mjs; private keys clamped',
  client_ephemeral_priv: hex(clientEphemeral.private), noise_key_priv: hex(noiseKey.private),
  server_ephemeral_priv: hex(serverEphemeral.private), server_static_priv: hex(serverStatic.private),
  root_pub: hex(root.public), intermediate_pub: hex(intermediate.public), now: 1800000000,
  cert_chain: hex(certChain), client_payload: hex(clientPayload),
  client_hello_wire: hex(clientHelloWire), server_hello: hex(serverHello),
  client_finish_wire: hex(clientFinishWire),
  client_plain: hex(clientNode), client_transport_wire: hex(clientTransportWire),
  server_plain: hex(serverNode), server_transport_wire: hex(serverTransportWire),
};
const text = JSON.stringify(vector, null, 1) + '\n';
if (process.argv.includes('--check')) {
  let have = '';
  try { have = readFileSync(out, 'utf8'); } catch { /* missing */ }
  if (have !== text) { console.error(`${out} differs from what Baileys gives now`); process.exit(1); }
  console.log('noise vectors match Baileys');
} else {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, text);
  console.log(`wrote ${out}`);
}
