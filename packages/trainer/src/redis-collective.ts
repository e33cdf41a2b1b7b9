/**
 * The collective of N workers, coordinated through Redis (docs/reference/design.md, "Training topology";
 * docs/reference/optimizer.md, "Data-parallel all-reduce"). Keys: collective-keys.ts; atomic steps:
 * collective-scripts.ts.
 *
 * Rendezvous by generation. The run's record `smolrate:{runId}:rdzv` names the current
 * generation (counter + random token), its world size, state (open → closed, or failed) and
 * members. JOIN (atomic): no record, or a record none of whose members has a live heartbeat
 * (a stale run: crashed, killed, or finished without cleanup) → open generation gen+1 with a new
 * token and sweep the stale generation's keys; an open generation → register, refusing a
 * different world size ("worldSize mismatch … naming both") or a rank held by another live
 * process ("duplicate rank"), both of which also fail the generation so its waiting members stop
 * with the same message; a closed (running) or failed generation with live members → wait for it
 * to end (a restart that came before the old workers stopped) and refuse after
 * `rendezvousTimeoutMs` (a second launch with the same run id). The last rank to register
 * closes the generation and releases the others. A worker of a replaced generation (a zombie that
 * was paused while the run restarted) fails its next call with "stale generation"; its keys live
 * in its own generation's namespace, so it cannot disturb the new one.
 *
 * Liveness. Each rank's heartbeat thread refreshes `{G}hb:{rank}` (PX deadAfterMs) every
 * heartbeatMs. Every wait blocks on Redis lists in slices of heartbeatMs and, after an empty
 * slice, checks every peer's heartbeat, the generation and the abort key: a peer whose heartbeat
 * key expired is reported as "rank R is dead (no heartbeat for X ms)" within deadAfterMs +
 * heartbeatMs of its death (4 s by default). Every wait ends after timeoutMs without progress.
 * The first rank that fails publishes `{G}abort`, and its peers stop at their next check.
 *
 * Clean-up: every key is UNLINKed by its last reader and carries a TTL as a safety net
 * (2·timeoutMs + deadAfterMs for data, deadAfterMs for heartbeats); the last member to close
 * deletes the record and sweeps the generation's namespace. Nothing accumulates across steps
 * (sequence numbers make consecutive calls independent) or runs.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { CollectiveError, redactUrl } from '@smolrate/core';
import type { Collective, CollectiveCallOptions, ReduceCallOptions } from './collective.js';
import { checkBounds, checkRoot, equalBounds, jsonRoundTrip } from './collective-checks.js';
import { roundToBf16InPlace } from './grad-transport.js';
import { PeerMesh } from './peer-mesh.js';
import { GenerationKeys, generationPrefix, rendezvousKey, runPrefix } from './collective-keys.js';
import { startHeartbeat, type Heartbeat } from './collective-heartbeat.js';
import { meanInRankOrder, planAllReduce, type AllReducePlan } from './all-reduce-plan.js';
import { connectScripted, guard, sleep, type JoinReply, type Scripted } from './collective-connection.js';
import { TaskGroup } from './task-group.js';
import {
  integer,
  resolveCollectiveOptions,
  type RedisCollectiveOptions,
  type ResolvedCollectiveOptions,
} from './redis-collective-options.js';

interface OpContext {
  /** "allReduceMean 'grads' (seq 7)" — how errors name the call. */
  what: string;
  seq: number;
  timeoutMs: number;
  /** TTL of the call's keys. */
  ttlMs: number;
}

interface WaitContext extends OpContext {
  /** For the timeout message: what is still missing. */
  pending?: () => string | Promise<string>;
  /** During the rendezvous, unregistered ranks are not dead yet. */
  rendezvous?: boolean;
}

/** Extra time a Redis command may take beyond the block time it asked for. */
const GRACE_MS = 10_000;

function asFloat32(buf: Buffer | null, len: number, what: string): Float32Array {
  if (buf === null) throw new CollectiveError(`${what} is missing (expired before it was read?)`);
  if (buf.byteLength !== len * 4) {
    throw new CollectiveError(`${what} has ${buf.byteLength} bytes, expected ${len * 4} (ranks passed different lengths?)`);
  }
  if (buf.byteOffset % 4 === 0) return new Float32Array(buf.buffer, buf.byteOffset, len);
  const copy = new Float32Array(len);
  new Uint8Array(copy.buffer).set(buf);
  return copy;
}

