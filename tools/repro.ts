/**
 * `nx run pipeline:repro` (CI calls it): reproducibility checks of the whole pipeline on a small
 * generated sample. Each "pipeline" is synth → build-shards (2 BullMQ workers) → trainer:launch
 * (tiny preset, CPU) → eval report, every stage a real CLI run in its own folder.
 *
 *   A  seed 1, 2 training workers
 *   B  seed 1 again, from scratch            → every hash and metric equal to A's
 *                                              (each run works in the same <out>/work folder —
 *                                              the manifest records its input URIs — then moves)
 *   C  seed 2                                → shards, manifest, weights and metrics differ from A's
 *   D  A's shards, 1 training worker, the same global batch
 *                                            → weights equal A's within the stated tolerance
 *
 * Prints a table of the checks, writes <out>/repro.json, exits 1 when a check fails. Options:
 * --items N (400), --steps N (24), --global-batch N (16), --out DIR (a temporary folder, removed
 * on success unless --keep), --tolerance X (max |Δw| between A and D, default 2e-3),
 * --rel-tolerance X (‖Δw‖₂ / ‖w‖₂ between A and D, default 1e-3), --feature-dtype bf16|f16|f32 (the
 * trainer's default, bf16; f32 trains on the encoder's exact features).
 *
 * Why A and D are not bit-identical: one worker sums a micro-batch's gradient in another order
 * than two workers' mean of halves (float32 rounding, ~1e-7 relative), and the 8-bit optimizer's
 * block quantisation occasionally turns such a difference into one code step of a moment. Over
 * 24 steps at lr 3e-3 this measured max |Δw| 5.9e-4 and relative L2 6.4e-5, with equal val PLCC
 * to 4 decimals. Real differences measure far above the limits (relative L2 to A): one step
 * fewer 5.2e-3, a 10 % higher learning rate 2.4e-2, half the global batch 1.0e-1.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { flagBool, flagNumber, flagString, formatDuration, parseArgs } from '@smolrate/core';
import { readSafetensorsFile } from '@smolrate/model';
import { ensureLocalRedis } from '../infra/redis-install.js';

const args = parseArgs(process.argv.slice(2), ['keep']);
const items = flagNumber(args, 'items', 400)!;
const steps = flagNumber(args, 'steps', 24)!;
const globalBatch = flagNumber(args, 'globalBatch', 16)!;
const tolerance = flagNumber(args, 'tolerance', 2e-3)!;
const relTolerance = flagNumber(args, 'relTolerance', 1e-3)!;
const keep = flagBool(args, 'keep');
const featureDtype = flagString(args, 'featureDtype');
const out = resolve(flagString(args, 'out') ?? mkdtempSync(join(tmpdir(), 'smolrate-repro-')));
const root = fileURLToPath(new URL('..', import.meta.url));
const bin = {
  dataPrep: join(root, 'packages/data-prep/bin/smolrate-data-prep.js'),
  trainer: join(root, 'packages/trainer/bin/smolrate-trainer.js'),
  eval: join(root, 'apps/eval/bin/smolrate-eval.js'),
};

/** Runs a CLI; its output goes to <log> (shown when it fails). */
async function run(argv: string[], log: string): Promise<void> {
  const { createWriteStream } = await import('node:fs');
  const sink = createWriteStream(log, { flags: 'a' });
  await new Promise<void>((res, rej) => sink.once('open', () => res()).once('error', rej));
  const code = await new Promise<number>((res, rej) => {
    const child = spawn('node', argv, { cwd: root, stdio: ['ignore', sink, sink], env: { ...process.env, SMOLRATE_LOG_LEVEL: process.env.SMOLRATE_LOG_LEVEL ?? 'warn' } });
    child.on('error', rej);
    child.on('exit', (c, signal) => res(c ?? (signal ? 128 : 1)));
  });
  await new Promise<void>((res) => sink.end(res));
  if (code !== 0) {
    const text = await readFile(log, 'utf8');
    throw new Error(`${argv.slice(0, 2).map((a) => relative(root, a)).join(' ')} exited with ${code}; last output:\n${text.split('\n').slice(-25).join('\n')}`);
  }
}

const sha256 = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

/** sha256 over the sorted (relative path, file sha256) list of a folder. */
async function treeHash(dir: string): Promise<{ hash: string; files: number }> {
  const entries: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else entries.push(`${relative(dir, p)}\t${sha256(await readFile(p))}`);
    }
  };
  await walk(dir);
  entries.sort();
  return { hash: sha256(entries.join('\n')), files: entries.length };
}

/** Fields of metrics.jsonl that measure the machine, not the trajectory: durations end in `Ms`. */
const TIMING_FIELDS = new Set(['time', 'samplesPerSec', 'allreduceShare']);
const isTiming = (k: string) => TIMING_FIELDS.has(k) || k.endsWith('Ms');

