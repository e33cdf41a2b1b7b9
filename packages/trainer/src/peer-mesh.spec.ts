/**
 * The TCP data plane's addressing (what running across hosts depends on): port specs, a port
 * range whose first port is taken, listening on every interface with an advertised address, and
 * the hello that refuses a process of another rendezvous generation — with real sockets and, for
 * the collective, the real Redis of the vitest global setup (REDIS_URL).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { ConfigError } from '@smolrate/core';
import { afterEach, describe, expect, it } from 'vitest';
import { parsePortRange, PeerMesh } from './peer-mesh.js';
import { RedisCollective } from './redis-collective.js';

const FAST = { heartbeatMs: 200, deadAfterMs: 1_000, timeoutMs: 10_000, rendezvousTimeoutMs: 10_000 };
const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
});

/** A loopback port held by another server. */
async function busyPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  return { port: (server.address() as { port: number }).port, server };
}

describe('parsePortRange', () => {
  it('takes 0, a port or a range, and refuses anything else with a ConfigError', () => {
    expect(parsePortRange('0')).toEqual([0, 0]);
    expect(parsePortRange('29500')).toEqual([29500, 29500]);
    expect(parsePortRange(' 29500-29599 ')).toEqual([29500, 29599]);
    for (const bad of ['', 'x', '29599-29500', '70000', '0-10', '-1', '1-2-3']) expect(() => parsePortRange(bad)).toThrow(ConfigError);
  });
});

describe('PeerMesh.listen', () => {
  it('takes the first free port of a range (skipping a taken one) and names the range when none is free', async () => {
    const taken = await busyPort();
    try {
      const mesh = await PeerMesh.listen({ rank: 0, worldSize: 2, port: `${taken.port}-${taken.port + 20}` });
      open.push(mesh);
      const port = Number(mesh.address.split(':').at(-1));
      expect(port).toBeGreaterThan(taken.port);
      expect(port).toBeLessThanOrEqual(taken.port + 20);
      await expect(PeerMesh.listen({ rank: 1, worldSize: 2, port: String(taken.port) })).rejects.toThrow(
        new RegExp(`cannot listen on 127\\.0\\.0\\.1 port ${taken.port}`),
      );
    } finally {
      taken.server.close();
    }
  });

  it('listening on every interface advertises the given address (or an external IPv4)', async () => {
    const a = await PeerMesh.listen({ rank: 0, worldSize: 2, host: '0.0.0.0', advertise: '127.0.0.1' });
    const b = await PeerMesh.listen({ rank: 1, worldSize: 2, host: '0.0.0.0' });
    open.push(a, b);
    expect(a.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(b.address).toMatch(/^\d+\.\d+\.\d+\.\d+:\d+$/);
  });

  it('refuses a peer of another rendezvous generation (wrong token in the hello)', async () => {
    const a = await PeerMesh.listen({ rank: 0, worldSize: 2 });
    const b = await PeerMesh.listen({ rank: 1, worldSize: 2 });
    open.push(a, b);
    const addresses = [a.address, b.address];
    const results = await Promise.allSettled([a.connect(addresses, 'generation-1'), b.connect(addresses, 'generation-2')]);
    // b's dial is refused by a (a closes it); neither side gets a working mesh.
    expect(results.some((r) => r.status === 'rejected' && /cannot connect to rank 0|closed/.test(String(r.reason)))).toBe(true);
  }, 20_000);
});

describe('RedisCollective over the tcp data plane, bound to every interface', () => {
  it('two ranks on 0.0.0.0 with a port range and an advertised address all-reduce correctly', async () => {
    const runId = `mesh-${randomBytes(4).toString('hex')}`;
    const cs = await Promise.all(
      [0, 1].map((rank) =>
        RedisCollective.connect({ url: process.env.REDIS_URL!, runId, rank, worldSize: 2, ...FAST, dataPlane: 'tcp', host: '0.0.0.0', port: '0', advertise: '127.0.0.1' }),
      ),
    );
    open.push(...cs);
    const data = cs.map((c) => new Float32Array(1000).fill(c.rank + 1));
    await Promise.all(cs.map((c, i) => c.allReduceMean(data[i], 'x')));
    for (const d of data) expect([...d.slice(0, 3)]).toEqual([1.5, 1.5, 1.5]);
  }, 30_000);
});
