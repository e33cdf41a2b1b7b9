/**
 * A shard's entry in manifest.json, and how shard keys are formed under a shard root.
 * The shard root is a key prefix inside a Store ('' for the store's own root): a build written to
 * `s3://bucket/datasets/v3` is either a store opened there with root '' or a store opened on
 * `s3://bucket` with root 'datasets/v3'.
 */
import { DataError } from '../errors.js';

export interface ShardInfo {
  /** Key of the Parquet file relative to the shard root, e.g. `train/shard-00000.parquet`. */
  file: string;
  rows: number;
  bytes: number;
  /** Lowercase hex SHA-256 of the file's bytes. */
  sha256: string;
}

const SHARD_SHA256_PATTERN = /^[0-9a-f]{64}$/;

/** Problems with a relative key (`file` of a ShardInfo, or a shard root), or [] when it is fine. */
function relativeKeyProblems(key: string, allowEmpty: boolean): string[] {
  if (key === '') return allowEmpty ? [] : ['is empty'];
  const problems: string[] = [];
  if (key.startsWith('/')) problems.push('must be relative (starts with "/")');
  if (key.includes('\\')) problems.push('must use "/" separators (contains "\\")');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(key)) problems.push('must be a key, not a URI');
  const segments = key.replace(/^\/+/, '').split('/');
  if (segments.some((s) => s === '.' || s === '..')) problems.push('must not contain "." or ".." segments');
  if (segments.slice(0, -1).some((s) => s === '')) problems.push('must not contain empty segments');
  if (!allowEmpty && segments[segments.length - 1] === '') problems.push('must name a file (ends with "/")');
  return problems;
}

/** The store key of `file` under the shard root `root`. Throws DataError on a malformed key. */
export function shardKey(root: string, file: string): string {
  const rootProblems = relativeKeyProblems(root, true);
  if (rootProblems.length > 0) throw new DataError(`shard root ${JSON.stringify(root)} ${rootProblems.join('; ')}`);
  const fileProblems = relativeKeyProblems(file, false);
  if (fileProblems.length > 0) throw new DataError(`shard file ${JSON.stringify(file)} ${fileProblems.join('; ')}`);
  const r = root.replace(/\/+$/, '');
  return r === '' ? file : `${r}/${file}`;
}

/** Every problem with a ShardInfo-shaped value, each prefixed with `where`. */
export function shardInfoProblems(value: unknown, where: string): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${where}: expected an object`];
  const v = value as Record<string, unknown>;
  const problems: string[] = [];
  for (const k of Object.keys(v)) {
    if (!['file', 'rows', 'bytes', 'sha256'].includes(k)) problems.push(`${where}.${k}: unknown field`);
  }
  if (typeof v.file !== 'string') problems.push(`${where}.file: expected a string`);
  else for (const p of relativeKeyProblems(v.file, false)) problems.push(`${where}.file ${JSON.stringify(v.file)}: ${p}`);
  if (!isNonNegativeSafeInteger(v.rows) || v.rows === 0) problems.push(`${where}.rows: expected a positive integer, got ${JSON.stringify(v.rows)}`);
  if (!isNonNegativeSafeInteger(v.bytes) || v.bytes === 0) problems.push(`${where}.bytes: expected a positive integer, got ${JSON.stringify(v.bytes)}`);
  if (typeof v.sha256 !== 'string' || !SHARD_SHA256_PATTERN.test(v.sha256)) {
    problems.push(`${where}.sha256: expected 64 lowercase hex digits, got ${JSON.stringify(v.sha256)}`);
  }
  return problems;
}

/** A non-negative safe integer. */
export function isNonNegativeSafeInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
