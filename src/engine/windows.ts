/**
 * Long texts: split into windows of at most `windowTokens` tokens, consecutive windows sharing `overlap`
 * tokens, and stitched back so each token counts exactly once.
 *
 *   tokens   0 ......................................... n
 *   window 0 [0 ............ W)
 *   window 1          [W-o ............ 2W-o)
 *   window 2                     [2W-2o ............ n)
 *
 * Window i>0 owns its tokens from `start + overlap` on: the shared tokens belong to the earlier window,
 * where (the model being causal) they were seen with more preceding context. The overlap is context for
 * the later window's first owned tokens. Codes of owned tokens, in text order, form one [1, n, k] batch.
 */
import { ToxScopeError } from '../errors.js';
import type { TopKBatch } from './types.js';

export interface Window {
  /** [start, end): token range fed to the model */
  start: number;
  end: number;
  /** first token this window counts; tokens [own, end) are its own */
  own: number;
}

export function planWindows(nTokens: number, windowTokens: number, overlap: number): Window[] {
  if (!Number.isInteger(windowTokens) || windowTokens < 1) throw new ToxScopeError('internal', `window length must be a positive integer, got ${windowTokens}`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= windowTokens)
    throw new ToxScopeError('internal', `window overlap must be in [0, ${windowTokens}), got ${overlap}`);
  if (nTokens <= 0) return [];
  const stride = windowTokens - overlap;
  const out: Window[] = [];
  for (let start = 0; ; start += stride) {
    const end = Math.min(start + windowTokens, nTokens);
    out.push({ start, end, own: start === 0 ? 0 : start + overlap });
    if (end === nTokens) return out;
  }
}

/** The top-k codes of a run of tokens: float32/int32 [n, k]. */
export interface TokenCodes {
  nTokens: number;
  k: number;
  values: Float32Array;
  indices: Int32Array;
}

/**
 * Codes of tokens [from, to) of row `row` of a RIGHT-padded batch (real tokens at positions 0..len-1).
 * Copies, so the batch's buffers can be released.
 */
export function sliceRow(batch: TopKBatch, row: number, from: number, to: number): TokenCodes {
  const { seqLen: T, k } = batch;
  if (row < 0 || row >= batch.batch || from < 0 || to > T || from > to)
    throw new ToxScopeError('internal', `sliceRow: row ${row} tokens [${from}, ${to}) outside a [${batch.batch}, ${T}] batch`);
  for (let t = from; t < to; t++)
    if (batch.mask[row * T + t] !== 1) throw new ToxScopeError('internal', `sliceRow: row ${row} position ${t} is padding, expected a real token`);
  const a = (row * T + from) * k;
  const b = (row * T + to) * k;
  return { nTokens: to - from, k, values: batch.values.slice(a, b), indices: batch.indices.slice(a, b) };
}

/** Concatenate the owned codes of a text's windows, in order, into one [1, n, k] batch with no padding. */
export function stitch(parts: readonly TokenCodes[]): TopKBatch {
  if (parts.length === 0) throw new ToxScopeError('internal', 'stitch: no windows');
  const k = parts[0].k;
  const n = parts.reduce((s, p) => s + p.nTokens, 0);
  const values = new Float32Array(n * k); // [1, n, k]
  const indices = new Int32Array(n * k); //  [1, n, k]
  let at = 0;
  for (const p of parts) {
    if (p.k !== k) throw new ToxScopeError('internal', `stitch: windows disagree on k (${p.k} vs ${k})`);
    values.set(p.values, at * k);
    indices.set(p.indices, at * k);
    at += p.nTokens;
  }
  return { batch: 1, seqLen: n, k, values, indices, mask: new Uint8Array(n).fill(1) };
}

/**
 * Character spans of the original string where `feature` fired (code > 0), adjacent or overlapping token
 * spans merged. `codes` is a [1, n, k] stitched batch and `offsets` the n tokens' [start, end) offsets.
 */
export function featureSpans(codes: TopKBatch, offsets: readonly (readonly [number, number])[], feature: number): [number, number][] {
  const { seqLen: n, k } = codes;
  if (offsets.length !== n) throw new ToxScopeError('internal', `featureSpans: ${offsets.length} offsets for ${n} tokens`);
  const spans: [number, number][] = [];
  for (let t = 0; t < n; t++) {
    let fired = false;
    for (let j = 0; j < k && !fired; j++) fired = codes.indices[t * k + j] === feature && codes.values[t * k + j] > 0;
    if (!fired) continue;
    const [s, e] = offsets[t];
    const last = spans[spans.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else spans.push([s, e]);
  }
  return spans;
}
