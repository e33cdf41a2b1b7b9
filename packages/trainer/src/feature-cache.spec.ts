import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DataError, openStore, Rng, ShapeError } from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFeatureFile, encodeFeatureFile, FEATURE_HEADER_BYTES, FeatureCache } from './feature-cache.js';

const hex = (s: string) => createHash('sha256').update(s).digest('hex');
const BACKBONE = hex('backbone A');
const OTHER_BACKBONE = hex('backbone B');
const N = 36;
const D = 8;

function features(seed: number, n = N * D): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-features-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FeatureCache', () => {
  it('stores, finds and returns features bit-for-bit, across instances', async () => {
    const cacheDir = join(dir, 'roundtrip');
    const cache = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D });
    const img = hex('image 1');
    const data = features(1);
    data[3] = -0; // signed zero and a subnormal survive byte-exact
    data[4] = 1e-42;
    expect(await cache.has(img)).toBe(false);
    expect(await cache.get(img)).toBeUndefined();
    await cache.put(img, data);
    expect(await cache.has(img)).toBe(true);
    expect(sameBits((await cache.get(img))!, data)).toBe(true);

    // A new instance (no memory) reads the file.
    const reopened = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, memoryBytes: 0 });
    expect(await reopened.has(img)).toBe(true);
    const back = (await reopened.get(img))!;
    expect(sameBits(back, data)).toBe(true);
    expect(Object.is(back[3], -0)).toBe(true);

    // File layout: <backbone>/<2 hex>/<image>.f32 with the documented header.
    expect(cache.keyOf(img)).toBe(`${BACKBONE}/${img.slice(0, 2)}/${img}.f32`);
    const bytes = await readFile(join(cacheDir, BACKBONE, img.slice(0, 2), `${img}.f32`));
    expect(bytes.length).toBe(FEATURE_HEADER_BYTES + 4 * N * D);
    expect(bytes.toString('latin1', 0, 4)).toBe('SRFC');
    expect([bytes.readUInt32LE(4), bytes.readUInt32LE(8), bytes.readUInt32LE(12)]).toEqual([1, N, D]);
    expect(bytes.toString('hex', 16, 48)).toBe(BACKBONE);
    expect(bytes.toString('hex', 48, 80)).toBe(img);
    expect(bytes.readFloatLE(80 + 4 * 7)).toBe(data[7]);

    // Another backbone never sees these features.
    const other = new FeatureCache({ dir: cacheDir, backboneHash: OTHER_BACKBONE, tokens: N, dim: D });
    expect(await other.has(img)).toBe(false);
    expect(await other.get(img)).toBeUndefined();
  });

  it('returns independent copies of what was put', async () => {
    const cache = new FeatureCache({ dir: join(dir, 'copies'), backboneHash: BACKBONE, tokens: N, dim: D });
    const img = hex('image copies');
    const data = features(2);
    const original = data.slice();
    await cache.put(img, data);
    data.fill(0); // the caller reuses its buffer
    expect(sameBits((await cache.get(img))!, original)).toBe(true);
  });

  it('refuses bad inputs and damaged entries with typed errors', async () => {
    const cacheDir = join(dir, 'damaged');
    const cache = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, memoryBytes: 0 });
    await expect(cache.put(hex('x'), features(3, N * D - 1))).rejects.toThrow(ShapeError);
    await expect(cache.put('ABC', features(3))).rejects.toThrow(DataError);
    expect(() => new FeatureCache({ backboneHash: BACKBONE, tokens: N, dim: D })).toThrow(ConfigError);
    expect(() => new FeatureCache({ dir: cacheDir, backboneHash: 'nope', tokens: N, dim: D })).toThrow(DataError);
    expect(() => new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: 0, dim: D })).toThrow(ConfigError);

    const img = hex('image damaged');
    await cache.put(img, features(4));
    const path = join(cacheDir, cache.keyOf(img));
    const bytes = await readFile(path);

    // Same backbone, other shape: a config mismatch, not garbage features.
    const wide = new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D + 1 });
    await expect(wide.get(img)).rejects.toThrow(/shape \[36, 8\], expected \[36, 9\]/);

    await writeFile(path, bytes.subarray(0, bytes.length - 4));
    await expect(cache.get(img)).rejects.toThrow(DataError);
    await expect(cache.get(img)).rejects.toThrow(path.split('/').pop()!);

    const swapped = Buffer.from(bytes);
    swapped.write(hex('another image'), 48, 'hex'); // an entry filed under the wrong key
    await writeFile(path, swapped);
    await expect(cache.get(img)).rejects.toThrow(/image hash/);

    const magic = Buffer.from(bytes);
    magic.write('XXXX', 0, 'latin1');
    await writeFile(path, magic);
    await expect(cache.get(img)).rejects.toThrow(/bad magic/);
  });

  it('survives concurrent writers of the same entries (atomic publish, no temp files left)', async () => {
    const cacheDir = join(dir, 'concurrent');
    const writers = Array.from({ length: 4 }, () => new FeatureCache({ dir: cacheDir, backboneHash: BACKBONE, tokens: N, dim: D, memoryBytes: 0 }));
    const images = Array.from({ length: 6 }, (_, i) => hex(`concurrent ${i}`));
    const values = images.map((_, i) => features(100 + i));
    const reader = writers[0];
    const reads: Array<Promise<Float32Array | undefined>> = [];
    await Promise.all(
      writers.flatMap((w) =>
        images.map(async (img, i) => {
          await w.put(img, values[i]);
          reads.push(reader.get(img));
        }),
      ),
    );
    for (const r of await Promise.all(reads)) expect(r === undefined || values.some((v) => sameBits(v, r))).toBe(true);
    for (let i = 0; i < images.length; i++) expect(sameBits((await reader.get(images[i]))!, values[i])).toBe(true);
    const leftovers: string[] = [];
    for (const sub of await readdir(join(cacheDir, BACKBONE))) {
      for (const f of await readdir(join(cacheDir, BACKBONE, sub))) if (!f.endsWith('.f32')) leftovers.push(f);
    }
    expect(leftovers).toEqual([]);
  });

  it('works on an S3 store', async () => {
    const bucket = process.env.SMOLRATE_TEST_S3_BUCKET;
    if (!bucket || !process.env.AWS_ENDPOINT_URL_S3) throw new Error('the vitest global setup did not provide an S3 server');
    const s3 = openStore(`s3://${bucket}/trainer-features-${randomBytes(6).toString('hex')}`);
    try {
      const cache = new FeatureCache({ store: s3, backboneHash: BACKBONE, tokens: N, dim: D });
      const img = hex('s3 image');
      const data = features(9);
      expect(await cache.has(img)).toBe(false);
      expect(await cache.get(img)).toBeUndefined();
      await cache.put(img, data);
      const fresh = new FeatureCache({ store: s3, backboneHash: BACKBONE, tokens: N, dim: D, memoryBytes: 0 });
      expect(await fresh.has(img)).toBe(true);
      expect(sameBits((await fresh.get(img))!, data)).toBe(true);
      expect((await s3.list()).map((e) => e.key)).toEqual([cache.keyOf(img)]);
    } finally {
      for (const { key } of await s3.list()) await s3.delete(key);
    }
  });
});