export class RedisCollective implements Collective {
  readonly rank: number;
  readonly worldSize: number;
  readonly runId: string;
  /** Rendezvous generation of this run (1 for the first; +1 for each replaced stale one). */
  generation = 0;
  /** `{host}:{pid}:{nonce}`: how this process appears in error messages of its peers. */
  readonly member: string;

  private readonly o: ResolvedCollectiveOptions;
  private readonly tx: Scripted; // writes: values, notifications, arrivals
  private readonly txOut: Scripted; // the all-reduce owner's results: not queued behind its contributions
  private readonly rx: Scripted; // reads: values, acks, unlinks
  private readonly blk: Scripted; // blocking pops and liveness checks
  private readonly rdzvKey: string;
  private token = '';
  private keys = new GenerationKeys('');
  private hb: Heartbeat | undefined;
  private joined = false;
  private seq = 0;
  private busy: string | undefined;
  private failure: CollectiveError | undefined;
  private closing: Promise<void> | undefined;
  private readonly lastAlive: number[];
  private scratch = new Float32Array(0);
  /** The TCP data plane (dataPlane 'tcp' with more than one rank), connected after the rendezvous. */
  private mesh: PeerMesh | null = null;

  private constructor(o: ResolvedCollectiveOptions) {
    this.o = o;
    this.rank = o.rank;
    this.worldSize = o.worldSize;
    this.runId = o.runId;
    this.member = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.rdzvKey = rendezvousKey(o.runId);
    const name = (role: string) => `smolrate:${o.runId}:r${o.rank}:${role}`;
    this.tx = connectScripted(o.url, name('tx'), o.log);
    this.txOut = connectScripted(o.url, name('out'), o.log);
    this.rx = connectScripted(o.url, name('rx'), o.log);
    this.blk = connectScripted(o.url, name('wait'), o.log);
    this.lastAlive = new Array<number>(o.worldSize).fill(Date.now());
  }

  /** Connects, registers and waits until all `worldSize` ranks have joined. */
  static async connect(options: RedisCollectiveOptions): Promise<RedisCollective> {
    const c = new RedisCollective(resolveCollectiveOptions(options));
    try {
      await c.rendezvous();
      if (c.o.dataPlane === 'tcp' && c.worldSize > 1) await c.connectMesh();
      return c;
    } catch (e) {
      await c.close();
      throw e instanceof CollectiveError ? e : new CollectiveError(`rendezvous of run ${c.runId}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Data keys live this long: a reader arrives within timeoutMs of the writer on success. */
  private ttlFor(timeoutMs: number): number {
    return 2 * timeoutMs + this.o.deadAfterMs;
  }

  private get rendezvousTtlMs(): number {
    return Math.max(4 * this.o.deadAfterMs, 30_000);
  }

  // -------------------------------------------------------------------------------------------
  // Rendezvous

  private async rendezvous(): Promise<void> {
    const o = this.o;
    const t0 = Date.now();
    const deadline = t0 + o.rendezvousTimeoutMs;
    const what = `rendezvous of run ${o.runId} (rank ${o.rank} of ${o.worldSize})`;
    try {
      await guard(this.tx.ping(), Math.min(o.rendezvousTimeoutMs, GRACE_MS), what);
    } catch (e) {
      throw new CollectiveError(`${what}: cannot reach Redis at ${redactUrl(o.url)}: ${(e as Error).message}`, { cause: e });
    }
    this.hb = await startHeartbeat({
      url: o.url,
      connectionName: `smolrate:${o.runId}:r${o.rank}:hb`,
      heartbeatMs: o.heartbeatMs,
      deadAfterMs: o.deadAfterMs,
      rendezvousTtlMs: this.rendezvousTtlMs,
      readyTimeoutMs: Math.min(o.rendezvousTimeoutMs, GRACE_MS),
      log: o.log,
    });

    let reply: JoinReply;
    let lastWait = '';
    for (;;) {
      reply = await guard(
        this.tx.join(
          this.rdzvKey,
          o.rank,
          o.worldSize,
          this.member,
          o.deadAfterMs,
          this.rendezvousTtlMs,
          runPrefix(o.runId),
          randomBytes(6).toString('hex'),
          this.ttlFor(o.rendezvousTimeoutMs),
        ),
        GRACE_MS,
        what,
      );
      const [status, , , , , message] = reply;
      if (status === 'joined') break;
      if (status === 'error') throw new CollectiveError(`${what} refused: ${message}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new CollectiveError(
          `${what} refused after waiting ${o.rendezvousTimeoutMs} ms: ${message} — is another launch using run id ` +
            `"${o.runId}"? (members of an ended run count as dead ${o.deadAfterMs} ms after their last heartbeat)`,
        );
      }
      if (message !== lastWait) o.log.info('rendezvous: waiting for an earlier generation to end', { reason: message });
      lastWait = message;
      await sleep(Math.min(o.heartbeatMs, 250, left));
    }

    const [, gen, token, joinedCount, staleNs, staleMessage] = reply;
    this.generation = Number(gen);
    this.token = token;
    this.keys = new GenerationKeys(generationPrefix(o.runId, this.generation, token));
    this.joined = true;
    this.hb.begin({
      rendezvousKey: this.rdzvKey,
      heartbeatKey: this.keys.heartbeat(o.rank),
      token,
      value: `alive|${this.member}`,
    });
    if (staleNs !== '') {
      o.log.warn('rendezvous: replaced a stale generation', { runId: o.runId, stale: staleMessage, generation: this.generation });
      await this.sweep(staleNs).catch((e: unknown) => o.log.warn('could not sweep a stale generation', { error: e as Error }));
    }
    if (Number(joinedCount) < o.worldSize) {
      const ctx: WaitContext = {
        what,
        seq: 0,
        timeoutMs: Math.max(1, deadline - Date.now()),
        ttlMs: this.ttlFor(o.rendezvousTimeoutMs),
        rendezvous: true,
        pending: async () => {
          const h = await this.rx.hgetall(this.rdzvKey);
          const missing = [...Array(o.worldSize).keys()].filter((r) => h[`m${r}`] === undefined);
          return `ranks ${missing.join(', ')} have not joined`;
        },
      };
      await this.waitPop([this.keys.go()], ctx);
    }
    this.lastAlive.fill(Date.now());
    o.log.info('rendezvous complete', { runId: o.runId, generation: this.generation, worldSize: o.worldSize, ms: Date.now() - t0 });
  }

