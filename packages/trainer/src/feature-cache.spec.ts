import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DataError, openStore, Rng, ShapeError, type Store } from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  FEATURE_DATA_ALIGN,
  FEATURE_HEADER_BYTES,
  FEATURE_TABLE_RECORD_BYTES,
  featureDataOffset,
  defaultMaxOpenFiles,
  FeatureCache,
  Limiter,
  ReadModePolicy,
  packedBytesPerImage,
  readEntriesAtRandom,
  readFeatureFilesSequentially,
  type FeatureDtype,
  type FeatureShard,
} from './feature-cache.js';
import { fromBf16, toBf16 } from './grad-transport.js';

const hex = (s: string) => createHash('sha256').update(s).digest('hex');
const BACKBONE = hex('backbone A');
const OTHER_BACKBONE = hex('backbone B');
const N = 36;
const D = 8;
const ROWS = 7;

function features(seed: number, n = N * D): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** A shard of ROWS rows (rows 2 and 5 share an image) and the features of each row. */
function shardOf(name: string): { shard: FeatureShard; images: string[]; rows: Float32Array[] } {
  const images = Array.from({ length: ROWS }, (_, j) => hex(`${name} image ${j === 5 ? 2 : j}`));
  const rows = Array.from({ length: ROWS }, (_, j) => features(j === 5 ? 2 : j + 10 * name.length));
  rows[0][3] = -0; // signed zero, a subnormal, ±Inf and NaN survive
  rows[0][4] = 1e-42;
  rows[0][5] = -Infinity;
  rows[0][6] = NaN;
  return { shard: { sha256: hex(name), rows: ROWS }, images, rows };
}

