import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ServiceError } from '../../packages/core/src/errors.js';
import { redisServerBinary } from '../redis-install.js';

// A stand-in apt-get in an otherwise empty dir: records its arguments; `install` fails until
// `update` has run (a fresh machine without package lists), then "installs" redis-server.
const dirs: string[] = [];
function fakeApt(): string {
  const dir = mkdtempSync(join(tmpdir(), 'smolrate-spec-apt-'));
  dirs.push(dir);
  writeFileSync(
    join(dir, 'apt-get'),
    [
      '#!/bin/sh',
      'd=$(dirname "$0")',
      'echo "$*" >> "$d/calls"',
      'case "$*" in',
      '  *update*) touch "$d/lists"; exit 0;;',
      '  *install*) [ -f "$d/lists" ] || exit 100',
      '    printf \'#!/bin/sh\\nexit 0\\n\' > "$d/redis-server"; chmod +x "$d/redis-server"; exit 0;;',
      'esac',
      'exit 1',
    ].join('\n'),
    { mode: 0o755 },
  );
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('redisServerBinary', () => {
  it('finds an installed binary without running apt-get', () => {
    expect(redisServerBinary({ aptGet: '/nonexistent/apt-get' })).toMatch(/redis-server$/);
  });

  it('when missing and not root: says which command to run with sudo, or to set REDIS_URL', () => {
    const dir = fakeApt();
    const opts = { searchDirs: [dir], isRoot: false, aptGet: join(dir, 'apt-get') };
    expect(() => redisServerBinary(opts)).toThrow(ServiceError);
    expect(() => redisServerBinary(opts)).toThrow(/sudo apt-get install -y redis-server.*REDIS_URL/s);
    expect(existsSync(join(dir, 'calls'))).toBe(false); // apt-get never ran
  });

  it('when missing and root: apt-get install, and apt-get update first when that fails', () => {
    const dir = fakeApt();
    const lines: string[] = [];
    const found = redisServerBinary({ searchDirs: [dir], isRoot: true, aptGet: join(dir, 'apt-get'), log: (l) => lines.push(l) });
    expect(found).toBe(join(dir, 'redis-server'));
    const calls = readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n');
    expect(calls.map((c) => c.replace(/^-o \S+ /, ''))).toEqual(['install -y redis-server', 'update', 'install -y redis-server']);
    expect(lines.join('\n')).toMatch(/running: apt-get .*install -y redis-server[\s\S]*updating the package lists/);
  });

  it('when missing, root and no apt-get: names the install commands and REDIS_URL', () => {
    const dir = mkdtempSync(join(tmpdir(), 'smolrate-spec-empty-'));
    dirs.push(dir);
    expect(() => redisServerBinary({ searchDirs: [dir], isRoot: true, aptGet: join(dir, 'apt-get'), log: () => undefined })).toThrow(
      /redis-server not found.*apt-get install -y redis-server.*REDIS_URL/s,
    );
  });
});
