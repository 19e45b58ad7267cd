// tests/e2e/e2e_outage.mjs - outages on either side are waited out, nothing lost, order kept: the
// homeserver refuses connections for a few seconds while WhatsApp messages arrive (the bridge
// retries and delivers them after), and the WhatsApp server drops every connection while the Matrix
// user writes (the engine reconnects and the messages go out after).
//   node e2e_outage.mjs WABRIDGE HS_SIM WA_SIM   (env WABRIDGE_TEST_PG_STATE)
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN, waitFor } from './stack.mjs';
import { openManagementRoom, loginQr, joinNextInvite, phoneMessages } from './scenario.mjs';

const [wabridge, hsSim, waSim] = process.argv.slice(2);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
const pg = createDatabase(conninfo, 'e2e_outage');
let failures = 0;
const check = (ok, what) => { console.log(`${ok ? 'ok' : 'FAIL'} - ${what}`); if (!ok) failures++; };
const ALICE = '15550000031', BOB = '15550000032';
const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000031', name: 'Alice' }, { phone: BOB, lid: '900000000000032', name: 'Bob' }],
});
const { wa, hs } = stack;
try {
  const alice = await MxUser.register(hs.url, 'alice');
  const mgmt = await openManagementRoom(alice, DOMAIN);
  await loginQr(alice, mgmt, wa, ALICE);
  await wa.admin('POST', '/admin/send', { phone: BOB, to: `${ALICE}@s.whatsapp.net`, text: 'before' });
  const portal = await joinNextInvite(alice, new Set([mgmt]));
  await alice.waitEvent('the first message', (e) => e.room_id === portal && e.content?.body === 'before');

  // the homeserver goes away for 4 s; WhatsApp messages keep coming
  const r = await fetch(`${hs.url}/_hssim/refuse`, { method: 'POST', body: JSON.stringify({ ms: 4000 }) });
  check(r.ok, 'hs-sim refuses connections for 4 s');
  for (let i = 1; i <= 5; i++)
    await wa.admin('POST', '/admin/send', { phone: BOB, to: `${ALICE}@s.whatsapp.net`, text: `during hs outage ${i}` });
  await waitFor('the messages after the outage', () => alice.messagesIn(portal).filter((e) => e.content.body.startsWith('during hs outage')).length >= 5, 60000);
  const got = alice.messagesIn(portal).filter((e) => e.content.body.startsWith('during hs outage')).map((e) => e.content.body);
  check(JSON.stringify(got) === JSON.stringify([1, 2, 3, 4, 5].map((i) => `during hs outage ${i}`)),
    'WhatsApp messages sent while the homeserver was down arrive after it is back, once each, in order');

  // the WhatsApp server drops every connection; the Matrix user keeps writing
  await wa.admin('POST', '/admin/restart', {});
  for (let i = 1; i <= 5; i++) await alice.send(portal, `during wa outage ${i}`);
  await waitFor('Bob gets them', async () => (await phoneMessages(wa, BOB)).filter((m) => m.text.startsWith('during wa outage')).length >= 5, 60000);
  const bob = (await phoneMessages(wa, BOB)).filter((m) => m.text.startsWith('during wa outage')).map((m) => m.text);
  check(JSON.stringify(bob) === JSON.stringify([1, 2, 3, 4, 5].map((i) => `during wa outage ${i}`)),
    'Matrix messages sent while WhatsApp was reconnecting go out after, once each, in order');
  check(!alice.messagesIn(portal).some((e) => /not sent/.test(e.content.body)), 'no failure notice was needed');
  alice.stop();
} catch (e) {
  console.log(`FAIL - ${e.stack}`);
  failures++;
} finally {
  await stack.stop();
}
console.log(failures ? `${failures} failure(s)` : 'all passed');
process.exit(failures ? 1 : 0);
