/**
 * The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]},
 * "__metadata__": {string: string}}`, then the tensor bytes; offsets are relative to the end of
 * the header. Reading follows the reference implementation's validation (offsets must tile the
 * data region exactly, in order, and match shape × dtype size) and converts everything to
 * float32: F32 as zero-copy views when aligned, BF16/F16 widened. Writing produces float32 files
 * byte-for-byte like the reference writer would for the same (sorted) tensor order.
 */
import { open } from 'node:fs/promises';
import { constants as bufferConstants } from 'node:buffer';
import { CheckpointError, compareKeys } from '@smolrate/core';
import type { StateDict } from './state-dict.js';

/** The reference implementation refuses headers above 100 MB (`MAX_HEADER_SIZE`). */
export const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';

/** Bytes per element of every dtype the format defines; only F32, BF16 and F16 are loadable. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};
const LOADABLE = new Set(['F32', 'BF16', 'F16']);

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface SafetensorsContents {
  tensors: StateDict;
  metadata: Record<string, string>;
}

interface HeaderEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

function fail(message: string, cause?: unknown): never {
  throw new CheckpointError(`safetensors: ${message}`, cause === undefined ? undefined : { cause });
}


function shapeSize(shape: readonly number[], what: string): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) fail(`${what}: shape [${shape.join(', ')}] has too many elements`);
  }
  return n;
}

function isDim(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Parses and validates the header: returns the entries sorted by offset and the metadata. */
function parseHeader(bytes: Uint8Array): { entries: HeaderEntry[]; metadata: Record<string, string>; dataStart: number } {
  if (bytes.byteLength < 8) fail(`file is ${bytes.byteLength} bytes, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n64} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  const n = Number(n64);
  if (n < 2) fail(`header length ${n} is too small for a JSON object`);
  if (8 + n > bytes.byteLength) fail(`header length ${n} runs past the end of the ${bytes.byteLength}-byte file`);

  let json: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
    // The reference parser demands that the header starts with '{' (trailing spaces are padding).
    if (!text.startsWith('{')) fail('header does not start with "{"');
    json = JSON.parse(text);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    fail(`header is not valid UTF-8 JSON: ${(e as Error).message}`, e);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('header JSON is not an object');

  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, info] of Object.entries(json as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      if (typeof info !== 'object' || info === null || Array.isArray(info)) fail('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} must be a string, got ${JSON.stringify(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    const what = `tensor "${name}"`;
    if (typeof info !== 'object' || info === null || Array.isArray(info)) fail(`${what}: entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
    if (typeof dtype !== 'string') fail(`${what}: missing or non-string "dtype"`);
    if (!(dtype in DTYPE_BYTES)) fail(`${what}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isDim)) fail(`${what}: "shape" must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isDim)) {
      fail(`${what}: "data_offsets" must be [begin, end] non-negative integers, got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(`${what}: data_offsets [${begin}, ${end}] end before they begin`);
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }

  const dataStart = 8 + n;
  const dataLength = bytes.byteLength - dataStart;
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: string | undefined;
  for (const e of entries) {
    const what = `tensor "${e.name}"`;
    if (e.end > dataLength) fail(`${what}: data_offsets [${e.begin}, ${e.end}] run past the end of the ${dataLength}-byte data section`);
    if (e.begin < cursor) fail(`${what}: data_offsets [${e.begin}, ${e.end}] overlap tensor "${prev}" (which ends at ${cursor})`);
    if (e.begin > cursor) fail(`${what}: data_offsets [${e.begin}, ${e.end}] leave a gap of ${e.begin - cursor} bytes after ${prev === undefined ? 'the header' : `tensor "${prev}"`}`);
    const expected = shapeSize(e.shape, what) * DTYPE_BYTES[e.dtype];
    if (expected !== e.end - e.begin) {
      fail(`${what}: shape [${e.shape.join(', ')}] × ${e.dtype} needs ${expected} bytes but data_offsets [${e.begin}, ${e.end}] span ${e.end - e.begin}`);
    }
    cursor = e.end;
    prev = e.name;
  }
  if (cursor !== dataLength) {
    fail(`data section is ${dataLength} bytes but the tensors cover ${cursor}${prev === undefined ? '' : ` (last: "${prev}")`}: trailing bytes`);
  }
  return { entries, metadata, dataStart };
}

let f16Table: Float32Array | undefined;

/** float16 bits → float32 (subnormals, infinities and NaN included), memoised for all 2¹⁶ values. */
function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * frac * 2 ** -24;
    else if (exp === 31) table[h] = frac === 0 ? sign * Infinity : NaN;
    else table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  f16Table = table;
  return table;
}

/** Reads `count` little-endian uint16 values starting at byte `offset` of `bytes`. */
function readU16(bytes: Uint8Array, offset: number, count: number): Uint16Array {
  const abs = bytes.byteOffset + offset;
  if (LITTLE_ENDIAN && abs % 2 === 0) return new Uint16Array(bytes.buffer, abs, count);
  const out = new Uint16Array(count);
  const view = new DataView(bytes.buffer, abs, count * 2);
  for (let i = 0; i < count; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}

function decode(bytes: Uint8Array, entry: HeaderEntry, offset: number): Float32Array {
  const count = (entry.end - entry.begin) / DTYPE_BYTES[entry.dtype];
  const abs = bytes.byteOffset + offset;
  switch (entry.dtype) {
    case 'F32': {
      if (LITTLE_ENDIAN && abs % 4 === 0) return new Float32Array(bytes.buffer, abs, count);
      if (LITTLE_ENDIAN) {
        // Unaligned: copy (note Buffer#slice would be a view, so copy through a fresh array).
        const out = new Float32Array(count);
        new Uint8Array(out.buffer).set(bytes.subarray(offset, offset + count * 4));
        return out;
      }
      const out = new Float32Array(count);
      const view = new DataView(bytes.buffer, abs, count * 4);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32: shifting the bits up is exact.
      const src = readU16(bytes, offset, count);
      const out = new Uint32Array(count);
      for (let i = 0; i < count; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    case 'F16': {
      const src = readU16(bytes, offset, count);
      const table = f16ToF32Table();
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[src[i]];
      return out;
    }
    default:
      return fail(`tensor "${entry.name}": dtype ${entry.dtype} is not supported (only F32, BF16 and F16 load as float32)`);
  }
}

/**
 * Parses a safetensors file held in memory. F32 tensors whose data is 4-byte aligned are views
 * into `bytes` (keep it alive and unmodified); everything else is copied/converted to float32.
 */
export function readSafetensors(bytes: Uint8Array): SafetensorsContents {
  const { entries, metadata, dataStart } = parseHeader(bytes);
  // Reject unsupported dtypes before converting anything, so a bad file costs no work.
  for (const e of entries) {
    if (!LOADABLE.has(e.dtype)) fail(`tensor "${e.name}": dtype ${e.dtype} is not supported (only F32, BF16 and F16 load as float32)`);
  }
  const tensors: StateDict = new Map();
  // Keep the header's key order out of it: the map is ordered by name, like the writer.
  for (const e of [...entries].sort((a, b) => compareKeys(a.name, b.name))) {
    tensors.set(e.name, { shape: e.shape, data: decode(bytes, e, dataStart + e.begin) });
  }
  return { tensors, metadata };
}

/** Reads only the header of an in-memory file: names, dtypes, shapes, offsets, metadata. */
export function readSafetensorsHeader(bytes: Uint8Array): {
  tensors: Array<{ name: string; dtype: string; shape: number[]; dataOffsets: [number, number] }>;
  metadata: Record<string, string>;
} {
  const { entries, metadata } = parseHeader(bytes);
  return { tensors: entries.map((e) => ({ name: e.name, dtype: e.dtype, shape: e.shape, dataOffsets: [e.begin, e.end] })), metadata };
}

/** Chunk size for reads: stays below the per-call limits of read(2) on every platform. */
const READ_CHUNK = 64 * 1024 * 1024;

/**
 * Reads a safetensors file into ONE buffer (no zero-fill, no intermediate chunks) and parses it;
 * F32 tensors are views into that buffer. The header is checked against the file size before the
 * buffer is allocated, so a corrupt or foreign file fails without reading the whole of it.
 */
export async function readSafetensorsFile(path: string): Promise<SafetensorsContents> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    throw new CheckpointError(`safetensors: cannot open ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const { size } = await handle.stat();
    if (size > bufferConstants.MAX_LENGTH) throw new CheckpointError(`safetensors: ${path} is ${size} bytes, larger than the largest buffer (${bufferConstants.MAX_LENGTH})`);
    if (size < 8) throw new CheckpointError(`safetensors: ${path} is ${size} bytes, shorter than the 8-byte header length`);
    // allocUnsafeSlow: a dedicated (un-pooled, byteOffset 0) buffer, so F32 data stays aligned.
    const bytes = Buffer.allocUnsafeSlow(size);
    let filled = 0;
    while (filled < size) {
      const { bytesRead } = await handle.read(bytes, filled, Math.min(READ_CHUNK, size - filled), filled);
      if (bytesRead === 0) throw new CheckpointError(`safetensors: ${path} shrank while being read (${filled} of ${size} bytes)`);
      filled += bytesRead;
      if (filled >= 8 && filled - bytesRead < 8) {
        const n = bytes.readBigUInt64LE(0);
        if (n > BigInt(size - 8)) throw new CheckpointError(`safetensors: ${path}: header length ${n} runs past the end of the ${size}-byte file`);
      }
    }
    try {
      return readSafetensors(bytes);
    } catch (e) {
      if (e instanceof CheckpointError) throw new CheckpointError(`${e.message} (file ${path})`, { cause: e });
      throw e;
    }
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(`safetensors: cannot read ${path}: ${(e as Error).message}`, { cause: e });
  } finally {
    await handle.close();
  }
}

/** One tensor to write: its data is produced only when its turn comes (a copy or a fresh init). */
export interface TensorSource {
  name: string;
  /** PyTorch shape. */
  shape: readonly number[];
  data(): Float32Array;
}

/** A state dict's tensors as sources that hand out their data as it is (no copy). */
export function stateDictSources(dict: StateDict): TensorSource[] {
  return [...dict].map(([name, t]) => ({ name, shape: t.shape, data: () => t.data }));
}

/**
 * Serialises tensors as float32 safetensors, as chunks: the header, then each tensor's bytes.
 * Tensors are sorted by name and laid out in that order, metadata keys sorted (no `__metadata__`
 * without metadata), compact JSON padded with spaces to a multiple of 8 bytes (as the reference
 * writer does, so the data section starts 8-byte aligned). Same input → same bytes. A tensor's
 * `data()` is called only when its chunk is asked for, so a consumer that writes each chunk
 * before taking the next holds one tensor at a time; `Buffer.concat([...chunks])` is the file.
 */
export function* safetensorsChunks(tensors: readonly TensorSource[], metadata?: Record<string, string>): Generator<Uint8Array, void, undefined> {
  const sorted = [...tensors].sort((a, b) => compareKeys(a.name, b.name));
  // The JSON is assembled by hand: an object would move index-like keys ("0", "7") to the front.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const meta: string[] = [];
    for (const k of Object.keys(metadata).sort()) {
      if (typeof metadata[k] !== 'string') throw new CheckpointError(`safetensors: metadata "${k}" must be a string, got ${typeof metadata[k]}`);
      meta.push(`${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`);
    }
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${meta.join(',')}}`);
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const [i, t] of sorted.entries()) {
    const what = `tensor "${t.name}"`;
    if (t.name === METADATA_KEY) throw new CheckpointError(`safetensors: "${METADATA_KEY}" is reserved and cannot name a tensor`);
    if (i > 0 && sorted[i - 1].name === t.name) throw new CheckpointError(`safetensors: ${what} is given twice`);
    if (!t.shape.every((d) => isDim(d))) throw new CheckpointError(`safetensors: ${what}: shape [${t.shape.join(', ')}] is not a list of non-negative integers`);
    const n = shapeSize(t.shape, what);
    parts.push(`${JSON.stringify(t.name)}:${JSON.stringify({ dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + 4 * n] })}`);
    offset += 4 * n;
    sizes.push(n);
  }
  let json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const header = Buffer.allocUnsafe(8 + json.length);
  header.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(header, 8);
  yield header;

  for (const [i, t] of sorted.entries()) {
    const data = t.data();
    if (data.length !== sizes[i]) throw new CheckpointError(`safetensors: tensor "${t.name}": shape [${t.shape.join(', ')}] holds ${sizes[i]} values but the data has ${data.length}`);
    if (LITTLE_ENDIAN) {
      yield new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    } else {
      const le = Buffer.allocUnsafe(data.byteLength);
      for (let j = 0; j < data.length; j++) le.writeFloatLE(data[j], 4 * j);
      yield le;
    }
  }
}

export interface ExpectedTensor {
  name: string;
  shape: readonly number[];
}

export interface StateDictDiff {
  missing: ExpectedTensor[];
  unexpected: Array<{ name: string; shape: number[] }>;
  misshaped: Array<{ name: string; expected: number[]; actual: number[] }>;
  /** Shape matches but the data length does not (a corrupt in-memory tensor). */
  badLength: Array<{ name: string; shape: number[]; length: number }>;
}

/** `name` matches an ignore pattern: exact, or a prefix when the pattern ends in `*`. */
function ignored(name: string, ignore: readonly string[]): boolean {
  return ignore.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p));
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/** Compares a state dict with the tensors a model expects. Ignored names count neither way. */
export function diffStateDict(dict: StateDict, expected: readonly ExpectedTensor[], options: { ignore?: readonly string[] } = {}): StateDictDiff {
  const ignore = options.ignore ?? [];
  const diff: StateDictDiff = { missing: [], unexpected: [], misshaped: [], badLength: [] };
  const want = new Map<string, ExpectedTensor>();
  for (const e of expected) want.set(e.name, e);
  for (const e of expected) {
    if (ignored(e.name, ignore)) continue;
    const t = dict.get(e.name);
    if (!t) {
      diff.missing.push(e);
      continue;
    }
    if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
      diff.misshaped.push({ name: e.name, expected: [...e.shape], actual: [...t.shape] });
      continue;
    }
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) diff.badLength.push({ name: e.name, shape: [...t.shape], length: t.data.length });
  }
  for (const [name, t] of dict) {
    if (!want.has(name) && !ignored(name, ignore)) diff.unexpected.push({ name, shape: [...t.shape] });
  }
  return diff;
}

/**
 * Throws ONE CheckpointError listing every missing, unexpected and mis-shaped tensor (expected vs
 * actual shape) when `dict` does not match `expected`; returns the (empty) diff otherwise.
 * `ignore` takes exact names or `prefix*` patterns (e.g. `lm_head.weight`, `regression_head.*`).
 */
export function validateStateDict(dict: StateDict, expected: readonly ExpectedTensor[], options: { ignore?: readonly string[] } = {}): StateDictDiff {
  const diff = diffStateDict(dict, expected, options);
  const lines: string[] = [];
  for (const m of diff.missing) lines.push(`  missing:    ${m.name} ${fmt(m.shape)}`);
  for (const u of diff.unexpected) lines.push(`  unexpected: ${u.name} ${fmt(u.shape)}`);
  for (const m of diff.misshaped) lines.push(`  shape:      ${m.name} expected ${fmt(m.expected)}, got ${fmt(m.actual)}`);
  for (const b of diff.badLength) lines.push(`  data:       ${b.name} shape ${fmt(b.shape)} needs ${b.shape.reduce((a, c) => a * c, 1)} values, has ${b.length}`);
  if (lines.length > 0) {
    const counts = `${diff.missing.length} missing, ${diff.unexpected.length} unexpected, ${diff.misshaped.length} mis-shaped` + (diff.badLength.length ? `, ${diff.badLength.length} with a wrong data length` : '');
    throw new CheckpointError(`state dict does not match the model (${counts}):\n${lines.join('\n')}`);
  }
  return diff;
}
