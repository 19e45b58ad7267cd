// Signal sessions between our C code (signal_tool: wa/signal over libsignal-protocol-c) and
// libsignal 6.0.0 from npm, the library Baileys uses: pkmsg and msg both ways, either side
// starting, with and without a one-time prekey, out-of-order and skipped messages, big messages,
// and WhatsApp's padding (1-15 bytes each equal to the pad length) applied by each side.
//   node tests/interop/signal_interop.mjs path/to/signal_tool
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import libsignal from 'libsignal';

const toolPath = process.argv[2];
if (!toolPath) { console.error('usage: signal_interop.mjs <signal_tool>'); process.exit(2); }
let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) passed++; else { failed++; console.error('FAIL ' + what); } };

// --- our C device, one JSON line per request ---
const tool = spawn(toolPath, [], { stdio: ['pipe', 'pipe', 'inherit'] });
const lines = createInterface({ input: tool.stdout });
const waiting = [];
lines.on('line', (l) => waiting.shift()(JSON.parse(l)));
const call = (req) => new Promise((resolve) => { waiting.push(resolve); tool.stdin.write(JSON.stringify(req) + '\n'); });

// --- a libsignal device with an in-memory store ---
const pub33 = (raw) => Buffer.concat([Buffer.from([5]), raw]);
function makePeer(regId) {
  const identity = libsignal.curve.generateKeyPair();
  const signed = libsignal.curve.generateKeyPair();
  const store = {
    sessions: new Map(), prekeys: new Map(),
    signedId: 9, signed, signature: libsignal.curve.calculateSignature(identity.privKey, signed.pubKey),
    isTrustedIdentity: () => true,
    loadSession: async (id) => { const s = store.sessions.get(id); return s ? libsignal.SessionRecord.deserialize(s) : undefined; },
    storeSession: async (id, rec) => { store.sessions.set(id, rec.serialize()); },
    loadPreKey: async (id) => store.prekeys.get(Number(id)),
    removePreKey: async (id) => { store.prekeys.delete(Number(id)); },
    loadSignedPreKey: async (id) => (Number(id) === store.signedId ? signed : undefined),
    getOurRegistrationId: () => regId,
    getOurIdentity: () => identity,
    saveIdentity: async () => true,
  };
  return { identity, store, regId };
}
const pad = (msg) => { let n = randomBytes(1)[0] & 0xf; if (!n) n = 0xf; return Buffer.concat([msg, Buffer.alloc(n, n)]); };
const unpad = (buf) => { const n = buf[buf.length - 1]; if (!n || n > buf.length) throw new Error('bad padding'); return buf.subarray(0, buf.length - n); };

const C_NAME = 'cdevice', JS_NAME = '15551234567';
async function jsEncrypt(peer, plain) {
  const cipher = new libsignal.SessionCipher(peer.store, new libsignal.ProtocolAddress(C_NAME, 1));
  const r = await cipher.encrypt(pad(plain));
  return { type: r.type === 3 ? 'pkmsg' : 'msg', ciphertext: Buffer.from(r.body, 'binary') };
}
async function jsDecrypt(peer, type, ct) {
  const cipher = new libsignal.SessionCipher(peer.store, new libsignal.ProtocolAddress(C_NAME, 1));
  const out = type === 'pkmsg' ? await cipher.decryptPreKeyWhisperMessage(ct) : await cipher.decryptWhisperMessage(ct);
  return unpad(Buffer.from(out));
}
async function cEncrypt(plain) {
  const r = await call({ op: 'encrypt', name: JS_NAME, device: 1, plaintext: plain.toString('hex') });
  if (r.error) throw new Error('C encrypt: ' + r.error);
  return { type: r.type, ciphertext: Buffer.from(r.ciphertext, 'hex'), counter: r.counter };
}
async function cDecrypt(m) {
  const r = await call({ op: 'decrypt', name: JS_NAME, device: 1, type: m.type, ciphertext: m.ciphertext.toString('hex') });
  if (r.error) throw new Error('C decrypt: ' + r.error);
  return Buffer.from(r.plaintext, 'hex');
}
const text = (s) => Buffer.from(s, 'utf8');

