/**
 * Bytes that the active tfjs backend allocates for tensors, measured where they are allocated
 * (the backend's `write` / `disposeData`), with an optional budget that makes an allocation throw
 * instead of failing inside the backend.
 *
 * Why not `tf.memory().numBytes`: it counts every tensor, and a reshape is a new tensor sharing
 * its input's buffer, so it overstates a forward pass's footprint by a large factor. Why a
 * budget: the WebAssembly backend's heap cannot grow past 4 GiB, and when its `malloc` fails
 * tfjs-backend-wasm 4.22 does not notice — the tensor is registered at address 0 and later ops
 * read garbage or abort the module (the whole process). Checking before the allocation turns that
 * into a MemoryBudgetError that unwinds through `tidy` like any other error, freeing what the
 * failed computation held.
 *
 * On wasm the meter also catches the failure itself: a kernel output whose `malloc` returned 0 is
 * freed and reported as a MemoryBudgetError, and host data (a new tensor from JS values) is only
 * copied in after a trial `malloc` of its size succeeded — tfjs would otherwise copy it to address
 * 0 and overwrite the module's static data. Allocations inside the C++ kernels (XNNPACK's packed
 * weights, scratch buffers) cannot be seen from here; the budget leaves room for them.
 *
 * Only the 'wasm' and 'cpu' backends allocate through `write` (their kernels' outputs go through
 * `makeOutput` / `makeTensorInfo`); tfjs-node allocates natively and is not metered.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * Largest heap the tfjs-backend-wasm 4.22 binaries can grow to (emscripten `getHeapMax()`:
 * 4 GiB − 64 KiB; wasm32 addresses).
 */
export const WASM_HEAP_MAX_BYTES = 4294901760;

/** An allocation would take the metered bytes past the budget. */
export class MemoryBudgetError extends Error {
  constructor(
    readonly requested: number,
    readonly live: number,
    readonly budget: number,
    reason = 'over the memory budget',
  ) {
    super(`allocating ${formatBytes(requested)} failed: ${reason} (${formatBytes(live)} metered in use, budget ${formatBytes(budget)})`);
    this.name = 'MemoryBudgetError';
  }
}

export function formatBytes(n: number): string {
  if (Math.abs(n) >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (Math.abs(n) >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (Math.abs(n) >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

type DataId = object;
interface AllocatingBackend {
  write(values: unknown, shape: number[], dtype: tf.DataType): DataId;
  disposeData(dataId: DataId, force?: boolean): boolean;
}
/** The parts of tfjs-backend-wasm's BackendWasm the heap checks use. */
interface WasmInternals {
  wasm: { _malloc(n: number): number; _free(p: number): void; HEAPU8: Uint8Array };
  dataIdMap: { get(id: DataId): { memoryOffset: number | null } | undefined };
}

function bytesOf(shape: readonly number[], dtype: tf.DataType): number {
  if (dtype === 'string' || dtype === 'complex64') return 0; // strings are not heap buffers; complex is counted by its parts
  return tf.util.sizeFromShape(shape as number[]) * tf.util.bytesPerElement(dtype);
}

export interface MemoryMeterOptions {
  /**
   * Bytes the metered allocations may reach (live, counted from install); an allocation beyond
   * it throws MemoryBudgetError. Default: no budget.
   */
  budget?: number;
}

/**
 * Counts live and peak bytes allocated on the active backend since `install` (tensors that
 * existed before are not counted, and freeing them is not subtracted).
 */
export class MemoryMeter {
  private readonly sizes = new WeakMap<DataId, number>();
  private liveBytes = 0;
  private peakBytes = 0;
  private restore: (() => void) | null = null;
  budget: number | undefined;

  private constructor(options: MemoryMeterOptions) {
    this.budget = options.budget;
  }

  /** Meters the active backend, or returns null when it does not allocate through `write` (tfjs-node). */
  static install(options: MemoryMeterOptions = {}): MemoryMeter | null {
    const name = tf.getBackend();
    if (name !== 'wasm' && name !== 'cpu') return null;
    const backend = tf.backend() as unknown as AllocatingBackend;
    const meter = new MemoryMeter(options);
    const wasm = name === 'wasm' ? (backend as unknown as WasmInternals) : null;
    const exhausted = (bytes: number) => new MemoryBudgetError(bytes, meter.liveBytes, meter.budget ?? wasm!.wasm.HEAPU8.length, 'the wasm heap is exhausted');
    // Instance properties shadow the prototype methods; deleting them restores the originals.
    const { write, disposeData } = Object.getPrototypeOf(backend) as AllocatingBackend;
    backend.write = function (this: AllocatingBackend, values, shape, dtype) {
      const bytes = bytesOf(shape, dtype);
      if (meter.budget !== undefined && bytes > 0 && meter.liveBytes + bytes > meter.budget) {
        throw new MemoryBudgetError(bytes, meter.liveBytes, meter.budget);
      }
      if (wasm && values != null && bytes > 0) {
        const trial = wasm.wasm._malloc(bytes) >>> 0;
        if (trial === 0) throw exhausted(bytes);
        wasm.wasm._free(trial);
      }
      const id = write.call(this, values, shape, dtype);
      if (wasm && bytes > 0 && wasm.dataIdMap.get(id)?.memoryOffset === 0) {
        disposeData.call(this, id, true);
        throw exhausted(bytes);
      }
      if (bytes > 0) {
        meter.sizes.set(id, bytes);
        meter.liveBytes += bytes;
        if (meter.liveBytes > meter.peakBytes) meter.peakBytes = meter.liveBytes;
      }
      return id;
    };
    backend.disposeData = function (this: AllocatingBackend, dataId, force) {
      const released = disposeData.call(this, dataId, force);
      const bytes = meter.sizes.get(dataId);
      if (released && bytes !== undefined) {
        meter.sizes.delete(dataId);
        meter.liveBytes -= bytes;
      }
      return released;
    };
    meter.restore = () => {
      delete (backend as Partial<AllocatingBackend>).write;
      delete (backend as Partial<AllocatingBackend>).disposeData;
    };
    return meter;
  }

  /** Bytes allocated since install and not yet freed. */
  get live(): number {
    return this.liveBytes;
  }

  /** Highest `live` since install or the last `resetPeak`. */
  get peak(): number {
    return this.peakBytes;
  }

  resetPeak(): void {
    this.peakBytes = this.liveBytes;
  }

  /** Peak bytes above the current live level while `f` runs (the budget still applies). */
  measure<T>(f: () => T): { result: T; peak: number } {
    const before = this.liveBytes;
    this.resetPeak();
    const result = f();
    return { result, peak: this.peakBytes - before };
  }

  uninstall(): void {
    this.restore?.();
    this.restore = null;
  }
}
