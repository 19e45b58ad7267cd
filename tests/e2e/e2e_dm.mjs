// tests/e2e/e2e_dm.mjs - the whole stack, a direct chat: PostgreSQL + hs-sim + wa-sim + wabridge.
// Alice (Matrix) opens a management room with the bot, checks the commands' answers (help, bad
// arguments, unknown command, ping), logs in by QR; Bob's simulated phone writes to her WhatsApp
// account -> a portal room appears with Bob's ghost and the message; Alice answers there -> Bob's
// phone receives it. A user without permission is told no. Then the bridge is stopped (SIGTERM)
// and started again: it logs in from the database and a message still crosses each way. Logout.
//   node e2e_dm.mjs WABRIDGE HS_SIM WA_SIM   (env WABRIDGE_TEST_PG_STATE: the db fixture's state)
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN, waitFor } from './stack.mjs';
import { report } from './report.mjs';
import { openManagementRoom, loginQr, loginPhone, joinNextInvite, phoneMessages, fromBot } from './scenario.mjs';

const [wabridge, hsSim, waSim] = process.argv.slice(2);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
const pg = createDatabase(conninfo, 'e2e_dm');
const { check, failed, finish } = report();

const ALICE = '15550000001', BOB = '15550000002', CAROL = '15550000003';
const eveId = () => `@eve:${DOMAIN}`;
const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000001', name: 'Alice' }, { phone: BOB, lid: '900000000000002', name: 'Bob' },
    { phone: CAROL, lid: '900000000000003', name: 'Carol' }],
  permissions: { '*': 'relay', [DOMAIN]: 'user', [`@mallory:${DOMAIN}`]: 'none' },
  env: { WABRIDGE_BRIDGE_LOGIN_TIMEOUT_S: '10' }, // a login nobody completes times out quickly
});
const { wa, hs } = stack;
try {
  const alice = await MxUser.register(hs.url, 'alice');
  const mgmt = await openManagementRoom(alice, DOMAIN);
  check(true, 'the bot joined the DM and greeted: management room');

  const answer = async (cmd, re, what) => {
    const since = alice.events.length;
    await alice.send(mgmt, cmd);
    const ev = await alice.waitEvent(what, (e) => alice.events.indexOf(e) >= since && fromBot(alice, mgmt)(e));
    check(re.test(ev.content.body), `${what}: ${JSON.stringify(ev.content.body.slice(0, 80))}`);
  };
  await answer('help', /login qr/, 'help lists the commands');
  await answer('!wa ping', /not logged in/, 'ping with the prefix, before login');
  await answer('login', /Usage: `login qr`/, 'login without a method answers its usage');
  await answer('login phone 12ab', /not a phone number/, 'login phone with a bad number is refused');
  await answer('frobnicate', /Unknown command `frobnicate`/, 'an unknown command is named');
  await answer('start-chat', /Usage: `start-chat NUMBER`/, 'start-chat without a number answers its usage');

  await loginQr(alice, mgmt, wa, ALICE);
  check(true, 'login by QR: the phone scanned the posted image, the bot reported success');
  await answer('ping', new RegExp(`\\+${ALICE}: connected`), 'ping shows the login connected');

  // WhatsApp -> Matrix
  const r = await wa.admin('POST', '/admin/send', { phone: BOB, to: `${ALICE}@s.whatsapp.net`, text: 'Hi Alice, Bob here *on WhatsApp*' });
  check(r.status === 200, 'Bob\'s phone sent a message to Alice');
  const known = new Set([mgmt]);
  const portal = await joinNextInvite(alice, known);
  const bobGhost = `@whatsapp_${BOB}:${DOMAIN}`;
  const m1 = await alice.waitEvent('Bob\'s message in the portal', (e) => e.room_id === portal && e.type === 'm.room.message' && e.sender === bobGhost);
  check(m1.content.body === 'Hi Alice, Bob here *on WhatsApp*', 'the portal shows Bob\'s text from his ghost');
  check(m1.content.format === 'org.matrix.custom.html' && m1.content.formatted_body === 'Hi Alice, Bob here <strong>on WhatsApp</strong>',
    `WhatsApp markup becomes Matrix HTML: ${m1.content.formatted_body}`);
  const profile = await alice.getProfile(bobGhost);
  check(profile.displayname === 'Bob (WA)', `the ghost's display name comes from the push name: ${profile.displayname}`);

  // Matrix -> WhatsApp
  await alice.send(portal, 'Hello Bob, from Matrix');
  const got = await waitFor('Bob\'s phone gets Alice\'s answer', async () =>
    (await phoneMessages(wa, BOB)).find((m) => m.text === 'Hello Bob, from Matrix'), 30000);
  check(got.sender.startsWith(ALICE), `Bob's phone got it from Alice's account (${got.sender})`);
  await alice.send(portal, 'Bold and italic', { format: 'org.matrix.custom.html', formatted_body: '<b>Bold</b> and <em>italic</em>' });
  await waitFor('the formatted message on Bob\'s phone', async () =>
    (await phoneMessages(wa, BOB)).find((m) => m.text === '*Bold* and _italic_'), 30000);
  check(true, 'Matrix HTML becomes WhatsApp markup (*Bold* and _italic_)');
  // Alice writes from her phone: her companion (the bridge) gets the own-device copy
  await wa.admin('POST', '/admin/send', { phone: ALICE, to: `${BOB}@s.whatsapp.net`, text: 'typed on my phone' });
  const own = await alice.waitEvent('the message from Alice\'s phone', (e) => e.room_id === portal && e.content?.body === 'typed on my phone');
  check(own.sender === alice.botId && own.content['fi.mau.whatsapp.own_device']?.from_own_device === true,
    'a message from another device of the account appears in the chat, through the bot');
  await alice.send(portal, 'an image?', { msgtype: 'm.image', url: 'mxc://example.org/x' });
  await alice.waitEvent('a notice for what is not bridged', fromBot(alice, portal, (e) => /not bridged/.test(e.content.body)));
  check(true, 'an image from Matrix gets a notice: not bridged yet');

  // bad input straight to the bridge's endpoint: odd events are skipped, nothing else breaks
  const reg = readFileSync(stack.regPath, 'utf8');
  const hsToken = reg.match(/hs_token:\s*['"]?([0-9a-f]+)/)[1];
  const asUrl = reg.match(/^url:\s*['"]?([^'"\s]+)/m)[1];
  const put = (txn, body) => fetch(`${asUrl}/_matrix/app/v1/transactions/${txn}`, {
    method: 'PUT', headers: { Authorization: `Bearer ${hsToken}`, 'Content-Type': 'application/json' }, body });
  const bad = await put('bad-1', JSON.stringify({ events: [
    { type: 'm.room.message', room_id: portal, sender: alice.userId, event_id: '$bad1', content: { msgtype: 'm.text', body: 42 } },
    { type: 'm.room.message', room_id: portal, sender: alice.userId, event_id: '$bad2' },
    { type: 'm.room.message', room_id: portal, event_id: '$bad3', content: { body: 'no sender' } },
    { type: 'org.example.unknown', room_id: portal, sender: alice.userId, event_id: '$bad4', content: {} },
    { type: 'm.room.message', room_id: '!nowhere:example.org', sender: alice.userId, event_id: '$bad5', content: { msgtype: 'm.text', body: '!wa nonsense' } },
    { type: 'm.room.message', room_id: portal, sender: eveId(), event_id: '$bad6', content: { msgtype: 'm.text', body: 'a stranger in the DM' } },
    17, 'not an event', { no_type: true },
  ] }));
  check(bad.status === 200, `a transaction of odd events is accepted (${bad.status})`);
  const junk = await put('bad-2', '{"events": [');
  check(junk.status === 400, `a transaction that is not JSON is refused with 400 (${junk.status})`);
  await alice.send(portal, 'still working after bad input');
  await waitFor('the message after bad input', async () =>
    (await phoneMessages(wa, BOB)).find((m) => m.text === 'still working after bad input'), 30000);
  check(!(await phoneMessages(wa, BOB)).some((m) => m.text === 'a stranger in the DM'), 'a stranger\'s event in a DM portal is not sent as Alice');
  check(true, 'the bridge still bridges after bad input');

  // a user without permission
  const eve = await MxUser.register(hs.url, 'eve');
  eve.botId = alice.botId;
  // eve is on example.org (user level); a relay-level user is refused commands beyond help
  const eveRoom = await eve.createRoom({ invite: [eve.botId], is_direct: true });
  await eve.waitEvent('eve greeted', fromBot(eve, eveRoom, (e) => /management room/.test(e.content.body)));
  check(true, 'another user gets her own management room');
  const mallory = await MxUser.register(hs.url, 'mallory');
  mallory.botId = alice.botId;
  const malRoom = await mallory.createRoom({ invite: [mallory.botId], is_direct: true });
  const no = await mallory.waitEvent('the refusal', fromBot(mallory, malRoom));
  check(/not allowed/.test(no.content.body), `a user without permission is told no: ${no.content.body}`);
  mallory.stop();

  // restart: logins come back from the database
  const stopped = await stack.bridge.stop();
  check(stopped.code === 0, `SIGTERM: wabridge drained and exited 0 (${JSON.stringify(stopped)})`);
  await wa.admin('POST', '/admin/send', { phone: BOB, to: `${ALICE}@s.whatsapp.net`, text: 'sent while the bridge was down' });
  await stack.restartBridge();
  const m2 = await alice.waitEvent('the message sent during the restart', (e) => e.room_id === portal && e.content?.body === 'sent while the bridge was down', 30000);
  check(!!m2, 'a message sent while the bridge was down arrives after the restart, in the same portal');
  await alice.send(portal, 'after the restart');
  await waitFor('Bob gets the post-restart message', async () =>
    (await phoneMessages(wa, BOB)).find((m) => m.text === 'after the restart'), 30000);
  check(true, 'Matrix -> WhatsApp works after the restart (logged in from the database)');
  const bobTexts = (await phoneMessages(wa, BOB)).map((m) => m.text);
  check(bobTexts.filter((t) => t === 'Hello Bob, from Matrix').length === 1, 'no message was sent twice');
  const fromBob = alice.messagesIn(portal).filter((e) => e.sender === bobGhost).map((e) => e.content.body);
  check(new Set(fromBob).size === fromBob.length, `no WhatsApp message was bridged twice (${fromBob.length})`);

  // a second user logs in by pairing code; the two logins are independent
  const carol = await MxUser.register(hs.url, 'carol');
  const carolMgmt = await openManagementRoom(carol, DOMAIN);
  const code = await loginPhone(carol, carolMgmt, wa, CAROL);
  check(/^[A-Z0-9]{4}-?[A-Z0-9]{4}$/.test(code), `login by pairing code: the bot showed ${code}, typed on the phone, logged in`);
  await wa.admin('POST', '/admin/send', { phone: BOB, to: `${CAROL}@s.whatsapp.net`, text: 'Hi Carol' });
  const carolPortal = await joinNextInvite(carol, new Set([carolMgmt]));
  await carol.waitEvent('Bob\'s message to Carol', (e) => e.room_id === carolPortal && e.content?.body === 'Hi Carol');
  check(!alice.events.some((e) => e.content?.body === 'Hi Carol'), 'Carol\'s portal is hers: Alice does not see it');
  carol.stop();

  // logout
  await answer('logout', new RegExp(`Logged out of WhatsApp \\(\\+${ALICE}\\)`), 'logout');
  await answer('ping', /not logged in/, 'ping after logout');
  // a login nobody completes times out (bridge.login_timeout_s), and the QR goes away
  const since = alice.events.length;
  await alice.send(mgmt, 'login qr');
  const qr = await alice.waitEvent('a QR nobody scans', (e) => alice.events.indexOf(e) >= since && fromBot(alice, mgmt, (x) => x.content.msgtype === 'm.image')(e));
  const to = await alice.waitEvent('the timeout', (e) => alice.events.indexOf(e) >= since && fromBot(alice, mgmt, (x) => /timed out/.test(x.content.body))(e), 30000);
  check(/timed out/.test(to.content.body), `an unfinished login times out: ${to.content.body}`);
  check(!!alice.events.find((e) => e.type === 'm.room.redaction' && e.redacts === qr.event_id), 'the stale QR is redacted');
  await answer('ping', /not logged in/, 'nothing is left of the timed-out login');
  const devs = await wa.admin('GET', '/admin/state');
  const acc = devs.json.accounts?.find((a) => a.phone === ALICE);
  check(acc && (acc.devices ?? []).filter((d) => d.id !== 0).length === 0, 'the companion device is gone from the account');
  alice.stop(); eve.stop();
  // the Matrix events went from the endpoint straight to the portals (the pump read only at start)
  await stack.bridge.stop();
  const counts = stack.bridge.log.map((l) => /stopped: (\d+) Matrix event\(s\) routed \((\d+) straight/.exec(l)).find(Boolean);
  check(counts && Number(counts[2]) > 0 && Number(counts[2]) <= Number(counts[1]),
    `Matrix events handed on by the endpoint: ${counts ? `${counts[2]} of ${counts[1]}` : 'no count logged'}`);
} catch (e) {
  failed(e);
} finally {
  await stack.stop();
}
finish();
