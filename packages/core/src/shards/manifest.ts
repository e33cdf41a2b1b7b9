/**
 * `manifest.json` at the shard root: what was built, from what, and how to check it. Written
 * LAST (after every shard is published), as canonical JSON — sorted keys, two-space indent,
 * trailing newline — so the same build gives the same bytes (docs/reference/design.md, docs/reference/optimizer.md: MosaicML's
 * index.json). Validation reports every problem at once rather than the first.
 */
import { DataError, NotFoundError, ShardIntegrityError } from '../errors.js';
import type { Store } from '../storage/store.js';
import { canonicalJson, type JsonValue } from './canonical-json.js';
import { SHARD_FORMAT } from './schema.js';
import { isNonNegativeSafeInteger, shardInfoProblems, shardKey, type ShardInfo } from './shard-info.js';

export const MANIFEST_FILE = 'manifest.json';

export interface ManifestInput {
  /** Input file URI (metadata JSONL or JSONL.gz). */
  uri: string;
  /** Records read from it. */
  records: number;
}

export interface CategoryCounts {
  read: number;
  kept: number;
  rejected: number;
}

export interface ManifestCounts {
  /** Records read over all inputs; always `kept + Σ rejected.byReason`. */
  read: number;
  /** Records written to shards; always `splits.train.rows + splits.val.rows`. */
  kept: number;
  rejected: { byReason: Record<string, number> };
  /** Per source category (the sampling stratum); each adds up, and they add up to the totals. */
  perCategory: Record<string, CategoryCounts>;
}

export interface SplitShards {
  shards: ShardInfo[];
  /** Σ shards[].rows. */
  rows: number;
}

