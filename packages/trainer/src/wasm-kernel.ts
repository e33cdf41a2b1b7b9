/**
 * Loading the trainer's WebAssembly kernels (packages/trainer/wasm/NAME.wasm, built from
 * ../assembly/NAME.ts by `npm run build:wasm`): each gets its own linear memory, which the JS side
 * fills and reads through typed-array views that are renewed when the memory grows.
 */
import { readFileSync } from 'node:fs';

// The slice of the WebAssembly JS API used here (the repo's lib settings have no DOM types).
export interface WasmGlobal {
  readonly value: unknown;
}
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Memory: new (descriptor: { initial: number; maximum?: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { readonly exports: unknown };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

const PAGE = 65536;

/** A kernel binary's location (next to src/ and dist/ alike). */
export const kernelUrl = (name: string): URL => new URL(`../wasm/${name}.wasm`, import.meta.url);

/** An instantiated kernel and its memory, with views that follow the memory's growth. */
export class WasmKernel<E> {
  readonly exports: E;
  readonly name: string;
  private readonly memory: WasmMemory;
  f32: Float32Array;
  u8: Uint8Array;

  constructor(name: string, initialPages = 16) {
    this.name = name;
    this.memory = new wasm.Memory({ initial: initialPages });
    this.exports = new wasm.Instance(new wasm.Module(readFileSync(kernelUrl(name))), { env: { memory: this.memory } }).exports as E;
    this.f32 = new Float32Array(this.memory.buffer);
    this.u8 = new Uint8Array(this.memory.buffer);
  }

  get buffer(): ArrayBuffer {
    return this.memory.buffer;
  }

  /** Grows the memory to at least `bytes` (the views are renewed). */
  ensureBytes(bytes: number): void {
    if (bytes <= this.memory.buffer.byteLength) return;
    const pages = Math.ceil((bytes - this.memory.buffer.byteLength) / PAGE);
    try {
      this.memory.grow(pages);
    } catch (e) {
      throw new RangeError(`${this.name}: cannot grow wasm memory to ${bytes} bytes (${String(e)})`);
    }
    this.f32 = new Float32Array(this.memory.buffer);
    this.u8 = new Uint8Array(this.memory.buffer);
  }
}

/**
 * A buffer of `bytes` bytes (rounded up to 64 KiB pages) whose address is page-aligned, as O_DIRECT
 * reads need: the memory of a WebAssembly instance is mapped whole (a Buffer's address is unknown).
 */
export function pageAlignedBuffer(bytes: number): Buffer {
  return Buffer.from(new wasm.Memory({ initial: Math.max(1, Math.ceil(bytes / PAGE)) }).buffer);
}
