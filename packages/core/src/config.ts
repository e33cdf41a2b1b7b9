/**
 * One typed configuration schema per tool, with the defaults in one place.
 * Precedence: schema defaults ← config file (JSON or YAML) ← CLI flags.
 * Unknown keys and wrong types are errors naming the dotted key; the resolved config is a plain
 * JSON value so it can be logged once and saved with every checkpoint and manifest.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from './errors.js';

interface BaseField<T> {
  readonly kind: string;
  readonly doc: string;
  readonly default: T;
}
export interface IntField extends BaseField<number> { kind: 'int'; min?: number; max?: number }
export interface NumberField extends BaseField<number> { kind: 'number'; min?: number; max?: number }
export interface StringField<T extends string | null = string> extends BaseField<T> { kind: 'string' }
export interface BoolField extends BaseField<boolean> { kind: 'bool' }
export interface EnumField<T extends string> extends BaseField<T> { kind: 'enum'; values: readonly T[] }
export interface ListField<T extends string | number> extends BaseField<T[]> { kind: 'list'; of: 'string' | 'number' }
export interface ObjectField<S extends Schema> { kind: 'object'; doc: string; fields: S; default?: undefined }
export interface MapField extends BaseField<Record<string, string>> { kind: 'map' }

export type Field =
  | IntField
  | NumberField
  | StringField<string>
  | StringField<string | null>
  | BoolField
  | EnumField<string>
  | ListField<string>
  | ListField<number>
  | MapField
  | ObjectField<Schema>;
export type Schema = { readonly [key: string]: Field };

export type Infer<S extends Schema> = {
  -readonly [K in keyof S]: S[K] extends ObjectField<infer Sub>
    ? Infer<Sub>
    : S[K] extends BaseField<infer T>
      ? T
      : never;
};

/** Field builders. Every field carries its default and a one-line doc (printed by `--help-config`). */
export const field = {
  int: (def: number, doc: string, range: { min?: number; max?: number } = {}): IntField => ({ kind: 'int', default: def, doc, ...range }),
  number: (def: number, doc: string, range: { min?: number; max?: number } = {}): NumberField => ({ kind: 'number', default: def, doc, ...range }),
  string: (def: string, doc: string): StringField<string> => ({ kind: 'string', default: def, doc }),
  optionalString: (doc: string): StringField<string | null> => ({ kind: 'string', default: null, doc }),
  bool: (def: boolean, doc: string): BoolField => ({ kind: 'bool', default: def, doc }),
  enum: <T extends string>(values: readonly T[], def: T, doc: string): EnumField<T> => ({ kind: 'enum', values, default: def, doc }),
  strings: (def: string[], doc: string): ListField<string> => ({ kind: 'list', of: 'string', default: def, doc }),
  numbers: (def: number[], doc: string): ListField<number> => ({ kind: 'list', of: 'number', default: def, doc }),
  map: (def: Record<string, string>, doc: string): MapField => ({ kind: 'map', default: def, doc }),
  object: <S extends Schema>(fields: S, doc = ''): ObjectField<S> => ({ kind: 'object', fields, doc }),
};

export function defaults<S extends Schema>(schema: S): Infer<S> {
  const out: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(schema)) {
    out[k] = f.kind === 'object' ? defaults(f.fields) : structuredClone(f.default);
  }
  return out as Infer<S>;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** Validates one value against its field; `fromText` parses CLI strings. */
function coerce(f: Exclude<Field, ObjectField<Schema>>, value: unknown, key: string, fromText: boolean): unknown {
  const bad = (want: string): never => {
    throw new ConfigError(`config key "${key}": expected ${want}, got ${fromText ? JSON.stringify(value) : `${typeName(value)} ${JSON.stringify(value)}`}`);
  };
  switch (f.kind) {
    case 'int':
    case 'number': {
      let n = value;
      if (fromText && typeof value === 'string' && value.trim() !== '') n = Number(value);
      if (typeof n !== 'number' || !Number.isFinite(n)) return bad(f.kind === 'int' ? 'an integer' : 'a number');
      if (f.kind === 'int' && !Number.isInteger(n)) return bad('an integer');
      if (f.min !== undefined && n < f.min) throw new ConfigError(`config key "${key}": ${n} is below the minimum ${f.min}`);
      if (f.max !== undefined && n > f.max) throw new ConfigError(`config key "${key}": ${n} is above the maximum ${f.max}`);
      return n;
    }
    case 'string':
      if (value === null && f.default === null) return null;
      if (typeof value !== 'string') return bad('a string');
      return value;
    case 'bool':
      if (fromText && typeof value === 'string') {
        if (['true', '1', 'yes', ''].includes(value)) return true;
        if (['false', '0', 'no'].includes(value)) return false;
      }
      if (typeof value !== 'boolean') return bad('true or false');
      return value;
    case 'enum':
      if (typeof value !== 'string' || !f.values.includes(value)) return bad(`one of ${f.values.join(' | ')}`);
      return value;
    case 'list': {
      let arr = value;
      if (fromText && typeof value === 'string') arr = value === '' ? [] : value.split(',');
      if (!Array.isArray(arr)) return bad(`a list of ${f.of}s`);
      return arr.map((x, i) => coerce(f.of === 'string' ? field.string('', '') : field.number(0, ''), x, `${key}[${i}]`, fromText));
    }
    case 'map': {
      let obj = value;
      if (fromText && typeof value === 'string') {
        try {
          obj = JSON.parse(value);
        } catch {
          return bad('a JSON object of strings');
        }
      }
      if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return bad('an object of strings');
      for (const [k, v] of Object.entries(obj)) if (typeof v !== 'string') coerce(field.string('', ''), v, `${key}.${k}`, false);
      return { ...(obj as Record<string, string>) };
    }
  }
}

