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
const alignTo = (n: number, a: number) => Math.ceil(n / a) * a;
/** Alignment of direct reads (O_DIRECT: address, offset and length in whole logical blocks; 4096 covers the usual ones). */
export const DIRECT_ALIGN = 4096;
/** A slot's room past slotBytes: an aligned superset adds up to DIRECT_ALIGN − 1 bytes at each end. */
const DIRECT_SLACK = 2 * DIRECT_ALIGN;

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
  /** Bytes from one slot's start to the next's (slotBytes + DIRECT_SLACK, 4096-aligned). */
  readonly slotStride: number;
  private readonly views: Buffer[];
  /** Output areas: float32 arrays in the kernel's memory, which `decode` writes straight into. */
  private readonly areas: Float32Array[];
  private areasGiven = 0;

  /**
   * `slots` read buffers of `slotBytes` each, and a decode area of `entryValues` float32 values.
   * Each slot starts on a 4096-byte boundary of the kernel's memory (whose base is page-aligned)
   * and has DIRECT_SLACK bytes past `slotBytes`, so a direct (O_DIRECT) read of the aligned
   * superset of any range of up to `slotBytes` fits in it (feature-cache.ts readRange).
   *
   * `outputs` areas of `outputValues` float32 values each follow: `output` hands them out (once
   * each) as batch buffers, and an entry decoded into one is written there by the kernel directly,
   * without the copy out of the decode area (which cost about as much as the decode).
   */
  constructor(o: { slots: number; slotBytes: number; entryValues: number; outputs?: number; outputValues?: number }) {
    this.slots = o.slots;
    this.slotBytes = o.slotBytes;
    this.entryValues = o.entryValues;
    this.outAt = BASE;
    this.slotStride = alignTo(this.slotBytes + DIRECT_SLACK, DIRECT_ALIGN);
    this.slotAt = alignTo(this.outAt + 4 * o.entryValues, DIRECT_ALIGN);
    const outputs = o.outputs ?? 0;
    const outputValues = o.outputValues ?? 0;
    const areasAt = this.slotAt + this.slots * this.slotStride;
    const areaStride = alignTo(4 * outputValues, 64);
    const bytes = areasAt + outputs * areaStride;
    this.kernel = new WasmKernel<FeatureExports>('feature-kernel', Math.ceil(bytes / PAGE));
    this.views = Array.from({ length: this.slots }, (_, k) => Buffer.from(this.kernel.buffer, this.slotAt + k * this.slotStride, this.slotStride));
    this.areas = Array.from({ length: outputs }, (_, i) => new Float32Array(this.kernel.buffer, areasAt + i * areaStride, outputValues));
  }

  /**
   * A not yet given output area of `values` float32 values, or null (none left, or another size).
   * The caller owns it for good: it is never handed out again, and stays valid with the decoder.
   */
  output(values: number): Float32Array | null {
    const area = this.areas[this.areasGiven];
    if (area === undefined || area.length !== values) return null;
    this.areasGiven++;
    return area;
  }

  /** Slot k's bytes, slotBytes + DIRECT_SLACK of them (a view of the kernel's memory, 4096-aligned; read into it, then `decode`). */
  slot(k: number): Buffer {
    return this.views[k];
  }

  /**
   * Decodes the entry of `bytes` stored bytes at `offset` in slot `k` into `out` (its float32
   * values) and returns the stored bytes' checksum. `out` inside an output area is written by the
   * kernel; any other array receives a copy of the decode area.
   */
  decode(k: number, offset: number, bytes: number, dtype: FeatureDtype, out: Float32Array): number {
    if (out.length !== this.entryValues) throw new RangeError(`entry decoder: out holds ${out.length} values, an entry ${this.entryValues}`);
    if (offset < 0 || offset + bytes > this.slotStride || bytes !== this.entryValues * (dtype === 'f32' ? 4 : 2)) throw new RangeError(`entry decoder: ${bytes} bytes at ${offset} of a ${this.slotStride}-byte slot for ${this.entryValues} ${dtype} values`);
    const src = this.slotAt + k * this.slotStride + offset;
    if (out.buffer === this.kernel.buffer) {
      if (out.byteOffset < this.slotAt + this.slots * this.slotStride) throw new RangeError('entry decoder: out overlaps the read slots');
      return this.kernel.exports.decodeEntry(src, bytes, FEATURE_DTYPE_CODE[dtype], out.byteOffset) >>> 0;
    }
    const sum = this.kernel.exports.decodeEntry(src, bytes, FEATURE_DTYPE_CODE[dtype], this.outAt) >>> 0;
    out.set(this.kernel.f32.subarray(this.outAt >>> 2, (this.outAt >>> 2) + this.entryValues));
    return sum;
  }

  /** The checksum of bytes in slot k (no decode). */
  checksum(k: number, offset: number, bytes: number): number {
    if (offset < 0 || offset + bytes > this.slotStride) throw new RangeError(`entry decoder: ${bytes} bytes at ${offset} of a ${this.slotStride}-byte slot`);
    return this.kernel.exports.entryChecksum(this.slotAt + k * this.slotStride + offset, bytes) >>> 0;
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
