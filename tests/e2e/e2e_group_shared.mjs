// tests/e2e/e2e_group_shared.mjs - one group portal shared by two Matrix users, each logged in
// with their own WhatsApp account, and an unmodified Baileys 7 client (Bob) in the group: Bob's
// group creation brings one room for both, his message shows once, each Matrix user's message
// reaches Bob and appears once in the room (the other login receives it too and must not echo it);
// Bob's read receipt and his typing show as his ghost's in the shared room.
//   node e2e_group_shared.mjs WABRIDGE HS_SIM WA_SIM   (env WABRIDGE_TEST_PG_STATE)
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN, waitFor } from './stack.mjs';
import { report } from './report.mjs';
import { openManagementRoom, loginQr, joinNextInvite } from './scenario.mjs';
import { startBaileys } from '../interop/baileys_peer.mjs';

const [wabridge, hsSim, waSim] = process.argv.slice(2);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
const pg = createDatabase(conninfo, 'e2e_group_shared');
const { check, failed, finish } = report();
const ALICE = '15550000061', DAVE = '15550000062', BOB = '15550000063';
const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000061', name: 'Alice' }, { phone: DAVE, lid: '900000000000062', name: 'Dave' },
    { phone: BOB, lid: '900000000000063', name: 'Bob' }],
});
const { wa, hs } = stack;
let bob;
try {
  const alice = await MxUser.register(hs.url, 'alice');
  const dave = await MxUser.register(hs.url, 'dave');
  const am = await openManagementRoom(alice, DOMAIN);
  const dm = await openManagementRoom(dave, DOMAIN);
  await loginQr(alice, am, wa, ALICE);
  await loginQr(dave, dm, wa, DAVE);
  bob = await startBaileys({ ws: wa.ready.ws, root: wa.ready.root, admin: wa.admin, phone: BOB, name: 'Bob' });
  const g = await bob.sock.groupCreate('Shared room', [`${ALICE}@s.whatsapp.net`, `${DAVE}@s.whatsapp.net`]);
  check(/@g\.us$/.test(g.id), `Baileys created a group with Alice and Dave (${g.id})`);
  const ra = await joinNextInvite(alice, new Set([am]));
  const rd = await joinNextInvite(dave, new Set([dm]));
  check(ra === rd, `one portal room for both Matrix users (${ra})`);
  const room = ra;

  const bm = await bob.send(g.id, { text: 'Hello both, Bob here' });
  await alice.waitEvent('Bob\'s message at Alice', (e) => e.room_id === room && e.content?.body === 'Hello both, Bob here', 30000);
  await dave.waitEvent('Bob\'s message at Dave', (e) => e.room_id === room && e.content?.body === 'Hello both, Bob here', 30000);
  await new Promise((r) => setTimeout(r, 1000));
  check(alice.messagesIn(room).filter((e) => e.content?.body === 'Hello both, Bob here').length === 1,
    'Bob\'s message reached both logins and is in the room once');

  // a burst, received by both logins: each message once, in order (the duplicate checks of a
  // queued burst are answered by one query, and a copy from the other login finds it bridged)
  const burst = Array.from({ length: 15 }, (_, i) => `burst ${i}`);
  for (const t of burst) await bob.send(g.id, { text: t });
  await alice.waitEvent('the burst\'s last message', (e) => e.room_id === room && e.content?.body === 'burst 14', 30000);
  await new Promise((r) => setTimeout(r, 1500));
  const seen = alice.messagesIn(room).map((e) => e.content?.body).filter((b) => burst.includes(b));
  check(JSON.stringify(seen) === JSON.stringify(burst), `a burst of 15 from Bob is in the room once each, in order (${seen.length})`);

  await alice.send(room, 'Alice answers');
  await dave.send(room, 'Dave answers');
  const got = await waitFor('both answers at Bob', () => {
    const t = bob.received.filter((m) => m.key.remoteJid === g.id).map(bob.textOf);
    return t.includes('Alice answers') && t.includes('Dave answers') && t;
  }, 30000).catch(() => null);
  check(!!got, 'Bob (Baileys) receives both Matrix users\' messages in the group');
  const from = (txt) => bob.received.find((m) => bob.textOf(m) === txt)?.key.participant ?? '';
  check(from('Alice answers').startsWith(ALICE) || from('Alice answers').includes('900000000000061'), `Alice's message comes from her account (${from('Alice answers')})`);
  check(from('Dave answers').startsWith(DAVE) || from('Dave answers').includes('900000000000062'), `Dave's message comes from his account (${from('Dave answers')})`);
  await new Promise((r) => setTimeout(r, 1500));
  const bodies = alice.messagesIn(room).map((e) => e.content.body);
  check(bodies.filter((b) => b === 'Alice answers').length === 1 && bodies.filter((b) => b === 'Dave answers').length === 1,
    `no echo: each Matrix message is in the room once (${JSON.stringify(bodies)})`);
  // Bob reads Alice's message: shown in the shared room by his ghost
  const bobGhost = `@whatsapp_${BOB}:${DOMAIN}`;
  const aliceAtBob = bob.received.find((m) => bob.textOf(m) === 'Alice answers');
  const aliceEv = alice.messagesIn(room).find((e) => e.content.body === 'Alice answers');
  await bob.sock.readMessages([aliceAtBob.key]);
  const rr = await waitFor('Bob\'s receipt in the group room', () => alice.ephemeral.find((e) => e.room_id === room &&
    e.type === 'm.receipt' && e.content?.[aliceEv.event_id]?.['m.read']?.[bobGhost]), 30000).catch(() => null);
  check(!!rr, 'a WhatsApp read receipt in a group becomes the ghost\'s m.read in the shared room');
  // Bob types in the group: his ghost types in the shared room, then stops
  await bob.sock.sendPresenceUpdate('composing', g.id);
  const typing = await waitFor('Bob typing in the group room', () => alice.ephemeral.find((e) => e.room_id === room &&
    e.type === 'm.typing' && e.content?.user_ids?.includes(bobGhost)), 30000).catch(() => null);
  check(!!typing, 'a WhatsApp member typing in a group shows as the ghost typing in the shared room');
  const since = alice.ephemeral.length;
  await bob.sock.sendPresenceUpdate('paused', g.id);
  const stopped = await waitFor('Bob stops typing', () => alice.ephemeral.slice(since).find((e) => e.room_id === room &&
    e.type === 'm.typing' && !e.content?.user_ids?.includes(bobGhost)), 30000).catch(() => null);
  check(!!stopped, 'and stops when he pauses');
  void bm;
  alice.stop(); dave.stop();
} catch (e) {
  failed(e);
} finally {
  bob?.stop();
  await stack.stop();
}
finish();
