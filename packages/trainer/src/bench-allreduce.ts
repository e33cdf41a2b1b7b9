/**
 * All-reduce benchmark (docs/training.md, "The collective"). `workers` processes rendezvous
 * through Redis and time `allReduceMean` of an S-byte float32 buffer (warm-up excluded) over the
 * tcp data plane and then the redis one, reported as nccl-tests does: algbw = S / t,
 * busbw = algbw · 2(N−1)/N. In the same run each worker then measures the raw bandwidth of the
 * same traffic, all workers at once: its 2(N−1)/N · S bytes over plain TCP sockets to its peers
 * (and as many received), and SET then GET through the same Redis with the same chunks.
 * busbw / raw says how much of what the transport can move each data plane achieves.
 *
 * t is the slowest rank's time of an iteration (each iteration starts at a barrier), averaged
 * over the iterations. GB/s are 10⁹ bytes per second.
 */
import { createConnection, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  CollectiveError,
  createRedis,
  flagNumber,
  flagString,
  flagBool,
  kebab,
  parseArgs,
  redactUrl,
  UsageError,
  type CommandSpec,
} from '@smolrate/core';
import { ensureRedis } from '@smolrate/core/redis-server';
import { reportBenchResult, runBenchWorkers } from './bench-workers.js';
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
  /** Chunk size of the collective and of the raw measurement. Default: the collective's (4 MiB). */
  chunkBytes?: number;
  /** Worker diagnostics (stderr lines). Default: discarded unless a worker fails. */
  onWorkerStderr?: (rank: number, text: string) => void;
}

export interface BandwidthFigures {
  seconds: number[];
  meanSeconds: number;
}

export interface AllReduceFigures extends BandwidthFigures {
  algbwGBps: number;
  busbwGBps: number;
}

export interface RawFigures extends BandwidthFigures {
  /** Bytes each worker sends (and receives): 2(N−1)/N · S, as in the all-reduce. */
  bytesPerWorker: number;
  bwGBps: number;
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
  /** allReduceMean over the TCP data plane (direct connections between the workers). */
  tcp: AllReduceFigures;
  /** allReduceMean over the Redis data plane. */
  redisPlane: AllReduceFigures;
  /** The same traffic over plain TCP sockets between the workers: every worker at once. */
  rawTcp: RawFigures;
  /** Each worker SETs then GETs its 2(N−1)/N · S bytes, same chunks, all at once. */
  rawRedis: RawFigures;
  /** busbw / raw bandwidth of each path, and the speed-up of tcp over redis. */
  ratios: { tcpToRawTcp: number; redisToRawRedis: number; tcpToRedis: number };
}

interface WorkerParams {
  bytes: number;
  iters: number;
  chunkBytes: number;
}

interface WorkerReport {
  tcp: number[];
  redis: number[];
  rawTcp: number[];
  rawRedis: number[];
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
  const params: WorkerParams = { bytes, iters, chunkBytes };
  try {
    const { runId, result: reports } = await runBenchWorkers<WorkerReport[]>({ kind: 'allreduce', workers, redisUrl: url, params, onWorkerStderr: opts.onWorkerStderr });

    const slowest = (k: keyof WorkerReport) => [...Array(iters).keys()].map((i) => Math.max(...reports.map((r) => r[k][i])));
    const n = workers;
    const reduce = (k: 'tcp' | 'redis'): AllReduceFigures => {
      const seconds = slowest(k);
      const algbw = bytes / mean(seconds) / 1e9;
      return { seconds, meanSeconds: mean(seconds), algbwGBps: algbw, busbwGBps: (algbw * 2 * (n - 1)) / n };
    };
    const rawBytes = Math.round((2 * (n - 1) * bytes) / n);
    const raw = (k: 'rawTcp' | 'rawRedis'): RawFigures => {
      const seconds = slowest(k);
      return { bytesPerWorker: rawBytes, seconds, meanSeconds: mean(seconds), bwGBps: rawBytes / mean(seconds) / 1e9 };
    };
    const tcp = reduce('tcp');
    const redisPlane = reduce('redis');
    const rawTcp = raw('rawTcp');
    const rawRedis = raw('rawRedis');
    return {
      runId,
      workers,
      bytes,
      iters,
      chunkBytes,
      redis: redactUrl(url),
      tcp,
      redisPlane,
      rawTcp,
      rawRedis,
      ratios: { tcpToRawTcp: tcp.busbwGBps / rawTcp.bwGBps, redisToRawRedis: redisPlane.busbwGBps / rawRedis.bwGBps, tcpToRedis: tcp.busbwGBps / redisPlane.busbwGBps },
    };
  } finally {
    await owned?.stop();
  }
}

