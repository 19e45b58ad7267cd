// Live groups: unmodified Baileys 7.0.0-rc14 clients use wa-sim's groups. Alice (A1) and Bob (B1)
// are Baileys devices; Carol is wa-sim's simulated phone (device 0, Signal and sender keys in C);
// Alice's and Bob's phones are members too. Checked: A1 creates a group with Bob and Carol
// (groupCreate; B1 learns it from the create notification); A1's text reaches B1 and both phones
// (SKDM pairwise + skmsg), B1's receipt reaches A1; B1 answers; Carol's phone sends through the
// admin API and A1 and B1 decrypt it; metadata, subject, description, invite code and a setting
// round trips with the notifications they cause; then A1 removes Bob (groupParticipantsUpdate
// remove): B1 sees the removal, and Alice rotates her sender key - Baileys does not do this by
// itself, so this test's app deletes Alice's sender key and sender-key memory on the
// group-participants.update event through Baileys' key store, as WhatsApp clients do - and the
// next text gets a new key id, reaches Carol's phone and Alice's, not B1; B1 still holds Alice's
// old key yet cannot decrypt the new skmsg (taken from wa-sim); Carol's phone rotated too, A1
// reads its next text and B1 cannot; Bob rejoins with the invite code and gets Alice's key again,
// then leaves; A1 lists its groups; group stanzas wa-sim must refuse; all queues drain.
//   node tests/interop/baileys_group.mjs path/to/wa-sim
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import makeWASocket, { DisconnectReason, jidDecode, useMultiFileAuthState } from '@whiskeysockets/baileys';
import pino from 'pino';
import { startSim } from './wa_sim.mjs';

const simPath = process.argv[2];
if (!simPath) { console.error('usage: baileys_group.mjs <wa-sim>'); process.exit(2); }
const ALICE = '15550000001', BOB = '15550000002', CAROL = '15550000003';
const LID = { [ALICE]: '100000000000001', [BOB]: '100000000000002', [CAROL]: '100000000000003' };
const pnJid = (p) => `${p}@s.whatsapp.net`;
let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) { passed++; console.log('ok   ' + what); } else { failed++; console.error('FAIL ' + what); } };

const sim = await startSim(simPath, ['--account', `${ALICE}:${LID[ALICE]}:Alice`, '--account', `${BOB}:${LID[BOB]}:Bob`,
  '--account', `${CAROL}:${LID[CAROL]}:Carol`]);
const { ready, admin } = sim;
const dirs = [];
const socks = [];
const logger = pino({ level: 'silent' });
const deadline = setTimeout(() => { console.error('FAIL timed out'); cleanup(1); }, 100000);
function cleanup(code) {
  clearTimeout(deadline);
  for (const s of socks) { try { s.end(undefined); } catch { /* closing anyway */ } }
  sim.kill();
  for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 5 });
  process.exit(code);
}
process.on('unhandledRejection', (e) => { console.error('FAIL unhandled rejection', e); cleanup(1); });
process.on('uncaughtException', (e) => { console.error('FAIL uncaught exception', e); cleanup(1); });

const sentMessages = new Map();
const remember = (sent) => { sentMessages.set(sent.key.id, sent.message); return sent; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(cond, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v || Date.now() > end) return v;
    await sleep(50);
  }
}
const textOf = (m) => m.message?.conversation || m.message?.extendedTextMessage?.text;

