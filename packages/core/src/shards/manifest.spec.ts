/* eslint-disable @typescript-eslint/no-explicit-any -- these tests edit manifests into deliberately malformed shapes */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataError, ShardIntegrityError } from '../errors.js';
import { openStore } from '../storage/open-store.js';
import type { Store } from '../storage/store.js';
import { manifestProblems, readManifest, serializeManifest, validateManifest, writeManifest, type Manifest } from './manifest.js';
import { SHARD_FORMAT } from './schema.js';

const SHA = (c: string): string => c.repeat(64);

function manifest(): Manifest {
  return {
    format: SHARD_FORMAT,
    toolVersion: '0.1.0',
    seed: 1234,
    config: { selection: { minRatingNumber: 10, topK: 2, validationSize: 1 }, shards: { rowGroupSize: 256 }, '10': 'a', '9': 'b' },
    inputs: [
      { uri: 'file:///data/All_Beauty.jsonl', records: 6 },
      { uri: 'file:///data/Books.jsonl.gz', records: 4 },
    ],
    counts: {
      read: 10,
      kept: 5,
      rejected: { byReason: { 'rating-number-below-min': 3, 'no-image': 2 } },
      perCategory: {
        All_Beauty: { read: 6, kept: 3, rejected: 3 },
        Books: { read: 4, kept: 2, rejected: 2 },
      },
    },
    splits: {
      train: {
        shards: [
          { file: 'train/shard-00000.parquet', rows: 2, bytes: 1000, sha256: SHA('a') },
          { file: 'train/shard-00001.parquet', rows: 2, bytes: 1001, sha256: SHA('b') },
        ],
        rows: 4,
      },
      val: { shards: [{ file: 'val/shard-00000.parquet', rows: 1, bytes: 999, sha256: SHA('c') }], rows: 1 },
    },
    createdBy: 'test',
  };
}

function problemsAfter(edit: (m: Record<string, any>) => void): string[] {
  const m = structuredClone(manifest()) as Record<string, any>;
  edit(m);
  return manifestProblems(m);
}

describe('validateManifest', () => {
  it('accepts a consistent manifest and returns it', () => {
    expect(manifestProblems(manifest())).toEqual([]);
    expect(validateManifest(manifest())).toEqual(manifest());
    const { createdBy: _, ...noCreatedBy } = manifest();
    expect(manifestProblems(noCreatedBy)).toEqual([]);
  });

  it('catches a wrong format name', () => {
    expect(problemsAfter((m) => (m.format = 'smolrate-shards/2'))).toEqual([
      'manifest.format: expected "smolrate-shards/1", got "smolrate-shards/2"',
    ]);
  });

  it('catches missing fields, each by name', () => {
    const problems = problemsAfter((m) => {
      delete m.toolVersion;
      delete m.seed;
      delete m.config;
      delete m.splits.val;
      delete m.counts.perCategory.Books.kept;
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'manifest.toolVersion: missing',
        'manifest.seed: missing',
        'manifest.config: missing',
        'manifest.splits.val: missing',
        'manifest.counts.perCategory.Books.kept: missing',
      ]),
    );
    expect(manifestProblems({})).toEqual([
      'manifest.format: missing',
      'manifest.toolVersion: missing',
      'manifest.seed: missing',
      'manifest.config: missing',
      'manifest.inputs: missing',
      'manifest.counts: missing',
      'manifest.splits: missing',
    ]);
    expect(manifestProblems([])).toEqual(['manifest: expected a JSON object']);
  });

  it('catches read ≠ kept + rejected, overall and per category', () => {
    expect(problemsAfter((m) => (m.counts.rejected.byReason['no-image'] = 1))).toEqual([
      'manifest.counts: read (10) ≠ kept (5) + rejected (4)',
      'manifest.counts.perCategory: Σ rejected (5) ≠ counts rejected (4)',
    ]);
    expect(problemsAfter((m) => (m.counts.perCategory.Books = { read: 4, kept: 2, rejected: 1 }))).toEqual([
      'manifest.counts.perCategory.Books: read (4) ≠ kept (2) + rejected (1)',
      'manifest.counts.perCategory: Σ rejected (4) ≠ counts rejected (5)',
    ]);
  });

  it('catches counts that disagree with the inputs and the splits', () => {
    expect(problemsAfter((m) => (m.inputs[1].records = 5))).toEqual(['manifest.counts.read (10) ≠ Σ inputs[].records (11)']);
    expect(problemsAfter((m) => (m.splits.train.rows = 5))).toEqual([
      'manifest.splits.train.rows (5) ≠ Σ shards[].rows (4)',
      'manifest.counts.kept (5) ≠ splits.train.rows + splits.val.rows (6)',
    ]);
  });

  it('catches negative and non-integer counts', () => {
    const problems = problemsAfter((m) => {
      m.counts.rejected.byReason['no-image'] = -2;
      m.inputs[0].records = 1.5;
      m.splits.val.shards[0].bytes = -1;
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'manifest.counts.rejected.byReason.no-image: negative count -2',
        'manifest.inputs[0].records: expected a non-negative integer, got 1.5',
        'manifest.splits.val.shards[0].bytes: expected a positive integer, got -1',
      ]),
    );
  });

  it('catches duplicate shard files, also across splits', () => {
    expect(problemsAfter((m) => (m.splits.val.shards[0].file = 'train/shard-00001.parquet'))).toEqual([
      'manifest.splits.val.shards[0].file: duplicate shard file "train/shard-00001.parquet" (also manifest.splits.train.shards[1])',
    ]);
  });

  it('catches bad sha256 strings', () => {
    const problems = problemsAfter((m) => {
      m.splits.train.shards[0].sha256 = SHA('A'); // uppercase
      m.splits.train.shards[1].sha256 = 'abc';
      m.splits.val.shards[0].sha256 = 42;
    });
    expect(problems).toEqual([
      `manifest.splits.train.shards[0].sha256: expected 64 lowercase hex digits, got "${SHA('A')}"`,
      'manifest.splits.train.shards[1].sha256: expected 64 lowercase hex digits, got "abc"',
      'manifest.splits.val.shards[0].sha256: expected 64 lowercase hex digits, got 42',
    ]);
  });

  it('catches unknown fields, bad shard keys, duplicate inputs and non-JSON config', () => {
    const problems = problemsAfter((m) => {
      m.extra = 1;
      m.splits.train.shards[0].file = '../escape.parquet';
      m.inputs[1].uri = m.inputs[0].uri;
      m.config = { x: Number.NaN };
    });
    expect(problems).toEqual([
      'manifest.extra: unknown field',
      'manifest.config: $.x: NaN is not representable in JSON',
      'manifest.inputs[1].uri: duplicate input "file:///data/All_Beauty.jsonl"',
      'manifest.splits.train.shards[0].file "../escape.parquet": must not contain "." or ".." segments',
    ]);
  });

  it('throws one DataError listing every problem', () => {
    const m = structuredClone(manifest()) as Record<string, any>;
    m.format = 'x';
    m.seed = 'seven';
    m.splits.train.shards[1].sha256 = 'nope';
    expect(() => validateManifest(m)).toThrow(DataError);
    expect(() => validateManifest(m)).toThrow(
      /^invalid manifest \(3 problems\): manifest\.format: .*; manifest\.seed: .*; manifest\.splits\.train\.shards\[1\]\.sha256: /,
    );
  });
});

