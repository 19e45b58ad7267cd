// bench/bench_drain.mjs - what the bridge itself sustains, without the drivers in the way: a
// backlog waits while wabridge is stopped (N messages from CONTACTS WhatsApp contacts queued at
// wa-sim for the login's device; then N Matrix messages held by hs-sim for the appservice), the
// bridge starts, and the rate is taken over the drain, from the first bridged message to the last,
// as PostgreSQL sees it (WhatsApp -> Matrix: the message rows the bridge stores after each Matrix
// send; Matrix -> WhatsApp: the appservice inbox rows, each deleted when WhatsApp's server acked
// the message). The simulators and PostgreSQL share the machine with the bridge.
//   node bench/bench_drain.mjs WABRIDGE HS_SIM WA_SIM CONNINFO [N] [CONTACTS]
// Prints one JSON line.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createDatabase, waitFor } from '../tests/e2e/stack.mjs';
import { startBenchStack } from './bench_setup.mjs';

const [wabridge, hsSim, waSim, conninfo, nArg, cArg] = process.argv.slice(2);
const N = Number(nArg ?? 2000), C = Number(cArg ?? 4);
const ALICE = '15550000301';
const contacts = Array.from({ length: C }, (_, i) => String(15550000400 + i));
const pg = createDatabase(conninfo, 'bench_drain');
// one psql session for every poll (a process per poll would cost more CPU than the bridge)
const psql = spawn('psql', [pg, '-qAt'], { stdio: ['pipe', 'pipe', 'inherit'] });
const answers = [];
createInterface({ input: psql.stdout }).on('line', (l) => answers.shift()?.(Number(l.trim())));
const sql = (q) => new Promise((resolve) => { answers.push(resolve); psql.stdin.write(`${q};\n`); });
// the polling session's own server process, left out of PostgreSQL's share (it is the harness's)
const pollPid = String(await sql('SELECT pg_backend_pid()'));
// CPU seconds (user + system) of a process and of all PostgreSQL server processes but pollPid
const cpuOf = (pid) => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch { return 0; }
};
const pgCpu = () => {
  let t = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    if (d === pollPid) continue;
    try { if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === 'postgres') t += cpuOf(d); } catch { /* gone */ }
  }
  return t;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls a counter until it moved by `want` from `base`; returns the seconds from its first move.
async function drain(what, count, base, want, limitMs = 600000) {
  let first = 0;
  const end = Date.now() + limitMs;
  for (;;) {
    const v = await count();
    const now = Date.now();
    if (!first && Math.abs(v - base) > 0) first = now;
    if (Math.abs(v - base) >= want) return { s: (now - first) / 1000, first };
    if (now > end) throw new Error(`${what}: ${Math.abs(v - base)} of ${want} after ${limitMs} ms`);
    await sleep(10);
  }
}

const { stack, alice, portals } = await startBenchStack({
  bins: { wabridge, hsSim, waSim }, pg, user: { phone: ALICE, lid: '900000000000301' }, contacts, lidBase: 900000000000400,
});
const { wa, hs } = stack;
try {
  await waitFor('the portals', async () => (await sql('SELECT count(*) FROM message')) >= C, 30000);

  // WhatsApp -> Matrix: the backlog waits at wa-sim while the bridge is down
  await stack.bridge.stop();
  await Promise.all(contacts.map(async (p, ci) => {
    for (let i = ci; i < N; i += C)
      await wa.admin('POST', '/admin/send', { phone: p, to: `${ALICE}@s.whatsapp.net`, text: `w${i}` });
  }));
  const base1 = await sql('SELECT count(*) FROM message');
  await stack.restartBridge();
  // the simulators' share, to tell what the machine spends on the bridge from what it spends on
  // playing WhatsApp and the homeserver
  const simsCpu = () => [cpuOf(hs.proc.pid), cpuOf(wa.proc.pid)];
  let cpu0 = cpuOf(stack.bridge.proc.pid), pg0 = pgCpu(), sims0 = simsCpu();
  const count1 = () => sql('SELECT count(*) FROM message');
  const d1 = await drain('WhatsApp -> Matrix', count1, base1, N);
  const cpu1 = cpuOf(stack.bridge.proc.pid) - cpu0, pg1 = pgCpu() - pg0;
  const sims1 = simsCpu().map((v, i) => v - sims0[i]);

  // Matrix -> WhatsApp: hs-sim holds the transactions while the bridge is down
  await fetch(`${hs.url}/_hssim/config`, { method: 'POST', body: JSON.stringify({ push_backoff_ms: 20 }) });
  await stack.bridge.stop();
  await Promise.all(portals.map(async (room, ci) => {
    const mine = [];
    for (let i = ci; i < N; i += C) mine.push(i);
    for (let k = 0; k < mine.length; k += 16)
      await Promise.all(mine.slice(k, k + 16).map((i) => alice.send(room, `m${i}`)));
  }));
  await stack.restartBridge();
  cpu0 = cpuOf(stack.bridge.proc.pid);
  pg0 = pgCpu();
  sims0 = simsCpu();
  // every event is first written to the inbox, then deleted when acked
  const accepted = () => sql('SELECT count(*) FROM mx_inbox');
  await waitFor('the first transaction accepted', async () => (await accepted()) > 0, 60000, 5);
  const t0 = Date.now();
  await waitFor('the Matrix backlog acked by WhatsApp', async () =>
    (await accepted()) === 0 && (await sql(`SELECT count(*) FROM message WHERE sender_jid = ''`)) >= N,
  600000, 10);
  const s2 = (Date.now() - t0) / 1000;
  const cpu2 = cpuOf(stack.bridge.proc.pid) - cpu0, pg2 = pgCpu() - pg0;
  const sims2 = simsCpu().map((v, i) => v - sims0[i]);
  console.log(JSON.stringify({
    n: N, contacts: C,
    wa_to_mx_drain_per_s: Math.round(N / d1.s), wa_to_mx_drain_s: d1.s,
    mx_to_wa_drain_per_s: Math.round(N / s2), mx_to_wa_drain_s: s2,
    // CPU per message: the bridge alone, and the PostgreSQL server (all of its processes)
    wa_to_mx_bridge_cpu_us: Math.round(cpu1 * 1e6 / N), wa_to_mx_pg_cpu_us: Math.round(pg1 * 1e6 / N),
    mx_to_wa_bridge_cpu_us: Math.round(cpu2 * 1e6 / N), mx_to_wa_pg_cpu_us: Math.round(pg2 * 1e6 / N),
    // and the simulators'
    wa_to_mx_hs_sim_cpu_us: Math.round(sims1[0] * 1e6 / N), wa_to_mx_wa_sim_cpu_us: Math.round(sims1[1] * 1e6 / N),
    mx_to_wa_hs_sim_cpu_us: Math.round(sims2[0] * 1e6 / N), mx_to_wa_wa_sim_cpu_us: Math.round(sims2[1] * 1e6 / N),
  }));
  alice.stop();
} finally {
  psql.stdin.end();
  await stack.stop();
}
process.exit(0);
