/**
 * RedisCollective against the real Redis of the vitest global setup (REDIS_URL). The protocol
 * tests run each rank in its own process (tests/collective-child.ts through tsx's loader,
 * `node --import tsx`, as in core's redis-server-orphans.spec.ts): all-reduce results, barrier,
 * broadcast, refused rendezvous, a SIGKILLed peer, a paused (zombie) generation. Every run id is
 * random and every test checks that it leaves no key behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createInterface } from 'node:readline';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CollectiveError, ConfigError, createRedis } from '@smolrate/core';
import { RedisCollective } from './redis-collective.js';
import type { RedisCollectiveOptions } from './redis-collective-options.js';
import { bf16Round, payload, rankArray, rankOrderMean, sha256, unevenBounds } from '../tests/collective-fixtures.js';
import type { Scenario } from '../tests/collective-child.js';

const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const childScript = fileURLToPath(new URL('../tests/collective-child.ts', import.meta.url));
const url = () => process.env.REDIS_URL!;

/** Short liveness settings: a dead peer is reported within 1 000 + 200 ms. */
const FAST = { heartbeatMs: 200, deadAfterMs: 1_000, timeoutMs: 20_000, rendezvousTimeoutMs: 20_000 };

type Event = Record<string, unknown> & { event: string; rank: number };

interface Rank {
  proc: ChildProcess;
  events: Event[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(event: string, ms?: number): Promise<Event>;
  stderr(): string;
}

const procs: ChildProcess[] = [];
let redis: Redis;
const runIds: string[] = [];

function newRunId(): string {
  const id = `test-${randomBytes(5).toString('hex')}`;
  runIds.push(id);
  return id;
}

function spawnRank(runId: string, rank: number, worldSize: number, scenario: Scenario): Rank {
  const proc = spawn(process.execPath, ['--import', tsxLoader, childScript], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, RUN_ID: runId, RANK: String(rank), WORLD_SIZE: String(worldSize), SCENARIO: JSON.stringify(scenario) },
  });
  procs.push(proc);
  const events: Event[] = [];
  const listeners: Array<() => void> = [];
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    events.push(JSON.parse(line) as Event);
    for (const l of listeners) l();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const l of listeners) l();
    }),
  );
  return {
    proc,
    events,
    exit,
    stderr: () => stderr,
    waitFor(event, ms = 60_000) {
      return new Promise<Event>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`rank ${rank}: no '${event}' within ${ms} ms\n${stderr}`)), ms);
        const check = () => {
          const e = events.find((x) => x.event === event);
          if (e) {
            clearTimeout(timer);
            resolve(e);
          } else if (proc.exitCode !== null || proc.signalCode !== null) {
            clearTimeout(timer);
            reject(new Error(`rank ${rank} exited without '${event}': ${JSON.stringify(events)}\n${stderr}`));
          }
        };
        listeners.push(check);
        check();
      });
    },
  };
}

async function keysOf(runId: string): Promise<string[]> {
  return (await redis.keys(`smolrate:${runId}:*`)).sort();
}

beforeAll(() => {
  redis = createRedis(url());
});
afterEach(async () => {
  for (const p of procs.splice(0)) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGCONT'); // a stopped process dies of SIGKILL too, but say so
      p.kill('SIGKILL');
    }
  }
});
afterAll(async () => {
  for (const id of runIds) {
    const keys = await redis.keys(`smolrate:${id}:*`);
    if (keys.length > 0) await redis.unlink(...keys);
  }
  await redis.quit();
});

const PLANES = ['tcp', 'redis'] as const;

