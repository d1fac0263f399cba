/**
 * A slow, naive, obviously-correct forward pass of the Qwen3.5 hybrid text stack (Gated DeltaNet + gated full
 * attention, zero-centred RMSNorms) in plain TypeScript, written from the maths of Hugging Face's
 * modeling_qwen3_5.py. It exists to check the ONNX engine on shapes the goldens lack: every intermediate in
 * float64, weights float32 as stored, RoPE tables rounded to float32 as HF builds them. The Gated DeltaNet is the
 * plain token-by-token recurrence (HF evaluates the same recurrence in chunks of 64). Tiny models only.
 *
 * Notation: B batch, T length, D hidden, Hk/Hv DeltaNet key/value heads of dk/dv, K conv kernel, C = 2 Hk dk + Hv dv
 * conv channels, H/KV attention heads of hd, rd rotary dims. Tensors are flat row-major arrays.
 */
import { validationError } from '../errors.js';
import type { WeightSource } from './checkpoint.js';
import { type HybridTextConfig, type Qwen35Config, embedName, layerPrefix } from './families/qwen3_5.js';
import { type ReferenceInput, type ReferenceOutput, type RouterChoice, applyRope, attention, linear, positionsFor } from './reference-forward.js';

/**
 * The MLP half of a decoder layer: h [N, D] (post-attention-normed) -> [N, D]. Families swap it (MoE); a routed MLP
 * records its layer's choices in `router`.
 */
export type ReferenceMlp = (w: WeightSource, l: number, h: Float64Array, N: number, router: Map<number, RouterChoice>) => Float64Array;

/** Dense SwiGLU: down(silu(gate(h)) * up(h)). */
export function denseMlp(c: Qwen35Config): ReferenceMlp {
  return (w, l, h, N) => {
    const p = layerPrefix(l) + 'mlp.';
    const D = c.hiddenSize, F = c.intermediateSize;
    const gate = linear(h, w.readF32(p + 'gate_proj.weight'), N, D, F); // [N, F]
    const up = linear(h, w.readF32(p + 'up_proj.weight'), N, D, F); //     [N, F]
    for (let i = 0; i < gate.length; i++) gate[i] = silu(gate[i]) * up[i];
    return linear(gate, w.readF32(p + 'down_proj.weight'), N, F, D); //    [N, D]
  };
}

/** Qwen3.5 (dense) to `lastLayer`: every layer's raw residual stream. */
export function qwen35ReferenceForward(w: WeightSource, c: Qwen35Config, input: ReferenceInput, lastLayer = c.numLayers - 1): ReferenceOutput {
  return hybridReferenceForward(w, c, denseMlp(c), input, lastLayer);
}

