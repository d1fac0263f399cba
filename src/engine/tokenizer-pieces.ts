/**
 * Long texts are tokenized in pieces of at most `maxChars` UTF-16 code units, so that no single call to the
 * BPE tokenizer runs long (100,000 characters of 'a' took 5.6 s in one call, 100,000 CJK characters 16 s) and a request's tokenization can be
 * interleaved with other work and stopped at its token budget.
 *
 * A piece boundary is "soft" when the tokenizer's own pre-tokenization (NFC, then the Qwen2/Qwen3 split regex
 * `(?i:'s|'t|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`) has a
 * pre-token boundary there too, so the pieces' tokens are exactly the whole text's:
 *
 *   - before a single space between two non-whitespace characters ('word| next'): no pre-token spans a space
 *     that follows a non-whitespace character, and ' next' starts a pre-token in both;
 *   - between a letter and a punctuation or symbol character ('word|, next'): a letter run ends there.
 *
 * and NFC does not compose across it, and it is not inside (or at the edge of) an added token such as
 * `<|endoftext|>`. Only a run of `maxChars` characters with no such boundary (no space, no punctuation after
 * a letter: a hostile input, not language) gets a "hard" cut, where tokens can differ from a whole-text
 * tokenization. Tested against whole-text tokenization on real multilingual data (test/tokenizer-pieces.test.ts).
 */

/**
 * Default longest piece. The JS BPE costs up to ~100 us per character of a CJK run (measured on a loaded
 * machine: a 2048-character piece 250 ms, a 256-character one 39 ms, a 64-character one 4 ms), and a piece is
 * never interrupted, so pieces are short; natural text has a soft boundary (a space, a comma, a full stop)
 * every few dozen characters, so only boundary-free runs get hard cuts.
 */
export const PIECE_CHARS = 256;

const WS = /\s/u;
const LETTER = /\p{L}/u;
const PUNCT_OR_SYMBOL = /[\p{P}\p{S}]/u;

const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/** The code point ending just before index i, as a string (a surrogate pair whole). */
function charBefore(text: string, i: number): string {
  if (i >= 2 && isLow(text.charCodeAt(i - 1)) && isHigh(text.charCodeAt(i - 2))) return text.slice(i - 2, i);
  return text.slice(i - 1, i);
}

/** The code point starting at index i. */
function charAt(text: string, i: number): string {
  return String.fromCodePoint(text.codePointAt(i)!);
}

/** True where a cut before index i leaves the pre-tokens (and so the tokens) of the whole text unchanged. */
export function isSoftBoundary(text: string, i: number): boolean {
  if (i <= 0 || i >= text.length) return false;
  if (isLow(text.charCodeAt(i)) && isHigh(text.charCodeAt(i - 1))) return false;
  const prev = charBefore(text, i);
  const cur = charAt(text, i);
  let ok: boolean;
  if (cur === ' ') {
    const next = i + 1 < text.length ? charAt(text, i + 1) : '';
    ok = next !== '' && !WS.test(prev) && !WS.test(next) && !/\p{M}/u.test(next);
  } else ok = LETTER.test(prev) && PUNCT_OR_SYMBOL.test(cur) && cur !== "'";
  // NFC must not compose (or reorder) across the cut
  return ok && (prev + cur).normalize('NFC') === prev.normalize('NFC') + cur.normalize('NFC');
}

/** [start, end) ranges covered by occurrences of `specials` (added tokens): no cut inside or at their edges. */
function protectedRanges(text: string, specials: readonly string[]): [number, number][] {
  const out: [number, number][] = [];
  for (const s of specials) {
    if (s.length === 0) continue;
    for (let at = text.indexOf(s); at >= 0; at = text.indexOf(s, at + 1)) out.push([at, at + s.length]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

/**
 * Split `text` into consecutive [start, end) pieces of at most `maxChars` code units (a surrogate pair or an
 * added token is never split; a piece may exceed maxChars only to keep an added token whole). Each cut is the
 * last soft boundary in the second half of the allowed span, else a hard cut at maxChars.
 */
export function splitPieces(text: string, maxChars = PIECE_CHARS, specials: readonly string[] = []): [number, number][] {
  if (text.length <= maxChars) return [[0, text.length]];
  const guarded = protectedRanges(text, specials);
  const blocked = (i: number) => guarded.some(([s, e]) => i >= s && i <= e);
  const pieces: [number, number][] = [];
  let start = 0;
  while (text.length - start > maxChars) {
    const limit = start + maxChars;
    let cut = -1;
    for (let i = limit; i > start + (maxChars >> 1); i--) {
      if (isSoftBoundary(text, i) && !blocked(i)) {
        cut = i;
        break;
      }
    }
    if (cut < 0) {
      // hard cut: not inside a surrogate pair, and past any added token that straddles it
      cut = limit;
      if (isLow(text.charCodeAt(cut)) && isHigh(text.charCodeAt(cut - 1))) cut--;
      const straddled = guarded.find(([s, e]) => s < cut && cut < e);
      if (straddled) cut = straddled[0] > start ? straddled[0] : straddled[1];
    }
    pieces.push([start, cut]);
    start = cut;
  }
  pieces.push([start, text.length]);
  return pieces;
}
