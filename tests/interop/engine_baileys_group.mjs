// Live group: our engine (engine_tool) and TWO unmodified Baileys 7.0.0-rc14 clients (A and B),
// each on its own account of wa-sim, in one LID group. Checked: B first writes to the engine's phone
// number, then makes a group with the engine and writes first: its sender key comes on the DM's
// session (Baileys keeps it by LID), addressed by LID, and the engine reads it without a retry
// (each engine error fails the test); the engine creates the group with
// A and B (group_create; both learn it from the create notification); texts go all ways among the
// three (the engine's SKDM pairwise then its skmsg; Baileys' keys reach the engine); the engine
// removes B: its sender key rotates, so its next text reaches A and not B, and B - which still
// holds the engine's old key - cannot decrypt that skmsg (taken from wa-sim); the engine adds B
// back (B reads the next text: the new key reached it) and makes A an admin; A (Baileys) removes
// B: the engine hears it and rotates again (B cannot decrypt what follows, A can); A removes the
// engine: the engine hears its own removal, its sends fail and the group info is refused.
//   node tests/interop/engine_baileys_group.mjs path/to/wa-sim path/to/engine_tool
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import makeWASocket, { DisconnectReason, jidDecode, useMultiFileAuthState } from '@whiskeysockets/baileys';
import pino from 'pino';
import { startSim } from './wa_sim.mjs';

const [simPath, toolPath] = process.argv.slice(2);
if (!simPath || !toolPath) { console.error('usage: engine_baileys_group.mjs <wa-sim> <engine_tool>'); process.exit(2); }
const ENGINE = '15550000061', A = '15550000062', B = '15550000063';
const LID = { [ENGINE]: '100000000000061', [A]: '100000000000062', [B]: '100000000000063' };
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
const deadline = setTimeout(() => { console.error('FAIL timed out'); cleanup(1); }, 150000);
function cleanup(code) {
  clearTimeout(deadline);
  for (const s of socks) { try { s.end(undefined); } catch { /* closing anyway */ } }
  engine.kill('SIGTERM');
  sim.kill();
  for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 5 });
  process.exit(code);
}
process.on('unhandledRejection', (e) => { console.error('FAIL unhandled rejection', e); cleanup(1); });
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
  return waitFor(() => ev.slice(before).find((e) => (e.event === 'sending' || e.event === 'result') && e.op === o.op));
}
const engineMsg = (pred, ms) => waitFor(() => ev.find((e) => e.event === 'message' && pred(e)), ms);
const groupResult = (req) => waitFor(() => ev.find((e) => e.event === 'group_result' && e.req === req));
const groupEvent = (pred) => waitFor(() => ev.find((e) => e.event === 'group' && pred(e)));
expect(await waitFor(() => ev.find((e) => e.event === 'ready'), 30000), 'our engine paired and is ready');
const engineLid = ev.find((e) => e.event === 'connected')?.lid; // "LID:1@lid": the engine's group identity
expect(engineLid?.startsWith(`${LID[ENGINE]}:`), `the engine knows its LID device (${engineLid})`);
expect(await waitFor(() => ev.find((e) => e.event === 'group_result' && e.req === 0 && e.op === 'participating' && e.code === 0)),
  'the engine asked for its groups after login');

// two Baileys clients
async function device(name, phone) {
  const dir = mkdtempSync(join(tmpdir(), `wabridge-eg-${name}-`));
  dirs.push(dir);
  const d = { name, upserts: [], groupEvents: [], groupsUpserted: [], sock: null };
  async function connect() {
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    const sock = makeWASocket({ waWebSocketUrl: ready.ws, auth: state, logger, printQRInTerminal: false,
      connectTimeoutMs: 15000, keepAliveIntervalMs: 30000, markOnlineOnConnect: false,
      shouldSyncHistoryMessage: () => false, getMessage: async () => undefined });
    socks.push(sock);
    sock.ev.on('creds.update', saveCreds);
    sock.ev.on('messages.upsert', ({ messages }) => { for (const m of messages) d.upserts.push(m); });
    sock.ev.on('group-participants.update', (u) => d.groupEvents.push(u));
    sock.ev.on('groups.upsert', (gs) => { for (const g of gs) d.groupsUpserted.push(g); });
    return new Promise((resolve) => sock.ev.on('connection.update', async (u) => {
      if (u.qr) await admin('POST', '/admin/scan', { phone, qr: u.qr });
      if (u.connection === 'open') resolve({ how: 'open', sock });
      if (u.connection === 'close') resolve({ how: 'close', code: u.lastDisconnect?.error?.output?.statusCode });
    }));
  }
  for (let i = 0; i < 3 && !d.sock; i++) {
    const r = await connect();
    if (r.how === 'open') d.sock = r.sock;
    else if (r.code !== DisconnectReason.restartRequired) break;
  }
  d.got = (text, ms) => waitFor(() => d.upserts.find((m) => textOf(m) === text), ms);
  return d;
}
const a = await device('a', A);
const b = await device('b', B);
expect(a.sock && b.sock, 'A and B (Baileys) paired and open');

