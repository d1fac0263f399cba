/**
 * Offline featurisation for training and evaluation: texts -> token ids -> windows -> fused engine
 * (top-k SAE codes) -> per-text firing rates. The same window rules as the service (src/engine/windows.ts),
 * so a head sees the same features at training time as in production.
 *
 *   texts[N] --tokenize--> ids[N][n_i] --windows (<= W tokens, overlap o)--> rows
 *        --sort by length, batch to a token budget--> runTopK: [B, T, k] --owned tokens, stitched--> [1, n_i, k]
 *        --> TextFeatures[N]
 */
import type { ForwardEngine } from '../engine/forward-engine.js';
import { FeatureAccumulator, textFeatures } from '../engine/features.js';
import { segmentTokens, type TokenSpan } from '../engine/segments.js';
import { normalizeText } from '../engine/normalize.js';
import type { Tokenizer } from '../engine/tokenizer.js';
import type { TextFeatures } from '../head/text-features.js';
import type { TopKBatch } from '../engine/types.js';
import { ContextRecorder } from '../head/feature-labels.js';
import { planWindows, sliceRow, stitch, type TokenCodes } from '../engine/windows.js';

/**
 * Padded tokens per forward pass. The fused encoder materialises [tokens, d_sae] pre-activations inside the
 * graph, so the budget bounds memory; measured on the demo (32K features): 1024 was faster than 4096 and
 * peaked at 0.7 instead of 1.5 GB (toxscope eval on 3,600 texts).
 */
export const FEATURIZE_BATCH_TOKENS = 1024;

export interface FeaturizeOptions {
  /** tokens per window (the service's window length) */
  windowTokens: number;
  overlap: number;
  /** padded tokens per forward pass (B x T budget) */
  batchTokens: number;
  /** called after each forward pass with texts done so far */
  onProgress?: (done: number, total: number) => void;
  /** token ranges of each text's sentences: their features go to TextFeatures.segments */
  segments?: readonly (readonly TokenSpan[])[];
  /** sees each text's stitched codes [1, n, k] once (feature labels record top contexts here) */
  onCodes?: (text: number, codes: TopKBatch) => void;
}

interface Row {
  text: number;
  window: number;
  ids: number[];
  /** first owned token, relative to the window */
  ownFrom: number;
}

export async function featurizeTexts(engine: ForwardEngine, tokenizer: Tokenizer, texts: readonly string[], opts: FeaturizeOptions): Promise<TextFeatures[]> {
  const enc = encodeTexts(tokenizer, texts);
  return featurizeIds(engine, enc.ids, { ...opts, segments: enc.segments });
}

/** Training: the features, and each feature's top activating contexts (feature labels) by language. */
export async function featurizeWithContexts(
  engine: ForwardEngine, tokenizer: Tokenizer, texts: readonly { text: string; lang: string }[], dSae: number, opts: FeaturizeOptions,
): Promise<{ features: TextFeatures[]; contexts: ContextRecorder }> {
  const enc = encodeTexts(tokenizer, texts.map((t) => t.text));
  const contexts = new ContextRecorder(dSae, texts.map((t, i) => ({ text: enc.normalized[i], lang: t.lang, offsets: enc.offsets[i] })));
  const features = await featurizeIds(engine, enc.ids, { ...opts, segments: enc.segments, onCodes: (i, codes) => contexts.record(i, codes) });
  return { features, contexts };
}

/** Normalise (src/engine/normalize.ts) and tokenize as the service does; sentence segments of each text. */
function encodeTexts(tokenizer: Tokenizer, texts: readonly string[]) {
  const ids: number[][] = [], segments: TokenSpan[][] = [], normalized: string[] = [], offsets: [number, number][][] = [];
  for (const t of texts) {
    const n = normalizeText(t).text;
    const e = tokenizer.encodeWithOffsets(n);
    const empty = e.ids.length === 0; // an empty text still needs one token: it scores as "nothing fired"
    ids.push(empty ? [tokenizer.padId] : e.ids);
    offsets.push(empty ? [[0, 0]] : e.offsets);
    normalized.push(n);
    segments.push(segmentTokens(n, e.offsets));
  }
  return { ids, segments, normalized, offsets };
}

export async function featurizeIds(engine: ForwardEngine, ids: readonly number[][], opts: FeaturizeOptions): Promise<TextFeatures[]> {
  const rows: Row[] = [];
  const windowsOf: number[] = [];
  ids.forEach((toks, text) => {
    const plan = planWindows(toks.length, opts.windowTokens, opts.overlap);
    windowsOf.push(plan.length);
    plan.forEach((w, window) => rows.push({ text, window, ids: toks.slice(w.start, w.end), ownFrom: w.own - w.start }));
  });
  rows.sort((a, b) => a.ids.length - b.ids.length); // similar lengths together: little padding

  const parts: TokenCodes[][] = ids.map((_, i) => new Array(windowsOf[i]));
  const remaining = [...windowsOf];
  let done = 0;
  for (let at = 0; at < rows.length; ) {
    // rows are sorted ascending, so the last row added is the longest: B x T = count x its length
    let end = at + 1;
    while (end < rows.length && (end - at + 1) * rows[end].ids.length <= opts.batchTokens) end++;
    const batch = rows.slice(at, end);
    const codes = await engine.runTopK(batch.map((r) => r.ids), 'right'); // [B, T, k]
    batch.forEach((r, b) => {
      parts[r.text][r.window] = sliceRow(codes, b, r.ownFrom, r.ids.length);
      if (--remaining[r.text] === 0) done++;
    });
    opts.onProgress?.(done, ids.length);
    at = end;
  }
  return parts.map((p, i) => {
    const codes = stitch(p); // [1, n, k]
    opts.onCodes?.(i, codes);
    const f = textFeatures(codes)[0];
    const segs = opts.segments?.[i];
    if (segs && segs.length > 1) f.segments = segs.map((r) => new FeatureAccumulator().addRow(codes, 0, r).result());
    return f;
  });
}
