// bench/bench_signal_node.mjs - the work of bench/bench_signal.c with libsignal 6.0.0 from npm
// (the library Baileys uses), for bench/run's ratios: Signal 1:1 encrypt + decrypt of ~100-byte
// messages (WhatsApp's padding included) between two in-memory devices, "one way" (Alice sends,
// Bob reads) and "alternating" (the sender switches every message: a DH ratchet step each time),
// the fan-out of one message to 100 devices with established sessions, and one message to a
// group of those 100 devices with the group code Baileys 7.0.0-rc14 runs (lib/Signal/Group, on npm
// libsignal's crypto; npm libsignal has no group cipher): "first" = new sender key + its SKDM in a
// Message encrypted pairwise for each device + the text once as a skmsg, "steady" = the skmsg
// (the first 100 messages of a key).
// The stores keep serialized records, as Baileys' key store does (SessionRecord.serialize on
// store, deserialize on load); every call is awaited, as Baileys does. Each figure is the median of
// 3 rounds. Prints one JSON line.
//   node bench/bench_signal_node.mjs [SECONDS per measurement]
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../tests/interop/package.json'));
const libsignal = require('libsignal');
const baileys = path.join(here, '../tests/interop/node_modules/@whiskeysockets/baileys');
const { GroupCipher, GroupSessionBuilder, SenderKeyDistributionMessage, SenderKeyName, SenderKeyRecord } =
  await import(path.join(baileys, 'lib/Signal/Group/index.js'));
const { proto } = await import(path.join(baileys, 'WAProto/index.js'));
const { BufferJSON } = await import(path.join(baileys, 'lib/Utils/generics.js'));

// CPU milliseconds of the process (user + system, all of Node's threads), as bench_signal.c counts
// CPU time: other work sharing the machine skews it less than wall time.
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const seconds = Number(process.argv[2] || 3) > 0 ? Number(process.argv[2] || 3) : 3;
const MSG_LEN = 100, FANOUT = 100, FANOUT_ROUND = 10, ROUNDS = 3;

// Runs one measurement ROUNDS times (SECONDS split among them) and keeps the median.
async function median(measure) {
  const r = [];
  for (let i = 0; i < ROUNDS; i++) r.push(await measure(seconds / ROUNDS));
  return r.sort((a, b) => a - b)[(ROUNDS - 1) / 2];
}

