/**
 * redis-server for the demo, the tests, CI and infra/services.ts: the private server of
 * `@smolrate/core/redis-server`, with the binary installed first when it is missing and this
 * process runs as root (a fresh machine or container: `apt-get install -y redis-server`, with
 * `apt-get update` first when that fails). The product CLIs never install system packages.
 */
import { spawnSync } from 'node:child_process';
import { ServiceError } from '../packages/core/src/errors.js';
import { ensureRedis, findRedisServer, type EnsuredRedis } from '../packages/core/src/services/redis-server.js';

export interface RedisInstallOptions {
  /** Where redis-server is looked for. Default: PATH, then the usual system dirs. */
  searchDirs?: readonly string[];
  /** Whether this process may run apt-get. Default: `process.getuid() === 0`. */
  isRoot?: boolean;
  /** The apt-get executable. Default: `apt-get` on PATH. */
  aptGet?: string;
  /** Where the install steps are reported. Default: stderr. */
  log?: (line: string) => void;
}

const INSTALL = ['install', '-y', 'redis-server'];

/** The redis-server binary; installed with apt-get first when it is missing and we are root. */
export function redisServerBinary(o: RedisInstallOptions = {}): string {
  try {
    return findRedisServer(o.searchDirs);
  } catch (missing) {
    if (!(o.isRoot ?? process.getuid?.() === 0)) throw missing;
    const log = o.log ?? ((line: string) => process.stderr.write(`[smolrate services] ${line}\n`));
    const apt = (args: string[]): number => {
      log(`running: apt-get ${args.join(' ')}`);
      // apt waits for its lock (another install) instead of failing; its output goes to our
      // stderr, so stdout stays clean for `REDIS_URL=...` consumers.
      const r = spawnSync(o.aptGet ?? 'apt-get', ['-o', 'DPkg::Lock::Timeout=300', ...args], {
        stdio: ['ignore', process.stderr, process.stderr],
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
      if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') throw missing; // no apt-get here
      if (r.error) throw new ServiceError(`could not run apt-get: ${r.error.message}`, { cause: r.error });
      return r.status ?? 1;
    };
    log('redis-server is not installed; installing the Debian package (running as root)');
    let status = apt(INSTALL);
    if (status !== 0) {
      // The usual cause on a fresh machine or container: no package lists yet.
      log(`apt-get install exited with ${status}; updating the package lists and retrying`);
      const update = apt(['update']);
      if (update !== 0) log(`apt-get update exited with ${update}`);
      status = apt(INSTALL);
    }
    if (status !== 0) {
      throw new ServiceError(`could not install redis-server: \`apt-get install -y redis-server\` exited with ${status} (see its output above). Install Redis yourself or set REDIS_URL.`);
    }
    log('installed redis-server');
    return findRedisServer(o.searchDirs);
  }
}

/** REDIS_URL when set, else a private redis-server (installed first when needed: redisServerBinary). */
export function ensureLocalRedis(name: string): Promise<EnsuredRedis> {
  return ensureRedis({ name, binary: process.env.REDIS_URL ? undefined : redisServerBinary() });
}