async function writeShard(cache: FeatureCache, s: ReturnType<typeof shardOf>): Promise<void> {
  const w = cache.writer(s.shard);
  // Any order: the rows go where they belong.
  for (const j of [3, 0, 6, 1, 5, 2, 4]) w.set(j, s.images[j], s.rows[j]);
  await cache.put(s.shard.sha256, w.finish());
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-features-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('packed feature file', () => {
  it('bytes per image for the 256M geometry (36 × 576) stay within 42 KB in bf16', () => {
    expect(packedBytesPerImage(36, 576, 'bf16')).toBe(36 * 576 * 2 + FEATURE_TABLE_RECORD_BYTES);
    expect(packedBytesPerImage(36, 576, 'bf16')).toBeLessThanOrEqual(42 * 1024);
    expect(packedBytesPerImage(36, 576, 'f32')).toBe(36 * 576 * 4 + FEATURE_TABLE_RECORD_BYTES);
    expect(featureDataOffset(0)).toBe(FEATURE_DATA_ALIGN);
    expect(featureDataOffset(100)).toBe(2 * FEATURE_DATA_ALIGN); // 112 + 4000 B of table
  });

  it('writes the documented layout', async () => {
    const cache = new FeatureCache({ dir: join(dir, 'layout'), backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'f32' });
    const s = shardOf('layout');
    await writeShard(cache, s);
    expect(cache.keyOf(s.shard.sha256)).toBe(`${BACKBONE}/${s.shard.sha256}.f32.srfp`);
    const bytes = await readFile(join(dir, 'layout', BACKBONE, `${s.shard.sha256}.f32.srfp`));
    const dataOffset = featureDataOffset(ROWS);
    expect(bytes.length).toBe(dataOffset + ROWS * N * D * 4);
    expect(bytes.toString('latin1', 0, 4)).toBe('SRFP');
    expect([4, 8, 12, 16, 20, 24].map((o) => bytes.readUInt32LE(o))).toEqual([1, 1, N, D, ROWS, N * D * 4]);
    expect(Number(bytes.readBigUInt64LE(32))).toBe(dataOffset);
    expect(bytes.toString('hex', 40, 72)).toBe(BACKBONE);
    expect(bytes.toString('hex', 72, 104)).toBe(s.shard.sha256);
    const rec3 = FEATURE_HEADER_BYTES + 3 * FEATURE_TABLE_RECORD_BYTES;
    expect(bytes.toString('hex', rec3, rec3 + 32)).toBe(s.images[3]);
    const entry3 = bytes.subarray(dataOffset + 3 * N * D * 4, dataOffset + 4 * N * D * 4);
    expect(sameBits(new Float32Array(entry3.buffer.slice(entry3.byteOffset, entry3.byteOffset + entry3.length)), s.rows[3])).toBe(true);
    const sidecar = (await readFile(join(dir, 'layout', BACKBONE, `${s.shard.sha256}.f32.srfp.sha256`), 'utf8')).trim();
    expect(sidecar).toBe(createHash('sha256').update(bytes).digest('hex'));
  });
});

describe('FeatureCache', () => {
  it('f32: reads back the exact bits, by (shard, row), in the order asked, repeats included', async () => {
    const cacheDir = join(dir, 'f32');
    const a = shardOf('a');
    const b = shardOf('bb');
    await writeShard(new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'f32' }), a);
    await writeShard(new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'f32' }), b);
    const cache = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'f32' });
    const reader = cache.reader([a.shard, b.shard]);
    const locations = [{ shard: 1, row: 4 }, { shard: 0, row: 0 }, { shard: 0, row: 6 }, { shard: 1, row: 4 }, { shard: 0, row: 1 }, { shard: 0, row: 2 }];
    const got = await reader.read(locations);
    expect(got).toHaveLength(locations.length * N * D);
    locations.forEach(({ shard, row }, k) => {
      expect(sameBits(got.subarray(k * N * D, (k + 1) * N * D), [a, b][shard].rows[row]), `location ${k}`).toBe(true);
    });
    expect(Object.is(got[N * D + 3], -0)).toBe(true);
    expect(await cache.verify(a.shard)).toEqual({ state: 'good' });
    expect(await cache.verify({ sha256: hex('never written'), rows: 1 })).toEqual({ state: 'missing' });
    await expect(reader.read([{ shard: 0, row: ROWS }])).rejects.toThrow(RangeError);
    await expect(cache.reader([{ sha256: hex('never written'), rows: 1 }]).read([{ shard: 0, row: 0 }])).rejects.toThrow(/missing: run precomputeFeatures/);
    await cache.close();
  });

  it('bf16: stores toBf16 of the features and reads them back widened exactly', async () => {
    const cache = new FeatureCache({ dir: join(dir, 'bf16'), backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'bf16' });
    expect(cache.dtype).toBe('bf16');
    const s = shardOf('bf');
    await writeShard(cache, s);
    const bytes = await readFile(join(dir, 'bf16', cache.keyOf(s.shard.sha256)));
    expect(bytes.length).toBe(featureDataOffset(ROWS) + ROWS * N * D * 2);
    const got = await cache.reader([s.shard]).read(Array.from({ length: ROWS }, (_, row) => ({ shard: 0, row })));
    for (let j = 0; j < ROWS; j++) {
      const expected = fromBf16(toBf16(s.rows[j], new Uint16Array(N * D)), new Float32Array(N * D));
      expect(sameBits(got.subarray(j * N * D, (j + 1) * N * D), expected), `row ${j}`).toBe(true);
    }
    // The rounding really happened (and is not a no-op that would hide a wrong dtype).
    expect(sameBits(got.subarray(N * D, 2 * N * D), s.rows[1])).toBe(false);
    await cache.close();
  });

  it('reads only the needed entries, adjacent rows in one range, with bounded ranges in flight', async () => {
    const cacheDir = join(dir, 'ranges');
    const s = shardOf('ranges');
    await writeShard(new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'bf16' }), s);
    const cache = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'bf16', concurrency: 1 });
    const calls: Array<[number, number]> = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const readRange = (cache as unknown as { readRange: (k: string, p: number, l: number, into?: Buffer) => Promise<Buffer> }).readRange.bind(cache);
    vi.spyOn(cache as unknown as { readRange: typeof readRange }, 'readRange').mockImplementation(async (k, p, l, into) => {
      calls.push([p, l]);
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      try {
        return await readRange(k, p, l, into);
      } finally {
        inFlight--;
      }
    });
    const reader = cache.reader([s.shard]);
    await reader.read([{ shard: 0, row: 5 }, { shard: 0, row: 1 }, { shard: 0, row: 2 }, { shard: 0, row: 3 }]);
    const entry = N * D * 2;
    const data = featureDataOffset(ROWS);
    // Header, table, then rows 1–3 as one range and row 5.
    expect(calls).toEqual([[0, FEATURE_HEADER_BYTES], [FEATURE_HEADER_BYTES, ROWS * FEATURE_TABLE_RECORD_BYTES], [data + entry, 3 * entry], [data + 5 * entry, entry]]);
    expect(maxInFlight).toBe(1);
    calls.length = 0;
    await reader.read([{ shard: 0, row: 0 }]); // the header is read once per cache
    expect(calls).toEqual([[data, entry]]);
    await cache.close();
  });

  it('concurrent reads over several files never exceed the bound (one read slot each) and give the right rows, into a reused buffer', async () => {
    const cacheDir = join(dir, 'many');
    const shards = ['m0', 'm1', 'm2', 'm3', 'm4'].map(shardOf);
    const writer = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'f32' });
    for (const s of shards) await writeShard(writer, s);
    const cache = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'f32', concurrency: 2 });
    let inFlight = 0;
    let maxInFlight = 0;
    const readRange = (cache as unknown as { readRange: (k: string, p: number, l: number, into?: Buffer) => Promise<Buffer> }).readRange.bind(cache);
    vi.spyOn(cache as unknown as { readRange: typeof readRange }, 'readRange').mockImplementation(async (k, p, l, into) => {
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      try {
        await new Promise((r) => setTimeout(r, 1)); // hold the permit across ticks, as a disk or S3 read does
        return await readRange(k, p, l, into);
      } finally {
        inFlight--;
      }
    });
    const reader = cache.reader(shards.map((s) => s.shard));
    // Every other row of every shard: no two adjacent, so one range each; three batches at once.
    const batch = (odd: number) => shards.flatMap((_, shard) => [0, 2, 4, 6].filter((r) => r % 4 === 2 * odd || odd === 2).map((row) => ({ shard, row })));
    const reused = new Float32Array(batch(0).length * N * D).fill(123);
    const [a, b, c] = await Promise.all([reader.read(batch(0), reused), reader.read(batch(1)), reader.read(batch(2))]);
    expect(a).toBe(reused);
    expect(maxInFlight).toBe(2);
    for (const [locs, got] of [[batch(0), a], [batch(1), b], [batch(2), c]] as const) {
      locs.forEach(({ shard, row }, k) => expect(sameBits(got.subarray(k * N * D, (k + 1) * N * D), shards[shard].rows[row]), `shard ${shard} row ${row}`).toBe(true));
    }
    await expect(reader.read(batch(0), new Float32Array(5))).rejects.toThrow(RangeError);
    await cache.close();
  });

  it('refuses a truncated file, a flipped entry or header byte, another backbone or dtype, naming the file', async () => {
    const cacheDir = join(dir, 'damage');
    const geometry = { dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'f32' as FeatureDtype };
    const s = shardOf('damage');
    const writer = new FeatureCache(geometry);
    const key = writer.keyOf(s.shard.sha256);
    const path = join(cacheDir, key);
    const all = Array.from({ length: ROWS }, (_, row) => ({ shard: 0, row }));
    const damaged = async (damage: (bytes: Buffer) => Promise<void> | void, pattern: RegExp) => {
      await writeShard(writer, s);
      await damage(await readFile(path));
      const cache = new FeatureCache(geometry); // fresh: no header kept
      await expect(cache.reader([s.shard]).read(all)).rejects.toThrow(DataError);
      await expect(cache.reader([s.shard]).read(all)).rejects.toThrow(pattern);
      const status = await new FeatureCache(geometry).verify(s.shard);
      expect(status.state).toBe('bad');
      expect(status.state === 'bad' && status.reason).toContain(path);
      await cache.close();
    };
    const inFile = (p: string) => new RegExp(`feature file .*${p.replaceAll('/', '\\/')}`);
    await damaged(() => truncate(path, featureDataOffset(ROWS) + 3 * N * D * 4 + 7), inFile(path));
    await damaged(async (b) => {
      b[featureDataOffset(ROWS) + 4 * N * D * 4 + 9] ^= 0x10; // entry 4
      await writeFile(path, b);
    }, /entry 4 has checksum/);
    await damaged(async (b) => {
      b[FEATURE_HEADER_BYTES + 2 * FEATURE_TABLE_RECORD_BYTES + 5] ^= 1; // an image hash in the table
      await writeFile(path, b);
    }, /header\/table crc32/);
    await damaged(async (b) => {
      b.write(OTHER_BACKBONE, 40, 'hex');
      await writeFile(path, b);
    }, /backbone hash/);
    await damaged(async (b) => {
      b.writeUInt32LE(2, 8);
      await writeFile(path, b);
    }, /dtype code 2, expected 1/);

    // A bf16 file put where an f32 one belongs, or another backbone's file under this key.
    const bf16 = new FeatureCache({ ...geometry, dtype: 'bf16' });
    const w = bf16.writer(s.shard);
    s.rows.forEach((r, j) => w.set(j, s.images[j], r));
    await writeFile(path, w.finish());
    await expect(new FeatureCache(geometry).reader([s.shard]).read(all)).rejects.toThrow(/dtype code 2, expected 1 \(f32\)/);
    const other = new FeatureCache({ ...geometry, backboneHash: OTHER_BACKBONE });
    const o = other.writer(s.shard);
    s.rows.forEach((r, j) => o.set(j, s.images[j], r));
    await writeFile(path, o.finish());
    await expect(new FeatureCache(geometry).reader([s.shard]).read(all)).rejects.toThrow(/backbone hash/);
    // Another shard's file, or one with a different row count.
    await writeShard(writer, s);
    await expect(new FeatureCache(geometry).reader([{ ...s.shard, rows: ROWS + 1 }]).read([{ shard: 0, row: 0 }])).rejects.toThrow(`${ROWS} entries, expected ${ROWS + 1}`);
    // A file whose sidecar is missing is not verified good (the write was interrupted).
    await rm(`${path}.sha256`);
    expect((await new FeatureCache(geometry).verify(s.shard)).state).toBe('bad');
  });

  it('direct (O_DIRECT) reads give the bits of buffered reads, the last entry at the unaligned end of the file included, and still catch damage', async () => {
    const cacheDir = join(dir, 'direct');
    const a = shardOf('direct a');
    const b = shardOf('direct bb');
    const geometry = { dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'f32' as FeatureDtype };
    for (const s of [a, b]) await writeShard(new FeatureCache(geometry), s);
    // Entries of 1,152 bytes: ranges start and end off the 4096 grid, and the file's size is not a multiple of it.
    expect((featureDataOffset(ROWS) + ROWS * N * D * 4) % 4096).not.toBe(0);
    const locations = [{ shard: 1, row: 6 }, { shard: 0, row: 0 }, { shard: 0, row: 1 }, { shard: 0, row: 2 }, { shard: 1, row: 3 }, { shard: 0, row: 6 }, { shard: 1, row: 6 }];
    const direct = new FeatureCache({ ...geometry, directIo: 'on' });
    const buffered = new FeatureCache({ ...geometry, directIo: 'off' });
    const directReader = direct.reader([a.shard, b.shard]);
    const output = directReader.allocateOutput(locations.length * N * D); // in the decoder's memory: decoded without a copy
    const got = await directReader.read(locations, output);
    expect(got).toBe(output);
    expect(sameBits(got, await buffered.reader([a.shard, b.shard]).read(locations))).toBe(true);
    locations.forEach(({ shard, row }, k) => expect(sameBits(got.subarray(k * N * D, (k + 1) * N * D), [a, b][shard].rows[row]), `location ${k}`).toBe(true));
    expect(direct.readsDirect).toBe(true);
    expect(direct.rangesRead).toMatchObject({ direct: 4, buffered: 0 });
    expect(buffered.rangesRead).toMatchObject({ direct: 0, buffered: 4 });
    // 'auto' reads a split this small through the page cache.
    const auto = new FeatureCache(geometry);
    await auto.reader([a.shard]).read([{ shard: 0, row: 3 }]);
    expect(auto.readsDirect).toBe(false);
    expect(auto.rangesRead.buffered).toBe(1);
    for (const c of [direct, buffered, auto]) await c.close();

    const path = join(cacheDir, direct.keyOf(a.shard.sha256));
    const bytes = await readFile(path);
    bytes[featureDataOffset(ROWS) + 4 * N * D * 4 + 9] ^= 0x10;
    await writeFile(path, bytes);
    const all = Array.from({ length: ROWS }, (_, row) => ({ shard: 0, row }));
    await expect(new FeatureCache({ ...geometry, directIo: 'on' }).reader([a.shard]).read(all)).rejects.toThrow(/entry 4 has checksum/);
    // Cut inside the last entry once the header has been read: the direct read comes up short.
    const late = new FeatureCache({ ...geometry, directIo: 'on' });
    const reader = late.reader([b.shard]);
    await reader.read([{ shard: 0, row: 0 }]);
    const pathB = join(cacheDir, late.keyOf(b.shard.sha256));
    await truncate(pathB, featureDataOffset(ROWS) + 6 * N * D * 4 + 100);
    await expect(reader.read([{ shard: 0, row: 6 }])).rejects.toThrow(new RegExp(`feature file .*${pathB.replaceAll('/', '\\/')}: 100 bytes at offset .*truncated`));
    await late.close();
    expect(() => new FeatureCache({ ...geometry, directIo: 'always' as 'on' })).toThrow(ConfigError);
  });

  it('keeps half the descriptor limit of files open by default', () => {
    const limits = (soft: string) => `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                20000                files\n`;
    expect(defaultMaxOpenFiles(limits('20000'))).toBe(10_000);
    expect(defaultMaxOpenFiles(limits('unlimited'))).toBe(1 << 19);
    expect(defaultMaxOpenFiles(limits('100'))).toBe(64);
    expect(defaultMaxOpenFiles('no such line')).toBe(64);
    expect(defaultMaxOpenFiles()).toBeGreaterThanOrEqual(64);
  });

  it('checks its arguments', async () => {
    const cacheDir = join(dir, 'args');
    expect(() => new FeatureCache({ backboneHash: BACKBONE, tokens: N, dim: D })).toThrow(ConfigError);
    expect(() => new FeatureCache({ dir: cacheDir, backboneHash: 'nope', tokens: N, dim: D })).toThrow(DataError);
    expect(() => new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: 0, dim: D })).toThrow(ConfigError);
    expect(() => new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'fp8' as FeatureDtype })).toThrow(ConfigError);
    const w = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D }).writer({ sha256: hex('args'), rows: 2 });
    expect(() => w.set(0, hex('i'), new Float32Array(N * D - 1))).toThrow(ShapeError);
    expect(() => w.set(2, hex('i'), features(1))).toThrow(RangeError);
    w.set(0, hex('i'), features(1));
    expect(() => w.finish()).toThrow(/row 1 has no features/);
  });

  it('keeps a bounded number of local files open', async () => {
    const cacheDir = join(dir, 'handles');
    const shards = ['h0', 'h1', 'h2', 'h3', 'h4'].map(shardOf);
    const writer = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D });
    for (const s of shards) await writeShard(writer, s);
    const cache = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, maxOpenFiles: 2 });
    const reader = cache.reader(shards.map((s) => s.shard));
    for (let k = 0; k < shards.length; k++) await reader.read([{ shard: k, row: 1 }]);
    expect((cache as unknown as { handles: Map<string, unknown> }).handles.size).toBe(2);
    const again = await reader.read([{ shard: 0, row: 1 }, { shard: 4, row: 6 }]);
    expect(again).toHaveLength(2 * N * D);
    await cache.close();
  });

  it('reads the files whole and in order for the raw read-rate baseline', async () => {
    const cacheDir = join(dir, 'sequential');
    const shards = ['s0', 's1'].map(shardOf);
    const cache = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, dtype: 'bf16' });
    for (const s of shards) await writeShard(cache, s);
    const r = await readFeatureFilesSequentially(cache, shards.map((s) => s.shard));
    expect(r.files).toBe(2);
    expect(r.bytes).toBe(2 * (featureDataOffset(ROWS) + ROWS * N * D * 2));
    expect(r.seconds).toBeGreaterThan(0);
    expect(r.direct).toBe(false);
    const d = await readFeatureFilesSequentially(cache, shards.map((s) => s.shard), { direct: true });
    expect(d).toMatchObject({ files: 2, bytes: r.bytes, direct: true });
    // The random single-entry baseline: whole entries, buffered exactly, direct as aligned supersets.
    const entry = N * D * 2;
    const buffered = await readEntriesAtRandom(cache, shards.map((s) => s.shard), { count: 20, inFlight: 4, direct: false });
    expect(buffered).toMatchObject({ reads: 20, bytes: 20 * entry, direct: false });
    const direct = await readEntriesAtRandom(cache, shards.map((s) => s.shard), { count: 20, inFlight: 4, direct: true });
    expect(direct).toMatchObject({ reads: 20, direct: true });
    expect(direct.bytes).toBeGreaterThanOrEqual(20 * entry);
  });

  it('works on an S3 store with ranged GETs, giving the same features as a local copy', async () => {
    const bucket = process.env.SMOLRATE_TEST_S3_BUCKET;
    if (!bucket || !process.env.AWS_ENDPOINT_URL_S3) throw new Error('the vitest global setup did not provide an S3 server');
    const s3: Store = openStore(`s3://${bucket}/trainer-features-${randomBytes(6).toString('hex')}`);
    try {
      const s = shardOf('s3');
      const local = new FeatureCache({ dir: join(dir, 's3-local'), backboneHash: BACKBONE, tokens: N, dim: D });
      const remote = new FeatureCache({ store: s3, backboneHash: BACKBONE, tokens: N, dim: D });
      await writeShard(local, s);
      await writeShard(remote, s);
      expect((await s3.list()).map((e) => e.key)).toEqual([remote.keyOf(s.shard.sha256), `${remote.keyOf(s.shard.sha256)}.sha256`]);
      const ranged = vi.spyOn(s3, 'createReadStream');
      const locations = [{ shard: 0, row: 6 }, { shard: 0, row: 2 }, { shard: 0, row: 3 }];
      const fresh = new FeatureCache({ store: s3, backboneHash: BACKBONE, tokens: N, dim: D });
      const got = await fresh.reader([s.shard]).read(locations);
      expect(sameBits(got, await local.reader([s.shard]).read(locations))).toBe(true);
      expect(ranged.mock.calls.every(([, range]) => range !== undefined)).toBe(true);
      expect(ranged).toHaveBeenCalledTimes(4); // header, table, rows 2–3, row 6
      expect(await fresh.verify(s.shard)).toEqual({ state: 'good' });
      // A truncated object on S3 is refused too.
      const key = remote.keyOf(s.shard.sha256);
      await s3.put(key, (await s3.get(key)).subarray(0, featureDataOffset(ROWS) + 100));
      await expect(new FeatureCache({ store: s3, backboneHash: BACKBONE, tokens: N, dim: D }).reader([s.shard]).read(locations)).rejects.toThrow(new RegExp(`feature file s3://.*truncated`));
      await local.close();
    } finally {
      for (const { key } of await s3.list()) await s3.delete(key);
    }
  });
});

