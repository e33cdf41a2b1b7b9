/**
 * The launcher (docs/reference/design.md "Training topology"; torchrun-like): forks `gpus` workers on this node
 * with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, CUDA_VISIBLE_DEVICES, SMOLRATE_RUN_ID and
 * REDIS_URL in their environment. With more than one rank and no Redis URL it starts a private
 * redis-server on a free loopback port and stops it at the end.
 *
 * Watchdog: when a worker exits with an error or a signal, its peers are killed (SIGTERM, then
 * SIGKILL after a grace period) and waited for; with `maxRestarts` > 0 all workers then restart
 * from the latest checkpoint (`resume`), else the launch fails naming the dead rank. Every
 * attempt ends with all its children reaped, so nothing is left behind; workers also exit on
 * their own when the launcher's IPC channel closes.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { CollectiveError, ConfigError, forkEntry, silentLogger, type Logger } from '@smolrate/core';
import { startRedisServer, type RedisServerHandle } from '@smolrate/core/redis-server';
import { resumeCheckpoint } from './checkpoint.js';
import { checkTrainerConfig, type TrainerConfig } from './config.js';
import { CONFIG_ENV } from './train-worker.js';
import { FEATURE_READS_IN_FLIGHT } from './feature-cache.js';

export interface LaunchOptions {
  config: TrainerConfig;
  /** Workers on this node (one per GPU; CPU workers on a host without GPUs). */
  gpus: number;
  /** Nodes of the run. Default 1. */
  nnodes?: number;
  /** This node, 0 ≤ nodeRank < nnodes. Default 0. */
  nodeRank?: number;
  /** Shared Redis; required with nnodes > 1. Default: a private redis-server when world > 1. */
  redis?: string | null;
  /** Run id (keys `smolrate:{runId}:`); required with nnodes > 1. Default: a random one. */
  runId?: string | null;
  /** Restarts of all workers from the latest checkpoint after a failure. Default 0. */
  maxRestarts?: number;
  /** Grace between SIGTERM and SIGKILL when stopping workers. Default 5 000 ms. */
  killGraceMs?: number;
  /** Stop everything on SIGINT / SIGTERM of this process. Default false (the CLI sets it). */
  handleSignals?: boolean;
  /** Extra environment of the workers. */
  env?: NodeJS.ProcessEnv;
  log?: Logger;
  /** Called with each forked worker (tests, diagnostics). */
  onWorker?: (w: { rank: number; localRank: number; attempt: number; pid: number }) => void;
}

export interface LaunchResult {
  runId: string;
  worldSize: number;
  restarts: number;
  /** Every worker process id started, over all attempts (all exited when launch returns). */
  pids: number[];
  /** SIGINT / SIGTERM that stopped the run (handleSignals), else null. */
  stoppedBy: NodeJS.Signals | null;
}

