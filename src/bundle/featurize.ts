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
import { textFeatures } from '../engine/features.js';
import { encodeSegments, segmentTokens, windowsFrom } from '../engine/segments.js';
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
  /**
   * each text's segments (src/engine/segments.ts), as the token ids of each segment tokenized alone: each is
   * encoded as a text of its own and its features go to TextFeatures.segments (undefined or []: none)
   */
  segmentIds?: readonly (readonly number[][] | undefined)[];
  /** per text: the index of its first window among its segments (the ones before are sentences) */
  segmentWindowsFrom?: readonly number[];
  /** which texts get segment features (default: all); training needs them on its calibration split only */
  segmentsFor?: (text: number) => boolean;
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
  const enc = encodeTexts(tokenizer, texts, opts.segmentsFor);
  return featurizeIds(engine, enc.ids, { ...opts, segmentIds: enc.segmentIds, segmentWindowsFrom: enc.windowsFrom });
}

/** Training: the features, and each feature's top activating contexts (feature labels) by language. */
export async function featurizeWithContexts(
  engine: ForwardEngine, tokenizer: Tokenizer, texts: readonly { text: string; lang: string }[], dSae: number, opts: FeaturizeOptions,
): Promise<{ features: TextFeatures[]; contexts: ContextRecorder }> {
  const enc = encodeTexts(tokenizer, texts.map((t) => t.text), opts.segmentsFor);
  const contexts = new ContextRecorder(dSae, texts.map((t, i) => ({ text: enc.normalized[i], lang: t.lang, offsets: enc.offsets[i] })));
  const features = await featurizeIds(engine, enc.ids, { ...opts, segmentIds: enc.segmentIds, segmentWindowsFrom: enc.windowsFrom, onCodes: (i, codes) => contexts.record(i, codes) });
  return { features, contexts };
}

/** Normalise (src/engine/normalize.ts) and tokenize as the service does; each text's segments tokenized alone. */
function encodeTexts(tokenizer: Tokenizer, texts: readonly string[], segmentsFor?: (text: number) => boolean) {
  const ids: number[][] = [], segmentIds: number[][][] = [], windows: number[] = [], normalized: string[] = [], offsets: [number, number][][] = [];
  texts.forEach((t, i) => {
    const n = normalizeText(t).text;
    const e = tokenizer.encodeWithOffsets(n);
    const empty = e.ids.length === 0; // an empty text still needs one token: it scores as "nothing fired"
    ids.push(empty ? [tokenizer.padId] : e.ids);
    offsets.push(empty ? [[0, 0]] : e.offsets);
    normalized.push(n);
    const spans = segmentsFor && !segmentsFor(i) ? [] : segmentTokens(n, e.offsets);
    segmentIds.push(encodeSegments(tokenizer, n, e.offsets, spans));
    windows.push(windowsFrom(spans));
  });
  return { ids, segmentIds, windowsFrom: windows, normalized, offsets };
}

export async function featurizeIds(engine: ForwardEngine, texts: readonly number[][], opts: FeaturizeOptions): Promise<TextFeatures[]> {
  // each segment is one more text to encode, after the texts: segOf[j] = [text, its segment index]
  const ids: number[][] = [...texts];
  const segOf: [number, number][] = [];
  opts.segmentIds?.forEach((segs, text) => segs?.forEach((s, j) => {
    if (s.length === 0) return;
    segOf.push([text, j]);
    ids.push(s);
  }));
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
  const features = parts.map((p, i) => {
    const codes = stitch(p); // [1, n, k]
    if (i < texts.length) opts.onCodes?.(i, codes);
    return textFeatures(codes)[0];
  });
  const out = features.slice(0, texts.length);
  segOf.forEach(([text, j], s) => {
    const f = out[text];
    f.segments ??= new Array(opts.segmentIds![text]!.length).fill(EMPTY);
    if (opts.segmentWindowsFrom) f.windowsFrom = opts.segmentWindowsFrom[text];
    f.segments[j] = features[texts.length + s];
  });
  return out;
}

/** A segment that tokenized to nothing: no tokens, nothing fired (the head skips it). */
const EMPTY: TextFeatures = { nTokens: 0, ids: new Int32Array(0), counts: new Int32Array(0), rates: new Float32Array(0), maxActs: new Float32Array(0) };