  /** Listens, exchanges addresses through Redis and connects the TCP mesh of this generation. */
  private async connectMesh(): Promise<void> {
    const o = this.o;
    this.mesh = await PeerMesh.listen({ rank: o.rank, worldSize: o.worldSize, host: o.host, port: o.port, advertise: o.advertise });
    const addresses = await this.allGatherJson(this.mesh.address, 'tcp-addresses', { timeoutMs: o.rendezvousTimeoutMs });
    const mesh = this.mesh;
    await this.op('connect', 'tcp-mesh', { timeoutMs: o.rendezvousTimeoutMs }, (ctx) => this.meshWait(mesh.connect(addresses, this.token), ctx));
    o.log.info('tcp data plane connected', { address: mesh.address, peers: addresses.length - 1 });
  }

  /**
   * Waits for a data-plane operation with the collective's liveness rules: the peers' heartbeats,
   * the generation and the abort key are checked every heartbeatMs, and the wait fails after
   * timeoutMs without a byte arriving. A peer whose connection drops fails it at once.
   */
  private async meshWait<T>(p: Promise<T>, ctx: OpContext): Promise<T> {
    const mesh = this.mesh!;
    let settled = false;
    const done = p.finally(() => {
      settled = true;
    });
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<'tick'>((resolve) => {
        timer = setTimeout(() => resolve('tick'), this.o.heartbeatMs);
      });
      const r = await Promise.race([done, tick]).finally(() => clearTimeout(timer));
      if (settled) return r as T;
      const idle = Date.now() - mesh.lastProgress;
      if (idle > ctx.timeoutMs) {
        const err = new CollectiveError(`${ctx.what}: timed out after ${ctx.timeoutMs} ms without data from the peers`);
        mesh.fail(err);
        throw err;
      }
      try {
        await this.checkHealth(ctx);
      } catch (e) {
        mesh.fail(e as CollectiveError);
        throw e;
      }
    }
  }

  /** UNLINKs every key under `prefix` (a generation namespace). */
  private async sweep(prefix: string): Promise<number> {
    let cursor = '0';
    let n = 0;
    do {
      const [next, keys] = await guard(this.rx.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000), GRACE_MS, 'sweep');
      if (keys.length > 0) n += await this.rx.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
    return n;
  }

  // -------------------------------------------------------------------------------------------
  // Waiting and liveness

  private staleError(what: string, current?: string): CollectiveError {
    const now = current === undefined || current === '' ? "the run's rendezvous record is gone" : `the run is now at generation ${current}`;
    return new CollectiveError(
      `${what}: stale generation — rank ${this.rank} joined generation ${this.generation} of run ${this.runId}, but ${now}`,
    );
  }

  /** Throws when a peer is dead or closed, the run failed or moved on, or someone aborted. */
  private async checkHealth(ctx: WaitContext): Promise<void> {
    const hb = this.hb?.status;
    if (hb?.stale) throw this.staleError(ctx.what);
    if (hb?.failed !== undefined) throw new CollectiveError(`${ctx.what}: the heartbeat thread failed: ${hb.failed}`);
    const res = await guard(this.blk.health(this.rdzvKey, this.token, this.worldSize, this.keys.prefix), GRACE_MS, ctx.what);
    if (res[0] === 'stale') throw this.staleError(ctx.what, res[1]);
    const [, state, error, abort, ...beats] = res;
    if (state === 'failed') throw new CollectiveError(`${ctx.what}: the rendezvous failed: ${error}`);
    const now = Date.now();
    const dead: number[] = [];
    const closed: number[] = [];
    beats.forEach((b, r) => {
      if (r === this.rank) return;
      if (b === 'alive') this.lastAlive[r] = now;
      else if (b === 'dead' || (b === 'absent' && !ctx.rendezvous)) dead.push(r);
      else if (b === 'closed') closed.push(r);
    });
    if (dead.length > 0) {
      const list = dead.map((r) => `rank ${r} is dead (no heartbeat for ${Math.max(this.o.deadAfterMs, now - this.lastAlive[r])} ms)`);
      throw new CollectiveError(`${list.join('; ')} — rank ${this.rank} gave up waiting in ${ctx.what}`);
    }
    if (abort !== '') throw new CollectiveError(`${ctx.what}: aborted by ${abort}`);
    if (closed.length > 0) {
      throw new CollectiveError(`${ctx.what}: rank ${closed.join(', ')} closed the collective while rank ${this.rank} waits`);
    }
  }

  /**
   * BLPOP on `keys` in slices of heartbeatMs, checking the peers after each empty slice.
   * Throws after `ctx.timeoutMs` without a message, or when `interrupt()` returns an error.
   */
  private async waitPop(keys: string[], ctx: WaitContext, interrupt?: () => unknown): Promise<[string, string]> {
    const deadline = Date.now() + ctx.timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) {
        const pending = ctx.pending ? await Promise.resolve(ctx.pending()).catch(() => '') : '';
        throw new CollectiveError(`${ctx.what}: timed out after ${ctx.timeoutMs} ms${pending ? ` (${pending})` : ''}`);
      }
      const slice = Math.max(10, Math.min(this.o.heartbeatMs, left));
      const popped = await guard(this.blk.blpop(...keys, (slice / 1000).toFixed(3)), slice + GRACE_MS, ctx.what);
      if (popped !== null) return popped;
      const err = interrupt?.();
      if (err !== undefined) throw err;
      await this.checkHealth(ctx);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Operations

  private async op<T>(kind: string, tag: string, options: CollectiveCallOptions | undefined, fn: (ctx: OpContext) => Promise<T>): Promise<T> {
    const name = `${kind} '${tag}'`;
    if (this.closing) throw new CollectiveError(`${name}: the collective is closed`);
    if (this.failure) throw new CollectiveError(`${name}: the collective failed earlier: ${this.failure.message}`, { cause: this.failure });
    if (this.busy !== undefined) {
      throw new CollectiveError(`${name}: called while ${this.busy} is in progress — await each collective call before the next`);
    }
    const timeoutMs = integer('timeoutMs', options?.timeoutMs ?? this.o.timeoutMs, 1, 2 ** 31 - 1);
    const seq = ++this.seq;
    const ctx: OpContext = { what: `${name} (seq ${seq})`, seq, timeoutMs, ttlMs: this.ttlFor(timeoutMs) };
    this.busy = ctx.what;
    try {
      return await fn(ctx);
    } catch (e) {
      const err = e instanceof CollectiveError ? e : new CollectiveError(`${ctx.what}: ${(e as Error).message}`, { cause: e });
      this.failure = err;
      await this.publishAbort(err, ctx.ttlMs);
      throw err;
    } finally {
      this.busy = undefined;
    }
  }

  /** Tells the peers (best effort) so that they stop at their next check instead of timing out. */
  private async publishAbort(err: CollectiveError, ttlMs: number): Promise<void> {
    if (!this.joined || this.closing) return;
    try {
      await guard(this.tx.set(this.keys.abort(), `rank ${this.rank}: ${err.message}`, 'PX', ttlMs, 'NX'), 2_000, 'abort');
    } catch {
      // Redis unreachable: the peers will time out or see this rank's heartbeat stop.
    }
  }

  /** Fails a call whose generation was replaced or whose run was aborted by another rank. */
  private async preflight(what: string): Promise<void> {
    const res = await this.tx.preflight(this.rdzvKey, this.keys.abort(), this.token);
    if (res.startsWith('stale|')) throw this.staleError(what, res.slice(6));
    if (res.startsWith('abort|')) throw new CollectiveError(`${what}: aborted by ${res.slice(6)}`);
  }

  /** After ARRIVE: waits for the release (unless this rank was last) and checks the tags. */
  private async released(reply: string[], goKey: string, arrivalsKey: string, ctx: OpContext): Promise<void> {
    let msg = reply[0];
    if (msg === 'stale') throw this.staleError(ctx.what, reply[1]);
    if (msg === 'abort') throw new CollectiveError(`${ctx.what}: aborted by ${reply[1]}`);
    if (msg === 'wait') {
      const pending = async () => {
        const arrived = await this.rx.hkeys(arrivalsKey);
        const missing = [...Array(this.worldSize).keys()].filter((r) => !arrived.includes(String(r)));
        return `ranks ${missing.join(', ')} have not arrived`;
      };
      msg = (await this.waitPop([goKey], { ...ctx, pending }))[1];
    }
    if (msg.startsWith('mismatch|')) throw new CollectiveError(`${ctx.what}: the ranks used different tags: ${msg.slice(9)}`);
  }

  async barrier(tag: string, options?: CollectiveCallOptions): Promise<void> {
    return this.op('barrier', tag, options, async (ctx) => {
      if (this.worldSize === 1) return;
      const k = this.keys;
      const reply = await guard(
        this.tx.arrive(4, this.rdzvKey, k.abort(), k.barrier(ctx.seq), k.barrierGo(ctx.seq), this.token, this.rank, this.worldSize, tag, ctx.ttlMs),
        GRACE_MS,
        ctx.what,
      );
      await this.released(reply, k.barrierGo(ctx.seq), k.barrier(ctx.seq), ctx);
    });
  }

  async allGatherJson<T>(value: T, tag: string, options?: CollectiveCallOptions): Promise<T[]> {
    return this.op('allGatherJson', tag, options, async (ctx) => {
      const json = JSON.stringify(value);
      if (json === undefined) throw new CollectiveError(`${ctx.what}: the value is not JSON-serialisable (${typeof value})`);
      if (this.worldSize === 1) return [JSON.parse(json) as T];
      const k = this.keys;
      const q = ctx.seq;
      const reply = await guard(
        this.tx.arrive(5, this.rdzvKey, k.abort(), k.gather(q), k.gatherGo(q), k.gatherValue(q, this.rank), this.token, this.rank, this.worldSize, tag, ctx.ttlMs, json),
        GRACE_MS,
        ctx.what,
      );
      await this.released(reply, k.gatherGo(q), k.gather(q), ctx);
      const valueKeys = [...Array(this.worldSize).keys()].map((r) => k.gatherValue(q, r));
      const values = await guard(this.rx.mget(...valueKeys), ctx.timeoutMs, ctx.what);
      await guard(this.rx.ack(1 + valueKeys.length, k.gatherAck(q), ...valueKeys, this.worldSize, ctx.ttlMs), GRACE_MS, ctx.what);
      return values.map((v, r) => {
        if (v === null) throw new CollectiveError(`${ctx.what}: the value of rank ${r} is missing (expired?)`);
        return JSON.parse(v) as T;
      });
    });
  }

  async broadcast(data: Uint8Array | null, root: number, tag: string, options?: CollectiveCallOptions): Promise<Uint8Array> {
    return this.op('broadcast', tag, options, (ctx) => this.broadcastBytes(ctx, data, root, tag));
  }

  async broadcastJson<T>(value: T | null, root: number, tag: string, options?: CollectiveCallOptions): Promise<T> {
    return this.op('broadcastJson', tag, options, async (ctx) => {
      let bytes: Uint8Array | null = null;
      if (this.rank === root) {
        if (value === null) throw new CollectiveError(`${ctx.what}: the root (rank ${root}) passed no value`);
        bytes = Buffer.from(JSON.stringify(jsonRoundTrip(value, ctx.what)), 'utf8');
      }
      const out = await this.broadcastBytes(ctx, bytes, root, tag);
      return JSON.parse(Buffer.from(out.buffer, out.byteOffset, out.byteLength).toString('utf8')) as T;
    });
  }

  private async broadcastBytes(ctx: OpContext, data: Uint8Array | null, root: number, tag: string): Promise<Uint8Array> {
    checkRoot(root, this.worldSize, ctx.what);
    if (this.rank === root && data === null) throw new CollectiveError(`${ctx.what}: the root (rank ${root}) passed no data`);
    if (this.worldSize === 1) return data!;
    const k = this.keys;
    const q = ctx.seq;
    const cb = this.o.chunkBytes;
    if (this.rank === root) {
      const bytes = data!;
      const chunks = Math.ceil(bytes.byteLength / cb);
      const tasks = new TaskGroup();
      tasks.add(this.preflight(ctx.what));
      for (let c = 0; c < chunks; c++) {
        const len = Math.min(cb, bytes.byteLength - c * cb);
        tasks.add(this.tx.set(k.broadcastChunk(q, c), Buffer.from(bytes.buffer, bytes.byteOffset + c * cb, len), 'PX', ctx.ttlMs));
      }
      const meta = JSON.stringify({ root, tag, bytes: bytes.byteLength, chunks });
      tasks.add(this.tx.pushx(k.broadcastGo(q), ctx.ttlMs, ...Array<string>(this.worldSize - 1).fill(meta)));
      await guard(tasks.settle(), ctx.timeoutMs, ctx.what);
      return bytes;
    }
    const [, metaJson] = await this.waitPop([k.broadcastGo(q)], { ...ctx, pending: () => `nothing from root ${root} yet` });
    const meta = JSON.parse(metaJson) as { root: number; tag: string; bytes: number; chunks: number };
    if (meta.root !== root || meta.tag !== tag) {
      throw new CollectiveError(`${ctx.what}: rank ${this.rank} expects root ${root}, but rank ${meta.root} broadcast '${meta.tag}'`);
    }
    const chunkKeys = [...Array(meta.chunks).keys()].map((c) => k.broadcastChunk(q, c));
    const out = new Uint8Array(meta.bytes);
    const parts = await guard(Promise.all(chunkKeys.map((key) => this.rx.getBuffer(key))), ctx.timeoutMs, ctx.what);
    parts.forEach((p, c) => {
      const expected = Math.min(cb, meta.bytes - c * cb);
      if (p === null || p.byteLength !== expected) {
        throw new CollectiveError(`${ctx.what}: chunk ${c} from root ${root} is ${p === null ? 'missing' : `${p.byteLength} bytes, expected ${expected}`}`);
      }
      out.set(p, c * cb);
    });
    await guard(this.rx.ack(1 + chunkKeys.length, k.broadcastAck(q), ...chunkKeys, this.worldSize - 1, ctx.ttlMs), GRACE_MS, ctx.what);
    return out;
  }

  /**
   * Reduce-scatter + all-gather through Redis. Rank r owns segment r. Every rank SETs its
   * contribution to each other segment chunk by chunk (pipelined on one connection) and notifies
   * the owner per chunk; the owner sums each complete chunk in rank order, SETs the result and
   * notifies everyone, who copy it in. Reads, sums and writes of different chunks overlap.
   */
  async allReduceMean(data: Float32Array, tag = 'allReduceMean', options?: ReduceCallOptions): Promise<Float32Array> {
    return this.op('allReduceMean', tag, options, async (ctx) => {
      const bf16 = options?.dtype === 'bf16';
      if (this.mesh !== null) {
        const bounds = equalBounds(data.length, this.worldSize);
        const o = { gather: true, dtype: options?.dtype, ready: options?.ready, bucketElems: this.o.chunkBytes / 4 };
        await this.meshWait(this.mesh.reduce(ctx.seq, ctx.what, tag, data, bounds, o), ctx);
        return data;
      }
      if (options?.ready) await options.ready.reached(data.length);
      // Redis carries float32: the bf16 transport's rounding is applied here, before and after.
      if (bf16) roundToBf16InPlace(data);
      await this.allReduceRedis(data, tag, ctx);
      return bf16 ? roundToBf16InPlace(data) : data;
    });
  }

  async reduceScatterMean(data: Float32Array, bounds: readonly number[], tag: string, options?: ReduceCallOptions): Promise<Float32Array> {
    return this.op('reduceScatterMean', tag, options, async (ctx) => {
      checkBounds(bounds, this.worldSize, data.length, ctx.what);
      if (this.mesh !== null) {
        const o = { gather: false, dtype: options?.dtype, ready: options?.ready, bucketElems: this.o.chunkBytes / 4 };
        await this.meshWait(this.mesh.reduce(ctx.seq, ctx.what, tag, data, bounds, o), ctx);
        return data;
      }
      // Redis: the whole mean (a superset of this rank's segment), same arithmetic.
      if (options?.ready) await options.ready.reached(data.length);
      if (options?.dtype === 'bf16') roundToBf16InPlace(data);
      await this.allReduceRedis(data, tag, ctx);
      return data;
    });
  }

  async allGather(data: Float32Array, bounds: readonly number[], tag: string, options?: CollectiveCallOptions): Promise<Float32Array> {
    checkBounds(bounds, this.worldSize, data.length, `allGather '${tag}'`);
    if (this.mesh !== null) {
      const mesh = this.mesh;
      return this.op('allGather', tag, options, async (ctx) => {
        await this.meshWait(mesh.allGather(ctx.seq, ctx.what, tag, data, bounds, this.o.chunkBytes / 4), ctx);
        return data;
      });
    }
    // Redis: one broadcast per segment.
    for (let s = 0; s < this.worldSize; s++) {
      const seg = new Uint8Array(data.buffer, data.byteOffset + bounds[s] * 4, (bounds[s + 1] - bounds[s]) * 4);
      const got = await this.broadcast(this.rank === s ? seg : null, s, `${tag}/${s}`, options);
      if (this.rank !== s) seg.set(got);
    }
    return data;
  }

  async gather(data: Uint8Array, root: number, tag: string, options?: CollectiveCallOptions): Promise<Uint8Array[] | null> {
    checkRoot(root, this.worldSize, `gather '${tag}'`);
    if (this.mesh !== null) {
      const mesh = this.mesh;
      return this.op('gather', tag, options, (ctx) => this.meshWait(mesh.gather(ctx.seq, ctx.what, tag, data, root, this.o.chunkBytes), ctx));
    }
    const out: Uint8Array[] = [];
    for (let s = 0; s < this.worldSize; s++) out.push(await this.broadcast(this.rank === s ? data : null, s, `${tag}/${s}`, options));
    return this.rank === root ? out : null;
  }

  /** The Redis data plane's all-reduce (inside an op). */
  private async allReduceRedis(data: Float32Array, tag: string, ctx: OpContext): Promise<void> {
    if (this.worldSize === 1) return;
    const n = this.worldSize;
    const r = this.rank;
    const q = ctx.seq;
    const k = this.keys;
    const plan = planAllReduce(data.length, n, this.o.chunkBytes);
    const tasks = new TaskGroup();
    tasks.add(this.preflight(ctx.what));

    // Send: the other segments in the order r+1, r+2, … so that the owners start at once.
    const others = [...Array(n - 1).keys()].map((i) => (r + 1 + i) % n);
    const note = (c: number) => JSON.stringify([r, c, data.length, tag]);
    let maxChunks = 0;
    for (const s of others) {
      maxChunks = Math.max(maxChunks, plan.chunks(s));
      if (plan.chunks(s) === 0) tasks.add(this.tx.pushx(k.ownerInbox(q, s), ctx.ttlMs, note(-1)));
    }
    for (let c = 0; c < maxChunks; c++) {
      for (const s of others) {
        if (c >= plan.chunks(s)) continue;
        const [lo, hi] = plan.chunkRange(s, c);
        tasks.add(this.tx.set(k.contribution(q, s, r, c), this.bytes(data, lo, hi), 'PX', ctx.ttlMs));
        tasks.add(this.tx.pushx(k.ownerInbox(q, s), ctx.ttlMs, note(c)));
      }
    }

    // Receive: contributions to my segment (then reduce) and reduced chunks of the others.
    const myChunks = plan.chunks(r);
    const needIn = (n - 1) * Math.max(myChunks, 1);
    const needOut = others.reduce((sum, s) => sum + plan.chunks(s), 0);
    const arrived = new Int32Array(myChunks);
    let gotIn = 0;
    let gotOut = 0;
    const inbox = k.ownerInbox(q, r);
    const outbox = k.rankInbox(q, r);
    const wait: WaitContext = {
      ...ctx,
      pending: () => `${gotIn} of ${needIn} contributions to segment ${r}, ${gotOut} of ${needOut} reduced chunks received`,
    };
    while (gotIn < needIn || gotOut < needOut) {
      if (tasks.error !== undefined) throw tasks.error;
      const [key, msg] = await this.waitPop([inbox, outbox], wait, () => tasks.error);
      if (key === inbox) {
        const [from, c, len, t] = JSON.parse(msg) as [number, number, number, string];
        if (len !== data.length || t !== tag || c >= myChunks) {
          throw new CollectiveError(
            `${ctx.what}: rank ${from} called allReduceMean '${t}' with ${len} elements, rank ${r} '${tag}' with ${data.length}`,
          );
        }
        gotIn++;
        if (c >= 0 && ++arrived[c] === n - 1) tasks.add(this.reduceChunk(data, plan, q, c, ctx));
      } else {
        const [s, c] = JSON.parse(msg) as [number, number];
        gotOut++;
        tasks.add(this.fetchReduced(data, plan, q, s, c, ctx));
      }
    }
    await guard(tasks.settle(), ctx.timeoutMs, ctx.what);
  }

  private bytes(data: Float32Array, lo: number, hi: number): Buffer {
    return Buffer.from(data.buffer, data.byteOffset + lo * 4, (hi - lo) * 4);
  }

  /** Owner: chunk c of my segment, once every contribution is in Redis. */
  private async reduceChunk(data: Float32Array, plan: AllReducePlan, q: number, c: number, ctx: OpContext): Promise<void> {
    const n = this.worldSize;
    const r = this.rank;
    const k = this.keys;
    const [lo, hi] = plan.chunkRange(r, c);
    const len = hi - lo;
    const froms = [...Array(n).keys()].filter((f) => f !== r);
    const keys = froms.map((f) => k.contribution(q, r, f, c));
    const bufs = await Promise.all(keys.map((key) => this.rx.getBuffer(key)));
    const parts = [...Array(n).keys()].map((f) =>
      f === r ? data.subarray(lo, hi) : asFloat32(bufs[froms.indexOf(f)], len, `${ctx.what}: the contribution of rank ${f} to chunk ${c}`),
    );
    if (this.scratch.length < len) this.scratch = new Float32Array(Math.max(len, Math.min(plan.chunkElems, plan.length)));
    // Synchronous from here to data.set: the shared scratch is never used by two chunks at once.
    const acc = meanInRankOrder(parts, this.scratch.subarray(0, len));
    data.set(acc, lo);
    const done: Promise<unknown>[] = [this.rx.unlink(...keys)];
    // On its own connection: the result goes out while this rank's contributions still stream.
    done.push(this.txOut.set(k.reduced(q, r, c), this.bytes(data, lo, hi), 'PX', ctx.ttlMs));
    for (const t of froms) done.push(this.txOut.pushx(k.rankInbox(q, t), ctx.ttlMs, JSON.stringify([r, c])));
    await Promise.all(done);
  }

  /** Everyone else: copies reduced chunk c of segment s into place; the last reader deletes it. */
  private async fetchReduced(data: Float32Array, plan: AllReducePlan, q: number, s: number, c: number, ctx: OpContext): Promise<void> {
    const k = this.keys;
    const [lo, hi] = plan.chunkRange(s, c);
    const key = k.reduced(q, s, c);
    const buf = await this.rx.getBuffer(key);
    const what = `${ctx.what}: reduced chunk ${c} of segment ${s}`;
    if (buf === null) throw new CollectiveError(`${what} is missing (expired before it was read?)`);
    if (buf.byteLength !== (hi - lo) * 4) throw new CollectiveError(`${what} has ${buf.byteLength} bytes, expected ${(hi - lo) * 4}`);
    new Uint8Array(data.buffer, data.byteOffset + lo * 4, buf.byteLength).set(buf);
    await this.rx.ack(2, k.reducedAck(q, s, c), key, this.worldSize - 1, ctx.ttlMs);
  }

  // -------------------------------------------------------------------------------------------

  /**
   * Leaves the run: stops the heartbeat, marks this rank closed; the last member deletes the
   * rendezvous record and sweeps the generation's keys. Safe to call at any time (a wait in
   * progress fails), any number of times.
   */
  async close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.busy !== undefined) this.blk.disconnect(); // ends a blocking wait now
      await this.mesh?.close();
      await this.hb?.stop();
      if (this.joined) {
        try {
          const res = await guard(
            this.tx.closeRank(this.rdzvKey, this.keys.heartbeat(this.rank), this.token, this.member, this.worldSize, this.keys.prefix, this.o.deadAfterMs),
            GRACE_MS,
            'close',
          );
          if (res === 'last' || res === 'stale') await this.sweep(this.keys.prefix);
        } catch (e) {
          this.o.log.warn('collective: close could not update Redis', { error: e as Error });
        }
      }
      await Promise.all(
        [this.tx, this.txOut, this.rx, this.blk].map(async (c) => {
          try {
            await guard(c.quit(), 2_000, 'quit');
          } catch {
            c.disconnect();
          }
        }),
      );
    })();
    return this.closing;
  }
}
