/**
 * A private redis-server: the fallback of the CLIs that need a Redis when no URL is given (a
 * one-host `launch`, `build-shards --workers N`, the benchmarks; docs/reference/design.md
 * "Training topology": "with no Redis URL it starts a private redis-server on a free loopback
 * port"), and through infra/redis-install.ts the demo's, the tests' and CI's. Its own entry point,
 * `@smolrate/core/redis-server`, not the main API: everything else connects to a Redis URL.
 *
 * No orphans, however the parent ends:
 *  - `stop()` shuts the server down (SIGTERM, then SIGKILL after a grace period) and removes
 *    its temp dir;
 *  - on `exit`, and on SIGINT/SIGTERM when nothing else in the process handles them, every
 *    server still running is killed synchronously (the signal is then re-raised, so the process
 *    still dies of it);
 *  - a watchdog survives even SIGKILL of the parent: a small detached `sh` whose stdin is a pipe
 *    from the parent. The kernel closes that pipe when the parent dies, however it dies; the
 *    watchdog then reads EOF, kills redis-server and removes its temp dir. It costs nothing
 *    (no polling) while the parent lives.
 *
 * The server runs without persistence (`--save '' --appendonly no`) in a temp dir, bound to
 * loopback, in its own process group (a terminal's Ctrl-C reaches the parent, which decides).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { ServiceError } from '../errors.js';
import { createRedis, formatRedisUrl, redactUrl } from '../redis.js';

export interface StartRedisServerOptions {
  /** TCP port. Default: a free port picked on `host` (checked up front either way). */
  port?: number;
  /** Address to bind. Default 127.0.0.1. */
  host?: string;
  /** Label for the temp dir and messages (e.g. "vitest", "demo"). Default "redis". */
  name?: string;
  /** Working dir (config, log). Default: a fresh temp dir, removed by `stop()`. A given dir is kept. */
  dir?: string;
  /** `requirepass`; the returned URL carries it (URL-encoded). Default: no password. */
  password?: string;
  /** The redis-server executable. Default: findRedisServer(). */
  binary?: string;
  /** How long to wait for PING to answer. Default 10 000 ms. */
  startTimeoutMs?: number;
}

export interface RedisServerHandle {
  /** `redis://[:password@]host:port` */
  url: string;
  port: number;
  /** The redis-server process id. */
  pid: number;
  owned: true;
  /** Shuts the server down and waits for it to exit; removes a temp dir it created. Idempotent. */
  stop(): Promise<void>;
  /** Working dir of the server (config file, `redis.log`). */
  dir: string;
  /** The watchdog process id (it exits with the server). */
  watchdogPid: number;
  /** Settles when the server process exits, for whatever reason. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface EnsuredRedis {
  url: string;
  /** True when this call started the server (and `stop()` stops it). */
  owned: boolean;
  stop(): Promise<void>;
}

const STOP_GRACE_MS = 5_000;
const BINARY_DIRS = ['/usr/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/sbin', '/opt/homebrew/bin'];

