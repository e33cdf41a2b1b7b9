/**
 * `smolrate-core`: storage and shard utilities for people checking their setup —
 * listing / copying objects across local folders and S3, and verifying a shard set.
 */
import { pipeline } from 'node:stream/promises';
import { runCommand, parseArgs, flagBool, type CommandSpec } from './cli.js';
import { UsageError } from './errors.js';
import { openStore } from './storage/open-store.js';
import { openObject } from './object-uri.js';
import { readManifest } from './shards/manifest.js';
import { verifyShard, readShard } from './shards/shard-reader.js';
import { createProgress } from './progress.js';

function positional(args: string[], n: number, usage: string): string[] {
  const p = parseArgs(args).positionals;
  if (p.length !== n) throw new UsageError(`expected ${n} argument${n > 1 ? 's' : ''}: ${usage}`);
  return p;
}

const commands: Record<string, CommandSpec> = {
  ls: {
    summary: 'list objects under a URI (local path, file://, s3://bucket/prefix)',
    usage: 'smolrate-core ls URI',
    async run(args) {
      const [uri] = positional(args, 1, 'smolrate-core ls URI');
      const store = openStore(uri);
      for (const e of await store.list()) process.stdout.write(`${String(e.size).padStart(12)}  ${e.key}\n`);
    },
  },
  cat: {
    summary: 'print one object to stdout',
    usage: 'smolrate-core cat URI',
    async run(args) {
      const [uri] = positional(args, 1, 'smolrate-core cat URI');
      const { store, key } = openObject(uri);
      await pipeline(await store.createReadStream(key), process.stdout, { end: false });
    },
  },
  cp: {
    summary: 'copy one object between any two locations, streamed',
    usage: 'smolrate-core cp SRC_URI DST_URI',
    async run(args) {
      const [src, dst] = positional(args, 2, 'smolrate-core cp SRC_URI DST_URI');
      const a = openObject(src);
      const b = openObject(dst);
      const { size } = await b.store.putStream(b.key, await a.store.createReadStream(a.key));
      process.stderr.write(`copied ${size} bytes: ${a.store.uriOf(a.key)} → ${b.store.uriOf(b.key)}\n`);
    },
  },
  rm: {
    summary: 'delete one object',
    usage: 'smolrate-core rm URI',
    async run(args) {
      const [uri] = positional(args, 1, 'smolrate-core rm URI');
      const { store, key } = openObject(uri);
      await store.delete(key);
    },
  },
  'verify-shards': {
    summary: 'check every shard of a shard set against manifest.json (size + SHA-256; --decode reads all rows too)',
    usage: 'smolrate-core verify-shards ROOT_URI [--decode]',
    async run(args) {
      const parsed = parseArgs(args, ['decode']);
      if (parsed.positionals.length !== 1) throw new UsageError('expected: smolrate-core verify-shards ROOT_URI [--decode]');
      const store = openStore(parsed.positionals[0]);
      const decode = flagBool(parsed, 'decode');
      const manifest = await readManifest(store);
      const shards = [...manifest.splits.train.shards, ...manifest.splits.val.shards];
      const progress = createProgress({ label: 'verify', total: shards.length, unit: 'shards' });
      let rows = 0;
      for (const info of shards) {
        if (decode) for await (const _row of readShard(store, '', info)) rows++;
        else await verifyShard(store, '', info);
        progress.tick();
      }
      progress.done();
      process.stdout.write(
        `ok: ${shards.length} shards (${manifest.splits.train.shards.length} train, ${manifest.splits.val.shards.length} val), ` +
          `${manifest.splits.train.rows + manifest.splits.val.rows} rows${decode ? ` (${rows} decoded)` : ''}, format ${manifest.format}\n`,
      );
    },
  },
};

export async function main(argv: string[]): Promise<void> {
  process.exitCode = await runCommand('smolrate-core', commands, argv);
}
