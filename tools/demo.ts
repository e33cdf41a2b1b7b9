/**
 * `npm run demo`: the main job end to end on a generated sample —
 *   synthetic Amazon-format metadata + images → shards (2 BullMQ workers) → 4-worker training of
 *   the tiny preset on the CPU → evaluation report.
 * Every stage is a real CLI run (the same commands `nx run …` runs); stages whose package has not
 * been built (no dist/) are named and skipped. Options: --items N (3000), --out DIR (demo-out), --s3 (shards
 * to a local S3-compatible server instead of a folder), --seed S, --epochs E (4), --feature-dtype
 * bf16|f16|f32 (the trainer's default, bf16), --keep (reuse existing stages).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs, flagNumber, flagString, flagBool, formatDuration } from '@smolrate/core';
import { ensureLocalRedis } from '../infra/redis-install.js';
import { startS3Server } from '../infra/s3-server.js';

const args = parseArgs(process.argv.slice(2), ['s3', 'keep']);
const items = flagNumber(args, 'items', 3000)!;
const seed = flagNumber(args, 'seed', 1)!;
const epochs = flagNumber(args, 'epochs', 4)!;
const out = resolve(flagString(args, 'out', 'demo-out')!);
const useS3 = flagBool(args, 's3');
const featureDtype = flagString(args, 'featureDtype');
const root = fileURLToPath(new URL('..', import.meta.url));

interface Stage {
  name: string;
  seconds: number;
  status: 'ok' | 'skipped' | 'failed';
  note?: string;
}
const stages: Stage[] = [];

function bin(pkg: string, name: string): string | null {
  const dist = join(root, pkg, 'dist', 'cli.js');
  return existsSync(dist) ? join(root, pkg, 'bin', `${name}.js`) : null;
}

function run(cmd: string, argv: string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, argv, { stdio: 'inherit', env: { ...process.env, ...env }, cwd: root });
    child.on('error', rej);
    child.on('exit', (code, signal) => res(code ?? (signal ? 128 : 1)));
  });
}

async function stage(name: string, fn: () => Promise<string | void>, available = true, missing = ''): Promise<boolean> {
  const t0 = Date.now();
  if (!available) {
    stages.push({ name, seconds: 0, status: 'skipped', note: missing });
    process.stdout.write(`\n== ${name}: SKIPPED — ${missing}\n`);
    return false;
  }
  process.stdout.write(`\n== ${name}\n`);
  try {
    const note = await fn();
    stages.push({ name, seconds: (Date.now() - t0) / 1000, status: 'ok', note: note || undefined });
    return true;
  } catch (e) {
    stages.push({ name, seconds: (Date.now() - t0) / 1000, status: 'failed', note: (e as Error).message });
    throw e;
  }
}

async function main(): Promise<number> {
  const t0 = Date.now();
  if (!flagBool(args, 'keep')) rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const data = join(out, 'data');
  const runDir = join(out, 'run');
  const reportDir = join(out, 'report');

  const redis = await ensureLocalRedis('demo');
  const s3 = useS3 ? await startS3Server({ buckets: ['smolrate-demo'] }) : null;
  const s3Env: NodeJS.ProcessEnv = s3
    ? { AWS_ENDPOINT_URL_S3: s3.endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', SMOLRATE_S3_FORCE_PATH_STYLE: 'true' }
    : {};
  const shards = s3 ? 's3://smolrate-demo/shards' : join(out, 'shards');
  const env = { REDIS_URL: redis.url, ...s3Env };
  let code = 0;
  try {
    const dataPrep = bin('packages/data-prep', 'smolrate-data-prep');
    const trainer = bin('packages/trainer', 'smolrate-trainer');
    const evalBin = bin('apps/eval', 'smolrate-eval');

    await stage('synthetic dataset', async () => {
      const c = await run('node', [dataPrep!, 'synth', '--items', String(items), '--out', data, '--seed', String(seed)]);
      if (c !== 0) throw new Error(`synth exited with ${c}`);
    }, dataPrep !== null, 'data-prep is not built (no packages/data-prep/dist; run npm run build)');

    await stage('shards (2 BullMQ workers)', async () => {
      const rewrite = JSON.stringify({ 'https://m.media-amazon.com/images/I/': pathToFileURL(join(data, 'images')).href + '/' });
      const c = await run('node', [dataPrep!, 'build-shards', data, '--out', shards, '--workers', '2', '--seed', String(seed),
        '--selection.val-size', String(Math.max(100, Math.round(items * 0.1))), '--images.rewrite', rewrite], env);
      if (c !== 0) throw new Error(`build-shards exited with ${c}`);
    }, dataPrep !== null, 'data-prep is not built (no packages/data-prep/dist; run npm run build)');

    await stage('training (trainer:launch --gpus 4, tiny preset, CPU)', async () => {
      // The tiny preset trains from a random init, so it takes a from-scratch learning rate
      // (the paper's 4e-4 is for fine-tuning the pretrained 256M model); docs/quickstart.md.
      const c = await run('node', [trainer!, 'launch', '--gpus', '4', '--redis', redis.url, '--data', shards, '--run', runDir, '--preset', 'tiny', '--seed', String(seed),
        '--global-batch', '32', '--epochs', String(epochs), '--peak-lr', '3e-3', ...(featureDtype !== undefined ? ['--feature-dtype', featureDtype] : [])], env);
      if (c !== 0) throw new Error(`trainer exited with ${c}`);
    }, trainer !== null, 'the trainer is not built (no packages/trainer/dist; run npm run build)');

    await stage('evaluation report', async () => {
      const c = await run('node', [evalBin!, 'report', '--checkpoint', join(runDir, 'checkpoints', 'best'), '--data', shards, '--split', 'val', '--run', runDir, '--out', reportDir], env);
      if (c !== 0) throw new Error(`eval exited with ${c}`);
    }, evalBin !== null && existsSync(join(runDir, 'checkpoints')), 'the eval app is not built (no apps/eval/dist) or training left no checkpoint');
  } catch (e) {
    process.stderr.write(`demo: ${(e as Error).message}\n`);
    code = 1;
  } finally {
    await s3?.stop();
    await redis.stop();
  }

  process.stdout.write('\n== demo summary\n');
  for (const s of stages) {
    process.stdout.write(`  ${s.status.padEnd(7)} ${s.name.padEnd(52)} ${s.status === 'skipped' ? '' : formatDuration(s.seconds).padStart(6)}${s.note ? '  ' + s.note : ''}\n`);
  }
  const reportJson = join(reportDir, 'report.json');
  if (existsSync(reportJson)) {
    const r = JSON.parse(readFileSync(reportJson, 'utf8'));
    const m = r.metrics ?? {};
    process.stdout.write(`\nvalidation: RMSE ${m.rmse?.toFixed?.(4)}  PLCC ${m.plcc?.toFixed?.(4)}  SRCC ${m.srcc?.toFixed?.(4)}\n`);
    if (r.efficiency?.ces !== undefined) process.stdout.write(`CES ${r.efficiency.ces.toFixed(4)} (${r.efficiency.convention ?? ''})\n`);
    process.stdout.write(`report: ${join(reportDir, 'report.html')}\n`);
  }
  process.stdout.write(`total ${formatDuration((Date.now() - t0) / 1000)}\n`);
  return code;
}

main().then((c) => (process.exitCode = c), (e) => {
  process.stderr.write(`demo: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
