import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ServiceError } from '@smolrate/core';
import { startStaticServer, type StaticServer } from './static-server.js';

/** A raw request: the path is sent as given (fetch would normalise `..` away). */
function raw(server: StaticServer, path: string, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port: server.port, path, method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => ok({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', fail);
    });
    req.on('error', fail);
    req.end();
  });
}

describe('startStaticServer', () => {
  let root: string;
  let outside: string;
  let server: StaticServer;
  const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xd9]);

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'smolrate-static-'));
    outside = mkdtempSync(join(tmpdir(), 'smolrate-static-outside-'));
    mkdirSync(join(root, 'images'));
    writeFileSync(join(root, 'images', '71a+Bc9xQeL._AC_SL1500_.jpg'), jpeg);
    writeFileSync(join(root, 'images', 'b.png'), Buffer.alloc(100_000, 7));
    writeFileSync(join(outside, 'secret.txt'), 'secret');
    symlinkSync(join(outside, 'secret.txt'), join(root, 'images', 'link.txt'));
    server = await startStaticServer(join(root, 'images'));
  });
  afterEach(() => server.setFaults({}));
  afterAll(async () => {
    await server.stop();
    rmSync(root, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  it('serves files on loopback with the right length and type, `+` literal or %2B-encoded', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    for (const name of ['71a+Bc9xQeL._AC_SL1500_.jpg', '71a%2BBc9xQeL._AC_SL1500_.jpg']) {
      const res = await fetch(server.url + name);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/jpeg');
      expect(res.headers.get('content-length')).toBe(String(jpeg.length));
      expect(Buffer.from(await res.arrayBuffer()).equals(jpeg)).toBe(true);
    }
    const big = await fetch(server.url + 'b.png?x=1');
    expect(big.headers.get('content-length')).toBe('100000');
    expect((await big.arrayBuffer()).byteLength).toBe(100_000);
    const head = await raw(server, '/b.png', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('100000');
    expect(head.body.length).toBe(0);
    expect(server.hits('/71a+Bc9xQeL._AC_SL1500_.jpg')).toBe(2);
  });

  it('answers 404 for missing files and folders, 405 for other methods', async () => {
    expect((await fetch(server.url + 'nope.jpg')).status).toBe(404);
    expect((await fetch(server.url)).status).toBe(404);
    expect((await raw(server, '/b.png', 'DELETE')).status).toBe(405);
  });

  it('blocks paths that leave the folder: .., encoded .., encoded slashes, symlinks out', async () => {
    for (const p of ['/../secret.txt', '/x/../../secret.txt', '/%2e%2e/secret.txt', '/..%2Fsecret.txt', '/%2E%2E%2Fsecret.txt']) {
      const res = await raw(server, p);
      expect(res.status, p).toBe(403);
      expect(res.body.toString()).not.toContain('secret\n');
    }
    expect((await raw(server, '/link.txt')).status).toBe(403);
    expect((await raw(server, '/%zz')).status).toBe(400);
  });

  it('injects per-path failures, connection resets and delays', async () => {
    server.setFaults({ failFirst: 2 });
    const url = server.url + 'b.png';
    expect((await fetch(url)).status).toBe(503);
    expect((await fetch(server.url + '71a%2BBc9xQeL._AC_SL1500_.jpg')).status).toBe(503); // its own counter
    expect((await fetch(url)).status).toBe(503);
    expect((await fetch(url)).status).toBe(200);

    server.setFaults({ resetFirst: 1, failFirst: 1, failStatus: 500 });
    await expect(fetch(url)).rejects.toThrow();
    expect((await fetch(url)).status).toBe(500);
    expect((await fetch(url)).status).toBe(200);

    server.setFaults({ slowMs: 150 });
    const t = Date.now();
    expect((await fetch(url)).status).toBe(200);
    expect(Date.now() - t).toBeGreaterThanOrEqual(140);
  });

  it('refuses a folder that does not exist; stop() is idempotent and closes the port', async () => {
    await expect(startStaticServer(join(root, 'missing'))).rejects.toBeInstanceOf(ServiceError);
    const s = await startStaticServer(root);
    expect((await fetch(s.url + 'images/b.png')).status).toBe(200);
    await Promise.all([s.stop(), s.stop()]);
    await expect(fetch(s.url + 'images/b.png')).rejects.toThrow();
  });
});
