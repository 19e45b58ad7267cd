// Live peers: unmodified Baileys 7.0.0-rc14 clients exchange 1:1 texts through wa-sim. Alice has two
// Baileys devices (A1, A2), Bob one (B1); each account also has wa-sim's simulated phone (device 0),
// which really speaks Signal. Checked: A1 -> Bob arrives at B1 and at Bob's phone, A2 gets the
// own-device copy, A1 sees the delivery receipt; B1 -> Alice arrives at A1 and A2; a text for B1
// while it is offline arrives when it logs in again (and leaves its queue); a text B1 never answered
// comes again at its next login; read receipts; garbage stanzas; Bob's phone sends a text to Alice
// through the admin API (A1 and A2 get it, B1 gets the own-device copy) and decrypts the answer.
//   node tests/interop/baileys_chat.mjs path/to/wa-sim
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import makeWASocket, { DisconnectReason, useMultiFileAuthState } from '@whiskeysockets/baileys';
import pino from 'pino';
import { startSim } from './wa_sim.mjs';

const simPath = process.argv[2];
if (!simPath) { console.error('usage: baileys_chat.mjs <wa-sim>'); process.exit(2); }
const ALICE = '15550000001', BOB = '15550000002';
const ALICE_JID = `${ALICE}@s.whatsapp.net`, BOB_JID = `${BOB}@s.whatsapp.net`;
let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) { passed++; console.log('ok   ' + what); } else { failed++; console.error('FAIL ' + what); } };

const sim = await startSim(simPath, ['--account', `${ALICE}:100000000000001:Alice`, '--account', `${BOB}:100000000000002:Bob`]);
const { ready, admin } = sim;
const dirs = [];
const socks = [];
const logger = pino({ level: 'silent' });
const deadline = setTimeout(() => { console.error('FAIL timed out'); cleanup(1); }, 80000);
function cleanup(code) {
  clearTimeout(deadline);
  for (const s of socks) { try { s.end(undefined); } catch { /* closing anyway */ } }
  sim.kill();
  for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 5 });
  process.exit(code);
}
process.on('unhandledRejection', (e) => { console.error('FAIL unhandled rejection', e); cleanup(1); });
process.on('uncaughtException', (e) => { console.error('FAIL uncaught exception', e); cleanup(1); });

// what the devices sent, for Baileys' getMessage (it answers retry receipts with it)
const sentMessages = new Map();
const remember = (sent) => { sentMessages.set(sent.key.id, sent.message); return sent; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Polls cond until it returns something truthy or ms pass; returns that value (or undefined).
async function waitFor(cond, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v || Date.now() > end) return v;
    await sleep(50);
  }
}
const textOf = (m) => m.message?.conversation || m.message?.extendedTextMessage?.text;

