// tests/e2e/e2e_double_puppet.mjs - double puppeting: hs-sim carries a second registration (url
// null, a non-exclusive namespace covering only @alice) and the bridge its secret
// (double_puppet.secrets through WABRIDGE_DOUBLE_PUPPET_SECRETS), as an admin would set it up.
// Alice logs in: her DM portal is joined for her; what she reads on her phone becomes her m.read;
// what she types there (a message, an edit, a reaction, a deletion) appears as sent by her own
// Matrix account, m.text, with the
// fi.mau.double_puppet_source marker, and never goes back to WhatsApp (the echo is dropped). Her
// own ghost is in none of her rooms, also not in a group portal (Dave's) shared with Carol's login. Carol's
// server has a secret too, but the namespace does not cover her: the check (whoami) fails and she
// keeps the bot's way (her phone's messages as m.notice from the bot) until she gives the bridge
// her own access token (`login-matrix`, double_puppet.allow_manual): then her phone's messages are
// hers too; a token of someone else's or a bad one is refused, the message holding a token is
// redacted, and `logout-matrix` brings the bot's way back.
//   node e2e_double_puppet.mjs WABRIDGE HS_SIM WA_SIM   (env WABRIDGE_TEST_PG_STATE)
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN, waitFor } from './stack.mjs';
import { report } from './report.mjs';
import { openManagementRoom, loginQr, joinNextInvite, phoneMessages } from './scenario.mjs';