describe('encodeFeatureFile / decodeFeatureFile', () => {
  const IMAGE = hex('codec image');
  const URI = 'file:///cache/ab/codec-image.f32';
  const expected = { backboneHash: BACKBONE, imageHash: IMAGE, tokens: N, dim: D };

  it('round-trips the values bit for bit, from a view and into a fresh array', () => {
    const data = features(11);
    data[0] = -0;
    data[1] = 1e-42; // a subnormal
    data[2] = NaN;
    const padded = new Float32Array(data.length + 2);
    padded.set(data, 1);
    const bytes = encodeFeatureFile(BACKBONE, IMAGE, N, D, padded.subarray(1, 1 + data.length));
    expect(bytes.equals(encodeFeatureFile(BACKBONE, IMAGE, N, D, data))).toBe(true); // same inputs, same bytes
    expect(bytes.length).toBe(FEATURE_HEADER_BYTES + 4 * N * D);

    const unaligned = Buffer.concat([Buffer.from([0xee]), bytes]).subarray(1);
    const back = decodeFeatureFile(unaligned, expected, URI);
    expect(sameBits(back, data)).toBe(true);
    unaligned.fill(0, FEATURE_HEADER_BYTES); // the decoded array does not share the file's memory
    expect(sameBits(back, data)).toBe(true);
  });

  it('rejects an entry of another backbone, image or shape, or of the wrong length, naming the uri', () => {
    const bytes = encodeFeatureFile(BACKBONE, IMAGE, N, D, features(12));
    const rejects = (b: Buffer, why: RegExp, exp = expected) => {
      expect(() => decodeFeatureFile(b, exp, URI)).toThrow(DataError);
      expect(() => decodeFeatureFile(b, exp, URI)).toThrow(`feature cache entry ${URI}: `);
      expect(() => decodeFeatureFile(b, exp, URI)).toThrow(why);
    };
    rejects(bytes, new RegExp(`backbone hash ${BACKBONE}, expected ${OTHER_BACKBONE}`), { ...expected, backboneHash: OTHER_BACKBONE });
    rejects(bytes, new RegExp(`image hash ${IMAGE}, expected ${hex('other image')}`), { ...expected, imageHash: hex('other image') });
    rejects(bytes, /shape \[36, 8\], expected \[35, 8\]/, { ...expected, tokens: N - 1 });
    rejects(bytes, /shape \[36, 8\], expected \[36, 16\]/, { ...expected, dim: 2 * D });
    rejects(bytes.subarray(0, bytes.length - 1), new RegExp(`${bytes.length - 1} bytes, expected ${bytes.length} for \\[36, 8\\] float32`));
    rejects(Buffer.concat([bytes, Buffer.alloc(4)]), new RegExp(`${bytes.length + 4} bytes, expected ${bytes.length}`));
    rejects(bytes.subarray(0, 40), /40 bytes, shorter than the 80-byte header/);
  });

  // The header is checked field by field; the N·D values carry no checksum of their own.
  it('rejects a flipped bit in each header field, saying which field is wrong', () => {
    const bytes = encodeFeatureFile(BACKBONE, IMAGE, N, D, features(13));
    const fields: Array<[number, RegExp]> = [
      [0, /bad magic/],
      [4, /format version 2, expected 1/],
      [8, /shape \[37, 8\]/],
      [12, /shape \[36, 9\]/],
      [16 + 31, /backbone hash/],
      [48, /image hash/],
    ];
    for (const [offset, why] of fields) {
      const flipped = Buffer.from(bytes);
      flipped[offset] ^= offset === 4 ? 0x03 : 0x01;
      expect(() => decodeFeatureFile(flipped, expected, URI)).toThrow(why);
    }
    expect(sameBits(decodeFeatureFile(bytes, expected, URI), features(13))).toBe(true);
  });
});
