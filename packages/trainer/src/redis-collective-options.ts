/**
 * Options of the Redis collective: one typed object with documented defaults, validated up front
 * (a ConfigError names the key and the bad value).
 */
import { ConfigError, parseRedisUrl, silentLogger, type Logger } from '@smolrate/core';
import { isValidRunId } from './collective-keys.js';
import { parsePortRange } from './peer-mesh.js';

const MIB = 1024 * 1024;
/** Redis limits a value to 512 MB; docs/reference/optimizer.md recommends 4–32 MiB chunks. */
export const MAX_CHUNK_BYTES = 32 * MIB;
/** Upper bound of `deadAfterMs`: a dead peer is always reported within ~30 s. */
const MAX_DEAD_AFTER_MS = 30_000;

export interface RedisCollectiveOptions {
  /** `redis://…` (see parseRedisUrl). */
  url: string;
  /** Names the run: keys live under `smolrate:{runId}:`. Letters, digits, `.`, `_`, `-`. */
  runId: string;
  rank: number;
  worldSize: number;
  /** Bound on every wait (ms without progress). Default 30 000. */
  timeoutMs?: number;
  /** Bound on the rendezvous (all ranks registered). Default `timeoutMs`. */
  rendezvousTimeoutMs?: number;
  /** Heartbeat period, also the period of the peers' liveness checks. Default 1 000. */
  heartbeatMs?: number;
  /** A peer whose heartbeat is older than this is dead. Default 3 × heartbeatMs; ≥ 2 × heartbeatMs, ≤ 30 000. */
  deadAfterMs?: number;
  /** Bytes per bucket (a TCP frame, a Redis value) of the reductions and broadcasts. Default 4 MiB (the best of 1–16 MiB measured for the tcp plane on a 2-core host); a multiple of 4, ≤ 32 MiB. */
  chunkBytes?: number;
  /**
   * Where the all-reduce, all-gather and gather data travel: 'tcp' (default) over direct
   * connections between the ranks (peer-mesh.ts), 'redis' through Redis values. Rendezvous,
   * heartbeats, barriers and small messages always go through Redis.
   */
  dataPlane?: DataPlane;
  /** tcp: address to bind. Default 127.0.0.1; 0.0.0.0 for ranks on several hosts. */
  host?: string;
  /** tcp: "0" (ephemeral, default), a port, or a range "29500-29599". */
  port?: string;
  /** tcp: address the peers dial. Default: `host`, or the first external IPv4 with 0.0.0.0. */
  advertise?: string;
  /** Diagnostics (rendezvous, stale generations). Default: silent. */
  log?: Logger;
}

export type DataPlane = 'tcp' | 'redis';

export interface ResolvedCollectiveOptions {
  url: string;
  runId: string;
  rank: number;
  worldSize: number;
  timeoutMs: number;
  rendezvousTimeoutMs: number;
  heartbeatMs: number;
  deadAfterMs: number;
  chunkBytes: number;
  dataPlane: DataPlane;
  host: string;
  port: string;
  advertise: string;
  log: Logger;
}

export const COLLECTIVE_DEFAULTS = {
  timeoutMs: 30_000,
  heartbeatMs: 1_000,
  deadAfterHeartbeats: 3,
  chunkBytes: 4 * MIB,
} as const;

export function integer(key: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`collective: ${key} must be an integer in [${min}, ${max}], got ${String(v)}`);
  }
  return v;
}

export function resolveCollectiveOptions(o: RedisCollectiveOptions): ResolvedCollectiveOptions {
  if (typeof o.url !== 'string' || o.url === '') throw new ConfigError('collective: url is required');
  parseRedisUrl(o.url);
  if (typeof o.runId !== 'string' || !isValidRunId(o.runId)) {
    throw new ConfigError(`collective: runId must be 1–128 letters, digits, '.', '_' or '-', got ${JSON.stringify(o.runId)}`);
  }
  const worldSize = integer('worldSize', o.worldSize, 1, 65_536);
  const rank = integer('rank', o.rank, 0, worldSize - 1);
  const timeoutMs = integer('timeoutMs', o.timeoutMs ?? COLLECTIVE_DEFAULTS.timeoutMs, 1, 2 ** 31 - 1);
  const heartbeatMs = integer('heartbeatMs', o.heartbeatMs ?? COLLECTIVE_DEFAULTS.heartbeatMs, 10, MAX_DEAD_AFTER_MS / 2);
  const deadAfterMs = integer(
    'deadAfterMs',
    o.deadAfterMs ?? Math.min(MAX_DEAD_AFTER_MS, COLLECTIVE_DEFAULTS.deadAfterHeartbeats * heartbeatMs),
    2 * heartbeatMs,
    MAX_DEAD_AFTER_MS,
  );
  const chunkBytes = integer('chunkBytes', o.chunkBytes ?? COLLECTIVE_DEFAULTS.chunkBytes, 4, MAX_CHUNK_BYTES);
  if (chunkBytes % 4 !== 0) throw new ConfigError(`collective: chunkBytes must be a multiple of 4, got ${chunkBytes}`);
  const rendezvousTimeoutMs = integer('rendezvousTimeoutMs', o.rendezvousTimeoutMs ?? timeoutMs, 1, 2 ** 31 - 1);
  const dataPlane = o.dataPlane ?? 'tcp';
  if (dataPlane !== 'tcp' && dataPlane !== 'redis') throw new ConfigError(`collective: dataPlane must be 'tcp' or 'redis', got ${JSON.stringify(dataPlane)}`);
  const port = o.port ?? '0';
  parsePortRange(port);
  return {
    url: o.url, runId: o.runId, rank, worldSize, timeoutMs, rendezvousTimeoutMs, heartbeatMs, deadAfterMs, chunkBytes,
    dataPlane, host: o.host ?? '127.0.0.1', port, advertise: o.advertise ?? '', log: o.log ?? silentLogger,
  };
}
