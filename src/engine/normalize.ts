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

/** Removed outright (format and control characters that render as nothing). */
const INVISIBLE = /[\u0000-\u0008\u000E-\u001F\u007F-\u0084\u0086-\u009F\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF9-\uFFFB]|\uDB40[\uDD00-\uDDEF]/u;
const WHITESPACE = /\s/u;
const LINE_BREAK = /[\n\v\f\r\u0085\u2028\u2029]/u;
/** a base character followed by its combining marks: the unit NFKC is applied to */
const CLUSTER = /\P{M}\p{M}*|\p{M}+/gu;

export function normalizeText(original: string): NormalizedText {
  let text = '';
  const start: number[] = [];
  const end: number[] = [];
  let pendingSpace: { from: number; to: number; lineBreak: boolean } | null = null;
  const emit = (s: string, from: number, to: number) => {
    for (let u = 0; u < s.length; u++) {
      start.push(from);
      end.push(to);
    }
    text += s;
  };
  for (const m of original.matchAll(CLUSTER)) {
    const from = m.index, to = m.index + m[0].length;
    let piece = '';
    for (const ch of m[0].normalize('NFKC')) if (!INVISIBLE.test(ch)) piece += ch;
    if (piece === '') continue;
    // whitespace may sit inside a piece after NFKC (U+3000 -> " "): split it into visible runs and spaces
    for (const part of piece.split(/(\s+)/u)) {
      if (part === '') continue;
      if (WHITESPACE.test(part[0])) {
        const lineBreak = LINE_BREAK.test(part);
        if (pendingSpace) {
          pendingSpace.to = to;
          pendingSpace.lineBreak ||= lineBreak;
        } else pendingSpace = { from, to, lineBreak };
        continue;
      }
      if (pendingSpace) {
        if (text.length > 0) emit(pendingSpace.lineBreak ? '\n' : ' ', pendingSpace.from, pendingSpace.to);
        pendingSpace = null;
      }
      emit(part, from, to);
    }
  }
  return { text, start: Int32Array.from(start), end: Int32Array.from(end) };
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
