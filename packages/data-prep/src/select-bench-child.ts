/**
 * One selection benchmark run in this process, for a parent that runs each size in a fresh child
 * (so RSS figures are not polluted by an earlier run): `node select-bench-child.js --records
 * 500000 --k 1000 --dir /tmp/x [--trap-rate 0.03] [--seed 0]`. Prints the SelectBenchResult as
 * one JSON line on stdout. `main` can also be imported and called with the arguments.
 */
import { realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { flagNumber, flagString, parseArgs, reportError, UsageError } from '@smolrate/core';
import { runSelectBench, type SelectBenchResult } from './select-bench.js';

export async function main(argv: string[] = process.argv.slice(2)): Promise<SelectBenchResult> {
  const args = parseArgs(argv);
  const records = flagNumber(args, 'records', 500_000)!;
  const k = flagNumber(args, 'k', 1000)!;
  if (!Number.isSafeInteger(records) || records < 1) throw new UsageError(`--records must be a positive integer, got ${records}`);
  if (!Number.isSafeInteger(k) || k < 0) throw new UsageError(`--k must be a non-negative integer, got ${k}`);
  const result = await runSelectBench({
    records,
    k,
    dir: flagString(args, 'dir', tmpdir())!,
    trapRate: flagNumber(args, 'trapRate'),
    seed: flagNumber(args, 'seed'),
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
  return result;
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main().catch((e: unknown) => {
    process.exitCode = reportError('select-bench', e);
  });
}
