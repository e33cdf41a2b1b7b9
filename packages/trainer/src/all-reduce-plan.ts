/**
 * How a buffer is cut for the reduce-scatter + all-gather, and the arithmetic of the mean.
 *
 * The N·chunk layout: the buffer is split into N contiguous segments (rank s owns segment s,
 * segment sizes differ by at most one element), each segment into chunks of at most
 * `chunkBytes` (one Redis value each).
 *
 * The mean is the float32 sum in rank order 0..N−1 divided by N: acc = x₀; acc = fl(acc + xₖ) for
 * k = 1..N−1; mean = fl(acc / N). Every `fl` is a float32 rounding — a JS double operation
 * stored into a Float32Array is the correctly rounded float32 result, because a double holds
 * more than 2·24 + 2 bits (no double-rounding error for + and /). PyTorch DDP pre-divides
 * (fl(xₖ / N) summed) to avoid fp16 overflow; in float32 post-division is one rounding fewer and
 * exact for a power-of-two N. One owner computes each element once and everyone copies its bytes,
 * so all ranks hold identical results whatever the order of arrival.
 */
import { CollectiveError } from '@smolrate/core';
import { meanInRankOrderKernel } from './reduce-kernel.js';

export interface AllReducePlan {
  readonly length: number;
  readonly worldSize: number;
  /** Elements per chunk (chunkBytes / 4). */
  readonly chunkElems: number;
  /** First element of segment s (s = 0..N; the last entry is `length`). */
  readonly segmentStart: readonly number[];
  /** Number of chunks of segment s (0 for an empty segment). */
  chunks(segment: number): number;
  /** [lo, hi) element range of chunk c of segment s. */
  chunkRange(segment: number, chunk: number): [number, number];
}

export function planAllReduce(length: number, worldSize: number, chunkBytes: number): AllReducePlan {
  const chunkElems = Math.floor(chunkBytes / 4);
  if (chunkElems < 1) throw new CollectiveError(`allReduceMean: chunkBytes must be at least 4, got ${chunkBytes}`);
  const segmentStart: number[] = [];
  for (let s = 0; s <= worldSize; s++) segmentStart.push(Math.floor((s * length) / worldSize));
  return {
    length,
    worldSize,
    chunkElems,
    segmentStart,
    chunks: (s) => Math.ceil((segmentStart[s + 1] - segmentStart[s]) / chunkElems),
    chunkRange: (s, c) => {
      const lo = segmentStart[s] + c * chunkElems;
      return [lo, Math.min(lo + chunkElems, segmentStart[s + 1])];
    },
  };
}

/**
 * out = fl(Σ parts[k] in order k = 0..N−1) / N, element-wise, in float32 (see the file comment),
 * in one pass: each element is read from every part before it is written, so `out` may be any of
 * the parts.
 */
export function meanInRankOrder(parts: readonly Float32Array[], out: Float32Array): Float32Array {
  const n = parts.length;
  const len = out.length;
  for (let k = 0; k < n; k++) {
    if (parts[k].length !== len) {
      throw new CollectiveError(`allReduceMean: part ${k} has ${parts[k].length} elements, expected ${len}`);
    }
  }
  if (n === 1) {
    if (parts[0] !== out) out.set(parts[0]);
  } else meanInRankOrderKernel(parts, out); // the float32 arithmetic above, in WebAssembly SIMD
  return out;
}
