// Live peers on ONE account: our engine (engine_tool) and unmodified Baileys 7.0.0-rc14 are two
// companion devices of the same wa-sim account, and a third account's simulated phone is the peer.
// What one of them sends reaches the other as an own-device copy (deviceSentMessage) that it
// decrypts, with the chat it went to (the engine prints it as "dest"; Baileys keys it fromMe in
// that chat), both ways, for a text and a reaction; and the peer's messages reach both devices.
//   node tests/interop/engine_baileys_own.mjs path/to/wa-sim path/to/engine_tool
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import makeWASocket, { useMultiFileAuthState } from '@whiskeysockets/baileys';
import pino from 'pino';
import { startSim } from './wa_sim.mjs';

const [simPath, toolPath] = process.argv.slice(2);
if (!simPath || !toolPath) { console.error('usage: engine_baileys_own.mjs <wa-sim> <engine_tool>'); process.exit(2); }
const OWN = '15550000051', PEER = '15550000052';
const OJID = `${OWN}@s.whatsapp.net`, PJID = `${PEER}@s.whatsapp.net`;
let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) { passed++; console.log('ok   ' + what); } else { failed++; console.error('FAIL ' + what); } };

const sim = await startSim(simPath, ['--account', `${OWN}:100000000000051:Own`, '--account', `${PEER}:100000000000052:Peer`]);
const { ready } = sim;
const admin = (method, path, body) => sim.admin(method, path, body);
const dir = mkdtempSync(join(tmpdir(), 'wabridge-engine-own-'));
let sock = null;
const deadline = setTimeout(() => { console.error('FAIL timed out'); cleanup(1); }, 100000);
function cleanup(code) {
  clearTimeout(deadline);
  try { sock?.end(undefined); } catch { /* closing anyway */ }
  engine.kill('SIGTERM');
  sim.kill();
  rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(cond, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) { const v = await cond(); if (v || Date.now() > end) return v; await sleep(50); }
}

// our engine: the first companion of OWN
const engine = spawn(toolPath, [ready.ws, ready.admin, ready.root, OWN], { stdio: ['pipe', 'pipe', 'inherit'] });
const ev = [];
createInterface({ input: engine.stdout }).on('line', (l) => ev.push(JSON.parse(l)));
async function cmd(o) {
  const before = ev.length;
  engine.stdin.write(JSON.stringify(o) + '\n');
  return waitFor(() => ev.slice(before).find((e) => (e.event === 'sending' || e.event === 'result') && e.op === o.op));
}
expect(await waitFor(() => ev.find((e) => e.event === 'ready'), 30000), 'our engine paired with the account and is ready');

// Baileys: the second companion of the same account
const received = [], reactions = [];
async function connectBaileys() {
  const { state, saveCreds } = await useMultiFileAuthState(dir);
  const s = makeWASocket({ waWebSocketUrl: ready.ws, auth: state, logger: pino({ level: 'silent' }), printQRInTerminal: false,
    markOnlineOnConnect: false, shouldSyncHistoryMessage: () => false, getMessage: async () => undefined });
  s.ev.on('creds.update', saveCreds);
  s.ev.on('messages.upsert', ({ messages }) => { for (const m of messages) received.push(m); });
  s.ev.on('messages.reaction', (r) => reactions.push(...r));
  return new Promise((resolve) => s.ev.on('connection.update', async (u) => {
    if (u.qr) await admin('POST', '/admin/scan', { phone: OWN, qr: u.qr });
    if (u.connection === 'open') resolve({ open: true, s });
    if (u.connection === 'close') resolve({ open: false });
  }));
}
let r = await connectBaileys();
if (!r.open) r = await connectBaileys(); // the 515 restart after pairing
expect(r.open, 'Baileys paired with the same account and is open');
sock = r.s;
const state = (await admin('GET', '/admin/state')).json;
const own = state.accounts.find((a) => a.phone === OWN);
expect(own && own.devices.length === 2, `the account has two companions (${JSON.stringify(own?.devices.map((d) => d.id))})`);
expect(sock.user?.id?.startsWith(`${OWN}:2@`), `Baileys is device 2 (${sock.user?.id})`);

