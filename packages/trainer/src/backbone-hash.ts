/**
 * The identity of the frozen part of a model (vision encoder + connector): the key under which
 * the feature cache stores image features. SHA-256 over
 *
 *   "smolrate-backbone/1\n" + canonical JSON of what shapes the features besides the weights
 *   (vision config, scale factor, input image size) + for every frozen parameter in name order:
 *   name, tfjs shape, byte length, and its float32 bytes (little-endian, tfjs layout).
 *
 * The trained parameters (text model, head) are not included: training changes them every step
 * while the cached features stay valid. The bytes are those the model computes with (tfjs layout:
 * Linear [in, out], Conv [kh, kw, in, out]), so the hash is a smolrate identifier, not one another
 * tool would reproduce from the PyTorch tensors.
 *
 * Hashing the 256M model's ~94 M frozen values (~376 MB) takes a noticeable fraction of a second,
 * so the result is memoised per model; the memo is keyed by the identities of the frozen
 * tensors, which are immutable — loading new frozen weights replaces them, and the hash is
 * recomputed.
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { Param, type SmolVLMRegressor } from '@smolrate/model';

const memo = new WeakMap<SmolVLMRegressor, { ids: string; hash: string }>();
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Every Param reachable from `root` through object properties and arrays. */
function collectParams(root: object, out: Set<Param>, seen: Set<object>): void {
  if (seen.has(root)) return;
  seen.add(root);
  const values = Array.isArray(root) ? root : Object.values(root);
  for (const v of values) {
    if (v instanceof Param) out.add(v);
    else if (
      typeof v === 'object' &&
      v !== null &&
      !(v instanceof tf.Tensor) &&
      !ArrayBuffer.isView(v) &&
      !(v instanceof ArrayBuffer) &&
      !(v instanceof Map) &&
      !(v instanceof Set)
    ) {
      collectParams(v, out, seen);
    }
  }
}

/**
 * The frozen parameters (vision model + connector) in name order. Found by walking the module
 * tree, and checked against the model's own list of non-trainable names so a module that hides
 * a parameter cannot silently drop out of the hash.
 */
export function frozenParameters(model: SmolVLMRegressor): Param[] {
  const found = new Set<Param>();
  const seen = new Set<object>();
  collectParams(model.visionModel, found, seen);
  collectParams(model.connector, found, seen);
  const params = [...found].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const expected = model
    .namedParameters()
    .filter((p) => !p.trainable)
    .map((p) => p.name)
    .sort();
  const names = params.map((p) => p.name);
  if (names.length !== expected.length || names.some((n, i) => n !== expected[i]) || params.some((p) => p.trainable)) {
    throw new Error(`internal: the frozen parameters found in the module tree (${names.length}) do not match the model's non-trainable parameters (${expected.length})`);
  }
  return params;
}

/** SHA-256 (hex) of the model's frozen parameters and image geometry (see the file comment). */
export async function backboneHash(model: SmolVLMRegressor): Promise<string> {
  const params = frozenParameters(model);
  const tensors: tf.Tensor[] = params.map((p) => p.value);
  const ids = tensors.map((t) => t.id).join(',');
  const known = memo.get(model);
  if (known !== undefined && known.ids === ids) return known.hash;

  const cfg = model.config;
  const geometry = {
    imageSize: cfg.regression.imageSize,
    scaleFactor: cfg.scaleFactor,
    vision: Object.fromEntries(Object.entries(cfg.vision).sort(([a], [b]) => (a < b ? -1 : 1))),
  };
  const hash = createHash('sha256');
  hash.update(`smolrate-backbone/1\n${JSON.stringify(geometry)}\n`);
  for (let i = 0; i < params.length; i++) {
    const t = tensors[i];
    if (t.dtype !== 'float32') throw new Error(`internal: frozen parameter ${params[i].name} is ${t.dtype}, expected float32`);
    const data = (await t.data()) as Float32Array;
    hash.update(`${params[i].name} [${t.shape.join(',')}] ${data.byteLength}\n`);
    if (LITTLE_ENDIAN) hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    else {
      const le = Buffer.alloc(data.byteLength);
      for (let j = 0; j < data.length; j++) le.writeFloatLE(data[j], 4 * j);
      hash.update(le);
    }
  }
  const hex = hash.digest('hex');
  memo.set(model, { ids, hash: hex });
  return hex;
}
