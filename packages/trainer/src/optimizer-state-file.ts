/**
 * The `optimizer.bin` container (docs/reference/design.md "Checkpoints"): an optimizer's JSON meta plus its raw
 * state buffers in one file.
 *
 * Layout (integers little-endian):
 *
 *   offset 0   8 bytes   magic "SMOLOPT\0"
 *          8   uint32    container version (1)
 *         12   uint32    header length H
 *         16   H bytes   header, UTF-8 JSON: { meta, buffers: [{ name, kind, dtype, offset, length }] }
 *              zero bytes up to the next multiple of 64 → start of the data section D
 *              each buffer's raw little-endian bytes at D + offset (offset a multiple of 64, so every
 *              buffer can be viewed in place as a typed array), zero padding between buffers
 *   last 32 bytes        SHA-256 of every byte before it
 *
 * Equal states produce identical bytes: the header is built with a fixed key order and buffers are
 * written in the order given. Any truncation, trailing bytes, flipped bit (SHA-256) or inconsistent
 * header is a CheckpointError.
 */
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { CheckpointError, compareKeys } from '@smolrate/core';
import { resolveAdamWHyper, type AdamWHyper } from './adamw-options.js';

export type OptimizerName = 'AdamW8bit' | 'AdamW32';

/** What a parameter's state is stored as: 8-bit codes + absmax, or fp32 m and v. */
export type StateKind = '8bit' | 'fp32';

/** fp32 states: 'm', 'v'. 8-bit states: codes (uint8) and per-block absmax (float32) of each. */
export type StateBufferKind = 'm' | 'v' | 'm.codes' | 'm.absmax' | 'v.codes' | 'v.absmax';

export interface OptimizerParamMeta {
  name: string;
  kind: StateKind;
  /** Elements held by this optimizer (the slice length when sharded). */
  length: number;
  /** Updates applied so far (bias-correction t). */
  step: number;
  /** Where the held elements start in the full tensor (ZeRO slice); 0 when unsharded. */
  offset: number;
  /** Elements of the full tensor. */
  total: number;
}

export interface OptimizerStateMeta {
  optimizer: OptimizerName;
  hyper: AdamWHyper;
  /** Sorted by name. */
  params: OptimizerParamMeta[];
}

export interface OptimizerStateBuffer {
  name: string;
  kind: StateBufferKind;
  data: Uint8Array | Float32Array;
}

export interface OptimizerState {
  meta: OptimizerStateMeta;
  buffers: OptimizerStateBuffer[];
}

const MAGIC = Buffer.from('SMOLOPT\0', 'latin1');
const VERSION = 1;
const ALIGN = 64;
const DIGEST_BYTES = 32;
const PREFIX_BYTES = 16;
const BUFFER_KINDS: readonly StateBufferKind[] = ['m', 'v', 'm.codes', 'm.absmax', 'v.codes', 'v.absmax'];

interface BufferEntry {
  name: string;
  kind: StateBufferKind;
  dtype: 'uint8' | 'float32';
  offset: number;
  length: number;
}

const alignUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

function checkByteOrder(): void {
  // Typed arrays use the host byte order; the file is little-endian.
  if (endianness() !== 'LE') throw new CheckpointError('optimizer.bin: big-endian hosts are not supported');
}

/** Encodes a state into the `optimizer.bin` bytes. */
export function encodeOptimizerState(state: OptimizerState): Buffer {
  checkByteOrder();
  const entries: BufferEntry[] = [];
  let cursor = 0;
  for (const b of state.buffers) {
    const dtype = b.data instanceof Float32Array ? 'float32' : 'uint8';
    entries.push({ name: b.name, kind: b.kind, dtype, offset: cursor, length: b.data.length });
    cursor = alignUp(cursor + b.data.byteLength);
  }
  const header = Buffer.from(JSON.stringify({ meta: state.meta, buffers: entries }), 'utf8');
  const dataStart = alignUp(PREFIX_BYTES + header.length);
  const total = dataStart + cursor + DIGEST_BYTES;
  const out = Buffer.alloc(total); // zero-filled: padding bytes are deterministic
  MAGIC.copy(out, 0);
  out.writeUInt32LE(VERSION, 8);
  out.writeUInt32LE(header.length, 12);
  header.copy(out, PREFIX_BYTES);
  state.buffers.forEach((b, i) => {
    out.set(new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength), dataStart + entries[i].offset);
  });
  createHash('sha256').update(out.subarray(0, total - DIGEST_BYTES)).digest().copy(out, total - DIGEST_BYTES);
  return out;
}

