import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from './backend.js';
import { formatBytes, MemoryBudgetError, MemoryMeter } from './memory-meter.js';

describe.each(['cpu', 'wasm'] as const)('MemoryMeter on %s', (backend) => {
  it('counts live and peak bytes of real buffers (reshapes share theirs)', async () => {
    await initBackend(backend);
    const meter = MemoryMeter.install()!;
    try {
      const { result, peak } = meter.measure(() =>
        tf.tidy(() => {
          const x = tf.ones([256, 256]); // 256 KiB
          const y = tf.reshape(tf.add(x, 1), [65536]); // +256 KiB, the reshape shares it
          return tf.keep(tf.sum(y)); // +4 B
        }),
      );
      expect(peak).toBe(2 * 262144 + 4);
      expect(meter.live).toBe(4);
      result.dispose();
      expect(meter.live).toBe(0);
    } finally {
      meter.uninstall();
    }
  });

  it('an allocation over the budget throws before it happens, and tidy frees the rest', async () => {
    await initBackend(backend);
    const before = tf.memory().numTensors;
    const meter = MemoryMeter.install({ budget: 300_000 })!;
    try {
      expect(() => tf.tidy(() => tf.add(tf.ones([256, 256]), 1))).toThrow(MemoryBudgetError);
      expect(meter.live).toBe(0);
      expect(tf.memory().numTensors).toBe(before);
      meter.budget = undefined;
      tf.tidy(() => tf.add(tf.ones([256, 256]), 1)).dispose();
    } finally {
      meter.uninstall();
    }
    // Uninstalled: the backend's own methods again.
    expect(Object.prototype.hasOwnProperty.call(tf.backend(), 'write')).toBe(false);
  });
});

describe('formatBytes', () => {
  it('uses binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(3 * 2 ** 20)).toBe('3.0 MiB');
    expect(formatBytes(4294901760)).toBe('4.00 GiB');
  });
});
