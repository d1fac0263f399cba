/**
 * Segments of a text for dilution-proof scoring: its sentences (Intl.Segmenter, plus line breaks), long ones
 * cut into runs of at most `maxTokens` tokens, and token windows over its long sentences, as token ranges. The
 * head scores every segment as well as the whole text and keeps the most toxic (src/head/head.ts), so benign
 * padding cannot wash out one toxic sentence.
 *
 *   text      "Nice day. Thanks a lot! You are an idiot."
 *   tokens    [Nice][ day][.][ Thanks][ a][ lot][!][ You][ are][ an][ idiot][.]
 *   segments  [0, 3)            [3, 7)                  [7, 12)
 *
 * Windows: UAX #29 only ends a sentence at end punctuation, so a post without any ("you are an idiot") runs
 * into the sentence after it and one friendly sentence would still dilute it. Every sentence longer than
 * `windowTokens` therefore also gets windows of `windowTokens` tokens, consecutive ones sharing half:
 *
 *   "you are an idiot honestly Thank you so much for your help yesterday."   one sentence of 20 tokens
 *   windows (8 tokens, stride 4)   [0, 8) [4, 12) [8, 16) [12, 20)
 *
 * Sentences come first in the list (a segment's index names it in spans); windows follow. A token belongs to the
 * sentence where its first non-space character is. A text of one sentence gets no segments at all (the whole
 * text is it), so a short post alone is scored exactly as it always was; once it sits among other sentences, its
 * own sentences and windows are segments.
 *
 * Each segment is scored as a text of its own (segmentText: its characters, leading and trailing spaces left
 * out, tokenized alone; src/bundle/featurize.ts for training, src/engine/text-prep.ts for serving), so a
 * sentence scores the same wherever it stands: as it would alone, not shifted by the context before it.
 */

export interface TokenSpan {
  /** [from, to): token indices */
  from: number;
  to: number;
  /** set on windows (sentences have none) */
  window?: true;
}

/** Index of the first window among segments (sentences come first): segments.length when there is none. */
export function windowsFrom(segments: readonly TokenSpan[]): number {
  const i = segments.findIndex((s) => s.window);
  return i < 0 ? segments.length : i;
}

/** Sentences longer than this many tokens are cut into runs of this length. */
export const SEGMENT_MAX_TOKENS = 64;
/** Window length over long sentences (stride: half of it). */
export const SEGMENT_WINDOW_TOKENS = 16;

export interface SegmentOptions {
  /** sentences longer than this are cut into runs (default SEGMENT_MAX_TOKENS) */
  maxTokens?: number;
  /** windows of this many tokens over sentences longer than it, stride half of it; 0: none (default SEGMENT_WINDOW_TOKENS) */
  windowTokens?: number;
}

const segmenter = new Intl.Segmenter('und', { granularity: 'sentence' });

/** Character ranges [start, end) of the sentences of `text` (line breaks also end a sentence). */
export function sentenceBounds(text: string): number[] {
  const starts = new Set<number>([0]);
  for (const { index } of segmenter.segment(text)) starts.add(index);
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.add(i + 1);
  return [...starts].filter((s) => s < text.length).sort((a, b) => a - b);
}

/** Token ranges of the segments of a text (sentences, then windows); [] when the text is a single sentence. */
export function segmentTokens(text: string, offsets: readonly (readonly [number, number])[], options: SegmentOptions = {}): TokenSpan[] {
  const maxTokens = options.maxTokens ?? SEGMENT_MAX_TOKENS;
  const windowTokens = options.windowTokens ?? SEGMENT_WINDOW_TOKENS;
  const n = offsets.length;
  if (n === 0) return [];
  const bounds = sentenceBounds(text);
  const sentences: TokenSpan[] = [];
  let s = 0; // current sentence index: bounds[s] <= token start < bounds[s + 1]
  let from = 0;
  const close = (to: number) => {
    sentences.push({ from, to });
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
  if (sentences.length === 1 && n <= maxTokens) return [];
  const runs = sentences.flatMap((r) => cut(r, maxTokens, maxTokens));
  const windows = windowTokens > 0 ? sentences.flatMap((r) => (r.to - r.from > windowTokens ? cut(r, windowTokens, Math.max(1, windowTokens >> 1)).map((w) => ({ ...w, window: true as const })) : [])) : [];
  return [...runs, ...windows];
}

/** [from, to) in runs of `length` tokens starting every `stride` tokens, the last one ending at `to`. */
function cut(r: TokenSpan, length: number, stride: number): TokenSpan[] {
  if (r.to - r.from <= length) return [r];
  const out: TokenSpan[] = [];
  for (let a = r.from; ; a += stride) {
    const b = Math.min(a + length, r.to);
    out.push({ from: a, to: b });
    if (b === r.to) return out;
  }
}

/** The characters [start, end) of a segment in `text`, its leading and trailing spaces left out. */
export function segmentText(text: string, offsets: readonly (readonly [number, number])[], r: TokenSpan): [number, number] {
  let start = offsets[r.from][0];
  let end = offsets[r.to - 1][1];
  while (start < end && /\s/u.test(text[start])) start++;
  while (end > start && /\s/u.test(text[end - 1])) end--;
  return [start, end];
}

/** The token ids of one segment tokenized alone (its characters from segmentText): how training and serving encode it. */
export function encodeSegment(tokenizer: { encodeWithOffsets(text: string): { ids: number[] } }, text: string, offsets: readonly (readonly [number, number])[], r: TokenSpan): number[] {
  const [a, b] = segmentText(text, offsets, r);
  return tokenizer.encodeWithOffsets(text.slice(a, b)).ids;
}

/** The token ids of each segment of a normalised text, each tokenized alone. */
export function encodeSegments(tokenizer: { encodeWithOffsets(text: string): { ids: number[] } }, text: string, offsets: readonly (readonly [number, number])[], spans: readonly TokenSpan[] = segmentTokens(text, offsets)): number[][] {
  return spans.map((r) => encodeSegment(tokenizer, text, offsets, r));
}