// ---------------------------------------------------------------------------------------------
// Finding redis-server

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function locate(name: string, dirs: readonly string[]): string | undefined {
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (dir !== '' && isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function defaultSearchDirs(): string[] {
  return [...(process.env.PATH ?? '').split(delimiter), ...BINARY_DIRS];
}

/**
 * The path of the redis-server binary: on PATH, or in the usual system dirs. When it is missing,
 * a ServiceError saying how to install it or to set REDIS_URL: the product never installs system
 * packages (the demo, the tests and infra/services.ts do, as root: infra/redis-install.ts).
 */
export function findRedisServer(searchDirs: readonly string[] = defaultSearchDirs()): string {
  const found = locate('redis-server', searchDirs);
  if (found) return found;
  throw new ServiceError(
    `redis-server not found (searched PATH, ${BINARY_DIRS.slice(0, 3).join(', ')}). Install Redis 6.2+ with your package manager ` +
      '(Debian/Ubuntu: `sudo apt-get install -y redis-server`, macOS: `brew install redis`), ' +
      'or set REDIS_URL=redis://host:port to use a Redis server that is already running.',
  );
}

// ---------------------------------------------------------------------------------------------
// Ports

/** A port that is free on `host` right now (the OS picks it). */
async function pickFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

async function assertPortFree(host: string, port: number): Promise<void> {
  await new Promise<void>((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', (e: NodeJS.ErrnoException) =>
      fail(
        new ServiceError(
          e.code === 'EADDRINUSE'
            ? `cannot start redis-server on ${host}:${port}: the port is already in use`
            : `cannot start redis-server on ${host}:${port}: ${e.message}`,
          { cause: e },
        ),
      ),
    );
    srv.listen(port, host, () => srv.close(() => ok()));
  });
}

// ---------------------------------------------------------------------------------------------
// PING over a raw socket (no client library, no reconnect logic): true on +PONG.

function encodeCommand(...args: string[]): string {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
}

function pingOnce(host: string, port: number, password: string | undefined, timeoutMs: number): Promise<boolean> {
  return new Promise((done) => {
    const sock = createConnection({ host, port });
    let buf = '';
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      done(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.setEncoding('utf8');
    sock.once('error', () => finish(false));
    sock.once('close', () => finish(false));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.includes('+PONG\r\n')) finish(true);
      // -LOADING, -NOAUTH, -WRONGPASS...: not ready (or not ours); the caller retries.
      else if (/^-[^\r]*\r\n/m.test(buf)) finish(false);
    });
    sock.once('connect', () => {
      sock.write((password !== undefined ? encodeCommand('AUTH', password) : '') + encodeCommand('PING'));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Process bookkeeping: everything still running is killed on exit / unhandled SIGINT, SIGTERM.

interface Running {
  server: ChildProcess;
  watchdog: ChildProcess;
  dir: string;
  ownsDir: boolean;
}

const running = new Set<Running>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let hooksInstalled = false;

function killSync(r: Running): void {
  for (const p of [r.watchdog, r.server]) {
    try {
      if (p.pid !== undefined && p.exitCode === null && p.signalCode === null) process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (r.ownsDir) rmSync(r.dir, { recursive: true, force: true, maxRetries: 3 });
}

function onExit(): void {
  for (const r of running) killSync(r);
  running.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  // When the application handles this signal itself, it decides when to shut down (it may still
  // need Redis, e.g. to write a final state); `exit` and the watchdog still cover us.
  if (process.listenerCount(signal) > 1) return;
  onExit();
  uninstallHooks();
  // Die of the signal as if we had not listened (exit code 128+n for the parent shell).
  process.kill(process.pid, signal);
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', onExit);
  for (const s of SIGNALS) process.on(s, onSignal);
}

function uninstallHooks(): void {
  if (!hooksInstalled) return;
  hooksInstalled = false;
  process.off('exit', onExit);
  for (const s of SIGNALS) process.off(s, onSignal);
}

// The watchdog: blocks on stdin (a pipe from us) until EOF, i.e. until we close it or die; then
// SIGTERMs redis-server, SIGKILLs it if it outlives a 5 s grace period, and removes the temp dir
// we created ($2, empty for a caller's dir). Liveness reads /proc when present so that a zombie
// (under an init that does not reap) counts as gone.
const WATCHDOG_SCRIPT = `
R=$1
D=$2
alive() {
  if [ -r "/proc/$R/stat" ]; then
    read -r st < "/proc/$R/stat" 2>/dev/null || return 1
    case "\${st##*) }" in Z*|X*) return 1;; esac
    return 0
  fi
  kill -0 "$R" 2>/dev/null
}
while read -r _; do :; done
if alive; then
  kill -TERM "$R" 2>/dev/null
  i=0
  while alive && [ $i -lt 50 ]; do sleep 0.1 2>/dev/null || sleep 1; i=$((i+1)); done
  alive && kill -KILL "$R" 2>/dev/null
fi
case "$D" in */smolrate-*) rm -rf -- "$D";; esac
exit 0
`;

function spawnWatchdog(serverPid: number, ownedDir: string): ChildProcess {
  const shell = locate('sh', ['/bin', '/usr/bin']) ?? 'sh';
  const wd = spawn(shell, ['-c', WATCHDOG_SCRIPT, 'smolrate-redis-watchdog', String(serverPid), ownedDir], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  wd.on('error', () => {
    // Reported through the missing pid below; nothing else to do.
  });
  wd.stdin?.on('error', () => {
    // EPIPE if the watchdog is gone; it has nothing left to guard then.
  });
  // Neither the watchdog nor its pipe keeps the event loop alive.
  wd.unref();
  (wd.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  return wd;
}

// ---------------------------------------------------------------------------------------------
// Starting

/** A value for redis.conf: double-quoted, every byte outside a safe set as \xHH. */
function confQuote(value: string): string {
  let out = '"';
  for (const byte of Buffer.from(value, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9/._+=,:-]/.test(c) ? c : `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return out + '"';
}

function tail(path: string, maxChars = 2_000): string {
  try {
    const text = readFileSync(path, 'utf8').trim();
    return text.length > maxChars ? `...${text.slice(-maxChars)}` : text;
  } catch {
    return '';
  }
}

class PortTakenError extends ServiceError {}

function waitExit(p: ChildProcess, ms: number): Promise<boolean> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(true);
  return new Promise((done) => {
    const timer = setTimeout(() => {
      p.off('exit', onExitEvt);
      done(false);
    }, ms);
    const onExitEvt = (): void => {
      clearTimeout(timer);
      done(true);
    };
    p.once('exit', onExitEvt);
  });
}

async function launch(
  binary: string,
  host: string,
  port: number,
  opts: StartRedisServerOptions,
): Promise<RedisServerHandle> {
  const name = (opts.name ?? 'redis').replace(/[^A-Za-z0-9_.-]/g, '_');
  const ownsDir = opts.dir === undefined;
  const dir = ownsDir ? mkdtempSync(join(tmpdir(), `smolrate-${name}-`)) : resolve(opts.dir!);
  if (!ownsDir) mkdirSync(dir, { recursive: true });

  // The password goes in a 0600 file, not on the command line where `ps` shows it.
  const confPath = join(dir, 'redis.conf');
  const conf = [`dir ${confQuote(dir)}`, 'logfile ""', 'daemonize no'];
  if (opts.password !== undefined) conf.push(`requirepass ${confQuote(opts.password)}`);
  writeFileSync(confPath, conf.join('\n') + '\n', { mode: 0o600 });

  // stdout/stderr to a file we can quote on failure; no pipe ties redis-server to our lifetime.
  const logPath = join(dir, 'redis.log');
  const logFd = openSync(logPath, 'a');
  let server: ChildProcess;
  try {
    server = spawn(
      binary,
      [confPath, '--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no'],
      { cwd: dir, detached: true, stdio: ['ignore', logFd, logFd] },
    );
  } finally {
    closeSync(logFd);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => {
    server.once('exit', (code, signal) => done({ code, signal }));
  });
  let spawnError: Error | undefined;
  server.once('error', (e) => {
    spawnError = e;
  });
  server.unref();

  const cleanupDir = (): void => {
    if (ownsDir) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  };
  if (server.pid === undefined) {
    await new Promise((r) => setImmediate(r));
    cleanupDir();
    throw new ServiceError(`could not start ${binary}: ${spawnError?.message ?? 'spawn failed'}`, { cause: spawnError });
  }

  const watchdog = spawnWatchdog(server.pid, ownsDir ? dir : '');
  const entry: Running = { server, watchdog, dir, ownsDir };
  running.add(entry);
  installHooks();

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // Watchdog first: it must not act on a pid that the OS may hand out again.
      if (watchdog.exitCode === null && watchdog.signalCode === null) {
        watchdog.kill('SIGKILL');
      }
      if (server.exitCode === null && server.signalCode === null) {
        server.kill('SIGTERM');
        if (!(await waitExit(server, STOP_GRACE_MS))) {
          server.kill('SIGKILL');
          await waitExit(server, STOP_GRACE_MS);
        }
      }
      await waitExit(watchdog, STOP_GRACE_MS);
      running.delete(entry);
      if (running.size === 0) uninstallHooks();
      cleanupDir();
    })();
    return stopping;
  };

  // Wait for PING; fail fast if the process exits.
  const timeoutMs = opts.startTimeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let ready = false;
  while (!ready) {
    if (server.exitCode !== null || server.signalCode !== null || spawnError) {
      const log = tail(logPath);
      await stop();
      const why = spawnError ? spawnError.message : `it exited with ${server.exitCode ?? server.signalCode}`;
      const Err = /Address already in use/i.test(log) ? PortTakenError : ServiceError;
      throw new Err(`redis-server on ${host}:${port} failed to start: ${why}.${log ? `\nIts output:\n${log}` : ''}`);
    }
    if (Date.now() > deadline) {
      const log = tail(logPath);
      await stop();
      throw new ServiceError(
        `redis-server on ${host}:${port} did not answer PING within ${timeoutMs} ms.${log ? `\nIts output:\n${log}` : ''}`,
      );
    }
    ready = await pingOnce(host, port, opts.password, 500);
    if (!ready) await new Promise((r) => setTimeout(r, 50));
  }

  return {
    url: formatRedisUrl({ host, port, password: opts.password }),
    port,
    pid: server.pid,
    owned: true,
    stop,
    dir,
    watchdogPid: watchdog.pid ?? -1,
    exited,
  };
}

/** Starts a private redis-server (see the file comment for how it is cleaned up). */
export async function startRedisServer(opts: StartRedisServerOptions = {}): Promise<RedisServerHandle> {
  const host = opts.host ?? '127.0.0.1';
  const binary = opts.binary ?? findRedisServer();
  // A picked port can be taken between the check and redis-server's bind: pick again then.
  const attempts = opts.port === undefined ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await pickFreePort(host));
    await assertPortFree(host, port);
    try {
      return await launch(binary, host, port, opts);
    } catch (e) {
      if (!(e instanceof PortTakenError) || attempt >= attempts) throw e;
    }
  }
}

/** PINGs `url` once with a bounded timeout; throws ServiceError naming the redacted URL. */
async function pingRedisUrl(url: string, timeoutMs = 5_000): Promise<void> {
  const client = createRedis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    ioredis: { retryStrategy: () => null, connectTimeout: timeoutMs, enableOfflineQueue: false },
  });
  // ioredis rejects connect() with a bare "Connection is closed." and emits the reason
  // (WRONGPASS, NOAUTH, ECONNREFUSED...) as an 'error' event: keep it for the message.
  let reason: Error | undefined;
  client.on('error', (e: Error) => {
    reason ??= e;
  });
  try {
    await client.connect();
    const reply = await client.ping();
    if (reply !== 'PONG') throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
  } catch (e) {
    const cause = reason ?? e;
    throw new ServiceError(`Redis at ${redactUrl(url)} did not answer PING: ${(cause as Error).message}`, { cause });
  } finally {
    client.disconnect();
  }
}

/**
 * A Redis for this run: `REDIS_URL` when set (checked with a PING; `stop()` does nothing),
 * else a private redis-server that `stop()` shuts down.
 */
export async function ensureRedis(opts: Pick<StartRedisServerOptions, 'name' | 'binary'> = {}): Promise<EnsuredRedis> {
  const url = process.env.REDIS_URL;
  if (url !== undefined && url !== '') {
    try {
      await pingRedisUrl(url);
    } catch (e) {
      throw new ServiceError(`REDIS_URL is set but unusable: ${(e as Error).message}`, { cause: e });
    }
    return { url, owned: false, stop: () => Promise.resolve() }; // not ours to stop
  }
  const server = await startRedisServer(opts);
  return { url: server.url, owned: true, stop: server.stop };
}
