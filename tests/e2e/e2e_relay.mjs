// tests/e2e/e2e_relay.mjs - relay mode (bridge.relay.enabled): in a group portal, Alice (logged in)
// turns the relay on; Carol (permission commands, no WhatsApp login) then reaches Bob (an unmodified
// Baileys 7 client) through Alice's account with her name in front; only Carol can edit or delete
// what she sent; Eve (permission none) is never relayed; turning the relay off, or the option off,
// stops it. Permission answers for each refusal.
//   node e2e_relay.mjs WABRIDGE HS_SIM WA_SIM   (env WABRIDGE_TEST_PG_STATE)
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN, waitFor } from './stack.mjs';
import { report } from './report.mjs';
import { openManagementRoom, loginQr, joinNextInvite, fromBot } from './scenario.mjs';
import { startBaileys, proto } from '../interop/baileys_peer.mjs';

const [wabridge, hsSim, waSim] = process.argv.slice(2);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
const pg = createDatabase(conninfo, 'e2e_relay');
const { check, failed, finish } = report();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ALICE = '15550000071', BOB = '15550000073';
const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000071', name: 'Alice' }, { phone: BOB, lid: '900000000000073', name: 'Bob' }],
  permissions: { '*': 'relay', [`@alice:${DOMAIN}`]: 'user', [`@carol:${DOMAIN}`]: 'commands', [`@eve:${DOMAIN}`]: 'none' },
  env: { WABRIDGE_BRIDGE_RELAY_ENABLED: 'true' },
});
const { wa, hs } = stack;
let bob;
const users = [];
try {
  const alice = await MxUser.register(hs.url, 'alice');
  const carol = await MxUser.register(hs.url, 'carol');
  const eve = await MxUser.register(hs.url, 'eve');
  const dan = await MxUser.register(hs.url, 'dan');
  users.push(alice, carol, eve, dan);
  await carol.req('PUT', `/_matrix/client/v3/profile/${encodeURIComponent(carol.userId)}/displayname`, { displayname: 'Carol M' });
  const am = await openManagementRoom(alice, DOMAIN);
  await loginQr(alice, am, wa, ALICE);
  bob = await startBaileys({ ws: wa.ready.ws, root: wa.ready.root, admin: wa.admin, phone: BOB, name: 'Bob' });
  const g = await bob.sock.groupCreate('Relay room', [`${ALICE}@s.whatsapp.net`]);
  const room = await joinNextInvite(alice, new Set([am]));
  check(!!room, `the group portal exists (${room})`);
  for (const u of [carol, eve, dan]) {
    await alice.req('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/invite`, { user_id: u.userId });
    await u.join(room);
  }
  alice.botId = carol.botId = eve.botId = `@whatsappbot:${DOMAIN}`;
  const bobTexts = () => bob.received.filter((m) => m.key.remoteJid === g.id).map(bob.textOf).filter(Boolean);
  const noticeTo = (u, re, since) => u.waitEvent(`a notice matching ${re}`,
    (e) => u.events.indexOf(e) >= since && fromBot(u, room, (x) => re.test(x.content.body))(e), 20000).catch(() => null);

  // before the relay: Carol's message goes nowhere
  await carol.send(room, 'carol before the relay');
  let since = carol.events.length;
  await carol.send(room, '!wa set-relay');
  check(!!await noticeTo(carol, /not allowed to relay.*level is commands/, since), 'set-relay by a user without login rights is refused with her level');
  since = alice.events.length;
  await alice.send(am, 'set-relay');
  check(!!await alice.waitEvent('the hint', (e) => alice.events.indexOf(e) >= since && fromBot(alice, am, (x) => /works in a portal room/.test(x.content.body))(e)).catch(() => null),
    'set-relay in the management room says where it works');
  since = alice.events.length;
  await alice.send(room, '!wa set-relay');
  check(!!await noticeTo(alice, new RegExp(`Relay mode is on.*\\+${ALICE}`), since), 'Alice turns the relay on in the group portal');

  // relayed: Carol's text with her display name, from Alice's account
  const c1 = await carol.send(room, 'hello from *Matrix*', { format: 'org.matrix.custom.html', formatted_body: 'hello from <b>Matrix</b>' });
  const got = await waitFor('Carol\'s relayed message at Bob', () => bob.received.find((m) => m.key.remoteJid === g.id && bob.textOf(m) === '*Carol M*: hello from *Matrix*'), 30000).catch(() => null);
  check(!!got, `Carol's message reaches Bob with her name in front (${JSON.stringify(bobTexts())})`);
  const p = got?.key.participant ?? '';
  check(p.startsWith(ALICE) || p.includes('900000000000071'), `it comes from Alice's account (${p})`);
  check(!bobTexts().some((t) => t.includes('carol before the relay')), 'the message before the relay was not sent');
  await carol.sendEvent(room, 'm.room.message', { msgtype: 'm.emote', body: 'waves' });
  check(!!await waitFor('the relayed emote', () => bobTexts().includes('* *Carol M* waves'), 20000).catch(() => null), 'a relayed emote reads "* *Carol M* waves"');

  // Dan has the default level (relay) and no display name: his localpart stands in front
  await dan.send(room, 'dan here');
  check(!!await waitFor('Dan\'s relayed message', () => bobTexts().includes('*dan*: dan here'), 20000).catch(() => null), 'a relay-level user without a display name is relayed as *dan*');

  // Alice's own messages are still hers, without a name
  await alice.send(room, 'Alice herself');
  check(!!await waitFor('Alice\'s own message', () => bobTexts().includes('Alice herself'), 20000).catch(() => null), 'a logged-in user\'s message is not prefixed');

  // edits and deletions: only the writer
  since = alice.events.length;
  await alice.sendEvent(room, 'm.room.message', { msgtype: 'm.text', body: '* nope', 'm.new_content': { msgtype: 'm.text', body: 'nope' }, 'm.relates_to': { rel_type: 'm.replace', event_id: c1 } });
  check(!!await noticeTo(alice, /edit was not sent/, since), 'Alice cannot edit Carol\'s relayed message');
  await carol.sendEvent(room, 'm.room.message', { msgtype: 'm.text', body: '* hello again', 'm.new_content': { msgtype: 'm.text', body: 'hello again' }, 'm.relates_to': { rel_type: 'm.replace', event_id: c1 } });
  const edited = await waitFor('Carol\'s edit at Bob', () => bob.received.find((m) => {
    const pm = m.message?.protocolMessage ?? m.message?.editedMessage?.message?.protocolMessage;
    const t = pm?.editedMessage?.conversation ?? pm?.editedMessage?.extendedTextMessage?.text;
    return pm?.key?.id === got?.key.id && t === '*Carol M*: hello again';
  }), 20000).catch(() => null);
  check(!!edited, 'Carol edits her relayed message: Bob sees the edit, still with her name');
  since = alice.events.length;
  await alice.redact(room, c1);
  check(!!await noticeTo(alice, /Only your own messages can be deleted/, since), 'Alice cannot delete Carol\'s relayed message on WhatsApp');
  await carol.redact(room, c1);
  const revoked = await waitFor('the revoke at Bob', () => bob.received.find((m) => m.message?.protocolMessage?.type === proto.Message.ProtocolMessage.Type.REVOKE && m.message.protocolMessage.key?.id === got?.key.id), 20000).catch(() => null);
  check(!!revoked, 'Carol deletes her relayed message: Bob gets the revoke');

  // Eve (permission none) is never relayed
  await eve.send(room, 'eve is not allowed');
  // turning it off: Carol may not, Alice may
  since = carol.events.length;
  await carol.send(room, '!wa unset-relay');
  check(!!await noticeTo(carol, /Only the user whose account relays here/, since), 'unset-relay by someone else is refused');
  since = alice.events.length;
  await alice.send(room, '!wa unset-relay');
  check(!!await noticeTo(alice, /Relay mode is off/, since), 'Alice turns the relay off');
  await carol.send(room, 'carol after the relay');
  await alice.send(room, 'marker after');
  await waitFor('the marker', () => bobTexts().includes('marker after'), 20000).catch(() => null);
  await sleep(1000);
  check(!bobTexts().some((t) => /eve is not allowed|carol after the relay/.test(t)), `nothing else was relayed (${JSON.stringify(bobTexts())})`);

  // the option off: the relay set in a portal does nothing, set-relay says why
  since = alice.events.length;
  await alice.send(room, '!wa set-relay');
  await noticeTo(alice, /Relay mode is on/, since);
  await stack.bridge.stop();
  stack.env.WABRIDGE_BRIDGE_RELAY_ENABLED = 'false';
  await stack.restartBridge();
  await carol.send(room, 'carol with relay disabled');
  since = alice.events.length;
  await alice.send(room, '!wa set-relay');
  check(!!await noticeTo(alice, /not enabled on this bridge/, since), 'with bridge.relay.enabled false, set-relay says so');
  await alice.send(room, 'marker 2');
  await waitFor('marker 2', () => bobTexts().includes('marker 2'), 30000).catch(() => null);
  await sleep(500);
  check(!bobTexts().includes('*Carol M*: carol with relay disabled'), 'with the option off, nobody is relayed');
} catch (e) {
  failed(e);
} finally {
  for (const u of users) u.stop();
  bob?.stop();
  await stack.stop();
}
finish();