function fail(message: string, cause?: unknown): never {
  throw new CheckpointError(`optimizer.bin: ${message}`, cause === undefined ? undefined : { cause });
}

/** Decodes `optimizer.bin` bytes; the returned buffers are fresh copies. */
export function decodeOptimizerState(buf: Uint8Array): OptimizerState {
  checkByteOrder();
  const bytes = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (bytes.length < PREFIX_BYTES + DIGEST_BYTES) fail(`truncated: ${bytes.length} bytes`);
  if (!bytes.subarray(0, 8).equals(MAGIC)) fail('bad magic (not an optimizer state file)');
  const version = bytes.readUInt32LE(8);
  if (version !== VERSION) fail(`unsupported version ${version}, expected ${VERSION}`);
  const headerLength = bytes.readUInt32LE(12);
  const dataStart = alignUp(PREFIX_BYTES + headerLength);
  if (dataStart + DIGEST_BYTES > bytes.length) fail(`truncated: header of ${headerLength} bytes does not fit`);
  const digest = createHash('sha256').update(bytes.subarray(0, bytes.length - DIGEST_BYTES)).digest();
  if (!digest.equals(bytes.subarray(bytes.length - DIGEST_BYTES))) fail('SHA-256 mismatch (corrupted or truncated)');

  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength).toString('utf8'));
  } catch (e) {
    fail('header is not valid JSON', e);
  }
  const { meta, buffers } = parsed as { meta?: unknown; buffers?: unknown };
  if (typeof meta !== 'object' || meta === null || !Array.isArray(buffers)) fail('header lacks meta or buffers');

  const dataEnd = bytes.length - DIGEST_BYTES;
  let expectedCursor = 0;
  const out: OptimizerStateBuffer[] = [];
  for (const [i, raw] of (buffers as unknown[]).entries()) {
    const e = raw as Partial<BufferEntry>;
    if (
      typeof e !== 'object' ||
      e === null ||
      typeof e.name !== 'string' ||
      !BUFFER_KINDS.includes(e.kind as StateBufferKind) ||
      (e.dtype !== 'uint8' && e.dtype !== 'float32') ||
      !Number.isSafeInteger(e.offset) ||
      !Number.isSafeInteger(e.length) ||
      (e.length as number) < 0
    ) {
      fail(`buffer entry ${i} is malformed: ${JSON.stringify(raw)}`);
    }
    const bpe = e.dtype === 'float32' ? 4 : 1;
    const byteLength = e.length! * bpe;
    if (e.offset !== expectedCursor) fail(`buffer ${e.name}/${e.kind} at offset ${e.offset}, expected ${expectedCursor}`);
    const start = dataStart + e.offset!;
    if (start + byteLength > dataEnd) fail(`truncated: buffer ${e.name}/${e.kind} runs past the data section`);
    const copy = new Uint8Array(byteLength);
    copy.set(bytes.subarray(start, start + byteLength));
    out.push({
      name: e.name!,
      kind: e.kind!,
      data: e.dtype === 'float32' ? new Float32Array(copy.buffer) : copy,
    });
    expectedCursor = alignUp(e.offset! + byteLength);
  }
  if (dataStart + expectedCursor !== dataEnd) {
    fail(`size mismatch: header describes ${dataStart + expectedCursor + DIGEST_BYTES} bytes, file has ${bytes.length}`);
  }
  return { meta: meta as OptimizerStateMeta, buffers: out };
}

/** One parameter's validated meta and buffers, from `readOptimizerState`. */
export interface ParamStateRecord {
  meta: OptimizerParamMeta;
  buffers: Partial<Record<StateBufferKind, Uint8Array | Float32Array>>;
}

const KINDS_OF: Record<StateKind, ReadonlyArray<[StateBufferKind, 'uint8' | 'float32', 'elements' | 'blocks']>> = {
  fp32: [
    ['m', 'float32', 'elements'],
    ['v', 'float32', 'elements'],
  ],
  '8bit': [
    ['m.codes', 'uint8', 'elements'],
    ['m.absmax', 'float32', 'blocks'],
    ['v.codes', 'uint8', 'elements'],
    ['v.absmax', 'float32', 'blocks'],
  ],
};

