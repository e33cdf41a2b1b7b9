/**
 * Constant-memory streaming: a 200 MiB object goes up through putStream and comes back through
 * createReadStream on each store, generated and hashed on the fly (never a 200 MiB buffer), while
 * process memory is sampled. Growth over the baseline must stay under 64 MiB.
 */
import { createCipheriv, createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalStore } from './local-store.js';
import { openStore } from './open-store.js';
import type { Store } from './store.js';

const MiB = 1024 * 1024;
const TOTAL = 200 * MiB;
const CHUNK = 64 * 1024;
const LIMIT = 64 * MiB;

/**
 * `total` pseudo-random bytes from AES-128-CTR over zeros, keyed by `seed`: deterministic, fast
 * (native), and produced one 64 KiB chunk at a time as the consumer pulls.
 */
function deterministicStream(total: number, seed: string, onChunk: (chunk: Buffer) => void): Readable {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK);
  let left = total;
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (left === 0) {
        this.push(null);
        return;
      }
      const n = Math.min(CHUNK, left);
      left -= n;
      const chunk = cipher.update(n === CHUNK ? zeros : zeros.subarray(0, n));
      onChunk(chunk);
      this.push(chunk);
    },
  });
}

interface Growth {
  rss: number;
  heapUsed: number;
  arrayBuffers: number;
}

/** Samples memory every `ms` until stopped; returns the peak growth over the starting values. */
function sampleMemory(ms = 20) {
  const base = process.memoryUsage();
  const peak: Growth = { rss: 0, heapUsed: 0, arrayBuffers: 0 };
  const sample = () => {
    const m = process.memoryUsage();
    peak.rss = Math.max(peak.rss, m.rss - base.rss);
    peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed - base.heapUsed);
    peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers - base.arrayBuffers);
  };
  const timer = setInterval(sample, ms);
  return {
    stop(): Growth {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

const mb = (n: number) => (n / MiB).toFixed(1);

async function roundTrip(name: string, store: Store): Promise<void> {
  // Warm-up: load and JIT the code paths so the baseline is not charged for them.
  await store.putStream('warmup.bin', deterministicStream(9 * MiB, 'warmup', () => undefined));
  for await (const _ of await store.createReadStream('warmup.bin'));
  await store.delete('warmup.bin');

  const sent = createHash('sha256');
  const received = createHash('sha256');
  const t0 = Date.now();
  const memory = sampleMemory();
  let growth: Growth;
  let bytesBack = 0;
  try {
    const { size } = await store.putStream('big.bin', deterministicStream(TOTAL, 'smolrate-200', (c) => sent.update(c)));
    expect(size).toBe(TOTAL);
    for await (const chunk of await store.createReadStream('big.bin')) {
      received.update(chunk as Buffer);
      bytesBack += (chunk as Buffer).length;
    }
  } finally {
    growth = memory.stop();
  }
  const seconds = (Date.now() - t0) / 1000;
  console.log(
    `[storage memory] ${name}: 200 MiB putStream + createReadStream in ${seconds.toFixed(1)} s; ` +
      `peak growth rss=${mb(growth.rss)} MiB heapUsed=${mb(growth.heapUsed)} MiB arrayBuffers=${mb(growth.arrayBuffers)} MiB ` +
      `(limit ${mb(LIMIT)} MiB)`,
  );
  expect(bytesBack).toBe(TOTAL);
  expect(received.digest('hex')).toBe(sent.digest('hex'));
  expect(await store.size('big.bin')).toBe(TOTAL);
  expect(growth.rss).toBeLessThan(LIMIT);
  expect(growth.heapUsed + growth.arrayBuffers).toBeLessThan(LIMIT);
}

describe('200 MiB streaming round trip in constant memory', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  it('local store', { timeout: 90_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'smolrate-mem-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await roundTrip('local', new LocalStore(dir));
  });

  it('s3 store', { timeout: 90_000 }, async () => {
    const bucket = process.env.SMOLRATE_TEST_S3_BUCKET;
    if (!bucket) throw new Error('SMOLRATE_TEST_S3_BUCKET is unset: run through the vitest global setup');
    const store = openStore(`s3://${bucket}/memory-${randomUUID()}`);
    cleanups.push(async () => {
      for (const e of await store.list()) await store.delete(e.key);
    });
    await roundTrip('s3', store);
  });
});
