// tests/e2e/e2e_crash.mjs - nothing lost, nothing doubled: wabridge is killed with SIGKILL in the
// middle of a 1,000-message exchange in both directions (Bob's WhatsApp phone -> Alice's portal,
// Alice on Matrix -> Bob), then started again. Every message must arrive exactly once, in order.
//   node e2e_crash.mjs WABRIDGE HS_SIM WA_SIM [N]   (env WABRIDGE_TEST_PG_STATE)
import { readFileSync } from 'node:fs';
import { startStack, MxUser, createDatabase, DOMAIN, waitFor } from './stack.mjs';
import { report } from './report.mjs';
import { openManagementRoom, loginQr, joinNextInvite, phoneMessages } from './scenario.mjs';

const [wabridge, hsSim, waSim, nArg] = process.argv.slice(2);
const N = Number(nArg ?? 1000);
const conninfo = readFileSync(`${process.env.WABRIDGE_TEST_PG_STATE}/conninfo`, 'utf8').trim();
const pg = createDatabase(conninfo, 'e2e_crash');
const { check, failed, finish } = report();
const ALICE = '15550000011', BOB = '15550000012';
const pad = (i) => String(i).padStart(4, '0');

const stack = await startStack({
  bins: { wabridge, hsSim, waSim }, pg,
  accounts: [{ phone: ALICE, lid: '900000000000011', name: 'Alice' }, { phone: BOB, lid: '900000000000012', name: 'Bob' }],
});
const { wa, hs } = stack;
try {
  const alice = await MxUser.register(hs.url, 'alice');
  const mgmt = await openManagementRoom(alice, DOMAIN);
  await loginQr(alice, mgmt, wa, ALICE);
  await wa.admin('POST', '/admin/send', { phone: BOB, to: `${ALICE}@s.whatsapp.net`, text: 'start' });
  const portal = await joinNextInvite(alice, new Set([mgmt]));
  const bobGhost = `@whatsapp_${BOB}:${DOMAIN}`;
  await alice.waitEvent('the first message', (e) => e.room_id === portal && e.content?.body === 'start');

  const waToMx = () => alice.messagesIn(portal).filter((e) => e.sender === bobGhost && e.content.body.startsWith('wa-')).map((e) => e.content.body);
  const mxToWa = async () => (await phoneMessages(wa, BOB)).filter((m) => m.text.startsWith('mx-')).map((m) => m.text);

  const ids = {};
  // both directions at once; the kill comes when about a third has crossed each way
  const sendWa = (async () => {
    for (let i = 1; i <= N; i++) {
      const r = await wa.admin('POST', '/admin/send', { phone: BOB, to: `${ALICE}@s.whatsapp.net`, text: `wa-${pad(i)}` });
      if (r.status !== 200) throw new Error(`phone send ${i}: ${JSON.stringify(r.json)}`);
      ids[`wa-${pad(i)}`] = r.json.id;
    }
  })();
  const sendMx = (async () => {
    for (let i = 1; i <= N; i++) {
      for (;;) {
        try { await alice.send(portal, `mx-${pad(i)}`); break; } catch { await new Promise((r) => setTimeout(r, 100)); }
      }
    }
  })();
  await waitFor('a third of the messages crossing', async () => waToMx().length >= N / 3 && (await mxToWa()).length >= N / 3, 120000);
  const before = { wa: waToMx().length, mx: (await mxToWa()).length };
  const killed = await stack.bridge.kill();
  check(killed.sig === 'SIGKILL', `wabridge killed with SIGKILL after ${before.wa} + ${before.mx} messages`);
  await new Promise((r) => setTimeout(r, 500));
  await stack.restartBridge();
  await Promise.all([sendWa, sendMx]);
  await waitFor('every message crossing', async () => waToMx().length >= N && (await mxToWa()).length >= N, 240000).catch(async (e) => {
    const a = waToMx(), b = await mxToWa();
    console.log('  so far', a.length, b.length);
    const want = Array.from({ length: N }, (_, i) => pad(i + 1));
    console.log('  missing wa->mx', want.map((x) => `wa-${x}`).filter((x) => !a.includes(x)).slice(0, 20).map((x) => `${x}=${ids[x]}`).join(' '));
    console.log('  missing mx->wa', want.map((x) => `mx-${x}`).filter((x) => !b.includes(x)).slice(0, 20).join(' '));
    console.log('  other messages in the portal:', JSON.stringify(alice.messagesIn(portal).filter((ev) => !/^(wa-|mx-|start)/.test(ev.content?.body)).map((ev) => ev.content?.body)));
    throw e;
  });
  await new Promise((r) => setTimeout(r, 2000)); // duplicates would show up now
  const a = waToMx(), b = await mxToWa();
  const want = Array.from({ length: N }, (_, i) => pad(i + 1));
  check(a.length === N, `WhatsApp -> Matrix: ${a.length} of ${N} messages, each once`);
  check(JSON.stringify(a) === JSON.stringify(want.map((x) => `wa-${x}`)), 'WhatsApp -> Matrix: in order');
  check(b.length === N, `Matrix -> WhatsApp: ${b.length} of ${N} messages, each once`);
  check(JSON.stringify(b) === JSON.stringify(want.map((x) => `mx-${x}`)), 'Matrix -> WhatsApp: in order');
  if (a.length !== N || b.length !== N) {
    const dup = (xs) => xs.filter((x, i) => xs.indexOf(x) !== i).slice(0, 5);
    const miss = (xs, p) => want.map((x) => p + x).filter((x) => !xs.includes(x)).slice(0, 5);
    console.log(`  duplicates wa->mx ${dup(a)} mx->wa ${dup(b)}; missing wa->mx ${miss(a, 'wa-')} mx->wa ${miss(b, 'mx-')}`);
  }
  alice.stop();
} catch (e) {
  failed(e);
} finally {
  await stack.stop();
}
finish();
