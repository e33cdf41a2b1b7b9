/**
 * The local worker processes of `build-shards --workers N`: N forked `worker` processes serving
 * one build. A worker that dies (killed, crashed) is replaced, at most `maxRestarts` times in all;
 * its job is taken over by the BullMQ stalled-job check meanwhile. When no worker is left and no
 * restart remains, `check()` throws so the build fails instead of waiting forever. `stop()` sends
 * SIGTERM (graceful: running jobs finish), then SIGKILL after a grace period — no orphans: the
 * workers also stop by themselves when this process dies (their IPC channel closes).
 */
import type { ChildProcess } from 'node:child_process';
import { ServiceError, silentLogger, type Logger } from '@smolrate/core';
import { forkEntry } from '@smolrate/core';
import type { WorkerJobEvent } from './worker.js';

/** Message a forked worker sends its parent for each job event. */
export interface WorkerJobMessage extends WorkerJobEvent {
  kind: 'smolrate-dp-job';
}

export type PoolEvent =
  | ({ kind: 'job'; pid: number } & WorkerJobEvent)
  | { kind: 'exit'; pid: number; code: number | null; signal: NodeJS.Signals | null; expected: boolean }
  | { kind: 'spawn'; pid: number; restart: boolean };

export interface WorkerPoolOptions {
  count: number;
  redisUrl: string;
  runId: string;
  /** Further `worker` command arguments (lock settings, concurrency). */
  args?: string[];
  /** Replacements for workers that die. Default: `count`. */
  maxRestarts?: number;
  env?: NodeJS.ProcessEnv;
  /** Grace period of `stop()` before SIGKILL. Default 30 000 ms. */
  stopGraceMs?: number;
  log?: Logger;
  onEvent?: (ev: PoolEvent) => void;
}

function isJobMessage(m: unknown): m is WorkerJobMessage {
  return typeof m === 'object' && m !== null && (m as { kind?: unknown }).kind === 'smolrate-dp-job';
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export class WorkerPool {
  private readonly children = new Set<ChildProcess>();
  private restarts = 0;
  private stopping = false;
  private failure: ServiceError | undefined;
  private readonly log: Logger;

  private constructor(private readonly opts: WorkerPoolOptions) {
    this.log = opts.log ?? silentLogger;
  }

  static start(opts: WorkerPoolOptions): WorkerPool {
    const pool = new WorkerPool(opts);
    for (let i = 0; i < opts.count; i++) pool.spawn(false);
    return pool;
  }

  /** Process ids of the workers alive now. */
  get pids(): number[] {
    return [...this.children].map((c) => c.pid!).filter((p) => p !== undefined);
  }

  private spawn(restart: boolean): void {
    const args = ['--redis', this.opts.redisUrl, '--run-id', this.opts.runId, ...(this.opts.args ?? [])];
    const child = forkEntry(import.meta.url, 'worker-entry', args, { env: this.opts.env });
    this.children.add(child);
    const pid = child.pid ?? -1;
    child.on('message', (m: unknown) => {
      if (isJobMessage(m)) {
        const { kind: _kind, ...ev } = m;
        this.opts.onEvent?.({ kind: 'job', pid, ...ev });
      }
    });
    child.on('error', (e) => this.log.warn('worker process error', { pid, error: e.message }));
    child.on('exit', (code, signal) => {
      this.children.delete(child);
      const expected = this.stopping;
      this.opts.onEvent?.({ kind: 'exit', pid, code, signal, expected });
      if (expected) return;
      const maxRestarts = this.opts.maxRestarts ?? this.opts.count;
      if (this.restarts < maxRestarts) {
        this.restarts++;
        this.log.warn('a worker process died; starting a replacement (its job will be taken over)', { pid, code, signal, restart: this.restarts, maxRestarts });
        this.spawn(true);
      } else if (this.children.size === 0) {
        this.failure = new ServiceError(`every local worker process died (last: pid ${pid}, ${signal ?? `exit code ${code}`}) and the ${maxRestarts} restarts are used up`);
      } else {
        this.log.warn('a worker process died; no restarts left', { pid, code, signal, alive: this.children.size });
      }
    });
    this.opts.onEvent?.({ kind: 'spawn', pid, restart });
  }

  /** Throws when the pool can no longer make progress. */
  check(): void {
    if (this.failure) throw this.failure;
  }

  /** Stops every worker: SIGTERM, then SIGKILL after the grace period. */
  async stop(): Promise<void> {
    this.stopping = true;
    const grace = this.opts.stopGraceMs ?? 30_000;
    const list = [...this.children];
    for (const c of list) c.kill('SIGTERM');
    await Promise.all(
      list.map(async (c) => {
        if (!(await waitExit(c, grace))) {
          this.log.warn('worker did not stop in time; killing it', { pid: c.pid });
          c.kill('SIGKILL');
          await waitExit(c, 5_000);
        }
      }),
    );
  }
}
