/**
 * ZeRO-1 partition of the trainable parameters (docs/reference/optimizer.md, "Sharded optimizer step"):
 * the flat buffer of all trainable parameters (Replica order) is cut into N contiguous segments,
 * one per rank; rank r steps only the elements of segment r and its optimizer holds state for
 * them only. The cuts fall on a parameter boundary or on a multiple of the optimizer's block
 * size inside a parameter, so every slice an 8-bit state covers starts at a block boundary of
 * the full tensor and the sharded update is bit for bit the unsharded one (adamw8bit.ts).
 */
import { ShapeError } from '@smolrate/core';

/** A parameter's place in the flat buffer. */
export interface FlatParam {
  name: string;
  /** First element in the flat buffer. */
  offset: number;
  /** Elements. */
  length: number;
}

/** The part of one parameter that a rank owns. */
export interface ShardPart {
  name: string;
  /** Index of the parameter in the list the plan was made from. */
  index: number;
  /** [flatStart, flatEnd) in the flat buffer. */
  flatStart: number;
  flatEnd: number;
  /** First owned element inside the parameter (the `TensorSlice.offset` of `stepSlice`). */
  offset: number;
  /** Elements of the whole parameter. */
  total: number;
}

export interface ZeroPlan {
  worldSize: number;
  blockSize: number;
  /** N + 1 cut points of the flat parameter buffer, 0 … size. */
  bounds: number[];
  /** Rank r's parts, in flat order (empty when its segment is empty). */
  parts: ShardPart[][];
}

/**
 * Cuts `params` (contiguous, in flat order from 0) into `worldSize` segments as close to equal
 * as the alignment allows: each cut is the ideal point r·size/N moved to the nearest block
 * boundary of its parameter (or the parameter's end).
 */
export function planZeroShards(params: readonly FlatParam[], worldSize: number, blockSize: number): ZeroPlan {
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) throw new ShapeError(`ZeRO plan: worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isSafeInteger(blockSize) || blockSize < 1) throw new ShapeError(`ZeRO plan: blockSize must be a positive integer, got ${blockSize}`);
  let size = 0;
  for (const p of params) {
    if (p.offset !== size || !Number.isSafeInteger(p.length) || p.length < 0) {
      throw new ShapeError(`ZeRO plan: parameter ${p.name} at ${p.offset} (${p.length} elements), expected it to start at ${size}`);
    }
    size += p.length;
  }
  const bounds = [0];
  let pi = 0;
  for (let r = 1; r < worldSize; r++) {
    const ideal = Math.floor((r * size) / worldSize);
    while (pi < params.length && params[pi].offset + params[pi].length <= ideal) pi++;
    let cut = size;
    if (pi < params.length) {
      const p = params[pi];
      cut = Math.min(p.offset + Math.round((ideal - p.offset) / blockSize) * blockSize, p.offset + p.length);
    }
    bounds.push(Math.max(cut, bounds[r - 1]));
  }
  bounds.push(size);
  const parts = bounds.slice(0, -1).map((lo, r) => partsOf(params, lo, bounds[r + 1]));
  return { worldSize, blockSize, bounds, parts };
}

function partsOf(params: readonly FlatParam[], lo: number, hi: number): ShardPart[] {
  const out: ShardPart[] = [];
  params.forEach((p, index) => {
    const start = Math.max(lo, p.offset);
    const end = Math.min(hi, p.offset + p.length);
    if (end > start) out.push({ name: p.name, index, flatStart: start, flatEnd: end, offset: start - p.offset, total: p.length });
  });
  return out;
}

/** The slices of a plan by parameter name, for one rank (what `sliceOptimizerState` keeps). */
export function ownedSlices(plan: ZeroPlan, rank: number): Map<string, { offset: number; length: number }> {
  return new Map(plan.parts[rank].map((p) => [p.name, { offset: p.offset, length: p.flatEnd - p.flatStart }]));
}
