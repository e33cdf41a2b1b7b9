import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { probeImage } from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatImageBench, generateBenchImages, runImageBench } from './image-bench.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'smolrate-image-bench-'));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('image bench', () => {
  it('generates seeded sources of 500–1500 px', async () => {
    const a = await generateBenchImages(1, join(tmp, 'a'), 5);
    const b = await generateBenchImages(1, join(tmp, 'b'), 5);
    expect(a.map((s) => s.name)).toEqual(b.map((s) => s.name));
    expect(a.every((s, i) => s.bytes.equals(b[i].bytes))).toBe(true);
    for (const s of a) {
      expect(s.width).toBeGreaterThanOrEqual(500);
      expect(s.width).toBeLessThanOrEqual(1500);
      expect(await probeImage(s.bytes)).toMatchObject({ width: s.width, height: s.height, sourceFormat: s.format });
    }
    expect((await readdir(join(tmp, 'a'))).sort()).toEqual(a.map((s) => s.name).sort());
  });

  it('measures both paths on the same images and checks they agree', async () => {
    const lines: string[] = [];
    const r = await runImageBench({ images: 3, dir: join(tmp, 'run'), concurrency: 2, rounds: 2, print: (l) => lines.push(l) });
    expect(r.images).toBe(3);
    expect(r.sources.jpeg + r.sources.png).toBe(3);
    expect(r.endToEnd.rejects).toBe(0);
    expect(r.identical).toBe(true);
    expect(r.sharpOnly.imagesPerSec).toBeGreaterThan(0);
    expect(r.endToEnd.imagesPerSec).toBeGreaterThan(0);
    expect(r.ratio).toBeCloseTo(r.endToEnd.imagesPerSec / r.sharpOnly.imagesPerSec, 10);
    expect(r.allRounds.sharpOnly).toHaveLength(2);
    expect(r.allRounds.endToEnd).toHaveLength(2);
    expect(r.sharpOnly.seconds).toBe(Math.min(...r.allRounds.sharpOnly.map((p) => p.seconds)));
    expect(lines.length).toBe(formatImageBench(r).length);
    expect(lines.join('\n')).toMatch(/sharp only .* images\/s/);
  });
});