interface Fingerprint {
  shards: string;
  shardFiles: number;
  manifest: string;
  weights: string;
  optimizer: string;
  /** Hash of metrics.jsonl without timing fields: every step's loss, lr, grad norm; every validation. */
  trajectory: string;
  finalLoss: number;
  val: { rmse: number; plcc: number; srcc: number };
  report: { rmse: number; plcc: number; srcc: number };
}

async function checkpointDir(run: string): Promise<string> {
  const name = (await readFile(join(run, 'checkpoints', 'latest'), 'utf8')).trim();
  return join(run, 'checkpoints', name);
}

async function fingerprint(dir: string, shardsDir: string): Promise<Fingerprint> {
  const run = join(dir, 'run');
  const ckpt = await checkpointDir(run);
  const rows = (await readFile(join(run, 'metrics.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const trajectory = rows.map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).filter(([k]) => !isTiming(k)))));
  const train = rows.filter((r) => r.kind === 'train');
  const val = rows.filter((r) => r.kind === 'val').at(-1) as { rmse: number; plcc: number; srcc: number } | undefined;
  const report = JSON.parse(await readFile(join(dir, 'report', 'report.json'), 'utf8')) as { metrics: { rmse: number; plcc: number; srcc: number } };
  const tree = await treeHash(shardsDir);
  return {
    shards: tree.hash,
    shardFiles: tree.files,
    manifest: sha256(await readFile(join(shardsDir, 'manifest.json'))),
    weights: sha256(await readFile(join(ckpt, 'model.safetensors'))),
    optimizer: sha256(await readFile(join(ckpt, 'optimizer.bin'))),
    trajectory: sha256(trajectory.join('\n')),
    finalLoss: Number(train.at(-1)?.loss),
    val: { rmse: val?.rmse ?? NaN, plcc: val?.plcc ?? NaN, srcc: val?.srcc ?? NaN },
    report: { rmse: report.metrics.rmse, plcc: report.metrics.plcc, srcc: report.metrics.srcc },
  };
}

interface PipelineOptions {
  name: string;
  seed: number;
  trainWorkers: number;
  /** Reuse another pipeline's shards instead of building them. */
  shardsFrom?: string;
}

async function pipeline(o: PipelineOptions, redisUrl: string): Promise<{ dir: string; shards: string; seconds: number; print: Fingerprint }> {
  const t0 = Date.now();
  // Every pipeline runs in the same folder (the manifest records its input URIs), then moves.
  const dir = join(out, 'work');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const log = join(dir, 'log.txt');
  const seed = String(o.seed);
  let shards = o.shardsFrom;
  if (shards === undefined) {
    const data = join(dir, 'data');
    shards = join(dir, 'shards');
    await run([bin.dataPrep, 'synth', '--items', String(items), '--out', data, '--seed', seed], log);
    const rewrite = JSON.stringify({ 'https://m.media-amazon.com/images/I/': pathToFileURL(join(data, 'images')).href + '/' });
    await run([bin.dataPrep, 'build-shards', data, '--out', shards, '--workers', '2', '--redis', redisUrl, '--seed', seed, '--quiet',
      '--selection.val-size', String(Math.max(40, Math.round(items * 0.1))), '--images.rewrite', rewrite], log);
  }
  const runDir = join(dir, 'run');
  await run([bin.trainer, 'launch', '--gpus', String(o.trainWorkers), '--redis', redisUrl, '--data', shards, '--run', runDir, '--preset', 'tiny', '--seed', seed,
    '--global-batch', String(globalBatch), '--epochs', '50', '--max-steps', String(steps), '--eval-every', String(Math.max(1, Math.floor(steps / 2))), '--peak-lr', '3e-3',
    ...(featureDtype !== undefined ? ['--feature-dtype', featureDtype] : [])], log);
  await run([bin.eval, 'report', '--checkpoint', join(runDir, 'checkpoints', 'latest'), '--data', shards, '--split', 'val', '--run', runDir, '--out', join(dir, 'report')], log);
  const print = await fingerprint(dir, shards);
  const final = join(out, o.name);
  await rename(dir, final);
  return { dir: final, shards: o.shardsFrom ?? join(final, 'shards'), seconds: (Date.now() - t0) / 1000, print };
}

/** Largest |a − b| over every tensor of two safetensors files (names and shapes must agree). */
async function weightDistance(a: string, b: string): Promise<{ maxAbs: number; relL2: number; tensors: number }> {
  const [x, y] = await Promise.all([readSafetensorsFile(a), readSafetensorsFile(b)]);
  let maxAbs = 0;
  let diff2 = 0;
  let norm2 = 0;
  for (const [name, t] of x.tensors) {
    const u = y.tensors.get(name);
    if (!u || u.data.length !== t.data.length) throw new Error(`weights differ in structure at ${name}`);
    for (let i = 0; i < t.data.length; i++) {
      const d = Math.abs(t.data[i]! - u.data[i]!);
      if (d > maxAbs) maxAbs = d;
      diff2 += d * d;
      norm2 += t.data[i]! * t.data[i]!;
    }
  }
  if (x.tensors.size !== y.tensors.size) throw new Error('weights differ in tensor count');
  return { maxAbs, relL2: Math.sqrt(diff2 / Math.max(norm2, 1e-30)), tensors: x.tensors.size };
}

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

async function main(): Promise<number> {
  const t0 = Date.now();
  await mkdir(out, { recursive: true });
  process.stdout.write(`repro: ${items} items, ${steps} steps of global batch ${globalBatch}, in ${out}\n`);
  const redis = await ensureLocalRedis('repro');
  const checks: Check[] = [];
  const timings: Record<string, number> = {};
  try {
    const say = (s: string) => process.stdout.write(`  ${s}\n`);
    say('A: seed 1, 2 workers …');
    const a = await pipeline({ name: 'A', seed: 1, trainWorkers: 2 }, redis.url);
    timings.A = a.seconds;
    say(`A done in ${formatDuration(a.seconds)}; B: seed 1 again, from scratch …`);
    const b = await pipeline({ name: 'B', seed: 1, trainWorkers: 2 }, redis.url);
    timings.B = b.seconds;
    say(`B done in ${formatDuration(b.seconds)}; C: seed 2 …`);
    const c = await pipeline({ name: 'C', seed: 2, trainWorkers: 2 }, redis.url);
    timings.C = c.seconds;
    say(`C done in ${formatDuration(c.seconds)}; D: A's shards, 1 worker …`);
    const d = await pipeline({ name: 'D', seed: 1, trainWorkers: 1, shardsFrom: a.shards }, redis.url);
    timings.D = d.seconds;
    say(`D done in ${formatDuration(d.seconds)}`);

    const same = (what: string, x: unknown, y: unknown) => checks.push({ name: `same seed: ${what} identical`, ok: JSON.stringify(x) === JSON.stringify(y), detail: short(x) });
    same(`shards (${a.print.shardFiles} files: parquet, manifest, rejects)`, a.print.shards, b.print.shards);
    same('manifest.json', a.print.manifest, b.print.manifest);
    same('final weights (model.safetensors)', a.print.weights, b.print.weights);
    same('optimizer state (optimizer.bin)', a.print.optimizer, b.print.optimizer);
    same('training trajectory (loss, lr, grad norm per step; validations)', a.print.trajectory, b.print.trajectory);
    same('eval report metrics (RMSE, PLCC, SRCC)', a.print.report, b.print.report);

    const differ = (what: string, x: unknown, y: unknown) => checks.push({ name: `seed 2: ${what} differ`, ok: JSON.stringify(x) !== JSON.stringify(y), detail: `${short(x)} vs ${short(y)}` });
    differ('shards', a.print.shards, c.print.shards);
    differ('manifest.json', a.print.manifest, c.print.manifest);
    differ('final weights', a.print.weights, c.print.weights);
    differ('eval report metrics', a.print.report, c.print.report);

    const dist = await weightDistance(join(await checkpointDir(join(a.dir, 'run')), 'model.safetensors'), join(await checkpointDir(join(d.dir, 'run')), 'model.safetensors'));
    checks.push({
      name: `1 vs 2 workers, global batch ${globalBatch}: weights within max |Δw| ≤ ${tolerance} and relative L2 ≤ ${relTolerance}`,
      ok: dist.maxAbs <= tolerance && dist.relL2 <= relTolerance,
      detail: `max |Δw| ${dist.maxAbs.toExponential(2)}, relative L2 ${dist.relL2.toExponential(2)} over ${dist.tensors} tensors; val PLCC ${a.print.val.plcc.toFixed(4)} vs ${d.print.val.plcc.toFixed(4)}`,
    });

    await writeFile(join(out, 'repro.json'), JSON.stringify({ items, steps, globalBatch, tolerance, relTolerance, timings, runs: { A: a.print, B: b.print, C: c.print, D: d.print }, weightDistanceAD: dist, checks }, null, 2) + '\n');
  } catch (e) {
    checks.push({ name: 'pipeline ran', ok: false, detail: (e as Error).message });
  } finally {
    await redis.stop();
  }

  process.stdout.write('\nreproducibility checks\n');
  for (const ch of checks) process.stdout.write(`  ${ch.ok ? 'PASS' : 'FAIL'}  ${ch.name}\n        ${ch.detail}\n`);
  const failed = checks.filter((ch) => !ch.ok).length;
  process.stdout.write(`\n${checks.length - failed} passed, ${failed} failed in ${formatDuration((Date.now() - t0) / 1000)} (${Object.entries(timings).map(([k, v]) => `${k} ${formatDuration(v)}`).join(', ')})\n`);
  if (failed === 0 && !keep) rmSync(out, { recursive: true, force: true });
  else process.stdout.write(`folders kept in ${out}\n`);
  return failed === 0 ? 0 : 1;
}

function short(x: unknown): string {
  return typeof x === 'string' ? x.slice(0, 16) : JSON.stringify(x);
}

main().then((c) => (process.exitCode = c), (e) => {
  process.stderr.write(`repro: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