/**
 * Checks that a state (from `exportState` or a decoded file) is complete and consistent for
 * `optimizer`: hyper-parameters valid, every parameter with exactly the buffers its kind needs, of
 * the right dtype and length. Returns the resolved hyper-parameters and the records by name.
 */
export function readOptimizerState(
  state: OptimizerState,
  optimizer: OptimizerName,
): { hyper: AdamWHyper; params: Map<string, ParamStateRecord> } {
  const meta = state?.meta;
  if (typeof meta !== 'object' || meta === null) fail('state has no meta');
  if (meta.optimizer !== optimizer) fail(`holds ${String(meta.optimizer)} state, expected ${optimizer}`);
  let hyper: AdamWHyper;
  try {
    hyper = resolveAdamWHyper(meta.hyper ?? {});
  } catch (e) {
    fail(`invalid hyper-parameters: ${(e as Error).message}`, e);
  }
  if (!Array.isArray(meta.params)) fail('meta.params is not an array');
  const params = new Map<string, ParamStateRecord>();
  for (const p of meta.params) {
    const ok =
      typeof p === 'object' &&
      p !== null &&
      typeof p.name === 'string' &&
      (p.kind === '8bit' || p.kind === 'fp32') &&
      Number.isSafeInteger(p.length) &&
      Number.isSafeInteger(p.step) &&
      Number.isSafeInteger(p.offset) &&
      Number.isSafeInteger(p.total) &&
      p.length >= 0 &&
      p.step >= 0 &&
      p.offset >= 0 &&
      p.offset + p.length <= p.total;
    if (!ok) fail(`malformed parameter entry ${JSON.stringify(p)}`);
    if (p.kind === '8bit' && optimizer === 'AdamW32') fail(`parameter ${p.name} has 8-bit state; AdamW32 keeps fp32 state only`);
    if (params.has(p.name)) fail(`parameter ${p.name} listed twice`);
    params.set(p.name, {
      meta: { name: p.name, kind: p.kind, length: p.length, step: p.step, offset: p.offset, total: p.total },
      buffers: {},
    });
  }
  if (!Array.isArray(state.buffers)) fail('state has no buffers');
  for (const b of state.buffers) {
    const rec = params.get(b?.name);
    if (!rec) fail(`buffer for unknown parameter ${String(b?.name)}`);
    const spec = KINDS_OF[rec.meta.kind].find(([k]) => k === b.kind);
    if (!spec) fail(`parameter ${b.name} (${rec.meta.kind}) has an unexpected buffer ${String(b.kind)}`);
    if (rec.buffers[b.kind]) fail(`parameter ${b.name} has buffer ${b.kind} twice`);
    const [, dtype, unit] = spec;
    const want = unit === 'elements' ? rec.meta.length : Math.ceil(rec.meta.length / hyper.blockSize);
    const isRightType = dtype === 'float32' ? b.data instanceof Float32Array : b.data instanceof Uint8Array;
    if (!isRightType || b.data.length !== want) {
      fail(`parameter ${b.name} buffer ${b.kind}: expected ${want} ${dtype}, got ${b.data?.length} ${b.data?.constructor?.name}`);
    }
    rec.buffers[b.kind] = b.data;
  }
  for (const rec of params.values()) {
    for (const [k] of KINDS_OF[rec.meta.kind]) {
      if (!rec.buffers[k]) fail(`parameter ${rec.meta.name} is missing buffer ${k}`);
    }
  }
  return { hyper, params };
}

/**
 * ZeRO-1 checkpoints: the states of the N ranks (each holding slices of some parameters) as the
 * one state an unsharded optimizer would hold. Per parameter, the slices are put in offset order
 * and must tile [0, total) with one kind and one step count; buffers are concatenated (8-bit
 * slices start on block boundaries, so the absmax blocks concatenate too). The result has the
 * same bytes `serialize()` of an unsharded optimizer gives after the same updates.
 */
