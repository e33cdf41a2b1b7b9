import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '@smolrate/core';
import { fromHfConfig } from './config.js';
import { expectedParameters } from './params.js';
import {
  diffStateDict,
  MAX_HEADER_BYTES,
  readSafetensors,
  readSafetensorsFile,
  readSafetensorsHeader,
  safetensorsChunks,
  stateDictSources,
  validateStateDict,
  type TensorSource,
} from './safetensors.js';
import type { StateDict } from './state-dict.js';

/** The whole file in memory: the writer's chunks joined. */
const safetensorsBytes = (dict: StateDict, metadata?: Record<string, string>) => Buffer.concat([...safetensorsChunks(stateDictSources(dict), metadata)]);

const FIXTURES = fileURLToPath(new URL('../tests/fixtures/parity/', import.meta.url));

/** A file with an arbitrary header (object or raw string) and data bytes; no validation. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: number | bigint): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function expectCheckpointError(fn: () => unknown, ...fragments: string[]): CheckpointError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(CheckpointError);
  const err = caught as CheckpointError;
  expect(err.code).toBe('CHECKPOINT');
  for (const f of fragments) expect(err.message).toContain(f);
  return err;
}

function f32(...values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

function u16le(...values: number[]): Uint8Array {
  const out = new Uint8Array(2 * values.length);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint16(2 * i, v, true));
  return out;
}

function sampleDict(): StateDict {
  const dict: StateDict = new Map();
  // Special values included: the round trip must keep every bit (NaN payload, -0, subnormals).
  const special = new Float32Array([0, -0, 1, -1.5, Math.PI, 1e-45, -3.4028234663852886e38, Infinity, -Infinity, NaN]);
  const nanBits = new Uint32Array(special.buffer);
  nanBits[9] = 0x7fc00123; // a NaN with a payload
  dict.set('b.weight', { shape: [2, 5], data: special });
  dict.set('a.bias', { shape: [3], data: new Float32Array([0.25, -0.5, 0.75]) });
  dict.set('scalar', { shape: [], data: new Float32Array([42]) });
  dict.set('empty', { shape: [0, 4], data: new Float32Array(0) });
  const big = new Float32Array(1000);
  for (let i = 0; i < big.length; i++) big[i] = Math.sin(i) * 10 ** ((i % 20) - 10);
  dict.set('model.layers.10.w', { shape: [10, 100], data: big });
  return dict;
}

function bitsOf(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

describe('safetensorsChunks / readSafetensors', () => {
  it('round-trips bit-exactly, with metadata', () => {
    const dict = sampleDict();
    const bytes = safetensorsBytes(dict, { format: 'pt', note: 'ünïcode ✓' });
    const { tensors, metadata } = readSafetensors(bytes);
    expect(metadata).toEqual({ format: 'pt', note: 'ünïcode ✓' });
    expect([...tensors.keys()]).toEqual([...dict.keys()].sort());
    for (const [name, t] of dict) {
      const back = tensors.get(name)!;
      expect(back.shape).toEqual(t.shape);
      expect(Array.from(bitsOf(back.data))).toEqual(Array.from(bitsOf(t.data)));
    }
  });

  it('writes deterministic bytes: name-sorted layout, compact JSON padded with spaces to 8 bytes', () => {
    const dict = sampleDict();
    const reversed: StateDict = new Map([...dict].reverse());
    const a = safetensorsBytes(dict, { z: '1', a: '2' });
    const b = safetensorsBytes(reversed, { a: '2', z: '1' });
    expect(Buffer.compare(a, b)).toBe(0);

    const n = Number(a.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const header = a.subarray(8, 8 + n).toString('utf8');
    expect(header.startsWith('{"__metadata__":{"a":"2","z":"1"},"a.bias":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}')).toBe(true);
    const trimmed = header.trimEnd();
    expect(trimmed.endsWith('}')).toBe(true);
    expect(header.slice(trimmed.length)).toMatch(/^ {0,7}$/);
    // Offsets follow the sorted names: a.bias, b.weight, empty, model.layers.10.w, scalar.
    const { tensors } = readSafetensorsHeader(a);
    const byName = Object.fromEntries(tensors.map((t) => [t.name, t.dataOffsets]));
    expect(byName).toEqual({
      'a.bias': [0, 12],
      'b.weight': [12, 52],
      empty: [52, 52],
      'model.layers.10.w': [52, 4052],
      scalar: [4052, 4056],
    });
    expect(a.length).toBe(8 + n + 4056);
  });

  it('keeps index-like names in sorted order (no JSON object key reordering)', () => {
    const dict: StateDict = new Map([
      ['10', { shape: [1], data: new Float32Array([10]) }],
      ['2', { shape: [1], data: new Float32Array([2]) }],
      ['b', { shape: [1], data: new Float32Array([3]) }],
    ]);
    const bytes = safetensorsBytes(dict);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(bytes.subarray(8, 8 + n).toString('utf8').trimEnd()).toBe(
      '{"10":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"2":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}',
    );
    expect(Array.from(readSafetensors(bytes).tensors.get('2')!.data)).toEqual([2]);
  });

  it('omits __metadata__ without metadata, and round-trips an empty dict', () => {
    const bytes = safetensorsBytes(new Map());
    expect(bytes.subarray(8).toString('utf8')).toBe('{}      ');
    expect(readSafetensors(bytes)).toEqual({ tensors: new Map(), metadata: {} });
  });

  it('refuses to write inconsistent tensors or the reserved name', () => {
    expectCheckpointError(() => safetensorsBytes(new Map([['w', { shape: [2, 3], data: new Float32Array(5) }]])), '"w"', '[2, 3]', '5');
    expectCheckpointError(() => safetensorsBytes(new Map([['w', { shape: [-1], data: new Float32Array(0) }]])), '"w"');
    expectCheckpointError(() => safetensorsBytes(new Map([['__metadata__', { shape: [1], data: new Float32Array(1) }]])), '__metadata__');
    const w = { name: 'w', shape: [1], data: () => new Float32Array(1) };
    expectCheckpointError(() => [...safetensorsChunks([w, w])], '"w" is given twice');
  });

  it("streams: the header comes first and each tensor's data is asked for only when its chunk is taken, in name order", () => {
    const asked: string[] = [];
    const source = (name: string, value: number): TensorSource => ({
      name,
      shape: [1],
      data: () => {
        asked.push(name);
        return new Float32Array([value]);
      },
    });
    const chunks = safetensorsChunks([source('b', 2), source('a', 1)]);
    const header = chunks.next().value as Uint8Array;
    expect(asked).toEqual([]);
    expect(Array.from(new Float32Array(Uint8Array.from(chunks.next().value as Uint8Array).buffer))).toEqual([1]);
    expect(asked).toEqual(['a']);
    chunks.next();
    expect(asked).toEqual(['a', 'b']);
    expect(chunks.next().done).toBe(true);
    expect(header.length).toBe(8 + Number(Buffer.from(header).readBigUInt64LE(0)));
  });

  it('returns F32 data as views into an aligned buffer and copies when unaligned', () => {
    const bytes = safetensorsBytes(new Map([['w', { shape: [2], data: new Float32Array([1.5, -2]) }]]));
    const aligned = readSafetensors(bytes).tensors.get('w')!;
    expect(aligned.data.buffer).toBe(bytes.buffer);
    expect(Array.from(aligned.data)).toEqual([1.5, -2]);

    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const view = shifted.subarray(1); // byteOffset 1: data no longer 4-byte aligned
    const copied = readSafetensors(view).tensors.get('w')!;
    expect(copied.data.buffer).not.toBe(shifted.buffer);
    expect(Array.from(copied.data)).toEqual([1.5, -2]);
    // The copy is independent of the file bytes.
    shifted.fill(0);
    expect(Array.from(copied.data)).toEqual([1.5, -2]);
  });
});

describe('readSafetensors: bf16 and f16', () => {
  it('widens bfloat16 exactly', () => {
    const bits = [0x3f80, 0xc040, 0x4049, 0x0000, 0x8000, 0x7f80, 0xff80, 0x0001, 0xff7f, 0x3e80];
    const want = [1, -3, 3.140625, 0, -0, Infinity, -Infinity, 2 ** -133, -(2 - 2 ** -7) * 2 ** 127, 0.25];
    const file = rawFile({ t: { dtype: 'BF16', shape: [2, 5], data_offsets: [0, 20] } }, u16le(...bits));
    const t = readSafetensors(file).tensors.get('t')!;
    expect(t.shape).toEqual([2, 5]);
    expect(Array.from(t.data)).toEqual(want);
    expect(Object.is(t.data[4], -0)).toBe(true);
    const nan = readSafetensors(rawFile({ t: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] } }, u16le(0x7fc0))).tensors.get('t')!;
    expect(Number.isNaN(nan.data[0])).toBe(true);
  });

  it('widens float16 exactly, subnormals and specials included', () => {
    const bits = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x3555, 0x7c00, 0xfc00, 0x8000, 0x3800, 0xbc01];
    const want = [1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, 0.333251953125, Infinity, -Infinity, -0, 0.5, -(1 + 2 ** -10)];
    const file = rawFile({ h: { dtype: 'F16', shape: [12], data_offsets: [0, 24] } }, u16le(...bits));
    const t = readSafetensors(file).tensors.get('h')!;
    expect(Array.from(t.data)).toEqual(want);
    expect(Object.is(t.data[9], -0)).toBe(true);
    const nan = readSafetensors(rawFile({ h: { dtype: 'F16', shape: [1], data_offsets: [0, 2] } }, u16le(0x7e00))).tensors.get('h')!;
    expect(Number.isNaN(nan.data[0])).toBe(true);
  });

  it('reads 16-bit data at odd addresses', () => {
    // Header of odd length puts the F16 data at an odd byte offset.
    const header = JSON.stringify({ h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] }, g: { dtype: 'BF16', shape: [1], data_offsets: [4, 6] } });
    const padded = header.length % 2 === 0 ? `${header} ` : header;
    const file = rawFile(padded, new Uint8Array([...u16le(0x3c00, 0xc000), ...u16le(0x4049)]));
    expect((8 + padded.length) % 2).toBe(1);
    const { tensors } = readSafetensors(file);
    expect(Array.from(tensors.get('h')!.data)).toEqual([1, -2]);
    expect(Array.from(tensors.get('g')!.data)).toEqual([3.140625]);
  });

  it('mixes dtypes in one file', () => {
    const data = new Uint8Array([...f32(7.5), ...u16le(0x3c00), ...u16le(0x4000)]);
    const file = rawFile(
      {
        __metadata__: { format: 'pt' },
        a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
        b: { dtype: 'F16', shape: [1], data_offsets: [4, 6] },
        c: { dtype: 'BF16', shape: [1], data_offsets: [6, 8] },
      },
      data,
    );
    const { tensors } = readSafetensors(file);
    expect([tensors.get('a')!.data[0], tensors.get('b')!.data[0], tensors.get('c')!.data[0]]).toEqual([7.5, 1, 2]);
  });
});

describe('readSafetensors: corrupt files fail with a CheckpointError naming the problem', () => {
  const ok = { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const data = f32(1, 2);

  it('validates the header length', () => {
    expectCheckpointError(() => readSafetensors(new Uint8Array(5)), 'shorter than the 8-byte header length');
    expectCheckpointError(() => readSafetensors(rawFile(ok, data, 10_000)), 'header length 10000 runs past the end');
    expectCheckpointError(() => readSafetensors(rawFile(ok, data, BigInt(MAX_HEADER_BYTES) + 1n)), 'exceeds the limit');
    expectCheckpointError(() => readSafetensors(rawFile(ok, data, 2n ** 64n - 1n)), 'exceeds the limit');
    expectCheckpointError(() => readSafetensors(rawFile('{', new Uint8Array(0))), 'too small');
  });

  it('validates the JSON', () => {
    expectCheckpointError(() => readSafetensors(rawFile('{"w": {"dtype": "F32",', data)), 'not valid UTF-8 JSON');
    expectCheckpointError(() => readSafetensors(rawFile(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('latin1'), data)), 'not valid UTF-8 JSON');
    const badUtf8 = rawFile('{"x":1}', data);
    badUtf8[10] = 0xff;
    expectCheckpointError(() => readSafetensors(badUtf8), 'not valid UTF-8 JSON');
    expectCheckpointError(() => readSafetensors(rawFile(` ${JSON.stringify(ok)}`, data)), 'does not start with "{"');
    expectCheckpointError(() => readSafetensors(rawFile('[1,2]', data)), 'does not start with "{"');
    expectCheckpointError(() => readSafetensors(rawFile({ __metadata__: { a: 1 }, ...ok }, data)), '__metadata__.a must be a string');
    expectCheckpointError(() => readSafetensors(rawFile({ __metadata__: ['x'], ...ok }, data)), '__metadata__ must be an object');
  });

  it('validates each entry and names the tensor', () => {
    expectCheckpointError(() => readSafetensors(rawFile({ w: 3 }, data)), 'tensor "w"', 'not an object');
    expectCheckpointError(() => readSafetensors(rawFile({ w: { shape: [2], data_offsets: [0, 8] } }, data)), 'tensor "w"', 'dtype');
    expectCheckpointError(() => readSafetensors(rawFile({ w: { dtype: 'F33', shape: [2], data_offsets: [0, 8] } }, data)), 'tensor "w"', 'unknown dtype "F33"');
    expectCheckpointError(() => readSafetensors(rawFile({ w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, data)), 'tensor "w"', '"shape"');
    expectCheckpointError(() => readSafetensors(rawFile({ w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, data)), 'tensor "w"', '"shape"');
    expectCheckpointError(() => readSafetensors(rawFile({ w: { dtype: 'F32', shape: 2, data_offsets: [0, 8] } }, data)), 'tensor "w"', '"shape"');
    expectCheckpointError(() => readSafetensors(rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 4, 8] } }, data)), 'tensor "w"', 'data_offsets');
    expectCheckpointError(() => readSafetensors(rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, data)), 'tensor "w"', 'end before they begin');
  });

  it('rejects dtypes that do not load as float32, naming the tensor', () => {
    const file = rawFile({ 'model.ids': { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8));
    expectCheckpointError(() => readSafetensors(file), 'tensor "model.ids"', 'dtype I64 is not supported');
    // ...but its header is still readable.
    expect(readSafetensorsHeader(file).tensors).toEqual([{ name: 'model.ids', dtype: 'I64', shape: [1], dataOffsets: [0, 8] }]);
  });

  it('validates offsets against the buffer and the other tensors', () => {
    expectCheckpointError(() => readSafetensors(rawFile({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, data)), 'tensor "w"', 'run past the end of the 8-byte data section');
    const two = (a: [number, number], b: [number, number], bytes = 8) =>
      rawFile({ a: { dtype: 'F32', shape: [(a[1] - a[0]) / 4], data_offsets: a }, b: { dtype: 'F32', shape: [(b[1] - b[0]) / 4], data_offsets: b } }, new Uint8Array(bytes));
    expectCheckpointError(() => readSafetensors(two([0, 8], [4, 8])), 'tensor "b"', 'overlap tensor "a"');
    expectCheckpointError(() => readSafetensors(two([0, 4], [8, 12], 12)), 'tensor "b"', 'gap of 4 bytes after tensor "a"');
    expectCheckpointError(() => readSafetensors(two([4, 8], [8, 12], 12)), 'tensor "a"', 'gap of 4 bytes after the header');
    expectCheckpointError(() => readSafetensors(two([0, 4], [4, 8], 12)), 'trailing bytes', '"b"');
    expectCheckpointError(() => readSafetensors(rawFile({}, new Uint8Array(4))), 'trailing bytes');
    // The same tensors with consistent offsets are fine, in either header order.
    expect([...readSafetensors(two([4, 8], [0, 4])).tensors.keys()]).toEqual(['a', 'b']);
  });

  it('checks shape × dtype size against the byte length', () => {
    expectCheckpointError(() => readSafetensors(rawFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data)), 'tensor "w"', 'needs 12 bytes', 'span 8');
    expectCheckpointError(() => readSafetensors(rawFile({ w: { dtype: 'BF16', shape: [2], data_offsets: [0, 8] } }, data)), 'tensor "w"', 'needs 4 bytes');
    const huge = rawFile({ w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, data);
    expectCheckpointError(() => readSafetensors(huge), 'tensor "w"', 'too many elements');
  });
});

describe('readSafetensorsFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'smolrate-safetensors-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a file into one buffer with views into it', async () => {
    const dict = sampleDict();
    const path = join(dir, 'a.safetensors');
    await writeFile(path, safetensorsBytes(dict, { format: 'pt' }));
    const { tensors, metadata } = await readSafetensorsFile(path);
    expect(metadata).toEqual({ format: 'pt' });
    const buffers = new Set([...tensors.values()].map((t) => t.data.buffer));
    expect(buffers.size).toBe(1);
    for (const [name, t] of dict) expect(Array.from(bitsOf(tensors.get(name)!.data))).toEqual(Array.from(bitsOf(t.data)));
  });

  it('wraps I/O errors and corrupt files with the path', async () => {
    const missing = join(dir, 'missing.safetensors');
    const err = await readSafetensorsFile(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toContain(missing);
    expect((err as Error & { cause?: { code?: string } }).cause?.code).toBe('ENOENT');

    const truncated = join(dir, 'truncated.safetensors');
    const bytes = safetensorsBytes(sampleDict());
    await writeFile(truncated, bytes.subarray(0, bytes.length - 3));
    const err2 = await readSafetensorsFile(truncated).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(CheckpointError);
    expect((err2 as Error).message).toContain(truncated);
    expect((err2 as Error).message).toContain('tensor "scalar"'); // the last tensor in the file

    const tiny = join(dir, 'tiny.safetensors');
    await writeFile(tiny, Buffer.from([1, 2, 3]));
    await expect(readSafetensorsFile(tiny)).rejects.toThrow(/shorter than the 8-byte header length/);

    const notSafetensors = join(dir, 'text.safetensors');
    await writeFile(notSafetensors, 'this is not a safetensors file at all');
    await expect(readSafetensorsFile(notSafetensors)).rejects.toThrow(CheckpointError);
  });
});

describe('a file written by the Python reference (tools/parity/reference.py)', () => {
  it('parses, validates against the config, and re-serialises to the same bytes', async () => {
    const path = join(FIXTURES, 'model.safetensors');
    const original = await readFile(path);
    const cfg = fromHfConfig(JSON.parse(await readFile(join(FIXTURES, 'config.json'), 'utf8')));
    const { tensors, metadata } = await readSafetensorsFile(path);
    expect(metadata).toEqual({ format: 'pt' });
    const expected = expectedParameters(cfg, { includeLmHead: true });
    expect(tensors.size).toBe(expected.length);
    validateStateDict(tensors, expected);
    expect(tensors.get('model.connector.modality_projection.proj.weight')!.shape).toEqual([72, 512]);
    expect(tensors.get('model.vision_model.embeddings.patch_embedding.weight')!.shape).toEqual([32, 3, 8, 8]);
    // The Python writer follows the same conventions (compact JSON, sorted names, space padding).
    expect(Buffer.compare(safetensorsBytes(tensors, metadata), original)).toBe(0);
  });
});

describe('validateStateDict', () => {
  const expected = [
    { name: 'a', shape: [2, 3] },
    { name: 'b', shape: [4] },
    { name: 'c', shape: [1] },
    { name: 'lm_head.weight', shape: [5, 2] },
  ];

  it('passes a matching dict and returns an empty diff', () => {
    const dict: StateDict = new Map([
      ['a', { shape: [2, 3], data: new Float32Array(6) }],
      ['b', { shape: [4], data: new Float32Array(4) }],
      ['c', { shape: [1], data: new Float32Array(1) }],
      ['lm_head.weight', { shape: [5, 2], data: new Float32Array(10) }],
    ]);
    expect(validateStateDict(dict, expected)).toEqual({ missing: [], unexpected: [], misshaped: [], badLength: [] });
  });

  it('throws ONE error listing every missing, unexpected and mis-shaped tensor', () => {
    const dict: StateDict = new Map([
      ['a', { shape: [3, 2], data: new Float32Array(6) }],
      ['c', { shape: [1], data: new Float32Array(2) }],
      ['extra.one', { shape: [7], data: new Float32Array(7) }],
      ['extra.two', { shape: [], data: new Float32Array(1) }],
    ]);
    const err = expectCheckpointError(
      () => validateStateDict(dict, expected),
      '2 missing, 2 unexpected, 1 mis-shaped, 1 with a wrong data length',
      'missing:    b [4]',
      'missing:    lm_head.weight [5, 2]',
      'unexpected: extra.one [7]',
      'unexpected: extra.two []',
      'shape:      a expected [2, 3], got [3, 2]',
      'data:       c shape [1] needs 1 values, has 2',
    );
    expect(err.message.split('\n')).toHaveLength(7);
  });

  it('ignores exact names and prefix* patterns on both sides', () => {
    const dict: StateDict = new Map([
      ['a', { shape: [2, 3], data: new Float32Array(6) }],
      ['b', { shape: [4], data: new Float32Array(4) }],
      ['c', { shape: [1], data: new Float32Array(1) }],
      ['extra.one', { shape: [7], data: new Float32Array(7) }],
    ]);
    expectCheckpointError(() => validateStateDict(dict, expected), 'missing:    lm_head.weight', 'unexpected: extra.one');
    expect(() => validateStateDict(dict, expected, { ignore: ['lm_head.weight', 'extra.*'] })).not.toThrow();
    expect(diffStateDict(dict, expected, { ignore: ['lm_*'] }).unexpected).toEqual([{ name: 'extra.one', shape: [7] }]);
  });
});