// 0. B writes to the engine's phone number before any group
const dmB = await b.sock.sendMessage(pnJid(ENGINE), { text: 'B writes to the engine first' });
expect(await engineMsg((e) => e.id === dmB.key.id && e.text === 'B writes to the engine first'),
  'the engine decrypts B\'s text to its phone number');
const g0 = await b.sock.groupCreate('B first', [pnJid(ENGINE)]);
expect(g0?.id?.endsWith('@g.us'), `B creates a group with the engine (${g0?.id})`);
const fromB0 = await b.sock.sendMessage(g0.id, { text: 'B writes first' });
const eB0 = await engineMsg((e) => e.id === fromB0.key.id);
expect(eB0 && eB0.chat === g0.id && eB0.text === 'B writes first' && eB0.parts.length === 2 &&
  eB0.parts[0].skdm_only && eB0.parts[1].skmsg, 'the engine reads B\'s key on the DM\'s session (by LID now) and the text');

// 1. the engine creates the group
const created = await cmd({ op: 'group_create', subject: 'Engine and friends', participants: [pnJid(A), pnJid(B)] });
expect(created?.rc === 0 && created.req > 0, `group_create is sent (req ${created?.req})`);
const cres = await groupResult(created?.req);
const G = cres?.group;
expect(cres?.code === 0 && G?.endsWith('@g.us'), `the engine gets the new group (${G})`);
expect(cres?.info?.addressing_mode === 'lid' && cres.info.participants.length === 3 &&
  cres.info.participants.some((p) => p.jid === lidJid(ENGINE) && p.superadmin), 'three members, the engine is superadmin, LID-addressed');
expect(await waitFor(() => a.groupsUpserted.find((g) => g.id === G)) && await waitFor(() => b.groupsUpserted.find((g) => g.id === G)),
  'A and B learn of it from the create notification');

// 2. texts all ways
const s1 = await cmd({ op: 'group_send', group: G, text: 'hello from the engine' });
const atA = await a.got('hello from the engine'), atB = await b.got('hello from the engine');
expect(s1?.rc === 0 && atA && atB, 'A and B decrypt the engine\'s group text (SKDM pairwise, then skmsg)');
expect(atA?.key.remoteJid === G && atA.key.participant === lidJid(ENGINE), `from the engine's LID (${atA?.key.participant})`);
expect(await waitFor(() => ev.find((e) => e.event === 'sent' && e.id === s1?.id)), 'the server acked it');
const s1b = await cmd({ op: 'group_send', group: G, text: 'engine again' });
expect(s1b?.rc === 0 && await a.got('engine again') && await b.got('engine again'), 'a second text (skmsg only) reaches both');
const fromA = await a.sock.sendMessage(G, { text: 'A writes to the group' });
const eA = await engineMsg((e) => e.id === fromA.key.id);
expect(eA && eA.chat === G && eA.kind === 'text' && eA.text === 'A writes to the group' && eA.sender.startsWith(`${LID[A]}:`),
  `the engine decrypts A's group text (sender ${eA?.sender})`);
expect(eA && eA.parts.length === 2 && eA.parts[0].skdm_only && eA.parts[1].skmsg, 'A\'s key came pairwise, the text as skmsg');
expect(await b.got('A writes to the group'), 'B decrypts A\'s text');
const fromB = await b.sock.sendMessage(G, { text: 'B writes to the group' });
expect(await engineMsg((e) => e.id === fromB.key.id && e.text === 'B writes to the group'), 'the engine decrypts B\'s group text');
expect(await a.got('B writes to the group'), 'A decrypts B\'s text');
const fromA2 = await a.sock.sendMessage(G, { text: 'A again' });
const eA2 = await engineMsg((e) => e.id === fromA2.key.id);
expect(eA2 && eA2.text === 'A again' && eA2.parts.length === 1 && eA2.parts[0].skmsg, 'A\'s second text is skmsg only and decrypts');

// 3. the engine removes B: its key rotates
// the sender-key record B keeps for the engine's device in G (Baileys' "group::name::device")
const { device: engineDev } = jidDecode(engineLid);
const keyName = `${G}::${LID[ENGINE]}_1::${engineDev || 0}`;
const { [keyName]: rec } = await b.sock.authState.keys.get('sender-key', [keyName]);
const bOldKey = rec ? JSON.parse(Buffer.from(rec).toString('utf-8')).map((s) => s.senderKeyId) : [];
expect(bOldKey.length === 1, `B holds the engine's sender key (id ${bOldKey[0]})`);
const rm = await cmd({ op: 'group_participants', group: G, action: 'remove', participants: [pnJid(B)] });
const rmRes = await groupResult(rm?.req);
expect(rmRes?.code === 0 && rmRes.participants.length === 1 && rmRes.participants[0].error === 0, 'the engine removes B');
expect(await waitFor(() => b.groupEvents.find((e) => e.id === G && e.action === 'remove')), 'B sees its removal');
expect(await groupEvent((e) => e.group === G && e.changes.some((c) => c.type === 'remove' && c.participants.includes(lidJid(B)))),
  'the engine gets the remove notification');
