// Writes the golden vectors of the binary node codec, made by Baileys 7.0.0-rc14 (pinned):
//
//   tests/vectors/binary/encode.json   nodes, Baileys' encoding (hex, no flag byte) and Baileys'
//                                      decoding of those bytes; C must produce the same bytes and,
//                                      from the bytes, the same tree (test_vectors.c)
//   tests/vectors/binary/decode.json   byte strings in forms Baileys never writes (FB_JID, INTEROP_JID,
//                                      AD_JID device 0, non-minimal lengths) and Baileys' tree for them
//   tests/vectors/binary/reverse.json  nodes Baileys cannot encode correctly (msgr and interop JIDs):
//                                      C encodes them and Baileys must decode the original back
//
//   node tests/interop/gen_vectors.mjs           (re)writes the files
//   node tests/interop/gen_vectors.mjs --check   exits 1 if the committed files differ
//
// Everything is deterministic (seeded PRNG) so the files only change when this script does.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants, baileysEncode, baileysDecode } from './binary_common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, '..', 'vectors', 'binary');

// --- a small deterministic PRNG (xorshift32) ---
let seed = 0x9e3779b9;
const rnd = () => {
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed / 0x100000000;
};
const pick = (arr) => arr[Math.floor(rnd() * arr.length)];
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const bytesHex = (n, fill) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = fill === undefined ? int(0, 255) : (i * fill + 7) & 0xff;
  return b.toString('hex');
};

const N = (tag, attrs = {}, content) => {
  const j = { tag, attrs: Object.entries(attrs) };
  if (content !== undefined) {
    if (Array.isArray(content)) j.content = { list: content };
    else if (typeof content === 'string') j.content = { string: content };
    else j.content = { bytes: content.hex };
  }
  return j;
};
const bytes = (hex) => ({ hex });

const SINGLE = constants.SINGLE_BYTE_TOKENS;
const DOUBLE = constants.DOUBLE_BYTE_TOKENS;
// Baileys looks strings up in a plain object: names of Object.prototype would be taken as tokens.
const PROTO_NAMES = new Set(Object.getOwnPropertyNames(Object.prototype));

const encode = [];
const add = (name, node) => encode.push({ name, node });

