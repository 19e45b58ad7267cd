// Writes a seed corpus for the fuzz targets from the golden vectors:
//   node tests/fuzz/seed_corpus.mjs OUTDIR
// OUTDIR/binary/: every vector's bytes as a frame payload (flag 0), and some deflated (flag 2).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';

const out = process.argv[2];
if (!out) { console.error('usage: seed_corpus.mjs OUTDIR'); process.exit(2); }
const vectors = join(dirname(fileURLToPath(import.meta.url)), '..', 'vectors', 'binary');
const dir = join(out, 'binary');
mkdirSync(dir, { recursive: true });
let n = 0;
for (const file of ['encode.json', 'decode.json']) {
  for (const v of JSON.parse(readFileSync(join(vectors, file), 'utf8'))) {
    if (!v.hex || v.hex.length > 8192) continue;
    const node = Buffer.from(v.hex, 'hex');
    writeFileSync(join(dir, `${v.name}`), Buffer.concat([Buffer.from([0]), node]));
    if (n % 8 === 0) writeFileSync(join(dir, `${v.name}.z`), Buffer.concat([Buffer.from([2]), deflateSync(node)]));
    n++;
  }
}
console.log(`wrote ${n} seeds to ${dir}`);

// OUTDIR/noise/: the Baileys handshake vector's messages, one per fuzz path (first byte = path)
const hs = JSON.parse(readFileSync(join(vectors, '..', 'noise', 'handshake.json'), 'utf8'));
const ndir = join(out, 'noise');
mkdirSync(ndir, { recursive: true });
const seed = (name, path, hex) => writeFileSync(join(ndir, name), Buffer.concat([Buffer.from([path]), Buffer.from(hex, 'hex')]));
seed('stream', 0, hs.client_hello_wire + hs.client_finish_wire.slice(0));
seed('server-hello', 1, hs.server_hello);
seed('chain', 2, hs.cert_chain);
seed('transport', 3, hs.server_transport_wire.slice(6));