interface Exit {
  rank: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

const describeExit = (e: Exit) => (e.signal !== null ? `killed by ${e.signal}` : `exit code ${e.code}`);

export async function launch(o: LaunchOptions): Promise<LaunchResult> {
  const log = o.log ?? silentLogger;
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  const maxRestarts = o.maxRestarts ?? 0;
  if (!Number.isSafeInteger(o.gpus) || o.gpus < 1) throw new ConfigError(`--gpus must be a positive integer, got ${o.gpus}`);
  if (!Number.isSafeInteger(nnodes) || nnodes < 1) throw new ConfigError(`--nnodes must be a positive integer, got ${nnodes}`);
  if (!Number.isSafeInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes) throw new ConfigError(`--node-rank must be in [0, ${nnodes}), got ${nodeRank}`);
  if (!Number.isSafeInteger(maxRestarts) || maxRestarts < 0) throw new ConfigError(`--max-restarts must be an integer >= 0, got ${maxRestarts}`);
  if (nnodes > 1 && (!o.redis || !o.runId)) throw new ConfigError(`--nnodes ${nnodes} needs a shared --redis URL and the same --run-id on every node`);
  const worldSize = o.gpus * nnodes;
  checkTrainerConfig(o.config, worldSize);
  if (o.config.resume) await resumeCheckpoint(o.config); // a config the checkpoint refuses fails here, before any fork
  const runId = o.runId ?? `run-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  if (!existsSync('/dev/nvidiactl')) log.info(`no GPU on this host: --gpus ${o.gpus} starts ${o.gpus} CPU worker${o.gpus === 1 ? '' : 's'}`);

  let server: RedisServerHandle | null = null;
  let redisUrl = o.redis ?? null;
  const live = new Set<ChildProcess>();
  let signalled: NodeJS.Signals | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    signalled = sig;
    log.warn(`received ${sig}: stopping all workers`);
    for (const ch of live) ch.kill('SIGTERM');
  };
  if (o.handleSignals) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  const pids: number[] = [];
  try {
    if (worldSize > 1 && redisUrl === null) {
      server = await startRedisServer({ name: 'trainer' });
      redisUrl = server.url;
      log.info('started a private redis-server', { port: server.port });
    }
    for (let attempt = 0; ; attempt++) {
      const failure = await runAttempt(attempt);
      if (failure === null || signalled !== null) return { runId, worldSize, restarts: attempt, pids, stoppedBy: signalled };
      const what = `rank ${failure.rank} (pid ${failure.pid}) died: ${describeExit(failure)}`;
      if (attempt >= maxRestarts) {
        throw new CollectiveError(`${what}; all workers stopped${maxRestarts > 0 ? ` after ${maxRestarts} restart${maxRestarts === 1 ? '' : 's'}` : ' (no --max-restarts)'}`);
      }
      log.warn(`${what}; restarting all workers from the latest checkpoint`, { restart: attempt + 1, maxRestarts });
    }
  } finally {
    if (o.handleSignals) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    await server?.stop();
  }

  /** Forks this node's workers and waits for all of them; the first failure (or null). */
  async function runAttempt(attempt: number): Promise<Exit | null> {
    const config = { ...o.config, resume: o.config.resume || attempt > 0 };
    const exits: Array<Promise<Exit>> = [];
    let failure: Exit | null = null;
    let killTimer: NodeJS.Timeout | undefined;
    const stopAll = () => {
      for (const ch of live) ch.kill('SIGTERM');
      killTimer ??= setTimeout(() => {
        for (const ch of live) ch.kill('SIGKILL');
      }, o.killGraceMs ?? 5_000);
    };
    for (let localRank = 0; localRank < o.gpus; localRank++) {
      const rank = nodeRank * o.gpus + localRank;
      const env: NodeJS.ProcessEnv = {
        UV_THREADPOOL_SIZE: String(FEATURE_READS_IN_FLIGHT), // feature reads in flight (feature-cache.ts)
        ...process.env,
        ...o.env,
        RANK: String(rank),
        LOCAL_RANK: String(localRank),
        WORLD_SIZE: String(worldSize),
        LOCAL_WORLD_SIZE: String(o.gpus),
        CUDA_VISIBLE_DEVICES: String(localRank),
        SMOLRATE_RUN_ID: runId,
        [CONFIG_ENV]: JSON.stringify(config),
      };
      if (redisUrl !== null) env.REDIS_URL = redisUrl;
      else delete env.REDIS_URL;
      const child = forkEntry(import.meta.url, 'worker-main', [], { env });
      live.add(child);
      pids.push(child.pid!);
      o.onWorker?.({ rank, localRank, attempt, pid: child.pid! });
      exits.push(
        new Promise<Exit>((resolve) => {
          child.once('exit', (code, signal) => {
            live.delete(child);
            const e = { rank, pid: child.pid!, code, signal };
            if ((code !== 0 || signal !== null) && failure === null) {
              failure = e;
              stopAll();
            }
            resolve(e);
          });
        }),
      );
    }
    await Promise.all(exits);
    clearTimeout(killTimer);
    return failure;
  }
}
