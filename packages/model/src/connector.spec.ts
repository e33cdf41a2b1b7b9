import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng, ShapeError } from '@smolrate/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Connector, pixelShuffle } from './connector.js';
import { type Param, ParamScope } from './layers.js';

/** n seeded normal(0, std) floats (core's Rng). */
const randn = (n: number, seed: number | Rng, std = 1) => {
  const rng = typeof seed === 'number' ? new Rng(seed) : seed;
  return Float32Array.from({ length: n }, () => std * rng.normal());
};

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('pixelShuffle', () => {
  it('matches the explicit index formula on an iota tensor (B=2, 8×8 grid, D=3, s=4)', () => {
    const [B, n, D, s] = [2, 8, 3, 4];
    const m = n / s;
    const x = tf.tidy(() => tf.reshape(tf.range(0, B * n * n * D, 1, 'float32'), [B, n * n, D]) as tf.Tensor3D);
    const out = tf.tidy(() => pixelShuffle(x, s));
    expect(out.shape).toEqual([B, m * m, s * s * D]);
    const got = out.dataSync();
    for (let b = 0; b < B; b++)
      for (let br = 0; br < m; br++)
        for (let bc = 0; bc < m; bc++)
          for (let ri = 0; ri < s; ri++)
            for (let ci = 0; ci < s; ci++)
              for (let d = 0; d < D; d++) {
                const token = br * m + bc; // row-major block order
                const feature = (ri * s + ci) * D + d; // (row-in-block, col-in-block, channel)
                const patch = (br * s + ri) * n + (bc * s + ci); // t = r·n + c
                expect(got[(b * m * m + token) * s * s * D + feature]).toBe((b * n * n + patch) * D + d);
              }
    tf.dispose([x, out]);
  });

  it('equals docs/reference/model.md\'s rank-6 formulation and transformers\' pixel_shuffle view/permute chain', () => {
    const [B, n, D, s] = [1, 12, 2, 4];
    const x = tf.tidy(() => tf.reshape(tf.range(0, B * n * n * D, 1, 'float32'), [B, n * n, D]) as tf.Tensor3D);
    const ours = tf.tidy(() => pixelShuffle(x, s).dataSync());
    const spec = tf.tidy(() => tf.reshape(tf.transpose(tf.reshape(x, [B, n / s, s, n / s, s, D]), [0, 1, 3, 2, 4, 5]), [B, (n / s) ** 2, s * s * D]).dataSync());
    // Idefics3Connector.pixel_shuffle: view(b,h,w,d) → view(b,h,w/s,d·s) → permute(0,2,1,3)
    // → reshape(b,w/s,h/s,d·s²) → permute(0,2,1,3) → reshape(b,seq/s²,d·s²)
    const hf = tf.tidy(() => {
      let t: tf.Tensor = tf.reshape(x, [B, n, n / s, D * s]);
      t = tf.reshape(tf.transpose(t, [0, 2, 1, 3]), [B, n / s, n / s, D * s * s]);
      return tf.reshape(tf.transpose(t, [0, 2, 1, 3]), [B, (n * n) / (s * s), D * s * s]).dataSync();
    });
    expect(ours).toEqual(spec);
    expect(ours).toEqual(hf);
    x.dispose();
  });

  it('rejects a grid that is not a multiple of the scale', () => {
    const x = tf.zeros([1, 36, 2]) as tf.Tensor3D; // 6×6
    expect(() => pixelShuffle(x, 4)).toThrow(ShapeError);
    x.dispose();
  });
});

describe('Connector', () => {
  it('maps [B, 576, D_v] to [B, 36, D_t] through a bias-free projection of the shuffled rows', () => {
    const params: Param[] = [];
    const conn = new Connector(ParamScope.root(params, 'model.connector', 'connector'), 4, 5, 4);
    expect(params.map((p) => [p.name, p.shape])).toEqual([['model.connector.modality_projection.proj.weight', [5, 64]]]);
    const w = randn(5 * 64, 1);
    params[0].load({ shape: [5, 64], data: w });
    const xData = randn(576 * 4, 2);
    const x = tf.tensor3d(xData, [1, 576, 4]);
    const out = tf.tidy(() => conn.apply(x));
    expect(out.shape).toEqual([1, 36, 5]);
    // token 7 = block (1, 1): features from patches (4+ri)·24 + (4+ci)
    const shuffled = tf.tidy(() => pixelShuffle(x, 4).dataSync());
    const row = shuffled.slice(7 * 64, 8 * 64);
    const want = Array.from({ length: 5 }, (_, o) => [...row].reduce((acc, v, i) => acc + w[o * 64 + i] * v, 0));
    const got = out.dataSync().slice(7 * 5, 8 * 5);
    got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 4));
    expect(row[0]).toBe(xData[(4 * 24 + 4) * 4]);
    tf.dispose([x, out]);
    params.forEach((p) => p.dispose());
  });
});
