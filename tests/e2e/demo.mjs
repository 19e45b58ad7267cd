// tests/e2e/demo.mjs - what scripts/demo runs: the whole stack on this machine, a simulated WhatsApp
// account logged in by QR, one message each way, and the conversation printed as both sides saw
// it. With --keep it stays up and prints how to talk to it.
//   node demo.mjs WABRIDGE HS_SIM WA_SIM CONNINFO [--keep]
import { startStack, MxUser, createDatabase, DOMAIN, waitFor } from './stack.mjs';
import { openManagementRoom, loginQr, joinNextInvite, phoneMessages } from './scenario.mjs';

const [wabridge, hsSim, waSim, conninfo, flag] = process.argv.slice(2);
const keep = flag === '--keep';
const say = (s) => console.log(s);
const ALICE = '15550000001', BOB = '15550000002';

const pg = createDatabase(conninfo, 'wabridge_demo');
say('1. starting wa-sim (WhatsApp server simulator), hs-sim (homeserver simulator) and wabridge');
const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000001', name: 'Alice' }, { phone: BOB, lid: '900000000000002', name: 'Bob' }],
});
let code = 0;
try {
  say(`   homeserver ${stack.hs.url} (${DOMAIN}), WhatsApp ${stack.wa.ready.ws}, config ${stack.configPath}`);
  const alice = await MxUser.register(stack.hs.url, 'alice');
  say(`2. Matrix user ${alice.userId} opens a DM with the bridge bot`);
  const mgmt = await openManagementRoom(alice, DOMAIN);
  say(`3. "login qr": the bot posts a QR image; Alice's phone (+${ALICE}) scans it`);
  await loginQr(alice, mgmt, stack.wa, ALICE);
  say(`   bot: Successfully logged in as +${ALICE}`);
  say(`4. Bob (+${BOB}) writes to Alice on WhatsApp`);
  await stack.wa.admin('POST', '/admin/send', { phone: BOB, to: `${ALICE}@s.whatsapp.net`, text: 'Hi Alice! This is Bob on WhatsApp.' });
  const portal = await joinNextInvite(alice, new Set([mgmt]));
  await alice.waitEvent('Bob\'s message', (e) => e.room_id === portal && e.sender.startsWith('@whatsapp_'));
  say('5. Alice answers in the portal room on Matrix');
  await alice.send(portal, 'Hello Bob! Alice here, writing from Matrix.');
  await waitFor('Bob\'s phone', async () => (await phoneMessages(stack.wa, BOB)).find((m) => m.text.startsWith('Hello Bob')), 30000);

  say('\n--- the conversation as Alice saw it on Matrix (room ' + portal + ') ---');
  for (const e of alice.messagesIn(portal)) say(`  ${e.sender}: ${e.content.body}`);
  say(`--- the conversation as Bob's phone saw it on WhatsApp (+${BOB}) ---`);
  say(`  (sent) Hi Alice! This is Bob on WhatsApp.`);
  for (const m of await phoneMessages(stack.wa, BOB)) say(`  ${m.sender}: ${m.text}`);
  say('\nA message crossed each way.');
  if (keep) {
    say(`\nThe stack keeps running. Talk to it with any Matrix client against ${stack.hs.url}:`);
    say(`  register a user (password + m.login.dummy), invite @whatsappbot:${DOMAIN} to a DM, send "help".`);
    say(`  make Bob write: curl -d '{"phone":"${BOB}","to":"${ALICE}@s.whatsapp.net","text":"hi"}' ${stack.wa.ready.admin}/admin/send`);
    say('Ctrl-C stops everything.');
    await new Promise((resolve) => process.once('SIGINT', resolve));
  }
  alice.stop();
} catch (e) {
  console.error(`demo failed: ${e.stack}`);
  code = 1;
} finally {
  await stack.stop();
}
process.exit(code);
