/**
 * All-reduce benchmark (OPTIM.md, "Data-parallel all-reduce"). `workers` processes rendezvous
 * through Redis and time `allReduceMean` of an S-byte float32 buffer (warm-up excluded), reported
 * as nccl-tests does: algbw = S / t, busbw = algbw · 2(N−1)/N. In the same run and against the
 * same Redis, each worker then measures the raw bandwidth of the same traffic: it SETs and then
 * GETs its 2(N−1)/N · S bytes with the same chunk size and pipelining (all workers at once, as
 * in the all-reduce). busbw / raw says how much of what Redis can move the collective achieves.
 *
 * t is the slowest rank's time of an iteration (each iteration starts at a barrier), averaged
 * over the iterations. GB/s are 10⁹ bytes per second.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import {
  CollectiveError,
  createRedis,
  ensureRedis,
  flagNumber,
  flagString,
  flagBool,
  kebab,
  parseArgs,
  redactUrl,
  UsageError,
  type CommandSpec,
} from '@smolrate/core';
import { RedisCollective } from './redis-collective.js';
import { COLLECTIVE_DEFAULTS, MAX_CHUNK_BYTES } from './redis-collective-options.js';
import { runPrefix } from './collective-keys.js';

const MIB = 1024 * 1024;

export interface AllReduceBenchOptions {
  /** Worker processes. Default 4. */
  workers?: number;
  /** Buffer size in MiB. Default 64. */
  mb?: number;
  /** Timed iterations (after one warm-up). Default 5. */
  iters?: number;
  /** Redis to use. Default: REDIS_URL, else a private redis-server for the duration. */
  redisUrl?: string;
  /** Chunk size of the collective and of the raw measurement. Default 8 MiB. */
  chunkBytes?: number;
  /** Worker diagnostics (stderr lines). Default: discarded unless a worker fails. */
  onWorkerStderr?: (rank: number, text: string) => void;
}

export interface AllReduceBenchResult {
  /** The run id the workers used (their keys lived under `smolrate:{runId}:`). */
  runId: string;
  workers: number;
  /** S, the all-reduced buffer. */
  bytes: number;
  iters: number;
  chunkBytes: number;
  redis: string;
  allReduce: { seconds: number[]; meanSeconds: number; algbwGBps: number; busbwGBps: number };
  /** Each worker SETs then GETs `bytesPerWorker` = 2(N−1)/N · S. */
  raw: { bytesPerWorker: number; seconds: number[]; meanSeconds: number; bwGBps: number };
  /** busbw / raw bandwidth. */
  ratio: number;
}

interface WorkerParams {
  bytes: number;
  iters: number;
  chunkBytes: number;
}

interface WorkerReport {
  allReduce: number[];
  raw: number[];
}

const RESULT_PREFIX = 'BENCH_RESULT ';

