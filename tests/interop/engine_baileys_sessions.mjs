// Live sessions between our engine (engine_tool) and unmodified Baileys 7.0.0-rc14 on wa-sim:
//  1. 1:1 by LID: the engine writes to A's LID and A (Baileys) reads it; A answers to the
//     engine's LID and the engine reads it;
//  2. chat states in a group: the engine's "composing" reaches A and B as a presence of the group
//     with the engine's LID as participant; B's reaches the engine with B as participant;
//  3. a retry without keys: the engine's message to A is damaged on the way while A is away and
//     the engine loses its session with A; A (Baileys asks again without keys the first time)
//     gets it anyway: the engine fetches A's keys and sends it again;
//  4. a re-registered contact: A logs out and a fresh Baileys pairs as the same device number (a
//     new identity at a known address); its first message reaches the engine, which raises an
//     identity change first; the engine's answer on the new session reaches the new A;
//  5. phash: a second Baileys device of B pairs without anybody being told; the engine's next
//     message goes to the old device list, the ack's phash tells it so, and the message after
//     reaches the new device.
//   node tests/interop/engine_baileys_sessions.mjs path/to/wa-sim path/to/engine_tool
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import makeWASocket, { DisconnectReason, useMultiFileAuthState } from '@whiskeysockets/baileys';
import pino from 'pino';
import { startSim } from './wa_sim.mjs';

const [simPath, toolPath] = process.argv.slice(2);
if (!simPath || !toolPath) { console.error('usage: engine_baileys_sessions.mjs <wa-sim> <engine_tool>'); process.exit(2); }
const ENGINE = '15550000071', A = '15550000072', B = '15550000073';
const LID = { [ENGINE]: '100000000000071', [A]: '100000000000072', [B]: '100000000000073' };
const pnJid = (p) => `${p}@s.whatsapp.net`;
const lidJid = (p) => `${LID[p]}@lid`;
let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) { passed++; console.log('ok   ' + what); } else { failed++; console.error('FAIL ' + what); } };

const sim = await startSim(simPath, ['--account', `${ENGINE}:${LID[ENGINE]}:Engine`, '--account', `${A}:${LID[A]}:Anna`,
  '--account', `${B}:${LID[B]}:Ben`]);