describe('Limiter', () => {
  it('runs at most max at once, even when a newcomer arrives while a waiter is being woken', async () => {
    const limiter = new Limiter(2);
    let active = 0;
    let peak = 0;
    const gates: Array<() => void> = [];
    const task = () =>
      limiter.run(async () => {
        peak = Math.max(peak, ++active);
        await new Promise<void>((r) => gates.push(r));
        active--;
      });
    const runs = [task(), task(), task()]; // the third waits
    await new Promise((r) => setTimeout(r, 0));
    expect(gates).toHaveLength(2);
    gates.shift()!(); // the first ends: its permit goes to the third …
    await Promise.resolve();
    await Promise.resolve();
    runs.push(task()); // … so a newcomer in the meantime must wait
    await new Promise((r) => setTimeout(r, 0));
    expect(peak).toBe(2);
    while (gates.length > 0) {
      gates.shift()!();
      await new Promise((r) => setTimeout(r, 0));
    }
    await Promise.all(runs);
    expect(peak).toBe(2);
  });
});

describe('ReadModePolicy', () => {
  const window = ReadModePolicy.WINDOW;
  it('stays synchronous while reads take page-cache time', () => {
    const p = new ReadModePolicy();
    for (let i = 0; i < 10 * window; i++) {
      expect(p.sync()).toBe(true);
      p.record(i % 4 === 0 ? 1 : 0.01, 41_472); // a quarter slow (1 ms) is not more than a quarter
    }
  });

  it('goes through the thread pool for ASYNC_READS reads when more than a quarter of a window waited for the disk, then tries again', () => {
    const p = new ReadModePolicy();
    for (let i = 0; i < window; i++) {
      expect(p.sync()).toBe(true);
      p.record(i % 3 === 0 ? 0.2 : 0.005, 41_472); // 11 of 32 over 30 µs + 10 µs
    }
    for (let i = 0; i < ReadModePolicy.ASYNC_READS; i++) expect(p.sync()).toBe(false);
    expect(p.sync()).toBe(true);
  });

  it('scales the threshold with the read size: 1 MiB in 250 µs is a page-cache copy', () => {
    const p = new ReadModePolicy();
    for (let i = 0; i < window; i++) p.record(0.25, 1 << 20);
    expect(p.sync()).toBe(true);
    for (let i = 0; i < window; i++) p.record(0.35, 1 << 20);
    expect(p.sync()).toBe(false);
  });
});