// 1. Realistic stanzas (shapes from the protocol transcripts).
add('iq-count', N('iq', { id: '1234.5678-1', to: '@s.whatsapp.net', type: 'get', xmlns: 'encrypt' }, [N('count')]));
add('iq-count-result', N('iq', { from: 's.whatsapp.net', type: 'result', id: '55032.41608-1' }, [N('count', { value: '0' })]));
add('ping', N('iq', { id: '55032.41608-9', to: 's.whatsapp.net', type: 'get', xmlns: 'w:p' }, [N('ping')]));
add('passive-active', N('iq', { id: '1.2-3', to: 's.whatsapp.net', type: 'set', xmlns: 'passive' }, [N('active')]));
add('pair-device', N('iq', { from: 's.whatsapp.net', type: 'set', id: 'pd-1', xmlns: 'md' }, [
  N('pair-device', {}, [1, 2, 3, 4, 5, 6].map((i) => N('ref', {}, bytes(Buffer.from(`2@simref${i}${bytesHex(12)}`).toString('hex'))))),
]));
add('pair-success', N('iq', { from: 's.whatsapp.net', type: 'set', id: 'ps-1', xmlns: 'md' }, [
  N('pair-success', {}, [
    N('device-identity', {}, bytes(bytesHex(115))),
    N('platform', { name: 'smba' }),
    N('device', { jid: '15550000001:1@s.whatsapp.net', lid: '100000000000001:1@lid' }),
    N('biz', { name: 'Acme Ltd' }),
  ]),
]));
add('pair-device-sign', N('iq', { to: '@s.whatsapp.net', type: 'result', id: 'ps-1' }, [
  N('pair-device-sign', {}, [N('device-identity', { 'key-index': '1' }, bytes(bytesHex(140)))]),
]));
add('stream-error-515', N('stream:error', { code: '515' }));
add('stream-error-conflict', N('stream:error', {}, [N('conflict', { type: 'replaced' })]));
add('success', N('success', { t: '1795655111', props: '1', lid: '100000000000001:1@lid', creation: '1700000000', location: 'sim', abprops: '1' }));
add('failure', N('failure', { reason: '401', location: 'frc' }));
add('ib-offline', N('ib', {}, [N('offline', { count: '0' })]));
add('ib-unified-session', N('ib', {}, [N('unified_session', { id: '263111298' })]));
add('prekey-upload', N('iq', { xmlns: 'encrypt', type: 'set', to: '@s.whatsapp.net', id: '55032.41608-2' }, [
  N('registration', {}, bytes('0000003f')),
  N('type', {}, bytes('05')),
  N('identity', {}, bytes(bytesHex(32))),
  N('list', {}, Array.from({ length: 30 }, (_, i) =>
    N('key', {}, [N('id', {}, bytes((i + 1).toString(16).padStart(6, '0'))), N('value', {}, bytes(bytesHex(32)))]))),
  N('skey', {}, [N('id', {}, bytes('000001')), N('value', {}, bytes(bytesHex(32))), N('signature', {}, bytes(bytesHex(64)))]),
]));
add('usync-query', N('iq', { to: 's.whatsapp.net', type: 'get', xmlns: 'usync', id: '3.4-5' }, [
  N('usync', { context: 'message', mode: 'query', sid: '1700000000000-123456', last: 'true', index: '0' }, [
    N('query', {}, [N('devices', { version: '2' }), N('lid')]),
    N('list', {}, [N('user', { jid: '15551234567@s.whatsapp.net' }), N('user', { jid: '15550000001@s.whatsapp.net' })]),
  ]),
]));
add('usync-result', N('iq', { from: 's.whatsapp.net', type: 'result', id: '3.4-5' }, [
  N('usync', {}, [N('list', {}, [N('user', { jid: '15551234567@s.whatsapp.net' }, [
    N('devices', {}, [N('device-list', {}, [N('device', { id: '0' }), N('device', { id: '3', 'key-index': '2' })]),
      N('key-index-list', { ts: '1700000000' }, bytes(bytesHex(60)))]),
    N('lid', { val: '123456789012345@lid' }),
  ])])]),
]));
add('message-pkmsg', N('message', { id: '3EB0A1B2C3D4E5F60718', to: '15551234567@s.whatsapp.net', type: 'text' }, [
  N('participants', {}, [
    N('to', { jid: '15551234567@s.whatsapp.net' }, [N('enc', { v: '2', type: 'pkmsg' }, bytes(bytesHex(220)))]),
    N('to', { jid: '15551234567:3@s.whatsapp.net' }, [N('enc', { v: '2', type: 'msg' }, bytes(bytesHex(90)))]),
    N('to', { jid: '15550000001:2@s.whatsapp.net' }, [N('enc', { v: '2', type: 'pkmsg' }, bytes(bytesHex(260)))]),
  ]),
  N('device-identity', {}, bytes(bytesHex(140))),
]));
add('message-in', N('message', { from: '15551234567@s.whatsapp.net', id: '3EB0A1B2C3D4E5F60719', t: '1795655200', type: 'text', notify: 'Alice' }, [
  N('enc', { v: '2', type: 'msg' }, bytes(bytesHex(48))),
]));
add('message-group', N('message', { from: '120363041234567890@g.us', participant: '123456789012345:2@lid', id: 'ABCDEF', t: '1795655201', type: 'text' }, [
  N('enc', { v: '2', type: 'skmsg' }, bytes(bytesHex(64))),
]));
add('receipt-read', N('receipt', { id: '3EB0A1B2C3D4E5F60718', to: '15551234567@s.whatsapp.net', type: 'read', t: '1795655300' }, [
  N('list', {}, [N('item', { id: '3EB0A1B2C3D4E5F60717' }), N('item', { id: '3EB0A1B2C3D4E5F60716' })]),
]));
add('receipt-retry', N('receipt', { id: 'AB12', to: '15551234567@s.whatsapp.net', type: 'retry' }, [
  N('retry', { count: '2', id: 'AB12', t: '1795655300', v: '1' }),
  N('registration', {}, bytes('0000003f')),
]));
add('ack-message', N('ack', { class: 'message', id: '3EB0A1B2C3D4E5F60718', to: '15551234567@s.whatsapp.net' }));
add('ack-receipt', N('ack', { class: 'receipt', id: '3EB0A1B2C3D4E5F60718', type: 'read', from: '15551234567@s.whatsapp.net' }));
add('presence', N('presence', { type: 'available', name: 'Bridge User' }));
add('chatstate', N('chatstate', { to: '15551234567@s.whatsapp.net' }, [N('composing', { media: 'audio' })]));
add('notification-devices', N('notification', { from: '15551234567@s.whatsapp.net', type: 'devices', id: '99', t: '1795655400' }, [
  N('add', {}, [N('device', { jid: '15551234567:4@s.whatsapp.net', 'key-index': '3' })]),
]));
add('notification-group', N('notification', { from: '120363041234567890@g.us', type: 'w:gp2', id: '100', participant: '15551234567@s.whatsapp.net', t: '1795655401' }, [
  N('remove', {}, [N('participant', { jid: '15550000002@s.whatsapp.net' })]),
]));
add('media-conn', N('iq', { id: '1.1-1', to: 's.whatsapp.net', type: 'set', xmlns: 'w:m' }, [N('media_conn')]));
add('app-state', N('iq', { id: '1.1-2', to: 's.whatsapp.net', type: 'set', xmlns: 'w:sync:app:state' }, [
  N('sync', {}, ['critical_block', 'critical_unblock_low', 'regular', 'regular_high', 'regular_low'].map((name) =>
    N('collection', { name, version: '0', return_snapshot: 'true' }))),
]));
add('group-create', N('iq', { id: '1.1-3', to: '@g.us', type: 'set', xmlns: 'w:g2' }, [
  N('create', { subject: 'Weekend 🌞 plans', key: '3EB0FFFF' }, [
    N('participant', { jid: '15551234567@s.whatsapp.net' }), N('participant', { jid: '15550000002@s.whatsapp.net' }),
  ]),
]));

