/**
 * The feature kernel against its JS definitions: the decode of every one of the 65,536 bf16 and
 * IEEE-half words equals grad-transport.ts fromBf16 / tests/f16-reference.ts fromF16 (bit for bit; NaN stays NaN), f32
 * is a copy, and the checksum equals `entryChecksumReference` at every length mod 16 (the scalar
 * tail) and catches a flipped bit, swapped words and a zeroed block. (The committed binary is
 * what tools/build-wasm.mjs builds: reduce-kernel.spec.ts checks every kernel.)
 */
import { Rng } from '@smolrate/core';
import { describe, expect, it } from 'vitest';
import { EntryDecoder, entryChecksum, entryChecksumReference } from './feature-kernel.js';
import { fromF16 } from '../tests/f16-reference.js';
import { fromBf16 } from './grad-transport.js';

const words = Uint16Array.from({ length: 0x10000 }, (_, i) => i);
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function decodeAll(dtype: 'bf16' | 'f16', src: Uint16Array): Float32Array {
  const dec = new EntryDecoder({ slots: 2, slotBytes: src.byteLength, entryValues: src.length });
  dec.slot(1).set(bytesOf(src));
  const out = new Float32Array(src.length);
  const sum = dec.decode(1, 0, src.byteLength, dtype, out);
  expect(sum).toBe(entryChecksumReference(bytesOf(src)));
  return out;
}

/** Same float32 bits, except that any NaN matches any NaN. */
function sameValues(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) if (x[i] !== y[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

describe('feature kernel decode', () => {
  it('bf16: all 65,536 words widen to exactly fromBf16', () => {
    expect(sameValues(decodeAll('bf16', words), fromBf16(words, new Float32Array(0x10000)))).toBe(true);
  });

  it('f16: all 65,536 halves (normals, subnormals, ±0, ±Inf, NaN) widen to exactly fromF16', () => {
    const got = decodeAll('f16', words);
    expect(sameValues(got, fromF16(words, new Float32Array(0x10000)))).toBe(true);
    expect(Object.is(got[0x8000], -0)).toBe(true);
    expect(got[1]).toBe(2 ** -24);
  });

  it('odd value counts (the scalar tail) and offsets inside a slot; f32 is a copy', () => {
    const rng = new Rng(3, 'feature-kernel');
    for (const n of [1, 2, 3, 7, 8, 9, 15, 17, 2075]) {
      const src = Uint16Array.from({ length: n }, () => rng.int(0x10000));
      const dec = new EntryDecoder({ slots: 1, slotBytes: 4 * n + 64, entryValues: n });
      dec.slot(0).set(bytesOf(src), 6);
      const out = new Float32Array(n);
      expect(dec.decode(0, 6, 2 * n, 'bf16', out), `n=${n}`).toBe(entryChecksumReference(bytesOf(src)));
      expect(sameValues(out, fromBf16(src, new Float32Array(n))), `bf16 n=${n}`).toBe(true);
      expect(dec.decode(0, 6, 2 * n, 'f16', out), `n=${n}`).toBe(entryChecksumReference(bytesOf(src)));
      expect(sameValues(out, fromF16(src, new Float32Array(n))), `f16 n=${n}`).toBe(true);
      const f = Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
      dec.slot(0).set(bytesOf(f), 4);
      expect(dec.decode(0, 4, 4 * n, 'f32', out)).toBe(entryChecksumReference(bytesOf(f)));
      expect(sameValues(out, f), `f32 n=${n}`).toBe(true);
    }
  });

  it('decodes straight into its output areas what it decodes into a plain array, and hands each area out once', () => {
    const n = 4096;
    const src = Uint16Array.from({ length: 2 * n }, (_, i) => (i * 2654435761) >>> 16);
    const dec = new EntryDecoder({ slots: 1, slotBytes: src.byteLength, entryValues: n, outputs: 2, outputValues: 2 * n });
    dec.slot(0).set(bytesOf(src));
    expect(dec.output(n)).toBeNull(); // another size
    const area = dec.output(2 * n)!;
    expect(area.buffer).not.toBe(new Float32Array(1).buffer);
    const second = dec.output(2 * n)!;
    expect(second.byteOffset).toBeGreaterThanOrEqual(area.byteOffset + area.byteLength);
    expect(dec.output(2 * n)).toBeNull(); // all given
    for (const dtype of ['bf16', 'f16'] as const) {
      const plain = new Float32Array(2 * n);
      for (let e = 0; e < 2; e++) {
        const at = e * n * 2;
        const want = dec.decode(0, at, 2 * n, dtype, plain.subarray(e * n, (e + 1) * n));
        expect(dec.decode(0, at, 2 * n, dtype, second.subarray(e * n, (e + 1) * n))).toBe(want);
      }
      expect(sameValues(second, plain), dtype).toBe(true);
      expect(sameValues(area, new Float32Array(2 * n)), 'the other area is untouched').toBe(true);
    }
  });

  it('refuses a wrong output size or a range outside the slot', () => {
    const dec = new EntryDecoder({ slots: 1, slotBytes: 64, entryValues: 8 });
    expect(() => dec.decode(0, 0, 16, 'bf16', new Float32Array(7))).toThrow(RangeError);
    expect(() => dec.decode(0, dec.slotStride - 8, 16, 'bf16', new Float32Array(8))).toThrow(RangeError);
    expect(() => dec.decode(0, 0, 18, 'bf16', new Float32Array(8))).toThrow(RangeError);
  });
});

describe('entry checksum', () => {
  it('equals the JS definition at every length mod 16', () => {
    const rng = new Rng(5, 'checksum');
    for (let n = 0; n < 70; n++) {
      const b = Uint8Array.from({ length: n }, () => rng.int(256));
      expect(entryChecksum(b), `n=${n}`).toBe(entryChecksumReference(b));
    }
    const big = Uint8Array.from({ length: 41_472 }, () => rng.int(256));
    expect(entryChecksum(big)).toBe(entryChecksumReference(big));
  });

  it('changes with a flipped bit, two swapped words or a zeroed 4 KiB block', () => {
    const rng = new Rng(6, 'checksum-damage');
    const b = Uint8Array.from({ length: 41_472 }, () => rng.int(256));
    const base = entryChecksum(b);
    const flip = b.slice();
    flip[12_345] ^= 0x20;
    expect(entryChecksum(flip)).not.toBe(base);
    const swap = b.slice();
    swap.set(b.subarray(100, 104), 116);
    swap.set(b.subarray(116, 120), 100);
    expect(entryChecksum(swap)).not.toBe(base);
    const zero = b.slice();
    zero.fill(0, 8192, 12_288);
    expect(entryChecksum(zero)).not.toBe(base);
    // Same-lane swap four words apart: a is unchanged, b is not.
    const lane = b.slice();
    lane.set(b.subarray(200, 204), 216);
    lane.set(b.subarray(216, 220), 200);
    expect(entryChecksum(lane)).not.toBe(base);
  });
});