const { ready, admin } = sim;
const dirs = [];
const socks = [];
const logger = pino({ level: 'silent' });
const deadline = setTimeout(() => { console.error('FAIL timed out'); cleanup(1); }, 170000);
function cleanup(code) {
  clearTimeout(deadline);
  for (const s of socks) { try { s.end(undefined); } catch { /* closing anyway */ } }
  engine.kill('SIGTERM');
  sim.kill();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  process.exit(code);
}
process.on('unhandledRejection', (e) => { console.error('FAIL unhandled rejection', e); cleanup(1); });
process.on('exit', () => sim.kill('SIGTERM'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(cond, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) { const v = await cond(); if (v || Date.now() > end) return v; await sleep(50); }
}
const textOf = (m) => m.message?.conversation || m.message?.extendedTextMessage?.text;

// our engine, as a child process speaking JSON lines
const engine = spawn(toolPath, [ready.ws, ready.admin, ready.root, ENGINE], { stdio: ['pipe', 'pipe', 'inherit'] });
const ev = [];
createInterface({ input: engine.stdout }).on('line', (l) => ev.push(JSON.parse(l)));
async function cmd(o) {
  const before = ev.length;
  engine.stdin.write(JSON.stringify(o) + '\n');
  return waitFor(() => ev.slice(before).find((e) => (e.event === 'sending' || e.event === 'result' || e.event === 'forgot') &&
    (e.op === o.op || e.event === 'forgot')));
}
const engineMsg = (pred, ms) => waitFor(() => ev.find((e) => e.event === 'message' && pred(e)), ms);
const groupResult = (req) => waitFor(() => ev.find((e) => e.event === 'group_result' && e.req === req));
expect(await waitFor(() => ev.find((e) => e.event === 'ready'), 30000), 'our engine paired and is ready');

// Baileys devices; dir: the auth state (a new one pairs a new device)
async function device(name, phone) {
  const dir = mkdtempSync(join(tmpdir(), `wabridge-es-${name}-`));
  dirs.push(dir);
  const d = { name, phone, dir, upserts: [], presences: [], sock: null };
  d.connect = async () => {
    for (let i = 0; i < 3; i++) {
      const { state, saveCreds } = await useMultiFileAuthState(dir);
      const sock = makeWASocket({ waWebSocketUrl: ready.ws, auth: state, logger, printQRInTerminal: false,
        connectTimeoutMs: 15000, keepAliveIntervalMs: 30000, markOnlineOnConnect: false,
        shouldSyncHistoryMessage: () => false, getMessage: async () => undefined });
      socks.push(sock);
      sock.ev.on('creds.update', saveCreds);
      sock.ev.on('messages.upsert', ({ messages }) => { for (const m of messages) d.upserts.push(m); });
      sock.ev.on('presence.update', (p) => d.presences.push(p));
      const r = await new Promise((resolve) => sock.ev.on('connection.update', async (u) => {
        if (u.qr) await admin('POST', '/admin/scan', { phone, qr: u.qr });
        if (u.connection === 'open') resolve({ how: 'open' });
        if (u.connection === 'close') resolve({ how: 'close', code: u.lastDisconnect?.error?.output?.statusCode });
      }));
      if (r.how === 'open') { d.sock = sock; return true; }
      if (r.code !== DisconnectReason.restartRequired) return false;
    }
    return false;
  };
  d.got = (text, ms) => waitFor(() => d.upserts.find((m) => textOf(m) === text), ms);
  await d.connect();
  return d;
}
let a = await device('a', A);
const b = await device('b', B);
expect(a.sock && b.sock, 'A and B (Baileys) paired and open');
const aDev = a.sock.authState.creds.me.id.split(':')[1].split('@')[0];

// 1. 1:1 by LID
const l1 = await cmd({ op: 'send', to: lidJid(A), text: 'to your LID' });
const atA = await a.got('to your LID');
expect(l1?.rc === 0 && atA, 'A (Baileys) reads the engine\'s message to its LID');
expect(atA?.key.remoteJid?.endsWith('@lid'), `as a LID chat (${atA?.key.remoteJid})`);
expect(await waitFor(() => ev.find((e) => e.event === 'sent' && e.id === l1?.id)), 'the server acked it');
const fromA = await a.sock.sendMessage(lidJid(ENGINE), { text: 'to the engine\'s LID' });
const eA = await engineMsg((e) => e.id === fromA.key.id);
expect(eA?.text === 'to the engine\'s LID' && eA.sender.startsWith(`${LID[A]}:`),
  `the engine reads A's answer to its LID (from ${eA?.sender})`);

// 2. chat states in a group
const created = await cmd({ op: 'group_create', subject: 'Typing club', participants: [pnJid(A), pnJid(B)] });
const G = (await groupResult(created?.req))?.group;
expect(G?.endsWith('@g.us'), `the engine made a group with A and B (${G})`);
await sleep(300);
const cs = await cmd({ op: 'chatstate', to: G, state: 'composing' });
const typing = (d, who, what) => waitFor(() => d.presences.find((p) => p.id === G && p.presences[who]?.lastKnownPresence === what));
expect(cs?.rc === 0 && await typing(a, lidJid(ENGINE), 'composing') && await typing(b, lidJid(ENGINE), 'composing'),
  'A and B see the engine composing in the group');
await b.sock.sendPresenceUpdate('composing', G);
const eCs = await waitFor(() => ev.find((e) => e.event === 'chatstate' && e.text === `${G} ${lidJid(B)} composing`));
expect(eCs, `the engine sees B composing in the group (${eCs?.text})`);
expect(await typing(a, lidJid(B), 'composing'), 'so does A');
await b.sock.sendPresenceUpdate('paused', G);
expect(await waitFor(() => ev.find((e) => e.event === 'chatstate' && e.text === `${G} ${lidJid(B)} paused`)), 'and B pausing');

// 3. a retry without keys: A is away, the message is damaged, the engine loses its session
a.sock.end(undefined);
a.sock = null;
await sleep(300);
await admin('POST', '/admin/corrupt-next', { phone: A, count: 1 });
const r1 = await cmd({ op: 'send', to: pnJid(A), text: 'through the static' });
expect(r1?.rc === 0 && await waitFor(() => ev.find((e) => e.event === 'sent' && e.id === r1.id)), 'the engine sends while A is away');
const forgot = await cmd({ op: 'forget_session', address: `${A}:${aDev}` });
expect(forgot?.rc === 0, `the engine forgets its session with ${A}:${aDev}`);
expect(await a.connect(), 'A comes back');
expect(await a.got('through the static', 20000), 'A reads it: asked again without keys, the engine fetched A\'s and sent it again');
const retried = ev.filter((e) => e.event === 'error');
expect(retried.length === 0, `no engine errors (${JSON.stringify(retried)})`);

// 4. A re-registers: the same device number, a new identity
await admin('POST', '/admin/reuse-device-ids', { reuse: true });
await a.sock.logout();
await sleep(500);
const oldA = a;
a = await device('a2', A);
const aDev2 = a.sock?.authState.creds.me.id.split(':')[1].split('@')[0];
expect(a.sock && aDev2 === aDev && a.sock.authState.creds.signedIdentityKey.public.toString('hex') !==
  oldA.sock?.authState?.creds?.signedIdentityKey?.public?.toString('hex'), `the new A is device ${aDev2} again, with a new identity`);
const fromNewA = await a.sock.sendMessage(pnJid(ENGINE), { text: 'new install, same number' });
const eNew = await engineMsg((e) => e.id === fromNewA.key.id);
expect(eNew?.text === 'new install, same number', 'the engine reads the new A\'s first message');
const idx = ev.findIndex((e) => e.event === 'identity_change' && e.jid === `${A}:${aDev}@s.whatsapp.net`);
expect(idx >= 0 && ev[idx].met && ev[idx].taken === ev[idx].jid && ev[idx].announced === false,
  `the engine raised the identity change of ${ev[idx]?.jid}`);
expect(idx >= 0 && idx < ev.indexOf(eNew), 'before the message');
const back = await cmd({ op: 'send', to: pnJid(A), text: 'welcome back' });
expect(back?.rc === 0 && await a.got('welcome back'), 'the new A reads the engine\'s answer (the new session)');

// 5. phash: B links a device nobody hears of
const p0 = await cmd({ op: 'send', to: pnJid(B), text: 'B, one device' });
expect(p0?.rc === 0 && await b.got('B, one device'), 'the engine writes to B (its device list is kept)');
await admin('POST', '/admin/quiet-devices', { quiet: true });
const b2 = await device('b2', B);
await admin('POST', '/admin/quiet-devices', { quiet: false });
expect(b2.sock, 'B links a second Baileys device quietly');
const p1 = await cmd({ op: 'send', to: pnJid(B), text: 'from the old list' });
expect(p1?.rc === 0 && await b.got('from the old list'), 'B\'s first device reads the next message');
expect(await waitFor(() => ev.find((e) => e.event === 'sent' && e.id === p1.id)), 'acked (with the server\'s phash)');
await sleep(500);
expect(!b2.upserts.find((m) => textOf(m) === 'from the old list'), 'the new device did not get it');
const p2 = await cmd({ op: 'send', to: pnJid(B), text: 'after the phash' });
expect(p2?.rc === 0 && await b2.got('after the phash') && await b.got('after the phash'), 'the message after reaches both of B\'s devices');

const errors = ev.filter((e) => e.event === 'error');
expect(errors.length === 0, `no engine errors (${JSON.stringify(errors)})`);
console.log(`${passed} passed, ${failed} failed`);
cleanup(failed ? 1 : 0);
