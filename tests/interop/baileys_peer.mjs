// tests/interop/baileys_peer.mjs - an unmodified Baileys client as a WhatsApp contact for the e2e
// tests (tests/e2e/ imports it from here so that Baileys resolves from tests/interop/node_modules).
//   const bob = await startBaileys({ ws, root, admin, phone, name });
//   bob.sock (the Baileys socket), bob.received / updates / reactions / presences (events seen)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import makeWASocket, { proto, useMultiFileAuthState } from '@whiskeysockets/baileys';
import { WA_CERT_DETAILS } from '@whiskeysockets/baileys/lib/Defaults/index.js';
import pino from 'pino';

export { proto };

// admin(method, path, body): wa-sim's admin API (the phone of `phone` scans Baileys' QR).
export async function startBaileys({ ws, root, admin, phone, name = 'Baileys' }) {
  WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(root, 'hex');
  const dir = mkdtempSync(join(tmpdir(), 'wabridge-baileys-peer-'));
  const peer = { received: [], updates: [], reactions: [], presences: [], sent: new Map(), dir };
  const connect = async () => {
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    const s = makeWASocket({
      waWebSocketUrl: ws, auth: state, logger: pino({ level: 'silent' }), printQRInTerminal: false,
      markOnlineOnConnect: false, shouldSyncHistoryMessage: () => false,
      getMessage: async (key) => peer.sent.get(key.id),
    });
    s.ev.on('creds.update', saveCreds);
    s.ev.on('messages.upsert', ({ messages }) => { for (const m of messages) peer.received.push(m); });
    s.ev.on('messages.update', (u) => peer.updates.push(...u));
    s.ev.on('messages.reaction', (r) => peer.reactions.push(...r));
    s.ev.on('presence.update', (p) => peer.presences.push(p));
    return new Promise((resolve) => s.ev.on('connection.update', async (u) => {
      if (u.qr) await admin('POST', '/admin/scan', { phone, qr: u.qr });
      if (u.connection === 'open') resolve({ open: true, s });
      if (u.connection === 'close') resolve({ open: false });
    }));
  };
  let r = await connect();
  if (!r.open) r = await connect(); // the 515 restart after pairing
  if (!r.open) throw new Error('Baileys did not connect');
  peer.sock = r.s;
  // presences go out only with a push name (a real phone's pair-success carries it)
  peer.sock.ev.emit('creds.update', { me: { ...peer.sock.authState.creds.me, name } });
  peer.send = async (jid, content, opts) => {
    const m = await peer.sock.sendMessage(jid, content, opts);
    peer.sent.set(m.key.id, m.message);
    return m;
  };
  peer.textOf = (m) => m.message?.conversation || m.message?.extendedTextMessage?.text;
  peer.stop = () => {
    try { peer.sock.end(undefined); } catch { /* closing anyway */ }
    setTimeout(() => rmSync(dir, { recursive: true, force: true }), 200);
  };
  return peer;
}
