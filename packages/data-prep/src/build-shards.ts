/**
 * `build-shards`: metadata files → selected, planned, fetched and resized items → Parquet shards,
 * rejects.jsonl and manifest.json (written last).
 *
 * Mode:
 *  - no Redis (`redis` unset, `workers` 0): single process (pipeline-local.ts);
 *  - `--redis URL`: the BullMQ flow on that Redis, with `--workers N` local worker processes
 *    (N = 0: only workers started elsewhere with `smolrate-data-prep worker --redis URL`);
 *  - `--workers N` without `--redis`: the flow on a private redis-server (or REDIS_URL when set),
 *    with N local worker processes.
 * Every mode produces the same bytes for the same inputs and seed.
 *
 * The output's `_work/` area is cleared first and removed after a successful build (kept with
 * `keepWork`, and always kept after a failure, for inspection). A previous manifest.json is
 * removed before anything is built, so an interrupted rebuild is never mistaken for a complete one.
 */
import { randomBytes } from 'node:crypto';
import {
  ConfigError,
  createProgress,
  createRedis,
  LocalStore,
  MANIFEST_FILE,
  openStore,
  readManifest,
  redactUrl,
  silentLogger,
  UsageError,
  type Logger,
  type Manifest,
  type Progress,
  type Store,
} from '@smolrate/core';
import { ensureRedis } from '@smolrate/core/redis-server';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { rowsPerShard, type DataPrepConfig } from './config.js';
import { enqueueSelectFlow, removeRunQueue, waitForRun, type FlowStatus, type RetryPolicy } from './flow.js';
import { HEARTBEAT_MS, heartbeatRun, unregisterRun } from './run-registry.js';
import { listInputs, type InputFile } from './inputs.js';
import { runLocalPipeline } from './pipeline-local.js';
import { readPlan, readSelectResults, type Plan } from './plan.js';
import type { SelectResult } from './select.js';
import type { RunSpec } from './steps.js';
import { removeWorkArea, WORK_DIR } from './work-area.js';
import { WorkerPool, type PoolEvent } from './worker-pool.js';

export interface BuildShardsOptions {
  /** The resolved config (`input`, `out`, `redis`, `workers`, `dryRun` included). */
  cfg: DataPrepConfig;
  /** Keep `_work/` after a successful build. */
  keepWork?: boolean;
  /** The build's id (queue prefix); default: a random one. */
  runId?: string;
  log?: Logger;
  /** Progress output (select lines, shards done); default: none. */
  progressStream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Worker lock settings (see worker.ts) and jobs per worker, passed to the local workers. */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  workerConcurrency?: number;
  /** Replacements for local workers that die (default: as many as `workers`). */
  maxWorkerRestarts?: number;
  /** Environment of the local worker processes (default: this process's). */
  workerEnv?: NodeJS.ProcessEnv;
  retry?: RetryPolicy;
  /** Local worker process events (spawn, job start/end, exit). */
  onWorkerEvent?: (ev: PoolEvent) => void;
  /** Aborts the build (SIGINT). */
  signal?: AbortSignal;
}

export interface BuildShardsResult {
  runId: string;
  mode: 'single-process' | 'redis';
  /** Local worker processes started (redis mode). */
  workers: number;
  out: string;
  dryRun: boolean;
  seconds: number;
  inputs: InputFile[];
  selects: SelectResult[];
  plan: Plan;
  /** null for a dry run. */
  manifest: Manifest | null;
}