const textOf = (m) => m.message?.conversation || m.message?.extendedTextMessage?.text;
const phoneGot = (id) => waitFor(async () => (await admin('GET', `/admin/messages?phone=${PEER}`)).json.messages.find((m) => m.id === id));

// 1. the engine writes to the peer: the peer's phone reads it, Baileys gets our own copy
const s1 = await cmd({ op: 'send', to: PJID, text: 'from the engine, seen by Baileys too' });
expect(s1?.rc === 0, 'the engine sends to the peer');
const p1 = await phoneGot(s1?.id);
expect(p1 && p1.text === 'from the engine, seen by Baileys too', 'the peer\'s phone reads it');
const c1 = await waitFor(() => received.find((m) => m.key.id === s1?.id));
expect(c1 && textOf(c1) === 'from the engine, seen by Baileys too', 'Baileys decrypts the own-device copy');
expect(c1 && c1.key.fromMe === true && c1.key.remoteJid === PJID, `... as ours, in the chat with the peer (${c1?.key.fromMe} ${c1?.key.remoteJid})`);

// 2. Baileys writes to the peer: the engine gets the copy with its destination
const m2 = await sock.sendMessage(PJID, { text: 'from Baileys, seen by the engine too' });
const e2 = await waitFor(() => ev.find((e) => e.event === 'message' && e.id === m2.key.id));
expect(e2 && e2.kind === 'text' && e2.text === 'from Baileys, seen by the engine too', 'the engine decrypts Baileys\' own-device copy');
expect(e2 && e2.dest === PJID, `dest_jid is the peer (${e2?.dest})`);
expect(e2 && e2.sender.startsWith(`${OWN}:2@`), `the sender is Baileys' device (${e2?.sender})`);
const p2 = await phoneGot(m2.key.id);
expect(p2 && p2.text === 'from Baileys, seen by the engine too', 'the peer\'s phone reads Baileys\' text');

// 3. the peer's phone writes to the account: both devices read it
const sent = (await admin('POST', '/admin/send', { phone: PEER, to: OJID, text: 'to both of you' })).json;
const e3 = await waitFor(() => ev.find((e) => e.event === 'message' && e.id === sent.id));
const b3 = await waitFor(() => received.find((m) => m.key.id === sent.id));
expect(e3 && e3.text === 'to both of you' && e3.dest === '', 'the engine reads the peer\'s message (not a copy)');
expect(b3 && textOf(b3) === 'to both of you' && !b3.key.fromMe, 'Baileys reads the peer\'s message');

// 4. reactions to it, each seen by the other device as our own
await sock.sendMessage(PJID, { react: { text: '👀', key: b3.key } });
const e4 = await waitFor(() => ev.find((e) => e.event === 'message' && e.kind === 'reaction' && e.reaction === '👀'));
expect(e4 && e4.dest === PJID && e4.target.id === sent.id, `the engine sees Baileys' reaction as an own-device copy (${e4?.dest} ${e4?.target?.id})`);
const rc = await cmd({ op: 'react', to: PJID, id: sent.id, emoji: '🙌' });
expect(rc?.rc === 0, 'the engine reacts');
const b4 = await waitFor(() => reactions.find((x) => x.reaction.text === '🙌'));
expect(b4 && b4.key.id === sent.id && b4.reaction.key.fromMe === true, `Baileys sees the engine's reaction as ours (${JSON.stringify(b4?.reaction.key)})`);
const p4 = await phoneGot(rc?.id);
expect(p4 && p4.kind === 'reaction' && p4.text === '🙌' && p4.target === sent.id, 'the peer\'s phone sees the engine\'s reaction');

const errors = ev.filter((e) => e.event === 'error');
expect(errors.length === 0, `no engine errors (${JSON.stringify(errors)})`);
console.log(`${passed} passed, ${failed} failed`);
cleanup(failed ? 1 : 0);