/** How to start a worker: the built entry, or the TypeScript source through tsx's loader. */
function workerCommand(): { script: string; execArgv: string[] } {
  const fromSource = import.meta.url.endsWith('.ts');
  const script = fileURLToPath(new URL(fromSource ? './bench-allreduce-main.ts' : './bench-allreduce-main.js', import.meta.url));
  const execArgv = fromSource ? ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href] : [];
  return { script, execArgv };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export async function runAllReduceBench(opts: AllReduceBenchOptions = {}): Promise<AllReduceBenchResult> {
  const workers = opts.workers ?? 4;
  const mb = opts.mb ?? 64;
  const iters = opts.iters ?? 5;
  const chunkBytes = opts.chunkBytes ?? COLLECTIVE_DEFAULTS.chunkBytes;
  if (!Number.isInteger(workers) || workers < 2) throw new UsageError(`--workers must be an integer ≥ 2, got ${workers}`);
  if (!(mb > 0)) throw new UsageError(`--mb must be positive, got ${mb}`);
  if (!Number.isInteger(iters) || iters < 1) throw new UsageError(`--iters must be an integer ≥ 1, got ${iters}`);
  if (!Number.isInteger(chunkBytes) || chunkBytes < 4 || chunkBytes % 4 !== 0 || chunkBytes > MAX_CHUNK_BYTES) {
    throw new UsageError(`the chunk size must be a multiple of 4 bytes up to 32 MiB, got ${chunkBytes}`);
  }
  const bytes = Math.max(4, Math.round((mb * MIB) / 4) * 4);

  const owned = opts.redisUrl === undefined ? await ensureRedis({ name: 'bench-allreduce' }) : undefined;
  const url = opts.redisUrl ?? owned!.url;
  const runId = `bench-${randomBytes(4).toString('hex')}`;
  const params: WorkerParams = { bytes, iters, chunkBytes };
  const { script, execArgv } = workerCommand();
  try {
    let resultLine: string | undefined;
    const children = [...Array(workers).keys()].map((rank) => {
      const child = spawn(process.execPath, [...execArgv, script, '--child'], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          RANK: String(rank),
          LOCAL_RANK: String(rank),
          WORLD_SIZE: String(workers),
          SMOLRATE_RUN_ID: runId,
          REDIS_URL: url,
          SMOLRATE_BENCH: JSON.stringify(params),
        },
      });
      let stderr = '';
      let stdout = '';
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
        if (line !== undefined) resultLine = line.slice(RESULT_PREFIX.length);
      });
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        opts.onWorkerStderr?.(rank, d.toString());
      });
      const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('exit', (code, signal) => resolve({ code, signal })),
      );
      return { rank, child, exit, stderr: () => stderr };
    });
    // Like the launcher's watchdog: one failed worker stops the others.
    let failure: string | undefined;
    await Promise.all(
      children.map(async (c) => {
        const { code, signal } = await c.exit;
        if (code !== 0 && failure === undefined) {
          failure = `bench worker ${c.rank} exited with ${code ?? signal}: ${c.stderr().trim().split('\n').slice(-3).join(' | ')}`;
          for (const o of children) if (o.child.exitCode === null && o.child.signalCode === null) o.child.kill('SIGTERM');
        }
      }),
    );
    if (failure !== undefined) throw new CollectiveError(failure);
    if (resultLine === undefined) throw new CollectiveError('bench: rank 0 reported no result');
    const reports = JSON.parse(resultLine) as WorkerReport[];

    const slowest = (k: keyof WorkerReport) => [...Array(iters).keys()].map((i) => Math.max(...reports.map((r) => r[k][i])));
    const arSeconds = slowest('allReduce');
    const rawSeconds = slowest('raw');
    const n = workers;
    const algbw = bytes / mean(arSeconds) / 1e9;
    const busbw = (algbw * 2 * (n - 1)) / n;
    const rawBytes = Math.round((2 * (n - 1) * bytes) / n);
    const rawBw = rawBytes / mean(rawSeconds) / 1e9;
    return {
      runId,
      workers,
      bytes,
      iters,
      chunkBytes,
      redis: redactUrl(url),
      allReduce: { seconds: arSeconds, meanSeconds: mean(arSeconds), algbwGBps: algbw, busbwGBps: busbw },
      raw: { bytesPerWorker: rawBytes, seconds: rawSeconds, meanSeconds: mean(rawSeconds), bwGBps: rawBw },
      ratio: busbw / rawBw,
    };
  } finally {
    await owned?.stop();
  }
}

export function formatAllReduceBench(r: AllReduceBenchResult): string {
  const ms = (s: number) => `${(s * 1e3).toFixed(1)} ms`;
  const mib = (b: number) => `${(b / MIB).toFixed(b % MIB === 0 ? 0 : 2)} MiB`;
  return [
    `all-reduce (mean, float32) of ${mib(r.bytes)} over ${r.workers} workers through Redis ${r.redis}; chunks of ${mib(r.chunkBytes)}; ${r.iters} iterations after 1 warm-up`,
    `  allReduceMean   t = ${ms(r.allReduce.meanSeconds)}  (per iteration: ${r.allReduce.seconds.map(ms).join(', ')})`,
    `                  algbw = ${r.allReduce.algbwGBps.toFixed(3)} GB/s   busbw = ${r.allReduce.busbwGBps.toFixed(3)} GB/s`,
    `  raw Redis       each worker SET + GET of ${mib(r.raw.bytesPerWorker)} (2(N-1)/N · S), same chunks and pipelining`,
    `                  t = ${ms(r.raw.meanSeconds)}  (per iteration: ${r.raw.seconds.map(ms).join(', ')})   bw = ${r.raw.bwGBps.toFixed(3)} GB/s`,
    `  busbw / raw = ${r.ratio.toFixed(2)}`,
  ].join('\n');
}

