/**
 * Shared by redis-collective.spec.ts and the child processes it spawns (collective-child.ts):
 * the per-rank test arrays and the reference mean, computed independently of the implementation.
 */
import { createHash } from 'node:crypto';
import { Rng } from '@smolrate/core';

/**
 * Rank `rank`'s input: values spread over 2⁻¹⁰…2¹⁰ in magnitude, so that float32 sums depend on
 * the order of addition (a wrong order or a float64 accumulation changes some elements).
 */
export function rankArray(seed: number, rank: number, length: number): Float32Array {
  const rng = new Rng(seed, 'collective-test', rank, length);
  const a = new Float32Array(length);
  for (let i = 0; i < length; i++) a[i] = (rng.next() - 0.5) * 2 ** (rng.int(21) - 10);
  return a;
}

/** fl(fl(fl(x₀ + x₁) + x₂) …) / N with an explicit Math.fround at every step. */
export function rankOrderMean(parts: Float32Array[]): Float32Array {
  const n = parts.length;
  const out = new Float32Array(parts[0].length);
  for (let i = 0; i < out.length; i++) {
    let acc = parts[0][i];
    for (let k = 1; k < n; k++) acc = Math.fround(acc + parts[k][i]);
    out[i] = Math.fround(acc / n);
  }
  return out;
}

export function sha256(bytes: ArrayBufferView): string {
  return createHash('sha256').update(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).digest('hex');
}

/** Rank `root`'s broadcast payload. */
export function payload(seed: number, length: number): Uint8Array {
  const rng = new Rng(seed, 'broadcast', length);
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = rng.int(256);
  return b;
}

/** Segment bounds where rank 0 holds twice the share of the others (and short segments can be empty). */
export function unevenBounds(length: number, worldSize: number): number[] {
  const shares = [...Array(worldSize).keys()].map((s) => (s === 0 ? 2 : 1));
  const sum = shares.reduce((a, b) => a + b, 0);
  const out = [0];
  let acc = 0;
  for (const sh of shares) {
    acc += sh;
    out.push(Math.floor((acc * length) / sum));
  }
  return out;
}

/** float32 → bfloat16 → float32, round to nearest even: written independently of grad-transport.ts. */
export function bf16Round(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  const dv = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < a.length; i++) {
    dv.setFloat32(0, a[i]);
    const bits = dv.getUint32(0);
    const hi = Number.isNaN(a[i]) ? (bits >>> 16) | 0x40 : Math.floor((bits + 0x7fff + ((bits >>> 16) & 1)) / 65536);
    dv.setUint32(0, (hi * 65536) >>> 0);
    out[i] = dv.getFloat32(0);
  }
  return out;
}
