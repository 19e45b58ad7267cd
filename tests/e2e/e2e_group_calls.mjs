// tests/e2e/e2e_group_calls.mjs - a group change asked from Matrix whose answer from WhatsApp is
// lost is settled, not forgotten and not guessed. Alice (logged in, made admin of Bob's group)
// changes the group's members from Matrix while wa-sim's group-fault knob withholds the answer:
//   1. the removal of Carol is made but never answered; wabridge is killed with SIGKILL and
//      started again: the group is asked, the removal stands (no notice, Carol's ghost stays out);
//   2. adding Carol back is lost (neither made nor answered); killed and started again: the bot
//      says it was not done and takes the invite back;
//   3. adding Carol is made but not answered, and the connection drops (no restart): the bridge
//      does not undo it; when connected again it finds Carol in the group and her ghost joins;
//   4. (no fault) with the group's info locked and Alice no admin, her rename of the portal is
//      refused by WhatsApp: the bot says why and the room takes the group's name again.
// Each time the group_call row is gone once settled.
//   node e2e_group_calls.mjs WABRIDGE HS_SIM WA_SIM   (env WABRIDGE_TEST_PG_STATE)
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN, waitFor, sqlOn } from './stack.mjs';
import { report } from './report.mjs';
import { openManagementRoom, loginQr, groupPortal, membershipOf } from './scenario.mjs';