describe.each(PLANES)('RedisCollective, one process per rank, %s data plane', (dataPlane) => {
  it('allReduceMean equals the rank-order float32 mean, byte-identical on every rank; reduce-scatter, all-gather, bf16, gather; barrier, broadcast, allGather; no key left', async () => {
    const runId = newRunId();
    const seed = 7;
    const chunkBytes = 256 * 1024; // 65 536 floats: the 1e6+3 case uses 6 chunks per segment
    const lengths = [0, 1, 7, 3 * 65_536, 3 * 65_536 + 1, 1_000_003];
    const broadcastBytes = 600_000; // 3 chunks
    const scenario: Scenario = { kind: 'full', seed, lengths, broadcastBytes, options: { ...FAST, chunkBytes, dataPlane } };
    const ranks = [0, 1, 2].map((r) => spawnRank(runId, r, 3, scenario));
    const exits = await Promise.all(ranks.map((r) => r.exit));
    ranks.forEach((r, i) => expect(exits[i], r.stderr() + JSON.stringify(r.events)).toEqual({ code: 0, signal: null }));

    for (const n of lengths) {
      const parts = [0, 1, 2].map((r) => rankArray(seed, r, n));
      const expected = sha256(rankOrderMean(parts));
      for (const r of ranks) {
        const e = r.events.find((x) => x.event === 'allReduceMean' && x.length === n)!;
        expect(e, `rank ${r.events[0]?.rank} length ${n}`).toMatchObject({ sha: expected, inPlace: true });
      }
      const mean = rankOrderMean(parts);
      const bounds = unevenBounds(n, 3);
      const meanBf16 = bf16Round(rankOrderMean(parts.map(bf16Round)));
      ranks.forEach((r, rank) => {
        const rs = r.events.find((x) => x.event === 'reduceScatterMean' && x.length === n)!;
        expect(rs.sha, `reduce-scatter rank ${rank} length ${n}`).toBe(sha256(mean.subarray(bounds[rank], bounds[rank + 1])));
        expect(r.events.find((x) => x.event === 'allGather' && x.length === n)!.sha).toBe(expected);
        expect(r.events.find((x) => x.event === 'allReduceMeanBf16' && x.length === n)!.sha, `bf16 length ${n}`).toBe(sha256(meanBf16));
      });
    }
    ranks.forEach((r, rank) => {
      const blobs = [0, 1, 2].map((k) => sha256(payload(seed + k, 1000 * k + 3)));
      expect(r.events.find((x) => x.event === 'gather')!.shas).toEqual(rank === 1 ? blobs : null);
    });
    const bsha = sha256(payload(seed, broadcastBytes));
    for (const r of ranks) {
      expect(r.events.find((x) => x.event === 'broadcast')).toMatchObject({ bytes: broadcastBytes, sha: bsha });
      expect(r.events.find((x) => x.event === 'broadcastEmpty')).toMatchObject({ bytes: 0 });
      expect(r.events.find((x) => x.event === 'broadcastJson')!.value).toEqual({ stop: false, best: 0.75, note: 'from rank 0' });
      expect(r.events.find((x) => x.event === 'allGatherJson')!.value).toEqual(ranks.map((x, i) => ({ rank: i, pid: x.proc.pid })));
      expect(r.events.find((x) => x.event === 'joined')!.generation).toBe(1);
    }
    expect(await keysOf(runId)).toEqual([]);
  });

  it('the reference is sensitive to the order and precision of the sum (so the test above can fail)', () => {
    const parts = [0, 1, 2].map((r) => rankArray(7, r, 1_000_003));
    const ref = rankOrderMean(parts);
    const reversed = rankOrderMean([...parts].reverse());
    const f64 = new Float32Array(ref.length).map((_, i) => (parts[0][i] + parts[1][i] + parts[2][i]) / 3);
    expect(sha256(reversed)).not.toBe(sha256(ref));
    expect(sha256(f64)).not.toBe(sha256(ref));
  });

  it('refuses a duplicate rank: both holders of rank 0 fail with the same clear error', async () => {
    const runId = newRunId();
    const scenario: Scenario = { kind: 'join', options: FAST };
    const a = spawnRank(runId, 0, 2, scenario);
    const b = spawnRank(runId, 0, 2, scenario);
    const [ea, eb] = await Promise.all([a.waitFor('error'), b.waitFor('error')]);
    for (const e of [ea, eb]) {
      expect(e.code).toBe('COLLECTIVE');
      expect(e.message).toMatch(/duplicate rank 0: registered by the live process \S+:\d+:\w+ and again by \S+:\d+:\w+/);
    }
    expect((await a.exit).code).toBe(1);
    expect((await b.exit).code).toBe(1);
    expect(await keysOf(runId)).toEqual([]);
  });

  it('refuses a different world size, naming both', async () => {
    const runId = newRunId();
    const a = spawnRank(runId, 0, 2, { kind: 'join', options: FAST });
    const b = spawnRank(runId, 1, 3, { kind: 'join', options: FAST });
    const [ea, eb] = await Promise.all([a.waitFor('error'), b.waitFor('error')]);
    for (const e of [ea, eb]) {
      expect(e.code).toBe('COLLECTIVE');
      expect(e.message).toMatch(/worldSize mismatch: rank \d announced worldSize [23] but rank \d announced worldSize [23]/);
      expect(e.message).toContain('worldSize 2');
      expect(e.message).toContain('worldSize 3');
    }
    await Promise.all([a.exit, b.exit]);
    expect(await keysOf(runId)).toEqual([]);
  });

  it('a SIGKILLed peer makes the others fail with a CollectiveError naming it, within deadAfterMs + heartbeatMs', async () => {
    const runId = newRunId();
    const scenario: Scenario = { kind: 'dead', victim: 2, length: 200_000, options: { ...FAST, dataPlane } };
    const ranks = [0, 1, 2].map((r) => spawnRank(runId, r, 3, scenario));
    await Promise.all([ranks[0].waitFor('waiting'), ranks[1].waitFor('waiting'), ranks[2].waitFor('idle')]);
    await new Promise((r) => setTimeout(r, 300)); // both survivors are blocked in the all-reduce now
    const tKill = Date.now();
    ranks[2].proc.kill('SIGKILL');
    const errors = await Promise.all([ranks[0].waitFor('error', 10_000), ranks[1].waitFor('error', 10_000)]);
    for (const e of errors) {
      expect(e.code).toBe('COLLECTIVE');
      expect(e.name).toBe('CollectiveError');
      const after = (e.t as number) - tKill;
      if (dataPlane === 'tcp') {
        // The dead process's connections close at once: no need to wait for its heartbeat.
        expect(e.message).toMatch(/rank 2 (closed the connection|connection error: \w+)/);
        expect(after).toBeLessThan(FAST.deadAfterMs);
      } else {
        expect(e.message).toMatch(/rank 2 is dead \(no heartbeat for \d+ ms\)/);
        // The key expires ≤ deadAfterMs after the last beat (≤ heartbeatMs before the kill), and
        // is noticed at the next check (≤ heartbeatMs); 1 s of slack for a loaded machine.
        expect(after).toBeGreaterThanOrEqual(FAST.deadAfterMs / 2 - 100); // by heartbeat, not by a closed socket
        expect(after).toBeLessThan(FAST.deadAfterMs + FAST.heartbeatMs + 1_000);
      }
    }
    await Promise.all([ranks[0].exit, ranks[1].exit]);
    if (dataPlane === 'tcp') {
      // The survivors left before the victim's heartbeat expired, so none of them was the last
      // member to sweep: what is left carries a TTL and expires by itself.
      for (const k of await keysOf(runId)) expect(await redis.pttl(k), k).toBeGreaterThan(0);
    } else {
      expect(await keysOf(runId)).toEqual([]);
    }
  });

  it('a stuck peer (SIGSTOP: connections open, no heartbeat) is reported by name within deadAfterMs + heartbeatMs', async () => {
    const runId = newRunId();
    const scenario: Scenario = { kind: 'dead', victim: 1, length: 200_000, options: { ...FAST, dataPlane } };
    const ranks = [0, 1].map((r) => spawnRank(runId, r, 2, scenario));
    await Promise.all([ranks[0].waitFor('waiting'), ranks[1].waitFor('idle')]);
    await new Promise((r) => setTimeout(r, 300));
    const tStop = Date.now();
    ranks[1].proc.kill('SIGSTOP');
    const e = await ranks[0].waitFor('error', 10_000);
    expect(e.code).toBe('COLLECTIVE');
    expect(e.message).toMatch(/rank 1 is dead \(no heartbeat for \d+ ms\)/);
    expect((e.t as number) - tStop).toBeLessThan(FAST.deadAfterMs + FAST.heartbeatMs + 1_000);
    await ranks[0].exit;
  });
});

