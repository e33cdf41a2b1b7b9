/**
 * The TCP data plane of the collective (docs/training.md, "The collective"): one TCP connection
 * between every pair of ranks, over which the gradient reduce-scatter, the all-gather of
 * segments and the gather of byte blobs travel directly from process to process. Redis keeps the
 * control plane (rendezvous, heartbeats, barriers, small JSON messages, abort); the collective
 * (redis-collective.ts) wraps every mesh operation in its liveness checks and timeouts.
 *
 * Connections. Each rank listens on `host` (a port from a range, or an ephemeral one) and
 * publishes `advertise:port` through the rendezvous. Every rank dials every other one, so each
 * pair has two connections, one per direction: a rank reads only from the connections it dialed
 * (into one reused buffer per peer, `onread`) and writes only to those it accepted. Both sides
 * say hello with the generation token of the rendezvous, so a process of another generation (or
 * anything else on the port) is refused.
 *
 * Frames (little-endian): a 32-byte header then `count` elements.
 *
 *   u32 magic 'SMF1' | u32 seq | u8 kind | u8 dtype | u16 0 | u32 lo | u32 count | u32 total | u32 tag | u32 0
 *
 * kind 1 = a contribution to the receiver's segment, 2 = a finished part of the sender's segment,
 * 3 = bytes of a gather; dtype 0 = float32 (or raw bytes), 1 = bfloat16; lo/count the element
 * range in the full buffer (bytes for kind 3); total the full buffer's length; tag a hash of the
 * call's tag. Every rank issues the same operations in the same order (sequence numbers pair
 * them): a frame of a later operation waits, its socket paused, until that operation starts.
 *
 * Arithmetic: the owner of a segment sums the contributions in rank order 0..N−1 in float32 and
 * divides by N (all-reduce-plan.ts `meanInRankOrder`), then sends the result to everyone, so all
 * ranks hold the same bytes, the same bytes as the Redis data plane.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { CollectiveError, ConfigError } from '@smolrate/core';
import { meanInRankOrder } from './all-reduce-plan.js';
import { fromBf16, roundToBf16InPlace, toBf16, type GradDtype, type Watermark } from './grad-transport.js';

const MAGIC = 0x31464d53; // 'SMF1'
const HELLO = 0x31484d53; // 'SMH1'
const HEADER = 32;

const KIND_CONTRIB = 1;
const KIND_RESULT = 2;
const KIND_BYTES = 3;

export interface MeshListenOptions {
  rank: number;
  worldSize: number;
  /** Address to bind. Default 127.0.0.1; 0.0.0.0 (or ::) listens on every interface. */
  host?: string;
  /** "0" (an ephemeral port), "29500", or a range "29500-29599" (the first free one). */
  port?: string;
  /** Address the peers dial. Default: `host`, or this host's first external IPv4 when host is 0.0.0.0/::. */
  advertise?: string;
}

/** One operation's view of the incoming frames. */
interface Sink {
  /** Where a frame's payload goes (a view of exactly count · elementBytes bytes); throws on a mismatch. */
  target(from: number, h: FrameHeader): Uint8Array;
  /** The frame's payload is in place. */
  done(from: number, h: FrameHeader): void;
}

export interface FrameHeader {
  seq: number;
  kind: number;
  dtype: number;
  lo: number;
  count: number;
  total: number;
  tag: number;
}

/** Per-call options of the mesh operations. */
export interface MeshCallOptions {
  /** Wire type of the reduced values (contributions and all-reduce results). Default f32. */
  dtype?: GradDtype;
  /** Elements per frame (a bucket). */
  bucketElems: number;
  /** When given, a bucket is sent once the watermark has passed its end. */
  ready?: Watermark;
}

/** FNV-1a of a tag: frames of calls with different tags are told apart. */
function tagHash(tag: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < tag.length; i++) h = Math.imul(h ^ tag.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Parses "0", "29500" or "29500-29599" into [lo, hi]. */
export function parsePortRange(spec: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(spec.trim());
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo > 65535 || hi > 65535 || hi < lo || (lo === 0 && hi !== 0)) {
    throw new ConfigError(`collective port must be 0, a port or a range lo-hi within 1–65535, got ${JSON.stringify(spec)}`);
  }
  return [lo, hi];
}

