#!/usr/bin/env node
// Builds the AdamW8bit WebAssembly kernel from its AssemblyScript source:
//   packages/trainer/assembly/adamw-kernel.ts → packages/trainer/wasm/adamw-kernel.wasm
// Deterministic (same asc version from package-lock → same bytes); the trainer's kernel spec
// rebuilds into a temp file and checks the committed binary is byte-identical.
// Usage: node tools/build-wasm.mjs [--out FILE] [--wat FILE]
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

export const KERNEL_SOURCE = root('packages/trainer/assembly/adamw-kernel.ts');
export const KERNEL_WASM = root('packages/trainer/wasm/adamw-kernel.wasm');

/** Compiles the kernel to `out` (and optionally its text form to `wat`); throws on a compile error. */
export async function buildKernel(out = KERNEL_WASM, wat) {
  const asc = await import('assemblyscript/asc');
  const args = [KERNEL_SOURCE, '--outFile', out, ...(wat ? ['--textFile', wat] : []), ...ASC_FLAGS];
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
  const out = await buildKernel(flag('--out') ?? KERNEL_WASM, flag('--wat'));
  console.log(`wrote ${out}`);
}
