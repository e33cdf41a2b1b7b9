import { statSync } from 'node:fs';
import { dirname } from 'node:path';
/**
 * Local-store behaviour the conformance suite cannot express for S3: file modes and temp files.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempPathFor } from './atomic-file.js';
import { LocalStore } from './local-store.js';

const NOBODY = 65534;

interface Outcome {
  ok?: true;
  name?: string;
  code?: string;
  uri?: string;
}

// Runs each store operation against the directory in argv[2] and prints how each one ended.
const PROBE = `
import { Readable } from 'node:stream';
const { LocalStore } = await import(process.argv[3]);
const store = new LocalStore(process.argv[2]);
const ops = {
  put: () => store.put('new.txt', 'x'),
  putStream: () => store.putStream('sub/new.bin', Readable.from([Buffer.from('x')])),
  get: () => store.get('secret.txt'),
  createReadStream: () => store.createReadStream('secret.txt'),
  delete: () => store.delete('public.txt'),
};
const out = {};
for (const [op, run] of Object.entries(ops)) {
  try {
    await run();
    out[op] = { ok: true };
  } catch (e) {
    out[op] = { name: e.name, code: e.code, uri: e.uri };
  }
}
console.log(JSON.stringify(out));
`;

/**
 * Runs PROBE in a child process — as user nobody when we are root, because root ignores file
 * modes (CAP_DAC_OVERRIDE) and the only honest way to meet EACCES is to not be root.
 */
async function probe(root: string, scriptDir: string): Promise<Record<string, Outcome>> {
  const script = join(scriptDir, 'probe.mjs');
  await writeFile(script, PROBE);
  await chmod(script, 0o644);
  const storeModule = new URL('./local-store.ts', import.meta.url).href;
  const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
  const asRoot = process.getuid?.() === 0;
  const child = spawn(process.execPath, ['--import', 'tsx', script, root, storeModule], {
    cwd: repoRoot,
    ...(asRoot ? { uid: NOBODY, gid: NOBODY } : {}),
    // No tsx cache: it would leave a /tmp/tsx-<uid> directory behind for the probe user.
    env: { PATH: process.env.PATH, HOME: tmpdir(), TSX_DISABLE_CACHE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`probe (uid ${asRoot ? NOBODY : process.getuid?.()}) exited ${code}: ${stderr}`);
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, Outcome>;
}

describe('LocalStore', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'smolrate-local-'));
  });
  afterAll(async () => {
    await chmod(join(dir, 'ro'), 0o755).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('maps EACCES to PermissionError naming the file URI (read-only directory, unreadable file)', async (ctx) => {
    if (process.platform === 'win32') ctx.skip(true, 'POSIX file modes are not enforced on Windows');
    // The probe runs as `nobody`, which must be able to reach the checkout (a clone inside a
    // `mktemp -d` folder, mode 0700, is not reachable).
    if (process.getuid?.() === 0) {
      for (let d = process.cwd(); ; d = dirname(d)) {
        if ((statSync(d).mode & 0o001) === 0) ctx.skip(true, `user nobody cannot traverse ${d}`);
        if (dirname(d) === d) break;
      }
    }
    const root = join(dir, 'ro');
    await mkdir(root);
    await writeFile(join(root, 'secret.txt'), 'top secret');
    await writeFile(join(root, 'public.txt'), 'hello');
    await chmod(join(root, 'secret.txt'), 0o600);
    await chmod(root, 0o555);
    await chmod(dir, 0o755); // mkdtemp makes 0700; the probe user must reach `root`

    const outcome = await probe(root, dir);
    const store = new LocalStore(root);
    const expected = (key: string) => ({ name: 'PermissionError', code: 'STORAGE_PERMISSION', uri: store.uriOf(key) });
    expect(outcome).toEqual({
      put: expected('new.txt'),
      putStream: expected('sub/new.bin'),
      get: expected('secret.txt'),
      createReadStream: expected('secret.txt'),
      delete: expected('public.txt'),
    });
    // Nothing was written, and the refused delete left the file.
    expect((await readdir(root)).sort()).toEqual(['public.txt', 'secret.txt']);
  });

  it('hides temp files of in-flight or abandoned writes from listings', async () => {
    const store = new LocalStore(join(dir, 'tmp-files'));
    await store.put('a/data.bin', 'x');
    // What a crashed writer would leave behind.
    await writeFile(tempPathFor(store.pathOf('a/data.bin')), 'half written');
    await writeFile(tempPathFor(store.pathOf('a/other.bin')), 'half written');
    expect(await readdir(join(dir, 'tmp-files', 'a'))).toHaveLength(3);
    expect(await store.list()).toEqual([{ key: 'a/data.bin', size: 1 }]);
  });

  it('accepts file:// URIs and plain paths for the same directory', async () => {
    const plain = new LocalStore(join(dir, 'same'));
    const uri = new LocalStore(pathToFileURL(join(dir, 'same')).href);
    expect(plain.uri).toBe(uri.uri);
    await plain.put('k.txt', 'v');
    expect((await uri.get('k.txt')).toString()).toBe('v');
  });
});
