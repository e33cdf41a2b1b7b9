#!/usr/bin/env node
// Builds the trainer's WebAssembly kernels from their AssemblyScript sources:
//   packages/trainer/assembly/NAME.ts → packages/trainer/wasm/NAME.wasm
// for NAME in KERNELS (adamw-kernel: the AdamW8bit update; feature-kernel: the feature cache's entry check and decode; reduce-kernel: the collective's mean).
// Deterministic (same asc version from package-lock → same bytes); the trainer's kernel specs
// rebuild into a temp folder and check the committed binaries are byte-identical.
// Usage: node tools/build-wasm.mjs [--out-dir DIR] [--wat]
import { fileURLToPath } from 'node:url';

const root = (p) => fileURLToPath(new URL(`../${p}`, import.meta.url));

/** The asc flags of the committed binary (exported for the spec). */
export const ASC_FLAGS = [
  '-O3',
  '--noAssert',
  '--enable',
  'simd',
  '--runtime',
  'stub',
  '--importMemory',
  '--noExportMemory',
  '--initialMemory',
  '1',
];

export const KERNELS = ['adamw-kernel', 'feature-kernel', 'reduce-kernel'];
export const WASM_DIR = root('packages/trainer/wasm');

/** Compiles kernel `name` to `out` (and optionally its text form to `wat`); throws on a compile error. */
export async function buildKernel(name, out, wat) {
  const asc = await import('assemblyscript/asc');
  const args = [root(`packages/trainer/assembly/${name}.ts`), '--outFile', out, ...(wat ? ['--textFile', wat] : []), ...ASC_FLAGS];
  let log = '';
  const sink = { write: (s) => ((log += String(s)), true) };
  const { error } = await asc.main(args, { stdout: sink, stderr: sink });
  if (error) throw new Error(`asc failed: ${error.message}\n${log}`);
  if (log.trim()) process.stderr.write(log); // warnings
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const flag = (name) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const dir = flag('--out-dir') ?? WASM_DIR;
  for (const name of KERNELS) {
    const out = await buildKernel(name, `${dir}/${name}.wasm`, argv.includes('--wat') ? `${dir}/${name}.wat` : undefined);
    console.log(`wrote ${out}`);
  }
}
