/**
 * An S3-compatible server for tests and local demos: the npm package `s3rver`, run in this
 * process on loopback. Objects live in a directory on disk (a fresh temp dir unless given), so
 * large uploads do not sit in memory. `stop()` closes every connection and removes the temp dir
 * it created — no orphans. Two gaps in s3rver 3.7.1 are filled in (see the middleware at the
 * end): ListObjectsV2 pagination on Node ≥ 17, and AbortMultipartUpload.
 */
import { access, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ServiceError } from '../packages/core/src/errors.js';

export interface S3ServerOptions {
  /** Where objects are stored. Default: a fresh temp dir, removed by `stop()`. A given dir is kept. */
  directory?: string;
  /** TCP port on 127.0.0.1. Default 0: a free port chosen by the OS. */
  port?: number;
  /** Buckets created before the server accepts requests. Default: none. */
  buckets?: string[];
}

export interface S3Server {
  /** `http://127.0.0.1:<port>` — use with path-style addressing. */
  endpoint: string;
  directory: string;
  stop(): Promise<void>;
}

// s3rver ships no type declarations; this is the part of its (Koa-based) API used here.
interface S3rverApp {
  configureBuckets(): Promise<unknown>;
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  logger: { close(): void };
  /** Koa's middleware list; composed when callback() is called. */
  middleware: KoaMiddleware[];
}

interface ListResult {
  objects: Array<{ key: string }>;
  commonPrefixes: string[];
  isTruncated?: boolean;
}
interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  body: unknown;
  status: number;
  store: {
    listObjects(bucket: string, options: unknown): Promise<ListResult>;
    getResourcePath(bucket: string, key: string | undefined, resource: string): string;
  };
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
type S3rverCtor = new (options: {
  silent: boolean;
  directory: string;
  vhostBuckets: boolean;
  configureBuckets: Array<{ name: string }>;
}) => S3rverApp;

const require = createRequire(import.meta.url);

export async function startS3Server(opts: S3ServerOptions = {}): Promise<S3Server> {
  const S3rver = require('s3rver') as S3rverCtor;
  const ownsDirectory = opts.directory === undefined;
  const directory =
    opts.directory !== undefined
      ? resolve(opts.directory)
      : await mkdtemp(join(tmpdir(), 'smolrate-s3rver-'));
  if (!ownsDirectory) await mkdir(directory, { recursive: true });

  let server: Server | undefined;
  let app: S3rverApp | undefined;
  try {
    app = new S3rver({
      silent: true,
      directory,
      // Buckets are addressed by path only; no Host-header guessing.
      vhostBuckets: false,
      configureBuckets: (opts.buckets ?? []).map((name) => ({ name })),
    });
    await app.configureBuckets();
    // Just before the router, so the XML encoder (further out) still sees our changes to the body.
    app.middleware.splice(app.middleware.length - 1, 0, paginateListObjectsV2, abortMultipartUpload);

    // Our own http.Server instead of s3rver.run(): run() never rejects when listen fails
    // (EADDRINUSE is emitted as an 'error' event its promise does not watch).
    const srv = createServer(app.callback());
    server = srv;
    await new Promise<void>((resolveListen, rejectListen) => {
      srv.once('error', rejectListen);
      srv.listen(opts.port ?? 0, '127.0.0.1', () => {
        srv.off('error', rejectListen);
        resolveListen();
      });
    });
  } catch (e) {
    server?.close();
    app?.logger.close();
    if (ownsDirectory) await rm(directory, { recursive: true, force: true });
    throw new ServiceError(
      `could not start s3rver on 127.0.0.1:${opts.port ?? 0}: ${(e as Error).message}`,
      { cause: e },
    );
  }

  const { port } = server.address() as AddressInfo;
  const running = server;
  const logger = app.logger;
  let stopped: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    directory,
    stop() {
      stopped ??= (async () => {
        await new Promise<void>((resolveClose) => {
          running.close(() => resolveClose());
          // SDK clients keep sockets alive; close them so close() does not wait on them.
          running.closeAllConnections();
        });
        logger.close();
        if (ownsDirectory) await rm(directory, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

/**
 * ListObjectsV2 pagination that works on Node ≥ 17. s3rver 3.7.1 encrypts its continuation tokens
 * with DES, which OpenSSL 3 refuses (ERR_OSSL_EVP_UNSUPPORTED, jamhall/s3rver#818), so every
 * listing longer than one page answered HTTP 500. Here the token is the base64url of the last key
 * returned; the request is turned into the equivalent `start-after` request, s3rver is shown an
 * untruncated result so it never builds its own token, and the page's body gets ours.
 */
const paginateListObjectsV2: KoaMiddleware = async (ctx, next) => {
  const bucket = /^\/([^/]+)\/?$/.exec(ctx.path)?.[1];
  if (ctx.method !== 'GET' || bucket === undefined || ctx.query['list-type'] !== '2') return next();

  const token = ctx.query['continuation-token'];
  if (typeof token === 'string' && token !== '') {
    const query: KoaContext['query'] = { ...ctx.query, 'start-after': decodeToken(token) };
    delete query['continuation-token'];
    ctx.query = query;
  }
  let lastKey: string | undefined;
  const store = ctx.store;
  ctx.store = Object.create(store, {
    listObjects: {
      value: async (b: string, options: unknown): Promise<ListResult> => {
        const result = await store.listObjects(b, options);
        if (!result.isTruncated) return result;
        const keys = [...result.objects.map((o) => o.key), ...result.commonPrefixes].sort();
        lastKey = keys[keys.length - 1];
        return { ...result, isTruncated: false };
      },
    },
  });
  await next();

  const page = (ctx.body as { ListBucketResult?: Record<string, unknown> } | undefined)?.ListBucketResult;
  if (page === undefined) return;
  if (typeof token === 'string' && token !== '') {
    page.ContinuationToken = token;
    delete page.StartAfter;
  }
  if (lastKey !== undefined) {
    page.IsTruncated = true;
    page.NextContinuationToken = Buffer.from(lastKey, 'utf8').toString('base64url');
  }
};

function decodeToken(token: string): string {
  return Buffer.from(token, 'base64url').toString('utf8');
}

/**
 * AbortMultipartUpload, which s3rver 3.7.1 answers with 405 MethodNotAllowed: removes the upload's
 * parts, as S3 does, so an upload that fails midway leaves nothing behind here either.
 */
const abortMultipartUpload: KoaMiddleware = async (ctx, next) => {
  const bucket = /^\/([^/]+)\/./.exec(ctx.path)?.[1];
  const uploadId = ctx.query.uploadId;
  if (ctx.method !== 'DELETE' || bucket === undefined || typeof uploadId !== 'string') return next();
  // s3rver's upload ids are 32 hex digits; anything else cannot name an upload directory.
  const dir = /^[0-9a-f]{32}$/.test(uploadId) ? join(ctx.store.getResourcePath(bucket, undefined, 'uploads'), uploadId) : '';
  const exists = dir !== '' && (await access(dir).then(() => true, () => false));
  if (!exists) {
    const S3Error = require('s3rver/lib/models/error.js') as new (code: string, message: string, detail: object) => Error;
    throw new S3Error('NoSuchUpload', 'The specified upload does not exist.', { UploadId: uploadId });
  }
  await rm(dir, { recursive: true, force: true });
  ctx.status = 204;
};
