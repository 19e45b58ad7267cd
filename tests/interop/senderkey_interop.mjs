// Sender keys between our C code (senderkey_tool: wa/senderkey over libsignal-protocol-c) and the
// group code Baileys 7.0.0-rc14 runs (lib/Signal/Group, on npm libsignal 6.0.0's crypto and curve;
// npm libsignal itself has no group cipher): SKDM each way, skmsg each way in order, out of order
// and with skipped messages (Baileys' sender skips every other iteration), duplicates refused, a
// 64 KiB message, a rotated key each way (the old holder cannot read the new chain, the new SKDM
// fixes it, the old chain stays readable), and Message.senderKeyDistributionMessage built by C and
// decoded by Baileys' WAProto and the other way round. WhatsApp padding is applied by each side.
//   node tests/interop/senderkey_interop.mjs path/to/senderkey_tool
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { proto } from '@whiskeysockets/baileys/WAProto/index.js';
import {
  GroupCipher, GroupSessionBuilder, SenderKeyDistributionMessage, SenderKeyName, SenderKeyRecord,
} from '@whiskeysockets/baileys/lib/Signal/Group/index.js';
import { BufferJSON, unpadRandomMax16, writeRandomPadMax16 } from '@whiskeysockets/baileys/lib/Utils/generics.js';
import libsignal from 'libsignal';

const toolPath = process.argv[2];
if (!toolPath) { console.error('usage: senderkey_interop.mjs <senderkey_tool>'); process.exit(2); }
let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) passed++; else { failed++; console.error('FAIL ' + what); } };

// --- our C device, one JSON line per request ---
const tool = spawn(toolPath, [], { stdio: ['pipe', 'pipe', 'inherit'] });
const lines = createInterface({ input: tool.stdout });
const waiting = [];
lines.on('line', (l) => waiting.shift()(JSON.parse(l)));
const call = (req) => new Promise((resolve) => { waiting.push(resolve); tool.stdin.write(JSON.stringify(req) + '\n'); });

const GROUP = '120363000000000042@g.us';
// the C device is "cdevice" device 3, the Baileys one a LID device (name as Baileys derives it)
const C = { name: 'cdevice', device: 3 }, JS = { name: '100000000000007_1', device: 2 };
const hex = (b) => Buffer.from(b).toString('hex');
const text = (s) => Buffer.from(s, 'utf8');

// --- Baileys' group code over an in-memory sender-key store. Records go through JSON as in
// Baileys, but with BufferJSON.replacer: Baileys' own storeSenderKey uses plain JSON.stringify, whose
// {type:'Buffer', data:[...]} skipped-key seeds its reviver does not turn back into Buffers, so a
// reloaded record cannot decrypt a skipped message ("Expected Buffer") - a Baileys quirk, not ours.
const keys = new Map();
const store = {
  loadSenderKey: async (name) => {
    const k = keys.get(name.toString());
    return k ? SenderKeyRecord.deserialize(k) : new SenderKeyRecord();
  },
  storeSenderKey: async (name, rec) => { keys.set(name.toString(), Buffer.from(JSON.stringify(rec.serialize(), BufferJSON.replacer), 'utf-8')); },
};
const nameOf = (who) => new SenderKeyName(GROUP, new libsignal.ProtocolAddress(who.name, who.device));
const jsCreate = async () => (await new GroupSessionBuilder(store).create(nameOf(JS))).serialize();
const jsProcess = async (skdm) => new GroupSessionBuilder(store).process(nameOf(C), new SenderKeyDistributionMessage(null, null, null, null, skdm));
const jsEncrypt = async (plain) => Buffer.from(await new GroupCipher(store, nameOf(JS)).encrypt(writeRandomPadMax16(plain)));
const jsDecrypt = async (ct) => Buffer.from(unpadRandomMax16(await new GroupCipher(store, nameOf(C)).decrypt(ct)));
const jsRefuses = async (ct) => { try { await jsDecrypt(ct); return false; } catch { return true; } };

