import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@smolrate/core';
import { currentBackendName, describeBackend, initBackend, parseBackendChoice, wasmBinaryDir } from './backend.js';

const require = createRequire(import.meta.url);
function installed(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}
// On this project's machines the native packages' install cannot fetch libtensorflow, so they are
// absent; a GPU host that has them takes the other branches.
const hasNodeGpu = installed('@tensorflow/tfjs-node-gpu');
const hasNode = installed('@tensorflow/tfjs-node');

describe('initBackend', () => {
  it('importing does not register the wasm backend (at priority 2 it would become the default)', () => {
    expect(tf.findBackendFactory('wasm')).toBeNull();
  });

  it('cpu: plain JS, with the gradients training needs', async () => {
    const info = await initBackend('cpu');
    expect(info).toEqual({ name: 'cpu', requested: 'cpu', fallbacks: [] });
    expect(tf.getBackend()).toBe('cpu');
    expect(currentBackendName()).toBe('cpu');
    expect(tf.getGradient('Sum')).toBeDefined();
    expect(tf.getGradient('GatherV2')).toBeDefined();
  });

  it('wasm: loads the SIMD binary from the package dist folder; one thread under Node', async () => {
    expect(existsSync(wasmBinaryDir() + 'tfjs-backend-wasm-simd.wasm')).toBe(true);
    const info = await initBackend('wasm');
    expect(info).toMatchObject({ name: 'wasm', requested: 'wasm', fallbacks: [], simd: true, threads: 1 });
    expect(tf.getBackend()).toBe('wasm');
    expect(describeBackend(info)).toBe('wasm (SIMD, 1 thread)');
    const y = tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync()[0]);
    expect(y).toBe(11);
  });

  it.skipIf(hasNodeGpu || hasNode)('auto without the native packages: wasm, saying why each was skipped', async () => {
    const info = await initBackend('auto');
    expect(info.name).toBe('wasm');
    expect(info.requested).toBe('auto');
    expect(info.fallbacks).toEqual([
      'tensorflow-gpu: @tensorflow/tfjs-node-gpu is not installed',
      'tensorflow: @tensorflow/tfjs-node is not installed',
    ]);
    expect(describeBackend(info)).toMatch(/^wasm \(SIMD, 1 thread\) — skipped tensorflow-gpu: .*; tensorflow: /);
  });

  it.skipIf(hasNodeGpu || hasNode)('an explicit tensorflow that cannot load is an error naming both packages', async () => {
    const err = await initBackend('tensorflow').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toBe(
      'backend "tensorflow" is not available: tensorflow-gpu: @tensorflow/tfjs-node-gpu is not installed; tensorflow: @tensorflow/tfjs-node is not installed',
    );
  });

  it.skipIf(!hasNodeGpu && !hasNode)('auto with a native package: the tensorflow backend on our tfjs-core', async () => {
    const info = await initBackend('auto');
    expect(info.name).toBe(hasNodeGpu ? 'tensorflow-gpu' : 'tensorflow');
    expect(tf.getBackend()).toBe('tensorflow');
  });

  it('is idempotent, and re-activates its backend after a switch', async () => {
    const a = await initBackend('wasm');
    await initBackend('cpu');
    expect(tf.getBackend()).toBe('cpu');
    const b = await initBackend('wasm');
    expect(b).toEqual(a);
    expect(tf.getBackend()).toBe('wasm');
    const [c, d] = await Promise.all([initBackend('cpu'), initBackend('cpu')]);
    expect(c).toEqual(d);
  });

  it('rejects unknown choices', async () => {
    expect(() => parseBackendChoice('gpu')).toThrow(ConfigError);
    expect(parseBackendChoice('wasm')).toBe('wasm');
    await expect(initBackend('webgl' as never)).rejects.toThrow(/backend must be one of auto, tensorflow, wasm, cpu, got "webgl"/);
  });
});
