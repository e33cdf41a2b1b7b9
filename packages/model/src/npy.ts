/**
 * A small reader/writer for NumPy's `.npy` format (numpy/lib/format.py), enough for pixel arrays:
 * the magic `\x93NUMPY`, a version (1.0: 2-byte header length; 2.0 and 3.0: 4-byte), a header
 * that is a Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (H, W, 3), }`
 * padded with spaces and ended by '\n', then the raw C-order data. Only float32 (`<f4`) and uint8
 * (`|u1`) are supported; anything else is a DataError that says what was found and what to do.
 * The writer reproduces numpy's own bytes (`np.save`) for these dtypes.
 */
import { DataError } from '@smolrate/core';

export type NpyDtype = 'float32' | 'uint8';

export interface NpyArray {
  dtype: NpyDtype;
  /** C-order shape; `[]` for a scalar. */
  shape: number[];
  /** Row-major values: a view into the input when aligned (float32) or always (uint8). */
  data: Float32Array | Uint8Array;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const MAGIC_LEN = MAGIC.length + 2; // + major, minor
/** numpy pads the header so the data starts at a multiple of 64 bytes (ARRAY_ALIGN). */
const ARRAY_ALIGN = 64;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Accepted descr strings. Byte order is meaningless for one-byte types, so every spelling of u1 is. */
const DESCR: Record<string, NpyDtype> = { '<f4': 'float32', '|u1': 'uint8', '<u1': 'uint8', '>u1': 'uint8', '=u1': 'uint8', u1: 'uint8' };

function fail(what: string, message: string): never {
  throw new DataError(`${what}: ${message}`);
}

/** A hint for the dtypes people most often have instead of float32. */
function dtypeHint(descr: string): string {
  if (/^[<>=|]?f8$/.test(descr)) return 'float64: save it with arr.astype(np.float32)';
  if (/^[<>=|]?f2$/.test(descr)) return 'float16: save it with arr.astype(np.float32)';
  if (descr === '>f4') return 'big-endian float32: save it with arr.astype("<f4")';
  return 'save it with arr.astype(np.float32)';
}

// ---- a parser for the header's Python literal (dicts, tuples, strings, ints, booleans) ----

type PyValue = string | number | boolean | null | PyValue[] | { [k: string]: PyValue };

class LiteralParser {
  private pos = 0;
  constructor(
    private readonly s: string,
    private readonly what: string,
  ) {}

  parse(): PyValue {
    const v = this.value();
    this.ws();
    if (this.pos !== this.s.length) this.error(`unexpected ${JSON.stringify(this.s.slice(this.pos, this.pos + 10))}`);
    return v;
  }

  private error(message: string): never {
    return fail(this.what, `malformed header ${JSON.stringify(this.s.length > 200 ? this.s.slice(0, 200) + '…' : this.s)}: ${message} at character ${this.pos}`);
  }

  private ws(): void {
    while (this.pos < this.s.length && /\s/.test(this.s[this.pos])) this.pos++;
  }

  private value(): PyValue {
    this.ws();
    const c = this.s[this.pos];
    if (c === '{') return this.dict();
    if (c === '(' || c === '[') return this.sequence(c === '(' ? ')' : ']');
    if (c === "'" || c === '"') return this.string();
    const word = /^(True|False|None|-?\d+L?)/.exec(this.s.slice(this.pos));
    if (!word) this.error('expected a value');
    this.pos += word[0].length;
    if (word[0] === 'True') return true;
    if (word[0] === 'False') return false;
    if (word[0] === 'None') return null;
    return Number(word[0].replace(/L$/, '')); // Python 2 wrote 3L for longs
  }

  private string(): string {
    const quote = this.s[this.pos++];
    let out = '';
    while (this.pos < this.s.length && this.s[this.pos] !== quote) {
      if (this.s[this.pos] === '\\') this.pos++;
      out += this.s[this.pos++];
    }
    if (this.pos >= this.s.length) this.error('unterminated string');
    this.pos++;
    return out;
  }

