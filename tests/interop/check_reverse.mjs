// The reverse direction of the golden vectors: every node of encode.json and reverse.json is encoded
// by OUR C code (binary_tool), and Baileys must decode those bytes back to the original node.
//   node tests/interop/check_reverse.mjs path/to/binary_tool
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { baileysDecode, sameNode } from './binary_common.mjs';

const tool = process.argv[2];
if (!tool) { console.error('usage: check_reverse.mjs <binary_tool>'); process.exit(2); }
const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'vectors', 'binary');
const files = ['encode.json', 'reverse.json'].map((f) => join(dir, f));
const ours = JSON.parse(execFileSync(tool, ['encode', ...files], { maxBuffer: 1 << 28 }).toString());
const originals = files.flatMap((f) => JSON.parse(readFileSync(f, 'utf8')));

// expand {"bytes_pattern": [len, step]} like test_vectors.c does
const expand = (j) => {
  const out = { tag: j.tag, attrs: j.attrs };
  if (j.content?.list) out.content = { list: j.content.list.map(expand) };
  else if (j.content?.bytes_pattern) {
    const [len, step] = j.content.bytes_pattern;
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = (i * step + 7) & 0xff;
    out.content = { bytes: b.toString('hex') };
  } else if (j.content) out.content = j.content;
  return out;
};

// "user:0@server" and "user@server" name the same device (device 0, the phone): an AD_JID with
// device 0 reads back without ":0" in every decoder, Baileys' too.
const normJid = (v) => v.replace(/^([^@:]*):0@(s\.whatsapp\.net|lid|hosted|hosted\.lid)$/, '$1@$2');
const norm = (j) => {
  const out = { tag: j.tag, attrs: j.attrs.map(([k, v]) => [k, normJid(v)]) };
  if (j.content?.list) out.content = { list: j.content.list.map(norm) };
  else if (j.content?.string !== undefined) out.content = { string: normJid(j.content.string) };
  else if (j.content) out.content = j.content;
  return out;
};

let passed = 0, failed = 0;
if (ours.length !== originals.length) {
  console.error(`binary_tool encoded ${ours.length} nodes, expected ${originals.length}`);
  process.exit(1);
}
ours.forEach(({ name, hex }, i) => {
  let why;
  try {
    why = sameNode(norm(expand(originals[i].node)), norm(baileysDecode(Buffer.from(hex, 'hex'))));
  } catch (e) {
    why = 'Baileys could not decode: ' + e.message;
  }
  if (why) { failed++; console.error(`${name}: ${why}`); } else passed++;
});
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