const [wabridge, hsSim, waSim] = process.argv.slice(2);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
const pg = createDatabase(conninfo, 'e2e_group_calls');
const { check, failed, finish } = report();
const sql = (q) => sqlOn(pg, q);
const calls = () => Number(sql('SELECT count(*) FROM group_call'));
const ALICE = '15550000081', BOB = '15550000082', CAROL = '15550000083';
const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000081', name: 'Alice' }, { phone: BOB, lid: '900000000000082', name: 'Bob' },
    { phone: CAROL, lid: '900000000000083', name: 'Carol' }],
});
const { wa, hs } = stack;
try {
  const alice = await MxUser.register(hs.url, 'alice');
  const mgmt = await openManagementRoom(alice, DOMAIN);
  await loginQr(alice, mgmt, wa, ALICE);
  const carolGhost = `@whatsapp_${CAROL}:${DOMAIN}`;
  const { group, portal } = await groupPortal(alice, wa, check,
    { owner: BOB, subject: 'Lost answers', members: [ALICE, CAROL], known: new Set([mgmt]) });
  const pr = await wa.admin('POST', '/admin/group/participants', { phone: BOB, group, action: 'promote', members: [ALICE] });
  check(pr.status === 200, 'Bob makes Alice a group admin');
  const carolIn = () => membershipOf(alice, portal, carolGhost);
  const carolInGroup = async () => JSON.stringify((await wa.admin('GET', `/admin/group?jid=${encodeURIComponent(group)}`)).json.members).includes(CAROL);
  check(await waitFor('Carol\'s ghost in the portal', async () => await carolIn() === 'join', 30000).catch(() => false),
    'Carol\'s ghost is in the group portal');
  const notices = (since, re) => alice.events.filter((e, i) => i >= since && e.room_id === portal &&
    e.type === 'm.room.message' && re.test(e.content?.body ?? ''));
  const fault = (mode) => wa.admin('POST', '/admin/group-fault', { mode });
  check((await wa.admin('POST', '/admin/group-fault', { mode: 'sideways' })).status === 400, 'wa-sim refuses an unknown fault mode');

  // 1. made, answer lost, bridge killed: the removal stands
  check((await fault('unanswered')).status === 200, 'wa-sim withholds answers to participant calls');
  const s1 = alice.events.length;
  await alice.kick(portal, carolGhost, 'out');
  check(await waitFor('Carol out of the group', async () => !(await carolInGroup()), 30000).catch(() => false),
    'kicking Carol\'s ghost removes her on WhatsApp (the answer is withheld)');
  check(await waitFor('the call recorded', async () => calls() === 1, 10000).catch(() => false), 'the call is recorded until answered');
  check(Number(sql('SELECT count(*) FROM mx_inbox')) === 0, 'the kick\'s inbox row went with the record');
  await stack.bridge.kill();
  await fault('none');
  await stack.restartBridge();
  check(await waitFor('the call settled', async () => calls() === 0, 30000).catch(() => false),
    'after the restart the group is asked and the call settled');
  await new Promise((r) => setTimeout(r, 1000));
  check(['leave', 'ban'].includes(await carolIn()), 'Carol\'s ghost stays out of the portal');
  check(notices(s1, /WhatsApp did not/).length === 0, 'no "not done" notice for a change that was made');
  check(!(await carolInGroup()), 'Carol is still out of the WhatsApp group (the call was not sent again)');

  // 2. lost (not made), bridge killed: a notice and the invite taken back
  await fault('lost');
  const s2 = alice.events.length;
  await alice.invite(portal, carolGhost);
  check(await waitFor('the call recorded', async () => calls() === 1, 10000).catch(() => false), 'the add is recorded');
  await new Promise((r) => setTimeout(r, 500)); // the call leaves (and is lost)
  await stack.bridge.kill();
  await fault('none');
  await stack.restartBridge();
  const said = await alice.waitEvent('the not-done notice', (e) => alice.events.indexOf(e) >= s2 && e.room_id === portal &&
    e.type === 'm.room.message' && /WhatsApp did not add/.test(e.content?.body ?? ''), 30000).catch(() => null);
  check(/answer was lost/.test(said?.content?.body ?? ''), `a lost add is reported as not done (${said?.content?.body})`);
  check(await waitFor('the invite taken back', async () => (await carolIn()) === 'leave', 30000).catch(() => false),
    'and the invite is taken back');
  check(await waitFor('the call settled', async () => calls() === 0, 30000).catch(() => false), 'the row is gone');
  check(!(await carolInGroup()), 'Carol is not in the WhatsApp group');

  // 3. made, answer lost with the connection (no restart): not undone, settled when back
  await fault('unanswered');
  const s3 = alice.events.length;
  await alice.invite(portal, carolGhost);
  check(await waitFor('Carol in the group', () => carolInGroup(), 30000).catch(() => false), 'the add is made on WhatsApp');
  await new Promise((r) => setTimeout(r, 300));
  await fault('none');
  check((await wa.admin('POST', '/admin/kick', { phone: ALICE })).status === 200, 'the bridge\'s connection is dropped');
  const waiting = await alice.waitEvent('the lost-connection notice', (e) => alice.events.indexOf(e) >= s3 && e.room_id === portal &&
    e.type === 'm.room.message' && /connection to WhatsApp was lost/.test(e.content?.body ?? ''), 30000).catch(() => null);
  check(!!waiting, 'the user is told the answer was lost with the connection');
  check(await waitFor('Carol\'s ghost joins', async () => (await carolIn()) === 'join', 30000).catch(() => false),
    'connected again, the group shows Carol: her ghost joins the portal');
  check(await waitFor('the call settled', async () => calls() === 0, 30000).catch(() => false), 'the row is gone');
  check(notices(s3, /WhatsApp did not/).length === 0, 'the add is not undone');

  // 4. a refused rename: Bob locks the group's info and takes Alice's admin away; Alice renames
  // the portal: the bot says why, and the room takes the group's name again
  check((await wa.admin('POST', '/admin/group/setting', { phone: BOB, group, setting: 'locked' })).status === 200, 'Bob locks the group\'s info');
  check((await wa.admin('POST', '/admin/group/setting', { phone: BOB, group, setting: 'sideways' })).status === 400, 'wa-sim refuses an unknown setting');
  await wa.admin('POST', '/admin/group/participants', { phone: BOB, group, action: 'demote', members: [ALICE] });
  const namePath = `/_matrix/client/v3/rooms/${encodeURIComponent(portal)}/state/m.room.name/`;
  await new Promise((r) => setTimeout(r, 500)); // the notifications reach the bridge
  const s4 = alice.events.length;
  await alice.req('PUT', namePath, { name: 'Renamed from Matrix' });
  const no = await alice.waitEvent('the rename refusal', (e) => alice.events.indexOf(e) >= s4 && e.room_id === portal &&
    e.type === 'm.room.message' && /did not change the group's name/.test(e.content?.body ?? ''), 30000).catch(() => null);
  check(/only group admins/.test(no?.content?.body ?? ''), `a refused rename is told (${no?.content?.body})`);
  check(await waitFor('the name back', async () => (await alice.req('GET', namePath)).name === 'Lost answers', 30000).catch(() => false),
    'and the room takes the group\'s name again');
  const info = (await wa.admin('GET', `/admin/group?jid=${encodeURIComponent(group)}`)).json;
  check(info.subject === 'Lost answers', `the group kept its name on WhatsApp (${info.subject})`);
  alice.stop();
} catch (e) {
  failed(e);
} finally {
  await stack.stop();
}
finish();