// A Baileys device: pairs by QR with the phone of `phone` (the first time), reconnects after the 515
// restart and resolves once open. Records what it receives.
async function device(name, phone, dir) {
  const d = { name, upserts: [], updates: [], sock: null, dir };
  async function connect() {
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    const sock = makeWASocket({ waWebSocketUrl: ready.ws, auth: state, logger, printQRInTerminal: false,
      connectTimeoutMs: 15000, keepAliveIntervalMs: 30000, markOnlineOnConnect: false,
      // wa-sim's phone sends no history sync: do not wait 20 s for one before emitting events
      shouldSyncHistoryMessage: () => false, getMessage: async (key) => sentMessages.get(key.id) });
    socks.push(sock);
    sock.ev.on('creds.update', saveCreds);
    sock.ev.on('messages.upsert', ({ messages, type }) => { for (const m of messages) d.upserts.push({ m, type }); });
    sock.ev.on('messages.update', (ups) => { for (const u of ups) d.updates.push(u); });
    return new Promise((resolve) => {
      sock.ev.on('connection.update', async (u) => {
        if (u.qr) {
          const r = await admin('POST', '/admin/scan', { phone, qr: u.qr });
          if (r.status !== 200) console.error(`${name}: scan failed ${JSON.stringify(r.json)}`);
        }
        if (u.connection === 'open') resolve({ how: 'open', sock });
        if (u.connection === 'close') resolve({ how: 'close', code: u.lastDisconnect?.error?.output?.statusCode });
      });
    });
  }
  d.open = async () => {
    for (let i = 0; i < 3; i++) {
      const r = await connect();
      if (r.how === 'open') { d.sock = r.sock; return true; }
      if (r.code !== DisconnectReason.restartRequired) return false;
    }
    return false;
  };
  d.close = async () => {
    const closed = new Promise((resolve) => d.sock.ev.on('connection.update', (u) => { if (u.connection === 'close') resolve(); }));
    d.sock.end(undefined);
    await Promise.race([closed, sleep(3000)]);
    d.sock = null;
  };
  // the first upsert whose text is `text`
  d.got = (text) => waitFor(() => d.upserts.find(({ m }) => textOf(m) === text));
  return d;
}
const newDir = (tag) => { const d = mkdtempSync(join(tmpdir(), `wabridge-chat-${tag}-`)); dirs.push(d); return d; };
const state = async () => (await admin('GET', '/admin/state')).json;
const devOf = (st, phone, id) => st.accounts.find((a) => a.phone === phone)?.devices.find((x) => x.id === id);
const phoneGot = (phone, text) => waitFor(async () => (await admin('GET', `/admin/messages?phone=${phone}`)).json.messages?.find((m) => m.text === text));

// 1. Alice pairs two devices, Bob one
const a1 = await device('A1', ALICE, newDir('a1'));
const a2 = await device('A2', ALICE, newDir('a2'));
const b1 = await device('B1', BOB, newDir('b1'));
expect(await a1.open(), 'A1 paired and open');
expect(await a2.open(), 'A2 paired and open');
expect(await b1.open(), 'B1 paired and open');
let st = await state();
expect(devOf(st, ALICE, 1) && devOf(st, ALICE, 2) && devOf(st, BOB, 1), 'devices 1 and 2 of Alice, 1 of Bob');

// 2. A1 -> Bob: B1 and Bob's phone decrypt it, A2 gets the own copy, A1 a delivery receipt
const t1 = 'hello Bob, from A1';
const sent1 = remember(await a1.sock.sendMessage(BOB_JID, { text: t1 }));
const atB = await b1.got(t1);
expect(atB && !atB.m.key.fromMe && atB.m.key.remoteJid === ALICE_JID, `B1 receives A1's text (${atB ? atB.m.key.remoteJid : 'nothing'})`);
const atA2 = await a2.got(t1);
expect(atA2 && atA2.m.key.fromMe && atA2.m.key.remoteJid === BOB_JID, 'A2 receives its own-device copy (fromMe, chat Bob)');
const bobPhone = await phoneGot(BOB, t1);
expect(bobPhone && !bobPhone.own && bobPhone.sender === `${ALICE}:1@s.whatsapp.net` && bobPhone.id === sent1.key.id, "Bob's phone decrypts A1's text");
const alicePhone = await phoneGot(ALICE, t1);
expect(alicePhone && alicePhone.own && alicePhone.chat === BOB_JID, "Alice's phone decrypts the own-device copy (deviceSentMessage)");
const delivered = await waitFor(() => a1.updates.find((u) => u.key.id === sent1.key.id && u.update.status >= 3));
expect(!!delivered, 'A1 sees the delivery receipt (messages.update status >= 3)');

// 3. B1 -> Alice: A1 and A2 get it
const t2 = 'hi Alice, from B1';
remember(await b1.sock.sendMessage(ALICE_JID, { text: t2 }));
const atA1 = await a1.got(t2);
expect(atA1 && !atA1.m.key.fromMe && atA1.m.key.remoteJid === BOB_JID, "A1 receives B1's reply");
expect(!!(await a2.got(t2)), "A2 receives B1's reply too");
expect(!!(await phoneGot(ALICE, t2)), "Alice's phone receives B1's reply");
// a second message on the established sessions (msg, not pkmsg)
const t3 = 'and a second one from A1';
remember(await a1.sock.sendMessage(BOB_JID, { text: t3 }));
expect(!!(await b1.got(t3)), 'B1 receives a second text on the session');

