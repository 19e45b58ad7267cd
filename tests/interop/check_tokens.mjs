// Checks that the token tables compiled into our C code equal those of the pinned Baileys package,
// and that our encoder's lookup maps every token to the (dictionary, index) Baileys' TOKEN_MAP gives.
//   node tests/interop/check_tokens.mjs path/to/binary_tool
import { execFileSync } from 'node:child_process';
import { constants } from './binary_common.mjs';

const tool = process.argv[2];
if (!tool) { console.error('usage: check_tokens.mjs <binary_tool>'); process.exit(2); }
const ours = JSON.parse(execFileSync(tool, ['tokens'], { maxBuffer: 1 << 26 }).toString());
let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) passed++; else { failed++; console.error('MISMATCH ' + what); } };

expect(ours.single.length === constants.SINGLE_BYTE_TOKENS.length, 'single-byte table length');
constants.SINGLE_BYTE_TOKENS.forEach((t, i) => expect(ours.single[i] === t, `single[${i}] ${ours.single[i]} != ${t}`));
expect(ours.double.length === constants.DOUBLE_BYTE_TOKENS.length, 'dictionary count');
constants.DOUBLE_BYTE_TOKENS.forEach((dict, d) => {
  expect(ours.double[d].length === dict.length, `dictionary ${d} length`);
  dict.forEach((t, i) => expect(ours.double[d][i] === t, `double[${d}][${i}] ${ours.double[d][i]} != ${t}`));
});
for (const [t, where] of Object.entries(constants.TOKEN_MAP)) {
  if (t === '') continue;
  const want = [typeof where.dict === 'number' ? where.dict : -1, where.index];
  expect(JSON.stringify(ours.lookup[t]) === JSON.stringify(want), `lookup ${t}: ${JSON.stringify(ours.lookup[t])} != ${JSON.stringify(want)}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