/** The hybrid stack with a given MLP. Positions default to 0..T-1 (pass cumsum(mask) - 1 for left padding). */
export function hybridReferenceForward(w: WeightSource, c: HybridTextConfig, mlp: ReferenceMlp, input: ReferenceInput, lastLayer = c.numLayers - 1): ReferenceOutput {
  const B = input.ids.length;
  const T = B ? input.ids[0].length : 0;
  const D = c.hiddenSize;
  if (!Number.isInteger(lastLayer) || lastLayer < 0 || lastLayer >= c.numLayers)
    throw validationError(`reference forward: layer ${lastLayer} is out of range 0..${c.numLayers - 1}`);
  if (input.ids.some((r) => r.length !== T)) throw validationError('reference forward: rows of ids differ in length');
  const mask = input.mask ?? input.ids.map((r) => r.map(() => 1));
  const positions = input.positions ?? positionsFor(mask, 'right');

  const embed = w.readF32(embedName()); // [V, D]
  const x = new Float64Array(B * T * D); // [B, T, D]
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      const id = input.ids[b][t];
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw validationError(`reference forward: token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
      for (let i = 0; i < D; i++) x[(b * T + t) * D + i] = embed[id * D + i];
    }

  const N = B * T;
  const residPost: Float32Array[] = [];
  const router = new Map<number, RouterChoice>();
  for (let l = 0; l <= lastLayer; l++) {
    const p = layerPrefix(l);
    const h = zeroCentredRmsNorm(x, w.readF32(p + 'input_layernorm.weight'), D, c.rmsNormEps); // [N, D]
    const mixed = c.layerTypes[l] === 'linear_attention'
      ? gatedDeltaNet(w, c, l, h, B, T, mask)
      : gatedAttention(w, c, l, h, B, T, mask, positions); //                                     [N, D]
    for (let i = 0; i < x.length; i++) x[i] += mixed[i];
    const h2 = zeroCentredRmsNorm(x, w.readF32(p + 'post_attention_layernorm.weight'), D, c.rmsNormEps);
    const m = mlp(w, l, h2, N, router);
    for (let i = 0; i < x.length; i++) x[i] += m[i];
    residPost.push(Float32Array.from(x));
  }
  return { residPost, router, batch: B, seqLen: T, dModel: D };
}

/**
 * Gated DeltaNet, h [B, T, D] -> [B, T, D]. Pads are zeroed first (HF multiplies the input by the mask when the
 * batch has padding), so they add nothing to the conv or to the state.
 */
function gatedDeltaNet(w: WeightSource, c: HybridTextConfig, l: number, h: Float64Array, B: number, T: number, mask: number[][]): Float64Array {
  const p = layerPrefix(l) + 'linear_attn.';
  const D = c.hiddenSize;
  const { numKeyHeads: Hk, numValueHeads: Hv, keyHeadDim: dk, valueHeadDim: dv, convKernel: K } = c.deltaNet;
  const C = 2 * Hk * dk + Hv * dv;
  const N = B * T;
  const x = Float64Array.from(h);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) if (!mask[b][t]) x.fill(0, (b * T + t) * D, (b * T + t + 1) * D);

  const u = linear(x, w.readF32(p + 'in_proj_qkv.weight'), N, D, C); //  [B, T, C]
  const z = linear(x, w.readF32(p + 'in_proj_z.weight'), N, D, Hv * dv); // [B, T, Hv, dv]
  const bIn = linear(x, w.readF32(p + 'in_proj_b.weight'), N, D, Hv); //   [B, T, Hv]
  const aIn = linear(x, w.readF32(p + 'in_proj_a.weight'), N, D, Hv); //   [B, T, Hv]
  const conv = w.readF32(p + 'conv1d.weight'); //                          [C, 1, K]
  const aLog = w.readF32(p + 'A_log'), dtBias = w.readF32(p + 'dt_bias'); // [Hv]
  const normW = w.readF32(p + 'norm.weight'); //                           [dv]

  // Causal depthwise conv: c_t = sum_j conv[:, j] * u_{t-K+1+j} (zeros before the start), then SiLU.
  const cv = new Float64Array(N * C); // [B, T, C]
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let ch = 0; ch < C; ch++) {
        let s = 0;
        for (let j = 0; j < K; j++) {
          const src = t - K + 1 + j;
          if (src >= 0) s += conv[ch * K + j] * u[(b * T + src) * C + ch];
        }
        cv[(b * T + t) * C + ch] = silu(s);
      }

  const out = new Float64Array(N * Hv * dv); // [B, T, Hv, dv]
  const S = new Float64Array(dk * dv);
  const q = new Float64Array(dk), k = new Float64Array(dk), o = new Float64Array(dv), delta = new Float64Array(dv);
  const group = Hv / Hk; // value head j reads key/query head floor(j / group)
  for (let b = 0; b < B; b++)
    for (let j = 0; j < Hv; j++) {
      S.fill(0);
      const kh = Math.floor(j / group);
      const A = Math.exp(aLog[j]);
      for (let t = 0; t < T; t++) {
        const row = (b * T + t) * C;
        for (let i = 0; i < dk; i++) { q[i] = cv[row + kh * dk + i]; k[i] = cv[row + Hk * dk + kh * dk + i]; }
        l2NormInPlace(q, 1e-6);
        l2NormInPlace(k, 1e-6);
        for (let i = 0; i < dk; i++) q[i] /= Math.sqrt(dk);
        const bt = (b * T + t) * Hv + j;
        const beta = sigmoid(bIn[bt]);
        const g = -A * softplus(aIn[bt] + dtBias[j]);
        const decay = Math.exp(g);
        const vOff = row + 2 * Hk * dk + j * dv;
        // S = exp(g) S;  delta = beta (v - S^T k);  S += k (x) delta;  o = S^T q
        for (let i = 0; i < S.length; i++) S[i] *= decay;
        for (let e = 0; e < dv; e++) {
          let r = 0;
          for (let i = 0; i < dk; i++) r += S[i * dv + e] * k[i];
          delta[e] = beta * (cv[vOff + e] - r);
        }
        for (let i = 0; i < dk; i++) for (let e = 0; e < dv; e++) S[i * dv + e] += k[i] * delta[e];
        for (let e = 0; e < dv; e++) {
          let r = 0;
          for (let i = 0; i < dk; i++) r += S[i * dv + e] * q[i];
          o[e] = r;
        }
        // Gated RMSNorm (plain weight, not zero-centred): rms(o) * w * silu(z)
        let ss = 0;
        for (let e = 0; e < dv; e++) ss += o[e] * o[e];
        const inv = 1 / Math.sqrt(ss / dv + c.rmsNormEps);
        const oOff = ((b * T + t) * Hv + j) * dv;
        for (let e = 0; e < dv; e++) out[oOff + e] = o[e] * inv * normW[e] * silu(z[oOff + e]);
      }
    }
  return linear(out, w.readF32(p + 'out_proj.weight'), N, Hv * dv, D); // [B, T, D]
}

/**
 * Gated full attention, h [B, T, D] -> [B, T, D]: q_proj gives per head [query | gate]; zero-centred q/k norms;
 * RoPE on the first rd dims; causal + padding mask; output * sigmoid(gate); o_proj.
 */
function gatedAttention(w: WeightSource, c: HybridTextConfig, l: number, h: Float64Array, B: number, T: number, mask: number[][], positions: number[][]): Float64Array {
  const p = layerPrefix(l) + 'self_attn.';
  const D = c.hiddenSize;
  const { numHeads: H, numKvHeads: KV, headDim: hd, ropeTheta, rotaryDim } = c.attention;
  const N = B * T;
  const qg = linear(h, w.readF32(p + 'q_proj.weight'), N, D, H * 2 * hd); // [B, T, H, 2 hd]
  const q = new Float64Array(N * H * hd), gate = new Float64Array(N * H * hd);
  for (let r = 0; r < N * H; r++)
    for (let i = 0; i < hd; i++) {
      q[r * hd + i] = qg[r * 2 * hd + i];
      gate[r * hd + i] = qg[r * 2 * hd + hd + i];
    }
  const k = linear(h, w.readF32(p + 'k_proj.weight'), N, D, KV * hd); // [B, T, KV, hd]
  const v = linear(h, w.readF32(p + 'v_proj.weight'), N, D, KV * hd);
  const qn = zeroCentredRmsNorm(q, w.readF32(p + 'q_norm.weight'), hd, c.rmsNormEps);
  const kn = zeroCentredRmsNorm(k, w.readF32(p + 'k_norm.weight'), hd, c.rmsNormEps);
  applyRope(qn, B, T, H, hd, positions, ropeTheta, rotaryDim);
  applyRope(kn, B, T, KV, hd, positions, ropeTheta, rotaryDim);
  const attn = attention(qn, kn, v, B, T, H, KV, hd, mask); // [B, T, H*hd]
  for (let i = 0; i < attn.length; i++) attn[i] *= sigmoid(gate[i]);
  return linear(attn, w.readF32(p + 'o_proj.weight'), N, H * hd, D);
}

/** rms(x) * (1 + w) over groups of n. */
function zeroCentredRmsNorm(x: Float64Array, weight: Float32Array, n: number, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let g = 0; g < x.length; g += n) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[g + i] * x[g + i];
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) y[g + i] = x[g + i] * inv * (1 + weight[i]);
  }
  return y;
}

/** HF's l2norm: x / sqrt(sum(x^2) + eps). */
function l2NormInPlace(x: Float64Array, eps: number): void {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss + eps);
  for (let i = 0; i < x.length; i++) x[i] *= inv;
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
const silu = (v: number) => v * sigmoid(v);
/** torch.nn.functional.softplus (beta 1, threshold 20) */
const softplus = (v: number) => (v > 20 ? v : Math.log1p(Math.exp(v)));