// 4. B1 offline: the text waits in its queue and arrives at the next login
await b1.close();
const t4 = 'while you were away';
const sent4 = remember(await a1.sock.sendMessage(BOB_JID, { text: t4 }));
const queued = await waitFor(async () => (devOf(await state(), BOB, 1)?.queued ?? 0) >= 1, 5000);
expect(queued, 'the text is queued for the offline B1');
b1.upserts.length = 0;
expect(await b1.open(), 'B1 logs in again');
const late = await b1.got(t4);
expect(late && late.m.key.id === sent4.key.id, `B1 receives the queued text after login (${late ? late.type : 'nothing'})`);
expect(await waitFor(async () => devOf(await state(), BOB, 1)?.queued === 0), "B1's queue is empty once it answered");

// 5. B1 receives a text but its answer is lost (its socket drops every frame it sends): the text
// stays queued and comes again at the next login; B1 cannot decrypt it twice and asks for a retry,
// which A1 answers through wa-sim (retry receipt routed to A1, the resend routed to B1:1).
const t7 = 'the answer to this one is lost';
b1.sock.ws.socket.send = (data, cb) => { if (cb) cb(); };
const sent7 = remember(await a1.sock.sendMessage(BOB_JID, { text: t7 }));
expect(!!(await b1.got(t7)), 'B1 receives a text whose receipt is lost');
await sleep(300);
expect((devOf(await state(), BOB, 1)?.queued ?? 0) >= 1, 'without an answer the text stays queued');
await b1.close();
b1.upserts.length = 0;
expect(await b1.open(), 'B1 logs in again');
const again = await waitFor(() => b1.upserts.find(({ m }) => m.key.id === sent7.key.id));
expect(!!again, `the unanswered text is delivered again at login (${again ? (textOf(again.m) ?? 'stub ' + again.m.messageStubType) : 'nothing'})`);
const recovered = await waitFor(() => b1.upserts.find(({ m }) => m.key.id === sent7.key.id && textOf(m) === t7));
expect(!!recovered, "B1's retry receipt reaches A1, whose resend through wa-sim decrypts");
expect(await waitFor(async () => devOf(await state(), BOB, 1)?.queued === 0), "B1's queue drains after the redelivery");

// 6. B1 reads A1's first text: A1 sees it read
await b1.sock.readMessages([atB.m.key]);
const read = await waitFor(() => a1.updates.find((u) => u.key.id === sent1.key.id && u.update.status === 4));
expect(!!read, 'A1 sees the read receipt (status 4)');

