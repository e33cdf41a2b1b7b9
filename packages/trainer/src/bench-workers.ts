/**
 * The process side of the multi-worker benchmarks (bench-allreduce, bench-scaling's simulated
 * step): N worker processes of `bench-worker-main` with the launcher's environment (RANK,
 * WORLD_SIZE, SMOLRATE_RUN_ID, REDIS_URL) and their parameters as JSON in SMOLRATE_BENCH. Rank 0
 * prints one `BENCH_RESULT <json>` line; like the launcher's watchdog, one failed worker stops
 * the others and the error names it.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CollectiveError } from '@smolrate/core';
import { FEATURE_READS_IN_FLIGHT } from './feature-cache.js';

const RESULT_PREFIX = 'BENCH_RESULT ';

export type BenchWorkerKind = 'allreduce' | 'step' | 'data';

/** How to start a worker: the built entry, or the TypeScript source through tsx's loader. */
function workerCommand(): { script: string; execArgv: string[] } {
  const fromSource = import.meta.url.endsWith('.ts');
  const script = fileURLToPath(new URL(fromSource ? './bench-worker-main.ts' : './bench-worker-main.js', import.meta.url));
  const execArgv = fromSource ? ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href] : [];
  return { script, execArgv };
}

export interface SpawnBenchOptions {
  kind: BenchWorkerKind;
  workers: number;
  /** Redis of the collective; null for workers that need none (the data benchmark). */
  redisUrl: string | null;
  params: object;
  onWorkerStderr?: (rank: number, text: string) => void;
}

/** Runs the workers to the end; returns the run id and rank 0's result (parsed JSON), and each rank's where ranks report their own. */
export async function runBenchWorkers<T>(o: SpawnBenchOptions): Promise<{ runId: string; result: T; perRank: Array<T | undefined> }> {
  const runId = `bench-${randomBytes(4).toString('hex')}`;
  const { script, execArgv } = workerCommand();
  const resultLines: Array<string | undefined> = [];
  const children = [...Array(o.workers).keys()].map((rank) => {
    const child = spawn(process.execPath, [...execArgv, script, o.kind], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        UV_THREADPOOL_SIZE: String(FEATURE_READS_IN_FLIGHT), // feature reads in flight (feature-cache.ts)
        ...process.env,
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: String(o.workers),
        SMOLRATE_RUN_ID: runId,
        ...(o.redisUrl === null ? {} : { REDIS_URL: o.redisUrl }),
        SMOLRATE_BENCH: JSON.stringify(o.params),
      },
    });
    let stderr = '';
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (line !== undefined) resultLines[rank] = line.slice(RESULT_PREFIX.length);
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      o.onWorkerStderr?.(rank, d.toString());
    });
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    return { rank, child, exit, stderr: () => stderr };
  });
  let failure: string | undefined;
  await Promise.all(
    children.map(async (c) => {
      const { code, signal } = await c.exit;
      if (code !== 0 && failure === undefined) {
        failure = `bench worker ${c.rank} exited with ${code ?? signal}: ${c.stderr().trim().split('\n').slice(-3).join(' | ')}`;
        for (const x of children) if (x.child.exitCode === null && x.child.signalCode === null) x.child.kill('SIGTERM');
      }
    }),
  );
  if (failure !== undefined) throw new CollectiveError(failure);
  if (resultLines[0] === undefined) throw new CollectiveError('bench: rank 0 reported no result');
  const perRank = Array.from({ length: o.workers }, (_, r) => (resultLines[r] === undefined ? undefined : (JSON.parse(resultLines[r]!) as T)));
  return { runId, result: perRank[0]!, perRank };
}

/** A worker's report line (rank 0's in the collective benchmarks; every rank's in the data benchmark). */
export function reportBenchResult(value: unknown): void {
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(value)}\n`);
}
