/**
 * A small static HTTP server for local image mirrors (the synthetic dataset's `images/`) and for
 * the image-fetch tests: node:http on 127.0.0.1, a free port, GET/HEAD of files under one folder,
 * 404 for anything missing, 403 for paths that try to leave the folder (`..`, encoded or not, or a
 * symlink pointing out). Content-Length is the file size; Content-Type follows the extension (so a
 * WebP named `.jpg` is announced as image/jpeg, as by the real CDN).
 *
 * Fault injection, per request path (so concurrent fetches of different files each see it):
 * the first `resetFirst` requests of a path have their connection destroyed without an answer,
 * the next `failFirst` get `failStatus` (default 503); every answer waits `slowMs` first.
 */
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { extname, isAbsolute, relative, resolve, sep } from 'node:path';
import { ServiceError } from '@smolrate/core';

export interface StaticServerFaults {
  /** Per path: the first N requests answer `failStatus`. Default 0. */
  failFirst?: number;
  /** Status of the injected failures. Default 503. */
  failStatus?: number;
  /** Per path: the first N requests (before the failFirst ones) are cut without a response. Default 0. */
  resetFirst?: number;
  /** Delay before every response, in ms. Default 0. */
  slowMs?: number;
}

export interface StaticServerOptions {
  /** Default 127.0.0.1 (loopback only). */
  host?: string;
  /** Default 0: a free port. */
  port?: number;
  faults?: StaticServerFaults;
}

export interface StaticServer {
  /** Base URL with a trailing slash: `http://127.0.0.1:PORT/`. */
  url: string;
  port: number;
  /** Requests received so far (all paths). */
  requests(): number;
  /** Requests received for one decoded path, e.g. hits('/a.jpg'). */
  hits(path: string): number;
  /** Replaces the fault settings and resets the per-path counters. */
  setFaults(faults: StaticServerFaults): void;
  stop(): Promise<void>;
}

const CONTENT_TYPES: Record<string, string> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.json': 'application/json',
  '.jsonl': 'application/x-ndjson',
  '.gz': 'application/gzip',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
};

function answer(res: ServerResponse, status: number, text: string): void {
  const body = Buffer.from(text + '\n');
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** The decoded path segments of a request, or a status code when the path is refused. */
function segments(rawUrl: string): string[] | 400 | 403 {
  const q = rawUrl.search(/[?#]/);
  const rawPath = q >= 0 ? rawUrl.slice(0, q) : rawUrl;
  if (!rawPath.startsWith('/')) return 400;
  const out: string[] = [];
  for (const raw of rawPath.split('/').slice(1)) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return 400;
    }
    if (seg === '..' || seg.includes('/') || seg.includes('\\') || seg.includes('\0')) return 403;
    if (seg === '' || seg === '.') continue;
    out.push(seg);
  }
  return out;
}

export async function startStaticServer(dir: string, options: StaticServerOptions = {}): Promise<StaticServer> {
  let root: string;
  try {
    root = await realpath(resolve(dir));
    if (!(await stat(root)).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    throw new ServiceError(`static server: cannot serve ${dir}`, { cause: e });
  }
  let faults: StaticServerFaults = { ...options.faults };
  let perPath = new Map<string, number>();
  const totals = new Map<string, number>();
  let requests = 0;
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();

  const inside = (p: string) => {
    const rel = relative(root, p);
    return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel));
  };

  const serve = async (req: IncomingMessage, res: ServerResponse, segs: string[]) => {
    const file = resolve(root, ...segs);
    let real: string;
    try {
      real = await realpath(file);
    } catch {
      return answer(res, 404, 'not found');
    }
    if (!inside(real)) return answer(res, 403, 'forbidden');
    const st = await stat(real).catch(() => null);
    if (!st || !st.isFile()) return answer(res, 404, 'not found');
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[extname(real).toLowerCase()] ?? 'application/octet-stream',
      'content-length': st.size,
      'last-modified': st.mtime.toUTCString(),
    });
    if (req.method === 'HEAD') return void res.end();
    const stream = createReadStream(real);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    requests++;
    const segs = segments(req.url ?? '/');
    const key = typeof segs === 'number' ? (req.url ?? '/') : '/' + segs.join('/');
    totals.set(key, (totals.get(key) ?? 0) + 1);
    const n = (perPath.get(key) ?? 0) + 1;
    perPath.set(key, n);
    const go = () => {
      if (res.destroyed) return;
      const resets = faults.resetFirst ?? 0;
      if (n <= resets) return void req.socket.destroy();
      if (n <= resets + (faults.failFirst ?? 0)) return answer(res, faults.failStatus ?? 503, 'injected failure');
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        return answer(res, 405, 'method not allowed');
      }
      if (segs === 400) return answer(res, 400, 'bad request');
      if (segs === 403) return answer(res, 403, 'forbidden');
      serve(req, res, segs).catch(() => res.destroy());
    };
    const slow = faults.slowMs ?? 0;
    if (slow > 0) {
      const t = setTimeout(() => {
        timers.delete(t);
        go();
      }, slow);
      timers.add(t);
    } else {
      go();
    }
  };

  const server = createServer(handle);
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  try {
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
        server.off('error', fail);
        ok();
      });
    });
  } catch (e) {
    throw new ServiceError(`static server: cannot listen on ${options.host ?? '127.0.0.1'}:${options.port ?? 0}`, { cause: e });
  }
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let stopped: Promise<void> | null = null;
  return {
    url: `http://${host}:${addr.port}/`,
    port: addr.port,
    requests: () => requests,
    hits: (path: string) => totals.get(path) ?? 0,
    setFaults(f: StaticServerFaults) {
      faults = { ...f };
      perPath = new Map();
    },
    stop() {
      stopped ??= new Promise<void>((ok) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close(() => ok());
        for (const s of sockets) s.destroy();
      });
      return stopped;
    },
  };
}
