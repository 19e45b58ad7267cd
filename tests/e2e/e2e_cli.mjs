// tests/e2e/e2e_cli.mjs - the wabridge command as an admin meets it: --version, -e (an example
// config, never over an existing file), -g (tokens generated into the config, the registration
// written), and the clear one-line errors of a bad config or an unreachable database.
//   node e2e_cli.mjs WABRIDGE
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { report } from './report.mjs';

const [wabridge] = process.argv.slice(2);
const { check, finish } = report();
const run = (args, env = {}) => spawnSync(wabridge, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60000 });
const dir = mkdtempSync(join(tmpdir(), 'wabridge-cli-'));
const cfg = join(dir, 'config.yaml'), reg = join(dir, 'registration.yaml');
try {
  const v = run(['--version']);
  check(v.status === 0 && /^wabridge \d+\.\d+\.\d+/.test(v.stdout), `--version: ${v.stdout.trim()}`);
  const e = run(['-e', '-c', cfg]);
  check(e.status === 0 && existsSync(cfg), '-e writes an example config');
  const sample = readFileSync(new URL('../../config.sample.yaml', import.meta.url), 'utf8');
  check(readFileSync(cfg, 'utf8') === sample, 'the example is config.sample.yaml');
  const again = run(['-e', '-c', cfg]);
  check(again.status !== 0 && /exist/i.test(again.stderr), `-e refuses to overwrite: ${again.stderr.trim()}`);
  const noTokens = run(['-c', cfg]);
  check(noTokens.status === 1 && /-g/.test(noTokens.stderr), `running with tokens still "generate" points at -g: ${noTokens.stderr.trim()}`);
  const g = run(['-g', '-c', cfg, '-r', reg]);
  check(g.status === 0 && existsSync(reg), '-g writes the registration');
  const conf = readFileSync(cfg, 'utf8'), regText = readFileSync(reg, 'utf8');
  const tok = conf.match(/as_token:\s*"?([0-9a-f]{64})/)?.[1];
  check(tok && regText.includes(tok) && !/generate/.test(conf.match(/as_token:.*$/m)[0]), 'the generated as_token is in the config and the registration');
  const bad = conf.replace(/port: 29318/, 'port: seventy');
  writeFileSync(cfg, bad);
  const b = run(['-c', cfg]);
  check(b.status === 1 && /appservice\.port/.test(b.stderr) && b.stderr.trim().split('\n').length === 1 &&
    b.stderr.split(cfg).length === 2,
    `a bad option is one line naming it: ${b.stderr.trim()}`);
  writeFileSync(cfg, conf);
  const envBad = run(['-c', cfg], { WABRIDGE_APPSERVICE_PORT: '99999' });
  check(envBad.status === 1 && /WABRIDGE_APPSERVICE_PORT/.test(envBad.stderr), `a bad environment override names the variable: ${envBad.stderr.trim()}`);
  const db = run(['-c', cfg], { WABRIDGE_DATABASE_URI: 'host=/nonexistent-dir port=1 user=nobody dbname=x connect_timeout=2' });
  check(db.status === 1 && db.stderr.trim().split('\n').length === 1 && /^wabridge: database: cannot connect/.test(db.stderr),
    `an unreachable database is one clear line: ${db.stderr.trim().slice(0, 140)}`);
  const unk = run(['--frobnicate']);
  check(unk.status === 2 && /frobnicate/.test(unk.stderr), 'an unknown option is named, exit 2');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
finish();
