/**
 * Redis connection URLs and clients. Every smolrate process reaches Redis through one URL
 * (`REDIS_URL`, `--redis`):
 *
 *   redis://[[username:]password@]host[:port][/db][?option=value&...]
 *   rediss://...   the same over TLS
 *
 * As in `redis-cli -u`, a userinfo without a colon is the password (`redis://s3cret@host`), and
 * `redis://:s3cret@host` authenticates the default user. Special characters in the password
 * must be URL-encoded (`encodeURIComponent`); an unencoded `@` is tolerated (the last `@`
 * ends the userinfo). Query options: `db`, `family` (0, 4, 6), `connectTimeout` (ms), `name`
 * (client name), and for TLS `servername` and `rejectUnauthorized` (true/false).
 * Errors and logs show URLs through `redactUrl`, never with the password.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { isIP } from 'node:net';
import { ConfigError } from './errors.js';

const DEFAULT_REDIS_PORT = 6379;
/** Host used when the URL names none (`redis://:pw@/0`). Not `localhost`: it may resolve to ::1. */
const DEFAULT_REDIS_HOST = '127.0.0.1';

/** A parsed Redis URL: the connection facts, independent of any client library. */
export interface RedisUrl {
  tls: boolean;
  host: string;
  port: number;
  /** ACL user; undefined means the `default` user. */
  username?: string;
  password?: string;
  db: number;
  family?: 0 | 4 | 6;
  connectTimeout?: number;
  connectionName?: string;
  /** TLS SNI name; defaults to the host when it is not an IP address. */
  servername?: string;
  /** TLS certificate verification; default true. */
  rejectUnauthorized?: boolean;
}

const SCHEMES = new Set(['redis:', 'rediss:']);
const QUERY_KEYS = ['db', 'family', 'connectTimeout', 'name', 'servername', 'rejectUnauthorized'];