const bBefore = b.upserts.length;
const s2 = await cmd({ op: 'group_send', group: G, text: 'after B was removed' });
expect(s2?.rc === 0 && await a.got('after B was removed'), 'A decrypts the engine\'s text on its new key');
await sleep(800);
expect(!b.upserts.slice(bBefore).some((m) => textOf(m) === 'after B was removed'), 'B does not receive it');
let gs = (await admin('GET', `/admin/group?jid=${encodeURIComponent(G)}`)).json;
expect(gs.last?.sender === engineLid && gs.last.id === s2?.id, 'wa-sim kept the skmsg of that text');
let bErr;
try { await b.sock.signalRepository.decryptGroupMessage({ group: G, authorJid: engineLid, msg: Buffer.from(gs.last.skmsg, 'hex') }); } catch (e) { bErr = e.message; }
expect(!!bErr, `B cannot decrypt it with the engine's old key (${bErr})`);

// 4. B comes back; A becomes an admin and removes B: the engine rotates on A's removal
const add = await cmd({ op: 'group_participants', group: G, action: 'add', participants: [pnJid(B)] });
expect((await groupResult(add?.req))?.participants?.[0]?.error === 0, 'the engine adds B back');
expect(await waitFor(() => b.groupEvents.find((e) => e.id === G && e.action === 'add')), 'B sees it was added');
await cmd({ op: 'group_send', group: G, text: 'welcome back B' });
expect(await b.got('welcome back B'), 'B decrypts the engine\'s next text (the new key reached it)');
const pr = await cmd({ op: 'group_participants', group: G, action: 'promote', participants: [pnJid(A)] });
expect((await groupResult(pr?.req))?.code === 0, 'the engine makes A an admin');
expect(await waitFor(() => a.groupEvents.find((e) => e.id === G && e.action === 'promote')), 'A sees its promotion');
const res = await a.sock.groupParticipantsUpdate(G, [pnJid(B)], 'remove');
expect(res.length === 1 && res[0].status === '200', 'A (Baileys) removes B');
expect(await groupEvent((e) => e.group === G && e.author?.startsWith(LID[A]) && e.changes.some((c) => c.type === 'remove' && c.participants.includes(lidJid(B)))),
  'the engine hears A remove B');
const bBefore2 = b.upserts.length;
const s3 = await cmd({ op: 'group_send', group: G, text: 'after A removed B' });
expect(s3?.rc === 0 && await a.got('after A removed B'), 'A decrypts the engine\'s next text');
await sleep(500);
expect(!b.upserts.slice(bBefore2).some((m) => textOf(m) === 'after A removed B'), 'B does not receive it');
gs = (await admin('GET', `/admin/group?jid=${encodeURIComponent(G)}`)).json;
let bErr2;
try { await b.sock.signalRepository.decryptGroupMessage({ group: G, authorJid: engineLid, msg: Buffer.from(gs.last.skmsg, 'hex') }); } catch (e) { bErr2 = e.message; }
expect(gs.last?.id === s3?.id && !!bErr2, `B cannot decrypt it: the engine rotated again (${bErr2})`);

// 5. A removes the engine
const res2 = await a.sock.groupParticipantsUpdate(G, [pnJid(ENGINE)], 'remove');
expect(res2.length === 1 && res2[0].status === '200', 'A removes the engine');
expect(await groupEvent((e) => e.group === G && e.changes.some((c) => c.type === 'remove' && c.participants.includes(lidJid(ENGINE)))),
  'the engine hears its own removal');
const s4 = await cmd({ op: 'group_send', group: G, text: 'am I still here?' });
expect(await waitFor(() => ev.find((e) => e.event === 'send_failed' && e.id === s4?.id)), 'the engine\'s send to the group fails');
const inf = await cmd({ op: 'group_info', group: G });
expect((await groupResult(inf?.req))?.code === 403, 'the group info is refused (403)');
const fromA3 = await a.sock.sendMessage(G, { text: 'without the engine' });
await sleep(800);
expect(!ev.find((e) => e.event === 'message' && e.id === fromA3.key.id), 'A\'s next text does not reach the engine');

const errors = ev.filter((e) => e.event === 'error' && !e.text.includes(s4?.id));
expect(errors.length === 0, `no other engine errors (${JSON.stringify(errors)})`);
console.log(`${passed} passed, ${failed} failed`);
cleanup(failed ? 1 : 0);
