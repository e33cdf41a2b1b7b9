import { describe, expect, it } from 'vitest';
import { DataError } from '@smolrate/core';
import { readNpy, writeNpy } from './npy.js';

/** A .npy file from a header dict literal and data bytes (header padded like numpy, or not). */
function npyBytes(dict: string, data: Uint8Array, opts: { version?: 1 | 2 | 3; align?: boolean } = {}): Buffer {
  const version = opts.version ?? 1;
  const lenBytes = version === 1 ? 2 : 4;
  let header = dict;
  if (opts.align ?? true) {
    const hlen = header.length + 1;
    header += ' '.repeat(64 - ((8 + lenBytes + hlen) % 64));
  }
  header += '\n';
  const h = Buffer.from(header, version === 3 ? 'utf8' : 'latin1');
  const pre = Buffer.alloc(8 + lenBytes);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]).copy(pre);
  if (version === 1) pre.writeUInt16LE(h.length, 8);
  else pre.writeUInt32LE(h.length, 8);
  return Buffer.concat([pre, h, data]);
}

const f32 = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);

function expectDataError(f: () => unknown, ...parts: string[]): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DataError);
  for (const p of parts) expect((err as Error).message).toContain(p);
}

describe('writeNpy', () => {
  it('writes the bytes np.save writes (numpy 1.24, format 1.0, 64-byte aligned)', () => {
    // np.save(f, (np.arange(18, dtype=np.float32).reshape(2, 3, 3) * 0.5 - 1))
    const values = Array.from({ length: 18 }, (_, i) => i * 0.5 - 1);
    const bytes = writeNpy({ shape: [2, 3, 3], data: new Float32Array(values) });
    const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 3), }" + ' '.repeat(55) + '\n';
    expect(bytes.subarray(0, 10)).toEqual(Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0x76, 0]));
    expect(bytes.subarray(10, 128).toString('latin1')).toBe(header);
    expect(bytes.length).toBe(128 + 72);
    expect(bytes.subarray(128)).toEqual(Buffer.from(f32(values)));
    // np.save(f, np.array([7, 8], dtype=np.uint8)) and the 0-d float32 2.5
    expect(writeNpy({ shape: [2], data: new Uint8Array([7, 8]) }).toString('latin1')).toBe(
      "\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }" + ' '.repeat(60) + '\n\x07\x08',
    );
    expect(writeNpy({ shape: [], data: new Float32Array([2.5]) }).subarray(10, 128).toString('latin1')).toBe(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (), }" + ' '.repeat(62) + '\n',
    );
  });

  it('refuses data that does not fill the shape', () => {
    expectDataError(() => writeNpy({ shape: [2, 2], data: new Float32Array(3) }), '[2, 2]', '4 values', '3');
    expectDataError(() => writeNpy({ shape: [-1], data: new Float32Array(0) }), 'non-negative');
  });
});

describe('readNpy', () => {
  it('round-trips float32 and uint8 arrays bit-exactly', () => {
    const data = new Float32Array([0, -0, 1.5, -1, 3.4028234663852886e38, 1e-45, NaN, Infinity, -0.25, 0.1, 2, 3]);
    const back = readNpy(writeNpy({ shape: [2, 2, 3], data }));
    expect(back.dtype).toBe('float32');
    expect(back.shape).toEqual([2, 2, 3]);
    expect(Buffer.from((back.data as Float32Array).buffer, back.data.byteOffset, back.data.byteLength)).toEqual(Buffer.from(data.buffer));
    const u8 = new Uint8Array(4 * 4 * 3).map((_, i) => (i * 37) % 256);
    const u = readNpy(writeNpy({ shape: [4, 4, 3], data: u8 }));
    expect(u).toEqual({ dtype: 'uint8', shape: [4, 4, 3], data: u8 });
    expect(readNpy(writeNpy({ shape: [], data: new Float32Array([2.5]) }))).toMatchObject({ shape: [], data: new Float32Array([2.5]) });
    expect(readNpy(writeNpy({ shape: [0, 3], data: new Float32Array(0) })).shape).toEqual([0, 3]);
  });

  it('reads version 2.0 and 3.0 headers, unaligned headers, other uint8 spellings, 1-d Fortran order', () => {
    const v2 = readNpy(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f32([1, 2, 3]), { version: 2 }));
    expect(v2).toMatchObject({ dtype: 'float32', shape: [3], data: new Float32Array([1, 2, 3]) });
    const v3 = readNpy(npyBytes("{'shape': (1, 2), 'fortran_order': False, 'descr': '<f4'}", f32([5, 6]), { version: 3 }));
    expect(v3).toMatchObject({ shape: [1, 2], data: new Float32Array([5, 6]) });
    // A header of odd length puts the float data off 4-byte alignment: it is copied, not viewed.
    const odd = readNpy(npyBytes("{'descr':'<f4','fortran_order':False,'shape':(2,)}", f32([7, 8]), { align: false }));
    expect(odd.data).toEqual(new Float32Array([7, 8]));
    expect(readNpy(npyBytes("{'descr': 'u1', 'fortran_order': False, 'shape': (2L,), }", new Uint8Array([1, 2]))).data).toEqual(new Uint8Array([1, 2]));
    expect(readNpy(npyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", f32([1, 2]))).data).toEqual(new Float32Array([1, 2]));
  });

  it('gives clear errors for malformed files', () => {
    const ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    expectDataError(() => readNpy(Buffer.from('PK\x03\x04 a zip file'), 'x.npy'), 'x.npy', 'not a .npy file');
    expectDataError(() => readNpy(Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 4, 0, 10, 0])), 'version 4.0');
    expectDataError(() => readNpy(Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0xff])), 'header length');
    expectDataError(() => readNpy(npyBytes(ok, f32([1, 2])).subarray(0, 40)), 'runs past the end');
    expectDataError(() => readNpy(npyBytes(ok, f32([1]))), 'needs 8 data bytes', 'has 4', 'truncated');
    expectDataError(() => readNpy(npyBytes(ok, f32([1, 2, 3]))), 'trailing bytes');
    expectDataError(() => readNpy(npyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(8))), '"<f8"', 'float64', 'astype(np.float32)');
    expectDataError(() => readNpy(npyBytes("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(4))), 'big-endian');
    expectDataError(() => readNpy(npyBytes("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(8))), '"<i8" is not supported');
    expectDataError(() => readNpy(npyBytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", new Uint8Array(4))), 'structured');
    expectDataError(() => readNpy(npyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f32([1, 2, 3, 4]))), 'Fortran order', 'ascontiguousarray');
    expectDataError(() => readNpy(npyBytes("{'descr': '<f4', 'shape': (2,), }", f32([1, 2]))), 'exactly the keys', 'descr, shape');
    expectDataError(() => readNpy(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }", f32([1, 2]))), 'shape must be a tuple of non-negative integers');
    expectDataError(() => readNpy(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ", f32([1, 2]))), 'malformed header', 'expected "," or "}"');
    expectDataError(() => readNpy(npyBytes("{'descr: '<f4'}", f32([1, 2]))), 'malformed header');
    expectDataError(() => readNpy(npyBytes('[1, 2]', f32([1, 2]))), 'not a dict');
    const noNewline = npyBytes(ok, f32([1, 2]));
    noNewline[noNewline.length - 9] = 0x20; // the header's final '\n'
    expectDataError(() => readNpy(noNewline), 'does not end with a newline');
  });
});
