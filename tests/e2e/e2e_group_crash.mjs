// tests/e2e/e2e_group_crash.mjs - a group notification is not lost when wabridge dies after acking
// it to WhatsApp and before showing it on Matrix: Bob (superadmin) removes Carol from a group
// with Alice (logged in through the bridge); the bridge saves the notification, acks it, and is
// held before showing it (WABRIDGE_TEST_GROUP_EVENT_DELAY_MS, tests only); it is killed with
// SIGKILL and started again without the pause: Carol's ghost must still leave the portal (the
// group resync after login would not remove her: only the saved notification does), and the saved
// row must be gone once shown.
//   node e2e_group_crash.mjs WABRIDGE HS_SIM WA_SIM   (env WABRIDGE_TEST_PG_STATE)
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN, waitFor, sqlOn } from './stack.mjs';
import { report } from './report.mjs';
import { openManagementRoom, loginQr, groupPortal, membershipOf } from './scenario.mjs';

const [wabridge, hsSim, waSim] = process.argv.slice(2);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
const pg = createDatabase(conninfo, 'e2e_group_crash');
const { check, failed, finish } = report();
const sql = (q) => sqlOn(pg, q);
const buffered = () => Number(sql('SELECT count(*) FROM wa_group_event_buffer'));
const ALICE = '15550000071', BOB = '15550000072', CAROL = '15550000073';
const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000071', name: 'Alice' }, { phone: BOB, lid: '900000000000072', name: 'Bob' },
    { phone: CAROL, lid: '900000000000073', name: 'Carol' }],
});
const { wa, hs } = stack;
try {
  const alice = await MxUser.register(hs.url, 'alice');
  const mgmt = await openManagementRoom(alice, DOMAIN);
  await loginQr(alice, mgmt, wa, ALICE);
  const carolGhost = `@whatsapp_${CAROL}:${DOMAIN}`;
  const { group, portal } = await groupPortal(alice, wa, check,
    { owner: BOB, subject: 'Crash club', members: [ALICE, CAROL], known: new Set([mgmt]) });
  const carolIn = () => membershipOf(alice, portal, carolGhost);
  check(await waitFor('Carol\'s ghost in the portal', async () => await carolIn() === 'join', 30000).catch(() => false),
    'Carol\'s ghost is in the group portal');
  await waitFor('the creation shown', async () => buffered() === 0, 30000).catch(() => {});

  // the bridge again, now held before it shows a group change
  await stack.bridge.stop();
  stack.env.WABRIDGE_TEST_GROUP_EVENT_DELAY_MS = '60000';
  await stack.restartBridge();
  await new Promise((r) => setTimeout(r, 1500)); // logged in again
  const rm = await wa.admin('POST', '/admin/group/participants', { phone: BOB, group, action: 'remove', members: [CAROL] });
  check(rm.status === 200, 'Bob removes Carol on WhatsApp');
  check(await waitFor('the removal saved', async () => buffered() >= 1, 30000).catch(() => false),
    `the notification is saved before its ack (${buffered()} row(s))`);
  await new Promise((r) => setTimeout(r, 500)); // the ack leaves
  check(await carolIn() === 'join', 'held: Carol\'s ghost has not left yet');
  const killed = await stack.bridge.kill();
  check(killed.sig === 'SIGKILL', 'wabridge killed with SIGKILL between the ack and the room');

  delete stack.env.WABRIDGE_TEST_GROUP_EVENT_DELAY_MS;
  await stack.restartBridge();
  check(await waitFor('Carol\'s ghost leaves', async () => ['leave', 'ban'].includes(await carolIn()), 30000).catch(() => false),
    'after the restart the saved removal reaches Matrix: Carol\'s ghost left the portal');
  check(await waitFor('the buffer emptied', async () => buffered() === 0, 30000).catch(() => false),
    'the saved notification is dropped once shown');
  const g = await wa.admin('GET', `/admin/group?jid=${encodeURIComponent(group)}`);
  check(!JSON.stringify(g.json.members).includes(CAROL), 'Carol is out of the WhatsApp group');
  alice.stop();
} catch (e) {
  failed(e);
} finally {
  await stack.stop();
}
finish();
