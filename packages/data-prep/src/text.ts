/**
 * Text normalisation for title / description / features. Deliberately light: the text is kept as
 * the source gives it (no Unicode normal form, no mojibake repair — the paper trains on the raw
 * strings), and only what would break storage or waste the 1,000-code-point budget is changed:
 *
 *  - control characters (Unicode Cc: C0, DEL, C1) are removed, except whitespace;
 *  - every run of whitespace (tab, newline, NBSP, ideographic space, …) becomes one space; trimmed;
 *  - lone UTF-16 surrogates (from `\ud83d`-style escapes cut in half) become U+FFFD, which is what
 *    a UTF-8 writer would silently do anyway — doing it here keeps the cap and the bytes stable;
 *  - caps count code points, never UTF-16 units, so an emoji is never split.
 */

// Cc minus the whitespace members (\t \n \v \f \r, U+0085 NEL): those are collapsed to a space.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000e-\u001f\u007f-\u0084\u0086-\u009f]/g;
const WHITESPACE = /[\s\u0085]+/g; // JS \s lacks NEL
// Without the `u` flag these match UTF-16 units, so a valid pair is neither "lone" case.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
// Fast path: plain printable ASCII without doubled or edge spaces needs no work.
const NEEDS_CLEANING = /[^\u0020-\u007e]|\s\s|^\s|\s$/;

/** Control characters removed, whitespace collapsed to single spaces, trimmed, lone surrogates → U+FFFD. */
export function cleanText(s: string): string {
  if (!NEEDS_CLEANING.test(s)) return s;
  return s.replace(CONTROL, '').replace(LONE_SURROGATE, '\ufffd').replace(WHITESPACE, ' ').trim();
}

/** The first `max` code points of `s` (the whole string when shorter), trailing space trimmed. */
export function capCodePoints(s: string, max: number): string {
  // Every code point is 1 or 2 units, so a string of ≤ max units is within the cap.
  if (s.length <= max) return s;
  let units = 0;
  let points = 0;
  while (units < s.length && points < max) {
    const c = s.charCodeAt(units);
    const pair = c >= 0xd800 && c <= 0xdbff && units + 1 < s.length && (s.charCodeAt(units + 1) & 0xfc00) === 0xdc00;
    units += pair ? 2 : 1;
    points++;
  }
  return units >= s.length ? s : s.slice(0, units).trimEnd();
}

/** Cleans each part, drops the empty ones, joins with " " and caps the result. */
export function joinText(parts: readonly string[], maxChars: number): string {
  const kept: string[] = [];
  for (const p of parts) {
    const c = cleanText(p);
    if (c !== '') kept.push(c);
  }
  return capCodePoints(kept.join(' '), maxChars);
}

/**
 * Cleans each part and drops the empty ones, then keeps as many as fit so that their " "-join
 * (how the prompt uses them) is at most `maxChars` code points; the last one kept may be cut.
 * The shard format caps `features` this way (core schema.ts).
 */
export function capTextList(parts: readonly string[], maxChars: number): string[] {
  const out: string[] = [];
  let budget = maxChars;
  for (const p of parts) {
    const c = cleanText(p);
    if (c === '') continue;
    const room = out.length === 0 ? budget : budget - 1; // the joining space
    if (room <= 0) break;
    const cut = capCodePoints(c, room);
    if (cut === '') break;
    out.push(cut);
    budget = room - codePoints(cut);
    if (cut.length < c.length) break;
  }
  return out;
}

/** Number of code points in `s`. */
export function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n--;
      i++;
    }
  }
  return n;
}
