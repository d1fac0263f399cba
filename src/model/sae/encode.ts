/**
 * The TopK encoder in plain TypeScript: the reference the fused ONNX encoder is tested against,
 * and what the inspection command uses to check it.
 *
 *   pre    = (x - inputBias) @ wEnc^T + bEnc       x: [N, dModel]   pre: [N, dSae]
 *   idx    = topk(pre, k)                           [N, k], descending; ties go to the lower feature id
 *   values = relu(pre[idx])                         [N, k]; 0 means the kept feature did not fire
 */
import { validationError } from '../../errors.js';
import { TopKSae } from './types.js';

export interface TopKCodes {
  n: number;
  k: number;
  /** float32 [N, k], descending */
  values: Float32Array;
  /** int32 [N, k] */
  indices: Int32Array;
}

/** float32 [N, dSae] pre-activations (accumulated in float64). */
export function preActivations(sae: TopKSae, x: Float32Array): Float32Array {
  const { dModel: D, dSae: S, wEnc, bEnc, inputBias } = sae;
  const n = rows(sae, x);
  const pre = new Float32Array(n * S);
  const xc = new Float64Array(D); // one centred row: x - inputBias
  for (let t = 0; t < n; t++) {
    for (let i = 0; i < D; i++) xc[i] = x[t * D + i] - (inputBias ? inputBias[i] : 0);
    for (let f = 0; f < S; f++) {
      let acc = bEnc[f];
      const w = f * D;
      for (let i = 0; i < D; i++) acc += xc[i] * wEnc[w + i];
      pre[t * S + f] = acc;
    }
  }
  return pre;
}

/** Top-k codes of x [N, dModel]. */
export function encodeTopK(sae: TopKSae, x: Float32Array): TopKCodes {
  const n = rows(sae, x);
  const { k, dSae: S } = sae;
  const pre = preActivations(sae, x);
  const values = new Float32Array(n * k);
  const indices = new Int32Array(n * k);
  for (let t = 0; t < n; t++) {
    const top = topK(pre.subarray(t * S, (t + 1) * S), k);
    for (let j = 0; j < k; j++) {
      indices[t * k + j] = top.idx[j];
      values[t * k + j] = Math.max(0, top.val[j]); // relu of the kept values
    }
  }
  return { n, k, values, indices };
}

/** Scatter top-k codes into dense float32 [N, dSae] (for inspection and tests). */
export function denseCodes(codes: TopKCodes, dSae: number): Float32Array {
  const out = new Float32Array(codes.n * dSae);
  for (let t = 0; t < codes.n; t++)
    for (let j = 0; j < codes.k; j++) out[t * dSae + codes.indices[t * codes.k + j]] = codes.values[t * codes.k + j];
  return out;
}

/** The k largest entries of v, descending, ties to the lower index (insertion into a sorted buffer). */
function topK(v: Float32Array, k: number): { val: Float64Array; idx: Int32Array } {
  const val = new Float64Array(k).fill(-Infinity);
  const idx = new Int32Array(k).fill(-1);
  for (let f = 0; f < v.length; f++) {
    const x = v[f];
    if (!(x > val[k - 1]) && idx[k - 1] !== -1) continue;
    let j = k - 1;
    while (j > 0 && (idx[j - 1] === -1 || x > val[j - 1])) {
      val[j] = val[j - 1];
      idx[j] = idx[j - 1];
      j--;
    }
    val[j] = x;
    idx[j] = f;
  }
  return { val, idx };
}

function rows(sae: TopKSae, x: Float32Array): number {
  if (x.length % sae.dModel !== 0) throw validationError(`encodeTopK: input has ${x.length} values, not a multiple of d_model = ${sae.dModel}`);
  return x.length / sae.dModel;
}
