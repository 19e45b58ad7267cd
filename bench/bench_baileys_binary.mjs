// The same work as bench/bench_binary.c, with Baileys 7.0.0-rc14's encoder and decoder: every node
// tree of the corpus (encode.json without encodings over 4 KB) encoded, then decoded, per round.
//   node bench/bench_baileys_binary.mjs VECTOR_DIR [SECONDS]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { B, constants, toBaileys } from '../tests/interop/binary_common.mjs';

const [dir, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg || 3);
const vectors = JSON.parse(readFileSync(join(dir, 'encode.json'), 'utf8')).filter((v) => v.hex);
const trees = vectors.map((v) => toBaileys(v.node));
const count = (n) => 1 + (Array.isArray(n.content) ? n.content.reduce((s, c) => s + count(c), 0) : 0);
const nodes = trees.reduce((s, t) => s + count(t), 0);

const round = () => {
  for (const t of trees) {
    const bytes = B.encodeBinaryNode(t);
    B.decodeDecompressedBinaryNode(bytes.subarray(1), constants, { index: 0 });
  }
};
for (let i = 0; i < 20; i++) round(); // warm up the JIT
let rounds = 0;
const start = process.hrtime.bigint();
let elapsed;
do {
  round();
  rounds++;
  elapsed = Number(process.hrtime.bigint() - start) / 1e9;
} while (elapsed < seconds);
console.log(JSON.stringify({ impl: 'baileys-7.0.0-rc14', trees: trees.length, nodes, rounds,
  ns_per_node: Number((elapsed * 1e9 / (rounds * nodes)).toFixed(1)) }));
