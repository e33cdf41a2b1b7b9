import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ServiceError } from '../errors.js';
import { createRedis } from '../redis.js';
import { ensureRedis, findRedisServer, startRedisServer, type RedisServerHandle } from './redis-server.js';

/** True while `pid` runs; a zombie (exited, not yet reaped) counts as gone. */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    if (existsSync('/proc/self/stat')) return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function ping(url: string): Promise<string> {
  const client = createRedis(url, { lazyConnect: true, maxRetriesPerRequest: 0, ioredis: { retryStrategy: () => null } });
  client.on('error', () => undefined); // surfaced by connect() / ping()
  try {
    await client.connect();
    return await client.ping();
  } finally {
    client.disconnect();
  }
}

const started: RedisServerHandle[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()));
});

describe('startRedisServer', () => {
  it('starts a loopback server without persistence, and stop() ends it and its watchdog', async () => {
    const server = await startRedisServer({ name: 'spec' });
    started.push(server);
    expect(server.owned).toBe(true);
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
    expect(isRunning(server.pid)).toBe(true);
    expect(isRunning(server.watchdogPid)).toBe(true);
    expect(readFileSync(`/proc/${server.pid}/cmdline`, 'utf8')).toContain('redis-server');

    const client = createRedis(server.url);
    try {
      expect(await client.ping()).toBe('PONG');
      expect(await client.config('GET', 'save')).toEqual(['save', '']);
      expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
      expect(await client.config('GET', 'bind')).toEqual(['bind', '127.0.0.1']);
    } finally {
      client.disconnect();
    }

    await server.stop();
    expect(isRunning(server.pid)).toBe(false);
    expect(isRunning(server.watchdogPid)).toBe(false);
    expect(existsSync(server.dir)).toBe(false);
    expect(await server.exited).toEqual({ code: 0, signal: null }); // SIGTERM → clean shutdown
    await server.stop(); // idempotent
    await expect(ping(server.url)).rejects.toThrow();
  });

  it('runs two servers side by side on different ports', async () => {
    const [a, b] = await Promise.all([startRedisServer({ name: 'a' }), startRedisServer({ name: 'b' })]);
    started.push(a, b);
    expect(a.port).not.toBe(b.port);
    expect(await ping(a.url)).toBe('PONG');
    expect(await ping(b.url)).toBe('PONG');
  });

  it('keeps a given dir and honours a given free port', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'smolrate-spec-dir-'));
    try {
      const probe = await startRedisServer();
      const port = probe.port; // known free once stopped
      await probe.stop();
      const server = await startRedisServer({ dir, port });
      started.push(server);
      expect(server.port).toBe(port);
      expect(server.dir).toBe(dir);
      await server.stop();
      expect(existsSync(join(dir, 'redis.log'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a port that is taken, up front, with a ServiceError', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const err = await startRedisServer({ port }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ServiceError);
      expect((err as Error).message).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}: the port is already in use`));
    } finally {
      blocker.close();
    }
  });

  function fakeBinary(body: string): string {
    const dir = mkdtempSync(join(tmpdir(), 'smolrate-spec-bin-'));
    writeFileSync(join(dir, 'redis-server'), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return join(dir, 'redis-server');
  }

  it("reports the server's own output when it exits during start-up", async () => {
    const binary = fakeBinary('echo "*** FATAL CONFIG FILE ERROR (fake) ***" >&2; exit 1');
    try {
      const err = await startRedisServer({ binary, port: 6399 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ServiceError);
      expect((err as Error).message).toMatch(/redis-server on 127\.0\.0\.1:6399 failed to start: it exited with 1/);
      expect((err as Error).message).toContain('*** FATAL CONFIG FILE ERROR (fake) ***');
    } finally {
      rmSync(join(binary, '..'), { recursive: true, force: true });
    }
  });

  it('gives up after startTimeoutMs when PING never answers, and kills the process', async () => {
    const binary = fakeBinary('echo "$$" > "$(dirname "$0")/pid"; echo "stuck (fake)"; exec sleep 60');
    try {
      const err = await startRedisServer({ binary, startTimeoutMs: 400 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ServiceError);
      expect((err as Error).message).toMatch(/did not answer PING within 400 ms[\s\S]*stuck \(fake\)/);
      const pid = Number(readFileSync(join(binary, '..', 'pid'), 'utf8'));
      expect(isRunning(pid)).toBe(false);
    } finally {
      rmSync(join(binary, '..'), { recursive: true, force: true });
    }
  });
});

describe('findRedisServer', () => {
  it('finds the binary', () => {
    expect(findRedisServer()).toMatch(/redis-server$/);
  });

  it('when missing: names the install commands and REDIS_URL (it never installs anything)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'smolrate-spec-empty-'));
    try {
      expect(() => findRedisServer([dir])).toThrow(ServiceError);
      expect(() => findRedisServer([dir])).toThrow(/redis-server not found.*sudo apt-get install -y redis-server.*REDIS_URL/s);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ensureRedis', () => {
  const saved = process.env.REDIS_URL;
  afterEach(() => {
    if (saved === undefined) delete process.env.REDIS_URL;
    else process.env.REDIS_URL = saved;
  });

  it('uses REDIS_URL when set: not owned, stop() leaves the server running', async () => {
    const server = await startRedisServer({ name: 'ensure', password: 'pw:1@x' });
    started.push(server);
    process.env.REDIS_URL = server.url;
    const r = await ensureRedis({ name: 'spec' });
    expect(r).toMatchObject({ url: server.url, owned: false });
    await r.stop();
    expect(isRunning(server.pid)).toBe(true);
    expect(await ping(server.url)).toBe('PONG');
  });

  it('fails clearly, password masked, when REDIS_URL does not answer', async () => {
    const probe = await startRedisServer();
    const deadPort = probe.port;
    await probe.stop();
    process.env.REDIS_URL = `redis://:hunter2@127.0.0.1:${deadPort}`;
    const err = await ensureRedis().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as Error).message).toContain(`REDIS_URL is set but unusable: Redis at redis://:***@127.0.0.1:${deadPort}`);
    expect((err as Error).message).toMatch(/did not answer PING: .*ECONNREFUSED/);
    expect((err as Error).message).not.toContain('hunter2');
  });

  it('names the reason when REDIS_URL has a wrong password', async () => {
    const server = await startRedisServer({ name: 'ensure-auth', password: 'right' });
    started.push(server);
    process.env.REDIS_URL = `redis://:wrong@127.0.0.1:${server.port}`;
    const err = await ensureRedis().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as Error).message).toMatch(/redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ did not answer PING: WRONGPASS/);
  });

  it('starts (and stop() stops) a private server when REDIS_URL is unset', async () => {
    delete process.env.REDIS_URL;
    const r = await ensureRedis({ name: 'ensure-own' });
    try {
      expect(r.owned).toBe(true);
      expect(await ping(r.url)).toBe('PONG');
    } finally {
      await r.stop();
    }
    await expect(ping(r.url)).rejects.toThrow();
  });
});
