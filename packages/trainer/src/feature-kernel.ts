/**
 * The feature cache's entry check and decode through the WebAssembly SIMD kernel
 * (../assembly/feature-kernel.ts, which defines the checksum): one pass over an entry's stored
 * bytes computes its checksum and writes its float32 values. It replaced a crc32 (zlib) plus a JS
 * widening loop, the loader's two largest costs per sample (docs/training.md "The data path at scale").
 *
 * An `EntryDecoder` owns a kernel with a fixed memory: `slots` read buffers of `slotBytes` each and
 * one decode area of an entry's float32 values. Its memory never grows, so the Buffer views of the
 * slots handed to asynchronous reads stay valid while they are in flight.
 */
import { WasmKernel } from './wasm-kernel.js';

interface FeatureExports {
  decodeEntry(src: number, bytes: number, dtype: number, out: number): number;
  entryChecksum(src: number, bytes: number): number;
}

/** The kernel's dtype codes (the feature file header's). */
export const FEATURE_DTYPE_CODE = { f32: 1, bf16: 2, f16: 3 } as const;
export type FeatureDtype = keyof typeof FEATURE_DTYPE_CODE;

const PAGE = 65536;
/** The kernel's scratch is [0, 64); buffers start at 64, areas are 64-byte aligned. */
const BASE = 64;
const align64 = (n: number) => Math.ceil(n / 64) * 64;

/**
 * The checksum's definition in JS (the spec's reference for the kernel): the bytes zero-padded to
 * a multiple of 16 as little-endian u32 words; word 4k + l to lane l: a_l += w, b_l += a_l (mod
 * 2³²); then FNV-1a over a0‥a3, b0‥b3.
 */
export function entryChecksumReference(bytes: Uint8Array): number {
  const a = new Uint32Array(4);
  const b = new Uint32Array(4);
  const padded = new Uint8Array(Math.ceil(bytes.length / 16) * 16);
  padded.set(bytes);
  const view = new DataView(padded.buffer);
  for (let i = 0; i < padded.length; i += 16) {
    for (let l = 0; l < 4; l++) a[l] += view.getUint32(i + 4 * l, true);
    for (let l = 0; l < 4; l++) b[l] += a[l];
  }
  let h = 2166136261;
  for (const x of [...a, ...b]) h = Math.imul((h ^ x) >>> 0, 16777619) >>> 0;
  return h;
}

export class EntryDecoder {
  readonly slots: number;
  readonly slotBytes: number;
  readonly entryValues: number;
  private readonly kernel: WasmKernel<FeatureExports>;
  private readonly outAt: number;
  private readonly slotAt: number;
  private readonly views: Buffer[];

  /** `slots` read buffers of `slotBytes`, and a decode area of `entryValues` float32 values. */
  constructor(o: { slots: number; slotBytes: number; entryValues: number }) {
    this.slots = o.slots;
    this.slotBytes = align64(o.slotBytes);
    this.entryValues = o.entryValues;
    this.outAt = BASE;
    this.slotAt = align64(this.outAt + 4 * o.entryValues);
    const bytes = this.slotAt + this.slots * this.slotBytes;
    this.kernel = new WasmKernel<FeatureExports>('feature-kernel', Math.ceil(bytes / PAGE));
    this.views = Array.from({ length: this.slots }, (_, k) => Buffer.from(this.kernel.buffer, this.slotAt + k * this.slotBytes, this.slotBytes));
  }

  /** Slot k's bytes (a view of the kernel's memory; read into it, then `decode`). */
  slot(k: number): Buffer {
    return this.views[k];
  }

  /**
   * Decodes the entry of `bytes` stored bytes at `offset` in slot `k` into `out` (its float32
   * values) and returns the stored bytes' checksum.
   */
  decode(k: number, offset: number, bytes: number, dtype: FeatureDtype, out: Float32Array): number {
    if (out.length !== this.entryValues) throw new RangeError(`entry decoder: out holds ${out.length} values, an entry ${this.entryValues}`);
    if (offset < 0 || offset + bytes > this.slotBytes || bytes !== this.entryValues * (dtype === 'f32' ? 4 : 2)) throw new RangeError(`entry decoder: ${bytes} bytes at ${offset} of a ${this.slotBytes}-byte slot for ${this.entryValues} ${dtype} values`);
    const sum = this.kernel.exports.decodeEntry(this.slotAt + k * this.slotBytes + offset, bytes, FEATURE_DTYPE_CODE[dtype], this.outAt) >>> 0;
    out.set(this.kernel.f32.subarray(this.outAt >>> 2, (this.outAt >>> 2) + this.entryValues));
    return sum;
  }

  /** The checksum of bytes in slot k (no decode). */
  checksum(k: number, offset: number, bytes: number): number {
    if (offset < 0 || offset + bytes > this.slotBytes) throw new RangeError(`entry decoder: ${bytes} bytes at ${offset} of a ${this.slotBytes}-byte slot`);
    return this.kernel.exports.entryChecksum(this.slotAt + k * this.slotBytes + offset, bytes) >>> 0;
  }
}

let scratch: WasmKernel<FeatureExports> | null = null;

/** The checksum of `bytes` (synchronous: writers and full checks; copies through a kernel of its own). */
export function entryChecksum(bytes: Uint8Array): number {
  const k = (scratch ??= new WasmKernel<FeatureExports>('feature-kernel', 1));
  k.ensureBytes(BASE + bytes.length);
  k.u8.set(bytes, BASE);
  return k.exports.entryChecksum(BASE, bytes.length) >>> 0;
}
