/**
 * End-to-end: the synthetic dataset (every trap planted) → build-shards, in every mode.
 *  - single process: counts add up, every record lands where truth.jsonl says;
 *  - 3 BullMQ worker processes → the same bytes (shards, manifest, rejects);
 *  - 3 workers, one SIGKILLed while its first build-shard job runs → still the same bytes;
 *  - output to the S3-compatible server → the same bytes;
 *  - --dry-run (through the CLI) → a selection report, no shard, no manifest.
 * Images are served by the static HTTP server through a URL rewrite rule (as a real mirror), at
 * 64×64 to keep the runs short; small chunks so that there are many shards.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  openStore,
  probeImage,
  readManifest,
  readRejects,
  readShardRows,
  type Manifest,
  type ShardRow,
  type Store,
} from '@smolrate/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildShards, formatBuildSummary } from '../src/build-shards.js';
import { dispatch } from '../src/cli.js';
import { resolveDataPrepConfig, type DataPrepConfig } from '../src/config.js';
import { itemScore } from '../src/select.js';
import { startStaticServer, type StaticServer } from '../src/static-server.js';
import { generateSynthetic, TRUTH_FILE, type TruthRecord } from '../src/synth.js';
import type { PoolEvent } from '../src/worker-pool.js';

const SEED = 11;
const CATEGORIES = ['All_Beauty', 'Books', 'Electronics', 'Toys_and_Games'];

let root: string;
let data: string;
let inputs: string[];
let server: StaticServer;
let truth: TruthRecord[];
let baseline: Map<string, string>;
let baselineManifest: Manifest;

/** Keys → SHA-256 of everything a build published (the work area excluded). */
async function snapshot(store: Store): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const { key } of await store.list('')) {
    if (key.startsWith('_work/')) continue;
    out.set(key, createHash('sha256').update(await store.get(key)).digest('hex'));
  }
  return out;
}

function config(out: string, overrides: Record<string, unknown> = {}): DataPrepConfig {
  return resolveDataPrepConfig({
    overrides,
    file: {
      input: inputs,
      out,
      seed: SEED,
      // K above every category's candidate count: every candidate is kept, so each record's fate
      // is exactly the one truth.jsonl gives (sampling is covered by the dry-run test).
      selection: { minRatingNumber: 10, topK: 1000, bottomK: 1000, valSize: 20 },
      images: { size: 64, concurrency: 4, retries: 0, timeoutMs: 10_000, rewrite: { 'https://m.media-amazon.com/images/I/': server.url } },
      // 1024 / 128 = 8 items per chunk: ~25 train shards and 3 val shards.
      shards: { targetBytes: 1024, bytesPerItemEstimate: 128, rowGroupSize: 4 },
    },
  });
}

const quietWorkers = { ...process.env, SMOLRATE_LOG_LEVEL: 'error' };

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'smolrate-e2e-'));
  data = join(root, 'data');
  await generateSynthetic({ out: data, items: 240, seed: 4, categories: CATEGORIES, concurrency: 2 });
  // The dataset folder itself: its truth.jsonl, README.md and images/ are not inputs.
  inputs = [data];
  expect((await readdir(data)).filter((f) => f.startsWith('meta_')).length).toBe(CATEGORIES.length);
  truth = (await readFile(join(data, TRUTH_FILE), 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as TruthRecord);
  server = await startStaticServer(join(data, 'images'));
});

