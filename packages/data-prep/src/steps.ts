/**
 * The pipeline's four steps as plain functions of serialisable job data. The single-process mode
 * (pipeline-local.ts) calls them directly; the BullMQ workers (worker.ts) call them from job
 * processors. Steps talk to each other only through the output store's `_work/` area, so any
 * process on any host can run any step, and a retried step just writes the same keys again.
 */
import { type Logger, type Manifest, openStore, silentLogger, type Store } from '@smolrate/core';
import { buildShard, type ShardResult } from './build-shard.js';
import type { DataPrepConfig } from './config.js';
import { finalizeBuild } from './finalize.js';
import { createImageFetcher, type ImageFetcher } from './image-fetch.js';
import type { InputFile } from './inputs.js';
import { planBuild, readSelectResults, type BuildTask, type Plan } from './plan.js';
import { selectCategory, type SelectResult } from './select.js';

/** Everything a step needs to know about its build. */
export interface RunSpec {
  /** Identifies the build (the BullMQ queue prefix, log fields). */
  runId: string;
  /** The resolved config; `cfg.out` is the output URI. */
  cfg: DataPrepConfig;
  /** Items per select chunk (= per train shard before exclusions) and per val shard. */
  chunkRows: number;
}

/** Per-process resources shared by the steps a process runs. */
export interface StepContext {
  log?: Logger;
  /** Output stores by URI (one S3 client pool per process). */
  stores?: Map<string, Store>;
  /** Image fetchers by images-config (their concurrency limit and cache are per process). */
  fetchers?: Map<string, ImageFetcher>;
}

/** Releases what a context holds (the fetchers' idle keep-alive connections). */
export function closeStepContext(ctx: StepContext): void {
  for (const f of ctx.fetchers?.values() ?? []) f.close();
  ctx.fetchers?.clear();
}

function outStore(run: RunSpec, ctx: StepContext = {}): Store {
  const uri = run.cfg.out;
  let store = ctx.stores?.get(uri);
  if (store === undefined) {
    store = openStore(uri);
    ctx.stores?.set(uri, store);
  }
  return store;
}

function fetcherFor(run: RunSpec, ctx: StepContext): ImageFetcher {
  const id = JSON.stringify(run.cfg.images);
  let fetcher = ctx.fetchers?.get(id);
  if (fetcher === undefined) {
    fetcher = createImageFetcher(run.cfg.images, { log: ctx.log });
    ctx.fetchers?.set(id, fetcher);
  }
  return fetcher;
}

/** `select`: one input file → its chunks, rejects and SelectResult in the work area. */
export async function runSelectStep(
  run: RunSpec,
  input: InputFile,
  ctx: StepContext & { onProgress?: (read: number) => void } = {},
): Promise<SelectResult> {
  return selectCategory({
    input: openStore(input.storeUri),
    key: input.key,
    source: input.uri,
    category: input.category,
    cfg: run.cfg,
    work: outStore(run, ctx),
    chunkRows: run.chunkRows,
    log: (ctx.log ?? silentLogger).child({ step: 'select', category: input.category }),
    onProgress: ctx.onProgress,
  });
}

/** `plan`: the select results of `categories` → `_work/plan.json` and the val chunks. */
export async function runPlanStep(run: RunSpec, categories: readonly string[], ctx: StepContext = {}): Promise<Plan> {
  const store = outStore(run, ctx);
  const results = await readSelectResults(store, categories);
  return planBuild({ store, cfg: run.cfg, results, chunkRows: run.chunkRows, log: (ctx.log ?? silentLogger).child({ step: 'plan' }) });
}

/** `build-shard` / `build-val`: one task → one shard and its result JSON. */
export async function runBuildStep(
  run: RunSpec,
  task: BuildTask,
  ctx: StepContext & { onItem?: (done: number, total: number) => void } = {},
): Promise<ShardResult> {
  return buildShard({
    store: outStore(run, ctx),
    task,
    cfg: run.cfg,
    fetcher: fetcherFor(run, ctx),
    log: (ctx.log ?? silentLogger).child({ step: `build-${task.split}`, file: task.file }),
    onItem: ctx.onItem,
  });
}

/** `finalize`: every result → rejects.jsonl, then manifest.json. */
export async function runFinalizeStep(run: RunSpec, ctx: StepContext = {}): Promise<Manifest> {
  return finalizeBuild({ store: outStore(run, ctx), cfg: run.cfg, log: (ctx.log ?? silentLogger).child({ step: 'finalize' }) });
}
