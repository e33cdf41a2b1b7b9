/**
 * The metadata files a build reads. Inputs are files or folders, local or `s3://`; a folder
 * contributes the metadata files directly inside it (not in sub-folders, so an output or a
 * reviews folder next to them is never picked up by accident).
 *
 * File names (docs/reference/data.md): `meta_<Category>.jsonl` (Hugging Face copy), `meta_<Category>.jsonl.gz`
 * (UCSD copy), `<Category>.jsonl[.gz]` (older copies). The category — the sampling stratum — comes
 * from the name, never from the records' `main_category`. Parquet (the Hugging Face column form
 * of nine categories) is not read yet: naming one is a ConfigError rather than a silent skip, as
 * is a folder holding some, an explicit file with any other name, or two files of one category.
 */
import { basename, dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, openStore, parseStorageUri, StorageError, type Store } from '@smolrate/core';

export interface InputFile {
  /** Full URI of the file (for messages, rejects and the manifest). */
  uri: string;
  /** URI of the store (folder) the file is read through. */
  storeUri: string;
  /** The file's key in that store. */
  key: string;
  /** From the file name, e.g. `All_Beauty`. */
  category: string;
  /** The name ends in `.gz` (the line reader decides by the gzip magic bytes anyway). */
  compressed: boolean;
}

export interface ListInputsOptions {
  /** Only these categories; empty or absent = all. Naming one that no input has is an error. */
  categories?: string[];
}

const META_NAME = /^(?:meta_)?([A-Za-z0-9][A-Za-z0-9_]*)\.jsonl(\.gz)?$/;
const PARQUET_NAME = /\.parquet$/i;

/** The category and compression of a metadata file name, or null when it is not one. */
export function parseInputName(name: string): { category: string; compressed: boolean } | null {
  const m = META_NAME.exec(name);
  // `meta_.jsonl` is not the category "meta_".
  if (m === null || m[1].startsWith('meta_')) return null;
  return { category: m[1], compressed: m[2] !== undefined };
}

function toConfigError(uri: string, e: unknown): never {
  if (e instanceof StorageError && !(e.code === 'STORAGE')) throw e; // not found / permission: keep the type
  if (e instanceof StorageError) throw new ConfigError(`input ${uri}: ${e.message}`, { cause: e });
  throw e;
}

/** The folder URI and file name a location would have if it named a file. */
function splitLocation(uri: string): { parentUri: string; name: string } {
  const loc = parseStorageUri(uri);
  if (loc.scheme === 'file') return { parentUri: pathToFileURL(dirname(loc.path)).href, name: basename(loc.path) };
  const segments = loc.prefix === '' ? [] : loc.prefix.split('/');
  const name = segments.pop() ?? '';
  return { parentUri: segments.length === 0 ? `s3://${loc.bucket}` : `s3://${loc.bucket}/${segments.join('/')}`, name };
}

function inputFile(store: Store, key: string, category: string, compressed: boolean): InputFile {
  return { uri: store.uriOf(key), storeUri: store.uri, key, category, compressed };
}

interface Expanded {
  files: InputFile[];
  unknownNames: string[];
  parquet: string[];
  missing: string[];
}

async function expand(uri: string, out: Expanded): Promise<void> {
  let parentUri: string;
  let name: string;
  try {
    ({ parentUri, name } = splitLocation(uri));
  } catch (e) {
    toConfigError(uri, e);
  }
  const looksLikeFile = name !== '' && (parseInputName(name) !== null || PARQUET_NAME.test(name));
  if (looksLikeFile) {
    const parent = openStore(parentUri);
    if (!(await parent.exists(name))) {
      out.missing.push(uri);
      return;
    }
    if (PARQUET_NAME.test(name)) {
      out.parquet.push(parent.uriOf(name));
      return;
    }
    const parsed = parseInputName(name)!;
    out.files.push(inputFile(parent, name, parsed.category, parsed.compressed));
    return;
  }

  const folder = openStore(uri);
  const entries = await folder.list('');
  if (entries.length === 0) {
    // Not a folder (or an empty one): a file with a name we do not know, or nothing at all.
    if (name !== '' && (await openStore(parentUri).exists(name))) out.unknownNames.push(uri);
    else out.missing.push(uri);
    return;
  }
  const before = out.files.length + out.parquet.length;
  for (const { key } of entries) {
    if (key.includes('/') || key.startsWith('.')) continue;
    if (PARQUET_NAME.test(key)) {
      out.parquet.push(folder.uriOf(key));
      continue;
    }
    const parsed = parseInputName(key);
    // In a folder, an unprefixed name counts only when it looks like a category (every one of the
    // 34 starts with a capital letter): `truth.jsonl` next to synthetic data, or a build's own
    // `rejects.jsonl`, are not metadata. An explicit file is taken whatever its case.
    if (parsed !== null && (key.startsWith('meta_') || /^[A-Z]/.test(key))) out.files.push(inputFile(folder, key, parsed.category, parsed.compressed));
  }
  if (out.files.length + out.parquet.length === before) out.missing.push(`${uri} (a folder without metadata files)`);
}

/**
 * Expands `uris` (files or folders) into the metadata files to read, sorted by category then URI.
 * Throws ConfigError for unknown file names, Parquet files, missing inputs, a category given by two
 * files, and requested categories that no input has.
 */
export async function listInputs(uris: string[], opts: ListInputsOptions = {}): Promise<InputFile[]> {
  if (uris.length === 0) throw new ConfigError('no input given (config key "input": metadata files or folders)');
  const ex: Expanded = { files: [], unknownNames: [], parquet: [], missing: [] };
  for (const uri of uris) await expand(uri, ex);

  if (ex.parquet.length > 0) {
    throw new ConfigError(
      `Parquet column-form files not supported yet: ${ex.parquet.join(', ')} — use the JSON-lines copies (meta_<Category>.jsonl or .jsonl.gz)`,
    );
  }
  if (ex.unknownNames.length > 0) {
    throw new ConfigError(
      `not metadata file names: ${ex.unknownNames.join(', ')} — expected meta_<Category>.jsonl, meta_<Category>.jsonl.gz or <Category>.jsonl[.gz]`,
    );
  }
  if (ex.missing.length > 0) throw new ConfigError(`inputs not found: ${ex.missing.join(', ')}`);

  const byUri = new Map<string, InputFile>();
  for (const f of ex.files) byUri.set(f.uri, f);
  let files = [...byUri.values()];

  const byCategory = new Map<string, string[]>();
  for (const f of files) byCategory.set(f.category, [...(byCategory.get(f.category) ?? []), f.uri]);
  const clashes = [...byCategory].filter(([, list]) => list.length > 1);
  if (clashes.length > 0) {
    throw new ConfigError(
      `one category, several input files (keep one per category): ${clashes.map(([c, list]) => `${c}: ${list.sort().join(', ')}`).join('; ')}`,
    );
  }

  const wanted = opts.categories ?? [];
  if (wanted.length > 0) {
    const missing = wanted.filter((c) => !byCategory.has(c));
    if (missing.length > 0) {
      throw new ConfigError(`selection.categories not found in the inputs: ${missing.join(', ')} (found: ${[...byCategory.keys()].sort().join(', ')})`);
    }
    const keep = new Set(wanted);
    files = files.filter((f) => keep.has(f.category));
  }
  return files.sort((a, b) => (a.category < b.category ? -1 : a.category > b.category ? 1 : a.uri < b.uri ? -1 : a.uri > b.uri ? 1 : 0));
}
