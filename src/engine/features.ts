/**
 * Per-text SAE feature statistics from top-k codes: what the head reads and explanations show.
 *
 * A feature fires on a token when its kept code value is > 0. A text's firing rate for a feature is
 * the number of its real tokens (mask == 1) on which it fires, divided by its number of real tokens.
 * Long texts are split into overlapping windows by the service: FeatureAccumulator adds the windows
 * of one text, each with the range of its real tokens to count, so overlapped tokens count once.
 */
import { validationError } from '../errors.js';
import type { TextFeatures } from '../head/text-features.js';
import type { TopKBatch } from './types.js';

/** Which of a row's real tokens to count: [from, to) in real-token order (pads skipped). */
export interface TokenRange {
  from?: number;
  to?: number;
}

export class FeatureAccumulator {
  private nTokens = 0;
  private readonly counts = new Map<number, number>();
  private readonly maxActs = new Map<number, number>();

  /** Add row `b` of a batch: every real token, or those in `range` (the non-overlapped part of a window). */
  addRow(batch: TopKBatch, b: number, range: TokenRange = {}): this {
    checkRow(batch, b);
    const { seqLen: T, k, values, indices, mask } = batch;
    const from = range.from ?? 0;
    const to = range.to ?? Infinity;
    if (from < 0 || to < from) throw validationError(`FeatureAccumulator: token range [${from}, ${to}) is empty or negative`);
    let real = 0; // index of the current token among the row's real tokens
    for (let t = 0; t < T; t++) {
      if (!mask[b * T + t]) continue;
      const r = real++;
      if (r >= to) break; // real tokens only grow from here
      if (r < from) continue;
      this.nTokens++;
      const base = (b * T + t) * k;
      for (let j = 0; j < k; j++) {
        const v = values[base + j];
        if (!(v > 0)) continue;
        const f = indices[base + j];
        this.counts.set(f, (this.counts.get(f) ?? 0) + 1);
        if (v > (this.maxActs.get(f) ?? 0)) this.maxActs.set(f, v);
      }
    }
    return this;
  }

  result(): TextFeatures {
    const ids = Int32Array.from(this.counts.keys()).sort();
    const counts = new Int32Array(ids.length);
    const rates = new Float32Array(ids.length);
    const maxActs = new Float32Array(ids.length);
    ids.forEach((f, i) => {
      counts[i] = this.counts.get(f)!;
      rates[i] = counts[i] / this.nTokens;
      maxActs[i] = this.maxActs.get(f)!;
    });
    return { nTokens: this.nTokens, ids, counts, rates, maxActs };
  }
}

/** TextFeatures of every row of a batch (one text per row). */
export function textFeatures(batch: TopKBatch): TextFeatures[] {
  return Array.from({ length: batch.batch }, (_, b) => new FeatureAccumulator().addRow(batch, b).result());
}

/** Dense float32 [dSae] firing rates of one text (for files and tests; the service keeps them sparse). */
export function denseRates(f: TextFeatures, dSae: number): Float32Array {
  const out = new Float32Array(dSae);
  f.ids.forEach((id, i) => {
    if (id >= dSae) throw validationError(`denseRates: feature ${id} is outside d_sae = ${dSae}`);
    out[id] = f.rates[i];
  });
  return out;
}

function checkRow(batch: TopKBatch, b: number): void {
  if (!Number.isInteger(b) || b < 0 || b >= batch.batch) throw validationError(`row ${b} is outside the batch of ${batch.batch}`);
  const n = batch.batch * batch.seqLen;
  if (batch.mask.length !== n || batch.values.length !== n * batch.k || batch.indices.length !== n * batch.k)
    throw validationError(`TopKBatch [${batch.batch}, ${batch.seqLen}, ${batch.k}] has mismatched arrays (mask ${batch.mask.length}, values ${batch.values.length}, indices ${batch.indices.length})`);
}
