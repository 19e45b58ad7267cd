// Live peers: our engine (engine_tool) and unmodified Baileys 7.0.0-rc14, each on its own account of
// wa-sim, exchange every message kind the bridge needs, both ways: replies with mentions, edits,
// reactions (and their removal), revokes, read and played receipts (several ids in one receipt),
// presence (subscription, available, unavailable with last seen) and chat states (composing,
// recording, paused). Each side checks what the other sent in its own terms: the engine prints
// wa_received_parse's view, Baileys raises its usual events (messages.upsert / .update / .reaction,
// presence.update).
//   node tests/interop/engine_baileys_kinds.mjs path/to/wa-sim path/to/engine_tool
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import makeWASocket, { proto, useMultiFileAuthState } from '@whiskeysockets/baileys';
import pino from 'pino';
import { startSim } from './wa_sim.mjs';

const [simPath, toolPath] = process.argv.slice(2);
if (!simPath || !toolPath) { console.error('usage: engine_baileys_kinds.mjs <wa-sim> <engine_tool>'); process.exit(2); }
const ENGINE = '15550000041', BAILEYS = '15550000042';
const EJID = `${ENGINE}@s.whatsapp.net`, BJID = `${BAILEYS}@s.whatsapp.net`;
let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) { passed++; console.log('ok   ' + what); } else { failed++; console.error('FAIL ' + what); } };

const sim = await startSim(simPath, ['--account', `${ENGINE}:100000000000041:Engine`, '--account', `${BAILEYS}:100000000000042:Baileys`]);
const { ready } = sim;
const admin = async (method, path, body) => (await sim.admin(method, path, body)).status;
const dir = mkdtempSync(join(tmpdir(), 'wabridge-engine-kinds-'));
let sock = null;
const deadline = setTimeout(() => { console.error('FAIL timed out'); cleanup(1); }, 120000);
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
  for (;;) { const v = cond(); if (v || Date.now() > end) return v; await sleep(50); }
}

// our engine, as a child process speaking JSON lines
const engine = spawn(toolPath, [ready.ws, ready.admin, ready.root, ENGINE], { stdio: ['pipe', 'pipe', 'inherit'] });
const ev = [];
createInterface({ input: engine.stdout }).on('line', (l) => ev.push(JSON.parse(l)));
let seq = 0;
// sends a command and waits for its answer ("sending" or "result")
async function cmd(o) {
  const before = ev.length;
  engine.stdin.write(JSON.stringify(o) + '\n');
  seq++;
  return waitFor(() => ev.slice(before).find((e) => (e.event === 'sending' || e.event === 'result') && e.op === o.op));
}
expect(await waitFor(() => ev.find((e) => e.event === 'ready'), 30000), 'our engine paired and is ready');

// Baileys on the other account
const received = [], updates = [], reactions = [], presences = [];
const sentContent = new Map();
async function connectBaileys() {
  const { state, saveCreds } = await useMultiFileAuthState(dir);
  const s = makeWASocket({ waWebSocketUrl: ready.ws, auth: state, logger: pino({ level: 'silent' }), printQRInTerminal: false,
    markOnlineOnConnect: false, shouldSyncHistoryMessage: () => false,
    getMessage: async (key) => sentContent.get(key.id) });
  s.ev.on('creds.update', saveCreds);
  s.ev.on('messages.upsert', ({ messages }) => { for (const m of messages) received.push(m); });
  s.ev.on('messages.update', (u) => updates.push(...u));
  s.ev.on('messages.reaction', (r) => reactions.push(...r));
  s.ev.on('presence.update', (p) => presences.push(p));
  return new Promise((resolve) => s.ev.on('connection.update', async (u) => {
    if (u.qr) await admin('POST', '/admin/scan', { phone: BAILEYS, qr: u.qr });
    if (u.connection === 'open') resolve({ open: true, s });
    if (u.connection === 'close') resolve({ open: false });
  }));
}
let r = await connectBaileys();
if (!r.open) r = await connectBaileys(); // the 515 restart after pairing
expect(r.open, 'Baileys paired and is open');
sock = r.s;
// Baileys sends presences only with a push name (a phone's pair-success would carry it)
sock.ev.emit('creds.update', { me: { ...sock.authState.creds.me, name: 'Baileys' } });

const textOf = (m) => m.message?.conversation || m.message?.extendedTextMessage?.text;
const engineMsg = (pred, ms) => waitFor(() => ev.find((e) => e.event === 'message' && pred(e)), ms);
const bMsg = (pred, ms) => waitFor(() => received.find((m) => !m.key.fromMe && pred(m)), ms);
async function bSend(content, opts) {
  const m = await sock.sendMessage(EJID, content, opts);
  sentContent.set(m.key.id, m.message);
  return m;
}