describe('writeManifest / readManifest', () => {
  let dir: string;
  let store: Store;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'smolrate-manifest-'));
    store = openStore(dir);
    for (const split of [manifest().splits.train, manifest().splits.val]) {
      for (const s of split.shards) await store.put(`build/${s.file}`, Buffer.alloc(s.bytes));
    }
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes canonical JSON (sorted keys, trailing newline) with deterministic bytes, and reads it back', async () => {
    await writeManifest(store, manifest(), { root: 'build' });
    const text = (await store.get('build/manifest.json')).toString('utf8');
    expect(text.endsWith('}\n')).toBe(true);
    expect(text.startsWith('{\n  "config": {\n    "10": "a",\n    "9": "b",\n    "selection": {')).toBe(true);
    const top = [...text.matchAll(/^ {2}"(\w+)":/gm)].map((x) => x[1]);
    expect(top).toEqual(['config', 'counts', 'createdBy', 'format', 'inputs', 'seed', 'splits', 'toolVersion']);
    expect(JSON.parse(text)).toEqual(manifest());
    expect(await readManifest(store, { root: 'build' })).toEqual(manifest());

    // The same content built in another key order gives the same bytes.
    const m = manifest();
    const reordered = Object.fromEntries(Object.entries(m).reverse()) as unknown as Manifest;
    reordered.counts = { perCategory: m.counts.perCategory, rejected: m.counts.rejected, kept: m.counts.kept, read: m.counts.read };
    expect(serializeManifest(reordered)).toBe(text);
  });

  it('refuses to write an invalid manifest, and one whose shards are missing or of another size', async () => {
    const bad = { ...manifest(), seed: -0.5 };
    await expect(writeManifest(store, bad, { root: 'build' })).rejects.toThrow(/manifest\.seed: expected an integer/);
    expect(await store.exists('build/manifest.json')).toBe(false);

    await expect(writeManifest(store, manifest(), { root: 'elsewhere' })).rejects.toThrow(ShardIntegrityError);
    await expect(writeManifest(store, manifest(), { root: 'elsewhere' })).rejects.toThrow(/listed in the manifest but not found/);
    await store.put('build/val/shard-00000.parquet', Buffer.alloc(5));
    await expect(writeManifest(store, manifest(), { root: 'build' })).rejects.toThrow(
      /val\/shard-00000\.parquet: size mismatch: expected 999 bytes \(manifest\), actual 5 bytes/,
    );
    expect(await store.exists('build/manifest.json')).toBe(false);
    await writeManifest(store, manifest(), { root: 'build', verifyShards: false });
    expect(await store.exists('build/manifest.json')).toBe(true);
  });

  it('reports unparseable and invalid manifests with the manifest URI', async () => {
    await writeManifest(store, manifest(), { root: 'build' });
    const file = fileURLToPath(store.uriOf('build/manifest.json'));
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.slice(0, -20));
    await expect(readManifest(store, { root: 'build' })).rejects.toThrow(ShardIntegrityError);
    await expect(readManifest(store, { root: 'build' })).rejects.toThrow(`shard ${store.uriOf('build/manifest.json')}: not valid JSON`);

    await writeFile(file, text.replace('"read": 10', '"read": 11'));
    await expect(readManifest(store, { root: 'build' })).rejects.toThrow(DataError);
    await expect(readManifest(store, { root: 'build' })).rejects.toThrow(
      `${store.uriOf('build/manifest.json')}: invalid manifest (3 problems): manifest.counts: read (11) ≠ kept (5) + rejected (5); ` +
        'manifest.counts.read (11) ≠ Σ inputs[].records (10); manifest.counts.perCategory: Σ read (10) ≠ counts read (11)',
    );
  });
});