// 2. Every single-byte token, as tags and attribute keys and values.
for (let start = 1; start < SINGLE.length; start += 24) {
  const toks = SINGLE.slice(start, start + 24).filter((t) => t && !PROTO_NAMES.has(t));
  const attrs = {};
  for (let i = 0; i + 1 < toks.length; i += 2) if (!/^\d+$/.test(toks[i])) attrs[toks[i]] = toks[i + 1];
  add(`tokens-single-${start}`, N(toks[0], attrs, toks.slice(0, 6).filter((t) => !/^\d+$/.test(t) && t !== 'stream:error').map((t) => N(t))));
}
// 3. Every double-byte token of the four dictionaries, as attribute values and string content.
for (let d = 0; d < DOUBLE.length; d++) {
  for (let start = 0; start < 256; start += 32) {
    const toks = DOUBLE[d].slice(start, start + 32).filter((t) => !PROTO_NAMES.has(t));
    const children = toks.map((t, i) => N('item', { v: t }, toks[(i + 1) % toks.length]));
    add(`tokens-double-${d}-${start}`, N(toks[0], {}, children));
  }
}

// 4. JIDs of every kind Baileys encodes faithfully, as attribute values and as string content.
const JIDS = [
  '15551234567@s.whatsapp.net', '15551234567:3@s.whatsapp.net', '15551234567:0@s.whatsapp.net',
  '15551234567:255@s.whatsapp.net', '123456789012345@lid', '123456789012345:2@lid', '123456789012345:0@lid',
  '15551234567:99@hosted', '15551234567@hosted', '123456789:99@hosted.lid', '120363041234567890@g.us',
  '15551234567-1600000000@g.us', 'status@broadcast', '1600000000@broadcast', '120363012345678901@newsletter',
  '13135550002@bot', '16505361212@c.us', '0@c.us', 'server@c.us', 'ABCDEF0123456789@call',
  '@s.whatsapp.net', '@g.us', '@lid', '@broadcast', '@c.us', 's.whatsapp.net@s.whatsapp.net',
  'someone@example.org', 'x@newsletter',
];
JIDS.forEach((jid, i) => {
  add(`jid-attr-${i}`, N('message', { to: jid, id: `J${i}` }));
  add(`jid-content-${i}`, N('user', {}, jid));
});

// 5. Strings: nibbles, hex, raw, empty, unicode, long.
const STRINGS = [
  '', '0', '9', '10', '123', '-', '.', '1.2-3', '0123456789', '-.-.-.', '1'.repeat(126), '1'.repeat(127), '1'.repeat(128),
  'A', 'F', 'AB', 'ABC', 'DEADBEEF', '0123456789ABCDEF', 'F'.repeat(127), 'F'.repeat(128), 'deadbeef', 'DeadBeef',
  'G', 'hello', 'Hello, World!', 'ünïcödé ✓ 日本語 🎉', 'a"b\'c<d>&e', 'tab\tand\nnewline', ' ', 'x'.repeat(255),
  'x'.repeat(256), 'y'.repeat(4000), 'z'.repeat(70000), '1-', '.5', 'ABCDEFG', '0x1F', '3EB0A1B2C3D4E5F60718',
];
STRINGS.forEach((s, i) => {
  add(`string-attr-${i}`, N('note', { text: s }));
  add(`string-content-${i}`, N('note', {}, s));
});