/** The URL with its password replaced by `***`, for logs and error messages. Never throws. */
export function redactUrl(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i, (_m, scheme: string, userinfo: string) => {
      const colon = userinfo.indexOf(':');
      // Like redis-cli, a userinfo without a colon is a password.
      return colon === -1 ? `${scheme}***@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
    })
    .replace(/([?&]password=)[^&#]*/i, '$1***');
}

function decodeComponent(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    // Not valid percent-encoding (e.g. a literal "100%sure"): the raw text is the only reading.
    return s;
  }
}

function bad(url: string, why: string): ConfigError {
  return new ConfigError(`invalid Redis URL ${redactUrl(url)}: ${why}`);
}

function parseIntParam(url: string, key: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value)) throw bad(url, `${key} must be an integer, got "${value}"`);
  const n = Number(value);
  if (n < min || n > max) throw bad(url, `${key} must be in [${min}, ${max}], got ${n}`);
  return n;
}

/** Parses a `redis://` or `rediss://` URL. Throws ConfigError naming the (redacted) URL. */
export function parseRedisUrl(url: string): RedisUrl {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // The URL constructor's error carries the raw input (password included): not chained.
    throw bad(url, 'not a URL (expected redis://[[user:]password@]host[:port][/db])');
  }
  if (!SCHEMES.has(parsed.protocol)) {
    throw bad(url, `unsupported scheme "${parsed.protocol}" (expected redis:// or rediss://)`);
  }

  // Userinfo is taken from the raw text: WHATWG URL cannot tell "user@" from "user:@".
  let username: string | undefined;
  let password: string | undefined;
  const userinfo = /^[a-z]+:\/\/([^/?#]*)@/i.exec(url)?.[1];
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    if (colon === -1) {
      password = decodeComponent(userinfo);
    } else {
      username = decodeComponent(userinfo.slice(0, colon)) || undefined;
      password = decodeComponent(userinfo.slice(colon + 1));
    }
    if (password === '') password = undefined;
  }

  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1') || DEFAULT_REDIS_HOST;
  const port = parsed.port === '' ? DEFAULT_REDIS_PORT : Number(parsed.port);
  if (port === 0) throw bad(url, 'port must be in [1, 65535], got 0');

  let db = 0;
  const path = decodeComponent(parsed.pathname);
  if (path !== '' && path !== '/') {
    const m = /^\/(\d+)\/?$/.exec(path);
    if (!m) throw bad(url, `the path must be a database number like /0, got "${path}"`);
    db = parseIntParam(url, 'db', m[1], 0, 2 ** 31 - 1);
  }

  const out: RedisUrl = { tls: parsed.protocol === 'rediss:', host, port, username, password, db };
  for (const [key, value] of parsed.searchParams) {
    switch (key) {
      case 'db':
        db = parseIntParam(url, 'db', value, 0, 2 ** 31 - 1);
        if (path !== '' && path !== '/' && db !== out.db) {
          throw bad(url, `the path names db ${out.db} but ?db= names ${db}`);
        }
        out.db = db;
        break;
      case 'family': {
        const f = parseIntParam(url, 'family', value, 0, 6);
        if (f !== 0 && f !== 4 && f !== 6) throw bad(url, `family must be 0, 4 or 6, got ${f}`);
        out.family = f;
        break;
      }
      case 'connectTimeout':
        out.connectTimeout = parseIntParam(url, 'connectTimeout', value, 1, 2 ** 31 - 1);
        break;
      case 'name':
        out.connectionName = value;
        break;
      case 'servername':
        out.servername = value;
        break;
      case 'rejectUnauthorized':
        if (value !== 'true' && value !== 'false') {
          throw bad(url, `rejectUnauthorized must be true or false, got "${value}"`);
        }
        out.rejectUnauthorized = value === 'true';
        break;
      default:
        throw bad(url, `unknown option "${key}" (known: ${QUERY_KEYS.join(', ')})`);
    }
  }
  if (!out.tls && (out.servername !== undefined || out.rejectUnauthorized !== undefined)) {
    throw bad(url, 'servername and rejectUnauthorized apply to rediss:// (TLS) only');
  }
  return out;
}

/** Builds a `redis://` / `rediss://` URL; the password is URL-encoded. Inverse of parseRedisUrl. */
export function formatRedisUrl(u: Pick<RedisUrl, 'host' | 'port'> & Partial<RedisUrl>): string {
  const host = isIP(u.host) === 6 ? `[${u.host}]` : u.host;
  let auth = '';
  if (u.password !== undefined) {
    auth = `${u.username !== undefined ? encodeURIComponent(u.username) : ''}:${encodeURIComponent(u.password)}@`;
  } else if (u.username !== undefined) {
    auth = `${encodeURIComponent(u.username)}:@`;
  }
  const db = u.db ? `/${u.db}` : '';
  return `${u.tls ? 'rediss' : 'redis'}://${auth}${host}:${u.port}${db}`;
}

/** ioredis options for a parsed URL (connection facts only). */
export function redisOptionsFromUrl(u: RedisUrl): RedisOptions {
  const options: RedisOptions = { host: u.host, port: u.port, db: u.db };
  if (u.username !== undefined) options.username = u.username;
  if (u.password !== undefined) options.password = u.password;
  if (u.family !== undefined) options.family = u.family;
  if (u.connectTimeout !== undefined) options.connectTimeout = u.connectTimeout;
  if (u.connectionName !== undefined) options.connectionName = u.connectionName;
  if (u.tls) {
    const tls: TlsConnectionOptions = {};
    const servername = u.servername ?? (isIP(u.host) === 0 ? u.host : undefined);
    if (servername !== undefined) tls.servername = servername;
    if (u.rejectUnauthorized !== undefined) tls.rejectUnauthorized = u.rejectUnauthorized;
    options.tls = tls;
  }
  return options;
}

export interface CreateRedisOptions {
  /** Do not connect until `connect()` or the first command. Default false. */
  lazyConnect?: boolean;
  /**
   * Retries of a command while the connection is down before it fails. `null` waits forever —
   * what BullMQ requires for the connections of its Workers. Default 20 (the ioredis default).
   */
  maxRetriesPerRequest?: number | null;
  /** `CLIENT SETNAME`, shown by `CLIENT LIST`. Default: the URL's `?name=`, else none. */
  connectionName?: string;
  /** Further ioredis options, applied last (a `tls` object is merged with the URL's). */
  ioredis?: RedisOptions;
}

/** An ioredis client for `url`. The caller owns it and must `quit()` / `disconnect()` it. */
export function createRedis(url: string, opts: CreateRedisOptions = {}): Redis {
  const base = redisOptionsFromUrl(parseRedisUrl(url));
  const options: RedisOptions = {
    ...base,
    lazyConnect: opts.lazyConnect ?? false,
    maxRetriesPerRequest: opts.maxRetriesPerRequest === undefined ? 20 : opts.maxRetriesPerRequest,
    ...(opts.connectionName !== undefined ? { connectionName: opts.connectionName } : {}),
    ...opts.ioredis,
  };
  if (base.tls && opts.ioredis?.tls) options.tls = { ...base.tls, ...opts.ioredis.tls };
  return new Redis(options);
}
