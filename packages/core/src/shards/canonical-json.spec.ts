import { describe, expect, it } from 'vitest';
import { DataError } from '../errors.js';
import { canonicalJson } from './canonical-json.js';

describe('canonicalJson', () => {
  it('sorts keys by code unit at every depth, integer-like keys included', () => {
    const a = { b: 1, a: { z: [3, { y: null, x: true }], '10': 'ten', '9': 'nine' }, é: 'e-acute', Z: 0 };
    expect(canonicalJson(a, 0)).toBe('{"Z":0,"a":{"10":"ten","9":"nine","z":[3,{"x":true,"y":null}]},"b":1,"é":"e-acute"}');
    // JSON.stringify would put "9" and "10" first in numeric order, whatever the insertion order.
    expect(JSON.stringify({ a: 1, '10': 2, '9': 3 })).toBe('{"9":3,"10":2,"a":1}');
  });

  it('gives the same bytes for the same value built in any order', () => {
    const one = { x: 1, y: [1, 2], nested: { b: 'b', a: 'a' } };
    const two = { nested: { a: 'a', b: 'b' }, y: [1, 2], x: 1 };
    expect(canonicalJson(one)).toBe(canonicalJson(two));
    expect(canonicalJson(one)).toBe('{\n  "nested": {\n    "a": "a",\n    "b": "b"\n  },\n  "x": 1,\n  "y": [\n    1,\n    2\n  ]\n}');
    expect(canonicalJson({ e: [], o: {}, s: '😀\n"' }, 0)).toBe('{"e":[],"o":{},"s":"😀\\n\\""}');
  });

  it('omits undefined properties like JSON.stringify, and rejects what JSON cannot hold', () => {
    expect(canonicalJson({ a: undefined, b: 1 }, 0)).toBe('{"b":1}');
    const bad: Array<[unknown, RegExp]> = [
      [{ x: Number.NaN }, /\$\.x: NaN is not representable/],
      [{ x: [1, Infinity] }, /\$\.x\[1\]: Infinity is not representable/],
      [{ x: [undefined] }, /\$\.x\[0\]: undefined is not a JSON value/],
      [{ x: 1n }, /\$\.x: a bigint is not a JSON value/],
      [{ x: new Date(0) }, /\$\.x: a Date object is not a JSON value/],
      [{ x: () => 1 }, /\$\.x: a function is not a JSON value/],
    ];
    for (const [value, message] of bad) {
      expect(() => canonicalJson(value)).toThrow(DataError);
      expect(() => canonicalJson(value)).toThrow(message);
    }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(/\$\.self: circular reference/);
    const shared = { k: 1 };
    expect(canonicalJson({ a: shared, b: shared }, 0)).toBe('{"a":{"k":1},"b":{"k":1}}'); // not a cycle
  });
});
