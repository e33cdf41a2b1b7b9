import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatSelectBench, runBench } from './bench.js';
import type { SelectBenchResult } from './select-bench.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-bench-spec-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const row = (records: number, perCpu: number, rss: number): SelectBenchResult => ({
  records,
  k: 1000,
  fileBytes: records * 1050,
  generateSeconds: 1,
  selectSeconds: records / 100_000,
  selectCpuSeconds: records / perCpu,
  recordsPerSecond: 100_000,
  recordsPerCpuSecond: perCpu,
  megabytesPerSecond: 100,
  baselineRssMiB: 100,
  peakRssMiB: rss,
  maxRssMiB: rss,
  heapUsedMiB: 30,
  retainedHeapMiB: 12,
  read: records,
  kept: 2000,
  rejected: {},
});

describe('bench', () => {
  it('puts the select sizes side by side with the large/small ratios', () => {
    const lines = formatSelectBench([row(500_000, 80_000, 200), row(2_000_000, 76_000, 210)]);
    expect(lines[1]).toMatch(/500,000 records\s+2,000,000 records/);
    expect(lines.find((l) => l.includes('peak RSS MiB'))).toMatch(/200\s+210$/);
    expect(lines.at(-1)).toContain('records/CPU-s × 0.95, peak RSS × 1.05');
  });

  it('runs a select size in a child process and the image bench, and cleans up', async () => {
    const printed: string[] = [];
    const r = await runBench({ sizes: [1500], k: 50, images: 3, concurrency: 2, dir, print: (l) => printed.push(l) });
    expect(r.select).toHaveLength(1);
    expect(r.select[0]).toMatchObject({ records: 1500, k: 50, kept: 100 });
    expect(r.select[0].read).toBe(1500);
    // The child is another process: its RSS figures are its own.
    expect(r.select[0].peakRssMiB).toBeGreaterThan(0);
    expect(r.images).toMatchObject({ images: 3, concurrency: 2, identical: true });
    const text = printed.join('\n');
    expect(text).toMatch(/select bench: one streaming pass, K = 50/);
    expect(text).toMatch(/end-to-end \/ sharp-only: \d/);
    expect(text).toContain('--sizes 16000000 --k 1000000');
    expect(await readdir(dir)).toEqual([]);
  });
});
