/**
 * Canonical JSON: object keys sorted (by UTF-16 code units), fixed indentation, only JSON values.
 * The same value always gives the same bytes — unlike JSON.stringify, whose key order follows
 * insertion order and always puts integer-like keys ("10", "9") first in numeric order.
 */
import { DataError } from '../errors.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * Serialises `value` canonically with `indent` spaces per level (0: one line). Object properties
 * whose value is `undefined` are omitted, as JSON.stringify does; anything else that is not JSON
 * (NaN, Infinity, bigint, functions, class instances, `undefined` in arrays, cycles) is a
 * DataError naming its path.
 */
export function canonicalJson(value: unknown, indent = 2): string {
  const seen = new Set<object>();
  const nl = indent > 0 ? '\n' : '';
  const colon = indent > 0 ? ': ' : ':';

  const emit = (v: unknown, path: string, depth: number): string => {
    if (v === null) return 'null';
    switch (typeof v) {
      case 'boolean':
        return v ? 'true' : 'false';
      case 'string':
        return JSON.stringify(v);
      case 'number':
        if (!Number.isFinite(v)) throw new DataError(`${path}: ${v} is not representable in JSON`);
        return JSON.stringify(v);
      case 'object':
        break;
      default:
        throw new DataError(`${path}: a ${typeof v} is not a JSON value`);
    }
    const obj = v as object;
    if (seen.has(obj)) throw new DataError(`${path}: circular reference`);
    const pad = ' '.repeat(indent * (depth + 1));
    const end = ' '.repeat(indent * depth);
    seen.add(obj);
    try {
      if (Array.isArray(obj)) {
        if (obj.length === 0) return '[]';
        const items = obj.map((item: unknown, i) => {
          if (item === undefined) throw new DataError(`${path}[${i}]: undefined is not a JSON value`);
          return pad + emit(item, `${path}[${i}]`, depth + 1);
        });
        return `[${nl}${items.join(`,${nl}`)}${nl}${end}]`;
      }
      if (!isPlainObject(obj)) throw new DataError(`${path}: a ${obj.constructor?.name ?? 'non-plain'} object is not a JSON value`);
      const rec = obj as Record<string, unknown>;
      const keys = Object.keys(rec)
        .filter((k) => rec[k] !== undefined)
        .sort();
      if (keys.length === 0) return '{}';
      const members = keys.map((k) => `${pad}${JSON.stringify(k)}${colon}${emit(rec[k], `${path}.${k}`, depth + 1)}`);
      return `{${nl}${members.join(`,${nl}`)}${nl}${end}}`;
    } finally {
      seen.delete(obj);
    }
  };

  return emit(value, '$', 0);
}
