/**
 * Compute backend selection (docs/reference/design.md "Compute backends"): `auto` takes
 * `@tensorflow/tfjs-node-gpu` when it loads, else `@tensorflow/tfjs-node`, else the WebAssembly
 * backend, else plain JS; an explicit choice that cannot load is an error. The result records
 * why each earlier option was skipped, so every run can name the backend it ran on.
 *
 * Whatever the backend, training needs what tfjs-core alone does not ship: the gradient configs
 * (gradients/), and on wasm the kernel fixes of wasm-kernels.ts.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { ConfigError } from '@smolrate/core';
import { registerModelGradients } from './gradients/index.js';
import { registerWasmKernels } from './wasm-kernels.js';

const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
export type BackendName = 'tensorflow' | 'tensorflow-gpu' | 'wasm' | 'cpu';

export interface BackendInfo {
  name: BackendName;
  requested: BackendChoice;
  /** Why each option tried before `name` was skipped, in order ("tensorflow-gpu: …"). */
  fallbacks: string[];
  /** wasm: XNNPACK threads (1 under Node: tfjs-backend-wasm disables its threaded build there). */
  threads?: number;
  /** wasm: whether the SIMD binary runs. */
  simd?: boolean;
}

export function parseBackendChoice(value: string): BackendChoice {
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new ConfigError(`backend must be one of ${BACKEND_CHOICES.join(', ')}, got "${value}"`);
}

const NATIVE_PACKAGES: ReadonlyArray<{ name: 'tensorflow-gpu' | 'tensorflow'; pkg: string }> = [
  { name: 'tensorflow-gpu', pkg: '@tensorflow/tfjs-node-gpu' },
  { name: 'tensorflow', pkg: '@tensorflow/tfjs-node' },
];

/** Which native package provided the 'tensorflow' backend, once one did. */
let nativeName: 'tensorflow' | 'tensorflow-gpu' | null = null;
let wasmPathsSet = false;
const initialised = new Map<BackendChoice, Promise<BackendInfo>>();

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0].trim();
}

/** The tfjs backend registered under `name` for our @tensorflow/tfjs-core. */
function tfBackendName(name: BackendName): string {
  return name === 'tensorflow-gpu' ? 'tensorflow' : name;
}

/**
 * Loads one native package and checks that its backend landed in *our* tfjs-core: the native
 * packages bring `@tensorflow/tfjs` and with it a tfjs-core of their own version, which is only
 * usable when it is the same module instance (or at least the same version sharing the global
 * engine). Returns the reason it cannot be used, or null when the 'tensorflow' backend is active.
 */
async function tryNative(pkg: string): Promise<string | null> {
  let mod: Record<string, unknown>;
  try {
    const spec = pkg; // a variable: the packages are optional and absent at type-check time
    mod = (await import(spec)) as Record<string, unknown>;
  } catch (e) {
    const code = (e as { code?: string }).code;
    return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND' ? `${pkg} is not installed` : `${pkg} failed to load: ${firstLine(e)}`;
  }
  const theirs = typeof mod.version_core === 'string' ? mod.version_core : undefined;
  if (theirs !== undefined && theirs !== tf.version_core) {
    return `${pkg} uses @tensorflow/tfjs-core ${theirs}, not ours (${tf.version_core})`;
  }
  let backend: unknown;
  try {
    backend = tf.findBackend('tensorflow');
  } catch (e) {
    return `${pkg} loaded but its backend failed to start: ${firstLine(e)}`;
  }
  if (backend == null) return `${pkg} loaded but registered no 'tensorflow' backend with our @tensorflow/tfjs-core (a second tfjs-core copy?)`;
  try {
    if (!(await tf.setBackend('tensorflow'))) return `${pkg}: tf.setBackend('tensorflow') failed`;
  } catch (e) {
    return `${pkg}: tf.setBackend('tensorflow') failed: ${firstLine(e)}`;
  }
  return null;
}

/** Directory holding the .wasm binaries: the package's dist folder (its main entry lives there). */
export function wasmBinaryDir(): string {
  const require = createRequire(import.meta.url);
  return path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep;
}

type WasmModule = typeof import('@tensorflow/tfjs-backend-wasm');

