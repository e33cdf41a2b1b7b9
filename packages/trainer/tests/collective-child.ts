/**
 * One rank of a multi-process collective test (spawned by redis-collective.spec.ts with
 * `node --import tsx`). Environment: REDIS_URL, RUN_ID, RANK, WORLD_SIZE, SCENARIO (JSON).
 * Reports JSON lines on stdout: {event, …}; an error is reported as
 * {event: 'error', name, code, message, t} and ends the process with exit code 1.
 */
import { createInterface } from 'node:readline';
import { RedisCollective } from '../src/redis-collective.js';
import type { RedisCollectiveOptions } from '../src/redis-collective-options.js';
import { payload, rankArray, sha256, unevenBounds } from './collective-fixtures.js';

export interface Scenario {
  kind: 'full' | 'join' | 'dead' | 'zombie';
  options?: Partial<RedisCollectiveOptions>;
  seed?: number;
  /** full: allReduceMean lengths, in call order. */
  lengths?: number[];
  /** full: broadcast payload size (bytes) from rank 1. */
  broadcastBytes?: number;
  /** dead: the rank that stops participating (and is killed by the test). */
  victim?: number;
  /** dead: allReduceMean length. */
  length?: number;
}

const emit = (event: string, fields: Record<string, unknown> = {}) =>
  process.stdout.write(JSON.stringify({ event, rank: Number(process.env.RANK), ...fields }) + '\n');

async function nextLine(): Promise<string> {
  const rl = createInterface({ input: process.stdin });
  const line = await new Promise<string>((resolve) => rl.once('line', resolve));
  rl.close();
  return line;
}

async function main(): Promise<void> {
  const sc = JSON.parse(process.env.SCENARIO ?? '{}') as Scenario;
  const rank = Number(process.env.RANK);
  const worldSize = Number(process.env.WORLD_SIZE);
  const seed = sc.seed ?? 1;
  let c: RedisCollective | undefined;
  try {
    c = await RedisCollective.connect({ url: process.env.REDIS_URL!, runId: process.env.RUN_ID!, rank, worldSize, ...sc.options });
    emit('joined', { generation: c.generation, member: c.member });
    switch (sc.kind) {
      case 'join':
        await c.barrier('after-join');
        break;
      case 'full': {
        await c.barrier('start');
        for (const n of sc.lengths ?? []) {
          const data = rankArray(seed, rank, n);
          const out = await c.allReduceMean(data, `len-${n}`);
          emit('allReduceMean', { length: n, sha: sha256(out), inPlace: out === data });
        }
        for (const n of sc.lengths ?? []) {
          // Uneven segments (rank 0's twice the others'), then the all-gather of the result.
          const bounds = unevenBounds(n, worldSize);
          const data = rankArray(seed, rank, n);
          await c.reduceScatterMean(data, bounds, `rs-${n}`);
          emit('reduceScatterMean', { length: n, sha: sha256(data.subarray(bounds[rank], bounds[rank + 1])) });
          await c.allGather(data, bounds, `ag-${n}`);
          emit('allGather', { length: n, sha: sha256(data) });
          const b16 = rankArray(seed, rank, n);
          await c.allReduceMean(b16, `bf16-${n}`, { dtype: 'bf16' });
          emit('allReduceMeanBf16', { length: n, sha: sha256(b16) });
        }
        const blob = payload(seed + rank, 1000 * rank + 3);
        const got = await c.gather(blob, 1, 'blobs');
        emit('gather', { shas: got === null ? null : got.map((g) => sha256(g)) });
        const bytes = sc.broadcastBytes ?? 0;
        const b = await c.broadcast(rank === 1 ? payload(seed, bytes) : null, 1, 'bytes');
        emit('broadcast', { bytes: b.byteLength, sha: sha256(b) });
        const empty = await c.broadcast(rank === 2 % worldSize ? new Uint8Array(0) : null, 2 % worldSize, 'empty');
        emit('broadcastEmpty', { bytes: empty.byteLength });
        const j = await c.broadcastJson(rank === 0 ? { stop: false, best: 0.75, note: 'from rank 0' } : null, 0, 'json');
        emit('broadcastJson', { value: j });
        const all = await c.allGatherJson({ rank, pid: process.pid }, 'pids');
        emit('allGatherJson', { value: all });
        await c.barrier('end');
        break;
      }
      case 'dead': {
        await c.barrier('ready');
        if (rank === sc.victim) {
          emit('idle');
          setInterval(() => undefined, 1 << 30); // participates no more; the test kills this process
          return;
        }
        const data = rankArray(seed, rank, sc.length ?? 1000);
        emit('waiting');
        await c.allReduceMean(data, 'grads');
        emit('unexpected-success');
        break;
      }
      case 'zombie': {
        emit('paused-point');
        await nextLine(); // the test stops this process, starts a new generation, resumes it, then writes a line
        await c.barrier('after-resume');
        emit('unexpected-success');
        break;
      }
    }
    await c.close();
    emit('closed');
  } catch (e) {
    const err = e as Error & { code?: string };
    emit('error', { name: err.name, code: err.code, message: err.message, t: Date.now() });
    await c?.close();
    process.exitCode = 1;
  }
}

await main();
