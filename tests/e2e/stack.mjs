// tests/e2e/stack.mjs - the whole stack for end-to-end tests and the demo: a PostgreSQL database
// (given), hs-sim (homeserver), wa-sim (WhatsApp server), and wabridge between them, configured the
// way a user would: `wabridge -g` writes the registration that hs-sim loads, the config's options
// come from a YAML file plus environment overrides. The scripted Matrix users (MxUser) are
// matrix-js-sdk clients (the real, independent client library, from tests/interop/node_modules):
// they register, send, and receive through the SDK's own /sync loop and emitters.
import { spawn, execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as sdk from '../interop/node_modules/matrix-js-sdk/lib/index.js';
import { logger as sdkLogger } from '../interop/node_modules/matrix-js-sdk/lib/logger.js';

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

// One SQL statement on the database of conninfo (psql); its rows as text, '|' between columns.
export function sqlOn(conninfo, q) {
  return execFileSync('psql', [conninfo, '-qAt', '-c', q], { encoding: 'utf8' }).trim();
}

// Creates a fresh database next to the given libpq conninfo (without dbname) and returns the
// conninfo of the new database.
export function createDatabase(conninfo, name) {
  const env = { ...process.env, PGOPTIONS: '-c client_min_messages=warning' };
  execFileSync('psql', [`${conninfo} dbname=postgres`, '-qAt', '-c', `DROP DATABASE IF EXISTS ${name}`], { env });
  execFileSync('psql', [`${conninfo} dbname=postgres`, '-qAt', '-c', `CREATE DATABASE ${name}`], { env });
  return `${conninfo} dbname=${name}`;
}

// A child still running when this process exits (an uncaught exception included) is sent SIGTERM:
// left behind, it would keep the stderr it inherited open, and ctest would wait for it until the
// test's timeout instead of reporting the failure.
const children = new Set();
process.on('exit', () => { for (const c of children) c.kill('SIGTERM'); });
function endWithUs(proc) {
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
}

function lines(proc, onLine) {
  createInterface({ input: proc.stdout }).on('line', onLine);
}

export async function startWaSim(bin, accounts) {
  const args = [];
  for (const a of accounts) args.push('--account', `${a.phone}:${a.lid}:${a.name}`);
  if (process.env.WA_SIM_VERBOSE) args.push('--verbose');
  // --exit-on-eof: wa-sim goes with this process even if it is killed (see tests/interop/wa_sim.mjs)
  const proc = spawn(bin, [...args, '--exit-on-eof'], { stdio: ['pipe', 'pipe', 'inherit'] });
  endWithUs(proc);
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

// extraRegs: more registration files (like Synapse's app_service_config_files).
export async function startHsSim(bin, regPath, extraRegs = []) {
  const args = process.env.WABRIDGE_E2E_HS_VERBOSE ? ['-v'] : []; // hs-sim logs each request
  // state events without unsigned.prev_content, which the spec makes optional
  if (process.env.WABRIDGE_E2E_HS_NO_PREV_CONTENT) args.push('--no-prev-content');
  const proc = spawn(bin, [...args, '0', DOMAIN, regPath, ...extraRegs], { stdio: ['ignore', 'pipe', 'inherit'] });
  endWithUs(proc);
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
  level: ${process.env.WABRIDGE_E2E_LOG ?? 'info'}
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
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  endWithUs(proc);
  // its log (stderr) lines, kept for the test; passed on to ours from warnings up, or all of
  // them when WABRIDGE_E2E_LOG names a level
  const log = [];
  createInterface({ input: proc.stderr }).on('line', (l) => {
    log.push(l);
    if (process.env.WABRIDGE_E2E_LOG || !/^\S+ info /i.test(l)) process.stderr.write(`${l}\n`);
  });
  const exited = new Promise((resolve) => proc.once('exit', (code, sig) => resolve({ code, sig })));
  await new Promise((resolve, reject) => {
    lines(proc, (l) => { if (/running/.test(l)) resolve(); });
    exited.then((e) => reject(new Error(`wabridge exited early: ${JSON.stringify(e)}`)));
  });
  return {
    proc, exited, log,
    stop: async () => { proc.kill('SIGTERM'); return exited; },
    kill: async () => { proc.kill('SIGKILL'); return exited; },
  };
}

// The double puppeting registration an admin installs next to the bridge's (mautrix's format):
// no url (it receives nothing), a random as_token, a non-exclusive namespace over real users.
// Returns { path, asToken }.
export function writeDoublePuppetRegistration(dir, userRegex = `@.*:${DOMAIN.replace(/\./g, '\\.')}`) {
  const hex = () => randomBytes(32).toString('hex');
  const asToken = hex();
  const path = join(dir, 'doublepuppet.yaml');
  writeFileSync(path, `id: doublepuppet
url: null
as_token: "${asToken}"
hs_token: "${hex()}"
sender_localpart: "${hex().slice(0, 16)}"
rate_limited: false
namespaces:
  users:
  - regex: '${userRegex}'
    exclusive: false
`, { mode: 0o600 });
  return { path, asToken };
}

// Everything: wa-sim with accounts, config + registration, hs-sim, wabridge.
// doublePuppet: { userRegex? } installs a double puppeting registration in hs-sim and gives the
// bridge its secret (WABRIDGE_DOUBLE_PUPPET_SECRETS), as an admin would.
export async function startStack({ bins, pg, accounts, permissions, env: extraEnv = {}, doublePuppet }) {
  const dir = mkdtempSync(join(tmpdir(), 'wabridge-e2e-'));
  const wa = await startWaSim(bins.waSim, accounts);
  const asPort = await freePort();
  const configPath = writeConfig(dir, { asPort, db: pg, waUrl: wa.ready.ws, root: wa.ready.root, permissions });
  const regPath = join(dir, 'registration.yaml');
  execFileSync(bins.wabridge, ['-g', '-c', configPath, '-r', regPath], { stdio: ['ignore', 'ignore', 'inherit'] });
  const dp = doublePuppet ? writeDoublePuppetRegistration(dir, doublePuppet.userRegex) : null;
  const hs = await startHsSim(bins.hsSim, regPath, dp ? [dp.path] : []);
  const env = { WABRIDGE_HOMESERVER_ADDRESS: hs.url, ...extraEnv };
  if (dp) env.WABRIDGE_DOUBLE_PUPPET_SECRETS = `${DOMAIN}=as_token:${dp.asToken}`;
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

// The SDK logs through loglevel loggers, children included (created at debug level): all quiet
// unless WABRIDGE_E2E_SDK_LOG names a level (trace, debug, info, warn, error).
const SDK_LOG = process.env.WABRIDGE_E2E_SDK_LOG ?? 'silent';
function quiet(l) {
  l.setLevel(SDK_LOG, false);
  const getChild = l.getChild;
  if (getChild && !getChild.quiet) {
    l.getChild = (prefix) => quiet(getChild.call(l, prefix));
    l.getChild.quiet = true;
  }
  return l;
}
quiet(sdkLogger);

const ROOM_EDUS = new Set(['m.typing', 'm.receipt']);

// A Matrix user: a matrix-js-sdk client running its own /sync loop (startClient). What it receives
// is kept as plain event objects (copies of the events as the server sent them, plus room_id):
//   events     timeline events of joined rooms, in the order the SDK added them to the live
//              timeline (its own messages once their remote echo arrived, with their real ids)
//   ephemeral  m.typing and m.receipt events from /sync (not the receipts the SDK synthesizes)
//   invites    ids of the rooms this user was invited to
// Methods keep the names of the fetch()-based client this replaced; sending returns event ids.
export class MxUser {
  #eduRoom = new WeakMap(); // ephemeral MatrixEvent -> room id (the SDK gives it no room_id)
  #retry = null; // interval that cuts the SDK's keep-alive wait short after a failed /sync

  constructor(hsUrl, userId, token, deviceId) {
    Object.assign(this, { hsUrl, userId, token, deviceId, events: [], ephemeral: [], invites: new Set(), running: true });
    const c = this.client = sdk.createClient({ baseUrl: hsUrl, accessToken: token, userId, deviceId, logger: sdkLogger });
    c.on(sdk.RoomEvent.Timeline, (ev, room, toStartOfTimeline, removed, data) => {
      // live events only; with detached pending events, local echoes never reach the timeline
      if (!room || toStartOfTimeline || removed || data?.liveEvent === false) return;
      this.events.push({ ...structuredClone(ev.event), room_id: room.roomId });
    });
    c.on(sdk.RoomEvent.MyMembership, (room, membership) => {
      if (membership === 'invite') this.invites.add(room.roomId);
    });
    // Ephemeral events reach the room first (RoomEvent.Receipt, RoomMemberEvent.Typing, which say
    // the room), then ClientEvent.Event (which only /sync's events reach).
    c.on(sdk.RoomEvent.Receipt, (ev, room) => this.#eduRoom.set(ev, room.roomId));
    c.on(sdk.RoomMemberEvent.Typing, (ev, member) => this.#eduRoom.set(ev, member.roomId));
    c.on(sdk.ClientEvent.Event, (ev) => {
      if (!ROOM_EDUS.has(ev.getType())) return;
      const roomId = ev.getRoomId() ?? this.#eduRoom.get(ev);
      if (roomId) this.ephemeral.push({ ...structuredClone(ev.event), room_id: roomId });
    });
    this.ready = new Promise((resolve, reject) => {
      c.on(sdk.ClientEvent.Sync, (state, prev, data) => {
        if (state === 'PREPARED') resolve();
        // After a failed /sync the SDK polls /versions 2 to 10 s apart; poll every 500 ms instead
        // (a test homeserver that was down for a few seconds is noticed back at once).
        if ((state === 'RECONNECTING' || state === 'ERROR') && !this.#retry && this.running)
          this.#retry = setInterval(() => c.retryImmediately(), 500);
        if ((state === 'SYNCING' || state === 'CATCHUP' || state === 'STOPPED') && this.#retry) {
          clearInterval(this.#retry);
          this.#retry = null;
        }
        if (state === 'ERROR' && prev === null) reject(data?.error ?? new Error('first /sync failed'));
      });
    });
    this.ready.catch(() => {});
    c.startClient({ initialSyncLimit: 100, pendingEventOrdering: sdk.PendingEventOrdering.Detached });
  }

  // Registers username (password + m.login.dummy after the 401 that lists the flows) and
  // resolves once the new user's client has synced.
  static async register(hsUrl, username, password = 'pw-' + username) {
    const anon = sdk.createClient({ baseUrl: hsUrl, logger: sdkLogger });
    let r;
    try {
      r = await anon.registerRequest({ username, password });
    } catch (e) {
      if (e.httpStatus !== 401 || !e.data?.flows) throw new Error(`register ${username}: ${e.message}`);
      r = await anon.registerRequest({ username, password, auth: { type: 'm.login.dummy', session: e.data.session } });
    }
    if (!r.access_token) throw new Error(`register ${username}: ${JSON.stringify(r)}`);
    const user = new MxUser(hsUrl, r.user_id, r.access_token, r.device_id);
    await user.ready;
    return user;
  }

  // Logs an existing user in with a password (a new device) and resolves once synced.
  static async login(hsUrl, username, password = 'pw-' + username) {
    const anon = sdk.createClient({ baseUrl: hsUrl, logger: sdkLogger });
    const r = await anon.loginRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: username }, password });
    const user = new MxUser(hsUrl, r.user_id, r.access_token, r.device_id);
    await user.ready;
    return user;
  }

  // Any client-server request, through the SDK's authenticated HTTP layer: path is the whole
  // path ("/_matrix/client/v3/..."); answers the JSON or throws an Error saying what failed.
  async req(method, path, body) {
    const [p, q] = path.split('?');
    const query = q ? Object.fromEntries(new URLSearchParams(q)) : undefined;
    try {
      return await this.client.http.authedRequest(method, p, query, body, { prefix: '' });
    } catch (e) {
      const err = new Error(`${method} ${path}: ${e.httpStatus ?? ''} ${e.data ? JSON.stringify(e.data) : e.message}`);
      Object.assign(err, { httpStatus: e.httpStatus, errcode: e.errcode, data: e.data });
      throw err;
    }
  }

  stop() {
    this.running = false;
    if (this.#retry) clearInterval(this.#retry);
    this.#retry = null;
    this.client.stopClient();
  }

  // --- sending (each resolves with the new event's id once the homeserver accepted it) ---
  // The SDK retries a failed send itself (backing off) before it gives up; then the event stays
  // NOT_SENT and blocks every later event of the room. Cancel it and throw: the caller decides
  // (sends again, with a new transaction id, as a user pressing "retry" would).
  async #sent(room, sending) {
    try {
      return (await sending).event_id;
    } catch (e) {
      for (const ev of this.client.getRoom(room)?.getPendingEvents() ?? [])
        if (ev.status === sdk.EventStatus.NOT_SENT) this.client.cancelPendingEvent(ev);
      throw e;
    }
  }
  sendEvent(room, type, content) { return this.#sent(room, this.client.sendEvent(room, type, content)); }
  // A text message; extra fields go into the content (msgtype, format, m.relates_to, ...).
  send(room, body, extra = {}) {
    return this.#sent(room, Object.keys(extra).length ? this.client.sendMessage(room, { msgtype: 'm.text', body, ...extra })
      : this.client.sendTextMessage(room, body));
  }
  sendHtml(room, body, html) { return this.#sent(room, this.client.sendHtmlMessage(room, body, html)); }
  sendNotice(room, body) { return this.#sent(room, this.client.sendNotice(room, body)); }
  reply(room, eventId, body, extra = {}) {
    return this.send(room, body, { ...extra, 'm.relates_to': { 'm.in_reply_to': { event_id: eventId } } });
  }
  edit(room, eventId, body) {
    return this.send(room, `* ${body}`, {
      'm.new_content': { msgtype: 'm.text', body },
      'm.relates_to': { rel_type: 'm.replace', event_id: eventId },
    });
  }
  react(room, eventId, key) {
    return this.sendEvent(room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: eventId, key } });
  }
  redact(room, eventId, reason) {
    return this.#sent(room, this.client.redactEvent(room, eventId, undefined, reason ? { reason } : undefined));
  }
  typing(room, on, timeoutMs = 30000) { return this.client.sendTyping(room, on, timeoutMs); }
  // An m.read receipt on eventId (the SDK's event when it has it).
  readReceipt(room, eventId, type = sdk.ReceiptType.Read) {
    const ev = this.client.getRoom(room)?.findEventById(eventId) ?? new sdk.MatrixEvent({ event_id: eventId, room_id: room });
    return this.client.sendReceipt(ev, type);
  }

  // --- rooms ---
  createRoom(opts) { return this.client.createRoom(opts).then((j) => j.room_id); }
  async join(room) { return { room_id: (await this.client.joinRoom(room)).roomId }; }
  invite(room, userId) { return this.client.invite(room, userId); }
  leave(room) { return this.client.leave(room); }
  kick(room, userId, reason) { return this.client.kick(room, userId, reason); }
  setRoomName(room, name) { return this.client.setRoomName(room, name); }
  setRoomTopic(room, topic) { return this.client.setRoomTopic(room, topic); }
  // The content of a state event, from the server (throws when there is none).
  getStateEvent(room, type, stateKey = '') { return this.client.getStateEvent(room, type, stateKey); }
  getProfile(userId) { return this.client.getProfileInfo(userId); }
  setDisplayName(name) { return this.client.setDisplayName(name); }
  room(roomId) { return this.client.getRoom(roomId); } // the SDK's Room (null when unknown)

  // --- what was received ---
  // The first timeline event matching pred (waiting for it).
  waitEvent(what, pred, ms = 20000) {
    return waitFor(what, () => this.events.find(pred), ms);
  }
  messagesIn(room) { return this.events.filter((e) => e.room_id === room && e.type === 'm.room.message'); }
}