function newRunId(): string {
  return `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

async function clearWorkArea(store: Store): Promise<void> {
  await removeWorkArea(store);
  // A local store leaves the emptied directories behind.
  if (store instanceof LocalStore) await rm(join(store.root, WORK_DIR), { recursive: true, force: true });
}

function interrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new UsageError('build interrupted');
}

/** Runs one build (see the file comment); returns what was built. */
export async function buildShards(opts: BuildShardsOptions): Promise<BuildShardsResult> {
  const { cfg } = opts;
  const log = opts.log ?? silentLogger;
  const started = Date.now();
  if (cfg.out === '') throw new ConfigError('no output given (config key "out", --out URI)');
  const inputs = await listInputs(cfg.input, { categories: cfg.selection.categories });
  const store = openStore(cfg.out);
  const runId = opts.runId ?? newRunId();
  const run: RunSpec = { runId, cfg, chunkRows: rowsPerShard(cfg) };
  const dryRun = cfg.dryRun;

  await clearWorkArea(store);
  if (!dryRun) await store.delete(MANIFEST_FILE);

  const stream = opts.progressStream;
  let selectBar: Progress | undefined;
  let shardBar: Progress | undefined;
  const selectRead = new Map<string, number>();
  const showSelect = (category: string, read: number): void => {
    if (!stream) return;
    selectRead.set(category, read);
    selectBar?.update([...selectRead.values()].reduce((a, b) => a + b, 0));
  };
  const showShards = (done: number, total: number): void => {
    if (!stream) return;
    selectBar?.done();
    shardBar ??= createProgress({ label: 'shards', unit: 'shards', total, stream });
    shardBar.update(done, total);
  };

  if (stream) selectBar = createProgress({ label: `select (${inputs.length} file${inputs.length === 1 ? '' : 's'})`, unit: 'lines', stream });
  const redisUrl = cfg.redis ?? null;
  const mode: BuildShardsResult['mode'] = redisUrl !== null || cfg.workers > 0 ? 'redis' : 'single-process';
  log.info('build-shards', { runId, mode, out: store.uri, inputs: inputs.length, chunkRows: run.chunkRows, dryRun });

  if (mode === 'single-process') {
    await runLocalPipeline({
      run,
      inputs,
      dryRun,
      log,
      onSelectProgress: showSelect,
      onSelectDone: showSelect,
      onShardDone: showShards,
      signal: opts.signal,
    });
  } else {
    const redis = redisUrl !== null ? { url: redisUrl, owned: false, stop: () => Promise.resolve() } : await ensureRedis({ name: 'data-prep' });
    let pool: WorkerPool | undefined;
    const registry = createRedis(redis.url, { connectionName: 'smolrate-dp-build' });
    registry.on('error', (e: Error) => log.warn('redis error', { error: e.message }));
    let heartbeat: NodeJS.Timeout | undefined;
    try {
      await heartbeatRun(registry, runId);
      heartbeat = setInterval(() => {
        heartbeatRun(registry, runId).catch((e: Error) => log.warn('run heartbeat failed', { runId, error: e.message }));
      }, HEARTBEAT_MS);
      if (cfg.workers > 0) {
        const args: string[] = [];
        if (opts.lockDurationMs !== undefined) args.push('--lock-duration-ms', String(opts.lockDurationMs));
        if (opts.stalledIntervalMs !== undefined) args.push('--stalled-interval-ms', String(opts.stalledIntervalMs));
        if (opts.workerConcurrency !== undefined) args.push('--concurrency', String(opts.workerConcurrency));
        pool = WorkerPool.start({
          count: cfg.workers,
          redisUrl: redis.url,
          runId,
          args,
          env: opts.workerEnv,
          maxRestarts: opts.maxWorkerRestarts,
          log,
          onEvent: opts.onWorkerEvent,
        });
      } else {
        log.info(`waiting for workers: start them with \`smolrate-data-prep worker --redis ${redactUrl(redis.url)}\``, { runId });
      }
      await enqueueSelectFlow(redis.url, run, inputs, { dryRun, retry: opts.retry });
      await waitForRun({
        redisUrl: redis.url,
        runId,
        categories: inputs.map((i) => i.category),
        dryRun,
        log,
        check: () => {
          interrupted(opts.signal);
          pool?.check();
        },
        onStatus: (s: FlowStatus) => {
          if (s.stage === 'select') for (const [c, n] of Object.entries(s.selectRead)) showSelect(c, n);
          else if (s.shards !== null && !dryRun) showShards(s.shardsDone, s.shards);
        },
      });
    } finally {
      clearInterval(heartbeat);
      await pool?.stop();
      await unregisterRun(registry, runId).catch(() => undefined);
      registry.disconnect();
      await removeRunQueue(redis.url, runId).catch((e: Error) => log.warn('could not remove the run queue', { runId, error: e.message }));
      await redis.stop();
    }
  }
  selectBar?.done();
  shardBar?.done();

  const plan = await readPlan(store);
  const selects = await readSelectResults(
    store,
    inputs.map((i) => i.category),
  );
  const manifest = dryRun ? null : await readManifest(store);
  if (!opts.keepWork) await clearWorkArea(store);
  return {
    runId,
    mode,
    workers: mode === 'redis' ? cfg.workers : 0,
    out: store.uri,
    dryRun,
    seconds: (Date.now() - started) / 1000,
    inputs,
    selects,
    plan,
    manifest,
  };
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