/** The address peers should dial when listening on every interface. */
function externalAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function writeHeader(h: FrameHeader): Buffer {
  const b = Buffer.allocUnsafe(HEADER);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(h.seq, 4);
  b.writeUInt8(h.kind, 8);
  b.writeUInt8(h.dtype, 9);
  b.writeUInt16LE(0, 10);
  b.writeUInt32LE(h.lo, 12);
  b.writeUInt32LE(h.count, 16);
  b.writeUInt32LE(h.total, 20);
  b.writeUInt32LE(h.tag, 24);
  b.writeUInt32LE(0, 28);
  return b;
}

function readHeader(b: Buffer): FrameHeader {
  return {
    seq: b.readUInt32LE(4),
    kind: b.readUInt8(8),
    dtype: b.readUInt8(9),
    lo: b.readUInt32LE(12),
    count: b.readUInt32LE(16),
    total: b.readUInt32LE(20),
    tag: b.readUInt32LE(24),
  };
}

const bytesOf = (a: ArrayBufferView, lo = 0, len = a.byteLength): Buffer => Buffer.from(a.buffer, a.byteOffset + lo, len);

/** Bytes read per system call on a receiving connection (one reused buffer per peer). */
const READ_BUFFER = 1 << 20;

/**
 * One peer: two connections, each used in one direction. `rx` is dialed by this rank and carries
 * the peer's frames to it, read into one reused buffer (no allocation per read); `tx` is
 * accepted from the peer and carries this rank's frames to it. Frame parsing pauses `rx` at a
 * frame of an operation that has not started yet.
 */
class Peer {
  readonly rank: number;
  rx: Socket | null = null;
  tx: Socket | null = null;
  /** Why a connection ended (undefined while both are open). */
  closed: string | undefined;
  private head = Buffer.alloc(HEADER);
  private headFill = 0;
  private header: FrameHeader | null = null;
  private target: Uint8Array | null = null;
  private fill = 0;
  private stash: Buffer | null = null;
  private readonly spare = Buffer.allocUnsafe(READ_BUFFER);
  private readonly mesh: PeerMesh;

  constructor(mesh: PeerMesh, rank: number) {
    this.mesh = mesh;
    this.rank = rank;
  }

  watch(s: Socket): void {
    s.on('error', (e: Error) => this.end(`connection error: ${e.message}`));
    s.on('close', () => this.end('closed the connection'));
  }

  end(why: string): void {
    if (this.closed !== undefined) return;
    this.closed = why;
    this.mesh.peerEnded(this);
  }

  /**
   * Where the next read lands: the rest of the current frame's payload — straight into the
   * operation's buffer, so payloads are never copied — or the rest of a header (a read never
   * crosses a frame boundary), or, while a frame waits for its operation, the spare buffer.
   */
  nextBuffer(): Uint8Array {
    if (this.target !== null && this.fill < this.target.byteLength) return this.target.subarray(this.fill);
    if (this.header === null) return this.head.subarray(this.headFill);
    return this.spare;
  }

  /** `n` bytes were read into `buf` (a buffer nextBuffer returned). False pauses the socket. */
  onRead(n: number, buf: Uint8Array): boolean {
    try {
      if (buf === this.spare || buf.buffer !== (this.target ?? this.head).buffer) {
        this.onData(Buffer.from(buf.buffer, buf.byteOffset, n));
        return this.stash === null;
      }
      if (this.target !== null) {
        this.fill += n;
        this.mesh.progress();
        this.frameDone();
        return true;
      }
      this.headFill += n;
      return this.headerDone();
    } catch (e) {
      this.mesh.fail(e instanceof CollectiveError ? e : new CollectiveError(`rank ${this.rank}: ${(e as Error).message}`, { cause: e }));
      return false;
    }
  }

  /** After header bytes: parses a complete header and finds its target; false when it must wait. */
  private headerDone(): boolean {
    if (this.headFill < HEADER) return true;
    if (this.head.readUInt32LE(0) !== MAGIC) throw new CollectiveError(`rank ${this.rank} sent a malformed frame (bad magic)`);
    this.header = readHeader(this.head);
    this.headFill = 0;
    return this.findTarget();
  }

  private findTarget(): boolean {
    const sink = this.mesh.sinkFor(this.header!.seq);
    if (sink === null) {
      // A frame of the next operation: wait for it (TCP back-pressure holds the sender).
      this.stash = Buffer.alloc(0);
      return false;
    }
    this.target = sink.target(this.rank, this.header!);
    this.fill = 0;
    this.frameDone();
    return true;
  }

