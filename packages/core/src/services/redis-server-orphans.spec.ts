/**
 * Acceptance: no orphan redis-server after an interrupted run. A child node process starts a
 * server and reports its pids; the child is then killed (SIGKILL: no handler runs, only the
 * watchdog can act; SIGTERM / SIGINT: our signal handler) or exits without calling stop().
 * The child runs the TypeScript sources through tsx's loader in-process (`node --import`), not
 * the tsx CLI, whose extra wrapper process would be the one receiving the signal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X'; // a zombie (init has not reaped it) is gone
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    if (existsSync('/proc/self/stat')) return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<number> {
  const t0 = Date.now();
  while (isRunning(pid)) {
    if (Date.now() - t0 > ms) throw new Error(`pid ${pid} still running after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}

const moduleUrl = pathToFileURL(fileURLToPath(new URL('./redis-server.ts', import.meta.url))).href;
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

const CHILD = `
import { startRedisServer } from ${JSON.stringify(moduleUrl)};
const server = await startRedisServer({ name: 'orphan-test' });
console.log(JSON.stringify({ pid: server.pid, watchdogPid: server.watchdogPid, dir: server.dir }));
if (process.argv[2] === 'exit') process.exit(0); // without stop()
setInterval(() => {}, 1 << 30);
`;

interface Started {
  child: ChildProcess;
  pid: number;
  watchdogPid: number;
  dir: string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let scriptDir: string;
const children: ChildProcess[] = [];
const serverPids: number[] = [];

beforeAll(() => {
  scriptDir = mkdtempSync(join(tmpdir(), 'smolrate-orphan-spec-'));
  writeFileSync(join(scriptDir, 'child.mts'), CHILD);
});
afterEach(() => {
  // Whatever happens in a test, leave nothing behind ourselves.
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const pid of serverPids.splice(0)) if (isRunning(pid)) process.kill(pid, 'SIGKILL');
});
afterAll(() => {
  rmSync(scriptDir, { recursive: true, force: true });
});

async function startChild(mode: 'hold' | 'exit'): Promise<Started> {
  const child = spawn(process.execPath, ['--import', tsxLoader, join(scriptDir, 'child.mts'), mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const line = await new Promise<string>((resolveLine, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolveLine);
    void exit.then(({ code, signal }) => reject(new Error(`child exited (${code ?? signal}) before reporting:\n${stderr}`)));
  });
  const info = JSON.parse(line) as { pid: number; watchdogPid: number; dir: string };
  serverPids.push(info.pid);
  return { child, exit, ...info };
}

describe('no orphan redis-server when the parent process ends', () => {
  it('SIGKILL of the parent: the watchdog kills redis-server, then exits', async () => {
    const s = await startChild('hold');
    expect(isRunning(s.pid)).toBe(true);
    expect(isRunning(s.watchdogPid)).toBe(true);
    s.child.kill('SIGKILL');
    expect(await s.exit).toEqual({ code: null, signal: 'SIGKILL' });
    await waitGone(s.pid, 5_000);
    await waitGone(s.watchdogPid, 5_000);
    expect(existsSync(s.dir)).toBe(false); // the watchdog removed it once redis-server was gone
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} of the parent: the server is killed and the parent still dies of ${signal}`, async () => {
      const s = await startChild('hold');
      expect(isRunning(s.pid)).toBe(true);
      s.child.kill(signal);
      expect(await s.exit).toEqual({ code: null, signal });
      await waitGone(s.pid, 2_000);
      await waitGone(s.watchdogPid, 2_000);
      expect(existsSync(s.dir)).toBe(false);
    });
  }

  it('exit without stop(): the exit hook kills the server and removes its dir', async () => {
    const s = await startChild('exit');
    expect(await s.exit).toEqual({ code: 0, signal: null });
    await waitGone(s.pid, 2_000);
    await waitGone(s.watchdogPid, 2_000);
    expect(existsSync(s.dir)).toBe(false);
  });
});
