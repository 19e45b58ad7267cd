// bench/bench_bridge.mjs - the whole stack on this machine (PostgreSQL, hs-sim, wa-sim, wabridge):
// bridged messages per second each way, and the end-to-end latency at a fixed rate.
//   node bench/bench_bridge.mjs WABRIDGE HS_SIM WA_SIM CONNINFO [N] [CONTACTS]
// Prints one JSON line. Throughput: N messages from CONTACTS WhatsApp contacts at once (one portal
// each) to one Matrix user, then N from that user spread over the portals. Latency: one message
// every 20 ms for 10 s each way, from the sender's call to the receiver seeing it (Matrix: its /sync;
// WhatsApp: the simulated phone's message list, polled every 5 ms), so it includes the simulators;
// and the latency the bridge itself adds, from the simulators' own clocks (CLOCK_MONOTONIC, the
// same in every process): WhatsApp -> Matrix from the moment wa-sim put the stanza on the bridge's
// connection to the moment hs-sim stored the bridge's event; Matrix -> WhatsApp from the start of
// hs-sim's appservice push carrying the event to the arrival of the bridge's frame at wa-sim.
import { createDatabase, waitFor } from '../tests/e2e/stack.mjs';
import { startBenchStack } from './bench_setup.mjs';
import { phoneMessages } from '../tests/e2e/scenario.mjs';

const [wabridge, hsSim, waSim, conninfo, nArg, cArg] = process.argv.slice(2);
const N = Number(nArg ?? 2000), C = Number(cArg ?? 4);
const ALICE = '15550000101';
const contacts = Array.from({ length: C }, (_, i) => String(15550000200 + i));
const pg = createDatabase(conninfo, 'bench_bridge');
const { stack, alice, portals } = await startBenchStack({
  bins: { wabridge, hsSim, waSim }, pg, user: { phone: ALICE, lid: '900000000000101' }, contacts, lidBase: 900000000000200,
});
const { wa } = stack;
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
try {
  await waitFor('the portals', () => portals.every((r) => alice.messagesIn(r).length >= 1), 30000);
  const count = (prefix) => alice.events.filter((e) => e.type === 'm.room.message' && e.content?.body?.startsWith(prefix)).length;

  // WhatsApp -> Matrix throughput
  let t0 = Date.now();
  await Promise.all(contacts.map(async (p, ci) => {
    for (let i = ci; i < N; i += C)
      await wa.admin('POST', '/admin/send', { phone: p, to: `${ALICE}@s.whatsapp.net`, text: `w${i}` });
  }));
  const simSendS = (Date.now() - t0) / 1000;
  await waitFor('all WhatsApp messages on Matrix', () => count('w') >= N, 600000);
  const waToMx = N / ((Date.now() - t0) / 1000);

  // Matrix -> WhatsApp throughput (8 sends in flight per portal)
  t0 = Date.now();
  await Promise.all(portals.map(async (room, ci) => {
    const mine = [];
    for (let i = ci; i < N; i += C) mine.push(i);
    for (let k = 0; k < mine.length; k += 8)
      await Promise.all(mine.slice(k, k + 8).map((i) => alice.send(room, `m${i}`)));
  }));
  const mxSendS = (Date.now() - t0) / 1000;
  await waitFor('all Matrix messages on WhatsApp', async () => {
    let n = 0;
    for (const p of contacts) n += (await phoneMessages(wa, p)).filter((m) => m.text.startsWith('m')).length;
    return n >= N;
  }, 600000);
  const mxToWa = N / ((Date.now() - t0) / 1000);

  // latency at a fixed rate: one message every 20 ms for 10 s, each way, one portal
  const lat = async (send, seen) => {
    const out = [];
    const pending = [];
    for (let i = 0; i < 500; i++) {
      const start = Date.now();
      pending.push(send(i).then(() => waitFor('a message', () => seen(i), 30000, 2)).then(() => out.push(Date.now() - start)));
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.all(pending);
    return out;
  };
  const bob = contacts[0], room = portals[0];
  const sentUs = new Map(); // lw<i> -> when wa-sim put it on the bridge's connection
  const waLat = await lat(async (i) => {
    const r = await wa.admin('POST', '/admin/send', { phone: bob, to: `${ALICE}@s.whatsapp.net`, text: `lw${i}` });
    sentUs.set(`lw${i}`, r.json.sent_us);
  }, (i) => alice.events.some((e) => e.content?.body === `lw${i}`));
  // the phone's new messages, polled every 5 ms (only those after the ones seen: the list is long)
  const phoneSeen = new Set();
  let seenCount = (await phoneMessages(wa, bob)).length, polling = true;
  const poller = (async () => {
    while (polling) {
      const fresh = await phoneMessages(wa, bob, seenCount);
      for (const m of fresh) phoneSeen.add(m.text);
      seenCount += fresh.length;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const mxLat = await lat((i) => alice.send(room, `lm${i}`), (i) => phoneSeen.has(`lm${i}`));
  polling = false;
  await poller;
  // the bridge's own share, from the simulators' timestamps
  const timing = (await (await fetch(`${stack.hs.url}/_hssim/rooms/${encodeURIComponent(room)}/timing`)).json()).events;
  const waAdded = [], mxAdded = [];
  const rxAt = new Map((await phoneMessages(wa, bob)).map((m) => [m.text, m.rx_us]));
  for (const t of timing) {
    if (sentUs.has(t.body)) waAdded.push((t.rx_us - sentUs.get(t.body)) / 1000);
    if (t.body?.startsWith('lm') && t.push_us && rxAt.has(t.body)) mxAdded.push((rxAt.get(t.body) - t.push_us) / 1000);
  }
  if (waAdded.length !== 500 || mxAdded.length !== 500) throw new Error(`timing: ${waAdded.length} and ${mxAdded.length} of 500`);
  const ms = (x) => Math.round(x * 100) / 100;
  console.log(JSON.stringify({
    n: N, contacts: C,
    wa_to_mx_per_s: Math.round(waToMx), wa_sim_send_s: simSendS,
    mx_to_wa_per_s: Math.round(mxToWa), mx_send_s: mxSendS,
    wa_to_mx_p50_ms: pct(waLat, 0.5), wa_to_mx_p99_ms: pct(waLat, 0.99),
    mx_to_wa_p50_ms: pct(mxLat, 0.5), mx_to_wa_p99_ms: pct(mxLat, 0.99),
    // what the bridge adds (between the simulators' sockets)
    wa_to_mx_added_p50_ms: ms(pct(waAdded, 0.5)), wa_to_mx_added_p99_ms: ms(pct(waAdded, 0.99)),
    mx_to_wa_added_p50_ms: ms(pct(mxAdded, 0.5)), mx_to_wa_added_p99_ms: ms(pct(mxAdded, 0.99)),
  }));
  alice.stop();
} finally {
  await stack.stop();
}
process.exit(0);