  private sequence(close: string): PyValue[] {
    this.pos++;
    const out: PyValue[] = [];
    for (;;) {
      this.ws();
      if (this.s[this.pos] === close) break;
      out.push(this.value());
      this.ws();
      if (this.s[this.pos] === ',') this.pos++;
      else if (this.s[this.pos] !== close) this.error(`expected "," or "${close}"`);
    }
    this.pos++;
    return out;
  }

  private dict(): { [k: string]: PyValue } {
    this.pos++;
    const out: { [k: string]: PyValue } = {};
    for (;;) {
      this.ws();
      if (this.s[this.pos] === '}') break;
      const c = this.s[this.pos];
      if (c !== "'" && c !== '"') this.error('expected a string key');
      const key = this.string();
      this.ws();
      if (this.s[this.pos] !== ':') this.error('expected ":"');
      this.pos++;
      out[key] = this.value();
      this.ws();
      if (this.s[this.pos] === ',') this.pos++;
      else if (this.s[this.pos] !== '}') this.error('expected "," or "}"');
    }
    this.pos++;
    return out;
  }
}

interface NpyHeader {
  version: [number, number];
  descr: string;
  fortranOrder: boolean;
  shape: number[];
  dataStart: number;
}

function parseHeader(bytes: Uint8Array, what: string): NpyHeader {
  if (bytes.length < MAGIC_LEN || MAGIC.some((b, i) => bytes[i] !== b)) {
    fail(what, 'not a .npy file (it does not start with "\\x93NUMPY")');
  }
  const major = bytes[6];
  const minor = bytes[7];
  if (!(minor === 0 && (major === 1 || major === 2 || major === 3))) {
    fail(what, `unsupported .npy format version ${major}.${minor} (known: 1.0, 2.0, 3.0)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenBytes = major === 1 ? 2 : 4;
  if (bytes.length < MAGIC_LEN + lenBytes) fail(what, `file ends inside the header length (${bytes.length} bytes)`);
  const headerLen = major === 1 ? view.getUint16(MAGIC_LEN, true) : view.getUint32(MAGIC_LEN, true);
  const start = MAGIC_LEN + lenBytes;
  const dataStart = start + headerLen;
  if (dataStart > bytes.length) fail(what, `header length ${headerLen} runs past the end of the ${bytes.length}-byte file`);
  let text: string;
  try {
    // 1.0 and 2.0 headers are latin-1 (in practice ASCII); 3.0 allows UTF-8.
    text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1', { fatal: major === 3 }).decode(bytes.subarray(start, dataStart));
  } catch {
    fail(what, 'header is not valid UTF-8');
  }
  if (!text.endsWith('\n')) fail(what, 'header does not end with a newline (truncated or not written by numpy)');

  const dict = new LiteralParser(text.trim(), what).parse();
  if (typeof dict !== 'object' || dict === null || Array.isArray(dict)) fail(what, `header is not a dict: ${text.trim()}`);
  const keys = Object.keys(dict).sort();
  if (keys.join(',') !== 'descr,fortran_order,shape') {
    fail(what, `header must have exactly the keys descr, fortran_order, shape; got ${keys.join(', ') || 'none'}`);
  }
  const { descr, fortran_order: fortranOrder, shape } = dict as Record<string, PyValue>;
  if (typeof descr !== 'string') fail(what, `descr must be a dtype string, got ${JSON.stringify(descr)} (structured arrays are not supported)`);
  if (typeof fortranOrder !== 'boolean') fail(what, `fortran_order must be True or False, got ${JSON.stringify(fortranOrder)}`);
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    fail(what, `shape must be a tuple of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  return { version: [major, minor], descr, fortranOrder, shape: shape as number[], dataStart };
}

/**
 * Parses a `.npy` file held in memory. float32 data is a view into `bytes` when 4-byte aligned
 * (numpy's 64-byte header alignment makes that the usual case), else a copy; uint8 data is a view.
 * `what` names the source in error messages (e.g. the file path).
 */
export function readNpy(bytes: Uint8Array, what = 'npy'): NpyArray {
  const h = parseHeader(bytes, what);
  const dtype = DESCR[h.descr];
  if (dtype === undefined) fail(what, `dtype ${JSON.stringify(h.descr)} is not supported (only float32 "<f4" and uint8 "|u1"): ${dtypeHint(h.descr)}`);
  if (h.fortranOrder && h.shape.filter((d) => d > 1).length > 1) {
    fail(what, `array is in Fortran order; save a C-ordered copy (np.ascontiguousarray(arr))`);
  }
  let count = 1;
  for (const d of h.shape) count *= d;
  if (!Number.isSafeInteger(count)) fail(what, `shape (${h.shape.join(', ')}) has too many elements`);
  const itemSize = dtype === 'float32' ? 4 : 1;
  const need = count * itemSize;
  const have = bytes.length - h.dataStart;
  if (have !== need) {
    fail(what, `shape (${h.shape.join(', ')}) of ${h.descr} needs ${need} data bytes, the file has ${have}${have < need ? ' (truncated)' : ' (trailing bytes)'}`);
  }
  const abs = bytes.byteOffset + h.dataStart;
  if (dtype === 'uint8') return { dtype, shape: h.shape, data: new Uint8Array(bytes.buffer, abs, count) };
  let data: Float32Array;
  if (LITTLE_ENDIAN && abs % 4 === 0) data = new Float32Array(bytes.buffer, abs, count);
  else {
    data = new Float32Array(count);
    const view = new DataView(bytes.buffer, abs, need);
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(4 * i, true);
  }
  return { dtype, shape: h.shape, data };
}

/** numpy's repr of a shape tuple: `()`, `(3,)`, `(2, 3)`. */
function shapeRepr(shape: readonly number[]): string {
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(', ')})`;
}

/**
 * Serialises a C-order float32 or uint8 array as `.npy`, byte-for-byte like `np.save` (format 1.0,
 * or 2.0 when the header would not fit 1.0's 16-bit length).
 */
export function writeNpy(array: { shape: readonly number[]; data: Float32Array | Uint8Array }): Buffer {
  const { shape, data } = array;
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new DataError(`writeNpy: shape [${shape.join(', ')}] is not a list of non-negative integers`);
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new DataError(`writeNpy: shape [${shape.join(', ')}] holds ${count} values but the data has ${data.length}`);
  const descr = data instanceof Float32Array ? '<f4' : '|u1';
  // np.lib.format: keys sorted, "'key': repr(value), " each, in braces.
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeRepr(shape)}, }`;
  const hlen = dict.length + 1; // + '\n'
  let version = 1;
  let lenBytes = 2;
  let padlen = ARRAY_ALIGN - ((MAGIC_LEN + lenBytes + hlen) % ARRAY_ALIGN);
  if (hlen + padlen > 0xffff) {
    version = 2;
    lenBytes = 4;
    padlen = ARRAY_ALIGN - ((MAGIC_LEN + lenBytes + hlen) % ARRAY_ALIGN);
  }
  const headerEnd = MAGIC_LEN + lenBytes + hlen + padlen;
  const out = Buffer.allocUnsafe(headerEnd + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = version;
  out[7] = 0;
  if (version === 1) out.writeUInt16LE(hlen + padlen, MAGIC_LEN);
  else out.writeUInt32LE(hlen + padlen, MAGIC_LEN);
  out.write(dict + ' '.repeat(padlen) + '\n', MAGIC_LEN + lenBytes, 'latin1');
  if (data instanceof Uint8Array || LITTLE_ENDIAN) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), headerEnd);
  } else {
    for (let i = 0; i < data.length; i++) out.writeFloatLE(data[i], headerEnd + 4 * i);
  }
  return out;
}