/** One worker of the benchmark (the child entry; environment as set by runAllReduceBench). */
export async function runAllReduceBenchWorker(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const rank = Number(env.RANK);
  const worldSize = Number(env.WORLD_SIZE);
  const url = env.REDIS_URL!;
  const runId = env.SMOLRATE_RUN_ID!;
  const p = JSON.parse(env.SMOLRATE_BENCH ?? '{}') as WorkerParams;
  const c = await RedisCollective.connect({
    url,
    runId,
    rank,
    worldSize,
    chunkBytes: p.chunkBytes,
    timeoutMs: 120_000,
    rendezvousTimeoutMs: 300_000, // workers start slowly on a loaded machine
  });
  const raw = [createRedis(url), createRedis(url)];
  try {
    const data = new Float32Array(p.bytes / 4);
    // Small integers: the mean j + (N−1)/2 is exact, so the warm-up result can be checked.
    const fill = () => {
      for (let i = 0; i < data.length; i++) data[i] = rank + (i & 7);
    };
    fill();
    await c.barrier('warm-up');
    await c.allReduceMean(data, 'warm-up');
    for (let i = 0; i < data.length; i++) {
      if (data[i] !== (i & 7) + (worldSize - 1) / 2) {
        throw new CollectiveError(`bench: wrong all-reduce result at ${i}: ${data[i]}, expected ${(i & 7) + (worldSize - 1) / 2}`);
      }
    }
    const report: WorkerReport = { allReduce: [], raw: [] };
    for (let it = 0; it < p.iters; it++) {
      fill();
      await c.barrier(`all-reduce-${it}`);
      const t0 = performance.now();
      await c.allReduceMean(data, 'bench');
      report.allReduce.push((performance.now() - t0) / 1e3);
    }

    // Raw: the bytes an all-reduce worker sends (and receives), SET then GET, chunked and pipelined.
    const rawBytes = Math.round((2 * (worldSize - 1) * p.bytes) / worldSize);
    const payload = Buffer.alloc(rawBytes);
    payload.set(new Uint8Array(data.buffer, 0, Math.min(rawBytes, data.byteLength)));
    const chunks = Math.ceil(rawBytes / p.chunkBytes);
    const keys = [...Array(chunks).keys()].map((k) => `${runPrefix(runId)}bench-raw:${rank}:${k}`);
    for (let it = 0; it <= p.iters; it++) {
      await c.barrier(`raw-${it}`);
      const t0 = performance.now();
      await Promise.all(keys.map((key, k) => raw[0].set(key, payload.subarray(k * p.chunkBytes, (k + 1) * p.chunkBytes), 'PX', 600_000)));
      const got = await Promise.all(keys.map((key) => raw[1].getBuffer(key)));
      const dt = (performance.now() - t0) / 1e3;
      if (got.reduce((s, b) => s + (b?.byteLength ?? 0), 0) !== rawBytes) throw new CollectiveError('bench: raw GET returned the wrong size');
      await raw[0].unlink(...keys);
      if (it > 0) report.raw.push(dt); // the first round is the warm-up
    }

    const all = await c.allGatherJson(report, 'reports');
    if (rank === 0) process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(all)}\n`);
  } finally {
    await c.close();
    await Promise.all(raw.map((r) => r.quit().catch(() => r.disconnect())));
  }
}

export const benchAllReduceCommand: CommandSpec = {
  summary: 'measure allReduceMean bandwidth through Redis against the raw Redis bandwidth',
  usage: [
    'options:',
    '  --workers N      worker processes (default 4)',
    '  --mb N           buffer size in MiB (default 64)',
    '  --iters N        timed iterations after one warm-up (default 5)',
    '  --chunk-mib N    bytes per Redis value, in MiB (default 8, at most 32)',
    '  --redis URL      Redis to use (default: REDIS_URL, else a private redis-server)',
    '  --json           print the result as JSON',
  ].join('\n'),
  async run(argv) {
    const args = parseArgs(argv, ['json']);
    const known = new Set(['workers', 'mb', 'iters', 'chunkMib', 'redis', 'json']);
    for (const k of Object.keys(args.flags)) if (!known.has(k)) throw new UsageError(`unknown option --${kebab(k)}`);
    const chunkMib = flagNumber(args, 'chunkMib');
    const result = await runAllReduceBench({
      workers: flagNumber(args, 'workers'),
      mb: flagNumber(args, 'mb'),
      iters: flagNumber(args, 'iters'),
      redisUrl: flagString(args, 'redis'),
      chunkBytes: chunkMib === undefined ? undefined : Math.round((chunkMib * MIB) / 4) * 4,
    });
    process.stdout.write((flagBool(args, 'json') ? JSON.stringify(result, null, 2) : formatAllReduceBench(result)) + '\n');
    return 0;
  },
};
