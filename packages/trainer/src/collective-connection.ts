/**
 * The ioredis connections of the collective, with its Lua scripts defined as commands, and the
 * time bound put on every Redis round trip.
 */
import type { Redis } from 'ioredis';
import { CollectiveError, createRedis, type Logger } from '@smolrate/core';
import { ACK_LUA, ARRIVE_LUA, CLOSE_LUA, HEALTH_LUA, JOIN_LUA, PREFLIGHT_LUA, PUSH_LUA } from './collective-scripts.js';

export type JoinReply = [status: string, gen: number, token: string, joined: number, staleNs: string, message: string];

/** ioredis clients with the collective's scripts (EVALSHA, with EVAL on a script cache miss). */
export interface Scripted extends Redis {
  join(rdzv: string, ...args: Array<string | number>): Promise<JoinReply>;
  health(rdzv: string, token: string, world: number, ns: string): Promise<string[]>;
  closeRank(rdzv: string, hb: string, token: string, member: string, world: number, ns: string, ttl: number): Promise<string>;
  arrive(numKeys: number, ...args: Array<string | number>): Promise<string[]>;
  ack(numKeys: number, ...args: Array<string | number>): Promise<number>;
  pushx(list: string, ttl: number, ...messages: string[]): Promise<number>;
  preflight(rdzv: string, abort: string, token: string): Promise<string>;
}

export function connectScripted(url: string, name: string, log: Logger): Scripted {
  const r = createRedis(url, {
    connectionName: name,
    maxRetriesPerRequest: 2,
    // A command lost with a dropped connection must fail the collective, not run twice (a
    // notification pushed twice would be counted twice).
    ioredis: { autoResendUnfulfilledCommands: false },
  });
  r.on('error', (e: Error) => log.debug('redis connection error', { connection: name, error: e }));
  r.defineCommand('join', { numberOfKeys: 1, lua: JOIN_LUA });
  r.defineCommand('health', { numberOfKeys: 1, lua: HEALTH_LUA });
  r.defineCommand('closeRank', { numberOfKeys: 2, lua: CLOSE_LUA });
  r.defineCommand('arrive', { lua: ARRIVE_LUA });
  r.defineCommand('ack', { lua: ACK_LUA });
  r.defineCommand('pushx', { numberOfKeys: 1, lua: PUSH_LUA });
  r.defineCommand('preflight', { numberOfKeys: 2, lua: PREFLIGHT_LUA });
  return r as Scripted;
}

/** Rejects with a CollectiveError when `p` has not settled within `ms`. */
export function guard<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CollectiveError(`${what}: Redis did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
