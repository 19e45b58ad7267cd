// tests/e2e/stack.mjs - the whole stack for end-to-end tests and the demo: a PostgreSQL database
// (given), hs-sim (homeserver), wa-sim (WhatsApp server), and wabridge between them, configured the
// way a user would: `wabridge -g` writes the registration that hs-sim loads, the config's options
// come from a YAML file plus environment overrides. Plus a minimal Matrix client (MxUser) over
// fetch, with a /sync loop, for the scripted users.
import { spawn, execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DOMAIN = 'example.org';

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

export async function waitFor(what, check, ms = 20000, every = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// Creates a fresh database next to the given libpq conninfo (without dbname) and returns the
// conninfo of the new database.
export function createDatabase(conninfo, name) {
  const env = { ...process.env, PGOPTIONS: '-c client_min_messages=warning' };
  execFileSync('psql', [`${conninfo} dbname=postgres`, '-qAt', '-c', `DROP DATABASE IF EXISTS ${name}`], { env });
  execFileSync('psql', [`${conninfo} dbname=postgres`, '-qAt', '-c', `CREATE DATABASE ${name}`], { env });
  return `${conninfo} dbname=${name}`;
}

function lines(proc, onLine) {
  createInterface({ input: proc.stdout }).on('line', onLine);
}

export async function startWaSim(bin, accounts) {
  const args = [];
  for (const a of accounts) args.push('--account', `${a.phone}:${a.lid}:${a.name}`);
  if (process.env.WA_SIM_VERBOSE) args.push('--verbose');
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = await new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout }).once('line', (l) => resolve(JSON.parse(l)));
    proc.once('exit', (c) => reject(new Error(`wa-sim exited with ${c}`)));
  });
  const admin = async (method, path, body) => {
    const r = await fetch(ready.admin + path, { method, body: body ? JSON.stringify(body) : undefined });
    return { status: r.status, json: await r.json() };
  };
  return { proc, ready, admin, stop: () => proc.kill('SIGTERM') };
}

export async function startHsSim(bin, regPath) {
  const proc = spawn(bin, ['0', DOMAIN, regPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    lines(proc, (l) => { const m = l.match(/^port (\d+)/); if (m) resolve(Number(m[1])); });
    proc.once('exit', (c) => reject(new Error(`hs-sim exited with ${c}`)));
  });
  return { proc, url: `http://127.0.0.1:${port}`, stop: () => proc.kill('SIGTERM') };
}

export function writeConfig(dir, { asPort, db, waUrl, root, permissions, extra = '' }) {
  const perms = Object.entries(permissions ?? { '*': 'relay', [DOMAIN]: 'user' })
    .map(([k, v]) => `    "${k}": ${v}`).join('\n');
  const yaml = `# written by tests/e2e/stack.mjs
homeserver:
  address: http://127.0.0.1:1   # overridden by WABRIDGE_HOMESERVER_ADDRESS once hs-sim runs
  domain: ${DOMAIN}
appservice:
  address: http://127.0.0.1:${asPort}
  hostname: 127.0.0.1
  port: ${asPort}
  id: whatsapp
  as_token: generate
  hs_token: generate
  bot:
    username: whatsappbot
    displayname: WhatsApp bridge bot
database:
  uri: "${db}"
workers:
  engine: 1
  portal: 2
whatsapp:
  url: ${waUrl}
  trust_root: "${root}"
bridge:
  permissions:
${perms}
logging:
  level: ${process.env.WABRIDGE_E2E_LOG ?? 'warn'}
${extra}`;
  const path = join(dir, 'config.yaml');
  writeFileSync(path, yaml);
  return path;
}

// Starts wabridge -c config; resolves once it prints that it runs. env: extra variables.
export async function startBridge(bin, configPath, env = {}) {
  const wrap = process.env.WABRIDGE_E2E_WRAP ? process.env.WABRIDGE_E2E_WRAP.split(' ') : [];
  const cmd = wrap.length ? wrap[0] : bin;
  const args = wrap.length ? [...wrap.slice(1), bin, '-c', configPath] : ['-c', configPath];
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  const exited = new Promise((resolve) => proc.once('exit', (code, sig) => resolve({ code, sig })));
  await new Promise((resolve, reject) => {
    lines(proc, (l) => { if (/running/.test(l)) resolve(); });
    exited.then((e) => reject(new Error(`wabridge exited early: ${JSON.stringify(e)}`)));
  });
  return {
    proc, exited,
    stop: async () => { proc.kill('SIGTERM'); return exited; },
    kill: async () => { proc.kill('SIGKILL'); return exited; },
  };
}