const cCall = (op, extra = {}) => call({ op, group: GROUP, name: C.name, device: C.device, ...extra });
const cPeer = (op, extra = {}) => call({ op, group: GROUP, name: JS.name, device: JS.device, ...extra });
async function cCreate() { const r = await cCall('create'); if (r.error) throw new Error(r.error); return Buffer.from(r.skdm, 'hex'); }
async function cEncrypt(plain) { const r = await cCall('encrypt', { plaintext: hex(plain) }); if (r.error) throw new Error(r.error); return Buffer.from(r.ciphertext, 'hex'); }
const cDecrypt = (ct) => cPeer('decrypt', { ciphertext: hex(ct) });
const cReads = async (ct, want) => { const r = await cDecrypt(ct); return !r.error && Buffer.from(r.plaintext, 'hex').equals(want); };

// 1. C's key: Baileys processes C's SKDM and reads C's skmsg in order, out of order, skipped
let firstKeyId;
{
  const skdm = await cCreate();
  const parsed = new SenderKeyDistributionMessage(null, null, null, null, skdm);
  firstKeyId = parsed.getId();
  expect(skdm[0] === 0x33 && parsed.getChainKey().length === 32 && parsed.getSignatureKey().length === 33 && parsed.getIteration() === 0,
    'C\'s SKDM parses in Baileys (version 3, 32-byte chain key, 33-byte signing key, iteration 0)');
  await jsProcess(skdm);
  const m = [];
  for (let i = 0; i < 6; i++) m.push(await cEncrypt(text(`c${i}`)));
  expect((await jsDecrypt(m[0])).equals(text('c0')), 'Baileys decrypts C\'s first skmsg');
  expect((await jsDecrypt(m[1])).equals(text('c1')), 'Baileys decrypts C\'s second skmsg');
  for (const i of [4, 2]) expect((await jsDecrypt(m[i])).equals(text(`c${i}`)), `Baileys decrypts C's skmsg ${i} out of order`);
  expect((await jsDecrypt(m[5])).equals(text('c5')), 'Baileys decrypts C\'s last skmsg');
  expect(await jsRefuses(m[1]), 'Baileys refuses a replayed skmsg of C');
  // message 3 was skipped: still readable at the end
  expect((await jsDecrypt(m[3])).equals(text('c3')), 'Baileys decrypts C\'s skipped skmsg 3 last');
  const big = randomBytes(65536);
  expect((await jsDecrypt(await cEncrypt(big))).equals(big), '64 KiB skmsg C -> Baileys');
}

// 2. Baileys' key: C processes Baileys' SKDM and reads its skmsg (Baileys skips every other
// iteration), in order, out of order, skipped
{
  const skdm = await jsCreate();
  const ok = await cPeer('process', { skdm: hex(skdm) });
  expect(ok.ok === true, `C processes Baileys' SKDM ${ok.error || ''}`);
  const m = [];
  for (let i = 0; i < 8; i++) m.push(await jsEncrypt(text(`js${i}`)));
  expect(await cReads(m[0], text('js0')), 'C decrypts Baileys\' first skmsg');
  expect(await cReads(m[1], text('js1')), 'C decrypts Baileys\' second skmsg (iteration 2)');
  for (const i of [5, 3, 7, 2]) expect(await cReads(m[i], text(`js${i}`)), `C decrypts Baileys' skmsg ${i} out of order`);
  const dup = await cDecrypt(m[3]);
  expect(!!dup.error, `C refuses a replayed skmsg of Baileys (${dup.error})`);
  for (const i of [4, 6]) expect(await cReads(m[i], text(`js${i}`)), `C decrypts Baileys' skipped skmsg ${i}`);
  // a later SKDM of the same chain (iteration moved on) is accepted and reading goes on
  const again = await jsCreate();
  expect(new SenderKeyDistributionMessage(null, null, null, null, again).getIteration() > 0, 'Baileys\' SKDM after sending carries the current iteration');
  expect((await cPeer('process', { skdm: hex(again) })).ok === true, 'C processes the repeated SKDM');
  const after = await jsEncrypt(text('after the repeated SKDM'));
  expect(await cReads(after, text('after the repeated SKDM')), 'C decrypts after the repeated SKDM');
  const big = randomBytes(65536);
  expect(await cReads(await jsEncrypt(big), big), '64 KiB skmsg Baileys -> C');
  // 300 messages of which C reads every third: skipped keys pile up and stay usable within the cap
  const many = [];
  for (let i = 0; i < 300; i++) many.push(await jsEncrypt(text(`many${i}`)));
  let allRead = true;
  for (let i = 0; i < 300; i += 3) allRead = allRead && await cReads(many[i], text(`many${i}`));
  expect(allRead, 'C decrypts every third of 300 Baileys skmsg');
  expect(await cReads(many[298], text('many298')), 'C decrypts a recent skipped one');
}