  private frameDone(): void {
    if (this.target === null || this.fill < this.target.byteLength) return;
    const h = this.header!;
    this.header = null;
    this.target = null;
    this.mesh.sinkFor(h.seq)!.done(this.rank, h);
  }

  /** Feeds bytes read elsewhere (the handshake's leftover, the spare buffer), copying them. */
  onData(d: Buffer): void {
    let off = 0;
    while (off < d.length) {
      if (this.header === null) {
        const n = Math.min(HEADER - this.headFill, d.length - off);
        d.copy(this.head, this.headFill, off, off + n);
        this.headFill += n;
        off += n;
        if (!this.headerDone()) {
          this.stash = Buffer.from(d.subarray(off));
          return;
        }
        continue;
      }
      if (this.target === null) {
        if (!this.findTarget()) {
          this.stash = Buffer.from(d.subarray(off));
          return;
        }
        continue;
      }
      const n = Math.min(this.target.byteLength - this.fill, d.length - off);
      this.target.set(d.subarray(off, off + n), this.fill);
      this.fill += n;
      off += n;
      this.mesh.progress();
      this.frameDone();
    }
  }

  /** A frame waits for its operation (the socket is paused). */
  get waiting(): boolean {
    return this.stash !== null;
  }

  /** Continues with stashed bytes once a new operation has started. */
  resume(): void {
    const s = this.stash;
    if (s === null) return;
    this.stash = null;
    try {
      if (this.header !== null && this.target === null && !this.findTarget()) {
        this.stash = s; // still not this frame's operation
        return;
      }
      this.onData(s);
    } catch (e) {
      this.mesh.fail(e instanceof CollectiveError ? e : new CollectiveError(`rank ${this.rank}: ${(e as Error).message}`, { cause: e }));
      return;
    }
    if (this.stash === null) this.rx!.resume();
  }

  /** Queues a frame; `flushed` runs once the kernel has taken all of it (the payload is not copied). */
  send(h: FrameHeader, payload: Uint8Array, flushed: () => void): void {
    const s = this.tx!;
    s.cork();
    s.write(writeHeader(h));
    s.write(payload.byteLength > 0 ? payload : Buffer.alloc(0), () => flushed());
    s.uncork();
  }
}

interface ActiveOp {
  seq: number;
  /** Frames queued but not yet taken by the kernel: their payloads are views of the caller's buffer. */
  unflushed: number;
  finishing: boolean;
  what: string;
  sink: Sink;
  /** Peers this operation still needs frames from (or must deliver to). */
  needs: Set<number>;
  resolve: () => void;
  reject: (e: CollectiveError) => void;
}

/**
 * A full mesh of TCP connections between the ranks of one rendezvous generation. Operations run
 * one at a time (the collective serialises them); each returns once this rank's part is done.
 */
/** Longest a clean close() waits for our last frames to drain before dropping the sockets. */
const CLOSE_GRACE_MS = 2_000;

export class PeerMesh {
  readonly rank: number;
  readonly worldSize: number;
  readonly address: string;
  /** Last time bytes arrived (ms since the epoch): the collective's no-progress timeout. */
  lastProgress = Date.now();
  private readonly server: Server;
  private readonly peers: Array<Peer | undefined>;
  private active: ActiveOp | null = null;
  private failure: CollectiveError | undefined;
  private closing = false;
  private token = '';
  private accepting: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private readonly scratch = new Map<string, ArrayBuffer>();

  private constructor(rank: number, worldSize: number, server: Server, address: string) {
    this.rank = rank;
    this.worldSize = worldSize;
    this.server = server;
    this.address = address;
    this.peers = new Array<Peer | undefined>(worldSize);
  }

