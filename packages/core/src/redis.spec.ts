import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';
import { createRedis, formatRedisUrl, parseRedisUrl, redactUrl, redisOptionsFromUrl } from './redis.js';
import { startRedisServer, type RedisServerHandle } from './services/redis-server.js';

describe('parseRedisUrl', () => {
  it('reads host, port and db with defaults', () => {
    expect(parseRedisUrl('redis://cache.internal:6380/3')).toEqual({
      tls: false,
      host: 'cache.internal',
      port: 6380,
      username: undefined,
      password: undefined,
      db: 3,
    });
    const d = parseRedisUrl('redis://cache.internal');
    expect([d.port, d.db, d.tls]).toEqual([6379, 0, false]);
    expect(parseRedisUrl('redis://h/').db).toBe(0);
    expect(parseRedisUrl('redis:///5').host).toBe('127.0.0.1');
  });

  it('reads the password alone (":pw@" and, like redis-cli, "pw@") and user:password', () => {
    expect(parseRedisUrl('redis://:s3cret@h:1').password).toBe('s3cret');
    expect(parseRedisUrl('redis://:s3cret@h:1').username).toBeUndefined();
    expect(parseRedisUrl('redis://s3cret@h:1')).toMatchObject({ username: undefined, password: 's3cret' });
    expect(parseRedisUrl('redis://alice:s3cret@h:1')).toMatchObject({ username: 'alice', password: 's3cret' });
    expect(parseRedisUrl('redis://alice:@h:1')).toMatchObject({ username: 'alice', password: undefined });
  });

  it('decodes URL-encoded special characters in the password', () => {
    const password = 'p@ss w:rd/?#%&="\\é';
    const url = `redis://:${encodeURIComponent(password)}@127.0.0.1:6379/0`;
    expect(parseRedisUrl(url).password).toBe(password);
    expect(parseRedisUrl(`redis://bob:${encodeURIComponent(password)}@h`).password).toBe(password);
    // Tolerated without encoding: "@" (the last one ends the userinfo), ":" after the first,
    // and "%" not followed by hex digits.
    expect(parseRedisUrl('redis://:a@b@h:7').password).toBe('a@b');
    expect(parseRedisUrl('redis://u:a:b@h').password).toBe('a:b');
    expect(parseRedisUrl('redis://:100%sure@h').password).toBe('100%sure');
  });

  it('turns rediss:// into TLS with SNI for host names only', () => {
    const u = parseRedisUrl('rediss://default:tok@redis.example.com:6380');
    expect(u).toMatchObject({ tls: true, host: 'redis.example.com', port: 6380, username: 'default', password: 'tok' });
    expect(redisOptionsFromUrl(u).tls).toEqual({ servername: 'redis.example.com' });
    expect(redisOptionsFromUrl(parseRedisUrl('rediss://10.0.0.5')).tls).toEqual({});
    const insecure = parseRedisUrl('rediss://h?rejectUnauthorized=false&servername=other');
    expect(redisOptionsFromUrl(insecure).tls).toEqual({ servername: 'other', rejectUnauthorized: false });
    expect(redisOptionsFromUrl(parseRedisUrl('redis://h')).tls).toBeUndefined();
  });

  it('reads IPv6 hosts and query options', () => {
    expect(parseRedisUrl('redis://[::1]:7000').host).toBe('::1');
    const u = parseRedisUrl('redis://h?family=6&db=2&connectTimeout=1500&name=worker-0');
    expect(u).toMatchObject({ family: 6, db: 2, connectTimeout: 1500, connectionName: 'worker-0' });
    expect(redisOptionsFromUrl(u)).toMatchObject({ family: 6, db: 2, connectTimeout: 1500, connectionName: 'worker-0' });
  });

  it('rejects bad URLs with ConfigError naming the URL, password masked', () => {
    const cases: Array<[string, RegExp]> = [
      ['http://:hunter2@h:1', /unsupported scheme "http:"/],
      ['redis://:hunter2@h:1/abc', /database number/],
      ['redis://:hunter2@h:1?family=5', /family must be 0, 4 or 6/],
      ['redis://:hunter2@h:1?timeout=5', /unknown option "timeout"/],
      ['redis://:hunter2@h:1/2?db=3', /path names db 2 but \?db= names 3/],
      ['redis://:hunter2@h:0', /port/],
      ['redis://:hunter2@h:1?rejectUnauthorized=false', /rediss:\/\/ \(TLS\) only/],
      ['redis://:hunter2@h:99999', /not a URL/],
    ];
    for (const [url, why] of cases) {
      let err: unknown;
      try {
        parseRedisUrl(url);
      } catch (e) {
        err = e;
      }
      expect(err, url).toBeInstanceOf(ConfigError);
      const message = (err as Error).message;
      expect(message, url).toMatch(why);
      expect(message, url).toContain('redis');
      expect(message, url).toContain(':***@');
      expect(message, url).not.toContain('hunter2');
    }
  });
});