// 3. rotation by C: Baileys holds the old key and cannot read the new chain until the new SKDM
{
  const before = await cEncrypt(text('old chain'));
  expect((await cCall('forget')).ok === true, 'C forgets its sender key');
  const fresh = await cCreate();
  const newId = new SenderKeyDistributionMessage(null, null, null, null, fresh).getId();
  expect(newId !== firstKeyId, `the new key has a new key id (${firstKeyId} -> ${newId})`);
  const n1 = await cEncrypt(text('new chain'));
  expect(await jsRefuses(n1), 'Baileys with only the old key cannot read C\'s new chain');
  await jsProcess(fresh);
  expect((await jsDecrypt(n1)).equals(text('new chain')), 'Baileys reads C\'s new chain after the new SKDM');
  expect((await jsDecrypt(before)).equals(text('old chain')), 'Baileys still reads C\'s last message of the old chain');
}

// 4. rotation by Baileys (a new record, as Baileys does when its sender key is deleted)
{
  const before = await jsEncrypt(text('js old chain'));
  keys.delete(nameOf(JS).toString());
  const fresh = await jsCreate();
  const n1 = await jsEncrypt(text('js new chain'));
  const refused = await cDecrypt(n1);
  expect(!!refused.error, `C with only the old key cannot read Baileys' new chain (${refused.error})`);
  expect((await cPeer('process', { skdm: hex(fresh) })).ok === true, 'C processes Baileys\' new SKDM');
  expect(await cReads(n1, text('js new chain')), 'C reads Baileys\' new chain');
  expect(await cReads(before, text('js old chain')), 'C still reads Baileys\' last message of the old chain');
}

// 5. Message.senderKeyDistributionMessage both ways through WAProto
{
  const skdm = await cCreate();
  const m = await cCall('message', { skdm: hex(skdm) });
  const decoded = proto.Message.decode(Buffer.from(m.message, 'hex'));
  expect(decoded.senderKeyDistributionMessage?.groupId === GROUP && Buffer.from(decoded.senderKeyDistributionMessage.axolotlSenderKeyDistributionMessage).equals(skdm),
    'Baileys\' WAProto decodes C\'s Message.senderKeyDistributionMessage');
  const jsSkdm = await jsCreate();
  const jsMsg = proto.Message.encode({ senderKeyDistributionMessage: { groupId: GROUP, axolotlSenderKeyDistributionMessage: jsSkdm } }).finish();
  const found = await call({ op: 'find', message: hex(jsMsg) });
  expect(found.group === GROUP && found.skdm === hex(jsSkdm), 'C finds the SKDM in Baileys\' Message');
  const wrapped = proto.Message.encode({ deviceSentMessage: { destinationJid: GROUP, message: { senderKeyDistributionMessage: { groupId: GROUP, axolotlSenderKeyDistributionMessage: jsSkdm } } } }).finish();
  const found2 = await call({ op: 'find', message: hex(wrapped) });
  expect(found2.skdm === hex(jsSkdm), 'C finds the SKDM inside a deviceSentMessage');
  const textOnly = proto.Message.encode({ conversation: 'no key here' }).finish();
  expect(!!(await call({ op: 'find', message: hex(textOnly) })).error, 'C finds no SKDM in a plain text');
}

tool.stdin.end();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
