// tests/e2e/e2e_identity.mjs - a contact's security code changes: Bob's phone is registered anew
// (WhatsApp reinstalled: a new identity key); his next message still arrives, and the DM portal
// shows a notice about the new code just before it. Then the same with the server announcing it.
//   node e2e_identity.mjs WABRIDGE HS_SIM WA_SIM   (env WABRIDGE_TEST_PG_STATE)
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN } from './stack.mjs';
import { report } from './report.mjs';
import { openManagementRoom, loginQr, joinNextInvite, fromBot } from './scenario.mjs';

const [wabridge, hsSim, waSim] = process.argv.slice(2);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
const pg = createDatabase(conninfo, 'e2e_identity');
const { check, failed, finish } = report();
const ALICE = '15550000081', BOB = '15550000082';
const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000081', name: 'Alice' }, { phone: BOB, lid: '900000000000082', name: 'Bob' }],
});
const { wa, hs } = stack;
let alice;
try {
  alice = await MxUser.register(hs.url, 'alice');
  const mgmt = await openManagementRoom(alice, DOMAIN);
  await loginQr(alice, mgmt, wa, ALICE);
  const send = (text) => wa.admin('POST', '/admin/send', { phone: BOB, to: `${ALICE}@s.whatsapp.net`, text });
  await send('hello before');
  const room = await joinNextInvite(alice, new Set([mgmt]));
  await alice.waitEvent('the first message', (e) => e.room_id === room && e.content?.body === 'hello before', 30000);

  for (const announce of [false, true]) {
    const since = alice.events.length;
    const rr = await wa.admin('POST', '/admin/reregister', { phone: BOB, announce });
    check(rr.status === 200, `Bob's phone registered anew (announced: ${announce})`);
    const text = `hello from the new phone (${announce ? 'announced' : 'quiet'})`;
    await send(text);
    const msg = await alice.waitEvent('the message from the new phone', (e) => alice.events.indexOf(e) >= since &&
      e.room_id === room && e.content?.body === text, 30000).catch(() => null);
    check(!!msg, `the message from Bob's new phone arrives (${announce ? 'announced' : 'found from the key'})`);
    const notice = alice.events.find((e) => alice.events.indexOf(e) >= since && fromBot(alice, room, (x) =>
      new RegExp(`security code of \\+${BOB} changed`).test(x.content.body))(e));
    check(!!notice && alice.events.indexOf(notice) < alice.events.indexOf(msg),
      'the portal shows a notice about the new security code before that message');
  }
  const n = alice.messagesIn(room).filter((e) => /^hello from the new phone/.test(e.content?.body ?? "")).length;
  check(n === 2, `each message once (${n}: ${JSON.stringify(alice.messagesIn(room).map((e) => [e.event_id, e.content?.body]))})`);
} catch (e) {
  failed(e);
} finally {
  alice?.stop();
  await stack.stop();
}
finish();
