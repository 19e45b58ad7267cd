// Shared helpers of the binary-codec interop scripts: the JSON form of a node that the C tests read
// (tests/unit/test_vectors.c) and conversions to and from Baileys' BinaryNode objects.
//
// JSON node: {"tag": "iq", "attrs": [["id", "1"], ...], "content": {"list": [...]} | {"bytes": "hex"}
//             | {"string": "..."}}  (no "content" key: the node has none)
import * as B from '@whiskeysockets/baileys/lib/WABinary/index.js';
import * as constants from '@whiskeysockets/baileys/lib/WABinary/constants.js';

export { B, constants };

export function toBaileys(j) {
  const node = { tag: j.tag, attrs: Object.fromEntries(j.attrs) };
  if (j.content) {
    if ('list' in j.content) node.content = j.content.list.map(toBaileys);
    else if ('bytes' in j.content) node.content = Buffer.from(j.content.bytes, 'hex');
    else node.content = j.content.string;
  }
  return node;
}

export function fromBaileys(n) {
  const j = { tag: n.tag, attrs: Object.entries(n.attrs) };
  if (Array.isArray(n.content)) j.content = { list: n.content.map(fromBaileys) };
  else if (Buffer.isBuffer(n.content) || n.content instanceof Uint8Array)
    j.content = { bytes: Buffer.from(n.content).toString('hex') };
  else if (typeof n.content === 'string') j.content = { string: n.content };
  return j;
}

// Baileys' encoding without the leading frame flag byte.
export function baileysEncode(j) {
  return B.encodeBinaryNode(toBaileys(j)).subarray(1);
}

export function baileysDecode(bytes) {
  return fromBaileys(B.decodeDecompressedBinaryNode(Buffer.from(bytes), constants, { index: 0 }));
}

// Equality of two JSON nodes where a string and the bytes of its UTF-8 encoding count as equal
// content: a raw string goes on the wire as BINARY_n and any decoder gives it back as bytes.
export function sameNode(a, b, path = a.tag) {
  if (a.tag !== b.tag) return `${path}: tag ${a.tag} != ${b.tag}`;
  if (JSON.stringify(a.attrs) !== JSON.stringify(b.attrs))
    return `${path}: attrs ${JSON.stringify(a.attrs)} != ${JSON.stringify(b.attrs)}`;
  const ka = a.content ? Object.keys(a.content)[0] : 'none';
  const kb = b.content ? Object.keys(b.content)[0] : 'none';
  if (ka === 'list' || kb === 'list') {
    if (ka !== kb) return `${path}: content ${ka} != ${kb}`;
    if (a.content.list.length !== b.content.list.length) return `${path}: child count differs`;
    for (let i = 0; i < a.content.list.length; i++) {
      const r = sameNode(a.content.list[i], b.content.list[i], `${path}/${i}`);
      if (r) return r;
    }
    return null;
  }
  const bytesOf = (c, k) =>
    k === 'none' ? null : k === 'bytes' ? c.bytes : Buffer.from(c.string, 'utf8').toString('hex');
  if (bytesOf(a.content, ka) !== bytesOf(b.content, kb)) return `${path}: content differs`;
  return null;
}