afterAll(async () => {
  await server?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('build-shards end to end', () => {
  it('single process: counts add up and every trap lands where truth.jsonl says', async () => {
    const out = join(root, 'local');
    const result = await buildShards({ cfg: config(out) });
    const store = openStore(out);
    const manifest = await readManifest(store);
    const c = manifest.counts;
    const rejectedTotal = Object.values(c.rejected.byReason).reduce((a, b) => a + b, 0);
    expect(c.read).toBe(truth.length);
    expect(Object.keys(c.perCategory)).toEqual(CATEGORIES);
    expect(c.read).toBe(c.kept + rejectedTotal);
    expect(manifest.splits.train.rows + manifest.splits.val.rows).toBe(c.kept);
    expect(manifest.splits.val.rows).toBeGreaterThan(0);
    expect(manifest.splits.train.shards.length).toBeGreaterThan(5);
    expect(c.rejected.byReason.not_selected).toBeUndefined();
    for (const cat of CATEGORIES) {
      const pc = c.perCategory[cat];
      expect(pc.read).toBe(truth.filter((t) => t.category === cat).length);
      expect(pc.read).toBe(pc.kept + pc.rejected);
    }

    // Rows, shard by shard.
    const rows: Array<ShardRow & { split: string }> = [];
    for (const split of ['train', 'val'] as const) {
      for (const info of manifest.splits[split].shards) {
        const shardRows = await readShardRows(store, '', info);
        // Rows follow the seeded score order inside every shard.
        const scores = shardRows.map((r) => itemScore(SEED, r.parent_asin));
        expect(scores).toEqual([...scores].sort((a, b) => a - b));
        if (split === 'train') expect(new Set(shardRows.map((r) => r.category))).toEqual(new Set([info.file.slice(6).replace(/-\d{5}\.parquet$/, '')]));
        rows.push(...shardRows.map((r) => ({ ...r, split })));
      }
    }
    expect(rows.length).toBe(c.kept);
    const info = await probeImage(rows[0].image);
    expect([info.width, info.height, info.sourceFormat]).toEqual([64, 64, 'jpeg']);

    // Every record's fate, as truth.jsonl has it.
    const rejects = await readRejects(store);
    expect(rejects.length).toBe(rejectedTotal); // nothing is "not_selected" here, so all are listed
    const rejectAt = new Map(rejects.map((r) => [`${r.source}#${r.line}`, r]));
    const rowByKey = new Map(rows.map((r) => [`${r.category}/${r.parent_asin}`, r]));
    const seenReasons = new Set<string>();
    for (const t of truth) {
      const where = `${pathToFileURL(join(data, t.source)).href}#${t.line}`;
      if (t.fate === 'kept-candidate') {
        expect(rejectAt.get(where), where).toBeUndefined();
        const row = rowByKey.get(`${t.category}/${t.parent_asin}`);
        expect(row, `${where} ${t.parent_asin} should be in a shard`).toBeDefined();
        expect(row!.average_rating).toBe(t.average_rating);
        expect(row!.rating_number).toBe(t.rating_number);
      } else {
        expect(rejectAt.get(where)?.reason, `${where} (${t.traps.join(',')})`).toBe(t.fate);
        seenReasons.add(t.fate);
      }
    }
    // Every fatal trap kind occurred (select, plan and image stages).
    expect([...seenReasons].sort()).toEqual(
      ['duplicate_parent_asin', 'image_corrupt', 'image_not_found', 'malformed_json', 'no_average_rating', 'no_main_image', 'no_rating_number', 'too_few_ratings'].sort(),
    );

    // The validation hold-out: the lowest scores among the selected items (image failures leave gaps).
    const selectedScores = [
      ...rows.map((r) => r.parent_asin),
      ...rejects.filter((r) => r.reason.startsWith('image_')).map((r) => r.parent_asin!),
    ]
      .map((a) => ({ a, s: itemScore(SEED, a) }))
      .sort((x, y) => x.s - y.s || (x.a < y.a ? -1 : 1))
      .slice(0, 20)
      .map((x) => x.a);
    const valRows = rows.filter((r) => r.split === 'val').map((r) => r.parent_asin);
    expect(valRows.every((a) => selectedScores.includes(a))).toBe(true);
    expect(valRows.length).toBe(20 - rejects.filter((r) => r.reason.startsWith('image_') && selectedScores.includes(r.parent_asin!)).length);

    // The work area is gone; the summary names the numbers.
    expect((await store.list('_work/')).length).toBe(0);
    const summary = formatBuildSummary(result);
    expect(summary).toContain('build complete');
    expect(summary).toContain(`read ${c.read}, kept ${c.kept}`);

    baseline = await snapshot(store);
    baselineManifest = manifest;
    expect(baseline.size).toBe(2 + manifest.splits.train.shards.length + manifest.splits.val.shards.length);
  });

  it('3 BullMQ worker processes give byte-identical shards, manifest and rejects', async () => {
    expect(baseline).toBeDefined();
    const out = join(root, 'redis');
    const events: PoolEvent[] = [];
    const result = await buildShards({
      cfg: config(out, { redis: process.env.REDIS_URL, workers: 3 }),
      workerEnv: quietWorkers,
      onWorkerEvent: (e) => events.push(e),
    });
    expect(result.mode).toBe('redis');
    // The jobs really were spread over the worker processes.
    const pids = new Set(events.filter((e) => e.kind === 'job' && e.type === 'active').map((e) => e.pid));
    expect(pids.size).toBeGreaterThan(1);
    expect(await snapshot(openStore(out))).toEqual(baseline);
  });

  it('a worker SIGKILLed during its first build-shard job: the build completes with the same bytes', async () => {
    expect(baseline).toBeDefined();
    const out = join(root, 'killed');
    let killed: { pid: number; job: string } | undefined;
    const exits: PoolEvent[] = [];
    const completions: Array<{ pid: number; job: string }> = [];
    // Slow image answers so that the killed job is surely still running.
    server.setFaults({ slowMs: 40 });
    try {
      await buildShards({
        cfg: config(out, { redis: process.env.REDIS_URL, workers: 3, 'images.concurrency': 2 }),
        workerEnv: quietWorkers,
        lockDurationMs: 2000,
        stalledIntervalMs: 1000,
        // No replacement: the two survivors must take the killed worker's job over.
        maxWorkerRestarts: 0,
        onWorkerEvent: (e) => {
          if (e.kind === 'job' && e.type === 'active' && e.name === 'build-shard' && killed === undefined) {
            killed = { pid: e.pid, job: e.id };
            process.kill(e.pid, 'SIGKILL');
          }
          if (e.kind === 'exit') exits.push(e);
          if (e.kind === 'job' && e.type === 'completed') completions.push({ pid: e.pid, job: e.id });
        },
      });
    } finally {
      server.setFaults({});
    }
    expect(killed).toBeDefined();
    expect(exits.some((e) => e.kind === 'exit' && e.pid === killed!.pid && e.signal === 'SIGKILL' && !e.expected)).toBe(true);
    // The killed worker's job was taken over (after its lock expired) and completed by another worker.
    const takers = completions.filter((c) => c.job === killed!.job);
    expect(takers).toHaveLength(1);
    expect(takers[0].pid).not.toBe(killed!.pid);
    expect(await snapshot(openStore(out))).toEqual(baseline);
  });

  it('output to the S3-compatible server equals the local output byte for byte', async () => {
    expect(baseline).toBeDefined();
    const bucket = process.env.SMOLRATE_TEST_S3_BUCKET!;
    const uri = `s3://${bucket}/e2e-${randomBytes(4).toString('hex')}/shards`;
    const store = openStore(uri);
    try {
      await buildShards({ cfg: config(uri) });
      expect(await snapshot(store)).toEqual(baseline);
      expect((await readManifest(store)).counts).toEqual(baselineManifest.counts);
    } finally {
      for (const { key } of await store.list('')) await store.delete(key);
    }
  });

  it('--dry-run (CLI) reports the selection and writes no shard', async () => {
    const out = join(root, 'dry');
    const printed: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      printed.push(String(chunk));
      return true;
    });
    let code: number;
    try {
      code = await dispatch([
        'build-shards',
        ...inputs,
        '--out',
        out,
        '--dry-run',
        '--quiet',
        '--seed',
        String(SEED),
        '--selection.top-k',
        '5',
        '--selection.bottom-k',
        '5',
        '--selection.val-size',
        '6',
        '--shards.target-bytes',
        '1024',
        '--shards.bytes-per-item-estimate',
        '128',
      ]);
    } finally {
      spy.mockRestore();
    }
    expect(code).toBe(0);
    const text = printed.join('');
    expect(text).toContain('dry run');
    expect(text).toMatch(/not_selected\s+\d+/);
    // Top-5 ∪ bottom-5: 10 selected per category (each has more than 10 candidates).
    for (const cat of CATEGORIES) expect(text).toMatch(new RegExp(`${cat}\\s+\\d+\\s+10\\s`));
    expect(await openStore(out).list('')).toEqual([]);
  });

  it('a missing input fails with a clear message and a non-zero exit code', async () => {
    const errors: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      errors.push(String(chunk));
      return true;
    });
    let code: number;
    try {
      code = await dispatch(['build-shards', join(data, 'meta_Nope.jsonl'), '--out', join(root, 'none'), '--quiet']);
    } finally {
      spy.mockRestore();
    }
    expect(code).not.toBe(0);
    expect(errors.join('')).toMatch(/inputs not found: .*meta_Nope\.jsonl/);
  });
});
