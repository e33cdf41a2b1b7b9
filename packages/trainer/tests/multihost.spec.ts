/**
 * Two "hosts" for real: two network namespaces joined by a veth pair, each with its own address,
 * Redis in the first. `launch --nnodes 2` runs one rank in each; the TCP data plane binds
 * 0.0.0.0 on a port range and advertises the namespace's address. The result must be the bytes
 * of the same 2-rank run on one host. Needs root and iproute2 (`ip netns`), as CI has; skipped
 * elsewhere.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openStore } from '@smolrate/core';
import { findRedisServer } from '@smolrate/core/redis-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveTrainerConfig } from '../src/config.js';
import { launch } from '../src/launch.js';
import { writeLearnableShards } from './learnable-shards.js';

const tag = randomBytes(2).toString('hex');
const ns = [`smr${tag}a`, `smr${tag}b`];
const net = `10.213.${1 + (parseInt(tag, 16) % 250)}`;
const ip = (r: number) => `${net}.${r + 1}`;
const sh = (args: string[]) => spawnSync('ip', args, { encoding: 'utf8' });

/** Makes the two namespaces; false (and a reason) where this machine cannot. */
function makeHosts(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  if (sh(['-V']).status !== 0) return 'no iproute2';
  const steps = [
    ['netns', 'add', ns[0]],
    ['netns', 'add', ns[1]],
    ['link', 'add', `${ns[0]}v`, 'type', 'veth', 'peer', 'name', `${ns[1]}v`],
    ['link', 'set', `${ns[0]}v`, 'netns', ns[0]],
    ['link', 'set', `${ns[1]}v`, 'netns', ns[1]],
    ...[0, 1].flatMap((r) => [
      ['-n', ns[r], 'addr', 'add', `${ip(r)}/24`, 'dev', `${ns[r]}v`],
      ['-n', ns[r], 'link', 'set', `${ns[r]}v`, 'up'],
      ['-n', ns[r], 'link', 'set', 'lo', 'up'],
    ]),
  ];
  for (const s of steps) {
    const r = sh(s);
    if (r.status !== 0) return `ip ${s.join(' ')}: ${r.stderr.trim()}`;
  }
  return null;
}

const unavailable = makeHosts();
let dir: string;
let redis: ChildProcess | undefined;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smolrate-multihost-'));
  await writeLearnableShards(openStore(join(dir, 'data')), { train: 32, val: 16 });
  if (unavailable !== null) return;
  const binary = findRedisServer();
  redis = spawn('ip', ['netns', 'exec', ns[0], binary, '--bind', ip(0), '--port', '6390', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if (spawnSync('ip', ['netns', 'exec', ns[1], 'redis-cli', '-h', ip(0), '-p', '6390', 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG') break;
    await new Promise((r) => setTimeout(r, 100));
  }
});

afterAll(async () => {
  for (const c of [...children, redis]) c?.kill('SIGKILL');
  if (unavailable === null) for (const n of ns) sh(['netns', 'del', n]);
  await rm(dir, { recursive: true, force: true });
});

const common = (run: string) => ['--data', join(dir, 'data'), '--run', join(dir, run), '--preset', 'tiny', '--backend', 'wasm', '--global-batch', '8', '--max-steps', '3', '--seed', '0'];

describe.skipIf(unavailable !== null)(`two hosts in network namespaces${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  it('launch --nnodes 2 over the TCP data plane across the namespaces ends with the bytes of the same run on one host', async () => {
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const cli = fileURLToPath(new URL('./trainer-cli.ts', import.meta.url));
    const logs = ['', ''];
    const exits = [0, 1].map((r) => {
      const c = spawn(
        'ip',
        ['netns', 'exec', ns[r], process.execPath, '--import', tsx, cli, 'launch', '--gpus', '1', '--nnodes', '2', '--node-rank', String(r), '--redis', `redis://${ip(0)}:6390`,
          '--run-id', `mh-${tag}`, '--collective.host', '0.0.0.0', '--collective.port', '29500-29599', ...common('multi')],
        { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SMOLRATE_LOG_LEVEL: 'info' } },
      );
      children.push(c);
      c.stdout!.on('data', (d: Buffer) => (logs[r] += d.toString()));
      c.stderr!.on('data', (d: Buffer) => (logs[r] += d.toString()));
      return new Promise<number | null>((resolve) => c.once('exit', (code) => resolve(code)));
    });
    const codes = await Promise.all(exits);
    expect(codes, logs.join('\n---\n').slice(-3000)).toEqual([0, 0]);
    // Each rank published its own namespace's address (0.0.0.0 → the first external IPv4).
    expect(logs[0]).toMatch(new RegExp(`tcp data plane connected.*"address":"${ip(0).replace(/\./g, '\\.')}:295\\d\\d"`));
    expect(logs[1]).toMatch(new RegExp(`tcp data plane connected.*"address":"${ip(1).replace(/\./g, '\\.')}:295\\d\\d"`));

    const args = common('single');
    const overrides: Record<string, unknown> = {};
    for (let i = 0; i < args.length; i += 2) overrides[args[i].slice(2).replace(/-(\w)/g, (_, c: string) => c.toUpperCase())] = args[i + 1];
    await launch({ config: resolveTrainerConfig({ overrides }), gpus: 2, redis: process.env.REDIS_URL, runId: `sh-${tag}`, env: { SMOLRATE_LOG_LEVEL: 'warn' } });
    const hash = async (run: string) => (JSON.parse(await readFile(join(dir, run, 'workers', 'rank-0.json'), 'utf8')) as { paramHash: string }).paramHash;
    expect(await hash('multi')).toBe(await hash('single'));
    expect(JSON.parse(await readFile(join(dir, 'multi', 'workers', 'rank-1.json'), 'utf8'))).toMatchObject({ rank: 1, worldSize: 2, step: 3 });
  }, 240_000);
});