// 7. garbage from a client neither crashes wa-sim nor reaches anybody
const bad = [
  { tag: 'message', attrs: { id: 'BAD1', to: BOB_JID, type: 'text' }, content: [{ tag: 'participants', attrs: {}, content: [
    { tag: 'to', attrs: { jid: BOB_JID }, content: [{ tag: 'enc', attrs: { v: '2', type: 'pkmsg' }, content: Buffer.from('not signal') }] },
    { tag: 'to', attrs: { jid: `${BOB}:1@s.whatsapp.net` }, content: [{ tag: 'enc', attrs: { v: '2', type: 'msg' } }] },
    { tag: 'to', attrs: { jid: `${BOB}:9@s.whatsapp.net` }, content: [{ tag: 'enc', attrs: { v: '2', type: 'msg' }, content: Buffer.from('x') }] },
    { tag: 'to', attrs: { jid: 'nonsense' }, content: [] },
    { tag: 'to', attrs: {}, content: Buffer.from('x') }] }] },
  { tag: 'message', attrs: { id: 'BAD2', to: BOB_JID }, content: [{ tag: 'enc', attrs: { type: 'msg' }, content: Buffer.from([0x33, 0, 0]) }] },
  { tag: 'message', attrs: { to: BOB_JID }, content: [] },
  { tag: 'message', attrs: { id: 'x'.repeat(200), to: BOB_JID }, content: [] },
  { tag: 'receipt', attrs: { to: ALICE_JID }, content: [{ tag: 'list', attrs: {}, content: [{ tag: 'item', attrs: {} }] }] },
  { tag: 'receipt', attrs: { id: 'BAD3', to: 'nonsense', type: 'read' } },
  { tag: 'ack', attrs: { class: 'message' } },
  { tag: 'iq', attrs: { id: 'bad-1', type: 'get', xmlns: 'usync', to: 's.whatsapp.net' }, content: [{ tag: 'usync', attrs: {}, content: [
    { tag: 'query', attrs: {}, content: [{ tag: 'devices', attrs: {} }, { tag: 'lid', attrs: {} }, { tag: 'contact', attrs: {} }] },
    { tag: 'list', attrs: {}, content: [{ tag: 'user', attrs: {} }, { tag: 'user', attrs: { jid: 'x@g.us' } }, { tag: 'user', attrs: {}, content: [{ tag: 'contact', attrs: {}, content: '+' + '9'.repeat(40) }] }] }] }] },
  { tag: 'iq', attrs: { id: 'bad-2', type: 'get', xmlns: 'encrypt', to: 's.whatsapp.net' }, content: [{ tag: 'key', attrs: {}, content: [{ tag: 'user', attrs: { jid: `${BOB}:77@s.whatsapp.net` } }, { tag: 'user', attrs: {} }] }] },
  { tag: 'iq', attrs: { id: 'bad-3', type: 'set', xmlns: 'encrypt', to: 's.whatsapp.net' }, content: [{ tag: 'list', attrs: {}, content: [{ tag: 'key', attrs: {} }] }, { tag: 'skey', attrs: {}, content: [{ tag: 'id', attrs: {}, content: Buffer.from([1]) }] }] },
];
for (const n of bad) await a1.sock.sendNode(n);
await sleep(300);
st = await state();
expect(st.accounts.length === 2 && devOf(st, ALICE, 1)?.online, 'wa-sim is alive and A1 still connected after garbage');
const bobMsgs = (await admin('GET', `/admin/messages?phone=${BOB}`)).json.messages;
expect(bobMsgs.some((m) => m.id === 'BAD1' && m.failed), "Bob's phone records the garbage ciphertext as undecryptable");
expect(!b1.upserts.some(({ m }) => m.key.id === 'BAD1' || m.key.id === 'BAD2'), 'nothing of it reaches B1');

// 8. Bob's phone sends a text to Alice through the admin API
const t5 = "from Bob's phone";
const sent5 = await admin('POST', '/admin/send', { phone: BOB, to: ALICE_JID, text: t5 });
expect(sent5.status === 200 && sent5.json.id, `the phone sends (${JSON.stringify(sent5.json)})`);
const p1 = await a1.got(t5);
expect(p1 && !p1.m.key.fromMe && p1.m.key.remoteJid === BOB_JID && p1.m.key.id === sent5.json.id, "A1 receives the phone's text");
expect(!!(await a2.got(t5)), "A2 receives the phone's text");
const own5 = await b1.got(t5);
expect(own5 && own5.m.key.fromMe && own5.m.key.remoteJid === ALICE_JID, 'B1 receives the phone\'s own-device copy (fromMe, chat Alice)');
expect(!!(await phoneGot(ALICE, t5)), "Alice's phone receives Bob's phone's text");
// and a reply from A1 to the phone on the session the phone started
const t6 = 'A1 answers the phone';
remember(await a1.sock.sendMessage(BOB_JID, { text: t6 }));
const back = await phoneGot(BOB, t6);
expect(back && !back.failed, "Bob's phone decrypts A1's answer");

// 9. nothing is left undelivered
const drained = await waitFor(async () => (await state()).accounts.every((a) => a.devices.every((x) => x.queued === 0)));
const left = (await state()).accounts.flatMap((a) => a.devices.map((x) => `${a.phone}:${x.id}=${x.queued}`));
expect(drained, `all queues drain (${left.join(' ')})`);

console.log(`${passed} passed, ${failed} failed`);
cleanup(failed ? 1 : 0);