export interface Manifest {
  format: typeof SHARD_FORMAT;
  /** Version of the tool that built the shards. */
  toolVersion: string;
  seed: number;
  /** The full resolved config of the build. */
  config: JsonValue;
  inputs: ManifestInput[];
  counts: ManifestCounts;
  splits: { train: SplitShards; val: SplitShards };
  /** Free-form provenance (host, user, command line). */
  createdBy?: string;
}

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Every problem with a would-be manifest, as messages naming the JSON path; [] when valid. */
export function manifestProblems(json: unknown): string[] {
  const problems: string[] = [];
  const p = (msg: string): void => {
    problems.push(msg);
  };
  if (!isObject(json)) return ['manifest: expected a JSON object'];

  const unknownKeys = (o: Obj, path: string, allowed: string[]): void => {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) p(`${path}.${k}: unknown field`);
  };
  /** Checks `o[key]` is a count; returns it, or undefined when it is not. */
  const count = (o: Obj, key: string, path: string): number | undefined => {
    const v = o[key];
    if (v === undefined) p(`${path}.${key}: missing`);
    else if (typeof v === 'number' && Number.isSafeInteger(v) && v < 0) p(`${path}.${key}: negative count ${v}`);
    else if (!isNonNegativeSafeInteger(v)) p(`${path}.${key}: expected a non-negative integer, got ${JSON.stringify(v)}`);
    else return v;
    return undefined;
  };
  const object = (o: Obj, key: string, path: string): Obj | undefined => {
    const v = o[key];
    if (v === undefined) p(`${path}.${key}: missing`);
    else if (!isObject(v)) p(`${path}.${key}: expected an object`);
    else return v;
    return undefined;
  };

  const m = json;
  unknownKeys(m, 'manifest', ['format', 'toolVersion', 'seed', 'config', 'inputs', 'counts', 'splits', 'createdBy']);

  if (m.format === undefined) p('manifest.format: missing');
  else if (m.format !== SHARD_FORMAT) p(`manifest.format: expected ${JSON.stringify(SHARD_FORMAT)}, got ${JSON.stringify(m.format)}`);

  if (m.toolVersion === undefined) p('manifest.toolVersion: missing');
  else if (typeof m.toolVersion !== 'string' || m.toolVersion === '') p('manifest.toolVersion: expected a non-empty string');

  if (m.seed === undefined) p('manifest.seed: missing');
  else if (typeof m.seed !== 'number' || !Number.isSafeInteger(m.seed)) p(`manifest.seed: expected an integer, got ${JSON.stringify(m.seed)}`);

  if (m.config === undefined) p('manifest.config: missing');
  else {
    try {
      canonicalJson(m.config, 0);
    } catch (e) {
      p(`manifest.config: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  if (m.createdBy !== undefined && typeof m.createdBy !== 'string') p('manifest.createdBy: expected a string');

  // inputs
  let inputRecords: number | undefined = 0;
  if (m.inputs === undefined) p('manifest.inputs: missing');
  else if (!Array.isArray(m.inputs)) p('manifest.inputs: expected an array');
  else {
    const uris = new Set<string>();
    m.inputs.forEach((input: unknown, i) => {
      const path = `manifest.inputs[${i}]`;
      if (!isObject(input)) {
        p(`${path}: expected an object`);
        inputRecords = undefined;
        return;
      }
      unknownKeys(input, path, ['uri', 'records']);
      if (typeof input.uri !== 'string' || input.uri === '') p(`${path}.uri: expected a non-empty string`);
      else if (uris.has(input.uri)) p(`${path}.uri: duplicate input ${JSON.stringify(input.uri)}`);
      else uris.add(input.uri);
      const r = count(input, 'records', path);
      inputRecords = r === undefined || inputRecords === undefined ? undefined : inputRecords + r;
    });
  }
  if (!Array.isArray(m.inputs)) inputRecords = undefined;

  // counts
  let kept: number | undefined;
  const counts = object(m, 'counts', 'manifest');
  if (counts) {
    const path = 'manifest.counts';
    unknownKeys(counts, path, ['read', 'kept', 'rejected', 'perCategory']);
    const read = count(counts, 'read', path);
    kept = count(counts, 'kept', path);
    let rejected: number | undefined;
    const rej = object(counts, 'rejected', path);
    if (rej) {
      unknownKeys(rej, `${path}.rejected`, ['byReason']);
      const byReason = object(rej, 'byReason', `${path}.rejected`);
      if (byReason) {
        rejected = 0;
        for (const reason of Object.keys(byReason)) {
          if (reason === '') p(`${path}.rejected.byReason: empty reason name`);
          const n = count(byReason, reason, `${path}.rejected.byReason`);
          rejected = n === undefined || rejected === undefined ? undefined : rejected + n;
        }
      }
    }
    if (read !== undefined && kept !== undefined && rejected !== undefined && read !== kept + rejected) {
      p(`${path}: read (${read}) ≠ kept (${kept}) + rejected (${rejected})`);
    }
    if (read !== undefined && inputRecords !== undefined && read !== inputRecords) {
      p(`${path}.read (${read}) ≠ Σ inputs[].records (${inputRecords})`);
    }
    const perCategory = object(counts, 'perCategory', path);
    if (perCategory) {
      const sum: Record<'read' | 'kept' | 'rejected', number | undefined> = { read: 0, kept: 0, rejected: 0 };
      for (const cat of Object.keys(perCategory)) {
        const cpath = `${path}.perCategory.${cat}`;
        const c = perCategory[cat];
        if (!isObject(c)) {
          p(`${cpath}: expected an object`);
          sum.read = sum.kept = sum.rejected = undefined;
          continue;
        }
        unknownKeys(c, cpath, ['read', 'kept', 'rejected']);
        const cr = count(c, 'read', cpath);
        const ck = count(c, 'kept', cpath);
        const cj = count(c, 'rejected', cpath);
        if (cr !== undefined && ck !== undefined && cj !== undefined && cr !== ck + cj) {
          p(`${cpath}: read (${cr}) ≠ kept (${ck}) + rejected (${cj})`);
        }
        sum.read = cr === undefined || sum.read === undefined ? undefined : sum.read + cr;
        sum.kept = ck === undefined || sum.kept === undefined ? undefined : sum.kept + ck;
        sum.rejected = cj === undefined || sum.rejected === undefined ? undefined : sum.rejected + cj;
      }
      const totals = { read, kept, rejected };
      for (const k of ['read', 'kept', 'rejected'] as const) {
        const total = totals[k];
        const s = sum[k];
        if (total !== undefined && s !== undefined && total !== s) p(`${path}.perCategory: Σ ${k} (${s}) ≠ counts ${k} (${total})`);
      }
    }
  }

  // splits
  const splits = object(m, 'splits', 'manifest');
  if (splits) {
    unknownKeys(splits, 'manifest.splits', ['train', 'val']);
    const files = new Map<string, string>();
    let splitRows: number | undefined = 0;
    for (const name of ['train', 'val'] as const) {
      const path = `manifest.splits.${name}`;
      const split = object(splits, name, 'manifest.splits');
      if (!split) {
        splitRows = undefined;
        continue;
      }
      unknownKeys(split, path, ['shards', 'rows']);
      const rows = count(split, 'rows', path);
      let shardRows: number | undefined = 0;
      if (split.shards === undefined) p(`${path}.shards: missing`);
      else if (!Array.isArray(split.shards)) p(`${path}.shards: expected an array`);
      else {
        split.shards.forEach((s: unknown, i) => {
          const spath = `${path}.shards[${i}]`;
          const sp = shardInfoProblems(s, spath);
          problems.push(...sp);
          const info = s as Partial<ShardInfo> | null;
          if (isObject(info) && typeof info.file === 'string') {
            const prev = files.get(info.file);
            if (prev !== undefined) p(`${spath}.file: duplicate shard file ${JSON.stringify(info.file)} (also ${prev})`);
            else files.set(info.file, spath);
          }
          shardRows = isObject(info) && isNonNegativeSafeInteger(info.rows) && shardRows !== undefined ? shardRows + info.rows : undefined;
        });
      }
      if (!Array.isArray(split.shards)) shardRows = undefined;
      if (rows !== undefined && shardRows !== undefined && rows !== shardRows) p(`${path}.rows (${rows}) ≠ Σ shards[].rows (${shardRows})`);
      splitRows = rows === undefined || splitRows === undefined ? undefined : splitRows + rows;
    }
    if (kept !== undefined && splitRows !== undefined && kept !== splitRows) {
      p(`manifest.counts.kept (${kept}) ≠ splits.train.rows + splits.val.rows (${splitRows})`);
    }
  }

  return problems;
}

/** Returns `json` typed as a Manifest, or throws a DataError listing every problem. */
export function validateManifest(json: unknown): Manifest {
  const problems = manifestProblems(json);
  if (problems.length > 0) {
    throw new DataError(`invalid manifest (${problems.length} problem${problems.length === 1 ? '' : 's'}): ${problems.join('; ')}`);
  }
  return json as Manifest;
}

/** The manifest's canonical bytes: sorted keys, two-space indent, trailing newline. */
export function serializeManifest(manifest: Manifest): string {
  return `${canonicalJson(validateManifest(manifest), 2)}\n`;
}

export interface ManifestLocation {
  /** Shard root (key prefix) inside the store; default '' (the store's root). */
  root?: string;
}

export interface WriteManifestOptions extends ManifestLocation {
  /**
   * Before writing, check that every listed shard exists with the listed byte size (one HEAD
   * per shard on S3; hashes are not re-read). Default true: the manifest is the commit point.
   */
  verifyShards?: boolean;
}

/**
 * Validates and writes `manifest.json` under the shard root. Call it last, after every shard is
 * published: readers treat its presence as "the build is complete".
 */
export async function writeManifest(store: Store, manifest: Manifest, opts: WriteManifestOptions = {}): Promise<void> {
  const root = opts.root ?? '';
  const text = serializeManifest(manifest);
  if (opts.verifyShards ?? true) {
    for (const split of [manifest.splits.train, manifest.splits.val]) {
      for (const info of split.shards) {
        const key = shardKey(root, info.file);
        let size: number;
        try {
          size = await store.size(key);
        } catch (e) {
          if (e instanceof NotFoundError) {
            throw new ShardIntegrityError(store.uriOf(key), 'listed in the manifest but not found', { cause: e });
          }
          throw e;
        }
        if (size !== info.bytes) {
          throw new ShardIntegrityError(store.uriOf(key), `size mismatch: expected ${info.bytes} bytes (manifest), actual ${size} bytes`);
        }
      }
    }
  }
  await store.put(shardKey(root, MANIFEST_FILE), text, { contentType: 'application/json' });
}

/**
 * Reads and validates `manifest.json` under the shard root. Unparseable JSON is a
 * ShardIntegrityError naming the manifest's URI; a parseable but invalid manifest is a DataError
 * listing every problem.
 */
export async function readManifest(store: Store, opts: ManifestLocation = {}): Promise<Manifest> {
  const key = shardKey(opts.root ?? '', MANIFEST_FILE);
  const uri = store.uriOf(key);
  const bytes = await store.get(key);
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new ShardIntegrityError(uri, `not valid JSON: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  try {
    return validateManifest(json);
  } catch (e) {
    if (e instanceof DataError) throw new DataError(`${uri}: ${e.message}`, { cause: e });
    throw e;
  }
}