function mergeInto(schema: Schema, target: Record<string, unknown>, source: unknown, prefix: string): void {
  if (typeof source !== 'object' || source === null || Array.isArray(source)) {
    throw new ConfigError(`config ${prefix ? `key "${prefix}"` : 'file'}: expected an object, got ${typeName(source)}`);
  }
  for (const [k, v] of Object.entries(source)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const f = schema[k];
    if (!f) throw new ConfigError(`unknown config key "${key}"${suggest(k, Object.keys(schema))}`);
    if (f.kind === 'object') mergeInto(f.fields, target[k] as Record<string, unknown>, v, key);
    else target[k] = coerce(f, v, key, false);
  }
}

function suggest(k: string, keys: string[]): string {
  const lower = k.toLowerCase().replace(/[-_]/g, '');
  const hit = keys.find((c) => c.toLowerCase().replace(/[-_]/g, '') === lower);
  return hit ? ` (did you mean "${hit}"?)` : ` (known keys: ${keys.join(', ')})`;
}

/** `--peak-lr` and `--optim.peak-lr` style flag names → camelCase dotted config paths. */
export function flagToKey(flag: string): string {
  return flag
    .replace(/^--/, '')
    .split('.')
    .map((part) => part.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase()))
    .join('.');
}

/** Sets a dotted path from a CLI string, parsing it by the field's type. */
function applyOverride(schema: Schema, target: Record<string, unknown>, dotted: string, raw: unknown): void {
  const parts = dotted.split('.');
  let s: Schema = schema;
  let t: Record<string, unknown> = target;
  for (let i = 0; i < parts.length; i++) {
    const key = parts.slice(0, i + 1).join('.');
    const f = s[parts[i]];
    if (!f) throw new ConfigError(`unknown config key "${key}"${suggest(parts[i], Object.keys(s))}`);
    if (i === parts.length - 1) {
      if (f.kind === 'object') throw new ConfigError(`config key "${key}" is a section; set one of its keys (${Object.keys(f.fields).join(', ')})`);
      t[parts[i]] = coerce(f, raw, key, typeof raw === 'string');
    } else {
      if (f.kind !== 'object') throw new ConfigError(`config key "${key}" is not a section`);
      s = f.fields;
      t = t[parts[i]] as Record<string, unknown>;
    }
  }
}

/** Reads a JSON or YAML config file (by extension; YAML is a superset of JSON anyway). */
export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    return path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message}`, { cause: e });
  }
}

export interface ResolveOptions {
  /** A config file path, or an already-parsed object. */
  file?: string | object | null;
  /** Overrides as dotted keys (CLI flags), strings are parsed by field type. */
  overrides?: Record<string, unknown>;
}

/** defaults ← file ← overrides, all validated. */
export function resolveConfig<S extends Schema>(schema: S, opts: ResolveOptions = {}): Infer<S> {
  const out = defaults(schema) as Record<string, unknown>;
  if (opts.file !== undefined && opts.file !== null) {
    const data = typeof opts.file === 'string' ? readConfigFile(opts.file) : opts.file;
    if (data !== null && data !== undefined) mergeInto(schema, out, data, '');
  }
  for (const [k, v] of Object.entries(opts.overrides ?? {})) applyOverride(schema, out, k, v);
  return out as Infer<S>;
}

/** Lines `key = default  # doc` for `--help-config`. */
export function describeSchema(schema: Schema, prefix = ''): string[] {
  const lines: string[] = [];
  for (const [k, f] of Object.entries(schema)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (f.kind === 'object') lines.push(...describeSchema(f.fields, key));
    else lines.push(`${key} = ${JSON.stringify(f.default)}${f.kind === 'enum' ? ` (${f.values.join('|')})` : ''}  # ${f.doc}`);
  }
  return lines;
}

/** Throws a ConfigError naming both values unless `ok`. */
export function checkInvariant(ok: boolean, message: string): void {
  if (!ok) throw new ConfigError(message);
}