export function mergeOptimizerStates(parts: readonly OptimizerState[], optimizer: OptimizerName): OptimizerState {
  if (parts.length === 0) fail('merge: no states');
  const read = parts.map((p) => readOptimizerState(p, optimizer));
  const hyper = read[0].hyper;
  const hyperJson = JSON.stringify(hyper);
  read.forEach((r, i) => {
    if (JSON.stringify(r.hyper) !== hyperJson) fail(`merge: shard ${i} has hyper-parameters ${JSON.stringify(r.hyper)}, shard 0 ${hyperJson}`);
  });
  const byName = new Map<string, ParamStateRecord[]>();
  for (const r of read) {
    for (const [name, rec] of r.params) {
      if (rec.meta.length === 0) continue;
      const list = byName.get(name) ?? [];
      list.push(rec);
      byName.set(name, list);
    }
  }
  const params: OptimizerParamMeta[] = [];
  const buffers: OptimizerStateBuffer[] = [];
  for (const name of [...byName.keys()].sort(compareKeys)) {
    const recs = byName.get(name)!.sort((a, b) => a.meta.offset - b.meta.offset);
    const { kind, step, total } = recs[0].meta;
    let next = 0;
    for (const r of recs) {
      if (r.meta.kind !== kind || r.meta.step !== step || r.meta.total !== total) {
        fail(`merge: parameter ${name} has slices of different kind, step or size (${JSON.stringify(recs.map((x) => x.meta))})`);
      }
      if (r.meta.offset !== next) fail(`merge: parameter ${name}: slice at ${r.meta.offset}, expected ${next} (overlap or gap)`);
      if (kind === '8bit' && r.meta.offset % hyper.blockSize !== 0) fail(`merge: parameter ${name}: 8-bit slice at ${r.meta.offset} is not block-aligned`);
      next += r.meta.length;
    }
    if (next !== total) fail(`merge: parameter ${name}: slices cover ${next} of ${total} elements`);
    params.push({ name, kind, length: total, step, offset: 0, total });
    for (const [k, dtype] of KINDS_OF[kind]) {
      const pieces = recs.map((r) => r.buffers[k]!);
      const len = pieces.reduce((a, p) => a + p.length, 0);
      const data = dtype === 'float32' ? new Float32Array(len) : new Uint8Array(len);
      let at = 0;
      for (const p of pieces) {
        data.set(p, at);
        at += p.length;
      }
      buffers.push({ name, kind: k, data });
    }
  }
  return { meta: { optimizer, hyper, params }, buffers };
}

/**
 * The part of an unsharded state a ZeRO-1 rank holds: for each parameter in `slices` (by name:
 * offset and length inside the full tensor), the elements (and 8-bit blocks) of its slice.
 * Parameters not in `slices` are left out; every one in it that has state must be unsharded in
 * `state` (offset 0, length = total). Works for any world size: the cut is made on load.
 */
export function sliceOptimizerState(
  state: OptimizerState,
  optimizer: OptimizerName,
  slices: ReadonlyMap<string, { offset: number; length: number }>,
): OptimizerState {
  const { hyper, params } = readOptimizerState(state, optimizer);
  const metas: OptimizerParamMeta[] = [];
  const buffers: OptimizerStateBuffer[] = [];
  for (const name of [...params.keys()].sort(compareKeys)) {
    const want = slices.get(name);
    if (want === undefined) continue;
    const { meta, buffers: bufs } = params.get(name)!;
    if (meta.offset !== 0 || meta.length !== meta.total) fail(`slice: parameter ${name} is itself a slice (${meta.offset}+${meta.length} of ${meta.total})`);
    const end = want.offset + want.length;
    if (want.offset < 0 || end > meta.total) fail(`slice: [${want.offset}, ${end}) is outside parameter ${name} of ${meta.total} elements`);
    if (meta.kind === '8bit' && (want.offset % hyper.blockSize !== 0 || (end !== meta.total && end % hyper.blockSize !== 0))) {
      fail(`slice: [${want.offset}, ${end}) of ${name} is not aligned to blockSize ${hyper.blockSize}`);
    }
    metas.push({ ...meta, length: want.length, offset: want.offset });
    for (const [k, , unit] of KINDS_OF[meta.kind]) {
      const src = bufs[k]!;
      const [lo, hi] = unit === 'elements' ? [want.offset, end] : [want.offset / hyper.blockSize, Math.ceil(end / hyper.blockSize)];
      buffers.push({ name, kind: k, data: src.slice(lo, hi) });
    }
  }
  return { meta: { optimizer, hyper, params: metas }, buffers };
}
