// tests/e2e/e2e_outage.mjs - outages on either side are waited out, nothing lost, order kept: the
// homeserver refuses connections for a few seconds while WhatsApp messages arrive (the bridge
// retries and delivers them after), and the WhatsApp server drops every connection while the Matrix
// user writes (the engine reconnects and the messages go out after). Then the event buffer's rows
// bridged again at start-up: a message bridged before is not sent again.
//   node e2e_outage.mjs WABRIDGE HS_SIM WA_SIM   (env WABRIDGE_TEST_PG_STATE)
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN, waitFor, sqlOn } from './stack.mjs';
import { report } from './report.mjs';
import { openManagementRoom, loginQr, joinNextInvite, phoneMessages } from './scenario.mjs';

const [wabridge, hsSim, waSim] = process.argv.slice(2);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
const pg = createDatabase(conninfo, 'e2e_outage');
const { check, failed, finish } = report();
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
  // (it stops listening just after its answer: the messages go once it has)
  const hsUp = async () => { try { return (await fetch(`${hs.url}/_matrix/client/versions`)).ok; } catch { return false; } };
  await waitFor('hs-sim refusing', async () => !(await hsUp()), 5000, 5);
  for (let i = 1; i <= 5; i++)
    await wa.admin('POST', '/admin/send', { phone: BOB, to: `${ALICE}@s.whatsapp.net`, text: `during hs outage ${i}` });
  await waitFor('the messages after the outage', () => alice.messagesIn(portal).filter((e) => e.content.body.startsWith('during hs outage')).length >= 5, 60000);
  const got = alice.messagesIn(portal).filter((e) => e.content.body.startsWith('during hs outage')).map((e) => e.content.body);
  check(JSON.stringify(got) === JSON.stringify([1, 2, 3, 4, 5].map((i) => `during hs outage ${i}`)),
    'WhatsApp messages sent while the homeserver was down arrive after it is back, once each, in order');

  await waitFor('hs-sim listening again', hsUp, 20000);
  // the WhatsApp server drops every connection; the Matrix user keeps writing
  await wa.admin('POST', '/admin/restart', {});
  for (let i = 1; i <= 5; i++) await alice.send(portal, `during wa outage ${i}`);
  await waitFor('Bob gets them', async () => (await phoneMessages(wa, BOB)).filter((m) => m.text.startsWith('during wa outage')).length >= 5, 60000);
  const bob = (await phoneMessages(wa, BOB)).filter((m) => m.text.startsWith('during wa outage')).map((m) => m.text);
  check(JSON.stringify(bob) === JSON.stringify([1, 2, 3, 4, 5].map((i) => `during wa outage ${i}`)),
    'Matrix messages sent while WhatsApp was reconnecting go out after, once each, in order');
  check(!alice.messagesIn(portal).some((e) => /not sent/.test(e.content.body)), 'no failure notice was needed');

  // Start-up bridges the event buffer's rows again (a crash between a message's decryption and its
  // bridging), each checked against the message map first: a row whose message is mapped (bridged
  // already) is dropped without a send, one whose message is not is bridged. Without the check the
  // first would go to the homeserver again under its old txnId (hs-sim counts such repeats).
  const sql = (q) => sqlOn(pg, q);
  const before = alice.messagesIn(portal).find((e) => e.content.body === 'before');
  const [login, waId] = sql(`SELECT login_id, wa_id FROM message WHERE mxid = '${before.event_id}'`).split('|');
  check(Boolean(login && waId), 'the first message is in the message map');
  await stack.bridge.stop();
  const proto = (t) => Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(t)]), Buffer.from(t)]).toString('hex');
  const bobJid = `${BOB}@s.whatsapp.net`, now = Date.now();
  const row = (id, text) => `(${login}, decode('${randomBytes(32).toString('hex')}', 'hex'), '${bobJid}', '${bobJid}', ` +
    `'${id}', decode('${proto(text)}', 'hex'), ${now}, ${now})`;
  sql('INSERT INTO wa_event_buffer (login_id, ciphertext_hash, chat_jid, sender_jid, message_id, plaintext, ' +
    `server_ts_ms, inserted_ms) VALUES ${row(waId, 'before, again')}, ${row('3EB0B0FFE2000000000001', 'only buffered')}`);
  const repeats = async () => (await (await fetch(`${hs.url}/_hssim/stats`)).json()).send_repeats;
  const repeats0 = await repeats();
  await stack.restartBridge();
  await waitFor('the buffered message', () => alice.messagesIn(portal).some((e) => e.content.body === 'only buffered'), 30000);
  await waitFor('the buffer emptied', () => sql(`SELECT count(*) FROM wa_event_buffer WHERE login_id = ${login}`) === '0', 30000);
  check(alice.messagesIn(portal).filter((e) => e.content.body === 'only buffered').length === 1,
    'a buffered message not bridged before is bridged at start-up, once');
  check(await repeats() === repeats0, 'a buffered message bridged before is not sent to the homeserver again');
  check(!alice.messagesIn(portal).some((e) => e.content.body === 'before, again') &&
    alice.messagesIn(portal).filter((e) => e.content.body === 'before').length === 1, 'the room shows it once');
  alice.stop();
} catch (e) {
  failed(e);
} finally {
  await stack.stop();
}
finish();
