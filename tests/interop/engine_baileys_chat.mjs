// Live peers: our engine (engine_tool: wa_client on wa_worker over wa_net) and unmodified Baileys
// 7.0.0-rc14 exchange 1:1 texts through wa-sim, each on its own account (the other message kinds:
// engine_baileys_kinds.mjs; one account shared: engine_baileys_own.mjs): Baileys -> engine,
// engine -> Baileys, the delivery receipt Baileys sends reaches the engine, and a second round goes
// on the sessions both have.
//   node tests/interop/engine_baileys_chat.mjs path/to/wa-sim path/to/engine_tool
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import makeWASocket, { useMultiFileAuthState } from '@whiskeysockets/baileys';
import pino from 'pino';
import { startSim } from './wa_sim.mjs';

const [simPath, toolPath] = process.argv.slice(2);
if (!simPath || !toolPath) { console.error('usage: engine_baileys_chat.mjs <wa-sim> <engine_tool>'); process.exit(2); }
const ENGINE = '15550000021', BAILEYS = '15550000022';
let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) { passed++; console.log('ok   ' + what); } else { failed++; console.error('FAIL ' + what); } };

const sim = await startSim(simPath, ['--account', `${ENGINE}:100000000000021:Engine`, '--account', `${BAILEYS}:100000000000022:Baileys`]);
const { ready } = sim;
const admin = async (method, path, body) => (await sim.admin(method, path, body)).status;
const dir = mkdtempSync(join(tmpdir(), 'wabridge-engine-chat-'));
let sock = null;
const deadline = setTimeout(() => { console.error('FAIL timed out'); cleanup(1); }, 90000);
function cleanup(code) {
  clearTimeout(deadline);
  try { sock?.end(undefined); } catch { /* closing anyway */ }
  engine.kill('SIGTERM');
  sim.kill();
  rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  process.exit(code);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(cond, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) { const v = cond(); if (v || Date.now() > end) return v; await sleep(50); }
}

// our engine, as a child process speaking JSON lines
const engine = spawn(toolPath, [ready.ws, ready.admin, ready.root, ENGINE], { stdio: ['pipe', 'pipe', 'inherit'] });
const engineEvents = [];
createInterface({ input: engine.stdout }).on('line', (l) => engineEvents.push(JSON.parse(l)));
const engineSend = (to, text) => engine.stdin.write(JSON.stringify({ op: 'send', to, text }) + '\n');
expect(await waitFor(() => engineEvents.find((e) => e.event === 'ready'), 30000), 'our engine paired and is ready');