// --- Baileys -> engine ---
const b1 = await bSend({ text: 'first from Baileys' });
const e1 = await engineMsg((e) => e.id === b1.key.id);
expect(e1 && e1.kind === 'text' && e1.text === 'first from Baileys', 'a plain text arrives as kind text');

// the engine writes first so that Baileys has something to quote
const s1 = await cmd({ op: 'send', to: BJID, text: 'first from the engine' });
const inB1 = await bMsg((m) => m.key.id === s1?.id);
expect(s1?.rc === 0 && inB1 && textOf(inB1) === 'first from the engine', 'Baileys reads the engine\'s text');

const b2 = await bSend({ text: `@${ENGINE} have a look`, mentions: [EJID] }, { quoted: inB1 });
const e2 = await engineMsg((e) => e.id === b2.key.id);
expect(e2 && e2.kind === 'text' && e2.text === `@${ENGINE} have a look`, 'Baileys\' reply arrives as text');
expect(e2 && e2.mentions.length === 1 && e2.mentions[0] === EJID, `its mention is parsed (${JSON.stringify(e2?.mentions)})`);
expect(e2 && e2.reply_id === s1?.id && e2.reply_text === 'first from the engine',
  `it quotes the engine's message (${e2?.reply_id}, ${e2?.reply_text})`);
expect(e2 && e2.reply_sender !== '', `the quoted sender is named (${e2?.reply_sender})`);

await bSend({ text: 'first from Baileys, edited', edit: b1.key });
const e3 = await engineMsg((e) => e.kind === 'edit');
expect(e3 && e3.target.id === b1.key.id && e3.text === 'first from Baileys, edited', 'Baileys\' edit arrives as kind edit of the right message');

await bSend({ react: { text: '👍', key: inB1.key } });
const e4 = await engineMsg((e) => e.kind === 'reaction' && e.reaction === '👍');
expect(e4 && e4.target.id === s1?.id && e4.type === 'reaction', 'Baileys\' reaction arrives as kind reaction (stanza type reaction) on our message');
await bSend({ react: { text: '', key: inB1.key } });
expect(await engineMsg((e) => e.kind === 'reaction' && e.reaction === '' && e.target.id === s1?.id), 'Baileys\' reaction removal arrives (empty emoji)');

await bSend({ delete: b2.key });
const e5 = await engineMsg((e) => e.kind === 'revoke');
expect(e5 && e5.target.id === b2.key.id && e5.target.from_me === true, 'Baileys\' revoke arrives as kind revoke of its message');

// read receipts: the engine sends two more, Baileys reads all three at once
const s2 = await cmd({ op: 'send', to: BJID, text: 'two' });
const s3 = await cmd({ op: 'send', to: BJID, text: 'three' });
const inB2 = await bMsg((m) => m.key.id === s2?.id), inB3 = await bMsg((m) => m.key.id === s3?.id);
expect(inB2 && inB3, 'Baileys got two more texts');
await sock.readMessages([inB1.key, inB2.key, inB3.key]);
for (const id of [s1?.id, s2?.id, s3?.id])
  expect(await waitFor(() => ev.find((e) => e.event === 'receipt' && e.text.startsWith(`${id} read `))), `the engine got a read receipt for ${id}`);

// presence: the engine subscribes, Baileys comes and goes
expect((await cmd({ op: 'subscribe', jid: BJID }))?.rc === 0, 'the engine subscribes to Baileys\' presence');
expect(await waitFor(() => ev.find((e) => e.event === 'presence' && e.text === `${BJID} unavailable`)), 'the server answers the subscription (unavailable)');
await sock.sendPresenceUpdate('available');
expect(await waitFor(() => ev.find((e) => e.event === 'presence' && e.text === `${BJID} available`)), 'Baileys available reaches the engine');
await sock.sendPresenceUpdate('unavailable');
const off = await waitFor(() => ev.find((e) => e.event === 'presence' && e.text === `${BJID} unavailable` && e.ms > 0));
expect(off && Math.abs(off.ms - Date.now() / 1000) < 60, `Baileys unavailable reaches the engine with last seen (${off?.ms})`);

// chat states
for (const [state, want] of [['composing', 'composing'], ['recording', 'recording'], ['paused', 'paused']]) {
  await sock.sendPresenceUpdate(state, EJID);
  expect(await waitFor(() => ev.find((e) => e.event === 'chatstate' && e.text === `${BJID} ${BJID} ${want}`)), `Baileys' ${state} reaches the engine`);
}

// --- engine -> Baileys ---
const s4 = await cmd({ op: 'send', to: BJID, text: `@${BAILEYS} answer please`, mentions: [BJID], reply_id: b1.key.id,
  reply_sender: BJID, reply_text: 'first from Baileys' });
