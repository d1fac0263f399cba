/**
 * The one normalisation step before tokenization, the same in training (src/bundle/featurize.ts) and serving
 * (src/engine/classifier.ts), with a map back to the caller's string:
 *
 *   1. Unicode NFKC, per base character with its combining marks (fullwidth "ｙｏｕ" -> "you", ligatures,
 *      compatibility digits; "e" + U+0301 -> "é")
 *   2. invisible characters removed: zero-width (U+200B-U+200D, U+2060-U+2064, U+FEFF, U+180E), bidi controls
 *      (U+200E, U+200F, U+061C, U+202A-U+202E, U+2066-U+2069), soft hyphen, combining grapheme joiner,
 *      Hangul fillers, variation selectors, and C0/C1 control characters other than whitespace (NUL ...)
 *   3. whitespace collapsed: a run of whitespace becomes one space, or one "\n" when it holds a line break
 *      (sentence boundaries survive); leading and trailing whitespace dropped
 *
 *   normalized.text[i]  comes from  original[start[i], end[i])     (UTF-16 code units)
 *
 * so a token's [s, e) in the normalised text maps to [start[s], end[e - 1]) in the original. A text whose
 * normalised form is empty has no visible characters: the service refuses it like "".
 */

export interface NormalizedText {
  text: string;
  /** per UTF-16 unit of `text`: where its source begins in the original string */
  start: Int32Array;
  /** per UTF-16 unit of `text`: where its source ends (exclusive) in the original string */
  end: Int32Array;
}

/** Removed outright (format and control characters that render as nothing), by UTF-16 code unit. */
function invisibleUnit(c: number): boolean {
  return (
    c <= 0x08 || (c >= 0x0e && c <= 0x1f) || (c >= 0x7f && c <= 0x84) || (c >= 0x86 && c <= 0x9f) || c === 0xad || c === 0x34f || c === 0x61c ||
    c === 0x115f || c === 0x1160 || c === 0x17b4 || c === 0x17b5 || (c >= 0x180b && c <= 0x180f) || (c >= 0x200b && c <= 0x200f) ||
    (c >= 0x202a && c <= 0x202e) || (c >= 0x2060 && c <= 0x206f) || c === 0x3164 || (c >= 0xfe00 && c <= 0xfe0f) || c === 0xfeff ||
    c === 0xffa0 || (c >= 0xfff9 && c <= 0xfffb)
  );
}
/** Variation selectors supplement U+E0100-U+E01EF (a surrogate pair \uDB40 \uDD00-\uDDEF). */
const invisiblePair = (hi: number, lo: number) => hi === 0xdb40 && lo >= 0xdd00 && lo <= 0xddef;
const lineBreakUnit = (c: number) => c === 0x0a || c === 0x0b || c === 0x0c || c === 0x0d || c === 0x85 || c === 0x2028 || c === 0x2029;
/** JavaScript's \s (ECMAScript WhiteSpace + LineTerminator) plus NEL; U+FEFF is invisible and removed first. */
const whitespaceUnit = (c: number) =>
  c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0x85 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000;
/** a base character followed by its combining marks: the unit NFKC is applied to */
const CLUSTER = /\P{M}\p{M}*|\p{M}+/gu;
const MARK = /^\p{M}/u;

/** NFKC with, per output code unit, the [start, end) of its source in `s`; runs NFKC leaves alone are copied. */
function nfkcMapped(s: string): { text: string; start: number[]; end: number[] } {
  const parts: string[] = [];
  const start: number[] = [], end: number[] = [];
  const identity = (from: number, to: number) => {
    parts.push(s.slice(from, to));
    for (let u = from; u < to; u++) {
      start.push(u);
      end.push(u + 1);
    }
  };
  const n = s.length;
  let i = 0;
  while (i < n) {
    // ASCII is NFKC-stable unless a combining mark follows it (then it is the base of a cluster)
    let j = i;
    while (j < n && s.charCodeAt(j) < 0x80 && !(j + 1 < n && s.charCodeAt(j + 1) >= 0x80 && MARK.test(s.slice(j + 1, j + 3)))) j++;
    if (j > i) identity(i, j);
    if (j >= n) break;
    // a run of other characters (with an ASCII base of a following mark), up to the next plain ASCII character
    let k = j + 1;
    while (k < n && (s.charCodeAt(k) >= 0x80 || (k + 1 < n && s.charCodeAt(k + 1) >= 0x80 && MARK.test(s.slice(k + 1, k + 3))))) k++;
    const run = s.slice(j, k);
    if (run.normalize('NFKC') === run) identity(j, k);
    else
      for (const m of run.matchAll(CLUSTER)) {
        const from = j + m.index, to = from + m[0].length;
        const piece = m[0].normalize('NFKC');
        parts.push(piece);
        for (let u = 0; u < piece.length; u++) {
          start.push(from);
          end.push(to);
        }
      }
    i = k;
  }
  return { text: parts.join(''), start, end };
}

export function normalizeText(original: string): NormalizedText {
  const k = nfkcMapped(original);
  const src = k.text;
  const n = src.length;
  const outStart = new Int32Array(n), outEnd = new Int32Array(n);
  const units: number[] = [];
  let pending: { from: number; to: number; lineBreak: boolean } | null = null;
  for (let i = 0; i < n; i++) {
    const c = src.charCodeAt(i);
    if (invisibleUnit(c)) continue;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && invisiblePair(c, src.charCodeAt(i + 1))) {
      i++;
      continue;
    }
    if (whitespaceUnit(c)) {
      if (pending) {
        pending.to = k.end[i];
        pending.lineBreak ||= lineBreakUnit(c);
      } else pending = { from: k.start[i], to: k.end[i], lineBreak: lineBreakUnit(c) };
      continue;
    }
    if (pending) {
      if (units.length > 0) {
        outStart[units.length] = pending.from;
        outEnd[units.length] = pending.to;
        units.push(pending.lineBreak ? 0x0a : 0x20);
      }
      pending = null;
    }
    outStart[units.length] = k.start[i];
    outEnd[units.length] = k.end[i];
    units.push(c);
  }
  let text = '';
  for (let a = 0; a < units.length; a += 8192) text += String.fromCharCode(...units.slice(a, a + 8192));
  return { text, start: outStart.slice(0, units.length), end: outEnd.slice(0, units.length) };
}

/** [s, e) in the normalised text -> [start, end) in the original string. */
export function originalSpan(n: NormalizedText, s: number, e: number): [number, number] {
  if (e <= s) {
    const at = s < n.start.length ? n.start[s] : s > 0 ? n.end[s - 1] : 0;
    return [at, at];
  }
  return [n.start[s], n.end[e - 1]];
}

/** Token offsets into the normalised text -> offsets into the original string. */
export function originalOffsets(n: NormalizedText, offsets: readonly (readonly [number, number])[]): [number, number][] {
  return offsets.map(([s, e]) => originalSpan(n, s, e));
}