// Everything: wa-sim with accounts, config + registration, hs-sim, wabridge.
export async function startStack({ bins, pg, accounts, permissions, env: extraEnv = {} }) {
  const dir = mkdtempSync(join(tmpdir(), 'wabridge-e2e-'));
  const wa = await startWaSim(bins.waSim, accounts);
  const asPort = await freePort();
  const configPath = writeConfig(dir, { asPort, db: pg, waUrl: wa.ready.ws, root: wa.ready.root, permissions });
  const regPath = join(dir, 'registration.yaml');
  execFileSync(bins.wabridge, ['-g', '-c', configPath, '-r', regPath], { stdio: ['ignore', 'ignore', 'inherit'] });
  const hs = await startHsSim(bins.hsSim, regPath);
  const env = { WABRIDGE_HOMESERVER_ADDRESS: hs.url, ...extraEnv };
  const bridge = await startBridge(bins.wabridge, configPath, env);
  const stack = {
    dir, wa, hs, bridge, configPath, regPath, env,
    restartBridge: async () => { stack.bridge = await startBridge(bins.wabridge, configPath, env); return stack.bridge; },
    stop: async () => {
      await stack.bridge.stop().catch(() => {});
      hs.stop();
      wa.stop();
      if (!process.env.WABRIDGE_E2E_KEEP_DIR) rmSync(dir, { recursive: true, force: true });
    },
  };
  return stack;
}

// A Matrix user over the client-server API, with a background /sync loop.
export class MxUser {
  constructor(hsUrl, userId, token) {
    Object.assign(this, { hsUrl, userId, token, events: [], ephemeral: [], invites: new Set(), since: null, running: true });
    this.loop = this.#syncLoop();
  }

  static async register(hsUrl, username, password = 'pw-' + username) {
    const url = `${hsUrl}/_matrix/client/v3/register`;
    let r = await fetch(url, { method: 'POST', body: JSON.stringify({ username, password }) });
    const first = await r.json();
    r = await fetch(url, { method: 'POST', body: JSON.stringify({ username, password, auth: { type: 'm.login.dummy', session: first.session } }) });
    const j = await r.json();
    if (!j.access_token) throw new Error(`register ${username}: ${JSON.stringify(j)}`);
    return new MxUser(hsUrl, j.user_id, j.access_token);
  }

  async req(method, path, body) {
    const r = await fetch(this.hsUrl + path, {
      method, headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(j)}`);
    return j;
  }

  async #syncLoop() {
    while (this.running) {
      try {
        const q = this.since ? `?since=${encodeURIComponent(this.since)}&timeout=500` : '?timeout=0';
        // (long polling: hs-sim answers as soon as an event arrives)
        const j = await this.req('GET', `/_matrix/client/v3/sync${q}`);
        this.since = j.next_batch;
        for (const [roomId, room] of Object.entries(j.rooms?.join ?? {})) {
          for (const ev of room.timeline?.events ?? []) this.events.push({ ...ev, room_id: roomId });
          for (const ev of room.ephemeral?.events ?? []) this.ephemeral.push({ ...ev, room_id: roomId });
        }
        for (const roomId of Object.keys(j.rooms?.invite ?? {})) this.invites.add(roomId);
      } catch (e) {
        if (this.running) await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  stop() { this.running = false; }
  async sendEvent(room, type, content) {
    const txn = `t${Date.now()}${Math.random().toString(36).slice(2)}`;
    return (await this.req('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/${type}/${txn}`, content)).event_id;
  }
  async redact(room, eventId) {
    const txn = `r${Date.now()}${Math.random().toString(36).slice(2)}`;
    return (await this.req('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/redact/${encodeURIComponent(eventId)}/${txn}`, {})).event_id;
  }
  typing(room, on) {
    return this.req('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/typing/${encodeURIComponent(this.userId)}`, { typing: on, timeout: 30000 });
  }
  readReceipt(room, eventId) {
    return this.req('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/receipt/m.read/${encodeURIComponent(eventId)}`, {});
  }
  createRoom(opts) { return this.req('POST', '/_matrix/client/v3/createRoom', opts).then((j) => j.room_id); }
  join(room) { return this.req('POST', `/_matrix/client/v3/join/${encodeURIComponent(room)}`, {}); }
  async send(room, body, extra = {}) {
    const txn = `t${Date.now()}${Math.random().toString(36).slice(2)}`;
    const j = await this.req('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/${txn}`,
      { msgtype: 'm.text', body, ...extra });
    return j.event_id;
  }
  // The first timeline event matching pred (waiting for it).
  waitEvent(what, pred, ms = 20000) {
    return waitFor(what, () => this.events.find(pred), ms);
  }
  messagesIn(room) { return this.events.filter((e) => e.room_id === room && e.type === 'm.room.message'); }
}
