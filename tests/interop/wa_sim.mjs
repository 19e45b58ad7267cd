// Starts the wa-sim process for a Node test and talks to its admin API. The simulator's certificate
// root becomes Baileys' trusted root (WA_CERT_DETAILS.PUBLIC_KEY), as the protocol notes say.
//   const sim = await startSim(path, ['--account', 'PHONE:LID:Name', ...]);
//   sim.ready.ws / sim.ready.admin / sim.ready.root; await sim.admin('POST', '/admin/scan', {...});
// wa-sim ends with the test however the test ends: SIGTERM when this process exits (an uncaught
// exception included), and --exit-on-eof on its stdin pipe when this process is killed. A wa-sim
// left behind would keep the stderr it inherited open, and ctest would wait for it until its
// timeout instead of reporting the failure.
//   watchdog(seconds): if this process's event loop stops turning for that long, prints where its
// JavaScript is stuck and kills the process (a setTimeout deadline cannot fire then).
// Environment: WA_SIM_VERBOSE=1 logs every stanza wa-sim sends and receives (stderr).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Worker } from 'node:worker_threads';
import { WA_CERT_DETAILS } from '@whiskeysockets/baileys/lib/Defaults/index.js';

export async function startSim(path, args) {
  const proc = spawn(path, [...args, '--exit-on-eof', ...(process.env.WA_SIM_VERBOSE ? ['--verbose'] : [])],
    { stdio: ['pipe', 'pipe', 'inherit'] });
  process.on('exit', () => proc.kill('SIGTERM'));
  const ready = await new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout }).once('line', (line) => resolve(JSON.parse(line)));
    proc.once('exit', (code) => reject(new Error(`wa-sim exited with ${code}`)));
  });
  WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(ready.root, 'hex');
  const admin = async (method, path, body) => {
    const r = await fetch(ready.admin + path, { method, body: body ? JSON.stringify(body) : undefined });
    return { status: r.status, json: await r.json() };
  };
  return { proc, ready, admin, kill: () => proc.kill('SIGTERM') };
}

// A worker thread watches a heartbeat the main thread bumps every 500 ms. When it stops for
// `seconds`, the worker pauses the main thread through the inspector (which interrupts running
// JavaScript), writes the paused call stack straight to fd 2 and SIGKILLs the process.
const WATCHDOG = `
const { workerData } = require('node:worker_threads');
const { Session } = require('node:inspector');
const { writeSync } = require('node:fs');
const { beat, seconds } = workerData;
let last = -1, still = 0;
const timer = setInterval(() => {
  const now = Atomics.load(beat, 0);
  if (now !== last) { last = now; still = 0; return; }
  if (++still < seconds) return;
  clearInterval(timer);
  writeSync(2, 'watchdog: the event loop has not turned for ' + seconds + ' s; the main thread is at:\\n');
  const urls = new Map();
  const s = new Session();
  s.connectToMainThread();
  s.on('Debugger.scriptParsed', (m) => urls.set(m.params.scriptId, m.params.url));
  s.on('Debugger.paused', (m) => {
    for (const f of m.params.callFrames)
      writeSync(2, '    at ' + (f.functionName || '<anonymous>') + ' (' + (urls.get(f.location.scriptId) || '?') +
        ':' + (f.location.lineNumber + 1) + ':' + (f.location.columnNumber + 1) + ')\\n');
    process.kill(process.pid, 'SIGKILL');
  });
  s.post('Debugger.enable', () => s.post('Debugger.pause'));
  setTimeout(() => { writeSync(2, 'watchdog: no stack within 5 s\\n'); process.kill(process.pid, 'SIGKILL'); }, 5000);
}, 1000);
`;

export function watchdog(seconds) {
  const beat = new Int32Array(new SharedArrayBuffer(4));
  new Worker(WATCHDOG, { eval: true, workerData: { beat, seconds } }).unref();
  setInterval(() => Atomics.add(beat, 0, 1), 500).unref();
}
