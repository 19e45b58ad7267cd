// tests/e2e/e2e_kinds.mjs - the message kinds across the whole stack, both ways, with an unmodified
// Baileys 7 client as the WhatsApp contact (Bob) and a scripted Matrix user (Alice) logged in
// through wabridge: replies with mentions, edits, reactions (and taking them back), deletions,
// read receipts and typing.
//   node e2e_kinds.mjs WABRIDGE HS_SIM WA_SIM   (env WABRIDGE_TEST_PG_STATE)
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN, waitFor } from './stack.mjs';
import { report } from './report.mjs';
import { openManagementRoom, loginQr, joinNextInvite } from './scenario.mjs';
import { startBaileys, proto } from '../interop/baileys_peer.mjs';

const [wabridge, hsSim, waSim] = process.argv.slice(2);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
const pg = createDatabase(conninfo, 'e2e_kinds');
const { check, failed, finish } = report();
const ALICE = '15550000021', BOB = '15550000022', CAROL = '15550000023';
const AJID = `${ALICE}@s.whatsapp.net`;

const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000021', name: 'Alice' }, { phone: BOB, lid: '900000000000022', name: 'Bob' },
    { phone: CAROL, lid: '900000000000023', name: 'Carol' }],
});
const { wa, hs } = stack;
let bob;
try {
  const alice = await MxUser.register(hs.url, 'alice');
  const mgmt = await openManagementRoom(alice, DOMAIN);
  await loginQr(alice, mgmt, wa, ALICE);
  bob = await startBaileys({ ws: wa.ready.ws, root: wa.ready.root, admin: wa.admin, phone: BOB, name: 'Bob' });
  check(true, 'Baileys (Bob) is paired and open');
  const bobGhost = `@whatsapp_${BOB}:${DOMAIN}`, carolGhost = `@whatsapp_${CAROL}:${DOMAIN}`;
  // Carol writes first so her ghost has a name for the mention
  await wa.admin('POST', '/admin/send', { phone: CAROL, to: AJID, text: 'Carol here' });
  const known = new Set([mgmt]);
  await joinNextInvite(alice, known);

  const b1 = await bob.send(AJID, { text: 'Hello from Baileys' });
  const portal = await joinNextInvite(alice, known);
  const inRoom = (pred, what, ms) => alice.waitEvent(what, (e) => e.room_id === portal && pred(e), ms);
  const m1 = await inRoom((e) => e.content?.body === 'Hello from Baileys', 'Bob\'s first message');
  check(m1.sender === bobGhost, 'Bob\'s text arrives from his ghost');

  // --- WhatsApp -> Matrix ---
  const b2 = await bob.send(AJID, { text: `replying, @${CAROL} look`, mentions: [`${CAROL}@s.whatsapp.net`] }, { quoted: b1 });
  const m2 = await inRoom((e) => e.content?.['m.relates_to']?.['m.in_reply_to'], 'Bob\'s reply');
  check(m2.content['m.relates_to']['m.in_reply_to'].event_id === m1.event_id, 'a WhatsApp reply becomes m.in_reply_to the quoted event');
  check((m2.content.formatted_body ?? '').includes(`https://matrix.to/#/${carolGhost}`) && m2.content['m.mentions']?.user_ids?.includes(carolGhost),
    `a mention becomes a pill and m.mentions: ${m2.content.formatted_body}`);

  await bob.sock.sendMessage(AJID, { text: 'Hello from Baileys (edited)', edit: b1.key });
  const m3 = await inRoom((e) => e.content?.['m.relates_to']?.rel_type === 'm.replace', 'Bob\'s edit');
  check(m3.content['m.relates_to'].event_id === m1.event_id && m3.content['m.new_content']?.body === 'Hello from Baileys (edited)',
    'a WhatsApp edit becomes m.replace with m.new_content');

  // Alice writes; Bob reacts to it, then takes the reaction back
  const a1 = await alice.send(portal, 'Hi Bob, from Matrix');
  const gotA1 = await waitFor('Alice\'s message at Bob', () => bob.received.find((m) => !m.key.fromMe && bob.textOf(m) === 'Hi Bob, from Matrix'), 30000);
  await bob.sock.sendMessage(AJID, { react: { text: '❤️', key: gotA1.key } });
  const r1 = await alice.waitEvent('Bob\'s reaction', (e) => e.room_id === portal && e.type === 'm.reaction');
  check(r1.sender === bobGhost && r1.content['m.relates_to'].event_id === a1 && r1.content['m.relates_to'].key === '❤️',
    'a WhatsApp reaction becomes m.reaction on the right event');
  await bob.sock.sendMessage(AJID, { react: { text: '', key: gotA1.key } });
  await alice.waitEvent('the reaction taken back', (e) => e.room_id === portal && e.type === 'm.room.redaction' && e.redacts === r1.event_id);
  check(true, 'taking a WhatsApp reaction back redacts the m.reaction');

  const b3 = await bob.send(AJID, { text: 'this will be deleted' });
  const m4 = await inRoom((e) => e.content?.body === 'this will be deleted', 'the message to delete');
  await bob.sock.sendMessage(AJID, { delete: b3.key });
  await alice.waitEvent('the deletion', (e) => e.room_id === portal && e.type === 'm.room.redaction' && e.redacts === m4.event_id);
  check(true, 'a WhatsApp deletion for everyone redacts the event');

  await bob.sock.readMessages([gotA1.key]);
  const rr = await waitFor('Bob\'s read receipt on Matrix', () => alice.ephemeral.find((e) => e.room_id === portal && e.type === 'm.receipt' &&
    e.content?.[a1]?.['m.read']?.[bobGhost]), 30000);
  check(!!rr, 'a WhatsApp read receipt becomes an m.read receipt of the ghost');
  await bob.sock.sendPresenceUpdate('composing', AJID);
  await waitFor('Bob typing on Matrix', () => alice.ephemeral.find((e) => e.room_id === portal && e.type === 'm.typing' && e.content.user_ids.includes(bobGhost)), 30000);
  check(true, 'WhatsApp typing becomes m.typing of the ghost');

  // --- Matrix -> WhatsApp ---
  const a2 = await alice.send(portal, 'answering your first', { 'm.relates_to': { 'm.in_reply_to': { event_id: m1.event_id } } });
  const g2 = await waitFor('the reply at Bob', () => bob.received.find((m) => bob.textOf(m) === 'answering your first'), 30000);
  check(g2.message.extendedTextMessage?.contextInfo?.stanzaId === b1.key.id, 'a Matrix reply quotes the WhatsApp message (stanzaId)');
  await alice.send(portal, '* answering your first one', {
    'm.new_content': { msgtype: 'm.text', body: 'answering your first one' },
    'm.relates_to': { rel_type: 'm.replace', event_id: a2 },
  });
  const edited = await waitFor('the edit at Bob', () => bob.received.find((m) => {
    const pm = m.message?.protocolMessage ?? m.message?.editedMessage?.message?.protocolMessage;
    return pm?.key?.id === g2.key.id && (pm.editedMessage?.conversation === 'answering your first one' || pm.editedMessage?.extendedTextMessage?.text === 'answering your first one');
  }) || bob.updates.find((u) => u.key.id === g2.key.id && JSON.stringify(u.update).includes('answering your first one')), 30000);
  check(!!edited, 'a Matrix edit arrives at Baileys as an edit of the same message');
  const re = await alice.sendEvent(portal, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: m1.event_id, key: '👍' } });
  await waitFor('the reaction at Bob', () => bob.reactions.find((x) => x.key.id === b1.key.id && x.reaction.text === '👍'), 30000);
  check(true, 'a Matrix reaction arrives at Baileys on the right message');
  await alice.redact(portal, re);
  await waitFor('the reaction removed at Bob', () => bob.reactions.find((x) => x.key.id === b1.key.id && x.reaction.text === ''), 30000);
  check(true, 'redacting the reaction removes it on WhatsApp');
  await alice.redact(portal, a2);
  const revoked = await waitFor('the deletion at Bob', () => bob.received.find((m) => m.message?.protocolMessage?.type === proto.Message.ProtocolMessage.Type.REVOKE && m.message.protocolMessage.key?.id === g2.key.id)
    || bob.updates.find((u) => u.key.id === g2.key.id && u.update?.message === null), 30000);
  check(!!revoked, 'redacting a message deletes it for everyone on WhatsApp');
  const b4 = await bob.send(AJID, { text: 'read me' });
  const m5 = await inRoom((e) => e.content?.body === 'read me', 'a message to read');
  await alice.readReceipt(portal, m5.event_id);
  // Baileys folds a status update into its own message when that is still in its event buffer
  const READ = proto.WebMessageInfo.Status.READ;
  const statusOf = (id) => bob.updates.find((u) => u.key.id === id && u.update?.status === READ) ||
    bob.received.find((m) => m.key.id === id && m.status === READ);
  check(!!(await waitFor('Bob sees it read', () => statusOf(b4.key.id), 30000)), 'a Matrix read receipt marks the message read on WhatsApp');
  await bob.sock.presenceSubscribe(AJID);
  const n0 = bob.presences.length;
  await alice.typing(portal, true);
  await waitFor('Alice typing at Bob', () => bob.presences.slice(n0).find((p) => p.id === AJID && Object.values(p.presences).some((x) => x.lastKnownPresence === 'composing')), 30000);
  check(true, 'Matrix typing arrives at Baileys as composing');
  alice.stop();
} catch (e) {
  failed(e);
} finally {
  bob?.stop();
  await stack.stop();
}
finish();