function table(rows: string[][], alignRight: boolean[]): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => `  ${r.map((cell, c) => (alignRight[c] ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ')}`.trimEnd());
}

/** The summary printed at the end of build-shards (plain text, one table per section). */
export function formatBuildSummary(r: BuildShardsResult): string {
  const lines: string[] = [];
  const how = r.mode === 'single-process' ? 'single process' : `BullMQ flow, ${r.workers} local worker${r.workers === 1 ? '' : 's'}`;
  lines.push(`${r.dryRun ? 'dry run (selection only; no images fetched, no shards written)' : 'build complete'}: ${r.out}  (${how}, ${r.seconds.toFixed(1)} s, run ${r.runId})`);
  if (r.manifest) {
    const c = r.manifest.counts;
    const rejected = Object.values(c.rejected.byReason).reduce((a, b) => a + b, 0);
    lines.push('', `records: read ${c.read}, kept ${c.kept}, rejected ${rejected}`);
    const reasons = Object.entries(c.rejected.byReason);
    if (reasons.length > 0) {
      lines.push('', 'rejected by reason:');
      lines.push(...table([['reason', 'count'], ...reasons.map(([k, n]) => [k, String(n)])], [false, true]));
    }
    const cats = Object.entries(c.perCategory).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    lines.push('', 'per category:');
    lines.push(...table([['category', 'read', 'kept', 'rejected'], ...cats.map(([k, v]) => [k, String(v.read), String(v.kept), String(v.rejected)])], [false, true, true, true]));
    lines.push('', 'shards:');
    const sp = r.manifest.splits;
    const bytes = (s: typeof sp.train) => s.shards.reduce((a, i) => a + i.bytes, 0);
    lines.push(
      ...table(
        [
          ['split', 'shards', 'rows', 'bytes'],
          ['train', String(sp.train.shards.length), String(sp.train.rows), fmtBytes(bytes(sp.train))],
          ['val', String(sp.val.shards.length), String(sp.val.rows), fmtBytes(bytes(sp.val))],
        ],
        [false, true, true, true],
      ),
    );
  } else {
    const byReason: Record<string, number> = {};
    for (const s of r.selects) for (const [k, n] of Object.entries(s.rejected)) byReason[k] = (byReason[k] ?? 0) + n;
    if (r.plan.duplicates > 0) byReason.duplicate_parent_asin = (byReason.duplicate_parent_asin ?? 0) + r.plan.duplicates;
    const read = r.selects.reduce((a, s) => a + s.read, 0);
    const selected = r.plan.trainRows + r.plan.valRows;
    lines.push('', `records: read ${read}, selected ${selected} (train ${r.plan.trainRows}, val ${r.plan.valRows}); image checks not run`);
    const reasons = Object.entries(byReason).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    if (reasons.length > 0) {
      lines.push('', 'rejected by reason (before images):');
      lines.push(...table([['reason', 'count'], ...reasons.map(([k, n]) => [k, String(n)])], [false, true]));
    }
    lines.push('', 'per category:');
    lines.push(
      ...table(
        [['category', 'read', 'selected', 'duplicates', 'train', 'val'], ...r.plan.categories.map((c) => [c.category, String(c.read), String(c.selected), String(c.duplicates), String(c.train), String(c.val)])],
        [false, true, true, true, true, true],
      ),
    );
    const train = r.plan.tasks.filter((t) => t.split === 'train').length;
    lines.push('', `shards planned: ${train} train, ${r.plan.tasks.length - train} val (${r.plan.chunkRows} items per chunk)`);
  }
  return `${lines.join('\n')}\n`;
}
