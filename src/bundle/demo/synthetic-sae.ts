/**
 * A synthetic TopK SAE in the Qwen-Scope file format (`layer{L}.sae.pt`, a torch.save'd dict of W_enc
 * [d_sae, d_model], W_dec [d_model, d_sae], b_enc [d_sae], b_dec [d_model], bf16 storages).
 *
 * A trained SAE's dictionary is learned from a corpus; this one is computed from one in a single pass: feature
 * f's encoder row is the mean residual of token t_f at the SAE's layer, where t_0, t_1, ... are the tokens most
 * frequent in the demo's training sample, and the decoder is the transpose. Feature f then fires on token t_f,
 * and a negative encoder bias keeps the other kept top-k values at zero. So its features are token detectors:
 * the demo's head is a bag-of-tokens classifier, and on a random backbone that is all it can be.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { writeTorchSave } from '../../model/sae/torch-save.js';
import type { Rng } from '../../util/random.js';

export interface SyntheticSaeOptions {
  dModel: number;
  dSae: number;
  /** float32 [dSae, dModel]: one direction per feature (normalised here) */
  directions: Float32Array;
  /** float32 [dSae]: encoder bias (negative: a feature fires only when well aligned) */
  bias: Float32Array;
}

export function writeSyntheticQwenScopeSae(path: string, o: SyntheticSaeOptions): void {
  const { dModel: D, dSae: S } = o;
  const wEnc = new Float32Array(S * D); // [S, D]
  for (let f = 0; f < S; f++) {
    const e = o.directions.subarray(f * D, (f + 1) * D);
    let norm = 0;
    for (let d = 0; d < D; d++) norm += e[d] * e[d];
    norm = Math.sqrt(norm) || 1;
    for (let d = 0; d < D; d++) wEnc[f * D + d] = e[d] / norm;
  }
  const wDec = new Float32Array(D * S); // [D, S] = W_enc^T
  for (let f = 0; f < S; f++) for (let d = 0; d < D; d++) wDec[d * S + f] = wEnc[f * D + d];
  mkdirSync(dirname(path), { recursive: true });
  writeTorchSave(path, {
    archive: 'layer_sae',
    storages: {
      '0': { dtype: 'BF16', values: wEnc },
      '1': { dtype: 'BF16', values: wDec },
      '2': { dtype: 'BF16', values: o.bias },
      '3': { dtype: 'BF16', values: new Float32Array(D) },
    },
    tensors: {
      W_enc: { storage: '0', shape: [S, D] },
      W_dec: { storage: '1', shape: [D, S] },
      b_enc: { storage: '2', shape: [S] },
      b_dec: { storage: '3', shape: [D] },
    },
  });
}

/**
 * The dictionary, "trained" the simplest way: feature f is the mean residual (at the SAE's layer) of the f-th most
 * frequent token of the corpus over that token's occurrences, centred on the corpus mean; its bias puts the
 * firing point half way along, so it fires on its token in most contexts and rarely elsewhere. Slots past the
 * corpus's distinct tokens get seeded random directions of the median length.
 *
 *   residuals: per batch of texts, float32 [B, T, D] with a mask; tokenized: the same texts' ids
 */
export async function dictionaryFromResiduals(
  tokenized: readonly number[][],
  runResidual: (ids: number[][]) => Promise<{ resid: Float32Array; mask: Uint8Array; batch: number; seqLen: number }>,
  dModel: number,
  dSae: number,
  rng: Rng,
  batchTexts = 32,
): Promise<{ directions: Float32Array; bias: Float32Array; tokens: number[] }> {
  const D = dModel;
  const freq = new Map<number, number>();
  for (const ids of tokenized) for (const t of ids) freq.set(t, (freq.get(t) ?? 0) + 1);
  const tokens = [...freq.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([t]) => t).slice(0, dSae);
  const slot = new Map(tokens.map((t, f) => [t, f]));
  const sums = new Float64Array(dSae * D); // [S, D]
  const total = new Float64Array(D); //       [D] over every real token
  let count = 0;
  const order = tokenized.map((_, i) => i).sort((a, b) => tokenized[a].length - tokenized[b].length);
  for (let at = 0; at < order.length; at += batchTexts) {
    const rows = order.slice(at, at + batchTexts).map((i) => tokenized[i]);
    const r = await runResidual(rows); // resid: [B, T, D]
    rows.forEach((ids, b) => ids.forEach((t, pos) => {
      if (r.mask[b * r.seqLen + pos] !== 1) return;
      const x = r.resid.subarray((b * r.seqLen + pos) * D, (b * r.seqLen + pos + 1) * D);
      for (let d = 0; d < D; d++) total[d] += x[d];
      count++;
      const f = slot.get(t);
      if (f !== undefined) for (let d = 0; d < D; d++) sums[f * D + d] += x[d];
    }));
  }
  // Residuals share a large common component: directions are token means minus the corpus mean mu, and the
  // bias re-centres the input, so pre_f = (x - mu) . w_f - |c_f| / 2 with c_f = mean_f - mu and w_f = c_f / |c_f|.
  const mu = total.map((v) => v / Math.max(count, 1));
  const directions = new Float32Array(dSae * D);
  const bias = new Float32Array(dSae);
  const lengths: number[] = [];
  const setFeature = (f: number, c: ArrayLike<number>) => {
    let len = 0;
    for (let d = 0; d < D; d++) len += c[d] * c[d];
    len = Math.sqrt(len) || 1;
    let muDotW = 0;
    for (let d = 0; d < D; d++) muDotW += mu[d] * (directions[f * D + d] = c[d] / len);
    bias[f] = -muDotW - 0.5 * len;
    return len;
  };
  tokens.forEach((t, f) => {
    const n = freq.get(t)!;
    const c = new Float64Array(D);
    for (let d = 0; d < D; d++) c[d] = sums[f * D + d] / n - mu[d];
    lengths.push(setFeature(f, c));
  });
  lengths.sort((a, b) => a - b);
  const median = lengths.length ? lengths[lengths.length >> 1] : 1;
  for (let f = tokens.length; f < dSae; f++) {
    const c = new Float64Array(D);
    for (let d = 0; d < D; d++) c[d] = rng.normal();
    const len = Math.hypot(...c);
    setFeature(f, c.map((v) => (v / len) * median));
  }
  return { directions, bias, tokens };
}