export function formatAllReduceBench(r: AllReduceBenchResult): string {
  const ms = (s: number) => `${(s * 1e3).toFixed(1)} ms`;
  const mib = (b: number) => `${(b / MIB).toFixed(b % MIB === 0 ? 0 : 2)} MiB`;
  const row = (label: string, f: AllReduceFigures) =>
    `  ${label.padEnd(22)} t = ${ms(f.meanSeconds).padStart(9)}   algbw ${f.algbwGBps.toFixed(3)} GB/s   busbw ${f.busbwGBps.toFixed(3)} GB/s`;
  const rawRow = (label: string, f: RawFigures) => `  ${label.padEnd(22)} t = ${ms(f.meanSeconds).padStart(9)}   bw ${f.bwGBps.toFixed(3)} GB/s`;
  return [
    `all-reduce (mean, float32) of ${mib(r.bytes)} over ${r.workers} workers; buckets/chunks of ${mib(r.chunkBytes)}; ${r.iters} iterations after 1 warm-up; Redis ${r.redis}`,
    row('allReduceMean tcp', r.tcp),
    row('allReduceMean redis', r.redisPlane),
    `  raw traffic: each worker sends and receives ${mib(r.rawTcp.bytesPerWorker)} (2(N-1)/N · S) at the same time as the others`,
    rawRow('raw TCP sockets', r.rawTcp),
    rawRow('raw Redis SET + GET', r.rawRedis),
    `  tcp busbw / raw TCP = ${r.ratios.tcpToRawTcp.toFixed(2)}   redis busbw / raw Redis = ${r.ratios.redisToRawRedis.toFixed(2)}   tcp / redis = ${r.ratios.tcpToRedis.toFixed(1)}x`,
  ].join('\n');
}

/**
 * Plain TCP between the workers, the way the tcp data plane uses it: each worker dials every peer
 * and reads that connection into one reused buffer (`onread`); each writes to the connections it
 * accepted. Every worker sends `perPeer` bytes to each peer and receives as much, all at once.
 */
async function rawTcpRounds(c: RedisCollective, perPeer: number, chunkBytes: number, rounds: number): Promise<number[]> {
  const n = c.worldSize;
  const r = c.rank;
  const server = createServer({ noDelay: true });
  // The handler goes on before the port is published: a peer may connect as soon as it has it.
  const out: Socket[] = [];
  const accepted = new Promise<void>((resolve) => {
    server.on('connection', (s) => {
      s.setNoDelay(true);
      out.push(s);
      if (out.length === n - 1) resolve();
    });
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const port = (server.address() as { port: number }).port;
  const ports = await c.allGatherJson(port, 'raw-ports');
  let received = 0;
  let wake: (() => void) | null = null;
  const rx: Socket[] = [];
  for (let s = 0; s < n; s++) {
    if (s === r) continue;
    const sock = createConnection({
      host: '127.0.0.1',
      port: ports[s],
      noDelay: true,
      onread: {
        buffer: Buffer.allocUnsafe(1 << 20),
        callback: (bytes: number): boolean => {
          received += bytes;
          wake?.();
          return true;
        },
      },
    });
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    rx.push(sock);
  }
  await accepted;
  await c.barrier('raw-connected');
  const payload = Buffer.alloc(Math.min(chunkBytes, perPeer), 1);
  const times: number[] = [];
  try {
    for (let it = 0; it < rounds; it++) {
      await c.barrier(`raw-tcp-${it}`);
      const target = perPeer * (n - 1) * (it + 1); // cumulative: a fast peer's bytes may arrive before this line
      const t0 = performance.now();
      const sent: Promise<void>[] = [];
      for (let off = 0; off < perPeer; off += payload.length) {
        const len = Math.min(payload.length, perPeer - off);
        for (const s of out) sent.push(new Promise<void>((resolve) => s.write(payload.subarray(0, len), () => resolve())));
      }
      await Promise.all(sent);
      while (received < target) await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
      times.push((performance.now() - t0) / 1e3);
    }
  } finally {
    for (const s of [...out, ...rx]) s.destroy();
    server.close();
  }
  return times;
}

/** Times `iters` all-reduces (after a checked warm-up), each started at a barrier. */
async function timeAllReduce(c: RedisCollective, data: Float32Array, fill: () => void, iters: number): Promise<number[]> {
  const n = c.worldSize;
  fill();
  await c.barrier('warm-up');
  await c.allReduceMean(data, 'warm-up');
  // Small integers: the mean j + (N−1)/2 is exact, so the warm-up result can be checked.
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== (i & 7) + (n - 1) / 2) {
      throw new CollectiveError(`bench: wrong all-reduce result at ${i}: ${data[i]}, expected ${(i & 7) + (n - 1) / 2}`);
    }
  }
  const out: number[] = [];
  for (let it = 0; it < iters; it++) {
    fill();
    await c.barrier(`all-reduce-${it}`);
    const t0 = performance.now();
    await c.allReduceMean(data, 'bench');
    out.push((performance.now() - t0) / 1e3);
  }
  return out;
}