// 6. Bytes of every length class.
[0, 1, 2, 100, 255, 256, 257, 4096, 65535, 65536, 1 << 20].forEach((n) =>
  add(`bytes-${n}`, N('enc', { v: '2', type: 'msg' }, bytes(bytesHex(n, 13)))));

// 7. Lists: empty, boundary sizes, attribute counts, nesting.
add('list-empty', N('list', {}, []));
[1, 2, 254, 255, 256, 1000].forEach((n) =>
  add(`list-${n}`, N('list', {}, Array.from({ length: n }, (_, i) => N('item', { id: String(i) })))));
[0, 1, 2, 63, 126, 127, 128, 200].forEach((n) => {
  const attrs = {};
  for (let i = 0; i < n; i++) attrs[`k${i}`] = `v${i}`;
  add(`attrs-${n}`, N('node', attrs));
  add(`attrs-${n}-with-content`, N('node', attrs, 'content'));
});
for (const depth of [2, 5, 10, 30, 63]) {
  let n = N('leaf', { depth: String(depth) }, bytes('00ff'));
  for (let i = 0; i < depth - 1; i++) n = N('level', { i: String(i) }, [n]);
  add(`nested-${depth}`, n);
}

// 8. Random trees mixing all of the above.
const randomString = () => {
  switch (int(0, 6)) {
    case 0: return pick(SINGLE.filter((t) => t && !PROTO_NAMES.has(t)));
    case 1: return pick(pick(DOUBLE));
    case 2: return String(int(0, 1e9));
    case 3: return bytesHex(int(1, 20)).toUpperCase();
    case 4: return pick(JIDS);
    case 5: return 'r' + Math.floor(rnd() * 1e12).toString(36);
    default: return pick(STRINGS.slice(0, 30));
  }
};
const randomKey = () => (rnd() < 0.5 ? pick(['id', 'type', 'to', 'from', 't', 'jid', 'xmlns', 'v', 'count']) : 'k' + int(0, 99));
const randomNode = (depth) => {
  const attrs = {};
  for (let i = int(0, 5); i > 0; i--) attrs[randomKey()] = randomString();
  const tag = pick(['iq', 'message', 'receipt', 'notification', 'enc', 'user', 'x-' + int(0, 9), 'device']);
  const r = rnd();
  if (depth > 0 && r < 0.4) return N(tag, attrs, Array.from({ length: int(0, 6) }, () => randomNode(depth - 1)));
  if (r < 0.6) return N(tag, attrs, bytes(bytesHex(int(0, 300))));
  if (r < 0.8) return N(tag, attrs, randomString());
  return N(tag, attrs);
};
for (let i = 0; i < 120; i++) add(`random-${i}`, randomNode(4));

// --- decode-only vectors: forms Baileys reads but never writes ---
const tok = (s) => {
  const t = constants.TOKEN_MAP[s];
  return typeof t.dict === 'number' ? [236 + t.dict, t.index] : [t.index];
};
const raw = (s) => { const b = Buffer.from(s); return [252, b.length, ...b]; };
const nib = (s) => {
  const v = (c) => (c === '-' ? 10 : c === '.' ? 11 : c.charCodeAt(0) - 48);
  const out = [255, Math.ceil(s.length / 2) | (s.length % 2 ? 0x80 : 0)];
  for (let i = 0; i < s.length; i += 2) out.push((v(s[i]) << 4) | (i + 1 < s.length ? v(s[i + 1]) : 15));
  return out;
};
const attrNode = (tag, key, value) => [248, 3, ...tok(tag), ...tok(key), ...value];
const decodeOnly = [
  ['fb-jid', attrNode('message', 'to', [246, ...nib('100012345'), 0, 7, ...raw('msgr')])],
  ['fb-jid-device-0', attrNode('message', 'to', [246, ...nib('100012345'), 0, 0, ...raw('msgr')])],
  ['interop-jid', attrNode('message', 'to', [245, ...nib('1234567'), 0, 2, 0, 5, ...raw('interop')])],
  ['interop-jid-big', attrNode('message', 'to', [245, ...nib('99'), 0x12, 0x34, 0xff, 0xff, ...raw('interop')])],
  ['ad-jid-device-0', attrNode('message', 'to', [247, 0, 0, ...nib('15551234567')])],
  ['ad-jid-lid-device-0', attrNode('message', 'to', [247, 1, 0, ...nib('123456789012345')])],
  ['ad-jid-hosted', attrNode('message', 'to', [247, 128, 9, ...nib('15551234567')])],
  ['ad-jid-hosted-lid', attrNode('message', 'to', [247, 129, 9, ...nib('123')])],
  ['ad-jid-raw-user', attrNode('message', 'to', [247, 0, 5, ...raw('15551234567')])],
  ['jid-pair-empty-user-raw', attrNode('message', 'to', [250, 252, 0, ...tok('s.whatsapp.net')])],
  ['jid-pair-tokens', attrNode('message', 'to', [250, ...tok('status'), ...tok('broadcast')])],
  ['binary20-short', [248, 2, ...tok('enc'), 253, 0, 0, 3, 1, 2, 3]],
  ['binary32-short', [248, 2, ...tok('enc'), 254, 0, 0, 0, 2, 0xaa, 0xbb]],
  ['binary20-attr', attrNode('message', 'id', [253, 0, 0, 2, 0x41, 0x42])],
  ['list16-small', [249, 0, 2, ...tok('iq'), 249, 0, 1, 248, 1, ...tok('ping')]],
  ['list8-empty-content', [248, 2, ...tok('iq'), 248, 0]],
  ['list-empty-attr-value', attrNode('iq', 'id', [0])],
  ['nibble-odd-pad', attrNode('iq', 'id', [255, 0x82, 0x12, 0x3f])],
  ['hex-odd', attrNode('iq', 'id', [251, 0x82, 0xab, 0xcf])],
  ['hex-lowercase-never', attrNode('iq', 'id', [251, 0x02, 0x0f, 0xf0])],
  ['packed-empty', attrNode('iq', 'id', [255, 0x00])],
  ['string-content-token', [248, 2, ...tok('iq'), ...tok('result')]],
  ['string-content-jid', [248, 2, ...tok('iq'), 250, ...nib('1'), ...tok('s.whatsapp.net')]],
].map(([name, arr]) => ({ name, hex: Buffer.from(arr).toString('hex'), decoded: baileysDecode(Buffer.from(arr)) }));

