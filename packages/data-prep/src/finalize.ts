/**
 * The `finalize` step: gathers every step's result from the work area and writes the build's
 * two public files — `rejects.jsonl` (every listed reject, sorted by source and line), then
 * `manifest.json` LAST (the commit point: readers take its presence as "the build is complete").
 *
 * Both files are functions of the results only (never of timing, host or worker count), so the
 * same inputs and seed give the same bytes. The manifest's config is the resolved config minus
 * the execution settings that cannot change a byte of the output (where it was written, how many
 * workers, Redis, the image cache and fetch parallelism) — those would otherwise make two builds of
 * the same data differ.
 */
import {
  compareKeys,
  DataError,
  type JsonValue,
  type Manifest,
  type ManifestCounts,
  normalizeStorageUri,
  parseRejects,
  type RejectRecord,
  SHARD_FORMAT,
  type ShardInfo,
  silentLogger,
  type Logger,
  type Store,
  writeManifest,
  writeRejects,
} from '@smolrate/core';
import { readShardResult, type ShardResult } from './build-shard.js';
import type { DataPrepConfig } from './config.js';
import { readPlan, readSelectResults, type Plan } from './plan.js';
import type { SelectResult } from './select.js';
import { toolVersion } from './tool-version.js';
import { REJECT_REASONS } from './types.js';
import { PLAN_REJECTS_KEY } from './work-area.js';

/** The config as saved in manifest.json: what was built, not where or how fast. */
export function manifestConfig(cfg: DataPrepConfig): JsonValue {
  const { out: _out, redis: _redis, workers: _workers, dryRun: _dryRun, ...rest } = cfg;
  const { concurrency: _c, cacheDir: _cache, ...images } = rest.images;
  // Inputs as canonical URIs: `data/` and `/abs/data` name the same files.
  return { ...rest, input: rest.input.map((u) => normalizeStorageUri(u)), images } as unknown as JsonValue;
}

function add(into: Record<string, number>, key: string, n = 1): void {
  if (n !== 0) into[key] = (into[key] ?? 0) + n;
}

async function readRejectsFile(store: Store, key: string): Promise<RejectRecord[]> {
  const text = (await store.get(key)).toString('utf8');
  try {
    return parseRejects(text);
  } catch (e) {
    throw new DataError(`${store.uriOf(key)}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * The manifest's counts from the step results. Throws DataError when they do not add up
 * (read ≠ kept + rejected, per category or in total) — a bug or a damaged work area, never
 * something to publish.
 */
export function countBuild(selects: readonly SelectResult[], plan: Plan, shards: readonly ShardResult[]): ManifestCounts {
  const byReason: Record<string, number> = {};
  const perCategory: ManifestCounts['perCategory'] = {};
  const categoryOfSource = new Map<string, string>();
  for (const s of selects) {
    categoryOfSource.set(s.source, s.category);
    let rejected = 0;
    for (const [reason, n] of Object.entries(s.rejected)) {
      add(byReason, reason, n);
      rejected += n;
    }
    if (s.read !== s.kept + rejected) {
      throw new DataError(`select ${s.category}: read (${s.read}) ≠ kept (${s.kept}) + rejected (${rejected})`);
    }
    perCategory[s.category] = { read: s.read, kept: 0, rejected };
  }
  for (const c of plan.categories) {
    add(byReason, REJECT_REASONS.duplicate, c.duplicates);
    perCategory[c.category].rejected += c.duplicates;
  }
  for (const r of shards) {
    for (const rej of r.rejects) {
      const cat = categoryOfSource.get(rej.source);
      if (cat === undefined) throw new DataError(`${r.file}: reject of unknown source ${rej.source}`);
      add(byReason, rej.reason);
      perCategory[cat].rejected++;
    }
    for (const [cat, n] of Object.entries(r.rowsByCategory)) {
      if (perCategory[cat] === undefined) throw new DataError(`${r.file}: rows of unknown category ${cat}`);
      perCategory[cat].kept += n;
    }
  }
  let read = 0;
  let kept = 0;
  for (const [cat, c] of Object.entries(perCategory)) {
    if (c.read !== c.kept + c.rejected) throw new DataError(`category ${cat}: read (${c.read}) ≠ kept (${c.kept}) + rejected (${c.rejected})`);
    read += c.read;
    kept += c.kept;
  }
  const sortedReasons = Object.fromEntries(Object.entries(byReason).sort((a, b) => compareKeys(a[0], b[0])));
  return { read, kept, rejected: { byReason: sortedReasons }, perCategory };
}

export interface FinalizeOptions {
  store: Store;
  cfg: DataPrepConfig;
  log?: Logger;
}

/** Runs finalize: writes rejects.jsonl, then manifest.json; returns the manifest. */
export async function finalizeBuild(opts: FinalizeOptions): Promise<Manifest> {
  const { store, cfg } = opts;
  const log = opts.log ?? silentLogger;
  const plan = await readPlan(store);
  const selects = await readSelectResults(
    store,
    plan.categories.map((c) => c.category),
  );
  const shards: ShardResult[] = [];
  for (const task of plan.tasks) shards.push(await readShardResult(store, task));

  const counts = countBuild(selects, plan, shards);

  // Every listed reject: select's (all reasons but not_selected), plan's duplicates, the images'.
  const rejects: RejectRecord[] = [];
  for (const s of selects) {
    const listed = await readRejectsFile(store, s.rejectsKey);
    const expected = Object.entries(s.rejected).reduce((sum, [reason, n]) => sum + (reason === REJECT_REASONS.notSelected ? 0 : n), 0);
    if (listed.length !== expected) {
      throw new DataError(`${store.uriOf(s.rejectsKey)}: ${listed.length} rejects listed, the select result counts ${expected}`);
    }
    rejects.push(...listed);
  }
  const planRejects = await readRejectsFile(store, PLAN_REJECTS_KEY);
  if (planRejects.length !== plan.duplicates) throw new DataError(`plan rejects: ${planRejects.length} listed, the plan counts ${plan.duplicates}`);
  rejects.push(...planRejects);
  for (const r of shards) rejects.push(...r.rejects);

  const split = (name: 'train' | 'val') => {
    const list: ShardInfo[] = shards
      .filter((r) => r.shard !== null && r.file.startsWith(`${name}/`))
      .map((r) => r.shard!)
      .sort((a, b) => compareKeys(a.file, b.file));
    return { shards: list, rows: list.reduce((s, i) => s + i.rows, 0) };
  };

  const manifest: Manifest = {
    format: SHARD_FORMAT,
    toolVersion: toolVersion(),
    seed: cfg.seed,
    config: manifestConfig(cfg),
    inputs: selects.map((s) => ({ uri: s.source, records: s.read })).sort((a, b) => compareKeys(a.uri, b.uri)),
    counts,
    splits: { train: split('train'), val: split('val') },
  };
  await writeRejects(store, rejects);
  await writeManifest(store, manifest);
  log.info('manifest written', { uri: store.uriOf('manifest.json'), kept: counts.kept, read: counts.read, rejects: rejects.length });
  return manifest;
}