async function device(name, phone, dir) {
  const d = { name, upserts: [], receipts: [], groupEvents: [], groupsUpserted: [], groupUpdates: [], sock: null, dir };
  async function connect() {
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    const sock = makeWASocket({ waWebSocketUrl: ready.ws, auth: state, logger, printQRInTerminal: false,
      connectTimeoutMs: 15000, keepAliveIntervalMs: 30000, markOnlineOnConnect: false,
      shouldSyncHistoryMessage: () => false, getMessage: async (key) => sentMessages.get(key.id) });
    socks.push(sock);
    sock.ev.on('creds.update', saveCreds);
    sock.ev.on('messages.upsert', ({ messages, type }) => { for (const m of messages) d.upserts.push({ m, type }); });
    sock.ev.on('message-receipt.update', (ups) => { for (const u of ups) d.receipts.push(u); });
    sock.ev.on('group-participants.update', (u) => { d.groupEvents.push(u); if (d.onParticipants) d.onParticipants(u); });
    sock.ev.on('groups.upsert', (gs) => { for (const g of gs) d.groupsUpserted.push(g); });
    sock.ev.on('groups.update', (gs) => { for (const g of gs) d.groupUpdates.push(g); });
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
  d.got = (text) => waitFor(() => d.upserts.find(({ m }) => textOf(m) === text));
  return d;
}
const newDir = (tag) => { const d = mkdtempSync(join(tmpdir(), `wabridge-group-${tag}-`)); dirs.push(d); return d; };
const state = async () => (await admin('GET', '/admin/state')).json;
const groupState = async (jid) => (await admin('GET', `/admin/group?jid=${encodeURIComponent(jid)}`)).json;
const phoneGot = (phone, text) => waitFor(async () => (await admin('GET', `/admin/messages?phone=${phone}`)).json.messages?.find((m) => m.text === text));
// the sender-key record a device keeps for (group, sender device): its key ids
async function senderKeyIds(d, group, jid) {
  const { user, device: dev } = jidDecode(jid);
  const name = `${group}::${user}_1::${dev || 0}`;
  const { [name]: rec } = await d.sock.authState.keys.get('sender-key', [name]);
  return rec ? JSON.parse(Buffer.from(rec).toString('utf-8')).map((s) => s.senderKeyId) : [];
}

// 1. Alice and Bob pair a Baileys device each
const a1 = await device('A1', ALICE, newDir('a1'));
const b1 = await device('B1', BOB, newDir('b1'));
expect(await a1.open(), 'A1 paired and open');
expect(await b1.open(), 'B1 paired and open');
const aliceLid = a1.sock.authState.creds.me.lid; // "LID:1@lid": Alice's group identity (LID groups)
expect(aliceLid?.startsWith(`${LID[ALICE]}:`), `A1 knows its LID (${aliceLid})`);

// 2. A1 creates a group with Bob and Carol
const meta = await a1.sock.groupCreate('Sim group', [pnJid(BOB), pnJid(CAROL)]);
const G = meta.id;
expect(G?.endsWith('@g.us') && meta.subject === 'Sim group', `groupCreate answers the group (${G})`);
expect(meta.participants.length === 3 && meta.participants.some((p) => p.id === `${LID[ALICE]}@lid` && p.admin === 'superadmin'),
  'Alice is the superadmin of three members');
expect(meta.addressingMode === 'lid', 'the group is LID-addressed');
const upserted = await waitFor(() => b1.groupsUpserted.find((g) => g.id === G));
expect(upserted && upserted.subject === 'Sim group', 'B1 learns of the group from the create notification');
let gs = await groupState(G);
expect(gs.members?.length === 3 && gs.members.find((m) => m.phone === CAROL), "wa-sim's group has Carol");

// 3. A1 -> group: B1 decrypts (SKDM in its pkmsg, then the skmsg), the phones too, a receipt comes back
const t1 = 'hello group, from A1';
const sent1 = remember(await a1.sock.sendMessage(G, { text: t1 }));
const atB = await b1.got(t1);
expect(atB && atB.m.key.remoteJid === G && atB.m.key.participant === `${LID[ALICE]}@lid` && !atB.m.key.fromMe,
  `B1 decrypts A1's group text (participant ${atB?.m.key.participant})`);
const carol1 = await phoneGot(CAROL, t1);
expect(carol1 && !carol1.failed && carol1.chat === G && carol1.sender === aliceLid, "Carol's phone decrypts A1's group text");
expect(!!(await phoneGot(BOB, t1)), "Bob's phone decrypts it");
const alicePhone = await phoneGot(ALICE, t1);
expect(alicePhone && alicePhone.own, "Alice's phone decrypts it as her own");
const rcpt = await waitFor(() => a1.receipts.find((r) => r.key.id === sent1.key.id && r.receipt.userJid === `${LID[BOB]}@lid`));
expect(!!rcpt, "A1 gets B1's delivery receipt (message-receipt.update from Bob's LID)");
const oldAliceKey = await senderKeyIds(a1, G, aliceLid);
expect(oldAliceKey.length === 1, `A1 has one sender key for the group (id ${oldAliceKey[0]})`);
// a second text on the same chain needs no SKDM
const t1b = 'second text from A1';
remember(await a1.sock.sendMessage(G, { text: t1b }));
expect(!!(await b1.got(t1b)), 'B1 decrypts the second text (skmsg only)');
expect(!!(await phoneGot(CAROL, t1b)), "Carol's phone decrypts the second text");

// 4. B1 answers in the group
const t2 = 'Bob answers the group';
remember(await b1.sock.sendMessage(G, { text: t2 }));
const atA = await a1.got(t2);
expect(atA && atA.m.key.remoteJid === G && atA.m.key.participant === `${LID[BOB]}@lid`, "A1 decrypts B1's group text");
expect(!!(await phoneGot(CAROL, t2)), "Carol's phone decrypts B1's group text");

// 5. Carol's phone sends to the group through the admin API
const t3 = "Carol's phone says hi";
const sent3 = await admin('POST', '/admin/group/send', { phone: CAROL, group: G, text: t3 });
expect(sent3.status === 200 && sent3.json.id, `the phone sends (${JSON.stringify(sent3.json)})`);
const c1 = await a1.got(t3);
expect(c1 && c1.m.key.participant === `${LID[CAROL]}@lid` && c1.m.key.id === sent3.json.id, "A1 decrypts Carol's phone's group text");
expect(!!(await b1.got(t3)), "B1 decrypts Carol's phone's group text");
expect(!!(await phoneGot(ALICE, t3)), "Alice's phone decrypts it");
const t3b = "Carol's phone again";
await admin('POST', '/admin/group/send', { phone: CAROL, group: G, text: t3b });
expect(!!(await a1.got(t3b)) && !!(await b1.got(t3b)), "the phone's second text (skmsg only) decrypts at A1 and B1");

// 6. metadata and the other IQs through Baileys, with their notifications
const m2 = await b1.sock.groupMetadata(G);
expect(m2.subject === 'Sim group' && m2.participants.length === 3 && m2.owner === `${LID[ALICE]}@lid`, 'B1 reads the metadata');
await a1.sock.groupUpdateSubject(G, 'Renamed group');
expect(!!(await waitFor(() => b1.groupUpdates.find((u) => u.id === G && u.subject === 'Renamed group'))), 'B1 sees the new subject');
await a1.sock.groupUpdateDescription(G, 'What this group is for');
const m3 = await b1.sock.groupMetadata(G);
expect(m3.subject === 'Renamed group' && m3.desc === 'What this group is for' && !!m3.descId, 'the metadata has the new subject and description');
const code = await a1.sock.groupInviteCode(G);
const code2 = await a1.sock.groupRevokeInvite(G);
expect(code && code2 && code !== code2 && (await groupState(G)).invite === code2, 'invite code and revoke');
let refused;
try { await b1.sock.groupInviteCode(G); } catch (e) { refused = e?.data; } // Baileys: Boom, data = the code
expect(refused === 401, `a non-admin is refused the invite code (${refused})`);
await a1.sock.groupSettingUpdate(G, 'locked');
expect(!!(await waitFor(async () => (await groupState(G)).locked)) &&
  !!(await waitFor(() => b1.groupUpdates.find((u) => u.id === G && u.restrict === true))), 'locked, and B1 sees it');

// 7. A1 removes Bob. Alice's app rotates her sender key on the event (Baileys keeps it otherwise).
a1.onParticipants = async (u) => {
  if (u.id !== G || u.action !== 'remove') return;
  const { user, device: dev } = jidDecode(aliceLid);
  await a1.sock.authState.keys.set({ 'sender-key': { [`${G}::${user}_1::${dev || 0}`]: null }, 'sender-key-memory': { [G]: null } });
  a1.rotated = true;
};
const res = await a1.sock.groupParticipantsUpdate(G, [pnJid(BOB)], 'remove');
expect(res.length === 1 && res[0].status === '200', `remove answers 200 (${JSON.stringify(res.map((r) => r.status))})`);
const bobSaw = await waitFor(() => b1.groupEvents.find((e) => e.id === G && e.action === 'remove'));
expect(!!bobSaw, 'B1 sees its removal (group-participants.update remove)');
expect(await waitFor(() => a1.rotated), "Alice's app saw the removal and dropped her sender key");
gs = await groupState(G);
expect(gs.members.length === 2 && !gs.members.find((m) => m.phone === BOB), "wa-sim's group no longer has Bob");
const b1Before = b1.upserts.length;
const t4 = 'after Bob left';
remember(await a1.sock.sendMessage(G, { text: t4 }));
const carol4 = await phoneGot(CAROL, t4);
expect(carol4 && !carol4.failed, "Carol's phone decrypts Alice's text on her new key");
expect(!!(await phoneGot(ALICE, t4)), "Alice's phone decrypts it too");
const newAliceKey = await senderKeyIds(a1, G, aliceLid);
expect(newAliceKey.length === 1 && newAliceKey[0] !== oldAliceKey[0], `Alice's key id changed (${oldAliceKey[0]} -> ${newAliceKey[0]})`);
await sleep(800);
expect(!b1.upserts.slice(b1Before).some(({ m }) => m.key.remoteJid === G && textOf(m) === t4), 'B1 does not receive it');
gs = await groupState(G);
expect(gs.last?.sender === aliceLid, 'wa-sim kept the skmsg of that text');
const bobHasOld = await senderKeyIds(b1, G, aliceLid);
expect(bobHasOld.includes(oldAliceKey[0]), "B1 still holds Alice's old sender key");
let bobErr;
try { await b1.sock.signalRepository.decryptGroupMessage({ group: G, authorJid: aliceLid, msg: Buffer.from(gs.last.skmsg, 'hex') }); } catch (e) { bobErr = e.message; }
expect(!!bobErr, `B1 cannot decrypt Alice's new skmsg with the old key (${bobErr})`);

// 8. Carol's phone rotated when Bob left: A1 reads its next text, B1 cannot
const t5 = 'Carol after Bob left';
await admin('POST', '/admin/group/send', { phone: CAROL, group: G, text: t5 });
expect(!!(await a1.got(t5)), "A1 decrypts Carol's phone's text on its new key");
gs = await groupState(G);
let bobErr2;
try { await b1.sock.signalRepository.decryptGroupMessage({ group: G, authorJid: `${LID[CAROL]}@lid`, msg: Buffer.from(gs.last.skmsg, 'hex') }); } catch (e) { bobErr2 = e.message; }
expect(gs.last.sender === `${LID[CAROL]}@lid` && !!bobErr2, `B1 cannot decrypt the phone's new skmsg (${bobErr2})`);
let notMember;
try { await b1.sock.groupMetadata(G); } catch (e) { notMember = e?.data; }
expect(notMember === 403, `B1 is refused the metadata now (${notMember})`);

// 9. Bob rejoins with the invite code: A1's next text carries its key to B1 again; then Bob leaves
const joined = await b1.sock.groupAcceptInvite(code2);
expect(joined === G, `B1 joins with the invite code (${joined})`);
expect(!!(await waitFor(() => a1.groupEvents.find((e) => e.id === G && e.action === 'add'))), 'A1 sees Bob join');
const t6 = 'welcome back Bob';
remember(await a1.sock.sendMessage(G, { text: t6 }));
expect(!!(await b1.got(t6)), "B1 decrypts A1's text after rejoining (a new SKDM reached it)");
const all = await a1.sock.groupFetchAllParticipating();
expect(all[G]?.participants.length === 3 && all[G].subject === 'Renamed group', 'A1 lists its groups (participating)');
await b1.sock.groupLeave(G);
const left1 = await waitFor(() => a1.groupEvents.find((e) => e.id === G && e.action === 'remove' && e.author?.startsWith(LID[BOB])));
expect(!!left1, 'A1 sees Bob leave');
expect((await groupState(G)).members.length === 2, "wa-sim's group is down to two again");

// 10. group stanzas wa-sim must refuse or survive
const bad = [
  { tag: 'message', attrs: { id: 'GBAD1', to: '120363999999999999@g.us', type: 'text' }, content: [{ tag: 'enc', attrs: { v: '2', type: 'skmsg' }, content: Buffer.from('x') }] },
  { tag: 'message', attrs: { id: 'GBAD2', to: G, type: 'text' }, content: [{ tag: 'enc', attrs: { v: '2', type: 'skmsg' }, content: Buffer.from('not a member') }] },
  { tag: 'message', attrs: { id: 'GBAD3', to: G, participant: 'nonsense', type: 'text' }, content: [] },
  { tag: 'receipt', attrs: { id: 'GBAD4', to: G, participant: 'x@lid', type: 'read' } },
  { tag: 'iq', attrs: { id: 'gbad-1', type: 'get', xmlns: 'w:g2', to: '120363999999999999@g.us' }, content: [{ tag: 'query', attrs: { request: 'interactive' } }] },
  { tag: 'iq', attrs: { id: 'gbad-2', type: 'set', xmlns: 'w:g2', to: '@g.us' }, content: [{ tag: 'create', attrs: {} }] },
  { tag: 'iq', attrs: { id: 'gbad-3', type: 'set', xmlns: 'w:g2', to: '@g.us' }, content: [{ tag: 'leave', attrs: {}, content: [{ tag: 'group', attrs: {} }, { tag: 'group', attrs: { id: 'x' } }] }] },
  { tag: 'iq', attrs: { id: 'gbad-4', type: 'set', xmlns: 'w:g2' } },
  { tag: 'iq', attrs: { id: 'gbad-5', type: 'set', xmlns: 'w:g2', to: G }, content: [{ tag: 'remove', attrs: {}, content: [{ tag: 'participant', attrs: { jid: pnJid(ALICE) } }] }] },
  { tag: 'iq', attrs: { id: 'gbad-6', type: 'get', xmlns: 'w:g2', to: '@g.us' }, content: [{ tag: 'invite', attrs: { code: 'no-such-code' } }] },
];
for (const n of bad) await b1.sock.sendNode(n);
await sleep(300);
const st = await state();
expect(st.accounts.length === 3 && st.accounts.every((a) => a.devices.every((x) => x.online)), 'wa-sim is alive and every device still connected after garbage');
expect(!a1.upserts.some(({ m }) => m.key.id?.startsWith('GBAD')), 'nothing of it reaches A1');
expect((await groupState(G)).members.find((m) => m.phone === ALICE)?.superadmin, 'Alice is still in the group');
let created;
try { await b1.sock.groupCreate('', [pnJid(ALICE)]); } catch (e) { created = e?.data; }
expect(created === 406, `a group without a subject is refused (${created})`);

// 11. nothing is left undelivered
const drained = await waitFor(async () => (await state()).accounts.every((a) => a.devices.every((x) => x.queued === 0)));
const left = (await state()).accounts.flatMap((a) => a.devices.map((x) => `${a.phone}:${x.id}=${x.queued}`));
expect(drained, `all queues drain (${left.join(' ')})`);

console.log(`${passed} passed, ${failed} failed`);
cleanup(failed ? 1 : 0);