describe('RedisCollective, one process per rank', () => {

  it('a stale run is replaced by a new generation (any world size); its paused workers then fail as stale', async () => {
    const runId = newRunId();
    const old = [0, 1].map((r) => spawnRank(runId, r, 2, { kind: 'zombie', options: FAST }));
    const joined = await Promise.all(old.map((o) => o.waitFor('joined')));
    await Promise.all(old.map((o) => o.waitFor('paused-point')));
    for (const o of old) o.proc.kill('SIGSTOP');

    // A new launch with the same run id and another world size: it waits until the old
    // generation's heartbeats expire, then opens the next generation.
    const t0 = Date.now();
    const fresh = await Promise.all([0, 1, 2].map((rank) => RedisCollective.connect({ url: url(), runId, rank, worldSize: 3, ...FAST })));
    const waited = Date.now() - t0;
    try {
      expect(fresh.map((c) => c.generation)).toEqual([2, 2, 2]);
      expect(joined.map((j) => j.generation)).toEqual([1, 1]);
      expect(waited).toBeLessThan(FAST.deadAfterMs + 3_000);
      const data = fresh.map((c) => new Float32Array([c.rank, 1, 2]));
      await Promise.all(fresh.map((c, i) => c.allReduceMean(data[i], 'g2')));
      for (const d of data) expect([...d]).toEqual([1, 1, 2]);

      for (const o of old) {
        o.proc.kill('SIGCONT');
        o.proc.stdin!.write('go\n');
      }
      const errors = await Promise.all(old.map((o) => o.waitFor('error', 10_000)));
      for (const e of errors) {
        expect(e.code).toBe('COLLECTIVE');
        expect(e.message).toMatch(/stale generation — rank \d joined generation 1 of run test-\w+, but the run is now at generation 2/);
      }
      await Promise.all(fresh.map((c) => c.barrier('still-fine')));
    } finally {
      await Promise.all(fresh.map((c) => c.close()));
    }
    await Promise.all(old.map((o) => o.exit));
    expect(await keysOf(runId)).toEqual([]);
  });
});