/** One worker of the benchmark (the child entry; environment as set by runAllReduceBench). */
export async function runAllReduceBenchWorker(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const rank = Number(env.RANK);
  const worldSize = Number(env.WORLD_SIZE);
  const url = env.REDIS_URL!;
  const runId = env.SMOLRATE_RUN_ID!;
  const p = JSON.parse(env.SMOLRATE_BENCH ?? '{}') as WorkerParams;
  const base = {
    url,
    rank,
    worldSize,
    chunkBytes: p.chunkBytes,
    timeoutMs: 120_000,
    rendezvousTimeoutMs: 300_000, // workers start slowly on a loaded machine
  };
  const tcp = await RedisCollective.connect({ ...base, runId, dataPlane: 'tcp' });
  const red = await RedisCollective.connect({ ...base, runId: `${runId}-redis`, dataPlane: 'redis' });
  const raw = [createRedis(url), createRedis(url)];
  try {
    const data = new Float32Array(p.bytes / 4);
    const fill = () => {
      for (let i = 0; i < data.length; i++) data[i] = rank + (i & 7);
    };
    const report: WorkerReport = { tcp: [], redis: [], rawTcp: [], rawRedis: [] };
    report.tcp = await timeAllReduce(tcp, data, fill, p.iters);
    report.redis = await timeAllReduce(red, data, fill, p.iters);

    // Raw: the bytes an all-reduce worker sends (and receives).
    const rawBytes = Math.round((2 * (worldSize - 1) * p.bytes) / worldSize);
    report.rawTcp = (await rawTcpRounds(tcp, Math.round(rawBytes / (worldSize - 1)), p.chunkBytes, p.iters + 1)).slice(1);
    const payload = Buffer.alloc(rawBytes);
    payload.set(new Uint8Array(data.buffer, 0, Math.min(rawBytes, data.byteLength)));
    const chunks = Math.ceil(rawBytes / p.chunkBytes);
    const keys = [...Array(chunks).keys()].map((k) => `${runPrefix(runId)}bench-raw:${rank}:${k}`);
    for (let it = 0; it <= p.iters; it++) {
      await tcp.barrier(`raw-${it}`);
      const t0 = performance.now();
      await Promise.all(keys.map((key, k) => raw[0].set(key, payload.subarray(k * p.chunkBytes, (k + 1) * p.chunkBytes), 'PX', 600_000)));
      const got = await Promise.all(keys.map((key) => raw[1].getBuffer(key)));
      const dt = (performance.now() - t0) / 1e3;
      if (got.reduce((s, b) => s + (b?.byteLength ?? 0), 0) !== rawBytes) throw new CollectiveError('bench: raw GET returned the wrong size');
      await raw[0].unlink(...keys);
      if (it > 0) report.rawRedis.push(dt); // the first round is the warm-up
    }

    const all = await tcp.allGatherJson(report, 'reports');
    if (rank === 0) reportBenchResult(all);
  } finally {
    await tcp.close();
    await red.close();
    await Promise.all(raw.map((r) => r.quit().catch(() => r.disconnect())));
  }
}

export const benchAllReduceCommand: CommandSpec = {
  summary: 'allReduceMean bandwidth of the tcp and redis data planes next to raw TCP and raw Redis bandwidth',
  usage: [
    'options:',
    '  --workers N      worker processes (default 4)',
    '  --mb N           buffer size in MiB (default 64)',
    '  --iters N        timed iterations after one warm-up (default 5)',
    '  --chunk-mib N    bucket / Redis value size, in MiB (default 4, at most 32)',
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
