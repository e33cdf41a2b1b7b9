/**
 * The reduce kernel against the float32 definition of the mean (tests/collective-fixtures.ts
 * `rankOrderMean`, an explicit Math.fround at every step): byte-identical for 2–5 parts, odd
 * lengths (the scalar tail), pieces of several sizes, subnormals, ±0, ±Inf and NaN; and the
 * committed .wasm binaries are what tools/build-wasm.mjs builds from the sources.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { rankArray, rankOrderMean } from '../tests/collective-fixtures.js';
import { meanInRankOrder } from './all-reduce-plan.js';
import { meanInRankOrderKernel, sumSquaresKernel } from './reduce-kernel.js';
import { kernelUrl } from './wasm-kernel.js';

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function specials(seed: number, len: number): Float32Array {
  const rng = new Rng(seed, 'specials');
  const pool = [0, -0, Infinity, -Infinity, NaN, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, -3.4028235e38, 1, -1, 1 / 3];
  const a = rankArray(seed, 0, len);
  for (let i = 0; i < len; i++) if (rng.next() < 0.3) a[i] = pool[rng.int(pool.length)];
  return a;
}

describe('meanInRankOrderKernel', () => {
  it('equals the float32 rank-order mean byte for byte: 2–5 parts, odd lengths, several pieces, special values', () => {
    for (const n of [2, 3, 4, 5]) {
      for (const len of [1, 3, 4, 7, 16384, 16385, 40_003]) {
        const parts = [...Array(n).keys()].map((k) => (k % 2 === 0 ? rankArray(len, k, len) : specials(len + k, len)));
        const want = rankOrderMean(parts);
        const out = new Float32Array(len);
        meanInRankOrderKernel(parts, out);
        expect(bytes(out).equals(bytes(want)), `n=${n} len=${len}`).toBe(true);
        // In place into one of the parts, as the data plane does.
        const copy = parts.map((p) => p.slice());
        meanInRankOrder(copy, copy[1]);
        expect(bytes(copy[1]).equals(bytes(want)), `in place n=${n} len=${len}`).toBe(true);
      }
    }
  });

  it('the subnormal case that a multiply-by-reciprocal or a flush-to-zero would get wrong', () => {
    const a = new Float32Array([1e-45, 3e-45, -1e-45, 1.4e-45]);
    const b = new Float32Array([0, 0, 0, 1.4e-45]);
    const c = new Float32Array([1e-45, 0, 0, 0]);
    const out = new Float32Array(4);
    meanInRankOrderKernel([a, b, c], out);
    expect(bytes(out).equals(bytes(rankOrderMean([a, b, c])))).toBe(true);
    expect(out[0]).toBeGreaterThan(0); // 2·2⁻¹⁴⁹ / 3 rounds to 2⁻¹⁴⁹, not to 0
  });
});

describe('the committed kernel binaries', () => {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  let hasAsc = true;
  try {
    createRequire(import.meta.url).resolve('assemblyscript/package.json');
  } catch {
    hasAsc = false;
  }
  // Without the devDependency (a production install) the binaries cannot be rebuilt here.
  it.skipIf(!hasAsc)('are what tools/build-wasm.mjs builds from packages/trainer/assembly/*.ts', () => {
    const dir = mkdtempSync(join(tmpdir(), 'trainer-kernels-'));
    try {
      const res = spawnSync(process.execPath, [join(root, 'tools/build-wasm.mjs'), '--out-dir', dir], { cwd: root, encoding: 'utf8' });
      expect(res.status, res.stderr).toBe(0);
      for (const name of ['adamw-kernel', 'reduce-kernel']) {
        expect(
          Buffer.compare(readFileSync(join(dir, `${name}.wasm`)), readFileSync(kernelUrl(name))),
          `packages/trainer/wasm/${name}.wasm is stale: run \`npm run build:wasm\` and commit the result`,
        ).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The JS definition: four float64 running sums over lanes j mod 4, the tail into the first. */
function sumSquaresJs(x: Float32Array): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 4 <= x.length; i += 4) {
    s0 += x[i] * x[i];
    s1 += x[i + 1] * x[i + 1];
    s2 += x[i + 2] * x[i + 2];
    s3 += x[i + 3] * x[i + 3];
  }
  for (; i < x.length; i++) s0 += x[i] * x[i];
  return s0 + s1 + (s2 + s3);
}

describe('sumSquaresKernel', () => {
  it('equals the four-lane float64 JS sum exactly, for every length, offset and piece count; close to the plain sum', () => {
    const x = rankArray(5, 0, 70_001);
    for (const [lo, hi] of [[0, 70_001], [1, 70_000], [3, 16_390], [5, 6], [7, 7], [2, 11], [0, 32_768]]) {
      const got = sumSquaresKernel(x, lo, hi);
      expect(got).toBe(sumSquaresJs(x.slice(lo, hi)));
      let plain = 0;
      for (let i = lo; i < hi; i++) plain += x[i] * x[i];
      expect(Math.abs(got - plain)).toBeLessThanOrEqual(1e-13 * plain);
    }
    expect(sumSquaresKernel(new Float32Array([3, 4]))).toBe(25);
    expect(sumSquaresKernel(new Float32Array([1, NaN, 2]))).toBeNaN();
    expect(sumSquaresKernel(new Float32Array(0))).toBe(0);
  });
});
