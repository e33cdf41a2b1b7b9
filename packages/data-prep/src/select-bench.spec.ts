import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openStore } from '@smolrate/core';
import { resolveDataPrepConfig } from './config.js';
import { readLines } from './line-reader.js';
import { validateRecord } from './record.js';
import { main } from './select-bench-child.js';
import { generateMetadataFile, runSelectBench } from './select-bench.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-select-bench-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('select benchmark', () => {
  it('generates valid-looking records with unique asins and a few percent of traps', async () => {
    await generateMetadataFile(join(dir, 'meta_Gen.jsonl'), 3000, { trapRate: 0.05, seed: 1 });
    const cfg = resolveDataPrepConfig();
    const asins = new Set<string>();
    let valid = 0;
    let rejected = 0;
    let n = 0;
    for await (const l of readLines(openStore(dir), 'meta_Gen.jsonl')) {
      n++;
      let raw: unknown;
      try {
        raw = JSON.parse(l.text);
      } catch {
        rejected++;
        continue;
      }
      const res = validateRecord(raw, { source: 's', line: l.line, category: 'Gen', cfg });
      if ('valid' in res) {
        valid++;
        expect(asins.has(res.valid.parent_asin)).toBe(false);
        asins.add(res.valid.parent_asin);
      } else if (res.reject.reason !== 'too_few_ratings' && res.reject.reason !== 'no_main_image') {
        rejected++;
      }
    }
    expect(n).toBe(3000);
    expect(rejected / n).toBeGreaterThan(0.03);
    expect(rejected / n).toBeLessThan(0.07);
    expect(valid / n).toBeGreaterThan(0.6);
  });

  it('runs a small pass, reports consistent figures, cleans up; the child entry point prints them', async () => {
    const r = await runSelectBench({ records: 4000, k: 50, dir, seed: 2 });
    expect(r.read).toBe(4000);
    expect(r.kept).toBe(100);
    expect(r.read).toBe(r.kept + Object.values(r.rejected).reduce((a, b) => a + b, 0));
    expect(r.rejected.malformed_json).toBeGreaterThan(0);
    expect(r.fileBytes).toBeGreaterThan(4000 * 500);
    expect(r.peakRssMiB).toBeGreaterThanOrEqual(r.baselineRssMiB);
    expect(r.recordsPerSecond).toBeGreaterThan(0);
    expect((await readdir(dir)).filter((f) => f.startsWith('select-bench-'))).toEqual([]);

    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      const out = await main(['--records', '500', '--k', '5', '--dir', dir]);
      expect(out.kept).toBe(10);
      expect(JSON.parse(String(write.mock.calls[0][0]))).toEqual(out);
    } finally {
      write.mockRestore();
    }
    await expect(main(['--records', '0', '--dir', dir])).rejects.toThrow('--records');
  });
});
