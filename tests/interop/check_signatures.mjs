// XEdDSA both ways between our C code (crypto_tool) and libsignal 6.0.0's raw curve functions — NOT
// Baileys' Curve.verify, which accepts any signature. Also our X25519 public keys, and the two
// signatures of a certificate chain our simulator code builds.
//   node tests/interop/check_signatures.mjs path/to/crypto_tool
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import libsignal from 'libsignal';
import { proto } from '@whiskeysockets/baileys/WAProto/index.js';

const tool = process.argv[2];
if (!tool) { console.error('usage: check_signatures.mjs <crypto_tool>'); process.exit(2); }
const run = (reqs) => JSON.parse(execFileSync(tool, { input: JSON.stringify(reqs), maxBuffer: 1 << 26 }).toString());
const hex = (b) => Buffer.from(b).toString('hex');
const pub33 = (pub) => Buffer.concat([Buffer.from([5]), pub]);
let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) passed++; else { failed++; console.error('FAIL ' + what); } };

const keys = Array.from({ length: 16 }, () => libsignal.curve.generateKeyPair());
// ADV-style messages (prefix bytes + details + keys) and random lengths, 0 excluded (libsignal refuses)
const msgs = keys.map((_, i) => (i % 2 ? Buffer.concat([Buffer.from([6, i % 4]), randomBytes(100 + i)]) : randomBytes(1 + i * 37)));

// 1. public keys from private keys agree
const pubs = run(keys.map((k) => ({ op: 'pub', priv: hex(k.privKey) })));
keys.forEach((k, i) => expect(pubs[i].pub === hex(k.pubKey.subarray(1)), `public key ${i}`));

// 2. our signatures verify in libsignal; a flipped bit does not
const sigs = run(keys.map((k, i) => ({ op: 'sign', priv: hex(k.privKey), msg: hex(msgs[i]) })));
keys.forEach((k, i) => {
  const sig = Buffer.from(sigs[i].sig, 'hex');
  expect(libsignal.curve.verifySignature(k.pubKey, msgs[i], sig) === true, `libsignal verifies our signature ${i}`);
  const bad = Buffer.from(sig); bad[i % 64] ^= 1;
  expect(libsignal.curve.verifySignature(k.pubKey, msgs[i], bad) === false, `libsignal rejects our tampered signature ${i}`);
});

// 3. libsignal's signatures verify in C; tampered ones and wrong keys do not
const theirs = keys.map((k, i) => libsignal.curve.calculateSignature(k.privKey, msgs[i]));
const reqs = [];
keys.forEach((k, i) => {
  reqs.push({ op: 'verify', pub: hex(k.pubKey.subarray(1)), msg: hex(msgs[i]), sig: hex(theirs[i]) });
  const bad = Buffer.from(theirs[i]); bad[(i * 7) % 64] ^= 0x10;
  reqs.push({ op: 'verify', pub: hex(k.pubKey.subarray(1)), msg: hex(msgs[i]), sig: hex(bad) });
  reqs.push({ op: 'verify', pub: hex(keys[(i + 1) % keys.length].pubKey.subarray(1)), msg: hex(msgs[i]), sig: hex(theirs[i]) });
});
const answers = run(reqs);
keys.forEach((_, i) => {
  expect(answers[3 * i].ok === true, `we verify libsignal's signature ${i}`);
  expect(answers[3 * i + 1].ok === false, `we reject libsignal's tampered signature ${i}`);
  expect(answers[3 * i + 2].ok === false, `we reject a signature under the wrong key ${i}`);
});

// 4. a certificate chain built by our simulator code: both signatures verify in libsignal
const [root, inter, server] = [0, 1, 2].map(() => libsignal.curve.generateKeyPair());
const [{ chain }] = run([{ op: 'chain', root: hex(root.privKey), inter: hex(inter.privKey), server_pub: hex(server.pubKey.subarray(1)) }]);
const cc = proto.CertChain.decode(Buffer.from(chain, 'hex'));
const idetails = proto.CertChain.NoiseCertificate.Details.decode(cc.intermediate.details);
const ldetails = proto.CertChain.NoiseCertificate.Details.decode(cc.leaf.details);
expect(libsignal.curve.verifySignature(root.pubKey, Buffer.from(cc.intermediate.details), Buffer.from(cc.intermediate.signature)), 'intermediate signed by root');
expect(libsignal.curve.verifySignature(pub33(Buffer.from(idetails.key)), Buffer.from(cc.leaf.details), Buffer.from(cc.leaf.signature)), 'leaf signed by intermediate');
expect(Buffer.from(idetails.key).equals(inter.pubKey.subarray(1)), 'intermediate key');
expect(Buffer.from(ldetails.key).equals(server.pubKey.subarray(1)), 'leaf key is the server static key');
expect(idetails.issuerSerial === 0 && ldetails.issuerSerial === idetails.serial, 'issuer serials');

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
