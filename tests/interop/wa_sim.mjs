// Starts the wa-sim process for a Node test and talks to its admin API. The simulator's certificate
// root becomes Baileys' trusted root (WA_CERT_DETAILS.PUBLIC_KEY), as the protocol notes say.
//   const sim = await startSim(path, ['--account', 'PHONE:LID:Name', ...]);
//   sim.ready.ws / sim.ready.admin / sim.ready.root; await sim.admin('POST', '/admin/scan', {...});
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { WA_CERT_DETAILS } from '@whiskeysockets/baileys/lib/Defaults/index.js';

export async function startSim(path, args) {
  const proc = spawn(path, [...args, ...(process.env.WA_SIM_VERBOSE ? ['--verbose'] : [])],
    { stdio: ['ignore', 'pipe', 'inherit'] });
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