describe('redactUrl / formatRedisUrl', () => {
  it('masks passwords in every userinfo form', () => {
    expect(redactUrl('redis://:pw@h:1/0')).toBe('redis://:***@h:1/0');
    expect(redactUrl('rediss://alice:p%40w@h')).toBe('rediss://alice:***@h');
    expect(redactUrl('redis://pw@h')).toBe('redis://***@h');
    expect(redactUrl('redis://:a@b@h')).toBe('redis://:***@h');
    expect(redactUrl('redis://h:1')).toBe('redis://h:1');
    expect(redactUrl('not a url :pw@')).toBe('not a url :pw@'); // no scheme: nothing to parse
  });

  it('round-trips through parseRedisUrl', () => {
    const parts = { tls: true, host: '::1', port: 6390, username: 'a b', password: 'x/y@z%', db: 4 };
    const url = formatRedisUrl(parts);
    expect(url).toBe('rediss://a%20b:x%2Fy%40z%25@[::1]:6390/4');
    expect(parseRedisUrl(url)).toEqual(parts);
    expect(formatRedisUrl({ host: '127.0.0.1', port: 1 })).toBe('redis://127.0.0.1:1');
  });
});

describe('createRedis against a password-protected redis-server', () => {
  const password = 'sp ec:ial/@#?%é';
  let server: RedisServerHandle;
  beforeAll(async () => {
    server = await startRedisServer({ name: 'redis-spec', password });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('authenticates through the URL (password URL-encoded) and selects the db', async () => {
    const url = `redis://:${encodeURIComponent(password)}@127.0.0.1:${server.port}/2?name=spec-client`;
    expect(server.url).toBe(`redis://:${encodeURIComponent(password)}@127.0.0.1:${server.port}`);
    const client = createRedis(url, { lazyConnect: true, maxRetriesPerRequest: null });
    try {
      expect(client.status).toBe('wait'); // lazyConnect: not connected yet
      expect(client.options.maxRetriesPerRequest).toBeNull();
      await client.connect();
      expect(await client.ping()).toBe('PONG');
      const key = `smolrate:test:${Math.random().toString(36).slice(2)}`;
      await client.set(key, 'v');
      expect(await client.client('GETNAME')).toBe('spec-client');
      const info = await client.info('keyspace');
      expect(info).toMatch(/^db2:keys=1/m);
      await client.del(key);
    } finally {
      client.disconnect();
    }
  });

  it('is refused with a wrong or missing password', async () => {
    for (const url of [`redis://:wrong@127.0.0.1:${server.port}`, `redis://127.0.0.1:${server.port}`]) {
      const client = createRedis(url, { lazyConnect: true, maxRetriesPerRequest: 0, ioredis: { retryStrategy: () => null } });
      // ioredis rejects connect() with "Connection is closed." and emits the reason as 'error'.
      const errors: string[] = [];
      client.on('error', (e: Error) => errors.push(e.message));
      try {
        await expect(client.connect().then(() => client.ping())).rejects.toThrow();
        expect(errors.join('\n')).toMatch(/WRONGPASS|NOAUTH/);
      } finally {
        client.disconnect();
      }
    }
  });
});
