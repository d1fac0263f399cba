/**
 * Segments of a text for dilution-proof scoring: its sentences (Intl.Segmenter, plus line breaks), long ones
 * cut into runs of at most `maxTokens` tokens, as token ranges. The head scores every segment as well as the
 * whole text and keeps the most toxic (src/head/head.ts), so benign padding cannot wash out one toxic sentence.
 *
 *   text      "Nice day. Thanks a lot! You are an idiot."
 *   tokens    [Nice][ day][.][ Thanks][ a][ lot][!][ You][ are][ an][ idiot][.]
 *   segments  [0, 3)            [3, 7)                  [7, 12)
 *
 * A token belongs to the sentence where its first non-space character is. A text of one segment gets none (the whole text is it).
 * Training (src/bundle/featurize.ts) and serving (src/engine/classifier.ts) call this on the same normalised
 * text, so the head sees the same segments in both.
 */

export interface TokenSpan {
  /** [from, to): token indices */
  from: number;
  to: number;
}

/** Sentences longer than this many tokens are cut into runs of this length. */
export const SEGMENT_MAX_TOKENS = 64;

const segmenter = new Intl.Segmenter('und', { granularity: 'sentence' });

/** Character ranges [start, end) of the sentences of `text` (line breaks also end a sentence). */
export function sentenceBounds(text: string): number[] {
  const starts = new Set<number>([0]);
  for (const { index } of segmenter.segment(text)) starts.add(index);
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.add(i + 1);
  return [...starts].filter((s) => s < text.length).sort((a, b) => a - b);
}

/** Token ranges of the segments of a text; [] when the text is a single segment. */
export function segmentTokens(text: string, offsets: readonly (readonly [number, number])[], maxTokens = SEGMENT_MAX_TOKENS): TokenSpan[] {
  const n = offsets.length;
  if (n === 0) return [];
  const bounds = sentenceBounds(text);
  const out: TokenSpan[] = [];
  let s = 0; // current sentence index: bounds[s] <= token start < bounds[s + 1]
  let from = 0;
  const close = (to: number) => {
    for (let a = from; a < to; a += maxTokens) out.push({ from: a, to: Math.min(to, a + maxTokens) });
    from = to;
  };
  for (let t = 0; t < n; t++) {
    let start = offsets[t][0]; // where the token's first visible character is (" Du" starts at "D")
    while (start < offsets[t][1] - 1 && /\s/u.test(text[start])) start++;
    let next = s;
    while (next + 1 < bounds.length && bounds[next + 1] <= start) next++;
    if (next !== s) {
      if (t > from) close(t);
      s = next;
    }
  }
  close(n);
  return out.length > 1 ? out : [];
}
