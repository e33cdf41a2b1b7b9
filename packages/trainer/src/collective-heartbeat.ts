/**
 * The heartbeat of one rank, beaten from a worker thread with its own Redis connection. Not
 * from the main thread: a training step runs synchronous tfjs kernels for seconds at a time,
 * and a heartbeat that waits for the event loop would let peers declare a busy rank dead. The
 * thread dies with its process (SIGKILL included), so a dead process stops beating at once.
 *
 * Each beat runs BEAT_LUA: it refreshes `{G}hb:{rank}` (PX deadAfterMs) and the rendezvous
 * record, unless the run has moved on to another generation — then the thread reports `stale`
 * and the collective's next wait fails with a clear error.
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { CollectiveError, parseRedisUrl, redactUrl, redisOptionsFromUrl, type Logger } from '@smolrate/core';
import { BEAT_LUA } from './collective-scripts.js';

export interface HeartbeatOptions {
  url: string;
  /** CLIENT SETNAME of the thread's connection. */
  connectionName: string;
  heartbeatMs: number;
  deadAfterMs: number;
  rendezvousTtlMs: number;
  /** How long to wait for the thread's connection. */
  readyTimeoutMs: number;
  log: Logger;
}

export interface HeartbeatTarget {
  rendezvousKey: string;
  heartbeatKey: string;
  token: string;
  /** The heartbeat value, `alive|{member}`. */
  value: string;
}

export interface HeartbeatStatus {
  /** Set when a beat found the generation replaced. */
  stale: boolean;
  /** The latest beat error (cleared by a successful beat). */
  lastError?: string;
  /** The thread failed; no more beats. */
  failed?: string;
  beats: number;
}

export interface Heartbeat {
  readonly status: HeartbeatStatus;
  /** Starts beating for `target` (the first beat goes out at once). */
  begin(target: HeartbeatTarget): void;
  /** Stops beating; resolves once no beat is in flight and the thread has exited. */
  stop(): Promise<void>;
}

// CommonJS on purpose: an eval'd worker cannot import TypeScript sources, and needs nothing but
// ioredis (by absolute path, so resolution does not depend on the working directory).
const WORKER_SOURCE = `
const { parentPort, workerData: d } = require('node:worker_threads');
const { Redis } = require(d.ioredisPath);
const redis = new Redis({ ...d.redisOptions, maxRetriesPerRequest: 1, connectionName: d.connectionName });
redis.on('error', () => {}); // reported through the failed beats
redis.once('ready', () => parentPort.postMessage({ type: 'ready' }));
redis.defineCommand('beat', { numberOfKeys: 2, lua: d.lua });
let target;
let timer;
let inFlight = Promise.resolve();
let stopping = false;
function beat() {
  if (stopping) return;
  inFlight = redis
    .beat(target.rendezvousKey, target.heartbeatKey, target.token, target.value, d.deadAfterMs, d.rendezvousTtlMs)
    .then((r) => parentPort.postMessage({ type: r === 'ok' ? 'beat' : 'stale' }))
    .catch((e) => parentPort.postMessage({ type: 'error', message: String((e && e.message) || e) }));
}
parentPort.on('message', (m) => {
  if (m.type === 'begin' && !stopping) {
    target = m.target;
    beat();
    timer = setInterval(beat, d.heartbeatMs);
  } else if (m.type === 'stop') {
    stopping = true;
    clearInterval(timer);
    inFlight.finally(() => {
      redis.disconnect();
      parentPort.postMessage({ type: 'stopped' });
      parentPort.close();
    });
  }
});
`;

const ioredisPath = createRequire(import.meta.url).resolve('ioredis');

/** Starts the thread; resolves once its Redis connection is ready. */
export async function startHeartbeat(opts: HeartbeatOptions): Promise<Heartbeat> {
  const status: HeartbeatStatus = { stale: false, beats: 0 };
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    execArgv: [], // not the parent's loaders (tsx): the script is plain CommonJS
    workerData: {
      ioredisPath,
      redisOptions: redisOptionsFromUrl(parseRedisUrl(opts.url)),
      connectionName: opts.connectionName,
      lua: BEAT_LUA,
      heartbeatMs: opts.heartbeatMs,
      deadAfterMs: opts.deadAfterMs,
      rendezvousTtlMs: opts.rendezvousTtlMs,
    },
  });
  // The thread must not keep the process alive: a process that ends without close() stops
  // beating, and its peers see it leave.
  worker.unref();
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  let onReady: (() => void) | undefined;
  let onStopped: (() => void) | undefined;
  worker.on('message', (m: { type: string; message?: string }) => {
    switch (m.type) {
      case 'ready':
        onReady?.();
        break;
      case 'beat':
        status.beats++;
        status.lastError = undefined;
        break;
      case 'stale':
        status.stale = true;
        break;
      case 'error':
        if (status.lastError === undefined) opts.log.warn('heartbeat failed', { error: m.message });
        status.lastError = m.message;
        break;
      case 'stopped':
        onStopped?.();
        break;
    }
  });
  worker.on('error', (e) => {
    status.failed = e.message;
    opts.log.error('heartbeat thread failed', { error: e });
  });

  let timer: NodeJS.Timeout | undefined;
  const ready = await Promise.race([
    new Promise<boolean>((resolve) => (onReady = () => resolve(true))),
    exited.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), opts.readyTimeoutMs))),
  ]);
  clearTimeout(timer);
  if (!ready) {
    await worker.terminate();
    throw new CollectiveError(
      `heartbeat thread: ${status.failed ?? `no Redis connection within ${opts.readyTimeoutMs} ms`} (${redactUrl(opts.url)})`,
    );
  }

  let stopping: Promise<void> | undefined;
  return {
    status,
    begin(target) {
      worker.postMessage({ type: 'begin', target });
    },
    stop() {
      stopping ??= (async () => {
        const stopped = new Promise<void>((resolve) => (onStopped = resolve));
        worker.postMessage({ type: 'stop' });
        // A beat in flight ends within the connection's retry budget; do not wait forever.
        const kill = setTimeout(() => void worker.terminate(), Math.max(2_000, 2 * opts.heartbeatMs));
        await Promise.race([stopped.then(() => exited), exited]);
        clearTimeout(kill);
      })();
      return stopping;
    },
  };
}
