/**
 * Everything a request's texts go through before the forward pass, as one piece of work that pauses after every
 * bounded step (a generator), so that a tokenizer worker can take turns between requests
 * (src/engine/text-worker.ts):
 *
 *   texts --normalise (NFKC, invisibles out, whitespace collapsed; src/engine/normalize.ts)--> one step per text
 *         --tokens within the request's budget (src/engine/tokenize-budget.ts)--> one step per piece of <= 256 chars
 *         --language (hint | fastText lid), token offsets mapped back into the caller's string, segments
 *           (sentences and windows), each tokenized alone (16 a step)--> one step per text
 *
 * Measured (100,000-character texts, `npx tsx` one-off, quiet machine): normalising 40-120 ms, identifying the
 * language of a CJK text 16-19 ms (lid reads its first 2,000 characters), mapping 16k offsets back 27 ms: each
 * was a stall on the event loop when it ran there; in the worker it only delays that worker's next turn.
 */
import { validationError } from '../errors.js';
import type { LanguageIdentifier, LanguageTag } from './language.js';
import { normalizeText, originalSpan, type NormalizedText } from './normalize.js';
import { segmentText, segmentTokens, type TokenSpan } from './segments.js';
import { encodeWithinBudget, type PieceTokenizer, type TokenizeProgress } from './tokenize-budget.js';

export interface PrepareInput {
  texts: readonly string[];
  /** per text: its validated language hint, or null to identify it (languageHints in src/engine/language.ts) */
  hints: readonly (string | null)[];
  /** most tokens of all texts together */
  maxTokens: number;
}

export interface PreparedText {
  ids: number[];
  /** token i covers [offsets[2i], offsets[2i + 1]) of the caller's ORIGINAL string (UTF-16 code units) */
  offsets: Int32Array;
  /** token ranges of the text's segments: sentences, then windows ([] for a single sentence; src/engine/segments.ts) */
  segments: TokenSpan[];
  /** the token ids of each segment tokenized alone: each is encoded as a text of its own */
  segmentIds: number[][];
  /** per segment, its own tokens' offsets into the caller's ORIGINAL string (as `offsets`): explanations of a segment */
  segmentOffsets: Int32Array[];
  language: LanguageTag;
}

/** Segments tokenized per step (each at most SEGMENT_MAX_TOKENS tokens). */
const SEGMENTS_PER_STEP = 16;

/** The pipeline above; the generator pauses after every step and returns one PreparedText per text. */
export function* prepareTexts(
  { texts, hints, maxTokens }: PrepareInput,
  tokenizer: PieceTokenizer,
  lid: LanguageIdentifier,
  progress: TokenizeProgress = { chars: 0 },
): Generator<void, PreparedText[]> {
  const normalized: NormalizedText[] = [];
  for (let i = 0; i < texts.length; i++) {
    const n = normalizeText(texts[i]);
    if (n.text.length === 0) throw validationError(`texts[${i}] has no visible characters (only whitespace, control or zero-width characters)`);
    normalized.push(n);
    yield;
  }
  const encodings = yield* encodeWithinBudget(tokenizer, normalized.map((n) => n.text), maxTokens, progress);
  const out: PreparedText[] = [];
  for (let i = 0; i < texts.length; i++) {
    const n = normalized[i];
    const e = encodings[i];
    const offsets = new Int32Array(2 * e.ids.length);
    e.offsets.forEach(([s, end], t) => {
      const [a, b] = originalSpan(n, s, end);
      offsets[2 * t] = a;
      offsets[2 * t + 1] = b;
    });
    const hint = hints[i];
    const segments = segmentTokens(n.text, e.offsets);
    const segmentIds: number[][] = [], segmentOffsets: Int32Array[] = [];
    for (const r of segments) {
      const [a, b] = segmentText(n.text, e.offsets, r);
      const own = tokenizer.encodeWithOffsets(n.text.slice(a, b));
      const at = new Int32Array(2 * own.ids.length);
      own.offsets.forEach(([s, end], t) => {
        const [x, y] = originalSpan(n, a + s, a + end);
        at[2 * t] = x;
        at[2 * t + 1] = y;
      });
      segmentIds.push(own.ids);
      segmentOffsets.push(at);
      if (segmentIds.length % SEGMENTS_PER_STEP === 0) yield;
    }
    out.push({ ids: e.ids, offsets, segments, segmentIds, segmentOffsets, language: hint !== null ? { code: hint, source: 'hint' } : lid.identify(n.text) });
    yield;
  }
  return out;
}

/** Runs the whole pipeline at once on this thread (training-side callers and tests of the pipeline itself). */
export function prepareTextsNow(input: PrepareInput, tokenizer: PieceTokenizer, lid: LanguageIdentifier, progress?: TokenizeProgress): PreparedText[] {
  const work = prepareTexts(input, tokenizer, lid, progress);
  for (;;) {
    const step = work.next();
    if (step.done) return step.value;
  }
}

/** The [start, end) pairs of a PreparedText's offsets. */
export function offsetPairs(offsets: Int32Array): [number, number][] {
  const out: [number, number][] = new Array(offsets.length >> 1);
  for (let t = 0; t < out.length; t++) out[t] = [offsets[2 * t], offsets[2 * t + 1]];
  return out;
}