  /** Binds the listening socket (before the addresses are exchanged). */
  static async listen(o: MeshListenOptions): Promise<PeerMesh> {
    const host = o.host ?? '127.0.0.1';
    const [lo, hi] = parsePortRange(o.port ?? '0');
    const server = createServer({ noDelay: true });
    let port = -1;
    let lastError: Error | undefined;
    for (let p = lo; p <= hi && port < 0; p++) {
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host, port: p, exclusive: true }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        port = (server.address() as { port: number }).port;
      } catch (e) {
        lastError = e as Error;
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') break;
      }
    }
    if (port < 0) {
      throw new CollectiveError(`collective: cannot listen on ${host} port ${lo === hi ? lo : `${lo}-${hi}`}: ${lastError?.message ?? 'no free port'}`);
    }
    const wildcard = host === '0.0.0.0' || host === '::';
    const advertise = o.advertise !== undefined && o.advertise !== '' ? o.advertise : wildcard ? externalAddress() : host;
    const mesh = new PeerMesh(o.rank, o.worldSize, server, `${advertise.includes(':') ? `[${advertise}]` : advertise}:${port}`);
    server.on('connection', (s) => mesh.accept(s));
    return mesh;
  }

  /**
   * Connects to every peer: dials each one (its frames to this rank arrive there) and waits
   * until each has dialed this rank (this rank's frames to it leave there). `addresses[r]` is
   * rank r's `address`; `token` the rendezvous generation's.
   */
  async connect(addresses: string[], token: string): Promise<void> {
    this.token = token;
    for (let s = 0; s < this.worldSize; s++) if (s !== this.rank) this.peers[s] ??= new Peer(this, s);
    const accepted = new Promise<void>((resolve, reject) => {
      this.accepting = { resolve, reject };
    });
    // Awaited after the dials; when a dial fails first, a later rejection (close) must not be unhandled.
    accepted.catch(() => undefined);
    this.checkAccepted();
    const others = [...Array(this.worldSize).keys()].filter((s) => s !== this.rank);
    await Promise.all(others.map((s) => this.dial(s, addresses[s])));
    await accepted;
  }

  private checkAccepted(): void {
    for (let s = 0; s < this.worldSize; s++) if (s !== this.rank && this.peers[s]?.tx === null) return;
    this.accepting?.resolve();
    this.accepting = null;
  }

  private hello(): Buffer {
    const t = Buffer.from(this.token, 'utf8');
    const b = Buffer.alloc(12 + t.length);
    b.writeUInt32LE(HELLO, 0);
    b.writeUInt32LE(this.rank, 4);
    b.writeUInt32LE(t.length, 8);
    t.copy(b, 12);
    return b;
  }

  /** Parses a hello from accumulated bytes: null while incomplete; throws when it is not one of ours. */
  private parseHello(buf: Buffer): { rank: number; size: number } | null {
    if (buf.length < 12) return null;
    if (buf.readUInt32LE(0) !== HELLO) throw new Error('not a smolrate collective peer');
    const len = buf.readUInt32LE(8);
    if (len > 256) throw new Error('malformed hello');
    if (buf.length < 12 + len) return null;
    if (buf.subarray(12, 12 + len).toString('utf8') !== this.token) throw new Error('a peer of another rendezvous generation');
    return { rank: buf.readUInt32LE(4), size: 12 + len };
  }

  /** A peer dials this rank: after its hello, this socket carries this rank's frames to it. */
  private accept(s: Socket): void {
    if (this.closing) return void s.destroy();
    if (this.token === '') {
      // Not connecting yet (a peer faster than this rank's address exchange): look again shortly.
      s.pause();
      setTimeout(() => this.accept(s), 20);
      return;
    }
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      let h: { rank: number; size: number } | null;
      try {
        h = this.parseHello(buf);
      } catch {
        return void s.destroy();
      }
      if (h === null) return;
      s.off('data', onData);
      const peer = this.peers[h.rank];
      if (h.rank === this.rank || peer === undefined || peer.tx !== null || buf.length > h.size) return void s.destroy();
      s.setNoDelay(true);
      peer.tx = s;
      peer.watch(s);
      // Nothing more comes this way; a closing peer still shows up as 'close'.
      s.on('data', () => peer.end('sent data on its receiving connection'));
      s.write(this.hello());
      this.checkAccepted();
    };
    s.on('data', onData);
    s.resume();
  }

  private async dial(rank: number, address: string): Promise<void> {
    const m = /^\[?([^\]]+)\]?:(\d+)$/.exec(address);
    if (!m) throw new CollectiveError(`collective: rank ${rank} published a malformed address ${JSON.stringify(address)}`);
    const peer = this.peers[rank]!;
    let handshake = Buffer.alloc(0);
    let onHello: ((e: Error | null) => void) | null = null;
    let ready = false;
    const spare = Buffer.allocUnsafe(4096);
    const s = createConnection({
      host: m[1],
      port: Number(m[2]),
      noDelay: true,
      onread: {
        // Until the hello is in, the spare buffer; then wherever the frame parser says.
        buffer: () => (ready ? peer.nextBuffer() : spare),
        callback: (n: number, buf: Uint8Array): boolean => {
          if (ready) return peer.onRead(n, buf);
          handshake = Buffer.concat([handshake, Buffer.from(buf.buffer, buf.byteOffset, n)]);
          try {
            const h = this.parseHello(handshake);
            if (h === null) return true;
            if (h.rank !== rank) throw new Error(`the process at ${address} is rank ${h.rank}`);
            ready = true;
            onHello?.(null);
            if (handshake.length > h.size) {
              peer.onData(handshake.subarray(h.size));
              return peer.waiting === false;
            }
          } catch (e) {
            onHello?.(e as Error);
          }
          return true;
        },
      },
    });
    peer.rx = s; // before any frame can arrive behind the hello
    try {
      await new Promise<void>((resolve, reject) => {
        onHello = (e) => (e ? reject(e) : resolve());
        s.once('connect', () => s.write(this.hello()));
        s.once('error', reject);
        s.once('close', () => reject(new Error('closed during the handshake')));
      });
      s.removeAllListeners('error');
      s.removeAllListeners('close');
      peer.watch(s);
    } catch (e) {
      s.destroy();
      throw new CollectiveError(`collective: cannot connect to rank ${rank} at ${address}: ${(e as Error).message}`, { cause: e });
    }
  }
  // -------------------------------------------------------------------------------------------
  // Plumbing used by Peer

  /** The sink of operation `seq` if it is the one running, else null (the frame waits). */
  sinkFor(seq: number): Sink | null {
    const op = this.active;
    if (op === null || seq > op.seq) return null;
    if (seq < op.seq) throw new CollectiveError(`a frame of operation ${seq} arrived during ${op.what}`);
    return op.sink;
  }

  progress(): void {
    this.lastProgress = Date.now();
  }

  peerEnded(p: Peer): void {
    if (this.closing) return;
    this.accepting?.reject(new CollectiveError(`collective: rank ${p.rank} ${p.closed} while connecting`));
    const op = this.active;
    if (op !== null && op.needs.has(p.rank)) this.fail(new CollectiveError(`rank ${p.rank} ${p.closed} during ${op.what}`));
  }

  /** Fails the running operation (and every later one). */
  fail(e: CollectiveError): void {
    this.failure ??= e;
    const op = this.active;
    this.active = null;
    op?.reject(e);
    // The sockets stay open: a peer learns of this failure from the abort the collective
    // publishes (or this process's exit), while the connection of a rank that really died
    // closes by itself — so every survivor names the rank that died, not a bystander.
  }

  /** Sends a frame of the running operation, counted until the kernel has taken it. */
  private send(r: number, what: string, h: FrameHeader, payload: Uint8Array): void {
    const p = this.peer(r, what);
    const op = this.active;
    if (op === null || op.seq !== h.seq) throw new CollectiveError(`${what}: send outside its operation`);
    op.unflushed++;
    p.send(h, payload, () => {
      if (--op.unflushed === 0 && op.finishing && this.active === op) {
        this.active = null;
        op.resolve();
      }
    });
  }

  private peer(r: number, what: string): Peer {
    const p = this.peers[r];
    if (p === undefined) throw new CollectiveError(`${what}: rank ${r} is not connected`);
    if (p.closed !== undefined) throw new CollectiveError(`rank ${r} ${p.closed} before ${what}`);
    return p;
  }

  /** A reusable scratch buffer (per purpose) of at least `bytes`. */
  private buffer(key: string, bytes: number): ArrayBuffer {
    let b = this.scratch.get(key);
    if (b === undefined || b.byteLength < bytes) {
      b = new ArrayBuffer(Math.max(bytes, 8));
      this.scratch.set(key, b);
    }
    return b;
  }

  /**
   * Runs one operation: `start` sends (possibly asynchronously, e.g. behind a watermark) and
   * `sink` receives; the returned promise settles when the operation calls `finish` or fails.
   */
  private run(seq: number, what: string, needs: Iterable<number>, build: (finish: () => void, fail: (e: unknown) => void) => { sink: Sink; start: () => void | Promise<void> }): Promise<void> {
    if (this.failure) return Promise.reject(new CollectiveError(`${what}: the data plane failed earlier: ${this.failure.message}`));
    if (this.active !== null) return Promise.reject(new CollectiveError(`${what}: called while ${this.active.what} is in progress`));
    return new Promise<void>((resolve, reject) => {
      const fail = (e: unknown) => this.fail(e instanceof CollectiveError ? e : new CollectiveError(`${what}: ${(e as Error).message}`, { cause: e }));
      // Done when this rank has all it needs and the kernel has every byte it sent: the payloads
      // are views of the caller's buffer, which it may overwrite as soon as the call returns.
      const finish = () => {
        const op = this.active;
        if (op?.seq !== seq) return;
        op.finishing = true;
        if (op.unflushed > 0) return;
        this.active = null;
        resolve();
      };
      const { sink, start } = build(finish, fail);
      const op: ActiveOp = { seq, what, sink, needs: new Set(needs), resolve, reject, unflushed: 0, finishing: false };
      for (const r of op.needs) {
        const p = this.peers[r];
        if (p === undefined || p.closed !== undefined) return reject(new CollectiveError(`rank ${r} ${p?.closed ?? 'is not connected'} before ${what}`));
      }
      this.active = op;
      this.lastProgress = Date.now();
      try {
        const s = start();
        if (s instanceof Promise) s.catch(fail);
      } catch (e) {
        return fail(e);
      }
      for (const p of this.peers) p?.resume();
    });
  }

  // -------------------------------------------------------------------------------------------
  // Operations

  /**
   * Reduce-scatter of the mean: rank s ends with the rank-order float32 mean of segment
   * [bounds[s], bounds[s+1]) in place; with `gather`, every rank then also receives every other
   * segment's mean (an all-reduce). Elements outside this rank's segment are left as they were
   * (reduce-scatter) or overwritten with the other owners' results (all-reduce).
   */
  reduce(seq: number, what: string, tag: string, data: Float32Array, bounds: readonly number[], o: MeshCallOptions & { gather: boolean }): Promise<void> {
    const n = this.worldSize;
    const r = this.rank;
    const bf16 = o.dtype === 'bf16';
    const eb = bf16 ? 2 : 4;
    const dtype = bf16 ? 1 : 0;
    const th = tagHash(tag);
    const total = data.length;
    const [myLo, myHi] = [bounds[r], bounds[r + 1]];
    const myLen = myHi - myLo;
    const bucket = Math.max(1, o.bucketElems);
    const chunksOf = (s: number) => Math.ceil((bounds[s + 1] - bounds[s]) / bucket);
    const myChunks = chunksOf(r);
    const others = [...Array(n - 1).keys()].map((i) => (r + 1 + i) % n);
    // Staging: per sender, its contribution to my segment (in wire format).
    const stage = new Map<number, Uint8Array>();
    others.forEach((f, i) => stage.set(f, new Uint8Array(this.buffer(`in${i}`, myLen * eb), 0, myLen * eb)));
    const sendStage = bf16 ? new Uint16Array(this.buffer('out16', total * 2), 0, total) : null;
    const resultStage = bf16 && o.gather ? new Uint16Array(this.buffer('res16', total * 2), 0, total) : null;
    const arrived = new Int32Array(myChunks);
    let pendingReduce = myChunks;
    let sendsDone = false;
    let pendingOut = o.gather ? others.reduce((a, s) => a + chunksOf(s), 0) : 0;
    let reducing = Promise.resolve();
    const chunkRange = (s: number, c: number): [number, number] => {
      const lo = bounds[s] + c * bucket;
      return [lo, Math.min(lo + bucket, bounds[s + 1])];
    };
    const parts: Float32Array[] = new Array<Float32Array>(n);
    const wideLen = Math.min(bucket, Math.max(myLen, 1));
    const wide = others.map((_, i) => new Float32Array(this.buffer(`wide${i}`, wideLen * 4), 0, wideLen));

    return this.run(seq, what, others, (finish, fail) => {
      const maybeFinish = () => {
        if (sendsDone && pendingReduce === 0 && pendingOut === 0) finish();
      };
      const reduceChunk = async (c: number) => {
        const [lo, hi] = chunkRange(r, c);
        if (o.ready) await o.ready.reached(hi);
        const len = hi - lo;
        const mine = data.subarray(lo, hi);
        if (bf16) roundToBf16InPlace(mine);
        for (let k = 0; k < n; k++) {
          if (k === r) {
            parts[k] = mine;
            continue;
          }
          const i = others.indexOf(k);
          const st = stage.get(k)!;
          const off = (lo - myLo) * eb;
          if (bf16) parts[k] = fromBf16(new Uint16Array(st.buffer, st.byteOffset + off, len), wide[i].subarray(0, len));
          else parts[k] = new Float32Array(st.buffer, st.byteOffset + off, len);
        }
        meanInRankOrder(parts, mine); // in place: one pass, no copy
        if (o.gather) {
          let payload: Uint8Array;
          if (bf16) {
            const w = toBf16(mine, resultStage!.subarray(lo, hi));
            fromBf16(w, mine); // the owner keeps exactly what the others receive
            payload = bytesOf(w);
          } else payload = bytesOf(data, lo * 4, len * 4);
          for (const t of others) this.send(t, what, { seq, kind: KIND_RESULT, dtype, lo, count: len, total, tag: th }, payload);
        }
        pendingReduce--;
        maybeFinish();
      };
      const sink: Sink = {
        target: (from, h) => {
          if (h.tag !== th || h.total !== total || h.dtype !== dtype) {
            throw new CollectiveError(`${what}: rank ${from} called it with ${h.total} elements (${h.dtype === 1 ? 'bf16' : 'f32'}), rank ${r} with ${total} (${bf16 ? 'bf16' : 'f32'}) — or a different tag`);
          }
          if (h.kind === KIND_CONTRIB) {
            if (h.lo < myLo || h.lo + h.count > myHi || (h.lo - myLo) % bucket !== 0) throw new CollectiveError(`${what}: rank ${from} sent elements [${h.lo}, ${h.lo + h.count}) outside segment ${r} [${myLo}, ${myHi}) (different bounds?)`);
            const st = stage.get(from)!;
            return st.subarray((h.lo - myLo) * eb, (h.lo - myLo + h.count) * eb);
          }
          if (h.kind === KIND_RESULT && o.gather) {
            if (h.lo < bounds[from] || h.lo + h.count > bounds[from + 1]) throw new CollectiveError(`${what}: rank ${from} sent a result outside its segment`);
            return bf16 ? bytesOf(resultStage!, h.lo * 2, h.count * 2) : bytesOf(data, h.lo * 4, h.count * 4);
          }
          throw new CollectiveError(`${what}: rank ${from} sent a frame of kind ${h.kind}`);
        },
        done: (_from, h) => {
          if (h.kind === KIND_CONTRIB) {
            const c = (h.lo - myLo) / bucket;
            if (++arrived[c] === n - 1) reducing = reducing.then(() => reduceChunk(c)).catch(fail);
          } else {
            pendingOut--;
            if (bf16) fromBf16(resultStage!.subarray(h.lo, h.lo + h.count), data.subarray(h.lo, h.lo + h.count));
            maybeFinish();
          }
        },
      };
      const sendContribution = (s: number, c: number) => {
        const [lo, hi] = chunkRange(s, c);
        let payload: Uint8Array;
        if (bf16) payload = bytesOf(toBf16(data.subarray(lo, hi), sendStage!.subarray(lo, hi)));
        else payload = bytesOf(data, lo * 4, (hi - lo) * 4);
        this.send(s, what, { seq, kind: KIND_CONTRIB, dtype, lo, count: hi - lo, total, tag: th }, payload);
      };
      const start = async () => {
        if (o.ready) {
          // Buckets in buffer order, each once it is final.
          for (let s = 0; s < n; s++) {
            if (s === r) continue;
            for (let c = 0; c < chunksOf(s); c++) {
              await o.ready.reached(chunkRange(s, c)[1]);
              if (this.active?.seq !== seq) return;
              sendContribution(s, c);
            }
          }
        } else {
          // Interleaved, starting with the next rank's segment, so that every owner starts at once.
          const most = Math.max(0, ...others.map(chunksOf));
          for (let c = 0; c < most; c++) for (const s of others) if (c < chunksOf(s)) sendContribution(s, c);
        }
        sendsDone = true;
        maybeFinish();
      };
      return { sink, start };
    });
  }

  /** All-gather: rank s's segment [bounds[s], bounds[s+1]) of `data` is copied to every rank. */
  allGather(seq: number, what: string, tag: string, data: Float32Array, bounds: readonly number[], bucketElems: number): Promise<void> {
    const n = this.worldSize;
    const r = this.rank;
    const th = tagHash(tag);
    const total = data.length;
    const bucket = Math.max(1, bucketElems);
    const others = [...Array(n - 1).keys()].map((i) => (r + 1 + i) % n);
    let pending = others.reduce((a, s) => a + Math.ceil((bounds[s + 1] - bounds[s]) / bucket), 0);
    return this.run(seq, what, others, (finish) => ({
      sink: {
        target: (from, h) => {
          if (h.kind !== KIND_RESULT || h.tag !== th || h.total !== total) throw new CollectiveError(`${what}: rank ${from} called it with ${h.total} elements, rank ${r} with ${total} (or another tag)`);
          if (h.lo < bounds[from] || h.lo + h.count > bounds[from + 1]) throw new CollectiveError(`${what}: rank ${from} sent elements outside its segment (different bounds?)`);
          return bytesOf(data, h.lo * 4, h.count * 4);
        },
        done: () => {
          if (--pending === 0) finish();
        },
      },
      start: () => {
        for (let lo = bounds[r]; lo < bounds[r + 1]; lo += bucket) {
          const hi = Math.min(lo + bucket, bounds[r + 1]);
          for (const t of others) this.send(t, what, { seq, kind: KIND_RESULT, dtype: 0, lo, count: hi - lo, total, tag: th }, bytesOf(data, lo * 4, (hi - lo) * 4));
        }
        if (pending === 0) finish();
      },
    }));
  }

  /** Gather of byte blobs to `root`: the root gets every rank's bytes (by rank), the others null. */
  async gather(seq: number, what: string, tag: string, bytes: Uint8Array, root: number, bucketBytes: number): Promise<Uint8Array[] | null> {
    const n = this.worldSize;
    const th = tagHash(tag);
    const out: Uint8Array[] = new Array<Uint8Array>(n);
    const got = new Float64Array(n);
    if (this.rank !== root) {
      await this.run(seq, what, [root], (finish) => ({
        sink: { target: () => { throw new CollectiveError(`${what}: rank ${root} sent data to a non-root rank`); }, done: () => undefined },
        start: () => {
          const step = Math.max(1, bucketBytes);
          if (bytes.byteLength === 0) this.send(root, what, { seq, kind: KIND_BYTES, dtype: 0, lo: 0, count: 0, total: 0, tag: th }, bytes);
          for (let lo = 0; lo < bytes.byteLength; lo += step) {
            const hi = Math.min(lo + step, bytes.byteLength);
            this.send(root, what, { seq, kind: KIND_BYTES, dtype: 0, lo, count: hi - lo, total: bytes.byteLength, tag: th }, bytesOf(bytes, lo, hi - lo));
          }
          // Done once the kernel has the bytes; the root's wait covers their arrival.
          finish();
        },
      }));
      return null;
    }
    out[root] = bytes;
    const others = [...Array(n).keys()].filter((s) => s !== root);
    let pending = others.length;
    await this.run(seq, what, others, (finish) => ({
      sink: {
        target: (from, h) => {
          if (h.kind !== KIND_BYTES || h.tag !== th) throw new CollectiveError(`${what}: rank ${from} sent a frame of another call`);
          out[from] ??= new Uint8Array(h.total);
          if (out[from].byteLength !== h.total || h.lo + h.count > h.total) throw new CollectiveError(`${what}: rank ${from} sent an inconsistent blob`);
          return out[from].subarray(h.lo, h.lo + h.count);
        },
        done: (from, h) => {
          got[from] += h.count;
          if (got[from] === h.total && --pending === 0) finish();
        },
      },
      start: () => {
        if (pending === 0) finish();
      },
    }));
    return out;
  }

  /** Closes every connection and the listening socket. Idempotent. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.accepting?.reject(new CollectiveError('collective: closed while connecting'));
    // After a failure (a dead or stopped peer) nothing more is owed to anyone: drop the sockets
    // at once; a stopped peer would never drain a graceful end(). Otherwise end our sends
    // gracefully, with a bounded grace before they are dropped.
    const graceMs = this.failure ? 0 : CLOSE_GRACE_MS;
    for (const p of this.peers) {
      p?.rx?.destroy();
      const tx = p?.tx;
      if (!tx) continue;
      if (graceMs === 0) tx.destroy();
      else {
        tx.end();
        setTimeout(() => tx.destroy(), graceMs).unref();
      }
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