describe('RedisCollective, ranks in this process', () => {
  const connectAll = (runId: string, n: number, extra: Partial<RedisCollectiveOptions> = {}) =>
    Promise.all([...Array(n).keys()].map((rank) => RedisCollective.connect({ url: url(), runId, rank, worldSize: n, ...FAST, ...extra })));

  it('refuses to join a run whose generation is in progress with live ranks', async () => {
    const runId = newRunId();
    const run = await connectAll(runId, 2);
    try {
      const t0 = Date.now();
      const err = await RedisCollective.connect({ url: url(), runId, rank: 0, worldSize: 2, ...FAST, rendezvousTimeoutMs: 1_000 }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CollectiveError);
      expect((err as Error).message).toMatch(/refused after waiting 1000 ms: generation 1 \(worldSize 2\) is in progress with live ranks 0, 1/);
      expect((err as Error).message).toContain('another launch');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1_000);
      await Promise.all(run.map((c) => c.barrier('unaffected')));
    } finally {
      await Promise.all(run.map((c) => c.close()));
    }
    expect(await keysOf(runId)).toEqual([]);
  });

  it('times out a wait, naming the missing ranks, and aborts the peers; the collective then stays failed', async () => {
    const runId = newRunId();
    const [a, b] = await connectAll(runId, 2);
    try {
      const err = await a.barrier('lonely', { timeoutMs: 600 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CollectiveError);
      expect((err as Error).message).toMatch(/^barrier 'lonely' \(seq \d+\): timed out after 600 ms \(ranks 1 have not arrived\)$/);
      // b arrives late: the abort a published stops it at its first check.
      const errB = await b.barrier('lonely').catch((e: unknown) => e);
      expect((errB as Error).message).toMatch(/aborted by rank 0: barrier 'lonely' \(seq \d+\): timed out/);
      await expect(a.barrier('again')).rejects.toThrow(/failed earlier/);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
    expect(await keysOf(runId)).toEqual([]);
  });

  it('detects ranks calling a barrier with different tags', async () => {
    const runId = newRunId();
    const [a, b] = await connectAll(runId, 2);
    try {
      const errs = await Promise.all([a.barrier('epoch-1'), b.barrier('epoch-2')].map((p) => p.catch((e: unknown) => e)));
      for (const e of errs) expect((e as Error).message).toMatch(/different tags: rank 0 epoch-1, rank 1 epoch-2/);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
    expect(await keysOf(runId)).toEqual([]);
  });

  it.each(PLANES)('consecutive all-reduces are independent and leave nothing behind; chunks smaller than a segment (%s)', async (dataPlane) => {
    const runId = newRunId();
    const cs = await connectAll(runId, 2, { chunkBytes: 12, dataPlane });
    try {
      for (let step = 0; step < 3; step++) {
        const data = cs.map((c) => Float32Array.from({ length: 10 }, (_, i) => (c.rank + 1) * (i + step)));
        await Promise.all(cs.map((c, i) => c.allReduceMean(data[i])));
        const expected = Float32Array.from({ length: 10 }, (_, i) => (1.5 * (i + step)));
        for (const d of data) expect(d).toEqual(expected);
        // Between calls only the run's bookkeeping remains: the record and the heartbeats.
        const keys = await keysOf(runId);
        expect(keys.filter((k) => !/:(rdzv|hb:\d)$/.test(k))).toEqual([]);
      }
      const lengths = await Promise.all(cs.map((c) => c.allReduceMean(new Float32Array(c.rank === 0 ? 4 : 5)).catch((e: unknown) => e)));
      for (const e of lengths) expect((e as Error).message).toMatch(/elements|different lengths|aborted/);
    } finally {
      await Promise.all(cs.map((c) => c.close()));
    }
    expect(await keysOf(runId)).toEqual([]);
  });

  it('works with one rank (identity operations) and validates its options', async () => {
    const runId = newRunId();
    const c = await RedisCollective.connect({ url: url(), runId, rank: 0, worldSize: 1 });
    const data = new Float32Array([1, NaN, -0]);
    expect(await c.allReduceMean(data)).toBe(data);
    expect(await c.broadcastJson({ a: 1 }, 0, 't')).toEqual({ a: 1 });
    expect(await c.allGatherJson('x', 't')).toEqual(['x']);
    await c.barrier('b');
    await c.close();
    await expect(c.barrier('after')).rejects.toThrow(/closed/);
    expect(await keysOf(runId)).toEqual([]);

    const base = { url: url(), runId: 'ok', rank: 0, worldSize: 2 };
    await expect(RedisCollective.connect({ ...base, runId: 'a:b' })).rejects.toBeInstanceOf(ConfigError);
    await expect(RedisCollective.connect({ ...base, rank: 2 })).rejects.toThrow(/rank must be an integer in \[0, 1\], got 2/);
    await expect(RedisCollective.connect({ ...base, chunkBytes: 64 * 1024 * 1024 })).rejects.toThrow(/chunkBytes/);
    await expect(RedisCollective.connect({ ...base, chunkBytes: 10 })).rejects.toThrow(/multiple of 4/);
    await expect(RedisCollective.connect({ ...base, heartbeatMs: 1_000, deadAfterMs: 1_500 })).rejects.toThrow(
      /deadAfterMs must be an integer in \[2000, 30000\], got 1500/,
    );
    await expect(RedisCollective.connect({ ...base, deadAfterMs: 40_000 })).rejects.toThrow(/deadAfterMs/);
  });
});
