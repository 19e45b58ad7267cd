// tests/e2e/e2e_group.mjs - a group portal across the whole stack: Bob's phone creates a WhatsApp
// group with Alice (logged in through the bridge) and Carol; the portal room appears with the
// group's name, Alice is invited; Bob's group message comes from his ghost; Alice's answer in the
// room reaches both phones; Bob renames the group and removes Carol -> the room follows. Alice
// also creates a group with `create-group`, adds and removes a member there by inviting and
// kicking the ghost (refused with a notice in Bob's group, where she is no admin), makes Bob an
// admin and not again by changing his ghost's power level (refused and put back in Bob's group),
// and brings her groups over with `sync`.
//   node e2e_group.mjs WABRIDGE HS_SIM WA_SIM   (env WABRIDGE_TEST_PG_STATE [WABRIDGE_E2E_HS_NO_PREV_CONTENT])
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN, waitFor } from './stack.mjs';
import { report } from './report.mjs';
import { openManagementRoom, loginQr, joinNextInvite, phoneMessages, fromBot } from './scenario.mjs';

const [wabridge, hsSim, waSim] = process.argv.slice(2);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
// WABRIDGE_E2E_HS_NO_PREV_CONTENT: hs-sim leaves unsigned.prev_content out; the bridge then
// compares power-level changes with the admins it recorded
const pg = createDatabase(conninfo, process.env.WABRIDGE_E2E_HS_NO_PREV_CONTENT ? 'e2e_group_noprev' : 'e2e_group');
const { check, failed, finish } = report();
const ALICE = '15550000051', BOB = '15550000052', CAROL = '15550000053';
const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000051', name: 'Alice' }, { phone: BOB, lid: '900000000000052', name: 'Bob' },
    { phone: CAROL, lid: '900000000000053', name: 'Carol' }],
});
const { wa, hs } = stack;
try {
  const alice = await MxUser.register(hs.url, 'alice');
  const mgmt = await openManagementRoom(alice, DOMAIN);
  await loginQr(alice, mgmt, wa, ALICE);
  const bobGhost = `@whatsapp_${BOB}:${DOMAIN}`;

  const cr = await wa.admin('POST', '/admin/group/create', { phone: BOB, subject: 'Weekend plans', members: [ALICE, CAROL] });
  check(cr.status === 200 && /@g\.us$/.test(cr.json.jid), `Bob's phone created a group (${cr.json.jid})`);
  const group = cr.json.jid;
  const known = new Set([mgmt]);
  const portal = await joinNextInvite(alice, known);
  const name = await waitFor('the room name', async () => {
    const st = await alice.getStateEvent(portal, 'm.room.name').catch(() => null);
    return st?.name === 'Weekend plans' && st;
  }, 30000);
  check(!!name, 'the group portal is named after the group');

  const s1 = await wa.admin('POST', '/admin/group/send', { phone: BOB, group, text: 'Hi all, Bob here' });
  check(s1.status === 200, 'Bob sends a group text');
  const m1 = await alice.waitEvent('Bob\'s group message', (e) => e.room_id === portal && e.content?.body === 'Hi all, Bob here', 30000);
  check(m1.sender === bobGhost, 'the group message comes from Bob\'s ghost in the group portal');

  await alice.send(portal, 'Hello group, Alice from Matrix');
  for (const p of [BOB, CAROL]) {
    const got = await waitFor(`${p} gets Alice's group message`, async () =>
      (await phoneMessages(wa, p)).find((m) => m.text === 'Hello group, Alice from Matrix'), 30000).catch(() => null);
    check(got && got.chat === group, `the phone of ${p} got Alice's message in the group (${got?.chat})`);
  }

  // Alice renames the room and sets its topic: the group follows
  await alice.setRoomName(portal, 'Weekend plans (final)');
  const topic = `Saturday 10:00. Bring ${'sandwiches, '.repeat(120)}and more`; // ~1.5 KB: kept whole
  await alice.setRoomTopic(portal, topic);
  const info = await waitFor('the group renamed', async () => {
    const g = await wa.admin('GET', `/admin/group?jid=${encodeURIComponent(group)}`);
    return g.json.subject === 'Weekend plans (final)' && g.json;
  }, 30000).catch(() => null);
  check(!!info, 'renaming the portal renames the WhatsApp group');
  const desc = await waitFor('the description', async () => {
    const g = await wa.admin('GET', `/admin/group?jid=${encodeURIComponent(group)}`);
    return JSON.stringify(g.json).includes(JSON.stringify(topic));
  }, 30000).catch(() => false);
  check(desc, 'the portal topic becomes the group description, 1.5 KB whole');

  // admins: Bob made the group (superadmin): his ghost has power level 50; Bob promotes Alice on
  // WhatsApp -> Alice gets 50 in the portal; demoted -> back to the default
  const levels = async () => (await alice.req('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(portal)}/state/m.room.power_levels/`)).users ?? {};
  check(await waitFor('Bob\'s level', async () => (await levels())[bobGhost] === 50, 30000).catch(() => false),
    'the group\'s admin (Bob) has power level 50 in the portal');
  const plEvents = (await alice.req('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(portal)}/state/m.room.power_levels/`)).events ?? {};
  check(plEvents['m.room.power_levels'] === 50 && plEvents['m.room.name'] === 0 && plEvents['m.room.encryption'] === 100,
    `the portal lets admins (50) change power levels, anyone the name, only the bot encryption (${JSON.stringify(plEvents)})`);
  const pr = await wa.admin('POST', '/admin/group/participants', { phone: BOB, group, action: 'promote', members: [ALICE] });
  check(pr.status === 200 && await waitFor('Alice promoted', async () => (await levels())[alice.userId] === 50, 30000).catch(() => false),
    'promoted on WhatsApp: the Matrix user gets power level 50');
  await wa.admin('POST', '/admin/group/participants', { phone: BOB, group, action: 'demote', members: [ALICE] });
  check(await waitFor('Alice demoted', async () => (await levels())[alice.userId] === undefined, 30000).catch(() => false),
    'demoted on WhatsApp: back to the default level');

  const rm = await wa.admin('POST', '/admin/group/participants', { phone: BOB, group, action: 'remove', members: [CAROL] });
  check(rm.status === 200, 'Bob removes Carol');
  const carolGhost = `@whatsapp_${CAROL}:${DOMAIN}`;
  await alice.waitEvent('Carol leaves the room', (e) => e.room_id === portal && e.type === 'm.room.member' && e.state_key === carolGhost &&
    ['leave', 'ban'].includes(e.content?.membership), 30000).then(() => check(true, 'a removed member\'s ghost leaves the portal'),
    () => check(false, 'a removed member\'s ghost leaves the portal'));

  // Alice creates a group from Matrix
  const since = alice.events.length;
  await alice.send(mgmt, `create-group Book club +${BOB}`);
  const done = await alice.waitEvent('the group created', (e) => alice.events.indexOf(e) >= since &&
    fromBot(alice, mgmt, (x) => /Created the WhatsApp group|could not be created/.test(x.content.body))(e), 30000);
  check(/Created the WhatsApp group "Book club"/.test(done.content.body), `create-group: ${done.content.body}`);
  // members from Matrix: in her own group Alice invites Carol's ghost (Carol is added on
  // WhatsApp and her ghost joins), then kicks it (Carol is removed)
  const club = done.content.body.match(/(![^ ]+)$/)?.[1];
  await alice.join(club).catch(() => {});
  await alice.send(club, 'Welcome to the book club');
  const clubMsg = await waitFor('Bob gets the club message', async () =>
    (await phoneMessages(wa, BOB)).find((m) => m.text === 'Welcome to the book club'), 30000).catch(() => null);
  const clubJid = clubMsg?.chat;
  const members = async (jid) => (await wa.admin('GET', `/admin/group?jid=${encodeURIComponent(jid)}`)).json.members?.map((p) => p.phone) ?? [];
  const hasCarol = async (jid) => (await members(jid)).some((x) => String(x).includes(CAROL));
  await alice.invite(club, carolGhost);
  check(await waitFor('Carol in the club on WhatsApp', () => hasCarol(clubJid), 30000).catch(() => false),
    `inviting a ghost adds the contact to the WhatsApp group (${JSON.stringify(await members(clubJid))})`);
  await alice.waitEvent('Carol\'s ghost joins the club room', (e) => e.room_id === club && e.type === 'm.room.member' &&
    e.state_key === carolGhost && e.content?.membership === 'join', 30000).then(() => check(true, 'the invited ghost joins the room'),
    () => check(false, 'the invited ghost joins the room'));
  await alice.kick(club, carolGhost, 'bye');
  check(await waitFor('Carol out of the club', async () => !(await hasCarol(clubJid)), 30000).catch(() => false),
    'kicking a ghost removes the contact from the WhatsApp group');
  // admins from Matrix: in her own group Alice (superadmin) raises Bob's ghost to 50 -> Bob is
  // made admin on WhatsApp; back to 0 -> no longer admin
  const plPath = (room) => `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/state/m.room.power_levels/`;
  const setLevel = async (room, who, level, by = alice) => {
    const pl = await by.req('GET', plPath(room));
    pl.users = { ...(pl.users ?? {}) };
    if (level === undefined) delete pl.users[who]; else pl.users[who] = level;
    await by.req('PUT', plPath(room), pl);
  };
  const waAdmin = async (jid, phone) => (await wa.admin('GET', `/admin/group?jid=${encodeURIComponent(jid)}`)).json.members
    ?.find((m) => String(m.phone).includes(phone))?.admin;
  check(await waAdmin(clubJid, BOB) === false, 'Bob starts as a plain member of the club on WhatsApp');
  await setLevel(club, bobGhost, 50);
  check(await waitFor('Bob admin on WhatsApp', async () => await waAdmin(clubJid, BOB) === true, 30000).catch(() => false),
    'power level 50 for a ghost in the portal makes the contact a WhatsApp group admin');
  await new Promise((r) => setTimeout(r, 500)); // the promote notification comes back: no echo
  check((await alice.req('GET', plPath(club))).users?.[bobGhost] === 50, 'the promoted ghost keeps its level (no loop back)');
  await setLevel(club, bobGhost, undefined);
  check(await waitFor('Bob no longer admin', async () => await waAdmin(clubJid, BOB) === false, 30000).catch(() => false),
    'lowering the ghost below 50 demotes the contact on WhatsApp');
  await new Promise((r) => setTimeout(r, 500));
  check((await alice.req('GET', plPath(club))).users?.[bobGhost] === undefined, 'the demoted ghost stays at the default level');
  // in Bob's group Alice is no admin: lowering Bob's ghost is refused by WhatsApp, the bot says
  // why and puts his level back
  const s4 = alice.events.length;
  await setLevel(portal, bobGhost, 0);
  const noDemote = await alice.waitEvent('the admin refusal', (e) => alice.events.indexOf(e) >= s4 && e.room_id === portal &&
    e.type === 'm.room.message' && /WhatsApp did not remove .* as a group admin/.test(e.content?.body), 30000).catch(() => null);
  check(/only group admins/.test(noDemote?.content?.body ?? ''), `a demote without admin rights is refused with a notice (${noDemote?.content?.body})`);
  check(await waitFor('Bob\'s level back', async () => (await levels())[bobGhost] === 50, 30000).catch(() => false),
    'the refused power-level change is put back (Bob\'s ghost at 50 again)');
  check(await waAdmin(group, BOB) === true, 'Bob is still an admin of his group on WhatsApp');
  // a Matrix user without a login changes the levels: nothing on WhatsApp, a notice, put back
  const eve = await MxUser.register(hs.url, 'eve');
  await alice.invite(portal, eve.userId);
  await eve.join(portal);
  const s5 = alice.events.length;
  await setLevel(portal, bobGhost, undefined, eve);
  const noLogin = await alice.waitEvent('the no-login notice', (e) => alice.events.indexOf(e) >= s5 && e.room_id === portal &&
    e.type === 'm.room.message' && /Only users logged in to WhatsApp can change the group's admins/.test(e.content?.body), 30000).catch(() => null);
  check(!!noLogin, 'a power-level change by a user without a login gets a notice');
  check(await waitFor('Bob\'s level back again', async () => (await levels())[bobGhost] === 50, 30000).catch(() => false),
    'and is put back');
  check(await waAdmin(group, BOB) === true, 'Bob is still an admin on WhatsApp');
  eve.stop();

  // in Bob's group Alice is no admin: WhatsApp refuses, the bot says why and takes the invite back
  const s3 = alice.events.length;
  await alice.invite(portal, carolGhost);
  const refused = await alice.waitEvent('the refusal', (e) => alice.events.indexOf(e) >= s3 && e.room_id === portal &&
    e.type === 'm.room.message' && /WhatsApp did not add/.test(e.content?.body), 30000).catch(() => null);
  check(/only group admins/.test(refused?.content?.body ?? ''), `adding without admin rights is refused with a notice (${refused?.content?.body})`);
  check(!!await alice.waitEvent('the invite taken back', (e) => alice.events.indexOf(e) >= s3 && e.room_id === portal &&
    e.type === 'm.room.member' && e.state_key === carolGhost && e.content?.membership === 'leave', 30000).catch(() => null),
    'the refused invite is taken back in the room');
  check(!(await hasCarol(group)), 'Carol is not in Bob\'s group');

  // sync: the groups she is in come over; the portals that exist are reused, not doubled
  const roomsBefore = alice.invites.size;
  const s2 = alice.events.length;
  await alice.send(mgmt, 'sync');
  await alice.waitEvent('the sync answer', (e) => alice.events.indexOf(e) >= s2 && fromBot(alice, mgmt, (x) => /Syncing your WhatsApp groups/.test(x.content.body))(e));
  await new Promise((r) => setTimeout(r, 1500));
  check(alice.invites.size === roomsBefore, `sync reuses the existing group portals (${alice.invites.size} invites)`);
  alice.stop();
} catch (e) {
  failed(e);
} finally {
  await stack.stop();
}
finish();