const inB4 = await bMsg((m) => m.key.id === s4?.id);
const ci = inB4?.message?.extendedTextMessage?.contextInfo;
expect(inB4 && textOf(inB4) === `@${BAILEYS} answer please`, 'Baileys reads the engine\'s reply');
expect(ci && ci.mentionedJid?.length === 1 && ci.mentionedJid[0] === BJID, `Baileys sees the mention (${JSON.stringify(ci?.mentionedJid)})`);
expect(ci && ci.stanzaId === b1.key.id && ci.participant === BJID && ci.quotedMessage?.conversation === 'first from Baileys',
  'Baileys sees the quote (stanzaId, participant, quotedMessage)');

const ed = await cmd({ op: 'edit', to: BJID, id: s4?.id, text: 'answer please (edited)' });
expect(ed?.rc === 0, 'the engine sends an edit');
const upd = await waitFor(() => updates.find((u) => u.key.id === s4?.id && u.update?.message?.editedMessage));
const edited = upd?.update.message.editedMessage.message;
expect(edited && (edited.conversation || edited.extendedTextMessage?.text) === 'answer please (edited)',
  `Baileys applies the edit to the right message (${JSON.stringify(edited)})`);

const rc1 = await cmd({ op: 'react', to: BJID, id: b1.key.id, emoji: '🎉' });
const rx = await waitFor(() => reactions.find((x) => x.key.id === b1.key.id && x.reaction.text === '🎉'));
expect(rc1?.rc === 0 && rx, 'Baileys sees the engine\'s reaction on its message');
expect(rx && rx.key.fromMe === true, `... as a reaction to its own message (key.fromMe ${rx?.key.fromMe})`);
await cmd({ op: 'react', to: BJID, id: b1.key.id, emoji: '' });
expect(await waitFor(() => reactions.find((x) => x.key.id === b1.key.id && x.reaction.text === '')), 'Baileys sees the reaction removed');

const rv = await cmd({ op: 'revoke', to: BJID, id: s2?.id });
const gone = await waitFor(() => updates.find((u) => u.key.id === s2?.id && u.update?.messageStubType === proto.WebMessageInfo.StubType.REVOKE));
expect(rv?.rc === 0 && gone, 'Baileys deletes the revoked message');

// the engine reads Baileys' messages: two ids in one receipt, then played
const bb1 = await bSend({ text: 'read me 1' }), bb2 = await bSend({ text: 'read me 2' });
expect(await engineMsg((e) => e.id === bb2.key.id), 'the engine got two more texts');
const rd = await cmd({ op: 'read', chat: BJID, ids: [bb1.key.id, bb2.key.id] });
expect(rd?.rc === 0, 'the engine sends one read receipt for both');
// (Baileys folds an update into a message still in its event buffer: look at both)
const statusOf = (id, status) => updates.find((u) => u.key.id === id && u.update?.status === status) ||
  received.find((m) => m.key.id === id && m.status === status);
for (const k of [bb1.key, bb2.key])
  expect(await waitFor(() => statusOf(k.id, proto.WebMessageInfo.Status.READ)), `Baileys marks ${k.id} read`);
await cmd({ op: 'read', chat: BJID, ids: [bb1.key.id], played: true });
expect(await waitFor(() => statusOf(bb1.key.id, proto.WebMessageInfo.Status.PLAYED)), 'Baileys marks it played');

// presence of the engine, seen by Baileys
await sock.presenceSubscribe(EJID);
const presOf = (want) => waitFor(() => presences.find((p) => p.id === EJID && Object.values(p.presences).some((x) => want(x))));
expect(await presOf((x) => x.lastKnownPresence === 'unavailable'), 'Baileys\' subscription is answered');
expect((await cmd({ op: 'presence', available: true }))?.rc === 0, 'the engine says it is available');
expect(await presOf((x) => x.lastKnownPresence === 'available'), 'Baileys sees the engine available');
await cmd({ op: 'presence', available: false });
expect(await presOf((x) => x.lastKnownPresence === 'unavailable' && x.lastSeen > 0), 'Baileys sees the engine unavailable, with last seen');

// chat states of the engine, seen by Baileys (paused reads as available there)
for (const [state, want] of [['composing', 'composing'], ['recording', 'recording'], ['paused', 'available']]) {
  const n = presences.length;
  await cmd({ op: 'chatstate', to: BJID, state });
  expect(await waitFor(() => presences.slice(n).find((p) => p.id === EJID && Object.values(p.presences).some((x) => x.lastKnownPresence === want))),
    `Baileys sees the engine ${state}`);
}

const errors = ev.filter((e) => e.event === 'error');
expect(errors.length === 0, `no engine errors (${JSON.stringify(errors)})`);
console.log(`${passed} passed, ${failed} failed`);
cleanup(failed ? 1 : 0);