// Baileys on the other account
const received = [];
const sentContent = new Map(); // Baileys needs the original to answer a retry receipt
async function connectBaileys() {
  const { state, saveCreds } = await useMultiFileAuthState(dir);
  const s = makeWASocket({ waWebSocketUrl: ready.ws, auth: state, logger: pino({ level: 'silent' }), printQRInTerminal: false,
    markOnlineOnConnect: false, shouldSyncHistoryMessage: () => false,
    getMessage: async (key) => sentContent.get(key.id) });
  s.ev.on('creds.update', saveCreds);
  s.ev.on('messages.upsert', ({ messages }) => { for (const m of messages) received.push(m); });
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

const textOf = (m) => m.message?.conversation || m.message?.extendedTextMessage?.text;
// 1. Baileys -> engine
await sock.sendMessage(`${ENGINE}@s.whatsapp.net`, { text: 'hello engine, this is Baileys' });
const got = await waitFor(() => engineEvents.find((e) => e.event === 'message' && e.text === 'hello engine, this is Baileys'));
expect(got, 'our engine decrypts Baileys\' text');
expect(got && got.sender.startsWith(BAILEYS), `the sender is Baileys' device (${got?.sender})`);
expect(got && got.parse_rc === 0 && got.kind === 'text' && got.dest === '' && got.mentions.length === 0,
  `the engine parses it as a plain text (${got?.kind})`);

// 2. engine -> Baileys
engineSend(`${BAILEYS}@s.whatsapp.net`, 'hello Baileys, this is our engine');
const sending = await waitFor(() => engineEvents.find((e) => e.event === 'sending'));
expect(sending && sending.rc === 0, 'the engine accepted the send');
const inB = await waitFor(() => received.find((m) => !m.key.fromMe && textOf(m) === 'hello Baileys, this is our engine'));
expect(inB, 'Baileys decrypts our engine\'s text');
expect(await waitFor(() => engineEvents.find((e) => e.event === 'sent' && e.id === sending?.id)), 'the server acked our message');
expect(await waitFor(() => engineEvents.find((e) => e.event === 'receipt' && e.text.startsWith(sending?.id))), 'Baileys\' delivery receipt reached our engine');

// 3. a second round on the established sessions
await sock.sendMessage(`${ENGINE}@s.whatsapp.net`, { text: 'second from Baileys' });
expect(await waitFor(() => engineEvents.find((e) => e.event === 'message' && e.text === 'second from Baileys')), 'second text to the engine');
engineSend(`${BAILEYS}@s.whatsapp.net`, 'second from the engine');
expect(await waitFor(() => received.find((m) => !m.key.fromMe && textOf(m) === 'second from the engine')), 'second text to Baileys');
const errors = engineEvents.filter((e) => e.event === 'error');
expect(errors.length === 0, `no engine errors (${JSON.stringify(errors)})`);

// 4. our engine lost its session with Baileys' device: it asks again (retry receipt with our keys),
//    Baileys sends the message again on a new session, and it arrives
engine.stdin.write(JSON.stringify({ op: 'forget_session', address: `${BAILEYS}:1` }) + '\n');
const forgot = await waitFor(() => engineEvents.find((e) => e.event === 'forgot'));
expect(forgot && forgot.rc === 0, 'the engine forgot its session with Baileys (test setup)');
// known before sending: the retry can come back before sendMessage returns
sentContent.set('3EB0RETRYTEST0001', { conversation: 'after our session was lost' });
await sock.sendMessage(`${ENGINE}@s.whatsapp.net`, { text: 'after our session was lost' }, { messageId: '3EB0RETRYTEST0001' });
expect(await waitFor(() => engineEvents.find((e) => e.event === 'message' && e.text === 'after our session was lost'), 20000),
  'the retry receipt made Baileys send it again, and the engine read it');

// 5. a corrupted ciphertext (wa-sim flips a byte on the way): the engine's MAC check fails, it asks
//    again, Baileys sends the message again, and it arrives intact
expect((await admin('POST', '/admin/corrupt-next', { phone: ENGINE })) === 200, 'wa-sim will corrupt the next message');
sentContent.set('3EB0RETRYTEST0002', { conversation: 'through a corrupted first attempt' });
await sock.sendMessage(`${ENGINE}@s.whatsapp.net`, { text: 'through a corrupted first attempt' }, { messageId: '3EB0RETRYTEST0002' });
expect(await waitFor(() => engineEvents.find((e) => e.event === 'message' && e.text === 'through a corrupted first attempt'), 20000),
  'the corrupted message recovered through a retry receipt');
expect(engineEvents.some((e) => e.event === 'error' && /3EB0RETRYTEST0002.*asked again/.test(e.text)), 'the engine reported the bad ciphertext and asked again');

// 6. Baileys lost its session with our engine's device: Baileys asks again, and our engine sends
//    the stored plaintext again (on a new session from Baileys' keys when it sends them)
const engineSessions = readdirSync(dir).filter((f) => f.startsWith('session-') && (f.includes(ENGINE) || f.includes('100000000000021')));
expect(engineSessions.length > 0, `Baileys' session files with our engine found (${readdirSync(dir).filter((f) => f.startsWith('session-')).join(' ')})`);
for (const f of engineSessions) rmSync(join(dir, f));
engineSend(`${BAILEYS}@s.whatsapp.net`, 'after Baileys lost its session');
expect(await waitFor(() => received.find((m) => !m.key.fromMe && textOf(m) === 'after Baileys lost its session'), 25000),
  'our engine answered Baileys\' retry receipt and Baileys read the message');
expect(engineEvents.some((e) => e.event === 'receipt' && / retry /.test(` ${e.text} `)), 'a retry receipt reached our engine');

console.log(`${passed} passed, ${failed} failed`);
cleanup(failed ? 1 : 0);
