import { describe, expect, it } from 'vitest';
import { CollectiveError } from '@smolrate/core';
import { LocalCollective } from './collective.js';

describe('LocalCollective', () => {
  it('is rank 0 of 1 and every operation is the identity', async () => {
    const c = new LocalCollective();
    expect([c.rank, c.worldSize]).toEqual([0, 1]);
    await c.barrier('start');
    const grads = new Float32Array([1.5, -2, NaN, 3e-39]);
    const bytes = new Uint8Array(grads.buffer.slice(0));
    const out = await c.allReduceMean(grads, 'grads');
    expect(out).toBe(grads); // in place
    expect(new Uint8Array(out.buffer)).toEqual(bytes); // bit for bit, NaN and subnormal included
    const payload = new Uint8Array([1, 2, 3]);
    expect(await c.broadcast(payload, 0, 'p')).toBe(payload);
    expect(await c.allGatherJson({ loss: 0.5 }, 'loss')).toEqual([{ loss: 0.5 }]);
  });

  it('returns JSON round trips, like the multi-process collective', async () => {
    const c = new LocalCollective();
    const value = { when: new Date(0), skip: undefined, n: 1 };
    expect(await c.broadcastJson(value, 0, 'v')).toEqual({ when: '1970-01-01T00:00:00.000Z', n: 1 });
    await expect(c.allGatherJson(undefined, 'u')).rejects.toThrow(/not JSON-serialisable/);
  });

  it('rejects a root other than 0, a root without data, and any call after close', async () => {
    const c = new LocalCollective();
    await expect(c.broadcast(new Uint8Array(1), 1, 'x')).rejects.toThrow(/root must be a rank in \[0, 0\], got 1/);
    await expect(c.broadcast(null, 0, 'x')).rejects.toBeInstanceOf(CollectiveError);
    await expect(c.broadcastJson(null, 0, 'x')).rejects.toThrow(/passed no value/);
    await c.close();
    await c.close();
    await expect(c.barrier('late')).rejects.toThrow(/closed/);
    await expect(c.allReduceMean(new Float32Array(1))).rejects.toBeInstanceOf(CollectiveError);
  });
});