function makeDevice(regId) {
  const identity = libsignal.curve.generateKeyPair();
  const signed = libsignal.curve.generateKeyPair();
  const store = {
    sessions: new Map(), prekeys: new Map(),
    signedId: 7, signed, signature: libsignal.curve.calculateSignature(identity.privKey, signed.pubKey),
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
  return { identity, store, regId, ciphers: new Map() };
}

const pad = (msg) => { let n = randomBytes(1)[0] & 0xf; if (!n) n = 0xf; return Buffer.concat([msg, Buffer.alloc(n, n)]); };
const unpad = (buf) => { const n = buf[buf.length - 1]; if (!n || n > buf.length) throw new Error('bad padding'); return buf.subarray(0, buf.length - n); };

function cipherOf(dev, name) {
  let c = dev.ciphers.get(name);
  if (!c) { c = new libsignal.SessionCipher(dev.store, new libsignal.ProtocolAddress(name, 1)); dev.ciphers.set(name, c); }
  return c;
}

async function startSession(from, to, toName) {
  const pre = libsignal.curve.generateKeyPair();
  to.store.prekeys.set(1, pre);
  const builder = new libsignal.SessionBuilder(from.store, new libsignal.ProtocolAddress(toName, 1));
  await builder.initOutgoing({
    registrationId: to.regId,
    identityKey: to.identity.pubKey,
    signedPreKey: { keyId: to.store.signedId, publicKey: to.store.signed.pubKey, signature: to.store.signature },
    preKey: { keyId: 1, publicKey: pre.pubKey },
  });
}

// from encrypts pt for toName; to decrypts it from fromName and checks it.
async function transfer(from, toName, to, fromName, pt) {
  const r = await cipherOf(from, toName).encrypt(pad(pt));
  const ct = Buffer.from(r.body, 'binary');
  const c = cipherOf(to, fromName);
  const out = r.type === 3 ? await c.decryptPreKeyWhisperMessage(ct) : await c.decryptWhisperMessage(ct);
  const plain = unpad(Buffer.from(out));
  if (!plain.equals(pt)) throw new Error('round trip');
}

async function measurePair(alice, bob, alternating, secs) {
  const pt = Buffer.alloc(MSG_LEN, 'x');
  let n = 0;
  const start = cpuMs(), end = start + secs * 1000;
  let t = start;
  while (t < end) {
    for (let i = 0; i < 100; i++, n++) {
      pt.writeUInt32LE(n, 0); // every message differs
      if (alternating && (n & 1)) await transfer(bob, 'alice', alice, 'bob', pt);
      else await transfer(alice, 'bob', bob, 'alice', pt);
    }
    t = cpuMs();
  }
  return n / ((t - start) / 1000);
}

// 1. a pair
const alice = makeDevice(1001), bob = makeDevice(1002);
const pt = Buffer.alloc(MSG_LEN, 'x');
await startSession(alice, bob, 'bob');
await transfer(alice, 'bob', bob, 'alice', pt);
await transfer(bob, 'alice', alice, 'bob', pt);
await measurePair(alice, bob, false, seconds / 10); // JIT warm-up
await measurePair(alice, bob, true, seconds / 10);
const oneWay = await median((secs) => measurePair(alice, bob, false, secs));
const alternating = await median((secs) => measurePair(alice, bob, true, secs));

// 2. fan-out: Alice and 100 devices, each session answered once
const devs = [];
for (let i = 0; i < FANOUT; i++) {
  const d = makeDevice(2000 + i);
  devs.push(d);
  await startSession(alice, d, `peer${i}`);
  await transfer(alice, `peer${i}`, d, 'alice', pt);
  await transfer(d, 'alice', alice, `peer${i}`, pt);
}
const fanoutMs = await median(async (secs) => {
  let messages = 0;
  const start = cpuMs();
  let t = start;
  while (t < start + secs * 1000) {
    for (let r = 0; r < FANOUT_ROUND; r++, messages++) {
      for (let i = 0; i < FANOUT; i++) {
        const e = await cipherOf(alice, `peer${i}`).encrypt(pad(pt));
        if (e.type !== 1) throw new Error('fan-out: not a msg');
      }
    }
    t = cpuMs();
  }
  return (t - start) / messages;
});

// 3. a group of the 100 devices; sender-key records go through JSON as in Baileys' key store
const GROUP = '120363000000000042@g.us';
const senderKeys = new Map();
const skStore = (map) => ({
  loadSenderKey: async (name) => { const k = map.get(name.toString()); return k ? SenderKeyRecord.deserialize(k) : new SenderKeyRecord(); },
  storeSenderKey: async (name, rec) => { map.set(name.toString(), Buffer.from(JSON.stringify(rec.serialize(), BufferJSON.replacer), 'utf-8')); },
});
const aliceSk = skStore(senderKeys);
const aliceName = new SenderKeyName(GROUP, new libsignal.ProtocolAddress('alice', 1));
async function groupFirst() {
  senderKeys.delete(aliceName.toString()); // a key change
  const skdm = await new GroupSessionBuilder(aliceSk).create(aliceName);
  const msg = proto.Message.encode({
    senderKeyDistributionMessage: { groupId: GROUP, axolotlSenderKeyDistributionMessage: skdm.serialize() },
  }).finish();
  for (let i = 0; i < FANOUT; i++) await cipherOf(alice, `peer${i}`).encrypt(pad(Buffer.from(msg)));
  return { skdm: skdm.serialize(), ct: Buffer.from(await new GroupCipher(aliceSk, aliceName).encrypt(pad(pt))) };
}
{ // checked once: a device reads the key and the message
  const { skdm, ct } = await groupFirst();
  const readerSk = skStore(new Map());
  await new GroupSessionBuilder(readerSk).process(aliceName, new SenderKeyDistributionMessage(null, null, null, null, skdm));
  if (!unpad(Buffer.from(await new GroupCipher(readerSk, aliceName).decrypt(ct))).equals(pt)) throw new Error('group round trip');
}
const groupFirstMs = await median(async (secs) => {
  let n = 0;
  const start = cpuMs();
  let t = start;
  while (t < start + secs * 1000) { await groupFirst(); n++; t = cpuMs(); }
  return (t - start) / n;
});
// the first 100 messages of a new key (Baileys' sender stores a skipped key per message: its record,
// and the cost of each message, grows with the key's age up to 2,000 keys; a fixed window is fair)
const groupSteadyUs = await median(async (secs) => {
  let n = 0, spent = 0;
  while (spent < secs * 1000) {
    senderKeys.delete(aliceName.toString());
    await new GroupSessionBuilder(aliceSk).create(aliceName);
    const start = cpuMs();
    for (let i = 0; i < 100; i++, n++) {
      pt.writeUInt32LE(n, 0);
      await new GroupCipher(aliceSk, aliceName).encrypt(pad(pt));
    }
    spent += cpuMs() - start;
  }
  return (spent * 1000) / n;
});

console.log(JSON.stringify({
  msg_len: MSG_LEN, one_way_per_s: Math.round(oneWay), alternating_per_s: Math.round(alternating),
  fanout_devices: FANOUT, fanout_ms: Number(fanoutMs.toFixed(3)),
  group_first_ms: Number(groupFirstMs.toFixed(3)), group_steady_us: Number(groupSteadyUs.toFixed(1)),
  node: process.version,
}));
