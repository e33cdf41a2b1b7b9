/**
 * Minimal RFC 4180 CSV: quoted fields with doubled quotes, embedded commas and newlines, CRLF or
 * LF line ends, a UTF-8 BOM. Enough for the LoViF input.csv and our own outputs; no dialects.
 */
import { DataError } from '@smolrate/core';

/** Parses CSV text into rows of fields (a trailing empty line is dropped). */
export function parseCsv(text: string, what = 'CSV'): string[][] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  let line = 1;
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i++;
        continue;
      }
      if (c === '\n') line++;
      field += c;
      i++;
      continue;
    }
    if (c === '"') {
      if (field.length > 0) throw new DataError(`${what}: line ${line}: a quote inside an unquoted field`);
      quoted = true;
    } else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      line++;
    } else {
      field += c;
    }
    i++;
  }
  if (quoted) throw new DataError(`${what}: unterminated quoted field at end of input`);
  if (field.length > 0 || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0] === ''));
}

/** Rows as objects keyed by the header; `required` columns must be present. */
export function parseCsvRecords(text: string, required: readonly string[], what = 'CSV'): Array<Record<string, string>> {
  const rows = parseCsv(text, what);
  if (rows.length === 0) throw new DataError(`${what}: empty file (no header)`);
  const header = rows[0].map((h) => h.trim());
  const missing = required.filter((r) => !header.includes(r));
  if (missing.length > 0) throw new DataError(`${what}: missing column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (header: ${header.join(',')})`);
  return rows.slice(1).map((r, i) => {
    if (r.length !== header.length) throw new DataError(`${what}: row ${i + 2} has ${r.length} fields, the header has ${header.length}`);
    return Object.fromEntries(header.map((h, j) => [h, r[j]]));
  });
}

function quote(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** CSV text with a header line; numbers are written as given (String(n)). */
export function formatCsv(header: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  return [header, ...rows].map((r) => r.map((v) => quote(String(v))).join(',')).join('\n') + '\n';
}