// 1. libsignal starts, from our bundle (with a one-time prekey)
{
  const js = makePeer(777);
  const b = await call({ op: 'bundle' });
  const builder = new libsignal.SessionBuilder(js.store, new libsignal.ProtocolAddress(C_NAME, 1));
  await builder.initOutgoing({
    registrationId: b.registration_id,
    identityKey: pub33(Buffer.from(b.identity, 'hex')),
    signedPreKey: { keyId: b.signed_prekey_id, publicKey: pub33(Buffer.from(b.signed_prekey, 'hex')), signature: Buffer.from(b.signature, 'hex') },
    preKey: { keyId: b.prekey_id, publicKey: pub33(Buffer.from(b.prekey, 'hex')) },
  });
  const m1 = await jsEncrypt(js, text('hello from libsignal'));
  expect(m1.type === 'pkmsg', 'libsignal\'s first message is a pkmsg');
  expect((await cDecrypt(m1)).equals(text('hello from libsignal')), 'C decrypts libsignal\'s pkmsg');
  const r1 = await cEncrypt(text('hello back from C'));
  expect(r1.type === 'msg', 'C answers with a msg');
  expect((await jsDecrypt(js, r1.type, r1.ciphertext)).equals(text('hello back from C')), 'libsignal decrypts C\'s msg');
  // out of order and skipped: libsignal sends 5, C reads 5th, 2nd, 1st, 4th, 3rd
  const sent = [];
  for (let i = 0; i < 5; i++) sent.push(await jsEncrypt(js, text(`n${i}`)));
  for (const i of [4, 1, 0, 3, 2]) expect((await cDecrypt(sent[i])).equals(text(`n${i}`)), `C decrypts message ${i} out of order`);
  // and C sends several, libsignal reads them backwards
  const back = [];
  for (let i = 0; i < 4; i++) back.push(await cEncrypt(text(`c${i}`)));
  for (const i of [3, 2, 1, 0]) expect((await jsDecrypt(js, back[i].type, back[i].ciphertext)).equals(text(`c${i}`)), `libsignal decrypts C's message ${i} out of order`);
  // a 64 KiB message each way
  const big = randomBytes(65536);
  expect((await cDecrypt(await jsEncrypt(js, big))).equals(big), '64 KiB libsignal -> C');
  const bc = await cEncrypt(big);
  expect((await jsDecrypt(js, bc.type, bc.ciphertext)).equals(big), '64 KiB C -> libsignal');
  // C crashes after sending (what it kept in memory is gone): it goes on from its stored session,
  // whose sending chain is ahead of the keys it used, so libsignal sees a gap (keys skipped, never
  // one used twice) and reads on; an unread message from before the crash still decrypts
  const beforeCrash = [];
  for (let i = 0; i < 3; i++) beforeCrash.push(await cEncrypt(text(`pre${i}`)));
  expect((await jsDecrypt(js, beforeCrash[0].type, beforeCrash[0].ciphertext)).equals(text('pre0')), 'libsignal decrypts C\'s message before the crash');
  expect((await call({ op: 'restart' })).ok === true, 'C restarts');
  const afterCrash = await cEncrypt(text('after the crash'));
  expect(afterCrash.counter > beforeCrash[2].counter + 1, `C skipped keys after the crash (counter ${beforeCrash[2].counter} -> ${afterCrash.counter})`);
  expect((await jsDecrypt(js, afterCrash.type, afterCrash.ciphertext)).equals(text('after the crash')), 'libsignal decrypts C\'s first message after the crash (past the gap)');
  expect((await jsDecrypt(js, beforeCrash[2].type, beforeCrash[2].ciphertext)).equals(text('pre2')), 'libsignal decrypts a late message from before the crash');
  const answer = await jsEncrypt(js, text('still here'));
  expect((await cDecrypt(answer)).equals(text('still here')), 'C decrypts libsignal\'s answer after the crash');
  const onward = await cEncrypt(text('onward'));
  expect((await jsDecrypt(js, onward.type, onward.ciphertext)).equals(text('onward')), 'libsignal decrypts C\'s next message');
  // a replayed message is refused by C
  const replay = await call({ op: 'decrypt', name: JS_NAME, device: 1, type: sent[0].type, ciphertext: sent[0].ciphertext.toString('hex') });
  expect(!!replay.error, `C refuses a replayed message (${replay.error})`);
}

// 2. C starts, from libsignal's bundle, with and without a one-time prekey
for (const withPrekey of [true, false]) {
  const js = makePeer(888);
  const pre = libsignal.curve.generateKeyPair();
  js.store.prekeys.set(31, pre);
  const bundle = {
    op: 'process_bundle', name: JS_NAME, device: 1, registration_id: js.regId,
    identity: js.identity.pubKey.subarray(1).toString('hex'),
    signed_prekey_id: js.store.signedId, signed_prekey: js.store.signed.pubKey.subarray(1).toString('hex'),
    signature: Buffer.from(js.store.signature).toString('hex'),
  };
  if (withPrekey) Object.assign(bundle, { prekey_id: 31, prekey: pre.pubKey.subarray(1).toString('hex') });
  const ok = await call(bundle);
  expect(ok.ok === true, `C builds a session from libsignal's bundle (prekey: ${withPrekey}) ${ok.error || ''}`);
  const m = await cEncrypt(text('C speaks first'));
  expect(m.type === 'pkmsg', 'C\'s first message is a pkmsg');
  expect((await jsDecrypt(js, m.type, m.ciphertext)).equals(text('C speaks first')), `libsignal decrypts C's pkmsg (prekey: ${withPrekey})`);
  if (withPrekey) expect(!js.store.prekeys.has(31), 'libsignal consumed its one-time prekey');
  const r = await jsEncrypt(js, text('libsignal answers'));
  expect(r.type === 'msg', 'libsignal answers with a msg');
  expect((await cDecrypt(r)).equals(text('libsignal answers')), 'C decrypts libsignal\'s msg');
  const again = await cEncrypt(text('and again'));
  expect(again.type === 'msg', 'C goes on with msg');
  expect((await jsDecrypt(js, again.type, again.ciphertext)).equals(text('and again')), 'libsignal decrypts it');
  // a forged signed prekey is refused by C (libsignal-node would not check it)
  const forged = { ...bundle, name: 'forged', signature: Buffer.from(js.store.signature).fill(7, 0, 8).toString('hex') };
  const bad = await call(forged);
  expect(!!bad.error, `C refuses a bundle with a bad signed-prekey signature (${bad.error})`);
}

tool.stdin.end();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
