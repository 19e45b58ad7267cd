// Live peer: unmodified Baileys 7.0.0-rc14 pairs with wa-sim by QR, restarts on 515, logs in, uploads
// prekeys and reaches connection "open"; then a new socket logs in again from the saved credentials
// without pairing; then a stream error 401 from the server ends the session as "logged out".
//   node tests/interop/baileys_pair.mjs path/to/wa-sim
// Diagnosing a hang: BAILEYS_LOG=trace (Baileys' log to stderr), WA_SIM_VERBOSE=1 (every stanza).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import makeWASocket, { DisconnectReason, useMultiFileAuthState } from '@whiskeysockets/baileys';
import pino from 'pino';
import { startSim, watchdog } from './wa_sim.mjs';

const simPath = process.argv[2];
if (!simPath) { console.error('usage: baileys_pair.mjs <wa-sim>'); process.exit(2); }
const PHONE = '15550000001';
let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) { passed++; console.log('ok   ' + what); } else { failed++; console.error('FAIL ' + what); } };

const sim = await startSim(simPath, ['--account', `${PHONE}:100000000000001:Sim Phone`]);
const { ready, admin } = sim;
const dir = mkdtempSync(join(tmpdir(), 'wabridge-baileys-'));
const dir2 = mkdtempSync(join(tmpdir(), 'wabridge-baileys-code-'));
const logger = pino({ level: process.env.BAILEYS_LOG || 'silent' }, pino.destination(2));
const deadline = setTimeout(() => { console.error('FAIL timed out'); cleanup(1); }, 60000);
watchdog(20); // a blocked event loop never runs the deadline above
// The credential folders go only at the very end: a socket we ended keeps writing its keys and
// creds for a while (Baileys stores its own LID mapping and session after "open"), and a folder
// removed under it fails those writes or the removal itself (ENOTEMPTY). rmSync is synchronous, so
// no JavaScript writes during it; the retries cover a write already under way in the thread pool.
function cleanup(code) {
  clearTimeout(deadline);
  sim.kill();
  for (const d of [dir, dir2]) rmSync(d, { recursive: true, force: true, maxRetries: 5 });
  process.exit(code);
}

// One socket; resolves with how it ended: 'open' (then closed by us) or a close code.
async function connect({ onQr, stayOpen }) {
  const { state, saveCreds } = await useMultiFileAuthState(dir);
  const sock = makeWASocket({ waWebSocketUrl: ready.ws, auth: state, logger, printQRInTerminal: false,
    connectTimeoutMs: 15000, keepAliveIntervalMs: 30000 });
  sock.ev.on('creds.update', saveCreds);
  return new Promise((resolve) => {
    sock.ev.on('connection.update', async (u) => {
      if (u.qr && onQr) await onQr(u.qr);
      if (u.connection === 'open') {
        if (stayOpen) resolve({ how: 'open', sock });
        else { resolve({ how: 'open' }); sock.end(undefined); }
      }
      if (u.connection === 'close') resolve({ how: 'close', code: u.lastDisconnect?.error?.output?.statusCode });
    });
  });
}

// 1. pair by QR: the simulated phone scans the QR Baileys shows; the server then asks for a restart
let qrs = 0;
const first = await connect({ onQr: async (qr) => {
  qrs++;
  expect(qr.startsWith('https://wa.me/settings/linked_devices#2@sim'), 'QR text carries a pair-device ref');
  const r = await admin('POST', '/admin/scan', { phone: PHONE, qr });
  expect(r.status === 200, `the phone scans the QR (${JSON.stringify(r.json)})`);
} });
expect(qrs === 1, 'one QR shown');
expect(first.how === 'close' && first.code === DisconnectReason.restartRequired, `515 restart after pairing (got ${first.how} ${first.code})`);

// 2. the restart logs in with the new device, uploads prekeys and opens
const second = await connect({ onQr: () => expect(false, 'no QR after pairing') });
expect(second.how === 'open', 'connection open after the restart');
let st = (await admin('GET', '/admin/state')).json;
const dev = st.accounts[0].devices[0];
expect(st.accounts[0].devices.length === 1 && dev.id === 1, 'one companion device, number 1');
expect(dev.prekeys >= 30, `prekeys uploaded (${dev.prekeys})`);

// 3. a new process would log in from the saved credentials alone
const third = await connect({ onQr: () => expect(false, 'no QR on login'), stayOpen: true });
expect(third.how === 'open', 'login from saved credentials, without pairing');
st = (await admin('GET', '/admin/state')).json;
expect(st.accounts[0].devices[0].online === true, 'the device shows online');

// 4. the server logs the device out: Baileys reports loggedOut
const closed = new Promise((resolve) => third.sock.ev.on('connection.update', (u) => {
  if (u.connection === 'close') resolve(u.lastDisconnect?.error?.output?.statusCode);
}));
const r = await admin('POST', '/admin/stream-error', { phone: PHONE, code: '401' });
expect(r.status === 200, 'stream error sent');
expect((await closed) === DisconnectReason.loggedOut, 'Baileys sees 401 as logged out');

// 5. pairing by phone code: Baileys asks for a code, the user types it on the phone
const PHONE2 = '15550000009';
expect((await admin('POST', '/admin/accounts', { phone: PHONE2, name: 'Second' })).status === 200, 'second account');
async function connectCode({ requestCode }) {
  const { state, saveCreds } = await useMultiFileAuthState(dir2);
  const sock = makeWASocket({ waWebSocketUrl: ready.ws, auth: state, logger, printQRInTerminal: false, connectTimeoutMs: 15000 });
  sock.ev.on('creds.update', saveCreds);
  return new Promise((resolve) => {
    let asked = false;
    sock.ev.on('connection.update', async (u) => {
      if (u.qr && requestCode && !asked) {
        asked = true;
        const code = await sock.requestPairingCode(PHONE2);
        expect(/^[1-9A-HJ-NP-TV-Z]{8}$/.test(code), `pairing code ${code} is 8 Crockford characters`);
        // requestPairingCode resolves when the request is written, not when wa-sim has it: the user
        // types the code a moment later, so retry briefly while the phone has nothing waiting
        let r = await admin('POST', '/admin/pair-code', { phone: PHONE2, code });
        for (let i = 0; i < 40 && r.status !== 200; i++) {
          await new Promise((res) => setTimeout(res, 50));
          r = await admin('POST', '/admin/pair-code', { phone: PHONE2, code });
        }
        expect(r.status === 200, `the user enters the code on the phone (${JSON.stringify(r.json)})`);
      }
      if (u.connection === 'open') { resolve({ how: 'open' }); sock.end(undefined); }
      if (u.connection === 'close') resolve({ how: 'close', code: u.lastDisconnect?.error?.output?.statusCode });
    });
  });
}
const c1 = await connectCode({ requestCode: true });
expect(c1.how === 'close' && c1.code === DisconnectReason.restartRequired, `515 after code pairing (got ${c1.how} ${c1.code})`);
const c2 = await connectCode({ requestCode: false });
expect(c2.how === 'open', 'connection open after code pairing');
st = (await admin('GET', '/admin/state')).json;
expect(st.accounts.find((a) => a.phone === PHONE2)?.devices.length === 1, 'the code-paired device is listed');

// 6. a scan of a QR nobody shows is refused
const bad = await admin('POST', '/admin/scan', { phone: PHONE, qr: 'https://wa.me/settings/linked_devices#2@nope,AAAA,BBBB,CCCC' });
expect(bad.status === 400, 'unknown QR refused');

console.log(`${passed} passed, ${failed} failed`);
cleanup(failed ? 1 : 0);
