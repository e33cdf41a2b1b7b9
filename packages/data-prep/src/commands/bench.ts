/**
 * `smolrate-data-prep bench`: the select and image benchmarks side by side (bench.ts).
 */
import { tmpdir } from 'node:os';
import { flagNumber, flagString, parseArgs, UsageError } from '@smolrate/core';
import { runBench } from '../bench.js';

export const summary = 'benchmarks: select throughput (0.5 M and 2 M records) and image fetch/resize';

export const usage = `usage: smolrate-data-prep bench [--sizes 500000,2000000] [--k 1000] [--images 200]
            [--concurrency N] [--dir DIR] [--seed S] [--json]

  --sizes A,B     records of the generated category file, one select run per size, each in its
                  own process (default 500000,2000000)
  --k K           topK = bottomK of the select runs (default 1000)
  --images N      source images of the image bench; 0 skips it (default 200)
  --concurrency N parallel images (default: images.concurrency, 8)
  --dir DIR       scratch folder (default: the OS temp folder); everything is removed afterwards
  --json          print the results as one JSON object instead of tables

At the paper's scale: --sizes 16000000 --k 1000000 --images 0 --dir /big/scratch
(≈ 17 GB of scratch disk for the generated file).`;

const KNOWN = ['sizes', 'k', 'images', 'concurrency', 'dir', 'seed', 'json'];

function count(v: number | undefined, flag: string, min: number): number | undefined {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < min)) throw new UsageError(`--${flag} must be an integer ≥ ${min}, got ${v}`);
  return v;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ['json']);
  for (const k of Object.keys(args.flags)) if (!KNOWN.includes(k)) throw new UsageError(`unknown option --${k}`);
  const sizesText = flagString(args, 'sizes');
  const sizes = sizesText === undefined ? undefined : sizesText.split(',').map((s) => count(Number(s.replace(/_/g, '')), 'sizes', 1)!);
  const json = args.flags.json === true;
  const result = await runBench({
    sizes,
    k: count(flagNumber(args, 'k'), 'k', 0),
    images: count(flagNumber(args, 'images'), 'images', 0),
    concurrency: count(flagNumber(args, 'concurrency'), 'concurrency', 1),
    dir: flagString(args, 'dir') ?? tmpdir(),
    seed: count(flagNumber(args, 'seed'), 'seed', 0),
    print: json ? () => undefined : undefined,
  });
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  return 0;
}