// --- reverse-only nodes: JIDs that only the C encoder writes in their proper binary form ---
const reverse = [
  N('message', { to: '100012345:7@msgr' }),
  N('message', { to: '100012345:0@msgr', from: '5-1234567:2@interop' }),
  N('message', { to: '65535-1:65535@interop' }),
  N('user', {}, '42:1@msgr'),
  N('user', {}, '1-42:0@interop'),
  N('participants', {}, [N('to', { jid: '100012345:7@msgr' }), N('to', { jid: '7-77:7@interop' })]),
];

// Large byte contents are written as {"bytes_pattern": [len, step]} (byte i = (i * step + 7) & 255)
// and large encodings by their SHA-256, to keep the files small; test_vectors.c expands both.
const patternOf = (hex) => {
  if (hex.length < 2048) return null;
  const b = Buffer.from(hex, 'hex');
  const step = (b[1] - b[0] + 256) & 0xff;
  for (let i = 0; i < b.length; i++) if (b[i] !== ((i * step + 7) & 0xff)) return null;
  return [b.length, step];
};
const compact = (j) => {
  const out = { tag: j.tag, attrs: j.attrs };
  if (j.content && 'list' in j.content) out.content = { list: j.content.list.map(compact) };
  else if (j.content && 'bytes' in j.content) {
    const p = patternOf(j.content.bytes);
    out.content = p ? { bytes_pattern: p } : j.content;
  } else if (j.content) out.content = j.content;
  return out;
};
const LARGE_HEX = 4096;
const files = {
  'encode.json': encode.map(({ name, node }) => {
    const enc = baileysEncode(node);
    const v = { name, node: compact(node) };
    if (enc.length * 2 > LARGE_HEX) {
      v.len = enc.length;
      v.sha256 = createHash('sha256').update(enc).digest('hex');
    } else {
      v.hex = enc.toString('hex');
    }
    v.decoded = compact(baileysDecode(enc));
    return v;
  }),
  'decode.json': decodeOnly,
  'reverse.json': reverse.map((node, i) => ({ name: `reverse-${i}`, node })),
};

mkdirSync(outDir, { recursive: true });
let stale = false;
for (const [file, data] of Object.entries(files)) {
  const text = JSON.stringify(data, null, 0).replace(/\},\{"name"/g, '},\n{"name"') + '\n';
  const path = join(outDir, file);
  if (process.argv.includes('--check')) {
    let have = '';
    try { have = readFileSync(path, 'utf8'); } catch { /* missing */ }
    if (have !== text) { console.error(`${path} differs from what Baileys gives now`); stale = true; }
  } else {
    writeFileSync(path, text);
    console.log(`wrote ${path}: ${data.length} vectors`);
  }
}
if (stale) process.exit(1);
if (process.argv.includes('--check')) console.log('binary vectors match Baileys');