async function tryWasm(): Promise<{ reason: string } | { threads: number; simd: boolean }> {
  // Loaded on demand: the package registers 'wasm' at a higher priority than 'cpu', so a static
  // import would change tfjs's default backend for every importer of @smolrate/model.
  let tfWasm: WasmModule;
  try {
    tfWasm = await import('@tensorflow/tfjs-backend-wasm');
  } catch (e) {
    return { reason: `@tensorflow/tfjs-backend-wasm failed to load: ${firstLine(e)}` };
  }
  try {
    if (!wasmPathsSet) {
      // Node loads the binaries from disk; point it at them explicitly so bundling or running
      // from the ESM sources (vitest) does not change where they are looked for.
      tfWasm.setWasmPaths(wasmBinaryDir());
      wasmPathsSet = true;
    }
    registerWasmKernels();
    if (!(await tf.setBackend('wasm'))) return { reason: 'the WebAssembly backend failed to initialise' };
  } catch (e) {
    return { reason: `the WebAssembly backend failed to initialise: ${firstLine(e)}` };
  }
  return { threads: tfWasm.getThreadsCount(), simd: Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) };
}

async function useCpu(): Promise<void> {
  if (!(await tf.setBackend('cpu'))) throw new ConfigError('the plain JS (cpu) backend failed to initialise');
  // tfjs-backend-cpu prints a banner recommending tfjs-node on first use; BackendInfo.fallbacks
  // already says why it was not used.
  const cpu = tf.backend() as { firstUse?: boolean };
  if ('firstUse' in cpu) cpu.firstUse = false;
}

async function select(choice: BackendChoice): Promise<BackendInfo> {
  const fallbacks: string[] = [];
  if (choice === 'auto' || choice === 'tensorflow') {
    for (const { name, pkg } of NATIVE_PACKAGES) {
      const reason = await tryNative(pkg);
      if (reason === null) {
        nativeName = name;
        return { name, requested: choice, fallbacks };
      }
      fallbacks.push(`${name}: ${reason}`);
    }
    if (choice === 'tensorflow') throw new ConfigError(`backend "tensorflow" is not available: ${fallbacks.join('; ')}`);
  }
  if (choice === 'auto' || choice === 'wasm') {
    const r = await tryWasm();
    if (!('reason' in r)) return { name: 'wasm', requested: choice, fallbacks, threads: r.threads, simd: r.simd };
    if (choice === 'wasm') throw new ConfigError(`backend "wasm" is not available: ${r.reason}`);
    fallbacks.push(`wasm: ${r.reason}`);
  }
  await useCpu();
  return { name: 'cpu', requested: choice, fallbacks };
}

/**
 * Selects and activates a backend and registers what training needs on it. Idempotent: a repeated
 * call with the same choice returns the first result (re-activating that backend if another was
 * set in between); a different choice switches backends.
 */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<BackendInfo> {
  parseBackendChoice(choice);
  let pending = initialised.get(choice);
  if (pending === undefined) {
    pending = select(choice).then((info) => {
      // After the backend: a native package's own (union) gradients take precedence.
      registerModelGradients();
      return info;
    });
    initialised.set(choice, pending);
    pending.catch(() => initialised.delete(choice));
  }
  const info = await pending;
  const active = tfBackendName(info.name);
  if (tf.getBackend() !== active) await tf.setBackend(active);
  return { ...info, fallbacks: [...info.fallbacks] };
}

/** The active backend in BackendInfo terms, or null when none is set or it is not one of ours. */
export function currentBackendName(): BackendName | null {
  const name = tf.getBackend() as string | undefined | null;
  if (name === 'tensorflow') return nativeName ?? 'tensorflow';
  if (name === 'wasm' || name === 'cpu') return name;
  return null;
}

/** One line for logs and reports: "wasm (SIMD, 1 thread) — skipped tensorflow-gpu: …; tensorflow: …". */
export function describeBackend(info: BackendInfo): string {
  const details: string[] = [];
  if (info.simd !== undefined) details.push(info.simd ? 'SIMD' : 'no SIMD');
  if (info.threads !== undefined) details.push(`${info.threads} thread${info.threads === 1 ? '' : 's'}`);
  const head = details.length > 0 ? `${info.name} (${details.join(', ')})` : info.name;
  return info.fallbacks.length > 0 ? `${head} — skipped ${info.fallbacks.join('; ')}` : head;
}