const [wabridge, hsSim, waSim] = process.argv.slice(2);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
const pg = createDatabase(conninfo, 'e2e_double_puppet');
const { check, failed, finish } = report();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const ALICE = '15550000071', BOB = '15550000072', CAROL = '15550000073', DAVE = '15550000074';
const MARK = 'fi.mau.double_puppet_source';
const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000071', name: 'Alice' }, { phone: BOB, lid: '900000000000072', name: 'Bob' },
    { phone: CAROL, lid: '900000000000073', name: 'Carol' }, { phone: DAVE, lid: '900000000000074', name: 'Dave' }],
  doublePuppet: { userRegex: `^@alice:${DOMAIN.replace(/\./g, '\\.')}$` },
  env: { WABRIDGE_DOUBLE_PUPPET_ALLOW_MANUAL: 'true' }, // login-matrix, for Carol at the end
});
const { wa, hs } = stack;
const ghostOf = (phone) => `@whatsapp_${phone}:${DOMAIN}`;
// The joined members of a room, as the homeserver has them.
const joined = async (user, room) => Object.keys((await user.req('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/joined_members`)).joined ?? {});
try {
  const alice = await MxUser.register(hs.url, 'alice');
  const mgmt = await openManagementRoom(alice, DOMAIN);
  await loginQr(alice, mgmt, wa, ALICE);
  check(true, 'Alice logged in by QR (double puppeting configured for her server)');

  // Bob writes: the DM portal appears, and Alice is in it without joining herself
  const b1 = await wa.admin('POST', '/admin/send', { phone: BOB, to: `${ALICE}@s.whatsapp.net`, text: 'Hi Alice, Bob here' });
  const m1 = await alice.waitEvent('Bob\'s message', (e) => e.type === 'm.room.message' && e.content?.body === 'Hi Alice, Bob here', 30000);
  const portal = m1.room_id;
  check(m1.sender === ghostOf(BOB), `Bob's message comes from his ghost (${m1.sender})`);
  const aliceJoin = alice.events.find((e) => e.room_id === portal && e.type === 'm.room.member' && e.state_key === alice.userId && e.content?.membership === 'join');
  check(!!aliceJoin, 'the DM portal invite was accepted for Alice (her join, made by the bridge as her)');
  check(alice.room(portal)?.getMyMembership() === 'join', 'Alice\'s client sees herself joined to the portal');

  // Alice reads Bob's message on her phone: her companion gets a read-self receipt, which becomes
  // her own m.read in the portal (made as her)
  const rd = await wa.admin('POST', '/admin/read', { phone: ALICE, chat: `${BOB}@s.whatsapp.net`, ids: [b1.json.id] });
  check(rd.status === 200, 'Alice\'s phone read Bob\'s message');
  const rr = await waitFor('Alice\'s read receipt in the portal', () => alice.ephemeral.find((e) => e.room_id === portal &&
    e.type === 'm.receipt' && e.content?.[m1.event_id]?.['m.read']?.[alice.userId]), 30000).catch(() => null);
  check(!!rr, 'reading on her phone marks Bob\'s message read by Alice herself (m.read as her)');

  // Alice types on her phone: the message is hers in Matrix, not the bot's
  const p1 = await wa.admin('POST', '/admin/send', { phone: ALICE, to: `${BOB}@s.whatsapp.net`, text: 'typed on my phone' });
  check(p1.status === 200, 'Alice\'s phone sent a message to Bob');
  const own = await alice.waitEvent('the message from Alice\'s phone', (e) => e.room_id === portal && e.content?.body === 'typed on my phone', 30000);
  check(own.sender === alice.userId, `it is sent as Alice's own Matrix account (${own.sender})`);
  check(own.content.msgtype === 'm.text', `as an m.text (${own.content.msgtype})`);
  check(own.content[MARK] === 'whatsappbot', `with the double puppet marker (${JSON.stringify(own.content[MARK])})`);
  check(own.content['fi.mau.whatsapp.own_device'] === undefined, 'without the bot\'s own-device note');

  // edit, reaction, deletion from the phone: hers too
  await wa.admin('POST', '/admin/send', { phone: ALICE, to: `${BOB}@s.whatsapp.net`, text: 'typed on my phone, edited', edit: p1.json.id });
  const edit = await alice.waitEvent('the edit from Alice\'s phone', (e) => e.room_id === portal && e.content?.['m.relates_to']?.rel_type === 'm.replace', 30000);
  check(edit.sender === alice.userId && edit.content['m.relates_to'].event_id === own.event_id &&
    edit.content['m.new_content']?.body === 'typed on my phone, edited' && edit.content[MARK] === 'whatsappbot',
    `the edit replaces her message, as Alice, marked (${edit.sender})`);
  await wa.admin('POST', '/admin/send', { phone: ALICE, to: `${BOB}@s.whatsapp.net`, react: b1.json.id, emoji: '👍', from_me: false });
  const react = await alice.waitEvent('the reaction from Alice\'s phone', (e) => e.room_id === portal && e.type === 'm.reaction', 30000);
  check(react.sender === alice.userId && react.content['m.relates_to']?.event_id === m1.event_id &&
    react.content['m.relates_to']?.key === '👍' && react.content[MARK] === 'whatsappbot',
    `the reaction to Bob's message is Alice's, marked (${react.sender})`);
  const p2 = await wa.admin('POST', '/admin/send', { phone: ALICE, to: `${BOB}@s.whatsapp.net`, text: 'this one goes away' });
  const gone = await alice.waitEvent('the message to delete', (e) => e.room_id === portal && e.content?.body === 'this one goes away', 30000);
  await wa.admin('POST', '/admin/send', { phone: ALICE, to: `${BOB}@s.whatsapp.net`, revoke: p2.json.id });
  const red = await alice.waitEvent('the deletion from Alice\'s phone', (e) => e.room_id === portal && e.type === 'm.room.redaction' &&
    (e.redacts === gone.event_id || e.content?.redacts === gone.event_id), 30000);
  check(red.sender === alice.userId && red.content[MARK] === 'whatsappbot', `the deletion redacts it as Alice, marked (${red.sender})`);

  // nothing of it went back to WhatsApp: a message from Matrix afterwards is the barrier (the
  // echoes were in the bridge's inbox before it, in order)
  await alice.send(portal, 'from Matrix, after all that');
  await waitFor('the Matrix message at Bob', async () =>
    (await phoneMessages(wa, BOB)).find((m) => m.text === 'from Matrix, after all that'), 30000);
  const atBob = await phoneMessages(wa, BOB);
  const count = (kind, text) => atBob.filter((m) => (m.kind ?? 'text') === kind && m.text === text).length;
  check(count('text', 'typed on my phone') === 1, `Bob got the phone's message once, not again from the bridge (${count('text', 'typed on my phone')})`);
  check(count('edit', 'typed on my phone, edited') === 1, `the edit once (${count('edit', 'typed on my phone, edited')})`);
  check(count('reaction', '👍') === 1, `the reaction once (${count('reaction', '👍')})`);
  check(atBob.filter((m) => m.kind === 'revoke').length === 1, 'the deletion once');
  const atAlice = await phoneMessages(wa, ALICE);
  check(!atAlice.some((m) => /typed on my phone|goes away/.test(m.text ?? '')), 'Alice\'s phone got no copy back from her companion');
  const fromMatrix = alice.messagesIn(portal).filter((e) => e.content?.body === 'typed on my phone');
  check(fromMatrix.length === 1, `the phone's message is in the portal once (${fromMatrix.length})`);

  const members = await joined(alice, portal);
  check(members.includes(alice.userId) && members.includes(ghostOf(BOB)) && !members.includes(ghostOf(ALICE)),
    `Alice is in her portal in person, her own ghost is not (${members.join(' ')})`);

  // the homeserver refuses the message from Alice (a fault: 403 once): it comes through the bot
  // instead of being lost
  const f = await fetch(`${hs.url}/_hssim/fault`, { method: 'POST', body: JSON.stringify({
    match: '/send/m.room.message/wa-1-', count: 1, status: 403, errcode: 'M_FORBIDDEN' }) });
  check(f.status === 200, 'hs-sim will refuse the next message the bridge sends for Alice\'s login');
  await wa.admin('POST', '/admin/send', { phone: ALICE, to: `${BOB}@s.whatsapp.net`, text: 'refused as me' });
  const fb = await alice.waitEvent('the refused message', (e) => e.room_id === portal && e.content?.body === 'refused as me', 30000);
  check(fb.sender === alice.botId && fb.content.msgtype === 'm.notice' && fb.content[MARK] === undefined,
    `refused as Alice, her phone's message comes through the bot rather than being lost (${fb.sender})`);

  // Carol: a secret for her server, but the registration does not cover her: the bot's way
  const carol = await MxUser.register(hs.url, 'carol');
  const cm = await openManagementRoom(carol, DOMAIN);
  await loginQr(carol, cm, wa, CAROL);
  await wa.admin('POST', '/admin/send', { phone: BOB, to: `${CAROL}@s.whatsapp.net`, text: 'Hi Carol' });
  const cp = await joinNextInvite(carol, new Set([cm]));
  await carol.waitEvent('Bob\'s message at Carol', (e) => e.room_id === cp && e.content?.body === 'Hi Carol', 30000);
  await wa.admin('POST', '/admin/send', { phone: CAROL, to: `${BOB}@s.whatsapp.net`, text: 'carol on her phone' });
  const cown = await carol.waitEvent('the message from Carol\'s phone', (e) => e.room_id === cp && e.content?.body === 'carol on her phone', 30000);
  check(cown.sender === carol.botId && cown.content.msgtype === 'm.notice' && cown.content['fi.mau.whatsapp.own_device']?.from_own_device === true &&
    cown.content[MARK] === undefined, `whoami as Carol fails: her phone's message comes through the bot as before (${cown.sender})`);

  // a group with both: Alice is in it in person, her ghost stays out (also from Carol's login)
  const cr = await wa.admin('POST', '/admin/group/create', { phone: DAVE, subject: 'Puppets', members: [ALICE, CAROL] });
  const group = cr.json.jid;
  check(/@g\.us$/.test(group ?? ''), `Dave created a group with Alice and Carol (${group})`);
  const groom = await joinNextInvite(carol, new Set([cm, cp]));
  await waitFor('the group portal named', async () =>
    (await carol.getStateEvent(groom, 'm.room.name').catch(() => null))?.name === 'Puppets', 30000);
  const aliceIn = await waitFor('Alice in the group portal', () => alice.room(groom)?.getMyMembership() === 'join', 30000).catch(() => false);
  check(aliceIn, 'Alice was joined to the group portal for her (no invite left for her to accept)');
  await wa.admin('POST', '/admin/group/send', { phone: DAVE, group, text: 'Hello group' });
  const gm = await alice.waitEvent('Dave\'s group message', (e) => e.room_id === groom && e.content?.body === 'Hello group', 30000);
  check(gm.sender === ghostOf(DAVE), 'Dave\'s group message comes from his ghost');
  await wa.admin('POST', '/admin/group/send', { phone: ALICE, group, text: 'alice in the group, from her phone' });
  const ga = await alice.waitEvent('Alice\'s group message', (e) => e.room_id === groom && e.content?.body === 'alice in the group, from her phone', 30000);
  check(ga.sender === alice.userId && ga.content[MARK] === 'whatsappbot', `in the group too her phone's message is hers (${ga.sender})`);
  await sleep(1500); // both logins received it; Carol's must not show it a second time
  const gtexts = alice.messagesIn(groom).filter((e) => e.content?.body === 'alice in the group, from her phone');
  check(gtexts.length === 1, `it is in the group portal once (${gtexts.length})`);
  await wa.admin('POST', '/admin/group/send', { phone: CAROL, group, text: 'carol in the group' });
  await alice.waitEvent('Carol\'s group message', (e) => e.room_id === groom && e.content?.body === 'carol in the group', 30000);
  const gmembers = await joined(alice, groom);
  check(gmembers.includes(alice.userId) && gmembers.includes(ghostOf(DAVE)) && !gmembers.includes(ghostOf(ALICE)),
    `Alice's own ghost is not in the shared group portal (${gmembers.join(' ')})`);
  const atDave = (await phoneMessages(wa, DAVE)).filter((m) => m.text === 'alice in the group, from her phone');
  check(atDave.length === 1, `Dave got Alice's group message once, not again from the bridge (${atDave.length})`);

  // login-matrix: Carol gives her own access token
  const cmd = async (room, text, re, what) => {
    const since = carol.events.length;
    const id = await carol.send(room, text);
    const ev = await carol.waitEvent(what, (e) => carol.events.indexOf(e) >= since && e.room_id === room &&
      e.sender === carol.botId && e.type === 'm.room.message' && re.test(e.content.body));
    return { id, ev };
  };
  const redacted = (room, id) => waitFor('the redaction of the token message', () => carol.events.find((e) =>
    e.room_id === room && e.type === 'm.room.redaction' && (e.redacts === id || e.content?.redacts === id)), 20000).catch(() => null);
  const inPortal = await cmd(cp, `!wa login-matrix ${carol.token}`, /only in your management room/, 'login-matrix refused in a portal');
  check(!!inPortal.ev, 'login-matrix in a portal room is refused (a token is a secret)');
  check(!!(await redacted(cp, inPortal.id)), 'and the message holding the token is redacted there');
  const other = await cmd(cm, `login-matrix ${alice.token}`, /not taken/, 'someone else\'s token refused');
  check(/belongs to @alice:example\.org, not to you/.test(other.ev.content.body) && !other.ev.content.body.includes(alice.token),
    `a token of another user is refused: ${other.ev.content.body}`);
  const badTok = await cmd(cm, 'login-matrix not-a-token', /not taken/, 'a bad token refused');
  check(/M_UNKNOWN_TOKEN/.test(badTok.ev.content.body), `a token the homeserver does not know is refused: ${badTok.ev.content.body}`);
  const ok = await cmd(cm, `login-matrix ${carol.token}`, /Double puppeting on/, 'login-matrix accepted');
  check(!!ok.ev, 'Carol\'s own token is taken: double puppeting on');
  check(!!(await redacted(cm, ok.id)), 'the message holding her token is redacted');
  await wa.admin('POST', '/admin/send', { phone: CAROL, to: `${BOB}@s.whatsapp.net`, text: 'carol again, as herself' });
  const cown2 = await carol.waitEvent('Carol\'s phone message, puppeted', (e) => e.room_id === cp && e.content?.body === 'carol again, as herself', 30000);
  check(cown2.sender === carol.userId && cown2.content.msgtype === 'm.text' && cown2.content[MARK] === 'whatsappbot',
    `with her own token, her phone's message is hers (${cown2.sender})`);
  await carol.send(cp, 'carol barrier from Matrix');
  await waitFor('Carol\'s Matrix message at Bob', async () => (await phoneMessages(wa, BOB)).find((m) => m.text === 'carol barrier from Matrix'), 30000);
  const c2 = (await phoneMessages(wa, BOB)).filter((m) => m.text === 'carol again, as herself').length;
  check(c2 === 1, `and it does not go back to WhatsApp (${c2})`);
  const out = await cmd(cm, 'logout-matrix', /Forgot your access token|had not given/, 'logout-matrix');
  check(/Forgot your access token/.test(out.ev.content.body), 'logout-matrix forgets the token');
  await wa.admin('POST', '/admin/send', { phone: CAROL, to: `${BOB}@s.whatsapp.net`, text: 'carol after logout-matrix' });
  const cown3 = await carol.waitEvent('Carol\'s phone message after logout-matrix', (e) => e.room_id === cp && e.content?.body === 'carol after logout-matrix', 30000);
  check(cown3.sender === carol.botId && cown3.content.msgtype === 'm.notice', `after logout-matrix the bot's way is back (${cown3.sender})`);
  alice.stop(); carol.stop();
} catch (e) {
  failed(e);
} finally {
  await stack.stop();
}
finish();
