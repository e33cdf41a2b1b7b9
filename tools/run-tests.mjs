#!/usr/bin/env node
// The README's test command: runs the whole workspace's Vitest suite once and ends with a plain
// "N passed, N failed" line (read by CI). Extra arguments go to vitest (e.g. a project filter).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'smolrate-tests-'));
const report = join(dir, 'vitest.json');
const args = ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)];
const res = spawnSync('npx', args, { stdio: 'inherit', env: { ...process.env, NX_DAEMON: 'false' } });
let code = res.status ?? 1;
if (existsSync(report)) {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  const passed = r.numPassedTests ?? 0;
  const failed = (r.numFailedTests ?? 0) + (r.numFailedTestSuites ?? 0);
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
  if (passed === 0) {
    console.error('no test was executed');
    code = code || 1;
  }
} else {
  console.error('vitest wrote no report');
  code = code || 1;
}
rmSync(dir, { recursive: true, force: true });
process.exit(code);
